/*
 * session.c — one sync connection: the libwebsockets client and the protocol state machine
 * of docs/protocol.md §5, device side.
 *
 *   CONNECTING --established--> HELLO --welcome--> PUSH (push / push_result)*
 *     --outbox empty--> PULL (pull / changes)* --more=false--> REVIEWS (supervisors) --> DONE
 *
 * Up to two pushes in flight (PUSH_WINDOW, docs/protocol.md §5): the next push is built,
 * numbered and sent while the server applies the one before, so neither the device's
 * encoding nor a slow link's round trip sits idle between pushes. The server answers a
 * session's messages one at a time in order, so the results come back in push order and are
 * matched first in, first out (batch ids checked). The second push carries the changes after
 * those of the first (outbox_next_batch_after); a change the server refused without consuming
 * it (EREC_ABBREV) makes every later change of the device ESEQ_GAP, including the whole of a
 * push already in flight: those gaps are expected, the changes stay in the outbox, nothing
 * more is sent until every push is answered, and then the next push starts from the first
 * change not consumed (with its full record id). A gap no unconsumed change explains ends the
 * sync (FIELDSYNC_ESEQUENCE) as before. A lost link with pushes unanswered loses nothing: the
 * outbox keeps every change until its result is in, and the next session resends them. The
 * pull begins only when every push result is in. The first batch is small (first_batch
 * changes) so that a 2G link gets its first acknowledgement quickly, later ones are bounded
 * by max_batch and max_batch_bytes (uncompressed, so a batch is never more than that on the
 * wire either). The pushes in flight together stay within one batch: each push after the
 * first is at most half of max_batch and of max_batch_bytes, so a dropped link re-sends at
 * most one batch's worth, as with one push in flight. Pushes go as fast as their results
 * come back: the server reads a session's next push only after it applied the one before, so
 * it sets the pace itself and does not count pushes against its message rate (protocol §8).
 *
 * The pull is pipelined: when a changes message says more=true, its header already gives
 * next_cursor, so the next pull is queued at once and the message is held; it is applied
 * in the WRITEABLE callback right after that pull went out. The server reads the log and
 * the link carries the next batch while this device applies the current one. Still one
 * pull in flight at a time (nothing in docs/protocol.md changes), and each batch is
 * applied with its next_cursor, in order: the stored cursor is always that of the last
 * batch committed, so a kill at any point repeats at most the batches received and not
 * committed. Batches are committed in groups (o.pull_commit changes, PULL_COMMIT_MS at
 * most, the engine's store_group_*): one field flush, one COMMIT and one fsync per group
 * instead of per batch; each batch still writes its own cursor inside the group, and a group
 * is committed at the end of the pull and whenever the session ends early, so the applied
 * batches of a cancelled or broken sync are kept.
 *
 * libwebsockets rules kept here (CONVENTIONS.md): a context per session and one service loop
 * on the calling thread; writes only from LWS_CALLBACK_CLIENT_WRITEABLE, one lws_write per
 * callback, LWS_PRE headroom in every queued frame; fragments reassembled up to a cap (close
 * 1009 above it); CONNECTION_ERROR ends the session (lws never reconnects: sync.c does, with
 * back-off); deadlines by an lws_sul timer, never by counting service calls; cancel from
 * another thread through lws_cancel_service() and LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *
 * Database work (applying results and pulled changes) happens inside the receive callback on
 * this thread: the handle is used by this thread only while the session runs.
 */
#include "internal.h"

#include "mpr.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum sstate { ST_CONNECTING, ST_HELLO, ST_PUSH, ST_PULL, ST_REVIEWS, ST_DONE };

#define TXQ_MAX 8
#define TICK_US (100 * 1000)
/* A pull group commits at least this often (ms): a kill loses at most about this much
 * applied work, and other handles on the replica see the pull advance. */
#define PULL_COMMIT_MS 1000

/* Pushes in flight at most (docs/protocol.md §5): the device numbers, encodes and compresses
 * push N+1 while the server applies push N, and a slow link carries it meanwhile. */
#define PUSH_WINDOW 2

typedef struct txframe {
    uint8_t *buf;   /* LWS_PRE + len bytes */
    size_t len;
} txframe;

/* A push sent and not answered yet. */
typedef struct push_flight {
    ob_batch b;     /* its changes, as sent (owned) */
    uint64_t id;    /* its batch id, echoed by its push_result */
} push_flight;

typedef struct session {
    fieldsync_db *db;
    fieldsync_sync_opts o;
    fieldsync_progress_cb cb;
    void *cb_ctx;
    fieldsync_sync_result *res;
    struct lws_context *ctx;
    struct lws *wsi;
    lws_sorted_usec_list_t sul;
    enum sstate state;
    bool done;
    bool close_now;       /* close from the next WRITEABLE */
    bool established;     /* the WebSocket handshake completed */
    int64_t close_by_ms;  /* after a clean finish: stop waiting for the close */
    int rc;
    int64_t deadline_ms;  /* connect or reply deadline */
    /* receive */
    uint8_t *rx;
    size_t rx_len, rx_cap, rx_max;
    /* send */
    txframe q[TXQ_MAX];
    int qn;
    wire_codec *codec;
    msgpack_sbuffer sb;
    uint32_t dict;        /* what we compress with (the server's welcome.dict) */
    /* protocol */
    uint32_t max_batch, max_frame;
    uint64_t batch_id;          /* of the last push sent */
    push_flight fl[PUSH_WINDOW];/* pushes in flight, oldest first: results come in this order */
    int nfl;
    uint64_t fl_last;           /* the last dseq of the newest push in flight (when nfl > 0) */
    bool push_stalled;          /* a push had a change not consumed (EREC_ABBREV): the pushes
                                 * after it in flight come back ESEQ_GAP, which is expected;
                                 * nothing more is sent until they are all answered, then the
                                 * next push starts from the first unconsumed change */
    int pushes;
    uint64_t cursor, log_end;   /* cursor: of the last batch applied (and committed) */
    /* pull pipelining: a changes message held until the pull after it is written */
    uint8_t *held;              /* its changes (owned; the bytes after the header) */
    size_t held_len, held_cap;
    uint32_t held_n;            /* changes in it */
    uint64_t held_next;         /* its next_cursor */
    bool apply_held;            /* held is waiting to be applied */
    change *cs;                 /* decoded changes of a batch (owned; reused: a fresh calloc
                                 * of ~1.6 MB per batch was page faults and zeroing) */
    size_t cs_cap;
    apply_result *ar;           /* their results (owned; reused for the same reason) */
    /* pull commit groups: batches applied into one store group, committed together */
    bool group_open;            /* a group holds applied, uncommitted batches */
    uint64_t group_changes;     /* changes applied in it */
    uint64_t group_received;    /* of which newly applied (into res->received at commit) */
    uint64_t group_cursor;      /* next_cursor of its last batch (stored by the hook) */
    int64_t group_ms;           /* when it began */
    fieldsync_progress prog;
    uint64_t push_total_bytes;
} session;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report(session *s)
{
    if (s->cb)
        s->cb(s->cb_ctx, &s->prog);
}

/* Ends the session with rc. A clean end closes the WebSocket properly from the next
 * WRITEABLE (bounded by the tick: 1 s); a failure stops the loop at once and leaves the
 * socket to lws_context_destroy() (a half-open handshake never becomes writeable). */
static void finish(session *s, int rc)
{
    if (s->state == ST_DONE) /* the first outcome stands */
        return;
    s->rc = rc;
    s->state = ST_DONE;
    s->close_by_ms = mono_ms() + 1000;
    if (rc || !s->wsi || !s->established) {
        s->done = true;
        if (s->ctx) /* lws_service() may be back in poll() without a deadline: wake it */
            lws_cancel_service(s->ctx);
        return;
    }
    s->close_now = true;
    lws_callback_on_writable(s->wsi);
}

static int failf(session *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(session *s, int code, const char *fmt, ...)
{
    if (s->state == ST_DONE)
        return code;
    /* format into a copy first: callers pass db->err itself as an argument ("%s", db->err),
     * and vsnprintf into the buffer it reads from is undefined (glibc left it empty, so the
     * reason of a local store failure was lost) */
    char msg[sizeof s->db->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(s->db->err, msg, sizeof msg);
    finish(s, code);
    return code;
}

/* Queues the message in s->sb as one frame (compressed when the server accepts it). */
static int send_msg(session *s)
{
    if (s->qn == TXQ_MAX)
        return failf(s, FIELDSYNC_EPROTOCOL, "send queue full");
    uint8_t *f;
    size_t len;
    int rc = wire_frame_encode(s->codec, s->sb.data, s->sb.size, s->dict, LWS_PRE, &f, &len);
    if (rc)
        return failf(s, FIELDSYNC_ENOMEM, "cannot encode a frame");
    uint8_t *buf = malloc(LWS_PRE + len);
    if (!buf)
        return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    memcpy(buf + LWS_PRE, f, len);
    s->q[s->qn++] = (txframe){.buf = buf, .len = len};
    s->res->bytes_up += len;
    s->prog.bytes_done += s->state == ST_PUSH ? len : 0;
    lws_callback_on_writable(s->wsi);
    return 0;
}

static msgpack_packer *pk_begin(session *s, msgpack_packer *pk)
{
    s->sb.size = 0;
    msgpack_packer_init(pk, &s->sb, msgpack_sbuffer_write);
    return pk;
}

static void arm_reply_deadline(session *s)
{
    s->deadline_ms = mono_ms() + s->o.reply_timeout_ms;
}

/* ---- steps ---------------------------------------------------------------------------- */

static int send_hello(session *s)
{
    fieldsync_db *db = s->db;
    uint64_t acked, cursor;
    int rc;
    if ((rc = kv_get_u64(db, "acked_dseq", &acked)) || (rc = kv_get_u64(db, "cursor", &cursor)))
        return failf(s, rc, "%s", db->err);
    s->cursor = cursor;
    wire_hello h = {0};
    h.device = db->device;
    h.token = db->token;
    h.token_len = (uint32_t)strlen(db->token);
    h.schema_version = (uint32_t)db->s->version;
    h.client_hlc = hlc_now(store_clock(db->st));
    h.acked_dseq = acked;
    h.cursor = cursor;
    h.dict = s->o.no_compress ? 0 : wire_dicts_latest(db->dicts);
    h.agent = fieldsync_version();
    h.agent_len = (uint32_t)strlen(h.agent);
    /* the outbox size, for the supervisors' device-health view (protocol §4 hello) */
    int64_t pending = sdk_count(db, "SELECT count(*) FROM dev_outbox");
    h.pending = pending > 0 ? (uint64_t)pending : 0;
    h.has_pending = true;
    msgpack_packer pk;
    if (wire_pack_hello(pk_begin(s, &pk), &h))
        return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    s->state = ST_HELLO;
    arm_reply_deadline(s);
    return send_msg(s);
}

static int start_pull(session *s);

/* Sends one more push if there is room in the window and something to send: the changes
 * after those in flight (outbox_next_batch_after). Sets *sent. */
static int push_one(session *s, bool *sent)
{
    fieldsync_db *db = s->db;
    *sent = false;
    size_t max_n = (size_t)(s->pushes == 0 ? s->o.first_batch : s->o.max_batch);
    if (max_n > s->max_batch)
        max_n = s->max_batch;
    size_t max_bytes = (size_t)s->o.max_batch_bytes;
    if (max_bytes + 64 > s->max_frame)
        max_bytes = s->max_frame > 128 ? s->max_frame - 64 : 64;
    /* Together the pushes in flight hold at most one batch (max_batch changes, max_batch_bytes
     * bytes), so a dropped link re-sends at most one batch's worth (docs/protocol.md §7), as
     * with one push in flight: each push after the small first one is at most half a batch. */
    if (s->pushes > 0) {
        max_n = max_n / PUSH_WINDOW ? max_n / PUSH_WINDOW : 1;
        max_bytes /= PUSH_WINDOW;
    }
    push_flight *f = &s->fl[s->nfl];
    int rc = outbox_next_batch_after(db, s->nfl ? s->fl_last : 0, max_n, max_bytes, &f->b);
    if (rc)
        return failf(s, rc, "%s", db->err);
    if (!f->b.n)
        return 0;
    s->state = ST_PUSH;
    f->id = ++s->batch_id;
    msgpack_packer pk;
    if (wire_pack_push_header(pk_begin(s, &pk), f->id, (uint32_t)f->b.n))
        return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->b.n; i++)
        if (msgpack_sbuffer_write(&s->sb, (const char *)f->b.items[i].body, f->b.items[i].len))
            return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    s->fl_last = f->b.items[f->b.n - 1].dseq;
    s->nfl++;
    s->pushes++;
    s->res->sent += f->b.n;
    arm_reply_deadline(s);
    if ((rc = send_msg(s)))
        return rc;
    *sent = true;
    return 0;
}

/* Fills the push window (PUSH_WINDOW pushes in flight), unless a push came back with a change
 * not consumed and the others are still out; with nothing in flight and nothing left to
 * send, the pull begins: never before every push result is in. */
static int push_next(session *s)
{
    bool sent = true;
    while (sent && !s->push_stalled && s->nfl < PUSH_WINDOW && s->state != ST_DONE) {
        int rc = push_one(s, &sent);
        if (rc)
            return rc;
    }
    if (!s->nfl && s->state != ST_DONE)
        return start_pull(s);
    return 0;
}

static int start_reviews(session *s)
{
    fieldsync_db *db = s->db;
    if (db->role < 0 || !(db->s->review_roles & (1u << db->role)))
        return finish(s, 0), 0;
    s->state = ST_REVIEWS;
    s->prog.phase = FIELDSYNC_PHASE_REVIEWS;
    report(s);
    msgpack_packer pk;
    pk_begin(s, &pk);
    if (msgpack_pack_array(&pk, 1) || msgpack_pack_uint8(&pk, MSG_REVIEWS))
        return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    arm_reply_deadline(s);
    return send_msg(s);
}

/* Asks for the changes after cursor (s->cursor, or a held batch's next_cursor). */
static int send_pull_from(session *s, uint64_t cursor)
{
    msgpack_packer pk;
    uint32_t max = (uint32_t)s->o.pull_batch;
    if (!max || max > s->max_batch)
        max = s->max_batch;
    if (wire_pack_pull(pk_begin(s, &pk), cursor, max))
        return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    arm_reply_deadline(s);
    return send_msg(s);
}

static int send_pull(session *s) { return send_pull_from(s, s->cursor); }

static int start_pull(session *s)
{
    if (s->o.push_only)
        return finish(s, 0), 0;
    s->state = ST_PULL;
    s->prog = (fieldsync_progress){.phase = FIELDSYNC_PHASE_PULL};
    s->prog.changes_total = s->log_end > s->cursor ? s->log_end - s->cursor : 0;
    report(s);
    return send_pull(s);
}

/* ---- messages ------------------------------------------------------------------------- */

static int on_welcome(session *s, mpr *r, uint32_t count)
{
    fieldsync_db *db = s->db;
    wire_welcome w;
    fs_error e = {0};
    if (s->state != ST_HELLO)
        return failf(s, FIELDSYNC_EPROTOCOL, "welcome out of turn");
    if (wire_read_welcome(r, count, &w, &e))
        return failf(s, FIELDSYNC_EPROTOCOL, "bad welcome: %s", e.msg);
    if (w.role >= db->s->n_roles)
        return failf(s, FIELDSYNC_EPROTOCOL, "welcome names role %u, unknown to schema v%d",
                     w.role, db->s->version);
    if (w.user_len > CHANGE_MAX_AUTHOR)
        return failf(s, FIELDSYNC_EPROTOCOL, "welcome: user name too long");
    s->max_batch = w.max_batch ? w.max_batch : WIRE_MAX_BATCH;
    if (s->max_batch > WIRE_MAX_BATCH)
        s->max_batch = WIRE_MAX_BATCH;
    s->max_frame = w.max_frame ? w.max_frame : WIRE_MAX_FRAME;
    if (s->max_frame > (16u << 20))
        s->max_frame = 16u << 20;
    s->rx_max = (size_t)s->max_frame + 16;
    s->dict = w.dict <= wire_dicts_latest(db->dicts) && !s->o.no_compress ? w.dict : 0;
    s->log_end = w.log_end;
    char user[CHANGE_MAX_AUTHOR + 1];
    memcpy(user, w.user, w.user_len);
    user[w.user_len] = '\0';
    hlc_recv(store_clock(db->st), w.server_hlc); /* a server far in the future is ignored */
    int rc = sdk_begin(db);
    if (!rc && !(rc = kv_set_text(db, "user", user)) &&
        !(rc = kv_set_text(db, "role", db->s->roles[w.role])) &&
        !(rc = outbox_welcome(db, w.server_dseq)) &&
        !(rc = outbox_clock_rewind(db, w.server_hlc)) && !(rc = sdk_save_clock(db)))
        rc = sdk_commit(db);
    else if (rc)
        sdk_rollback(db);
    if (rc)
        return failf(s, rc, "%s", db->err);
    snprintf(db->user, sizeof db->user, "%s", user);
    db->role = (int)w.role;
    kv_get_u64(db, "cursor", &s->cursor); /* outbox_welcome resets it after a server restore */
    if (s->cursor > w.log_end) {
        /* the server's log is shorter than our cursor (server restored from a backup):
         * pull from the start; applying twice has no effect; and it may have lost records
         * we hold, so no more abbreviated record ids */
        s->cursor = 0;
        if ((rc = outbox_distrust(db, w.server_dseq)))
            return failf(s, rc, "%s", db->err);
    }
    s->prog = (fieldsync_progress){.phase = FIELDSYNC_PHASE_PUSH};
    s->prog.changes_total = (uint64_t)sdk_count(db, "SELECT count(*) FROM dev_outbox");
    int64_t bytes = sdk_count(db, "SELECT coalesce(sum(length(body)), 0) FROM dev_outbox");
    s->prog.bytes_total = bytes > 0 ? (uint64_t)bytes : 0;
    report(s);
    return push_next(s);
}

static int on_push_result(session *s, mpr *r, uint32_t count)
{
    fieldsync_db *db = s->db;
    fs_error e = {0};
    uint64_t batch;
    uint32_t n;
    if (s->state != ST_PUSH || !s->nfl)
        return failf(s, FIELDSYNC_EPROTOCOL, "push_result out of turn");
    if (wire_read_push_result(r, count, &batch, &n, &e))
        return failf(s, FIELDSYNC_EPROTOCOL, "bad push_result: %s", e.msg);
    push_flight *f = &s->fl[0]; /* results come in push order (protocol §5) */
    if (batch != f->id)
        return failf(s, FIELDSYNC_EPROTOCOL, "push_result for batch %llu, expected %llu",
                     (unsigned long long)batch, (unsigned long long)f->id);
    wire_result *res = n ? calloc(n, sizeof *res) : NULL;
    if (n && !res)
        return failf(s, FIELDSYNC_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++)
        if (wire_read_result(r, &res[i], &e)) {
            free(res);
            return failf(s, FIELDSYNC_EPROTOCOL, "bad push_result: %s", e.msg);
        }
    ob_counts c = {0};
    int rc = outbox_apply_results(db, &f->b, res, n, &c);
    free(res);
    s->res->accepted += c.accepted;
    s->res->duplicates += c.duplicates;
    s->res->refused += c.refused;
    s->prog.changes_done += c.accepted + c.duplicates + c.refused;
    report(s);
    /* an earlier push in flight had a change the server did not consume: this one's changes
     * are ESEQ_GAP, as expected; they stay in the outbox (everything else was committed) and
     * go again after it */
    bool gaps_expected = s->push_stalled;
    if (rc == FIELDSYNC_ESEQUENCE && gaps_expected) {
        rc = 0;
        db->err[0] = '\0';
    }
    if (rc)
        return failf(s, rc, "%s", db->err);
    if (c.accepted + c.duplicates + c.refused + c.resend == 0 && !(gaps_expected && c.gaps))
        return failf(s, FIELDSYNC_EPROTOCOL, "push_result answered none of the %zu changes sent",
                     f->b.n);
    if (c.resend)
        s->push_stalled = true;
    /* the oldest leaves the window; its ob_batch (cleared) is reused at the back */
    ob_batch_clear(&f->b);
    push_flight done = s->fl[0];
    memmove(s->fl, s->fl + 1, (size_t)(PUSH_WINDOW - 1) * sizeof *s->fl);
    s->fl[PUSH_WINDOW - 1] = done;
    s->nfl--;
    if (!s->nfl)
        s->push_stalled = false; /* resend from the first change not consumed */
    return push_next(s);
}

/* Commits the open pull group, if any: its batches and the cursor of the last one become
 * durable together; only then do they count as received. */
static int group_commit(session *s)
{
    if (!s->group_open)
        return 0;
    s->group_open = false;
    int rc = outbox_pull_commit(s->db);
    if (rc)
        return rc;
    s->res->received += s->group_received;
    s->res->cursor = s->group_cursor;
    s->group_received = s->group_changes = 0;
    return 0;
}

/* Applies the n changes at r with next_cursor next, then continues: when the batch was held
 * (more=true, its successor already requested) nothing more to send; else the pull is over
 * and the review items are next. A held batch joins the open pull group (one is begun if
 * none is open), which commits once it holds o.pull_commit changes or is PULL_COMMIT_MS
 * old; the last batch commits with the group, or alone. With pull_commit 1 every batch is
 * its own transaction. */
static int apply_changes(session *s, mpr *r, uint32_t n, uint64_t next, bool held)
{
    fieldsync_db *db = s->db;
    fs_error e = {0};
    if (n > s->cs_cap) { /* change_unpack fills what it uses: no zeroing needed */
        change *p = realloc(s->cs, n * sizeof *p);
        apply_result *q = p ? realloc(s->ar, n * sizeof *q) : NULL;
        if (p)
            s->cs = p;
        if (!p || !q)
            return failf(s, FIELDSYNC_ENOMEM, "out of memory");
        s->ar = q;
        s->cs_cap = n;
    }
    change *cs = s->cs;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *save = r->p;
        int rc = change_unpack(r, db->s, true, &cs[k], &e);
        if (rc == 0) {
            k++;
            continue;
        }
        /* a change this schema cannot represent (the server converts to our version, so
         * this is the server's bug): skip it alone rather than stop syncing forever */
        r->p = save;
        if (mpr_skip(r, MPR_MAX_DEPTH))
            return failf(s, FIELDSYNC_EPROTOCOL, "bad changes: %s", e.msg);
        snprintf(s->res->message, sizeof s->res->message, "skipped a pulled change: %s", e.msg);
    }
    int rc = 0;
    bool grouped = s->o.pull_commit > 1 && (held || s->group_open);
    if (grouped && !s->group_open) {
        if ((rc = outbox_pull_begin(db)))
            return failf(s, rc, "%s", db->err);
        s->group_open = true;
        s->group_ms = mono_ms();
    }
    uint64_t applied;
    rc = outbox_apply_pulled(db, cs, k, next, s->ar, &applied);
    if (rc)
        return failf(s, rc, "%s", db->err);
    s->cursor = next;
    if (grouped) {
        s->group_received += applied;
        s->group_changes += n;
        s->group_cursor = next;
        if ((!held || s->group_changes >= (uint64_t)s->o.pull_commit ||
             mono_ms() - s->group_ms >= PULL_COMMIT_MS) &&
            (rc = group_commit(s)))
            return failf(s, rc, "%s", db->err);
    } else {
        s->res->received += applied;
        s->res->cursor = next;
    }
    s->prog.changes_done += n;
    if (s->prog.changes_done > s->prog.changes_total)
        s->prog.changes_total = s->prog.changes_done;
    report(s);
    return held ? 0 : start_reviews(s);
}

/* Applies the held batch, if any (after its successor pull was written, or before the next
 * changes message is handled, whichever comes first). */
static int apply_held(session *s)
{
    if (!s->apply_held)
        return 0;
    s->apply_held = false;
    mpr r;
    mpr_init(&r, s->held, s->held_len);
    return apply_changes(s, &r, s->held_n, s->held_next, true);
}

static int on_changes(session *s, mpr *r, uint32_t count)
{
    fs_error e = {0};
    uint64_t next;
    bool more;
    uint32_t n;
    if (s->state != ST_PULL)
        return failf(s, FIELDSYNC_EPROTOCOL, "changes out of turn");
    int rc = apply_held(s);
    if (rc || s->state != ST_PULL)
        return rc;
    if (wire_read_changes(r, count, &next, &more, &n, &e))
        return failf(s, FIELDSYNC_EPROTOCOL, "bad changes: %s", e.msg);
    if (!more)
        return apply_changes(s, r, n, next, false);
    /* hold the batch, ask for the next one now, apply once that pull is on the wire */
    size_t len = mpr_left(r);
    if (len > s->held_cap) {
        uint8_t *p = realloc(s->held, len);
        if (!p)
            return failf(s, FIELDSYNC_ENOMEM, "out of memory");
        s->held = p;
        s->held_cap = len;
    }
    if (len)
        memcpy(s->held, r->p, len);
    s->held_len = len;
    s->held_n = n;
    s->held_next = next;
    s->apply_held = true;
    return send_pull_from(s, next);
}

static int on_reviews(session *s, mpr *r, uint32_t count)
{
    if (s->state != ST_REVIEWS)
        return failf(s, FIELDSYNC_EPROTOCOL, "reviews out of turn");
    uint64_t opened, total;
    int rc = reviews_store(s->db, r, count, &opened, &total);
    if (rc)
        return failf(s, rc, "%s", s->db->err);
    s->res->reviews_opened += opened;
    s->res->reviews_pending = total;
    finish(s, 0);
    return 0;
}

static int on_error(session *s, mpr *r, uint32_t count)
{
    wire_error we;
    fs_error e = {0};
    if (wire_read_error(r, count, &we, &e))
        return failf(s, FIELDSYNC_EPROTOCOL, "bad error message: %s", e.msg);
    char text[WIRE_MAX_TEXT + 1];
    snprintf(text, sizeof text, "%.*s", (int)we.text_len, we.text);
    snprintf(s->res->message, sizeof s->res->message, "server: %s: %.200s", wire_err_name(we.code),
             text);
    switch (we.code) {
    case WERR_CURSOR:
        /* our cursor is beyond the server's log: start again from 0 (duplicates are no-ops) */
        if (s->state == ST_PULL && (s->cursor || s->apply_held)) {
            s->apply_held = false; /* a held batch was never applied: pull it again too */
            s->cursor = 0;
            if (outbox_distrust(s->db, UINT64_MAX)) /* a restored server: see on_welcome */
                return failf(s, FIELDSYNC_ESTORE, "%s", s->db->err);
            return send_pull(s);
        }
        return failf(s, FIELDSYNC_EPROTOCOL, "server: CURSOR: %s", text);
    case WERR_AUTH: return failf(s, FIELDSYNC_EAUTH, "server refused the device: %s", text);
    case WERR_BUSY: return failf(s, FIELDSYNC_EBUSY, "server busy: %s", text);
    case WERR_SHUTDOWN:
    case WERR_IDLE: return failf(s, FIELDSYNC_ENETWORK, "server closed: %s: %s",
                                 wire_err_name(we.code), text);
    default:
        return failf(s, FIELDSYNC_EPROTOCOL, "server error %s: %s", wire_err_name(we.code), text);
    }
}

static void on_message(session *s, const uint8_t *frame, size_t len)
{
    const uint8_t *body;
    size_t blen;
    int rc = wire_frame_decode(s->codec, frame, len, s->rx_max, &body, &blen);
    if (rc) {
        failf(s, FIELDSYNC_EPROTOCOL, "bad frame from server: %s", fs_strerror(rc));
        return;
    }
    s->res->bytes_down += len;
    if (s->state == ST_PULL)
        s->prog.bytes_done += len;
    mpr r;
    mpr_init(&r, body, blen);
    uint32_t type, count;
    if (wire_read_type(&r, &type, &count)) {
        failf(s, FIELDSYNC_EPROTOCOL, "bad message from server");
        return;
    }
    arm_reply_deadline(s);
    switch (type) {
    case MSG_WELCOME: on_welcome(s, &r, count); break;
    case MSG_PUSH_RESULT: on_push_result(s, &r, count); break;
    case MSG_CHANGES: on_changes(s, &r, count); break;
    case MSG_REVIEWS: on_reviews(s, &r, count); break;
    case MSG_ERROR: on_error(s, &r, count); break;
    case MSG_PING: {
        uint64_t nonce;
        fs_error e = {0};
        msgpack_packer pk;
        if (wire_read_ping(&r, count, &nonce, &e) == 0 &&
            wire_pack_ping(pk_begin(s, &pk), true, nonce) == 0)
            send_msg(s);
        break;
    }
    case MSG_PONG:
    case MSG_LEDGER: break;
    default: failf(s, FIELDSYNC_EPROTOCOL, "unexpected message type %u", type);
    }
}

/* ---- libwebsockets ------------------------------------------------------------------- */

static void tick(lws_sorted_usec_list_t *sul)
{
    session *s = lws_container_of(sul, session, sul);
    if (s->state != ST_DONE) {
        if (sdk_cancelled(s->db))
            failf(s, FIELDSYNC_ECANCELLED, "cancelled");
        else if (mono_ms() > s->deadline_ms)
            failf(s, FIELDSYNC_ENETWORK,
                  s->state == ST_CONNECTING ? "timed out connecting to %s"
                                            : "no answer from %s: link lost",
                  s->db->server);
    }
    if (s->state == ST_DONE && !s->done && (!s->wsi || mono_ms() > s->close_by_ms)) {
        s->done = true;
        lws_cancel_service(s->ctx);
    }
    if (!s->done)
        lws_sul_schedule(s->ctx, 0, &s->sul, tick, TICK_US);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    session *s = (session *)lws_context_user(lws_get_context(wsi));
    if (!s)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        s->wsi = NULL;
        if (s->state != ST_DONE)
            failf(s, FIELDSYNC_ENETWORK, "cannot connect to %s: %s", s->db->server,
                  in ? (const char *)in : "connection failed");
        s->done = true;
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        s->established = true;
        send_hello(s);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (s->state == ST_DONE)
            break;
        if (!lws_frame_is_binary(wsi)) {
            failf(s, FIELDSYNC_EPROTOCOL, "server sent a text message");
            break;
        }
        if (lws_is_first_fragment(wsi))
            s->rx_len = 0;
        if (s->rx_len + len > s->rx_max) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            failf(s, FIELDSYNC_EPROTOCOL, "server message larger than %zu bytes", s->rx_max);
            return -1;
        }
        if (s->rx_len + len > s->rx_cap) {
            size_t cap = s->rx_cap ? s->rx_cap : 65536;
            while (cap < s->rx_len + len)
                cap *= 2;
            uint8_t *p = realloc(s->rx, cap);
            if (!p) {
                failf(s, FIELDSYNC_ENOMEM, "out of memory");
                return -1;
            }
            s->rx = p;
            s->rx_cap = cap;
        }
        memcpy(s->rx + s->rx_len, in, len);
        s->rx_len += len;
        arm_reply_deadline(s);
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            on_message(s, s->rx, s->rx_len);
            s->rx_len = 0;
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (s->qn) {
            txframe f = s->q[0];
            memmove(s->q, s->q + 1, (size_t)(s->qn - 1) * sizeof *s->q);
            s->qn--;
            int n = lws_write(wsi, f.buf + LWS_PRE, f.len, LWS_WRITE_BINARY);
            free(f.buf);
            if (n < (int)f.len) {
                failf(s, FIELDSYNC_ENETWORK, "write to %s failed", s->db->server);
                return -1;
            }
            if (s->qn)
                lws_callback_on_writable(wsi);
            else if (s->close_now)
                lws_callback_on_writable(wsi);
            else if (s->apply_held && s->state == ST_PULL)
                apply_held(s); /* the next pull is out: apply while the server answers */
            break;
        }
        if (s->close_now) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        s->wsi = NULL;
        if (s->state != ST_DONE)
            failf(s, FIELDSYNC_ENETWORK, "connection to %s closed during %s", s->db->server,
                  s->state == ST_HELLO ? "hello" : s->state == ST_PUSH ? "push" : "pull");
        s->done = true;
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (s->state != ST_DONE && sdk_cancelled(s->db))
            failf(s, FIELDSYNC_ECANCELLED, "cancelled");
        break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {WIRE_SUBPROTOCOL, callback, 0, 65536, 0, NULL, 65536},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int connect_to(session *s)
{
    char url[256];
    snprintf(url, sizeof url, "%s", s->db->server);
    const char *prot, *addr, *path;
    int port;
    if (lws_parse_uri(url, &prot, &addr, &port, &path))
        return failf(s, FIELDSYNC_EINVAL, "bad server URL %s", s->db->server);
    bool tls = !strcmp(prot, "wss");
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = s->ctx;
    ci.address = addr;
    ci.port = port ? port : tls ? 443 : 80;
    ci.path = "/sync";
    ci.host = addr;
    ci.origin = addr;
    ci.protocol = WIRE_SUBPROTOCOL;
    ci.local_protocol_name = WIRE_SUBPROTOCOL;
    ci.ssl_connection = tls ? LCCSCF_USE_SSL : 0;
    if (tls && getenv("FIELDSYNC_TLS_INSECURE"))
        ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    ci.pwsi = &s->wsi;
    s->deadline_ms = mono_ms() + s->o.connect_timeout_ms;
    if (!lws_client_connect_via_info(&ci)) {
        s->wsi = NULL;
        /* CONNECTION_ERROR may have been delivered already with the reason */
        if (s->state != ST_DONE)
            failf(s, FIELDSYNC_ENETWORK, "cannot connect to %s", s->db->server);
        s->done = true;
        return s->rc;
    }
    return 0;
}

int session_run(fieldsync_db *db, const fieldsync_sync_opts *o, fieldsync_progress_cb cb,
                void *ctx, fieldsync_sync_result *res)
{
    session *s = calloc(1, sizeof *s);
    if (!s)
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    s->db = db;
    s->o = *o;
    s->cb = cb;
    s->cb_ctx = ctx;
    s->res = res;
    s->max_batch = WIRE_MAX_BATCH;
    s->max_frame = WIRE_MAX_FRAME;
    s->rx_max = WIRE_MAX_FRAME + 16;
    msgpack_sbuffer_init(&s->sb);
    int rc = 0;
    if (wire_codec_new(db->dicts, &s->codec)) {
        rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
        goto out;
    }
    const char *lvl = getenv("FIELDSYNC_LWS_LOG");
    lws_set_log_level(lvl ? atoi(lvl) : 0, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = s;
    info.fd_limit_per_thread = 4;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        rc = sdk_fail(db, FIELDSYNC_ENETWORK, "cannot create the network context");
        goto out;
    }
    pthread_mutex_lock(&db->mu);
    db->lws = s->ctx;
    bool cancelled = db->cancel != 0;
    pthread_mutex_unlock(&db->mu);
    s->prog.phase = FIELDSYNC_PHASE_CONNECT;
    report(s);
    if (cancelled)
        failf(s, FIELDSYNC_ECANCELLED, "cancelled");
    else
        connect_to(s);
    lws_sul_schedule(s->ctx, 0, &s->sul, tick, TICK_US);
    while (!s->done)
        if (lws_service(s->ctx, 0) < 0)
            break;
    lws_sul_cancel(&s->sul);
    pthread_mutex_lock(&db->mu);
    db->lws = NULL;
    pthread_mutex_unlock(&db->mu);
    lws_context_destroy(s->ctx);
    rc = s->state == ST_DONE ? s->rc : FIELDSYNC_ENETWORK;
    /* cancelled, link lost or a later batch failed: the batches applied in the open group
     * are whole, each with its cursor, so they are kept (committed) */
    if (s->group_open) {
        int grc = group_commit(s);
        if (grc && !rc)
            rc = grc;
    }
    if (rc && rc != FIELDSYNC_ENETWORK && !s->db->err[0])
        sdk_fail(db, rc, "%s", fieldsync_strerror(rc));
out:
    for (int i = 0; i < s->qn; i++)
        free(s->q[i].buf);
    for (int i = 0; i < PUSH_WINDOW; i++)
        ob_batch_free(&s->fl[i].b);
    wire_codec_free(s->codec);
    msgpack_sbuffer_destroy(&s->sb);
    free(s->rx);
    free(s->held);
    free(s->cs);
    free(s->ar);
    free(s);
    return rc;
}

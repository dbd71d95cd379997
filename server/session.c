/*
 * session.c — one WebSocket connection speaking fieldsync.v1: the state machine of
 * docs/protocol.md §5, message reassembly and the send queue.
 *
 *   CONNECTED --hello ok--> READY --(push | pull | subscribe | reviews | ping)*--> READY
 *   any state --error that closes--> CLOSING --queue drained--> close frame --> gone
 *
 * Input: lws delivers a message in fragments (rx_buffer_size chunks); they are appended to
 * s->rx until lws_is_final_fragment(), with a hard cap of max_frame (1 MiB): past it the
 * session gets TOO_BIG and WebSocket close 1009, and the rest of that message is discarded
 * unread. A complete message is then decoded and dispatched to its handle_*.c; those that
 * do store work (hello, push, pull, reviews) are parked first and run by the work timer in
 * bounded slices between socket passes (see "parking" below).
 *
 * Output: every message is framed (wire_frame_encode, compressed with the dictionary the
 * device announced) into its own heap block with LWS_PRE bytes of headroom and appended to a
 * per-session queue. LWS_CALLBACK_SERVER_WRITEABLE writes queued frames and asks for another
 * callback while frames remain. The one other place that writes is the end of a work
 * slice's COMMIT (write_slice_frames): the frames that COMMIT queued go out at once to each
 * socket that takes them, instead of after the next poll() over every connection (the
 * live latency, docs/performance.md §4). The rule for writing: in WRITEABLE the first frame
 * unconditionally (lws promised the socket is writeable), after a COMMIT not even the first
 * without asking; each further one only if lws_send_pipe_choked() returns 0 just before it
 * (no partial write is buffered inside lws and poll says the kernel takes more), at most
 * 256 per call (SRV_WRITES_PER_CALLBACK). A
 * partial write is thus always the last write of a callback, which is what lws' one write
 * per WRITEABLE guarantees; one frame per callback meant one frame per loop pass, too few
 * for a subscriber on a busy server (docs/performance.md §4), and 64 became too few once a
 * slice's pushes were committed together (a township subscriber got a few hundred events per
 * pass and passed its 1,000-event bound: RESYNC). A
 * session whose queue passes 1 MiB stops being read (lws_rx_flow_control) until it drains,
 * and one past 16 MiB (a peer that asks and never reads) is dropped with LIMIT.
 *
 * Once an error that closes is queued the session is CLOSING: further input is ignored, the
 * queue still drains (so a push_result committed before a shutdown reaches the device), then
 * the close frame goes out. A closing peer that does not read is cut after 5 s (tick).
 */
#include "server.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void session_packer(server *srv, msgpack_packer *pk)
{
    srv->out.size = 0;
    msgpack_packer_init(pk, &srv->out, msgpack_sbuffer_write);
}

static void queue_clear(session *s)
{
    txframe *f = s->q_head;
    while (f) {
        txframe *n = f->next;
        free(f);
        f = n;
    }
    s->q_head = s->q_tail = NULL;
    s->q_bytes = 0;
    s->q_ledger = 0;
}

/* Reads from the peer are stopped while its queue is large (rx_paused: a peer that asks and
 * does not read) or while one of its messages is parked (the next one must wait for it),
 * never while closing (lws must read the peer's close frame). */
static void rx_flow_update(session *s)
{
    bool stop = s->state != SS_CLOSING && (s->rx_paused || s->park);
    if (stop == s->rx_stopped)
        return;
    lws_rx_flow_control(s->wsi, stop ? 0 : 1);
    s->rx_stopped = stop;
}

/* Frames body and appends it to the queue. force: ignore the queue bound (errors).
 * stateless: body says nothing read from the store (a pong, an error), so it need not wait
 * for a push group's sync (durable.c) unless a frame before it in the queue does. */
static int queue_body(session *s, const void *body, size_t len, bool ledger, bool force,
                      bool stateless)
{
    server *srv = s->srv;
    uint8_t *frame;
    size_t flen;
    int rc = wire_frame_encode(srv->enc, body, len, s->dict, LWS_PRE, &frame, &flen);
    if (rc)
        return rc;
    if (!force && s->q_bytes + flen > SRV_TXQ_MAX_BYTES)
        return FS_EDEC_TOOBIG;
    txframe *f = malloc(sizeof *f + LWS_PRE + flen);
    if (!f)
        return FS_ENOMEM;
    f->next = NULL;
    f->len = flen;
    f->ledger = ledger;
    /* after a push group's COMMIT: held until it is synced, in queue order */
    bool held_before = s->q_tail && s->q_tail->gen > srv->dur_done;
    f->gen = stateless && !held_before ? 0 : durable_tag(srv);
    memcpy(f->data + LWS_PRE, frame, flen);
    if (s->q_tail)
        s->q_tail->next = f;
    else
        s->q_head = f;
    s->q_tail = f;
    s->q_bytes += flen;
    s->q_ledger += ledger;
    srv->m.messages_out++;
    if (!s->rx_paused && s->q_bytes > SRV_TXQ_PAUSE_BYTES && s->state != SS_CLOSING) {
        s->rx_paused = true;
        rx_flow_update(s);
    }
    if (f->gen && !s->on_held) { /* written by session_release_held */
        s->on_held = true;
        s->held_next = srv->held_head;
        srv->held_head = s;
    }
    if (!f->gen || f != s->q_head)
        lws_callback_on_writable(s->wsi);
    if (srv->in_slice && !s->on_out) { /* written when the slice's COMMIT is done */
        s->on_out = true;
        s->out_next = srv->out_head;
        srv->out_head = s;
    }
    return 0;
}

static int close_code_for(int code)
{
    switch (code) {
    case WERR_TOO_BIG: return LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE; /* 1009, protocol §1 */
    case WERR_SHUTDOWN: return LWS_CLOSE_STATUS_GOINGAWAY;
    case WERR_INTERNAL: return LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
    case WERR_BAD_FRAME:
    case WERR_UNKNOWN_MESSAGE:
    case WERR_UNEXPECTED: return LWS_CLOSE_STATUS_PROTOCOL_ERR;
    case WERR_AUTH:
    case WERR_SCHEMA:
    case WERR_LIMIT: return LWS_CLOSE_STATUS_POLICY_VIOLATION;
    default: return LWS_CLOSE_STATUS_NORMAL;
    }
}

static void start_closing(session *s, int close_code)
{
    s->state = SS_CLOSING;
    s->closing_since = srv_mono_ms();
    s->close_code = close_code;
    s->rx_paused = false;
    rx_flow_update(s); /* let lws read the peer's close frame */
    lws_callback_on_writable(s->wsi);
}

void session_error(session *s, int code, bool closes, const char *fmt, ...)
{
    if (s->state == SS_CLOSING)
        return; /* one closing error per session */
    char text[WIRE_MAX_TEXT + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    srv_log(code == WERR_INTERNAL ? SLOG_ERROR : SLOG_INFO, "%s: error %s: %s", s->peer,
            wire_err_name(code), text);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (!wire_pack_error(&pk, code, text, closes))
        queue_body(s, sb.data, sb.size, false, true, true);
    msgpack_sbuffer_destroy(&sb);
    if (code > 0 && code < 16)
        s->srv->m.errors_sent[code]++;
    if (closes)
        start_closing(s, close_code_for(code));
}

static int send_body(session *s, const void *body, size_t len, bool ledger, bool stateless)
{
    if (s->state == SS_CLOSING)
        return 0; /* the session is going away; the peer will resend what it needs */
    int rc = queue_body(s, body, len, ledger, false, stateless);
    if (rc == FS_EDEC_TOOBIG) {
        /* the peer asks and does not read: drop what is queued, tell it why, close */
        queue_clear(s);
        session_error(s, WERR_LIMIT, true,
                      "more than %u bytes waiting to be sent: read your messages",
                      SRV_TXQ_MAX_BYTES);
    } else if (rc) {
        session_error(s, WERR_INTERNAL, true, "cannot queue a message: %s", fs_strerror(rc));
    }
    return rc;
}

int session_send(session *s, const void *body, size_t len, bool ledger)
{
    return send_body(s, body, len, ledger, false);
}

unsigned session_count_device(server *srv, const rid_t *device)
{
    unsigned n = 0;
    for (session *s = srv->sessions; s; s = s->next)
        n += s->state == SS_READY && !rid_cmp(&s->device, device);
    return n;
}

static void park_drop(session *s);

void sessions_shutdown(server *srv)
{
    for (session *s = srv->sessions; s; s = s->next) {
        park_drop(s); /* not applied, not acknowledged: the device sends it again */
        session_error(s, WERR_SHUTDOWN, true, "server stopping; reconnect later");
    }
    lws_sul_cancel(&srv->work);
    srv->work_due = false;
}

/* Re-reads the device and the user's scope after the admin changed the tables: a revoked
 * device or a rotated token ends the session, a changed scope applies from now on. */
bool session_device_valid(session *s)
{
    srv_device d;
    int rc = srvdb_device_get(s->srv->db, &s->srv->device_stmt, &s->device, &d);
    if (rc == FS_ENOTFOUND || (!rc && d.revoked_ms)) {
        session_error(s, WERR_AUTH, true, "device revoked: enrol the device again");
        return false;
    }
    if (!rc && memcmp(d.token_hash, s->token_hash, sizeof d.token_hash)) {
        session_error(s, WERR_AUTH, true,
                      "the device's token was replaced: connect again with the new token");
        return false;
    }
    return true; /* or the table cannot be read now: keep the old view */
}

static void session_refresh(session *s)
{
    server *srv = s->srv;
    if (!session_device_valid(s))
        return;
    srv_user u;
    if (srvdb_user_get(srv->db, s->user.id, &u))
        return;
    user_scope sc;
    if (scope_load(srv, &u, &sc))
        return;
    scope_free(&s->scope);
    s->scope = sc;
}

void sessions_tick(server *srv, bool admin_changed)
{
    int64_t now = srv_mono_ms();
    for (session *s = srv->sessions; s; s = s->next) {
        /* A session that is not read because it waits for the server (a parked message:
         * its turn in the work slices can take tens of seconds on a saturated market day)
         * or because its long queue is still moving to the peer, is not idle and not dead:
         * its peer's answer to lws' keep-alive ping cannot be read while it waits, and lws
         * would hang it up 45 s after the last pong (main.c), as it did to 640-1,316 of
         * 2,000 devices on a loaded machine. A session stopped because its peer does not
         * read (the queue does not move) gets no such pass. */
        if (s->state != SS_CLOSING && (s->park || (s->rx_paused && s->tx_moved))) {
            lws_validity_confirmed(s->wsi);
            s->last_rx = s->last_msg = now;
        }
        s->tx_moved = false;
        if (s->state != SS_CLOSING && srv->cfg.idle_timeout_s > 0 &&
            now - s->last_rx >= (int64_t)srv->cfg.idle_timeout_s * 1000)
            session_error(s, WERR_IDLE, true, "no message for %d s", srv->cfg.idle_timeout_s);
        else if (s->state != SS_CLOSING && srv->cfg.idle_timeout_s > 0 &&
                 now - s->last_msg >= 2 * (int64_t)srv->cfg.idle_timeout_s * 1000)
            /* bytes keep coming but no message completes: a trickle (slowloris) that would
             * otherwise hold the session and its buffer for ever */
            session_error(s, WERR_IDLE, true, "no complete message for %d s: sending too slowly",
                          2 * srv->cfg.idle_timeout_s);
        else if (s->state == SS_READY && admin_changed)
            session_refresh(s);
        if (s->state == SS_CLOSING && now - s->closing_since > SRV_CLOSE_GRACE_S * 1000)
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/* ---- parking: the store's work in slices between socket passes ---------------------- *
 *
 * One lws_service() pass calls RECEIVE for every socket that has data. If each push were
 * applied there, a pass during which 2,000 devices push would run for seconds (2-3 ms of
 * store work per push) before any WRITEABLE: push results, pongs and ledger events would wait
 * for the whole pass, and a subscriber would get one frame per pass. So messages that do
 * store work (hello, push, pull, reviews) are decoded in RECEIVE and *parked*: the decoded
 * body is copied to the session, reading from that session stops (rx flow control; its next
 * message waits, so a session's messages still run in order), and the session joins one of
 * two FIFO lanes. The work timer (an lws_sul, due at once) runs parked messages for at most
 * SRV_WORK_SLICE_US (10 ms), then lets the loop go round: poll, every socket's reads and
 * writes, then the next slice. A pass is therefore bounded by one slice plus the sockets'
 * own work, whatever the load. Idle, a parked message waits one loop iteration.
 *
 * Lanes: a push whose body is at most SRV_PARK_SMALL_BYTES (4 KiB: a few visits, what a
 * device sends right after an entry, or a page's review resolution) and a reviews request
 * are *interactive*; hellos, pulls and bigger pushes (a week's backlog) are *bulk*. A slice
 * runs interactive messages first, bulk ones for the rest of it but never for less than half
 * of it while any wait, so neither lane starves. Shortest job first: on market day a single
 * visit pushed during the rush waits for at most a slice or two instead of behind every
 * backlog that arrived before it (seconds), which is what makes the live ledger live
 * (docs/performance.md §4); the backlogs take as long as before, in total.
 *
 * Nothing about durability changes: a parked push has not been applied and nothing was
 * acknowledged; a session that closes or is shut down while parked loses the message, and
 * the device sends it again. Cheap messages (ping, subscribe, error) run at once when
 * nothing of their session is parked.
 *
 * Group commit: the pushes of one slice share one store transaction (handle_push.c), which
 * push_group_end() commits when the slice ends, or before any other parked message runs
 * (what a hello, pull or reviews request reads or writes must not see uncommitted pushes);
 * their results and ledger events are queued after that COMMIT. One COMMIT (one fsync with
 * synchronous=FULL) per slice instead of one per push. When bulk work waits, the
 * interactive messages a slice ran are committed first as a group of their own and their
 * frames written (write_slice_frames) before the bulk part: a visit's ledger event does not
 * wait for 10 ms of backlogs and their COMMIT (one more fsync per such slice). */

static void work_run(lws_sorted_usec_list_t *sul);
static void session_dispatch(session *s, const uint8_t *body, size_t blen);
static void write_slice_frames(server *srv);

static void work_schedule(server *srv)
{
    if (srv->work_due)
        return;
    srv->work_due = true;
    lws_sul_schedule(srv->ctx, 0, &srv->work, work_run, 1);
}

/* -1: run at once; otherwise the lane to park the message in. */
static int message_lane(session *s, const uint8_t *body, size_t blen)
{
    if (s->state == SS_CLOSING)
        return -1;
    mpr r;
    mpr_init(&r, body, blen);
    uint32_t type, count;
    if (wire_read_type(&r, &type, &count))
        return -1; /* the dispatch answers BAD_FRAME at once */
    switch (type) {
    case MSG_PUSH: return blen <= SRV_PARK_SMALL_BYTES ? PARK_INTERACTIVE : PARK_BULK;
    case MSG_REVIEWS: return PARK_INTERACTIVE;
    case MSG_HELLO:
    case MSG_PULL: return PARK_BULK;
    default: return -1;
    }
}

/* Copies body (it lives in the shared decoder) and queues the session for the work timer. */
static void park_message(session *s, const uint8_t *body, size_t blen, unsigned lane)
{
    server *srv = s->srv;
    uint8_t *p = malloc(blen ? blen : 1);
    if (!p) {
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return;
    }
    memcpy(p, body, blen);
    s->park = p;
    s->park_len = blen;
    s->park_next = NULL;
    s->park_lane = lane;
    s->park_at = srv_mono_ms();
    if (srv->park_tail[lane])
        srv->park_tail[lane]->park_next = s;
    else
        srv->park_head[lane] = s;
    srv->park_tail[lane] = s;
    rx_flow_update(s);
    work_schedule(srv);
}

/* Takes s (parked) off the FIFO: O(1) for the head, a walk otherwise (close, fallback). */
static void park_unlink(session *s)
{
    server *srv = s->srv;
    unsigned lane = s->park_lane;
    session *prev = NULL, **pp = &srv->park_head[lane];
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->park_next;
    }
    if (!*pp)
        return;
    *pp = s->park_next;
    if (srv->park_tail[lane] == s)
        srv->park_tail[lane] = prev;
    s->park_next = NULL;
}

/* Forgets s's parked message without running it. */
static void park_drop(session *s)
{
    if (!s->park)
        return;
    park_unlink(s);
    free(s->park);
    s->park = NULL;
    s->park_len = 0;
}

static bool message_is_push(const uint8_t *body, size_t blen)
{
    mpr r;
    mpr_init(&r, body, blen);
    uint32_t type, count;
    return wire_read_type(&r, &type, &count) == 0 && type == MSG_PUSH;
}

/* Runs s's parked message (unless s is closing) and lets s be read again. */
static void park_run(session *s)
{
    if (s->srv->lt)
        s->srv->lt->cur.n_run++;
    park_unlink(s);
    uint8_t *body = s->park;
    size_t blen = s->park_len;
    s->park = NULL;
    s->park_len = 0;
    if (s->srv->in_slice && !message_is_push(body, blen))
        push_group_end(s->srv); /* what it reads or writes must see committed pushes only */
    if (s->state != SS_CLOSING)
        session_dispatch(s, body, blen);
    free(body);
    rx_flow_update(s);
    durable_poll(s->srv); /* frames of the previous group's COMMIT, once it is synced */
}

/* Tests (FIELDSYNC_FAULT=park_hold:MS): true when s's message has waited MS; otherwise
 * schedules the work timer for when it will have. Always true in production. */
static bool park_ripe(session *s)
{
    unsigned hold = fault_park_hold_ms();
    if (!s || !hold)
        return s != NULL;
    int64_t wait = s->park_at + hold - srv_mono_ms();
    if (wait <= 0)
        return true;
    if (!s->srv->work_due) {
        s->srv->work_due = true;
        lws_sul_schedule(s->srv->ctx, 0, &s->srv->work, work_run, (lws_usec_t)wait * 1000);
    }
    return false;
}

static void work_run(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, work);
    srv->work_due = false;
    lws_usec_t t0 = lws_now_usecs();
    /* 10 ms: each pass also costs a poll() over every connection (~17% of the CPU on market
     * day); a slice of up to 4x the sockets' part of the pass (<= 40 ms) used less CPU but
     * tripled the p99 of a live event (docs/performance.md §2, §4) */
    const lws_usec_t end = SRV_WORK_SLICE_US;
    /* the interactive lane first, then bulk work for the rest of the slice, but never less
     * than half of it when both wait (neither lane can starve), then interactive again */
    const lws_usec_t half = end / 2;
    session **h = srv->park_head;
    server_checkpoint_tail(srv); /* before the slice's BEGIN, which then restarts the log */
    srv->in_slice = true; /* the slice's pushes share one COMMIT (group commit, handle_push.c) */
    bool interactive = false;
    while (park_ripe(h[PARK_INTERACTIVE]) && (lws_now_usecs() - t0 < half || !h[PARK_BULK]) &&
           lws_now_usecs() - t0 < end) {
        park_run(h[PARK_INTERACTIVE]);
        interactive = true;
    }
    if (interactive && h[PARK_BULK]) {
        /* the small pushes' own COMMIT, their results and events written at once, before
         * the bulk part of the slice (one more fsync per slice; not 10 ms more per event) */
        push_group_end(srv);
        write_slice_frames(srv);
    }
    while (park_ripe(h[PARK_BULK]) && lws_now_usecs() - t0 < end)
        park_run(h[PARK_BULK]);
    while (park_ripe(h[PARK_INTERACTIVE]) && lws_now_usecs() - t0 < end)
        park_run(h[PARK_INTERACTIVE]);
    lws_usec_t t1 = lws_now_usecs();
    hello_notes_write(srv); /* joins the push group's COMMIT when one is open */
    push_group_end(srv); /* COMMIT, then the slice's push_results and ledger events */
    write_slice_frames(srv);
    if (srv->lt) {
        lws_usec_t t2 = lws_now_usecs();
        srv->lt->cur.slice += t1 - t0;
        srv->lt->cur.commit += t2 - t1;
        srv->lt->cur.n_commit++;
    }
    srv->in_slice = false;
    if ((h[PARK_INTERACTIVE] || h[PARK_BULK]) && !srv->work_due)
        work_schedule(srv); /* the next pass: after every socket had its turn */
}

/* ---- dispatch ----------------------------------------------------------------------- */

static void handle_ping(session *s, mpr *r, uint32_t count, bool pong)
{
    uint64_t nonce;
    fs_error e = {0};
    if (wire_read_ping(r, count, &nonce, &e) || mpr_left(r)) {
        session_error(s, WERR_BAD_FRAME, true, "%s", e.code ? e.msg : "bytes after the message");
        return;
    }
    if (pong)
        return; /* an answer to nothing we sent, or to a ping of a later revision: ignore */
    msgpack_packer pk;
    session_packer(s->srv, &pk);
    if (wire_pack_ping(&pk, true, nonce) == 0) /* a pong need not wait for a sync */
        send_body(s, s->srv->out.data, s->srv->out.size, false, true);
}

static void handle_peer_error(session *s, mpr *r, uint32_t count)
{
    wire_error we;
    fs_error e = {0};
    if (wire_read_error(r, count, &we, &e)) {
        session_error(s, WERR_BAD_FRAME, true, "%s", e.msg);
        return;
    }
    srv_log(SLOG_INFO, "%s: device reports error %d: %.*s", s->peer, we.code,
            (int)we.text_len, we.text);
    if (we.closes)
        start_closing(s, LWS_CLOSE_STATUS_NORMAL);
}

/* ---- the message rate --------------------------------------------------------------- *
 *
 * What a session could flood the server with is the messages it runs at once, in RECEIVE:
 * ping, subscribe, a device's error, pongs, and anything malformed, of an unknown type or a
 * text frame. Those are counted: at most msg_rate (--rate-limit, 200) a second, past which
 * the session gets LIMIT and is closed. Parked messages (push, pull, hello, reviews:
 * message_lane) are not: the server reads a session's next message only after its parked
 * one ran in a work slice, so it sets their pace itself, one at a time per session in fair,
 * bounded slices. Counting them too capped one device at msg_rate full pushes a second
 * (200,000 changes/s), below what the store applies (docs/performance.md).
 *
 * A token bucket: it holds msg_rate messages, starts full at the connection and refills at
 * msg_rate a second, so no stretch of T seconds admits more than msg_rate * (1 + T) (a
 * fixed one-second window let a burst straddling its end have twice the rate at once). It
 * is kept in thousandths of a message so that whole milliseconds of srv_mono_ms() refill it
 * exactly (msg_rate thousandths a millisecond): no rounding drift, no floating point, O(1),
 * 12 bytes of session (rate_at, rate_tokens). */

#define RATE_UNIT 1000u /* thousandths of a message in one message */

/* A full bucket, in thousandths: msg_rate <= 10^6 (--rate-limit) keeps it within 32 bits. */
static uint32_t rate_full(const server *srv)
{
    return srv->cfg.msg_rate * RATE_UNIT;
}

/* Refills s's bucket up to now and takes one message from it. Returns false (nothing taken)
 * when less than one is left; always true without a limit. */
static bool rate_take(session *s, int64_t now)
{
    const server *srv = s->srv;
    if (!srv->cfg.msg_rate)
        return true;
    int64_t ms = now - s->rate_at;
    if (ms > 1000)
        ms = 1000; /* a second refills it from empty: longer changes nothing */
    uint64_t t = s->rate_tokens + (uint64_t)(ms > 0 ? ms : 0) * srv->cfg.msg_rate;
    if (t > rate_full(srv))
        t = rate_full(srv);
    s->rate_at = now;
    if (t < RATE_UNIT) {
        s->rate_tokens = (uint32_t)t;
        return false;
    }
    s->rate_tokens = (uint32_t)(t - RATE_UNIT);
    return true;
}

/* One whole message from the peer (frame: the reassembled WebSocket message, borrowed):
 * decoded and parked, or counted against the rate and run at once. */
static void session_message(session *s, const uint8_t *frame, size_t len)
{
    server *srv = s->srv;
    srv->m.messages_in++;
    const uint8_t *body = NULL;
    size_t blen = 0;
    int rc = s->rx_text ? 0 : wire_frame_decode(srv->dec, frame, len, srv->cfg.max_frame,
                                                &body, &blen);
    if (!s->rx_text && !rc) {
        int lane = message_lane(s, body, blen);
        if (lane >= 0) {
            park_message(s, body, blen, (unsigned)lane);
            return;
        }
    }
    if (!rate_take(s, srv_mono_ms())) {
        session_error(s, WERR_LIMIT, true, "more than %u messages in one second",
                      srv->cfg.msg_rate);
        return;
    }
    if (s->rx_text) {
        session_error(s, WERR_BAD_FRAME, true, "text message: fieldsync.v1 sends binary messages");
        return;
    }
    if (rc == FS_EDEC_TOOBIG) {
        session_error(s, WERR_TOO_BIG, true, "message body larger than %u bytes",
                      srv->cfg.max_frame);
        return;
    }
    if (rc) {
        session_error(s, WERR_BAD_FRAME, true, "bad frame header: %s", fs_strerror(rc));
        return;
    }
    session_dispatch(s, body, blen);
}

/* Runs one decoded message body: the state checks of protocol §5, then its handler. */
static void session_dispatch(session *s, const uint8_t *body, size_t blen)
{
    mpr r;
    mpr_init(&r, body, blen);
    uint32_t type, count;
    int rc = wire_read_type(&r, &type, &count);
    if (rc) {
        session_error(s, WERR_BAD_FRAME, true,
                      "the body must be a MessagePack array starting with the message type: %s",
                      fs_strerror(rc));
        return;
    }
    bool known = type >= MSG_HELLO && type <= MSG_REVIEWS;
    if (!known) {
        session_error(s, WERR_UNKNOWN_MESSAGE, true, "unknown message type %u", type);
        return;
    }
    if (s->state == SS_CONNECTED && type != MSG_HELLO) {
        session_error(s, WERR_UNEXPECTED, true, "send hello first (got message type %u)", type);
        return;
    }
    switch (type) {
    case MSG_HELLO:
        if (s->state == SS_READY) {
            session_error(s, WERR_UNEXPECTED, true, "second hello in one session");
            return;
        }
        handle_hello(s, &r, count);
        break;
    case MSG_PUSH: handle_push(s, &r, count); break;
    case MSG_PULL: handle_pull(s, &r, count); break;
    case MSG_SUBSCRIBE: handle_subscribe(s, &r, count); break;
    case MSG_REVIEWS: handle_reviews(s, &r, count); break;
    case MSG_PING: handle_ping(s, &r, count, false); break;
    case MSG_PONG: handle_ping(s, &r, count, true); break;
    case MSG_ERROR: handle_peer_error(s, &r, count); break;
    default:
        session_error(s, WERR_UNEXPECTED, true,
                      "message type %u goes from the server to devices, not back", type);
    }
}

/* ---- libwebsockets ------------------------------------------------------------------ */

static void session_open(server *srv, session *s, struct lws *wsi)
{
    memset(s, 0, sizeof *s);
    s->srv = srv;
    s->wsi = wsi;
    s->state = SS_CONNECTED;
    s->last_rx = s->last_msg = s->rate_at = srv_mono_ms();
    s->rate_tokens = rate_full(srv); /* a new session may send msg_rate at once */
    lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->n_sessions++;
    if (srv->stopping)
        session_error(s, WERR_SHUTDOWN, true, "server stopping; reconnect later");
}

static void session_gone(server *srv, session *s)
{
    if (!s->srv)
        return; /* never opened */
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->n_sessions--;
    subscribe_drop(s);
    park_drop(s);
    for (session **pp = &srv->out_head; s->on_out && *pp; pp = &(*pp)->out_next)
        if (*pp == s) {
            *pp = s->out_next;
            s->on_out = false;
            break;
        }
    for (session **pp = &srv->held_head; s->on_held && *pp; pp = &(*pp)->held_next)
        if (*pp == s) {
            *pp = s->held_next;
            s->on_held = false;
            break;
        }
    queue_clear(s);
    free(s->rx);
    if (s->user.id) /* it had said hello: supervisors' device views change (online, refused) */
        live_device_event(srv, &s->device, &s->scope);
    scope_free(&s->scope);
    if (s->state != SS_CONNECTED)
        srv_log(SLOG_DEBUG, "%s: session closed", s->peer);
    s->srv = NULL;
}

static void session_rx(session *s, const void *in, size_t len)
{
    server *srv = s->srv;
    srv->m.bytes_in += len;
    if (s->park) /* read despite the flow control: the parked message goes first */
        park_run(s);
    if (s->state == SS_CLOSING)
        return; /* discard: the error is queued and the close follows */
    s->last_rx = srv_mono_ms(); /* a big message on a slow link is not idleness */
    if (s->rx_len == 0) /* the first bytes of a message: lws keeps the opcode for all */
        s->rx_text = !lws_frame_is_binary(s->wsi);
    if (len > srv->cfg.max_frame - s->rx_len) {
        s->rx_len = 0;
        session_error(s, WERR_TOO_BIG, true, "message larger than %u bytes", srv->cfg.max_frame);
        return;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + len)
            cap *= 2;
        uint8_t *p = realloc(s->rx, cap);
        if (!p) {
            session_error(s, WERR_INTERNAL, true, "out of memory");
            return;
        }
        s->rx = p;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(s->wsi))
        return;
    s->last_msg = srv_mono_ms();
    session_message(s, s->rx, s->rx_len);
    s->rx_len = 0;
    s->rx_text = false;
    if (s->rx_cap > (256u << 10)) { /* do not keep a big buffer for an idle session */
        free(s->rx);
        s->rx = NULL;
        s->rx_cap = 0;
    }
}

/* Writes queued frames while the socket takes them: the first one without asking when
 * first_free (lws' WRITEABLE promised the socket is writeable), every other one only if
 * lws_send_pipe_choked() says 0 just before it. Returns 0, or -1 when the connection
 * failed. */
static int write_frames(session *s, bool first_free)
{
    txframe *f = s->q_head;
    for (int k = 0; f && k < SRV_WRITES_PER_CALLBACK; k++, f = s->q_head) {
        if (f->gen > s->srv->dur_done)
            break; /* its push group is not synced yet (durable.c) */
        if ((k || !first_free) && lws_send_pipe_choked(s->wsi))
            break;
        int n = lws_write(s->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_BINARY);
        if (n < 0)
            return -1;
        s->srv->m.bytes_out += f->len;
        s->tx_moved = true;
        fault_frame_written(f); /* tests: FIELDSYNC_FAULT=push_after_send (fault.c) */
        s->q_head = f->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->q_bytes -= f->len;
        s->q_ledger -= f->ledger;
        free(f);
    }
    if (s->rx_paused && s->q_bytes < SRV_TXQ_PAUSE_BYTES / 4) {
        s->rx_paused = false;
        rx_flow_update(s);
    }
    return 0;
}

/* The end of a work slice's COMMIT: the frames it queued (push_results, ledger events,
 * hello and pull answers) are written now, each socket asked first (write_frames with
 * first_free false), instead of after the next poll() over every connection and the
 * reads and writes of every socket before theirs in lws' table (the live latency:
 * docs/performance.md §4). What a socket does not take now waits for its WRITEABLE, which
 * was requested when the frame was queued; a closing session is left to WRITEABLE (its
 * close frame goes after its queue). */
static void write_slice_frames(server *srv)
{
    while (srv->out_head) {
        session *s = srv->out_head;
        srv->out_head = s->out_next;
        s->out_next = NULL;
        s->on_out = false;
        if (s->state != SS_CLOSING && s->q_head && write_frames(s, false) < 0)
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

static int session_writeable(session *s)
{
    txframe *f = s->q_head;
    if (f && f->gen > s->srv->dur_done)
        return 0; /* session_release_held asks again once it is synced */
    if (!f) {
        if (s->state == SS_CLOSING) {
            char reason[32];
            int n = snprintf(reason, sizeof reason, "%s",
                             s->close_code == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE ? "TOO_BIG" : "");
            lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
                             (unsigned char *)reason, (size_t)n);
            return -1;
        }
        return 0;
    }
    /* Several frames per callback, each only while lws_send_pipe_choked() says the socket
     * takes more (the rule: see the file header); a loaded loop gives each session one
     * WRITEABLE per pass, and a subscriber gets many events per pass. */
    if (write_frames(s, true) < 0)
        return -1;
    if ((s->q_head && s->q_head->gen <= s->srv->dur_done) ||
        (!s->q_head && s->state == SS_CLOSING))
        lws_callback_on_writable(s->wsi);
    return 0;
}

/* The sync thread has synced up to srv->dur_done: what the sessions on srv->held_head hold
 * up to it goes out now, as after a COMMIT (write_slice_frames); a session that still holds
 * later frames stays on the list. */
void session_release_held(server *srv)
{
    session *s = srv->held_head, *keep = NULL;
    srv->held_head = NULL;
    while (s) {
        session *next = s->held_next;
        s->held_next = NULL;
        s->on_held = false;
        if (s->q_head && s->q_head->gen <= srv->dur_done) {
            if (s->state != SS_CLOSING && write_frames(s, false) < 0)
                lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            else if (s->q_head || s->state == SS_CLOSING)
                lws_callback_on_writable(s->wsi);
        }
        if (s->q_tail && s->q_tail->gen > srv->dur_done) { /* frames are in gen order */
            s->on_held = true;
            s->held_next = keep;
            keep = s;
        }
        s = next;
    }
    srv->held_head = keep;
}

/* The sync failed (durable.c): nothing held may leave. Each session that holds frames loses
 * its whole queue (a push_result among them must not arrive) and gets INTERNAL, which
 * closes it: its device sends again what it has no result for. */
void session_drop_held(server *srv)
{
    session *s = srv->held_head;
    srv->held_head = NULL;
    while (s) {
        session *next = s->held_next;
        s->held_next = NULL;
        s->on_held = false;
        queue_clear(s);
        session_error(s, WERR_INTERNAL, true,
                      "the server could not make its store durable (fdatasync failed): "
                      "nothing since your last result was acknowledged; send it again later");
        s = next;
    }
}

int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    server *srv = lws_context_user(lws_get_context(wsi));
    session *s = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64] = "";
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/sync")) {
            srv_log(SLOG_INFO, "refused WebSocket upgrade on '%s': the path is /sync", uri);
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        session_open(srv, s, wsi);
        break;
    case LWS_CALLBACK_RECEIVE:
        if (s->srv && srv->lt) {
            int64_t t0 = lws_now_usecs();
            session_rx(s, in, len);
            srv->lt->cur.rx += lws_now_usecs() - t0;
            srv->lt->cur.n_rx++;
        } else if (s->srv) {
            session_rx(s, in, len);
        }
        /* a socket pass over 2,000 busy connections takes milliseconds: what a sync released
         * meanwhile leaves now, not after the pass (durable.c; an atomic load when nothing) */
        durable_poll(srv);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->srv && srv->lt) {
            int64_t t0 = lws_now_usecs();
            int rc = session_writeable(s);
            srv->lt->cur.wr += lws_now_usecs() - t0;
            srv->lt->cur.n_wr++;
            return rc;
        }
        if (s->srv)
            return session_writeable(s);
        break;
    case LWS_CALLBACK_CLOSED:
        session_gone(srv, s);
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: /* the sync thread has synced (durable.c) */
        durable_poll(srv);
        break;
    default:
        break;
    }
    return 0;
}

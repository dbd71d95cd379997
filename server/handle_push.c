/*
 * handle_push.c — push (3) → push_result (4): the durable acknowledgement.
 *
 * 1. Decode every change of the batch (push form) against the server's schema. The session
 *    supplies device, author and role; nothing the device says about them is trusted.
 *    An abbreviated record id is resolved here (store_resolve_abbrev) among all the records
 *    of the store; one that matches none or several is refused by the store (EREC_ABBREV)
 *    without consuming its dseq.
 *    A change that does not decode but is still a change in shape (an array whose fifth
 *    element, dseq, reads as an integer, and which can be skipped within the nesting limit)
 *    is refused alone with the decoder's code (EUNKNOWN_FIELD from a newer device, EVALUE_*,
 *    EDEC_*). Anything else makes the whole message BAD_FRAME: the batch cannot be trusted.
 * 2. Apply: store_apply_batch() — one SQLite transaction for the whole batch, the visible
 *    callback (push_visible) refusing first any change to an existing record outside the
 *    user's scope, the authorize callback (scope.c) deciding scope per change, the engine
 *    deciding rules and roles.
 *    Undecodable changes go in as apply_raw entries: the engine consumes their dseq and
 *    remembers the refusal with their bytes, so a re-send gets the same answer.
 * 3. Only when the transaction returned 0 (COMMIT done) is push_result queued, one result
 *    per change in order. If the store fails (disk full, locked), the device gets BUSY and
 *    no results: it must not delete anything from its outbox, and re-sending is harmless.
 *
 * Group commit: with synchronous=FULL each COMMIT costs an fsync (~2 ms), more than the
 * store work of a small push. Inside a work slice (srv->in_slice) the pushes therefore join
 * one store group (store_group_begin): each is a savepoint of one transaction, and its
 * packed push_result waits in srv->done. push_group_end(), called by session.c when the
 * slice ends or before any other parked message, commits the group once, then fans out the
 * group's accepted changes (read back from the log, in log order) and queues every waiting
 * push_result; if that COMMIT fails, each of those devices gets BUSY and no result, exactly
 * as a failed single push. A push whose own batch fails is rolled back to its savepoint
 * alone and gets BUSY at once; the others of the group are not touched (unless SQLite ended
 * the whole transaction, then the group's COMMIT fails too). Outside a slice (a parked push
 * run from the receive callback) a push is its own transaction, as before.
 *
 * Fault points (fault.c) in a group: push_before_tx fires before the push's savepoint (the
 * group's BEGIN may have been sent for earlier pushes, which die unacknowledged with it);
 * push_in_tx inside its savepoint; push_after_commit and push_after_send refer to one push's
 * COMMIT and push_result, so while either is armed every group is closed after one push.
 *
 * The signal handler only sets a flag, and this runs to completion inside one callback of the
 * service thread (session.c parks a received push and runs it from its work timer, between
 * socket services), so a shutdown can never interrupt a batch between BEGIN and COMMIT, nor a
 * group (it is committed before the work timer's callback returns).
 */
#include "server.h"

#include "mpr.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A push applied in the open group: its push_result, queued after the group's COMMIT. */
typedef struct push_done {
    session *s;
    uint8_t *body;       /* the packed push_result (owned) */
    size_t len;
    uint32_t accepted, duplicate, n_refused; /* its results, for the metrics */
    int *refused;        /* the codes of its refused changes (owned; NULL when none) */
} push_done;

/* One change of a push being handled. A scratch array of WIRE_MAX_BATCH of them lives as
 * long as the server (srv->push_items): allocating and zeroing 1,000 of them (240 KB) per
 * push was a visible share of the ingest profile. Every field is set before it is read. */
typedef struct push_item {
    bool decoded;          /* srv->batch[i] holds the change */
    uint64_t dseq;
    int code;              /* decoding failure */
    char msg[200];
    const uint8_t *raw;    /* the change's bytes (undecoded) */
    size_t raw_len;
} push_item;

static push_item *items_get(server *srv)
{
    if (!srv->push_items)
        srv->push_items = malloc(WIRE_MAX_BATCH * sizeof(push_item));
    return srv->push_items;
}

/* Reads the dseq (5th element) of something shaped like a push-form change. */
static int lenient_dseq(const mpr *r, uint64_t *dseq)
{
    mpr t = *r;
    uint32_t n;
    if (mpr_array(&t, 64, &n) || n < 5)
        return -1;
    for (int i = 0; i < 4; i++)
        if (mpr_skip(&t, MPR_MAX_DEPTH))
            return -1;
    if (mpr_u64(&t, dseq) || *dseq == 0)
        return -1;
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The engine's visible callback (apply_opts.visible): a change to a record that exists
 * outside the user's scope is refused (ESCOPE) before the engine looks at anything else. The
 * engine's own checks (the record's type, roles, lowering, staleness, duplicate creates of
 * append-only records) would otherwise tell an outsider something about a record it may not
 * see: its type, that its risk is above some level, that a visit holds given values. The
 * engine calls this after the change's dseq is consumed and remembers the refusal like any
 * other, with the change's full form, so a re-send gets the same answer; a re-send of a dseq
 * already consumed is answered as the first time without asking again (its record may have
 * left the user's scope since, a scope changed by the admin: the answer stays "duplicate",
 * not a mismatch). Visibility is judged from what is stored (village, or the stored parent
 * for children scopes), never from what the change claims. Records created earlier in the
 * same batch are stored by then, in the scope the authorize callback allowed. */
static int push_visible(void *ctx, const change *c, const char *stored_scope, fs_error *e)
{
    session *s = ctx;
    bool visible = s->scope.kind == SCOPE_CHILDREN
                       ? scope_sees_record(s, &c->record)
                       : scope_memo_has(s->srv, &s->scope, stored_scope) ||
                             scope_has_village(&s->scope, stored_scope);
    if (visible)
        return 0;
    const schema_type *t = schema_type_by_id(s->srv->schema, c->type);
    return fs_error_set(e, FS_ESCOPE, "this %s is outside your scope", t ? t->name : "record");
}

/* Whether committed changes go to the fan-out: only when someone may receive them (a
 * subscriber, a supervisor's live page) or the loop trace counts them. Without, a group's
 * commit need not read its changes back from the log and decode them (profiled: ~4% of an
 * ingest's server CPU), nor a single push look up each change's scope. */
static bool fanout_wanted(const server *srv)
{
    return srv->subscribers || srv->live || srv->lt;
}

/* The authorize callback of a push: scope_authorize (or the fault point's wrapper). It runs
 * once per change inside the apply, so every 64 changes it also releases what the sync
 * thread has synced meanwhile (durable_poll: an atomic load, then the writes): the previous
 * group's push_results and events leave ~1 ms after its COMMIT, while this push is applied,
 * not after it (a bulk device that waits for a result before its next push would otherwise
 * leave the service thread idle once per push, and a live event would wait a whole slice). */
static int push_authorize(void *ctx, const change *c, const char *scope_before,
                          const char *scope_after, fs_error *e)
{
    session *s = ctx;
    if ((++s->srv->authorized & 63) == 0)
        durable_poll(s->srv);
    return fault_armed(FAULT_PUSH_IN_TX) ? fault_authorize(ctx, c, scope_before, scope_after, e)
                                         : scope_authorize(ctx, c, scope_before, scope_after, e);
}

/* Applies the n changes of srv->batch in one transaction; items that did not decode go in
 * as apply_raw refusals; push_visible refuses, first, changes to records outside the user's
 * scope. Returns 0 or the store's error (e filled). */
static int apply_items(session *s, push_item *items, uint32_t n, fs_error *e)
{
    server *srv = s->srv;
    apply_opts opts = {.authorize = push_authorize,
                       .on_commit = fanout_wanted(srv) ? subscribe_fanout : NULL,
                       .visible = push_visible, .ctx = s};
    apply_raw *raw = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (items[i].decoded)
            continue;
        if (!raw && !(raw = calloc(n, sizeof *raw)))
            return fs_error_set(e, FS_ENOMEM, "out of memory");
        change *c = &srv->batch[i]; /* only device and dseq are used */
        memset(c, 0, offsetof(change, fields));
        c->device = s->device;
        c->dseq = items[i].dseq;
        raw[i] = (apply_raw){items[i].code, items[i].msg, items[i].raw, items[i].raw_len};
    }
    opts.raw = raw;
    int rc = store_apply_batch(srv->store, srv->batch, n, &opts, srv->results, e);
    free(raw);
    return rc;
}

/* Keeps s's packed push_result (srv->out) and its n results until the group's COMMIT. */
static int group_add(server *srv, session *s, uint32_t n)
{
    if (srv->n_done == srv->cap_done) {
        size_t cap = srv->cap_done ? srv->cap_done * 2 : 64;
        push_done *nd = realloc(srv->done, cap * sizeof *nd);
        if (!nd)
            return FS_ENOMEM;
        srv->done = nd;
        srv->cap_done = cap;
    }
    push_done d = {.s = s, .len = srv->out.size};
    for (uint32_t i = 0; i < n; i++) {
        const apply_result *r = &srv->results[i];
        d.accepted += r->status == APPLY_ACCEPTED;
        d.duplicate += r->status == APPLY_DUPLICATE;
        if (r->status != APPLY_ACCEPTED && r->status != APPLY_DUPLICATE) {
            if (!d.refused && !(d.refused = malloc(n * sizeof *d.refused)))
                return FS_ENOMEM;
            d.refused[d.n_refused++] = r->code;
        }
    }
    d.body = malloc(d.len ? d.len : 1);
    if (!d.body) {
        free(d.refused);
        return FS_ENOMEM;
    }
    memcpy(d.body, srv->out.data, d.len);
    srv->done[srv->n_done++] = d;
    return 0;
}

int handle_push(session *s, mpr *r, uint32_t count)
{
    server *srv = s->srv;
    uint64_t batch;
    uint32_t n;
    fs_error e = {0};
    int rc = wire_read_push(r, count, srv->cfg.max_batch, &batch, &n, &e);
    if (rc == FS_EDEC_TOOBIG) {
        session_error(s, WERR_LIMIT, true, "a push carries at most %u changes",
                      srv->cfg.max_batch);
        return -1;
    }
    if (rc) {
        session_error(s, WERR_BAD_FRAME, true, "malformed push: %s", e.msg);
        return -1;
    }
    push_item *items = n ? items_get(srv) : NULL;
    if (n && !items) {
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return -1;
    }
    size_t author_len = strlen(s->user.name);
    for (uint32_t i = 0; i < n; i++) {
        change *c = &srv->batch[i];
        fs_error ce = {0};
        const uint8_t *start = r->p;
        rc = change_unpack_push(r, srv->schema, c, &ce);
        if (rc == 0) {
            /* an abbreviated record: the one record of the whole store (not the user's
             * scope) whose id starts with it; the checks after that are those of a full id.
             * Unknown or ambiguous, it stays abbreviated and the store refuses it
             * (EREC_ABBREV, not consumed) */
            rid_t full;
            if (c->abbrev && store_resolve_abbrev(srv->store, c->record.b, &full) == 0) {
                c->record = full;
                c->abbrev = false;
            }
            c->device = s->device;
            c->author = s->user.name;
            c->author_len = (uint32_t)author_len;
            c->role = (uint8_t)s->role;
            items[i].decoded = true;
            items[i].dseq = c->dseq;
            continue;
        }
        push_item *it = &items[i];
        it->decoded = false;
        if (lenient_dseq(r, &it->dseq) || mpr_skip(r, MPR_MAX_DEPTH)) {
            session_error(s, WERR_BAD_FRAME, true,
                          "push: change %u is not a change [type, record, hlc, base, dseq, "
                          "fields]: %s",
                          i, ce.msg[0] ? ce.msg : fs_strerror(rc));
            return -1;
        }
        it->code = rc;
        snprintf(it->msg, sizeof it->msg, "%s", ce.msg[0] ? ce.msg : fs_strerror(rc));
        it->raw = start;
        it->raw_len = (size_t)(r->p - start);
    }
    if ((rc = wire_skip_rest(r, count - 3)) || mpr_left(r)) {
        session_error(s, WERR_BAD_FRAME, true, "push: %s",
                      rc ? fs_strerror(rc) : "bytes after the message");
        return -1;
    }

    /* revoked or rotated since hello: the tick closes such sessions within a second; this
     * keeps a batch from getting in during that second */
    if (!session_device_valid(s)) {
        return -1;
    }
    fault_push_begin(srv, n); /* tests: FIELDSYNC_FAULT (fault.c) */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool group = srv->in_slice;
    if (group && !store_in_group(srv->store)) {
        /* a bulk group's COMMIT does not wait for the disk (durable.c); an interactive one
         * (small pushes: an entry just made, a review resolution) is synced at once by the
         * service thread, its results and events written right after, which is the shorter
         * path for them (a sync thread busy with the previous group's would make it wait
         * for two syncs) */
        if (s->park_lane == PARK_BULK)
            durable_group_open(srv);
        rc = store_group_begin(srv->store, &e);
        if (rc)
            durable_commit_end(srv);
    } else {
        rc = 0;
    }
    if (!rc)
        rc = apply_items(s, items, n, &e);
    metrics_apply_observe(&srv->m, seconds_since(&t0));
    if (rc) {
        srv_log(SLOG_ERROR, "%s: push of %u changes not stored: %s", s->peer, n, e.msg);
        session_error(s, WERR_BUSY, false,
                      "the server cannot store now (%s): nothing from this batch was "
                      "acknowledged; retry later",
                      fs_strerror(rc));
        return 0;
    }

    /* committed (or, in a group, applied: acknowledged after the group's COMMIT) */
    if (!group)
        fault_push_at(FAULT_PUSH_AFTER_COMMIT);
    msgpack_packer pk;
    session_packer(srv, &pk);
    rc = wire_pack_push_result_header(&pk, batch, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const apply_result *res = &srv->results[i];
        if (!group)
            metrics_result(&srv->m, res);
        wire_result wr = {.dseq = items[i].dseq, .status = res->status, .code = res->code};
        if (res->status == APPLY_REFUSED) {
            wr.text = res->msg;
            wr.text_len = (uint32_t)strlen(res->msg);
        }
        rc = wire_pack_result(&pk, &wr);
    }
    if (!rc && group)
        rc = group_add(srv, s, n);
    if (rc) {
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return -1;
    }
    if (group) {
        if (fault_armed(FAULT_PUSH_AFTER_COMMIT) || fault_armed(FAULT_PUSH_AFTER_SEND))
            push_group_end(srv); /* the fault points name one push's COMMIT */
        return 0;
    }
    session_send(s, srv->out.data, srv->out.size, false);
    fault_push_sent(s);
    return 0;
}

void push_group_end(server *srv)
{
    if (!store_in_group(srv->store))
        return;
    fs_error e = {0};
    durable_commit_begin(srv); /* what this COMMIT produces waits for its sync */
    /* from SRV_FLUSH_THRESHOLD unwritten field states on, this COMMIT also writes one chunk
     * of them (SRV_FLUSH_CHUNK, more if the backlog grows), until half are left: the cache
     * drains a little per slice instead of in one stall (store_set_flush_chunk) */
    int rc = store_group_commit(srv->store, fanout_wanted(srv) ? server_fanout : NULL, srv, &e);
    durable_commit_end(srv); /* synchronous=FULL again; the sync thread takes it from here */
    if (rc)
        srv_log(SLOG_ERROR, "group of %zu pushes not stored: %s", srv->n_done, e.msg);
    for (size_t i = 0; i < srv->n_done; i++) {
        push_done *d = &srv->done[i];
        if (rc) {
            session_error(d->s, WERR_BUSY, false,
                          "the server cannot store now (%s): nothing from this batch was "
                          "acknowledged; retry later",
                          fs_strerror(rc));
        } else {
            fault_push_at(FAULT_PUSH_AFTER_COMMIT);
            srv->m.changes_accepted += d->accepted;
            srv->m.changes_duplicate += d->duplicate;
            for (uint32_t j = 0; j < d->n_refused; j++)
                metrics_result(&srv->m, &(apply_result){.status = APPLY_REFUSED,
                                                        .code = d->refused[j]});
            session_send(d->s, d->body, d->len, false);
            fault_push_sent(d->s);
        }
        free(d->body);
        free(d->refused);
    }
    free(srv->done);
    srv->done = NULL;
    srv->n_done = srv->cap_done = 0;
}

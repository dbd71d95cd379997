/*
 * handle_pull.c — pull (5) → changes (6): the log, from the device's cursor, as it may see it.
 *
 * Walks the change log after `cursor` (store_log_scan), skipping the device's own changes
 * and those outside its user's scope, converting each to the device's schema version
 * (change_downgrade; a change with nothing left for that version is skipped), until `max`
 * changes are taken or the message passes ~256 KiB. `next_cursor` is the last log sequence
 * looked at, taken or skipped, so a device whose scope matches little of the log still moves
 * forward; at most SRV_PULL_SCAN_ROWS rows are looked at per pull, so one request never
 * stalls the service thread on a long filtered stretch (`more` is then true with fewer
 * changes, possibly none).
 *
 * A pull is read-only: answering it twice, or a device applying the answer twice, has no
 * effect, which is what makes an interrupted pull safe to repeat (protocol §7).
 */
#include "server.h"

#include "mpr.h"

#include <stdlib.h>
#include <string.h>

typedef struct pull_ctx {
    session *s;
    msgpack_packer pk;     /* writes into srv->tmp */
    uint32_t max;
    uint32_t taken;
    uint64_t last;         /* last sequence looked at */
    size_t scanned;
    bool oom;
    change c;
} pull_ctx;

static int pull_row(void *ctx, uint64_t seq, const void *body, size_t len, const char *scope)
{
    pull_ctx *p = ctx;
    session *s = p->s;
    server *srv = s->srv;
    p->last = seq;
    p->scanned++;
    /* cheap filter first: village scopes need only the log's scope column */
    if (s->scope.kind != SCOPE_CHILDREN && !scope_has_village(&s->scope, scope))
        return 0;
    mpr r;
    mpr_init(&r, body, len);
    if (change_unpack(&r, srv->schema, true, &p->c, NULL)) {
        srv_log(SLOG_ERROR, "log entry %llu does not decode under the loaded schema; skipped",
                (unsigned long long)seq);
        return 0;
    }
    if (!rid_cmp(&p->c.device, &s->device) || !scope_sees(s, &p->c, scope))
        return 0;
    if (!change_downgrade(srv->schema, &p->c, (int)s->version))
        return 0;
    if (change_pack(&p->pk, &p->c, true)) {
        p->oom = true;
        return 1;
    }
    p->taken++;
    return p->taken >= p->max || srv->tmp.size >= SRV_PULL_SOFT_BYTES;
}

int handle_pull(session *s, mpr *r, uint32_t count)
{
    server *srv = s->srv;
    uint64_t cursor;
    uint32_t max;
    fs_error e = {0};
    if (wire_read_pull(r, count, &cursor, &max, &e) || mpr_left(r)) {
        session_error(s, WERR_BAD_FRAME, true, "malformed pull: %s",
                      e.code ? e.msg : "bytes after the message");
        return -1;
    }
    if (max == 0 || max > srv->cfg.max_batch)
        max = srv->cfg.max_batch;
    if (!session_device_valid(s)) /* revoked since hello: not one more page */
        return -1;
    uint64_t log_end;
    if (store_last_seq(srv->store, &log_end)) {
        session_error(s, WERR_BUSY, false, "cannot read the log now; pull again later");
        return 0;
    }
    if (s->restore_stale && cursor > s->restore_seq) {
        session_error(s, WERR_CURSOR, false,
                      "the server's store was restored from a backup (log up to %llu): cursor "
                      "%llu is from before that; reset the cursor to 0 and pull again",
                      (unsigned long long)s->restore_seq, (unsigned long long)cursor);
        return 0;
    }
    if (s->restore_stale) { /* pulling from before the restore point: consistent again */
        s->restore_stale = false;
        srvdb_restore_done(srv->db, &s->device);
    }
    if (cursor > log_end) {
        session_error(s, WERR_CURSOR, false,
                      "cursor %llu is beyond the server's log (last %llu): reset the cursor "
                      "to 0 and pull again",
                      (unsigned long long)cursor, (unsigned long long)log_end);
        return 0;
    }
    pull_ctx *p = malloc(sizeof *p);
    if (!p) {
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return -1;
    }
    p->s = s;
    p->max = max;
    p->taken = 0;
    p->last = cursor;
    p->scanned = 0;
    p->oom = false;
    srv->tmp.size = 0;
    msgpack_packer_init(&p->pk, &srv->tmp, msgpack_sbuffer_write);
    int rc = 0;
    if (s->scope.kind != SCOPE_CHILDREN) {
        /* village scopes: only the rows of the user's villages, through the log's runs of
         * each village (log_runs), so a pull costs what the device receives, not the whole
         * log */
        size_t cap = 3 + s->scope.n_villages * (SRV_CODE_MAX + 3);
        char *json = malloc(cap);
        if (!json) {
            free(p);
            session_error(s, WERR_INTERNAL, true, "out of memory");
            return -1;
        }
        size_t n = 0;
        json[n++] = '[';
        for (size_t i = 0; i < s->scope.n_villages; i++)
            n += (size_t)snprintf(json + n, cap - n, "%s\"%s\"", i ? "," : "",
                                  s->scope.villages[i]);
        json[n++] = ']';
        json[n] = '\0';
        uint64_t before = p->last, last;
        size_t scanned = p->scanned;
        rc = store_log_scan_scopes(srv->store, p->last, max, json, pull_row, p, &last);
        free(json);
        /* fewer rows than the LIMIT, and the callback did not stop early (max taken, soft
         * size): every row of those villages up to the log end was visited */
        if (!rc && p->scanned - scanned < max && p->taken < max &&
            srv->tmp.size < SRV_PULL_SOFT_BYTES && !p->oom)
            p->last = log_end > before ? log_end : before;
    }
    while (s->scope.kind == SCOPE_CHILDREN && p->taken < max &&
           srv->tmp.size < SRV_PULL_SOFT_BYTES && p->last < log_end &&
           p->scanned < SRV_PULL_SCAN_ROWS) {
        uint64_t before = p->last, last;
        size_t chunk = SRV_PULL_SCAN_ROWS - p->scanned;
        if (chunk > 2000)
            chunk = 2000;
        rc = store_log_scan(srv->store, p->last, chunk, pull_row, p, &last);
        if (rc || p->last == before)
            break;
    }
    if (rc) {
        free(p);
        session_error(s, WERR_BUSY, false, "cannot read the log now; pull again later");
        return 0;
    }
    if (p->oom) {
        free(p);
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return -1;
    }
    msgpack_packer pk;
    session_packer(srv, &pk);
    rc = wire_pack_changes_header(&pk, p->last, p->last < log_end, p->taken);
    if (!rc && srv->tmp.size)
        rc = msgpack_sbuffer_write(&srv->out, srv->tmp.data, srv->tmp.size);
    srv->m.pulls++;
    srv->m.changes_sent += p->taken;
    free(p);
    if (rc) {
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return -1;
    }
    session_send(s, srv->out.data, srv->out.size, false);
    return 0;
}

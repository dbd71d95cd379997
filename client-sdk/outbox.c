/*
 * outbox.c — what leaves the device and in which order, and what comes back.
 *
 * The fast lane. The server requires a device's sequence numbers (dseq) without gaps and
 * consumes them in order, so a mandatory report saved after 1,000 queued visit notes would
 * wait behind them if dseq were given at creation. Instead a change gets its dseq the first
 * time it is put into a push batch and keeps it forever after (resends after a lost link or a
 * crash reuse the very same bytes, so the server answers "duplicate", never a second effect).
 * Unnumbered changes are numbered in the order (priority, creation): the fast lane (reports,
 * priority 0) first, then the rest in creation order. Dependencies are kept: before a change
 * is numbered, every earlier unnumbered change of the same record and of the records it refers
 * to (a report's child, that child's household ...) is numbered ahead of it, so the server
 * never sees a report about a child it does not know yet (EREF).
 *
 * Numbering is committed BEFORE the batch is sent: a crash after sending must find the same
 * numbers on restart, or the server would see one dseq with two contents (ESEQ_MISMATCH).
 * Changes already numbered and not yet answered always go first, in dseq order.
 *
 * Abbreviated record ids (protocol §3.1). When a change is numbered, its record id is
 * abbreviated (the push form's 9-byte record) if the record is in the confirmed state: the
 * server accepted or sent it, so it holds it, and records are never deleted there, so a unique
 * match of the abbreviation is this record. Never for a record whose create is still pending
 * or was refused (not confirmed). The abbreviated bytes are kept in dev_outbox.wire next to
 * the full-id body (which everything else here decodes) and fixed with the number, so every
 * re-send is the same bytes. An EREC_ABBREV answer (the server found none or several records:
 * not consumed) clears wire: the change goes again, same dseq, with its full id, and the
 * ESEQ_GAP answers after it in that batch are expected. A server restored from a backup may
 * have lost records this replica holds: from the first sign of it (outbox_distrust) this
 * replica never abbreviates again (simple and safe: restores are rare, the cost is 7 bytes a
 * change).
 *
 * Results: accepted and duplicate changes are applied to the confirmed state with
 * store_apply_batch() (as this device, with the user and role of the session); its
 * before_commit hook (batch_commit_hook) deletes each one's outbox row inside that same
 * transaction, as it does for this device's changes arriving by pull. Refused ones move
 * to dev_refused with the server's code and text. An ESEQ_GAP refusal consumed nothing on the
 * server: the change stays and the sync stops with FIELDSYNC_ESEQUENCE, unless an EREC_ABBREV
 * explains it (in the same batch here; in an earlier push in flight, session.c).
 */
#include "internal.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ob_batch_clear(ob_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].body);
        free(b->items[i].full);
    }
    b->n = 0;
    b->bytes = 0;
}

void ob_batch_free(ob_batch *b)
{
    ob_batch_clear(b);
    free(b->items);
    b->items = NULL;
    b->cap = 0;
}

/* Adds a change: body is what is sent; full (NULL if body is it) the full-id body. */
static int batch_add(ob_batch *b, int64_t id, uint64_t dseq, const void *body, size_t len,
                     const void *full, size_t full_len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        ob_item *v = realloc(b->items, cap * sizeof *v);
        if (!v)
            return FIELDSYNC_ENOMEM;
        b->items = v;
        b->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return FIELDSYNC_ENOMEM;
    memcpy(copy, body, len);
    uint8_t *fcopy = NULL;
    if (full && !(fcopy = malloc(full_len ? full_len : 1))) {
        free(copy);
        return FIELDSYNC_ENOMEM;
    }
    if (full)
        memcpy(fcopy, full, full_len);
    b->items[b->n++] = (ob_item){.id = id, .dseq = dseq, .body = copy, .len = len,
                                 .full = fcopy, .full_len = fcopy ? full_len : 0};
    b->bytes += len;
    return 0;
}

/* ---- dependency closure ------------------------------------------------------------------ */

typedef struct dep {
    int64_t id;
    uint8_t *body;
    size_t len;
} dep;

typedef struct plan {
    dep *v;
    size_t n, cap;
    rid_t *keys;      /* records whose earlier changes are needed */
    size_t nk, capk;
} plan;

static void plan_free(plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].body);
    free(p->v);
    free(p->keys);
    memset(p, 0, sizeof *p);
}

static bool plan_has_id(const plan *p, int64_t id)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].id == id)
            return true;
    return false;
}

static int plan_key(plan *p, const rid_t *k)
{
    for (size_t i = 0; i < p->nk; i++)
        if (!rid_cmp(&p->keys[i], k))
            return 0;
    if (p->nk == p->capk) {
        size_t cap = p->capk ? p->capk * 2 : 8;
        rid_t *v = realloc(p->keys, cap * sizeof *v);
        if (!v)
            return FIELDSYNC_ENOMEM;
        p->keys = v;
        p->capk = cap;
    }
    p->keys[p->nk++] = *k;
    return 0;
}

/* Adds a change to the plan and queues its record and referenced records as keys. */
static int plan_add(fieldsync_db *db, plan *p, int64_t id, const void *body, size_t len,
                    change *c)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        dep *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return FIELDSYNC_ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return FIELDSYNC_ENOMEM;
    memcpy(copy, body, len);
    p->v[p->n++] = (dep){.id = id, .body = copy, .len = len};
    mpr r;
    fs_error e = {0};
    mpr_init(&r, body, len);
    int rc = change_unpack(&r, db->s, false, c, &e);
    if (rc)
        return sdk_from_fs(db, rc, &e);
    if ((rc = plan_key(p, &c->record)))
        return rc;
    for (uint32_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].v.kind == VAL_REF && (rc = plan_key(p, &c->fields[i].v.u.ref)))
            return rc;
    return 0;
}

static int dep_cmp(const void *a, const void *b)
{
    int64_t x = ((const dep *)a)->id, y = ((const dep *)b)->id;
    return x < y ? -1 : x > y;
}

/* The unnumbered changes that must be numbered with candidate (its closure), sorted by id. */
static int plan_closure(fieldsync_db *db, plan *p, int64_t cand, const void *body, size_t len,
                        change *c)
{
    int rc = plan_add(db, p, cand, body, len, c);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT id, body FROM dev_outbox WHERE record = ?1 AND dseq IS NULL "
                           "AND id < ?2 ORDER BY id",
                           -1, &s, NULL))
        return sdk_sqlfail(db, "outbox");
    for (size_t k = 0; k < p->nk && !rc; k++) { /* p->nk grows while we go */
        sqlite3_reset(s);
        sqlite3_bind_blob(s, 1, p->keys[k].b, 16, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, cand);
        int step;
        while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(s, 0);
            if (!plan_has_id(p, id))
                rc = plan_add(db, p, id, sqlite3_column_blob(s, 1),
                              (size_t)sqlite3_column_bytes(s, 1), c);
        }
        if (!rc && step != SQLITE_DONE)
            rc = sdk_sqlfail(db, "outbox");
    }
    sqlite3_finalize(s);
    if (!rc)
        qsort(p->v, p->n, sizeof *p->v, dep_cmp);
    if (rc == FIELDSYNC_ENOMEM)
        sdk_fail(db, rc, "out of memory");
    return rc;
}

/* Whether a change of record may go out with its id abbreviated: the record is in the
 * confirmed state (so the server holds it) and no server restore was seen. */
static bool may_abbrev(fieldsync_db *db, const rid_t *record)
{
    uint64_t off = 0;
    if (kv_get_u64(db, "abbrev_off", &off) || off)
        return false;
    return store_record_get(db->st, record, NULL, NULL, 0) == 0;
}

/* Gives change row id its dseq: rewrites its body with the number, fixes whether its record
 * id goes abbreviated (wire), and adds it to b. */
static int number_one(fieldsync_db *db, const dep *d, uint64_t dseq, change *c,
                      msgpack_sbuffer *sb, ob_batch *b)
{
    mpr r;
    fs_error e = {0};
    mpr_init(&r, d->body, d->len);
    int rc = change_unpack(&r, db->s, false, c, &e);
    if (rc)
        return sdk_from_fs(db, rc, &e);
    c->dseq = dseq;
    sb->size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (change_pack(&pk, c, false))
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    size_t full_len = sb->size;
    if (may_abbrev(db, &c->record)) { /* the abbreviated form follows the body in sb */
        c->abbrev = true;
        rc = change_pack(&pk, c, false);
        c->abbrev = false;
        if (rc)
            return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    }
    const char *data = sb->data;
    size_t wire_len = sb->size - full_len;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "UPDATE dev_outbox SET dseq = ?1, body = ?2, wire = ?4 WHERE id = ?3",
                           -1, &s, NULL))
        return sdk_sqlfail(db, "outbox");
    sqlite3_bind_int64(s, 1, (sqlite3_int64)dseq);
    sqlite3_bind_blob(s, 2, data, (int)full_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, d->id);
    if (wire_len)
        sqlite3_bind_blob(s, 4, data + full_len, (int)wire_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 4);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return sdk_sqlfail(db, "outbox");
    rc = wire_len ? batch_add(b, d->id, dseq, data + full_len, wire_len, data, full_len)
                  : batch_add(b, d->id, dseq, data, full_len, NULL, 0);
    return rc ? sdk_fail(db, rc, "out of memory") : 0;
}

int outbox_next_batch(fieldsync_db *db, size_t max_n, size_t max_bytes, ob_batch *b)
{
    return outbox_next_batch_after(db, 0, max_n, max_bytes, b);
}

int outbox_next_batch_after(fieldsync_db *db, uint64_t after, size_t max_n, size_t max_bytes,
                            ob_batch *b)
{
    ob_batch_clear(b);
    if (!max_n)
        max_n = 1;
    /* 1. numbered, unanswered, not in flight (above `after`): in dseq order, before anything
     * new */
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT id, dseq, body, wire FROM dev_outbox WHERE dseq IS NOT NULL "
                           "AND dseq > ?2 ORDER BY dseq LIMIT ?1",
                           -1, &s, NULL))
        return sdk_sqlfail(db, "outbox");
    sqlite3_bind_int64(s, 1, (sqlite3_int64)max_n + 1);
    sqlite3_bind_int64(s, 2, after > INT64_MAX ? INT64_MAX : (sqlite3_int64)after);
    int rc = 0, step;
    bool more_numbered = false;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        bool ab = sqlite3_column_type(s, 3) == SQLITE_BLOB; /* sent abbreviated */
        size_t len = (size_t)sqlite3_column_bytes(s, ab ? 3 : 2);
        if (b->n && (b->n >= max_n || b->bytes + len > max_bytes)) {
            more_numbered = true;
            break;
        }
        const void *full = ab ? sqlite3_column_blob(s, 2) : NULL;
        size_t full_len = ab ? (size_t)sqlite3_column_bytes(s, 2) : 0;
        rc = batch_add(b, sqlite3_column_int64(s, 0), (uint64_t)sqlite3_column_int64(s, 1),
                       sqlite3_column_blob(s, ab ? 3 : 2), len, full, full_len);
        if (rc)
            rc = sdk_fail(db, rc, "out of memory");
    }
    sqlite3_finalize(s);
    if (rc || more_numbered || b->n >= max_n)
        return rc;
    /* 2. number new changes: fast lane first, each after what it depends on */
    uint64_t next;
    if ((rc = kv_get_u64(db, "next_dseq", &next)))
        return rc;
    if (!next)
        next = 1;
    change *c = malloc(sizeof *c);
    if (!c)
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if ((rc = sdk_begin(db))) {
        free(c);
        msgpack_sbuffer_destroy(&sb);
        return rc;
    }
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT id, body FROM dev_outbox WHERE dseq IS NULL "
                           "ORDER BY priority, id LIMIT 1",
                           -1, &q, NULL))
        rc = sdk_sqlfail(db, "outbox");
    bool full = false;
    while (!rc && !full) {
        sqlite3_reset(q);
        step = sqlite3_step(q);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = sdk_sqlfail(db, "outbox");
            break;
        }
        plan p = {0};
        rc = plan_closure(db, &p, sqlite3_column_int64(q, 0), sqlite3_column_blob(q, 1),
                          (size_t)sqlite3_column_bytes(q, 1), c);
        for (size_t i = 0; i < p.n && !rc; i++) {
            if (b->n && (b->n >= max_n || b->bytes + p.v[i].len > max_bytes)) {
                full = true; /* a prefix of the closure by id is itself dependency-closed */
                break;
            }
            rc = number_one(db, &p.v[i], next, c, &sb, b);
            if (!rc)
                next++;
        }
        plan_free(&p);
    }
    sqlite3_finalize(q);
    if (!rc)
        rc = kv_set_u64(db, "next_dseq", next);
    if (!rc)
        rc = sdk_commit(db);
    else
        sdk_rollback(db);
    if (rc) /* nothing numbered is durable: send nothing of it */
        ob_batch_clear(b);
    free(c);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ---- a clock from a wrong date ---------------------------------------------------------
 * A device whose date was more than a day ahead stamped its clock, and saved it, in the
 * future. The hybrid clock never goes back by itself, so after the date is fixed every new
 * change would still carry a clock the server refuses (ECLOCK_DRIFT), until real time caught
 * up a day or more later. The server refuses clocks more than the drift bound ahead of its
 * WALL clock, which the device cannot see: welcome's server_hlc is at or above it (it may
 * be ahead after accepting a fast device's changes), and the device's own wall clock is
 * right once its date has been fixed; the smaller of the two gives a bound the server
 * certainly accepts. When our clock is beyond it, it goes back to the greatest clock the
 * replica knows below it (welcome's, its log's, its outbox's), so later changes still come
 * after everything the device has seen. Outbox changes never sent (no
 * dseq) and stamped above the bound are stamped again, in creation order, as if made now (no
 * one has seen them; their true time is unknown anyway); a base above the bound becomes the
 * new stamp of the change it pointed at, or the rewound clock. Changes already sent keep
 * their bytes (their dseq is fixed to them): the server refuses them and the user sees why.
 * The clock never goes below server_hlc, so a device whose date is wrong the other way
 * (reset to the past) is not dragged back: at worst its unsent changes are stamped as of
 * the server's now. */
int outbox_clock_rewind(fieldsync_db *db, uint64_t server_hlc)
{
    hlc_clock *clk = store_clock(db->st);
    uint64_t wall = hlc_wall_ms(clk), server_ms = hlc_physical_ms(server_hlc);
    uint64_t bound_ms = (wall < server_ms ? wall : server_ms) + (uint64_t)clk->max_drift_ms;
    if (hlc_physical_ms(clk->last) <= bound_ms)
        return 0;
    uint64_t bound = hlc_make(bound_ms, 0xffff), floor = server_hlc;
    /* the floor stays above every clock the server may still accept (server_hlc bounds its
     * wall clock from above): what it accepted (the log), what was sent and is waiting for
     * an answer (numbered: those bytes cannot change), and the unsent changes that are not
     * stamped again below; so a new change never sorts before one of the device's own */
    uint64_t server_bound = hlc_make(hlc_physical_ms(server_hlc) + (uint64_t)clk->max_drift_ms,
                                     0xffff);
    char sql[200];
    static const char *const where[] = {"log WHERE", "dev_outbox WHERE dseq IS NOT NULL AND",
                                        "dev_outbox WHERE dseq IS NULL AND"};
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "SELECT coalesce(max(hlc), 0) FROM %s hlc BETWEEN 0 AND %lld",
                 where[i], (long long)(i < 2 ? server_bound : bound));
        int64_t m = sdk_count(db, sql);
        if (m > 0 && (uint64_t)m > floor)
            floor = (uint64_t)m;
    }
    clk->last = floor;
    int rc = sdk_save_clock(db); /* sdk_clock_above reads the saved clock as its floor */
    if (rc)
        return rc;
    /* re-stamp what was never sent */
    sqlite3_stmt *q = NULL, *u = NULL;
    snprintf(sql, sizeof sql,
             "SELECT id, body, hlc FROM dev_outbox WHERE dseq IS NULL AND NOT (hlc BETWEEN 0 AND "
             "%lld) ORDER BY id",
             (long long)bound);
    if (sqlite3_prepare_v2(db->sql, sql, -1, &q, NULL) ||
        sqlite3_prepare_v2(db->sql, "UPDATE dev_outbox SET hlc = ?1, body = ?2 WHERE id = ?3", -1,
                           &u, NULL)) {
        sqlite3_finalize(q);
        return sdk_sqlfail(db, "outbox");
    }
    change *c = malloc(sizeof *c);
    uint64_t (*map)[2] = NULL; /* old stamp -> new stamp */
    size_t nmap = 0, capmap = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int step;
    while (c && !rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        mpr r;
        fs_error e = {0};
        mpr_init(&r, sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1));
        if ((rc = change_unpack(&r, db->s, false, c, &e))) {
            rc = sdk_from_fs(db, rc, &e);
            break;
        }
        uint64_t old = c->hlc;
        if (c->base > bound) {
            uint64_t nb = clk->last;
            for (size_t k = 0; k < nmap; k++)
                if (map[k][0] == c->base)
                    nb = map[k][1];
            c->base = nb;
        }
        c->hlc = sdk_clock_above(db, c->base);
        if (nmap == capmap) {
            capmap = capmap ? capmap * 2 : 16;
            void *m2 = realloc(map, capmap * sizeof *map);
            if (!m2) {
                rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
                break;
            }
            map = m2;
        }
        map[nmap][0] = old;
        map[nmap++][1] = c->hlc;
        sb.size = 0;
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (change_pack(&pk, c, false)) {
            rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
            break;
        }
        sqlite3_reset(u);
        sqlite3_bind_int64(u, 1, (sqlite3_int64)c->hlc);
        sqlite3_bind_blob(u, 2, sb.data, (int)sb.size, SQLITE_STATIC);
        sqlite3_bind_int64(u, 3, sqlite3_column_int64(q, 0));
        if (sqlite3_step(u) != SQLITE_DONE)
            rc = sdk_sqlfail(db, "outbox");
    }
    if (!c)
        rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    msgpack_sbuffer_destroy(&sb);
    free(map);
    free(c);
    sqlite3_finalize(q);
    sqlite3_finalize(u);
    return rc ? rc : sdk_save_clock(db);
}

/* ---- a server restored from a backup -----------------------------------------------------
 * Welcome says the server has consumed fewer of our sequence numbers than it once answered:
 * it was restored from a backup (docs/operations.md §7) and lost what we pushed after it.
 * This replica still holds every change of ours the server accepted (in its log, as it
 * applied them) and those it refused (dev_refused, until the user dismisses them): they go
 * back into the outbox under their own sequence numbers and are pushed again, first, so the
 * server gets them back, once. The server's log was rewound, so the pull cursor goes back
 * to 0 as well (pulling again has no effect on what we have). A number this replica holds
 * nothing for any more (a dismissed refusal) stays a hole: the push then stops at ESEQ_GAP
 * and the device must be enrolled again. */
static int requeue_lost(fieldsync_db *db, uint64_t server_dseq, uint64_t acked)
{
    sqlite3_stmt *q = NULL, *ins = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT dseq, body FROM log WHERE device = ?1 AND dseq > ?2 AND "
                           "dseq <= ?3 ORDER BY dseq",
                           -1, &q, NULL) ||
        sqlite3_prepare_v2(db->sql,
                           "INSERT OR IGNORE INTO dev_outbox(dseq, priority, created, type, record, "
                           "hlc, body) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &ins, NULL)) {
        sqlite3_finalize(q);
        return sdk_sqlfail(db, "outbox");
    }
    sqlite3_bind_blob(q, 1, db->device.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)server_dseq);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)acked);
    change *c = malloc(sizeof *c);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int step, n = 0;
    while (c && !rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        mpr r;
        fs_error e = {0};
        mpr_init(&r, sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1));
        if (change_unpack(&r, db->s, true, c, &e))
            continue; /* logged under a schema this one cannot read: left out (a hole) */
        sb.size = 0;
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (change_pack(&pk, c, false)) {
            rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
            break;
        }
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)c->dseq);
        sqlite3_bind_int64(ins, 2, sdk_now_ms());
        sqlite3_bind_int(ins, 3, c->type);
        sqlite3_bind_blob(ins, 4, c->record.b, 16, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 5, (sqlite3_int64)c->hlc);
        sqlite3_bind_blob(ins, 6, sb.data, (int)sb.size, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            rc = sdk_sqlfail(db, "outbox");
        n++;
    }
    if (!c)
        rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    free(c);
    msgpack_sbuffer_destroy(&sb);
    sqlite3_finalize(q);
    sqlite3_finalize(ins);
    if (rc)
        return rc;
    char sql[300];
    snprintf(sql, sizeof sql,
             "INSERT OR IGNORE INTO dev_outbox(dseq, priority, created, type, record, hlc, body) "
             "SELECT dseq, priority, created, type, record, hlc, body FROM dev_refused WHERE "
             "dseq > %llu AND dseq <= %llu",
             (unsigned long long)server_dseq, (unsigned long long)acked);
    if ((rc = sdk_exec(db, sql)))
        return rc;
    snprintf(sql, sizeof sql, "DELETE FROM dev_refused WHERE dseq > %llu AND dseq <= %llu",
             (unsigned long long)server_dseq, (unsigned long long)acked);
    if ((rc = sdk_exec(db, sql)) || (rc = kv_set_u64(db, "acked_dseq", server_dseq)) ||
        (rc = kv_set_u64(db, "cursor", 0)))
        return rc;
    (void)n;
    return 0;
}

int outbox_distrust(fieldsync_db *db, uint64_t above)
{
    int rc = kv_set_u64(db, "abbrev_off", 1);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql, "UPDATE dev_outbox SET wire = NULL WHERE dseq > ?1", -1, &s,
                           NULL))
        return sdk_sqlfail(db, "outbox");
    sqlite3_bind_int64(s, 1, above > INT64_MAX ? INT64_MAX : (sqlite3_int64)above);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? 0 : sdk_sqlfail(db, "outbox");
}

int outbox_welcome(fieldsync_db *db, uint64_t server_dseq)
{
    uint64_t next, acked;
    int rc = kv_get_u64(db, "next_dseq", &next);
    if (!rc)
        rc = kv_get_u64(db, "acked_dseq", &acked);
    if (!rc && server_dseq < acked)
        rc = outbox_distrust(db, server_dseq);
    if (!rc && server_dseq < acked)
        rc = requeue_lost(db, server_dseq, acked);
    if (rc)
        return rc;
    if (next > server_dseq)
        return 0;
    /* the server consumed numbers this replica does not remember giving (a replica restored
     * from an old copy): new numbers must start above them or they would clash */
    return kv_set_u64(db, "next_dseq", server_dseq + 1);
}

/* ---- results ----------------------------------------------------------------------------- */

static const ob_item *find_item(const ob_batch *b, uint64_t dseq)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].dseq == dseq)
            return &b->items[i];
    return NULL;
}

static int exec_id(fieldsync_db *db, const char *sql, int64_t id, int code, const char *text,
                   size_t text_len)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL))
        return sdk_sqlfail(db, "outbox");
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_bind_parameter_count(s) >= 3) {
        sqlite3_bind_int(s, 2, code);
        sqlite3_bind_text(s, 3, text ? text : "", (int)text_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, sdk_now_ms());
    }
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? 0 : sdk_sqlfail(db, "outbox");
}

/*
 * The before_commit hook of every store_apply_batch() of the SDK: inside the batch's
 * transaction, just before its COMMIT, so that all of it commits (or, on a crash, is lost)
 * together with the changes it describes:
 *   - a change of this device that is now in the confirmed log (accepted, or a duplicate the
 *     log already held) leaves the outbox: an acknowledgement is never applied twice nor
 *     the change sent again after a crash;
 *   - with_cursor: the pull cursor is written, once per batch.
 * Returns 0, or FS_EIO with e filled (the batch then rolls back).
 */
typedef struct commit_ctx {
    fieldsync_db *db;
    bool with_cursor;
    uint64_t cursor;
} commit_ctx;

static int batch_commit_hook(void *ctx, store *st, const change *cs, const apply_result *ar,
                             size_t n, fs_error *e)
{
    commit_ctx *cc = ctx;
    fieldsync_db *db = cc->db;
    sqlite3 *sql = store_db(st);
    sqlite3_stmt *q = NULL;
    int step = SQLITE_DONE;
    for (size_t i = 0; i < n && db->enrolled && step == SQLITE_DONE; i++) {
        if (ar[i].status == APPLY_REFUSED || memcmp(cs[i].device.b, db->device.b, 16))
            continue;
        if (!q && sqlite3_prepare_v2(sql, "DELETE FROM dev_outbox WHERE dseq = ?1", -1, &q, NULL))
            return fs_error_set(e, FS_EIO, "outbox: %s", sqlite3_errmsg(sql));
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, (sqlite3_int64)cs[i].dseq);
        step = sqlite3_step(q);
    }
    sqlite3_finalize(q);
    if (step != SQLITE_DONE)
        return fs_error_set(e, FS_EIO, "outbox: %s", sqlite3_errmsg(sql));
    if (!cc->with_cursor)
        return 0;
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)cc->cursor);
    if (sqlite3_prepare_v2(sql, "INSERT OR REPLACE INTO dev_identity(key, value) VALUES "
                                "('cursor', ?1)",
                           -1, &q, NULL))
        return fs_error_set(e, FS_EIO, "cursor: %s", sqlite3_errmsg(sql));
    sqlite3_bind_text(q, 1, v, -1, SQLITE_STATIC);
    step = sqlite3_step(q);
    sqlite3_finalize(q);
    if (step != SQLITE_DONE)
        return fs_error_set(e, FS_EIO, "cursor: %s", sqlite3_errmsg(sql));
    return 0;
}

int outbox_apply_results(fieldsync_db *db, const ob_batch *b, const wire_result *res, size_t n,
                         ob_counts *counts)
{
    int rc = 0;
    change *cs = n ? calloc(n, sizeof *cs) : NULL;
    apply_result *ar = n ? calloc(n, sizeof *ar) : NULL;
    if (n && (!cs || !ar)) {
        free(cs);
        free(ar);
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    }
    size_t k = 0;
    bool gap = false, resend = false;
    uint64_t acked = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const ob_item *it = find_item(b, res[i].dseq);
        if (!it)
            continue; /* not ours: ignore (the server echoes what we sent) */
        if (res[i].status == APPLY_REFUSED && res[i].code == FS_ESEQ_GAP) {
            gap = true;
            continue;
        }
        if (res[i].status == APPLY_REFUSED && res[i].code == FS_EREC_ABBREV) {
            resend = resend || it->full; /* not consumed; below: sent again in full */
            continue;
        }
        if (res[i].dseq > acked)
            acked = res[i].dseq;
        if (res[i].status == APPLY_REFUSED)
            continue;
        mpr r;
        fs_error e = {0};
        mpr_init(&r, it->full ? it->full : it->body, it->full ? it->full_len : it->len);
        if ((rc = change_unpack(&r, db->s, false, &cs[k], &e))) {
            rc = sdk_from_fs(db, rc, &e);
            break;
        }
        cs[k].device = db->device;
        cs[k].author = db->user;
        cs[k].author_len = (uint32_t)strlen(db->user);
        cs[k].role = (uint8_t)(db->role < 0 ? 0 : db->role);
        k++;
    }
    if (!rc && k) {
        fs_error e = {0};
        commit_ctx cc = {.db = db};
        apply_opts ao = {.before_commit = batch_commit_hook, .ctx = &cc};
        int frc = store_apply_batch(db->st, cs, k, &ao, ar, &e);
        if (frc)
            rc = sdk_from_fs(db, frc, &e);
        else
            sdk_seen(db);
    }
    free(cs);
    free(ar);
    if (rc)
        return rc;
    /* refusals, duplicates the replica already had, and the acknowledged mark */
    if ((rc = sdk_begin(db)))
        return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        const ob_item *it = find_item(b, res[i].dseq);
        if (!it)
            continue;
        switch (res[i].status) {
        case APPLY_ACCEPTED:
            counts->accepted++;
            rc = exec_id(db, "DELETE FROM dev_outbox WHERE id = ?1", it->id, 0, NULL, 0);
            break;
        case APPLY_DUPLICATE:
            counts->duplicates++;
            rc = exec_id(db, "DELETE FROM dev_outbox WHERE id = ?1", it->id, 0, NULL, 0);
            break;
        default:
            if (res[i].code == FS_ESEQ_GAP) {
                counts->gaps++;
                break;
            }
            if (res[i].code == FS_EREC_ABBREV && it->full) {
                /* unknown or ambiguous abbreviation: the same change, same dseq, full id */
                counts->resend++;
                rc = exec_id(db, "UPDATE dev_outbox SET wire = NULL WHERE id = ?1", it->id, 0,
                             NULL, 0);
                break;
            }
            counts->refused++;
            rc = exec_id(db,
                         "INSERT INTO dev_refused(dseq, priority, created, type, record, hlc, "
                         "body, code, text, refused_at) SELECT dseq, priority, created, type, "
                         "record, hlc, body, ?2, ?3, ?4 FROM dev_outbox WHERE id = ?1",
                         it->id, res[i].code, res[i].text, res[i].text_len);
            if (!rc)
                rc = exec_id(db, "DELETE FROM dev_outbox WHERE id = ?1", it->id, 0, NULL, 0);
        }
    }
    uint64_t old;
    if (!rc && !(rc = kv_get_u64(db, "acked_dseq", &old)) && acked > old)
        rc = kv_set_u64(db, "acked_dseq", acked);
    if (!rc)
        rc = sdk_commit(db);
    else
        sdk_rollback(db);
    if (!rc && gap && !resend) /* gaps after an EREC_ABBREV are that change's, not lost ones */
        rc = sdk_fail(db, FIELDSYNC_ESEQUENCE,
                      "the server is missing earlier changes of this device (ESEQ_GAP): the "
                      "replica is older than what the server saw, or the server was restored "
                      "from a backup and this replica no longer holds them (refusals "
                      "dismissed); its changes are kept: enrol the device again");
    return rc;
}

int outbox_apply_pulled(fieldsync_db *db, const change *cs, size_t n, uint64_t next_cursor,
                        apply_result *ar, uint64_t *applied)
{
    *applied = 0;
    if (n) {
        fs_error e = {0};
        commit_ctx cc = {.db = db, .with_cursor = true, .cursor = next_cursor};
        apply_opts ao = {.before_commit = batch_commit_hook, .ctx = &cc};
        int frc = store_apply_batch(db->st, cs, n, &ao, ar, &e);
        if (frc)
            return sdk_from_fs(db, frc, &e);
        for (size_t i = 0; i < n; i++)
            *applied += ar[i].status == APPLY_ACCEPTED;
        if (!store_in_group(db->st))
            sdk_seen(db); /* in a group: once it commits (outbox_pull_commit) */
        return 0; /* the cursor was written by the hook, in the batch's transaction */
    }
    /* an empty batch: nothing to commit with (inside a group, it commits with the group) */
    return kv_set_u64(db, "cursor", next_cursor);
}

int outbox_pull_begin(fieldsync_db *db)
{
    fs_error e = {0};
    int rc = store_group_begin(db->st, &e);
    return rc ? sdk_from_fs(db, rc, &e) : 0;
}

int outbox_pull_commit(fieldsync_db *db)
{
    if (!store_in_group(db->st))
        return 0;
    fs_error e = {0};
    int rc = store_group_commit(db->st, NULL, NULL, &e);
    if (rc)
        return sdk_from_fs(db, rc, &e);
    sdk_seen(db);
    return 0;
}

/* ---- review items ------------------------------------------------------------------------ */

int reviews_store(fieldsync_db *db, mpr *r, uint32_t count, uint64_t *opened, uint64_t *total)
{
    *opened = *total = 0;
    uint32_t n;
    if (count < 2 || mpr_array(r, 1u << 20, &n))
        return sdk_fail(db, FIELDSYNC_EPROTOCOL, "reviews: malformed answer");
    int rc = sdk_begin(db);
    if (rc)
        return rc;
    if ((rc = sdk_exec(db, "UPDATE dev_review SET resolved = resolved | 2")))
        goto fail;
    sqlite3_stmt *ins = NULL, *has = NULL;
    if (sqlite3_prepare_v2(db->sql,
                           "INSERT INTO dev_review(id, record, type, field, value_a, hlc_a, "
                           "author_a, value_b, hlc_b, author_b, resolved) VALUES (?1, ?2, ?3, ?4, "
                           "?5, ?6, ?7, ?8, ?9, ?10, 0) ON CONFLICT(id) DO UPDATE SET "
                           "record = excluded.record, type = excluded.type, field = excluded.field, "
                           "value_a = excluded.value_a, hlc_a = excluded.hlc_a, author_a = "
                           "excluded.author_a, value_b = excluded.value_b, hlc_b = excluded.hlc_b, "
                           "author_b = excluded.author_b, resolved = resolved & 1",
                           -1, &ins, NULL) ||
        sqlite3_prepare_v2(db->sql, "SELECT 1 FROM dev_review WHERE id = ?1", -1, &has, NULL)) {
        rc = sdk_sqlfail(db, "reviews");
        goto done;
    }
    for (uint32_t i = 0; i < n && !rc; i++) {
        uint32_t m;
        int64_t id;
        const uint8_t *rec, *dev;
        uint32_t rl, dl, al, bl;
        uint64_t type, field, ha, hb;
        const char *aa, *ab;
        const uint8_t *va, *vb;
        size_t val, vbl;
        if (mpr_array(r, 64, &m) || m < 12 || mpr_i64(r, &id) || mpr_bin(r, 16, &rec, &rl) ||
            rl != 16 || mpr_u64(r, &type) || mpr_u64(r, &field))
            goto bad;
        va = r->p;
        if (mpr_skip(r, MPR_MAX_DEPTH))
            goto bad;
        val = (size_t)(r->p - va);
        if (mpr_u64(r, &ha) || mpr_bin(r, 16, &dev, &dl) || mpr_str(r, 64, &aa, &al))
            goto bad;
        vb = r->p;
        if (mpr_skip(r, MPR_MAX_DEPTH))
            goto bad;
        vbl = (size_t)(r->p - vb);
        if (mpr_u64(r, &hb) || mpr_bin(r, 16, &dev, &dl) || mpr_str(r, 64, &ab, &bl) ||
            wire_skip_rest(r, m - 12))
            goto bad;
        sqlite3_reset(has);
        sqlite3_bind_int64(has, 1, id);
        if (sqlite3_step(has) != SQLITE_ROW)
            (*opened)++;
        (*total)++;
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, id);
        sqlite3_bind_blob(ins, 2, rec, 16, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 3, (sqlite3_int64)type);
        sqlite3_bind_int64(ins, 4, (sqlite3_int64)field);
        sqlite3_bind_blob(ins, 5, va, (int)val, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 6, (sqlite3_int64)ha);
        sqlite3_bind_text(ins, 7, aa, (int)al, SQLITE_TRANSIENT);
        sqlite3_bind_blob(ins, 8, vb, (int)vbl, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 9, (sqlite3_int64)hb);
        sqlite3_bind_text(ins, 10, ab, (int)bl, SQLITE_TRANSIENT);
        if (sqlite3_step(ins) != SQLITE_DONE)
            rc = sdk_sqlfail(db, "reviews");
        continue;
    bad:
        rc = sdk_fail(db, FIELDSYNC_EPROTOCOL, "reviews: item %u is malformed", i);
    }
    if (!rc)
        rc = sdk_exec(db, "DELETE FROM dev_review WHERE resolved & 2");
done:
    sqlite3_finalize(ins);
    sqlite3_finalize(has);
    if (!rc)
        return sdk_commit(db);
fail:
    sdk_rollback(db);
    return rc;
}

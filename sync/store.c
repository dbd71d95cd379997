/*
 * store.c — the replica store. See store.h for the tables and the transaction contract.
 *
 * Design notes
 * - Each accepted change costs one log row (sequential rowid; on the authority, a batch's
 *   rows of one village are one row of log_runs, see runs_add; written a batch at a time:
 *   see log_write), one record lookup, and per field a merge in the field-state cache. The
 *   cache is written to `fields` by store_flush in bulk: a batch's commit then writes a few
 *   sequential log pages instead of one random page per edited field (profiled: COMMIT and checkpoints of those random pages were ~45% of the
 *   time). The log stays the truth: open and a failed batch replay it after
 *   meta.materialized_seq. Values and rule state are MessagePack blobs so the field table
 *   has one shape for every kind.
 * - A replica's log has no index besides its rowid: duplicates are found through the field
 *   versions, an in-memory set of the unflushed rows and log_by_record (is_logged), and its
 *   changes are merged into the cached states in place (nothing refuses them).
 * - The authority refuses a change as a whole: every check that can refuse it (the rules'
 *   merge_check, authorize with the scope the change leads to) runs before any of its
 *   fields is merged, and then they are merged in place too. Never half-applied: a failure
 *   after the first merge aborts the batch, and the cache is rebuilt from the log.
 * - Refusals consume the device sequence and are remembered in `refused`, so a re-sent
 *   refused change gets the same answer and the next change is not reported as a gap.
 * - The clock is saved in meta at the end of every batch, inside the transaction.
 */
#include "store.h"

#include "hugemem.h"
#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_FORMAT 1

enum stmt_id {
    S_BEGIN, S_COMMIT, S_ROLLBACK, S_SYNC_FULL, S_SYNC_NORMAL,
    S_LOG_INSERT, S_LOG_INSERT8, S_LOG_INSERT64, /* in this order: rows_next */
    S_LOG_BY_DEV, S_LOG_BODY, S_LOG_FIND, S_LOG_SCAN, S_LOG_RANGE, S_LOG_HISTORY, S_LOG_LAST,
    S_LOG_ALL, S_LOG_INDEX, S_RUN_PUT, S_RUN_SCAN,
    S_REC_GET, S_REC_INSERT, S_REC_SET_SCOPE, S_REC_HAS_CHILD, S_REC_CHILD_SCOPE,
    S_REC_PREFIX,
    S_FIELD_GET, S_FIELD_PUT, S_FIELD_PUT8, S_FIELD_PUT64, /* in this order: rows_next */
    S_DEVSEQ_GET, S_DEVSEQ_PUT,
    S_REFUSED_GET, S_REFUSED_PUT,
    S_REVIEW_OPEN, S_REVIEW_CLOSE,
    S_META_GET, S_META_SET, S_CLOCK_SAVE,
    S_COUNT
};

/* seq is not given: SQLite numbers each row max(seq) + 1, which is the seq apply_one gave it
 * (log_begin: the log's last seq plus one); log_write checks the last one. OR FAIL: a row
 * breaking a NOT NULL (none can: every value is bound) fails the statement without undoing
 * its earlier rows, which the batch's rollback does anyway. With the default, ABORT, SQLite
 * keeps a statement journal for every multi-row INSERT inside a transaction: a 16 KiB copy
 * of each page the statement changes that existed before it, in 1 KiB allocations
 * (temp_store=MEMORY), ~0.4k instructions a change here. Without it a disk full in the
 * middle of the statement rolls back the whole transaction (a push group: each push gets
 * BUSY, none is stored; handle_push.c), not only the statement. */
#define LOG_INSERT "INSERT OR FAIL INTO log(device, dseq, hlc, type, record, scope, body) VALUES "
#define LOG_ROW "(?,?,?,?,?,?,?)" /* the columns above: 7 parameters a row */
#define LOG_ROWS8 LOG_ROW "," LOG_ROW "," LOG_ROW "," LOG_ROW "," LOG_ROW "," LOG_ROW "," \
    LOG_ROW "," LOG_ROW

#define FIELD_PUT                                                                          \
    "INSERT OR FAIL INTO fields(record, field, value, version, whlc, wdev, wseq, author, "  \
    "aux) VALUES "
/* An upsert, OR FAIL: with a column that may abort the statement (OR REPLACE's NOT NULL
 * checks, the default ABORT) SQLite copies each existing page a multi-row statement changes
 * into a statement journal first (16 KiB, in 1 KiB allocations with temp_store=MEMORY), a
 * sixth of a flush's cost (callgrind, bench_ingest: flush 269M -> 231M instructions); with
 * nothing that can abort (no NOT NULL column but the key, which the upsert never changes)
 * it keeps none. A failure (none is expected) leaves the statement's earlier rows, which
 * the transaction's rollback undoes. */
#define FIELD_UPSERT " ON CONFLICT(record, field) DO UPDATE SET value = excluded.value," \
    " version = excluded.version, whlc = excluded.whlc, wdev = excluded.wdev," \
    " wseq = excluded.wseq, author = excluded.author, aux = excluded.aux"
#define FIELD_ROW "(?,?,?,?,?,?,?,?,?)" /* the columns above: 9 parameters a row */
#define FIELD_ROWS8 FIELD_ROW "," FIELD_ROW "," FIELD_ROW "," FIELD_ROW "," FIELD_ROW "," \
    FIELD_ROW "," FIELD_ROW "," FIELD_ROW

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    /* prepared: the daemon switches per bulk group (server/durable.c) */
    [S_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    /* a batch's log rows, 1, 8 or 64 to a statement (log_write) */
    [S_LOG_INSERT] = LOG_INSERT LOG_ROW,
    [S_LOG_INSERT8] = LOG_INSERT LOG_ROWS8,
    [S_LOG_INSERT64] = LOG_INSERT LOG_ROWS8 "," LOG_ROWS8 "," LOG_ROWS8 "," LOG_ROWS8 ","
                       LOG_ROWS8 "," LOG_ROWS8 "," LOG_ROWS8 "," LOG_ROWS8,
    /* authority: a re-sent change's log row among the flushed rows of its record */
    [S_LOG_BY_DEV] = "SELECT l.seq, l.body FROM log_by_record x JOIN log l ON l.seq = x.seq "
                     "WHERE x.record = ?1 AND l.device = ?2 AND l.dseq = ?3",
    [S_LOG_BODY] = "SELECT body FROM log WHERE seq = ?1",
    /* replica: is this change among the flushed (indexed) rows of its record? */
    [S_LOG_FIND] = "SELECT 1 FROM log_by_record x JOIN log l ON l.seq = x.seq "
                   "WHERE x.record = ?1 AND l.hlc = ?2 AND l.device = ?3 AND l.dseq = ?4",
    [S_LOG_SCAN] = "SELECT seq, body, scope FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    /* the rows of one run (store_log_scan_scopes): a range of the rowid */
    [S_LOG_RANGE] = "SELECT seq, body, scope FROM log WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    [S_LOG_HISTORY] = "SELECT l.seq, l.body, l.scope FROM log_by_record x JOIN log l "
                      "ON l.seq = x.seq WHERE x.record = ?1 ORDER BY x.seq",
    [S_LOG_LAST] = "SELECT coalesce(max(seq), 0) FROM log",
    [S_LOG_ALL] = "SELECT seq, body FROM log WHERE seq > ?1 ORDER BY seq",
    [S_LOG_INDEX] = "INSERT OR IGNORE INTO log_by_record(record, seq) "
                    "SELECT record, seq FROM log WHERE seq > ?1 AND seq <= ?2",
    /* authority only: log_runs (runs_add) */
    [S_RUN_PUT] = "INSERT INTO log_runs(scope, last, first) VALUES (?1, ?2, ?3)",
    /* the runs of some scopes that end after ?1, in log order (they never overlap): at most
     * ?2, since each holds at least one row after ?1 */
    [S_RUN_SCAN] = "SELECT first, last FROM log_runs WHERE scope IN "
                   "(SELECT value FROM json_each(?3)) AND last > ?1 ORDER BY first LIMIT ?2",
    [S_REC_GET] = "SELECT type, scope, created FROM records WHERE id = ?1",
    [S_REC_INSERT] = "INSERT INTO records(id, type, scope, parent, created) "
                     "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET "
                     "scope = coalesce(excluded.scope, scope), "
                     "parent = coalesce(excluded.parent, parent), "
                     "created = max(created, excluded.created)",
    [S_REC_SET_SCOPE] = "UPDATE records SET scope = ?2 WHERE id = ?1",
    /* whether any record takes its scope from this one (records_parent index: one seek) */
    [S_REC_HAS_CHILD] = "SELECT 1 FROM records WHERE parent = ?1 LIMIT 1",
    /* every record that takes its scope from this one, at any depth (an amendment of a
     * visit of a child), follows it */
    [S_REC_CHILD_SCOPE] = "WITH RECURSIVE d(id) AS (SELECT id FROM records WHERE parent = ?1 "
                          "UNION SELECT r.id FROM records r JOIN d ON r.parent = d.id) "
                          "UPDATE records SET scope = ?2 WHERE id IN (SELECT id FROM d)",
    /* the records whose id starts with a push-form abbreviation: ?1 and ?2 are the prefix
     * padded with 0x00 and 0xff, a range of the primary key (ids are time-first) */
    [S_REC_PREFIX] = "SELECT id FROM records WHERE id BETWEEN ?1 AND ?2 LIMIT 2",
    [S_FIELD_GET] = "SELECT value, version, whlc, wdev, wseq, author, aux FROM fields "
                    "WHERE record = ?1 AND field = ?2",
    /* a flush's states, 1, 8 or 64 to a statement (fields_write) */
    [S_FIELD_PUT] = FIELD_PUT FIELD_ROW FIELD_UPSERT,
    [S_FIELD_PUT8] = FIELD_PUT FIELD_ROWS8 FIELD_UPSERT,
    [S_FIELD_PUT64] = FIELD_PUT FIELD_ROWS8 "," FIELD_ROWS8 "," FIELD_ROWS8 "," FIELD_ROWS8 ","
                      FIELD_ROWS8 "," FIELD_ROWS8 "," FIELD_ROWS8 "," FIELD_ROWS8 FIELD_UPSERT,
    [S_DEVSEQ_GET] = "SELECT max_dseq FROM devseq WHERE device = ?1",
    [S_DEVSEQ_PUT] = "INSERT INTO devseq(device, max_dseq) VALUES (?1, ?2) "
                     "ON CONFLICT(device) DO UPDATE SET max_dseq = max(max_dseq, excluded.max_dseq)",
    [S_REFUSED_GET] = "SELECT code, msg, body FROM refused WHERE device = ?1 AND dseq = ?2",
    [S_REFUSED_PUT] = "INSERT OR REPLACE INTO refused(device, dseq, code, msg, body) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_REVIEW_OPEN] = "INSERT INTO review(record, type, field, value_a, hlc_a, dev_a, author_a, "
                      "value_b, hlc_b, dev_b, author_b) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                      "?9, ?10, ?11)",
    [S_REVIEW_CLOSE] = "UPDATE review SET resolved_hlc = ?4, resolved_by = ?5 WHERE record = ?1 "
                       "AND field = ?2 AND resolved_hlc = 0 AND hlc_a <= ?3 AND hlc_b <= ?3",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    /* the clock, never lowered: several handles on one file each keep their own clock, and
     * the greatest must survive */
    [S_CLOCK_SAVE] = "INSERT INTO meta(key, value) VALUES ('hlc', ?1) ON CONFLICT(key) DO "
                     "UPDATE SET value = CASE WHEN CAST(excluded.value AS INTEGER) > "
                     "CAST(value AS INTEGER) THEN excluded.value ELSE value END",
};

/*
 * The log's uniqueness, by mode. Neither has a unique index on the log. The authority's
 * exactly-once is the device sequence (devseq: a change is applied only as its device's next
 * dseq, inside the batch transaction that writes the log); a re-sent change's row is found,
 * to compare bodies (answer_replay), the way a replica finds a duplicate, below: a unique
 * index on (device, dseq) cost each accepted change a B-tree seek and insert (~30 bytes,
 * twice with the checkpoint) to serve only re-sends; with many devices in one batch its
 * inserts dirtied one random page per device. Its scope index stays: pulls filter by it.
 * A replica only needs "this change is already here", and it has no index for that: an index
 * on (hlc, device, dseq) was a fifth of the bytes and B-tree work of each applied change.
 * Instead (see is_logged): a change whose clock is above the version of one of its fields
 * cannot have been merged, so it is new, which is the common case of a pull; otherwise the
 * log rows not yet flushed are looked up in memory (the tail set) and the flushed ones
 * through log_by_record, the record's history. Stores made before this kept a unique index,
 * log_change(hlc, device, dseq) on a replica and log_device(device, dseq) on the authority:
 * open drops it (see drop_log_index).
 */
static const char *const log_index_sql[] = {
    [STORE_AUTHORITY] = "CREATE TABLE IF NOT EXISTS log_runs(scope TEXT NOT NULL,"
                        "  last INTEGER NOT NULL, first INTEGER NOT NULL,"
                        "  PRIMARY KEY(scope, last)) WITHOUT ROWID;",
    [STORE_REPLICA] = "",
};

/* The field states. Only the key is NOT NULL (fields_write binds every other column that
 * is never NULL): a NOT NULL column makes SQLite keep a statement journal for the flush's
 * multi-row upsert (see FIELD_PUT). Stores made before had version, whlc, wdev, wseq and
 * author NOT NULL too: open relaxes them (fields_relax). */
#define FIELDS_TABLE                                                                       \
    "fields(record BLOB NOT NULL, field INTEGER NOT NULL, value BLOB,"                     \
    "  version INTEGER, whlc INTEGER, wdev BLOB, wseq INTEGER, author TEXT, aux BLOB,"     \
    "  PRIMARY KEY(record, field)) WITHOUT ROWID"

static const char *const migration_sql =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, device BLOB NOT NULL,"
    "  dseq INTEGER NOT NULL, hlc INTEGER NOT NULL, type INTEGER NOT NULL,"
    "  record BLOB NOT NULL, scope TEXT, body BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS log_by_record(record BLOB NOT NULL, seq INTEGER NOT NULL,"
    "  PRIMARY KEY(record, seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS records(id BLOB PRIMARY KEY, type INTEGER NOT NULL, scope TEXT,"
    "  parent BLOB, created INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS records_parent ON records(parent) WHERE parent IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS records_scope ON records(scope, type);"
    "CREATE TABLE IF NOT EXISTS " FIELDS_TABLE ";"
    "CREATE TABLE IF NOT EXISTS review(id INTEGER PRIMARY KEY, record BLOB NOT NULL,"
    "  type INTEGER NOT NULL, field INTEGER NOT NULL, value_a BLOB, hlc_a INTEGER NOT NULL,"
    "  dev_a BLOB NOT NULL, author_a TEXT NOT NULL, value_b BLOB, hlc_b INTEGER NOT NULL,"
    "  dev_b BLOB NOT NULL, author_b TEXT NOT NULL, resolved_hlc INTEGER NOT NULL DEFAULT 0,"
    "  resolved_by TEXT);"
    "CREATE INDEX IF NOT EXISTS review_open ON review(record, field) WHERE resolved_hlc = 0;"
    "CREATE TABLE IF NOT EXISTS devseq(device BLOB PRIMARY KEY, max_dseq INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS refused(device BLOB NOT NULL, dseq INTEGER NOT NULL,"
    "  code INTEGER NOT NULL, msg TEXT NOT NULL, body BLOB NOT NULL,"
    "  PRIMARY KEY(device, dseq)) WITHOUT ROWID;";

/* One cached field state. */
typedef struct centry {
    rid_t record;
    uint8_t type;        /* record type, for the flush */
    uint8_t field;
    bool dirty;          /* merged since the last flush */
    field_state st;
} centry;

/* A dirty cache entry in a flush's lists (see flush_pick). */
typedef struct dent {
    uint64_t key;        /* the record's first 8 bytes, big-endian: `fields` key order */
    uint64_t lo;         /* fresh: the log seq of the entry's first unflushed change; in the
                          * sweep: the least lo from here to its end */
    centry *e;
} dent;

/* A log row of the batch being applied, not written yet (see log_add). Its scope (if any)
 * and body are in store.plog_bytes. */
typedef struct plog {
    uint64_t seq, dseq, hlc;
    rid_t device, record;
    int type;
    bool has_scope;
    uint32_t scope_off, scope_len, body_off, body_len;
} plog;

/* Device sequences touched by the current batch, written once at its end. */
typedef struct devseq_slot {
    rid_t device;
    uint64_t max;
    bool dirty;
} devseq_slot;

/* A batch's device slots, at most (a push comes from one device; a group of pushes or a
 * replayed log interleaves many): past this, devseq_get/put go to the table directly. */
#define DEVSEQ_SLOTS 65536

/* A replica's log row after materialized_seq, by identity: the tail set (see is_logged). */
typedef struct tkey {
    uint64_t seq;        /* log sequence */
    uint64_t hlc;
    uint64_t dseq;
    rid_t device;
} tkey;

/* Rows after materialized_seq that trigger a flush: bounds the tail set (40 bytes a row) and
 * the replay at open. */
#define TAIL_MAX 250000

struct store {
    sqlite3 *db;
    const schema *s;
    store_mode mode;
    hlc_clock clock;
    sqlite3_stmt *stmt[S_COUNT];
    msgpack_sbuffer buf;     /* scratch for values */
    msgpack_sbuffer body;    /* the current change's full-form body */
    plog *plog;              /* the batch's log rows not written yet (log_add, log_write) */
    size_t n_plog, cap_plog;
    msgpack_sbuffer plog_bytes; /* their scopes and bodies */
    uint64_t log_next;       /* the seq of the batch's next log row (log_begin) */
    const void *body_p;      /* body being applied: body.data, or a raw refused change */
    size_t body_n;
    field_state scratch;     /* the authority's trial merge of a scope field */
    merge_out outs[CHANGE_MAX_FIELDS];
    centry *ents[CHANGE_MAX_FIELDS]; /* cache entries of the current change's fields */
    /* field-state cache: open addressing, linear probing, capacity a power of two */
    struct cslot *tab;
    size_t tab_cap, tab_used, flush_threshold;
    struct cblock *cblocks;  /* the entries' memory (centry_new), newest block first */
    size_t cb_used;          /* entries handed out of the newest block */
    size_t n_cblocks;
    struct cdead *cfree;     /* entries given back (centry_drop), to reuse first */
    size_t cache_max_clean;  /* clean states kept after a flush (store_set_cache_max_clean) */
    size_t flush_chunk;      /* states one automatic flush writes, about (0: all) */
    bool draining;           /* automatic chunks run until n_dirty is down to threshold / 2 */
    size_t n_dirty;          /* dirty entries: fresh, the sweep's rest, a pending flush's */
    dent *fresh;             /* entries first dirtied since the sweep began, in lo order */
    size_t n_fresh, fresh_cap;
    dent *sweep;             /* the sweep (flush_pick): dirty entries in key order */
    size_t sweep_n, sweep_at, sweep_cap; /* sweep[sweep_at, sweep_n) are still to write */
    centry **fbuf;           /* a flush's entries, in key order */
    size_t fbuf_cap;
    size_t pending_flush_n;  /* entries fbuf[0, n) written by the pending flush */
    uint64_t materialized;   /* log seq up to which `fields` is current */
    uint64_t seen;           /* log seq up to which this handle's cache has merged */
    uint32_t cache_epoch;    /* +1 at each cache_clear, never 0 (see rcache) */
    bool pending_flush;      /* a flush ran inside the current batch's transaction */
    bool group;              /* a group is open (store_group_begin): batches are savepoints */
    bool group_broken;       /* a batch of the group failed and took the transaction with it */
    uint64_t group_after;    /* last log seq before the group */
    uint64_t pending_flush_seq;
    devseq_slot *dslots;     /* the current batch's device sequences, in first-use order */
    size_t n_dslots, cap_dslots;
    uint32_t *dsidx;         /* hash index into dslots: slot + 1, 0 = free; cap_dslots * 2 */
    size_t ds_last;          /* the slot devseq_slot_get returned last, + 1 (0: none): a
                                batch is mostly one device's, so it is asked first */
    struct rcache *rc_tab;   /* record headers seen (records table rows), see rcache_* */
    size_t rc_cap, rc_used;
    msgpack_sbuffer run_scope; /* authority: the scope of the run being built (runs_add) */
    uint64_t run_first, run_last; /* its rows; run_last 0: no run open */
    tkey *tail;              /* replica: log rows after `materialized`, in log order */
    size_t tail_cap, tail_used;
    size_t tail_sorted;      /* tail[0, tail_sorted) is in (hlc, device, dseq) order */
};

#define CACHE_MAX_CLEAN 200000 /* clean states kept after a flush, at most */

static int db_fail(store *st, fs_error *e, const char *what)
{
    return fs_error_set(e, FS_EIO, "%s: %s (%s)", what, sqlite3_errmsg(st->db),
                        sqlite3_errstr(sqlite3_extended_errcode(st->db)));
}

static sqlite3_stmt *stmt(store *st, enum stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];
    if (!s) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL))
            return NULL;
        st->stmt[id] = s;
    } else {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    return s;
}

static int exec1(store *st, enum stmt_id id)
{
    sqlite3_stmt *s = stmt(st, id);
    if (!s)
        return FS_EIO;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

int store_meta_get(store *st, const char *key, char *buf, size_t cap)
{
    sqlite3_stmt *s = stmt(st, S_META_GET);
    if (!s)
        return FS_EIO;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(s, 0));
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? FS_ENOTFOUND : FS_EIO;
}

int store_meta_set(store *st, const char *key, const char *value)
{
    sqlite3_stmt *s = stmt(st, S_META_SET);
    if (!s)
        return FS_EIO;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

/* Saves the clock, never lowering the stored value (S_CLOCK_SAVE; once per batch, so the
 * statement is cached like the others). */
static int save_clock(store *st)
{
    sqlite3_stmt *s = stmt(st, S_CLOCK_SAVE);
    if (!s)
        return FS_EIO;
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)st->clock.last);
    sqlite3_bind_text(s, 1, v, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

static int recover(store *st);
static int catch_up(store *st);

/* Whether the schema has a table or index of this name: 0 with *yes, or FS_EIO. */
static int has_object(store *st, const char *name, bool *yes)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM sqlite_master WHERE name = ?1", -1, &q, NULL))
        return FS_EIO;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    *yes = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FS_EIO;
}

/*
 * The authority's log_runs. A run is a stretch of consecutive log rows of one scope,
 * [first, last]; rows without a scope are in none. A pull by village (store_log_scan_scopes)
 * reads the runs of its villages that end after its cursor, in log order, then those ranges
 * of the log's rowid. The runs replaced an index log_scope on log(scope, seq), which cost an
 * index entry for every row: ~1.6k instructions a change, and bench_ingest's server time
 * went from 3.6 to 3.2 us a change without it. A push of one device is mostly one village,
 * so one run. log_write adds the runs of a batch's rows in the same statement sequence and
 * transaction as the rows.
 */

/* Writes the run being built, if any. Returns 0 or FS_EIO. */
static int runs_end(store *st)
{
    if (!st->run_last)
        return 0;
    uint64_t last = st->run_last;
    st->run_last = 0;
    sqlite3_stmt *q = stmt(st, S_RUN_PUT);
    if (!q)
        return FS_EIO;
    sqlite3_bind_text(q, 1, st->run_scope.data ? st->run_scope.data : "",
                      (int)st->run_scope.size, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)last);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)st->run_first);
    int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : FS_EIO;
    sqlite3_reset(q);
    return rc;
}

/* Adds log row seq, of scope (len bytes; NULL: none), to the run being built: the next row
 * of the same scope extends it, any other row writes it (runs_end) and starts the next.
 * Rows come in log order. Returns 0, FS_EIO or FS_ENOMEM. */
static int runs_add(store *st, uint64_t seq, const char *scope, size_t len)
{
    if (st->run_last && scope && seq == st->run_last + 1 && len == st->run_scope.size &&
        (!len || !memcmp(scope, st->run_scope.data, len))) {
        st->run_last = seq;
        return 0;
    }
    int rc = runs_end(st);
    if (rc || !scope)
        return rc;
    st->run_scope.size = 0;
    if (len && msgpack_sbuffer_write(&st->run_scope, scope, len))
        return FS_ENOMEM;
    st->run_first = st->run_last = seq;
    return 0;
}

/* A store made before log_runs has an index log_scope on log(scope, seq) instead, and an
 * older fieldsync opening a newer store creates it again and adds rows without runs: so
 * whenever the index is there, open makes the runs again from the whole log (one pass in log
 * order, memory for one run) and drops the index, in one transaction. */
static int runs_rebuild(store *st)
{
    bool old;
    int rc = has_object(st, "log_scope", &old);
    if (rc || !old)
        return rc;
    sqlite3_stmt *q = NULL;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE; DELETE FROM log_runs;", NULL, NULL, NULL) ||
        sqlite3_prepare_v2(st->db, "SELECT seq, scope FROM log ORDER BY seq", -1, &q, NULL)) {
        rc = FS_EIO;
    }
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW)
        rc = runs_add(st, (uint64_t)sqlite3_column_int64(q, 0),
                      sqlite3_column_type(q, 1) == SQLITE_NULL
                          ? NULL
                          : (const char *)sqlite3_column_text(q, 1),
                      (size_t)sqlite3_column_bytes(q, 1));
    sqlite3_finalize(q);
    if (!rc && step != SQLITE_DONE)
        rc = FS_EIO;
    if (!rc)
        rc = runs_end(st);
    st->run_last = 0;
    if (rc || sqlite3_exec(st->db, "DROP INDEX log_scope; COMMIT;", NULL, NULL, NULL)) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return rc ? rc : FS_EIO;
    }
    return 0;
}

/* A store made before the tail set had a unique index on its log (name: log_change on a
 * replica, log_device on the authority): drop it, after making sure every row up to
 * materialized_seq is in log_by_record, which is_logged and answer_replay rely on. Once per
 * store, in one transaction. (An older fieldsync opening the store again recreates its
 * index, which is harmless: this runs again at the next open.) */
static int drop_log_index(store *st, const char *name)
{
    bool old;
    int rc = has_object(st, name, &old);
    if (rc || !old)
        return rc;
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE;"
             "INSERT OR IGNORE INTO log_by_record(record, seq) SELECT record, seq FROM "
             "log WHERE seq <= coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE "
             "key = 'materialized_seq'), 0);"
             "DROP INDEX %s;"
             "COMMIT;",
             name);
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL)) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return FS_EIO;
    }
    return 0;
}

/* A store made before FIELDS_TABLE has NOT NULL on fields' other columns: its definition is
 * replaced in sqlite_master, in one transaction, once (the procedure SQLite's ALTER TABLE
 * page gives for removing NOT NULL constraints: the rows are unchanged, only the text the
 * schema is read from). Returns 0 even when it cannot be done (a build that refuses
 * writable_schema): the store then works as before, with the statement journal. */
static int fields_relax(store *st)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT count(*) FROM pragma_table_info('fields') "
                           "WHERE \"notnull\" AND pk = 0",
                           -1, &q, NULL))
        return 0;
    bool old = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) > 0;
    sqlite3_finalize(q);
    if (!old)
        return 0;
    int version = -1;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) ||
        sqlite3_prepare_v2(st->db, "PRAGMA schema_version", -1, &q, NULL)) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return 0;
    }
    if (sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    char sql[160];
    snprintf(sql, sizeof sql, "PRAGMA schema_version = %d; PRAGMA writable_schema = OFF;",
             version + 1);
    if (version < 0 ||
        sqlite3_exec(st->db,
                     "PRAGMA writable_schema = ON;"
                     "UPDATE sqlite_master SET sql = 'CREATE TABLE " FIELDS_TABLE "'"
                     "  WHERE type = 'table' AND name = 'fields';",
                     NULL, NULL, NULL) ||
        sqlite3_exec(st->db, sql, NULL, NULL, NULL) ||
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL)) {
        sqlite3_exec(st->db, "PRAGMA writable_schema = OFF; ROLLBACK", NULL, NULL, NULL);
    }
    return 0;
}

int store_open(const char *path, const schema *s, store_mode mode, store **out, fs_error *e)
{
    *out = NULL;
    store *st = calloc(1, sizeof *st);
    if (!st)
        return fs_error_set(e, FS_ENOMEM, "out of memory");
    st->s = s;
    st->mode = mode;
    st->cache_epoch = 1; /* rcache.epoch 0: not known */
    st->flush_threshold = 50000;
    st->cache_max_clean = CACHE_MAX_CLEAN;
    st->flush_chunk = 0; /* whole flushes: the fewest page writes (bench_apply) */
    msgpack_sbuffer_init(&st->buf);
    msgpack_sbuffer_init(&st->body);
    msgpack_sbuffer_init(&st->plog_bytes);
    msgpack_sbuffer_init(&st->run_scope);
    field_state_init(&st->scratch);
    int rc;
    /* one handle per thread: SQLite's own mutexes would only cost time */
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL)) {
        rc = fs_error_set(e, FS_EIO, "cannot open store %s: %s", path,
                          st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 1);
    char page_size[48] = "";
    if (mode == STORE_AUTHORITY) /* before journal_mode: a new file is made by the first */
        snprintf(page_size, sizeof page_size, "PRAGMA page_size=%d;", STORE_AUTHORITY_PAGE_SIZE);
    /* An 8 MB page cache: the field states and record headers the batches read are cached
     * in the handle (centry, rcache), and the log is appended, never re-read while applying;
     * a bigger cache only kept growing (one malloc and fresh pages per new log page:
     * profiled at ~13% of a replica's apply in a new process; 32 MB cost ~20% more CPU per
     * change than 8 MB in bench_apply) where a full one recycles clean pages. */
    if (sqlite3_exec(st->db, page_size, NULL, NULL, NULL) ||
        sqlite3_exec(st->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864;"
                     "PRAGMA cache_size=-8000; PRAGMA temp_store=MEMORY;",
                     NULL, NULL, NULL) ||
        sqlite3_exec(st->db, migration_sql, NULL, NULL, NULL) ||
        fields_relax(st) ||
        sqlite3_exec(st->db, log_index_sql[mode], NULL, NULL, NULL) ||
        drop_log_index(st, mode == STORE_REPLICA ? "log_change" : "log_device") ||
        (mode == STORE_AUTHORITY && runs_rebuild(st))) {
        rc = db_fail(st, e, path);
        goto fail;
    }
    char v[64];
    rc = store_meta_get(st, "format", v, sizeof v);
    if (rc == FS_ENOTFOUND) {
        char sv[16];
        snprintf(sv, sizeof sv, "%d", s->version);
        if (store_meta_set(st, "format", "1") || store_meta_set(st, "schema_version", sv)) {
            rc = db_fail(st, e, path);
            goto fail;
        }
    } else if (rc) {
        rc = db_fail(st, e, path);
        goto fail;
    } else if (atoi(v) > STORE_FORMAT) {
        rc = fs_error_set(e, FS_ESCHEMA, "%s was written by a newer fieldsync (format %s)",
                          path, v);
        goto fail;
    }
    if (store_meta_get(st, "schema_version", v, sizeof v))
        snprintf(v, sizeof v, "0");
    if (atoi(v) > s->version) {
        rc = fs_error_set(e, FS_ESCHEMA,
                          "%s holds data of schema version %s but the loaded schema is "
                          "version %d: load the newer schema file",
                          path, v, s->version);
        goto fail;
    } else if (atoi(v) < s->version) {
        char sv[16];
        snprintf(sv, sizeof sv, "%d", s->version);
        store_meta_set(st, "schema_version", sv);
    }
    uint64_t persisted = 0;
    if (store_meta_get(st, "hlc", v, sizeof v) == 0)
        persisted = strtoull(v, NULL, 10);
    hlc_init(&st->clock, persisted);
    if (store_meta_get(st, "materialized_seq", v, sizeof v) == 0)
        st->materialized = strtoull(v, NULL, 10);
    /* a crash may have left log entries whose state was never written: replay them */
    if ((rc = recover(st))) {
        rc = db_fail(st, e, "replaying the log tail");
        goto fail;
    }
    *out = st;
    return 0;
fail:
    store_close(st);
    return rc;
}

int store_set_synchronous(store *st, store_sync how, fs_error *e)
{
    if (how != STORE_SYNC_FULL && how != STORE_SYNC_NORMAL)
        return fs_error_set(e, FS_EINVAL, "synchronous: unknown setting %d", (int)how);
    if (exec1(st, how == STORE_SYNC_FULL ? S_SYNC_FULL : S_SYNC_NORMAL))
        return db_fail(st, e, "synchronous");
    return 0;
}

static void cache_clear(store *st, bool keep_dirty);
static void centry_blocks_free(store *st);
static void cache_tab_free(store *st);

void store_close(store *st)
{
    if (!st)
        return;
    if (st->db && st->tab)
        store_flush(st, NULL);
    if (st->db && st->clock.last)
        save_clock(st);
    cache_clear(st, false);
    centry_blocks_free(st);
    cache_tab_free(st);
    free(st->fresh);
    free(st->sweep);
    free(st->fbuf);
    free(st->rc_tab);
    hugemem_free(st->tail, st->tail_cap * sizeof *st->tail);
    free(st->dslots);
    free(st->dsidx);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    msgpack_sbuffer_destroy(&st->buf);
    msgpack_sbuffer_destroy(&st->body);
    msgpack_sbuffer_destroy(&st->plog_bytes);
    msgpack_sbuffer_destroy(&st->run_scope);
    free(st->plog);
    field_state_destroy(&st->scratch);
    free(st);
}

void store_set_flush_threshold(store *st, size_t n) { st->flush_threshold = n ? n : 1; }
void store_set_flush_chunk(store *st, size_t n) { st->flush_chunk = n; }
void store_set_cache_max_clean(store *st, size_t n) { st->cache_max_clean = n; }

sqlite3 *store_db(store *st) { return st->db; }
hlc_clock *store_clock(store *st) { return &st->clock; }
const schema *store_schema(const store *st) { return st->s; }
store_mode store_get_mode(const store *st) { return st->mode; }

/* ---- field state I/O ------------------------------------------------------------------ */

/* Decodes a stored value (value_unpack_stored: by kind, without the schema's limits, so a
 * value stored under an older schema still loads) and copies its text into *owned (replaced;
 * free with free()), which v then points at: field states outlive the statement's row. */
static int decode_value_blob(const schema_field *f, const void *buf, size_t len, fs_value *v,
                             char **owned)
{
    fs_value tmp;
    if (value_unpack_stored(f, buf, len, &tmp))
        return FS_EDEC_TYPE;
    *v = tmp;
    if (tmp.kind == VAL_STR) {
        free(*owned);
        *owned = malloc(tmp.u.s.len + 1);
        if (!*owned)
            return FS_ENOMEM;
        memcpy(*owned, tmp.u.s.p, tmp.u.s.len);
        (*owned)[tmp.u.s.len] = '\0';
        v->u.s.p = *owned;
    }
    return 0;
}

/* Loads (record, field) into st (re-initialised). FS_ENOTFOUND leaves st empty. */
static int field_load(store *st, const rid_t *record, const schema_field *f, field_state *fs)
{
    free(fs->str);
    fs->str = NULL;
    merge_cand *keep = fs->cands;
    uint32_t cap = fs->cap_cands;
    memset(fs, 0, sizeof *fs);
    fs->cands = keep;
    fs->cap_cands = cap;
    sqlite3_stmt *s = stmt(st, S_FIELD_GET);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, record->b, 16, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, f->num);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return FS_ENOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return FS_EIO;
    }
    fs->present = true;
    rc = decode_value_blob(f, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                           &fs->value, &fs->str);
    fs->version = (uint64_t)sqlite3_column_int64(s, 1);
    fs->whlc = (uint64_t)sqlite3_column_int64(s, 2);
    if (sqlite3_column_bytes(s, 3) == 16)
        memcpy(fs->wdev.b, sqlite3_column_blob(s, 3), 16);
    fs->wseq = (uint64_t)sqlite3_column_int64(s, 4);
    const char *author = (const char *)sqlite3_column_text(s, 5);
    snprintf(fs->author, sizeof fs->author, "%s", author ? author : "");
    if (!rc && sqlite3_column_type(s, 6) == SQLITE_BLOB)
        rc = merge_aux_unpack(f, fs, sqlite3_column_blob(s, 6),
                              (size_t)sqlite3_column_bytes(s, 6));
    sqlite3_reset(s);
    return rc ? FS_EIO : 0;
}

/* Rows for the next multi-row statement when `left` are to be written: 64, 8 or 1; *id is
 * its statement among id1 (one row), id1 + 1 (8) and id1 + 2 (64). */
static size_t rows_next(size_t left, enum stmt_id id1, enum stmt_id *id)
{
    size_t k = left >= 64 ? 64 : left >= 8 ? 8 : 1;
    *id = (enum stmt_id)(id1 + (k == 64 ? 2 : k == 8));
    return k;
}

/* Like stmt, but the bindings are kept: a multi-row writer binds every parameter of every
 * row (NULL where a row has no value), so clearing 512 of them first (sqlite3_clear_bindings,
 * ~170 instructions a row) is only work. */
static sqlite3_stmt *stmt_rows(store *st, enum stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];
    if (s)
        sqlite3_reset(s);
    return s ? s : stmt(st, id);
}

/* Writes the states e[0, n) to `fields`, 64 to a statement (then 8, then 1): one statement
 * keeps its cursors open from row to row (see log_write; a standalone test of 99,000 rows in
 * key order: 12.2k → 8.8k instructions a row). Returns 0, FS_EIO or FS_ENOMEM. */
static int fields_write(store *st, centry *const *e, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        enum stmt_id id;
        size_t k = rows_next(n - i, S_FIELD_PUT, &id);
        size_t voff[64], vlen[64], alen[64];
        msgpack_packer pk;
        st->buf.size = 0;
        msgpack_packer_init(&pk, &st->buf, msgpack_sbuffer_write);
        for (size_t j = 0; j < k && !rc; j++) {
            const centry *c = e[i + j];
            const schema_type *t = schema_type_by_id(st->s, c->type);
            const schema_field *f = t ? schema_field_by_num(t, c->field) : NULL;
            voff[j] = st->buf.size;
            if (!f)
                rc = FS_EIO;
            else if (value_pack(&pk, &c->st.value))
                rc = FS_ENOMEM;
            vlen[j] = st->buf.size - voff[j];
            if (!rc && merge_aux_pack(&pk, f, &c->st))
                rc = FS_ENOMEM;
            alen[j] = st->buf.size - voff[j] - vlen[j];
        }
        sqlite3_stmt *q = rc ? NULL : stmt_rows(st, id);
        if (!q) {
            rc = rc ? rc : FS_EIO;
            break;
        }
        const char *bytes = st->buf.data;
        for (size_t j = 0; j < k; j++) {
            const centry *c = e[i + j];
            int at = (int)j * 9;
            sqlite3_bind_blob(q, at + 1, c->record.b, 16, SQLITE_STATIC);
            sqlite3_bind_int(q, at + 2, c->field);
            sqlite3_bind_blob(q, at + 3, bytes + voff[j], (int)vlen[j], SQLITE_STATIC);
            sqlite3_bind_int64(q, at + 4, (sqlite3_int64)c->st.version);
            sqlite3_bind_int64(q, at + 5, (sqlite3_int64)c->st.whlc);
            sqlite3_bind_blob(q, at + 6, c->st.wdev.b, 16, SQLITE_STATIC);
            sqlite3_bind_int64(q, at + 7, (sqlite3_int64)c->st.wseq);
            sqlite3_bind_text(q, at + 8, c->st.author, -1, SQLITE_STATIC);
            if (alen[j])
                sqlite3_bind_blob(q, at + 9, bytes + voff[j] + vlen[j], (int)alen[j],
                                  SQLITE_STATIC);
            else
                sqlite3_bind_null(q, at + 9);
        }
        rc = sqlite3_step(q) == SQLITE_DONE ? 0 : FS_EIO;
        sqlite3_reset(q);
        i += k;
    }
    return rc;
}

/* ---- the field-state cache ------------------------------------------------------------ */

static uint64_t ckey_hash(const rid_t *r, uint8_t field)
{
    uint64_t a, b;
    memcpy(&a, r->b, 8);
    memcpy(&b, r->b + 8, 8);
    uint64_t h = a ^ (b * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)field << 56);
    /* splitmix64's finaliser: every input bit reaches the low bits the table uses */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* A slot of the cache's table: the key's whole 64-bit hash beside the pointer, so that a
 * probe reads only the table, not each entry it passes (profiled, the entries' cache misses
 * were most of the lookup), and 16 bytes a slot, four to a cache line (the key itself in
 * the slot made it 32: twice the misses, page faults and rehash traffic). A hash match is
 * confirmed on the entry, which the caller reads next anyway. */
typedef struct cslot {
    uint64_t hash;       /* ckey_hash of the entry's (record, field) */
    centry *e;           /* NULL: free */
} cslot;

static void cslot_put(cslot *tab, size_t cap, uint64_t h, centry *e)
{
    size_t j = (size_t)h & (cap - 1);
    while (tab[j].e)
        j = (j + 1) & (cap - 1);
    tab[j].hash = h;
    tab[j].e = e;
}

/* ---- the cache's entries: from huge-page blocks ---------------------------------------- *
 *
 * A cache grows by an entry per new (record, field) a batch touches, and each 4 KiB page it
 * grows into cost a page fault in the apply (hugemem.h). So entries come from blocks of one
 * huge page (the first few smaller: a store with a few states stays small), handed out in
 * order and never given back to the system while the handle is open: a dropped entry
 * (cache_clear) goes on a free list, reused first. */
#define CBLOCK_SMALL ((size_t)256 << 10) /* the first blocks: a small store stays small */
#define CBLOCK_SMALL_N 8                   /* then blocks of a huge page */

typedef struct cblock {
    struct cblock *next;
    size_t bytes;        /* as asked of hugemem_zalloc */
} cblock;

/* A dropped entry's memory, on the free list. */
typedef struct cdead {
    struct cdead *next;
} cdead;
_Static_assert(sizeof(centry) >= sizeof(cdead) && _Alignof(centry) >= _Alignof(cdead),
               "a dropped entry holds the free list's link");

/* With AddressSanitizer the blocks' free parts and every dropped entry are poisoned, and a
 * dropped entry is never handed out again: a read past the last entry or of an entry after
 * cache_clear is reported, as with one allocation per entry. */

#define CBLOCK_FIRST                                                                       \
    ((sizeof(cblock) + _Alignof(centry) - 1) / _Alignof(centry) * _Alignof(centry))

/* A zeroed entry (owned by the handle: centry_drop), or NULL. */
static centry *centry_new(store *st)
{
    if (st->cfree && !HUGEMEM_ASAN) {
        cdead *d = st->cfree;
        st->cfree = d->next;
        centry *e = (centry *)(void *)d;
        memset(e, 0, sizeof *e);
        return e;
    }
    if (!st->cblocks || CBLOCK_FIRST + (st->cb_used + 1) * sizeof(centry) > st->cblocks->bytes) {
        size_t bytes = st->n_cblocks < CBLOCK_SMALL_N ? CBLOCK_SMALL : HUGEMEM_PAGE;
        cblock *b = hugemem_zalloc(bytes);
        if (!b)
            return NULL;
        b->next = st->cblocks;
        b->bytes = bytes;
        HUGEMEM_POISON((char *)b + CBLOCK_FIRST, bytes - CBLOCK_FIRST);
        st->cblocks = b;
        st->n_cblocks++;
        st->cb_used = 0;
    }
    /* a new block is zeroed, and nothing handed out of it was used before */
    centry *e = (centry *)((char *)st->cblocks + CBLOCK_FIRST) + st->cb_used++;
    /* never beyond the block: the allocator's redzone after it stays poisoned */
    size_t room = (size_t)((char *)st->cblocks + st->cblocks->bytes - (char *)e);
    HUGEMEM_UNPOISON(e, room < sizeof *e ? room : sizeof *e);
    return e;
}

/* Gives e back (its state destroyed first by the caller). */
static void centry_drop(store *st, centry *e)
{
    cdead *d = (cdead *)(void *)e;
    d->next = st->cfree;
    st->cfree = d;
    HUGEMEM_POISON(e, sizeof *e);
}

/* Frees every block (after the last entry was dropped). */
static void centry_blocks_free(store *st)
{
    for (cblock *b = st->cblocks, *n; b; b = n) {
        n = b->next;
        HUGEMEM_UNPOISON(b, b->bytes); /* the allocator's memory again */
        hugemem_free(b, b->bytes);
    }
    st->cblocks = NULL;
    st->cfree = NULL;
    st->cb_used = st->n_cblocks = 0;
}

static void cache_tab_free(store *st)
{
    hugemem_free(st->tab, st->tab_cap * sizeof *st->tab);
    st->tab = NULL;
    st->tab_cap = 0;
}

static int cache_grow(store *st)
{
    size_t cap = st->tab_cap ? st->tab_cap * 2 : 1024;
    cslot *nt = hugemem_zalloc(cap * sizeof *nt);
    if (!nt)
        return FS_ENOMEM;
    for (size_t i = 0; i < st->tab_cap; i++)
        if (st->tab[i].e)
            cslot_put(nt, cap, st->tab[i].hash, st->tab[i].e);
    hugemem_free(st->tab, st->tab_cap * sizeof *st->tab);
    st->tab = nt;
    st->tab_cap = cap;
    return 0;
}

/* Drops cached states: all of them, or only the clean ones (the cache stays bounded). Either
 * way no record has all its states cached any more (a new cache_epoch). */
static void cache_clear(store *st, bool keep_dirty)
{
    if (++st->cache_epoch == 0) /* (after 2^32 clears) 0 is never an epoch */
        st->cache_epoch = 1;
    size_t kept = 0;
    centry **keep = NULL;
    if (keep_dirty && st->n_dirty && !(keep = malloc(st->n_dirty * sizeof *keep)))
        return; /* the dirty states must stay: keep the clean ones too, for now */
    for (size_t i = 0; i < st->tab_cap; i++) {
        centry *e = st->tab[i].e;
        if (!e)
            continue;
        st->tab[i].e = NULL;
        if (keep && e->dirty) {
            keep[kept++] = e;
            continue;
        }
        field_state_destroy(&e->st);
        centry_drop(st, e);
    }
    st->tab_used = 0;
    if (!keep_dirty || !keep)
        st->n_dirty = st->n_fresh = st->sweep_n = st->sweep_at = 0;
    for (size_t k = 0; k < kept; k++) {
        cslot_put(st->tab, st->tab_cap, ckey_hash(&keep[k]->record, keep[k]->field), keep[k]);
        st->tab_used++;
    }
    free(keep);
}

/* Finds (record, field) in the cache, loading it from `fields` on a miss (an absent field
 * gets an empty state), unless `all_cached` says the cache holds every state the record has
 * (rec_info.all_cached): then a miss is an empty state without a query. *out borrows the
 * entry (valid until the cache is cleared). */
static int cache_get(store *st, const rid_t *record, int type, const schema_field *f,
                     bool all_cached, centry **out)
{
    if ((st->tab_used + 1) * 2 > st->tab_cap && cache_grow(st))
        return FS_ENOMEM;
    uint64_t h = ckey_hash(record, f->num);
    size_t j = (size_t)h & (st->tab_cap - 1);
    for (cslot *sl; (sl = &st->tab[j])->e; j = (j + 1) & (st->tab_cap - 1))
        if (sl->hash == h && sl->e->field == f->num && !memcmp(sl->e->record.b, record->b, 16)) {
            *out = sl->e;
            return 0;
        }
    centry *e = centry_new(st);
    if (!e)
        return FS_ENOMEM;
    e->record = *record;
    e->type = (uint8_t)type;
    e->field = f->num;
    int rc = all_cached ? 0 : field_load(st, record, f, &e->st);
    if (rc && rc != FS_ENOTFOUND) {
        field_state_destroy(&e->st);
        centry_drop(st, e);
        return rc;
    }
    st->tab[j].hash = h;
    st->tab[j].e = e;
    st->tab_used++;
    *out = e;
    return 0;
}

/* ---- the tail set: the log rows after materialized_seq ---------------------------------- */

/*
 * An array in log order, appended to by each logged change (sequential writes: a hash set
 * here cost a cache miss per change, profiled at ~15% of a replica's apply time). It is
 * searched only for a possible duplicate (a replica's is_logged, the authority's re-sends in
 * answer_replay), so it is sorted only then: the prefix
 * [0, tail_sorted) is kept in (hlc, device, dseq) order, which appends in clock order (a pull)
 * extend; a lookup scans the unsorted suffix, or sorts and merges it into the prefix when it
 * is longer than about the square root of the array (O(n) per sqrt(n) appends at worst).
 */

static int tkey_cmp(const void *pa, const void *pb)
{
    const tkey *a = pa, *b = pb;
    if (a->hlc != b->hlc)
        return a->hlc < b->hlc ? -1 : 1;
    int c = memcmp(a->device.b, b->device.b, 16);
    if (c)
        return c;
    return a->dseq < b->dseq ? -1 : a->dseq > b->dseq;
}

/* Sorts the suffix and merges it into the sorted prefix. Returns 0 or FS_ENOMEM. */
static int tail_sort(store *st)
{
    size_t n = st->tail_used, p = st->tail_sorted, m = n - p;
    tkey *tmp = malloc(m * sizeof *tmp);
    if (!tmp)
        return FS_ENOMEM;
    memcpy(tmp, st->tail + p, m * sizeof *tmp);
    qsort(tmp, m, sizeof *tmp, tkey_cmp);
    /* merge from the back: prefix [0, p) and tmp [0, m) into [0, n) */
    size_t i = p, j = m, k = n;
    while (j > 0) {
        if (i > 0 && tkey_cmp(&st->tail[i - 1], &tmp[j - 1]) > 0)
            st->tail[--k] = st->tail[--i];
        else
            st->tail[--k] = tmp[--j];
    }
    free(tmp);
    st->tail_sorted = n;
    return 0;
}

/* Whether the tail holds (hlc, dev, dseq): 0 with *found (and *seq, its log sequence, if
 * seq is not NULL), or FS_ENOMEM. */
static int tail_find(store *st, uint64_t hlc, const rid_t *dev, uint64_t dseq, bool *found,
                     uint64_t *seq)
{
    *found = false;
    size_t m = st->tail_used - st->tail_sorted, lim = 32;
    while (lim * lim < st->tail_used)
        lim *= 2;
    if (m > lim) {
        int rc = tail_sort(st);
        if (rc)
            return rc;
    }
    tkey k = {.hlc = hlc, .dseq = dseq, .device = *dev};
    const tkey *hit = st->tail_sorted
                          ? bsearch(&k, st->tail, st->tail_sorted, sizeof k, tkey_cmp)
                          : NULL;
    for (size_t i = st->tail_sorted; i < st->tail_used && !hit; i++)
        if (!tkey_cmp(&st->tail[i], &k))
            hit = &st->tail[i];
    *found = hit != NULL;
    if (hit && seq)
        *seq = hit->seq;
    return 0;
}

/* Appends a logged change. Returns 0 or FS_ENOMEM. */
static int tail_add(store *st, const change *c, uint64_t seq)
{
    if (st->tail_used == st->tail_cap) {
        size_t cap = st->tail_cap ? st->tail_cap * 2 : 1024;
        /* past 256 KiB straight to a huge page's worth (a mapping, hugemem.h): growing by
         * doubling through the heap faulted in, and copied, ~500 pages of 4 KiB on the way */
        if (cap * sizeof(tkey) > ((size_t)256 << 10) && cap * sizeof(tkey) < HUGEMEM_MAP_FROM)
            cap = HUGEMEM_PAGE / sizeof(tkey);
        tkey *nt = hugemem_realloc(st->tail, st->tail_cap * sizeof *nt, cap * sizeof *nt);
        if (!nt)
            return FS_ENOMEM;
        st->tail = nt;
        st->tail_cap = cap;
    }
    tkey *k = &st->tail[st->tail_used];
    k->seq = seq;
    k->hlc = c->hlc;
    k->dseq = c->dseq;
    k->device = c->device;
    if (st->tail_sorted == st->tail_used &&
        (st->tail_used == 0 || tkey_cmp(k - 1, k) < 0))
        st->tail_sorted++;
    st->tail_used++;
    return 0;
}

/* Forgets the rows up to seq (now in log_by_record); all of them when seq is UINT64_MAX. */
static void tail_drop(store *st, uint64_t seq)
{
    size_t kept = 0, kept_sorted = 0;
    for (size_t i = 0; i < st->tail_used && seq != UINT64_MAX; i++)
        if (st->tail[i].seq > seq) {
            /* the kept rows of the sorted prefix stay sorted, and first */
            kept_sorted += i < st->tail_sorted;
            st->tail[kept++] = st->tail[i];
        }
    st->tail_used = kept;
    st->tail_sorted = kept_sorted;
    if (!kept && st->tail_cap > 16384) { /* a big pull's array: give the memory back */
        hugemem_free(st->tail, st->tail_cap * sizeof *st->tail);
        st->tail = NULL;
        st->tail_cap = 0;
    }
}

/* Makes room for n items of size sz in *buf (capacity *cap). Returns 0 or FS_ENOMEM. */
static int reserve(void *buf, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < n)
        c *= 2;
    void *nb = realloc(*(void **)buf, c * sz);
    if (!nb)
        return FS_ENOMEM;
    *(void **)buf = nb;
    *cap = c;
    return 0;
}

/* Sorts d[0, n) by key, stable (an LSD radix sort, a byte per pass; a byte that all keys
 * share costs one counting pass). tmp holds n entries. */
static void dent_sort(dent *d, dent *tmp, size_t n)
{
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[((d[i].key >> shift) & 0xff) + 1]++;
        if (count[((d[0].key >> shift) & 0xff) + 1] == n)
            continue;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++)
            tmp[count[(d[i].key >> shift) & 0xff]++] = d[i];
        memcpy(d, tmp, n * sizeof *d);
    }
}

/*
 * Incremental flush. A flush writes some dirty states and moves materialized_seq to a
 * watermark W below every row that a state left unwritten lacks in `fields`: replaying the
 * rows after W at open then rebuilds the same cache. Each dirty entry's dent records the log
 * seq of its first unflushed change (lo), so W = the least lo left dirty, minus one (the
 * last log seq when none is).
 *
 * A whole flush (max >= the dirty count) writes every state: W is the last row. Otherwise
 * the states are written in a sweep by key: when a sweep begins, the dirty entries (`fresh`,
 * in first-dirtied order) are sorted by (the first 8 bytes of) their record, the order of
 * the `fields` B-tree, and each flush writes the next max of them. A flush then dirties one
 * stretch of the table, so a leaf page is written about once per sweep. (Chunks of the
 * oldest entries, as before, were spread over the whole table and rewrote most of its pages
 * each time: bench_ingest --changes 400000 ran at 46k changes/s, 105k with sweeps.) Entries
 * dirtied meanwhile go to `fresh` and wait for the next sweep. W = the least of the sweep's
 * rest (its first dent.lo, a suffix minimum) and of `fresh` (its first), minus one.
 *
 * A state written in a sweep may hold rows after W (its later changes): the replay merges
 * them again. That is a no-op for every rule (merge.c: lww and review keep the greatest
 * (hlc, device, dseq), so the same change is not greater; escalate and workflow prune by the
 * greatest base and skip a change already a candidate; sets keep per value the greatest add
 * clock and remove base; version is a maximum), and the replay opens and closes no review
 * items (HOW_RECOVER): the same holds for catch_up, which merges rows another handle may
 * already have written. test_chunked_flush_crash checks it.
 */

/* Starts a sweep of every dirty entry: the sweep's rest and `fresh`, sorted by key. (The
 * rest's lo are already suffix minima, at most their own: W can only come out lower, which
 * is safe.) Returns 0 or FS_ENOMEM (nothing changed). */
static int sweep_begin(store *st)
{
    size_t rest = st->sweep_n - st->sweep_at, n = rest + st->n_fresh;
    if (reserve(&st->sweep, &st->sweep_cap, n, sizeof *st->sweep) ||
        reserve(&st->fresh, &st->fresh_cap, n, sizeof *st->fresh)) /* the sort's scratch */
        return FS_ENOMEM;
    memmove(st->sweep, st->sweep + st->sweep_at, rest * sizeof *st->sweep);
    memcpy(st->sweep + rest, st->fresh, st->n_fresh * sizeof *st->sweep);
    if (n)
        dent_sort(st->sweep, st->fresh, n);
    uint64_t min = UINT64_MAX;
    for (size_t i = n; i-- > 0;) {
        if (st->sweep[i].lo < min)
            min = st->sweep[i].lo;
        st->sweep[i].lo = min;
    }
    st->sweep_n = n;
    st->sweep_at = 0;
    st->n_fresh = 0;
    return 0;
}

/* Takes the next states to write into fbuf[0, *n), in key order: all of them when max is at
 * least the dirty count, else the sweep's next max (a new sweep when it is done). *w is W,
 * *from the sweep position they start at (a failed flush goes back to it). Returns 0 or
 * FS_ENOMEM. */
static int flush_pick(store *st, size_t max, uint64_t last, size_t *n, uint64_t *w,
                      size_t *from)
{
    *n = 0;
    *w = last;
    bool all = max >= st->n_dirty;
    if ((all || st->sweep_at == st->sweep_n) && sweep_begin(st))
        return FS_ENOMEM;
    size_t k = st->sweep_n - st->sweep_at;
    if (!all && k > (max ? max : 1))
        k = max ? max : 1;
    if (reserve(&st->fbuf, &st->fbuf_cap, k, sizeof *st->fbuf))
        return FS_ENOMEM;
    *from = st->sweep_at;
    for (size_t i = 0; i < k; i++)
        st->fbuf[i] = st->sweep[st->sweep_at + i].e;
    st->sweep_at += k;
    uint64_t lo = st->sweep_at < st->sweep_n ? st->sweep[st->sweep_at].lo : UINT64_MAX;
    if (st->n_fresh && st->fresh[0].lo < lo)
        lo = st->fresh[0].lo;
    if (lo != UINT64_MAX)
        *w = lo - 1;
    *n = k;
    return 0;
}

/* After the transaction holding a flush committed: fbuf[0, n) is clean, the rows up to w
 * are in `fields` and log_by_record; the cache stays bounded. */
static void flush_done(store *st, uint64_t w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st->fbuf[i]->dirty = false;
    st->n_dirty -= n;
    if (w > st->materialized)
        st->materialized = w;
    tail_drop(st, st->materialized);
    if (st->tab_used > st->cache_max_clean + st->n_dirty)
        cache_clear(st, true);
}

/* Writes about max dirty states (SIZE_MAX: all of them), see flush_pick. Inside a
 * transaction (a batch's, a group's) it joins it and the entries become clean when it
 * commits (pending_flush); otherwise it runs its own. Returns 0 or FS_EIO (nothing written,
 * the cache untouched). */
static int flush_some(store *st, size_t max, fs_error *e)
{
    if (!st->n_dirty) {
        uint64_t last;
        if (store_last_seq(st, &last))
            return db_fail(st, e, "flush");
        if (last == st->materialized)
            return 0;
    }
    bool outer = !sqlite3_get_autocommit(st->db); /* inside a batch: join its transaction */
    if (!outer && exec1(st, S_BEGIN))
        return db_fail(st, e, "flush: begin");
    /* write only states that include everything logged so far, never older ones over newer
     * ones another handle wrote */
    int rc = outer ? 0 : catch_up(st);
    uint64_t last = 0, w = 0, stored = 0;
    if (!rc)
        rc = store_last_seq(st, &last);
    size_t n = 0, from = 0;
    if (!rc)
        rc = flush_pick(st, max, last, &n, &w, &from);
    if (!rc)
        rc = fields_write(st, st->fbuf, n);
    /* another handle may have materialized further (its flush wrote exactly the rows up to
     * its watermark, and none of ours after w touched what we wrote): never move back */
    char v[32];
    if (!rc && store_meta_get(st, "materialized_seq", v, sizeof v) == 0 &&
        (stored = strtoull(v, NULL, 10)) > w)
        w = stored;
    if (!rc && w > st->materialized) {
        sqlite3_stmt *q = stmt(st, S_LOG_INDEX);
        rc = q ? 0 : FS_EIO;
        if (q) {
            sqlite3_bind_int64(q, 1, (sqlite3_int64)st->materialized);
            sqlite3_bind_int64(q, 2, (sqlite3_int64)w);
            rc = sqlite3_step(q) == SQLITE_DONE ? 0 : FS_EIO;
            sqlite3_reset(q);
        }
    }
    snprintf(v, sizeof v, "%llu", (unsigned long long)w);
    if (!rc && w != stored)
        rc = store_meta_set(st, "materialized_seq", v);
    if (!outer && !rc && exec1(st, S_COMMIT))
        rc = FS_EIO;
    if (rc) {
        if (!outer)
            exec1(st, S_ROLLBACK);
        if (n)
            st->sweep_at = from; /* nothing became clean: they are written next time */
        return db_fail(st, e, "flush");
    }
    if (!outer) {
        flush_done(st, w, n);
    } else {
        st->pending_flush_seq = w;
        st->pending_flush_n = n;
        st->pending_flush = true;
    }
    return 0;
}

int store_flush(store *st, fs_error *e)
{
    return flush_some(st, SIZE_MAX, e);
}

/* The automatic flush at the end of a batch or group: from flush_threshold dirty states (or
 * TAIL_MAX unflushed rows) on, one chunk of flush_chunk states per commit until the count is
 * down to half the threshold; a chunk grows with the backlog beyond the threshold, so that
 * a steady stream faster than one chunk per commit cannot grow the cache without bound. */
static int flush_auto(store *st)
{
    if (!st->draining && st->n_dirty < st->flush_threshold && st->tail_used < TAIL_MAX)
        return 0;
    size_t max = SIZE_MAX;
    if (st->flush_chunk) {
        max = st->flush_chunk;
        if (st->n_dirty > st->flush_threshold)
            max = (size_t)((double)st->flush_chunk * st->n_dirty / st->flush_threshold);
    }
    int rc = flush_some(st, max, NULL);
    size_t left = st->n_dirty - (st->pending_flush ? st->pending_flush_n : 0);
    st->draining = !rc && st->flush_chunk &&
                   (left > st->flush_threshold / 2 || st->tail_used >= TAIL_MAX / 2);
    return rc;
}

int store_field_get(store *st, const rid_t *record, int field, field_state *out)
{
    field_state_init(out);
    int type;
    int rc = store_record_get(st, record, &type, NULL, 0);
    if (rc)
        return rc;
    const schema_type *t = schema_type_by_id(st->s, type);
    const schema_field *f = t ? schema_field_by_num(t, field) : NULL;
    if (!f)
        return FS_ENOTFOUND;
    centry *c;
    if ((rc = catch_up(st)) || (rc = cache_get(st, record, type, f, false, &c)))
        return rc;
    if (!c->st.present)
        return FS_ENOTFOUND;
    return field_state_copy(out, &c->st);
}

/* ---- records ------------------------------------------------------------------------- */

typedef struct rec_info {
    bool exists;
    bool all_cached; /* every field state of the record is in the cache (see rcache) */
    bool created;
    int type;
    char scope[128];
    bool has_scope;
} rec_info;

/*
 * Record-header cache: every change looks up its record (and a visit its child) in `records`;
 * a SQLite primary-key lookup on a 16-byte blob costs ~8,000 instructions, a hash probe ~50.
 * Only rows that exist are cached (a record another handle creates is then found in the
 * table). The cache is dropped whenever it could be stale: a scope moved (descendants changed
 * in SQL), another handle wrote (catch_up), a batch rolled back.
 *
 * A record this handle saw created (it had no row: no change of it was ever applied, so no
 * field state exists anywhere) has all its field states in the field-state cache from then
 * on, until the cache drops states (cache_clear, a new cache_epoch): `epoch` says so, and a
 * field the cache does not hold is then empty without a query of `fields`. A new visit's
 * fields, and the first edit of each field of a record created since, cost no lookup: in
 * bench_ingest, 33k of 52.5k changes queried `fields` for nothing, ~2.5k instructions each.
 */
typedef struct rcache {
    rid_t id;
    bool used, created, has_scope;
    uint8_t type;
    uint32_t epoch; /* == store.cache_epoch: all its states are cached; 0: not known */
    char scope[46];
} rcache;

static void rcache_clear(store *st)
{
    if (st->rc_tab)
        memset(st->rc_tab, 0, st->rc_cap * sizeof *st->rc_tab);
    st->rc_used = 0;
}

static size_t rid_hash(const rid_t *r)
{
    uint64_t a, b;
    memcpy(&a, r->b, 8);
    memcpy(&b, r->b + 8, 8);
    uint64_t h = a ^ (b * 0x9e3779b97f4a7c15ULL);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(h ^ (h >> 31));
}

static rcache *rcache_find(store *st, const rid_t *id)
{
    if (!st->rc_cap)
        return NULL;
    for (size_t j = rid_hash(id) & (st->rc_cap - 1);; j = (j + 1) & (st->rc_cap - 1)) {
        rcache *e = &st->rc_tab[j];
        if (!e->used)
            return NULL;
        if (!rid_cmp(&e->id, id))
            return e;
    }
}

/* Records what the table says of an existing record (no-op when it does not fit). */
static void rcache_put(store *st, const rid_t *id, const rec_info *ri)
{
    if (!ri->exists || (ri->has_scope && strlen(ri->scope) >= sizeof st->rc_tab->scope))
        return;
    if ((st->rc_used + 1) * 2 > st->rc_cap) {
        if (st->rc_cap >= (1u << 20)) { /* bounded: start over */
            rcache_clear(st);
        } else {
            size_t cap = st->rc_cap ? st->rc_cap * 2 : 4096;
            rcache *nt = calloc(cap, sizeof *nt);
            if (!nt)
                return;
            for (size_t i = 0; i < st->rc_cap; i++) {
                rcache *e = &st->rc_tab[i];
                if (!e->used)
                    continue;
                size_t j = rid_hash(&e->id) & (cap - 1);
                while (nt[j].used)
                    j = (j + 1) & (cap - 1);
                nt[j] = *e;
            }
            free(st->rc_tab);
            st->rc_tab = nt;
            st->rc_cap = cap;
        }
    }
    rcache *e = rcache_find(st, id);
    if (!e) {
        size_t j = rid_hash(id) & (st->rc_cap - 1);
        while (st->rc_tab[j].used)
            j = (j + 1) & (st->rc_cap - 1);
        e = &st->rc_tab[j];
        e->used = true;
        e->id = *id;
        st->rc_used++;
    }
    e->created = ri->created;
    e->epoch = ri->all_cached ? st->cache_epoch : 0;
    e->type = (uint8_t)ri->type;
    e->has_scope = ri->has_scope;
    size_t n = ri->has_scope ? strlen(ri->scope) : 0; /* < sizeof e->scope, checked above */
    memcpy(e->scope, ri->scope, n);
    e->scope[n] = '\0';
}

static int rec_lookup(store *st, const rid_t *id, rec_info *ri)
{
    rcache *hit = rcache_find(st, id);
    if (hit) {
        ri->exists = true;
        ri->all_cached = hit->epoch == st->cache_epoch;
        ri->created = hit->created;
        ri->type = hit->type;
        ri->has_scope = hit->has_scope;
        size_t n = strlen(hit->scope); /* < sizeof hit->scope < sizeof ri->scope */
        memcpy(ri->scope, hit->scope, n + 1);
        return 0;
    }
    memset(ri, 0, sizeof *ri);
    sqlite3_stmt *s = stmt(st, S_REC_GET);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, id->b, 16, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        ri->exists = true;
        ri->type = sqlite3_column_int(s, 0);
        if (sqlite3_column_type(s, 1) == SQLITE_TEXT) {
            snprintf(ri->scope, sizeof ri->scope, "%s", (const char *)sqlite3_column_text(s, 1));
            ri->has_scope = true;
        }
        ri->created = sqlite3_column_int(s, 2) != 0;
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        rcache_put(st, id, ri);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

int store_record_get(store *st, const rid_t *record, int *type, char *scope_out, size_t cap)
{
    rec_info ri;
    int rc = rec_lookup(st, record, &ri);
    if (rc)
        return rc;
    if (!ri.exists)
        return FS_ENOTFOUND;
    if (type)
        *type = ri.type;
    if (scope_out && cap)
        snprintf(scope_out, cap, "%s", ri.has_scope ? ri.scope : "");
    return 0;
}

int store_resolve_abbrev(store *st, const uint8_t *prefix, rid_t *out)
{
    uint8_t lo[16], hi[16];
    memcpy(lo, prefix, CHANGE_ABBREV_LEN);
    memcpy(hi, prefix, CHANGE_ABBREV_LEN);
    memset(lo + CHANGE_ABBREV_LEN, 0x00, 16 - CHANGE_ABBREV_LEN);
    memset(hi + CHANGE_ABBREV_LEN, 0xff, 16 - CHANGE_ABBREV_LEN);
    sqlite3_stmt *s = stmt(st, S_REC_PREFIX);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, lo, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, hi, 16, SQLITE_STATIC);
    rid_t first = {{0}};
    int n = 0, rc = SQLITE_DONE;
    while (n < 2 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == 0 && sqlite3_column_bytes(s, 0) == 16)
            memcpy(first.b, sqlite3_column_blob(s, 0), 16);
        n++;
    }
    sqlite3_reset(s);
    if (n < 2 && rc != SQLITE_DONE)
        return FS_EIO;
    if (n != 1)
        return n ? FS_EREC_ABBREV : FS_ENOTFOUND;
    *out = first;
    return 0;
}

/* ---- applying ------------------------------------------------------------------------ */

static int pack_body(store *st, const change *c)
{
    msgpack_packer pk;
    st->body.size = 0;
    msgpack_packer_init(&pk, &st->body, msgpack_sbuffer_write);
    int rc = change_pack(&pk, c, true);
    st->body_p = st->body.data;
    st->body_n = st->body.size;
    return rc;
}

static void refuse(apply_result *r, const fs_error *e)
{
    r->status = APPLY_REFUSED;
    r->code = e->code;
    snprintf(r->msg, sizeof r->msg, "%s", e->msg[0] ? e->msg : fs_strerror(e->code));
}

/*
 * A batch's log rows. apply_one numbers each accepted change (log_next: the log's last seq
 * plus one at the batch's start, under the write lock) and keeps its row in memory; log_write
 * inserts them, 64 to a statement, after the batch's changes were applied (and before
 * anything in the batch reads the log). One statement keeps its cursors open from row to
 * row: measured, 10.0k instead of 13.8k instructions a row (callgrind, 100,000 rows of one
 * scope). The statement does not name seq: SQLite's next rowid (max + 1, found from the
 * cursor at the end of the B-tree it already holds) is the number apply_one gave, and an
 * explicit one made SQLite seek it first, to refuse a duplicate, from the root for every row
 * (a standalone test of 96,000 rows: 4.1k → 3.3k instructions a row in sqlite3_step).
 * The rows are never pending outside store_apply_batch.
 */
static int log_begin(store *st)
{
    uint64_t last;
    int rc = store_last_seq(st, &last);
    st->log_next = last + 1;
    return rc;
}

/* Numbers c's log row (*seq) and keeps it, with a copy of its scope (NULL: none) and of
 * the body being applied. Returns 0 or FS_ENOMEM. */
static int log_add(store *st, const change *c, const char *scope, uint64_t *seq)
{
    if (reserve(&st->plog, &st->cap_plog, st->n_plog + 1, sizeof *st->plog))
        return FS_ENOMEM;
    plog *p = &st->plog[st->n_plog];
    p->has_scope = scope != NULL;
    p->scope_off = (uint32_t)st->plog_bytes.size;
    p->scope_len = scope ? (uint32_t)strlen(scope) : 0;
    /* (msgpack_sbuffer_write memcpy's even 0 bytes, into no buffer yet) */
    if (p->scope_len && msgpack_sbuffer_write(&st->plog_bytes, scope, p->scope_len))
        return FS_ENOMEM;
    p->body_off = (uint32_t)st->plog_bytes.size;
    p->body_len = (uint32_t)st->body_n;
    if (st->body_n && msgpack_sbuffer_write(&st->plog_bytes, st->body_p, st->body_n))
        return FS_ENOMEM;
    p->seq = *seq = st->log_next++;
    p->dseq = c->dseq;
    p->hlc = c->hlc;
    p->device = c->device;
    p->record = c->record;
    p->type = c->type;
    st->n_plog++;
    return 0;
}

/* Inserts the kept log rows (see log_add) and forgets them. Returns 0 or FS_EIO. */
static int log_write(store *st)
{
    int rc = 0;
    for (size_t i = 0; i < st->n_plog && !rc;) {
        enum stmt_id id;
        size_t k = rows_next(st->n_plog - i, S_LOG_INSERT, &id);
        sqlite3_stmt *q = stmt_rows(st, id);
        if (!q) {
            rc = FS_EIO;
            break;
        }
        const char *bytes = st->plog_bytes.data ? st->plog_bytes.data : ""; /* all empty */
        for (size_t j = 0; j < k; j++) {
            const plog *p = &st->plog[i + j];
            int at = (int)j * 7;
            sqlite3_bind_blob(q, at + 1, p->device.b, 16, SQLITE_STATIC);
            sqlite3_bind_int64(q, at + 2, (sqlite3_int64)p->dseq);
            sqlite3_bind_int64(q, at + 3, (sqlite3_int64)p->hlc);
            sqlite3_bind_int(q, at + 4, p->type);
            sqlite3_bind_blob(q, at + 5, p->record.b, 16, SQLITE_STATIC);
            if (p->has_scope)
                sqlite3_bind_text(q, at + 6, bytes + p->scope_off, (int)p->scope_len,
                                  SQLITE_STATIC);
            else
                sqlite3_bind_null(q, at + 6);
            sqlite3_bind_blob(q, at + 7, bytes + p->body_off, (int)p->body_len, SQLITE_STATIC);
        }
        rc = sqlite3_step(q) == SQLITE_DONE ? 0 : FS_EIO;
        sqlite3_reset(q);
        /* the rows took max(seq) + 1 in turn: the numbers apply_one gave out (already in
         * the batch's results and tail set). Only a log changed under the write lock could
         * make them differ; the batch then fails and is rolled back, nothing misnumbered
         * is committed */
        if (!rc && sqlite3_last_insert_rowid(st->db) != (sqlite3_int64)st->plog[i + k - 1].seq)
            rc = FS_EIO;
        i += k;
    }
    /* the authority's runs of these rows (the rows' seqs follow each other) */
    const char *bytes = st->plog_bytes.data ? st->plog_bytes.data : ""; /* all empty */
    for (size_t i = 0; i < st->n_plog && !rc && st->mode == STORE_AUTHORITY; i++) {
        const plog *p = &st->plog[i];
        rc = runs_add(st, p->seq, p->has_scope ? bytes + p->scope_off : NULL, p->scope_len);
    }
    if (!rc)
        rc = runs_end(st); /* (a failed runs_add or runs_end leaves no run open) */
    st->n_plog = 0;
    st->plog_bytes.size = 0;
    return rc;
}

/* Answers a change whose dseq the authority has already consumed: from its log row if it
 * was accepted, else from the refusal remembered. The log row is found without an index on
 * (device, dseq): a re-send is the same change, so the same clock and record: the tail set
 * holds the unflushed rows by (hlc, device, dseq), log_by_record the flushed rows of each
 * record. Not found there, the dseq was used for a change with another clock or record (or
 * refused): a different change, unless `refused` holds it. */
static int answer_replay(store *st, const change *c, apply_result *r)
{
    uint64_t seq = 0;
    bool in_tail;
    int rc = tail_find(st, c->hlc, &c->device, c->dseq, &in_tail, &seq);
    if (rc)
        return rc;
    if (in_tail && st->n_plog && (rc = log_write(st))) /* it may be this batch's */
        return rc;
    sqlite3_stmt *s = stmt(st, in_tail ? S_LOG_BODY : S_LOG_BY_DEV);
    if (!s)
        return FS_EIO;
    if (in_tail) {
        sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    } else {
        sqlite3_bind_blob(s, 1, c->record.b, 16, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, c->device.b, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)c->dseq);
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int col = in_tail ? 0 : 1;
        bool same = (size_t)sqlite3_column_bytes(s, col) == st->body_n &&
                    !memcmp(sqlite3_column_blob(s, col), st->body_p, st->body_n);
        r->seq = in_tail ? seq : (uint64_t)sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (same) {
            r->status = APPLY_DUPLICATE;
        } else {
            fs_error e;
            fs_error_set(&e, FS_ESEQ_MISMATCH,
                         "device sequence %llu was already used for a different change",
                         (unsigned long long)c->dseq);
            refuse(r, &e);
        }
        return 0;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return FS_EIO;
    s = stmt(st, S_REFUSED_GET);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, c->device.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)c->dseq);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        bool same = (size_t)sqlite3_column_bytes(s, 2) == st->body_n &&
                    !memcmp(sqlite3_column_blob(s, 2), st->body_p, st->body_n);
        fs_error e;
        if (!same)
            fs_error_set(&e, FS_ESEQ_MISMATCH,
                         "device sequence %llu was already used for a different change",
                         (unsigned long long)c->dseq);
        else
            fs_error_set(&e, sqlite3_column_int(s, 0), "%s",
                         (const char *)sqlite3_column_text(s, 1));
        sqlite3_reset(s);
        if (same && e.code == FS_EDUP)
            r->status = APPLY_DUPLICATE;
        else
            refuse(r, &e);
        return 0;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return FS_EIO;
    /* accepted as a change with another clock or record (its row was not found above) */
    fs_error e;
    fs_error_set(&e, FS_ESEQ_MISMATCH,
                 "device sequence %llu was already used for a different change",
                 (unsigned long long)c->dseq);
    refuse(r, &e);
    return 0;
}

static int remember_refusal(store *st, const change *c, int code, const char *msg)
{
    sqlite3_stmt *s = stmt(st, S_REFUSED_PUT);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, c->device.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)c->dseq);
    sqlite3_bind_int(s, 3, code);
    sqlite3_bind_text(s, 4, msg, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, st->body_p, (int)st->body_n, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

/* Forgets the batch's device slots (the next batch reads the table again). */
static void devseq_reset(store *st)
{
    if (st->n_dslots && st->dsidx)
        memset(st->dsidx, 0, st->cap_dslots * 2 * sizeof *st->dsidx);
    st->n_dslots = 0;
    st->ds_last = 0;
}

/* Makes room for one more slot: 0, or FS_ENOMEM (the caller then uses the table). */
static int devseq_grow(store *st)
{
    if (st->n_dslots < st->cap_dslots)
        return 0;
    size_t cap = st->cap_dslots ? st->cap_dslots * 2 : 64;
    if (cap > DEVSEQ_SLOTS)
        return FS_ENOMEM;
    devseq_slot *nd = realloc(st->dslots, cap * sizeof *nd);
    if (!nd)
        return FS_ENOMEM;
    st->dslots = nd;
    uint32_t *ni = calloc(cap * 2, sizeof *ni);
    if (!ni)
        return FS_ENOMEM;
    for (size_t i = 0; i < st->n_dslots; i++) {
        size_t j = rid_hash(&nd[i].device) & (cap * 2 - 1);
        while (ni[j])
            j = (j + 1) & (cap * 2 - 1);
        ni[j] = (uint32_t)i + 1;
    }
    free(st->dsidx);
    st->dsidx = ni;
    st->cap_dslots = cap;
    return 0;
}

/* The batch's slot for dev, read from the table the first time (NULL when no slot can be
 * had: the caller then goes to the table directly). A hash index, since one batch may
 * interleave hundreds of devices (a group of pushes, a replayed log): each device's
 * sequence is then read once and written once per batch, not once per change. */
static devseq_slot *devseq_slot_get(store *st, const rid_t *dev, int *rc)
{
    *rc = 0;
    if (st->ds_last && !rid_cmp(&st->dslots[st->ds_last - 1].device, dev))
        return &st->dslots[st->ds_last - 1];
    size_t h = rid_hash(dev);
    if (st->cap_dslots)
        for (size_t j = h & (st->cap_dslots * 2 - 1); st->dsidx[j];
             j = (j + 1) & (st->cap_dslots * 2 - 1))
            if (!rid_cmp(&st->dslots[st->dsidx[j] - 1].device, dev)) {
                st->ds_last = st->dsidx[j];
                return &st->dslots[st->dsidx[j] - 1];
            }
    if (devseq_grow(st))
        return NULL;
    devseq_slot *d = &st->dslots[st->n_dslots];
    d->device = *dev;
    d->max = 0;
    d->dirty = false;
    sqlite3_stmt *s = stmt(st, S_DEVSEQ_GET);
    if (!s) {
        *rc = FS_EIO;
        return NULL;
    }
    sqlite3_bind_blob(s, 1, dev->b, 16, SQLITE_STATIC);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        d->max = (uint64_t)sqlite3_column_int64(s, 0);
        r = SQLITE_DONE;
    }
    sqlite3_reset(s);
    if (r != SQLITE_DONE) {
        *rc = FS_EIO;
        return NULL;
    }
    size_t j = h & (st->cap_dslots * 2 - 1);
    while (st->dsidx[j])
        j = (j + 1) & (st->cap_dslots * 2 - 1);
    st->dsidx[j] = (uint32_t)st->n_dslots + 1;
    st->n_dslots++;
    st->ds_last = st->n_dslots;
    return d;
}

static int devseq_write(store *st, const rid_t *dev, uint64_t dseq)
{
    sqlite3_stmt *s = stmt(st, S_DEVSEQ_PUT);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, dev->b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)dseq);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

static int devseq_get(store *st, const rid_t *dev, uint64_t *out)
{
    int rc;
    devseq_slot *d = devseq_slot_get(st, dev, &rc);
    if (d) {
        *out = d->max;
        return 0;
    }
    if (rc)
        return rc;
    *out = 0;
    sqlite3_stmt *s = stmt(st, S_DEVSEQ_GET);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, dev->b, 16, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = (uint64_t)sqlite3_column_int64(s, 0);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

static int devseq_put(store *st, const rid_t *dev, uint64_t dseq)
{
    int rc;
    devseq_slot *d = devseq_slot_get(st, dev, &rc);
    if (!d)
        return rc ? rc : devseq_write(st, dev, dseq);
    if (dseq > d->max) {
        d->max = dseq;
        d->dirty = true;
    }
    return 0;
}

/* Writes the batch's device sequences (inside its transaction). */
static int devseq_flush(store *st)
{
    for (size_t i = 0; i < st->n_dslots; i++)
        if (st->dslots[i].dirty) {
            int rc = devseq_write(st, &st->dslots[i].device, st->dslots[i].max);
            if (rc)
                return rc;
            st->dslots[i].dirty = false;
        }
    return 0;
}

int store_device_seq(store *st, const rid_t *device, uint64_t *out)
{
    devseq_reset(st); /* outside a batch: read the table */
    return devseq_get(st, device, out);
}

/* Copies the NUL-terminated src into out (cap > 0 bytes), cut at cap - 1 bytes: what
 * snprintf(out, cap, "%s", src) does, without the format parser (profiled: the record's
 * scope copied per change through snprintf was ~1% of the server's ingest CPU). */
static void scope_copy(char *out, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(out, src, n);
    out[n] = '\0';
}

/* Scope the record will have after c: its scope field, its scope_from parent's scope, or
 * what it had. parent receives the scope_from reference when the change sets it. */
static int scope_after(store *st, const schema_type *t, const change *c, const rec_info *ri,
                       char *out, size_t cap, bool *has, const rid_t **parent, bool *parent_ok)
{
    *has = ri->has_scope;
    *parent = NULL;
    *parent_ok = true;
    if (ri->has_scope)
        scope_copy(out, cap, ri->scope);
    if (!t->scope_field)
        return 0;
    const change_field *cf = change_field_get(c, t->scope_field);
    if (!cf)
        return 0;
    const schema_field *f = schema_field_by_num(t, t->scope_field);
    if (f->kind == KIND_SCOPE) {
        if (cf->v.kind == VAL_STR) {
            snprintf(out, cap, "%.*s", (int)cf->v.u.s.len, cf->v.u.s.p);
            *has = true;
        }
        return 0;
    }
    if (cf->v.kind != VAL_REF)
        return 0;
    *parent = &cf->v.u.ref;
    rec_info pi;
    int rc = rec_lookup(st, &cf->v.u.ref, &pi);
    if (rc)
        return rc;
    if (!pi.exists || pi.type != f->ref_type) {
        *parent_ok = false;
        return 0;
    }
    if (pi.has_scope) {
        scope_copy(out, cap, pi.scope);
        *has = true;
    }
    return 0;
}

static void release_outs(store *st, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        merge_out_destroy(&st->outs[i]);
}

static int open_review(store *st, const change *c, const schema_field *f, const merge_out *o,
                       const fs_value *nv)
{
    msgpack_packer pk;
    st->buf.size = 0;
    msgpack_packer_init(&pk, &st->buf, msgpack_sbuffer_write);
    if (value_pack(&pk, &o->old_value))
        return FS_ENOMEM;
    size_t alen = st->buf.size;
    if (value_pack(&pk, nv))
        return FS_ENOMEM;
    sqlite3_stmt *s = stmt(st, S_REVIEW_OPEN);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, c->record.b, 16, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, c->type);
    sqlite3_bind_int(s, 3, f->num);
    sqlite3_bind_blob(s, 4, st->buf.data, (int)alen, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)o->old_hlc);
    sqlite3_bind_blob(s, 6, o->old_dev.b, 16, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, o->old_author, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 8, st->buf.data + alen, (int)(st->buf.size - alen), SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)c->hlc);
    sqlite3_bind_blob(s, 10, c->device.b, 16, SQLITE_STATIC);
    sqlite3_bind_text(s, 11, c->author, (int)c->author_len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

static int close_reviews(store *st, const change *c, const schema_field *f)
{
    if (f->rule != RULE_REVIEW || !(st->s->review_roles & (1u << c->role)) || c->base == 0)
        return 0;
    sqlite3_stmt *s = stmt(st, S_REVIEW_CLOSE);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, c->record.b, 16, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, f->num);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)c->base);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)c->hlc);
    sqlite3_bind_text(s, 5, c->author, (int)c->author_len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

/*
 * Applies one change inside the batch transaction. Returns 0 with r filled (accepted,
 * duplicate or refused), or FS_EIO/FS_ENOMEM for a failure that must abort the batch.
 * authority: refuse by the rules; reviews: open review items on races.
 */
/* How apply_one treats a change. */
typedef enum apply_how {
    HOW_LIVE,    /* a new change: log it, write records and reviews, merge */
    HOW_REBUILD, /* a logged change, tables cleared: write records and reviews, merge */
    HOW_RECOVER  /* a logged change whose state was lost from the cache: merge only */
} apply_how;

/* Upserts c's record row, which was `before` (rec_lookup). scope_moved: its scope changes,
 * so the records that take their scope from it (records.parent, at any depth) follow; none
 * can exist when no_descendants (a record new to the authority: a change naming a
 * scope_from parent the authority does not hold is refused, so no row can point at a record
 * before it exists). The record cache is dropped only when rows of other records moved. */
static int write_record(store *st, const change *c, const rec_info *before, bool has_scope,
                        const char *scope, const rid_t *parent, bool scope_moved,
                        bool no_descendants)
{
    sqlite3_stmt *q = stmt(st, S_REC_INSERT);
    if (!q)
        return FS_EIO;
    sqlite3_bind_blob(q, 1, c->record.b, 16, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, c->type);
    if (has_scope)
        sqlite3_bind_text(q, 3, scope, -1, SQLITE_STATIC);
    if (parent)
        sqlite3_bind_blob(q, 4, parent->b, 16, SQLITE_STATIC);
    sqlite3_bind_int(q, 5, c->base == 0);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE)
        return FS_EIO;
    if (scope_moved && !no_descendants) {
        /* most records have no descendants: one index seek, not the recursive UPDATE and
         * its temporary tables (profiled on a device's pull: ~5% of its engine CPU) */
        q = stmt(st, S_REC_HAS_CHILD);
        if (!q)
            return FS_EIO;
        sqlite3_bind_blob(q, 1, c->record.b, 16, SQLITE_STATIC);
        rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return FS_EIO;
        no_descendants = rc == SQLITE_DONE;
    }
    if (scope_moved && !no_descendants) {
        /* records that take their scope from this one follow it */
        q = stmt(st, S_REC_CHILD_SCOPE);
        if (!q)
            return FS_EIO;
        sqlite3_bind_blob(q, 1, c->record.b, 16, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, scope, -1, SQLITE_STATIC);
        rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE)
            return FS_EIO;
        if (sqlite3_changes(st->db) > 0) {
            /* descendants moved in SQL: forget them all (rare). Not on every new record: a
             * memset of the whole cache per create was ~90% of a create's CPU */
            rcache_clear(st);
            return 0;
        }
    }
    /* the row is now the upsert of what it was and this change */
    rec_info ri = {.exists = true, .type = c->type};
    ri.all_cached = !before->exists || before->all_cached;
    ri.created = (before->exists && before->created) || c->base == 0;
    ri.has_scope = has_scope || (before->exists && before->has_scope);
    scope_copy(ri.scope, sizeof ri.scope,
               has_scope ? scope : before->exists && before->has_scope ? before->scope : "");
    rcache_put(st, &c->record, &ri);
    return 0;
}

/*
 * Replica: whether c is already in the log (*dup), given st->ents, the cache entries of its
 * fields. Returns 0 or FS_EIO. A field's version is the greatest clock merged into it, and the
 * cache holds every logged change merged (catch_up), so a clock above one field's version
 * proves c new without a lookup: the common case of a pull, whose clocks mostly increase.
 * Otherwise the tail set holds the rows after materialized_seq and log_by_record the others.
 */
static int is_logged(store *st, const change *c, bool *dup)
{
    *dup = false;
    for (uint32_t i = 0; i < c->n_fields; i++)
        if (!st->ents[i]->st.present || st->ents[i]->st.version < c->hlc)
            return 0;
    int rc = tail_find(st, c->hlc, &c->device, c->dseq, dup, NULL);
    if (rc || *dup)
        return rc;
    sqlite3_stmt *q = stmt(st, S_LOG_FIND);
    if (!q)
        return FS_EIO;
    sqlite3_bind_blob(q, 1, c->record.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)c->hlc);
    sqlite3_bind_blob(q, 3, c->device.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)c->dseq);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    *dup = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FS_EIO;
}

/*
 * Applies one change inside the batch transaction. Returns 0 with r filled (accepted,
 * duplicate or refused), or FS_EIO/FS_ENOMEM for a failure that must abort the batch.
 * authority: refuse by the rules; reviews: open review items on races; raw: the change
 * could not be decoded (refuse it, consuming its dseq); seq: the log sequence when how is
 * not HOW_LIVE.
 */
static int apply_one(store *st, const change *c, const apply_raw *raw, const apply_opts *o,
                     bool authority, bool reviews, apply_how how, uint64_t seq,
                     apply_result *r)
{
    fs_error e = {0};
    const schema *s = st->s;
    int rc;
    memset(r, 0, sizeof *r);
    r->seq = seq;
    /* an abbreviation nobody resolved (handle_push resolves what it can): refused before
     * the sequence check, so not consumed, like ESEQ_GAP; nothing of it is logged */
    if (c->abbrev && !(raw && raw->code)) {
        fs_error_set(&e, FS_EREC_ABBREV, "%s", fs_strerror(FS_EREC_ABBREV));
        refuse(r, &e);
        return 0;
    }
    const schema_type *t = schema_type_by_id(s, c->type);
    bool invalid = false;
    if (raw && raw->code) {
        st->body_p = raw->body;
        st->body_n = raw->len;
        fs_error_set(&e, raw->code, "%s", raw->msg ? raw->msg : fs_strerror(raw->code));
        invalid = true;
    } else {
        if ((rc = pack_body(st, c)))
            return rc;
        invalid = !t || change_recheck(s, c, &e);
        if (!t)
            fs_error_set(&e, FS_EUNKNOWN_TYPE, "record type %u unknown", c->type);
    }
    /* the sequence is checked (and consumed) before the refusal of an invalid change, so
     * that the device's next change is not a gap; dseq 0 cannot be consumed */
    if (invalid && (!authority || c->dseq == 0)) {
        refuse(r, &e);
        return 0;
    }
    if (authority) {
        uint64_t max;
        if ((rc = devseq_get(st, &c->device, &max)))
            return rc;
        if (c->dseq <= max)
            return answer_replay(st, c, r);
        if (c->dseq > max + 1) {
            fs_error_set(&e, FS_ESEQ_GAP,
                         "device sequence jumps from %llu to %llu: send changes %llu..%llu first",
                         (unsigned long long)max, (unsigned long long)c->dseq,
                         (unsigned long long)max + 1, (unsigned long long)c->dseq - 1);
            refuse(r, &e);
            return 0; /* not consumed: the device must fill the gap */
        }
        if ((rc = devseq_put(st, &c->device, c->dseq)))
            return rc;
        if (invalid) {
            refuse(r, &e);
            return remember_refusal(st, c, e.code, r->msg);
        }
    }
    /* from here on the authority has consumed dseq: refusals are remembered */
    uint32_t nf_done = 0;
#define REFUSE()                                                                           \
    do {                                                                                   \
        refuse(r, &e);                                                                     \
        release_outs(st, nf_done);                                                         \
        return authority ? remember_refusal(st, c, e.code, r->msg) : 0;                    \
    } while (0)
    rec_info ri;
    if ((rc = rec_lookup(st, &c->record, &ri)))
        return rc;
    /* a record the user may not see: that is the only answer (nothing below may leak its
     * type, state or rules) */
    if (authority && ri.exists && o && o->visible) {
        e.code = 0;
        e.msg[0] = '\0';
        rc = o->visible(o->ctx, c, ri.has_scope ? ri.scope : NULL, &e);
        if (rc) {
            if (!e.code)
                fs_error_set(&e, rc, "%s", fs_strerror(rc));
            REFUSE();
        }
    }
    if (authority && hlc_check(&st->clock, c->hlc)) {
        fs_error_set(&e, FS_ECLOCK_DRIFT,
                     "change clock is %lld s ahead of the server: set the device's date and "
                     "time",
                     (long long)(hlc_physical_ms(c->hlc) - hlc_wall_ms(&st->clock)) / 1000);
        REFUSE();
    }
    if (authority && !(t->write_roles & (1u << c->role))) {
        fs_error_set(&e, FS_EROLE, "role '%s' may not write %s records", s->roles[c->role],
                     t->name);
        REFUSE();
    }
    if (ri.exists && ri.type != c->type) {
        fs_error_set(&e, FS_EBAD_ID, "record id belongs to a %s record, not %s",
                     schema_type_by_id(s, ri.type) ? schema_type_by_id(s, ri.type)->name : "?",
                     t->name);
        REFUSE();
    }
    if (authority && !ri.exists) {
        if (c->base != 0) {
            fs_error_set(&e, FS_ENOT_CREATED, "%s record was never created (base %llu)",
                         t->name, (unsigned long long)c->base);
            REFUSE();
        }
        for (uint32_t i = 0; i < t->n_fields; i++)
            if (t->fields[i].required && !change_field_get(c, t->fields[i].num)) {
                fs_error_set(&e, FS_EREQUIRED, "a new %s needs field '%s'", t->name,
                             t->fields[i].name);
                REFUSE();
            }
    }
    /* the cache entries of this change's fields (loaded once, reused below) */
    for (uint32_t i = 0; i < c->n_fields; i++)
        if ((rc = cache_get(st, &c->record, c->type, schema_field_by_num(t, c->fields[i].num),
                            !ri.exists || ri.all_cached, &st->ents[i])))
            return rc;
    if (authority && ri.exists && t->append_only) {
        /* a re-sent identical create (new dseq) is a duplicate; anything else is refused */
        bool dup_create = true;
        for (uint32_t i = 0; i < c->n_fields && dup_create; i++)
            dup_create = st->ents[i]->st.present &&
                         value_equal(&st->ents[i]->st.value, &c->fields[i].v);
        if (dup_create) {
            r->status = APPLY_DUPLICATE;
            return remember_refusal(st, c, FS_EDUP, "identical create already applied");
        }
        fs_error_set(&e, FS_EAPPEND_ONLY,
                     "%s records are append-only: record a correction (a new record) instead",
                     t->name);
        REFUSE();
    }
    char scope[128] = "";
    bool has_scope;
    const rid_t *parent;
    bool parent_ok;
    if ((rc = scope_after(st, t, c, &ri, scope, sizeof scope, &has_scope, &parent, &parent_ok)))
        return rc;
    if (authority && !parent_ok) {
        fs_error_set(&e, FS_EREF, "the %s this %s refers to is not on the server",
                     schema_field_by_num(t, t->scope_field)->name, t->name);
        REFUSE();
    }
    /* a replica's duplicate is known before merging (is_logged reads the cached states) */
    if (how == HOW_LIVE && st->mode == STORE_REPLICA) {
        bool dup;
        if ((rc = is_logged(st, c, &dup)))
            return rc;
        if (dup) {
            r->status = APPLY_DUPLICATE;
            return 0;
        }
    }
    /* The authority refuses a change as a whole, so every refusal comes before any field is
     * merged: the rule checks (merge_check, read only), then authorize, which needs the
     * scope after the change. The fields are then merged into the cached states in place,
     * as on a replica, where nothing refuses: no copy of each state. A failure after that
     * (out of memory, I/O) aborts the batch, which rebuilds the cache from the log. */
    for (uint32_t i = 0; authority && i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        if (f->rule == RULE_IMMUTABLE && ri.created) {
            fs_error_set(&e, FS_EAPPEND_ONLY, "field '%s' of %s is fixed when it is created",
                         f->name, t->name);
            REFUSE();
        }
        if (merge_check(s, f, &st->ents[i]->st, c, &c->fields[i].v, &e))
            REFUSE();
    }
    /* a scope field's new value moves the record only if it wins the merge: a concurrent
     * change with an older clock must not take the record to its village. The authority
     * learns the merged value from a scratch copy of that one field (authorize comes before
     * the merge); a replica reads it from the merged state below. */
    for (uint32_t i = 0; authority && t->scope_field && i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        if (f->num != t->scope_field || f->kind != KIND_SCOPE)
            continue;
        field_state *fs = &st->scratch;
        merge_out tmp;
        if ((rc = field_state_copy(fs, &st->ents[i]->st)))
            return rc;
        rc = merge_field(s, f, fs, c, &c->fields[i].v, false, &tmp, &e);
        merge_out_destroy(&tmp);
        if (rc)
            return rc == FS_ENOMEM ? rc : FS_EIO;
        if (fs->value.kind == VAL_STR) {
            snprintf(scope, sizeof scope, "%.*s", (int)fs->value.u.s.len, fs->value.u.s.p);
            has_scope = true;
        }
    }
    if (authority && o && o->authorize) {
        e.code = 0;
        e.msg[0] = '\0';
        rc = o->authorize(o->ctx, c, ri.exists && ri.has_scope ? ri.scope : NULL,
                          has_scope ? scope : NULL, &e);
        if (rc) {
            if (!e.code)
                fs_error_set(&e, rc, "%s", fs_strerror(rc));
            REFUSE();
        }
    }
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        rc = merge_field(s, f, &st->ents[i]->st, c, &c->fields[i].v, false, &st->outs[i], &e);
        nf_done = i + 1;
        if (rc) { /* out of memory (the checks above refused everything else) */
            release_outs(st, nf_done);
            return rc == FS_ENOMEM ? rc : FS_EIO;
        }
    }
    for (uint32_t i = 0; !authority && t->scope_field && i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        const field_state *fs = &st->ents[i]->st;
        if (f->num == t->scope_field && f->kind == KIND_SCOPE && fs->value.kind == VAL_STR) {
            snprintf(scope, sizeof scope, "%.*s", (int)fs->value.u.s.len, fs->value.u.s.p);
            has_scope = true;
        }
    }
    rc = 0;
    if (how == HOW_LIVE) { /* written with the batch's others (log_write) */
        if ((rc = log_add(st, c, has_scope ? scope : NULL, &r->seq)) ||
            (rc = tail_add(st, c, r->seq)))
            goto out;
    }
    bool scope_moved = has_scope && (!ri.has_scope || strcmp(scope, ri.scope));
    if (how != HOW_RECOVER && (!ri.exists || !ri.created || scope_moved || parent))
        rc = write_record(st, c, &ri, has_scope, scope, parent, scope_moved,
                          authority && how == HOW_LIVE && !ri.exists);
    for (uint32_t i = 0; i < c->n_fields && !rc; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        if (how != HOW_RECOVER && reviews && st->outs[i].race) {
            rc = open_review(st, c, f, &st->outs[i], &c->fields[i].v);
            r->reviews++;
        }
        if (!rc && how != HOW_RECOVER)
            rc = close_reviews(st, c, f);
    }
    if (rc)
        goto out;
    /* the change is in: its merged states replace the cached ones */
    for (uint32_t i = 0; i < c->n_fields; i++) {
        centry *ce = st->ents[i];
        if (!ce->dirty) {
            if (reserve(&st->fresh, &st->fresh_cap, st->n_fresh + 1, sizeof *st->fresh)) {
                rc = FS_ENOMEM;
                goto out;
            }
            uint64_t key = 0;
            for (int b = 0; b < 8; b++)
                key = key << 8 | ce->record.b[b];
            ce->dirty = true;
            st->fresh[st->n_fresh++] = (dent){.key = key, .lo = r->seq, .e = ce};
            st->n_dirty++;
        }
    }
    if (authority)
        hlc_advance(&st->clock, c->hlc); /* its drift was checked above */
    else
        hlc_recv(&st->clock, c->hlc); /* a replica takes no clock far ahead of its own */
out:
    release_outs(st, nf_done);
    return rc;
#undef REFUSE
}

/*
 * Merges the log entries after `after` into the cache, in log order, and advances seen.
 * HOW_RECOVER (after a crash, a failed batch, another handle's writes): merge only; an entry
 * this schema cannot decode is skipped (it stays in the log); a replica's tail set gets each
 * entry. HOW_REBUILD (store_rebuild, tables cleared): records and review items are written
 * too, and an entry that cannot be decoded fails the rebuild (FS_EIO).
 */
static int replay_log(store *st, uint64_t after, apply_how how)
{
    sqlite3_stmt *s = stmt(st, S_LOG_ALL);
    if (!s)
        return FS_EIO;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    change *c = malloc(sizeof *c);
    if (!c) {
        sqlite3_reset(s);
        return FS_ENOMEM;
    }
    int rc;
    uint64_t seen = after;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        seen = seq;
        mpr r;
        mpr_init(&r, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1));
        if (change_unpack(&r, st->s, true, c, NULL)) {
            if (how == HOW_RECOVER)
                continue; /* logged under a schema this one cannot read */
            rc = FS_EIO;
            break;
        }
        if (how == HOW_RECOVER && (rc = tail_add(st, c, seq)))
            break;
        apply_result res;
        int arc = apply_one(st, c, NULL, NULL, false,
                            how == HOW_REBUILD && st->mode == STORE_AUTHORITY, how, seq, &res);
        if (arc) {
            rc = arc;
            break;
        }
    }
    free(c);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_ROW ? FS_EIO : rc;
    if (seen > st->seen)
        st->seen = seen;
    return 0;
}

/* Rebuilds the cache from `fields` plus the log after materialized_seq (at open, after a
 * crash, after a failed batch). */
static int recover(store *st)
{
    char v[32];
    cache_clear(st, false);
    tail_drop(st, UINT64_MAX);
    st->materialized = store_meta_get(st, "materialized_seq", v, sizeof v) == 0
                           ? strtoull(v, NULL, 10)
                           : 0;
    st->seen = st->materialized;
    return replay_log(st, st->materialized, HOW_RECOVER);
}

/* Merges what other handles on the same file logged since this one last looked: the cache
 * is then as current as the log. (Merging is idempotent and commutative, so a change that a
 * state loaded from `fields` already contains does no harm when merged again.) */
static int catch_up(store *st)
{
    uint64_t last;
    int rc = store_last_seq(st, &last);
    if (rc || last <= st->seen)
        return rc;
    rcache_clear(st); /* another handle wrote: its records may have moved */
    return replay_log(st, st->seen, HOW_RECOVER);
}

/* After a failed batch or group (its transaction or savepoint rolled back): the caches hold
 * states of the rolled-back changes; rebuild them from what is stored (inside a group, what
 * the group's earlier batches stored: the reads see the open transaction). */
static void rollback_rebuild(store *st)
{
    st->pending_flush = false;
    rcache_clear(st);
    if (recover(st))
        cache_clear(st, false); /* next reads go to the table; open replays again */
}

/*
 * Prefetching. A batch's changes touch records and fields all over the handle's caches (a
 * table of a few MB, and entries of ~200 bytes each), so a lookup is mostly waiting for
 * memory: profiled, the first touch of a field's cached state, the cache's and the record
 * cache's probes were ~25% of a replica's apply. While change i is applied, the slots of
 * change i + 1 are fetched; then its entries (their slots are at hand by then), while the
 * start of its apply (record header, body, checks) runs. Hints only: nothing is read through
 * them, a wrong guess costs a wasted fetch (measured: ~20% less CPU per replica change).
 */
#define PREFETCH_FIELDS 4

static void prefetch_slots(const store *st, const change *c)
{
    if (st->rc_cap)
        __builtin_prefetch(&st->rc_tab[rid_hash(&c->record) & (st->rc_cap - 1)]);
    for (uint32_t i = 0; st->tab_cap && i < c->n_fields && i < PREFETCH_FIELDS; i++)
        __builtin_prefetch(
            &st->tab[(size_t)ckey_hash(&c->record, c->fields[i].num) & (st->tab_cap - 1)]);
}

static void prefetch_entries(const store *st, const change *c)
{
    for (uint32_t i = 0; st->tab_cap && i < c->n_fields && i < PREFETCH_FIELDS; i++) {
        uint64_t h = ckey_hash(&c->record, c->fields[i].num);
        size_t j = (size_t)h & (st->tab_cap - 1);
        for (const cslot *sl; (sl = &st->tab[j])->e; j = (j + 1) & (st->tab_cap - 1))
            if (sl->hash == h) { /* a hint: the key is not checked (a 64-bit hash) */
                __builtin_prefetch(sl->e);
                __builtin_prefetch((const char *)sl->e + 64);
                break;
            }
    }
}

int store_apply_batch(store *st, const change *changes, size_t n, const apply_opts *o,
                      apply_result *results, fs_error *e)
{
    bool authority = st->mode == STORE_AUTHORITY;
    bool group = st->group;
    uint64_t clock_before = st->clock.last;
    devseq_reset(st);
    if (group && st->group_broken)
        return fs_error_set(e, FS_EIO, "apply batch: the group's transaction was lost");
    if (!group)
        st->pending_flush = false;
    if (group ? sqlite3_exec(st->db, "SAVEPOINT fs_batch", NULL, NULL, NULL) != SQLITE_OK
              : exec1(st, S_BEGIN) != 0)
        return db_fail(st, e, "begin");
    int rc = catch_up(st); /* under the write lock: no other handle writes meanwhile */
    if (!rc)
        rc = log_begin(st);
    for (size_t i = 0; i < n && !rc; i++) {
        if (i + 1 < n)
            prefetch_slots(st, &changes[i + 1]);
        rc = apply_one(st, &changes[i], o && o->raw ? &o->raw[i] : NULL, o, authority,
                       authority, HOW_LIVE, 0, &results[i]);
        if (i + 1 < n)
            prefetch_entries(st, &changes[i + 1]);
        if (!rc && results[i].status == APPLY_ACCEPTED && results[i].seq > st->seen)
            st->seen = results[i].seq;
    }
    if (!rc)
        rc = log_write(st);
    st->n_plog = 0; /* after a failure: the batch is rolled back */
    st->plog_bytes.size = 0;
    if (!rc)
        rc = devseq_flush(st);
    if (!rc && st->clock.last != clock_before)
        rc = save_clock(st);
    /* a group flushes once, before its COMMIT (store_group_commit) */
    if (!rc && !group)
        rc = flush_auto(st);
    /* the caller's writes that must commit with the batch (the SDK: outbox, cursor) */
    fs_error he = {0};
    bool hook_failed = false;
    if (!rc && o && o->before_commit) {
        rc = o->before_commit(o->ctx, st, changes, results, n, &he);
        hook_failed = rc != 0;
    }
    if (!rc && (group ? sqlite3_exec(st->db, "RELEASE fs_batch", NULL, NULL, NULL) != SQLITE_OK
                      : exec1(st, S_COMMIT) != 0))
        rc = FS_EIO;
    devseq_reset(st);
    if (rc) {
        if (hook_failed)
            fs_error_set(e, rc, "%s", he.msg[0] ? he.msg : fs_strerror(rc));
        else if (rc == FS_EIO)
            db_fail(st, e, "apply batch");
        else
            fs_error_set(e, rc, "apply batch: %s", fs_strerror(rc));
        if (!group) {
            exec1(st, S_ROLLBACK);
        } else if (sqlite3_get_autocommit(st->db) ||
                   sqlite3_exec(st->db, "ROLLBACK TO fs_batch; RELEASE fs_batch", NULL, NULL,
                                NULL) != SQLITE_OK) {
            /* SQLite ends the whole transaction after some errors (disk full, I/O): the
             * group's earlier batches are gone with it */
            if (!sqlite3_get_autocommit(st->db))
                exec1(st, S_ROLLBACK);
            st->group_broken = true;
        }
        rollback_rebuild(st);
        return rc;
    }
    if (group)
        return 0; /* committed (and fanned out) by store_group_commit */
    if (st->pending_flush) {
        st->pending_flush = false;
        flush_done(st, st->pending_flush_seq, st->pending_flush_n);
    }
    if (o && o->on_commit) {
        for (size_t i = 0; i < n; i++) {
            if (results[i].status != APPLY_ACCEPTED)
                continue;
            char scope[128];
            int has = store_record_get(st, &changes[i].record, NULL, scope, sizeof scope) == 0 &&
                      scope[0];
            o->on_commit(o->ctx, &changes[i], results[i].seq, has ? scope : NULL);
        }
    }
    return 0;
}

int store_group_begin(store *st, fs_error *e)
{
    if (st->group)
        return fs_error_set(e, FS_EINVAL, "group: one is already open");
    if (exec1(st, S_BEGIN))
        return db_fail(st, e, "group: begin");
    uint64_t last = 0;
    int rc = catch_up(st);
    if (!rc)
        rc = store_last_seq(st, &last);
    if (rc) {
        fs_error_set(e, rc, "group: %s", fs_strerror(rc));
        exec1(st, S_ROLLBACK);
        rollback_rebuild(st);
        return rc;
    }
    st->group = true;
    st->group_broken = false;
    st->group_after = last;
    st->pending_flush = false;
    return 0;
}

bool store_in_group(const store *st)
{
    return st->group;
}

/* The group's accepted changes, from the log in log order, to on_commit. */
static int group_fanout(store *st, uint64_t after, store_commit_fn on_commit, void *ctx)
{
    sqlite3_stmt *s = stmt(st, S_LOG_SCAN);
    change *c = malloc(sizeof *c);
    if (!s || !c) {
        free(c);
        return s ? FS_ENOMEM : FS_EIO;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(s, 2, INT64_MAX);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        mpr r;
        mpr_init(&r, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1));
        const char *scope = (const char *)sqlite3_column_text(s, 2);
        if (change_unpack(&r, st->s, true, c, NULL))
            continue; /* cannot happen: the group logged it with this schema */
        on_commit(ctx, c, seq, scope && scope[0] ? scope : NULL);
    }
    sqlite3_reset(s);
    free(c);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

int store_group_commit(store *st, store_commit_fn on_commit, void *ctx, fs_error *e)
{
    if (!st->group)
        return fs_error_set(e, FS_EINVAL, "group: none is open");
    st->group = false;
    int rc = 0;
    if (st->group_broken)
        rc = fs_error_set(e, FS_EIO, "group: a batch's failure ended the transaction");
    /* a reader's flush inside the group wrote states that later batches may have merged
     * into again: all of them are written again (in full); otherwise one chunk if due */
    else if (st->pending_flush ? store_flush(st, e) : flush_auto(st))
        rc = fs_error_set(e, FS_EIO, "group: flush failed");
    else if (exec1(st, S_COMMIT))
        rc = db_fail(st, e, "group: commit");
    st->group_broken = false;
    if (rc) {
        if (!sqlite3_get_autocommit(st->db))
            exec1(st, S_ROLLBACK);
        rollback_rebuild(st);
        return rc;
    }
    if (st->pending_flush) {
        st->pending_flush = false;
        flush_done(st, st->pending_flush_seq, st->pending_flush_n);
    }
    /* committed whatever happens next: a log that cannot be read back now loses these
     * changes' events (subscribers read them with their next pull), not the commit */
    if (on_commit)
        (void)group_fanout(st, st->group_after, on_commit, ctx);
    return 0;
}

void store_group_rollback(store *st)
{
    if (!st->group)
        return;
    st->group = false;
    st->group_broken = false;
    if (!sqlite3_get_autocommit(st->db))
        exec1(st, S_ROLLBACK);
    rollback_rebuild(st);
}

int store_tx(store *st, int (*fn)(store *st, void *ctx), void *ctx, fs_error *e)
{
    if (exec1(st, S_BEGIN))
        return db_fail(st, e, "begin");
    int rc = fn(st, ctx);
    if (!rc && exec1(st, S_COMMIT))
        rc = db_fail(st, e, "commit");
    if (rc)
        exec1(st, S_ROLLBACK);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------- */

int store_last_seq(store *st, uint64_t *out)
{
    if (st->n_plog) { /* inside a batch: its rows are numbered, not written yet */
        *out = st->log_next - 1;
        return 0;
    }
    sqlite3_stmt *s = stmt(st, S_LOG_LAST);
    if (!s)
        return FS_EIO;
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : FS_EIO;
}

/* Steps s, a query of (seq, body, scope) rows, passing each row to fn while fewer than max
 * rows were visited (*n counts them, over several calls) and fn returned 0 (else *stopped).
 * *last receives the seq of each row visited. Resets s. Returns 0 or FS_EIO. */
static int scan_rows_from(sqlite3_stmt *s, size_t max, store_log_fn fn, void *ctx,
                          uint64_t *last, size_t *n, bool *stopped)
{
    int rc = SQLITE_DONE;
    while (*n < max && !*stopped && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
        const char *scope = sqlite3_column_type(s, 2) == SQLITE_TEXT
                                ? (const char *)sqlite3_column_text(s, 2)
                                : NULL;
        if (last)
            *last = seq;
        ++*n;
        *stopped = fn(ctx, seq, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                      scope) != 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FS_EIO;
}

static int scan_rows(sqlite3_stmt *s, size_t max, store_log_fn fn, void *ctx, uint64_t *last)
{
    size_t n = 0;
    bool stopped = false;
    return scan_rows_from(s, max, fn, ctx, last, &n, &stopped);
}

int store_log_scan(store *st, uint64_t after, size_t max, store_log_fn fn, void *ctx,
                   uint64_t *last)
{
    sqlite3_stmt *s = stmt(st, S_LOG_SCAN);
    if (!s)
        return FS_EIO;
    if (last)
        *last = after;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
    return scan_rows(s, max, fn, ctx, last);
}

int store_log_scan_scopes(store *st, uint64_t after, size_t max, const char *scopes_json,
                          store_log_fn fn, void *ctx, uint64_t *last)
{
    if (st->mode != STORE_AUTHORITY)
        return FS_EINVAL; /* a replica has no log_runs */
    sqlite3_stmt *r = stmt(st, S_RUN_SCAN);
    if (!r)
        return FS_EIO;
    if (last)
        *last = after;
    sqlite3_bind_int64(r, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(r, 2, (sqlite3_int64)max);
    sqlite3_bind_text(r, 3, scopes_json, -1, SQLITE_STATIC);
    size_t n = 0;
    bool stopped = false;
    int rc = 0, step = SQLITE_DONE;
    /* the runs in log order, each run's rows after `after` */
    while (!rc && n < max && !stopped && (step = sqlite3_step(r)) == SQLITE_ROW) {
        uint64_t first = (uint64_t)sqlite3_column_int64(r, 0);
        uint64_t end = (uint64_t)sqlite3_column_int64(r, 1);
        sqlite3_stmt *s = stmt(st, S_LOG_RANGE);
        if (!s) {
            rc = FS_EIO;
            break;
        }
        sqlite3_bind_int64(s, 1, (sqlite3_int64)(first > after ? first : after + 1));
        sqlite3_bind_int64(s, 2, (sqlite3_int64)end);
        rc = scan_rows_from(s, max, fn, ctx, last, &n, &stopped);
    }
    sqlite3_reset(r);
    return rc ? rc : step == SQLITE_ROW || step == SQLITE_DONE ? 0 : FS_EIO;
}

int store_history(store *st, const rid_t *record, store_log_fn fn, void *ctx)
{
    if (store_flush(st, NULL))
        return FS_EIO;
    sqlite3_stmt *s = stmt(st, S_LOG_HISTORY);
    if (!s)
        return FS_EIO;
    sqlite3_bind_blob(s, 1, record->b, 16, SQLITE_STATIC);
    return scan_rows(s, SIZE_MAX, fn, ctx, NULL);
}

static void fnv(uint64_t h[2], const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h[0] = (h[0] ^ b[i]) * 0x100000001b3ULL;
        h[1] = (h[1] ^ b[i]) * 0x100000001b3ULL ^ (h[1] >> 29);
    }
    uint8_t sep = 0xff;
    h[0] = (h[0] ^ sep) * 0x100000001b3ULL;
    h[1] = (h[1] ^ sep) * 0x100000001b3ULL;
}

static int hash_query(sqlite3 *db, const char *sql, uint64_t h[2])
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL))
        return FS_EIO;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            uint8_t ty = (uint8_t)sqlite3_column_type(s, i);
            fnv(h, &ty, 1);
            if (ty == SQLITE_INTEGER) {
                sqlite3_int64 v = sqlite3_column_int64(s, i);
                fnv(h, &v, sizeof v);
            } else if (ty != SQLITE_NULL) {
                const void *b = sqlite3_column_blob(s, i);
                fnv(h, b, (size_t)sqlite3_column_bytes(s, i));
            }
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

int store_state_hash(store *st, uint64_t out[2])
{
    uint64_t h[2] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    int rc = store_flush(st, NULL);
    if (!rc)
        rc = hash_query(st->db, "SELECT id, type, scope FROM records ORDER BY id", h);
    if (!rc)
        rc = hash_query(st->db,
                        "SELECT record, field, value, version, whlc, wdev, wseq, author, aux "
                        "FROM fields ORDER BY record, field",
                        h);
    out[0] = h[0];
    out[1] = h[1];
    return rc;
}

static int rebuild_tx(store *st, void *ctx)
{
    (void)ctx;
    cache_clear(st, false);
    rcache_clear(st);
    if (sqlite3_exec(st->db,
                     "DELETE FROM records; DELETE FROM fields; DELETE FROM review;"
                     "DELETE FROM log_by_record;",
                     NULL, NULL, NULL))
        return FS_EIO;
    st->materialized = 0;
    int rc = replay_log(st, 0, HOW_REBUILD);
    if (rc)
        return rc;
    if ((rc = store_last_seq(st, &st->seen)))
        return rc;
    return store_flush(st, NULL);
}

int store_rebuild(store *st, fs_error *e)
{
    st->pending_flush = false;
    int rc = store_tx(st, rebuild_tx, NULL, e);
    if (!rc && st->pending_flush)
        flush_done(st, st->pending_flush_seq, st->pending_flush_n);
    st->pending_flush = false;
    if (rc && recover(st))
        cache_clear(st, false);
    return rc;
}

int store_review_count(store *st, bool open_only, int64_t *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db,
                           open_only ? "SELECT count(*) FROM review WHERE resolved_hlc = 0"
                                     : "SELECT count(*) FROM review",
                           -1, &s, NULL))
        return FS_EIO;
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : FS_EIO;
}

int store_review_scan(store *st, bool open_only, store_review_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    const char *sql = open_only
                          ? "SELECT id, record, type, field, value_a, hlc_a, dev_a, author_a, "
                            "value_b, hlc_b, dev_b, author_b, resolved_hlc, resolved_by "
                            "FROM review WHERE resolved_hlc = 0 ORDER BY id"
                          : "SELECT id, record, type, field, value_a, hlc_a, dev_a, author_a, "
                            "value_b, hlc_b, dev_b, author_b, resolved_hlc, resolved_by "
                            "FROM review ORDER BY id";
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL))
        return FS_EIO;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        review_item it;
        memset(&it, 0, sizeof it);
        it.id = sqlite3_column_int64(s, 0);
        if (sqlite3_column_bytes(s, 1) == 16)
            memcpy(it.record.b, sqlite3_column_blob(s, 1), 16);
        it.type = sqlite3_column_int(s, 2);
        it.field = sqlite3_column_int(s, 3);
        it.value_a = sqlite3_column_blob(s, 4);
        it.len_a = (size_t)sqlite3_column_bytes(s, 4);
        it.hlc_a = (uint64_t)sqlite3_column_int64(s, 5);
        if (sqlite3_column_bytes(s, 6) == 16)
            memcpy(it.dev_a.b, sqlite3_column_blob(s, 6), 16);
        it.author_a = (const char *)sqlite3_column_text(s, 7);
        it.value_b = sqlite3_column_blob(s, 8);
        it.len_b = (size_t)sqlite3_column_bytes(s, 8);
        it.hlc_b = (uint64_t)sqlite3_column_int64(s, 9);
        if (sqlite3_column_bytes(s, 10) == 16)
            memcpy(it.dev_b.b, sqlite3_column_blob(s, 10), 16);
        it.author_b = (const char *)sqlite3_column_text(s, 11);
        it.resolved_hlc = (uint64_t)sqlite3_column_int64(s, 12);
        it.resolved_by = (const char *)sqlite3_column_text(s, 13);
        if (fn(ctx, &it))
            break;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FS_EIO;
}

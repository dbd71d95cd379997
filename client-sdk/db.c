/*
 * db.c — opening a device replica, the device's own tables, identity and errors.
 *
 * A device replica is one SQLite file holding two things side by side:
 *   - the engine's replica store (sync/store.c, STORE_REPLICA): the confirmed state, i.e.
 *     every change the server accepted, this device's own included, with the audit log;
 *   - the device's tables, created here:
 *       dev_identity  key/value: device id, server URL, token, user and role from the last
 *                     welcome, pull cursor, acked dseq, next dseq to number, last sync time
 *       dev_outbox    pending local changes: local id (creation order), dseq (NULL until the
 *                     change is first sent: numbering happens at send time, see outbox.c),
 *                     priority (0 fast lane, 1 bulk), created time, type, record, scope and
 *                     scope parent (for lists), clock, the encoded push-form change
 *                     (body, always with the full record id), and wire: the bytes sent
 *                     when they differ from body (the record id abbreviated, outbox.c)
 *       dev_refused   changes the server refused, with its code and text, until dismissed
 *       dev_review    review items fetched by a supervisor's device
 * Keeping pending apart from confirmed is invariant 6 of DESIGN.md: a refusal removes the
 * change from dev_outbox and the view falls back to the confirmed state by itself.
 *
 * "Apply my acknowledged changes" and "apply pulled changes + store the cursor" are one
 * transaction each, although store_apply_batch() owns its transaction: its before_commit
 * hook (outbox.c, batch_commit_hook) deletes the outbox rows of this device's changes that
 * reached the confirmed log and writes the cursor once, just before the batch's COMMIT.
 * Every commit is synced (STORE_SYNC_FULL): what the user saved survives a power failure.
 *
 * Threading: one handle per thread; only mu/cv/cancel/lws are shared with fieldsync_cancel.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static _Thread_local char open_err[512];

static const char *const device_sql =
    "CREATE TABLE IF NOT EXISTS dev_identity(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS dev_outbox(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  dseq INTEGER UNIQUE, priority INTEGER NOT NULL, created INTEGER NOT NULL,"
    "  type INTEGER NOT NULL, record BLOB NOT NULL, scope TEXT, parent BLOB,"
    "  hlc INTEGER NOT NULL, body BLOB NOT NULL, wire BLOB);"
    "CREATE INDEX IF NOT EXISTS dev_outbox_unsent ON dev_outbox(priority, id) WHERE dseq IS NULL;"
    "CREATE INDEX IF NOT EXISTS dev_outbox_record ON dev_outbox(record);"
    "CREATE INDEX IF NOT EXISTS dev_outbox_scope ON dev_outbox(type, scope);"
    "CREATE INDEX IF NOT EXISTS dev_outbox_parent ON dev_outbox(parent) WHERE parent IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS dev_refused(id INTEGER PRIMARY KEY, dseq INTEGER,"
    "  priority INTEGER NOT NULL, created INTEGER NOT NULL, type INTEGER NOT NULL,"
    "  record BLOB NOT NULL, hlc INTEGER NOT NULL, body BLOB NOT NULL, code INTEGER NOT NULL,"
    "  text TEXT NOT NULL, refused_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dev_review(id INTEGER PRIMARY KEY, record BLOB NOT NULL,"
    "  type INTEGER NOT NULL, field INTEGER NOT NULL, value_a BLOB, hlc_a INTEGER NOT NULL,"
    "  author_a TEXT NOT NULL, value_b BLOB, hlc_b INTEGER NOT NULL, author_b TEXT NOT NULL,"
    "  resolved INTEGER NOT NULL DEFAULT 0);";

const char *fieldsync_version(void) { return "fieldsync-sdk/" FIELDSYNC_SDK_VERSION; }

const char *fieldsync_strerror(int code)
{
    switch (code) {
    case FIELDSYNC_OK: return "ok";
    case FIELDSYNC_EINVAL: return "invalid argument";
    case FIELDSYNC_ENOMEM: return "out of memory";
    case FIELDSYNC_ESTORE: return "local store failed";
    case FIELDSYNC_ESCHEMA: return "schema missing or invalid";
    case FIELDSYNC_ENOTFOUND: return "not found";
    case FIELDSYNC_ETYPE: return "unknown record type";
    case FIELDSYNC_EFIELD: return "unknown field";
    case FIELDSYNC_EVALUE: return "invalid value";
    case FIELDSYNC_EREQUIRED: return "required field missing";
    case FIELDSYNC_EIMMUTABLE: return "cannot be changed after creation";
    case FIELDSYNC_EEMPTY: return "nothing to save";
    case FIELDSYNC_ENOTENROLLED: return "device not enrolled";
    case FIELDSYNC_ENETWORK: return "server unreachable or connection lost";
    case FIELDSYNC_EAUTH: return "device token refused";
    case FIELDSYNC_EPROTOCOL: return "protocol error";
    case FIELDSYNC_EBUSY: return "server busy";
    case FIELDSYNC_ECANCELLED: return "cancelled";
    case FIELDSYNC_ESEQUENCE: return "device sequence out of step with the server";
    }
    return "unknown error";
}

const char *fieldsync_errmsg(const fieldsync_db *db) { return db ? db->err : open_err; }

int sdk_fail(fieldsync_db *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db ? db->err : open_err, sizeof db->err, fmt, ap);
    va_end(ap);
    return code;
}

int sdk_from_fs(fieldsync_db *db, int fs_code, const fs_error *e)
{
    int code;
    switch (fs_code) {
    case FS_OK: return FIELDSYNC_OK;
    case FS_ENOMEM: code = FIELDSYNC_ENOMEM; break;
    case FS_EIO: code = FIELDSYNC_ESTORE; break;
    case FS_EINVAL: code = FIELDSYNC_EINVAL; break;
    case FS_ENOTFOUND: code = FIELDSYNC_ENOTFOUND; break;
    case FS_ESCHEMA: code = FIELDSYNC_ESCHEMA; break;
    case FS_EUNKNOWN_TYPE: code = FIELDSYNC_ETYPE; break;
    case FS_EUNKNOWN_FIELD: code = FIELDSYNC_EFIELD; break;
    case FS_EREQUIRED: code = FIELDSYNC_EREQUIRED; break;
    case FS_EAPPEND_ONLY: code = FIELDSYNC_EIMMUTABLE; break;
    default: code = FIELDSYNC_EVALUE; break;
    }
    return sdk_fail(db, code, "%s", e && e->msg[0] ? e->msg : fs_strerror(fs_code));
}

int sdk_sqlfail(fieldsync_db *db, const char *what)
{
    return sdk_fail(db, FIELDSYNC_ESTORE, "%s: %s", what, sqlite3_errmsg(db->sql));
}

int sdk_exec(fieldsync_db *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db->sql, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sdk_fail(db, FIELDSYNC_ESTORE, "%s", msg ? msg : sqlite3_errmsg(db->sql));
        sqlite3_free(msg);
        return FIELDSYNC_ESTORE;
    }
    return 0;
}

int sdk_begin(fieldsync_db *db) { return sdk_exec(db, "BEGIN IMMEDIATE"); }

int sdk_commit(fieldsync_db *db)
{
    int rc = sdk_exec(db, "COMMIT");
    if (rc)
        sdk_rollback(db);
    return rc;
}

void sdk_rollback(fieldsync_db *db)
{
    if (!sqlite3_get_autocommit(db->sql))
        sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL);
}

int64_t sdk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a wrong device clock, for tests --------------------------------------------------
 * FIELDSYNC_TEST_CLOCK_OFFSET_MS=N (tests only, docs/sdk.md) shifts the wall clock that the
 * replica's hybrid clock reads by N ms (negative: the device is behind), to play a device
 * whose date is wrong without faking the system clock. It is read once per process, at the
 * first fieldsync_open; the SDK's own tests may then change sdk_test_clock_offset_ms to make
 * the clock jump (during a sync, from the progress callback: the same thread). When the
 * variable is not set, as in every real deployment, the clock reads CLOCK_REALTIME directly
 * and none of this runs. Only the hybrid clock is shifted: timestamps the SDK keeps for
 * people (created, refused_at, last sync) stay on the real clock. */
int64_t sdk_test_clock_offset_ms;
static bool test_clock_on;
static pthread_once_t test_clock_once = PTHREAD_ONCE_INIT;

static void test_clock_read(void)
{
    const char *v = getenv("FIELDSYNC_TEST_CLOCK_OFFSET_MS");
    if (v && *v) {
        sdk_test_clock_offset_ms = strtoll(v, NULL, 10);
        test_clock_on = true;
    }
}

static uint64_t test_wall_ms(void *ctx)
{
    (void)ctx;
    int64_t ms = sdk_now_ms() + sdk_test_clock_offset_ms;
    return ms > 0 ? (uint64_t)ms : 0;
}

/* Points the replica's clock at the shifted wall clock when the variable is set. */
static void test_clock_install(fieldsync_db *db)
{
    pthread_once(&test_clock_once, test_clock_read);
    if (test_clock_on)
        store_clock(db->st)->wall = test_wall_ms;
}

int64_t sdk_count(fieldsync_db *db, const char *sql)
{
    sqlite3_stmt *s;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            n = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    return n;
}

/* ---- key/value ------------------------------------------------------------------------ */

int kv_get_text(fieldsync_db *db, const char *key, char *buf, size_t cap)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql, "SELECT value FROM dev_identity WHERE key = ?1", -1, &s,
                           NULL))
        return sdk_sqlfail(db, "identity");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(s, 0);
        snprintf(buf, cap, "%s", v ? (const char *)v : "");
        sqlite3_finalize(s);
        return 0;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return sdk_sqlfail(db, "identity");
    if (cap)
        buf[0] = '\0';
    return FIELDSYNC_ENOTFOUND;
}

int kv_get_u64(fieldsync_db *db, const char *key, uint64_t *out)
{
    char v[32];
    int rc = kv_get_text(db, key, v, sizeof v);
    *out = rc ? 0 : strtoull(v, NULL, 10);
    return rc == FIELDSYNC_ENOTFOUND ? 0 : rc;
}

int kv_set_text(fieldsync_db *db, const char *key, const char *value)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "INSERT OR REPLACE INTO dev_identity(key, value) VALUES (?1, ?2)", -1,
                           &s, NULL))
        return sdk_sqlfail(db, "identity");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : sdk_sqlfail(db, "identity");
}

int kv_set_u64(fieldsync_db *db, const char *key, uint64_t value)
{
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)value);
    return kv_set_text(db, key, v);
}

int sdk_save_clock(fieldsync_db *db)
{
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)store_clock(db->st)->last);
    return store_meta_set(db->st, "hlc", v) ? sdk_sqlfail(db, "clock") : 0;
}

uint64_t sdk_clock_above(fieldsync_db *db, uint64_t floor)
{
    hlc_clock *clk = store_clock(db->st);
    /* another handle on the file may have issued later clocks: never go below them */
    char v[32];
    if (store_meta_get(db->st, "hlc", v, sizeof v) == 0) {
        uint64_t persisted = strtoull(v, NULL, 10);
        if (persisted > floor)
            floor = persisted;
    }
    /* hlc_recv refuses values far ahead of the wall clock; a base we saw must still be
     * exceeded (change_validate requires hlc > base), so move past it directly */
    if (clk->last < floor)
        clk->last = floor;
    return hlc_now(clk);
}

/* ---- identity ------------------------------------------------------------------------ */

static int load_identity(fieldsync_db *db)
{
    char dev[64], role[64];
    db->enrolled = false;
    db->role = -1;
    int rc = kv_get_text(db, "device", dev, sizeof dev);
    if (rc && rc != FIELDSYNC_ENOTFOUND)
        return rc;
    if (!rc && rid_from_text(dev, &db->device) == 0) {
        rid_to_text(&db->device, db->device_text);
        db->enrolled = true;
    }
    kv_get_text(db, "server", db->server, sizeof db->server);
    kv_get_text(db, "token", db->token, sizeof db->token);
    kv_get_text(db, "user", db->user, sizeof db->user);
    if (kv_get_text(db, "role", role, sizeof role) == 0)
        db->role = schema_role_by_name(db->s, role);
    if (!db->server[0] || !db->token[0])
        db->enrolled = false;
    return 0;
}

static int set_fast_lane(fieldsync_db *db, const char *list)
{
    memset(db->fast, 0, sizeof db->fast);
    const char *p = list;
    while (*p) {
        const char *q = strchr(p, ',');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        char name[64];
        if (n && n < sizeof name) {
            memcpy(name, p, n);
            name[n] = '\0';
            const schema_type *t = schema_type_by_name(db->s, name);
            if (!t)
                return sdk_fail(db, FIELDSYNC_ETYPE, "fast lane type '%s' is not in the schema",
                                name);
            db->fast[t->id] = true;
        }
        p += n + (q != NULL);
    }
    return 0;
}

/* A new replica file gets 16 KiB pages instead of SQLite's 4 KiB, set
 * here because the page size is fixed when the first table is written (store_open creates
 * them), and in WAL mode for good. A device's first pull writes ~3 KB of log body, field rows
 * and index entries per change (a township's replica is ~180 MB), almost all of it into new
 * pages at the end of its tables: a quarter of the pages means a quarter of the WAL frames,
 * page writes, checkpoint copies and B-tree splits (bench_device: device CPU of the first pull
 * -15%). Reads and a single edit pay a 16 KiB page instead of 4 KiB, within the page cache
 * and one WAL frame. A file that exists keeps its page size. Failures are left for
 * store_open to report. */
static void replica_prepare(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > 0)
        return;
    sqlite3 *f = NULL;
    if (sqlite3_open_v2(path, &f, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK)
        sqlite3_exec(f, "PRAGMA page_size=16384; PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    sqlite3_close(f);
}

/* Opens the engine store of db->path and prepares the connection (durability, cache
 * policy). */
static int open_store(fieldsync_db *db, fs_error *e)
{
    int rc = store_open(db->path, db->s, STORE_REPLICA, &db->st, e);
    if (rc)
        return sdk_fail(db, rc == FS_ESCHEMA ? FIELDSYNC_ESCHEMA : FIELDSYNC_ESTORE, "%s", e->msg);
    db->sql = store_db(db->st);
    test_clock_install(db);
    /* A replica file is shared by handles and processes (the app, a sync thread, the CLI):
     * keep `fields` current at every commit instead of in a write-back cache, so that no
     * handle ever holds unflushed state another handle could miss or overwrite. Devices
     * apply thousands of changes, not millions: the extra page writes do not matter. */
    store_set_flush_threshold(db->st, 1);
    /* a visit saved just before the battery dies must survive, and so must an acknowledged
     * change that leaves the outbox: every commit is synced (the SDK writes at human speed
     * and pulls in batches, so one fsync per commit costs little) */
    if (store_set_synchronous(db->st, STORE_SYNC_FULL, e))
        return sdk_fail(db, FIELDSYNC_ESTORE, "%s", e->msg);
    if ((rc = sdk_exec(db, device_sql)))
        return rc;
    /* replicas made before dev_outbox.wire (abbreviated record ids, outbox.c) */
    if (sdk_count(db, "SELECT count(*) FROM pragma_table_info('dev_outbox') WHERE name = 'wire'")
            == 0 &&
        (rc = sdk_exec(db, "ALTER TABLE dev_outbox ADD COLUMN wire BLOB")))
        return rc;
    if (store_last_seq(db->st, &db->seen_seq))
        return sdk_sqlfail(db, "log");
    return 0;
}

int sdk_refresh(fieldsync_db *db)
{
    uint64_t last;
    if (store_last_seq(db->st, &last))
        return sdk_sqlfail(db, "log");
    if (last == db->seen_seq)
        return 0;
    fs_error e = {0};
    store_close(db->st);
    db->st = NULL;
    db->sql = NULL;
    return open_store(db, &e);
}

void sdk_seen(fieldsync_db *db)
{
    uint64_t last;
    if (store_last_seq(db->st, &last) == 0)
        db->seen_seq = last;
}

int fieldsync_open(const char *path, const fieldsync_open_opts *opts, fieldsync_db **out)
{
    fs_error e = {0};
    int rc;
    if (!out)
        return sdk_fail(NULL, FIELDSYNC_EINVAL, "out is NULL");
    *out = NULL;
    if (!path)
        return sdk_fail(NULL, FIELDSYNC_EINVAL, "path is NULL");
    fieldsync_db *db = calloc(1, sizeof *db);
    if (!db)
        return sdk_fail(NULL, FIELDSYNC_ENOMEM, "out of memory");
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    db->role = -1;
    const char *spath = opts && opts->schema_path ? opts->schema_path : schema_default_path();
    if ((rc = schema_load(spath, &db->s, &e))) {
        rc = sdk_fail(NULL, rc == FS_ENOMEM ? FIELDSYNC_ENOMEM : FIELDSYNC_ESCHEMA, "%s",
                      e.msg[0] ? e.msg : "cannot load schema");
        goto fail;
    }
    db->schema_dir = strdup(spath);
    if (!db->schema_dir) {
        rc = sdk_fail(NULL, FIELDSYNC_ENOMEM, "out of memory");
        goto fail;
    }
    char *slash = strrchr(db->schema_dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(db->schema_dir, ".");
    if ((rc = wire_dicts_load(db->schema_dir, &db->dicts, &e))) {
        rc = sdk_fail(NULL, FIELDSYNC_ESCHEMA, "%s", e.msg);
        goto fail;
    }
    db->path = strdup(path);
    if (!db->path) {
        rc = sdk_fail(NULL, FIELDSYNC_ENOMEM, "out of memory");
        goto fail;
    }
    replica_prepare(path);
    if ((rc = open_store(db, &e))) {
        sdk_fail(NULL, rc, "%s", db->err);
        goto fail;
    }
    if ((rc = load_identity(db)) ||
        (rc = set_fast_lane(db, opts && opts->fast_lane_types ? opts->fast_lane_types
                                                                : "report"))) {
        sdk_fail(NULL, rc, "%s: %s", path, db->err);
        goto fail;
    }
    *out = db;
    return 0;
fail:
    fieldsync_close(db);
    return rc;
}

void fieldsync_close(fieldsync_db *db)
{
    if (!db)
        return;
    store_close(db->st);
    wire_dicts_free(db->dicts);
    schema_free(db->s);
    free(db->schema_dir);
    free(db->path);
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->cv);
    free(db);
}

/* ws://host[:port][/path] or wss://... */
static bool url_ok(const char *u)
{
    const char *p = !strncmp(u, "ws://", 5) ? u + 5 : !strncmp(u, "wss://", 6) ? u + 6 : NULL;
    return p && *p && *p != '/' && *p != ':' && strlen(u) < 250;
}

int fieldsync_enrol(fieldsync_db *db, const char *server_url, const char *device_id,
                    const char *token)
{
    if (!db || !server_url || !device_id || !token)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "server, device and token are required")
                  : FIELDSYNC_EINVAL;
    if (!url_ok(server_url))
        return sdk_fail(db, FIELDSYNC_EINVAL,
                        "server '%s' is not a ws:// or wss:// URL (ws://host:port)", server_url);
    rid_t dev;
    if (rid_from_text(device_id, &dev) || rid_is_zero(&dev))
        return sdk_fail(db, FIELDSYNC_EINVAL, "device id '%s' is not a 32-hex-digit id",
                        device_id);
    size_t tl = strlen(token);
    if (!tl || tl > WIRE_MAX_TOKEN || !utf8_valid(token, tl))
        return sdk_fail(db, FIELDSYNC_EINVAL, "token must be 1..%d bytes of text", WIRE_MAX_TOKEN);
    bool same = db->enrolled && !rid_cmp(&dev, &db->device);
    char text[RID_TEXT_LEN + 1];
    rid_to_text(&dev, text);
    int rc = sdk_begin(db);
    if (rc)
        return rc;
    if (!same) {
        int64_t numbered = sdk_count(db, "SELECT count(*) FROM dev_outbox WHERE dseq IS NOT NULL");
        if (numbered > 0) {
            sdk_rollback(db);
            return sdk_fail(db, FIELDSYNC_EINVAL,
                            "%lld changes were sent under device %s and are not yet answered: "
                            "sync them before enrolling as another device",
                            (long long)numbered, db->device_text);
        }
    }
    if ((rc = kv_set_text(db, "server", server_url)) || (rc = kv_set_text(db, "device", text)) ||
        (rc = kv_set_text(db, "token", token))) {
        sdk_rollback(db);
        return rc;
    }
    if (!same) {
        /* a new device identity starts its own sequence and its own view of the server */
        if ((rc = kv_set_u64(db, "next_dseq", 1)) || (rc = kv_set_u64(db, "acked_dseq", 0))) {
            sdk_rollback(db);
            return rc;
        }
    }
    if ((rc = sdk_commit(db)))
        return rc;
    return load_identity(db);
}

int fieldsync_identity_get(fieldsync_db *db, fieldsync_identity *out)
{
    if (!db || !out)
        return FIELDSYNC_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = load_identity(db);
    if (rc)
        return rc;
    out->enrolled = db->enrolled;
    if (db->enrolled)
        snprintf(out->device, sizeof out->device, "%s", db->device_text);
    snprintf(out->server, sizeof out->server, "%s", db->server);
    snprintf(out->user, sizeof out->user, "%s", db->user);
    if (db->role >= 0)
        snprintf(out->role, sizeof out->role, "%s", db->s->roles[db->role]);
    uint64_t v;
    if ((rc = kv_get_u64(db, "cursor", &out->cursor)) ||
        (rc = kv_get_u64(db, "acked_dseq", &out->acked_dseq)) ||
        (rc = kv_get_u64(db, "next_dseq", &out->next_dseq)) ||
        (rc = kv_get_u64(db, "last_sync_ms", &v)))
        return rc;
    if (!out->next_dseq)
        out->next_dseq = 1;
    out->last_sync_ms = (int64_t)v;
    out->pending = sdk_count(db, "SELECT count(*) FROM dev_outbox");
    out->refused = sdk_count(db, "SELECT count(*) FROM dev_refused");
    out->reviews = sdk_count(db, "SELECT count(*) FROM dev_review");
    if (out->pending < 0 || out->refused < 0 || out->reviews < 0)
        return sdk_sqlfail(db, "counts");
    return 0;
}

bool sdk_cancelled(fieldsync_db *db)
{
    pthread_mutex_lock(&db->mu);
    bool c = db->cancel != 0;
    pthread_mutex_unlock(&db->mu);
    return c;
}

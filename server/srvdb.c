/*
 * srvdb.c — the server's own tables, kept in the store's SQLite file next to the engine's.
 *
 * Tables (all prefixed srv_ so they never collide with the engine's; byte formats below):
 *   srv_meta(key, value)                  format version of these tables ("srv_format" = 1)
 *   srv_townships(code, name, created_ms)
 *   srv_villages(code, township, name, created_ms)   code is what records' scope holds
 *   srv_users(id, name, role, scope_kind, password, created_ms)
 *             role: a role name of the schema; scope_kind: 0 villages, 1 township,
 *             2 children; password: crypto_pwhash_str (argon2id) text or NULL
 *   srv_user_scope(user, value)           per scope_kind: village codes, the township code,
 *                                         or child record ids as uuid text
 *   srv_devices(id, user, label, token_hash, created_ms, revoked_ms, last_seen_ms,
 *               last_agent)               id: 16 bytes; token_hash: BLAKE2b-256 of the token
 *                                         (the token itself is never stored); revoked_ms 0
 *                                         while valid
 *   srv_device_health(device, pending, dseq_at, hello_ms)
 *                                         at the device's last hello: its outbox size (NULL
 *                                         when its hello did not say) and the server's
 *                                         consumed dseq then, so pending after that session
 *                                         is pending - (consumed now - dseq_at)
 *   srv_web_sessions(token_hash, user, csrf, created_ms, last_ms, addr)
 *                                         supervisor page sessions: BLAKE2b-256 of the cookie
 *                                         token, the CSRF token, times for expiry
 *   srv_web_devices(user, device, created_ms)  the device id under which the page's changes
 *                                         of that user are authored (web_review.c)
 *   srv_restore(device)                   devices enrolled when the store was restored from
 *                                         a backup that have not pulled since from a cursor
 *                                         at or below the restored log end (srv_meta key
 *                                         "restored_log_end"); see srvdb_restore_mark
 * Codes are unique across townships and villages together, so a subscribe scope names one
 * or the other without ambiguity.
 *
 * Both the daemon (on the store's connection) and the admin commands (on their own
 * connection, possibly while the daemon runs: WAL) use these functions. They are not on the
 * hot path, so statements are prepared per call.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const srv_migration =
    "CREATE TABLE IF NOT EXISTS srv_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    "  WITHOUT ROWID;"
    "INSERT OR IGNORE INTO srv_meta(key, value) VALUES ('srv_format', '1');"
    "CREATE TABLE IF NOT EXISTS srv_townships(code TEXT PRIMARY KEY, name TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS srv_villages(code TEXT PRIMARY KEY, township TEXT NOT NULL,"
    "  name TEXT NOT NULL, created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS srv_villages_township ON srv_villages(township);"
    "CREATE TABLE IF NOT EXISTS srv_users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL, scope_kind INTEGER NOT NULL, password TEXT,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS srv_user_scope(user INTEGER NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY(user, value)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS srv_devices(id BLOB PRIMARY KEY, user INTEGER NOT NULL,"
    "  label TEXT NOT NULL DEFAULT '', token_hash BLOB NOT NULL, created_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0, last_seen_ms INTEGER NOT NULL DEFAULT 0,"
    "  last_agent TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS srv_devices_user ON srv_devices(user);"
    /* devices that have not pulled since the store was restored (admin restore) */
    "CREATE TABLE IF NOT EXISTS srv_restore(device BLOB PRIMARY KEY) WITHOUT ROWID;"
    /* device health: what the device said at its last hello (protocol §4: pending) */
    "CREATE TABLE IF NOT EXISTS srv_device_health(device BLOB PRIMARY KEY,"
    "  pending INTEGER, dseq_at INTEGER NOT NULL, hello_ms INTEGER NOT NULL) WITHOUT ROWID;"
    /* supervisor page: sessions (token stored hashed) and one device per web user, the
     * author device of the changes the page makes (review resolutions) */
    "CREATE TABLE IF NOT EXISTS srv_web_sessions(token_hash BLOB PRIMARY KEY,"
    "  user INTEGER NOT NULL, csrf TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  last_ms INTEGER NOT NULL, addr TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS srv_web_sessions_user ON srv_web_sessions(user);"
    "CREATE TABLE IF NOT EXISTS srv_web_devices(user INTEGER PRIMARY KEY,"
    "  device BLOB NOT NULL UNIQUE, created_ms INTEGER NOT NULL);";

int srvdb_exec(sqlite3 *db, const char *sql, fs_error *e)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fs_error_set(e, FS_EIO, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return FS_EIO;
    }
    return 0;
}

int srvdb_migrate(sqlite3 *db, fs_error *e)
{
    return srvdb_exec(db, srv_migration, e);
}

int srvdb_open(const char *path, bool create, sqlite3 **out, fs_error *e)
{
    *out = NULL;
    struct stat sb;
    if (!create && stat(path, &sb) != 0)
        return fs_error_set(e, FS_ENOTFOUND, "no store at %s", path);
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        fs_error_set(e, FS_EIO, "cannot open %s: %s", path,
                     db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return FS_EIO;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_extended_result_codes(db, 1);
    /* the engine's settings (store.c), durable like the server's store (--sync full): an
     * enrolment, a revocation or a password change survives a power failure */
    char page_size[48]; /* before journal_mode: a new file is made by the first (store.h) */
    snprintf(page_size, sizeof page_size, "PRAGMA page_size=%d;", STORE_AUTHORITY_PAGE_SIZE);
    int rc = srvdb_exec(db, page_size, e);
    if (!rc)
        rc = srvdb_exec(db,
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                        "PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864;",
                        e);
    if (!rc)
        rc = srvdb_migrate(db, e);
    if (rc) {
        char why[200];
        snprintf(why, sizeof why, "%s", e ? e->msg : "");
        fs_error_set(e, FS_EIO, "%s: %s", path, why);
        sqlite3_close(db);
        return FS_EIO;
    }
    *out = db;
    return 0;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int srvdb_device_get(sqlite3 *db, sqlite3_stmt **cache, const rid_t *id, srv_device *out)
{
    sqlite3_stmt *s = cache ? *cache : NULL;
    memset(out, 0, sizeof *out);
    if (!s && sqlite3_prepare_v3(db,
                                 "SELECT user, label, token_hash, created_ms, revoked_ms, "
                                 "last_seen_ms, last_agent FROM srv_devices WHERE id = ?1",
                                 -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &s, NULL))
        return FS_EIO;
    if (cache)
        *cache = s;
    sqlite3_bind_blob(s, 1, id->b, 16, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = *id;
        out->user_id = sqlite3_column_int64(s, 0);
        copy_text(out->label, sizeof out->label, s, 1);
        if (sqlite3_column_bytes(s, 2) == SRV_TOKEN_HASH_LEN)
            memcpy(out->token_hash, sqlite3_column_blob(s, 2), SRV_TOKEN_HASH_LEN);
        out->created_ms = sqlite3_column_int64(s, 3);
        out->revoked_ms = sqlite3_column_int64(s, 4);
        out->last_seen_ms = sqlite3_column_int64(s, 5);
        copy_text(out->last_agent, sizeof out->last_agent, s, 6);
    }
    if (cache)
        sqlite3_reset(s);
    else
        sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FS_ENOTFOUND : FS_EIO;
}

int srvdb_device_seen(sqlite3 *db, const rid_t *id, const char *agent, size_t agent_len)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "UPDATE srv_devices SET last_seen_ms = ?2, last_agent = ?3 "
                           "WHERE id = ?1",
                           -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_blob(s, 1, id->b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, srv_wall_ms());
    sqlite3_bind_text(s, 3, agent ? agent : "", agent ? (int)agent_len : 0, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

static int user_row(sqlite3_stmt *s, srv_user *out)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        copy_text(out->name, sizeof out->name, s, 1);
        copy_text(out->role, sizeof out->role, s, 2);
        out->kind = (scope_kind)sqlite3_column_int(s, 3);
        out->has_password = sqlite3_column_type(s, 4) != SQLITE_NULL;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FS_ENOTFOUND : FS_EIO;
}

int srvdb_user_get(sqlite3 *db, int64_t id, srv_user *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    if (sqlite3_prepare_v2(db,
                           "SELECT id, name, role, scope_kind, password FROM srv_users "
                           "WHERE id = ?1",
                           -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_int64(s, 1, id);
    return user_row(s, out);
}

int srvdb_user_by_name(sqlite3 *db, const char *name, srv_user *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    if (sqlite3_prepare_v2(db,
                           "SELECT id, name, role, scope_kind, password FROM srv_users "
                           "WHERE name = ?1",
                           -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    return user_row(s, out);
}

int srvdb_user_scope(sqlite3 *db, int64_t user_id, int (*fn)(void *ctx, const char *value),
                     void *ctx)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT value FROM srv_user_scope WHERE user = ?1 ORDER BY value",
                           -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_int64(s, 1, user_id);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(s, 0)))
            break;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FS_EIO;
}

int srvdb_villages(sqlite3 *db, int (*fn)(void *ctx, const char *code, const char *township),
                   void *ctx)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT code, township FROM srv_villages ORDER BY code", -1, &s,
                           NULL))
        return FS_EIO;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(s, 0),
               (const char *)sqlite3_column_text(s, 1)))
            break;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FS_EIO;
}

static bool exists(sqlite3 *db, const char *sql, const char *code)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL))
        return false;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    bool found = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
}

bool srvdb_township_exists(sqlite3 *db, const char *code)
{
    return exists(db, "SELECT 1 FROM srv_townships WHERE code = ?1", code);
}

bool srvdb_village_exists(sqlite3 *db, const char *code)
{
    return exists(db, "SELECT 1 FROM srv_villages WHERE code = ?1", code);
}

int srvdb_restore_mark(sqlite3 *db, int64_t log_end, fs_error *e)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE; DELETE FROM srv_restore;"
             "INSERT INTO srv_restore(device) SELECT id FROM srv_devices;"
             "INSERT OR REPLACE INTO srv_meta(key, value) VALUES ('restored_log_end', '%lld');"
             "COMMIT;",
             (long long)log_end);
    int rc = srvdb_exec(db, sql, e);
    if (rc)
        srvdb_exec(db, "ROLLBACK", NULL);
    return rc;
}

bool srvdb_restore_pending(sqlite3 *db, const rid_t *dev, uint64_t *log_end)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT value FROM srv_meta WHERE key = 'restored_log_end') "
                           "FROM srv_restore WHERE device = ?1",
                           -1, &s, NULL))
        return false;
    sqlite3_bind_blob(s, 1, dev->b, 16, SQLITE_STATIC);
    bool pending = sqlite3_step(s) == SQLITE_ROW;
    if (pending)
        *log_end = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return pending;
}

void srvdb_restore_done(sqlite3 *db, const rid_t *dev)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "DELETE FROM srv_restore WHERE device = ?1", -1, &s, NULL))
        return;
    sqlite3_bind_blob(s, 1, dev->b, 16, SQLITE_STATIC);
    sqlite3_step(s); /* best effort: failing, the device just gets CURSOR once more */
    sqlite3_finalize(s);
}

bool srv_code_valid(const char *code)
{
    size_t n = strlen(code);
    if (n == 0 || n > SRV_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = code[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int srvdb_device_health(sqlite3 *db, const rid_t *id, bool has_pending, uint64_t pending,
                        uint64_t dseq_at)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO srv_device_health(device, pending, dseq_at, "
                           "hello_ms) VALUES (?1, ?2, ?3, ?4)",
                           -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_blob(s, 1, id->b, 16, SQLITE_STATIC);
    if (has_pending)
        sqlite3_bind_int64(s, 2, pending > INT64_MAX ? INT64_MAX : (sqlite3_int64)pending);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)dseq_at);
    sqlite3_bind_int64(s, 4, srv_wall_ms());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

void village_names_free(village_names *v)
{
    free(v->codes);
    free(v->names);
    free(v->townships);
    memset(v, 0, sizeof *v);
}

int srvdb_village_names(sqlite3 *db, const char *township, village_names *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           township ? "SELECT code, name, township FROM srv_villages "
                                      "WHERE township = ?1 ORDER BY code"
                                    : "SELECT code, name, township FROM srv_villages "
                                      "ORDER BY code",
                           -1, &s, NULL))
        return FS_EIO;
    if (township)
        sqlite3_bind_text(s, 1, township, -1, SQLITE_STATIC);
    uint32_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 32;
            void *a = realloc(out->codes, cap * sizeof *out->codes);
            if (a)
                out->codes = a;
            void *b = realloc(out->names, cap * sizeof *out->names);
            if (b)
                out->names = b;
            void *c = realloc(out->townships, cap * sizeof *out->townships);
            if (c)
                out->townships = c;
            if (!a || !b || !c) {
                rc = SQLITE_NOMEM;
                break;
            }
        }
        copy_text(out->codes[out->n], sizeof out->codes[out->n], s, 0);
        copy_text(out->names[out->n], sizeof out->names[out->n], s, 1);
        copy_text(out->townships[out->n], sizeof out->townships[out->n], s, 2);
        out->n++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        village_names_free(out);
        return rc == SQLITE_NOMEM ? FS_ENOMEM : FS_EIO;
    }
    return 0;
}

int srvdb_township_name(sqlite3 *db, const char *code, char *name, size_t cap)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT name FROM srv_townships WHERE code = ?1", -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        copy_text(name, cap, s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FS_ENOTFOUND : FS_EIO;
}

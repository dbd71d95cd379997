/*
 * admin_device.c — devices: `device enrol|list|revoke|rotate`.
 *
 * A device is a phone, tablet or laptop of one user. Its id (uuid, time-ordered) names it in
 * every change it makes, together with its own sequence numbers, so an id is never reused:
 * a lost device is revoked and a replacement enrolled anew. Its token is shown once, at
 * enrolment or rotation, and only its BLAKE2b hash is stored (auth.c): nobody can print an
 * existing token again. Rotation keeps the id (and so the device's sequence and outbox) and
 * replaces the token: for a token that may have leaked from a device still in use.
 * Revocation is immediate for new sessions and within a second for open ones (the daemon
 * notices the change and closes them with AUTH).
 */
#include "admin.h"

#include <sodium.h>
#include <string.h>

static int device_arg(admin_ctx *a, const char *text, srv_device *d)
{
    rid_t id;
    if (rid_from_text(text, &id))
        return admin_fail(a, SRV_EXIT_USAGE, "'%s' is not a device id (uuid text, as printed "
                                             "by device enrol and device list)",
                          text);
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    rc = srvdb_device_get(a->db, NULL, &id, d);
    if (rc == FS_ENOTFOUND)
        return admin_fail(a, SRV_EXIT_NOTFOUND, "no device %s: see fieldsyncd admin device list",
                          text);
    if (rc)
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    return 0;
}

static void print_token(admin_ctx *a, const char *what, const char *id, const char *user,
                        const char *label, const char *token)
{
    if (a->json) {
        printf("{\"ok\":true,\"device\":");
        json_str(stdout, id);
        printf(",\"user\":");
        json_str(stdout, user);
        printf(",\"label\":");
        json_str(stdout, label);
        printf(",\"token\":");
        json_str(stdout, token);
        printf("}\n");
    } else {
        printf("device %s\ntoken %s\n", id, token);
        fprintf(stderr,
                "%s device %s for user %s%s%s%s.\n"
                "The token is shown only this once: enter it on the device now. If it is lost,\n"
                "give the device a new one with: fieldsyncd admin device rotate %s\n",
                what, id, user, label[0] ? " (" : "", label, label[0] ? ")" : "", id);
    }
    fflush(stdout);
}

int cmd_device_enrol(admin_ctx *a)
{
    const char *user = a->pos[0], *label = admin_opt(a, "label");
    if (!label)
        label = "";
    if (label[0] && !admin_name_ok(label, 120))
        return admin_fail(a, SRV_EXIT_USAGE, "--label must be 1-120 bytes of UTF-8 text");
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    srv_user u;
    if (srvdb_user_by_name(a->db, user, &u))
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no user '%s': create it with fieldsyncd admin user add %s --role R "
                          "--villages V",
                          user, user);
    rid_t id;
    char token[SRV_TOKEN_LEN + 1];
    uint8_t hash[SRV_TOKEN_HASH_LEN];
    if (rid_new(&id, (uint64_t)srv_wall_ms()) || auth_token_new(token, hash))
        return admin_fail(a, SRV_EXIT_STORE, "no randomness available");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db,
                           "INSERT INTO srv_devices(id, user, label, token_hash, created_ms) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &s, NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    sqlite3_bind_blob(s, 1, id.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, u.id);
    sqlite3_bind_text(s, 3, label, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, srv_wall_ms());
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        sodium_memzero(token, sizeof token);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                          sqlite3_errmsg(a->db));
    }
    char text[RID_TEXT_LEN + 1];
    rid_to_text(&id, text);
    print_token(a, "enrolled", text, user, label, token);
    sodium_memzero(token, sizeof token);
    return SRV_EXIT_OK;
}

int cmd_device_rotate(admin_ctx *a)
{
    srv_device d;
    int rc = device_arg(a, a->pos[0], &d);
    if (rc)
        return rc;
    if (d.revoked_ms)
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "device %s is revoked: enrol a new device instead", a->pos[0]);
    srv_user u;
    if (srvdb_user_get(a->db, d.user_id, &u))
        snprintf(u.name, sizeof u.name, "?");
    char token[SRV_TOKEN_LEN + 1];
    uint8_t hash[SRV_TOKEN_HASH_LEN];
    if (auth_token_new(token, hash))
        return admin_fail(a, SRV_EXIT_STORE, "no randomness available");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db, "UPDATE srv_devices SET token_hash = ?2 WHERE id = ?1", -1, &s,
                           NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    sqlite3_bind_blob(s, 1, d.id.b, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, hash, sizeof hash, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        sodium_memzero(token, sizeof token);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                          sqlite3_errmsg(a->db));
    }
    char text[RID_TEXT_LEN + 1];
    rid_to_text(&d.id, text);
    print_token(a, "new token for", text, u.name, d.label, token);
    sodium_memzero(token, sizeof token);
    return SRV_EXIT_OK;
}

int cmd_device_revoke(admin_ctx *a)
{
    srv_device d;
    int rc = device_arg(a, a->pos[0], &d);
    if (rc)
        return rc;
    char text[RID_TEXT_LEN + 1];
    rid_to_text(&d.id, text);
    if (!d.revoked_ms) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(a->db, "UPDATE srv_devices SET revoked_ms = ?2 WHERE id = ?1",
                               -1, &s, NULL))
            return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
        sqlite3_bind_blob(s, 1, d.id.b, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, srv_wall_ms());
        rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                              sqlite3_errmsg(a->db));
    }
    if (a->json) {
        printf("{\"ok\":true,\"device\":");
        json_str(stdout, text);
        printf(",\"revoked\":true,\"already\":%s}\n", d.revoked_ms ? "true" : "false");
    } else {
        printf("device %s %s\n", text, d.revoked_ms ? "was already revoked" : "revoked");
    }
    return SRV_EXIT_OK;
}

int cmd_device_list(admin_ctx *a)
{
    const char *user = admin_opt(a, "user");
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    srv_user u;
    if (user && srvdb_user_by_name(a->db, user, &u))
        return admin_fail(a, SRV_EXIT_NOTFOUND, "no user '%s': see fieldsyncd admin user list",
                          user);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db,
                           "SELECT d.id, u.name, d.label, d.created_ms, d.revoked_ms, "
                           "d.last_seen_ms, d.last_agent FROM srv_devices d "
                           "LEFT JOIN srv_users u ON u.id = d.user "
                           "WHERE ?1 IS NULL OR u.name = ?1 ORDER BY u.name, d.created_ms",
                           -1, &s, NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    if (user)
        sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    if (a->json)
        printf("{\"ok\":true,\"devices\":[");
    else
        printf("%-36s  %-16s %-8s %-19s  %-19s  %s\n", "DEVICE", "USER", "STATUS", "ENROLLED",
               "LAST SEEN", "LABEL / AGENT");
    int n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        rid_t id;
        memset(&id, 0, sizeof id);
        if (sqlite3_column_bytes(s, 0) == 16)
            memcpy(id.b, sqlite3_column_blob(s, 0), 16);
        char text[RID_TEXT_LEN + 1], created[32], seen[32];
        rid_to_text(&id, text);
        const char *name = (const char *)sqlite3_column_text(s, 1);
        const char *label = (const char *)sqlite3_column_text(s, 2);
        int64_t revoked = sqlite3_column_int64(s, 4);
        const char *agent = (const char *)sqlite3_column_text(s, 6);
        admin_time(sqlite3_column_int64(s, 3), created, sizeof created);
        admin_time(sqlite3_column_int64(s, 5), seen, sizeof seen);
        if (a->json) {
            printf("%s{\"device\":", n ? "," : "");
            json_str(stdout, text);
            printf(",\"user\":");
            json_str(stdout, name ? name : "");
            printf(",\"label\":");
            json_str(stdout, label);
            printf(",\"revoked\":%s,\"created_ms\":%lld,\"last_seen_ms\":%lld,\"agent\":",
                   revoked ? "true" : "false", (long long)sqlite3_column_int64(s, 3),
                   (long long)sqlite3_column_int64(s, 5));
            json_str(stdout, agent);
            printf("}");
        } else {
            printf("%-36s  %-16s %-8s %-19s  %-19s  %s%s%s\n", text, name ? name : "?",
                   revoked ? "revoked" : "active", created, seen, label,
                   label[0] && agent[0] ? " / " : "", agent);
        }
        n++;
    }
    sqlite3_finalize(s);
    if (a->json)
        printf("]}\n");
    return rc == SQLITE_DONE ? SRV_EXIT_OK
                             : admin_fail(a, SRV_EXIT_STORE, "%s: read failed", a->db_path);
}

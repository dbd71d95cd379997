/*
 * admin_user.c — users: `user add|list|scope|password`.
 *
 * A user is a person (the author name on every change they make through any of their
 * devices), a role from the schema's `roles` (what the engine lets them do) and a scope
 * (which records they receive and may write; scope.c). The scope is exactly one of:
 *   --villages A,B     village codes (each must exist)
 *   --township T       every village of T, including villages added later
 *   --children ID,...  child record ids (uuid text), e.g. for a social worker's caseload
 * Passwords are for the supervisor page (a later issue); devices use tokens (admin_device.c).
 */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"villages", "township", "children"};

typedef struct scope_arg {
    scope_kind kind;
    char *buf;            /* owned copy of the list, split in place */
    const char **vals;    /* owned array of pointers into buf (or normalised ids) */
    char (*ids)[RID_TEXT_LEN + 1]; /* children: normalised text; owned */
    int n;
} scope_arg;

static void scope_arg_free(scope_arg *s)
{
    free(s->buf);
    free(s->vals);
    free(s->ids);
}

/* Reads exactly one of --villages, --township, --children into out. Exit status or 0. */
static int parse_scope(admin_ctx *a, scope_arg *out)
{
    memset(out, 0, sizeof *out);
    const char *v = admin_opt(a, "villages"), *t = admin_opt(a, "township"),
               *c = admin_opt(a, "children");
    if ((v != NULL) + (t != NULL) + (c != NULL) != 1)
        return admin_fail(a, SRV_EXIT_USAGE,
                          "give exactly one scope: --villages A,B or --township T or "
                          "--children ID,...");
    out->kind = v ? SCOPE_VILLAGES : t ? SCOPE_TOWNSHIP : SCOPE_CHILDREN;
    const char *list = v ? v : t ? t : c;
    size_t len = strlen(list);
    out->buf = malloc(len + 1);
    out->vals = calloc(len / 2 + 2, sizeof *out->vals);
    out->ids = calloc(len / 2 + 2, sizeof *out->ids);
    if (!out->buf || !out->vals || !out->ids)
        return admin_fail(a, SRV_EXIT_STORE, "out of memory");
    memcpy(out->buf, list, len + 1);
    for (char *save = NULL, *tok = strtok_r(out->buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (out->kind == SCOPE_CHILDREN) {
            rid_t id;
            if (rid_from_text(tok, &id))
                return admin_fail(a, SRV_EXIT_USAGE,
                                  "'%s' is not a record id (uuid text, e.g. "
                                  "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b)",
                                  tok);
            rid_to_text(&id, out->ids[out->n]);
            out->vals[out->n] = out->ids[out->n];
            out->n++;
            continue;
        }
        if (out->kind == SCOPE_VILLAGES && !srvdb_village_exists(a->db, tok))
            return admin_fail(a, SRV_EXIT_NOTFOUND,
                              "no village '%s': create it with fieldsyncd admin village add %s "
                              "--township T NAME",
                              tok, tok);
        if (out->kind == SCOPE_TOWNSHIP && !srvdb_township_exists(a->db, tok))
            return admin_fail(a, SRV_EXIT_NOTFOUND,
                              "no township '%s': create it with fieldsyncd admin township add "
                              "%s NAME",
                              tok, tok);
        out->vals[out->n++] = tok;
    }
    if (out->n == 0)
        return admin_fail(a, SRV_EXIT_USAGE, "the scope list is empty");
    if (out->kind == SCOPE_TOWNSHIP && out->n != 1)
        return admin_fail(a, SRV_EXIT_USAGE, "--township takes one township");
    return 0;
}

static int write_scope(admin_ctx *a, int64_t user, const scope_arg *sc)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db, "DELETE FROM srv_user_scope WHERE user = ?1", -1, &s, NULL))
        return SRV_EXIT_STORE;
    sqlite3_bind_int64(s, 1, user);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE ||
        sqlite3_prepare_v2(a->db, "UPDATE srv_users SET scope_kind = ?2 WHERE id = ?1", -1, &s,
                           NULL))
        return SRV_EXIT_STORE;
    sqlite3_bind_int64(s, 1, user);
    sqlite3_bind_int(s, 2, (int)sc->kind);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE ||
        sqlite3_prepare_v2(a->db,
                           "INSERT OR IGNORE INTO srv_user_scope(user, value) VALUES (?1, ?2)",
                           -1, &s, NULL))
        return SRV_EXIT_STORE;
    for (int i = 0; i < sc->n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, user);
        sqlite3_bind_text(s, 2, sc->vals[i], -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) {
            sqlite3_finalize(s);
            return SRV_EXIT_STORE;
        }
    }
    sqlite3_finalize(s);
    return 0;
}

static void print_scope_json(const scope_arg *sc)
{
    printf("{\"kind\":\"%s\",\"values\":[", kind_names[sc->kind]);
    for (int i = 0; i < sc->n; i++) {
        printf("%s", i ? "," : "");
        json_str(stdout, sc->vals[i]);
    }
    printf("]}");
}

static int role_check(admin_ctx *a, const char *role)
{
    if (schema_role_by_name(a->schema, role) >= 0)
        return 0;
    char roles[256] = "";
    for (uint32_t i = 0; i < a->schema->n_roles; i++) {
        strncat(roles, i ? ", " : "", sizeof roles - strlen(roles) - 1);
        strncat(roles, a->schema->roles[i], sizeof roles - strlen(roles) - 1);
    }
    return admin_fail(a, SRV_EXIT_USAGE, "unknown role '%s': the schema's roles are %s", role,
                      roles);
}

int cmd_user_add(admin_ctx *a)
{
    const char *name = a->pos[0], *role = admin_opt(a, "role");
    if (!admin_name_ok(name, SRV_NAME_MAX))
        return admin_fail(a, SRV_EXIT_USAGE,
                          "user name must be 1-%d bytes of UTF-8 without control characters or "
                          "surrounding spaces (it is the author of every change)",
                          SRV_NAME_MAX);
    if (!role)
        return admin_fail(a, SRV_EXIT_USAGE, "user add wants --role R (usage: user add %s)",
                          a->usage);
    int rc;
    if ((rc = admin_schema(a)) || (rc = role_check(a, role)) || (rc = admin_db(a, false)))
        return rc;
    scope_arg sc;
    if ((rc = parse_scope(a, &sc))) {
        scope_arg_free(&sc);
        return rc;
    }
    srv_user u;
    if ((rc = admin_begin(a))) {
        scope_arg_free(&sc);
        return rc;
    }
    if (srvdb_user_by_name(a->db, name, &u) == 0) {
        admin_rollback(a);
        scope_arg_free(&sc);
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "user '%s' already exists: change its scope with fieldsyncd admin "
                          "user scope %s ...",
                          name, name);
    }
    sqlite3_stmt *s;
    rc = SRV_EXIT_STORE;
    if (sqlite3_prepare_v2(a->db,
                           "INSERT INTO srv_users(name, role, scope_kind, created_ms) "
                           "VALUES (?1, ?2, ?3, ?4)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, role, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, (int)sc.kind);
        sqlite3_bind_int64(s, 4, srv_wall_ms());
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = write_scope(a, sqlite3_last_insert_rowid(a->db), &sc);
        sqlite3_finalize(s);
    }
    if (rc) {
        admin_rollback(a);
        scope_arg_free(&sc);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                          sqlite3_errmsg(a->db));
    }
    if ((rc = admin_commit(a))) {
        scope_arg_free(&sc);
        return rc;
    }
    if (a->json) {
        printf("{\"ok\":true,\"user\":{\"name\":");
        json_str(stdout, name);
        printf(",\"role\":");
        json_str(stdout, role);
        printf(",\"scope\":");
        print_scope_json(&sc);
        printf("}}\n");
    } else {
        printf("user %s (%s) created, scope %s %s%s\n", name, role, kind_names[sc.kind],
               sc.vals[0], sc.n > 1 ? ",..." : "");
        printf("next: fieldsyncd admin --db %s device enrol %s\n", a->db_path, name);
    }
    scope_arg_free(&sc);
    return SRV_EXIT_OK;
}

int cmd_user_scope(admin_ctx *a)
{
    const char *name = a->pos[0];
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    srv_user u;
    if (srvdb_user_by_name(a->db, name, &u))
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no user '%s': create it with fieldsyncd admin user add %s --role R "
                          "--villages V",
                          name, name);
    scope_arg sc;
    if ((rc = parse_scope(a, &sc)) || (rc = admin_begin(a))) {
        scope_arg_free(&sc);
        return rc;
    }
    if (write_scope(a, u.id, &sc)) {
        admin_rollback(a);
        scope_arg_free(&sc);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                          sqlite3_errmsg(a->db));
    }
    if ((rc = admin_commit(a))) {
        scope_arg_free(&sc);
        return rc;
    }
    if (a->json) {
        printf("{\"ok\":true,\"user\":");
        json_str(stdout, name);
        printf(",\"scope\":");
        print_scope_json(&sc);
        printf("}\n");
    } else {
        printf("user %s: scope is now %s %s%s (running sessions follow within a second)\n",
               name, kind_names[sc.kind], sc.vals[0], sc.n > 1 ? ",..." : "");
    }
    scope_arg_free(&sc);
    return SRV_EXIT_OK;
}

int cmd_user_list(admin_ctx *a)
{
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(
            a->db,
            "SELECT u.name, u.role, u.scope_kind, u.password IS NOT NULL, "
            "(SELECT group_concat(value, ',') FROM (SELECT value FROM srv_user_scope "
            " WHERE user = u.id ORDER BY value)), "
            "(SELECT count(*) FROM srv_devices d WHERE d.user = u.id AND d.revoked_ms = 0) "
            "FROM srv_users u ORDER BY u.name",
            -1, &s, NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    if (a->json)
        printf("{\"ok\":true,\"users\":[");
    int n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        const char *role = (const char *)sqlite3_column_text(s, 1);
        int kind = sqlite3_column_int(s, 2);
        const char *kname = kind >= 0 && kind <= 2 ? kind_names[kind] : "?";
        const char *vals = (const char *)sqlite3_column_text(s, 4);
        if (a->json) {
            printf("%s{\"name\":", n ? "," : "");
            json_str(stdout, name);
            printf(",\"role\":");
            json_str(stdout, role);
            printf(",\"scope\":{\"kind\":\"%s\",\"values\":", kname);
            json_str(stdout, vals ? vals : "");
            printf("},\"password\":%s,\"devices\":%d}", sqlite3_column_int(s, 3) ? "true" : "false",
                   sqlite3_column_int(s, 5));
        } else {
            printf("%-20s %-12s %-9s %-30s %d devices%s\n", name, role, kname, vals ? vals : "",
                   sqlite3_column_int(s, 5), sqlite3_column_int(s, 3) ? ", password set" : "");
        }
        n++;
    }
    sqlite3_finalize(s);
    if (a->json)
        printf("]}\n");
    return rc == SQLITE_DONE ? SRV_EXIT_OK
                             : admin_fail(a, SRV_EXIT_STORE, "%s: read failed", a->db_path);
}

int cmd_user_password(admin_ctx *a)
{
    const char *name = a->pos[0];
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    srv_user u;
    if (srvdb_user_by_name(a->db, name, &u))
        return admin_fail(a, SRV_EXIT_NOTFOUND, "no user '%s': see fieldsyncd admin user list",
                          name);
    char pw[1024];
    if (!fgets(pw, sizeof pw, stdin))
        return admin_fail(a, SRV_EXIT_USAGE,
                          "no password on stdin: echo 'the password' | fieldsyncd admin user "
                          "password %s",
                          name);
    size_t n = strcspn(pw, "\r\n");
    pw[n] = '\0';
    if (n < 8 || !utf8_valid(pw, n)) {
        memset(pw, 0, sizeof pw);
        return admin_fail(a, SRV_EXIT_USAGE, "the password must be at least 8 bytes of UTF-8");
    }
    char hash[256];
    rc = auth_password_hash(pw, n, hash, sizeof hash);
    memset(pw, 0, sizeof pw);
    if (rc)
        return admin_fail(a, SRV_EXIT_STORE, "cannot hash the password (out of memory)");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db, "UPDATE srv_users SET password = ?2 WHERE id = ?1", -1, &s,
                           NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    sqlite3_bind_int64(s, 1, u.id);
    sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                          sqlite3_errmsg(a->db));
    if (a->json) {
        printf("{\"ok\":true,\"user\":");
        json_str(stdout, name);
        printf(",\"password\":true}\n");
    } else {
        printf("password of %s set\n", name);
    }
    return SRV_EXIT_OK;
}

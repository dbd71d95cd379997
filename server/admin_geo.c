/*
 * admin_geo.c — townships (乡镇) and villages (村/居): `township add|list`,
 * `village add|list`.
 *
 * A village code is what a record's scope field holds, so it must exist before any device
 * can write a record there (scope.c refuses unknown villages). Codes are unique across
 * townships and villages together; names are free text (Chinese, usually). Nothing is ever
 * renamed or deleted here: records keep their village code forever, and the history would
 * stop making sense.
 */
#include "admin.h"

#include <string.h>

static bool code_taken(admin_ctx *a, const char *code, const char **what)
{
    if (srvdb_township_exists(a->db, code)) {
        *what = "township";
        return true;
    }
    if (srvdb_village_exists(a->db, code)) {
        *what = "village";
        return true;
    }
    return false;
}

static int check_code_name(admin_ctx *a, const char *kind, const char *code, const char *name)
{
    if (!srv_code_valid(code))
        return admin_fail(a, SRV_EXIT_USAGE,
                          "%s code '%s' is not valid: use 1-%d letters, digits, '_', '-' or '.'",
                          kind, code, SRV_CODE_MAX);
    if (!admin_name_ok(name, 128))
        return admin_fail(a, SRV_EXIT_USAGE,
                          "%s name must be 1-128 bytes of UTF-8 text without control characters "
                          "or surrounding spaces",
                          kind);
    return 0;
}

static int insert(admin_ctx *a, const char *sql, const char *x, const char *y, const char *z)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db, sql, -1, &s, NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    sqlite3_bind_text(s, 1, x, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, y, -1, SQLITE_STATIC);
    if (z)
        sqlite3_bind_text(s, 3, z, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, z ? 4 : 3, srv_wall_ms());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path,
                          sqlite3_errmsg(a->db));
    return 0;
}

int cmd_township_add(admin_ctx *a)
{
    const char *code = a->pos[0], *name = a->pos[1];
    int rc = check_code_name(a, "township", code, name);
    if (rc || (rc = admin_db(a, true)))
        return rc;
    if ((rc = admin_begin(a)))
        return rc;
    const char *what;
    if (code_taken(a, code, &what)) {
        admin_rollback(a);
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "'%s' already exists as a %s: township and village codes are unique",
                          code, what);
    }
    if ((rc = insert(a, "INSERT INTO srv_townships(code, name, created_ms) VALUES (?1, ?2, ?3)",
                     code, name, NULL))) {
        admin_rollback(a);
        return rc;
    }
    if ((rc = admin_commit(a)))
        return rc;
    if (a->json) {
        printf("{\"ok\":true,\"township\":{\"code\":");
        json_str(stdout, code);
        printf(",\"name\":");
        json_str(stdout, name);
        printf("}}\n");
    } else {
        printf("township %s (%s) created\n", code, name);
    }
    return SRV_EXIT_OK;
}

int cmd_township_list(admin_ctx *a)
{
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db,
                           "SELECT t.code, t.name, (SELECT count(*) FROM srv_villages v "
                           "WHERE v.township = t.code) FROM srv_townships t ORDER BY t.code",
                           -1, &s, NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    if (a->json)
        printf("{\"ok\":true,\"townships\":[");
    int n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *code = (const char *)sqlite3_column_text(s, 0);
        const char *name = (const char *)sqlite3_column_text(s, 1);
        int villages = sqlite3_column_int(s, 2);
        if (a->json) {
            printf("%s{\"code\":", n ? "," : "");
            json_str(stdout, code);
            printf(",\"name\":");
            json_str(stdout, name);
            printf(",\"villages\":%d}", villages);
        } else {
            printf("%-20s %-30s %d villages\n", code, name, villages);
        }
        n++;
    }
    sqlite3_finalize(s);
    if (a->json)
        printf("]}\n");
    return rc == SQLITE_DONE ? SRV_EXIT_OK
                             : admin_fail(a, SRV_EXIT_STORE, "%s: read failed", a->db_path);
}

int cmd_village_add(admin_ctx *a)
{
    const char *code = a->pos[0], *name = a->pos[1], *town = admin_opt(a, "township");
    if (!town)
        return admin_fail(a, SRV_EXIT_USAGE, "village add wants --township T (usage: village "
                                             "add %s)",
                          a->usage);
    int rc = check_code_name(a, "village", code, name);
    if (rc || (rc = admin_db(a, false)))
        return rc;
    if (!srvdb_township_exists(a->db, town))
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no township '%s': create it with fieldsyncd admin township add %s NAME",
                          town, town);
    if ((rc = admin_begin(a)))
        return rc;
    const char *what;
    if (code_taken(a, code, &what)) {
        admin_rollback(a);
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "'%s' already exists as a %s: township and village codes are unique",
                          code, what);
    }
    if ((rc = insert(a,
                     "INSERT INTO srv_villages(code, township, name, created_ms) "
                     "VALUES (?1, ?2, ?3, ?4)",
                     code, town, name))) {
        admin_rollback(a);
        return rc;
    }
    if ((rc = admin_commit(a)))
        return rc;
    if (a->json) {
        printf("{\"ok\":true,\"village\":{\"code\":");
        json_str(stdout, code);
        printf(",\"township\":");
        json_str(stdout, town);
        printf(",\"name\":");
        json_str(stdout, name);
        printf("}}\n");
    } else {
        printf("village %s (%s) created in township %s\n", code, name, town);
    }
    return SRV_EXIT_OK;
}

int cmd_village_list(admin_ctx *a)
{
    const char *town = admin_opt(a, "township");
    int rc = admin_db(a, false);
    if (rc)
        return rc;
    if (town && !srvdb_township_exists(a->db, town))
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no township '%s': see fieldsyncd admin township list", town);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(a->db,
                           "SELECT code, township, name FROM srv_villages "
                           "WHERE ?1 IS NULL OR township = ?1 ORDER BY township, code",
                           -1, &s, NULL))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    if (town)
        sqlite3_bind_text(s, 1, town, -1, SQLITE_STATIC);
    if (a->json)
        printf("{\"ok\":true,\"villages\":[");
    int n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *code = (const char *)sqlite3_column_text(s, 0);
        const char *t = (const char *)sqlite3_column_text(s, 1);
        const char *name = (const char *)sqlite3_column_text(s, 2);
        if (a->json) {
            printf("%s{\"code\":", n ? "," : "");
            json_str(stdout, code);
            printf(",\"township\":");
            json_str(stdout, t);
            printf(",\"name\":");
            json_str(stdout, name);
            printf("}");
        } else {
            printf("%-20s %-20s %s\n", code, t, name);
        }
        n++;
    }
    sqlite3_finalize(s);
    if (a->json)
        printf("]}\n");
    return rc == SQLITE_DONE ? SRV_EXIT_OK
                             : admin_fail(a, SRV_EXIT_STORE, "%s: read failed", a->db_path);
}

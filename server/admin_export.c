/*
 * admin_export.c — `export TOWNSHIP [--out FILE] [--type TYPE]`: the township's ledger as CSV.
 *
 * The 信息台账 a township keeps on paper or in a spreadsheet, from the live store: one row per
 * record of TYPE in the township's villages, current values (the merged state, not the
 * history). Entirely driven by the schema — no type or field name appears in this file:
 *   TYPE       --type, or the first type of the schema with its own `kind: scope` field
 *              (in schema v1: child)
 *   columns    id, then the scope field, then every other field in schema order, headed by
 *              field names
 *   values     text as is; enum by its zh label (code if none); set as zh labels joined by
 *              "、"; bool 是/否; date YYYY-MM-DD; time local "YYYY-MM-DD HH:MM:SS"; ref and id
 *              as uuid text; never-set fields empty
 * Encoding: UTF-8 with a byte-order mark (so spreadsheet programs read the Chinese right),
 * RFC 4180 quoting, CRLF line ends. With --out the file is written to FILE.tmp-PID, fsynced
 * and renamed: a reader never sees half an export.
 *
 * It reads the engine's records table to find the township's records (store.h has no
 * record listing yet) and the engine's field state through store_field_get().
 */
#include "admin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void csv_field(FILE *f, const char *s, size_t n, bool first)
{
    if (!first)
        fputc(',', f);
    bool quote = n && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        fwrite(s, 1, n, f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

static const char *enum_label(const schema_field *fd, int64_t i)
{
    if (i < 0 || i >= (int64_t)fd->n_values)
        return "?";
    const enum_value *v = &fd->values[i];
    return v->zh ? v->zh : v->code;
}

/* Formats v (of field fd) into b. */
static void format_value(const schema_field *fd, const fs_value *v, strbuf *b)
{
    char tmp[64];
    switch (v->kind) {
    case VAL_NIL: return;
    case VAL_STR: sb_append(b, v->u.s.p, v->u.s.len); return;
    case VAL_BOOL: sb_printf(b, "%s", v->u.b ? "是" : "否"); return;
    case VAL_REF:
        rid_to_text(&v->u.ref, tmp);
        sb_printf(b, "%s", tmp);
        return;
    case VAL_SET: {
        bool any = false;
        for (uint32_t i = 0; i < fd->n_values && i < 64; i++)
            if (v->u.set.add >> i & 1) {
                sb_printf(b, "%s%s", any ? "、" : "", enum_label(fd, i));
                any = true;
            }
        return;
    }
    case VAL_INT:
        switch (fd->kind) {
        case KIND_ENUM: sb_printf(b, "%s", enum_label(fd, v->u.i)); return;
        case KIND_DATE:
            sb_printf(b, "%04lld-%02lld-%02lld", (long long)(v->u.i / 10000),
                      (long long)(v->u.i / 100 % 100), (long long)(v->u.i % 100));
            return;
        case KIND_TIME: {
            time_t t = (time_t)v->u.i;
            struct tm tm;
            localtime_r(&t, &tm);
            strftime(tmp, sizeof tmp, "%Y-%m-%d %H:%M:%S", &tm);
            sb_printf(b, "%s", tmp);
            return;
        }
        default: sb_printf(b, "%lld", (long long)v->u.i); return;
        }
    }
}

static const schema_type *export_type(admin_ctx *a, const char *name)
{
    if (name)
        return schema_type_by_name(a->schema, name);
    for (uint32_t i = 0; i < a->schema->n_types; i++) {
        const schema_type *t = &a->schema->types[i];
        const schema_field *f = t->scope_field ? schema_field_by_num(t, t->scope_field) : NULL;
        if (f && f->kind == KIND_SCOPE)
            return t;
    }
    return NULL;
}

/* Writes the CSV; returns rows written or -1. */
static long write_csv(admin_ctx *a, store *st, const schema_type *t, const char *town, FILE *f)
{
    const schema_field *scope_f = schema_field_by_num(t, t->scope_field);
    fputs("\xEF\xBB\xBF", f);
    csv_field(f, "id", 2, true);
    csv_field(f, scope_f->name, strlen(scope_f->name), false);
    for (uint32_t i = 0; i < t->n_fields; i++)
        if (&t->fields[i] != scope_f)
            csv_field(f, t->fields[i].name, strlen(t->fields[i].name), false);
    fputs("\r\n", f);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(store_db(st),
                           "SELECT r.id, r.scope FROM records r JOIN srv_villages v "
                           "ON v.code = r.scope WHERE r.type = ?1 AND v.township = ?2 "
                           "ORDER BY r.scope, r.id",
                           -1, &s, NULL))
        return -1;
    sqlite3_bind_int(s, 1, t->id);
    sqlite3_bind_text(s, 2, town, -1, SQLITE_STATIC);
    long rows = 0;
    int rc;
    strbuf b = {0};
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        rid_t id;
        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        memcpy(id.b, sqlite3_column_blob(s, 0), 16);
        char text[RID_TEXT_LEN + 1];
        rid_to_text(&id, text);
        csv_field(f, text, strlen(text), true);
        const char *scope = (const char *)sqlite3_column_text(s, 1);
        csv_field(f, scope, strlen(scope), false);
        for (uint32_t i = 0; i < t->n_fields; i++) {
            const schema_field *fd = &t->fields[i];
            if (fd == scope_f)
                continue;
            field_state fs;
            b.len = 0;
            if (b.p)
                b.p[0] = '\0';
            if (store_field_get(st, &id, fd->num, &fs) == 0)
                format_value(fd, &fs.value, &b);
            field_state_destroy(&fs);
            csv_field(f, b.p ? b.p : "", b.len, false);
        }
        fputs("\r\n", f);
        rows++;
    }
    sb_free(&b);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? rows : -1;
}

int cmd_export(admin_ctx *a)
{
    const char *town = a->pos[0], *out = admin_opt(a, "out");
    if (a->json && !out)
        return admin_fail(a, SRV_EXIT_USAGE,
                          "with --json give --out FILE: the CSV cannot share stdout with JSON");
    int rc;
    if ((rc = admin_schema(a)) || (rc = admin_db(a, false)))
        return rc;
    if (!srvdb_township_exists(a->db, town))
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no township '%s': see fieldsyncd admin township list", town);
    const schema_type *t = export_type(a, admin_opt(a, "type"));
    if (!t || !t->scope_field)
        return admin_fail(a, SRV_EXIT_USAGE,
                          "no record type '%s' with a village in schema version %d",
                          admin_opt(a, "type") ? admin_opt(a, "type") : "(default)",
                          a->schema->version);
    store *st;
    fs_error e = {0};
    if (store_open(a->db_path, a->schema, STORE_AUTHORITY, &st, &e))
        return admin_fail(a, SRV_EXIT_STORE, "%s", e.msg);
    FILE *f = stdout;
    char tmp[4096] = "";
    if (out) {
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
        f = fopen(tmp, "wb");
        if (!f) {
            rc = admin_fail(a, SRV_EXIT_STORE, "cannot create %s: %s", tmp, strerror(errno));
            goto done;
        }
    }
    long rows = write_csv(a, st, t, town, f);
    if (out) {
        bool ok = rows >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp, out)) {
            unlink(tmp);
            rc = admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", out,
                            rows < 0 ? sqlite3_errmsg(store_db(st)) : strerror(errno));
            goto done;
        }
    } else if (rows < 0) {
        rc = admin_fail(a, SRV_EXIT_STORE, "export failed: %s", sqlite3_errmsg(store_db(st)));
        goto done;
    }
    if (a->json) {
        printf("{\"ok\":true,\"township\":");
        json_str(stdout, town);
        printf(",\"type\":");
        json_str(stdout, t->name);
        printf(",\"rows\":%ld,\"out\":", rows);
        json_str(stdout, out);
        printf("}\n");
    } else if (out) {
        fprintf(stderr, "%ld %s records of township %s written to %s\n", rows, t->name, town,
                out);
    }
    rc = SRV_EXIT_OK;
done:
    /* the admin never persists the clock: the daemon owns it (store_close saves a non-zero
     * clock, which could write back an older value than the running daemon's) */
    store_clock(st)->last = 0;
    store_close(st);
    return rc;
}

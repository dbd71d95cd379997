/*
 * ledger_csv.c — the ledger as CSV, one implementation for the page's downloads
 * (GET /api/export/{ledger,overdue}.csv, web_ledger.c) and the admin commands (`admin export`,
 * `admin export-overdue`, admin_export.c).
 *
 * Encoding: UTF-8 with a byte-order mark (spreadsheet programs then read the Chinese right),
 * RFC 4180 quoting, CRLF line ends. Values for people: enum and set values by their Chinese
 * label (the code when there is none), sets joined by "、", booleans 是/否, dates
 * YYYY-MM-DD, times in the server's local time "YYYY-MM-DD HH:MM:SS", references as uuid
 * text. No type or field name is written here: headers come from the schema's names and
 * labels and the columns from the ledger configuration.
 */
#include "ledger.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void csv_field(FILE *f, const char *s, size_t n, bool first)
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

static void csv_str(FILE *f, const char *s, bool first)
{
    csv_field(f, s ? s : "", s ? strlen(s) : 0, first);
}

static const char *enum_label(const schema_field *fd, int64_t i, bool en)
{
    if (i < 0 || i >= (int64_t)fd->n_values)
        return "?";
    const enum_value *v = &fd->values[i];
    const char *l = en ? v->en : v->zh;
    return l ? l : v->code;
}

/* Appends printf output to (buf, cap) after what it holds. */
static void cat(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    if (n + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

void ledger_value_text(const schema_field *fd, const fs_value *v, bool en, char *buf, size_t cap)
{
    char tmp[64];
    switch (v->kind) {
    case VAL_NIL: return;
    case VAL_STR: cat(buf, cap, "%.*s", (int)v->u.s.len, v->u.s.p); return;
    case VAL_BOOL: cat(buf, cap, "%s", v->u.b ? (en ? "Yes" : "是") : (en ? "No" : "否")); return;
    case VAL_REF:
        rid_to_text(&v->u.ref, tmp);
        cat(buf, cap, "%s", tmp);
        return;
    case VAL_SET: {
        bool any = false;
        for (uint32_t i = 0; i < fd->n_values && i < 64; i++)
            if (v->u.set.add >> i & 1) {
                cat(buf, cap, "%s%s", any ? (en ? ", " : "、") : "", enum_label(fd, i, en));
                any = true;
            }
        return;
    }
    case VAL_INT:
        switch (fd->kind) {
        case KIND_ENUM: cat(buf, cap, "%s", enum_label(fd, v->u.i, en)); return;
        case KIND_DATE:
            cat(buf, cap, "%04lld-%02lld-%02lld", (long long)(v->u.i / 10000),
                (long long)(v->u.i / 100 % 100), (long long)(v->u.i % 100));
            return;
        case KIND_TIME: {
            time_t t = (time_t)v->u.i;
            struct tm tm;
            localtime_r(&t, &tm);
            strftime(tmp, sizeof tmp, "%Y-%m-%d %H:%M:%S", &tm);
            cat(buf, cap, "%s", tmp);
            return;
        }
        default: cat(buf, cap, "%lld", (long long)v->u.i); return;
        }
    }
}

static int cmp_rid(const void *a, const void *b) { return rid_cmp(a, b); }

long csv_write_records(FILE *f, store *st, const schema_type *t, const ledger_scope *sc)
{
    const schema_field *scope_f = schema_field_by_num(t, t->scope_field);
    if (!scope_f)
        return -1;
    fputs("\xEF\xBB\xBF", f);
    csv_field(f, "id", 2, true);
    csv_str(f, scope_f->name, false);
    for (uint32_t i = 0; i < t->n_fields; i++)
        if (&t->fields[i] != scope_f)
            csv_str(f, t->fields[i].name, false);
    fputs("\r\n", f);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(store_db(st),
                           "SELECT id FROM records WHERE type = ?1 AND scope = ?2 ORDER BY id",
                           -1, &s, NULL))
        return -1;
    long rows = 0;
    int rc = SQLITE_DONE;
    size_t cap = 70000;
    char *buf = malloc(cap);
    if (!buf) {
        sqlite3_finalize(s);
        return -1;
    }
    /* villages in code order: the same order as ORDER BY scope, id over the township */
    for (uint32_t v = 0; v < sc->n && rc == SQLITE_DONE; v++) {
        sqlite3_reset(s);
        sqlite3_bind_int(s, 1, t->id);
        sqlite3_bind_text(s, 2, sc->codes[v], -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            rid_t id;
            if (sqlite3_column_bytes(s, 0) != 16)
                continue;
            memcpy(id.b, sqlite3_column_blob(s, 0), 16);
            if (sc->only && !bsearch(&id, sc->only, sc->n_only, sizeof id, cmp_rid))
                continue;
            char text[RID_TEXT_LEN + 1];
            rid_to_text(&id, text);
            csv_str(f, text, true);
            csv_str(f, sc->codes[v], false);
            for (uint32_t i = 0; i < t->n_fields; i++) {
                const schema_field *fd = &t->fields[i];
                if (fd == scope_f)
                    continue;
                field_state fs;
                buf[0] = '\0';
                if (store_field_get(st, &id, fd->num, &fs) == 0)
                    ledger_value_text(fd, &fs.value, false, buf, cap);
                field_state_destroy(&fs);
                csv_str(f, buf, false);
            }
            fputs("\r\n", f);
            rows++;
        }
    }
    free(buf);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? rows : -1;
}

static void day_text(int64_t ms, char *buf, size_t cap)
{
    if (!ms) {
        snprintf(buf, cap, "%s", "");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d", &tm);
}

static int cmp_due(const void *a, const void *b)
{
    const ledger_subject *x = *(const ledger_subject *const *)a;
    const ledger_subject *y = *(const ledger_subject *const *)b;
    if (x->due_ms != y->due_ms)
        return x->due_ms < y->due_ms ? -1 : 1;
    return rid_cmp(&x->id, &y->id);
}

long csv_write_overdue(FILE *f, const ledger_cfg *cfg, const ledger *l)
{
    const char *lv = cfg->s_village->label_zh ? cfg->s_village->label_zh : cfg->s_village->name;
    fputs("\xEF\xBB\xBF", f);
    csv_str(f, lv, true);
    csv_str(f, "村(居)代码", false);
    csv_str(f, "档案编号", false);
    csv_str(f, cfg->s_name->label_zh ? cfg->s_name->label_zh : cfg->s_name->name, false);
    csv_str(f, cfg->s_risk->label_zh ? cfg->s_risk->label_zh : cfg->s_risk->name, false);
    csv_str(f, cfg->s_status->label_zh ? cfg->s_status->label_zh : cfg->s_status->name, false);
    csv_str(f, "最近走访日期", false);
    csv_str(f, "最近走访人", false);
    csv_str(f, "走访间隔(天)", false);
    csv_str(f, "应走访日期", false);
    csv_str(f, "逾期天数", false);
    fputs("\r\n", f);
    const ledger_subject **rows = malloc((l->n_overdue ? l->n_overdue : 1) * sizeof *rows);
    if (!rows)
        return -1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < l->n_subjects; i++)
        if (l->subjects[i].overdue)
            rows[n++] = &l->subjects[i];
    qsort(rows, n, sizeof *rows, cmp_due);
    for (uint32_t i = 0; i < n; i++) {
        const ledger_subject *x = rows[i];
        const ledger_village *v = &l->villages[x->village];
        char id[RID_TEXT_LEN + 1], tmp[64];
        rid_to_text(&x->id, id);
        csv_str(f, v->name[0] ? v->name : v->code, true);
        csv_str(f, v->code, false);
        csv_str(f, id, false);
        csv_str(f, x->name, false);
        csv_str(f, x->risk >= 0 ? enum_label(cfg->s_risk, x->risk, false) : "", false);
        csv_str(f, x->status >= 0 ? enum_label(cfg->s_status, x->status, false) : "", false);
        day_text(x->last_visit_ms, tmp, sizeof tmp);
        csv_str(f, x->last_visit_ms ? tmp : "从未走访", false);
        csv_str(f, x->last_visitor ? x->last_visitor : "", false);
        snprintf(tmp, sizeof tmp, "%d", x->interval_days);
        csv_str(f, tmp, false);
        day_text(x->due_ms, tmp, sizeof tmp);
        csv_str(f, tmp, false);
        snprintf(tmp, sizeof tmp, "%lld",
                 (long long)((l->now_ms - x->due_ms) / (86400LL * 1000)));
        csv_str(f, tmp, false);
        fputs("\r\n", f);
    }
    free(rows);
    return n;
}

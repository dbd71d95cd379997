/*
 * text.c — field values to and from text, for people (display text), scripts (JSON) and the
 * command line (parsing "name=value"). The schema gives the kind; nothing here knows a
 * record type. Dates are YYYY-MM-DD, times local "YYYY-MM-DD HH:MM:SS", enums and sets their
 * codes (the stable identifiers of schema/fieldsync.yaml, not the translated labels).
 * Text passes through as UTF-8 (Chinese in, Chinese out); JSON escapes only what JSON must.
 */
#include "internal.h"

#include "mpr.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- string buffer --------------------------------------------------------------------- */

int sb_putn(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return FIELDSYNC_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int sb_puts(strbuf *b, const char *s) { return sb_putn(b, s, strlen(s)); }

int sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return FIELDSYNC_EINVAL;
    if ((size_t)n < sizeof tmp)
        return sb_putn(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return FIELDSYNC_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sb_putn(b, big, (size_t)n);
    free(big);
    return rc;
}

int sb_json_str(strbuf *b, const char *s, size_t n)
{
    int rc = sb_putn(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = sb_putn(b, s + run, i - run);
        run = i + 1;
        if (rc)
            break;
        switch (c) {
        case '"': rc = sb_puts(b, "\\\""); break;
        case '\\': rc = sb_puts(b, "\\\\"); break;
        case '\n': rc = sb_puts(b, "\\n"); break;
        case '\r': rc = sb_puts(b, "\\r"); break;
        case '\t': rc = sb_puts(b, "\\t"); break;
        default: rc = sb_printf(b, "\\u%04x", c);
        }
    }
    if (!rc)
        rc = sb_putn(b, s + run, n - run);
    return rc ? rc : sb_putn(b, "\"", 1);
}

void sb_free(strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- values to text ---------------------------------------------------------------------- */

static int time_text(strbuf *b, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[64];
    if (!localtime_r(&tt, &tm))
        return sb_printf(b, "%lld", (long long)t);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return sb_puts(b, buf);
}

int value_text(strbuf *b, const schema_field *f, const fs_value *v)
{
    char id[RID_TEXT_LEN + 1];
    switch (v->kind) {
    case VAL_NIL: return sb_puts(b, "");
    case VAL_BOOL: return sb_puts(b, v->u.b ? "true" : "false");
    case VAL_STR: return sb_putn(b, v->u.s.p, v->u.s.len);
    case VAL_REF: rid_to_text(&v->u.ref, id); return sb_puts(b, id);
    case VAL_SET: {
        int rc = 0;
        bool first = true;
        for (uint32_t i = 0; i < f->n_values && i < 64 && !rc; i++) {
            if (!(v->u.set.add >> i & 1))
                continue;
            rc = sb_printf(b, "%s%s", first ? "" : ",", f->values[i].code);
            first = false;
        }
        for (uint32_t i = 0; i < f->n_values && i < 64 && !rc; i++) {
            if (!(v->u.set.rm >> i & 1))
                continue;
            rc = sb_printf(b, "%s-%s", first ? "" : ",", f->values[i].code);
            first = false;
        }
        return rc;
    }
    case VAL_INT:
        switch (f->kind) {
        case KIND_ENUM:
            if (v->u.i >= 0 && v->u.i < (int64_t)f->n_values)
                return sb_puts(b, f->values[v->u.i].code);
            return sb_printf(b, "#%lld", (long long)v->u.i);
        case KIND_DATE:
            return sb_printf(b, "%04lld-%02lld-%02lld", (long long)(v->u.i / 10000),
                             (long long)(v->u.i / 100 % 100), (long long)(v->u.i % 100));
        case KIND_TIME: return time_text(b, v->u.i);
        default: return sb_printf(b, "%lld", (long long)v->u.i);
        }
    }
    return 0;
}

int value_json(strbuf *b, const schema_field *f, const fs_value *v)
{
    switch (v->kind) {
    case VAL_NIL: return sb_puts(b, "null");
    case VAL_BOOL: return sb_puts(b, v->u.b ? "true" : "false");
    case VAL_INT:
        if (f->kind == KIND_INT || f->kind == KIND_TIME)
            return sb_printf(b, "%lld", (long long)v->u.i);
        __attribute__((fallthrough)); /* enum codes and dates as strings */
    default: {
        strbuf t = {0};
        int rc = value_text(&t, f, v);
        if (!rc && v->kind == VAL_SET) {
            /* a set as an array of codes */
            rc = sb_putn(b, "[", 1);
            const char *p = t.p ? t.p : "";
            bool first = true;
            while (*p && !rc) {
                const char *q = strchr(p, ',');
                size_t n = q ? (size_t)(q - p) : strlen(p);
                if (!first)
                    rc = sb_putn(b, ",", 1);
                if (!rc)
                    rc = sb_json_str(b, p, n);
                first = false;
                p += n + (q != NULL);
            }
            if (!rc)
                rc = sb_putn(b, "]", 1);
        } else if (!rc) {
            rc = sb_json_str(b, t.p ? t.p : "", t.len);
        }
        sb_free(&t);
        return rc;
    }
    }
}

/* ---- text to values ---------------------------------------------------------------------- */

static bool parse_i64(const char *s, int64_t *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_date(const char *s, int64_t *out)
{
    int y, m, d;
    char tail;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3 ||
        (strlen(s) == 8 && sscanf(s, "%4d%2d%2d%c", &y, &m, &d, &tail) == 3)) {
        *out = (int64_t)y * 10000 + m * 100 + d;
        return date_valid(*out);
    }
    return false;
}

static bool parse_time(const char *s, int64_t *out)
{
    if (!strcmp(s, "now")) {
        *out = (int64_t)time(NULL);
        return true;
    }
    if (parse_i64(s, out))
        return true;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0, sec = 0;
    if (sscanf(s, "%4d-%2d-%2d%*[T ]%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &n) == 5) {
        if (s[n] == ':' && sscanf(s + n + 1, "%2d", &sec) == 1)
            n += 3;
        if (s[n])
            return false;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        tm.tm_sec = sec;
        tm.tm_isdst = -1;
        time_t t = mktime(&tm);
        if (t == (time_t)-1)
            return false;
        *out = (int64_t)t;
        return true;
    }
    return false;
}

static int bad_value(fieldsync_db *db, const schema_field *f, const char *text, const char *want)
{
    return sdk_fail(db, FIELDSYNC_EVALUE, "field '%s': '%s' is not %s", f->name, text, want);
}

static int enum_codes(fieldsync_db *db, const schema_field *f, const char *text)
{
    strbuf b = {0};
    for (uint32_t i = 0; i < f->n_values; i++)
        sb_printf(&b, "%s%s", i ? ", " : "", f->values[i].code);
    sdk_fail(db, FIELDSYNC_EVALUE, "field '%s' has no value '%s' (one of: %s)", f->name, text,
             b.p ? b.p : "");
    sb_free(&b);
    return FIELDSYNC_EVALUE;
}

int value_parse(fieldsync_db *db, const schema_field *f, const char *text, fs_value *v)
{
    memset(v, 0, sizeof *v);
    switch (f->kind) {
    case KIND_TEXT:
    case KIND_SCOPE:
        v->kind = VAL_STR;
        v->u.s.p = text;
        v->u.s.len = (uint32_t)strlen(text);
        return 0;
    case KIND_INT:
        v->kind = VAL_INT;
        return parse_i64(text, &v->u.i) ? 0 : bad_value(db, f, text, "an integer");
    case KIND_DATE:
        v->kind = VAL_INT;
        return parse_date(text, &v->u.i) ? 0 : bad_value(db, f, text, "a date YYYY-MM-DD");
    case KIND_TIME:
        v->kind = VAL_INT;
        return parse_time(text, &v->u.i)
                   ? 0
                   : bad_value(db, f, text, "a time (Unix seconds, now, YYYY-MM-DDTHH:MM[:SS])");
    case KIND_BOOL:
        v->kind = VAL_BOOL;
        if (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "1") ||
            !strcmp(text, "是"))
            v->u.b = true;
        else if (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "0") ||
                 !strcmp(text, "否"))
            v->u.b = false;
        else
            return bad_value(db, f, text, "true or false");
        return 0;
    case KIND_ENUM: {
        int i = schema_enum_by_code(f, text);
        if (i < 0)
            return enum_codes(db, f, text);
        v->kind = VAL_INT;
        v->u.i = i;
        return 0;
    }
    case KIND_REF:
        v->kind = VAL_REF;
        if (rid_from_text(text, &v->u.ref) || rid_is_zero(&v->u.ref))
            return bad_value(db, f, text, "a record id");
        return 0;
    case KIND_SET: {
        v->kind = VAL_SET;
        const char *p = text;
        while (*p) {
            const char *q = strchr(p, ',');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            bool rm = n && *p == '-';
            bool add = n && *p == '+';
            char code[64];
            size_t skip = rm || add;
            if (n - skip == 0 || n - skip >= sizeof code)
                return bad_value(db, f, text, "a comma list of codes");
            memcpy(code, p + skip, n - skip);
            code[n - skip] = '\0';
            int i = schema_enum_by_code(f, code);
            if (i < 0 || i >= 64)
                return enum_codes(db, f, code);
            if (rm) {
                v->u.set.rm |= 1ull << i;
                v->u.set.add &= ~(1ull << i);
            } else {
                v->u.set.add |= 1ull << i;
                v->u.set.rm &= ~(1ull << i);
            }
            p += n + (q != NULL);
        }
        if (!v->u.set.add && !v->u.set.rm)
            return bad_value(db, f, text, "a comma list of codes");
        return 0;
    }
    }
    return sdk_fail(db, FIELDSYNC_EFIELD, "field '%s' has an unknown kind", f->name);
}

int change_summary(fieldsync_db *db, const void *body, size_t len, strbuf *out,
                   const schema_type **type, rid_t *record)
{
    change *c = malloc(sizeof *c);
    if (!c)
        return FIELDSYNC_ENOMEM;
    mpr r;
    fs_error e = {0};
    mpr_init(&r, body, len);
    int rc = change_unpack(&r, db->s, false, c, &e);
    if (rc) {
        free(c);
        return sdk_from_fs(db, rc, &e);
    }
    const schema_type *t = schema_type_by_id(db->s, c->type);
    if (type)
        *type = t;
    if (record)
        *record = c->record;
    for (uint32_t i = 0; i < c->n_fields && !rc; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        rc = sb_printf(out, "%s%s=", i ? ", " : "", f->name);
        if (!rc)
            rc = value_text(out, f, &c->fields[i].v);
    }
    if (!rc && !out->p)
        rc = sb_puts(out, "");
    free(c);
    return rc;
}

/*
 * web_json.c — JSON out (escaped strings, field values) and a small reader for the flat
 * JSON objects the page posts ({"user": "...", "password": "..."}, {"value": "a"}).
 *
 * Escaping: besides what JSON requires, '<', '>', '&', U+2028 and U+2029 are written as
 * \u escapes, so that a child named "<script>" stays inert even if a JSON text were ever
 * placed inside HTML. The page itself never parses data as markup (textContent only).
 *
 * The reader is deliberately not a general JSON parser: bodies are capped (64 KiB) and only
 * an object of string, number, true, false and null members is accepted; nested values are
 * refused. That is all the API takes, and it keeps untrusted input handling small.
 */
#include "web.h"

#include "mpr.h"

#include <stdio.h>
#include <string.h>

void json_sn(strbuf *b, const char *s, size_t n)
{
    sb_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* bytes copied as they are, flushed in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char tmp[8];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            esc = tmp;
        } else if (c == 0xe2 && i + 2 < n && p[i + 1] == 0x80 &&
                   (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
            esc = p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
            sb_append(b, s + i - run, run);
            run = 0;
            sb_append(b, esc, strlen(esc));
            i += 2;
            continue;
        }
        if (esc) {
            sb_append(b, s + i - run, run);
            run = 0;
            sb_append(b, esc, strlen(esc));
        } else {
            run++;
        }
    }
    sb_append(b, s + n - run, run);
    sb_append(b, "\"", 1);
}

void json_s(strbuf *b, const char *s)
{
    if (!s)
        sb_append(b, "null", 4);
    else
        json_sn(b, s, strlen(s));
}

void json_id(strbuf *b, const rid_t *id)
{
    char t[RID_TEXT_LEN + 1];
    rid_to_text(id, t);
    json_s(b, t);
}

void json_label(strbuf *b, const char *zh, const char *en)
{
    sb_printf(b, "{\"zh\":");
    json_s(b, zh);
    sb_printf(b, ",\"en\":");
    json_s(b, en);
    sb_append(b, "}", 1);
}

void json_value(strbuf *b, const schema_field *f, const fs_value *v)
{
    switch (v->kind) {
    case VAL_NIL: sb_append(b, "null", 4); return;
    case VAL_STR: json_sn(b, v->u.s.p, v->u.s.len); return;
    case VAL_BOOL: sb_printf(b, "%s", v->u.b ? "true" : "false"); return;
    case VAL_REF: json_id(b, &v->u.ref); return;
    case VAL_SET: {
        sb_append(b, "[", 1);
        bool any = false;
        for (uint32_t i = 0; i < f->n_values && i < 64; i++)
            if (v->u.set.add >> i & 1) {
                if (any)
                    sb_append(b, ",", 1);
                json_s(b, f->values[i].code);
                any = true;
            }
        sb_append(b, "]", 1);
        return;
    }
    case VAL_INT:
        switch (f->kind) {
        case KIND_ENUM:
            if (v->u.i >= 0 && v->u.i < (int64_t)f->n_values)
                json_s(b, f->values[v->u.i].code);
            else
                sb_append(b, "null", 4);
            return;
        case KIND_DATE:
            sb_printf(b, "\"%04lld-%02lld-%02lld\"", (long long)(v->u.i / 10000),
                      (long long)(v->u.i / 100 % 100), (long long)(v->u.i % 100));
            return;
        case KIND_TIME: sb_printf(b, "%lld", (long long)v->u.i * 1000); return;
        default: sb_printf(b, "%lld", (long long)v->u.i); return;
        }
    }
    sb_append(b, "null", 4);
}

void json_stored(strbuf *b, const schema_field *f, const void *buf, size_t len)
{
    fs_value v;
    if (value_unpack_stored(f, buf, len, &v))
        sb_append(b, "null", 4);
    else
        json_value(b, f, &v);
}

/* ---- reading a flat object ---------------------------------------------------------- */

typedef struct jr {
    const uint8_t *p, *end;
} jr;

static void ws(jr *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(jr *r, unsigned *out)
{
    if (r->end - r->p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = r->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    r->p += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads a string at r into out (when out is not NULL; cap includes the NUL). */
static int jstring(jr *r, char *out, size_t cap, size_t *n_out)
{
    if (r->p >= r->end || *r->p != '"')
        return -1;
    r->p++;
    size_t n = 0;
    while (r->p < r->end && *r->p != '"') {
        char tmp[4];
        size_t k;
        uint8_t c = *r->p++;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            tmp[0] = (char)c;
            k = 1;
        } else {
            if (r->p >= r->end)
                return -1;
            c = *r->p++;
            switch (c) {
            case '"': case '\\': case '/': tmp[0] = (char)c; k = 1; break;
            case 'b': tmp[0] = '\b'; k = 1; break;
            case 'f': tmp[0] = '\f'; k = 1; break;
            case 'n': tmp[0] = '\n'; k = 1; break;
            case 'r': tmp[0] = '\r'; k = 1; break;
            case 't': tmp[0] = '\t'; k = 1; break;
            case 'u': {
                unsigned cp, lo;
                if (hex4(r, &cp))
                    return -1;
                if (cp >= 0xd800 && cp < 0xdc00) {
                    if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
                        return -1;
                    r->p += 2;
                    if (hex4(r, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return -1;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                    return -1;
                }
                if (cp == 0)
                    return -1; /* no NUL inside C strings */
                k = put_utf8(tmp, cp);
                break;
            }
            default: return -1;
            }
        }
        if (out) {
            if (n + k >= cap)
                return -1;
            memcpy(out + n, tmp, k);
        }
        n += k;
    }
    if (r->p >= r->end)
        return -1;
    r->p++;
    if (out) {
        out[n] = '\0';
        if (!utf8_valid(out, n))
            return -1;
    }
    if (n_out)
        *n_out = n;
    return 0;
}

/* Skips a scalar: number, true, false, null. */
static int jscalar(jr *r)
{
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(r->end - r->p) >= n && !memcmp(r->p, words[i], n)) {
            r->p += n;
            return 0;
        }
    }
    const uint8_t *s = r->p;
    while (r->p < r->end && ((*r->p >= '0' && *r->p <= '9') || *r->p == '-' || *r->p == '+' ||
                             *r->p == '.' || *r->p == 'e' || *r->p == 'E'))
        r->p++;
    return r->p > s ? 0 : -1;
}

int json_body_str(const uint8_t *body, size_t len, const char *key, char *out, size_t cap)
{
    jr r = {body, body + len};
    int found = FS_ENOTFOUND;
    ws(&r);
    if (r.p >= r.end || *r.p != '{')
        return FS_EDEC_TYPE;
    r.p++;
    ws(&r);
    if (r.p < r.end && *r.p == '}')
        return FS_ENOTFOUND;
    for (;;) {
        char name[64];
        ws(&r);
        if (jstring(&r, name, sizeof name, NULL))
            return FS_EDEC_TYPE;
        ws(&r);
        if (r.p >= r.end || *r.p != ':')
            return FS_EDEC_TYPE;
        r.p++;
        ws(&r);
        bool want = !strcmp(name, key) && found == FS_ENOTFOUND;
        if (r.p < r.end && *r.p == '"') {
            if (jstring(&r, want ? out : NULL, cap, NULL))
                return FS_EDEC_TYPE;
            if (want)
                found = 0;
        } else if (jscalar(&r) || want) {
            return FS_EDEC_TYPE; /* nested values, or the key is not a string */
        }
        ws(&r);
        if (r.p < r.end && *r.p == ',') {
            r.p++;
            continue;
        }
        if (r.p < r.end && *r.p == '}') {
            r.p++;
            ws(&r);
            return r.p == r.end ? found : FS_EDEC_TYPE;
        }
        return FS_EDEC_TYPE;
    }
}

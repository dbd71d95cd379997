/*
 * change.c — packing, unpacking and validating changes. See change.h for the wire forms.
 *
 * Decoding is strict in the order the fields appear: a truncated or oddly typed change fails
 * at the first bad byte with a code that says what was wrong, and a value the receiver's
 * schema does not know (type, field, enum value) is refused here, before any merge, so a
 * change is never applied half-way.
 */
#include "change.h"

#include "hlc.h"
#include "mpr.h"
#include "mpw.h"

#include <stddef.h>
#include <string.h>

/* Appends v to w; FS_EINVAL for a value of no kind. */
static int value_put(mpw *w, const fs_value *v)
{
    switch (v->kind) {
    case VAL_NIL: mpw_nil(w); break;
    case VAL_INT: mpw_int(w, v->u.i); break;
    case VAL_BOOL: mpw_bool(w, v->u.b); break;
    case VAL_STR: mpw_str(w, v->u.s.p, v->u.s.len); break;
    case VAL_REF: mpw_bin(w, v->u.ref.b, 16); break;
    case VAL_SET:
        mpw_array(w, 2);
        mpw_uint(w, v->u.set.add);
        mpw_uint(w, v->u.set.rm);
        break;
    default: return FS_EINVAL;
    }
    return 0;
}

int value_pack(msgpack_packer *pk, const fs_value *v)
{
    mpw w;
    mpw_init(&w, pk);
    int rc = value_put(&w, v);
    return mpw_end(&w) ? FS_ENOMEM : rc;
}

/* ---- compact clocks (push form) ------------------------------------------------------
 *
 * In the push form a clock is written as a difference in milliseconds from a reference the
 * change itself carries, so that it costs 1-5 bytes instead of 9 and depends on nothing
 * outside the change (no session, no batch: a re-sent change is the same bytes, which the
 * server's exactly-once check relies on for changes it could not decode):
 *   base  0 for a create; otherwise relative to the record id's timestamp (its first 48 bits,
 *         big-endian Unix ms): an edit based on the record's first version is about 0;
 *   hlc   relative to base's milliseconds, or to the id's for a create: the time since the
 *         version the author saw, or about 0 for a create.
 * A clock whose 16-bit counter is 0 and whose d is >= 0 is the bare uint d; otherwise
 * [d, counter], where d may be negative (a clock before its reference: a create stamped by a
 * clock behind its id's). Base with d = 0 and counter 0 is [0, 0] because 0 means create. A
 * bare negative int is refused. |d| < 2^48, so a uint >= 2^48 cannot be a difference: it is
 * read as the absolute clock (the full form's encoding), which any sender may use.
 * docs/protocol.md §3.1 is the normative text. */

#define CLOCK_MS_MAX ((1ull << 48) - 1)

typedef struct wclock {
    bool absolute; /* v is the clock itself */
    bool pair;     /* written as [d, counter] */
    uint64_t v;
    int64_t d;
    uint16_t counter;
} wclock;

static uint64_t rid_ms(const rid_t *id)
{
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id->b[i];
    return ms;
}

/* Packs clock relative to ref_ms; pair forces [d, counter] even when the counter is 0. */
static void pack_clock(mpw *w, uint64_t clock, uint64_t ref_ms, bool pair)
{
    int64_t d = (int64_t)hlc_physical_ms(clock) - (int64_t)ref_ms; /* both < 2^48 */
    uint16_t counter = (uint16_t)(clock & 0xffff);
    if (!counter && !pair && d >= 0) {
        mpw_uint(w, (uint64_t)d);
        return;
    }
    mpw_array(w, 2);
    mpw_int(w, d);
    mpw_uint(w, counter);
}

/* Reads a push-form clock. Returns 0, FS_EDEC_* (COUNT for a pair that is not two elements)
 * or FS_EVALUE_RANGE (a bare negative int, a difference beyond +-(2^48-1), a counter over
 * 65535); r is left anywhere on error. */
static int read_clock(mpr *r, wclock *w)
{
    uint32_t n;
    uint64_t cnt = 0;
    int rc;
    memset(w, 0, sizeof *w);
    w->pair = mpr_peek(r) == MPR_ARRAY;
    if (w->pair) {
        if ((rc = mpr_array(r, 2, &n)))
            return rc == FS_EDEC_TOOBIG ? FS_EDEC_COUNT : rc;
        if (n != 2)
            return FS_EDEC_COUNT;
    } else if (mpr_peek(r) == MPR_UINT) {
        if ((rc = mpr_u64(r, &w->v)))
            return rc;
        if (w->v > CLOCK_MS_MAX) {
            w->absolute = true;
            return 0;
        }
        w->d = (int64_t)w->v;
        return 0;
    }
    if ((rc = mpr_i64(r, &w->d)))
        return rc;
    if (!w->pair && w->d < 0) /* a negative difference is written as a pair */
        return FS_EVALUE_RANGE;
    if (w->pair && (rc = mpr_u64(r, &cnt)))
        return rc;
    if (cnt > 0xffff || w->d > (int64_t)CLOCK_MS_MAX || w->d < -(int64_t)CLOCK_MS_MAX)
        return FS_EVALUE_RANGE;
    w->counter = (uint16_t)cnt;
    return 0;
}

/* The clock w says relative to ref_ms: FS_EVALUE_RANGE when its millisecond leaves
 * 0..2^48-1. */
static int resolve_clock(uint64_t ref_ms, const wclock *w, uint64_t *clock)
{
    if (w->absolute) {
        *clock = w->v;
        return 0;
    }
    int64_t ms = (int64_t)ref_ms + w->d; /* |d| and ref_ms < 2^48: no overflow */
    if (ms < 0 || ms > (int64_t)CLOCK_MS_MAX)
        return FS_EVALUE_RANGE;
    *clock = hlc_make((uint64_t)ms, w->counter);
    return 0;
}

int change_pack(msgpack_packer *pk, const change *c, bool full)
{
    if (full && c->abbrev)
        return FS_EINVAL; /* the log, pulls and the ledger carry full ids only */
    uint32_t id_len = c->abbrev ? CHANGE_ABBREV_LEN : 16;
    mpw w;
    mpw_init(&w, pk);
    mpw_array(&w, full ? 9 : 6);
    mpw_uint(&w, c->type);
    mpw_bin(&w, c->record.b, id_len);
    if (full) { /* the log's form (sync/store.c reads it): absolute clocks */
        mpw_uint(&w, c->hlc);
        mpw_uint(&w, c->base);
    } else {
        uint64_t id_ms = rid_ms(&c->record);
        pack_clock(&w, c->hlc, c->base ? hlc_physical_ms(c->base) : id_ms, false);
        if (c->base)
            pack_clock(&w, c->base, id_ms, hlc_physical_ms(c->base) == id_ms);
        else
            mpw_uint(&w, 0);
    }
    mpw_uint(&w, c->dseq);
    if (full) {
        mpw_bin(&w, c->device.b, 16);
        mpw_str(&w, c->author, c->author_len);
        mpw_uint(&w, c->role);
    }
    mpw_map(&w, c->n_fields);
    int rc = 0;
    for (uint32_t i = 0; i < c->n_fields && !rc; i++) {
        mpw_uint(&w, c->fields[i].num);
        rc = value_put(&w, &c->fields[i].v);
    }
    return mpw_end(&w) ? FS_ENOMEM : rc;
}

static bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

bool date_valid(int64_t d)
{
    int64_t y = d / 10000, m = (d / 100) % 100, day = d % 100;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > 2199 || m < 1 || m > 12 || day < 1)
        return false;
    return day <= mdays[m - 1] + (m == 2 && leap(y));
}

/* value_validate; utf8 false skips the scan of text a reader has already checked. */
static int value_check(const schema_field *f, const fs_value *v, bool utf8, fs_error *e)
{
    if (v->kind == VAL_NIL) {
        if (f->required)
            return fs_error_set(e, FS_EREQUIRED, "field '%s' is required and cannot be cleared",
                                f->name);
        if (f->rule == RULE_SET)
            return fs_error_set(e, FS_EVALUE_TYPE, "set field '%s' takes [add, remove] masks",
                                f->name);
        return 0;
    }
    static const uint8_t want[] = {
        [KIND_TEXT] = VAL_STR, [KIND_INT] = VAL_INT,  [KIND_DATE] = VAL_INT,
        [KIND_TIME] = VAL_INT, [KIND_ENUM] = VAL_INT, [KIND_BOOL] = VAL_BOOL,
        [KIND_REF] = VAL_REF,  [KIND_SET] = VAL_SET,  [KIND_SCOPE] = VAL_STR};
    if (v->kind != want[f->kind])
        return fs_error_set(e, FS_EVALUE_TYPE, "field '%s' wants a %s value", f->name,
                            schema_kind_name(f->kind));
    switch (f->kind) {
    case KIND_TEXT:
    case KIND_SCOPE:
        if (v->u.s.len > f->max_len)
            return fs_error_set(e, FS_EVALUE_RANGE, "field '%s' is %u bytes, at most %u",
                                f->name, v->u.s.len, f->max_len);
        if (utf8 && !utf8_valid(v->u.s.p, v->u.s.len))
            return fs_error_set(e, FS_EDEC_UTF8, "field '%s' is not valid UTF-8", f->name);
        if (f->kind == KIND_SCOPE && v->u.s.len == 0)
            return fs_error_set(e, FS_EVALUE_RANGE, "field '%s' (scope) cannot be empty",
                                f->name);
        break;
    case KIND_INT:
        if (v->u.i < f->min || v->u.i > f->max)
            return fs_error_set(e, FS_EVALUE_RANGE, "field '%s' = %lld, allowed %lld..%lld",
                                f->name, (long long)v->u.i, (long long)f->min,
                                (long long)f->max);
        break;
    case KIND_DATE:
        if (!date_valid(v->u.i))
            return fs_error_set(e, FS_EVALUE_RANGE, "field '%s' = %lld is not a date YYYYMMDD",
                                f->name, (long long)v->u.i);
        break;
    case KIND_TIME:
        if (v->u.i < 0 || v->u.i > 7258118400LL) /* 2200-01-01 */
            return fs_error_set(e, FS_EVALUE_RANGE, "field '%s' = %lld is not a time",
                                f->name, (long long)v->u.i);
        break;
    case KIND_ENUM:
        if (v->u.i < 0 || v->u.i >= (int64_t)f->n_values)
            return fs_error_set(e, FS_EVALUE_ENUM, "field '%s' has no value %lld (%u known)",
                                f->name, (long long)v->u.i, f->n_values);
        break;
    case KIND_SET: {
        uint64_t known = f->n_values >= 64 ? ~0ull : ((1ull << f->n_values) - 1);
        if ((v->u.set.add | v->u.set.rm) & ~known)
            return fs_error_set(e, FS_EVALUE_ENUM, "field '%s' names unknown set values",
                                f->name);
        if (v->u.set.add & v->u.set.rm)
            return fs_error_set(e, FS_EVALUE_RANGE, "field '%s' adds and removes one value",
                                f->name);
        break;
    }
    case KIND_REF:
        if (rid_is_zero(&v->u.ref))
            return fs_error_set(e, FS_EBAD_ID, "field '%s' refers to the zero id", f->name);
        break;
    case KIND_BOOL: break;
    }
    return 0;
}

int value_validate(const schema_field *f, const fs_value *v, fs_error *e)
{
    return value_check(f, v, true, e);
}

/* change_validate; utf8 as for value_check. */
static int change_check(const schema *s, const change *c, bool utf8, fs_error *e)
{
    const schema_type *t = schema_type_by_id(s, c->type);
    if (!t)
        return fs_error_set(e, FS_EUNKNOWN_TYPE, "record type %u is not in schema version %d",
                            c->type, s->version);
    if (rid_is_zero(&c->record))
        return fs_error_set(e, FS_EBAD_ID, "record id is zero");
    if (c->role >= s->n_roles)
        return fs_error_set(e, FS_EROLE, "role %u unknown", c->role);
    if (c->hlc == 0 || c->base >= c->hlc)
        return fs_error_set(e, FS_EVALUE_RANGE, "clock %llu must be above base %llu",
                            (unsigned long long)c->hlc, (unsigned long long)c->base);
    if (c->dseq == 0)
        return fs_error_set(e, FS_EVALUE_RANGE, "device sequence starts at 1");
    if (c->n_fields == 0)
        return fs_error_set(e, FS_EDEC_MISSING, "a change needs at least one field");
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        if (!f)
            return fs_error_set(e, FS_EUNKNOWN_FIELD,
                                "field %u is not in type '%s' of schema version %d",
                                c->fields[i].num, t->name, s->version);
        if (i && c->fields[i].num <= c->fields[i - 1].num)
            return fs_error_set(e, FS_EDEC_TYPE,
                                "field %u ('%s') after field %u: fields must be in ascending "
                                "order, unique",
                                c->fields[i].num, f->name, c->fields[i - 1].num);
        int rc = value_check(f, &c->fields[i].v, utf8, e);
        if (rc)
            return rc;
    }
    return 0;
}

int change_validate(const schema *s, const change *c, fs_error *e)
{
    return change_check(s, c, true, e);
}

int change_recheck(const schema *s, const change *c, fs_error *e)
{
    return change_check(s, c, c->decoded_by != s, e);
}

/* The kind switch shared by value_unpack (received values: max_text is the field's max_len)
 * and value_unpack_stored (stored values: CHANGE_MAX_TEXT). Fills *v (kind set even on
 * error) and advances r; returns 0, an mpr error, FS_EVALUE_RANGE (text too long),
 * FS_EBAD_ID (a ref not 16 bytes) or FS_EDEC_COUNT (a set not [add, rm]). No validation. */
static int value_read(mpr *r, const schema_field *f, uint32_t max_text, fs_value *v)
{
    int rc = 0;
    memset(v, 0, sizeof *v);
    if (mpr_try_nil(r)) {
        v->kind = VAL_NIL;
        return 0;
    }
    switch (f->kind) {
    case KIND_TEXT:
    case KIND_SCOPE:
        v->kind = VAL_STR;
        rc = mpr_str(r, max_text, &v->u.s.p, &v->u.s.len);
        if (rc == FS_EDEC_TOOBIG)
            rc = FS_EVALUE_RANGE;
        break;
    case KIND_BOOL:
        v->kind = VAL_BOOL;
        rc = mpr_bool(r, &v->u.b);
        break;
    case KIND_REF: {
        const uint8_t *b;
        uint32_t n;
        v->kind = VAL_REF;
        rc = mpr_bin(r, 16, &b, &n);
        if (!rc && n != 16)
            rc = FS_EBAD_ID;
        if (rc == FS_EDEC_TOOBIG)
            rc = FS_EBAD_ID;
        if (!rc)
            memcpy(v->u.ref.b, b, 16);
        break;
    }
    case KIND_SET: {
        uint32_t n;
        v->kind = VAL_SET;
        rc = mpr_array(r, 2, &n);
        if (!rc && n != 2)
            rc = FS_EDEC_COUNT;
        if (!rc)
            rc = mpr_u64(r, &v->u.set.add);
        if (!rc)
            rc = mpr_u64(r, &v->u.set.rm);
        break;
    }
    default:
        v->kind = VAL_INT;
        rc = mpr_i64(r, &v->u.i);
        break;
    }
    return rc;
}

int value_unpack(mpr *r, const schema_field *f, fs_value *v, fs_error *e)
{
    const uint8_t *save = r->p;
    int rc = value_read(r, f, f->max_len, v);
    if (!rc) /* text was checked for UTF-8 as it was read (mpr_str) */
        rc = value_check(f, v, false, e);
    else
        fs_error_set(e, rc, "field '%s': %s", f->name, fs_strerror(rc));
    if (rc)
        r->p = save;
    return rc;
}

int value_unpack_stored(const schema_field *f, const void *buf, size_t len, fs_value *v)
{
    fs_value tmp;
    if (!buf || !len) {
        memset(v, 0, sizeof *v);
        v->kind = VAL_NIL;
        return 0;
    }
    mpr r;
    mpr_init(&r, buf, len);
    if (value_read(&r, f, CHANGE_MAX_TEXT, &tmp))
        return FS_EDEC_TYPE;
    *v = tmp;
    return 0;
}

static int dec_fail(mpr *r, const uint8_t *save, fs_error *e, int rc, const char *what)
{
    r->p = save;
    return fs_error_set(e, rc, "change %s: %s", what, fs_strerror(rc));
}

/* The decoder of both forms; abbrev_ok (push form only): a CHANGE_ABBREV_LEN-byte record is
 * an abbreviation (c->abbrev) rather than FS_EREC_ABBREV. */
static int unpack(mpr *r, const schema *s, bool full, bool abbrev_ok, change *c, fs_error *e)
{
    const uint8_t *save = r->p;
    uint32_t n, len;
    const uint8_t *b;
    uint64_t u;
    int rc;
    memset(c, 0, offsetof(change, fields));
    if ((rc = mpr_array(r, 9, &n)))
        return dec_fail(r, save, e, rc, "header");
    if (n != (full ? 9u : 6u))
        return dec_fail(r, save, e, FS_EDEC_COUNT, "array length");
    if ((rc = mpr_u64(r, &u)) || u > 127)
        return dec_fail(r, save, e, rc ? rc : FS_EUNKNOWN_TYPE, "type");
    c->type = (uint8_t)u;
    if ((rc = mpr_bin(r, 16, &b, &len)) || (len != 16 && (full || len != CHANGE_ABBREV_LEN)))
        return dec_fail(r, save, e, rc && rc != FS_EDEC_TOOBIG ? rc : FS_EBAD_ID, "record id");
    if (len == CHANGE_ABBREV_LEN && !abbrev_ok) {
        r->p = save;
        return fs_error_set(e, FS_EREC_ABBREV,
                            "change record id: a %d-byte abbreviation, which only the server "
                            "resolves",
                            CHANGE_ABBREV_LEN);
    }
    memcpy(c->record.b, b, len); /* an abbreviation's other bytes stay zero */
    c->abbrev = len == CHANGE_ABBREV_LEN;
    if (full) {
        if ((rc = mpr_u64(r, &c->hlc)))
            return dec_fail(r, save, e, rc, "hlc");
        if ((rc = mpr_u64(r, &c->base)))
            return dec_fail(r, save, e, rc, "base");
    } else { /* compact clocks: hlc is relative to base, which comes after it */
        uint64_t id_ms = rid_ms(&c->record);
        wclock hc, bc;
        if ((rc = read_clock(r, &hc)))
            return dec_fail(r, save, e, rc, "hlc");
        if ((rc = read_clock(r, &bc)))
            return dec_fail(r, save, e, rc, "base");
        bool create = !bc.absolute && !bc.pair && bc.d == 0;
        if (!create && (rc = resolve_clock(id_ms, &bc, &c->base)))
            return dec_fail(r, save, e, rc, "base");
        if ((rc = resolve_clock(c->base ? hlc_physical_ms(c->base) : id_ms, &hc, &c->hlc)))
            return dec_fail(r, save, e, rc, "hlc");
    }
    if ((rc = mpr_u64(r, &c->dseq)))
        return dec_fail(r, save, e, rc, "dseq");
    if (full) {
        if ((rc = mpr_bin(r, 16, &b, &len)) || len != 16)
            return dec_fail(r, save, e, rc && rc != FS_EDEC_TOOBIG ? rc : FS_EBAD_ID, "device");
        memcpy(c->device.b, b, 16);
        if ((rc = mpr_str(r, CHANGE_MAX_AUTHOR, &c->author, &c->author_len)))
            return dec_fail(r, save, e, rc, "author");
        if ((rc = mpr_u64(r, &u)) || u > 255)
            return dec_fail(r, save, e, rc ? rc : FS_EROLE, "role");
        c->role = (uint8_t)u;
    }
    const schema_type *t = schema_type_by_id(s, c->type);
    if (!t) {
        r->p = save;
        return fs_error_set(e, FS_EUNKNOWN_TYPE, "record type %u is not in schema version %d",
                            c->type, s->version);
    }
    if ((rc = mpr_map(r, CHANGE_MAX_FIELDS, &n)))
        return dec_fail(r, save, e, rc, "fields");
    c->n_fields = n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t num;
        if ((rc = mpr_u64(r, &num)))
            return dec_fail(r, save, e, rc, "field number");
        const schema_field *f = num < 256 ? schema_field_by_num(t, (int)num) : NULL;
        if (!f) {
            r->p = save;
            return fs_error_set(e, FS_EUNKNOWN_FIELD,
                                "field %llu is not in type '%s' of schema version %d",
                                (unsigned long long)num, t->name, s->version);
        }
        c->fields[i].num = (uint8_t)num;
        if ((rc = value_unpack(r, f, &c->fields[i].v, e))) {
            r->p = save;
            return rc;
        }
    }
    /* the push form has no device, author or role: the receiver fills them from the session.
     * The values were validated as they were read (value_unpack): the rest of the checks,
     * without scanning the text a third time */
    rc = change_check(s, c, false, e);
    if (rc)
        r->p = save;
    else
        c->decoded_by = s;
    return rc;
}

int change_unpack(mpr *r, const schema *s, bool full, change *c, fs_error *e)
{
    return unpack(r, s, full, false, c, e);
}

int change_unpack_push(mpr *r, const schema *s, change *c, fs_error *e)
{
    return unpack(r, s, false, true, c, e);
}

bool value_equal(const fs_value *a, const fs_value *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case VAL_NIL: return true;
    case VAL_INT: return a->u.i == b->u.i;
    case VAL_BOOL: return a->u.b == b->u.b;
    case VAL_STR: return a->u.s.len == b->u.s.len && !memcmp(a->u.s.p, b->u.s.p, a->u.s.len);
    case VAL_REF: return !memcmp(a->u.ref.b, b->u.ref.b, 16);
    case VAL_SET: return a->u.set.add == b->u.set.add && a->u.set.rm == b->u.set.rm;
    }
    return false;
}

const change_field *change_field_get(const change *c, int num)
{
    for (uint32_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].num == num)
            return &c->fields[i];
    return NULL;
}

int change_sort_fields(change *c)
{
    for (uint32_t i = 1; i < c->n_fields; i++) {
        change_field x = c->fields[i];
        uint32_t j = i;
        while (j > 0 && c->fields[j - 1].num > x.num) {
            c->fields[j] = c->fields[j - 1];
            j--;
        }
        c->fields[j] = x;
    }
    for (uint32_t i = 1; i < c->n_fields; i++)
        if (c->fields[i].num == c->fields[i - 1].num)
            return FS_EINVAL;
    return 0;
}

bool change_downgrade(const schema *s, change *c, int version)
{
    const schema_type *t = schema_type_by_id(s, c->type);
    if (!t || t->since > version)
        return false;
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(t, c->fields[i].num);
        fs_value *v = &c->fields[i].v;
        bool keep = f && f->since <= version;
        if (keep && f->kind == KIND_ENUM && v->kind == VAL_INT)
            keep = f->values[v->u.i].since <= version;
        if (keep && f->kind == KIND_SET && v->kind == VAL_SET) {
            for (uint32_t b = 0; b < f->n_values && keep; b++)
                if (((v->u.set.add | v->u.set.rm) >> b & 1) && f->values[b].since > version)
                    keep = false;
        }
        if (keep)
            c->fields[k++] = c->fields[i];
    }
    c->n_fields = k;
    return k > 0;
}

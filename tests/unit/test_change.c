/*
 * test_change — packing, unpacking and validating changes (sync/change.c).
 *
 * Changes are built from the schema file by type and field NAME (schema.h lookups), never by
 * number, so the test follows the schema as it grows. Covered: a pack/unpack round trip of a
 * change carrying every field of every record type, in the push and the full form; every
 * prefix of those messages, each in an exact-size heap block (a read past the end is an ASan
 * error in the sanitizer build); each header element and each field value of the wrong type
 * or out of range, with the code and with the fs_error message naming what was wrong; and a
 * message from a newer schema (an extra field, version 2) decoded by version 1; and the
 * packer's bytes (sync/mpw.h) against msgpack-c's own calls on 3,000 random changes, and a
 * write that fails part-way.
 *
 * CHECK_SOFT / CHECK_INT_SOFT checks do not abort: they print, the test goes on (so every other
 * check still runs and everything is still freed) and main() fails at the end.
 */
#include "change.h"
#include "check.h"
#include "hlc.h"
#include "schema.h"
#include "support/softcheck.h" /* CHECK_SOFT */

#include <time.h>

static schema *S;
static uint64_t NOW; /* wall ms at start */
static rid_t DEV;

static bool is_dec_err(int rc) { return rc <= FS_EDEC_TRUNCATED && rc >= FS_EDEC_FRAME; }

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const schema_type *type_named(const char *name)
{
    const schema_type *t = schema_type_by_name(S, name);
    if (!t)
        fprintf(stderr, "schema has no type '%s'\n", name);
    CHECK(t);
    return t;
}

static const schema_field *field_named(const schema_type *t, const char *name)
{
    const schema_field *f = schema_field_by_name(t, name);
    if (!f)
        fprintf(stderr, "type '%s' has no field '%s'\n", t->name, name);
    CHECK(f);
    return f;
}

static int role_named(const char *name)
{
    int r = schema_role_by_name(S, name);
    CHECK_INT(r, >=, 0);
    return r;
}

/* ---- building changes ---------------------------------------------------------------- */

/* Starts a change of type t (no fields yet). author: NUL-terminated. */
static void ch_init(change *c, const schema_type *t, uint64_t hlc, uint64_t base, uint64_t dseq,
                    const char *author, int role)
{
    memset(c, 0, sizeof *c);
    c->type = t->id;
    CHECK_OK(rid_new(&c->record, NOW));
    c->hlc = hlc;
    c->base = base;
    c->dseq = dseq;
    c->device = DEV;
    c->author = author;
    c->author_len = (uint32_t)strlen(author);
    c->role = (uint8_t)role;
}

/* Appends field `name` of t (value to be filled by the caller). */
static fs_value *ch_field(change *c, const schema_type *t, const char *name)
{
    const schema_field *f = field_named(t, name);
    CHECK_INT(c->n_fields, <, CHANGE_MAX_FIELDS);
    change_field *cf = &c->fields[c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = f->num;
    return &cf->v;
}

static void ch_text(change *c, const schema_type *t, const char *name, const char *s)
{
    fs_value *v = ch_field(c, t, name);
    v->kind = VAL_STR;
    v->u.s.p = s;
    v->u.s.len = (uint32_t)strlen(s);
}

static void ch_int(change *c, const schema_type *t, const char *name, int64_t i)
{
    fs_value *v = ch_field(c, t, name);
    v->kind = VAL_INT;
    v->u.i = i;
}

static void ch_enum(change *c, const schema_type *t, const char *name, const char *code)
{
    int idx = schema_enum_by_code(field_named(t, name), code);
    if (idx < 0)
        fprintf(stderr, "field '%s' has no value '%s'\n", name, code);
    CHECK_INT(idx, >=, 0);
    ch_int(c, t, name, idx);
}

static void ch_bool(change *c, const schema_type *t, const char *name, bool b)
{
    fs_value *v = ch_field(c, t, name);
    v->kind = VAL_BOOL;
    v->u.b = b;
}

static void ch_ref(change *c, const schema_type *t, const char *name, const rid_t *id)
{
    fs_value *v = ch_field(c, t, name);
    v->kind = VAL_REF;
    v->u.ref = *id;
}

static void ch_set(change *c, const schema_type *t, const char *name, uint64_t add, uint64_t rm)
{
    fs_value *v = ch_field(c, t, name);
    v->kind = VAL_SET;
    v->u.set.add = add;
    v->u.set.rm = rm;
}

static void ch_nil(change *c, const schema_type *t, const char *name)
{
    ch_field(c, t, name)->kind = VAL_NIL;
}

/* A valid value of field f, whatever its kind. */
static void sample_value(const schema_field *f, fs_value *v)
{
    memset(v, 0, sizeof *v);
    switch (f->kind) {
    case KIND_TEXT:
        v->kind = VAL_STR;
        v->u.s.p = f->max_len >= 12 ? "留守儿童" : "ok";
        v->u.s.len = (uint32_t)strlen(v->u.s.p);
        break;
    case KIND_SCOPE:
        v->kind = VAL_STR;
        v->u.s.p = "500101001";
        v->u.s.len = 9;
        break;
    case KIND_INT:
        v->kind = VAL_INT;
        v->u.i = f->min <= 7 && f->max >= 7 ? 7 : f->min;
        break;
    case KIND_DATE: v->kind = VAL_INT; v->u.i = 20240229; break;
    case KIND_TIME: v->kind = VAL_INT; v->u.i = 1700000000; break;
    case KIND_ENUM: v->kind = VAL_INT; v->u.i = (int64_t)f->n_values - 1; break;
    case KIND_BOOL: v->kind = VAL_BOOL; v->u.b = true; break;
    case KIND_REF: v->kind = VAL_REF; CHECK_OK(rid_new(&v->u.ref, NOW)); break;
    case KIND_SET:
        v->kind = VAL_SET;
        v->u.set.add = 1ull << (f->n_values - 1);
        v->u.set.rm = f->n_values > 1 ? 1 : 0;
        break;
    }
}

/* A create of type t carrying every field of the type. */
static void ch_every_field(change *c, const schema_type *t, uint64_t hlc, int role)
{
    ch_init(c, t, hlc, 0, 1, "王老师", role);
    for (uint32_t i = 0; i < t->n_fields; i++) {
        CHECK_INT(c->n_fields, <, CHANGE_MAX_FIELDS);
        change_field *cf = &c->fields[c->n_fields++];
        cf->num = t->fields[i].num;
        sample_value(&t->fields[i], &cf->v);
    }
    CHECK_OK(change_sort_fields(c));
}

/* A small valid update of child (name and grade), the base for the bad-value tests. */
static void ch_child_update(change *c)
{
    const schema_type *child = type_named("child");
    ch_init(c, child, hlc_make(NOW, 5), hlc_make(NOW, 1), 2, "李四", role_named("visitor"));
    ch_text(c, child, "name", "张三");
    ch_int(c, child, "grade", 3);
}

/* ---- packing and decoding ------------------------------------------------------------ */

typedef struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} packed;

static void packed_init(packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void packed_destroy(packed *p) { msgpack_sbuffer_destroy(&p->sb); }

static void pack(packed *p, const change *c, bool full)
{
    packed_init(p);
    CHECK_OK(change_pack(&p->pk, c, full));
}

/* Decodes len bytes of p copied into an exact-size heap block under schema s. On success
 * *copy is the block (the change borrows it; free it after); on error it is freed. Checks
 * the reader's contract: consumed all on success, unchanged position on error, e->code. */
static int decode_any(const schema *s, const void *bytes, size_t len, bool full, bool abbrev,
                      change *out, fs_error *e, uint8_t **copy)
{
    uint8_t *cp = malloc(len ? len : 1);
    CHECK(cp);
    if (len)
        memcpy(cp, bytes, len);
    mpr r;
    mpr_init(&r, cp, len);
    memset(e, 0, sizeof *e);
    int rc = abbrev ? change_unpack_push(&r, s, out, e) : change_unpack(&r, s, full, out, e);
    if (rc) {
        CHECK(r.p == cp);
        CHECK_INT(e->code, ==, rc);
        CHECK(e->msg[0] != '\0');
        free(cp);
        if (copy)
            *copy = NULL;
    } else {
        CHECK(r.p == cp + len);
        if (copy)
            *copy = cp;
        else
            free(cp);
    }
    return rc;
}

static int decode_with(const schema *s, const void *bytes, size_t len, bool full, change *out,
                       fs_error *e, uint8_t **copy)
{
    return decode_any(s, bytes, len, full, false, out, e, copy);
}

/* Expects the message in p to be refused with code want, the message naming what. */
static void expect_refused(const packed *p, bool full, int want, const char *what)
{
    change c;
    fs_error e;
    int rc = decode_with(S, p->sb.data, p->sb.size, full, &c, &e, NULL);
    if (rc != want || (what && !strstr(e.msg, what)))
        fprintf(stderr, "want %s naming '%s', got %s: %s\n", fs_errname(want),
                what ? what : "", fs_errname(rc), e.msg);
    CHECK_INT(rc, ==, want);
    if (what)
        CHECK(strstr(e.msg, what) != NULL);
}

/* Packs c as is (no validation happens when packing) and expects the decoder to refuse it. */
static void expect_change_refused(const change *c, bool full, int want, const char *what)
{
    packed p;
    pack(&p, c, full);
    expect_refused(&p, full, want, what);
    packed_destroy(&p);
}

static void check_equal(const change *a, const change *b, bool full)
{
    CHECK_INT(a->type, ==, b->type);
    CHECK_INT(rid_cmp(&a->record, &b->record), ==, 0);
    CHECK(a->hlc == b->hlc);
    CHECK(a->base == b->base);
    CHECK(a->dseq == b->dseq);
    if (full) {
        CHECK_INT(rid_cmp(&a->device, &b->device), ==, 0);
        CHECK_INT(a->author_len, ==, b->author_len);
        CHECK(!memcmp(a->author, b->author, a->author_len));
        CHECK_INT(a->role, ==, b->role);
    }
    CHECK_INT(a->n_fields, ==, b->n_fields);
    for (uint32_t i = 0; i < a->n_fields; i++) {
        CHECK_INT(a->fields[i].num, ==, b->fields[i].num);
        if (!value_equal(&a->fields[i].v, &b->fields[i].v))
            fprintf(stderr, "field %u differs\n", a->fields[i].num);
        CHECK(value_equal(&a->fields[i].v, &b->fields[i].v));
    }
}

/* Packs c into p (full or push form; the caller frees p with packed_destroy) and decodes
 * it under schema s into *d, which must succeed (else prints why and aborts). Returns new:
 * the exact-size copy *d borrows (free it when done with *d). */
static uint8_t *pack_decode(const schema *s, const change *c, bool full, packed *p, change *d)
{
    pack(p, c, full);
    fs_error e;
    uint8_t *cp;
    int rc = decode_with(s, p->sb.data, p->sb.size, full, d, &e, &cp);
    if (rc)
        fprintf(stderr, "decoding %s: %s\n", full ? "full" : "push", e.msg);
    CHECK_OK(rc);
    return cp;
}

/* ---- round trips --------------------------------------------------------------------- */

static void round_trip(const change *c)
{
    fs_error e = {0};
    CHECK_OK(change_validate(S, c, &e));
    for (int full = 0; full <= 1; full++) {
        packed p;
        change d;
        uint8_t *cp = pack_decode(S, c, full, &p, &d);
        check_equal(c, &d, full);
        if (!full) { /* the push form carries no device, author or role */
            CHECK(rid_is_zero(&d.device));
            CHECK_INT(d.author_len, ==, 0);
            CHECK_INT(d.role, ==, 0);
        }
        /* the decoded change packs to the same bytes */
        packed again;
        pack(&again, &d, full);
        CHECK_INT(again.sb.size, ==, p.sb.size);
        CHECK(!memcmp(again.sb.data, p.sb.data, p.sb.size));
        packed_destroy(&again);
        free(cp);
        packed_destroy(&p);
    }
}

static void test_round_trip_every_type(void)
{
    CHECK_INT(S->n_types, >=, 1);
    const int roles[] = {role_named("visitor"), role_named("supervisor"), role_named("admin")};
    for (uint32_t i = 0; i < S->n_types; i++) {
        const schema_type *t = &S->types[i];
        change c;
        ch_every_field(&c, t, hlc_make(NOW, (uint16_t)i + 1), roles[i % 3]);
        CHECK_INT(c.n_fields, ==, t->n_fields);
        round_trip(&c);
        /* an update of one field, a clear (where allowed), and large clock values */
        for (uint32_t k = 0; k < t->n_fields; k++) {
            const schema_field *f = &t->fields[k];
            change u;
            ch_init(&u, t, UINT64_MAX, UINT64_MAX - 1, UINT64_MAX, "", roles[k % 3]);
            u.n_fields = 1;
            u.fields[0].num = f->num;
            sample_value(f, &u.fields[0].v);
            round_trip(&u);
            if (!f->required && f->kind != KIND_SET) {
                u.fields[0].v.kind = VAL_NIL;
                round_trip(&u);
            }
        }
    }
}

static void test_round_trip_named(void)
{
    const schema_type *child = type_named("child"), *visit = type_named("visit");
    const schema_field *services = field_named(child, "services_received");
    change c;
    ch_init(&c, child, hlc_make(NOW, 1), 0, 1, "王老师", role_named("visitor"));
    ch_text(&c, child, "name", "王小明");
    ch_enum(&c, child, "gender", "female");
    ch_int(&c, child, "birth_date", 20120229);
    ch_text(&c, child, "village", "500101001");
    ch_int(&c, child, "grade", field_named(child, "grade")->max);
    ch_enum(&c, child, "risk_level", "high");
    ch_bool(&c, child, "in_difficulty", false);
    ch_nil(&c, child, "school");
    ch_set(&c, child, "services_received",
           (1ull << schema_enum_by_code(services, "medical_treatment")) |
               (1ull << schema_enum_by_code(services, "legal_aid")),
           1ull << schema_enum_by_code(services, "social_assistance"));
    CHECK_OK(change_sort_fields(&c));
    round_trip(&c);

    /* text exactly at max_len (in bytes of UTF-8) */
    const schema_field *name = field_named(child, "name");
    char buf[1024] = "";
    while (strlen(buf) + 3 <= name->max_len)
        strcat(buf, "童");
    while (strlen(buf) < name->max_len)
        strcat(buf, "a");
    CHECK_INT(strlen(buf), ==, name->max_len);
    ch_child_update(&c);
    c.fields[0].v.u.s.p = buf;
    c.fields[0].v.u.s.len = (uint32_t)strlen(buf);
    round_trip(&c);

    /* a visit refers to its child by id */
    rid_t child_id;
    CHECK_OK(rid_new(&child_id, NOW));
    ch_init(&c, visit, hlc_make(NOW, 2), 0, 7, "赵社工", role_named("volunteer"));
    ch_ref(&c, visit, "child", &child_id);
    ch_enum(&c, visit, "kind", "home_visit");
    ch_int(&c, visit, "visited_at", 1700000000);
    ch_text(&c, visit, "concerns", "");
    round_trip(&c);

    /* author of exactly CHANGE_MAX_AUTHOR bytes */
    char author[CHANGE_MAX_AUTHOR + 1];
    memset(author, 'a', CHANGE_MAX_AUTHOR);
    author[CHANGE_MAX_AUTHOR] = '\0';
    ch_child_update(&c);
    c.author = author;
    c.author_len = CHANGE_MAX_AUTHOR;
    round_trip(&c);
}

/* ---- every prefix -------------------------------------------------------------------- */

static void test_truncated(void)
{
    for (uint32_t i = 0; i < S->n_types; i++) {
        change c;
        ch_every_field(&c, &S->types[i], hlc_make(NOW, 9), role_named("supervisor"));
        for (int full = 0; full <= 1; full++) {
            packed p;
            pack(&p, &c, full);
            for (size_t k = 0; k < p.sb.size; k++) {
                change d;
                fs_error e;
                int rc = decode_with(S, p.sb.data, k, full, &d, &e, NULL);
                if (!is_dec_err(rc))
                    fprintf(stderr, "type %s %s form, prefix %zu/%zu: %s (%s)\n",
                            S->types[i].name, full ? "full" : "push", k, p.sb.size,
                            fs_errname(rc), e.msg);
                CHECK(is_dec_err(rc));
            }
            /* and the message followed by garbage still decodes exactly one change */
            msgpack_sbuffer_write(&p.sb, "\xc1\xc1", 2);
            change d;
            fs_error e;
            uint8_t *cp;
            mpr r;
            cp = malloc(p.sb.size);
            CHECK(cp);
            memcpy(cp, p.sb.data, p.sb.size);
            mpr_init(&r, cp, p.sb.size);
            CHECK_OK(change_unpack(&r, S, full, &d, &e));
            CHECK_INT(mpr_left(&r), ==, 2);
            free(cp);
            packed_destroy(&p);
        }
    }
}

/* ---- wrongly typed header elements ----------------------------------------------------- */

enum head_defect {
    HD_NONE, HD_TYPE_STR, HD_TYPE_BIG, HD_TYPE_NEG, HD_RID15, HD_RID17, HD_RID_STR, HD_HLC_STR,
    HD_HLC_NEG, HD_BASE_STR, HD_DSEQ_NIL, HD_DEV15, HD_AUTHOR_LONG, HD_AUTHOR_BIN,
    HD_AUTHOR_UTF8, HD_ROLE_BIG, HD_ROLE_STR, HD_FIELDS_ARRAY, HD_ARRAY_LEN,
    /* push form only: compact clocks (protocol §3.1) */
    HD_HLC_PAIR1, HD_HLC_PAIR3, HD_HLC_CNT_BIG, HD_HLC_CNT_STR, HD_HLC_FAR, HD_BASE_FAR,
    HD_BASE_PAIR_MAP, HD_BASE_NEG, HD_BASE_ABOVE
};

/* The record id pack_bin_n writes (0x5a bytes): its timestamp, the push form's reference. */
#define ID5A_MS 0x5a5a5a5a5a5aull

/* A compact clock (push form): d, or [d, counter] when the counter is not 0, d is negative,
 * or d is 0 in a base (where 0 means create). */
static void pack_compact(msgpack_packer *pk, uint64_t clock, uint64_t ref_ms, bool is_base)
{
    int64_t d = (int64_t)(clock >> 16) - (int64_t)ref_ms;
    if ((clock & 0xffff) || d < 0 || (is_base && d == 0)) {
        CHECK_OK(msgpack_pack_array(pk, 2));
        CHECK_OK(msgpack_pack_int64(pk, d));
        CHECK_OK(msgpack_pack_uint64(pk, clock & 0xffff));
    } else {
        CHECK_OK(msgpack_pack_int64(pk, d));
    }
}

/* The hlc and base elements of c's push form, for changes packed by hand. */
static void pack_push_clocks(msgpack_packer *pk, const change *c)
{
    uint64_t id_ms = 0;
    for (int i = 0; i < 6; i++)
        id_ms = id_ms << 8 | c->record.b[i];
    pack_compact(pk, c->hlc, c->base ? c->base >> 16 : id_ms, false);
    if (c->base)
        pack_compact(pk, c->base, id_ms, true);
    else
        CHECK_OK(msgpack_pack_uint8(pk, 0));
}

static void pack_bin_n(msgpack_packer *pk, size_t n)
{
    uint8_t b[32];
    memset(b, 0x5a, sizeof b);
    CHECK_OK(msgpack_pack_bin(pk, n));
    CHECK_OK(msgpack_pack_bin_body(pk, b, n));
}

/* change_pack with one element replaced by d. */
static void pack_defect(packed *p, const change *c, bool full, enum head_defect d)
{
    msgpack_packer *pk = &p->pk;
    packed_init(p);
    size_t n = full ? 9 : 6;
    CHECK_OK(msgpack_pack_array(pk, d == HD_ARRAY_LEN ? n + 1 : n));
    if (d == HD_TYPE_STR)
        CHECK_OK(msgpack_pack_str_with_body(pk, "child", 5));
    else if (d == HD_TYPE_BIG)
        CHECK_OK(msgpack_pack_uint64(pk, 200));
    else if (d == HD_TYPE_NEG)
        CHECK_OK(msgpack_pack_int64(pk, -1));
    else
        CHECK_OK(msgpack_pack_uint8(pk, c->type));
    if (d == HD_RID15 || d == HD_RID17)
        pack_bin_n(pk, d == HD_RID15 ? 15 : 17);
    else if (d == HD_RID_STR)
        CHECK_OK(msgpack_pack_str_with_body(pk, "0123456789abcdef", 16));
    else
        pack_bin_n(pk, 16);
    uint64_t ref = c->base ? c->base >> 16 : ID5A_MS; /* push form: hlc relative to this */
    if (d == HD_HLC_STR)
        CHECK_OK(msgpack_pack_str_with_body(pk, "1700000000000", 13));
    else if (d == HD_HLC_NEG) /* full: a negative clock; push: a bare negative difference */
        CHECK_OK(msgpack_pack_int64(pk, full ? -5 : -(int64_t)ref - 1));
    else if (d == HD_HLC_PAIR1 || d == HD_HLC_PAIR3) {
        CHECK_OK(msgpack_pack_array(pk, d == HD_HLC_PAIR1 ? 1 : 3));
        for (int i = 0; i < (d == HD_HLC_PAIR1 ? 1 : 3); i++)
            CHECK_OK(msgpack_pack_uint64(pk, 1));
    } else if (d == HD_HLC_CNT_BIG || d == HD_HLC_CNT_STR) {
        CHECK_OK(msgpack_pack_array(pk, 2));
        CHECK_OK(msgpack_pack_int64(pk, 1));
        if (d == HD_HLC_CNT_BIG)
            CHECK_OK(msgpack_pack_uint64(pk, 65536));
        else
            CHECK_OK(msgpack_pack_str_with_body(pk, "1", 1));
    } else if (d == HD_BASE_ABOVE) { /* hlc one ms before base: decodes, validation refuses */
        CHECK_OK(msgpack_pack_array(pk, 2));
        CHECK_OK(msgpack_pack_int64(pk, -1));
        CHECK_OK(msgpack_pack_uint8(pk, 0));
    }
    else if (d == HD_HLC_FAR) { /* a pair below -(2^48-1), whatever the reference */
        CHECK_OK(msgpack_pack_array(pk, 2));
        CHECK_OK(msgpack_pack_int64(pk, -((int64_t)1 << 48)));
        CHECK_OK(msgpack_pack_uint8(pk, 1));
    }
    else if (full)
        CHECK_OK(msgpack_pack_uint64(pk, c->hlc));
    else
        pack_compact(pk, c->hlc, ref, false);
    if (d == HD_BASE_STR)
        CHECK_OK(msgpack_pack_str_with_body(pk, "0", 1));
    else if (d == HD_BASE_FAR)
        CHECK_OK(msgpack_pack_int64(pk, -((int64_t)1 << 48)));
    else if (d == HD_BASE_PAIR_MAP)
        CHECK_OK(msgpack_pack_map(pk, 0));
    else if (d == HD_BASE_NEG) { /* base before 1970: a pair reaching below 0 */
        CHECK_OK(msgpack_pack_array(pk, 2));
        CHECK_OK(msgpack_pack_int64(pk, -(int64_t)ID5A_MS - 1));
        CHECK_OK(msgpack_pack_uint8(pk, 0));
    }
    else if (full)
        CHECK_OK(msgpack_pack_uint64(pk, c->base));
    else if (!c->base)
        CHECK_OK(msgpack_pack_uint8(pk, 0));
    else
        pack_compact(pk, c->base, ID5A_MS, true);
    if (d == HD_DSEQ_NIL)
        CHECK_OK(msgpack_pack_nil(pk));
    else
        CHECK_OK(msgpack_pack_uint64(pk, c->dseq));
    if (full) {
        pack_bin_n(pk, d == HD_DEV15 ? 15 : 16);
        if (d == HD_AUTHOR_LONG) {
            char a[CHANGE_MAX_AUTHOR + 1];
            memset(a, 'a', sizeof a);
            CHECK_OK(msgpack_pack_str_with_body(pk, a, sizeof a));
        } else if (d == HD_AUTHOR_BIN) {
            CHECK_OK(msgpack_pack_bin_with_body(pk, "ab", 2));
        } else if (d == HD_AUTHOR_UTF8) {
            CHECK_OK(msgpack_pack_str_with_body(pk, "\xe7\x8e", 2)); /* cut character */
        } else {
            CHECK_OK(msgpack_pack_str_with_body(pk, c->author, c->author_len));
        }
        if (d == HD_ROLE_BIG)
            CHECK_OK(msgpack_pack_uint64(pk, 300));
        else if (d == HD_ROLE_STR)
            CHECK_OK(msgpack_pack_str_with_body(pk, "admin", 5));
        else
            CHECK_OK(msgpack_pack_uint8(pk, c->role));
    }
    if (d == HD_FIELDS_ARRAY) {
        CHECK_OK(msgpack_pack_array(pk, c->n_fields * 2));
    } else {
        CHECK_OK(msgpack_pack_map(pk, c->n_fields));
    }
    for (uint32_t i = 0; i < c->n_fields; i++) {
        CHECK_OK(msgpack_pack_uint8(pk, c->fields[i].num));
        CHECK_OK(value_pack(pk, &c->fields[i].v));
    }
    if (d == HD_ARRAY_LEN)
        CHECK_OK(msgpack_pack_nil(pk));
}

static void expect_defect(const change *c, bool full, enum head_defect d, int want,
                          const char *what)
{
    packed p;
    pack_defect(&p, c, full, d);
    expect_refused(&p, full, want, what);
    packed_destroy(&p);
}

static void test_bad_header(void)
{
    change c;
    ch_child_update(&c);
    for (int full = 0; full <= 1; full++) {
        packed p;
        pack_defect(&p, &c, full, HD_NONE); /* the defect-free packing decodes */
        change d;
        fs_error e;
        CHECK_OK(decode_with(S, p.sb.data, p.sb.size, full, &d, &e, NULL));
        packed_destroy(&p);
        expect_defect(&c, full, HD_TYPE_STR, FS_EDEC_TYPE, "change type");
        expect_defect(&c, full, HD_TYPE_BIG, FS_EUNKNOWN_TYPE, "type");
        expect_defect(&c, full, HD_TYPE_NEG, FS_EVALUE_RANGE, "change type");
        expect_defect(&c, full, HD_RID15, FS_EBAD_ID, "record id");
        expect_defect(&c, full, HD_RID17, FS_EBAD_ID, "record id");
        expect_defect(&c, full, HD_RID_STR, FS_EDEC_TYPE, "record id");
        expect_defect(&c, full, HD_HLC_STR, FS_EDEC_TYPE, "change hlc");
        expect_defect(&c, full, HD_HLC_NEG, FS_EVALUE_RANGE, "change hlc");
        expect_defect(&c, full, HD_BASE_STR, FS_EDEC_TYPE, "change base");
        expect_defect(&c, full, HD_DSEQ_NIL, FS_EDEC_TYPE, "change dseq");
        expect_defect(&c, full, HD_FIELDS_ARRAY, FS_EDEC_TYPE, "change fields");
        expect_defect(&c, full, HD_ARRAY_LEN, FS_EDEC_COUNT, full ? "header" : "array length");
    }
    /* compact clocks of the push form */
    expect_defect(&c, false, HD_HLC_PAIR1, FS_EDEC_COUNT, "change hlc");
    expect_defect(&c, false, HD_HLC_PAIR3, FS_EDEC_COUNT, "change hlc");
    expect_defect(&c, false, HD_HLC_CNT_BIG, FS_EVALUE_RANGE, "change hlc");
    expect_defect(&c, false, HD_HLC_CNT_STR, FS_EDEC_TYPE, "change hlc");
    expect_defect(&c, false, HD_HLC_FAR, FS_EVALUE_RANGE, "change hlc");
    expect_defect(&c, false, HD_HLC_NEG, FS_EVALUE_RANGE, "change hlc"); /* bare negative */
    expect_defect(&c, false, HD_BASE_FAR, FS_EVALUE_RANGE, "change base");
    expect_defect(&c, false, HD_BASE_PAIR_MAP, FS_EDEC_TYPE, "change base");
    expect_defect(&c, false, HD_BASE_NEG, FS_EVALUE_RANGE, "change base");
    expect_defect(&c, false, HD_BASE_ABOVE, FS_EVALUE_RANGE, "must be above base");
    expect_defect(&c, true, HD_DEV15, FS_EBAD_ID, "change device");
    expect_defect(&c, true, HD_AUTHOR_LONG, FS_EDEC_TOOBIG, "change author");
    expect_defect(&c, true, HD_AUTHOR_BIN, FS_EDEC_TYPE, "change author");
    expect_defect(&c, true, HD_AUTHOR_UTF8, FS_EDEC_UTF8, "change author");
    expect_defect(&c, true, HD_ROLE_BIG, FS_EROLE, "change role");
    expect_defect(&c, true, HD_ROLE_STR, FS_EDEC_TYPE, "change role");
    /* a full-form message read as a push and the reverse */
    packed p;
    pack(&p, &c, true);
    expect_refused(&p, false, FS_EDEC_COUNT, "array length");
    packed_destroy(&p);
    pack(&p, &c, false);
    expect_refused(&p, true, FS_EDEC_COUNT, "array length");
    packed_destroy(&p);
    /* not an array at all */
    packed_init(&p);
    CHECK_OK(msgpack_pack_map(&p.pk, 0));
    expect_refused(&p, false, FS_EDEC_TYPE, "header");
    packed_destroy(&p);
}

/* ---- compact clocks of the push form (protocol §3.1) ---------------------------------- */

/* Packs c in push form, checks the bytes of its hlc and base elements (after the 18-byte
 * record id) are want[0..want_len), and that it decodes back to c. */
static void expect_clock_bytes(const change *c, const uint8_t *want, size_t want_len)
{
    packed p;
    pack(&p, c, false);
    const uint8_t *b = (const uint8_t *)p.sb.data;
    CHECK_INT(b[0], ==, 0x96);
    CHECK_INT(b[2], ==, 0xc4);
    CHECK(p.sb.size > 20 + want_len);
    if (memcmp(b + 20, want, want_len)) {
        fprintf(stderr, "clock bytes:");
        for (size_t i = 0; i < want_len + 2; i++)
            fprintf(stderr, " %02x", b[20 + i]);
        fprintf(stderr, "\n");
    }
    CHECK(!memcmp(b + 20, want, want_len));
    change d;
    fs_error e;
    CHECK_OK(decode_with(S, p.sb.data, p.sb.size, false, &d, &e, NULL));
    CHECK(d.hlc == c->hlc);
    CHECK(d.base == c->base);
    CHECK(d.dseq == c->dseq);
    /* every prefix fails cleanly, with the position unchanged (decode_with checks) */
    for (size_t n = 0; n < p.sb.size; n++)
        CHECK_INT(decode_with(S, p.sb.data, n, false, &d, &e, NULL), <, 0);
    packed_destroy(&p);
}

static void test_compact_clocks(void)
{
    const schema_type *child = type_named("child");
    change c;
    ch_init(&c, child, 0, 0, 300, "李四", role_named("visitor"));
    ch_int(&c, child, "grade", 3);
    uint64_t id_ms = 0;
    for (int i = 0; i < 6; i++)
        id_ms = id_ms << 8 | c.record.b[i];

    /* a create at the id's millisecond: hlc 0, base 0 */
    c.hlc = hlc_make(id_ms, 0);
    expect_clock_bytes(&c, (const uint8_t[]){0x00, 0x00, 0xcd, 0x01, 0x2c}, 5);
    /* a create 2 ms BEFORE its id's time (a clock behind the id's): a pair [-2, 0] */
    c.hlc = hlc_make(id_ms - 2, 0);
    expect_clock_bytes(&c, (const uint8_t[]){0x92, 0xfe, 0x00, 0x00}, 4);
    /* counter 7: [d, 7] */
    c.hlc = hlc_make(id_ms + 1, 7);
    expect_clock_bytes(&c, (const uint8_t[]){0x92, 0x01, 0x07, 0x00}, 4);
    /* an edit based on the first version (base at the id's ms, counter 0: [0, 0]), one day
     * later: hlc = base + 86,400,000 ms (uint 32) */
    c.base = hlc_make(id_ms, 0);
    c.hlc = hlc_make(id_ms + 86400000, 0);
    expect_clock_bytes(&c, (const uint8_t[]){0xce, 0x05, 0x26, 0x5c, 0x00, 0x92, 0x00, 0x00}, 8);
    /* base with a counter, 300 ms after the id; hlc in the same millisecond as base */
    c.base = hlc_make(id_ms + 300, 2);
    c.hlc = hlc_make(id_ms + 300, 3);
    expect_clock_bytes(&c, (const uint8_t[]){0x92, 0x00, 0x03, 0x92, 0xcd, 0x01, 0x2c, 0x02}, 8);
    /* base before the id's time (negative: a pair), hlc 100 ms after base */
    c.base = hlc_make(id_ms - 1000, 0);
    c.hlc = hlc_make(id_ms - 900, 0);
    expect_clock_bytes(&c, (const uint8_t[]){0x64, 0x92, 0xd1, 0xfc, 0x18, 0x00}, 6);
    /* the extremes: a year apart, counter 65535 */
    c.base = hlc_make(id_ms - 365ull * 86400000, 65535);
    c.hlc = hlc_make(id_ms + 365ull * 86400000, 65535);
    packed p;
    pack(&p, &c, false);
    change d;
    fs_error e;
    CHECK_OK(decode_with(S, p.sb.data, p.sb.size, false, &d, &e, NULL));
    CHECK(d.hlc == c.hlc && d.base == c.base);
    packed_destroy(&p);

    /* absolute clocks (a uint >= 2^48, the full form's encoding) are read as such: a push
     * packed with the full form's clocks decodes to the same change */
    c.base = hlc_make(id_ms + 5, 1);
    c.hlc = hlc_make(id_ms + 86400000, 0);
    for (int k = 0; k < 3; k++) {
        packed_init(&p);
        CHECK_OK(msgpack_pack_array(&p.pk, 6));
        CHECK_OK(msgpack_pack_uint8(&p.pk, c.type));
        CHECK_OK(msgpack_pack_bin_with_body(&p.pk, c.record.b, 16));
        if (k == 1)
            CHECK_OK(msgpack_pack_int64(&p.pk, 86400000 - 5)); /* compact hlc, absolute base */
        else
            CHECK_OK(msgpack_pack_uint64(&p.pk, c.hlc));
        if (k == 2) {
            CHECK_OK(msgpack_pack_array(&p.pk, 2)); /* absolute hlc, compact base */
            CHECK_OK(msgpack_pack_int64(&p.pk, 5));
            CHECK_OK(msgpack_pack_uint8(&p.pk, 1));
        } else {
            CHECK_OK(msgpack_pack_uint64(&p.pk, c.base));
        }
        CHECK_OK(msgpack_pack_uint64(&p.pk, c.dseq));
        CHECK_OK(msgpack_pack_map(&p.pk, 1));
        CHECK_OK(msgpack_pack_uint8(&p.pk, c.fields[0].num));
        CHECK_OK(value_pack(&p.pk, &c.fields[0].v));
        CHECK_OK(decode_with(S, p.sb.data, p.sb.size, false, &d, &e, NULL));
        CHECK(d.hlc == c.hlc && d.base == c.base);
        packed_destroy(&p);
    }
    /* the same with base 0 written absolute: 0 is a create */
    c.base = 0;
    packed_init(&p);
    CHECK_OK(msgpack_pack_array(&p.pk, 6));
    CHECK_OK(msgpack_pack_uint8(&p.pk, c.type));
    CHECK_OK(msgpack_pack_bin_with_body(&p.pk, c.record.b, 16));
    CHECK_OK(msgpack_pack_uint64(&p.pk, c.hlc));
    CHECK_OK(msgpack_pack_uint64(&p.pk, 0));
    CHECK_OK(msgpack_pack_uint64(&p.pk, c.dseq));
    CHECK_OK(msgpack_pack_map(&p.pk, 1));
    CHECK_OK(msgpack_pack_uint8(&p.pk, c.fields[0].num));
    CHECK_OK(value_pack(&p.pk, &c.fields[0].v));
    CHECK_OK(decode_with(S, p.sb.data, p.sb.size, false, &d, &e, NULL));
    CHECK(d.hlc == c.hlc && d.base == 0);
    packed_destroy(&p);
    /* the push form is smaller than the full form's clocks: 9 + 9 bytes became 5 + 3 */
    c.base = hlc_make(id_ms, 0);
    pack(&p, &c, false);
    packed q;
    pack(&q, &c, true);
    CHECK_INT(p.sb.size, <, q.sb.size);
    packed_destroy(&p);
    packed_destroy(&q);
    printf("compact clocks: ok\n");
}

/* ---- header values the schema refuses -------------------------------------------------- */

static void test_bad_header_values(void)
{
    change c;
    /* a record type the receiver does not know */
    int unknown_type = 0;
    for (int id = 1; id <= SCHEMA_MAX_TYPES && !unknown_type; id++)
        if (!schema_type_by_id(S, id))
            unknown_type = id;
    CHECK_INT(unknown_type, >, 0);
    char want[64];
    snprintf(want, sizeof want, "record type %d", unknown_type);
    ch_child_update(&c);
    c.type = (uint8_t)unknown_type;
    expect_change_refused(&c, false, FS_EUNKNOWN_TYPE, want);
    expect_change_refused(&c, true, FS_EUNKNOWN_TYPE, want);
    c.type = 0;
    expect_change_refused(&c, false, FS_EUNKNOWN_TYPE, "record type 0");
    /* role index past the schema's roles */
    ch_child_update(&c);
    c.role = (uint8_t)S->n_roles;
    expect_change_refused(&c, true, FS_EROLE, "role");
    /* the zero record id */
    ch_child_update(&c);
    memset(&c.record, 0, sizeof c.record);
    expect_change_refused(&c, false, FS_EBAD_ID, "record id");
    /* clock 0, base not below the clock, dseq 0, no fields */
    ch_child_update(&c);
    c.hlc = 0;
    c.base = 0;
    expect_change_refused(&c, false, FS_EVALUE_RANGE, "clock");
    ch_child_update(&c);
    c.base = c.hlc;
    expect_change_refused(&c, false, FS_EVALUE_RANGE, "base");
    ch_child_update(&c);
    c.dseq = 0;
    expect_change_refused(&c, false, FS_EVALUE_RANGE, "sequence");
    ch_child_update(&c);
    c.n_fields = 0;
    expect_change_refused(&c, false, FS_EDEC_MISSING, "field");
}

/* ---- field values ---------------------------------------------------------------------- */

/* ch_child_update with field `name` replaced by value v; expects code want naming the field. */
static void expect_child_value(const char *name, const fs_value *v, int want)
{
    const schema_type *child = type_named("child");
    change c;
    ch_child_update(&c);
    c.n_fields = 0;
    fs_value *dst = ch_field(&c, child, name);
    *dst = *v;
    if (strcmp(name, "grade"))
        ch_int(&c, child, "grade", 3);
    CHECK_OK(change_sort_fields(&c));
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", name);
    for (int full = 0; full <= 1; full++)
        expect_change_refused(&c, full, want, quoted);
    /* the device-side check of a hand-built change agrees on the code and the field */
    fs_error e = {0};
    int rc = change_validate(S, &c, &e);
    if (rc != want)
        fprintf(stderr, "change_validate of '%s': %s (%s)\n", name, fs_errname(rc), e.msg);
    CHECK_INT(rc, ==, want);
    CHECK(strstr(e.msg, quoted) != NULL);
}

static void test_bad_values(void)
{
    const schema_type *child = type_named("child");
    const schema_field *name = field_named(child, "name");
    const schema_field *risk = field_named(child, "risk_level");
    const schema_field *services = field_named(child, "services_received");
    const schema_field *grade = field_named(child, "grade");
    fs_value v;
    char long_text[70000];

    /* text one byte over max_len, in ASCII and in Chinese */
    memset(&v, 0, sizeof v);
    memset(long_text, 'x', name->max_len + 1);
    v.kind = VAL_STR;
    v.u.s.p = long_text;
    v.u.s.len = name->max_len + 1;
    expect_child_value("name", &v, FS_EVALUE_RANGE);
    long_text[0] = '\0';
    while (strlen(long_text) <= name->max_len)
        strcat(long_text, "儿");
    v.u.s.len = (uint32_t)strlen(long_text);
    expect_child_value("name", &v, FS_EVALUE_RANGE);
    /* over the wire-wide text limit too */
    memset(long_text, 'y', sizeof long_text);
    v.u.s.len = CHANGE_MAX_TEXT + 1;
    expect_child_value("name", &v, FS_EVALUE_RANGE);
    /* invalid UTF-8 and NUL in text */
    v.u.s.p = "\xc0\x80";
    v.u.s.len = 2;
    expect_child_value("name", &v, FS_EDEC_UTF8);
    v.u.s.p = "a\0b";
    v.u.s.len = 3;
    expect_child_value("name", &v, FS_EDEC_UTF8);

    /* enum index out of range, and negative */
    memset(&v, 0, sizeof v);
    v.kind = VAL_INT;
    v.u.i = risk->n_values;
    expect_child_value("risk_level", &v, FS_EVALUE_ENUM);
    v.u.i = -1;
    expect_child_value("risk_level", &v, FS_EVALUE_ENUM);
    v.u.i = INT64_MAX;
    expect_child_value("risk_level", &v, FS_EVALUE_ENUM);

    /* int out of [min, max] */
    v.u.i = grade->max + 1;
    expect_child_value("grade", &v, FS_EVALUE_RANGE);
    v.u.i = grade->min - 1;
    expect_child_value("grade", &v, FS_EVALUE_RANGE);

    /* dates that are not on the calendar */
    static const int64_t bad_dates[] = {20230230, 20230229, 21000229, 20231301, 20230001,
                                        20230100, 20230132, 18991231, 22000101, 0, -20230101,
                                        2023023};
    for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++) {
        v.u.i = bad_dates[i];
        expect_child_value("birth_date", &v, FS_EVALUE_RANGE);
    }
    static const int64_t good_dates[] = {20240229, 20000229, 19000101, 21991231, 20230131};
    for (size_t i = 0; i < sizeof good_dates / sizeof good_dates[0]; i++)
        CHECK(date_valid(good_dates[i]));

    /* set masks naming values the field does not have, or adding and removing one value */
    memset(&v, 0, sizeof v);
    v.kind = VAL_SET;
    v.u.set.add = 1ull << services->n_values;
    expect_child_value("services_received", &v, FS_EVALUE_ENUM);
    v.u.set.add = 1;
    v.u.set.rm = 1ull << 63;
    expect_child_value("services_received", &v, FS_EVALUE_ENUM);
    v.u.set.add = 1;
    v.u.set.rm = 1;
    expect_child_value("services_received", &v, FS_EVALUE_RANGE);
    /* a set cannot be cleared with nil */
    memset(&v, 0, sizeof v);
    v.kind = VAL_NIL;
    expect_child_value("services_received", &v, FS_EVALUE_TYPE);

    /* required fields cannot be cleared */
    expect_child_value("name", &v, FS_EREQUIRED);
    expect_child_value("village", &v, FS_EREQUIRED);
    /* an empty scope */
    memset(&v, 0, sizeof v);
    v.kind = VAL_STR;
    v.u.s.p = "";
    expect_child_value("village", &v, FS_EVALUE_RANGE);
    /* the zero id as a reference */
    memset(&v, 0, sizeof v);
    v.kind = VAL_REF;
    expect_child_value("household", &v, FS_EBAD_ID);
}

/* Values of the wrong MessagePack type for their field, written by hand. */
static void expect_raw_value(const char *field, void (*write)(msgpack_packer *), int want)
{
    const schema_type *child = type_named("child");
    change c;
    ch_child_update(&c);
    packed p;
    packed_init(&p);
    CHECK_OK(msgpack_pack_array(&p.pk, 6));
    CHECK_OK(msgpack_pack_uint8(&p.pk, c.type));
    CHECK_OK(msgpack_pack_bin_with_body(&p.pk, c.record.b, 16));
    pack_push_clocks(&p.pk, &c);
    CHECK_OK(msgpack_pack_uint64(&p.pk, c.dseq));
    CHECK_OK(msgpack_pack_map(&p.pk, 1));
    CHECK_OK(msgpack_pack_uint8(&p.pk, field_named(child, field)->num));
    write(&p.pk);
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", field);
    expect_refused(&p, false, want, quoted);
    packed_destroy(&p);
}

static void w_int(msgpack_packer *pk) { CHECK_OK(msgpack_pack_int64(pk, 5)); }
static void w_str(msgpack_packer *pk) { CHECK_OK(msgpack_pack_str_with_body(pk, "x", 1)); }
static void w_true(msgpack_packer *pk) { CHECK_OK(msgpack_pack_true(pk)); }
static void w_bin15(msgpack_packer *pk) { pack_bin_n(pk, 15); }
static void w_bin17(msgpack_packer *pk) { pack_bin_n(pk, 17); }
static void w_neg(msgpack_packer *pk) { CHECK_OK(msgpack_pack_int64(pk, -3)); }
static void w_huge(msgpack_packer *pk) { CHECK_OK(msgpack_pack_uint64(pk, UINT64_MAX)); }
static void w_set3(msgpack_packer *pk)
{
    CHECK_OK(msgpack_pack_array(pk, 3));
    for (int i = 0; i < 3; i++)
        CHECK_OK(msgpack_pack_uint8(pk, 0));
}
static void w_set_neg(msgpack_packer *pk)
{
    CHECK_OK(msgpack_pack_array(pk, 2));
    CHECK_OK(msgpack_pack_int64(pk, -1));
    CHECK_OK(msgpack_pack_uint8(pk, 0));
}
static void w_float(msgpack_packer *pk) { CHECK_OK(msgpack_pack_double(pk, 3.0)); }

static void test_bad_wire_values(void)
{
    expect_raw_value("name", w_int, FS_EDEC_TYPE);
    expect_raw_value("grade", w_str, FS_EDEC_TYPE);
    expect_raw_value("grade", w_float, FS_EDEC_TYPE);
    expect_raw_value("grade", w_huge, FS_EVALUE_RANGE);
    expect_raw_value("in_difficulty", w_int, FS_EDEC_TYPE);
    expect_raw_value("risk_level", w_true, FS_EDEC_TYPE);
    expect_raw_value("risk_level", w_neg, FS_EVALUE_ENUM);
    expect_raw_value("household", w_bin15, FS_EBAD_ID);
    expect_raw_value("household", w_bin17, FS_EBAD_ID);
    expect_raw_value("household", w_str, FS_EDEC_TYPE);
    expect_raw_value("services_received", w_int, FS_EDEC_TYPE);
    expect_raw_value("services_received", w_set3, FS_EDEC_COUNT);
    expect_raw_value("services_received", w_set_neg, FS_EVALUE_RANGE);
}

static void test_unknown_and_order(void)
{
    const schema_type *child = type_named("child");
    change c;
    /* a field number the type does not have */
    int unknown = 0;
    for (int n = 1; n <= 255 && !unknown; n++)
        if (!schema_field_by_num(child, n))
            unknown = n;
    CHECK_INT(unknown, >, 0);
    ch_child_update(&c);
    c.fields[c.n_fields].num = (uint8_t)unknown;
    c.fields[c.n_fields].v.kind = VAL_NIL;
    c.n_fields++;
    CHECK_OK(change_sort_fields(&c));
    char want[64];
    snprintf(want, sizeof want, "field %d is not in type 'child'", unknown);
    expect_change_refused(&c, false, FS_EUNKNOWN_FIELD, want);
    expect_change_refused(&c, true, FS_EUNKNOWN_FIELD, want);
    c.fields[c.n_fields - 1].num = 255;
    if (!schema_field_by_num(child, 255))
        expect_change_refused(&c, false, FS_EUNKNOWN_FIELD, "field 255");
    /* field number 0 and one above 255 on the wire */
    packed p;
    for (int k = 0; k < 2; k++) {
        ch_child_update(&c);
        packed_init(&p);
        CHECK_OK(msgpack_pack_array(&p.pk, 6));
        CHECK_OK(msgpack_pack_uint8(&p.pk, c.type));
        CHECK_OK(msgpack_pack_bin_with_body(&p.pk, c.record.b, 16));
        pack_push_clocks(&p.pk, &c);
        CHECK_OK(msgpack_pack_uint64(&p.pk, c.dseq));
        CHECK_OK(msgpack_pack_map(&p.pk, 1));
        CHECK_OK(msgpack_pack_uint64(&p.pk, k == 0 ? 0 : 257));
        CHECK_OK(msgpack_pack_nil(&p.pk));
        expect_refused(&p, false, FS_EUNKNOWN_FIELD, k == 0 ? "field 0 " : "field 257");
        packed_destroy(&p);
    }

    /* fields out of order, and a field twice */
    ch_child_update(&c);
    CHECK_INT(c.n_fields, ==, 2);
    change_field tmp = c.fields[0];
    c.fields[0] = c.fields[1];
    c.fields[1] = tmp;
    CHECK(c.fields[0].num > c.fields[1].num);
    pack(&p, &c, false);
    change d;
    fs_error e;
    int rc = decode_with(S, p.sb.data, p.sb.size, false, &d, &e, NULL);
    CHECK_INT(rc, !=, 0);
    CHECK_INT(rc, ==, FS_EDEC_TYPE);
    CHECK(strstr(e.msg, "ascending") != NULL);
    /* err.h promises a message naming the field involved: which one is out of order? */
    char num[16];
    snprintf(num, sizeof num, "field %u", c.fields[1].num);
    if (!strstr(e.msg, num) && !strstr(e.msg, "'name'"))
        fprintf(stderr, "message does not name the field: %s\n", e.msg);
    CHECK_SOFT(strstr(e.msg, num) || strstr(e.msg, "'name'"),
               "out-of-order message names no field");
    packed_destroy(&p);
    ch_child_update(&c);
    c.fields[1] = c.fields[0];
    expect_change_refused(&c, false, FS_EDEC_TYPE, "ascending");
    CHECK_INT(change_sort_fields(&c), ==, FS_EINVAL);
    /* more fields than CHANGE_MAX_FIELDS */
    packed_init(&p);
    CHECK_OK(msgpack_pack_array(&p.pk, 6));
    CHECK_OK(msgpack_pack_uint8(&p.pk, c.type));
    CHECK_OK(msgpack_pack_bin_with_body(&p.pk, c.record.b, 16));
    pack_push_clocks(&p.pk, &c);
    CHECK_OK(msgpack_pack_uint64(&p.pk, c.dseq));
    CHECK_OK(msgpack_pack_map(&p.pk, CHANGE_MAX_FIELDS + 1));
    for (int i = 0; i < CHANGE_MAX_FIELDS + 1; i++) {
        CHECK_OK(msgpack_pack_uint8(&p.pk, (uint8_t)(i + 1)));
        CHECK_OK(msgpack_pack_nil(&p.pk));
    }
    expect_refused(&p, false, FS_EDEC_COUNT, "fields");
    packed_destroy(&p);
}

/* ---- a message from a newer schema ----------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f);
    CHECK_OK(fseek(f, 0, SEEK_END));
    long n = ftell(f);
    CHECK_INT(n, >, 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf);
    CHECK_INT(fread(buf, 1, (size_t)n, f), ==, n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The shipped schema with version 2 and a field num 200 appended to child. New. */
static char *schema_v2_text(size_t *len)
{
    size_t n;
    char *v1 = read_file(schema_default_path(), &n);
    const char *ver = strstr(v1, "\nversion: 1\n");
    CHECK(ver);
    const char *child = strstr(v1, "\n  - name: child\n");
    CHECK(child);
    const char *next = strstr(child + 1, "\n  - name: "); /* the type after child */
    CHECK(next);
    static const char extra[] = "\n      - name: photo_note\n"
                                "        num: 200\n"
                                "        kind: text\n"
                                "        max_len: 100\n"
                                "        rule: lww\n"
                                "        label: {zh: 照片说明, en: Photo note}\n";
    char *v2 = malloc(n + sizeof extra + 1);
    CHECK(v2);
    size_t a = (size_t)(ver - v1), b = (size_t)(next - v1);
    memcpy(v2, v1, a);
    memcpy(v2 + a, "\nversion: 2\n", 12);
    memcpy(v2 + a + 12, v1 + a + 12, b - a - 12);
    memcpy(v2 + b, extra, sizeof extra - 1);
    memcpy(v2 + b + sizeof extra - 1, v1 + b, n - b);
    *len = n + sizeof extra - 1;
    v2[*len] = '\0';
    free(v1);
    return v2;
}

static void test_newer_schema(void)
{
    size_t len;
    char *text = schema_v2_text(&len);
    schema *s2 = NULL;
    fs_error e = {0};
    int rc = schema_load_mem("fieldsync-v2.yaml", text, len, &s2, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    CHECK_OK(rc);
    free(text);
    CHECK_INT(s2->version, ==, 2);
    CHECK_INT(S->version, ==, 1);
    const schema_type *child2 = schema_type_by_name(s2, "child");
    CHECK(child2);
    const schema_field *extra = schema_field_by_name(child2, "photo_note");
    CHECK(extra);
    CHECK_INT(extra->num, ==, 200);
    CHECK(!schema_field_by_num(type_named("child"), 200));

    /* an update and a create made by a version-2 device */
    for (int create = 0; create <= 1; create++) {
        change c;
        ch_child_update(&c);
        if (create) {
            ch_every_field(&c, type_named("child"), hlc_make(NOW, 3), role_named("visitor"));
        }
        c.fields[c.n_fields].num = extra->num;
        c.fields[c.n_fields].v.kind = VAL_STR;
        c.fields[c.n_fields].v.u.s.p = "在村口";
        c.fields[c.n_fields].v.u.s.len = (uint32_t)strlen("在村口");
        c.n_fields++;
        CHECK_OK(change_sort_fields(&c));
        CHECK_OK(change_validate(s2, &c, &e));
        CHECK_INT(change_validate(S, &c, &e), ==, FS_EUNKNOWN_FIELD);
        for (int full = 0; full <= 1; full++) {
            packed p;
            change d;
            /* version 2 reads it */
            uint8_t *cp = pack_decode(s2, &c, full, &p, &d);
            check_equal(&c, &d, full);
            free(cp);
            /* version 1 refuses it, naming the field number and the schema version */
            rc = decode_with(S, p.sb.data, p.sb.size, full, &d, &e, NULL);
            CHECK_INT(rc, ==, FS_EUNKNOWN_FIELD);
            CHECK(strstr(e.msg, "field 200") != NULL);
            CHECK(strstr(e.msg, "child") != NULL);
            CHECK(strstr(e.msg, "version 1") != NULL);
            /* and every prefix still fails cleanly under version 1 */
            for (size_t k = 0; k < p.sb.size; k++) {
                rc = decode_with(S, p.sb.data, k, full, &d, &e, NULL);
                CHECK_INT(rc, !=, 0);
            }
            packed_destroy(&p);
        }
    }
    /* a version-1 change reads the same under version 2 */
    change c;
    ch_child_update(&c);
    packed p;
    change d;
    uint8_t *cp = pack_decode(s2, &c, true, &p, &d);
    check_equal(&c, &d, true);
    free(cp);
    packed_destroy(&p);
    schema_free(s2);
}

static void test_helpers(void)
{
    change c;
    ch_child_update(&c);
    CHECK(change_field_get(&c, c.fields[1].num) == &c.fields[1]);
    CHECK(change_field_get(&c, 0) == NULL);
    fs_value a = {.kind = VAL_STR}, b = {.kind = VAL_STR};
    a.u.s.p = "张三";
    a.u.s.len = 6;
    b.u.s.p = "张三丰";
    b.u.s.len = 6; /* same first 6 bytes */
    CHECK(value_equal(&a, &b));
    b.u.s.len = 9;
    CHECK(!value_equal(&a, &b));
    fs_value n1 = {.kind = VAL_NIL}, i0 = {.kind = VAL_INT};
    CHECK(value_equal(&n1, &n1));
    CHECK(!value_equal(&n1, &i0)); /* nil is not 0 */
    /* every error code has a name and a text */
    for (int code = 0; code >= -70; code--) {
        CHECK(fs_strerror(code) != NULL);
        CHECK(fs_errname(code) != NULL);
    }
    CHECK_STR(fs_errname(FS_EVALUE_RANGE), "EVALUE_RANGE");
    CHECK_STR(fs_strerror(12345), "unknown error");
}

/* value_unpack_stored: the one decoder of stored values (store, ledger, SDK queries) */
static void test_stored_values(void)
{
    const schema_type *child = type_named("child");
    const schema_field *school = field_named(child, "school");
    const schema_field *grade = field_named(child, "grade");
    const schema_field *gtype = field_named(child, "guardian_type");
    fs_value v;
    /* empty buffer, NULL and nil: VAL_NIL */
    memset(&v, 0x5a, sizeof v);
    CHECK_OK(value_unpack_stored(school, NULL, 0, &v));
    CHECK_INT(v.kind, ==, VAL_NIL);
    const uint8_t nil[] = {0xc0};
    CHECK_OK(value_unpack_stored(grade, nil, sizeof nil, &v));
    CHECK_INT(v.kind, ==, VAL_NIL);
    /* text borrows the buffer; a text longer than this schema's max_len (stored under an
     * older schema) still loads */
    uint8_t txt[80];
    txt[0] = 0xd9; /* str 8 */
    txt[1] = 70;
    memset(txt + 2, 'a', 70);
    CHECK_INT(70, >, (long long)school->max_len);
    CHECK_OK(value_unpack_stored(school, txt, 72, &v));
    CHECK_INT(v.kind, ==, VAL_STR);
    CHECK_INT(v.u.s.len, ==, 70);
    CHECK(v.u.s.p == (const char *)txt + 2);
    /* an int outside the range and an enum index outside the values still load */
    const uint8_t big[] = {0x63}; /* 99 */
    CHECK_OK(value_unpack_stored(grade, big, sizeof big, &v));
    CHECK_INT(v.kind, ==, VAL_INT);
    CHECK_INT(v.u.i, ==, 99);
    const uint8_t idx[] = {0x7f};
    CHECK_OK(value_unpack_stored(gtype, idx, sizeof idx, &v));
    CHECK_INT(v.u.i, ==, 127);
    /* the wrong kind, or a truncated value: FS_EDEC_TYPE and *v untouched */
    fs_value keep = {.kind = VAL_INT, .u.i = 42};
    v = keep;
    CHECK_INT(value_unpack_stored(grade, txt, 72, &v), ==, FS_EDEC_TYPE);
    CHECK_INT(v.kind, ==, VAL_INT);
    CHECK_INT(v.u.i, ==, 42);
    CHECK_INT(value_unpack_stored(school, big, sizeof big, &v), ==, FS_EDEC_TYPE);
    CHECK_INT(value_unpack_stored(school, txt, 10, &v), ==, FS_EDEC_TYPE);
    CHECK_INT(v.u.i, ==, 42);
}

/* change_unpack checks each string's UTF-8 once, as it reads it, and says so in
 * decoded_by; change_recheck (the store's check) then skips only that scan, and only for the
 * schema that decoded the change: every other check still runs, and a change built in C (or
 * decoded against another schema) is checked in full. */
static void test_decoded_by(void)
{
    const schema_type *child = type_named("child");
    change c, d;
    ch_child_update(&c);
    CHECK(c.decoded_by == NULL);
    for (int full = 0; full <= 1; full++) {
        packed p;
        uint8_t *copy = pack_decode(S, &c, full, &p, &d);
        CHECK(d.decoded_by == S);
        fs_error e = {0};
        CHECK_OK(change_recheck(S, &d, &e));
        /* the other checks are not skipped */
        d.role = (uint8_t)S->n_roles; /* the server fills the role after decoding */
        CHECK_INT(change_recheck(S, &d, &e), ==, FS_EROLE);
        free(copy);
        packed_destroy(&p);
    }
    /* built in C with text that is not UTF-8: refused by both checks */
    static const char bad[] = {'\xe5', '\xbc', 'x', '\0'};
    ch_init(&c, child, hlc_make(NOW, 5), hlc_make(NOW, 1), 2, "李四", role_named("visitor"));
    ch_text(&c, child, "name", bad);
    fs_error e = {0};
    CHECK_INT(change_validate(S, &c, &e), ==, FS_EDEC_UTF8);
    CHECK_INT(change_recheck(S, &c, &e), ==, FS_EDEC_UTF8);
    /* decoded_by names another schema (another load of the same file): checked in full */
    schema *s2 = NULL;
    CHECK_OK(schema_load(schema_default_path(), &s2, &e));
    c.decoded_by = s2;
    CHECK_INT(change_recheck(S, &c, &e), ==, FS_EDEC_UTF8);
    schema_free(s2);
    /* and the wire's bad text never decodes: the one scan is the reader's */
    c.decoded_by = NULL;
    for (int full = 0; full <= 1; full++)
        expect_change_refused(&c, full, FS_EDEC_UTF8, "name");
}

/* ---- abbreviated record ids (push form, protocol §3.1) -------------------------------- */

/* change_unpack_push on an exact-size copy; the reader's contract as decode_with. */
static int decode_push(const void *bytes, size_t len, change *out, fs_error *e, uint8_t **copy)
{
    return decode_any(S, bytes, len, false, true, out, e, copy);
}

/* The push form of c (full id) with its record bin replaced by n bytes (the id's first n,
 * then 0x5a): [array6][type fixint][c4 10][16 bytes][rest] -> [..][c4 n][n bytes][rest]. */
static void splice_record(const change *c, size_t n, packed *out)
{
    packed full;
    pack(&full, c, false);
    const uint8_t *b = (const uint8_t *)full.sb.data;
    CHECK_INT(b[0], ==, 0x96);
    CHECK_INT(b[1], <, 0x80);
    CHECK_INT(b[2], ==, 0xc4);
    CHECK_INT(b[3], ==, 16);
    packed_init(out);
    msgpack_sbuffer_write(&out->sb, full.sb.data, 2);
    uint8_t id[32];
    memset(id, 0x5a, sizeof id);
    memcpy(id, c->record.b, 16);
    CHECK_OK(msgpack_pack_bin(&out->pk, n));
    CHECK_OK(msgpack_pack_bin_body(&out->pk, id, n));
    msgpack_sbuffer_write(&out->sb, full.sb.data + 20, full.sb.size - 20);
    packed_destroy(&full);
}

static void test_abbrev(void)
{
    const schema_type *child = type_named("child");
    change edit, create;
    ch_child_update(&edit);
    /* an edit whose base is the record's first version and a create, whose clocks are
     * relative to the id's time: the abbreviation keeps it */
    memcpy(edit.record.b, (const uint8_t[]){0x01, 0x9a, 0xcc, 0xe8, 0xcc, 0x00}, 6);
    edit.base = hlc_make(0x019acce8cc00ull, 0);
    edit.hlc = hlc_make(0x019acce8cc00ull + 86400000ull, 3);
    ch_init(&create, child, hlc_make(NOW, 0), 0, 7, "李四", role_named("visitor"));
    ch_text(&create, child, "name", "张三");
    const change *cases[] = {&edit, &create};
    for (int k = 0; k < 2; k++) {
        change c = *cases[k];
        packed fullp, ab;
        pack(&fullp, &c, false);
        c.abbrev = true;
        pack(&ab, &c, false);
        /* 7 bytes shorter: c4 09 + the id's first 9 bytes, everything else the same */
        CHECK_INT(ab.sb.size + 7, ==, fullp.sb.size);
        const uint8_t *a = (const uint8_t *)ab.sb.data, *f = (const uint8_t *)fullp.sb.data;
        CHECK(!memcmp(a, f, 2));
        CHECK_INT(a[2], ==, 0xc4);
        CHECK_INT(a[3], ==, CHANGE_ABBREV_LEN);
        CHECK(!memcmp(a + 4, c.record.b, CHANGE_ABBREV_LEN));
        CHECK(!memcmp(a + 4 + CHANGE_ABBREV_LEN, f + 20, fullp.sb.size - 20));
        /* the full form never carries an abbreviation */
        packed no;
        packed_init(&no);
        CHECK_INT(change_pack(&no.pk, &c, true), ==, FS_EINVAL);
        packed_destroy(&no);
        /* a decoder without a resolver refuses it cleanly */
        expect_refused(&ab, false, FS_EREC_ABBREV, "abbreviation");
        /* the push decoder returns it flagged: first 9 bytes, the rest zero, clocks from the
         * abbreviation's time */
        change d;
        fs_error e;
        uint8_t *cp;
        CHECK_OK(decode_push(ab.sb.data, ab.sb.size, &d, &e, &cp));
        CHECK(d.abbrev);
        CHECK(!memcmp(d.record.b, c.record.b, CHANGE_ABBREV_LEN));
        for (int i = CHANGE_ABBREV_LEN; i < 16; i++)
            CHECK_INT(d.record.b[i], ==, 0);
        CHECK(d.hlc == c.hlc);
        CHECK(d.base == c.base);
        CHECK(d.dseq == c.dseq);
        CHECK_INT(d.n_fields, ==, c.n_fields);
        for (uint32_t i = 0; i < d.n_fields; i++)
            CHECK(value_equal(&d.fields[i].v, &c.fields[i].v));
        packed again; /* packs to the same bytes */
        pack(&again, &d, false);
        CHECK_INT(again.sb.size, ==, ab.sb.size);
        CHECK(!memcmp(again.sb.data, ab.sb.data, ab.sb.size));
        packed_destroy(&again);
        free(cp);
        /* a full id through the push decoder: not flagged */
        CHECK_OK(decode_push(fullp.sb.data, fullp.sb.size, &d, &e, &cp));
        CHECK(!d.abbrev);
        CHECK_INT(rid_cmp(&d.record, &c.record), ==, 0);
        free(cp);
        /* every prefix: a decoding error, position unchanged */
        for (size_t n = 0; n < ab.sb.size; n++) {
            int rc = decode_push(ab.sb.data, n, &d, &e, NULL);
            if (!is_dec_err(rc))
                fprintf(stderr, "abbreviated prefix %zu/%zu: %s (%s)\n", n, ab.sb.size,
                        fs_errname(rc), e.msg);
            CHECK(is_dec_err(rc));
        }
        /* any other length is a bad id, for both decoders; 9 bytes in the full form too */
        const size_t bad[] = {0, 1, 6, 8, 10, 15, 17};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            packed x;
            splice_record(cases[k], bad[i], &x);
            int rc = decode_push(x.sb.data, x.sb.size, &d, &e, NULL);
            if (rc != FS_EBAD_ID)
                fprintf(stderr, "record bin of %zu bytes: %s (%s)\n", bad[i], fs_errname(rc),
                        e.msg);
            CHECK_INT(rc, ==, FS_EBAD_ID);
            expect_refused(&x, false, FS_EBAD_ID, "record id");
            packed_destroy(&x);
        }
        packed_destroy(&ab);
        packed_destroy(&fullp);
    }
    /* the full form with a 9-byte record: EBAD_ID (the log never holds abbreviations) */
    packed fp;
    pack(&fp, &edit, true);
    packed x;
    packed_init(&x);
    msgpack_sbuffer_write(&x.sb, fp.sb.data, 2);
    CHECK_OK(msgpack_pack_bin(&x.pk, CHANGE_ABBREV_LEN));
    CHECK_OK(msgpack_pack_bin_body(&x.pk, edit.record.b, CHANGE_ABBREV_LEN));
    msgpack_sbuffer_write(&x.sb, fp.sb.data + 20, fp.sb.size - 20);
    expect_refused(&x, true, FS_EBAD_ID, "record id");
    packed_destroy(&x);
    packed_destroy(&fp);
}

/* ---- the packer's bytes (sync/mpw.h) against msgpack-c's -------------------------------
 *
 * change_pack and value_pack write through mpw, which must produce exactly the bytes
 * msgpack-c's packer does (a re-sent change must be the same bytes; stored bodies are
 * compared). ref_* below is the packing as it was written with msgpack-c's calls; random
 * changes with every value kind, integers at each encoding's edges, strings and binaries
 * around each length boundary and around mpw's buffer size, both forms, compared byte for
 * byte. Then a callback that fails part-way: FS_ENOMEM, not a success. */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int ref_value(msgpack_packer *pk, const fs_value *v)
{
    switch (v->kind) {
    case VAL_NIL: return msgpack_pack_nil(pk);
    case VAL_INT: return msgpack_pack_int64(pk, v->u.i);
    case VAL_BOOL: return v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case VAL_STR:
        return msgpack_pack_str(pk, v->u.s.len) | msgpack_pack_str_body(pk, v->u.s.p, v->u.s.len);
    case VAL_REF: return msgpack_pack_bin(pk, 16) | msgpack_pack_bin_body(pk, v->u.ref.b, 16);
    case VAL_SET:
        return msgpack_pack_array(pk, 2) | msgpack_pack_uint64(pk, v->u.set.add) |
               msgpack_pack_uint64(pk, v->u.set.rm);
    }
    return -1;
}

static uint64_t ref_id_ms(const rid_t *id)
{
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id->b[i];
    return ms;
}

static int ref_clock(msgpack_packer *pk, uint64_t clock, uint64_t ref_ms, bool pair)
{
    int64_t d = (int64_t)hlc_physical_ms(clock) - (int64_t)ref_ms;
    uint16_t counter = (uint16_t)(clock & 0xffff);
    if (!counter && !pair && d >= 0)
        return msgpack_pack_uint64(pk, (uint64_t)d);
    return msgpack_pack_array(pk, 2) | msgpack_pack_int64(pk, d) |
           msgpack_pack_uint16(pk, counter);
}

static int ref_change(msgpack_packer *pk, const change *c, bool full)
{
    uint32_t id_len = c->abbrev ? CHANGE_ABBREV_LEN : 16;
    int rc = msgpack_pack_array(pk, full ? 9 : 6);
    rc |= msgpack_pack_uint8(pk, c->type);
    rc |= msgpack_pack_bin(pk, id_len) | msgpack_pack_bin_body(pk, c->record.b, id_len);
    if (full) {
        rc |= msgpack_pack_uint64(pk, c->hlc) | msgpack_pack_uint64(pk, c->base);
    } else {
        uint64_t id_ms = ref_id_ms(&c->record);
        rc |= ref_clock(pk, c->hlc, c->base ? hlc_physical_ms(c->base) : id_ms, false);
        rc |= c->base ? ref_clock(pk, c->base, id_ms, hlc_physical_ms(c->base) == id_ms)
                      : msgpack_pack_uint8(pk, 0);
    }
    rc |= msgpack_pack_uint64(pk, c->dseq);
    if (full)
        rc |= msgpack_pack_bin(pk, 16) | msgpack_pack_bin_body(pk, c->device.b, 16) |
              msgpack_pack_str(pk, c->author_len) |
              msgpack_pack_str_body(pk, c->author, c->author_len) |
              msgpack_pack_uint8(pk, c->role);
    rc |= msgpack_pack_map(pk, c->n_fields);
    for (uint32_t i = 0; i < c->n_fields; i++)
        rc |= msgpack_pack_uint8(pk, c->fields[i].num) | ref_value(pk, &c->fields[i].v);
    return rc;
}

/* An integer near one of msgpack's encoding edges, or anywhere. */
static int64_t edge_int(void)
{
    static const int64_t edges[] = {INT64_MIN, -2147483649ll, -2147483648ll, -32769, -32768,
                                    -129, -128, -33, -32, -1, 0, 1, 127, 128, 255, 256, 65535,
                                    65536, 4294967295ll, 4294967296ll, INT64_MAX};
    uint64_t r = rnd();
    if (r % 4 == 0)
        return (int64_t)rnd();
    int64_t v = edges[r / 4 % (sizeof edges / sizeof edges[0])];
    int64_t k = (int64_t)(rnd() % 3); /* v - 1, v or v + 1, within int64 */
    return v == INT64_MIN ? v + k : v == INT64_MAX ? v - k : v + k - 1;
}

/* A length near 32, 256, 240 (mpw's buffer), 65536, or small. */
static uint32_t edge_len(void)
{
    static const uint32_t edges[] = {0, 1, 31, 32, 200, 239, 240, 241, 255, 256, 300, 65535,
                                     65536};
    uint32_t v = edges[rnd() % (sizeof edges / sizeof edges[0])];
    return v + (uint32_t)(rnd() % 3) - (v ? 1 : 0);
}

static void test_packer_bytes(void)
{
    static char text[70000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    msgpack_packer pa, pb;
    msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
    msgpack_packer_init(&pb, &b, msgpack_sbuffer_write);
    for (int n = 0; n < 3000; n++) {
        change c;
        memset(&c, 0, offsetof(change, fields));
        c.type = (uint8_t)rnd();
        for (int i = 0; i < 16; i++) {
            c.record.b[i] = (uint8_t)rnd();
            c.device.b[i] = (uint8_t)rnd();
        }
        uint64_t id_ms = ref_id_ms(&c.record) & ((1ull << 48) - 1);
        uint64_t ms = (id_ms + rnd() % 100000 - 50000) & ((1ull << 48) - 1);
        c.hlc = hlc_make(ms, rnd() % 3 ? 0 : (uint16_t)rnd());
        switch (rnd() % 4) {
        case 0: c.base = 0; break;
        case 1: c.base = hlc_make(id_ms, (uint16_t)(rnd() % 2)); break; /* a pair */
        case 2: c.base = hlc_make((id_ms + rnd() % 1000) & ((1ull << 48) - 1), 0); break;
        default: c.base = rnd(); break;
        }
        c.dseq = (uint64_t)edge_int();
        c.author = text;
        c.author_len = rnd() % 2 ? (uint32_t)(rnd() % 70) : edge_len() % 300;
        c.role = (uint8_t)rnd();
        c.n_fields = rnd() % 5 == 0 ? CHANGE_MAX_FIELDS : (uint32_t)(rnd() % 6);
        for (uint32_t i = 0; i < c.n_fields; i++) {
            change_field *f = &c.fields[i];
            f->num = (uint8_t)rnd();
            memset(&f->v, 0, sizeof f->v);
            f->v.kind = (uint8_t)(rnd() % 6);
            switch (f->v.kind) {
            case VAL_INT: f->v.u.i = edge_int(); break;
            case VAL_BOOL: f->v.u.b = rnd() % 2; break;
            case VAL_STR:
                f->v.u.s.p = text;
                f->v.u.s.len = rnd() % 50 == 0 ? edge_len() : (uint32_t)(rnd() % 260);
                break;
            case VAL_REF: memcpy(f->v.u.ref.b, c.record.b, 16); break;
            case VAL_SET:
                f->v.u.set.add = (uint64_t)edge_int();
                f->v.u.set.rm = rnd() >> (rnd() % 64);
                break;
            }
        }
        for (int full = 0; full < 2; full++) {
            c.abbrev = !full && rnd() % 4 == 0;
            a.size = b.size = 0;
            CHECK_OK(change_pack(&pa, &c, full));
            CHECK_INT(ref_change(&pb, &c, full), ==, 0);
            CHECK_INT(a.size, ==, b.size);
            CHECK(memcmp(a.data, b.data, a.size) == 0);
        }
        for (uint32_t i = 0; i < c.n_fields; i++) {
            a.size = b.size = 0;
            CHECK_OK(value_pack(&pa, &c.fields[i].v));
            CHECK_INT(ref_value(&pb, &c.fields[i].v), ==, 0);
            CHECK_INT(a.size, ==, b.size);
            CHECK(memcmp(a.data, b.data, a.size) == 0);
        }
    }
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* A write callback that fails once `left` bytes were taken. */
static int failing_write(void *data, const char *buf, size_t len)
{
    (void)buf;
    size_t *left = data;
    if (len > *left)
        return -1;
    *left -= len;
    return 0;
}

static void test_packer_failure(void)
{
    static char text[1000];
    memset(text, 'x', sizeof text);
    change c;
    ch_init(&c, &S->types[0], hlc_make(NOW, 0), 0, 1, "visitor", 0);
    /* a long text between two short values: after a failed write of the text, the short
     * one after it must not make the whole a success */
    c.n_fields = 3;
    for (int i = 0; i < 3; i++)
        c.fields[i].num = (uint8_t)(i + 1);
    c.fields[0].v = (fs_value){.kind = VAL_INT, .u.i = 5};
    c.fields[1].v = (fs_value){.kind = VAL_STR, .u.s = {text, sizeof text}};
    c.fields[2].v = (fs_value){.kind = VAL_INT, .u.i = 7};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer ok;
    msgpack_packer_init(&ok, &sb, msgpack_sbuffer_write);
    CHECK_OK(change_pack(&ok, &c, true));
    const size_t size = sb.size;
    msgpack_sbuffer_destroy(&sb);
    CHECK_INT(size, >, sizeof text);
    /* every capacity short of the whole change fails, wherever the failing write falls */
    for (size_t cap = 0; cap <= size; cap++) {
        size_t left = cap;
        msgpack_packer pk;
        msgpack_packer_init(&pk, &left, failing_write);
        CHECK_INT(change_pack(&pk, &c, true), ==, cap < size ? FS_ENOMEM : 0);
        left = cap;
        CHECK_INT(value_pack(&pk, &c.fields[1].v), ==, cap < sizeof text + 3 ? FS_ENOMEM : 0);
    }
}

int main(void)
{
    fs_error e = {0};
    int rc = schema_load(schema_default_path(), &S, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    CHECK_OK(rc);
    NOW = wall_ms();
    CHECK_OK(rid_new(&DEV, NOW));
    test_round_trip_every_type();
    test_round_trip_named();
    test_truncated();
    test_bad_header();
    test_compact_clocks();
    test_bad_header_values();
    test_bad_values();
    test_bad_wire_values();
    test_unknown_and_order();
    test_newer_schema();
    test_helpers();
    test_stored_values();
    test_decoded_by();
    test_abbrev();
    test_packer_bytes();
    test_packer_failure();
    schema_free(S);
    if (soft_checks_failed) {
        fprintf(stderr, "change: %d soft check(s) failed\n", soft_checks_failed);
        return 1;
    }
    printf("change: ok\n");
    return 0;
}

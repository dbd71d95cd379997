/*
 * test_wire — protocol v1 frames and message codecs (sync/wire.c, docs/protocol.md §2-§4).
 *
 * Frames: raw and compressed round trips with the shipped dictionaries
 * (wire_dicts_load(FS_SCHEMA_DIR)), the compressed form whose zstd frame carries the content
 * size (the older form with a 4-byte length and no content size is refused); the declared
 * length checked against the cap
 * BEFORE any decompression; unknown dictionary; reserved flag bits; every truncation of a
 * frame; zstd data that decompresses to another length than declared; garbage; a codec
 * without dictionaries.
 *
 * Messages: every type packed and read back field by field (hello, welcome, push with
 * changes, push_result with accepted / duplicate / refused, pull, changes, subscribe,
 * ledger, ping, pong, error); for each message, every shorter element count gives
 * FS_EDEC_MISSING, extra trailing elements (of any type, nested) are skipped, every element
 * replaced by one of the wrong MessagePack type gives FS_EDEC_TYPE, and every prefix of the
 * body fails cleanly (each prefix in an exact-size heap block, so a read past the end is an
 * ASan error in the sanitizer build). Limits: a push or changes array claiming 2^32-1 changes
 * fails before anything is reserved (the reader never allocates); a hello token over 128
 * bytes is FS_EDEC_TOOBIG. The bytes of wire_pack_result (through sync/mpw.h) against
 * msgpack-c's own calls, at every integer and length boundary.
 *
 * Changes are built from the schema by type and field NAME, never by number. This test links
 * only libfssync (no fakedata). CHECK_SOFT checks do not abort: they print, the test goes on
 * and main() fails at the end (tests/support/softcheck.h).
 */
#include "change.h"
#include "check.h"
#include "support/softcheck.h" /* CHECK_SOFT */
#include "hlc.h"
#include "mpr.h"
#include "schema.h"
#include "wire.h"

#include <msgpack.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader_advanced: magicless frames */
#include <zstd.h>

static schema *S;
static wire_dicts *D;
static uint32_t DICT;   /* the latest shipped dictionary id */

/* ---- helpers ------------------------------------------------------------------------- */

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

/* An exact-size heap copy: reading one byte past len is an ASan error. */
static uint8_t *dup_exact(const void *p, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    CHECK(b);
    if (len)
        memcpy(b, p, len);
    return b;
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

static rid_t id_from(uint8_t seed)
{
    rid_t id;
    for (int i = 0; i < 16; i++)
        id.b[i] = (uint8_t)(seed * 31 + i * 7 + 1);
    id.b[6] = (uint8_t)((id.b[6] & 0x0f) | 0x70);
    return id;
}

static void set_str(change *c, const schema_type *t, const char *field, const char *s)
{
    change_field *cf = &c->fields[c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = field_named(t, field)->num;
    cf->v.kind = VAL_STR;
    cf->v.u.s.p = s;
    cf->v.u.s.len = (uint32_t)strlen(s);
}

static void set_int(change *c, const schema_type *t, const char *field, int64_t i)
{
    change_field *cf = &c->fields[c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = field_named(t, field)->num;
    cf->v.kind = VAL_INT;
    cf->v.u.i = i;
}

static void set_enum(change *c, const schema_type *t, const char *field, const char *code)
{
    int i = schema_enum_by_code(field_named(t, field), code);
    if (i < 0)
        fprintf(stderr, "field '%s' has no value '%s'\n", field, code);
    CHECK(i >= 0);
    set_int(c, t, field, i);
}

static void set_bool(change *c, const schema_type *t, const char *field, bool b)
{
    change_field *cf = &c->fields[c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = field_named(t, field)->num;
    cf->v.kind = VAL_BOOL;
    cf->v.u.b = b;
}

static void set_ref(change *c, const schema_type *t, const char *field, const rid_t *id)
{
    change_field *cf = &c->fields[c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = field_named(t, field)->num;
    cf->v.kind = VAL_REF;
    cf->v.u.ref = *id;
}

static const uint64_t T0 = 1725235200000ULL; /* 2024-09-02 08:00 in Chongqing, ms */

static void header(change *c, const char *type, uint8_t idseed, uint64_t hlc, uint64_t base,
                   uint64_t dseq)
{
    memset(c, 0, offsetof(change, fields));
    c->type = type_named(type)->id;
    c->record = id_from(idseed);
    c->hlc = hlc;
    c->base = base;
    c->dseq = dseq;
    c->device = id_from(200);
    c->author = "cq-visitor-017";
    c->author_len = (uint32_t)strlen(c->author);
    c->role = (uint8_t)schema_role_by_name(S, "visitor");
    c->n_fields = 0;
}

static const char VISIT_NOTE[] =
    "孩子由奶奶照顾，日常起居基本正常。家中为两层砖混房，屋内较整洁。早饭一般吃面条，"
    "午饭在学校吃营养餐。冬天靠烧柴取暖，已提醒注意通风防止一氧化碳中毒。";

/* Three changes: a child create, a visit create, a single-field edit. */
static void sample_changes(change out[3])
{
    const schema_type *child = type_named("child"), *visit = type_named("visit");
    change *c = &out[0];
    header(c, "child", 1, hlc_make(T0, 0), 0, 41);
    set_str(c, child, "name", "王小梅");
    set_enum(c, child, "gender", "female");
    set_int(c, child, "birth_date", 20140317);
    set_str(c, child, "id_number", "500238201403174028");
    set_str(c, child, "village", "cq-wx-hx-01");
    set_str(c, child, "school", "巫溪县宁厂镇中心小学");
    set_int(c, child, "grade", 5);
    set_enum(c, child, "guardian_type", "grandparent");
    set_bool(c, child, "in_difficulty", true);
    set_enum(c, child, "status", "on_file");
    CHECK_OK(change_sort_fields(c));

    c = &out[1];
    header(c, "visit", 2, hlc_make(T0 + 3600000, 3), 0, 42);
    rid_t cid = out[0].record;
    set_ref(c, visit, "child", &cid);
    set_str(c, visit, "visitor_name", "冉建华");
    set_enum(c, visit, "kind", "home_visit");
    set_int(c, visit, "visited_at", (int64_t)(T0 / 1000) + 3000);
    set_str(c, visit, "living_situation", VISIT_NOTE);
    set_str(c, visit, "mood", "孩子性格开朗，见到走访人员主动打招呼。");
    set_bool(c, visit, "parent_contact_arranged", true);
    set_int(c, visit, "follow_up_due", 20241015);
    CHECK_OK(change_sort_fields(c));

    c = &out[2];
    header(c, "child", 1, hlc_make(T0 + 7200000, 0), hlc_make(T0, 0), 43);
    set_int(c, child, "grade", 6);
    for (int i = 0; i < 3; i++) {
        fs_error e = {0};
        int rc = change_validate(S, &out[i], &e);
        if (rc)
            fprintf(stderr, "sample change %d: %s\n", i, e.msg);
        CHECK_OK(rc);
    }
}

static void check_change_equal(const change *a, const change *b, bool full)
{
    CHECK_INT(a->type, ==, b->type);
    CHECK(!memcmp(a->record.b, b->record.b, 16));
    CHECK_INT(a->hlc, ==, b->hlc);
    CHECK_INT(a->base, ==, b->base);
    CHECK_INT(a->dseq, ==, b->dseq);
    CHECK_INT(a->n_fields, ==, b->n_fields);
    for (uint32_t i = 0; i < a->n_fields; i++) {
        CHECK_INT(a->fields[i].num, ==, b->fields[i].num);
        CHECK(value_equal(&a->fields[i].v, &b->fields[i].v));
    }
    if (full) {
        CHECK(!memcmp(a->device.b, b->device.b, 16));
        CHECK_INT(a->author_len, ==, b->author_len);
        CHECK(!memcmp(a->author, b->author, a->author_len));
        CHECK_INT(a->role, ==, b->role);
    }
}

/* ---- frames --------------------------------------------------------------------------- */

static void set_declared(uint8_t *f, size_t n)
{
    f[2] = (uint8_t)(n >> 24);
    f[3] = (uint8_t)(n >> 16);
    f[4] = (uint8_t)(n >> 8);
    f[5] = (uint8_t)n;
}

/* Decodes a copy of frame (exact size) and returns the result code. */
static int decode_copy(wire_codec *c, const uint8_t *frame, size_t len, size_t max_body)
{
    uint8_t *f = dup_exact(frame, len);
    const uint8_t *body;
    size_t blen;
    int rc = wire_frame_decode(c, f, len, max_body, &body, &blen);
    free(f);
    return rc;
}

static void test_frames(void)
{
    wire_codec *c;
    CHECK_OK(wire_codec_new(D, &c));

    /* a compressible body: a push of the three sample changes */
    change ch[3];
    sample_changes(ch);
    packed p;
    packed_init(&p);
    CHECK_OK(wire_pack_push_header(&p.pk, 7, 3));
    for (int i = 0; i < 3; i++)
        CHECK_OK(change_pack(&p.pk, &ch[i], false));
    const uint8_t *body = (const uint8_t *)p.sb.data;
    size_t blen = p.sb.size;

    /* raw round trip, with headroom: the body is borrowed from the input */
    uint8_t *f;
    size_t flen;
    /* protocol §2: a raw body that opens with an array header is sent without header */
    CHECK_OK(wire_frame_encode(c, body, blen, 0, 16, &f, &flen));
    CHECK_INT(flen, ==, blen);
    CHECK(!memcmp(f, body, blen));
    uint8_t *bare_body = dup_exact(f, flen);
    const uint8_t *out;
    size_t out_len;
    CHECK_OK(wire_frame_decode(c, bare_body, flen, WIRE_MAX_FRAME, &out, &out_len));
    CHECK(out == bare_body);
    CHECK_INT(out_len, ==, blen);
    CHECK_OK(wire_frame_decode(c, bare_body, flen, blen, &out, &out_len)); /* at the cap */
    CHECK_INT(decode_copy(c, bare_body, flen, blen - 1), ==, FS_EDEC_TOOBIG);
    for (size_t n = 1; n < blen; n++) /* a cut body is the message reader's to refuse */
        CHECK_OK(decode_copy(c, bare_body, n, WIRE_MAX_FRAME));
    static const uint8_t arr16[] = {0xdc, 0x00, 0x01, 0x09}, arr32[] = {0xdd, 0, 0, 0, 1, 9};
    CHECK_OK(wire_frame_decode(c, arr16, sizeof arr16, WIRE_MAX_FRAME, &out, &out_len));
    CHECK(out == arr16 && out_len == sizeof arr16);
    CHECK_OK(wire_frame_decode(c, arr32, sizeof arr32, WIRE_MAX_FRAME, &out, &out_len));
    CHECK(out == arr32 && out_len == sizeof arr32);
    static const uint8_t fixmap[] = {0x81, 0x01, 0x02}, str[] = {0xa1, 'x'};
    CHECK_INT(decode_copy(c, fixmap, sizeof fixmap, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    CHECK_INT(decode_copy(c, str, sizeof str, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    /* a body that does not open with an array keeps the 2-byte header (0, 0) */
    CHECK_OK(wire_frame_encode(c, fixmap, sizeof fixmap, 0, 0, &f, &flen));
    CHECK_INT(flen, ==, sizeof fixmap + 2);
    CHECK(f[0] == 0 && f[1] == 0 && !memcmp(f + 2, fixmap, sizeof fixmap));
    /* and the header form of an array body is read too */
    uint8_t *raw = malloc(blen + 2);
    CHECK(raw);
    raw[0] = 0;
    raw[1] = 0;
    memcpy(raw + 2, body, blen);
    size_t raw_len = blen + 2;
    CHECK_OK(wire_frame_decode(c, raw, raw_len, WIRE_MAX_FRAME, &out, &out_len));
    CHECK(out == raw + 2);
    CHECK_INT(out_len, ==, blen);
    CHECK(!memcmp(out, body, blen));
    /* an empty raw body is a valid frame (the message reader refuses it) */
    CHECK_OK(wire_frame_decode(c, raw, 2, WIRE_MAX_FRAME, &out, &out_len));
    CHECK_INT(out_len, ==, 0);

    /* compressed round trip with the shipped dictionary: flags, dictionary, then a zstd
     * frame that carries the body's length itself (protocol §2) */
    CHECK_OK(wire_frame_encode(c, body, blen, DICT, 16, &f, &flen));
    CHECK_INT(f[0], ==, WIRE_FLAG_ZSTD);
    CHECK_INT(f[1], ==, DICT);
    CHECK_INT(f[2], !=, 0); /* a zstd header with a content size never starts with 0 */
    CHECK_INT(flen, <, blen);
    uint8_t *z = dup_exact(f, flen);
    size_t z_len = flen;
    CHECK_OK(wire_frame_decode(c, z, z_len, WIRE_MAX_FRAME, &out, &out_len));
    CHECK_INT(out_len, ==, blen);
    CHECK(!memcmp(out, body, blen));
    /* the content size exactly at the cap is fine */
    CHECK_OK(wire_frame_decode(c, z, z_len, blen, &out, &out_len));
    /* protocol §2: zstd frames carry no magic number, dictionary id or checksum, and do carry
     * the content size; put the magic number back and any zstd decoder reads them */
    ZSTD_frameHeader zfh;
    CHECK(memcmp(z + 2, "\x28\xb5\x2f\xfd", 4) != 0);
    CHECK_INT(ZSTD_getFrameHeader_advanced(&zfh, z + 2, z_len - 2, ZSTD_f_zstd1_magicless), ==,
              0);
    CHECK_INT(zfh.dictID, ==, 0);
    CHECK_INT(zfh.checksumFlag, ==, 0);
    CHECK_INT(zfh.frameContentSize, ==, blen);
    size_t fcs_at = zfh.headerSize - (z[2] >> 6 == 0 ? 1 : 1u << (z[2] >> 6)); /* its low byte */
    char dpath[4096];
    snprintf(dpath, sizeof dpath, "%s/dict-%u.zdict", FS_SCHEMA_DIR, (unsigned)DICT);
    FILE *df = fopen(dpath, "rb");
    CHECK(df);
    static uint8_t dict_bytes[1 << 20];
    size_t dict_len = fread(dict_bytes, 1, sizeof dict_bytes, df);
    fclose(df);
    {
        size_t std_len = z_len - 2 + 4;
        uint8_t *std = malloc(std_len), *plain = malloc(blen + 1);
        CHECK(std && plain);
        memcpy(std, "\x28\xb5\x2f\xfd", 4);
        memcpy(std + 4, z + 2, z_len - 2);
        CHECK_INT(ZSTD_getDictID_fromFrame(std, std_len), ==, 0);
        CHECK_INT(ZSTD_getFrameContentSize(std, std_len), ==, blen);
        ZSTD_DCtx *dx = ZSTD_createDCtx();
        CHECK(dx);
        size_t got = ZSTD_decompress_usingDict(dx, plain, blen + 1, std, std_len, dict_bytes,
                                               dict_len);
        CHECK(!ZSTD_isError(got));
        CHECK_INT(got, ==, blen);
        CHECK(!memcmp(plain, body, blen));
        ZSTD_freeDCtx(dx);
        free(std);
        free(plain);
    }

    /* the form before content sizes (bytes 2-5 the length, zstd without content size) is
     * refused: the receiver could not bound the body from the zstd header (protocol §2) */
    uint8_t *l;
    size_t l_len;
    {
        ZSTD_CCtx *cx = ZSTD_createCCtx();
        CHECK(cx);
        ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, 3);
        ZSTD_CCtx_setParameter(cx, ZSTD_c_dictIDFlag, 0);
        ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, 0);
        ZSTD_CCtx_setParameter(cx, ZSTD_c_contentSizeFlag, 0);
        ZSTD_CCtx_setParameter(cx, ZSTD_c_format, ZSTD_f_zstd1_magicless);
        CHECK(!ZSTD_isError(ZSTD_CCtx_loadDictionary(cx, dict_bytes, dict_len)));
        size_t cap = 6 + ZSTD_compressBound(blen);
        uint8_t *tmp = malloc(cap);
        CHECK(tmp);
        size_t n = ZSTD_compress2(cx, tmp + 6, cap - 6, body, blen);
        CHECK(!ZSTD_isError(n));
        CHECK_INT(tmp[6], ==, 0); /* no content size: the header's first byte is 0 */
        tmp[0] = WIRE_FLAG_ZSTD;
        tmp[1] = (uint8_t)DICT;
        set_declared(tmp, blen);
        l = dup_exact(tmp, n + 6);
        l_len = n + 6;
        free(tmp);
        ZSTD_freeCCtx(cx);
    }
    CHECK_INT(decode_copy(c, l, l_len, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);

    /* the level: bodies up to WIRE_SMALL_BODY bytes are compressed at WIRE_SMALL_LEVEL (a
     * lone child create here), larger ones at WIRE_LEVEL (the three-change push above) */
    {
        packed one;
        packed_init(&one);
        CHECK_OK(wire_pack_push_header(&one.pk, 1, 1));
        CHECK_OK(change_pack(&one.pk, &ch[0], false));
        CHECK_INT(one.sb.size, <=, WIRE_SMALL_BODY);
        CHECK_INT(blen, >, WIRE_SMALL_BODY);
        size_t at[2][2]; /* [small body, push][WIRE_LEVEL, WIRE_SMALL_LEVEL]: zstd bytes */
        ZSTD_CCtx *cx = ZSTD_createCCtx();
        uint8_t *tmp = malloc(ZSTD_compressBound(blen));
        CHECK(cx && tmp);
        for (int b = 0; b < 2; b++)
            for (int lv = 0; lv < 2; lv++) {
                ZSTD_CCtx_reset(cx, ZSTD_reset_session_and_parameters);
                ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel,
                                       lv ? WIRE_SMALL_LEVEL : WIRE_LEVEL);
                ZSTD_CCtx_setParameter(cx, ZSTD_c_dictIDFlag, 0);
                ZSTD_CCtx_setParameter(cx, ZSTD_c_format, ZSTD_f_zstd1_magicless);
                CHECK(!ZSTD_isError(ZSTD_CCtx_loadDictionary(cx, dict_bytes, dict_len)));
                at[b][lv] = ZSTD_compress2(cx, tmp, ZSTD_compressBound(blen),
                                           b ? (const void *)body : one.sb.data,
                                           b ? blen : one.sb.size);
                CHECK(!ZSTD_isError(at[b][lv]));
            }
        CHECK_INT(at[0][1], <, at[0][0]); /* else this body cannot tell the levels apart */
        CHECK_OK(wire_frame_encode(c, one.sb.data, one.sb.size, DICT, 0, &f, &flen));
        CHECK_INT(f[0], ==, WIRE_FLAG_ZSTD);
        CHECK_INT(flen - 2, <=, at[0][1]);
        CHECK_OK(wire_frame_decode(c, f, flen, WIRE_MAX_FRAME, &out, &out_len));
        CHECK_INT(out_len, ==, one.sb.size);
        CHECK(!memcmp(out, one.sb.data, out_len));
        CHECK_INT(z_len - 2, ==, at[1][0]); /* the larger push: level 3 exactly */
        printf("frames: lone create %zu B -> %zu B (level %d would give %zu)\n", one.sb.size,
               flen, WIRE_LEVEL, at[0][0] + 2);
        free(tmp);
        ZSTD_freeCCtx(cx);
        packed_destroy(&one);
    }

    /* dictionaries the encoder does not have, and bodies that do not shrink, go raw */
    CHECK_OK(wire_frame_encode(c, body, blen, 200, 0, &f, &flen));
    CHECK_INT(flen, ==, blen);
    CHECK(!memcmp(f, body, blen));
    static const uint8_t tiny[] = {0x92, 0x09, 0x2a}; /* [9, 42] */
    CHECK_OK(wire_frame_encode(c, tiny, sizeof tiny, DICT, 0, &f, &flen));
    CHECK_INT(flen, ==, sizeof tiny);
    CHECK(!memcmp(f, tiny, sizeof tiny));

    /* size limits: raw over the cap, declared length over the cap BEFORE decompression
     * (the data after the header is not zstd at all: had it been decompressed the code would
     * be FS_ECOMPRESS) */
    CHECK_INT(decode_copy(c, raw, raw_len, blen - 1), ==, FS_EDEC_TOOBIG);
    CHECK_INT(decode_copy(c, z, z_len, blen - 1), ==, FS_EDEC_TOOBIG);
    uint8_t bomb[64];
    memset(bomb, 0xab, sizeof bomb);
    bomb[0] = WIRE_FLAG_ZSTD;
    bomb[1] = (uint8_t)DICT;
    set_declared(bomb, WIRE_MAX_FRAME + 1); /* a 4-byte length where zstd's header goes */
    CHECK_INT(decode_copy(c, bomb, sizeof bomb, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);
    /* a zstd header claiming 1 GiB (4-byte content size, window byte) or 2^63 (8 bytes) */
    static const uint8_t gib[] = {0x80, 0x00, 0x00, 0x00, 0x00, 0x40};
    memcpy(bomb + 2, gib, sizeof gib);
    CHECK_INT(decode_copy(c, bomb, sizeof bomb, WIRE_MAX_FRAME), ==, FS_EDEC_TOOBIG);
    static const uint8_t huge8[] = {0xc0, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x80};
    memcpy(bomb + 2, huge8, sizeof huge8);
    CHECK_INT(decode_copy(c, bomb, sizeof bomb, WIRE_MAX_FRAME), ==, FS_EDEC_TOOBIG);
    /* 100 bytes claimed, garbage after the header */
    static const uint8_t small[] = {0x20, 100};
    memcpy(bomb + 2, small, sizeof small);
    CHECK_INT(decode_copy(c, bomb, sizeof bomb, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);
    /* a zstd header without content size that does not start with 0 (a checksum flag):
     * the receiver could not check the size first, so it is refused */
    bomb[2] = 0x04;
    CHECK_INT(decode_copy(c, bomb, sizeof bomb, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);

    /* unknown dictionary, or compressed without one, in both forms */
    uint8_t *m = dup_exact(z, z_len);
    m[1] = 200;
    CHECK_INT(decode_copy(c, m, z_len, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);
    m[1] = 0;
    CHECK_INT(decode_copy(c, m, z_len, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);
    memcpy(m, z, z_len);

    /* reserved flag bits, on raw and compressed frames; a dictionary id on a raw frame */
    for (int bit = 1; bit < 8; bit++) {
        raw[0] = (uint8_t)(1u << bit);
        CHECK_INT(decode_copy(c, raw, raw_len, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
        m[0] = (uint8_t)(WIRE_FLAG_ZSTD | 1u << bit);
        CHECK_INT(decode_copy(c, m, z_len, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    }
    raw[0] = 0;
    m[0] = WIRE_FLAG_ZSTD;
    raw[1] = (uint8_t)DICT;
    CHECK_INT(decode_copy(c, raw, raw_len, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    raw[1] = 0;

    /* truncation: no header, a cut header, every cut of the zstd data (both forms) */
    CHECK_INT(decode_copy(c, raw, 0, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    CHECK_INT(decode_copy(c, raw, 1, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    for (size_t n = 0; n < 3; n++)
        CHECK_INT(decode_copy(c, z, n, WIRE_MAX_FRAME), ==, FS_EDEC_FRAME);
    for (size_t n = 3; n < z_len; n++) {
        int rc = decode_copy(c, z, n, WIRE_MAX_FRAME);
        if (rc != FS_ECOMPRESS)
            fprintf(stderr, "compressed frame cut to %zu of %zu bytes\n", n, z_len);
        CHECK_INT(rc, ==, FS_ECOMPRESS);
    }

    /* decompresses to another length than declared: the content size's low byte changed */
    for (int delta = 1; delta < 4; delta++) {
        m[2 + fcs_at] ^= (uint8_t)delta;
        CHECK_INT(decode_copy(c, m, z_len, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);
        m[2 + fcs_at] ^= (uint8_t)delta;
    }
    CHECK_OK(decode_copy(c, m, z_len, WIRE_MAX_FRAME));
    /* a flipped byte anywhere after the flags: an error, or another body — never a crash;
     * and never more than the cap or another length than the frame says */
    for (size_t i = 2; i < z_len; i++) {
        m[i] ^= 0x5a;
        uint8_t *cp = dup_exact(m, z_len);
        int rc = wire_frame_decode(c, cp, z_len, WIRE_MAX_FRAME, &out, &out_len);
        CHECK(rc == 0 || rc == FS_ECOMPRESS || rc == FS_EDEC_TOOBIG || rc == FS_EDEC_FRAME);
        if (rc == 0)
            CHECK_INT(out_len, ==, blen);
        free(cp);
        m[i] ^= 0x5a;
    }

    /* a codec without dictionaries sends raw and cannot read compressed frames */
    wire_codec *bare;
    CHECK_OK(wire_codec_new(NULL, &bare));
    CHECK_OK(wire_frame_encode(bare, body, blen, DICT, 0, &f, &flen));
    CHECK_INT(flen, ==, blen);
    CHECK(!memcmp(f, body, blen));
    CHECK_INT(decode_copy(bare, z, z_len, WIRE_MAX_FRAME), ==, FS_ECOMPRESS);
    CHECK_OK(decode_copy(bare, raw, raw_len, WIRE_MAX_FRAME));
    wire_codec_free(bare);

    free(m);
    free(l);
    free(raw);
    free(bare_body);
    free(z);
    packed_destroy(&p);
    wire_codec_free(c);
    printf("frames: ok (dictionary %u, %zu-byte push -> %zu bytes compressed)\n", DICT, blen,
           z_len);
}

/* ---- messages ------------------------------------------------------------------------- */

/* Reads one whole message of the expected type, including the changes or results that
 * follow a header, and the trailing elements; returns the first error. */
typedef struct decoded {
    uint32_t type, count;
    wire_hello hello;
    wire_welcome welcome;
    uint64_t batch, cursor, seq, nonce;
    uint32_t n, max;
    bool more;
    const char *scope;
    uint32_t scope_len;
    change ch[4];
    wire_result res[4];
    wire_error err;
} decoded;

static int read_message(const uint8_t *buf, size_t len, uint32_t max_batch, decoded *d,
                        bool *at_end)
{
    mpr r;
    mpr_init(&r, buf, len);
    fs_error e = {0};
    memset(d, 0, sizeof *d);
    *at_end = false;
    int rc = wire_read_type(&r, &d->type, &d->count);
    if (rc)
        return rc;
    uint32_t used = 0;
    switch (d->type) {
    case MSG_HELLO: rc = wire_read_hello(&r, d->count, &d->hello, &e); break;
    case MSG_WELCOME: rc = wire_read_welcome(&r, d->count, &d->welcome, &e); break;
    case MSG_PUSH:
        rc = wire_read_push(&r, d->count, max_batch, &d->batch, &d->n, &e);
        for (uint32_t i = 0; !rc && i < d->n; i++)
            rc = i < 4 ? change_unpack(&r, S, false, &d->ch[i], &e) : FS_EINVAL;
        used = 3;
        break;
    case MSG_PUSH_RESULT:
        rc = wire_read_push_result(&r, d->count, &d->batch, &d->n, &e);
        for (uint32_t i = 0; !rc && i < d->n; i++)
            rc = i < 4 ? wire_read_result(&r, &d->res[i], &e) : FS_EINVAL;
        used = 3;
        break;
    case MSG_PULL: rc = wire_read_pull(&r, d->count, &d->cursor, &d->max, &e); break;
    case MSG_CHANGES:
        rc = wire_read_changes(&r, d->count, &d->cursor, &d->more, &d->n, &e);
        for (uint32_t i = 0; !rc && i < d->n; i++)
            rc = i < 4 ? change_unpack(&r, S, true, &d->ch[i], &e) : FS_EINVAL;
        used = 4;
        break;
    case MSG_SUBSCRIBE: rc = wire_read_subscribe(&r, d->count, &d->scope, &d->scope_len, &e); break;
    case MSG_LEDGER:
        rc = wire_read_ledger(&r, d->count, &d->seq, &d->scope, &d->scope_len, &e);
        if (!rc)
            rc = change_unpack(&r, S, true, &d->ch[0], &e);
        used = 4;
        break;
    case MSG_PING:
    case MSG_PONG: rc = wire_read_ping(&r, d->count, &d->nonce, &e); break;
    case MSG_ERROR: rc = wire_read_error(&r, d->count, &d->err, &e); break;
    default: return FS_EINVAL;
    }
    if (!rc && used)
        rc = wire_skip_rest(&r, d->count - used);
    if (!rc) {
        CHECK(e.code == 0);
        *at_end = mpr_left(&r) == 0;
    } else {
        /* every decoding error says what it was about */
        CHECK(e.code == 0 || e.msg[0] != '\0');
    }
    return rc;
}

typedef struct msg_case {
    const char *name;
    uint32_t required;    /* elements including the type */
    uint32_t optional;    /* packed elements after the required ones (hello's pending) */
    uint8_t *buf;
    size_t len;
} msg_case;

static msg_case make_case(const char *name, uint32_t required, packed *p)
{
    msg_case m = {name, required, 0, dup_exact(p->sb.data, p->sb.size), p->sb.size};
    msgpack_sbuffer_clear(&p->sb);
    return m;
}

/* Start offsets of the top-level elements of a message array, and the header size. */
static uint32_t split(const msg_case *m, const uint8_t *start[70], size_t *hdr)
{
    mpr r;
    mpr_init(&r, m->buf, m->len);
    uint32_t n;
    CHECK_OK(mpr_array(&r, 64, &n));
    *hdr = (size_t)(r.p - m->buf);
    for (uint32_t i = 0; i < n; i++) {
        start[i] = r.p;
        CHECK_OK(mpr_skip(&r, MPR_MAX_DEPTH));
    }
    start[n] = r.p;
    CHECK(r.p == r.end);
    return n;
}

/* A message made of elements [0, keep) of m, then element `replace` swapped for rep (if
 * replace < keep), then extra bytes holding n_extra more elements. */
static uint8_t *rebuild(const msg_case *m, uint32_t keep, uint32_t replace, const uint8_t *rep,
                        size_t rep_len, const uint8_t *extra, size_t extra_len, uint32_t n_extra,
                        size_t *len)
{
    const uint8_t *st[70];
    size_t hdr;
    uint32_t n = split(m, st, &hdr);
    CHECK(keep <= n);
    packed p;
    packed_init(&p);
    CHECK_OK(msgpack_pack_array(&p.pk, keep + n_extra));
    for (uint32_t i = 0; i < keep; i++) {
        if (i == replace)
            msgpack_sbuffer_write(&p.sb, (const char *)rep, rep_len);
        else
            msgpack_sbuffer_write(&p.sb, (const char *)st[i], (size_t)(st[i + 1] - st[i]));
    }
    if (extra_len)
        msgpack_sbuffer_write(&p.sb, (const char *)extra, extra_len);
    *len = p.sb.size;
    uint8_t *out = dup_exact(p.sb.data, p.sb.size);
    packed_destroy(&p);
    return out;
}

static void test_message_case(const msg_case *m)
{
    decoded d;
    bool end;
    const uint8_t *st[70];
    size_t hdr;
    uint32_t n = split(m, st, &hdr);
    CHECK_INT(n, ==, m->required + m->optional);

    /* as packed */
    CHECK_OK(read_message(m->buf, m->len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end);

    /* fewer elements than required: FS_EDEC_MISSING (an empty array too) */
    for (uint32_t keep = 0; keep < m->required; keep++) {
        size_t len;
        uint8_t *b = rebuild(m, keep, UINT32_MAX, NULL, 0, NULL, 0, 0, &len);
        int rc = read_message(b, len, WIRE_MAX_BATCH, &d, &end);
        if (rc != FS_EDEC_MISSING)
            fprintf(stderr, "%s with %u of %u elements\n", m->name, keep, m->required);
        CHECK_INT(rc, ==, FS_EDEC_MISSING);
        free(b);
    }

    /* trailing elements of any type are skipped, and the reader ends at the end */
    static const uint8_t extra[] = {
        0xa6, 'f', 'u', 't', 'u', 'r', 'e',       /* "future" */
        0x81, 0x01, 0x93, 0x01, 0x02, 0x03,       /* {1: [1, 2, 3]} */
        0xc0,                                     /* nil */
        0xcf, 1, 2, 3, 4, 5, 6, 7, 8,             /* uint64 */
        0xc4, 0x02, 0xbe, 0xef,                   /* bin 2 */
        0x92, 0x91, 0x80, 0xc3,                   /* [[{}], true] */
    };
    size_t len;
    uint8_t *b = rebuild(m, n, UINT32_MAX, NULL, 0, extra, sizeof extra, 6, &len);
    int rc = read_message(b, len, WIRE_MAX_BATCH, &d, &end);
    if (rc)
        fprintf(stderr, "%s with 6 trailing elements: %s\n", m->name, fs_errname(rc));
    CHECK_OK(rc);
    CHECK(end);
    free(b);

    /* each element (after the type) of the wrong MessagePack type: FS_EDEC_TYPE */
    static const uint8_t a_uint[] = {0x07};
    static const uint8_t a_str[] = {0xa1, 'x'};
    for (uint32_t i = 1; i < n; i++) {
        mpr_type t;
        mpr r;
        mpr_init(&r, st[i], (size_t)(st[i + 1] - st[i]));
        t = mpr_peek(&r);
        bool is_num = t == MPR_UINT || t == MPR_INT || t == MPR_BOOL;
        const uint8_t *rep = is_num ? a_str : a_uint;
        size_t rep_len = is_num ? sizeof a_str : sizeof a_uint;
        b = rebuild(m, n, i, rep, rep_len, NULL, 0, 0, &len);
        rc = read_message(b, len, WIRE_MAX_BATCH, &d, &end);
        if (rc != FS_EDEC_TYPE)
            fprintf(stderr, "%s element %u of the wrong type: %s\n", m->name, i,
                    fs_errname(rc));
        CHECK_INT(rc, ==, FS_EDEC_TYPE);
        free(b);
    }

    /* every prefix fails cleanly */
    for (size_t cut = 0; cut < m->len; cut++) {
        b = dup_exact(m->buf, cut);
        rc = read_message(b, cut, WIRE_MAX_BATCH, &d, &end);
        if (rc >= 0)
            fprintf(stderr, "%s cut to %zu of %zu bytes decoded\n", m->name, cut, m->len);
        CHECK_INT(rc, <, 0);
        free(b);
    }

    /* the message type itself of the wrong kind, or out of range */
    b = rebuild(m, n, 0, a_str, sizeof a_str, NULL, 0, 0, &len);
    CHECK_INT(read_message(b, len, WIRE_MAX_BATCH, &d, &end), ==, FS_EDEC_TYPE);
    free(b);
    static const uint8_t big_type[] = {0xcd, 0x01, 0x00}; /* 256 */
    b = rebuild(m, n, 0, big_type, sizeof big_type, NULL, 0, 0, &len);
    CHECK_INT(read_message(b, len, WIRE_MAX_BATCH, &d, &end), ==, FS_EDEC_TYPE);
    free(b);
}

static void test_messages(void)
{
    change ch[3];
    sample_changes(ch);
    packed p;
    packed_init(&p);
    msg_case cases[16];
    int nc = 0;
    decoded d;
    bool end;

    /* hello */
    static const char token[] = "fs1.8Qm2vT0cZk4hJr9yXw3nLp6bDs1gFa7eUi5oYt2";
    wire_hello h = {.device = id_from(9), .token = token, .token_len = sizeof token - 1,
                    .schema_version = 1, .client_hlc = hlc_make(T0, 5), .acked_dseq = 40,
                    .cursor = 123456, .dict = DICT, .agent = "fieldsync-device/0.1 (测试)",
                    .agent_len = (uint32_t)strlen("fieldsync-device/0.1 (测试)"),
                    .pending = 17, .has_pending = true};
    CHECK_OK(wire_pack_hello(&p.pk, &h));
    cases[nc] = make_case("hello", 9, &p);
    cases[nc].optional = 1; /* pending: packed since the first revision, optional to read */
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_HELLO && d.count == 10);
    CHECK(d.hello.has_pending);
    CHECK_INT(d.hello.pending, ==, 17);
    {
        /* a hello of the first revision (9 elements) reads, without pending */
        size_t len9;
        uint8_t *b9 = rebuild(&cases[nc], 9, UINT32_MAX, NULL, 0, NULL, 0, 0, &len9);
        decoded d9;
        CHECK_OK(read_message(b9, len9, WIRE_MAX_BATCH, &d9, &end));
        CHECK(end && d9.count == 9 && !d9.hello.has_pending && d9.hello.pending == 0);
        CHECK_INT(d9.hello.cursor, ==, 123456);
        free(b9);
    }
    CHECK(!memcmp(d.hello.device.b, h.device.b, 16));
    CHECK_INT(d.hello.token_len, ==, h.token_len);
    CHECK(!memcmp(d.hello.token, token, h.token_len));
    CHECK_INT(d.hello.schema_version, ==, 1);
    CHECK_INT(d.hello.client_hlc, ==, h.client_hlc);
    CHECK_INT(d.hello.acked_dseq, ==, 40);
    CHECK_INT(d.hello.cursor, ==, 123456);
    CHECK_INT(d.hello.dict, ==, DICT);
    CHECK_INT(d.hello.agent_len, ==, h.agent_len);
    CHECK(!memcmp(d.hello.agent, h.agent, h.agent_len));
    nc++;

    /* welcome */
    wire_welcome w = {.server_hlc = hlc_make(T0 + 5, 1), .server_dseq = 39, .schema_version = 1,
                      .max_frame = WIRE_MAX_FRAME, .max_batch = WIRE_MAX_BATCH, .dict = DICT,
                      .user = "cq-visitor-017", .user_len = 14,
                      .role = (uint32_t)schema_role_by_name(S, "volunteer"),
                      .log_end = 1ull << 40};
    CHECK_OK(wire_pack_welcome(&p.pk, &w));
    cases[nc] = make_case("welcome", 10, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_WELCOME);
    CHECK_INT(d.welcome.server_hlc, ==, w.server_hlc);
    CHECK_INT(d.welcome.server_dseq, ==, 39);
    CHECK_INT(d.welcome.schema_version, ==, 1);
    CHECK_INT(d.welcome.max_frame, ==, WIRE_MAX_FRAME);
    CHECK_INT(d.welcome.max_batch, ==, WIRE_MAX_BATCH);
    CHECK_INT(d.welcome.dict, ==, DICT);
    CHECK_INT(d.welcome.user_len, ==, 14);
    CHECK(!memcmp(d.welcome.user, "cq-visitor-017", 14));
    CHECK_INT(d.welcome.role, ==, w.role);
    CHECK_INT(d.welcome.log_end, ==, 1ull << 40);
    nc++;

    /* push with three changes (push form) */
    CHECK_OK(wire_pack_push_header(&p.pk, 77, 3));
    for (int i = 0; i < 3; i++)
        CHECK_OK(change_pack(&p.pk, &ch[i], false));
    cases[nc] = make_case("push", 3, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_PUSH);
    CHECK_INT(d.batch, ==, 77);
    CHECK_INT(d.n, ==, 3);
    for (int i = 0; i < 3; i++)
        check_change_equal(&d.ch[i], &ch[i], false);
    /* a push at most max_batch long: one over is refused */
    CHECK_INT(read_message(cases[nc].buf, cases[nc].len, 2, &d, &end), <, 0);
    nc++;

    /* push_result: accepted, duplicate, refused */
    static const char why[] = "role 'visitor' may not lower risk_level (需要乡镇复核)";
    wire_result res[3] = {{.dseq = 41, .status = 0},
                          {.dseq = 42, .status = 1},
                          {.dseq = 43, .status = 2, .code = FS_EROLE, .text = why,
                           .text_len = sizeof why - 1}};
    CHECK_OK(wire_pack_push_result_header(&p.pk, 77, 3));
    for (int i = 0; i < 3; i++)
        CHECK_OK(wire_pack_result(&p.pk, &res[i]));
    cases[nc] = make_case("push_result", 3, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_PUSH_RESULT);
    CHECK_INT(d.batch, ==, 77);
    CHECK_INT(d.n, ==, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(d.res[i].dseq, ==, res[i].dseq);
        CHECK_INT(d.res[i].status, ==, res[i].status);
    }
    CHECK_INT(d.res[2].code, ==, FS_EROLE);
    CHECK_INT(d.res[2].text_len, ==, sizeof why - 1);
    CHECK(!memcmp(d.res[2].text, why, sizeof why - 1));
    nc++;

    /* pull */
    CHECK_OK(wire_pack_pull(&p.pk, 9876543210ULL, 500));
    cases[nc] = make_case("pull", 3, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_PULL);
    CHECK_INT(d.cursor, ==, 9876543210ULL);
    CHECK_INT(d.max, ==, 500);
    nc++;

    /* changes (full form) */
    CHECK_OK(wire_pack_changes_header(&p.pk, 5000, true, 3));
    for (int i = 0; i < 3; i++)
        CHECK_OK(change_pack(&p.pk, &ch[i], true));
    cases[nc] = make_case("changes", 4, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_CHANGES);
    CHECK_INT(d.cursor, ==, 5000);
    CHECK(d.more);
    CHECK_INT(d.n, ==, 3);
    for (int i = 0; i < 3; i++)
        check_change_equal(&d.ch[i], &ch[i], true);
    nc++;

    /* subscribe */
    CHECK_OK(wire_pack_subscribe(&p.pk, "cq-wx-hx-01"));
    cases[nc] = make_case("subscribe", 2, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_SUBSCRIBE);
    CHECK_INT(d.scope_len, ==, 11);
    CHECK(!memcmp(d.scope, "cq-wx-hx-01", 11));
    nc++;

    /* ledger (full form) */
    CHECK_OK(wire_pack_ledger_header(&p.pk, 5001, "cq-wx-hx-01"));
    CHECK_OK(change_pack(&p.pk, &ch[1], true));
    cases[nc] = make_case("ledger", 4, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_LEDGER);
    CHECK_INT(d.seq, ==, 5001);
    CHECK_INT(d.scope_len, ==, 11);
    check_change_equal(&d.ch[0], &ch[1], true);
    nc++;

    /* ping / pong */
    CHECK_OK(wire_pack_ping(&p.pk, false, 0xfeedbeefcafeULL));
    cases[nc] = make_case("ping", 2, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_PING);
    CHECK_INT(d.nonce, ==, 0xfeedbeefcafeULL);
    nc++;
    CHECK_OK(wire_pack_ping(&p.pk, true, 0xfeedbeefcafeULL));
    cases[nc] = make_case("pong", 2, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_PONG);
    CHECK_INT(d.nonce, ==, 0xfeedbeefcafeULL);
    nc++;

    /* error */
    CHECK_OK(wire_pack_error(&p.pk, WERR_BUSY, "store is locked; nothing stored", false));
    cases[nc] = make_case("error", 4, &p);
    CHECK_OK(read_message(cases[nc].buf, cases[nc].len, WIRE_MAX_BATCH, &d, &end));
    CHECK(end && d.type == MSG_ERROR);
    CHECK_INT(d.err.code, ==, WERR_BUSY);
    CHECK_INT(d.err.text_len, ==, strlen("store is locked; nothing stored"));
    CHECK(!d.err.closes);
    CHECK_STR(wire_err_name(WERR_BUSY), "BUSY");
    CHECK_STR(wire_err_name(99), "UNKNOWN");
    nc++;

    for (int i = 0; i < nc; i++)
        test_message_case(&cases[i]);

    /* results: too few elements for the status, wrong types, unknown status */
    static const struct { uint8_t b[8]; size_t n; int want; } bad_results[] = {
        {{0x91, 0x01}, 2, FS_EDEC_MISSING},                  /* [1] */
        {{0x92, 0x01, 0x02}, 3, FS_EDEC_MISSING},            /* [1, 2]: refused, no code */
        {{0x93, 0x01, 0x02, 0xd0, 0xc3}, 5, FS_EDEC_MISSING}, /* [1, 2, -61] */
        {{0x92, 0x01, 0x03}, 3, FS_EVALUE_RANGE},            /* status 3 */
        {{0x92, 0xa1, 'x', 0x00}, 4, FS_EDEC_TYPE},          /* ["x", 0] */
        {{0x94, 0x01, 0x02, 0xa1, 'x', 0xa0}, 6, FS_EDEC_TYPE}, /* code "x" */
        {{0x94, 0x01, 0x02, 0xd0, 0xc3, 0x07}, 6, FS_EDEC_TYPE}, /* text 7 */
        {{0x81, 0x01, 0x00}, 3, FS_EDEC_TYPE},               /* {1: 0} */
    };
    for (size_t i = 0; i < sizeof bad_results / sizeof bad_results[0]; i++) {
        uint8_t *b = dup_exact(bad_results[i].b, bad_results[i].n);
        mpr r;
        mpr_init(&r, b, bad_results[i].n);
        wire_result wr;
        fs_error e = {0};
        int rc = wire_read_result(&r, &wr, &e);
        if (rc != bad_results[i].want)
            fprintf(stderr, "bad result %zu: %s (%s)\n", i, fs_errname(rc), e.msg);
        CHECK_INT(rc, ==, bad_results[i].want);
        free(b);
    }
    /* an accepted result with extra elements: skipped */
    {
        static const uint8_t ok4[] = {0x94, 0x05, 0x00, 0xc0, 0xa0};
        mpr r;
        mpr_init(&r, ok4, sizeof ok4);
        wire_result wr;
        CHECK_OK(wire_read_result(&r, &wr, NULL));
        CHECK_INT(wr.dseq, ==, 5);
        CHECK_INT(mpr_left(&r), ==, 0);
    }

    /* a change inside a push whose record id is 15 bytes: FS_EBAD_ID; an unknown type */
    {
        const uint8_t *st[70];
        size_t hdr;
        split(&cases[2], st, &hdr); /* push: [3, 77, [changes]] */
        mpr r;
        mpr_init(&r, st[2], (size_t)(st[3] - st[2]));
        uint32_t n;
        CHECK_OK(mpr_array(&r, 16, &n));
        size_t off = (size_t)(r.p - cases[2].buf); /* first change */
        uint8_t *b = dup_exact(cases[2].buf, cases[2].len);
        CHECK_INT(b[off], ==, 0x96);     /* push form: 6 elements */
        CHECK_INT(b[off + 2], ==, 0xc4); /* record: bin 8 */
        b[off + 3] = 15;                 /* ... of 15 bytes */
        CHECK_INT(read_message(b, cases[2].len, WIRE_MAX_BATCH, &d, &end), ==, FS_EBAD_ID);
        b[off + 3] = 16;
        b[off + 1] = 0x7f;               /* record type 127 */
        CHECK_INT(read_message(b, cases[2].len, WIRE_MAX_BATCH, &d, &end), ==, FS_EUNKNOWN_TYPE);
        free(b);
    }

    for (int i = 0; i < nc; i++)
        free(cases[i].buf);
    packed_destroy(&p);
    printf("messages: ok (%d message types, each with missing, extra, mistyped elements and "
           "every prefix)\n",
           nc);
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_limits(void)
{
    decoded d;
    bool end;
    fs_error e = {0};

    /* push whose array header claims 2^32-1 changes, followed by a little data: refused
     * before anything could be reserved (mpr never allocates; the count is checked against
     * the cap and the bytes left), with the position left where it was */
    static const uint8_t huge[] = {0x93, 0x03, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff,
                                   0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0};
    for (size_t len = 8; len <= sizeof huge; len++) {
        uint8_t *b = dup_exact(huge, len);
        int rc = read_message(b, len, WIRE_MAX_BATCH, &d, &end);
        CHECK(rc == FS_EDEC_TOOBIG || rc == FS_EDEC_COUNT);
        /* even a receiver with no batch cap refuses it: the bytes are not there (wire.c
         * reports a count over the bytes left as TOOBIG when more than 5 bytes follow) */
        rc = read_message(b, len, UINT32_MAX, &d, &end);
        CHECK(rc == FS_EDEC_TOOBIG || rc == FS_EDEC_COUNT);
        mpr r;
        mpr_init(&r, b, len);
        uint32_t type, count, n;
        uint64_t batch;
        CHECK_OK(wire_read_type(&r, &type, &count));
        const uint8_t *before = r.p;
        CHECK_INT(wire_read_push(&r, count, UINT32_MAX, &batch, &n, &e), <, 0);
        CHECK(r.p >= before && r.p <= before + 1); /* at most the batch id was consumed */
        free(b);
    }
    /* the same for changes (pull answers) and push results */
    static const uint8_t huge_changes[] = {0x94, 0x06, 0x01, 0xc3, 0xdd, 0xff, 0xff,
                                           0xff, 0xff, 0xc0, 0xc0, 0xc0};
    CHECK_INT(read_message(huge_changes, sizeof huge_changes, WIRE_MAX_BATCH, &d, &end), ==,
              FS_EDEC_COUNT);
    static const uint8_t huge_results[] = {0x93, 0x04, 0x01, 0xdd, 0x7f, 0xff,
                                           0xff, 0xff, 0xc0, 0xc0, 0xc0};
    CHECK_INT(read_message(huge_results, sizeof huge_results, WIRE_MAX_BATCH, &d, &end), ==,
              FS_EDEC_COUNT);
    /* a push of max_batch + 1 (tiny) changes with the bytes present: FS_EDEC_TOOBIG */
    {
        packed p;
        packed_init(&p);
        CHECK_OK(wire_pack_push_header(&p.pk, 1, WIRE_MAX_BATCH + 1));
        for (int i = 0; i < WIRE_MAX_BATCH + 1; i++)
            msgpack_pack_nil(&p.pk);
        CHECK_INT(read_message((const uint8_t *)p.sb.data, p.sb.size, WIRE_MAX_BATCH, &d, &end),
                  ==, FS_EDEC_TOOBIG);
        packed_destroy(&p);
    }
    /* a message array of more than 64 elements is not a message */
    {
        packed p;
        packed_init(&p);
        msgpack_pack_array(&p.pk, 65);
        msgpack_pack_uint8(&p.pk, MSG_PING);
        for (int i = 0; i < 64; i++)
            msgpack_pack_uint8(&p.pk, 1);
        CHECK_INT(read_message((const uint8_t *)p.sb.data, p.sb.size, WIRE_MAX_BATCH, &d, &end),
                  ==, FS_EDEC_COUNT);
        packed_destroy(&p);
    }
    /* a body that is not an array */
    static const uint8_t not_array[] = {0x81, 0x01, 0x09};
    CHECK_INT(read_message(not_array, sizeof not_array, WIRE_MAX_BATCH, &d, &end), ==,
              FS_EDEC_TYPE);

    /* hello token: 128 bytes are fine, 129 are FS_EDEC_TOOBIG */
    char tok[WIRE_MAX_TOKEN + 2];
    memset(tok, 'a', sizeof tok);
    for (uint32_t n = WIRE_MAX_TOKEN; n <= WIRE_MAX_TOKEN + 1; n++) {
        packed p;
        packed_init(&p);
        wire_hello h = {.device = id_from(3), .token = tok, .token_len = n, .schema_version = 1,
                        .agent = "", .agent_len = 0};
        CHECK_OK(wire_pack_hello(&p.pk, &h));
        uint8_t *b = dup_exact(p.sb.data, p.sb.size);
        int rc = read_message(b, p.sb.size, WIRE_MAX_BATCH, &d, &end);
        if (n <= WIRE_MAX_TOKEN) {
            CHECK_OK(rc);
            CHECK_INT(d.hello.token_len, ==, n);
        } else {
            CHECK_INT(rc, ==, FS_EDEC_TOOBIG);
        }
        free(b);
        packed_destroy(&p);
    }
    /* a device id of 15 bytes: FS_EBAD_ID; a token that is not UTF-8: FS_EDEC_UTF8 */
    {
        packed p;
        packed_init(&p);
        wire_hello h = {.device = id_from(3), .token = "\xff\xfe", .token_len = 2,
                        .schema_version = 1, .agent = "", .agent_len = 0};
        CHECK_OK(wire_pack_hello(&p.pk, &h));
        uint8_t *b = dup_exact(p.sb.data, p.sb.size);
        CHECK_INT(read_message(b, p.sb.size, WIRE_MAX_BATCH, &d, &end), ==, FS_EDEC_UTF8);
        CHECK_INT(b[2], ==, 0xc4);
        b[3] = 15;
        CHECK_INT(read_message(b, p.sb.size, WIRE_MAX_BATCH, &d, &end), ==, FS_EBAD_ID);
        free(b);
        packed_destroy(&p);
    }

    /* error texts are cut to WIRE_MAX_TEXT bytes, and what is sent must still be readable */
    {
        char text[700];
        memset(text, 'x', sizeof text - 1);
        text[sizeof text - 1] = '\0';
        packed p;
        packed_init(&p);
        CHECK_OK(wire_pack_error(&p.pk, WERR_INTERNAL, text, true));
        CHECK_OK(read_message((const uint8_t *)p.sb.data, p.sb.size, WIRE_MAX_BATCH, &d, &end));
        CHECK_INT(d.err.text_len, ==, WIRE_MAX_TEXT);
        CHECK(d.err.closes);
        msgpack_sbuffer_clear(&p.sb);
        /* 600 bytes of Chinese: byte 512 falls inside a character */
        char zh[700] = "";
        while (strlen(zh) + 3 < 600)
            strcat(zh, "监");
        CHECK_OK(wire_pack_error(&p.pk, WERR_INTERNAL, zh, true));
        int rc = read_message((const uint8_t *)p.sb.data, p.sb.size, WIRE_MAX_BATCH, &d, &end);
        CHECK_SOFT(rc == 0, "wire_pack_error cuts text inside a UTF-8 character; the peer "
                            "refuses the message with EDEC_UTF8");
        packed_destroy(&p);
    }
    /* an error code outside int32 must not be silently truncated */
    {
        static const uint8_t big_code[] = {0x94, 0x0b, 0xcf, 0, 0, 0, 1, 0, 0, 0, 1, 0xa0, 0xc2};
        int rc = read_message(big_code, sizeof big_code, WIRE_MAX_BATCH, &d, &end);
        CHECK_SOFT(rc == FS_EVALUE_RANGE,
                   "wire_read_error truncates a code outside int32 instead of refusing it");
    }
    printf("limits: ok\n");
}

/* wire_pack_result writes through mpw (sync/mpw.h): its bytes must be msgpack-c's. Results
 * of every status, dseqs and codes at each integer encoding's edges, texts around each
 * length boundary and mpw's buffer, against the same packing written with msgpack-c. */
static void test_result_bytes(void)
{
    static char text[70000];
    memset(text, 'r', sizeof text);
    static const uint64_t dseqs[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295ull,
                                     4294967296ull, UINT64_MAX};
    static const int32_t codes[] = {0, -1, -31, -32, -33, -69, -127, -128, -129, -32768,
                                    -32769, INT32_MIN, 5, 200, 70000};
    static const uint32_t lens[] = {0, 1, 31, 32, 200, 239, 240, 241, 255, 256, 65535, 65536};
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    msgpack_packer pa, pb;
    msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
    msgpack_packer_init(&pb, &b, msgpack_sbuffer_write);
    int n = 0;
    for (size_t i = 0; i < sizeof dseqs / sizeof dseqs[0]; i++)
        for (uint8_t st = 0; st < 3; st++)
            for (size_t k = 0; k < (st == 2 ? sizeof codes / sizeof codes[0] : 1); k++)
                for (size_t l = 0; l < (st == 2 ? sizeof lens / sizeof lens[0] : 1); l++) {
                    wire_result r = {.dseq = dseqs[i], .status = st, .code = codes[k],
                                     .text = l % 5 == 4 ? NULL : text,
                                     .text_len = l % 5 == 4 ? 0 : lens[l]};
                    a.size = b.size = 0;
                    CHECK_OK(wire_pack_result(&pa, &r));
                    bool refused = st == 2;
                    int rc = msgpack_pack_array(&pb, refused ? 4 : 2) |
                             msgpack_pack_uint64(&pb, r.dseq) | msgpack_pack_uint8(&pb, st);
                    if (refused)
                        rc |= msgpack_pack_int32(&pb, r.code) |
                              msgpack_pack_str(&pb, r.text_len) |
                              msgpack_pack_str_body(&pb, r.text ? r.text : "", r.text_len);
                    CHECK_INT(rc, ==, 0);
                    CHECK_INT(a.size, ==, b.size);
                    CHECK(memcmp(a.data, b.data, a.size) == 0);
                    n++;
                }
    CHECK_INT(n, >, 2000);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

int main(void)
{
    fs_error e = {0};
    int rc = schema_load(schema_default_path(), &S, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    CHECK_OK(rc);
    rc = wire_dicts_load(FS_SCHEMA_DIR, &D, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    CHECK_OK(rc);
    DICT = wire_dicts_latest(D);
    if (DICT == 0)
        fprintf(stderr, "no dictionary in %s (schema/dict-N.zdict): run bench/train_dict\n",
                FS_SCHEMA_DIR);
    CHECK_INT(DICT, >=, 1);

    test_frames();
    test_messages();
    test_limits();
    test_result_bytes();

    wire_dicts_free(D);
    schema_free(S);
    if (soft_checks_failed) {
        fprintf(stderr, "wire: %d soft check(s) failed\n", soft_checks_failed);
        return 1;
    }
    printf("wire: ok\n");
    return 0;
}

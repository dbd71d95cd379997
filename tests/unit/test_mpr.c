/*
 * test_mpr — the bounded MessagePack reader (sync/mpr.c).
 *
 * Every MessagePack type and every encoding width is read once with the typed readers and
 * once with mpr_skip. A message holding all of them is then cut at every prefix length and
 * each prefix is copied into a heap block of exactly that size, so that a read past the end
 * is caught by ASan (the suite's sanitizer build) rather than passing silently; every prefix
 * must fail with an FS_EDEC_* code and leave the position where it was. Hostile headers
 * (array32 / map32 claiming 2^32-1 items, 1000 nested arrays), invalid UTF-8 and the integer
 * extremes close the file. No schema, no store: this is the layer under the change decoder.
 */
#include "check.h"
#include "err.h"
#include "mpr.h"

#include <msgpack.h>
#include <stdint.h>

static bool is_dec_err(int rc) { return rc <= FS_EDEC_TRUNCATED && rc >= FS_EDEC_FRAME; }

/* Reader over a heap copy of exactly len bytes (free with free(*copy)). */
static void reader_over(mpr *r, const void *bytes, size_t len, uint8_t **copy)
{
    *copy = malloc(len ? len : 1);
    CHECK(*copy);
    if (len)
        memcpy(*copy, bytes, len);
    mpr_init(r, *copy, len);
}

static void put(msgpack_sbuffer *sb, const void *bytes, size_t n)
{
    CHECK_OK(msgpack_sbuffer_write(sb, bytes, n));
}
#define PUT(sb, ...)                                                                       \
    do {                                                                                   \
        static const uint8_t b_[] = {__VA_ARGS__};                                         \
        put((sb), b_, sizeof b_);                                                          \
    } while (0)

/* ---- one value of each type ---------------------------------------------------------- */

static void test_peek_types(void)
{
    static const struct {
        uint8_t byte;
        mpr_type want;
    } t[] = {
        {0xc0, MPR_NIL},   {0xc2, MPR_BOOL},  {0xc3, MPR_BOOL},  {0x00, MPR_UINT},
        {0x7f, MPR_UINT},  {0xcc, MPR_UINT},  {0xcd, MPR_UINT},  {0xce, MPR_UINT},
        {0xcf, MPR_UINT},  {0xe0, MPR_INT},   {0xff, MPR_INT},   {0xd0, MPR_INT},
        {0xd1, MPR_INT},   {0xd2, MPR_INT},   {0xd3, MPR_INT},   {0xca, MPR_FLOAT},
        {0xcb, MPR_FLOAT}, {0xa0, MPR_STR},   {0xbf, MPR_STR},   {0xd9, MPR_STR},
        {0xda, MPR_STR},   {0xdb, MPR_STR},   {0xc4, MPR_BIN},   {0xc5, MPR_BIN},
        {0xc6, MPR_BIN},   {0x90, MPR_ARRAY}, {0x9f, MPR_ARRAY}, {0xdc, MPR_ARRAY},
        {0xdd, MPR_ARRAY}, {0x80, MPR_MAP},   {0x8f, MPR_MAP},   {0xde, MPR_MAP},
        {0xdf, MPR_MAP},   {0xd4, MPR_EXT},   {0xd8, MPR_EXT},   {0xc7, MPR_EXT},
        {0xc8, MPR_EXT},   {0xc9, MPR_EXT},   {0xc1, MPR_INVALID},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        mpr r;
        mpr_init(&r, &t[i].byte, 1);
        if (mpr_peek(&r) != t[i].want)
            fprintf(stderr, "byte 0x%02x\n", t[i].byte);
        CHECK_INT(mpr_peek(&r), ==, t[i].want);
        CHECK(r.p == &t[i].byte); /* peek consumes nothing */
    }
    mpr r;
    mpr_init(&r, "", 0);
    CHECK_INT(mpr_peek(&r), ==, MPR_INVALID);
}

static void test_empty_input(void)
{
    uint8_t *cp;
    mpr r;
    reader_over(&r, NULL, 0, &cp);
    bool b;
    uint64_t u;
    int64_t i;
    uint32_t n;
    const char *s;
    const uint8_t *bin;
    CHECK_INT(mpr_nil(&r), ==, FS_EDEC_TRUNCATED);
    CHECK(!mpr_try_nil(&r));
    CHECK_INT(mpr_bool(&r, &b), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_u64(&r, &u), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_i64(&r, &i), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_u32_max(&r, 10, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_array(&r, 10, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_map(&r, 10, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_str(&r, 10, &s, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_bin(&r, 10, &bin, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_skip(&r, MPR_MAX_DEPTH), ==, FS_EDEC_TRUNCATED);
    CHECK(r.p == cp);
    free(cp);
}

static void test_scalars(void)
{
    mpr r;
    bool b;
    uint8_t *cp;
    static const uint8_t nil_true_false[] = {0xc0, 0xc3, 0xc2};
    reader_over(&r, nil_true_false, sizeof nil_true_false, &cp);
    CHECK(mpr_try_nil(&r));
    CHECK(!mpr_try_nil(&r)); /* a bool is not nil: not consumed */
    CHECK_INT(mpr_nil(&r), ==, FS_EDEC_TYPE);
    CHECK_OK(mpr_bool(&r, &b));
    CHECK(b);
    CHECK_OK(mpr_bool(&r, &b));
    CHECK(!b);
    CHECK_INT(mpr_left(&r), ==, 0);
    free(cp);

    /* wrong types are refused without consuming anything */
    static const uint8_t one[] = {0x01};
    reader_over(&r, one, 1, &cp);
    const char *s;
    const uint8_t *bin;
    uint32_t n;
    CHECK_INT(mpr_nil(&r), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_bool(&r, &b), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_str(&r, 10, &s, &n), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_bin(&r, 10, &bin, &n), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_array(&r, 10, &n), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_map(&r, 10, &n), ==, FS_EDEC_TYPE);
    CHECK(r.p == cp);
    free(cp);

    static const uint8_t str[] = {0xa3, 'a', 'b', 'c'};
    reader_over(&r, str, sizeof str, &cp);
    uint64_t u;
    int64_t i;
    CHECK_INT(mpr_u64(&r, &u), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_i64(&r, &i), ==, FS_EDEC_TYPE);
    CHECK_INT(mpr_bin(&r, 10, &bin, &n), ==, FS_EDEC_TYPE); /* str is not bin */
    CHECK(r.p == cp);
    free(cp);

    static const uint8_t never_used[] = {0xc1};
    reader_over(&r, never_used, 1, &cp);
    CHECK_INT(mpr_skip(&r, MPR_MAX_DEPTH), ==, FS_EDEC_TYPE);
    CHECK(r.p == cp);
    free(cp);
}

/* One integer encoding, read as u64 and as i64. want_u / want_i: expected rc. */
static void check_int(const uint8_t *bytes, size_t len, int want_urc, uint64_t want_u,
                      int want_irc, int64_t want_i)
{
    mpr r;
    uint8_t *cp;
    uint64_t u = 0;
    int64_t i = 0;
    reader_over(&r, bytes, len, &cp);
    CHECK_INT(mpr_u64(&r, &u), ==, want_urc);
    if (!want_urc) {
        CHECK(u == want_u);
        CHECK_INT(mpr_left(&r), ==, 0);
    } else {
        CHECK(r.p == cp);
    }
    mpr_init(&r, cp, len);
    CHECK_INT(mpr_i64(&r, &i), ==, want_irc);
    if (!want_irc) {
        CHECK_INT(i, ==, want_i);
        CHECK_INT(mpr_left(&r), ==, 0);
    } else {
        CHECK(r.p == cp);
    }
    mpr_init(&r, cp, len);
    CHECK_OK(mpr_skip(&r, 0));
    CHECK_INT(mpr_left(&r), ==, 0);
    /* every shorter prefix of a multi-byte integer is truncated */
    for (size_t k = 0; k < len; k++) {
        free(cp);
        reader_over(&r, bytes, k, &cp);
        CHECK_INT(mpr_u64(&r, &u), ==, FS_EDEC_TRUNCATED);
        CHECK_INT(mpr_i64(&r, &i), ==, FS_EDEC_TRUNCATED);
        CHECK_INT(mpr_skip(&r, 0), ==, FS_EDEC_TRUNCATED);
        CHECK(r.p == cp);
    }
    free(cp);
}

static void test_integers(void)
{
#define INT_CASE(urc, u, irc, i, ...)                                                      \
    do {                                                                                   \
        static const uint8_t b_[] = {__VA_ARGS__};                                         \
        check_int(b_, sizeof b_, (urc), (u), (irc), (i));                                  \
    } while (0)
    const int RANGE = FS_EVALUE_RANGE;
    INT_CASE(0, 0, 0, 0, 0x00);
    INT_CASE(0, 127, 0, 127, 0x7f);
    INT_CASE(RANGE, 0, 0, -1, 0xff);
    INT_CASE(RANGE, 0, 0, -32, 0xe0);
    INT_CASE(0, 255, 0, 255, 0xcc, 0xff);
    INT_CASE(0, 0x1234, 0, 0x1234, 0xcd, 0x12, 0x34);
    INT_CASE(0, UINT32_MAX, 0, UINT32_MAX, 0xce, 0xff, 0xff, 0xff, 0xff);
    INT_CASE(0, UINT64_MAX, RANGE, 0, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    INT_CASE(0, (uint64_t)INT64_MAX, 0, INT64_MAX, 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff);
    INT_CASE(0, (uint64_t)INT64_MAX + 1, RANGE, 0, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0);
    INT_CASE(0, 5, 0, 5, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5); /* non-minimal encodings are valid */
    INT_CASE(RANGE, 0, 0, -128, 0xd0, 0x80);
    INT_CASE(0, 127, 0, 127, 0xd0, 0x7f);
    INT_CASE(0, 0, 0, 0, 0xd0, 0x00); /* signed zero is a valid unsigned */
    INT_CASE(RANGE, 0, 0, INT16_MIN, 0xd1, 0x80, 0x00);
    INT_CASE(RANGE, 0, 0, INT32_MIN, 0xd2, 0x80, 0, 0, 0);
    INT_CASE(0, INT32_MAX, 0, INT32_MAX, 0xd2, 0x7f, 0xff, 0xff, 0xff);
    INT_CASE(RANGE, 0, 0, INT64_MIN, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);
    INT_CASE(0, (uint64_t)INT64_MAX, 0, INT64_MAX, 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff,
             0xff, 0xff);
    INT_CASE(RANGE, 0, 0, -1, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
#undef INT_CASE

    /* what msgpack-c's packer writes for the extremes reads back exactly */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const int64_t ivals[] = {INT64_MIN, INT64_MIN + 1, INT32_MIN, -33, -32, -1, 0, 1, 127, 128,
                             255, 256, 65535, 65536, INT32_MAX, INT64_MAX};
    const uint64_t uvals[] = {0, 1, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX - 1,
                              UINT64_MAX};
    for (size_t k = 0; k < sizeof ivals / sizeof ivals[0]; k++)
        CHECK_OK(msgpack_pack_int64(&pk, ivals[k]));
    for (size_t k = 0; k < sizeof uvals / sizeof uvals[0]; k++)
        CHECK_OK(msgpack_pack_uint64(&pk, uvals[k]));
    mpr r;
    uint8_t *cp;
    reader_over(&r, sb.data, sb.size, &cp);
    for (size_t k = 0; k < sizeof ivals / sizeof ivals[0]; k++) {
        int64_t v;
        CHECK_OK(mpr_i64(&r, &v));
        CHECK_INT(v, ==, ivals[k]);
    }
    for (size_t k = 0; k < sizeof uvals / sizeof uvals[0]; k++) {
        uint64_t v;
        CHECK_OK(mpr_u64(&r, &v));
        CHECK(v == uvals[k]);
    }
    CHECK_INT(mpr_left(&r), ==, 0);
    free(cp);

    /* mpr_u32_max: the bound is inclusive, above it nothing is consumed */
    static const uint8_t u32[] = {0xce, 0x00, 0x01, 0x00, 0x00}; /* 65536 */
    uint32_t n;
    reader_over(&r, u32, sizeof u32, &cp);
    CHECK_INT(mpr_u32_max(&r, 65535, &n), ==, FS_EVALUE_RANGE);
    CHECK(r.p == cp);
    CHECK_OK(mpr_u32_max(&r, 65536, &n));
    CHECK_INT(n, ==, 65536);
    free(cp);
    static const uint8_t big[] = {0xcf, 0, 0, 0, 1, 0, 0, 0, 0}; /* 2^32 */
    reader_over(&r, big, sizeof big, &cp);
    CHECK_INT(mpr_u32_max(&r, UINT32_MAX, &n), ==, FS_EVALUE_RANGE);
    CHECK(r.p == cp);
    free(cp);
    msgpack_sbuffer_destroy(&sb);
}

static void test_str_bin(void)
{
    mpr r;
    uint8_t *cp;
    const char *s;
    const uint8_t *b;
    uint32_t n;
    /* every str width, including non-minimal ones */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    PUT(&sb, 0xa0);                                   /* "" */
    PUT(&sb, 0xa3, 'a', 'b', 'c');                    /* fixstr */
    PUT(&sb, 0xd9, 0x02, 'h', 'i');                   /* str8 */
    PUT(&sb, 0xda, 0x00, 0x03, 'x', 'y', 'z');        /* str16 */
    PUT(&sb, 0xdb, 0x00, 0x00, 0x00, 0x01, 'q');      /* str32 */
    PUT(&sb, 0xc4, 0x00);                             /* bin8 empty */
    PUT(&sb, 0xc4, 0x02, 0x00, 0xff);                 /* bin8 (NUL is fine in bin) */
    PUT(&sb, 0xc5, 0x00, 0x01, 0x7e);                 /* bin16 */
    PUT(&sb, 0xc6, 0x00, 0x00, 0x00, 0x03, 1, 2, 3);  /* bin32 */
    reader_over(&r, sb.data, sb.size, &cp);
    static const char *const want_s[] = {"", "abc", "hi", "xyz", "q"};
    for (int i = 0; i < 5; i++) {
        CHECK_OK(mpr_str(&r, 100, &s, &n));
        CHECK_INT(n, ==, strlen(want_s[i]));
        CHECK(!memcmp(s, want_s[i], n));
        CHECK((const uint8_t *)s >= cp && (const uint8_t *)s + n <= cp + sb.size); /* borrowed */
    }
    CHECK_OK(mpr_bin(&r, 100, &b, &n));
    CHECK_INT(n, ==, 0);
    CHECK_OK(mpr_bin(&r, 100, &b, &n));
    CHECK_INT(n, ==, 2);
    CHECK(b[0] == 0x00 && b[1] == 0xff);
    CHECK_OK(mpr_bin(&r, 100, &b, &n));
    CHECK(n == 1 && b[0] == 0x7e);
    CHECK_OK(mpr_bin(&r, 100, &b, &n));
    CHECK(n == 3 && b[0] == 1 && b[2] == 3);
    CHECK_INT(mpr_left(&r), ==, 0);
    free(cp);

    /* limits: length above max -> TOOBIG, nothing consumed; the limit is inclusive */
    reader_over(&r, sb.data, sb.size, &cp);
    CHECK_OK(mpr_str(&r, 0, &s, &n));
    CHECK_INT(mpr_str(&r, 2, &s, &n), ==, FS_EDEC_TOOBIG);
    const uint8_t *at = r.p;
    CHECK_OK(mpr_str(&r, 3, &s, &n));
    CHECK(r.p == at + 4);
    free(cp);
    static const uint8_t bin3[] = {0xc4, 0x03, 1, 2, 3};
    reader_over(&r, bin3, sizeof bin3, &cp);
    CHECK_INT(mpr_bin(&r, 2, &b, &n), ==, FS_EDEC_TOOBIG);
    CHECK(r.p == cp);
    free(cp);

    /* a 4 GiB length in 6 bytes: truncated, not an allocation or a read past the end */
    static const uint8_t str32_huge[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    reader_over(&r, str32_huge, sizeof str32_huge, &cp);
    CHECK_INT(mpr_str(&r, UINT32_MAX, &s, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_skip(&r, 1), ==, FS_EDEC_TRUNCATED);
    CHECK(r.p == cp);
    free(cp);
    static const uint8_t bin32_huge[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0};
    reader_over(&r, bin32_huge, sizeof bin32_huge, &cp);
    CHECK_INT(mpr_bin(&r, UINT32_MAX, &b, &n), ==, FS_EDEC_TRUNCATED);
    CHECK_INT(mpr_skip(&r, 1), ==, FS_EDEC_TRUNCATED);
    CHECK(r.p == cp);
    free(cp);
    msgpack_sbuffer_destroy(&sb);
}

static void test_containers(void)
{
    mpr r;
    uint8_t *cp;
    uint32_t n;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    PUT(&sb, 0x90);                                  /* [] */
    PUT(&sb, 0x92, 0x01, 0x02);                      /* fixarray */
    PUT(&sb, 0xdc, 0x00, 0x01, 0xc0);                /* array16 */
    PUT(&sb, 0xdd, 0x00, 0x00, 0x00, 0x01, 0xc3);    /* array32 */
    PUT(&sb, 0x80);                                  /* {} */
    PUT(&sb, 0x81, 0x01, 0xa1, 'x');                 /* fixmap */
    PUT(&sb, 0xde, 0x00, 0x01, 0x02, 0xc2);          /* map16 */
    PUT(&sb, 0xdf, 0x00, 0x00, 0x00, 0x01, 0x03, 0xc0); /* map32 */
    reader_over(&r, sb.data, sb.size, &cp);
    uint64_t u;
    bool b;
    const char *s;
    CHECK_OK(mpr_array(&r, 0, &n));
    CHECK_INT(n, ==, 0);
    CHECK_INT(mpr_array(&r, 1, &n), ==, FS_EDEC_COUNT); /* above max */
    CHECK_OK(mpr_array(&r, 2, &n));
    CHECK_INT(n, ==, 2);
    CHECK_OK(mpr_u64(&r, &u));
    CHECK_OK(mpr_u64(&r, &u));
    CHECK(u == 2);
    CHECK_OK(mpr_array(&r, 1, &n));
    CHECK_INT(n, ==, 1);
    CHECK_OK(mpr_nil(&r));
    CHECK_OK(mpr_array(&r, 1, &n));
    CHECK_INT(n, ==, 1);
    CHECK_OK(mpr_bool(&r, &b));
    CHECK_OK(mpr_map(&r, 0, &n));
    CHECK_INT(n, ==, 0);
    CHECK_OK(mpr_map(&r, 1, &n));
    CHECK_OK(mpr_u64(&r, &u));
    CHECK_OK(mpr_str(&r, 1, &s, &n));
    CHECK_OK(mpr_map(&r, 1, &n));
    CHECK_INT(n, ==, 1);
    CHECK_OK(mpr_u64(&r, &u));
    CHECK_OK(mpr_bool(&r, &b));
    CHECK_OK(mpr_map(&r, 1, &n));
    CHECK_INT(n, ==, 1);
    CHECK_OK(mpr_u64(&r, &u));
    CHECK_OK(mpr_nil(&r));
    CHECK_INT(mpr_left(&r), ==, 0);
    /* the same bytes skipped value by value */
    mpr_init(&r, cp, sb.size);
    for (int i = 0; i < 8; i++)
        CHECK_OK(mpr_skip(&r, 1));
    CHECK_INT(mpr_left(&r), ==, 0);
    free(cp);
    msgpack_sbuffer_destroy(&sb);
}

/* A container header claiming more items than bytes remain: FS_EDEC_COUNT, nothing consumed,
 * whatever the caller's max (each array item needs one byte, each map entry two). */
static void expect_count(const uint8_t *bytes, size_t len, bool map)
{
    mpr r;
    uint8_t *cp;
    uint32_t n = 12345;
    reader_over(&r, bytes, len, &cp);
    int rc = map ? mpr_map(&r, UINT32_MAX, &n) : mpr_array(&r, UINT32_MAX, &n);
    CHECK_INT(rc, ==, FS_EDEC_COUNT);
    CHECK_INT(n, ==, 12345);
    CHECK(r.p == cp);
    CHECK_INT(mpr_skip(&r, MPR_MAX_DEPTH), ==, FS_EDEC_COUNT);
    CHECK(r.p == cp);
    free(cp);
}

static void test_hostile_counts(void)
{
    uint8_t a32[5 + 64], m32[5 + 64];
    memset(a32, 0xc0, sizeof a32);
    memset(m32, 0xc0, sizeof m32);
    a32[0] = 0xdd;
    m32[0] = 0xdf;
    memset(a32 + 1, 0xff, 4); /* 2^32-1 items */
    memset(m32 + 1, 0xff, 4);
    expect_count(a32, sizeof a32, false);
    expect_count(m32, sizeof m32, true);
    expect_count(a32, 5, false); /* header alone */
    expect_count(m32, 5, true);
    static const uint8_t a16[] = {0xdc, 0xff, 0xff, 0xc0, 0xc0};
    static const uint8_t m16[] = {0xde, 0xff, 0xff, 0xc0, 0xc0};
    expect_count(a16, sizeof a16, false);
    expect_count(m16, sizeof m16, true);
    /* exactly enough bytes for n items is accepted; one byte fewer is not */
    static const uint8_t a3[] = {0x93, 0xc0, 0xc0, 0xc0};
    static const uint8_t m2[] = {0x82, 0xc0, 0xc0, 0xc0};
    expect_count(a3, 3, false);
    expect_count(m2, sizeof m2, true); /* 2 entries need 4 bytes, 3 remain */
    mpr r;
    uint32_t n;
    mpr_init(&r, a3, sizeof a3);
    CHECK_OK(mpr_array(&r, 3, &n));
    CHECK_INT(n, ==, 3);
}

static void test_depth(void)
{
    enum { DEEP = 1000 };
    uint8_t *deep = malloc(DEEP + 1);
    CHECK(deep);
    memset(deep, 0x91, DEEP); /* [[[[ ... nil ... ]]]] */
    deep[DEEP] = 0xc0;
    mpr r;
    mpr_init(&r, deep, DEEP + 1);
    CHECK_INT(mpr_skip(&r, MPR_MAX_DEPTH), ==, FS_EDEC_DEPTH);
    CHECK(r.p == deep);
    /* the same with maps: {0: {0: {0: ...}}} */
    uint8_t *deepm = malloc(2 * DEEP + 1);
    CHECK(deepm);
    for (int i = 0; i < DEEP; i++) {
        deepm[2 * i] = 0x81;
        deepm[2 * i + 1] = 0x00;
    }
    deepm[2 * DEEP] = 0xc0;
    mpr_init(&r, deepm, 2 * DEEP + 1);
    CHECK_INT(mpr_skip(&r, MPR_MAX_DEPTH), ==, FS_EDEC_DEPTH);
    CHECK(r.p == deepm);
    /* the limit is exact: depth levels of nesting pass, one more does not */
    size_t off = DEEP - MPR_MAX_DEPTH;
    mpr_init(&r, deep + off, MPR_MAX_DEPTH + 1);
    CHECK_OK(mpr_skip(&r, MPR_MAX_DEPTH));
    CHECK_INT(mpr_left(&r), ==, 0);
    mpr_init(&r, deep + off - 1, MPR_MAX_DEPTH + 2);
    CHECK_INT(mpr_skip(&r, MPR_MAX_DEPTH), ==, FS_EDEC_DEPTH);
    CHECK(r.p == deep + off - 1);
    /* scalars need no depth, containers need one level */
    static const uint8_t scalar = 0x05, empty_array = 0x90;
    mpr_init(&r, &scalar, 1);
    CHECK_OK(mpr_skip(&r, 0));
    mpr_init(&r, &empty_array, 1);
    CHECK_INT(mpr_skip(&r, 0), ==, FS_EDEC_DEPTH);
    free(deep);
    free(deepm);
}

static void expect_utf8_bad(const char *bytes, size_t len, const char *what)
{
    if (utf8_valid(bytes, len)) {
        fprintf(stderr, "utf8_valid accepted %s\n", what);
        abort();
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    CHECK_OK(msgpack_pack_str_with_body(&pk, bytes, len));
    mpr r;
    uint8_t *cp;
    const char *s;
    uint32_t n;
    reader_over(&r, sb.data, sb.size, &cp);
    int rc = mpr_str(&r, 1000, &s, &n);
    if (rc != FS_EDEC_UTF8)
        fprintf(stderr, "mpr_str on %s\n", what);
    CHECK_INT(rc, ==, FS_EDEC_UTF8);
    CHECK(r.p == cp);
    CHECK_OK(mpr_skip(&r, 0)); /* skipping does not judge the text */
    free(cp);
    msgpack_sbuffer_destroy(&sb);
}

static void expect_utf8_good(const char *bytes, size_t len)
{
    CHECK(utf8_valid(bytes, len));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    CHECK_OK(msgpack_pack_str_with_body(&pk, bytes, len));
    mpr r;
    uint8_t *cp;
    const char *s;
    uint32_t n;
    reader_over(&r, sb.data, sb.size, &cp);
    CHECK_OK(mpr_str(&r, (uint32_t)len, &s, &n));
    CHECK_INT(n, ==, len);
    CHECK(!memcmp(s, bytes, len));
    free(cp);
    msgpack_sbuffer_destroy(&sb);
}

#define BAD(lit) expect_utf8_bad(lit, sizeof lit - 1, #lit)
#define GOOD(lit) expect_utf8_good(lit, sizeof lit - 1)

static void test_utf8(void)
{
    BAD("\xc0\x80");             /* overlong NUL */
    BAD("\xc1\xbf");             /* overlong 0x7f */
    BAD("\xe0\x80\xaf");         /* overlong '/' in 3 bytes */
    BAD("\xe0\x9f\xbf");         /* overlong U+07FF */
    BAD("\xf0\x80\x80\xaf");     /* overlong '/' in 4 bytes */
    BAD("\xf0\x8f\xbf\xbf");     /* overlong U+FFFF */
    BAD("\xed\xa0\x80");         /* U+D800, high surrogate */
    BAD("\xed\xbf\xbf");         /* U+DFFF, low surrogate */
    BAD("\xed\xa0\xbd\xed\xb8\x80"); /* CESU-8 surrogate pair */
    BAD("\xf4\x90\x80\x80");     /* U+110000 */
    BAD("\xf5\x80\x80\x80");
    BAD("\xf8\x88\x80\x80\x80"); /* 5-byte form */
    BAD("\xff");
    BAD("\xfe");
    BAD("\x80");                 /* lone continuation */
    BAD("ab\xbf");
    BAD("\xe4\xb8");             /* 中 cut after 2 of 3 bytes */
    BAD("\xe4");
    BAD("\xf0\x9f\x98");         /* emoji cut after 3 of 4 bytes */
    BAD("\xe4\xb8\x41");         /* continuation replaced by ASCII */
    BAD("\xc3");                 /* truncated 2-byte form at the end */
    BAD("a\0b");                 /* NUL inside */
    BAD("\0");
    GOOD("");
    GOOD("plain ascii ~");
    GOOD("留守儿童关爱保护"); /* Chinese: 3-byte forms */
    GOOD("重庆市 渝府发〔2016〕27号 一人一档案，实行动态管理");
    GOOD("张三丰");
    GOOD("\xc2\x80");            /* U+0080, smallest 2-byte */
    GOOD("\xdf\xbf");            /* U+07FF */
    GOOD("\xe0\xa0\x80");        /* U+0800, smallest 3-byte */
    GOOD("\xed\x9f\xbf");        /* U+D7FF, just below the surrogates */
    GOOD("\xee\x80\x80");        /* U+E000, just above */
    GOOD("\xef\xbf\xbf");        /* U+FFFF */
    GOOD("\xf0\x90\x80\x80");    /* U+10000 */
    GOOD("\xf0\x9f\x98\x80");    /* emoji */
    GOOD("\xf4\x8f\xbf\xbf");    /* U+10FFFF, the last code point */
    /* every proper prefix of a Chinese string that cuts a character is refused */
    const char *zh = "儿童档案";
    size_t len = strlen(zh);
    for (size_t k = 0; k <= len; k++)
        CHECK(utf8_valid(zh, k) == (k % 3 == 0));
}

/* ---- a message with every type, cut at every length ---------------------------------- */

enum { N_ELEMS = 38 };

static void build_all_types(msgpack_sbuffer *sb)
{
    PUT(sb, 0xdc, 0x00, N_ELEMS);                       /* array16 of everything */
    PUT(sb, 0xc0, 0xc2, 0xc3);                          /* nil false true */
    PUT(sb, 0x05);                                      /* fixint */
    PUT(sb, 0xcc, 0xff);                                /* uint8 */
    PUT(sb, 0xcd, 0x12, 0x34);                          /* uint16 */
    PUT(sb, 0xce, 0xde, 0xad, 0xbe, 0xef);              /* uint32 */
    PUT(sb, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff); /* UINT64_MAX */
    PUT(sb, 0xe0);                                      /* -32 */
    PUT(sb, 0xd0, 0x80);                                /* -128 */
    PUT(sb, 0xd1, 0x80, 0x00);                          /* INT16_MIN */
    PUT(sb, 0xd2, 0x80, 0x00, 0x00, 0x00);              /* INT32_MIN */
    PUT(sb, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);           /* INT64_MIN */
    PUT(sb, 0xca, 0x3f, 0x80, 0x00, 0x00);              /* float32 1.0 */
    PUT(sb, 0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18); /* float64 pi */
    PUT(sb, 0xa6, 0xe5, 0x84, 0xbf, 0xe7, 0xab, 0xa5); /* fixstr 儿童 */
    PUT(sb, 0xd9, 0x03, 'a', 'b', 'c');                 /* str8 */
    PUT(sb, 0xda, 0x00, 0x03, 0xe6, 0xa1, 0xa3);        /* str16 档 */
    PUT(sb, 0xdb, 0x00, 0x00, 0x00, 0x02, 'o', 'k');    /* str32 */
    PUT(sb, 0xc4, 0x02, 0x00, 0x01);                    /* bin8 */
    PUT(sb, 0xc5, 0x00, 0x03, 0xff, 0xfe, 0xfd);        /* bin16 */
    PUT(sb, 0xc6, 0x00, 0x00, 0x00, 0x01, 0x42);        /* bin32 */
    PUT(sb, 0x92, 0x01, 0xa1, 'a');                     /* fixarray */
    PUT(sb, 0xdc, 0x00, 0x02, 0xc0, 0xc3);              /* array16 */
    PUT(sb, 0xdd, 0x00, 0x00, 0x00, 0x01, 0x07);        /* array32 */
    PUT(sb, 0x81, 0x01, 0xa1, 'x');                     /* fixmap */
    PUT(sb, 0xde, 0x00, 0x01, 0xa1, 'k', 0x02);         /* map16 */
    PUT(sb, 0xdf, 0x00, 0x00, 0x00, 0x01, 0x03, 0xc0);  /* map32 */
    PUT(sb, 0xd4, 0x01, 0xaa);                          /* fixext1 */
    PUT(sb, 0xd5, 0x01, 0xaa, 0xbb);                    /* fixext2 */
    PUT(sb, 0xd6, 0x01, 1, 2, 3, 4);                    /* fixext4 */
    PUT(sb, 0xd7, 0xff, 1, 2, 3, 4, 5, 6, 7, 8);        /* fixext8 (timestamp type -1) */
    PUT(sb, 0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16); /* fixext16 */
    PUT(sb, 0xc7, 0x03, 0x05, 1, 2, 3);                 /* ext8 */
    PUT(sb, 0xc8, 0x00, 0x02, 0x05, 1, 2);              /* ext16 */
    PUT(sb, 0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 9);     /* ext32 */
    PUT(sb, 0x91, 0x91, 0x81, 0xa1, 'k', 0x92, 0x01, 0x02); /* [[{"k": [1, 2]}]] */
    PUT(sb, 0xc0);                                      /* trailing nil element */
}

typedef struct all_got {
    bool f, t;
    uint64_t u[5];
    int64_t i[5];
    const char *s[4];
    uint32_t sl[4];
    const uint8_t *b[3];
    uint32_t bl[3];
} all_got;

#define TRY(x)                                                                             \
    do {                                                                                   \
        int rc_ = (x);                                                                     \
        if (rc_)                                                                           \
            return rc_;                                                                    \
    } while (0)

/* Reads build_all_types' message with the typed readers. Returns the first error. */
static int read_all_types(mpr *r, all_got *g)
{
    uint32_t n;
    uint64_t u;
    bool b;
    const char *s;
    TRY(mpr_array(r, 64, &n));
    CHECK_INT(n, ==, N_ELEMS);
    TRY(mpr_nil(r));
    TRY(mpr_bool(r, &g->f));
    TRY(mpr_bool(r, &g->t));
    for (int k = 0; k < 5; k++)
        TRY(mpr_u64(r, &g->u[k]));
    for (int k = 0; k < 5; k++)
        TRY(mpr_i64(r, &g->i[k]));
    for (int k = 0; k < 2; k++) {
        if (mpr_peek(r) != MPR_FLOAT)
            return mpr_left(r) ? -1000 : FS_EDEC_TRUNCATED;
        TRY(mpr_skip(r, 0));
    }
    for (int k = 0; k < 4; k++)
        TRY(mpr_str(r, 100, &g->s[k], &g->sl[k]));
    for (int k = 0; k < 3; k++)
        TRY(mpr_bin(r, 100, &g->b[k], &g->bl[k]));
    TRY(mpr_array(r, 2, &n));
    TRY(mpr_u64(r, &u));
    TRY(mpr_str(r, 1, &s, &n));
    TRY(mpr_array(r, 2, &n));
    TRY(mpr_nil(r));
    TRY(mpr_bool(r, &b));
    TRY(mpr_array(r, 1, &n));
    TRY(mpr_u64(r, &u));
    TRY(mpr_map(r, 1, &n));
    TRY(mpr_u64(r, &u));
    TRY(mpr_str(r, 1, &s, &n));
    TRY(mpr_map(r, 1, &n));
    TRY(mpr_str(r, 1, &s, &n));
    TRY(mpr_u64(r, &u));
    TRY(mpr_map(r, 1, &n));
    TRY(mpr_u64(r, &u));
    TRY(mpr_nil(r));
    for (int k = 0; k < 8; k++) {
        if (mpr_peek(r) != MPR_EXT)
            return mpr_left(r) ? -1001 : FS_EDEC_TRUNCATED;
        TRY(mpr_skip(r, 0));
    }
    TRY(mpr_skip(r, MPR_MAX_DEPTH));
    TRY(mpr_nil(r));
    return 0;
}

static void test_every_prefix(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build_all_types(&sb);
    const size_t len = sb.size;

    /* whole message: the typed walk and the skip both consume it exactly */
    mpr r;
    uint8_t *cp;
    all_got g;
    memset(&g, 0, sizeof g);
    reader_over(&r, sb.data, len, &cp);
    CHECK_OK(read_all_types(&r, &g));
    CHECK_INT(mpr_left(&r), ==, 0);
    CHECK(!g.f && g.t);
    CHECK(g.u[0] == 5 && g.u[1] == 255 && g.u[2] == 0x1234 && g.u[3] == 0xdeadbeef &&
          g.u[4] == UINT64_MAX);
    CHECK(g.i[0] == -32 && g.i[1] == -128 && g.i[2] == INT16_MIN && g.i[3] == INT32_MIN &&
          g.i[4] == INT64_MIN);
    CHECK(g.sl[0] == 6 && !memcmp(g.s[0], "儿童", 6));
    CHECK(g.sl[1] == 3 && !memcmp(g.s[1], "abc", 3));
    CHECK(g.sl[2] == 3 && !memcmp(g.s[2], "档", 3));
    CHECK(g.sl[3] == 2 && !memcmp(g.s[3], "ok", 2));
    CHECK(g.bl[0] == 2 && g.bl[1] == 3 && g.bl[2] == 1 && g.b[2][0] == 0x42);
    mpr_init(&r, cp, len);
    CHECK_OK(mpr_skip(&r, MPR_MAX_DEPTH));
    CHECK_INT(mpr_left(&r), ==, 0);
    free(cp);

    /* every proper prefix, in an exact-size heap block */
    for (size_t k = 0; k < len; k++) {
        reader_over(&r, sb.data, k, &cp);
        int rc = mpr_skip(&r, MPR_MAX_DEPTH);
        if (!is_dec_err(rc))
            fprintf(stderr, "skip of prefix %zu/%zu returned %d\n", k, len, rc);
        CHECK(is_dec_err(rc));
        CHECK(r.p == cp); /* position unchanged on error */
        memset(&g, 0, sizeof g);
        rc = read_all_types(&r, &g);
        if (!is_dec_err(rc))
            fprintf(stderr, "typed read of prefix %zu/%zu returned %d\n", k, len, rc);
        CHECK(is_dec_err(rc));
        CHECK(r.p <= cp + k);
        free(cp);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* Each value of the message alone, cut at every length: exactly FS_EDEC_TRUNCATED when the
 * value is not a container (containers may answer FS_EDEC_COUNT first). */
static void test_truncated_scalars(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build_all_types(&sb);
    mpr whole;
    mpr_init(&whole, sb.data + 3, sb.size - 3); /* after the array16 header */
    while (mpr_left(&whole)) {
        const uint8_t *start = whole.p;
        mpr_type ty = mpr_peek(&whole);
        CHECK_OK(mpr_skip(&whole, MPR_MAX_DEPTH));
        size_t vlen = (size_t)(whole.p - start);
        for (size_t k = 0; k < vlen; k++) {
            mpr r;
            uint8_t *cp;
            reader_over(&r, start, k, &cp);
            int rc = mpr_skip(&r, MPR_MAX_DEPTH);
            if (ty == MPR_ARRAY || ty == MPR_MAP)
                CHECK(rc == FS_EDEC_TRUNCATED || rc == FS_EDEC_COUNT);
            else
                CHECK_INT(rc, ==, FS_EDEC_TRUNCATED);
            CHECK(r.p == cp);
            free(cp);
        }
    }
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    test_peek_types();
    test_empty_input();
    test_scalars();
    test_integers();
    test_str_bin();
    test_containers();
    test_hostile_counts();
    test_depth();
    test_utf8();
    test_every_prefix();
    test_truncated_scalars();
    printf("mpr: ok\n");
    return 0;
}

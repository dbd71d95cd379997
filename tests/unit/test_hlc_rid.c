/*
 * test_hlc_rid — the hybrid logical clock (sync/hlc.c) and record ids (sync/rid.c).
 *
 * The clock is driven by a fake wall clock (clk.wall) wherever the test needs the wall to
 * stand still, jump back or sit at a drift bound; only the 100k-call monotonicity test uses
 * the real CLOCK_REALTIME. Record ids are checked for their text form, their uniqueness
 * (100k ids made in one millisecond, the worst case for the random part), their time order
 * and the rejection of malformed text.
 *
 * CHECK_SOFT / CHECK_INT_SOFT checks do not abort: they print, the test goes on (so every other
 * check still runs and everything is still freed) and main() fails at the end.
 */
#include "check.h"
#include "err.h"
#include "hlc.h"
#include "rid.h"

#include <time.h>

static int soft_checks_failed;

/* A failing check that does not abort (like CHECK_SOFT in support/softcheck.h), for integers:
 * prints both values, counts the failure, and main() fails at the end. */
#define CHECK_INT_SOFT(a, op, b, what)                                                     \
    do {                                                                                   \
        long long va_ = (long long)(a), vb_ = (long long)(b);                              \
        if (!(va_ op vb_)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK_INT_SOFT failed (%s): %s %s %s (%lld %s %lld)\n", \
                    __FILE__, __LINE__, what, #a, #op, #b, va_, #op, vb_);                 \
            soft_checks_failed++;                                                          \
        }                                                                                  \
    } while (0)

typedef struct fake_wall {
    uint64_t ms;
} fake_wall;

static uint64_t fake_wall_ms(void *ctx) { return ((fake_wall *)ctx)->ms; }

static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void clock_with_fake(hlc_clock *clk, fake_wall *w, uint64_t persisted)
{
    hlc_init(clk, persisted);
    clk->wall = fake_wall_ms;
    clk->wall_ctx = w;
}

/* ---- hlc ----------------------------------------------------------------------------- */

static void test_hlc_layout(void)
{
    uint64_t h = hlc_make(1700000000123ULL, 42);
    CHECK(hlc_physical_ms(h) == 1700000000123ULL);
    CHECK_INT(h & 0xffff, ==, 42);
    CHECK(hlc_make(5, 0xffff) < hlc_make(6, 0));
    hlc_clock clk;
    hlc_init(&clk, 0);
    CHECK(clk.last == 0);
    CHECK_INT(clk.max_drift_ms, ==, HLC_DEFAULT_MAX_DRIFT_MS);
    CHECK(clk.wall == NULL);
    uint64_t before = real_ms();
    uint64_t w = hlc_wall_ms(&clk);
    CHECK(w >= before && w <= real_ms());
}

static void test_hlc_monotonic_real(void)
{
    hlc_clock clk;
    hlc_init(&clk, 0);
    uint64_t start = real_ms();
    uint64_t prev = hlc_now(&clk);
    CHECK(hlc_physical_ms(prev) >= start);
    for (int i = 0; i < 100000; i++) {
        uint64_t h = hlc_now(&clk);
        if (h <= prev)
            fprintf(stderr, "call %d: %llu after %llu\n", i, (unsigned long long)h,
                    (unsigned long long)prev);
        CHECK(h > prev);
        CHECK(h == clk.last);
        prev = h;
    }
    /* the physical part tracks the wall clock: it runs ahead of it only by counter carries
     * (one ms per 65536 calls; 1 s of slack for a wall clock stepped back meanwhile) */
    CHECK(hlc_physical_ms(prev) <= real_ms() + 100000 / 65536 + 1000);
}

static void test_hlc_wall_backwards(void)
{
    fake_wall w = {1700000000000ULL};
    hlc_clock clk;
    clock_with_fake(&clk, &w, 0);
    uint64_t h1 = hlc_now(&clk);
    CHECK(h1 == hlc_make(w.ms, 0));
    w.ms += 10;
    uint64_t h2 = hlc_now(&clk);
    CHECK(h2 == hlc_make(w.ms, 0));
    /* NTP steps the clock back an hour: values keep increasing, the physical part stays */
    w.ms -= 3600 * 1000;
    uint64_t prev = h2;
    for (int i = 0; i < 1000; i++) {
        uint64_t h = hlc_now(&clk);
        CHECK(h > prev);
        CHECK(hlc_physical_ms(h) == hlc_physical_ms(h2));
        prev = h;
        if (i % 100 == 0)
            w.ms -= 1; /* and keeps drifting back */
    }
    CHECK_INT(prev & 0xffff, ==, 1000);
    /* the wall catches up: the clock follows it again */
    w.ms = hlc_physical_ms(h2) + 5;
    uint64_t h3 = hlc_now(&clk);
    CHECK(h3 > prev);
    CHECK(h3 == hlc_make(w.ms, 0));
}

static void test_hlc_counter_carry(void)
{
    fake_wall w = {1700000000000ULL};
    hlc_clock clk;
    clock_with_fake(&clk, &w, hlc_make(w.ms, 0xfffe));
    uint64_t a = hlc_now(&clk);
    CHECK(a == hlc_make(w.ms, 0xffff));
    uint64_t b = hlc_now(&clk); /* counter full within the same ms: carries into the ms */
    CHECK(b == hlc_make(w.ms + 1, 0));
    CHECK(b > a);
    /* 200k calls in one frozen millisecond: strictly increasing, ms advances 3 times */
    clock_with_fake(&clk, &w, 0);
    uint64_t prev = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t h = hlc_now(&clk);
        CHECK(h > prev);
        prev = h;
    }
    CHECK(prev == hlc_make(w.ms, 0) + 199999);
    CHECK(hlc_physical_ms(prev) == w.ms + 3);
    /* once the wall passes the carried ms, the counter restarts at 0 */
    w.ms += 10;
    CHECK(hlc_now(&clk) == hlc_make(w.ms, 0));
}

static void test_hlc_recv(void)
{
    fake_wall w = {1700000000000ULL};
    hlc_clock clk;
    clock_with_fake(&clk, &w, 0);
    uint64_t local = hlc_now(&clk);
    /* a remote 5 s ahead (within the bound): the clock moves past it */
    uint64_t remote = hlc_make(w.ms + 5000, 7);
    CHECK_OK(hlc_check(&clk, remote));
    CHECK(clk.last == local); /* check alone moves nothing */
    CHECK_OK(hlc_recv(&clk, remote));
    CHECK(clk.last >= remote);
    uint64_t next = hlc_now(&clk);
    CHECK(next > remote);
    CHECK(next == remote + 1); /* same ms as the remote, next counter */
    /* a remote in the past leaves the clock alone */
    uint64_t before = clk.last;
    CHECK_OK(hlc_recv(&clk, hlc_make(w.ms - 60000, 0)));
    CHECK(clk.last == before);
    CHECK_OK(hlc_recv(&clk, 0));
    CHECK(clk.last == before);
    /* a remote with counter 0xffff: the next local value carries */
    clock_with_fake(&clk, &w, 0);
    CHECK_OK(hlc_recv(&clk, hlc_make(w.ms + 1, 0xffff)));
    CHECK(hlc_now(&clk) == hlc_make(w.ms + 2, 0));
}

/* hlc_advance: what hlc_recv does after its check, without reading the wall clock */
typedef struct counting_wall {
    uint64_t ms;
    int reads;
} counting_wall;

static uint64_t counting_wall_ms(void *ctx)
{
    counting_wall *w = ctx;
    w->reads++;
    return w->ms;
}

static void test_hlc_advance(void)
{
    counting_wall w = {1700000000000ULL, 0};
    hlc_clock clk;
    hlc_init(&clk, 0);
    clk.wall = counting_wall_ms;
    clk.wall_ctx = &w;
    uint64_t local = hlc_now(&clk);
    CHECK_INT(w.reads, ==, 1);
    uint64_t remote = hlc_make(w.ms + 5000, 7);
    hlc_advance(&clk, remote);
    CHECK(clk.last == remote);
    hlc_advance(&clk, local); /* behind: the clock stays */
    CHECK(clk.last == remote);
    CHECK_INT(w.reads, ==, 1); /* no wall-clock read */
    CHECK_OK(hlc_recv(&clk, remote + 1));
    CHECK(clk.last == remote + 1);
    CHECK_INT(w.reads, ==, 2); /* hlc_recv reads it once, for its check */
}

static void test_hlc_drift_bound(void)
{
    fake_wall w = {1700000000000ULL};
    hlc_clock clk;
    clock_with_fake(&clk, &w, 0);
    uint64_t local = hlc_now(&clk);
    const uint64_t bound = w.ms + (uint64_t)clk.max_drift_ms;
    /* exactly at the bound, whatever the counter: accepted */
    CHECK_OK(hlc_check(&clk, hlc_make(bound, 0)));
    CHECK_OK(hlc_check(&clk, hlc_make(bound, 0xffff)));
    /* 1 ms past the bound: refused, clock unchanged */
    uint64_t past = hlc_make(bound + 1, 0);
    CHECK_INT(hlc_check(&clk, past), ==, FS_ECLOCK_DRIFT);
    CHECK_INT(hlc_recv(&clk, past), ==, FS_ECLOCK_DRIFT);
    CHECK(clk.last == local);
    CHECK_INT(hlc_recv(&clk, hlc_make(bound + 3600 * 1000, 0)), ==, FS_ECLOCK_DRIFT);
    CHECK_INT(hlc_recv(&clk, UINT64_MAX), ==, FS_ECLOCK_DRIFT);
    CHECK(clk.last == local);
    CHECK(hlc_now(&clk) == local + 1); /* nothing of the refused values leaked in */
    /* at the bound: accepted and adopted */
    uint64_t at = hlc_make(bound, 0xffff);
    CHECK_OK(hlc_recv(&clk, at));
    CHECK(clk.last == at);
    /* the bound follows the wall clock and max_drift_ms */
    w.ms += 1;
    CHECK_OK(hlc_check(&clk, past));
    clk.max_drift_ms = 1000;
    CHECK_OK(hlc_check(&clk, hlc_make(w.ms + 1000, 5)));
    CHECK_INT(hlc_check(&clk, hlc_make(w.ms + 1001, 0)), ==, FS_ECLOCK_DRIFT);
    clk.max_drift_ms = 0;
    CHECK_OK(hlc_check(&clk, hlc_make(w.ms, 0xffff)));
    CHECK_INT(hlc_check(&clk, hlc_make(w.ms + 1, 0)), ==, FS_ECLOCK_DRIFT);
}

static void test_hlc_persisted(void)
{
    fake_wall w = {1700000000000ULL};
    hlc_clock clk;
    /* persisted value ahead of the wall (the device's date was set back after a restart) */
    uint64_t persisted = hlc_make(w.ms + 86400000ULL, 9);
    clock_with_fake(&clk, &w, persisted);
    CHECK(clk.last == persisted);
    uint64_t h = hlc_now(&clk);
    CHECK(h > persisted);
    CHECK(h == persisted + 1);
    /* persisted value behind the wall: the wall wins */
    clock_with_fake(&clk, &w, hlc_make(w.ms - 1000, 3));
    CHECK(hlc_now(&clk) == hlc_make(w.ms, 0));
    /* persisted value in the wall's own millisecond: the counter continues */
    clock_with_fake(&clk, &w, hlc_make(w.ms, 100));
    CHECK(hlc_now(&clk) == hlc_make(w.ms, 101));
    /* a real clock restored from a value saved "in the future" */
    hlc_init(&clk, hlc_make(real_ms() + 5000, 0));
    uint64_t saved = clk.last;
    CHECK(hlc_now(&clk) > saved);
}

/* ---- rid ----------------------------------------------------------------------------- */

static bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static void test_rid_text(void)
{
    uint64_t now = real_ms();
    for (int i = 0; i < 1000; i++) {
        rid_t id, back;
        CHECK_OK(rid_new(&id, now + (uint64_t)i));
        CHECK(!rid_is_zero(&id));
        char text[RID_TEXT_LEN + 1];
        memset(text, 'X', sizeof text);
        rid_to_text(&id, text);
        CHECK_INT(strlen(text), ==, RID_TEXT_LEN);
        for (int k = 0; k < RID_TEXT_LEN; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                CHECK(text[k] == '-');
            else
                CHECK(is_lower_hex(text[k]));
        }
        CHECK(text[14] == '7');                    /* version 7 */
        CHECK(strchr("89ab", text[19]) != NULL);   /* RFC 4122 variant */
        memset(&back, 0, sizeof back);
        CHECK_OK(rid_from_text(text, &back));
        CHECK_INT(rid_cmp(&id, &back), ==, 0);
        /* 32 hex without dashes, and upper case, name the same id */
        char plain[33], upper[RID_TEXT_LEN + 1];
        int p = 0;
        for (int k = 0; k < RID_TEXT_LEN; k++) {
            if (text[k] != '-')
                plain[p++] = text[k];
            upper[k] = (char)(text[k] >= 'a' && text[k] <= 'f' ? text[k] - 32 : text[k]);
        }
        plain[p] = '\0';
        upper[RID_TEXT_LEN] = '\0';
        memset(&back, 0, sizeof back);
        CHECK_OK(rid_from_text(plain, &back));
        CHECK_INT(rid_cmp(&id, &back), ==, 0);
        memset(&back, 0, sizeof back);
        CHECK_OK(rid_from_text(upper, &back));
        CHECK_INT(rid_cmp(&id, &back), ==, 0);
    }
    /* a fixed id and its text */
    rid_t f;
    for (int i = 0; i < 16; i++)
        f.b[i] = (uint8_t)(i * 17);
    char text[RID_TEXT_LEN + 1];
    rid_to_text(&f, text);
    CHECK_STR(text, "00112233-4455-6677-8899-aabbccddeeff");
    rid_t g;
    CHECK_OK(rid_from_text("00112233-4455-6677-8899-aabbccddeeff", &g));
    CHECK_INT(rid_cmp(&f, &g), ==, 0);
    /* the smallest valid id */
    CHECK_OK(rid_from_text("00000000-0000-0000-0000-000000000001", &g));
    CHECK(!rid_is_zero(&g));
    CHECK_INT(g.b[15], ==, 1);
}

static int cmp_rid_qsort(const void *a, const void *b) { return rid_cmp(a, b); }

static void test_rid_unique(void)
{
    enum { N = 100000 };
    rid_t *ids = malloc(N * sizeof *ids);
    CHECK(ids);
    uint64_t now = real_ms();
    for (int i = 0; i < N; i++)
        CHECK_OK(rid_new(&ids[i], now)); /* all in one millisecond: only randomness differs */
    qsort(ids, N, sizeof *ids, cmp_rid_qsort);
    for (int i = 1; i < N; i++) {
        if (rid_cmp(&ids[i - 1], &ids[i]) == 0) {
            char t[RID_TEXT_LEN + 1];
            rid_to_text(&ids[i], t);
            fprintf(stderr, "duplicate id %s\n", t);
        }
        CHECK_INT(rid_cmp(&ids[i - 1], &ids[i]), <, 0);
    }
    /* the millisecond is the first 48 bits, big-endian */
    for (int i = 0; i < N; i++) {
        uint64_t ms = 0;
        for (int k = 0; k < 6; k++)
            ms = ms << 8 | ids[i].b[k];
        CHECK(ms == now);
    }
    free(ids);
}

static void test_rid_time_order(void)
{
    uint64_t now = real_ms();
    rid_t prev;
    CHECK_OK(rid_new(&prev, now));
    for (uint64_t i = 1; i <= 10000; i++) {
        rid_t id;
        CHECK_OK(rid_new(&id, now + i));
        CHECK_INT(rid_cmp(&prev, &id), <, 0); /* a later millisecond sorts later */
        char a[RID_TEXT_LEN + 1], b[RID_TEXT_LEN + 1];
        rid_to_text(&prev, a);
        rid_to_text(&id, b);
        CHECK_INT(strcmp(a, b), <, 0); /* and so does its text */
        prev = id;
    }
    /* across byte boundaries of the timestamp, and far apart in time */
    rid_t x, y;
    CHECK_OK(rid_new(&x, 0xffULL));
    CHECK_OK(rid_new(&y, 0x100ULL));
    CHECK_INT(rid_cmp(&x, &y), <, 0);
    CHECK_OK(rid_new(&x, 1000));
    CHECK_OK(rid_new(&y, (1ULL << 48) - 1));
    CHECK_INT(rid_cmp(&x, &y), <, 0);
}

static void expect_bad_text(const char *text)
{
    rid_t out;
    memset(&out, 0xab, sizeof out);
    int rc = rid_from_text(text, &out);
    if (rc != FS_EBAD_ID)
        fprintf(stderr, "rid_from_text accepted \"%s\"\n", text);
    CHECK_INT(rc, ==, FS_EBAD_ID);
    for (int i = 0; i < 16; i++)
        CHECK_INT(out.b[i], ==, 0xab); /* out untouched on error */
}

static void test_rid_bad_text(void)
{
    expect_bad_text("");
    expect_bad_text("-");
    expect_bad_text("0");
    /* wrong length */
    expect_bad_text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5");   /* 35 */
    expect_bad_text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b6"); /* 37: one hex digit more */
    expect_bad_text("0190a1b2c3d47e5f8a9b0c1d2e3f4a5");       /* 31 hex */
    expect_bad_text("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b6");     /* 33 hex */
    expect_bad_text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-"); /* trailing dash */
    /* not hex */
    expect_bad_text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g");
    expect_bad_text("g190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    expect_bad_text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5 ");
    expect_bad_text(" 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5");
    expect_bad_text("0190a1b2_c3d4_7e5f_8a9b_0c1d2e3f4a5b");
    expect_bad_text("{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}");
    expect_bad_text("0x90a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    expect_bad_text("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a\xe5\x84\xbf");
    /* all zero, with and without dashes */
    expect_bad_text("00000000-0000-0000-0000-000000000000");
    expect_bad_text("00000000000000000000000000000000");
}

/* rid.h: "Parses text (36 chars, dashes optional: 32 hex also accepted)". rid_from_text
 * skips a '-' anywhere and any number of times, so texts of other lengths (extra or doubled
 * dashes, dashes in other places) parse to an id: one id, many spellings. */
static void test_rid_dash_placement(void)
{
    static const char *const odd[] = {
        "0190a1b2--c3d4-7e5f-8a9b-0c1d2e3f4a5b",        /* 37 chars: doubled dash */
        "-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",        /* 37 chars: leading dash */
        "0-1-9-0-a1b2c3d47e5f8a9b0c1d2e3f4a5b",         /* 36 chars, dashes misplaced */
        "01-90a1b2c3d47e5f8a9b0c1d2e3f4a5b",            /* 33 chars */
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        rid_t out;
        int rc = rid_from_text(odd[i], &out);
        if (rc != FS_EBAD_ID)
            fprintf(stderr, "rid_from_text accepted \"%s\" (%zu chars)\n", odd[i],
                    strlen(odd[i]));
        CHECK_INT_SOFT(rc, ==, FS_EBAD_ID, "rid_from_text accepts dashes anywhere");
    }
}

int main(void)
{
    test_hlc_layout();
    test_hlc_monotonic_real();
    test_hlc_wall_backwards();
    test_hlc_counter_carry();
    test_hlc_recv();
    test_hlc_advance();
    test_hlc_drift_bound();
    test_hlc_persisted();
    test_rid_text();
    test_rid_unique();
    test_rid_time_order();
    test_rid_bad_text();
    test_rid_dash_placement();
    if (soft_checks_failed) {
        fprintf(stderr, "hlc_rid: %d soft check(s) failed\n", soft_checks_failed);
        return 1;
    }
    printf("hlc_rid: ok\n");
    return 0;
}

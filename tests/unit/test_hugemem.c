/*
 * test_hugemem — the engine's big blocks (sync/hugemem.c): zeroed when asked, their content
 * kept across every kind of resize (small to small, small to mapped, within one mapping's
 * rounding, to a bigger mapping, back to small), and, where blocks are mappings of their own,
 * aligned to a huge page and advised for huge pages (the "hg" flag in /proc/self/smaps).
 */
#include "check.h"
#include "hugemem.h"

#include <stdint.h>
#include <unistd.h>

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7 + (i >> 12));
}

static void expect(const uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed + i * 7 + (i >> 12))) {
            fprintf(stderr, "byte %zu of %zu: %u, not %u\n", i, n, p[i],
                    (uint8_t)(seed + i * 7 + (i >> 12)));
            abort();
        }
}

static void expect_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK_INT(p[i], ==, 0);
}

/* The VmFlags of the mapping holding p: whether it carries "hg" (MADV_HUGEPAGE). */
static bool advised(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f);
    char line[512];
    bool in = false, hg = false, found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)p >= a && (uintptr_t)p < b;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) {
            found = true;
            hg = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    CHECK(found);
    return hg;
}

static void check_mapped(const void *p)
{
    if (!hugemem_maps())
        return; /* plain malloc memory (a sanitizer build) */
    CHECK_INT((uintptr_t)p % HUGEMEM_PAGE, ==, 0);
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0)
        CHECK(advised(p)); /* a kernel with THP takes the advice, whatever its mode */
}

static void test_zalloc(void)
{
    uint8_t *s = hugemem_zalloc(1000);
    CHECK(s);
    expect_zero(s, 1000);
    hugemem_free(s, 1000);

    size_t big = HUGEMEM_MAP_FROM;
    uint8_t *b = hugemem_zalloc(big);
    CHECK(b);
    expect_zero(b, big);
    check_mapped(b);
    b[big - 1] = 1; /* its last byte is its own */
    hugemem_free(b, big);
    hugemem_free(NULL, big);
}

static void test_realloc(void)
{
    size_t sizes[] = {100,
                      HUGEMEM_MAP_FROM - 1,         /* malloc to malloc */
                      3 * HUGEMEM_PAGE / 2,         /* to a mapping of two huge pages */
                      2 * HUGEMEM_PAGE - 4096,      /* within the same two */
                      5 * HUGEMEM_PAGE / 2,         /* to a mapping of three */
                      HUGEMEM_MAP_FROM,             /* shrunk to a mapping of one */
                      HUGEMEM_PAGE,                 /* the same one */
                      500 << 10};                   /* back to malloc */
    uint8_t *p = NULL;
    size_t have = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint8_t *q = hugemem_realloc(p, have, n);
        CHECK(q);
        if (have && n >= HUGEMEM_MAP_FROM && have >= HUGEMEM_MAP_FROM && hugemem_maps() &&
            (n + HUGEMEM_PAGE - 1) / HUGEMEM_PAGE == (have + HUGEMEM_PAGE - 1) / HUGEMEM_PAGE)
            CHECK(q == p); /* the same mapping: nothing moved */
        if (have)
            expect(q, have < n ? have : n, (uint8_t)(k - 1));
        if (n >= HUGEMEM_MAP_FROM)
            check_mapped(q);
        fill(q, n, (uint8_t)k);
        p = q;
        have = n;
    }
    hugemem_free(p, have);
}

int main(void)
{
    test_zalloc();
    test_realloc();
    printf("test_hugemem: ok (%s)\n", hugemem_maps() ? "mapped blocks" : "plain malloc");
    return 0;
}

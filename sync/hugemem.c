/*
 * hugemem.c — see hugemem.h.
 */
#include "hugemem.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if HUGEMEM_ASAN || defined(__SANITIZE_THREAD__)
#define HUGEMEM_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HUGEMEM_PLAIN 1
#endif
#endif
#if !defined(HUGEMEM_PLAIN) && !defined(__linux__)
#define HUGEMEM_PLAIN 1
#endif

#ifdef HUGEMEM_PLAIN

void *hugemem_zalloc(size_t bytes) { return calloc(1, bytes); }
void *hugemem_realloc(void *p, size_t old_bytes, size_t new_bytes)
{
    (void)old_bytes;
    return realloc(p, new_bytes);
}
void hugemem_free(void *p, size_t bytes) { (void)bytes, free(p); }
bool hugemem_maps(void) { return false; }

#else

#include <sys/mman.h>

static size_t mapped_size(size_t bytes)
{
    return (bytes + HUGEMEM_PAGE - 1) & ~(HUGEMEM_PAGE - 1);
}

/* A fresh (zeroed) mapping of mapped_size(bytes), aligned to HUGEMEM_PAGE and advised for
 * huge pages: one huge page more is mapped, then the unaligned head and tail unmapped. */
static void *map_huge(size_t bytes)
{
    size_t size = mapped_size(bytes), span = size + HUGEMEM_PAGE;
    uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)m + HUGEMEM_PAGE - 1) & ~(uintptr_t)(HUGEMEM_PAGE - 1));
    if (p > m)
        munmap(m, (size_t)(p - m));
    if (m + span > p + size)
        munmap(p + size, (size_t)(m + span - (p + size)));
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE); /* a hint: without THP the pages stay small */
#endif
    return p;
}

void *hugemem_zalloc(size_t bytes)
{
    return bytes < HUGEMEM_MAP_FROM ? calloc(1, bytes) : map_huge(bytes);
}

void *hugemem_realloc(void *p, size_t old_bytes, size_t new_bytes)
{
    bool old_mapped = p && old_bytes >= HUGEMEM_MAP_FROM;
    bool new_mapped = new_bytes >= HUGEMEM_MAP_FROM;
    if (!old_mapped && !new_mapped)
        return realloc(p, new_bytes);
    if (old_mapped && new_mapped && mapped_size(old_bytes) == mapped_size(new_bytes))
        return p;
    void *n = new_mapped ? map_huge(new_bytes) : malloc(new_bytes);
    if (!n)
        return NULL;
    if (p)
        memcpy(n, p, old_bytes < new_bytes ? old_bytes : new_bytes);
    hugemem_free(p, old_bytes);
    return n;
}

bool hugemem_maps(void) { return true; }

void hugemem_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes < HUGEMEM_MAP_FROM)
        free(p);
    else
        munmap(p, mapped_size(bytes));
}

#endif

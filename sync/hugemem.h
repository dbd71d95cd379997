/*
 * hugemem.h — memory for large, long-lived, growing structures (the field-state cache's
 * entries and table, the tail set, the server's page cache), backed by transparent huge pages
 * where the kernel offers them (Linux, THP in "madvise" or "always" mode).
 *
 * Why: each 4 KiB page a structure grows into costs a page fault at its first touch, ~10 µs on
 * a virtual machine. Profiled while a device pushed 100,000 edits, the service thread took
 * 3,800 of them, most in the field cache's new entries, the tail set and SQLite's new pages;
 * a 2 MiB page takes one fault for 512 (docs/performance.md §1 "Session 9"). Only these
 * structures: the whole process on huge pages (glibc.malloc.hugetlb=1) doubled the memory of
 * an idle session.
 *
 * A block below HUGEMEM_MAP_FROM is plain malloc memory; from it on it is mapped on its own,
 * rounded up to whole huge pages and aligned to one. The caller passes the size it asked
 * for to every later call: that says which kind the block is. Built with a sanitizer, every
 * block is plain malloc memory, so that overflows stay visible. Without mmap, the same.
 */
#ifndef FS_HUGEMEM_H
#define FS_HUGEMEM_H

#include <stdbool.h>
#include <stddef.h>

/* Whether this is an AddressSanitizer build (1) or not (0); there, blocks are plain malloc
 * memory, and a user that hands a block out in parts poisons the parts not in use
 * (HUGEMEM_POISON) so that ASan still reports reads of them. */
#if defined(__SANITIZE_ADDRESS__)
#define HUGEMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HUGEMEM_ASAN 1
#endif
#endif
#ifndef HUGEMEM_ASAN
#define HUGEMEM_ASAN 0
#endif
#if HUGEMEM_ASAN
#include <sanitizer/asan_interface.h>
#define HUGEMEM_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define HUGEMEM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define HUGEMEM_POISON(p, n) ((void)(p), (void)(n))
#define HUGEMEM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define HUGEMEM_PAGE ((size_t)2 << 20)    /* the huge page size blocks are aligned to */
#define HUGEMEM_MAP_FROM (HUGEMEM_PAGE / 2) /* blocks from this size on are mappings */

/* A zeroed block of bytes (> 0), owned by the caller (hugemem_free(p, bytes)), or NULL. */
void *hugemem_zalloc(size_t bytes);

/* Grows or shrinks block p of old_bytes (NULL: none) to new_bytes (> 0), keeping the first
 * min(old, new) bytes; the rest is not zeroed. Returns the block (owned; p is gone), or NULL
 * with p untouched. */
void *hugemem_realloc(void *p, size_t old_bytes, size_t new_bytes);

/* Frees block p (NULL: nothing) of the size it was asked with. */
void hugemem_free(void *p, size_t bytes);

/* Whether blocks from HUGEMEM_MAP_FROM on are mappings of their own, advised for huge pages
 * (false: plain malloc memory, in a sanitizer build or without mmap). */
bool hugemem_maps(void);

#endif

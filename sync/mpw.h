/*
 * mpw.h — MessagePack written a few hundred bytes at a time into a msgpack_packer.
 *
 * msgpack-c's packer hands every element to its write callback (for an sbuffer:
 * msgpack_sbuffer_write, a call through a pointer, a capacity check and a memcpy of 1-9
 * bytes): packing a change's log body took ~930 instructions for ~11 elements, 7% of what
 * the server spends on a pushed change (callgrind, bench_ingest). mpw collects the elements
 * in a buffer on the caller's stack and hands it over in one call when it fills, when a long
 * string or binary body goes straight through, and at mpw_end.
 *
 * The bytes are exactly msgpack-c's (its choice of the shortest form of each integer, str8
 * for strings of 32-255 bytes, bin8 for short binaries): the push form of a re-sent change
 * must be the same bytes (docs/protocol.md §3.1), and test_change checks the two packers
 * against each other. Only what change.c packs is here. Errors (the callback's) are kept in
 * w->rc, and everything after one is dropped; mpw_end returns it.
 */
#ifndef FS_MPW_H
#define FS_MPW_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MPW_BUF 240
#define MPW_ITEM 9 /* the longest header or number */

typedef struct mpw {
    msgpack_packer *pk; /* borrowed */
    int rc;             /* the first failure of pk's callback, else 0 */
    size_t n;           /* bytes in b */
    uint8_t b[MPW_BUF];
} mpw;

static inline void mpw_init(mpw *w, msgpack_packer *pk)
{
    w->pk = pk;
    w->rc = 0;
    w->n = 0;
}

static inline void mpw_flush(mpw *w)
{
    if (w->n && !w->rc)
        w->rc = w->pk->callback(w->pk->data, (const char *)w->b, w->n);
    w->n = 0;
}

/* Room for k <= MPW_ITEM more bytes; returns where they go (then w->n += k). */
static inline uint8_t *mpw_room(mpw *w, size_t k)
{
    if (w->n + k > MPW_BUF)
        mpw_flush(w);
    return w->b + w->n;
}

/* v's low `bytes` bytes (1, 2, 4 or 8), big-endian. */
static inline void mpw_be(uint8_t *p, uint64_t v, int bytes)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
#else
    switch (bytes) {
    case 1: p[0] = (uint8_t)v; break;
    case 2: {
        uint16_t b = __builtin_bswap16((uint16_t)v);
        memcpy(p, &b, 2);
        break;
    }
    case 4: {
        uint32_t b = __builtin_bswap32((uint32_t)v);
        memcpy(p, &b, 4);
        break;
    }
    default: {
        uint64_t b = __builtin_bswap64(v);
        memcpy(p, &b, 8);
    }
    }
#endif
}

/* A tag byte followed by v in `bytes` big-endian bytes. */
static inline void mpw_tagged(mpw *w, uint8_t tag, uint64_t v, int bytes)
{
    uint8_t *p = mpw_room(w, 1 + (size_t)bytes);
    p[0] = tag;
    mpw_be(p + 1, v, bytes);
    w->n += 1 + (size_t)bytes;
}

static inline void mpw_byte(mpw *w, uint8_t b)
{
    *mpw_room(w, 1) = b;
    w->n++;
}

static inline void mpw_uint(mpw *w, uint64_t v)
{
    if (v < 128)
        mpw_byte(w, (uint8_t)v);
    else if (v < 256)
        mpw_tagged(w, 0xcc, v, 1);
    else if (v < 65536)
        mpw_tagged(w, 0xcd, v, 2);
    else if (v < (1ull << 32))
        mpw_tagged(w, 0xce, v, 4);
    else
        mpw_tagged(w, 0xcf, v, 8);
}

static inline void mpw_int(mpw *w, int64_t v)
{
    if (v >= 0)
        mpw_uint(w, (uint64_t)v);
    else if (v >= -32)
        mpw_byte(w, (uint8_t)(int8_t)v);
    else if (v >= -128)
        mpw_tagged(w, 0xd0, (uint64_t)v, 1);
    else if (v >= -32768)
        mpw_tagged(w, 0xd1, (uint64_t)v, 2);
    else if (v >= -2147483648ll)
        mpw_tagged(w, 0xd2, (uint64_t)v, 4);
    else
        mpw_tagged(w, 0xd3, (uint64_t)v, 8);
}

static inline void mpw_nil(mpw *w) { mpw_byte(w, 0xc0); }
static inline void mpw_bool(mpw *w, bool v) { mpw_byte(w, v ? 0xc3 : 0xc2); }

/* Array (fix 0x90) or map (fix 0x80) header of n items. */
static inline void mpw_container(mpw *w, uint8_t fix, uint8_t tag16, uint32_t n)
{
    if (n < 16)
        mpw_byte(w, (uint8_t)(fix | n));
    else if (n < 65536)
        mpw_tagged(w, tag16, n, 2);
    else
        mpw_tagged(w, (uint8_t)(tag16 + 1), n, 4);
}
static inline void mpw_array(mpw *w, uint32_t n) { mpw_container(w, 0x90, 0xdc, n); }
static inline void mpw_map(mpw *w, uint32_t n) { mpw_container(w, 0x80, 0xde, n); }

/* len bytes of a body: into the buffer while they fit, else straight to the callback. */
static inline void mpw_body(mpw *w, const void *p, size_t len)
{
    if (w->n + len > MPW_BUF) {
        mpw_flush(w);
        if (len > MPW_BUF) {
            if (!w->rc && len)
                w->rc = w->pk->callback(w->pk->data, (const char *)p, len);
            return;
        }
    }
    if (len)
        memcpy(w->b + w->n, p, len);
    w->n += len;
}

/* The header of a str (tag8 0xd9) or bin (0xc4) of len bytes whose 16- and 32-bit length
 * forms are the next two tags, then its body. */
static inline void mpw_bytes(mpw *w, uint8_t tag8, const void *p, uint32_t len)
{
    if (len < 256)
        mpw_tagged(w, tag8, len, 1);
    else if (len < 65536)
        mpw_tagged(w, (uint8_t)(tag8 + 1), len, 2);
    else
        mpw_tagged(w, (uint8_t)(tag8 + 2), len, 4);
    mpw_body(w, p, len);
}

static inline void mpw_str(mpw *w, const char *s, uint32_t len)
{
    if (len < 32) {
        mpw_byte(w, (uint8_t)(0xa0 | len));
        mpw_body(w, s, len);
    } else {
        mpw_bytes(w, 0xd9, s, len);
    }
}

static inline void mpw_bin(mpw *w, const void *b, uint32_t len) { mpw_bytes(w, 0xc4, b, len); }

/* Hands over what is left; returns 0 or the callback's first failure. */
static inline int mpw_end(mpw *w)
{
    mpw_flush(w);
    return w->rc;
}

#endif

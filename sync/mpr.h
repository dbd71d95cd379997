/*
 * mpr.h — a bounded, allocation-free MessagePack reader.
 *
 * Encoding uses msgpack-c's packer (msgpack_sbuffer + msgpack_packer); changes and values,
 * the hot part, go through mpw.h into the same packer, in fewer calls. Decoding untrusted
 * bytes uses this reader instead of msgpack_unpack: it reads one value at a time from
 * (buf, len), never allocates, checks every container count against the bytes that remain
 * (each item needs at least one byte), and caps nesting when skipping unknown values. A
 * 5-byte array32 header claiming 2^32 items fails here with FS_EDEC_COUNT instead of
 * reserving gigabytes as msgpack_unpack would.
 *
 * Strings and binaries returned by the reader borrow the input buffer (valid while it is).
 * Every function returns 0 or a negative fs_err and leaves the position unchanged on error.
 */
#ifndef FS_MPR_H
#define FS_MPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MPR_MAX_DEPTH 16

typedef struct mpr {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
} mpr;

typedef enum mpr_type {
    MPR_NIL, MPR_BOOL, MPR_UINT, MPR_INT, MPR_FLOAT, MPR_STR, MPR_BIN, MPR_ARRAY, MPR_MAP,
    MPR_EXT, MPR_INVALID
} mpr_type;

static inline void mpr_init(mpr *r, const void *buf, size_t len)
{
    r->p = (const uint8_t *)buf;
    r->end = len ? r->p + len : r->p; /* no arithmetic on a NULL buf (len 0) */
}
static inline size_t mpr_left(const mpr *r) { return (size_t)(r->end - r->p); }

/* Type of the next value without consuming it (MPR_INVALID at end or on 0xc1). */
mpr_type mpr_peek(const mpr *r);

int mpr_nil(mpr *r);                       /* consumes a nil */
bool mpr_try_nil(mpr *r);                  /* consumes a nil if next, returns whether */
int mpr_bool(mpr *r, bool *out);
int mpr_u64_any(mpr *r, uint64_t *out);    /* any non-negative integer (mpr_u64's body) */
/* Any non-negative integer. A positive fixint (most of a change's numbers: its type, field
 * numbers, small values) is read here, inline; the rest by mpr_u64_any. */
static inline int mpr_u64(mpr *r, uint64_t *out)
{
    if (r->p < r->end && *r->p <= 0x7f) {
        *out = *r->p++;
        return 0;
    }
    return mpr_u64_any(r, out);
}
int mpr_i64(mpr *r, int64_t *out);         /* any integer in int64 range */
int mpr_u32_max(mpr *r, uint32_t max, uint32_t *out); /* FS_EVALUE_RANGE if > max */
/* Array / map headers: count checked against max and against the bytes left. */
int mpr_array(mpr *r, uint32_t max, uint32_t *count);
int mpr_map(mpr *r, uint32_t max, uint32_t *count);
/* str: checks length <= max_len and UTF-8 validity (no NUL). Borrows the input. */
int mpr_str(mpr *r, uint32_t max_len, const char **s, uint32_t *len);
/* bin: length <= max_len (callers check exact sizes). Borrows the input. */
int mpr_bin(mpr *r, uint32_t max_len, const uint8_t **b, uint32_t *len);
/* Skips one value of any type, nesting at most depth levels. */
int mpr_skip(mpr *r, int depth);

/* Validates UTF-8 (shortest forms, no surrogates, no NUL). */
bool utf8_valid(const char *s, size_t len);

#endif

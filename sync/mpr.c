/*
 * mpr.c — bounded MessagePack reader. See mpr.h for why we do not decode untrusted input with
 * msgpack_unpack. Every read checks the bytes left before touching them.
 */
#include "mpr.h"

#include "err.h"

#include <string.h>

/* n (1, 2, 4 or 8) big-endian bytes at p. */
static uint64_t be(const uint8_t *p, int n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    switch (n) {
    case 1: return p[0];
    case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        return __builtin_bswap16(v);
    }
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return __builtin_bswap32(v);
    }
    case 8: {
        uint64_t v;
        memcpy(&v, p, 8);
        return __builtin_bswap64(v);
    }
    }
#endif
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

mpr_type mpr_peek(const mpr *r)
{
    if (r->p >= r->end)
        return MPR_INVALID;
    uint8_t c = *r->p;
    if (c <= 0x7f || c == 0xcc || c == 0xcd || c == 0xce || c == 0xcf)
        return MPR_UINT;
    if (c >= 0xe0 || c == 0xd0 || c == 0xd1 || c == 0xd2 || c == 0xd3)
        return MPR_INT;
    if ((c & 0xf0) == 0x80 || c == 0xde || c == 0xdf)
        return MPR_MAP;
    if ((c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd)
        return MPR_ARRAY;
    if ((c & 0xe0) == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb)
        return MPR_STR;
    if (c == 0xc0)
        return MPR_NIL;
    if (c == 0xc2 || c == 0xc3)
        return MPR_BOOL;
    if (c == 0xc4 || c == 0xc5 || c == 0xc6)
        return MPR_BIN;
    if (c == 0xca || c == 0xcb)
        return MPR_FLOAT;
    if (c >= 0xd4 && c <= 0xd8)
        return MPR_EXT;
    if (c == 0xc7 || c == 0xc8 || c == 0xc9)
        return MPR_EXT;
    return MPR_INVALID;
}

int mpr_nil(mpr *r)
{
    if (r->p >= r->end)
        return FS_EDEC_TRUNCATED;
    if (*r->p != 0xc0)
        return FS_EDEC_TYPE;
    r->p++;
    return 0;
}

bool mpr_try_nil(mpr *r)
{
    if (r->p < r->end && *r->p == 0xc0) {
        r->p++;
        return true;
    }
    return false;
}

int mpr_bool(mpr *r, bool *out)
{
    if (r->p >= r->end)
        return FS_EDEC_TRUNCATED;
    if (*r->p != 0xc2 && *r->p != 0xc3)
        return FS_EDEC_TYPE;
    *out = *r->p++ == 0xc3;
    return 0;
}

/* Reads any integer as sign + magnitude. */
static int read_int(mpr *r, bool *neg, uint64_t *mag)
{
    if (r->p >= r->end)
        return FS_EDEC_TRUNCATED;
    uint8_t c = *r->p;
    int n;
    bool sgn = false;
    if (c <= 0x7f) {
        *neg = false;
        *mag = c;
        r->p++;
        return 0;
    }
    if (c >= 0xe0) {
        *neg = true;
        *mag = (uint64_t)(-(int64_t)(int8_t)c);
        r->p++;
        return 0;
    }
    switch (c) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0: n = 1; sgn = true; break;
    case 0xd1: n = 2; sgn = true; break;
    case 0xd2: n = 4; sgn = true; break;
    case 0xd3: n = 8; sgn = true; break;
    default: return FS_EDEC_TYPE;
    }
    if (mpr_left(r) < (size_t)n + 1)
        return FS_EDEC_TRUNCATED;
    uint64_t v = be(r->p + 1, n);
    if (sgn) {
        int64_t s;
        switch (n) {
        case 1: s = (int8_t)v; break;
        case 2: s = (int16_t)v; break;
        case 4: s = (int32_t)v; break;
        default: s = (int64_t)v; break;
        }
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = false;
        *mag = v;
    }
    r->p += n + 1;
    return 0;
}

int mpr_u64_any(mpr *r, uint64_t *out)
{
    const uint8_t *save = r->p;
    bool neg;
    uint64_t mag;
    int rc = read_int(r, &neg, &mag);
    if (rc)
        return rc;
    if (neg && mag) {
        r->p = save;
        return FS_EVALUE_RANGE;
    }
    *out = mag;
    return 0;
}

int mpr_i64(mpr *r, int64_t *out)
{
    const uint8_t *save = r->p;
    bool neg;
    uint64_t mag;
    int rc = read_int(r, &neg, &mag);
    if (rc)
        return rc;
    if ((!neg && mag > (uint64_t)INT64_MAX) || (neg && mag > (uint64_t)INT64_MAX + 1)) {
        r->p = save;
        return FS_EVALUE_RANGE;
    }
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int mpr_u32_max(mpr *r, uint32_t max, uint32_t *out)
{
    const uint8_t *save = r->p;
    uint64_t v;
    int rc = mpr_u64(r, &v);
    if (rc)
        return rc;
    if (v > max) {
        r->p = save;
        return FS_EVALUE_RANGE;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Container header: fix mask/base, 16-bit code, 32-bit code. */
static int read_container(mpr *r, uint8_t fixmask, uint8_t c16, uint8_t c32, uint32_t max,
                          uint32_t per_item, uint32_t *count)
{
    if (r->p >= r->end)
        return FS_EDEC_TRUNCATED;
    uint8_t c = *r->p;
    uint64_t n;
    int hdr;
    if ((c & 0xf0) == fixmask) {
        n = c & 0x0f;
        hdr = 1;
    } else if (c == c16) {
        if (mpr_left(r) < 3)
            return FS_EDEC_TRUNCATED;
        n = be(r->p + 1, 2);
        hdr = 3;
    } else if (c == c32) {
        if (mpr_left(r) < 5)
            return FS_EDEC_TRUNCATED;
        n = be(r->p + 1, 4);
        hdr = 5;
    } else {
        return FS_EDEC_TYPE;
    }
    if (n > max || n * per_item > mpr_left(r) - (size_t)hdr)
        return FS_EDEC_COUNT;
    r->p += hdr;
    *count = (uint32_t)n;
    return 0;
}

int mpr_array(mpr *r, uint32_t max, uint32_t *count)
{
    return read_container(r, 0x90, 0xdc, 0xdd, max, 1, count);
}

int mpr_map(mpr *r, uint32_t max, uint32_t *count)
{
    return read_container(r, 0x80, 0xde, 0xdf, max, 2, count);
}

/* Length-prefixed payload: returns header size and length. */
static int read_blob_header(mpr *r, bool str, uint64_t *len, int *hdr)
{
    if (r->p >= r->end)
        return FS_EDEC_TRUNCATED;
    uint8_t c = *r->p;
    int n;
    if (str && (c & 0xe0) == 0xa0) {
        *len = c & 0x1f;
        *hdr = 1;
        return 0;
    }
    if (str && c == 0xd9) n = 1;
    else if (str && c == 0xda) n = 2;
    else if (str && c == 0xdb) n = 4;
    else if (!str && c == 0xc4) n = 1;
    else if (!str && c == 0xc5) n = 2;
    else if (!str && c == 0xc6) n = 4;
    else return FS_EDEC_TYPE;
    if (mpr_left(r) < (size_t)n + 1)
        return FS_EDEC_TRUNCATED;
    *len = be(r->p + 1, n);
    *hdr = n + 1;
    return 0;
}

int mpr_str(mpr *r, uint32_t max_len, const char **s, uint32_t *len)
{
    uint64_t n;
    int hdr;
    int rc = read_blob_header(r, true, &n, &hdr);
    if (rc)
        return rc;
    if (n > mpr_left(r) - (size_t)hdr)
        return FS_EDEC_TRUNCATED;
    if (n > max_len)
        return FS_EDEC_TOOBIG;
    const char *p = (const char *)r->p + hdr;
    if (!utf8_valid(p, (size_t)n))
        return FS_EDEC_UTF8;
    *s = p;
    *len = (uint32_t)n;
    r->p += hdr + n;
    return 0;
}

int mpr_bin(mpr *r, uint32_t max_len, const uint8_t **b, uint32_t *len)
{
    uint64_t n;
    int hdr;
    int rc = read_blob_header(r, false, &n, &hdr);
    if (rc)
        return rc;
    if (n > mpr_left(r) - (size_t)hdr)
        return FS_EDEC_TRUNCATED;
    if (n > max_len)
        return FS_EDEC_TOOBIG;
    *b = r->p + hdr;
    *len = (uint32_t)n;
    r->p += hdr + n;
    return 0;
}

static int skip_n(mpr *r, size_t n)
{
    if (mpr_left(r) < n)
        return FS_EDEC_TRUNCATED;
    r->p += n;
    return 0;
}

int mpr_skip(mpr *r, int depth)
{
    const uint8_t *save = r->p;
    int rc = 0;
    uint32_t n;
    uint64_t len;
    int hdr;
    switch (mpr_peek(r)) {
    case MPR_NIL: r->p++; return 0;
    case MPR_BOOL: r->p++; return 0;
    case MPR_UINT: {
        uint64_t v;
        return mpr_u64(r, &v);
    }
    case MPR_INT: {
        bool neg;
        uint64_t mag;
        return read_int(r, &neg, &mag);
    }
    case MPR_FLOAT: return skip_n(r, *r->p == 0xca ? 5 : 9);
    case MPR_STR:
    case MPR_BIN:
        rc = read_blob_header(r, mpr_peek(r) == MPR_STR, &len, &hdr);
        if (rc)
            return rc;
        if (len > mpr_left(r) - (size_t)hdr)
            return FS_EDEC_TRUNCATED;
        r->p += hdr + len;
        return 0;
    case MPR_ARRAY:
    case MPR_MAP: {
        if (depth <= 0)
            return FS_EDEC_DEPTH;
        bool map = mpr_peek(r) == MPR_MAP;
        rc = map ? mpr_map(r, UINT32_MAX, &n) : mpr_array(r, UINT32_MAX, &n);
        if (rc)
            return rc;
        uint64_t items = map ? 2ull * n : n;
        for (uint64_t i = 0; i < items; i++) {
            rc = mpr_skip(r, depth - 1);
            if (rc) {
                r->p = save;
                return rc;
            }
        }
        return 0;
    }
    case MPR_EXT: {
        uint8_t c = *r->p;
        if (c >= 0xd4 && c <= 0xd8)
            return skip_n(r, 2 + (1u << (c - 0xd4)));
        int nb = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
        if (mpr_left(r) < (size_t)nb + 2)
            return FS_EDEC_TRUNCATED;
        uint64_t l = be(r->p + 1, nb);
        if (l > mpr_left(r) - (size_t)nb - 2)
            return FS_EDEC_TRUNCATED;
        r->p += nb + 2 + l;
        return 0;
    }
    default:
        return r->p >= r->end ? FS_EDEC_TRUNCATED : FS_EDEC_TYPE;
    }
}

bool utf8_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s, *e = p + len;
    while (p < e) {
        uint8_t c = *p;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        int n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
        else return false;
        if (e - p <= n)
            return false;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

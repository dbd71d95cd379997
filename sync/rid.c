/*
 * rid.c — record ids. See rid.h for the layout and why it is time-ordered.
 */
#include "rid.h"

#include "err.h"

#include <string.h>
#include <sys/random.h>

int rid_new(rid_t *out, uint64_t now_ms)
{
    for (int i = 0; i < 6; i++)
        out->b[i] = (uint8_t)(now_ms >> (40 - 8 * i));
    size_t got = 0;
    while (got < 10) {
        ssize_t n = getrandom(out->b + 6 + got, 10 - got, 0);
        if (n <= 0)
            return FS_EIO;
        got += (size_t)n;
    }
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x70); /* version 7 */
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80); /* variant */
    return 0;
}

void rid_to_text(const rid_t *id, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    char *p = buf;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[id->b[i] >> 4];
        *p++ = hex[id->b[i] & 15];
    }
    *p = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int rid_from_text(const char *text, rid_t *out)
{
    rid_t id;
    size_t len = strnlen(text, RID_TEXT_LEN + 1);
    bool dashed = len == RID_TEXT_LEN;
    if (!dashed && len != 32)
        return FS_EBAD_ID;
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (dashed && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (text[i] != '-')
                return FS_EBAD_ID;
            continue;
        }
        int v = hexval(text[i]);
        if (v < 0)
            return FS_EBAD_ID;
        if (n % 2 == 0)
            id.b[n / 2] = (uint8_t)(v << 4);
        else
            id.b[n / 2] |= (uint8_t)v;
        n++;
    }
    if (rid_is_zero(&id))
        return FS_EBAD_ID;
    *out = id;
    return 0;
}

bool rid_is_zero(const rid_t *id)
{
    static const uint8_t zero[16];
    return memcmp(id->b, zero, 16) == 0;
}

int rid_cmp(const rid_t *a, const rid_t *b)
{
    return memcmp(a->b, b->b, 16);
}

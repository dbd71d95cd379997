/*
 * rid.h — record ids made on a device with no coordination.
 *
 * 128 bits, time-ordered like UUIDv7: 48 bits of Unix milliseconds, then 74 random bits
 * (getrandom; 6 bits are UUIDv7's version and variant). Time order keeps B-tree inserts
 * local; 74 random bits make a collision between
 * two devices creating records in the same millisecond negligible (birthday bound 2^37).
 * Text form: 8-4-4-4-12 lowercase hex, as a UUID. The all-zero id is invalid.
 */
#ifndef FS_RID_H
#define FS_RID_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rid {
    uint8_t b[16];
} rid_t;

#define RID_TEXT_LEN 36 /* without the NUL */

/* Fills *out with a new id for time now_ms. Returns 0 or FS_EIO if no randomness. */
int rid_new(rid_t *out, uint64_t now_ms);

/* Writes the 36-char text form and a NUL into buf (at least 37 bytes). */
void rid_to_text(const rid_t *id, char *buf);

/* Parses text (36 chars, dashes optional: 32 hex also accepted). Returns 0 or FS_EBAD_ID. */
int rid_from_text(const char *text, rid_t *out);

bool rid_is_zero(const rid_t *id);
int rid_cmp(const rid_t *a, const rid_t *b);

#endif

/*
 * change.h — the unit of sync: one record, one clock, one or more fields.
 *
 * A change says "at clock hlc, author (role) on device, as its dseq-th change, set these fields
 * of record (type, id), having last seen the fields at version base". base 0 means the author
 * saw nothing: a create. Every field of one change shares its clock; conflicts are still judged
 * per field by the field's rule (merge.h).
 *
 * Wire forms (MessagePack arrays, docs/protocol.md):
 *   push form  [type, record(bin16 or bin9), hlc, base, dseq, {field num: value}]
 *              (device, author and role come from the authenticated session). record may
 *              be an abbreviation: the id's first CHANGE_ABBREV_LEN bytes (its 6-byte time
 *              and 3 random bytes), which the receiver resolves among the records it holds
 *              (store_resolve_abbrev) before anything applies the change. Compact
 *              clocks: base is 0 (create) or milliseconds from the record id's timestamp,
 *              hlc milliseconds from base (from the id's timestamp for a create); each a
 *              uint, or [int, counter] when the counter is not 0 or the difference negative,
 *              or the absolute clock (a uint >= 2^48) (protocol §3.1). The
 *              bytes depend on the change alone, never on the session or the batch.
 *   full form  [type, record(bin16), hlc, base, dseq, device(bin16), author(str), role,
 *               {field num: value}]   (the change log, pulls: absolute clocks, uint 64)
 * Values by kind: text/scope str; int/time int; date uint YYYYMMDD; enum uint index; bool
 * bool; ref bin16; set [add mask, remove mask]; nil clears the field.
 *
 * A decoded change borrows the input buffer for its author and text values (valid while the
 * buffer is). Decoding validates structure AND values against the receiver's schema, so a
 * change that decodes is one the receiver can represent.
 */
#ifndef FS_CHANGE_H
#define FS_CHANGE_H

#include "mpr.h"
#include "err.h"
#include "rid.h"
#include "schema.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define CHANGE_MAX_FIELDS 64
#define CHANGE_MAX_AUTHOR 64
#define CHANGE_MAX_TEXT 65535
#define CHANGE_ABBREV_LEN 9 /* bytes of a record id kept by its push-form abbreviation */

typedef enum value_kind { VAL_NIL, VAL_INT, VAL_BOOL, VAL_STR, VAL_REF, VAL_SET } value_kind;

typedef struct fs_value {
    uint8_t kind;                                 /* value_kind */
    union {
        int64_t i;                                /* int, time, date, enum index */
        bool b;
        struct { const char *p; uint32_t len; } s; /* text, scope: borrowed, not NUL-ended */
        rid_t ref;
        struct { uint64_t add, rm; } set;         /* bit i = enum value i */
    } u;
} fs_value;

typedef struct change_field {
    uint8_t num;   /* field number in the type */
    fs_value v;
} change_field;

typedef struct change {
    uint8_t type;                 /* record type id */
    rid_t record;
    bool abbrev;                  /* push form: record is an abbreviation, only its first
                                     CHANGE_ABBREV_LEN bytes are known (the rest zero) until
                                     resolved; false (full id) in every other form. Packing
                                     the push form with it set writes the abbreviation */
    uint64_t hlc;                 /* clock of this change */
    uint64_t base;                /* version of the fields the author last saw; 0 = create */
    uint64_t dseq;                /* device sequence, 1, 2, 3... per device */
    rid_t device;
    const char *author;           /* user name, borrowed; NUL-terminated when set by C code */
    uint32_t author_len;
    uint8_t role;                 /* index into schema roles */
    uint32_t n_fields;
    /* the schema change_unpack decoded and validated the change against (its text values
     * are then known to be UTF-8: change_recheck does not scan them again); NULL, or left
     * as it was, for a change built in C, which change_recheck checks in full */
    const schema *decoded_by;
    change_field fields[CHANGE_MAX_FIELDS]; /* sorted by num, no duplicates */
} change;

/* Appends the change to pk. full selects the full form. With c->abbrev the push form
 * carries the abbreviation (record's first CHANGE_ABBREV_LEN bytes); the full form never
 * does (FS_EINVAL). Returns 0, FS_EINVAL or FS_ENOMEM. */
int change_pack(msgpack_packer *pk, const change *c, bool full);

/* Packs one value (for the store's field table). */
int value_pack(msgpack_packer *pk, const fs_value *v);

/* Decodes one change at r's position into *c and validates it against s (change_validate;
 * the UTF-8 of each string is checked once, as it is read). On error r is unchanged, e names
 * the field, and the result is FS_EDEC_* or a value error. A push form whose record is an
 * abbreviation is refused with FS_EREC_ABBREV (only a receiver that can resolve it decodes
 * it, with change_unpack_push); c->abbrev is always false after it. *c borrows r's buffer;
 * on success c->decoded_by is s. */
int change_unpack(struct mpr *r, const schema *s, bool full, change *c, fs_error *e);

/* Like change_unpack(r, s, false, c, e) but accepts an abbreviated record: then c->abbrev
 * is true and c->record holds the abbreviation's bytes followed by zeros. The caller must
 * resolve it (store_resolve_abbrev, then clear c->abbrev) before applying; the store
 * refuses a change still abbreviated (FS_EREC_ABBREV, not consumed). A record bin of any
 * length other than 16 and CHANGE_ABBREV_LEN is FS_EBAD_ID. */
int change_unpack_push(struct mpr *r, const schema *s, change *c, fs_error *e);

/* Decodes one value of field f (validated). Borrows r's buffer. */
int value_unpack(struct mpr *r, const schema_field *f, fs_value *v, fs_error *e);

/* Decodes a stored value of field f (the MessagePack bytes of the store's `fields` table,
 * written by value_pack), by kind only: without the schema's limits (enum range, max_len,
 * date validity), so that a value stored under an older schema still loads; text is capped
 * at CHANGE_MAX_TEXT. An empty buffer (or NULL) or nil is VAL_NIL. Strings borrow buf (valid
 * while it is). Returns 0, or FS_EDEC_TYPE with *v untouched. Used wherever stored values
 * are read: the store, the server's ledger and web API, the device SDK's queries. */
int value_unpack_stored(const schema_field *f, const void *buf, size_t len, fs_value *v);

/* Checks a change against schema s: known type, known fields in ascending order, values of
 * the right kind, in range, in the enum, valid UTF-8 text within max_len, role index known.
 * Used by the decoder and by devices before a local change enters the outbox. */
int change_validate(const schema *s, const change *c, fs_error *e);

/* change_validate for a change that may already have been decoded: the same checks with the
 * same results, except that the text values of a change change_unpack decoded against this
 * very schema (c->decoded_by == s) are not scanned for UTF-8 a second time. The store runs it
 * on every change it applies, so that a decoded change's text is checked exactly once and a
 * change built in C in full. */
int change_recheck(const schema *s, const change *c, fs_error *e);

/* Checks one value against its field. */
int value_validate(const schema_field *f, const fs_value *v, fs_error *e);

/* Equality of two values (kind and content). */
bool value_equal(const fs_value *a, const fs_value *b);

/* Finds a field of the change by number, or NULL. */
const change_field *change_field_get(const change *c, int num);

/* Sorts c->fields by num (for changes built by hand). Returns FS_EINVAL on a duplicate. */
int change_sort_fields(change *c);

/* Rewrites c in place into the form a peer on schema version `version` understands: drops
 * fields added after that version and fields whose value (enum, or set bits) was added after
 * it. Returns true if anything remains to send, false if the peer cannot represent the change
 * at all (its type is newer, or no field is left). docs/protocol.md, "Schema versions". */
bool change_downgrade(const schema *s, change *c, int version);

/* Date helpers: YYYYMMDD is a real calendar date from 1900-01-01 to 2199-12-31. */
bool date_valid(int64_t yyyymmdd);

#endif

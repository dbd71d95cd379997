/*
 * err.h — the error codes of the sync engine (libfssync).
 *
 * Every function of the engine that can fail returns 0 (FS_OK) or one of these negative
 * codes; fs_strerror() gives the fixed English text of a code. Functions that can say more
 * also fill an optional fs_error with a message naming the field, value or limit involved.
 * The numeric values are part of the wire protocol (push results and error messages carry
 * them; docs/protocol.md lists them) and are never renumbered.
 */
#ifndef FS_ERR_H
#define FS_ERR_H

#include <stddef.h>

typedef enum fs_err {
    FS_OK = 0,
    /* local failures */
    FS_ENOMEM = -1,          /* out of memory */
    FS_EIO = -2,             /* the store (SQLite) failed: disk full, read-only, locked, corrupt */
    FS_EINVAL = -3,          /* bad argument from the caller */
    FS_ENOTFOUND = -4,       /* no such record, item or key */
    FS_ESCHEMA = -5,         /* the schema file is missing or invalid */
    FS_ECOMPRESS = -6,       /* zstd failed or the dictionary is missing */
    /* decoding (the bytes themselves are bad) */
    FS_EDEC_TRUNCATED = -20, /* input ends in the middle of a value */
    FS_EDEC_TYPE = -21,      /* a value has the wrong MessagePack type */
    FS_EDEC_DEPTH = -22,     /* nesting deeper than allowed */
    FS_EDEC_COUNT = -23,     /* a container claims more items than bytes remain or allowed */
    FS_EDEC_TOOBIG = -24,    /* a message, string or batch exceeds its limit */
    FS_EDEC_UTF8 = -25,      /* text is not valid UTF-8 or contains NUL */
    FS_EDEC_TRAILING = -26,  /* bytes left after the message */
    FS_EDEC_MISSING = -27,   /* a required message field is absent */
    FS_EDEC_FRAME = -28,     /* bad frame header (version, flags, dictionary) */
    /* validation against the schema */
    FS_EUNKNOWN_TYPE = -40,  /* record type not in the receiver's schema */
    FS_EUNKNOWN_FIELD = -41, /* field number not in the record type of the receiver's schema */
    FS_EVALUE_TYPE = -42,    /* value of the wrong kind for the field */
    FS_EVALUE_RANGE = -43,   /* integer or date out of range, text too long */
    FS_EVALUE_ENUM = -44,    /* enum or set value not among the field's values */
    FS_EREQUIRED = -45,      /* a required field is missing from a create, or cleared */
    FS_EBAD_ID = -46,        /* a record id of the wrong size, or zero */
    FS_EREF = -47,           /* reference to a record that does not exist or has another type */
    /* merge rules and authority */
    FS_EAPPEND_ONLY = -60,   /* modification of an append-only record or an immutable field */
    FS_EROLE = -61,          /* the author's role may not do this (lower, reopen, write type) */
    FS_ESTALE = -62,         /* a lowering or reopen whose base is not the current version */
    FS_ENOT_CREATED = -63,   /* change to a record that was never created */
    FS_ECLOCK_DRIFT = -64,   /* the change's clock is too far ahead of the receiver's */
    FS_ESEQ_GAP = -65,       /* device sequence skips numbers: earlier changes are missing */
    FS_ESEQ_MISMATCH = -66,  /* device sequence reused with different content */
    FS_ESCOPE = -67,         /* record outside the author's scope */
    FS_EDUP = -68,           /* internal: duplicate of an applied change (reported as duplicate) */
    FS_EREC_ABBREV = -69,    /* record abbreviation (push form) matches no record or several:
                                not consumed; resend with the full record id */
} fs_err;

/* Room for a message that names what was wrong. */
typedef struct fs_error {
    int code;        /* an fs_err, or 0 */
    char msg[200];   /* NUL-terminated English text, "" when code is 0 */
} fs_error;

/* Returns the fixed text of a code ("unknown error" for codes not listed). Static storage. */
const char *fs_strerror(int code);

/* Returns a short stable name of a code, e.g. "EVALUE_RANGE". Static storage. */
const char *fs_errname(int code);

/* Fills e (may be NULL) with code and a printf-style message; returns code. */
int fs_error_set(fs_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

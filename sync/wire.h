/*
 * wire.h — protocol v1 framing and messages (docs/protocol.md is the normative text).
 *
 * A WebSocket binary message ("frame" here) is:
 *   byte 0   flags: bit 0 = body compressed with zstd; other bits must be 0
 *   byte 1   dictionary id: 0 = none, N = schema/dict-N.zdict (only with bit 0)
 *   rest     the body, or (bit 0) one zstd frame without magic number whose header carries
 *            the body's length (content size); the body is one MessagePack array:
 *            [message type, fields...]
 * or, uncompressed, the body alone: a frame whose first byte opens a MessagePack array
 * (0x90-0x9f, 0xdc, 0xdd; no flags byte can) has no header. The encoder sends raw bodies so.
 * Receivers check the declared length (the zstd header's content size, which must be there)
 * against their limit BEFORE decompressing and require the decompressed size to match it exactly. A
 * minimal client sends flags 0 and never needs zstd; the server compresses only for clients
 * that listed the dictionary in hello.
 *
 * Messages are arrays so that fields are positional and small; a receiver ignores trailing
 * elements it does not know (later protocol revisions may append), and refuses a message with
 * fewer than its required elements.
 *
 * This module only encodes and decodes; sessions and their state machines are in server/ and
 * client-sdk/. Decoded messages borrow the decoded body buffer (see wire_frame_decode).
 */
#ifndef FS_WIRE_H
#define FS_WIRE_H

#include "change.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_SUBPROTOCOL "fieldsync.v1"
#define WIRE_VERSION 1
#define WIRE_MAX_FRAME (1u << 20)        /* reassembled message cap: 1 MiB */
#define WIRE_MAX_BATCH 1000              /* changes per push / changes message */
#define WIRE_MAX_TOKEN 128
#define WIRE_MAX_TEXT 512                /* error texts, names */
#define WIRE_FLAG_ZSTD 0x01
/* Compression levels (a sender's choice: receivers do not see them). A lone edit or a push
 * result is tens of bytes, where level 15 saves about a byte in forty over level 3
 * (docs/performance.md §3, bench_bytes --cpu: ~4 us per lone edit and ~11 us per lone child
 * create instead of ~1.5 us); level 19 saves no more there and costs up to ~45 us on a
 * repetitive 200-byte body. Larger bodies stay at WIRE_LEVEL: the server compresses each
 * ledger event once per subscriber. */
#define WIRE_LEVEL 3
#define WIRE_SMALL_LEVEL 15
#define WIRE_SMALL_BODY 256

typedef enum wire_type {
    MSG_HELLO = 1,
    MSG_WELCOME = 2,
    MSG_PUSH = 3,
    MSG_PUSH_RESULT = 4,
    MSG_PULL = 5,
    MSG_CHANGES = 6,
    MSG_SUBSCRIBE = 7,
    MSG_LEDGER = 8,
    MSG_PING = 9,
    MSG_PONG = 10,
    MSG_ERROR = 11,
    MSG_REVIEWS = 12,
} wire_type;

/* Protocol error codes (MSG_ERROR). Per-change refusals use fs_err codes instead. */
typedef enum wire_err {
    WERR_BAD_FRAME = 1,       /* frame header or MessagePack body malformed */
    WERR_TOO_BIG = 2,         /* message over the size limit */
    WERR_UNKNOWN_MESSAGE = 3, /* message type not known */
    WERR_UNEXPECTED = 4,      /* message not allowed in this session state */
    WERR_AUTH = 5,            /* unknown, revoked or malformed device token */
    WERR_SCHEMA = 6,          /* schema version not supported */
    WERR_LIMIT = 7,           /* batch too large, too many sessions, rate exceeded */
    WERR_BUSY = 8,            /* server cannot store now (disk full, locked); retry later */
    WERR_RESYNC = 9,          /* live queue overflowed: pull from your cursor again */
    WERR_SHUTDOWN = 10,       /* server is shutting down; reconnect later */
    WERR_CURSOR = 11,         /* pull cursor beyond the server's log */
    WERR_INTERNAL = 12,       /* server fault; nothing from this message was stored */
    WERR_IDLE = 13,           /* idle too long */
} wire_err;

const char *wire_err_name(int code);

/* True for the first byte of a MessagePack array header (fixarray 0x90-0x9f, array 16 0xdc,
 * array 32 0xdd): a frame that starts with one is a raw body without frame header. No frame
 * header byte 0 (flags) can take these values. */
static inline bool wire_is_array_byte(uint8_t b)
{
    return (b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd;
}

typedef struct wire_hello {
    rid_t device;
    const char *token; uint32_t token_len;      /* borrowed */
    uint32_t schema_version;
    uint64_t client_hlc;
    uint64_t acked_dseq;   /* highest dseq the device believes the server acknowledged */
    uint64_t cursor;       /* pull cursor the device holds */
    uint32_t dict;         /* highest dictionary id the device has (0 = no compression) */
    const char *agent; uint32_t agent_len;      /* software name/version, borrowed */
    uint64_t pending;      /* the device's outbox size (10th element, optional on the wire) */
    bool has_pending;      /* the hello carried `pending` (a 9-element hello does not) */
} wire_hello;

typedef struct wire_welcome {
    uint64_t server_hlc;
    uint64_t server_dseq;  /* highest dseq of this device the server has consumed */
    uint32_t schema_version;
    uint32_t max_frame;
    uint32_t max_batch;
    uint32_t dict;         /* dictionary the server will use towards the device (0 = none) */
    const char *user; uint32_t user_len;
    uint32_t role;
    uint64_t log_end;      /* server's last log sequence (the device's cursor can reach it) */
} wire_welcome;

typedef struct wire_result {
    uint64_t dseq;
    uint8_t status;        /* apply_status: 0 accepted, 1 duplicate, 2 refused */
    int32_t code;          /* fs_err when refused */
    const char *text; uint32_t text_len;
} wire_result;

typedef struct wire_error {
    int32_t code;
    const char *text; uint32_t text_len;
    bool closes;
} wire_error;

/* ---- frames ------------------------------------------------------------------------- */

typedef struct wire_dicts wire_dicts; /* zstd dictionaries by id, loaded from schema/ */

/* Loads every schema_dir/dict-N.zdict (N = 1..255). Returns 0 and *out (free with
 * wire_dicts_free) even when none exist. A 16 KB dictionary costs ~0.5 MB at load (level-3
 * compression and decompression tables) and ~0.55 MB more, built in ~3 ms on the first body
 * of at most WIRE_SMALL_BODY bytes compressed with it (the WIRE_SMALL_LEVEL tables). A
 * wire_dicts may be shared by codecs on several threads. */
int wire_dicts_load(const char *schema_dir, wire_dicts **out, fs_error *e);
void wire_dicts_free(wire_dicts *d);
uint32_t wire_dicts_latest(const wire_dicts *d); /* highest id loaded, 0 if none */

/* A reusable codec context (zstd contexts and buffers). One per thread/session set. */
typedef struct wire_codec wire_codec;
int wire_codec_new(const wire_dicts *d, wire_codec **out);  /* borrows d */
void wire_codec_free(wire_codec *c);

/* Wraps body into a frame in the codec's output buffer. dict 0 = send raw; otherwise
 * compress with that dictionary (level WIRE_SMALL_LEVEL up to WIRE_SMALL_BODY bytes of body,
 * else WIRE_LEVEL), falling back to raw when compression does not shrink. A raw
 * body that opens with an array header goes without frame header (every message does).
 * *out borrows the codec's buffer (valid until the next call on the codec). out_pre bytes of
 * headroom are left before the frame (LWS_PRE for libwebsockets). */
int wire_frame_encode(wire_codec *c, const void *body, size_t len, uint32_t dict,
                      size_t out_pre, uint8_t **out, size_t *out_len);

/* Unwraps a frame (with or without header): checks header, declared size <= max_body,
 * decompresses. *body borrows the input (raw) or the codec's buffer (compressed), valid until
 * the next call on the codec.
 * Returns 0, FS_EDEC_FRAME, FS_EDEC_TOOBIG, or FS_ECOMPRESS (unknown dictionary, bad data). */
int wire_frame_decode(wire_codec *c, const void *frame, size_t len, size_t max_body,
                      const uint8_t **body, size_t *body_len);

/* ---- messages ----------------------------------------------------------------------- */

/* Encoders append one message body to pk. */
int wire_pack_hello(msgpack_packer *pk, const wire_hello *h);
int wire_pack_welcome(msgpack_packer *pk, const wire_welcome *w);
int wire_pack_push_header(msgpack_packer *pk, uint64_t batch, uint32_t n); /* then n changes (push form) */
int wire_pack_push_result_header(msgpack_packer *pk, uint64_t batch, uint32_t n); /* then n results */
int wire_pack_result(msgpack_packer *pk, const wire_result *r);
int wire_pack_pull(msgpack_packer *pk, uint64_t cursor, uint32_t max);
/* changes: [6, next_cursor, more, [change (full form)...]]: header then n full-form bodies */
int wire_pack_changes_header(msgpack_packer *pk, uint64_t next_cursor, bool more, uint32_t n);
int wire_pack_subscribe(msgpack_packer *pk, const char *scope);
/* ledger: [8, seq, scope, change (full form)] */
int wire_pack_ledger_header(msgpack_packer *pk, uint64_t seq, const char *scope);
int wire_pack_ping(msgpack_packer *pk, bool pong, uint64_t nonce);
int wire_pack_error(msgpack_packer *pk, int code, const char *text, bool closes);

/* Reads the message type (first element) and leaves r after it; *count receives the array
 * length. Returns 0, FS_EDEC_*. */
int wire_read_type(struct mpr *r, uint32_t *type, uint32_t *count);

/* Decoders continue from wire_read_type (r positioned after the type, count = array length)
 * and skip known-unknown trailing elements. All borrow r's buffer. */
int wire_read_hello(struct mpr *r, uint32_t count, wire_hello *h, fs_error *e);
int wire_read_welcome(struct mpr *r, uint32_t count, wire_welcome *w, fs_error *e);
/* push: reads batch id and the change count; then call change_unpack(r, s, false, ...) n times */
int wire_read_push(struct mpr *r, uint32_t count, uint32_t max_batch, uint64_t *batch,
                   uint32_t *n, fs_error *e);
int wire_read_push_result(struct mpr *r, uint32_t count, uint64_t *batch, uint32_t *n,
                          fs_error *e);                        /* then n wire_read_result */
int wire_read_result(struct mpr *r, wire_result *res, fs_error *e);
int wire_read_pull(struct mpr *r, uint32_t count, uint64_t *cursor, uint32_t *max, fs_error *e);
int wire_read_changes(struct mpr *r, uint32_t count, uint64_t *next, bool *more, uint32_t *n,
                      fs_error *e);                            /* then n change_unpack(full) */
int wire_read_subscribe(struct mpr *r, uint32_t count, const char **scope, uint32_t *len,
                        fs_error *e);
int wire_read_ledger(struct mpr *r, uint32_t count, uint64_t *seq, const char **scope,
                     uint32_t *scope_len, fs_error *e);       /* then one change_unpack(full) */
int wire_read_ping(struct mpr *r, uint32_t count, uint64_t *nonce, fs_error *e);
int wire_read_error(struct mpr *r, uint32_t count, wire_error *err, fs_error *e);
/* After the last element a decoder was told about: skips trailing elements (count - used). */
int wire_skip_rest(struct mpr *r, uint32_t remaining);

#endif

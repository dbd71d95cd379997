/*
 * wire.c — protocol v1 frames and message codecs. See wire.h and docs/protocol.md.
 *
 * Decoders trust nothing: every length is checked against the bytes left (mpr), the body is
 * capped before decompression using the size the zstd frame header declares (its content
 * size), and zstd must produce exactly that many bytes. Encoders
 * use msgpack-c's packer into the caller's buffer. Compression levels: wire.h.
 */
#include "wire.h"

#include "mpr.h"
#include "mpw.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_c_format / ZSTD_d_format: magicless frames */
#include <zstd.h>

struct wire_dicts {
    ZSTD_CDict *cdict[256];       /* level WIRE_LEVEL: bodies over WIRE_SMALL_BODY */
    /* level WIRE_SMALL_LEVEL, tables sized for small bodies: built on first use (~3 ms,
     * ~0.55 MB), not at load, so that opening a replica does not pay for it. The only member
     * written after wire_dicts_load: codecs on several threads may share one wire_dicts, so
     * it is published with a compare-and-swap (the loser frees its copy). */
    _Atomic(ZSTD_CDict *) cdict_small[256];
    void *raw[256];               /* the dictionaries' bytes (cdict_small refers to them) */
    size_t raw_len[256];
    ZSTD_DDict *ddict[256];
    uint32_t latest;
};

struct wire_codec {
    const wire_dicts *d;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *out;      /* frame output buffer */
    size_t out_cap;
    uint8_t *body;     /* decompressed body buffer */
    size_t body_cap;
};

static const char *const werr_names[] = {
    [WERR_BAD_FRAME] = "BAD_FRAME",   [WERR_TOO_BIG] = "TOO_BIG",
    [WERR_UNKNOWN_MESSAGE] = "UNKNOWN_MESSAGE", [WERR_UNEXPECTED] = "UNEXPECTED",
    [WERR_AUTH] = "AUTH",             [WERR_SCHEMA] = "SCHEMA",
    [WERR_LIMIT] = "LIMIT",           [WERR_BUSY] = "BUSY",
    [WERR_RESYNC] = "RESYNC",         [WERR_SHUTDOWN] = "SHUTDOWN",
    [WERR_CURSOR] = "CURSOR",         [WERR_INTERNAL] = "INTERNAL",
    [WERR_IDLE] = "IDLE",
};

const char *wire_err_name(int code)
{
    if (code > 0 && code < (int)(sizeof werr_names / sizeof werr_names[0]) && werr_names[code])
        return werr_names[code];
    return "UNKNOWN";
}

/* ---- dictionaries ------------------------------------------------------------------- */

static int read_file(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return FS_ENOTFOUND;
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0 || ftell(f) > (8 << 20)) {
        fclose(f);
        return FS_EIO;
    }
    size_t n = (size_t)ftell(f);
    rewind(f);
    void *b = malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return FS_ENOMEM;
    }
    if (fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return FS_EIO;
    }
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
}

int wire_dicts_load(const char *schema_dir, wire_dicts **out, fs_error *e)
{
    *out = NULL;
    wire_dicts *d = calloc(1, sizeof *d);
    if (!d)
        return fs_error_set(e, FS_ENOMEM, "out of memory");
    for (int id = 0; id < 256; id++)
        atomic_init(&d->cdict_small[id], NULL);
    for (int id = 1; id < 256; id++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/dict-%d.zdict", schema_dir, id);
        void *buf;
        size_t len;
        int rc = read_file(path, &buf, &len);
        if (rc == FS_ENOTFOUND)
            continue;
        if (rc) {
            wire_dicts_free(d);
            return fs_error_set(e, rc, "%s: cannot read dictionary", path);
        }
        d->cdict[id] = ZSTD_createCDict(buf, len, WIRE_LEVEL);
        d->ddict[id] = ZSTD_createDDict(buf, len);
        d->raw[id] = buf;
        d->raw_len[id] = len;
        if (!d->cdict[id] || !d->ddict[id]) {
            wire_dicts_free(d);
            return fs_error_set(e, FS_ECOMPRESS, "%s: not a zstd dictionary", path);
        }
        d->latest = (uint32_t)id;
    }
    *out = d;
    return 0;
}

void wire_dicts_free(wire_dicts *d)
{
    if (!d)
        return;
    for (int i = 0; i < 256; i++) {
        ZSTD_freeCDict(d->cdict[i]);
        ZSTD_freeCDict(atomic_load(&d->cdict_small[i]));
        ZSTD_freeDDict(d->ddict[i]);
        free(d->raw[i]);
    }
    free(d);
}

uint32_t wire_dicts_latest(const wire_dicts *d) { return d ? d->latest : 0; }

/* The compression dictionary for a body of len bytes with dictionary id (loaded). */
static ZSTD_CDict *cdict_for(const wire_dicts *d, uint32_t id, size_t len)
{
    if (len > WIRE_SMALL_BODY)
        return d->cdict[id];
    wire_dicts *m = (wire_dicts *)d; /* allocated non-const: only cdict_small is written */
    ZSTD_CDict *cd = atomic_load_explicit(&m->cdict_small[id], memory_order_acquire);
    if (cd)
        return cd;
    cd = ZSTD_createCDict_advanced(m->raw[id], m->raw_len[id], ZSTD_dlm_byRef, ZSTD_dct_auto,
                                   ZSTD_getCParams(WIRE_SMALL_LEVEL, WIRE_SMALL_BODY,
                                                   m->raw_len[id]),
                                   ZSTD_defaultCMem);
    if (!cd)
        return d->cdict[id]; /* out of memory: level WIRE_LEVEL does as well, a bit larger */
    ZSTD_CDict *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&m->cdict_small[id], &none, cd,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        ZSTD_freeCDict(cd); /* another thread published one first */
        cd = none;
    }
    return cd;
}

/* ---- codec -------------------------------------------------------------------------- */

int wire_codec_new(const wire_dicts *d, wire_codec **out)
{
    wire_codec *c = calloc(1, sizeof *c);
    if (!c)
        return FS_ENOMEM;
    c->d = d;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    if (!c->cctx || !c->dctx) {
        wire_codec_free(c);
        return FS_ENOMEM;
    }
    /* the frame header names the dictionary: zstd need not repeat it. The zstd frame carries
     * the body's length itself (content size: 1 byte up to 255, where a 6-byte frame header
     * needed 4), which the receiver checks before decompressing (protocol §2) */
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_dictIDFlag, 0);
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1);
    /* nor need zstd's 4-byte magic number: the flag says what follows (protocol §2) */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_format, ZSTD_f_zstd1_magicless)) ||
        ZSTD_isError(ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_format, ZSTD_f_zstd1_magicless))) {
        wire_codec_free(c);
        return FS_ECOMPRESS;
    }
    *out = c;
    return 0;
}

void wire_codec_free(wire_codec *c)
{
    if (!c)
        return;
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c->out);
    free(c->body);
    free(c);
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *b = realloc(*buf, n);
    if (!b)
        return FS_ENOMEM;
    *buf = b;
    *cap = n;
    return 0;
}

int wire_frame_encode(wire_codec *c, const void *body, size_t len, uint32_t dict,
                      size_t out_pre, uint8_t **out, size_t *out_len)
{
    if (len > UINT32_MAX)
        return FS_EDEC_TOOBIG;
    size_t bound = ZSTD_compressBound(len);
    if (grow(&c->out, &c->out_cap, out_pre + 2 + (bound > len ? bound : len)))
        return FS_ENOMEM;
    uint8_t *f = c->out + out_pre;
    if (dict && dict < 256 && c->d && c->d->cdict[dict]) {
        /* ZSTD_compress_usingCDict would hard-code the dictionary id into the zstd frame;
         * refCDict + compress2 keeps the codec's frame parameters (protocol §2) */
        size_t n = ZSTD_CCtx_refCDict(c->cctx, cdict_for(c->d, dict, len));
        if (!ZSTD_isError(n))
            n = ZSTD_compress2(c->cctx, f + 2, bound, body, len);
        if (!ZSTD_isError(n) && n + 2 < len) {
            f[0] = WIRE_FLAG_ZSTD;
            f[1] = (uint8_t)dict;
            *out = f;
            *out_len = n + 2;
            return 0;
        }
    }
    /* raw: a body that opens with an array header needs no frame header (protocol §2) */
    size_t hdr = len && wire_is_array_byte(((const uint8_t *)body)[0]) ? 0 : 2;
    if (hdr) {
        f[0] = 0;
        f[1] = 0;
    }
    memcpy(f + hdr, body, len);
    *out = f;
    *out_len = len + hdr;
    return 0;
}

int wire_frame_decode(wire_codec *c, const void *frame, size_t len, size_t max_body,
                      const uint8_t **body, size_t *body_len)
{
    const uint8_t *f = frame;
    if (len >= 1 && wire_is_array_byte(f[0])) { /* a raw body without frame header */
        if (len > max_body)
            return FS_EDEC_TOOBIG;
        *body = f;
        *body_len = len;
        return 0;
    }
    if (len < 2)
        return FS_EDEC_FRAME;
    if (f[0] & ~WIRE_FLAG_ZSTD)
        return FS_EDEC_FRAME;
    if (!(f[0] & WIRE_FLAG_ZSTD)) {
        if (f[1] != 0)
            return FS_EDEC_FRAME;
        if (len - 2 > max_body)
            return FS_EDEC_TOOBIG;
        *body = f + 2;
        *body_len = len - 2;
        return 0;
    }
    if (len < 3)
        return FS_EDEC_FRAME;
    uint32_t dict = f[1];
    /* the zstd frame's header says the body's length: it must be there, and within the cap,
     * before anything is decompressed */
    ZSTD_frameHeader zh;
    size_t h = ZSTD_getFrameHeader_advanced(&zh, f + 2, len - 2, ZSTD_f_zstd1_magicless);
    if (ZSTD_isError(h) || h != 0 || zh.frameType != ZSTD_frame ||
        zh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN)
        return FS_ECOMPRESS; /* cut, not zstd, or no content size */
    if (zh.frameContentSize > max_body)
        return FS_EDEC_TOOBIG;
    size_t declared = (size_t)zh.frameContentSize, zoff = 2;
    if (!c->d || !dict || !c->d->ddict[dict])
        return FS_ECOMPRESS;
    if (grow(&c->body, &c->body_cap, declared + 1))
        return FS_ENOMEM;
    size_t n = ZSTD_decompress_usingDDict(c->dctx, c->body, declared + 1, f + zoff, len - zoff,
                                          c->d->ddict[dict]);
    if (ZSTD_isError(n) || n != declared)
        return FS_ECOMPRESS;
    *body = c->body;
    *body_len = n;
    return 0;
}

/* ---- encoders ----------------------------------------------------------------------- */

#define PK(expr) rc |= (expr)

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

static int pack_bin16(msgpack_packer *pk, const rid_t *id)
{
    return msgpack_pack_bin(pk, 16) | msgpack_pack_bin_body(pk, id->b, 16);
}

int wire_pack_hello(msgpack_packer *pk, const wire_hello *h)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 10));
    PK(msgpack_pack_uint8(pk, MSG_HELLO));
    PK(pack_bin16(pk, &h->device));
    PK(pack_str(pk, h->token, h->token_len));
    PK(msgpack_pack_uint32(pk, h->schema_version));
    PK(msgpack_pack_uint64(pk, h->client_hlc));
    PK(msgpack_pack_uint64(pk, h->acked_dseq));
    PK(msgpack_pack_uint64(pk, h->cursor));
    PK(msgpack_pack_uint32(pk, h->dict));
    PK(pack_str(pk, h->agent ? h->agent : "", h->agent ? h->agent_len : 0));
    PK(msgpack_pack_uint64(pk, h->pending));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_welcome(msgpack_packer *pk, const wire_welcome *w)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 10));
    PK(msgpack_pack_uint8(pk, MSG_WELCOME));
    PK(msgpack_pack_uint64(pk, w->server_hlc));
    PK(msgpack_pack_uint64(pk, w->server_dseq));
    PK(msgpack_pack_uint32(pk, w->schema_version));
    PK(msgpack_pack_uint32(pk, w->max_frame));
    PK(msgpack_pack_uint32(pk, w->max_batch));
    PK(msgpack_pack_uint32(pk, w->dict));
    PK(pack_str(pk, w->user ? w->user : "", w->user ? w->user_len : 0));
    PK(msgpack_pack_uint32(pk, w->role));
    PK(msgpack_pack_uint64(pk, w->log_end));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_push_header(msgpack_packer *pk, uint64_t batch, uint32_t n)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 3));
    PK(msgpack_pack_uint8(pk, MSG_PUSH));
    PK(msgpack_pack_uint64(pk, batch));
    PK(msgpack_pack_array(pk, n));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_push_result_header(msgpack_packer *pk, uint64_t batch, uint32_t n)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 3));
    PK(msgpack_pack_uint8(pk, MSG_PUSH_RESULT));
    PK(msgpack_pack_uint64(pk, batch));
    PK(msgpack_pack_array(pk, n));
    return rc ? FS_ENOMEM : 0;
}

/* One per change of a push (mpw.h: a thousand of them went through msgpack-c's write
 * callback ~4 times each, ~0.2k instructions a change on the server) */
int wire_pack_result(msgpack_packer *pk, const wire_result *r)
{
    bool refused = r->status == 2;
    mpw w;
    mpw_init(&w, pk);
    mpw_array(&w, refused ? 4 : 2);
    mpw_uint(&w, r->dseq);
    mpw_uint(&w, r->status);
    if (refused) {
        mpw_int(&w, r->code);
        mpw_str(&w, r->text ? r->text : "", r->text ? r->text_len : 0);
    }
    return mpw_end(&w) ? FS_ENOMEM : 0;
}

int wire_pack_pull(msgpack_packer *pk, uint64_t cursor, uint32_t max)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 3));
    PK(msgpack_pack_uint8(pk, MSG_PULL));
    PK(msgpack_pack_uint64(pk, cursor));
    PK(msgpack_pack_uint32(pk, max));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_changes_header(msgpack_packer *pk, uint64_t next_cursor, bool more, uint32_t n)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 4));
    PK(msgpack_pack_uint8(pk, MSG_CHANGES));
    PK(msgpack_pack_uint64(pk, next_cursor));
    PK(more ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    PK(msgpack_pack_array(pk, n));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_subscribe(msgpack_packer *pk, const char *scope)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 2));
    PK(msgpack_pack_uint8(pk, MSG_SUBSCRIBE));
    PK(pack_str(pk, scope ? scope : "", scope ? strlen(scope) : 0));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_ledger_header(msgpack_packer *pk, uint64_t seq, const char *scope)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 4));
    PK(msgpack_pack_uint8(pk, MSG_LEDGER));
    PK(msgpack_pack_uint64(pk, seq));
    PK(pack_str(pk, scope ? scope : "", scope ? strlen(scope) : 0));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_ping(msgpack_packer *pk, bool pong, uint64_t nonce)
{
    int rc = 0;
    PK(msgpack_pack_array(pk, 2));
    PK(msgpack_pack_uint8(pk, pong ? MSG_PONG : MSG_PING));
    PK(msgpack_pack_uint64(pk, nonce));
    return rc ? FS_ENOMEM : 0;
}

int wire_pack_error(msgpack_packer *pk, int code, const char *text, bool closes)
{
    int rc = 0;
    size_t n = text ? strlen(text) : 0;
    if (n > WIRE_MAX_TEXT) { /* cut at a character boundary: the peer checks UTF-8 */
        n = WIRE_MAX_TEXT;
        while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
            n--;
    }
    PK(msgpack_pack_array(pk, 4));
    PK(msgpack_pack_uint8(pk, MSG_ERROR));
    PK(msgpack_pack_int32(pk, code));
    PK(pack_str(pk, text ? text : "", n));
    PK(closes ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    return rc ? FS_ENOMEM : 0;
}

/* ---- decoders ----------------------------------------------------------------------- */

static int bad(fs_error *e, int rc, const char *msg, const char *field)
{
    return fs_error_set(e, rc, "%s: %s: %s", msg, field, fs_strerror(rc));
}

#define NEED(n, name)                                                                      \
    do {                                                                                   \
        if (count < (n))                                                                   \
            return fs_error_set(e, FS_EDEC_MISSING, "%s needs %u elements, got %u", name,   \
                                (unsigned)(n), count);                                     \
    } while (0)
#define RD(expr, msg, field)                                                               \
    do {                                                                                   \
        int rc_ = (expr);                                                                  \
        if (rc_)                                                                           \
            return bad(e, rc_, msg, field);                                                \
    } while (0)

int wire_skip_rest(mpr *r, uint32_t remaining)
{
    for (uint32_t i = 0; i < remaining; i++) {
        int rc = mpr_skip(r, MPR_MAX_DEPTH);
        if (rc)
            return rc;
    }
    return 0;
}

int wire_read_type(mpr *r, uint32_t *type, uint32_t *count)
{
    int rc = mpr_array(r, 64, count);
    if (rc)
        return rc;
    if (*count < 1)
        return FS_EDEC_MISSING;
    return mpr_u32_max(r, 255, type) ? FS_EDEC_TYPE : 0;
}

static int read_id(mpr *r, rid_t *id)
{
    const uint8_t *b;
    uint32_t n;
    int rc = mpr_bin(r, 16, &b, &n);
    if (rc == FS_EDEC_TOOBIG || (!rc && n != 16))
        return FS_EBAD_ID;
    if (!rc)
        memcpy(id->b, b, 16);
    return rc;
}

static int read_u32(mpr *r, uint32_t *out)
{
    return mpr_u32_max(r, UINT32_MAX, out);
}

int wire_read_hello(mpr *r, uint32_t count, wire_hello *h, fs_error *e)
{
    static const char *m = "hello";
    memset(h, 0, sizeof *h);
    NEED(9, m);
    RD(read_id(r, &h->device), m, "device");
    RD(mpr_str(r, WIRE_MAX_TOKEN, &h->token, &h->token_len), m, "token");
    RD(read_u32(r, &h->schema_version), m, "schema_version");
    RD(mpr_u64(r, &h->client_hlc), m, "client_hlc");
    RD(mpr_u64(r, &h->acked_dseq), m, "acked_dseq");
    RD(mpr_u64(r, &h->cursor), m, "cursor");
    RD(read_u32(r, &h->dict), m, "dict");
    RD(mpr_str(r, WIRE_MAX_TEXT, &h->agent, &h->agent_len), m, "agent");
    if (count >= 10) { /* optional since the first revision: the device's outbox size */
        RD(mpr_u64(r, &h->pending), m, "pending");
        h->has_pending = true;
    }
    RD(wire_skip_rest(r, count - (count >= 10 ? 10 : 9)), m, "trailing");
    return 0;
}

int wire_read_welcome(mpr *r, uint32_t count, wire_welcome *w, fs_error *e)
{
    static const char *m = "welcome";
    memset(w, 0, sizeof *w);
    NEED(10, m);
    RD(mpr_u64(r, &w->server_hlc), m, "server_hlc");
    RD(mpr_u64(r, &w->server_dseq), m, "server_dseq");
    RD(read_u32(r, &w->schema_version), m, "schema_version");
    RD(read_u32(r, &w->max_frame), m, "max_frame");
    RD(read_u32(r, &w->max_batch), m, "max_batch");
    RD(read_u32(r, &w->dict), m, "dict");
    RD(mpr_str(r, WIRE_MAX_TEXT, &w->user, &w->user_len), m, "user");
    RD(read_u32(r, &w->role), m, "role");
    RD(mpr_u64(r, &w->log_end), m, "log_end");
    RD(wire_skip_rest(r, count - 10), m, "trailing");
    return 0;
}

int wire_read_push(mpr *r, uint32_t count, uint32_t max_batch, uint64_t *batch, uint32_t *n,
                   fs_error *e)
{
    static const char *m = "push";
    NEED(3, m);
    RD(mpr_u64(r, batch), m, "batch");
    /* a count the bytes cannot hold is malformed (COUNT); a real batch over the cap is
     * TOOBIG. Either way nothing is reserved. */
    const uint8_t *save = r->p;
    RD(mpr_array(r, UINT32_MAX, n), m, "changes");
    if (*n > max_batch) {
        r->p = save;
        return fs_error_set(e, FS_EDEC_TOOBIG, "push: %u changes in one batch, at most %u",
                            *n, max_batch);
    }
    return 0; /* trailing elements come after the changes; the caller skips them */
}

int wire_read_push_result(mpr *r, uint32_t count, uint64_t *batch, uint32_t *n, fs_error *e)
{
    static const char *m = "push_result";
    NEED(3, m);
    RD(mpr_u64(r, batch), m, "batch");
    RD(mpr_array(r, WIRE_MAX_BATCH, n), m, "results");
    return 0;
}

int wire_read_result(mpr *r, wire_result *res, fs_error *e)
{
    static const char *m = "result";
    uint32_t count, st;
    memset(res, 0, sizeof *res);
    RD(mpr_array(r, 16, &count), m, "entry");
    NEED(2, m);
    RD(mpr_u64(r, &res->dseq), m, "dseq");
    RD(mpr_u32_max(r, 2, &st), m, "status");
    res->status = (uint8_t)st;
    uint32_t used = 2;
    if (st == 2) {
        int64_t code;
        NEED(4, m);
        RD(mpr_i64(r, &code), m, "code");
        if (code < INT32_MIN || code > INT32_MAX)
            return bad(e, FS_EVALUE_RANGE, m, "code");
        res->code = (int32_t)code;
        RD(mpr_str(r, WIRE_MAX_TEXT, &res->text, &res->text_len), m, "text");
        used = 4;
    }
    RD(wire_skip_rest(r, count - used), m, "trailing");
    return 0;
}

int wire_read_pull(mpr *r, uint32_t count, uint64_t *cursor, uint32_t *max, fs_error *e)
{
    static const char *m = "pull";
    NEED(3, m);
    RD(mpr_u64(r, cursor), m, "cursor");
    RD(read_u32(r, max), m, "max");
    RD(wire_skip_rest(r, count - 3), m, "trailing");
    return 0;
}

int wire_read_changes(mpr *r, uint32_t count, uint64_t *next, bool *more, uint32_t *n,
                      fs_error *e)
{
    static const char *m = "changes";
    NEED(4, m);
    RD(mpr_u64(r, next), m, "next_cursor");
    RD(mpr_bool(r, more), m, "more");
    RD(mpr_array(r, WIRE_MAX_BATCH, n), m, "changes");
    return 0;
}

int wire_read_subscribe(mpr *r, uint32_t count, const char **scope, uint32_t *len, fs_error *e)
{
    static const char *m = "subscribe";
    NEED(2, m);
    RD(mpr_str(r, 128, scope, len), m, "scope");
    RD(wire_skip_rest(r, count - 2), m, "trailing");
    return 0;
}

int wire_read_ledger(mpr *r, uint32_t count, uint64_t *seq, const char **scope,
                     uint32_t *scope_len, fs_error *e)
{
    static const char *m = "ledger";
    NEED(4, m);
    RD(mpr_u64(r, seq), m, "seq");
    RD(mpr_str(r, 128, scope, scope_len), m, "scope");
    return 0;
}

int wire_read_ping(mpr *r, uint32_t count, uint64_t *nonce, fs_error *e)
{
    static const char *m = "ping";
    NEED(2, m);
    RD(mpr_u64(r, nonce), m, "nonce");
    RD(wire_skip_rest(r, count - 2), m, "trailing");
    return 0;
}

int wire_read_error(mpr *r, uint32_t count, wire_error *err, fs_error *e)
{
    static const char *m = "error";
    int64_t code;
    NEED(4, m);
    RD(mpr_i64(r, &code), m, "code");
    if (code < INT32_MIN || code > INT32_MAX)
        return bad(e, FS_EVALUE_RANGE, m, "code");
    err->code = (int32_t)code;
    RD(mpr_str(r, WIRE_MAX_TEXT, &err->text, &err->text_len), m, "text");
    RD(mpr_bool(r, &err->closes), m, "closes");
    RD(wire_skip_rest(r, count - 4), m, "trailing");
    return 0;
}

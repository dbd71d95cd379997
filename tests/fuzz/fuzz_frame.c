/*
 * fuzz_frame — the frame decoder and every message decoder, as the server and the device
 * run them on bytes from the network: frame header, decompression, message type, then the
 * message's reader and every change in it.
 */
#include "fuzz_common.h"

#include "change.h"
#include "mpr.h"

static void read_changes(mpr *r, uint32_t n, bool full)
{
    static change c;
    for (uint32_t i = 0; i < n; i++)
        if (change_unpack(r, fuzz_schema_get(), full, &c, NULL) && mpr_skip(r, MPR_MAX_DEPTH))
            return;
}

/* A push's changes as the server reads them (abbreviated record ids accepted, flagged), and
 * each also through the decoder without a resolver, which must refuse an abbreviation. */
static void read_push_changes(mpr *r, uint32_t n)
{
    static change c;
    for (uint32_t i = 0; i < n; i++) {
        mpr t = *r;
        if (change_unpack(&t, fuzz_schema_get(), false, &c, NULL) == 0 && c.abbrev)
            abort();
        if (change_unpack_push(r, fuzz_schema_get(), &c, NULL) && mpr_skip(r, MPR_MAX_DEPTH))
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wire_codec *codec;
    if (!codec && wire_codec_new(fuzz_dicts_get(), &codec))
        abort();
    const uint8_t *body;
    size_t len;
    if (wire_frame_decode(codec, data, size, WIRE_MAX_FRAME, &body, &len))
        return 0;
    mpr r;
    mpr_init(&r, body, len);
    uint32_t type, count, n;
    if (wire_read_type(&r, &type, &count))
        return 0;
    fs_error e;
    uint64_t u, v;
    bool more;
    const char *s;
    uint32_t sl;
    switch (type) {
    case MSG_HELLO: {
        wire_hello h;
        wire_read_hello(&r, count, &h, &e);
        break;
    }
    case MSG_WELCOME: {
        wire_welcome w;
        wire_read_welcome(&r, count, &w, &e);
        break;
    }
    case MSG_PUSH:
        if (!wire_read_push(&r, count, WIRE_MAX_BATCH, &u, &n, &e))
            read_push_changes(&r, n);
        break;
    case MSG_PUSH_RESULT:
        if (!wire_read_push_result(&r, count, &u, &n, &e))
            for (uint32_t i = 0; i < n; i++) {
                wire_result res;
                if (wire_read_result(&r, &res, &e))
                    break;
            }
        break;
    case MSG_PULL:
        wire_read_pull(&r, count, &u, &sl, &e);
        break;
    case MSG_CHANGES:
        if (!wire_read_changes(&r, count, &u, &more, &n, &e))
            read_changes(&r, n, true);
        break;
    case MSG_SUBSCRIBE:
        wire_read_subscribe(&r, count, &s, &sl, &e);
        break;
    case MSG_LEDGER:
        if (!wire_read_ledger(&r, count, &u, &s, &sl, &e))
            read_changes(&r, 1, true);
        break;
    case MSG_PING:
    case MSG_PONG:
        wire_read_ping(&r, count, &v, &e);
        break;
    case MSG_ERROR: {
        wire_error we;
        wire_read_error(&r, count, &we, &e);
        break;
    }
    default:
        break;
    }
    return 0;
}

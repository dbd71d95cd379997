/*
 * handle_reviews.c — reviews (12): the open review items a supervisor must settle.
 *
 * Request [12]; answer [12, [item ...]], each item
 *   [id, record, type, field, value_a, hlc_a, device_a, author_a,
 *        value_b, hlc_b, device_b, author_b]
 * with the two values exactly as the engine stored them (MessagePack, protocol §3.1). Only
 * roles in the schema's review_roles may ask (others: UNEXPECTED), and only items whose
 * record is in the user's scope are listed. An item is closed by an ordinary change (see
 * store.c close_reviews), so there is nothing else to this message.
 *
 * The answer stops growing near 900 KiB (well under max_frame); the oldest items come first,
 * and resolving them makes room for the rest.
 */
#include "server.h"

#include "mpr.h"

#include <string.h>

#define REVIEWS_SOFT_BYTES (900u << 10)

typedef struct reviews_ctx {
    session *s;
    msgpack_packer pk;   /* into srv->tmp */
    uint32_t n;
    bool oom;
} reviews_ctx;

static int pack_raw_value(msgpack_sbuffer *sb, msgpack_packer *pk, const void *v, size_t len)
{
    if (!v || !len)
        return msgpack_pack_nil(pk);
    return msgpack_sbuffer_write(sb, v, len);
}

static int pack_id(msgpack_packer *pk, const rid_t *id)
{
    return msgpack_pack_bin(pk, 16) | msgpack_pack_bin_body(pk, id->b, 16);
}

static int pack_text(msgpack_packer *pk, const char *t)
{
    size_t n = t ? strlen(t) : 0;
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, t ? t : "", n);
}

static int review_row(void *ctx, const review_item *it)
{
    reviews_ctx *x = ctx;
    server *srv = x->s->srv;
    if (!scope_sees_record(x->s, &it->record))
        return 0;
    if (srv->tmp.size >= REVIEWS_SOFT_BYTES)
        return 1;
    msgpack_packer *pk = &x->pk;
    int rc = msgpack_pack_array(pk, 12);
    rc |= msgpack_pack_int64(pk, it->id);
    rc |= pack_id(pk, &it->record);
    rc |= msgpack_pack_int(pk, it->type);
    rc |= msgpack_pack_int(pk, it->field);
    rc |= pack_raw_value(&srv->tmp, pk, it->value_a, it->len_a);
    rc |= msgpack_pack_uint64(pk, it->hlc_a);
    rc |= pack_id(pk, &it->dev_a);
    rc |= pack_text(pk, it->author_a);
    rc |= pack_raw_value(&srv->tmp, pk, it->value_b, it->len_b);
    rc |= msgpack_pack_uint64(pk, it->hlc_b);
    rc |= pack_id(pk, &it->dev_b);
    rc |= pack_text(pk, it->author_b);
    if (rc) {
        x->oom = true;
        return 1;
    }
    x->n++;
    return 0;
}

int handle_reviews(session *s, mpr *r, uint32_t count)
{
    server *srv = s->srv;
    if (wire_skip_rest(r, count - 1) || mpr_left(r)) {
        session_error(s, WERR_BAD_FRAME, true, "malformed reviews request");
        return -1;
    }
    if (!(srv->schema->review_roles & (1u << s->role))) {
        session_error(s, WERR_UNEXPECTED, true, "role '%s' does not review items",
                      s->user.role);
        return -1;
    }
    reviews_ctx x = {.s = s};
    srv->tmp.size = 0;
    msgpack_packer_init(&x.pk, &srv->tmp, msgpack_sbuffer_write);
    if (store_review_scan(srv->store, true, review_row, &x)) {
        session_error(s, WERR_BUSY, false, "cannot read review items now; ask again later");
        return 0;
    }
    msgpack_packer pk;
    session_packer(srv, &pk);
    int rc = x.oom;
    rc |= msgpack_pack_array(&pk, 2);
    rc |= msgpack_pack_uint8(&pk, MSG_REVIEWS);
    rc |= msgpack_pack_array(&pk, x.n);
    if (!rc && srv->tmp.size)
        rc = msgpack_sbuffer_write(&srv->out, srv->tmp.data, srv->tmp.size);
    if (rc) {
        session_error(s, WERR_INTERNAL, true, "out of memory");
        return -1;
    }
    session_send(s, srv->out.data, srv->out.size, false);
    return 0;
}

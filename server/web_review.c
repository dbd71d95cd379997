/*
 * web_review.c — review items on the page: the open items of the user's scope, and
 * POST /api/reviews/ID/resolve {"value": "a" | "b"}.
 *
 * A review item (store.h) is opened by the engine when two devices set a `review` field
 * (a child's name, birth date, ID number ...) to different values concurrently. It is closed
 * by an ordinary change of that field, by a role in the schema's review_roles, whose base is
 * at least both clocks (protocol §4 reviews). The page therefore resolves an item by making
 * exactly such a change, as the supervisor:
 *   device   the page's device of this user (srv_web_devices; made on first use: a random
 *            id never enrolled, so no hello can use it), with its own device sequence
 *            (store_device_seq + 1: the authority's consumed sequence is the counter)
 *   author   the user's name; role: the user's role
 *   base     the field's current version (>= both clocks of the item), hlc above it
 *   value    the chosen one of the two stored values, bytes as the engine kept them
 * and applying it through store_apply_batch() as the authority, with the same scope check
 * as a device push (scope_authorize_user) and the server's commit fan-out (server_fanout):
 * the item closes in the same transaction, the change enters the log, devices receive it
 * at their next pull, and supervisors' pages get a live event. Nothing about reviews is
 * special-cased: a device could resolve the same item the same way.
 */
#include "web.h"

#include "mpr.h"

#include <stdlib.h>
#include <string.h>

typedef struct list_ctx {
    server *srv;
    const web_user *u;
    const rid_t *only;
    strbuf *b;
    int n;
} list_ctx;

static void side_json(server *srv, strbuf *b, const schema_field *f, const void *v, size_t len,
                      uint64_t hlc, const rid_t *dev, const char *author)
{
    char label[256];
    sb_printf(b, "{\"value\":");
    if (f)
        json_stored(b, f, v, len);
    else
        sb_append(b, "null", 4);
    sb_printf(b, ",\"author\":");
    json_s(b, author);
    sb_printf(b, ",\"device\":");
    json_id(b, dev);
    web_device_label(srv, dev, label, sizeof label);
    sb_printf(b, ",\"device_label\":");
    json_s(b, label);
    sb_printf(b, ",\"time_ms\":%llu}", (unsigned long long)(hlc >> 16));
}

static int list_row(void *ctx, const review_item *it)
{
    list_ctx *x = ctx;
    server *srv = x->srv;
    if (x->only && rid_cmp(x->only, &it->record))
        return 0;
    if (!scope_user_sees_record(srv, &x->u->scope, &it->record))
        return 0;
    const schema_type *t = schema_type_by_id(srv->schema, it->type);
    const schema_field *f = t ? schema_field_by_num(t, it->field) : NULL;
    strbuf *b = x->b;
    sb_printf(b, "%s{\"id\":%lld,\"record\":", x->n++ ? "," : "", (long long)it->id);
    json_id(b, &it->record);
    sb_printf(b, ",\"type\":");
    json_s(b, t ? t->name : NULL);
    sb_printf(b, ",\"field\":");
    json_s(b, f ? f->name : NULL);
    char village[128] = "";
    store_record_get(srv->store, &it->record, NULL, village, sizeof village);
    sb_printf(b, ",\"village\":");
    json_s(b, village);
    /* the subject's name, when the item is on a subject (a child's file) */
    const ledger_cfg *cfg = srv->ledger;
    sb_printf(b, ",\"subject_name\":");
    field_state fs;
    if (cfg && t == cfg->subject &&
        store_field_get(srv->store, &it->record, cfg->s_name->num, &fs) == 0 &&
        fs.value.kind == VAL_STR)
        json_sn(b, fs.value.u.s.p, fs.value.u.s.len);
    else
        sb_append(b, "null", 4);
    field_state_destroy(&fs);
    sb_printf(b, ",\"a\":");
    side_json(srv, b, f, it->value_a, it->len_a, it->hlc_a, &it->dev_a, it->author_a);
    sb_printf(b, ",\"b\":");
    side_json(srv, b, f, it->value_b, it->len_b, it->hlc_b, &it->dev_b, it->author_b);
    sb_append(b, "}", 1);
    return 0;
}

int web_reviews_json(server *srv, const web_user *u, const rid_t *only_record, strbuf *b)
{
    list_ctx x = {srv, u, only_record, b, 0};
    sb_append(b, "[", 1);
    if (store_review_scan(srv->store, true, list_row, &x))
        srv_log(SLOG_WARN, "cannot read review items");
    sb_append(b, "]", 1);
    return x.n;
}

/* ---- resolving -------------------------------------------------------------------------- */

typedef struct find_ctx {
    int64_t id;
    bool found;
    rid_t record;
    int type, field;
    uint64_t hlc_a, hlc_b;
    uint8_t value[CHANGE_MAX_TEXT + 16]; /* the chosen value's bytes */
    size_t len;
    bool pick_b;
} find_ctx;

static int find_row(void *ctx, const review_item *it)
{
    find_ctx *x = ctx;
    if (it->id != x->id)
        return 0;
    x->found = true;
    x->record = it->record;
    x->type = it->type;
    x->field = it->field;
    x->hlc_a = it->hlc_a;
    x->hlc_b = it->hlc_b;
    const void *v = x->pick_b ? it->value_b : it->value_a;
    size_t n = x->pick_b ? it->len_b : it->len_a;
    if (n > sizeof x->value)
        n = 0;
    if (n)
        memcpy(x->value, v, n);
    x->len = n;
    return 1;
}

/* The page's device of user u, created on first use. 0 or FS_EIO. */
static int web_device(server *srv, const web_user *u, rid_t *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db, "SELECT device FROM srv_web_devices WHERE user = ?1", -1, &s,
                           NULL))
        return FS_EIO;
    sqlite3_bind_int64(s, 1, u->user.id);
    bool found = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 16;
    if (found)
        memcpy(out->b, sqlite3_column_blob(s, 0), 16);
    sqlite3_finalize(s);
    if (found)
        return 0;
    if (rid_new(out, (uint64_t)srv_wall_ms()))
        return FS_EIO;
    if (sqlite3_prepare_v2(srv->db,
                           "INSERT INTO srv_web_devices(user, device, created_ms) "
                           "VALUES (?1, ?2, ?3)",
                           -1, &s, NULL))
        return FS_EIO;
    sqlite3_bind_int64(s, 1, u->user.id);
    sqlite3_bind_blob(s, 2, out->b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, srv_wall_ms());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : FS_EIO;
}

typedef struct apply_ctx {
    server *srv;
    const user_scope *scope;
} apply_ctx;

static int web_authorize(void *ctx, const change *c, const char *before, const char *after,
                         fs_error *e)
{
    apply_ctx *a = ctx;
    return scope_authorize_user(a->srv, a->scope, c, before, after, e);
}

static void web_commit(void *ctx, const change *c, uint64_t seq, const char *scope)
{
    apply_ctx *a = ctx;
    server_fanout(a->srv, c, seq, scope);
}

int api_resolve(server *srv, const web_user *u, const char *id, const http_req *req,
                http_reply *out)
{
    char *end;
    long long item = strtoll(id, &end, 10);
    if (!*id || *end || item <= 0)
        return reply_error(out, 404, "not_found", "no such review item");
    if (!u->reviewer)
        return reply_error(out, 403, "role", "role '%s' does not resolve review items",
                           u->user.role);
    char pick[8];
    if (json_body_str(req->body, req->body_len, "value", pick, sizeof pick) ||
        (strcmp(pick, "a") && strcmp(pick, "b")))
        return reply_error(out, 400, "bad_request", "send {\"value\": \"a\"} or {\"value\": \"b\"}");
    find_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return FS_ENOMEM;
    x->id = item;
    x->pick_b = pick[0] == 'b';
    int rc = 0;
    if (store_review_scan(srv->store, true, find_row, x)) {
        rc = reply_error(out, 503, "busy", "cannot read review items now");
        goto done;
    }
    if (!x->found || !scope_user_sees_record(srv, &u->scope, &x->record)) {
        rc = reply_error(out, 409, "resolved",
                         "this review item is resolved already, or not in your scope");
        goto done;
    }
    const schema_type *t = schema_type_by_id(srv->schema, x->type);
    const schema_field *f = t ? schema_field_by_num(t, x->field) : NULL;
    change c;
    memset(&c, 0, sizeof c);
    mpr r;
    mpr_init(&r, x->value, x->len);
    fs_error e = {0};
    if (!f || value_unpack(&r, f, &c.fields[0].v, &e)) {
        rc = reply_error(out, 409, "stale", "the stored value no longer fits the schema: %s",
                         e.msg);
        goto done;
    }
    field_state fs;
    uint64_t base = x->hlc_a > x->hlc_b ? x->hlc_a : x->hlc_b;
    if (store_field_get(srv->store, &x->record, f->num, &fs) == 0 && fs.version > base)
        base = fs.version;
    field_state_destroy(&fs);
    hlc_clock *clk = store_clock(srv->store);
    if (clk->last < base)
        hlc_recv(clk, base);
    uint64_t dseq = 0;
    if (web_device(srv, u, &c.device) || store_device_seq(srv->store, &c.device, &dseq)) {
        rc = reply_error(out, 503, "busy", "cannot write now; try again");
        goto done;
    }
    c.type = (uint8_t)t->id;
    c.record = x->record;
    c.hlc = hlc_now(clk);
    c.base = base;
    c.dseq = dseq + 1;
    c.author = u->user.name;
    c.author_len = (uint32_t)strlen(u->user.name);
    c.role = (uint8_t)u->role;
    c.n_fields = 1;
    c.fields[0].num = f->num;
    if (change_validate(srv->schema, &c, &e)) {
        rc = reply_error(out, 409, "refused", "%s", e.msg);
        goto done;
    }
    apply_ctx ac = {srv, &u->scope};
    apply_opts opts = {.authorize = web_authorize, .on_commit = web_commit, .ctx = &ac};
    apply_result res;
    memset(&res, 0, sizeof res);
    if (store_apply_batch(srv->store, &c, 1, &opts, &res, &e)) {
        srv_log(SLOG_ERROR, "review %lld: resolution not stored: %s", item, e.msg);
        rc = reply_error(out, 503, "busy", "the server cannot store now; nothing was changed");
        goto done;
    }
    metrics_result(&srv->m, &res);
    if (res.status != APPLY_ACCEPTED) {
        rc = reply_error(out, 409, "refused", "%s: %s", fs_errname(res.code), res.msg);
        goto done;
    }
    srv_log(SLOG_INFO, "%s: %s resolved review item %lld (value %s), log sequence %llu",
            req->peer, u->user.name, item, pick, (unsigned long long)res.seq);
    strbuf b = {0};
    sb_printf(&b, "{\"ok\":true,\"seq\":%llu,\"record\":", (unsigned long long)res.seq);
    json_id(&b, &x->record);
    sb_printf(&b, ",\"field\":");
    json_s(&b, f->name);
    sb_printf(&b, ",\"value\":");
    json_value(&b, f, &c.fields[0].v);
    sb_append(&b, "}", 1);
    rc = reply_json(out, 200, &b);
done:
    free(x);
    return rc;
}

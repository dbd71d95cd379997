/*
 * web_child.c — GET /api/child/ID: one child's file (一人一档案) as the page shows it.
 *
 *   fields    every field of the record's type with its merged value, and who set it, on
 *             which device and when (the winning change of that field: store_field_get)
 *   history   every accepted change of the record, in log order, decoded: the audit trail
 *             (store_history), with author, device, role, clock and the fields it set
 *   related   the visits, mandatory reports and assessments that refer to the child (the
 *             types and reference fields of the ledger file), each with its fields
 *   reviews   open review items on this record
 * A record outside the user's scope is answered 404 like a missing one, so ids cannot be
 * probed. Values are JSON per web_json.c; the page labels them from /api/schema.
 */
#include "web.h"

#include "mpr.h"

#include <stdlib.h>
#include <string.h>

/* Appends the fields of record (type t) with their winners. */
static void fields_json(server *srv, strbuf *b, const schema_type *t, const rid_t *record,
                        bool with_winner, int64_t *first_ms)
{
    bool any = false;
    for (uint32_t i = 0; i < t->n_fields; i++) {
        const schema_field *f = &t->fields[i];
        field_state fs;
        if (store_field_get(srv->store, record, f->num, &fs)) {
            field_state_destroy(&fs);
            continue;
        }
        int64_t ms = (int64_t)(fs.whlc >> 16);
        if (first_ms && ms && (!*first_ms || ms < *first_ms))
            *first_ms = ms;
        if (any)
            sb_append(b, ",", 1);
        any = true;
        if (!with_winner) {
            json_s(b, f->name);
            sb_append(b, ":", 1);
            json_value(b, f, &fs.value);
            field_state_destroy(&fs);
            continue;
        }
        char label[256];
        sb_printf(b, "{\"name\":");
        json_s(b, f->name);
        sb_printf(b, ",\"value\":");
        json_value(b, f, &fs.value);
        sb_printf(b, ",\"author\":");
        json_s(b, fs.author);
        sb_printf(b, ",\"device\":");
        json_id(b, &fs.wdev);
        web_device_label(srv, &fs.wdev, label, sizeof label);
        sb_printf(b, ",\"device_label\":");
        json_s(b, label);
        sb_printf(b, ",\"time_ms\":%lld}", (long long)ms);
        field_state_destroy(&fs);
    }
}

typedef struct hist_ctx {
    server *srv;
    strbuf *b;
    int n;
    change c;
} hist_ctx;

static int history_row(void *ctx, uint64_t seq, const void *body, size_t len, const char *scope)
{
    hist_ctx *h = ctx;
    server *srv = h->srv;
    strbuf *b = h->b;
    (void)scope;
    mpr r;
    mpr_init(&r, body, len);
    if (change_unpack(&r, srv->schema, true, &h->c, NULL))
        return 0; /* written under a schema this server no longer reads: skip */
    const change *c = &h->c;
    const schema_type *t = schema_type_by_id(srv->schema, c->type);
    char label[256];
    sb_printf(b, "%s{\"seq\":%llu,\"time_ms\":%llu,\"author\":", h->n++ ? "," : "",
              (unsigned long long)seq, (unsigned long long)(c->hlc >> 16));
    json_sn(b, c->author ? c->author : "", c->author ? c->author_len : 0);
    sb_printf(b, ",\"role\":");
    json_s(b, c->role < srv->schema->n_roles ? srv->schema->roles[c->role] : NULL);
    sb_printf(b, ",\"device\":");
    json_id(b, &c->device);
    web_device_label(srv, &c->device, label, sizeof label);
    sb_printf(b, ",\"device_label\":");
    json_s(b, label);
    sb_printf(b, ",\"dseq\":%llu,\"create\":%s,\"fields\":{", (unsigned long long)c->dseq,
              c->base == 0 ? "true" : "false");
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = t ? schema_field_by_num(t, c->fields[i].num) : NULL;
        if (!f)
            continue;
        if (i)
            sb_append(b, ",", 1);
        json_s(b, f->name);
        sb_append(b, ":", 1);
        json_value(b, f, &c->fields[i].v);
    }
    sb_printf(b, "}}");
    return 0;
}

/* Records of type t whose field ref (a reference) holds id, in village. */
static void related_json(server *srv, strbuf *b, const schema_type *t, const schema_field *ref,
                         const rid_t *id, const char *village)
{
    sb_append(b, "[", 1);
    sqlite3_stmt *s;
    uint8_t want[18] = {0xc4, 16}; /* the stored form of a ref: MessagePack bin 8 of 16 bytes */
    memcpy(want + 2, id->b, 16);
    if (store_flush(srv->store, NULL) ||
        sqlite3_prepare_v2(srv->db,
                           "SELECT r.id FROM records r JOIN fields f ON f.record = r.id "
                           "AND f.field = ?3 WHERE r.scope = ?1 AND r.type = ?2 "
                           "AND f.value = ?4 ORDER BY r.id",
                           -1, &s, NULL)) {
        sb_append(b, "]", 1);
        return;
    }
    sqlite3_bind_text(s, 1, village, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, t->id);
    sqlite3_bind_int(s, 3, ref->num);
    sqlite3_bind_blob(s, 4, want, sizeof want, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        rid_t rid;
        memcpy(rid.b, sqlite3_column_blob(s, 0), 16);
        sb_printf(b, "%s{\"id\":", n++ ? "," : "");
        json_id(b, &rid);
        sb_printf(b, ",\"fields\":{");
        int64_t first = 0;
        fields_json(srv, b, t, &rid, false, &first);
        sb_printf(b, "},\"created_ms\":%lld}", (long long)first);
    }
    sqlite3_finalize(s);
    sb_append(b, "]", 1);
}

int api_child(server *srv, const web_user *u, const char *id, http_reply *out)
{
    rid_t rid;
    int type;
    char village[128];
    if (rid_from_text(id, &rid) || store_record_get(srv->store, &rid, &type, village,
                                                     sizeof village) ||
        !scope_user_sees_record(srv, &u->scope, &rid))
        return reply_error(out, 404, "not_found", "no such record in your scope");
    const schema_type *t = schema_type_by_id(srv->schema, type);
    if (!t)
        return reply_error(out, 404, "not_found", "no such record in your scope");
    const ledger_cfg *cfg = srv->ledger;
    strbuf b = {0};
    sb_printf(&b, "{\"id\":");
    json_id(&b, &rid);
    sb_printf(&b, ",\"type\":");
    json_s(&b, t->name);
    sb_printf(&b, ",\"village\":");
    json_s(&b, village);
    sb_printf(&b, ",\"fields\":[");
    fields_json(srv, &b, t, &rid, true, NULL);
    sb_printf(&b, "],\"history\":[");
    hist_ctx *h = malloc(sizeof *h);
    if (!h) {
        sb_free(&b);
        return FS_ENOMEM;
    }
    h->srv = srv;
    h->b = &b;
    h->n = 0;
    int rc = store_history(srv->store, &rid, history_row, h);
    free(h);
    if (rc) {
        sb_free(&b);
        return reply_error(out, 503, "busy", "cannot read the history now");
    }
    sb_printf(&b, "],\"related\":{");
    if (t == cfg->subject) {
        sb_printf(&b, "\"visits\":");
        related_json(srv, &b, cfg->visit, cfg->v_subject, &rid, village);
        sb_printf(&b, ",\"reports\":");
        related_json(srv, &b, cfg->report, cfg->r_subject, &rid, village);
        sb_printf(&b, ",\"assessments\":");
        related_json(srv, &b, cfg->assessment, cfg->a_subject, &rid, village);
    }
    sb_printf(&b, "},\"reviews\":");
    web_reviews_json(srv, u, &rid, &b);
    sb_append(&b, "}", 1);
    return reply_json(out, 200, &b);
}

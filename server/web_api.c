/*
 * web_api.c — the JSON API of the supervisor page, as one route table under /api.
 *
 *   POST /api/login                       {"user","password"} → session cookie + /api/me
 *   POST /api/logout                      ends the session (CSRF)
 *   GET  /api/me                          user, role, scope, villages, CSRF token
 *   GET  /api/schema                      record types, fields, enum labels, ledger config
 *   GET  /api/ledger                      the ledger of the user's scope (web_ledger.c)
 *   GET  /api/child/ID                    one child's file and history (web_child.c)
 *   POST /api/reviews/ID/resolve          {"value":"a"|"b"} (CSRF; web_review.c)
 *   GET  /api/export/ledger.csv           CSV downloads (web_ledger.c)
 *   GET  /api/export/overdue.csv
 *
 * Order of checks for every route but login: session (401), then for POST the CSRF token
 * and Origin (403), then the route, which filters by the user's scope. Errors are JSON
 * {"error": code, "message": text}. The live WebSocket is web_live.c.
 */
#include "web.h"

#include <stdlib.h>
#include <string.h>

typedef int (*api_fn)(server *srv, const web_user *u, const http_req *req, const char *arg,
                      http_reply *out);

typedef struct api_route {
    http_method method;
    const char *path;   /* exact, or a prefix when it ends with '/' (arg = the rest) */
    const char *suffix; /* with a prefix: the path must end with this (NULL: anything) */
    bool ledger;        /* needs the ledger configuration */
    api_fn fn;
} api_route;

/* ---- villages and devices of a user --------------------------------------------------- */

static int cmp_code(const void *a, const void *b) { return strcmp(a, b); }

int web_user_villages(server *srv, const web_user *u, village_names *vn, ledger_scope *sc)
{
    memset(sc, 0, sizeof *sc);
    int rc = srvdb_village_names(srv->db, NULL, vn);
    if (rc)
        return rc;
    /* keep the villages of the scope, in place (both lists are ordered by code) */
    char(*mine)[SRV_CODE_MAX + 1] = NULL;
    size_t n_mine = 0;
    if (u->scope.kind == SCOPE_CHILDREN) {
        mine = calloc(u->scope.n_children + 1, sizeof *mine);
        if (!mine)
            return FS_ENOMEM;
        for (size_t i = 0; i < u->scope.n_children; i++) {
            char v[128];
            if (!store_record_get(srv->store, &u->scope.children[i], NULL, v, sizeof v) && v[0])
                snprintf(mine[n_mine++], SRV_CODE_MAX + 1, "%.32s", v);
        }
        if (n_mine)
            qsort(mine, n_mine, sizeof *mine, cmp_code);
        sc->only = u->scope.children;
        sc->n_only = u->scope.n_children;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < vn->n; i++) {
        bool in = u->scope.kind == SCOPE_CHILDREN
                      ? n_mine && bsearch(vn->codes[i], mine, n_mine, sizeof *mine, cmp_code)
                      : scope_has_village(&u->scope, vn->codes[i]);
        if (!in)
            continue;
        if (k != i) {
            memcpy(vn->codes[k], vn->codes[i], sizeof vn->codes[k]);
            memcpy(vn->names[k], vn->names[i], sizeof vn->names[k]);
            memcpy(vn->townships[k], vn->townships[i], sizeof vn->townships[k]);
        }
        k++;
    }
    free(mine);
    vn->n = k;
    sc->codes = (const char(*)[33])vn->codes;
    sc->names = (const char(*)[128])vn->names;
    sc->n = k;
    return 0;
}

void web_device_label(server *srv, const rid_t *device, char *out, size_t cap)
{
    out[0] = '\0';
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db,
                           "SELECT d.label, u.name, 0 FROM srv_devices d "
                           "LEFT JOIN srv_users u ON u.id = d.user WHERE d.id = ?1 "
                           "UNION ALL SELECT '', u.name, 1 FROM srv_web_devices w "
                           "LEFT JOIN srv_users u ON u.id = w.user WHERE w.device = ?1",
                           -1, &s, NULL))
        return;
    sqlite3_bind_blob(s, 1, device->b, 16, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        const char *label = (const char *)sqlite3_column_text(s, 0);
        const char *user = (const char *)sqlite3_column_text(s, 1);
        if (sqlite3_column_int(s, 2))
            snprintf(out, cap, "%s", "网页 web");
        else if (label && *label)
            snprintf(out, cap, "%s", label);
        else
            snprintf(out, cap, "%s", user ? user : "");
    }
    sqlite3_finalize(s);
}

/* ---- routes --------------------------------------------------------------------------- */

static int api_me(server *srv, const web_user *u, const http_req *req, const char *arg,
                  http_reply *out)
{
    (void)req;
    (void)arg;
    strbuf b = {0};
    web_me_json(srv, u, &b);
    return reply_json(out, 200, &b);
}

static int api_logout(server *srv, const web_user *u, const http_req *req, const char *arg,
                      http_reply *out)
{
    (void)req;
    (void)arg;
    return web_logout(srv, u, out);
}

static void field_json(strbuf *b, const schema *s, const schema_field *f)
{
    sb_printf(b, "{\"name\":");
    json_s(b, f->name);
    sb_printf(b, ",\"num\":%u,\"kind\":\"%s\",\"rule\":\"%s\",\"required\":%s,\"label\":",
              f->num, schema_kind_name(f->kind), schema_rule_name(f->rule),
              f->required ? "true" : "false");
    json_label(b, f->label_zh, f->label_en);
    if (f->kind == KIND_REF && s->by_id[f->ref_type]) {
        sb_printf(b, ",\"ref\":");
        json_s(b, s->by_id[f->ref_type]->name);
    }
    if (f->n_values) {
        sb_printf(b, ",\"values\":[");
        for (uint32_t i = 0; i < f->n_values; i++) {
            sb_printf(b, "%s{\"code\":", i ? "," : "");
            json_s(b, f->values[i].code);
            sb_printf(b, ",\"zh\":");
            json_s(b, f->values[i].zh);
            sb_printf(b, ",\"en\":");
            json_s(b, f->values[i].en);
            sb_append(b, "}", 1);
        }
        sb_append(b, "]", 1);
    }
    sb_append(b, "}", 1);
}

static void name_or_null(strbuf *b, const char *key, const schema_field *f)
{
    sb_printf(b, ",\"%s\":", key);
    json_s(b, f ? f->name : NULL);
}

static void mask_codes(strbuf *b, const schema_field *f, uint64_t mask)
{
    sb_append(b, "[", 1);
    bool any = false;
    for (uint32_t i = 0; i < f->n_values; i++)
        if (mask >> i & 1) {
            if (any)
                sb_append(b, ",", 1);
            json_s(b, f->values[i].code);
            any = true;
        }
    sb_append(b, "]", 1);
}

static void per_value_json(strbuf *b, const schema_field *f, const int32_t *v)
{
    sb_append(b, "{", 1);
    bool any = false;
    for (uint32_t i = 0; i < f->n_values; i++)
        if (v[i]) {
            if (any)
                sb_append(b, ",", 1);
            json_s(b, f->values[i].code);
            sb_printf(b, ":%d", v[i]);
            any = true;
        }
    sb_append(b, "}", 1);
}

static void ledger_cfg_json(strbuf *b, const ledger_cfg *c)
{
    sb_printf(b, "{\"subject\":{\"type\":");
    json_s(b, c->subject->name);
    name_or_null(b, "name", c->s_name);
    name_or_null(b, "village", c->s_village);
    name_or_null(b, "status", c->s_status);
    name_or_null(b, "risk", c->s_risk);
    sb_printf(b, ",\"on_file\":");
    mask_codes(b, c->s_status, c->on_file);
    sb_printf(b, ",\"columns\":[");
    for (uint32_t i = 0; i < c->n_columns; i++) {
        if (i)
            sb_append(b, ",", 1);
        json_s(b, c->columns[i]->name);
    }
    sb_printf(b, "],\"counts\":[");
    for (uint32_t i = 0; i < c->n_counts; i++) {
        const ledger_count *k = &c->counts[i];
        sb_printf(b, "%s{\"key\":", i ? "," : "");
        json_s(b, k->key);
        sb_printf(b, ",\"label\":");
        json_label(b, k->label_zh, k->label_en);
        sb_printf(b, ",\"group\":");
        if (k->group_zh)
            json_label(b, k->group_zh, k->group_en);
        else
            sb_append(b, "null", 4);
        sb_append(b, "}", 1);
    }
    sb_printf(b, "]},\"visits\":{\"type\":");
    json_s(b, c->visit->name);
    name_or_null(b, "subject", c->v_subject);
    name_or_null(b, "time", c->v_time);
    name_or_null(b, "visitor", c->v_visitor);
    sb_printf(b, ",\"overdue_days\":");
    per_value_json(b, c->s_risk, c->overdue_days);
    sb_printf(b, ",\"default_days\":%d},\"reports\":{\"type\":", c->default_days);
    json_s(b, c->report->name);
    name_or_null(b, "subject", c->r_subject);
    name_or_null(b, "category", c->r_category);
    name_or_null(b, "status", c->r_status);
    name_or_null(b, "time", c->r_time);
    sb_printf(b, ",\"closed\":");
    mask_codes(b, c->r_status, c->closed);
    sb_printf(b, ",\"deadline_hours\":");
    per_value_json(b, c->r_status, c->deadline_hours);
    sb_printf(b, "},\"assessments\":{\"type\":");
    json_s(b, c->assessment->name);
    name_or_null(b, "subject", c->a_subject);
    name_or_null(b, "time", c->a_time);
    sb_printf(b, "}}");
}

static int api_schema(server *srv, const web_user *u, const http_req *req, const char *arg,
                      http_reply *out)
{
    (void)u;
    (void)req;
    (void)arg;
    const schema *s = srv->schema;
    strbuf b = {0};
    sb_printf(&b, "{\"version\":%d,\"roles\":[", s->version);
    for (uint32_t i = 0; i < s->n_roles; i++) {
        if (i)
            sb_append(&b, ",", 1);
        json_s(&b, s->roles[i]);
    }
    sb_printf(&b, "],\"types\":[");
    for (uint32_t i = 0; i < s->n_types; i++) {
        const schema_type *t = &s->types[i];
        sb_printf(&b, "%s{\"name\":", i ? "," : "");
        json_s(&b, t->name);
        sb_printf(&b, ",\"id\":%u,\"append_only\":%s,\"label\":", t->id,
                  t->append_only ? "true" : "false");
        json_label(&b, t->label_zh, t->label_en);
        sb_printf(&b, ",\"fields\":[");
        for (uint32_t k = 0; k < t->n_fields; k++) {
            if (k)
                sb_append(&b, ",", 1);
            field_json(&b, s, &t->fields[k]);
        }
        sb_printf(&b, "]}");
    }
    sb_printf(&b, "],\"ledger\":");
    if (srv->ledger)
        ledger_cfg_json(&b, srv->ledger);
    else
        sb_append(&b, "null", 4);
    sb_append(&b, "}", 1);
    return reply_json(out, 200, &b);
}

static int r_ledger(server *srv, const web_user *u, const http_req *req, const char *arg,
                    http_reply *out)
{
    (void)req;
    (void)arg;
    return api_ledger(srv, u, out);
}

static int r_child(server *srv, const web_user *u, const http_req *req, const char *arg,
                   http_reply *out)
{
    (void)req;
    return api_child(srv, u, arg, out);
}

static int r_resolve(server *srv, const web_user *u, const http_req *req, const char *arg,
                     http_reply *out)
{
    return api_resolve(srv, u, arg, req, out);
}

static int r_export(server *srv, const web_user *u, const http_req *req, const char *arg,
                    http_reply *out)
{
    (void)req;
    return api_export(srv, u, arg, out);
}

static const api_route routes[] = {
    {HTTP_GET, "/api/me", NULL, false, api_me},
    {HTTP_POST, "/api/logout", NULL, false, api_logout},
    {HTTP_GET, "/api/schema", NULL, false, api_schema},
    {HTTP_GET, "/api/ledger", NULL, true, r_ledger},
    {HTTP_GET, "/api/child/", NULL, true, r_child},
    {HTTP_POST, "/api/reviews/", "/resolve", true, r_resolve},
    {HTTP_GET, "/api/export/", ".csv", true, r_export},
};

int web_api_route(server *srv, const http_req *req, http_reply *out)
{
    if (!strcmp(req->path, "/api/login")) {
        if (req->method != HTTP_POST)
            return reply_error(out, 405, "method", "log in with POST");
        return web_login(srv, req, out);
    }
    const api_route *rt = NULL;
    char arg[256] = "";
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !rt; i++) {
        const api_route *r = &routes[i];
        size_t pl = strlen(r->path);
        if (r->path[pl - 1] != '/') {
            if (strcmp(req->path, r->path))
                continue;
        } else {
            const char *rest = req->path + pl;
            size_t sl = r->suffix ? strlen(r->suffix) : 0, rl = strlen(rest);
            if (strncmp(req->path, r->path, pl) || rl <= sl || rl - sl >= sizeof arg ||
                (sl && strcmp(rest + rl - sl, r->suffix)))
                continue;
            memcpy(arg, rest, rl - sl);
            arg[rl - sl] = '\0';
            if (strchr(arg, '/'))
                continue;
        }
        path_known = true;
        if (r->method == req->method)
            rt = r;
    }
    if (!path_known)
        return reply_error(out, 404, "not_found", "no such API: %.100s", req->path);
    web_user u;
    int st = web_session_check(srv, req, &u);
    if (st)
        return st == 401 ? reply_error(out, 401, "unauthenticated", "log in first")
                         : reply_error(out, 503, "busy", "cannot read the sessions now");
    int rc;
    if (!rt)
        rc = reply_error(out, 405, "method", "wrong method for %.100s", req->path);
    else if (req->method == HTTP_POST && !web_csrf_ok(srv, req, &u))
        rc = reply_error(out, 403, "csrf",
                         "refused: a state-changing request needs the page's X-CSRF-Token and "
                         "an Origin of this server");
    else if (rt->ledger && !srv->ledger)
        rc = reply_error(out, 503, "no_ledger",
                         "the server has no ledger configuration (see --ledger)");
    else
        rc = rt->fn(srv, &u, req, arg, out);
    web_user_free(&u);
    return rc;
}

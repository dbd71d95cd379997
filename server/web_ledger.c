/*
 * web_ledger.c — GET /api/ledger and the CSV downloads.
 *
 * /api/ledger is one JSON document with everything the page's main views show, computed for
 * the user's villages at the moment of the request (ledger.c does the counting):
 *   summary    children on file, overdue visits, open reports, past deadline, open reviews
 *   villages   per village: children on file and each count column of the ledger file
 *   children   every child of those villages: name, status, risk, the configured columns,
 *              last visit and visitor, visit interval, due date, overdue
 *   reports    open mandatory reports, most urgent first: category, status, age, deadline
 *   reviews    open review items with both values, authors, devices and times
 *   devices    devices of the users whose scope meets the user's villages: last sync,
 *              pending (reported in hello, less what the server consumed since), refused
 *              (remembered refusals), online now
 * Values are JSON per web_json.c (enum codes; the page labels them from /api/schema).
 *
 * The downloads use the same writers as the admin commands (ledger_csv.c) through
 * open_memstream, so a CSV from the page and one from `fieldsyncd admin export[-overdue]`
 * have the same rows.
 */
#include "web.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_MS (86400LL * 1000)

static void subject_json(strbuf *b, const ledger_cfg *cfg, const ledger *l,
                         const ledger_subject *x)
{
    sb_printf(b, "{\"id\":");
    json_id(b, &x->id);
    sb_printf(b, ",\"village\":");
    json_s(b, l->villages[x->village].code);
    sb_printf(b, ",\"name\":");
    json_s(b, x->name);
    sb_printf(b, ",\"status\":");
    json_s(b, x->status >= 0 ? cfg->s_status->values[x->status].code : NULL);
    sb_printf(b, ",\"risk\":");
    json_s(b, x->risk >= 0 ? cfg->s_risk->values[x->risk].code : NULL);
    sb_printf(b, ",\"on_file\":%s,\"since_ms\":%lld,\"last_visit_ms\":",
              x->on_file ? "true" : "false", (long long)x->since_ms);
    if (x->last_visit_ms)
        sb_printf(b, "%lld", (long long)x->last_visit_ms);
    else
        sb_append(b, "null", 4);
    sb_printf(b, ",\"last_visitor\":");
    json_s(b, x->last_visitor);
    sb_printf(b, ",\"interval_days\":%d,\"due_ms\":%lld,\"overdue\":%s,\"days_overdue\":%lld",
              x->interval_days, (long long)x->due_ms, x->overdue ? "true" : "false",
              (long long)(x->overdue ? (l->now_ms - x->due_ms) / DAY_MS : 0));
    sb_printf(b, ",\"cols\":{");
    for (uint32_t c = 0; c < cfg->n_columns; c++) {
        if (c)
            sb_append(b, ",", 1);
        json_s(b, cfg->columns[c]->name);
        sb_append(b, ":", 1);
        if (x->cols[c])
            json_stored(b, cfg->columns[c], x->cols[c], x->col_len[c]);
        else
            sb_append(b, "null", 4);
    }
    sb_printf(b, "}}");
}

static void report_json(strbuf *b, const ledger_cfg *cfg, const ledger *l,
                        const ledger_report *r)
{
    sb_printf(b, "{\"id\":");
    json_id(b, &r->id);
    sb_printf(b, ",\"child\":");
    if (r->subject >= 0)
        json_id(b, &l->subjects[r->subject].id);
    else
        sb_append(b, "null", 4);
    sb_printf(b, ",\"child_name\":");
    json_s(b, r->subject >= 0 ? l->subjects[r->subject].name : NULL);
    sb_printf(b, ",\"village\":");
    json_s(b, l->villages[r->village].code);
    sb_printf(b, ",\"category\":");
    json_s(b, r->category >= 0 ? cfg->r_category->values[r->category].code : NULL);
    sb_printf(b, ",\"status\":");
    json_s(b, r->status >= 0 ? cfg->r_status->values[r->status].code : NULL);
    sb_printf(b,
              ",\"time_ms\":%lld,\"status_since_ms\":%lld,\"deadline_ms\":%lld,"
              "\"past_deadline\":%s}",
              (long long)r->time_ms, (long long)r->status_since_ms, (long long)r->deadline_ms,
              r->past_deadline ? "true" : "false");
}

/* ---- devices -------------------------------------------------------------------------- */

static bool any_village_in(const user_scope *sc, const ledger_scope *mine)
{
    for (size_t i = 0; i < sc->n_villages; i++)
        for (uint32_t k = 0; k < mine->n; k++)
            if (!strcmp(sc->villages[i], mine->codes[k]))
                return true;
    return false;
}

/* Whether a device user's scope meets the viewer's villages. */
static bool device_visible(server *srv, const user_scope *dev_scope, const ledger_scope *mine)
{
    if (dev_scope->kind != SCOPE_CHILDREN)
        return any_village_in(dev_scope, mine);
    for (size_t i = 0; i < dev_scope->n_children; i++) {
        char v[128];
        if (store_record_get(srv->store, &dev_scope->children[i], NULL, v, sizeof v))
            continue;
        for (uint32_t k = 0; k < mine->n; k++)
            if (!strcmp(v, mine->codes[k]))
                return true;
    }
    return false;
}

static int64_t refused_count(server *srv, const rid_t *dev)
{
    sqlite3_stmt *s;
    /* FS_EDUP rows mark re-sent creates answered as duplicates, not refusals */
    if (sqlite3_prepare_v2(srv->db,
                           "SELECT count(*) FROM refused WHERE device = ?1 AND code != ?2", -1,
                           &s, NULL))
        return -1;
    sqlite3_bind_blob(s, 1, dev->b, 16, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, FS_EDUP);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
}

static void devices_json(server *srv, const ledger_scope *mine, strbuf *b)
{
    sb_append(b, "[", 1);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db,
                           "SELECT d.id, d.label, d.last_seen_ms, d.last_agent, d.user, "
                           "h.pending, h.dseq_at, h.hello_ms FROM srv_devices d "
                           "LEFT JOIN srv_device_health h ON h.device = d.id "
                           "WHERE d.revoked_ms = 0 ORDER BY d.user, d.created_ms",
                           -1, &s, NULL)) {
        sb_append(b, "]", 1);
        return;
    }
    int64_t cur_user = -1;
    srv_user u;
    user_scope sc;
    memset(&sc, 0, sizeof sc);
    bool visible = false;
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        int64_t uid = sqlite3_column_int64(s, 4);
        if (uid != cur_user) {
            cur_user = uid;
            scope_free(&sc);
            visible = srvdb_user_get(srv->db, uid, &u) == 0 && scope_load(srv, &u, &sc) == 0 &&
                      device_visible(srv, &sc, mine);
        }
        if (!visible)
            continue;
        rid_t id;
        memcpy(id.b, sqlite3_column_blob(s, 0), 16);
        sb_printf(b, "%s{\"id\":", n++ ? "," : "");
        json_id(b, &id);
        sb_printf(b, ",\"label\":");
        json_s(b, (const char *)sqlite3_column_text(s, 1));
        sb_printf(b, ",\"user\":");
        json_s(b, u.name);
        sb_printf(b, ",\"role\":");
        json_s(b, u.role);
        int64_t seen = sqlite3_column_int64(s, 2);
        sb_printf(b, ",\"last_sync_ms\":");
        if (seen)
            sb_printf(b, "%lld", (long long)seen);
        else
            sb_append(b, "null", 4);
        sb_printf(b, ",\"agent\":");
        json_s(b, (const char *)sqlite3_column_text(s, 3));
        sb_printf(b, ",\"pending\":");
        if (sqlite3_column_type(s, 5) == SQLITE_INTEGER) {
            uint64_t now_dseq = 0;
            store_device_seq(srv->store, &id, &now_dseq);
            int64_t pending = sqlite3_column_int64(s, 5) -
                              ((int64_t)now_dseq - sqlite3_column_int64(s, 6));
            sb_printf(b, "%lld", (long long)(pending > 0 ? pending : 0));
        } else {
            sb_append(b, "null", 4);
        }
        sb_printf(b, ",\"refused\":%lld,\"online\":%s}", (long long)refused_count(srv, &id),
                  session_count_device(srv, &id) ? "true" : "false");
    }
    scope_free(&sc);
    sqlite3_finalize(s);
    sb_append(b, "]", 1);
}

/* ---- /api/ledger ---------------------------------------------------------------------- */

int api_ledger(server *srv, const web_user *u, http_reply *out)
{
    const ledger_cfg *cfg = srv->ledger;
    village_names vn = {0};
    ledger_scope sc;
    ledger l;
    fs_error e = {0};
    int rc = web_user_villages(srv, u, &vn, &sc);
    if (rc)
        return rc;
    if ((rc = ledger_build(srv->store, cfg, &sc, srv_wall_ms(), &l, &e))) {
        srv_log(SLOG_ERROR, "ledger: %s", e.msg);
        village_names_free(&vn);
        return reply_error(out, 503, "busy", "cannot read the store now; try again");
    }
    strbuf rv = {0};
    int64_t n_reviews = web_reviews_json(srv, u, NULL, &rv);
    uint64_t seq = 0;
    store_last_seq(srv->store, &seq);
    uint32_t on_file = 0;
    for (uint32_t i = 0; i < l.n_villages; i++)
        on_file += l.villages[i].on_file;

    strbuf b = {0};
    sb_printf(&b,
              "{\"now_ms\":%lld,\"log_seq\":%llu,\"summary\":{\"children\":%u,\"on_file\":%u,"
              "\"overdue\":%u,\"reports_open\":%u,\"past_deadline\":%u,\"reviews_open\":%lld},"
              "\"villages\":[",
              (long long)l.now_ms, (unsigned long long)seq, l.n_subjects, on_file, l.n_overdue,
              l.n_reports, l.n_past_deadline, (long long)n_reviews);
    for (uint32_t i = 0; i < l.n_villages; i++) {
        const ledger_village *v = &l.villages[i];
        sb_printf(&b, "%s{\"code\":", i ? "," : "");
        json_s(&b, v->code);
        sb_printf(&b, ",\"name\":");
        json_s(&b, v->name);
        sb_printf(&b, ",\"on_file\":%u,\"counts\":[", v->on_file);
        for (uint32_t k = 0; k < cfg->n_counts; k++)
            sb_printf(&b, "%s%u", k ? "," : "", v->counts[k]);
        sb_printf(&b, "]}");
    }
    sb_printf(&b, "],\"children\":[");
    for (uint32_t i = 0; i < l.n_subjects; i++) {
        if (i)
            sb_append(&b, ",", 1);
        subject_json(&b, cfg, &l, &l.subjects[i]);
    }
    sb_printf(&b, "],\"reports\":[");
    for (uint32_t i = 0; i < l.n_reports; i++) {
        if (i)
            sb_append(&b, ",", 1);
        report_json(&b, cfg, &l, &l.reports[i]);
    }
    sb_printf(&b, "],\"reviews\":");
    sb_append(&b, rv.p ? rv.p : "[]", rv.p ? rv.len : 2);
    sb_printf(&b, ",\"devices\":");
    devices_json(srv, &sc, &b);
    sb_append(&b, "}", 1);
    sb_free(&rv);
    ledger_free(&l);
    village_names_free(&vn);
    return reply_json(out, 200, &b);
}

/* ---- CSV downloads -------------------------------------------------------------------- */

int api_export(server *srv, const web_user *u, const char *which, http_reply *out)
{
    bool overdue = !strcmp(which, "overdue");
    if (!overdue && strcmp(which, "ledger"))
        return reply_error(out, 404, "not_found", "exports are ledger.csv and overdue.csv");
    const ledger_cfg *cfg = srv->ledger;
    village_names vn = {0};
    ledger_scope sc;
    int rc = web_user_villages(srv, u, &vn, &sc);
    if (rc)
        return rc;
    char *data = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&data, &size);
    if (!f) {
        village_names_free(&vn);
        return FS_ENOMEM;
    }
    long rows;
    if (overdue) {
        ledger l;
        fs_error e = {0};
        rows = ledger_build(srv->store, cfg, &sc, srv_wall_ms(), &l, &e) ? -1
                                                                          : csv_write_overdue(
                                                                                f, cfg, &l);
        if (rows >= 0)
            ledger_free(&l);
    } else {
        rows = store_flush(srv->store, NULL) ? -1
                                             : csv_write_records(f, srv->store, cfg->subject,
                                                                 &sc);
    }
    bool ok = fclose(f) == 0 && rows >= 0;
    village_names_free(&vn);
    if (!ok) {
        free(data);
        return reply_error(out, 503, "busy", "cannot read the store now; try again");
    }
    rc = reply_set(out, 200, "text/csv; charset=utf-8", data, size);
    free(data);
    char day[16];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    snprintf(out->disposition, sizeof out->disposition,
             "attachment; filename=\"fieldsync-%s-%s.csv\"", which, day);
    return rc;
}

/*
 * query.c — lists over the device's view: records by type, village and parent; the outbox;
 * refused changes; cached review items and their resolution.
 *
 * A list is the union of the records the confirmed store knows and those that exist only as
 * pending changes, each loaded through the overlay (record.c) and filtered on the VIEW, so a
 * child whose village is being changed locally is listed under its new village at once. Cost:
 * one overlay load per candidate record — right for a device's few thousand records; an index
 * on the view would be the next step if a device ever holds a whole district.
 */
#include "internal.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct idlist {
    rid_t *v;
    size_t n, cap;
} idlist;

static int idlist_add(idlist *l, const void *b)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        rid_t *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return FIELDSYNC_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    memcpy(l->v[l->n++].b, b, 16);
    return 0;
}

/* the scope-giving field value of the view, as text or id */
static bool view_matches(fieldsync_db *db, fieldsync_record *rec, const schema_type *t,
                         const char *village, const rid_t *parent)
{
    if (!t->scope_field)
        return !village && !parent;
    const schema_field *f = schema_field_by_num(t, t->scope_field);
    fieldsync_field fv;
    if (fieldsync_get(rec, f->name, &fv))
        return false;
    if (f->kind == KIND_SCOPE) {
        if (parent)
            return false;
        return !village || !strcmp(fv.text, village);
    }
    if (parent) {
        char want[RID_TEXT_LEN + 1];
        rid_to_text(parent, want);
        if (strcmp(fv.text, want))
            return false;
    }
    if (village) {
        rid_t id;
        char scope[128];
        if (rid_from_text(fieldsync_record_id(rec), &id) || record_scope(db, &id, scope, sizeof scope))
            return false;
        return !strcmp(scope, village);
    }
    return true;
}

int sdk_read_begin(fieldsync_db *db, bool *own)
{
    for (int tries = 0;; tries++) {
        int rc = sdk_refresh(db);
        if (rc)
            return rc;
        *own = sqlite3_get_autocommit(db->sql) != 0;
        if (!*own)
            return 0;
        if (sqlite3_exec(db->sql, "BEGIN", NULL, NULL, NULL))
            return sdk_sqlfail(db, "query");
        /* the snapshot starts with this read: if another handle committed between the
         * refresh and here, refresh again rather than reopen inside the transaction */
        uint64_t last;
        if (store_last_seq(db->st, &last)) {
            sdk_read_end(db, true);
            return sdk_sqlfail(db, "log");
        }
        if (last == db->seen_seq || tries == 3)
            return 0;
        sdk_read_end(db, true);
    }
}

void sdk_read_end(fieldsync_db *db, bool own)
{
    if (own && !sqlite3_get_autocommit(db->sql))
        sqlite3_exec(db->sql, "COMMIT", NULL, NULL, NULL);
}

typedef bool (*rec_filter)(fieldsync_record *rec);

static int query(fieldsync_db *db, const char *type, const char *village, const char *parent_id,
                 rec_filter keep, fieldsync_record_cb cb, void *ctx)
{
    if (!db || !type || !cb)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "type and callback are required")
                  : FIELDSYNC_EINVAL;
    const schema_type *t = schema_type_by_name(db->s, type);
    if (!t)
        return sdk_fail(db, FIELDSYNC_ETYPE, "no record type '%s'", type);
    int rc = sdk_refresh(db);
    if (rc)
        return rc;
    rid_t parent;
    if (parent_id && (rid_from_text(parent_id, &parent) || rid_is_zero(&parent)))
        return sdk_fail(db, FIELDSYNC_EINVAL, "'%s' is not a record id", parent_id);
    /* candidates: by confirmed scope/parent, plus everything pending of the type (the
     * view filter decides); a narrow query stays narrow through the indexes */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT id FROM records WHERE type = ?1%s%s "
             "UNION SELECT record FROM dev_outbox WHERE type = ?1 ORDER BY 1",
             village ? " AND scope = ?2" : "", parent_id ? " AND parent = ?3" : "");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL))
        return sdk_sqlfail(db, "query");
    sqlite3_bind_int(s, 1, t->id);
    if (village)
        sqlite3_bind_text(s, 2, village, -1, SQLITE_STATIC);
    if (parent_id)
        sqlite3_bind_blob(s, 3, parent.b, 16, SQLITE_STATIC);
    idlist ids = {0};
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW && !rc)
        if (sqlite3_column_bytes(s, 0) == 16)
            rc = idlist_add(&ids, sqlite3_column_blob(s, 0));
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = sdk_sqlfail(db, "query");
    sqlite3_finalize(s);
    if (rc == FIELDSYNC_ENOMEM)
        sdk_fail(db, rc, "out of memory");
    /* one read transaction for all the loads (each load runs dozens of statements, each
     * otherwise its own transaction with its own lock calls); the callbacks run after it,
     * so they may write */
    bool own_txn = false;
    if (!rc)
        rc = sdk_read_begin(db, &own_txn);
    fieldsync_record **recs = ids.n ? calloc(ids.n, sizeof *recs) : NULL;
    size_t nrec = 0;
    if (ids.n && !recs && !rc)
        rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    for (size_t i = 0; i < ids.n && !rc; i++) {
        fieldsync_record *rec;
        rc = record_load_id(db, &ids.v[i], &rec);
        if (rc == FIELDSYNC_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc)
            break;
        if (view_matches(db, rec, t, village, parent_id ? &parent : NULL) && (!keep || keep(rec)))
            recs[nrec++] = rec;
        else
            fieldsync_record_free(rec);
    }
    sdk_read_end(db, own_txn);
    size_t i = 0;
    for (; i < nrec && !rc; i++) {
        int stop = cb(ctx, recs[i]);
        fieldsync_record_free(recs[i]);
        if (stop) {
            i++;
            break;
        }
    }
    for (; i < nrec; i++)
        fieldsync_record_free(recs[i]);
    free(recs);
    free(ids.v);
    return rc;
}

int fieldsync_query(fieldsync_db *db, const char *type, const char *village,
                    const char *parent_id, fieldsync_record_cb cb, void *ctx)
{
    return query(db, type, village, parent_id, NULL, cb, ctx);
}

int fieldsync_children(fieldsync_db *db, const char *village, fieldsync_record_cb cb, void *ctx)
{
    return query(db, "child", village, NULL, NULL, cb, ctx);
}

int fieldsync_visits(fieldsync_db *db, const char *child_id, fieldsync_record_cb cb, void *ctx)
{
    if (!child_id)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "child id is required") : FIELDSYNC_EINVAL;
    return query(db, "visit", NULL, child_id, NULL, cb, ctx);
}

static bool is_open(fieldsync_record *rec) { return record_workflow_open(rec); }

int fieldsync_open_reports(fieldsync_db *db, fieldsync_record_cb cb, void *ctx)
{
    return query(db, "report", NULL, NULL, is_open, cb, ctx);
}

/* ---- outbox and refusals ------------------------------------------------------------------ */

static int list_changes(fieldsync_db *db, bool refused, fieldsync_change_cb cb, void *ctx)
{
    if (!db || !cb)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "callback is required") : FIELDSYNC_EINVAL;
    const char *sql =
        refused ? "SELECT id, dseq, priority, created, body, code, text, refused_at "
                  "FROM dev_refused ORDER BY id"
                : "SELECT id, dseq, priority, created, body, 0, '', 0 FROM dev_outbox "
                  "ORDER BY dseq IS NULL, dseq, priority, id";
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql, sql, -1, &s, NULL))
        return sdk_sqlfail(db, refused ? "refused" : "outbox");
    int rc = 0, step;
    strbuf sum = {0};
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        fieldsync_change_info in;
        memset(&in, 0, sizeof in);
        in.id = sqlite3_column_int64(s, 0);
        in.dseq = (uint64_t)sqlite3_column_int64(s, 1);
        in.priority = sqlite3_column_int(s, 2);
        in.created_ms = sqlite3_column_int64(s, 3);
        sum.len = 0;
        const schema_type *t = NULL;
        rid_t rec;
        char rtext[RID_TEXT_LEN + 1];
        rc = change_summary(db, sqlite3_column_blob(s, 4), (size_t)sqlite3_column_bytes(s, 4),
                            &sum, &t, &rec);
        if (rc)
            break;
        rid_to_text(&rec, rtext);
        in.type = t->name;
        in.record = rtext;
        in.summary = sum.p ? sum.p : "";
        in.code = sqlite3_column_int(s, 5);
        in.code_name = refused ? fs_errname(in.code) : "";
        in.reason = (const char *)sqlite3_column_text(s, 6);
        in.refused_ms = sqlite3_column_int64(s, 7);
        if (cb(ctx, &in))
            break;
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = sdk_sqlfail(db, "list");
    sqlite3_finalize(s);
    sb_free(&sum);
    return rc;
}

int fieldsync_pending(fieldsync_db *db, fieldsync_change_cb cb, void *ctx)
{
    return list_changes(db, false, cb, ctx);
}

int fieldsync_refused(fieldsync_db *db, fieldsync_change_cb cb, void *ctx)
{
    return list_changes(db, true, cb, ctx);
}

int fieldsync_refused_dismiss(fieldsync_db *db, int64_t id)
{
    if (!db)
        return FIELDSYNC_EINVAL;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql, "DELETE FROM dev_refused WHERE id = ?1", -1, &s, NULL))
        return sdk_sqlfail(db, "refused");
    sqlite3_bind_int64(s, 1, id);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE)
        return sdk_sqlfail(db, "refused");
    if (!sqlite3_changes(db->sql))
        return sdk_fail(db, FIELDSYNC_ENOTFOUND, "no refused change %lld", (long long)id);
    return 0;
}

/* ---- review items ----------------------------------------------------------------------- */

int fieldsync_reviews(fieldsync_db *db, fieldsync_review_cb cb, void *ctx)
{
    if (!db || !cb)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "callback is required") : FIELDSYNC_EINVAL;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT id, record, type, field, value_a, hlc_a, author_a, value_b, "
                           "hlc_b, author_b, resolved FROM dev_review ORDER BY id",
                           -1, &s, NULL))
        return sdk_sqlfail(db, "reviews");
    int rc = 0, step;
    strbuf a = {0}, b = {0};
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const schema_type *t = schema_type_by_id(db->s, sqlite3_column_int(s, 2));
        const schema_field *f = t ? schema_field_by_num(t, sqlite3_column_int(s, 3)) : NULL;
        if (!f || sqlite3_column_bytes(s, 1) != 16)
            continue; /* an item of a type or field this schema does not know */
        fieldsync_review_info in;
        memset(&in, 0, sizeof in);
        char rtext[RID_TEXT_LEN + 1];
        rid_t rec;
        memcpy(rec.b, sqlite3_column_blob(s, 1), 16);
        rid_to_text(&rec, rtext);
        fs_value va, vb;
        a.len = b.len = 0;
        if (value_unpack_stored(f, sqlite3_column_blob(s, 4), (size_t)sqlite3_column_bytes(s, 4), &va) ||
            value_unpack_stored(f, sqlite3_column_blob(s, 7), (size_t)sqlite3_column_bytes(s, 7), &vb))
            continue;
        if (value_text(&a, f, &va) || sb_puts(&a, "") || value_text(&b, f, &vb) ||
            sb_puts(&b, "")) {
            rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
            break;
        }
        in.id = sqlite3_column_int64(s, 0);
        in.record = rtext;
        in.type = t->name;
        in.field = f->name;
        in.value_a = a.p;
        in.hlc_a = (uint64_t)sqlite3_column_int64(s, 5);
        in.author_a = (const char *)sqlite3_column_text(s, 6);
        in.value_b = b.p;
        in.hlc_b = (uint64_t)sqlite3_column_int64(s, 8);
        in.author_b = (const char *)sqlite3_column_text(s, 9);
        in.resolved = sqlite3_column_int(s, 10);
        if (cb(ctx, &in))
            break;
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = sdk_sqlfail(db, "reviews");
    sqlite3_finalize(s);
    sb_free(&a);
    sb_free(&b);
    return rc;
}

int fieldsync_review_resolve(fieldsync_db *db, int64_t id, const char *value)
{
    if (!db || !value)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "value is required") : FIELDSYNC_EINVAL;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT record, type, field, hlc_a, hlc_b FROM dev_review WHERE id = ?1",
                           -1, &s, NULL))
        return sdk_sqlfail(db, "reviews");
    sqlite3_bind_int64(s, 1, id);
    int step = sqlite3_step(s);
    if (step != SQLITE_ROW || sqlite3_column_bytes(s, 0) != 16) {
        sqlite3_finalize(s);
        return step == SQLITE_DONE || step == SQLITE_ROW
                   ? sdk_fail(db, FIELDSYNC_ENOTFOUND, "no review item %lld (sync to refresh)",
                              (long long)id)
                   : sdk_sqlfail(db, "reviews");
    }
    rid_t rec;
    memcpy(rec.b, sqlite3_column_blob(s, 0), 16);
    const schema_type *t = schema_type_by_id(db->s, sqlite3_column_int(s, 1));
    const schema_field *f = t ? schema_field_by_num(t, sqlite3_column_int(s, 2)) : NULL;
    uint64_t ha = (uint64_t)sqlite3_column_int64(s, 3), hb = (uint64_t)sqlite3_column_int64(s, 4);
    sqlite3_finalize(s);
    if (!f)
        return sdk_fail(db, FIELDSYNC_EFIELD, "review item %lld names a field this schema lacks",
                        (long long)id);
    fieldsync_record *r;
    int rc = record_load_id(db, &rec, &r);
    if (rc)
        return rc;
    if (!(rc = fieldsync_set_parse(r, f->name, value)))
        rc = record_save(r, ha > hb ? ha : hb);
    fieldsync_record_free(r);
    if (rc)
        return rc;
    if (sqlite3_prepare_v2(db->sql, "UPDATE dev_review SET resolved = 1 WHERE id = ?1", -1, &s,
                           NULL))
        return sdk_sqlfail(db, "reviews");
    sqlite3_bind_int64(s, 1, id);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? 0 : sdk_sqlfail(db, "reviews");
}

/*
 * overdue.c — fieldsync_overdue(): the children of a village whose visit is overdue, with the
 * supervisor ledger's meaning (docs/supervisor.md §2, server/ledger.c), answered by SQLite
 * instead of by loading every record.
 *
 * Meaning: which record type is the subject, which fields hold its village, status and risk
 * level, which status values are "on file", which type records a visit with which reference
 * and time field, and the interval per risk level all come from the ledger configuration
 * (schema/ledger.yaml, or $FIELDSYNC_LEDGER), never from C. A child on file is overdue when
 * (its latest visit, or when never visited the earliest clock of its fields: the day its file
 * was opened) + interval < now.
 *
 * How: the confirmed state is read with two indexed queries over the engine's tables (the
 * village's subjects with their field rows; the village's visits with their subject and time
 * rows: records_scope index, fields primary key), decoded in C. Then the outbox overlay: every
 * subject record with pending changes is taken from its overlay view (record.c) instead of
 * its confirmed rows (a child moved to another village locally leaves the list at once, one
 * created offline joins it), and every pending visit raises its child's latest visit (a visit
 * recorded offline removes the child from the list at once). Pending records are few, so
 * their per-record overlay loads cost little. Cost O(records of the village).
 *
 * The configuration is read by the server's own loader and the rule (interval per risk
 * level, on-file statuses, last visit or opening day) is the server's (sync/ledgercfg.h), so
 * the device and the supervisor's page agree; the device checks what it reads as strictly as
 * the server, but does not require the sections it never uses (the `ledger: 1` line,
 * reports, assessments: ledger_config_load_visits).
 *
 * Not done here: the configuration is read from its file on every call (~0.1 ms: one small
 * YAML file); caching it on the handle would need fieldsync_close to free it.
 */
#include "internal.h"

#include "hlc.h"
#include "ledgercfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (86400LL * 1000)

/* ---- the configuration ------------------------------------------------------------------ */

/* Loads the ledger configuration ($FIELDSYNC_LEDGER, else ledger.yaml beside the schema) with
 * the server's loader (sync/ledgercfg.h), so both read it alike. Returns 0 and *out (free with
 * ledger_config_free), or a fieldsync_err: FIELDSYNC_ESCHEMA with the loader's "file:line:
 * reason". */
static int cfg_load(fieldsync_db *db, ledger_cfg **out)
{
    char path[4096];
    const char *env = getenv("FIELDSYNC_LEDGER");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/ledger.yaml", db->schema_dir);
    fs_error e = {0};
    int rc = ledger_config_load_visits(path, db->s, out, &e);
    return rc ? sdk_from_fs(db, rc, &e) : 0;
}

/* ---- the subjects ----------------------------------------------------------------------- */

typedef struct subj {
    rid_t id;
    char *name;          /* owned */
    char village[64];
    int status, risk;    /* enum index, -1 if unset */
    int64_t since_ms;    /* earliest field clock */
    int64_t last_ms;     /* latest visit, 0 if none */
    int64_t due_ms;
    int32_t days;
    bool pending;        /* the view or the latest visit comes from a pending change */
    bool confirmed_elsewhere; /* pending view in the village, confirmed scope another one */
} subj;

typedef struct ov_run {
    fieldsync_db *db;
    ledger_cfg *cfg;     /* owned */
    const char *village;
    subj *v;
    size_t n, cap;
    rid_t *pend;         /* subject records with pending changes, sorted */
    size_t npend;
} ov_run;

static int rid_cmp_v(const void *a, const void *b) { return rid_cmp(a, b); }

static bool rid_sorted_has(const rid_t *v, size_t n, const rid_t *id)
{
    return n && bsearch(id, v, n, sizeof *v, rid_cmp_v) != NULL;
}

static subj *subj_add(ov_run *o, const rid_t *id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        subj *p = realloc(o->v, cap * sizeof *p);
        if (!p)
            return NULL;
        o->v = p;
        o->cap = cap;
    }
    subj *x = &o->v[o->n++];
    memset(x, 0, sizeof *x);
    x->id = *id;
    x->status = x->risk = -1;
    return x;
}

static int cmp_subj_id(const void *a, const void *b)
{
    return rid_cmp(&((const subj *)a)->id, &((const subj *)b)->id);
}

static subj *subj_find(ov_run *o, const rid_t *id)
{
    subj key;
    key.id = *id;
    return o->n ? bsearch(&key, o->v, o->n, sizeof *o->v, cmp_subj_id) : NULL;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Runs sql (bound: ?1 village when o->village, ?2 type, ?3/?4 as given) and calls fn per row. */
typedef int (*row_fn)(ov_run *o, sqlite3_stmt *s);

static int each_row(ov_run *o, const char *sql, int type, int a3, int a4, const rid_t *parent,
                    row_fn fn)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(o->db->sql, sql, -1, &s, NULL))
        return sdk_sqlfail(o->db, "overdue");
    if (o->village)
        sqlite3_bind_text(s, 1, o->village, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, type);
    sqlite3_bind_int(s, 3, a3);
    sqlite3_bind_int(s, 4, a4);
    if (parent)
        sqlite3_bind_blob(s, 5, parent->b, 16, SQLITE_STATIC);
    int rc = 0, step;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = fn(o, s);
    if (!rc && step != SQLITE_DONE)
        rc = sdk_sqlfail(o->db, "overdue");
    sqlite3_finalize(s);
    return rc;
}

/* One field row of a confirmed subject: r.id, f.field, f.value, f.whlc, r.scope. Rows of one
 * record are consecutive (ORDER BY r.id). */
static int subject_row(ov_run *o, sqlite3_stmt *s)
{
    const ledger_cfg *c = o->cfg;
    if (sqlite3_column_bytes(s, 0) != 16)
        return 0;
    rid_t id;
    memcpy(id.b, sqlite3_column_blob(s, 0), 16);
    if (rid_sorted_has(o->pend, o->npend, &id))
        return 0; /* taken from its overlay view below */
    subj *x = o->n ? &o->v[o->n - 1] : NULL;
    if (!x || rid_cmp(&x->id, &id)) {
        if (!(x = subj_add(o, &id)))
            return sdk_fail(o->db, FIELDSYNC_ENOMEM, "out of memory");
        const unsigned char *scope = sqlite3_column_text(s, 4);
        snprintf(x->village, sizeof x->village, "%s", scope ? (const char *)scope : "");
    }
    int64_t ms = (int64_t)hlc_physical_ms((uint64_t)sqlite3_column_int64(s, 3));
    if (ms > 0 && (!x->since_ms || ms < x->since_ms))
        x->since_ms = ms;
    int num = sqlite3_column_int(s, 1);
    const schema_field *f = num == c->s_name->num     ? c->s_name
                            : num == c->s_status->num ? c->s_status
                            : num == c->s_risk->num   ? c->s_risk
                                                      : NULL;
    fs_value v;
    if (!f || value_unpack_stored(f, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), &v))
        return 0;
    if (f == c->s_name && v.kind == VAL_STR && !x->name) {
        if (!(x->name = dupn(v.u.s.p, v.u.s.len)))
            return sdk_fail(o->db, FIELDSYNC_ENOMEM, "out of memory");
    } else if (v.kind == VAL_INT && f == c->s_status) {
        x->status = (int)v.u.i;
    } else if (v.kind == VAL_INT && f == c->s_risk) {
        x->risk = (int)v.u.i;
    }
    return 0;
}

/* A pending subject record, from its overlay view. */
static int subject_view(ov_run *o, const rid_t *id)
{
    const ledger_cfg *c = o->cfg;
    fieldsync_record *rec;
    int rc = record_load_id(o->db, id, &rec);
    if (rc == FIELDSYNC_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    fieldsync_field fv;
    if (fieldsync_get(rec, c->s_village->name, &fv) ||
        (o->village && strcmp(fv.text, o->village))) {
        fieldsync_record_free(rec);
        return 0;
    }
    subj *x = subj_add(o, id);
    if (!x) {
        fieldsync_record_free(rec);
        return sdk_fail(o->db, FIELDSYNC_ENOMEM, "out of memory");
    }
    x->pending = true;
    snprintf(x->village, sizeof x->village, "%s", fv.text);
    int n = fieldsync_record_field_count(rec);
    for (int i = 0; i < n; i++) {
        if (fieldsync_record_field_at(rec, i, &fv) || !fv.version)
            continue;
        int64_t ms = (int64_t)hlc_physical_ms(fv.version);
        if (ms > 0 && (!x->since_ms || ms < x->since_ms))
            x->since_ms = ms;
    }
    if (!fieldsync_get(rec, c->s_name->name, &fv) && fv.present && !(x->name = strdup(fv.text)))
        rc = sdk_fail(o->db, FIELDSYNC_ENOMEM, "out of memory");
    if (!fieldsync_get(rec, c->s_status->name, &fv) && fv.present)
        x->status = (int)fv.number;
    if (!fieldsync_get(rec, c->s_risk->name, &fv) && fv.present)
        x->risk = (int)fv.number;
    /* confirmed elsewhere: its confirmed visits are not under this village's scope */
    x->confirmed_elsewhere = rec && fieldsync_record_confirmed(rec) && o->village;
    fieldsync_record_free(rec);
    return rc;
}

/* ---- the visits ------------------------------------------------------------------------- */

static void visit_seen(ov_run *o, const rid_t *child, int64_t ms, bool pending)
{
    subj *x = subj_find(o, child);
    if (x && ms > x->last_ms) {
        x->last_ms = ms;
        x->pending = x->pending || pending;
    }
}

/* One confirmed visit: its subject reference and time values. */
static int visit_row(ov_run *o, sqlite3_stmt *s)
{
    const ledger_cfg *c = o->cfg;
    fs_value ref, t;
    if (value_unpack_stored(c->v_subject, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                     &ref) ||
        ref.kind != VAL_REF ||
        value_unpack_stored(c->v_time, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                     &t) ||
        t.kind != VAL_INT)
        return 0;
    visit_seen(o, &ref.u.ref, ledger_time_ms(c->v_time, t.u.i), false);
    return 0;
}

/* A pending visit, from its overlay view. */
static int visit_view(ov_run *o, const rid_t *id)
{
    const ledger_cfg *c = o->cfg;
    fieldsync_record *rec;
    int rc = record_load_id(o->db, id, &rec);
    if (rc == FIELDSYNC_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    fieldsync_field fs, ft;
    rid_t child;
    if (!fieldsync_get(rec, c->v_subject->name, &fs) && fs.present &&
        !fieldsync_get(rec, c->v_time->name, &ft) && ft.present &&
        !rid_from_text(fs.text, &child))
        visit_seen(o, &child, ledger_time_ms(c->v_time, ft.number), fs.pending || ft.pending);
    fieldsync_record_free(rec);
    return 0;
}

/* Ids of the outbox's records of type, sorted (DISTINCT ... ORDER BY). */
static int pending_ids(ov_run *o, int type, rid_t **out, size_t *n)
{
    sqlite3_stmt *s;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(o->db->sql,
                           "SELECT DISTINCT record FROM dev_outbox WHERE type = ?1 ORDER BY 1",
                           -1, &s, NULL))
        return sdk_sqlfail(o->db, "overdue");
    sqlite3_bind_int(s, 1, type);
    size_t cap = 0;
    int rc = 0, step;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            rid_t *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = sdk_fail(o->db, FIELDSYNC_ENOMEM, "out of memory");
                break;
            }
            *out = p;
        }
        memcpy((*out)[(*n)++].b, sqlite3_column_blob(s, 0), 16);
    }
    if (!rc && step != SQLITE_DONE)
        rc = sdk_sqlfail(o->db, "overdue");
    sqlite3_finalize(s);
    return rc;
}

/* Everything that reads the replica: one read transaction (see query.c). */
static int gather(ov_run *o)
{
    const ledger_cfg *c = o->cfg;
    int rc = pending_ids(o, c->subject->id, &o->pend, &o->npend);
    if (rc)
        return rc;
    /* confirmed subjects of the village, with all their field rows (the earliest clock is
     * when the file was opened) */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT r.id, f.field, f.value, f.whlc, r.scope FROM records r JOIN fields f "
             "ON f.record = r.id WHERE %s r.type = ?2 ORDER BY r.id",
             o->village ? "r.scope = ?1 AND" : "");
    if ((rc = each_row(o, sql, c->subject->id, 0, 0, NULL, subject_row)))
        return rc;
    for (size_t i = 0; i < o->npend && !rc; i++)
        rc = subject_view(o, &o->pend[i]);
    if (rc)
        return rc;
    if (o->n) /* qsort's array may not be NULL, even empty */
        qsort(o->v, o->n, sizeof *o->v, cmp_subj_id);
    /* confirmed visits of the village: subject reference and time */
    snprintf(sql, sizeof sql,
             "SELECT fs.value, ft.value FROM records r "
             "JOIN fields fs ON fs.record = r.id AND fs.field = ?3 "
             "JOIN fields ft ON ft.record = r.id AND ft.field = ?4 WHERE %s r.type = ?2",
             o->village ? "r.scope = ?1 AND" : "");
    if ((rc = each_row(o, sql, c->visit->id, c->v_subject->num, c->v_time->num, NULL, visit_row)))
        return rc;
    /* a child moved into the village by a pending change: its confirmed visits are still
     * under its confirmed village (when the visit takes its scope from the child, they are
     * found by the records_parent index) */
    const schema_field *scope_ref = c->visit->scope_field
                                        ? schema_field_by_num(c->visit, c->visit->scope_field)
                                        : NULL;
    for (size_t i = 0; i < o->n && !rc; i++) {
        if (!o->v[i].confirmed_elsewhere || scope_ref != c->v_subject)
            continue;
        const char *q = "SELECT fs.value, ft.value FROM records r "
                        "JOIN fields fs ON fs.record = r.id AND fs.field = ?3 "
                        "JOIN fields ft ON ft.record = r.id AND ft.field = ?4 "
                        "WHERE r.parent = ?5 AND r.type = ?2 AND (?1 IS NULL OR r.scope <> ?1)";
        rc = each_row(o, q, c->visit->id, c->v_subject->num, c->v_time->num, &o->v[i].id,
                      visit_row);
    }
    /* visits recorded on this device and not yet confirmed */
    rid_t *pv = NULL;
    size_t npv = 0;
    if (!rc)
        rc = pending_ids(o, c->visit->id, &pv, &npv);
    for (size_t i = 0; i < npv && !rc; i++)
        rc = visit_view(o, &pv[i]);
    free(pv);
    return rc;
}

static int cmp_due(const void *a, const void *b)
{
    const subj *x = *(const subj *const *)a, *y = *(const subj *const *)b;
    if (x->due_ms != y->due_ms)
        return x->due_ms < y->due_ms ? -1 : 1;
    int c = strcmp(x->name ? x->name : "", y->name ? y->name : "");
    return c ? c : rid_cmp(&x->id, &y->id);
}

int fieldsync_overdue(fieldsync_db *db, const char *village, int64_t now_ms,
                      fieldsync_overdue_cb cb, void *ctx)
{
    if (!db || !cb)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "callback is required") : FIELDSYNC_EINVAL;
    ov_run o = {.db = db, .village = village};
    int rc = cfg_load(db, &o.cfg);
    if (rc)
        return rc;
    if (!now_ms)
        now_ms = sdk_now_ms();
    bool own_txn;
    if ((rc = sdk_read_begin(db, &own_txn))) {
        ledger_config_free(o.cfg);
        return rc;
    }
    rc = gather(&o);
    sdk_read_end(db, own_txn);
    /* the overdue ones, most overdue first; callbacks after the read transaction, so they
     * may write */
    subj **list = o.n ? malloc(o.n * sizeof *list) : NULL;
    size_t nl = 0;
    if (!rc && o.n && !list)
        rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    for (size_t i = 0; i < o.n && !rc; i++) {
        subj *x = &o.v[i];
        x->days = ledger_interval_days(o.cfg, x->risk);
        x->due_ms = ledger_due_ms(x->days, x->last_ms, x->since_ms);
        if (ledger_on_file(o.cfg, x->status) && x->due_ms < now_ms)
            list[nl++] = x;
    }
    if (!rc && nl)
        qsort(list, nl, sizeof *list, cmp_due);
    for (size_t i = 0; i < nl && !rc; i++) {
        subj *x = list[i];
        char id[RID_TEXT_LEN + 1];
        rid_to_text(&x->id, id);
        fieldsync_overdue_info in;
        memset(&in, 0, sizeof in);
        in.id = id;
        in.name = x->name ? x->name : "";
        in.village = x->village;
        in.risk = x->risk >= 0 && (uint32_t)x->risk < o.cfg->s_risk->n_values
                      ? o.cfg->s_risk->values[x->risk].code
                      : "";
        in.since_ms = x->since_ms;
        in.last_visit_ms = x->last_ms;
        in.interval_days = x->days;
        in.due_ms = x->due_ms;
        in.days_overdue = (now_ms - x->due_ms) / DAY_MS;
        in.pending = x->pending;
        if (cb(ctx, &in))
            break;
    }
    free(list);
    for (size_t i = 0; i < o.n; i++)
        free(o.v[i].name);
    free(o.v);
    free(o.pend);
    ledger_config_free(o.cfg);
    return rc;
}

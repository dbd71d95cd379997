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
 * Not done here: the configuration is read from its file on every call (~0.1 ms: one small
 * YAML file); caching it on the handle would need fieldsync_close to free it. Only the keys
 * used here are checked; the server checks the whole file strictly when it starts.
 */
#include "internal.h"

#include "hlc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#define DAY_MS (86400LL * 1000)

/* What of the ledger configuration the device needs (borrowed pointers into db->s). */
typedef struct ov_cfg {
    const schema_type *subject, *visit;
    const schema_field *s_name, *s_village, *s_status, *s_risk, *v_subject, *v_time;
    uint64_t on_file;                      /* bit per status value counted as on file */
    int32_t overdue_days[SCHEMA_MAX_ENUM]; /* per risk value; 0 = default_days */
    int32_t default_days;
} ov_cfg;

/* ---- the configuration ------------------------------------------------------------------ */

typedef struct cfg_loader {
    fieldsync_db *db;
    yaml_document_t doc;
    const char *path;
    ov_cfg *c;
} cfg_loader;

static int cfg_fail(cfg_loader *L, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(cfg_loader *L, const yaml_node_t *n, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return sdk_fail(L->db, FIELDSYNC_ESCHEMA, "%s:%lu: %s", L->path,
                    n ? (unsigned long)n->start_mark.line + 1 : 0ul, why);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value of key in mapping m, or NULL. */
static yaml_node_t *map_get(cfg_loader *L, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(&L->doc, p->key));
        if (k && !strcmp(k, key))
            return yaml_document_get_node(&L->doc, p->value);
    }
    return NULL;
}

static int cfg_type(cfg_loader *L, yaml_node_t *m, const char *key, const schema_type **out)
{
    yaml_node_t *v = map_get(L, m, key);
    const char *s = scalar(v);
    if (!s)
        return cfg_fail(L, m, "missing '%s'", key);
    if (!(*out = schema_type_by_name(L->db->s, s)))
        return cfg_fail(L, v, "no record type '%s' in the schema", s);
    return 0;
}

/* Field key of t, of one of the kinds in the mask (1 << field_kind). */
static int cfg_field(cfg_loader *L, yaml_node_t *m, const char *key, const schema_type *t,
                     unsigned kinds, const schema_field **out)
{
    yaml_node_t *v = map_get(L, m, key);
    const char *s = scalar(v);
    if (!s)
        return cfg_fail(L, m, "missing '%s'", key);
    *out = schema_field_by_name(t, s);
    if (!*out)
        return cfg_fail(L, v, "type '%s' has no field '%s'", t->name, s);
    if (!(kinds & (1u << (*out)->kind)))
        return cfg_fail(L, v, "field %s.%s has the wrong kind (%s)", t->name, s,
                        schema_kind_name((*out)->kind));
    return 0;
}

static int cfg_days(cfg_loader *L, yaml_node_t *v, int32_t *out)
{
    const char *s = scalar(v);
    char *end;
    errno = 0;
    long x = s && *s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || x < 1 || x > 3650)
        return cfg_fail(L, v, "expected a number of days 1..3650");
    *out = (int32_t)x;
    return 0;
}

static int cfg_resolve(cfg_loader *L, yaml_node_t *root)
{
    ov_cfg *c = L->c;
    yaml_node_t *sub = map_get(L, root, "subject"), *vis = map_get(L, root, "visits");
    if (!sub || !vis)
        return cfg_fail(L, root, "the ledger needs 'subject' and 'visits'");
    int rc;
    if ((rc = cfg_type(L, sub, "type", &c->subject)) ||
        (rc = cfg_field(L, sub, "name", c->subject, 1u << KIND_TEXT, &c->s_name)) ||
        (rc = cfg_field(L, sub, "village", c->subject, 1u << KIND_SCOPE, &c->s_village)) ||
        (rc = cfg_field(L, sub, "status", c->subject, 1u << KIND_ENUM, &c->s_status)) ||
        (rc = cfg_field(L, sub, "risk", c->subject, 1u << KIND_ENUM, &c->s_risk)) ||
        (rc = cfg_type(L, vis, "type", &c->visit)) ||
        (rc = cfg_field(L, vis, "subject", c->visit, 1u << KIND_REF, &c->v_subject)) ||
        (rc = cfg_field(L, vis, "time", c->visit, 1u << KIND_TIME | 1u << KIND_DATE, &c->v_time)) ||
        (rc = cfg_days(L, map_get(L, vis, "default_days"), &c->default_days)))
        return rc;
    if (c->v_subject->ref_type != c->subject->id)
        return cfg_fail(L, vis, "%s.%s does not refer to %s records", c->visit->name,
                        c->v_subject->name, c->subject->name);
    yaml_node_t *of = map_get(L, sub, "on_file");
    if (!of || of->type != YAML_SEQUENCE_NODE)
        return cfg_fail(L, sub, "subject needs on_file: [status values]");
    for (yaml_node_item_t *i = of->data.sequence.items.start; i < of->data.sequence.items.top;
         i++) {
        yaml_node_t *n = yaml_document_get_node(&L->doc, *i);
        int x = scalar(n) ? schema_enum_by_code(c->s_status, scalar(n)) : -1;
        if (x < 0)
            return cfg_fail(L, n, "'%s' is not a value of %s", scalar(n) ? scalar(n) : "?",
                            c->s_status->name);
        c->on_file |= 1ull << x;
    }
    yaml_node_t *od = map_get(L, vis, "overdue_days");
    if (od && od->type != YAML_MAPPING_NODE)
        return cfg_fail(L, od, "overdue_days must map %s values to days", c->s_risk->name);
    for (yaml_node_pair_t *p = od ? od->data.mapping.pairs.start : NULL;
         od && p < od->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&L->doc, p->key);
        int x = scalar(k) ? schema_enum_by_code(c->s_risk, scalar(k)) : -1;
        if (x < 0)
            return cfg_fail(L, k, "'%s' is not a value of %s", scalar(k) ? scalar(k) : "?",
                            c->s_risk->name);
        if ((rc = cfg_days(L, yaml_document_get_node(&L->doc, p->value), &c->overdue_days[x])))
            return rc;
    }
    return 0;
}

/* Loads the ledger configuration into *c. A fieldsync_err (FIELDSYNC_ESCHEMA naming the
 * file and line). */
static int cfg_load(fieldsync_db *db, ov_cfg *c)
{
    char path[4096];
    const char *env = getenv("FIELDSYNC_LEDGER");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/ledger.yaml", db->schema_dir);
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sdk_fail(db, FIELDSYNC_ESCHEMA, "ledger configuration %s: %s", path,
                        strerror(errno));
    cfg_loader L = {.db = db, .path = path, .c = c};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    }
    yaml_parser_set_input_file(&parser, f);
    int ok = yaml_parser_load(&parser, &L.doc);
    fclose(f);
    if (!ok) {
        int rc = sdk_fail(db, FIELDSYNC_ESCHEMA, "%s:%lu: %s", path,
                          (unsigned long)parser.problem_mark.line + 1,
                          parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&L.doc);
    int rc = root ? cfg_resolve(&L, root)
                  : sdk_fail(db, FIELDSYNC_ESCHEMA, "%s:1: the file is empty", path);
    yaml_document_delete(&L.doc);
    return rc;
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
    ov_cfg cfg;
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
    const ov_cfg *c = &o->cfg;
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
    if (!f || value_decode(f, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), &v))
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
    const ov_cfg *c = &o->cfg;
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

/* Milliseconds of a time (Unix seconds) or date (YYYYMMDD, local midnight) value, as
 * server/ledger.c counts them. */
static int64_t time_ms(const schema_field *f, int64_t x)
{
    if (f->kind == KIND_TIME)
        return x * 1000;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = (int)(x / 10000) - 1900;
    tm.tm_mon = (int)(x / 100 % 100) - 1;
    tm.tm_mday = (int)(x % 100);
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t * 1000;
}

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
    const ov_cfg *c = &o->cfg;
    fs_value ref, t;
    if (value_decode(c->v_subject, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                     &ref) ||
        ref.kind != VAL_REF ||
        value_decode(c->v_time, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                     &t) ||
        t.kind != VAL_INT)
        return 0;
    visit_seen(o, &ref.u.ref, time_ms(c->v_time, t.u.i), false);
    return 0;
}

/* A pending visit, from its overlay view. */
static int visit_view(ov_run *o, const rid_t *id)
{
    const ov_cfg *c = &o->cfg;
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
        visit_seen(o, &child, time_ms(c->v_time, ft.number), fs.pending || ft.pending);
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
    const ov_cfg *c = &o->cfg;
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
    if ((rc = sdk_read_begin(db, &own_txn)))
        return rc;
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
        bool on_file = x->status < 0 || (o.cfg.on_file >> x->status & 1);
        x->days = x->risk >= 0 && x->risk < SCHEMA_MAX_ENUM && o.cfg.overdue_days[x->risk]
                      ? o.cfg.overdue_days[x->risk]
                      : o.cfg.default_days;
        int64_t base = x->last_ms ? x->last_ms : x->since_ms;
        x->due_ms = base + (int64_t)x->days * DAY_MS;
        if (on_file && x->due_ms < now_ms)
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
        in.risk = x->risk >= 0 && (uint32_t)x->risk < o.cfg.s_risk->n_values
                      ? o.cfg.s_risk->values[x->risk].code
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
    return rc;
}

/*
 * ledger.c — computes the supervisor's ledger from the store: per-village counts of the
 * children on file, every child with its last visit and whether a visit is overdue, and the
 * open mandatory reports with their deadlines. What each of those words means (which type,
 * which field, how many days) comes from the ledger configuration (sync/ledgercfg.c); this
 * file only follows its pointers.
 *
 * How: after store_flush() the engine's `fields` table holds the merged state of every
 * field, with the clock and author of the change that set it. For each village and each
 * record type involved (subject, visit, report) one query walks
 *     records (scope = village, type) JOIN fields
 * using the records_scope index, grouped by record in C. Three passes: subjects first (then
 * sorted by village and name, and indexed by id), then visits (the latest per subject), then
 * reports. Cost O(records of the villages); a township of a few thousand children is a few
 * milliseconds. Trade-off: recomputed on every request instead of maintained incrementally
 * per change, which keeps it obviously equal to the store (the page refetches on live events,
 * debounced); incremental upkeep is the step if a district-wide view is ever wanted.
 *
 * Definitions (docs/supervisor.md §2):
 *   on file     status is one of cfg->on_file, or unset
 *   since       the earliest clock among the record's fields: when its file was opened
 *   overdue     on file, and (last visit, or since when never visited) + interval < now,
 *               interval = overdue_days[risk] or default_days (the rule is
 *               ledger_due_ms in sync/ledgercfg.c, shared with the device SDK)
 *   open report status not in cfg->closed; deadline = when that status was set (its
 *               winning change's clock) + deadline_hours[status]; for the status the report
 *               was created with, from its time field (when the situation was found) if
 *               earlier
 */
#include "ledger.h"

#include <stdlib.h>
#include <string.h>

/* Milliseconds of a time or date value (ledger_time_ms); 0 when unset. */
static int64_t value_ms(const schema_field *f, const fs_value *v)
{
    return v->kind == VAL_INT ? ledger_time_ms(f, v->u.i) : 0;
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

/* ---- walking one (village, type) ------------------------------------------------------- */

/* One field row of the current record. */
typedef struct frow {
    int field;
    const void *value;
    size_t len;
    int64_t whlc;
    const char *author;
} frow;

/* Called once per record with its field rows (borrowed until the next record). */
typedef int (*record_fn)(void *ctx, const rid_t *id, const frow *rows, size_t n);

static int walk(store *st, const char *village, int type, record_fn fn, void *ctx, fs_error *e)
{
    sqlite3 *db = store_db(st);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db,
                           "SELECT r.id, f.field, f.value, f.whlc, f.author FROM records r "
                           "JOIN fields f ON f.record = r.id WHERE r.scope = ?1 AND r.type = ?2 "
                           "ORDER BY r.id, f.field",
                           -1, &s, NULL))
        return fs_error_set(e, FS_EIO, "ledger: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(s, 1, village, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, type);
    /* rows of one record are copied (values point into SQLite's row buffer, which the next
     * step invalidates) */
    frow rows[SCHEMA_MAX_FIELDS];
    uint8_t *copies[SCHEMA_MAX_FIELDS];
    char *authors[SCHEMA_MAX_FIELDS];
    size_t n = 0;
    rid_t cur;
    int rc = 0, step;
    memset(&cur, 0, sizeof cur);
    while ((step = sqlite3_step(s)) == SQLITE_ROW && !rc) {
        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        rid_t id;
        memcpy(id.b, sqlite3_column_blob(s, 0), 16);
        if (n && rid_cmp(&id, &cur)) {
            rc = fn(ctx, &cur, rows, n);
            for (size_t i = 0; i < n; i++) {
                free(copies[i]);
                free(authors[i]);
            }
            n = 0;
        }
        cur = id;
        if (n == SCHEMA_MAX_FIELDS || rc)
            continue;
        size_t len = (size_t)sqlite3_column_bytes(s, 2);
        const char *au = (const char *)sqlite3_column_text(s, 4);
        copies[n] = malloc(len ? len : 1);
        authors[n] = dupn(au ? au : "", au ? strlen(au) : 0);
        if (!copies[n] || !authors[n]) {
            free(copies[n]);
            free(authors[n]);
            rc = FS_ENOMEM;
            continue;
        }
        if (len)
            memcpy(copies[n], sqlite3_column_blob(s, 2), len);
        rows[n] = (frow){sqlite3_column_int(s, 1), copies[n], len, sqlite3_column_int64(s, 3),
                         authors[n]};
        n++;
    }
    if (!rc && n)
        rc = fn(ctx, &cur, rows, n);
    for (size_t i = 0; i < n; i++) {
        free(copies[i]);
        free(authors[i]);
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = fs_error_set(e, FS_EIO, "ledger: %s", sqlite3_errmsg(db));
    sqlite3_finalize(s);
    if (rc == FS_ENOMEM)
        fs_error_set(e, rc, "ledger: out of memory");
    return rc;
}

static const frow *row_of(const frow *rows, size_t n, const schema_field *f)
{
    if (!f)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (rows[i].field == f->num)
            return &rows[i];
    return NULL;
}

/* The enum index of field f in rows, or -1. */
static int enum_of(const frow *rows, size_t n, const schema_field *f)
{
    const frow *r = row_of(rows, n, f);
    fs_value v;
    if (!r || value_unpack_stored(f, r->value, r->len, &v) || v.kind != VAL_INT || v.u.i < 0 ||
        v.u.i >= (int64_t)f->n_values)
        return -1;
    return (int)v.u.i;
}

/* ---- pass 1: subjects ------------------------------------------------------------------ */

typedef struct build {
    const ledger_cfg *cfg;
    const ledger_scope *sc;
    ledger *l;
    uint32_t village;
    uint32_t cap;
    struct idx { rid_t id; uint32_t i; } *index; /* sorted by id */
} build;

static int rid_in(const rid_t *list, size_t n, const rid_t *id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = rid_cmp(&list[mid], id);
        if (!c)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int subject_row(void *ctx, const rid_t *id, const frow *rows, size_t n)
{
    build *b = ctx;
    const ledger_cfg *cfg = b->cfg;
    ledger *l = b->l;
    if (b->sc->only && !rid_in(b->sc->only, b->sc->n_only, id))
        return 0;
    if (l->n_subjects == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 256;
        ledger_subject *p = realloc(l->subjects, cap * sizeof *p);
        if (!p)
            return FS_ENOMEM;
        l->subjects = p;
        b->cap = cap;
    }
    ledger_subject *x = &l->subjects[l->n_subjects];
    memset(x, 0, sizeof *x);
    x->id = *id;
    x->village = b->village;
    l->n_subjects++; /* counted now so that ledger_free frees what is filled below */
    const frow *nr = row_of(rows, n, cfg->s_name);
    fs_value v;
    if (nr && !value_unpack_stored(cfg->s_name, nr->value, nr->len, &v) && v.kind == VAL_STR)
        x->name = dupn(v.u.s.p, v.u.s.len);
    else
        x->name = dupn("", 0);
    if (!x->name)
        return FS_ENOMEM;
    x->status = enum_of(rows, n, cfg->s_status);
    x->risk = enum_of(rows, n, cfg->s_risk);
    x->on_file = ledger_on_file(cfg, x->status);
    x->since_ms = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t ms = (int64_t)((uint64_t)rows[i].whlc >> 16);
        if (ms > 0 && (!x->since_ms || ms < x->since_ms))
            x->since_ms = ms;
    }
    for (uint32_t c = 0; c < cfg->n_columns; c++) {
        const frow *cr = row_of(rows, n, cfg->columns[c]);
        if (!cr || !cr->len)
            continue;
        if (!(x->cols[c] = malloc(cr->len)))
            return FS_ENOMEM;
        memcpy(x->cols[c], cr->value, cr->len);
        x->col_len[c] = (uint32_t)cr->len;
    }
    /* counts of the village, for children on file */
    if (x->on_file) {
        ledger_village *lv = &l->villages[b->village];
        lv->on_file++;
        for (uint32_t k = 0; k < cfg->n_counts; k++) {
            const ledger_count *lc = &cfg->counts[k];
            const frow *r = row_of(rows, n, lc->f);
            if (!r || value_unpack_stored(lc->f, r->value, r->len, &v))
                continue;
            if ((lc->value < 0 && v.kind == VAL_BOOL && v.u.b) ||
                (lc->value >= 0 && v.kind == VAL_INT && v.u.i == lc->value))
                lv->counts[k]++;
        }
    }
    return 0;
}

static int cmp_subject(const void *a, const void *b)
{
    const ledger_subject *x = a, *y = b;
    if (x->village != y->village)
        return x->village < y->village ? -1 : 1;
    int c = strcmp(x->name, y->name);
    return c ? c : rid_cmp(&x->id, &y->id);
}

static int cmp_idx(const void *a, const void *b)
{
    return rid_cmp(&((const struct idx *)a)->id, &((const struct idx *)b)->id);
}

int64_t ledger_find(const ledger *l, const rid_t *id)
{
    const struct idx *ix = (const struct idx *)l->_index;
    size_t lo = 0, hi = l->n_subjects;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = rid_cmp(&ix[mid].id, id);
        if (!c)
            return ix[mid].i;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- pass 2: visits -------------------------------------------------------------------- */

static int visit_row(void *ctx, const rid_t *id, const frow *rows, size_t n)
{
    build *b = ctx;
    const ledger_cfg *cfg = b->cfg;
    (void)id;
    const frow *sr = row_of(rows, n, cfg->v_subject), *tr = row_of(rows, n, cfg->v_time);
    fs_value v;
    if (!sr || !tr || value_unpack_stored(cfg->v_subject, sr->value, sr->len, &v) || v.kind != VAL_REF)
        return 0;
    int64_t k = ledger_find(b->l, &v.u.ref);
    if (k < 0)
        return 0;
    if (value_unpack_stored(cfg->v_time, tr->value, tr->len, &v))
        return 0;
    int64_t ms = value_ms(cfg->v_time, &v);
    ledger_subject *x = &b->l->subjects[k];
    if (ms <= x->last_visit_ms)
        return 0;
    const char *who = tr->author; /* the visit's author, unless it names the visitor */
    size_t who_len = strlen(who);
    const frow *vr = row_of(rows, n, cfg->v_visitor);
    if (vr && !value_unpack_stored(cfg->v_visitor, vr->value, vr->len, &v) && v.kind == VAL_STR &&
        v.u.s.len) {
        who = v.u.s.p;
        who_len = v.u.s.len;
    }
    char *copy = dupn(who, who_len);
    if (!copy)
        return FS_ENOMEM;
    free(x->last_visitor);
    x->last_visitor = copy;
    x->last_visit_ms = ms;
    return 0;
}

/* ---- pass 3: reports ------------------------------------------------------------------- */

static int report_row(void *ctx, const rid_t *id, const frow *rows, size_t n)
{
    build *b = ctx;
    const ledger_cfg *cfg = b->cfg;
    ledger *l = b->l;
    int status = enum_of(rows, n, cfg->r_status);
    if (status >= 0 && (cfg->closed >> status & 1))
        return 0;
    const frow *sr = row_of(rows, n, cfg->r_subject);
    fs_value v;
    int64_t k = -1;
    if (sr && !value_unpack_stored(cfg->r_subject, sr->value, sr->len, &v) && v.kind == VAL_REF)
        k = ledger_find(l, &v.u.ref);
    if (b->sc->only && k < 0)
        return 0; /* a children scope sees the reports of its children only */
    if (l->n_reports == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 64;
        ledger_report *p = realloc(l->reports, cap * sizeof *p);
        if (!p)
            return FS_ENOMEM;
        l->reports = p;
        b->cap = cap;
    }
    ledger_report *r = &l->reports[l->n_reports++];
    memset(r, 0, sizeof *r);
    r->id = *id;
    r->subject = k;
    r->village = b->village;
    r->status = status;
    r->category = enum_of(rows, n, cfg->r_category);
    const frow *tr = row_of(rows, n, cfg->r_time);
    if (tr && !value_unpack_stored(cfg->r_time, tr->value, tr->len, &v))
        r->time_ms = value_ms(cfg->r_time, &v);
    const frow *st = row_of(rows, n, cfg->r_status);
    r->status_since_ms = st ? (int64_t)((uint64_t)st->whlc >> 16) : r->time_ms;
    /* still in the status it was created with (the status was set by the same change as
     * the report's time field): the clock started when the situation was found, not when
     * the report reached a device (第一时间: a report entered late is late) */
    if (st && tr && st->whlc == tr->whlc && r->time_ms && r->time_ms < r->status_since_ms)
        r->status_since_ms = r->time_ms;
    int32_t hours = status >= 0 ? cfg->deadline_hours[status] : 0;
    r->deadline_ms = hours ? r->status_since_ms + (int64_t)hours * 3600 * 1000 : 0;
    r->past_deadline = hours && l->now_ms > r->deadline_ms;
    l->n_past_deadline += r->past_deadline;
    return 0;
}

static int cmp_report(const void *a, const void *b)
{
    const ledger_report *x = a, *y = b;
    /* most urgent first: past deadline, then the earliest deadline */
    if (x->past_deadline != y->past_deadline)
        return x->past_deadline ? -1 : 1;
    if (x->deadline_ms != y->deadline_ms)
        return x->deadline_ms < y->deadline_ms ? -1 : 1;
    return rid_cmp(&x->id, &y->id);
}

/* ---- entry points ---------------------------------------------------------------------- */

void ledger_free(ledger *l)
{
    if (!l)
        return;
    for (uint32_t i = 0; i < l->n_subjects; i++) {
        free(l->subjects[i].name);
        free(l->subjects[i].last_visitor);
        for (uint32_t c = 0; c < LEDGER_MAX_COLUMNS; c++)
            free(l->subjects[i].cols[c]);
    }
    free(l->subjects);
    free(l->reports);
    free(l->villages);
    free(l->_index);
    memset(l, 0, sizeof *l);
}

int ledger_build(store *st, const ledger_cfg *cfg, const ledger_scope *sc, int64_t now_ms,
                 ledger *out, fs_error *e)
{
    memset(out, 0, sizeof *out);
    out->now_ms = now_ms;
    int rc = store_flush(st, e);
    if (rc)
        return rc;
    out->villages = calloc(sc->n ? sc->n : 1, sizeof *out->villages);
    if (!out->villages)
        return fs_error_set(e, FS_ENOMEM, "ledger: out of memory");
    out->n_villages = sc->n;
    for (uint32_t i = 0; i < sc->n; i++) {
        snprintf(out->villages[i].code, sizeof out->villages[i].code, "%s", sc->codes[i]);
        snprintf(out->villages[i].name, sizeof out->villages[i].name, "%s",
                 sc->names ? sc->names[i] : "");
    }
    build b = {.cfg = cfg, .sc = sc, .l = out};
    for (uint32_t i = 0; i < sc->n && !rc; i++) {
        b.village = i;
        rc = walk(st, sc->codes[i], cfg->subject->id, subject_row, &b, e);
    }
    if (!rc && out->n_subjects) {
        qsort(out->subjects, out->n_subjects, sizeof *out->subjects, cmp_subject);
        b.index = malloc(out->n_subjects * sizeof *b.index);
        if (!b.index)
            rc = fs_error_set(e, FS_ENOMEM, "ledger: out of memory");
        for (uint32_t i = 0; !rc && i < out->n_subjects; i++)
            b.index[i] = (struct idx){out->subjects[i].id, i};
        if (!rc)
            qsort(b.index, out->n_subjects, sizeof *b.index, cmp_idx);
        out->_index = b.index;
    }
    for (uint32_t i = 0; i < sc->n && !rc; i++) {
        b.village = i;
        rc = walk(st, sc->codes[i], cfg->visit->id, visit_row, &b, e);
    }
    b.cap = 0;
    for (uint32_t i = 0; i < sc->n && !rc; i++) {
        b.village = i;
        rc = walk(st, sc->codes[i], cfg->report->id, report_row, &b, e);
    }
    if (rc) {
        ledger_free(out);
        return rc;
    }
    for (uint32_t i = 0; i < out->n_subjects; i++) {
        ledger_subject *x = &out->subjects[i];
        x->interval_days = ledger_interval_days(cfg, x->risk);
        x->due_ms = ledger_due_ms(x->interval_days, x->last_visit_ms, x->since_ms);
        x->overdue = x->on_file && x->due_ms < now_ms;
        out->n_overdue += x->overdue;
    }
    if (out->n_reports)
        qsort(out->reports, out->n_reports, sizeof *out->reports, cmp_report);
    return 0;
}

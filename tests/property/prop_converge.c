/*
 * prop_converge — property test of convergence (DESIGN.md §4, invariant 3): replicas that have
 * applied the same set of accepted changes, in any order and with any duplication, hold
 * byte-identical record state (store_state_hash, and every column of the records table).
 *
 * A case: one authority store and N_DEV devices (skewed clocks, random roles and villages,
 * offline windows) create records and edit fields of every rule on stale views, push their
 * outboxes (split, re-sent, swapped, answers lost) and pull the authority's log. The accepted
 * log then goes to fresh replicas in log order, shuffled with duplicates, and as one random
 * subset in two orders: hashes must agree, the authority must equal the in-order replica, and
 * store_rebuild must keep the authority's hash. Refusals are counted, not failures.
 *
 * One splitmix64 stream per (seed, case) drives everything, record and device ids included, so
 * `--seed N --case K` replays a case exactly. Types and fields are found by name in the schema.
 * The device model is a workload generator, not the client SDK. Cases are independent and run
 * on --jobs worker threads. Usage: prop_converge [--seed N] [--cases N] [--case K] [--jobs N]
 * [--verbose]
 */
#include "check.h"

#include "change.h"
#include "hlc.h"
#include "merge.h"
#include "mpr.h"
#include "rid.h"
#include "schema.h"
#include "store.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#define N_DEV 5
#define MAX_REC 256
#define MAX_BATCH 64
#define N_VILLAGES 4

static const char *const villages[N_VILLAGES] = {"500101-001", "500101-002", "500102-001",
                                                 "500102-003"};

/* The first REVIEW_POOL entries are person names: review fields draw from them only, so two
 * devices sometimes agree and often differ. */
#define REVIEW_POOL 4
static const char *const text_pool[] = {
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "13800138000", "023-65432100", "祖父", "外婆",
    "叔叔", "邻居", "重庆市某县某村三组", "村小学", "良好", "需要关注", "无", "ok",
    "500101201001011234", "50010120110615123X", "孩子独自在家，已联系其外婆。",
    "guardian away until spring festival",
};
#define TEXT_POOL_N (sizeof text_pool / sizeof text_pool[0])

/* ---- deterministic randomness ---------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_next(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

static uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
static bool rng_pct(rng *r, unsigned pct) { return rng_below(r, 100) < pct; }
static int64_t rng_range(rng *r, int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo) + 1);
}

static void rid_make(rng *r, uint64_t ms, rid_t *out)
{
    for (int i = 0; i < 6; i++)
        out->b[i] = (uint8_t)(ms >> (40 - 8 * i));
    uint64_t a = rng_next(r), b = rng_next(r);
    memcpy(out->b + 6, &a, 8);
    memcpy(out->b + 14, &b, 2);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x70);
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);
}

/* ---- schema names ----------------------------------------------------------------------- */

typedef struct names {
    const schema *s;
    const schema_type *child, *household, *visit, *amend, *report, *assess;
    int supervisor, visitor, volunteer, admin;
    int maxf;                    /* most fields in one type */
    int8_t fidx[128][256];       /* [type id][field num] -> index in type->fields, -1 if none */
} names;

static const schema_type *need_type(const schema *s, const char *name)
{
    const schema_type *t = schema_type_by_name(s, name);
    if (!t)
        fprintf(stderr, "schema has no type '%s'\n", name);
    CHECK(t);
    return t;
}

static const schema_field *need_field(const schema_type *t, const char *name, field_rule rule)
{
    const schema_field *f = schema_field_by_name(t, name);
    if (!f || f->rule != rule)
        fprintf(stderr, "schema: %s.%s missing or not rule %s\n", t->name, name,
                schema_rule_name(rule));
    CHECK(f && f->rule == rule);
    return f;
}

static void names_init(names *nm, const schema *s)
{
    memset(nm, 0, sizeof *nm);
    nm->s = s;
    nm->child = need_type(s, "child");
    nm->household = need_type(s, "household");
    nm->visit = need_type(s, "visit");
    nm->amend = need_type(s, "visit_amendment");
    nm->report = need_type(s, "report");
    nm->assess = need_type(s, "assessment");
    /* the rules this test must exercise; it fails loudly if the schema stops having them */
    need_field(nm->child, "name", RULE_REVIEW);
    need_field(nm->child, "birth_date", RULE_REVIEW);
    need_field(nm->household, "guardian_capacity", RULE_REVIEW);
    const schema_field *risk = need_field(nm->child, "risk_level", RULE_ESCALATE);
    need_field(nm->child, "services_received", RULE_SET);
    const schema_field *st = need_field(nm->report, "status", RULE_WORKFLOW);
    CHECK(nm->visit->append_only);
    CHECK(nm->visit->scope_field && nm->report->scope_field);
    nm->supervisor = schema_role_by_name(s, "supervisor");
    nm->visitor = schema_role_by_name(s, "visitor");
    nm->volunteer = schema_role_by_name(s, "volunteer");
    nm->admin = schema_role_by_name(s, "admin");
    CHECK(nm->supervisor >= 0 && nm->visitor >= 0 && nm->volunteer >= 0 && nm->admin >= 0);
    CHECK(risk->priv_roles & (1u << nm->supervisor));
    CHECK(st->priv_roles & (1u << nm->supervisor));
    memset(nm->fidx, -1, sizeof nm->fidx);
    for (uint32_t i = 0; i < s->n_types; i++) {
        const schema_type *t = &s->types[i];
        CHECK(t->n_fields <= 127);
        if ((int)t->n_fields > nm->maxf)
            nm->maxf = (int)t->n_fields;
        for (uint32_t j = 0; j < t->n_fields; j++)
            nm->fidx[t->id][t->fields[j].num] = (int8_t)j;
    }
}

static bool is_ordered(const schema_field *f)
{
    return f->rule == RULE_ESCALATE || f->rule == RULE_WORKFLOW;
}

/* ---- simulation state ------------------------------------------------------------------- */

typedef struct view_entry {
    uint64_t cver;   /* confirmed version (from the last pull) */
    uint64_t lver;   /* version of the device's own pending change, 0 if none */
    uint64_t ldseq;  /* dseq of that pending change */
    int64_t cval;    /* ordered: level (-1 nil); set: present mask; else unused */
    int64_t lval;
} view_entry;

typedef struct outbox_entry {
    uint64_t dseq;
    uint8_t *buf;    /* push form, owned */
    size_t len;
} outbox_entry;

typedef struct sim_rec {
    rid_t id;
    const schema_type *t;
    int village;         /* village index at creation (own or parent's) */
    int creator;
    uint8_t *create;     /* push form of the create of an append-only record, owned */
    size_t create_len;
} sim_rec;

struct sim;

typedef struct device {
    struct sim *sm;
    int idx;
    rid_t id;
    char author[24];
    int role;
    int64_t skew_ms;     /* wall clock error, within a few minutes */
    uint32_t villages;   /* bit per village of the user's scope */
    hlc_clock clk;
    uint64_t next_dseq;
    outbox_entry *out;
    size_t n_out, cap_out;
    uint64_t cursor;     /* pull cursor in the authority's log */
    uint64_t clk_backup; /* an old value of clk.last, restored now and then */
    bool online;
    int offline_left;
    int budget;
    uint64_t known[MAX_REC]; /* hlc of the record's create as seen by the device, 0 = unknown */
    view_entry *view;    /* [MAX_REC * maxf] */
    uint8_t *dirty;      /* [MAX_REC * maxf] */
    uint32_t *dirty_list;
    size_t n_dirty;
} device;

typedef struct totals {
    uint64_t cases, generated, answers, accepted, duplicate, refused, gap, lost;
    uint64_t refused_by[128];     /* distinct refusals (authority's refused table) by -code */
    uint64_t reviews, log_changes, replica_applies, replica_dups, subset_changes;
    uint64_t multi_cand;          /* ordered fields left with 2+ concurrent candidates */
    uint64_t hlc_ties;            /* accepted changes sharing their clock with another change */
    uint64_t hlc_self_ties;       /* ... of the same device (clock restored), told by dseq */
} totals;

typedef struct sim {
    const schema *s;
    const names *nm;
    rng r;
    uint64_t now_ms;
    store *auth;
    apply_opts opts;
    device dev[N_DEV];
    sim_rec rec[MAX_REC];
    int n_rec;
    totals *tot;
    bool verbose;
    FILE *log;               /* diagnostics of this case (buffered, printed if it fails) */
    change batch[MAX_BATCH];
    apply_result res[MAX_BATCH];
} sim;

static uint64_t sim_wall(void *ctx) { return ((sim *)ctx)->now_ms; }

/* --flush-chunk N: every store flushes automatically from a few dirty states on, N states
 * per commit (0: the default, a case in five gets a tiny chunk). */
static long opt_flush_chunk = 0;

/* Incremental flushes (store_set_flush_chunk) must not change any state either: partial
 * flushes, the replay after a failed batch over a partly written table, re-sends found
 * through a tail set cut at the watermark, states dropped from the cache and read again. Drawn from a copy of r, so that the case's own
 * stream (and what a seed reproduces) does not depend on it. */
static void flush_chunk_opts(store *st, const rng *r)
{
    rng c = *r;
    (void)rng_below(&c, 7);
    if (opt_flush_chunk) {
        store_set_flush_threshold(st, (size_t)rng_range(&c, 1, 64));
        store_set_flush_chunk(st, (size_t)opt_flush_chunk);
    } else if (rng_pct(&c, 20)) {
        store_set_flush_threshold(st, (size_t)rng_range(&c, 1, 64));
        store_set_flush_chunk(st, (size_t)rng_range(&c, 1, 4));
    }
    /* and a cache that drops its clean states at every flush, or nearly: a field is then
     * read again from the table, even one of a record this store saw created */
    if (rng_pct(&c, 30))
        store_set_cache_max_clean(st, (size_t)rng_range(&c, 0, 16));
}

static uint64_t dev_wall(void *ctx)
{
    device *d = ctx;
    return (uint64_t)((int64_t)d->sm->now_ms + d->skew_ms);
}

static int rec_find(const sim *sm, const rid_t *id)
{
    for (int i = 0; i < sm->n_rec; i++)
        if (!rid_cmp(&sm->rec[i].id, id))
            return i;
    return -1;
}

static device *dev_find(sim *sm, const rid_t *id)
{
    for (int i = 0; i < N_DEV; i++)
        if (!rid_cmp(&sm->dev[i].id, id))
            return &sm->dev[i];
    return NULL;
}

static int village_index(const char *code)
{
    for (int i = 0; i < N_VILLAGES; i++)
        if (!strcmp(villages[i], code))
            return i;
    return -1;
}

static view_entry *view_of(device *d, int ri, int fnum)
{
    const sim *sm = d->sm;
    int fi = sm->nm->fidx[sm->rec[ri].t->id][fnum];
    CHECK(fi >= 0);
    return &d->view[(size_t)ri * (size_t)sm->nm->maxf + (size_t)fi];
}

static uint64_t eff_ver(const view_entry *v) { return v->lver > v->cver ? v->lver : v->cver; }

static int64_t eff_val(const view_entry *v, const schema_field *f)
{
    if (!v->lver && !v->cver)
        return is_ordered(f) ? -1 : 0;
    return v->lver > v->cver ? v->lval : v->cval;
}

/* The authority's scope check: a device writes only records of its villages. */
static int authorize_scope(void *ctx, const change *c, const char *before, const char *after,
                           fs_error *e)
{
    sim *sm = ctx;
    device *d = dev_find(sm, &c->device);
    if (!d)
        return fs_error_set(e, FS_EROLE, "unknown device");
    int vb = before ? village_index(before) : -2, va = after ? village_index(after) : -2;
    if ((vb != -2 && (vb < 0 || !(d->villages & (1u << vb)))) ||
        (va != -2 && (va < 0 || !(d->villages & (1u << va)))))
        return fs_error_set(e, FS_ESCOPE, "record outside the villages of %s", d->author);
    return 0;
}

/* ---- debugging output ------------------------------------------------------------------- */

static void print_value(FILE *o, const fs_value *v)
{
    switch (v->kind) {
    case VAL_NIL: fprintf(o, "nil"); break;
    case VAL_INT: fprintf(o, "%lld", (long long)v->u.i); break;
    case VAL_BOOL: fprintf(o, "%s", v->u.b ? "true" : "false"); break;
    case VAL_STR: fprintf(o, "\"%.*s\"", (int)v->u.s.len, v->u.s.p); break;
    case VAL_REF: {
        char t[RID_TEXT_LEN + 1];
        rid_to_text(&v->u.ref, t);
        fprintf(o, "ref:%.8s", t);
        break;
    }
    case VAL_SET:
        fprintf(o, "[+%#llx -%#llx]", (unsigned long long)v->u.set.add,
                (unsigned long long)v->u.set.rm);
        break;
    }
}

static void print_change(FILE *o, sim *sm, const change *c)
{
    char t[RID_TEXT_LEN + 1];
    rid_to_text(&c->record, t);
    device *d = dev_find(sm, &c->device);
    const schema_type *ty = schema_type_by_id(sm->s, c->type);
    fprintf(o, "%s %.8s hlc=%llu base=%llu dev=%d/%s dseq=%llu {", ty ? ty->name : "?", t,
            (unsigned long long)c->hlc, (unsigned long long)c->base, d ? d->idx : -1,
            sm->s->roles[c->role], (unsigned long long)c->dseq);
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = ty ? schema_field_by_num(ty, c->fields[i].num) : NULL;
        fprintf(o, "%s%s=", i ? ", " : "", f ? f->name : "?");
        print_value(o, &c->fields[i].v);
    }
    fprintf(o, "}");
}

typedef struct rowset {
    char **key, **val;
    size_t n, cap;
} rowset;

static void rowset_free(rowset *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->key[i]);
        free(rs->val[i]);
    }
    free(rs->key);
    free(rs->val);
    memset(rs, 0, sizeof *rs);
}

static char *dup_text(const unsigned char *t)
{
    const char *src = t ? (const char *)t : "NULL";
    size_t n = strlen(src) + 1;
    char *p = malloc(n);
    CHECK(p);
    memcpy(p, src, n);
    return p;
}

/* Loads (key, val) text rows of sql (two columns, ordered by key) from st. */
static void rowset_load(store *st, const char *sql, rowset *rs)
{
    sqlite3_stmt *q;
    CHECK_OK(sqlite3_prepare_v2(store_db(st), sql, -1, &q, NULL));
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (rs->n == rs->cap) {
            rs->cap = rs->cap ? rs->cap * 2 : 64;
            rs->key = realloc(rs->key, rs->cap * sizeof *rs->key);
            rs->val = realloc(rs->val, rs->cap * sizeof *rs->val);
            CHECK(rs->key && rs->val);
        }
        rs->key[rs->n] = dup_text(sqlite3_column_text(q, 0));
        rs->val[rs->n] = dup_text(sqlite3_column_text(q, 1));
        rs->n++;
    }
    sqlite3_finalize(q);
}

static int history_cb(void *ctx, uint64_t seq, const void *body, size_t len, const char *scope)
{
    sim *sm = ctx;
    change c;
    mpr r;
    mpr_init(&r, body, len);
    if (change_unpack(&r, sm->s, true, &c, NULL)) {
        fprintf(sm->log, "      #%llu (undecodable)\n", (unsigned long long)seq);
        return 0;
    }
    fprintf(sm->log, "      #%llu ", (unsigned long long)seq);
    print_change(sm->log, sm, &c);
    fprintf(sm->log, "\n");
    return 0;
}

/* Prints the records and field rows that differ between a and b, and the authority's history
 * of the first few records involved. */
static void dump_diff(sim *sm, store *a, const char *an, store *b, const char *bn)
{
    static const char *const sql[2] = {
        "SELECT hex(id), 'type=' || type || ' scope=' || coalesce(scope, '-') || ' parent=' || "
        "coalesce(substr(hex(parent), 1, 8), '-') || ' created=' || created FROM records "
        "ORDER BY id",
        "SELECT printf('%s f%03d', hex(record), field), 'value=' || hex(value) || ' version=' "
        "|| version || ' winner=' || whlc || '/' || substr(hex(wdev), 1, 8) || '/' || wseq || "
        "' ' || author || ' aux=' || coalesce(hex(aux), '-') FROM fields ORDER BY record, field",
    };
    rid_t shown[3];
    int n_shown = 0;
    /* `fields` is current only after a flush (the store caches field states) */
    CHECK_OK(store_flush(a, NULL));
    CHECK_OK(store_flush(b, NULL));
    fprintf(sm->log, "  rows that differ (- %s, + %s):\n", an, bn);
    for (int k = 0; k < 2; k++) {
        rowset x = {0}, y = {0};
        rowset_load(a, sql[k], &x);
        rowset_load(b, sql[k], &y);
        size_t i = 0, j = 0;
        int printed = 0;
        while ((i < x.n || j < y.n) && printed < 16) {
            int c = i >= x.n ? 1 : j >= y.n ? -1 : strcmp(x.key[i], y.key[j]);
            const char *key = NULL;
            if (c < 0) {
                fprintf(sm->log, "    - %s %s\n", x.key[i], x.val[i]);
                key = x.key[i++];
            } else if (c > 0) {
                fprintf(sm->log, "    + %s %s\n", y.key[j], y.val[j]);
                key = y.key[j++];
            } else {
                if (strcmp(x.val[i], y.val[j])) {
                    fprintf(sm->log, "    - %s %s\n    + %s %s\n", x.key[i], x.val[i],
                            y.key[j], y.val[j]);
                    key = x.key[i];
                }
                i++;
                j++;
            }
            if (!key)
                continue;
            printed++;
            rid_t id;
            char hex[33];
            memcpy(hex, key, 32);
            hex[32] = '\0';
            if (n_shown < 3 && !rid_from_text(hex, &id)) {
                bool dup = false;
                for (int s = 0; s < n_shown; s++)
                    dup |= !rid_cmp(&shown[s], &id);
                if (!dup)
                    shown[n_shown++] = id;
            }
        }
        rowset_free(&x);
        rowset_free(&y);
    }
    for (int i = 0; i < n_shown; i++) {
        char t[RID_TEXT_LEN + 1];
        rid_to_text(&shown[i], t);
        fprintf(sm->log, "  authority history of %s:\n", t);
        store_history(sm->auth, &shown[i], history_cb, sm);
    }
}

/* ---- devices: generating changes ---------------------------------------------------------- */

static const char *pick_text(rng *r, const schema_field *f)
{
    if (f->rule == RULE_REVIEW)
        return text_pool[rng_below(r, REVIEW_POOL)];
    for (int tries = 0; tries < 16; tries++) {
        const char *t = text_pool[rng_below(r, TEXT_POOL_N)];
        if (strlen(t) <= f->max_len)
            return t;
    }
    return "a";
}

/* A known record of type t (index), preferring records in the device's villages; -1 if none. */
static int pick_known(sim *sm, device *d, const schema_type *t, bool creator_only)
{
    int all[MAX_REC], mine[MAX_REC], na = 0, nm = 0;
    for (int i = 0; i < sm->n_rec; i++) {
        if (!d->known[i] || sm->rec[i].t != t || (creator_only && sm->rec[i].creator != d->idx))
            continue;
        all[na++] = i;
        if (d->villages & (1u << sm->rec[i].village))
            mine[nm++] = i;
    }
    if (nm && rng_pct(&sm->r, 85))
        return mine[rng_below(&sm->r, (uint64_t)nm)];
    return na ? all[rng_below(&sm->r, (uint64_t)na)] : -1;
}

static int pick_village(sim *sm, device *d)
{
    int v[N_VILLAGES], n = 0;
    for (int i = 0; i < N_VILLAGES; i++)
        if (d->villages & (1u << i))
            v[n++] = i;
    return v[rng_below(&sm->r, (uint64_t)n)];
}

static bool role_may_set(const device *d, const schema_field *f, int64_t v)
{
    uint32_t roles = f->values[v].roles;
    return !roles || (roles & (1u << d->role));
}

/* An enum value for f under its rule, given the device's view (cur = -1 when unseen). */
static bool gen_enum(sim *sm, device *d, const schema_field *f, int64_t cur, bool creating,
                     fs_value *v)
{
    rng *r = &sm->r;
    int64_t n = f->n_values, x;
    bool priv = (f->priv_roles & (1u << d->role)) != 0;
    if (f->rule == RULE_ESCALATE && !creating) {
        if (cur > 0 && rng_pct(r, priv ? 35 : 6)) {
            if (priv && rng_pct(r, 10)) { /* a supervisor clears the risk entirely */
                v->kind = VAL_NIL;
                return true;
            }
            x = rng_range(r, 0, cur - 1); /* lowering: refused without the role */
        } else if (cur < n - 1) {
            x = rng_range(r, cur + 1, n - 1);
        } else {
            x = cur;
        }
    } else if (f->rule == RULE_WORKFLOW && !creating) {
        if (cur > 0 && rng_pct(r, priv ? 20 : 3)) {
            x = rng_range(r, 0, cur - 1); /* reopen */
        } else if (cur < n - 1) {
            x = cur + 1 + (rng_pct(r, 25) ? rng_range(r, 0, n - 2 - cur) : 0);
            /* closing needs the role: usually the device does not even try */
            while (!role_may_set(d, f, x) && x > cur + 1 && rng_pct(r, 80))
                x--;
            if (!role_may_set(d, f, x) && rng_pct(r, 70))
                return false;
        } else {
            return false; /* closed: nothing to move to unless reopening */
        }
    } else if (f->rule == RULE_WORKFLOW) {
        x = rng_pct(r, 85) ? 0 : rng_range(r, 0, n - 1);
        while (!role_may_set(d, f, x) && x > 0)
            x--;
    } else {
        x = rng_range(r, 0, n - 1);
        if (!role_may_set(d, f, x) && rng_pct(r, 80))
            return false;
    }
    v->kind = VAL_INT;
    v->u.i = x;
    return true;
}

/* A value for field f of record ri (the view gives the current state for edits). */
static bool gen_value(sim *sm, device *d, int ri, const schema_field *f, bool creating,
                      fs_value *v)
{
    rng *r = &sm->r;
    memset(v, 0, sizeof *v);
    if (!creating && !f->required && f->kind != KIND_SET && f->kind != KIND_SCOPE &&
        !is_ordered(f) && rng_pct(r, 4)) {
        v->kind = VAL_NIL;
        return true;
    }
    view_entry *ve = creating ? NULL : view_of(d, ri, f->num);
    switch (f->kind) {
    case KIND_TEXT: {
        const char *t = pick_text(r, f);
        v->kind = VAL_STR;
        v->u.s.p = t;
        v->u.s.len = (uint32_t)strlen(t);
        return true;
    }
    case KIND_SCOPE: {
        const char *t = villages[pick_village(sm, d)];
        v->kind = VAL_STR;
        v->u.s.p = t;
        v->u.s.len = (uint32_t)strlen(t);
        return true;
    }
    case KIND_INT: {
        int64_t hi = f->max - f->min > 1000 ? f->min + 1000 : f->max;
        v->kind = VAL_INT;
        v->u.i = rng_range(r, f->min, hi);
        return true;
    }
    case KIND_DATE:
        v->kind = VAL_INT;
        if (f->rule == RULE_REVIEW) /* few values: concurrent edits agree now and then */
            v->u.i = 20100000 + rng_range(r, 0, 1) * 10000 + (rng_pct(r, 50) ? 100 : 600) +
                     (rng_pct(r, 50) ? 1 : 15);
        else
            v->u.i = rng_range(r, 2006, 2024) * 10000 + rng_range(r, 1, 12) * 100 +
                     rng_range(r, 1, 28);
        return true;
    case KIND_TIME:
        v->kind = VAL_INT;
        v->u.i = (int64_t)(sm->now_ms / 1000) - rng_range(r, 0, 30 * 86400);
        return true;
    case KIND_BOOL:
        v->kind = VAL_BOOL;
        v->u.b = rng_pct(r, 50);
        return true;
    case KIND_REF: {
        const schema_type *rt = schema_type_by_id(sm->s, f->ref_type);
        int x = rt ? pick_known(sm, d, rt, false) : -1;
        if (x < 0)
            return false;
        v->kind = VAL_REF;
        v->u.ref = sm->rec[x].id;
        return true;
    }
    case KIND_SET: {
        uint64_t known = f->n_values >= 64 ? ~0ull : (1ull << f->n_values) - 1;
        uint64_t cur = ve ? (uint64_t)eff_val(ve, f) : 0, add = 0, rm = 0;
        for (uint32_t i = 0; i < f->n_values; i++)
            if (rng_pct(r, 25))
                add |= 1ull << i;
        if (!creating)
            for (uint32_t i = 0; i < f->n_values; i++)
                if ((cur >> i & 1) && !(add >> i & 1) && rng_pct(r, 35))
                    rm |= 1ull << i;
        if (!add && !rm)
            add = 1ull << rng_below(r, f->n_values);
        v->kind = VAL_SET;
        v->u.set.add = add & known;
        v->u.set.rm = rm & known;
        return true;
    }
    case KIND_ENUM:
        return gen_enum(sm, d, f, ve ? eff_val(ve, f) : -1, creating, v);
    }
    return false;
}

static void outbox_push(device *d, uint64_t dseq, uint8_t *buf, size_t len)
{
    if (d->n_out == d->cap_out) {
        d->cap_out = d->cap_out ? d->cap_out * 2 : 32;
        d->out = realloc(d->out, d->cap_out * sizeof *d->out);
        CHECK(d->out);
    }
    d->out[d->n_out++] = (outbox_entry){.dseq = dseq, .buf = buf, .len = len};
}

/* Stamps c (clock, device, sequence), validates it as a device must before queueing, packs the
 * push form into the outbox and records the device's own view of what it wrote. */
static void emit_change(sim *sm, device *d, int ri, change *c, uint64_t base, uint8_t **keep,
                        size_t *keep_len)
{
    c->hlc = hlc_now(&d->clk);
    if (c->hlc <= base) { /* clock restored from a backup: exceed what was seen, as the SDK */
        CHECK_OK(hlc_recv(&d->clk, base));
        c->hlc = hlc_now(&d->clk);
    }
    CHECK(c->hlc > base);
    c->base = base;
    c->dseq = d->next_dseq++;
    c->device = d->id;
    c->author = d->author;
    c->author_len = (uint32_t)strlen(d->author);
    c->role = (uint8_t)d->role;
    CHECK_OK(change_sort_fields(c));
    fs_error e = {0};
    int rc = change_validate(sm->s, c, &e);
    if (rc) {
        fprintf(stderr, "generator made an invalid change: %s\n  ", e.msg);
        print_change(stderr, sm, c);
        fprintf(stderr, "\n");
    }
    CHECK_OK(rc);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    CHECK_OK(change_pack(&pk, c, false));
    size_t len = sb.size;
    uint8_t *buf = (uint8_t *)msgpack_sbuffer_release(&sb);
    if (keep) {
        *keep = malloc(len);
        CHECK(*keep);
        memcpy(*keep, buf, len);
        *keep_len = len;
    }
    outbox_push(d, c->dseq, buf, len);
    if (base == 0 && !d->known[ri])
        d->known[ri] = c->hlc;
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(sm->rec[ri].t, c->fields[i].num);
        view_entry *ve = view_of(d, ri, f->num);
        const fs_value *v = &c->fields[i].v;
        int64_t nv = 0;
        if (is_ordered(f))
            nv = v->kind == VAL_INT ? v->u.i : -1;
        else if (f->kind == KIND_SET && v->kind == VAL_SET)
            nv = (int64_t)(((uint64_t)eff_val(ve, f) | v->u.set.add) & ~v->u.set.rm);
        ve->lver = c->hlc;
        ve->lval = nv;
        ve->ldseq = c->dseq;
    }
    sm->tot->generated++;
    if (sm->verbose) {
        fprintf(sm->log, "  gen ");
        print_change(sm->log, sm, c);
        fprintf(sm->log, "\n");
    }
}

static void change_init(change *c, const schema_type *t, const rid_t *record)
{
    memset(c, 0, offsetof(change, fields));
    c->type = t->id;
    c->record = *record;
}

/* Users mostly stay within what their role may write; now and then one tries (refused). */
static bool role_tries(sim *sm, const device *d, const schema_type *t)
{
    return (t->write_roles & (1u << d->role)) || rng_pct(&sm->r, 15);
}

static bool act_create(sim *sm, device *d, const schema_type *t)
{
    rng *r = &sm->r;
    if (sm->n_rec == MAX_REC || !role_tries(sm, d, t))
        return false;
    const schema_field *sf = t->scope_field ? schema_field_by_num(t, t->scope_field) : NULL;
    int parent = -1, village = pick_village(sm, d);
    if (sf && sf->kind == KIND_REF) {
        parent = pick_known(sm, d, schema_type_by_id(sm->s, sf->ref_type), false);
        if (parent < 0)
            return false;
        village = sm->rec[parent].village;
    }
    int ri = sm->n_rec;
    sim_rec *rec = &sm->rec[ri];
    memset(rec, 0, sizeof *rec);
    rid_make(r, dev_wall(d), &rec->id);
    rec->t = t;
    rec->village = village;
    rec->creator = d->idx;
    change c;
    change_init(&c, t, &rec->id);
    for (uint32_t i = 0; i < t->n_fields; i++) {
        const schema_field *f = &t->fields[i];
        if (!f->required && !rng_pct(r, t->append_only ? 60 : 45))
            continue;
        fs_value v;
        if (f == sf && f->kind == KIND_REF) {
            v.kind = VAL_REF;
            v.u.ref = sm->rec[parent].id;
        } else if (f == sf) {
            v.kind = VAL_STR;
            v.u.s.p = villages[village];
            v.u.s.len = (uint32_t)strlen(villages[village]);
        } else if (!gen_value(sm, d, ri, f, true, &v)) {
            if (f->required)
                return false;
            continue;
        }
        c.fields[c.n_fields].num = f->num;
        c.fields[c.n_fields].v = v;
        c.n_fields++;
    }
    sm->n_rec++;
    emit_change(sm, d, ri, &c, 0, t->append_only ? &rec->create : NULL, &rec->create_len);
    return true;
}

/* Re-sends the create of one of the device's append-only records under a new dseq and clock:
 * the authority must answer "duplicate" and log nothing. */
static bool act_recreate(sim *sm, device *d, const schema_type *t)
{
    int ri = pick_known(sm, d, t, true);
    if (ri < 0 || !sm->rec[ri].create)
        return false;
    change c;
    mpr r;
    mpr_init(&r, sm->rec[ri].create, sm->rec[ri].create_len);
    CHECK_OK(change_unpack(&r, sm->s, false, &c, NULL));
    emit_change(sm, d, ri, &c, 0, NULL, NULL);
    return true;
}

static unsigned rule_weight(const schema_field *f)
{
    if (f->kind == KIND_SCOPE)
        return 3;
    switch (f->rule) {
    case RULE_ESCALATE:
    case RULE_WORKFLOW: return 60;
    case RULE_REVIEW: return 30;
    case RULE_SET: return 40;
    case RULE_LWW: return 10;
    case RULE_IMMUTABLE: return 0;
    }
    return 0;
}

/* Edits one or two fields of a known record of type t. illegal: an immutable field instead
 * (refused as append-only, or a duplicate when it happens to restate the create). */
static bool act_edit(sim *sm, device *d, const schema_type *t, bool illegal)
{
    rng *r = &sm->r;
    if (!role_tries(sm, d, t))
        return false;
    int ri = pick_known(sm, d, t, false);
    if (ri < 0)
        return false;
    unsigned w[256], total = 0;
    for (uint32_t i = 0; i < t->n_fields; i++) {
        const schema_field *f = &t->fields[i];
        w[i] = illegal ? (f->rule == RULE_IMMUTABLE || t->append_only) : rule_weight(f);
        if (t->append_only && !illegal)
            w[i] = 0;
        total += w[i];
    }
    if (!total)
        return false;
    change c;
    change_init(&c, t, &sm->rec[ri].id);
    int want = rng_pct(r, 20) ? 2 : 1;
    uint64_t base = 0;
    for (int k = 0; k < want * 3 && (int)c.n_fields < want; k++) {
        uint64_t x = rng_below(r, total);
        uint32_t i = 0;
        while (x >= w[i])
            x -= w[i++];
        const schema_field *f = &t->fields[i];
        if (change_field_get(&c, f->num))
            continue;
        fs_value v;
        if (!gen_value(sm, d, ri, f, false, &v))
            continue;
        c.fields[c.n_fields].num = f->num;
        c.fields[c.n_fields].v = v;
        c.n_fields++;
        uint64_t ver = eff_ver(view_of(d, ri, f->num));
        if (ver > base)
            base = ver;
    }
    if (!c.n_fields)
        return false;
    /* none of these fields was ever set in the device's view: the author saw the record as
     * created, or (as the client SDK does) sends base 0, which must merge the same way */
    if (!base && rng_pct(r, 75))
        base = d->known[ri];
    emit_change(sm, d, ri, &c, base, NULL, NULL);
    return true;
}

static int count_known(const sim *sm, const device *d, const schema_type *t)
{
    int n = 0;
    for (int i = 0; i < sm->n_rec; i++)
        n += d->known[i] && sm->rec[i].t == t;
    return n;
}

static void make_change(sim *sm, device *d)
{
    const names *nm = sm->nm;
    for (int attempt = 0; attempt < 8; attempt++) {
        unsigned x = (unsigned)rng_below(&sm->r, 100);
        if (attempt == 0 && count_known(sm, d, nm->child) < 2)
            x = rng_pct(&sm->r, 30) ? 0 : 6;
        bool ok;
        if (x < 6)
            ok = act_create(sm, d, nm->household);
        else if (x < 14)
            ok = act_create(sm, d, nm->child);
        else if (x < 20)
            ok = act_create(sm, d, nm->report);
        else if (x < 27)
            ok = act_create(sm, d, nm->visit);
        else if (x < 29)
            ok = act_create(sm, d, nm->amend);
        else if (x < 32)
            ok = act_create(sm, d, nm->assess);
        else if (x < 34)
            ok = act_recreate(sm, d, rng_pct(&sm->r, 80) ? nm->visit : nm->amend);
        else if (x < 36)
            ok = act_edit(sm, d, rng_pct(&sm->r, 50) ? nm->visit : nm->report, true);
        else if (x < 66)
            ok = act_edit(sm, d, nm->child, false);
        else if (x < 76)
            ok = act_edit(sm, d, nm->household, false);
        else if (x < 90)
            ok = act_edit(sm, d, nm->report, false);
        else
            ok = act_edit(sm, d, nm->assess, false);
        if (ok)
            return;
    }
}

/* ---- devices: sync -------------------------------------------------------------------------- */

/* Sends outbox entries [lo, hi) as one push; marks answered entries done unless the answers
 * are lost on the way back (the device then re-sends them). */
static void send_chunk(sim *sm, device *d, size_t lo, size_t hi, uint8_t *done, bool lost)
{
    size_t k = hi - lo;
    CHECK(k > 0 && k <= MAX_BATCH);
    fs_error e = {0};
    for (size_t i = 0; i < k; i++) {
        mpr r;
        mpr_init(&r, d->out[lo + i].buf, d->out[lo + i].len);
        CHECK_OK(change_unpack(&r, sm->s, false, &sm->batch[i], &e));
        /* the session knows who is pushing */
        sm->batch[i].device = d->id;
        sm->batch[i].author = d->author;
        sm->batch[i].author_len = (uint32_t)strlen(d->author);
        sm->batch[i].role = (uint8_t)d->role;
    }
    int rc = store_apply_batch(sm->auth, sm->batch, k, &sm->opts, sm->res, &e);
    if (rc)
        fprintf(stderr, "authority apply failed: %s\n", e.msg);
    CHECK_OK(rc);
    for (size_t i = 0; i < k; i++) {
        const apply_result *a = &sm->res[i];
        sm->tot->answers++;
        sm->tot->reviews += a->reviews;
        if (a->status == APPLY_ACCEPTED)
            sm->tot->accepted++;
        else if (a->status == APPLY_DUPLICATE)
            sm->tot->duplicate++;
        else if (a->code == FS_ESEQ_GAP)
            sm->tot->gap++;
        else
            sm->tot->refused++;
        if (sm->verbose) {
            fprintf(sm->log, "  push dev=%d dseq=%llu -> %s%s%s%s\n", d->idx,
                    (unsigned long long)sm->batch[i].dseq,
                    a->status == APPLY_ACCEPTED    ? "accepted"
                    : a->status == APPLY_DUPLICATE ? "duplicate"
                                                   : "refused ",
                    a->status == APPLY_REFUSED ? fs_errname(a->code) : "",
                    a->status == APPLY_REFUSED ? ": " : "",
                    a->status == APPLY_REFUSED ? a->msg : "");
        }
        if (!lost && !(a->status == APPLY_REFUSED && a->code == FS_ESEQ_GAP))
            done[lo + i] = 1;
    }
    if (lost)
        sm->tot->lost++;
}

/* Pushes the outbox until it is empty. perturb: split batches get re-sent, swapped (the later
 * one is refused as a gap and re-sent) or lose their answers, in the first rounds. */
static void push_outbox(sim *sm, device *d, bool perturb)
{
    rng *r = &sm->r;
    for (int round = 0; d->n_out; round++) {
        CHECK(round < 50);
        bool pert = perturb && round < 3;
        size_t n = d->n_out, nch = 0;
        uint8_t *done = calloc(n, 1);
        size_t(*ch)[2] = malloc((n + 1) * sizeof *ch);
        CHECK(done && ch);
        for (size_t i = 0; i < n;) {
            size_t k = 1 + rng_below(r, n - i < 12 ? n - i : 12);
            ch[nch][0] = i;
            ch[nch][1] = i + k;
            nch++;
            i += k;
        }
        if (pert && nch >= 2 && rng_pct(r, 12)) {
            size_t j = rng_below(r, nch - 1), t0 = ch[j][0], t1 = ch[j][1];
            ch[j][0] = ch[j + 1][0];
            ch[j][1] = ch[j + 1][1];
            ch[j + 1][0] = t0;
            ch[j + 1][1] = t1;
        }
        if (pert && rng_pct(r, 12)) { /* the link dropped: one batch goes again */
            size_t j = rng_below(r, nch);
            ch[nch][0] = ch[j][0];
            ch[nch][1] = ch[j][1];
            nch++;
        }
        for (size_t j = 0; j < nch; j++)
            send_chunk(sm, d, ch[j][0], ch[j][1], done, pert && rng_pct(r, 6));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                free(d->out[i].buf);
            else
                d->out[k++] = d->out[i];
        }
        d->n_out = k;
        free(done);
        free(ch);
    }
    /* the device no longer shows pending values for what the authority has answered */
    uint64_t min_pending = d->n_out ? d->out[0].dseq : UINT64_MAX;
    size_t n_view = (size_t)sm->n_rec * (size_t)sm->nm->maxf;
    for (size_t i = 0; i < n_view; i++)
        if (d->view[i].ldseq && d->view[i].ldseq < min_pending)
            d->view[i].lver = d->view[i].ldseq = 0;
}

static int pull_cb(void *ctx, uint64_t seq, const void *body, size_t len, const char *scope)
{
    device *d = ctx;
    sim *sm = d->sm;
    change c;
    mpr r;
    fs_error e = {0};
    mpr_init(&r, body, len);
    int rc = change_unpack(&r, sm->s, true, &c, &e);
    if (rc)
        fprintf(stderr, "log entry %llu does not decode: %s\n", (unsigned long long)seq, e.msg);
    CHECK_OK(rc);
    int ri = rec_find(sm, &c.record);
    CHECK(ri >= 0);
    if (!d->known[ri])
        d->known[ri] = c.hlc;
    CHECK_OK(hlc_recv(&d->clk, c.hlc));
    for (uint32_t i = 0; i < c.n_fields; i++) {
        const schema_field *f = schema_field_by_num(sm->rec[ri].t, c.fields[i].num);
        view_entry *ve = view_of(d, ri, f->num);
        if (c.hlc > ve->cver)
            ve->cver = c.hlc; /* a field's version is the greatest clock applied to it */
        if (!is_ordered(f) && f->kind != KIND_SET)
            continue;
        size_t idx = (size_t)(ve - d->view);
        if (!d->dirty[idx]) {
            d->dirty[idx] = 1;
            d->dirty_list[d->n_dirty++] = (uint32_t)idx;
        }
    }
    return 0;
}

/* Reads the authority's log from the device's cursor in pages, then refreshes the confirmed
 * value of every ordered or set field those changes touched from the authority's state (the
 * merge of exactly the log the device has now read: what its own replica would hold). */
static void pull(sim *sm, device *d)
{
    for (;;) {
        uint64_t last = d->cursor;
        CHECK_OK(store_log_scan(sm->auth, d->cursor, 16 + rng_below(&sm->r, 48), pull_cb, d,
                                &last));
        if (last == d->cursor)
            break;
        d->cursor = last;
    }
    int maxf = sm->nm->maxf;
    for (size_t i = 0; i < d->n_dirty; i++) {
        uint32_t idx = d->dirty_list[i];
        int ri = (int)(idx / (uint32_t)maxf);
        const schema_field *f = &sm->rec[ri].t->fields[idx % (uint32_t)maxf];
        field_state fs;
        int rc = store_field_get(sm->auth, &sm->rec[ri].id, f->num, &fs);
        CHECK(rc == 0 || rc == FS_ENOTFOUND);
        if (rc == 0) {
            view_entry *ve = &d->view[idx];
            CHECK_INT(ve->cver, ==, fs.version);
            if (is_ordered(f))
                ve->cval = fs.value.kind == VAL_INT ? fs.value.u.i : -1;
            else if (f->kind == KIND_SET)
                ve->cval = (int64_t)fs.value.u.set.add;
        }
        field_state_destroy(&fs);
        d->dirty[idx] = 0;
    }
    d->n_dirty = 0;
    if (!d->clk_backup || rng_pct(&sm->r, 30))
        d->clk_backup = d->clk.last;
}

static void sync_device(sim *sm, device *d, bool perturb)
{
    push_outbox(sm, d, perturb);
    pull(sm, d);
}

/* ---- replicas ---------------------------------------------------------------------------- */

typedef struct logcopy {
    uint8_t **body;
    size_t *len;
    size_t n, cap;
} logcopy;

static int collect_cb(void *ctx, uint64_t seq, const void *body, size_t len, const char *scope)
{
    logcopy *lg = ctx;
    if (lg->n == lg->cap) {
        lg->cap = lg->cap ? lg->cap * 2 : 256;
        lg->body = realloc(lg->body, lg->cap * sizeof *lg->body);
        lg->len = realloc(lg->len, lg->cap * sizeof *lg->len);
        CHECK(lg->body && lg->len);
    }
    lg->body[lg->n] = malloc(len ? len : 1);
    CHECK(lg->body[lg->n]);
    memcpy(lg->body[lg->n], body, len);
    lg->len[lg->n] = len;
    lg->n++;
    return 0;
}

static void logcopy_free(logcopy *lg)
{
    for (size_t i = 0; i < lg->n; i++)
        free(lg->body[i]);
    free(lg->body);
    free(lg->len);
    memset(lg, 0, sizeof *lg);
}

static store *replica_open(sim *sm)
{
    store *st = NULL;
    fs_error e = {0};
    int rc = store_open(":memory:", sm->s, STORE_REPLICA, &st, &e);
    if (rc)
        fprintf(stderr, "store_open: %s\n", e.msg);
    CHECK_OK(rc);
    store_clock(st)->wall = sim_wall;
    store_clock(st)->wall_ctx = sm;
    /* the state must not depend on when cached field states reach the table */
    if (rng_pct(&sm->r, 30))
        store_set_flush_threshold(st, (size_t)rng_range(&sm->r, 1, 256));
    flush_chunk_opts(st, &sm->r);
    return st;
}

/* Delivers log[order[0..n)] to st in random batches; every change must be accepted once and
 * reported as a duplicate every further time. Returns 0 or -1 (printed). */
static int deliver(sim *sm, store *st, const char *name, const change *log, const uint32_t *order,
                   size_t n, size_t distinct)
{
    size_t acc = 0, dup = 0;
    fs_error e = {0};
    for (size_t i = 0; i < n;) {
        size_t k = 1 + rng_below(&sm->r, n - i < MAX_BATCH ? n - i : MAX_BATCH);
        for (size_t j = 0; j < k; j++) {
            const change *src = &log[order[i + j]];
            memcpy(&sm->batch[j], src,
                   offsetof(change, fields) + src->n_fields * sizeof(change_field));
        }
        if (store_apply_batch(st, sm->batch, k, NULL, sm->res, &e)) {
            fprintf(sm->log, "  %s: apply failed: %s\n", name, e.msg);
            return -1;
        }
        for (size_t j = 0; j < k; j++) {
            if (sm->res[j].status == APPLY_ACCEPTED) {
                acc++;
            } else if (sm->res[j].status == APPLY_DUPLICATE) {
                dup++;
            } else {
                fprintf(sm->log, "  %s refused an accepted change: %s %s\n    ", name,
                        fs_errname(sm->res[j].code), sm->res[j].msg);
                print_change(sm->log, sm, &sm->batch[j]);
                fprintf(sm->log, "\n");
                return -1;
            }
        }
        if (rng_pct(&sm->r, 3) && store_flush(st, &e)) {
            fprintf(sm->log, "  %s: flush failed: %s\n", name, e.msg);
            return -1;
        }
        i += k;
    }
    sm->tot->replica_applies += n;
    sm->tot->replica_dups += dup;
    if (acc != distinct || dup != n - distinct) {
        fprintf(sm->log, "  %s: %zu accepted and %zu duplicates, want %zu and %zu (exactly-once)\n",
                name, acc, dup, distinct, n - distinct);
        return -1;
    }
    return 0;
}

/* out (room for 2n) receives items shuffled, each repeated with probability dup_pct. */
static size_t make_order(rng *r, const uint32_t *items, size_t n, unsigned dup_pct, uint32_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        out[m++] = items[i];
        if (rng_pct(r, dup_pct))
            out[m++] = items[i];
    }
    for (size_t i = m; i > 1; i--) {
        size_t j = rng_below(r, i);
        uint32_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
    return m;
}

typedef struct replica {
    store *st;
    char name[40];
    uint64_t h[2];   /* store_state_hash */
    uint64_t rh;     /* digest of the records table as a whole (see records_digest) */
} replica;

/* store_state_hash covers records by (id, type) only; a record's scope decides who receives
 * it and which ledger shows it, so the test also compares every column of `records`. */
static uint64_t records_digest(store *st)
{
    sqlite3_stmt *q;
    uint64_t h = 0xcbf29ce484222325ULL;
    CHECK_OK(sqlite3_prepare_v2(store_db(st),
                                "SELECT hex(id) || ' ' || type || ' ' || coalesce(scope, '-') || "
                                "' ' || coalesce(hex(parent), '-') || ' ' || created "
                                "FROM records ORDER BY id",
                                -1, &q, NULL));
    while (sqlite3_step(q) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(q, 0);
        for (; t && *t; t++)
            h = (h ^ *t) * 0x100000001b3ULL;
        h = (h ^ '\n') * 0x100000001b3ULL;
    }
    sqlite3_finalize(q);
    return h;
}

static bool same(const replica *a, const replica *b)
{
    return a->h[0] == b->h[0] && a->h[1] == b->h[1] && a->rh == b->rh;
}

/* Compares stores that have seen the same set of changes (all against the first); on a
 * mismatch prints every hash and the rows that differ. Returns 0 or -1. */
static int compare_group(sim *sm, replica *g, int n, const char *what)
{
    int bad = -1;
    for (int i = 0; i < n; i++) {
        CHECK_OK(store_state_hash(g[i].st, g[i].h));
        g[i].rh = records_digest(g[i].st);
        if (bad < 0 && !same(&g[i], &g[0]))
            bad = i;
    }
    if (bad < 0)
        return 0;
    fprintf(sm->log, "DIVERGENCE: %s\n", what);
    for (int i = 0; i < n; i++)
        fprintf(sm->log, "  %-20s state hash %016llx%016llx records %016llx%s\n", g[i].name,
                (unsigned long long)g[i].h[0], (unsigned long long)g[i].h[1],
                (unsigned long long)g[i].rh, same(&g[i], &g[0]) ? "" : "   <-- differs");
    if (g[bad].h[0] == g[0].h[0] && g[bad].h[1] == g[0].h[1])
        fprintf(sm->log, "  (equal store_state_hash: the difference is in records columns the "
                         "hash does not cover)\n");
    dump_diff(sm, g[0].st, g[0].name, g[bad].st, g[bad].name);
    return -1;
}

static int count_multi_cand(store *st)
{
    /* aux of an ordered field is [M, [cand, ...]]: a fixarray 0x92, then M, then the array
     * header; count rows whose candidate list has 2+ entries (cheap: decode with mpr) */
    sqlite3_stmt *q;
    int n = 0;
    CHECK_OK(store_flush(st, NULL));
    CHECK_OK(sqlite3_prepare_v2(store_db(st), "SELECT aux FROM fields WHERE aux IS NOT NULL",
                                -1, &q, NULL));
    while (sqlite3_step(q) == SQLITE_ROW) {
        mpr r;
        uint32_t k, c;
        uint64_t m;
        mpr_init(&r, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0));
        if (mpr_peek(&r) == MPR_ARRAY && !mpr_array(&r, 2, &k) && k == 2 && !mpr_u64(&r, &m) &&
            !mpr_array(&r, 1u << 20, &c) && c >= 2)
            n++;
    }
    sqlite3_finalize(q);
    return n;
}

typedef struct clockdev {
    uint64_t hlc;
    rid_t dev;
} clockdev;

static int cmp_clockdev(const void *a, const void *b)
{
    const clockdev *x = a, *y = b;
    if (x->hlc != y->hlc)
        return x->hlc < y->hlc ? -1 : 1;
    return rid_cmp(&x->dev, &y->dev);
}

/* Accepted changes sharing a clock value with another one (ties are broken by device id, then
 * by dseq for a device that reissued clock values). */
static void count_hlc_ties(const change *log, size_t n, totals *tot)
{
    clockdev *h = malloc((n ? n : 1) * sizeof *h);
    CHECK(h);
    for (size_t i = 0; i < n; i++) {
        h[i].hlc = log[i].hlc;
        h[i].dev = log[i].device;
    }
    qsort(h, n, sizeof *h, cmp_clockdev);
    for (size_t i = 1; i < n; i++) {
        tot->hlc_ties += h[i].hlc == h[i - 1].hlc;
        tot->hlc_self_ties += h[i].hlc == h[i - 1].hlc && !rid_cmp(&h[i].dev, &h[i - 1].dev);
    }
    free(h);
}

static int check_replicas(sim *sm)
{
    rng *r = &sm->r;
    logcopy lg = {0};
    uint64_t last = 0;
    int fail = -1;
    /* full[0] is the authority, full[1] applies the log in order, full[2..4] shuffled */
    replica full[5], sub[2];
    memset(full, 0, sizeof full);
    memset(sub, 0, sizeof sub);
    CHECK_OK(store_log_scan(sm->auth, 0, SIZE_MAX, collect_cb, &lg, &last));
    size_t n = lg.n;
    change *log = malloc((n ? n : 1) * sizeof *log);
    uint32_t *items = malloc((n ? n : 1) * sizeof *items);
    uint32_t *order = malloc((2 * n + 1) * sizeof *order);
    CHECK(log && items && order);
    for (size_t i = 0; i < n; i++) {
        mpr mr;
        fs_error e = {0};
        mpr_init(&mr, lg.body[i], lg.len[i]);
        int rc = change_unpack(&mr, sm->s, true, &log[i], &e);
        if (rc)
            fprintf(stderr, "log entry %zu does not decode: %s\n", i, e.msg);
        CHECK_OK(rc);
        items[i] = (uint32_t)i;
    }
    sm->tot->log_changes += n;
    count_hlc_ties(log, n, sm->tot);

    full[0].st = sm->auth;
    snprintf(full[0].name, sizeof full[0].name, "authority");
    full[1].st = replica_open(sm);
    snprintf(full[1].name, sizeof full[1].name, "in-order replica");
    if (deliver(sm, full[1].st, full[1].name, log, items, n, n))
        goto out;
    for (int k = 2; k < 5; k++) {
        snprintf(full[k].name, sizeof full[k].name, "shuffled replica %d", k - 1);
        full[k].st = replica_open(sm);
        size_t m = make_order(r, items, n, k == 2 ? 5 : k == 3 ? 10 : 25, order);
        if (deliver(sm, full[k].st, full[k].name, log, order, m, n))
            goto out;
    }
    /* (b) the authority equals the in-order replica; (a) every order and duplication of the
     * full set equals it too */
    if (compare_group(sm, full, 5, "stores that applied the same full set of accepted changes"))
        goto out;
    /* (c) the same random subset in two orders */
    size_t ns = 0;
    unsigned keep = 20 + (unsigned)rng_below(r, 70);
    for (size_t i = 0; i < n; i++)
        if (rng_pct(r, keep))
            items[ns++] = (uint32_t)i;
    sm->tot->subset_changes += ns;
    for (int k = 0; k < 2; k++) {
        snprintf(sub[k].name, sizeof sub[k].name, "subset replica %d", k + 1);
        sub[k].st = replica_open(sm);
        size_t m = make_order(r, items, ns, 15, order);
        if (deliver(sm, sub[k].st, sub[k].name, log, order, m, ns))
            goto out;
    }
    if (compare_group(sm, sub, 2, "stores that applied the same random subset"))
        goto out;
    /* the audit trail is the truth: rebuilding the authority from its log keeps its state */
    {
        uint64_t after[2], last2 = 0;
        fs_error e = {0};
        int rc = store_rebuild(sm->auth, &e);
        if (rc)
            fprintf(stderr, "store_rebuild: %s\n", e.msg);
        CHECK_OK(rc);
        CHECK_OK(store_state_hash(sm->auth, after));
        if (after[0] != full[0].h[0] || after[1] != full[0].h[1] ||
            records_digest(sm->auth) != full[0].rh) {
            fprintf(sm->log, "DIVERGENCE: store_rebuild changed the authority's hash\n");
            dump_diff(sm, full[1].st, "in-order replica (= authority before rebuild)", sm->auth,
                      "authority after rebuild");
            goto out;
        }
        CHECK_OK(store_last_seq(sm->auth, &last2));
        CHECK_INT(last2, ==, last);
    }
    sm->tot->multi_cand += (uint64_t)count_multi_cand(full[1].st);
    fail = 0;
out:
    for (int k = 1; k < 5; k++)
        store_close(full[k].st);
    for (int k = 0; k < 2; k++)
        store_close(sub[k].st);
    free(log);
    free(items);
    free(order);
    logcopy_free(&lg);
    return fail;
}

/* ---- one case ------------------------------------------------------------------------------ */

static void count_refusals(sim *sm)
{
    sqlite3_stmt *q;
    CHECK_OK(sqlite3_prepare_v2(store_db(sm->auth),
                                "SELECT code, count(*) FROM refused GROUP BY code", -1, &q,
                                NULL));
    while (sqlite3_step(q) == SQLITE_ROW) {
        int code = sqlite3_column_int(q, 0);
        if (code < 0 && code > -128)
            sm->tot->refused_by[-code] += (uint64_t)sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
}

/* Runs case case_no of seed; diagnostics go to log. Returns 0, or -1 after printing why to
 * log. A broken invariant of the test itself aborts through CHECK. */
static int run_case(const names *nm, uint64_t seed, uint64_t case_no, totals *tot, bool verbose,
                    FILE *log)
{
    sim *sm = calloc(1, sizeof *sm);
    CHECK(sm);
    sm->s = nm->s;
    sm->nm = nm;
    sm->tot = tot;
    sm->verbose = verbose;
    sm->log = log;
    sm->r.s = mix64(seed) ^ mix64(case_no * 0x2545f4914f6cdd1dULL + 1);
    rng *r = &sm->r;
    sm->now_ms = 1700000000000ULL + rng_below(r, 365ULL * 86400 * 1000);
    fs_error e = {0};
    int rc = store_open(":memory:", sm->s, STORE_AUTHORITY, &sm->auth, &e);
    if (rc)
        fprintf(stderr, "store_open: %s\n", e.msg);
    CHECK_OK(rc);
    store_clock(sm->auth)->wall = sim_wall;
    store_clock(sm->auth)->wall_ctx = sm;
    if (rng_pct(r, 30))
        store_set_flush_threshold(sm->auth, (size_t)rng_range(r, 1, 256));
    flush_chunk_opts(sm->auth, r);
    sm->opts.authorize = authorize_scope;
    sm->opts.ctx = sm;

    /* several devices often share a skew, so equal clocks (ties broken by device id) occur */
    static const int64_t skews[] = {0, 0, 0, -60000, 60000, -300000, 240000, 1500};
    size_t n_view = (size_t)MAX_REC * (size_t)nm->maxf;
    int budget = 0;
    for (int i = 0; i < N_DEV; i++) {
        device *d = &sm->dev[i];
        d->sm = sm;
        d->idx = i;
        rid_make(r, sm->now_ms, &d->id);
        unsigned x = (unsigned)rng_below(r, 100);
        d->role = i == 0   ? nm->supervisor
                  : i == 1 ? nm->visitor
                  : x < 35 ? nm->visitor
                  : x < 65 ? nm->volunteer
                  : x < 90 ? nm->supervisor
                           : nm->admin;
        snprintf(d->author, sizeof d->author, "%s-%d", sm->s->roles[d->role], i);
        d->skew_ms = rng_pct(r, 70) ? skews[rng_below(r, sizeof skews / sizeof skews[0])]
                                    : rng_range(r, -300000, 300000);
        d->villages = (1u << N_VILLAGES) - 1;
        if (i >= 2 && rng_pct(r, 30)) { /* a user with two villages only */
            int a = (int)rng_below(r, N_VILLAGES), b = (a + 1 + (int)rng_below(r, N_VILLAGES - 1)) % N_VILLAGES;
            d->villages = (1u << a) | (1u << b);
        }
        hlc_init(&d->clk, 0);
        d->clk.wall = dev_wall;
        d->clk.wall_ctx = d;
        d->next_dseq = 1;
        d->online = true;
        d->budget = (int)rng_range(r, 20, 80);
        budget += d->budget;
        d->view = calloc(n_view, sizeof *d->view);
        d->dirty = calloc(n_view, 1);
        d->dirty_list = malloc(n_view * sizeof *d->dirty_list);
        CHECK(d->view && d->dirty && d->dirty_list);
    }
    if (verbose)
        for (int i = 0; i < N_DEV; i++)
            fprintf(sm->log, "device %d: %s skew=%lldms villages=%#x budget=%d\n", i,
                    sm->dev[i].author, (long long)sm->dev[i].skew_ms, sm->dev[i].villages,
                    sm->dev[i].budget);

    for (int step = 0; step < budget; step++) {
        device *d;
        do
            d = &sm->dev[rng_below(r, N_DEV)];
        while (d->budget == 0);
        unsigned x = (unsigned)rng_below(r, 100);
        sm->now_ms += x < 8 ? 0 : x < 75 ? rng_below(r, 2000) : x < 96 ? rng_below(r, 60000)
                                                                      : rng_below(r, 3600000);
        if (d->online && rng_pct(r, 12)) {
            d->online = false;
            d->offline_left = (int)rng_range(r, 3, 25);
        } else if (!d->online && --d->offline_left <= 0) {
            d->online = true;
            sync_device(sm, d, true);
        }
        if (d->clk_backup && rng_pct(r, 1)) {
            /* the device is restored from an old backup of its clock and its wall clock is
             * set back a little: it reissues clock values (same device, new dseq) */
            d->clk.last = d->clk_backup;
            d->skew_ms -= rng_range(r, 0, 120000);
            if (d->skew_ms < -300000)
                d->skew_ms = -300000;
        }
        make_change(sm, d);
        d->budget--;
        if (d->online && rng_pct(r, 30))
            sync_device(sm, d, true);
    }
    /* everyone comes back online and drains its outbox */
    for (int i = 0; i < N_DEV; i++) {
        sm->now_ms += rng_below(r, 10000);
        sync_device(sm, &sm->dev[i], false);
    }
    for (int i = 0; i < N_DEV; i++) {
        device *d = &sm->dev[i];
        uint64_t consumed = 0;
        CHECK_INT(d->n_out, ==, 0);
        CHECK_OK(store_device_seq(sm->auth, &d->id, &consumed));
        CHECK_INT(consumed, ==, d->next_dseq - 1);
    }
    count_refusals(sm);
    int fail = check_replicas(sm);
    tot->cases++;

    for (int i = 0; i < N_DEV; i++) {
        device *d = &sm->dev[i];
        for (size_t j = 0; j < d->n_out; j++)
            free(d->out[j].buf);
        free(d->out);
        free(d->view);
        free(d->dirty);
        free(d->dirty_list);
    }
    for (int i = 0; i < sm->n_rec; i++)
        free(sm->rec[i].create);
    store_close(sm->auth);
    free(sm);
    return fail;
}

/* ---- main ---------------------------------------------------------------------------------- */

/* Cases are independent (own stores, own random stream), so workers take them from a shared
 * counter; a case's result does not depend on which worker ran it. */
typedef struct runner {
    const names *nm;
    uint64_t seed;
    long next, end;
    bool verbose;
    const char *argv0;
    pthread_mutex_t mu;
    long failed;             /* a failed case, or -1 */
    totals tot;
} runner;

/* A failed CHECK aborts in the worker running the case: say which seed and case first. */
static _Thread_local char tl_fail[600];
static _Thread_local size_t tl_fail_len;

static void on_abort(int sig)
{
    if (tl_fail_len && write(STDERR_FILENO, tl_fail, tl_fail_len) < 0) {
        /* nothing more can be done */
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void totals_add(totals *a, const totals *b)
{
    a->cases += b->cases;
    a->generated += b->generated;
    a->answers += b->answers;
    a->accepted += b->accepted;
    a->duplicate += b->duplicate;
    a->refused += b->refused;
    a->gap += b->gap;
    a->lost += b->lost;
    for (int i = 0; i < 128; i++)
        a->refused_by[i] += b->refused_by[i];
    a->reviews += b->reviews;
    a->log_changes += b->log_changes;
    a->replica_applies += b->replica_applies;
    a->replica_dups += b->replica_dups;
    a->subset_changes += b->subset_changes;
    a->multi_cand += b->multi_cand;
    a->hlc_ties += b->hlc_ties;
    a->hlc_self_ties += b->hlc_self_ties;
}

static void *worker(void *arg)
{
    runner *R = arg;
    totals tot;
    memset(&tot, 0, sizeof tot);
    for (;;) {
        pthread_mutex_lock(&R->mu);
        long k = R->failed >= 0 ? R->end : R->next++;
        pthread_mutex_unlock(&R->mu);
        if (k >= R->end)
            break;
        int n = snprintf(tl_fail, sizeof tl_fail,
                         "FAILED seed=%llu case=%ld\nreproduce: FIELDSYNC_SCHEMA=%s %s --seed "
                         "%llu --case %ld --verbose\n",
                         (unsigned long long)R->seed, k, schema_default_path(), R->argv0,
                         (unsigned long long)R->seed, k);
        tl_fail_len = n < 0 ? 0 : (size_t)n >= sizeof tl_fail ? sizeof tl_fail - 1 : (size_t)n;
        char *buf = NULL;
        size_t len = 0;
        FILE *log = R->verbose ? stderr : open_memstream(&buf, &len);
        CHECK(log);
        int rc = run_case(R->nm, R->seed, (uint64_t)k, &tot, R->verbose, log);
        if (log != stderr)
            fclose(log);
        if (rc) {
            pthread_mutex_lock(&R->mu);
            if (buf)
                fwrite(buf, 1, len, stderr);
            fputs(tl_fail, stderr);
            if (R->failed < 0 || k < R->failed)
                R->failed = k;
            pthread_mutex_unlock(&R->mu);
        }
        free(buf);
    }
    tl_fail_len = 0;
    pthread_mutex_lock(&R->mu);
    totals_add(&R->tot, &tot);
    pthread_mutex_unlock(&R->mu);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--seed N] [--cases N] [--case K] [--jobs N] [--flush-chunk N] "
            "[--verbose]\n"
            "  --cases N  cases 0..N-1 (default 2000, 300 when FS_SANITIZED is set)\n"
            "  --case K   only case K (what a failure asks you to re-run)\n"
            "  --jobs N   worker threads (default: 2, or 1 on a single CPU)\n"
            "  --flush-chunk N  every store flushes N states per commit from a few dirty\n"
            "             states on (default: a tiny chunk in a case of five)\n"
            "  --verbose  print every change and push answer (forces --jobs 1)\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    seed %= 1000000000000ULL; /* short enough to type */
    long cases = getenv("FS_SANITIZED") ? 300 : 2000, only = -1;
    long jobs = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 2 : 1;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], &end, 10);
            if (*end)
                return usage(argv[0]);
        } else if (!strcmp(argv[i], "--cases") && i + 1 < argc) {
            cases = strtol(argv[++i], &end, 10);
            if (*end || cases < 1)
                return usage(argv[0]);
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            only = strtol(argv[++i], &end, 10);
            if (*end || only < 0)
                return usage(argv[0]);
        } else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) {
            jobs = strtol(argv[++i], &end, 10);
            if (*end || jobs < 1 || jobs > 64)
                return usage(argv[0]);
        } else if (!strcmp(argv[i], "--flush-chunk") && i + 1 < argc) {
            opt_flush_chunk = strtol(argv[++i], &end, 10);
            if (*end || opt_flush_chunk < 1)
                return usage(argv[0]);
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else {
            return usage(argv[0]);
        }
    }
    if (verbose || only >= 0)
        jobs = 1;
    printf("prop_converge: seed=%llu cases=%ld jobs=%ld%s\n", (unsigned long long)seed,
           only >= 0 ? 1 : cases, jobs, getenv("FS_SANITIZED") ? " (sanitized build)" : "");
    fflush(stdout);

    schema *s = NULL;
    fs_error e = {0};
    int rc = schema_load(schema_default_path(), &s, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    CHECK_OK(rc);
    runner *R = calloc(1, sizeof *R);
    names *nm = malloc(sizeof *nm);
    CHECK(R && nm);
    names_init(nm, s);
    R->nm = nm;
    R->seed = seed;
    R->next = only >= 0 ? only : 0;
    R->end = only >= 0 ? only + 1 : cases;
    R->verbose = verbose;
    R->argv0 = argv[0];
    R->failed = -1;
    CHECK_OK(pthread_mutex_init(&R->mu, NULL));
    signal(SIGABRT, on_abort);

    double t0 = now_s();
    pthread_t th[64];
    for (long j = 0; j < jobs; j++)
        CHECK_OK(pthread_create(&th[j], NULL, worker, R));
    for (long j = 0; j < jobs; j++)
        CHECK_OK(pthread_join(th[j], NULL));
    double el = now_s() - t0;

    const totals *t = &R->tot;
    bool failed = R->failed >= 0;
    printf("prop_converge: %llu cases in %.2f s on %ld threads (%.2f ms/case)%s\n",
           (unsigned long long)t->cases, el, jobs,
           t->cases ? el * 1000 * (double)jobs / (double)t->cases : 0.0,
           failed ? " -- FAILED" : "");
    printf("  changes generated %llu; push answers %llu: accepted %llu, duplicate %llu, "
           "refused %llu, gap (re-sent later) %llu; batches whose answers were lost %llu\n",
           (unsigned long long)t->generated, (unsigned long long)t->answers,
           (unsigned long long)t->accepted, (unsigned long long)t->duplicate,
           (unsigned long long)t->refused, (unsigned long long)t->gap,
           (unsigned long long)t->lost);
    printf("  distinct refusals:");
    for (int c = 1; c < 128; c++)
        if (t->refused_by[c])
            printf(" %s=%llu", fs_errname(-c), (unsigned long long)t->refused_by[c]);
    printf("\n  review items opened %llu; ordered fields left with 2+ concurrent candidates "
           "%llu\n  accepted changes sharing a clock value %llu (same device, restored clock: "
           "%llu)\n",
           (unsigned long long)t->reviews, (unsigned long long)t->multi_cand,
           (unsigned long long)t->hlc_ties, (unsigned long long)t->hlc_self_ties);
    printf("  replicas: %llu log changes delivered %llu times (%llu duplicates); subsets "
           "%llu changes\n",
           (unsigned long long)t->log_changes, (unsigned long long)t->replica_applies,
           (unsigned long long)t->replica_dups, (unsigned long long)t->subset_changes);
    if (failed)
        printf("FAILED seed=%llu case=%ld\n", (unsigned long long)seed, R->failed);
    fflush(stdout);
    if (!failed) {
        /* the run must not pass vacuously */
        CHECK(t->accepted > 0);
        if (only < 0) {
            CHECK(t->refused > 0);
            CHECK(t->reviews > 0);
        }
    }
    pthread_mutex_destroy(&R->mu);
    free(R);
    free(nm);
    schema_free(s);
    return failed ? 1 : 0;
}

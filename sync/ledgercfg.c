/*
 * ledgercfg.c — loads schema/ledger.yaml (docs/supervisor.md §3) with libyaml's document
 * API, like schema.c loads the record schema (the two share yamlutil.c), resolves every name
 * in it against the loaded schema, and holds the overdue rule (ledgercfg.h) that the server's
 * ledger and the device's overdue list both apply.
 *
 * Strict on purpose: an unknown key, a field of the wrong kind, a report status that is
 * neither closed nor given a deadline — each stops the server at start with "file:line:
 * reason", because a ledger that silently ignores a typo would show a supervisor wrong
 * figures (底数不清) without anyone noticing. The device (ledger_config_load_visits) gets the
 * same checks on what it reads, but does not need the sections it never uses. It runs once
 * per start or per query on a small file; clarity beats speed.
 */
#include "ledgercfg.h"
#include "yamlutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

typedef struct loader {
    yamlutil_doc y; /* the parsed file, its name and the error to fill (sync/yamlutil.h) */
    ledger_cfg *c;
    bool visits_only; /* ledger_config_load_visits: version, reports, assessments optional */
} loader;

/* Every complaint is "file:line: reason" and FS_ESCHEMA (yamlutil_fail). */
#define fail(L, n, ...) yamlutil_fail(&(L)->y, (n), __VA_ARGS__)
#define node(L, id) yamlutil_node(&(L)->y, (id))
#define scalar(n) yamlutil_scalar(n)
#define dupstr(s) yamlutil_dupstr(s)

/* Counts and hours are int32_t here; the message is this file's own wording. */
static int get_int(loader *L, yaml_node_t *v, long lo, long hi, int32_t *out)
{
    int64_t x;
    int rc = yamlutil_int(&L->y, v, lo, hi, "expected a whole number", &x);
    if (!rc)
        *out = (int32_t)x;
    return rc;
}

/* A mapping's pairs, checked against the allowed keys; calls fn for each. */
typedef int (*pair_fn)(loader *L, const char *key, yaml_node_t *k, yaml_node_t *v, void *ctx);

static int each_pair(loader *L, yaml_node_t *m, const char *what, const char *const *keys,
                     pair_fn fn, void *ctx)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return fail(L, m, "%s must be a mapping", what);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
        const char *ks = scalar(k);
        if (!ks)
            return fail(L, k, "keys must be text");
        bool known = false;
        for (const char *const *x = keys; *x && !known; x++)
            known = !strcmp(*x, ks);
        if (!known) {
            char list[200] = "";
            for (const char *const *x = keys; *x; x++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         x == keys ? "" : ", ", *x);
            return fail(L, k, "unknown key '%s' in %s (known: %s)", ks, what, list);
        }
        int rc = fn(L, ks, k, v, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

static int get_type(loader *L, yaml_node_t *v, const schema_type **out)
{
    const char *s = scalar(v);
    const schema_type *t = s ? schema_type_by_name(L->c->s, s) : NULL;
    if (!t)
        return fail(L, v, "no record type '%s' in %s", s ? s : "?", L->c->s->path);
    *out = t;
    return 0;
}

/* A field of t, optionally of one of the given kinds (mask of 1 << field_kind; 0 = any). */
static int get_field(loader *L, yaml_node_t *v, const schema_type *t, unsigned kinds,
                     const char *want, const schema_field **out)
{
    const char *s = scalar(v);
    if (!t)
        return fail(L, v, "give the type before its fields");
    const schema_field *f = s ? schema_field_by_name(t, s) : NULL;
    if (!f)
        return fail(L, v, "type '%s' has no field '%s'", t->name, s ? s : "?");
    if (kinds && !(kinds & (1u << f->kind)))
        return fail(L, v, "field %s.%s is %s; it must be %s", t->name, f->name,
                    schema_kind_name(f->kind), want);
    *out = f;
    return 0;
}

static int enum_code(loader *L, yaml_node_t *v, const schema_field *f, int *out)
{
    const char *s = scalar(v);
    int i = s ? schema_enum_by_code(f, s) : -1;
    if (i < 0)
        return fail(L, v, "'%s' is not a value of %s", s ? s : "?", f->name);
    *out = i;
    return 0;
}

static int enum_list(loader *L, yaml_node_t *v, const schema_field *f, uint64_t *mask)
{
    if (!f)
        return fail(L, v, "give the field before its values");
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(L, v, "expected a list of %s values", f->name);
    *mask = 0;
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        int x, rc = enum_code(L, node(L, *i), f, &x);
        if (rc)
            return rc;
        *mask |= 1ull << x;
    }
    return 0;
}

static int get_label(loader *L, yaml_node_t *v, char **zh, char **en)
{
    return yamlutil_label(&L->y, v, "label entries are zh: TEXT and en: TEXT", zh, en);
}

#define K(kind) (1u << (kind))

/* ---- subject ----------------------------------------------------------------------- */

static int add_count(loader *L, yaml_node_t *at, const schema_field *f, int value,
                     const char *lzh, const char *len_, bool grouped)
{
    ledger_cfg *c = L->c;
    if (c->n_counts == LEDGER_MAX_COUNTS)
        return fail(L, at, "at most %d count columns", LEDGER_MAX_COUNTS);
    ledger_count *k = &c->counts[c->n_counts++];
    k->f = f;
    k->value = value;
    if (value >= 0)
        snprintf(k->key, sizeof k->key, "%s:%s", f->name, f->values[value].code);
    else
        snprintf(k->key, sizeof k->key, "%s", f->name);
    k->label_zh = dupstr(lzh ? lzh : f->label_zh ? f->label_zh : f->name);
    k->label_en = dupstr(len_ ? len_ : f->label_en ? f->label_en : f->name);
    if (grouped) {
        k->group_zh = dupstr(f->label_zh ? f->label_zh : f->name);
        k->group_en = dupstr(f->label_en ? f->label_en : f->name);
        if (!k->group_zh || !k->group_en)
            return FS_ENOMEM;
    }
    return k->label_zh && k->label_en ? 0 : FS_ENOMEM;
}

typedef struct count_spec {
    const schema_field *f;
    bool each;
    yaml_node_t *value, *label;
} count_spec;

static int count_pair(loader *L, const char *ks, yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    count_spec *cs = ctx;
    if (!strcmp(ks, "field"))
        return get_field(L, v, L->c->subject, K(KIND_ENUM) | K(KIND_BOOL), "enum or bool",
                         &cs->f);
    if (!strcmp(ks, "each_value")) {
        const char *s = scalar(v);
        if (!s || (strcmp(s, "true") && strcmp(s, "false")))
            return fail(L, v, "each_value is true or false");
        cs->each = !strcmp(s, "true");
        return 0;
    }
    if (!strcmp(ks, "value"))
        cs->value = v;
    else
        cs->label = v;
    (void)k;
    return 0;
}

static int load_counts(loader *L, yaml_node_t *v)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(L, v, "counts must be a list of {field: ...}");
    static const char *const keys[] = {"field", "each_value", "value", "label", NULL};
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        yaml_node_t *e = node(L, *i);
        count_spec cs = {0};
        int rc = each_pair(L, e, "a count", keys, count_pair, &cs);
        if (rc)
            return rc;
        if (!cs.f)
            return fail(L, e, "a count needs field: NAME");
        char *lzh = NULL, *len_ = NULL;
        if (cs.label && (rc = get_label(L, cs.label, &lzh, &len_))) {
            free(lzh);
            free(len_);
            return rc;
        }
        if (cs.each) {
            if (cs.f->kind != KIND_ENUM || cs.value || cs.label)
                rc = fail(L, e, "each_value is for an enum field, without value or label");
            for (uint32_t x = 0; !rc && x < cs.f->n_values; x++)
                rc = add_count(L, e, cs.f, (int)x, cs.f->values[x].zh, cs.f->values[x].en, true);
        } else if (cs.value) {
            int x = -1;
            if (cs.f->kind != KIND_ENUM)
                rc = fail(L, cs.value, "value: is for an enum field; %s is bool", cs.f->name);
            if (!rc)
                rc = enum_code(L, cs.value, cs.f, &x);
            if (!rc)
                rc = add_count(L, e, cs.f, x, lzh ? lzh : cs.f->values[x].zh,
                               len_ ? len_ : cs.f->values[x].en, false);
        } else if (cs.f->kind != KIND_BOOL) {
            rc = fail(L, e, "count of enum %s: give value: CODE or each_value: true",
                      cs.f->name);
        } else {
            rc = add_count(L, e, cs.f, -1, lzh, len_, false);
        }
        free(lzh);
        free(len_);
        if (rc)
            return rc;
    }
    return 0;
}

static int subject_pair(loader *L, const char *ks, yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    ledger_cfg *c = L->c;
    yaml_node_t **later = ctx; /* [0] on_file, [1] counts, [2] columns: need the type first */
    (void)k;
    if (!strcmp(ks, "type"))
        return get_type(L, v, &c->subject);
    if (!strcmp(ks, "name"))
        return get_field(L, v, c->subject, K(KIND_TEXT), "text", &c->s_name);
    if (!strcmp(ks, "village"))
        return get_field(L, v, c->subject, K(KIND_SCOPE), "the type's scope field",
                         &c->s_village);
    if (!strcmp(ks, "status"))
        return get_field(L, v, c->subject, K(KIND_ENUM), "enum", &c->s_status);
    if (!strcmp(ks, "risk"))
        return get_field(L, v, c->subject, K(KIND_ENUM), "enum", &c->s_risk);
    if (!strcmp(ks, "on_file"))
        later[0] = v;
    else if (!strcmp(ks, "counts"))
        later[1] = v;
    else
        later[2] = v;
    return 0;
}

static int load_subject(loader *L, yaml_node_t *v)
{
    ledger_cfg *c = L->c;
    static const char *const keys[] = {"type", "name", "village", "status", "on_file", "risk",
                                       "columns", "counts", NULL};
    yaml_node_t *later[3] = {NULL, NULL, NULL};
    int rc = each_pair(L, v, "subject", keys, subject_pair, later);
    if (rc)
        return rc;
    if (!c->subject || !c->s_name || !c->s_village || !c->s_status || !c->s_risk)
        return fail(L, v, "subject needs type, name, village, status and risk");
    if (!later[0])
        return fail(L, v, "subject needs on_file: [status values counted as on file]");
    if ((rc = enum_list(L, later[0], c->s_status, &c->on_file)))
        return rc;
    if (later[2]) {
        if (later[2]->type != YAML_SEQUENCE_NODE)
            return fail(L, later[2], "columns must be a list of field names");
        for (yaml_node_item_t *i = later[2]->data.sequence.items.start;
             i < later[2]->data.sequence.items.top; i++) {
            if (c->n_columns == LEDGER_MAX_COLUMNS)
                return fail(L, node(L, *i), "at most %d columns", LEDGER_MAX_COLUMNS);
            if ((rc = get_field(L, node(L, *i), c->subject, 0, NULL,
                                &c->columns[c->n_columns])))
                return rc;
            c->n_columns++;
        }
    }
    if (later[1] && (rc = load_counts(L, later[1])))
        return rc;
    return 0;
}

/* ---- visits, reports, assessments -------------------------------------------------- */

/* The reference of type t to the subject. */
static int get_subject_ref(loader *L, yaml_node_t *v, const schema_type *t,
                           const schema_field **out)
{
    int rc = get_field(L, v, t, K(KIND_REF), "a reference", out);
    if (!rc && (*out)->ref_type != L->c->subject->id)
        rc = fail(L, v, "%s.%s refers to %s records, not to the subject (%s)", t->name,
                  (*out)->name, L->c->s->by_id[(*out)->ref_type]->name, L->c->subject->name);
    return rc;
}

static int per_value(loader *L, yaml_node_t *v, const schema_field *f, long lo, long hi,
                     int32_t *out, uint64_t *given)
{
    if (!f)
        return fail(L, v, "give the field first");
    if (v->type != YAML_MAPPING_NODE)
        return fail(L, v, "expected a mapping {%s value: number}", f->name);
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        int x, rc = enum_code(L, node(L, p->key), f, &x);
        if (!rc)
            rc = get_int(L, node(L, p->value), lo, hi, &out[x]);
        if (rc)
            return rc;
        if (given)
            *given |= 1ull << x;
    }
    return 0;
}

typedef struct later_nodes {
    yaml_node_t *a, *b;
} later_nodes;

static int visits_pair(loader *L, const char *ks, yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    ledger_cfg *c = L->c;
    later_nodes *ln = ctx;
    (void)k;
    if (!strcmp(ks, "type"))
        return get_type(L, v, &c->visit);
    if (!strcmp(ks, "subject"))
        return get_subject_ref(L, v, c->visit, &c->v_subject);
    if (!strcmp(ks, "time"))
        return get_field(L, v, c->visit, K(KIND_TIME) | K(KIND_DATE), "time or date",
                         &c->v_time);
    if (!strcmp(ks, "visitor"))
        return get_field(L, v, c->visit, K(KIND_TEXT), "text", &c->v_visitor);
    if (!strcmp(ks, "default_days"))
        return get_int(L, v, 1, 3650, &c->default_days);
    ln->a = v; /* overdue_days: needs subject.risk, resolved after */
    return 0;
}

static int reports_pair(loader *L, const char *ks, yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    ledger_cfg *c = L->c;
    later_nodes *ln = ctx;
    (void)k;
    if (!strcmp(ks, "type"))
        return get_type(L, v, &c->report);
    if (!strcmp(ks, "subject"))
        return get_subject_ref(L, v, c->report, &c->r_subject);
    if (!strcmp(ks, "category"))
        return get_field(L, v, c->report, K(KIND_ENUM), "enum", &c->r_category);
    if (!strcmp(ks, "status"))
        return get_field(L, v, c->report, K(KIND_ENUM), "enum", &c->r_status);
    if (!strcmp(ks, "time"))
        return get_field(L, v, c->report, K(KIND_TIME) | K(KIND_DATE), "time or date",
                         &c->r_time);
    if (!strcmp(ks, "closed"))
        ln->a = v;
    else
        ln->b = v; /* deadline_hours */
    return 0;
}

static int assess_pair(loader *L, const char *ks, yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    ledger_cfg *c = L->c;
    (void)k;
    (void)ctx;
    if (!strcmp(ks, "type"))
        return get_type(L, v, &c->assessment);
    if (!strcmp(ks, "subject"))
        return get_subject_ref(L, v, c->assessment, &c->a_subject);
    return get_field(L, v, c->assessment, K(KIND_TIME) | K(KIND_DATE), "time or date",
                     &c->a_time);
}

static int root_pair(loader *L, const char *ks, yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    ledger_cfg *c = L->c;
    yaml_node_t **sections = ctx;
    (void)k;
    if (!strcmp(ks, "ledger")) {
        const char *s = scalar(v);
        if (!s || strcmp(s, "1"))
            return fail(L, v, "ledger: must be 1 (the format version of this file)");
        sections[4] = v;
        return 0;
    }
    (void)c;
    static const char *const order[] = {"subject", "visits", "reports", "assessments"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(ks, order[i]))
            sections[i] = v;
    return 0;
}

static int load_reports(loader *L, yaml_node_t *v)
{
    ledger_cfg *c = L->c;
    later_nodes ln = {0};
    int rc;
    static const char *const rkeys[] = {"type", "subject", "category", "status", "time",
                                        "closed", "deadline_hours", NULL};
    if ((rc = each_pair(L, v, "reports", rkeys, reports_pair, &ln)))
        return rc;
    if (!c->report || !c->r_subject || !c->r_category || !c->r_status || !c->r_time ||
        !ln.a || !ln.b)
        return fail(L, v,
                    "reports needs type, subject, category, status, time, closed and "
                    "deadline_hours");
    uint64_t with_deadline = 0;
    if ((rc = enum_list(L, ln.a, c->r_status, &c->closed)) ||
        (rc = per_value(L, ln.b, c->r_status, 1, 24 * 3650, c->deadline_hours, &with_deadline)))
        return rc;
    for (uint32_t x = 0; x < c->r_status->n_values; x++) {
        bool cl = c->closed >> x & 1, dl = with_deadline >> x & 1;
        if (cl == dl)
            return fail(L, ln.b, "report status '%s' must be %s", c->r_status->values[x].code,
                        cl ? "closed or have a deadline, not both"
                           : "listed in closed or given deadline hours");
    }
    return 0;
}

static int load_assessments(loader *L, yaml_node_t *v)
{
    ledger_cfg *c = L->c;
    int rc;
    static const char *const akeys[] = {"type", "subject", "time", NULL};
    if ((rc = each_pair(L, v, "assessments", akeys, assess_pair, NULL)))
        return rc;
    if (!c->assessment || !c->a_subject)
        return fail(L, v, "assessments needs type and subject");
    return 0;
}

static int load_root(loader *L, yaml_node_t *root)
{
    ledger_cfg *c = L->c;
    static const char *const keys[] = {"ledger", "subject", "visits", "reports", "assessments",
                                       NULL};
    yaml_node_t *sec[5] = {NULL, NULL, NULL, NULL, NULL};
    int rc = each_pair(L, root, "the file", keys, root_pair, sec);
    if (rc)
        return rc;
    if (!sec[4] && !L->visits_only)
        return fail(L, root, "missing 'ledger: 1'");
    for (int i = 0; i < (L->visits_only ? 2 : 4); i++)
        if (!sec[i])
            return fail(L, root, "missing section '%s'", keys[i + 1]);
    if ((rc = load_subject(L, sec[0])))
        return rc;

    static const char *const vkeys[] = {"type", "subject", "time", "visitor", "overdue_days",
                                        "default_days", NULL};
    later_nodes ln = {0};
    if ((rc = each_pair(L, sec[1], "visits", vkeys, visits_pair, &ln)))
        return rc;
    if (!c->visit || !c->v_subject || !c->v_time || !c->default_days)
        return fail(L, sec[1], "visits needs type, subject, time and default_days");
    if (ln.a && (rc = per_value(L, ln.a, c->s_risk, 1, 3650, c->overdue_days, NULL)))
        return rc;

    /* reports and assessments are missing only when visits_only (checked above) */
    if (sec[2] && (rc = load_reports(L, sec[2])))
        return rc;
    if (sec[3] && (rc = load_assessments(L, sec[3])))
        return rc;
    return 0;
}

/* ---- entry points ------------------------------------------------------------------ */

void ledger_config_free(ledger_cfg *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->n_counts; i++) {
        free(c->counts[i].label_zh);
        free(c->counts[i].label_en);
        free(c->counts[i].group_zh);
        free(c->counts[i].group_en);
    }
    free(c->path);
    free(c);
}

static int config_load(const char *path, const schema *s, bool visits_only, ledger_cfg **out,
                       fs_error *e)
{
    loader L = {.c = NULL, .visits_only = visits_only};
    *out = NULL;
    int rc = yamlutil_load_file(&L.y, path, e);
    if (rc)
        return rc;
    L.c = calloc(1, sizeof *L.c);
    if (!L.c || !(L.c->path = dupstr(path))) {
        rc = FS_ENOMEM;
    } else {
        L.c->s = s;
        rc = load_root(&L, yaml_document_get_root_node(&L.y.doc));
    }
    if (yamlutil_done(&L.y, rc)) {
        ledger_config_free(L.c);
        return rc;
    }
    *out = L.c;
    return 0;
}

int ledger_config_load(const char *path, const schema *s, ledger_cfg **out, fs_error *e)
{
    return config_load(path, s, false, out, e);
}

int ledger_config_load_visits(const char *path, const schema *s, ledger_cfg **out,
                              fs_error *e)
{
    return config_load(path, s, true, out, e);
}

const char *ledger_default_path(const char *schema_path)
{
    static char buf[4096];
    const char *env = getenv("FIELDSYNC_LEDGER");
    if (env && *env)
        return env;
    const char *slash = strrchr(schema_path, '/');
    if (slash)
        snprintf(buf, sizeof buf, "%.*s/ledger.yaml", (int)(slash - schema_path), schema_path);
    else
        snprintf(buf, sizeof buf, "ledger.yaml");
    return buf;
}

/* ---- the overdue rule -------------------------------------------------------------- */

#define DAY_MS (86400LL * 1000)

bool ledger_on_file(const ledger_cfg *c, int status)
{
    return status < 0 || (status < 64 && (c->on_file >> status & 1));
}

int32_t ledger_interval_days(const ledger_cfg *c, int risk)
{
    return risk >= 0 && risk < SCHEMA_MAX_ENUM && c->overdue_days[risk] ? c->overdue_days[risk]
                                                                        : c->default_days;
}

int64_t ledger_due_ms(int32_t interval_days, int64_t last_visit_ms, int64_t since_ms)
{
    return (last_visit_ms ? last_visit_ms : since_ms) + (int64_t)interval_days * DAY_MS;
}

int64_t ledger_time_ms(const schema_field *f, int64_t x)
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

/*
 * schema.c — loads schema/fieldsync.yaml with libyaml's document API.
 *
 * libyaml keeps the line of every node (start_mark), so each complaint names the line of the
 * offending key or value. The loader is strict: unknown keys are errors (a typo such as
 * "requried" would otherwise silently do nothing), names must be identifiers, numbers unique,
 * and each rule must suit its kind. It runs once at start-up, so clarity beats speed here.
 * The libyaml plumbing it shares with sync/ledgercfg.c (parsing, the complaint, integer
 * and label readers) is in yamlutil.c.
 */
#include "schema.h"
#include "yamlutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct loader {
    yamlutil_doc y; /* the parsed file, its name and the error to fill (yamlutil.h) */
    schema *s;
} loader;

/* Every complaint is "file:line: reason" and FS_ESCHEMA (yamlutil_fail). */
#define fail(L, n, ...) yamlutil_fail(&(L)->y, (n), __VA_ARGS__)
#define node(L, id) yamlutil_node(&(L)->y, (id))
#define scalar(n) yamlutil_scalar(n)
#define dupstr(s) yamlutil_dupstr(s)

static bool is_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 31 || !islower((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

static int get_int(loader *L, yaml_node_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    return yamlutil_int(&L->y, v, lo, hi, NULL, out);
}

static int get_bool(loader *L, yaml_node_t *v, bool *out)
{
    const char *s = scalar(v);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes"))) {
        *out = true;
        return 0;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "no"))) {
        *out = false;
        return 0;
    }
    return fail(L, v, "expected true or false");
}

/* label: {zh: ..., en: ...} */
static int get_label(loader *L, yaml_node_t *v, char **zh, char **en)
{
    return yamlutil_label(&L->y, v, NULL, zh, en);
}

static int get_roles(loader *L, yaml_node_t *v, uint32_t *mask)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(L, v, "expected a list of roles");
    *mask = 0;
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        yaml_node_t *r = node(L, *i);
        int idx = scalar(r) ? schema_role_by_name(L->s, scalar(r)) : -1;
        if (idx < 0)
            return fail(L, r, "unknown role '%s'", scalar(r) ? scalar(r) : "?");
        *mask |= 1u << idx;
    }
    return 0;
}

static int get_roles(loader *L, yaml_node_t *v, uint32_t *mask);

static int get_values(loader *L, yaml_node_t *v, schema_field *f)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(L, v, "values must be a list");
    if (f->values)
        return fail(L, v, "values given twice");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n < 1 || n > SCHEMA_MAX_ENUM)
        return fail(L, v, "an enum needs 1..%d values, found %zu", SCHEMA_MAX_ENUM, n);
    f->values = calloc(n, sizeof *f->values);
    if (!f->values)
        return FS_ENOMEM;
    f->n_values = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = node(L, v->data.sequence.items.start[i]);
        enum_value *ev = &f->values[i];
        if (scalar(e)) {
            ev->code = dupstr(scalar(e));
        } else if (e->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
                 p++) {
                yaml_node_t *k = node(L, p->key), *x = node(L, p->value);
                const char *ks = scalar(k), *xs = scalar(x);
                if (!ks || (!xs && strcmp(ks, "roles")))
                    return fail(L, k, "enum value entries must be text");
                if (!strcmp(ks, "roles")) {
                    int rc = get_roles(L, x, &ev->roles);
                    if (rc)
                        return rc;
                    continue;
                }
                if (!strcmp(ks, "since")) {
                    int64_t sv;
                    int rc = get_int(L, x, 1, L->s->version ? L->s->version : 65535, &sv);
                    if (rc)
                        return rc;
                    ev->since = (int)sv;
                    continue;
                }
                char **dst = !strcmp(ks, "code") ? &ev->code
                             : !strcmp(ks, "zh") ? &ev->zh
                             : !strcmp(ks, "en") ? &ev->en
                                                 : NULL;
                if (!dst)
                    return fail(L, k, "unknown key '%s' in enum value (code, zh, en, roles)", ks);
                free(*dst);
                if (!(*dst = dupstr(xs)))
                    return FS_ENOMEM;
            }
        } else {
            return fail(L, e, "an enum value is a code or {code, zh, en}");
        }
        if (!ev->code || !is_ident(ev->code))
            return fail(L, e, "enum value needs a code like 'both_parents_away'");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(f->values[j].code, ev->code))
                return fail(L, e, "enum value '%s' listed twice", ev->code);
    }
    return 0;
}

static const char *const kind_names[] = {"text", "int", "date", "time", "enum",
                                         "bool", "ref", "set", "scope"};
static const char *const rule_names[] = {"lww", "review", "escalate", "workflow", "set",
                                         "immutable"};

const char *schema_kind_name(field_kind k) { return kind_names[k]; }
const char *schema_rule_name(field_rule r) { return rule_names[r]; }

static int lookup_name(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

/* Second pass needs type names for refs, so keep the ref name until all types are read. */
typedef struct pending_ref {
    schema_field *f;
    char *name;
    yaml_node_t *at;
} pending_ref;

static int load_field(loader *L, yaml_node_t *fn, schema_type *t, schema_field *f,
                      pending_ref *pr)
{
    if (fn->type != YAML_MAPPING_NODE)
        return fail(L, fn, "a field is a mapping with name, num, kind, rule");
    f->line = (int)fn->start_mark.line + 1;
    f->rule = (field_rule)-1;
    f->min = INT64_MIN;
    f->max = INT64_MAX;
    int64_t x;
    int rc;
    bool have_kind = false, have_len = false, have_privs = false;
    yaml_node_t *privs_at = NULL;
    for (yaml_node_pair_t *p = fn->data.mapping.pairs.start; p < fn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
        const char *ks = scalar(k), *vs = scalar(v);
        if (!ks)
            return fail(L, k, "keys must be text");
        if (!strcmp(ks, "name")) {
            if (!vs || !is_ident(vs))
                return fail(L, v, "field name must be lowercase letters, digits, _ (max 31)");
            free(f->name);
            if (!(f->name = dupstr(vs)))
                return FS_ENOMEM;
        } else if (!strcmp(ks, "num")) {
            if ((rc = get_int(L, v, 1, 255, &x)))
                return rc;
            f->num = (uint8_t)x;
        } else if (!strcmp(ks, "kind")) {
            int kd = lookup_name(kind_names, 9, vs);
            if (kd < 0)
                return fail(L, v, "unknown kind '%s' (text, int, date, time, enum, bool, ref, "
                            "set, scope)", vs ? vs : "?");
            f->kind = (field_kind)kd;
            have_kind = true;
        } else if (!strcmp(ks, "rule")) {
            int r = lookup_name(rule_names, 6, vs);
            if (r < 0)
                return fail(L, v, "unknown rule '%s' (lww, review, escalate, workflow, set, "
                            "immutable)", vs ? vs : "?");
            f->rule = (field_rule)r;
        } else if (!strcmp(ks, "max_len")) {
            if ((rc = get_int(L, v, 1, 65535, &x)))
                return rc;
            f->max_len = (uint32_t)x;
            have_len = true;
        } else if (!strcmp(ks, "min")) {
            if ((rc = get_int(L, v, INT64_MIN, INT64_MAX, &f->min)))
                return rc;
        } else if (!strcmp(ks, "max")) {
            if ((rc = get_int(L, v, INT64_MIN, INT64_MAX, &f->max)))
                return rc;
        } else if (!strcmp(ks, "required")) {
            if ((rc = get_bool(L, v, &f->required)))
                return rc;
        } else if (!strcmp(ks, "scope_from")) {
            if ((rc = get_bool(L, v, &f->scope_from)))
                return rc;
        } else if (!strcmp(ks, "values")) {
            if ((rc = get_values(L, v, f)))
                return rc;
        } else if (!strcmp(ks, "ref")) {
            if (!vs)
                return fail(L, v, "ref names a record type");
            pr->f = f;
            pr->at = v;
            free(pr->name);
            if (!(pr->name = dupstr(vs)))
                return FS_ENOMEM;
        } else if (!strcmp(ks, "lower_roles") || !strcmp(ks, "reopen_roles")) {
            if ((rc = get_roles(L, v, &f->priv_roles)))
                return rc;
            have_privs = true;
            privs_at = k;
        } else if (!strcmp(ks, "label")) {
            if ((rc = get_label(L, v, &f->label_zh, &f->label_en)))
                return rc;
        } else if (!strcmp(ks, "since")) {
            if ((rc = get_int(L, v, 1, L->s->version ? L->s->version : 65535, &x)))
                return rc;
            f->since = (int)x;
        } else {
            return fail(L, k, "unknown field key '%s'", ks);
        }
    }
    if (!f->name)
        return fail(L, fn, "field without a name");
    if (!f->num)
        return fail(L, fn, "field '%s' has no num", f->name);
    if (!have_kind)
        return fail(L, fn, "field '%s' has no kind", f->name);
    if ((int)f->rule == -1)
        return fail(L, fn, "field '%s' has no rule", f->name);
    if ((f->kind == KIND_TEXT || f->kind == KIND_SCOPE) && !have_len)
        return fail(L, fn, "text field '%s' needs max_len", f->name);
    if ((f->kind == KIND_ENUM || f->kind == KIND_SET) && !f->values)
        return fail(L, fn, "field '%s' of kind %s needs values", f->name, kind_names[f->kind]);
    if (f->kind != KIND_ENUM && f->kind != KIND_SET && f->values)
        return fail(L, fn, "field '%s': values only apply to enum and set", f->name);
    if (f->kind == KIND_REF && !pr->name)
        return fail(L, fn, "ref field '%s' needs ref: <type>", f->name);
    if (f->kind != KIND_REF && (pr->name || f->scope_from))
        return fail(L, fn, "field '%s': ref and scope_from only apply to kind ref", f->name);
    if (f->kind == KIND_INT && f->min > f->max)
        return fail(L, fn, "field '%s': min is greater than max", f->name);
    if ((f->rule == RULE_ESCALATE || f->rule == RULE_WORKFLOW) && f->kind != KIND_ENUM)
        return fail(L, fn, "rule %s needs kind enum (field '%s')", rule_names[f->rule], f->name);
    if ((f->rule == RULE_SET) != (f->kind == KIND_SET))
        return fail(L, fn, "kind set and rule set go together (field '%s')", f->name);
    if (have_privs && f->rule != RULE_ESCALATE && f->rule != RULE_WORKFLOW)
        return fail(L, privs_at, "lower_roles/reopen_roles only apply to escalate and workflow");
    if (t->append_only)
        f->rule = RULE_IMMUTABLE;
    if (!f->since)
        f->since = 1;
    for (uint32_t i = 0; i < f->n_values; i++)
        if (!f->values[i].since)
            f->values[i].since = 1;
    return 0;
}

static int load_type(loader *L, yaml_node_t *tn, schema_type *t, pending_ref *refs,
                     size_t *n_refs)
{
    if (tn->type != YAML_MAPPING_NODE)
        return fail(L, tn, "a type is a mapping with name, id, fields");
    yaml_node_t *fields = NULL;
    int64_t x;
    int rc;
    t->write_roles = (1u << L->s->n_roles) - 1;
    /* append_only must be known before fields are read: find it first. */
    for (yaml_node_pair_t *p = tn->data.mapping.pairs.start; p < tn->data.mapping.pairs.top; p++) {
        const char *ks = scalar(node(L, p->key));
        if (ks && !strcmp(ks, "append_only") &&
            (rc = get_bool(L, node(L, p->value), &t->append_only)))
            return rc;
    }
    for (yaml_node_pair_t *p = tn->data.mapping.pairs.start; p < tn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
        const char *ks = scalar(k), *vs = scalar(v);
        if (!ks)
            return fail(L, k, "keys must be text");
        if (!strcmp(ks, "name")) {
            if (!vs || !is_ident(vs))
                return fail(L, v, "type name must be lowercase letters, digits, _ (max 31)");
            free(t->name);
            if (!(t->name = dupstr(vs)))
                return FS_ENOMEM;
        } else if (!strcmp(ks, "id")) {
            if ((rc = get_int(L, v, 1, SCHEMA_MAX_TYPES, &x)))
                return rc;
            t->id = (uint8_t)x;
        } else if (!strcmp(ks, "append_only")) {
            /* read above */
        } else if (!strcmp(ks, "write_roles")) {
            if ((rc = get_roles(L, v, &t->write_roles)))
                return rc;
        } else if (!strcmp(ks, "label")) {
            if ((rc = get_label(L, v, &t->label_zh, &t->label_en)))
                return rc;
        } else if (!strcmp(ks, "fields")) {
            fields = v;
        } else if (!strcmp(ks, "since")) {
            if ((rc = get_int(L, v, 1, L->s->version ? L->s->version : 65535, &x)))
                return rc;
            t->since = (int)x;
        } else {
            return fail(L, k, "unknown type key '%s'", ks);
        }
    }
    if (!t->name || !t->id)
        return fail(L, tn, "a type needs a name and an id");
    if (!t->since)
        t->since = 1;
    if (!fields || fields->type != YAML_SEQUENCE_NODE)
        return fail(L, tn, "type '%s' needs a list of fields", t->name);
    size_t n = (size_t)(fields->data.sequence.items.top - fields->data.sequence.items.start);
    if (n < 1 || n > SCHEMA_MAX_FIELDS)
        return fail(L, fields, "type '%s' needs 1..255 fields", t->name);
    t->fields = calloc(n, sizeof *t->fields);
    if (!t->fields)
        return FS_ENOMEM;
    t->n_fields = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *fn = node(L, fields->data.sequence.items.start[i]);
        schema_field *f = &t->fields[i];
        pending_ref *pr = &refs[*n_refs];
        if ((rc = load_field(L, fn, t, f, pr))) {
            free(pr->name); /* not yet counted in n_refs */
            pr->name = NULL;
            return rc;
        }
        if (pr->name)
            (*n_refs)++;
        if (t->by_num[f->num])
            return fail(L, fn, "field num %d used twice in type '%s'", f->num, t->name);
        if (schema_field_by_name(t, f->name) != f)
            return fail(L, fn, "field name '%s' used twice in type '%s'", f->name, t->name);
        t->by_num[f->num] = f;
        if (f->kind == KIND_SCOPE || f->scope_from) {
            if (t->scope_field)
                return fail(L, fn, "type '%s' has two scope fields", t->name);
            t->scope_field = f->num;
        }
    }
    return 0;
}

static size_t count_fields(loader *L, yaml_node_t *types)
{
    size_t total = 0;
    for (yaml_node_item_t *i = types->data.sequence.items.start; i < types->data.sequence.items.top;
         i++) {
        yaml_node_t *tn = node(L, *i);
        if (tn->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *p = tn->data.mapping.pairs.start; p < tn->data.mapping.pairs.top;
             p++) {
            const char *ks = scalar(node(L, p->key));
            yaml_node_t *v = node(L, p->value);
            if (ks && !strcmp(ks, "fields") && v->type == YAML_SEQUENCE_NODE)
                total += (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        }
    }
    return total;
}

static int load_root(loader *L, yaml_node_t *root)
{
    schema *s = L->s;
    yaml_node_t *types = NULL;
    bool marker = false;
    int64_t x;
    int rc;
    if (!root || root->type != YAML_MAPPING_NODE)
        return fail(L, root, "the file must be a mapping with schema, version, roles, types");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
        const char *ks = scalar(k);
        if (!ks)
            return fail(L, k, "keys must be text");
        if (!strcmp(ks, "schema")) {
            if (!scalar(v) || strcmp(scalar(v), "fieldsync"))
                return fail(L, v, "schema: must be 'fieldsync'");
            marker = true;
        } else if (!strcmp(ks, "version")) {
            if ((rc = get_int(L, v, 1, 65535, &x)))
                return rc;
            s->version = (int)x;
        } else if (!strcmp(ks, "roles")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return fail(L, v, "roles must be a list");
            for (yaml_node_item_t *i = v->data.sequence.items.start;
                 i < v->data.sequence.items.top; i++) {
                yaml_node_t *r = node(L, *i);
                if (!scalar(r) || !is_ident(scalar(r)))
                    return fail(L, r, "a role is an identifier");
                if (s->n_roles == SCHEMA_MAX_ROLES)
                    return fail(L, r, "at most %d roles", SCHEMA_MAX_ROLES);
                if (schema_role_by_name(s, scalar(r)) >= 0)
                    return fail(L, r, "role '%s' listed twice", scalar(r));
                if (!(s->roles[s->n_roles++] = dupstr(scalar(r))))
                    return FS_ENOMEM;
            }
        } else if (!strcmp(ks, "review_roles")) {
            if (!s->n_roles)
                return fail(L, k, "review_roles must come after roles");
            if ((rc = get_roles(L, v, &s->review_roles)))
                return rc;
        } else if (!strcmp(ks, "types")) {
            types = v;
        } else {
            return fail(L, k, "unknown top-level key '%s'", ks);
        }
    }
    if (!marker)
        return fail(L, root, "missing 'schema: fieldsync'");
    if (!s->version)
        return fail(L, root, "missing version");
    if (!s->n_roles)
        return fail(L, root, "missing roles (must be listed before types are checked)");
    if (!types || types->type != YAML_SEQUENCE_NODE)
        return fail(L, root, "missing list of types");
    size_t n = (size_t)(types->data.sequence.items.top - types->data.sequence.items.start);
    if (n < 1 || n > SCHEMA_MAX_TYPES)
        return fail(L, types, "need 1..%d types", SCHEMA_MAX_TYPES);
    s->types = calloc(n, sizeof *s->types);
    size_t nf = count_fields(L, types);
    pending_ref *refs = calloc(nf + 1, sizeof *refs);
    if (!s->types || !refs) {
        free(refs);
        return FS_ENOMEM;
    }
    size_t n_refs = 0;
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        yaml_node_t *tn = node(L, types->data.sequence.items.start[i]);
        schema_type *t = &s->types[i];
        s->n_types = (uint32_t)i + 1;
        rc = load_type(L, tn, t, refs, &n_refs);
        if (rc)
            break;
        if (s->by_id[t->id])
            rc = fail(L, tn, "type id %d used twice", t->id);
        else if (schema_type_by_name(s, t->name) != t)
            rc = fail(L, tn, "type name '%s' used twice", t->name);
        else
            s->by_id[t->id] = t;
    }
    for (size_t i = 0; i < n_refs && !rc; i++) {
        const schema_type *rt = schema_type_by_name(s, refs[i].name);
        if (!rt)
            rc = fail(L, refs[i].at, "ref to unknown type '%s'", refs[i].name);
        else
            refs[i].f->ref_type = rt->id;
    }
    for (size_t i = 0; i < n_refs; i++)
        free(refs[i].name);
    free(refs);
    return rc;
}

int schema_load_mem(const char *name, const char *text, size_t len, schema **out, fs_error *err)
{
    loader L = {.s = NULL};
    *out = NULL;
    int rc = yamlutil_load_mem(&L.y, name, text, len, err);
    if (rc)
        return rc;
    L.s = calloc(1, sizeof *L.s);
    if (!L.s) {
        rc = FS_ENOMEM;
    } else {
        L.s->path = dupstr(name);
        rc = load_root(&L, yaml_document_get_root_node(&L.y.doc));
    }
    if (yamlutil_done(&L.y, rc)) {
        schema_free(L.s);
        return rc;
    }
    *out = L.s;
    return 0;
}

int schema_load(const char *path, schema **out, fs_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fs_error_set(err, FS_ESCHEMA, "%s:0: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                return fs_error_set(err, FS_ESCHEMA, "%s:0: larger than 16 MiB", path);
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return FS_ENOMEM;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool ioerr = ferror(f);
    fclose(f);
    if (ioerr) {
        free(buf);
        return fs_error_set(err, FS_ESCHEMA, "%s:0: read error", path);
    }
    int rc = schema_load_mem(path, buf, len, out, err);
    free(buf);
    return rc;
}

static void free_field(schema_field *f)
{
    free(f->name);
    free(f->label_zh);
    free(f->label_en);
    for (uint32_t i = 0; i < f->n_values; i++) {
        free(f->values[i].code);
        free(f->values[i].zh);
        free(f->values[i].en);
    }
    free(f->values);
}

void schema_free(schema *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n_types; i++) {
        schema_type *t = &s->types[i];
        for (uint32_t j = 0; j < t->n_fields; j++)
            free_field(&t->fields[j]);
        free(t->fields);
        free(t->name);
        free(t->label_zh);
        free(t->label_en);
    }
    free(s->types);
    for (uint32_t i = 0; i < s->n_roles; i++)
        free(s->roles[i]);
    free(s->path);
    free(s);
}

const char *schema_default_path(void)
{
    const char *env = getenv("FIELDSYNC_SCHEMA");
    return env && *env ? env : FS_SCHEMA_DIR "/fieldsync.yaml";
}

const schema_type *schema_type_by_id(const schema *s, int id)
{
    return id > 0 && id < 128 ? s->by_id[id] : NULL;
}

const schema_type *schema_type_by_name(const schema *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_types; i++)
        if (s->types[i].name && !strcmp(s->types[i].name, name))
            return &s->types[i];
    return NULL;
}

const schema_field *schema_field_by_num(const schema_type *t, int num)
{
    return num > 0 && num < 256 ? t->by_num[num] : NULL;
}

const schema_field *schema_field_by_name(const schema_type *t, const char *name)
{
    for (uint32_t i = 0; i < t->n_fields; i++)
        if (t->fields[i].name && !strcmp(t->fields[i].name, name))
            return &t->fields[i];
    return NULL;
}

int schema_role_by_name(const schema *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_roles; i++)
        if (!strcmp(s->roles[i], name))
            return (int)i;
    return -1;
}

int schema_enum_by_code(const schema_field *f, const char *code)
{
    for (uint32_t i = 0; i < f->n_values; i++)
        if (!strcmp(f->values[i].code, code))
            return (int)i;
    return -1;
}

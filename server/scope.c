/*
 * scope.c — who may see and write which records.
 *
 * A record's scope is the village code the engine keeps in records.scope: the record's own
 * `kind: scope` field, or, for types whose scope field is a `scope_from` reference, the scope
 * of the referenced record (a visit is in its child's village; store.c scope_after). A user
 * has one of three scope kinds (srvdb.c):
 *   villages   a list of village codes
 *   township   every village of one township (resolved from the village cache, so a village
 *              added later joins the scope when the admin change is noticed: main.c's tick)
 *   children   a list of child record ids: the record itself or the record it takes its
 *              scope from must be one of them
 * The same predicate filters pulls, ledger events and review items, and the authorize
 * callback refuses (FS_ESCOPE) a change whose record is outside the scope before or after
 * it, or that names a village nobody created. Roles are not checked here: the engine checks
 * them from the schema (write_roles, lower_roles, reopen_roles, enum value roles).
 *
 * Nothing here names a record type or a field: the scope field comes from the schema.
 * Refusal texts never name the village of a record the user cannot see.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>

/* ---- the village cache ------------------------------------------------------------ */

typedef struct vlist {
    village_entry *v;
    size_t n, cap;
    bool oom;
} vlist;

static int add_village(void *ctx, const char *code, const char *township)
{
    vlist *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        village_entry *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    snprintf(l->v[l->n].code, sizeof l->v[l->n].code, "%s", code);
    snprintf(l->v[l->n].township, sizeof l->v[l->n].township, "%s", township);
    l->n++;
    return 0;
}

static int cmp_village(const void *a, const void *b)
{
    return strcmp(((const village_entry *)a)->code, ((const village_entry *)b)->code);
}

int villages_reload(server *srv)
{
    vlist l = {0};
    int rc = srvdb_villages(srv->db, add_village, &l);
    if (!rc && l.oom)
        rc = FS_ENOMEM;
    if (rc) {
        free(l.v);
        return rc;
    }
    /* SQLite's BINARY order is strcmp order, but do not depend on it for bsearch */
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, cmp_village);
    free(srv->villages);
    srv->villages = l.v;
    srv->n_villages = l.n;
    srv->villages_gen++; /* every scope's memo is stale */
    return 0;
}

/* bsearch's comparison for village_find: the key is the code itself (copying it into an
 * entry with snprintf for cmp_village was ~1% of an ingest's server CPU: once a change) */
static int cmp_code_village(const void *code, const void *v)
{
    return strcmp(code, ((const village_entry *)v)->code);
}

const village_entry *village_find(const server *srv, const char *code)
{
    if (!code || !srv->n_villages)
        return NULL;
    return bsearch(code, srv->villages, srv->n_villages, sizeof *srv->villages,
                   cmp_code_village);
}

/* ---- users' scopes ---------------------------------------------------------------- */

typedef struct scope_loader {
    user_scope *sc;
    size_t cap_v, cap_c;
    bool oom;
} scope_loader;

static bool push_village(scope_loader *L, const char *code)
{
    user_scope *sc = L->sc;
    if (sc->n_villages == L->cap_v) {
        size_t cap = L->cap_v ? L->cap_v * 2 : 16;
        void *p = realloc(sc->villages, cap * sizeof *sc->villages);
        if (!p)
            return false;
        sc->villages = p;
        L->cap_v = cap;
    }
    snprintf(sc->villages[sc->n_villages++], SRV_CODE_MAX + 1, "%s", code);
    return true;
}

static int scope_value(void *ctx, const char *value)
{
    scope_loader *L = ctx;
    user_scope *sc = L->sc;
    switch (sc->kind) {
    case SCOPE_VILLAGES:
        if (!push_village(L, value))
            L->oom = true;
        break;
    case SCOPE_TOWNSHIP:
        snprintf(sc->township, sizeof sc->township, "%s", value);
        break;
    case SCOPE_CHILDREN: {
        rid_t id;
        if (rid_from_text(value, &id))
            break; /* admin.c validates; ignore anything else */
        if (sc->n_children == L->cap_c) {
            size_t cap = L->cap_c ? L->cap_c * 2 : 16;
            rid_t *p = realloc(sc->children, cap * sizeof *p);
            if (!p) {
                L->oom = true;
                return 1;
            }
            sc->children = p;
            L->cap_c = cap;
        }
        sc->children[sc->n_children++] = id;
        break;
    }
    }
    return L->oom;
}

static int cmp_code(const void *a, const void *b) { return strcmp(a, b); }
static int cmp_rid(const void *a, const void *b) { return rid_cmp(a, b); }

int scope_load(server *srv, const srv_user *user, user_scope *out)
{
    memset(out, 0, sizeof *out);
    out->kind = user->kind;
    scope_loader L = {.sc = out};
    int rc = srvdb_user_scope(srv->db, user->id, scope_value, &L);
    if (!rc && L.oom)
        rc = FS_ENOMEM;
    if (!rc && out->kind == SCOPE_TOWNSHIP) {
        for (size_t i = 0; i < srv->n_villages && !rc; i++)
            if (!strcmp(srv->villages[i].township, out->township) &&
                !push_village(&L, srv->villages[i].code))
                rc = FS_ENOMEM;
    }
    if (rc) {
        scope_free(out);
        return rc;
    }
    if (out->n_villages)
        qsort(out->villages, out->n_villages, sizeof *out->villages, cmp_code);
    if (out->n_children)
        qsort(out->children, out->n_children, sizeof *out->children, cmp_rid);
    return 0;
}

void scope_free(user_scope *sc)
{
    free(sc->villages);
    free(sc->children);
    memset(sc, 0, sizeof *sc);
}

bool scope_has_village(const user_scope *sc, const char *code)
{
    if (!code || !sc->n_villages || strlen(code) > SRV_CODE_MAX)
        return false;
    return bsearch(code, sc->villages, sc->n_villages, sizeof *sc->villages, cmp_code) != NULL;
}

static bool has_child(const user_scope *sc, const rid_t *id)
{
    return sc->n_children &&
           bsearch(id, sc->children, sc->n_children, sizeof *sc->children, cmp_rid) != NULL;
}

/* The record a record takes its scope from, as stored by the engine (records.parent).
 * store.h has no accessor for it yet; this reads the engine's table directly. */
static bool stored_parent(server *srv, const rid_t *record, rid_t *parent)
{
    if (!srv->parent_stmt &&
        sqlite3_prepare_v3(srv->db, "SELECT parent FROM records WHERE id = ?1", -1,
                           SQLITE_PREPARE_PERSISTENT, &srv->parent_stmt, NULL))
        return false;
    sqlite3_stmt *s = srv->parent_stmt;
    sqlite3_bind_blob(s, 1, record->b, 16, SQLITE_STATIC);
    bool found = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 16;
    if (found)
        memcpy(parent->b, sqlite3_column_blob(s, 0), 16);
    sqlite3_reset(s);
    return found;
}

/* children scope: the record, or the record it takes its scope from, is assigned. */
static bool children_sees(server *srv, const user_scope *sc, const change *c,
                          const rid_t *record)
{
    if (has_child(sc, record))
        return true;
    if (c) {
        const schema_type *t = schema_type_by_id(srv->schema, c->type);
        const schema_field *f = t && t->scope_field ? schema_field_by_num(t, t->scope_field)
                                                    : NULL;
        if (f && f->kind == KIND_REF) {
            const change_field *cf = change_field_get(c, f->num);
            if (cf && cf->v.kind == VAL_REF)
                return has_child(sc, &cf->v.u.ref);
        }
    }
    rid_t parent;
    return stored_parent(srv, record, &parent) && has_child(sc, &parent);
}

bool scope_user_sees(server *srv, const user_scope *sc, const change *c, const char *scope)
{
    if (sc->kind == SCOPE_CHILDREN)
        return children_sees(srv, sc, c, &c->record);
    return scope_has_village(sc, scope);
}

bool scope_user_sees_record(server *srv, const user_scope *sc, const rid_t *record)
{
    if (sc->kind == SCOPE_CHILDREN)
        return children_sees(srv, sc, NULL, record);
    char scope[128];
    if (store_record_get(srv->store, record, NULL, scope, sizeof scope))
        return false;
    return scope_has_village(sc, scope);
}

bool scope_sees(session *s, const change *c, const char *scope)
{
    return scope_user_sees(s->srv, &s->scope, c, scope);
}

bool scope_sees_record(session *s, const rid_t *record)
{
    return scope_user_sees_record(s->srv, &s->scope, record);
}

int scope_authorize_user(server *srv, const user_scope *sc, const change *c,
                         const char *scope_before, const char *scope_after, fs_error *e)
{
    const schema_type *t = schema_type_by_id(srv->schema, c->type);
    const char *tname = t ? t->name : "record";
    bool children = sc->kind == SCOPE_CHILDREN;
    if (scope_before && !children && !scope_has_village(sc, scope_before))
        return fs_error_set(e, FS_ESCOPE, "this %s is outside your scope", tname);
    if (!scope_after || !*scope_after)
        return fs_error_set(e, FS_ESCOPE,
                            "this %s has no village: set its village field (or the record it "
                            "refers to) to a village of your scope",
                            tname);
    if (!village_find(srv, scope_after))
        return fs_error_set(e, FS_ESCOPE,
                            "unknown village '%.40s': an administrator must create it first "
                            "(fieldsyncd admin village add %.40s --township T NAME)",
                            scope_after, scope_after);
    if (!children && !scope_has_village(sc, scope_after)) {
        /* name the village only when the change itself names it */
        const schema_field *f = t && t->scope_field ? schema_field_by_num(t, t->scope_field)
                                                    : NULL;
        const change_field *cf = f && f->kind == KIND_SCOPE ? change_field_get(c, f->num) : NULL;
        if (cf && cf->v.kind == VAL_STR)
            return fs_error_set(e, FS_ESCOPE, "village '%.40s' is outside your scope",
                                scope_after);
        return fs_error_set(e, FS_ESCOPE, "the record this %s refers to is outside your scope",
                            tname);
    }
    if (children && !children_sees(srv, sc, c, &c->record))
        return fs_error_set(e, FS_ESCOPE,
                            "this %s is not one of the children assigned to you", tname);
    return 0;
}

bool scope_memo_has(const server *srv, const user_scope *sc, const char *code)
{
    return code && sc->memo[0] && sc->memo_gen == srv->villages_gen && !strcmp(code, sc->memo);
}

/* A push's changes are nearly all in one village: once one was authorized in village V
 * (a village of the user's and of the server's), a change whose scope before and after
 * are V is authorized the same way without the binary searches (~0.3k instructions a
 * change). The memo lives in the session's scope, which a refresh replaces whole, and is
 * good while the server's village list is the one it was checked against. */
int scope_authorize(void *ctx, const change *c, const char *scope_before,
                    const char *scope_after, fs_error *e)
{
    session *s = ctx;
    user_scope *sc = &s->scope;
    bool villages = sc->kind != SCOPE_CHILDREN;
    if (villages && scope_memo_has(s->srv, sc, scope_after) &&
        (!scope_before || scope_memo_has(s->srv, sc, scope_before)))
        return 0;
    int rc = scope_authorize_user(s->srv, sc, c, scope_before, scope_after, e);
    if (!rc && villages) {
        snprintf(sc->memo, sizeof sc->memo, "%s", scope_after);
        sc->memo_gen = s->srv->villages_gen;
    }
    return rc;
}

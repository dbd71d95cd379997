/*
 * record.c — records as the device sees them, and local edits.
 *
 * The view of a record is computed, never stored: each field's confirmed state (the engine
 * store, what the server accepted) is loaded, then every pending change of the record in the
 * outbox is merged on top with the engine's own merge_field() (authority off), exactly as the
 * replica will merge it once the server confirms it. So the view predicts the confirmed state
 * under the same rules (a pending lower risk level does not hide a concurrent higher one...),
 * and a refused change, which leaves the outbox, simply stops contributing: nothing to undo.
 *
 * Edits are staged on the handle (validated one by one as they are set) and saved as ONE
 * change: base = the greatest version the device sees among the fields set (0 for a create),
 * clock from the replica's hybrid clock, then change_validate(), then one INSERT into the
 * outbox in one transaction with the clock. Device sequence numbers are NOT assigned here:
 * they are given when the change is first sent (outbox.c), which is how reports overtake
 * queued visits without breaking the server's gap-free dseq rule.
 */
#include "internal.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Placeholder dseq of a change not yet numbered (change_validate wants dseq >= 1). */
#define DSEQ_UNNUMBERED (1ull << 62)

struct fieldsync_record {
    fieldsync_db *db;
    const schema_type *t;
    rid_t id;
    char id_text[RID_TEXT_LEN + 1];
    bool confirmed;         /* the store has the record */
    bool has_pending;       /* the outbox has changes of it */
    uint32_t n;             /* fields of the type */
    field_state *view;      /* [n] confirmed + pending */
    bool *pending;          /* [n] shown value comes from a pending change */
    bool *staged;           /* [n] set on this handle, not saved */
    fs_value *sval;         /* [n] staged values; VAL_STR points into sstr */
    char **sstr;            /* [n] owned */
    strbuf *text, *json;    /* [n] for fieldsync_field */
};

static int rec_alloc(fieldsync_db *db, const schema_type *t, fieldsync_record **out)
{
    fieldsync_record *r = calloc(1, sizeof *r);
    if (!r)
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    r->db = db;
    r->t = t;
    r->n = t->n_fields;
    r->view = calloc(r->n, sizeof *r->view);
    r->pending = calloc(r->n, sizeof *r->pending);
    r->staged = calloc(r->n, sizeof *r->staged);
    r->sval = calloc(r->n, sizeof *r->sval);
    r->sstr = calloc(r->n, sizeof *r->sstr);
    r->text = calloc(r->n, sizeof *r->text);
    r->json = calloc(r->n, sizeof *r->json);
    if (!r->view || !r->pending || !r->staged || !r->sval || !r->sstr || !r->text || !r->json) {
        db->records_open++;
        fieldsync_record_free(r);
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    }
    db->records_open++;
    *out = r;
    return 0;
}

void fieldsync_record_free(fieldsync_record *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; r->view && i < r->n; i++)
        field_state_destroy(&r->view[i]);
    for (uint32_t i = 0; r->sstr && i < r->n; i++)
        free(r->sstr[i]);
    for (uint32_t i = 0; r->text && i < r->n; i++)
        sb_free(&r->text[i]);
    for (uint32_t i = 0; r->json && i < r->n; i++)
        sb_free(&r->json[i]);
    free(r->view);
    free(r->pending);
    free(r->staged);
    free(r->sval);
    free(r->sstr);
    free(r->text);
    free(r->json);
    r->db->records_open--;
    free(r);
}

int fieldsync_record_new(fieldsync_db *db, const char *type, fieldsync_record **out)
{
    if (!db || !type || !out)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "type and out are required") : FIELDSYNC_EINVAL;
    *out = NULL;
    const schema_type *t = schema_type_by_name(db->s, type);
    if (!t)
        return sdk_fail(db, FIELDSYNC_ETYPE, "no record type '%s' in schema version %d", type,
                        db->s->version);
    fieldsync_record *r;
    int rc = rec_alloc(db, t, &r);
    if (rc)
        return rc;
    if (rid_new(&r->id, (uint64_t)sdk_now_ms())) {
        fieldsync_record_free(r);
        return sdk_fail(db, FIELDSYNC_ESTORE, "no randomness for a record id");
    }
    rid_to_text(&r->id, r->id_text);
    *out = r;
    return 0;
}

/* Merges one pending change (push-form body) into the view. */
static int overlay_change(fieldsync_record *r, const void *body, size_t len, uint64_t dseq,
                          change *c)
{
    fieldsync_db *db = r->db;
    fs_error e = {0};
    mpr m;
    mpr_init(&m, body, len);
    int rc = change_unpack(&m, db->s, false, c, &e);
    if (rc)
        return sdk_from_fs(db, rc, &e);
    c->device = db->device;
    c->author = db->user;
    c->author_len = (uint32_t)strlen(db->user);
    c->role = (uint8_t)(db->role < 0 ? 0 : db->role);
    c->dseq = dseq ? dseq : DSEQ_UNNUMBERED;
    for (uint32_t i = 0; i < c->n_fields; i++) {
        const schema_field *f = schema_field_by_num(r->t, c->fields[i].num);
        uint32_t k = (uint32_t)(f - r->t->fields);
        merge_out out;
        rc = merge_field(db->s, f, &r->view[k], c, &c->fields[i].v, false, &out, &e);
        bool changed = out.changed;
        merge_out_destroy(&out);
        if (rc)
            return sdk_from_fs(db, rc, &e);
        field_state *st = &r->view[k];
        if (changed || (st->whlc == c->hlc && !rid_cmp(&st->wdev, &c->device)))
            r->pending[k] = true;
    }
    return 0;
}

/* (Re)computes the view of r from the store and the outbox. */
static int record_refresh(fieldsync_record *r)
{
    fieldsync_db *db = r->db;
    int type;
    int rc = store_record_get(db->st, &r->id, &type, NULL, 0);
    if (rc && rc != FS_ENOTFOUND)
        return sdk_fail(db, FIELDSYNC_ESTORE, "cannot read record %s", r->id_text);
    r->confirmed = rc == 0;
    for (uint32_t i = 0; i < r->n; i++) {
        field_state_destroy(&r->view[i]);
        r->pending[i] = false;
        if (!r->confirmed)
            continue;
        rc = store_field_get(db->st, &r->id, r->t->fields[i].num, &r->view[i]);
        if (rc == FS_ENOTFOUND) {
            field_state_destroy(&r->view[i]);
            continue;
        }
        if (rc)
            return sdk_fail(db, FIELDSYNC_ESTORE, "cannot read field %s of %s",
                            r->t->fields[i].name, r->id_text);
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT dseq, body FROM dev_outbox WHERE record = ?1 ORDER BY id", -1,
                           &s, NULL))
        return sdk_sqlfail(db, "outbox");
    sqlite3_bind_blob(s, 1, r->id.b, 16, SQLITE_STATIC);
    change *c = malloc(sizeof *c);
    if (!c) {
        sqlite3_finalize(s);
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    }
    r->has_pending = false;
    rc = 0;
    int step;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        r->has_pending = true;
        rc = overlay_change(r, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                            (uint64_t)sqlite3_column_int64(s, 0), c);
    }
    if (!rc && step != SQLITE_DONE)
        rc = sdk_sqlfail(db, "outbox");
    free(c);
    sqlite3_finalize(s);
    return rc;
}

int record_load_id(fieldsync_db *db, const rid_t *id, fieldsync_record **out)
{
    *out = NULL;
    int type;
    int rc = sdk_refresh(db);
    if (rc)
        return rc;
    rc = store_record_get(db->st, id, &type, NULL, 0);
    if (rc == FS_ENOTFOUND) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db->sql, "SELECT type FROM dev_outbox WHERE record = ?1 LIMIT 1",
                               -1, &s, NULL))
            return sdk_sqlfail(db, "outbox");
        sqlite3_bind_blob(s, 1, id->b, 16, SQLITE_STATIC);
        rc = sqlite3_step(s);
        type = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return sdk_sqlfail(db, "outbox");
        char text[RID_TEXT_LEN + 1];
        rid_to_text(id, text);
        if (type < 0)
            return sdk_fail(db, FIELDSYNC_ENOTFOUND, "no record %s on this device", text);
    } else if (rc) {
        return sdk_fail(db, FIELDSYNC_ESTORE, "cannot read record");
    }
    const schema_type *t = schema_type_by_id(db->s, type);
    if (!t)
        return sdk_fail(db, FIELDSYNC_ETYPE, "record of unknown type %d", type);
    fieldsync_record *r;
    if ((rc = rec_alloc(db, t, &r)))
        return rc;
    r->id = *id;
    rid_to_text(id, r->id_text);
    if ((rc = record_refresh(r))) {
        fieldsync_record_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int fieldsync_record_load(fieldsync_db *db, const char *id, fieldsync_record **out)
{
    if (!db || !id || !out)
        return db ? sdk_fail(db, FIELDSYNC_EINVAL, "id and out are required") : FIELDSYNC_EINVAL;
    *out = NULL;
    rid_t rid;
    if (rid_from_text(id, &rid) || rid_is_zero(&rid))
        return sdk_fail(db, FIELDSYNC_EINVAL, "'%s' is not a record id", id);
    return record_load_id(db, &rid, out);
}

const char *fieldsync_record_id(const fieldsync_record *r) { return r ? r->id_text : ""; }
const char *fieldsync_record_type(const fieldsync_record *r) { return r ? r->t->name : ""; }
int fieldsync_record_confirmed(const fieldsync_record *r) { return r && r->confirmed; }

int fieldsync_record_pending(const fieldsync_record *r)
{
    if (!r)
        return 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->pending[i])
            return 1;
    return 0;
}

static bool rec_exists(const fieldsync_record *r) { return r->confirmed || r->has_pending; }

/* ---- setters ------------------------------------------------------------------------------ */

static int find_field(fieldsync_record *r, const char *name, const schema_field **f)
{
    if (!r)
        return FIELDSYNC_EINVAL;
    if (!name)
        return sdk_fail(r->db, FIELDSYNC_EINVAL, "field name is NULL");
    *f = schema_field_by_name(r->t, name);
    if (!*f) {
        strbuf b = {0};
        for (uint32_t i = 0; i < r->t->n_fields; i++)
            sb_printf(&b, "%s%s", i ? ", " : "", r->t->fields[i].name);
        sdk_fail(r->db, FIELDSYNC_EFIELD, "%s has no field '%s' (fields: %s)", r->t->name, name,
                 b.p ? b.p : "");
        sb_free(&b);
        return FIELDSYNC_EFIELD;
    }
    if (rec_exists(r) && (r->t->append_only || (*f)->rule == RULE_IMMUTABLE))
        return sdk_fail(r->db, FIELDSYNC_EIMMUTABLE,
                        r->t->append_only
                            ? "%s records are append-only: '%s' cannot change once saved (record "
                              "a correction instead)"
                            : "%s.%s is fixed when the record is created",
                        r->t->name, (*f)->name);
    return 0;
}

/* Validates v for f and stages a copy. */
static int stage(fieldsync_record *r, const schema_field *f, const fs_value *v)
{
    fs_error e = {0};
    int rc = value_validate(f, v, &e);
    if (rc)
        return sdk_from_fs(r->db, rc, &e);
    uint32_t k = (uint32_t)(f - r->t->fields);
    free(r->sstr[k]);
    r->sstr[k] = NULL;
    r->sval[k] = *v;
    if (v->kind == VAL_STR) {
        r->sstr[k] = malloc(v->u.s.len + 1);
        if (!r->sstr[k])
            return sdk_fail(r->db, FIELDSYNC_ENOMEM, "out of memory");
        memcpy(r->sstr[k], v->u.s.p, v->u.s.len);
        r->sstr[k][v->u.s.len] = '\0';
        r->sval[k].u.s.p = r->sstr[k];
    }
    r->staged[k] = true;
    return 0;
}

static int want_kind(fieldsync_record *r, const schema_field *f, field_kind k1, field_kind k2,
                     const char *setter)
{
    if (f->kind == k1 || f->kind == k2)
        return 0;
    return sdk_fail(r->db, FIELDSYNC_EFIELD, "%s.%s is a %s field: use %s", r->t->name, f->name,
                    schema_kind_name(f->kind), setter);
}

static const char *setter_for(field_kind k)
{
    switch (k) {
    case KIND_TEXT:
    case KIND_SCOPE: return "fieldsync_set_text";
    case KIND_INT: return "fieldsync_set_int";
    case KIND_DATE: return "fieldsync_set_date";
    case KIND_TIME: return "fieldsync_set_time";
    case KIND_ENUM: return "fieldsync_set_enum";
    case KIND_BOOL: return "fieldsync_set_bool";
    case KIND_REF: return "fieldsync_set_ref";
    case KIND_SET: return "fieldsync_set_add/fieldsync_set_remove";
    }
    return "?";
}

#define FIELD_OF_KIND(k1, k2)                                                                \
    const schema_field *f;                                                                   \
    int rc = find_field(r, field, &f);                                                       \
    if (rc)                                                                                  \
        return rc;                                                                           \
    if ((rc = want_kind(r, f, k1, k2, setter_for(f->kind))))                                 \
        return rc

int fieldsync_set_text(fieldsync_record *r, const char *field, const char *utf8)
{
    FIELD_OF_KIND(KIND_TEXT, KIND_SCOPE);
    if (!utf8)
        return sdk_fail(r->db, FIELDSYNC_EINVAL, "text is NULL (use fieldsync_set_null)");
    fs_value v = {.kind = VAL_STR};
    v.u.s.p = utf8;
    v.u.s.len = (uint32_t)strlen(utf8);
    return stage(r, f, &v);
}

int fieldsync_set_int(fieldsync_record *r, const char *field, int64_t value)
{
    FIELD_OF_KIND(KIND_INT, KIND_INT);
    fs_value v = {.kind = VAL_INT};
    v.u.i = value;
    return stage(r, f, &v);
}

int fieldsync_set_date(fieldsync_record *r, const char *field, int32_t yyyymmdd)
{
    FIELD_OF_KIND(KIND_DATE, KIND_DATE);
    fs_value v = {.kind = VAL_INT};
    v.u.i = yyyymmdd;
    return stage(r, f, &v);
}

int fieldsync_set_time(fieldsync_record *r, const char *field, int64_t unix_s)
{
    FIELD_OF_KIND(KIND_TIME, KIND_TIME);
    fs_value v = {.kind = VAL_INT};
    v.u.i = unix_s;
    return stage(r, f, &v);
}

int fieldsync_set_bool(fieldsync_record *r, const char *field, int value)
{
    FIELD_OF_KIND(KIND_BOOL, KIND_BOOL);
    fs_value v = {.kind = VAL_BOOL};
    v.u.b = value != 0;
    return stage(r, f, &v);
}

int fieldsync_set_enum(fieldsync_record *r, const char *field, const char *code)
{
    FIELD_OF_KIND(KIND_ENUM, KIND_ENUM);
    fs_value v;
    if (!code)
        return sdk_fail(r->db, FIELDSYNC_EINVAL, "code is NULL");
    if ((rc = value_parse(r->db, f, code, &v)))
        return rc;
    return stage(r, f, &v);
}

int fieldsync_set_ref(fieldsync_record *r, const char *field, const char *id)
{
    FIELD_OF_KIND(KIND_REF, KIND_REF);
    fs_value v;
    if (!id)
        return sdk_fail(r->db, FIELDSYNC_EINVAL, "id is NULL");
    if ((rc = value_parse(r->db, f, id, &v)))
        return rc;
    return stage(r, f, &v);
}

static int set_bit(fieldsync_record *r, const char *field, const char *code, bool add)
{
    FIELD_OF_KIND(KIND_SET, KIND_SET);
    if (!code)
        return sdk_fail(r->db, FIELDSYNC_EINVAL, "code is NULL");
    fs_value v;
    if ((rc = value_parse(r->db, f, code, &v)))
        return rc;
    uint32_t k = (uint32_t)(f - r->t->fields);
    fs_value cur = r->staged[k] ? r->sval[k] : (fs_value){.kind = VAL_SET};
    uint64_t bits = v.u.set.add | v.u.set.rm;
    if (add) {
        cur.u.set.add |= bits;
        cur.u.set.rm &= ~bits;
    } else {
        cur.u.set.rm |= bits;
        cur.u.set.add &= ~bits;
    }
    return stage(r, f, &cur);
}

int fieldsync_set_add(fieldsync_record *r, const char *field, const char *code)
{
    return set_bit(r, field, code, true);
}

int fieldsync_set_remove(fieldsync_record *r, const char *field, const char *code)
{
    return set_bit(r, field, code, false);
}

int fieldsync_set_null(fieldsync_record *r, const char *field)
{
    const schema_field *f;
    int rc = find_field(r, field, &f);
    if (rc)
        return rc;
    if (f->kind == KIND_SET)
        return sdk_fail(r->db, FIELDSYNC_EFIELD,
                        "%s.%s is a set: remove its values with fieldsync_set_remove", r->t->name,
                        f->name);
    fs_value v = {.kind = VAL_NIL};
    return stage(r, f, &v);
}

int fieldsync_set_parse(fieldsync_record *r, const char *field, const char *value)
{
    const schema_field *f;
    int rc = find_field(r, field, &f);
    if (rc)
        return rc;
    if (!value)
        return sdk_fail(r->db, FIELDSYNC_EINVAL, "value is NULL");
    fs_value v;
    if ((rc = value_parse(r->db, f, value, &v)))
        return rc;
    if (f->kind == KIND_SET) {
        uint32_t k = (uint32_t)(f - r->t->fields);
        if (r->staged[k]) { /* combine with what was staged */
            fs_value cur = r->sval[k];
            cur.u.set.add = (cur.u.set.add & ~v.u.set.rm) | v.u.set.add;
            cur.u.set.rm = (cur.u.set.rm & ~v.u.set.add) | v.u.set.rm;
            v = cur;
        }
    }
    return stage(r, f, &v);
}

/* ---- save ------------------------------------------------------------------------------ */

int record_scope(fieldsync_db *db, const rid_t *id, char *out, size_t cap)
{
    out[0] = '\0';
    int type;
    int rc = store_record_get(db->st, id, &type, out, cap);
    if (rc == 0 && out[0])
        return 0;
    if (rc && rc != FS_ENOTFOUND)
        return sdk_fail(db, FIELDSYNC_ESTORE, "cannot read record");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "SELECT scope FROM dev_outbox WHERE record = ?1 AND scope IS NOT NULL "
                           "ORDER BY id DESC LIMIT 1",
                           -1, &s, NULL))
        return sdk_sqlfail(db, "outbox");
    sqlite3_bind_blob(s, 1, id->b, 16, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return 0;
}

/* The scope the record will have and the record it takes it from (if any). */
static int save_scope(fieldsync_record *r, char *scope, size_t cap, bool *has_parent,
                      rid_t *parent)
{
    scope[0] = '\0';
    *has_parent = false;
    const schema_type *t = r->t;
    if (!t->scope_field)
        return 0;
    const schema_field *f = schema_field_by_num(t, t->scope_field);
    uint32_t k = (uint32_t)(f - t->fields);
    const fs_value *v = r->staged[k] ? &r->sval[k] : &r->view[k].value;
    if (f->kind == KIND_SCOPE) {
        if (v->kind == VAL_STR)
            snprintf(scope, cap, "%.*s", (int)v->u.s.len, v->u.s.p);
        return 0;
    }
    if (v->kind != VAL_REF)
        return 0;
    *has_parent = true;
    *parent = v->u.ref;
    return record_scope(r->db, parent, scope, cap);
}

int fieldsync_record_save(fieldsync_record *r) { return record_save(r, 0); }

int record_save(fieldsync_record *r, uint64_t min_base)
{
    if (!r)
        return FIELDSYNC_EINVAL;
    fieldsync_db *db = r->db;
    const schema_type *t = r->t;
    change *c = calloc(1, sizeof *c);
    if (!c)
        return sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
    int rc = 0;
    bool exists = rec_exists(r);
    uint64_t base = 0;
    for (uint32_t k = 0; k < r->n; k++) {
        if (!r->staged[k])
            continue;
        c->fields[c->n_fields].num = t->fields[k].num;
        c->fields[c->n_fields].v = r->sval[k];
        c->n_fields++;
        if (exists && r->view[k].version > base)
            base = r->view[k].version;
    }
    if (exists && min_base > base)
        base = min_base;
    if (!c->n_fields) {
        rc = sdk_fail(db, FIELDSYNC_EEMPTY, "nothing was set on %s %s", t->name, r->id_text);
        goto out;
    }
    if (exists && t->append_only) {
        rc = sdk_fail(db, FIELDSYNC_EIMMUTABLE, "%s records are append-only", t->name);
        goto out;
    }
    if (!exists) {
        for (uint32_t k = 0; k < r->n; k++)
            if (t->fields[k].required && !r->staged[k]) {
                rc = sdk_fail(db, FIELDSYNC_EREQUIRED, "a new %s needs field '%s'", t->name,
                              t->fields[k].name);
                goto out;
            }
    }
    change_sort_fields(c);
    c->type = t->id;
    c->record = r->id;
    c->base = base;
    c->dseq = DSEQ_UNNUMBERED;
    c->role = (uint8_t)(db->role < 0 ? 0 : db->role);
    char scope[128];
    bool has_parent;
    rid_t parent;
    if ((rc = save_scope(r, scope, sizeof scope, &has_parent, &parent)))
        goto out;
    if ((rc = sdk_begin(db)))
        goto out;
    c->hlc = sdk_clock_above(db, base);
    fs_error e = {0};
    if ((rc = change_validate(db->s, c, &e))) {
        sdk_rollback(db);
        rc = sdk_from_fs(db, rc, &e);
        goto out;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (change_pack(&pk, c, false)) {
        msgpack_sbuffer_destroy(&sb);
        sdk_rollback(db);
        rc = sdk_fail(db, FIELDSYNC_ENOMEM, "out of memory");
        goto out;
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->sql,
                           "INSERT INTO dev_outbox(dseq, priority, created, type, record, scope, "
                           "parent, hlc, body) VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           -1, &s, NULL)) {
        msgpack_sbuffer_destroy(&sb);
        rc = sdk_sqlfail(db, "outbox");
        sdk_rollback(db);
        goto out;
    }
    sqlite3_bind_int(s, 1, db->fast[t->id] ? 0 : 1);
    sqlite3_bind_int64(s, 2, sdk_now_ms());
    sqlite3_bind_int(s, 3, t->id);
    sqlite3_bind_blob(s, 4, r->id.b, 16, SQLITE_STATIC);
    if (scope[0])
        sqlite3_bind_text(s, 5, scope, -1, SQLITE_STATIC);
    if (has_parent)
        sqlite3_bind_blob(s, 6, parent.b, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)c->hlc);
    sqlite3_bind_blob(s, 8, sb.data, (int)sb.size, SQLITE_STATIC);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    msgpack_sbuffer_destroy(&sb);
    if (step != SQLITE_DONE) {
        rc = sdk_sqlfail(db, "outbox");
        sdk_rollback(db);
        goto out;
    }
    if ((rc = sdk_save_clock(db)) || (rc = sdk_commit(db))) {
        sdk_rollback(db);
        goto out;
    }
    /* saved: the staged values are now pending in the view */
    for (uint32_t k = 0; k < r->n; k++) {
        r->staged[k] = false;
        free(r->sstr[k]);
        r->sstr[k] = NULL;
    }
    rc = record_refresh(r);
out:
    free(c);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------ */

int fieldsync_record_field_count(const fieldsync_record *r) { return r ? (int)r->n : 0; }

int fieldsync_record_field_at(fieldsync_record *r, int i, fieldsync_field *out)
{
    if (!r || !out || i < 0 || (uint32_t)i >= r->n)
        return r ? sdk_fail(r->db, FIELDSYNC_EINVAL, "field index %d out of range", i)
                 : FIELDSYNC_EINVAL;
    const schema_field *f = &r->t->fields[i];
    /* staged values show as what will be saved */
    const fs_value *v = r->staged[i] ? &r->sval[i] : &r->view[i].value;
    bool present = r->staged[i] || (r->view[i].present && v->kind != VAL_NIL);
    if (present && v->kind == VAL_SET && !v->u.set.add && !r->staged[i])
        present = false;
    memset(out, 0, sizeof *out);
    out->name = f->name;
    out->kind = schema_kind_name(f->kind);
    out->label_zh = f->label_zh ? f->label_zh : "";
    out->label_en = f->label_en ? f->label_en : "";
    out->present = present;
    out->pending = r->pending[i] || r->staged[i];
    out->version = r->view[i].version;
    out->author = r->view[i].author;
    r->text[i].len = 0;
    r->json[i].len = 0;
    fs_value nil = {.kind = VAL_NIL};
    const fs_value *shown = present ? v : &nil;
    if (value_text(&r->text[i], f, shown) || sb_puts(&r->text[i], "") ||
        value_json(&r->json[i], f, shown) || sb_puts(&r->json[i], ""))
        return sdk_fail(r->db, FIELDSYNC_ENOMEM, "out of memory");
    out->text = r->text[i].p;
    out->json = r->json[i].p;
    if (shown->kind == VAL_INT)
        out->number = shown->u.i;
    else if (shown->kind == VAL_BOOL)
        out->number = shown->u.b;
    else if (shown->kind == VAL_SET)
        out->number = (int64_t)shown->u.set.add;
    return 0;
}

int fieldsync_get(fieldsync_record *r, const char *field, fieldsync_field *out)
{
    if (!r || !field || !out)
        return r ? sdk_fail(r->db, FIELDSYNC_EINVAL, "field and out are required")
                 : FIELDSYNC_EINVAL;
    const schema_field *f = schema_field_by_name(r->t, field);
    if (!f)
        return sdk_fail(r->db, FIELDSYNC_EFIELD, "%s has no field '%s'", r->t->name, field);
    return fieldsync_record_field_at(r, (int)(f - r->t->fields), out);
}

bool record_workflow_open(const fieldsync_record *r)
{
    for (uint32_t k = 0; k < r->n; k++) {
        const schema_field *f = &r->t->fields[k];
        if (f->rule != RULE_WORKFLOW || !f->n_values)
            continue;
        const fs_value *v = &r->view[k].value;
        if (r->view[k].present && v->kind == VAL_INT && v->u.i == (int64_t)f->n_values - 1)
            return false;
    }
    return true;
}

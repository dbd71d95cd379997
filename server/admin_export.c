/*
 * admin_export.c — the ledger as CSV from the command line:
 *   export TOWNSHIP [--out FILE] [--type TYPE]   the township's records of TYPE
 *   export-overdue TOWNSHIP [--out FILE] [--ledger FILE]   children overdue for a visit
 *
 * The 信息台账 a township keeps on paper or in a spreadsheet, from the live store. Both
 * commands call the same writers as the supervisor page's downloads (ledger_csv.c), so the
 * page and the command line cannot disagree. Entirely driven by the schema and the ledger
 * configuration — no type or field name appears in this file:
 *   export          TYPE is --type, or the first type of the schema with its own `kind:
 *                   scope` field (in schema v1: child); one row per record: id, the scope
 *                   field, every other field in schema order, headed by field names
 *   export-overdue  the ledger (ledger.c) of the township's villages at this moment; one row
 *                   per child on file whose visit is overdue, most overdue first
 * Encoding: UTF-8 with a byte-order mark, RFC 4180 quoting, CRLF. With --out the file is
 * written to FILE.tmp-PID, fsynced and renamed: a reader never sees half an export.
 */
#include "admin.h"
#include "ledger.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const schema_type *export_type(admin_ctx *a, const char *name)
{
    if (name)
        return schema_type_by_name(a->schema, name);
    for (uint32_t i = 0; i < a->schema->n_types; i++) {
        const schema_type *t = &a->schema->types[i];
        const schema_field *f = t->scope_field ? schema_field_by_num(t, t->scope_field) : NULL;
        if (f && f->kind == KIND_SCOPE)
            return t;
    }
    return NULL;
}

/* The township's villages as a ledger scope (owned by vn). Exit status or 0. */
static int township_scope(admin_ctx *a, const char *town, village_names *vn, ledger_scope *sc)
{
    if (srvdb_village_names(a->db, town, vn))
        return admin_fail(a, SRV_EXIT_STORE, "%s: %s", a->db_path, sqlite3_errmsg(a->db));
    *sc = (ledger_scope){.codes = (const char (*)[33])vn->codes,
                         .names = (const char (*)[128])vn->names, .n = vn->n};
    return 0;
}

/* Where the CSV goes: stdout, or FILE.tmp-PID renamed to FILE by out_close. */
typedef struct out_file {
    FILE *f;
    const char *path;
    char tmp[4096];
} out_file;

static int out_open(admin_ctx *a, out_file *o, const char *path)
{
    o->path = path;
    o->f = stdout;
    if (!path)
        return 0;
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f)
        return admin_fail(a, SRV_EXIT_STORE, "cannot create %s: %s", o->tmp, strerror(errno));
    return 0;
}

/* Finishes the file (rows < 0: the export failed, why in errtext). Exit status or 0. */
static int out_close(admin_ctx *a, out_file *o, long rows, const char *errtext)
{
    if (!o->path) {
        fflush(stdout);
        return rows < 0 ? admin_fail(a, SRV_EXIT_STORE, "export failed: %s", errtext) : 0;
    }
    bool ok = rows >= 0 && fflush(o->f) == 0 && fsync(fileno(o->f)) == 0;
    ok = fclose(o->f) == 0 && ok;
    if (!ok || rename(o->tmp, o->path)) {
        unlink(o->tmp);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", o->path,
                          rows < 0 ? errtext : strerror(errno));
    }
    return 0;
}

/* Opens the store as the admin does (its clock is never saved: the daemon owns it). */
static int open_store(admin_ctx *a, store **st)
{
    fs_error e = {0};
    if (store_open(a->db_path, a->schema, STORE_AUTHORITY, st, &e))
        return admin_fail(a, SRV_EXIT_STORE, "%s", e.msg);
    return 0;
}

static void close_store(store *st)
{
    /* store_close saves a non-zero clock, which could write back an older value than the
     * running daemon's */
    store_clock(st)->last = 0;
    store_close(st);
}

static void print_done(admin_ctx *a, const char *town, const char *what, long rows,
                       const char *out)
{
    if (a->json) {
        printf("{\"ok\":true,\"township\":");
        json_str(stdout, town);
        printf(",\"type\":");
        json_str(stdout, what);
        printf(",\"rows\":%ld,\"out\":", rows);
        json_str(stdout, out);
        printf("}\n");
    } else if (out) {
        fprintf(stderr, "%ld %s records of township %s written to %s\n", rows, what, town, out);
    }
}

/* Common checks of both commands: --json needs --out, schema, store, township. */
static int export_start(admin_ctx *a, const char *town, const char *out)
{
    if (a->json && !out)
        return admin_fail(a, SRV_EXIT_USAGE,
                          "with --json give --out FILE: the CSV cannot share stdout with JSON");
    int rc;
    if ((rc = admin_schema(a)) || (rc = admin_db(a, false)))
        return rc;
    if (!srvdb_township_exists(a->db, town))
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no township '%s': see fieldsyncd admin township list", town);
    return 0;
}

int cmd_export(admin_ctx *a)
{
    const char *town = a->pos[0], *out = admin_opt(a, "out");
    int rc = export_start(a, town, out);
    if (rc)
        return rc;
    const schema_type *t = export_type(a, admin_opt(a, "type"));
    if (!t || !t->scope_field)
        return admin_fail(a, SRV_EXIT_USAGE,
                          "no record type '%s' with a village in schema version %d",
                          admin_opt(a, "type") ? admin_opt(a, "type") : "(default)",
                          a->schema->version);
    village_names vn = {0};
    ledger_scope sc;
    store *st = NULL;
    out_file o;
    if ((rc = township_scope(a, town, &vn, &sc)) || (rc = open_store(a, &st)) ||
        (rc = out_open(a, &o, out)))
        goto done;
    long rows = csv_write_records(o.f, st, t, &sc);
    if ((rc = out_close(a, &o, rows, sqlite3_errmsg(store_db(st)))))
        goto done;
    print_done(a, town, t->name, rows, out);
done:
    if (st)
        close_store(st);
    village_names_free(&vn);
    return rc;
}

int cmd_export_overdue(admin_ctx *a)
{
    const char *town = a->pos[0], *out = admin_opt(a, "out");
    int rc = export_start(a, town, out);
    if (rc)
        return rc;
    const char *path = admin_opt(a, "ledger");
    if (!path)
        path = ledger_default_path(a->schema_path ? a->schema_path : schema_default_path());
    ledger_cfg *cfg = NULL;
    fs_error e = {0};
    if (ledger_config_load(path, a->schema, &cfg, &e))
        return admin_fail(a, SRV_EXIT_USAGE, "%s (give the ledger file with --ledger FILE)",
                          e.msg);
    village_names vn = {0};
    ledger_scope sc;
    store *st = NULL;
    ledger l = {0};
    out_file o;
    if ((rc = township_scope(a, town, &vn, &sc)) || (rc = open_store(a, &st)))
        goto done;
    if (ledger_build(st, cfg, &sc, srv_wall_ms(), &l, &e)) {
        rc = admin_fail(a, SRV_EXIT_STORE, "%s", e.msg);
        goto done;
    }
    if ((rc = out_open(a, &o, out)))
        goto done;
    long rows = csv_write_overdue(o.f, cfg, &l);
    if ((rc = out_close(a, &o, rows, "out of memory")))
        goto done;
    print_done(a, town, "overdue", rows, out);
done:
    ledger_free(&l);
    if (st)
        close_store(st);
    village_names_free(&vn);
    ledger_config_free(cfg);
    return rc;
}

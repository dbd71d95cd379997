/*
 * fieldsync — the command-line device: everything a field device does, for scripting, demos
 * and simulation. Built on the public SDK header alone (fieldsync.h), like any application.
 *
 *   fieldsync [--db FILE] [--json] [--schema FILE] COMMAND [ARGS]   (fieldsync --help)
 *
 * Exit codes: 0 ok; 1 usage (bad arguments, not enrolled); 2 refused or not found (a value the
 * schema refuses, an unknown id, or changes the server refused during this sync); 3 local store
 * or schema failure; 4 network (unreachable, lost, token refused, server error).
 * --json prints one JSON document on stdout (errors too: {"error": {...}}); without it output
 * is for people. Text is UTF-8 in and out, Chinese included.
 */
#include "fieldsync.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EX_OK = 0, EX_USAGE = 1, EX_REFUSED = 2, EX_STORE = 3, EX_NET = 4 };

static bool json;
static const char *db_path;
static const char *schema_path;

/* ---- output helpers ------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static const char *err_name(int code)
{
    switch (code) {
    case FIELDSYNC_EINVAL: return "EINVAL";
    case FIELDSYNC_ENOMEM: return "ENOMEM";
    case FIELDSYNC_ESTORE: return "ESTORE";
    case FIELDSYNC_ESCHEMA: return "ESCHEMA";
    case FIELDSYNC_ENOTFOUND: return "ENOTFOUND";
    case FIELDSYNC_ETYPE: return "ETYPE";
    case FIELDSYNC_EFIELD: return "EFIELD";
    case FIELDSYNC_EVALUE: return "EVALUE";
    case FIELDSYNC_EREQUIRED: return "EREQUIRED";
    case FIELDSYNC_EIMMUTABLE: return "EIMMUTABLE";
    case FIELDSYNC_EEMPTY: return "EEMPTY";
    case FIELDSYNC_ENOTENROLLED: return "ENOTENROLLED";
    case FIELDSYNC_ENETWORK: return "ENETWORK";
    case FIELDSYNC_EAUTH: return "EAUTH";
    case FIELDSYNC_EPROTOCOL: return "EPROTOCOL";
    case FIELDSYNC_EBUSY: return "EBUSY";
    case FIELDSYNC_ECANCELLED: return "ECANCELLED";
    case FIELDSYNC_ESEQUENCE: return "ESEQUENCE";
    }
    return "EUNKNOWN";
}

static int exit_code(int rc)
{
    switch (rc) {
    case FIELDSYNC_OK: return EX_OK;
    case FIELDSYNC_EINVAL:
    case FIELDSYNC_ENOTENROLLED: return EX_USAGE;
    case FIELDSYNC_ENOTFOUND:
    case FIELDSYNC_ETYPE:
    case FIELDSYNC_EFIELD:
    case FIELDSYNC_EVALUE:
    case FIELDSYNC_EREQUIRED:
    case FIELDSYNC_EIMMUTABLE:
    case FIELDSYNC_EEMPTY: return EX_REFUSED;
    case FIELDSYNC_ESTORE:
    case FIELDSYNC_ESCHEMA:
    case FIELDSYNC_ENOMEM: return EX_STORE;
    default: return EX_NET;
    }
}

/* Reports an SDK failure and returns the exit code. */
static int fail(fieldsync_db *db, int rc)
{
    const char *msg = fieldsync_errmsg(db);
    if (!msg || !*msg)
        msg = fieldsync_strerror(rc);
    if (json) {
        printf("{\"error\": {\"code\": \"%s\", \"message\": ", err_name(rc));
        json_str(stdout, msg);
        printf(", \"exit\": %d}}\n", exit_code(rc));
    }
    fprintf(stderr, "fieldsync: %s\n", msg);
    return exit_code(rc);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (json) {
        printf("{\"error\": {\"code\": \"USAGE\", \"message\": ");
        json_str(stdout, msg);
        printf(", \"exit\": 1}}\n");
    }
    fprintf(stderr, "fieldsync: %s (see --help)\n", msg);
    return EX_USAGE;
}

/* ---- help texts ------------------------------------------------------------------------- */

static const char main_help[] =
    "fieldsync — the command-line field device (offline-first; sync when there is signal)\n"
    "\n"
    "usage: fieldsync [--db FILE] [--json] [--schema FILE] COMMAND [ARGS]\n"
    "\n"
    "  --db FILE      the device's replica (default $FIELDSYNC_DB, else ./fieldsync.db)\n"
    "  --json         machine-readable output (one JSON document on stdout)\n"
    "  --schema FILE  schema file (default $FIELDSYNC_SCHEMA, else the built-in one)\n"
    "\n"
    "commands:\n"
    "  enrol --server ws://HOST:PORT --device ID --token TOKEN\n"
    "  status                                   identity, cursor, counts\n"
    "  child add --village V --name N [--field NAME=VALUE ...]\n"
    "  child edit ID --field NAME=VALUE [...] [--clear NAME]\n"
    "  household add --village V [--field NAME=VALUE ...]\n"
    "  household edit ID --field NAME=VALUE [...]\n"
    "  visit add --child ID [--kind K] [--at TIME] [--field NAME=VALUE ...]\n"
    "  report add --child ID --category C --observed TEXT [--at TIME] [--field ...]\n"
    "  report advance ID --status S [--note TEXT]\n"
    "  record add TYPE --field NAME=VALUE [...] | record edit ID --field NAME=VALUE [...]\n"
    "  list children [--village V] | list visits --child ID | list reports [--all]\n"
    "  list overdue [--village V]\n"
    "  show ID                                  a record as this device sees it\n"
    "  pending                                  changes waiting to be sent\n"
    "  refused [--dismiss ID]                   changes the server refused, with reasons\n"
    "  reviews                                  review items (supervisors; fetched by sync)\n"
    "  resolve REVIEW_ID --value VALUE          settle a review item\n"
    "  sync [--watch] [--progress] [--interval SECONDS]\n"
    "\n"
    "Values: enum and set values by code (e.g. gender=female); dates YYYY-MM-DD; times Unix\n"
    "seconds, now, or YYYY-MM-DDTHH:MM; sets a comma list of codes, '-code' removes.\n"
    "Exit codes: 0 ok, 1 usage, 2 refused or not found, 3 store error, 4 network.\n"
    "`fieldsync COMMAND --help` describes a command.\n";

typedef struct cmd_help {
    const char *name;
    const char *text;
} cmd_help;

static const cmd_help helps[] = {
    {"enrol", "usage: fieldsync enrol --server ws://HOST:PORT --device ID --token TOKEN\n"
              "Stores the server address and the device id and token printed by\n"
              "`fieldsyncd admin device enrol USER`. Works offline; the next sync uses them.\n"},
    {"status", "usage: fieldsync status\nShows the device identity, user and role (after the "
               "first sync), pull cursor,\nsequence numbers and the pending/refused/review "
               "counts.\n"},
    {"child", "usage: fieldsync child add --village V --name N [--field NAME=VALUE ...]\n"
              "       fieldsync child edit ID --field NAME=VALUE [...] [--clear NAME]\n"
              "Creates or edits a child's file (儿童档案). Any schema field by name, e.g.\n"
              "  --field gender=female --field birth_date=2012-03-04 --field risk_level=high\n"
              "Prints the record id. Saved into the outbox; sent at the next sync.\n"},
    {"household", "usage: fieldsync household add --village V [--field NAME=VALUE ...]\n"
                  "       fieldsync household edit ID --field NAME=VALUE [...]\n"},
    {"visit", "usage: fieldsync visit add --child ID [--kind K] [--at TIME] [--field ...]\n"
              "Records a visit (走访记录): kind defaults to home_visit, --at to now.\n"
              "Visits are append-only: correct one with `record add visit_amendment`.\n"},
    {"report", "usage: fieldsync report add --child ID --category C --observed TEXT [--at T]\n"
               "       fieldsync report advance ID --status S [--note TEXT]\n"
               "A mandatory report (强制报告) starts at status reported and travels in the\n"
               "fast lane: it reaches the server before queued visits. Statuses only move\n"
               "forward: reported police_accepted township_notified assessed assisting closed\n"},
    {"record", "usage: fieldsync record add TYPE --field NAME=VALUE [...]\n"
               "       fieldsync record edit ID --field NAME=VALUE [...] [--clear NAME]\n"
               "Any record type of the schema (assessment, visit_amendment, ...).\n"},
    {"list", "usage: fieldsync list children [--village V]\n"
             "       fieldsync list visits --child ID\n"
             "       fieldsync list reports [--all]   (open ones unless --all)\n"
             "       fieldsync list overdue [--village V]   (visits overdue, as the ledger)\n"
             "Records as this device sees them; '*' marks values not yet confirmed.\n"},
    {"show", "usage: fieldsync show ID\nEvery field of a record; pending (unconfirmed) values "
             "are marked.\n"},
    {"pending", "usage: fieldsync pending\nChanges waiting for the server, in sending order.\n"},
    {"refused", "usage: fieldsync refused [--dismiss ID]\nChanges the server refused, with its "
                "reason. They stay until dismissed.\n"},
    {"reviews", "usage: fieldsync reviews\nReview items of a supervisor's scope, as fetched by "
                "the last sync.\n"},
    {"resolve", "usage: fieldsync resolve REVIEW_ID --value VALUE\nSettles a review item by "
                "setting the field to VALUE (one of the two, or another).\n"},
    {"sync", "usage: fieldsync sync [--watch] [--progress] [--interval SECONDS]\n"
             "Pushes the outbox (fast lane first), pulls other devices' changes, fetches\n"
             "review items. --watch keeps syncing (exponential back-off when unreachable)\n"
             "until Ctrl-C. --progress shows a progress bar (default on a terminal).\n"
             "Tuning: --first-batch N, --max-batch N (push), --pull-batch N (changes per\n"
             "pull), --pull-commit N (pulled changes per transaction; 1: every batch).\n"
             "Exit 2 when the server refused changes (see `fieldsync refused`).\n"},
};

static bool want_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    return false;
}

static int print_help(const char *cmd)
{
    for (size_t i = 0; cmd && i < sizeof helps / sizeof helps[0]; i++)
        if (!strcmp(helps[i].name, cmd)) {
            fputs(helps[i].text, stdout);
            return EX_OK;
        }
    fputs(main_help, stdout);
    return EX_OK;
}

/* ---- argument helpers -------------------------------------------------------------------- */

typedef struct args {
    int argc;
    char **argv;
    bool *used;
} args;

/* Value of --name (marks both used); NULL if absent. */
static const char *opt(args *a, const char *name)
{
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i] && !strcmp(a->argv[i], name) && i + 1 < a->argc) {
            a->used[i] = a->used[i + 1] = true;
            return a->argv[i + 1];
        }
    return NULL;
}

static bool flag(args *a, const char *name)
{
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i] && !strcmp(a->argv[i], name)) {
            a->used[i] = true;
            return true;
        }
    return false;
}

/* Next unused positional argument. */
static const char *positional(args *a)
{
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i] && strncmp(a->argv[i], "--", 2)) {
            a->used[i] = true;
            return a->argv[i];
        }
    return NULL;
}

static int leftovers(args *a)
{
    for (int i = 0; i < a->argc; i++)
        if (!a->used[i])
            return usage_error("unexpected argument '%s'", a->argv[i]);
    return 0;
}

/* Applies every --field NAME=VALUE and --clear NAME. */
static int apply_fields(fieldsync_db *db, fieldsync_record *rec, args *a, int *n_set)
{
    for (int i = 0; i < a->argc; i++) {
        if (a->used[i] || i + 1 >= a->argc)
            continue;
        if (!strcmp(a->argv[i], "--field")) {
            a->used[i] = a->used[i + 1] = true;
            char *nv = a->argv[i + 1];
            char *eq = strchr(nv, '=');
            if (!eq)
                return usage_error("--field wants NAME=VALUE, got '%s'", nv);
            *eq = '\0';
            int rc = fieldsync_set_parse(rec, nv, eq + 1);
            *eq = '=';
            if (rc)
                return fail(db, rc);
            (*n_set)++;
        } else if (!strcmp(a->argv[i], "--clear")) {
            a->used[i] = a->used[i + 1] = true;
            int rc = fieldsync_set_null(rec, a->argv[i + 1]);
            if (rc)
                return fail(db, rc);
            (*n_set)++;
        }
    }
    return 0;
}

/* ---- printing records -------------------------------------------------------------------- */

static void print_record_json(fieldsync_record *rec)
{
    printf("{\"id\": ");
    json_str(stdout, fieldsync_record_id(rec));
    printf(", \"type\": ");
    json_str(stdout, fieldsync_record_type(rec));
    printf(", \"confirmed\": %s, \"pending\": %s, \"fields\": {",
           fieldsync_record_confirmed(rec) ? "true" : "false",
           fieldsync_record_pending(rec) ? "true" : "false");
    int n = fieldsync_record_field_count(rec), k = 0;
    for (int i = 0; i < n; i++) {
        fieldsync_field f;
        if (fieldsync_record_field_at(rec, i, &f) || !f.present)
            continue;
        printf("%s", k++ ? ", " : "");
        json_str(stdout, f.name);
        printf(": %s", f.json);
    }
    printf("}, \"pending_fields\": [");
    k = 0;
    for (int i = 0; i < n; i++) {
        fieldsync_field f;
        if (fieldsync_record_field_at(rec, i, &f) || !f.pending)
            continue;
        printf("%s", k++ ? ", " : "");
        json_str(stdout, f.name);
    }
    printf("]}");
}

static void print_record_line(fieldsync_record *rec)
{
    printf("%s %s", fieldsync_record_id(rec), fieldsync_record_type(rec));
    int n = fieldsync_record_field_count(rec);
    for (int i = 0; i < n; i++) {
        fieldsync_field f;
        if (fieldsync_record_field_at(rec, i, &f) || !f.present)
            continue;
        printf("  %s=%s%s", f.name, f.text, f.pending ? "*" : "");
    }
    printf("\n");
}

static void print_record_full(fieldsync_record *rec)
{
    printf("%s %s%s\n", fieldsync_record_type(rec), fieldsync_record_id(rec),
           fieldsync_record_confirmed(rec) ? "" : "  (not yet confirmed by the server)");
    int n = fieldsync_record_field_count(rec);
    for (int i = 0; i < n; i++) {
        fieldsync_field f;
        if (fieldsync_record_field_at(rec, i, &f) || !f.present)
            continue;
        printf("  %-26s %-12s %s%s\n", f.name, f.label_zh, f.text,
               f.pending ? "   (pending)" : "");
    }
}

/* ---- commands ----------------------------------------------------------------------------- */

static int open_db(fieldsync_db **db)
{
    fieldsync_open_opts o = {.schema_path = schema_path};
    int rc = fieldsync_open(db_path, &o, db);
    return rc ? fail(NULL, rc) : 0;
}

static int cmd_enrol(fieldsync_db *db, args *a)
{
    const char *server = opt(a, "--server"), *device = opt(a, "--device"),
               *token = opt(a, "--token");
    if (!server || !device || !token)
        return usage_error("enrol needs --server, --device and --token");
    int rc = leftovers(a);
    if (rc)
        return rc;
    if ((rc = fieldsync_enrol(db, server, device, token)))
        return fail(db, rc);
    if (json) {
        printf("{\"enrolled\": true, \"server\": ");
        json_str(stdout, server);
        printf(", \"device\": ");
        json_str(stdout, device);
        printf("}\n");
    } else {
        printf("enrolled device %s with %s\n", device, server);
    }
    return EX_OK;
}

static int cmd_status(fieldsync_db *db, args *a)
{
    int rc = leftovers(a);
    if (rc)
        return rc;
    fieldsync_identity id;
    if ((rc = fieldsync_identity_get(db, &id)))
        return fail(db, rc);
    if (json) {
        printf("{\"enrolled\": %s, \"device\": ", id.enrolled ? "true" : "false");
        json_str(stdout, id.device);
        printf(", \"server\": ");
        json_str(stdout, id.server);
        printf(", \"user\": ");
        json_str(stdout, id.user);
        printf(", \"role\": ");
        json_str(stdout, id.role);
        printf(", \"cursor\": %" PRIu64 ", \"acked_dseq\": %" PRIu64 ", \"next_dseq\": %" PRIu64
               ", \"last_sync_ms\": %" PRId64 ", \"pending\": %" PRId64 ", \"refused\": %" PRId64
               ", \"reviews\": %" PRId64 "}\n",
               id.cursor, id.acked_dseq, id.next_dseq, id.last_sync_ms, id.pending, id.refused,
               id.reviews);
        return EX_OK;
    }
    printf("device    %s\nserver    %s\nuser      %s (%s)\ncursor    %" PRIu64
           "\nacked     %" PRIu64 " (next dseq %" PRIu64 ")\npending   %" PRId64
           "\nrefused   %" PRId64 "\nreviews   %" PRId64 "\n",
           id.enrolled ? id.device : "(not enrolled)", id.server, id.user[0] ? id.user : "?",
           id.role[0] ? id.role : "role unknown until the first sync", id.cursor, id.acked_dseq,
           id.next_dseq, id.pending, id.refused, id.reviews);
    return EX_OK;
}

static int saved(fieldsync_record *rec, const char *verb)
{
    if (json) {
        printf("{\"id\": ");
        json_str(stdout, fieldsync_record_id(rec));
        printf(", \"type\": ");
        json_str(stdout, fieldsync_record_type(rec));
        printf(", \"%s\": true, \"record\": ", verb);
        print_record_json(rec);
        printf("}\n");
    } else {
        printf("%s\n", fieldsync_record_id(rec));
    }
    return EX_OK;
}

/* Creates a record of type: preset (field, value) pairs, then --field options. */
static int add_record(fieldsync_db *db, const char *type, const char *const *preset, args *a)
{
    fieldsync_record *rec;
    int rc = fieldsync_record_new(db, type, &rec);
    if (rc)
        return fail(db, rc);
    int n = 0;
    for (int i = 0; preset && preset[i]; i += 2) {
        if (!preset[i + 1])
            continue;
        if ((rc = fieldsync_set_parse(rec, preset[i], preset[i + 1]))) {
            rc = fail(db, rc);
            goto out;
        }
        n++;
    }
    if ((rc = apply_fields(db, rec, a, &n)) || (rc = leftovers(a)))
        goto out;
    if ((rc = fieldsync_record_save(rec))) {
        rc = fail(db, rc);
        goto out;
    }
    rc = saved(rec, "created");
out:
    fieldsync_record_free(rec);
    return rc;
}

static int edit_record(fieldsync_db *db, const char *id, const char *const *preset, args *a)
{
    if (!id)
        return usage_error("which record? (an id)");
    fieldsync_record *rec;
    int rc = fieldsync_record_load(db, id, &rec);
    if (rc)
        return fail(db, rc);
    int n = 0;
    for (int i = 0; preset && preset[i]; i += 2) {
        if (!preset[i + 1])
            continue;
        if ((rc = fieldsync_set_parse(rec, preset[i], preset[i + 1]))) {
            rc = fail(db, rc);
            goto out;
        }
        n++;
    }
    if ((rc = apply_fields(db, rec, a, &n)) || (rc = leftovers(a)))
        goto out;
    if (!n) {
        rc = usage_error("nothing to change: give --field NAME=VALUE");
        goto out;
    }
    if ((rc = fieldsync_record_save(rec))) {
        rc = fail(db, rc);
        goto out;
    }
    rc = saved(rec, "updated");
out:
    fieldsync_record_free(rec);
    return rc;
}

static int cmd_typed(fieldsync_db *db, const char *type, args *a)
{
    const char *verb = positional(a);
    if (!verb)
        return usage_error("%s: add or edit?", type);
    if (!strcmp(verb, "add")) {
        if (!strcmp(type, "child")) {
            const char *v = opt(a, "--village"), *n = opt(a, "--name");
            if (!v || !n)
                return usage_error("child add needs --village and --name");
            const char *p[] = {"village", v, "name", n, NULL};
            return add_record(db, type, p, a);
        }
        if (!strcmp(type, "household")) {
            const char *v = opt(a, "--village");
            if (!v)
                return usage_error("household add needs --village");
            const char *p[] = {"village", v, NULL};
            return add_record(db, type, p, a);
        }
        if (!strcmp(type, "visit")) {
            const char *c = opt(a, "--child"), *k = opt(a, "--kind"), *at = opt(a, "--at");
            if (!c)
                return usage_error("visit add needs --child");
            const char *p[] = {"child", c, "kind", k ? k : "home_visit", "visited_at",
                               at ? at : "now", NULL};
            return add_record(db, type, p, a);
        }
        if (!strcmp(type, "report")) {
            const char *c = opt(a, "--child"), *cat = opt(a, "--category"),
                       *obs = opt(a, "--observed"), *at = opt(a, "--at");
            if (!c || !cat || !obs)
                return usage_error("report add needs --child, --category and --observed");
            const char *p[] = {"child", c, "category", cat, "observed", obs, "observed_at",
                               at ? at : "now", "status", "reported", NULL};
            return add_record(db, type, p, a);
        }
        const char *t = positional(a); /* record add TYPE */
        if (!t)
            return usage_error("record add needs a TYPE");
        return add_record(db, t, NULL, a);
    }
    if (!strcmp(verb, "edit"))
        return edit_record(db, positional(a), NULL, a);
    if (!strcmp(verb, "advance") && !strcmp(type, "report")) {
        const char *id = positional(a), *st = opt(a, "--status"), *note = opt(a, "--note");
        if (!st)
            return usage_error("report advance needs --status");
        const char *p[] = {"status", st, "handler_note", note, NULL};
        if (!note)
            p[2] = NULL;
        return edit_record(db, id, p, a);
    }
    return usage_error("%s: unknown action '%s'", type, verb);
}

typedef struct list_ctx {
    int n;
} list_ctx;

static int list_cb(void *ctx, fieldsync_record *rec)
{
    list_ctx *l = ctx;
    if (json) {
        printf("%s", l->n ? ",\n " : "");
        print_record_json(rec);
    } else {
        print_record_line(rec);
    }
    l->n++;
    return 0;
}

static int overdue_cb(void *ctx, const fieldsync_overdue_info *in)
{
    list_ctx *l = ctx;
    char last[32] = "never", due[32];
    struct tm tm;
    time_t t = (time_t)(in->due_ms / 1000);
    localtime_r(&t, &tm);
    strftime(due, sizeof due, "%Y-%m-%d", &tm);
    if (in->last_visit_ms) {
        t = (time_t)(in->last_visit_ms / 1000);
        localtime_r(&t, &tm);
        strftime(last, sizeof last, "%Y-%m-%d", &tm);
    }
    if (json) {
        printf("%s{\"id\": \"%s\", \"name\": ", l->n ? ",\n " : "", in->id);
        json_str(stdout, in->name);
        printf(", \"village\": ");
        json_str(stdout, in->village);
        printf(", \"risk\": \"%s\", \"since_ms\": %lld, \"last_visit_ms\": %lld, "
               "\"interval_days\": %d, \"due_ms\": %lld, \"days_overdue\": %lld, "
               "\"pending\": %s}",
               in->risk, (long long)in->since_ms, (long long)in->last_visit_ms,
               (int)in->interval_days, (long long)in->due_ms, (long long)in->days_overdue,
               in->pending ? "true" : "false");
    } else {
        printf("%s%s  %s  %s  risk %s  last visit %s  due %s  %lld days overdue\n",
               in->pending ? "*" : " ", in->id, in->village, in->name, in->risk[0] ? in->risk : "-",
               last, due, (long long)in->days_overdue);
    }
    l->n++;
    return 0;
}

static int cmd_list(fieldsync_db *db, args *a)
{
    const char *what = positional(a);
    if (!what)
        return usage_error("list what? children, visits or reports");
    list_ctx l = {0};
    int rc;
    if (json)
        printf("[");
    if (!strcmp(what, "children")) {
        const char *v = opt(a, "--village");
        if ((rc = leftovers(a)))
            return rc;
        rc = fieldsync_children(db, v, list_cb, &l);
    } else if (!strcmp(what, "visits")) {
        const char *c = opt(a, "--child");
        if (!c)
            return usage_error("list visits needs --child");
        if ((rc = leftovers(a)))
            return rc;
        rc = fieldsync_visits(db, c, list_cb, &l);
    } else if (!strcmp(what, "overdue")) {
        const char *v = opt(a, "--village");
        if ((rc = leftovers(a)))
            return rc;
        rc = fieldsync_overdue(db, v, 0, overdue_cb, &l);
    } else if (!strcmp(what, "reports")) {
        bool all = flag(a, "--all");
        if ((rc = leftovers(a)))
            return rc;
        rc = all ? fieldsync_query(db, "report", NULL, NULL, list_cb, &l)
                 : fieldsync_open_reports(db, list_cb, &l);
    } else {
        if ((rc = leftovers(a)))
            return rc;
        /* any type name: list TYPE */
        rc = fieldsync_query(db, what, NULL, NULL, list_cb, &l);
    }
    if (json)
        printf("]\n");
    else if (!rc && !l.n)
        printf("(none)\n");
    return rc ? fail(db, rc) : EX_OK;
}

static int cmd_show(fieldsync_db *db, args *a)
{
    const char *id = positional(a);
    if (!id)
        return usage_error("show which record?");
    int rc = leftovers(a);
    if (rc)
        return rc;
    fieldsync_record *rec;
    if ((rc = fieldsync_record_load(db, id, &rec)))
        return fail(db, rc);
    if (json) {
        print_record_json(rec);
        printf("\n");
    } else {
        print_record_full(rec);
    }
    fieldsync_record_free(rec);
    return EX_OK;
}

static void fmt_ms(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static int change_cb(void *ctx, const fieldsync_change_info *in)
{
    list_ctx *l = ctx;
    char when[32];
    if (json) {
        printf("%s{\"id\": %" PRId64 ", \"dseq\": %" PRIu64 ", \"priority\": %d, \"created_ms\": %"
               PRId64 ", \"type\": ",
               l->n ? ",\n " : "", in->id, in->dseq, in->priority, in->created_ms);
        json_str(stdout, in->type);
        printf(", \"record\": ");
        json_str(stdout, in->record);
        printf(", \"summary\": ");
        json_str(stdout, in->summary);
        if (in->code) {
            printf(", \"code\": %d, \"code_name\": ", in->code);
            json_str(stdout, in->code_name);
            printf(", \"reason\": ");
            json_str(stdout, in->reason);
            printf(", \"refused_ms\": %" PRId64, in->refused_ms);
        }
        printf("}");
    } else {
        fmt_ms(in->code ? in->refused_ms : in->created_ms, when, sizeof when);
        if (in->code)
            printf("#%" PRId64 " %s %s %s %s: %s (%s)\n   %s\n", in->id, when, in->type,
                   in->record, in->code_name, in->reason, in->summary, "dismiss with "
                   "`fieldsync refused --dismiss ID`");
        else
            printf("#%" PRId64 " %s %s%s %s %s  %s\n", in->id, when,
                   in->priority ? "" : "[fast] ", in->type, in->record,
                   in->dseq ? "(sent, awaiting answer)" : "", in->summary);
    }
    l->n++;
    return 0;
}

static int cmd_pending(fieldsync_db *db, args *a, bool refused)
{
    int rc;
    if (refused) {
        const char *d = opt(a, "--dismiss");
        if (d) {
            if ((rc = leftovers(a)))
                return rc;
            char *end;
            long long id = strtoll(d, &end, 10);
            if (*end || !*d)
                return usage_error("--dismiss wants a number");
            if ((rc = fieldsync_refused_dismiss(db, id)))
                return fail(db, rc);
            if (json)
                printf("{\"dismissed\": %lld}\n", id);
            else
                printf("dismissed #%lld\n", id);
            return EX_OK;
        }
    }
    if ((rc = leftovers(a)))
        return rc;
    list_ctx l = {0};
    if (json)
        printf("[");
    rc = refused ? fieldsync_refused(db, change_cb, &l) : fieldsync_pending(db, change_cb, &l);
    if (json)
        printf("]\n");
    else if (!rc && !l.n)
        printf(refused ? "no refused changes\n" : "nothing pending\n");
    return rc ? fail(db, rc) : EX_OK;
}

static int review_cb(void *ctx, const fieldsync_review_info *in)
{
    list_ctx *l = ctx;
    if (json) {
        printf("%s{\"id\": %" PRId64 ", \"record\": ", l->n ? ",\n " : "", in->id);
        json_str(stdout, in->record);
        printf(", \"type\": ");
        json_str(stdout, in->type);
        printf(", \"field\": ");
        json_str(stdout, in->field);
        printf(", \"value_a\": ");
        json_str(stdout, in->value_a);
        printf(", \"author_a\": ");
        json_str(stdout, in->author_a);
        printf(", \"value_b\": ");
        json_str(stdout, in->value_b);
        printf(", \"author_b\": ");
        json_str(stdout, in->author_b);
        printf(", \"resolved\": %s}", in->resolved ? "true" : "false");
    } else {
        printf("#%" PRId64 " %s %s.%s: \"%s\" (%s) vs \"%s\" (%s)%s\n", in->id, in->record,
               in->type, in->field, in->value_a, in->author_a, in->value_b, in->author_b,
               in->resolved ? "  [resolution pending]" : "");
    }
    l->n++;
    return 0;
}

static int cmd_reviews(fieldsync_db *db, args *a)
{
    int rc = leftovers(a);
    if (rc)
        return rc;
    list_ctx l = {0};
    if (json)
        printf("[");
    rc = fieldsync_reviews(db, review_cb, &l);
    if (json)
        printf("]\n");
    else if (!rc && !l.n)
        printf("no review items (they are fetched by sync, for supervisors)\n");
    return rc ? fail(db, rc) : EX_OK;
}

static int cmd_resolve(fieldsync_db *db, args *a)
{
    const char *id = positional(a), *value = opt(a, "--value");
    if (!id || !value)
        return usage_error("resolve needs REVIEW_ID and --value");
    int rc = leftovers(a);
    if (rc)
        return rc;
    char *end;
    long long rid = strtoll(id, &end, 10);
    if (*end)
        return usage_error("REVIEW_ID is a number");
    if ((rc = fieldsync_review_resolve(db, rid, value)))
        return fail(db, rc);
    if (json)
        printf("{\"resolved\": %lld}\n", rid);
    else
        printf("review item #%lld resolved locally; sync to send it\n", rid);
    return EX_OK;
}

/* ---- sync -------------------------------------------------------------------------------- */

typedef struct sync_run {
    fieldsync_db *db;
    fieldsync_sync_opts o;
    bool watch, bar;
    int rc;
    fieldsync_sync_result res;
    pthread_t main_thread;
} sync_run;

static const char *phase_name(fieldsync_phase p)
{
    switch (p) {
    case FIELDSYNC_PHASE_CONNECT: return "connect";
    case FIELDSYNC_PHASE_PUSH: return "push";
    case FIELDSYNC_PHASE_PULL: return "pull";
    case FIELDSYNC_PHASE_REVIEWS: return "reviews";
    case FIELDSYNC_PHASE_DONE: return "done";
    case FIELDSYNC_PHASE_WAIT: return "wait";
    }
    return "?";
}

static void progress_cb(void *ctx, const fieldsync_progress *p)
{
    sync_run *r = ctx;
    if (!r->bar)
        return;
    if (p->phase == FIELDSYNC_PHASE_WAIT) {
        if (p->last_error)
            fprintf(stderr, "\r\033[K%s; retry %d in %.1f s", fieldsync_strerror(p->last_error),
                    p->attempt, (double)p->wait_ms / 1000);
        else
            fprintf(stderr, "\r\033[Ksynced; next sync in %.0f s (sooner on new changes)",
                    (double)p->wait_ms / 1000);
        fflush(stderr);
        return;
    }
    int width = 30, fill = 0;
    if (p->changes_total)
        fill = (int)((double)p->changes_done / (double)p->changes_total * width);
    if (fill > width)
        fill = width;
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K%-7s [%s] %" PRIu64 "/%" PRIu64 " changes  %.1f KiB",
            phase_name(p->phase), bar, p->changes_done, p->changes_total,
            (double)p->bytes_done / 1024);
    if (p->phase == FIELDSYNC_PHASE_DONE)
        fprintf(stderr, "\n");
    fflush(stderr);
}

static void *sync_thread(void *arg)
{
    sync_run *r = arg;
    r->rc = r->watch ? fieldsync_sync_auto(r->db, &r->o, progress_cb, r, &r->res)
                     : fieldsync_sync(r->db, &r->o, progress_cb, r, &r->res);
    pthread_kill(r->main_thread, SIGUSR1); /* wake the main thread's sigwait */
    return NULL;
}

static int cmd_sync(fieldsync_db *db, args *a)
{
    sync_run r;
    memset(&r, 0, sizeof r);
    r.db = db;
    r.watch = flag(a, "--watch");
    bool prog = flag(a, "--progress");
    bool noprog = flag(a, "--no-progress");
    r.o.no_compress = flag(a, "--no-compress");
    const char *iv = opt(a, "--interval"), *fb = opt(a, "--first-batch"),
               *mb = opt(a, "--max-batch"), *runs = opt(a, "--runs"),
               *pb = opt(a, "--pull-batch"), *pc = opt(a, "--pull-commit");
    if (iv)
        r.o.interval_ms = atoi(iv) * 1000;
    if (fb)
        r.o.first_batch = atoi(fb);
    if (mb)
        r.o.max_batch = atoi(mb);
    if (runs)
        r.o.max_runs = atoi(runs);
    if (pb)
        r.o.pull_batch = atoi(pb);
    if (pc)
        r.o.pull_commit = atoi(pc);
    int rc = leftovers(a);
    if (rc)
        return rc;
    r.bar = !noprog && (prog || (isatty(STDERR_FILENO) && !json));
    /* Ctrl-C / SIGTERM cancel the sync cleanly: the signals are taken by sigwait here, and
     * the sync runs on its own thread, which fieldsync_cancel() wakes */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    r.main_thread = pthread_self();
    pthread_t th;
    if (pthread_create(&th, NULL, sync_thread, &r))
        return usage_error("cannot start the sync thread");
    for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (sig == SIGUSR1)
            break;
        fieldsync_cancel(db);
    }
    pthread_join(th, NULL);
    if (r.bar)
        fprintf(stderr, "\r\033[K");
    rc = r.rc;
    if (json) {
        printf("{\"ok\": %s, \"sent\": %" PRIu64 ", \"accepted\": %" PRIu64
               ", \"duplicates\": %" PRIu64 ", \"refused\": %" PRIu64 ", \"received\": %" PRIu64
               ", \"reviews_opened\": %" PRIu64 ", \"reviews_pending\": %" PRIu64
               ", \"pending\": %" PRIu64 ", \"bytes_up\": %" PRIu64 ", \"bytes_down\": %" PRIu64
               ", \"cursor\": %" PRIu64 ", \"runs\": %d",
               rc ? "false" : "true", r.res.sent, r.res.accepted, r.res.duplicates,
               r.res.refused, r.res.received, r.res.reviews_opened, r.res.reviews_pending,
               r.res.pending, r.res.bytes_up, r.res.bytes_down, r.res.cursor, r.res.runs);
        if (rc) {
            printf(", \"error\": {\"code\": \"%s\", \"message\": ", err_name(rc));
            json_str(stdout, fieldsync_errmsg(db));
            printf("}");
        }
        printf("}\n");
    } else if (!rc || rc == FIELDSYNC_ECANCELLED) {
        printf("sent %" PRIu64 " (accepted %" PRIu64 ", duplicates %" PRIu64 ", refused %" PRIu64
               "), received %" PRIu64 ", pending %" PRIu64 ", reviews %" PRIu64 " (%" PRIu64
               " new); %" PRIu64 " B up, %" PRIu64 " B down\n",
               r.res.sent, r.res.accepted, r.res.duplicates, r.res.refused, r.res.received,
               r.res.pending, r.res.reviews_pending, r.res.reviews_opened, r.res.bytes_up,
               r.res.bytes_down);
        if (r.res.refused)
            printf("%" PRIu64 " change(s) refused by the server: see `fieldsync refused`\n",
                   r.res.refused);
    }
    if (rc == FIELDSYNC_ECANCELLED)
        return EX_OK;
    if (rc) {
        fprintf(stderr, "fieldsync: sync failed: %s\n", fieldsync_errmsg(db));
        return exit_code(rc);
    }
    return r.res.refused ? EX_REFUSED : EX_OK;
}

/* ---- main -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    db_path = getenv("FIELDSYNC_DB");
    if (!db_path)
        db_path = "fieldsync.db";
    /* global options anywhere before the command; --json anywhere */
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db_path = argv[++i];
        else if (!strcmp(argv[i], "--schema") && i + 1 < argc)
            schema_path = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return print_help(NULL);
        else
            break;
    }
    if (i >= argc) {
        fputs(main_help, stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[i++];
    args a = {.argc = argc - i, .argv = argv + i};
    a.used = calloc((size_t)a.argc + 1, sizeof *a.used);
    if (!a.used)
        return EX_STORE;
    for (int k = 0; k < a.argc; k++)
        if (!strcmp(a.argv[k], "--json")) {
            json = true;
            a.used[k] = true;
        }
    if (!strcmp(cmd, "help")) {
        free(a.used);
        return print_help(a.argc ? a.argv[0] : NULL);
    }
    if (want_help(a.argc, a.argv)) {
        bool known = false;
        for (size_t k = 0; k < sizeof helps / sizeof helps[0]; k++)
            known |= !strcmp(helps[k].name, cmd);
        free(a.used);
        if (!known)
            return usage_error("unknown command '%s'", cmd);
        return print_help(cmd);
    }
    static const char *const cmds[] = {"enrol", "status", "child", "household", "visit",
                                       "report", "record", "list", "show", "pending",
                                       "refused", "reviews", "resolve", "sync"};
    bool known = false;
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        known |= !strcmp(cmds[k], cmd);
    if (!known) {
        free(a.used);
        return usage_error("unknown command '%s'", cmd);
    }
    fieldsync_db *db;
    int rc = open_db(&db);
    if (rc) {
        free(a.used);
        return rc;
    }
    if (!strcmp(cmd, "enrol"))
        rc = cmd_enrol(db, &a);
    else if (!strcmp(cmd, "status"))
        rc = cmd_status(db, &a);
    else if (!strcmp(cmd, "child") || !strcmp(cmd, "household") || !strcmp(cmd, "visit") ||
             !strcmp(cmd, "report"))
        rc = cmd_typed(db, cmd, &a);
    else if (!strcmp(cmd, "record"))
        rc = cmd_typed(db, "record", &a);
    else if (!strcmp(cmd, "list"))
        rc = cmd_list(db, &a);
    else if (!strcmp(cmd, "show"))
        rc = cmd_show(db, &a);
    else if (!strcmp(cmd, "pending"))
        rc = cmd_pending(db, &a, false);
    else if (!strcmp(cmd, "refused"))
        rc = cmd_pending(db, &a, true);
    else if (!strcmp(cmd, "reviews"))
        rc = cmd_reviews(db, &a);
    else if (!strcmp(cmd, "resolve"))
        rc = cmd_resolve(db, &a);
    else
        rc = cmd_sync(db, &a);
    fieldsync_close(db);
    free(a.used);
    return rc;
}

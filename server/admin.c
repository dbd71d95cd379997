/*
 * admin.c — `fieldsyncd admin ...`: the command table, argument parsing, shared helpers.
 *
 * The admin commands work on the store file directly through their own SQLite connection,
 * so they run while the daemon serves (WAL: readers never block, and a write waits at most
 * the busy timeout for the daemon's current batch). The daemon notices their writes within
 * a second (PRAGMA data_version; main.c) and refreshes villages, scopes and revocations.
 *
 * Conventions every command keeps: one result on stdout (text for people, or exactly one JSON
 * object with --json, for scripts); problems on stderr saying what is wrong and the command
 * that fixes it; exit status 0 ok, 1 usage, 2 not found or conflict, 3 store error. Secrets
 * (tokens) are printed once and never logged.
 */
#include "admin.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct admin_cmd {
    const char *noun, *verb;   /* verb NULL: a one-word command */
    const char *args;          /* usage after the command words */
    const char *opts;          /* options taking a value, space-separated ("township label") */
    int min_pos, max_pos;
    int (*fn)(admin_ctx *a);
    const char *help;
} admin_cmd;

static const admin_cmd commands[] = {
    {"township", "add", "CODE NAME", "", 2, 2, cmd_township_add,
     "create a township (乡镇); CODE: letters, digits, _ - . (max 32)"},
    {"township", "list", "", "", 0, 0, cmd_township_list, "list townships"},
    {"village", "add", "CODE --township T NAME", "township", 2, 2, cmd_village_add,
     "create a village (村/居) of township T; its CODE is what records' scope holds"},
    {"village", "list", "[--township T]", "township", 0, 0, cmd_village_list, "list villages"},
    {"user", "add", "NAME --role R (--villages A,B | --township T | --children ID,...)",
     "role villages township children", 1, 1, cmd_user_add,
     "create a user with a role of the schema and a scope"},
    {"user", "list", "", "", 0, 0, cmd_user_list, "list users with their role and scope"},
    {"user", "scope", "NAME (--villages A,B | --township T | --children ID,...)",
     "villages township children", 1, 1, cmd_user_scope, "replace a user's scope"},
    {"user", "password", "NAME", "", 1, 1, cmd_user_password,
     "set a user's password, read from stdin (for the supervisor page)"},
    {"device", "enrol", "USER [--label L]", "label", 1, 1, cmd_device_enrol,
     "register a device for USER; prints its id and token ONCE"},
    {"device", "list", "[--user U]", "user", 0, 0, cmd_device_list, "list devices"},
    {"device", "revoke", "ID", "", 1, 1, cmd_device_revoke,
     "revoke a device: its token stops working, its sessions are closed"},
    {"device", "rotate", "ID", "", 1, 1, cmd_device_rotate,
     "give a device a new token (the old one stops working); prints it ONCE"},
    {"backup", NULL, "FILE", "", 1, 1, cmd_backup,
     "copy the store to FILE (online, consistent; safe while the daemon runs)"},
    {"restore", NULL, "FILE", "", 1, 1, cmd_restore,
     "replace the store with the backup FILE (stop the daemon first)"},
    {"export", NULL, "TOWNSHIP [--out FILE] [--type TYPE]", "out type", 1, 1, cmd_export,
     "CSV (UTF-8 with BOM) of the township's ledger of TYPE records (default: the first "
     "type with its own village field, the children)"},
    {"export-overdue", NULL, "TOWNSHIP [--out FILE] [--ledger FILE]", "out ledger", 1, 1,
     cmd_export_overdue,
     "CSV (UTF-8 with BOM) of the township's children overdue for a visit, most overdue first "
     "(the page's overdue list; intervals from the ledger file, default ledger.yaml beside "
     "the schema)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void admin_usage(FILE *f, const admin_cmd *only)
{
    if (only) {
        fprintf(f, "usage: fieldsyncd admin [--db PATH] [--json] %s%s%s %s\n  %s\n", only->noun,
                only->verb ? " " : "", only->verb ? only->verb : "", only->args, only->help);
        return;
    }
    fprintf(f, "usage: fieldsyncd admin [--db PATH] [--schema FILE] [--json] COMMAND ...\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const admin_cmd *c = &commands[i];
        fprintf(f, "  %s%s%s %s\n      %s\n", c->noun, c->verb ? " " : "",
                c->verb ? c->verb : "", c->args, c->help);
    }
    fprintf(f,
            "\nglobal options (anywhere on the line):\n"
            "  --db PATH       the store  [" SRV_DEFAULT_DB "]\n"
            "  --schema FILE   schema file  [$FIELDSYNC_SCHEMA or the built-in path]\n"
            "  --json          print one JSON object (errors too) instead of text\n"
            "  -h, --help      help (for a command: fieldsyncd admin device enrol --help)\n"
            "\nexit status: 0 ok, 1 usage, 2 not found or conflict, 3 store error.\n"
            "The commands work while fieldsyncd runs; restore needs it stopped.\n");
}

void json_str(FILE *f, const char *s)
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

int admin_fail(admin_ctx *a, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fieldsyncd admin: %s\n", msg);
    if (a && a->json) {
        printf("{\"ok\":false,\"exit\":%d,\"error\":", code);
        json_str(stdout, msg);
        printf("}\n");
    }
    return code;
}

const char *admin_opt(const admin_ctx *a, const char *name)
{
    for (int i = 0; i < a->nopt; i++)
        if (!strcmp(a->opt_name[i], name))
            return a->opt_val[i];
    return NULL;
}

int admin_db(admin_ctx *a, bool create)
{
    if (a->db)
        return 0;
    fs_error e = {0};
    int rc = srvdb_open(a->db_path, create, &a->db, &e);
    if (rc == FS_ENOTFOUND)
        return admin_fail(a, SRV_EXIT_NOTFOUND,
                          "no store at %s: give --db PATH, or create the store with "
                          "fieldsyncd admin --db %s township add CODE NAME",
                          a->db_path, a->db_path);
    if (rc)
        return admin_fail(a, SRV_EXIT_STORE, "%s", e.msg);
    return 0;
}

int admin_schema(admin_ctx *a)
{
    if (a->schema)
        return 0;
    fs_error e = {0};
    const char *path = a->schema_path ? a->schema_path : schema_default_path();
    if (schema_load(path, &a->schema, &e))
        return admin_fail(a, SRV_EXIT_USAGE, "%s (give the schema file with --schema FILE)",
                          e.msg);
    return 0;
}

int admin_begin(admin_ctx *a)
{
    fs_error e = {0};
    if (srvdb_exec(a->db, "BEGIN IMMEDIATE", &e))
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path, e.msg);
    return 0;
}

int admin_commit(admin_ctx *a)
{
    fs_error e = {0};
    if (srvdb_exec(a->db, "COMMIT", &e)) {
        admin_rollback(a);
        return admin_fail(a, SRV_EXIT_STORE, "cannot write %s: %s", a->db_path, e.msg);
    }
    return 0;
}

void admin_rollback(admin_ctx *a)
{
    sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
}

void admin_time(int64_t ms, char *buf, size_t cap)
{
    if (!ms) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

bool admin_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !utf8_valid(s, n) || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Is name one of the space-separated words of list? */
static bool word_in(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && !strncmp(p, name, n))
            return true;
        p = e;
    }
    return false;
}

int admin_main(int argc, char **argv)
{
    admin_ctx a;
    memset(&a, 0, sizeof a);
    a.db_path = SRV_DEFAULT_DB;
    const char *words[ADMIN_MAX_ARGS]; /* pos and opts come from here: same bound */
    int nw = 0;
    bool help = false;
    /* global options anywhere; the rest in order */
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--json")) {
            a.json = true;
        } else if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            help = true;
        } else if (!strcmp(s, "--db") || !strcmp(s, "--schema")) {
            if (i + 1 >= argc)
                return admin_fail(&a, SRV_EXIT_USAGE, "%s needs a value", s);
            *(s[2] == 'd' ? &a.db_path : &a.schema_path) = argv[++i];
        } else if (nw < (int)(sizeof words / sizeof words[0])) {
            words[nw++] = s;
        } else {
            return admin_fail(&a, SRV_EXIT_USAGE, "too many arguments");
        }
    }
    const admin_cmd *cmd = NULL;
    int used = 0;
    for (size_t i = 0; i < N_COMMANDS && !cmd; i++) {
        const admin_cmd *c = &commands[i];
        if (nw >= 1 && !strcmp(words[0], c->noun) &&
            (!c->verb || (nw >= 2 && !strcmp(words[1], c->verb)))) {
            cmd = c;
            used = c->verb ? 2 : 1;
        }
    }
    if (!cmd) {
        if (help || nw == 0) {
            admin_usage(help ? stdout : stderr, NULL);
            return help ? SRV_EXIT_OK : SRV_EXIT_USAGE;
        }
        admin_usage(stderr, NULL);
        return admin_fail(&a, SRV_EXIT_USAGE, "unknown command '%s%s%s'", words[0],
                          nw > 1 ? " " : "", nw > 1 ? words[1] : "");
    }
    if (help) {
        admin_usage(stdout, cmd);
        return SRV_EXIT_OK;
    }
    a.usage = cmd->args;
    for (int i = used; i < nw; i++) {
        const char *s = words[i];
        if (s[0] == '-' && s[1] == '-' && s[2]) {
            if (!word_in(cmd->opts, s + 2) || i + 1 >= nw) {
                admin_usage(stderr, cmd);
                return admin_fail(&a, SRV_EXIT_USAGE, "%s: %s", s,
                                  word_in(cmd->opts, s + 2) ? "needs a value"
                                                            : "not an option of this command");
            }
            a.opt_name[a.nopt] = s + 2;
            a.opt_val[a.nopt++] = words[++i];
        } else {
            a.pos[a.npos++] = s;
        }
    }
    if (a.npos < cmd->min_pos || a.npos > cmd->max_pos) {
        admin_usage(stderr, cmd);
        return admin_fail(&a, SRV_EXIT_USAGE, "%s%s%s wants %s", cmd->noun, cmd->verb ? " " : "",
                          cmd->verb ? cmd->verb : "", cmd->args);
    }
    if (auth_init())
        return admin_fail(&a, SRV_EXIT_STORE, "libsodium cannot start");
    int rc = cmd->fn(&a);
    sqlite3_close(a.db);
    schema_free(a.schema);
    return rc;
}

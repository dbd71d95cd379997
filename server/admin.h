/*
 * admin.h — shared by the admin subcommands (admin*.c) of fieldsyncd. Internal.
 *
 * admin.c parses the global options (--db, --schema, --json, --help), finds the command in
 * its table, splits the rest into positional arguments and the command's --options, and
 * calls the command. Commands print their result (text, or one JSON object with --json) on
 * stdout and problems on stderr, and return an exit status (srv_exit in server.h).
 */
#ifndef FS_ADMIN_H
#define FS_ADMIN_H

#include "server.h"

#include <stdio.h>

#define ADMIN_MAX_ARGS 16

typedef struct admin_ctx {
    const char *db_path;
    const char *schema_path;
    bool json;
    const char *pos[ADMIN_MAX_ARGS];  /* positional arguments of the command */
    int npos;
    const char *opt_name[ADMIN_MAX_ARGS]; /* --name value pairs of the command */
    const char *opt_val[ADMIN_MAX_ARGS];
    int nopt;
    const char *usage;                 /* the command's usage line, for messages */
    sqlite3 *db;                       /* opened by admin_db(), closed by admin_main() */
    schema *schema;                    /* loaded by admin_schema() */
} admin_ctx;

/* Prints "fieldsyncd admin: <text>" on stderr (and {"error": ...} on stdout with --json);
 * returns code, so commands can `return admin_fail(a, SRV_EXIT_NOTFOUND, ...)`. */
int admin_fail(admin_ctx *a, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The value of --name, or NULL. */
const char *admin_opt(const admin_ctx *a, const char *name);
/* Opens the store file (srv_ tables migrated). create: make it if missing. Returns 0 or an
 * exit status after printing why. */
int admin_db(admin_ctx *a, bool create);
/* Loads the schema (--schema or the default). 0 or an exit status. */
int admin_schema(admin_ctx *a);
/* Runs sql inside BEGIN IMMEDIATE .. COMMIT through fn; exit status on failure. */
int admin_begin(admin_ctx *a);
int admin_commit(admin_ctx *a);
void admin_rollback(admin_ctx *a);

/* Writes s as a JSON string (quoted, escaped) to f. */
void json_str(FILE *f, const char *s);
/* Text form of a Unix ms time, "2024-05-01 14:03:22" local time, or "-" for 0. */
void admin_time(int64_t ms, char *buf, size_t cap);
/* Checks a human name (user, township, village): 1..max bytes of UTF-8, no control chars. */
bool admin_name_ok(const char *s, size_t max);

/* Commands (one file per group). */
int cmd_township_add(admin_ctx *a);
int cmd_township_list(admin_ctx *a);
int cmd_village_add(admin_ctx *a);
int cmd_village_list(admin_ctx *a);
int cmd_user_add(admin_ctx *a);
int cmd_user_list(admin_ctx *a);
int cmd_user_scope(admin_ctx *a);
int cmd_user_password(admin_ctx *a);
int cmd_device_enrol(admin_ctx *a);
int cmd_device_list(admin_ctx *a);
int cmd_device_revoke(admin_ctx *a);
int cmd_device_rotate(admin_ctx *a);
int cmd_backup(admin_ctx *a);
int cmd_restore(admin_ctx *a);
int cmd_export(admin_ctx *a);
int cmd_export_overdue(admin_ctx *a);

#endif

/*
 * ledgercfg.h — the supervisor ledger's configuration (schema/ledger.yaml, docs/supervisor.md
 * §3) and the one rule both of its readers apply: when a child's visit is overdue.
 *
 * Two programs read the file: the server (server/ledger.c: the supervisor's page and the
 * admin exports) and the device SDK (client-sdk/overdue.c: fieldsync_overdue). They used to
 * read it with two parsers, which could drift apart; this module is the one reader, and
 * ledger_interval_days / ledger_due_ms / ledger_on_file are the one overdue rule, so a device
 * and the supervisor's page never disagree about who is overdue.
 *
 * The loader is strict (an unknown key, a field of the wrong kind, a report status neither
 * closed nor given a deadline stops it with "file:line: reason", FS_ESCHEMA) and resolves
 * every name against the loaded record schema into field pointers. It deliberately knows
 * nothing of the store or of sockets: the computation over records stays with its callers.
 *
 * Ownership: a ledger_cfg borrows the schema it was loaded against (the schema must outlive
 * it) and owns its strings (ledger_config_free). Loading runs once per start (server) or per
 * call (SDK); a loaded configuration is read-only and may be shared between threads.
 */
#ifndef FS_LEDGERCFG_H
#define FS_LEDGERCFG_H

#include "err.h"
#include "schema.h"

#include <stdbool.h>
#include <stdint.h>

#define LEDGER_MAX_COUNTS 64
#define LEDGER_MAX_COLUMNS 32

/* One column of the per-village counts. */
typedef struct ledger_count {
    const schema_field *f;     /* borrowed from the schema */
    int value;                 /* enum value index counted; -1: a bool field, counts true */
    char key[80];              /* stable id: "field" or "field:code" */
    char *label_zh, *label_en; /* owned */
    char *group_zh, *group_en; /* owned; the field's label when the column is one value of
                                  an each_value field, else NULL */
} ledger_count;

typedef struct ledger_cfg {
    char *path;                       /* owned: the file it came from */
    const schema *s;                  /* borrowed */
    /* subject */
    const schema_type *subject;
    const schema_field *s_name, *s_village, *s_status, *s_risk;
    uint64_t on_file;                 /* bit per status value counted as on file */
    const schema_field *columns[LEDGER_MAX_COLUMNS];
    uint32_t n_columns;
    ledger_count counts[LEDGER_MAX_COUNTS];
    uint32_t n_counts;
    /* visits */
    const schema_type *visit;
    const schema_field *v_subject, *v_time, *v_visitor;
    int32_t overdue_days[SCHEMA_MAX_ENUM]; /* per risk value; 0 = default_days */
    int32_t default_days;
    /* reports (NULL when loaded by ledger_config_load_visits without a reports section) */
    const schema_type *report;
    const schema_field *r_subject, *r_category, *r_status, *r_time;
    uint64_t closed;                  /* bit per report status value that is closed */
    int32_t deadline_hours[SCHEMA_MAX_ENUM]; /* per open status value */
    /* assessments (NULL likewise) */
    const schema_type *assessment;
    const schema_field *a_subject, *a_time;
} ledger_cfg;

/* Loads path against s. Returns 0 and *out (free with ledger_config_free), FS_ESCHEMA with
 * e->msg "path:line: reason", or FS_ENOMEM. Borrows s. */
int ledger_config_load(const char *path, const schema *s, ledger_cfg **out, fs_error *e);

/* The same for a reader that only needs the subject and its visits (the device's overdue
 * list): the `ledger: 1` line and the reports and assessments sections may be missing; every
 * key that is present is checked exactly as by ledger_config_load, with the same messages. */
int ledger_config_load_visits(const char *path, const schema *s, ledger_cfg **out,
                              fs_error *e);

void ledger_config_free(ledger_cfg *c); /* accepts NULL */

/* The default file: $FIELDSYNC_LEDGER, else ledger.yaml beside schema_path. Static buffer. */
const char *ledger_default_path(const char *schema_path);

/* ---- the overdue rule (docs/supervisor.md §2) ---------------------------------------- */

/* Whether a subject with this status (enum index, -1 if unset) is on file: unset, or one of
 * c->on_file. */
bool ledger_on_file(const ledger_cfg *c, int status);

/* The visit interval in days for a risk level (enum index, -1 if unset):
 * overdue_days[risk], else default_days. */
int32_t ledger_interval_days(const ledger_cfg *c, int risk);

/* When the next visit is due: the last visit (ms), or since_ms (when the file was opened)
 * if never visited (last_visit_ms 0), plus interval_days. A subject on file is overdue when
 * this is before now. */
int64_t ledger_due_ms(int32_t interval_days, int64_t last_visit_ms, int64_t since_ms);

/* Milliseconds of a time (Unix seconds) or date (YYYYMMDD, local midnight; 0 if mktime
 * fails) value x of field f. */
int64_t ledger_time_ms(const schema_field *f, int64_t x);

#endif

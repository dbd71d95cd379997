/*
 * ledger.h — the supervisor's ledger (信息台账): its configuration, its computation from the
 * store, and its CSV forms. Internal to server/; used by the daemon's web API (web_*.c) and
 * by the admin commands (admin_export.c), so that the page and the command line share one
 * implementation of every figure and every CSV row.
 *
 * Meaning lives in a file (schema/ledger.yaml, docs/supervisor.md §3), never in C: which
 * record type is the subject (the child), which of its fields are counted per village, which
 * type records visits and with which time and visitor fields, the visit interval per risk
 * level, the report type, its open statuses and their deadlines. ledger_config_load()
 * (sync/ledgercfg.h, shared with the device SDK) checks every name against the loaded record
 * schema and resolves it to field pointers, so the computation below only follows pointers.
 *
 * The computation (ledger_build) reads the engine's `records` and `fields` tables directly
 * after store_flush() (store.h: the field cache is written back first), one query per
 * village and record type, O(records of the scope). It is a snapshot: the caller recomputes
 * it when the page asks again (live events tell the page when). Nothing here writes.
 *
 * Ownership: a ledger_cfg borrows the schema it was loaded against (the schema must outlive
 * it); a ledger owns its arrays (ledger_free). Not thread-safe; the daemon has one thread.
 */
#ifndef FS_LEDGER_H
#define FS_LEDGER_H

#include "ledgercfg.h"
#include "schema.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The configuration (ledger_cfg, ledger_config_load, ledger_default_path) and the overdue
 * rule live in the engine, sync/ledgercfg.h, shared with the device SDK's overdue list. */

/* ---- the computed ledger ------------------------------------------------------------ */

typedef struct ledger_village {
    char code[33];
    char name[128];
    uint32_t on_file;                 /* subjects on file */
    uint32_t counts[LEDGER_MAX_COUNTS];
} ledger_village;

/* One subject (child). Values are the stored MessagePack bytes of each configured field,
 * decoded on output (value_unpack_stored, change.h). */
typedef struct ledger_subject {
    rid_t id;
    uint32_t village;                 /* index into ledger.villages */
    char *name;                       /* owned, "" if unset */
    int status, risk;                 /* enum indexes, -1 if unset */
    bool on_file;
    int64_t since_ms;                 /* earliest change of the record: the file was opened */
    int64_t last_visit_ms;            /* 0: never visited */
    char *last_visitor;               /* owned, NULL if never visited */
    int32_t interval_days;            /* visit interval for its risk level */
    int64_t due_ms;                   /* last visit (or since) + interval */
    bool overdue;                     /* on file and due_ms < now */
    uint8_t *cols[LEDGER_MAX_COLUMNS]; /* owned MessagePack values of cfg->columns, or NULL */
    uint32_t col_len[LEDGER_MAX_COLUMNS];
} ledger_subject;

typedef struct ledger_report {
    rid_t id;
    int64_t subject;                  /* index into ledger.subjects, -1 if not in scope */
    uint32_t village;
    int category, status;             /* enum indexes, -1 if unset */
    int64_t time_ms;                  /* the report's time field (observed at) */
    int64_t status_since_ms;          /* when its current status was set */
    int64_t deadline_ms;              /* status_since + deadline hours */
    bool past_deadline;
} ledger_report;

typedef struct ledger {
    int64_t now_ms;
    ledger_village *villages;
    uint32_t n_villages;
    ledger_subject *subjects;         /* sorted by village, then name */
    uint32_t n_subjects;
    ledger_report *reports;           /* open reports only, oldest first */
    uint32_t n_reports;
    uint32_t n_overdue, n_past_deadline;
    void *_index;                     /* private: subjects by id (ledger_find) */
} ledger;

/* The scope of a ledger: villages (code and display name), and optionally only these
 * subjects (a user whose scope is a list of children). */
typedef struct ledger_scope {
    const char (*codes)[33];
    const char (*names)[128];         /* may be NULL: names empty */
    uint32_t n;
    const rid_t *only;                /* sorted; NULL: every subject of the villages */
    size_t n_only;
} ledger_scope;

/* Computes the ledger of sc at now_ms. Flushes the store first. Returns 0 and *out (free
 * with ledger_free), FS_EIO (e filled) or FS_ENOMEM. */
int ledger_build(store *st, const ledger_cfg *cfg, const ledger_scope *sc, int64_t now_ms,
                 ledger *out, fs_error *e);
void ledger_free(ledger *l);

/* Index of a subject by id, or -1 (binary search over an index built by ledger_build). */
int64_t ledger_find(const ledger *l, const rid_t *id);

/* ---- CSV (UTF-8 with BOM, RFC 4180, CRLF) ------------------------------------------ */

/* Writes one CSV field (quoted when needed); first: no comma before it. */
void csv_field(FILE *f, const char *s, size_t n, bool first);
/* Text of value v of field fd for people: enum/set by zh label, bool 是/否, dates
 * YYYY-MM-DD, times local "YYYY-MM-DD HH:MM". Appends to buf (cap bytes, NUL-ended). */
void ledger_value_text(const schema_field *fd, const fs_value *v, bool en, char *buf, size_t cap);

/* The ledger of record type t in the villages of sc: one row per record, id, village, then
 * every field by schema name (the `admin export` format). Returns rows written or -1. */
long csv_write_records(FILE *f, store *st, const schema_type *t, const ledger_scope *sc);

/* The overdue visits of a computed ledger: one row per overdue child, most overdue first,
 * with village, name, risk, status, last visit, visitor, interval, due date, days overdue.
 * Returns rows written. */
long csv_write_overdue(FILE *f, const ledger_cfg *cfg, const ledger *l);

#endif

/*
 * fieldsync.h — the device SDK of fieldsync: a local replica that works offline, an outbox of
 * what the device recorded, and a sync session with the server. The only public header.
 *
 * Model (docs/sdk.md explains it with examples):
 *   - A fieldsync_db is one local replica file (SQLite). It holds the confirmed state (what the
 *     server accepted, from this device or pulled from others) APART from the device's pending
 *     changes (the outbox). What an application reads is confirmed state overlaid with pending
 *     changes; a change the server refuses leaves the outbox for the refused list, so the view
 *     falls back to the confirmed state and the reason is kept until the user dismisses it.
 *   - Records are created and edited through a fieldsync_record: typed setters validate each
 *     value against the schema (schema/fieldsync.yaml) by field NAME (enum and set values by
 *     code); fieldsync_record_save() turns what was set into one change in the outbox.
 *   - fieldsync_sync() connects (WebSocket, sub-protocol fieldsync.v1), pushes the outbox in
 *     small batches with the fast lane first (mandatory reports before routine visits), pulls
 *     what other devices did, and for supervisors fetches the review items.
 *
 * Errors: every function that can fail returns FIELDSYNC_OK (0) or a negative fieldsync_err;
 * fieldsync_errmsg(db) then describes the last failure on that handle in English, naming the
 * field or value involved. Nothing is asserted on bad input.
 *
 * Ownership words used below: "returns new (free with X)": the caller owns the result;
 * "borrows (valid until Y)": the pointer belongs to the library.
 *
 * Threading: one fieldsync_db per thread; records belong to the thread of their db.
 * fieldsync_sync()/fieldsync_sync_auto() may run on a thread of their own with their own
 * handle, and fieldsync_cancel() may be called on that handle from ANY thread (the only
 * function for which that is true). Several handles (threads or processes) may open one file.
 */
#ifndef FIELDSYNC_H
#define FIELDSYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------------------- */

typedef enum fieldsync_err {
    FIELDSYNC_OK = 0,
    FIELDSYNC_EINVAL = -1,        /* bad argument (NULL, malformed id, wrong call order) */
    FIELDSYNC_ENOMEM = -2,        /* out of memory */
    FIELDSYNC_ESTORE = -3,        /* the local SQLite file failed (disk full, locked, corrupt) */
    FIELDSYNC_ESCHEMA = -4,       /* the schema file is missing or invalid */
    FIELDSYNC_ENOTFOUND = -5,     /* no such record, field, review item or refused entry */
    FIELDSYNC_ETYPE = -6,         /* unknown record type */
    FIELDSYNC_EFIELD = -7,        /* unknown field, or a field this setter cannot set */
    FIELDSYNC_EVALUE = -8,        /* value invalid for the field (kind, range, enum code, UTF-8) */
    FIELDSYNC_EREQUIRED = -9,     /* a new record lacks a required field, or it was cleared */
    FIELDSYNC_EIMMUTABLE = -10,   /* the record is append-only or the field fixed at creation */
    FIELDSYNC_EEMPTY = -11,       /* save with nothing set */
    FIELDSYNC_ENOTENROLLED = -12, /* no server, device id or token: call fieldsync_enrol */
    FIELDSYNC_ENETWORK = -13,     /* cannot connect, connection lost, or timed out */
    FIELDSYNC_EAUTH = -14,        /* the server refused the device's token: enrol again */
    FIELDSYNC_EPROTOCOL = -15,    /* the server sent something malformed or a protocol error */
    FIELDSYNC_EBUSY = -16,        /* the server cannot store now: nothing lost, retry later */
    FIELDSYNC_ECANCELLED = -17,   /* fieldsync_cancel() stopped the sync */
    FIELDSYNC_ESEQUENCE = -18,    /* the server and this replica disagree on device sequences */
} fieldsync_err;

/* Fixed English text of a code. Static storage; never NULL. */
const char *fieldsync_strerror(int code);

typedef struct fieldsync_db fieldsync_db;
typedef struct fieldsync_record fieldsync_record;

/* Message of the last failure on db ("" if none). Borrows (valid until the next call on db).
 * Accepts NULL (returns the message of the last failed fieldsync_open on this thread). */
const char *fieldsync_errmsg(const fieldsync_db *db);

/* ---- opening ---------------------------------------------------------------------------- */

typedef struct fieldsync_open_opts {
    const char *schema_path;     /* NULL: $FIELDSYNC_SCHEMA, else the built-in schema path.
                                  * zstd dictionaries are loaded from the same folder. */
    const char *fast_lane_types; /* comma-separated type names pushed first; NULL: "report" */
} fieldsync_open_opts;

/* Opens (creating if needed) the replica at path. opts may be NULL. Returns FIELDSYNC_OK and
 * *out (returns new, free with fieldsync_close), FIELDSYNC_ESCHEMA, FIELDSYNC_ESTORE (not a
 * database, locked, newer format) or FIELDSYNC_ENOMEM; on failure *out is NULL and
 * fieldsync_errmsg(NULL) says why. */
int fieldsync_open(const char *path, const fieldsync_open_opts *opts, fieldsync_db **out);

/* Saves the clock and closes. Accepts NULL. Every record of db must be freed before. */
void fieldsync_close(fieldsync_db *db);

/* ---- identity ---------------------------------------------------------------------------- */

/* Records the server URL (ws://host:port or wss://host:port; the path /sync is implied),
 * the device id and token printed by `fieldsyncd admin device enrol`. Works offline. Enrolling
 * again with a DIFFERENT device id is refused (FIELDSYNC_EINVAL) while changes are pending:
 * their sequence numbers belong to the old id. Borrows the strings for the call. Errors:
 * FIELDSYNC_EINVAL (malformed URL or id, token over 128 bytes), FIELDSYNC_ESTORE. */
int fieldsync_enrol(fieldsync_db *db, const char *server_url, const char *device_id,
                    const char *token);

typedef struct fieldsync_identity {
    int enrolled;            /* server, device and token are set */
    char device[40];         /* device id text, "" if not enrolled */
    char server[256];        /* server URL */
    char user[72];           /* user name from the last welcome ("" before the first sync) */
    char role[32];           /* role name from the last welcome ("" before the first sync) */
    uint64_t cursor;         /* pull cursor: last server log sequence applied */
    uint64_t acked_dseq;     /* every change up to this device sequence has a result */
    uint64_t next_dseq;      /* the number the next change sent will get */
    int64_t last_sync_ms;    /* Unix ms of the last completed sync, 0 if never */
    int64_t pending;         /* changes in the outbox */
    int64_t refused;         /* refused changes kept for the user */
    int64_t reviews;         /* cached open review items (supervisors) */
} fieldsync_identity;

/* Fills *out. Errors: FIELDSYNC_EINVAL, FIELDSYNC_ESTORE. */
int fieldsync_identity_get(fieldsync_db *db, fieldsync_identity *out);

/* ---- records: creating and editing ----------------------------------------------------- */

/* Starts a new record of type (a schema type name, e.g. "child") with a fresh id. Returns
 * new (free with fieldsync_record_free); borrows db (valid until the record is freed).
 * Errors: FIELDSYNC_ETYPE, FIELDSYNC_ENOMEM. */
int fieldsync_record_new(fieldsync_db *db, const char *type, fieldsync_record **out);

/* Loads record id (text form) as the device sees it: confirmed state overlaid with the
 * device's pending changes. The result can be read and edited. Returns new (free with
 * fieldsync_record_free). Errors: FIELDSYNC_EINVAL (malformed id), FIELDSYNC_ENOTFOUND,
 * FIELDSYNC_ESTORE. */
int fieldsync_record_load(fieldsync_db *db, const char *id, fieldsync_record **out);

/* Frees rec and what was set on it but not saved. Accepts NULL. */
void fieldsync_record_free(fieldsync_record *rec);

/* Setters. field is the schema field name; each validates the value against the field's kind,
 * range, length and values at once and returns FIELDSYNC_EFIELD (unknown field or wrong kind
 * for this setter), FIELDSYNC_EVALUE (out of range, too long, bad UTF-8, unknown code,
 * malformed id), FIELDSYNC_EIMMUTABLE (the field cannot change after creation) with
 * fieldsync_errmsg() naming the field. Setting a field twice keeps the last value. Strings are
 * copied (borrowed for the call). Nothing reaches the outbox before fieldsync_record_save. */
int fieldsync_set_text(fieldsync_record *rec, const char *field, const char *utf8); /* text, scope */
int fieldsync_set_int(fieldsync_record *rec, const char *field, int64_t value);      /* int */
int fieldsync_set_enum(fieldsync_record *rec, const char *field, const char *code);  /* enum */
int fieldsync_set_date(fieldsync_record *rec, const char *field, int32_t yyyymmdd);  /* date */
int fieldsync_set_time(fieldsync_record *rec, const char *field, int64_t unix_s);    /* time */
int fieldsync_set_bool(fieldsync_record *rec, const char *field, int value);         /* bool */
int fieldsync_set_ref(fieldsync_record *rec, const char *field, const char *id);     /* ref */
int fieldsync_set_add(fieldsync_record *rec, const char *field, const char *code);   /* set */
int fieldsync_set_remove(fieldsync_record *rec, const char *field, const char *code);/* set */
/* Clears a field (FIELDSYNC_EREQUIRED for required fields, FIELDSYNC_EFIELD for sets). */
int fieldsync_set_null(fieldsync_record *rec, const char *field);
/* Parses value text by the field's kind: text as is; int decimal; enum a code; date
 * YYYY-MM-DD or YYYYMMDD; time Unix seconds, "now" or YYYY-MM-DDTHH:MM[:SS] (local time);
 * bool true/false/yes/no/1/0/是/否; ref an id; set a comma list of codes, each added, or
 * removed when prefixed with '-'. Same errors as the typed setters. */
int fieldsync_set_parse(fieldsync_record *rec, const char *field, const char *value);

/* Saves what was set as ONE change into the outbox, in one transaction: base = the greatest
 * version the device sees of those fields (0 for a new record), clock from the replica's
 * hybrid clock. A new record must have every required field (FIELDSYNC_EREQUIRED, naming
 * it); an append-only record cannot be saved twice (FIELDSYNC_EIMMUTABLE). Nothing set:
 * FIELDSYNC_EEMPTY. Also FIELDSYNC_ESTORE. On success the record shows the new values as
 * pending and can be edited and saved again. */
int fieldsync_record_save(fieldsync_record *rec);

/* ---- records: reading --------------------------------------------------------------------- */

/* Borrowed (valid until rec is freed): the record id (36-char text) and its type name. */
const char *fieldsync_record_id(const fieldsync_record *rec);
const char *fieldsync_record_type(const fieldsync_record *rec);
/* 1 if any field shows a value from a pending (not yet confirmed) change, else 0. */
int fieldsync_record_pending(const fieldsync_record *rec);
/* 1 if the server has confirmed the record's creation (it is in the confirmed state). */
int fieldsync_record_confirmed(const fieldsync_record *rec);

typedef struct fieldsync_field {
    const char *name;      /* schema field name */
    const char *kind;      /* text, int, date, time, enum, bool, ref, set, scope */
    const char *label_zh;  /* labels from the schema (may be "") */
    const char *label_en;
    int present;           /* the field has a value (not never set, not cleared) */
    int pending;           /* the value shown comes from a change not yet confirmed */
    const char *text;      /* value as text: enum/set codes, YYYY-MM-DD, local time
                            * YYYY-MM-DD HH:MM:SS, true/false, ids; "" if not present */
    const char *json;      /* value as a JSON literal ("null" if not present) */
    int64_t number;        /* int, date (YYYYMMDD), time (Unix s), enum index, bool 0/1 */
    uint64_t version;      /* hybrid clock of the latest change to the field, 0 if none */
    const char *author;    /* user who set the shown value ("" if unknown or none) */
} fieldsync_field;

/* Number of fields of the record's type (in schema order). */
int fieldsync_record_field_count(const fieldsync_record *rec);

/* Fills *out for the i-th field (0-based, schema order). The strings are borrowed (valid until
 * the next setter, save or free of rec). Errors: FIELDSYNC_EINVAL (i out of range). */
int fieldsync_record_field_at(fieldsync_record *rec, int i, fieldsync_field *out);

/* Same by field name. Errors: FIELDSYNC_EFIELD. */
int fieldsync_get(fieldsync_record *rec, const char *field, fieldsync_field *out);

/* ---- queries ------------------------------------------------------------------------------ */

/* Called once per record; rec is borrowed (valid for the call; do not free; it may be loaded
 * again with fieldsync_record_load to edit). Return non-zero to stop the iteration. */
typedef int (*fieldsync_record_cb)(void *ctx, fieldsync_record *rec);

/* Every record of type (as the device sees it: confirmed or pending) in village (the record's
 * scope; NULL for all) and, when parent_id is not NULL, whose scope-giving reference (e.g. a
 * visit's child) is parent_id. Ordered by record id (creation time). Errors:
 * FIELDSYNC_ETYPE, FIELDSYNC_EINVAL, FIELDSYNC_ESTORE, FIELDSYNC_ENOMEM. */
int fieldsync_query(fieldsync_db *db, const char *type, const char *village,
                    const char *parent_id, fieldsync_record_cb cb, void *ctx);
/* Children (type "child") of a village (NULL: all the device holds). */
int fieldsync_children(fieldsync_db *db, const char *village, fieldsync_record_cb cb, void *ctx);
/* Visits (type "visit") of one child. */
int fieldsync_visits(fieldsync_db *db, const char *child_id, fieldsync_record_cb cb, void *ctx);
/* Reports (type "report") whose workflow status is not at its final value (closed). */
int fieldsync_open_reports(fieldsync_db *db, fieldsync_record_cb cb, void *ctx);

/* One overdue child (the supervisor ledger's subject). Strings borrowed for the call. */
typedef struct fieldsync_overdue_info {
    const char *id;          /* the child's record id (fieldsync_record_load to open it) */
    const char *name;        /* the subject's name field ("" if none) */
    const char *village;     /* its village as the device sees it */
    const char *risk;        /* code of its risk level ("" if none) */
    int64_t since_ms;        /* when its file was opened: earliest clock of its fields */
    int64_t last_visit_ms;   /* its latest visit's time (Unix ms), 0 if never visited */
    int32_t interval_days;   /* visit interval of its risk level */
    int64_t due_ms;          /* (last_visit_ms, or since_ms if never visited) + interval */
    int64_t days_overdue;    /* whole days between due_ms and now */
    int pending;             /* the child's view or its latest visit is not yet confirmed */
} fieldsync_overdue_info;
/* info is borrowed for the call. Return non-zero to stop. */
typedef int (*fieldsync_overdue_cb)(void *ctx, const fieldsync_overdue_info *info);

/* The children of village (NULL: every village the device holds) whose visit is overdue, with
 * the meaning of the supervisor's ledger (docs/supervisor.md §2): on file, and (latest visit,
 * or when never visited the day the file was opened) + the interval of the child's risk level
 * is before now_ms (Unix ms; 0: the device's clock). Which type and fields those are, the
 * status values "on file" and the intervals come from the ledger configuration,
 * $FIELDSYNC_LEDGER or ledger.yaml beside the schema. Answered by SQLite over the confirmed
 * state, overlaid with the outbox: a visit saved on this device (not yet synced) counts at
 * once, and a child created or moved locally is listed by its local view. Ordered most
 * overdue first (due_ms, then name). Callbacks run after the replica was read, so they may
 * write. Errors: FIELDSYNC_EINVAL, FIELDSYNC_ESCHEMA (ledger configuration missing or naming
 * what the schema lacks, with file and line), FIELDSYNC_ESTORE, FIELDSYNC_ENOMEM. */
int fieldsync_overdue(fieldsync_db *db, const char *village, int64_t now_ms,
                      fieldsync_overdue_cb cb, void *ctx);

/* ---- outbox, refusals, reviews --------------------------------------------------------- */

typedef struct fieldsync_change_info {
    int64_t id;            /* local id (for fieldsync_refused_dismiss) */
    uint64_t dseq;         /* device sequence; 0 = never sent yet (numbered when first sent) */
    int priority;          /* 0 = fast lane (reports), 1 = bulk */
    int64_t created_ms;    /* Unix ms when saved on the device */
    const char *type;      /* record type name */
    const char *record;    /* record id text */
    const char *summary;   /* "field=value, ..." of what the change sets */
    int code;              /* refused: the server's per-change code (negative), else 0 */
    const char *code_name; /* refused: e.g. "ESCOPE" */
    const char *reason;    /* refused: the server's text */
    int64_t refused_ms;    /* refused: when the refusal arrived */
} fieldsync_change_info;
/* info and its strings are borrowed for the call. Return non-zero to stop. */
typedef int (*fieldsync_change_cb)(void *ctx, const fieldsync_change_info *info);

/* Pending changes in the order they will be sent (sent-but-unanswered first, then the fast
 * lane, then the rest by creation). Errors: FIELDSYNC_ESTORE. */
int fieldsync_pending(fieldsync_db *db, fieldsync_change_cb cb, void *ctx);
/* Refused changes, oldest first, with the server's reasons. Errors: FIELDSYNC_ESTORE. */
int fieldsync_refused(fieldsync_db *db, fieldsync_change_cb cb, void *ctx);
/* The user has seen refused entry id: forget it. Errors: FIELDSYNC_ENOTFOUND, _ESTORE. */
int fieldsync_refused_dismiss(fieldsync_db *db, int64_t id);

typedef struct fieldsync_review_info {
    int64_t id;            /* the server's review item id */
    const char *record;    /* record id text */
    const char *type;      /* record type name */
    const char *field;     /* field name */
    const char *value_a;   /* the two concurrent values, as text (fieldsync_field.text) */
    const char *author_a;
    uint64_t hlc_a;
    const char *value_b;
    const char *author_b;
    uint64_t hlc_b;
    int resolved;          /* 1 when this device saved a resolution not yet confirmed */
} fieldsync_review_info;
typedef int (*fieldsync_review_cb)(void *ctx, const fieldsync_review_info *info);

/* Review items as fetched by the last sync of a supervisor's device (cached locally, so they
 * can be read and resolved offline). Errors: FIELDSYNC_ESTORE. */
int fieldsync_reviews(fieldsync_db *db, fieldsync_review_cb cb, void *ctx);

/* Resolves review item id: saves a change of that field to value (parsed as in
 * fieldsync_set_parse) whose base is at least both clocks of the item, so the server closes
 * the item when it accepts it. Errors: FIELDSYNC_ENOTFOUND, the setter errors, _ESTORE. */
int fieldsync_review_resolve(fieldsync_db *db, int64_t id, const char *value);

/* ---- sync ---------------------------------------------------------------------------------- */

typedef enum fieldsync_phase {
    FIELDSYNC_PHASE_CONNECT = 0,  /* connecting and saying hello */
    FIELDSYNC_PHASE_PUSH = 1,     /* sending the outbox */
    FIELDSYNC_PHASE_PULL = 2,     /* receiving other devices' changes */
    FIELDSYNC_PHASE_REVIEWS = 3,  /* fetching review items (supervisors) */
    FIELDSYNC_PHASE_DONE = 4,
    FIELDSYNC_PHASE_WAIT = 5      /* fieldsync_sync_auto: waiting before the next attempt */
} fieldsync_phase;

typedef struct fieldsync_progress {
    fieldsync_phase phase;
    uint64_t changes_done;   /* push: changes answered; pull: changes received */
    uint64_t changes_total;  /* push: outbox size at start; pull: estimate from log_end */
    uint64_t bytes_done;     /* bytes sent (push) or received (pull) in this phase */
    uint64_t bytes_total;    /* push: estimate of the bytes to send; pull: 0 (unknown) */
    int attempt;             /* auto mode: consecutive failed attempts */
    int64_t wait_ms;         /* auto mode, PHASE_WAIT: time until the next attempt */
    int last_error;          /* auto mode: error of the last attempt, 0 if it succeeded */
} fieldsync_progress;
/* Called on the syncing thread; p is borrowed for the call. */
typedef void (*fieldsync_progress_cb)(void *ctx, const fieldsync_progress *p);

typedef struct fieldsync_sync_opts {
    int connect_timeout_ms;  /* 0: 15000 */
    int reply_timeout_ms;    /* no byte from the server for this long = link lost. 0: 60000 */
    int no_compress;         /* 1: never compress (announce dict 0) */
    int first_batch;         /* changes in the first push (0: 16) */
    int max_batch;           /* changes per push after the first (0: 200) */
    int max_batch_bytes;     /* uncompressed bytes per push (0: 65536): bounds a 2G round */
    int pull_batch;          /* changes per pull (0: 1000; at most the server's max_batch;
                              * the server also ends a message past 256 KiB) */
    int push_only;           /* skip the pull and reviews */
    /* fieldsync_sync_auto only: */
    int interval_ms;         /* between successful syncs (0: 30000); earlier when the outbox
                              * grows */
    int backoff_min_ms;      /* first retry delay after a failure (0: 1000) */
    int backoff_max_ms;      /* cap of the exponential back-off (0: 300000) */
    int max_runs;            /* stop after this many successful syncs (0: never) */
    int pull_commit;         /* pulled changes applied per transaction (0: 5000; 1: each
                              * batch alone); a group also commits after 1 s, at the end of
                              * the pull and when the sync stops early (cancel, lost link):
                              * a kill loses at most one group, pulled again next time */
} fieldsync_sync_opts;

typedef struct fieldsync_sync_result {
    uint64_t sent;           /* changes pushed (including resends) */
    uint64_t accepted;       /* accepted by the server */
    uint64_t duplicates;     /* the server had them already (a resend): no second effect */
    uint64_t refused;        /* refused: now in fieldsync_refused() */
    uint64_t received;       /* changes pulled from other devices and applied */
    uint64_t reviews_opened; /* review items fetched that were not cached before */
    uint64_t reviews_pending;/* open review items after the sync */
    uint64_t pending;        /* changes still in the outbox after the sync */
    uint64_t bytes_up, bytes_down; /* WebSocket payload bytes */
    uint64_t cursor;         /* pull cursor after the sync */
    int runs;                /* auto mode: successful syncs so far */
    char message[256];       /* last error or server message ("" if none) */
} fieldsync_sync_result;

/* One sync round trip: connect, hello/welcome, push the whole outbox (fast lane first,
 * batches bounded for slow links), pull to the end of the log, fetch review items when the
 * role may resolve them, close. opts, progress and result may be NULL. Blocks the calling
 * thread. Returns FIELDSYNC_OK when everything completed (refusals are not errors: see
 * result->refused); FIELDSYNC_ENOTENROLLED, FIELDSYNC_ENETWORK (unreachable, lost, timed
 * out), FIELDSYNC_EAUTH, FIELDSYNC_EPROTOCOL, FIELDSYNC_EBUSY, FIELDSYNC_ESEQUENCE,
 * FIELDSYNC_ECANCELLED, FIELDSYNC_ESTORE. Whatever completed before a failure stays done
 * (results committed, cursor advanced); nothing unacknowledged is lost: call again. */
int fieldsync_sync(fieldsync_db *db, const fieldsync_sync_opts *opts,
                   fieldsync_progress_cb progress, void *ctx, fieldsync_sync_result *result);

/* Automatic mode: syncs, then again every interval (sooner when local changes are saved by
 * any handle), retrying failures with exponential back-off and full jitter, until
 * fieldsync_cancel() (returns FIELDSYNC_ECANCELLED), until opts->max_runs successful syncs
 * (FIELDSYNC_OK), or a failure that retrying cannot cure: FIELDSYNC_EAUTH,
 * FIELDSYNC_ENOTENROLLED, FIELDSYNC_ESEQUENCE, FIELDSYNC_ESTORE. result accumulates over runs. */
int fieldsync_sync_auto(fieldsync_db *db, const fieldsync_sync_opts *opts,
                        fieldsync_progress_cb progress, void *ctx, fieldsync_sync_result *result);

/* Asks a running fieldsync_sync/_auto on db to stop as soon as possible (wakes the network
 * loop with lws_cancel_service). What was committed stays committed; a push in flight is
 * answered on the next sync. Safe from any thread (not from a signal handler: use sigwait).
 * Sticky: if no sync is running, the next one returns FIELDSYNC_ECANCELLED at once; the
 * request is consumed when a sync returns FIELDSYNC_ECANCELLED. */
void fieldsync_cancel(fieldsync_db *db);

/* Agent string sent in hello ("fieldsync-sdk/VERSION"). Static storage. */
const char *fieldsync_version(void);

#ifdef __cplusplus
}
#endif

#endif

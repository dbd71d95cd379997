/*
 * internal.h — what the SDK's files share and the public header hides. Not installed; the
 * SDK's own tests (tests/integration/client_local_*.c) include it to drive the outbox without
 * a server.
 *
 * Files: db.c (open, device tables, identity, errors), record.c (records, setters, the
 * confirmed+pending overlay, save), query.c (lists, refused, reviews), outbox.c (numbering at
 * send time with the fast lane, batches, push results, pulled changes), session.c (the
 * libwebsockets client and the protocol state machine), sync.c (fieldsync_sync, automatic
 * mode, cancel), text.c (values to and from text/JSON), overdue.c (the supervisor ledger's
 * overdue visits, answered by SQL over the confirmed state plus the outbox overlay).
 */
#ifndef FIELDSYNC_INTERNAL_H
#define FIELDSYNC_INTERNAL_H

#include "fieldsync.h"

#include "change.h"
#include "err.h"
#include "merge.h"
#include "rid.h"
#include "schema.h"
#include "store.h"
#include "wire.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#define FIELDSYNC_SDK_VERSION "0.1.0"

struct lws_context;

struct fieldsync_db {
    schema *s;                 /* owned */
    store *st;                 /* owned: the replica (STORE_REPLICA) */
    sqlite3 *sql;              /* borrowed from st */
    wire_dicts *dicts;         /* owned: zstd dictionaries from the schema folder */
    char *schema_dir;          /* owned */
    char *path;                /* owned: the replica file (for reopening) */
    uint64_t seen_seq;         /* store log end this handle's store cache reflects */
    char err[512];             /* last error message */
    bool fast[128];            /* record types of the fast lane, by type id */
    /* identity, cached from dev_identity */
    bool enrolled;
    rid_t device;
    char device_text[RID_TEXT_LEN + 1];
    char server[256];
    char token[WIRE_MAX_TOKEN + 1];
    char user[CHANGE_MAX_AUTHOR + 1];
    int role;                  /* index in schema roles, -1 before the first welcome */
    int records_open;          /* live fieldsync_record handles (close checks) */
    /* cancel: the only state touched by other threads */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int cancel;                /* fieldsync_cancel was called (under mu) */
    struct lws_context *lws;   /* the running sync's context or NULL (under mu) */
};

/* Sets db->err from a printf format and returns code. */
int sdk_fail(fieldsync_db *db, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Maps an engine code (fs_err) to a fieldsync_err and copies e's message into db->err. */
int sdk_from_fs(fieldsync_db *db, int fs_code, const fs_error *e);
/* SQLite failure: FIELDSYNC_ESTORE with sqlite's message. */
int sdk_sqlfail(fieldsync_db *db, const char *what);

/* Runs one statement with no result rows (a literal SQL string). */
int sdk_exec(fieldsync_db *db, const char *sql);
int sdk_begin(fieldsync_db *db);   /* BEGIN IMMEDIATE */
int sdk_commit(fieldsync_db *db);  /* COMMIT; ROLLBACK if it fails */
void sdk_rollback(fieldsync_db *db);

/* dev_identity key/values. get: FIELDSYNC_ENOTFOUND if absent. */
int kv_get_text(fieldsync_db *db, const char *key, char *buf, size_t cap);
int kv_get_u64(fieldsync_db *db, const char *key, uint64_t *out); /* 0 if absent */
int kv_set_text(fieldsync_db *db, const char *key, const char *value);
int kv_set_u64(fieldsync_db *db, const char *key, uint64_t value);
int64_t sdk_now_ms(void);
/* Tests only: the shift of the hybrid clock's wall clock, from FIELDSYNC_TEST_CLOCK_OFFSET_MS
 * (db.c); effective only in a process where that variable was set at the first open. */
extern int64_t sdk_test_clock_offset_ms;

/* Saves the replica's clock inside the caller's transaction. */
int sdk_save_clock(fieldsync_db *db);
/* A fresh clock value strictly above floor (the clock moves past floor first). */
uint64_t sdk_clock_above(fieldsync_db *db, uint64_t floor);

/* Makes the store handle current with the file: when another handle or process has applied
 * changes since this handle last looked (the log grew), the store is reopened, because its
 * field cache would otherwise serve what it read before. Returns a fieldsync_err. */
int sdk_refresh(fieldsync_db *db);
/* After this handle applied changes itself: its cache is current up to the log end. */
void sdk_seen(fieldsync_db *db);

/* Count of rows of a one-value query (e.g. "SELECT count(*) FROM dev_outbox"). */
int64_t sdk_count(fieldsync_db *db, const char *sql);

/* ---- text.c: values as text -------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;
int sb_putn(strbuf *b, const char *s, size_t n);
int sb_puts(strbuf *b, const char *s);
int sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sb_json_str(strbuf *b, const char *s, size_t n); /* quoted, escaped JSON string */
void sb_free(strbuf *b);

/* Appends the value of field f as display text / as a JSON literal. */
int value_text(strbuf *b, const schema_field *f, const fs_value *v);
int value_json(strbuf *b, const schema_field *f, const fs_value *v);
/* Parses text into *v for field f (VAL_STR borrows text). For sets: *v gets add/remove
 * masks. Returns a fieldsync_err, with db->err set. */
int value_parse(fieldsync_db *db, const schema_field *f, const char *text, fs_value *v);
/* "name=value, ..." of a push-form change body. */
int change_summary(fieldsync_db *db, const void *body, size_t len, strbuf *out,
                   const schema_type **type, rid_t *record);

/* ---- record.c ---------------------------------------------------------------------- */

/* Loads the overlay view of record id (no allocation of a new handle when rec is given). */
int record_load_id(fieldsync_db *db, const rid_t *id, fieldsync_record **out);
/* The record's scope as the device sees it ("" if none): confirmed, or from its pending
 * changes (or the pending changes of the record it takes its scope from). */
int record_scope(fieldsync_db *db, const rid_t *id, char *out, size_t cap);
/* fieldsync_record_save with a floor for base (review resolutions). */
int record_save(fieldsync_record *r, uint64_t min_base);
/* false when a workflow field of the view is at its final value (a closed report). */
bool record_workflow_open(const fieldsync_record *r);

/* ---- query.c ----------------------------------------------------------------------- */

/* Starts one read transaction for a query that runs many statements (each otherwise its own
 * transaction, taking and dropping SQLite's WAL read lock), with the store handle current
 * with the file inside it (sdk_refresh before BEGIN, checked again on the snapshot, so that
 * no load inside the transaction has to reopen the store). *own: whether this call began the
 * transaction (false inside the caller's). Returns a fieldsync_err. */
int sdk_read_begin(fieldsync_db *db, bool *own);
/* Ends what sdk_read_begin began (COMMIT of a read transaction when *own). */
void sdk_read_end(fieldsync_db *db, bool own);

/* ---- outbox.c ---------------------------------------------------------------------- */

typedef struct ob_item {
    int64_t id;        /* dev_outbox row */
    uint64_t dseq;
    uint8_t *body;     /* push-form change with its dseq, as sent (owned) */
    size_t len;
    uint8_t *full;     /* when body abbreviates the record id: the same change with the
                          full id (dev_outbox.body, owned), else NULL */
    size_t full_len;
} ob_item;

typedef struct ob_batch {
    ob_item *items;
    size_t n, cap;
    size_t bytes;      /* sum of body lengths */
} ob_batch;

void ob_batch_clear(ob_batch *b);  /* frees the items, keeps the array */
void ob_batch_free(ob_batch *b);

/* Fills b (cleared first) with the next changes to push: changes already numbered and not
 * answered, in dseq order; then, if there is room, numbers new ones: the fast lane first,
 * each change preceded by the unnumbered earlier changes of the same record and of the
 * records it refers to (recursively), so the server never sees a change before what it
 * depends on. Numbering is committed before the function returns (it must be durable before
 * the batch is sent). Limits: at most max_n changes and max_bytes body bytes (at least one
 * change). An empty b means nothing to send. Returns a fieldsync_err. */
int outbox_next_batch(fieldsync_db *db, size_t max_n, size_t max_bytes, ob_batch *b);
/* The same, leaving out the numbered changes with dseq <= after: those of the pushes still in
 * flight (session.c has up to 2; `after` is the last dseq of the newer one, 0 when none is in
 * flight). Every numbered change at or below `after` must be in flight: the caller sends a
 * push only while every earlier one was consumed or is still unanswered. */
int outbox_next_batch_after(fieldsync_db *db, uint64_t after, size_t max_n, size_t max_bytes,
                            ob_batch *b);

typedef struct ob_counts {
    uint64_t accepted, duplicates, refused, gaps;
    uint64_t resend;   /* EREC_ABBREV: switched to the full record id, to be sent again */
} ob_counts;

/* Handles the server's answers for batch b: accepted/duplicate changes are applied to the
 * confirmed state as this device's (author user, role role) and leave the outbox in the same
 * transaction; refused ones move to dev_refused with code and text; ESEQ_GAP answers stay.
 * Returns a fieldsync_err; FIELDSYNC_ESEQUENCE when a gap was reported that no EREC_ABBREV
 * of b explains, after everything else was committed: a caller that knows the gaps are
 * expected (session.c: an earlier push in flight had a change not consumed, counts->resend)
 * may go on; counts->gaps says how many. */
int outbox_apply_results(fieldsync_db *db, const ob_batch *b, const wire_result *res, size_t n,
                         ob_counts *counts);

/* Applies pulled changes (full form, decoded) and stores next_cursor in the same transaction
 * as the changes: the batch's own, or the open pull group's (outbox_pull_begin), which then
 * commits them with the batches before and after it. ar (borrowed, n entries) receives the
 * results; *applied gets the number newly applied. */
int outbox_apply_pulled(fieldsync_db *db, const change *cs, size_t n, uint64_t next_cursor,
                        apply_result *ar, uint64_t *applied);

/* A pull group (store_group_begin): the pulled batches applied until outbox_pull_commit
 * share one transaction, one field flush and one fsync; each batch's cursor is written by
 * its own before_commit hook inside the group, so what commits is always a run of whole
 * batches with the cursor of the last one. outbox_pull_commit does nothing when no group is
 * open; on failure nothing of the group was applied (the stored cursor is the one before
 * it). Both return a fieldsync_err. */
int outbox_pull_begin(fieldsync_db *db);
int outbox_pull_commit(fieldsync_db *db);

/* After welcome, inside its transaction: when this replica's clock is beyond what the server
 * accepts (more than the drift bound ahead of server_hlc: the device's date was wrong),
 * pulls it back and re-stamps the outbox changes never sent (outbox.c). A fieldsync_err. */
int outbox_clock_rewind(fieldsync_db *db, uint64_t server_hlc);

/* After welcome: the server has consumed dseqs up to server_dseq. Makes sure new numbers
 * start above it. */
int outbox_welcome(fieldsync_db *db, uint64_t server_dseq);

/* The server was restored from a backup (welcome, a CURSOR error): it may have lost records
 * this replica holds, so the replica no longer abbreviates record ids (outbox.c), and the
 * numbered changes above dseq `above` (which the restored server has not consumed) go back
 * to their full ids. A fieldsync_err. */
int outbox_distrust(fieldsync_db *db, uint64_t above);

/* Replaces the cached review items with the server's list (body positioned after the
 * message type of a reviews answer). *opened gets the number of items not cached before. */
int reviews_store(fieldsync_db *db, struct mpr *r, uint32_t count, uint64_t *opened,
                  uint64_t *total);

/* ---- session.c --------------------------------------------------------------------- */

/* One connection: hello, push, pull, reviews. Returns a fieldsync_err. */
int session_run(fieldsync_db *db, const fieldsync_sync_opts *o, fieldsync_progress_cb cb,
                void *ctx, fieldsync_sync_result *res);

/* Whether fieldsync_cancel was called (locks mu). */
bool sdk_cancelled(fieldsync_db *db);

#endif

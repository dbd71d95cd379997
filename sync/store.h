/*
 * store.h — the replica store on SQLite, used by the server (authority) and every device.
 *
 * What it holds (tables in store.c's migration, documented in docs/architecture.md):
 *   log       every accepted change (full wire form), with a local sequence: on the server
 *             that sequence is the pull cursor. The history and audit trail.
 *   log_by_record  (record, seq) index of the log, filled at flush (history queries).
 *   records   one row per record: type, scope (village), create seen.
 *   fields    current state per (record, field): value, version, winner, rule state.
 *   review    review items opened by the review rule (authority) or received (devices).
 *   devseq    per device, the highest device sequence consumed (authority: gap detection).
 *   refused   changes the authority refused, with code and text, so a re-send gets the same
 *             answer (exactly-once for refusals too).
 *   meta      persisted clock, schema version, identity.
 *
 * One transaction per batch (store_apply_batch): results are valid only after it returns 0,
 * which means COMMIT returned: the durable acknowledgement the protocol promises, provided the
 * handle commits with STORE_SYNC_FULL (store_set_synchronous; the server and the SDK do).
 * Every connection runs with WAL, synchronous=NORMAL unless set otherwise, foreign_keys off,
 * a busy timeout and a journal size limit. Prepared statements are cached per handle.
 *
 * Log first, state later: a batch's transaction writes the log (and records, reviews and
 * device sequences); the per-field state it merges lives in an in-memory cache and reaches
 * the `fields` table in bulk (store_flush), with meta.materialized_seq saying up to which
 * log sequence `fields` is current. Random page writes of the field table are thus paid
 * once per flush instead of once per batch. On open (after a crash) and after a failed
 * batch, the log after materialized_seq is replayed into the cache: the state is a function
 * of the log, so nothing is lost. Anyone reading `fields` or `log_by_record` through
 * store_db() must call store_flush() first; the store's own readers do.
 *
 * Threading: one handle per thread. Ownership: the handle borrows the schema (it must outlive
 * the handle); everything returned through out-parameters is described per function.
 */
#ifndef FS_STORE_H
#define FS_STORE_H

#include "change.h"
#include "hlc.h"
#include "merge.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct store store;

typedef enum store_mode {
    STORE_AUTHORITY, /* the server: decides accept/refuse, checks sequences, opens reviews */
    STORE_REPLICA    /* a device: applies what the authority accepted, in any order */
} store_mode;

/* The page size of a new authority store: the server's file (srvdb_open sets it too, since
 * whichever opens a new file first fixes it; existing files keep theirs). Fewer WAL frames and
 * B-tree page splits per change than SQLite's 4096: bench_ingest +15%, bench_market's push
 * phase -12% server CPU (docs/performance.md). A replica keeps SQLite's default. */
#define STORE_AUTHORITY_PAGE_SIZE 16384

typedef enum apply_status { APPLY_ACCEPTED = 0, APPLY_DUPLICATE = 1, APPLY_REFUSED = 2 } apply_status;

typedef struct apply_result {
    uint8_t status;    /* apply_status */
    int code;          /* fs_err when refused, else 0 */
    char msg[200];     /* reason when refused (as fs_error.msg) */
    uint64_t seq;      /* log sequence of an accepted change */
    uint32_t reviews;  /* review items this change opened */
} apply_result;

/* Called by the authority for each change after decoding and the sequence check, with the
 * record's scope before (NULL for a new record) and after the change. Return 0 to proceed or
 * an fs_err (FS_ESCOPE, FS_EROLE) with e filled to refuse this change alone. */
typedef int (*store_authorize_fn)(void *ctx, const change *c, const char *scope_before,
                                  const char *scope_after, fs_error *e);

/* Called after commit for each accepted change (live fan-out). scope may be NULL. */
typedef void (*store_commit_fn)(void *ctx, const change *c, uint64_t seq, const char *scope);

/* A change the receiver could not decode (for example a field of a newer schema): refused
 * with code and msg, consuming its dseq like any refusal; body is the change's bytes as
 * received (borrowed for the call), remembered so that a re-send gets the same answer. */
typedef struct apply_raw {
    int code;          /* 0: changes[i] decoded normally */
    const char *msg;
    const void *body;
    size_t len;
} apply_raw;

/* Authority only: whether the user may see record c->record, which exists (possibly created
 * earlier in the same batch), stored_scope being its stored scope (NULL if it has none; judge
 * from what is stored, never from what the change claims). Called after c's device sequence
 * was consumed and BEFORE every other check that could tell something about the record (its
 * type, roles, clock, required fields, append-only and immutable fields, lowering, staleness,
 * references, authorize): an invisible record's change gets only this answer. Return 0 when
 * visible, or an fs_err (FS_ESCOPE) with e filled: the change is refused and the refusal
 * remembered like any other (a re-send gets the same answer; a re-send of a consumed dseq is
 * answered as the first time, without calling visible again). Not called for new records,
 * undecodable changes (apply_raw) or changes refused for their sequence. */
typedef int (*store_visible_fn)(void *ctx, const change *c, const char *stored_scope,
                                fs_error *e);

/* Called once inside store_apply_batch()'s transaction, after every change was applied and
 * just before COMMIT, with the n changes and their results (borrowed for the call). It may
 * write its own tables through store_db(st) (no BEGIN/COMMIT of its own): those writes commit
 * or roll back with the batch. Return 0 to commit, or an fs_err with e filled: the batch is
 * rolled back and store_apply_batch returns that code with e (as for FS_EIO: no result is
 * valid, nothing was applied). Not called when the batch already failed. */
typedef int (*store_before_commit_fn)(void *ctx, store *st, const change *changes,
                                      const apply_result *results, size_t n, fs_error *e);

typedef struct apply_opts {
    store_authorize_fn authorize;
    store_commit_fn on_commit;
    store_visible_fn visible;             /* optional (authority) */
    store_before_commit_fn before_commit; /* optional */
    void *ctx;                            /* passed to every callback */
    const apply_raw *raw; /* optional, n entries: raw[i].code != 0 refuses changes[i], of
                             which only device and dseq are used */
} apply_opts;

/* Opens (creating and migrating) the store at path; ":memory:" works for tests. The handle
 * borrows s. Returns 0 and *out (free with store_close), FS_EIO with e naming the SQLite
 * error (locked, read-only, not a database), or FS_ESCHEMA when the store was made by a newer
 * schema version than s. */
int store_open(const char *path, const schema *s, store_mode mode, store **out, fs_error *e);

/* When a COMMIT is durable. STORE_SYNC_NORMAL (store_open's default, SQLite's
 * synchronous=NORMAL in WAL mode): a commit survives a crash of the process, but the last
 * commits before a power failure or an OS crash may be lost (the WAL is synced only at
 * checkpoints). STORE_SYNC_FULL: the WAL is synced at every COMMIT (one fsync, ~2 ms on our
 * VM): a commit that returned survives power loss. Use FULL wherever a commit is promised to
 * someone (the server's acknowledgements, a device's saved visits). Returns 0 or FS_EIO. */
typedef enum store_sync { STORE_SYNC_NORMAL = 1, STORE_SYNC_FULL = 2 } store_sync;
int store_set_synchronous(store *st, store_sync how, fs_error *e);

/* Saves the clock and closes. Accepts NULL. */
void store_close(store *st);

sqlite3 *store_db(store *st);           /* borrowed: for the server's and SDK's own tables */
hlc_clock *store_clock(store *st);      /* borrowed: the replica's clock */
const schema *store_schema(const store *st);
store_mode store_get_mode(const store *st);

/* Applies n changes in one transaction. results[i] says what happened to changes[i]. Returns
 * 0 after COMMIT, or FS_EIO/FS_ENOMEM (or o->before_commit's error) after ROLLBACK (then no
 * result is valid and nothing was applied: the caller must not acknowledge). A refused change
 * never stops the others. o may be NULL. */
int store_apply_batch(store *st, const change *changes, size_t n, const apply_opts *o,
                      apply_result *results, fs_error *e);

/* Group commit: several batches in one transaction, one COMMIT (one fsync) for all of them.
 * store_group_begin sends BEGIN IMMEDIATE; each store_apply_batch until store_group_commit
 * then runs inside a savepoint of it: its 0 means "applied, not yet durable" (nothing may be
 * acknowledged yet), and o->on_commit is not called. A batch that fails is rolled back to
 * its savepoint alone (the caches rebuilt from the group's state), the group's other batches
 * stay; if the failure ended the whole transaction (SQLite does after disk full or I/O
 * errors) every later batch fails and so does the commit. store_group_commit flushes the
 * field cache if due and sends COMMIT: 0 when every batch that returned 0 is durable, then
 * on_commit (if not NULL) gets each accepted change of the group, read back from the log in
 * log order with its logged scope; otherwise FS_EIO after ROLLBACK: no batch of the group
 * was applied, the caches are rebuilt from the log (as after a failed batch). Reads through
 * the handle inside a group see the group's uncommitted changes: run nothing else that
 * writes, or that sends what it reads to a device, while a group is open.
 * store_group_rollback abandons an open group (nothing applied). */
int store_group_begin(store *st, fs_error *e);
int store_group_commit(store *st, store_commit_fn on_commit, void *ctx, fs_error *e);
void store_group_rollback(store *st);
bool store_in_group(const store *st);

/* Writes the cached field states to the `fields` table and the log's record index, in one
 * transaction: all of them (the automatic flush writes chunks, store_set_flush_chunk).
 * Returns 0 or FS_EIO. Called by the store's own readers and by store_close; readers of
 * `fields` through store_db() call it first. */
int store_flush(store *st, fs_error *e);

/* Sets how many unwritten field states trigger automatic flushing (default 50,000). From
 * there, each batch's or group's commit writes one chunk (store_set_flush_chunk) until at
 * most half of this is left unwritten. */
void store_set_flush_threshold(store *st, size_t n);

/* Sets about how many states one automatic flush writes (default 0: all of them, in one
 * transaction, as store_flush does: the fewest page writes in all; a chunk of a few thousand
 * states bounds each commit's work instead, at the cost of more pages written in all, as
 * fieldsyncd does to keep live pushes prompt). A chunk is the oldest-dirtied states; it grows
 * only in proportion to the backlog beyond the threshold (n * dirty / threshold), so that a
 * stream faster than a chunk per commit cannot grow the cache without bound. See "Log first,
 * state later" in docs/architecture.md for the watermark. */
void store_set_flush_chunk(store *st, size_t n);

/* Sets how many clean (written) field states the cache keeps after a flush (default 200,000):
 * past it, a flush drops them all, and the next change of each field reads it again. Tests
 * set it low to run that path. */
void store_set_cache_max_clean(store *st, size_t n);

/* Highest device sequence the authority has consumed for device (0 if none). */
int store_device_seq(store *st, const rid_t *device, uint64_t *out);

/* Last log sequence (0 if empty). */
int store_last_seq(store *st, uint64_t *out);

/* Reads a field's current state (value borrowed into st, destroy with field_state_destroy).
 * Returns 0, FS_ENOTFOUND, or FS_EIO. */
int store_field_get(store *st, const rid_t *record, int field, field_state *out);

/* Resolves a push-form record abbreviation: prefix is CHANGE_ABBREV_LEN bytes (borrowed for
 * the call), looked up among ALL records of the store (not a user's scope: the caller checks
 * scope afterwards, as for a full id) by a range of the records' primary key. Returns 0 with
 * *out the one record whose id starts with prefix, FS_ENOTFOUND when none does,
 * FS_EREC_ABBREV when several do, or FS_EIO (*out untouched but on 0). Inside a group or
 * batch it sees the records written so far. */
int store_resolve_abbrev(store *st, const uint8_t *prefix, rid_t *out);

/* Record header. scope_out (if not NULL) receives up to cap bytes, NUL-terminated. */
int store_record_get(store *st, const rid_t *record, int *type, char *scope_out, size_t cap);

/* Iterates the log after seq (exclusive) in order: calls fn with each change's full-form
 * bytes (borrowed for the call) until max rows or fn returns non-zero. *last receives the
 * sequence of the last row visited. */
typedef int (*store_log_fn)(void *ctx, uint64_t seq, const void *body, size_t len,
                            const char *scope);
int store_log_scan(store *st, uint64_t after, size_t max, store_log_fn fn, void *ctx,
                   uint64_t *last);

/* Like store_log_scan, but only the rows whose scope is in scopes_json (a JSON array of
 * strings, borrowed for the call), through the authority's log_runs (stretches of rows of
 * one scope): a pull of a village costs the village's rows, not the whole log. *last
 * receives the sequence of the last row visited; fewer than max rows visited means none of
 * those scopes is after it. Authority only: FS_EINVAL on a replica. */
int store_log_scan_scopes(store *st, uint64_t after, size_t max, const char *scopes_json,
                          store_log_fn fn, void *ctx, uint64_t *last);

/* History of one record (the audit trail), in log order. */
int store_history(store *st, const rid_t *record, store_log_fn fn, void *ctx);

/* A canonical hash of the record state (records and fields, not the log or local sequences):
 * two replicas with equal hashes hold identical state. */
int store_state_hash(store *st, uint64_t out[2]);

/* Rebuilds records, fields and review items from the log alone (the audit trail is the
 * truth). Returns 0 or FS_EIO. */
int store_rebuild(store *st, fs_error *e);

/* Review items. */
typedef struct review_item {
    int64_t id;
    rid_t record;
    int type, field;
    /* the two values, packed MessagePack (owned by the iteration, borrowed for the call) */
    const void *value_a; size_t len_a; uint64_t hlc_a; rid_t dev_a; const char *author_a;
    const void *value_b; size_t len_b; uint64_t hlc_b; rid_t dev_b; const char *author_b;
    uint64_t resolved_hlc; /* 0 while open */
    const char *resolved_by;
} review_item;
typedef int (*store_review_fn)(void *ctx, const review_item *it);
int store_review_scan(store *st, bool open_only, store_review_fn fn, void *ctx);
int store_review_count(store *st, bool open_only, int64_t *out);

/* Runs fn inside one transaction (BEGIN IMMEDIATE .. COMMIT, ROLLBACK when fn fails). */
int store_tx(store *st, int (*fn)(store *st, void *ctx), void *ctx, fs_error *e);

/* Meta key/value (small values). get: FS_ENOTFOUND if absent; buf gets NUL-terminated. */
int store_meta_get(store *st, const char *key, char *buf, size_t cap);
int store_meta_set(store *st, const char *key, const char *value);

#endif

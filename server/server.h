/*
 * server.h — internals of fieldsyncd, the sync server. Not a public API: only the files
 * of server/ include it.
 *
 * Shape: one process, one libwebsockets service thread running a plain lws_service() loop.
 * Everything — sessions, the store, the server's own tables, metrics — is touched only from
 * that thread, so nothing here is locked. A push is decoded in the receive callback, parked,
 * and applied by the work timer in a bounded slice between socket passes (session.c); the
 * pushes of one slice share one SQLite transaction, a savepoint each (handle_push.c: group
 * commit), and their results are queued only after its COMMIT returned; a signal only sets
 * a flag, so it can never split a batch or a group.
 *
 * Files, by concern:
 *   main.c          arguments, signals, the service loop, shutdown
 *   session.c       the per-connection state machine, frame reassembly, the send queue
 *   handle_*.c      one file per message type (hello, push, pull, subscribe, reviews)
 *   scope.c         users' scopes and the store's authorize callback
 *   auth.c          device tokens and user passwords (libsodium)
 *   srvdb.c         the server's own tables (srv_*) in the store's SQLite file
 *   http.c          HTTP: /healthz, /metrics, /api (web_api.c), the page's files
 *   ledger*.c       the supervisor ledger: its config file, computation, CSV (ledger.h)
 *   web_*.c         the supervisor page: API, sessions, live WebSocket (web.h)
 *   metrics.c       counters and the Prometheus text
 *   admin.h, admin*.c  `fieldsyncd admin ...` subcommands
 *   util.c          one-line logs on stderr, clocks, a growable text buffer
 */
#ifndef FS_SERVER_H
#define FS_SERVER_H

#include "change.h"
#include "schema.h"
#include "store.h"
#include "wire.h"

#include <libwebsockets.h>
#include <msgpack.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- limits (docs/protocol.md §8) --------------------------------------------------- */

#define SRV_DEFAULT_LISTEN "127.0.0.1:7370"
#define SRV_DEFAULT_DB "./fieldsync.db"
#define SRV_SESSIONS_PER_DEVICE 4
#define SRV_IDLE_TIMEOUT_S 120
#define SRV_KEEPALIVE_S 30          /* lws' WebSocket ping after this silence; hang-up at 1.5x */
#define SRV_MSG_RATE 200            /* messages not parked per second per session */
#define SRV_HELLO_FAILS 20          /* failed hellos per address per minute */
#define SRV_DEVICE_FAILS_FACTOR 5   /* a device: 5 x that many wrong tokens per minute */
#define SRV_LEDGER_QUEUE 1000       /* queued ledger events per session before RESYNC */
#define SRV_TXQ_MAX_BYTES (16u << 20) /* queued output per session before LIMIT */
#define SRV_TXQ_PAUSE_BYTES (1u << 20) /* stop reading a session that does not read */
#define SRV_PULL_SOFT_BYTES (256u << 10) /* a changes message stops growing past this */
#define SRV_PULL_SCAN_ROWS 20000    /* log rows one pull may look at (filtered ones count) */
#define SRV_WORK_SLICE_US 10000     /* parked messages run per loop pass, then sockets */
#define SRV_FLUSH_THRESHOLD 50000   /* unwritten field states from which commits write chunks */
#define SRV_FLUSH_CHUNK 2048        /* field states one group commit writes, about */
#define SRV_PARK_SMALL_BYTES 4096  /* a push body up to this runs in the interactive lane */
#define SRV_WRITES_PER_CALLBACK 256 /* frames one WRITEABLE may write while not choked */
#define SRV_CLOSE_GRACE_S 5         /* a closing session that does not read is cut after */
#define SRV_SHUTDOWN_GRACE_MS 3000  /* time to flush SHUTDOWN errors before exiting */
#define SRV_CODE_MAX 32             /* township and village codes, bytes */
#define SRV_NAME_MAX 64             /* user names (= the change's author limit) */
#define SRV_TOKEN_PREFIX "fs1_"
#define SRV_TOKEN_LEN 47            /* "fs1_" + 43 chars base64url of 32 bytes */
#define SRV_TOKEN_HASH_LEN 32       /* BLAKE2b-256 */
#define SRV_WEB_SESSION_IDLE_S (8 * 3600)  /* page session: idle expiry */
#define SRV_WEB_SESSION_MAX_S (24 * 3600)  /* page session: absolute expiry */

/* Exit codes of every subcommand (docs/operations.md). */
enum srv_exit {
    SRV_EXIT_OK = 0,       /* done */
    SRV_EXIT_USAGE = 1,    /* bad command line or configuration */
    SRV_EXIT_NOTFOUND = 2, /* no such thing, or a conflict (exists; daemon running) */
    SRV_EXIT_STORE = 3,    /* the store (SQLite) failed, or the file is not a store */
    SRV_EXIT_NET = 4       /* cannot listen */
};

/* ---- util.c ------------------------------------------------------------------------- */

enum srv_log_level { SLOG_ERROR, SLOG_WARN, SLOG_INFO, SLOG_DEBUG };
extern int srv_log_level; /* messages above this level are dropped (default SLOG_INFO) */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int64_t srv_mono_ms(void); /* CLOCK_MONOTONIC in ms: deadlines, rates */
int64_t srv_wall_ms(void); /* CLOCK_REALTIME in ms: timestamps stored in srv_ tables */

/* ---- a growable text buffer (metrics, admin output) --------------------------------- */

typedef struct strbuf {
    char *p;      /* NUL-terminated, owned */
    size_t len;
    size_t cap;
    bool oom;     /* an append failed: the content is truncated */
} strbuf;
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_append(strbuf *b, const char *s, size_t n);
void sb_free(strbuf *b);

/* ---- srvdb.c: the server's own tables --------------------------------------------- */

typedef enum scope_kind { SCOPE_VILLAGES = 0, SCOPE_TOWNSHIP = 1, SCOPE_CHILDREN = 2 } scope_kind;

typedef struct srv_device {
    rid_t id;
    int64_t user_id;
    char label[128];
    uint8_t token_hash[SRV_TOKEN_HASH_LEN];
    int64_t created_ms;
    int64_t revoked_ms;   /* 0 while valid */
    int64_t last_seen_ms; /* 0 if never connected */
    char last_agent[128];
} srv_device;

typedef struct srv_user {
    int64_t id;
    char name[SRV_NAME_MAX + 1];
    char role[32];        /* role name, one of the schema's roles */
    scope_kind kind;
    bool has_password;
} srv_user;

/* Opens path for the admin commands (or anyone without a store handle): WAL,
 * synchronous=NORMAL, busy timeout, then creates the srv_ tables. create=false refuses a
 * missing file. Returns 0 and *db (close with sqlite3_close), FS_ENOTFOUND, or FS_EIO. */
int srvdb_open(const char *path, bool create, sqlite3 **db, fs_error *e);

/* Creates the srv_ tables if missing (idempotent). Returns 0 or FS_EIO with e filled. */
int srvdb_migrate(sqlite3 *db, fs_error *e);

/* Runs sql with no result rows; FS_EIO (e filled) on failure. */
int srvdb_exec(sqlite3 *db, const char *sql, fs_error *e);

/* The device's row: 0, FS_ENOTFOUND, FS_EIO. cache: NULL (a statement prepared for this call),
 * or where the prepared statement is kept between calls on db (prepared on the first; the
 * caller finalizes it): the service thread reads the row before every push and pull. */
int srvdb_device_get(sqlite3 *db, sqlite3_stmt **cache, const rid_t *id, srv_device *out);
int srvdb_device_seen(sqlite3 *db, const rid_t *id, const char *agent, size_t agent_len);
int srvdb_user_get(sqlite3 *db, int64_t id, srv_user *out);            /* 0, FS_ENOTFOUND, FS_EIO */
int srvdb_user_by_name(sqlite3 *db, const char *name, srv_user *out);  /* 0, FS_ENOTFOUND, FS_EIO */

/* Calls fn for each scope value of the user (village codes, the township code or child ids
 * as uuid text, per its kind). fn returning non-zero stops. Returns 0 or FS_EIO. */
int srvdb_user_scope(sqlite3 *db, int64_t user_id, int (*fn)(void *ctx, const char *value),
                     void *ctx);

/* Calls fn(code, township) for every village, ordered by code. */
int srvdb_villages(sqlite3 *db, int (*fn)(void *ctx, const char *code, const char *township),
                   void *ctx);
bool srvdb_township_exists(sqlite3 *db, const char *code);
bool srvdb_village_exists(sqlite3 *db, const char *code);

/* After `admin restore`: every device then enrolled may hold a pull cursor into the lost
 * part of the log, whose sequence numbers the restored store hands out again for other
 * changes. restore_mark (admin restore) notes the restored log end and every device;
 * restore_pending says whether dev is still noted (and the log end); restore_done forgets
 * it once it pulls from a cursor at or below that end. 0 / FS_EIO; pending: false on error. */
int srvdb_restore_mark(sqlite3 *db, int64_t log_end, fs_error *e);
bool srvdb_restore_pending(sqlite3 *db, const rid_t *dev, uint64_t *log_end);
void srvdb_restore_done(sqlite3 *db, const rid_t *dev);

/* Records what a device said in hello for the device-health view: its outbox size (when
 * has_pending) and the server's consumed dseq at that moment. Returns 0 or FS_EIO. */
int srvdb_device_health(sqlite3 *db, const rid_t *id, bool has_pending, uint64_t pending,
                        uint64_t dseq_at);

/* Villages with their display names (and townships), ordered by code. */
typedef struct village_names {
    char (*codes)[SRV_CODE_MAX + 1];
    char (*names)[128];
    char (*townships)[SRV_CODE_MAX + 1];
    uint32_t n;
} village_names;
/* Fills out (free with village_names_free) with the villages of township, or every village
 * when township is NULL. Returns 0, FS_ENOMEM or FS_EIO. */
int srvdb_village_names(sqlite3 *db, const char *township, village_names *out);
void village_names_free(village_names *v); /* accepts an all-zero value */
/* The display name of a township. 0, FS_ENOTFOUND or FS_EIO. */
int srvdb_township_name(sqlite3 *db, const char *code, char *name, size_t cap);

/* Checks a township or village code: 1..32 bytes of [A-Za-z0-9_.-]. */
bool srv_code_valid(const char *code);

/* ---- auth.c: tokens and passwords ------------------------------------------------- */

/* Makes a new token ("fs1_" + 43 base64url chars, NUL-terminated; buf >= SRV_TOKEN_LEN + 1)
 * and its hash. Returns 0 or FS_EIO if libsodium is unusable. */
int auth_token_new(char *buf, uint8_t hash[SRV_TOKEN_HASH_LEN]);
/* BLAKE2b-256 of the token bytes. */
void auth_token_hash(const char *token, size_t len, uint8_t hash[SRV_TOKEN_HASH_LEN]);
/* true when token has the form of a fieldsync token and hashes to expected (constant time). */
bool auth_token_check(const char *token, size_t len, const uint8_t expected[SRV_TOKEN_HASH_LEN]);
/* Hashes password with argon2id into out (crypto_pwhash_STRBYTES). Returns 0 or FS_ENOMEM. */
int auth_password_hash(const char *password, size_t len, char *out, size_t cap);
bool auth_password_check(const char *stored, const char *password, size_t len);
int auth_init(void); /* sodium_init; 0 or FS_EIO */

/* ---- metrics.c ------------------------------------------------------------------- */

#define METRICS_APPLY_BUCKETS 12

typedef struct srv_metrics {
    uint64_t sessions_opened;      /* welcomes sent */
    uint64_t hello_failures;       /* hellos answered with an error */
    uint64_t changes_accepted;
    uint64_t changes_duplicate;
    uint64_t changes_refused[128]; /* by -code (fs_err) */
    uint64_t batches;
    uint64_t apply_buckets[METRICS_APPLY_BUCKETS + 1]; /* cumulative at render time */
    double apply_seconds_sum;
    uint64_t bytes_in, bytes_out;
    uint64_t messages_in, messages_out;
    uint64_t errors_sent[16];      /* by protocol error code */
    uint64_t ledger_events;
    uint64_t pulls, changes_sent;
} srv_metrics;

typedef struct server server;
void metrics_apply_observe(srv_metrics *m, double seconds);
void metrics_result(srv_metrics *m, const apply_result *r);
/* Renders the Prometheus text exposition into b. */
void metrics_render(server *srv, strbuf *b);

/* ---- scope.c ---------------------------------------------------------------------- */

typedef struct village_entry {
    char code[SRV_CODE_MAX + 1];
    char township[SRV_CODE_MAX + 1];
} village_entry;

typedef struct user_scope {
    scope_kind kind;
    char township[SRV_CODE_MAX + 1]; /* SCOPE_TOWNSHIP */
    char (*villages)[SRV_CODE_MAX + 1]; /* sorted; villages and township kinds; owned */
    size_t n_villages;
    rid_t *children;                 /* sorted; SCOPE_CHILDREN; owned */
    size_t n_children;
    /* the village the last change pushed in this scope was authorized in (scope_authorize):
     * one of these villages, and of the server's while srv->villages_gen is memo_gen; "" */
    char memo[SRV_CODE_MAX + 1];
    uint64_t memo_gen;
} user_scope;

/* Loads the scope of user into *out (resolving a township to its villages from the
 * server's village cache). Returns 0, FS_ENOMEM or FS_EIO. */
int scope_load(server *srv, const srv_user *user, user_scope *out);
void scope_free(user_scope *sc); /* accepts an all-zero scope */
bool scope_has_village(const user_scope *sc, const char *code);
/* code is the village sc's last pushed change was authorized in (scope_authorize): a
 * village of sc and of the server's list. A strcmp instead of two binary searches. */
bool scope_memo_has(const server *srv, const user_scope *sc, const char *code);
/* The village cache: all villages, sorted by code; reloaded when the admin changes them. */
int villages_reload(server *srv);
const village_entry *village_find(const server *srv, const char *code);

typedef struct session session;
/* Whether a stored or committed change (record scope `scope`, may be NULL) is visible to
 * session s: pulls, ledger events, review items. */
bool scope_sees(session *s, const change *c, const char *scope);
/* Same for a record known only by id (review items). */
bool scope_sees_record(session *s, const rid_t *record);
/* The same predicates for a user's scope outside a device session (the web page). */
bool scope_user_sees(server *srv, const user_scope *sc, const change *c, const char *scope);
bool scope_user_sees_record(server *srv, const user_scope *sc, const rid_t *record);
/* The authorize rule for a change made by a user with scope sc (e.g. the page's review
 * resolutions); scope_authorize applies it to the pushing session. */
int scope_authorize_user(server *srv, const user_scope *sc, const change *c,
                         const char *scope_before, const char *scope_after, fs_error *e);
/* store_authorize_fn: ctx is the pushing session. */
int scope_authorize(void *ctx, const change *c, const char *scope_before,
                    const char *scope_after, fs_error *e);

/* ---- sessions (session.c) --------------------------------------------------------- */

typedef struct txframe {
    struct txframe *next;
    size_t len;                /* frame bytes after the LWS_PRE headroom */
    bool ledger;               /* counts against the ledger queue bound */
    uint64_t gen;              /* held until this push-group commit is synced (durable.c) */
    uint8_t data[];            /* LWS_PRE + len bytes */
} txframe;

typedef enum sess_state {
    SS_CONNECTED,  /* waiting for hello */
    SS_READY,      /* authenticated */
    SS_CLOSING     /* an error that closes is queued: input is ignored, output drains */
} sess_state;

/* Parking lanes (session.c): small pushes and review lists before bulk work. */
enum { PARK_INTERACTIVE = 0, PARK_BULK = 1 };

typedef enum sub_kind { SUB_NONE, SUB_ALL, SUB_VILLAGE, SUB_TOWNSHIP } sub_kind;

struct session {
    server *srv;
    struct lws *wsi;
    session *prev, *next;      /* srv->sessions */
    sess_state state;
    char peer[64];             /* remote address, for logs and hello rate limiting */
    /* input: one WebSocket message reassembled from fragments */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    bool rx_text;              /* the message being received is a text message */
    /* output queue: frames with LWS_PRE headroom, written from WRITEABLE */
    txframe *q_head, *q_tail;
    size_t q_bytes;
    unsigned q_ledger;
    bool rx_paused;            /* the queue is large: stop reading until it drains */
    bool rx_stopped;           /* lws_rx_flow_control(0) is in effect (paused or parked) */
    bool tx_moved;             /* frames were written since the last tick (keep-alive) */
    /* a message waiting for the work slice (session.c: parking) */
    uint8_t *park;             /* its decoded body, owned; NULL when nothing is parked */
    size_t park_len;
    session *park_next;        /* srv->park_head[park_lane], in arrival order */
    session *out_next;         /* srv->out_head: frames queued during this work slice */
    bool on_out;               /* on that list */
    session *held_next;        /* srv->held_head: frames wait for a sync (durable.c) */
    bool on_held;              /* on that list */
    unsigned park_lane;        /* PARK_INTERACTIVE or PARK_BULK */
    int64_t park_at;           /* srv_mono_ms() when it was parked */
    int close_code;            /* WebSocket close status once the queue drained */
    int64_t closing_since;     /* srv_mono_ms() when SS_CLOSING began */
    /* identity, after hello */
    rid_t device;
    uint8_t token_hash[SRV_TOKEN_HASH_LEN]; /* the hash the session authenticated with */
    srv_user user;
    int role;                  /* index in schema roles */
    user_scope scope;
    uint32_t version;          /* min(device's schema version, server's) */
    uint32_t dict;             /* dictionary used towards the device */
    bool restore_stale;        /* its cursor is from before a restore of the store: pulls */
    uint64_t restore_seq;      /* from above restore_seq get CURSOR (reset to 0) */
    char agent[64];
    /* subscription */
    sub_kind sub;
    char sub_code[SRV_CODE_MAX + 1];
    session *sub_prev, *sub_next; /* srv->subscribers, while sub != SUB_NONE */
    /* limits */
    int64_t last_rx;           /* srv_mono_ms() when bytes last arrived */
    int64_t last_msg;          /* srv_mono_ms() when the last whole message arrived (or open) */
    /* the message rate (session.c rate_take): a token bucket of the messages not parked */
    int64_t rate_at;           /* srv_mono_ms() of its last refill */
    uint32_t rate_tokens;      /* thousandths of a message, <= msg_rate * 1000 (<= 10^9) */
};

/* ---- the server ------------------------------------------------------------------- */

typedef struct srv_config {
    const char *db_path;
    char host[128];            /* address to bind */
    int port;                  /* 0 = any free port */
    const char *schema_path;
    const char *tls_cert, *tls_key;
    const char *web_dir;       /* NULL: no static files */
    bool no_web;               /* --no-web: not even the built-in page directory */
    const char *ledger_path;   /* --ledger FILE; NULL: ledger.yaml beside the schema */
    unsigned session_idle_s;   /* page sessions end after this long without a request */
    unsigned session_max_s;    /* ... and this long after login */
    int idle_timeout_s;
    int keepalive_s;           /* lws pings a silent connection after this; hang-up 1.5x */
    unsigned flush_chunk;      /* field states per commit once SRV_FLUSH_THRESHOLD wait */
    unsigned msg_rate;         /* messages not parked per s per session (<= 10^6); 0 = none */
    unsigned hello_fails;      /* failed hellos per address per minute */
    unsigned ledger_queue;     /* queued ledger events per session before RESYNC */
    unsigned max_frame;
    unsigned max_batch;
} srv_config;

typedef struct hello_fail {
    char addr[64];
    int64_t window;            /* srv_mono_ms() when the minute began */
    unsigned count;
} hello_fail;

#define SRV_HELLO_FAIL_SLOTS 256

struct server {
    srv_config cfg;
    schema *schema;            /* owned */
    store *store;              /* owned; STORE_AUTHORITY */
    sqlite3 *db;               /* borrowed from the store */
    wire_dicts *dicts;         /* owned */
    wire_codec *dec, *enc;     /* owned: frames in, frames out */
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    int lock_fd;               /* flock on <db>.lock while serving */
    session *sessions;         /* every WebSocket session */
    session *subscribers;      /* the sessions with a subscription (fan-out walks only these) */
    session *out_head;         /* sessions given frames during the work slice (session.c) */
    unsigned n_sessions;
    village_entry *villages;   /* sorted by code; owned */
    uint64_t villages_gen;     /* villages_reload()s so far (user_scope.memo) */
    size_t n_villages;
    int64_t data_version;      /* PRAGMA data_version: changes when the admin writes */
    sqlite3_stmt *dv_stmt;
    sqlite3_stmt *parent_stmt; /* scope.c: a record's scope parent (prepared once) */
    sqlite3_stmt *device_stmt; /* srvdb_device_get's, for hellos, pushes and pulls */
    lws_sorted_usec_list_t tick; /* once a second: idle, deadlines, admin changes */
    bool stopping;             /* SIGINT/SIGTERM seen: sessions get SHUTDOWN */
    bool drain_expired;
    lws_sorted_usec_list_t drain;
    srv_metrics m;
    session *park_head[2], *park_tail[2]; /* parked sessions per lane, oldest first */
    lws_sorted_usec_list_t work; /* runs parked messages, SRV_WORK_SLICE_US per loop pass */
    struct hello_note *notes;  /* hellos' bookkeeping not yet written (hello_notes_write) */
    size_t n_notes, cap_notes;
    bool work_due;             /* work is scheduled */
    bool in_slice;             /* work_run is running parked messages: pushes join a group */
    struct push_done *done;    /* pushes of the open group, waiting for its COMMIT */
    size_t n_done, cap_done;
    msgpack_sbuffer out;       /* message body being built */
    msgpack_sbuffer tmp;       /* a second scratch buffer (changes of a pull) */
    change *batch;             /* WIRE_MAX_BATCH decoded changes (scratch) */
    struct push_item *push_items; /* WIRE_MAX_BATCH per-change scratch of handle_push.c */
    apply_result *results;     /* WIRE_MAX_BATCH results (scratch) */
    change ledger_change;      /* a committed change, downgraded for one subscriber */
    struct ledger_cfg *ledger; /* owned; NULL: no ledger file, the page's data API is off */
    struct live_conn *live;    /* the supervisor pages' live WebSockets (web_live.c) */
    unsigned n_live;
    int64_t web_expire_at;     /* srv_mono_ms() of the next purge of expired page sessions */
    hello_fail fails[SRV_HELLO_FAIL_SLOTS];
    hello_fail dev_fails[SRV_HELLO_FAIL_SLOTS]; /* by device id: wrong tokens for a device */
    struct loop_trace *lt;     /* FIELDSYNC_LOOP_TRACE: per-pass timings (main.c); or NULL */
    bool ckpt_tail;            /* the checkpoint thread left a short tail (main.c) */
    /* durable.c: push groups commit without syncing; their frames wait for the sync */
    bool dur_on;               /* the sync thread runs */
    bool dur_group;            /* the open push group commits with synchronous=NORMAL */
    uint64_t dur_gen;          /* push-group commits so far */
    uint64_t dur_done;         /* ... of which synced: frames with gen above it are held */
    session *held_head;        /* sessions whose queue holds frames above dur_done */
    bool fatal;                /* a sync failed: the main loop stops the server */
    unsigned authorized;       /* changes authorized (handle_push.c polls the sync thread) */
};

/* Per-pass timings of the service loop (FIELDSYNC_LOOP_TRACE=FILE, main.c): what one pass
 * of lws_service() was made of; written to FILE at exit. Microseconds. */
typedef struct loop_pass {
    int64_t start, total;      /* lws_now_usecs() at the pass's start; its length */
    int64_t rx, wr, slice, commit; /* in RECEIVE, WRITEABLE, park_run, push_group_end */
    uint32_t n_rx, n_wr, n_run, n_commit;
    int64_t ckpt, fan;         /* in WAL checkpoints; in server_fanout */
    uint32_t n_ckpt, n_fan;
} loop_pass;
typedef struct loop_trace {
    loop_pass cur;
    loop_pass *v;
    size_t n, cap;
    const char *path;
} loop_trace;

/* Session API used by the handlers. */
/* Frames body (dict as negotiated) and queues it. ledger: counts toward the ledger bound.
 * Returns 0, or FS_ENOMEM / FS_EDEC_TOOBIG after queueing an error that closes. */
int session_send(session *s, const void *body, size_t len, bool ledger);
/* Queues error [11, code, text, closes]; closes moves the session to SS_CLOSING. */
void session_error(session *s, int code, bool closes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Resets srv->out and returns a packer writing into it. */
void session_packer(server *srv, msgpack_packer *pk);
/* Re-reads the session's device: false (after queueing AUTH, which closes) when it was
 * revoked or its token rotated since hello. A table that cannot be read counts as valid. */
bool session_device_valid(session *s);
/* Sessions of this device that completed hello. */
unsigned session_count_device(server *srv, const rid_t *device);
/* SHUTDOWN to every session (main.c calls it once on a signal). */
void sessions_shutdown(server *srv);
/* main.c: the slots of SQLite's page pool (huge-page memory for every connection's cached
 * pages, see page_pool_init); 0 when there is none. */
unsigned server_page_pool_slots(void);
/* main.c: copies the WAL's last pages into the database when the checkpoint thread left
 * only a short tail, so that the next write transaction restarts the log. Call with no
 * transaction open (the start of a work slice). */
void server_checkpoint_tail(server *srv);
/* The tick's per-session work: idle timeout, stuck closings, revoked devices. */
void sessions_tick(server *srv, bool admin_changed);

/* durable.c: a push group's COMMIT synced by a thread of its own; what it produced is held
 * (txframe.gen) until the sync returned. All on the service thread. */
int durable_start(server *srv);        /* 0, or -1: groups keep synchronous=FULL */
void durable_stop(server *srv);        /* after the last sync asked for */
void durable_group_open(server *srv);  /* before a push group's BEGIN */
void durable_commit_begin(server *srv); /* just before its COMMIT: a new generation */
void durable_commit_end(server *srv);  /* after it (or its failure): the thread syncs */
uint64_t durable_tag(const server *srv); /* the gen for a frame queued now (0: not held) */
void durable_poll(server *srv);        /* releases what the thread has synced */
/* session.c / web_live.c: write what is no longer held; drop what is (the sync failed:
 * sessions get INTERNAL, which closes; live pages are closed). */
void session_release_held(server *srv);
void session_drop_held(server *srv);
void live_release_held(server *srv);
void live_drop_held(server *srv);

/* Handlers: r is positioned after the message type, count is the array length. They return
 * 0, or -1 after queueing an error that closes the session. */
int handle_hello(session *s, struct mpr *r, uint32_t count);
int handle_push(session *s, struct mpr *r, uint32_t count);
/* A hello's bookkeeping (srv_devices.last_seen_ms/last_agent, srv_device_health), noted by
 * handle_hello and written by hello_notes_write at the end of the work slice, inside the
 * slice's open push group when there is one (its COMMIT), else in one transaction for all of
 * the slice's hellos: written one autocommit statement at a time, each was a COMMIT and an
 * fsync, two per hello (2.2 s of a 9.8 s market day, docs/performance.md §2). Best effort,
 * like the writes it replaces: a failure is logged and the notes are dropped. */
void hello_notes_write(server *srv);
void hello_notes_free(server *srv);

/* Group commit (handle_push.c): inside a work slice (srv->in_slice) the pushes applied join
 * one store group (one COMMIT, one fsync); this commits it, then sends each push's
 * push_result and the ledger fan-out, or BUSY to each if the COMMIT failed. A no-op without
 * an open group. session.c calls it at the end of each slice and before any other parked
 * message (a hello, pull or reviews request must not read uncommitted changes). */
void push_group_end(server *srv);
int handle_pull(session *s, struct mpr *r, uint32_t count);
int handle_subscribe(session *s, struct mpr *r, uint32_t count);
int handle_reviews(session *s, struct mpr *r, uint32_t count);
/* store_commit_fn: sends ledger events to subscribed sessions and live events to the
 * supervisor pages; ctx is the pushing session. */
void subscribe_fanout(void *ctx, const change *c, uint64_t seq, const char *scope);
/* The same for a change the server itself committed; ctx is the server. */
void server_fanout(void *ctx, const change *c, uint64_t seq, const char *scope);
/* Drops s's subscription (and its place in srv->subscribers); no-op without one. */
void subscribe_drop(session *s);

/* Hello rate limiting per address (handle_hello.c). */
bool hello_blocked(server *srv, const char *addr);
void hello_failed(server *srv, const char *addr);

/* ---- the supervisor page's live channel (web_live.c) ------------------------------ */

/* Live events for a committed change, to every page whose user sees it. */
void live_fanout(server *srv, const change *c, uint64_t seq, const char *scope);
/* A device connected or went away: pages whose villages meet the device user's scope. */
void live_device_event(server *srv, const rid_t *device, const user_scope *device_scope);
/* Closes the live sockets of a page session (logout). */
void live_close_session(server *srv, const uint8_t hash[SRV_TOKEN_HASH_LEN]);
/* Closes every live socket (shutdown). */
void live_shutdown(server *srv);
/* Once a second: expired sessions close their sockets; scopes follow admin changes. */
void live_tick(server *srv, bool admin_changed);
/* Forgets expired page sessions (web_session.c; called from the tick). */
void web_sessions_expire(server *srv);
int live_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);
size_t live_pss_size(void);
#define LIVE_SUBPROTOCOL "fieldsync.live.v1"

/* ---- lws protocols (session.c, http.c) ------------------------------------------- */

int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);
size_t http_pss_size(void);

/* ---- fault.c: kill -9 at chosen points of a push (tests only; FIELDSYNC_FAULT) ------ */

typedef enum fault_point {
    FAULT_NONE,
    FAULT_PUSH_BEFORE_TX,    /* decoded, before BEGIN (in a group: before its savepoint) */
    FAULT_PUSH_IN_TX,        /* inside the transaction, after the batch's first change */
    FAULT_PUSH_AFTER_COMMIT, /* COMMIT returned, push_result not queued */
    FAULT_PUSH_AFTER_SEND,   /* push_result written to the socket */
    FAULT_GROUP_COMMIT_KILL, /* the COMMIT of a group of >= N pushes: kill -9 */
    FAULT_GROUP_COMMIT_FAIL, /* ... that COMMIT fails (rolled back) */
    FAULT_GROUP_DISK_FULL,   /* from the Nth push of a group to its end: the store cannot grow */
    FAULT_PARK_HOLD,         /* no kill: every parked message waits N ms before it runs */
    FAULT_SYNC_HOLD,         /* no kill: each sync of a push group waits N ms (durable.c) */
    FAULT_SYNC_FAIL          /* no kill: the first sync of a push group fails (durable.c) */
} fault_point;

int fault_init(void);                  /* reads FIELDSYNC_FAULT; -1 if it is malformed */
bool fault_armed(fault_point p);
/* a push of n changes reaches the apply stage (srv: the group points watch its store) */
void fault_push_begin(server *srv, uint32_t n);
void fault_push_at(fault_point p);     /* kills when p is armed for this push */
void fault_push_sent(session *s);      /* the push_result was just queued on s */
void fault_frame_written(const txframe *f); /* session.c: f was just written */
unsigned fault_park_hold_ms(void);     /* park_hold:N armed: N, else 0 (session.c) */
/* The sync thread's points (durable.c; safe from that thread: read-only after fault_init) */
unsigned fault_sync_hold_ms(void);     /* sync_hold:N armed: N, else 0 */
bool fault_sync_fail(void);            /* sync_fail armed: true once */
/* store_authorize_fn: scope_authorize, killing first at push_in_tx when armed */
int fault_authorize(void *ctx, const change *c, const char *scope_before,
                    const char *scope_after, fs_error *e);

/* ---- admin.c ---------------------------------------------------------------------- */

int admin_main(int argc, char **argv);

#endif

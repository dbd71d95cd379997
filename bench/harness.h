/*
 * harness.h — what the protocol-level benchmarks share: the machine header, a real fieldsyncd
 * started as a child process and administered through `fieldsyncd admin`, its CPU time and
 * memory from /proc, the raw SQLite reference, and a load generator speaking protocol v1 over
 * many WebSocket connections from one libwebsockets context (one thread, many wsi).
 *
 * Why a harness of our own rather than the SDK: the SDK opens one connection per sync on its
 * own thread, which is right for a device and wrong for 2,000 of them in one process. The
 * load generator speaks the protocol through the same engine code (sync/wire.h,
 * sync/change.h) as the SDK and the server, and its devices behave like the SDK's: up to two
 * pushes in flight (protocol §5; push_window 1 gives the older one-at-a-time behaviour), a
 * small first batch, zstd with dictionary 1, pull until `more` is false.
 *
 * What it deliberately does not do: decode the changes it pulls (a device's apply cost is
 * measured by bench_device through the SDK), retry, or time anything by itself: the
 * benchmarks take their own clocks around what they measure.
 *
 * Ownership: every bh_* object is created and freed by the benchmark (x_new / x_free); a
 * bh_net and everything on it belongs to the thread that runs it. Not thread-safe otherwise:
 * one bh_net per thread (libwebsockets' rule: one service thread per context).
 */
#ifndef FS_BENCH_HARNESS_H
#define FS_BENCH_HARNESS_H

#include "change.h"
#include "mpr.h"
#include "rid.h"
#include "schema.h"
#include "wire.h"

#include <libwebsockets.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- report ---------------------------------------------------------------------------- */

/* Prints "title", then machine (arch, cpus, CPU model), memory, date, load and the command
 * line, each on its own line prefixed by two spaces. */
void bh_header(const char *title, int argc, char **argv);
/* "0.52 0.61 0.70" (1, 5, 15 min) into buf. */
void bh_load(char *buf, size_t cap);
double bh_now(void);                 /* CLOCK_MONOTONIC, seconds */
uint64_t bh_wall_ms(void);           /* CLOCK_REALTIME, Unix ms */
const char *bh_verdict(bool ok);     /* "PASS" / "MISS" */
/* Exits with a message when p is NULL (benchmarks do not recover from out of memory). */
void *bh_check(void *p);
/* Raises RLIMIT_NOFILE (soft) to at least want, capped at the hard limit and at 65536.
 * Returns the resulting soft limit. Children (the server) inherit it. */
long bh_raise_nofile(long want);
/* Process CPU time (user + system) of this process, seconds. */
double bh_self_cpu(void);
/* p-th percentile (0..100) of v[0..n) (sorts v). 0 when n is 0. */
double bh_percentile(double *v, size_t n, double p);

/* ---- the server as a child process ----------------------------------------------------- */

typedef struct bh_server {
    pid_t pid;
    int port;
    char dir[1024];      /* working folder: server.db, server.log */
    char db[1100];
    char log[1100];
} bh_server;

/* Path of build/server/fieldsyncd next to this benchmark (or $FIELDSYNCD). Static storage. */
const char *bh_fieldsyncd(void);
/* Path of another program in the folder of this benchmark binary (e.g. "shape_proxy"). */
void bh_sibling(const char *name, char *out, size_t cap);

/* Starts fieldsyncd --db dir/server.db --listen 127.0.0.1:0 [extra...] (NULL-terminated
 * extra arguments, may be NULL), stderr to dir/server.log, and waits for its "listening" line.
 * Returns 0 and fills s, or -1 with a message on stderr. */
int bh_server_start(bh_server *s, const char *dir, const char *const *extra);
/* SIGTERM, wait up to 10 s, then SIGKILL. Accepts a server that never started. */
void bh_server_stop(bh_server *s);

typedef struct bh_proc {
    double cpu_s;        /* utime + stime */
    long rss_kb;         /* VmRSS */
    long hwm_kb;         /* VmHWM: peak resident set */
    unsigned long long minflt; /* minor page faults so far (each ~10 µs on our VM) */
} bh_proc;
int bh_proc_read(pid_t pid, bh_proc *out);

/* Starts `perf record -e cpu-clock -F 999 -g -p pid -o out` (software clock: hardware
 * counters are not available on this kind of machine) and returns its pid, or -1. */
pid_t bh_perf_start(pid_t pid, const char *out);
/* Stops it (SIGINT) and waits: the profile is written. */
void bh_perf_stop(pid_t perf);

/* Runs `fieldsyncd admin --db db --json ARGS...` (args NULL-terminated) and returns its exit
 * status; its stdout (the JSON) goes into out (NUL-terminated, may be NULL). */
int bh_admin(const char *db, char *out, size_t cap, const char *const *args);

/* A batch of admin commands run with up to `parallel` processes at once (SQLite's busy
 * timeout serialises their writes). cmds[i] is a NULL-terminated argument list; outs[i]
 * (cap bytes each, may be NULL) receives each stdout. Returns the number that failed. */
int bh_admin_batch(const char *db, const char *const *const *cmds, size_t n, int parallel,
                   char **outs, size_t cap);

/* Extracts "key": "value" from a JSON line into out. Returns 0 or -1. */
int bh_json_str(const char *json, const char *key, char *out, size_t cap);

/* ---- the physical reference ------------------------------------------------------------ */

/* Inserts rows bodies[off[i]..off[i+1]) into a fresh SQLite file at path (INTEGER PRIMARY KEY,
 * the store's PRAGMAs: WAL, 8 MB cache, synchronous=FULL when full_sync (as fieldsyncd and
 * the SDK commit, store_set_synchronous) else NORMAL (store_open's default), page_size when
 * not 0 (STORE_AUTHORITY_PAGE_SIZE to compare with the server's store; 0: SQLite's default,
 * a replica's)), `batch` rows per transaction, one reused prepared statement; removes the
 * file after. *secs = time in
 * the inserts and commits; *written (if not NULL) = bytes passed to write(2) meanwhile.
 * Returns 0 or -1. */
int bh_raw_insert(const char *path, const uint8_t *bodies, const uint32_t *off, size_t n,
                  size_t batch, bool full_sync, int page_size, double *secs,
                  uint64_t *written);
/* Bytes this process has passed to write(2) so far (/proc/self/io wchar), or 0 if unknown. */
uint64_t bh_written_bytes(void);
void bh_remove_db(const char *path); /* path, -wal, -shm, -journal */

/* ---- packed changes ------------------------------------------------------------------ */

/* A list of packed MessagePack values (push-form changes), one allocation. */
typedef struct bh_blobs {
    uint8_t *p;
    size_t len, cap;
    uint32_t *off;       /* n + 1 offsets */
    size_t n, ncap;
} bh_blobs;
/* Appends c packed (push form unless full). Exits on out of memory. */
void bh_blobs_add(bh_blobs *b, const change *c, bool full);
void bh_blobs_free(bh_blobs *b);

/* Sets field f of c to v (replacing it, or inserting it in field order). */
void bh_change_put(change *c, const schema_field *f, fs_value v);
/* Looks up a field by name, exiting with a message if the schema lacks it. */
const schema_field *bh_field(const schema *s, const char *type, const char *name);

/* ---- many connections, one thread ---------------------------------------------------- */

typedef struct bh_net bh_net;
typedef struct bh_dev bh_dev;

/* A client network: one lws context (up to max_conns connections), one wire codec. Borrows
 * dicts (valid until bh_net_free). Returns new (free with bh_net_free). */
bh_net *bh_net_new(const wire_dicts *dicts, int max_conns);
void bh_net_free(bh_net *n);
/* Runs the service loop until done(ctx) returns true or deadline_s (bh_now() seconds,
 * 0 = none) passes. Returns 0, or -1 on the deadline. done is checked at least every 5 ms. */
int bh_net_run(bh_net *n, bool (*done)(void *ctx), void *ctx, double deadline_s);
/* Calls fn(ctx) from the service loop every period_us (until bh_net_free, or until called
 * again: fn NULL stops it). One per net. */
void bh_net_every(bh_net *n, int64_t period_us, void (*fn)(void *ctx), void *ctx);

enum bh_state {
    BH_IDLE,        /* not connected */
    BH_CONNECTING,  /* TCP + WebSocket handshake */
    BH_HELLO,       /* hello sent */
    BH_READY,       /* welcome received, nothing in flight */
    BH_PUSHING,     /* one or two pushes in flight */
    BH_PULLING,     /* a pull in flight */
    BH_CLOSED,      /* closed or failed (see failed, why) */
};

enum bh_event {
    BH_EV_WELCOME,  /* welcome arrived */
    BH_EV_BATCH,    /* one push_result arrived (counts updated) */
    BH_EV_PUSHED,   /* the whole backlog is acknowledged */
    BH_EV_PULLED,   /* a pull ended with more = false */
    BH_EV_FAILED,   /* the connection failed or the server sent an error */
};

/* Pushes in flight at most (docs/protocol.md §5), as the SDK. */
#define BH_PUSH_WINDOW 2

/* One simulated device on a bh_net: the protocol state machine of a device (hello, push its
 * backlog with up to two pushes in flight, the second sent before the first's push_result,
 * results matched first in, first out; pull until the end), with counters. Fields marked
 * (in) are set by the benchmark before bh_dev_connect; the rest are kept by the harness. */
struct bh_dev {
    /* (in) identity and behaviour */
    rid_t id;
    char token[WIRE_MAX_TOKEN + 1];
    uint32_t dict_want;          /* dictionary announced in hello (0 = never compress) */
    uint64_t cursor;             /* pull cursor announced and pulled from */
    bh_blobs backlog;            /* push-form changes, dseq first_dseq, first_dseq + 1, ... */
    uint64_t first_dseq;         /* dseq of backlog[0] (1 for a fresh device) */
    size_t first_batch;          /* changes in the first push (SDK: 16) */
    size_t max_batch;            /* changes per push after that (SDK: 200) */
    size_t max_batch_bytes;      /* uncompressed change bytes per push (SDK: 65536) */
    bool push_on_welcome;        /* start pushing the backlog as soon as welcome arrives */
    size_t push_until;           /* stop (BH_EV_PUSHED) once this many are answered; 0 = all */
    size_t push_window;          /* pushes in flight at most, 1..BH_PUSH_WINDOW (0 = 2, SDK) */
    bool full_pushes;            /* a bulk loader's choice: every push up to max_batch even
                                  * with 2 in flight (default: as the SDK, the pushes in flight
                                  * together hold one batch, each after the first half of it) */
    uint32_t pull_max;           /* changes per pull (0 = server's max_batch) */
    void (*on_event)(bh_dev *d, int event);
    /* messages the state machine does not handle (ledger, pong): r after the type */
    void (*on_other)(bh_dev *d, uint32_t type, mpr *r, uint32_t count);
    /* an error that does not close (BUSY, RESYNC, CURSOR): return true when handled, else the
     * device fails as with any error */
    bool (*on_soft_error)(bh_dev *d, const wire_error *err);
    void *user;
    /* state */
    bh_net *net;
    struct bh_conn *conn;
    int state;                   /* enum bh_state */
    uint32_t dict;               /* negotiated */
    uint64_t log_end;            /* from welcome */
    size_t acked;                /* backlog entries answered */
    size_t sent;                 /* backlog entries sent (answered + in flight) */
    size_t inflight;             /* changes in the pushes in flight */
    uint64_t fl_id[BH_PUSH_WINDOW]; /* batch ids in flight, oldest first */
    size_t fl_n[BH_PUSH_WINDOW]; /* their change counts */
    size_t nfl;                  /* pushes in flight */
    uint64_t batch_id;           /* of the last push sent */
    int pushes;
    /* counters */
    uint64_t accepted, duplicates, refused, pulled, pulls;
    uint64_t bytes_up, bytes_down; /* WebSocket payload bytes */
    char first_refusal[256];
    bool failed;
    char why[256];
    /* times (bh_now) */
    double t_connect, t_welcome, t_pushed, t_pull_start, t_pulled;
};

/* Starts connecting d to 127.0.0.1:port (hello follows the handshake). */
void bh_dev_connect(bh_net *n, bh_dev *d, int port);
/* Starts pushing the rest of the backlog (state READY). */
void bh_dev_push(bh_dev *d);
/* Starts pulling from d->cursor until more = false (state READY). */
void bh_dev_pull(bh_dev *d);
/* Sends a message body (already packed) on d's connection. Returns 0 or -1. */
int bh_dev_send(bh_dev *d, const void *body, size_t len);
/* Closes d's connection (state CLOSED, no event). */
void bh_dev_close(bh_dev *d);
void bh_dev_free(bh_dev *d); /* frees the backlog */

#endif

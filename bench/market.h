/*
 * market.h — the market-day load, shared by bench_market (its figures) and bench_live (live
 * latency while the server carries it).
 *
 * A district as the server sees it: T townships of 20 villages, 10 visitors' devices per
 * village (2,000 devices: 200 villages, 10 townships), each visitor's user scoped to its
 * village, and 100 children per village already on the server (pushed by one supervisor
 * device per township before anything is timed). On market day every device comes into
 * coverage with a week's backlog recorded offline: 15..25 visits and 8..12 single-field
 * child edits of children of its village (base = the create it had seen), and one device in
 * five a mandatory report, in the order they were recorded, with clocks spread over the past
 * week. Devices behave like the SDK: dictionary 1, a first push of 16 changes, then pushes of
 * up to 200 changes / 64 KiB, two in flight holding at most one batch between them (as the
 * SDK: each push after the first is half a batch); then pull from the cursor they had before.
 *
 * The enrolment (townships, villages, users, devices: ~4,200 `fieldsyncd admin` commands) is
 * made once into a template store under DIR/fieldsync-bench-cache/ and copied for each run
 * (SQLite backup API), because it takes minutes and measures nothing; --fresh remakes it.
 */
#ifndef FS_BENCH_MARKET_H
#define FS_BENCH_MARKET_H

#include "harness.h"

#define MARKET_VILLAGES_PER_TOWNSHIP 20
#define MARKET_DEVICES_PER_VILLAGE 10

typedef struct market_opts {
    int devices;             /* multiple of MARKET_DEVICES_PER_VILLAGE (default 2000) */
    int children_per_village;/* default 100 */
    double connect_window_s; /* devices connect spread over this (default 1 s) */
    const char *dir;         /* default /tmp */
    bool fresh;              /* remake the enrolment template */
    bool keep;               /* keep the run folder */
    bool raw;                /* devices never compress */
    bool live_users;         /* also enrol a subscriber and a probe device (bench_live) */
    const char *flush_chunk; /* fieldsyncd --flush-chunk (NULL: the server's default) */
} market_opts;

typedef struct market_ident {
    rid_t id;
    char token[WIRE_MAX_TOKEN + 1];
} market_ident;

typedef struct market {
    market_opts o;
    schema *s;               /* owned */
    wire_dicts *dicts;       /* owned */
    bh_server srv;
    char run_dir[1024];
    int n_dev, n_villages, n_townships;
    bh_dev *devs;            /* n_dev */
    market_ident *loaders;   /* n_townships: supervisor of township t, preload */
    market_ident sub, probe; /* live_users: supervisor of t-00; visitor of v-000 */
    rid_t *children;         /* n_villages * children_per_village */
    uint64_t *child_hlc;     /* their creates' clocks */
    uint64_t log_end;        /* after the preload: every device's cursor */
    uint64_t backlog_changes;/* sum over devices */
} market;

/* Enrolment (template) and the server started on a copy of it. Returns 0 or -1 (message
 * printed). market_free must be called either way. */
int market_setup(market *m, const market_opts *o);
/* The children preloaded (untimed) and every device's backlog built. 0 or -1. */
int market_preload(market *m);
/* Stops the server, removes the run folder (unless keep), frees. */
void market_free(market *m);

typedef struct market_phase {
    double secs;             /* from the first connect (or request) to the last answer */
    double server_cpu;       /* seconds of server CPU in the phase */
    double client_cpu;       /* seconds of this process's CPU in the phase */
    long server_rss_kb, server_hwm_kb;
    uint64_t changes;        /* acknowledged (push) or received (pull) */
    uint64_t messages;       /* pushes or pulls */
    uint64_t bytes_up, bytes_down;
    double dev_p50, dev_p99, dev_max; /* per device: connect (or pull) to done, seconds */
    int failed;              /* devices that failed */
    char first_failure[300];
    char load[64];
} market_phase;

/* Connects every device, waits for all welcomes, lets them sit idle settle_s, reads the
 * server's resident memory, closes them all. *per_session_kb = growth / devices. Call it
 * before market_preload: memory the allocator got back from earlier work would hide the
 * sessions' growth. *connect_cpu_s: server CPU for the handshakes and hellos. */
int market_idle(market *m, double settle_s, long *rss_before_kb, long *rss_idle_kb,
                double *per_session_kb, double *connect_cpu_s);
/* Market day: every device connects within the window and pushes its backlog. */
int market_push(market *m, bh_net *net, market_phase *out);
/* Then every device (still connected from market_push) pulls to the end of the log. */
int market_pull(market *m, bh_net *net, market_phase *out);

void market_print_phase(const char *name, const market_phase *p);

#endif

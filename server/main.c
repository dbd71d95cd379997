/*
 * main.c — fieldsyncd: arguments, start-up, the service loop, signals and shutdown.
 *
 *   fieldsyncd [serve options]      serve devices and pages (this file)
 *   fieldsyncd admin ...            manage users, devices, backups (admin.c)
 *
 * Start-up order matters for the one line tests and scripts wait for: the schema, the zstd
 * dictionaries next to it, the store (created and migrated, plus the srv_ tables), then the
 * listening socket; only then is "fieldsyncd listening on ADDR:PORT" printed and flushed.
 * A second daemon on the same store is refused through an flock on "<db>.lock", which is also
 * how `admin restore` knows a daemon is running.
 *
 * The loop is a plain lws_service() loop on one thread (WAL checkpoints have a thread of
 * their own, below). lws_service() may sleep for as long
 * as nothing happens, so deadlines are lws_sul timers: a one-second tick (idle sessions,
 * stuck closings, changes made by the admin commands through another connection, noticed by
 * PRAGMA data_version) and the shutdown drain deadline. SIGINT/SIGTERM only set a flag and
 * wake the loop; the loop then sends SHUTDOWN to every session, lets the queues drain for up
 * to 3 s, destroys the context and closes the store. A batch is applied inside one callback,
 * so it is committed before the flag is even looked at, or never started.
 */
#include "server.h"

#include "hugemem.h"
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;
static struct lws_context *volatile g_ctx;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_ctx)
        lws_cancel_service(g_ctx); /* a write to lws's wake pipe */
}

/* --sync: when the store's COMMIT is durable (see store_set_synchronous) */
static store_sync g_store_sync = STORE_SYNC_FULL;

/* The store's synchronous setting, read back from the connection. */
static const char *sync_readback(sqlite3 *db)
{
    static const char *const names[] = {"off", "normal", "full", "extra"};
    sqlite3_stmt *q;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    return v >= 0 && v <= 3 ? names[v] : "?";
}

/* ---- WAL checkpoints, mostly on their own thread ----------------------------------- *
 *
 * SQLite checkpoints a WAL database from inside the COMMIT that takes the log past 1,000
 * pages: it copies the pages into the database file and syncs it, 25-150 ms on market day
 * (measured with FIELDSYNC_LOOP_TRACE), on the service thread, between a slice's COMMIT and
 * its push_results and ledger events: every such pass was a latency spike for everyone.
 * So the store's connection does not checkpoint by itself. Its WAL hook (after a COMMIT
 * returned) signals a thread with a connection of its own, which runs a PASSIVE checkpoint:
 * it never waits for the writer and the writer never waits for it (WAL mode). The log only
 * restarts from its beginning when a write transaction begins with every frame copied,
 * which a checkpoint running beside a busy writer never achieves (the writer appends while
 * it copies; measured: the log grew without bound and every read slowed down). So once the
 * thread has copied all but a tail of at most CKPT_TAIL pages, the service thread copies
 * the tail itself at the start of its next work slice (server_checkpoint_tail: a few pages
 * and one sync, before the slice's BEGIN), and that BEGIN restarts the log.
 * Durability is unchanged: every COMMIT is synced before anything it produced leaves the
 * server (synchronous=FULL on the service thread, or a push group's by the sync thread of
 * durable.c); a checkpoint only moves committed pages. If the thread
 * cannot start, the store's connection keeps SQLite's automatic checkpoints. */
#define CKPT_PAGES 1000 /* SQLite's own autocheckpoint threshold */
#define CKPT_TAIL 256   /* pages the service thread copies itself to restart the log */

static struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool due, stop, busy, running;
    int done;            /* frames copied by the thread's last checkpoint; -1: none since
                          * the log restarted */
    int wal;             /* frames in the log at the last COMMIT (service thread) */
    sqlite3 *db;         /* the thread's own connection */
} g_ckpt = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .done = -1};

static void *ckpt_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_ckpt.mu);
    for (;;) {
        while (!g_ckpt.due && !g_ckpt.stop)
            pthread_cond_wait(&g_ckpt.cv, &g_ckpt.mu);
        if (g_ckpt.stop)
            break;
        g_ckpt.due = false;
        g_ckpt.busy = true;
        pthread_mutex_unlock(&g_ckpt.mu);
        int log = 0, done = -1;
        int rc = sqlite3_wal_checkpoint_v2(g_ckpt.db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
                                           &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            srv_log(SLOG_WARN, "checkpoint: %s", sqlite3_errmsg(g_ckpt.db));
        pthread_mutex_lock(&g_ckpt.mu);
        g_ckpt.busy = false;
        g_ckpt.done = rc == SQLITE_OK ? done : -1;
    }
    pthread_mutex_unlock(&g_ckpt.mu);
    return NULL;
}

/* The store connection's WAL hook: called after each COMMIT with the log's size. */
static int ckpt_wal_hook(void *ctx, sqlite3 *db, const char *name, int pages)
{
    server *srv = ctx;
    (void)db, (void)name;
    pthread_mutex_lock(&g_ckpt.mu);
    if (pages < g_ckpt.wal)
        g_ckpt.done = -1; /* the log restarted: what the thread copied is gone */
    g_ckpt.wal = pages;
    if (pages >= CKPT_PAGES && !g_ckpt.busy && !g_ckpt.due) {
        if (g_ckpt.done >= 0 && pages - g_ckpt.done <= CKPT_TAIL) {
            srv->ckpt_tail = true;
        } else {
            g_ckpt.due = true;
            pthread_cond_signal(&g_ckpt.cv);
        }
    }
    pthread_mutex_unlock(&g_ckpt.mu);
    return SQLITE_OK;
}

void server_checkpoint_tail(server *srv)
{
    if (!srv->ckpt_tail)
        return;
    srv->ckpt_tail = false;
    int64_t t0 = srv->lt ? lws_now_usecs() : 0;
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(srv->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
        SQLITE_OK) {
        pthread_mutex_lock(&g_ckpt.mu);
        g_ckpt.done = done;
        pthread_mutex_unlock(&g_ckpt.mu);
    }
    if (srv->lt) {
        srv->lt->cur.ckpt += lws_now_usecs() - t0;
        srv->lt->cur.n_ckpt++;
    }
}

/* Starts the checkpoint thread; on failure the store's connection keeps checkpointing
 * itself (logged). */
static void ckpt_start(server *srv, store_sync sync)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(srv->cfg.db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_exec(db, sync == STORE_SYNC_FULL ? "PRAGMA synchronous=FULL"
                                                 : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK) {
        srv_log(SLOG_WARN, "checkpoints stay on the service thread: %s",
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return;
    }
    g_ckpt.db = db;
    g_ckpt.stop = g_ckpt.due = g_ckpt.busy = false;
    g_ckpt.done = -1;
    if (pthread_create(&g_ckpt.th, NULL, ckpt_main, NULL)) {
        srv_log(SLOG_WARN, "checkpoints stay on the service thread: no thread");
        sqlite3_close(db);
        g_ckpt.db = NULL;
        return;
    }
    g_ckpt.running = true;
    sqlite3_wal_hook(srv->db, ckpt_wal_hook, srv); /* replaces the automatic checkpoint */
}

/* Stops the thread (a checkpoint in progress finishes first) and closes its connection. */
static void ckpt_stop(server *srv)
{
    if (!g_ckpt.running)
        return;
    if (srv->db)
        sqlite3_wal_autocheckpoint(srv->db, CKPT_PAGES); /* back to SQLite's own */
    pthread_mutex_lock(&g_ckpt.mu);
    g_ckpt.stop = true;
    pthread_cond_signal(&g_ckpt.cv);
    pthread_mutex_unlock(&g_ckpt.mu);
    pthread_join(g_ckpt.th, NULL);
    sqlite3_close(g_ckpt.db);
    g_ckpt.db = NULL;
    g_ckpt.running = false;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fieldsyncd [options]            serve devices over WebSocket\n"
            "       fieldsyncd admin --help         manage townships, users, devices, backups\n"
            "\n"
            "options:\n"
            "  --db PATH             the store (SQLite; created if missing)  [" SRV_DEFAULT_DB "]\n"
            "  --listen ADDR:PORT    address to listen on; port 0 picks a free port\n"
            "                        [" SRV_DEFAULT_LISTEN "]  (IPv6: [::1]:7370)\n"
            "  --schema FILE         schema file  [$FIELDSYNC_SCHEMA or the built-in path]\n"
            "  --tls-cert FILE       serve wss:// with this certificate (PEM) ...\n"
            "  --tls-key FILE        ... and this private key (PEM)\n"
            "  --web DIR             serve the supervisor page from DIR\n"
            "                        [the source tree's server/web, when it exists]\n"
            "  --no-web              serve no page files (the /api stays)\n"
            "  --ledger FILE         the supervisor ledger's configuration\n"
            "                        [$FIELDSYNC_LEDGER or ledger.yaml beside the schema]\n"
            "  --session-idle SECS   page sessions end after this long idle  [%d]\n"
            "  --session-max SECS    ... and this long after login  [%d]\n"
            "  --idle-timeout SECS   hang up sessions silent this long; 0 = never  [%d]\n"
            "  --keepalive SECS      WebSocket ping to a connection silent this long, hang-up\n"
            "                        when no pong came within half as long again  [%d]\n"
            "  --rate-limit N        messages per second per session, not counting hello,\n"
            "                        push, pull and reviews (paced by the server); 0 = no\n"
            "                        limit  [%d]\n"
            "  --hello-fails N       failed hellos per address per minute  [%d]\n"
            "  --ledger-queue N      ledger events queued per subscriber before RESYNC  [%d]\n"
            "  --flush-chunk N       field states written back per commit once 50,000 wait;\n"
            "                        smaller keeps live latency low, 0 writes them all at\n"
            "                        once (least CPU, but one commit then takes ~0.2-0.5 s)  [%d]\n"
            "  --sync full|normal    full: every push is synced to disk before it is\n"
            "                        acknowledged (one fsync per work slice, for bulk pushes\n"
            "                        on a thread of its own; survives power loss);\n"
            "                        normal: faster, but the last acknowledged pushes may be\n"
            "                        lost on power failure  [full]\n"
            "  --log-level LEVEL     error, warning, info or debug  [info]\n"
            "  -h, --help            this text\n"
            "\n"
            "On start it prints one line, \"fieldsyncd listening on ADDR:PORT\", on stdout.\n"
            "HTTP on the same port: GET /healthz, GET /metrics, the page and its /api;\n"
            "WebSocket: /sync, sub-protocol " WIRE_SUBPROTOCOL " (devices), /live, sub-protocol\n"
            LIVE_SUBPROTOCOL " (the page). SIGINT or SIGTERM stops it cleanly. Exit status:\n"
            "0 stopped cleanly, 1 bad usage or configuration, 3 store error, 4 cannot listen.\n",
            SRV_WEB_SESSION_IDLE_S, SRV_WEB_SESSION_MAX_S, SRV_IDLE_TIMEOUT_S, SRV_KEEPALIVE_S,
            SRV_MSG_RATE,
            SRV_HELLO_FAILS, SRV_LEDGER_QUEUE, SRV_FLUSH_CHUNK);
}

/* "host:port", "[v6]:port". */
static int parse_listen(const char *s, srv_config *cfg)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(cfg->host, sizeof cfg->host, "%.*s", (int)(close - s - 1), s + 1);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s)
            return -1;
        snprintf(cfg->host, sizeof cfg->host, "%.*s", (int)(colon - s), s);
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return -1;
    cfg->port = (int)port;
    return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v > max || s[0] == '-')
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_args(int argc, char **argv, srv_config *cfg)
{
    cfg->db_path = SRV_DEFAULT_DB;
    parse_listen(SRV_DEFAULT_LISTEN, cfg);
    cfg->idle_timeout_s = SRV_IDLE_TIMEOUT_S;
    cfg->keepalive_s = SRV_KEEPALIVE_S;
    cfg->flush_chunk = SRV_FLUSH_CHUNK;
    cfg->msg_rate = SRV_MSG_RATE;
    cfg->hello_fails = SRV_HELLO_FAILS;
    cfg->ledger_queue = SRV_LEDGER_QUEUE;
    cfg->max_frame = WIRE_MAX_FRAME;
    cfg->max_batch = WIRE_MAX_BATCH;
    cfg->session_idle_s = SRV_WEB_SESSION_IDLE_S;
    cfg->session_max_s = SRV_WEB_SESSION_MAX_S;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(SRV_EXIT_OK);
        }
        if (!strcmp(a, "--no-web")) {
            cfg->no_web = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fieldsyncd: unknown option or missing value: %s (see --help)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        unsigned u;
        if (!strcmp(a, "--db")) {
            cfg->db_path = v;
        } else if (!strcmp(a, "--listen")) {
            if (parse_listen(v, cfg)) {
                fprintf(stderr, "fieldsyncd: --listen wants ADDR:PORT (e.g. 127.0.0.1:7370), "
                                "got '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--schema")) {
            cfg->schema_path = v;
        } else if (!strcmp(a, "--tls-cert")) {
            cfg->tls_cert = v;
        } else if (!strcmp(a, "--tls-key")) {
            cfg->tls_key = v;
        } else if (!strcmp(a, "--web")) {
            cfg->web_dir = v;
        } else if (!strcmp(a, "--ledger")) {
            cfg->ledger_path = v;
        } else if (!strcmp(a, "--session-idle") && !parse_uint(v, 30 * 86400, &u) && u >= 60) {
            cfg->session_idle_s = u;
        } else if (!strcmp(a, "--session-max") && !parse_uint(v, 30 * 86400, &u) && u >= 60) {
            cfg->session_max_s = u;
        } else if (!strcmp(a, "--idle-timeout") && !parse_uint(v, 86400, &u)) {
            cfg->idle_timeout_s = (int)u;
        } else if (!strcmp(a, "--keepalive") && !parse_uint(v, 3600, &u) && u >= 2) {
            cfg->keepalive_s = (int)u;
        } else if (!strcmp(a, "--flush-chunk") && !parse_uint(v, 1000000, &u)) {
            cfg->flush_chunk = u;
        } else if (!strcmp(a, "--rate-limit") && !parse_uint(v, 1000000, &u)) {
            cfg->msg_rate = u;
        } else if (!strcmp(a, "--hello-fails") && !parse_uint(v, 1000000, &u)) {
            cfg->hello_fails = u;
        } else if (!strcmp(a, "--ledger-queue") && !parse_uint(v, 1000000, &u) && u > 0) {
            cfg->ledger_queue = u;
        } else if (!strcmp(a, "--sync")) {
            if (!strcmp(v, "full")) {
                g_store_sync = STORE_SYNC_FULL;
            } else if (!strcmp(v, "normal")) {
                g_store_sync = STORE_SYNC_NORMAL;
            } else {
                fprintf(stderr, "fieldsyncd: --sync is full or normal\n");
                return -1;
            }
        } else if (!strcmp(a, "--log-level")) {
            static const char *const lv[] = {"error", "warning", "info", "debug"};
            int k = -1;
            for (int j = 0; j < 4; j++)
                if (!strcmp(v, lv[j]))
                    k = j;
            if (k < 0) {
                fprintf(stderr, "fieldsyncd: --log-level is error, warning, info or debug\n");
                return -1;
            }
            srv_log_level = k;
        } else {
            fprintf(stderr, "fieldsyncd: bad option or value: %s %s (see --help)\n", a, v);
            return -1;
        }
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        fprintf(stderr, "fieldsyncd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    const char *files[2] = {cfg->tls_cert, cfg->tls_key};
    for (int i = 0; i < 2; i++)
        if (files[i] && access(files[i], R_OK) != 0) {
            fprintf(stderr, "fieldsyncd: cannot read %s %s: %s\n",
                    i ? "--tls-key" : "--tls-cert", files[i], strerror(errno));
            return -1;
        }
    if (cfg->no_web && cfg->web_dir) {
        fprintf(stderr, "fieldsyncd: --web and --no-web exclude each other\n");
        return -1;
    }
#ifdef FS_WEB_DIR
    /* the page of the source tree, so that a build from the repository shows it */
    if (!cfg->web_dir && !cfg->no_web && access(FS_WEB_DIR "/index.html", R_OK) == 0)
        cfg->web_dir = FS_WEB_DIR;
#endif
    if (cfg->web_dir && access(cfg->web_dir, R_OK | X_OK) != 0) {
        fprintf(stderr, "fieldsyncd: cannot read --web %s: %s\n", cfg->web_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int lock_store(server *srv)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.lock", srv->cfg.db_path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        srv_log(SLOG_ERROR, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "?";
        ssize_t n = read(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 1] = '\0';
        srv_log(SLOG_ERROR, "another fieldsyncd (pid %s) serves %s: stop it first",
                strtok(pid, "\n") ? pid : "?", srv->cfg.db_path);
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n)
        srv_log(SLOG_WARN, "cannot write the pid into %s", path);
    srv->lock_fd = fd;
    return 0;
}

/* true when another connection (an admin command) committed since the last call */
static bool admin_changed(server *srv)
{
    if (!srv->dv_stmt)
        return false;
    sqlite3_reset(srv->dv_stmt);
    if (sqlite3_step(srv->dv_stmt) != SQLITE_ROW)
        return false;
    int64_t v = sqlite3_column_int64(srv->dv_stmt, 0);
    sqlite3_reset(srv->dv_stmt);
    bool changed = v != srv->data_version;
    srv->data_version = v;
    return changed;
}

static void tick_cb(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, tick);
    bool changed = admin_changed(srv);
    if (changed && villages_reload(srv))
        srv_log(SLOG_WARN, "cannot reload the villages; keeping the previous list");
    sessions_tick(srv, changed);
    hello_notes_write(srv); /* a hello outside a work slice (none today): within a second */
    live_tick(srv, changed);
    if (srv_mono_ms() >= srv->web_expire_at) {
        srv->web_expire_at = srv_mono_ms() + 60000;
        web_sessions_expire(srv);
    }
    lws_sul_schedule(srv->ctx, 0, &srv->tick, tick_cb, LWS_US_PER_SEC);
}

/* FIELDSYNC_LOOP_TRACE=FILE: the timings of every pass (server.h: loop_pass), as text. */
static void loop_trace_init(server *srv)
{
    const char *path = getenv("FIELDSYNC_LOOP_TRACE");
    if (!path || !*path)
        return;
    srv->lt = calloc(1, sizeof *srv->lt);
    if (srv->lt)
        srv->lt->path = path;
}

static void loop_trace_pass(server *srv, int64_t start)
{
    loop_trace *lt = srv->lt;
    lt->cur.start = start;
    lt->cur.total = lws_now_usecs() - start;
    if (lt->n == lt->cap) {
        size_t cap = lt->cap ? lt->cap * 2 : 65536;
        loop_pass *v = realloc(lt->v, cap * sizeof *v);
        if (!v)
            return;
        lt->v = v;
        lt->cap = cap;
    }
    lt->v[lt->n++] = lt->cur;
    memset(&lt->cur, 0, sizeof lt->cur);
}

static void loop_trace_write(server *srv)
{
    loop_trace *lt = srv->lt;
    if (!lt)
        return;
    FILE *f = fopen(lt->path, "w");
    if (f) {
        fprintf(f, "start_us total rx n_rx wr n_wr slice n_run commit n_commit ckpt n_ckpt "
                   "fan n_fan\n");
        for (size_t i = 0; i < lt->n; i++) {
            const loop_pass *p = &lt->v[i];
            fprintf(f, "%lld %lld %lld %u %lld %u %lld %u %lld %u %lld %u %lld %u\n",
                    (long long)p->start, (long long)p->total, (long long)p->rx, p->n_rx,
                    (long long)p->wr, p->n_wr, (long long)p->slice, p->n_run,
                    (long long)p->commit, p->n_commit, (long long)p->ckpt, p->n_ckpt,
                    (long long)p->fan, p->n_fan);
        }
        fclose(f);
    }
    free(lt->v);
    free(lt);
    srv->lt = NULL;
}

static void drain_cb(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, drain);
    srv->drain_expired = true;
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    srv_log(level == LLL_ERR ? SLOG_ERROR : SLOG_WARN, "lws: %.*s", (int)n, line);
}

static int start_listening(server *srv)
{
    static struct lws_protocols protocols[4];
    protocols[0] = (struct lws_protocols){
        .name = "http", .callback = http_callback, .per_session_data_size = http_pss_size(),
        .rx_buffer_size = 4096, .tx_packet_size = 4096};
    protocols[1] = (struct lws_protocols){
        .name = WIRE_SUBPROTOCOL, .callback = session_callback,
        .per_session_data_size = sizeof(session), .rx_buffer_size = 16384,
        .tx_packet_size = 16384};
    protocols[2] = (struct lws_protocols){
        .name = LIVE_SUBPROTOCOL, .callback = live_callback,
        .per_session_data_size = live_pss_size(), .rx_buffer_size = 1024,
        .tx_packet_size = 4096};
    /* lws pings a connection silent for --keepalive (30 s) and hangs up a TCP peer that
     * answers no WebSocket ping within half as long again (45 s: dead links); a session
     * waiting for the server counts as alive (sessions_tick). The protocol's own idle
     * timeout (--idle-timeout) is separate: sessions_tick */
    static lws_retry_bo_t retry;
    retry.secs_since_valid_ping = (uint16_t)srv->cfg.keepalive_s;
    retry.secs_since_valid_hangup = (uint16_t)(srv->cfg.keepalive_s + srv->cfg.keepalive_s / 2);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (srv->cfg.tls_cert)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = srv;
    info.protocols = protocols;
    info.port = CONTEXT_PORT_NO_LISTEN;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        srv_log(SLOG_ERROR, "cannot create the libwebsockets context");
        return -1;
    }
    info.port = srv->cfg.port; /* 0: the kernel picks a free port */
    /* lws 4.1 binds an IPv6 socket to every address when given an IPv4 literal with IPv6
     * enabled: an IPv4 address must take the IPv4-only path to bind where it was told */
    if (!strchr(srv->cfg.host, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.iface = srv->cfg.host;
    info.vhost_name = "fieldsync";
    info.retry_and_idle_policy = &retry;
    info.ssl_cert_filepath = srv->cfg.tls_cert;
    info.ssl_private_key_filepath = srv->cfg.tls_key;
    info.extensions = NULL; /* no permessage-deflate: the payloads are zstd already */
    srv->vhost = lws_create_vhost(srv->ctx, &info);
    if (!srv->vhost) {
        srv_log(SLOG_ERROR, "cannot listen on %s:%d (address in use, or not an address of "
                            "this machine?)",
                srv->cfg.host, srv->cfg.port);
        return -1;
    }
    return lws_get_vhost_listen_port(srv->vhost);
}

static int server_open(server *srv, fs_error *e)
{
    const char *schema_path = srv->cfg.schema_path ? srv->cfg.schema_path
                                                   : schema_default_path();
    int rc = schema_load(schema_path, &srv->schema, e);
    if (rc)
        return SRV_EXIT_USAGE;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", schema_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if ((rc = wire_dicts_load(dir, &srv->dicts, e)))
        return SRV_EXIT_USAGE;
    /* the supervisor ledger: an explicit --ledger must load; the default file may be absent
     * (then the page's data API answers 503 and says why) */
    const char *lpath = srv->cfg.ledger_path ? srv->cfg.ledger_path
                                             : ledger_default_path(schema_path);
    if (srv->cfg.ledger_path || access(lpath, F_OK) == 0) {
        if ((rc = ledger_config_load(lpath, srv->schema, &srv->ledger, e)))
            return SRV_EXIT_USAGE;
    } else {
        srv_log(SLOG_WARN, "no ledger configuration at %s: the supervisor page has no data "
                           "(give --ledger FILE)", lpath);
    }
    if (lock_store(srv))
        return SRV_EXIT_STORE;
    if ((rc = store_open(srv->cfg.db_path, srv->schema, STORE_AUTHORITY, &srv->store, e)) ||
        (rc = store_set_synchronous(srv->store, g_store_sync, e)))
        return SRV_EXIT_STORE;
    /* the field cache is written back a chunk per group commit (push_group_end), never
     * 50,000 states in one commit: one such flush held every live push 150-450 ms */
    store_set_flush_threshold(srv->store, SRV_FLUSH_THRESHOLD);
    store_set_flush_chunk(srv->store, srv->cfg.flush_chunk); /* 0: whole flushes */
    srv->db = store_db(srv->store);
    if (srvdb_migrate(srv->db, e) || villages_reload(srv))
        return SRV_EXIT_STORE;
    ckpt_start(srv, g_store_sync);
    if (sqlite3_prepare_v3(srv->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT,
                           &srv->dv_stmt, NULL) == SQLITE_OK)
        admin_changed(srv);
    srv->batch = calloc(WIRE_MAX_BATCH, sizeof *srv->batch);
    srv->results = calloc(WIRE_MAX_BATCH, sizeof *srv->results);
    if (!srv->batch || !srv->results || wire_codec_new(srv->dicts, &srv->dec) ||
        wire_codec_new(srv->dicts, &srv->enc)) {
        fs_error_set(e, FS_ENOMEM, "out of memory");
        return SRV_EXIT_STORE;
    }
    msgpack_sbuffer_init(&srv->out);
    msgpack_sbuffer_init(&srv->tmp);
    return 0;
}

static void server_close(server *srv)
{
    if (srv->ctx)
        lws_context_destroy(srv->ctx); /* closes what is left: CLOSED for each session */
    durable_stop(srv);
    ckpt_stop(srv);
    sqlite3_finalize(srv->dv_stmt);
    sqlite3_finalize(srv->parent_stmt);
    srv->parent_stmt = NULL;
    sqlite3_finalize(srv->device_stmt);
    srv->device_stmt = NULL;
    store_close(srv->store);
    ledger_config_free(srv->ledger);
    schema_free(srv->schema);
    wire_codec_free(srv->dec);
    wire_codec_free(srv->enc);
    wire_dicts_free(srv->dicts);
    msgpack_sbuffer_destroy(&srv->out);
    msgpack_sbuffer_destroy(&srv->tmp);
    free(srv->batch);
    free(srv->results);
    free(srv->push_items);
    free(srv->villages);
    if (srv->lock_fd >= 0)
        close(srv->lock_fd);
}

/* SQLite's page cache from huge pages (hugemem.h): every page a connection caches is taken
 * from this pool while it has room, then from malloc. A new page of the store (the log grows
 * by ~1,000 of them per 100,000 changes) otherwise faults in a fresh 16 KiB of heap: 21% of
 * the service thread's page faults in the ingest profile. The pool is the store's cache_size
 * (8,000 KiB, store.c), four huge pages, which its connection fills anyway; SQLite writes a
 * link into every slot at its start, so the pool is resident from then on. */
#define PAGE_POOL_BYTES (4 * HUGEMEM_PAGE)
static unsigned g_page_pool_slots; /* 0: no pool (SQLite's pages all from malloc) */

unsigned server_page_pool_slots(void) { return g_page_pool_slots; }

static void page_pool_init(void)
{
    int hdr = 0;
    if (sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &hdr) != SQLITE_OK || hdr < 0)
        return;
    size_t slot = ((size_t)STORE_AUTHORITY_PAGE_SIZE + (size_t)hdr + 7) & ~(size_t)7;
    void *pool = hugemem_zalloc(PAGE_POOL_BYTES); /* for the process' life */
    if (!pool)
        return;
    if (sqlite3_config(SQLITE_CONFIG_PAGECACHE, pool, (int)slot,
                       (int)(PAGE_POOL_BYTES / slot)) != SQLITE_OK) {
        hugemem_free(pool, PAGE_POOL_BYTES);
        return;
    }
    g_page_pool_slots = (unsigned)(PAGE_POOL_BYTES / slot);
}

int main(int argc, char **argv)
{
    /* SQLite's memory statistics take a global mutex around every allocation (3% of the
     * ingest profile); nothing here reads them */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (argc > 1 && !strcmp(argv[1], "admin"))
        return admin_main(argc - 1, argv + 1);
    page_pool_init(); /* the daemon's only: an admin command is over in milliseconds */
    static server srv; /* big (scratch change), and there is only one */
    if (parse_args(argc, argv, &srv.cfg))
        return SRV_EXIT_USAGE;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    if (fault_init()) /* tests only: FIELDSYNC_FAULT (fault.c) */
        return SRV_EXIT_USAGE;
    if (auth_init()) {
        srv_log(SLOG_ERROR, "libsodium cannot start");
        return SRV_EXIT_STORE;
    }
    srv.lock_fd = -1;
    fs_error e = {0};
    int rc = server_open(&srv, &e);
    if (rc) {
        if (e.code)
            srv_log(SLOG_ERROR, "%s", e.msg);
        server_close(&srv);
        return rc;
    }
    int port = start_listening(&srv);
    if (port <= 0) {
        server_close(&srv);
        return SRV_EXIT_NET;
    }
    if (g_store_sync == STORE_SYNC_FULL)
        durable_start(&srv); /* push groups synced by a thread of their own (durable.c) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the signal interrupts poll() */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_ctx = srv.ctx;
    bool v6 = strchr(srv.cfg.host, ':') != NULL;
    printf("fieldsyncd listening on %s%s%s:%d\n", v6 ? "[" : "", srv.cfg.host, v6 ? "]" : "",
           port);
    fflush(stdout);
    srv_log(SLOG_INFO, "store %s (synchronous %s), schema version %d, %zu villages, "
            "dictionary %u%s",
            srv.cfg.db_path, sync_readback(srv.db), srv.schema->version, srv.n_villages,
            wire_dicts_latest(srv.dicts), srv.cfg.tls_cert ? ", TLS" : "");
    srv_log(SLOG_INFO, "supervisor page: %s, ledger %s", srv.cfg.web_dir ? srv.cfg.web_dir : "off",
            srv.ledger ? srv.ledger->path : "none");
    lws_sul_schedule(srv.ctx, 0, &srv.tick, tick_cb, LWS_US_PER_SEC);

    loop_trace_init(&srv);
    while (!g_stop && !srv.fatal) {
        int64_t t0 = srv.lt ? lws_now_usecs() : 0;
        if (lws_service(srv.ctx, 0) < 0)
            break;
        if (srv.lt)
            loop_trace_pass(&srv, t0);
    }
    loop_trace_write(&srv);

    srv_log(SLOG_INFO, "stopping: %u sessions get SHUTDOWN", srv.n_sessions);
    srv.stopping = true;
    sessions_shutdown(&srv);
    live_shutdown(&srv);
    lws_sul_schedule(srv.ctx, 0, &srv.drain, drain_cb,
                     (lws_usec_t)SRV_SHUTDOWN_GRACE_MS * 1000);
    while (srv.n_sessions && !srv.drain_expired)
        if (lws_service(srv.ctx, 0) < 0)
            break;
    lws_sul_cancel(&srv.tick);
    lws_sul_cancel(&srv.drain);
    hello_notes_write(&srv); /* hellos of the last slice, if it was cut short */
    hello_notes_free(&srv);
    g_ctx = NULL;
    server_close(&srv);
    srv_log(SLOG_INFO, "stopped");
    return srv.fatal ? SRV_EXIT_STORE : SRV_EXIT_OK;
}

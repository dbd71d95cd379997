/*
 * durable.c — the push groups' fsync on a thread of its own, and the barrier that keeps
 * everything a COMMIT produced inside the server until that COMMIT is on disk.
 *
 * With synchronous=FULL every COMMIT syncs the WAL before it returns: the service thread
 * waited for the disk once per work slice (~1 ms here, tens of ms on an SD card), doing
 * nothing, a fifth of an ingest's wall time (docs/performance.md §1). Now a bulk push
 * group's COMMIT (push_group_end; a group opened by a push of the bulk lane: backlogs over
 * 4 KiB) runs with synchronous=NORMAL (the WAL is written, not synced) and this thread syncs
 * the WAL file (fdatasync on its own descriptor of <db>-wal) while the service thread goes
 * on with the next slice. What the COMMIT produced is held back until the sync returned:
 *
 *   - a bulk group's BEGIN is preceded by durable_group_open (synchronous=NORMAL); its
 *     COMMIT is a generation: durable_commit_begin() numbers it (dur_gen), and every frame
 *     queued from then on (a session's queue, session.c, or a supervisor page's live
 *     channel, web_live.c) carries that number (durable_tag);
 *   - a frame whose number is above `done` (the last generation the thread synced) is not
 *     written: push_results, ledger events, pull answers, welcomes, review lists, in queue
 *     order; a pong or an error says nothing read from the store and goes at once, unless
 *     it is queued behind a held frame (session.c queue_body);
 *   - when the thread has synced, it wakes the service loop (lws_cancel_service); the loop
 *     raises `done` and writes what is no longer held (durable_poll, session_release_held):
 *     at LWS_CALLBACK_EVENT_WAIT_CANCELLED, at every RECEIVE, after each parked message and
 *     every 64 changes a push applies (handle_push.c push_authorize), whichever comes first.
 *
 * So invariant 1 holds as before: nothing is acknowledged, sent to another device or shown
 * to a subscriber before it would survive a power failure; only the service thread no
 * longer waits. A pull or a subscriber can never see a change that a power failure could
 * take back (a pull cursor past the end of the log would skip the changes that later take
 * those numbers). The supervisor page's HTTP reads are not held: they show what is
 * committed, at most one sync (~1 ms) before it is durable (its live events are held).
 *
 * Other writes of the service thread keep synchronous=FULL: each returns durable, and its
 * sync also covers every earlier group. Among them the interactive lane's groups (an entry
 * just made, a review resolution): for them waiting for the sync on the service thread and
 * writing the results and events right after is the shorter path (measured: with those
 * async too the live ledger event's p99 on market day rose from 76-101 ms to 94-157 ms,
 * a sync thread busy with the previous group making it wait for two syncs), and on market
 * day they are most of the pushes, so the market day's pace is that of before. Also a push
 * outside a slice, hello bookkeeping outside a group, the web page's writes.
 *
 * Why this is safe with SQLite: in WAL mode a COMMIT only appends frames to <db>-wal; with
 * synchronous=NORMAL SQLite syncs the WAL before each checkpoint and the database after it,
 * so the database stays consistent; fdatasync of the WAL after the COMMIT makes everything
 * up to that commit frame durable (frames are only appended, or the log restarts from its
 * beginning once every frame was checkpointed and synced). The descriptor is the server's
 * own: the WAL file holds no POSIX locks (those are on the -shm file) and is never unlinked
 * while the store's connection is open; its directory entry is synced once at start.
 *
 * If fdatasync fails the pages may be gone from the cache without an error on the next try:
 * nothing held can be confirmed. The held frames of every session are dropped, those
 * sessions get INTERNAL (nothing from their messages was acknowledged: they send again), and
 * the server stops (srv->fatal) so that a restart reads the WAL as it is on disk.
 *
 * Tests (fault.c): sync_hold:MS delays each sync by MS and logs it (server.durable checks
 * that nothing leaves before the log says the sync returned); sync_fail fails the first.
 * A later successful sync is never taken to cover an earlier generation whose sync failed:
 * on Linux the pages of a failed write-back may be dropped and reported only once.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, stop;
    int fd;                    /* <db>-wal, read-only, the thread's */
    uint64_t want;             /* the last generation committed (service thread sets it) */
    _Atomic uint64_t synced;   /* the last generation on disk (the thread sets it) */
    _Atomic uint64_t failed;   /* a generation whose sync failed (0: none) */
    int err;                   /* its errno */
    struct lws_context *ctx;
} g_dur = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .fd = -1};

static void *sync_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_dur.mu);
    for (;;) {
        while (g_dur.want <= atomic_load(&g_dur.synced) && !g_dur.stop)
            pthread_cond_wait(&g_dur.cv, &g_dur.mu);
        if (g_dur.want <= atomic_load(&g_dur.synced))
            break; /* stopping, and nothing left to sync */
        uint64_t target = g_dur.want;
        pthread_mutex_unlock(&g_dur.mu);
        unsigned hold = fault_sync_hold_ms();
        if (hold)
            nanosleep(&(struct timespec){hold / 1000, (long)(hold % 1000) * 1000000L}, NULL);
        int err = fdatasync(g_dur.fd) ? errno : fault_sync_fail() ? EIO : 0;
        if (hold)
            srv_log(SLOG_WARN, "fault injection: sync of commit %llu returned after %u ms",
                    (unsigned long long)target, hold);
        pthread_mutex_lock(&g_dur.mu);
        if (err) {
            g_dur.err = err;
            atomic_store(&g_dur.failed, target);
        } else {
            atomic_store(&g_dur.synced, target);
        }
        lws_cancel_service(g_dur.ctx); /* -> durable_collect on the service thread */
        if (err)
            break; /* nothing later can be confirmed: the server stops */
    }
    pthread_mutex_unlock(&g_dur.mu);
    return NULL;
}

/* Syncs the folder that holds path, so that a file created in it survives a power failure. */
static int sync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int durable_start(server *srv)
{
    char wal[4096 + 8];
    snprintf(wal, sizeof wal, "%s-wal", srv->cfg.db_path);
    /* in WAL mode SQLite creates <db>-wal when the store is opened; it is not unlinked
     * until the last connection closes */
    int fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || sync_dir_of(srv->cfg.db_path)) {
        srv_log(SLOG_WARN, "push groups are synced on the service thread: %s: %s", wal,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    g_dur.fd = fd;
    g_dur.ctx = srv->ctx;
    g_dur.stop = false;
    g_dur.want = 0;
    atomic_store(&g_dur.synced, 0);
    atomic_store(&g_dur.failed, 0);
    if (pthread_create(&g_dur.th, NULL, sync_main, NULL)) {
        srv_log(SLOG_WARN, "push groups are synced on the service thread: no thread");
        close(fd);
        g_dur.fd = -1;
        return -1;
    }
    g_dur.running = true;
    srv->dur_on = true;
    return 0;
}

void durable_stop(server *srv)
{
    if (!g_dur.running)
        return;
    pthread_mutex_lock(&g_dur.mu);
    g_dur.stop = true;
    pthread_cond_signal(&g_dur.cv);
    pthread_mutex_unlock(&g_dur.mu);
    pthread_join(g_dur.th, NULL); /* after the last sync it was asked for */
    close(g_dur.fd);
    g_dur.fd = -1;
    g_dur.running = false;
    srv->dur_on = false;
}

uint64_t durable_tag(const server *srv)
{
    return srv->dur_gen > srv->dur_done ? srv->dur_gen : 0;
}

void durable_group_open(server *srv)
{
    if (!srv->dur_on || srv->dur_group)
        return;
    /* before BEGIN: SQLite refuses to change the setting inside a transaction */
    fs_error e = {0};
    if (store_set_synchronous(srv->store, STORE_SYNC_NORMAL, &e)) {
        srv_log(SLOG_WARN, "this push group syncs on the service thread: %s", e.msg);
        return;
    }
    srv->dur_group = true;
}

void durable_commit_begin(server *srv)
{
    if (srv->dur_group)
        srv->dur_gen++;
}

void durable_commit_end(server *srv)
{
    if (!srv->dur_group)
        return;
    srv->dur_group = false;
    fs_error e = {0};
    if (store_set_synchronous(srv->store, STORE_SYNC_FULL, &e))
        srv_log(SLOG_ERROR, "the store stays at synchronous=NORMAL: %s", e.msg);
    pthread_mutex_lock(&g_dur.mu);
    g_dur.want = srv->dur_gen;
    pthread_cond_signal(&g_dur.cv);
    pthread_mutex_unlock(&g_dur.mu);
}

/* The sync failed: nothing held can be confirmed (see the file header). */
static void durable_failed(server *srv)
{
    srv_log(SLOG_ERROR,
            "fdatasync of the store's WAL failed (%s): what was committed since the last "
            "sync may not be on disk. Nothing of it was acknowledged; the server stops. "
            "Check the disk, then start the server again: devices send those changes again",
            strerror(g_dur.err));
    srv->dur_done = srv->dur_gen; /* from here on nothing is held: the errors go out */
    session_drop_held(srv);
    live_drop_held(srv);
    srv->dur_on = false; /* what is left of the run commits with synchronous=FULL */
    srv->fatal = true;
    lws_cancel_service(srv->ctx);
}

void durable_poll(server *srv)
{
    if (!srv->dur_on)
        return;
    if (atomic_load(&g_dur.failed)) {
        durable_failed(srv);
        return;
    }
    uint64_t synced = atomic_load(&g_dur.synced);
    if (synced <= srv->dur_done)
        return;
    srv->dur_done = synced;
    session_release_held(srv);
    live_release_held(srv);
}

/*
 * sync.c — fieldsync_sync (one session), fieldsync_sync_auto (sessions for as long as the
 * device runs) and fieldsync_cancel.
 *
 * Automatic mode owns reconnection, which libwebsockets deliberately does not do: after a
 * failure it waits backoff_min * 2^(failures-1), capped at backoff_max, scaled by a random
 * factor in [0.5, 1.5) ("jitter", so that a village's devices coming back into coverage at
 * once do not hit the server in lock-step); after a success it waits interval_ms, but wakes
 * early when the outbox grows (another handle or process saved a change). Waiting is a
 * condition-variable wait that fieldsync_cancel() interrupts. Failures that waiting cannot
 * cure (bad token, not enrolled, store broken, sequence disagreement) end the loop.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void opts_defaults(fieldsync_sync_opts *o, const fieldsync_sync_opts *in)
{
    if (in)
        *o = *in;
    else
        memset(o, 0, sizeof *o);
#define DEF(f, v)                                                                           \
    if (o->f <= 0)                                                                          \
    o->f = (v)
    DEF(connect_timeout_ms, 15000);
    DEF(reply_timeout_ms, 60000);
    DEF(first_batch, 16);
    DEF(max_batch, 200);
    DEF(max_batch_bytes, 65536);
    DEF(pull_batch, WIRE_MAX_BATCH); /* the server caps it (welcome max_batch) */
    DEF(pull_commit, 5000);
    DEF(interval_ms, 30000);
    DEF(backoff_min_ms, 1000);
    DEF(backoff_max_ms, 300000);
#undef DEF
}

/* Takes a pending cancel request (returns whether there was one). */
static bool take_cancel(fieldsync_db *db)
{
    pthread_mutex_lock(&db->mu);
    bool c = db->cancel != 0;
    db->cancel = 0;
    pthread_mutex_unlock(&db->mu);
    return c;
}

static int sync_locked(fieldsync_db *db, const fieldsync_sync_opts *o, fieldsync_progress_cb cb,
                       void *ctx, fieldsync_sync_result *res)
{
    int rc;
    /* the identity may have been changed by another handle (fieldsync enrol) */
    fieldsync_identity id;
    if ((rc = sdk_refresh(db)) || (rc = fieldsync_identity_get(db, &id)))
        return rc;
    if (!db->enrolled)
        return sdk_fail(db, FIELDSYNC_ENOTENROLLED,
                        "this device is not enrolled: run enrol with the server URL, device id "
                        "and token from `fieldsyncd admin device enrol`");
    rc = session_run(db, o, cb, ctx, res);
    res->pending = (uint64_t)sdk_count(db, "SELECT count(*) FROM dev_outbox");
    kv_get_u64(db, "cursor", &res->cursor);
    if (!rc) {
        kv_set_u64(db, "last_sync_ms", (uint64_t)sdk_now_ms());
        if (cb) {
            fieldsync_progress p = {.phase = FIELDSYNC_PHASE_DONE};
            cb(ctx, &p);
        }
    } else if (!res->message[0] || rc != FIELDSYNC_OK) {
        snprintf(res->message, sizeof res->message, "%.250s", db->err);
    }
    return rc;
}

/* One session at a time per replica file, across threads and processes: two sessions
 * applying to one store at once would each merge into field states the other is changing. */
static int lock_replica(fieldsync_db *db, int *fd)
{
    char path[4200];
    snprintf(path, sizeof path, "%s.sync-lock", db->path);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return sdk_fail(db, FIELDSYNC_ESTORE, "cannot open %s: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB)) {
        close(*fd);
        *fd = -1;
        return sdk_fail(db, FIELDSYNC_EBUSY, "another sync is running on %s", db->path);
    }
    return 0;
}

static int sync_once(fieldsync_db *db, const fieldsync_sync_opts *o, fieldsync_progress_cb cb,
                     void *ctx, fieldsync_sync_result *res)
{
    db->err[0] = '\0';
    int lock;
    int rc = lock_replica(db, &lock);
    if (rc) {
        snprintf(res->message, sizeof res->message, "%.250s", db->err);
        return rc;
    }
    rc = sync_locked(db, o, cb, ctx, res);
    close(lock); /* releases the flock */
    return rc;
}

int fieldsync_sync(fieldsync_db *db, const fieldsync_sync_opts *opts,
                   fieldsync_progress_cb progress, void *ctx, fieldsync_sync_result *result)
{
    if (!db)
        return FIELDSYNC_EINVAL;
    fieldsync_sync_opts o;
    opts_defaults(&o, opts);
    fieldsync_sync_result local;
    fieldsync_sync_result *res = result ? result : &local;
    memset(res, 0, sizeof *res);
    int rc = sync_once(db, &o, progress, ctx, res);
    if (rc == FIELDSYNC_ECANCELLED)
        take_cancel(db);
    return rc;
}

static bool retry_cures(int rc)
{
    return rc == FIELDSYNC_ENETWORK || rc == FIELDSYNC_EBUSY || rc == FIELDSYNC_EPROTOCOL;
}

/* Waits up to ms, or until cancelled, or (when watch_outbox) until the outbox grows. Returns
 * true if cancelled. */
static bool wait_ms(fieldsync_db *db, int64_t ms, bool watch_outbox)
{
    int64_t start = sdk_count(db, "SELECT coalesce(max(id), 0) FROM dev_outbox");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t end_ms = (int64_t)until.tv_sec * 1000 + until.tv_nsec / 1000000 + ms;
    for (;;) {
        int64_t now = sdk_now_ms();
        if (now >= end_ms)
            return false;
        int64_t step = end_ms - now < 500 ? end_ms - now : 500;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + step * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_mutex_lock(&db->mu);
        if (!db->cancel)
            pthread_cond_timedwait(&db->cv, &db->mu, &ts);
        bool c = db->cancel != 0;
        pthread_mutex_unlock(&db->mu);
        if (c)
            return true;
        if (watch_outbox && sdk_count(db, "SELECT coalesce(max(id), 0) FROM dev_outbox") > start)
            return false;
    }
}

int fieldsync_sync_auto(fieldsync_db *db, const fieldsync_sync_opts *opts,
                        fieldsync_progress_cb progress, void *ctx, fieldsync_sync_result *result)
{
    if (!db)
        return FIELDSYNC_EINVAL;
    fieldsync_sync_opts o;
    opts_defaults(&o, opts);
    fieldsync_sync_result local;
    fieldsync_sync_result *total = result ? result : &local;
    memset(total, 0, sizeof *total);
    unsigned seed = (unsigned)sdk_now_ms() ^ (unsigned)(uintptr_t)db;
    int failures = 0;
    for (;;) {
        fieldsync_sync_result r;
        memset(&r, 0, sizeof r);
        int rc = sync_once(db, &o, progress, ctx, &r);
        total->sent += r.sent;
        total->accepted += r.accepted;
        total->duplicates += r.duplicates;
        total->refused += r.refused;
        total->received += r.received;
        total->reviews_opened += r.reviews_opened;
        total->reviews_pending = r.reviews_pending;
        total->pending = r.pending;
        total->bytes_up += r.bytes_up;
        total->bytes_down += r.bytes_down;
        total->cursor = r.cursor;
        memcpy(total->message, r.message, sizeof total->message);
        if (rc == FIELDSYNC_ECANCELLED) {
            take_cancel(db);
            return rc;
        }
        int64_t delay;
        if (rc == 0) {
            failures = 0;
            total->runs++;
            if (o.max_runs > 0 && total->runs >= o.max_runs)
                return 0;
            delay = o.interval_ms;
        } else if (retry_cures(rc)) {
            failures++;
            int64_t d = o.backoff_min_ms;
            for (int i = 1; i < failures && d < o.backoff_max_ms; i++)
                d *= 2;
            if (d > o.backoff_max_ms)
                d = o.backoff_max_ms;
            delay = d / 2 + (int64_t)(rand_r(&seed) % (unsigned)(d > 0 ? d : 1));
        } else {
            return rc;
        }
        if (progress) {
            fieldsync_progress p = {.phase = FIELDSYNC_PHASE_WAIT};
            p.attempt = failures;
            p.wait_ms = delay;
            p.last_error = rc;
            progress(ctx, &p);
        }
        if (wait_ms(db, delay, rc == 0)) {
            take_cancel(db);
            return FIELDSYNC_ECANCELLED;
        }
    }
}

void fieldsync_cancel(fieldsync_db *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&db->mu);
    db->cancel = 1;
    if (db->lws)
        lws_cancel_service(db->lws);
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

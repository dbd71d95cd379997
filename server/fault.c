/*
 * fault.c — kill -9 of the daemon at chosen points of a push, for the fault tests.
 *
 * The environment variable FIELDSYNC_FAULT, read once at start (fault_init), arms one point:
 *
 *   FIELDSYNC_FAULT=POINT[:N]      N = the Nth push the daemon applies (default 1)
 *
 *   push_before_tx     the push decoded, nothing begun: BEGIN was never sent
 *   push_in_tx         inside the batch transaction, after the batch's first change was
 *                      applied (log row written, uncommitted) while the next one is being
 *                      checked; with a single-change batch, before that change is logged
 *   push_after_commit  COMMIT returned, push_result not yet queued
 *   push_after_send    push_result written to the socket (it is in the kernel's buffer and
 *                      usually reaches the device, which may then delete its outbox entries)
 *
 * Group commit (handle_push.c: the pushes of one work slice share one transaction) has its
 * own points, where N is a number of pushes in one group (default 2), not a push number:
 *
 *   group_commit_kill  kill -9 when the COMMIT of the first group that holds at least N
 *                      pushes is sent (nothing of that group is durable, no result was sent)
 *   group_commit_fail  that COMMIT fails instead (SQLite rolls the group back, as after an
 *                      I/O error at COMMIT): every push of the group must get BUSY; once
 *   group_disk_full    when the Nth push of a group begins, the store's file can no longer
 *                      grow (PRAGMA max_page_count lowered to its current size: writes fail
 *                      with SQLITE_FULL, SQLite's disk-full error, through the same code as
 *                      ENOSPC) until a push begins outside that group; once
 *
 *   park_hold:MS       no kill: every parked message (session.c) waits MS milliseconds
 *                      before it runs, as on a saturated market day (server.parked)
 *   sync_hold:MS       no kill: each sync of a push group's COMMIT (durable.c) waits MS
 *                      milliseconds, then logs "fault injection: sync of commit N returned"
 *                      (server.durable: nothing the commit produced leaves before that line)
 *   sync_fail          no kill: the first sync of a push group's COMMIT fails as if
 *                      fdatasync had (EIO): the held sessions get INTERNAL, the server stops
 *
 * The group points count pushes through a commit hook on the store's connection
 * (sqlite3_commit_hook, installed at the first push), so they see the COMMIT that really
 * ends a group, whoever sends it. Each logs a line naming the group's size ("fault
 * injection: ... group of N pushes"), which is how the tests prove that several pushes did
 * share one transaction.
 *
 * At the point the process raises SIGKILL: no handler runs, nothing is flushed or closed,
 * exactly like kill -9 or a crash. Pushes are counted over the whole process (every session)
 * from start, counting only well-formed pushes that reach the apply stage.
 *
 * This exists for tests (tests/integration/fault_push.c, fault_group.c): a production daemon
 * is started without the variable, and then every call here is a comparison against
 * FAULT_NONE. It adds no attack surface: whoever can set the daemon's environment can kill it
 * anyway. The daemon logs a warning at start when a point is armed.
 *
 * The in-transaction point needs a hook inside store_apply_batch(): it uses the engine's
 * authorize callback, which runs inside the transaction once per change (fault_authorize
 * wraps scope_authorize), so the engine needs nothing test-specific.
 */
#include "server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static fault_point armed = FAULT_NONE; /* the armed point */
static unsigned armed_push = 1;        /* ... at this push (1-based) */
static unsigned pushes;                /* pushes that reached the apply stage */
static unsigned authorized;            /* authorize calls within the current push */
static uint32_t batch_n;               /* changes in the current push */
static const txframe *result_frame;    /* push_after_send: the push_result to watch */
static sqlite3 *hooked;                /* group points: the store whose COMMITs are watched */
static unsigned group_pushes;          /* pushes begun since that store's last COMMIT */
static bool group_fired;               /* a group point fired (each fires once) */
static long long full_saved;           /* group_disk_full: max_page_count before (0: not full) */

static const char *const point_names[] = {
    [FAULT_NONE] = "none",
    [FAULT_PUSH_BEFORE_TX] = "push_before_tx",
    [FAULT_PUSH_IN_TX] = "push_in_tx",
    [FAULT_PUSH_AFTER_COMMIT] = "push_after_commit",
    [FAULT_PUSH_AFTER_SEND] = "push_after_send",
    [FAULT_GROUP_COMMIT_KILL] = "group_commit_kill",
    [FAULT_GROUP_COMMIT_FAIL] = "group_commit_fail",
    [FAULT_GROUP_DISK_FULL] = "group_disk_full",
    [FAULT_PARK_HOLD] = "park_hold",
    [FAULT_SYNC_HOLD] = "sync_hold",
    [FAULT_SYNC_FAIL] = "sync_fail",
};

static bool group_point(fault_point p)
{
    return p == FAULT_GROUP_COMMIT_KILL || p == FAULT_GROUP_COMMIT_FAIL ||
           p == FAULT_GROUP_DISK_FULL;
}

int fault_init(void)
{
    const char *v = getenv("FIELDSYNC_FAULT");
    if (!v || !*v)
        return 0;
    const char *colon = strchr(v, ':');
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    for (int p = FAULT_PUSH_BEFORE_TX; p <= FAULT_SYNC_FAIL; p++)
        if (strlen(point_names[p]) == n && !strncmp(v, point_names[p], n))
            armed = (fault_point)p;
    char *end = NULL;
    long at = colon ? strtol(colon + 1, &end, 10) : group_point(armed) ? 2 : 1;
    if (armed == FAULT_NONE || at < 1 || (colon && (end == colon + 1 || *end))) {
        srv_log(SLOG_ERROR,
                "FIELDSYNC_FAULT='%s': want push_before_tx, push_in_tx, push_after_commit, "
                "push_after_send, group_commit_kill, group_commit_fail, group_disk_full, "
                "park_hold, sync_hold or sync_fail, optionally followed by :N (the Nth push; "
                "for group_*: pushes in a group; for *_hold: milliseconds)",
                v);
        armed = FAULT_NONE;
        return -1;
    }
    armed_push = (unsigned)at;
    if (armed == FAULT_PARK_HOLD) /* session.c: parked messages wait N ms (no kill) */
        srv_log(SLOG_WARN, "fault injection armed (tests only): parked messages wait %u ms",
                armed_push);
    else if (armed == FAULT_SYNC_HOLD)
        srv_log(SLOG_WARN, "fault injection armed (tests only): push-group syncs wait %u ms",
                armed_push);
    else if (armed == FAULT_SYNC_FAIL)
        srv_log(SLOG_WARN, "fault injection armed (tests only): the first push-group sync "
                           "fails");
    else if (group_point(armed))
        srv_log(SLOG_WARN, "fault injection armed (tests only): %s at a group of %u pushes",
                point_names[armed], armed_push);
    else
        srv_log(SLOG_WARN, "fault injection armed (tests only): kill -9 at %s of push %u",
                point_names[armed], armed_push);
    return 0;
}

unsigned fault_park_hold_ms(void)
{
    return armed == FAULT_PARK_HOLD ? armed_push : 0;
}

unsigned fault_sync_hold_ms(void)
{
    return armed == FAULT_SYNC_HOLD ? armed_push : 0;
}

bool fault_sync_fail(void)
{
    static bool fired;
    if (armed != FAULT_SYNC_FAIL || fired)
        return false;
    fired = true;
    return true;
}

bool fault_armed(fault_point p)
{
    return armed != FAULT_NONE && armed == p;
}

static void die_at(fault_point p)
{
    srv_log(SLOG_WARN, "fault injection: kill -9 at %s of push %u", point_names[p], pushes);
    raise(SIGKILL);
}

/* sqlite3_commit_hook: every COMMIT of the store's connection; non-zero turns it into a
 * ROLLBACK (sqlite3_exec of the COMMIT then fails with SQLITE_CONSTRAINT_COMMITHOOK). It may
 * not use the connection, so it only counts, logs and kills. */
static int commit_hook(void *ctx)
{
    (void)ctx;
    unsigned n = group_pushes;
    group_pushes = 0;
    if (group_fired || n < armed_push)
        return 0;
    group_fired = true;
    if (armed == FAULT_GROUP_COMMIT_KILL) {
        srv_log(SLOG_WARN, "fault injection: kill -9 at the COMMIT of a group of %u pushes", n);
        raise(SIGKILL);
    }
    srv_log(SLOG_WARN, "fault injection: the COMMIT of a group of %u pushes fails", n);
    return 1;
}

/* PRAGMA max_page_count = set (0: only read it); returns the value in force, -1 on error. */
static long long max_pages(sqlite3 *db, long long set)
{
    char sql[64];
    if (set)
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", set);
    else
        snprintf(sql, sizeof sql, "PRAGMA max_page_count");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

/* The group points at the start of a push: count it, fill or free the disk. */
static void group_push_begin(server *srv)
{
    sqlite3 *db = store_db(srv->store);
    if (!hooked && armed != FAULT_GROUP_DISK_FULL) {
        sqlite3_commit_hook(db, commit_hook, NULL);
        hooked = db;
    }
    bool joins = srv->in_slice && store_in_group(srv->store); /* an open group, not its first */
    if (!joins)
        group_pushes = 0; /* a group (or a lone push) starts: the previous one has ended */
    group_pushes++;
    if (armed != FAULT_GROUP_DISK_FULL)
        return;
    if (full_saved && !joins) {
        long long v = max_pages(db, full_saved);
        srv_log(SLOG_WARN, "fault injection: disk space back (max_page_count %lld)", v);
        full_saved = 0;
    }
    if (!group_fired && srv->in_slice && group_pushes == armed_push) {
        group_fired = true;
        full_saved = max_pages(db, 0);
        long long v = max_pages(db, 1); /* SQLite keeps it at the file's current size */
        srv_log(SLOG_WARN, "fault injection: disk full at push %u of a group (the store may not "
                           "grow past %lld pages)", group_pushes, v);
    }
}

void fault_push_begin(server *srv, uint32_t n)
{
    if (armed == FAULT_NONE)
        return;
    pushes++;
    authorized = 0;
    batch_n = n;
    if (group_point(armed))
        group_push_begin(srv);
    if (armed == FAULT_PUSH_BEFORE_TX && pushes == armed_push)
        die_at(armed);
}

void fault_push_at(fault_point p)
{
    if (armed == p && pushes == armed_push)
        die_at(p);
}

int fault_authorize(void *ctx, const change *c, const char *scope_before,
                    const char *scope_after, fs_error *e)
{
    authorized++;
    if (armed == FAULT_PUSH_IN_TX && pushes == armed_push && (authorized >= 2 || batch_n == 1))
        die_at(FAULT_PUSH_IN_TX);
    return scope_authorize(ctx, c, scope_before, scope_after, e);
}

void fault_push_sent(session *s)
{
    if (armed == FAULT_PUSH_AFTER_SEND && pushes == armed_push)
        result_frame = s->q_tail; /* session_send just appended the push_result */
}

void fault_frame_written(const txframe *f)
{
    if (result_frame && f == result_frame)
        die_at(FAULT_PUSH_AFTER_SEND);
}

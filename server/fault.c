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
 * At the point the process raises SIGKILL: no handler runs, nothing is flushed or closed,
 * exactly like kill -9 or a crash. Pushes are counted over the whole process (every session)
 * from start, counting only well-formed pushes that reach the apply stage.
 *
 * This exists for tests (tests/integration/fault_push.c): a production daemon is started
 * without the variable, and then every call here is a comparison against FAULT_NONE. It adds
 * no attack surface: whoever can set the daemon's environment can kill it anyway. The daemon
 * logs a warning at start when a point is armed.
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

static const char *const point_names[] = {
    [FAULT_NONE] = "none",
    [FAULT_PUSH_BEFORE_TX] = "push_before_tx",
    [FAULT_PUSH_IN_TX] = "push_in_tx",
    [FAULT_PUSH_AFTER_COMMIT] = "push_after_commit",
    [FAULT_PUSH_AFTER_SEND] = "push_after_send",
};

int fault_init(void)
{
    const char *v = getenv("FIELDSYNC_FAULT");
    if (!v || !*v)
        return 0;
    const char *colon = strchr(v, ':');
    size_t n = colon ? (size_t)(colon - v) : strlen(v);
    for (int p = FAULT_PUSH_BEFORE_TX; p <= FAULT_PUSH_AFTER_SEND; p++)
        if (strlen(point_names[p]) == n && !strncmp(v, point_names[p], n))
            armed = (fault_point)p;
    char *end = NULL;
    long at = colon ? strtol(colon + 1, &end, 10) : 1;
    if (armed == FAULT_NONE || at < 1 || (colon && (end == colon + 1 || *end))) {
        srv_log(SLOG_ERROR,
                "FIELDSYNC_FAULT='%s': want push_before_tx, push_in_tx, push_after_commit or "
                "push_after_send, optionally followed by :N (the Nth push)",
                v);
        armed = FAULT_NONE;
        return -1;
    }
    armed_push = (unsigned)at;
    srv_log(SLOG_WARN, "fault injection armed (tests only): kill -9 at %s of push %u",
            point_names[armed], armed_push);
    return 0;
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

void fault_push_begin(uint32_t n)
{
    if (armed == FAULT_NONE)
        return;
    pushes++;
    authorized = 0;
    batch_n = n;
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

/*
 * hlc.c — hybrid logical clock (Kulkarni et al.), 48-bit ms + 16-bit counter. See hlc.h.
 */
#include "hlc.h"

#include "err.h"

#include <time.h>

static uint64_t realtime_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hlc_init(hlc_clock *clk, uint64_t persisted)
{
    clk->last = persisted;
    clk->max_drift_ms = HLC_DEFAULT_MAX_DRIFT_MS;
    clk->wall = NULL;
    clk->wall_ctx = NULL;
}

uint64_t hlc_wall_ms(const hlc_clock *clk)
{
    return clk->wall ? clk->wall(clk->wall_ctx) : realtime_ms(NULL);
}

uint64_t hlc_now(hlc_clock *clk)
{
    uint64_t wall = hlc_wall_ms(clk) & ((1ULL << 48) - 1);
    uint64_t cand = hlc_make(wall, 0);
    clk->last = cand > clk->last ? cand : clk->last + 1; /* +1 carries into ms on overflow */
    return clk->last;
}

int hlc_check(const hlc_clock *clk, uint64_t remote)
{
    uint64_t wall = hlc_wall_ms(clk);
    if (hlc_physical_ms(remote) > wall + (uint64_t)clk->max_drift_ms)
        return FS_ECLOCK_DRIFT;
    return 0;
}

void hlc_advance(hlc_clock *clk, uint64_t remote)
{
    if (remote > clk->last)
        clk->last = remote;
}

int hlc_recv(hlc_clock *clk, uint64_t remote)
{
    int rc = hlc_check(clk, remote);
    if (rc)
        return rc;
    hlc_advance(clk, remote);
    return 0;
}

/*
 * hlc.h — the hybrid logical clock that orders every change.
 *
 * A 64-bit value: the top 48 bits are Unix milliseconds, the low 16 bits a counter. It never
 * goes backwards on one replica: if the wall clock jumps back, the physical part stays and the
 * counter grows; if the counter would overflow, the physical part advances by one ms. On
 * receiving a remote clock the local one moves past it, unless the remote clock is more than
 * max_drift_ms ahead of the local wall clock, in which case the remote value is refused
 * (FS_ECLOCK_DRIFT) and the local clock is left alone, so one device with a wrong date
 * cannot drag every replica into the future.
 *
 * Persistence is the caller's: the store saves hlc_last() inside every batch transaction and
 * passes it back to hlc_init() on open, so the clock is monotonic across restarts.
 * Not thread-safe: one clock per replica handle.
 */
#ifndef FS_HLC_H
#define FS_HLC_H

#include <stdint.h>

#define HLC_DEFAULT_MAX_DRIFT_MS (24LL * 3600 * 1000)

typedef uint64_t (*hlc_wall_fn)(void *ctx); /* returns Unix ms */

typedef struct hlc_clock {
    uint64_t last;          /* the greatest value issued or received */
    int64_t max_drift_ms;   /* bound on how far ahead a remote clock may be */
    hlc_wall_fn wall;       /* wall clock source; NULL means CLOCK_REALTIME */
    void *wall_ctx;
} hlc_clock;

/* Initialises clk with a persisted value (0 if none) and the default drift bound. */
void hlc_init(hlc_clock *clk, uint64_t persisted);

/* Returns a new value greater than every value issued or received before. */
uint64_t hlc_now(hlc_clock *clk);

/* Moves the clock past remote. Returns 0, or FS_ECLOCK_DRIFT when remote is more than
 * max_drift_ms ahead of the wall clock (the clock is then unchanged). */
int hlc_recv(hlc_clock *clk, uint64_t remote);

/* Checks a remote value against the drift bound without moving the clock. */
int hlc_check(const hlc_clock *clk, uint64_t remote);

/* Moves the clock to remote if it is ahead, without the drift check and without reading
 * the wall clock: for a caller that has just checked remote with hlc_check (the authority's
 * apply; a second wall-clock read per change was ~1% of an ingest's server CPU). */
void hlc_advance(hlc_clock *clk, uint64_t remote);

static inline uint64_t hlc_physical_ms(uint64_t h) { return h >> 16; }
static inline uint64_t hlc_make(uint64_t ms, uint16_t counter) { return (ms << 16) | counter; }

/* Wall clock in Unix ms as the clock sees it. */
uint64_t hlc_wall_ms(const hlc_clock *clk);

#endif

/*
 * bench_live — live latency at protocol level: from a device's push to the ledger event at a
 * subscribed session, while the server carries the market-day load (market.h).
 *
 * A probe thread with its own libwebsockets context holds two sessions: a supervisor of
 * township t-00 subscribed to its whole scope ([7, ""]), and a visitor's device of village
 * v-000 (inside that township) that pushes one visit at a time, every --interval ms, with
 * nothing else in flight. The latency of a sample is from the moment the probe queues the
 * push to the moment the subscriber has the ledger event carrying that change (device and
 * dseq match) decoded; both ends are on the probe thread, one clock. The probe device also
 * sends a ping at the same interval: its round trip is the physical reference (the least any
 * message can take through the same busy server loop and the same loopback), measured in
 * the same run; the ratio says what the push path adds (decode, transaction, COMMIT, fan-out,
 * and the wait in the subscriber's send queue). The ping is on the probe's session, not the
 * subscriber's: there its pong would queue behind the ledger events.
 * Like the probe's pushes, one ping is in flight at a time (a stalled server would otherwise
 * find a burst of them and close the session for exceeding 200 messages a second).
 *
 * Samples are tagged with the phase of the main thread: idle (before the load), push (the
 * 2,000 devices connecting and pushing), pull (all of them pulling). The target (p99 under
 * 100 ms under load) applies to the push phase: the market day. The page's /live socket has
 * its own benchmark (server/web); this one is the protocol underneath it.
 *
 * Usage: bench_live [--devices N] [--interval MS] [--idle S] [market options] [--quick]
 */
#include "market.h"

#include "fakedata.h"
#include "hlc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TARGET_P99_MS 100.0
#define MAX_SAMPLES 100000
enum { PH_IDLE, PH_PUSH, PH_PULL, PH_AFTER, N_PH };
static const char *const phase_names[N_PH] = {"idle", "push", "pull", "after"};

typedef struct probe {
    market *m;
    int interval_ms;
    atomic_int phase;
    atomic_bool stop, ready, failed;
    bh_net *net;
    bh_dev sub, dev;
    bool subscribed;
    double last_probe, last_ping;
    bool ping_out;                /* a ping is waiting for its pong (one at a time) */
    double last_sub_ping;         /* the subscriber's keep-alive (the server's idle timeout) */
    uint64_t ping_nonce;
    double ping_sent[64];         /* by nonce % 64 */
    double *sent;                 /* by dseq - 1 */
    int *sent_phase;
    size_t n_sent, n_got;
    unsigned resyncs;             /* RESYNC errors: the subscriber's queue overflowed */
    /* samples per phase, ms */
    double *lat[N_PH], *rtt[N_PH];
    size_t n_lat[N_PH], n_rtt[N_PH];
    char why[300];
} probe;

static void sub_other(bh_dev *d, uint32_t type, mpr *r, uint32_t count)
{
    probe *p = d->user;
    double now = bh_now();
    if (type == MSG_PONG) { /* the subscription is in effect */
        p->subscribed = true;
        atomic_store(&p->ready, true);
        return;
    }
    if (type != MSG_LEDGER)
        return;
    uint64_t seq;
    const char *scope;
    uint32_t slen;
    fs_error e = {0};
    change c;
    if (wire_read_ledger(r, count, &seq, &scope, &slen, &e) ||
        change_unpack(r, p->m->s, true, &c, &e))
        return;
    if (rid_cmp(&c.device, &p->dev.id) || c.dseq == 0 || c.dseq > p->n_sent)
        return;
    int ph = p->sent_phase[c.dseq - 1];
    if (p->n_lat[ph] < MAX_SAMPLES)
        p->lat[ph][p->n_lat[ph]++] = (now - p->sent[c.dseq - 1]) * 1e3;
    p->n_got++;
}

/* RESYNC: the server dropped the subscription because more than 1,000 events waited. A page
 * would pull from its cursor and subscribe again; the probe only subscribes again (what it
 * missed is counted as lost: those events never arrived live). */
static bool sub_soft_error(bh_dev *d, const wire_error *err)
{
    probe *p = d->user;
    if (err->code != WERR_RESYNC)
        return false;
    p->resyncs++;
    msgpack_packer pk;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_subscribe(&pk, "");
    bh_dev_send(d, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return true;
}

/* The probe device's pongs: the reference round trip. */
static void dev_other(bh_dev *d, uint32_t type, mpr *r, uint32_t count)
{
    probe *p = d->user;
    uint64_t nonce;
    fs_error e = {0};
    if (type != MSG_PONG || wire_read_ping(r, count, &nonce, &e))
        return;
    int ph = atomic_load(&p->phase);
    if (p->n_rtt[ph] < MAX_SAMPLES && nonce + 1 == p->ping_nonce)
        p->rtt[ph][p->n_rtt[ph]++] = (bh_now() - p->ping_sent[nonce % 64]) * 1e3;
    p->ping_out = false;
}

static void sub_event(bh_dev *d, int ev)
{
    probe *p = d->user;
    if (ev == BH_EV_WELCOME) {
        msgpack_packer pk;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        wire_pack_subscribe(&pk, "");
        bh_dev_send(d, sb.data, sb.size);
        sb.size = 0;
        wire_pack_ping(&pk, false, p->ping_nonce++);
        bh_dev_send(d, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    } else if (ev == BH_EV_FAILED) {
        snprintf(p->why, sizeof p->why, "subscriber: %s", d->why);
        atomic_store(&p->failed, true);
    }
}

static void dev_event(bh_dev *d, int ev)
{
    probe *p = d->user;
    if (ev == BH_EV_FAILED) {
        snprintf(p->why, sizeof p->why, "probe device: %s", d->why);
        atomic_store(&p->failed, true);
    }
    if (ev == BH_EV_BATCH && d->refused) {
        snprintf(p->why, sizeof p->why, "probe change refused: %s", d->first_refusal);
        atomic_store(&p->failed, true);
    }
}

static void probe_tick(void *ctx)
{
    probe *p = ctx;
    if (!p->subscribed || (p->dev.state != BH_READY && p->dev.state != BH_PUSHING))
        return;
    double now = bh_now();
    double iv = p->interval_ms / 1e3;
    /* one ping at a time, like the probe's pushes: a stalled server then never finds a burst
     * of queued pings (more than 200 messages in a second is LIMIT) */
    if (!p->ping_out && now - p->last_ping >= iv) {
        p->last_ping = now;
        p->ping_out = true;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        p->ping_sent[p->ping_nonce % 64] = now;
        wire_pack_ping(&pk, false, p->ping_nonce++);
        bh_dev_send(&p->dev, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    /* the subscriber only listens: a ping now and then keeps it from the idle timeout */
    if (now - p->last_sub_ping >= 20.0) {
        p->last_sub_ping = now;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        wire_pack_ping(&pk, false, 0);
        bh_dev_send(&p->sub, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    /* one change in flight at most: a probe waits for its result (protocol §5) */
    if (p->dev.state == BH_READY && now - p->last_probe >= iv && p->n_sent < p->dev.backlog.n) {
        p->last_probe = now;
        p->sent[p->n_sent] = now;
        p->sent_phase[p->n_sent] = atomic_load(&p->phase);
        p->n_sent++;
        p->dev.push_until = p->n_sent;
        bh_dev_push(&p->dev);
    }
}

static bool probe_stop(void *ctx)
{
    probe *p = ctx;
    return atomic_load(&p->stop);
}

static void *probe_main(void *arg)
{
    probe *p = arg;
    bh_net_run(p->net, probe_stop, p, 0);
    return NULL;
}

static void probe_setup(probe *p, market *m, size_t n)
{
    p->m = m;
    p->net = bh_net_new(m->dicts, 8);
    p->sent = bh_check(calloc(n, sizeof *p->sent));
    p->sent_phase = bh_check(calloc(n, sizeof *p->sent_phase));
    for (int i = 0; i < N_PH; i++) {
        p->lat[i] = bh_check(calloc(MAX_SAMPLES, sizeof(double)));
        p->rtt[i] = bh_check(calloc(MAX_SAMPLES, sizeof(double)));
    }
    p->sub.id = m->sub.id;
    snprintf(p->sub.token, sizeof p->sub.token, "%s", m->sub.token);
    p->sub.dict_want = 1;
    p->sub.cursor = m->log_end;
    p->sub.on_event = sub_event;
    p->sub.on_other = sub_other;
    p->sub.on_soft_error = sub_soft_error;
    p->sub.user = p;
    p->dev.id = m->probe.id;
    snprintf(p->dev.token, sizeof p->dev.token, "%s", m->probe.token);
    p->dev.dict_want = 1;
    p->dev.first_dseq = 1;
    p->dev.max_batch = 1;
    p->dev.push_until = 0;
    p->dev.on_event = dev_event;
    p->dev.on_other = dev_other;
    p->dev.user = p;
    /* n visits of children of v-000, recorded "now" */
    fakedata *fd = bh_check(fakedata_new(77));
    fakedata_set_identity(fd, &p->dev.id, "probe", "visitor", 1);
    uint64_t ms = bh_wall_ms() - 3600 * 1000;
    fs_error e = {0};
    for (size_t i = 0; i < n; i++) {
        change c;
        const rid_t *child = &m->children[fakedata_below(fd, (uint32_t)m->o.children_per_village)];
        if (fakedata_visit_create(fd, m->s, child, &c, NULL, &e)) {
            fprintf(stderr, "fakedata: %s\n", e.msg);
            exit(1);
        }
        c.hlc = hlc_make(ms++, 0);
        bh_blobs_add(&p->dev.backlog, &c, false);
    }
    fakedata_free(fd);
    p->dev.push_until = 0;
    bh_dev_connect(p->net, &p->sub, m->srv.port);
    bh_dev_connect(p->net, &p->dev, m->srv.port);
    p->dev.push_until = 0;
    bh_net_every(p->net, 1000, probe_tick, p);
}

static void print_dist(const char *what, double *v, size_t n, double *p50, double *p99)
{
    *p50 = bh_percentile(v, n, 50);
    *p99 = bh_percentile(v, n, 99);
    size_t lost = 0;
    for (size_t i = 0; i < n; i++)
        lost += v[i] >= 1e9;
    char t50[32], t99[32], tmax[32];
    double mx = n ? v[n - 1] : 0.0;
    snprintf(t50, sizeof t50, *p50 >= 1e8 ? "lost" : "%.2f ms", *p50);
    snprintf(t99, sizeof t99, *p99 >= 1e8 ? "lost" : "%.2f ms", *p99);
    snprintf(tmax, sizeof tmax, mx >= 1e9 ? "lost" : "%.2f ms", mx);
    printf("    %-26s %6zu samples  p50 %10s  p99 %10s  max %10s", what, n, t50, t99, tmax);
    if (lost && lost < n)
        printf("  (%zu never arrived live; the %zu that did: p50 %.2f ms, p99 %.2f ms, max "
               "%.2f ms)\n",
               lost, n - lost, bh_percentile(v, n - lost, 50), bh_percentile(v, n - lost, 99),
               v[n - lost - 1]);
    else
        printf(lost ? "  (%zu never arrived live)\n" : "\n", lost);
}

int main(int argc, char **argv)
{
    market_opts o = {.devices = 2000, .children_per_village = 100, .connect_window_s = 1.0,
                     .dir = "/tmp", .live_users = true};
    int interval = 10;
    double idle_s = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: bench_live [--devices N] [--interval MS] [--idle S] [--children C]\n"
                   "                  [--window S] [--dir DIR] [--fresh] [--keep] [--quick]\n"
                   "\n"
                   "Push-to-ledger latency (p50, p99) of a probe device seen by a subscribed\n"
                   "supervisor session, idle and while N devices run the market day (see\n"
                   "bench_market --help for the load and its options); the round trip of a\n"
                   "ping through the same server is the reference. Target: p99 < %.0f ms\n"
                   "under load.\n"
                   "\n"
                   "  --interval MS  one probe push and one ping every MS (default 10)\n"
                   "  --idle S       seconds of probing before the load (default 3)\n"
                   "  --quick        200 devices\n"
                   "  --flush-chunk N  start fieldsyncd with --flush-chunk N (0: whole flushes)\n",
                   TARGET_P99_MS);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.devices = 200;
        } else if (!strcmp(a, "--fresh")) {
            o.fresh = true;
        } else if (!strcmp(a, "--keep")) {
            o.keep = true;
        } else if (!strcmp(a, "--flush-chunk") && v) {
            o.flush_chunk = v, i++;
        } else if (!strcmp(a, "--devices") && v) {
            o.devices = atoi(v), i++;
        } else if (!strcmp(a, "--children") && v) {
            o.children_per_village = atoi(v), i++;
        } else if (!strcmp(a, "--window") && v) {
            o.connect_window_s = atof(v), i++;
        } else if (!strcmp(a, "--interval") && v) {
            interval = atoi(v), i++;
        } else if (!strcmp(a, "--idle") && v) {
            idle_s = atof(v), i++;
        } else if (!strcmp(a, "--dir") && v) {
            o.dir = v, i++;
        } else {
            fprintf(stderr, "bench_live: unknown or incomplete option '%s' (try --help)\n", a);
            return 2;
        }
    }
    if (interval < 2 || o.devices < 10) {
        fprintf(stderr, "bench_live: --interval >= 2, --devices >= 10\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bh_header("bench_live — push to ledger event latency under the market-day load", argc,
              argv);
    market m;
    int failed = 1;
    static probe p;
    pthread_t th;
    bool started = false;
    if (market_setup(&m, &o) || market_preload(&m))
        goto out;
    p.interval_ms = interval;
    probe_setup(&p, &m, 100000);
    if (pthread_create(&th, NULL, probe_main, &p))
        goto out;
    started = true;
    double until = bh_now() + 10;
    while (!atomic_load(&p.ready) && !atomic_load(&p.failed) && bh_now() < until)
        usleep(10000);
    if (!atomic_load(&p.ready)) {
        fprintf(stderr, "the probe did not start: %s\n", p.why);
        goto out;
    }
    usleep((useconds_t)(idle_s * 1e6));
    atomic_store(&p.phase, PH_PUSH);
    bh_net *net = bh_net_new(m.dicts, m.n_dev);
    market_phase push, pull;
    int rc = market_push(&m, net, &push);
    atomic_store(&p.phase, PH_PULL);
    market_print_phase("push", &push);
    if (!rc) {
        rc = market_pull(&m, net, &pull);
        market_print_phase("pull", &pull);
    }
    atomic_store(&p.phase, PH_AFTER);
    usleep(300 * 1000); /* the last probes' events */
    bh_net_free(net);
    atomic_store(&p.stop, true);
    pthread_join(th, NULL);
    started = false;
    if (rc || atomic_load(&p.failed)) {
        fprintf(stderr, "failed: %s\n", p.why[0] ? p.why : "market day");
        goto out;
    }
    /* an event that never came live counts as slower than any that did; the pushes of the
     * last 300 ms (PH_AFTER, after the pull phase) are not measured: the probe stops with
     * the last of them still in flight, which is not an event lost */
    size_t sent_ph[N_PH] = {0};
    for (size_t i = 0; i < p.n_sent; i++)
        sent_ph[p.sent_phase[i]]++;
    size_t measured = p.n_sent - sent_ph[PH_AFTER], got = 0;
    for (int ph = 0; ph < PH_AFTER; ph++)
        got += p.n_lat[ph] < sent_ph[ph] ? p.n_lat[ph] : sent_ph[ph];
    printf("\n  probe: %zu pushes of one visit while measuring, %zu ledger events received "
           "(%zu lost); the subscriber got RESYNC %u times\n",
           measured, got, measured - got, p.resyncs);
    for (int ph = 0; ph < N_PH; ph++)
        while (p.n_lat[ph] < sent_ph[ph] && p.n_lat[ph] < MAX_SAMPLES)
            p.lat[ph][p.n_lat[ph]++] = 1e9;
    double l50[N_PH], l99[N_PH], r50[N_PH], r99[N_PH];
    for (int ph = 0; ph < PH_AFTER; ph++) {
        char what[64];
        printf("  %s%s\n", phase_names[ph],
               ph == PH_IDLE ? " (no load)" : ph == PH_PUSH ? " (market day: devices pushing)"
                                                             : " (devices pulling)");
        snprintf(what, sizeof what, "push -> ledger event");
        print_dist(what, p.lat[ph], p.n_lat[ph], &l50[ph], &l99[ph]);
        snprintf(what, sizeof what, "ping round trip (reference)");
        print_dist(what, p.rtt[ph], p.n_rtt[ph], &r50[ph], &r99[ph]);
        if (r50[ph] > 0 && l99[ph] < 1e9)
            printf("    %-26s p50 %.1fx, p99 %.1fx the ping\n", "ratio", l50[ph] / r50[ph],
                   r99[ph] > 0 ? l99[ph] / r99[ph] : 0.0);
    }
    char t99[48];
    snprintf(t99, sizeof t99, l99[PH_PUSH] >= 1e9 ? "events lost" : "%.1f ms", l99[PH_PUSH]);
    printf("\n  target\n    live p99 < %.0f ms under load (push phase): %s (%s, %zu samples)\n",
           TARGET_P99_MS, bh_verdict(p.n_lat[PH_PUSH] > 0 && l99[PH_PUSH] < TARGET_P99_MS), t99,
           p.n_lat[PH_PUSH]);
    failed = 0;
out:
    if (started) {
        atomic_store(&p.stop, true);
        pthread_join(th, NULL);
    }
    if (p.net)
        bh_net_free(p.net);
    bh_dev_free(&p.dev);
    free(p.sent);
    free(p.sent_phase);
    for (int i = 0; i < N_PH; i++) {
        free(p.lat[i]);
        free(p.rtt[i]);
    }
    market_free(&m);
    return failed;
}

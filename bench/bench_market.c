/*
 * bench_market — market day: 2,000 devices come into coverage within one second, each with a
 * week of offline work, against one real fieldsyncd; then the same devices pull what the
 * others sent. The load is described in market.h.
 *
 * Figures: time from the first connect until every change is acknowledged (durably: results
 * go out after COMMIT), server CPU seconds (/proc/PID/stat) and peak resident memory (VmHWM)
 * over the run, resident memory per idle connected session (all devices connected after
 * hello and idle, minus before, divided by the devices), and the same figures for the pull.
 * The load generator runs in this process on the same 2 cores; its CPU time is printed so
 * that the server's share can be read.
 *
 * The physical reference, measured in the same run: raw SQLite inserts of the same change
 * bodies in as many transactions as the server committed (one per push), on the same disk:
 * what storing the market day costs with nothing else to do.
 *
 * Usage: bench_market [--devices N] [--children C] [--window S] [--dir DIR] [--fresh]
 *                     [--keep] [--raw] [--quick] [--help]
 */
#include "market.h"
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TARGET_ACK_S 10.0
#define TARGET_PEAK_MB 200.0
#define TARGET_SESSION_KB 50.0

static void usage(FILE *to)
{
    fprintf(to,
            "usage: bench_market [--devices N] [--children C] [--window S] [--dir DIR]\n"
            "                    [--fresh] [--keep] [--raw] [--flush-chunk N] [--perf PREFIX]\n"
            "                    [--quick] [--help]\n"
            "\n"
            "N devices (10 per village, 20 villages per township) connect within S seconds\n"
            "to a real fieldsyncd, each pushing a week of offline work (~20 visits, ~10 child\n"
            "edits, a report for one in five); then all pull what the others sent.\n"
            "Targets: every change acknowledged within %.0f s; server peak memory < %.0f MB;\n"
            "< %.0f KB per idle session.\n"
            "\n"
            "  --devices N   devices (default 2000; a multiple of 10)\n"
            "  --children C  children per village on the server before (default 100)\n"
            "  --window S    connect spread (default 1 s)\n"
            "  --dir DIR     store, run folder and enrolment cache (default /tmp)\n"
            "  --fresh       rebuild the cached enrolment template (takes minutes)\n"
            "  --keep        keep the run folder (server.log, server.db)\n"
            "  --raw         devices never compress (default: dictionary 1)\n"
            "  --flush-chunk N  start fieldsyncd with --flush-chunk N (0: whole flushes)\n"
            "  --quick       200 devices: a smoke test\n"
            "  --perf PREFIX record the server with perf (cpu-clock, call graphs) during the\n"
            "                push and the pull into PREFIX.push and PREFIX.pull\n"
            "\n"
            "Raises its open-files limit (inherited by the server) to 2N + 256.\n",
            TARGET_ACK_S, TARGET_PEAK_MB, TARGET_SESSION_KB);
}

int main(int argc, char **argv)
{
    const char *perf_prefix = NULL;
    market_opts o = {.devices = 2000, .children_per_village = 100, .connect_window_s = 1.0,
                     .dir = "/tmp"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.devices = 200;
        } else if (!strcmp(a, "--fresh")) {
            o.fresh = true;
        } else if (!strcmp(a, "--keep")) {
            o.keep = true;
        } else if (!strcmp(a, "--flush-chunk") && v) {
            o.flush_chunk = v, i++;
        } else if (!strcmp(a, "--raw")) {
            o.raw = true;
        } else if (!strcmp(a, "--devices") && v) {
            o.devices = atoi(v), i++;
        } else if (!strcmp(a, "--children") && v) {
            o.children_per_village = atoi(v), i++;
        } else if (!strcmp(a, "--window") && v) {
            o.connect_window_s = atof(v), i++;
        } else if (!strcmp(a, "--dir") && v) {
            o.dir = v, i++;
        } else if (!strcmp(a, "--perf") && v) {
            perf_prefix = v, i++;
        } else {
            fprintf(stderr, "bench_market: unknown or incomplete option '%s' (try --help)\n", a);
            return 2;
        }
    }
    if (o.devices < 10 || o.children_per_village < 1) {
        fprintf(stderr, "bench_market: --devices >= 10, --children >= 1\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bh_header("bench_market — market day: many devices with a week's backlog at once", argc,
              argv);
    market m;
    int failed = 1;
    if (market_setup(&m, &o))
        goto out;

    long before_kb, idle_kb;
    double per_kb, connect_cpu;
    if (market_idle(&m, 2.0, &before_kb, &idle_kb, &per_kb, &connect_cpu) || market_preload(&m))
        goto out;
    printf("\n  idle sessions: %d connected after hello: server RSS %ld KB -> %ld KB, %.1f KB "
           "per session;\n  connecting them (TCP, WebSocket upgrade, hello, welcome) cost %.2f s "
           "of server CPU (%.2f ms each)\n\n",
           m.n_dev, before_kb, idle_kb, per_kb, connect_cpu, connect_cpu * 1e3 / m.n_dev);

    bh_net *net = bh_net_new(m.dicts, m.n_dev);
    market_phase push, pull;
    char perf_out[1200];
    snprintf(perf_out, sizeof perf_out, "%s.push", perf_prefix ? perf_prefix : "");
    pid_t perf = perf_prefix ? bh_perf_start(m.srv.pid, perf_out) : -1;
    int rc_push = market_push(&m, net, &push);
    bh_perf_stop(perf);
    market_print_phase("push", &push);
    snprintf(perf_out, sizeof perf_out, "%s.pull", perf_prefix ? perf_prefix : "");
    perf = perf_prefix && !rc_push ? bh_perf_start(m.srv.pid, perf_out) : -1;
    int rc_pull = rc_push ? -1 : market_pull(&m, net, &pull);
    bh_perf_stop(perf);
    if (!rc_push)
        market_print_phase("pull", &pull);
    bh_net_free(net);
    if (rc_push || rc_pull)
        goto out;

    /* the physical reference: the same bytes, one transaction per push the server committed */
    bh_blobs all = {0};
    for (int i = 0; i < m.n_dev; i++) {
        bh_blobs *b = &m.devs[i].backlog;
        for (size_t k = 0; k < b->n; k++) {
            if (all.n + 2 > all.ncap) {
                all.ncap = all.ncap ? all.ncap * 2 : 1024;
                all.off = bh_check(realloc(all.off, all.ncap * sizeof *all.off));
            }
            if (!all.n)
                all.off[0] = 0;
            size_t len = b->off[k + 1] - b->off[k];
            if (all.len + len > all.cap) {
                all.cap = (all.cap ? all.cap : 65536) * 2 + len;
                all.p = bh_check(realloc(all.p, all.cap));
            }
            memcpy(all.p + all.len, b->p + b->off[k], len);
            all.len += len;
            all.off[++all.n] = (uint32_t)all.len;
        }
    }
    size_t per_tx = push.messages ? (size_t)(all.n / push.messages) : 1;
    char raw_path[1200];
    snprintf(raw_path, sizeof raw_path, "%s/raw.db", m.run_dir);
    double raw_s = 0;
    bh_raw_insert(raw_path, all.p, all.off, all.n, per_tx ? per_tx : 1, true,
                  STORE_AUTHORITY_PAGE_SIZE, &raw_s, NULL);
    bh_blobs_free(&all);

    bh_proc p;
    bh_proc_read(m.srv.pid, &p);
    printf("\n  reference  raw SQLite: the same %" PRIu64 " change bodies, %zu per transaction: "
           "%.3f s (%.0f rows/s);\n"
           "             market-day push took %.1fx that (server CPU alone: %.1fx)\n",
           m.backlog_changes, per_tx, raw_s, (double)m.backlog_changes / raw_s,
           push.secs / raw_s, push.server_cpu / raw_s);
    printf("\n  targets\n");
    printf("    every change acknowledged within %.0f s: %s (%.2f s, %" PRIu64 " changes)\n",
           TARGET_ACK_S, bh_verdict(push.secs <= TARGET_ACK_S), push.secs, push.changes);
    printf("    server peak memory < %.0f MB: %s (VmHWM %.1f MB over the whole run)\n",
           TARGET_PEAK_MB, bh_verdict((double)p.hwm_kb / 1024 < TARGET_PEAK_MB),
           (double)p.hwm_kb / 1024);
    printf("    < %.0f KB per idle session: %s (%.1f KB)\n", TARGET_SESSION_KB,
           bh_verdict(per_kb < TARGET_SESSION_KB), per_kb);
    failed = 0;
out:
    market_free(&m);
    return failed;
}

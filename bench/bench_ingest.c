/*
 * bench_ingest — one device pushes 100,000 field changes over loopback to a real fieldsyncd
 * and waits for every durable acknowledgement; in the same run, the raw SQLite insert rate of
 * rows of exactly the same bytes on the same disk, and the ratio.
 *
 * The device is a visitor whose user's scope is one village. It first creates ~N/20 children
 * (pushed and acknowledged before the clock starts), then pushes N single-field edits of those
 * children (fakedata_child_edit: school in Chinese, grade, guardian type, category, status,
 * hardship/disability/drop-out flags) in pushes of B changes (the protocol's max_batch,
 * 1,000), two in flight, both full (a bulk loader's choice; see run_once), frames compressed
 * with dictionary 1 as the SDK sends them (--raw: uncompressed). The clock runs from the
 * first push's send to the last push_result: it covers framing and compression on the
 * device, the loopback, decompression, decoding and validation, the scope check,
 * store_apply_batch with its COMMIT, and the results going back. Everything must be
 * ACCEPTED or the run fails.
 *
 * The physical reference: the full-form bodies the server's log stores for these edits (same
 * author, device, role), inserted into a fresh SQLite file in the same folder with the
 * store's PRAGMAs and page size (STORE_AUTHORITY_PAGE_SIZE), B rows per transaction, one
 * prepared statement (bh_raw_insert). The server can never beat that; the target is >= 1/3
 * of it and >= 150,000 changes/s.
 *
 * Usage: bench_ingest [--changes N] [--batch B] [--runs R] [--dir DIR] [--raw] [--quick]
 */
#include "harness.h"
#include "store.h"

#include "fakedata.h"
#include "hlc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TARGET_RATE 150000.0
#define TARGET_FRACTION (1.0 / 3.0)
#define SEED 100000u
#define USER "ing.visitor"
#define VILLAGE "v-000"

typedef struct options {
    long changes, batch, runs;
    const char *dir;
    bool raw, keep;
    const char *perf;  /* perf record of the server during the edits into this file */
} options;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: bench_ingest [--changes N] [--batch B] [--runs R] [--dir DIR] [--raw]\n"
            "                    [--keep] [--perf FILE] [--quick] [--help]\n"
            "\n"
            "One device pushes N single-field child edits (after ~N/20 child creates, not\n"
            "timed) to a real fieldsyncd on 127.0.0.1 in pushes of B, two in flight, and\n"
            "waits for every push_result (durable: sent after COMMIT). Compares with raw\n"
            "SQLite inserts of the same bytes, B rows per transaction, in the same folder.\n"
            "Targets: >= %.0f changes/s and >= 1/3 of the raw rate.\n"
            "\n"
            "  --changes N  edits (default 100000)\n"
            "  --batch B    changes per push and per raw transaction (default 1000)\n"
            "  --runs R     repeat with a fresh server and store R times (default 1)\n"
            "  --dir DIR    where the server's store and the raw file go (default /tmp)\n"
            "  --raw        push uncompressed frames (a minimal client; default: dict 1)\n"
            "  --keep       keep the server folder (its server.log) after the run\n"
            "  --perf FILE  perf record (cpu-clock, call graphs) of the server during the\n"
            "               edits of the last run into FILE\n"
            "  --quick      10000 edits: a smoke test\n",
            TARGET_RATE);
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.changes = 100000, .batch = 1000, .runs = 1, .dir = "/tmp"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--quick")) {
            o->changes = 10000;
        } else if (!strcmp(a, "--raw")) {
            o->raw = true;
        } else if (!strcmp(a, "--keep")) {
            o->keep = true;
        } else if (!strcmp(a, "--changes") && v) {
            o->changes = strtol(v, NULL, 10), i++;
        } else if (!strcmp(a, "--batch") && v) {
            o->batch = strtol(v, NULL, 10), i++;
        } else if (!strcmp(a, "--runs") && v) {
            o->runs = strtol(v, NULL, 10), i++;
        } else if (!strcmp(a, "--dir") && v) {
            o->dir = v, i++;
        } else if (!strcmp(a, "--perf") && v) {
            o->perf = v, i++;
        } else {
            fprintf(stderr, "bench_ingest: unknown or incomplete option '%s' (try --help)\n", a);
            return -1;
        }
    }
    if (o->changes < 20 || o->batch < 1 || o->batch > WIRE_MAX_BATCH || o->runs < 1) {
        fprintf(stderr, "bench_ingest: --changes >= 20, --batch 1..%d, --runs >= 1\n",
                WIRE_MAX_BATCH);
        return -1;
    }
    return 0;
}

/* ---- the workload ------------------------------------------------------------------------ */

typedef struct workload {
    bh_blobs creates, edits;   /* push form */
    bh_blobs edits_full;       /* full form, as the log stores them: the raw rows */
    size_t n_children;
} workload;

static void make_workload(const schema *s, const rid_t *device, size_t n_edits, workload *w)
{
    memset(w, 0, sizeof *w);
    fakedata *fd = bh_check(fakedata_new(SEED));
    fs_error e = {0};
    if (fakedata_set_identity(fd, device, USER, "visitor", 1)) {
        fprintf(stderr, "fakedata identity\n");
        exit(1);
    }
    const schema_field *village = bh_field(s, "child", "village");
    w->n_children = n_edits / 20;
    rid_t *ids = bh_check(calloc(w->n_children, sizeof *ids));
    uint64_t *created = bh_check(calloc(w->n_children, sizeof *created));
    uint64_t *last = bh_check(calloc(w->n_children, sizeof *last));
    /* our own clock: 1 ms per change from three days ago, so that the generator's simulated
     * clock (minutes per change) never runs past the server's 24 h drift bound */
    uint64_t ms = bh_wall_ms() - 3ULL * 86400 * 1000;
    change c;
    for (size_t i = 0; i < w->n_children; i++) {
        if (fakedata_child_create(fd, s, &c, &ids[i], &e)) {
            fprintf(stderr, "fakedata: %s\n", e.msg);
            exit(1);
        }
        bh_change_put(&c, village, (fs_value){.kind = VAL_STR, .u.s = {VILLAGE, 5}});
        c.hlc = created[i] = last[i] = hlc_make(ms++, 0);
        bh_blobs_add(&w->creates, &c, false);
    }
    for (size_t i = 0; i < n_edits; i++) {
        uint32_t k = fakedata_below(fd, (uint32_t)w->n_children);
        /* one edit in ten was made offline: its author saw only the create */
        uint64_t base = fakedata_chance(fd, 10) ? created[k] : last[k];
        if (fakedata_child_edit(fd, s, &ids[k], base, NULL, &c, &e)) {
            fprintf(stderr, "fakedata: %s\n", e.msg);
            exit(1);
        }
        c.base = base;
        c.hlc = last[k] = hlc_make(ms++, 0);
        bh_blobs_add(&w->edits, &c, false);
        bh_blobs_add(&w->edits_full, &c, true);
    }
    free(ids);
    free(created);
    free(last);
    fakedata_free(fd);
}

static void free_workload(workload *w)
{
    bh_blobs_free(&w->creates);
    bh_blobs_free(&w->edits);
    bh_blobs_free(&w->edits_full);
}

/* ---- one run --------------------------------------------------------------------------- */

typedef struct run_result {
    double secs, server_cpu, client_cpu, raw_secs;
    unsigned long long server_faults; /* the server's minor page faults in the timed part */
    long server_hwm_kb;
    uint64_t bytes_up;
    char load[64];
} run_result;

static bool dev_ready(void *ctx)
{
    bh_dev *d = ctx;
    return d->state == BH_READY || d->state == BH_CLOSED;
}

static int setup_server(const options *o, bh_server *srv, char *dir, size_t cap, rid_t *dev,
                        char *token)
{
    snprintf(dir, cap, "%s/fieldsync-bench-ingest-XXXXXX", o->dir);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        return -1;
    }
    /* the store is prepared before the daemon starts: it loads the villages at start-up */
    snprintf(srv->db, sizeof srv->db, "%s/server.db", dir);
    const char *a1[] = {"township", "add", "t-00", "桃源镇", NULL};
    const char *a2[] = {"village", "add", VILLAGE, "--township", "t-00", "石门村", NULL};
    const char *a3[] = {"user", "add", USER, "--role", "visitor", "--villages", VILLAGE, NULL};
    const char *a4[] = {"device", "enrol", USER, "--label", "bench", NULL};
    char out[1024], id[64];
    if (bh_admin(srv->db, NULL, 0, a1) || bh_admin(srv->db, NULL, 0, a2) ||
        bh_admin(srv->db, NULL, 0, a3) || bh_admin(srv->db, out, sizeof out, a4) ||
        bh_json_str(out, "device", id, sizeof id) ||
        bh_json_str(out, "token", token, WIRE_MAX_TOKEN + 1) || rid_from_text(id, dev)) {
        fprintf(stderr, "admin commands failed on %s\n", srv->db);
        return -1;
    }
    return bh_server_start(srv, dir, NULL);
}

static int run_once(const options *o, const schema *s, const wire_dicts *dicts, int run,
                    run_result *r)
{
    memset(r, 0, sizeof *r);
    bh_server srv = {0};
    char dir[1024];
    rid_t devid;
    char token[WIRE_MAX_TOKEN + 1];
    workload w;
    int ret = -1;
    if (setup_server(o, &srv, dir, sizeof dir, &devid, token))
        goto out_srv;
    make_workload(s, &devid, (size_t)o->changes, &w);

    bh_net *net = bh_net_new(dicts, 4);
    bh_dev d;
    memset(&d, 0, sizeof d);
    d.id = devid;
    snprintf(d.token, sizeof d.token, "%s", token);
    d.dict_want = o->raw ? 0 : 1;
    d.first_dseq = 1;
    d.max_batch = (size_t)o->batch;
    /* two pushes of B in flight (protocol §5), both full: a bulk loader on loopback does not
     * need the SDK's bound of one batch in flight between them (that bound keeps a 2G drop
     * from re-sending two batches; halving each push would double the pushes and COMMITs,
     * more server CPU per change). The
     * device frames and compresses push N+1 while the server applies push N. */
    d.push_window = 2;
    d.full_pushes = true;
    d.backlog = w.creates;
    d.push_on_welcome = true;
    bh_dev_connect(net, &d, srv.port);
    if (bh_net_run(net, dev_ready, &d, bh_now() + 600) || d.failed || d.refused) {
        fprintf(stderr, "creates: %s %s\n", d.why, d.first_refusal);
        goto out;
    }
    /* the edits, on the same session */
    d.backlog = w.edits;
    d.first_dseq = w.n_children + 1;
    d.acked = 0;
    d.accepted = 0;
    d.bytes_up = 0;
    bh_proc p0, p1;
    pid_t perf = o->perf && run == o->runs - 1 ? bh_perf_start(srv.pid, o->perf) : -1;
    bh_proc_read(srv.pid, &p0);
    double c0 = bh_self_cpu();
    double t0 = bh_now();
    bh_dev_push(&d);
    int rc = bh_net_run(net, dev_ready, &d, bh_now() + 600);
    bh_perf_stop(perf);
    if (rc || d.failed || d.refused || d.accepted != w.edits.n) {
        fprintf(stderr, "edits: %s %s (accepted %" PRIu64 " of %zu)\n", d.why, d.first_refusal,
                d.accepted, w.edits.n);
        goto out;
    }
    r->secs = bh_now() - t0;
    r->client_cpu = bh_self_cpu() - c0;
    bh_proc_read(srv.pid, &p1);
    r->server_cpu = p1.cpu_s - p0.cpu_s;
    r->server_faults = p1.minflt - p0.minflt;
    r->server_hwm_kb = p1.hwm_kb;
    r->bytes_up = d.bytes_up;
    bh_load(r->load, sizeof r->load);
    bh_dev_close(&d);
    bh_net_free(net);
    net = NULL;
    bh_server_stop(&srv);

    char raw[1200];
    snprintf(raw, sizeof raw, "%s/raw.db", dir);
    if (bh_raw_insert(raw, w.edits_full.p, w.edits_full.off, w.edits_full.n, (size_t)o->batch,
                      true, STORE_AUTHORITY_PAGE_SIZE, &r->raw_secs, NULL))
        goto out;
    ret = 0;
out:
    bh_net_free(net);
    d.backlog = (bh_blobs){0};
    free_workload(&w);
out_srv:
    bh_server_stop(&srv);
    if (!o->keep && dir[0]) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) { /* best effort */
        }
    } else if (o->keep) {
        printf("  kept %s\n", dir);
    }
    return ret;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    schema *s = NULL;
    wire_dicts *dicts = NULL;
    fs_error e = {0};
    if (schema_load(schema_default_path(), &s, &e) ||
        wire_dicts_load(FS_SCHEMA_DIR, &dicts, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    bh_header("bench_ingest — one device pushes field changes to durable acknowledgement", argc,
              argv);
    printf("  workload  %ld single-field child edits by one visitor's device (after %ld child\n"
           "            creates, not timed), pushes of %ld, two in flight, %s; store in %s\n\n",
           o.changes, o.changes / 20, o.batch,
           o.raw ? "uncompressed frames" : "zstd frames with dictionary 1", o.dir);
    printf("  %-4s %9s %10s %10s %8s %10s %10s %7s %9s %10s  %s\n", "run", "seconds",
           "changes/s", "raw rows/s", "of raw", "srv cpu s", "us/change", "cli cpu", "wire B/ch",
           "srv faults", "load");
    double *rates = bh_check(calloc((size_t)o.runs, sizeof *rates));
    double *fracs = bh_check(calloc((size_t)o.runs, sizeof *fracs));
    int failed = 0;
    for (long i = 0; i < o.runs; i++) {
        run_result r;
        if (run_once(&o, s, dicts, (int)i, &r)) {
            failed = 1;
            break;
        }
        double rate = (double)o.changes / r.secs, raw = (double)o.changes / r.raw_secs;
        rates[i] = rate;
        fracs[i] = rate / raw;
        printf("  %-4ld %9.3f %10.0f %10.0f %8.2f %10.3f %10.2f %7.3f %9.1f %10llu  %s\n", i + 1,
               r.secs, rate, raw, rate / raw, r.server_cpu,
               r.server_cpu * 1e6 / (double)o.changes, r.client_cpu,
               (double)r.bytes_up / (double)o.changes, r.server_faults, r.load);
    }
    if (!failed) {
        double rate = bh_percentile(rates, (size_t)o.runs, 50);
        double frac = bh_percentile(fracs, (size_t)o.runs, 50);
        printf("\n  targets (median of %ld run%s)\n", o.runs, o.runs > 1 ? "s" : "");
        printf("    >= %.0f changes/s: %s (%.0f)\n", TARGET_RATE, bh_verdict(rate >= TARGET_RATE),
               rate);
        printf("    >= 1/3 of raw SQLite inserts: %s (%.2f)\n",
               bh_verdict(frac >= TARGET_FRACTION), frac);
    }
    free(rates);
    free(fracs);
    wire_dicts_free(dicts);
    schema_free(s);
    return failed;
}

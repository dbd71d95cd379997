/*
 * bench_device — the device side through the SDK's public header: a supervisor's replica of a
 * whole township (5,000 children, 50,000 visits): the full first pull, opening the replica,
 * and the query a township supervisor runs most, a village's overdue children.
 *
 * The server (a real fieldsyncd on loopback) holds a township of 20 villages, 250 children
 * each (all on file, risk level high: visit interval 30 days in schema/ledger.yaml), 10
 * visits per child over the past months; every visit names its follow-up date (visited + 30
 * days). About 30% of the children's latest visits are more than 30 days old: those children
 * are overdue, by the ledger's meaning and by the follow-up dates alike. The records are
 * pushed by one device (not timed); the replica belongs to another device of the township's
 * supervisor, so the pull brings all of them.
 *
 *   first pull   fieldsync_open on a new file, enrol, fieldsync_sync: every change pulled
 *                and applied (SDK defaults: 1000 changes per pull, 5000 applied changes
 *                per transaction; --pull-batch, --pull-commit). Reference: raw SQLite
 *                inserts of the same full-form bodies, 500 per transaction, same disk.
 *   open         fieldsync_close, then fieldsync_open of the filled replica (and a status
 *                read), as an app starting up.
 *   overdue      fieldsync_overdue(db, village, now): the SDK's query (SQL over the
 *                confirmed state plus the outbox overlay, the ledger's meaning). Beside it,
 *                as an app had to write it before that call existed: fieldsync_children
 *                (village), then for each child fieldsync_visits and its latest visit's
 *                follow_up_due before today. Reference: indexed SQL queries over the
 *                replica's own tables (the village's children with their status, risk level
 *                and earliest clock; its visits' visited_at rows), decoded in C: the least
 *                the answer costs. All three must find the same children, else the run
 *                fails.
 *
 * Usage: bench_device [--children N] [--visits V] [--villages K] [--dir DIR] [--keep] [--quick]
 */
#include "harness.h"

#include "fakedata.h"
#include "fieldsync.h"
#include "hlc.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TARGET_PULL_S 5.0
#define TARGET_QUERY_MS 50.0
#define QUERY_RUNS 7

typedef struct options {
    int children, visits, villages;
    const char *dir;
    bool keep;
    const char *perf;  /* prefix: perf record of this process during the pull and queries */
    int pull_batch, pull_commit; /* fieldsync_sync_opts for the first pull (0: SDK defaults) */
} options;

static int32_t ymd(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    return (int32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
}

static bool dev_done(void *ctx)
{
    bh_dev *d = ctx;
    return d->state == BH_READY || d->state == BH_CLOSED;
}

/* ---- the township on the server ------------------------------------------------------- */

static int preload(const options *o, const schema *s, const wire_dicts *dicts, int port,
                   const char *dev_id, const char *token, bh_blobs *full, size_t *overdue_v0)
{
    fakedata *fd = bh_check(fakedata_new(99));
    rid_t dev;
    rid_from_text(dev_id, &dev);
    fakedata_set_identity(fd, &dev, "sup", "supervisor", 1);
    const schema_field *village = bh_field(s, "child", "village");
    const schema_field *visited = bh_field(s, "visit", "visited_at");
    const schema_field *due = bh_field(s, "visit", "follow_up_due");
    const schema_field *risk = bh_field(s, "child", "risk_level");
    const schema_field *status = bh_field(s, "child", "status");
    int64_t now_s = (int64_t)(bh_wall_ms() / 1000);
    uint64_t ms = bh_wall_ms() - 400ULL * 86400 * 1000;
    bh_blobs b = {0};
    fs_error e = {0};
    *overdue_v0 = 0;
    int per_village = o->children / o->villages;
    for (int i = 0; i < o->children; i++) {
        change c;
        rid_t child;
        int v = i / per_village;
        if (v >= o->villages)
            v = o->villages - 1;
        if (fakedata_child_create(fd, s, &c, &child, &e))
            return -1;
        char code[16];
        snprintf(code, sizeof code, "v-%03d", v);
        bh_change_put(&c, village, (fs_value){.kind = VAL_STR, .u.s = {code, (uint32_t)strlen(code)}});
        bh_change_put(&c, risk, (fs_value){.kind = VAL_INT, .u.i = schema_enum_by_code(risk, "high")});
        bh_change_put(&c, status,
                      (fs_value){.kind = VAL_INT, .u.i = schema_enum_by_code(status, "on_file")});
        c.hlc = hlc_make(ms++, 0);
        bh_blobs_add(&b, &c, false);
        bh_blobs_add(full, &c, true);
        /* latest visit 0..25 days ago (due later) or 40..120 days ago (overdue) */
        bool late = fakedata_chance(fd, 30);
        int64_t last = late ? 40 + fakedata_below(fd, 81) : fakedata_below(fd, 26);
        if (late && v == 0)
            (*overdue_v0)++;
        for (int k = 0; k < o->visits; k++) {
            int64_t at = now_s - (last + 30 * (o->visits - 1 - k)) * 86400 - 3600;
            if (fakedata_visit_create(fd, s, &child, &c, NULL, &e))
                return -1;
            bh_change_put(&c, visited, (fs_value){.kind = VAL_INT, .u.i = at});
            bh_change_put(&c, due, (fs_value){.kind = VAL_INT, .u.i = ymd(at + 30 * 86400)});
            c.hlc = hlc_make(ms++, 0);
            bh_blobs_add(&b, &c, false);
            bh_blobs_add(full, &c, true);
        }
    }
    fakedata_free(fd);
    bh_net *net = bh_net_new(dicts, 4);
    bh_dev d;
    memset(&d, 0, sizeof d);
    d.id = dev;
    snprintf(d.token, sizeof d.token, "%s", token);
    d.dict_want = 1;
    d.first_dseq = 1;
    d.max_batch = WIRE_MAX_BATCH;
    /* a bulk loader: full pushes, one in flight (fewest pushes: see bench_ingest.c) */
    d.push_window = 1;
    d.backlog = b;
    d.push_on_welcome = true;
    double t0 = bh_now();
    bh_dev_connect(net, &d, port);
    int rc = bh_net_run(net, dev_done, &d, bh_now() + 600);
    bh_net_free(net);
    if (rc || d.failed || d.refused || d.accepted != b.n) {
        fprintf(stderr, "preload: %s %s\n", d.why, d.first_refusal);
        bh_blobs_free(&b);
        return -1;
    }
    printf("  setup     %zu changes pushed by another device in %.1f s (not timed)\n", b.n,
           bh_now() - t0);
    bh_blobs_free(&b);
    return 0;
}

/* ---- the overdue query, through the public API ---------------------------------------- */

typedef struct latest {
    int64_t at;
    int64_t due;
    bool has_due;
} latest;

static int visit_cb(void *ctx, fieldsync_record *rec)
{
    latest *l = ctx;
    fieldsync_field at, due;
    if (fieldsync_get(rec, "visited_at", &at) || fieldsync_get(rec, "follow_up_due", &due))
        return 1;
    if (at.present && at.number >= l->at) {
        l->at = at.number;
        l->due = due.number;
        l->has_due = due.present;
    }
    return 0;
}

typedef struct overdue {
    fieldsync_db *db;
    int32_t today;
    size_t children, overdue;
    int rc;
} overdue;

static int child_cb(void *ctx, fieldsync_record *rec)
{
    overdue *q = ctx;
    latest l = {.at = -1};
    q->children++;
    q->rc = fieldsync_visits(q->db, fieldsync_record_id(rec), visit_cb, &l);
    if (q->rc)
        return 1;
    if (l.at < 0 || (l.has_due && l.due < q->today))
        q->overdue++;
    return 0;
}

/* ---- the SDK's overdue query --------------------------------------------------------- */

static int overdue_cb(void *ctx, const fieldsync_overdue_info *in)
{
    (void)in;
    (*(size_t *)ctx)++;
    return 0;
}

/* ---- the reference: indexed SQL queries on the replica file ---------------------------- */

typedef struct vrow {
    uint8_t child[16];
    int64_t at;
} vrow;

static int cmp_vrow(const void *a, const void *b)
{
    const vrow *x = a, *y = b;
    int c = memcmp(x->child, y->child, 16);
    return c ? c : x->at < y->at ? -1 : x->at > y->at;
}

static int64_t blob_int(const void *p, int n)
{
    mpr r;
    int64_t v = -1;
    mpr_init(&r, p, (size_t)n);
    if (!p || mpr_i64(&r, &v))
        v = -1;
    return v;
}

/* The ledger's meaning with schema/ledger.yaml's values written out (high 30 days, medium
 * 60, others 90; on file = on_file or unset; never visited: from the earliest field clock). */
static int reference_query(const char *path, const schema *s, const char *village, int64_t now_ms,
                           size_t *children, size_t *n_overdue)
{
    const schema_type *ct = schema_type_by_name(s, "child"), *vt = schema_type_by_name(s, "visit");
    const schema_field *at = bh_field(s, "visit", "visited_at");
    const schema_field *sf = bh_field(s, "child", "status"), *rf = bh_field(s, "child", "risk_level");
    int on_file = schema_enum_by_code(sf, "on_file"), high = schema_enum_by_code(rf, "high"),
        medium = schema_enum_by_code(rf, "medium");
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL))
        return -1;
    sqlite3_stmt *q, *qc;
    /* visits of the village (records_scope index) with their time row */
    if (sqlite3_prepare_v2(db,
                           "SELECT r.parent, f.value FROM records r JOIN fields f "
                           "ON f.record = r.id AND f.field = ?3 WHERE r.scope = ?1 AND r.type = ?2",
                           -1, &q, NULL) ||
        sqlite3_prepare_v2(db,
                           "SELECT r.id, min(f.whlc), max(CASE WHEN f.field = ?3 THEN f.value END), "
                           "max(CASE WHEN f.field = ?4 THEN f.value END) FROM records r JOIN "
                           "fields f ON f.record = r.id WHERE r.scope = ?1 AND r.type = ?2 "
                           "GROUP BY r.id",
                           -1, &qc, NULL)) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_bind_text(q, 1, village, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, vt->id);
    sqlite3_bind_int(q, 3, at->num);
    size_t n = 0, cap = 1024;
    vrow *rows = bh_check(malloc(cap * sizeof *rows));
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (sqlite3_column_bytes(q, 0) != 16)
            continue;
        if (n == cap)
            rows = bh_check(realloc(rows, (cap *= 2) * sizeof *rows));
        memcpy(rows[n].child, sqlite3_column_blob(q, 0), 16);
        rows[n].at = blob_int(sqlite3_column_blob(q, 1), sqlite3_column_bytes(q, 1));
        n++;
    }
    qsort(rows, n, sizeof *rows, cmp_vrow);
    /* children of the village, each looked up among the sorted visits */
    sqlite3_bind_text(qc, 1, village, -1, SQLITE_STATIC);
    sqlite3_bind_int(qc, 2, ct->id);
    sqlite3_bind_int(qc, 3, sf->num);
    sqlite3_bind_int(qc, 4, rf->num);
    *children = *n_overdue = 0;
    while (sqlite3_step(qc) == SQLITE_ROW) {
        const uint8_t *id = sqlite3_column_blob(qc, 0);
        (*children)++;
        int64_t st = blob_int(sqlite3_column_blob(qc, 2), sqlite3_column_bytes(qc, 2));
        int64_t rk = blob_int(sqlite3_column_blob(qc, 3), sqlite3_column_bytes(qc, 3));
        if (st >= 0 && st != on_file)
            continue;
        int64_t days = rk == high ? 30 : rk == medium ? 60 : 90;
        /* the last row of this child (sorted by child, then visited_at) */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (memcmp(rows[mid].child, id, 16) <= 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        int64_t base = lo && !memcmp(rows[lo - 1].child, id, 16)
                           ? rows[lo - 1].at * 1000
                           : (int64_t)hlc_physical_ms((uint64_t)sqlite3_column_int64(qc, 1));
        if (base + days * 86400 * 1000 < now_ms)
            (*n_overdue)++;
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    free(rows);
    sqlite3_finalize(q);
    sqlite3_finalize(qc);
    sqlite3_close(db);
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.children = 5000, .visits = 10, .villages = 20, .dir = "/tmp"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: bench_device [--children N] [--visits V] [--villages K] [--dir DIR]\n"
                   "                    [--keep] [--perf PREFIX] [--quick]\n"
                   "                    [--pull-batch N] [--pull-commit N]\n"
                   "\n"
                   "A township supervisor's replica through the SDK: full first pull of N\n"
                   "children with V visits each (default 5000 x 10, 20 villages) from a real\n"
                   "fieldsyncd, opening the replica, and a village's overdue children through\n"
                   "the public API, each against its raw SQLite reference. Targets: first pull\n"
                   "< %.0f s; overdue query < %.0f ms.\n"
                   "  --quick   500 children\n"
                   "  --perf P  perf record (cpu-clock, call graphs) of this process during the\n"
                   "            pull into P.pull and during the queries into P.query\n"
                   "  --pull-batch N   changes per pull (SDK default 1000)\n"
                   "  --pull-commit N  pulled changes per transaction (SDK default 5000;\n"
                   "                   1: one transaction per batch, as before)\n",
                   TARGET_PULL_S, TARGET_QUERY_MS);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.children = 500;
        } else if (!strcmp(a, "--keep")) {
            o.keep = true;
        } else if (!strcmp(a, "--children") && v) {
            o.children = atoi(v), i++;
        } else if (!strcmp(a, "--visits") && v) {
            o.visits = atoi(v), i++;
        } else if (!strcmp(a, "--villages") && v) {
            o.villages = atoi(v), i++;
        } else if (!strcmp(a, "--dir") && v) {
            o.dir = v, i++;
        } else if (!strcmp(a, "--perf") && v) {
            o.perf = v, i++;
        } else if (!strcmp(a, "--pull-batch") && v) {
            o.pull_batch = atoi(v), i++;
        } else if (!strcmp(a, "--pull-commit") && v) {
            o.pull_commit = atoi(v), i++;
        } else {
            fprintf(stderr, "bench_device: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    if (o.villages < 1 || o.villages > 999 || o.children < o.villages || o.visits < 1) {
        fprintf(stderr, "bench_device: --villages 1..999, --children >= villages, --visits >= 1\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    schema *s = NULL;
    wire_dicts *dicts = NULL;
    fs_error e = {0};
    if (schema_load(schema_default_path(), &s, &e) || wire_dicts_load(FS_SCHEMA_DIR, &dicts, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    bh_header("bench_device — a township replica through the SDK", argc, argv);
    printf("  workload  %d children in %d villages, %d visits each (%d changes), replica of the\n"
           "            township supervisor's second device, store in %s\n",
           o.children, o.villages, o.visits, o.children * (1 + o.visits), o.dir);
    printf("  pull      pull_batch %d, pull_commit %d (0: the SDK's default)\n", o.pull_batch,
           o.pull_commit);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fieldsync-bench-device-XXXXXX", o.dir);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    bh_server srv = {0};
    snprintf(srv.db, sizeof srv.db, "%s/server.db", dir);
    int failed = 1;
    fieldsync_db *db = NULL;
    bh_blobs full = {0};
    char loader_id[64], loader_tok[WIRE_MAX_TOKEN + 1], dev_id[64], dev_tok[WIRE_MAX_TOKEN + 1];
    {
        const char *a1[] = {"township", "add", "t-00", "桃源镇", NULL};
        const char *a2[] = {"user", "add", "sup", "--role", "supervisor", "--township", "t-00", NULL};
        const char *a3[] = {"device", "enrol", "sup", "--label", "office", NULL};
        const char *a4[] = {"device", "enrol", "sup", "--label", "tablet", NULL};
        if (bh_admin(srv.db, NULL, 0, a1))
            goto out;
        for (int v = 0; v < o.villages; v++) {
            char code[16], name[32];
            snprintf(code, sizeof code, "v-%03d", v);
            snprintf(name, sizeof name, "第%03d村", v);
            const char *av[] = {"village", "add", code, "--township", "t-00", name, NULL};
            if (bh_admin(srv.db, NULL, 0, av))
                goto out;
        }
        char j1[1024], j2[1024];
        if (bh_admin(srv.db, NULL, 0, a2) || bh_admin(srv.db, j1, sizeof j1, a3) ||
            bh_admin(srv.db, j2, sizeof j2, a4) ||
            bh_json_str(j1, "device", loader_id, sizeof loader_id) ||
            bh_json_str(j1, "token", loader_tok, sizeof loader_tok) ||
            bh_json_str(j2, "device", dev_id, sizeof dev_id) ||
            bh_json_str(j2, "token", dev_tok, sizeof dev_tok)) {
            fprintf(stderr, "admin commands failed\n");
            goto out;
        }
    }
    size_t expect_v0;
    if (bh_server_start(&srv, dir, NULL) ||
        preload(&o, s, dicts, srv.port, loader_id, loader_tok, &full, &expect_v0))
        goto out;

    /* first pull */
    char path[1200], url[64];
    snprintf(path, sizeof path, "%s/replica.db", dir);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", srv.port);
    bh_proc p0, p1;
    char perf_out[1200];
    snprintf(perf_out, sizeof perf_out, "%s.pull", o.perf ? o.perf : "");
    pid_t perf = o.perf ? bh_perf_start(getpid(), perf_out) : -1;
    bh_proc_read(srv.pid, &p0);
    double c0 = bh_self_cpu();
    double t0 = bh_now();
    fieldsync_sync_result res;
    fieldsync_sync_opts so = {.pull_batch = o.pull_batch, .pull_commit = o.pull_commit};
    if (fieldsync_open(path, NULL, &db) || fieldsync_enrol(db, url, dev_id, dev_tok) ||
        fieldsync_sync(db, &so, NULL, NULL, &res)) {
        fprintf(stderr, "first pull: %s %s\n", fieldsync_errmsg(db), res.message);
        goto out;
    }
    double pull_s = bh_now() - t0;
    double pull_cpu = bh_self_cpu() - c0;
    bh_perf_stop(perf);
    bh_proc_read(srv.pid, &p1);
    char load_pull[64];
    bh_load(load_pull, sizeof load_pull);
    if (res.received != full.n) {
        fprintf(stderr, "first pull received %" PRIu64 " of %zu changes\n", res.received, full.n);
        goto out;
    }
    t0 = bh_now();
    fieldsync_close(db);
    db = NULL;
    double close_s = bh_now() - t0;

    /* opening */
    t0 = bh_now();
    fieldsync_identity id;
    if (fieldsync_open(path, NULL, &db) || fieldsync_identity_get(db, &id)) {
        fprintf(stderr, "open: %s\n", fieldsync_errmsg(db));
        goto out;
    }
    double open_s = bh_now() - t0;

    /* the overdue query: the SDK's, the app-side loop it replaces, the SQL reference */
    int64_t now_ms = (int64_t)bh_wall_ms();
    int32_t today = ymd(now_ms / 1000);
    double q[QUERY_RUNS], a[QUERY_RUNS], r[QUERY_RUNS];
    overdue ov = {0};
    size_t sdk_overdue = 0, ref_children = 0, ref_overdue = 0;
    snprintf(perf_out, sizeof perf_out, "%s.query", o.perf ? o.perf : "");
    perf = o.perf ? bh_perf_start(getpid(), perf_out) : -1;
    for (int k = 0; k < QUERY_RUNS; k++) {
        sdk_overdue = 0;
        t0 = bh_now();
        if (fieldsync_overdue(db, "v-000", now_ms, overdue_cb, &sdk_overdue)) {
            fprintf(stderr, "fieldsync_overdue: %s\n", fieldsync_errmsg(db));
            goto out;
        }
        q[k] = (bh_now() - t0) * 1e3;
        t0 = bh_now();
        if (reference_query(path, s, "v-000", now_ms, &ref_children, &ref_overdue)) {
            fprintf(stderr, "reference query failed\n");
            goto out;
        }
        r[k] = (bh_now() - t0) * 1e3;
    }
    bh_perf_stop(perf);
    for (int k = 0; k < QUERY_RUNS; k++) {
        ov = (overdue){.db = db, .today = today};
        t0 = bh_now();
        if (fieldsync_children(db, "v-000", child_cb, &ov) || ov.rc) {
            fprintf(stderr, "query: %s\n", fieldsync_errmsg(db));
            goto out;
        }
        a[k] = (bh_now() - t0) * 1e3;
    }
    double q_first = q[0], r_first = r[0], a_first = a[0];
    double q_med = bh_percentile(q, QUERY_RUNS, 50), r_med = bh_percentile(r, QUERY_RUNS, 50),
           a_med = bh_percentile(a, QUERY_RUNS, 50);
    char load_q[64];
    bh_load(load_q, sizeof load_q);
    if (ov.children != ref_children || ov.overdue != ref_overdue || ov.overdue != expect_v0 ||
        sdk_overdue != ref_overdue) {
        fprintf(stderr, "the queries disagree: fieldsync_overdue %zu; app loop %zu children, "
                        "%zu overdue; SQL %zu, %zu; generated %zu overdue\n",
                sdk_overdue, ov.children, ov.overdue, ref_children, ref_overdue, expect_v0);
        goto out;
    }

    double raw_s;
    char raw_path[1200];
    snprintf(raw_path, sizeof raw_path, "%s/raw.db", dir);
    if (bh_raw_insert(raw_path, full.p, full.off, full.n, 500, true, 0, &raw_s, NULL))
        goto out;

    printf("\n  %-34s %10s  %s\n", "step", "time", "");
    printf("  %-34s %8.2f s  %" PRIu64 " changes (%.0f/s), %.1f MB down; device cpu %.2f s, "
           "server cpu %.2f s; load %s\n",
           "first full pull (open+enrol+sync)", pull_s, res.received,
           (double)res.received / pull_s, (double)res.bytes_down / 1e6, pull_cpu,
           p1.cpu_s - p0.cpu_s, load_pull);
    printf("  %-34s %8.2f s  same bodies, 500 per transaction (%.0f rows/s): the pull took "
           "%.1fx\n",
           "  reference: raw SQLite inserts", raw_s, (double)full.n / raw_s, pull_s / raw_s);
    printf("  %-34s %8.3f s\n", "close after the pull", close_s);
    printf("  %-34s %8.3f s\n", "open the replica (+ identity)", open_s);
    printf("  %-34s %8.1f ms first, %.1f ms median of %d; %zu of %zu children; load %s\n",
           "overdue of v-000 (fieldsync_overdue)", q_first, q_med, QUERY_RUNS, sdk_overdue,
           ref_children, load_q);
    printf("  %-34s %8.1f ms first, %.1f ms median: fieldsync_overdue took %.1fx\n",
           "  reference: indexed SQL", r_first, r_med, q_med / r_med);
    printf("  %-34s %8.1f ms first, %.1f ms median (children + visits per child)\n",
           "  before: the app-side loop", a_first, a_med);
    printf("\n  targets\n");
    printf("    first full pull of a township replica < %.0f s: %s (%.2f s)\n", TARGET_PULL_S,
           bh_verdict(pull_s < TARGET_PULL_S), pull_s);
    printf("    overdue query < %.0f ms: %s (%.1f ms median, %.1f ms first)\n", TARGET_QUERY_MS,
           bh_verdict(q_med < TARGET_QUERY_MS), q_med, q_first);
    failed = 0;
out:
    fieldsync_close(db);
    bh_server_stop(&srv);
    bh_blobs_free(&full);
    if (!o.keep) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) { /* best effort */
        }
    } else {
        printf("  kept %s\n", dir);
    }
    wire_dicts_free(dicts);
    schema_free(s);
    return failed;
}

/*
 * bench_slowlink — syncing over a 2G link: a visitor's week and a volunteer's month, through
 * bench/shape_proxy (80 kbit/s down, 40 up, 300 ms each way, a drop every ~300 KB), with the
 * real device SDK (fieldsync_sync, called again after a drop once its 1 s back-off has passed,
 * as fieldsync_sync_auto does) against a real fieldsyncd.
 *
 * The world: villages v-000 and v-001 with 100 children each on the server. A visitor (scope
 * v-000) and two volunteers (social workers, scope v-000 and v-001) have replicas that were
 * fully synced before, directly. Then, offline, the visitor records a week (20 visits, 10
 * single-field child edits, one mandatory report) and each volunteer a month (80 visits, 40
 * edits, 2 reports), all through the SDK's typed setters, while other visitors' devices push
 * their own weeks (two per village per week), which the syncs then pull. Times run from
 * the first fieldsync_sync() to the return of the last: connect, hello, push, pull, close, and
 * after a drop the back-off and the next attempt.
 *
 * Runs, each with a fresh proxy:
 *   week      the visitor's week on the 2G link (random drops every ~300 KB)
 *   month     the first volunteer's month on the same link
 *   month+drop the second volunteer's month (same shape, other records) with one drop placed
 *             in the middle of its push: what a drop costs. Re-sent = changes sent more than
 *             once (sent - outbox) and proxy bytes up beyond those of the clean month.
 *
 * The physical reference of each run: the time the link needs just to carry the bytes the
 * proxy counted (up at 40 kbit/s, down at 80 kbit/s) plus one round trip; the rest is round
 * trips the protocol waits for (connect, hello, each push, each pull), shown as "RTTs".
 *
 * Usage: bench_slowlink [--down KBIT] [--up KBIT] [--delay MS] [--drop-every BYTES]
 *                       [--seed S] [--dir DIR] [--keep] [--quick]
 */
#include "harness.h"

#include "fakedata.h"
#include "fieldsync.h"
#include "hlc.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define TARGET_WEEK_S 15.0
#define CHILDREN 100
/* the SDK's default max_batch (client-sdk/sync.c, docs/sdk.md): one batch of a volunteer's device */
#define SDK_MAX_BATCH 200

typedef struct options {
    double down, up, delay_ms;
    long drop_every;
    unsigned long seed;
    const char *dir;
    bool keep, quick;
} options;

typedef struct ident {
    char id[64];
    char token[WIRE_MAX_TOKEN + 1];
} ident;

static schema *g_s;
static wire_dicts *g_dicts;
static rid_t g_children[2][CHILDREN];
static uint64_t g_child_hlc[2][CHILDREN];

/* ---- the server's world ----------------------------------------------------------------- */

static int enrol(const char *db, const char *user, ident *out)
{
    const char *a[] = {"device", "enrol", user, NULL};
    char json[1024];
    if (bh_admin(db, json, sizeof json, a) || bh_json_str(json, "device", out->id, sizeof out->id) ||
        bh_json_str(json, "token", out->token, sizeof out->token))
        return -1;
    return 0;
}

static bool dev_done(void *ctx)
{
    bh_dev *d = ctx;
    return d->state == BH_READY || d->state == BH_CLOSED;
}

/* Pushes changes as a harness device (the loader, the other visitors). */
static int push_as(int port, const ident *who, bh_blobs *b, uint64_t first_dseq)
{
    bh_net *net = bh_net_new(g_dicts, 4);
    bh_dev d;
    memset(&d, 0, sizeof d);
    rid_from_text(who->id, &d.id);
    snprintf(d.token, sizeof d.token, "%s", who->token);
    d.dict_want = 1;
    d.first_dseq = first_dseq;
    d.max_batch = 1000;
    /* a bulk loader: full pushes, one in flight (fewest pushes: see bench_ingest.c) */
    d.push_window = 1;
    d.backlog = *b;
    d.push_on_welcome = true;
    bh_dev_connect(net, &d, port);
    int rc = bh_net_run(net, dev_done, &d, bh_now() + 120);
    bh_net_free(net);
    if (rc || d.failed || d.refused || d.accepted + d.duplicates != b->n) {
        fprintf(stderr, "push: %s %s\n", d.why, d.first_refusal);
        return -1;
    }
    return 0;
}

static int preload(int port, const ident *loader)
{
    fakedata *fd = bh_check(fakedata_new(5));
    rid_t dev;
    rid_from_text(loader->id, &dev);
    fakedata_set_identity(fd, &dev, "sup", "supervisor", 1);
    const schema_field *village = bh_field(g_s, "child", "village");
    uint64_t ms = bh_wall_ms() - 60ULL * 86400 * 1000;
    bh_blobs b = {0};
    fs_error e = {0};
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < CHILDREN; k++) {
            change c;
            if (fakedata_child_create(fd, g_s, &c, &g_children[v][k], &e))
                return -1;
            bh_change_put(&c, village,
                          (fs_value){.kind = VAL_STR, .u.s = {v ? "v-001" : "v-000", 5}});
            c.hlc = g_child_hlc[v][k] = hlc_make(ms++, 0);
            bh_blobs_add(&b, &c, false);
        }
    fakedata_free(fd);
    int rc = push_as(port, loader, &b, 1);
    bh_blobs_free(&b);
    return rc;
}

/* Another visitor's week in village v: ~30 changes. */
static int other_week(int port, const ident *who, int v, int week, uint64_t seed)
{
    fakedata *fd = bh_check(fakedata_new(seed));
    rid_t dev;
    rid_from_text(who->id, &dev);
    /* one device, consecutive weeks: the week's changes take dseq 30 * week + 1 .. */
    uint64_t first = (uint64_t)week * 30 + 1;
    fakedata_set_identity(fd, &dev, "other", "visitor", first);
    bh_blobs b = {0};
    fs_error e = {0};
    uint64_t ms = bh_wall_ms() - (uint64_t)(5 - week) * 7 * 86400 * 1000;
    for (int j = 0; j < 30; j++) {
        change c;
        uint32_t k = fakedata_below(fd, CHILDREN);
        int rc = j % 3 == 2 ? fakedata_child_edit(fd, g_s, &g_children[v][k], g_child_hlc[v][k],
                                                  NULL, &c, &e)
                            : fakedata_visit_create(fd, g_s, &g_children[v][k], &c, NULL, &e);
        if (rc)
            return -1;
        if (j % 3 == 2)
            c.base = g_child_hlc[v][k];
        c.hlc = hlc_make(ms + (uint64_t)j * 3600 * 1000, 0);
        bh_blobs_add(&b, &c, false);
    }
    fakedata_free(fd);
    int rc = push_as(port, who, &b, first);
    bh_blobs_free(&b);
    return rc;
}

/* ---- the device side, through the SDK ------------------------------------------------- */

static int sdk_set(fieldsync_record *rec, const schema_type *t, const change_field *cf)
{
    const schema_field *f = schema_field_by_num(t, cf->num);
    const fs_value *v = &cf->v;
    char buf[CHANGE_MAX_TEXT + 1];
    switch (f->kind) {
    case KIND_TEXT:
    case KIND_SCOPE:
        memcpy(buf, v->u.s.p, v->u.s.len);
        buf[v->u.s.len] = '\0';
        return fieldsync_set_text(rec, f->name, buf);
    case KIND_INT: return fieldsync_set_int(rec, f->name, v->u.i);
    case KIND_DATE: return fieldsync_set_date(rec, f->name, (int32_t)v->u.i);
    case KIND_TIME: return fieldsync_set_time(rec, f->name, v->u.i);
    case KIND_ENUM: return fieldsync_set_enum(rec, f->name, f->values[v->u.i].code);
    case KIND_BOOL: return fieldsync_set_bool(rec, f->name, v->u.b);
    case KIND_REF:
        rid_to_text(&v->u.ref, buf);
        return fieldsync_set_ref(rec, f->name, buf);
    case KIND_SET:
        for (uint32_t i = 0; i < f->n_values; i++)
            if (v->u.set.add >> i & 1) {
                int rc = fieldsync_set_add(rec, f->name, f->values[i].code);
                if (rc)
                    return rc;
            }
        return 0;
    default: return FIELDSYNC_EFIELD;
    }
}

/* Records a generated change on the replica as a user would: new record or edit. */
static int sdk_record(fieldsync_db *db, const change *c, bool edit)
{
    const schema_type *t = schema_type_by_id(g_s, c->type);
    fieldsync_record *rec = NULL;
    int rc;
    if (edit) {
        char id[RID_TEXT_LEN + 1];
        rid_to_text(&c->record, id);
        rc = fieldsync_record_load(db, id, &rec);
    } else {
        rc = fieldsync_record_new(db, t->name, &rec);
    }
    for (uint32_t i = 0; i < c->n_fields && !rc; i++)
        rc = sdk_set(rec, t, &c->fields[i]);
    if (!rc)
        rc = fieldsync_record_save(rec);
    if (rc)
        fprintf(stderr, "sdk: %s: %s\n", fieldsync_strerror(rc), fieldsync_errmsg(db));
    fieldsync_record_free(rec);
    return rc;
}

/* visits, edits and reports spread over the villages of the user, in random order */
static int offline_work(fieldsync_db *db, int villages, int visits, int edits, int reports,
                        uint64_t seed)
{
    fakedata *fd = bh_check(fakedata_new(seed));
    fs_error e = {0};
    int n = visits + edits + reports;
    for (int j = 0; j < n; j++) {
        uint32_t pick = fakedata_below(fd, (uint32_t)(visits + edits + reports));
        int v = (int)fakedata_below(fd, (uint32_t)villages);
        const rid_t *child = &g_children[v][fakedata_below(fd, CHILDREN)];
        change c;
        bool edit = false;
        int rc;
        if (pick < (uint32_t)visits) {
            visits--;
            rc = fakedata_visit_create(fd, g_s, child, &c, NULL, &e);
        } else if (pick < (uint32_t)(visits + edits)) {
            edits--;
            edit = true;
            rc = fakedata_child_edit(fd, g_s, child, 1, NULL, &c, &e);
        } else {
            reports--;
            rc = fakedata_report_create(fd, g_s, child, &c, NULL, &e);
        }
        if (rc || sdk_record(db, &c, edit)) {
            fakedata_free(fd);
            return -1;
        }
    }
    fakedata_free(fd);
    return 0;
}

static int open_replica(const char *dir, const char *name, const char *url, const ident *who,
                        fieldsync_db **db)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.db", dir, name);
    int rc = fieldsync_open(path, NULL, db);
    if (rc) {
        fprintf(stderr, "fieldsync_open %s: %s\n", path, fieldsync_errmsg(NULL));
        return rc;
    }
    rc = fieldsync_enrol(*db, url, who->id, who->token);
    if (rc)
        fprintf(stderr, "enrol: %s\n", fieldsync_errmsg(*db));
    return rc;
}

/* ---- the proxy ---------------------------------------------------------------------------- */

typedef struct proxy {
    pid_t pid;
    int port;
    FILE *out;
    uint64_t up, down, drops;
} proxy;

static int proxy_start(proxy *p, const options *o, int server_port, long drop_at)
{
    memset(p, 0, sizeof *p);
    char bin[4200], to[64], down[32], up[32], delay[32], every[32], at[32], seed[32];
    bh_sibling("shape_proxy", bin, sizeof bin);
    snprintf(to, sizeof to, "127.0.0.1:%d", server_port);
    snprintf(down, sizeof down, "%g", o->down);
    snprintf(up, sizeof up, "%g", o->up);
    snprintf(delay, sizeof delay, "%g", o->delay_ms);
    snprintf(every, sizeof every, "%ld", o->drop_every);
    snprintf(at, sizeof at, "%ld", drop_at);
    snprintf(seed, sizeof seed, "%lu", o->seed);
    int pfd[2];
    if (pipe(pfd))
        return -1;
    p->pid = fork();
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        const char *argv[] = {bin, "--to", to, "--down", down, "--up", up, "--delay", delay,
                              "--drop-every", every, "--seed", seed, "--drop-at", at, NULL};
        if (drop_at <= 0)
            argv[13] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    p->out = fdopen(pfd[0], "r");
    char line[256];
    if (!p->out || !fgets(line, sizeof line, p->out) ||
        sscanf(line, "shape_proxy listening on 127.0.0.1:%d", &p->port) != 1) {
        fprintf(stderr, "%s did not start\n", bin);
        return -1;
    }
    return 0;
}

/* Stops the proxy and reads its totals; prints the dropped connections. */
static void proxy_stop(proxy *p, char *drops_text, size_t cap)
{
    kill(p->pid, SIGTERM);
    char line[256];
    size_t used = 0;
    if (cap)
        drops_text[0] = '\0';
    while (fgets(line, sizeof line, p->out)) {
        unsigned long long u, d, n;
        int id;
        char dropped[8];
        if (sscanf(line, "total up %llu down %llu drops %llu", &u, &d, &n) == 3) {
            p->up = u;
            p->down = d;
            p->drops = n;
        } else if (sscanf(line, "conn %d up %llu down %llu dropped %7s", &id, &u, &d, dropped) ==
                       4 &&
                   !strcmp(dropped, "yes") && used + 80 < cap) {
            used += (size_t)snprintf(drops_text + used, cap - used,
                                     "%sconnection %d cut after %llu B up, %llu B down",
                                     used ? "; " : "", id, u, d);
        }
    }
    fclose(p->out);
    waitpid(p->pid, NULL, 0);
}

/* ---- a run ----------------------------------------------------------------------------- */

#define MAX_ATTEMPTS 8

typedef struct run {
    const char *name;
    double secs;
    fieldsync_sync_result res;     /* summed over the attempts */
    fieldsync_sync_result att[MAX_ATTEMPTS];
    int att_rc[MAX_ATTEMPTS];
    int attempts;
    int rc;
    int64_t outbox;          /* changes waiting before the sync */
    proxy px;
    char drops[400];
    char load[64];
} run;

/* Like fieldsync_sync_auto with max_runs 1, attempt by attempt so that each attempt's counts
 * are kept: after a failure (a drop) it waits its back-off, 1 s (the SDK's backoff_min, here
 * without jitter so that runs repeat), and syncs again. */
static int sync_via_proxy(const options *o, int server_port, fieldsync_db *db, const ident *who,
                          long drop_at, run *r)
{
    if (proxy_start(&r->px, o, server_port, drop_at))
        return -1;
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", r->px.port);
    fieldsync_enrol(db, url, who->id, who->token);
    fieldsync_identity id;
    fieldsync_identity_get(db, &id);
    r->outbox = id.pending;
    double t0 = bh_now();
    for (r->attempts = 0; r->attempts < MAX_ATTEMPTS;) {
        fieldsync_sync_result *a = &r->att[r->attempts];
        r->rc = r->att_rc[r->attempts] = fieldsync_sync(db, NULL, NULL, NULL, a);
        r->attempts++;
        r->res.sent += a->sent;
        r->res.accepted += a->accepted;
        r->res.duplicates += a->duplicates;
        r->res.refused += a->refused;
        r->res.received += a->received;
        r->res.bytes_up += a->bytes_up;
        r->res.bytes_down += a->bytes_down;
        if (r->rc != FIELDSYNC_ENETWORK)
            break;
        usleep(1000 * 1000);
    }
    r->secs = bh_now() - t0;
    bh_load(r->load, sizeof r->load);
    proxy_stop(&r->px, r->drops, sizeof r->drops);
    if (r->rc)
        fprintf(stderr, "%s: sync failed: %s (%s)\n", r->name, fieldsync_strerror(r->rc),
                r->att[r->attempts - 1].message);
    return r->rc ? -1 : 0;
}

static void print_run(const options *o, const run *r)
{
    double link = (double)r->px.up * 8 / (o->up * 1e3) + (double)r->px.down * 8 / (o->down * 1e3) +
                  2 * o->delay_ms / 1e3;
    double rtts = (r->secs - link) / (2 * o->delay_ms / 1e3);
    printf("  %-11s %7.2f s  %4" PRId64 " up  %4" PRIu64 " down  sent %4" PRIu64 " (dup %3" PRIu64
           ")  link %6" PRIu64 " B up %6" PRIu64 " B down  drops %" PRIu64
           "  link-bound %5.2f s (%.1fx, +%.1f RTTs)  load %s\n",
           r->name, r->secs, r->outbox, r->res.received, r->res.sent, r->res.duplicates, r->px.up,
           r->px.down, r->px.drops, link, r->secs / link, rtts, r->load);
    if (r->drops[0])
        printf("  %-11s %s\n", "", r->drops);
    for (int i = 0; r->attempts > 1 && i < r->attempts; i++) {
        const fieldsync_sync_result *a = &r->att[i];
        uint64_t answered = a->accepted + a->duplicates + a->refused;
        printf("  %-11s attempt %d: %s; sent %" PRIu64 ", answered %" PRIu64 " (%" PRIu64
               " duplicates), unanswered %" PRIu64 ", received %" PRIu64 "\n",
               "", i + 1, r->att_rc[i] ? fieldsync_strerror(r->att_rc[i]) : "ok", a->sent,
               answered, a->duplicates, a->sent - answered, a->received);
    }
}

int main(int argc, char **argv)
{
    options o = {.down = 80, .up = 40, .delay_ms = 300, .drop_every = 300000, .seed = 7,
                 .dir = "/tmp"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: bench_slowlink [--down KBIT] [--up KBIT] [--delay MS]\n"
                   "                      [--drop-every BYTES] [--seed S] [--dir DIR] [--keep]\n"
                   "                      [--quick]\n"
                   "\n"
                   "A visitor's week and a volunteer's month synced by the SDK through\n"
                   "shape_proxy (defaults: a 2G link, 80 kbit/s down, 40 up, 300 ms each way,\n"
                   "a drop every ~300 KB at random, seed 7), then a month with one drop in the\n"
                   "middle of its push. Targets: the week in < %.0f s; at most one batch re-sent\n"
                   "after a drop.\n"
                   "  --quick   the week only\n",
                   TARGET_WEEK_S);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.quick = true;
        } else if (!strcmp(a, "--keep")) {
            o.keep = true;
        } else if (!strcmp(a, "--down") && v) {
            o.down = atof(v), i++;
        } else if (!strcmp(a, "--up") && v) {
            o.up = atof(v), i++;
        } else if (!strcmp(a, "--delay") && v) {
            o.delay_ms = atof(v), i++;
        } else if (!strcmp(a, "--drop-every") && v) {
            o.drop_every = atol(v), i++;
        } else if (!strcmp(a, "--seed") && v) {
            o.seed = strtoul(v, NULL, 10), i++;
        } else if (!strcmp(a, "--dir") && v) {
            o.dir = v, i++;
        } else {
            fprintf(stderr, "bench_slowlink: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    fs_error e = {0};
    if (schema_load(schema_default_path(), &g_s, &e) ||
        wire_dicts_load(FS_SCHEMA_DIR, &g_dicts, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    bh_header("bench_slowlink — syncing over a 2G link through shape_proxy", argc, argv);
    printf("  link      %g kbit/s down, %g up, %g ms each way, a drop every ~%ld B (seed %lu)\n",
           o.down, o.up, o.delay_ms, o.drop_every, o.seed);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fieldsync-bench-slowlink-XXXXXX", o.dir);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    bh_server srv = {0};
    snprintf(srv.db, sizeof srv.db, "%s/server.db", dir);
    int failed = 1;
    fieldsync_db *vis = NULL, *vol1 = NULL, *vol2 = NULL;
    ident loader, visitor, volunteer1, volunteer2, others[4];
    {
        const char *cmds[][10] = {
            {"township", "add", "t-00", "桃源镇", NULL},
            {"village", "add", "v-000", "--township", "t-00", "石门村", NULL},
            {"village", "add", "v-001", "--township", "t-00", "青山村", NULL},
            {"user", "add", "sup", "--role", "supervisor", "--township", "t-00", NULL},
            {"user", "add", "vis", "--role", "visitor", "--villages", "v-000", NULL},
            {"user", "add", "vol1", "--role", "volunteer", "--villages", "v-000,v-001", NULL},
            {"user", "add", "vol2", "--role", "volunteer", "--villages", "v-000,v-001", NULL},
            {"user", "add", "other0", "--role", "visitor", "--villages", "v-000", NULL},
            {"user", "add", "other1", "--role", "visitor", "--villages", "v-000", NULL},
            {"user", "add", "other2", "--role", "visitor", "--villages", "v-001", NULL},
            {"user", "add", "other3", "--role", "visitor", "--villages", "v-001", NULL},
        };
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            if (bh_admin(srv.db, NULL, 0, cmds[i])) {
                fprintf(stderr, "admin %s %s failed\n", cmds[i][0], cmds[i][2]);
                goto out;
            }
        char name[16];
        if (enrol(srv.db, "sup", &loader) || enrol(srv.db, "vis", &visitor) ||
            enrol(srv.db, "vol1", &volunteer1) || enrol(srv.db, "vol2", &volunteer2))
            goto out;
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "other%d", i);
            if (enrol(srv.db, name, &others[i]))
                goto out;
        }
    }
    if (bh_server_start(&srv, dir, NULL) || preload(srv.port, &loader))
        goto out;
    char direct[64];
    snprintf(direct, sizeof direct, "ws://127.0.0.1:%d", srv.port);
    if (open_replica(dir, "visitor", direct, &visitor, &vis) ||
        open_replica(dir, "volunteer1", direct, &volunteer1, &vol1) ||
        open_replica(dir, "volunteer2", direct, &volunteer2, &vol2))
        goto out;
    fieldsync_db *reps[3] = {vis, vol1, vol2};
    for (int i = 0; i < 3; i++) {
        fieldsync_sync_result r;
        if (fieldsync_sync(reps[i], NULL, NULL, NULL, &r)) {
            fprintf(stderr, "first sync: %s\n", r.message);
            goto out;
        }
    }
    printf("  world     2 villages x %d children on the server; replicas of a visitor (v-000)\n"
           "            and two volunteers (v-000, v-001) synced before, directly\n",
           CHILDREN);

    /* week 1: the others' weeks in v-000, the visitor's week offline */
    for (int k = 0; k < 2; k++)
        if (other_week(srv.port, &others[k], 0, 0, 100 + (uint64_t)k))
            goto out;
    if (offline_work(vis, 1, 20, 10, 1, 11))
        goto out;
    run week = {.name = "week"};
    printf("\n  %-11s %9s  %-19s %-12s  %s\n", "run", "time", "changes", "", "on the link");
    if (sync_via_proxy(&o, srv.port, vis, &visitor, 0, &week))
        goto out;
    print_run(&o, &week);
    bool month_ok = true;
    run month = {.name = "month"}, drop = {.name = "month+drop"};
    if (!o.quick) {
        /* weeks 2-4 in v-000 and 1-4 in v-001 by the others; the volunteers' months offline */
        for (int wk = 1; wk < 4; wk++)
            for (int k = 0; k < 2; k++)
                if (other_week(srv.port, &others[k], 0, wk, 200 + (uint64_t)(wk * 2 + k)))
                    goto out;
        for (int wk = 0; wk < 4; wk++)
            for (int k = 2; k < 4; k++)
                if (other_week(srv.port, &others[k], 1, wk, 300 + (uint64_t)(wk * 2 + k)))
                    goto out;
        if (offline_work(vol1, 2, 80, 40, 2, 21) || offline_work(vol2, 2, 80, 40, 2, 22))
            goto out;
        if (sync_via_proxy(&o, srv.port, vol1, &volunteer1, 0, &month))
            goto out;
        print_run(&o, &month);
        /* the drop falls in the middle of the push: half the clean month's upstream bytes */
        long at = (long)(month.px.up / 2);
        if (sync_via_proxy(&o, srv.port, vol2, &volunteer2, at, &drop))
            month_ok = false;
        print_run(&o, &drop);
    }

    printf("\n  targets\n");
    printf("    a visitor's week over 2G in < %.0f s: %s (%.2f s: %" PRId64 " changes up, %" PRIu64
           " down)\n",
           TARGET_WEEK_S, bh_verdict(week.secs < TARGET_WEEK_S), week.secs, week.outbox,
           week.res.received);
    if (!o.quick) {
        uint64_t resent = drop.res.sent > (uint64_t)drop.outbox ? drop.res.sent - (uint64_t)drop.outbox
                                                                 : 0;
        long bytes = (long)drop.px.up - (long)month.px.up;
        /* what was sent and not answered before the cut is what is in flight (up to two
         * pushes, together at most one batch: the SDK's max_batch changes); anything re-sent
         * beyond it, or more than one batch, fails */
        uint64_t in_flight = 0;
        for (int i = 0; i + 1 < drop.attempts; i++)
            in_flight += drop.att[i].sent - drop.att[i].accepted - drop.att[i].duplicates -
                         drop.att[i].refused;
        bool one_batch = drop.attempts == 2 && resent <= in_flight && resent <= SDK_MAX_BATCH;
        printf("    at most one batch re-sent after a drop: %s (%" PRIu64 " changes sent again, the "
               "pushes in flight at the cut held %" PRIu64 ", one batch is %d; %" PRIu64 " answered duplicate; "
               "%ld B more up than the clean month; %" PRIu64 " drop%s)\n",
               drop.px.drops ? bh_verdict(one_batch && month_ok) : "NOT MEASURED (no drop fell)",
               resent, in_flight, SDK_MAX_BATCH, drop.res.duplicates, bytes, drop.px.drops,
               drop.px.drops == 1 ? "" : "s");
        printf("    (a volunteer's month: %.2f s clean, %.2f s with the drop; no target)\n",
               month.secs, drop.secs);
    }
    failed = 0;
out:
    fieldsync_close(vis);
    fieldsync_close(vol1);
    fieldsync_close(vol2);
    bh_server_stop(&srv);
    if (!o.keep) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) { /* best effort */
        }
    } else {
        printf("  kept %s\n", dir);
    }
    wire_dicts_free(g_dicts);
    schema_free(g_s);
    return failed;
}

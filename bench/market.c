/*
 * market.c — the market-day load (market.h says what it models and why it is built so).
 */
#include "market.h"

#include "fakedata.h"
#include "hlc.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEED 20160325u
#define ADMIN_PARALLEL 4

/* ---- the enrolment template ------------------------------------------------------------ */

typedef struct cmdlist {
    const char ***argv; /* each NULL-terminated, strings owned by `strings` */
    size_t n, cap;
    char **strings;
    size_t ns, scap;
} cmdlist;

static const char *keep_str(cmdlist *l, const char *s)
{
    if (l->ns == l->scap) {
        l->scap = l->scap ? l->scap * 2 : 256;
        l->strings = bh_check(realloc(l->strings, l->scap * sizeof *l->strings));
    }
    return l->strings[l->ns++] = bh_check(strdup(s));
}

/* Adds a command from a format with space-separated words (no word contains a space). */
static void add_cmd(cmdlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_cmd(cmdlist *l, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const char **argv = bh_check(calloc(16, sizeof *argv));
    int k = 0;
    for (char *tok = strtok(line, " "); tok && k < 15; tok = strtok(NULL, " "))
        argv[k++] = keep_str(l, tok);
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->argv = bh_check(realloc(l->argv, l->cap * sizeof *l->argv));
    }
    l->argv[l->n++] = argv;
}

static void cmdlist_free(cmdlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->argv[i]);
    for (size_t i = 0; i < l->ns; i++)
        free(l->strings[i]);
    free(l->argv);
    free(l->strings);
    memset(l, 0, sizeof *l);
}

static int run_cmds(const char *db, cmdlist *l, char **outs, const char *what)
{
    double t = bh_now();
    int failed = bh_admin_batch(db, (const char *const *const *)l->argv, l->n, ADMIN_PARALLEL,
                                outs, 512);
    printf("  setup     %zu admin commands (%s) in %.1f s%s\n", l->n, what, bh_now() - t,
           failed ? ", SOME FAILED" : "");
    return failed ? -1 : 0;
}

static int mkdirs(const char *path)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* Builds dir/template.db and dir/idents.tsv ("kind index device token" per line). */
static int build_template(const market *m, const char *dir)
{
    char db[1200], tsv[1200], done[1200];
    snprintf(db, sizeof db, "%s/template.db", dir);
    snprintf(tsv, sizeof tsv, "%s/idents.tsv", dir);
    snprintf(done, sizeof done, "%s/complete", dir);
    unlink(done);
    bh_remove_db(db);
    printf("  setup     building the enrolment template in %s (once; --fresh remakes it)\n", dir);
    cmdlist geo = {0}, users = {0}, enrol = {0};
    for (int t = 0; t < m->n_townships; t++)
        add_cmd(&geo, "township add t-%02d 第%02d镇", t, t);
    int ret = -1;
    if (run_cmds(db, &geo, NULL, "townships"))
        goto out;
    cmdlist_free(&geo);
    for (int v = 0; v < m->n_villages; v++)
        add_cmd(&geo, "village add v-%03d --township t-%02d 第%03d村", v,
                v / MARKET_VILLAGES_PER_TOWNSHIP, v);
    if (run_cmds(db, &geo, NULL, "villages"))
        goto out;
    for (int i = 0; i < m->n_dev; i++) {
        add_cmd(&users, "user add vis-%04d --role visitor --villages v-%03d", i,
                i / MARKET_DEVICES_PER_VILLAGE);
        add_cmd(&enrol, "device enrol vis-%04d --label market-%04d", i, i);
    }
    for (int t = 0; t < m->n_townships; t++) {
        add_cmd(&users, "user add load-t-%02d --role supervisor --township t-%02d", t, t);
        add_cmd(&enrol, "device enrol load-t-%02d --label loader", t);
    }
    add_cmd(&users, "user add sup-t-00 --role supervisor --township t-00");
    add_cmd(&enrol, "device enrol sup-t-00 --label live-subscriber");
    add_cmd(&users, "user add probe --role visitor --villages v-000");
    add_cmd(&enrol, "device enrol probe --label live-probe");
    if (run_cmds(db, &users, NULL, "users"))
        goto out;
    char **outs = bh_check(calloc(enrol.n, sizeof *outs));
    for (size_t i = 0; i < enrol.n; i++)
        outs[i] = bh_check(calloc(1, 512));
    FILE *f = NULL;
    if (run_cmds(db, &enrol, outs, "device enrolments"))
        goto out_outs;
    f = fopen(tsv, "w");
    if (!f)
        goto out_outs;
    for (size_t i = 0; i < enrol.n; i++) {
        char id[64], token[WIRE_MAX_TOKEN + 1];
        if (bh_json_str(outs[i], "device", id, sizeof id) ||
            bh_json_str(outs[i], "token", token, sizeof token))
            goto out_outs;
        const char *kind = i < (size_t)m->n_dev ? "dev"
                           : i < (size_t)(m->n_dev + m->n_townships) ? "loader"
                           : i == enrol.n - 2 ? "sub" : "probe";
        size_t idx = i < (size_t)m->n_dev ? i : i < (size_t)(m->n_dev + m->n_townships)
                                                    ? i - (size_t)m->n_dev : 0;
        fprintf(f, "%s %zu %s %s\n", kind, idx, id, token);
    }
    int closed = fclose(f);
    f = NULL;
    if (closed == 0) {
        FILE *d = fopen(done, "w");
        if (d)
            fclose(d);
        ret = 0;
    }
out_outs:
    if (f)
        fclose(f);
    for (size_t i = 0; i < enrol.n; i++)
        free(outs[i]);
    free(outs);
out:
    cmdlist_free(&geo);
    cmdlist_free(&users);
    cmdlist_free(&enrol);
    return ret;
}

static int load_idents(market *m, const char *tsv)
{
    FILE *f = fopen(tsv, "r");
    if (!f)
        return -1;
    char kind[16], id[64], token[WIRE_MAX_TOKEN + 1];
    size_t idx;
    int n = 0;
    while (fscanf(f, "%15s %zu %63s %128s", kind, &idx, id, token) == 4) {
        market_ident *mi = NULL;
        if (!strcmp(kind, "dev") && idx < (size_t)m->n_dev) {
            bh_dev *d = &m->devs[idx];
            if (rid_from_text(id, &d->id))
                break;
            snprintf(d->token, sizeof d->token, "%s", token);
            n++;
            continue;
        }
        if (!strcmp(kind, "loader") && idx < (size_t)m->n_townships)
            mi = &m->loaders[idx];
        else if (!strcmp(kind, "sub"))
            mi = &m->sub;
        else if (!strcmp(kind, "probe"))
            mi = &m->probe;
        if (!mi || rid_from_text(id, &mi->id))
            break;
        snprintf(mi->token, sizeof mi->token, "%s", token);
        n++;
    }
    fclose(f);
    return n == m->n_dev + m->n_townships + 2 ? 0 : -1;
}

static int copy_db(const char *from, const char *to)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = -1;
    if (sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_open(to, &dst) == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (b && sqlite3_backup_step(b, -1) == SQLITE_DONE)
            rc = 0;
        sqlite3_backup_finish(b);
        if (!rc)
            rc = sqlite3_exec(dst, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) ? -1 : 0;
    }
    sqlite3_close(src);
    sqlite3_close(dst);
    return rc;
}

/* ---- data ------------------------------------------------------------------------------- */

static const char *village_code(int v)
{
    static char codes[1000][8];
    snprintf(codes[v % 1000], sizeof codes[0], "v-%03d", v % 1000);
    return codes[v % 1000];
}

static bool all_ready(void *ctx)
{
    market *m = ctx;
    for (int t = 0; t < m->n_townships; t++) {
        bh_dev *d = &((bh_dev *)m->devs)[m->n_dev + t]; /* loaders sit after the devices */
        if (d->state != BH_READY && d->state != BH_CLOSED)
            return false;
    }
    return true;
}

/* One supervisor device per township pushes its villages' children. */
static int preload(market *m, fakedata *fd)
{
    int C = m->o.children_per_village;
    const schema_field *village = bh_field(m->s, "child", "village");
    uint64_t ms = bh_wall_ms() - 30ULL * 86400 * 1000;
    bh_net *net = bh_net_new(m->dicts, m->n_townships + 4);
    fs_error e = {0};
    for (int t = 0; t < m->n_townships; t++) {
        bh_dev *d = &m->devs[m->n_dev + t];
        memset(d, 0, sizeof *d);
        d->id = m->loaders[t].id;
        snprintf(d->token, sizeof d->token, "%s", m->loaders[t].token);
        d->dict_want = 1;
        d->first_dseq = 1;
        d->max_batch = WIRE_MAX_BATCH;
        /* a bulk loader: full pushes, one in flight (fewest pushes: see bench_ingest.c) */
        d->push_window = 1;
        d->push_on_welcome = true;
        char user[32];
        snprintf(user, sizeof user, "load-t-%02d", t);
        fakedata_set_identity(fd, &d->id, user, "supervisor", 1);
        for (int v = t * MARKET_VILLAGES_PER_TOWNSHIP;
             v < (t + 1) * MARKET_VILLAGES_PER_TOWNSHIP && v < m->n_villages; v++)
            for (int k = 0; k < C; k++) {
                change c;
                size_t idx = (size_t)v * (size_t)C + (size_t)k;
                if (fakedata_child_create(fd, m->s, &c, &m->children[idx], &e)) {
                    fprintf(stderr, "fakedata: %s\n", e.msg);
                    return -1;
                }
                const char *code = village_code(v);
                bh_change_put(&c, village,
                              (fs_value){.kind = VAL_STR, .u.s = {code, (uint32_t)strlen(code)}});
                c.hlc = m->child_hlc[idx] = hlc_make(ms++, 0);
                bh_blobs_add(&d->backlog, &c, false);
            }
        bh_dev_connect(net, d, m->srv.port);
    }
    double t0 = bh_now();
    int rc = bh_net_run(net, all_ready, m, bh_now() + 600);
    uint64_t total = 0;
    for (int t = 0; t < m->n_townships && !rc; t++) {
        bh_dev *d = &m->devs[m->n_dev + t];
        if (d->failed || d->refused || d->accepted != d->backlog.n) {
            fprintf(stderr, "preload by township %d: %s %s\n", t, d->why, d->first_refusal);
            rc = -1;
        }
        total += d->accepted;
    }
    bh_net_free(net);
    for (int t = 0; t < m->n_townships; t++)
        bh_dev_free(&m->devs[m->n_dev + t]);
    m->log_end = total;
    if (!rc)
        printf("  setup     preloaded %" PRIu64 " children (%d per village) in %.1f s\n", total, C,
               bh_now() - t0);
    return rc;
}

/* A visitor's week, recorded offline. */
static void make_backlog(market *m, fakedata *fd, int i)
{
    bh_dev *d = &m->devs[i];
    int v = i / MARKET_DEVICES_PER_VILLAGE, C = m->o.children_per_village;
    char user[32];
    snprintf(user, sizeof user, "vis-%04d", i);
    fakedata_set_identity(fd, &d->id, user, "visitor", 1);
    uint64_t week = bh_wall_ms() - 7ULL * 86400 * 1000;
    fakedata_set_now_ms(fd, week);
    int nv = 15 + (int)fakedata_below(fd, 11), ne = 8 + (int)fakedata_below(fd, 5);
    int nr = fakedata_chance(fd, 20) ? 1 : 0;
    int n = nv + ne + nr;
    fs_error e = {0};
    for (int j = 0; j < n; j++) {
        /* draw the kind of the next entry in proportion to what is left */
        uint32_t pick = fakedata_below(fd, (uint32_t)(nv + ne + nr));
        size_t child = (size_t)v * (size_t)C + fakedata_below(fd, (uint32_t)C);
        change c;
        int rc;
        if (pick < (uint32_t)nv) {
            nv--;
            rc = fakedata_visit_create(fd, m->s, &m->children[child], &c, NULL, &e);
        } else if (pick < (uint32_t)(nv + ne)) {
            ne--;
            rc = fakedata_child_edit(fd, m->s, &m->children[child], m->child_hlc[child], NULL,
                                     &c, &e);
            c.base = m->child_hlc[child];
        } else {
            nr--;
            rc = fakedata_report_create(fd, m->s, &m->children[child], &c, NULL, &e);
        }
        if (rc) {
            fprintf(stderr, "fakedata: %s\n", e.msg);
            exit(1);
        }
        c.hlc = hlc_make(week + (uint64_t)j * (6ULL * 86400 * 1000 / (uint64_t)n), 0);
        bh_blobs_add(&d->backlog, &c, false);
    }
    m->backlog_changes += (uint64_t)n;
}

int market_setup(market *m, const market_opts *o)
{
    memset(m, 0, sizeof *m);
    m->o = *o;
    if (m->o.devices < MARKET_DEVICES_PER_VILLAGE)
        m->o.devices = MARKET_DEVICES_PER_VILLAGE;
    m->n_dev = m->o.devices / MARKET_DEVICES_PER_VILLAGE * MARKET_DEVICES_PER_VILLAGE;
    m->n_villages = m->n_dev / MARKET_DEVICES_PER_VILLAGE;
    m->n_townships = (m->n_villages + MARKET_VILLAGES_PER_TOWNSHIP - 1) /
                     MARKET_VILLAGES_PER_TOWNSHIP;
    fs_error e = {0};
    if (schema_load(schema_default_path(), &m->s, &e) ||
        wire_dicts_load(FS_SCHEMA_DIR, &m->dicts, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    /* loaders use the slots after the devices */
    m->devs = bh_check(calloc((size_t)(m->n_dev + m->n_townships), sizeof *m->devs));
    m->loaders = bh_check(calloc((size_t)m->n_townships, sizeof *m->loaders));
    size_t nc = (size_t)m->n_villages * (size_t)m->o.children_per_village;
    m->children = bh_check(calloc(nc, sizeof *m->children));
    m->child_hlc = bh_check(calloc(nc, sizeof *m->child_hlc));

    long lim = bh_raise_nofile(m->n_dev * 2 + 256);
    if (lim < m->n_dev + 256) {
        fprintf(stderr, "open files limit %ld is too low for %d devices: raise `ulimit -n`\n",
                lim, m->n_dev);
        return -1;
    }
    char cache[1100], tsv[1200], done[1200], tpl[1200];
    snprintf(cache, sizeof cache, "%s/fieldsync-bench-cache/market-d%d", m->o.dir, m->n_dev);
    snprintf(tsv, sizeof tsv, "%s/idents.tsv", cache);
    snprintf(done, sizeof done, "%s/complete", cache);
    snprintf(tpl, sizeof tpl, "%s/template.db", cache);
    if (mkdirs(cache)) {
        fprintf(stderr, "cannot create %s: %s\n", cache, strerror(errno));
        return -1;
    }
    if (m->o.fresh || access(done, F_OK) || load_idents(m, tsv)) {
        if (build_template(m, cache) || load_idents(m, tsv)) {
            fprintf(stderr, "cannot build the enrolment template in %s\n", cache);
            return -1;
        }
    } else {
        printf("  setup     enrolment template %s (reused)\n", cache);
    }
    snprintf(m->run_dir, sizeof m->run_dir, "%s/fieldsync-bench-market-XXXXXX", m->o.dir);
    if (!mkdtemp(m->run_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        m->run_dir[0] = '\0';
        return -1;
    }
    char db[1200];
    snprintf(db, sizeof db, "%s/server.db", m->run_dir);
    if (copy_db(tpl, db)) {
        fprintf(stderr, "cannot copy %s\n", tpl);
        return -1;
    }
    /* A device that has pushed its week waits, connected and silent, until every other
     * device has too and the pull phase starts (real devices pull at once); on a loaded
     * machine the push phase outlasts the server's default 120 s idle timeout (measured:
     * 135 s at load 12, and device 0 got IDLE). */
    const char *args[] = {"--idle-timeout", "900", NULL, NULL, NULL};
    if (m->o.flush_chunk) {
        args[2] = "--flush-chunk";
        args[3] = m->o.flush_chunk;
    }
    if (bh_server_start(&m->srv, m->run_dir, args))
        return -1;
    bh_proc p;
    bh_proc_read(m->srv.pid, &p);
    printf("  server    pid %d, port %d, store %s, open files limit %ld (inherited),"
           " --flush-chunk %s\n",
           (int)m->srv.pid, m->srv.port, m->srv.db, lim,
           m->o.flush_chunk ? m->o.flush_chunk : "default");
    return 0;
}

int market_preload(market *m)
{
    fakedata *fd = bh_check(fakedata_new(SEED));
    if (preload(m, fd)) {
        fakedata_free(fd);
        return -1;
    }
    for (int i = 0; i < m->n_dev; i++) {
        bh_dev *d = &m->devs[i];
        make_backlog(m, fd, i);
        d->dict_want = m->o.raw ? 0 : 1;
        d->first_dseq = 1;
        d->first_batch = 16;
        d->max_batch = 200;
        d->max_batch_bytes = 65536;
        d->pull_max = 500;
        d->cursor = m->log_end;
        d->user = m;
    }
    fakedata_free(fd);
    printf("  workload  %d devices in %d villages of %d townships, %" PRIu64 " changes in their\n"
           "            backlogs (%.1f per device: visits, child edits, reports)\n",
           m->n_dev, m->n_villages, m->n_townships, m->backlog_changes,
           (double)m->backlog_changes / m->n_dev);
    return 0;
}

void market_free(market *m)
{
    bh_server_stop(&m->srv);
    if (m->run_dir[0] && !m->o.keep) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", m->run_dir);
        if (system(cmd)) { /* best effort */
        }
    } else if (m->run_dir[0]) {
        printf("  kept %s\n", m->run_dir);
    }
    for (int i = 0; i < m->n_dev; i++)
        bh_dev_free(&m->devs[i]);
    free(m->devs);
    free(m->loaders);
    free(m->children);
    free(m->child_hlc);
    wire_dicts_free(m->dicts);
    schema_free(m->s);
}

/* ---- phases ------------------------------------------------------------------------------ */

static void reset_dev(bh_dev *d)
{
    bh_blobs keep = d->backlog;
    bh_dev saved = *d;
    memset(d, 0, sizeof *d);
    d->id = saved.id;
    memcpy(d->token, saved.token, sizeof d->token);
    d->dict_want = saved.dict_want;
    d->cursor = saved.cursor;
    d->backlog = keep;
    d->first_dseq = saved.first_dseq;
    d->first_batch = saved.first_batch;
    d->max_batch = saved.max_batch;
    d->max_batch_bytes = saved.max_batch_bytes;
    d->pull_max = saved.pull_max;
    d->user = saved.user;
}

typedef struct connector {
    market *m;
    bh_net *net;
    double t0;
    int next;
} connector;

static void connect_due(void *ctx)
{
    connector *c = ctx;
    market *m = c->m;
    double w = m->o.connect_window_s > 0 ? m->o.connect_window_s : 1.0;
    int due = (int)((bh_now() - c->t0) / w * m->n_dev) + 1;
    if (due > m->n_dev)
        due = m->n_dev;
    while (c->next < due)
        bh_dev_connect(c->net, &m->devs[c->next++], m->srv.port);
}

typedef struct waitfor {
    market *m;
    int what;       /* 0 welcomed, 1 pushed, 2 pulled */
    connector *c;
} waitfor;

static bool phase_done(void *ctx)
{
    waitfor *w = ctx;
    market *m = w->m;
    if (w->c && w->c->next < m->n_dev)
        return false;
    for (int i = 0; i < m->n_dev; i++) {
        bh_dev *d = &m->devs[i];
        if (d->failed)
            continue;
        if (w->what == 0 && d->state != BH_READY)
            return false;
        if (w->what == 1 && d->t_pushed == 0)
            return false;
        if (w->what == 2 && d->t_pulled == 0)
            return false;
    }
    return true;
}

static bool never(void *ctx)
{
    (void)ctx;
    return false;
}

int market_idle(market *m, double settle_s, long *rss_before_kb, long *rss_idle_kb,
                double *per_session_kb, double *connect_cpu_s)
{
    bh_proc p0, p1;
    bh_proc_read(m->srv.pid, &p0);
    bh_net *net = bh_net_new(m->dicts, m->n_dev);
    for (int i = 0; i < m->n_dev; i++) {
        reset_dev(&m->devs[i]);
        m->devs[i].push_on_welcome = false;
    }
    connector c = {m, net, bh_now(), 0};
    bh_net_every(net, 1000, connect_due, &c);
    waitfor w = {m, 0, &c};
    int rc = bh_net_run(net, phase_done, &w, bh_now() + 120);
    bh_net_every(net, 0, NULL, NULL);
    bh_proc pc;
    bh_proc_read(m->srv.pid, &pc);
    *connect_cpu_s = pc.cpu_s - p0.cpu_s;
    int failed = 0;
    for (int i = 0; i < m->n_dev; i++)
        failed += m->devs[i].failed;
    bh_net_run(net, never, NULL, bh_now() + settle_s);
    bh_proc_read(m->srv.pid, &p1);
    bh_net_free(net); /* closes every connection */
    *rss_before_kb = p0.rss_kb;
    *rss_idle_kb = p1.rss_kb;
    *per_session_kb = (double)(p1.rss_kb - p0.rss_kb) / (double)(m->n_dev - failed);
    if (rc || failed) {
        fprintf(stderr, "idle sessions: %d of %d failed (%s)\n", failed, m->n_dev,
                failed ? "see below" : "timed out");
        for (int i = 0; i < m->n_dev; i++)
            if (m->devs[i].failed) {
                fprintf(stderr, "  device %d: %s\n", i, m->devs[i].why);
                break;
            }
        return -1;
    }
    usleep(1500 * 1000); /* let the server see the closes before the market day */
    return 0;
}

static void fill_phase(market *m, market_phase *out, double t0, const bh_proc *p0, double c0,
                       int what)
{
    bh_proc p1;
    bh_proc_read(m->srv.pid, &p1);
    out->server_cpu = p1.cpu_s - p0->cpu_s;
    out->client_cpu = bh_self_cpu() - c0;
    out->server_rss_kb = p1.rss_kb;
    out->server_hwm_kb = p1.hwm_kb;
    double *per = bh_check(calloc((size_t)m->n_dev, sizeof *per));
    size_t k = 0;
    double last = t0;
    for (int i = 0; i < m->n_dev; i++) {
        bh_dev *d = &m->devs[i];
        if (d->failed) {
            if (!out->failed++)
                snprintf(out->first_failure, sizeof out->first_failure, "device %d: %s", i,
                         d->why);
            continue;
        }
        if (d->refused && !out->first_failure[0])
            snprintf(out->first_failure, sizeof out->first_failure, "device %d refused: %s", i,
                     d->first_refusal);
        double end = what == 1 ? d->t_pushed : d->t_pulled;
        double start = what == 1 ? d->t_connect : d->t_pull_start;
        per[k++] = end - start;
        if (end > last)
            last = end;
        out->changes += what == 1 ? d->accepted + d->duplicates : d->pulled;
        out->messages += what == 1 ? (uint64_t)d->pushes : d->pulls;
        out->bytes_up += d->bytes_up;
        out->bytes_down += d->bytes_down;
    }
    out->secs = last - t0;
    out->dev_p50 = bh_percentile(per, k, 50);
    out->dev_p99 = bh_percentile(per, k, 99);
    out->dev_max = k ? per[k - 1] : 0;
    free(per);
    bh_load(out->load, sizeof out->load);
}

int market_push(market *m, bh_net *net, market_phase *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < m->n_dev; i++) {
        reset_dev(&m->devs[i]);
        m->devs[i].push_on_welcome = true;
    }
    bh_proc p0;
    bh_proc_read(m->srv.pid, &p0);
    double c0 = bh_self_cpu();
    connector c = {m, net, bh_now(), 0};
    bh_net_every(net, 1000, connect_due, &c);
    waitfor w = {m, 1, &c};
    int rc = bh_net_run(net, phase_done, &w, bh_now() + 300);
    bh_net_every(net, 0, NULL, NULL);
    fill_phase(m, out, c.t0, &p0, c0, 1);
    return rc || out->failed ? -1 : 0;
}

int market_pull(market *m, bh_net *net, market_phase *out)
{
    memset(out, 0, sizeof *out);
    bh_proc p0;
    bh_proc_read(m->srv.pid, &p0);
    double c0 = bh_self_cpu();
    double t0 = bh_now();
    for (int i = 0; i < m->n_dev; i++) {
        bh_dev *d = &m->devs[i];
        d->bytes_up = d->bytes_down = 0;
        bh_dev_pull(d);
    }
    waitfor w = {m, 2, NULL};
    int rc = bh_net_run(net, phase_done, &w, bh_now() + 900);
    fill_phase(m, out, t0, &p0, c0, 2);
    return rc || out->failed ? -1 : 0;
}

void market_print_phase(const char *name, const market_phase *p)
{
    printf("  %-12s %8.2f s  %8" PRIu64 " changes (%6.0f/s)  %6" PRIu64 " msgs  server cpu "
           "%6.2f s  client cpu %6.2f s\n",
           name, p->secs, p->changes, p->secs > 0 ? (double)p->changes / p->secs : 0,
           p->messages, p->server_cpu, p->client_cpu);
    printf("  %-12s per device: p50 %.2f s, p99 %.2f s, max %.2f s;  server RSS %ld KB, peak "
           "%ld KB;  load %s\n",
           "", p->dev_p50, p->dev_p99, p->dev_max, p->server_rss_kb, p->server_hwm_kb, p->load);
    if (p->failed || p->first_failure[0])
        printf("  %-12s %d devices failed; first: %s\n", "", p->failed, p->first_failure);
}

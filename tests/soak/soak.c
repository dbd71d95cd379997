/*
 * soak.c — many simulated devices against one real daemon for a set time, with things going
 * wrong, then a check that nothing was lost, doubled or left diverged.
 *
 *   soak [--bin FIELDSYNCD]      (environment: SOAK_SECONDS, SOAK_DEVICES, SOAK_WORKERS,
 *                                 SOAK_SEED, SOAK_KEEP; tests/soak/soak.sh sets the paths)
 *
 * Shape. Ten villages of one township; SOAK_DEVICES devices (default 200): mostly visitors of
 * one village, some volunteers of two villages, a few supervisors of the township; one user
 * and one replica file each. SOAK_WORKERS worker processes (default 8) each drive a share of
 * the replicas through the SDK: pick a device, make 1-3 edits (a new child, a visit, a
 * mandatory report, a school change, a risk raise, a name change that may race into a review
 * item; supervisors also settle review items and move reports forward), then sync it unless
 * it is in an offline window (after a sync, one time in four, a device goes offline for 1-8
 * s while it keeps editing). Meanwhile the orchestrator:
 *   - kills a random worker with SIGKILL every 2-6 s (a link dropping mid-sync, mid-save,
 *     anywhere) and starts it again on the same replicas;
 *   - kills the daemon with SIGKILL once, half-way, and restarts it on the same port;
 *   - samples the daemon's descriptors and memory every second.
 * At the end every device syncs twice (all pushes land, then everyone pulls everything), the
 * daemon is stopped, and it is checked that:
 *   - no device has anything left in its outbox; refusals are only the legitimate kinds
 *     (a visitor lowering a risk: EROLE; a supervisor lowering on a stale version: ESTALE);
 *   - every device's replica holds exactly the server's records of its scope, field by field;
 *   - every visit a worker saved (journalled after fieldsync_record_save returned) is on the
 *     server once, and the server has no other visits than those the replicas authored;
 *   - no review item was lost: the server's review items equal those rebuilt from its log
 *     alone (store_rebuild on a copy), its field state too, and every supervisor's cached
 *     open items equal the server's open items;
 *   - the daemon's descriptors came back to their idle count, and its memory stayed bounded
 *     (growth is expected only with the data: SQLite's page cache and the engine's field
 *     cache; the samples are printed).
 * A failed check prints the seed (SOAK_SEED reproduces the same choices, not the same timing).
 */
#include "check.h"
#include "fault_support.h"

#include "schema.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NVILLAGES 10
#define MAXDEV 2000

typedef enum role { R_VISITOR, R_VOLUNTEER, R_SUPERVISOR } role;

typedef struct dev {
    char user[32];
    role r;
    int villages[2];
    int nv;
    char path[256];
} dev;

static dev devs[MAXDEV];
static int ndev;
static uint64_t g_seed;
static char g_dir[128];

static uint64_t rnd_state;
static uint64_t rnd(void)
{
    uint64_t x = rnd_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rnd_state = x;
}
static int rnd_n(int n) { return (int)(rnd() % (uint64_t)n); }

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void vcode(int v, char *out) { snprintf(out, 8, "V%02d", (v % 100) + 1); }

/* ---- a worker: edits and syncs its share of the devices until `until` -------------------- */

typedef struct wdev {
    dev *d;
    fieldsync_db *db;
    sqlite3 *ro;           /* read connection for picking records */
    int64_t offline_until;
} wdev;

static int journal_fd = -1;

static void journal(const char *kind, const char *id)
{
    char line[96];
    int n = snprintf(line, sizeof line, "%s %s\n", kind, id);
    if (write(journal_fd, line, (size_t)n) != n) /* O_APPEND, no stdio: survives kill -9 */
        _exit(90);
}

/* A random record id (text) of type in the device's view (confirmed or pending). */
static bool pick(wdev *w, int type, char *out)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT id FROM (SELECT id FROM records WHERE type = %d UNION SELECT record FROM "
             "dev_outbox WHERE type = %d) ORDER BY random() LIMIT 1",
             type, type);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(w->ro, sql, -1, &s, NULL))
        return false;
    bool ok = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 16;
    if (ok) {
        rid_t id;
        memcpy(id.b, sqlite3_column_blob(s, 0), 16);
        rid_to_text(&id, out);
    }
    sqlite3_finalize(s);
    return ok;
}

static const char *const schools[] = {"中心小学", "村小", "镇中学", "九年制学校", "幼儿园"};
static const char *const names[] = {"王小明", "李小红", "张伟", "刘芳", "陈杰", "杨丽", "赵强",
                                    "黄敏", "周涛", "吴静"};

static int save_or_note(fieldsync_record *r, fieldsync_db *db)
{
    int rc = fieldsync_record_save(r);
    if (rc && rc != FIELDSYNC_EVALUE && rc != FIELDSYNC_EIMMUTABLE)
        fprintf(stderr, "soak: save failed: %s\n", fieldsync_errmsg(db));
    return rc;
}

static void act(wdev *w)
{
    fieldsync_db *db = w->db;
    fieldsync_record *r = NULL;
    char id[40], v[8];
    int a = rnd_n(100);
    if (a < 20) { /* a new child */
        vcode(w->d->villages[rnd_n(w->d->nv)], v);
        if (fieldsync_record_new(db, "child", &r))
            return;
        fieldsync_set_text(r, "name", names[rnd_n(10)]);
        fieldsync_set_text(r, "village", v);
        fieldsync_set_enum(r, "gender", rnd_n(2) ? "male" : "female");
        if (save_or_note(r, db) == 0)
            journal("C", fieldsync_record_id(r));
    } else if (a < 55) { /* a visit */
        if (!pick(w, 1, id) || fieldsync_record_new(db, "visit", &r))
            return;
        fieldsync_set_ref(r, "child", id);
        fieldsync_set_enum(r, "kind", "home_visit");
        fieldsync_set_time(r, "visited_at", wall_ms() / 1000);
        fieldsync_set_text(r, "mood", "情绪稳定");
        if (save_or_note(r, db) == 0)
            journal("V", fieldsync_record_id(r));
    } else if (a < 62) { /* a mandatory report */
        if (!pick(w, 1, id) || fieldsync_record_new(db, "report", &r))
            return;
        fieldsync_set_ref(r, "child", id);
        fieldsync_set_enum(r, "category", "living_alone");
        fieldsync_set_text(r, "observed", "独自在家");
        fieldsync_set_time(r, "observed_at", wall_ms() / 1000);
        fieldsync_set_enum(r, "status", "reported");
        if (save_or_note(r, db) == 0)
            journal("R", fieldsync_record_id(r));
    } else if (a < 78) { /* school: last writer wins */
        if (!pick(w, 1, id) || fieldsync_record_load(db, id, &r))
            return;
        fieldsync_set_text(r, "school", schools[rnd_n(5)]);
        save_or_note(r, db);
    } else if (a < 88) { /* risk: escalates; a visitor's lower value is refused */
        if (!pick(w, 1, id) || fieldsync_record_load(db, id, &r))
            return;
        static const char *const lv[] = {"low", "medium", "high"};
        fieldsync_set_enum(r, "risk_level", lv[rnd_n(3)]);
        save_or_note(r, db);
    } else if (a < 96) { /* name: races open review items */
        if (!pick(w, 1, id) || fieldsync_record_load(db, id, &r))
            return;
        fieldsync_set_text(r, "name", names[rnd_n(10)]);
        save_or_note(r, db);
    } else if (w->d->r == R_SUPERVISOR) { /* move a report forward */
        if (!pick(w, 5, id) || fieldsync_record_load(db, id, &r))
            return;
        static const char *const st[] = {"police_accepted", "township_notified", "assessed",
                                         "assisting", "closed"};
        fieldsync_set_enum(r, "status", st[rnd_n(5)]);
        save_or_note(r, db);
    }
    fieldsync_record_free(r);
}

typedef struct rv_pick {
    int64_t id;
    char value[128];
    int n;
} rv_pick;

static int rv_cb(void *ctx, const fieldsync_review_info *in)
{
    rv_pick *p = ctx;
    if (in->resolved)
        return 0;
    if (p->n++ == 0 || rnd_n(p->n) == 0) {
        p->id = in->id;
        snprintf(p->value, sizeof p->value, "%s", in->value_b);
    }
    return 0;
}

static void settle(wdev *w)
{
    rv_pick p = {0};
    if (fieldsync_reviews(w->db, rv_cb, &p) || !p.n)
        return;
    int rc = fieldsync_review_resolve(w->db, p.id, p.value);
    if (rc && rc != FIELDSYNC_ENOTFOUND)
        fprintf(stderr, "soak: resolve failed: %s\n", fieldsync_errmsg(w->db));
}

static void worker(int k, int restart, int64_t until)
{
    rnd_state = g_seed ^ ((uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL) ^
                ((uint64_t)restart << 40) ^ 0x5bd1e995;
    if (!rnd_state)
        rnd_state = 1;
    char jp[300];
    snprintf(jp, sizeof jp, "%s/journal-%d.txt", g_dir, k);
    journal_fd = open(jp, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (journal_fd < 0)
        _exit(91);
    int nw = 0;
    static wdev ws[MAXDEV];
    for (int i = k; i < ndev; i += (int)ft_env_long("SOAK_WORKERS", 8)) {
        wdev *w = &ws[nw++];
        memset(w, 0, sizeof *w);
        w->d = &devs[i];
        if (fieldsync_open(w->d->path, NULL, &w->db)) {
            fprintf(stderr, "soak: worker %d cannot open %s: %s\n", k, w->d->path,
                    fieldsync_errmsg(NULL));
            _exit(92);
        }
        if (sqlite3_open_v2(w->d->path, &w->ro, SQLITE_OPEN_READONLY, NULL))
            _exit(93);
        sqlite3_busy_timeout(w->ro, 5000);
    }
    fieldsync_sync_opts so = {.connect_timeout_ms = 3000, .reply_timeout_ms = 5000,
                              .first_batch = 5, .max_batch = 25};
    while (wall_ms() < until) {
        wdev *w = &ws[rnd_n(nw)];
        int edits = 1 + rnd_n(3);
        for (int e = 0; e < edits; e++) {
            if (w->d->r == R_SUPERVISOR && rnd_n(4) == 0)
                settle(w);
            else
                act(w);
        }
        if (wall_ms() >= w->offline_until) {
            fieldsync_sync_result res;
            int rc = fieldsync_sync(w->db, &so, NULL, NULL, &res);
            if (rc == 0 && rnd_n(4) == 0)
                w->offline_until = wall_ms() + 1000 + rnd_n(7000);
            if (rc && rc != FIELDSYNC_ENETWORK && rc != FIELDSYNC_EBUSY)
                fprintf(stderr, "soak: worker %d: sync: %s: %s\n", k, fieldsync_strerror(rc),
                        fieldsync_errmsg(w->db));
        }
        usleep((useconds_t)(10000 + rnd_n(60000)));
    }
    for (int i = 0; i < nw; i++) {
        sqlite3_close(ws[i].ro);
        fieldsync_close(ws[i].db);
    }
    _exit(0);
}

/* ---- checks ------------------------------------------------------------------------------ */

/* All rows of a query as one text (for comparing two files). */
static char *dump(const char *file, const char *sql)
{
    sqlite3 *db;
    CHECK_OK(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL));
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL)) {
        fprintf(stderr, "%s: %s: %s\n", file, sql, sqlite3_errmsg(db));
        abort();
    }
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    while (sqlite3_step(s) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(s); c++) {
            const char *t = (const char *)sqlite3_column_text(s, c);
            size_t k = t ? strlen(t) : 4;
            while (n + k + 3 > cap)
                out = realloc(out, cap *= 2);
            memcpy(out + n, t ? t : "NULL", k);
            n += k;
            out[n++] = c + 1 < sqlite3_column_count(s) ? '|' : '\n';
        }
        out[n] = '\0';
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

static void scope_list(const dev *d, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (d->r == R_SUPERVISOR) {
        for (int v = 0; v < NVILLAGES; v++)
            n += (size_t)snprintf(out + n, cap - n, "%s'V%02d'", v ? "," : "", v + 1);
        return;
    }
    for (int i = 0; i < d->nv; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s'V%02d'", i ? "," : "", d->villages[i] + 1);
}

static int failures;
#define SOAK_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "soak check failed (seed %llu): ", (unsigned long long)g_seed); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

static void check_replicas(srv *s)
{
    static const char fields_sql[] =
        "SELECT hex(f.record), f.field, hex(f.value), f.version, f.whlc, hex(f.wdev), f.wseq, "
        "f.author, hex(f.aux) FROM fields f JOIN records r ON r.id = f.record %s%s%s ORDER BY "
        "f.record, f.field";
    char scope[256], where[400], sql[1200];
    long long outbox = 0, refused = 0, bad_refused = 0;
    for (int i = 0; i < ndev; i++) {
        dev *d = &devs[i];
        outbox += it_sqlnum(d->path, "SELECT count(*) FROM dev_outbox");
        refused += it_sqlnum(d->path, "SELECT count(*) FROM dev_refused");
        bad_refused += it_sqlnum(d->path, "SELECT count(*) FROM dev_refused WHERE code NOT IN "
                                          "(-61, -62)");
        scope_list(d, scope, sizeof scope);
        snprintf(where, sizeof where, "r.scope IN (%s)", scope);
        snprintf(sql, sizeof sql, fields_sql, "WHERE ", where, "");
        char *srv_view = dump(s->db, sql);
        snprintf(sql, sizeof sql, fields_sql, "", "", "");
        char *dev_view = dump(d->path, sql);
        snprintf(sql, sizeof sql, "SELECT hex(id), type FROM records r WHERE %s ORDER BY id",
                 where);
        char *srv_recs = dump(s->db, sql);
        char *dev_recs = dump(d->path, "SELECT hex(id), type FROM records ORDER BY id");
        SOAK_CHECK(!strcmp(srv_recs, dev_recs), "device %s (%s): records differ from the "
                   "server's view of its scope (%zu vs %zu bytes)", d->user, scope,
                   strlen(dev_recs), strlen(srv_recs));
        SOAK_CHECK(!strcmp(srv_view, dev_view), "device %s (%s): field state differs from the "
                   "server's", d->user, scope);
        free(srv_view);
        free(dev_view);
        free(srv_recs);
        free(dev_recs);
    }
    printf("replicas: %d devices equal to the server's view of their scope; outbox %lld, "
           "refused %lld (%lld of an unexpected kind)\n",
           ndev, outbox, refused, bad_refused);
    SOAK_CHECK(outbox == 0, "%lld changes left in outboxes", outbox);
    SOAK_CHECK(bad_refused == 0, "%lld refusals of an unexpected kind", bad_refused);
}

static void check_visits(srv *s, int nworkers)
{
    long long journalled = 0, missing = 0;
    for (int k = 0; k < nworkers; k++) {
        char jp[300];
        snprintf(jp, sizeof jp, "%s/journal-%d.txt", g_dir, k);
        FILE *f = fopen(jp, "r");
        if (!f)
            continue;
        char kind[4], id[64];
        while (fscanf(f, "%3s %63s", kind, id) == 2) {
            if (strcmp(kind, "V"))
                continue;
            journalled++;
            char hex[40];
            ft_hex_id(id, hex);
            if (it_sqlnum(s->db, "SELECT count(*) FROM records WHERE id = X'%s' AND type = 3",
                          hex) != 1)
                missing++;
        }
        fclose(f);
    }
    long long on_server = it_sqlnum(s->db, "SELECT count(*) FROM records WHERE type = 3");
    long long authored = 0;
    for (int i = 0; i < ndev; i++) {
        char dev_id[64];
        it_sql1(devs[i].path, dev_id, sizeof dev_id,
                "SELECT value FROM dev_identity WHERE key = 'device'");
        char hex[40];
        ft_hex_id(dev_id, hex);
        authored += it_sqlnum(devs[i].path,
                              "SELECT count(*) FROM log WHERE type = 3 AND device = X'%s'", hex);
    }
    long long log_rows = it_sqlnum(s->db, "SELECT count(*) FROM log WHERE type = 3");
    printf("visits: %lld journalled by the workers, %lld on the server (%lld log rows), %lld "
           "authored in the replicas, %lld journalled but missing\n",
           journalled, on_server, log_rows, authored, missing);
    SOAK_CHECK(missing == 0, "%lld saved visits are not on the server", missing);
    SOAK_CHECK(on_server == authored, "server has %lld visits, replicas authored %lld",
               on_server, authored);
    SOAK_CHECK(log_rows == on_server, "visits logged %lld times for %lld visits", log_rows,
               on_server);
    SOAK_CHECK(journalled <= on_server, "more visits journalled than on the server");
}

static void check_reviews(srv *s)
{
    /* the live review items and state equal what the log alone rebuilds */
    char copy[300];
    snprintf(copy, sizeof copy, "%s/rebuild.db", g_dir);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", s->db, copy);
    CHECK_OK(system(cmd));
    static const char review_sql[] =
        "SELECT hex(record), field, hex(value_a), hlc_a, hex(dev_a), author_a, hex(value_b), "
        "hlc_b, hex(dev_b), author_b, resolved_hlc, resolved_by FROM review ORDER BY record, "
        "field, hlc_a, hlc_b";
    char *live = dump(copy, review_sql);
    uint64_t h1[2], h2[2];
    ft_state_hash(copy, true, h1);
    schema *sc;
    fs_error e = {0};
    CHECK_OK(schema_load(schema_default_path(), &sc, &e));
    store *st;
    CHECK_OK(store_open(copy, sc, STORE_AUTHORITY, &st, &e));
    CHECK_OK(store_rebuild(st, &e));
    store_clock(st)->last = 0;
    store_close(st);
    schema_free(sc);
    char *rebuilt = dump(copy, review_sql);
    ft_state_hash(copy, true, h2);
    long long total = it_sqlnum(s->db, "SELECT count(*) FROM review");
    long long open = it_sqlnum(s->db, "SELECT count(*) FROM review WHERE resolved_hlc = 0");
    printf("review items: %lld opened, %lld still open; live = rebuilt from the log: %s; "
           "state = rebuilt: %s\n",
           total, open, strcmp(live, rebuilt) ? "NO" : "yes",
           h1[0] == h2[0] && h1[1] == h2[1] ? "yes" : "NO");
    SOAK_CHECK(!strcmp(live, rebuilt), "review items differ from those rebuilt from the log");
    SOAK_CHECK(h1[0] == h2[0] && h1[1] == h2[1], "field state differs from the log's");
    free(live);
    free(rebuilt);
    /* supervisors' cached open items = the server's open items (their scope is everything) */
    char *server_open = dump(s->db, "SELECT id FROM review WHERE resolved_hlc = 0 ORDER BY id");
    for (int i = 0; i < ndev; i++) {
        if (devs[i].r != R_SUPERVISOR)
            continue;
        char *dev_open = dump(devs[i].path, "SELECT id FROM dev_review ORDER BY id");
        SOAK_CHECK(!strcmp(server_open, dev_open), "supervisor %s: cached review items differ "
                   "from the server's open ones", devs[i].user);
        free(dev_open);
    }
    free(server_open);
}

/* ---- the orchestrator ---------------------------------------------------------------------- */

typedef struct sample {
    int t;
    long fds, rss;
} sample;

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--bin"))
            setenv("FIELDSYNCD", argv[i + 1], 1);
    int seconds = (int)ft_env_long("SOAK_SECONDS", 60);
    ndev = (int)ft_env_long("SOAK_DEVICES", 200);
    int nworkers = (int)ft_env_long("SOAK_WORKERS", 8);
    CHECK(ndev >= 12 && ndev <= MAXDEV && nworkers >= 1 && nworkers <= 64);
    g_seed = (uint64_t)ft_env_long("SOAK_SEED", (long)(wall_ms() & 0x7fffffff));
    rnd_state = g_seed | 1;
    printf("soak: %d devices, %d workers, %d s, seed %llu\n", ndev, nworkers, seconds,
           (unsigned long long)g_seed);

    it_mkdir("soak", g_dir, sizeof g_dir);
    srv s;
    it_srv_init(&s, g_dir);
    int64_t t_setup = ft_now_ms();
    /* geography and users: supervisors 5%, volunteers 15%, the rest visitors */
    it_admin(&s, "township add T1 红星镇");
    for (int v = 0; v < NVILLAGES; v++)
        it_admin(&s, "village add V%02d --township T1 村%d", v + 1, v + 1);
    int nsup = ndev / 20 > 1 ? ndev / 20 : 1, nvol = ndev * 15 / 100;
    for (int i = 0; i < ndev; i++) {
        dev *d = &devs[i];
        d->r = i < nsup ? R_SUPERVISOR : i < nsup + nvol ? R_VOLUNTEER : R_VISITOR;
        d->villages[0] = i % NVILLAGES;
        d->villages[1] = (i + 1) % NVILLAGES;
        d->nv = d->r == R_VOLUNTEER ? 2 : 1;
        snprintf(d->user, sizeof d->user, "u%03d", i);
        if (d->r == R_SUPERVISOR)
            it_admin(&s, "user add %s --role supervisor --township T1", d->user);
        else if (d->nv == 2)
            it_admin(&s, "user add %s --role volunteer --villages V%02d,V%02d", d->user,
                     d->villages[0] + 1, d->villages[1] + 1);
        else
            it_admin(&s, "user add %s --role visitor --villages V%02d", d->user,
                     d->villages[0] + 1);
    }
    ft_srv_start(&s, NULL);
    for (int i = 0; i < ndev; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%03d", i);
        fieldsync_db *db = it_device(&s, devs[i].user, name);
        fieldsync_close(db);
        it_dbpath(&s, name, devs[i].path, sizeof devs[i].path);
    }
    printf("setup: %.1f s\n", (double)(ft_now_ms() - t_setup) / 1000.0);
    usleep(200000);
    long idle_fds = ft_fd_count(s.pid);

    /* run */
    int64_t start = wall_ms(), until = start + (int64_t)seconds * 1000;
    pid_t *wp = calloc((size_t)nworkers, sizeof *wp);
    int *restarts = calloc((size_t)nworkers, sizeof *restarts);
    for (int k = 0; k < nworkers; k++) {
        wp[k] = fork();
        CHECK(wp[k] >= 0);
        if (wp[k] == 0) {
            it_child_dies_with_parent();
            worker(k, 0, until);
        }
    }
    sample *smp = calloc((size_t)seconds + 64, sizeof *smp);
    int nsmp = 0, kills = 0, restart_at = seconds / 2;
    bool server_restarted = false;
    int64_t next_kill = wall_ms() + 2000 + rnd_n(4000);
    while (wall_ms() < until) {
        usleep(1000000);
        int t = (int)((wall_ms() - start) / 1000);
        if (s.pid && nsmp < seconds + 60)
            smp[nsmp++] = (sample){t, ft_fd_count(s.pid), ft_rss_kb(s.pid)};
        if (wall_ms() >= next_kill && wall_ms() < until - 1000) {
            int k = rnd_n(nworkers);
            kill(wp[k], SIGKILL);
            waitpid(wp[k], NULL, 0);
            kills++;
            restarts[k]++;
            wp[k] = fork();
            CHECK(wp[k] >= 0);
            if (wp[k] == 0) {
                it_child_dies_with_parent();
                worker(k, restarts[k], until);
            }
            next_kill = wall_ms() + 2000 + rnd_n(4000);
        }
        if (!server_restarted && t >= restart_at) {
            it_srv_kill(&s); /* kill -9 */
            usleep(500000);
            ft_opts again = {.same_port = true};
            ft_srv_start(&s, &again);
            server_restarted = true;
            printf("t=%ds: daemon killed (-9) and restarted\n", t);
            smp[nsmp++] = (sample){t, -1, -1}; /* marks the restart */
        }
    }
    for (int k = 0; k < nworkers; k++) {
        int st;
        waitpid(wp[k], &st, 0);
        SOAK_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d ended with status %d", k,
                   st);
    }
    printf("run: %d s, %d workers killed and restarted, daemon restarted once\n", seconds,
           kills);
    usleep(300000);
    long end_fds = ft_fd_count(s.pid);
    for (int i = 0; i < 100 && end_fds > idle_fds; i++) {
        usleep(50000);
        end_fds = ft_fd_count(s.pid);
    }

    /* the final syncs: everything pushed, then everything pulled */
    int64_t t_final = ft_now_ms();
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < ndev; i++) {
            fieldsync_db *db;
            CHECK_OK(fieldsync_open(devs[i].path, NULL, &db));
            fieldsync_sync_result r;
            int rc = fieldsync_sync(db, NULL, NULL, NULL, &r);
            SOAK_CHECK(rc == 0, "final sync of %s: %s (%s)", devs[i].user,
                       fieldsync_strerror(rc), fieldsync_errmsg(db));
            fieldsync_close(db);
        }
    printf("final syncs: %.1f s\n", (double)(ft_now_ms() - t_final) / 1000.0);

    /* the daemon over time */
    long rss_after_restart = 0, rss_max = 0, fds_max = 0;
    printf("daemon samples (t s: fds, VmRSS KiB):");
    for (int i = 0; i < nsmp; i++) {
        if (smp[i].fds < 0) {
            printf(" | restart |");
            rss_after_restart = -1;
            continue;
        }
        if (i % 5 == 0 || i == nsmp - 1)
            printf(" %d:%ld,%ld", smp[i].t, smp[i].fds, smp[i].rss);
        if (rss_after_restart == -1)
            rss_after_restart = smp[i].rss;
        if (smp[i].rss > rss_max)
            rss_max = smp[i].rss;
        if (smp[i].fds > fds_max)
            fds_max = smp[i].fds;
    }
    long rss_end = ft_rss_kb(s.pid);
    printf("\ndaemon: idle fds %ld before, %ld after (max %ld while busy); VmRSS max %ld KiB, "
           "%ld at the end\n",
           idle_fds, end_fds, fds_max, rss_max, rss_end);
    SOAK_CHECK(end_fds == idle_fds, "descriptors: %ld idle before, %ld after", idle_fds,
               end_fds);
    if (!ft_env_flag("FS_SANITIZED"))
        SOAK_CHECK(rss_max < 256 * 1024, "VmRSS reached %ld KiB", rss_max);
    ft_srv_stop(&s); /* SIGTERM: flushes the field state */

    long long changes = it_sqlnum(s.db, "SELECT count(*) FROM log");
    printf("server: %lld changes in the log, %lld records (%lld children, %lld visits, %lld "
           "reports)\n",
           changes, it_sqlnum(s.db, "SELECT count(*) FROM records"),
           it_sqlnum(s.db, "SELECT count(*) FROM records WHERE type = 1"),
           it_sqlnum(s.db, "SELECT count(*) FROM records WHERE type = 3"),
           it_sqlnum(s.db, "SELECT count(*) FROM records WHERE type = 5"));
    SOAK_CHECK(changes > 0, "nothing was synced");
    check_replicas(&s);
    check_visits(&s, nworkers);
    check_reviews(&s);
    free(wp);
    free(restarts);
    free(smp);
    if (failures) {
        fprintf(stderr, "soak: %d checks failed (seed %llu); files kept in %s\n", failures,
                (unsigned long long)g_seed, g_dir);
        return 1;
    }
    if (!ft_env_flag("SOAK_KEEP"))
        it_rmdir(g_dir);
    printf("soak: ok\n");
    return 0;
}

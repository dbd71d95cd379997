/*
 * harness.c — the shared parts of the protocol-level benchmarks (harness.h says what and why).
 *
 * The server runs as a real child process (the binary the project ships, with its defaults),
 * so its CPU time and peak memory can be read from /proc/PID without counting the load
 * generator. The load generator is single-threaded per bh_net: libwebsockets client
 * connections on one context, each carrying a bh_dev state machine; frames are written only
 * from WRITEABLE, one lws_write per callback, with LWS_PRE headroom, and reassembled from
 * fragments before decoding (CONVENTIONS.md, libwebsockets notes).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- report ------------------------------------------------------------------------------ */

double bh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t bh_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *bh_verdict(bool ok) { return ok ? "PASS" : "MISS"; }

void *bh_check(void *p)
{
    if (!p) {
        fprintf(stderr, "benchmark: out of memory\n");
        exit(1);
    }
    return p;
}

void bh_load(char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, cap, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            const char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                snprintf(out, cap, "%s", p);
                out[strcspn(out, "\n")] = '\0';
            }
            break;
        }
    fclose(f);
}

void bh_header(const char *title, int argc, char **argv)
{
    struct utsname un;
    char cpu[256], date[64], load[64], cmd[2048] = "";
    cpu_model(cpu, sizeof cpu);
    if (uname(&un))
        snprintf(un.machine, sizeof un.machine, "?");
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    bh_load(load, sizeof load);
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmd);
        snprintf(cmd + l, sizeof cmd - l, "%s%s", i ? " " : "", argv[i]);
    }
    long mem_kb = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        if (fscanf(f, "MemTotal: %ld kB", &mem_kb) != 1)
            mem_kb = 0;
        fclose(f);
    }
    printf("%s\n", title);
    printf("  machine   %s %s, %ld cpus, %s, %.1f GiB\n", un.sysname, un.machine,
           sysconf(_SC_NPROCESSORS_ONLN), cpu, (double)mem_kb / 1048576.0);
    printf("  date      %s\n", date);
    printf("  load      %s (1, 5, 15 min; near the cpu count the figures are skewed)\n", load);
    printf("  command   %s\n", cmd);
    printf("  libs      sqlite %s, libwebsockets %s\n", sqlite3_libversion(),
           lws_get_library_version());
}

long bh_raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return -1;
    if (want > 65536)
        want = 65536;
    if ((long)rl.rlim_cur < want) {
        rlim_t v = (rlim_t)want;
        if (rl.rlim_max != RLIM_INFINITY && v > rl.rlim_max)
            v = rl.rlim_max;
        rl.rlim_cur = v;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

double bh_self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bh_percentile(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    double k = p / 100.0 * (double)(n - 1);
    size_t i = (size_t)k;
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (v[i + 1] - v[i]) * (k - (double)i);
}

/* ---- the server --------------------------------------------------------------------------- */

static void self_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(out, cap, ".");
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, cap, "%s", exe);
}

void bh_sibling(const char *name, char *out, size_t cap)
{
    char dir[PATH_MAX];
    self_dir(dir, sizeof dir);
    snprintf(out, cap, "%s/%s", dir, name);
}

const char *bh_fieldsyncd(void)
{
    static char path[PATH_MAX + 64];
    if (path[0])
        return path;
    const char *env = getenv("FIELDSYNCD");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
        return path;
    }
    char dir[PATH_MAX];
    self_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/../server/fieldsyncd", dir);
    return path;
}

int bh_server_start(bh_server *s, const char *dir, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->db, sizeof s->db, "%s/server.db", dir);
    snprintf(s->log, sizeof s->log, "%s/server.log", dir);
    int out[2];
    if (pipe(out)) {
        perror("pipe");
        return -1;
    }
    const char *argv[64];
    int k = 0;
    argv[k++] = bh_fieldsyncd();
    argv[k++] = "--db";
    argv[k++] = s->db;
    argv[k++] = "--listen";
    argv[k++] = "127.0.0.1:0";
    for (int i = 0; extra && extra[i] && k < 62; i++)
        argv[k++] = extra[i];
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* a benchmark that crashes takes its server along */
        dup2(out[1], 1);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        close(out[0]);
        close(out[1]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    FILE *f = fdopen(out[0], "r");
    char line[512];
    /* the daemon prints one line and flushes; fgets blocks until it or EOF */
    if (!f || !fgets(line, sizeof line, f) ||
        sscanf(line, "fieldsyncd listening on 127.0.0.1:%d", &s->port) != 1) {
        fprintf(stderr, "%s did not start (see %s)\n", argv[0], s->log);
        if (f)
            fclose(f);
        bh_server_stop(s);
        return -1;
    }
    fclose(f); /* the daemon prints nothing more on stdout */
    return 0;
}

void bh_server_stop(bh_server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

int bh_proc_read(pid_t pid, bh_proc *out)
{
    memset(out, 0, sizeof *out);
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the parenthesised command: state is field 3, minflt 10, utime 14,
     * stime 15 */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 10)
            out->minflt = strtoull(tok, NULL, 10);
        else if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    out->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            out->rss_kb = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "VmHWM:", 6))
            out->hwm_kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return 0;
}

pid_t bh_perf_start(pid_t pid, const char *out)
{
    char p[32];
    snprintf(p, sizeof p, "%d", (int)pid);
    pid_t perf = fork();
    if (perf == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("perf", "perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", p,
               "-o", out, (char *)NULL);
        _exit(127);
    }
    if (perf > 0)
        usleep(300 * 1000); /* let it attach */
    return perf;
}

void bh_perf_stop(pid_t perf)
{
    if (perf <= 0)
        return;
    kill(perf, SIGINT);
    waitpid(perf, NULL, 0);
}

static pid_t admin_spawn(const char *db, const char *const *args, int *rfd)
{
    int p[2];
    if (pipe(p))
        return -1;
    const char *argv[64];
    int k = 0;
    argv[k++] = bh_fieldsyncd();
    argv[k++] = "admin";
    argv[k++] = "--db";
    argv[k++] = db;
    argv[k++] = "--json";
    for (int i = 0; args[i] && k < 63; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    *rfd = p[0];
    return pid;
}

static void read_all(int fd, char *out, size_t cap)
{
    size_t len = 0;
    char sink[512];
    for (;;) {
        char *dst = out && len + 1 < cap ? out + len : sink;
        size_t room = out && len + 1 < cap ? cap - 1 - len : sizeof sink;
        ssize_t n = read(fd, dst, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (dst != sink)
            len += (size_t)n;
    }
    if (out && cap)
        out[len] = '\0';
    close(fd);
}

int bh_admin(const char *db, char *out, size_t cap, const char *const *args)
{
    int fd;
    pid_t pid = admin_spawn(db, args, &fd);
    if (pid < 0)
        return -1;
    read_all(fd, out, cap);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int bh_admin_batch(const char *db, const char *const *const *cmds, size_t n, int parallel,
                   char **outs, size_t cap)
{
    /* reads each child's output after it exits: the JSON answers are far below a pipe's
     * buffer, so a child never blocks on a full pipe */
    typedef struct slot {
        pid_t pid;
        int fd;
        size_t i;
    } slot;
    slot *run = bh_check(calloc((size_t)parallel, sizeof *run));
    int failed = 0, active = 0;
    size_t next = 0;
    while (next < n || active) {
        while (active < parallel && next < n) {
            int fd;
            pid_t pid = admin_spawn(db, cmds[next], &fd);
            if (pid < 0) {
                failed++;
                next++;
                continue;
            }
            for (int k = 0; k < parallel; k++)
                if (!run[k].pid) {
                    run[k] = (slot){pid, fd, next};
                    break;
                }
            active++;
            next++;
        }
        int st;
        pid_t done = wait(&st);
        if (done < 0)
            break;
        for (int k = 0; k < parallel; k++)
            if (run[k].pid == done) {
                read_all(run[k].fd, outs ? outs[run[k].i] : NULL, cap);
                if (!WIFEXITED(st) || WEXITSTATUS(st)) {
                    failed++;
                    if (failed <= 3) {
                        fprintf(stderr, "admin command failed:");
                        for (int a = 0; cmds[run[k].i][a]; a++)
                            fprintf(stderr, " %s", cmds[run[k].i][a]);
                        fprintf(stderr, "\n");
                    }
                }
                run[k].pid = 0;
                active--;
            }
    }
    free(run);
    return failed;
}

int bh_json_str(const char *json, const char *key, char *out, size_t cap)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != '"')
        return -1;
    p++;
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= cap)
        return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

/* ---- raw SQLite --------------------------------------------------------------------------- */

void bh_remove_db(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[4200];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

uint64_t bh_written_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return 0;
    char line[128];
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "wchar:", 6)) {
            v = strtoull(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

int bh_raw_insert(const char *path, const uint8_t *bodies, const uint32_t *off, size_t n,
                  size_t batch, bool full_sync, int page_size, double *secs,
                  uint64_t *written)
{
    *secs = 0;
    if (written)
        *written = 0;
    bh_remove_db(path);
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    int ret = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL))
        goto out;
    sqlite3_busy_timeout(db, 5000);
    char ps[48] = ""; /* before journal_mode, like the store's */
    if (page_size)
        snprintf(ps, sizeof ps, "PRAGMA page_size=%d;", page_size);
    if (sqlite3_exec(db, ps, NULL, NULL, NULL) ||
        sqlite3_exec(db,
                     full_sync ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                               : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                     NULL, NULL, NULL) ||
        sqlite3_exec(db,
                     "PRAGMA foreign_keys=OFF; PRAGMA journal_size_limit=67108864;"
                     "PRAGMA cache_size=-8000; PRAGMA temp_store=MEMORY;"
                     "CREATE TABLE raw(seq INTEGER PRIMARY KEY, body BLOB NOT NULL);",
                     NULL, NULL, NULL) ||
        sqlite3_prepare_v3(db, "INSERT INTO raw(body) VALUES (?1)", -1,
                           SQLITE_PREPARE_PERSISTENT, &ins, NULL) ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL))
        goto out;
    for (size_t at = 0; at < n; at += batch) {
        size_t m = n - at < batch ? n - at : batch;
        uint64_t wr = written ? bh_written_bytes() : 0;
        double t = bh_now();
        if (sqlite3_step(begin) != SQLITE_DONE)
            goto out;
        sqlite3_reset(begin);
        for (size_t i = at; i < at + m; i++) {
            sqlite3_bind_blob(ins, 1, bodies + off[i], (int)(off[i + 1] - off[i]),
                              SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                goto out;
            sqlite3_reset(ins);
        }
        if (sqlite3_step(commit) != SQLITE_DONE)
            goto out;
        sqlite3_reset(commit);
        *secs += bh_now() - t;
        if (written)
            *written += bh_written_bytes() - wr;
    }
    ret = 0;
out:
    if (ret)
        fprintf(stderr, "raw sqlite %s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    bh_remove_db(path);
    return ret;
}

/* ---- packed changes ---------------------------------------------------------------------- */

static int blobs_write(void *data, const char *buf, size_t len)
{
    bh_blobs *b = data;
    if (b->len + len > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->len + len)
            c *= 2;
        b->p = bh_check(realloc(b->p, c));
        b->cap = c;
    }
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

void bh_blobs_add(bh_blobs *b, const change *c, bool full)
{
    if (b->n + 2 > b->ncap) {
        b->ncap = b->ncap ? b->ncap * 2 : 64;
        b->off = bh_check(realloc(b->off, b->ncap * sizeof *b->off));
    }
    if (!b->n)
        b->off[0] = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, blobs_write);
    if (change_pack(&pk, c, full)) {
        fprintf(stderr, "change_pack failed\n");
        exit(1);
    }
    b->off[++b->n] = (uint32_t)b->len;
}

void bh_blobs_free(bh_blobs *b)
{
    free(b->p);
    free(b->off);
    memset(b, 0, sizeof *b);
}

void bh_change_put(change *c, const schema_field *f, fs_value v)
{
    uint32_t i = 0;
    while (i < c->n_fields && c->fields[i].num < f->num)
        i++;
    if (i < c->n_fields && c->fields[i].num == f->num) {
        c->fields[i].v = v;
        return;
    }
    if (c->n_fields == CHANGE_MAX_FIELDS)
        return;
    memmove(&c->fields[i + 1], &c->fields[i], (c->n_fields - i) * sizeof c->fields[0]);
    c->fields[i].num = (uint8_t)f->num;
    c->fields[i].v = v;
    c->n_fields++;
}

const schema_field *bh_field(const schema *s, const char *type, const char *name)
{
    const schema_type *t = schema_type_by_name(s, type);
    const schema_field *f = t ? schema_field_by_name(t, name) : NULL;
    if (!f) {
        fprintf(stderr, "schema: no field %s.%s\n", type, name);
        exit(1);
    }
    return f;
}

/* ---- the client network ----------------------------------------------------------------- */

typedef struct txq {
    struct txq *next;
    size_t len;
    uint8_t data[]; /* LWS_PRE + len */
} txq;

typedef struct bh_conn {
    bh_net *net;
    struct bh_conn *all_next;  /* every connection of the net, freed with it */
    bool dead;                 /* lws is done with it */
    struct lws *wsi;
    bh_dev *dev;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    txq *q_head, *q_tail;
    bool closing;
} bh_conn;

struct bh_net {
    struct lws_context *ctx;
    wire_codec *codec;
    msgpack_sbuffer sb;
    lws_sorted_usec_list_t tick;
    int64_t every_us;
    void (*every)(void *ctx);
    void *every_ctx;
    lws_sorted_usec_list_t every_sul;
    bh_conn *all;
};

static void dev_fail(bh_dev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dev_fail(bh_dev *d, const char *fmt, ...)
{
    if (d->state == BH_CLOSED)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
    d->failed = true;
    d->state = BH_CLOSED;
    if (d->conn) {
        d->conn->closing = true;
        if (d->conn->wsi)
            lws_callback_on_writable(d->conn->wsi);
    }
    if (d->on_event)
        d->on_event(d, BH_EV_FAILED);
}

/* lws is done with c: drop its buffers now; the struct itself stays on the net's list
 * (lws may still hold a pointer to it during the callback) and goes with bh_net_free */
static void conn_dead(bh_conn *c)
{
    txq *f = c->q_head;
    while (f) {
        txq *n = f->next;
        free(f);
        f = n;
    }
    c->q_head = c->q_tail = NULL;
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    c->wsi = NULL;
    c->dead = true;
}

int bh_dev_send(bh_dev *d, const void *body, size_t len)
{
    bh_conn *c = d->conn;
    if (!c || !c->wsi || c->closing)
        return -1;
    uint8_t *frame;
    size_t flen;
    if (wire_frame_encode(d->net->codec, body, len, d->dict, 0, &frame, &flen))
        return -1;
    txq *f = bh_check(malloc(sizeof *f + LWS_PRE + flen));
    f->next = NULL;
    f->len = flen;
    memcpy(f->data + LWS_PRE, frame, flen);
    if (c->q_tail)
        c->q_tail->next = f;
    else
        c->q_head = f;
    c->q_tail = f;
    d->bytes_up += flen;
    lws_callback_on_writable(c->wsi);
    return 0;
}

static msgpack_packer *packer(bh_dev *d, msgpack_packer *pk)
{
    d->net->sb.size = 0;
    msgpack_packer_init(pk, &d->net->sb, msgpack_sbuffer_write);
    return pk;
}

static void send_packed(bh_dev *d)
{
    if (bh_dev_send(d, d->net->sb.data, d->net->sb.size))
        dev_fail(d, "cannot send");
}

static void send_hello(bh_dev *d)
{
    wire_hello h = {0};
    h.device = d->id;
    h.token = d->token;
    h.token_len = (uint32_t)strlen(d->token);
    h.schema_version = 1;
    h.client_hlc = (uint64_t)bh_wall_ms() << 16;
    h.acked_dseq = d->first_dseq ? d->first_dseq - 1 : 0;
    h.cursor = d->cursor;
    h.dict = d->dict_want;
    h.agent = "fieldsync-bench/1";
    h.agent_len = (uint32_t)strlen(h.agent);
    msgpack_packer pk;
    d->dict = 0; /* hello goes raw */
    if (wire_pack_hello(packer(d, &pk), &h))
        return dev_fail(d, "cannot pack hello");
    d->state = BH_HELLO;
    send_packed(d);
}

/* Fills the push window: up to push_window pushes in flight (protocol §5), each the backlog
 * entries after those already sent, together at most one batch (max_batch, max_batch_bytes:
 * with a window of 2, each push after the first is half a batch, as the SDK's) unless
 * full_pushes; with nothing in flight and nothing left, the backlog is pushed
 * (BH_EV_PUSHED). The benchmarks' devices use full record ids and consecutive dseqs,
 * so nothing is ever left unconsumed: a refusal is counted, not resent. */
static void push_next(bh_dev *d)
{
    size_t end = d->push_until && d->push_until < d->backlog.n ? d->push_until : d->backlog.n;
    size_t window = d->push_window ? d->push_window : BH_PUSH_WINDOW;
    if (window > BH_PUSH_WINDOW)
        window = BH_PUSH_WINDOW;
    if (!d->nfl) /* nothing in flight: go on from what is answered (a benchmark may reset it) */
        d->sent = d->acked;
    while (d->nfl < window && d->sent < end && d->state != BH_CLOSED) {
        size_t left = end - d->sent;
        size_t max = d->pushes == 0 && d->first_batch ? d->first_batch : d->max_batch;
        if (!max || max > WIRE_MAX_BATCH)
            max = WIRE_MAX_BATCH;
        size_t max_bytes = d->max_batch_bytes;
        /* as the SDK: the pushes in flight together hold at most one batch, so with a window
         * of 2 each push after the first is at most half a batch */
        if (window > 1 && d->pushes > 0 && !d->full_pushes) {
            max = max / window ? max / window : 1;
            max_bytes /= window;
        }
        size_t n = 0, bytes = 0;
        while (n < left && n < max) {
            size_t l = d->backlog.off[d->sent + n + 1] - d->backlog.off[d->sent + n];
            if (n && max_bytes && bytes + l > max_bytes)
                break;
            bytes += l;
            n++;
        }
        msgpack_packer pk;
        packer(d, &pk);
        if (wire_pack_push_header(&pk, ++d->batch_id, (uint32_t)n) ||
            msgpack_sbuffer_write(&d->net->sb,
                                  (const char *)d->backlog.p + d->backlog.off[d->sent], bytes))
            return dev_fail(d, "cannot pack push");
        d->fl_id[d->nfl] = d->batch_id;
        d->fl_n[d->nfl] = n;
        d->nfl++;
        d->inflight += n;
        d->sent += n;
        d->pushes++;
        d->state = BH_PUSHING;
        send_packed(d);
    }
    if (!d->nfl && d->state != BH_CLOSED) {
        d->state = BH_READY;
        d->t_pushed = bh_now();
        if (d->on_event)
            d->on_event(d, BH_EV_PUSHED);
    }
}

void bh_dev_push(bh_dev *d)
{
    if (d->state == BH_READY)
        push_next(d);
}

static void send_pull(bh_dev *d)
{
    msgpack_packer pk;
    if (wire_pack_pull(packer(d, &pk), d->cursor, d->pull_max))
        return dev_fail(d, "cannot pack pull");
    d->state = BH_PULLING;
    d->pulls++;
    send_packed(d);
}

void bh_dev_pull(bh_dev *d)
{
    if (d->state != BH_READY)
        return;
    d->t_pull_start = bh_now();
    send_pull(d);
}

void bh_dev_close(bh_dev *d)
{
    if (d->conn) {
        d->conn->closing = true;
        if (d->conn->wsi)
            lws_callback_on_writable(d->conn->wsi);
    }
    d->state = BH_CLOSED;
}

void bh_dev_free(bh_dev *d) { bh_blobs_free(&d->backlog); }

static void on_welcome(bh_dev *d, mpr *r, uint32_t count)
{
    wire_welcome w;
    fs_error e = {0};
    if (d->state != BH_HELLO || wire_read_welcome(r, count, &w, &e))
        return dev_fail(d, "bad welcome: %s", e.msg);
    d->dict = w.dict < d->dict_want ? w.dict : d->dict_want;
    d->log_end = w.log_end;
    d->t_welcome = bh_now();
    if (d->first_dseq && w.server_dseq >= d->first_dseq) {
        size_t done = (size_t)(w.server_dseq - d->first_dseq + 1);
        d->acked = done < d->backlog.n ? done : d->backlog.n;
    }
    d->state = BH_READY;
    if (d->on_event)
        d->on_event(d, BH_EV_WELCOME);
    if (d->push_on_welcome && d->state == BH_READY)
        push_next(d);
}

static void on_push_result(bh_dev *d, mpr *r, uint32_t count)
{
    uint64_t batch;
    uint32_t n;
    fs_error e = {0};
    if (d->state != BH_PUSHING || !d->nfl || wire_read_push_result(r, count, &batch, &n, &e))
        return dev_fail(d, "bad push_result: %s", e.msg);
    /* results come in push order: this one answers the oldest push in flight */
    if (batch != d->fl_id[0] || n != d->fl_n[0])
        return dev_fail(d, "push_result for batch %" PRIu64 " with %u results", batch, n);
    for (uint32_t i = 0; i < n; i++) {
        wire_result res;
        if (wire_read_result(r, &res, &e))
            return dev_fail(d, "bad result: %s", e.msg);
        if (res.status == 0)
            d->accepted++;
        else if (res.status == 1)
            d->duplicates++;
        else {
            d->refused++;
            if (!d->first_refusal[0])
                snprintf(d->first_refusal, sizeof d->first_refusal, "dseq %" PRIu64 ": %s: %.*s",
                         res.dseq, fs_errname(res.code), (int)res.text_len, res.text);
        }
    }
    d->acked += n;
    d->inflight -= n;
    d->nfl--;
    memmove(d->fl_id, d->fl_id + 1, (size_t)d->nfl * sizeof d->fl_id[0]);
    memmove(d->fl_n, d->fl_n + 1, (size_t)d->nfl * sizeof d->fl_n[0]);
    if (d->on_event)
        d->on_event(d, BH_EV_BATCH);
    if (d->state == BH_PUSHING)
        push_next(d);
}

static void on_changes(bh_dev *d, mpr *r, uint32_t count)
{
    uint64_t next;
    bool more;
    uint32_t n;
    fs_error e = {0};
    if (d->state != BH_PULLING || wire_read_changes(r, count, &next, &more, &n, &e))
        return dev_fail(d, "bad changes: %s", e.msg);
    d->pulled += n;
    d->cursor = next;
    if (more)
        return send_pull(d);
    d->state = BH_READY;
    d->t_pulled = bh_now();
    if (d->on_event)
        d->on_event(d, BH_EV_PULLED);
}

static void dev_message(bh_dev *d, const uint8_t *frame, size_t len)
{
    const uint8_t *body;
    size_t blen;
    d->bytes_down += len;
    if (wire_frame_decode(d->net->codec, frame, len, WIRE_MAX_FRAME, &body, &blen))
        return dev_fail(d, "bad frame from the server");
    mpr r;
    mpr_init(&r, body, blen);
    uint32_t type, count;
    if (wire_read_type(&r, &type, &count))
        return dev_fail(d, "bad message from the server");
    switch (type) {
    case MSG_WELCOME: on_welcome(d, &r, count); break;
    case MSG_PUSH_RESULT: on_push_result(d, &r, count); break;
    case MSG_CHANGES: on_changes(d, &r, count); break;
    case MSG_ERROR: {
        wire_error we;
        fs_error e = {0};
        if (wire_read_error(&r, count, &we, &e))
            return dev_fail(d, "bad error message");
        if (!we.closes && d->on_soft_error && d->on_soft_error(d, &we))
            return;
        dev_fail(d, "server error %s: %.*s", wire_err_name(we.code), (int)we.text_len, we.text);
        break;
    }
    default:
        if (d->on_other)
            d->on_other(d, type, &r, count);
    }
}

static int net_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    bh_conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (!c)
        return 0;
    bh_dev *d = c->dev;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        conn_dead(c);
        if (d) {
            d->conn = NULL;
            dev_fail(d, "cannot connect: %s", in ? (const char *)in : "?");
        }
        lws_set_opaque_user_data(wsi, NULL);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->wsi = wsi;
        if (d)
            send_hello(d);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!d || c->closing)
            break;
        if (c->rx_len + len > WIRE_MAX_FRAME + 16) {
            dev_fail(d, "message too large");
            return -1;
        }
        if (c->rx_len + len > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len)
                cap *= 2;
            c->rx = bh_check(realloc(c->rx, cap));
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            size_t n = c->rx_len;
            c->rx_len = 0;
            dev_message(d, c->rx, n);
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        txq *f = c->q_head;
        if (!f) {
            if (c->closing) {
                lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
                return -1;
            }
            break;
        }
        int n = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_BINARY);
        c->q_head = f->next;
        if (!c->q_head)
            c->q_tail = NULL;
        free(f);
        if (n < 0) {
            if (d)
                dev_fail(d, "write failed");
            return -1;
        }
        if (c->q_head || c->closing)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        conn_dead(c);
        if (d) {
            d->conn = NULL;
            if (d->state != BH_CLOSED)
                dev_fail(d, "connection closed by the server");
        }
        lws_set_opaque_user_data(wsi, NULL);
        return 0;
    default:
        break;
    }
    (void)user;
    return 0;
}

static const struct lws_protocols net_protocols[] = {
    {WIRE_SUBPROTOCOL, net_callback, 0, 65536, 0, NULL, 65536},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void tick_cb(lws_sorted_usec_list_t *sul)
{
    bh_net *n = lws_container_of(sul, bh_net, tick);
    lws_sul_schedule(n->ctx, 0, &n->tick, tick_cb, 5 * 1000); /* wakes lws_service */
}

static void every_cb(lws_sorted_usec_list_t *sul)
{
    bh_net *n = lws_container_of(sul, bh_net, every_sul);
    n->every(n->every_ctx);
    lws_sul_schedule(n->ctx, 0, &n->every_sul, every_cb, n->every_us);
}

bh_net *bh_net_new(const wire_dicts *dicts, int max_conns)
{
    bh_net *n = bh_check(calloc(1, sizeof *n));
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = net_protocols;
    info.fd_limit_per_thread = (unsigned)max_conns + 64;
    info.timeout_secs = 60;
    n->ctx = lws_create_context(&info);
    if (!n->ctx || wire_codec_new(dicts, &n->codec)) {
        fprintf(stderr, "cannot create the client context\n");
        exit(1);
    }
    msgpack_sbuffer_init(&n->sb);
    lws_sul_schedule(n->ctx, 0, &n->tick, tick_cb, 5 * 1000);
    return n;
}

void bh_net_every(bh_net *n, int64_t period_us, void (*fn)(void *ctx), void *ctx)
{
    if (n->every)
        lws_sul_cancel(&n->every_sul);
    n->every = fn;
    if (!fn)
        return;
    n->every_ctx = ctx;
    n->every_us = period_us;
    lws_sul_schedule(n->ctx, 0, &n->every_sul, every_cb, period_us);
}

void bh_net_free(bh_net *n)
{
    if (!n)
        return;
    lws_sul_cancel(&n->tick);
    if (n->every)
        lws_sul_cancel(&n->every_sul);
    for (bh_conn *c = n->all; c; c = c->all_next) /* closing callbacks reach no device */
        c->dev = NULL;
    lws_context_destroy(n->ctx);
    for (bh_conn *c = n->all; c;) {
        bh_conn *next = c->all_next;
        conn_dead(c);
        free(c);
        c = next;
    }
    wire_codec_free(n->codec);
    msgpack_sbuffer_destroy(&n->sb);
    free(n);
}

int bh_net_run(bh_net *n, bool (*done)(void *ctx), void *ctx, double deadline_s)
{
    while (!done(ctx)) {
        if (deadline_s > 0 && bh_now() > deadline_s)
            return -1;
        if (lws_service(n->ctx, 0) < 0)
            return -1;
    }
    return 0;
}

void bh_dev_connect(bh_net *n, bh_dev *d, int port)
{
    bh_conn *c = bh_check(calloc(1, sizeof *c));
    c->net = n;
    c->all_next = n->all;
    n->all = c;
    c->dev = d;
    d->net = n;
    d->conn = c;
    d->state = BH_CONNECTING;
    d->nfl = 0; /* a new connection has nothing in flight */
    d->inflight = 0;
    d->t_connect = bh_now();
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = n->ctx;
    ci.address = "127.0.0.1";
    ci.port = port;
    ci.path = "/sync";
    ci.host = ci.address;
    ci.origin = ci.address;
    ci.protocol = WIRE_SUBPROTOCOL;
    ci.local_protocol_name = WIRE_SUBPROTOCOL;
    ci.opaque_user_data = c;
    struct lws *wsi = lws_client_connect_via_info(&ci);
    if (c->dead) /* CONNECTION_ERROR came during the call: d has failed */
        return;
    if (!wsi) {
        conn_dead(c);
        d->conn = NULL;
        dev_fail(d, "cannot start connecting");
        return;
    }
    c->wsi = wsi;
}

/*
 * fault_support.c — see fault_support.h.
 */
#include "fault_support.h"

#include "check.h"
#include "exit_check.h"
#include "schema.h"
#include "store.h"

#include <dirent.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ft_main_cases(int argc, char **argv, const char *prog, const ft_case *cases, size_t n)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const char *name = argc > 1 ? argv[argc - 1] : "";
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cases[i].name, name)) {
            cases[i].fn(argc, argv);
            printf("%s %s: ok\n", prog, name);
            return 0;
        }
    fprintf(stderr, "usage: %s --bin FIELDSYNCD CASE, CASE one of:", prog);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %s", cases[i].name);
    fprintf(stderr, "\n");
    return 2;
}

int64_t ft_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool ft_env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

long ft_env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? atol(v) : def;
}

void ft_hex_id(const char *id, char *hex)
{
    it_hex_id(id, hex);
}

int ft_srv_start(srv *s, const ft_opts *o)
{
    static const ft_opts none = {0};
    if (!o)
        o = &none;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", o->same_port ? s->port : 0);
    int out[2];
    CHECK_OK(pipe(out));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char log[256];
        snprintf(log, sizeof log, "%s/server.log", s->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(out[1], 1);
        if (fd >= 0)
            dup2(fd, 2);
        close(out[0]);
        for (int k = 3; k < 1024; k++) /* nothing of the test's: descriptor counts are exact */
            close(k);
        if (o->fault)
            setenv("FIELDSYNC_FAULT", o->fault, 1);
        else
            unsetenv("FIELDSYNC_FAULT");
        if (o->uid > 0 && (setgid((gid_t)o->uid) || setuid((uid_t)o->uid)))
            _exit(126);
        if (o->fsize_limit > 0) {
            struct rlimit rl = {(rlim_t)o->fsize_limit, RLIM_INFINITY};
            signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG instead */
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        const char *argv[40];
        int n = 0;
        const char *bin = getenv("FIELDSYNCD");
        argv[n++] = "fieldsyncd";
        argv[n++] = "--db";
        argv[n++] = s->db;
        argv[n++] = "--listen";
        argv[n++] = listen;
        argv[n++] = "--log-level";
        argv[n++] = "info";
        for (int i = 0; o->args && o->args[i] && n < 38; i++)
            argv[n++] = o->args[i];
        argv[n] = NULL;
        execv(bin && *bin ? bin : "fieldsyncd", (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    FILE *f = fdopen(out[0], "r");
    char line[256];
    int old_port = s->port;
    s->port = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "listening on ");
        if (p && (p = strrchr(p, ':'))) {
            s->port = atoi(p + 1);
            break;
        }
    }
    /* the read end stays open (leaked on purpose) so the daemon never writes into a closed
     * pipe; one descriptor per start */
    if (o->expect_fail) {
        if (s->port > 0) {
            fprintf(stderr, "fieldsyncd started although it should not have\n");
            abort();
        }
        int st;
        CHECK_INT(waitpid(pid, &st, 0), ==, pid);
        char log[256];
        snprintf(log, sizeof log, "%s/server.log", s->dir);
        xc_check("fieldsyncd", pid, st, log, false); /* a refusal still frees everything */
        s->pid = 0;
        s->port = old_port; /* a restart after this may want the old port again */
        fclose(f);
        return st;
    }
    if (s->port <= 0) {
        ft_dump_log(s);
        fprintf(stderr, "fieldsyncd did not start\n");
        abort();
    }
    snprintf(s->url, sizeof s->url, "ws://127.0.0.1:%d", s->port);
    return 0;
}

int ft_srv_wait(srv *s, int ms)
{
    int64_t end = ft_now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            char log[256];
            snprintf(log, sizeof log, "%s/server.log", s->dir);
            /* SIGKILL may be the test's point (FIELDSYNC_FAULT); any other death, or a
             * sanitizer report in the log, fails here */
            xc_check("fieldsyncd", s->pid, st, log, true);
            s->pid = 0;
            return st;
        }
        if (ft_now_ms() > end)
            return -1;
        usleep(5000);
    }
}

void ft_srv_stop(srv *s)
{
    if (s->pid <= 0)
        return;
    pid_t pid = s->pid;
    kill(pid, SIGTERM);
    int st = ft_srv_wait(s, 15000); /* aborts on a death by signal or a sanitizer report */
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        ft_dump_log(s);
        fprintf(stderr, "fieldsyncd (pid %d) did not stop cleanly (status %d; see %s/server.log)"
                        "\n", (int)pid, st == -1 ? -1 : WEXITSTATUS(st), s->dir);
        abort();
    }
}

void ft_dump_log(const srv *s)
{
    char path[256];
    snprintf(path, sizeof path, "%s/server.log", s->dir);
    xc_log_tail(path);
}

void ft_state_hash(const char *dbfile, bool authority, uint64_t out[2])
{
    schema *sc;
    fs_error e = {0};
    if (schema_load(schema_default_path(), &sc, &e)) {
        fprintf(stderr, "schema: %s\n", e.msg);
        abort();
    }
    store *st;
    if (store_open(dbfile, sc, authority ? STORE_AUTHORITY : STORE_REPLICA, &st, &e)) {
        fprintf(stderr, "%s: %s\n", dbfile, e.msg);
        abort();
    }
    CHECK_OK(store_state_hash(st, out));
    store_clock(st)->last = 0; /* do not save a clock into a file that is not ours */
    store_close(st);
    schema_free(sc);
}

void ft_check_same_state(const char *a, bool auth_a, const char *b, bool auth_b)
{
    uint64_t ha[2], hb[2];
    ft_state_hash(a, auth_a, ha);
    ft_state_hash(b, auth_b, hb);
    if (ha[0] != hb[0] || ha[1] != hb[1]) {
        fprintf(stderr, "state differs: %s %016llx%016llx vs %s %016llx%016llx\n", a,
                (unsigned long long)ha[0], (unsigned long long)ha[1], b,
                (unsigned long long)hb[0], (unsigned long long)hb[1]);
        abort();
    }
}

long ft_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    CHECK(d != NULL);
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

long ft_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    fclose(f);
    return kb;
}

/* ---- the raw-socket deployment -------------------------------------------------------- */

void ft_admin(tenv *t, ...)
{
    const char *a[32];
    int n = 0;
    va_list ap;
    va_start(ap, t);
    while (n < 31 && (a[n] = va_arg(ap, const char *)))
        n++;
    va_end(ap);
    a[n] = NULL;
    for (int i = n; i < 31; i++)
        a[i] = NULL;
    char out[4096];
    int rc = admin_run(t, out, sizeof out, NULL, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                       a[8], a[9], a[10], a[11], NULL);
    if (rc) {
        fprintf(stderr, "admin %s %s %s failed (%d): %s\n", a[0], a[1] ? a[1] : "",
                a[2] ? a[2] : "", rc, out);
        abort();
    }
}

void ft_world_init(ft_world *w, int argc, char **argv)
{
    memset(w, 0, sizeof *w);
    tenv_init(&w->t, argc, argv);
    tenv *t = &w->t;
    ft_admin(t, "township", "add", "T1", "一乡", NULL);
    ft_admin(t, "village", "add", "V1", "--township", "T1", "一村", NULL);
    ft_admin(t, "village", "add", "V2", "--township", "T1", "二村", NULL);
    ft_admin(t, "township", "add", "T2", "二乡", NULL);
    ft_admin(t, "village", "add", "W1", "--township", "T2", "西村", NULL);
    ft_admin(t, "user", "add", "ana", "--role", "visitor", "--villages", "V1", NULL);
    ft_admin(t, "user", "add", "bo", "--role", "visitor", "--villages", "V1", NULL);
    ft_admin(t, "user", "add", "sue", "--role", "supervisor", "--township", "T1", NULL);
    ft_admin(t, "user", "add", "val", "--role", "volunteer", "--villages", "V1", NULL);
    ft_admin(t, "user", "add", "oz", "--role", "visitor", "--villages", "W1", NULL);
    ft_admin(t, "user", "add", "tom", "--role", "supervisor", "--township", "T2", NULL);
    enrol(t, "ana", &w->ana);
    enrol(t, "bo", &w->bo);
    enrol(t, "sue", &w->sue);
    enrol(t, "val", &w->val);
    enrol(t, "oz", &w->oz);
    enrol(t, "tom", &w->tom);
}

void ft_world_done(ft_world *w)
{
    if (w->d.pid)
        CHECK_INT(daemon_stop(&w->d, SIGTERM), ==, 0);
    tenv_done(&w->t);
}

void ft_open(fsc *c, ft_world *w, const enrolled *dev)
{
    int rc = fsc_open(c, &w->t, w->d.port, dev, (uint32_t)w->t.s->version, 0);
    if (rc) {
        daemon_dump_log(&w->d);
        fprintf(stderr, "hello of %s refused: %s %s\n", dev->id, wire_err_name(rc), c->err_text);
        abort();
    }
}


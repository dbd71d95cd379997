/*
 * client_support.c — see client_support.h.
 */
#include "client_support.h"

#include "check.h"
#include "exit_check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

void it_mkdir(const char *name, char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/fs-%s-XXXXXX", name);
    CHECK(mkdtemp(dir));
}

void it_rmdir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

static char admin_out[65536];

const char *it_admin(srv *s, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' admin --db '%s' --json %s", env_or("FIELDSYNCD", "fieldsyncd"),
             s->db, args);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = fread(admin_out, 1, sizeof admin_out - 1, p);
    admin_out[n] = '\0';
    int st = pclose(p);
    if (st != 0)
        fprintf(stderr, "admin failed (%d): %s\n%s\n", st, cmd, admin_out);
    CHECK_INT(st, ==, 0);
    return admin_out;
}

void it_srv_init(srv *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->db, sizeof s->db, "%s/server.db", dir);
}

void it_srv_start(srv *s)
{
    it_srv_start_args(s, NULL);
}

void it_srv_start_args(srv *s, const char *const *args)
{
    const char *dir = s->dir;
    int out[2];
    CHECK_OK(pipe(out));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* a test that aborts on a failed CHECK must not leave its server running */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char log[256];
        snprintf(log, sizeof log, "%s/server.log", dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(out[1], 1);
        if (fd >= 0)
            dup2(fd, 2);
        close(out[0]);
        const char *argv[24] = {"fieldsyncd", "--db", s->db, "--listen", "127.0.0.1:0",
                                "--log-level", "warning"};
        for (int i = 0, n = 7; args && args[i] && n < 23; i++)
            argv[n++] = args[i];
        execv(env_or("FIELDSYNCD", "fieldsyncd"), (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    FILE *f = fdopen(out[0], "r");
    char line[256];
    s->port = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "listening on ");
        if (p && (p = strrchr(p, ':'))) {
            s->port = atoi(p + 1);
            break;
        }
    }
    /* keep the pipe's read end open so the server never writes into a closed pipe */
    CHECK_INT(s->port, >, 0);
    snprintf(s->url, sizeof s->url, "ws://127.0.0.1:%d", s->port);
}

/* The wait status of pid once it exited within ms, or -1 (still running). */
static int wait_exit(pid_t pid, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        usleep(10 * 1000);
    }
    return -1;
}

void it_child_dies_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); }

void it_srv_stop(srv *s)
{
    if (s->pid <= 0)
        return;
    char log[256];
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    pid_t pid = s->pid;
    kill(pid, SIGTERM);
    /* 15 s: the ASan build's leak check at exit takes seconds on a loaded machine */
    int st = wait_exit(pid, 15000);
    s->pid = 0;
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        xc_log_tail(log);
        fprintf(stderr, "fieldsyncd (pid %d) did not stop within 15 s of SIGTERM\n", (int)pid);
        abort();
    }
    int code = xc_check("fieldsyncd", pid, st, log, false);
    if (code != 0) {
        xc_log_tail(log);
        fprintf(stderr, "fieldsyncd (pid %d) exited with status %d after SIGTERM (0 expected; "
                        "see %s)\n", (int)pid, code, log);
        abort();
    }
}

void it_srv_kill(srv *s)
{
    if (s->pid <= 0)
        return;
    char log[256];
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    kill(s->pid, SIGKILL);
    int st = 0;
    waitpid(s->pid, &st, 0);
    /* killed on purpose: no leak check ran, but an earlier report in the log still counts */
    xc_check("fieldsyncd", s->pid, st, log, true);
    s->pid = 0;
}

void it_geo(srv *s)
{
    it_admin(s, "township add T1 红星镇");
    it_admin(s, "village add V1 --township T1 红星村");
    it_admin(s, "village add V2 --township T1 白云村");
}

static void json_field(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    CHECK(p);
    p += strlen(pat);
    while (*p == ' ')
        p++;
    CHECK(*p == '"');
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap)
        out[n++] = *p++;
    out[n] = '\0';
}

void it_world(srv *s, const char *name, const it_user *users, size_t n)
{
    char dir[64];
    it_mkdir(name, dir, sizeof dir);
    it_srv_init(s, dir);
    it_geo(s);
    for (size_t i = 0; i < n; i++)
        it_admin(s, "user add %s --role %s --villages %s", users[i].name, users[i].role,
                 users[i].village);
}

void it_hex_id(const char *id, char *hex)
{
    size_t k = 0;
    for (const char *p = id; *p; p++)
        if (*p != '-')
            hex[k++] = *p;
    hex[k] = '\0';
}

static int it_hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

void it_id_bytes(const char *text, unsigned char out[16])
{
    int k = 0;
    for (const char *p = text; *p && k < 32; p++) {
        if (*p == '-')
            continue;
        if (k % 2 == 0)
            out[k / 2] = (unsigned char)(it_hexval(*p) << 4);
        else
            out[k / 2] |= (unsigned char)it_hexval(*p);
        k++;
    }
    CHECK_INT(k, ==, 32);
}

void it_retarget_pending(const char *dbfile, const unsigned char from[16],
                         const unsigned char to[16])
{
    sqlite3 *db;
    CHECK_INT(sqlite3_open(dbfile, &db), ==, SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *q, *u;
    CHECK_INT(sqlite3_prepare_v2(db, "SELECT id, body FROM dev_outbox WHERE record = ?1 AND "
                                     "dseq IS NULL",
                                 -1, &q, NULL),
              ==, SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(db, "UPDATE dev_outbox SET record = ?1, body = ?2 WHERE id = ?3",
                                 -1, &u, NULL),
              ==, SQLITE_OK);
    sqlite3_bind_blob(q, 1, from, 16, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(q, 1);
        unsigned char body[4096];
        CHECK(len > 20 && len <= (int)sizeof body);
        memcpy(body, sqlite3_column_blob(q, 1), (size_t)len);
        CHECK_INT(body[2], ==, 0xc4);
        CHECK_INT(body[3], ==, 16);
        CHECK(!memcmp(body + 4, from, 16));
        memcpy(body + 4, to, 16);
        sqlite3_reset(u);
        sqlite3_bind_blob(u, 1, to, 16, SQLITE_STATIC);
        sqlite3_bind_blob(u, 2, body, len, SQLITE_STATIC);
        sqlite3_bind_int64(u, 3, sqlite3_column_int64(q, 0));
        CHECK_INT(sqlite3_step(u), ==, SQLITE_DONE);
        n++;
    }
    CHECK_INT(n, ==, 1);
    sqlite3_finalize(q);
    sqlite3_finalize(u);
    CHECK_INT(sqlite3_close(db), ==, SQLITE_OK);
}

void it_share_abbrev(const char *dbfile, const char *x, const char *y, unsigned char nb[16])
{
    unsigned char xb[16], yb[16];
    it_id_bytes(x, xb);
    it_id_bytes(y, yb);
    memcpy(nb, xb, 9);
    memcpy(nb + 9, yb + 9, 7);
    if (!memcmp(nb, xb, 16))
        nb[15] ^= 0x01;
    it_retarget_pending(dbfile, yb, nb);
}

void it_set_grade(fieldsync_db *db, const char *id, int64_t grade)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_OK(fieldsync_set_int(r, "grade", grade));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

void it_device_hex(fieldsync_db *db, char *hex)
{
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    it_hex_id(id.device, hex);
}

void it_child(fieldsync_db *db, const char *name, const char *village, char *id)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", name));
    CHECK_OK(fieldsync_set_text(r, "village", village));
    CHECK_OK(fieldsync_record_save(r));
    if (id)
        snprintf(id, 40, "%s", fieldsync_record_id(r));
    fieldsync_record_free(r);
}

void it_visit(fieldsync_db *db, const char *child, int64_t visited_at, const char *mood)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "visit", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", child));
    CHECK_OK(fieldsync_set_enum(r, "kind", "home_visit"));
    CHECK_OK(fieldsync_set_time(r, "visited_at", visited_at));
    if (mood)
        CHECK_OK(fieldsync_set_text(r, "mood", mood));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

void it_check_once(const char *server_db, const char *hex, long long total)
{
    const char *of = "FROM log WHERE device = X";
    CHECK_INT(it_sqlnum(server_db, "SELECT count(*) %s'%s'", of, hex), ==, total);
    CHECK_INT(it_sqlnum(server_db, "SELECT count(DISTINCT dseq) %s'%s'", of, hex), ==, total);
    CHECK_INT(it_sqlnum(server_db, "SELECT min(dseq) %s'%s'", of, hex), ==, 1);
    CHECK_INT(it_sqlnum(server_db, "SELECT max(dseq) %s'%s'", of, hex), ==, total);
}

void it_check_device_done(const char *replica, const char *hex, long long total)
{
    CHECK_INT(it_sqlnum(replica, "SELECT count(*) FROM dev_outbox"), ==, 0);
    CHECK_INT(it_sqlnum(replica, "SELECT count(*) FROM dev_refused"), ==, 0);
    CHECK_INT(it_sqlnum(replica, "SELECT count(*) FROM log WHERE device = X'%s'", hex), ==,
              total);
}

void it_dbpath(srv *s, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.db", s->dir, name);
}

fieldsync_db *it_device(srv *s, const char *user, const char *name)
{
    const char *j = it_admin(s, "device enrol %s", user);
    char dev[64], tok[160], path[256];
    json_field(j, "device", dev, sizeof dev);
    json_field(j, "token", tok, sizeof tok);
    it_dbpath(s, name, path, sizeof path);
    fieldsync_db *db;
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_OK(fieldsync_enrol(db, s->url, dev, tok));
    return db;
}

fieldsync_sync_result it_sync(fieldsync_db *db)
{
    fieldsync_sync_result r;
    int rc = fieldsync_sync(db, NULL, NULL, NULL, &r);
    if (rc)
        fprintf(stderr, "sync failed: %s (%s)\n", fieldsync_errmsg(db), r.message);
    CHECK_INT(rc, ==, FIELDSYNC_OK);
    return r;
}

int it_cli(const char *db, char *out, size_t cap, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' --db '%s' %s", env_or("FIELDSYNC_CLI", "fieldsync"), db, args);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = out ? fread(out, 1, cap - 1, p) : 0;
    if (out)
        out[n] = '\0';
    else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    }
    int st = pclose(p);
    /* its stderr is the test's (the report is above); sh -c reports a child's death by
     * signal N as exit status 128 + N */
    if (WIFEXITED(st) && WEXITSTATUS(st) > 128) {
        fprintf(stderr, "fieldsync CLI died of signal %d (SIGABRT in the ASan build: a "
                        "sanitizer report such as LeakSanitizer's, above on stderr): %s\n",
                WEXITSTATUS(st) - 128, cmd);
        abort();
    }
    return xc_check("fieldsync CLI", 0, st, NULL, false);
}

static sqlite3 *open_ro(const char *dbfile)
{
    sqlite3 *db;
    CHECK_INT(sqlite3_open_v2(dbfile, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

void it_sql1(const char *dbfile, char *out, size_t cap, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3 *db = open_ro(dbfile);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", sql, sqlite3_errmsg(db));
        abort();
    }
    out[0] = '\0';
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
}

long long it_sqlnum(const char *dbfile, const char *fmt, ...)
{
    char sql[2048], out[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    it_sql1(dbfile, out, sizeof out, "%s", sql);
    return atoll(out);
}

void it_field_state(const char *dbfile, const char *record, char *out, size_t cap)
{
    char hex[40];
    size_t k = 0;
    for (const char *p = record; *p && k < 32; p++)
        if (*p != '-')
            hex[k++] = *p;
    hex[k] = '\0';
    it_sql1(dbfile, out, cap,
            "SELECT group_concat(x, '|') FROM (SELECT field || ':' || hex(value) || ':' || "
            "version || ':' || whlc || ':' || hex(wdev) || ':' || wseq || ':' || author || ':' "
            "|| coalesce(hex(aux), '') AS x FROM fields WHERE record = X'%s' ORDER BY field)",
            hex);
}

const char *it_field(fieldsync_db *db, const char *record, const char *field)
{
    static char buf[4096];
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, record, &r));
    fieldsync_field f;
    CHECK_OK(fieldsync_get(r, field, &f));
    snprintf(buf, sizeof buf, "%s", f.text);
    fieldsync_record_free(r);
    return buf;
}

static int count_cb(void *ctx, fieldsync_record *rec)
{
    (void)rec;
    (*(int *)ctx)++;
    return 0;
}

int it_count(fieldsync_db *db, const char *type, const char *village, const char *parent)
{
    int n = 0;
    CHECK_OK(fieldsync_query(db, type, village, parent, count_cb, &n));
    return n;
}

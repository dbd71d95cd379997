/*
 * fault_store.c — the store's file system misbehaving under a real daemon and real devices.
 *
 *   diskfull  The server's store and a device's replica live on a 6 MiB tmpfs mounted in a
 *             private mount namespace of this test (the test runs as root in CI; when it
 *             cannot mount, it falls back to RLIMIT_FSIZE on the daemon and on itself). With
 *             the file system full: pushes are answered BUSY (closes false), nothing of them
 *             is stored, pulls keep working, the daemon stays up; a device's save fails with
 *             FIELDSYNC_ESTORE ("database or disk is full") and what it held is intact;
 *             space back, the same pushes and saves go through, and after a restart every
 *             acknowledged change is on the server exactly once.
 *   locked    Another process holds the store's write lock: pushes get BUSY (server.busy has
 *             the short case); at start the daemon waits the busy timeout then exits 3 with
 *             "database is locked"; a second daemon on one store exits 3; a device whose
 *             replica is locked by another process gets FIELDSYNC_ESTORE from a save.
 *   readonly  The store's file system remounted read-only under a running daemon: pushes
 *             BUSY, pulls fine, no crash; remounted read-write: pushes go through again. A
 *             daemon started on a read-only store exits 3 with a clear message.
 *   schema    The schema file missing, not YAML, or invalid (a duplicate field number):
 *             exit 1 and a "file:line: reason" message.
 *   restore   docs/operations.md §7: stop, restore a backup, start, while devices hold
 *             changes acknowledged after the backup. What must hold (and is checked): no
 *             crash; a device that pushed after the backup notices (the server's sequence
 *             for it is behind what it had acknowledged), puts its own lost changes back in
 *             its outbox from its replica's log and pushes them again, so the server gets
 *             them back; devices reset their pull cursor and converge with the server.
 */
#define _GNU_SOURCE
#include "check.h"
#include "fault_support.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a small file system ------------------------------------------------------------- */

typedef struct space {
    bool tmpfs;          /* a private tmpfs; else RLIMIT_FSIZE */
    char dir[100];       /* where the files go */
    char filler[200];
} space;

/* A 6 MiB tmpfs at base/small in a mount namespace of this process (gone when the test and
 * its children exit, even if it aborts). false when that is not possible here. */
static bool space_mount(space *sp, const char *base)
{
    snprintf(sp->dir, sizeof sp->dir, "%s/small", base);
    snprintf(sp->filler, sizeof sp->filler, "%s/filler", sp->dir);
    CHECK_OK(mkdir(sp->dir, 0777));
    if (ft_env_flag("FAULT_NO_MOUNT"))
        return false;
    if (unshare(CLONE_NEWNS) != 0)
        return false;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return false;
    if (mount("tmpfs", sp->dir, "tmpfs", 0, "size=6m,mode=0777") != 0)
        return false;
    sp->tmpfs = true;
    return true;
}

/* Fills the tmpfs to the last byte. */
static void space_fill_tmpfs(space *sp)
{
    int fd = open(sp->filler, O_WRONLY | O_CREAT | O_APPEND, 0644);
    CHECK(fd >= 0);
    static char block[16384];
    size_t sz = sizeof block;
    for (;;) {
        ssize_t w = write(fd, block, sz);
        if (w > 0)
            continue;
        CHECK(errno == ENOSPC);
        if (sz == 1)
            break;
        sz /= 2;
    }
    close(fd);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : (long)st.st_size;
}

/* Disk full for the daemon (pid) and this process: tmpfs filled, or file sizes capped at
 * what they are now. */
static void space_fill(space *sp, pid_t daemon, const char *const *files)
{
    if (sp->tmpfs) {
        space_fill_tmpfs(sp);
        return;
    }
    long max = 0;
    for (int i = 0; files[i]; i++)
        if (file_size(files[i]) > max)
            max = file_size(files[i]);
    struct rlimit rl = {(rlim_t)max, RLIM_INFINITY};
    if (daemon)
        CHECK_OK(prlimit(daemon, RLIMIT_FSIZE, &rl, NULL));
    signal(SIGXFSZ, SIG_IGN);
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &rl));
}

static void space_free(space *sp, pid_t daemon)
{
    if (sp->tmpfs) {
        CHECK_OK(unlink(sp->filler));
        return;
    }
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    if (daemon)
        CHECK_OK(prlimit(daemon, RLIMIT_FSIZE, &rl, NULL));
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &rl));
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* The daemon's log (its stderr) at path, up to cap - 1 bytes, into text; "" when there is
 * none. */
static void read_log(const char *path, char *text, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, cap - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
}

static long long dev_rows(srv *s, const char *hex)
{
    return it_sqlnum(s->db, "SELECT count(*) FROM log WHERE device = X'%s'", hex);
}

static const char *pad_text(void)
{
    static char t[601];
    if (!t[0]) {
        for (int i = 0; i < 200; i++)
            memcpy(t + 3 * i, "满", 3); /* 600 bytes of UTF-8 */
        t[600] = '\0';
    }
    return t;
}

/* A child whose name and school fill their 64-byte limits (20 three-byte characters). */
static void mk_big_child(change *c, const schema *s, const rid_t *id, uint64_t dseq)
{
    static char name[64];
    snprintf(name, sizeof name, "%.60s", pad_text());
    mk_child(c, s, id, name, "V1", dseq);
    ch_text(c, s, "school", name);
}

/* ---- disk full ------------------------------------------------------------------------ */

static void test_diskfull(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char base[64];
    it_mkdir("fault-diskfull", base, sizeof base);
    space sp;
    memset(&sp, 0, sizeof sp);
    bool mounted = space_mount(&sp, base);
    printf("disk full simulated with %s\n", mounted ? "a 6 MiB tmpfs" : "RLIMIT_FSIZE");
    srv s;
    it_srv_init(&s, sp.dir);
    it_geo(&s);
    it_admin(&s, "user add va --role visitor --villages V1");
    it_admin(&s, "user add vb --role visitor --villages V1");
    it_admin(&s, "user add vd --role visitor --villages V1");
    const char *j = it_admin(&s, "device enrol va");
    enrolled a_en, b_en;
    json_field(j, "device", a_en.id, sizeof a_en.id);
    json_field(j, "token", a_en.token, sizeof a_en.token);
    CHECK_OK(rid_from_text(a_en.id, &a_en.device));
    j = it_admin(&s, "device enrol vb");
    json_field(j, "device", b_en.id, sizeof b_en.id);
    json_field(j, "token", b_en.token, sizeof b_en.token);
    CHECK_OK(rid_from_text(b_en.id, &b_en.device));
    /* without the tmpfs: SIGXFSZ ignored from the start, the limit lowered later (prlimit) */
    ft_opts first = {.fsize_limit = mounted ? 0 : 1LL << 62};
    ft_srv_start(&s, &first);
    tenv t;
    memset(&t, 0, sizeof t);
    fs_error e = {0};
    CHECK_OK(schema_load(schema_default_path(), &t.s, &e));
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s", schema_default_path());
    *strrchr(sdir, '/') = '\0';
    CHECK_OK(wire_dicts_load(sdir, &t.dicts, &e));
    const schema *sc = t.s;
    char hex[40];
    ft_hex_id(a_en.id, hex);

    /* the device's replica on the same small file system */
    fieldsync_db *d = it_device(&s, "vd", "dev");
    char pd[256];
    it_dbpath(&s, "dev", pd, sizeof pd);

    /* 1. some work acknowledged */
    fsc a, b;
    CHECK_OK(fsc_open(&a, &t, s.port, &a_en, 1, 0));
    CHECK_OK(fsc_open(&b, &t, s.port, &b_en, 1, 0));
    enum { BATCH = 100, MAXB = 40 };
    change *ch = calloc(BATCH * MAXB, sizeof *ch);
    rid_t *ids = calloc(BATCH * MAXB, sizeof *ids);
    tres *res = calloc(BATCH, sizeof *res);
    uint64_t dseq = 0;
    for (int i = 0; i < BATCH * MAXB; i++) {
        new_id(&ids[i]);
        mk_big_child(&ch[i], sc, &ids[i], (uint64_t)i + 1);
    }
    CHECK_OK(fsc_push(&a, 1, ch, BATCH, res));
    for (int i = 0; i < BATCH; i++)
        CHECK_INT(res[i].status, ==, 0);
    dseq = BATCH;
    for (int i = 0; i < 5; i++)
        it_child(d, "设备上的", "V1", NULL);
    it_sync(d);

    /* 2. the disk fills up: pushes until one is BUSY */
    char wal[300], dwal[300];
    snprintf(wal, sizeof wal, "%s-wal", s.db);
    snprintf(dwal, sizeof dwal, "%s-wal", pd);
    const char *files[] = {s.db, wal, pd, dwal, NULL};
    space_fill(&sp, s.pid, files);
    int busy_at = -1;
    for (int k = 1; k < MAXB && busy_at < 0; k++) {
        int rc = fsc_push(&a, (uint64_t)k + 1, ch + k * BATCH, BATCH, res);
        if (rc == WERR_BUSY) {
            CHECK(!a.err_closes);
            printf("push %d (%d changes) answered BUSY: %s\n", k + 1, BATCH, a.err_text);
            busy_at = k;
            break;
        }
        CHECK_OK(rc);
        for (int i = 0; i < BATCH; i++)
            CHECK_INT(res[i].status, ==, 0); /* the file system still had room (WAL slack) */
        dseq += BATCH;
    }
    CHECK(busy_at > 0);
    /* nothing of the refused batch stored; the server still answers and serves reads */
    fsc_close(&a);
    CHECK_OK(fsc_open(&a, &t, s.port, &a_en, 1, 0));
    CHECK_INT(a.w.server_dseq, ==, dseq);
    CHECK_INT(dev_rows(&s, hex), ==, (long long)dseq);
    uint64_t cur = 0;
    CHECK_INT(fsc_pull_all(&b, &cur, NULL), ==, dseq + 5);
    char m[16384];
    CHECK_INT(http_get(s.port, "/healthz", NULL, m, sizeof m), ==, 200);
    CHECK_INT(http_get(s.port, "/metrics", NULL, m, sizeof m), ==, 200);
    CHECK(strstr(m, "fieldsync_errors_sent_total{code=\"BUSY\"}") != NULL);

    /* the device: saves fail clearly, nothing it held is lost */
    int saved = 0, rc = 0;
    for (int i = 0; i < 2000; i++) {
        fieldsync_record *r;
        CHECK_OK(fieldsync_record_new(d, "child", &r));
        CHECK_OK(fieldsync_set_text(r, "name", pad_text() + 540));
        CHECK_OK(fieldsync_set_text(r, "village", "V1"));
        CHECK_OK(fieldsync_set_text(r, "school", pad_text() + 540));
        rc = fieldsync_record_save(r);
        fieldsync_record_free(r);
        if (rc)
            break;
        saved++;
    }
    printf("device: %d saves went into free pages, then: %s (%s)\n", saved,
           fieldsync_strerror(rc), fieldsync_errmsg(d));
    CHECK_INT(rc, ==, FIELDSYNC_ESTORE);
    CHECK(strstr(fieldsync_errmsg(d), "full") || strstr(fieldsync_errmsg(d), "large") ||
          strstr(fieldsync_errmsg(d), "I/O"));
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(d, &id));
    CHECK_INT(id.pending, ==, saved);
    fieldsync_sync_result sr;
    rc = fieldsync_sync(d, NULL, NULL, NULL, &sr);
    printf("device sync with its disk full: %s (%s)\n", fieldsync_strerror(rc), sr.message);
    CHECK(rc == FIELDSYNC_OK || rc == FIELDSYNC_ESTORE || rc == FIELDSYNC_EBUSY);
    fieldsync_close(d);
    CHECK_OK(fieldsync_open(pd, NULL, &d)); /* opens on a full disk */
    CHECK_OK(fieldsync_identity_get(d, &id));
    CHECK_INT(id.pending + (long long)sr.accepted, >=, saved);
    CHECK_INT(it_count(d, "child", NULL, NULL), >=, 5 + saved);

    /* 3. a stop while full: the write-back state cannot be flushed; nothing is lost */
    fsc_close(&a);
    fsc_close(&b);
    kill(s.pid, SIGTERM);
    int st = ft_srv_wait(&s, 10000);
    printf("daemon stopped on a full disk: status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    CHECK(WIFEXITED(st));

    /* 4. space back: the refused batch and the device's sync go through */
    space_free(&sp, 0);
    ft_opts again = {.same_port = true, .fsize_limit = first.fsize_limit};
    ft_srv_start(&s, &again);
    CHECK_OK(fsc_open(&a, &t, s.port, &a_en, 1, 0));
    CHECK_INT(a.w.server_dseq, ==, dseq);
    CHECK_OK(fsc_push(&a, 1000, ch + busy_at * BATCH, BATCH, res));
    for (int i = 0; i < BATCH; i++)
        CHECK_INT(res[i].status, ==, 0);
    dseq += BATCH;
    it_child(d, "空间回来了", "V1", NULL);
    it_sync(d);
    CHECK_OK(fieldsync_identity_get(d, &id));
    CHECK_INT(id.pending, ==, 0);
    fsc_close(&a);
    fieldsync_close(d);
    ft_srv_stop(&s);
    /* every acknowledged change exactly once */
    CHECK_INT(dev_rows(&s, hex), ==, (long long)dseq);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(DISTINCT dseq) FROM log WHERE device = X'%s'", hex),
              ==, (long long)dseq);
    CHECK_INT(it_sqlnum(s.db, "SELECT max(dseq) FROM log WHERE device = X'%s'", hex), ==,
              (long long)dseq);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM records"), ==,
              (long long)dseq + 5 + saved + 1);
    ft_check_same_state(pd, false, s.db, true);
    free(ch);
    free(ids);
    free(res);
    schema_free(t.s);
    wire_dicts_free(t.dicts);
    if (sp.tmpfs)
        umount2(sp.dir, MNT_DETACH);
    it_rmdir(base);
}

/* ---- locked ------------------------------------------------------------------------------ */

static void test_locked(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}};
    it_world(&s, "fault-locked", users, 1);
    /* another process holds the write lock while the daemon starts */
    sqlite3 *lk;
    CHECK_OK(sqlite3_open(s.db, &lk));
    CHECK_OK(sqlite3_exec(lk, "PRAGMA journal_mode=WAL; BEGIN IMMEDIATE", NULL, NULL, NULL));
    int64_t t0 = ft_now_ms();
    ft_opts fail = {.expect_fail = true};
    int st = ft_srv_start(&s, &fail);
    CHECK(WIFEXITED(st));
    printf("daemon started on a locked store: exit %d after %.1f s\n", WEXITSTATUS(st),
           (double)(ft_now_ms() - t0) / 1000.0);
    CHECK_INT(WEXITSTATUS(st), ==, 3);
    char log[256], text[8192];
    snprintf(log, sizeof log, "%s/server.log", s.dir);
    read_log(log, text, sizeof text);
    CHECK(strstr(text, "locked") != NULL);
    CHECK_OK(sqlite3_exec(lk, "ROLLBACK", NULL, NULL, NULL));
    ft_srv_start(&s, NULL);
    /* a second daemon on the same store */
    srv s2 = s;
    s2.pid = 0;
    st = ft_srv_start(&s2, &fail);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    /* a device whose replica another process has locked */
    fieldsync_db *d = it_device(&s, "va", "dev");
    char pd[256];
    it_dbpath(&s, "dev", pd, sizeof pd);
    sqlite3 *dl;
    CHECK_OK(sqlite3_open(pd, &dl));
    CHECK_OK(sqlite3_exec(dl, "BEGIN IMMEDIATE", NULL, NULL, NULL));
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(d, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "锁"));
    CHECK_OK(fieldsync_set_text(r, "village", "V1"));
    int rc = fieldsync_record_save(r);
    printf("device save on a locked replica: %s (%s)\n", fieldsync_strerror(rc),
           fieldsync_errmsg(d));
    CHECK_INT(rc, ==, FIELDSYNC_ESTORE);
    CHECK(strstr(fieldsync_errmsg(d), "locked") != NULL);
    CHECK_OK(sqlite3_exec(dl, "ROLLBACK", NULL, NULL, NULL));
    sqlite3_close(dl);
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
    it_sync(d);
    /* the daemon's store locked while it runs: BUSY, then it goes on (server.busy too) */
    it_child(d, "锁二", "V1", NULL);
    CHECK_OK(sqlite3_exec(lk, "BEGIN IMMEDIATE", NULL, NULL, NULL));
    fieldsync_sync_result sr;
    rc = fieldsync_sync(d, NULL, NULL, NULL, &sr);
    printf("device sync while the server's store is locked: %s (%s)\n", fieldsync_strerror(rc),
           sr.message);
    CHECK_INT(rc, ==, FIELDSYNC_EBUSY);
    CHECK_INT(sr.pending, ==, 1);
    CHECK_OK(sqlite3_exec(lk, "ROLLBACK", NULL, NULL, NULL));
    sqlite3_close(lk);
    sr = it_sync(d);
    CHECK_INT(sr.accepted, ==, 1);
    fieldsync_close(d);
    ft_srv_stop(&s);
    it_rmdir(s.dir);
}

/* ---- read-only ----------------------------------------------------------------------------- */

static void test_readonly(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char base[64];
    it_mkdir("fault-readonly", base, sizeof base);
    CHECK_OK(chmod(base, 0755));
    /* 1. the store's file itself read-only (the directory writable): the daemon runs as an
     * ordinary user, since root writes read-only files anyway */
    srv s;
    it_srv_init(&s, base);
    char rodir[128];
    snprintf(rodir, sizeof rodir, "%s/ro", base);
    CHECK_OK(mkdir(rodir, 0777));
    CHECK_OK(chmod(rodir, 0777));
    snprintf(s.db, sizeof s.db, "%s/server.db", rodir);
    it_geo(&s);
    it_admin(&s, "user add va --role visitor --villages V1");
    char lock[200];
    snprintf(lock, sizeof lock, "%s.lock", s.db);
    int lfd = open(lock, O_CREAT | O_WRONLY, 0666);
    CHECK(lfd >= 0);
    close(lfd);
    CHECK_OK(chmod(lock, 0666));
    CHECK_OK(chmod(s.db, 0444));
    ft_opts ro = {.expect_fail = true, .uid = geteuid() == 0 ? 65534 : 0};
    int st = ft_srv_start(&s, &ro);
    char log[256], text[16384];
    snprintf(log, sizeof log, "%s/server.log", base);
    read_log(log, text, sizeof text);
    printf("daemon on a read-only store file: exit %d: %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           strstr(text, "error") ? strstr(text, "error") : text);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    CHECK(strstr(text, "readonly") || strstr(text, "read-only") || strstr(text, "Read-only"));
    CHECK_OK(chmod(s.db, 0644));
    unlink(log);

    /* 2. the whole file system read-only (a tmpfs remounted ro, as ext4 does after errors):
     * the daemon cannot even take its lock file and says so */
    space sp;
    memset(&sp, 0, sizeof sp);
    if (!space_mount(&sp, base)) {
        printf("readonly: cannot mount here: the read-only file system case is skipped\n");
        it_rmdir(base);
        return;
    }
    it_srv_init(&s, base);
    snprintf(s.db, sizeof s.db, "%s/server.db", sp.dir);
    it_geo(&s);
    it_admin(&s, "user add va --role visitor --villages V1");
    ft_srv_start(&s, NULL);
    fieldsync_db *a = it_device(&s, "va", "a"); /* its replica beside, writable */
    it_child(a, "只读前", "V1", NULL);
    it_sync(a);
    ft_srv_stop(&s);
    /* a remount read-only fails while files are open for writing (EBUSY), so it is done
     * with the daemon stopped; disk full (diskfull) is the running daemon's write failure */
    CHECK_OK(mount(NULL, sp.dir, NULL, MS_REMOUNT | MS_RDONLY, NULL));
    ft_opts fail = {.expect_fail = true};
    st = ft_srv_start(&s, &fail);
    read_log(log, text, sizeof text);
    const char *e = strstr(text, "error");
    printf("daemon on a read-only file system: exit %d: %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           e ? e : text);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    CHECK(strstr(text, "Read-only file system") != NULL);
    /* writable again: it starts, and the device syncs */
    CHECK_OK(mount(NULL, sp.dir, NULL, MS_REMOUNT, NULL));
    ft_opts again = {.same_port = true};
    ft_srv_start(&s, &again);
    it_child(a, "只读后", "V1", NULL);
    fieldsync_sync_result sr = it_sync(a);
    CHECK_INT(sr.accepted, ==, 1);
    fieldsync_close(a);
    ft_srv_stop(&s);
    umount2(sp.dir, MNT_DETACH);
    it_rmdir(base);
}

/* ---- the schema file -------------------------------------------------------------------- */

static void test_schema(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char dir[64];
    it_mkdir("fault-schema", dir, sizeof dir);
    srv s;
    it_srv_init(&s, dir);
    /* a copy of the shipped schema with one defect each */
    FILE *f = fopen(schema_default_path(), "rb");
    CHECK(f != NULL);
    static char text[1 << 17];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    struct {
        const char *name, *what;
        char body[1 << 17];
        const char *want; /* in the message */
    } *cases = calloc(3, sizeof *cases);
    cases[0].name = "missing.yaml";
    cases[0].what = "missing";
    cases[0].want = "missing.yaml:0: cannot open";
    cases[1].name = "notyaml.yaml";
    cases[1].what = "not YAML";
    snprintf(cases[1].body, sizeof cases[1].body, "schema: fieldsync\nversion: [1\n  - {x: ");
    cases[1].want = "notyaml.yaml:";
    cases[2].name = "dupnum.yaml";
    cases[2].what = "a duplicate field number";
    char *p = strstr(text, "        num: 2\n");
    CHECK(p != NULL);
    snprintf(cases[2].body, sizeof cases[2].body, "%.*s        num: 1\n%s", (int)(p - text), text,
             p + strlen("        num: 2\n"));
    cases[2].want = "dupnum.yaml:";
    for (int i = 0; i < 3; i++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        if (i > 0) {
            f = fopen(path, "wb");
            fputs(cases[i].body, f);
            fclose(f);
        }
        const char *args[] = {"--schema", path, NULL};
        ft_opts o = {.args = args, .expect_fail = true};
        char log[256];
        snprintf(log, sizeof log, "%s/server.log", dir);
        unlink(log);
        int st = ft_srv_start(&s, &o);
        static char out[8192];
        read_log(log, out, sizeof out);
        printf("schema %s: exit %d: %s", cases[i].what, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
               out);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        CHECK(strstr(out, cases[i].want) != NULL);
        /* file:line — a number after the file name */
        const char *q = strstr(out, cases[i].name);
        CHECK(q && q[strlen(cases[i].name)] == ':' && q[strlen(cases[i].name) + 1] >= '0' &&
              q[strlen(cases[i].name) + 1] <= '9');
    }
    free(cases);
    it_rmdir(dir);
}

/* ---- restore ------------------------------------------------------------------------------ */

static void test_restore(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    srv s;
    static const it_user users[] = {
        {"va", "visitor", "V1"}, {"vb", "visitor", "V1"}, {"vc", "visitor", "V1"}};
    it_world(&s, "fault-restore", users, 3);
    ft_srv_start(&s, NULL);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *c = it_device(&s, "vc", "c");
    char pa[256], pb[256], pc[256];
    it_dbpath(&s, "a", pa, sizeof pa);
    it_dbpath(&s, "b", pb, sizeof pb);
    it_dbpath(&s, "c", pc, sizeof pc);
    char k[8][40];
    it_child(a, "备份前一", "V1", k[0]);
    it_child(a, "备份前二", "V1", k[1]);
    it_sync(a);
    it_sync(b);
    it_sync(c);
    char bak[200];
    snprintf(bak, sizeof bak, "%s/backup.db", s.dir);
    it_admin(&s, "backup %s", bak);
    /* after the backup: A's changes acknowledged, B pulls them; C is away */
    it_child(a, "备份后一", "V1", k[2]);
    it_child(a, "备份后二", "V1", k[3]);
    it_sync(a);
    it_sync(b);
    fieldsync_identity ia, ib;
    CHECK_OK(fieldsync_identity_get(a, &ia));
    CHECK_OK(fieldsync_identity_get(b, &ib));
    CHECK_INT(ia.acked_dseq, ==, 4);
    CHECK_INT(ib.cursor, ==, 4);
    /* the disk is lost: stop, restore, start (docs/operations.md §7) */
    ft_srv_stop(&s);
    it_admin(&s, "restore %s", bak);
    ft_opts again = {.same_port = true};
    ft_srv_start(&s, &again);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM log"), ==, 2);
    /* C comes back first, with a new change: the server log moves on from 2 */
    it_child(c, "恢复后丙", "V1", k[4]);
    it_sync(c);
    /* A: its sequence on the server is behind what it had acknowledged */
    it_child(a, "恢复后一", "V1", k[5]);
    fieldsync_sync_result r;
    int rc = fieldsync_sync(a, NULL, NULL, NULL, &r);
    printf("A after the restore: %s: sent %llu, accepted %llu (%s)\n", fieldsync_strerror(rc),
           (unsigned long long)r.sent, (unsigned long long)r.accepted, r.message);
    CHECK_OK(rc);
    CHECK_INT(r.accepted, ==, 3); /* its two lost changes again, and the new one */
    CHECK_INT(r.pending, ==, 0);
    /* B: its cursor (4) is past what the server had right after the restore, and C's and A's
     * new changes took other sequence numbers: it must pull again from the start */
    r = it_sync(b);
    printf("B after the restore: received %llu, cursor %llu\n", (unsigned long long)r.received,
           (unsigned long long)r.cursor);
    it_sync(c);
    it_sync(a);
    /* everyone has everything */
    for (int i = 0; i < 6; i++) {
        CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM records WHERE hex(id) = upper(replace('%s', "
                                  "'-', ''))",
                            k[i]),
                  ==, 1);
    }
    ft_srv_stop(&s);
    ft_check_same_state(pa, false, s.db, true);
    ft_check_same_state(pb, false, s.db, true);
    ft_check_same_state(pc, false, s.db, true);
    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(c);
    it_rmdir(s.dir);
}

int main(int argc, char **argv)
{
    static const ft_case cases[] = {{"diskfull", test_diskfull}, {"locked", test_locked},
                                    {"readonly", test_readonly}, {"schema", test_schema},
                                    {"restore", test_restore}};
    return ft_main_cases(argc, argv, "fault_store", cases, sizeof cases / sizeof cases[0]);
}

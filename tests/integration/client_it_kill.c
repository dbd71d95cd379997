/*
 * client_it_kill.c — kill -9 of the device process during a sync, then restart and sync:
 * nothing lost, nothing doubled. The device is the real command-line program (`fieldsync
 * sync`), started as a process and killed by PID while its pushes are being committed on the
 * server (small batches make the sync long enough to be hit in the middle), three times at
 * different points. Then a second device is killed while pulling. Checked afterwards:
 *   - the server holds each of the device's changes exactly once (one log row per dseq, one
 *     per record, dseqs 1..N without a hole) and the device's outbox is empty;
 *   - the device's confirmed log has each of its own changes once;
 *   - the pulling device ends with exactly the server's records and cursor at the log end.
 */
#include "check.h"
#include "client_support.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_VISITS 2000

static pid_t spawn_sync(const char *db)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        it_child_dies_with_parent();
        int null = open("/dev/null", 1);
        dup2(null, 1);
        dup2(null, 2);
        const char *cli = getenv("FIELDSYNC_CLI");
        execl(cli ? cli : "fieldsync", "fieldsync", "--db", db, "sync", "--first-batch", "5",
              "--max-batch", "10", (char *)NULL);
        _exit(127);
    }
    return pid;
}

int main(void)
{
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}, {"vb", "visitor", "V1"}};
    it_world(&s, "it-kill", users, 2);
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    char dev[40];
    it_device_hex(a, dev);

    char child[40];
    it_child(a, "黄小兰", "V1", child);
    for (int i = 0; i < N_VISITS; i++)
        it_visit(a, child, 1725235200 + i, "情绪稳定");
    fieldsync_close(a);
    char pa[256];
    it_dbpath(&s, "a", pa, sizeof pa);
    const long long total = N_VISITS + 1;

    /* three kills at growing depths into the push */
    const long long at[] = {100, 700, 1400};
    for (int k = 0; k < 3; k++) {
        pid_t pid = spawn_sync(pa);
        long long n = 0;
        for (int i = 0; i < 20000; i++) {
            n = it_sqlnum(s.db, "SELECT count(*) FROM log WHERE device = X'%s'", dev);
            if (n >= at[k])
                break;
            usleep(1000);
        }
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st)); /* it was killed, not finished */
        n = it_sqlnum(s.db, "SELECT count(*) FROM log WHERE device = X'%s'", dev);
        printf("kill %d: server had %lld of %lld changes\n", k + 1, n, total);
        CHECK_INT(n, <, total);
    }
    /* restart and finish */
    char out[4096];
    int rc = it_cli(pa, out, sizeof out, "--json sync");
    if (rc)
        fprintf(stderr, "%s\n", out);
    CHECK_INT(rc, ==, 0);
    CHECK(strstr(out, "\"pending\": 0"));
    CHECK(strstr(out, "\"refused\": 0"));
    it_check_once(s.db, dev, total);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(DISTINCT record) FROM log WHERE device = X'%s'", dev),
              ==, total);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM refused"), ==, 0);
    it_check_device_done(pa, dev, total);
    CHECK_INT(it_sqlnum(pa, "SELECT count(*) FROM records"), ==, total);

    /* B pulls, killed twice in the middle, then completes */
    fieldsync_close(b);
    char pb[256];
    it_dbpath(&s, "b", pb, sizeof pb);
    for (int k = 0; k < 2; k++) {
        pid_t pid = spawn_sync(pb);
        for (int i = 0; i < 5000; i++) {
            if (it_sqlnum(pb, "SELECT count(*) FROM log") >= 300 * (k + 1))
                break;
            usleep(500);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        printf("pull kill %d: device had %lld of %lld\n", k + 1,
               it_sqlnum(pb, "SELECT count(*) FROM log"), total);
    }
    CHECK_INT(it_cli(pb, out, sizeof out, "--json sync"), ==, 0);
    long long log_end = it_sqlnum(s.db, "SELECT max(seq) FROM log");
    CHECK_INT(it_sqlnum(pb, "SELECT count(*) FROM log"), ==, total);
    CHECK_INT(it_sqlnum(pb, "SELECT count(*) FROM records"), ==, total);
    CHECK_INT(it_sqlnum(pb, "SELECT value FROM dev_identity WHERE key = 'cursor'"), ==, log_end);
    static char sa[4096], sb[4096];
    it_field_state(pa, child, sa, sizeof sa);
    it_field_state(pb, child, sb, sizeof sb);
    CHECK_STR(sa, sb);
    it_srv_stop(&s);
    it_rmdir(s.dir);
    printf("client_it_kill: ok\n");
    return 0;
}

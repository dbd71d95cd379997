/*
 * fault_group.c — group commit under fault injection: several devices push at once, their
 * pushes share one store transaction (handle_push.c: one work slice, one COMMIT), and that
 * group fails. A real fieldsyncd, raw WebSocket sessions (server_client.c, rawws.c), the
 * store a real SQLite file read by the test.
 *
 * Four devices (ana, bo, val in V1; oz in W1) push in rounds: each round every device sends
 * one push (its next K changes, dseqs consecutive) on its own session, all four sent back to
 * back so that they are parked in the same pass of the daemon's loop and run in one slice;
 * then every answer is read. The fault (server/fault.c) fires at the first group holding at
 * least two pushes, and says so in the daemon's log with the group's size: that line is the
 * proof that several pushes did share the group (a daemon without group commit never fires
 * it and the test fails after 200 rounds).
 *
 *   kill        group_commit_kill: kill -9 as the group's COMMIT is sent. Checked on the
 *               store file after the death: every acknowledged push is stored, whole; every
 *               push is stored whole or not at all; at least the group's pushes are not
 *               stored (nothing of a group is durable before its COMMIT) and none of them
 *               was acknowledged. Restarted without the fault, each device reconnects
 *               (welcome's server_dseq is what is stored) and resends every unacknowledged
 *               push as it was: each change is accepted if it was not stored, a duplicate if
 *               it was; then every change of every device is on the server exactly once.
 *   commitfail  group_commit_fail: the group's COMMIT fails (rolled back) under a running
 *               daemon: exactly the group's pushes get BUSY, a retryable error that leaves
 *               the session open, never a push_result; nothing of them is stored; the
 *               others of the round are acknowledged; the same sessions resend and every
 *               change is accepted once.
 *   diskfull    group_disk_full: the store cannot grow from the second push of a group on
 *               (SQLITE_FULL inside the open group). Each push of the round is acknowledged
 *               and stored whole, or answered BUSY (session open) with nothing stored, and
 *               at least one is BUSY; the daemon stays up; a session that was not in the
 *               group (sue, a supervisor) pushes, pulls and pings once space is back; the
 *               BUSY pushes, resent, are accepted once; what was stored before the group is
 *               unchanged, byte for byte, and the store passes PRAGMA integrity_check.
 *
 * Every case ends with the same audit: per device, one log row per dseq from 1 to the last,
 * nothing refused, and sue's pull from 0 returns every V1 change.
 */
#include "check.h"
#include "fault_support.h"
#include "rawws.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_DEV 4
#define MAX_ROUNDS 200

enum { P_NONE, P_ACKED, P_BUSY, P_LOST }; /* what a device heard about one push */

typedef struct pushed {
    msgpack_sbuffer body; /* the push as sent: resent byte for byte */
    uint64_t first;       /* its first dseq */
    int state;
} pushed;

typedef struct device {
    const enrolled *e;
    const char *village;
    fsc c;
    bool up;              /* c is open */
    pushed p[MAX_ROUNDS];
    char hex[40];
} device;

typedef struct group_test {
    ft_world w;
    device d[N_DEV];
    int rounds;           /* rounds sent */
    int k;                /* changes per push */
    size_t name_bytes;    /* each child's name is padded up to this many bytes */
    long long warm_seq;   /* the last log row of the warm-up */
    char warm[128];       /* digest of the log up to it (log_digest) */
} group_test;

static void gt_init(group_test *g, int argc, char **argv, int k, size_t name_bytes)
{
    memset(g, 0, sizeof *g);
    ft_world_init(&g->w, argc, argv);
    const enrolled *who[N_DEV] = {&g->w.ana, &g->w.bo, &g->w.val, &g->w.oz};
    for (int i = 0; i < N_DEV; i++) {
        g->d[i].e = who[i];
        g->d[i].village = i == 3 ? "W1" : "V1";
        ft_hex_id(who[i]->id, g->d[i].hex);
    }
    g->k = k;
    g->name_bytes = name_bytes;
}

/* Starts the daemon with FIELDSYNC_FAULT=fault (NULL: none) and opens every session. */
static void gt_start(group_test *g, const char *fault)
{
    if (fault)
        setenv("FIELDSYNC_FAULT", fault, 1);
    else
        unsetenv("FIELDSYNC_FAULT");
    daemon_start(&g->w.t, &g->w.d, NULL);
    unsetenv("FIELDSYNC_FAULT");
    for (int i = 0; i < N_DEV; i++) {
        ft_open(&g->d[i].c, &g->w, g->d[i].e);
        g->d[i].up = true;
    }
}

static void gt_close_all(group_test *g)
{
    for (int i = 0; i < N_DEV; i++)
        if (g->d[i].up) {
            fsc_close(&g->d[i].c);
            g->d[i].up = false;
        }
}

/* Builds round r's push of device i: k children, dseqs r*k+1 .. r*k+k. */
static void build_push(group_test *g, int i, int r)
{
    pushed *p = &g->d[i].p[r];
    msgpack_sbuffer_init(&p->body);
    p->first = (uint64_t)r * (uint64_t)g->k + 1;
    change *ch = calloc((size_t)g->k, sizeof *ch);
    char(*names)[256] = calloc((size_t)g->k, sizeof *names);
    CHECK(ch && names);
    for (int j = 0; j < g->k; j++) {
        int n = snprintf(names[j], sizeof names[j], "组%d轮%d号%d", i, r, j);
        while ((size_t)n + 3 <= g->name_bytes && (size_t)n + 3 < sizeof names[j])
            n += snprintf(names[j] + n, sizeof names[j] - (size_t)n, "长");
        rid_t id;
        new_id(&id);
        mk_child(&ch[j], g->w.t.s, &id, names[j], g->d[i].village, p->first + (uint64_t)j);
    }
    push_body(&p->body, (uint64_t)r + 1, ch, (size_t)g->k);
    free(names);
    free(ch);
}

/* Reads the answer to push r of device i: a push_result (every change accepted, or a
 * duplicate when dup_ok), BUSY (closes false), or nothing (the daemon is gone). */
static int read_answer(group_test *g, int i, int r, bool dup_ok)
{
    device *d = &g->d[i];
    if (fsc_recv(&d->c, 10000)) {
        fsc_close(&d->c);
        d->up = false;
        return P_LOST;
    }
    if (d->c.m.type == MSG_ERROR) {
        if (d->c.err_code != WERR_BUSY || d->c.err_closes) {
            fprintf(stderr, "%s round %d: error %s (%s), closes %d: want BUSY, not closing\n",
                    d->e->id, r, wire_err_name(d->c.err_code), d->c.err_text, d->c.err_closes);
            abort();
        }
        return P_BUSY;
    }
    tres *res = calloc((size_t)g->k, sizeof *res);
    rawws_read_push_result(&d->c, res, (uint32_t)g->k);
    for (int j = 0; j < g->k; j++) {
        CHECK_INT(res[j].dseq, ==, d->p[r].first + (uint64_t)j);
        if (dup_ok && res[j].status == 1)
            CHECK_RES(res[j], 1, 0);
        else
            CHECK_RES(res[j], 0, 0);
    }
    free(res);
    return P_ACKED;
}

/* One round: every device that is up sends its next push at once, then every answer is
 * read. Returns how many answers were not a push_result. */
static int gt_round(group_test *g)
{
    int r = g->rounds++;
    CHECK_INT(r, <, MAX_ROUNDS);
    for (int i = 0; i < N_DEV; i++)
        build_push(g, i, r);
    for (int i = 0; i < N_DEV; i++)
        fsc_send(&g->d[i].c, g->d[i].p[r].body.data, g->d[i].p[r].body.size);
    int bad = 0;
    for (int i = 0; i < N_DEV; i++) {
        g->d[i].p[r].state = read_answer(g, i, r, false);
        bad += g->d[i].p[r].state != P_ACKED;
    }
    return bad;
}

static int check_stored(group_test *g, int r_last);

/* Rounds whose pushes go one at a time (each answered before the next is sent: groups of
 * one, which no group point fires at): data stored before the group that fails. Returns
 * the last log seq they stored. */
static long long gt_warmup(group_test *g, int rounds)
{
    for (int n = 0; n < rounds; n++) {
        int r = g->rounds++;
        for (int i = 0; i < N_DEV; i++) {
            build_push(g, i, r);
            fsc_send(&g->d[i].c, g->d[i].p[r].body.data, g->d[i].p[r].body.size);
            g->d[i].p[r].state = read_answer(g, i, r, false);
            if (g->d[i].p[r].state == P_ACKED)
                continue;
            /* the fault fired at a group although each push was answered before the next
             * was sent: a COMMIT covered pushes already answered */
            fprintf(stderr, "%s: warm-up push %d not acknowledged (%s)\n", g->d[i].e->id, r,
                    g->d[i].p[r].state == P_BUSY ? "BUSY" : "no answer");
            if (g->d[i].p[r].state == P_LOST)
                daemon_stop(&g->w.d, SIGKILL);
            check_stored(g, r); /* an acknowledged push that is not stored is named here */
            abort();
        }
    }
    return it_sqlnum(g->w.t.db, "SELECT max(seq) FROM log");
}

/* A digest of the log rows up to seq (their number, bytes, devices and clocks) into out. */
static void log_digest(group_test *g, long long seq, char *out, size_t cap)
{
    it_sql1(g->w.t.db, out, cap,
            "SELECT count(*) || ':' || total(length(body)) || ':' || total(hlc %% 1000003) || "
            "':' || total(dseq * unicode(hex(device))) FROM log WHERE seq <= %lld", seq);
}

/* Log rows of device i with dseqs of push r (0 .. k). */
static long long stored(group_test *g, int i, int r)
{
    const pushed *p = &g->d[i].p[r];
    return it_sqlnum(g->w.t.db,
                     "SELECT count(*) FROM log WHERE device = X'%s' AND dseq BETWEEN %llu AND %llu",
                     g->d[i].hex, (unsigned long long)p->first,
                     (unsigned long long)(p->first + (uint64_t)g->k - 1));
}

/* The first line of the daemon's log containing what, into line; false if none. */
static bool log_line(const group_test *g, const char *what, char *line, size_t cap)
{
    FILE *f = fopen(g->w.d.log, "r");
    CHECK(f != NULL);
    bool found = false;
    while (!found && fgets(line, (int)cap, f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

/* The number after `num` in the daemon's log line that contains what (the fault's line:
 * "... group of N pushes", "... at push N of a group"). */
static int fault_log_number(const group_test *g, const char *what, const char *num)
{
    char line[512];
    if (!log_line(g, what, line, sizeof line)) {
        daemon_dump_log(&g->w.d);
        fprintf(stderr, "the daemon's log has no \"%s\" line\n", what);
        abort();
    }
    const char *p = strstr(line, num);
    int n = p ? atoi(p + strlen(num)) : 0;
    printf("fault: %s", line);
    return n;
}

/* Every push is stored whole or not at all, and every acknowledged one is stored. Returns
 * how many pushes of round r are not stored. */
static int check_stored(group_test *g, int r_last)
{
    int missing = 0;
    for (int r = 0; r <= r_last; r++)
        for (int i = 0; i < N_DEV; i++) {
            long long n = stored(g, i, r);
            if ((n != 0 && n != g->k) || (g->d[i].p[r].state == P_ACKED && n != g->k)) {
                fprintf(stderr, "%s push %d (%s): %lld of its %d changes stored\n",
                        g->d[i].e->id, r, g->d[i].p[r].state == P_ACKED ? "acknowledged"
                                                                         : "not acknowledged",
                        n, g->k);
                abort();
            }
            if (r == r_last)
                missing += n == 0;
        }
    return missing;
}

/* Resends (on open sessions) every push that was not acknowledged, in order; each change
 * is accepted, or a duplicate when dup_ok (the push was stored but its answer lost). */
static void resend_unacked(group_test *g, bool dup_ok)
{
    for (int i = 0; i < N_DEV; i++)
        for (int r = 0; r < g->rounds; r++) {
            pushed *p = &g->d[i].p[r];
            if (p->state == P_ACKED)
                continue;
            bool was_stored = stored(g, i, r) == g->k;
            CHECK(dup_ok || !was_stored);
            fsc_send(&g->d[i].c, p->body.data, p->body.size);
            CHECK_INT(read_answer(g, i, r, was_stored), ==, P_ACKED);
            p->state = P_ACKED;
        }
}

/* Exactly once: per device one row per dseq 1 .. rounds*k, nothing refused, no other log
 * row than theirs and `others`; sue (T1) pulls every V1 change but her own. */
static void audit(group_test *g, long long others)
{
    long long total = (long long)g->rounds * g->k;
    for (int i = 0; i < N_DEV; i++) {
        const char *h = g->d[i].hex;
        CHECK_INT(it_sqlnum(g->w.t.db, "SELECT count(*) FROM log WHERE device = X'%s'", h), ==,
                  total);
        CHECK_INT(it_sqlnum(g->w.t.db, "SELECT count(DISTINCT dseq) FROM log WHERE device = "
                                       "X'%s'", h), ==, total);
        CHECK_INT(it_sqlnum(g->w.t.db, "SELECT max(dseq) FROM log WHERE device = X'%s'", h), ==,
                  total);
    }
    CHECK_INT(it_sqlnum(g->w.t.db, "SELECT count(*) FROM refused"), ==, 0);
    CHECK_INT(it_sqlnum(g->w.t.db, "SELECT count(*) FROM log"), ==, N_DEV * total + others);
    CHECK_INT(it_sqlnum(g->w.t.db, "SELECT count(*) FROM records"), ==, N_DEV * total + others);
    fsc sue;
    ft_open(&sue, &g->w, &g->w.sue);
    uint64_t cursor = 0;
    CHECK_INT(fsc_pull_all(&sue, &cursor, NULL), ==, (size_t)(3 * total));
    fsc_close(&sue);
}

static void gt_done(group_test *g)
{
    gt_close_all(g);
    for (int i = 0; i < N_DEV; i++)
        for (int r = 0; r < g->rounds; r++)
            msgpack_sbuffer_destroy(&g->d[i].p[r].body);
    ft_world_done(&g->w);
}

/* Rounds until one has an answer that is not a push_result, or the daemon's log has the
 * fault's line (what): the fault fired in that round, which is returned. */
static int rounds_until_fault(group_test *g, const char *what)
{
    char line[512];
    while (g->rounds < MAX_ROUNDS)
        if (gt_round(g) || log_line(g, what, line, sizeof line))
            return g->rounds - 1;
    daemon_dump_log(&g->w.d);
    fprintf(stderr, "%d rounds of %d simultaneous pushes and no group of two: are the "
                    "pushes of one slice still committed together?\n", MAX_ROUNDS, N_DEV);
    abort();
}

/* Starts the daemon with fault, stores the warm-up (digest kept), then runs rounds until
 * the fault's log line (what) appears; returns that round, and in *n the number after num
 * in the line. */
static int gt_run_to_fault(group_test *g, const char *fault, const char *what, const char *num,
                           int *n)
{
    gt_start(g, fault);
    g->warm_seq = gt_warmup(g, 2);
    log_digest(g, g->warm_seq, g->warm, sizeof g->warm);
    int r = rounds_until_fault(g, what);
    *n = fault_log_number(g, what, num);
    return r;
}

/* Pushes of round r answered BUSY; every other answer of the round was a push_result. */
static int round_busy(const group_test *g, int r)
{
    int busy = 0;
    for (int i = 0; i < N_DEV; i++) {
        CHECK(g->d[i].p[r].state == P_ACKED || g->d[i].p[r].state == P_BUSY);
        busy += g->d[i].p[r].state == P_BUSY;
    }
    return busy;
}

/* The recovery every case ends with: the devices resend what was not acknowledged (dup_ok:
 * some of it may be stored), one more round goes through, the audit (others: log rows of
 * other devices), and the warm-up's rows are as they were. */
static void gt_recover(group_test *g, bool dup_ok, long long others)
{
    resend_unacked(g, dup_ok);
    CHECK_INT(gt_round(g), ==, 0);
    audit(g, others);
    char now[128];
    log_digest(g, g->warm_seq, now, sizeof now);
    CHECK_STR(now, g->warm);
}

/* ---- kill -9 at the group's COMMIT ---------------------------------------------------- */

static void test_kill(int argc, char **argv)
{
    group_test g;
    gt_init(&g, argc, argv, 3, 0);
    int size;
    int r = gt_run_to_fault(&g, "group_commit_kill:2", "kill -9 at the COMMIT of a group",
                            "group of ", &size);
    CHECK_INT(size, >=, 2);
    /* the daemon killed itself: reap it (SIGKILL is the only death accepted) */
    CHECK_INT(daemon_stop(&g.w.d, SIGKILL), ==, 128 + SIGKILL);
    g.w.d.pid = 0;
    /* a push of round r committed in an earlier slice may have been answered; the
     * group's were not, and are not stored */
    int lost = 0;
    for (int i = 0; i < N_DEV; i++) {
        CHECK(g.d[i].p[r].state != P_BUSY);
        lost += g.d[i].p[r].state == P_LOST;
    }
    int missing = check_stored(&g, r);
    printf("kill: round %d, group of %d pushes, %d of the round unanswered, %d not stored\n", r,
           size, lost, missing);
    CHECK_INT(lost, >=, size);
    CHECK_INT(missing, >=, size);
    for (int i = 0; i < N_DEV; i++)
        for (int rr = 0; rr < r; rr++)
            CHECK_INT(g.d[i].p[rr].state, ==, P_ACKED);

    /* restart without the fault; every device reconnects and resends what it was not told */
    gt_close_all(&g);
    gt_start(&g, NULL);
    for (int i = 0; i < N_DEV; i++) {
        uint64_t last = (uint64_t)it_sqlnum(g.w.t.db, "SELECT coalesce(max(dseq), 0) FROM log "
                                                      "WHERE device = X'%s'", g.d[i].hex);
        CHECK_INT(g.d[i].c.w.server_dseq, ==, last);
    }
    gt_recover(&g, true, 0);
    gt_done(&g);
}

/* ---- the group's COMMIT fails ------------------------------------------------------- */

static void test_commitfail(int argc, char **argv)
{
    group_test g;
    gt_init(&g, argc, argv, 3, 0);
    int size;
    int r = gt_run_to_fault(&g, "group_commit_fail:2", "the COMMIT of a group", "group of ",
                            &size);
    CHECK_INT(size, >=, 2);
    char line[512];
    CHECK(log_line(&g, "pushes not stored", line, sizeof line)); /* handle_push.c's */
    int busy = round_busy(&g, r);
    printf("commitfail: round %d, group of %d pushes, %d answered BUSY\n", r, size, busy);
    CHECK_INT(busy, ==, size); /* every push of the group, and only those */
    CHECK_INT(check_stored(&g, r), ==, busy);
    gt_recover(&g, false, 0); /* the same sessions resend: accepted, not duplicates */
    gt_done(&g);
}

/* ---- disk full in the middle of a group ---------------------------------------------- */

static void test_diskfull(int argc, char **argv)
{
    group_test g;
    /* pushes of 160 children with names of 64 bytes (~24 KiB of log each): more than the
     * free room in the pages the store already has (16 KiB pages: STORE_AUTHORITY_PAGE_SIZE),
     * so a push in the full store must grow it */
    gt_init(&g, argc, argv, 160, 64);
    int at;
    int r = gt_run_to_fault(&g, "group_disk_full:2", "disk full at push", "at push ", &at);
    CHECK_INT(at, ==, 2); /* the second push of a group: the group had two or more */
    int busy = round_busy(&g, r);
    int missing = check_stored(&g, r);
    printf("diskfull: round %d, %d pushes answered BUSY, %d not stored\n", r, busy, missing);
    CHECK_INT(busy, >=, 1);
    CHECK_INT(missing, ==, busy);
    /* the daemon is up and a session that was not in the group works: sue pushes (the
     * first push after the group: space is back), pulls and pings */
    CHECK(kill(g.w.d.pid, 0) == 0);
    bystander by = {.dseq = 0};
    ft_open(&by.c, &g.w, &g.w.sue);
    bystander_sync(&by, g.w.t.s);
    /* the BUSY pushes, resent on their sessions: accepted once (sue's child is in the log) */
    gt_recover(&g, false, 1);
    bystander_sync(&by, g.w.t.s);
    fsc_close(&by.c);
    gt_close_all(&g);
    CHECK_INT(daemon_stop(&g.w.d, SIGTERM), ==, 0);
    g.w.d.pid = 0;
    char ok[64];
    it_sql1(g.w.t.db, ok, sizeof ok, "PRAGMA integrity_check");
    CHECK_STR(ok, "ok");
    gt_done(&g);
}

int main(int argc, char **argv)
{
    static const ft_case cases[] = {
        {"kill", test_kill}, {"commitfail", test_commitfail}, {"diskfull", test_diskfull}};
    return ft_main_cases(argc, argv, "fault_group", cases, sizeof cases / sizeof cases[0]);
}

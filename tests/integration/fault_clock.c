/*
 * fault_clock.c — devices whose clocks are wrong, through the SDK against a real daemon.
 * The device clock is shifted with the SDK's test hook FIELDSYNC_TEST_CLOCK_OFFSET_MS (read at
 * the first open in a process; changed afterwards through sdk_test_clock_offset_ms from
 * client-sdk/internal.h, also from the progress callback in the middle of a sync).
 *
 *   1. behind by 3 h: its changes are accepted; once it has synced, its hybrid clock is past
 *      the server's, so an edit it makes after seeing another device's edit wins (last
 *      writer by clock = last writer in fact), and the replicas converge;
 *   2. ahead by 3 h (inside the 24 h bound): accepted; the server's clock and, through
 *      welcome, the other devices' clocks move past it, so they keep winning what they edit
 *      after seeing it;
 *   3. jumping back and forth between saves and during a sync (-6 h in the middle of the
 *      push, +1 h during the pull): every saved change has a greater clock than the one
 *      before, the sync completes, the replicas converge;
 *   4. ahead by 25 h: refused ECLOCK_DRIFT with a reason that `fieldsync refused` shows
 *      (the real CLI run on the device's replica), nothing stored; then, the date fixed, the
 *      device's next changes are accepted again.
 */
#include "check.h"
#include "fault_support.h"

#include "internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOUR (3600LL * 1000)

static char *new_child(fieldsync_db *db, const char *name)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", name));
    CHECK_OK(fieldsync_set_text(r, "village", "V1"));
    CHECK_OK(fieldsync_record_save(r));
    char *id = strdup(fieldsync_record_id(r));
    fieldsync_record_free(r);
    return id;
}

static void set_school(fieldsync_db *db, const char *id, const char *school)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_OK(fieldsync_set_text(r, "school", school));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

static uint64_t version_of(fieldsync_db *db, const char *id, const char *field)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, id, &r));
    fieldsync_field f;
    CHECK_OK(fieldsync_get(r, field, &f));
    uint64_t v = f.version;
    fieldsync_record_free(r);
    return v;
}

/* Largest clock this device has issued (its outbox and own log). */
static uint64_t max_outbox_hlc(const char *path)
{
    return (uint64_t)it_sqlnum(path, "SELECT coalesce(max(hlc), 0) FROM dev_outbox");
}

typedef struct jump {
    int pushes, pulls;
} jump;

/* Progress callback: the clock jumps back 6 h when the push starts and forward when the
 * pull starts. */
static void jumpy(void *ctx, const fieldsync_progress *p)
{
    jump *j = ctx;
    if (p->phase == FIELDSYNC_PHASE_PUSH && j->pushes++ == 0)
        sdk_test_clock_offset_ms = -6 * HOUR;
    if (p->phase == FIELDSYNC_PHASE_PULL && j->pulls++ == 0)
        sdk_test_clock_offset_ms = 1 * HOUR;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    setenv("FIELDSYNC_TEST_CLOCK_OFFSET_MS", "0", 1); /* arm the hook for this process */
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}, {"vb", "visitor", "V1"},
                                    {"vc", "visitor", "V1"}, {"vd", "visitor", "V1"}};
    it_world(&s, "fault-clock", users, 4);
    ft_srv_start(&s, NULL);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *c = it_device(&s, "vc", "c");
    char pa[256], pb[256], pc[256], pd[256];
    it_dbpath(&s, "a", pa, sizeof pa);
    it_dbpath(&s, "b", pb, sizeof pb);
    it_dbpath(&s, "c", pc, sizeof pc);
    it_dbpath(&s, "d", pd, sizeof pd);

    /* ---- 1. A is 3 h behind ---- */
    sdk_test_clock_offset_ms = -3 * HOUR;
    char *k = new_child(a, "慢钟");
    uint64_t created = max_outbox_hlc(pa);
    it_sync(a);
    sdk_test_clock_offset_ms = 0;
    it_sync(b);
    set_school(b, k, "B校");
    uint64_t b_edit = max_outbox_hlc(pb);
    it_sync(b);
    sdk_test_clock_offset_ms = -3 * HOUR;
    it_sync(a); /* sees B's edit; its clock moves past it */
    set_school(a, k, "A校");
    uint64_t a_edit = max_outbox_hlc(pa);
    it_sync(a);
    sdk_test_clock_offset_ms = 0;
    it_sync(b);
    CHECK_STR(it_field(a, k, "school"), "A校");
    CHECK_STR(it_field(b, k, "school"), "A校");
    printf("1. behind 3 h: create at %llu (3 h back), A's later edit %llu > B's %llu: A wins\n",
           (unsigned long long)(created >> 16), (unsigned long long)(a_edit >> 16),
           (unsigned long long)(b_edit >> 16));
    CHECK(a_edit > b_edit);
    CHECK(version_of(b, k, "school") == a_edit);
    ft_check_same_state(pa, false, pb, false);

    /* ---- 2. C is 3 h ahead ---- */
    sdk_test_clock_offset_ms = 3 * HOUR;
    it_sync(c);
    set_school(c, k, "C校");
    uint64_t c_edit = max_outbox_hlc(pc);
    it_sync(c);
    sdk_test_clock_offset_ms = 0;
    it_sync(b); /* welcome and the pull move B's clock past C's */
    set_school(b, k, "B校二");
    uint64_t b2 = max_outbox_hlc(pb);
    CHECK(b2 > c_edit);
    it_sync(b);
    it_sync(c);
    it_sync(a);
    CHECK_STR(it_field(c, k, "school"), "B校二");
    printf("2. ahead 3 h: C's edit at +3 h, B's edit after seeing it is later still: B wins\n");
    ft_check_same_state(pb, false, pc, false);

    /* ---- 3. jumping ---- */
    static const long long offs[] = {0, -2 * HOUR, 1 * HOUR, -5 * HOUR, 0, -HOUR};
    uint64_t prev = 0;
    char school[32];
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        sdk_test_clock_offset_ms = offs[i];
        snprintf(school, sizeof school, "跳%zu", i);
        set_school(a, k, school);
        uint64_t h = max_outbox_hlc(pa);
        CHECK(h > prev);
        prev = h;
    }
    jump j = {0};
    fieldsync_sync_result r;
    sdk_test_clock_offset_ms = 0;
    CHECK_OK(fieldsync_sync(a, NULL, jumpy, &j, &r));
    CHECK_INT(r.accepted, ==, 6);
    CHECK(j.pushes > 0 && j.pulls > 0);
    set_school(a, k, "跳后");
    CHECK(max_outbox_hlc(pa) > prev);
    it_sync(a);
    sdk_test_clock_offset_ms = 0;
    it_sync(b);
    it_sync(c);
    CHECK_STR(it_field(b, k, "school"), "跳后");
    ft_check_same_state(pa, false, pb, false);
    ft_check_same_state(pa, false, pc, false);
    printf("3. jumping: 6 saves with the clock at 0, -2 h, +1 h, -5 h, 0, -1 h keep growing "
           "clocks; a sync with jumps inside completes\n");

    /* ---- 4. D is 25 h ahead ---- */
    fieldsync_db *d = it_device(&s, "vd", "d");
    fieldsync_close(d);
    char out[8192];
    setenv("FIELDSYNC_TEST_CLOCK_OFFSET_MS", "90000000", 1);
    CHECK_INT(it_cli(pd, out, sizeof out, "child add --village V1 --name 未来"), ==, 0);
    int rc = it_cli(pd, out, sizeof out, "sync");
    CHECK_INT(rc, ==, 2); /* refused changes */
    setenv("FIELDSYNC_TEST_CLOCK_OFFSET_MS", "0", 1);
    CHECK_INT(it_cli(pd, out, sizeof out, "refused"), ==, 0);
    printf("4. ahead 25 h: `fieldsync refused` says:\n%s", out);
    CHECK(strstr(out, "ECLOCK_DRIFT") != NULL);
    CHECK(strstr(out, "set the device's date and time") != NULL);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM records WHERE type = 1"), ==, 1);
    /* the date fixed: a change saved before the next sync still carries the clock of the
     * wrong date (the clock never goes back by itself) until welcome pulls it back and
     * stamps the change again; then it, and everything after, is accepted */
    CHECK_INT(it_cli(pd, out, sizeof out, "child add --village V1 --name 正常"), ==, 0);
    CHECK(it_sqlnum(pd, "SELECT max(hlc) >> 16 FROM dev_outbox") > (long long)time(NULL) * 1000 +
                                                                     24 * HOUR);
    rc = it_cli(pd, out, sizeof out, "--json sync");
    if (rc)
        fprintf(stderr, "sync after fixing the date: %s\n", out);
    CHECK_INT(rc, ==, 0);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM records WHERE type = 1"), ==, 2);
    CHECK_INT(it_cli(pd, out, sizeof out, "child add --village V1 --name 之后"), ==, 0);
    CHECK_INT(it_cli(pd, out, sizeof out, "sync"), ==, 0);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM records WHERE type = 1"), ==, 3);
    printf("   after the date was fixed: the next changes are accepted (re-stamped at welcome)\n");

    free(k);
    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(c);
    ft_srv_stop(&s);
    it_rmdir(s.dir);
    printf("fault_clock: ok\n");
    return 0;
}

/*
 * client_local_overdue.c — fieldsync_overdue() on a real SQLite replica, without a server.
 * Records are saved through the public API and confirmed by made-up push results (internal.h:
 * outbox_next_batch + outbox_apply_results, as a server's answer would), so the query runs
 * over the confirmed state and the outbox overlay as on a device:
 *   - a child on file whose latest visit is older than its risk level's interval is overdue;
 *     one visited recently, one not on file, one of another village are not;
 *   - after a new visit saved locally (not synced) the child leaves the list at once;
 *   - a child moved to another village locally is listed there, with its confirmed visits;
 *   - a child never visited is overdue from the day its file was opened;
 *   - the meaning comes from the ledger configuration: another file ($FIELDSYNC_LEDGER) with
 *     other intervals gives another list; a file naming a field the schema lacks is refused.
 */
#include "check.h"
#include "client_local_support.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DAY_S 86400LL

static char dir[64];
static int64_t now_s;

static char *new_child(fieldsync_db *db, const char *name, const char *village, const char *risk,
                       const char *status)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", name));
    CHECK_OK(fieldsync_set_text(r, "village", village));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", risk));
    if (status)
        CHECK_OK(fieldsync_set_enum(r, "status", status));
    CHECK_OK(fieldsync_record_save(r));
    char *id = strdup(fieldsync_record_id(r));
    fieldsync_record_free(r);
    return id;
}

static void new_visit(fieldsync_db *db, const char *child, int64_t days_ago)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "visit", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", child));
    CHECK_OK(fieldsync_set_enum(r, "kind", "home_visit"));
    CHECK_OK(fieldsync_set_time(r, "visited_at", now_s - days_ago * DAY_S));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

/* The server accepts everything in the outbox: it becomes confirmed state. */
static void confirm_all(fieldsync_db *db)
{
    ob_batch b = {0};
    for (;;) {
        CHECK_OK(outbox_next_batch(db, 200, 1 << 20, &b));
        if (!b.n)
            break;
        wire_result *res = calloc(b.n, sizeof *res);
        CHECK(res);
        for (size_t i = 0; i < b.n; i++)
            res[i] = (wire_result){.dseq = b.items[i].dseq, .status = APPLY_ACCEPTED};
        ob_counts cnt = {0};
        CHECK_OK(outbox_apply_results(db, &b, res, b.n, &cnt));
        CHECK_INT(cnt.accepted, ==, b.n);
        free(res);
    }
    ob_batch_free(&b);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 0);
}

typedef struct listing {
    int n;
    char names[16][32];
    fieldsync_overdue_info first; /* its strings are not kept: the copies below */
    char village[32], risk[16];
    int64_t last_visit[16];
    int pending[16];
} listing;

static int collect(void *ctx, const fieldsync_overdue_info *in)
{
    listing *l = ctx;
    CHECK(l->n < 16);
    if (!l->n) {
        l->first = *in;
        snprintf(l->village, sizeof l->village, "%s", in->village);
        snprintf(l->risk, sizeof l->risk, "%s", in->risk);
    }
    snprintf(l->names[l->n], sizeof l->names[0], "%s", in->name);
    l->last_visit[l->n] = in->last_visit_ms;
    l->pending[l->n] = in->pending;
    CHECK(in->due_ms < now_s * 1000 + 400 * DAY_S * 1000);
    CHECK_INT(strlen(in->id), ==, 36);
    l->n++;
    return 0;
}

static listing overdue(fieldsync_db *db, const char *village, int64_t at_s)
{
    listing l;
    memset(&l, 0, sizeof l);
    CHECK_OK(fieldsync_overdue(db, village, at_s * 1000, collect, &l));
    return l;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f);
    CHECK(fputs(text, f) >= 0);
    CHECK_OK(fclose(f));
}

int main(void)
{
    cl_mkdir("overdue", dir, sizeof dir);
    now_s = time(NULL);
    fieldsync_db *db =
        cl_open_enrolled(dir, "replica.db", "0123456789abcdef0123456789abcdef", "supervisor");

    /* schema/ledger.yaml: high 30 days, medium 60, others 90; on file = on_file or unset */
    char *late = new_child(db, "A 逾期", "cq-01", "high", "on_file");
    char *fresh = new_child(db, "B 近期", "cq-01", "high", NULL);
    char *away = new_child(db, "C 外村", "cq-02", "high", NULL);
    char *gone = new_child(db, "D 迁出", "cq-01", "high", "moved_out");
    char *low = new_child(db, "E 低风险", "cq-01", "low", NULL);
    for (int k = 4; k >= 1; k--) {
        new_visit(db, late, 40 * k);  /* latest 40 days ago > 30 */
        new_visit(db, fresh, 5 * k);  /* latest 5 days ago */
        new_visit(db, away, 40 * k);
        new_visit(db, gone, 100 * k); /* overdue, but not on file */
        new_visit(db, low, 60 * k);   /* 60 days < 90 */
    }
    confirm_all(db);

    /* the confirmed state: only A in cq-01, only C in cq-02 */
    listing l = overdue(db, "cq-01", now_s);
    CHECK_INT(l.n, ==, 1);
    CHECK_STR(l.names[0], "A 逾期");
    CHECK_STR(l.village, "cq-01");
    CHECK_STR(l.risk, "high");
    CHECK_INT(l.first.interval_days, ==, 30);
    CHECK_INT(l.first.last_visit_ms, ==, (now_s - 40 * DAY_S) * 1000);
    CHECK_INT(l.first.due_ms, ==, (now_s - 10 * DAY_S) * 1000);
    CHECK_INT(l.first.days_overdue, ==, 10);
    CHECK_INT(l.first.pending, ==, 0);
    l = overdue(db, "cq-02", now_s);
    CHECK_INT(l.n, ==, 1);
    CHECK_STR(l.names[0], "C 外村");
    l = overdue(db, NULL, now_s);
    CHECK_INT(l.n, ==, 2);
    CHECK_INT(overdue(db, "cq-99", now_s).n, ==, 0);
    /* 0 means the device's clock */
    l.n = 0;
    CHECK_OK(fieldsync_overdue(db, "cq-01", 0, collect, &l));
    CHECK_INT(l.n, ==, 1);

    /* a visit recorded offline: A leaves the list at once, while the visit is pending */
    new_visit(db, late, 1);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.pending, ==, 1);
    CHECK_INT(overdue(db, "cq-01", now_s).n, ==, 0);
    /* ... and is overdue again 30 days after that visit, flagged as pending */
    l = overdue(db, "cq-01", now_s + 30 * DAY_S);
    CHECK_INT(l.n, ==, 2); /* B (due in 25 days) first, then A (due in 29) */
    CHECK_STR(l.names[0], "B 近期");
    CHECK_INT(l.pending[0], ==, 0);
    CHECK_STR(l.names[1], "A 逾期");
    CHECK_INT(l.pending[1], ==, 1);
    CHECK_INT(l.last_visit[1], ==, (now_s - DAY_S) * 1000);

    /* a child created offline and never visited: overdue from when its file was opened */
    char *newborn = new_child(db, "F 新建", "cq-01", "medium", NULL);
    CHECK_INT(overdue(db, "cq-01", now_s).n, ==, 0);
    l = overdue(db, "cq-01", now_s + 61 * DAY_S);
    int found = 0;
    for (int i = 0; i < l.n; i++)
        if (!strcmp(l.names[i], "F 新建")) {
            found = 1;
            CHECK_INT(l.last_visit[i], ==, 0);
            CHECK_INT(l.pending[i], ==, 1);
        }
    CHECK(found);

    /* C moved to cq-01 on this device: listed there (by its confirmed visits), not in cq-02 */
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, away, &r));
    CHECK_OK(fieldsync_set_text(r, "village", "cq-01"));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
    CHECK_INT(overdue(db, "cq-02", now_s).n, ==, 0);
    l = overdue(db, "cq-01", now_s);
    CHECK_INT(l.n, ==, 1);
    CHECK_STR(l.names[0], "C 外村");
    CHECK_INT(l.last_visit[0], ==, (now_s - 40 * DAY_S) * 1000);
    CHECK_INT(l.pending[0], ==, 1);

    /* after the sync the same answers come from the confirmed state alone */
    confirm_all(db);
    l = overdue(db, "cq-01", now_s);
    CHECK_INT(l.n, ==, 1);
    CHECK_STR(l.names[0], "C 外村");
    CHECK_INT(l.pending[0], ==, 0);

    /* another ledger configuration: other intervals, another list (nothing is in C) */
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/ledger.yaml", dir);
    write_file(cfg, "ledger: 1\n"
                    "subject: {type: child, name: name, village: village, status: status,\n"
                    "          on_file: [on_file, moved_out], risk: risk_level}\n"
                    "visits:\n"
                    "  type: visit\n"
                    "  subject: child\n"
                    "  time: visited_at\n"
                    "  overdue_days: {high: 50}\n"
                    "  default_days: 45\n");
    CHECK_OK(setenv("FIELDSYNC_LEDGER", cfg, 1));
    l = overdue(db, "cq-01", now_s);
    /* C (40 days, high: 50) no longer; D counts as on file now (100 > 50), E too (low: the
     * default 45 < 60), most overdue first; F (never visited, opened today) not */
    CHECK_INT(l.n, ==, 2);
    CHECK_STR(l.names[0], "D 迁出");
    CHECK_STR(l.names[1], "E 低风险");
    CHECK_INT(l.first.interval_days, ==, 50);
    write_file(cfg, "subject: {type: child, name: name, village: village, status: status,\n"
                    "          on_file: [on_file], risk: danger}\n"
                    "visits: {type: visit, subject: child, time: visited_at, default_days: 9}\n");
    CHECK_INT(fieldsync_overdue(db, "cq-01", 0, collect, &l), ==, FIELDSYNC_ESCHEMA);
    CHECK(strstr(fieldsync_errmsg(db), "danger"));
    CHECK(strstr(fieldsync_errmsg(db), "ledger.yaml:2"));
    CHECK_OK(setenv("FIELDSYNC_LEDGER", "/nonexistent/ledger.yaml", 1));
    CHECK_INT(fieldsync_overdue(db, "cq-01", 0, collect, &l), ==, FIELDSYNC_ESCHEMA);
    CHECK_INT(fieldsync_overdue(db, "cq-01", 0, NULL, &l), ==, FIELDSYNC_EINVAL);
    unsetenv("FIELDSYNC_LEDGER");

    fieldsync_close(db);
    free(late);
    free(fresh);
    free(away);
    free(gone);
    free(low);
    free(newborn);
    cl_rmdir(dir);
    printf("client_local_overdue: ok\n");
    return 0;
}

/*
 * client_it_fastlane.c — a mandatory report saved after 1,000 queued visit notes reaches the
 * server before any of them: observed in the server's log order (its store, read with
 * SQLite), which is the order the server committed them in. A report about a child that is
 * itself still queued pulls that child ahead with it (the server would refuse EREF otherwise).
 */
#include "check.h"
#include "client_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void visits(fieldsync_db *db, const char *child, int n)
{
    for (int i = 0; i < n; i++) {
        fieldsync_record *v;
        CHECK_OK(fieldsync_record_new(db, "visit", &v));
        CHECK_OK(fieldsync_set_ref(v, "child", child));
        CHECK_OK(fieldsync_set_enum(v, "kind", "village_visit"));
        CHECK_OK(fieldsync_set_time(v, "visited_at", 1725235200 + i));
        CHECK_OK(fieldsync_set_text(v, "concerns", "孩子情绪低落，需要跟进。"));
        CHECK_OK(fieldsync_record_save(v));
        fieldsync_record_free(v);
    }
}

static char *report(fieldsync_db *db, const char *child)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "report", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", child));
    CHECK_OK(fieldsync_set_enum(r, "category", "suspected_domestic_violence"));
    CHECK_OK(fieldsync_set_text(r, "observed", "孩子手臂有多处淤青"));
    CHECK_OK(fieldsync_set_parse(r, "observed_at", "now"));
    CHECK_OK(fieldsync_set_bool(r, "police_notified", 1));
    CHECK_OK(fieldsync_set_enum(r, "status", "reported"));
    CHECK_OK(fieldsync_record_save(r));
    char *id = strdup(fieldsync_record_id(r));
    fieldsync_record_free(r);
    return id;
}

int main(void)
{
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}};
    it_world(&s, "it-fastlane", users, 1);
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");

    /* a child the server knows, 1,000 visit notes queued offline, then a report */
    char child[40];
    it_child(a, "周小雨", "V1", child);
    it_sync(a);
    long long base = it_sqlnum(s.db, "SELECT max(seq) FROM log");
    visits(a, child, 1000);
    char *rep = report(a, child);
    fieldsync_sync_result r = it_sync(a);
    CHECK_INT(r.accepted, ==, 1001);
    char hex[40];
    it_hex_id(rep, hex);
    long long rseq = it_sqlnum(s.db, "SELECT seq FROM log WHERE record = X'%s'", hex);
    long long first_visit = it_sqlnum(s.db, "SELECT min(seq) FROM log WHERE type = 3");
    long long last_visit = it_sqlnum(s.db, "SELECT max(seq) FROM log WHERE type = 3");
    printf("report at log seq %lld; visits at %lld..%lld\n", rseq, first_visit, last_visit);
    CHECK_INT(rseq, ==, base + 1);
    CHECK_INT(rseq, <, first_visit);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM log WHERE type = 3"), ==, 1000);

    /* all offline: a new child, 300 visits of another child, a report about the new child:
     * the new child goes first (the report depends on it), then the report, then visits */
    char child2[40];
    it_child(a, "周小雨", "V1", child2);
    visits(a, child, 300);
    char *rep2 = report(a, child2);
    base = it_sqlnum(s.db, "SELECT max(seq) FROM log");
    r = it_sync(a);
    CHECK_INT(r.accepted, ==, 302);
    CHECK_INT(r.refused, ==, 0);
    char hc[40], hr[40];
    it_hex_id(child2, hc);
    it_hex_id(rep2, hr);
    CHECK_INT(it_sqlnum(s.db, "SELECT seq FROM log WHERE record = X'%s'", hc), ==, base + 1);
    CHECK_INT(it_sqlnum(s.db, "SELECT seq FROM log WHERE record = X'%s'", hr), ==, base + 2);

    /* the pending list shows nothing left, the report is confirmed on the device */
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(a, &id));
    CHECK_INT(id.pending, ==, 0);
    CHECK_INT(id.acked_dseq, ==, 1 + 1001 + 302);
    fieldsync_record *rec;
    CHECK_OK(fieldsync_record_load(a, rep2, &rec));
    CHECK(fieldsync_record_confirmed(rec));
    CHECK(!fieldsync_record_pending(rec));
    fieldsync_record_free(rec);
    fieldsync_close(a);
    free(rep);
    free(rep2);
    it_srv_stop(&s);
    it_rmdir(s.dir);
    printf("client_it_fastlane: ok\n");
    return 0;
}

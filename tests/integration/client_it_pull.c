/*
 * client_it_pull.c — the pipelined pull (client-sdk/session.c) against the real server on
 * 127.0.0.1, in small batches so that a pull is many batches, each requested before the one
 * before it is applied:
 *   - device A (visitor, V1) pushes 250 children and 250 visits; device B (volunteer, V1)
 *     pulls them 7 at a time: all received, in order (progress only grows), the cursor stored
 *     is the one the sync reports, the confirmed state equals A's;
 *   - device C pulls 7 at a time and cancels itself from the progress callback after a few
 *     batches: the replica holds exactly the server's changes up to its stored cursor (the
 *     batch received but not applied is not in it, and the cursor does not cover it), and
 *     the next sync completes it.
 */
#include "check.h"
#include "client_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CHILDREN 250

typedef struct watch {
    fieldsync_db *db;
    uint64_t last_done;
    int batches;
    int cancel_after;    /* 0: never */
} watch;

static void on_progress(void *ctx, const fieldsync_progress *p)
{
    watch *w = ctx;
    if (p->phase != FIELDSYNC_PHASE_PULL || !p->changes_done)
        return;
    CHECK_INT(p->changes_done, >=, w->last_done);
    CHECK_INT(p->changes_done - w->last_done, <=, 7);
    if (p->changes_done > w->last_done)
        w->batches++;
    w->last_done = p->changes_done;
    if (w->cancel_after && w->batches == w->cancel_after)
        fieldsync_cancel(w->db);
}

int main(void)
{
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}, {"vb", "volunteer", "V1"}};
    it_world(&s, "it-pull", users, 2);
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *c = it_device(&s, "vb", "c");

    static char ids[N_CHILDREN][40];
    for (int i = 0; i < N_CHILDREN; i++) {
        char name[64];
        snprintf(name, sizeof name, "李小红%03d", i);
        it_child(a, name, "V1", ids[i]);
        it_visit(a, ids[i], 1725235200 + i, NULL);
    }
    fieldsync_sync_result res = it_sync(a);
    CHECK_INT(res.accepted, ==, 2 * N_CHILDREN);

    /* B: the whole pull, 7 changes per batch */
    fieldsync_sync_opts o;
    memset(&o, 0, sizeof o);
    o.pull_batch = 7;
    watch w = {.db = b};
    CHECK_OK(fieldsync_sync(b, &o, on_progress, &w, &res));
    CHECK_INT(res.received, ==, 2 * N_CHILDREN);
    CHECK_INT(w.last_done, ==, 2 * N_CHILDREN);
    CHECK_INT(w.batches, >=, 2 * N_CHILDREN / 7);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(b, &id));
    CHECK_INT(id.cursor, ==, res.cursor);
    CHECK_INT(it_count(b, "child", "V1", NULL), ==, N_CHILDREN);
    CHECK_INT(it_count(b, "visit", NULL, ids[17]), ==, 1);
    char pa[256], pb[256], sa[4096], sb[4096];
    it_dbpath(&s, "a", pa, sizeof pa);
    it_dbpath(&s, "b", pb, sizeof pb);
    for (int i = 0; i < N_CHILDREN; i += 31) {
        it_field_state(pa, ids[i], sa, sizeof sa);
        it_field_state(pb, ids[i], sb, sizeof sb);
        CHECK_STR(sa, sb);
    }

    /* C: cancelled after 5 batches; the replica is exactly the log up to its cursor */
    watch wc = {.db = c, .cancel_after = 5};
    CHECK_INT(fieldsync_sync(c, &o, on_progress, &wc, &res), ==, FIELDSYNC_ECANCELLED);
    CHECK_OK(fieldsync_identity_get(c, &id));
    CHECK_INT(id.cursor, >, 0);
    char pc[256];
    it_dbpath(&s, "c", pc, sizeof pc);
    long long have = it_sqlnum(pc, "SELECT count(*) FROM log");
    long long upto = it_sqlnum(s.db, "SELECT count(*) FROM log WHERE seq <= %llu",
                               (unsigned long long)id.cursor);
    CHECK_INT(have, ==, upto);
    CHECK_INT(have, <, 2 * N_CHILDREN);
    CHECK_INT(have, >=, 5 * 7);
    res = it_sync(c);
    CHECK_INT(res.received, ==, 2 * N_CHILDREN - have);
    CHECK_INT(it_sqlnum(pc, "SELECT count(*) FROM log"), ==, 2 * N_CHILDREN);

    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(c);
    it_srv_stop(&s);
    it_rmdir(s.dir);
    printf("client_it_pull: ok\n");
    return 0;
}

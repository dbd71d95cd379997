/*
 * client_it_pullcommit.c — pull commit groups (client-sdk/session.c, fieldsync_sync_opts
 * pull_commit) against the real server on 127.0.0.1. Device A (visitor, V1) pushes 150
 * children and 150 visits; then, 10 changes per pull:
 *   - device B with pull_commit 100: from the progress callback (after every batch applied),
 *     another connection reads the committed cursor: it moves only when a group commits,
 *     far fewer times than there are batches, and never covers more than was applied; at
 *     the end the stored cursor is the sync's and everything is there;
 *   - device C with pull_commit 1: the committed cursor moves with every batch (the
 *     setting that the groups are measured against);
 *   - device D with pull_commit 100, cancelled from the callback after 15 batches, in the
 *     middle of a group: the group's applied batches are committed, the replica holds
 *     exactly the server's log up to its stored cursor, and the next sync completes it.
 */
#include "check.h"
#include "client_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CHILDREN 150
#define TOTAL (2 * N_CHILDREN)
#define BATCH 10

typedef struct watch {
    fieldsync_db *db;
    char path[256];       /* the replica file, read through its own connection */
    uint64_t last_done;
    int batches;
    int moves;            /* times the committed cursor changed between callbacks */
    long long committed;  /* committed cursor at the last callback */
    int cancel_after;     /* 0: never */
} watch;

static void on_progress(void *ctx, const fieldsync_progress *p)
{
    watch *w = ctx;
    if (p->phase != FIELDSYNC_PHASE_PULL || p->changes_done == w->last_done)
        return;
    w->batches++;
    w->last_done = p->changes_done;
    long long c = it_sqlnum(w->path, "SELECT coalesce((SELECT value FROM dev_identity "
                                     "WHERE key = 'cursor'), 0)");
    /* what is committed was applied: never more log rows than changes applied so far */
    CHECK_INT(it_sqlnum(w->path, "SELECT count(*) FROM log"), <=, (long long)p->changes_done);
    if (c != w->committed)
        w->moves++;
    w->committed = c;
    if (w->cancel_after && w->batches == w->cancel_after)
        fieldsync_cancel(w->db);
}

static void watch_init(watch *w, srv *s, fieldsync_db *db, const char *name)
{
    memset(w, 0, sizeof *w);
    w->db = db;
    it_dbpath(s, name, w->path, sizeof w->path);
}

int main(void)
{
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}, {"vb", "volunteer", "V1"}};
    it_world(&s, "it-pullcommit", users, 2);
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *c = it_device(&s, "vb", "c");
    fieldsync_db *d = it_device(&s, "vb", "d");

    for (int i = 0; i < N_CHILDREN; i++) {
        char name[64], id[40];
        snprintf(name, sizeof name, "王小明%03d", i);
        it_child(a, name, "V1", id);
        it_visit(a, id, 1725235200 + i, NULL);
    }
    fieldsync_sync_result res = it_sync(a);
    CHECK_INT(res.accepted, ==, TOTAL);

    fieldsync_sync_opts o;
    memset(&o, 0, sizeof o);
    o.pull_batch = BATCH;

    /* B: groups of 100 changes (10 batches): the committed cursor moves ~3 times */
    o.pull_commit = 100;
    watch wb;
    watch_init(&wb, &s, b, "b");
    CHECK_OK(fieldsync_sync(b, &o, on_progress, &wb, &res));
    CHECK_INT(res.received, ==, TOTAL);
    CHECK_INT(wb.batches, >=, TOTAL / BATCH);
    CHECK_INT(wb.moves, >=, 1);
    CHECK_INT(wb.moves * 3, <=, wb.batches);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(b, &id));
    CHECK_INT(id.cursor, ==, res.cursor);
    CHECK_INT(it_sqlnum(wb.path, "SELECT count(*) FROM log"), ==, TOTAL);

    /* C: every batch its own transaction */
    o.pull_commit = 1;
    watch wc;
    watch_init(&wc, &s, c, "c");
    CHECK_OK(fieldsync_sync(c, &o, on_progress, &wc, &res));
    CHECK_INT(res.received, ==, TOTAL);
    CHECK_INT(wc.moves, ==, wc.batches);

    /* D: cancelled in the middle of its second group: the applied batches are kept */
    o.pull_commit = 100;
    watch wd;
    watch_init(&wd, &s, d, "d");
    wd.cancel_after = 15;
    CHECK_INT(fieldsync_sync(d, &o, on_progress, &wd, &res), ==, FIELDSYNC_ECANCELLED);
    CHECK_OK(fieldsync_identity_get(d, &id));
    long long have = it_sqlnum(wd.path, "SELECT count(*) FROM log");
    long long upto = it_sqlnum(s.db, "SELECT count(*) FROM log WHERE seq <= %llu",
                               (unsigned long long)id.cursor);
    CHECK_INT(have, ==, upto);
    CHECK_INT(have, >=, 15 * BATCH);
    CHECK_INT(have, <, TOTAL);
    CHECK_INT(res.received, ==, (uint64_t)have);
    res = it_sync(d);
    CHECK_INT(res.received, ==, (uint64_t)(TOTAL - have));
    CHECK_INT(it_sqlnum(wd.path, "SELECT count(*) FROM log"), ==, TOTAL);

    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(c);
    fieldsync_close(d);
    it_srv_stop(&s);
    it_rmdir(s.dir);
    printf("client_it_pullcommit: ok\n");
    return 0;
}

/*
 * client_local_commit.c — what the SDK commits together with an applied batch, and how
 * durably, without a server (client-sdk/internal.h):
 *   - every commit of a device replica is synced: PRAGMA synchronous read back through the
 *     handle's connection is FULL (2);
 *   - a new replica file has 16 KiB pages (db.c, replica_prepare); an existing one keeps its
 *     page size;
 *   - no TEMP triggers on the store's log: the outbox and the cursor are written by the
 *     store's before_commit hook, once per batch;
 *   - a change of this device arriving by pull leaves the outbox in the transaction that
 *     applies it, with the cursor;
 *   - when the cursor cannot be written, the pulled batch is rolled back with it (one
 *     transaction): log, outbox and cursor are as before;
 *   - a pull group (outbox_pull_begin/commit): batches applied into it are invisible to
 *     another connection until the group commits, then all together with the cursor of the
 *     last one; a batch failing inside it is rolled back alone and the group commits the
 *     others with their cursor.
 */
#include "check.h"
#include "client_local_support.h"
#include "internal.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

/* One number from the replica file through a connection of its own: what is committed. */
static long long it_file_num(const char *path, const char *sql)
{
    sqlite3 *f;
    sqlite3_stmt *q;
    long long v = -1;
    CHECK_INT(sqlite3_open_v2(path, &f, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(f, sql, -1, &q, NULL), ==, SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(f);
    return v;
}

int main(void)
{
    cl_mkdir("client-commit", dir, sizeof dir);
    fieldsync_db *db =
        cl_open_enrolled(dir, "dev.db", "00112233445566778899aabbccddeeff", "visitor");
    char path[128]; /* the replica's file, read through connections of the test's own */
    snprintf(path, sizeof path, "%s/dev.db", dir);

    /* durability: FULL on the store's own connection */
    CHECK_INT(sdk_count(db, "PRAGMA synchronous"), ==, 2);
    /* a new replica is made of 16 KiB pages, in WAL mode */
    CHECK_INT(sdk_count(db, "PRAGMA page_size"), ==, 16384);
    CHECK_INT(it_file_num(path, "PRAGMA page_size"), ==, 16384);
    CHECK(db->sql == store_db(db->st));
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM sqlite_temp_master WHERE type = 'trigger'"),
              ==, 0);

    /* a child saved and numbered (sent), never answered */
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "张小花"));
    CHECK_OK(fieldsync_set_text(r, "village", "v1"));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "medium"));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
    ob_batch b = {0};
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT((int)b.n, ==, 1);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 1);

    /* ... then it comes back by pull, as the server logged it */
    change c;
    mpr m;
    fs_error e = {0};
    mpr_init(&m, b.items[0].body, b.items[0].len);
    CHECK_OK(change_unpack(&m, db->s, false, &c, &e));
    c.device = db->device;
    c.author = "wang";
    c.author_len = 4;
    c.role = (uint8_t)db->role;
    CHECK(c.dseq == b.items[0].dseq);

    /* the cursor cannot be written: nothing of the batch stays */
    CHECK_OK(sdk_exec(db, "CREATE TEMP TRIGGER no_cursor BEFORE INSERT ON main.dev_identity "
                          "WHEN NEW.key = 'cursor' BEGIN SELECT RAISE(ABORT, 'no cursor'); END"));
    uint64_t applied = 0;
    apply_result ar[2];
    CHECK(outbox_apply_pulled(db, &c, 1, 77, ar, &applied) != 0);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM log"), ==, 0);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 1);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 0);
    CHECK_OK(sdk_exec(db, "DROP TRIGGER temp.no_cursor"));

    /* now it goes through: in the log, out of the outbox, cursor stored, in one commit */
    CHECK_OK(outbox_apply_pulled(db, &c, 1, 77, ar, &applied));
    CHECK_INT(applied, ==, 1);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM log"), ==, 1);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 0);
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 77);

    /* the same batch again (a re-pull): a duplicate, the cursor still moves */
    CHECK_OK(outbox_apply_pulled(db, &c, 1, 78, ar, &applied));
    CHECK_INT(applied, ==, 0);
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 78);

    /* a pull group: two more of this device's changes come back in two batches */
    for (int i = 0; i < 2; i++) {
        CHECK_OK(fieldsync_record_new(db, "child", &r));
        CHECK_OK(fieldsync_set_text(r, "name", i ? "王小明" : "李小红"));
        CHECK_OK(fieldsync_set_text(r, "village", "v1"));
        CHECK_OK(fieldsync_record_save(r));
        fieldsync_record_free(r);
    }
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT((int)b.n, ==, 2);
    change g[2];
    for (int i = 0; i < 2; i++) {
        mpr_init(&m, b.items[i].body, b.items[i].len);
        CHECK_OK(change_unpack(&m, db->s, false, &g[i], &e));
        g[i].device = db->device;
        g[i].author = "wang";
        g[i].author_len = 4;
        g[i].role = (uint8_t)db->role;
    }
    CHECK_OK(outbox_pull_commit(db)); /* none open: nothing to do */
    CHECK_OK(outbox_pull_begin(db));
    CHECK_OK(outbox_apply_pulled(db, &g[0], 1, 90, ar, &applied));
    CHECK_INT(applied, ==, 1);
    /* applied, not committed: another connection still sees the state before the group */
    CHECK_INT(it_file_num(path, "SELECT value FROM dev_identity WHERE key = 'cursor'"), ==, 78);
    CHECK_INT(it_file_num(path, "SELECT count(*) FROM log"), ==, 1);
    /* the second batch fails (its cursor cannot be written): it alone is rolled back */
    CHECK_OK(sdk_exec(db, "CREATE TEMP TRIGGER no_cursor BEFORE INSERT ON main.dev_identity "
                          "WHEN NEW.key = 'cursor' AND NEW.value = '91' "
                          "BEGIN SELECT RAISE(ABORT, 'no cursor'); END"));
    CHECK(outbox_apply_pulled(db, &g[1], 1, 91, ar, &applied) != 0);
    CHECK_OK(outbox_pull_commit(db));
    CHECK_OK(sdk_exec(db, "DROP TRIGGER temp.no_cursor"));
    /* the group committed its whole batch with that batch's cursor, nothing of the other */
    CHECK_INT(it_file_num(path, "SELECT value FROM dev_identity WHERE key = 'cursor'"), ==, 90);
    CHECK_INT(it_file_num(path, "SELECT count(*) FROM log"), ==, 2);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 1);
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 90);
    /* a group of two batches commits both, with the last cursor */
    CHECK_OK(outbox_pull_begin(db));
    CHECK_OK(outbox_apply_pulled(db, &g[0], 1, 91, ar, &applied));
    CHECK_INT(applied, ==, 0);
    CHECK_OK(outbox_apply_pulled(db, &g[1], 1, 92, ar, &applied));
    CHECK_INT(applied, ==, 1);
    CHECK_INT(it_file_num(path, "SELECT value FROM dev_identity WHERE key = 'cursor'"), ==, 90);
    CHECK_OK(outbox_pull_commit(db));
    CHECK_INT(it_file_num(path, "SELECT value FROM dev_identity WHERE key = 'cursor'"), ==, 92);
    CHECK_INT(it_file_num(path, "SELECT count(*) FROM log"), ==, 3);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 0);

    ob_batch_free(&b);
    fieldsync_close(db);
    /* reopened: still FULL, still no triggers */
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_INT(sdk_count(db, "PRAGMA synchronous"), ==, 2);
    CHECK_INT(sdk_count(db, "PRAGMA page_size"), ==, 16384);
    fieldsync_close(db);
    /* a replica made before (4 KiB pages) keeps its page size */
    char old_path[128];
    snprintf(old_path, sizeof old_path, "%s/old.db", dir);
    sqlite3 *f;
    CHECK_INT(sqlite3_open(old_path, &f), ==, SQLITE_OK);
    CHECK_INT(sqlite3_exec(f, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; "
                              "CREATE TABLE t(x)", NULL, NULL, NULL), ==, SQLITE_OK);
    sqlite3_close(f);
    CHECK_OK(fieldsync_open(old_path, NULL, &db));
    CHECK_INT(sdk_count(db, "PRAGMA page_size"), ==, 4096);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM sqlite_temp_master WHERE type = 'trigger'"),
              ==, 0);
    fieldsync_close(db);
    cl_rmdir(dir);
    printf("client_local_commit: ok\n");
    return 0;
}

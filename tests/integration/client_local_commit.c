/*
 * client_local_commit.c — what the SDK commits together with an applied batch, and how
 * durably, without a server (client-sdk/internal.h):
 *   - every commit of a device replica is synced: PRAGMA synchronous read back through the
 *     handle's connection is FULL (2);
 *   - no TEMP triggers on the store's log: the outbox and the cursor are written by the
 *     store's before_commit hook, once per batch;
 *   - a change of this device arriving by pull leaves the outbox in the transaction that
 *     applies it, with the cursor;
 *   - when the cursor cannot be written, the pulled batch is rolled back with it (one
 *     transaction): log, outbox and cursor are as before.
 */
#include "check.h"
#include "internal.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/fs-client-commit-XXXXXX");
    CHECK(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/dev.db", dir);
    fieldsync_db *db = NULL;
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_OK(fieldsync_enrol(db, "ws://127.0.0.1:9", "00112233445566778899aabbccddeeff",
                             "token"));
    CHECK_OK(kv_set_text(db, "user", "wang"));
    CHECK_OK(kv_set_text(db, "role", "visitor"));
    snprintf(db->user, sizeof db->user, "wang");
    db->role = schema_role_by_name(db->s, "visitor");
    CHECK(db->role >= 0);

    /* durability: FULL on the store's own connection */
    CHECK_INT(sdk_count(db, "PRAGMA synchronous"), ==, 2);
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
    CHECK(outbox_apply_pulled(db, &c, 1, 77, &applied) != 0);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM log"), ==, 0);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 1);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 0);
    CHECK_OK(sdk_exec(db, "DROP TRIGGER temp.no_cursor"));

    /* now it goes through: in the log, out of the outbox, cursor stored, in one commit */
    CHECK_OK(outbox_apply_pulled(db, &c, 1, 77, &applied));
    CHECK_INT(applied, ==, 1);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM log"), ==, 1);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 0);
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 77);

    /* the same batch again (a re-pull): a duplicate, the cursor still moves */
    CHECK_OK(outbox_apply_pulled(db, &c, 1, 78, &applied));
    CHECK_INT(applied, ==, 0);
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 78);

    ob_batch_free(&b);
    fieldsync_close(db);
    /* reopened: still FULL, still no triggers */
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_INT(sdk_count(db, "PRAGMA synchronous"), ==, 2);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM sqlite_temp_master WHERE type = 'trigger'"),
              ==, 0);
    fieldsync_close(db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_OK(system(cmd));
    printf("client_local_commit: ok\n");
    return 0;
}

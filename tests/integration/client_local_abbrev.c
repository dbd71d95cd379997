/*
 * client_local_abbrev.c — abbreviated record ids in the device's outbox (protocol §3.1),
 * without a server, through the SDK's internal functions (client-sdk/internal.h) and push
 * results made up here:
 *   - a change of a record in the confirmed state goes out with the 9-byte abbreviation;
 *     one of a record whose create is pending (or was refused) with the full id;
 *   - the choice is fixed with the number: a resend is the same bytes;
 *   - EREC_ABBREV (not consumed) switches that change to its full id, same dseq, and the
 *     ESEQ_GAP answers after it in the batch are not a lost-sequence failure;
 *   - after a sign of a restored server (outbox_distrust) nothing is abbreviated any more and
 *     unconsumed numbered changes go back to full ids.
 */
#include "check.h"
#include "client_local_support.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static void new_child(fieldsync_db *db, rid_t *id)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "张小花"));
    CHECK_OK(fieldsync_set_text(r, "village", "v1"));
    CHECK_OK(fieldsync_record_save(r));
    CHECK_OK(rid_from_text(fieldsync_record_id(r), id));
    fieldsync_record_free(r);
}

static void set_grade(fieldsync_db *db, const rid_t *id, int64_t grade)
{
    char text[RID_TEXT_LEN + 1];
    rid_to_text(id, text);
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, text, &r));
    CHECK_OK(fieldsync_set_int(r, "grade", grade));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

/* Checks how item it carries record id: abbreviated (9 bytes, the full-id body kept in
 * it->full) or full (16 bytes, it->full NULL). */
static void expect_form(fieldsync_db *db, const ob_item *it, const rid_t *id, bool abbrev)
{
    const uint8_t *p = it->body;
    CHECK_INT(p[0], ==, 0x96);
    CHECK_INT(p[2], ==, 0xc4);
    CHECK_INT(p[3], ==, abbrev ? CHANGE_ABBREV_LEN : 16);
    CHECK(!memcmp(p + 4, id->b, p[3]));
    change c;
    fs_error e = {0};
    mpr r;
    mpr_init(&r, it->body, it->len);
    CHECK_OK(change_unpack_push(&r, db->s, &c, &e));
    CHECK(c.abbrev == abbrev);
    CHECK_INT(c.dseq, ==, it->dseq);
    if (!abbrev) {
        CHECK(it->full == NULL);
        return;
    }
    CHECK(it->full != NULL);
    CHECK_INT(it->full_len, ==, it->len + 16 - CHANGE_ABBREV_LEN);
    CHECK(!memcmp(it->full + 4, id->b, 16));
    mpr_init(&r, it->full, it->full_len);
    CHECK_OK(change_unpack(&r, db->s, false, &c, &e));
    CHECK_INT(c.dseq, ==, it->dseq);
    CHECK(!memcmp(it->full + 20, it->body + 13, it->len - 13)); /* the rest is the same */
}

static void result(wire_result *res, uint64_t dseq, uint8_t status, int code)
{
    *res = (wire_result){.dseq = dseq, .status = status, .code = code};
    if (status == APPLY_REFUSED) {
        res->text = fs_strerror(code);
        res->text_len = (uint32_t)strlen(res->text);
    }
}

static void test_abbrev_outbox(void)
{
    fieldsync_db *db =
        cl_open_enrolled(dir, "abbrev.db", "00112233445566778899aabbccddeeff", "visitor");
    rid_t x, y, z;
    new_child(db, &x);
    ob_batch b = {0};
    wire_result res[8];
    ob_counts cnt = {0};
    /* x's create: pending, not confirmed: full id; accepted, x is now confirmed */
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 1);
    expect_form(db, &b.items[0], &x, false);
    result(&res[0], b.items[0].dseq, APPLY_ACCEPTED, 0);
    CHECK_OK(outbox_apply_results(db, &b, res, 1, &cnt));

    /* an edit of x: abbreviated. An edit of y, whose create is in the same batch: full */
    set_grade(db, &x, 3);
    new_child(db, &y);
    set_grade(db, &y, 4);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 3);
    expect_form(db, &b.items[0], &x, true);
    expect_form(db, &b.items[1], &y, false);
    expect_form(db, &b.items[2], &y, false);
    uint64_t dx = b.items[0].dseq;
    size_t len = b.items[0].len;
    uint8_t sent[256];
    CHECK_INT(len, <=, sizeof sent);
    memcpy(sent, b.items[0].body, len);
    /* no answer (link lost): the resend is the same bytes, from the outbox */
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 3);
    CHECK_INT(b.items[0].dseq, ==, dx);
    CHECK_INT(b.items[0].len, ==, len);
    CHECK(!memcmp(b.items[0].body, sent, len));
    expect_form(db, &b.items[0], &x, true);

    /* EREC_ABBREV for x (not consumed), so ESEQ_GAP for what follows: no failure, all kept;
     * x goes again with its full id under the same number, then the others */
    result(&res[0], dx, APPLY_REFUSED, FS_EREC_ABBREV);
    result(&res[1], b.items[1].dseq, APPLY_REFUSED, FS_ESEQ_GAP);
    result(&res[2], b.items[2].dseq, APPLY_REFUSED, FS_ESEQ_GAP);
    memset(&cnt, 0, sizeof cnt);
    CHECK_OK(outbox_apply_results(db, &b, res, 3, &cnt));
    CHECK_INT(cnt.resend, ==, 1);
    CHECK_INT(cnt.gaps, ==, 2);
    CHECK_INT(cnt.refused, ==, 0);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 3);
    uint64_t acked;
    CHECK_OK(kv_get_u64(db, "acked_dseq", &acked));
    CHECK_INT(acked, <, dx);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 3);
    CHECK_INT(b.items[0].dseq, ==, dx);
    expect_form(db, &b.items[0], &x, false);
    for (int i = 0; i < 3; i++)
        result(&res[i], b.items[i].dseq, APPLY_ACCEPTED, 0);
    CHECK_OK(outbox_apply_results(db, &b, res, 3, &cnt));
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 0);

    /* a record whose create was refused is not confirmed: its later edit goes in full */
    new_child(db, &z);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 1);
    set_grade(db, &z, 5); /* saved while the create waits for its answer */
    result(&res[0], b.items[0].dseq, APPLY_REFUSED, FS_ESCOPE);
    CHECK_OK(outbox_apply_results(db, &b, res, 1, &cnt));
    set_grade(db, &y, 6);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 2);
    expect_form(db, &b.items[0], &z, false);
    expect_form(db, &b.items[1], &y, true); /* y's create was accepted above */

    /* a restored server (welcome): from its server_dseq on, back to full ids, and nothing
     * abbreviated any more */
    uint64_t dy = b.items[1].dseq;
    CHECK_OK(outbox_distrust(db, dy - 1));
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 2);
    CHECK_INT(b.items[1].dseq, ==, dy);
    expect_form(db, &b.items[1], &y, false);
    set_grade(db, &x, 7);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 3);
    expect_form(db, &b.items[2], &x, false);
    ob_batch_free(&b);
    fieldsync_close(db);
}

/* welcome from a server restored from a backup (server_dseq below what this replica had
 * answers for): the replica stops abbreviating */
static void test_restored_server(void)
{
    fieldsync_db *db =
        cl_open_enrolled(dir, "restored.db", "ffeeddccbbaa99887766554433221100", "visitor");
    rid_t x;
    new_child(db, &x);
    ob_batch b = {0};
    wire_result res[4];
    ob_counts cnt = {0};
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    result(&res[0], b.items[0].dseq, APPLY_ACCEPTED, 0);
    CHECK_OK(outbox_apply_results(db, &b, res, 1, &cnt));
    set_grade(db, &x, 2);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    expect_form(db, &b.items[0], &x, true);
    result(&res[0], b.items[0].dseq, APPLY_ACCEPTED, 0);
    CHECK_OK(outbox_apply_results(db, &b, res, 1, &cnt));
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox"), ==, 0);
    /* the server says it consumed nothing of ours: both changes go back into the outbox
     * (requeue), in full, and so does everything after */
    CHECK_OK(sdk_begin(db));
    CHECK_OK(outbox_welcome(db, 0));
    CHECK_OK(sdk_commit(db));
    set_grade(db, &x, 3);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 3);
    expect_form(db, &b.items[0], &x, false);
    expect_form(db, &b.items[1], &x, false);
    expect_form(db, &b.items[2], &x, false);
    ob_batch_free(&b);
    fieldsync_close(db);
}

int main(void)
{
    cl_mkdir("client-abbrev", dir, sizeof dir);
    test_abbrev_outbox();
    test_restored_server();
    cl_rmdir(dir);
    printf("client_local_abbrev: ok\n");
    return 0;
}

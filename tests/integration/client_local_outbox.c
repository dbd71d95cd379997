/*
 * client_local_outbox.c — the outbox without a server, driven through the SDK's internal
 * functions (client-sdk/internal.h) with push results and pulled changes made up here:
 *   - dseq numbering at send time: a report saved after 1,000 queued visits gets the first
 *     numbers (right after the child it refers to), the visits follow in creation order;
 *   - dependencies: a report pulls its child and that child's household ahead of it;
 *   - resends reuse the same numbers and bytes;
 *   - accepted/duplicate results leave the outbox in the same transaction that applies them
 *     to the confirmed state; refused ones move to the refused list with the server's
 *     reason and the view falls back to the confirmed state (refusal undo); ESEQ_GAP keeps
 *     the change;
 *   - welcome with a higher server_dseq moves numbering above it;
 *   - pulled changes and the cursor are stored together.
 */
#include "check.h"
#include "client_local_support.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static char *new_child(fieldsync_db *db, const char *village, const char *household)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "张小花"));
    CHECK_OK(fieldsync_set_text(r, "village", village));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "medium"));
    if (household)
        CHECK_OK(fieldsync_set_ref(r, "household", household));
    CHECK_OK(fieldsync_record_save(r));
    char *id = strdup(fieldsync_record_id(r));
    fieldsync_record_free(r);
    return id;
}

static char *new_visit(fieldsync_db *db, const char *child, int i)
{
    fieldsync_record *r;
    char note[64];
    snprintf(note, sizeof note, "第%d次走访：一切正常", i);
    CHECK_OK(fieldsync_record_new(db, "visit", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", child));
    CHECK_OK(fieldsync_set_enum(r, "kind", "home_visit"));
    CHECK_OK(fieldsync_set_time(r, "visited_at", 1725235200 + i));
    CHECK_OK(fieldsync_set_text(r, "concerns", note));
    CHECK_OK(fieldsync_record_save(r));
    char *id = strdup(fieldsync_record_id(r));
    fieldsync_record_free(r);
    return id;
}

static char *new_report(fieldsync_db *db, const char *child)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "report", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", child));
    CHECK_OK(fieldsync_set_enum(r, "category", "living_alone"));
    CHECK_OK(fieldsync_set_text(r, "observed", "孩子独自居住"));
    CHECK_OK(fieldsync_set_parse(r, "observed_at", "now"));
    CHECK_OK(fieldsync_set_enum(r, "status", "reported"));
    CHECK_OK(fieldsync_record_save(r));
    char *id = strdup(fieldsync_record_id(r));
    fieldsync_record_free(r);
    return id;
}

/* type name and record id of a batch item */
static void item_info(fieldsync_db *db, const ob_item *it, const char **type, char *rec)
{
    change c;
    mpr r;
    fs_error e = {0};
    mpr_init(&r, it->body, it->len);
    CHECK_OK(change_unpack(&r, db->s, false, &c, &e));
    CHECK_INT(c.dseq, ==, it->dseq);
    *type = schema_type_by_id(db->s, c.type)->name;
    rid_to_text(&c.record, rec);
}

static void results(const ob_batch *b, wire_result *res, uint8_t status, int code)
{
    for (size_t i = 0; i < b->n; i++) {
        res[i] = (wire_result){.dseq = b->items[i].dseq, .status = status, .code = code};
        if (status == APPLY_REFUSED) {
            res[i].text = "made-up refusal for the test";
            res[i].text_len = (uint32_t)strlen(res[i].text);
        }
    }
}

static int64_t outbox_count(fieldsync_db *db)
{
    return sdk_count(db, "SELECT count(*) FROM dev_outbox");
}

static void test_fast_lane(void)
{
    fieldsync_db *db =
        cl_open_enrolled(dir, "lane.db", "00112233445566778899aabbccddeeff", "visitor");
    char *child = new_child(db, "v1", NULL);
    char *visits[1000];
    for (int i = 0; i < 1000; i++)
        visits[i] = new_visit(db, child, i);
    char *report = new_report(db, child);
    CHECK_INT(outbox_count(db), ==, 1002);

    ob_batch b = {0};
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 16);
    const char *type;
    char rec[40];
    item_info(db, &b.items[0], &type, rec);
    CHECK_STR(type, "child"); /* the report's dependency goes first */
    CHECK_STR(rec, child);
    CHECK_INT(b.items[0].dseq, ==, 1);
    item_info(db, &b.items[1], &type, rec);
    CHECK_STR(type, "report");
    CHECK_STR(rec, report);
    CHECK_INT(b.items[1].dseq, ==, 2);
    for (size_t i = 2; i < b.n; i++) {
        item_info(db, &b.items[i], &type, rec);
        CHECK_STR(type, "visit");
        CHECK_STR(rec, visits[i - 2]); /* the rest in creation order */
        CHECK_INT(b.items[i].dseq, ==, i + 1);
    }
    /* not answered (link lost): the same numbers and bytes go again */
    ob_batch again = {0};
    CHECK_OK(outbox_next_batch(db, 16, 65536, &again));
    CHECK_INT(again.n, ==, b.n);
    for (size_t i = 0; i < b.n; i++) {
        CHECK_INT(again.items[i].dseq, ==, b.items[i].dseq);
        CHECK_INT(again.items[i].len, ==, b.items[i].len);
        CHECK(!memcmp(again.items[i].body, b.items[i].body, b.items[i].len));
    }
    ob_batch_free(&again);

    /* all accepted: out of the outbox, into the confirmed state, in one transaction */
    wire_result res[256];
    results(&b, res, APPLY_ACCEPTED, 0);
    ob_counts cnt = {0};
    CHECK_OK(outbox_apply_results(db, &b, res, b.n, &cnt));
    CHECK_INT(cnt.accepted, ==, 16);
    CHECK_INT(outbox_count(db), ==, 1002 - 16);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM log"), ==, 16);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_outbox o JOIN log l ON l.dseq = o.dseq "
                            "AND l.device IS NOT NULL"),
              ==, 0);
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, child, &r));
    CHECK(fieldsync_record_confirmed(r));
    CHECK(!fieldsync_record_pending(r));
    fieldsync_field f;
    CHECK_OK(fieldsync_get(r, "name", &f));
    CHECK_STR(f.text, "张小花");
    CHECK_STR(f.author, "wang");
    fieldsync_record_free(r);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.acked_dseq, ==, 16);
    CHECK_INT(id.next_dseq, ==, 17);

    /* next batch: visits 15.. continue the numbering; refuse the last one */
    CHECK_OK(outbox_next_batch(db, 200, 1 << 20, &b));
    CHECK_INT(b.n, ==, 200);
    CHECK_INT(b.items[0].dseq, ==, 17);
    results(&b, res, APPLY_ACCEPTED, 0);
    res[199].status = APPLY_REFUSED;
    res[199].code = FS_EREF;
    res[199].text = "the child this visit refers to is not on the server";
    res[199].text_len = (uint32_t)strlen(res[199].text);
    res[198].status = APPLY_DUPLICATE;
    memset(&cnt, 0, sizeof cnt);
    CHECK_OK(outbox_apply_results(db, &b, res, b.n, &cnt));
    CHECK_INT(cnt.accepted, ==, 198);
    CHECK_INT(cnt.duplicates, ==, 1);
    CHECK_INT(cnt.refused, ==, 1);
    const char *refused_visit = visits[14 + 199];
    /* refusal undo: the visit no longer exists on the device; the reason is kept */
    CHECK_INT(fieldsync_record_load(db, refused_visit, &r), ==, FIELDSYNC_ENOTFOUND);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_refused WHERE code = -47"), ==, 1);
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.refused, ==, 1);
    CHECK_INT(id.acked_dseq, ==, 216);

    /* a gap answer consumes nothing: the change stays, numbered, and the sync stops */
    CHECK_OK(outbox_next_batch(db, 4, 65536, &b));
    CHECK_INT(b.items[0].dseq, ==, 217);
    results(&b, res, APPLY_REFUSED, FS_ESEQ_GAP);
    memset(&cnt, 0, sizeof cnt);
    CHECK_INT(outbox_apply_results(db, &b, res, b.n, &cnt), ==, FIELDSYNC_ESEQUENCE);
    CHECK_INT(cnt.gaps, ==, 4);
    CHECK_OK(outbox_next_batch(db, 4, 65536, &b));
    CHECK_INT(b.items[0].dseq, ==, 217);

    /* the server has consumed more than this replica numbered: new numbers go above */
    CHECK_OK(outbox_welcome(db, 5000));
    CHECK_OK(outbox_next_batch(db, 8, 65536, &b));
    CHECK_INT(b.n, ==, 8);
    CHECK_INT(b.items[3].dseq, ==, 220);
    CHECK_INT(b.items[4].dseq, ==, 5001);
    ob_batch_free(&b);
    free(report);
    free(child);
    for (int i = 0; i < 1000; i++)
        free(visits[i]);
    fieldsync_close(db);
}

static void test_dependencies_and_undo(void)
{
    fieldsync_db *db =
        cl_open_enrolled(dir, "deps.db", "ffeeddccbbaa99887766554433221100", "visitor");
    fieldsync_record *h;
    CHECK_OK(fieldsync_record_new(db, "household", &h));
    CHECK_OK(fieldsync_set_text(h, "village", "v1"));
    CHECK_OK(fieldsync_set_text(h, "guardian_name", "张奶奶"));
    CHECK_OK(fieldsync_record_save(h));
    char *other = new_child(db, "v1", NULL);
    char *child = new_child(db, "v1", fieldsync_record_id(h));
    char *v[3];
    for (int i = 0; i < 3; i++)
        v[i] = new_visit(db, other, i);
    char *report = new_report(db, child);
    ob_batch b = {0};
    CHECK_OK(outbox_next_batch(db, 3, 65536, &b));
    CHECK_INT(b.n, ==, 3);
    const char *type;
    char rec[40];
    item_info(db, &b.items[0], &type, rec);
    CHECK_STR(type, "household");
    CHECK_STR(rec, fieldsync_record_id(h));
    item_info(db, &b.items[1], &type, rec);
    CHECK_STR(rec, child);
    item_info(db, &b.items[2], &type, rec);
    CHECK_STR(rec, report);
    wire_result res[16];
    ob_counts cnt = {0};
    results(&b, res, APPLY_ACCEPTED, 0);
    CHECK_OK(outbox_apply_results(db, &b, res, b.n, &cnt));
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 4); /* other child, then its visits */
    item_info(db, &b.items[0], &type, rec);
    CHECK_STR(rec, other);
    results(&b, res, APPLY_ACCEPTED, 0);
    CHECK_OK(outbox_apply_results(db, &b, res, b.n, &cnt));
    CHECK_INT(outbox_count(db), ==, 0);

    /* refusal undo of an edit: the confirmed value shows again */
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, child, &r));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "low"));
    CHECK_OK(fieldsync_set_text(r, "school", "镇中心小学"));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_field f;
    CHECK_OK(fieldsync_get(r, "risk_level", &f));
    CHECK_STR(f.text, "low");
    CHECK(f.pending);
    fieldsync_record_free(r);
    CHECK_OK(outbox_next_batch(db, 16, 65536, &b));
    CHECK_INT(b.n, ==, 1);
    results(&b, res, APPLY_REFUSED, FS_EROLE);
    CHECK_OK(outbox_apply_results(db, &b, res, b.n, &cnt));
    CHECK_OK(fieldsync_record_load(db, child, &r));
    CHECK_OK(fieldsync_get(r, "risk_level", &f));
    CHECK_STR(f.text, "medium");
    CHECK(!f.pending);
    CHECK_OK(fieldsync_get(r, "school", &f));
    CHECK(!f.present);
    CHECK(!fieldsync_record_pending(r));
    fieldsync_record_free(r);
    CHECK_INT(sdk_count(db, "SELECT count(*) FROM dev_refused"), ==, 1);
    CHECK_OK(fieldsync_refused_dismiss(db, 1));
    CHECK_INT(fieldsync_refused_dismiss(db, 1), ==, FIELDSYNC_ENOTFOUND);

    /* pulled: another device's change and the cursor, together */
    change c;
    memset(&c, 0, sizeof c);
    c.type = (uint8_t)schema_type_by_name(db->s, "child")->id;
    CHECK_OK(rid_from_text(child, &c.record));
    CHECK_OK(rid_from_text("abababababababababababababababab", &c.device));
    c.hlc = hlc_now(store_clock(db->st)) + 1000;
    c.base = 1;
    c.dseq = 7;
    c.author = "li";
    c.author_len = 2;
    c.role = 1;
    c.n_fields = 1;
    c.fields[0].num = (uint8_t)schema_field_by_name(schema_type_by_id(db->s, c.type), "school")->num;
    c.fields[0].v.kind = VAL_STR;
    c.fields[0].v.u.s.p = "村小";
    c.fields[0].v.u.s.len = (uint32_t)strlen("村小");
    uint64_t applied;
    apply_result ar[1];
    CHECK_OK(outbox_apply_pulled(db, &c, 1, 42, ar, &applied));
    CHECK_INT(applied, ==, 1);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 42);
    CHECK_OK(outbox_apply_pulled(db, &c, 1, 43, ar, &applied));
    CHECK_INT(applied, ==, 0); /* applying twice has no effect */
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.cursor, ==, 43);
    CHECK_OK(fieldsync_record_load(db, child, &r));
    CHECK_OK(fieldsync_get(r, "school", &f));
    CHECK_STR(f.text, "村小");
    CHECK_STR(f.author, "li");
    fieldsync_record_free(r);
    ob_batch_free(&b);
    fieldsync_record_free(h);
    free(other);
    free(child);
    free(report);
    for (int i = 0; i < 3; i++)
        free(v[i]);
    fieldsync_close(db);
}

int main(void)
{
    cl_mkdir("client-outbox", dir, sizeof dir);
    test_fast_lane();
    test_dependencies_and_undo();
    cl_rmdir(dir);
    printf("client_local_outbox: ok\n");
    return 0;
}

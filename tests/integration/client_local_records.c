/*
 * client_local_records.c — the device SDK without a server: creating and editing records
 * through the public API, validation errors (returned with a message, never asserted), the
 * confirmed+pending overlay, and the lists (children of a village, a child's visits, open
 * reports). Uses only the public API (fieldsync.h); its scratch folder comes from
 * client_local_support.h.
 */
#include "check.h"
#include "client_local_support.h"
#include "fieldsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static fieldsync_db *open_fresh(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fieldsync_db *db = NULL;
    int rc = fieldsync_open(path, NULL, &db);
    if (rc)
        fprintf(stderr, "open: %s\n", fieldsync_errmsg(NULL));
    CHECK_OK(rc);
    return db;
}

static const char *text_of(fieldsync_record *r, const char *field)
{
    static fieldsync_field f;
    CHECK_OK(fieldsync_get(r, field, &f));
    return f.text;
}

static int count_cb(void *ctx, fieldsync_record *rec)
{
    (void)rec;
    (*(int *)ctx)++;
    return 0;
}

static void test_create_and_validate(fieldsync_db *db)
{
    fieldsync_record *r;
    CHECK_INT(fieldsync_record_new(db, "dragon", &r), ==, FIELDSYNC_ETYPE);
    CHECK(strstr(fieldsync_errmsg(db), "dragon"));
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    /* unknown field, wrong setter, bad enum code, range, length, date, UTF-8 */
    CHECK_INT(fieldsync_set_text(r, "nickname", "x"), ==, FIELDSYNC_EFIELD);
    CHECK(strstr(fieldsync_errmsg(db), "nickname"));
    CHECK_INT(fieldsync_set_int(r, "name", 3), ==, FIELDSYNC_EFIELD);
    CHECK_INT(fieldsync_set_enum(r, "gender", "girl"), ==, FIELDSYNC_EVALUE);
    CHECK(strstr(fieldsync_errmsg(db), "female"));
    CHECK_INT(fieldsync_set_int(r, "grade", 13), ==, FIELDSYNC_EVALUE);
    CHECK(strstr(fieldsync_errmsg(db), "grade"));
    CHECK_INT(fieldsync_set_text(r, "id_number", "1234567890123456789"), ==, FIELDSYNC_EVALUE);
    CHECK_INT(fieldsync_set_date(r, "birth_date", 20230230), ==, FIELDSYNC_EVALUE);
    CHECK_INT(fieldsync_set_text(r, "school", "\xff\xfe"), ==, FIELDSYNC_EVALUE);
    CHECK_INT(fieldsync_set_parse(r, "in_difficulty", "maybe"), ==, FIELDSYNC_EVALUE);
    CHECK_INT(fieldsync_set_add(r, "services_received", "magic"), ==, FIELDSYNC_EVALUE);
    CHECK_INT(fieldsync_set_null(r, "name"), ==, FIELDSYNC_EREQUIRED);
    /* nothing set yet: saving is refused, then required fields are named */
    CHECK_INT(fieldsync_record_save(r), ==, FIELDSYNC_EEMPTY);
    CHECK_OK(fieldsync_set_text(r, "name", "王小明"));
    CHECK_INT(fieldsync_record_save(r), ==, FIELDSYNC_EREQUIRED);
    CHECK(strstr(fieldsync_errmsg(db), "village"));
    CHECK_OK(fieldsync_set_text(r, "village", "cq-wx-hx-01"));
    CHECK_OK(fieldsync_set_enum(r, "gender", "female"));
    CHECK_OK(fieldsync_set_date(r, "birth_date", 20120304));
    CHECK_OK(fieldsync_set_int(r, "grade", 4));
    CHECK_OK(fieldsync_set_bool(r, "in_difficulty", 1));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "medium"));
    CHECK_OK(fieldsync_set_add(r, "services_received", "medical_treatment"));
    CHECK_OK(fieldsync_set_parse(r, "services_received", "legal_aid,-medical_treatment"));
    CHECK_OK(fieldsync_record_save(r));
    CHECK(fieldsync_record_pending(r));
    CHECK(!fieldsync_record_confirmed(r));
    CHECK_STR(text_of(r, "name"), "王小明");
    CHECK_STR(text_of(r, "birth_date"), "2012-03-04");
    CHECK_STR(text_of(r, "services_received"), "legal_aid");
    fieldsync_field f;
    CHECK_OK(fieldsync_get(r, "gender", &f));
    CHECK(f.pending && f.present);
    CHECK_STR(f.json, "\"female\"");
    CHECK_OK(fieldsync_get(r, "school", &f));
    CHECK(!f.present);
    CHECK_STR(f.json, "null");
    char id[64];
    snprintf(id, sizeof id, "%s", fieldsync_record_id(r));
    fieldsync_record_free(r);

    /* reload: the overlay shows the pending create; edit it */
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_STR(fieldsync_record_type(r), "child");
    CHECK_STR(text_of(r, "name"), "王小明");
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "high"));
    CHECK_OK(fieldsync_set_text(r, "school", "红星村小学"));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_STR(text_of(r, "risk_level"), "high");
    CHECK_STR(text_of(r, "school"), "红星村小学");
    fieldsync_record_free(r);

    /* visits are append-only: created once, then fixed */
    CHECK_OK(fieldsync_record_new(db, "visit", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", id));
    CHECK_OK(fieldsync_set_enum(r, "kind", "home_visit"));
    CHECK_OK(fieldsync_set_time(r, "visited_at", 1725235200));
    CHECK_OK(fieldsync_set_text(r, "concerns", "祖母腿脚不便，孩子常独自做饭"));
    CHECK_OK(fieldsync_record_save(r));
    CHECK_INT(fieldsync_set_text(r, "concerns", "x"), ==, FIELDSYNC_EIMMUTABLE);
    CHECK_INT(fieldsync_set_ref(r, "child", "not-an-id"), ==, FIELDSYNC_EIMMUTABLE);
    fieldsync_record_free(r);
    CHECK_OK(fieldsync_record_new(db, "visit", &r));
    CHECK_INT(fieldsync_set_ref(r, "child", "not-an-id"), ==, FIELDSYNC_EVALUE);
    fieldsync_record_free(r);

    /* reports: immutable facts, forward-moving status */
    CHECK_OK(fieldsync_record_new(db, "report", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", id));
    CHECK_OK(fieldsync_set_enum(r, "category", "living_alone"));
    CHECK_OK(fieldsync_set_text(r, "observed", "孩子独自居住两周"));
    CHECK_OK(fieldsync_set_parse(r, "observed_at", "2024-09-03T10:30"));
    CHECK_OK(fieldsync_set_enum(r, "status", "reported"));
    CHECK_OK(fieldsync_record_save(r));
    CHECK_INT(fieldsync_set_text(r, "observed", "changed"), ==, FIELDSYNC_EIMMUTABLE);
    CHECK_OK(fieldsync_set_enum(r, "status", "police_accepted"));
    CHECK_OK(fieldsync_record_save(r));
    CHECK_STR(text_of(r, "status"), "police_accepted");
    fieldsync_record_free(r);

    /* lists over the view */
    int n = 0;
    CHECK_OK(fieldsync_children(db, "cq-wx-hx-01", count_cb, &n));
    CHECK_INT(n, ==, 1);
    n = 0;
    CHECK_OK(fieldsync_children(db, "cq-wx-other", count_cb, &n));
    CHECK_INT(n, ==, 0);
    n = 0;
    CHECK_OK(fieldsync_visits(db, id, count_cb, &n));
    CHECK_INT(n, ==, 1);
    n = 0;
    CHECK_OK(fieldsync_open_reports(db, count_cb, &n));
    CHECK_INT(n, ==, 1);
    CHECK_INT(fieldsync_record_load(db, "01234567-89ab-cdef-0123-456789abcdef", &r), ==,
              FIELDSYNC_ENOTFOUND);
    CHECK_INT(fieldsync_record_load(db, "zz", &r), ==, FIELDSYNC_EINVAL);
}

static void test_village_move_and_close(fieldsync_db *db)
{
    fieldsync_record *c;
    CHECK_OK(fieldsync_record_new(db, "child", &c));
    CHECK_OK(fieldsync_set_text(c, "name", "李娟"));
    CHECK_OK(fieldsync_set_text(c, "village", "v-a"));
    CHECK_OK(fieldsync_record_save(c));
    /* moving the child lists it under its new village at once */
    CHECK_OK(fieldsync_set_text(c, "village", "v-b"));
    CHECK_OK(fieldsync_record_save(c));
    int na = 0, nb = 0;
    CHECK_OK(fieldsync_children(db, "v-a", count_cb, &na));
    CHECK_OK(fieldsync_children(db, "v-b", count_cb, &nb));
    CHECK_INT(na, ==, 0);
    CHECK_INT(nb, ==, 1);
    /* a closed report is no longer open */
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "report", &r));
    CHECK_OK(fieldsync_set_ref(r, "child", fieldsync_record_id(c)));
    CHECK_OK(fieldsync_set_enum(r, "category", "missing"));
    CHECK_OK(fieldsync_set_text(r, "observed", "未到校三天"));
    CHECK_OK(fieldsync_set_parse(r, "observed_at", "now"));
    CHECK_OK(fieldsync_set_enum(r, "status", "reported"));
    CHECK_OK(fieldsync_record_save(r));
    int before = 0, after = 0;
    CHECK_OK(fieldsync_open_reports(db, count_cb, &before));
    CHECK_OK(fieldsync_set_enum(r, "status", "closed"));
    CHECK_OK(fieldsync_record_save(r));
    CHECK_OK(fieldsync_open_reports(db, count_cb, &after));
    CHECK_INT(after, ==, before - 1);
    fieldsync_record_free(r);
    fieldsync_record_free(c);
}

typedef struct pend {
    int n, fast;
} pend;

static int pend_cb(void *ctx, const fieldsync_change_info *in)
{
    pend *p = ctx;
    p->n++;
    p->fast += in->priority == 0;
    CHECK_INT(in->dseq, ==, 0); /* nothing is numbered before it is sent */
    CHECK(in->summary && in->summary[0]);
    return 0;
}

int main(void)
{
    cl_mkdir("client-local", dir, sizeof dir);
    fieldsync_db *db = open_fresh("a.db");
    test_create_and_validate(db);
    test_village_move_and_close(db);
    pend p = {0};
    CHECK_OK(fieldsync_pending(db, pend_cb, &p));
    CHECK_INT(p.n, ==, 9);
    CHECK_INT(p.fast, ==, 4);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK(!id.enrolled);
    CHECK_INT(id.pending, ==, 9);
    /* sync without enrolment is a clear error, not a crash */
    CHECK_INT(fieldsync_sync(db, NULL, NULL, NULL, NULL), ==, FIELDSYNC_ENOTENROLLED);
    CHECK_INT(fieldsync_enrol(db, "http://x", "0123456789abcdef0123456789abcdef", "t"), ==,
              FIELDSYNC_EINVAL);
    CHECK_INT(fieldsync_enrol(db, "ws://127.0.0.1:9", "nothex", "t"), ==, FIELDSYNC_EINVAL);
    CHECK_OK(fieldsync_enrol(db, "ws://127.0.0.1:9", "0123456789abcdef0123456789abcdef", "t"));
    fieldsync_close(db);
    /* reopen: everything persisted */
    db = open_fresh("a.db");
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK(id.enrolled);
    CHECK_INT(id.pending, ==, 9);
    fieldsync_close(db);
    cl_rmdir(dir);
    printf("client_local_records: ok\n");
    return 0;
}

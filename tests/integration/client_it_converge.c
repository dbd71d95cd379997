/*
 * client_it_converge.c — concurrent edits on two devices converge by rule, on both devices and
 * on the server; a review item reaches the supervisor's device and is resolved from it; a
 * refused change (a visitor lowering a risk level) is undone on the device with the reason.
 *
 *   school             lww       the later clock wins (B edited after A)
 *   risk_level         escalate  concurrent high and medium resolve to high
 *   services_received  set       add-wins: both additions stay
 *   name               review    the later clock wins AND a review item opens
 */
#include "check.h"
#include "client_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct rv {
    int n;
    int64_t id;
    char a[128], b[128];
} rv;

static int review_cb(void *ctx, const fieldsync_review_info *in)
{
    rv *r = ctx;
    r->n++;
    r->id = in->id;
    snprintf(r->a, sizeof r->a, "%s", in->value_a);
    snprintf(r->b, sizeof r->b, "%s", in->value_b);
    CHECK_STR(in->field, "name");
    return 0;
}

typedef struct rf {
    int n, code;
    char name[32];
} rf;

static int refused_cb(void *ctx, const fieldsync_change_info *in)
{
    rf *r = ctx;
    r->n++;
    r->code = in->code;
    snprintf(r->name, sizeof r->name, "%s", in->code_name);
    return 0;
}

static void edit(fieldsync_db *db, const char *id, const char *school, const char *risk,
                 const char *service, const char *name)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_OK(fieldsync_set_text(r, "school", school));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", risk));
    CHECK_OK(fieldsync_set_add(r, "services_received", service));
    CHECK_OK(fieldsync_set_text(r, "name", name));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

int main(void)
{
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}, {"vb", "volunteer", "V1"}};
    it_world(&s, "it-converge", users, 2);
    it_admin(&s, "user add sup --role supervisor --township T1");
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *sv = it_device(&s, "sup", "s");

    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(a, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "刘洋"));
    CHECK_OK(fieldsync_set_text(r, "village", "V1"));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "low"));
    CHECK_OK(fieldsync_record_save(r));
    char id[40];
    snprintf(id, sizeof id, "%s", fieldsync_record_id(r));
    fieldsync_record_free(r);
    it_sync(a);
    it_sync(b);
    it_sync(sv);

    /* both offline, editing the same child; B a little later */
    edit(a, id, "红星小学", "high", "medical_treatment", "刘阳");
    usleep(20 * 1000);
    edit(b, id, "白云小学", "medium", "legal_aid", "刘洋洋");
    /* each sees its own edit at once (pending) */
    CHECK_STR(it_field(a, id, "school"), "红星小学");
    CHECK_STR(it_field(b, id, "school"), "白云小学");
    it_sync(a);
    it_sync(b);
    it_sync(a);
    fieldsync_sync_result res = it_sync(sv);
    CHECK_INT(res.reviews_opened, ==, 1);
    CHECK_INT(res.reviews_pending, ==, 1);
    fieldsync_db *all[] = {a, b, sv};
    for (int i = 0; i < 3; i++) {
        CHECK_STR(it_field(all[i], id, "school"), "白云小学");
        CHECK_STR(it_field(all[i], id, "risk_level"), "high");
        CHECK_STR(it_field(all[i], id, "services_received"), "medical_treatment,legal_aid");
        CHECK_STR(it_field(all[i], id, "name"), "刘洋洋");
    }
    /* the same bytes everywhere, server included */
    char pa[256], pb[256], ps[256];
    it_dbpath(&s, "a", pa, sizeof pa);
    it_dbpath(&s, "b", pb, sizeof pb);
    it_dbpath(&s, "s", ps, sizeof ps);
    static char st_a[8192], st_b[8192], st_s[8192], st_srv[8192];
    it_field_state(pa, id, st_a, sizeof st_a);
    it_field_state(pb, id, st_b, sizeof st_b);
    it_field_state(ps, id, st_s, sizeof st_s);
    CHECK(st_a[0]);
    CHECK_STR(st_a, st_b);
    CHECK_STR(st_a, st_s);

    /* the supervisor settles the name */
    rv items = {0};
    CHECK_OK(fieldsync_reviews(sv, review_cb, &items));
    CHECK_INT(items.n, ==, 1);
    CHECK(!strcmp(items.a, "刘阳") || !strcmp(items.b, "刘阳"));
    CHECK(!strcmp(items.a, "刘洋洋") || !strcmp(items.b, "刘洋洋"));
    CHECK_OK(fieldsync_review_resolve(sv, items.id, "刘洋"));
    CHECK_STR(it_field(sv, id, "name"), "刘洋");
    res = it_sync(sv);
    CHECK_INT(res.accepted, ==, 1);
    CHECK_INT(res.reviews_pending, ==, 0);
    CHECK_INT(it_sqlnum(s.db, "SELECT count(*) FROM review WHERE resolved_hlc = 0"), ==, 0);
    it_sync(a);
    it_sync(b);
    for (int i = 0; i < 3; i++)
        CHECK_STR(it_field(all[i], id, "name"), "刘洋");

    /* a visitor may not lower a risk level: refused, undone on the device, reason kept */
    fieldsync_record *low;
    CHECK_OK(fieldsync_record_load(a, id, &low));
    CHECK_OK(fieldsync_set_enum(low, "risk_level", "low"));
    CHECK_OK(fieldsync_record_save(low));
    fieldsync_record_free(low);
    CHECK_STR(it_field(a, id, "risk_level"), "low");
    res = it_sync(a);
    CHECK_INT(res.refused, ==, 1);
    CHECK_STR(it_field(a, id, "risk_level"), "high");
    rf ref = {0};
    CHECK_OK(fieldsync_refused(a, refused_cb, &ref));
    CHECK_INT(ref.n, ==, 1);
    CHECK_STR(ref.name, "EROLE");
    /* the supervisor may */
    CHECK_OK(fieldsync_record_load(sv, id, &low));
    CHECK_OK(fieldsync_set_enum(low, "risk_level", "low"));
    CHECK_OK(fieldsync_record_save(low));
    fieldsync_record_free(low);
    res = it_sync(sv);
    CHECK_INT(res.accepted, ==, 1);
    it_sync(a);
    CHECK_STR(it_field(a, id, "risk_level"), "low");

    it_sync(b);
    it_sync(sv);
    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(sv);
    it_srv_stop(&s); /* the server writes its field cache at exit */
    it_field_state(pa, id, st_a, sizeof st_a);
    it_field_state(pb, id, st_b, sizeof st_b);
    it_field_state(ps, id, st_s, sizeof st_s);
    it_field_state(s.db, id, st_srv, sizeof st_srv);
    CHECK(st_a[0]);
    CHECK_STR(st_a, st_b);
    CHECK_STR(st_a, st_s);
    CHECK_STR(st_a, st_srv);
    it_rmdir(s.dir);
    printf("client_it_converge: ok\n");
    return 0;
}

/*
 * client_it_village.c — the real server and three devices on 127.0.0.1.
 * Device A (visitor, village V1) creates 200 children and syncs; then, offline, records 500
 * visits and edits all 200 children, and syncs again. Device B (volunteer, V1) pulls and sees
 * everything; device C (visitor, V2) sees none of it. The confirmed state of every record is
 * byte-identical on A, B and the server. The CLI reads B's replica with Chinese text intact.
 */
#include "check.h"
#include "client_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CHILDREN 200
#define N_VISITS 500

int main(void)
{
    srv s;
    static const it_user users[] = {
        {"va", "visitor", "V1"}, {"vb", "volunteer", "V1"}, {"vc", "visitor", "V2"}};
    it_world(&s, "it-village", users, 3);
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *c = it_device(&s, "vc", "c");

    static char ids[N_CHILDREN][40];
    for (int i = 0; i < N_CHILDREN; i++) {
        fieldsync_record *r;
        char name[64];
        snprintf(name, sizeof name, "王小明%03d", i);
        CHECK_OK(fieldsync_record_new(a, "child", &r));
        CHECK_OK(fieldsync_set_text(r, "name", name));
        CHECK_OK(fieldsync_set_text(r, "village", "V1"));
        CHECK_OK(fieldsync_set_enum(r, "gender", i % 2 ? "male" : "female"));
        CHECK_OK(fieldsync_set_enum(r, "risk_level", "low"));
        CHECK_OK(fieldsync_record_save(r));
        snprintf(ids[i], sizeof ids[i], "%s", fieldsync_record_id(r));
        fieldsync_record_free(r);
    }
    fieldsync_sync_result r = it_sync(a);
    CHECK_INT(r.accepted, ==, N_CHILDREN);

    /* offline: 500 visits and 200 edits */
    static char visits[N_VISITS][40];
    for (int i = 0; i < N_VISITS; i++) {
        fieldsync_record *v;
        char note[128];
        snprintf(note, sizeof note, "第%d次走访：祖母身体尚可，孩子按时上学。", i);
        CHECK_OK(fieldsync_record_new(a, "visit", &v));
        CHECK_OK(fieldsync_set_ref(v, "child", ids[i % N_CHILDREN]));
        CHECK_OK(fieldsync_set_enum(v, "kind", "home_visit"));
        CHECK_OK(fieldsync_set_time(v, "visited_at", 1725235200 + i * 60));
        CHECK_OK(fieldsync_set_text(v, "living_situation", note));
        CHECK_OK(fieldsync_record_save(v));
        snprintf(visits[i], sizeof visits[i], "%s", fieldsync_record_id(v));
        fieldsync_record_free(v);
    }
    for (int i = 0; i < N_CHILDREN; i++) {
        fieldsync_record *e;
        CHECK_OK(fieldsync_record_load(a, ids[i], &e));
        CHECK_OK(fieldsync_set_text(e, "school", "红星村小学"));
        CHECK_OK(fieldsync_set_int(e, "grade", i % 12));
        CHECK_OK(fieldsync_set_enum(e, "risk_level", "medium"));
        CHECK_OK(fieldsync_record_save(e));
        fieldsync_record_free(e);
    }
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(a, &id));
    CHECK_INT(id.pending, ==, N_VISITS + N_CHILDREN);
    r = it_sync(a);
    CHECK_INT(r.sent, ==, N_VISITS + N_CHILDREN);
    CHECK_INT(r.accepted, ==, N_VISITS + N_CHILDREN);
    CHECK_INT(r.refused, ==, 0);
    CHECK_INT(r.pending, ==, 0);
    printf("A pushed %d changes: %llu bytes up, %llu down\n", N_VISITS + N_CHILDREN,
           (unsigned long long)r.bytes_up, (unsigned long long)r.bytes_down);

    /* B in the same village sees all of it */
    r = it_sync(b);
    CHECK_INT(r.received, ==, 2 * N_CHILDREN + N_VISITS);
    CHECK_INT(it_count(b, "child", "V1", NULL), ==, N_CHILDREN);
    CHECK_INT(it_count(b, "visit", NULL, NULL), ==, N_VISITS);
    CHECK_INT(it_count(b, "visit", NULL, ids[0]), ==, 3);
    CHECK_INT(it_count(b, "visit", NULL, ids[N_CHILDREN - 1]), ==, 2);
    CHECK_STR(it_field(b, ids[7], "school"), "红星村小学");
    CHECK_STR(it_field(b, ids[7], "grade"), "7");
    CHECK_STR(it_field(b, ids[7], "risk_level"), "medium");
    CHECK_STR(it_field(b, ids[7], "name"), "王小明007");

    /* C in another village sees none */
    r = it_sync(c);
    CHECK_INT(r.received, ==, 0);
    CHECK_INT(it_count(c, "child", NULL, NULL), ==, 0);
    CHECK_INT(it_count(c, "visit", NULL, NULL), ==, 0);
    CHECK_INT(fieldsync_record_load(c, ids[0], &(fieldsync_record *){NULL}), ==,
              FIELDSYNC_ENOTFOUND);

    /* A pulls too (nothing new but its cursor), then compare the confirmed states */
    it_sync(a);
    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(c);
    it_srv_stop(&s); /* the server writes its field cache at exit */
    char pa[256], pb[256];
    it_dbpath(&s, "a", pa, sizeof pa);
    it_dbpath(&s, "b", pb, sizeof pb);
    static char sa[16384], sb[16384], ss[16384];
    for (int i = 0; i < N_CHILDREN + N_VISITS; i++) {
        const char *rec = i < N_CHILDREN ? ids[i] : visits[i - N_CHILDREN];
        it_field_state(pa, rec, sa, sizeof sa);
        it_field_state(pb, rec, sb, sizeof sb);
        it_field_state(s.db, rec, ss, sizeof ss);
        CHECK(sa[0]);
        CHECK_STR(sa, sb);
        CHECK_STR(sa, ss);
    }
    /* the command-line device reads B's replica, Chinese intact */
    char out[8192];
    CHECK_INT(it_cli(pb, out, sizeof out, "--json show %s", ids[3]), ==, 0);
    CHECK(strstr(out, "\"name\": \"王小明003\""));
    CHECK(strstr(out, "\"school\": \"红星村小学\""));
    CHECK_INT(it_cli(pb, out, sizeof out, "show 01234567-89ab-cdef-0123-456789abcdef 2>&1"), ==, 2);
    it_rmdir(s.dir);
    printf("client_it_village: ok\n");
    return 0;
}

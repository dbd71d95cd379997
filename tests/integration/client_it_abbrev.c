/*
 * client_it_abbrev.c — abbreviated record ids (protocol §3.1) between the SDK and the real
 * server on 127.0.0.1:
 *   - device B creates child X; device A pulls it and edits it: the edit goes out with X's
 *     id abbreviated (X is confirmed on A) and is accepted, applied to X;
 *   - device B creates child Y whose id is made (in B's outbox, before its first send) to
 *     share X's first 9 bytes; the server then holds two records for the abbreviation;
 *   - A edits X again: the abbreviated edit is refused EREC_ABBREV (not consumed), the SDK
 *     resends it under the same dseq with the full id in the same sync, and it is accepted
 *     once: two sends, one acceptance, nothing refused or pending, X changed and Y not.
 */
#include "check.h"
#include "client_support.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* Record id text (8-4-4-4-12) to 16 bytes. */
static void id_bytes(const char *text, unsigned char out[16])
{
    int k = 0;
    for (const char *p = text; *p && k < 32; p++) {
        if (*p == '-')
            continue;
        if (k % 2 == 0)
            out[k / 2] = (unsigned char)(hexval(*p) << 4);
        else
            out[k / 2] |= (unsigned char)hexval(*p);
        k++;
    }
    CHECK_INT(k, ==, 32);
}

static void id_text(const unsigned char b[16], char *out)
{
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* Rewrites the pending (never sent) changes of record `from` in replica file dbfile to record
 * `to`: the outbox's record column and the id in the push-form body ([array6][type][c4 10]
 * [16 bytes]...). */
static void retarget(const char *dbfile, const unsigned char from[16], const unsigned char to[16])
{
    sqlite3 *db;
    CHECK_INT(sqlite3_open(dbfile, &db), ==, SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *q, *u;
    CHECK_INT(sqlite3_prepare_v2(db, "SELECT id, body FROM dev_outbox WHERE record = ?1 AND "
                                     "dseq IS NULL",
                                 -1, &q, NULL),
              ==, SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(db, "UPDATE dev_outbox SET record = ?1, body = ?2 WHERE id = ?3",
                                 -1, &u, NULL),
              ==, SQLITE_OK);
    sqlite3_bind_blob(q, 1, from, 16, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(q, 1);
        unsigned char body[4096];
        CHECK(len > 20 && len <= (int)sizeof body);
        memcpy(body, sqlite3_column_blob(q, 1), (size_t)len);
        CHECK_INT(body[2], ==, 0xc4);
        CHECK_INT(body[3], ==, 16);
        CHECK(!memcmp(body + 4, from, 16));
        memcpy(body + 4, to, 16);
        sqlite3_reset(u);
        sqlite3_bind_blob(u, 1, to, 16, SQLITE_STATIC);
        sqlite3_bind_blob(u, 2, body, len, SQLITE_STATIC);
        sqlite3_bind_int64(u, 3, sqlite3_column_int64(q, 0));
        CHECK_INT(sqlite3_step(u), ==, SQLITE_DONE);
        n++;
    }
    CHECK_INT(n, ==, 1);
    sqlite3_finalize(q);
    sqlite3_finalize(u);
    CHECK_INT(sqlite3_close(db), ==, SQLITE_OK);
}

static void set_grade(fieldsync_db *db, const char *id, int64_t grade)
{
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_OK(fieldsync_set_int(r, "grade", grade));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

int main(void)
{
    srv s;
    static const it_user users[] = {{"va", "visitor", "V1"}, {"vb", "visitor", "V1"}};
    it_world(&s, "it-abbrev", users, 2);
    it_srv_start(&s);
    fieldsync_db *a = it_device(&s, "va", "a");
    fieldsync_db *b = it_device(&s, "vb", "b");

    char x[40], y[40];
    it_child(b, "李小红", "V1", x);
    fieldsync_sync_result r = it_sync(b);
    CHECK_INT(r.accepted, ==, 1);
    r = it_sync(a);
    CHECK_INT(r.received, ==, 1);

    /* an edit of a pulled record: abbreviated, accepted, applied to X */
    set_grade(a, x, 3);
    r = it_sync(a);
    CHECK_INT(r.sent, ==, 1);
    CHECK_INT(r.accepted, ==, 1);
    CHECK_INT(r.refused, ==, 0);
    it_sync(b);
    CHECK_STR(it_field(b, x, "grade"), "3");

    /* Y, sharing X's first 9 bytes, created by B */
    it_child(b, "李小明", "V1", y);
    unsigned char xb[16], yb[16], nb[16];
    id_bytes(x, xb);
    id_bytes(y, yb);
    memcpy(nb, xb, 9);
    memcpy(nb + 9, yb + 9, 7);
    if (!memcmp(nb, xb, 16))
        nb[15] ^= 0x01;
    char bpath[256], y2[40];
    it_dbpath(&s, "b", bpath, sizeof bpath);
    retarget(bpath, yb, nb);
    id_text(nb, y2);
    r = it_sync(b);
    CHECK_INT(r.accepted, ==, 1);
    CHECK_INT(r.refused, ==, 0);

    /* the forced ambiguity: EREC_ABBREV, then the full id under the same dseq, accepted */
    fieldsync_identity before, after;
    CHECK_OK(fieldsync_identity_get(a, &before));
    set_grade(a, x, 4);
    r = it_sync(a);
    CHECK_INT(r.sent, ==, 2);
    CHECK_INT(r.accepted, ==, 1);
    CHECK_INT(r.duplicates, ==, 0);
    CHECK_INT(r.refused, ==, 0);
    CHECK_INT(r.pending, ==, 0);
    CHECK_OK(fieldsync_identity_get(a, &after));
    CHECK_INT(after.next_dseq, ==, before.next_dseq + 1); /* one number for both sends */
    CHECK_INT(after.acked_dseq, ==, before.next_dseq);
    CHECK_INT(after.refused, ==, 0);
    r = it_sync(b);
    CHECK_STR(it_field(b, x, "grade"), "4");
    CHECK_STR(it_field(b, y2, "grade"), "");
    CHECK_STR(it_field(a, x, "grade"), "4");

    fieldsync_close(a);
    fieldsync_close(b);
    it_srv_stop(&s);
    it_rmdir(s.dir);
    printf("client_it_abbrev: ok\n");
    return 0;
}

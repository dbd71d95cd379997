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

static void id_text(const unsigned char b[16], char *out)
{
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
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
    it_set_grade(a, x, 3);
    r = it_sync(a);
    CHECK_INT(r.sent, ==, 1);
    CHECK_INT(r.accepted, ==, 1);
    CHECK_INT(r.refused, ==, 0);
    it_sync(b);
    CHECK_STR(it_field(b, x, "grade"), "3");

    /* Y, sharing X's first 9 bytes, created by B */
    it_child(b, "李小明", "V1", y);
    unsigned char nb[16];
    char bpath[256], y2[40];
    it_dbpath(&s, "b", bpath, sizeof bpath);
    it_share_abbrev(bpath, x, y, nb);
    id_text(nb, y2);
    r = it_sync(b);
    CHECK_INT(r.accepted, ==, 1);
    CHECK_INT(r.refused, ==, 0);

    /* the forced ambiguity: EREC_ABBREV, then the full id under the same dseq, accepted */
    fieldsync_identity before, after;
    CHECK_OK(fieldsync_identity_get(a, &before));
    it_set_grade(a, x, 4);
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

/*
 * client_local_support.h — helpers of the device SDK tests without a server
 * (client_local_*.c): the scratch folder their replicas live in, and a replica enrolled and
 * told its user and role as a server's welcome would leave it, so that the SDK's internal
 * functions (client-sdk/internal.h) can be driven with push results made up by the test.
 *
 * Header-only (static inline, like exit_check.h): client.cmake links these tests with the
 * SDK and the engine only, not with client_support.c, whose helpers start the real server.
 * Failures abort through check.h, as in the tests themselves.
 */
#ifndef FS_CLIENT_LOCAL_SUPPORT_H
#define FS_CLIENT_LOCAL_SUPPORT_H

#include "check.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Makes a scratch folder /tmp/fs-NAME-XXXXXX into dir (cap bytes); the test removes it with
 * cl_rmdir when it passed (a failed test leaves it for a look). */
static inline void cl_mkdir(const char *name, char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/fs-%s-XXXXXX", name);
    CHECK(mkdtemp(dir));
}

/* Removes the scratch folder (rm -rf); a failure fails the test. */
static inline void cl_rmdir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_OK(system(cmd));
}

/* Opens a new replica at dir/NAME, enrolled as device dev (32 hex digits) with a server that
 * is never reached (ws://127.0.0.1:9), for user "wang" in role (a role of the schema), as a
 * welcome would have told it. Returns new (free with fieldsync_close). */
static inline fieldsync_db *cl_open_enrolled(const char *dir, const char *name, const char *dev,
                                             const char *role)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fieldsync_db *db = NULL;
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_OK(fieldsync_enrol(db, "ws://127.0.0.1:9", dev, "token"));
    CHECK_OK(kv_set_text(db, "user", "wang"));
    CHECK_OK(kv_set_text(db, "role", role));
    snprintf(db->user, sizeof db->user, "wang");
    db->role = schema_role_by_name(db->s, role);
    CHECK(db->role >= 0);
    return db;
}

#endif

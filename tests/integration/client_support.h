/*
 * client_support.h — helpers of the client integration tests (client_it_*.c): the real
 * fieldsyncd started as a process on 127.0.0.1 with port 0 (it prints the port it got) and
 * stopped by PID, its admin commands, devices enrolled through them, and field-state
 * comparison between replicas read straight from their SQLite files.
 *
 * Paths come from the environment CTest sets: FIELDSYNCD (server binary), FIELDSYNC_CLI
 * (command-line device), FIELDSYNC_SCHEMA.
 */
#ifndef FS_CLIENT_SUPPORT_H
#define FS_CLIENT_SUPPORT_H

#include "fieldsync.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct srv {
    pid_t pid;
    int port;
    char dir[128];     /* the test's scratch folder */
    char db[192];      /* server store */
    char url[64];      /* ws://127.0.0.1:PORT */
} srv;

/* Makes a scratch folder /tmp/fs-NAME-XXXXXX into dir (cap bytes). */
void it_mkdir(const char *name, char *dir, size_t cap);
/* Removes it (rm -rf). */
void it_rmdir(const char *dir);

/* Runs `fieldsyncd admin --db DB --json ARGS` (ARGS is shell text) and returns its stdout
 * (static buffer, valid until the next call); aborts the test if it exits non-zero. */
const char *it_admin(srv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the paths of a server whose store lives in dir (admin commands work from here on;
 * geography and users are best made before the start, as the daemon notices admin writes
 * only within a second). */
void it_srv_init(srv *s, const char *dir);
/* Starts the server on its store (created on first start) and waits for its
 * "listening on" line. */
void it_srv_start(srv *s);
/* The same with extra arguments (args: a NULL-terminated list, borrowed; NULL for none). */
void it_srv_start_args(srv *s, const char *const *args);
/* Stops it: SIGTERM, then waits up to 15 s. Aborts the test (naming dir/server.log, where
 * its stderr goes) unless it exited with status 0 and its log has no sanitizer report:
 * in the ASan build that is the leak check (exit_check.h). */
void it_srv_stop(srv *s);
/* For a forked child: be killed when the test process dies (aborted CHECK). */
void it_child_dies_with_parent(void);
/* kill -9 (no leak check can run; an earlier sanitizer report in the log still fails). */
void it_srv_kill(srv *s);

/* Township T1 with villages V1 and V2. */
void it_geo(srv *s);

/* A user made by it_world: `user add NAME --role ROLE --villages VILLAGE`. */
typedef struct it_user {
    const char *name, *role, *village;
} it_user;
/* The usual start of a test: a scratch folder /tmp/fs-NAME-XXXXXX (removed by the test with
 * it_rmdir(s->dir)), the server's store in it (it_srv_init), township T1 with villages V1
 * and V2 (it_geo) and the n users. The server is not started (it_srv_start, or
 * ft_srv_start with a fault). */
void it_world(srv *s, const char *name, const it_user *users, size_t n);

/* Enrols a new device for user and opens a replica at dir/NAME.db enrolled with it. */
fieldsync_db *it_device(srv *s, const char *user, const char *name);
/* Path of dir/NAME.db. */
void it_dbpath(srv *s, const char *name, char *out, size_t cap);

/* The device id of a replica as hex text without dashes (for X'...' in SQL), into hex
 * (33 bytes); it_hex_id does the same for id text. */
void it_device_hex(fieldsync_db *db, char *hex);
void it_hex_id(const char *id, char *hex);
/* Record id text (8-4-4-4-12) to its 16 bytes. */
void it_id_bytes(const char *text, unsigned char out[16]);
/* Rewrites the one pending (never sent) change of record `from` in replica file dbfile to
 * record `to`: the outbox's record column and the id in the push-form body ([array6][type]
 * [c4 10][16 bytes]...). Aborts unless exactly one such change is there. */
void it_retarget_pending(const char *dbfile, const unsigned char from[16],
                         const unsigned char to[16]);
/* Gives the pending create of record y in replica file dbfile (it_retarget_pending) a new id
 * that shares record x's first 9 bytes, its abbreviation (protocol §3.1), and differs from
 * x; nb gets the new id's bytes. */
void it_share_abbrev(const char *dbfile, const char *x, const char *y, unsigned char nb[16]);
/* Loads child record id on db, sets its grade and saves it. */
void it_set_grade(fieldsync_db *db, const char *id, int64_t grade);

/* Saves a child (name, village) on db; its id text into id (40 bytes), unless NULL. */
void it_child(fieldsync_db *db, const char *name, const char *village, char *id);
/* Saves a home visit of child (id text) at visited_at (Unix seconds), with the text field
 * mood unless NULL. */
void it_visit(fieldsync_db *db, const char *child, int64_t visited_at, const char *mood);

/* After a kill and restart, the server's side of exactly once: the log rows of device hex in
 * server_db are dseqs 1 .. total, one row each. */
void it_check_once(const char *server_db, const char *hex, long long total);
/* ... and the device's side: the replica's outbox and refusals are empty and its own
 * changes (device hex) are in its confirmed log once each: total rows. */
void it_check_device_done(const char *replica, const char *hex, long long total);

/* Syncs and checks FIELDSYNC_OK; returns the result. */
fieldsync_sync_result it_sync(fieldsync_db *db);

/* Runs the CLI (`fieldsync --db DB ARGS`, shell text), output to out; returns its exit code.
 * Aborts the test when the CLI died of a signal (in the ASan build, a leak: the report is on
 * the test's stderr unless ARGS redirect it). */
int it_cli(const char *db, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One SQL value (first column of the first row) from a SQLite file, as text; "" if none. */
void it_sql1(const char *dbfile, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
long long it_sqlnum(const char *dbfile, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The confirmed field state of record (id text) in a replica or server file, every column of
 * the store's fields table, as one string (into out). Two replicas that applied the same
 * changes give the same string. */
void it_field_state(const char *dbfile, const char *record, char *out, size_t cap);

/* Text of field of record as the device sees it (static buffer). */
const char *it_field(fieldsync_db *db, const char *record, const char *field);

/* Count records of a query (type, village or NULL, parent or NULL). */
int it_count(fieldsync_db *db, const char *type, const char *village, const char *parent);

#endif

/*
 * server_client.h — what the server's integration tests need to drive a real fieldsyncd:
 * start and stop the daemon by pid, run its admin commands, and speak fieldsync.v1 over a
 * hand-written WebSocket client on a raw socket.
 *
 * Why not libwebsockets' client: the tests must send what a correct client never would —
 * half a frame then a dropped connection, a 10 MiB message, fragments, text frames, a
 * wrong sub-protocol — and observe exactly what comes back (error messages, close codes).
 * A raw socket makes every byte explicit. The protocol layer above it uses the engine's own
 * codecs (wire.h, change.h), so what the tests send is what a device sends.
 *
 * Every helper that fails prints why and aborts (tests/check.h style): a test is a straight
 * line of steps. Daemons are started with PR_SET_PDEATHSIG so an aborted test never leaves
 * one behind.
 */
#ifndef FS_TEST_SERVER_CLIENT_H
#define FS_TEST_SERVER_CLIENT_H

#include "check.h"
#include "change.h"
#include "schema.h"
#include "store.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the environment of one test ------------------------------------------------- */

typedef struct tenv {
    const char *bin;       /* fieldsyncd */
    char dir[256];         /* private temp directory */
    char db[300];          /* dir/fieldsync.db */
    schema *s;
    wire_dicts *dicts;
} tenv;

/* Parses --bin PATH from argv, makes the temp dir, loads the schema ($FIELDSYNC_SCHEMA). */
void tenv_init(tenv *t, int argc, char **argv);
/* Removes the temp dir (only called when the test passed). */
void tenv_done(tenv *t);

/* ---- the daemon ------------------------------------------------------------------ */

typedef struct daemon_proc {
    pid_t pid;
    int port;
    char log[320];         /* its stderr */
} daemon_proc;

/* Starts fieldsyncd --db t->db --listen 127.0.0.1:0 plus extra args (NULL-terminated list),
 * waits for the "listening" line and parses the port. */
void daemon_start(tenv *t, daemon_proc *d, ...);
/* Sends sig and waits up to 15 s; returns the exit status (128 + 9 when sig is SIGKILL and
 * it died of it). Aborts the test, naming d->log, when it died of any other signal (in the
 * ASan build LeakSanitizer reports a leak with SIGABRT) or its log has a sanitizer report. */
int daemon_stop(daemon_proc *d, int sig);
/* Prints the daemon's stderr (after a failure, for the log). */
void daemon_dump_log(const daemon_proc *d);

/* Runs `fieldsyncd admin --db t->db ARGS...` (NULL-terminated), stdin from `input` (may be
 * NULL), captures stdout into out (NUL-terminated). Returns the exit status. */
int admin_run(tenv *t, char *out, size_t cap, const char *input, ...);
/* Extracts "key":"value" (a JSON string) from json into val. Aborts if missing. */
void json_field(const char *json, const char *key, char *val, size_t cap);

typedef struct enrolled {
    rid_t device;
    char id[40];
    char token[64];
} enrolled;
/* admin device enrol USER --json, parsed. */
void enrol(tenv *t, const char *user, enrolled *out);

/* ---- WebSocket over a raw socket -------------------------------------------------- */

typedef struct wsc {
    int fd;
    uint8_t *in;           /* bytes received, not yet parsed */
    size_t in_len, in_cap;
    uint8_t *msg;          /* the last reassembled message */
    size_t msg_len, msg_cap;
    int msg_opcode;
    int close_code;        /* from the peer's close frame; 1006 when TCP just closed */
    bool closed;
} wsc;

/* Connects to 127.0.0.1:port, sends the upgrade for path with sub-protocol subproto (NULL:
 * no header). Returns the HTTP status (101 on success; 0 if the server just hung up). */
int wsc_connect(wsc *c, int port, const char *path, const char *subproto);
/* The same with extra header lines (each ending in \r\n; NULL: none), e.g. Origin, Cookie. */
int wsc_connect_with(wsc *c, int port, const char *path, const char *subproto,
                     const char *headers);
/* Sends one frame (masked); fin=false for a fragment. Returns 0, or -1 if the peer is gone. */
int wsc_send_frame(wsc *c, int opcode, const void *p, size_t n, bool fin);
/* Sends only the first `upto` bytes of the masked frame (a link dropping mid-frame). */
int wsc_send_partial(wsc *c, int opcode, const void *p, size_t n, size_t upto);
/* Sends raw bytes (for half frames). */
int wsc_send_raw(wsc *c, const void *p, size_t n);
/* Next data message within timeout_ms: 1 got one (c->msg), 0 timeout, -1 closed. Answers
 * pings, records the close code. */
int wsc_recv(wsc *c, int timeout_ms);
void wsc_close(wsc *c);

/* ---- fieldsync.v1 ---------------------------------------------------------------- */

typedef struct tres {
    uint64_t dseq;
    int status;            /* 0 accepted, 1 duplicate, 2 refused */
    int code;
    char text[256];
} tres;

typedef struct tmsg {
    uint32_t type, count;
    struct mpr r;          /* positioned after the type; borrows body */
    uint8_t *body;         /* owned copy of the decoded body */
    size_t len;
} tmsg;

typedef struct fsc {
    tenv *t;
    wsc ws;
    wire_codec *codec;
    rid_t device;
    wire_welcome w;
    char user[80];
    const schema *s;       /* schema to decode pulled changes with (NULL: t->s) */
    uint32_t send_dict;    /* compress what this client sends with this dictionary (0: raw) */
    tmsg m;                /* the last message received */
    int err_code;          /* last error message received */
    char err_text[600];
    bool err_closes;
} fsc;

/* Opens a session: connect, hello. Returns 0 with c->w on welcome, or the error code the
 * server answered (c->err_*), or -1 if the connection failed. */
int fsc_open(fsc *c, tenv *t, int port, const enrolled *dev, uint32_t schema_version,
             uint32_t dict);
/* Connect only (no hello). */
void fsc_connect(fsc *c, tenv *t, int port);
void fsc_close(fsc *c);
/* Sends a MessagePack body in a raw frame. */
int fsc_send(fsc *c, const void *body, size_t n);
/* The same frame split into `parts` WebSocket fragments. */
int fsc_send_fragmented(fsc *c, const void *body, size_t n, int parts);
/* Builds a push body (for tests that send it their own way). */
void push_body(msgpack_sbuffer *sb, uint64_t batch, change *ch, size_t n);
/* Receives the next message (frame decoded). 0 ok, -1 closed or timeout. Error messages
 * are also returned (type MSG_ERROR) and recorded in c->err_*. */
int fsc_recv(fsc *c, int timeout_ms);
/* Reads until an error message; checks its code and closes flag; if closes, checks the
 * connection then closes. */
void fsc_expect_error(fsc *c, int code, bool closes);
/* ping → pong with the same nonce. */
void fsc_ping(fsc *c, uint64_t nonce);

/* Pushes n changes; fills res[n]. Returns 0, or the error code if an error came instead. */
int fsc_push(fsc *c, uint64_t batch, change *ch, size_t n, tres *res);

typedef struct tpull {
    uint64_t next;
    bool more;
    uint32_t n;
    change *ch;            /* decoded (full form), borrowing body */
    uint8_t *body;
    size_t len;
} tpull;
/* Pulls once. Returns 0, or the error code received. */
int fsc_pull(fsc *c, uint64_t cursor, uint32_t max, tpull *out);
void tpull_free(tpull *p);
/* Pulls until more is false; applies everything to replica (may be NULL); returns the
 * number of changes and updates *cursor. */
size_t fsc_pull_all(fsc *c, uint64_t *cursor, store *replica);

/* ---- building changes (test code may name fields) -------------------------------- */

uint64_t t_hlc(void); /* a fresh clock value */
void ch_init(change *c, const schema *s, const char *type, const rid_t *rec, uint64_t hlc,
             uint64_t base, uint64_t dseq);
void ch_text(change *c, const schema *s, const char *field, const char *text); /* borrows */
void ch_int(change *c, const schema *s, const char *field, int64_t v);
void ch_enum(change *c, const schema *s, const char *field, const char *code);
void ch_bool(change *c, const schema *s, const char *field, bool v);
void ch_ref(change *c, const schema *s, const char *field, const rid_t *id);
void new_id(rid_t *id);
/* A child in village (required fields name and village). */
void mk_child(change *c, const schema *s, const rid_t *id, const char *name,
              const char *village, uint64_t dseq);
/* A visit of child (required fields). */
void mk_visit(change *c, const schema *s, const rid_t *id, const rid_t *child, uint64_t dseq);

/* The current text value of a field in a store. Aborts if absent. */
void field_text(store *st, const schema *s, const rid_t *rec, const char *type,
                const char *field, char *out, size_t cap);
int64_t field_int(store *st, const schema *s, const rid_t *rec, const char *type,
                  const char *field);

/* HTTP GET on 127.0.0.1:port; returns the status, body into out. */
int http_get(int port, const char *path, const char *method, char *out, size_t cap);
/* An HTTP request with extra header lines (each ending in \r\n; may be NULL) and a body
 * (may be NULL); the whole answer, status line and headers included, into out. Returns the
 * status. */
int http_request(int port, const char *method, const char *path, const char *headers,
                 const char *body, char *out, size_t cap);

#endif

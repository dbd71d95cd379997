/*
 * web.h — the supervisor page's server side: HTTP requests and replies (http.c), the JSON
 * API under /api (web_api.c and one web_*.c per concern), sessions (web_session.c) and the
 * live WebSocket (web_live.c). Internal to server/. docs/supervisor.md is the reference.
 *
 * Rules every web_*.c keeps:
 *   - every /api request except POST /api/login carries a valid session cookie, checked on
 *     the server (web_session_check); a state-changing request also carries the session's
 *     CSRF token in X-CSRF-Token and an Origin equal to its Host (web_csrf_ok);
 *   - data is filtered by the user's scope on the server (scope.c): an out-of-scope record
 *     is answered 404 exactly like a missing one, and never appears in a list;
 *   - names, notes and every other value are data: JSON strings escaped (web_json.c), and
 *     the page puts them into the DOM with textContent only;
 *   - nothing here names a record type or a field: meaning comes from the ledger file
 *     (ledger.h) and labels from the schema.
 * Everything runs on the service thread, like the rest of the daemon, except the password
 * check of a login, which runs on the login worker thread (web_session.c).
 */
#ifndef FS_WEB_H
#define FS_WEB_H

#include "ledger.h"
#include "server.h"

#define WEB_COOKIE "fs_session"
#define WEB_MAX_BODY (64u << 10)          /* request bodies (JSON) */
#define WEB_TOKEN_LEN 43                  /* base64url of 32 random bytes */
#define WEB_LOGIN_WINDOW_S 900            /* failed logins are counted over 15 minutes */
#define WEB_LOGIN_FAILS_USER 5            /* ... per user name */
#define WEB_LOGIN_FAILS_ADDR 20           /* ... per address */
#define WEB_LOGIN_SLOTS 256
#define WEB_LIVE_QUEUE 1000               /* live events queued per connection */
#define WEB_LOGIN_QUEUE 8                 /* logins in the login worker's hands at once */
#define WEB_LOGIN_RETRY_S 2               /* Retry-After of the 503 past that */
#define WEB_LOGIN_TIMEOUT_S 60            /* a login waiting for the worker is dropped then */

typedef enum http_method { HTTP_OTHER = 0, HTTP_GET = 1, HTTP_POST = 2 } http_method;

/* One request, with the headers the routes need copied out of lws. */
typedef struct http_req {
    http_method method;
    char path[1024];        /* decoded by lws, without the query */
    char cookie[2048];
    char origin[256];
    char host[256];
    char csrf[128];         /* X-CSRF-Token */
    char peer[64];
    struct lws *wsi;        /* the connection (for a route that answers later: web_login) */
    const uint8_t *body;    /* POST body, borrowed for the call */
    size_t body_len;
} http_req;

/* What a route answers; http.c writes it. */
typedef struct http_reply {
    int status;
    const char *type;       /* Content-Type (static string) */
    uint8_t *buf;           /* LWS_PRE headroom + body, owned */
    size_t len;             /* body bytes */
    char set_cookie[256];   /* Set-Cookie value, "" for none */
    char disposition[256];  /* Content-Disposition value, "" for none */
    char retry_after[12];   /* Retry-After value (seconds), "" for none */
} http_reply;

/* Routes fill out and return 0, or a negative fs_err (http.c then answers 500). A route may
 * return 0 with no reply yet (out->buf NULL): http.c then writes nothing, and the route's
 * module fills out later on the service thread and calls lws_callback_on_writable(req->wsi)
 * itself (web_login does; out stays valid until LWS_CALLBACK_CLOSED_HTTP). */
int reply_set(http_reply *out, int status, const char *type, const void *body, size_t len);
int reply_text(http_reply *out, int status, const char *text);
/* Takes b's text as a JSON body (b is freed). */
int reply_json(http_reply *out, int status, strbuf *b);
/* {"error": code, "message": text} */
int reply_error(http_reply *out, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- web_json.c ------------------------------------------------------------------- */

void json_s(strbuf *b, const char *s);               /* "..." escaped; NULL gives null */
void json_sn(strbuf *b, const char *s, size_t n);
void json_id(strbuf *b, const rid_t *id);            /* "uuid" */
void json_label(strbuf *b, const char *zh, const char *en); /* {"zh":..,"en":..} */
/* A field value as JSON: text string; enum code; set [codes]; bool; int number; date
 * "YYYY-MM-DD"; time milliseconds; ref "uuid"; nil null. */
void json_value(strbuf *b, const schema_field *f, const fs_value *v);
/* A stored (MessagePack) value of f as JSON (null when it does not decode). */
void json_stored(strbuf *b, const schema_field *f, const void *buf, size_t len);
/* The string member `key` of a flat JSON object body into out (NUL-terminated, at most
 * cap - 1 bytes). Returns 0, FS_ENOTFOUND, or FS_EDEC_TYPE (not an object, not a string,
 * too long, bad escape, invalid UTF-8). */
int json_body_str(const uint8_t *body, size_t len, const char *key, char *out, size_t cap);

/* ---- web_session.c ---------------------------------------------------------------- */

typedef struct web_user {
    srv_user user;
    int role;                  /* index in the schema's roles */
    bool reviewer;             /* role in review_roles */
    user_scope scope;          /* owned: free with web_user_free */
    uint8_t token_hash[SRV_TOKEN_HASH_LEN];
    char csrf[WEB_TOKEN_LEN + 1];
    int64_t created_ms, last_ms;
} web_user;

/* Checks the request's session cookie. Returns 0 and fills u (free with web_user_free), or
 * an HTTP status: 401 (no, unknown or expired session), 500 (store). */
int web_session_check(server *srv, const http_req *req, web_user *u);
/* Same from a raw Cookie header (the live WebSocket's handshake). */
int web_session_cookie(server *srv, const char *cookie, web_user *u);
void web_user_free(web_user *u);
/* Origin present and equal to the scheme and Host of this server. */
bool web_origin_ok(server *srv, const http_req *req);
bool web_origin_matches(server *srv, const char *origin, const char *host);
/* web_origin_ok and X-CSRF-Token equal to the session's (constant time). */
bool web_csrf_ok(server *srv, const http_req *req, const web_user *u);
/* POST /api/login. Answers at once (400, 403, 429, 503 when the login worker is full), or
 * returns 0 with no reply and answers later from web_login_collect (the password check runs
 * on the login worker thread, off the service thread). */
int web_login(server *srv, const http_req *req, http_reply *out);
/* Finishes the logins the worker has judged (service thread; http.c calls it at
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED, which the worker causes with lws_cancel_service). */
void web_login_collect(server *srv);
/* The connection wsi closed: a login of it still pending is answered to no one
 * (LWS_CALLBACK_CLOSED_HTTP). */
void web_login_forget(struct lws *wsi);
/* Stops and joins the worker and frees every pending login (LWS_CALLBACK_PROTOCOL_DESTROY of
 * the http protocol, when the context is destroyed). */
void web_login_shutdown(void);
int web_logout(server *srv, const web_user *u, http_reply *out);
/* Forgets expired sessions (called from the tick). */
void web_sessions_expire(server *srv);
/* The JSON of GET /api/me (also the answer to a login). */
void web_me_json(server *srv, const web_user *u, strbuf *b);

/* ---- web_api.c -------------------------------------------------------------------- */

/* Every /api/... request. */
int web_api_route(server *srv, const http_req *req, http_reply *out);
/* The villages (codes and names) a user sees, as a ledger scope (owned by vn). For a
 * children scope: the villages of those children, and sc->only lists them. Returns 0 or a
 * negative fs_err. */
int web_user_villages(server *srv, const web_user *u, village_names *vn, ledger_scope *sc);
/* Label of a device for people: its enrolment label ("平板 3"; the user's name when it has
 * none), "网页 web" for the page's device of a web user, or "" when unknown. */
void web_device_label(server *srv, const rid_t *device, char *out, size_t cap);

/* ---- one file per concern ----------------------------------------------------------- */

int api_ledger(server *srv, const web_user *u, http_reply *out);        /* web_ledger.c */
int api_export(server *srv, const web_user *u, const char *which, http_reply *out);
int api_child(server *srv, const web_user *u, const char *id, http_reply *out); /* web_child.c */
int api_resolve(server *srv, const web_user *u, const char *id, const http_req *req,
                http_reply *out);                                           /* web_review.c */
/* The open review items the user sees (of one record when only_record is not NULL), as a
 * JSON array appended to b; returns how many (web_review.c). */
int web_reviews_json(server *srv, const web_user *u, const rid_t *only_record, strbuf *b);

#endif

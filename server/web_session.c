/*
 * web_session.c — who is using the supervisor page: login, sessions, logout, CSRF.
 *
 * Login (POST /api/login {"user", "password"}) checks the password set with `fieldsyncd
 * admin user password` (argon2id, crypto_pwhash_str_verify; auth.c). Failures are counted
 * per user name and per address over 15 minutes (5 and 20): past either, logins are refused
 * with 429 without checking the password, so guessing is slow and costs the server little.
 * A user name that does not exist, or has no password, costs the same hash as a wrong
 * password, so names cannot be probed by timing.
 *
 * The hash does not run on the service thread: argon2id takes 100-400 ms here, and during
 * that time no device would be served, so a login flood would stall syncing. One worker
 * thread (the login worker, started at the first login) verifies; the service thread only
 * reads the store, queues the job and leaves the HTTP request open (the route returns with
 * no reply yet, http.c writes nothing until there is one). The worker wakes the service loop
 * with lws_cancel_service; at LWS_CALLBACK_EVENT_WAIT_CANCELLED (http.c) web_login_collect
 * finishes each verified login on the service thread — counters, session row, cookie — and
 * asks for the connection's WRITEABLE. A connection that closes meanwhile is forgotten
 * (web_login_forget from LWS_CALLBACK_CLOSED_HTTP): no session is made, and the attempt
 * stays counted as failed only if the password was wrong. At most WEB_LOGIN_QUEUE logins are in the worker's hands (queued,
 * hashing, or verified and not yet answered); one more is answered 503 with Retry-After at
 * once, without a hash. A login counts as failed from the moment it is queued (undone when
 * it succeeds), so a burst of concurrent guesses meets the same limits as a sequence.
 * The worker touches nothing but the job (a stored hash string and a password copy, wiped
 * after use) and a dummy hash of its own; the store stays single-threaded.
 *
 * A session is 32 bytes from randombytes_buf, sent once as the cookie
 *     fs_session=TOKEN; HttpOnly; SameSite=Strict; Path=/; Max-Age=...[; Secure with TLS]
 * and stored only as its BLAKE2b-256 hash in srv_web_sessions (a stolen database yields no
 * working session). It expires after --session-idle seconds without a request (default
 * 8 h) and --session-max seconds after login (default 24 h); logout deletes it and closes the
 * page's live connection. Each session has a CSRF token, given to the page by /api/me, that
 * every state-changing request must echo in X-CSRF-Token; such requests must also carry an
 * Origin equal to the server's own scheme and Host. SameSite=Strict already keeps the cookie
 * off cross-site requests; the token and the Origin check hold even where a browser does
 * not honour SameSite.
 *
 * Nothing here logs a password, a token or a cookie.
 */
#include "web.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct login_fail {
    char key[80];          /* "u:NAME" or "a:ADDRESS" */
    int64_t window;        /* srv_mono_ms() when the window began */
    unsigned count;
} login_fail;

static login_fail g_fails[WEB_LOGIN_SLOTS];

static login_fail *fail_slot(const char *key, bool create)
{
    int64_t now = srv_mono_ms();
    login_fail *oldest = &g_fails[0];
    for (int i = 0; i < WEB_LOGIN_SLOTS; i++) {
        login_fail *f = &g_fails[i];
        if (f->key[0] && !strcmp(f->key, key)) {
            if (now - f->window >= WEB_LOGIN_WINDOW_S * 1000LL) {
                f->window = now;
                f->count = 0;
            }
            return f;
        }
        if (!f->key[0] || f->window < oldest->window)
            oldest = f;
    }
    if (!create)
        return NULL;
    snprintf(oldest->key, sizeof oldest->key, "%s", key);
    oldest->window = now;
    oldest->count = 0;
    return oldest;
}

static bool blocked(const char *key, unsigned limit)
{
    login_fail *f = fail_slot(key, false);
    return f && f->count >= limit;
}

static void base64url(const unsigned char *raw, size_t n, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, raw, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* ---- cookies and origins ---------------------------------------------------------- */

/* The fs_session token of a Cookie header into tok (cap >= WEB_TOKEN_LEN + 1). */
static bool cookie_token(const char *cookie, char *tok, size_t cap)
{
    const char *name = WEB_COOKIE "=";
    size_t nl = strlen(name);
    for (const char *p = cookie; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && !strncmp(p, name, nl)) {
            size_t n = len - nl;
            if (n != WEB_TOKEN_LEN || n + 1 > cap)
                return false;
            memcpy(tok, p + nl, n);
            tok[n] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

bool web_origin_matches(server *srv, const char *origin, const char *host)
{
    const char *scheme = srv->cfg.tls_cert ? "https://" : "http://";
    size_t sl = strlen(scheme);
    return origin[0] && host[0] && !strncmp(origin, scheme, sl) && !strcmp(origin + sl, host);
}

bool web_origin_ok(server *srv, const http_req *req)
{
    return web_origin_matches(srv, req->origin, req->host);
}

bool web_csrf_ok(server *srv, const http_req *req, const web_user *u)
{
    size_t n = strlen(u->csrf);
    return web_origin_ok(srv, req) && n == WEB_TOKEN_LEN && strlen(req->csrf) == n &&
           sodium_memcmp(req->csrf, u->csrf, n) == 0;
}

/* ---- sessions --------------------------------------------------------------------- */

void web_user_free(web_user *u)
{
    scope_free(&u->scope);
    memset(u, 0, sizeof *u);
}

static void delete_session(server *srv, const uint8_t hash[SRV_TOKEN_HASH_LEN])
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db, "DELETE FROM srv_web_sessions WHERE token_hash = ?1", -1, &s,
                           NULL))
        return;
    sqlite3_bind_blob(s, 1, hash, SRV_TOKEN_HASH_LEN, SQLITE_STATIC);
    sqlite3_step(s);
    sqlite3_finalize(s);
}

int web_session_cookie(server *srv, const char *cookie, web_user *u)
{
    memset(u, 0, sizeof *u);
    char tok[WEB_TOKEN_LEN + 1];
    if (!cookie_token(cookie, tok, sizeof tok))
        return 401;
    auth_token_hash(tok, strlen(tok), u->token_hash);
    sodium_memzero(tok, sizeof tok);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db,
                           "SELECT user, csrf, created_ms, last_ms FROM srv_web_sessions "
                           "WHERE token_hash = ?1",
                           -1, &s, NULL))
        return 500;
    sqlite3_bind_blob(s, 1, u->token_hash, SRV_TOKEN_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t user_id = 0;
    if (rc == SQLITE_ROW) {
        user_id = sqlite3_column_int64(s, 0);
        const char *csrf = (const char *)sqlite3_column_text(s, 1);
        snprintf(u->csrf, sizeof u->csrf, "%s", csrf ? csrf : "");
        u->created_ms = sqlite3_column_int64(s, 2);
        u->last_ms = sqlite3_column_int64(s, 3);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 401 : 500;
    int64_t now = srv_wall_ms();
    if (now - u->last_ms > (int64_t)srv->cfg.session_idle_s * 1000 ||
        now - u->created_ms > (int64_t)srv->cfg.session_max_s * 1000) {
        delete_session(srv, u->token_hash);
        return 401;
    }
    if ((rc = srvdb_user_get(srv->db, user_id, &u->user)))
        return rc == FS_ENOTFOUND ? 401 : 500;
    u->role = schema_role_by_name(srv->schema, u->user.role);
    if (u->role < 0)
        return 401;
    u->reviewer = (srv->schema->review_roles >> u->role) & 1;
    if (scope_load(srv, &u->user, &u->scope))
        return 500;
    /* idle expiry counts from the last request; written at most every 30 s */
    if (now - u->last_ms > 30000) {
        if (!sqlite3_prepare_v2(srv->db,
                                "UPDATE srv_web_sessions SET last_ms = ?2 WHERE token_hash = ?1",
                                -1, &s, NULL)) {
            sqlite3_bind_blob(s, 1, u->token_hash, SRV_TOKEN_HASH_LEN, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, now);
            sqlite3_step(s);
            sqlite3_finalize(s);
        }
        u->last_ms = now;
    }
    return 0;
}

int web_session_check(server *srv, const http_req *req, web_user *u)
{
    return web_session_cookie(srv, req->cookie, u);
}

void web_sessions_expire(server *srv)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db,
                           "DELETE FROM srv_web_sessions WHERE last_ms < ?1 OR created_ms < ?2",
                           -1, &s, NULL))
        return;
    int64_t now = srv_wall_ms();
    sqlite3_bind_int64(s, 1, now - (int64_t)srv->cfg.session_idle_s * 1000);
    sqlite3_bind_int64(s, 2, now - (int64_t)srv->cfg.session_max_s * 1000);
    sqlite3_step(s);
    sqlite3_finalize(s);
}

/* ---- /api/me ------------------------------------------------------------------------ */

void web_me_json(server *srv, const web_user *u, strbuf *b)
{
    static const char *const kinds[] = {"villages", "township", "children"};
    sb_printf(b, "{\"user\":");
    json_s(b, u->user.name);
    sb_printf(b, ",\"role\":");
    json_s(b, u->user.role);
    sb_printf(b, ",\"reviewer\":%s,\"scope\":{\"kind\":\"%s\"", u->reviewer ? "true" : "false",
              kinds[u->scope.kind <= SCOPE_CHILDREN ? u->scope.kind : 0]);
    if (u->scope.kind == SCOPE_TOWNSHIP) {
        char name[128] = "";
        srvdb_township_name(srv->db, u->scope.township, name, sizeof name);
        sb_printf(b, ",\"code\":");
        json_s(b, u->scope.township);
        sb_printf(b, ",\"name\":");
        json_s(b, name);
    }
    sb_printf(b, "},\"villages\":[");
    village_names vn = {0};
    ledger_scope sc;
    if (web_user_villages(srv, u, &vn, &sc) == 0)
        for (uint32_t i = 0; i < sc.n; i++) {
            sb_printf(b, "%s{\"code\":", i ? "," : "");
            json_s(b, sc.codes[i]);
            sb_printf(b, ",\"name\":");
            json_s(b, sc.names[i]);
            sb_append(b, "}", 1);
        }
    village_names_free(&vn);
    sb_printf(b, "],\"csrf\":");
    json_s(b, u->csrf);
    sb_printf(b, ",\"session_idle_s\":%u,\"expires_ms\":%lld,\"ledger\":%s}",
              srv->cfg.session_idle_s,
              (long long)(u->created_ms + (int64_t)srv->cfg.session_max_s * 1000),
              srv->ledger ? "true" : "false");
}

/* ---- login and logout ---------------------------------------------------------------- */

static bool password_hash_of(server *srv, int64_t user, char *out, size_t cap)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db, "SELECT password FROM srv_users WHERE id = ?1", -1, &s,
                           NULL))
        return false;
    sqlite3_bind_int64(s, 1, user);
    bool ok = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT;
    if (ok)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return ok;
}

/* ---- the login worker ------------------------------------------------------------- */

typedef struct login_job {
    struct login_job *next;          /* in the worker's queue, then in its done list */
    struct lws *wsi;                 /* the request's connection; NULL once it closed */
    http_reply *out;                 /* its reply (in the connection's pss); NULL likewise */
    char ukey[80], akey[80];         /* rate-limit keys (fail_slot) */
    char peer[64];
    bool known;                      /* user exists and has a password */
    srv_user u;
    char stored[crypto_pwhash_STRBYTES + 1]; /* the user's argon2id string */
    char pw[1024];                   /* the password tried, wiped once checked */
    size_t pw_len;
    bool ok;                         /* the worker's verdict */
} login_job;

/* One worker for the one server of the process. Locking: mu guards todo, done, stop;
 * jobs[] and the wsi/out fields of jobs are touched only by the service thread. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    struct lws_context *ctx;         /* to wake the service loop */
    login_job *todo, *todo_last;     /* FIFO of jobs to hash */
    login_job *done;                 /* verified, not yet collected */
    login_job *jobs[WEB_LOGIN_QUEUE];/* every job not yet collected (service thread) */
} g_lw = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *login_worker(void *arg)
{
    (void)arg;
    /* an argon2id string of a password nobody knows: unknown users cost the same */
    char dummy[crypto_pwhash_STRBYTES];
    bool have_dummy = auth_password_hash("fieldsync-no-such-user", 22, dummy, sizeof dummy) == 0;
    pthread_mutex_lock(&g_lw.mu);
    for (;;) {
        while (!g_lw.todo && !g_lw.stop)
            pthread_cond_wait(&g_lw.cv, &g_lw.mu);
        if (g_lw.stop)
            break;
        login_job *j = g_lw.todo;
        g_lw.todo = j->next;
        if (!g_lw.todo)
            g_lw.todo_last = NULL;
        pthread_mutex_unlock(&g_lw.mu);
        const char *hash = j->known ? j->stored : have_dummy ? dummy : NULL;
        j->ok = hash && auth_password_check(hash, j->pw, j->pw_len) && j->known;
        sodium_memzero(j->pw, sizeof j->pw);
        pthread_mutex_lock(&g_lw.mu);
        j->next = g_lw.done;
        g_lw.done = j;
        lws_cancel_service(g_lw.ctx); /* -> LWS_CALLBACK_EVENT_WAIT_CANCELLED */
    }
    pthread_mutex_unlock(&g_lw.mu);
    return NULL;
}

static void job_free(login_job *j)
{
    sodium_memzero(j, sizeof *j);
    free(j);
}

void web_login_shutdown(void)
{
    if (g_lw.started) {
        pthread_mutex_lock(&g_lw.mu);
        g_lw.stop = true;
        pthread_cond_signal(&g_lw.cv);
        pthread_mutex_unlock(&g_lw.mu);
        pthread_join(g_lw.thread, NULL);
        g_lw.started = false;
    }
    for (int i = 0; i < WEB_LOGIN_QUEUE; i++)
        if (g_lw.jobs[i]) {
            job_free(g_lw.jobs[i]);
            g_lw.jobs[i] = NULL;
        }
    g_lw.todo = g_lw.todo_last = g_lw.done = NULL;
    g_lw.stop = false;
}

void web_login_forget(struct lws *wsi)
{
    for (int i = 0; i < WEB_LOGIN_QUEUE; i++)
        if (g_lw.jobs[i] && g_lw.jobs[i]->wsi == wsi) {
            g_lw.jobs[i]->wsi = NULL;
            g_lw.jobs[i]->out = NULL;
        }
}

/* Hands j to the worker (started on first use). Returns 0, 1 when WEB_LOGIN_QUEUE jobs are
 * in its hands already, or FS_ENOMEM (no thread); j is the worker's only on 0. */
static int login_submit(server *srv, login_job *j)
{
    int slot = -1;
    for (int i = 0; i < WEB_LOGIN_QUEUE && slot < 0; i++)
        if (!g_lw.jobs[i])
            slot = i;
    if (slot < 0)
        return 1;
    if (!g_lw.started) {
        g_lw.ctx = srv->ctx;
        g_lw.stop = false;
        if (pthread_create(&g_lw.thread, NULL, login_worker, NULL))
            return FS_ENOMEM;
        g_lw.started = true;
    }
    g_lw.jobs[slot] = j;
    pthread_mutex_lock(&g_lw.mu);
    j->next = NULL;
    if (g_lw.todo_last)
        g_lw.todo_last->next = j;
    else
        g_lw.todo = j;
    g_lw.todo_last = j;
    pthread_cond_signal(&g_lw.cv);
    pthread_mutex_unlock(&g_lw.mu);
    return 0;
}

/* The rest of a login once the worker judged the password: counters, session, reply. */
static int login_finish(server *srv, login_job *j, http_reply *out)
{
    srv_user u = j->u;
    if (!j->ok || schema_role_by_name(srv->schema, u.role) < 0) {
        /* counted as failed when it was queued */
        srv_log(SLOG_INFO, "%s: failed login", j->peer);
        return reply_error(out, 401, "login_failed", "wrong user name or password");
    }
    login_fail *f = fail_slot(j->ukey, false);
    if (f)
        f->count = 0;
    f = fail_slot(j->akey, false);
    if (f && f->count)
        f->count--; /* it was not a failure after all */

    unsigned char raw[32];
    char tok[WEB_TOKEN_LEN + 1];
    web_user w;
    memset(&w, 0, sizeof w);
    randombytes_buf(raw, sizeof raw);
    base64url(raw, sizeof raw, tok, sizeof tok);
    randombytes_buf(raw, sizeof raw);
    base64url(raw, sizeof raw, w.csrf, sizeof w.csrf);
    sodium_memzero(raw, sizeof raw);
    auth_token_hash(tok, WEB_TOKEN_LEN, w.token_hash);
    int64_t now = srv_wall_ms();
    sqlite3_stmt *s;
    int rc = SQLITE_ERROR;
    if (!sqlite3_prepare_v2(srv->db,
                            "INSERT INTO srv_web_sessions(token_hash, user, csrf, created_ms, "
                            "last_ms, addr) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                            -1, &s, NULL)) {
        sqlite3_bind_blob(s, 1, w.token_hash, SRV_TOKEN_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, u.id);
        sqlite3_bind_text(s, 3, w.csrf, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, now);
        sqlite3_bind_text(s, 5, j->peer, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        sqlite3_finalize(s);
    }
    if (rc != SQLITE_DONE) {
        sodium_memzero(tok, sizeof tok);
        return reply_error(out, 503, "busy", "cannot store the session now; try again");
    }
    w.user = u;
    w.role = schema_role_by_name(srv->schema, u.role);
    w.reviewer = (srv->schema->review_roles >> w.role) & 1;
    w.created_ms = w.last_ms = now;
    if (scope_load(srv, &u, &w.scope)) {
        sodium_memzero(tok, sizeof tok);
        return FS_EIO;
    }
    snprintf(out->set_cookie, sizeof out->set_cookie,
             WEB_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%u%s", tok,
             srv->cfg.session_max_s, srv->cfg.tls_cert ? "; Secure" : "");
    sodium_memzero(tok, sizeof tok);
    strbuf b = {0};
    web_me_json(srv, &w, &b);
    web_user_free(&w);
    srv_log(SLOG_INFO, "%s: user %s logged in to the page", j->peer, u.name);
    return reply_json(out, 200, &b);
}

void web_login_collect(server *srv)
{
    pthread_mutex_lock(&g_lw.mu);
    login_job *done = g_lw.done;
    g_lw.done = NULL;
    pthread_mutex_unlock(&g_lw.mu);
    while (done) {
        login_job *j = done;
        done = j->next;
        if (j->out) {
            if (login_finish(srv, j, j->out)) {
                free(j->out->buf);
                j->out->buf = NULL;
                j->out->set_cookie[0] = '\0';
                if (reply_text(j->out, 500, "internal error\n"))
                    lws_set_timeout(j->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            }
            lws_callback_on_writable(j->wsi);
        } else {
            /* the client left: no session; a right password is not counted as a failure */
            login_fail *f;
            if (j->ok && (f = fail_slot(j->ukey, false)) && f->count)
                f->count--;
            if (j->ok && (f = fail_slot(j->akey, false)) && f->count)
                f->count--;
            srv_log(SLOG_INFO, "%s: login %s, but the connection closed before its answer",
                    j->peer, j->ok ? "succeeded" : "failed");
        }
        for (int i = 0; i < WEB_LOGIN_QUEUE; i++)
            if (g_lw.jobs[i] == j)
                g_lw.jobs[i] = NULL;
        job_free(j);
    }
}

int web_login(server *srv, const http_req *req, http_reply *out)
{
    if (!web_origin_ok(srv, req))
        return reply_error(out, 403, "origin",
                           "cross-site request refused: the Origin must be this server");
    login_job *j = calloc(1, sizeof *j);
    if (!j)
        return FS_ENOMEM;
    char name[SRV_NAME_MAX + 1];
    if (json_body_str(req->body, req->body_len, "user", name, sizeof name) ||
        json_body_str(req->body, req->body_len, "password", j->pw, sizeof j->pw)) {
        job_free(j);
        return reply_error(out, 400, "bad_request",
                           "send {\"user\": NAME, \"password\": PASSWORD} as JSON");
    }
    j->pw_len = strlen(j->pw);
    snprintf(j->ukey, sizeof j->ukey, "u:%s", name);
    snprintf(j->akey, sizeof j->akey, "a:%s", req->peer);
    snprintf(j->peer, sizeof j->peer, "%s", req->peer);
    if (blocked(j->ukey, WEB_LOGIN_FAILS_USER) || blocked(j->akey, WEB_LOGIN_FAILS_ADDR)) {
        job_free(j);
        srv_log(SLOG_INFO, "%s: login refused: too many failed logins", req->peer);
        return reply_error(out, 429, "rate_limited",
                           "too many failed logins: wait %d minutes", WEB_LOGIN_WINDOW_S / 60);
    }
    j->known = srvdb_user_by_name(srv->db, name, &j->u) == 0 &&
               password_hash_of(srv, j->u.id, j->stored, sizeof j->stored);
    if (!j->known)
        memset(&j->u, 0, sizeof j->u);
    j->wsi = req->wsi;
    j->out = out;
    int rc = login_submit(srv, j);
    if (rc) {
        job_free(j);
        if (rc != 1)
            return rc;
        srv_log(SLOG_INFO, "%s: login refused: %d logins are being checked", req->peer,
                WEB_LOGIN_QUEUE);
        snprintf(out->retry_after, sizeof out->retry_after, "%d", WEB_LOGIN_RETRY_S);
        return reply_error(out, 503, "busy", "too many logins at once: try again in %d s",
                           WEB_LOGIN_RETRY_S);
    }
    /* failed until proven otherwise (login_finish undoes it) */
    fail_slot(j->ukey, true)->count++;
    fail_slot(j->akey, true)->count++;
    /* the answer comes from web_login_collect; the connection waits for it, bounded */
    lws_set_timeout(req->wsi, PENDING_TIMEOUT_USER_OK, WEB_LOGIN_TIMEOUT_S);
    return 0;
}

int web_logout(server *srv, const web_user *u, http_reply *out)
{
    delete_session(srv, u->token_hash);
    live_close_session(srv, u->token_hash);
    snprintf(out->set_cookie, sizeof out->set_cookie,
             WEB_COOKIE "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0%s",
             srv->cfg.tls_cert ? "; Secure" : "");
    strbuf b = {0};
    sb_printf(&b, "{\"ok\":true}");
    return reply_json(out, 200, &b);
}

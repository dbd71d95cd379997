/*
 * web_live.c — the supervisor page's live channel: WebSocket path /live, sub-protocol
 * "fieldsync.live.v1", small JSON text messages from the server, nothing expected back.
 *
 *   {"kind":"hello","user":NAME,"seq":LOG_END}            once, when the socket opens
 *   {"kind":"change","seq":N,"type":TYPE,"record":ID,"village":CODE,"refs":[ID...]}
 *                                                         per committed change in the user's
 *                                                         scope (refs: the records the change
 *                                                         refers to, e.g. a visit's child)
 *   {"kind":"device","device":ID}                         a device of the user's villages
 *                                                         connected or went away
 *   {"kind":"resync"}                                     events were dropped (queue over
 *                                                         1,000): fetch everything again
 * The page refetches what an event touches (debounced); events carry ids and codes only, so
 * a page that misses one loses nothing but freshness.
 *
 * Authentication happens during the handshake (FILTER_PROTOCOL_CONNECTION), before any
 * byte of WebSocket traffic: the session cookie must be valid and the Origin equal to the
 * server's own scheme and Host (a page of another site cannot open it with the user's
 * cookie); otherwise the upgrade is refused. Every 30 s, and at logout, the session is
 * checked again: an expired or deleted one closes the socket with 4401. The user's scope is
 * reloaded when the admin changes the tables, like device sessions (session.c).
 *
 * Writes follow the daemon's rule (session.c): only in SERVER_WRITEABLE, from a
 * per-connection queue, a further frame in the same callback only while
 * lws_send_pipe_choked() says the socket takes it; the hook is the server's commit fan-out (handle_subscribe.c), so an
 * event leaves in the service-loop turn after the device's push committed.
 */
#include "web.h"

#include <stdlib.h>
#include <string.h>

#define LIVE_RECHECK_MS 30000
#define LIVE_CLOSE_SESSION 4401  /* session ended: log in again */
#define LIVE_CLOSE_SHUTDOWN 1001

typedef struct live_conn {
    server *srv;
    struct lws *wsi;
    struct live_conn *prev, *next;   /* srv->live */
    bool linked;
    bool authed;                     /* filled at the handshake */
    srv_user user;
    user_scope scope;                /* owned */
    uint8_t token_hash[SRV_TOKEN_HASH_LEN];
    int64_t next_check;              /* srv_mono_ms() of the next session check */
    txframe *q_head, *q_tail;
    unsigned q_n;
    int close_code;                  /* non-zero: close once the queue drained */
} live_conn;

size_t live_pss_size(void) { return sizeof(live_conn); }

static void queue_clear(live_conn *c)
{
    for (txframe *f = c->q_head, *n; f; f = n) {
        n = f->next;
        free(f);
    }
    c->q_head = c->q_tail = NULL;
    c->q_n = 0;
}

static void queue_text(live_conn *c, const char *text, size_t len)
{
    if (c->close_code)
        return;
    if (c->q_n >= WEB_LIVE_QUEUE) {
        queue_clear(c);
        static const char resync[] = "{\"kind\":\"resync\"}";
        text = resync;
        len = sizeof resync - 1;
    }
    txframe *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f)
        return; /* an event lost: the page refetches on the next one */
    f->next = NULL;
    f->len = len;
    f->ledger = true;
    f->gen = durable_tag(c->srv); /* a change event waits for its group's sync (durable.c) */
    memcpy(f->data + LWS_PRE, text, len);
    if (c->q_tail)
        c->q_tail->next = f;
    else
        c->q_head = f;
    c->q_tail = f;
    c->q_n++;
    if (!f->gen || f != c->q_head)
        lws_callback_on_writable(c->wsi); /* else live_release_held asks */
}

static void live_close(live_conn *c, int code)
{
    if (c->close_code)
        return;
    c->close_code = code;
    lws_callback_on_writable(c->wsi);
}

/* ---- events --------------------------------------------------------------------------- */

void live_fanout(server *srv, const change *c, uint64_t seq, const char *scope)
{
    if (!srv->live)
        return;
    const schema_type *t = schema_type_by_id(srv->schema, c->type);
    strbuf b = {0};
    sb_printf(&b, "{\"kind\":\"change\",\"seq\":%llu,\"type\":", (unsigned long long)seq);
    json_s(&b, t ? t->name : NULL);
    sb_printf(&b, ",\"record\":");
    json_id(&b, &c->record);
    sb_printf(&b, ",\"village\":");
    json_s(&b, scope);
    sb_printf(&b, ",\"refs\":[");
    bool any = false;
    for (uint32_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].v.kind == VAL_REF) {
            if (any)
                sb_append(&b, ",", 1);
            json_id(&b, &c->fields[i].v.u.ref);
            any = true;
        }
    sb_printf(&b, "]}");
    if (!b.oom)
        for (live_conn *x = srv->live; x; x = x->next)
            if (scope_user_sees(srv, &x->scope, c, scope))
                queue_text(x, b.p, b.len);
    sb_free(&b);
}

static bool villages_meet(const user_scope *a, const user_scope *b)
{
    for (size_t i = 0; i < a->n_villages; i++)
        if (scope_has_village(b, a->villages[i]))
            return true;
    return false;
}

void live_device_event(server *srv, const rid_t *device, const user_scope *device_scope)
{
    if (!srv->live)
        return;
    char msg[128], id[RID_TEXT_LEN + 1];
    rid_to_text(device, id);
    int n = snprintf(msg, sizeof msg, "{\"kind\":\"device\",\"device\":\"%s\"}", id);
    for (live_conn *x = srv->live; x; x = x->next)
        if (villages_meet(device_scope, &x->scope))
            queue_text(x, msg, (size_t)n);
}

void live_close_session(server *srv, const uint8_t hash[SRV_TOKEN_HASH_LEN])
{
    for (live_conn *x = srv->live; x; x = x->next)
        if (!memcmp(x->token_hash, hash, SRV_TOKEN_HASH_LEN))
            live_close(x, LIVE_CLOSE_SESSION);
}

void live_shutdown(server *srv)
{
    for (live_conn *x = srv->live; x; x = x->next)
        live_close(x, LIVE_CLOSE_SHUTDOWN);
}

/* Whether the session behind c still exists and has not expired. */
static bool session_alive(server *srv, live_conn *c)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(srv->db,
                           "SELECT last_ms, created_ms FROM srv_web_sessions "
                           "WHERE token_hash = ?1",
                           -1, &s, NULL))
        return true; /* cannot tell now: ask again at the next check */
    sqlite3_bind_blob(s, 1, c->token_hash, SRV_TOKEN_HASH_LEN, SQLITE_STATIC);
    bool alive = false;
    if (sqlite3_step(s) == SQLITE_ROW) {
        int64_t now = srv_wall_ms();
        alive = now - sqlite3_column_int64(s, 0) <= (int64_t)srv->cfg.session_idle_s * 1000 &&
                now - sqlite3_column_int64(s, 1) <= (int64_t)srv->cfg.session_max_s * 1000;
    }
    sqlite3_finalize(s);
    return alive;
}

void live_tick(server *srv, bool admin_changed)
{
    int64_t now = srv_mono_ms();
    for (live_conn *x = srv->live; x; x = x->next) {
        if (x->close_code)
            continue;
        if (now >= x->next_check) {
            x->next_check = now + LIVE_RECHECK_MS;
            if (!session_alive(srv, x)) {
                live_close(x, LIVE_CLOSE_SESSION);
                continue;
            }
        }
        if (admin_changed) {
            srv_user u;
            user_scope sc;
            if (srvdb_user_get(srv->db, x->user.id, &u) == FS_ENOTFOUND) {
                live_close(x, LIVE_CLOSE_SESSION);
            } else if (!scope_load(srv, &u, &sc)) {
                scope_free(&x->scope);
                x->scope = sc;
            }
        }
    }
}

/* ---- libwebsockets ------------------------------------------------------------------- */

static int live_filter(server *srv, struct lws *wsi, live_conn *c)
{
    char uri[64] = "", origin[256] = "", host[256] = "";
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/live")) {
        srv_log(SLOG_INFO, "refused a live WebSocket on '%s': the path is /live", uri);
        return 1;
    }
    if (!c)
        return 1;
    lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN);
    lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST);
    if (!web_origin_matches(srv, origin, host)) {
        srv_log(SLOG_INFO, "refused a live WebSocket: Origin '%.100s' is not this server",
                origin);
        return 1;
    }
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COOKIE);
    char *cookie = n > 0 && n < 8192 ? malloc((size_t)n + 1) : NULL;
    if (cookie && lws_hdr_copy(wsi, cookie, n + 1, WSI_TOKEN_HTTP_COOKIE) < 0)
        cookie[0] = '\0';
    web_user u;
    int st = web_session_cookie(srv, cookie ? cookie : "", &u);
    free(cookie);
    if (st) {
        srv_log(SLOG_INFO, "refused a live WebSocket: no valid session (%d)", st);
        return 1;
    }
    memset(c, 0, sizeof *c);
    c->authed = true;
    c->user = u.user;
    c->scope = u.scope; /* moved */
    memset(&u.scope, 0, sizeof u.scope);
    memcpy(c->token_hash, u.token_hash, sizeof c->token_hash);
    web_user_free(&u);
    return 0;
}

static void live_open(server *srv, struct lws *wsi, live_conn *c)
{
    c->srv = srv;
    c->wsi = wsi;
    c->next_check = srv_mono_ms() + LIVE_RECHECK_MS;
    c->prev = NULL;
    c->next = srv->live;
    if (srv->live)
        srv->live->prev = c;
    srv->live = c;
    c->linked = true;
    srv->n_live++;
    uint64_t seq = 0;
    store_last_seq(srv->store, &seq);
    strbuf b = {0};
    sb_printf(&b, "{\"kind\":\"hello\",\"user\":");
    json_s(&b, c->user.name);
    sb_printf(&b, ",\"seq\":%llu}", (unsigned long long)seq);
    if (!b.oom)
        queue_text(c, b.p, b.len);
    sb_free(&b);
    if (srv->stopping)
        live_close(c, LIVE_CLOSE_SHUTDOWN);
}

static void live_gone(server *srv, live_conn *c)
{
    if (c->linked) {
        if (c->prev)
            c->prev->next = c->next;
        else
            srv->live = c->next;
        if (c->next)
            c->next->prev = c->prev;
        srv->n_live--;
        c->linked = false;
    }
    queue_clear(c);
    scope_free(&c->scope);
    c->authed = false;
}

static int live_writeable(live_conn *c)
{
    txframe *f = c->q_head;
    if (f && f->gen > c->srv->dur_done)
        return 0; /* live_release_held asks again once it is synced */
    if (!f) {
        if (c->close_code) {
            static const char why[] = "session ended";
            lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                             (unsigned char *)why, c->close_code == LIVE_CLOSE_SESSION
                                                       ? sizeof why - 1
                                                       : 0);
            return -1;
        }
        return 0;
    }
    /* several frames while the socket takes them: the rule of session.c's header */
    for (int k = 0; f && k < SRV_WRITES_PER_CALLBACK; k++, f = c->q_head) {
        if (f->gen > c->srv->dur_done || (k && lws_send_pipe_choked(c->wsi)))
            break;
        int n = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        if (n < 0)
            return -1;
        c->q_head = f->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_n--;
        free(f);
    }
    if ((c->q_head && c->q_head->gen <= c->srv->dur_done) || (!c->q_head && c->close_code))
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* durable.c: a sync returned; pages whose next event it released are asked to write. */
void live_release_held(server *srv)
{
    for (live_conn *x = srv->live; x; x = x->next)
        if (x->q_head && x->q_head->gen && x->q_head->gen <= srv->dur_done)
            lws_callback_on_writable(x->wsi);
}

/* durable.c: the sync failed; events of changes that may be lost are dropped (the page
 * refetches what it shows when it reconnects: the server is stopping). */
void live_drop_held(server *srv)
{
    for (live_conn *x = srv->live; x; x = x->next)
        if (x->q_tail && x->q_tail->gen) {
            queue_clear(x);
            live_close(x, LIVE_CLOSE_SHUTDOWN);
        }
}

int live_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    server *srv = lws_context_user(lws_get_context(wsi));
    live_conn *c = user;
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return live_filter(srv, wsi, c);
    case LWS_CALLBACK_ESTABLISHED:
        if (!c || !c->authed)
            return -1;
        live_open(srv, wsi, c);
        break;
    case LWS_CALLBACK_RECEIVE:
        break; /* the page sends nothing that matters; WebSocket pings are lws's */
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c && c->linked)
            return live_writeable(c);
        break;
    case LWS_CALLBACK_CLOSED:
        if (c)
            live_gone(srv, c);
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        /* also for a socket that passed the handshake filter but never opened */
        if (c && c->authed)
            live_gone(srv, c);
        break;
    default:
        break;
    }
    return 0;
}

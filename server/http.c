/*
 * http.c — plain HTTP on the sync port, as one route table.
 *
 *   GET /healthz   "ok\n" (200) while the service loop runs: for load balancers and systemd
 *   GET /metrics   Prometheus text exposition (metrics.c)
 *   /api/...       the supervisor page's JSON API, GET and POST (web_api.c)
 *   GET /...       files under --web DIR (the supervisor page; by default the source tree's
 *                  server/web); 404 with --no-web
 *
 * Extension point: an entry in `routes` below — a path (exact, or a prefix), whether it
 * takes POST, and a function that fills an http_reply from an http_req (web.h). The function
 * runs on the service thread and may read the store (srv->store) and the server tables
 * (srv->db); the reply is sent by the code here, so routes never deal with libwebsockets'
 * write rules. Routes are matched in order; the static-file route is last and catches the
 * rest.
 *
 * Requests: the headers a route needs (Cookie, Origin, Host, X-CSRF-Token) are copied at
 * LWS_CALLBACK_HTTP; a POST body (at most 64 KiB, else 413) is collected from
 * LWS_CALLBACK_HTTP_BODY and the route runs at BODY_COMPLETION (or at once when the request
 * says Content-Length: 0). Every reply carries Cache-Control: no-store, nosniff, a strict
 * Content-Security-Policy (scripts and styles from this server only, no framing) and no
 * Referer, whatever the route.
 *
 * Writes follow the same discipline as the WebSocket side: nothing is written in
 * LWS_CALLBACK_HTTP; each LWS_CALLBACK_HTTP_WRITEABLE does one write (first the headers,
 * then the whole body with LWS_WRITE_HTTP_FINAL; lws buffers what the socket does not
 * take at once). Static files are read whole and capped at 8 MiB: the page is small, and a
 * streaming file server is not what this daemon is for.
 *
 * This protocol is also where a WebSocket upgrade lands when it did not ask for the
 * fieldsync.v1 sub-protocol: such upgrades are refused here (protocol §1).
 */
#include "web.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HTTP_MAX_FILE (8u << 20)

typedef int (*http_route_fn)(server *srv, const http_req *req, http_reply *out);

typedef struct http_route {
    const char *path;
    bool prefix;        /* match every path starting with `path` */
    bool post;          /* also takes POST (else: 405) */
    http_route_fn fn;   /* fills out; returns 0 or a negative fs_err (then 500) */
} http_route;

typedef struct http_pss {
    http_reply r;
    int phase;          /* 0: headers next, 1: body next */
    http_req req;
    uint8_t *body;      /* POST body being collected, owned */
    size_t body_len, body_cap;
    bool body_too_big;
} http_pss;

size_t http_pss_size(void) { return sizeof(http_pss); }

int reply_set(http_reply *out, int status, const char *type, const void *body, size_t len)
{
    free(out->buf);
    out->buf = malloc(LWS_PRE + len + 1);
    if (!out->buf)
        return FS_ENOMEM;
    memcpy(out->buf + LWS_PRE, body, len);
    out->len = len;
    out->status = status;
    out->type = type;
    return 0;
}

int reply_text(http_reply *out, int status, const char *text)
{
    return reply_set(out, status, "text/plain; charset=utf-8", text, strlen(text));
}

int reply_json(http_reply *out, int status, strbuf *b)
{
    int rc = b->oom ? FS_ENOMEM
                    : reply_set(out, status, "application/json; charset=utf-8", b->p ? b->p : "",
                                b->len);
    sb_free(b);
    return rc;
}

int reply_error(http_reply *out, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    strbuf b = {0};
    sb_printf(&b, "{\"error\":");
    json_s(&b, code);
    sb_printf(&b, ",\"message\":");
    json_s(&b, msg);
    sb_append(&b, "}", 1);
    return reply_json(out, status, &b);
}

/* ---- routes ------------------------------------------------------------------------- */

static int route_healthz(server *srv, const http_req *req, http_reply *out)
{
    (void)srv;
    (void)req;
    return reply_text(out, 200, "ok\n");
}

static int route_metrics(server *srv, const http_req *req, http_reply *out)
{
    (void)req;
    strbuf b = {0};
    metrics_render(srv, &b);
    int rc = b.oom ? FS_ENOMEM
                   : reply_set(out, 200, "text/plain; version=0.0.4; charset=utf-8",
                               b.p ? b.p : "", b.len);
    sb_free(&b);
    return rc;
}

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".ico", "image/x-icon"},              {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},              {".wasm", "application/wasm"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* Accepts "/a/b.c" paths whose segments are non-empty and do not start with '.'. */
static bool web_path_ok(const char *path)
{
    if (path[0] != '/' || strlen(path) > 1024)
        return false;
    for (const char *p = path; *p; p++) {
        if (*p == '\\' || (unsigned char)*p < 0x20)
            return false;
        if (*p == '/' && (p[1] == '.' || p[1] == '/'))
            return false;
    }
    return true;
}

static int route_web(server *srv, const http_req *req, http_reply *out)
{
    const char *path = req->path;
    if (!srv->cfg.web_dir || !web_path_ok(path))
        return reply_text(out, 404, "not found\n");
    char full[4096];
    size_t n = strlen(path);
    snprintf(full, sizeof full, "%s%s%s", srv->cfg.web_dir, path,
             path[n - 1] == '/' ? "index.html" : "");
    struct stat sb;
    if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode))
        return reply_text(out, 404, "not found\n");
    if (sb.st_size > (off_t)HTTP_MAX_FILE)
        return reply_text(out, 500, "file too large\n");
    FILE *f = fopen(full, "rb");
    if (!f)
        return reply_text(out, errno == EACCES ? 403 : 404, "not found\n");
    out->buf = malloc(LWS_PRE + (size_t)sb.st_size + 1);
    if (!out->buf) {
        fclose(f);
        return FS_ENOMEM;
    }
    out->len = fread(out->buf + LWS_PRE, 1, (size_t)sb.st_size, f);
    fclose(f);
    out->status = 200;
    out->type = content_type(full);
    return 0;
}

static const http_route routes[] = {
    {"/healthz", false, false, route_healthz},
    {"/metrics", false, false, route_metrics},
    {"/api/", true, true, web_api_route},
    {"/", true, false, route_web}, /* last */
};

/* ---- libwebsockets ------------------------------------------------------------------ */

static void reply_free(http_reply *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Runs the route of p->req and asks for the write. */
static int http_dispatch(server *srv, struct lws *wsi, http_pss *p)
{
    http_req *req = &p->req;
    req->body = p->body;
    req->body_len = p->body_len;
    int rc = FS_ENOTFOUND;
    if (p->body_too_big) {
        rc = reply_error(&p->r, 413, "too_large", "request bodies are at most %u bytes",
                         WEB_MAX_BODY);
    } else if (req->method == HTTP_OTHER) {
        rc = reply_text(&p->r, 405, "only GET and POST are served here\n");
    } else {
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
            const http_route *rt = &routes[i];
            bool match = rt->prefix ? !strncmp(req->path, rt->path, strlen(rt->path))
                                    : !strcmp(req->path, rt->path);
            if (!match)
                continue;
            if (req->method == HTTP_POST && !rt->post)
                rc = reply_text(&p->r, 405, "only GET is served here\n");
            else
                rc = rt->fn(srv, req, &p->r);
            break;
        }
    }
    if (rc == FS_ENOTFOUND)
        rc = reply_text(&p->r, 404, "not found\n");
    else if (rc) {
        reply_free(&p->r);
        rc = reply_text(&p->r, 500, "internal error\n");
    }
    free(p->body);
    p->body = NULL;
    p->body_len = p->body_cap = 0;
    req->body = NULL;
    req->body_len = 0;
    if (rc)
        return -1; /* out of memory even for the error text: drop the connection */
    lws_callback_on_writable(wsi);
    return 0;
}

static void copy_hdr(struct lws *wsi, char *dst, size_t cap, enum lws_token_indexes tok)
{
    dst[0] = '\0';
    int n = lws_hdr_total_length(wsi, tok);
    if (n > 0 && n < (int)cap && lws_hdr_copy(wsi, dst, (int)cap, tok) < 0)
        dst[0] = '\0';
}

static int http_request(server *srv, struct lws *wsi, http_pss *p, const char *path)
{
    reply_free(&p->r);
    free(p->body);
    memset(p, 0, sizeof *p);
    http_req *req = &p->req;
    snprintf(req->path, sizeof req->path, "%s", path);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
        req->method = HTTP_GET;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
        req->method = HTTP_POST;
    copy_hdr(wsi, req->cookie, sizeof req->cookie, WSI_TOKEN_HTTP_COOKIE);
    copy_hdr(wsi, req->origin, sizeof req->origin, WSI_TOKEN_ORIGIN);
    copy_hdr(wsi, req->host, sizeof req->host, WSI_TOKEN_HOST);
    int n = lws_hdr_custom_length(wsi, "x-csrf-token:", 13);
    if (n > 0 && n < (int)sizeof req->csrf &&
        lws_hdr_custom_copy(wsi, req->csrf, sizeof req->csrf, "x-csrf-token:", 13) < 0)
        req->csrf[0] = '\0';
    lws_get_peer_simple(wsi, req->peer, sizeof req->peer);
    req->wsi = wsi;
    char cl[32] = "";
    copy_hdr(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    long long clen = cl[0] ? atoll(cl) : 0;
    bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    if (req->method == HTTP_POST && (clen > 0 || chunked)) {
        /* a body follows: the route runs at LWS_CALLBACK_HTTP_BODY_COMPLETION */
        p->body_too_big = clen > (long long)WEB_MAX_BODY;
        return 0;
    }
    return http_dispatch(srv, wsi, p);
}

static void body_append(http_pss *p, const void *in, size_t len)
{
    if (p->body_too_big || !len)
        return;
    if (p->body_len + len > WEB_MAX_BODY) {
        p->body_too_big = true;
        return;
    }
    if (p->body_len + len + 1 > p->body_cap) {
        size_t cap = p->body_cap ? p->body_cap * 2 : 1024;
        while (cap < p->body_len + len + 1)
            cap *= 2;
        uint8_t *nb = realloc(p->body, cap);
        if (!nb) {
            p->body_too_big = true;
            return;
        }
        p->body = nb;
        p->body_cap = cap;
    }
    memcpy(p->body + p->body_len, in, len);
    p->body_len += len;
}

static int add_header(struct lws *wsi, const char *name, const char *value, uint8_t **p,
                      uint8_t *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

static int http_writeable(struct lws *wsi, http_pss *p)
{
    if (!p->r.buf)
        return 0;
    if (p->phase == 0) {
        static const char csp[] =
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
        uint8_t hdr[LWS_PRE + 2048];
        uint8_t *start = hdr + LWS_PRE, *ptr = start, *end = hdr + sizeof hdr - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)p->r.status, p->r.type,
                                        (lws_filepos_t)p->r.len, &ptr, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const unsigned char *)"no-store", 8, &ptr, end) ||
            add_header(wsi, "x-content-type-options:", "nosniff", &ptr, end) ||
            add_header(wsi, "referrer-policy:", "no-referrer", &ptr, end) ||
            add_header(wsi, "x-frame-options:", "DENY", &ptr, end) ||
            add_header(wsi, "content-security-policy:", csp, &ptr, end) ||
            (p->r.set_cookie[0] &&
             add_header(wsi, "set-cookie:", p->r.set_cookie, &ptr, end)) ||
            (p->r.disposition[0] &&
             add_header(wsi, "content-disposition:", p->r.disposition, &ptr, end)) ||
            (p->r.retry_after[0] &&
             add_header(wsi, "retry-after:", p->r.retry_after, &ptr, end)) ||
            lws_finalize_write_http_header(wsi, start, &ptr, end))
            return -1;
        p->phase = 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    int n = lws_write(wsi, p->r.buf + LWS_PRE, p->r.len, LWS_WRITE_HTTP_FINAL);
    reply_free(&p->r);
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    server *srv = lws_context_user(lws_get_context(wsi));
    http_pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        srv_log(SLOG_INFO, "refused a WebSocket upgrade without sub-protocol %s",
                WIRE_SUBPROTOCOL);
        return 1;
    case LWS_CALLBACK_HTTP:
        return http_request(srv, wsi, p, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_BODY:
        if (p)
            body_append(p, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        /* lws writes nothing before the request body is read: answer now */
        return p ? http_dispatch(srv, wsi, p) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return p ? http_writeable(wsi, p) : 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: /* the login worker has verdicts (web_session.c) */
        web_login_collect(srv);
        return 0;
    case LWS_CALLBACK_PROTOCOL_DESTROY:
        web_login_shutdown();
        break;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        web_login_forget(wsi); /* before p's reply is freed: a pending login must not fill it */
        if (p) {
            reply_free(&p->r);
            free(p->body);
            p->body = NULL;
            p->body_len = p->body_cap = 0;
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

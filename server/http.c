/*
 * http.c — plain HTTP on the sync port, as one route table.
 *
 *   GET /healthz   "ok\n" (200) while the service loop runs: for load balancers and systemd
 *   GET /metrics   Prometheus text exposition (metrics.c)
 *   GET /...       files under --web DIR (the supervisor page); 404 without --web
 *
 * Extension point: a later feature adds an entry to `routes` below — a path (exact, or a
 * prefix) and a function that fills an http_reply. The function runs on the service thread
 * and may read the store (srv->store) and the server tables (srv->db); the reply is sent by
 * the code here, so routes never deal with libwebsockets' write rules. Routes are matched
 * in order; the static-file route is last and catches the rest.
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
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HTTP_MAX_FILE (8u << 20)

typedef struct http_reply {
    int status;
    const char *type;   /* Content-Type */
    uint8_t *buf;       /* LWS_PRE headroom + body, owned */
    size_t len;         /* body bytes */
} http_reply;

typedef int (*http_route_fn)(server *srv, const char *path, http_reply *out);

typedef struct http_route {
    const char *path;
    bool prefix;        /* match every path starting with `path` */
    http_route_fn fn;   /* fills out; returns 0 or a negative fs_err (then 500) */
} http_route;

typedef struct http_pss {
    http_reply r;
    int phase;          /* 0: headers next, 1: body next */
} http_pss;

size_t http_pss_size(void) { return sizeof(http_pss); }

/* Sets a reply from bytes (copied). */
static int reply_set(http_reply *out, int status, const char *type, const void *body, size_t len)
{
    out->buf = malloc(LWS_PRE + len + 1);
    if (!out->buf)
        return FS_ENOMEM;
    memcpy(out->buf + LWS_PRE, body, len);
    out->len = len;
    out->status = status;
    out->type = type;
    return 0;
}

static int reply_text(http_reply *out, int status, const char *text)
{
    return reply_set(out, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* ---- routes ------------------------------------------------------------------------- */

static int route_healthz(server *srv, const char *path, http_reply *out)
{
    (void)srv;
    (void)path;
    return reply_text(out, 200, "ok\n");
}

static int route_metrics(server *srv, const char *path, http_reply *out)
{
    (void)path;
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

static int route_web(server *srv, const char *path, http_reply *out)
{
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
    {"/healthz", false, route_healthz},
    {"/metrics", false, route_metrics},
    {"/", true, route_web}, /* last */
};

/* ---- libwebsockets ------------------------------------------------------------------ */

static void reply_free(http_reply *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

static int http_request(server *srv, struct lws *wsi, http_pss *p, const char *path)
{
    reply_free(&p->r);
    p->phase = 0;
    int rc;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        rc = reply_text(&p->r, 405, "only GET is served here\n");
    } else {
        rc = FS_ENOTFOUND;
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
            const http_route *rt = &routes[i];
            bool match = rt->prefix ? !strncmp(path, rt->path, strlen(rt->path))
                                    : !strcmp(path, rt->path);
            if (match) {
                rc = rt->fn(srv, path, &p->r);
                break;
            }
        }
        if (rc == FS_ENOTFOUND)
            rc = reply_text(&p->r, 404, "not found\n");
        else if (rc) {
            reply_free(&p->r);
            rc = reply_text(&p->r, 500, "internal error\n");
        }
    }
    if (rc)
        return -1; /* out of memory even for the error text: drop the connection */
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_writeable(struct lws *wsi, http_pss *p)
{
    if (!p->r.buf)
        return 0;
    if (p->phase == 0) {
        uint8_t hdr[LWS_PRE + 512];
        uint8_t *start = hdr + LWS_PRE, *ptr = start, *end = hdr + sizeof hdr - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)p->r.status, p->r.type,
                                        (lws_filepos_t)p->r.len, &ptr, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const unsigned char *)"no-store", 8, &ptr, end) ||
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
        return 0; /* a request body (POST): nothing here takes one; it is read and dropped */
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        /* lws writes nothing before the request body is read: answer (405) now */
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return p ? http_writeable(wsi, p) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p)
            reply_free(&p->r);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

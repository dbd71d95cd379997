/*
 * session.c — one WebSocket connection speaking fieldsync.v1: the state machine of
 * docs/protocol.md §5, message reassembly and the send queue.
 *
 *   CONNECTED --hello ok--> READY --(push | pull | subscribe | reviews | ping)*--> READY
 *   any state --error that closes--> CLOSING --queue drained--> close frame --> gone
 *
 * Input: lws delivers a message in fragments (rx_buffer_size chunks); they are appended to
 * s->rx until lws_is_final_fragment(), with a hard cap of max_frame (1 MiB): past it the
 * session gets TOO_BIG and WebSocket close 1009, and the rest of that message is discarded
 * unread. A complete message is then decoded and dispatched to its handle_*.c.
 *
 * Output: every message is framed (wire_frame_encode, compressed with the dictionary the
 * device announced) into its own heap block with LWS_PRE bytes of headroom and appended to a
 * per-session queue. LWS_CALLBACK_SERVER_WRITEABLE writes exactly one queued frame and asks
 * for another callback while frames remain; nothing is ever written from anywhere else. A
 * session whose queue passes 1 MiB stops being read (lws_rx_flow_control) until it drains,
 * and one past 16 MiB (a peer that asks and never reads) is dropped with LIMIT.
 *
 * Once an error that closes is queued the session is CLOSING: further input is ignored, the
 * queue still drains (so a push_result committed before a shutdown reaches the device), then
 * the close frame goes out. A closing peer that does not read is cut after 5 s (tick).
 */
#include "server.h"

#include "mpr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void session_packer(server *srv, msgpack_packer *pk)
{
    srv->out.size = 0;
    msgpack_packer_init(pk, &srv->out, msgpack_sbuffer_write);
}

static void queue_clear(session *s)
{
    txframe *f = s->q_head;
    while (f) {
        txframe *n = f->next;
        free(f);
        f = n;
    }
    s->q_head = s->q_tail = NULL;
    s->q_bytes = 0;
    s->q_ledger = 0;
}

/* Frames body and appends it to the queue. force: ignore the queue bound (errors). */
static int queue_body(session *s, const void *body, size_t len, bool ledger, bool force)
{
    server *srv = s->srv;
    uint8_t *frame;
    size_t flen;
    int rc = wire_frame_encode(srv->enc, body, len, s->dict, LWS_PRE, &frame, &flen);
    if (rc)
        return rc;
    if (!force && s->q_bytes + flen > SRV_TXQ_MAX_BYTES)
        return FS_EDEC_TOOBIG;
    txframe *f = malloc(sizeof *f + LWS_PRE + flen);
    if (!f)
        return FS_ENOMEM;
    f->next = NULL;
    f->len = flen;
    f->ledger = ledger;
    memcpy(f->data + LWS_PRE, frame, flen);
    if (s->q_tail)
        s->q_tail->next = f;
    else
        s->q_head = f;
    s->q_tail = f;
    s->q_bytes += flen;
    s->q_ledger += ledger;
    srv->m.messages_out++;
    if (!s->rx_paused && s->q_bytes > SRV_TXQ_PAUSE_BYTES && s->state != SS_CLOSING) {
        lws_rx_flow_control(s->wsi, 0);
        s->rx_paused = true;
    }
    lws_callback_on_writable(s->wsi);
    return 0;
}

static int close_code_for(int code)
{
    switch (code) {
    case WERR_TOO_BIG: return LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE; /* 1009, protocol §1 */
    case WERR_SHUTDOWN: return LWS_CLOSE_STATUS_GOINGAWAY;
    case WERR_INTERNAL: return LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
    case WERR_BAD_FRAME:
    case WERR_UNKNOWN_MESSAGE:
    case WERR_UNEXPECTED: return LWS_CLOSE_STATUS_PROTOCOL_ERR;
    case WERR_AUTH:
    case WERR_SCHEMA:
    case WERR_LIMIT: return LWS_CLOSE_STATUS_POLICY_VIOLATION;
    default: return LWS_CLOSE_STATUS_NORMAL;
    }
}

static void start_closing(session *s, int close_code)
{
    s->state = SS_CLOSING;
    s->closing_since = srv_mono_ms();
    s->close_code = close_code;
    if (s->rx_paused) { /* let lws read the peer's close frame */
        lws_rx_flow_control(s->wsi, 1);
        s->rx_paused = false;
    }
    lws_callback_on_writable(s->wsi);
}

void session_error(session *s, int code, bool closes, const char *fmt, ...)
{
    if (s->state == SS_CLOSING)
        return; /* one closing error per session */
    char text[WIRE_MAX_TEXT + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    srv_log(code == WERR_INTERNAL ? SLOG_ERROR : SLOG_INFO, "%s: error %s: %s", s->peer,
            wire_err_name(code), text);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (!wire_pack_error(&pk, code, text, closes))
        queue_body(s, sb.data, sb.size, false, true);
    msgpack_sbuffer_destroy(&sb);
    if (code > 0 && code < 16)
        s->srv->m.errors_sent[code]++;
    if (closes)
        start_closing(s, close_code_for(code));
}

int session_send(session *s, const void *body, size_t len, bool ledger)
{
    if (s->state == SS_CLOSING)
        return 0; /* the session is going away; the peer will resend what it needs */
    int rc = queue_body(s, body, len, ledger, false);
    if (rc == FS_EDEC_TOOBIG) {
        /* the peer asks and does not read: drop what is queued, tell it why, close */
        queue_clear(s);
        session_error(s, WERR_LIMIT, true,
                      "more than %u bytes waiting to be sent: read your messages",
                      SRV_TXQ_MAX_BYTES);
    } else if (rc) {
        session_error(s, WERR_INTERNAL, true, "cannot queue a message: %s", fs_strerror(rc));
    }
    return rc;
}

unsigned session_count_device(server *srv, const rid_t *device)
{
    unsigned n = 0;
    for (session *s = srv->sessions; s; s = s->next)
        n += s->state == SS_READY && !rid_cmp(&s->device, device);
    return n;
}

void sessions_shutdown(server *srv)
{
    for (session *s = srv->sessions; s; s = s->next)
        session_error(s, WERR_SHUTDOWN, true, "server stopping; reconnect later");
}

/* Re-reads the device and the user's scope after the admin changed the tables: a revoked
 * device or a rotated token ends the session, a changed scope applies from now on. */
bool session_device_valid(session *s)
{
    srv_device d;
    int rc = srvdb_device_get(s->srv->db, &s->device, &d);
    if (rc == FS_ENOTFOUND || (!rc && d.revoked_ms)) {
        session_error(s, WERR_AUTH, true, "device revoked: enrol the device again");
        return false;
    }
    if (!rc && memcmp(d.token_hash, s->token_hash, sizeof d.token_hash)) {
        session_error(s, WERR_AUTH, true,
                      "the device's token was replaced: connect again with the new token");
        return false;
    }
    return true; /* or the table cannot be read now: keep the old view */
}

static void session_refresh(session *s)
{
    server *srv = s->srv;
    if (!session_device_valid(s))
        return;
    srv_user u;
    if (srvdb_user_get(srv->db, s->user.id, &u))
        return;
    user_scope sc;
    if (scope_load(srv, &u, &sc))
        return;
    scope_free(&s->scope);
    s->scope = sc;
}

void sessions_tick(server *srv, bool admin_changed)
{
    int64_t now = srv_mono_ms();
    for (session *s = srv->sessions; s; s = s->next) {
        if (s->state != SS_CLOSING && srv->cfg.idle_timeout_s > 0 &&
            now - s->last_rx >= (int64_t)srv->cfg.idle_timeout_s * 1000)
            session_error(s, WERR_IDLE, true, "no message for %d s", srv->cfg.idle_timeout_s);
        else if (s->state != SS_CLOSING && srv->cfg.idle_timeout_s > 0 &&
                 now - s->last_msg >= 2 * (int64_t)srv->cfg.idle_timeout_s * 1000)
            /* bytes keep coming but no message completes: a trickle (slowloris) that would
             * otherwise hold the session and its buffer for ever */
            session_error(s, WERR_IDLE, true, "no complete message for %d s: sending too slowly",
                          2 * srv->cfg.idle_timeout_s);
        else if (s->state == SS_READY && admin_changed)
            session_refresh(s);
        if (s->state == SS_CLOSING && now - s->closing_since > SRV_CLOSE_GRACE_S * 1000)
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/* ---- dispatch ----------------------------------------------------------------------- */

static void handle_ping(session *s, mpr *r, uint32_t count, bool pong)
{
    uint64_t nonce;
    fs_error e = {0};
    if (wire_read_ping(r, count, &nonce, &e) || mpr_left(r)) {
        session_error(s, WERR_BAD_FRAME, true, "%s", e.code ? e.msg : "bytes after the message");
        return;
    }
    if (pong)
        return; /* an answer to nothing we sent, or to a ping of a later revision: ignore */
    msgpack_packer pk;
    session_packer(s->srv, &pk);
    if (wire_pack_ping(&pk, true, nonce) == 0)
        session_send(s, s->srv->out.data, s->srv->out.size, false);
}

static void handle_peer_error(session *s, mpr *r, uint32_t count)
{
    wire_error we;
    fs_error e = {0};
    if (wire_read_error(r, count, &we, &e)) {
        session_error(s, WERR_BAD_FRAME, true, "%s", e.msg);
        return;
    }
    srv_log(SLOG_INFO, "%s: device reports error %d: %.*s", s->peer, we.code,
            (int)we.text_len, we.text);
    if (we.closes)
        start_closing(s, LWS_CLOSE_STATUS_NORMAL);
}

static void session_message(session *s, const uint8_t *frame, size_t len)
{
    server *srv = s->srv;
    int64_t now = srv_mono_ms();
    srv->m.messages_in++;
    if (srv->cfg.msg_rate) {
        if (now - s->rate_window >= 1000) {
            s->rate_window = now;
            s->rate_count = 0;
        }
        if (++s->rate_count > srv->cfg.msg_rate) {
            session_error(s, WERR_LIMIT, true, "more than %u messages in one second",
                          srv->cfg.msg_rate);
            return;
        }
    }
    if (s->rx_text) {
        session_error(s, WERR_BAD_FRAME, true, "text message: fieldsync.v1 sends binary messages");
        return;
    }
    const uint8_t *body;
    size_t blen;
    int rc = wire_frame_decode(srv->dec, frame, len, srv->cfg.max_frame, &body, &blen);
    if (rc == FS_EDEC_TOOBIG) {
        session_error(s, WERR_TOO_BIG, true, "message body larger than %u bytes",
                      srv->cfg.max_frame);
        return;
    }
    if (rc) {
        session_error(s, WERR_BAD_FRAME, true, "bad frame header: %s", fs_strerror(rc));
        return;
    }
    mpr r;
    mpr_init(&r, body, blen);
    uint32_t type, count;
    rc = wire_read_type(&r, &type, &count);
    if (rc) {
        session_error(s, WERR_BAD_FRAME, true,
                      "the body must be a MessagePack array starting with the message type: %s",
                      fs_strerror(rc));
        return;
    }
    bool known = type >= MSG_HELLO && type <= MSG_REVIEWS;
    if (!known) {
        session_error(s, WERR_UNKNOWN_MESSAGE, true, "unknown message type %u", type);
        return;
    }
    if (s->state == SS_CONNECTED && type != MSG_HELLO) {
        session_error(s, WERR_UNEXPECTED, true, "send hello first (got message type %u)", type);
        return;
    }
    switch (type) {
    case MSG_HELLO:
        if (s->state == SS_READY) {
            session_error(s, WERR_UNEXPECTED, true, "second hello in one session");
            return;
        }
        handle_hello(s, &r, count);
        break;
    case MSG_PUSH: handle_push(s, &r, count); break;
    case MSG_PULL: handle_pull(s, &r, count); break;
    case MSG_SUBSCRIBE: handle_subscribe(s, &r, count); break;
    case MSG_REVIEWS: handle_reviews(s, &r, count); break;
    case MSG_PING: handle_ping(s, &r, count, false); break;
    case MSG_PONG: handle_ping(s, &r, count, true); break;
    case MSG_ERROR: handle_peer_error(s, &r, count); break;
    default:
        session_error(s, WERR_UNEXPECTED, true,
                      "message type %u goes from the server to devices, not back", type);
    }
}

/* ---- libwebsockets ------------------------------------------------------------------ */

static void session_open(server *srv, session *s, struct lws *wsi)
{
    memset(s, 0, sizeof *s);
    s->srv = srv;
    s->wsi = wsi;
    s->state = SS_CONNECTED;
    s->last_rx = s->last_msg = s->rate_window = srv_mono_ms();
    lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->n_sessions++;
    if (srv->stopping)
        session_error(s, WERR_SHUTDOWN, true, "server stopping; reconnect later");
}

static void session_gone(server *srv, session *s)
{
    if (!s->srv)
        return; /* never opened */
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->n_sessions--;
    queue_clear(s);
    free(s->rx);
    if (s->user.id) /* it had said hello: supervisors' device views change (online, refused) */
        live_device_event(srv, &s->device, &s->scope);
    scope_free(&s->scope);
    if (s->state != SS_CONNECTED)
        srv_log(SLOG_DEBUG, "%s: session closed", s->peer);
    s->srv = NULL;
}

static void session_rx(session *s, const void *in, size_t len)
{
    server *srv = s->srv;
    srv->m.bytes_in += len;
    if (s->state == SS_CLOSING)
        return; /* discard: the error is queued and the close follows */
    s->last_rx = srv_mono_ms(); /* a big message on a slow link is not idleness */
    if (s->rx_len == 0) /* the first bytes of a message: lws keeps the opcode for all */
        s->rx_text = !lws_frame_is_binary(s->wsi);
    if (len > srv->cfg.max_frame - s->rx_len) {
        s->rx_len = 0;
        session_error(s, WERR_TOO_BIG, true, "message larger than %u bytes", srv->cfg.max_frame);
        return;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + len)
            cap *= 2;
        uint8_t *p = realloc(s->rx, cap);
        if (!p) {
            session_error(s, WERR_INTERNAL, true, "out of memory");
            return;
        }
        s->rx = p;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(s->wsi))
        return;
    s->last_msg = srv_mono_ms();
    session_message(s, s->rx, s->rx_len);
    s->rx_len = 0;
    s->rx_text = false;
    if (s->rx_cap > (256u << 10)) { /* do not keep a big buffer for an idle session */
        free(s->rx);
        s->rx = NULL;
        s->rx_cap = 0;
    }
}

static int session_writeable(session *s)
{
    txframe *f = s->q_head;
    if (!f) {
        if (s->state == SS_CLOSING) {
            char reason[32];
            int n = snprintf(reason, sizeof reason, "%s",
                             s->close_code == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE ? "TOO_BIG" : "");
            lws_close_reason(s->wsi, (enum lws_close_status)s->close_code,
                             (unsigned char *)reason, (size_t)n);
            return -1;
        }
        return 0;
    }
    int n = lws_write(s->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_BINARY);
    if (n < 0)
        return -1;
    s->srv->m.bytes_out += f->len;
    fault_frame_written(f); /* tests: FIELDSYNC_FAULT=push_after_send (fault.c) */
    s->q_head = f->next;
    if (!s->q_head)
        s->q_tail = NULL;
    s->q_bytes -= f->len;
    s->q_ledger -= f->ledger;
    free(f);
    if (s->rx_paused && s->q_bytes < SRV_TXQ_PAUSE_BYTES / 4) {
        lws_rx_flow_control(s->wsi, 1);
        s->rx_paused = false;
    }
    if (s->q_head || s->state == SS_CLOSING)
        lws_callback_on_writable(s->wsi);
    return 0;
}

int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    server *srv = lws_context_user(lws_get_context(wsi));
    session *s = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64] = "";
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/sync")) {
            srv_log(SLOG_INFO, "refused WebSocket upgrade on '%s': the path is /sync", uri);
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        session_open(srv, s, wsi);
        break;
    case LWS_CALLBACK_RECEIVE:
        if (s->srv)
            session_rx(s, in, len);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->srv)
            return session_writeable(s);
        break;
    case LWS_CALLBACK_CLOSED:
        session_gone(srv, s);
        break;
    default:
        break;
    }
    return 0;
}

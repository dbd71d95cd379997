/*
 * handle_subscribe.c — subscribe (7) and the ledger events (8) it brings.
 *
 * A subscription is a filter: the whole scope of the user (""), one village, or one township
 * (its villages), always intersected with the user's scope. After every COMMIT of a push the
 * engine calls subscribe_fanout() (store_commit_fn) with each accepted change; every READY
 * session whose filter matches gets [8, seq, scope, change (full form)], converted to its
 * schema version, in commit order, on its normal send queue (so ledger events, pull answers
 * and push results to one session stay in the order they were produced).
 *
 * The queue of ledger events per session is bounded (1,000 not yet written): the next event
 * past it drops the subscription and sends RESYNC (closes false); the subscriber pulls from
 * its cursor and subscribes again. A slow page therefore costs bounded memory and never
 * slows the pushing device.
 *
 * There is no answer to subscribe itself: a ping after it returns once it is in effect
 * (answers come in request order).
 *
 * The same fan-out feeds the supervisor page's WebSocket (/live, web_live.c) after the
 * fieldsync.v1 subscribers, and serves changes the server makes itself (server_fanout).
 */
#include "server.h"

#include "mpr.h"

#include <string.h>

/* Whether the user may subscribe to code (a village or township). */
static bool may_watch(session *s, const char *code, sub_kind *kind)
{
    server *srv = s->srv;
    const user_scope *sc = &s->scope;
    if (village_find(srv, code)) {
        *kind = SUB_VILLAGE;
        return sc->kind == SCOPE_CHILDREN || scope_has_village(sc, code);
    }
    if (!srvdb_township_exists(srv->db, code))
        return false;
    *kind = SUB_TOWNSHIP;
    if (sc->kind != SCOPE_VILLAGES)
        return sc->kind == SCOPE_CHILDREN || !strcmp(sc->township, code);
    for (size_t i = 0; i < sc->n_villages; i++) {
        const village_entry *v = village_find(srv, sc->villages[i]);
        if (v && !strcmp(v->township, code))
            return true;
    }
    return false;
}

static void sub_link(session *s)
{
    if (s->sub != SUB_NONE)
        return;
    server *srv = s->srv;
    s->sub_prev = NULL;
    s->sub_next = srv->subscribers;
    if (srv->subscribers)
        srv->subscribers->sub_prev = s;
    srv->subscribers = s;
}

void subscribe_drop(session *s)
{
    if (s->sub == SUB_NONE)
        return;
    if (s->sub_prev)
        s->sub_prev->sub_next = s->sub_next;
    else
        s->srv->subscribers = s->sub_next;
    if (s->sub_next)
        s->sub_next->sub_prev = s->sub_prev;
    s->sub_prev = s->sub_next = NULL;
    s->sub = SUB_NONE;
}

int handle_subscribe(session *s, mpr *r, uint32_t count)
{
    const char *scope;
    uint32_t len;
    fs_error e = {0};
    if (wire_read_subscribe(r, count, &scope, &len, &e) || mpr_left(r)) {
        session_error(s, WERR_BAD_FRAME, true, "malformed subscribe: %s",
                      e.code ? e.msg : "bytes after the message");
        return -1;
    }
    if (len == 0) {
        sub_link(s);
        s->sub = SUB_ALL;
        s->sub_code[0] = '\0';
        return 0;
    }
    char code[SRV_CODE_MAX + 1] = "";
    sub_kind kind = SUB_NONE;
    if (len <= SRV_CODE_MAX) {
        memcpy(code, scope, len);
        code[len] = '\0';
    }
    if (len > SRV_CODE_MAX || !may_watch(s, code, &kind)) {
        session_error(s, WERR_UNEXPECTED, true,
                      "subscribe: '%.*s' is not a township or village within your scope "
                      "(send \"\" for your whole scope)",
                      (int)(len > 40 ? 40 : len), scope);
        return -1;
    }
    sub_link(s);
    s->sub = kind;
    snprintf(s->sub_code, sizeof s->sub_code, "%s", code);
    return 0;
}

static bool filter_matches(session *t, const char *scope)
{
    switch (t->sub) {
    case SUB_ALL: return true;
    case SUB_VILLAGE: return scope && !strcmp(scope, t->sub_code);
    case SUB_TOWNSHIP: {
        const village_entry *v = scope ? village_find(t->srv, scope) : NULL;
        return v && !strcmp(v->township, t->sub_code);
    }
    default: return false;
    }
}

/* Every committed change, from a device's push or from the server itself (the page's
 * review resolutions): ledger events to subscribed sessions, then live events to the
 * supervisors' pages (web_live.c). */
static void fanout(server *srv, const change *c, uint64_t seq, const char *scope)
{
    for (session *t = srv->subscribers, *next; t; t = next) {
        next = t->sub_next; /* RESYNC below unlinks t */
        if (t->state != SS_READY || t->sub == SUB_NONE || !filter_matches(t, scope) ||
            !scope_sees(t, c, scope))
            continue;
        if (t->q_ledger >= srv->cfg.ledger_queue) {
            subscribe_drop(t);
            session_error(t, WERR_RESYNC, false,
                          "more than %u ledger events waiting: pull from your cursor, then "
                          "subscribe again",
                          srv->cfg.ledger_queue);
            continue;
        }
        change *lc = &srv->ledger_change;
        *lc = *c;
        if (!change_downgrade(srv->schema, lc, (int)t->version))
            continue;
        msgpack_packer pk;
        srv->tmp.size = 0;
        msgpack_packer_init(&pk, &srv->tmp, msgpack_sbuffer_write);
        if (wire_pack_ledger_header(&pk, seq, scope) || change_pack(&pk, lc, true))
            continue;
        if (session_send(t, srv->tmp.data, srv->tmp.size, true) == 0)
            srv->m.ledger_events++;
    }
    live_fanout(srv, c, seq, scope);
}

void subscribe_fanout(void *ctx, const change *c, uint64_t seq, const char *scope)
{
    session *pusher = ctx;
    fanout(pusher->srv, c, seq, scope);
}

void server_fanout(void *ctx, const change *c, uint64_t seq, const char *scope)
{
    server *srv = ctx;
    int64_t t0 = srv->lt ? lws_now_usecs() : 0;
    fanout(ctx, c, seq, scope);
    if (srv->lt) {
        srv->lt->cur.fan += lws_now_usecs() - t0;
        srv->lt->cur.n_fan++;
    }
}

/*
 * handle_hello.c — hello (1) → welcome (2): authenticates the device and opens the session.
 *
 * Checks, in this order, each answered with an error that closes (protocol §4 hello, §8):
 *   the address has not failed 20 hellos in the last minute   else AUTH, without checking
 *   the message decodes                                        else BAD_FRAME
 *   an existing device has not had 5 x 20 wrong tokens (from   else AUTH, without checking
 *   any addresses) in the last minute
 *   the device exists and the token hashes to its stored hash  else AUTH (one text for both,
 *                                                                   so ids cannot be probed)
 *   the device is not revoked                                  else AUTH
 *   schema_version is not 0                                    else SCHEMA
 *   fewer than 4 sessions of this device are open              else LIMIT
 * On success the device's last sync and its reported outbox size (hello's optional 10th
 * element, `pending`) are recorded for the supervisors' device-health view
 * (srv_device_health) and their pages get a live "device" event.
 * A client clock too far ahead is not a reason to refuse the session: welcome's server_hlc
 * lets the device see the difference, and each change it pushes with such a clock is refused
 * alone (ECLOCK_DRIFT, by the engine).
 *
 * The failed-hello table is a fixed array of recent addresses (oldest slot reused), so a
 * flood of addresses cannot grow memory; a slot forgets after a minute.
 */
#include "server.h"

#include "mpr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Finds (or, with create, takes over the oldest slot for) key in a failure table. */
static hello_fail *fail_slot(hello_fail *tab, const char *addr, bool create)
{
    int64_t now = srv_mono_ms();
    hello_fail *oldest = &tab[0];
    for (int i = 0; i < SRV_HELLO_FAIL_SLOTS; i++) {
        hello_fail *f = &tab[i];
        if (f->addr[0] && !strcmp(f->addr, addr)) {
            if (now - f->window >= 60000) {
                f->window = now;
                f->count = 0;
            }
            return f;
        }
        if (!f->addr[0] || f->window < oldest->window)
            oldest = f;
    }
    if (!create)
        return NULL;
    snprintf(oldest->addr, sizeof oldest->addr, "%s", addr);
    oldest->window = now;
    oldest->count = 0;
    return oldest;
}

/* The key of an address in the failure table: an IPv6 address counts by its /64 (one
 * subscriber's network: an attacker there has 2^64 addresses), IPv4 (and IPv4-mapped IPv6)
 * by the address. */
static void addr_key(const char *addr, char *key, size_t cap)
{
    struct in6_addr a6;
    if (inet_pton(AF_INET6, addr, &a6) == 1 && !IN6_IS_ADDR_V4MAPPED(&a6)) {
        memset(a6.s6_addr + 8, 0, 8);
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &a6, text, sizeof text)) {
            snprintf(key, cap, "%s/64", text);
            return;
        }
    }
    const char *v4 = !strncmp(addr, "::ffff:", 7) ? addr + 7 : addr;
    snprintf(key, cap, "%s", v4);
}

bool hello_blocked(server *srv, const char *addr)
{
    char key[64];
    addr_key(addr, key, sizeof key);
    hello_fail *f = fail_slot(srv->fails, key, false);
    return f && srv->cfg.hello_fails && f->count >= srv->cfg.hello_fails;
}

void hello_failed(server *srv, const char *addr)
{
    char key[64];
    addr_key(addr, key, sizeof key);
    fail_slot(srv->fails, key, true)->count++;
}

/* Wrong tokens for one (existing) device, from any addresses: past 5 x --hello-fails in a
 * minute its hellos are refused unchecked for the rest of that minute. Tokens carry 256
 * random bits, so this is not what stops guessing; it bounds the work and the noise of a
 * distributed attempt on one device and makes it visible (warning). The price: whoever
 * knows a device id and controls enough addresses (or /64s) can keep that device out for a
 * minute at a time (docs/security.md). Unknown device ids are not tracked: they have no
 * token to guess, and the table must not be flushable with made-up ids. */
static bool device_blocked(server *srv, const rid_t *device)
{
    char key[RID_TEXT_LEN + 1];
    rid_to_text(device, key);
    hello_fail *f = fail_slot(srv->dev_fails, key, false);
    return f && srv->cfg.hello_fails &&
           f->count >= srv->cfg.hello_fails * SRV_DEVICE_FAILS_FACTOR;
}

static void device_failed(server *srv, const rid_t *device, const char *peer)
{
    char key[RID_TEXT_LEN + 1];
    rid_to_text(device, key);
    hello_fail *f = fail_slot(srv->dev_fails, key, true);
    if (++f->count == srv->cfg.hello_fails * SRV_DEVICE_FAILS_FACTOR)
        srv_log(SLOG_WARN, "%u wrong tokens for device %s within a minute (the last from %s): "
                "its hellos are refused for the rest of the minute", f->count, key, peer);
}

static int refuse(session *s, int code, bool count_failure, const char *text)
{
    s->srv->m.hello_failures++;
    if (count_failure)
        hello_failed(s->srv, s->peer);
    session_error(s, code, true, "%s", text);
    return -1;
}

/* One hello's bookkeeping, written later (hello_notes_write). */
typedef struct hello_note {
    rid_t device;
    char agent[64];
    size_t agent_len;
    bool has_pending;
    uint64_t pending, dseq_at;
} hello_note;

static void hello_note_add(server *srv, const wire_hello *h, uint64_t dseq_at)
{
    if (srv->n_notes == srv->cap_notes) {
        size_t cap = srv->cap_notes ? srv->cap_notes * 2 : 64;
        hello_note *n = realloc(srv->notes, cap * sizeof *n);
        if (n) {
            srv->notes = n;
            srv->cap_notes = cap;
        } else {
            hello_notes_write(srv); /* out of memory: write those noted so far, reuse */
            if (!srv->cap_notes) {
                srv_log(SLOG_WARN, "out of memory: a hello's device bookkeeping not written");
                return;
            }
        }
    }
    hello_note *n = &srv->notes[srv->n_notes++];
    n->device = h->device;
    n->agent_len = h->agent_len < sizeof n->agent ? h->agent_len : sizeof n->agent;
    memcpy(n->agent, h->agent, n->agent_len);
    n->has_pending = h->has_pending;
    n->pending = h->pending;
    n->dseq_at = dseq_at;
}

void hello_notes_write(server *srv)
{
    if (!srv->n_notes)
        return;
    bool own = !store_in_group(srv->store) && sqlite3_get_autocommit(srv->db);
    int rc = own ? sqlite3_exec(srv->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) : SQLITE_OK;
    for (size_t i = 0; i < srv->n_notes && rc == SQLITE_OK; i++) {
        const hello_note *n = &srv->notes[i];
        if (srvdb_device_seen(srv->db, &n->device, n->agent, n->agent_len) ||
            srvdb_device_health(srv->db, &n->device, n->has_pending, n->pending, n->dseq_at))
            rc = SQLITE_ERROR;
    }
    if (own && rc == SQLITE_OK)
        rc = sqlite3_exec(srv->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        srv_log(SLOG_WARN, "device bookkeeping of %zu hellos not written: %s", srv->n_notes,
                sqlite3_errmsg(srv->db));
        if (own && !sqlite3_get_autocommit(srv->db))
            sqlite3_exec(srv->db, "ROLLBACK", NULL, NULL, NULL);
    }
    srv->n_notes = 0;
}

void hello_notes_free(server *srv)
{
    free(srv->notes);
    srv->notes = NULL;
    srv->n_notes = srv->cap_notes = 0;
}

int handle_hello(session *s, mpr *r, uint32_t count)
{
    server *srv = s->srv;
    if (hello_blocked(srv, s->peer))
        return refuse(s, WERR_AUTH, false,
                      "too many failed hellos from this address: wait a minute");
    wire_hello h;
    fs_error e = {0};
    if (wire_read_hello(r, count, &h, &e) || mpr_left(r)) {
        char text[256];
        snprintf(text, sizeof text, "malformed hello: %s",
                 e.code ? e.msg : "bytes after the message");
        return refuse(s, WERR_BAD_FRAME, true, text);
    }
    srv_device d;
    int rc = srvdb_device_get(srv->db, &srv->device_stmt, &h.device, &d);
    if (rc == FS_EIO)
        return refuse(s, WERR_INTERNAL, false, "cannot read the device table; try again later");
    if (rc == 0 && device_blocked(srv, &h.device))
        return refuse(s, WERR_AUTH, true,
                      "too many failed hellos for this device: wait a minute");
    static const uint8_t nothing[SRV_TOKEN_HASH_LEN];
    bool ok = auth_token_check(h.token, h.token_len, rc == 0 ? d.token_hash : nothing);
    if (rc == 0 && !ok)
        device_failed(srv, &h.device, s->peer);
    if (rc || !ok)
        return refuse(s, WERR_AUTH, true,
                      "unknown device or wrong token: enrol the device again "
                      "(fieldsyncd admin device enrol USER) and use the token it prints");
    if (d.revoked_ms)
        return refuse(s, WERR_AUTH, true,
                      "this device was revoked: enrol it again to get a new token");
    if (h.schema_version == 0)
        return refuse(s, WERR_SCHEMA, false,
                      "schema version 0 is not supported: install a schema file (version >= 1)");
    srv_user u;
    if ((rc = srvdb_user_get(srv->db, d.user_id, &u)))
        return refuse(s, rc == FS_ENOTFOUND ? WERR_AUTH : WERR_INTERNAL, false,
                      "the device's user no longer exists: enrol the device for another user");
    int role = schema_role_by_name(srv->schema, u.role);
    if (role < 0) {
        char text[160];
        snprintf(text, sizeof text,
                 "user role '%s' is not in the server's schema: an administrator must fix the "
                 "user",
                 u.role);
        return refuse(s, WERR_AUTH, false, text);
    }
    if (session_count_device(srv, &h.device) >= SRV_SESSIONS_PER_DEVICE) {
        char text[128];
        snprintf(text, sizeof text, "this device already has %d sessions open",
                 SRV_SESSIONS_PER_DEVICE);
        return refuse(s, WERR_LIMIT, false, text);
    }
    uint64_t server_dseq = 0, log_end = 0;
    if (store_device_seq(srv->store, &h.device, &server_dseq) ||
        store_last_seq(srv->store, &log_end))
        return refuse(s, WERR_INTERNAL, false, "cannot read the store; try again later");
    if ((rc = scope_load(srv, &u, &s->scope)))
        return refuse(s, WERR_INTERNAL, false, "cannot load the user's scope");
    if (hlc_check(store_clock(srv->store), h.client_hlc))
        srv_log(SLOG_WARN, "%s: device clock is more than a day ahead (client hlc %llu)",
                s->peer, (unsigned long long)h.client_hlc);

    s->device = h.device;
    memcpy(s->token_hash, d.token_hash, sizeof s->token_hash);
    s->user = u;
    s->role = role;
    s->version = h.schema_version < (uint32_t)srv->schema->version
                     ? h.schema_version
                     : (uint32_t)srv->schema->version;
    snprintf(s->agent, sizeof s->agent, "%.*s", (int)h.agent_len, h.agent);
    s->state = SS_READY;
    /* the store was restored since this device last pulled: a cursor beyond the restored log
     * points into changes that are gone (handle_pull.c makes it start again) */
    uint64_t restored;
    if (srvdb_restore_pending(srv->db, &h.device, &restored)) {
        if (h.cursor > restored) {
            s->restore_stale = true;
            s->restore_seq = restored;
        } else {
            srvdb_restore_done(srv->db, &h.device);
        }
    }
    /* last seen, and device health for the supervisor page (its outbox size and our
     * consumed dseq now): written at the end of the slice with the other hellos' */
    hello_note_add(srv, &h, server_dseq);
    live_device_event(srv, &h.device, &s->scope);

    wire_welcome w = {
        .server_hlc = hlc_now(store_clock(srv->store)),
        .server_dseq = server_dseq,
        .schema_version = (uint32_t)srv->schema->version,
        .max_frame = srv->cfg.max_frame,
        .max_batch = srv->cfg.max_batch,
        .dict = h.dict < wire_dicts_latest(srv->dicts) ? h.dict : wire_dicts_latest(srv->dicts),
        .user = u.name,
        .user_len = (uint32_t)strlen(u.name),
        .role = (uint32_t)role,
        .log_end = log_end,
    };
    msgpack_packer pk;
    session_packer(srv, &pk);
    if (wire_pack_welcome(&pk, &w))
        return refuse(s, WERR_INTERNAL, false, "out of memory");
    session_send(s, srv->out.data, srv->out.size, false); /* the welcome itself goes raw */
    s->dict = w.dict;
    srv->m.sessions_opened++;
    char dev[RID_TEXT_LEN + 1];
    rid_to_text(&h.device, dev);
    srv_log(SLOG_INFO, "%s: device %s (user %s, %s, schema v%u, %.*s) connected", s->peer, dev,
            u.name, u.role, h.schema_version, (int)h.agent_len, h.agent);
    return 0;
}

/*
 * fault_hostile.c — hostile peers against a real daemon, each case answered with the
 * documented error (docs/protocol.md §4, §8, §9) while a bystander session keeps syncing and
 * the store keeps nothing of the attack. server_test.c covers malformed frames and messages,
 * oversize input, rates, and simple refusals; this file adds the rest of the catalogue:
 *
 *   changes    a change with a wrong type in every element and in every kind of field value,
 *              unknown record types and fields, values out of range, ids of the wrong size,
 *              invalid UTF-8 in text: each refused alone (push_result status 2, the code of
 *              protocol §9), its dseq consumed, the batch's good change accepted, the session
 *              still open; a change whose dseq is unreadable makes the push BAD_FRAME
 *   clocks     hlc 0 and 2^64-1, base above hlc, base 2^64-1; hello with client_hlc 0 and
 *              2^64-1 (sessions open; the server clock does not move)
 *   sequences  dseq 0, skipping, repeating with different content, 2^64-1
 *   revoked    a push on an open session right after `device revoke` (before the daemon's
 *              one-second tick): AUTH, nothing stored
 *   cursor     pulls with cursors from the future (2^64-1, log end + 1) and max 2^32-1
 *   sessions   a thousand sessions of one device at once: 4 welcomed, 996 LIMIT
 *   slowloris  a frame that never finishes, one that trickles a byte at a time, a hello that
 *              never comes: hung up with IDLE by --idle-timeout 2 (the trickle by the stall
 *              bound, twice the idle timeout); a half-sent HTTP upgrade is dropped too
 */
#include "check.h"
#include "fault_support.h"
#include "rawws.h"

#include "hlc.h"
#include "mpr.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* CHECK_RES, bystander and the raw pushes are tests/support/rawws.h's. */

static long long log_rows(ft_world *w, const enrolled *dev)
{
    char hex[40];
    ft_hex_id(dev->id, hex);
    return it_sqlnum(w->t.db, "SELECT count(*) FROM log WHERE device = X'%s'", hex);
}

/* Every case's start: the deployment (fault_support.h), the daemon with the option opt
 * (and its value val; NULL for none), the bystander (bo) open. Returns the schema. */
static const schema *hostile_start(ft_world *w, bystander *by, int argc, char **argv,
                                   const char *opt, const char *val)
{
    ft_world_init(w, argc, argv);
    daemon_start(&w->t, &w->d, opt, val, NULL);
    *by = (bystander){.dseq = 0};
    ft_open(&by->c, w, &w->bo);
    return w->t.s;
}

/* Every case's end: the bystander still syncs, the daemon stops cleanly (exit 0). */
static void hostile_done(ft_world *w, bystander *by)
{
    bystander_sync(by, w->t.s);
    fsc_close(&by->c);
    ft_world_done(w);
}

/* Sends body on c and expects error code with closes = true; then closes c. */
static void send_expect_close(fsc *c, const void *body, size_t len, int code)
{
    fsc_send(c, body, len);
    fsc_expect_error(c, code, true);
    fsc_close(c);
}

/* Pushes ch[0..n) as batch 1 and expects error code, closing the session (then closed). */
static void push_expect_close(fsc *c, change *ch, size_t n, int code)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    push_body(&sb, 1, ch, n);
    send_expect_close(c, sb.data, sb.size, code);
    msgpack_sbuffer_destroy(&sb);
}

/* Opens a session of dev on c: the welcome's server_dseq must be dseq (what the daemon
 * consumed of that device, which a refused or broken push must not have moved). */
static void open_expect_dseq(fsc *c, ft_world *w, const enrolled *dev, uint64_t dseq)
{
    ft_open(c, w, dev);
    CHECK_INT(c->w.server_dseq, ==, dseq);
}

/* ---- changes with a wrong element ------------------------------------------------- */

enum { E_TYPE, E_RECORD, E_HLC, E_BASE, E_DSEQ, E_FIELDS };

typedef struct mut {
    const char *what;
    int elem;            /* element replaced by raw (E_FIELDS: the whole map), or -1 */
    int key;             /* with elem -1: field key whose value is raw (1 name, 6 village
                          * replace those; others are added) */
    uint8_t raw[80];
    size_t n;
    int want;            /* expected per-change code */
} mut;

#define B(...) {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__})

/* field numbers of child (schema/fieldsync.yaml): 1 name text(64, required, review),
 * 2 gender enum(2), 3 birth_date date, 5 household ref, 6 village scope(32, required),
 * 8 grade int 0..12, 11 in_difficulty bool, 14 risk_level enum, 16 services_received set */
static const mut muts[] = {
    /* the elements */
    {"type as a string", E_TYPE, 0, B(0xa5, 'c', 'h', 'i', 'l', 'd'), FS_EDEC_TYPE},
    {"type 0", E_TYPE, 0, B(0x00), FS_EUNKNOWN_TYPE},
    {"type 127 (unknown)", E_TYPE, 0, B(0x7f), FS_EUNKNOWN_TYPE},
    {"type 300", E_TYPE, 0, B(0xcd, 0x01, 0x2c), FS_EUNKNOWN_TYPE},
    {"type negative", E_TYPE, 0, B(0xff), FS_EVALUE_RANGE},
    {"record as a string", E_RECORD, 0, B(0xa2, 'i', 'd'), FS_EDEC_TYPE},
    {"record as an integer", E_RECORD, 0, B(0x07), FS_EDEC_TYPE},
    {"record of 15 bytes", E_RECORD, 0,
     B(0xc4, 15, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), FS_EBAD_ID},
    {"record of 17 bytes", E_RECORD, 0,
     B(0xc4, 17, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), FS_EBAD_ID},
    {"record of zeros", E_RECORD, 0,
     B(0xc4, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), FS_EBAD_ID},
    {"hlc as a string", E_HLC, 0, B(0xa1, '1'), FS_EDEC_TYPE},
    {"hlc negative", E_HLC, 0, B(0xd0, 0x80), FS_EVALUE_RANGE},
    {"hlc nil", E_HLC, 0, B(0xc0), FS_EDEC_TYPE},
    {"base as a bool", E_BASE, 0, B(0xc3), FS_EDEC_TYPE},
    {"base as a float", E_BASE, 0, B(0xca, 0, 0, 0, 0), FS_EDEC_TYPE},
    {"fields as an array", E_FIELDS, 0, B(0x92, 0x01, 0x06), FS_EDEC_TYPE},
    {"fields empty", E_FIELDS, 0, B(0x80), FS_EDEC_MISSING},
    {"fields nil", E_FIELDS, 0, B(0xc0), FS_EDEC_TYPE},
    {"field key a string", E_FIELDS, 0, B(0x82, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x', 0x06, 0xa2,
                                         'V', '1'), FS_EDEC_TYPE},
    {"field key 0", E_FIELDS, 0, B(0x83, 0x00, 0xa1, 'x', 0x01, 0xa1, 'x', 0x06, 0xa2, 'V', '1'),
     FS_EUNKNOWN_FIELD},
    {"field key 200", -1, 200, B(0xa1, 'x'), FS_EUNKNOWN_FIELD},
    {"field key 70000", E_FIELDS, 0,
     B(0x83, 0x01, 0xa1, 'x', 0x06, 0xa2, 'V', '1', 0xce, 0, 1, 0x11, 0x70, 0xa1, 'x'),
     FS_EUNKNOWN_FIELD},
    {"field key negative", E_FIELDS, 0, B(0x83, 0xff, 0xa1, 'x', 0x01, 0xa1, 'x', 0x06, 0xa2, 'V',
                                          '1'), FS_EVALUE_RANGE},
    {"field key twice", E_FIELDS, 0, B(0x83, 0x01, 0xa1, 'x', 0x01, 0xa1, 'y', 0x06, 0xa2, 'V',
                                       '1'), FS_EDEC_TYPE},
    {"field keys descending", E_FIELDS, 0, B(0x82, 0x06, 0xa2, 'V', '1', 0x01, 0xa1, 'x'),
     FS_EDEC_TYPE},
    /* every kind of value, of the wrong MessagePack type: the decoder reads each kind by
     * its type, so these are EDEC_TYPE (EVALUE_TYPE is for nil where no nil is allowed) */
    {"text as an integer", -1, 1, B(0x7b), FS_EDEC_TYPE},
    {"text as binary", -1, 1, B(0xc4, 1, 'x'), FS_EDEC_TYPE},
    {"scope as an integer", -1, 6, B(0x01), FS_EDEC_TYPE},
    {"int as a string", -1, 8, B(0xa1, '3'), FS_EDEC_TYPE},
    {"int as a bool", -1, 8, B(0xc3), FS_EDEC_TYPE},
    {"int as a float", -1, 8, B(0xcb, 0x40, 0x08, 0, 0, 0, 0, 0, 0), FS_EDEC_TYPE},
    {"date as a string", -1, 3, B(0xaa, '2', '0', '1', '5', '-', '0', '3', '-', '0', '2'),
     FS_EDEC_TYPE},
    {"enum as a string", -1, 2, B(0xa4, 'm', 'a', 'l', 'e'), FS_EDEC_TYPE},
    {"bool as an integer", -1, 11, B(0x01), FS_EDEC_TYPE},
    {"ref as a string", -1, 5, B(0xa1, 'x'), FS_EDEC_TYPE},
    {"ref of 8 bytes", -1, 5, B(0xc4, 8, 1, 2, 3, 4, 5, 6, 7, 8), FS_EBAD_ID},
    {"ref of zeros", -1, 5, B(0xc4, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
     FS_EBAD_ID},
    {"set as an integer", -1, 16, B(0x05), FS_EDEC_TYPE},
    {"set of three masks", -1, 16, B(0x93, 0x01, 0x00, 0x00), FS_EDEC_COUNT},
    {"set with a string mask", -1, 16, B(0x92, 0xa1, 'x', 0x00), FS_EDEC_TYPE},
    {"required text cleared", -1, 1, B(0xc0), FS_EREQUIRED},
    {"set cleared", -1, 16, B(0xc0), FS_EVALUE_TYPE},
    {"a map as a value", -1, 7, B(0x81, 0x01, 0x01), FS_EDEC_TYPE},
    /* out of range */
    {"int above max", -1, 8, B(0x0d), FS_EVALUE_RANGE},
    {"int below min", -1, 8, B(0xff), FS_EVALUE_RANGE},
    {"int 2^63-1", -1, 8, B(0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), FS_EVALUE_RANGE},
    {"int 2^64-1", -1, 8, B(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), FS_EVALUE_RANGE},
    {"date 2023-13-50", -1, 3, B(0xce, 0x01, 0x34, 0xb4, 0xb6), FS_EVALUE_RANGE},
    {"date 1800-01-01", -1, 3, B(0xce, 0x01, 0x12, 0xa8, 0xe5), FS_EVALUE_RANGE},
    {"date 2023-02-29", -1, 3, B(0xce, 0x01, 0x34, 0xb0, 0x55), FS_EVALUE_RANGE},
    {"enum 99", -1, 2, B(0x63), FS_EVALUE_ENUM},
    {"enum negative", -1, 2, B(0xff), FS_EVALUE_ENUM},
    {"set bit 63", -1, 16, B(0x92, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x00), FS_EVALUE_ENUM},
    {"set adds and removes one value", -1, 16, B(0x92, 0x01, 0x01), FS_EVALUE_RANGE},
    {"text over max_len", -1, 1,
     B(0xd9, 65, 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
       'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
       'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
       'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'),
     FS_EVALUE_RANGE},
    {"scope empty", -1, 6, B(0xa0), FS_EVALUE_RANGE},
    /* text that is not UTF-8 */
    {"text 0xff 0xfe", -1, 1, B(0xa2, 0xff, 0xfe), FS_EDEC_UTF8},
    {"text overlong '/'", -1, 1, B(0xa2, 0xc0, 0xaf), FS_EDEC_UTF8},
    {"text surrogate", -1, 1, B(0xa3, 0xed, 0xa0, 0x80), FS_EDEC_UTF8},
    {"text truncated sequence", -1, 1, B(0xa2, 0xe4, 0xb8), FS_EDEC_UTF8},
    {"text above U+10FFFF", -1, 1, B(0xa4, 0xf4, 0x90, 0x80, 0x80), FS_EDEC_UTF8},
    {"text with NUL", -1, 1, B(0xa3, 'a', 0x00, 'b'), FS_EDEC_UTF8},
    {"scope not UTF-8", -1, 6, B(0xa2, 0xc3, 0x28), FS_EDEC_UTF8},
};

/* Packs the default element `elem` of c. */
static void pack_elem(msgpack_packer *pk, const change *c, int elem)
{
    switch (elem) {
    case E_TYPE: msgpack_pack_uint8(pk, c->type); break;
    case E_RECORD:
        msgpack_pack_bin(pk, 16);
        msgpack_pack_bin_body(pk, c->record.b, 16);
        break;
    case E_HLC: msgpack_pack_uint64(pk, c->hlc); break;
    case E_BASE: msgpack_pack_uint64(pk, c->base); break;
    case E_DSEQ: msgpack_pack_uint64(pk, c->dseq); break;
    }
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A child create (name, village V1) with mutation m. */
static void pack_mut(msgpack_sbuffer *sb, msgpack_packer *pk, const change *c, const mut *m)
{
    msgpack_pack_array(pk, 6);
    for (int e = E_TYPE; e <= E_DSEQ; e++) {
        if (m->elem == e)
            msgpack_sbuffer_write(sb, (const char *)m->raw, m->n);
        else
            pack_elem(pk, c, e);
    }
    if (m->elem == E_FIELDS) {
        msgpack_sbuffer_write(sb, (const char *)m->raw, m->n);
        return;
    }
    int extra = m->elem == -1 && m->key != 1 && m->key != 6;
    msgpack_pack_map(pk, 2 + (uint32_t)extra);
    int keys[3] = {1, 6, 0}, nk = 2;
    if (extra) {
        keys[2] = m->key;
        nk = 3;
        for (int i = 2; i > 0 && keys[i] < keys[i - 1]; i--) {
            int t = keys[i];
            keys[i] = keys[i - 1];
            keys[i - 1] = t;
        }
    }
    for (int i = 0; i < nk; i++) {
        msgpack_pack_uint8(pk, (uint8_t)keys[i]);
        if (m->elem == -1 && keys[i] == m->key)
            msgpack_sbuffer_write(sb, (const char *)m->raw, m->n);
        else if (keys[i] == 1)
            pack_str(pk, "恶意");
        else
            pack_str(pk, "V1");
    }
}

static void test_changes(int argc, char **argv)
{
    ft_world w;
    bystander by;
    const schema *s = hostile_start(&w, &by, argc, argv, NULL, NULL);
    bystander_sync(&by, s);
    fsc a;
    ft_open(&a, &w, &w.ana);
    const size_t nm = sizeof muts / sizeof muts[0];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tres *res = calloc(nm + 1, sizeof *res);
    /* all in one batch, then a good change: each refused alone */
    wire_pack_push_header(&pk, 1, (uint32_t)nm + 1);
    change base;
    for (size_t i = 0; i < nm; i++) {
        rid_t id;
        new_id(&id);
        mk_child(&base, s, &id, "恶意", "V1", i + 1);
        pack_mut(&sb, &pk, &base, &muts[i]);
    }
    rid_t good;
    new_id(&good);
    mk_child(&base, s, &good, "好孩子", "V1", nm + 1);
    change_pack(&pk, &base, false);
    rawws_push_body(&a, sb.data, sb.size, res, (uint32_t)nm + 1);
    int bad = 0;
    for (size_t i = 0; i < nm; i++) {
        bool ok = res[i].dseq == i + 1 && res[i].status == 2 && res[i].code == muts[i].want;
        printf("%-32s -> %d %-16s %s%s\n", muts[i].what, res[i].status, fs_errname(res[i].code),
               res[i].text, ok ? "" : "   <-- UNEXPECTED");
        bad += !ok;
    }
    CHECK_INT(bad, ==, 0);
    CHECK_RES(res[nm], 0, 0);
    /* the same batch again: the same answers (remembered), nothing applied twice */
    tres *again = calloc(nm + 1, sizeof *again);
    rawws_push_body(&a, sb.data, sb.size, again, (uint32_t)nm + 1);
    for (size_t i = 0; i < nm; i++)
        CHECK_RES(again[i], 2, muts[i].want);
    CHECK_RES(again[nm], 1, 0);
    free(again);
    CHECK_INT(log_rows(&w, &w.ana), ==, 1);
    CHECK_INT(it_sqlnum(w.t.db, "SELECT count(*) FROM refused"), ==, nm);
    bystander_sync(&by, s);

    /* a change whose dseq cannot be read: the whole push is BAD_FRAME, nothing consumed */
    fsc_close(&a);
    open_expect_dseq(&a, &w, &w.ana, nm + 1);
    msgpack_sbuffer_clear(&sb);
    wire_pack_push_header(&pk, 2, 2);
    rid_t id;
    new_id(&id);
    mk_child(&base, s, &id, "好", "V1", nm + 2);
    change_pack(&pk, &base, false);
    mut m = {"dseq as a string", E_DSEQ, 0, B(0xa1, '9'), 0};
    mk_child(&base, s, &id, "好", "V1", nm + 3);
    pack_mut(&sb, &pk, &base, &m);
    send_expect_close(&a, sb.data, sb.size, WERR_BAD_FRAME);
    /* a change that is not an array, and one with fields truncated mid-map */
    static const uint8_t not_array[] = {0x93, 0x03, 0x01, 0x91, 0x05};
    static const uint8_t short_change[] = {0x93, 0x03, 0x01, 0x91, 0x94, 0x01, 0xc4, 0x01, 0x00,
                                           0x01};
    const uint8_t *bodies[] = {not_array, short_change};
    size_t lens[] = {sizeof not_array, sizeof short_change};
    for (int i = 0; i < 2; i++) {
        ft_open(&a, &w, &w.ana);
        send_expect_close(&a, bodies[i], lens[i], WERR_BAD_FRAME);
    }
    open_expect_dseq(&a, &w, &w.ana, nm + 1);
    fsc_close(&a);
    CHECK_INT(log_rows(&w, &w.ana), ==, 1);
    bystander_sync(&by, s);
    /* invalid UTF-8 outside changes: hello agent, subscribe scope */
    fsc h;
    fsc_connect(&h, &w.t, w.d.port);
    msgpack_sbuffer_clear(&sb);
    rawws_pack_hello(&sb, &w.ana.device, w.ana.token, 1, t_hlc(), "\xff\xfe");
    send_expect_close(&h, sb.data, sb.size, WERR_BAD_FRAME);
    ft_open(&h, &w, &w.sue);
    static const uint8_t sub_bad[] = {0x92, 0x07, 0xa2, 0xc3, 0x28};
    send_expect_close(&h, sub_bad, sizeof sub_bad, WERR_BAD_FRAME);
    msgpack_sbuffer_destroy(&sb);
    free(res);
    hostile_done(&w, &by);
}

/* ---- clocks at the extremes ------------------------------------------------------ */

static void push_one(fsc *c, change *ch, tres *res)
{
    rawws_push_ok(c, ch, 1, res);
}

/* Welcome's server_hlc is within a minute of the wall clock. */
static void server_clock_sane(ft_world *w, const enrolled *dev)
{
    fsc c;
    ft_open(&c, w, dev);
    uint64_t now_ms = (uint64_t)time(NULL) * 1000;
    uint64_t ms = hlc_physical_ms(c.w.server_hlc);
    if (ms > now_ms + 60000 || ms + 60000 < now_ms) {
        fprintf(stderr, "server clock moved: %llu ms vs wall %llu\n", (unsigned long long)ms,
                (unsigned long long)now_ms);
        abort();
    }
    fsc_close(&c);
}

static void test_clocks(int argc, char **argv)
{
    ft_world w;
    bystander by;
    const schema *s = hostile_start(&w, &by, argc, argv, NULL, NULL);
    /* hellos with client clocks at the extremes: served, and the server clock stays */
    static const uint64_t hellos[] = {0, 1, UINT64_MAX, UINT64_MAX >> 1};
    for (size_t i = 0; i < sizeof hellos / sizeof hellos[0]; i++) {
        fsc c;
        fsc_connect(&c, &w.t, w.d.port);
        rawws_send_hello(&c, &w.ana.device, w.ana.token, 1, hellos[i], "t");
        CHECK_OK(fsc_recv(&c, 5000));
        CHECK_INT(c.m.type, ==, MSG_WELCOME);
        fsc_close(&c);
    }
    server_clock_sane(&w, &w.bo);
    /* changes with clocks at the extremes, each refused alone */
    fsc a;
    ft_open(&a, &w, &w.ana);
    uint64_t now = hlc_make((uint64_t)time(NULL) * 1000, 0);
    struct {
        const char *what;
        uint64_t hlc, base;
        int want;
    } cases[] = {
        {"hlc 0", 0, 0, FS_EVALUE_RANGE},
        {"hlc 1", 1, 0, 0}, /* 1970 is far behind, never ahead: accepted (it just loses) */
        {"hlc 2^64-1", UINT64_MAX, 0, FS_ECLOCK_DRIFT},
        {"hlc 2^63", 1ULL << 63, 0, FS_ECLOCK_DRIFT},
        {"hlc 25 h ahead", now + hlc_make(25 * 3600 * 1000ULL, 0), 0, FS_ECLOCK_DRIFT},
        {"base above hlc", now, now + 5, FS_EVALUE_RANGE},
        {"base 2^64-1", now, UINT64_MAX, FS_EVALUE_RANGE},
        {"base = hlc", now, now, FS_EVALUE_RANGE},
        {"edit with base 2^64-2, hlc 2^64-1", UINT64_MAX, UINT64_MAX - 1, FS_ECLOCK_DRIFT},
    };
    size_t n = sizeof cases / sizeof cases[0];
    change *ch = calloc(n, sizeof *ch);
    tres *res = calloc(n, sizeof *res);
    for (size_t i = 0; i < n; i++) {
        rid_t id;
        new_id(&id);
        mk_child(&ch[i], s, &id, "时钟", "V1", i + 1);
        ch[i].hlc = cases[i].hlc;
        ch[i].base = cases[i].base;
    }
    rawws_push_ok(&a, ch, n, res);
    for (size_t i = 0; i < n; i++) {
        printf("%-36s -> %d %s %s\n", cases[i].what, res[i].status, fs_errname(res[i].code),
               res[i].text);
        CHECK_RES(res[i], cases[i].want ? 2 : 0, cases[i].want);
    }
    CHECK_INT(log_rows(&w, &w.ana), ==, 1);
    /* a far-future clock refused never moved the server's clock */
    server_clock_sane(&w, &w.bo);
    free(ch);
    free(res);
    fsc_close(&a);
    hostile_done(&w, &by);
}

/* ---- device sequences --------------------------------------------------------------- */

static void test_sequences(int argc, char **argv)
{
    ft_world w;
    ft_world_init(&w, argc, argv);
    daemon_start(&w.t, &w.d, NULL);
    const schema *s = w.t.s;
    fsc a;
    ft_open(&a, &w, &w.ana);
    tres res[4];
    change ch[4];
    rid_t id[4];
    for (int i = 0; i < 4; i++)
        new_id(&id[i]);
    /* dseq 0 is no dseq at all (they start at 1): the push is BAD_FRAME, nothing consumed */
    mk_child(&ch[0], s, &id[0], "零", "V1", 0);
    push_expect_close(&a, ch, 1, WERR_BAD_FRAME);
    ft_open(&a, &w, &w.ana);
    /* 2^64-1 and 2^63: gaps, not consumed */
    mk_child(&ch[0], s, &id[0], "大", "V1", UINT64_MAX);
    push_one(&a, &ch[0], res);
    CHECK_RES(res[0], 2, FS_ESEQ_GAP);
    mk_child(&ch[0], s, &id[0], "大", "V1", 1ULL << 63);
    push_one(&a, &ch[0], res);
    CHECK_RES(res[0], 2, FS_ESEQ_GAP);
    fsc_close(&a);
    open_expect_dseq(&a, &w, &w.ana, 0);
    /* out of order in one batch: 2 is a gap (not consumed), 1 goes in; 2 again goes in */
    mk_child(&ch[0], s, &id[0], "二", "V1", 2);
    mk_child(&ch[1], s, &id[1], "一", "V1", 1);
    rawws_push_ok(&a, ch, 2, res);
    CHECK_RES(res[0], 2, FS_ESEQ_GAP);
    CHECK_RES(res[1], 0, 0);
    rawws_push_ok(&a, ch, 1, res);
    CHECK_RES(res[0], 0, 0);
    /* skipping: 5 after 2 */
    mk_child(&ch[2], s, &id[2], "五", "V1", 5);
    push_one(&a, &ch[2], res);
    CHECK_RES(res[0], 2, FS_ESEQ_GAP);
    /* repeating with different content: dseq 1 with another child, another name, another
     * clock; and with the same record but one byte changed */
    mk_child(&ch[3], s, &id[3], "冒名", "V1", 1);
    push_one(&a, &ch[3], res);
    CHECK_RES(res[0], 2, FS_ESEQ_MISMATCH);
    change same = ch[1];
    for (uint32_t k = 0; k < same.n_fields; k++)
        if (same.fields[k].num == 1) { /* name: one byte different */
            same.fields[k].v.u.s.p = "二";
            same.fields[k].v.u.s.len = (uint32_t)strlen("二");
        }
    push_one(&a, &same, res);
    CHECK_RES(res[0], 2, FS_ESEQ_MISMATCH);
    /* the original again: a duplicate */
    push_one(&a, &ch[1], res);
    CHECK_RES(res[0], 1, 0);
    fsc_close(&a);
    open_expect_dseq(&a, &w, &w.ana, 2);
    fsc_close(&a);
    CHECK_INT(log_rows(&w, &w.ana), ==, 2);
    char text[64];
    it_sql1(w.t.db, text, sizeof text, "SELECT count(*) FROM records");
    CHECK_STR(text, "2");
    ft_world_done(&w);
}

/* ---- pushes after revocation and rotation ----------------------------------------- */

static void test_revoked(int argc, char **argv)
{
    ft_world w;
    bystander by;
    const schema *s = hostile_start(&w, &by, argc, argv, NULL, NULL);
    for (int round = 0; round < 5; round++) {
        /* a session open before the revocation pushes right after it (the daemon's tick,
         * which closes such sessions within a second, has not run yet) */
        fsc v;
        ft_open(&v, &w, &w.val);
        uint64_t before = v.w.server_dseq;
        if (round % 2 == 0)
            ft_admin(&w.t, "device", "revoke", w.val.id, NULL);
        else
            ft_admin(&w.t, "--json", "device", "rotate", w.val.id, NULL);
        rid_t id;
        new_id(&id);
        change ch;
        mk_child(&ch, s, &id, "撤销后", "V1", before + 1);
        push_expect_close(&v, &ch, 1, WERR_AUTH);
        CHECK_INT(log_rows(&w, &w.val), ==, 0);
        /* and the device cannot come back with its old token */
        CHECK_INT(fsc_open(&v, &w.t, w.d.port, &w.val, 1, 0), ==, WERR_AUTH);
        fsc_close(&v);
        bystander_sync(&by, s);
        /* a fresh device for the next round */
        enrol(&w.t, "val", &w.val);
    }
    /* through the SDK: a revoked device's sync fails with EAUTH and keeps its outbox */
    char path[400], url[64];
    snprintf(path, sizeof path, "%s/val.db", w.t.dir);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", w.d.port);
    fieldsync_db *db;
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_OK(fieldsync_enrol(db, url, w.val.id, w.val.token));
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "设备丢失"));
    CHECK_OK(fieldsync_set_text(r, "village", "V1"));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
    ft_admin(&w.t, "device", "revoke", w.val.id, NULL);
    fieldsync_sync_result sr;
    CHECK_INT(fieldsync_sync(db, NULL, NULL, NULL, &sr), ==, FIELDSYNC_EAUTH);
    CHECK(strstr(fieldsync_errmsg(db), "revoked") != NULL);
    CHECK_INT(sr.pending, ==, 1);
    fieldsync_close(db);
    CHECK_INT(log_rows(&w, &w.val), ==, 0);
    hostile_done(&w, &by);
}

/* ---- cursors from the future ------------------------------------------------------- */

static void test_cursor(int argc, char **argv)
{
    ft_world w;
    bystander by;
    const schema *s = hostile_start(&w, &by, argc, argv, NULL, NULL);
    for (int i = 0; i < 3; i++)
        bystander_sync(&by, s);
    fsc a;
    ft_open(&a, &w, &w.ana);
    uint64_t end = a.w.log_end;
    CHECK_INT(end, ==, 3);
    static const uint64_t bad[] = {UINT64_MAX, 1ULL << 63, (1ULL << 63) - 1, 4};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tpull p;
        CHECK_INT(fsc_pull(&a, bad[i], 0, &p), ==, WERR_CURSOR);
        CHECK(!a.err_closes);
        tpull_free(&p);
        fsc_ping(&a, i); /* the session goes on */
    }
    /* max far above max_batch: clamped */
    tpull p;
    CHECK_OK(fsc_pull(&a, 0, UINT32_MAX, &p));
    CHECK_INT(p.n, ==, 3);
    CHECK(!p.more);
    tpull_free(&p);
    /* a cursor at the end: nothing, not an error */
    CHECK_OK(fsc_pull(&a, end, 0, &p));
    CHECK_INT(p.n, ==, 0);
    tpull_free(&p);
    fsc_close(&a);
    hostile_done(&w, &by);
}

/* ---- a thousand sessions for one device --------------------------------------------- */

static void test_sessions(int argc, char **argv)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl); /* the daemon inherits it */
    }
    ft_world w;
    bystander by;
    const schema *s = hostile_start(&w, &by, argc, argv, "--log-level", "warning");
    enum { N = 1000 };
    fsc *c = calloc(N, sizeof *c);
    /* every connection first, then every hello, then read every answer */
    for (int i = 0; i < N; i++)
        fsc_connect(&c[i], &w.t, w.d.port);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    rawws_pack_hello(&sb, &w.ana.device, w.ana.token, 1, t_hlc(), "flood");
    for (int i = 0; i < N; i++)
        CHECK_OK(fsc_send(&c[i], sb.data, sb.size));
    msgpack_sbuffer_destroy(&sb);
    int welcomed = 0, limited = 0;
    for (int i = 0; i < N; i++) {
        CHECK_OK(fsc_recv(&c[i], 10000));
        if (c[i].m.type == MSG_WELCOME) {
            welcomed++;
            continue;
        }
        CHECK_INT(c[i].m.type, ==, MSG_ERROR);
        CHECK_INT(c[i].err_code, ==, WERR_LIMIT);
        CHECK(c[i].err_closes);
        limited++;
    }
    printf("sessions: %d welcomed, %d refused LIMIT\n", welcomed, limited);
    CHECK_INT(welcomed, ==, 4);
    CHECK_INT(limited, ==, N - 4);
    bystander_sync(&by, s);
    /* the four work; the others were closed by the server */
    int pinged = 0;
    for (int i = 0; i < N; i++) {
        if (c[i].m.type == MSG_WELCOME) {
            fsc_ping(&c[i], (uint64_t)i);
            pinged++;
        } else {
            CHECK_INT(wsc_recv(&c[i].ws, 5000), ==, -1);
        }
        fsc_close(&c[i]);
    }
    CHECK_INT(pinged, ==, 4);
    free(c);
    usleep(200000);
    fsc a;
    ft_open(&a, &w, &w.ana); /* room again */
    fsc_close(&a);
    char m[16384];
    CHECK_INT(http_get(w.d.port, "/metrics", NULL, m, sizeof m), ==, 200);
    CHECK(strstr(m, "fieldsync_errors_sent_total{code=\"LIMIT\"} 996\n") != NULL);
    hostile_done(&w, &by);
}

/* ---- slowloris --------------------------------------------------------------------- */

typedef struct loris {
    const char *what;
    int fd;
    int64_t start, closed_at;
    const uint8_t *drip;   /* bytes sent one at a time, every 300 ms (NULL: none) */
    size_t drip_n, drip_at;
    bool saw_idle;         /* an IDLE error frame came before the close */
    uint8_t in[4096];
    size_t in_n;
} loris;

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(connect(fd, (struct sockaddr *)&sa, sizeof sa));
    return fd;
}

/* Takes over the socket of an open fsc (its buffers are dropped). */
static int steal_fd(fsc *c)
{
    int fd = c->ws.fd;
    c->ws.fd = -1;
    fsc_close(c);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

static void test_slowloris(int argc, char **argv)
{
    ft_world w;
    bystander by;
    const schema *s = hostile_start(&w, &by, argc, argv, "--idle-timeout", "2");
    /* a frame header announcing 100,000 bytes, masked (clients must mask) */
    static uint8_t frame_drip[64];
    size_t fd_n = 0;
    frame_drip[fd_n++] = 0x82;
    frame_drip[fd_n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
        frame_drip[fd_n++] = (uint8_t)((uint64_t)100000 >> (8 * i));
    for (int i = 0; i < 4; i++)
        frame_drip[fd_n++] = 0x11;
    for (size_t i = fd_n; i < sizeof frame_drip; i++)
        frame_drip[i] = 0x5a;
    static const uint8_t http_drip[] =
        "GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: fieldsync.v1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    enum { NL = 6 };
    loris L[NL];
    memset(L, 0, sizeof L);
    int64_t now = ft_now_ms();
    fsc c;
    /* 0: after hello, half a frame header, then silence */
    ft_open(&c, &w, &w.ana);
    L[0] = (loris){.what = "half a frame, then silence", .fd = steal_fd(&c)};
    CHECK_INT(send(L[0].fd, frame_drip, 5, MSG_NOSIGNAL), ==, 5);
    /* 1: after hello, a frame header at once, then its payload a byte every 300 ms */
    ft_open(&c, &w, &w.ana);
    L[1] = (loris){.what = "a frame trickled, after hello", .fd = steal_fd(&c),
                   .drip = frame_drip + fd_n, .drip_n = sizeof frame_drip - fd_n};
    CHECK_INT(send(L[1].fd, frame_drip, fd_n, MSG_NOSIGNAL), ==, (ssize_t)fd_n);
    /* 2: no hello, the same */
    fsc_connect(&c, &w.t, w.d.port);
    L[2] = (loris){.what = "a frame trickled, no hello", .fd = steal_fd(&c),
                   .drip = frame_drip + fd_n, .drip_n = sizeof frame_drip - fd_n};
    CHECK_INT(send(L[2].fd, frame_drip, fd_n, MSG_NOSIGNAL), ==, (ssize_t)fd_n);
    /* 3: no hello, nothing */
    fsc_connect(&c, &w.t, w.d.port);
    L[3] = (loris){.what = "upgrade, then nothing", .fd = steal_fd(&c)};
    /* 4: the HTTP upgrade trickled */
    L[4] = (loris){.what = "HTTP upgrade trickled", .fd = raw_connect(w.d.port),
                   .drip = http_drip, .drip_n = sizeof http_drip - 1};
    /* 5: TCP connected, nothing sent */
    L[5] = (loris){.what = "TCP only", .fd = raw_connect(w.d.port)};
    for (int i = 0; i < NL; i++)
        L[i].start = now;
    int open = NL;
    int64_t next_drip = now, next_by = now + 500;
    while (open && ft_now_ms() - now < 20000) {
        struct pollfd p[NL];
        for (int i = 0; i < NL; i++)
            p[i] = (struct pollfd){L[i].closed_at ? -1 : L[i].fd, POLLIN, 0};
        poll(p, NL, 50);
        int64_t t = ft_now_ms();
        for (int i = 0; i < NL; i++) {
            if (L[i].closed_at || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(L[i].fd, L[i].in + L[i].in_n, sizeof L[i].in - L[i].in_n, 0);
            if (r > 0) {
                L[i].in_n += (size_t)r;
                continue;
            }
            L[i].closed_at = t;
            open--;
        }
        if (t >= next_drip) {
            for (int i = 0; i < NL; i++)
                if (!L[i].closed_at && L[i].drip && L[i].drip_at < L[i].drip_n &&
                    send(L[i].fd, L[i].drip + L[i].drip_at++, 1, MSG_NOSIGNAL) < 0) {
                    L[i].closed_at = t;
                    open--;
                }
            next_drip = t + 300;
        }
        if (t >= next_by) { /* the bystander meanwhile */
            bystander_sync(&by, s);
            next_by = t + 700;
        }
    }
    int bad = 0;
    for (int i = 0; i < NL; i++) {
        /* an IDLE error frame: [11, 13, text, true] in a binary frame */
        for (size_t k = 0; k + 3 < L[i].in_n; k++)
            if (L[i].in[k] == 0x94 && L[i].in[k + 1] == 0x0b && L[i].in[k + 2] == 0x0d)
                L[i].saw_idle = true;
        double secs = L[i].closed_at ? (double)(L[i].closed_at - L[i].start) / 1000.0 : -1;
        printf("%-32s closed after %.1f s%s\n", L[i].what, secs,
               L[i].saw_idle ? " (IDLE)" : "");
        /* WebSocket sessions: the idle timeout (2 s), or the stall bound for a trickle (2 x 2 s),
         * plus a tick; HTTP (before the upgrade): libwebsockets' own 10 s limit */
        if (!L[i].closed_at || secs > (i < 4 ? 6.0 : 12.0))
            bad++;
        if (i < 4 && !L[i].saw_idle)
            bad++;
        close(L[i].fd);
    }
    CHECK_INT(bad, ==, 0);
    hostile_done(&w, &by);
}

int main(int argc, char **argv)
{
    static const ft_case cases[] = {
        {"changes", test_changes},     {"clocks", test_clocks},
        {"sequences", test_sequences}, {"revoked", test_revoked},
        {"cursor", test_cursor},       {"sessions", test_sessions},
        {"slowloris", test_slowloris},
    };
    return ft_main_cases(argc, argv, "fault_hostile", cases, sizeof cases / sizeof cases[0]);
}

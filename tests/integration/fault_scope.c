/*
 * fault_scope.c — scope red team. Township T2's village W1 holds a child file with a
 * household, a visit, a mandatory report, an assessment and an open review item, written by
 * oz and wu (visitors of W1) and tom (supervisor of T2). Users of township T1 then try to read
 * and write them through every message:
 *
 *   val  (volunteer of V1)   push edits, lowerings and raises, visits, reports, assessments,
 *                            report moves, review resolutions, type confusion on W1's ids;
 *                            pull from 0; subscribe to W1, T2 and "" while W1 changes;
 *                            ask for review items (not its role)
 *   ana  (visitor of V1)     the same pushes; inside her own village, role limits: lowering a
 *                            risk, closing a report, moving a report back, settling a review
 *   sue  (supervisor of T1)  review items and pulls (another township's)
 *   a revoked device         hello
 *
 * Every attempt is refused with the documented code, and the BYTES the server sends back to
 * these sessions, every one of them, contain none of W1's record ids, names, texts or device
 * ids, nor the codes W1 and T2 unless the attacker's own message named them. Afterwards W1's
 * data is exactly what its own users wrote (state hash of the records unchanged) and the
 * review item is still open.
 */
#include "check.h"
#include "fault_support.h"
#include "rawws.h" /* rawws_push_ok */

#include "hlc.h"
#include "mpr.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- capture: every message a session receives, decoded ------------------------------ */

typedef struct cap {
    uint8_t *p;
    size_t n, cap;
} cap;

static void cap_add(cap *c, const void *p, size_t n)
{
    if (c->n + n > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 65536;
        while (nc < c->n + n)
            nc *= 2;
        c->p = realloc(c->p, nc);
        CHECK(c->p != NULL);
        c->cap = nc;
    }
    memcpy(c->p + c->n, p, n);
    c->n += n;
}

static bool has_bytes(const uint8_t *h, size_t hn, const void *needle, size_t nn)
{
    for (size_t i = 0; nn && i + nn <= hn; i++)
        if (!memcmp(h + i, needle, nn))
            return true;
    return false;
}

/* The secrets of W1. */
typedef struct secrets {
    rid_t ids[8];
    int n_ids;
    const char *texts[16];
    int n_texts;
} secrets;

static secrets S;

/* Aborts if buf (one message, or the whole capture) reveals anything of W1. codes_ok: the
 * attacker's own message named W1/T2, so they may be echoed. */
static void check_clean(const char *what, const uint8_t *buf, size_t n, bool codes_ok)
{
    for (int i = 0; i < S.n_ids; i++)
        if (has_bytes(buf, n, S.ids[i].b, 16)) {
            fprintf(stderr, "%s: the answer contains W1 id #%d\n", what, i);
            abort();
        }
    for (int i = 0; i < S.n_texts; i++)
        if (has_bytes(buf, n, S.texts[i], strlen(S.texts[i]))) {
            fprintf(stderr, "%s: the answer contains '%s'\n", what, S.texts[i]);
            abort();
        }
    if (!codes_ok && (has_bytes(buf, n, "W1", 2) || has_bytes(buf, n, "T2", 2))) {
        fprintf(stderr, "%s: the answer names W1 or T2: %.*s\n", what, (int)n, (const char *)buf);
        abort();
    }
}

typedef struct attacker {
    fsc c;
    cap all;
    const char *name;
    uint64_t dseq;
} attacker;

/* Receives one message (the raw frame, not compressed: dict 0), records it. */
static void att_recv(attacker *a, const char *what, bool codes_ok)
{
    CHECK_OK(fsc_recv(&a->c, 10000));
    cap_add(&a->all, a->c.ws.msg, a->c.ws.msg_len);
    check_clean(what, a->c.ws.msg, a->c.ws.msg_len, codes_ok);
}

/* ---- the world ----------------------------------------------------------------------- */

static uint64_t hlc_at(int k) { return t_hlc() + (uint64_t)k; }

static void push_ok(fsc *c, change *ch, size_t n)
{
    tres res[8];
    rawws_push_ok(c, ch, n, res);
    for (size_t i = 0; i < n; i++)
        if (res[i].status != 0) {
            fprintf(stderr, "setup change %zu refused: %s %s\n", i, fs_errname(res[i].code),
                    res[i].text);
            abort();
        }
}

/* ---- the attacks ---------------------------------------------------------------------- */

typedef struct target {
    rid_t child, household, visit, report, assessment;
    uint64_t child_h, risk_h, name_a, name_b, report_h;
} target;

/* One push of one change; returns the result, checks the bytes. */
static tres att_push(attacker *a, change *ch, const char *what, bool names_codes)
{
    ch->dseq = ++a->dseq;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    push_body(&sb, a->dseq, ch, 1);
    fsc_send(&a->c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    att_recv(a, what, names_codes);
    if (a->c.m.type != MSG_PUSH_RESULT) {
        fprintf(stderr, "%s: %s got message %u (%s)\n", a->name, what, a->c.m.type,
                a->c.err_text);
        abort();
    }
    uint64_t b;
    uint32_t n;
    fs_error e = {0};
    CHECK_OK(wire_read_push_result(&a->c.m.r, a->c.m.count, &b, &n, &e));
    CHECK_INT(n, ==, 1);
    wire_result wr;
    CHECK_OK(wire_read_result(&a->c.m.r, &wr, &e));
    tres r = {.dseq = wr.dseq, .status = wr.status, .code = wr.code};
    snprintf(r.text, sizeof r.text, "%.*s", (int)wr.text_len, wr.text ? wr.text : "");
    return r;
}

static int failures;

static void expect(const char *who, const char *what, tres r, int code)
{
    bool ok = r.status == 2 && r.code == code;
    printf("%-4s %-44s -> %s %s%s\n", who, what, r.status == 2 ? fs_errname(r.code) : "ACCEPTED",
           r.text, ok ? "" : "   <-- UNEXPECTED");
    failures += !ok;
}

/* Every write an outsider might try on W1's records. */
static void attack_pushes(attacker *a, const schema *s, const target *T)
{
    change ch;
    rid_t id;
    uint64_t now = hlc_at(0);
    ch_init(&ch, s, "child", &T->child, now, T->child_h, 0);
    ch_text(&ch, s, "school", "冒充");
    expect(a->name, "edit W1 child's school", att_push(a, &ch, "edit", false), FS_ESCOPE);
    ch_init(&ch, s, "child", &T->child, hlc_at(1), T->risk_h, 0);
    ch_enum(&ch, s, "risk_level", "low");
    expect(a->name, "lower W1 child's risk (seen version)", att_push(a, &ch, "lower", false),
           FS_ESCOPE);
    ch_init(&ch, s, "child", &T->child, hlc_at(2), T->child_h, 0);
    ch_enum(&ch, s, "risk_level", "low");
    expect(a->name, "lower W1 child's risk (old version)", att_push(a, &ch, "lower2", false),
           FS_ESCOPE);
    ch_init(&ch, s, "child", &T->child, hlc_at(3), T->risk_h, 0);
    ch_enum(&ch, s, "risk_level", "high");
    expect(a->name, "raise W1 child's risk", att_push(a, &ch, "raise", false), FS_ESCOPE);
    ch_init(&ch, s, "child", &T->child, hlc_at(4),
            T->name_a > T->name_b ? T->name_a : T->name_b, 0);
    ch_text(&ch, s, "name", "裁决");
    expect(a->name, "settle W1's review item", att_push(a, &ch, "resolve", false), FS_ESCOPE);
    ch_init(&ch, s, "child", &T->child, hlc_at(5), T->child_h, 0);
    ch_text(&ch, s, "village", "V1");
    expect(a->name, "move W1 child into own village", att_push(a, &ch, "move", false),
           FS_ESCOPE);
    ch_init(&ch, s, "household", &T->household, hlc_at(6), 1, 0);
    ch_text(&ch, s, "address", "冒充");
    expect(a->name, "edit W1 household", att_push(a, &ch, "household", false), FS_ESCOPE);
    new_id(&id);
    mk_visit(&ch, s, &id, &T->child, 0);
    expect(a->name, "visit W1 child", att_push(a, &ch, "visit", false), FS_ESCOPE);
    new_id(&id);
    ch_init(&ch, s, "report", &id, hlc_at(7), 0, 0);
    ch_ref(&ch, s, "child", &T->child);
    ch_enum(&ch, s, "category", "living_alone");
    ch_text(&ch, s, "observed", "冒充");
    ch_int(&ch, s, "observed_at", (int64_t)time(NULL));
    ch_enum(&ch, s, "status", "reported");
    expect(a->name, "report on W1 child", att_push(a, &ch, "report", false), FS_ESCOPE);
    ch_init(&ch, s, "report", &T->report, hlc_at(8), T->report_h, 0);
    ch_enum(&ch, s, "status", "assessed");
    expect(a->name, "move W1 report forward", att_push(a, &ch, "advance", false), FS_ESCOPE);
    ch_init(&ch, s, "report", &T->report, hlc_at(9), T->report_h, 0);
    ch_enum(&ch, s, "status", "closed");
    expect(a->name, "close W1 report", att_push(a, &ch, "close", false), FS_ESCOPE);
    ch_init(&ch, s, "assessment", &T->assessment, hlc_at(10), 1, 0);
    ch_int(&ch, s, "follow_up_days", 1);
    expect(a->name, "edit W1 assessment", att_push(a, &ch, "assessment", false), FS_ESCOPE);
    new_id(&id);
    ch_init(&ch, s, "assessment", &id, hlc_at(11), 0, 0);
    ch_ref(&ch, s, "child", &T->child);
    expect(a->name, "assess W1 child", att_push(a, &ch, "assess", false),
           !strcmp(a->name, "ana") ? FS_EROLE : FS_ESCOPE);
    /* type confusion: W1's ids under other types */
    ch_init(&ch, s, "household", &T->child, hlc_at(12), 0, 0);
    ch_text(&ch, s, "village", "V1");
    expect(a->name, "W1 child's id as a new household", att_push(a, &ch, "type1", false),
           FS_ESCOPE);
    mk_visit(&ch, s, &T->visit, &T->child, 0);
    expect(a->name, "W1 visit's id re-created", att_push(a, &ch, "recreate", false), FS_ESCOPE);
    mk_child(&ch, s, &T->visit, "冒充", "V1", 0);
    expect(a->name, "W1 visit's id as a child of V1", att_push(a, &ch, "type2", false),
           FS_ESCOPE);
    /* naming W1 itself: refused; the text may echo what the attacker sent */
    new_id(&id);
    mk_child(&ch, s, &id, "冒充", "W1", 0);
    expect(a->name, "create a child in W1", att_push(a, &ch, "create", true), FS_ESCOPE);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    ft_world w;
    ft_world_init(&w, argc, argv);
    tenv *t = &w.t;
    const schema *s = t->s;
    ft_admin(t, "user", "add", "wu", "--role", "visitor", "--villages", "W1", NULL);
    enrolled wu;
    enrol(t, "wu", &wu);
    daemon_start(t, &w.d, NULL);

    /* W1's data */
    target T;
    new_id(&T.child);
    new_id(&T.household);
    new_id(&T.visit);
    new_id(&T.report);
    new_id(&T.assessment);
    fsc oz, wc, tom;
    ft_open(&oz, &w, &w.oz);
    ft_open(&wc, &w, &wu);
    ft_open(&tom, &w, &w.tom);
    change ch[4];
    ch_init(&ch[0], s, "household", &T.household, t_hlc(), 0, 1);
    ch_text(&ch[0], s, "village", "W1");
    ch_text(&ch[0], s, "address", "秘密家庭住址");
    ch_text(&ch[0], s, "father_name", "秘密父亲");
    mk_child(&ch[1], s, &T.child, "西娃秘密", "W1", 2);
    ch_ref(&ch[1], s, "household", &T.household);
    ch_text(&ch[1], s, "school", "秘密学校");
    T.child_h = ch[1].hlc;
    mk_visit(&ch[2], s, &T.visit, &T.child, 3);
    ch_text(&ch[2], s, "mood", "秘密心情");
    push_ok(&oz, ch, 3);
    ch_init(&ch[0], s, "child", &T.child, t_hlc(), T.child_h, 4);
    ch_enum(&ch[0], s, "risk_level", "high");
    T.risk_h = ch[0].hlc;
    ch_init(&ch[1], s, "report", &T.report, t_hlc(), 0, 5);
    ch_ref(&ch[1], s, "child", &T.child);
    ch_enum(&ch[1], s, "category", "living_alone");
    ch_text(&ch[1], s, "observed", "秘密报告内容");
    ch_int(&ch[1], s, "observed_at", (int64_t)time(NULL));
    ch_enum(&ch[1], s, "status", "reported");
    T.report_h = ch[1].hlc;
    push_ok(&oz, ch, 2);
    /* concurrent names: a review item */
    ch_init(&ch[0], s, "child", &T.child, t_hlc(), T.child_h, 6);
    ch_text(&ch[0], s, "name", "西娃甲");
    T.name_a = ch[0].hlc;
    ch_init(&ch[1], s, "child", &T.child, t_hlc(), T.child_h, 1);
    ch_text(&ch[1], s, "name", "西娃乙");
    T.name_b = ch[1].hlc;
    push_ok(&oz, &ch[0], 1);
    push_ok(&wc, &ch[1], 1);
    ch_init(&ch[0], s, "assessment", &T.assessment, t_hlc(), 0, 1);
    ch_ref(&ch[0], s, "child", &T.child);
    ch_text(&ch[0], s, "notes", "秘密评估");
    push_ok(&tom, ch, 1);
    S = (secrets){.ids = {T.child, T.household, T.visit, T.report, T.assessment, w.oz.device,
                          wu.device, w.tom.device},
                  .n_ids = 8,
                  .texts = {"西娃秘密", "西娃甲", "西娃乙", "秘密家庭住址", "秘密父亲",
                            "秘密学校", "秘密心情", "秘密报告内容", "秘密评估", "西村", "二乡"},
                  .n_texts = 11};
    char before[128];
    it_sql1(t->db, before, sizeof before,
            "SELECT count(*) || '/' || (SELECT count(*) FROM review WHERE resolved_hlc = 0) "
            "FROM log");

    /* a volunteer whose scope is one child of V1 */
    fsc own;
    ft_open(&own, &w, &w.ana);
    rid_t assigned;
    new_id(&assigned);
    mk_child(&ch[0], s, &assigned, "结对儿童", "V1", own.w.server_dseq + 1);
    push_ok(&own, ch, 1);
    fsc_close(&own);
    char assigned_text[40];
    rid_to_text(&assigned, assigned_text);
    ft_admin(t, "user", "add", "cw", "--role", "volunteer", "--children", assigned_text, NULL);
    enrolled cw;
    enrol(t, "cw", &cw);

    /* the attackers */
    enum { NA = 4 };
    attacker at[NA] = {{.name = "val"}, {.name = "ana"}, {.name = "sue"}, {.name = "cw"}};
    const enrolled *who[NA] = {&w.val, &w.ana, &w.sue, &cw};
    for (int i = 0; i < NA; i++) {
        ft_open(&at[i].c, &w, who[i]);
        at[i].dseq = at[i].c.w.server_dseq;
        cap_add(&at[i].all, at[i].c.ws.msg, at[i].c.ws.msg_len);
        check_clean("welcome", at[i].c.ws.msg, at[i].c.ws.msg_len, false);
        attack_pushes(&at[i], s, &T);
    }

    /* subscriptions: W1 and T2 refused (a children scope may name any village or township:
     * its filter is the assigned children, so nothing comes); "" sees nothing of W1 */
    for (int i = 0; i < NA; i++) {
        static const char *const scopes[] = {"W1", "T2"};
        for (int k = 0; k < 2; k++) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            wire_pack_subscribe(&pk, scopes[k]);
            fsc_send(&at[i].c, sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
            if (i == 3) { /* cw */
                fsc_ping(&at[i].c, 7);
                cap_add(&at[i].all, at[i].c.ws.msg, at[i].c.ws.msg_len);
                printf("%-4s subscribe %-34s -> accepted (filtered by the children)\n",
                       at[i].name, scopes[k]);
                continue; /* and stays subscribed (to T2 in the end) */
            }
            att_recv(&at[i], "subscribe", true);
            CHECK_INT(at[i].c.m.type, ==, MSG_ERROR);
            CHECK_INT(at[i].c.err_code, ==, WERR_UNEXPECTED);
            printf("%-4s subscribe %-34s -> %s %s\n", at[i].name, scopes[k],
                   wire_err_name(at[i].c.err_code), at[i].c.err_text);
            fsc_close(&at[i].c);
            ft_open(&at[i].c, &w, who[i]);
        }
        if (i == 3)
            continue; /* cw keeps its subscription to T2 */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        wire_pack_subscribe(&pk, "");
        fsc_send(&at[i].c, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    for (int i = 0; i < NA; i++)
        fsc_ping(&at[i].c, 1); /* the subscriptions are in effect */
    ch_init(&ch[0], s, "child", &T.child, t_hlc(), T.risk_h, 7);
    ch_text(&ch[0], s, "school", "秘密学校");
    push_ok(&oz, ch, 1);
    for (int i = 0; i < NA; i++) {
        fsc_ping(&at[i].c, 2); /* nothing came before the pong */
        cap_add(&at[i].all, at[i].c.ws.msg, at[i].c.ws.msg_len);
    }

    /* pulls and review items */
    for (int i = 0; i < NA; i++) {
        uint64_t cursor = 0;
        bool more = true;
        size_t got = 0;
        while (more) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            wire_pack_pull(&pk, cursor, 0);
            fsc_send(&at[i].c, sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
            att_recv(&at[i], "pull", false);
            CHECK_INT(at[i].c.m.type, ==, MSG_CHANGES);
            uint32_t n;
            fs_error e = {0};
            CHECK_OK(wire_read_changes(&at[i].c.m.r, at[i].c.m.count, &cursor, &more, &n, &e));
            got += n;
        }
        printf("%-4s %-44s -> %zu changes\n", at[i].name, "pull from 0", got);
        static const uint8_t req[] = {0x91, 0x0c};
        fsc_send(&at[i].c, req, sizeof req);
        att_recv(&at[i], "reviews", false);
        if (i != 2) { /* volunteers, visitor: not their role */
            CHECK_INT(at[i].c.m.type, ==, MSG_ERROR);
            CHECK_INT(at[i].c.err_code, ==, WERR_UNEXPECTED);
            printf("%-4s %-44s -> %s %s\n", at[i].name, "ask for review items",
                   wire_err_name(at[i].c.err_code), at[i].c.err_text);
        } else {
            CHECK_INT(at[i].c.m.type, ==, MSG_REVIEWS);
            uint32_t n;
            CHECK_OK(mpr_array(&at[i].c.m.r, 100000, &n));
            printf("%-4s %-44s -> %u items\n", at[i].name, "ask for review items", n);
            CHECK_INT(n, ==, 0);
        }
        fsc_close(&at[i].c);
    }

    /* role limits inside the attacker's own village (ana, visitor of V1) */
    attacker an = {.name = "ana"};
    ft_open(&an.c, &w, &w.ana);
    an.dseq = an.c.w.server_dseq;
    rid_t c1, r1;
    new_id(&c1);
    new_id(&r1);
    mk_child(&ch[0], s, &c1, "本村", "V1", 0);
    tres r = att_push(&an, &ch[0], "own child", false);
    CHECK_INT(r.status, ==, 0);
    uint64_t c1h = ch[0].hlc;
    ch_init(&ch[0], s, "child", &c1, t_hlc(), c1h, 0);
    ch_enum(&ch[0], s, "risk_level", "high");
    r = att_push(&an, &ch[0], "raise", false);
    CHECK_INT(r.status, ==, 0);
    uint64_t rh = ch[0].hlc;
    ch_init(&ch[0], s, "child", &c1, t_hlc(), rh, 0);
    ch_enum(&ch[0], s, "risk_level", "low");
    expect("ana", "lower own village's risk (visitor)", att_push(&an, &ch[0], "lower", false),
           FS_EROLE);
    ch_init(&ch[0], s, "report", &r1, t_hlc(), 0, 0);
    ch_ref(&ch[0], s, "child", &c1);
    ch_enum(&ch[0], s, "category", "neglect");
    ch_text(&ch[0], s, "observed", "无人照看");
    ch_int(&ch[0], s, "observed_at", (int64_t)time(NULL));
    ch_enum(&ch[0], s, "status", "assessed");
    r = att_push(&an, &ch[0], "report", false);
    CHECK_INT(r.status, ==, 0);
    uint64_t r1h = ch[0].hlc;
    ch_init(&ch[0], s, "report", &r1, t_hlc(), r1h, 0);
    ch_enum(&ch[0], s, "status", "closed");
    expect("ana", "close own village's report (visitor)", att_push(&an, &ch[0], "close", false),
           FS_EROLE);
    ch_init(&ch[0], s, "report", &r1, t_hlc(), r1h, 0);
    ch_enum(&ch[0], s, "status", "reported");
    expect("ana", "move own village's report back", att_push(&an, &ch[0], "reopen", false),
           FS_EROLE);
    /* a review item in V1 (ana and bo race on a name); ana's change that saw both values is
     * an ordinary edit for a visitor: accepted, and the item stays open for the supervisor */
    fsc bo;
    ft_open(&bo, &w, &w.bo);
    ch_init(&ch[0], s, "child", &c1, t_hlc(), c1h, 1);
    ch_text(&ch[0], s, "name", "本村甲");
    push_ok(&bo, ch, 1);
    uint64_t ha = ch[0].hlc;
    ch_init(&ch[0], s, "child", &c1, t_hlc(), c1h, 0);
    ch_text(&ch[0], s, "name", "本村乙");
    r = att_push(&an, &ch[0], "race", false);
    CHECK_INT(r.status, ==, 0);
    uint64_t hb = ch[0].hlc;
    ch_init(&ch[0], s, "child", &c1, t_hlc(), ha > hb ? ha : hb, 0);
    ch_text(&ch[0], s, "name", "本村");
    r = att_push(&an, &ch[0], "settle", false);
    printf("ana  %-44s -> %s (the item stays open)\n", "settle a review item (visitor)",
           r.status == 0 ? "accepted as an edit" : fs_errname(r.code));
    fsc sue;
    ft_open(&sue, &w, &w.sue);
    static const uint8_t req[] = {0x91, 0x0c};
    fsc_send(&sue, req, sizeof req);
    CHECK_OK(fsc_recv(&sue, 5000));
    CHECK_INT(sue.m.type, ==, MSG_REVIEWS);
    uint32_t items;
    CHECK_OK(mpr_array(&sue.m.r, 100000, &items));
    CHECK_INT(items, ==, 1); /* V1's item, still open; not W1's */
    fsc_close(&sue);
    fsc_close(&bo);
    fsc_close(&an.c);

    /* a change accepted, its answer lost, then its village taken out of the user's scope:
     * the re-send is still a duplicate (not refused: the record is out of sight now, but the
     * change is the user's own and was applied) */
    fsc rs;
    ft_open(&rs, &w, &w.bo);
    rid_t kept;
    new_id(&kept);
    mk_child(&ch[0], s, &kept, "保留", "V1", rs.w.server_dseq + 1);
    push_ok(&rs, ch, 1);
    fsc_close(&rs);
    ft_admin(t, "user", "scope", "bo", "--villages", "V2", NULL);
    usleep(1300000); /* the daemon notices admin changes within a second */
    ft_open(&rs, &w, &w.bo);
    tres rr;
    rawws_push_ok(&rs, ch, 1, &rr);
    printf("bo   %-44s -> %s\n", "re-send after its village left the scope",
           rr.status == 1 ? "duplicate" : fs_errname(rr.code));
    CHECK_INT(rr.status, ==, 1);
    fsc_close(&rs);
    ft_admin(t, "user", "scope", "bo", "--villages", "V1", NULL);

    /* a revoked device */
    ft_admin(t, "device", "revoke", w.val.id, NULL);
    fsc rv;
    CHECK_INT(fsc_open(&rv, t, w.d.port, &w.val, 1, 0), ==, WERR_AUTH);
    check_clean("revoked hello", rv.ws.msg, rv.ws.msg_len, false);
    printf("%-4s %-44s -> AUTH %s\n", "val", "hello after revocation", rv.err_text);
    fsc_close(&rv);

    /* the whole capture once more, and W1's data untouched */
    for (int i = 0; i < NA; i++) {
        check_clean(at[i].name, at[i].all.p, at[i].all.n, true);
        printf("%-4s received %zu bytes in all: clean\n", at[i].name, at[i].all.n);
        free(at[i].all.p);
    }
    free(an.all.p);
    char after[128];
    it_sql1(t->db, after, sizeof after,
            "SELECT (SELECT count(*) FROM log WHERE scope = 'W1') || '/' || (SELECT count(*) "
            "FROM review WHERE resolved_hlc = 0 AND type = 1)");
    printf("W1 log rows / open review items: before %s, after %s\n", before, after);
    /* 8 rows of setup and oz's edit during the subscriptions: nothing of the attackers */
    CHECK_INT(it_sqlnum(t->db, "SELECT count(*) FROM log WHERE scope = 'W1'"), ==, 9);
    CHECK_INT(it_sqlnum(t->db, "SELECT count(*) FROM review WHERE resolved_hlc = 0"), ==, 2);
    CHECK_INT(failures, ==, 0);
    fsc_close(&oz);
    fsc_close(&wc);
    fsc_close(&tom);
    ft_world_done(&w);
    printf("fault_scope: ok\n");
    return 0;
}

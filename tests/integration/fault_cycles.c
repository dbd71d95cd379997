/*
 * fault_cycles.c — many short sessions against one daemon: its descriptors and memory must
 * come back to where they were. A leak of one descriptor or a few KiB per session shows as a
 * steady climb over a thousand of them.
 *
 *   connect   N cycles of connect, WebSocket upgrade, hello/welcome, ping, close (4 devices
 *             in turn, so the 4-sessions-per-device limit is not what is being tested)
 *   aborted   N aborted syncs, six kinds in turn: half a push frame then the link drops; a
 *             push and the link drops before the result; a pull and the link drops before
 *             the answer is read; half an HTTP upgrade; a big message cut half-way; a real
 *             SDK sync cancelled in the middle of its push
 *
 * Measured from /proc: open descriptors of the daemon (must return exactly to the baseline
 * taken after a warm-up) and VmRSS (must not grow by more than 8 MiB over the run nor by more
 * than 2 MiB over its second half; only reported under the sanitizers, whose allocator keeps
 * freed memory in quarantine). The daemon then still serves, reports no open sessions in
 * /metrics, and stops cleanly.
 *
 *   FAULT_CYCLES=N   cycles per case (default 1000)
 */
#include "check.h"
#include "fault_support.h"

#include "hlc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct meas {
    long fds, rss;
} meas;

/* Waits until the daemon has let go of every session (descriptors back to base). */
static long settle_fds(pid_t pid, long base)
{
    long n = ft_fd_count(pid);
    for (int i = 0; i < 500 && n > base; i++) {
        usleep(10000);
        n = ft_fd_count(pid);
    }
    return n;
}

/* Descriptors and memory once the last sessions are gone. */
static meas measure(pid_t pid)
{
    usleep(100000);
    meas m = {ft_fd_count(pid), ft_rss_kb(pid)};
    return m;
}

static void check_growth(const char *what, meas base, meas mid, meas end, long cycles)
{
    bool sanitized = ft_env_flag("FS_SANITIZED");
    printf("%s: %ld cycles: fds %ld -> %ld -> %ld, VmRSS %ld -> %ld -> %ld KiB\n", what, cycles,
           base.fds, mid.fds, end.fds, base.rss, mid.rss, end.rss);
    CHECK_INT(end.fds, ==, base.fds);
    if (sanitized)
        return;
    CHECK_INT(end.rss - base.rss, <=, 8 * 1024);
    CHECK_INT(end.rss - mid.rss, <=, 2 * 1024);
}

static void expect_no_sessions(ft_world *w)
{
    char m[16384];
    for (int i = 0; i < 100; i++) {
        CHECK_INT(http_get(w->d.port, "/metrics", NULL, m, sizeof m), ==, 200);
        if (strstr(m, "fieldsync_sessions{state=\"ready\"} 0\n") &&
            strstr(m, "fieldsync_sessions{state=\"other\"} 0\n"))
            return;
        usleep(20000);
    }
    fprintf(stderr, "sessions still open:\n%s\n", m);
    abort();
}

/* Opens a session, retrying while the device's previous sessions are being closed. */
static void open_retry(fsc *c, ft_world *w, const enrolled *dev)
{
    for (int i = 0; i < 200; i++) {
        int rc = fsc_open(c, &w->t, w->d.port, dev, (uint32_t)w->t.s->version, 0);
        if (rc == 0)
            return;
        fsc_close(c);
        if (rc != WERR_LIMIT) {
            daemon_dump_log(&w->d);
            fprintf(stderr, "hello refused: %s\n", wire_err_name(rc));
            abort();
        }
        usleep(2000);
    }
    fprintf(stderr, "the device's old sessions never went away\n");
    abort();
}

static void test_connect(int argc, char **argv)
{
    ft_world w;
    ft_world_init(&w, argc, argv);
    daemon_start(&w.t, &w.d, "--log-level", "warning", NULL);
    const enrolled *devs[4] = {&w.ana, &w.bo, &w.sue, &w.val};
    long cycles = ft_env_long("FAULT_CYCLES", 1000);
    meas base = {0}, mid = {0};
    int64_t t0 = ft_now_ms();
    for (long i = -50; i < cycles; i++) { /* 50 warm-up cycles */
        if (i == 0)
            base = measure(w.d.pid);
        if (i == cycles / 2)
            mid = (meas){settle_fds(w.d.pid, base.fds), ft_rss_kb(w.d.pid)};
        fsc c;
        open_retry(&c, &w, devs[(i + 50) % 4]);
        fsc_ping(&c, (uint64_t)(i + 100));
        fsc_close(&c);
    }
    meas end = {settle_fds(w.d.pid, base.fds), ft_rss_kb(w.d.pid)};
    printf("connect: %.1f ms per cycle\n", (double)(ft_now_ms() - t0) / (double)(cycles + 50));
    check_growth("connect", base, mid, end, cycles);
    expect_no_sessions(&w);
    fsc c;
    ft_open(&c, &w, &w.ana); /* still serving */
    fsc_ping(&c, 1);
    fsc_close(&c);
    ft_world_done(&w);
}

/* ---- aborted syncs ----------------------------------------------------------------- */

typedef struct dev_state {
    const enrolled *e;
    rid_t child;          /* a child of this device, created at its first push */
    bool has_child;
} dev_state;

/* One new change for device d after the server's server_dseq (deterministic content per
 * dseq, so a re-send of the same dseq is a duplicate, never a mismatch). */
static void next_change(const schema *s, dev_state *d, uint64_t server_dseq, change *ch,
                        rid_t *id_out)
{
    uint64_t dseq = server_dseq + 1;
    uint64_t hlc = hlc_make((uint64_t)1735689600000ULL + dseq * 1000, 0); /* 2025-01-01 */
    rid_t id;
    memset(&id, 0, sizeof id);
    memcpy(id.b, d->e->device.b, 8);
    for (int i = 0; i < 8; i++)
        id.b[8 + i] = (uint8_t)(dseq >> (8 * i));
    id.b[15] |= 1;
    *id_out = id;
    mk_child(ch, s, id_out, "循环", "V1", dseq);
    ch->hlc = hlc;
}

static void abort_one(ft_world *w, dev_state *devs, long i, fieldsync_db *sdk)
{
    const schema *s = w->t.s;
    int kind = (int)(i % 6);
    dev_state *d = &devs[i % 4];
    fsc c;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    change ch;
    rid_t id;
    switch (kind) {
    case 0: { /* half a push frame */
        open_retry(&c, w, d->e);
        next_change(s, d, c.w.server_dseq, &ch, &id);
        push_body(&sb, 1, &ch, 1);
        uint8_t *f;
        size_t fl;
        CHECK_OK(wire_frame_encode(c.codec, sb.data, sb.size, 0, 0, &f, &fl));
        wsc_send_partial(&c.ws, 2, f, fl, fl / 2);
        break;
    }
    case 1: /* a whole push, gone before the result */
        open_retry(&c, w, d->e);
        next_change(s, d, c.w.server_dseq, &ch, &id);
        push_body(&sb, 2, &ch, 1);
        fsc_send(&c, sb.data, sb.size);
        break;
    case 2: { /* a pull, gone before reading the answer */
        open_retry(&c, w, d->e);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        wire_pack_pull(&pk, 0, 0);
        fsc_send(&c, sb.data, sb.size);
        break;
    }
    case 3: { /* an upgrade and no hello; then half an HTTP upgrade */
        fsc_connect(&c, &w->t, w->d.port);
        fsc_close(&c);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->d.port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK_OK(connect(fd, (struct sockaddr *)&sa, sizeof sa));
        static const char half[] = "GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs";
        CHECK_INT(send(fd, half, sizeof half - 1, MSG_NOSIGNAL), ==, sizeof half - 1);
        close(fd);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    case 4: { /* a 256 KiB message in fragments, cut half-way */
        open_retry(&c, w, d->e);
        static uint8_t big[256 << 10];
        big[0] = 0;
        big[1] = 0;
        big[2] = 0x92;
        for (int k = 0; k < 4; k++)
            if (wsc_send_frame(&c.ws, k ? 0 : 2, big + k * (32 << 10), 32 << 10, false))
                break;
        break;
    }
    default: { /* the SDK, cancelled during its push */
        fieldsync_record *r;
        for (int k = 0; k < 3; k++) {
            CHECK_OK(fieldsync_record_new(sdk, "child", &r));
            CHECK_OK(fieldsync_set_text(r, "name", "取消"));
            CHECK_OK(fieldsync_set_text(r, "village", "V1"));
            CHECK_OK(fieldsync_record_save(r));
            fieldsync_record_free(r);
        }
        fieldsync_cancel(sdk); /* sticky: the sync stops at its first chance */
        fieldsync_sync_result res;
        int rc = fieldsync_sync(sdk, NULL, NULL, NULL, &res);
        CHECK(rc == FIELDSYNC_ECANCELLED || rc == FIELDSYNC_OK);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    }
    fsc_close(&c);
    msgpack_sbuffer_destroy(&sb);
}

static void test_aborted(int argc, char **argv)
{
    ft_world w;
    ft_world_init(&w, argc, argv);
    daemon_start(&w.t, &w.d, "--log-level", "warning", NULL);
    dev_state devs[4] = {{.e = &w.ana}, {.e = &w.bo}, {.e = &w.sue}, {.e = &w.val}};
    /* an SDK device of its own */
    enrolled sd;
    ft_admin(&w.t, "user", "add", "sdk", "--role", "visitor", "--villages", "V1", NULL);
    enrol(&w.t, "sdk", &sd);
    char path[400], url[64];
    snprintf(path, sizeof path, "%s/sdk.db", w.t.dir);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", w.d.port);
    fieldsync_db *sdk;
    CHECK_OK(fieldsync_open(path, NULL, &sdk));
    CHECK_OK(fieldsync_enrol(sdk, url, sd.id, sd.token));
    long cycles = ft_env_long("FAULT_CYCLES", 1000);
    meas base = {0}, mid = {0};
    int64_t t0 = ft_now_ms();
    for (long i = -60; i < cycles; i++) {
        if (i == 0)
            base = measure(w.d.pid);
        if (i == cycles / 2)
            mid = (meas){settle_fds(w.d.pid, base.fds), ft_rss_kb(w.d.pid)};
        abort_one(&w, devs, i + 60, sdk);
    }
    meas end = {settle_fds(w.d.pid, base.fds), ft_rss_kb(w.d.pid)};
    printf("aborted: %.1f ms per cycle\n", (double)(ft_now_ms() - t0) / (double)(cycles + 60));
    check_growth("aborted", base, mid, end, cycles);
    expect_no_sessions(&w);
    /* still serving: the SDK device finishes its outbox, each device's log has no hole */
    fieldsync_sync_result res;
    int rc = fieldsync_sync(sdk, NULL, NULL, NULL, &res);
    if (rc)
        fprintf(stderr, "final sync: %s\n", fieldsync_errmsg(sdk));
    CHECK_OK(rc);
    CHECK_INT(res.pending, ==, 0);
    CHECK_INT(res.refused, ==, 0);
    fieldsync_close(sdk);
    for (int k = 0; k < 4; k++) {
        fsc c;
        ft_open(&c, &w, devs[k].e);
        uint64_t sd_ = c.w.server_dseq;
        fsc_close(&c);
        char hex[40];
        ft_hex_id(devs[k].e->id, hex);
        CHECK_INT(it_sqlnum(w.t.db, "SELECT count(*) FROM log WHERE device = X'%s'", hex), ==,
                  sd_);
    }
    CHECK_INT(it_sqlnum(w.t.db, "SELECT count(*) FROM refused"), ==, 0);
    ft_world_done(&w);
}

int main(int argc, char **argv)
{
    static const ft_case cases[] = {{"connect", test_connect}, {"aborted", test_aborted}};
    return ft_main_cases(argc, argv, "fault_cycles", cases, sizeof cases / sizeof cases[0]);
}

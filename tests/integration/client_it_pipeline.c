/*
 * client_it_pipeline.c — two pushes in flight (docs/protocol.md §5) between the SDK and the
 * real server on 127.0.0.1, watched by a counting proxy.
 *
 * The proxy (a thread of this test) relays one connection at a time between the device and
 * fieldsyncd and reads the WebSocket frames going by (the devices sync uncompressed,
 * no_compress, so each message's type is its body's second byte): pushes up, push_results
 * down. It records the most pushes ever unanswered at once, and whether a pull went up while
 * a push was unanswered. The server holds each parked message 250 ms (FIELDSYNC_FAULT
 * park_hold): the second push, queued by the device with the first, leaves it long before
 * the first's answer can come back (not a timing assertion: a late one fails max == 2).
 *   1. backlog: a device with 16 pushes' worth of changes syncs (each push after the first is
 *      half a batch: the two in flight together hold at most one): 2 were in flight, the
 *      pull began only after the last result, and every change is on the server once (log
 *      rows = distinct dseqs = the outbox before), the outbox empty.
 *   2. unconsumed refusal: the device's first push starts with an edit whose abbreviated id is
 *      ambiguous on the server (made as in client_it_abbrev.c): EREC_ABBREV, the rest of that
 *      push and the whole second push in flight ESEQ_GAP; the SDK resends both from the first
 *      change, with the full id, in the same sync: every change accepted once, both pushes'
 *      changes sent twice, nothing refused, the outbox empty.
 *   3. link cut with 2 pushes unanswered: the proxy drops the connection instead of passing
 *      the first push_result; every change stays in the outbox (none was answered) and the
 *      next sync resends them: the ones the server had committed come back duplicate, every
 *      change is on the server once.
 *   4. no pacing: 300 pushes of one change each, straight to a server (no park_hold) whose
 *      message rate is 10 a second: the SDK sends each push as soon as the window has room,
 *      and the server, which paces pushes itself, does not count them (docs/protocol.md §8):
 *      one session, no LIMIT, every change accepted once.
 */
#include "check.h"
#include "client_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FIRST_BATCH 4
#define MAX_BATCH 20
/* the pushes in flight together hold at most one batch: each after the first is half of one */
#define HALF_BATCH (MAX_BATCH / 2)

/* ---- the counting proxy --------------------------------------------------------------- */

/* One direction of a connection: its bytes until whole frames can be read. */
typedef struct wsdir {
    uint8_t *buf;
    size_t len, cap;
    bool http_done;   /* the upgrade request/response (up to \r\n\r\n) is behind */
} wsdir;

typedef struct proxy {
    int listen_fd, port, server_port;
    atomic_int stop;
    atomic_int cut_armed;    /* drop the link at a push_result while 2 pushes are unanswered */
    /* per connection, then totals (read by the main thread between syncs) */
    int outstanding;
    atomic_int max_outstanding, pushes, results, pull_early, cuts, conns, compressed;
    pthread_t th;
} proxy;

/* The message type of a binary frame's payload start (p, n bytes, unmasked): the body of an
 * uncompressed frame is a MessagePack array whose second byte is the type; -1 when it is
 * compressed or too short to tell. */
static int frame_type(const uint8_t *p, size_t n)
{
    if (n >= 2 && (p[0] & 0xf0) == 0x90)
        return p[1];
    if (n >= 4 && p[0] == 0 && p[1] == 0 && (p[2] & 0xf0) == 0x90) /* header form, raw */
        return p[3];
    return -1;
}

/* Appends what went by in one direction (up: device to server) and counts the whole frames.
 * Returns true when the link must be cut now (instead of forwarding these bytes). */
static bool ws_feed(proxy *px, wsdir *d, const uint8_t *in, size_t n, bool up)
{
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap : 65536;
        while (cap < d->len + n)
            cap *= 2;
        d->buf = realloc(d->buf, cap);
        CHECK(d->buf != NULL);
        d->cap = cap;
    }
    memcpy(d->buf + d->len, in, n);
    d->len += n;
    size_t at = 0;
    bool cut = false;
    if (!d->http_done) {
        for (size_t i = 0; i + 4 <= d->len; i++)
            if (!memcmp(d->buf + i, "\r\n\r\n", 4)) {
                d->http_done = true;
                at = i + 4;
                break;
            }
        if (!d->http_done)
            return false;
    }
    for (;;) {
        const uint8_t *f = d->buf + at;
        size_t left = d->len - at, hl = 2;
        if (left < 2)
            break;
        uint64_t plen = f[1] & 0x7f;
        if (plen == 126) {
            if (left < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (plen == 127) {
            if (left < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            hl = 10;
        }
        bool masked = f[1] & 0x80;
        const uint8_t *mask = f + hl;
        if (masked)
            hl += 4;
        if (left < hl + plen)
            break;
        if ((f[0] & 0x0f) == 2) { /* a binary message's first frame */
            uint8_t head[4] = {0};
            size_t k = plen < 4 ? (size_t)plen : 4;
            for (size_t i = 0; i < k; i++)
                head[i] = f[hl + i] ^ (masked ? mask[i % 4] : 0);
            int type = frame_type(head, k);
            if (type < 0)
                atomic_fetch_add(&px->compressed, 1);
            if (up && type == 3) {
                atomic_fetch_add(&px->pushes, 1);
                if (++px->outstanding > atomic_load(&px->max_outstanding))
                    atomic_store(&px->max_outstanding, px->outstanding);
            } else if (up && type == 5 && px->outstanding) {
                atomic_store(&px->pull_early, 1);
            } else if (!up && type == 4) {
                if (px->outstanding == 2 && atomic_load(&px->cut_armed)) {
                    atomic_store(&px->cut_armed, 0);
                    atomic_fetch_add(&px->cuts, 1);
                    cut = true;
                }
                atomic_fetch_add(&px->results, 1);
                px->outstanding--;
            }
        }
        at += hl + (size_t)plen;
    }
    memmove(d->buf, d->buf + at, d->len - at);
    d->len -= at;
    return cut;
}

static void relay(proxy *px, int dev_fd)
{
    int srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)px->server_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(srv_fd, (struct sockaddr *)&a, sizeof a)) {
        close(srv_fd);
        close(dev_fd);
        return;
    }
    atomic_fetch_add(&px->conns, 1);
    px->outstanding = 0;
    wsdir dir[2] = {{0}, {0}}; /* 0: up, 1: down */
    int fd[2] = {dev_fd, srv_fd};
    static uint8_t buf[65536];
    while (!atomic_load(&px->stop)) {
        struct pollfd p[2] = {{fd[0], POLLIN, 0}, {fd[1], POLLIN, 0}};
        if (poll(p, 2, 100) < 0)
            break;
        bool done = false;
        for (int i = 0; i < 2 && !done; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fd[i], buf, sizeof buf);
            if (n <= 0 || ws_feed(px, &dir[i], buf, (size_t)n, i == 0)) {
                done = true;
                break;
            }
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(fd[1 - i], buf + off, (size_t)(n - off));
                if (w <= 0) {
                    done = true;
                    break;
                }
                off += w;
            }
        }
        if (done)
            break;
    }
    close(dev_fd);
    close(srv_fd);
    free(dir[0].buf);
    free(dir[1].buf);
}

static void *proxy_main(void *arg)
{
    proxy *px = arg;
    while (!atomic_load(&px->stop)) {
        struct pollfd p = {px->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(px->listen_fd, NULL, NULL);
        if (c >= 0)
            relay(px, c);
    }
    return NULL;
}

static void proxy_start(proxy *px, int server_port)
{
    memset(px, 0, sizeof *px);
    px->server_port = server_port;
    px->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    CHECK_OK(bind(px->listen_fd, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(listen(px->listen_fd, 4));
    CHECK_OK(getsockname(px->listen_fd, (struct sockaddr *)&a, &al));
    px->port = ntohs(a.sin_port);
    CHECK_OK(pthread_create(&px->th, NULL, proxy_main, px));
}

static void proxy_stop(proxy *px)
{
    atomic_store(&px->stop, 1);
    pthread_join(px->th, NULL);
    close(px->listen_fd);
}

/* Clears the counters (between syncs: the proxy thread is idle in accept then). */
static void proxy_reset(proxy *px)
{
    atomic_store(&px->max_outstanding, 0);
    atomic_store(&px->pushes, 0);
    atomic_store(&px->results, 0);
    atomic_store(&px->pull_early, 0);
    atomic_store(&px->compressed, 0);
}

/* ---- devices ---------------------------------------------------------------------------- */

/* n children in V1 on db, with a visit for every other one: changes made. */
static int backlog(fieldsync_db *db, const char *tag, int n)
{
    int made = 0;
    for (int i = 0; i < n; i++) {
        char name[32], id[40];
        snprintf(name, sizeof name, "%s%d", tag, i);
        it_child(db, name, "V1", id);
        made++;
        if (i % 2 == 0) {
            it_visit(db, id, 1764374400 + i, "好");
            made++;
        }
    }
    return made;
}

/* A sync through the proxy, uncompressed so that the proxy can read the types. */
static int sync_px(fieldsync_db *db, fieldsync_sync_result *r)
{
    fieldsync_sync_opts o = {.no_compress = 1, .first_batch = FIRST_BATCH,
                             .max_batch = MAX_BATCH, .reply_timeout_ms = 20000};
    int rc = fieldsync_sync(db, &o, NULL, NULL, r);
    if (rc)
        fprintf(stderr, "sync: %s (%s)\n", fieldsync_errmsg(db), r->message);
    return rc;
}

static long long outbox_size(srv *s, const char *name)
{
    char path[256];
    it_dbpath(s, name, path, sizeof path);
    return it_sqlnum(path, "SELECT count(*) FROM dev_outbox");
}

int main(void)
{
    char dir[64];
    it_mkdir("it-pipeline", dir, sizeof dir);
    srv s;
    it_srv_init(&s, dir);
    it_geo(&s);
    it_admin(&s, "user add va --role visitor --villages V1");
    it_admin(&s, "user add vb --role visitor --villages V1");
    it_admin(&s, "user add vc --role visitor --villages V1");
    setenv("FIELDSYNC_FAULT", "park_hold:250", 1);
    it_srv_start(&s);
    unsetenv("FIELDSYNC_FAULT");
    proxy px;
    proxy_start(&px, s.port);
    srv via = s; /* devices enrolled through `via` connect to the proxy */
    snprintf(via.url, sizeof via.url, "ws://127.0.0.1:%d", px.port);
    char hex[40], path[256];

    /* 1. a backlog of 16 pushes (4, then 10 each: two in flight hold at most one batch) */
    fieldsync_db *a = it_device(&via, "va", "a");
    int total = backlog(a, "甲", 100); /* 150 changes */
    CHECK_INT(outbox_size(&s, "a"), ==, total);
    fieldsync_sync_result r;
    proxy_reset(&px);
    CHECK_OK(sync_px(a, &r));
    CHECK_INT(atomic_load(&px.compressed), ==, 0); /* the proxy read every type */
    CHECK_INT(atomic_load(&px.pushes), ==, 1 + (total - FIRST_BATCH + HALF_BATCH - 1) / HALF_BATCH);
    CHECK_INT(atomic_load(&px.results), ==, atomic_load(&px.pushes));
    CHECK_INT(atomic_load(&px.max_outstanding), ==, 2);
    CHECK_INT(atomic_load(&px.pull_early), ==, 0); /* the pull waited for every result */
    CHECK_INT(r.sent, ==, total);
    CHECK_INT(r.accepted, ==, total);
    CHECK_INT(r.duplicates + r.refused + r.pending, ==, 0);
    it_device_hex(a, hex);
    it_dbpath(&s, "a", path, sizeof path);
    it_check_once(s.db, hex, total); /* log rows = distinct dseqs = 1..total */
    it_check_device_done(path, hex, total);

    /* 2. the first push's first change not consumed (an ambiguous abbreviation): the second
     *    push in flight comes back ESEQ_GAP; both are resent from that change */
    fieldsync_db *b = it_device(&s, "vb", "b");
    fieldsync_db *c = it_device(&via, "vc", "c");
    char x[40], y[40];
    it_child(b, "李小红", "V1", x);
    it_sync(b);
    CHECK_INT(sync_px(c, &r), ==, 0); /* c now holds x confirmed: its edits abbreviate */
    it_child(b, "李小明", "V1", y); /* y made to share x's first 9 bytes before it is sent */
    unsigned char nb[16];
    char bpath[256];
    it_dbpath(&s, "b", bpath, sizeof bpath);
    it_share_abbrev(bpath, x, y, nb);
    r = it_sync(b);
    CHECK_INT(r.accepted, ==, 1);
    it_set_grade(c, x, 4); /* numbered first: the head of the first push */
    int more = backlog(c, "丙", 30); /* 45: 3 in the first push, 10 in the second, ... */
    int ctotal = 1 + more;
    proxy_reset(&px);
    CHECK_OK(sync_px(c, &r));
    CHECK_INT(atomic_load(&px.max_outstanding), ==, 2);
    CHECK_INT(atomic_load(&px.pull_early), ==, 0);
    /* the first two pushes were sent twice: 4 + 10 changes more than the outbox held */
    CHECK_INT(r.sent, ==, ctotal + FIRST_BATCH + HALF_BATCH);
    CHECK_INT(r.accepted, ==, ctotal);
    CHECK_INT(r.duplicates + r.refused + r.pending, ==, 0);
    it_device_hex(c, hex);
    it_dbpath(&s, "c", path, sizeof path);
    it_check_once(s.db, hex, ctotal);
    it_check_device_done(path, hex, ctotal);
    it_sync(b);
    CHECK_STR(it_field(b, x, "grade"), "4");

    /* 3. the link cut with 2 pushes unanswered: all of both stay and are resent */
    fieldsync_db *d = it_device(&via, "va", "d");
    int dtotal = backlog(d, "丁", 40); /* 60 */
    proxy_reset(&px);
    atomic_store(&px.cut_armed, 1);
    CHECK(sync_px(d, &r) != 0);
    CHECK_INT(atomic_load(&px.cuts), ==, 1);
    CHECK_INT(atomic_load(&px.max_outstanding), ==, 2);
    CHECK_INT(r.accepted + r.duplicates + r.refused, ==, 0); /* no result reached it */
    CHECK_INT(outbox_size(&s, "d"), ==, dtotal);
    it_device_hex(d, hex);
    /* the server committed at least the first push before answering it */
    CHECK(it_sqlnum(s.db, "SELECT count(*) FROM log WHERE device = X'%s'", hex) >= FIRST_BATCH);
    proxy_reset(&px);
    CHECK_OK(sync_px(d, &r));
    CHECK_INT(r.accepted + r.duplicates, ==, dtotal);
    CHECK(r.duplicates >= FIRST_BATCH);
    CHECK_INT(r.refused + r.pending, ==, 0);
    it_dbpath(&s, "d", path, sizeof path);
    it_check_once(s.db, hex, dtotal);
    it_check_device_done(path, hex, dtotal);

    /* 4. no pacing: a device whose pushes carry one change each (max_batch 2: half a batch
     * per push) and a backlog of 300, straight to the server restarted without park_hold and
     * with --rate-limit 10. The SDK has no pacing of its own: it sends the next push as soon
     * as a result frees the window. The server counts only the messages it runs at once
     * (an SDK sync sends none: hello, pushes and pulls are parked) and so does not close the
     * session. The limit is low so that a server counting pushes closes it whatever the
     * machine's speed: 10 + 10 a second would take 300 pushes only if they took 29 s. */
    proxy_stop(&px);
    it_srv_stop(&s);
    it_admin(&s, "user add ve --role visitor --villages V1");
    static const char *const slow_rate[] = {"--rate-limit", "10", NULL};
    it_srv_start_args(&s, slow_rate);
    fieldsync_db *e = it_device(&s, "ve", "e");
    int etotal = backlog(e, "戊", 200); /* 300 changes */
    fieldsync_sync_opts po = {.first_batch = 1, .max_batch = 2, .reply_timeout_ms = 20000};
    int prc = fieldsync_sync(e, &po, NULL, NULL, &r);
    if (prc)
        fprintf(stderr, "backlog sync: %s (%s)\n", fieldsync_errmsg(e), r.message);
    CHECK_OK(prc);
    CHECK_INT(r.sent, ==, etotal);
    CHECK_INT(r.accepted, ==, etotal);
    it_device_hex(e, hex);
    it_dbpath(&s, "e", path, sizeof path);
    it_check_once(s.db, hex, etotal);
    it_check_device_done(path, hex, etotal);

    fieldsync_close(a);
    fieldsync_close(b);
    fieldsync_close(c);
    fieldsync_close(d);
    fieldsync_close(e);
    it_srv_stop(&s);
    it_rmdir(dir);
    printf("client_it_pipeline: ok\n");
    return 0;
}

/*
 * shape_proxy — a userspace TCP proxy that makes loopback behave like a slow, lossy link
 * (a 2G connection in a mountain village), for bench_slowlink and for trying the SDK by hand.
 *
 *   shape_proxy --listen 127.0.0.1:0 --to 127.0.0.1:7370 --down 80 --up 40 --delay 300
 *               [--drop-every BYTES] [--drop-at BYTES] [--seed S] [--buffer BYTES]
 *
 * Each direction is a serial link: bytes read from one side are cut into segments of at most
 * 1,460 bytes; a segment leaves when the link has finished sending the previous ones (its
 * serialisation time is len * 8 / rate: a token bucket that holds one segment) and arrives
 * `delay` ms later. A new connection first waits one round trip (2 * delay) before anything
 * moves, standing for the TCP handshake the kernel already did on loopback. At most --buffer
 * bytes (default 32 KiB, a modem's queue) wait per direction; past that the proxy stops
 * reading that side, so the sender feels the link's pace through TCP flow control as it would
 * on the real link.
 *
 * Drops: a drop closes both sides of the connection that carries the byte at which it falls
 * (what a phone losing its bearer looks like to both ends: the peer sees EOF, queued bytes
 * are lost). Drop points count the bytes delivered in both directions over all connections,
 * so reconnecting does not reset the link's fate: --drop-at B puts the first drop at byte B,
 * --drop-every N puts the next ones N bytes apart, or at random between N/2 and 3N/2 with
 * --seed (a fixed seed repeats the same drops).
 *
 * Output (stdout, line-buffered): "shape_proxy listening on ADDR:PORT" once, then one line per
 * connection when it ends: "conn ID up BYTES down BYTES dropped yes|no"; on SIGTERM/SIGINT a
 * "total up BYTES down BYTES drops N" line. up = client to server.
 *
 * Deliberately not modelled: TCP's own retransmissions and slow start (loopback TCP under the
 * proxy never loses anything), reordering, and bit errors. Single-threaded, poll(2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEGMENT 1460
#define MAX_CONNS 64

typedef struct seg {
    struct seg *next;
    int64_t at_us;       /* when it arrives at the far side */
    size_t len, off;
    uint8_t data[SEGMENT];
} seg;

typedef struct dir {
    int from, to;        /* fds */
    seg *head, *tail;
    size_t queued;
    int64_t free_at_us;  /* when the link finishes the segments before */
    bool eof;            /* the source closed: shut down `to` once drained */
    bool shut;
    uint64_t bytes;      /* delivered */
} dir;

typedef struct conn {
    bool used;
    int id;
    int cfd, sfd;
    int64_t open_at_us;  /* the handshake's round trip */
    dir up, down;
} conn;

static struct {
    double up_bps, down_bps;
    int64_t delay_us;
    uint64_t drop_every, drop_at;
    uint64_t seed;
    size_t buffer;
    struct sockaddr_in to;
} cfg;

static conn conns[MAX_CONNS];
static uint64_t delivered, next_drop, total_up, total_down, drops;
static int next_id = 1;
static volatile sig_atomic_t stop;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (cfg.seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void plan_next_drop(void)
{
    if (!cfg.drop_every) {
        next_drop = UINT64_MAX;
        return;
    }
    uint64_t gap = cfg.drop_every;
    if (cfg.seed)
        gap = cfg.drop_every / 2 + rnd() % (cfg.drop_every + 1);
    next_drop = delivered + (gap ? gap : 1);
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shape_proxy --to HOST:PORT [--listen HOST:PORT] [--down KBIT] [--up KBIT]\n"
            "                   [--delay MS] [--drop-every BYTES] [--drop-at BYTES] [--seed S]\n"
            "                   [--buffer BYTES]\n"
            "\n"
            "A TCP proxy shaping each direction like a slow link: bandwidth (kbit/s; 0 = no\n"
            "limit), a fixed one-way delay, and drops that close both sides. Defaults are a\n"
            "2G link: --down 80 --up 40 --delay 300, no drops, --listen 127.0.0.1:0.\n"
            "  --drop-every N  a drop every N bytes carried (both directions, all connections)\n"
            "  --drop-at B     the first drop at byte B (then every N if --drop-every)\n"
            "  --seed S        drops at random between N/2 and 3N/2 apart (repeatable)\n"
            "  --buffer B      bytes queued per direction before reading stops (32768)\n"
            "Prints \"shape_proxy listening on HOST:PORT\", a line per connection and totals\n"
            "on SIGTERM.\n");
}

static void free_dir(dir *d)
{
    seg *s = d->head;
    while (s) {
        seg *n = s->next;
        free(s);
        s = n;
    }
    d->head = d->tail = NULL;
    d->queued = 0;
}

static void conn_end(conn *c, bool dropped)
{
    if (dropped) {
        /* lose the bearer: the peers see the connection reset */
        struct linger lg = {1, 0};
        setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        setsockopt(c->sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        drops++;
    }
    close(c->cfd);
    close(c->sfd);
    free_dir(&c->up);
    free_dir(&c->down);
    printf("conn %d up %llu down %llu dropped %s\n", c->id, (unsigned long long)c->up.bytes,
           (unsigned long long)c->down.bytes, dropped ? "yes" : "no");
    c->used = false;
}

/* Reads what the source has (up to the buffer) into timed segments. Returns -1 on error. */
static int pump_in(conn *c, dir *d, double bps, int64_t now)
{
    while (d->queued < cfg.buffer) {
        seg *s = malloc(sizeof *s);
        if (!s)
            return -1;
        ssize_t n = read(d->from, s->data, SEGMENT);
        if (n <= 0) {
            free(s);
            if (n == 0) {
                d->eof = true;
                return 0;
            }
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        }
        s->len = (size_t)n;
        s->off = 0;
        s->next = NULL;
        int64_t start = d->free_at_us > now ? d->free_at_us : now;
        if (start < c->open_at_us)
            start = c->open_at_us;
        int64_t tx = bps > 0 ? (int64_t)((double)n * 8.0 * 1e6 / bps) : 0;
        d->free_at_us = start + tx;
        s->at_us = d->free_at_us + cfg.delay_us;
        if (d->tail)
            d->tail->next = s;
        else
            d->head = s;
        d->tail = s;
        d->queued += (size_t)n;
    }
    return 0;
}

/* Delivers the segments that have arrived. Returns 1 when a drop fell in them, -1 on error. */
static int pump_out(dir *d, int64_t now, uint64_t *total)
{
    while (d->head && d->head->at_us <= now) {
        seg *s = d->head;
        size_t want = s->len - s->off;
        if (delivered + want >= next_drop) {
            /* the drop falls inside this segment: deliver up to it, then cut */
            size_t part = (size_t)(next_drop - delivered);
            if (part) {
                ssize_t n = write(d->to, s->data + s->off, part);
                if (n > 0) {
                    d->bytes += (uint64_t)n;
                    *total += (uint64_t)n;
                    delivered += (uint64_t)n;
                }
            }
            plan_next_drop();
            return 1;
        }
        ssize_t n = write(d->to, s->data + s->off, want);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        s->off += (size_t)n;
        d->bytes += (uint64_t)n;
        *total += (uint64_t)n;
        delivered += (uint64_t)n;
        d->queued -= (size_t)n;
        if (s->off < s->len)
            return 0;
        d->head = s->next;
        if (!d->head)
            d->tail = NULL;
        free(s);
    }
    if (!d->head && d->eof && !d->shut) {
        shutdown(d->to, SHUT_WR);
        d->shut = true;
    }
    return 0;
}

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0", *to = NULL;
    cfg.down_bps = 80e3;
    cfg.up_bps = 40e3;
    cfg.delay_us = 300 * 1000;
    cfg.buffer = 32768;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "shape_proxy: %s needs a value (see --help)\n", a);
            return 1;
        }
        i++;
        if (!strcmp(a, "--listen"))
            listen_at = v;
        else if (!strcmp(a, "--to"))
            to = v;
        else if (!strcmp(a, "--down"))
            cfg.down_bps = atof(v) * 1e3;
        else if (!strcmp(a, "--up"))
            cfg.up_bps = atof(v) * 1e3;
        else if (!strcmp(a, "--delay"))
            cfg.delay_us = (int64_t)(atof(v) * 1e3);
        else if (!strcmp(a, "--drop-every"))
            cfg.drop_every = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--drop-at"))
            cfg.drop_at = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            cfg.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--buffer"))
            cfg.buffer = (size_t)strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "shape_proxy: unknown option %s (see --help)\n", a);
            return 1;
        }
    }
    struct sockaddr_in la;
    if (!to || parse_addr(to, &cfg.to) || parse_addr(listen_at, &la)) {
        fprintf(stderr, "shape_proxy: --to HOST:PORT is required; addresses are IPv4 HOST:PORT\n");
        return 1;
    }
    if (cfg.buffer < SEGMENT)
        cfg.buffer = SEGMENT;
    next_drop = cfg.drop_at ? cfg.drop_at : UINT64_MAX;
    if (!cfg.drop_at)
        plan_next_drop();
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t alen = sizeof la;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&la, sizeof la) || listen(lfd, 16) ||
        getsockname(lfd, (struct sockaddr *)&la, &alen)) {
        fprintf(stderr, "shape_proxy: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    nonblock(lfd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    char ip[32];
    inet_ntop(AF_INET, &la.sin_addr, ip, sizeof ip);
    printf("shape_proxy listening on %s:%d\n", ip, ntohs(la.sin_port));

    while (!stop) {
        struct pollfd pf[1 + 2 * MAX_CONNS];

        int np = 0;
        int64_t now = now_us(), wake = now + 1000000;
        pf[np] = (struct pollfd){.fd = lfd, .events = POLLIN};
        np++;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = &conns[i];
            if (!c->used)
                continue;
            dir *ds[2] = {&c->up, &c->down};
            for (int k = 0; k < 2; k++) {
                dir *d = ds[k];
                short ev = 0;
                if (!d->eof && d->queued < cfg.buffer && now >= c->open_at_us)
                    ev |= POLLIN;
                pf[np] = (struct pollfd){.fd = d->from, .events = ev};
                np++;
                if (d->head && d->head->at_us < wake)
                    wake = d->head->at_us;
            }
            if (now < c->open_at_us && c->open_at_us < wake)
                wake = c->open_at_us;
        }
        int timeout = (int)((wake - now + 999) / 1000);
        if (poll(pf, (nfds_t)np, timeout < 0 ? 0 : timeout) < 0 && errno != EINTR)
            break;
        now = now_us();
        if (pf[0].revents & POLLIN) {
            int cfd = accept(lfd, NULL, NULL);
            conn *c = NULL;
            for (int i = 0; i < MAX_CONNS && cfd >= 0; i++)
                if (!conns[i].used) {
                    c = &conns[i];
                    break;
                }
            int sfd = c ? socket(AF_INET, SOCK_STREAM, 0) : -1;
            if (sfd >= 0 && connect(sfd, (struct sockaddr *)&cfg.to, sizeof cfg.to) == 0) {
                memset(c, 0, sizeof *c);
                c->used = true;
                c->id = next_id++;
                c->cfd = cfd;
                c->sfd = sfd;
                c->open_at_us = now + 2 * cfg.delay_us;
                c->up = (dir){.from = cfd, .to = sfd};
                c->down = (dir){.from = sfd, .to = cfd};
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                nonblock(cfd);
                nonblock(sfd);
            } else {
                if (sfd >= 0)
                    close(sfd);
                if (cfd >= 0)
                    close(cfd);
            }
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = &conns[i];
            if (!c->used)
                continue;
            int r = 0;
            if (now >= c->open_at_us) {
                if (pump_in(c, &c->up, cfg.up_bps, now) || pump_in(c, &c->down, cfg.down_bps, now))
                    r = -1;
            }
            if (!r)
                r = pump_out(&c->up, now, &total_up);
            if (!r)
                r = pump_out(&c->down, now, &total_down);
            if (r == 1)
                conn_end(c, true);
            else if (r < 0 || (c->up.shut && c->down.shut))
                conn_end(c, false);
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].used)
            conn_end(&conns[i], false);
    printf("total up %llu down %llu drops %llu\n", (unsigned long long)total_up,
           (unsigned long long)total_down, (unsigned long long)drops);
    close(lfd);
    return 0;
}

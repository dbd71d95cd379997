/*
 * client_it_proxy.c — syncs through a hostile link.
 *
 * A fault-injecting TCP proxy (a thread of this test) sits between two devices and the real
 * fieldsyncd. Per connection it may cut the link at a random byte offset (mid-frame, in
 * either direction), forwards in random small chunks, adds random delays, and sometimes
 * stalls a connection for a while. Device A records children, edits and visits between 100
 * syncs through the proxy; device B pulls through it. Whatever each sync returns, afterwards
 * (faults off) every change of A is on the server exactly once (one log row per change, dseq
 * 1..N without holes), A's outbox is empty, nothing was refused, and A, B and the server hold
 * byte-identical field state for every record.
 *
 * The seed is printed; FS_PROXY_SEED=N reproduces a run's fault pattern (timing aside).
 */
#include "check.h"
#include "client_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 100
#define MAX_CONNS 32

/* ---- the proxy ------------------------------------------------------------------------ */

typedef struct pconn {
    int fd[2];          /* 0: device side, 1: server side; -1 when unused */
    uint64_t moved;     /* bytes forwarded, both directions */
    uint64_t cut_at;    /* cut the link when moved reaches this (UINT64_MAX: never) */
    int64_t stall_until_ms;
} pconn;

typedef struct proxy {
    int listen_fd;
    int port;
    int server_port;
    atomic_int faults;  /* 0: a plain relay */
    atomic_int stop;
    uint64_t rng;
    pconn c[MAX_CONNS];
    /* what happened */
    unsigned conns, cuts, stalls, delays;
} proxy;

static uint64_t rnd(proxy *p)
{
    uint64_t z = (p->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pconn_close(pconn *c)
{
    for (int i = 0; i < 2; i++)
        if (c->fd[i] >= 0) {
            close(c->fd[i]);
            c->fd[i] = -1;
        }
}

static void proxy_accept(proxy *p)
{
    int cfd = accept(p->listen_fd, NULL, NULL);
    if (cfd < 0)
        return;
    pconn *c = NULL;
    for (int i = 0; i < MAX_CONNS && !c; i++)
        if (p->c[i].fd[0] < 0)
            c = &p->c[i];
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->server_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!c || sfd < 0 || connect(sfd, (struct sockaddr *)&a, sizeof a)) {
        close(cfd);
        if (sfd >= 0)
            close(sfd);
        return;
    }
    c->fd[0] = cfd;
    c->fd[1] = sfd;
    c->moved = 0;
    c->cut_at = UINT64_MAX;
    c->stall_until_ms = 0;
    p->conns++;
    if (atomic_load(&p->faults)) {
        if (rnd(p) % 100 < 60) /* most connections die somewhere in their first 2.5 KB: */
            c->cut_at = rnd(p) % 2500; /* in the handshake, hello, a push or its result */
        if (rnd(p) % 100 < 8) {
            c->stall_until_ms = now_ms() + 500 + (int64_t)(rnd(p) % 1500);
            p->stalls++;
        }
    }
}

/* Moves one chunk from fd[from] to fd[1 - from]; returns -1 when the link must close. */
static int proxy_move(proxy *p, pconn *c, int from)
{
    uint8_t buf[4096];
    size_t want = sizeof buf;
    bool faults = atomic_load(&p->faults);
    if (faults)
        want = 1 + rnd(p) % sizeof buf; /* odd chunk sizes split frames anywhere */
    ssize_t n = read(c->fd[from], buf, want);
    if (n <= 0)
        return -1;
    size_t len = (size_t)n;
    bool cut = false;
    if (c->moved + len >= c->cut_at) {
        len = (size_t)(c->cut_at - c->moved);
        cut = true;
    }
    if (faults && rnd(p) % 100 < 5) {
        usleep((useconds_t)(1000 * (1 + rnd(p) % 40)));
        p->delays++;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(c->fd[1 - from], buf + off, len - off);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    c->moved += len;
    if (cut) {
        p->cuts++;
        return -1;
    }
    return 0;
}

static void *proxy_main(void *arg)
{
    proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pf[1 + 2 * MAX_CONNS];
        pconn *who[1 + 2 * MAX_CONNS];
        int side[1 + 2 * MAX_CONNS];
        int n = 0;
        pf[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        int64_t now = now_ms();
        for (int i = 0; i < MAX_CONNS; i++) {
            pconn *c = &p->c[i];
            if (c->fd[0] < 0 || c->stall_until_ms > now)
                continue;
            for (int k = 0; k < 2; k++) {
                who[n] = c;
                side[n] = k;
                pf[n++] = (struct pollfd){.fd = c->fd[k], .events = POLLIN};
            }
        }
        if (poll(pf, (nfds_t)n, 50) <= 0)
            continue;
        if (pf[0].revents & POLLIN)
            proxy_accept(p);
        for (int i = 1; i < n; i++)
            if (pf[i].revents && who[i]->fd[0] >= 0 && proxy_move(p, who[i], side[i]))
                pconn_close(who[i]);
    }
    for (int i = 0; i < MAX_CONNS; i++)
        pconn_close(&p->c[i]);
    return NULL;
}

static void proxy_start(proxy *p, int server_port, uint64_t seed, pthread_t *th)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < MAX_CONNS; i++)
        p->c[i].fd[0] = p->c[i].fd[1] = -1;
    p->server_port = server_port;
    p->rng = seed;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(p->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(listen(p->listen_fd, 16));
    socklen_t al = sizeof a;
    CHECK_OK(getsockname(p->listen_fd, (struct sockaddr *)&a, &al));
    p->port = ntohs(a.sin_port);
    atomic_store(&p->faults, 1);
    CHECK_OK(pthread_create(th, NULL, proxy_main, p));
}

/* ---- the test ------------------------------------------------------------------------- */

static char ids[3 * ROUNDS][40]; /* every record A made */
static int n_ids;
static char kids[ROUNDS][40];     /* the children among them */
static int n_kids;

static void save_child(fieldsync_db *db, int i)
{
    fieldsync_record *r;
    char name[64];
    snprintf(name, sizeof name, "李小花%03d", i);
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", name));
    CHECK_OK(fieldsync_set_text(r, "village", "V1"));
    CHECK_OK(fieldsync_set_enum(r, "risk_level", "low"));
    CHECK_OK(fieldsync_record_save(r));
    snprintf(ids[n_ids++], sizeof ids[0], "%s", fieldsync_record_id(r));
    snprintf(kids[n_kids++], sizeof kids[0], "%s", fieldsync_record_id(r));
    fieldsync_record_free(r);
}

static void edit_child(fieldsync_db *db, const char *id, int i)
{
    fieldsync_record *r;
    char school[64];
    snprintf(school, sizeof school, "红星村小学%d班", i % 7);
    CHECK_OK(fieldsync_record_load(db, id, &r));
    CHECK_OK(fieldsync_set_text(r, "school", school));
    CHECK_OK(fieldsync_set_int(r, "grade", i % 12));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
}

static void save_visit(fieldsync_db *db, const char *child, int i)
{
    fieldsync_record *v;
    char note[128];
    snprintf(note, sizeof note, "第%d次走访：孩子情绪稳定，祖母按时接送。", i);
    CHECK_OK(fieldsync_record_new(db, "visit", &v));
    CHECK_OK(fieldsync_set_ref(v, "child", child));
    CHECK_OK(fieldsync_set_enum(v, "kind", "home_visit"));
    CHECK_OK(fieldsync_set_time(v, "visited_at", 1725235200 + i * 60));
    CHECK_OK(fieldsync_set_text(v, "concerns", note));
    CHECK_OK(fieldsync_record_save(v));
    snprintf(ids[n_ids++], sizeof ids[0], "%s", fieldsync_record_id(v));
    fieldsync_record_free(v);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint64_t seed = getenv("FS_PROXY_SEED") ? strtoull(getenv("FS_PROXY_SEED"), NULL, 10)
                                            : (uint64_t)time(NULL);
    printf("client_it_proxy: seed %llu (FS_PROXY_SEED=%llu reproduces the fault pattern)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    srv s;
    static const it_user users[] = {{"pa", "visitor", "V1"}, {"pb", "volunteer", "V1"}};
    it_world(&s, "it-proxy", users, 2);
    it_srv_start(&s);
    proxy p;
    pthread_t th;
    proxy_start(&p, s.port, seed, &th);
    srv via = s; /* the devices know only the proxy's address */
    snprintf(via.url, sizeof via.url, "ws://127.0.0.1:%d", p.port);
    fieldsync_db *a = it_device(&via, "pa", "a");
    fieldsync_db *b = it_device(&via, "pb", "b");

    fieldsync_sync_opts o = {.connect_timeout_ms = 3000, .reply_timeout_ms = 3000,
                             .first_batch = 2, .max_batch = 5};
    int made = 0, ok_a = 0, ok_b = 0;
    for (int round = 0; round < ROUNDS; round++) {
        save_child(a, round);
        made++;
        edit_child(a, kids[(round * 7) % n_kids], round); /* often an older child */
        made++;
        save_visit(a, kids[(round * 3) % n_kids], round);
        made++;
        fieldsync_sync_result r;
        ok_a += fieldsync_sync(a, &o, NULL, NULL, &r) == FIELDSYNC_OK;
        ok_b += fieldsync_sync(b, &o, NULL, NULL, &r) == FIELDSYNC_OK;
    }
    printf("through faults: %d rounds, A synced cleanly %d times, B %d; proxy: %u connections, "
           "%u cut mid-stream, %u stalled, %u delayed chunks\n",
           ROUNDS, ok_a, ok_b, p.conns, p.cuts, p.stalls, p.delays);
    CHECK(p.cuts > 10); /* the link really was hostile */

    /* the link heals: everything must come through, once */
    atomic_store(&p.faults, 0);
    fieldsync_sync_result r = it_sync(a);
    CHECK_INT(r.pending, ==, 0);
    CHECK_INT(r.refused, ==, 0);
    it_sync(b);
    it_sync(a);
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(a, &id));
    CHECK_INT(id.pending, ==, 0);
    CHECK_INT(id.refused, ==, 0);
    char hex[40];
    it_hex_id(id.device, hex);
    long long rows = it_sqlnum(s.db, "SELECT count(*) FROM log WHERE device = x'%s'", hex);
    long long distinct = it_sqlnum(s.db, "SELECT count(DISTINCT dseq) FROM log WHERE device = x'%s'", hex);
    long long maxseq = it_sqlnum(s.db, "SELECT max(dseq) FROM log WHERE device = x'%s'", hex);
    long long refused = it_sqlnum(s.db, "SELECT count(*) FROM refused WHERE device = x'%s'", hex);
    printf("server log: %lld changes of A (distinct dseq %lld, max %lld), %lld refused; made %d\n",
           rows, distinct, maxseq, refused, made);
    CHECK_INT(rows, ==, made);
    CHECK_INT(distinct, ==, made);
    CHECK_INT(maxseq, ==, made);
    CHECK_INT(refused, ==, 0);

    atomic_store(&p.stop, 1);
    pthread_join(th, NULL);
    close(p.listen_fd);
    fieldsync_close(a);
    fieldsync_close(b);
    it_srv_stop(&s); /* the server writes its field cache at exit */
    char pa[256], pb[256];
    it_dbpath(&s, "a", pa, sizeof pa);
    it_dbpath(&s, "b", pb, sizeof pb);
    static char sa[16384], sb[16384], ss[16384];
    for (int i = 0; i < n_ids; i++) {
        it_field_state(pa, ids[i], sa, sizeof sa);
        it_field_state(pb, ids[i], sb, sizeof sb);
        it_field_state(s.db, ids[i], ss, sizeof ss);
        CHECK(sa[0]);
        CHECK_STR(sa, sb);
        CHECK_STR(sa, ss);
    }
    it_rmdir(s.dir);
    printf("client_it_proxy: ok (%d records identical on both devices and the server)\n", n_ids);
    return 0;
}

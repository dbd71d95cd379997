/*
 * client_local_cancel.c — the sync session against peers that are not a fieldsync server,
 * on 127.0.0.1, through the public API:
 *   - a closed port: FIELDSYNC_ENETWORK at once, nothing lost from the outbox;
 *   - a port that accepts TCP but never answers the WebSocket handshake (a dead 2G link):
 *     fieldsync_cancel() from another thread stops fieldsync_sync within a second, and the
 *     connect timeout ends it on its own;
 *   - automatic mode against a closed port retries with growing back-off until cancelled.
 */
#include "check.h"
#include "client_local_support.h"
#include "fieldsync.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A listening socket that never accepts: the kernel completes TCP handshakes, nothing more. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(fd, (struct sockaddr *)&a, sizeof a));
    CHECK_OK(listen(fd, 16));
    socklen_t len = sizeof a;
    CHECK_OK(getsockname(fd, (struct sockaddr *)&a, &len));
    *port = ntohs(a.sin_port);
    return fd;
}

static int closed_port(void)
{
    int port;
    int fd = silent_listener(&port);
    close(fd);
    return port;
}

static fieldsync_db *open_with(const char *name, int port)
{
    char path[128], url[64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", port);
    fieldsync_db *db;
    CHECK_OK(fieldsync_open(path, NULL, &db));
    CHECK_OK(fieldsync_enrol(db, url, "0123456789abcdef0123456789abcdef", "token"));
    fieldsync_record *r;
    CHECK_OK(fieldsync_record_new(db, "child", &r));
    CHECK_OK(fieldsync_set_text(r, "name", "陈小龙"));
    CHECK_OK(fieldsync_set_text(r, "village", "v1"));
    CHECK_OK(fieldsync_record_save(r));
    fieldsync_record_free(r);
    return db;
}

typedef struct run {
    fieldsync_db *db;
    fieldsync_sync_opts o;
    bool auto_mode;
    int rc;
    _Atomic int waits;
    int max_attempt;
    int64_t last_wait;
    fieldsync_sync_result res;
} run;

static void progress(void *ctx, const fieldsync_progress *p)
{
    run *r = ctx;
    if (p->phase == FIELDSYNC_PHASE_WAIT) {
        r->waits++;
        if (p->attempt > r->max_attempt)
            r->max_attempt = p->attempt;
        r->last_wait = p->wait_ms;
        CHECK_INT(p->last_error, ==, FIELDSYNC_ENETWORK);
    }
}

static void *runner(void *arg)
{
    run *r = arg;
    r->rc = r->auto_mode ? fieldsync_sync_auto(r->db, &r->o, progress, r, &r->res)
                         : fieldsync_sync(r->db, &r->o, progress, r, &r->res);
    return NULL;
}

int main(void)
{
    cl_mkdir("client-cancel", dir, sizeof dir);

    /* closed port */
    fieldsync_db *db = open_with("closed.db", closed_port());
    int64_t t0 = now_ms();
    fieldsync_sync_result res;
    CHECK_INT(fieldsync_sync(db, NULL, NULL, NULL, &res), ==, FIELDSYNC_ENETWORK);
    CHECK(now_ms() - t0 < 10000); /* refused at once, not after the 15 s default timeout */
    CHECK(strstr(fieldsync_errmsg(db), "127.0.0.1"));
    fieldsync_identity id;
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.pending, ==, 1);
    fieldsync_close(db);

    /* silent peer: cancel from another thread */
    int port;
    int lfd = silent_listener(&port);
    db = open_with("silent.db", port);
    run r;
    memset(&r, 0, sizeof r);
    r.db = db;
    r.o.connect_timeout_ms = 30000;
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, runner, &r));
    usleep(300 * 1000);
    t0 = now_ms();
    fieldsync_cancel(db);
    CHECK_OK(pthread_join(th, NULL));
    CHECK_INT(r.rc, ==, FIELDSYNC_ECANCELLED);
    CHECK_INT(now_ms() - t0, <, 10000); /* the cancel, not the 30 s connect timeout */
    /* the cancel request was consumed: a timeout now ends the next attempt by itself */
    fieldsync_sync_opts o = {.connect_timeout_ms = 400};
    t0 = now_ms();
    CHECK_INT(fieldsync_sync(db, &o, NULL, NULL, NULL), ==, FIELDSYNC_ENETWORK);
    CHECK_INT(now_ms() - t0, <, 10000); /* the 400 ms timeout, not the 15 s default */
    CHECK(strstr(fieldsync_errmsg(db), "timed out"));
    /* a cancel before a sync starts makes it return at once */
    fieldsync_cancel(db);
    CHECK_INT(fieldsync_sync(db, NULL, NULL, NULL, NULL), ==, FIELDSYNC_ECANCELLED);
    fieldsync_close(db);
    close(lfd);

    /* automatic mode: back-off grows until cancelled */
    db = open_with("auto.db", closed_port());
    memset(&r, 0, sizeof r);
    r.db = db;
    r.auto_mode = true;
    r.o.backoff_min_ms = 20;
    r.o.backoff_max_ms = 200;
    CHECK_OK(pthread_create(&th, NULL, runner, &r));
    for (int i = 0; i < 600 && r.waits < 4; i++) /* 4 failed attempts (slow under ASan) */
        usleep(50 * 1000);
    fieldsync_cancel(db);
    CHECK_OK(pthread_join(th, NULL));
    CHECK_INT(r.rc, ==, FIELDSYNC_ECANCELLED);
    CHECK_INT(r.waits, >=, 4);
    CHECK_INT(r.max_attempt, >=, 4);
    CHECK_INT(r.last_wait, <=, 300); /* capped (200 ms) with jitter up to 1.5x */
    CHECK_OK(fieldsync_identity_get(db, &id));
    CHECK_INT(id.pending, ==, 1);
    fieldsync_close(db);

    cl_rmdir(dir);
    printf("client_local_cancel: ok\n");
    return 0;
}

/*
 * fault_auth.c — tokens and passwords at rest and under guessing.
 *
 *   - the store holds no token and no password in any form that can be replayed: the device
 *     table has a 32-byte BLAKE2b hash, the user table an argon2id string, and neither the
 *     token (whole, or its 43 secret characters) nor the password appears anywhere in the
 *     database or its WAL;
 *   - failed hellos are limited per address: with --hello-fails 3 the fourth hello from
 *     127.0.0.2 is refused unchecked, while 127.0.0.3 still gets in;
 *   - and per device: wrong tokens for ana from five addresses (3 each, 15 = 5 x 3) make the
 *     next hello for ana, with the RIGHT token from a fresh address, AUTH "too many failed
 *     hellos for this device"; bo is not affected; a flood of made-up device ids from a
 *     hundred more addresses does not push ana's entry out of the table; a warning is
 *     logged. Loopback addresses 127.0.0.x are all local, so each is a distinct peer.
 *
 * Constant-time comparison (sodium_memcmp of hashes, hashing even malformed tokens) is a
 * property of server/auth.c read by eye, not measured here: timing on a shared CI machine
 * is too noisy to mean anything.
 */
#include "check.h"
#include "fault_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connects from source address src (127.0.0.x) and upgrades to fieldsync.v1. */
static void connect_from(fsc *c, tenv *t, int port, const char *src)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    CHECK_OK(wire_codec_new(t->dicts, &c->codec));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    CHECK_INT(inet_pton(AF_INET, src, &me.sin_addr), ==, 1);
    CHECK_OK(bind(fd, (struct sockaddr *)&me, sizeof me));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(connect(fd, (struct sockaddr *)&sa, sizeof sa));
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /sync HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: fieldsync.v1\r\n\r\n",
                     port);
    CHECK_INT(send(fd, req, (size_t)n, MSG_NOSIGNAL), ==, n);
    /* read the 101 answer byte by byte: nothing after it arrives before our hello */
    char ans[1024];
    size_t k = 0;
    while (k < sizeof ans - 1) {
        ssize_t r = recv(fd, ans + k, 1, 0);
        CHECK_INT(r, ==, 1);
        k++;
        ans[k] = '\0';
        if (k >= 4 && !memcmp(ans + k - 4, "\r\n\r\n", 4))
            break;
    }
    CHECK(strstr(ans, " 101 ") != NULL);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    c->ws.fd = fd;
}

static char last[600]; /* the text of the last error */

/* hello with token; returns 0 (welcome) or the error code. */
static int hello_from(ft_world *w, const char *src, const enrolled *dev, const char *token)
{
    fsc c;
    connect_from(&c, &w->t, w->d.port, src);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_hello h = {.device = dev->device, .token = token, .token_len = (uint32_t)strlen(token),
                    .schema_version = 1, .client_hlc = t_hlc(), .agent = "t", .agent_len = 1};
    wire_pack_hello(&pk, &h);
    fsc_send(&c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    CHECK_OK(fsc_recv(&c, 5000));
    int rc = c.m.type == MSG_WELCOME ? 0 : c.err_code;
    snprintf(last, sizeof last, "%s", c.err_text);
    if (rc)
        CHECK(c.m.type == MSG_ERROR);
    fsc_close(&c);
    return rc;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *n = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

static bool file_has(const char *path, const char *needle)
{
    size_t n, k = strlen(needle);
    char *p = slurp(path, &n);
    bool found = false;
    for (size_t i = 0; p && i + k <= n && !found; i++)
        found = !memcmp(p + i, needle, k);
    free(p);
    return found;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    ft_world w;
    ft_world_init(&w, argc, argv);
    tenv *t = &w.t;
    static const char password[] = "长江 correct horse 2016";
    char out[1024];
    CHECK_INT(admin_run(t, out, sizeof out, password, "user", "password", "sue", NULL), ==, 0);
    daemon_start(t, &w.d, "--hello-fails", "3", NULL);

    /* ---- at rest ---- */
    char wal[400];
    snprintf(wal, sizeof wal, "%s-wal", t->db);
    const enrolled *devs[] = {&w.ana, &w.bo, &w.sue, &w.val, &w.oz, &w.tom};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        const char *tok = devs[i]->token;
        CHECK_INT(strlen(tok), ==, 47);
        CHECK(!file_has(t->db, tok) && !file_has(wal, tok));
        CHECK(!file_has(t->db, tok + 4) && !file_has(wal, tok + 4)); /* the secret part */
        char hex[40];
        ft_hex_id(devs[i]->id, hex);
        CHECK_INT(it_sqlnum(t->db, "SELECT length(token_hash) FROM srv_devices WHERE id = X'%s'",
                            hex),
                  ==, 32);
    }
    CHECK(!file_has(t->db, "correct horse") && !file_has(wal, "correct horse"));
    char stored[256];
    it_sql1(t->db, stored, sizeof stored, "SELECT password FROM srv_users WHERE name = 'sue'");
    CHECK(!strncmp(stored, "$argon2id$", 10));
    printf("at rest: 32-byte token hashes, password %.30s..., no secret in the files\n", stored);

    /* ---- per address ---- */
    char bad[64];
    snprintf(bad, sizeof bad, "%s", w.ana.token);
    bad[20] = bad[20] == 'x' ? 'y' : 'x';
    for (int i = 0; i < 3; i++)
        CHECK_INT(hello_from(&w, "127.0.0.2", &w.bo, bad), ==, WERR_AUTH);
    CHECK_INT(hello_from(&w, "127.0.0.2", &w.bo, w.bo.token), ==, WERR_AUTH); /* blocked */
    CHECK(strstr(last, "from this address") != NULL);
    CHECK_INT(hello_from(&w, "127.0.0.3", &w.bo, w.bo.token), ==, 0);
    printf("per address: 127.0.0.2 blocked after 3 failures, 127.0.0.3 served\n");

    /* ---- per device ---- */
    static const char *const srcs[] = {"127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7",
                                       "127.0.0.8"};
    for (int a = 0; a < 5; a++)
        for (int i = 0; i < 3; i++)
            CHECK_INT(hello_from(&w, srcs[a], &w.ana, bad), ==, WERR_AUTH);
    CHECK_INT(hello_from(&w, "127.0.0.9", &w.ana, w.ana.token), ==, WERR_AUTH);
    CHECK(strstr(last, "for this device") != NULL);
    CHECK_INT(hello_from(&w, "127.0.0.9", &w.bo, w.bo.token), ==, 0);
    /* made-up devices from a hundred more addresses do not flush ana's entry */
    for (int a = 0; a < 100; a++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.1.%d", a + 1);
        for (int i = 0; i < 3; i++) {
            enrolled ghost = w.ana;
            new_id(&ghost.device);
            CHECK_INT(hello_from(&w, src, &ghost, bad), ==, WERR_AUTH);
        }
    }
    CHECK_INT(hello_from(&w, "127.0.0.10", &w.ana, w.ana.token), ==, WERR_AUTH);
    CHECK(strstr(last, "for this device") != NULL);
    CHECK_INT(hello_from(&w, "127.0.0.10", &w.oz, w.oz.token), ==, 0);
    printf("per device: ana refused after 15 wrong tokens from 5 addresses; bo, oz served\n");
    CHECK_INT(daemon_stop(&w.d, SIGTERM), ==, 0);
    size_t n;
    char *log = slurp(w.d.log, &n);
    CHECK(log && strstr(log, "wrong tokens for device") != NULL);
    CHECK(strstr(log, w.ana.token) == NULL); /* tokens never logged */
    free(log);
    ft_world_done(&w);
    printf("fault_auth: ok\n");
    return 0;
}

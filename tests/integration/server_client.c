/*
 * server_client.c — the server tests' toolkit: daemon processes, admin commands, a raw-socket
 * WebSocket client and the fieldsync.v1 messages on top of it. See server_client.h.
 *
 * The WebSocket client implements just what RFC 6455 asks of a client: the upgrade request,
 * masked frames (any length, fragments), unmasked server frames, answering pings, and the
 * close frame's status code. Sockets are non-blocking and every wait is a poll() with a
 * deadline, so a server that stops answering fails the test instead of hanging it (CTest's
 * TIMEOUT is the last resort). Sending a large message keeps reading while it writes, so a
 * server that answers early (TOO_BIG) and closes is observed, not deadlocked.
 */
#define _GNU_SOURCE
#include "server_client.h"

#include "exit_check.h"

#include "hlc.h"
#include "mpr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                                                          \
    do {                                                                                   \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        abort();                                                                           \
    } while (0)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- environment ------------------------------------------------------------------ */

void tenv_init(tenv *t, int argc, char **argv)
{
    memset(t, 0, sizeof *t);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--bin"))
            t->bin = argv[i + 1];
    if (!t->bin)
        t->bin = getenv("FIELDSYNCD");
    if (!t->bin)
        FAIL("give the daemon with --bin PATH (or $FIELDSYNCD)");
    snprintf(t->dir, sizeof t->dir, "/tmp/fs-server-test-XXXXXX");
    if (!mkdtemp(t->dir))
        FAIL("mkdtemp: %s", strerror(errno));
    snprintf(t->db, sizeof t->db, "%s/fieldsync.db", t->dir);
    fs_error e = {0};
    const char *path = schema_default_path();
    if (schema_load(path, &t->s, &e))
        FAIL("schema: %s", e.msg);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    if (wire_dicts_load(dir, &t->dicts, &e))
        FAIL("dictionaries: %s", e.msg);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "test directory %s\n", t->dir);
}

void tenv_done(tenv *t)
{
    if (getenv("FS_KEEP")) { /* keep the directory and daemon logs for a look */
        fprintf(stderr, "kept %s\n", t->dir);
        schema_free(t->s);
        wire_dicts_free(t->dicts);
        return;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", t->dir);
    schema_free(t->s);
    wire_dicts_free(t->dicts);
}

/* ---- processes -------------------------------------------------------------------- */

void daemon_start(tenv *t, daemon_proc *d, ...)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = t->bin;
    argv[n++] = "--db";
    argv[n++] = t->db;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    va_list ap;
    va_start(ap, d);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 38)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    static int serial;
    snprintf(d->log, sizeof d->log, "%s/daemon-%d.log", t->dir, ++serial);
    int pfd[2];
    if (pipe(pfd))
        FAIL("pipe");
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        int lf = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lf >= 0)
            dup2(lf, 2);
        close(pfd[0]);
        execv(t->bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    d->pid = pid;
    char line[256];
    size_t len = 0;
    int64_t deadline = now_ms() + 15000;
    while (len < sizeof line - 1 && now_ms() < deadline) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(pfd[0], line + len, 1);
        if (r <= 0)
            break;
        if (line[len++] == '\n')
            break;
    }
    line[len] = '\0';
    close(pfd[0]);
    const char *pre = "fieldsyncd listening on 127.0.0.1:";
    if (strncmp(line, pre, strlen(pre))) {
        daemon_dump_log(d);
        FAIL("daemon did not say it listens; stdout was '%s'", line);
    }
    d->port = atoi(line + strlen(pre));
    if (d->port <= 0)
        FAIL("bad port in '%s'", line);
}

int daemon_stop(daemon_proc *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    int status = 0;
    int64_t deadline = now_ms() + 15000; /* the ASan build's leak check takes seconds */
    while (waitpid(d->pid, &status, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            daemon_dump_log(d);
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
            FAIL("daemon did not stop within 15 s of signal %d", sig);
        }
        usleep(10000);
    }
    pid_t pid = d->pid;
    d->pid = 0;
    /* only a SIGKILL the test sent may end it by signal: anything else (SIGABRT from
     * LeakSanitizer in the ASan build) or a sanitizer report in its log fails here */
    return xc_check("fieldsyncd", pid, status, d->log, sig == SIGKILL);
}

void daemon_dump_log(const daemon_proc *d)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s ----\n", d->log);
    char buf[512];
    while (fgets(buf, sizeof buf, f))
        fputs(buf, stderr);
    fclose(f);
}

int admin_run(tenv *t, char *out, size_t cap, const char *input, ...)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = t->bin;
    argv[n++] = "admin";
    argv[n++] = "--db";
    argv[n++] = t->db;
    va_list ap;
    va_start(ap, input);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 38)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int opipe[2], ipipe[2];
    if (pipe(opipe) || pipe(ipipe))
        FAIL("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(opipe[1], 1);
        dup2(ipipe[0], 0);
        close(opipe[0]);
        close(ipipe[1]);
        execv(t->bin, (char *const *)argv);
        _exit(127);
    }
    close(opipe[1]);
    close(ipipe[0]);
    if (input && write(ipipe[1], input, strlen(input)) < 0)
        FAIL("write stdin");
    close(ipipe[1]);
    size_t len = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(opipe[0], out && len < cap - 1 ? out + len : sink,
                     out && len < cap - 1 ? cap - 1 - len : sizeof sink)) > 0)
        if (out && len < cap - 1)
            len += (size_t)r;
    close(opipe[0]);
    if (out)
        out[len] = '\0';
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void json_field(const char *json, const char *key, char *val, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (!p)
        FAIL("no \"%s\" in %s", key, json);
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != '"' && n < cap - 1)
        val[n++] = *p++;
    val[n] = '\0';
}

void enrol(tenv *t, const char *user, enrolled *out)
{
    char buf[1024];
    int rc = admin_run(t, buf, sizeof buf, NULL, "--json", "device", "enrol", user, NULL);
    if (rc)
        FAIL("device enrol %s: exit %d: %s", user, rc, buf);
    json_field(buf, "device", out->id, sizeof out->id);
    json_field(buf, "token", out->token, sizeof out->token);
    if (rid_from_text(out->id, &out->device))
        FAIL("bad device id %s", out->id);
}

/* ---- WebSocket -------------------------------------------------------------------- */

static void in_reserve(wsc *c, size_t more)
{
    if (c->in_len + more <= c->in_cap)
        return;
    size_t cap = c->in_cap ? c->in_cap : 65536;
    while (cap < c->in_len + more)
        cap *= 2;
    c->in = realloc(c->in, cap);
    if (!c->in)
        FAIL("out of memory");
    c->in_cap = cap;
}

/* Reads what is available (waiting up to timeout_ms). 1 got bytes, 0 timeout, -1 closed. */
static int wsc_fill(wsc *c, int timeout_ms)
{
    if (c->fd < 0)
        return -1;
    struct pollfd p = {c->fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return 0;
    in_reserve(c, 65536);
    ssize_t n = recv(c->fd, c->in + c->in_len, 65536, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

int wsc_connect(wsc *c, int port, const char *path, const char *subproto)
{
    return wsc_connect_with(c, port, path, subproto, NULL);
}

int wsc_connect_with(wsc *c, int port, const char *path, const char *subproto,
                     const char *headers)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa))
        FAIL("connect 127.0.0.1:%d: %s", port, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    char req[1536];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s%s\r\n",
                     path, port, subproto ? "Sec-WebSocket-Protocol: " : "",
                     subproto ? subproto : "", subproto ? "\r\n" : "", headers ? headers : "");
    if (wsc_send_raw(c, req, (size_t)n))
        return 0;
    int64_t deadline = now_ms() + 5000;
    char *end = NULL;
    while (now_ms() < deadline) {
        in_reserve(c, 1);
        c->in[c->in_len] = '\0';
        if ((end = strstr((char *)c->in, "\r\n\r\n")))
            break;
        if (wsc_fill(c, 100) < 0)
            break;
    }
    if (!end) {
        c->closed = true;
        return 0;
    }
    int status = 0;
    sscanf((char *)c->in, "HTTP/1.1 %d", &status);
    size_t hdr = (size_t)(end + 4 - (char *)c->in);
    memmove(c->in, c->in + hdr, c->in_len - hdr);
    c->in_len -= hdr;
    return status;
}

int wsc_send_raw(wsc *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t off = 0;
    int64_t deadline = now_ms() + 30000;
    while (off < n) {
        if (now_ms() > deadline)
            FAIL("send stalled");
        struct pollfd pf = {c->fd, POLLOUT | POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        if (pf.revents & POLLIN) { /* keep reading so a server that answers is not blocked */
            if (wsc_fill(c, 0) < 0)
                return -1;
        }
        if (pf.revents & (POLLERR | POLLHUP))
            return -1;
        if (!(pf.revents & POLLOUT))
            continue;
        ssize_t w = send(c->fd, b + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

int wsc_send_frame(wsc *c, int opcode, const void *p, size_t n, bool fin)
{
    return wsc_send_partial(c, opcode | (fin ? 0x80 : 0), p, n, SIZE_MAX);
}

int wsc_send_partial(wsc *c, int opcode, const void *p, size_t n, size_t upto)
{
    /* bit 7 of opcode carries FIN for wsc_send_frame; a partial frame is always final */
    bool fin = (opcode & 0x80) || upto != SIZE_MAX;
    opcode &= 0x0f;
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (n < 126) {
        hdr[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(hdr + h, mask, 4);
    h += 4;
    uint8_t *buf = malloc(h + n + 1);
    if (!buf)
        FAIL("out of memory");
    memcpy(buf, hdr, h);
    const uint8_t *src = p;
    for (size_t i = 0; i < n; i++)
        buf[h + i] = src[i] ^ mask[i & 3];
    int rc = wsc_send_raw(c, buf, upto < h + n ? upto : h + n);
    free(buf);
    return rc;
}

/* Parses one frame from c->in if complete: 1 and fills the out-params, 0 if incomplete. */
static int parse_frame(wsc *c, int *op, bool *fin, size_t *off, size_t *len, size_t *total)
{
    if (c->in_len < 2)
        return 0;
    const uint8_t *b = c->in;
    *fin = b[0] & 0x80;
    *op = b[0] & 0x0f;
    bool masked = b[1] & 0x80;
    uint64_t n = b[1] & 0x7f;
    size_t h = 2;
    if (n == 126) {
        if (c->in_len < 4)
            return 0;
        n = (uint64_t)b[2] << 8 | b[3];
        h = 4;
    } else if (n == 127) {
        if (c->in_len < 10)
            return 0;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | b[2 + i];
        h = 10;
    }
    if (masked)
        FAIL("server frames must not be masked");
    if (c->in_len < h + n)
        return 0;
    *off = h;
    *len = (size_t)n;
    *total = h + (size_t)n;
    return 1;
}

int wsc_recv(wsc *c, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    c->msg_len = 0;
    for (;;) {
        int op;
        bool fin;
        size_t off, len, total;
        while (parse_frame(c, &op, &fin, &off, &len, &total)) {
            const uint8_t *pl = c->in + off;
            if (op == 0x8) {
                c->close_code = len >= 2 ? pl[0] << 8 | pl[1] : 1005;
                c->closed = true;
                memmove(c->in, c->in + total, c->in_len - total);
                c->in_len -= total;
                return -1;
            }
            if (op == 0x9) {
                uint8_t copy[125];
                size_t cl = len < sizeof copy ? len : sizeof copy;
                memcpy(copy, pl, cl);
                memmove(c->in, c->in + total, c->in_len - total);
                c->in_len -= total;
                wsc_send_frame(c, 0xA, copy, cl, true);
                continue;
            }
            if (op == 0xA) {
                memmove(c->in, c->in + total, c->in_len - total);
                c->in_len -= total;
                continue;
            }
            if (op != 0)
                c->msg_opcode = op;
            if (c->msg_len + len > c->msg_cap) {
                size_t cap = c->msg_cap ? c->msg_cap : 65536;
                while (cap < c->msg_len + len)
                    cap *= 2;
                c->msg = realloc(c->msg, cap);
                if (!c->msg)
                    FAIL("out of memory");
                c->msg_cap = cap;
            }
            memcpy(c->msg + c->msg_len, pl, len);
            c->msg_len += len;
            memmove(c->in, c->in + total, c->in_len - total);
            c->in_len -= total;
            if (fin)
                return 1;
        }
        if (c->closed)
            return -1;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        int r = wsc_fill(c, (int)(left > 100 ? 100 : left));
        if (r < 0) {
            c->closed = true;
            if (!c->close_code)
                c->close_code = 1006;
            return -1;
        }
    }
}

void wsc_close(wsc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->msg);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* ---- fieldsync.v1 ---------------------------------------------------------------- */

void fsc_connect(fsc *c, tenv *t, int port)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    if (wire_codec_new(t->dicts, &c->codec))
        FAIL("codec");
    int st = wsc_connect(&c->ws, port, "/sync", WIRE_SUBPROTOCOL);
    if (st != 101)
        FAIL("upgrade refused: HTTP %d", st);
}

void fsc_close(fsc *c)
{
    wsc_close(&c->ws);
    wire_codec_free(c->codec);
    free(c->m.body);
    memset(c, 0, sizeof *c);
}

int fsc_send(fsc *c, const void *body, size_t n)
{
    uint8_t *f;
    size_t fl;
    if (wire_frame_encode(c->codec, body, n, c->send_dict, 0, &f, &fl))
        FAIL("frame encode");
    return wsc_send_frame(&c->ws, 2, f, fl, true);
}

int fsc_send_fragmented(fsc *c, const void *body, size_t n, int parts)
{
    uint8_t *f;
    size_t fl;
    if (wire_frame_encode(c->codec, body, n, 0, 0, &f, &fl))
        FAIL("frame encode");
    size_t step = fl / (size_t)parts + 1, off = 0;
    for (int i = 0; off < fl; i++) {
        size_t len = fl - off < step ? fl - off : step;
        if (wsc_send_frame(&c->ws, i == 0 ? 2 : 0, f + off, len, off + len == fl))
            return -1;
        off += len;
    }
    return 0;
}

void push_body(msgpack_sbuffer *sb, uint64_t batch, change *ch, size_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    wire_pack_push_header(&pk, batch, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        if (change_sort_fields(&ch[i]))
            FAIL("duplicate field in a test change");
        change_pack(&pk, &ch[i], false);
    }
}

int fsc_recv(fsc *c, int timeout_ms)
{
    int r = wsc_recv(&c->ws, timeout_ms);
    if (r <= 0)
        return -1;
    if (c->ws.msg_opcode != 2)
        FAIL("server sent a non-binary message (opcode %d)", c->ws.msg_opcode);
    const uint8_t *body;
    size_t blen;
    int rc = wire_frame_decode(c->codec, c->ws.msg, c->ws.msg_len, WIRE_MAX_FRAME, &body, &blen);
    if (rc)
        FAIL("server frame does not decode: %s", fs_strerror(rc));
    free(c->m.body);
    c->m.body = malloc(blen + 1);
    memcpy(c->m.body, body, blen);
    c->m.len = blen;
    mpr_init(&c->m.r, c->m.body, blen);
    if (wire_read_type(&c->m.r, &c->m.type, &c->m.count))
        FAIL("server message has no type");
    if (c->m.type == MSG_ERROR) {
        wire_error we;
        fs_error e = {0};
        mpr r2 = c->m.r;
        if (wire_read_error(&r2, c->m.count, &we, &e))
            FAIL("bad error message: %s", e.msg);
        c->err_code = we.code;
        snprintf(c->err_text, sizeof c->err_text, "%.*s", (int)we.text_len, we.text);
        c->err_closes = we.closes;
    }
    return 0;
}

int fsc_open(fsc *c, tenv *t, int port, const enrolled *dev, uint32_t schema_version,
             uint32_t dict)
{
    fsc_connect(c, t, port);
    c->device = dev->device;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_hello h = {.device = dev->device,
                    .token = dev->token,
                    .token_len = (uint32_t)strlen(dev->token),
                    .schema_version = schema_version,
                    .client_hlc = t_hlc(),
                    .dict = dict,
                    .agent = "server_test/1",
                    .agent_len = 13};
    wire_pack_hello(&pk, &h);
    int rc = fsc_send(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc || fsc_recv(c, 5000))
        return -1;
    if (c->m.type == MSG_ERROR)
        return c->err_code;
    if (c->m.type != MSG_WELCOME)
        FAIL("expected welcome, got message %u", c->m.type);
    fs_error e = {0};
    if (wire_read_welcome(&c->m.r, c->m.count, &c->w, &e))
        FAIL("welcome: %s", e.msg);
    snprintf(c->user, sizeof c->user, "%.*s", (int)c->w.user_len, c->w.user);
    return 0;
}

void fsc_expect_error(fsc *c, int code, bool closes)
{
    for (;;) {
        if (fsc_recv(c, 5000))
            FAIL("expected error %s, but the connection %s (close %d)", wire_err_name(code),
                 c->ws.closed ? "closed" : "timed out", c->ws.close_code);
        if (c->m.type == MSG_ERROR)
            break;
        if (c->m.type != MSG_LEDGER)
            FAIL("expected error %s, got message type %u", wire_err_name(code), c->m.type);
    }
    if (c->err_code != code)
        FAIL("expected error %s, got %s: %s", wire_err_name(code), wire_err_name(c->err_code),
             c->err_text);
    if (c->err_closes != closes)
        FAIL("error %s: closes is %d, expected %d", wire_err_name(code), c->err_closes, closes);
    if (closes) {
        int r = wsc_recv(&c->ws, 5000);
        if (r != -1)
            FAIL("after error %s the server did not close (got %d)", wire_err_name(code), r);
    }
}

void fsc_ping(fsc *c, uint64_t nonce)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_ping(&pk, false, nonce);
    fsc_send(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (fsc_recv(c, 5000))
        FAIL("no pong");
    if (c->m.type != MSG_PONG)
        FAIL("expected pong, got %u (%s)", c->m.type, c->err_text);
    uint64_t got;
    fs_error e = {0};
    if (wire_read_ping(&c->m.r, c->m.count, &got, &e) || got != nonce)
        FAIL("pong nonce %llu, sent %llu", (unsigned long long)got, (unsigned long long)nonce);
}

int fsc_push(fsc *c, uint64_t batch, change *ch, size_t n, tres *res)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_push_header(&pk, batch, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        if (change_sort_fields(&ch[i]))
            FAIL("duplicate field in a test change");
        change_pack(&pk, &ch[i], false);
    }
    int rc = fsc_send(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        FAIL("push: connection gone");
    for (;;) {
        if (fsc_recv(c, 30000))
            FAIL("no push_result (connection %s)", c->ws.closed ? "closed" : "timed out");
        if (c->m.type == MSG_ERROR)
            return c->err_code;
        if (c->m.type == MSG_PUSH_RESULT)
            break;
        if (c->m.type != MSG_LEDGER)
            FAIL("expected push_result, got %u", c->m.type);
    }
    uint64_t b;
    uint32_t cnt;
    fs_error e = {0};
    if (wire_read_push_result(&c->m.r, c->m.count, &b, &cnt, &e))
        FAIL("push_result: %s", e.msg);
    if (b != batch || cnt != n)
        FAIL("push_result for batch %llu with %u results, expected %llu with %zu",
             (unsigned long long)b, cnt, (unsigned long long)batch, n);
    for (size_t i = 0; i < n; i++) {
        wire_result wr;
        if (wire_read_result(&c->m.r, &wr, &e))
            FAIL("result: %s", e.msg);
        res[i].dseq = wr.dseq;
        res[i].status = wr.status;
        res[i].code = wr.code;
        snprintf(res[i].text, sizeof res[i].text, "%.*s", (int)wr.text_len,
                 wr.text ? wr.text : "");
    }
    return 0;
}

int fsc_pull(fsc *c, uint64_t cursor, uint32_t max, tpull *out)
{
    memset(out, 0, sizeof *out);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    wire_pack_pull(&pk, cursor, max);
    fsc_send(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    for (;;) {
        if (fsc_recv(c, 30000))
            FAIL("no answer to pull (connection %s)", c->ws.closed ? "closed" : "timed out");
        if (c->m.type == MSG_ERROR)
            return c->err_code;
        if (c->m.type == MSG_CHANGES)
            break;
        if (c->m.type != MSG_LEDGER)
            FAIL("expected changes, got %u", c->m.type);
    }
    /* keep the body: the changes borrow it */
    out->body = c->m.body;
    out->len = c->m.len;
    c->m.body = NULL;
    fs_error e = {0};
    if (wire_read_changes(&c->m.r, c->m.count, &out->next, &out->more, &out->n, &e))
        FAIL("changes: %s", e.msg);
    out->ch = calloc(out->n ? out->n : 1, sizeof *out->ch);
    for (uint32_t i = 0; i < out->n; i++)
        if (change_unpack(&c->m.r, c->s ? c->s : c->t->s, true, &out->ch[i], &e))
            FAIL("changes[%u]: %s", i, e.msg);
    return 0;
}

void tpull_free(tpull *p)
{
    free(p->ch);
    free(p->body);
    memset(p, 0, sizeof *p);
}

size_t fsc_pull_all(fsc *c, uint64_t *cursor, store *replica)
{
    size_t total = 0;
    for (int rounds = 0; rounds < 10000; rounds++) {
        tpull p;
        int rc = fsc_pull(c, *cursor, 0, &p);
        if (rc)
            FAIL("pull from %llu: error %s: %s", (unsigned long long)*cursor, wire_err_name(rc),
                 c->err_text);
        if (replica && p.n) {
            apply_result *res = calloc(p.n, sizeof *res);
            fs_error e = {0};
            if (store_apply_batch(replica, p.ch, p.n, NULL, res, &e))
                FAIL("replica apply: %s", e.msg);
            free(res);
        }
        total += p.n;
        *cursor = p.next;
        bool more = p.more;
        tpull_free(&p);
        if (!more)
            return total;
    }
    FAIL("pull does not end");
}

/* ---- changes ---------------------------------------------------------------------- */

static hlc_clock g_clock;

uint64_t t_hlc(void)
{
    return hlc_now(&g_clock);
}

void new_id(rid_t *id)
{
    if (rid_new(id, (uint64_t)time(NULL) * 1000))
        FAIL("rid_new");
}

static change_field *add_field(change *c, const schema *s, const char *field,
                               const schema_field **fd)
{
    const schema_type *t = schema_type_by_id(s, c->type);
    *fd = t ? schema_field_by_name(t, field) : NULL;
    if (!*fd)
        FAIL("test bug: no field %s", field);
    if (c->n_fields >= CHANGE_MAX_FIELDS)
        FAIL("too many fields");
    change_field *cf = &c->fields[c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = (*fd)->num;
    return cf;
}

void ch_init(change *c, const schema *s, const char *type, const rid_t *rec, uint64_t hlc,
             uint64_t base, uint64_t dseq)
{
    memset(c, 0, offsetof(change, fields));
    const schema_type *t = schema_type_by_name(s, type);
    if (!t)
        FAIL("test bug: no type %s", type);
    c->type = t->id;
    c->record = *rec;
    c->hlc = hlc;
    c->base = base;
    c->dseq = dseq;
}

void ch_text(change *c, const schema *s, const char *field, const char *text)
{
    const schema_field *fd;
    change_field *cf = add_field(c, s, field, &fd);
    cf->v.kind = VAL_STR;
    cf->v.u.s.p = text;
    cf->v.u.s.len = (uint32_t)strlen(text);
}

void ch_int(change *c, const schema *s, const char *field, int64_t v)
{
    const schema_field *fd;
    change_field *cf = add_field(c, s, field, &fd);
    cf->v.kind = VAL_INT;
    cf->v.u.i = v;
}

void ch_enum(change *c, const schema *s, const char *field, const char *code)
{
    const schema_field *fd;
    change_field *cf = add_field(c, s, field, &fd);
    int i = schema_enum_by_code(fd, code);
    if (i < 0)
        FAIL("test bug: %s has no value %s", field, code);
    cf->v.kind = VAL_INT;
    cf->v.u.i = i;
}

void ch_bool(change *c, const schema *s, const char *field, bool v)
{
    const schema_field *fd;
    change_field *cf = add_field(c, s, field, &fd);
    cf->v.kind = VAL_BOOL;
    cf->v.u.b = v;
}

void ch_ref(change *c, const schema *s, const char *field, const rid_t *id)
{
    const schema_field *fd;
    change_field *cf = add_field(c, s, field, &fd);
    cf->v.kind = VAL_REF;
    cf->v.u.ref = *id;
}

void mk_child(change *c, const schema *s, const rid_t *id, const char *name,
              const char *village, uint64_t dseq)
{
    ch_init(c, s, "child", id, t_hlc(), 0, dseq);
    ch_text(c, s, "name", name);
    ch_text(c, s, "village", village);
}

void mk_visit(change *c, const schema *s, const rid_t *id, const rid_t *child, uint64_t dseq)
{
    ch_init(c, s, "visit", id, t_hlc(), 0, dseq);
    ch_ref(c, s, "child", child);
    ch_enum(c, s, "kind", "home_visit");
    ch_int(c, s, "visited_at", (int64_t)time(NULL));
}

static const schema_field *field_of(const schema *s, const char *type, const char *field)
{
    const schema_type *t = schema_type_by_name(s, type);
    const schema_field *f = t ? schema_field_by_name(t, field) : NULL;
    if (!f)
        FAIL("test bug: no field %s.%s", type, field);
    return f;
}

void field_text(store *st, const schema *s, const rid_t *rec, const char *type,
                const char *field, char *out, size_t cap)
{
    field_state fs;
    if (store_field_get(st, rec, field_of(s, type, field)->num, &fs))
        FAIL("no %s.%s in the store", type, field);
    if (fs.value.kind != VAL_STR)
        FAIL("%s.%s is not text", type, field);
    snprintf(out, cap, "%.*s", (int)fs.value.u.s.len, fs.value.u.s.p);
    field_state_destroy(&fs);
}

int64_t field_int(store *st, const schema *s, const rid_t *rec, const char *type,
                  const char *field)
{
    field_state fs;
    if (store_field_get(st, rec, field_of(s, type, field)->num, &fs))
        FAIL("no %s.%s in the store", type, field);
    int64_t v = fs.value.u.i;
    field_state_destroy(&fs);
    return v;
}

/* ---- HTTP ------------------------------------------------------------------------- */

int http_get(int port, const char *path, const char *method, char *out, size_t cap)
{
    int status = http_request(port, method ? method : "GET", path, NULL, NULL, out, cap);
    char *body = strstr(out, "\r\n\r\n");
    if (body)
        memmove(out, body + 4, strlen(body + 4) + 1);
    else
        out[0] = '\0';
    return status;
}

int http_request(int port, const char *method, const char *path, const char *headers,
                 const char *body, char *out, size_t cap)
{
    wsc c;
    memset(&c, 0, sizeof c);
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c.fd, (struct sockaddr *)&sa, sizeof sa))
        FAIL("connect: %s", strerror(errno));
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, port, headers ? headers : "", body ? strlen(body) : 0,
                     body ? body : "");
    CHECK(n > 0 && (size_t)n < sizeof req);
    wsc_send_raw(&c, req, (size_t)n);
    int64_t deadline = now_ms() + 5000;
    while (now_ms() < deadline && wsc_fill(&c, 100) >= 0) {
        in_reserve(&c, 1);
        c.in[c.in_len] = '\0';
        char *hend = strstr((char *)c.in, "\r\n\r\n");
        const char *cl = hend ? strcasestr((char *)c.in, "content-length:") : NULL;
        if (hend && cl && (size_t)(hend + 4 - (char *)c.in) + (size_t)atol(cl + 15) <= c.in_len)
            break;
    }
    in_reserve(&c, 1);
    c.in[c.in_len] = '\0';
    int status = 0;
    sscanf((char *)c.in, "HTTP/1.1 %d", &status);
    snprintf(out, cap, "%s", (char *)c.in);
    close(c.fd);
    free(c.in);
    return status;
}

/*
 * rawws.c — protocol steps shared by the raw-socket integration tests (see rawws.h).
 */
#include "rawws.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rawws_push_ok(fsc *c, change *ch, size_t n, tres *res)
{
    static uint64_t batch;
    int rc = fsc_push(c, ++batch, ch, n, res);
    if (rc) {
        fprintf(stderr, "push refused: %s %s\n", wire_err_name(rc), c->err_text);
        abort();
    }
}

void rawws_push_body(fsc *c, const void *body, size_t len, tres *res, uint32_t n)
{
    fsc_send(c, body, len);
    CHECK_OK(fsc_recv(c, 10000));
    rawws_read_push_result(c, res, n);
}

void rawws_read_push_result(fsc *c, tres *res, uint32_t n)
{
    if (c->m.type != MSG_PUSH_RESULT) {
        fprintf(stderr, "expected push_result, got %u (%s %s)\n", c->m.type,
                wire_err_name(c->err_code), c->err_text);
        abort();
    }
    uint64_t bt;
    uint32_t cnt;
    fs_error e = {0};
    CHECK_OK(wire_read_push_result(&c->m.r, c->m.count, &bt, &cnt, &e));
    CHECK_INT(cnt, ==, n);
    for (uint32_t i = 0; i < n; i++) {
        wire_result wr;
        CHECK_OK(wire_read_result(&c->m.r, &wr, &e));
        res[i].dseq = wr.dseq;
        res[i].status = wr.status;
        res[i].code = wr.code;
        snprintf(res[i].text, sizeof res[i].text, "%.*s", (int)wr.text_len,
                 wr.text ? wr.text : "");
    }
}

void rawws_pack_hello(msgpack_sbuffer *sb, const rid_t *dev, const char *token,
                      uint32_t version, uint64_t client_hlc, const char *agent)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    wire_hello h = {.device = *dev, .token = token, .token_len = (uint32_t)strlen(token),
                    .schema_version = version, .client_hlc = client_hlc, .agent = agent,
                    .agent_len = (uint32_t)strlen(agent)};
    wire_pack_hello(&pk, &h);
}

void rawws_send_hello(fsc *c, const rid_t *dev, const char *token, uint32_t version,
                      uint64_t client_hlc, const char *agent)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    rawws_pack_hello(&sb, dev, token, version, client_hlc, agent);
    fsc_send(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

void bystander_sync(bystander *by, const schema *s)
{
    rid_t id;
    new_id(&id);
    change ch;
    mk_child(&ch, s, &id, "旁观", "V1", ++by->dseq);
    tres res;
    rawws_push_ok(&by->c, &ch, 1, &res);
    CHECK_RES(res, 0, 0);
    fsc_pull_all(&by->c, &by->cursor, NULL);
    fsc_ping(&by->c, by->dseq);
}

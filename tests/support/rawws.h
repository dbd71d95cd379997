/*
 * rawws.h — protocol steps shared by the raw-socket integration tests (server_test.c,
 * fault_hostile.c): pushes of a hand-made MessagePack body with the push_result read back,
 * a pushed batch that must be answered, a hello with chosen fields, the result check, and
 * the bystander session that keeps syncing between attacks.
 *
 * Why here and not in server_client.c: server_client.c is the raw WebSocket client and the
 * protocol layer every raw test links; these are the steps that two or more test files had
 * written out again (server_test.c and the fault_* tests use them).
 *
 * Built as an OBJECT library (tests/support/CMakeLists.txt) on top of
 * tests/integration/server_client.h: a binary that links it must also compile
 * server_client.c. Every helper that fails prints why and aborts (tests/check.h); none keeps
 * a pointer to what it is given past the call (every argument is borrowed).
 */
#ifndef FS_TEST_RAWWS_H
#define FS_TEST_RAWWS_H

#include "server_client.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Aborts unless result r has status st and code cd; prints the dseq, both and the text. */
#define CHECK_RES(r, st, cd)                                                               \
    do {                                                                                   \
        if ((r).status != (st) || (r).code != (cd)) {                                      \
            fprintf(stderr, "%s:%d: dseq %llu: status %d code %s (%s), expected %d %s\n",   \
                    __FILE__, __LINE__, (unsigned long long)(r).dseq, (r).status,          \
                    fs_errname((r).code), (r).text, (st), fs_errname(cd));                 \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Pushes ch[0..n) as one batch (numbered from a counter of the binary) and fills res[n];
 * aborts, with the code and text, if an error message comes instead of push_result. */
void rawws_push_ok(fsc *c, change *ch, size_t n, tres *res);

/* Sends body (len bytes of MessagePack, sent as it is: it may be a push no correct client
 * would build) and reads the push_result that must answer it: exactly n results into res.
 * Aborts on any other answer. */
void rawws_push_body(fsc *c, const void *body, size_t len, tres *res, uint32_t n);
/* The push_result just received on c (c->m): exactly n results into res. Aborts, with the
 * code and text, on any other message. */
void rawws_read_push_result(fsc *c, tres *res, uint32_t n);

/* Packs a hello of device dev with token, schema version, client clock and agent (all
 * borrowed) into sb (initialised by the caller, who destroys it). */
void rawws_pack_hello(msgpack_sbuffer *sb, const rid_t *dev, const char *token,
                      uint32_t version, uint64_t client_hlc, const char *agent);
/* The same hello, sent on c (the answer is left for the caller to read). */
void rawws_send_hello(fsc *c, const rid_t *dev, const char *token, uint32_t version,
                      uint64_t client_hlc, const char *agent);

/* Another device that keeps working between the attacks: each bystander_sync pushes one new
 * child in V1 (must be accepted), pulls to the end and pings, so a daemon that a hostile
 * peer wedged or crashed fails the test there. Open c first (by.dseq starts at 0). */
typedef struct bystander {
    fsc c;
    uint64_t dseq;   /* the last dseq it pushed */
    uint64_t cursor; /* where its pulls have got to */
} bystander;

void bystander_sync(bystander *by, const schema *s);

#endif

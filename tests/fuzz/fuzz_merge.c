/*
 * fuzz_merge — decode-then-merge: the bytes are a sequence of full-form changes (as in a
 * changes message); every change that decodes is applied to an authority store and to a
 * replica store, as the server and a device would. Nothing may crash, and the replica must
 * accept whatever the authority accepted without error.
 */
#include "fuzz_common.h"

#include "change.h"
#include "mpr.h"
#include "store.h"

#include <string.h>

#define FUZZ_MAX_CHANGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static change cs[FUZZ_MAX_CHANGES];
    static apply_result res[FUZZ_MAX_CHANGES], res2[FUZZ_MAX_CHANGES];
    const schema *sc = fuzz_schema_get();
    mpr r;
    mpr_init(&r, data, size);
    size_t n = 0;
    while (n < FUZZ_MAX_CHANGES && mpr_left(&r) > 0) {
        if (change_unpack(&r, sc, true, &cs[n], NULL) == 0) {
            n++;
            continue;
        }
        if (mpr_skip(&r, MPR_MAX_DEPTH))
            break;
    }
    if (!n)
        return 0;
    store *a = NULL, *b = NULL;
    fs_error e;
    if (store_open(":memory:", sc, STORE_AUTHORITY, &a, &e) ||
        store_open(":memory:", sc, STORE_REPLICA, &b, &e))
        abort();
    if (store_apply_batch(a, cs, n, NULL, res, &e) || store_apply_batch(b, cs, n, NULL, res2, &e))
        abort();
    /* what the authority accepted, a replica applies in reverse order without complaint */
    for (size_t i = n; i-- > 0;) {
        if (res[i].status != APPLY_ACCEPTED)
            continue;
        apply_result one;
        if (store_apply_batch(b, &cs[i], 1, NULL, &one, &e))
            abort();
    }
    store_close(a);
    store_close(b);
    return 0;
}

/*
 * fuzz_schema — the schema loader on arbitrary text: it must reject or accept, never crash,
 * leak or loop.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    schema *s = NULL;
    fs_error e;
    if (size > 65536)
        return 0;
    if (schema_load_mem("fuzz.yaml", (const char *)data, size, &s, &e) == 0)
        schema_free(s);
    return 0;
}

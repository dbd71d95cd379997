/*
 * fuzz_common.h — shared set-up for the fuzz targets: the schema and dictionaries are loaded
 * once per process (they are inputs' context, not inputs).
 */
#ifndef FS_FUZZ_COMMON_H
#define FS_FUZZ_COMMON_H

#include "schema.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline schema *fuzz_schema_get(void)
{
    static schema *s;
    if (!s) {
        fs_error e;
        if (schema_load(FS_SCHEMA_DIR "/fieldsync.yaml", &s, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            abort();
        }
    }
    return s;
}

static inline wire_dicts *fuzz_dicts_get(void)
{
    static wire_dicts *d;
    if (!d) {
        fs_error e;
        if (wire_dicts_load(FS_SCHEMA_DIR, &d, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            abort();
        }
    }
    return d;
}

#endif

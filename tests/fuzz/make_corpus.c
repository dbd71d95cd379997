/*
 * make_corpus — writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/):
 * real frames of every message type, real changes, and the shipped schema. Run by hand after
 * a wire or schema change: make_corpus OUTDIR. The output is small and checked in.
 */
#include "change.h"
#include "hlc.h"
#include "schema.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void put(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void set_field(const schema_type *t, change *c, const char *name, fs_value v)
{
    const schema_field *f = schema_field_by_name(t, name);
    if (!f) {
        fprintf(stderr, "no field %s\n", name);
        exit(1);
    }
    c->fields[c->n_fields].num = f->num;
    c->fields[c->n_fields].v = v;
    c->n_fields++;
}

static fs_value text(const char *s)
{
    fs_value v = {.kind = VAL_STR};
    v.u.s.p = s;
    v.u.s.len = (uint32_t)strlen(s);
    return v;
}

static fs_value num(int64_t i)
{
    fs_value v = {.kind = VAL_INT};
    v.u.i = i;
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus OUTDIR\n");
        return 1;
    }
    schema *s;
    fs_error e;
    if (schema_load(FS_SCHEMA_DIR "/fieldsync.yaml", &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    wire_dicts *d;
    wire_codec *codec;
    if (wire_dicts_load(FS_SCHEMA_DIR, &d, &e) || wire_codec_new(d, &codec))
        return 1;
    char dir_frame[4096], dir_merge[4096], dir_schema[4096];
    snprintf(dir_frame, sizeof dir_frame, "%s/frame", argv[1]);
    snprintf(dir_merge, sizeof dir_merge, "%s/merge", argv[1]);
    snprintf(dir_schema, sizeof dir_schema, "%s/schema", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(dir_frame, 0755);
    mkdir(dir_merge, 0755);
    mkdir(dir_schema, 0755);

    uint64_t now = hlc_make((uint64_t)1764374400000ULL, 0);
    rid_t dev, child_id, visit_id;
    rid_new(&dev, 1764374400000ULL);
    rid_new(&child_id, 1764374400001ULL);
    rid_new(&visit_id, 1764374400002ULL);
    static change cs[3];
    const schema_type *child = schema_type_by_name(s, "child");
    const schema_type *visit = schema_type_by_name(s, "visit");
    change *c = &cs[0];
    c->type = child->id;
    c->record = child_id;
    c->hlc = now + 1;
    c->dseq = 1;
    c->device = dev;
    c->author = "li.wei";
    c->author_len = 6;
    set_field(child, c, "name", text("王小明"));
    set_field(child, c, "village", text("hx-01"));
    fs_value risk = num(1);
    set_field(child, c, "risk_level", risk);
    change_sort_fields(c);
    c = &cs[1];
    *c = cs[0];
    c->n_fields = 0;
    c->hlc = now + 2;
    c->base = now + 1;
    c->dseq = 2;
    set_field(child, c, "risk_level", num(2));
    c = &cs[2];
    *c = cs[0];
    c->n_fields = 0;
    c->type = visit->id;
    c->record = visit_id;
    c->hlc = now + 3;
    c->dseq = 3;
    fs_value ref = {.kind = VAL_REF};
    ref.u.ref = child_id;
    set_field(visit, c, "child", ref);
    set_field(visit, c, "kind", num(0));
    set_field(visit, c, "visited_at", num(1764374400));
    set_field(visit, c, "concerns", text("奶奶腿脚不便，孩子放学后独自在家。"));
    change_sort_fields(c);
    for (int i = 0; i < 3; i++)
        if (change_validate(s, &cs[i], &e)) {
            fprintf(stderr, "seed change %d invalid: %s\n", i, e.msg);
            return 1;
        }

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* merge corpus: the three changes in full form */
    for (int i = 0; i < 3; i++)
        change_pack(&pk, &cs[i], true);
    put(dir_merge, "three-changes", sb.data, sb.size);

    struct {
        const char *name;
        int kind;
    } msgs[] = {{"hello", 0}, {"welcome", 1}, {"push", 2},  {"push_result", 3},
                {"pull", 4},  {"changes", 5}, {"subscribe", 6}, {"ledger", 7},
                {"ping", 8},  {"error", 9}, {"push-abbrev", 10}};
    for (size_t m = 0; m < sizeof msgs / sizeof msgs[0]; m++) {
        sb.size = 0;
        switch (msgs[m].kind) {
        case 0: {
            wire_hello h = {.device = dev, .token = "fs1_example", .token_len = 11,
                            .schema_version = 1, .client_hlc = now, .acked_dseq = 2,
                            .cursor = 10, .dict = 1, .agent = "fieldsync/0.1", .agent_len = 13};
            wire_pack_hello(&pk, &h);
            break;
        }
        case 1: {
            wire_welcome w = {.server_hlc = now, .server_dseq = 2, .schema_version = 1,
                              .max_frame = WIRE_MAX_FRAME, .max_batch = WIRE_MAX_BATCH,
                              .dict = 1, .user = "li.wei", .user_len = 6, .log_end = 99};
            wire_pack_welcome(&pk, &w);
            break;
        }
        case 2:
            wire_pack_push_header(&pk, 7, 3);
            for (int i = 0; i < 3; i++)
                change_pack(&pk, &cs[i], false);
            break;
        case 3: {
            wire_pack_push_result_header(&pk, 7, 3);
            wire_result r0 = {.dseq = 1, .status = 0}, r1 = {.dseq = 2, .status = 1},
                        r2 = {.dseq = 3, .status = 2, .code = FS_ESCOPE,
                              .text = "outside scope", .text_len = 13};
            wire_pack_result(&pk, &r0);
            wire_pack_result(&pk, &r1);
            wire_pack_result(&pk, &r2);
            break;
        }
        case 4: wire_pack_pull(&pk, 10, 500); break;
        case 5:
            wire_pack_changes_header(&pk, 13, false, 3);
            for (int i = 0; i < 3; i++)
                change_pack(&pk, &cs[i], true);
            break;
        case 6: wire_pack_subscribe(&pk, "cq-wx"); break;
        case 7:
            wire_pack_ledger_header(&pk, 13, "hx-01");
            change_pack(&pk, &cs[2], true);
            break;
        case 8: wire_pack_ping(&pk, false, 42); break;
        case 9: wire_pack_error(&pk, WERR_AUTH, "unknown device token", true); break;
        case 10: /* record ids abbreviated to 9 bytes (protocol §3.1) */
            wire_pack_push_header(&pk, 8, 3);
            for (int i = 0; i < 3; i++) {
                change ab = cs[i];
                ab.abbrev = true;
                change_pack(&pk, &ab, false);
            }
            break;
        }
        uint8_t *f;
        size_t n;
        char name[64];
        wire_frame_encode(codec, sb.data, sb.size, 0, 0, &f, &n);
        snprintf(name, sizeof name, "%s-raw", msgs[m].name); /* no frame header (§2) */
        put(dir_frame, name, f, n);
        if (m < 3) { /* the 2-byte header form of a raw frame, read too */
            static uint8_t hdr[1 << 12];
            if (sb.size + 2 <= sizeof hdr) {
                hdr[0] = hdr[1] = 0;
                memcpy(hdr + 2, sb.data, sb.size);
                snprintf(name, sizeof name, "%s-raw-header", msgs[m].name);
                put(dir_frame, name, hdr, sb.size + 2);
            }
        }
        if (wire_dicts_latest(d)) {
            wire_frame_encode(codec, sb.data, sb.size, wire_dicts_latest(d), 0, &f, &n);
            snprintf(name, sizeof name, "%s-zstd", msgs[m].name);
            put(dir_frame, name, f, n);
        }
    }
    FILE *sf = fopen(FS_SCHEMA_DIR "/fieldsync.yaml", "rb");
    static char buf[1 << 16];
    size_t sn = sf ? fread(buf, 1, sizeof buf, sf) : 0;
    if (sf)
        fclose(sf);
    put(dir_schema, "fieldsync.yaml", buf, sn);
    msgpack_sbuffer_destroy(&sb);
    wire_codec_free(codec);
    wire_dicts_free(d);
    schema_free(s);
    printf("corpus written to %s\n", argv[1]);
    return 0;
}

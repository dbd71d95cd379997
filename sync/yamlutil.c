/*
 * yamlutil.c — the libyaml helpers of the start-up loaders (contracts in yamlutil.h).
 *
 * Each complaint names the line of the node it is about: libyaml keeps a start_mark on every
 * node of a loaded document, so the loaders parse the whole file first and check it after,
 * rather than checking while events stream past. The messages here are the ones the schema
 * and ledger tests compare byte for byte; a loader that words a problem differently passes
 * its own text (nan_msg, bad_entry_msg) instead of adding a variant here.
 */
#include "yamlutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs a parser that the caller has given its input; fills y on success. */
static int load(yamlutil_doc *y, yaml_parser_t *parser)
{
    int ok = yaml_parser_load(parser, &y->doc);
    if (!ok) {
        int rc = fs_error_set(y->err, FS_ESCHEMA, "%s:%lu: %s", y->file,
                              (unsigned long)parser->problem_mark.line + 1,
                              parser->problem ? parser->problem : "YAML syntax error");
        yaml_parser_delete(parser);
        memset(&y->doc, 0, sizeof y->doc);
        return rc;
    }
    yaml_parser_delete(parser);
    if (!yaml_document_get_root_node(&y->doc)) {
        yaml_document_delete(&y->doc);
        memset(&y->doc, 0, sizeof y->doc);
        return fs_error_set(y->err, FS_ESCHEMA, "%s:1: the file is empty", y->file);
    }
    return 0;
}

int yamlutil_load_mem(yamlutil_doc *y, const char *name, const char *text, size_t len,
                      fs_error *err)
{
    yaml_parser_t parser;
    memset(y, 0, sizeof *y);
    y->file = name;
    y->err = err;
    if (!yaml_parser_initialize(&parser))
        return FS_ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    return load(y, &parser);
}

int yamlutil_load_file(yamlutil_doc *y, const char *path, fs_error *err)
{
    yaml_parser_t parser;
    memset(y, 0, sizeof *y);
    y->file = path;
    y->err = err;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fs_error_set(err, FS_ESCHEMA, "%s:0: cannot open: %s", path, strerror(errno));
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return FS_ENOMEM;
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load(y, &parser);
    fclose(f);
    return rc;
}

int yamlutil_done(yamlutil_doc *y, int rc)
{
    yaml_document_delete(&y->doc); /* a zeroed document (failed load) holds nothing */
    memset(&y->doc, 0, sizeof y->doc);
    if (rc == FS_ENOMEM)
        fs_error_set(y->err, FS_ENOMEM, "%s: out of memory", y->file);
    return rc;
}

int yamlutil_fail(yamlutil_doc *y, const yaml_node_t *n, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fs_error_set(y->err, FS_ESCHEMA, "%s:%lu: %s", y->file,
                 n ? (unsigned long)n->start_mark.line + 1 : 0ul, why);
    return FS_ESCHEMA;
}

yaml_node_t *yamlutil_node(yamlutil_doc *y, int id) { return yaml_document_get_node(&y->doc, id); }

const char *yamlutil_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

char *yamlutil_dupstr(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int yamlutil_int(yamlutil_doc *y, const yaml_node_t *v, int64_t lo, int64_t hi,
                 const char *nan_msg, int64_t *out)
{
    const char *s = yamlutil_scalar(v);
    if (!s || !*s)
        return yamlutil_fail(y, v, "%s", nan_msg ? nan_msg : "expected an integer");
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end || errno) {
        if (nan_msg)
            return yamlutil_fail(y, v, "%s", nan_msg);
        return yamlutil_fail(y, v, "expected an integer, found '%s'", s);
    }
    if (x < lo || x > hi)
        return yamlutil_fail(y, v, "%lld is outside %lld..%lld", x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

int yamlutil_label(yamlutil_doc *y, const yaml_node_t *v, const char *bad_entry_msg, char **zh,
                   char **en)
{
    if (v->type != YAML_MAPPING_NODE)
        return yamlutil_fail(y, v, "label must be a mapping {zh: ..., en: ...}");
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yamlutil_node(y, p->key), *x = yamlutil_node(y, p->value);
        const char *ks = yamlutil_scalar(k), *xs = yamlutil_scalar(x);
        char **dst = ks && !strcmp(ks, "zh") ? zh : ks && !strcmp(ks, "en") ? en : NULL;
        if (!ks || !xs)
            return yamlutil_fail(y, k, "%s", bad_entry_msg ? bad_entry_msg
                                                           : "label entries must be text");
        if (!dst) {
            if (bad_entry_msg)
                return yamlutil_fail(y, k, "%s", bad_entry_msg);
            return yamlutil_fail(y, k, "unknown label language '%s' (use zh or en)", ks);
        }
        free(*dst);
        if (!(*dst = yamlutil_dupstr(xs)))
            return FS_ENOMEM;
    }
    return 0;
}

/*
 * yamlutil.h — the libyaml helpers shared by the start-up loaders: the record schema
 * (sync/schema.c) and the supervisor ledger configuration (sync/ledgercfg.c).
 *
 * Both loaders parse a whole file into a libyaml document, walk its nodes, and stop at the
 * first problem with "file:line: reason" (FS_ESCHEMA), the line being that of the offending
 * key or value. This module holds what they share: parsing (with the same message on a
 * syntax error or an empty file), the complaint itself, and readers of scalars, integers and
 * labels. It deliberately knows no key of either file: what a key means stays in its loader,
 * and so do messages that only one loader uses.
 *
 * Ownership: the caller owns the yamlutil_doc (usually on its stack); yamlutil_load_* fill
 * it and yamlutil_done releases what they allocated. Node pointers and scalar strings
 * borrow from the document (valid until yamlutil_done). yamlutil_dupstr and yamlutil_label
 * return new strings (free with free()). A document is used by one thread at a time; the
 * loaders run once at start-up, so clarity beats speed here.
 */
#ifndef FS_YAMLUTIL_H
#define FS_YAMLUTIL_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

typedef struct yamlutil_doc {
    yaml_document_t doc; /* the parsed file (owned; released by yamlutil_done) */
    const char *file;    /* the name used in messages (borrowed from the caller) */
    fs_error *err;       /* where the first problem is reported (borrowed; may be NULL) */
} yamlutil_doc;

/* Parses text (len bytes; name is used in messages) into y. Returns 0 with a document that
 * has a root node; FS_ESCHEMA with err->msg "name:line: <libyaml's problem>" or
 * "name:1: the file is empty" (nothing to release then); FS_ENOMEM if libyaml cannot start
 * (no message). Borrows name and err (valid until yamlutil_done). */
int yamlutil_load_mem(yamlutil_doc *y, const char *name, const char *text, size_t len,
                      fs_error *err);

/* The same, reading the file at path through stdio (no size cap); a file that will not open
 * is FS_ESCHEMA "path:0: cannot open: <strerror>". */
int yamlutil_load_file(yamlutil_doc *y, const char *path, fs_error *err);

/* Releases the document (after a failed load too) and passes rc through; when rc is
 * FS_ENOMEM it sets err->msg to "file: out of memory". */
int yamlutil_done(yamlutil_doc *y, int rc);

/* Reports "file:line: <fmt ...>" for node n (line 0 when n is NULL) into y->err, the reason
 * cut at 159 bytes. Returns FS_ESCHEMA. */
int yamlutil_fail(yamlutil_doc *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The node with this id (borrowed from the document), or NULL. */
yaml_node_t *yamlutil_node(yamlutil_doc *y, int id);

/* The text of a scalar node (borrowed, NUL-terminated), or NULL when n is NULL or not a
 * scalar. */
const char *yamlutil_scalar(const yaml_node_t *n);

/* A copy of s (returns new, free with free()); NULL when s is NULL or memory ran out. */
char *yamlutil_dupstr(const char *s);

/* Reads v as a base-10 integer in lo..hi into *out. Errors (FS_ESCHEMA, at v): not an
 * integer (empty, not a scalar, other text, outside int64): nan_msg when given, else
 * "expected an integer" (empty or not a scalar) or "expected an integer, found 'TEXT'";
 * outside lo..hi: "X is outside LO..HI". *out is set only on success. */
int yamlutil_int(yamlutil_doc *y, const yaml_node_t *v, int64_t lo, int64_t hi,
                 const char *nan_msg, int64_t *out);

/* Reads label: {zh: TEXT, en: TEXT} (either may be missing) into *zh and *en, replacing
 * (and freeing) what they held: each is new, free with free(). Errors (FS_ESCHEMA): v not a
 * mapping: "label must be a mapping {zh: ..., en: ...}"; a bad entry (key or value not
 * text, key neither zh nor en): bad_entry_msg when given, else "label entries must be
 * text" or "unknown label language 'KEY' (use zh or en)"; FS_ENOMEM. On error the caller
 * still owns (and frees) whatever *zh and *en hold. */
int yamlutil_label(yamlutil_doc *y, const yaml_node_t *v, const char *bad_entry_msg, char **zh,
                   char **en);

#endif

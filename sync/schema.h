/*
 * schema.h — the record types, loaded from schema/fieldsync.yaml (format: docs/schema-format.md).
 *
 * The schema is data, not code: every type, field, value kind, enum value and conflict rule
 * the engine knows comes from the file. The loader reports the first problem as
 * "file:line: reason" and returns FS_ESCHEMA; a loaded schema is immutable and may be shared
 * read-only between threads.
 */
#ifndef FS_SCHEMA_H
#define FS_SCHEMA_H

#include "err.h"

#include <stdbool.h>
#include <stdint.h>

#define SCHEMA_MAX_TYPES 127
#define SCHEMA_MAX_FIELDS 255
#define SCHEMA_MAX_ENUM 64
#define SCHEMA_MAX_ROLES 16

typedef enum field_kind {
    KIND_TEXT, KIND_INT, KIND_DATE, KIND_TIME, KIND_ENUM, KIND_BOOL, KIND_REF, KIND_SET, KIND_SCOPE
} field_kind;

typedef enum field_rule {
    RULE_LWW, RULE_REVIEW, RULE_ESCALATE, RULE_WORKFLOW, RULE_SET, RULE_IMMUTABLE
} field_rule;

typedef struct enum_value {
    char *code;  /* ascii identifier, as in the file */
    char *zh;    /* Chinese label (may be NULL) */
    char *en;    /* English label (may be NULL) */
    uint32_t roles; /* roles that may set this value (bit per role); 0 = any writer */
    int since;      /* schema version that added this value (1 if not given) */
} enum_value;

typedef struct schema_field {
    char *name;
    uint8_t num;            /* 1..255, the wire's field number */
    field_kind kind;
    field_rule rule;
    bool required;
    bool scope_from;        /* ref: the record's scope is the referenced record's */
    uint32_t max_len;       /* text / scope */
    int64_t min, max;       /* int */
    int ref_type;           /* ref: type id */
    uint32_t n_values;      /* enum / set */
    enum_value *values;
    uint32_t priv_roles;    /* escalate: lower_roles; workflow: reopen_roles (bit per role) */
    char *label_zh, *label_en;
    int line;               /* line in the file, for messages */
    int since;              /* schema version that added this field (1 if not given) */
} schema_field;

typedef struct schema_type {
    char *name;
    uint8_t id;             /* 1..127 */
    bool append_only;
    uint32_t write_roles;   /* bit per role */
    char *label_zh, *label_en;
    uint32_t n_fields;
    schema_field *fields;   /* in file order */
    schema_field *by_num[256]; /* borrowed pointers into fields, NULL where unused */
    int scope_field;        /* num of the KIND_SCOPE field or of a scope_from ref, or 0 */
    int since;              /* schema version that added this type (1 if not given) */
} schema_type;

typedef struct schema {
    int version;
    uint32_t n_roles;
    char *roles[SCHEMA_MAX_ROLES];
    uint32_t review_roles;  /* roles whose change resolves an open review item */
    uint32_t n_types;
    schema_type *types;     /* in file order */
    schema_type *by_id[128];
    char *path;
} schema;

/* Loads and checks path. Returns 0 and *out (new, free with schema_free), or FS_ESCHEMA with
 * err->msg "path:line: reason", or FS_ENOMEM. */
int schema_load(const char *path, schema **out, fs_error *err);

/* Loads from memory (name is used in messages). Same contract as schema_load. */
int schema_load_mem(const char *name, const char *text, size_t len, schema **out, fs_error *err);

void schema_free(schema *s); /* accepts NULL */

/* Default schema file: $FIELDSYNC_SCHEMA, else FS_SCHEMA_DIR "/fieldsync.yaml". Static. */
const char *schema_default_path(void);

const schema_type *schema_type_by_id(const schema *s, int id);
const schema_type *schema_type_by_name(const schema *s, const char *name);
const schema_field *schema_field_by_num(const schema_type *t, int num);
const schema_field *schema_field_by_name(const schema_type *t, const char *name);
int schema_role_by_name(const schema *s, const char *name); /* index or -1 */
int schema_enum_by_code(const schema_field *f, const char *code); /* index or -1 */
const char *schema_kind_name(field_kind k);
const char *schema_rule_name(field_rule r);

#endif

/* test_schema — the loader accepts the shipped schema and rejects bad ones with file:line. */
#include "check.h"
#include "schema.h"

static void expect_bad(const char *text, const char *want_in_msg)
{
    schema *s = NULL;
    fs_error e = {0};
    int rc = schema_load_mem("bad.yaml", text, strlen(text), &s, &e);
    if (rc != FS_ESCHEMA || !strstr(e.msg, want_in_msg)) {
        fprintf(stderr, "want FS_ESCHEMA with '%s', got %d '%s'\n", want_in_msg, rc, e.msg);
        abort();
    }
    CHECK(s == NULL);
}

#define HEAD "schema: fieldsync\nversion: 1\nroles: [visitor, supervisor]\ntypes:\n"

int main(void)
{
    schema *s = NULL;
    fs_error e = {0};
    int rc = schema_load(schema_default_path(), &s, &e);
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    CHECK_OK(rc);
    CHECK_INT(s->version, >=, 1);
    const schema_type *child = schema_type_by_name(s, "child");
    CHECK(child);
    CHECK(!child->append_only);
    const schema_field *risk = schema_field_by_name(child, "risk_level");
    CHECK(risk && risk->rule == RULE_ESCALATE && risk->kind == KIND_ENUM);
    CHECK(risk->priv_roles & (1u << schema_role_by_name(s, "supervisor")));
    CHECK(!(risk->priv_roles & (1u << schema_role_by_name(s, "visitor"))));
    CHECK(schema_field_by_num(child, risk->num) == risk);
    const schema_type *visit = schema_type_by_name(s, "visit");
    CHECK(visit && visit->append_only);
    CHECK(visit->scope_field);
    CHECK(schema_field_by_num(visit, visit->scope_field)->scope_from);
    const schema_type *report = schema_type_by_name(s, "report");
    const schema_field *st = schema_field_by_name(report, "status");
    CHECK(st->rule == RULE_WORKFLOW);
    CHECK_INT(schema_enum_by_code(st, "reported"), ==, 0);
    CHECK_INT(schema_enum_by_code(st, "closed"), ==, (int)st->n_values - 1);
    schema_free(s);

    expect_bad("schema: fieldsync\nversion: [1\n", "bad.yaml:");
    expect_bad(HEAD "  - name: child\n    id: 1\n    fields:\n"
                    "      - {name: a, num: 1, kind: txt, rule: lww}\n",
               "bad.yaml:8: unknown kind 'txt'");
    expect_bad(HEAD "  - name: child\n    id: 1\n    fields:\n"
                    "      - {name: a, num: 1, kind: text, max_len: 5, rule: lww}\n"
                    "      - {name: b, num: 1, kind: bool, rule: lww}\n",
               "bad.yaml:9: field num 1 used twice");
    expect_bad(HEAD "  - name: child\n    id: 1\n    fields:\n"
                    "      - {name: a, num: 1, kind: bool, rule: escalate}\n",
               "bad.yaml:8: rule escalate needs kind enum");
    expect_bad(HEAD "  - name: child\n    id: 1\n    fields:\n"
                    "      - {name: a, num: 1, kind: ref, ref: nosuch, rule: lww}\n",
               "ref to unknown type 'nosuch'");
    expect_bad(HEAD "  - name: child\n    id: 1\n    fields:\n"
                    "      - {name: a, num: 1, kind: enum, values: [x], rule: escalate,"
                    " lower_roles: [boss]}\n",
               "unknown role 'boss'");
    expect_bad(HEAD "  - name: child\n    id: 1\n    requried: true\n    fields:\n"
                    "      - {name: a, num: 1, kind: bool, rule: lww}\n",
               "bad.yaml:7: unknown type key 'requried'");
    expect_bad(HEAD "  - name: child\n    id: 1\n    fields:\n"
                    "      - {name: a, num: 1, kind: text, rule: lww}\n",
               "needs max_len");
    expect_bad("", "empty");
    rc = schema_load("/nonexistent/x.yaml", &s, &e);
    CHECK_INT(rc, ==, FS_ESCHEMA);
    CHECK(strstr(e.msg, "/nonexistent/x.yaml:0: cannot open"));
    printf("schema: ok\n");
    return 0;
}

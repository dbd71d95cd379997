/*
 * merge.h — the conflict rules, each in one place, as pure functions on one field's state.
 *
 * The store (store.c) loads a field's state, calls merge_field() for each field of an incoming
 * change, and writes the state back; devices and the server run this same code. Rules
 * (docs/conflict-rules.md explains why each fits its record type):
 *
 *   lww, review, immutable  winner = greatest (hlc, device id, dseq); version = winner's hlc.
 *                           review additionally reports a race: the change's base is older
 *                           than the current version, the current value came from another
 *                           device, and the values differ. The store opens a review item.
 *   escalate, workflow      ordered enums. The state keeps M, the greatest base seen, and the
 *                           candidates: changes whose hlc is above M (no change seen so far
 *                           was made by someone who saw them). The value is the highest
 *                           candidate. A change that saw the current version supersedes what
 *                           it saw; concurrent ones resolve to the higher (furthest along).
 *   set                     add-wins observed-remove: per value, the greatest add clock and
 *                           the greatest base of a remove; present iff add clock > remove base.
 *
 * Every state is a function of the SET of changes applied, not of their order, so replicas
 * converge (tests/property/prop_converge.c). Whether a change is accepted at all (lowering
 * without the role, reopen on a stale base, modifying an immutable field) is the authority's
 * decision at arrival: merge_field() checks it only when asked to (authority = true).
 */
#ifndef FS_MERGE_H
#define FS_MERGE_H

#include "change.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct merge_cand {
    uint64_t hlc;
    rid_t dev;
    uint64_t dseq;
    int64_t level;
    char author[CHANGE_MAX_AUTHOR + 1];
} merge_cand;

typedef struct field_state {
    bool present;          /* any change applied to this field yet */
    fs_value value;        /* visible value; VAL_STR points into str (owned) */
    char *str;             /* owned copy of a text value */
    uint64_t version;      /* greatest hlc applied: what an author "saw" */
    uint64_t whlc;         /* clock, device and dseq of the change that set the value */
    rid_t wdev;
    uint64_t wseq;
    char author[CHANGE_MAX_AUTHOR + 1];
    /* escalate, workflow */
    uint64_t max_base;     /* M */
    uint32_t n_cands, cap_cands;
    merge_cand *cands;     /* owned */
    /* set: setc[i] = greatest add clock of value i, setc[64 + i] = greatest remove base;
     * allocated (128 entries) by the first set change, NULL for other rules */
    uint64_t *setc;
} field_state;

typedef struct merge_out {
    bool changed;          /* the visible value changed */
    bool race;             /* review rule: a concurrent different value (open a review item) */
    fs_value old_value;    /* the value before (for the review item): its text is old_str
                              when the merge replaced it, else borrowed from the state
                              (valid until that state changes again) */
    uint64_t old_hlc;
    rid_t old_dev;
    char old_author[CHANGE_MAX_AUTHOR + 1];
    char *old_str;         /* owned: the replaced text, moved out of the state */
} merge_out;

void field_state_init(field_state *st);
void field_state_destroy(field_state *st); /* frees owned memory; st may be reused after init */

/* Makes dst a deep copy of src (dst's previous contents are freed). Returns 0 or FS_ENOMEM
 * (dst is then empty). */
int field_state_copy(field_state *dst, const field_state *src);
void merge_out_destroy(merge_out *o);

/* Whether the authority refuses field value v of change c on state st (read only): an enum
 * value the role may not set (FS_EROLE), a lowering or reopening without the role
 * (FS_EROLE) or on a stale base (FS_ESTALE), with e filled; 0 when merge_field with
 * authority = true would accept it. Lets the store refuse a change as a whole before it
 * merges any of its fields. */
int merge_check(const schema *s, const schema_field *f, const field_state *st, const change *c,
                const fs_value *v, fs_error *e);

/* Applies field value v of change c to st under field f's rule. authority: refuse what the
 * authority refuses (merge_check: FS_EROLE / FS_ESTALE with e filled, st unchanged).
 * Returns 0 or a negative fs_err; FS_ENOMEM leaves st unchanged. out is filled on success
 * (destroy with merge_out_destroy; also harmless after an error). */
int merge_field(const schema *s, const schema_field *f, field_state *st, const change *c,
                const fs_value *v, bool authority, merge_out *out, fs_error *e);

/* Serialises the rule-specific part of st (candidates, set clocks) to pk; nothing for
 * lww-like rules. merge_aux_unpack is its inverse (returns FS_EDEC_* on bad bytes). */
int merge_aux_pack(msgpack_packer *pk, const schema_field *f, const field_state *st);
int merge_aux_unpack(const schema_field *f, field_state *st, const void *buf, size_t len);

/* Copies a value into st as its visible value (text is copied). */
int field_state_set_value(field_state *st, const fs_value *v);

#endif

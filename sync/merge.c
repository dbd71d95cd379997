/*
 * merge.c — the conflict rules. See merge.h for the rules and why they commute.
 *
 * Ordering of changes for lww: (hlc, device id bytes, dseq), greatest wins. Two changes can
 * share an hlc only when they come from different devices (a device's clock is strictly
 * increasing), so the device id decides; dseq only separates a device that was restored from
 * an old backup and reissued clocks.
 */
#include "merge.h"

#include "mpr.h"

#include <stdlib.h>
#include <string.h>

void field_state_init(field_state *st) { memset(st, 0, sizeof *st); }

void field_state_destroy(field_state *st)
{
    if (!st)
        return;
    free(st->str);
    free(st->cands);
    free(st->setc);
    memset(st, 0, sizeof *st);
}

int field_state_copy(field_state *dst, const field_state *src)
{
    field_state_destroy(dst);
    *dst = *src;
    dst->str = NULL;
    dst->cands = NULL;
    dst->cap_cands = 0;
    dst->setc = NULL;
    if (src->str) {
        size_t n = strlen(src->str) + 1;
        if (src->value.kind == VAL_STR)
            n = src->value.u.s.len + 1;
        if (!(dst->str = malloc(n)))
            goto nomem;
        memcpy(dst->str, src->str, n);
        if (dst->value.kind == VAL_STR)
            dst->value.u.s.p = dst->str;
    }
    if (src->n_cands) {
        if (!(dst->cands = malloc(src->n_cands * sizeof *dst->cands)))
            goto nomem;
        memcpy(dst->cands, src->cands, src->n_cands * sizeof *dst->cands);
        dst->cap_cands = src->n_cands;
    }
    if (src->setc) {
        if (!(dst->setc = malloc(128 * sizeof *dst->setc)))
            goto nomem;
        memcpy(dst->setc, src->setc, 128 * sizeof *dst->setc);
    }
    return 0;
nomem:
    field_state_destroy(dst);
    return FS_ENOMEM;
}

static int setc_ensure(field_state *st)
{
    if (!st->setc && !(st->setc = calloc(128, sizeof *st->setc)))
        return FS_ENOMEM;
    return 0;
}

void merge_out_destroy(merge_out *o)
{
    if (o) {
        free(o->old_str);
        o->old_str = NULL;
    }
}

static int copy_value(fs_value *dst, char **owned, const fs_value *src)
{
    free(*owned);
    *owned = NULL;
    *dst = *src;
    if (src->kind == VAL_STR) {
        *owned = malloc(src->u.s.len + 1);
        if (!*owned)
            return FS_ENOMEM;
        memcpy(*owned, src->u.s.p, src->u.s.len);
        (*owned)[src->u.s.len] = '\0';
        dst->u.s.p = *owned;
    }
    return 0;
}

int field_state_set_value(field_state *st, const fs_value *v)
{
    return copy_value(&st->value, &st->str, v);
}

static int order_cmp(uint64_t h1, const rid_t *d1, uint64_t s1, uint64_t h2, const rid_t *d2,
                     uint64_t s2)
{
    if (h1 != h2)
        return h1 < h2 ? -1 : 1;
    int c = rid_cmp(d1, d2);
    if (c)
        return c;
    return s1 < s2 ? -1 : s1 > s2;
}

static void set_author(char *dst, const change *c)
{
    uint32_t n = c->author_len > CHANGE_MAX_AUTHOR ? CHANGE_MAX_AUTHOR : c->author_len;
    if (n)
        memcpy(dst, c->author, n);
    dst[n] = '\0';
}

static void set_winner(field_state *st, const change *c)
{
    st->whlc = c->hlc;
    st->wdev = c->device;
    st->wseq = c->dseq;
    set_author(st->author, c);
}

static int64_t level_of(const fs_value *v) { return v->kind == VAL_INT ? v->u.i : -1; }

/* Greatest candidate by (level, hlc, device, dseq). */
static const merge_cand *best_cand(const field_state *st)
{
    const merge_cand *b = NULL;
    for (uint32_t i = 0; i < st->n_cands; i++) {
        const merge_cand *x = &st->cands[i];
        if (!b || x->level > b->level ||
            (x->level == b->level &&
             order_cmp(x->hlc, &x->dev, x->dseq, b->hlc, &b->dev, b->dseq) > 0))
            b = x;
    }
    return b;
}

/* The level the field would show once c is merged (merge_ordered without the writes). */
static int64_t level_after(const field_state *st, const change *c, const fs_value *v)
{
    uint64_t m = c->base > st->max_base ? c->base : st->max_base;
    int64_t best = c->hlc > m ? level_of(v) : INT64_MIN;
    for (uint32_t i = 0; i < st->n_cands; i++)
        if (st->cands[i].hlc > m && st->cands[i].level > best)
            best = st->cands[i].level;
    return best;
}

static int merge_ordered(field_state *st, const change *c, const fs_value *v)
{
    uint64_t m = c->base > st->max_base ? c->base : st->max_base;
    /* prune what the new M supersedes */
    uint32_t k = 0;
    for (uint32_t i = 0; i < st->n_cands; i++)
        if (st->cands[i].hlc > m)
            st->cands[k++] = st->cands[i];
    st->n_cands = k;
    st->max_base = m;
    if (c->hlc > m) {
        for (uint32_t i = 0; i < st->n_cands; i++)
            if (st->cands[i].hlc == c->hlc && !rid_cmp(&st->cands[i].dev, &c->device) &&
                st->cands[i].dseq == c->dseq)
                goto chosen; /* already a candidate */
        if (st->n_cands == st->cap_cands) {
            uint32_t cap = st->cap_cands ? st->cap_cands * 2 : 4;
            merge_cand *nc = realloc(st->cands, cap * sizeof *nc);
            if (!nc)
                return FS_ENOMEM;
            st->cands = nc;
            st->cap_cands = cap;
        }
        merge_cand *x = &st->cands[st->n_cands++];
        x->hlc = c->hlc;
        x->dev = c->device;
        x->dseq = c->dseq;
        x->level = level_of(v);
        set_author(x->author, c);
        /* keep candidates in (hlc, device, dseq) order: the stored state (merge_aux_pack,
         * store_state_hash) must not depend on the order the changes arrived in */
        for (uint32_t j = st->n_cands - 1;
             j > 0 && order_cmp(st->cands[j - 1].hlc, &st->cands[j - 1].dev,
                                st->cands[j - 1].dseq, st->cands[j].hlc, &st->cands[j].dev,
                                st->cands[j].dseq) > 0;
             j--) {
            merge_cand tmp = st->cands[j - 1];
            st->cands[j - 1] = st->cands[j];
            st->cands[j] = tmp;
        }
    }
chosen:;
    const merge_cand *b = best_cand(st);
    if (!b) /* cannot happen: the change with the greatest base has hlc above it */
        return 0;
    fs_value nv = {.kind = b->level < 0 ? VAL_NIL : VAL_INT};
    nv.u.i = b->level < 0 ? 0 : b->level;
    st->value = nv;
    st->whlc = b->hlc;
    st->wdev = b->dev;
    st->wseq = b->dseq;
    memcpy(st->author, b->author, sizeof st->author);
    return 0;
}

static int merge_set(field_state *st, const change *c, const fs_value *v)
{
    if (setc_ensure(st))
        return FS_ENOMEM;
    uint64_t mask = 0, *add_hlc = st->setc, *rm_base = st->setc + 64;
    for (int i = 0; i < 64; i++) {
        if (v->kind == VAL_SET) {
            if ((v->u.set.add >> i & 1) && c->hlc > add_hlc[i])
                add_hlc[i] = c->hlc;
            if ((v->u.set.rm >> i & 1) && c->base > rm_base[i])
                rm_base[i] = c->base;
        }
        if (add_hlc[i] > rm_base[i])
            mask |= 1ull << i;
    }
    st->value.kind = VAL_SET;
    st->value.u.set.add = mask;
    st->value.u.set.rm = 0;
    if (!st->present || order_cmp(c->hlc, &c->device, c->dseq, st->whlc, &st->wdev, st->wseq) > 0)
        set_winner(st, c);
    return 0;
}

int merge_check(const schema *s, const schema_field *f, const field_state *st, const change *c,
                const fs_value *v, fs_error *e)
{
    if (f->kind == KIND_ENUM && v->kind == VAL_INT) {
        uint32_t roles = f->values[v->u.i].roles;
        if (roles && !(roles & (1u << c->role)))
            return fs_error_set(e, FS_EROLE, "role '%s' may not set %s to '%s'",
                                s->roles[c->role], f->name, f->values[v->u.i].code);
    }
    if (st->present && (f->rule == RULE_ESCALATE || f->rule == RULE_WORKFLOW) &&
        level_of(v) < level_of(&st->value)) {
        const char *what = f->rule == RULE_ESCALATE ? "lower" : "reopen (move back)";
        bool priv = f->priv_roles & (1u << c->role);
        /* A change below the current level made without seeing it (base older) is a
         * concurrent raise / forward move: it only lowers if merging it would lower the
         * visible level. */
        if (!priv && level_after(st, c, v) < level_of(&st->value))
            return fs_error_set(e, FS_EROLE, "role '%s' may not %s %s", s->roles[c->role], what,
                                f->name);
        if (priv && c->base < st->version)
            return fs_error_set(e, FS_ESTALE,
                                "%s was changed since you looked at it: look again, then %s",
                                f->name, what);
    }
    return 0;
}

int merge_field(const schema *s, const schema_field *f, field_state *st, const change *c,
                const fs_value *v, bool authority, merge_out *out, fs_error *e)
{
    memset(out, 0, sizeof *out);
    int rc;
    if (authority && (rc = merge_check(s, f, st, c, v, e)))
        return rc;
    /* remember the old value for change detection and review items: borrowed from st while
     * st keeps it, moved into out->old_str (not copied) when the merge replaces it */
    out->old_hlc = st->whlc;
    out->old_dev = st->wdev;
    memcpy(out->old_author, st->author, sizeof out->old_author);
    bool was_present = st->present;
    out->old_value = st->value;

    switch (f->rule) {
    case RULE_LWW:
    case RULE_REVIEW:
    case RULE_IMMUTABLE:
        if (f->rule == RULE_REVIEW && was_present && c->base < st->version &&
            rid_cmp(&st->wdev, &c->device) && !value_equal(&st->value, v))
            out->race = true;
        if (!was_present ||
            order_cmp(c->hlc, &c->device, c->dseq, st->whlc, &st->wdev, st->wseq) > 0) {
            if (st->value.kind == VAL_STR) { /* old_value points into st->str: keep it */
                out->old_str = st->str;
                st->str = NULL;
            }
            if ((rc = copy_value(&st->value, &st->str, v))) {
                /* st unchanged: give its text back */
                if (out->old_str) {
                    st->str = out->old_str;
                    out->old_str = NULL;
                }
                st->value = out->old_value;
                return rc;
            }
            set_winner(st, c);
        }
        break;
    case RULE_ESCALATE:
    case RULE_WORKFLOW:
        /* values are enum levels (never text): st->str, if any, is left alone */
        if ((rc = merge_ordered(st, c, v)))
            return rc;
        break;
    case RULE_SET:
        if ((rc = merge_set(st, c, v)))
            return rc;
        break;
    }
    st->present = true;
    if (c->hlc > st->version)
        st->version = c->hlc;
    out->changed = !was_present || !value_equal(&out->old_value, &st->value);
    return 0;
}

int merge_aux_pack(msgpack_packer *pk, const schema_field *f, const field_state *st)
{
    int rc = 0;
    if (f->rule == RULE_ESCALATE || f->rule == RULE_WORKFLOW) {
        rc |= msgpack_pack_array(pk, 2);
        rc |= msgpack_pack_uint64(pk, st->max_base);
        rc |= msgpack_pack_array(pk, st->n_cands);
        for (uint32_t i = 0; i < st->n_cands; i++) {
            const merge_cand *x = &st->cands[i];
            size_t alen = strlen(x->author);
            rc |= msgpack_pack_array(pk, 5);
            rc |= msgpack_pack_uint64(pk, x->hlc);
            rc |= msgpack_pack_bin(pk, 16);
            rc |= msgpack_pack_bin_body(pk, x->dev.b, 16);
            rc |= msgpack_pack_uint64(pk, x->dseq);
            rc |= msgpack_pack_int64(pk, x->level);
            rc |= msgpack_pack_str(pk, alen);
            rc |= msgpack_pack_str_body(pk, x->author, alen);
        }
    } else if (f->rule == RULE_SET) {
        uint32_t n = 0;
        const uint64_t *sc = st->setc;
        for (int i = 0; sc && i < 64; i++)
            n += sc[i] || sc[64 + i];
        rc |= msgpack_pack_array(pk, n);
        for (int i = 0; sc && i < 64; i++) {
            if (!sc[i] && !sc[64 + i])
                continue;
            rc |= msgpack_pack_array(pk, 3);
            rc |= msgpack_pack_uint8(pk, (uint8_t)i);
            rc |= msgpack_pack_uint64(pk, sc[i]);
            rc |= msgpack_pack_uint64(pk, sc[64 + i]);
        }
    }
    return rc ? FS_ENOMEM : 0;
}

int merge_aux_unpack(const schema_field *f, field_state *st, const void *buf, size_t len)
{
    mpr r;
    uint32_t n, m;
    int rc;
    mpr_init(&r, buf, len);
    if (f->rule == RULE_ESCALATE || f->rule == RULE_WORKFLOW) {
        if ((rc = mpr_array(&r, 2, &n)) || n != 2 || (rc = mpr_u64(&r, &st->max_base)) ||
            (rc = mpr_array(&r, 1u << 20, &n)))
            return rc ? rc : FS_EDEC_COUNT;
        if (n > st->cap_cands) {
            merge_cand *nc = realloc(st->cands, n * sizeof *nc);
            if (!nc)
                return FS_ENOMEM;
            st->cands = nc;
            st->cap_cands = n;
        }
        for (uint32_t i = 0; i < n; i++) {
            merge_cand *x = &st->cands[i];
            const uint8_t *b;
            const char *a;
            uint32_t bl, al;
            if ((rc = mpr_array(&r, 5, &m)) || m != 5 || (rc = mpr_u64(&r, &x->hlc)) ||
                (rc = mpr_bin(&r, 16, &b, &bl)) || bl != 16 || (rc = mpr_u64(&r, &x->dseq)) ||
                (rc = mpr_i64(&r, &x->level)) || (rc = mpr_str(&r, CHANGE_MAX_AUTHOR, &a, &al)))
                return rc ? rc : FS_EDEC_COUNT;
            memcpy(x->dev.b, b, 16);
            memcpy(x->author, a, al);
            x->author[al] = '\0';
        }
        st->n_cands = n;
    } else if (f->rule == RULE_SET) {
        if ((rc = mpr_array(&r, 64, &n)))
            return rc;
        if (setc_ensure(st))
            return FS_ENOMEM;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t bit;
            if ((rc = mpr_array(&r, 3, &m)) || m != 3 || (rc = mpr_u32_max(&r, 63, &bit)) ||
                (rc = mpr_u64(&r, &st->setc[bit])) || (rc = mpr_u64(&r, &st->setc[64 + bit])))
                return rc ? rc : FS_EDEC_COUNT;
        }
    }
    return 0;
}

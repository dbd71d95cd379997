/*
 * bench_apply — how many changes per second the store applies, against what SQLite itself
 * can write on the same disk.
 *
 * The workload is a week of field work: ~N/20 children are created first (timed apart, not
 * counted in the figure), then N single-field edits of lww fields of those children (school
 * in Chinese text, grade, guardian type, category, status) arrive from up to 400 devices
 * (80% visitors, 15% social workers, 5% supervisors, whose changes also run the statement that
 * closes review items), each device with its own gap-free device sequence, every change with a
 * greater hybrid clock than the one before; one edit in ten was made offline (its base is the
 * create, not the field's last version). The edits are applied with store_apply_batch() in batches of B to a
 * fresh file-backed store (WAL, synchronous=NORMAL: store_open's default, which its raw
 * reference below uses too; fieldsyncd and the SDK commit with FULL, measured by bench_ingest
 * and bench_device against a FULL raw reference), once as the
 * authority (the server: sequence checks, role checks, refusal memory) and once as a replica
 * (a device applying what the server accepted). Only the store_apply_batch() calls are timed
 * (CLOCK_MONOTONIC); building the change structs is not.
 *
 * The physical reference is SQLite alone: N rows of exactly the encoded size of each change
 * (the full-form body the log stores), into a table with an INTEGER PRIMARY KEY, in a fresh
 * file with the same PRAGMAs, in transactions of B rows with one reused prepared statement.
 * The store can never beat that; the target is at least a third of it and 150,000 changes/s.
 *
 * Deliberately not measured here: decoding from the wire (change_unpack), compression, and
 * the server's authorize / on_commit callbacks (none are passed). The workload is generated
 * from a fixed seed so that two runs apply the same changes. Every result must be ACCEPTED,
 * otherwise the run fails: a benchmark of refusals would measure the wrong path.
 *
 * --sql-profile adds, per store, where the edits' time goes statement by statement (COMMIT
 * writes the WAL; the automatic checkpoints that follow are timed apart through a WAL hook
 * that does what SQLite's default one does). "written/change" is the bytes the
 * process passed to write(2) during the timed calls (/proc/self/io wchar), divided by N;
 * "cpu/chg" the process's CPU time (user + sys, getrusage) during them, divided by N: unlike
 * the rates it is not skewed by other processes on a loaded machine.
 *
 * --store-sql runs extra SQL on each store's connection after store_open, to try an
 * optimisation (a PRAGMA, an index dropped) before changing the engine.
 *
 * Usage: bench_apply [--changes N] [--batch B] [--dir DIR] [--mode authority|replica|both]
 *                    [--quick] [--sql-profile] [--perf-ctl FIFO] [--store-sql SQL] [--help]
 */
#include "change.h"
#include "err.h"
#include "harness.h"
#include "hlc.h"
#include "rid.h"
#include "schema.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TARGET_CHANGES_PER_S 150000.0
#define TARGET_RAW_FRACTION (1.0 / 3.0)
#define EDITS_PER_CHILD 20
#define CHILDREN_PER_DEVICE 25
#define MAX_DEVICES 400
#define SEED 20160325u /* the day the policy was issued: any fixed value will do */

/* ---- options ------------------------------------------------------------------------- */

typedef struct options {
    long changes;
    long batch;
    const char *dir;
    bool authority, replica;
    bool sql_profile;
    const char *store_sql; /* experiments: extra SQL on each store's connection, or NULL */
} options;

/* --devices: how many devices the edits come from (0 = one per 25 children) */
static uint32_t g_devices;
/* --perf-ctl: perf record's control FIFO (perf record -D -1 --control fifo:PATH): the
 * profile is enabled around the edits' store_apply_batch calls only, or NULL */
static const char *g_perf_ctl;

static void perf_ctl(const char *cmd)
{
    if (!g_perf_ctl)
        return;
    FILE *f = fopen(g_perf_ctl, "w");
    if (f) {
        fprintf(f, "%s\n", cmd);
        fclose(f);
    }
}

static void usage(FILE *to, const char *prog)
{
    fprintf(to,
            "usage: %s [--changes N] [--batch B] [--dir DIR] [--mode authority|replica|both]\n"
            "          [--quick] [--sql-profile] [--perf-ctl FIFO] [--store-sql SQL] [--help]\n"
            "\n"
            "Applies N single-field child edits (after creating ~N/20 children) to a fresh\n"
            "file-backed store with store_apply_batch in batches of B, as the authority\n"
            "and/or as a replica, and compares with raw SQLite inserts of rows of the same\n"
            "size in the same batches. Prints changes/s, raw rows/s, the ratio and the\n"
            "targets (>= %.0f changes/s, >= 1/3 of raw).\n"
            "\n"
            "  --changes N   edits to apply (default 100000)\n"
            "  --batch B     changes per transaction (default 1000)\n"
            "  --devices N   devices the edits come from (default: one per 25 children,\n"
            "                at most 400; 1 = one device pushing, as a server sees a push)\n"
            "  --dir DIR     where the bench-apply-*.db files go (default /tmp); removed after\n"
            "  --mode M      authority, replica or both (default both)\n"
            "  --quick       10000 changes: a smoke test\n"
            "  --sql-profile also print, per store, the time spent in each SQL statement of\n"
            "                the edits (sqlite3_trace_v2; adds some overhead)\n"
            "  --perf-ctl F  profile only the edits: write enable/disable to perf record's\n"
            "                control FIFO F (perf record -D -1 --control fifo:F ...)\n"
            "  --store-sql S for experiments: run S on each store's connection after\n"
            "                store_open (e.g. 'PRAGMA wal_autocheckpoint=10000'); the figures\n"
            "                are then not those of the engine as shipped\n"
            "  --help        this text\n"
            "\n"
            "The schema is $FIELDSYNC_SCHEMA, else the project's schema/fieldsync.yaml.\n",
            prog, TARGET_CHANGES_PER_S);
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    o->changes = 100000;
    o->batch = 1000;
    o->dir = "/tmp";
    o->authority = o->replica = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, argv[0]);
            exit(0);
        } else if (!strcmp(a, "--quick")) {
            o->changes = 10000;
        } else if (!strcmp(a, "--sql-profile")) {
            o->sql_profile = true;
        } else if (!strcmp(a, "--changes") && v) {
            if (parse_long(v, 1, 50000000, &o->changes)) {
                fprintf(stderr, "--changes wants an integer 1..50000000, not '%s'\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--devices") && v) {
            g_devices = (uint32_t)strtoul(v, NULL, 10);
            if (!g_devices) {
                fprintf(stderr, "--devices wants an integer >= 1, not '%s'\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            if (parse_long(v, 1, 1000000, &o->batch)) {
                fprintf(stderr, "--batch wants an integer 1..1000000, not '%s'\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--perf-ctl") && v) {
            g_perf_ctl = v;
            i++;
        } else if (!strcmp(a, "--store-sql") && v) {
            o->store_sql = v;
            i++;
        } else if (!strcmp(a, "--dir") && v) {
            o->dir = v;
            i++;
        } else if (!strcmp(a, "--mode") && v) {
            o->authority = !strcmp(v, "authority") || !strcmp(v, "both");
            o->replica = !strcmp(v, "replica") || !strcmp(v, "both");
            if (!o->authority && !o->replica) {
                fprintf(stderr, "--mode wants authority, replica or both, not '%s'\n", v);
                return -1;
            }
            i++;
        } else {
            fprintf(stderr, "%s: unknown or incomplete option '%s' (try --help)\n", argv[0], a);
            return -1;
        }
    }
    return 0;
}

/* ---- deterministic randomness -------------------------------------------------------- */

static uint64_t rng_state = SEED;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n) { return (uint32_t)(rng_next() % n); }

/* A UUIDv7-shaped id for time ms from the seeded generator (rid_new would use getrandom,
 * which makes runs differ). */
static rid_t make_id(uint64_t ms)
{
    rid_t id;
    for (int i = 0; i < 6; i++)
        id.b[i] = (uint8_t)(ms >> (40 - 8 * i));
    uint64_t r1 = rng_next(), r2 = rng_next();
    memcpy(id.b + 6, &r1, 8);
    memcpy(id.b + 14, &r2, 2);
    id.b[6] = (uint8_t)((id.b[6] & 0x0f) | 0x70);
    id.b[8] = (uint8_t)((id.b[8] & 0x3f) | 0x80);
    return id;
}

/* ---- the field data -------------------------------------------------------------------- */

static const char *const counties[] = {"云阳县", "奉节县", "巫山县", "巫溪县", "城口县",
                                       "酉阳县", "彭水县", "石柱县", "秀山县", "开州区"};
static const char *const towns[] = {"龙角镇", "江口镇", "青龙街道", "南溪镇", "双土镇",
                                    "平安镇", "红狮镇", "大河乡", "桃花乡", "高阳镇",
                                    "泥溪镇", "清水土家族乡"};
static const char *const school_kinds[] = {"中心小学", "完全小学", "初级中学", "中学",
                                           "村小", "希望小学", "九年一贯制学校"};
static const char *const surnames[] = {"王", "李", "张", "刘", "陈", "杨", "黄",
                                       "赵", "吴", "周", "谭", "冉", "向", "冯"};
static const char *const given[] = {"子涵", "欣怡", "浩然", "梓轩", "雨桐", "思源", "佳怡",
                                    "俊杰", "诗琪", "宇航", "小梅", "家豪", "静", "磊"};

#define N_SCHOOLS 420 /* counties x towns x a few kinds: each child picks one */
#define N_NAMES (14 * 14)

typedef struct strtab {
    char (*s)[96];
    uint32_t n;
} strtab;

static int make_schools(strtab *t)
{
    t->n = N_SCHOOLS;
    t->s = calloc(t->n, sizeof *t->s);
    if (!t->s)
        return -1;
    for (uint32_t i = 0; i < t->n; i++)
        snprintf(t->s[i], sizeof t->s[i], "%s%s%s", counties[i % 10], towns[(i / 10) % 12],
                 school_kinds[(i / 120 + i) % 7]);
    return 0;
}

static int make_names(strtab *t)
{
    t->n = N_NAMES;
    t->s = calloc(t->n, sizeof *t->s);
    if (!t->s)
        return -1;
    for (uint32_t i = 0; i < t->n; i++)
        snprintf(t->s[i], sizeof t->s[i], "%s%s", surnames[i % 14], given[i / 14]);
    return 0;
}

/* ---- the workload ---------------------------------------------------------------------- */

/* Field numbers and kinds come from the schema by name: no number is hard-coded here. */
typedef struct child_fields {
    const schema_type *t;
    const schema_field *name, *gender, *birth_date, *village, *school, *grade, *category,
        *guardian_type, *risk_level, *status;
} child_fields;

typedef struct device {
    rid_t id;
    char author[24];
    uint8_t role;
    uint64_t dseq; /* last issued */
} device;

typedef struct child {
    rid_t id;
    uint32_t device;          /* the device of the visitor who covers its village */
    uint32_t village;
    uint32_t school, name;
    uint64_t created;         /* hlc of its create */
    uint64_t version[8];      /* hlc of the last edit per edited field (index in edit_fields) */
} child;

/* One generated change, compact; expanded into a struct change per batch. */
typedef struct gen_change {
    uint32_t child;
    uint32_t device;
    uint64_t hlc, base, dseq;
    int8_t what;     /* -1 = create, else index into edit_fields */
    int64_t ival;    /* int / enum value, or string index for text */
} gen_change;

typedef struct workload {
    child_fields cf;
    const schema_field *edit_fields[5]; /* school, grade, guardian_type, category, status */
    uint32_t n_children, n_devices, n_villages;
    child *children;
    device *devices;
    char (*villages)[32];
    strtab schools, names;
    gen_change *creates, *edits;
    size_t n_creates, n_edits;
    uint8_t role_of[4];
} workload;

static int find_fields(const schema *s, child_fields *cf)
{
    cf->t = schema_type_by_name(s, "child");
    if (!cf->t)
        return -1;
#define F(x)                                                                               \
    if (!(cf->x = schema_field_by_name(cf->t, #x))) {                                      \
        fprintf(stderr, "schema: child has no field '%s'\n", #x);                          \
        return -1;                                                                         \
    }
    F(name) F(gender) F(birth_date) F(village) F(school) F(grade) F(category) F(guardian_type)
    F(risk_level) F(status)
#undef F
    return 0;
}

static int role_index(const schema *s, const char *name)
{
    int r = schema_role_by_name(s, name);
    if (r < 0) {
        fprintf(stderr, "schema: no role '%s'\n", name);
        exit(1);
    }
    return r;
}

static int workload_make(workload *w, const schema *s, size_t n_edits, uint64_t now_ms)
{
    memset(w, 0, sizeof *w);
    if (find_fields(s, &w->cf) || make_schools(&w->schools) || make_names(&w->names))
        return -1;
    w->edit_fields[0] = w->cf.school;
    w->edit_fields[1] = w->cf.grade;
    w->edit_fields[2] = w->cf.guardian_type;
    w->edit_fields[3] = w->cf.category;
    w->edit_fields[4] = w->cf.status;
    int visitor = role_index(s, "visitor"), volunteer = role_index(s, "volunteer"),
        supervisor = role_index(s, "supervisor");

    w->n_children = (uint32_t)(n_edits / EDITS_PER_CHILD);
    if (w->n_children == 0)
        w->n_children = 1;
    w->n_devices = g_devices ? g_devices : w->n_children / CHILDREN_PER_DEVICE;
    if (w->n_devices == 0)
        w->n_devices = 1;
    if (w->n_devices > MAX_DEVICES)
        w->n_devices = MAX_DEVICES;
    w->n_villages = w->n_devices; /* one visitor's device per village, plus helpers */
    w->children = calloc(w->n_children, sizeof *w->children);
    w->devices = calloc(w->n_devices, sizeof *w->devices);
    w->villages = calloc(w->n_villages, sizeof *w->villages);
    w->n_creates = w->n_children;
    w->n_edits = n_edits;
    w->creates = calloc(w->n_creates, sizeof *w->creates);
    w->edits = calloc(w->n_edits, sizeof *w->edits);
    if (!w->children || !w->devices || !w->villages || !w->creates || !w->edits)
        return -1;

    /* The week before now: creates in the first hour, edits over the rest. */
    uint64_t t0 = now_ms - 7ULL * 24 * 3600 * 1000;
    for (uint32_t d = 0; d < w->n_devices; d++) {
        device *dv = &w->devices[d];
        dv->id = make_id(t0 - 90ULL * 24 * 3600 * 1000); /* devices were enrolled earlier */
        uint32_t kind = rng_below(20);
        /* 80% visitors, 15% social workers, 5% township supervisors */
        dv->role = (uint8_t)(kind < 16 ? visitor : kind < 19 ? volunteer : supervisor);
        snprintf(dv->author, sizeof dv->author, "%s%03u",
                 kind < 16 ? "cq-visitor-" : kind < 19 ? "cq-social-" : "cq-town-", d);
        /* 12-digit township/village codes of a Chongqing county (500235 = 云阳县) */
        snprintf(w->villages[d], sizeof w->villages[d], "500235%03u%03u", 100 + d / 20,
                 200 + d % 20);
    }
    uint64_t hlc = hlc_make(t0, 0);
    uint64_t create_step = 3600000ULL / w->n_children + 1; /* ms: all created in an hour */
    for (uint32_t i = 0; i < w->n_children; i++) {
        child *c = &w->children[i];
        c->village = i % w->n_villages;
        c->device = c->village % w->n_devices;
        c->school = rng_below(w->schools.n);
        c->name = rng_below(w->names.n);
        hlc += hlc_make(create_step, 0) + rng_below(16);
        c->id = make_id(hlc_physical_ms(hlc));
        c->created = hlc;
        gen_change *g = &w->creates[i];
        g->child = i;
        g->device = c->device;
        g->hlc = hlc;
        g->base = 0;
        g->dseq = ++w->devices[c->device].dseq;
        g->what = -1;
    }
    /* Edits: each from the child's own visitor or, one time in four, another device that
     * passed by; the author saw the field's last version, or (one in ten, offline for days)
     * only the create. */
    uint64_t span = now_ms - hlc_physical_ms(hlc) - 3600000ULL; /* end an hour before now */
    uint64_t step = span / n_edits;
    if (step == 0)
        step = 1;
    for (size_t k = 0; k < n_edits; k++) {
        gen_change *g = &w->edits[k];
        g->child = rng_below(w->n_children);
        child *c = &w->children[g->child];
        g->device = rng_below(4) ? c->device : rng_below(w->n_devices);
        uint32_t p = rng_below(100);
        g->what = (int8_t)(p < 35 ? 0 : p < 65 ? 1 : p < 80 ? 2 : p < 90 ? 3 : 4);
        const schema_field *f = w->edit_fields[(int)g->what];
        hlc += hlc_make(step, 0) + rng_below(16);
        g->hlc = hlc;
        uint64_t seen = c->version[(int)g->what] ? c->version[(int)g->what] : c->created;
        g->base = rng_below(10) ? seen : c->created;
        g->dseq = ++w->devices[g->device].dseq;
        c->version[(int)g->what] = hlc;
        switch (f->kind) {
        case KIND_TEXT: g->ival = rng_below(w->schools.n); break;
        case KIND_INT: g->ival = f->min + rng_below((uint32_t)(f->max - f->min + 1)); break;
        case KIND_ENUM: {
            /* only values every role may set (the schema may restrict some to supervisors) */
            int64_t v;
            do
                v = rng_below(f->n_values);
            while (f->values[v].roles);
            g->ival = v;
            break;
        }
        default: return -1;
        }
    }
    return 0;
}

static void workload_free(workload *w)
{
    free(w->children);
    free(w->devices);
    free(w->villages);
    free(w->schools.s);
    free(w->names.s);
    free(w->creates);
    free(w->edits);
}

static void put_field(change *c, const schema_field *f, uint8_t vkind, int64_t i, const char *s)
{
    change_field *cf = &c->fields[c->n_fields++];
    cf->num = f->num;
    memset(&cf->v, 0, sizeof cf->v);
    cf->v.kind = vkind;
    if (vkind == VAL_STR) {
        cf->v.u.s.p = s;
        cf->v.u.s.len = (uint32_t)strlen(s);
    } else if (vkind == VAL_INT) {
        cf->v.u.i = i;
    }
}

/* Fills *c from the compact description (text values borrow the workload's tables). */
static void expand(const workload *w, const gen_change *g, change *c)
{
    const child *ch = &w->children[g->child];
    const device *dv = &w->devices[g->device];
    const child_fields *cf = &w->cf;
    c->type = cf->t->id;
    c->record = ch->id;
    c->hlc = g->hlc;
    c->base = g->base;
    c->dseq = g->dseq;
    c->device = dv->id;
    c->author = dv->author;
    c->author_len = (uint32_t)strlen(dv->author);
    c->role = dv->role;
    c->n_fields = 0;
    c->decoded_by = NULL; /* built here: the store validates it in full */
    c->abbrev = false;
    if (g->what < 0) {
        put_field(c, cf->name, VAL_STR, 0, w->names.s[ch->name]);
        put_field(c, cf->gender, VAL_INT, ch->name % 2, NULL);
        put_field(c, cf->birth_date, VAL_INT,
                  20090101 + (ch->name % 7) * 10000 + (ch->school % 12) * 100 + ch->name % 28,
                  NULL);
        put_field(c, cf->village, VAL_STR, 0, w->villages[ch->village]);
        put_field(c, cf->school, VAL_STR, 0, w->schools.s[ch->school]);
        put_field(c, cf->grade, VAL_INT, 1 + ch->name % 9, NULL);
        put_field(c, cf->category, VAL_INT, 0, NULL);
        put_field(c, cf->guardian_type, VAL_INT, 0, NULL);
        put_field(c, cf->risk_level, VAL_INT, 0, NULL);
        put_field(c, cf->status, VAL_INT, 0, NULL);
        change_sort_fields(c);
        return;
    }
    const schema_field *f = w->edit_fields[(int)g->what];
    if (f->kind == KIND_TEXT)
        put_field(c, f, VAL_STR, 0, w->schools.s[g->ival]);
    else
        put_field(c, f, VAL_INT, g->ival, NULL);
}

/* ---- timing and machine ---------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- per-statement profile ------------------------------------------------------------- */

#define PROF_MAX 48

typedef struct prof_row {
    const char *sql;           /* the statement text (SQLite's, valid while prepared) */
    char key[96];              /* its first bytes: rows of one statement merge by these */
    uint64_t count, ns;
    sqlite3_stmt *running;     /* the statement started and not yet finished, if any */
    double started;            /* its CLOCK_MONOTONIC start (SQLite's own figure is in ms) */
} prof_row;

typedef struct sql_prof {
    bool on;                   /* count only while the edits are applied */
    uint32_t n;
    prof_row row[PROF_MAX];
    int ckpt_pages;            /* the connection's wal_autocheckpoint threshold */
    uint64_t ckpt_count, ckpt_ns;
} sql_prof;

/* Does what SQLite's default WAL hook (sqlite3_wal_autocheckpoint) does, PASSIVE checkpoint
 * once the WAL holds ckpt_pages frames, and times it: SQLite runs it after the COMMIT's
 * profile event, so the statement times would not show it. */
static int prof_wal_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
    sql_prof *pr = ctx;
    if (pr->ckpt_pages <= 0 || frames < pr->ckpt_pages)
        return SQLITE_OK;
    double t = now_s();
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (pr->on) {
        pr->ckpt_count++;
        pr->ckpt_ns += (uint64_t)((now_s() - t) * 1e9);
    }
    return SQLITE_OK;
}

static double now_s(void);

/* TRACE_STMT marks a statement's first step, TRACE_PROFILE its end (reset or done): the time
 * between the two, on our clock, is the statement's. A COMMIT's time includes writing the WAL
 * and the automatic checkpoint that follows it. */
static int prof_cb(unsigned type, void *ctx, void *p, void *x)
{
    sql_prof *pr = ctx;
    (void)x;
    if (!pr->on || (type != SQLITE_TRACE_PROFILE && type != SQLITE_TRACE_STMT))
        return 0;
    sqlite3_stmt *stm = p;
    const char *sql = sqlite3_sql(stm);
    if (!sql)
        return 0;
    prof_row *r = NULL;
    for (uint32_t i = 0; i < pr->n && !r; i++)
        if (pr->row[i].sql == sql || !strncmp(pr->row[i].key, sql, sizeof pr->row[i].key - 1))
            r = &pr->row[i];
    if (!r) {
        if (pr->n == PROF_MAX)
            return 0;
        r = &pr->row[pr->n++];
        memset(r, 0, sizeof *r);
        r->sql = sql;
        snprintf(r->key, sizeof r->key, "%s", sql);
    }
    if (type == SQLITE_TRACE_STMT) {
        r->running = stm;
        r->started = now_s();
    } else if (r->running == stm) {
        r->count++;
        r->ns += (uint64_t)((now_s() - r->started) * 1e9);
        r->running = NULL;
    }
    return 0;
}

static int prof_cmp(const void *a, const void *b)
{
    uint64_t x = ((const prof_row *)a)->ns, y = ((const prof_row *)b)->ns;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void prof_print(sql_prof *pr, const char *mode, double total_s, size_t n_changes)
{
    qsort(pr->row, pr->n, sizeof pr->row[0], prof_cmp);
    uint64_t sum = pr->ckpt_ns;
    for (uint32_t i = 0; i < pr->n; i++)
        sum += pr->row[i].ns;
    printf("\n  SQL profile, edits, %s: %.3f s in SQLite of %.3f s in store_apply_batch\n",
           mode, (double)sum / 1e9, total_s);
    printf("  %9s %8s %8s %6s  %s\n", "calls", "ms", "us/call", "share", "statement");
    if (pr->ckpt_count)
        printf("  %9" PRIu64 " %8.1f %8.2f %5.1f%%  %s (every %d WAL pages)\n", pr->ckpt_count,
               (double)pr->ckpt_ns / 1e6, (double)pr->ckpt_ns / 1e3 / (double)pr->ckpt_count,
               100.0 * (double)pr->ckpt_ns / 1e9 / total_s, "(auto-checkpoint after COMMIT)",
               pr->ckpt_pages);
    for (uint32_t i = 0; i < pr->n; i++) {
        char text[61];
        snprintf(text, sizeof text, "%.60s", pr->row[i].key); /* the statement's start */
        printf("  %9" PRIu64 " %8.1f %8.2f %5.1f%%  %s\n", pr->row[i].count,
               (double)pr->row[i].ns / 1e6, (double)pr->row[i].ns / 1e3 / (double)pr->row[i].count,
               100.0 * (double)pr->row[i].ns / 1e9 / total_s, text);
    }
    printf("  %9s %8.1f %8.2f %5.1f%%  %s\n", "", (total_s - (double)sum / 1e9) * 1e3,
           (total_s - (double)sum / 1e9) * 1e6 / (double)n_changes,
           100.0 * (total_s - (double)sum / 1e9) / total_s,
           "(outside SQLite: merge, packing, validation; us per change)");
}

/* ---- files ------------------------------------------------------------------------------ */

static void remove_db(const char *path)
{
    char p[4200];
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

/* ---- the runs --------------------------------------------------------------------------- */

typedef struct run_result {
    double create_s;  /* time in store_apply_batch for the creates */
    double edit_s;    /* time in store_apply_batch for the edits */
    double edit_cpu;  /* process CPU (user + sys) during those calls: the figure that load
                         average does not skew */
    uint64_t edit_written; /* bytes written (wchar) during the edits' calls */
    uint64_t hash[2];
    int64_t reviews;
} run_result;

/* Applies the workload's creates then edits to a fresh store at path. Returns 0 or -1. */
static int run_store(const workload *w, const schema *s, store_mode mode, const char *path,
                     size_t batch, const char *extra_sql, sql_prof *prof, run_result *out)
{
    memset(out, 0, sizeof *out);
    remove_db(path);
    store *st = NULL;
    fs_error e = {0};
    int rc = store_open(path, s, mode, &st, &e);
    if (rc) {
        fprintf(stderr, "store_open %s: %s\n", path, e.msg);
        return -1;
    }
    if (extra_sql && sqlite3_exec(store_db(st), extra_sql, NULL, NULL, NULL)) {
        fprintf(stderr, "--store-sql: %s\n", sqlite3_errmsg(store_db(st)));
        store_close(st);
        remove_db(path);
        return -1;
    }
    if (prof) {
        sqlite3_stmt *q;
        prof->ckpt_pages = 0;
        if (!sqlite3_prepare_v2(store_db(st), "PRAGMA wal_autocheckpoint", -1, &q, NULL)) {
            if (sqlite3_step(q) == SQLITE_ROW)
                prof->ckpt_pages = sqlite3_column_int(q, 0);
            sqlite3_finalize(q);
        }
        sqlite3_wal_hook(store_db(st), prof_wal_hook, prof);
        sqlite3_trace_v2(store_db(st), SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, prof_cb, prof);
    }
    change *cs = malloc(batch * sizeof *cs);
    apply_result *rs = malloc(batch * sizeof *rs);
    int ret = -1;
    if (!cs || !rs) {
        fprintf(stderr, "out of memory for a batch of %zu\n", batch);
        goto done;
    }
    const gen_change *lists[2] = {w->creates, w->edits};
    size_t counts[2] = {w->n_creates, w->n_edits};
    double *times[2] = {&out->create_s, &out->edit_s};
    for (int phase = 0; phase < 2; phase++) {
        if (prof)
            prof->on = phase == 1;
        if (phase == 1)
            perf_ctl("enable");
        for (size_t at = 0; at < counts[phase]; at += batch) {
            size_t n = counts[phase] - at < batch ? counts[phase] - at : batch;
            for (size_t i = 0; i < n; i++)
                expand(w, &lists[phase][at + i], &cs[i]);
            uint64_t wr = phase ? bh_written_bytes() : 0;
            double cpu = phase ? bh_self_cpu() : 0;
            double t = now_s();
            rc = store_apply_batch(st, cs, n, NULL, rs, &e);
            *times[phase] += now_s() - t;
            if (phase) {
                out->edit_cpu += bh_self_cpu() - cpu;
                out->edit_written += bh_written_bytes() - wr;
            }
            if (rc) {
                fprintf(stderr, "store_apply_batch: %s\n", e.msg);
                goto done;
            }
            for (size_t i = 0; i < n; i++)
                if (rs[i].status != APPLY_ACCEPTED) {
                    fprintf(stderr,
                            "change %zu of the %s was not accepted: status %u, %s: %s\n",
                            at + i, phase ? "edits" : "creates", rs[i].status,
                            fs_errname(rs[i].code), rs[i].msg);
                    goto done;
                }
        }
    }
    perf_ctl("disable");
    if (prof)
        prof->on = false; /* what follows checks the result, it is not part of the figure */
    uint64_t last;
    if (store_last_seq(st, &last) || last != w->n_creates + w->n_edits) {
        fprintf(stderr, "log holds %" PRIu64 " changes, want %zu\n", last,
                w->n_creates + w->n_edits);
        goto done;
    }
    if (store_state_hash(st, out->hash) || store_review_count(st, false, &out->reviews)) {
        fprintf(stderr, "reading the store back failed\n");
        goto done;
    }
    ret = 0;
done:
    if (prof) {
        prof->on = false;
        sqlite3_trace_v2(store_db(st), 0, NULL, NULL);
    }
    free(cs);
    free(rs);
    store_close(st);
    remove_db(path);
    return ret;
}

/* Raw SQLite: one row per body, INTEGER PRIMARY KEY, same PRAGMAs, same batches. */
/* Encodes every edit in the full form the log stores. *bodies and *off are new (free). */
static int encode_edits(const workload *w, uint8_t **bodies, uint32_t **off)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    *off = malloc((w->n_edits + 1) * sizeof **off);
    change *c = malloc(sizeof *c);
    if (!*off || !c) {
        free(c);
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    for (size_t i = 0; i < w->n_edits; i++) {
        (*off)[i] = (uint32_t)sb.size;
        expand(w, &w->edits[i], c);
        if (change_pack(&pk, c, true)) {
            free(c);
            msgpack_sbuffer_destroy(&sb);
            return -1;
        }
    }
    (*off)[w->n_edits] = (uint32_t)sb.size;
    free(c);
    *bodies = (uint8_t *)msgpack_sbuffer_release(&sb);
    return 0;
}

/* ---- report ------------------------------------------------------------------------------ */

static const char *verdict(bool ok) { return ok ? "PASS" : "MISS"; }

int main(int argc, char **argv)
{
    options o;
    if (parse_args(argc, argv, &o))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);

    schema *s = NULL;
    fs_error e = {0};
    if (schema_load(schema_default_path(), &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    workload w;
    if (workload_make(&w, s, (size_t)o.changes, wall_ms())) {
        fprintf(stderr, "cannot build the workload (out of memory or unexpected schema)\n");
        workload_free(&w);
        schema_free(s);
        return 1;
    }
    uint8_t *bodies = NULL;
    uint32_t *off = NULL;
    if (encode_edits(&w, &bodies, &off)) {
        fprintf(stderr, "cannot encode the workload\n");
        workload_free(&w);
        schema_free(s);
        return 1;
    }
    double avg_body = (double)off[w.n_edits] / (double)w.n_edits;
    uint32_t min_body = UINT32_MAX, max_body = 0;
    for (size_t i = 0; i < w.n_edits; i++) {
        uint32_t l = off[i + 1] - off[i];
        min_body = l < min_body ? l : min_body;
        max_body = l > max_body ? l : max_body;
    }

    /* header: machine, date, load, command (the harness's, shared by the benchmarks) */
    bh_header("bench_apply — store_apply_batch throughput", argc, argv);
    printf("  store dir %s\n", o.dir);
    printf("  workload  %zu single-field child edits (lww: school text in Chinese, grade int,\n"
           "            guardian_type/category/status enums) over %u children by %u devices,\n"
           "            batch %ld; created first: %zu children (10 fields each, timed apart)\n",
           w.n_edits, w.n_children, w.n_devices, o.batch, w.n_creates);
    if (o.store_sql)
        printf("  EXPERIMENT store-sql: %s (not the engine as shipped)\n", o.store_sql);
    printf("  log row   full-form change body %.1f bytes on average (%u..%u): the raw rows\n"
           "            are these exact bodies\n",
           avg_body, min_body, max_body);
    printf("\n");

    char path[4096];
    pid_t pid = getpid();
    run_result ra = {0}, rr = {0};
    double raw_s = 0, raw_cpu = 0;
    uint64_t raw_written = 0;
    static sql_prof prof_a, prof_r;
    int failed = 0;
    if (o.authority) {
        snprintf(path, sizeof path, "%s/bench-apply-authority-%d.db", o.dir, (int)pid);
        failed |= run_store(&w, s, STORE_AUTHORITY, path, (size_t)o.batch, o.store_sql,
                            o.sql_profile ? &prof_a : NULL, &ra);
    }
    if (!failed && o.replica) {
        snprintf(path, sizeof path, "%s/bench-apply-replica-%d.db", o.dir, (int)pid);
        failed |= run_store(&w, s, STORE_REPLICA, path, (size_t)o.batch, o.store_sql,
                            o.sql_profile ? &prof_r : NULL, &rr);
    }
    if (!failed) {
        snprintf(path, sizeof path, "%s/bench-apply-raw-%d.db", o.dir, (int)pid);
        raw_cpu = bh_self_cpu();
        /* the authority's page size when it runs: its ratio is to the same pages */
        failed |= bh_raw_insert(path, bodies, off, w.n_edits, (size_t)o.batch, false,
                                o.authority ? STORE_AUTHORITY_PAGE_SIZE : 0, &raw_s,
                                &raw_written) != 0;
        raw_cpu = bh_self_cpu() - raw_cpu; /* includes creating and removing the file */
    }
    if (failed) {
        free(bodies);
        free(off);
        workload_free(&w);
        schema_free(s);
        return 1;
    }

    double n = (double)w.n_edits, nc = (double)w.n_creates;
    double raw_rate = n / raw_s;
    printf("  %-24s %9s %9s %11s %7s %15s %9s\n", "what", "count", "seconds", "per second",
           "of raw", "written/change", "cpu/chg");
    printf("  %-24s %9.0f %9.3f %11.0f %7s %13.0f B %6.2f us\n", "raw SQLite rows", n, raw_s,
           raw_rate, "1.00", (double)raw_written / n, raw_cpu * 1e6 / n);
    struct {
        bool on;
        const char *name;
        const run_result *r;
    } modes[2] = {{o.authority, "authority", &ra}, {o.replica, "replica", &rr}};
    for (int i = 0; i < 2; i++) {
        if (!modes[i].on)
            continue;
        const run_result *r = modes[i].r;
        char label[64];
        snprintf(label, sizeof label, "creates, %s", modes[i].name);
        printf("  %-24s %9.0f %9.3f %11.0f %7s %15s\n", label, nc, r->create_s,
               nc / r->create_s, "-", "-");
        snprintf(label, sizeof label, "edits, %s", modes[i].name);
        printf("  %-24s %9.0f %9.3f %11.0f %7.2f %13.0f B %6.2f us\n", label, n, r->edit_s,
               n / r->edit_s, (n / r->edit_s) / raw_rate, (double)r->edit_written / n,
               r->edit_cpu * 1e6 / n);
    }
    printf("\n  targets (edits)\n");
    for (int i = 0; i < 2; i++) {
        if (!modes[i].on)
            continue;
        double rate = n / modes[i].r->edit_s;
        printf("  %-10s >= %.0f changes/s: %s (%.0f)   >= 1/3 of raw: %s (%.2f)\n",
               modes[i].name, TARGET_CHANGES_PER_S, verdict(rate >= TARGET_CHANGES_PER_S), rate,
               verdict(rate / raw_rate >= TARGET_RAW_FRACTION), rate / raw_rate);
    }
    if (o.authority && o.replica) {
        bool same = ra.hash[0] == rr.hash[0] && ra.hash[1] == rr.hash[1];
        printf("\n  authority and replica state hashes %s (%016" PRIx64 "%016" PRIx64 ")\n",
               same ? "equal" : "DIFFER", ra.hash[0], ra.hash[1]);
        if (!same)
            failed = 1;
    }
    if (o.sql_profile && o.authority)
        prof_print(&prof_a, "authority", ra.edit_s, w.n_edits);
    if (o.sql_profile && o.replica)
        prof_print(&prof_r, "replica", rr.edit_s, w.n_edits);
    free(bodies);
    free(off);
    workload_free(&w);
    schema_free(s);
    return failed;
}

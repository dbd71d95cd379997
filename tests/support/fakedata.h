/*
 * fakedata.h — deterministic, realistic field data for tests, benchmarks, the dictionary
 * trainer and the demo.
 *
 * A generator (fakedata_new(seed)) produces the same sequence of names, villages, addresses,
 * phone numbers, schools, ID numbers, visit notes and whole changes for the same seed on every
 * machine and compiler: it uses its own PRNG (xoshiro256** seeded by splitmix64), no libc
 * rand(), no wall clock, no locale, no getrandom(), and never draws twice in one expression
 * (argument evaluation order differs between gcc and clang). Record and device ids are
 * UUIDv7-shaped but drawn from the seeded PRNG, and the clock is a simulated one that starts
 * at 2024-09-02 08:00 (Chongqing time) and moves forward with every change
 * (fakedata_set_now_ms() moves it).
 *
 * What it generates looks like the policy's data (schema/fieldsync.yaml): children under 16
 * whose birth date matches an 18-digit ID number (valid ISO 7064 check character, gender
 * digit matching the gender), households whose parents work away in Guangdong or Zhejiang,
 * village codes such as "cq-wx-hx-01" (county wx = 巫溪县, hx = 红星村, the first village of
 * those initials in the county), and visit notes in Chinese composed at random from ~80
 * sentence templates whose slots (relatives, subjects, scores, illnesses, hazards, dates)
 * are filled at random, so that notes vary. The vocabulary is still finite: a zstd
 * dictionary trained on it compresses these notes far better than real free text (see
 * bench/bench_bytes.c --free-text).
 *
 * Changes are built through the schema, by NAME (type "child", field "birth_date", enum code
 * "on_file", role "visitor"); no field number appears in this module. A change builder fails
 * with FS_ESCHEMA when the schema lacks a type or field it needs, so a renamed field shows up
 * as a clear test failure, not as a silently different change.
 *
 * Ownership, in one place:
 *   - The generator owns every string it returns and every text value of the changes it
 *     builds. Nothing returned is ever to be freed by the caller.
 *   - A built change's author points to the generator's identity: valid until the next
 *     fakedata_set_identity() on it, or fakedata_free().
 *   - Text in a built change borrows the generator's change buffer: valid until the next call
 *     of any change builder (fakedata_*_create, fakedata_child_edit) on the same generator, or
 *     fakedata_free(). Pack or copy the change before building the next one.
 *   - A string returned by a scalar function (fakedata_person_name, fakedata_phone, ...) is
 *     valid until the next call of THAT function on the same generator, or fakedata_free();
 *     calls of other functions do not disturb it (so name, phone and address can be held
 *     together). strdup() what must live longer.
 *   - Village records (fakedata_village) are owned by the generator and valid until
 *     fakedata_free(). The village table is the same for every seed.
 *
 * Not thread-safe: one generator per thread. Nothing here touches the network or the disk.
 */
#ifndef FS_FAKEDATA_H
#define FS_FAKEDATA_H

#include "change.h"
#include "rid.h"
#include "schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fakedata fakedata;

/* A village in the generated geography. All strings are NUL-terminated UTF-8. */
typedef struct fakedata_village {
    const char *code;        /* scope: "cq-<county>-<village initials>-<nn>", "cq-wx-hx-01" */
    const char *name;        /* 红星村 */
    const char *town;        /* 宁厂镇 */
    const char *county;      /* 巫溪县 */
    const char *county_code; /* "wx" */
    uint32_t region;         /* 6-digit administrative code of the county (500238) */
} fakedata_village;

/* Topics of visit notes: one per text field of a visit. */
typedef enum fakedata_topic {
    FAKEDATA_LIVING,   /* living_situation: 生活照料 */
    FAKEDATA_SAFETY,   /* safety: 安全 */
    FAKEDATA_HEALTH,   /* health: 身体健康 */
    FAKEDATA_STUDY,    /* study: 学习 */
    FAKEDATA_MOOD,     /* mood: 心理情绪 */
    FAKEDATA_CONCERNS, /* concerns: 发现问题 */
    FAKEDATA_ANY,      /* a general note mixing every topic */
    FAKEDATA_N_TOPICS
} fakedata_topic;

/* ---- the generator ------------------------------------------------------------------- */

/* Returns new (free with fakedata_free), or NULL when out of memory. Any seed is valid. */
fakedata *fakedata_new(uint64_t seed);

/* Frees the generator and everything it returned. Accepts NULL. */
void fakedata_free(fakedata *fd);

/* ---- randomness and time ------------------------------------------------------------- */

uint64_t fakedata_u64(fakedata *fd);                   /* next PRNG output */
uint32_t fakedata_below(fakedata *fd, uint32_t n);     /* uniform-ish in 0..n-1; 0 when n is 0 */
bool fakedata_chance(fakedata *fd, uint32_t percent);  /* true with probability percent/100 */

/* A UUIDv7-shaped id for Unix time ms with 74 bits from the PRNG (never all zero). */
rid_t fakedata_id(fakedata *fd, uint64_t ms);

/* The simulated clock, Unix ms. Every change builder advances it by 20 s .. 40 min first. */
uint64_t fakedata_now_ms(const fakedata *fd);
/* Sets the simulated clock (e.g. to the real time for a demo against a live server, whose
 * drift check refuses clocks more than a day ahead). Change clocks stay monotonic. */
void fakedata_set_now_ms(fakedata *fd, uint64_t ms);

/* The identity put into every built change: device id, author (user name, copied, at most
 * CHANGE_MAX_AUTHOR bytes) and role name (resolved through the schema when a change is
 * built). next_dseq is the dseq of the next change (>= 1). By default a generator is one
 * device of user "cq-visitor-NNN" with role "visitor" starting at dseq 1.
 * Returns 0 or FS_EINVAL (author too long, role name too long, dseq 0). Borrows its
 * arguments only during the call. */
int fakedata_set_identity(fakedata *fd, const rid_t *device, const char *author,
                          const char *role, uint64_t next_dseq);
/* The next dseq the generator will use. */
uint64_t fakedata_next_dseq(const fakedata *fd);

/* ---- scalar values (each valid until the next call of the same function) ------------- */

/* A Chinese person name: a common surname and 1-2 given-name characters.
 * female: 0 = male-leaning, 1 = female-leaning, -1 = either. */
const char *fakedata_person_name(fakedata *fd, int female);

/* Villages: a random one, or by index (0 <= i < fakedata_village_count()). */
const fakedata_village *fakedata_village_pick(fakedata *fd);
const fakedata_village *fakedata_village_at(const fakedata *fd, size_t i);
size_t fakedata_village_count(const fakedata *fd);

/* "重庆市巫溪县宁厂镇红星村4组27号" and variants. v NULL = a random village. */
const char *fakedata_address(fakedata *fd, const fakedata_village *v);

/* A mobile number matching 1[3-9]\d{9}, from real operator prefixes. */
const char *fakedata_phone(fakedata *fd);

/* A school a child of that grade would attend near village v (NULL = random village).
 * grade 0 = kindergarten, 1..6 primary, 7..9 junior secondary, 10..12 senior secondary. */
const char *fakedata_school(fakedata *fd, const fakedata_village *v, int grade);

/* Birth date YYYYMMDD of a child aged 6 months .. 15 years 11 months at the simulated now. */
int64_t fakedata_birth_date(fakedata *fd);

/* The school grade for that birth date at the simulated now, as schema field grade: 0 before
 * school, 1 for a child six by 31 August, ... (0..10 for children under 16). */
int fakedata_grade_for(const fakedata *fd, int64_t birth_yyyymmdd);

/* An 18-digit resident ID number: the county's region code (v NULL = random village),
 * the birth date, a sequence whose last digit is odd for male and even for female, and the
 * ISO 7064 MOD 11-2 check character (0-9 or X). */
const char *fakedata_id_number(fakedata *fd, const fakedata_village *v, int64_t birth_yyyymmdd,
                               bool female);

/* true when id is 18 characters with a valid check character and a real birth date. */
bool fakedata_id_number_valid(const char *id);

/* A note in Chinese on a topic, composed from random sentence templates: usually 30..300
 * characters, never more than max_bytes bytes of UTF-8 (cut at a sentence, never inside a
 * character; at least one sentence is kept when max_bytes allows). */
const char *fakedata_note(fakedata *fd, fakedata_topic topic, size_t max_bytes);

/* How many distinct sentence templates the note generator draws from (all topics). */
size_t fakedata_fragment_count(void);

/* ---- whole changes ----------------------------------------------------------------------
 * Each builder fills *out completely (type, record, hlc, base, dseq, device, author, role,
 * fields sorted by num) so that change_validate() accepts it and change_pack() can write it in
 * push or full form. It advances the simulated clock and takes the next dseq. Text values
 * and the author borrow the generator (see the ownership rules above). Optional fields are
 * present at random with typical frequencies. Each returns 0, FS_ESCHEMA (e filled: the
 * schema lacks a type, field, enum code or role used here), FS_EINVAL (bad argument, e
 * filled), FS_ENOMEM (remembering the record), or the change_validate() error of the result
 * (a bug in this module). On error *out is unusable and no dseq was consumed.
 *
 * The generator remembers the children and households it created (up to 65,536 of each; past
 * that a random one is forgotten), with the clock of the last change it made to each, so that
 * later changes can refer to them.
 */

/* A household create: village (required), address, parents' names, phones, work places,
 * migrant status, guardian (name, relation, phone, capacity), agreement signed. v NULL = a
 * random village. *id_out (may be NULL) receives the record id. */
int fakedata_household_create(fakedata *fd, const schema *s, const fakedata_village *v,
                              change *out, rid_t *id_out, fs_error *e);

/* A child create: every required field (name, village) and the typical optional ones
 * (gender, birth date, ID number, household, school, grade, category, guardian type,
 * hardship/disability/drop-out flags, risk level, status). The child joins a household this
 * generator created when there is one (same village, the father's surname), else a random
 * village. *id_out (may be NULL) receives the record id. */
int fakedata_child_create(fakedata *fd, const schema *s, change *out, rid_t *id_out,
                          fs_error *e);

/* A visit create for child (NULL = a child this generator created, or a fresh random id
 * when it created none): visitor, kind, time, place, the five observations, parent contact,
 * concerns, follow-up date. *id_out (may be NULL) receives the record id. */
int fakedata_visit_create(fakedata *fd, const schema *s, const rid_t *child, change *out,
                          rid_t *id_out, fs_error *e);

/* A mandatory report create about child (NULL as for visits): reporter, unit, category,
 * what was observed (matching the category), when, police notified, status "reported". */
int fakedata_report_create(fakedata *fd, const schema *s, const rid_t *child, change *out,
                           rid_t *id_out, fs_error *e);

/* A single-field edit of a child: field (any non-ref field of child by name; NULL = a random
 * choice among school, grade, guardian_type, category, status, in_difficulty, disabled,
 * dropped_out) set to a new value (enum values restricted to some roles are never chosen).
 * child NULL = a child this generator created (FS_EINVAL when there is none). base is the
 * clock of the last change the generator made to that child; for a child it does not know,
 * pass base_hint (> 0), else FS_EINVAL. */
int fakedata_child_edit(fakedata *fd, const schema *s, const rid_t *child, uint64_t base_hint,
                        const char *field, change *out, fs_error *e);

/* How many children / households the generator currently remembers. */
size_t fakedata_children_known(const fakedata *fd);
size_t fakedata_households_known(const fakedata *fd);

#endif

/*
 * softcheck.h — CHECK_SOFT, a check that does not abort. tests/check.h's checks abort at the
 * first failure; CHECK_SOFT prints the file, line, what is being checked and the expression,
 * counts the failure, and lets the test go on, so every later check still runs and
 * everything the test made is still freed. It is still a failing check: main() must end
 * with a non-zero exit when soft_checks_failed is not 0.
 *
 * Used by the unit tests of behaviour the engine once got wrong (test_merge.c, test_wire.c),
 * where one regression should not hide the others. Include it once per test file: the count
 * is a static of that file.
 */
#ifndef FS_TEST_SOFTCHECK_H
#define FS_TEST_SOFTCHECK_H

#include <stdio.h>

static int soft_checks_failed; /* CHECK_SOFT failures so far; main() fails when not 0 */

#define CHECK_SOFT(cond, what)                                                             \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK_SOFT failed (%s): %s\n", __FILE__, __LINE__,     \
                    what, #cond);                                                          \
            soft_checks_failed++;                                                          \
        }                                                                                  \
    } while (0)

/* The old name, kept for tests written against it: the same failing check. */
#define EXPECT_BUG(cond, what) CHECK_SOFT(cond, what)

#endif

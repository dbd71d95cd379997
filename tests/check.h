/*
 * check.h — assertion macros for the tests, after libuv's test/task.h: a failed check prints
 * the expression, both values, file and line, and aborts (so CTest counts it and the
 * sanitizers still report leaks of what the test made up to then).
 */
#ifndef FS_TEST_CHECK_H
#define FS_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        if (!(expr)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_INT(a, op, b)                                                                \
    do {                                                                                   \
        long long va_ = (long long)(a), vb_ = (long long)(b);                              \
        if (!(va_ op vb_)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s %s %s (%lld %s %lld)\n", __FILE__,    \
                    __LINE__, #a, #op, #b, va_, #op, vb_);                                 \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *sa_ = (a), *sb_ = (b);                                                 \
        if (!sa_ || !sb_ || strcmp(sa_, sb_)) {                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");          \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_OK(expr) CHECK_INT((expr), ==, 0)

#endif

/*
 * test.h - what xtk's test programs share, in the manner of the Linux KVM
 * selftests: a failed assertion prints file:line and the reason, and exits
 * 1; a test that cannot run here says why and exits 77 (the automake
 * harness counts it as skipped, and CI fails on any skip).
 */
#ifndef XTK_TEST_H
#define XTK_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_EXIT_SKIP 77

#define TEST_ASSERT(cond, ...)                                                 \
    do {                                                                       \
        if (!(cond)) {                                                         \
            int test_errno_ = errno;                                           \
            fprintf(stderr, "%s:%d: %s: assertion failed: %s\n  ", __FILE__,   \
                    __LINE__, __func__, #cond);                                \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " (errno %d: %s)\n", test_errno_,                  \
                    strerror(test_errno_));                                    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* Asserts that a libxtk-style call failed with -1 and the given errno. */
#define TEST_ASSERT_ERRNO(expr, err)                                           \
    do {                                                                       \
        errno = 0;                                                             \
        long test_rc_ = (long)(expr);                                          \
        TEST_ASSERT(test_rc_ == -1 && errno == (err),                          \
                    "%s returned %ld, errno %d; wanted -1 and errno %d (%s)",  \
                    #expr, test_rc_, errno, (err), strerror(err));             \
    } while (0)

#define TEST_SKIP(...)                                                         \
    do {                                                                       \
        fprintf(stderr, "SKIP: ");                                             \
        fprintf(stderr, __VA_ARGS__);                                          \
        fprintf(stderr, "\n");                                                 \
        exit(TEST_EXIT_SKIP);                                                  \
    } while (0)

/* Runs one named sub-test and says so (the log then reads as a list);
 * TEST_ONLY=name runs that one alone (to repeat it). */
#define TEST_RUN(fn)                                                           \
    do {                                                                       \
        const char *only_ = getenv("TEST_ONLY");                               \
        if (only_ && *only_ && strcmp(only_, #fn))                             \
            break;                                                             \
        fprintf(stderr, "-- %s\n", #fn);                                       \
        fn();                                                                  \
    } while (0)

#endif /* XTK_TEST_H */

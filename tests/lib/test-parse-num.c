/*
 * test-parse-num.c - the one number parser of the command lines
 * (lib/parse-num.h), which xtk-save, xtk-restore, xtk-stream, xtk, xtk-hv
 * and xsd-lite share: decimal or 0x hex (leading zeros are not octal), no
 * sign or space, size suffixes only where asked, ranges, overflow.
 */
#include "config.h"

#include <stdint.h>

#include "parse-num.h"
#include "test.h"

static void ok(const char *s, unsigned int flags, uint64_t want)
{
    uint64_t v = 12345;

    TEST_ASSERT(xtk__parse_u64(s, 0, UINT64_MAX, flags, &v) == 0 && v == want,
                "'%s' gave %llu, want %llu", s, (unsigned long long)v,
                (unsigned long long)want);
}

static void bad(const char *s, unsigned int flags)
{
    uint64_t v = 12345;

    TEST_ASSERT(xtk__parse_u64(s, 0, UINT64_MAX, flags, &v) == -1 &&
                    v == 12345 && (errno == EINVAL || errno == ERANGE),
                "'%s' was taken (%llu)", s, (unsigned long long)v);
}

static void test_forms(void)
{
    ok("0", 0, 0);
    ok("42", 0, 42);
    ok("010", 0, 10); /* not octal */
    ok("0x10", 0, 16);
    ok("0XfF", 0, 255);
    ok("18446744073709551615", 0, UINT64_MAX);
    bad("18446744073709551616", 0);
    bad("", 0);
    bad(NULL, 0);
    bad(" 5", 0);
    bad("+5", 0);
    bad("-1", 0);
    bad(" -1", 0);
    bad("5 ", 0);
    bad("0x", 0);
    bad("0x-1", 0);
    bad("0x 1", 0);
    bad("1.5", 0);
    bad("12abc", 0);
}

static void test_sizes(void)
{
    ok("1K", XTK__NUM_SIZES, 1024);
    ok("3M", XTK__NUM_SIZES, 3u << 20);
    ok("2G", XTK__NUM_SIZES, 2ull << 30);
    ok("7", XTK__NUM_SIZES, 7);
    bad("1K", 0);
    bad("1k", XTK__NUM_SIZES);
    bad("1KB", XTK__NUM_SIZES);
    bad("K", XTK__NUM_SIZES);
    bad("17179869184G", XTK__NUM_SIZES); /* 2^64 */
    ok("17179869183G", XTK__NUM_SIZES, 17179869183ull << 30);
}

static void test_ranges(void)
{
    uint64_t v;
    uint32_t w = 7;

    TEST_ASSERT_ERRNO(xtk__parse_u64("0", 1, 10, 0, &v), ERANGE);
    TEST_ASSERT_ERRNO(xtk__parse_u64("11", 1, 10, 0, &v), ERANGE);
    TEST_ASSERT(xtk__parse_u64("10", 1, 10, 0, &v) == 0 && v == 10, "max");
    TEST_ASSERT(xtk__parse_u32("4294967295", 0, UINT32_MAX, &w) == 0 &&
                    w == UINT32_MAX,
                "u32 max");
    TEST_ASSERT_ERRNO(xtk__parse_u32("4294967296", 0, UINT32_MAX, &w), ERANGE);
    TEST_ASSERT_ERRNO(xtk__parse_u32("0", 1, 5, &w), ERANGE);
    TEST_ASSERT(w == UINT32_MAX, "untouched on failure");
}

int main(void)
{
    TEST_RUN(test_forms);
    TEST_RUN(test_sizes);
    TEST_RUN(test_ranges);
    return 0;
}

/*
 * parse-num.h - the one parser of numbers given on xtk's command lines:
 * xtk-save, xtk-restore and xtk-stream (through tools/cli.c), xtk, xtk-hv
 * and xsd-lite.  Header-only, because those programs link different
 * libraries (libxtk's exported API, or the internal one).
 *
 * A number is decimal, or hexadecimal after 0x; leading zeros are decimal
 * (never octal), and nothing else is accepted: no sign, no space, nothing
 * after it but, when XTK__NUM_SIZES is given, one of K, M, G (powers of
 * 1024).  It must lie in [min, max].
 */
#ifndef XTK_PARSE_NUM_H
#define XTK_PARSE_NUM_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XTK__NUM_SIZES 0x1u /* K, M, G suffixes */

/* 0 and *out set, or -1 (EINVAL or ERANGE) and *out untouched. */
static inline int xtk__parse_u64(const char *s, uint64_t min, uint64_t max,
                                 unsigned int flags, uint64_t *out)
{
    const char *p = s;
    unsigned long long v;
    unsigned int shift = 0;
    int base = 10;
    char *end;

    if (!s || s[0] < '0' || s[0] > '9')
        goto bad;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        p = s + 2;
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
              (*p >= 'A' && *p <= 'F')))
            goto bad;
    }
    errno = 0;
    v = strtoull(p, &end, base);
    if (errno)
        return -1;
    if (*end && (flags & XTK__NUM_SIZES)) {
        const char *u = strchr("KMG", end[0]);

        if (!end[0] || !u || end[1])
            goto bad;
        shift = 10 * (unsigned int)(u - "KMG" + 1);
        if (v > UINT64_MAX >> shift) {
            errno = ERANGE;
            return -1;
        }
        v <<= shift;
    } else if (*end) {
        goto bad;
    }
    if (v < min || v > max) {
        errno = ERANGE;
        return -1;
    }
    *out = v;
    return 0;
bad:
    errno = EINVAL;
    return -1;
}

/* The same, into a uint32_t. */
static inline int xtk__parse_u32(const char *s, uint32_t min, uint32_t max,
                                 uint32_t *out)
{
    uint64_t v;

    if (xtk__parse_u64(s, min, max, 0, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

#endif /* XTK_PARSE_NUM_H */

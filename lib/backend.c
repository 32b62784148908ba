/*
 * backend.c - what every backend shares: the state-record framing and
 * where its programs are (the choice of backend: backend-pick.c).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define XTK_LOG_CONTEXT "backend"
#define REC_BODY_MAX (16u << 20)

int xtk__rec_next(const void *buf, size_t len, size_t *off, uint32_t *type,
                  const void **body, uint32_t *length)
{
    const char *p = buf;
    struct xtk__rec_hdr h;
    size_t padded;

    if (*off == len)
        return 0;
    if (*off > len || len - *off < sizeof(h)) {
        errno = EBADMSG;
        return -1;
    }
    memcpy(&h, p + *off, sizeof(h));
    padded = ((size_t)h.length + 7) & ~(size_t)7;
    if (padded > len - *off - sizeof(h)) {
        errno = EBADMSG;
        return -1;
    }
    for (size_t i = h.length; i < padded; i++)
        if (p[*off + sizeof(h) + i]) {
            errno = EBADMSG;
            return -1;
        }
    *type = h.type;
    *length = h.length;
    *body = p + *off + sizeof(h);
    *off += sizeof(h) + padded;
    return 1;
}

int xtk__rec_append(void **buf, size_t *len, size_t *cap, uint32_t type,
                    const void *body1, size_t len1, const void *body2,
                    size_t len2)
{
    struct xtk__rec_hdr h = {type, (uint32_t)(len1 + len2)};
    size_t total, padded;
    char *p;

    if (len1 > REC_BODY_MAX || len2 > REC_BODY_MAX - len1)
        return xtk__fail(EINVAL);
    padded = (len1 + len2 + 7) & ~(size_t)7;
    total = sizeof(h) + padded;
    if (*cap - *len < total) {
        size_t ncap = *cap ? *cap * 2 : 4096;
        while (ncap - *len < total)
            ncap *= 2;
        p = realloc(*buf, ncap);
        if (!p)
            return -1;
        *buf = p;
        *cap = ncap;
    }
    p = (char *)*buf + *len;
    memcpy(p, &h, sizeof(h));
    if (len1)
        memcpy(p + sizeof(h), body1, len1);
    if (len2)
        memcpy(p + sizeof(h) + len1, body2, len2);
    memset(p + sizeof(h) + len1 + len2, 0, padded - len1 - len2);
    *len += total;
    return 0;
}

/*
 * Where a program is: $env, else beside the running program (a build
 * tree: xtk-hv, xtk-xen-guard and guests/ are next to xtk; libtool runs an
 * uninstalled program linked to libxtk.so from .libs/, one level down),
 * else the installed path.
 */
const char *xtk__find_program(const char *env, const char *installed,
                              const char *beside, char *buf, size_t size)
{
    const char *v = getenv(env);
    char exe[PATH_MAX];
    ssize_t n;
    char *slash;

    if (v && *v)
        return v;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, size, "%s/%s", exe, beside);
            if (access(buf, F_OK) == 0)
                return buf;
            slash = strrchr(exe, '/');
            if (slash && !strcmp(slash, "/.libs")) {
                *slash = 0;
                snprintf(buf, size, "%s/%s", exe, beside);
                if (access(buf, F_OK) == 0)
                    return buf;
            }
        }
    }
    return installed;
}

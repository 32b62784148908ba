/*
 * log.c - xtk-hv's log lines: time, domain id, message, on stderr (which
 * main.c points at <rundir>/<domid>.log when xtk-hv runs as a daemon).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hv.h"

uint32_t hv_log_domid;
int hv_log_quiet;
int hv_log_hold;
char hv_log_last[HV_LOG_LAST_MAX];

/* Lines held while hv_log_hold is set (what does not fit is dropped). */
static char held[4096];
static size_t held_len;

void hv_log(const char *fmt, ...)
{
    int e = errno;
    char buf[512], line[600];
    va_list ap;
    struct timespec ts;
    int n;

    if (hv_log_quiet)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    n = (int)strnlen(buf, sizeof(hv_log_last) - 1);
    memcpy(hv_log_last, buf, (size_t)n);
    hv_log_last[n] = 0;
    n = snprintf(line, sizeof(line), "%lld.%03ld xtk-hv[%u]: %s\n",
                 (long long)ts.tv_sec, ts.tv_nsec / 1000000, hv_log_domid, buf);
    if (n >= (int)sizeof(line))
        n = sizeof(line) - 1;
    if (!hv_log_hold) {
        fputs(line, stderr);
    } else if (held_len + (size_t)n <= sizeof(held)) {
        memcpy(held + held_len, line, (size_t)n);
        held_len += (size_t)n;
    }
    errno = e;
}

void hv_log_release(void)
{
    if (held_len)
        fwrite(held, 1, held_len, stderr);
    held_len = 0;
    hv_log_hold = 0;
}

uint64_t hv_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

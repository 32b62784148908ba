/*
 * log.c - xtk-hv's log lines: time, domain id, message, on stderr (which
 * main.c points at <rundir>/<domid>.log when xtk-hv runs as a daemon).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "hv.h"

uint32_t hv_log_domid;
int hv_log_quiet;

void hv_log(const char *fmt, ...)
{
    int e = errno;
    char buf[512];
    va_list ap;
    struct timespec ts;

    if (hv_log_quiet)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%lld.%03ld xtk-hv[%u]: %s\n", (long long)ts.tv_sec,
            ts.tv_nsec / 1000000, hv_log_domid, buf);
    errno = e;
}

uint64_t hv_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

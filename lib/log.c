/*
 * log.c - the stderr logger and the library's logging entry points.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "xtk-internal.h"

static const char *const level_names[] = {
    [XTK_LOG_DEBUG] = "debug",       [XTK_LOG_VERBOSE] = "verbose",
    [XTK_LOG_DETAIL] = "detail",     [XTK_LOG_PROGRESS] = "progress",
    [XTK_LOG_INFO] = "info",         [XTK_LOG_NOTICE] = "notice",
    [XTK_LOG_WARN] = "warning",      [XTK_LOG_ERROR] = "error",
    [XTK_LOG_CRITICAL] = "critical",
};

const char *xtk_log_level_name(xtk_log_level level)
{
    if (level < XTK_LOG_DEBUG || level > XTK_LOG_CRITICAL)
        return "?";
    return level_names[level];
}

int xtk_log_level_from_name(const char *name)
{
    if (!name)
        return xtk__fail(EINVAL);
    for (int l = XTK_LOG_DEBUG; l <= XTK_LOG_CRITICAL; l++)
        if (!strcasecmp(name, level_names[l]))
            return l;
    if (!strcasecmp(name, "warn"))
        return XTK_LOG_WARN;
    return xtk__fail(EINVAL);
}

struct stderr_logger {
    struct xtk_logger vtable; /* first: the caller sees only this */
    xtk_log_level min_level;
    unsigned int flags;
    int progress_shown; /* a progress line is on screen, unterminated */
};

static void stderr_end_progress(struct stderr_logger *sl)
{
    if (sl->progress_shown) {
        fputc('\n', stderr);
        sl->progress_shown = 0;
    }
}

static void __attribute__((format(printf, 5, 0)))
stderr_vmessage(struct xtk_logger *lg, xtk_log_level level, int errnoval,
                const char *context, const char *format, va_list al)
{
    struct stderr_logger *sl = (struct stderr_logger *)lg;
    int saved = errno;
    char line[1024];
    size_t n = 0;

    if (level < sl->min_level)
        return;
    if (sl->flags & XTK_LOGGER_TIMESTAMPS) {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n += strftime(line, sizeof(line), "%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ld ",
                              ts.tv_nsec / 1000);
    }
    if (n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              "xtk: %s: %s: ", context,
                              xtk_log_level_name(level));
    if (n < sizeof(line))
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, format, al);
    if (errnoval >= 0 && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s",
                              strerror(errnoval));
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    stderr_end_progress(sl);
    fprintf(stderr, "%.*s\n", (int)n, line);
    errno = saved;
}

static void stderr_progress(struct xtk_logger *lg, const char *context,
                            const char *doing_what, unsigned long done,
                            unsigned long total)
{
    struct stderr_logger *sl = (struct stderr_logger *)lg;
    int saved = errno;

    if (XTK_LOG_PROGRESS < sl->min_level && !(sl->flags & XTK_LOGGER_PROGRESS))
        return;
    if (sl->flags & XTK_LOGGER_PROGRESS) {
        unsigned pct = total ? (unsigned)((done * 100.0) / total) : 0;
        unsigned bars = pct / 4;

        fprintf(stderr, "\r%s: %-24s [%.*s%*s] %3u%%", context, doing_what,
                (int)bars, "=========================", (int)(25 - bars), "",
                pct);
        sl->progress_shown = 1;
        if (total && done >= total)
            stderr_end_progress(sl);
    } else {
        fprintf(stderr, "xtk: %s: %s: %lu/%lu\n", context, doing_what, done,
                total);
    }
    errno = saved;
}

static void stderr_destroy(struct xtk_logger *lg)
{
    struct stderr_logger *sl = (struct stderr_logger *)lg;

    stderr_end_progress(sl);
    free(sl);
}

struct xtk_logger *xtk_logger_stderr_new(xtk_log_level min_level,
                                         unsigned int flags)
{
    struct stderr_logger *sl;

    if (min_level < XTK_LOG_DEBUG || min_level > XTK_LOG_CRITICAL + 1 ||
        (flags & ~(XTK_LOGGER_TIMESTAMPS | XTK_LOGGER_PROGRESS)))
        return xtk__fail_null(EINVAL);
    sl = calloc(1, sizeof(*sl));
    if (!sl)
        return NULL;
    sl->vtable.vmessage = stderr_vmessage;
    sl->vtable.progress = stderr_progress;
    sl->vtable.destroy = stderr_destroy;
    sl->min_level = min_level;
    sl->flags = flags;
    return &sl->vtable;
}

void xtk_logger_set_level(struct xtk_logger *lg, xtk_log_level min_level)
{
    if (lg && lg->vmessage == stderr_vmessage)
        ((struct stderr_logger *)lg)->min_level = min_level;
}

void xtk_logger_destroy(struct xtk_logger *lg)
{
    if (lg && lg->destroy)
        lg->destroy(lg);
}

void xtk__vlog(struct xtk_ctx *ctx, xtk_log_level level, int errnoval,
               const char *context, const char *fmt, va_list al)
{
    int saved = errno;

    if (ctx && level >= XTK_LOG_ERROR)
        ctx->errors++;
    if (ctx && ctx->logger && ctx->logger->vmessage)
        ctx->logger->vmessage(ctx->logger, level, errnoval, context, fmt, al);
    errno = saved;
}

void xtk__log(struct xtk_ctx *ctx, xtk_log_level level, int errnoval,
              const char *context, const char *fmt, ...)
{
    va_list al;

    va_start(al, fmt);
    xtk__vlog(ctx, level, errnoval, context, fmt, al);
    va_end(al);
}

void xtk__progress(struct xtk_ctx *ctx, const char *context,
                   const char *doing_what, unsigned long done,
                   unsigned long total)
{
    int saved = errno;

    if (ctx && ctx->logger && ctx->logger->progress)
        ctx->logger->progress(ctx->logger, context, doing_what, done, total);
    errno = saved;
}

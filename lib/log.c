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
    /* The bar on screen: whose, since when and from what amount (for the
     * rate), and how long its line was (a shorter one pads over it). */
    char bar_label[96];
    int bar_live; /* bar_label's bar has begun and not ended */
    uint64_t bar_t0;
    unsigned long bar_done0;
    int bar_len;
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

/* "12.3 MiB" and the like, for an amount of bytes. */
static void human_bytes(char *buf, size_t size, double b)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    unsigned int u = 0;

    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

/*
 * One progress line, redrawn in place: "CONTEXT: WHAT [bar] PCT%  RATE
 * LEFT left  ETA M:SS" (libxtk counts progress in bytes).  The rate is
 * measured from the first report of this label on, so it shows from the
 * second; another label starts a new line.
 */
static void draw_progress(struct stderr_logger *sl, const char *context,
                          const char *doing_what, unsigned long done,
                          unsigned long total)
{
    uint64_t now = xtk_now_ns();
    char label[96], line[256], rate_s[32] = "", left_s[32], eta_s[32] = "--";
    double secs, rate = 0;
    unsigned int pct = 0, bars;
    int n;

    snprintf(label, sizeof(label), "%s: %s", context, doing_what);
    if (!sl->bar_live || strcmp(label, sl->bar_label)) {
        stderr_end_progress(sl);
        snprintf(sl->bar_label, sizeof(sl->bar_label), "%s", label);
        sl->bar_live = 1;
        sl->bar_t0 = now;
        sl->bar_done0 = done;
        sl->bar_len = 0;
    }
    /* "Starting, 0 of total": the clock starts, nothing to draw yet (a
     * short step then shows nothing at all). */
    if (!done && total && !sl->progress_shown)
        return;
    secs = (double)(now - sl->bar_t0) / 1e9;
    if (secs > 0.05 && done > sl->bar_done0)
        rate = (double)(done - sl->bar_done0) / secs;
    if (total) {
        pct = done >= total ? 100 : (unsigned int)(done * 100.0 / total);
        human_bytes(left_s, sizeof(left_s),
                    done >= total ? 0 : (double)(total - done));
        if (rate > 0 || done >= total) {
            double eta = done >= total ? 0 : (double)(total - done) / rate;

            snprintf(eta_s, sizeof(eta_s), "%u:%02u", (unsigned int)(eta / 60),
                     (unsigned int)eta % 60);
        }
    }
    if (rate > 0) {
        human_bytes(rate_s, sizeof(rate_s), rate);
        strcat(rate_s, "/s");
    } else {
        strcpy(rate_s, "--/s");
    }
    bars = pct / 4;
    if (total)
        n = snprintf(line, sizeof(line),
                     "%-28s [%.*s%*s] %3u%%  %12s  %10s left  ETA %s", label,
                     (int)bars, "=========================", (int)(25 - bars),
                     "", pct, rate_s, left_s, eta_s);
    else
        n = snprintf(line, sizeof(line), "%s ...", label);
    if (n >= (int)sizeof(line))
        n = sizeof(line) - 1;
    fprintf(stderr, "\r%s%*s", line, sl->bar_len > n ? sl->bar_len - n : 0, "");
    sl->bar_len = n;
    sl->progress_shown = 1;
    if (total && done >= total) {
        stderr_end_progress(sl);
        sl->bar_live = 0;
    }
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
        draw_progress(sl, context, doing_what, done, total);
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

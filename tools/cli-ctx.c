/*
 * cli-ctx.c - what xtk's programs that open a libxtk context share
 * (cli.h): the report writer and the logger that counts the errors it
 * printed.  Apart from cli.c so that xtk-hv, which opens no context,
 * links neither the context nor libevent (every domain's process start
 * loads what it links).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_write_report(const struct xtk_stats *st, int format, const char *path)
{
    char *text = xtk_stats_format(st, format);
    FILE *f;
    int rc = 0;

    if (!text) {
        fprintf(stderr, "%s: cannot format the report: %s\n", cli_prog,
                strerror(errno));
        return -1;
    }
    f = !path ? stderr : strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
        free(text);
        return -1;
    }
    if (fputs(text, f) < 0 || fflush(f) != 0)
        rc = -1;
    if (f != stdout && f != stderr && fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "%s: writing %s: %s\n", cli_prog,
                path ? path : "stderr", strerror(errno));
    free(text);
    return rc;
}

/*
 * The programs' logger: the stderr logger, and a count of the errors it
 * printed, so that a program adds its own line about a failure only when
 * the library has not said why already.
 */
struct counting_logger {
    struct xtk_logger vtable; /* first */
    struct xtk_logger *inner;
};

static struct xtk_logger *cli_inner;
static unsigned int cli_errors;

static void __attribute__((format(printf, 5, 0)))
counting_vmessage(struct xtk_logger *lg, xtk_log_level level, int errnoval,
                  const char *context, const char *format, va_list al)
{
    struct counting_logger *cl = (struct counting_logger *)lg;

    if (level >= XTK_LOG_ERROR)
        cli_errors++;
    cl->inner->vmessage(cl->inner, level, errnoval, context, format, al);
}

static void counting_progress(struct xtk_logger *lg, const char *context,
                              const char *doing_what, unsigned long done,
                              unsigned long total)
{
    struct counting_logger *cl = (struct counting_logger *)lg;

    if (cl->inner->progress)
        cl->inner->progress(cl->inner, context, doing_what, done, total);
}

static void counting_destroy(struct xtk_logger *lg)
{
    struct counting_logger *cl = (struct counting_logger *)lg;

    xtk_logger_destroy(cl->inner);
    if (cli_inner == cl->inner)
        cli_inner = NULL;
    free(cl);
}

struct xtk_ctx *cli_ctx_open(void)
{
    struct xtk_logger *lg = xtk_logger_stderr_new(
        XTK_LOG_WARN, isatty(2) ? XTK_LOGGER_PROGRESS : 0);
    struct counting_logger *cl = lg ? calloc(1, sizeof(*cl)) : NULL;
    struct xtk_ctx *ctx;

    if (!cl) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        xtk_logger_destroy(lg);
        return NULL;
    }
    cl->vtable.vmessage = counting_vmessage;
    cl->vtable.progress = counting_progress;
    cl->vtable.destroy = counting_destroy;
    cl->inner = lg;
    ctx = xtk_ctx_open(&cl->vtable, NULL, XTK_CTX_OWN_LOGGER);
    if (!ctx) { /* the logger may be freed already: left alone */
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        return NULL;
    }
    cli_inner = lg;
    return ctx;
}

void cli_verbose(void)
{
    if (cli_inner)
        xtk_logger_set_level(cli_inner, XTK_LOG_DEBUG);
}

int cli_errors_logged(void)
{
    return cli_errors > 0;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;

    if (cli_errors)
        return;
    fprintf(stderr, "%s: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

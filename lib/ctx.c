/*
 * ctx.c - the libxtk context: logger and event loop.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "xtk-internal.h"

#define XTK_LOG_CONTEXT "ctx"

static void __attribute__((format(printf, 5, 0)))
null_vmessage(struct xtk_logger *lg, xtk_log_level level, int errnoval,
              const char *context, const char *fmt, va_list al)
{
}

/* The logger of a context opened with XTK_CTX_SILENT: drops everything. */
static struct xtk_logger null_logger = {.vmessage = null_vmessage};

const char *xtk_version(void)
{
    return PACKAGE_VERSION;
}

struct xtk_ctx *xtk_ctx_open(struct xtk_logger *logger, struct event_base *base,
                             unsigned int flags)
{
    struct xtk_ctx *ctx;
    static int threads_ready;

    if (flags & ~(XTK_CTX_OWN_LOGGER | XTK_CTX_SILENT))
        return xtk__fail_null(EINVAL);
    if (logger && !logger->vmessage)
        return xtk__fail_null(EINVAL);
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->flags = flags;

    if (logger) {
        ctx->logger = logger;
        ctx->own_logger = !!(flags & XTK_CTX_OWN_LOGGER);
    } else if (flags & XTK_CTX_SILENT) {
        ctx->logger = &null_logger;
    } else {
        ctx->logger = xtk_logger_stderr_new(XTK_LOG_WARN, 0);
        if (!ctx->logger)
            goto err_ctx;
        ctx->own_logger = 1;
    }

    /* Sender threads post events to the loop: libevent must be locked. */
    if (!__atomic_load_n(&threads_ready, __ATOMIC_ACQUIRE)) {
        if (evthread_use_pthreads() < 0) {
            errno = ENOMEM;
            goto err_logger;
        }
        __atomic_store_n(&threads_ready, 1, __ATOMIC_RELEASE);
    }

    if (base) {
        ctx->base = base;
    } else {
        /* Precise timers: by default libevent reads the coarse monotonic
         * clock (4 ms a tick on a 250 Hz kernel), which made a 10 ms
         * checkpoint interval 12-14 ms. */
        struct event_config *cfg = event_config_new();

        if (cfg)
            event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        ctx->base = cfg ? event_base_new_with_config(cfg) : NULL;
        if (cfg)
            event_config_free(cfg);
        if (!ctx->base) {
            errno = ENOMEM;
            goto err_logger;
        }
        ctx->own_base = 1;
    }
    return ctx;

err_logger:
    if (ctx->own_logger)
        xtk_logger_destroy(ctx->logger);
err_ctx:
    free(ctx);
    return NULL;
}

void xtk_ctx_close(struct xtk_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->own_base)
        event_base_free(ctx->base);
    if (ctx->own_logger)
        xtk_logger_destroy(ctx->logger);
    free(ctx->rundir);
    free(ctx);
}

int xtk_ctx_set_rundir(struct xtk_ctx *ctx, const char *dir)
{
    char *copy = NULL;

    if (!ctx || (dir && (!*dir || dir[0] != '/')))
        return xtk__fail(EINVAL);
    if (dir && !(copy = strdup(dir)))
        return -1;
    free(ctx->rundir);
    ctx->rundir = copy;
    return 0;
}

struct event_base *xtk_ctx_event_base(struct xtk_ctx *ctx)
{
    return ctx ? ctx->base : xtk__fail_null(EINVAL);
}

struct xtk_logger *xtk_ctx_logger(struct xtk_ctx *ctx)
{
    return ctx ? ctx->logger : xtk__fail_null(EINVAL);
}

int xtk__loop_until(struct xtk_ctx *ctx, const int *done)
{
    while (!*done)
        if (event_base_loop(ctx->base, EVLOOP_ONCE) < 0)
            return xtk__fail(EIO);
    return 0;
}

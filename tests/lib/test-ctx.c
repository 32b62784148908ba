/*
 * test-ctx.c - the context and the loggers.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "test.h"
#include "xtk-internal.h"

struct capture_logger {
    struct xtk_logger vtable;
    int messages;
    xtk_log_level last_level;
    int last_errno;
    char last[256];
    int destroyed;
};

static void __attribute__((format(printf, 5, 0)))
capture_vmessage(struct xtk_logger *lg, xtk_log_level level, int errnoval,
                 const char *context, const char *fmt, va_list al)
{
    struct capture_logger *c = (struct capture_logger *)lg;
    char msg[200];

    vsnprintf(msg, sizeof(msg), fmt, al);
    snprintf(c->last, sizeof(c->last), "%s|%s", context, msg);
    c->messages++;
    c->last_level = level;
    c->last_errno = errnoval;
    errno = 12345; /* a careless logger: xtk__log must restore errno */
}

static void capture_destroy(struct xtk_logger *lg)
{
    ((struct capture_logger *)lg)->destroyed++;
}

static void test_open_close_defaults(void)
{
    struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, 0);

    TEST_ASSERT(ctx, "xtk_ctx_open(NULL, NULL, 0)");
    TEST_ASSERT(xtk_ctx_event_base(ctx), "a private event base");
    TEST_ASSERT(xtk_ctx_logger(ctx), "a default logger");
    xtk_ctx_close(ctx);
    xtk_ctx_close(NULL);
}

static void test_bad_arguments(void)
{
    struct xtk_logger no_hooks = {0};

    errno = 0;
    TEST_ASSERT(!xtk_ctx_open(NULL, NULL, 0x80) && errno == EINVAL,
                "unknown flag");
    errno = 0;
    TEST_ASSERT(!xtk_ctx_open(&no_hooks, NULL, 0) && errno == EINVAL,
                "logger without vmessage");
    errno = 0;
    TEST_ASSERT(!xtk_ctx_event_base(NULL) && errno == EINVAL, "NULL ctx");
    errno = 0;
    TEST_ASSERT(!xtk_logger_stderr_new(0, 0) && errno == EINVAL, "level 0");
    errno = 0;
    TEST_ASSERT(!xtk_logger_stderr_new(XTK_LOG_INFO, 0x100) && errno == EINVAL,
                "unknown logger flag");
}

static void test_caller_logger_and_base(void)
{
    struct capture_logger cap = {
        .vtable = {.vmessage = capture_vmessage, .destroy = capture_destroy}};
    struct event_base *base = event_base_new();
    struct xtk_ctx *ctx;

    TEST_ASSERT(base, "event_base_new");
    ctx = xtk_ctx_open(&cap.vtable, base, 0);
    TEST_ASSERT(ctx, "open with the caller's logger and base");
    TEST_ASSERT(xtk_ctx_event_base(ctx) == base, "the caller's base is used");

    errno = EIO;
    xtk__log(ctx, XTK_LOG_ERROR, ENOENT, "unit", "value %d", 42);
    TEST_ASSERT(errno == EIO, "errno preserved across logging, got %d", errno);
    TEST_ASSERT(cap.messages == 1, "one message, got %d", cap.messages);
    TEST_ASSERT(!strcmp(cap.last, "unit|value 42"), "text: %s", cap.last);
    TEST_ASSERT(cap.last_level == XTK_LOG_ERROR && cap.last_errno == ENOENT,
                "level %d errno %d", cap.last_level, cap.last_errno);

    xtk_ctx_close(ctx);
    TEST_ASSERT(cap.destroyed == 0, "a logger not given away is not freed");
    ctx = xtk_ctx_open(&cap.vtable, base, XTK_CTX_OWN_LOGGER);
    TEST_ASSERT(ctx, "open owning the logger");
    xtk_ctx_close(ctx);
    TEST_ASSERT(cap.destroyed == 1, "an owned logger is destroyed once");
    event_base_free(base); /* still ours: the context must not have freed it */
}

static void test_silent(void)
{
    struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);

    TEST_ASSERT(ctx, "silent context");
    errno = EPERM;
    xtk__log(ctx, XTK_LOG_CRITICAL, -1, "unit", "dropped");
    TEST_ASSERT(errno == EPERM, "errno preserved");
    xtk_ctx_close(ctx);
}

/* The stderr logger filters by level and appends the errno text. */
static void test_stderr_logger(void)
{
    char path[] = "/tmp/xtk-test-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    struct xtk_logger *lg;
    struct xtk_ctx *ctx;
    char buf[512] = "";
    FILE *f;

    TEST_ASSERT(fd >= 0 && saved >= 0, "mkstemp/dup");
    fflush(stderr);
    dup2(fd, 2);
    lg = xtk_logger_stderr_new(XTK_LOG_INFO, 0);
    TEST_ASSERT(lg, "stderr logger");
    ctx = xtk_ctx_open(lg, NULL, XTK_CTX_OWN_LOGGER);
    TEST_ASSERT(ctx, "ctx");
    xtk__log(ctx, XTK_LOG_DEBUG, -1, "unit", "hidden");
    xtk__log(ctx, XTK_LOG_WARN, ENOSPC, "unit", "shown %s", "here");
    xtk_logger_set_level(lg, XTK_LOG_ERROR);
    xtk__log(ctx, XTK_LOG_WARN, -1, "unit", "hidden too");
    xtk_ctx_close(ctx);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    f = fdopen(fd, "r");
    TEST_ASSERT(f, "fdopen");
    rewind(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    unlink(path);
    TEST_ASSERT(!strcmp(buf, "xtk: unit: warning: shown here: "
                             "No space left on device\n"),
                "stderr logger wrote [%s]", buf);
}

static void test_level_names(void)
{
    for (int l = XTK_LOG_DEBUG; l <= XTK_LOG_CRITICAL; l++)
        TEST_ASSERT(xtk_log_level_from_name(xtk_log_level_name(l)) == l,
                    "level %d round trip", l);
    TEST_ASSERT(xtk_log_level_from_name("warn") == XTK_LOG_WARN, "alias");
    TEST_ASSERT_ERRNO(xtk_log_level_from_name("loud"), EINVAL);
    TEST_ASSERT_ERRNO(xtk_log_level_from_name(NULL), EINVAL);
    TEST_ASSERT(!strcmp(xtk_log_level_name(99), "?"), "out of range");
}

int main(void)
{
    TEST_RUN(test_open_close_defaults);
    TEST_RUN(test_bad_arguments);
    TEST_RUN(test_caller_logger_and_base);
    TEST_RUN(test_silent);
    TEST_RUN(test_stderr_logger);
    TEST_RUN(test_level_names);
    TEST_ASSERT(!strcmp(xtk_version(), PACKAGE_VERSION), "version");
    return 0;
}

/*
 * xtk-internal.h - what libxtk's own files share and the library does not
 * export.  Cross-file internals are named xtk__*.
 */
#ifndef XTK_INTERNAL_H
#define XTK_INTERNAL_H

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <xtk/xtk.h>

#define XTK__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct xtk_ctx {
    struct xtk_logger *logger;
    struct event_base *base;
    unsigned int flags;
    unsigned int own_base : 1;
    unsigned int own_logger : 1;
    unsigned int errors; /* messages logged at XTK_LOG_ERROR or above */
    char *rundir;        /* xtk_ctx_set_rundir(); NULL: the default */
};

/*
 * Logs through the context's logger.  errnoval is -1 or the errno the
 * message is about.  errno is preserved.  ctx may be NULL (then nothing is
 * logged).
 */
void xtk__log(struct xtk_ctx *ctx, xtk_log_level level, int errnoval,
              const char *context, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void xtk__vlog(struct xtk_ctx *ctx, xtk_log_level level, int errnoval,
               const char *context, const char *fmt, va_list al)
    __attribute__((format(printf, 5, 0)));
void xtk__progress(struct xtk_ctx *ctx, const char *context,
                   const char *doing_what, unsigned long done,
                   unsigned long total);

/* Shorthands; each file defines XTK_LOG_CONTEXT ("stream", "kvm", ...). */
#define XTK_DEBUG(ctx, ...)                                                    \
    xtk__log((ctx), XTK_LOG_DEBUG, -1, XTK_LOG_CONTEXT, __VA_ARGS__)
#define XTK_INFO(ctx, ...)                                                     \
    xtk__log((ctx), XTK_LOG_INFO, -1, XTK_LOG_CONTEXT, __VA_ARGS__)
#define XTK_WARN(ctx, ...)                                                     \
    xtk__log((ctx), XTK_LOG_WARN, -1, XTK_LOG_CONTEXT, __VA_ARGS__)
#define XTK_ERROR(ctx, ...)                                                    \
    xtk__log((ctx), XTK_LOG_ERROR, -1, XTK_LOG_CONTEXT, __VA_ARGS__)
/* An error about the current errno. */
#define XTK_PERROR(ctx, ...)                                                   \
    xtk__log((ctx), XTK_LOG_ERROR, errno, XTK_LOG_CONTEXT, __VA_ARGS__)

/*
 * Runs the context's event loop, one pass at a time, until *done is set
 * (by a callback the loop runs).  Returns 0, or -1 (EIO) if the loop
 * fails.  The blocking forms of the asynchronous calls use it.
 */
int xtk__loop_until(struct xtk_ctx *ctx, const int *done);

/* Little-endian fields at any alignment (the stream's, the index's). */
static inline uint32_t xtk__get_le32(const void *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline uint64_t xtk__get_le64(const void *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline void xtk__put_le32(void *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static inline void xtk__put_le64(void *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

/* Sets errno and returns -1: `return xtk__fail(EINVAL);` */
static inline int xtk__fail(int err)
{
    errno = err;
    return -1;
}

/* Sets errno and returns NULL. */
static inline void *xtk__fail_null(int err)
{
    errno = err;
    return NULL;
}

/*
 * Zeroed memory for a per-frame array (8 MiB for a 4 GiB guest's offsets):
 * pages straight from the kernel, each zeroed when first touched.  calloc
 * of that much comes from the heap once glibc has raised its mmap
 * threshold (after freeing a larger block: any long-lived process that
 * restored a domain before) and is then cleared on the spot, ~5 ms here.
 * NULL (errno) if there is no room.
 */
static inline void *xtk__frames_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

static inline void xtk__frames_free(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 1);
}

#endif /* XTK_INTERNAL_H */

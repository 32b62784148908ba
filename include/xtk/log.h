/*
 * xtk/log.h - how libxtk reports what it does.
 *
 * libxtk never prints on its own.  Everything it has to say goes through a
 * struct xtk_logger that the caller provides (or the stderr logger below),
 * in the manner of Xen's xentoollog.  A caller embeds struct xtk_logger as
 * the first member of its own structure and fills in the three hooks.
 */
#ifndef XTK_LOG_H
#define XTK_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum xtk_log_level {
    XTK_LOG_DEBUG = 1,
    XTK_LOG_VERBOSE,
    XTK_LOG_DETAIL,
    XTK_LOG_PROGRESS, /* also the level of progress() reports */
    XTK_LOG_INFO,
    XTK_LOG_NOTICE,
    XTK_LOG_WARN,
    XTK_LOG_ERROR,
    XTK_LOG_CRITICAL,
} xtk_log_level;

struct xtk_logger {
    /*
     * One message.  errnoval is the errno the message is about, or -1.
     * context names the part of xtk speaking ("stream", "kvm", ...), never
     * NULL.  The hook must not change errno.
     */
    void (*vmessage)(struct xtk_logger *lg, xtk_log_level level, int errnoval,
                     const char *context, const char *format, va_list al)
        __attribute__((format(printf, 5, 0)));
    /*
     * Progress of a long operation: done out of total units (total may be
     * 0 when unknown).  May be NULL.
     */
    void (*progress)(struct xtk_logger *lg, const char *context,
                     const char *doing_what, unsigned long done,
                     unsigned long total);
    /* Frees the logger.  Called by xtk_logger_destroy(); may be NULL. */
    void (*destroy)(struct xtk_logger *lg);
};

/* Flags for xtk_logger_stderr_new(). */
#define XTK_LOGGER_TIMESTAMPS 0x1u /* prefix each line with the time */
#define XTK_LOGGER_PROGRESS 0x2u   /* draw progress on the line (a tty) */

/*
 * A logger writing to stderr every message at min_level or above.
 * Returns NULL on failure, in which case errno will be set.
 */
struct xtk_logger *xtk_logger_stderr_new(xtk_log_level min_level,
                                         unsigned int flags);

/* Changes the minimum level of a logger made by xtk_logger_stderr_new(). */
void xtk_logger_set_level(struct xtk_logger *lg, xtk_log_level min_level);

/* Destroys any logger through its destroy hook.  Accepts NULL. */
void xtk_logger_destroy(struct xtk_logger *lg);

/* "debug", "info", ... for a level; "?" for a value out of range. */
const char *xtk_log_level_name(xtk_log_level level);

/*
 * Parses a level name as xtk_log_level_name() prints it.  Returns the level,
 * or -1 with errno set to EINVAL.
 */
int xtk_log_level_from_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* XTK_LOG_H */

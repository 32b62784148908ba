/*
 * xtk/ctx.h - the libxtk context.
 *
 * Every libxtk object hangs off a struct xtk_ctx, which holds the logger
 * and the event loop.  libxtk is usable from someone else's event loop: pass
 * your own struct event_base and libxtk registers its events there, or pass
 * NULL and the context makes (and owns) its own.
 *
 * Conventions for the whole library: calls returning int return -1 on
 * failure, in which case errno will be set; calls returning a pointer return
 * NULL on failure, in which case errno will be set.  Arguments are checked
 * (EINVAL).  Output parameters are left untouched on failure.  Destructors
 * accept NULL.
 */
#ifndef XTK_CTX_H
#define XTK_CTX_H

#include <xtk/log.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct xtk_ctx;

/* Flags for xtk_ctx_open(). */
#define XTK_CTX_OWN_LOGGER 0x1u /* xtk_ctx_close() destroys the logger */
#define XTK_CTX_SILENT 0x2u     /* with logger == NULL: log nothing at all */

/*
 * Opens a context.
 *
 * logger: where messages go.  NULL means a stderr logger at XTK_LOG_WARN
 *   (owned by the context), or no logging at all with XTK_CTX_SILENT.
 * base: the caller's libevent loop, which must outlive the context, made
 *   after evthread_use_pthreads() (libxtk's own threads post events to
 *   it, which an unlocked base does not survive), best with
 *   EVENT_BASE_FLAG_PRECISE_TIMER (else libevent's clock may tick in
 *   4 ms steps, and so do checkpoint intervals); NULL makes a private
 *   one so (precise timers), freed by xtk_ctx_close().
 *
 * Returns NULL on failure, in which case errno will be set.
 */
struct xtk_ctx *xtk_ctx_open(struct xtk_logger *logger, struct event_base *base,
                             unsigned int flags);

/* Closes a context.  Accepts NULL.  Objects made from it must be gone. */
void xtk_ctx_close(struct xtk_ctx *ctx);

/*
 * Where the KVM backend's domains live (each xtk-hv(8) keeps its control
 * socket and log there): an absolute directory, or NULL for the default,
 * $XTK_RUNDIR or else /run/xtk.  Only domains under it are seen through
 * this context, so one process can drive two "hosts" (a migration between
 * two run directories on one machine).  Set it before opening domains.
 * Added in XTK_0.7.
 */
int xtk_ctx_set_rundir(struct xtk_ctx *ctx, const char *dir);

/* The event loop the context uses (the caller's, or its own). */
struct event_base *xtk_ctx_event_base(struct xtk_ctx *ctx);

/* The context's logger (never NULL for an open context). */
struct xtk_logger *xtk_ctx_logger(struct xtk_ctx *ctx);

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *xtk_version(void);

#ifdef __cplusplus
}
#endif

#endif /* XTK_CTX_H */

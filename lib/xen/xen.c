/*
 * xen.c - the xen backend: libxtk's backend operations (lib/backend.h) on
 * a real Xen, through libxenctrl, libxenforeignmemory, libxenevtchn and
 * libxenguest, with the store reached over its socket (lib/xs-client.c)
 * and libxenlight for a clean destroy.
 *
 * What is here is the control plane: list, lookup, info, pause, unpause,
 * destroy, rename, foreign mapping in batches, the dirty log, and the
 * suspend with its "suspended" notification on an event channel, never a
 * store watch:
 *
 *   EVTCHN  the guest published device/suspend/event-channel: the request
 *           is a notification on that channel, bound and subscribed by
 *           libxenguest's xc_suspend_evtchn_init_exclusive();
 *   STORE   "suspend" is written to control/shutdown (any PV-aware guest,
 *           Linux included); the notification is an unbound port that
 *           xtk allocates in the guest, binds in dom0 and subscribes with
 *           DOMCTL_subscribe, so that Xen signals it, instead of
 *           VIRQ_DOM_EXC, when the domain suspends;
 *   PAUSE   no guest help: the vCPUs are paused.
 *
 * A suspended source carries on by a cooperative resume
 * (xc_domain_resume(fast) and the store's RESUME), as `xl save -c` does.
 *
 * For a save by xtk's engine of a PVH guest: the frame space
 * (which frames exist), and Xen's own stream layout and state records
 * (CPUID/MSR policy; TSC_INFO, HVM_CONTEXT, HVM_PARAMS), so that Xen's
 * restore takes the stream as its own.
 *
 * For a restore of Xen's own stream of a PVH guest: the domain builder
 * (create_native, populate, set_state, resume; "the domain builder"
 * below).  Not here yet (ENOTSUP, with a message): booting a domain
 * (create: that is xl create's), and a PV guest's stream.
 *
 * Unlike KVM's, Xen's pause count, dirty log and suspend subscription
 * belong to the domain, not to this process.  They are undone at close;
 * and a handle that holds any of them keeps a guard process told (guard.h,
 * xtk-xen-guard), which undoes them if this process dies first.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#include <libxl.h>
#include <libxl_utils.h>
#include <xenstore.h>
#include <xen/hvm/params.h>

#include "backend.h"
#include "xen/guard.h"
#include "xen/netbuf.h"
#include "xen/xlcfg.h"
#include "xs-client.h"

#define XTK_LOG_CONTEXT "xen"

#ifndef XTK_XEN_GUARD_PATH
#define XTK_XEN_GUARD_PATH "xtk-xen-guard"
#endif

extern char **environ;

#define STORE_TIMEOUT_MS 15000 /* TCG on a loaded host can take seconds */
#define XS_RESUME 18           /* xs_wire.h */

struct xen_dom {
    xc_interface *xch;
    xenforeignmemory_handle *fmem;
    unsigned int held_pauses; /* taken with XTK__PAUSE_HOLD */
    unsigned int logdirty : 1;
    /* the dirty bitmap, a hypercall buffer of bitmap_pages frames */
    xc_hypercall_buffer_t hbuf;
    unsigned long bitmap_pages;
    uint64_t bitmap_bits; /* its room */
    /* the suspend */
    unsigned int suspend_set : 1;
    unsigned int subscribed : 1;
    enum xtk__suspend_method method;
    xenevtchn_handle *xce;
    int local_port;             /* bound in dom0 (EVTCHN, STORE) */
    int guest_port;             /* the guest's end */
    int lock_fd;                /* xc_suspend_evtchn_init_exclusive's lock */
    int pause_evfd;             /* PAUSE */
    int store_fd;               /* STORE, XL */
    struct xs_handle *watch_xs; /* XL: its @releaseDomain watch */
    /* STORE, XL: the fd the caller watches (the notification's and the
     * store's answer to the request's write, in one epoll), and whether
     * that answer is still owed (store_answer): the write is sent, never
     * waited for on the caller's loop. */
    int store_ep, store_owed;
    unsigned int suspend_paused : 1; /* PAUSE paused it */
    unsigned int requested : 1;      /* a suspend was requested */
    /* suspend_check saw it suspended, and nothing resumed, unpaused or
     * asked it to suspend since: a final round's reads need not ask Xen
     * again */
    unsigned int stopped_seen : 1;
    unsigned int pvh_seen : 1; /* get_state found it PVH once */
    /* the guard: our end of its socket, -1 until something is held */
    int guard_fd;
    /* a domain built here for a restore (create_native), until it runs */
    struct xen_build *build;
    /* the HVM parameters only a toolstack sets, read once per handle
     * (hvm_params below) */
    uint64_t tool_params[16];
    unsigned int tool_params_read : 1;
    /* the size of its HVM context, asked when the save starts: a final
     * round asks again only if the context outgrew it */
    int hvm_ctx_size;
    /* the HVM context's hypercall buffer, ctx_pages frames, kept from one
     * final round to the next (hvm_context) */
    xc_hypercall_buffer_t ctx_hbuf;
    unsigned long ctx_pages;
    /* the guest's network output held for a backup (output_hold) */
    struct xtk__netbuf nb;
    unsigned int holding : 1;
    unsigned int epoch_closed : 1; /* this suspend's stop closed one */
    uint32_t out_closed, out_released;
    int hold_lock; /* hold_lock's, while this handle holds */
};

static void build_free(struct xen_build *b);
static int build_pending(const struct xen_dom *xd);
static int build_start(struct xtk_domain *dom, struct xen_build *b);
static void guard_look(struct xtk_domain *dom, struct xen_dom *xd);

static struct xen_dom *xd_of(struct xtk_domain *dom)
{
    return dom->priv;
}

/* ---- the guard ------------------------------------------------------------
 */

/*
 * Starts xtk-xen-guard ($XTK_XEN_GUARD, else the installed one): its end
 * of the socket as standard input, /dev/null as standard output (which
 * may be the caller's stream), standard error kept for its messages,
 * nothing else inherited, default signal dispositions and mask.  It
 * detaches (its first half exits, reaped here) and says it is ready by a
 * byte on the socket.
 */
static int guard_start(struct xtk_domain *dom, struct xen_dom *xd)
{
    char buf[PATH_MAX + 32];
    const char *path = xtk__find_program("XTK_XEN_GUARD", XTK_XEN_GUARD_PATH,
                                         "xtk-xen-guard", buf, sizeof(buf));
    char *argv[2], ready = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    struct pollfd p;
    int sv[2], rc;
    pid_t pid;
    uint64_t t0 = xtk_now_ns();

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    argv[0] = (char *)path;
    argv[1] = NULL;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    rc = posix_spawn(&pid, path, &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (rc) {
        close(sv[0]);
        errno = rc;
        XTK_PERROR(dom->ctx,
                   "domain %u: cannot start the guard %s (set XTK_XEN_GUARD)",
                   dom->domid, path);
        return -1;
    }
    /* Its first half exits at once; a caller that ignores SIGCHLD has
     * had it reaped already (ECHILD), which is as good. */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    p = (struct pollfd){.fd = sv[0], .events = POLLIN};
    if (poll(&p, 1, 5000) != 1 || read(sv[0], &ready, 1) != 1 || ready != 'r') {
        close(sv[0]);
        XTK_ERROR(dom->ctx, "domain %u: the guard %s did not start", dom->domid,
                  path);
        return xtk__fail(EIO);
    }
    xd->guard_fd = sv[0];
    XTK_DEBUG(dom->ctx, "domain %u: its guard started in %.3f ms", dom->domid,
              (double)(xtk_now_ns() - t0) / 1e6);
    return 0;
}

/* The guard never writes after its ready byte: readable means gone. */
static int guard_dead(struct xen_dom *xd)
{
    struct pollfd p = {.fd = xd->guard_fd, .events = POLLIN};

    return poll(&p, 1, 0) == 1;
}

/*
 * Tells the guard what this handle holds now, starting it if this is the
 * first thing held.  What the guard undoes is harmless when there is
 * nothing to undo (subscribe port 0, the dirty log off, resume a guest
 * that is not suspended), so it hears of these before they are taken and
 * after they are given up: a death in between makes it undo something
 * already undone.  Pauses are the exception, since an unpause too many
 * would release somebody else's: the guard hears of a pause after it is
 * taken and before it is released, and a death in that instant leaves
 * one pause behind.
 */
static int guard_update(struct xtk_domain *dom, struct xen_dom *xd)
{
    struct xtk__xen_guard_state st = {
        .magic = XTK__XEN_GUARD_MAGIC,
        .domid = dom->domid,
        .held_pauses = xd->held_pauses + xd->suspend_paused,
        .logdirty = xd->logdirty,
        .subscribed = xd->subscribed,
        .requested = xd->requested,
        .store = xd->requested && (xd->method == XTK__SUSPEND_STORE ||
                                   xd->method == XTK__SUSPEND_XL),
        .building = build_pending(xd),
    };
    int held = st.held_pauses || st.logdirty || st.subscribed || st.requested ||
               st.building;

    if (xd->guard_fd >= 0 && guard_dead(xd)) {
        /* Killed, or crashed: a new one takes over from here. */
        XTK_WARN(dom->ctx, "domain %u: its guard died: starting another",
                 dom->domid);
        close(xd->guard_fd);
        xd->guard_fd = -1;
    }
    if (xd->guard_fd < 0) {
        if (!held)
            return 0;
        if (guard_start(dom, xd) < 0)
            return -1;
    }
    if (send(xd->guard_fd, &st, sizeof(st), MSG_NOSIGNAL) != sizeof(st)) {
        XTK_PERROR(dom->ctx, "domain %u: its guard is gone", dom->domid);
        return -1;
    }
    return 0;
}

/*
 * A save's rounds and its wait for the suspend change nothing the guard
 * hears of, for as long as they last: they look in on it (a poll of its
 * socket), so that a guard that died meanwhile is replaced before the
 * toolstack, too, might die.
 */
static void guard_look(struct xtk_domain *dom, struct xen_dom *xd)
{
    if (xd->guard_fd >= 0 && guard_dead(xd))
        guard_update(dom, xd);
}

/*
 * The handle closes: the guard has nothing left to undo, but for a
 * suspend requested that the guest has not acted on yet (a save that
 * failed just after asking).  That one it keeps: it resumes the guest
 * once it has suspended, as for a dead toolstack.
 */
static void guard_stop(struct xtk_domain *dom, struct xen_dom *xd)
{
    if (xd->guard_fd < 0)
        return;
    xd->held_pauses = 0;
    xd->suspend_paused = xd->logdirty = xd->subscribed = 0;
    if (xd->requested)
        XTK_DEBUG(dom->ctx,
                  "domain %u: a suspend request is still in flight: its "
                  "guard resumes the guest when it suspends",
                  dom->domid);
    guard_update(dom, xd);
    close(xd->guard_fd);
    xd->guard_fd = -1;
}

/* A libxenctrl handle that logs nothing of its own: xtk logs. */
static xc_interface *open_xc(struct xtk_ctx *ctx)
{
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);

    if (!xch)
        XTK_PERROR(ctx, "cannot open libxenctrl (is this Xen's dom0, with "
                        "/dev/xen/privcmd?)");
    return xch;
}

/* ---- the store ----------------------------------------------------------- */

static int store_connect(struct xtk_ctx *ctx)
{
    int fd = xtk__xs_connect(xtk__xs_path(NULL));

    if (fd < 0)
        XTK_PERROR(ctx, "cannot reach the store at %s", xtk__xs_path(NULL));
    return fd;
}

/* Reads path into buf (NUL-terminated); -1 with errno (ENOENT). */
static int store_read(int fd, const char *path, char *buf, size_t max)
{
    int n = xtk__xs_request(fd, XTK_XS_READ, path, strlen(path) + 1, NULL, 0,
                            buf, max - 1, STORE_TIMEOUT_MS);

    return n < 0 ? -1 : 0;
}

/* The domain's name from the store; 0, or -1 if the store did not answer
 * (a domain without a name node has the name ""). */
static int name_of(int fd, uint32_t domid, char *name, size_t max)
{
    char path[64];

    name[0] = 0;
    if (fd < 0)
        return -1;
    snprintf(path, sizeof(path), "/local/domain/%u/name", domid);
    if (store_read(fd, path, name, max) < 0) {
        name[0] = 0;
        return errno == ENOENT ? 0 : -1;
    }
    return 0;
}

/* ---- discovery ------------------------------------------------------------
 */

static void fill_info(const xc_domaininfo_t *xi, const char *name,
                      struct xtk_domain_info *info)
{
    unsigned int reason =
        (xi->flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;

    memset(info, 0, sizeof(*info));
    info->domid = xi->domain;
    info->nr_vcpus = xi->max_vcpu_id + 1;
    info->nr_pages = xi->tot_pages;
    if (xi->flags & XEN_DOMINF_paused)
        info->flags |= XTK_DOMINFO_PAUSED;
    if (xi->flags & XEN_DOMINF_shutdown) {
        if (reason == SHUTDOWN_suspend)
            info->flags |= XTK_DOMINFO_SUSPENDED;
        else if (reason == SHUTDOWN_crash)
            info->flags |= XTK_DOMINFO_CRASHED;
    }
    snprintf(info->name, sizeof(info->name), "%s", name);
}

/* One domain's Xen information: ENOENT if there is no such domain. */
static int getinfo(xc_interface *xch, uint32_t domid, xc_domaininfo_t *xi)
{
    int n = xc_domain_getinfolist(xch, domid, 1, xi);

    if (n < 0)
        return -1;
    if (n != 1 || xi->domain != domid)
        return xtk__fail(ENOENT);
    return 0;
}

static int xen_list(struct xtk_ctx *ctx, struct xtk_domain_info **infos,
                    size_t *nr)
{
    xc_domaininfo_t batch[64];
    struct xtk_domain_info *out = NULL, *grown;
    size_t n = 0, cap = 0;
    uint32_t next = 0;
    xc_interface *xch = open_xc(ctx);
    int fd, got;
    size_t unnamed = 0;
    char name[XTK_DOMAIN_NAME_MAX + 1];

    if (!xch)
        return -1;
    fd = xtk__xs_connect(xtk__xs_path(NULL)); /* names: best effort */
    for (;;) {
        got = xc_domain_getinfolist(xch, next, XTK__ARRAY_SIZE(batch), batch);
        if (got < 0) {
            XTK_PERROR(ctx, "xc_domain_getinfolist");
            goto fail;
        }
        for (int i = 0; i < got; i++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                grown = realloc(out, cap * sizeof(*out));
                if (!grown)
                    goto fail;
                out = grown;
            }
            if (name_of(fd, batch[i].domain, name, sizeof(name)) < 0)
                unnamed++;
            fill_info(&batch[i], name, &out[n++]);
        }
        if (got < (int)XTK__ARRAY_SIZE(batch))
            break;
        next = batch[got - 1].domain + 1;
    }
    if (fd >= 0)
        close(fd);
    xc_interface_close(xch);
    if (unnamed)
        XTK_WARN(ctx, "the store did not give the names of %zu domain(s)",
                 unnamed);
    *infos = out;
    *nr = n;
    return 0;
fail : {
    int e = errno;
    if (fd >= 0)
        close(fd);
    xc_interface_close(xch);
    free(out);
    return xtk__fail(e);
}
}

static int xen_lookup(struct xtk_ctx *ctx, const char *name, uint32_t *domid)
{
    struct xtk_domain_info *infos;
    size_t nr;

    if (xen_list(ctx, &infos, &nr) < 0)
        return -1;
    for (size_t i = 0; i < nr; i++)
        if (!strcmp(infos[i].name, name)) {
            *domid = infos[i].domid;
            free(infos);
            return 0;
        }
    free(infos);
    XTK_ERROR(ctx, "no Xen domain is called %s", name);
    return xtk__fail(ENOENT);
}

/* ---- the handle ------------------------------------------------------------
 */

static void xd_free(struct xen_dom *xd)
{
    if (!xd)
        return;
    build_free(xd->build);
    if (xd->hbuf.hbuf)
        xc__hypercall_buffer_free_pages(xd->xch, &xd->hbuf,
                                        (int)xd->bitmap_pages);
    if (xd->ctx_hbuf.hbuf)
        xc__hypercall_buffer_free_pages(xd->xch, &xd->ctx_hbuf,
                                        (int)xd->ctx_pages);
    if (xd->fmem)
        xenforeignmemory_close(xd->fmem);
    /* A hold this handle leaves stays in the kernel, orphaned. */
    xtk__netbuf_close(&xd->nb);
    if (xd->hold_lock >= 0)
        close(xd->hold_lock);
    if (xd->xch)
        xc_interface_close(xd->xch);
    free(xd);
}

static int xen_open(struct xtk_domain *dom)
{
    struct xen_dom *xd = calloc(1, sizeof(*xd));
    xc_domaininfo_t xi;

    if (!xd)
        return -1;
    xd->local_port = xd->guest_port = -1;
    xd->lock_fd = xd->pause_evfd = xd->store_fd = xd->guard_fd = -1;
    xd->store_ep = -1;
    xd->hold_lock = -1;
    xd->hbuf.ubuf = xd->ctx_hbuf.ubuf =
        (void *)-1; /* no bounce buffer: HYPERCALL_BUFFER_INIT */
    xd->xch = open_xc(dom->ctx);
    if (!xd->xch)
        goto fail;
    if (getinfo(xd->xch, dom->domid, &xi) < 0) {
        XTK_PERROR(dom->ctx, "no Xen domain %u", dom->domid);
        goto fail;
    }
    dom->priv = xd;
    return 0;
fail : {
    int e = errno;
    xd_free(xd);
    return xtk__fail(e);
}
}

static int xen_create(struct xtk_domain *dom,
                      const struct xtk_domain_config *cfg, unsigned int flags)
{
    (void)cfg;
    if (flags & XTK__CREATE_EMPTY)
        XTK_ERROR(dom->ctx,
                  "restore: a stream of xtk's own layout (a KVM guest's) "
                  "does not restore onto Xen");
    else
        XTK_ERROR(dom->ctx, "create: xtk does not boot Xen domains (use "
                            "xl create)");
    return xtk__fail(ENOTSUP);
}

static void xen_suspend_teardown(struct xtk_domain *dom);
static int xen_logdirty_disable(struct xtk_domain *dom);

static void xen_close(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);

    unsigned int pauses;

    xen_suspend_teardown(dom);
    if (xd->logdirty)
        xen_logdirty_disable(dom);
    /* Pauses: the guard hears before they are released. */
    pauses = xd->held_pauses + xd->suspend_paused;
    xd->held_pauses = 0;
    xd->suspend_paused = 0;
    guard_update(dom, xd);
    while (pauses--)
        xc_domain_unpause(xd->xch, dom->domid);
    guard_stop(dom, xd);
    xd_free(xd);
    dom->priv = NULL;
}

/* ---- control
 * ------------------------------------------------------------------ */

static int xen_info(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    struct xen_dom *xd = xd_of(dom);
    xc_domaininfo_t xi;
    char name[XTK_DOMAIN_NAME_MAX + 1];
    int fd;

    if (getinfo(xd->xch, dom->domid, &xi) < 0) {
        if (errno == ENOENT)
            errno = ESRCH;
        return -1;
    }
    fd = xtk__xs_connect(xtk__xs_path(NULL));
    name_of(fd, dom->domid, name, sizeof(name));
    if (fd >= 0)
        close(fd);
    fill_info(&xi, name, info);
    if (xd->logdirty)
        info->flags |= XTK_DOMINFO_LOGDIRTY;
    guard_look(dom, xd); /* a save polls this while it waits */
    return 0;
}

/* Xen's getvcpuinfo: time run, running or blocked now.  The time
 * runnable and waiting is not told to a toolstack (the guest reads it in
 * its runstate area), nor are yields: their flags stay clear. */
static int xen_vcpus(struct xtk_domain *dom, struct xtk_vcpu_stats *out,
                     unsigned int max, unsigned int *nr)
{
    struct xen_dom *xd = xd_of(dom);
    xc_domaininfo_t xi;
    unsigned int n;

    if (getinfo(xd->xch, dom->domid, &xi) < 0) {
        if (errno == ENOENT)
            errno = ESRCH;
        return -1;
    }
    n = xi.max_vcpu_id + 1;
    for (unsigned int i = 0; i < n && i < max; i++) {
        xc_vcpuinfo_t vi;

        out[i].vcpu = i;
        if (xc_vcpu_getinfo(xd->xch, dom->domid, i, &vi) < 0)
            continue; /* not brought up */
        out[i].cpu_ns = vi.cpu_time;
        out[i].flags = (vi.running ? XTK_VCPU_RUNNING : 0) |
                       (vi.blocked ? XTK_VCPU_BLOCKED : 0);
    }
    *nr = n;
    return 0;
}

static int xen_pause(struct xtk_domain *dom, unsigned int flags)
{
    struct xen_dom *xd = xd_of(dom);

    if (xc_domain_pause(xd->xch, dom->domid) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: pause", dom->domid);
        return -1;
    }
    if (flags & XTK__PAUSE_HOLD) {
        xd->held_pauses++;
        if (guard_update(dom, xd) < 0) {
            int e = errno;
            xd->held_pauses--;
            xc_domain_unpause(xd->xch, dom->domid);
            return xtk__fail(e);
        }
    }
    return 0;
}

/*
 * Xen counts the toolstack's pauses of a domain: each unpause undoes one,
 * and one too many fails with EINVAL.  FORCE releases them all.
 */
static int xen_unpause(struct xtk_domain *dom, unsigned int flags)
{
    struct xen_dom *xd = xd_of(dom);

    xd->stopped_seen = 0; /* it may run now */
    if (flags & XTK__UNPAUSE_FORCE) {
        xd->held_pauses = 0;
        xd->suspend_paused = 0;
        guard_update(dom, xd); /* before the pauses are released */
        for (int i = 0; i < 1024; i++)
            if (xc_domain_unpause(xd->xch, dom->domid) < 0) {
                if (errno != EINVAL) {
                    XTK_PERROR(dom->ctx, "domain %u: unpause", dom->domid);
                    return -1;
                }
                break;
            }
        return 0;
    }
    if (!xd->held_pauses)
        return 0;
    xd->held_pauses--;
    guard_update(dom, xd);
    if (xc_domain_unpause(xd->xch, dom->domid) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: unpause", dom->domid);
        return -1;
    }
    return 0;
}

/*
 * libxl's messages are not printed (xtk logs its own), but the first error
 * is kept: a device that cannot be built says why in xtk's own error.
 */
struct xtl_keep {
    struct xentoollog_logger vtable; /* first: libxl calls through it */
    char first[200];                 /* libxl's first error */
};

static void xtl_keep_msg(struct xentoollog_logger *l, xentoollog_level level,
                         int errnoval, const char *context, const char *format,
                         va_list al) __attribute__((format(printf, 5, 0)));

static void xtl_keep_msg(struct xentoollog_logger *l, xentoollog_level level,
                         int errnoval, const char *context, const char *format,
                         va_list al)
{
    struct xtl_keep *k = (struct xtl_keep *)l;
    char msg[sizeof(k->first)];
    const char *m = msg;
    int n = 0;

    (void)errnoval, (void)context;
    /* The first error is the cause; later ones are its consequences. */
    if (level < XTL_ERROR || k->first[0])
        return;
    vsnprintf(msg, sizeof(msg), format, al);
    /* libxl's "file.c:LINE:function: " in front says where, not why */
    if (sscanf(msg, "%*[a-z_].c:%*u:%*[A-Za-z0-9_]: %n", &n) >= 0 && n > 0)
        m += n;
    snprintf(k->first, sizeof(k->first), "%s", m);
}

/*
 * A libxl context.  libxl forks the hotplug scripts of devices (adding
 * them in a restore, removing them in a destroy); by default it would then
 * reap every child of the process, a caller's own (xtk-save's ssh)
 * included.  Here it reaps only its own, through a SIGCHLD handler that it
 * installs for the context's lifetime and then puts back as it was.
 */
static libxl_ctx *libxl_open_log(struct xtk_ctx *ctx, struct xtl_keep *keep)
{
    static const libxl_childproc_hooks hooks = {
        .chldowner = libxl_sigchld_owner_libxl_always_selective_reap};
    libxl_ctx *lctx = NULL;

    keep->vtable.vmessage = xtl_keep_msg;
    keep->first[0] = '\0';
    if (libxl_ctx_alloc(&lctx, LIBXL_VERSION, 0, &keep->vtable)) {
        XTK_ERROR(ctx, "cannot start libxenlight");
        errno = EIO;
        return NULL;
    }
    libxl_childproc_setmode(lctx, &hooks, NULL);
    return lctx;
}

/* A libxl context whose messages are dropped. */
static libxl_ctx *libxl_open(struct xtk_ctx *ctx)
{
    static __thread struct xtl_keep keep;

    return libxl_open_log(ctx, &keep);
}

/*
 * libxl_domain_destroy: a bare xc_domain_destroy would leave the domain's
 * store directories, devices and libxl's userdata behind.
 */
static int vifs_of(struct xtk_domain *dom, char (*names)[IF_NAMESIZE],
                   unsigned int *devids, unsigned int max,
                   unsigned long *foreign);

static int xen_destroy(struct xtk_domain *dom)
{
    libxl_ctx *lctx = libxl_open(dom->ctx);
    char names[XTK__NETBUF_MAX][IF_NAMESIZE], ifb[IF_NAMESIZE];
    unsigned int devids[XTK__NETBUF_MAX];
    int rc, n;

    if (!lctx)
        return -1;
    /* Its vifs, for a hold of their output that goes with it. */
    n = vifs_of(dom, names, devids, XTK__NETBUF_MAX, NULL);
    rc = libxl_domain_destroy(lctx, dom->domid, NULL);
    libxl_ctx_free(lctx);
    if (rc) {
        XTK_ERROR(dom->ctx, "domain %u: libxl_domain_destroy failed (%d)",
                  dom->domid, rc);
        return xtk__fail(rc == ERROR_INVAL ? ESRCH : EIO);
    }
    for (int i = 0; i < n; i++) {
        if (xtk__netbuf_ifb_name(dom->domid, devids[i], ifb) == 0 &&
            xtk__netbuf_end(dom->ctx, "", ifb, 0) == 0)
            XTK_INFO(dom->ctx, "domain %u: its held output (%s) dropped",
                     dom->domid, ifb);
    }
    dom->output_depth = 0;
    /* Gone with it: what the handle held, which the guard would
     * otherwise try to undo on a domain that no longer exists. */
    {
        struct xen_dom *xd = xd_of(dom);
        build_free(xd->build);
        xd->build = NULL;
        xd->held_pauses = 0;
        xd->suspend_paused = xd->requested = xd->logdirty = 0;
        xd->subscribed = 0;
        xd->holding = 0;
        xtk__netbuf_close(&xd->nb);
        if (xd->hold_lock >= 0)
            close(xd->hold_lock);
        xd->hold_lock = -1;
        guard_update(dom, xd);
    }
    return 0;
}

/* What xl save writes in its header: libxl's config of the domain. */
static int xen_xl_config(struct xtk_domain *dom, char **config, size_t *len)
{
    libxl_ctx *lctx = libxl_open(dom->ctx);
    libxl_domain_config cfg;
    char *json = NULL;
    int rc;

    if (!lctx)
        return -1;
    libxl_domain_config_init(&cfg);
    rc = libxl_retrieve_domain_configuration(lctx, dom->domid, &cfg, NULL);
    if (!rc)
        json = libxl_domain_config_to_json(lctx, &cfg);
    libxl_domain_config_dispose(&cfg);
    libxl_ctx_free(lctx);
    if (!json) {
        XTK_ERROR(dom->ctx,
                  "domain %u: libxl has no config of it (%d): not created "
                  "by xl or libxl?",
                  dom->domid, rc);
        return xtk__fail(rc ? ENOENT : ENOMEM);
    }
    *config = json;
    *len = strlen(json) + 1;
    return 0;
}

static int xen_rename(struct xtk_domain *dom, const char *name)
{
    libxl_ctx *lctx = libxl_open(dom->ctx);
    int rc;

    if (!lctx)
        return -1;
    rc = libxl_domain_rename(lctx, dom->domid, NULL, name);
    libxl_ctx_free(lctx);
    if (rc) {
        XTK_ERROR(dom->ctx, "domain %u: cannot rename to %s (%d)", dom->domid,
                  name, rc);
        return xtk__fail(rc == ERROR_INVAL ? EEXIST : EIO);
    }
    return 0;
}

/* ---- memory ----------------------------------------------------------------
 */

/* Exported by libxenctrl 4.17, declared only in its private header. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num,
                          xen_pfn_t *arr);

/*
 * The types of nr frames (arr: their numbers in, their types out), 512 at
 * a time: libxenctrl bounces the array through a hypercall buffer, which
 * it keeps for reuse only when it is one page; a larger one is a fresh
 * mapping and unmapping each call (0.7 ms under TCG, against 0.13 for the
 * call itself).
 */
static int pfn_types(xc_interface *xch, uint32_t domid, unsigned int nr,
                     xen_pfn_t *arr)
{
    const unsigned int per = 4096 / sizeof(*arr);

    for (unsigned int i = 0; i < nr; i += per)
        if (xc_get_pfn_type_batch(xch, domid, nr - i < per ? nr - i : per,
                                  arr + i) < 0)
            return -1;
    return 0;
}

/*
 * A guest changes its frame space as it runs (a translated guest maps and
 * unmaps frames in it: its grant table, shared info, foreign and
 * ballooned pages), so a frame that existed when the save began may be
 * gone, or be one of Xen's own pages, when its batch goes.  As Xen's save
 * does for each batch, the frames' types are asked for now: a hole
 * (XTAB) or a broken frame gets ENOENT in errs (the engine sends it
 * without data), whether or not it could be mapped.  Any other frame that
 * failed to map is logged with its type.  arr: room for nr frames.
 */
static int frames_gone(struct xtk_domain *dom, const uint64_t *pfns,
                       unsigned int nr, int *errs, xen_pfn_t *arr)
{
    struct xen_dom *xd = xd_of(dom);

    for (unsigned int i = 0; i < nr; i++)
        arr[i] = (xen_pfn_t)pfns[i];
    if (pfn_types(xd->xch, dom->domid, nr, arr) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: the types of %u frames", dom->domid,
                   nr);
        return -1;
    }
    for (unsigned int i = 0; i < nr; i++) {
        xen_pfn_t t = arr[i] & XEN_DOMCTL_PFINFO_LTAB_MASK;

        if (t == XEN_DOMCTL_PFINFO_XTAB || t == XEN_DOMCTL_PFINFO_BROKEN)
            errs[i] = ENOENT;
        else if (errs[i])
            XTK_ERROR(dom->ctx,
                      "domain %u: frame %#llx (type %#lx) cannot be "
                      "mapped: error %d",
                      dom->domid, (unsigned long long)pfns[i], (unsigned long)t,
                      errs[i]);
    }
    return 0;
}

static void *xen_map_batch(struct xtk_domain *dom, int prot,
                           const uint64_t *pfns, unsigned int nr, int *errs)
{
    struct xen_dom *xd = xd_of(dom);
    xen_pfn_t *arr;
    void *p;

    if (!__atomic_load_n(&xd->fmem, __ATOMIC_ACQUIRE)) {
        /* Opened once; xenforeignmemory handles are thread-safe. */
        xenforeignmemory_handle *h = xenforeignmemory_open(NULL, 0);
        if (!h) {
            XTK_PERROR(dom->ctx, "cannot open libxenforeignmemory");
            return NULL;
        }
        if (!__atomic_compare_exchange_n(&xd->fmem,
                                         &(xenforeignmemory_handle *){NULL}, h,
                                         0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            xenforeignmemory_close(h);
    }
    arr = malloc(nr * sizeof(*arr));
    if (!arr)
        return NULL;
    for (unsigned int i = 0; i < nr; i++)
        arr[i] = (xen_pfn_t)pfns[i];
    p = xenforeignmemory_map(xd->fmem, dom->domid, prot, nr, arr, errs);
    if (!p) {
        XTK_PERROR(dom->ctx, "domain %u: mapping %u frames", dom->domid, nr);
        free(arr);
        return NULL;
    }
    for (unsigned int i = 0; i < nr; i++)
        if (errs[i] < 0)
            errs[i] = -errs[i];
    if (frames_gone(dom, pfns, nr, errs, arr) < 0) {
        int e = errno;
        xenforeignmemory_unmap(xd->fmem, p, nr);
        free(arr);
        return xtk__fail_null(e);
    }
    free(arr);
    return p;
}

static int xen_unmap_batch(struct xtk_domain *dom, void *base, unsigned int nr)
{
    return xenforeignmemory_unmap(xd_of(dom)->fmem, base, nr);
}

/* ---- dirty log
 * ------------------------------------------------------------------ */

static int xen_logdirty_enable(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);
    int e;

    if (xd->logdirty)
        return xtk__fail(EBUSY);
    /* The guard hears first: switching a log off is harmless. */
    xd->logdirty = 1;
    if (guard_update(dom, xd) < 0)
        goto fail;
    if (xc_shadow_control(xd->xch, dom->domid,
                          XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) < 0) {
        /*
         * Xen says EINVAL when the log is on already: another save's (or
         * a dead one's, whose guard has yet to switch it off).  Unlike
         * libxenguest, which switches it off and on again, xtk does not
         * take a live save's log from under it: a save whose log reads
         * empty would send stale pages.
         */
        if (errno == EINVAL) {
            XTK_ERROR(dom->ctx,
                      "domain %u: its dirty log is on already (another "
                      "save of it is running)",
                      dom->domid);
            errno = EBUSY;
        } else if (errno == EOPNOTSUPP) {
            XTK_ERROR(dom->ctx,
                      "domain %u: Xen cannot log this domain's dirty pages "
                      "(a PV guest on a Xen built without shadow paging, "
                      "as Debian's is): no live save or migration",
                      dom->domid);
            errno = ENOTSUP;
        } else {
            XTK_PERROR(dom->ctx, "domain %u: enabling the dirty log",
                       dom->domid);
        }
        goto fail;
    }
    return 0;
fail:
    e = errno;
    xd->logdirty = 0;
    guard_update(dom, xd);
    return xtk__fail(e);
}

static int xen_logdirty_disable(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);
    int r = 0;

    if (!xd->logdirty)
        return 0;
    if (xc_shadow_control(xd->xch, dom->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL,
                          0) < 0 &&
        errno != ESRCH) {
        XTK_PERROR(dom->ctx, "domain %u: disabling the dirty log", dom->domid);
        r = -1;
    }
    xd->logdirty = 0;
    guard_update(dom, xd);
    return r;
}

static int xen_logdirty_read(struct xtk_domain *dom, unsigned int flags,
                             uint64_t *bitmap, uint64_t nr_bits,
                             uint64_t *dirty_count)
{
    struct xen_dom *xd = xd_of(dom);
    unsigned int mode = 0;
    uint64_t words = (nr_bits + 63) / 64, count = 0;
    xc_shadow_op_stats_t stats;

    if (!xd->logdirty)
        return xtk__fail(EINVAL);
    if (!(flags & XTK__LOGDIRTY_FINAL))
        guard_look(dom, xd); /* once a round, off the stop */
    if (flags & XTK__LOGDIRTY_FINAL) {
        xc_domaininfo_t xi;
        if (!xd->stopped_seen) { /* else known: a hypercall less */
            if (getinfo(xd->xch, dom->domid, &xi) < 0)
                return -1;
            if (!(xi.flags & (XEN_DOMINF_paused | XEN_DOMINF_shutdown)))
                return xtk__fail(EBUSY);
        }
        mode = XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL;
    }
    if (!xd->hbuf.hbuf || xd->bitmap_bits < nr_bits) {
        unsigned long pages = (unsigned long)((words * 8 + 4095) / 4096);
        if (xd->hbuf.hbuf)
            xc__hypercall_buffer_free_pages(xd->xch, &xd->hbuf,
                                            (int)xd->bitmap_pages);
        /* Neither the free nor a failed allocation resets it. */
        xd->hbuf.hbuf = NULL;
        xd->bitmap_bits = 0;
        xd->bitmap_pages = 0;
        if (!xc__hypercall_buffer_alloc_pages(xd->xch, &xd->hbuf, (int)pages)) {
            xd->hbuf.hbuf = NULL;
            XTK_PERROR(dom->ctx, "domain %u: a %lu-page dirty bitmap",
                       dom->domid, pages);
            return -1;
        }
        xd->bitmap_pages = pages;
        xd->bitmap_bits = (uint64_t)pages * 4096 * 8;
    }
    /* No clearing first: Xen writes every byte of the range, zeroes
     * where its log has no page (paging_log_dirty_op). */
    if (xc_logdirty_control(xd->xch, dom->domid, XEN_DOMCTL_SHADOW_OP_CLEAN,
                            &xd->hbuf, (unsigned long)nr_bits, mode,
                            &stats) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: reading the dirty log", dom->domid);
        return -1;
    }
    {
        const uint64_t *src = xd->hbuf.hbuf;
        /* Xen copies whole bytes: no bit past nr_bits. */
        uint64_t last = nr_bits % 64 ? (1ull << (nr_bits % 64)) - 1 : ~0ull;

        for (uint64_t i = 0; i < words; i++) {
            uint64_t w = i == words - 1 ? src[i] & last : src[i];
            bitmap[i] = w;
            count += (uint64_t)__builtin_popcountll(w);
        }
    }
    if (dirty_count)
        *dirty_count = count;
    return 0;
}

/* ---- suspend --------------------------------------------------------------
 */

/*
 * The STORE method's notification port: an unbound port in the guest for
 * dom0, bound here and subscribed for the suspend.
 */
/*
 * The guest's end of the STORE method's notification port, kept for the
 * next save in the toolstack's part of the store: a port cannot be taken
 * away from a guest, but once our end is unbound its end is unbound for
 * dom0 again, and the next save binds it rather than allocate another.
 * -1 if there is none to reuse.
 */
static int reusable_port(struct xtk_domain *dom, struct xen_dom *xd,
                         const char *node)
{
    xc_evtchn_status_t st = {0};
    char val[16], *end;
    long p;

    if (store_read(xd->store_fd, node, val, sizeof(val)) < 0)
        return -1;
    p = strtol(val, &end, 10);
    if (*end || p <= 0 || p > 0xfffff)
        return -1;
    st.dom = (domid_t)dom->domid;
    st.port = (evtchn_port_t)p;
    if (xc_evtchn_status(xd->xch, &st) < 0 || st.status != EVTCHNSTAT_unbound ||
        st.u.unbound.dom != 0)
        return -1;
    return (int)p;
}

static int subscribe_store_port(struct xtk_domain *dom, struct xen_dom *xd)
{
    char node[64], val[16];
    int port;

    snprintf(node, sizeof(node), "/libxl/%u/xtk-suspend-port", dom->domid);
    port = reusable_port(dom, xd, node);
    if (port < 0) {
        port = xc_evtchn_alloc_unbound(xd->xch, dom->domid, 0);
        if (port < 0) {
            XTK_PERROR(dom->ctx, "domain %u: allocating a suspend port",
                       dom->domid);
            return -1;
        }
        snprintf(val, sizeof(val), "%d", port);
        if (xtk__xs_write(xd->store_fd, node, val) < 0)
            XTK_DEBUG(dom->ctx, "domain %u: cannot keep port %d in %s",
                      dom->domid, port, node);
    }
    xd->guest_port = port;
    xd->local_port =
        xenevtchn_bind_interdomain(xd->xce, dom->domid, (evtchn_port_t)port);
    if (xd->local_port < 0) {
        XTK_PERROR(dom->ctx, "domain %u: binding port %d", dom->domid, port);
        return -1;
    }
    /* The guard hears first: subscribing port 0 again is harmless. */
    xd->subscribed = 1;
    if (guard_update(dom, xd) < 0)
        return -1;
    if (xc_domain_subscribe_for_suspend(xd->xch, dom->domid,
                                        (evtchn_port_t)port) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: subscribing port %d", dom->domid,
                   port);
        return -1;
    }
    return 0;
}

/* The store methods' fd: readable for the notification (*fd) and for the
 * store's answer to the request's write; *fd becomes it. */
static int store_watch(struct xen_dom *xd, int *fd)
{
    xd->store_ep = xtk__xs_pair_fd(*fd, xd->store_fd);
    if (xd->store_ep < 0)
        return -1;
    xd->store_owed = 0;
    *fd = xd->store_ep;
    return 0;
}

/* The store's answer to the request's write: taken if it is in (or, with
 * wait, waited for: before anything else is asked on the connection).
 * 0 (none owed, not in yet, or a success), -1 (refused, or the store is
 * gone: errno). */
static int store_answer(struct xtk_domain *dom, struct xen_dom *xd, int wait)
{
    if (xtk__xs_reply_owed(xd->store_fd, &xd->store_owed, XTK_XS_WRITE, wait,
                           STORE_TIMEOUT_MS) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: cannot write its control/shutdown",
                   dom->domid);
        return -1;
    }
    return 0;
}

static int xen_suspend_setup(struct xtk_domain *dom,
                             enum xtk__suspend_method method, int *fd)
{
    struct xen_dom *xd = xd_of(dom);
    char path[80], val[32];

    if (xd->suspend_set)
        return xtk__fail(EBUSY);
    xd->suspend_set = 1; /* teardown undoes whatever follows */
    xd->method = method;
    switch (method) {
    case XTK__SUSPEND_PAUSE: {
        /* Pausing is a suspend only for an HVM guest without PV drivers:
         * the frontends of a PV or PVH guest, or of an HVM one with PV
         * drivers, would never reconnect after a restore. */
        xc_domaininfo_t xi;
        uint64_t cb = 0;
        if (getinfo(xd->xch, dom->domid, &xi) < 0)
            goto fail;
        if (!(xi.flags & XEN_DOMINF_hvm_guest) ||
            xc_hvm_param_get(xd->xch, dom->domid, HVM_PARAM_CALLBACK_IRQ, &cb) <
                0 ||
            cb) {
            XTK_ERROR(dom->ctx,
                      "domain %u: the pause method is for HVM guests "
                      "without PV drivers; this one is %s: use the store "
                      "method",
                      dom->domid,
                      xi.flags & XEN_DOMINF_hvm_guest ? "HVM with PV drivers "
                                                        "(or PVH)"
                                                      : "PV");
            errno = ENOTSUP;
            goto fail;
        }
        xd->pause_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (xd->pause_evfd < 0)
            goto fail;
        *fd = xd->pause_evfd;
        return 0;
    }
    case XTK__SUSPEND_XL:
        /* libxl's way: the store request, and @releaseDomain (which the
         * store fires when a domain shuts down, suspends included). */
        xd->store_fd = store_connect(dom->ctx);
        if (xd->store_fd < 0) {
            errno = ENOTSUP;
            goto fail;
        }
        xd->watch_xs = xs_open(0);
        if (!xd->watch_xs ||
            !xs_watch(xd->watch_xs, "@releaseDomain", "xtk-suspend")) {
            XTK_PERROR(dom->ctx, "domain %u: a watch on @releaseDomain",
                       dom->domid);
            goto fail;
        }
        *fd = xs_fileno(xd->watch_xs);
        if (*fd < 0 || store_watch(xd, fd) < 0)
            goto fail;
        return 0;
    case XTK__SUSPEND_EVTCHN:
    case XTK__SUSPEND_STORE:
        break;
    default:
        errno = EINVAL;
        goto fail;
    }
    xd->store_fd = store_connect(dom->ctx);
    if (xd->store_fd < 0) {
        errno = ENOTSUP;
        goto fail;
    }
    xd->xce = xenevtchn_open(NULL, 0);
    if (!xd->xce) {
        XTK_PERROR(dom->ctx, "cannot open libxenevtchn");
        goto fail;
    }
    if (method == XTK__SUSPEND_EVTCHN) {
        long port;
        char *end;
        snprintf(path, sizeof(path),
                 "/local/domain/%u/device/suspend/event-channel", dom->domid);
        if (store_read(xd->store_fd, path, val, sizeof(val)) < 0 || !val[0]) {
            XTK_ERROR(dom->ctx,
                      "domain %u publishes no suspend event channel (%s is "
                      "empty or missing): use the store method",
                      dom->domid, path);
            errno = ENOTSUP;
            goto fail;
        }
        port = strtol(val, &end, 10);
        if (*end || port <= 0 || port > 0xfffff) {
            XTK_ERROR(dom->ctx, "domain %u: %s = \"%s\" is not a port",
                      dom->domid, path, val);
            errno = ENOTSUP;
            goto fail;
        }
        xd->guest_port = (int)port;
        /* The guard hears first: subscribing port 0 again is harmless. */
        xd->subscribed = 1;
        if (guard_update(dom, xd) < 0)
            goto fail;
        xd->local_port = xc_suspend_evtchn_init_exclusive(
            xd->xch, xd->xce, dom->domid, (int)port, &xd->lock_fd);
        if (xd->local_port < 0) {
            /* It released what it took, lock included (its lock fd is
             * then not to be released again). */
            xd->lock_fd = -1;
            /* Its lock held by another toolstack comes back as EINVAL. */
            XTK_PERROR(dom->ctx,
                       "domain %u: cannot bind its suspend channel %ld "
                       "(is another save of it running?)",
                       dom->domid, port);
            goto fail;
        }
    } else {
        snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
                 dom->domid);
        if (store_read(xd->store_fd, path, val, sizeof(val)) < 0 &&
            errno != ENOENT) {
            XTK_PERROR(dom->ctx, "domain %u: cannot read %s", dom->domid, path);
            errno = ENOTSUP;
            goto fail;
        }
        if (subscribe_store_port(dom, xd) < 0)
            goto fail;
    }
    *fd = xenevtchn_fd(xd->xce);
    if (method == XTK__SUSPEND_STORE && store_watch(xd, fd) < 0)
        goto fail;
    return 0;
fail : {
    int e = errno;
    xen_suspend_teardown(dom);
    return xtk__fail(e);
}
}

static int xen_suspend_request(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);
    char path[64];
    uint64_t one = 1;

    xd->stopped_seen = 0; /* until this one is seen done */
    xd->epoch_closed = 0;

    if (!xd->suspend_set)
        return xtk__fail(EINVAL);
    /* The guard hears of the request first: a guest that suspends after
     * we died is resumed too. */
    if (xd->method != XTK__SUSPEND_PAUSE) {
        xd->requested = 1;
        if (guard_update(dom, xd) < 0)
            return -1;
    }
    switch (xd->method) {
    case XTK__SUSPEND_EVTCHN:
        if (xenevtchn_notify(xd->xce, (evtchn_port_t)xd->local_port) < 0) {
            XTK_PERROR(dom->ctx, "domain %u: notifying the suspend channel",
                       dom->domid);
            return -1;
        }
        return 0;
    case XTK__SUSPEND_STORE:
    case XTK__SUSPEND_XL:
        snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
                 dom->domid);
        /* (an answer still owed: a request given up on before this) */
        if (store_answer(dom, xd, 1) < 0)
            return -1;
        if (xtk__xs_write_send(xd->store_fd, path, "suspend") < 0) {
            XTK_PERROR(dom->ctx, "domain %u: cannot write %s", dom->domid,
                       path);
            return -1;
        }
        xd->store_owed = 1;
        return 0;
    case XTK__SUSPEND_PAUSE:
        if (xc_domain_pause(xd->xch, dom->domid) < 0) {
            XTK_PERROR(dom->ctx, "domain %u: pause", dom->domid);
            return -1;
        }
        xd->suspend_paused = 1;
        if (guard_update(dom, xd) < 0)
            return -1;
        return write(xd->pause_evfd, &one, sizeof(one)) < 0 ? -1 : 0;
    }
    return xtk__fail(EINVAL);
}

/* ---- the guest's network output held for a backup ------------------------
 *
 * Each vif's packets are held by a plug qdisc in this (the backend's)
 * kernel (lib/xen/netbuf.h), in epochs that the stops close: one closed
 * epoch at a time unreleased (output_depth 1).  The console is not held:
 * xenconsoled reads it straight from the guest's ring (as with xl remus).
 */

/* The domain's vifs this domain serves (the frontends in its store
 * directory whose backend-id is 0): their devids and network devices here
 * (the backend's vifname, or netback's vif<domid>.<devid>).  The count, or
 * -1 (errno; E2BIG past max).  *foreign, if not NULL: the devid of a vif
 * another domain serves (its packets never pass here), or ULONG_MAX. */
static int vifs_of(struct xtk_domain *dom, char (*names)[IF_NAMESIZE],
                   unsigned int *devids, unsigned int max,
                   unsigned long *foreign)
{
    char path[96], list[XTK_XS_PAYLOAD_MAX + 1], val[256];
    int fd = store_connect(dom->ctx), len, n = 0, e = 0;

    if (foreign)
        *foreign = ULONG_MAX;
    if (fd < 0)
        return -1;
    snprintf(path, sizeof(path), "/local/domain/%u/device/vif", dom->domid);
    len = xtk__xs_request(fd, XTK_XS_DIRECTORY, path, strlen(path) + 1, NULL, 0,
                          list, sizeof(list) - 1, STORE_TIMEOUT_MS);
    if (len < 0) {
        e = errno;
        close(fd);
        if (e == ENOENT)
            return 0;
        XTK_PERROR(dom->ctx, "domain %u: reading %s", dom->domid, path);
        return xtk__fail(e);
    }
    list[len] = 0;
    for (char *p = list; p < list + len && *p && !e; p += strlen(p) + 1) {
        char *end;
        unsigned long devid = strtoul(p, &end, 10), bid;

        if (*end || devid > 99999)
            continue;
        snprintf(path, sizeof(path), "/local/domain/%u/device/vif/%lu/%s",
                 dom->domid, devid, "backend-id");
        bid = store_read(fd, path, val, sizeof(val)) == 0
                  ? strtoul(val, &end, 10)
                  : 0;
        if (bid != 0) {
            if (foreign)
                *foreign = devid;
            continue;
        }
        if ((unsigned int)n == max) {
            e = E2BIG;
            break;
        }
        snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u/%lu/%s",
                 dom->domid, devid, "vifname");
        if (store_read(fd, path, val, sizeof(val)) < 0 || !*val ||
            strlen(val) >= IF_NAMESIZE)
            snprintf(val, sizeof(val), "vif%u.%lu", dom->domid, devid);
        snprintf(names[n], IF_NAMESIZE, "%s", val);
        devids[n++] = (unsigned int)devid;
    }
    close(fd);
    return e ? xtk__fail(e) : n;
}

/* A stop (suspend_check found the guest stopped): if the output is held,
 * the epoch since the last stop is closed.  1, or -1 (errno). */
static int output_close_epoch(struct xtk_domain *dom, struct xen_dom *xd)
{
    if (!xd->holding || xd->epoch_closed)
        return 1;
    if (xtk__netbuf_close_epoch(dom->ctx, &xd->nb) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: cannot close its output's epoch",
                   dom->domid);
        return -1;
    }
    xd->epoch_closed = 1;
    dom->output_epoch = ++xd->out_closed;
    return 1;
}

/*
 * Who holds the domain's output: a save's handle keeps an exclusive lock
 * on /run/xtk-xen-output.DOMID while it does (the kernel lets it go with
 * the process), so that another handle's end of the hold (`xtk output`)
 * is refused while a live save holds it (EPERM), and allowed once it died.
 * The lock fd (in *fd), or -1 (errno: EPERM if held elsewhere).
 */
static int hold_lock(struct xtk_domain *dom, int *fd)
{
    char path[64];

    snprintf(path, sizeof(path), "/run/xtk-xen-output.%u", dom->domid);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) {
        XTK_PERROR(dom->ctx, "domain %u: %s", dom->domid, path);
        return -1;
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? EPERM : errno;

        close(*fd);
        *fd = -1;
        return xtk__fail(e);
    }
    return 0;
}

/* Ends the hold of the domain's output: this handle's, or else any its
 * vifs have in this kernel (one a dead save left).  0 (also if none), or
 * -1 (errno). */
static int output_end_all(struct xtk_domain *dom, struct xen_dom *xd, int send)
{
    char names[XTK__NETBUF_MAX][IF_NAMESIZE],
        ifbs[XTK__NETBUF_MAX][IF_NAMESIZE];
    unsigned int devids[XTK__NETBUF_MAX];
    int n = (int)xd->nb.n, rc = 0;

    for (int i = 0; i < n; i++) {
        snprintf(names[i], IF_NAMESIZE, "%s", xd->nb.dev[i].vif);
        snprintf(ifbs[i], IF_NAMESIZE, "%s", xd->nb.dev[i].ifb);
    }
    if (!n) {
        n = vifs_of(dom, names, devids, XTK__NETBUF_MAX, NULL);
        for (int i = 0; i < n; i++)
            if (xtk__netbuf_ifb_name(dom->domid, devids[i], ifbs[i]) < 0)
                ifbs[i][0] = 0;
    }
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (ifbs[i][0] &&
            xtk__netbuf_end(dom->ctx, names[i], ifbs[i], send) < 0 &&
            errno != ENOENT)
            rc = -1;
    return rc;
}

static int xen_output_hold(struct xtk_domain *dom, int how)
{
    struct xen_dom *xd = xd_of(dom);
    char names[XTK__NETBUF_MAX][IF_NAMESIZE];
    unsigned int devids[XTK__NETBUF_MAX];
    unsigned long foreign;
    int n, rc, lock = xd->hold_lock;

    if (how == XTK__OUTPUT_SEND || how == XTK__OUTPUT_DROP) {
        /* Not this handle's hold: refused while a live save has one. */
        if (lock < 0 && hold_lock(dom, &lock) < 0) {
            if (errno == EPERM)
                XTK_ERROR(dom->ctx,
                          "domain %u: a running save holds its output",
                          dom->domid);
            return -1;
        }
        rc = output_end_all(dom, xd, how == XTK__OUTPUT_SEND);
        xd->holding = 0;
        xtk__netbuf_close(&xd->nb);
        dom->output_depth = 0;
        close(lock);
        xd->hold_lock = -1;
        return rc;
    }
    if (how != XTK__OUTPUT_HOLD)
        return xtk__fail(EINVAL);
    if (xd->holding)
        return 0;
    if (hold_lock(dom, &lock) < 0) {
        if (errno == EPERM)
            XTK_ERROR(dom->ctx, "domain %u: another save holds its output",
                      dom->domid);
        return -1;
    }
    n = vifs_of(dom, names, devids, XTK__NETBUF_MAX, &foreign);
    if (n < 0 && errno == E2BIG)
        XTK_ERROR(dom->ctx, "domain %u: more than %u vifs to hold", dom->domid,
                  XTK__NETBUF_MAX);
    if (n >= 0 && foreign != ULONG_MAX) {
        /* Its packets never pass through here: a hold would miss them. */
        XTK_ERROR(dom->ctx,
                  "domain %u: its vif %lu is served by another domain: its "
                  "output cannot be held from here (--no-output-hold to "
                  "checkpoint it unheld)",
                  dom->domid, foreign);
        errno = EREMOTE; /* (not ENOTSUP: that would go on unheld) */
        n = -1;
    }
    /* A domain just built (a restore) has its vifs in the store before
     * netback has made their devices: a moment for them. */
    for (int i = 0, tries = 0; i < n && tries < 200; tries++) {
        if (if_nametoindex(names[i]))
            i++;
        else
            nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    if (n < 0 || (n && xtk__netbuf_hold(dom->ctx, &xd->nb, dom->domid,
                                        (const char(*)[IF_NAMESIZE])names,
                                        devids, (unsigned int)n) < 0)) {
        int e = errno;

        close(lock);
        return xtk__fail(e);
    }
    if (!n)
        XTK_INFO(dom->ctx,
                 "domain %u: no vif: no network output to hold (its "
                 "console is not held on Xen)",
                 dom->domid);
    xd->hold_lock = lock;
    xd->holding = 1;
    xd->out_closed = xd->out_released = 0;
    dom->output_epoch = 0;
    dom->output_depth = n ? 1 : 0;
    return 0;
}

static int xen_output_release(struct xtk_domain *dom, uint32_t epoch,
                              struct xtk__output *out)
{
    struct xen_dom *xd = xd_of(dom);

    memset(out, 0, sizeof(*out));
    if (!xd->holding || epoch > xd->out_closed)
        return xtk__fail(EINVAL);
    if (epoch <= xd->out_released)
        return 0;
    if (epoch != xd->out_released + 1) {
        /* The plug lost the count of all but the last (a save that did
         * not wait): nothing goes early; the hold ends with the save. */
        XTK_ERROR(dom->ctx,
                  "domain %u: epochs %u to %u of its output are closed "
                  "unreleased: the plug holds one at a time",
                  dom->domid, xd->out_released + 1, epoch);
        return xtk__fail(EPROTO);
    }
    if (xtk__netbuf_release(dom->ctx, &xd->nb, out) < 0)
        return -1;
    xd->out_released = epoch;
    return 0;
}

static int xen_suspend_check(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);
    xc_domaininfo_t xi;
    unsigned int reason;
    uint64_t v;
    int port;

    if (!xd->suspend_set)
        return xtk__fail(EINVAL);
    if (xd->method == XTK__SUSPEND_PAUSE) {
        if (read(xd->pause_evfd, &v, sizeof(v)) < 0)
            return errno == EAGAIN ? 0 : -1;
        return output_close_epoch(dom, xd);
    }
    /* The store's answer to the request first: a refused write fails the
     * suspend now, not when the guest is given up on. */
    if (store_answer(dom, xd, 0) < 0)
        return -1;
    if (xd->method == XTK__SUSPEND_XL) {
        /* Every event the watch has queued (the first, on registration,
         * and any other domain's death among them): then ask Xen. */
        char **ev;
        while ((ev = xs_check_watch(xd->watch_xs)))
            free(ev);
        if (errno != EAGAIN)
            return -1;
    } else {
        port = xenevtchn_pending(xd->xce);
        if (port < 0)
            return errno == EAGAIN ? 0 : -1;
        xenevtchn_unmask(xd->xce, (evtchn_port_t)port);
    }
    if (getinfo(xd->xch, dom->domid, &xi) < 0)
        return -1;
    reason = (xi.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
    if (!(xi.flags & XEN_DOMINF_shutdown) || reason != SHUTDOWN_suspend)
        return 0; /* a stray notification: keep waiting */
    xd->stopped_seen = 1;
    return output_close_epoch(dom, xd);
}

static void xen_suspend_teardown(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);

    if (!xd->suspend_set)
        return;
    /* Without this Xen keeps signalling our port instead of VIRQ_DOM_EXC
     * and xl's next save of the domain waits a minute for @releaseDomain. */
    if (xd->subscribed)
        xc_domain_subscribe_for_suspend(xd->xch, dom->domid, 0);
    xd->subscribed = 0;
    /* A request still in flight stays the guard's (guard_stop). */
    guard_update(dom, xd);
    if (xd->lock_fd >= 0)
        xc_suspend_evtchn_release(xd->xch, xd->xce, dom->domid, xd->local_port,
                                  &xd->lock_fd);
    else if (xd->local_port >= 0)
        xenevtchn_unbind(xd->xce, (evtchn_port_t)xd->local_port);
    if (xd->xce)
        xenevtchn_close(xd->xce);
    if (xd->pause_evfd >= 0)
        close(xd->pause_evfd);
    if (xd->store_fd >= 0)
        close(xd->store_fd); /* (an answer owed goes with it) */
    if (xd->store_ep >= 0)
        close(xd->store_ep);
    xd->store_ep = -1;
    xd->store_owed = 0;
    if (xd->watch_xs) {
        xs_unwatch(xd->watch_xs, "@releaseDomain", "xtk-suspend");
        xs_close(xd->watch_xs);
    }
    xd->watch_xs = NULL;
    xd->xce = NULL;
    xd->local_port = xd->guest_port = -1;
    xd->lock_fd = xd->pause_evfd = xd->store_fd = -1;
    xd->suspend_set = 0;
}

/*
 * A guest sitting suspended carries on, as `xl save -c` resumes it: Xen
 * returns 1 from its suspend hypercall (the suspend was cancelled), and
 * the store forgets that the domain was shut down.  A paused one is
 * unpaused.
 */
static int xen_resume(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);
    xc_domaininfo_t xi;
    char payload[16];
    int fd;

    dom->resumed_ns = 0;
    xd->stopped_seen = 0;
    if (build_pending(xd))
        return build_start(dom, xd->build);
    if (getinfo(xd->xch, dom->domid, &xi) < 0)
        return -1;
    if ((xi.flags & XEN_DOMINF_shutdown) &&
        ((xi.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask) ==
            SHUTDOWN_suspend) {
        xd->requested = 0;
        if (xc_domain_resume(xd->xch, dom->domid, 1) < 0) {
            XTK_PERROR(dom->ctx, "domain %u: resume", dom->domid);
            return -1;
        }
        dom->resumed_ns = xtk_now_ns();
        fd = xtk__xs_connect(xtk__xs_path(NULL));
        snprintf(payload, sizeof(payload), "%u", dom->domid);
        if (fd < 0 ||
            xtk__xs_request(fd, XS_RESUME, payload, strlen(payload) + 1, NULL,
                            0, NULL, 0, STORE_TIMEOUT_MS) < 0)
            XTK_PERROR(dom->ctx, "domain %u: the store's RESUME", dom->domid);
        if (fd >= 0)
            close(fd);
    } else if (xd->requested && xd->store_fd >= 0) {
        /*
         * The guest has not suspended yet (a save that gave up just after
         * asking): take back a request it has not read.  The request
         * stays counted: if the guest read it already, it suspends
         * later, and the guard resumes it once this handle closes.
         */
        char path[64], val[32];
        snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
                 dom->domid);
        (void)store_answer(dom, xd, 1);
        if (store_read(xd->store_fd, path, val, sizeof(val)) == 0 &&
            !strcmp(val, "suspend"))
            xtk__xs_write(xd->store_fd, path, "");
    }
    {
        unsigned int pauses = xd->held_pauses + xd->suspend_paused;
        xd->held_pauses = 0;
        xd->suspend_paused = 0;
        guard_update(dom, xd); /* before the pauses are released */
        while (pauses--)
            if (xc_domain_unpause(xd->xch, dom->domid) < 0) {
                XTK_PERROR(dom->ctx, "domain %u: unpause", dom->domid);
                break;
            }
    }
    if (!dom->resumed_ns)
        dom->resumed_ns = xtk_now_ns();
    return 0;
}

/* ---- the frame space, the stream layout, the state ---------------------- */

#define TYPE_BATCH 1024u /* frames per getpageframeinfo3 */

/*
 * Migration v2's records (docs/specs/libxc-migration-stream.pandoc in
 * Xen): the types and the bodies xtk writes itself.
 */
#define REC_TSC_INFO 0x08u
#define REC_HVM_CONTEXT 0x09u
#define REC_HVM_PARAMS 0x0au
#define REC_CPUID_POLICY 0x11u
#define REC_MSR_POLICY 0x12u

struct rec_tsc_info {
    uint32_t mode;
    uint32_t khz;
    uint64_t nsec;
    uint32_t incarnation;
    uint32_t reserved;
};

struct rec_hvm_param {
    uint64_t index;
    uint64_t value;
};

/*
 * The HVM parameters a guest's state needs on the destination, the set
 * Xen's own save sends (xg_sr_save_x86_hvm.c); those at 0 are left out.
 * Each is a hypercall of its own, slow in a final round.  Those the guest
 * cannot set (all but the four guest_sets() names: Xen's
 * hvm_allow_set_param refuses the rest to it) are set by the toolstack
 * when it builds the domain and never after: they are read once, when
 * the save starts (xen_layout), and only the four in each final round.
 */
static const uint32_t hvm_params[] = {
    HVM_PARAM_STORE_PFN,
    HVM_PARAM_IOREQ_PFN,
    HVM_PARAM_BUFIOREQ_PFN,
    HVM_PARAM_PAGING_RING_PFN,
    HVM_PARAM_MONITOR_RING_PFN,
    HVM_PARAM_SHARING_RING_PFN,
    HVM_PARAM_VM86_TSS_SIZED,
    HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_ACPI_IOPORTS_LOCATION,
    HVM_PARAM_VIRIDIAN,
    HVM_PARAM_IDENT_PT,
    HVM_PARAM_VM_GENERATION_ID_ADDR,
    HVM_PARAM_IOREQ_SERVER_PFN,
    HVM_PARAM_NR_IOREQ_SERVER_PAGES,
    HVM_PARAM_X87_FIP_WIDTH,
    HVM_PARAM_MCA_CAP,
};

/*
 * xtk's own engine saves PVH guests (translated: frame = guest frame,
 * nothing to normalise, no device model).  A PV guest's stream needs its
 * page tables rewritten frame by frame (libxenguest's PV save); an HVM
 * guest with emulated devices needs its device model's state and dirty
 * log (QEMU's, through libxl): neither is here.
 */
_Static_assert(XTK__ARRAY_SIZE(hvm_params) <=
                   XTK__ARRAY_SIZE(((struct xen_dom *)0)->tool_params),
               "tool_params");

static int guest_sets(uint32_t param)
{
    return param == HVM_PARAM_VM86_TSS_SIZED ||
           param == HVM_PARAM_ACPI_IOPORTS_LOCATION ||
           param == HVM_PARAM_VM_GENERATION_ID_ADDR ||
           param == HVM_PARAM_X87_FIP_WIDTH;
}

/* HVM parameter i of hvm_params: the toolstack's from what was read once. */
static int hvm_param(struct xtk_domain *dom, size_t i, uint64_t *v)
{
    struct xen_dom *xd = xd_of(dom);

    if (xd->tool_params_read && !guest_sets(hvm_params[i])) {
        *v = xd->tool_params[i];
        return 0;
    }
    if (xc_hvm_param_get(xd->xch, dom->domid, hvm_params[i], v) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: HVM parameter %u", dom->domid,
                   hvm_params[i]);
        return -1;
    }
    return 0;
}

/* The toolstack's HVM parameters, once (see hvm_params). */
static int read_tool_params(struct xtk_domain *dom)
{
    struct xen_dom *xd = xd_of(dom);

    xd->tool_params_read = 0;
    for (size_t i = 0; i < XTK__ARRAY_SIZE(hvm_params); i++)
        if (!guest_sets(hvm_params[i]) &&
            hvm_param(dom, i, &xd->tool_params[i]) < 0)
            return -1;
    xd->tool_params_read = 1;
    return 0;
}

static int pvh_only(struct xtk_domain *dom, const xc_domaininfo_t *xi,
                    const char *what)
{
    if (!(xi->flags & XEN_DOMINF_hvm_guest)) {
        XTK_ERROR(dom->ctx,
                  "domain %u is a PV guest: xtk's engine %s PVH guests "
                  "only (PV guests need libxenguest's save, not driven by "
                  "xtk yet; use xl save)",
                  dom->domid, what);
        return xtk__fail(ENOTSUP);
    }
    if (xi->arch_config.emulation_flags &
        ~(XEN_X86_EMU_LAPIC | XEN_X86_EMU_VPCI)) {
        XTK_ERROR(dom->ctx,
                  "domain %u is an HVM guest with emulated devices: xtk's "
                  "engine %s PVH guests only (the device model's state "
                  "and dirty log are libxl's; use xl save)",
                  dom->domid, what);
        return xtk__fail(ENOTSUP);
    }
    return 0;
}

/* pvh_only() on the domain as Xen shows it now. */
static int need_pvh(struct xtk_domain *dom, const char *what)
{
    xc_domaininfo_t xi;

    if (getinfo(xd_of(dom)->xch, dom->domid, &xi) < 0)
        return -1;
    return pvh_only(dom, &xi, what);
}

/* The types of frames base..base+n-1 into bm; returns how many exist. */
static long scan_types(struct xtk_domain *dom, xen_pfn_t *types, xen_pfn_t base,
                       unsigned int n, uint64_t *bm)
{
    struct xen_dom *xd = xd_of(dom);
    long found = 0;

    for (unsigned int i = 0; i < n; i++)
        types[i] = base + i;
    if (pfn_types(xd->xch, dom->domid, n, types) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: the types of frames %#lx-%#lx",
                   dom->domid, (unsigned long)base,
                   (unsigned long)(base + n - 1));
        return -1;
    }
    for (unsigned int i = 0; i < n; i++) {
        xen_pfn_t t = types[i] & XEN_DOMCTL_PFINFO_LTAB_MASK;
        /* XTAB: a hole, or one of Xen's own pages (shared info, grant
         * frames).  BROKEN: a frame whose memory failed; Xen's save sends
         * it without data, xtk not at all. */
        if (t != XEN_DOMCTL_PFINFO_XTAB && t != XEN_DOMCTL_PFINFO_BROKEN) {
            bm[(base + i) / 64] |= 1ull << ((base + i) % 64);
            found++;
        }
    }
    return found;
}

/*
 * How many frames a stopped domain has in its p2m, when that is known:
 * getpageframeinfo3 counts a frame that the domain owns and that is
 * neither one of Xen's pages nor an "extra" one, which is exactly what
 * its tot_pages counts, but for pages it owns outside its p2m (a PoD
 * cache; an HVM guest's ioreq pages taken out for a device model) and
 * pages shared or paged out.  With those, -1: the whole space is read.
 */
static long frames_owned(struct xtk_domain *dom)
{
    xc_domaininfo_t xi;

    if (getinfo(xd_of(dom)->xch, dom->domid, &xi) < 0 ||
        !(xi.flags & (XEN_DOMINF_paused | XEN_DOMINF_shutdown)) ||
        xi.shr_pages || xi.paged_pages || !xi.tot_pages)
        return -1;
    return (long)xi.tot_pages;
}

/*
 * The p2m of an HVM or PVH guest spans ~1M frames (its special pages sit
 * just below 4 GiB) of which a small guest uses a few thousand: its RAM
 * from 0 up (and from 4 GiB up, if it is large), its ACPI tables at
 * 0xfc000, its special pages at 0xfeff8-0xfefff, and the top of the
 * space (nr_gpfns - 1) is in use by definition.  Reading the types of
 * all of it is most of the cost of a save under TCG (a million p2m
 * lookups, 1024 per hypercall).  With the domain stopped (FRAMES_STOPPED)
 * the reading goes inwards from both ends, a batch at a time from the
 * end whose last batch found more, and stops once it has found as many
 * frames as the domain owns: what is left unread holds none.  Running,
 * or when the count is not known, it reads the whole space.
 */
static int xen_frames(struct xtk_domain *dom, unsigned int flags, uint64_t *end,
                      uint64_t **present)
{
    struct xen_dom *xd = xd_of(dom);
    xen_pfn_t nr = 0, *types = NULL, lo, hi;
    long owned = -1, found = 0, hits_lo = 1, hits_hi = 0, r;
    uint64_t *bm = NULL;
    int side = 0; /* 0: the low end next */

    if (need_pvh(dom, "maps the frames of") < 0)
        return -1;
    if (xc_domain_nr_gpfns(xd->xch, dom->domid, &nr) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: the size of its frame space",
                   dom->domid);
        return -1;
    }
    if (flags & XTK__FRAMES_STOPPED)
        owned = frames_owned(dom);
    bm = calloc((nr + 63) / 64 ? (nr + 63) / 64 : 1, 8);
    types = malloc(TYPE_BATCH * sizeof(*types));
    if (!bm || !types)
        goto fail;
    lo = 0;
    hi = nr;
    while (lo < hi && (owned < 0 || found < owned)) {
        unsigned int n =
            (unsigned int)(hi - lo < TYPE_BATCH ? hi - lo : TYPE_BATCH);

        if (owned >= 0) {
            /* The end that found more; alternate while neither finds. */
            if (hits_lo != hits_hi)
                side = hits_hi > hits_lo;
            else if (!hits_lo)
                side = !side;
        }
        if (side) {
            if ((r = scan_types(dom, types, hi - n, n, bm)) < 0)
                goto fail;
            hi -= n;
            hits_hi = r;
        } else {
            if ((r = scan_types(dom, types, lo, n, bm)) < 0)
                goto fail;
            lo += n;
            hits_lo = r;
        }
        found += r;
    }
    if (owned >= 0)
        XTK_DEBUG(dom->ctx,
                  "domain %u: %ld of its %ld frames found reading %lu of "
                  "%lu frame types",
                  dom->domid, found, owned, (unsigned long)(nr - (hi - lo)),
                  (unsigned long)nr);
    free(types);
    *end = nr;
    *present = bm;
    return 0;
fail : {
    int e = errno ? errno : ENOMEM;
    free(types);
    free(bm);
    return xtk__fail(e);
}
}

/*
 * The CPUID and MSR policy records: the guest's CPU as Xen shows it, so
 * that the destination refuses a host that cannot offer the same.
 */
static int policy_records(struct xtk_domain *dom, void **buf, size_t *len,
                          size_t *cap)
{
    struct xen_dom *xd = xd_of(dom);
    uint32_t nr_leaves = 0, nr_msrs = 0;
    xen_cpuid_leaf_t *leaves = NULL;
    xen_msr_entry_t *msrs = NULL;
    xc_cpu_policy_t *policy = NULL;
    int r = -1;

    if (xc_cpu_policy_get_size(xd->xch, &nr_leaves, &nr_msrs) < 0) {
        XTK_PERROR(dom->ctx, "the size of a CPU policy");
        return -1;
    }
    leaves = calloc(nr_leaves ? nr_leaves : 1, sizeof(*leaves));
    msrs = calloc(nr_msrs ? nr_msrs : 1, sizeof(*msrs));
    policy = xc_cpu_policy_init();
    if (!leaves || !msrs || !policy)
        goto out;
    if (xc_cpu_policy_get_domain(xd->xch, dom->domid, policy) < 0 ||
        xc_cpu_policy_serialise(xd->xch, policy, leaves, &nr_leaves, msrs,
                                &nr_msrs) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: its CPU policy", dom->domid);
        goto out;
    }
    if ((nr_leaves &&
         xtk__rec_append(buf, len, cap, REC_CPUID_POLICY, leaves,
                         nr_leaves * sizeof(*leaves), NULL, 0) < 0) ||
        (nr_msrs && xtk__rec_append(buf, len, cap, REC_MSR_POLICY, msrs,
                                    nr_msrs * sizeof(*msrs), NULL, 0) < 0))
        goto out;
    r = 0;
out:
    if (r < 0 && !errno)
        errno = ENOMEM;
    {
        int e = errno;
        free(leaves);
        free(msrs);
        if (policy)
            xc_cpu_policy_destroy(policy);
        errno = e;
    }
    return r;
}

/*
 * Xen's own layout for a PVH guest (xg_sr_save_x86_hvm.c's), with
 * the running Xen's version in the domain header, so that Xen's restore
 * (xl restore, libxenguest) takes the stream as its own.
 */
static int xen_layout(struct xtk_domain *dom, struct xtk__layout *l)
{
    struct xen_dom *xd = xd_of(dom);
    size_t cap = 0;
    int v;

    memset(l, 0, sizeof(*l));
    {
        xc_domaininfo_t xi;

        if (getinfo(xd->xch, dom->domid, &xi) < 0)
            return -1;
        if (!(xi.flags & XEN_DOMINF_hvm_guest)) {
            /* A PV guest: libxenguest's own save (xen_save_delegate). */
            l->flags = XTK__LAYOUT_DELEGATE;
            l->domain_type = XTK_DOMAIN_X86_PV;
            return 0;
        }
    }
    if (need_pvh(dom, "saves") < 0)
        return -1;
    v = xc_version(xd->xch, XENVER_version, NULL);
    if (v < 0) {
        XTK_PERROR(dom->ctx, "Xen's version");
        return -1;
    }
    if (read_tool_params(dom) < 0)
        return -1;
    xd->hvm_ctx_size = xc_domain_hvm_getcontext(xd->xch, dom->domid, NULL, 0);
    l->flags = XTK__LAYOUT_NATIVE;
    l->domain_type = XTK_DOMAIN_X86_HVM;
    l->xen_major = (uint32_t)v >> 16;
    l->xen_minor = (uint32_t)v & 0xffff;
    if (policy_records(dom, &l->static_data, &l->static_len, &cap) < 0) {
        int e = errno;
        free(l->static_data);
        l->static_data = NULL;
        return xtk__fail(e);
    }
    return 0;
}

/*
 * A PV guest's save: libxenguest's xc_domain_save writes the stream (its
 * page tables need rewriting frame by frame, which it does), as
 * libxl-save-helper drives it for xl, but with xtk's suspend (the request
 * and its notification on an event channel, the guard watching) and
 * xtk's timing.  Live needs the dirty log of a PV guest, which a Xen
 * without shadow paging (Debian's) does not have: there libxenguest's
 * save fails (its own message on standard error, then ours).
 */
struct delegate_suspend {
    int (*suspend)(void *arg);
    void *arg;
};

/* libxenguest's suspend callback says success with non-zero, failure 0. */
static int delegate_suspend_cb(void *data)
{
    struct delegate_suspend *ds = data;

    return ds->suspend(ds->arg) == 0;
}

static int xen_save_delegate(struct xtk_domain *dom, int fd, int live,
                             int (*suspend)(void *arg), void *arg)
{
    struct xen_dom *xd = xd_of(dom);
    struct delegate_suspend ds = {suspend, arg};
    struct save_callbacks cb = {.suspend = delegate_suspend_cb, .data = &ds};

    if (xc_domain_save(xd->xch, fd, dom->domid, live ? XCFLAGS_LIVE : 0, &cb,
                       XC_STREAM_PLAIN, -1) < 0) {
        int e = errno ? errno : EIO;

        XTK_ERROR(dom->ctx, "domain %u: libxenguest's save failed: %s",
                  dom->domid, strerror(e));
        return xtk__fail(e);
    }
    return 0;
}

/*
 * The state at the end of a checkpoint, as Xen's records in Xen's order:
 * TSC_INFO, HVM_CONTEXT (every vCPU and the emulated platform), and
 * HVM_PARAMS.
 */
/*
 * The domain's HVM context, into the handle's own hypercall buffer (*ctx
 * points there until the next call): libxenctrl's getcontext bounces a
 * buffer of more than a page through a fresh mapping each time, which
 * cost a final round 1.2 ms of its ~6 under TCG where the size query
 * alone takes 0.1 (bench/xen-bench.sh, "calls").  Its size, or -1.
 */
static int hvm_context(struct xtk_domain *dom, struct xen_dom *xd,
                       const uint8_t **ctx)
{
    for (int tries = 0; tries < 2; tries++) {
        int size = xd->hvm_ctx_size > 0 && !tries
                       ? xd->hvm_ctx_size
                       : xc_domain_hvm_getcontext(xd->xch, dom->domid, NULL, 0);
        unsigned long pages = ((unsigned long)size + 4095) / 4096;
        struct xen_domctl d;

        if (size <= 0) {
            XTK_PERROR(dom->ctx, "domain %u: the size of its HVM context",
                       dom->domid);
            return size < 0 ? -1 : xtk__fail(EIO);
        }
        if (xd->ctx_pages < pages) {
            if (xd->ctx_hbuf.hbuf)
                xc__hypercall_buffer_free_pages(xd->xch, &xd->ctx_hbuf,
                                                (int)xd->ctx_pages);
            xd->ctx_hbuf.hbuf = NULL;
            xd->ctx_pages = 0;
            if (!xc__hypercall_buffer_alloc_pages(xd->xch, &xd->ctx_hbuf,
                                                  (int)pages)) {
                xd->ctx_hbuf.hbuf = NULL;
                XTK_PERROR(dom->ctx,
                           "domain %u: a %lu-page buffer for its "
                           "HVM context",
                           dom->domid, pages);
                return -1;
            }
            xd->ctx_pages = pages;
        }
        memset(&d, 0, sizeof(d));
        d.cmd = XEN_DOMCTL_gethvmcontext;
        d.domain = (domid_t)dom->domid;
        d.u.hvmcontext.size = (uint32_t)(xd->ctx_pages * 4096);
        set_xen_guest_handle_raw(d.u.hvmcontext.buffer, xd->ctx_hbuf.hbuf);
        if (xc_domctl(xd->xch, &d) == 0) {
            xd->hvm_ctx_size = size;
            *ctx = xd->ctx_hbuf.hbuf;
            return (int)d.u.hvmcontext.size;
        }
        if (errno != ENOSPC || tries) {
            XTK_PERROR(dom->ctx, "domain %u: its HVM context", dom->domid);
            return -1;
        }
        xd->hvm_ctx_size = 0; /* it grew: ask its size */
    }
    return xtk__fail(EIO);
}

static int xen_get_state(struct xtk_domain *dom, void **buf, size_t *len)
{
    struct xen_dom *xd = xd_of(dom);
    struct rec_tsc_info tsc = {0};
    struct rec_hvm_param params[XTK__ARRAY_SIZE(hvm_params)];
    uint32_t head[2] = {0, 0}; /* count, reserved */
    const uint8_t *ctx = NULL;
    void *out = NULL;
    size_t olen = 0, cap = 0;
    xc_domaininfo_t xi;
    int size, e;

    if (!xd->stopped_seen || !xd->pvh_seen) {
        if (getinfo(xd->xch, dom->domid, &xi) < 0)
            return -1;
        if (!(xi.flags & (XEN_DOMINF_paused | XEN_DOMINF_shutdown)))
            return xtk__fail(EBUSY);
        if (pvh_only(dom, &xi, "saves") < 0)
            return -1;
        xd->pvh_seen = 1;
    }
    if (xc_domain_get_tsc_info(xd->xch, dom->domid, &tsc.mode, &tsc.nsec,
                               &tsc.khz, &tsc.incarnation) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: its TSC", dom->domid);
        return -1;
    }
    size = hvm_context(dom, xd, &ctx);
    if (size < 0)
        return -1;
    for (size_t i = 0; i < XTK__ARRAY_SIZE(hvm_params); i++) {
        uint64_t v;

        if (hvm_param(dom, i, &v) < 0)
            goto fail;
        if (v)
            params[head[0]++] = (struct rec_hvm_param){hvm_params[i], v};
    }
    if (xtk__rec_append(&out, &olen, &cap, REC_TSC_INFO, &tsc, sizeof(tsc),
                        NULL, 0) < 0 ||
        xtk__rec_append(&out, &olen, &cap, REC_HVM_CONTEXT, ctx, (size_t)size,
                        NULL, 0) < 0 ||
        (head[0] &&
         xtk__rec_append(&out, &olen, &cap, REC_HVM_PARAMS, head, sizeof(head),
                         params, head[0] * sizeof(params[0])) < 0))
        goto fail;
    *buf = out;
    *len = olen;
    return 0;
fail:
    e = errno ? errno : EIO;
    free(out);
    return xtk__fail(e);
}

/* ---- the domain builder, for a restore ---------------------------------- */

/*
 * A restore of Xen's own stream of a PVH guest gets its domain built here,
 * as libxl builds one for `xl restore` (libxl__domain_make,
 * libxl__build_pre, libxenguest's restore, libxl__build_post), from the
 * libxl config the stream carried:
 *
 *   create_native  the domain (createdomain: HVM container with HAP and
 *                  only a local APIC emulated), its vCPUs, its memory
 *                  limit, its paging pool, the store's and the console's
 *                  event channels, libxl's parameters for a PVH guest, and
 *                  its store directories, as libxl lays them out; paused,
 *                  with no memory: the restore populates each frame its
 *                  stream brings (populate)
 *   set_state      the CPU policy (refused if this host cannot give it),
 *                  TSC_INFO, HVM_PARAMS (the store and console pages are
 *                  cleared, as Xen's restore does), then the event channel
 *                  parameters, HVM_CONTEXT and the grant table's seed
 *   resume         the store and console nodes, libxl's userdata (so xl
 *                  can save, migrate and destroy the domain later), the
 *                  store's INTRODUCE, then the unpause
 *
 * Disks and network interfaces are added by libxl (libxl_device_disk_add,
 * libxl_device_nic_add: the store's backend and frontend directories, the
 * hotplug scripts, libxl's record of them) as soon as the domain exists,
 * before any memory arrives: their backends are ready when the guest
 * first runs, and a device this host cannot give (a disk that is not
 * here, or in use by another guest) refuses the restore before its
 * stream is read.  Other devices are refused before anything is created.
 * Until resume, a failure leaves the restore engine to destroy the domain
 * (libxl_domain_destroy, which takes the devices away again).
 */
struct xen_build {
    libxl_domain_config cfg; /* name and uuid final */
    uint32_t store_port, console_port;
    uint64_t store_gfn, console_gfn;
    unsigned int have_store : 1, have_console : 1, loaded : 1, started : 1;
    unsigned int pv : 1; /* restored by libxenguest (restore_delegate) */
    char uuid[40];
};

/* A domain built here that has not run yet. */
static int build_pending(const struct xen_dom *xd)
{
    return xd->build && !xd->build->started;
}

static void build_free(struct xen_build *b)
{
    if (!b)
        return;
    libxl_domain_config_dispose(&b->cfg);
    free(b);
}

/* What xtk cannot build yet: refused before anything exists. */
static int build_check(struct xtk_domain *dom, const libxl_domain_config *c,
                       uint32_t stream_type)
{
    const libxl_domain_build_info *b = &c->b_info;
    int devices = c->num_pcidevs + c->num_rdms + c->num_dtdevs + c->num_vfbs +
                  c->num_vkbs + c->num_vtpms + c->num_p9s + c->num_pvcallsifs +
                  c->num_vdispls + c->num_vsnds + c->num_channels +
                  c->num_usbctrls + c->num_usbdevs;

    if (c->c_info.type != LIBXL_DOMAIN_TYPE_PVH &&
        c->c_info.type != LIBXL_DOMAIN_TYPE_PV) {
        XTK_ERROR(dom->ctx,
                  "the stream is of a%s guest: xtk restores PVH guests with "
                  "its own engine and PV guests with libxenguest's restore "
                  "(use xl restore)",
                  c->c_info.type == LIBXL_DOMAIN_TYPE_HVM ? "n HVM"
                                                          : "n unknown");
        return xtk__fail(ENOTSUP);
    }
    if ((c->c_info.type == LIBXL_DOMAIN_TYPE_PV) !=
        (stream_type == XTK_DOMAIN_X86_PV)) {
        XTK_ERROR(dom->ctx,
                  "the config is of a %s guest, the stream of a%s one",
                  c->c_info.type == LIBXL_DOMAIN_TYPE_PV ? "PV" : "PVH",
                  stream_type == XTK_DOMAIN_X86_PV ? " PV" : "n HVM/PVH");
        return xtk__fail(EPROTO);
    }
    if (devices) {
        XTK_ERROR(dom->ctx,
                  "the guest has %d device(s) besides its console, disks "
                  "and network interfaces (PCI, framebuffer, keyboard, "
                  "vTPM, 9p, USB, channels, ...): xtk's domain builder "
                  "does not build them (use xl restore)",
                  devices);
        return xtk__fail(ENOTSUP);
    }
    if (b->max_vcpus < 1 || b->max_vcpus > 128 ||
        b->max_memkb == LIBXL_MEMKB_DEFAULT ||
        b->target_memkb == LIBXL_MEMKB_DEFAULT || !b->target_memkb ||
        b->target_memkb > b->max_memkb || b->max_memkb > (1ull << 40)) {
        XTK_ERROR(dom->ctx,
                  "the config's shape is not one to build: %d vCPUs, "
                  "memory %llu kB of at most %llu kB",
                  b->max_vcpus, (unsigned long long)b->target_memkb,
                  (unsigned long long)b->max_memkb);
        return xtk__fail(EINVAL);
    }
    return 0;
}

static int xs_mknod(struct xs_handle *xs, xs_transaction_t t, const char *path,
                    struct xs_permissions *perms, unsigned int n)
{
    return xs_write(xs, t, path, "", 0) &&
                   xs_set_permissions(xs, t, path, perms, n)
               ? 0
               : -1;
}

static int xs_printf(struct xs_handle *xs, xs_transaction_t t, const char *dir,
                     const char *node, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int xs_printf(struct xs_handle *xs, xs_transaction_t t, const char *dir,
                     const char *node, const char *fmt, ...)
{
    char path[256], val[256];
    va_list al;

    snprintf(path, sizeof(path), "%s/%s", dir, node);
    va_start(al, fmt);
    vsnprintf(val, sizeof(val), fmt, al);
    va_end(al);
    return xs_write(xs, t, path, val, strlen(val)) ? 0 : -1;
}

/*
 * The nodes libxl__build_post and the console device write that do not
 * depend on the state: memory, domid, the ports, the console's kind, the
 * vCPUs' availability.
 */
static int build_store_static(struct xs_handle *xs, xs_transaction_t t,
                              struct xtk_domain *dom, struct xen_build *b,
                              const char *dp)
{
    libxl_domain_build_info *bi = &b->cfg.b_info;
    int ok = !xs_printf(xs, t, dp, "memory/static-max", "%llu",
                        (unsigned long long)bi->max_memkb) &&
             !xs_printf(xs, t, dp, "memory/target", "%llu",
                        (unsigned long long)bi->target_memkb) &&
             !xs_printf(xs, t, dp, "memory/videoram", "%lld",
                        bi->video_memkb == LIBXL_MEMKB_DEFAULT
                            ? -1ll
                            : (long long)bi->video_memkb) &&
             !xs_printf(xs, t, dp, "domid", "%u", dom->domid) &&
             !xs_printf(xs, t, dp, "store/port", "%u", b->store_port) &&
             !xs_printf(xs, t, dp, "console/backend-id", "0") &&
             !xs_printf(xs, t, dp, "console/limit", "%d", 1048576) &&
             !xs_printf(xs, t, dp, "console/type", "xenconsoled") &&
             !xs_printf(xs, t, dp, "console/output", "pty") &&
             !xs_printf(xs, t, dp, "console/tty", "%s", "") &&
             !xs_printf(xs, t, dp, "console/port", "%u", b->console_port);

    for (int i = 0; ok && i < bi->max_vcpus; i++) {
        char node[32];

        snprintf(node, sizeof(node), "cpu/%d/availability", i);
        ok = !xs_printf(xs, t, dp, node, "%s",
                        !bi->avail_vcpus.size ||
                                libxl_bitmap_test(&bi->avail_vcpus, i)
                            ? "online"
                            : "offline");
    }
    return ok ? 0 : -1;
}

/*
 * The domain's directories, as libxl__domain_make lays them out: its own
 * (readable by it), /vm/UUID, libxl's, and the nodes the guest writes.
 */
static int build_store_dirs(struct xtk_domain *dom, struct xen_build *b)
{
    static const char *const rw[] = {
        "device/suspend/event-channel",
        "control/shutdown",
        "control/feature-poweroff",
        "control/feature-reboot",
        "control/feature-suspend",
        "control/sysrq",
        "data",
        "drivers",
        "feature",
        "attr",
        "error",
    };
    struct xs_permissions ro[2] = {{.id = 0, .perms = XS_PERM_NONE},
                                   {.id = dom->domid, .perms = XS_PERM_READ}};
    struct xs_permissions own[1] = {{.id = dom->domid, .perms = XS_PERM_NONE}};
    struct xs_permissions none[1] = {{.id = 0, .perms = XS_PERM_NONE}};
    char dp[64], vm[64], lp[64], path[128];
    struct xs_handle *xs = xs_open(0);
    int tries = 0, ok;

    if (!xs) {
        XTK_PERROR(dom->ctx, "cannot open libxenstore");
        return -1;
    }
    snprintf(dp, sizeof(dp), "/local/domain/%u", dom->domid);
    snprintf(vm, sizeof(vm), "/vm/%s", b->uuid);
    snprintf(lp, sizeof(lp), "/libxl/%u", dom->domid);
    do {
        xs_transaction_t t = xs_transaction_start(xs);

        ok = t != XBT_NULL;
        if (ok) {
            xs_rm(xs, t, dp);
            xs_rm(xs, t, vm);
            xs_rm(xs, t, lp);
            ok = !xs_mknod(xs, t, dp, ro, 2) && !xs_mknod(xs, t, vm, ro, 2) &&
                 !xs_mknod(xs, t, lp, none, 1);
            snprintf(path, sizeof(path), "%s/device", lp);
            ok = ok && !xs_mknod(xs, t, path, none, 1);
            ok = ok && !xs_printf(xs, t, dp, "vm", "%s", vm) &&
                 !xs_printf(xs, t, dp, "name", "%s", b->cfg.c_info.name) &&
                 !xs_printf(xs, t, vm, "uuid", "%s", b->uuid) &&
                 !xs_printf(xs, t, vm, "name", "%s", b->cfg.c_info.name);
            for (const char *d = "cpu\0memory\0device\0control\0"; ok && *d;
                 d += strlen(d) + 1) {
                snprintf(path, sizeof(path), "%s/%s", dp, d);
                ok = !xs_mknod(xs, t, path, ro, 2);
            }
            for (size_t i = 0; ok && i < XTK__ARRAY_SIZE(rw); i++) {
                snprintf(path, sizeof(path), "%s/%s", dp, rw[i]);
                ok = !xs_mknod(xs, t, path, own, 1);
            }
            ok = ok && !build_store_static(xs, t, dom, b, dp) &&
                 !xs_printf(xs, t, dp,
                            "control/platform-feature-multiprocessor-suspend",
                            "1") &&
                 !xs_printf(xs, t, dp,
                            "control/platform-feature-xs_reset_watches", "1") &&
                 !xs_printf(xs, t, lp, "type", "pvh");
            if (!ok) {
                int e = errno;
                xs_transaction_end(xs, t, 1);
                errno = e;
            } else if (!xs_transaction_end(xs, t, 0))
                ok = 0;
        }
    } while (!ok && errno == EAGAIN && ++tries < 20);
    if (!ok)
        XTK_PERROR(dom->ctx, "domain %u: its store directories", dom->domid);
    xs_close(xs);
    return ok ? 0 : -1;
}

/* Takes the store nodes of a domain that never ran away again. */
static void build_store_rm(struct xtk_domain *dom, struct xen_build *b)
{
    struct xs_handle *xs = xs_open(0);
    char path[64];

    if (!xs)
        return;
    snprintf(path, sizeof(path), "/local/domain/%u", dom->domid);
    xs_rm(xs, XBT_NULL, path);
    snprintf(path, sizeof(path), "/vm/%s", b->uuid);
    xs_rm(xs, XBT_NULL, path);
    snprintf(path, sizeof(path), "/libxl/%u", dom->domid);
    xs_rm(xs, XBT_NULL, path);
    xs_close(xs);
}

/*
 * The config's disks and network interfaces, added by libxl to the domain
 * built (its userdata stored already: libxl records each device there).
 * *added is set once the first one may have left something behind.
 */
static int build_devices(struct xtk_domain *dom, struct xen_build *b,
                         int *added)
{
    struct xtl_keep keep;
    libxl_ctx *lctx;
    int rc = 0, i;

    if (!b->cfg.num_disks && !b->cfg.num_nics)
        return 0;
    lctx = libxl_open_log(dom->ctx, &keep);
    if (!lctx)
        return -1;
    *added = 1;
    for (i = 0; !rc && i < b->cfg.num_disks; i++) {
        libxl_device_disk *d = &b->cfg.disks[i];

        rc = libxl_device_disk_add(lctx, dom->domid, d, NULL);
        if (rc)
            XTK_ERROR(dom->ctx,
                      "domain %u: its disk %s (%s) cannot be added here "
                      "(%d): %s",
                      dom->domid, d->vdev ? d->vdev : "?",
                      d->pdev_path ? d->pdev_path : "no target", rc,
                      keep.first[0] ? keep.first : "libxl says no more");
    }
    for (i = 0; !rc && i < b->cfg.num_nics; i++) {
        libxl_device_nic *n = &b->cfg.nics[i];

        rc = libxl_device_nic_add(lctx, dom->domid, n, NULL);
        if (rc)
            XTK_ERROR(dom->ctx,
                      "domain %u: its network interface %d (bridge %s) "
                      "cannot be added here (%d): %s",
                      dom->domid, n->devid, n->bridge ? n->bridge : "none", rc,
                      keep.first[0] ? keep.first : "libxl says no more");
    }
    libxl_ctx_free(lctx);
    if (rc)
        return xtk__fail(rc == ERROR_NOMEM ? ENOMEM : ENODEV);
    XTK_DEBUG(dom->ctx, "domain %u: %d disk(s), %d network interface(s)",
              dom->domid, b->cfg.num_disks, b->cfg.num_nics);
    return 0;
}

static int xen_lookup(struct xtk_ctx *ctx, const char *name, uint32_t *domid);

static int xen_create_native(struct xtk_domain *dom,
                             struct xtk__native_config *nc)
{
    struct xen_dom *xd = calloc(1, sizeof(*xd));
    struct xen_build *b = calloc(1, sizeof(*b));
    libxl_domain_build_info *bi;
    struct xen_domctl_createdomain cd = {0};
    xc_physinfo_t phys = {0};
    libxl_ctx *lctx = NULL;
    uint32_t domid = 0, other;
    uint64_t paging_kb;
    int created = 0, devices = 0, rc, e;
    const char *name;

    if (!xd || !b) {
        free(xd);
        free(b);
        return -1;
    }
    libxl_domain_config_init(&b->cfg);
    xd->build = b;
    bi = &b->cfg.b_info;
    xd->local_port = xd->guest_port = -1;
    xd->lock_fd = xd->pause_evfd = xd->store_fd = xd->guard_fd = -1;
    xd->store_ep = -1;
    xd->hbuf.ubuf = xd->ctx_hbuf.ubuf = (void *)-1;
    xd->xch = open_xc(dom->ctx);
    lctx = xd->xch ? libxl_open(dom->ctx) : NULL;
    if (!lctx)
        goto fail;
    if (!nc->json) {
        /* xl's text (xl save with a config file, xtk-save --config). */
        if (xtk__xen_config_from_text(dom->ctx, nc->config, nc->config_len,
                                      &b->cfg) < 0)
            goto fail;
    } else if ((rc = libxl_domain_config_from_json(lctx, &b->cfg,
                                                   nc->config)) != 0) {
        XTK_ERROR(dom->ctx, "the stream's config is not libxl's JSON (%d)", rc);
        errno = EINVAL;
        goto fail;
    }
    if (build_check(dom, &b->cfg, nc->stream_type) < 0)
        goto fail;
    b->pv = b->cfg.c_info.type == LIBXL_DOMAIN_TYPE_PV;
    name = nc->name ? nc->name : b->cfg.c_info.name;
    if (!name || !*name || strlen(name) > XTK_DOMAIN_NAME_MAX) {
        XTK_ERROR(dom->ctx, "the stream's config names no domain: restore "
                            "with a name");
        errno = EINVAL;
        goto fail;
    }
    if (xen_lookup(dom->ctx, name, &other) == 0) {
        errno = EEXIST;
        goto fail;
    }
    if (name != b->cfg.c_info.name) {
        char *n = strdup(name);
        if (!n)
            goto fail;
        free(b->cfg.c_info.name);
        b->cfg.c_info.name = n;
    }
    if (libxl_uuid_is_nil(&b->cfg.c_info.uuid))
        libxl_uuid_generate(&b->cfg.c_info.uuid);
    {
        const uint8_t *u = libxl_uuid_bytearray(&b->cfg.c_info.uuid);
        snprintf(b->uuid, sizeof(b->uuid),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                 "%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
                 u[10], u[11], u[12], u[13], u[14], u[15]);
        memcpy(cd.handle, u, sizeof(cd.handle));
    }

    /* libxl__domain_make, with libxl's defaults where the config has none */
    if (xc_physinfo(xd->xch, &phys) < 0) {
        XTK_PERROR(dom->ctx, "Xen's physinfo");
        goto fail;
    }
    /* (libxl__arch_domain_prepare_config: a PV guest has no emulated
     * device at all, a PVH guest a LAPIC) */
    cd.flags = b->pv ? 0 : XEN_DOMCTL_CDF_hvm;
    if (!b->pv && (libxl_defbool_is_default(b->cfg.c_info.hap) ||
                   libxl_defbool_val(b->cfg.c_info.hap)))
        cd.flags |= XEN_DOMCTL_CDF_hap;
    if (!libxl_defbool_is_default(bi->nested_hvm) &&
        libxl_defbool_val(bi->nested_hvm))
        cd.flags |= XEN_DOMCTL_CDF_nested_virt;
    if (!libxl_defbool_is_default(bi->vpmu) && libxl_defbool_val(bi->vpmu))
        cd.flags |= XEN_DOMCTL_CDF_vpmu;
    cd.max_vcpus = (uint32_t)bi->max_vcpus;
    cd.max_evtchn_port = bi->event_channels ? bi->event_channels : 1023;
    cd.max_grant_frames = bi->max_grant_frames;       /* -1: Xen's default */
    cd.max_maptrack_frames = bi->max_maptrack_frames; /* likewise */
    if (bi->max_grant_version == (int)LIBXL_MAX_GRANT_DEFAULT)
        cd.grant_opts = XEN_DOMCTL_GRANT_version(
            phys.capabilities & XEN_SYSCTL_PHYSCAP_gnttab_v2   ? 2
            : phys.capabilities & XEN_SYSCTL_PHYSCAP_gnttab_v1 ? 1
                                                               : 0);
    else
        cd.grant_opts =
            XEN_DOMCTL_GRANT_version((uint32_t)bi->max_grant_version);
    cd.arch.emulation_flags = b->pv ? 0 : XEN_X86_EMU_LAPIC;
    /* A restore's default is relaxed, as libxl's restore makes it. */
    if (libxl_defbool_is_default(bi->arch_x86.msr_relaxed) ||
        libxl_defbool_val(bi->arch_x86.msr_relaxed))
        cd.arch.misc_flags |= XEN_X86_MSR_RELAXED;
    cd.cpupool_id = b->cfg.c_info.poolid;
    domid = 0;
    if (xc_domain_create(xd->xch, &domid, &cd) < 0) {
        XTK_PERROR(dom->ctx, "creating the domain");
        goto fail;
    }
    created = 1;
    dom->domid = domid;
    /* From here until it first runs, a restore that dies leaves the
     * domain to its guard to destroy. */
    if (guard_update(dom, xd) < 0)
        goto fail;

    /* libxl__build_pre */
    paging_kb = bi->shadow_memkb != LIBXL_MEMKB_DEFAULT
                    ? bi->shadow_memkb
                    : 4 * (256ull * (unsigned)bi->max_vcpus +
                           (1 + !(cd.flags & XEN_DOMCTL_CDF_hap)) *
                               (bi->max_memkb / 1024));
    /* (libxl__arch_domain_create: a PV guest's memory map limit, no
     * paging pool) */
    if (xc_domain_max_vcpus(xd->xch, domid, (unsigned)bi->max_vcpus) < 0 ||
        xc_domain_setmaxmem(xd->xch, domid, bi->target_memkb + 1024) < 0 ||
        (b->pv ? xc_domain_set_memmap_limit(
                     xd->xch, domid, bi->max_memkb + bi->u.pv.slack_memkb)
               : xc_set_paging_mempool_size(xd->xch, domid, paging_kb << 10)) <
            0) {
        XTK_PERROR(dom->ctx, "domain %u: its vCPUs, memory or paging pool",
                   domid);
        goto fail;
    }
    rc = xc_evtchn_alloc_unbound(xd->xch, domid, 0);
    b->store_port = (uint32_t)rc;
    if (rc >= 0) {
        rc = xc_evtchn_alloc_unbound(xd->xch, domid, 0);
        b->console_port = (uint32_t)rc;
    }
    if (rc < 0) {
        XTK_PERROR(dom->ctx, "domain %u: its store and console channels",
                   domid);
        goto fail;
    }
    if ((!b->pv &&
         (xc_hvm_param_set(xd->xch, domid, HVM_PARAM_TIMER_MODE,
                           bi->timer_mode == LIBXL_TIMER_MODE_UNKNOWN ||
                                   bi->timer_mode < 0
                               ? LIBXL_TIMER_MODE_NO_DELAY_FOR_MISSED_TICKS
                               : (uint64_t)bi->timer_mode) < 0 ||
          xc_hvm_param_set(xd->xch, domid, HVM_PARAM_ALTP2M,
                           (uint64_t)bi->altp2m) < 0)) ||
        xc_domain_set_tsc_info(xd->xch, domid,
                               bi->tsc_mode == LIBXL_TSC_MODE_ALWAYS_EMULATE ? 1
                               : bi->tsc_mode == LIBXL_TSC_MODE_NATIVE       ? 2
                                                                       : 0,
                               0, 0, 0) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: its timer, altp2m or TSC mode", domid);
        goto fail;
    }
    if (build_store_dirs(dom, b) < 0)
        goto fail;
    /* xl save, migrate and destroy read the domain's config from here:
     * stored now, not in the restore's downtime. */
    {
        char *json = libxl_domain_config_to_json(lctx, &b->cfg);

        rc = json ? libxl_userdata_store(lctx, domid, "libxl-json",
                                         (const uint8_t *)json,
                                         (int)strlen(json) + 1)
                  : ERROR_NOMEM;
        free(json);
        if (rc) {
            XTK_ERROR(dom->ctx,
                      "domain %u: cannot store its config for libxl (%d)",
                      domid, rc);
            errno = EIO;
            goto fail;
        }
    }
    if (build_devices(dom, b, &devices) < 0)
        goto fail;
    libxl_ctx_free(lctx);
    dom->priv = xd;
    nc->nr_pages = bi->target_memkb / 4;
    nc->delegate = b->pv;
    /* Above the memory: the hole below 4 GiB that PVH RAM skips */
    nc->max_pfn = bi->max_memkb / 4 + (1ull << 20);
    nc->nr_vcpus = (uint32_t)bi->max_vcpus;
    snprintf(nc->cfg_name, sizeof(nc->cfg_name), "%s", b->cfg.c_info.name);
    XTK_DEBUG(dom->ctx,
              "domain %u built: %s, %d vCPUs, %llu kB (max %llu kB), "
              "paging pool %llu kB, store port %u, console port %u",
              domid, b->pv ? "PV" : "PVH", bi->max_vcpus,
              (unsigned long long)bi->target_memkb,
              (unsigned long long)bi->max_memkb,
              (unsigned long long)(b->pv ? 0 : paging_kb), b->store_port,
              b->console_port);
    return 0;

fail:
    e = errno ? errno : EIO;
    if (created && devices && lctx &&
        libxl_domain_destroy(lctx, domid, NULL) == 0)
        created = 0; /* libxl took the devices, the store and all */
    if (created) {
        if (lctx)
            libxl_userdata_unlink(lctx, domid, "libxl-json");
        xc_domain_destroy(xd->xch, domid);
        build_store_rm(dom, b);
    }
    if (lctx)
        libxl_ctx_free(lctx);
    if (xd) {
        xd->build = NULL; /* gone: nothing for the guard to destroy */
        guard_stop(dom, xd);
    }
    build_free(b);
    xd_free(xd);
    dom->domid = 0;
    return xtk__fail(e);
}

static int xen_populate(struct xtk_domain *dom, const uint64_t *pfns,
                        unsigned int nr)
{
    struct xen_dom *xd = xd_of(dom);
    xen_pfn_t *arr;
    int r;

    if (!xd->build || xd->build->started)
        return xtk__fail(EBUSY);
    arr = malloc((nr ? nr : 1) * sizeof(*arr));
    if (!arr)
        return -1;
    for (unsigned int i = 0; i < nr; i++)
        arr[i] = (xen_pfn_t)pfns[i];
    r = xc_domain_populate_physmap_exact(xd->xch, dom->domid, nr, 0, 0, arr);
    if (r < 0)
        XTK_PERROR(dom->ctx,
                   "domain %u: populating %u frames from %#llx (its memory "
                   "limit, or this host's free memory?)",
                   dom->domid, nr, nr ? (unsigned long long)pfns[0] : 0ull);
    free(arr);
    return r < 0 ? -1 : 0;
}

/* Applies one HVM_PARAMS record body, as Xen's restore does. */
static int set_params(struct xtk_domain *dom, struct xen_build *b,
                      const void *body, uint32_t len)
{
    struct xen_dom *xd = xd_of(dom);
    uint32_t head[2];
    const uint8_t *p = body;

    if (len < sizeof(head))
        return xtk__fail(EINVAL);
    memcpy(head, body, sizeof(head));
    if (len != sizeof(head) + (uint64_t)head[0] * 16)
        return xtk__fail(EINVAL);
    for (uint32_t i = 0; i < head[0]; i++) {
        struct rec_hvm_param e;

        memcpy(&e, p + sizeof(head) + i * 16ull, sizeof(e));
        switch (e.index) {
        case HVM_PARAM_CONSOLE_PFN:
        case HVM_PARAM_STORE_PFN:
        case HVM_PARAM_IOREQ_PFN:
        case HVM_PARAM_BUFIOREQ_PFN:
            /* A fresh ring: the guest reconnects on resume. */
            if (xc_clear_domain_page(xd->xch, dom->domid, e.value) < 0) {
                XTK_PERROR(dom->ctx, "domain %u: clearing frame %#llx",
                           dom->domid, (unsigned long long)e.value);
                return -1;
            }
            if (e.index == HVM_PARAM_CONSOLE_PFN) {
                b->console_gfn = e.value;
                b->have_console = 1;
            } else if (e.index == HVM_PARAM_STORE_PFN) {
                b->store_gfn = e.value;
                b->have_store = 1;
            }
            break;
        case HVM_PARAM_PAE_ENABLED: /* obsolete: Xen's restore drops it */
            continue;
        }
        if (xc_hvm_param_set(xd->xch, dom->domid, (uint32_t)e.index, e.value) <
            0) {
            XTK_PERROR(dom->ctx, "domain %u: HVM parameter %llu = %#llx",
                       dom->domid, (unsigned long long)e.index,
                       (unsigned long long)e.value);
            return -1;
        }
    }
    return 0;
}

/*
 * Loads Xen's records into a domain built for a restore: the CPU policy
 * (the stream's static data, given alone first), or the state at the end
 * of a checkpoint (TSC_INFO, HVM_CONTEXT, HVM_PARAMS), in the order Xen's
 * restore applies them.
 */
static int xen_set_state(struct xtk_domain *dom, const void *buf, size_t len)
{
    struct xen_dom *xd = xd_of(dom);
    struct xen_build *b = xd->build;
    const void *cpuid = NULL, *msrs = NULL, *ctx = NULL, *tsc = NULL;
    uint32_t cpuid_len = 0, msrs_len = 0, ctx_len = 0, tsc_len = 0;
    const void *body;
    uint32_t type, blen;
    size_t off = 0;
    int r;

    if (!b || b->started) {
        XTK_ERROR(dom->ctx,
                  "domain %u: xtk loads a state only into a domain it built "
                  "for the restore",
                  dom->domid);
        return xtk__fail(ENOTSUP);
    }
    while ((r = xtk__rec_next(buf, len, &off, &type, &body, &blen)) == 1) {
        switch (type) {
        case REC_CPUID_POLICY:
            cpuid = body, cpuid_len = blen;
            break;
        case REC_MSR_POLICY:
            msrs = body, msrs_len = blen;
            break;
        case REC_TSC_INFO:
            tsc = body, tsc_len = blen;
            break;
        case REC_HVM_CONTEXT:
            ctx = body, ctx_len = blen;
            break;
        case REC_HVM_PARAMS:
            break; /* below, in order */
        default:
            XTK_ERROR(dom->ctx,
                      "domain %u: record type %#x is not a state "
                      "record of Xen's",
                      dom->domid, type);
            return xtk__fail(EINVAL);
        }
    }
    if (r < 0)
        return -1;
    if ((cpuid && (!cpuid_len || cpuid_len % sizeof(xen_cpuid_leaf_t))) ||
        (msrs && (!msrs_len || msrs_len % sizeof(xen_msr_entry_t))) ||
        (tsc && tsc_len != sizeof(struct rec_tsc_info))) {
        XTK_ERROR(dom->ctx, "domain %u: a malformed CPU policy or TSC_INFO",
                  dom->domid);
        return xtk__fail(EINVAL);
    }
    if (cpuid || msrs) {
        uint32_t el = ~0u, es = ~0u, em = ~0u;

        if (xc_set_domain_cpu_policy(
                xd->xch, dom->domid, cpuid_len / sizeof(xen_cpuid_leaf_t),
                (xen_cpuid_leaf_t *)cpuid, msrs_len / sizeof(xen_msr_entry_t),
                (xen_msr_entry_t *)msrs, &el, &es, &em) < 0) {
            XTK_PERROR(dom->ctx,
                       "domain %u: this host cannot give the guest its CPU "
                       "(CPUID leaf %08x subleaf %08x, MSR %08x)",
                       dom->domid, el, es, em);
            return -1;
        }
    }
    if (tsc) {
        struct rec_tsc_info t;

        memcpy(&t, tsc, sizeof(t));
        if (xc_domain_set_tsc_info(xd->xch, dom->domid, t.mode, t.nsec, t.khz,
                                   t.incarnation) < 0) {
            XTK_PERROR(dom->ctx, "domain %u: its TSC", dom->domid);
            return -1;
        }
    }
    off = 0;
    while (xtk__rec_next(buf, len, &off, &type, &body, &blen) == 1)
        if (type == REC_HVM_PARAMS && set_params(dom, b, body, blen) < 0) {
            if (errno == EINVAL)
                XTK_ERROR(dom->ctx, "domain %u: a malformed HVM_PARAMS",
                          dom->domid);
            return -1;
        }
    if (!ctx)
        return 0;
    if (!b->have_store || !b->have_console) {
        XTK_ERROR(dom->ctx,
                  "domain %u: the state names no store or console page "
                  "(HVM_PARAMS)",
                  dom->domid);
        return xtk__fail(EINVAL);
    }
    if (xc_hvm_param_set(xd->xch, dom->domid, HVM_PARAM_STORE_EVTCHN,
                         b->store_port) < 0 ||
        xc_hvm_param_set(xd->xch, dom->domid, HVM_PARAM_CONSOLE_EVTCHN,
                         b->console_port) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: its event channel parameters",
                   dom->domid);
        return -1;
    }
    if (xc_domain_hvm_setcontext(xd->xch, dom->domid, (uint8_t *)ctx, ctx_len) <
        0) {
        XTK_PERROR(dom->ctx, "domain %u: its HVM context does not load",
                   dom->domid);
        return -1;
    }
    if (xc_dom_gnttab_seed(xd->xch, dom->domid, true, b->console_gfn,
                           b->store_gfn, 0, 0) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: seeding its grant table", dom->domid);
        return -1;
    }
    b->loaded = 1;
    return 0;
}

/*
 * A PV guest's stream, read whole by libxenguest's restore (as libxl's
 * save helper runs it for xl restore): it populates the domain, rewrites
 * the page tables, loads the vCPUs and seeds the grant table; xtk then
 * gives it its store and runs it (build_start).
 */
static int restore_static_done(unsigned int missing, void *arg)
{
    struct xtk_domain *dom = arg;
    struct xen_dom *xd = xd_of(dom);

    /* A stream older than Xen 4.14 carries no CPU policy: Xen's default
     * for a restored guest, as libxl gives it. */
    if (!(missing & XGR_SDD_MISSING_CPUID))
        return 0;
    XTK_WARN(dom->ctx,
             "domain %u: the stream carries no CPUID policy: Xen's "
             "default for a restored guest",
             dom->domid);
    return xc_cpuid_apply_policy(xd->xch, dom->domid, true, NULL, 0, true,
                                 false, false, NULL, NULL);
}

static int xen_restore_delegate(struct xtk_domain *dom, int fd)
{
    struct xen_dom *xd = xd_of(dom);
    struct xen_build *b = xd->build;
    struct restore_callbacks cb = {
        .static_data_done = restore_static_done,
        .data = dom,
    };
    unsigned long store_mfn = 0, console_mfn = 0;

    if (!b || b->started || !b->pv) {
        XTK_ERROR(dom->ctx,
                  "domain %u: libxenguest restores only a PV domain xtk "
                  "built for it",
                  dom->domid);
        return xtk__fail(ENOTSUP);
    }
    if (xc_domain_restore(xd->xch, fd, dom->domid, b->store_port, &store_mfn, 0,
                          b->console_port, &console_mfn, 0, XC_STREAM_PLAIN,
                          &cb, -1) != 0) {
        int e = errno ? errno : EIO;
        XTK_ERROR(dom->ctx, "domain %u: libxenguest's restore failed: %s",
                  dom->domid, strerror(e));
        return xtk__fail(e);
    }
    b->store_gfn = store_mfn;
    b->console_gfn = console_mfn;
    b->have_store = b->have_console = 1;
    b->loaded = 1;
    return 0;
}

/*
 * The store's and the console's ring-refs (libxl__build_post's and the
 * console device's nodes, the rest written at create), then the store's
 * INTRODUCE: the domain is one like any other xl knows.
 */
static int build_finish(struct xtk_domain *dom, struct xen_build *b)
{
    uint64_t t0 = xtk_now_ns(), t1, t2;
    struct xs_handle *xs = xs_open(0);
    char dp[64];
    int ok;

    if (!xs) {
        XTK_PERROR(dom->ctx, "cannot open libxenstore");
        return -1;
    }
    /* The rest was written with the directories: only what the state
     * said is left, in the downtime of a migration. */
    snprintf(dp, sizeof(dp), "/local/domain/%u", dom->domid);
    ok = !xs_printf(xs, XBT_NULL, dp, "store/ring-ref", "%llu",
                    (unsigned long long)b->store_gfn) &&
         !xs_printf(xs, XBT_NULL, dp, "console/ring-ref", "%llu",
                    (unsigned long long)b->console_gfn);
    if (!ok) {
        XTK_PERROR(dom->ctx, "domain %u: its store nodes", dom->domid);
        goto out;
    }
    t1 = xtk_now_ns();
    if (!xs_introduce_domain(xs, dom->domid, b->store_gfn, b->store_port)) {
        XTK_PERROR(dom->ctx, "domain %u: the store's INTRODUCE", dom->domid);
        ok = 0;
    }
    t2 = xtk_now_ns();
    XTK_DEBUG(dom->ctx,
              "domain %u: ring-refs written in %.3f ms, introduced in %.3f ms",
              dom->domid, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
out : {
    int e = errno;
    xs_close(xs);
    errno = e;
}
    return ok ? 0 : -1;
}

/* A domain built here runs for the first time. */
static int build_start(struct xtk_domain *dom, struct xen_build *b)
{
    struct xen_dom *xd = xd_of(dom);

    if (!b->loaded) {
        XTK_ERROR(dom->ctx, "domain %u: no state loaded to run", dom->domid);
        return xtk__fail(EINVAL);
    }
    if (build_finish(dom, b) < 0)
        return -1;
    b->started = 1;
    guard_update(dom, xd); /* it runs: no longer the guard's to destroy */
    if (xc_domain_unpause(xd->xch, dom->domid) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: unpause", dom->domid);
        return -1;
    }
    dom->resumed_ns = xtk_now_ns();
    XTK_DEBUG(dom->ctx, "domain %u: unpaused", dom->domid);
    return 0;
}

const struct xtk__backend_ops xtk__xen_backend = {
    .name = "xen",
    .list = xen_list,
    .lookup = xen_lookup,
    .open = xen_open,
    .create = xen_create,
    .close = xen_close,
    .info = xen_info,
    .vcpus = xen_vcpus,
    .pause = xen_pause,
    .unpause = xen_unpause,
    .destroy = xen_destroy,
    .rename = xen_rename,
    .xl_config = xen_xl_config,
    .frames = xen_frames,
    .map_batch = xen_map_batch,
    .unmap_batch = xen_unmap_batch,
    .create_native = xen_create_native,
    .populate = xen_populate,
    .logdirty_enable = xen_logdirty_enable,
    .logdirty_read = xen_logdirty_read,
    .logdirty_disable = xen_logdirty_disable,
    .suspend_setup = xen_suspend_setup,
    .suspend_request = xen_suspend_request,
    .suspend_check = xen_suspend_check,
    .suspend_teardown = xen_suspend_teardown,
    .layout = xen_layout,
    .get_state = xen_get_state,
    .save_delegate = xen_save_delegate,
    .restore_delegate = xen_restore_delegate,
    .set_state = xen_set_state,
    .resume = xen_resume,
    .output_hold = xen_output_hold,
    .output_release = xen_output_release,
};

/*
 * ctl.c - xtk-hv's control socket: accepts toolstack connections, checks
 * each request (lib/kvm/hvctl.c) and dispatches it through a table
 * indexed by op, in the manner of xenstored.
 *
 * A connection's death undoes what it held: its pause (taken with
 * XTK_HVCTL_PAUSE_HOLD) and its dirty log.  A reply that cannot be sent at
 * once (the peer does not read) closes the connection; the guest never
 * waits on a toolstack.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hv.h"

struct reply {
    void *buf; /* payload */
    size_t len;
    int fds[2 + 2 * (XTK_PORT_MAX + 1)];
    unsigned int nfds;
};

typedef int (*handler_fn)(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                          const void *payload, struct reply *rep);

/* Sized for the largest message; one for the whole (single) main thread. */
static char rx_buf[XTK_HVCTL_MSG_MAX + 1] __attribute__((aligned(16)));
static char tx_buf[XTK_HVCTL_MSG_MAX] __attribute__((aligned(16)));

/* ---- run control ---------------------------------------------------- */

/* Pause reasons changed: park everybody or let them run. */
static void rescue_end(struct hv *hv)
{
    hv->rescue_at = 0;
    hv->rescue_until = 0;
    hv_sched_rt_unboost(&hv->vcpus[0]);
}

static void apply_pause(struct hv *hv)
{
    rescue_end(hv);
    if (hv_vm_must_park(hv))
        hv_vm_wait_parked(hv);
    else
        hv_vm_wake(hv);
}

/* Whether the domain must not run; if so, waits until every vCPU has
 * parked (a new empty domain's threads may not have got there yet). */
static int is_paused(struct hv *hv)
{
    int r;

    pthread_mutex_lock(&hv->lock);
    r = hv_vm_must_park(hv);
    if (r)
        hv_vm_wait_parked(hv);
    pthread_mutex_unlock(&hv->lock);
    return r;
}

/* Connection ci's hold of vCPUs 1.. ends (under hv->lock). */
static void release_aps(struct hv *hv, int ci)
{
    if (hv->aps_held == ci + 1) {
        rescue_end(hv);
        hv->aps_held = 0;
        hv_vm_mark_waking(hv, hv_vm_parked_mask(hv) & ~1u);
        pthread_cond_broadcast(&hv->run_cond);
    }
}

static void release_conn(struct hv *hv, int ci)
{
    struct hv_conn *c = &hv->conns[ci];

    pthread_mutex_lock(&hv->lock);
    if (c->held) {
        c->held = 0;
        hv->pause_holds--;
        hv_log("connection closed: its pause is released");
        apply_pause(hv);
    }
    release_aps(hv, ci);
    pthread_mutex_unlock(&hv->lock);
    hv_output_orphan(hv, ci);
    if (hv->logdirty_owner == ci) {
        hv_log("connection closed: dirty logging off");
        hv_vm_logdirty(hv, 0);
        hv->logdirty_owner = -1;
    }
    if (c->guard) {
        c->guard = 0;
        hv_log("connection closed in the middle of a suspend: the guest "
               "will be resumed");
        hv->orphan_until = hv_now_ns() + XTK_HVCTL_ORPHAN_MS * 1000000ull;
        hv_ctl_orphan_check(hv);
    }
    if (hv->creator == ci) {
        hv->creator = -1;
        if (hv->empty) {
            hv_log("the restore's connection closed before it resumed the "
                   "domain: destroying it");
            hv->destroy = 1;
        } else if (hv->lazy_fd >= 0) {
            hv_log("the lazy restore's connection closed before all of the "
                   "guest's memory was in: destroying the domain (it would "
                   "run on missing memory)");
            hv->destroy = 1;
        }
    }
}

void hv_ctl_orphan_check(struct hv *hv)
{
    struct xtk_guest_status *s = hv_guest_status(hv);

    if (!hv->orphan_until)
        return;
    if (s &&
        __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == XTK_GUEST_SUSPENDED) {
        hv_log("resuming the guest its dead toolstack left suspended");
        pthread_mutex_lock(&hv->lock);
        hv_vm_kick_suspended(hv);
        if (!hv_vm_must_park(hv))
            hv_vm_wake(hv); /* its vCPUs yielded when it suspended */
        pthread_mutex_unlock(&hv->lock);
        hv->orphan_until = 0;
    } else if (!s || hv_now_ns() >= hv->orphan_until) {
        hv->orphan_until = 0; /* it never suspended */
    }
}

/* ---- handlers ------------------------------------------------------- */

static int do_hello(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                    const void *payload, struct reply *rep)
{
    struct xtk_hvctl_hello *o = (void *)tx_buf;

    /* A lazy restore's memory is not all there: a client mapping it could
     * read a frame that has yet to come, which would put a zeroed page in
     * its place for good (the memory file's holes are not watched in
     * other processes). */
    if (hv->lazy_fd >= 0 && hv->creator != ci)
        return EBUSY;
    /* An empty domain belongs to the restore that fills it. */
    if (h->flags & XTK_HVCTL_HELLO_OWN) {
        if (!hv->empty || (hv->creator >= 0 && hv->creator != ci))
            return EBUSY;
        hv->creator = ci;
    }
    memset(o, 0, sizeof(*o));
    o->domid = hv->domid;
    o->nr_vcpus = hv->nr_vcpus;
    o->nr_pages = hv->nr_pages;
    o->page_size = 4096;
    o->bitmap_bytes = (uint32_t)hv->bitmap_bytes;
    memcpy(o->name, hv->name, sizeof(o->name));
    rep->fds[rep->nfds++] = hv->mem_fd;
    rep->fds[rep->nfds++] = hv->bitmap_fd;
    /* The toolstack's ports; the console is xtk-hv's, the store
     * xsd-lite's. */
    o->ports = (1u << XTK_PORT_SUSPEND) | (1u << XTK_PORT_ECHO);
    for (unsigned int p = 0; p <= XTK_PORT_MAX; p++) {
        if (!(o->ports & (1u << p)))
            continue;
        rep->fds[rep->nfds++] = hv->ports[p].to_guest;
        rep->fds[rep->nfds++] = hv->ports[p].from_guest;
    }
    o->nr_fds = rep->nfds;
    rep->buf = o;
    rep->len = sizeof(*o);
    return 0;
}

static int do_info(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                   const void *payload, struct reply *rep)
{
    struct xtk_hvctl_info *o = (void *)tx_buf;
    struct xtk_guest_status *s = hv_guest_status(hv);

    memset(o, 0, sizeof(*o));
    o->domid = hv->domid;
    o->nr_vcpus = hv->nr_vcpus;
    o->nr_pages = hv->nr_pages;
    pthread_mutex_lock(&hv->lock);
    if (hv->pause_sticky || hv->pause_holds)
        o->flags |= XTK_DOMINFO_PAUSED;
    if (hv->empty)
        o->flags |= XTK_DOMINFO_EMPTY;
    if (hv->crashed)
        o->flags |= XTK_DOMINFO_CRASHED;
    pthread_mutex_unlock(&hv->lock);
    if (hv->logdirty)
        o->flags |= XTK_DOMINFO_LOGDIRTY;
    if (s) {
        o->guest_state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (o->guest_state == XTK_GUEST_SUSPENDED)
            o->flags |= XTK_DOMINFO_SUSPENDED;
    }
    o->uptime_ns = hv_now_ns() - hv->start_ns;
    o->pid = (uint32_t)getpid();
    o->store = hv->store_fd >= 0;
    memcpy(o->name, hv->name, sizeof(o->name));
    if (hv->opt.net)
        snprintf(o->net, sizeof(o->net), "%s", hv->opt.net);
    rep->buf = o;
    rep->len = sizeof(*o);
    return 0;
}

static int do_vcpus(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                    const void *payload, struct reply *rep)
{
    struct xtk_hvctl_vcpu *o = (void *)tx_buf;

    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        hv_sched_vcpu_stats(&hv->vcpus[i], &o[i]);
    rep->buf = o;
    rep->len = hv->nr_vcpus * sizeof(*o);
    return 0;
}

/* Pauses: a hold of connection ci's, or the lasting pause; returns when
 * every vCPU has parked. */
static void pause_domain(struct hv *hv, int ci, int hold)
{
    struct hv_conn *c = &hv->conns[ci];

    pthread_mutex_lock(&hv->lock);
    if (!hold)
        hv->pause_sticky = 1;
    else if (!c->held) {
        c->held = 1;
        hv->pause_holds++;
    }
    apply_pause(hv);
    pthread_mutex_unlock(&hv->lock);
}

#define RESCUE_AFTER_NS 1000000ull /* 1 ms */
#define RESCUE_MAX_NS 5000000ull   /* 5 ms */

/* vCPUs 1.. held for a suspend request (XTK_HVCTL_PAUSE_APS): only
 * where the guest allows it, and never combined with a pause.  With
 * PAUSE_NOTIFY, the request itself is notified from here (as earlier
 * libxtk asked; it now notifies the port itself and sends the hold
 * after, which reaches vCPU 0 sooner).  Kept for such a caller. */
static int hold_aps(struct hv *hv, int ci, int notify)
{
    struct xtk_guest_status *s = hv_guest_status(hv);
    uint64_t one = 1;

    if (!s || s->magic != XTK_GUEST_STATUS_MAGIC ||
        !(__atomic_load_n(&s->features, __ATOMIC_ACQUIRE) &
          XTK_GUEST_F_APS_STOPPABLE))
        return EOPNOTSUPP;
    pthread_mutex_lock(&hv->lock);
    if (!hv_vm_must_park(hv)) {
        hv->aps_held = ci + 1;
        hv_vm_kick_aps(hv);
    }
    pthread_mutex_unlock(&hv->lock);
    if (notify &&
        write(hv->ports[XTK_PORT_SUSPEND].to_guest, &one, sizeof(one)) < 0)
        return errno;
    /* vCPU 0 is to take the request: among vCPU threads that fill every
     * core, it may be waiting for one.  (A real-time caller's
     * sched_yield() gives nothing to a normal thread: vCPU 0 gets this
     * CPU when this thread sleeps, at once; measured, moving it here
     * first made the tail no better.) */
    if (!hv->control_rt)
        hv_sched_boost(&hv->vcpus[0]);
    else
        hv->rescue_at = hv_now_ns() + RESCUE_AFTER_NS;
    return 0;
}

/*
 * vCPU 0 has not taken a hold's request RESCUE_AFTER_NS after it: its
 * thread waits for a CPU (a scheduler tick, 4 ms, at worst), typically
 * queued behind another thread on one CPU while the other sits idle (a
 * cache-hot thread is not moved to it; traced with perf sched: 0.8 ms
 * idle beside it).  It runs real-time (SCHED_FIFO, HV_RT_VCPU: below
 * this thread, which ends it) until it takes the request (its yield),
 * the STOP, the hold's end, or RESCUE_MAX_NS: the kernel then runs it at
 * once, on the idle CPU if there is one.  Not from the start: vCPU 0
 * taking a CPU from the held vCPUs as they park made an 8-vCPU guest's
 * STOP wait for them (p50 +150 us).  libxtk sends the hold after the
 * request (and an older one with it, PAUSE_NOTIFY): vCPU 0 has it.  (A
 * store request is the store daemon's to deliver: with it late too,
 * vCPU 0 may spin real-time on one CPU until RESCUE_MAX_NS.)
 */
void hv_ctl_rescue_check(struct hv *hv)
{
    uint64_t now;
    int want;

    if (!hv->rescue_at && !hv->rescue_until)
        return;
    now = hv_now_ns();
    if (hv->rescue_at && now >= hv->rescue_at) {
        hv->rescue_at = 0;
        pthread_mutex_lock(&hv->lock);
        want = hv->aps_held && !hv->vcpus[0].yielded && !hv->vcpus[0].parked &&
               !hv_vm_must_park(hv);
        pthread_mutex_unlock(&hv->lock);
        if (want && hv_sched_rt_boost(&hv->vcpus[0]) > 0) {
            __atomic_add_fetch(&hv->vcpus[0].boosts, 1, __ATOMIC_RELAXED);
            hv->rescue_until = now + RESCUE_MAX_NS;
        }
    }
    if (hv->rescue_until && now >= hv->rescue_until) {
        hv->rescue_until = 0;
        hv_sched_rt_unboost(&hv->vcpus[0]);
    }
}

static int do_pause(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                    const void *payload, struct reply *rep)
{
    if (h->flags & XTK_HVCTL_PAUSE_APS)
        return h->flags & XTK_HVCTL_PAUSE_HOLD
                   ? EINVAL
                   : hold_aps(hv, ci, !!(h->flags & XTK_HVCTL_PAUSE_NOTIFY));
    if (h->flags & XTK_HVCTL_PAUSE_NOTIFY)
        return EINVAL;
    pause_domain(hv, ci, !!(h->flags & XTK_HVCTL_PAUSE_HOLD));
    return 0;
}

static int do_unpause(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                      const void *payload, struct reply *rep)
{
    pthread_mutex_lock(&hv->lock);
    if (h->flags & XTK_HVCTL_UNPAUSE_APS) {
        int r = h->flags & XTK_HVCTL_UNPAUSE_FORCE ? EINVAL : 0;

        if (!r)
            release_aps(hv, ci);
        pthread_mutex_unlock(&hv->lock);
        return r;
    }
    hv->pause_sticky = 0;
    for (int i = 0; i < HV_MAX_CONNS; i++) {
        struct hv_conn *c = &hv->conns[i];
        if (c->fd >= 0 && c->held &&
            (i == ci || (h->flags & XTK_HVCTL_UNPAUSE_FORCE))) {
            c->held = 0;
            hv->pause_holds--;
        }
    }
    apply_pause(hv);
    pthread_mutex_unlock(&hv->lock);
    return 0;
}

static int do_logdirty_enable(struct hv *hv, int ci,
                              const struct xtk_hvctl_hdr *h,
                              const void *payload, struct reply *rep)
{
    if (hv->logdirty_owner >= 0 && hv->logdirty_owner != ci)
        return EBUSY;
    if (!hv->logdirty && hv_vm_logdirty(hv, 1) < 0)
        return errno;
    hv->logdirty_owner = ci;
    return 0;
}

static int do_logdirty_disable(struct hv *hv, int ci,
                               const struct xtk_hvctl_hdr *h,
                               const void *payload, struct reply *rep)
{
    if (hv->logdirty_owner != ci)
        return hv->logdirty_owner < 0 ? 0 : EBUSY;
    if (hv_vm_logdirty(hv, 0) < 0)
        return errno;
    hv->logdirty_owner = -1;
    return 0;
}

static int do_logdirty_sync(struct hv *hv, int ci,
                            const struct xtk_hvctl_hdr *h, const void *payload,
                            struct reply *rep)
{
    struct xtk_hvctl_logdirty *o = (void *)tx_buf;

    if (hv->logdirty_owner != ci)
        return hv->logdirty_owner < 0 ? ENODATA : EBUSY;
    if ((h->flags & XTK_HVCTL_LOGDIRTY_FINAL) && !is_paused(hv))
        return EBUSY;
    memset(o, 0, sizeof(*o));
    if (hv_vm_logdirty_sync(hv, &o->dirty) < 0)
        return EIO;
    o->nr_pages = hv->nr_pages;
    rep->buf = o;
    rep->len = sizeof(*o);
    return 0;
}

static int do_get_state(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                        const void *payload, struct reply *rep)
{
    size_t len;

    if (!is_paused(hv))
        return EBUSY;
    if (hv_state_get(hv, tx_buf, sizeof(tx_buf) - sizeof(*h), &len) < 0)
        return errno ? errno : EIO;
    rep->buf = tx_buf;
    rep->len = len;
    return 0;
}

/* PAUSE (HOLD), the final dirty-log sync if ci owns the log, GET_STATE:
 * what a save needs when its guest has suspended, in one round trip. */
static int do_stop(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                   const void *payload, struct reply *rep)
{
    struct xtk_hvctl_stop *o = (void *)tx_buf;
    char *recs = tx_buf + sizeof(*o);
    size_t len;

    pause_domain(hv, ci, 1);
    memset(o, 0, sizeof(*o));
    /* The guest is stopped: its output so far is taken (and, held, is the
     * closing epoch's). */
    o->epoch = hv_output_mark(hv, ci);
    /* The state first: a failed sync loses nothing (it clears nothing). */
    if (hv_state_get(hv, recs, sizeof(tx_buf) - sizeof(*h) - sizeof(*o), &len) <
        0)
        return errno ? errno : EIO;
    if (hv->logdirty_owner == ci) {
        if (hv_vm_logdirty_sync(hv, &o->log.dirty) < 0)
            return EIO;
        o->log.nr_pages = hv->nr_pages;
        o->flags |= XTK_HVCTL_STOP_SYNCED;
    }
    rep->buf = o;
    rep->len = sizeof(*o) + len;
    return 0;
}

static int do_set_state(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                        const void *payload, struct reply *rep)
{
    if (!is_paused(hv))
        return EBUSY;
    if (hv_state_set(hv, payload, h->len) < 0)
        return errno ? errno : EIO;
    return 0;
}

static int do_resume(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                     const void *payload, struct reply *rep)
{
    struct xtk_guest_boot *b = (void *)(hv->mem + XTK_GUEST_BOOT_GPA);
    struct xtk_hvctl_resume *o = (void *)tx_buf;
    uint32_t parked;
    uint64_t t0;

    memset(o, 0, sizeof(*o));
    pthread_mutex_lock(&hv->lock);
    if (hv->empty && b->magic == XTK_GUEST_BOOT_MAGIC) {
        /* A restored image: tell the guest it lives somewhere new. */
        b->domid = hv->domid;
        b->flags = (b->flags & ~(XTK_BOOT_STORE | XTK_BOOT_SUSPENDED_EXIT)) |
                   (hv->store_fd >= 0 ? XTK_BOOT_STORE : 0) | hv_vm_offers();
        hv_vm_set_sched_flag(hv); /* this host's threads, not the source's */
        __atomic_add_fetch(&b->generation, 1, __ATOMIC_RELEASE);
    }
    hv->empty = 0;
    hv_vm_kick_suspended(hv);
    hv->pause_sticky = 0;
    hv->pause_holds = 0;
    for (int i = 0; i < HV_MAX_CONNS; i++)
        hv->conns[i].held = 0;
    parked = hv_vm_parked_mask(hv);
    t0 = hv_now_ns();
    apply_pause(hv);
    /* The reply says when the guest really runs again: when its vCPU
     * threads have left their park for KVM_RUN. */
    if (!hv_vm_must_park(hv))
        o->running_ns = parked ? hv_vm_wait_running(hv, parked, t0) : t0;
    pthread_mutex_unlock(&hv->lock);
    rep->buf = o;
    rep->len = sizeof(*o);
    return 0;
}

static int do_destroy(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                      const void *payload, struct reply *rep)
{
    hv_log("destroy requested");
    hv->destroy = 1;
    return 0;
}

static int do_console_read(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                           const void *payload, struct reply *rep)
{
    struct xtk_hvctl_console_req req;
    struct xtk_hvctl_console *o = (void *)tx_buf;
    char *data = tx_buf + sizeof(*o);
    size_t room = sizeof(tx_buf) - sizeof(*h) - sizeof(*o);
    uint64_t start, n;

    memcpy(&req, payload, sizeof(req));
    if (req.reserved)
        return EINVAL;
    pthread_mutex_lock(&hv->console_lock);
    start = req.offset;
    if (hv->console_end > HV_CONSOLE_BYTES &&
        start < hv->console_end - HV_CONSOLE_BYTES)
        start = hv->console_end - HV_CONSOLE_BYTES;
    if (start > hv->console_end)
        start = hv->console_end;
    n = hv->console_end - start;
    if (n > req.max)
        n = req.max;
    if (n > room)
        n = room;
    for (uint64_t i = 0; i < n; i++)
        data[i] = hv->console[(start + i) % HV_CONSOLE_BYTES];
    o->offset = start;
    o->end = hv->console_end;
    pthread_mutex_unlock(&hv->console_lock);
    rep->buf = o;
    rep->len = sizeof(*o) + n;
    return 0;
}

static int do_suspend_guard(struct hv *hv, int ci,
                            const struct xtk_hvctl_hdr *h, const void *payload,
                            struct reply *rep)
{
    hv->conns[ci].guard = !!(h->flags & XTK_HVCTL_SUSPEND_GUARD_ON);
    if (hv->conns[ci].guard)
        hv->orphan_until = 0; /* a new save owns the suspend now */
    return 0;
}

static int do_rename(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                     const void *payload, struct reply *rep)
{
    char name[XTK_HVCTL_NAME_MAX];

    memcpy(name, payload, h->len);
    if (name[h->len - 1] || strlen(name) != h->len - 1)
        return EINVAL;
    if (!strcmp(name, hv->name))
        return 0;
    if (hv_take_name(hv, name) < 0)
        return errno;
    hv_log("renamed %s", hv->name);
    hv_store_set_name(hv);
    return 0;
}

static int do_output_hold(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                          const void *payload, struct reply *rep)
{
    int r;

    if (h->flags & XTK_HVCTL_OUTPUT_HOLD_ON)
        return h->flags != XTK_HVCTL_OUTPUT_HOLD_ON ? EINVAL
                                                    : hv_output_hold(hv, ci);
    r = hv_output_end(hv, ci, !!(h->flags & XTK_HVCTL_OUTPUT_SEND));
    /* What waited in the rings while the held output was at its bound
     * (the guest does not ring again for a full network ring). */
    hv_console_drain(hv);
    hv_net_drain(hv);
    return r;
}

static int do_output_release(struct hv *hv, int ci,
                             const struct xtk_hvctl_hdr *h, const void *payload,
                             struct reply *rep)
{
    struct xtk_hvctl_release req;
    struct xtk_hvctl_output *o = (void *)tx_buf;
    int r;

    memcpy(&req, payload, sizeof(req));
    if (req.reserved || !req.epoch)
        return EINVAL;
    r = hv_output_release(hv, ci, req.epoch, o);
    if (r)
        return r;
    hv_console_drain(hv); /* what waited while the held output was full */
    hv_net_drain(hv);
    rep->buf = o;
    rep->len = sizeof(*o);
    return 0;
}

/* A userfaultfd: /dev/userfaultfd's ioctl (root, whatever
 * vm.unprivileged_userfaultfd says), else the system call. */
static int new_uffd(void)
{
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd = -1;

#ifdef USERFAULTFD_IOC_NEW
    if (dev >= 0)
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
#endif
    if (dev >= 0)
        close(dev);
#ifdef SYS_userfaultfd
    if (fd < 0)
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#endif
    return fd;
}

static int do_lazy(struct hv *hv, int ci, const struct xtk_hvctl_hdr *h,
                   const void *payload, struct reply *rep)
{
    struct uffdio_api api = {.api = UFFD_API,
                             .features = UFFD_FEATURE_MISSING_SHMEM};
    struct uffdio_register reg = {
        .range = {(uintptr_t)hv->mem, hv->mem_bytes},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    struct xtk_hvctl_lazy *o = (void *)tx_buf;
    int fd, e;

    if (hv->creator != ci)
        return EPERM;
    if (h->flags & XTK_HVCTL_LAZY_DONE) {
        if (hv->lazy_fd < 0)
            return EINVAL;
        close(hv->lazy_fd);
        hv->lazy_fd = -1;
        hv_log("lazy restore: all of the guest's memory is in");
        return 0;
    }
    if (!hv->empty || hv->lazy_fd >= 0)
        return EBUSY;
    fd = new_uffd();
    if (fd < 0) {
        e = errno;
        hv_log("lazy restore: no userfaultfd: %m");
        return e == EPERM || e == EACCES || e == ENOENT ? ENOSYS : e;
    }
    if (ioctl(fd, UFFDIO_API, &api) < 0 ||
        ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
        e = errno;
        hv_log("lazy restore: userfaultfd on the guest's RAM: %m");
        close(fd);
        return e == EINVAL ? ENOSYS : e;
    }
    hv->lazy_fd = fd;
    rep->fds[rep->nfds++] = fd;
    memset(o, 0, sizeof(*o));
    o->base = (uintptr_t)hv->mem;
    o->bytes = hv->mem_bytes;
    o->eager_pages = XTK_HVCTL_LAZY_EAGER;
    rep->buf = o;
    rep->len = sizeof(*o);
    hv_log("lazy restore: the guest's memory comes in on first access");
    return 0;
}

static const handler_fn handlers[XTK_HVCTL_OP_MAX + 1] = {
    [XTK_HVCTL_OP_HELLO] = do_hello,
    [XTK_HVCTL_OP_INFO] = do_info,
    [XTK_HVCTL_OP_PAUSE] = do_pause,
    [XTK_HVCTL_OP_UNPAUSE] = do_unpause,
    [XTK_HVCTL_OP_LOGDIRTY_ENABLE] = do_logdirty_enable,
    [XTK_HVCTL_OP_LOGDIRTY_DISABLE] = do_logdirty_disable,
    [XTK_HVCTL_OP_LOGDIRTY_SYNC] = do_logdirty_sync,
    [XTK_HVCTL_OP_GET_STATE] = do_get_state,
    [XTK_HVCTL_OP_SET_STATE] = do_set_state,
    [XTK_HVCTL_OP_RESUME] = do_resume,
    [XTK_HVCTL_OP_DESTROY] = do_destroy,
    [XTK_HVCTL_OP_CONSOLE_READ] = do_console_read,
    [XTK_HVCTL_OP_SUSPEND_GUARD] = do_suspend_guard,
    [XTK_HVCTL_OP_RENAME] = do_rename,
    [XTK_HVCTL_OP_STOP] = do_stop,
    [XTK_HVCTL_OP_OUTPUT_HOLD] = do_output_hold,
    [XTK_HVCTL_OP_OUTPUT_RELEASE] = do_output_release,
    [XTK_HVCTL_OP_LAZY] = do_lazy,
    [XTK_HVCTL_OP_VCPUS] = do_vcpus,
};

/* ---- connections ---------------------------------------------------- */

int hv_ctl_listen(struct hv *hv)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    for (int i = 0; i < HV_MAX_CONNS; i++)
        hv->conns[i].fd = -1;
    if (strlen(hv->sock_path) >= sizeof(sa.sun_path)) {
        hv_log("%s: path too long", hv->sock_path);
        return -1;
    }
    strcpy(sa.sun_path, hv->sock_path);
    hv->listen_fd =
        socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (hv->listen_fd < 0) {
        hv_log("socket: %m");
        return -1;
    }
    unlink(hv->sock_path); /* a stale one: we hold the domain's lock */
    if (bind(hv->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chmod(hv->sock_path, 0600) < 0 || listen(hv->listen_fd, 8) < 0) {
        hv_log("%s: %m", hv->sock_path);
        return -1;
    }
    return 0;
}

void hv_ctl_accept(struct hv *hv)
{
    int fd = accept4(hv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR)
            hv_log("accept: %m");
        return;
    }
    for (int i = 0; i < HV_MAX_CONNS; i++) {
        if (hv->conns[i].fd < 0) {
            hv->conns[i] = (struct hv_conn){.fd = fd};
            return;
        }
    }
    hv_log("too many control connections: one refused");
    close(fd);
}

void hv_ctl_close(struct hv *hv, int ci)
{
    if (hv->conns[ci].fd < 0)
        return;
    release_conn(hv, ci);
    close(hv->conns[ci].fd);
    hv->conns[ci].fd = -1;
}

static int send_reply(int fd, const struct xtk_hvctl_hdr *req, int err,
                      struct reply *rep)
{
    struct xtk_hvctl_hdr h = {
        .magic = XTK_HVCTL_MAGIC,
        .version = XTK_HVCTL_VERSION,
        .op = (uint16_t)(req->op | XTK_HVCTL_REPLY),
        .id = req->id,
        .error = err,
        .len = err ? 0 : (uint32_t)rep->len,
    };
    struct iovec iov[2] = {{&h, sizeof(h)}, {rep->buf, h.len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = h.len ? 2 : 1};
    char cbuf[CMSG_SPACE(sizeof(rep->fds))];

    if (!err && rep->nfds) {
        struct cmsghdr *c;

        memset(cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * rep->nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * rep->nfds);
        memcpy(CMSG_DATA(c), rep->fds, sizeof(int) * rep->nfds);
    }
    if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        return -1;
    return 0;
}

/*
 * Whether a complaint about a client may be logged: at most 20 a second,
 * so that a client sending garbage cannot fill the disk with the log.
 */
static int complain_ok(void)
{
    static uint64_t window;
    static unsigned int n, dropped;
    uint64_t now = hv_now_ns() / 1000000000ull;

    if (now != window) {
        if (dropped)
            hv_log("control: %u complaints not logged", dropped);
        window = now;
        n = dropped = 0;
    }
    if (n < 20) {
        n++;
        return 1;
    }
    dropped++;
    return 0;
}

/* Closes any fds a peer sent us: requests carry none. */
static void drop_fds(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
            close(fd);
        }
    }
}

void hv_ctl_handle(struct hv *hv, int ci)
{
    struct hv_conn *c = &hv->conns[ci];
    struct iovec iov = {rx_buf, sizeof(rx_buf)};
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    struct xtk_hvctl_hdr h;
    struct reply rep = {0};
    ssize_t n;
    int err;

    n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* hung up, or broken */
        hv_ctl_close(hv, ci);
        return;
    }
    drop_fds(&mh);
    err = xtk__hvctl_check(rx_buf, (size_t)n, !!(mh.msg_flags & MSG_TRUNC), 0);
    if (err < 0) {
        if (complain_ok())
            hv_log("control: not a control message: disconnected");
        hv_ctl_close(hv, ci);
        return;
    }
    memcpy(&h, rx_buf, sizeof(h));
    if (!err)
        err = handlers[h.op](hv, ci, &h, rx_buf + sizeof(h), &rep);
    if (err && err != EBUSY && complain_ok())
        hv_log("control: %s: %s", xtk__hvctl_op_name(h.op), strerror(err));
    if (send_reply(c->fd, &h, err, &rep) < 0) {
        if (complain_ok())
            hv_log("control: cannot reply (%m): disconnected");
        hv_ctl_close(hv, ci);
    }
}

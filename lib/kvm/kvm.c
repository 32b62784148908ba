/*
 * kvm.c - the kvm backend: libxtk's backend operations (lib/backend.h) over
 * xtk-hv's control socket (lib/kvm/hvctl.h).
 *
 * A handle is one SOCK_SEQPACKET connection to <rundir>/<domid>.sock.  The
 * HELLO reply hands over, by SCM_RIGHTS, the guest RAM memfd (mapped here
 * for map_all and map_batch, so frames are read and written directly, the
 * way Xen's foreign mapping works), the dirty bitmap memfd, and the
 * eventfds of the toolstack's event channel ports (suspend, echo): a
 * notification in either direction never passes through xtk-hv.
 *
 * xtk-hv undoes what a connection held when it closes (a HOLD pause, the
 * dirty log), so a toolstack that dies mid-operation leaves the domain
 * running.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "backend.h"
#include "kvm/hvctl.h"
#include "kvm/kvm.h"
#include "xs-client.h"

#define XTK_LOG_CONTEXT "kvm"

#ifndef XTK_HV_PATH
#define XTK_HV_PATH "xtk-hv"
#endif
#ifndef XTK_GUEST_PATH
#define XTK_GUEST_PATH "xtk-guest.elf"
#endif

#define CALL_TIMEOUT_MS 30000
#define START_TIMEOUT_MS 30000
#define MAX_FDS (2 + 2 * (XTK_PORT_MAX + 1))
#define ASYNC_MAX 7 /* requests sent ahead: one of each kind */
/* A kind of request sent ahead that kvm.c takes itself as its answer is
 * read (hold_answered): the hold of the other vCPUs for a suspend
 * request.  Never in async_ready's mask, never keeps the fd
 * readable. */
#define KVM_ASYNC_HOLD 0x100u

/* A request sent ahead, in the order sent (xtk-hv answers a connection's
 * requests in order): its outcome once read (done). */
struct kvm_async {
    unsigned int kind; /* XTK__ASYNC_* */
    uint16_t op;
    uint32_t id;
    int done, err;
    int kept; /* DIRTY: its bitmap kept in carry before another sync */
    size_t got;
    union {
        struct xtk_hvctl_resume resume;
        struct xtk_hvctl_logdirty logdirty;
        struct xtk_hvctl_output output;
        struct xtk_hvctl_info info;
    } r;
};

struct kvm_dom {
    int sock;
    uint32_t next_id;
    /* xtk-hv's --net (fixed for the domain's life), from the last INFO:
     * net_sink needs no round trip of its own after an info */
    char net[XTK_HVCTL_NET_MAX];
    int net_known;
    struct xtk_hvctl_hello hello;
    int mem_fd, bitmap_fd;
    const uint64_t *bitmap;
    int to_guest[XTK_PORT_MAX + 1], from_guest[XTK_PORT_MAX + 1];
    const struct xtk_guest_status *status; /* read-only map of its page */
    pthread_mutex_t map_lock;
    void *ram;
    int ram_prot;
    char *rx; /* XTK_HVCTL_MSG_MAX + 1 bytes */

    /* Suspend. */
    int suspend_set;
    /* A suspend was requested and the guest has not been seen suspended
     * since: a resume now finds nothing to resume, and the guest
     * suspends later. */
    int suspend_pending;
    /* The other vCPUs are held by xtk-hv for the request in flight
     * (XTK_HVCTL_PAUSE_APS): released when it is dropped. */
    int aps_held;
    enum xtk__suspend_method method;
    int pause_evfd;
    /* The store method: its connection, the fd the caller watches (the
     * guest's notification and the store's reply, in one epoll), and
     * whether the write of the request is still to be answered: it is
     * sent, never waited for on the caller's loop (store_answer). */
    int store_fd, store_ep, store_owed;

    /* What the STOP that stopped the domain returned (kvm_stop()): the
     * state, until get_state takes it or the domain may run again; and
     * whether the bitmap memfd holds a final sync no read has taken. */
    void *stop_state;
    size_t stop_len;
    int stop_synced;
    uint64_t stop_dirty;
    int holding;     /* this handle holds the guest's output */
    uint64_t *carry; /* dirty frames of a sync no read took */
    int carry_set;

    /* Requests sent ahead (set_state_start, resume_start, logdirty_start,
     * output_release_start), oldest first.  The fd the caller watches is
     * an epoll set of the socket (an answer to read) and level_fd, an
     * eventfd kept readable while an outcome read here is not taken. */
    struct kvm_async aq[ASYNC_MAX];
    unsigned int naq;
    int level_fd, watch_fd, level_set;
};

const char *xtk__kvm_rundir(const struct xtk_ctx *ctx)
{
    const char *d = ctx && ctx->rundir ? ctx->rundir : getenv("XTK_RUNDIR");

    return d && *d ? d : "/run/xtk";
}

static struct kvm_dom *kd_of(struct xtk_domain *dom)
{
    return dom->priv;
}

/* ---- the control connection ---------------------------------------- */

static int connect_domain(const struct xtk_ctx *ctx, uint32_t domid)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%u.sock",
                 xtk__kvm_rundir(ctx), domid) >= (int)sizeof(sa.sun_path))
        return xtk__fail(ENAMETOOLONG);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        /* No socket, or nobody behind it: no such domain. */
        return xtk__fail(e == ECONNREFUSED || e == ENOENT ? ENOENT : e);
    }
    return fd;
}

static void close_fds(const int *fds, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        close(fds[i]);
}

/* Sends one request (the reply is read by call_recv). */
static int call_send(struct xtk_ctx *ctx, int sock, uint32_t id, uint16_t op,
                     uint32_t flags, const void *payload, size_t len)
{
    struct xtk_hvctl_hdr h = {
        .magic = XTK_HVCTL_MAGIC,
        .version = XTK_HVCTL_VERSION,
        .op = op,
        .id = id,
        .flags = flags,
        .len = (uint32_t)len,
    };
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};

    if (len > XTK_HVCTL_MSG_MAX - sizeof(h))
        return xtk__fail(E2BIG);
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
        if (errno == EPIPE || errno == ECONNRESET)
            return xtk__fail(ESRCH); /* xtk-hv is gone: so is the domain */
        XTK_PERROR(ctx, "%s: cannot send", xtk__hvctl_op_name(op));
        return -1;
    }
    return 0;
}

/*
 * Reads the reply to request id (op).  Its payload goes to reply (up to max
 * bytes; *got gets its length); fds received (HELLO) to fds (*nfds in:
 * room, out: count).  An error reply sets errno and returns -1.
 */
static int call_recv(struct xtk_ctx *ctx, int sock, char *rx, uint32_t id,
                     uint16_t op, void *reply, size_t max, size_t *got,
                     int *fds, unsigned int *nfds)
{
    struct xtk_hvctl_hdr h;
    char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    struct iovec riov = {rx, XTK_HVCTL_MSG_MAX + 1};
    struct msghdr mh;
    unsigned int nrx = 0;
    int rxfds[MAX_FDS];
    ssize_t n;
    int r;

    do
        r = poll(&pfd, 1, CALL_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        if (!r)
            errno = ETIMEDOUT;
        XTK_PERROR(ctx, "%s: no reply from xtk-hv", xtk__hvctl_op_name(op));
        return -1;
    }
    mh = (struct msghdr){.msg_iov = &riov,
                         .msg_iovlen = 1,
                         .msg_control = cbuf,
                         .msg_controllen = sizeof(cbuf)};
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n <= 0) {
        if (!n || errno == ECONNRESET)
            errno = ESRCH; /* xtk-hv is gone */
        return -1;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned int k =
            (unsigned int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (unsigned int i = 0; i < k && nrx < MAX_FDS; i++)
            memcpy(&rxfds[nrx++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    r = xtk__hvctl_check(rx, (size_t)n, !!(mh.msg_flags & MSG_TRUNC), 1);
    memcpy(&h, rx, sizeof(h) <= (size_t)n ? sizeof(h) : 0);
    if (r || (h.op & ~XTK_HVCTL_REPLY) != op || h.id != id ||
        (mh.msg_flags & MSG_CTRUNC) || (nrx && !fds) || (fds && nrx > *nfds)) {
        close_fds(rxfds, nrx);
        XTK_ERROR(ctx, "%s: malformed reply from xtk-hv",
                  xtk__hvctl_op_name(op));
        return xtk__fail(EPROTO);
    }
    if (h.error) {
        close_fds(rxfds, nrx);
        return xtk__fail(h.error);
    }
    if (h.len > max) {
        close_fds(rxfds, nrx);
        XTK_ERROR(ctx, "%s: reply of %u bytes, expected at most %zu",
                  xtk__hvctl_op_name(op), h.len, max);
        return xtk__fail(EPROTO);
    }
    if (reply)
        memcpy(reply, rx + sizeof(h), h.len);
    if (got)
        *got = h.len;
    if (fds) {
        memcpy(fds, rxfds, nrx * sizeof(int));
        *nfds = nrx;
    }
    return 0;
}

/* One request and its reply (call_send, then call_recv). */
static int call(struct xtk_ctx *ctx, int sock, char *rx, uint32_t id,
                uint16_t op, uint32_t flags, const void *payload, size_t len,
                void *reply, size_t max, size_t *got, int *fds,
                unsigned int *nfds)
{
    if (call_send(ctx, sock, id, op, flags, payload, len) < 0)
        return -1;
    return call_recv(ctx, sock, rx, id, op, reply, max, got, fds, nfds);
}

/* ---- requests sent ahead -------------------------------------------- */

/* level_fd readable exactly while an outcome is read and not taken. */
static void async_level(struct kvm_dom *kd)
{
    int want = 0;
    uint64_t v = 1;

    for (unsigned int i = 0; i < kd->naq; i++)
        want |= kd->aq[i].done && kd->aq[i].kind != KVM_ASYNC_HOLD;
    if (kd->level_fd < 0 || want == kd->level_set)
        return;
    if (want ? write(kd->level_fd, &v, sizeof(v)) == sizeof(v)
             : read(kd->level_fd, &v, sizeof(v)) == sizeof(v))
        kd->level_set = want;
}

static int stop_taken(struct xtk_domain *dom, size_t got);

/* Reads the answer to the oldest request sent ahead not yet answered
 * (waiting for it): its outcome kept in the queue. */
static void hold_answered(struct xtk_domain *dom, int err);

static void async_read_one(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);
    struct kvm_async *a = NULL;
    size_t max = 0;

    for (unsigned int i = 0; i < kd->naq && !a; i++)
        if (!kd->aq[i].done)
            a = &kd->aq[i];
    if (!a)
        return;
    switch (a->kind) {
    case XTK__ASYNC_RESUME:
        max = sizeof(a->r.resume);
        break;
    case XTK__ASYNC_DIRTY:
        max = sizeof(a->r.logdirty);
        break;
    case XTK__ASYNC_RELEASE:
        max = sizeof(a->r.output);
        break;
    case XTK__ASYNC_INFO:
        max = sizeof(a->r.info);
        break;
    }
    a->done = 1;
    a->got = 0;
    if (a->kind == XTK__ASYNC_STOP) {
        /* Taken in at once (the state, the sync: nothing may come
         * between the STOP and what it found). */
        a->err = call_recv(dom->ctx, kd->sock, kd->rx, a->id, a->op, NULL,
                           XTK_HVCTL_MSG_MAX, &a->got, NULL, NULL) < 0 ||
                         stop_taken(dom, a->got) < 0
                     ? (errno ? errno : EIO)
                     : 0;
        async_level(kd);
        return;
    }
    a->err = call_recv(dom->ctx, kd->sock, kd->rx, a->id, a->op,
                       max ? &a->r : NULL, max, &a->got, NULL, NULL) < 0
                 ? (errno ? errno : EIO)
                 : 0;
    if (!a->err && a->got != max) {
        XTK_ERROR(dom->ctx, "%s: short reply", xtk__hvctl_op_name(a->op));
        a->err = EPROTO;
    }
    if (!a->err && a->kind == XTK__ASYNC_RESUME)
        dom->resumed_ns = a->r.resume.running_ns; /* one host: our clock */
    if (a->kind == KVM_ASYNC_HOLD)
        hold_answered(dom, a->err);
    async_level(kd);
}

/* The answers kvm.c takes itself (KVM_ASYNC_HOLD), once read, leave the
 * queue (not from inside a walk of it: at its callers' ends). */
static void purge_taken(struct kvm_dom *kd)
{
    unsigned int n = 0;

    for (unsigned int i = 0; i < kd->naq; i++)
        if (!(kd->aq[i].done && kd->aq[i].kind == KVM_ASYNC_HOLD))
            kd->aq[n++] = kd->aq[i];
    kd->naq = n;
    async_level(kd);
}

static int keep_bitmap(struct kvm_dom *kd);
static int keep_stop_sync(struct kvm_dom *kd);
static void drop_stop_state(struct kvm_dom *kd);

/* Every answer to a request sent ahead is read before any other request
 * goes out (its outcome kept for its *_finish); a dirty-log sync's bitmap
 * is kept apart first, since the request may sync again (a STOP). */
static void collect_pending(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);

    for (unsigned int i = 0; i < kd->naq; i++) {
        struct kvm_async *a = &kd->aq[i];

        if (!a->done)
            async_read_one(dom);
        if (a->kind == XTK__ASYNC_DIRTY && !a->err && !a->kept &&
            keep_bitmap(kd) == 0)
            a->kept = 1;
    }
    purge_taken(kd);
}

static struct kvm_async *async_find(struct kvm_dom *kd, unsigned int kind)
{
    for (unsigned int i = 0; i < kd->naq; i++)
        if (kd->aq[i].kind == kind)
            return &kd->aq[i];
    return NULL;
}

/*
 * Sends a request ahead.  A state load that failed and was not taken
 * stays failed: nothing else is sent after it.  With fd: the fd the
 * caller watches (made at the first such request).
 */
static int async_send(struct xtk_domain *dom, unsigned int kind, uint16_t op,
                      uint32_t flags, const void *payload, size_t len, int *fd)
{
    struct kvm_dom *kd = kd_of(dom);
    struct kvm_async *st;

    purge_taken(kd);
    st = async_find(kd, XTK__ASYNC_STATE);
    if (st && st->done && st->err)
        return xtk__fail(st->err);
    if (async_find(kd, kind) || kd->naq == ASYNC_MAX)
        return xtk__fail(EBUSY);
    if (kind == XTK__ASYNC_DIRTY || kind == XTK__ASYNC_STOP) {
        /* A sync rewrites the bitmap memfd: one whose answer is still
         * to come is read (and its bitmap kept) before. */
        for (unsigned int i = 0; i < kd->naq; i++)
            if (!kd->aq[i].done && (kd->aq[i].kind == XTK__ASYNC_DIRTY ||
                                    kd->aq[i].kind == XTK__ASYNC_STOP))
                collect_pending(dom);
        if (keep_stop_sync(kd) < 0)
            return -1;
    }
    if (fd && kd->watch_fd < 0) {
        struct epoll_event ev = {.events = EPOLLIN};
        int ep = epoll_create1(EPOLL_CLOEXEC),
            lv = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

        if (ep < 0 || lv < 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, kd->sock, &ev) < 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, lv, &ev) < 0) {
            int e = errno;

            if (ep >= 0)
                close(ep);
            if (lv >= 0)
                close(lv);
            return xtk__fail(e);
        }
        kd->watch_fd = ep;
        kd->level_fd = lv;
        kd->level_set = 0;
        async_level(kd);
    }
    if (call_send(dom->ctx, kd->sock, ++kd->next_id, op, flags, payload, len) <
        0)
        return -1;
    kd->aq[kd->naq++] =
        (struct kvm_async){.kind = kind, .op = op, .id = kd->next_id};
    if (fd)
        *fd = kd->watch_fd;
    return 0;
}

/* Takes the outcome of kind's request (waiting for it): 0, or -1 with
 * errno (ENOENT: none sent).  *a gets a copy. */
static int async_take(struct xtk_domain *dom, unsigned int kind,
                      struct kvm_async *out)
{
    struct kvm_dom *kd = kd_of(dom);
    struct kvm_async *a = async_find(kd, kind);
    unsigned int i;

    if (!a)
        return xtk__fail(ENOENT);
    while (!a->done)
        async_read_one(dom);
    *out = *a;
    i = (unsigned int)(a - kd->aq);
    memmove(&kd->aq[i], &kd->aq[i + 1], (kd->naq - i - 1) * sizeof(*a));
    kd->naq--;
    async_level(kd);
    return out->err ? xtk__fail(out->err) : 0;
}

/* What has come in, read without waiting (SOCK_SEQPACKET: an answer is
 * in whole or not at all). */
static unsigned int kvm_async_ready(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);
    struct pollfd pfd = {.fd = kd->sock, .events = POLLIN};
    unsigned int mask = 0;

    for (unsigned int i = 0; i < kd->naq; i++) {
        if (!kd->aq[i].done && (poll(&pfd, 1, 0) <= 0 ||
                                !(pfd.revents & (POLLIN | POLLHUP | POLLERR))))
            break;
        if (!kd->aq[i].done)
            async_read_one(dom);
        if (kd->aq[i].kind != KVM_ASYNC_HOLD)
            mask |= kd->aq[i].kind;
    }
    purge_taken(kd);
    return mask;
}

static int kcall(struct xtk_domain *dom, uint16_t op, uint32_t flags,
                 const void *payload, size_t len, void *reply, size_t max,
                 size_t *got)
{
    struct kvm_dom *kd = kd_of(dom);

    collect_pending(dom);
    return call(dom->ctx, kd->sock, kd->rx, ++kd->next_id, op, flags, payload,
                len, reply, max, got, NULL, NULL);
}

/* A reply that must be exactly one struct. */
static int kcall_fixed(struct xtk_domain *dom, uint16_t op, uint32_t flags,
                       void *reply, size_t size)
{
    size_t got = 0;

    if (kcall(dom, op, flags, NULL, 0, reply, size, &got) < 0)
        return -1;
    if (got != size) {
        XTK_ERROR(dom->ctx, "%s: short reply", xtk__hvctl_op_name(op));
        return xtk__fail(EPROTO);
    }
    return 0;
}

/* ---- open / close ---------------------------------------------------- */

static void kd_free(struct kvm_dom *kd)
{
    if (!kd)
        return;
    if (kd->ram)
        munmap(kd->ram, kd->hello.nr_pages << XTK__PAGE_SHIFT);
    if (kd->bitmap)
        munmap((void *)kd->bitmap, kd->hello.bitmap_bytes);
    if (kd->status)
        munmap((void *)kd->status, XTK__PAGE_SIZE);
    for (unsigned int p = 0; p <= XTK_PORT_MAX; p++) {
        if (kd->to_guest[p] >= 0)
            close(kd->to_guest[p]);
        if (kd->from_guest[p] >= 0)
            close(kd->from_guest[p]);
    }
    if (kd->mem_fd >= 0)
        close(kd->mem_fd);
    if (kd->bitmap_fd >= 0)
        close(kd->bitmap_fd);
    if (kd->pause_evfd >= 0)
        close(kd->pause_evfd);
    if (kd->store_fd >= 0)
        close(kd->store_fd);
    if (kd->store_ep >= 0)
        close(kd->store_ep);
    if (kd->watch_fd >= 0)
        close(kd->watch_fd);
    if (kd->level_fd >= 0)
        close(kd->level_fd);
    if (kd->sock >= 0)
        close(kd->sock); /* xtk-hv releases our pause and dirty log */
    free(kd->stop_state);
    free(kd->carry);
    pthread_mutex_destroy(&kd->map_lock);
    free(kd->rx);
    free(kd);
}

static struct kvm_dom *kd_new(void)
{
    struct kvm_dom *kd = calloc(1, sizeof(*kd));

    if (!kd)
        return NULL;
    kd->sock = kd->mem_fd = kd->bitmap_fd = kd->pause_evfd = kd->store_fd =
        kd->store_ep = -1;
    kd->level_fd = kd->watch_fd = -1;
    for (unsigned int p = 0; p <= XTK_PORT_MAX; p++)
        kd->to_guest[p] = kd->from_guest[p] = -1;
    pthread_mutex_init(&kd->map_lock, NULL);
    kd->rx = malloc(XTK_HVCTL_MSG_MAX + 1);
    if (!kd->rx) {
        kd_free(kd);
        return NULL;
    }
    return kd;
}

/* HELLO: the domain's shape and its fds. */
static int hello(struct xtk_domain *dom, struct kvm_dom *kd, uint32_t flags)
{
    struct xtk_hvctl_hello *h = &kd->hello;
    int fds[MAX_FDS];
    unsigned int nfds = MAX_FDS, k = 2;
    size_t got = 0;

    if (call(dom->ctx, kd->sock, kd->rx, ++kd->next_id, XTK_HVCTL_OP_HELLO,
             flags, NULL, 0, h, sizeof(*h), &got, fds, &nfds) < 0) {
        if (errno == EBUSY && !flags)
            XTK_ERROR(dom->ctx,
                      "domain %u: its memory is still coming in from a "
                      "lazy restore: it can be opened once that is over",
                      dom->domid);
        return -1;
    }
    if (got != sizeof(*h) || h->page_size != XTK__PAGE_SIZE ||
        nfds != h->nr_fds || nfds < 2 ||
        (h->ports & ~((2u << XTK_PORT_MAX) - 2)) ||
        (unsigned int)__builtin_popcount(h->ports) * 2 + 2 != nfds ||
        h->bitmap_bytes < (h->nr_pages + 7) / 8 ||
        h->nr_pages > (uint64_t)XTK_GUEST_MAX_MIB << 8 ||
        memchr(h->name, 0, sizeof(h->name)) == NULL) {
        close_fds(fds, nfds);
        XTK_ERROR(dom->ctx, "domain %u: xtk-hv sent a malformed hello",
                  dom->domid);
        return xtk__fail(EPROTO);
    }
    kd->mem_fd = fds[0];
    kd->bitmap_fd = fds[1];
    for (unsigned int p = 0; p <= XTK_PORT_MAX; p++) {
        if (!(h->ports & (1u << p)))
            continue;
        kd->to_guest[p] = fds[k++];
        kd->from_guest[p] = fds[k++];
    }
    kd->bitmap =
        mmap(NULL, h->bitmap_bytes, PROT_READ, MAP_SHARED, kd->bitmap_fd, 0);
    kd->status = mmap(NULL, XTK__PAGE_SIZE, PROT_READ, MAP_SHARED, kd->mem_fd,
                      XTK_GUEST_STATUS_GPA);
    if (kd->bitmap == MAP_FAILED || kd->status == MAP_FAILED) {
        if (kd->bitmap == MAP_FAILED)
            kd->bitmap = NULL;
        if (kd->status == MAP_FAILED)
            kd->status = NULL;
        XTK_PERROR(dom->ctx, "domain %u: cannot map its memory", dom->domid);
        return -1;
    }
    dom->domid = h->domid;
    return 0;
}

static int open_flags(struct xtk_domain *dom, uint32_t flags)
{
    struct kvm_dom *kd = kd_new();

    if (!kd)
        return -1;
    kd->sock = connect_domain(dom->ctx, dom->domid);
    if (kd->sock < 0 || hello(dom, kd, flags) < 0) {
        int e = errno;
        kd_free(kd);
        return xtk__fail(e);
    }
    dom->priv = kd;
    return 0;
}

static int kvm_open(struct xtk_domain *dom)
{
    return open_flags(dom, 0);
}

static void kvm_close(struct xtk_domain *dom)
{
    kd_free(kd_of(dom));
    dom->priv = NULL;
}

/* ---- create ---------------------------------------------------------- */

/*
 * Reads "<domid>\n", or "-<errno>[ <message>]\n", from xtk-hv's ready pipe.
 * A failure's message (xtk-hv's own, or ours when it could not be
 * started) is logged once, here; a name in use (EEXIST) is left to the
 * caller to explain.
 */
static int read_ready(struct xtk_ctx *ctx, const char *hv, int fd,
                      uint32_t *domid)
{
    char buf[512];
    size_t n = 0;
    long v;
    char *end;

    while (n < sizeof(buf) - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, START_TIMEOUT_MS);
        ssize_t k;

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            XTK_ERROR(ctx, "%s did not start in time", hv);
            return xtk__fail(ETIMEDOUT);
        }
        k = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
        if (memchr(buf, '\n', n))
            break;
    }
    buf[n] = 0;
    errno = 0;
    v = strtol(buf, &end, 10);
    if (!n || errno || (*end != '\n' && !(v < 0 && *end == ' '))) {
        XTK_ERROR(ctx, "%s exited without saying why (see its log in %s)", hv,
                  xtk__kvm_rundir(ctx));
        return xtk__fail(EIO);
    }
    if (v < 0) {
        int e = v < -4095 ? EIO : (int)-v;
        char *msg = *end == ' ' ? end + 1 : NULL, *nl = strchr(end, '\n');

        if (nl)
            *nl = 0;
        if (msg && !strcmp(msg, "exec")) {
            errno = e;
            XTK_PERROR(ctx, "cannot run %s%s", hv,
                       e == ENOENT ? " (XTK_HV names the program)" : "");
        } else if (e != EEXIST || !msg) {
            if (msg && *msg)
                XTK_ERROR(ctx, "xtk-hv: %s", msg);
            else {
                errno = e;
                XTK_PERROR(ctx, "xtk-hv could not create the domain");
            }
        }
        return xtk__fail(e);
    }
    if (v == 0 || v > UINT32_MAX)
        return xtk__fail(EPROTO);
    *domid = (uint32_t)v;
    return 0;
}

/*
 * The children below run on stacks of their own that AddressSanitizer
 * does not know: its bookkeeping before each call that does not return
 * (_exit, execv) would warn on stderr, which is the caller's.  Not
 * instrumented for it.
 */
#define CHILD_CODE __attribute__((no_sanitize_address))

/* In the child, after a failed execv: "-<errno> exec\n" on the ready fd,
 * with async-signal-safe calls only. */
CHILD_CODE static void exec_failed(int err)
{
    char buf[32], *p = buf + sizeof(buf);
    const char tail[] = " exec\n";

    p -= sizeof(tail) - 1;
    memcpy(p, tail, sizeof(tail) - 1);
    do
        *--p = (char)('0' + err % 10);
    while ((err /= 10) && p > buf + 1);
    *--p = '-';
    if (write(3, p, (size_t)(buf + sizeof(buf) - p)) < 0)
        _exit(127);
    _exit(127);
}

/*
 * xtk-hv is started detached: a child in a session of its own starts it
 * and exits, so that it outlives us and leaves no zombie.  Both are made
 * with clone(CLONE_VM | CLONE_VFORK), as posix_spawn makes its child:
 * they run on this process's memory (we wait meanwhile) and copy none of
 * its page tables, which fork() does: a caller that has restored a large
 * domain before holds a heap of tens of MiB, and two forks of it took
 * milliseconds of a lazy restore's start.  Each runs on a stack of its
 * own, with every signal blocked until the exec and no handler of ours
 * (they would run on our memory).
 */
#define SPAWN_STACK (64 * 1024)

struct spawn_args {
    char *const *argv;
    int ready_fd; /* becomes fd 3 */
    char *stack2; /* the grandchild's */
};

/* Signals back to their defaults in a child sharing our memory (its
 * handlers are its own: no CLONE_SIGHAND), all of them still blocked. */
CHILD_CODE static void child_signals_default(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;

        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0 ||
            sa.sa_handler == SIG_IGN || sa.sa_handler == SIG_DFL)
            continue;
        sa.sa_handler = SIG_DFL;
        sa.sa_flags = 0;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, NULL);
    }
}

/* The grandchild: xtk-hv, with the ready pipe as fd 3 and /dev/null as
 * stdin and stdout.  Only async-signal-safe calls. */
CHILD_CODE static int spawn_exec(void *arg)
{
    const struct spawn_args *a = arg;
    sigset_t none;
    int null;

    /* fd 3: dup2() clears close-on-exec, unless it is already 3. */
    if (a->ready_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(a->ready_fd, 3) < 0)
        _exit(127);
    null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
    }
    close_range(4, ~0u, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(a->argv[0], a->argv);
    exec_failed(errno);
    return 127;
}

/* The child: a session of its own, the grandchild, and gone once the
 * grandchild has exec'd (or failed to). */
CHILD_CODE static int spawn_detach(void *arg)
{
    struct spawn_args *a = arg;

    child_signals_default();
    setsid();
    if (clone(spawn_exec, a->stack2 + SPAWN_STACK,
              CLONE_VM | CLONE_VFORK | SIGCHLD, a) < 0)
        _exit(126);
    _exit(0);
}

/* Starts xtk-hv; returns the new domain's id. */
static int spawn_hv(struct xtk_ctx *ctx, char *const argv[], uint32_t *domid)
{
    struct spawn_args a = {.argv = argv};
    sigset_t all, old;
    char *stacks;
    int pipefd[2];
    pid_t pid;
    int status, r, e;

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        XTK_PERROR(ctx, "cannot start %s: pipe", argv[0]);
        return -1;
    }
    stacks = mmap(NULL, 2 * SPAWN_STACK, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stacks == MAP_FAILED) {
        e = errno;
        XTK_PERROR(ctx, "cannot start %s: a stack", argv[0]);
        close(pipefd[0]);
        close(pipefd[1]);
        return xtk__fail(e);
    }
    a.ready_fd = pipefd[1];
    a.stack2 = stacks + SPAWN_STACK;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(spawn_detach, stacks + SPAWN_STACK,
                CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stacks, 2 * SPAWN_STACK);
    close(pipefd[1]);
    if (pid < 0) {
        errno = e;
        XTK_PERROR(ctx, "cannot start %s: clone", argv[0]);
        close(pipefd[0]);
        return xtk__fail(e);
    }
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 126) {
        XTK_ERROR(ctx, "cannot start %s: its process could not be made",
                  argv[0]);
        close(pipefd[0]);
        return xtk__fail(EAGAIN);
    }
    r = read_ready(ctx, argv[0], pipefd[0], domid);
    close(pipefd[0]);
    return r;
}

/*
 * The built-in guest has booted: its status page says it runs, so its
 * ports are routed.  Until then a request rung on a port (a save's
 * suspend request, right after the create) is an edge on a masked pin,
 * lost, and the save would wait its whole timeout.  Bounded: a guest
 * that has not booted in 5 s is left to the caller's checks.
 */
static void wait_booted(struct xtk_domain *dom)
{
    uint64_t end = xtk_now_ns() + 5000000000ull;
    struct xtk_hvctl_info o;
    size_t got;

    while (kcall(dom, XTK_HVCTL_OP_INFO, 0, NULL, 0, &o, sizeof(o), &got) ==
               0 &&
           got == sizeof(o) && o.guest_state != XTK_GUEST_RUNNING &&
           o.guest_state != XTK_GUEST_SUSPENDED &&
           !(o.flags & XTK_DOMINFO_CRASHED)) {
        if (xtk_now_ns() > end) {
            XTK_WARN(dom->ctx,
                     "domain %u: the built-in guest has not booted "
                     "in 5 s",
                     dom->domid);
            return;
        }
        nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

static int kvm_create(struct xtk_domain *dom,
                      const struct xtk_domain_config *cfg, unsigned int flags)
{
    char hv_buf[PATH_MAX + 32], guest_buf[PATH_MAX + 32];
    const char *hv = xtk__find_program("XTK_HV", XTK_HV_PATH, "xtk-hv", hv_buf,
                                       sizeof(hv_buf));
    const char *kernel = cfg->kernel;
    char mem[32], vcpus[32];
    char *argv[24];
    int n = 0;

    if (!kernel)
        kernel = xtk__find_program("XTK_GUEST", XTK_GUEST_PATH,
                                   "guests/xtk-guest.elf", guest_buf,
                                   sizeof(guest_buf));
    snprintf(mem, sizeof(mem), "%llu",
             (unsigned long long)(cfg->memory_mib ? cfg->memory_mib : 64));
    snprintf(vcpus, sizeof(vcpus), "%u", cfg->nr_vcpus ? cfg->nr_vcpus : 1);
    argv[n++] = (char *)hv;
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    argv[n++] = "--rundir";
    argv[n++] = (char *)xtk__kvm_rundir(dom->ctx);
    argv[n++] = "--memory";
    argv[n++] = mem;
    argv[n++] = "--vcpus";
    argv[n++] = vcpus;
    if (cfg->name) {
        argv[n++] = "--name";
        argv[n++] = (char *)cfg->name;
    }
    if (flags & XTK__CREATE_EMPTY) {
        argv[n++] = "--empty";
    } else {
        argv[n++] = "--kernel";
        argv[n++] = (char *)kernel;
        if (cfg->cmdline) {
            argv[n++] = "--cmdline";
            argv[n++] = (char *)cfg->cmdline;
        }
    }
    if (cfg->net && *cfg->net) {
        argv[n++] = "--net";
        argv[n++] = (char *)cfg->net;
    }
    if (cfg->flags & XTK_DOMCFG_NO_STORE)
        argv[n++] = "--no-store";
    if (cfg->flags & XTK_DOMCFG_PAUSED)
        argv[n++] = "--paused";
    argv[n] = NULL;

    if (spawn_hv(dom->ctx, argv, &dom->domid) < 0)
        return -1; /* read_ready said why */
    if (open_flags(dom, flags & XTK__CREATE_EMPTY ? XTK_HVCTL_HELLO_OWN : 0) <
        0) {
        XTK_PERROR(dom->ctx, "domain %u: created but cannot be opened",
                   dom->domid);
        return -1;
    }
    if (!cfg->kernel && !(flags & XTK__CREATE_EMPTY) &&
        !(cfg->flags & XTK_DOMCFG_PAUSED))
        wait_booted(dom);
    return 0;
}

/* ---- discovery ------------------------------------------------------- */

/* xtk-hv's INFO answer (got bytes of it) as info, and its network sink. */
static int info_from(const struct xtk_hvctl_info *o, size_t got,
                     struct xtk_domain_info *info, char *net)
{
    if (got != sizeof(*o) || !memchr(o->name, 0, sizeof(o->name)) ||
        !memchr(o->net, 0, sizeof(o->net)))
        return xtk__fail(EPROTO);
    memset(info, 0, sizeof(*info));
    info->domid = o->domid;
    info->nr_vcpus = o->nr_vcpus;
    info->nr_pages = o->nr_pages;
    info->flags = o->flags | (o->store ? XTK_DOMINFO_STORE : 0);
    info->uptime_ns = o->uptime_ns;
    snprintf(info->name, sizeof(info->name), "%s", o->name);
    if (net)
        memcpy(net, o->net, sizeof(o->net));
    return 0;
}

static int info_of(struct xtk_ctx *ctx, int sock, char *rx,
                   struct xtk_domain_info *info, char *net)
{
    struct xtk_hvctl_info o;
    size_t got = 0;

    if (call(ctx, sock, rx, 1, XTK_HVCTL_OP_INFO, 0, NULL, 0, &o, sizeof(o),
             &got, NULL, NULL) < 0)
        return -1;
    return info_from(&o, got, info, net);
}

static int by_domid(const void *a, const void *b)
{
    const struct xtk_domain_info *x = a, *y = b;

    return x->domid < y->domid ? -1 : x->domid > y->domid;
}

static int kvm_list(struct xtk_ctx *ctx, struct xtk_domain_info **infos,
                    size_t *nr)
{
    DIR *d = opendir(xtk__kvm_rundir(ctx));
    struct xtk_domain_info *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    char *rx;

    if (!d) {
        if (errno != ENOENT)
            return -1;
        *infos = NULL;
        *nr = 0;
        return 0;
    }
    rx = malloc(XTK_HVCTL_MSG_MAX + 1);
    if (!rx)
        goto err;
    while ((de = readdir(d))) {
        char *end;
        unsigned long id = strtoul(de->d_name, &end, 10);
        int sock;

        if (end == de->d_name || strcmp(end, ".sock") || !id || id > UINT32_MAX)
            continue;
        sock = connect_domain(ctx, (uint32_t)id);
        if (sock < 0)
            continue; /* stale or gone meanwhile */
        if (n == cap) {
            struct xtk_domain_info *nv;
            cap = cap ? cap * 2 : 16;
            nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                close(sock);
                goto err;
            }
            v = nv;
        }
        if (info_of(ctx, sock, rx, &v[n], NULL) == 0)
            n++;
        close(sock);
    }
    closedir(d);
    free(rx);
    if (n)
        qsort(v, n, sizeof(*v), by_domid);
    *infos = v;
    *nr = n;
    return 0;
err:
    free(rx);
    free(v);
    closedir(d);
    return xtk__fail(ENOMEM);
}

static int kvm_lookup(struct xtk_ctx *ctx, const char *name, uint32_t *domid)
{
    struct xtk_domain_info *v;
    size_t n;
    int r = xtk__fail(ENOENT);

    if (kvm_list(ctx, &v, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v[i].name, name)) {
            *domid = v[i].domid;
            r = 0;
            break;
        }
    }
    free(v);
    if (r < 0)
        errno = ENOENT;
    return r;
}

/* ---- control --------------------------------------------------------- */

/* The domain may run, or its state change: a STOP's state is stale. */
static void drop_stop_state(struct kvm_dom *kd)
{
    free(kd->stop_state);
    kd->stop_state = NULL;
    kd->stop_len = 0;
}

/*
 * A STOP's sync that no read took is kept in kd->carry before anything
 * overwrites the bitmap memfd (another sync), so no dirty frame is lost.
 */
static int keep_stop_sync(struct kvm_dom *kd)
{
    if (!kd->stop_synced)
        return 0;
    if (keep_bitmap(kd) < 0)
        return -1;
    kd->stop_synced = 0;
    return 0;
}

/* The bitmap memfd's frames into carry, for the next read to add. */
static int keep_bitmap(struct kvm_dom *kd)
{
    uint64_t words = (kd->hello.nr_pages + 63) / 64;

    if (!kd->carry) {
        kd->carry = calloc(words, 8);
        if (!kd->carry)
            return -1;
    }
    for (uint64_t i = 0; i < words; i++)
        kd->carry[i] |= kd->bitmap[i];
    kd->carry_set = 1;
    return 0;
}

/*
 * Stops the domain for a save in one round trip (XTK_HVCTL_OP_STOP): a
 * HOLD pause, the final dirty-log sync if this handle logs, and the state.
 * The sync and the state are kept for the logdirty_read (FINAL) and the
 * get_state that follow, which then cost no round trip: the domain stays
 * stopped until this handle resumes or unpauses it.
 */
static int kvm_stop(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);
    size_t got = 0;

    drop_stop_state(kd);
    if (keep_stop_sync(kd) < 0 || kcall(dom, XTK_HVCTL_OP_STOP, 0, NULL, 0,
                                        NULL, XTK_HVCTL_MSG_MAX, &got) < 0)
        return -1;
    return stop_taken(dom, got);
}

/* A STOP's reply (got bytes of payload, in kd->rx) taken in: the state
 * and the sync kept for get_state and the FINAL read. */
static int stop_taken(struct xtk_domain *dom, size_t got)
{
    struct kvm_dom *kd = kd_of(dom);
    struct xtk_hvctl_stop o;
    void *p;

    memcpy(&o, kd->rx + sizeof(struct xtk_hvctl_hdr),
           got < sizeof(o) ? 0 : sizeof(o));
    if (got < sizeof(o) || (o.flags & ~XTK_HVCTL_STOP_SYNCED) ||
        (o.epoch != 0) != !!kd->holding ||
        ((o.flags & XTK_HVCTL_STOP_SYNCED) &&
         o.log.nr_pages != kd->hello.nr_pages)) {
        XTK_ERROR(dom->ctx, "stop: malformed reply from xtk-hv");
        return xtk__fail(EPROTO);
    }
    p = malloc(got - sizeof(o) ? got - sizeof(o) : 1);
    if (!p)
        return -1;
    memcpy(p, kd->rx + sizeof(struct xtk_hvctl_hdr) + sizeof(o),
           got - sizeof(o));
    kd->stop_state = p;
    kd->stop_len = got - sizeof(o);
    dom->output_epoch = o.epoch;
    if (o.flags & XTK_HVCTL_STOP_SYNCED) {
        kd->stop_synced = 1;
        kd->stop_dirty = o.log.dirty;
    }
    return 0;
}

static int kvm_info(struct xtk_domain *dom, struct xtk_domain_info *info);

static int kvm_net_sink(struct xtk_domain *dom, char *buf, size_t size)
{
    struct kvm_dom *kd = kd_of(dom);
    struct xtk_domain_info info;

    if (!kd->net_known && kvm_info(dom, &info) < 0)
        return -1;
    if (strlen(kd->net) >= size)
        return xtk__fail(EPROTO);
    memcpy(buf, kd->net, strlen(kd->net) + 1);
    return 0;
}

static int kvm_output_hold(struct xtk_domain *dom, int how)
{
    struct kvm_dom *kd = kd_of(dom);
    uint32_t flags = how == XTK__OUTPUT_HOLD   ? XTK_HVCTL_OUTPUT_HOLD_ON
                     : how == XTK__OUTPUT_SEND ? XTK_HVCTL_OUTPUT_SEND
                                               : 0;

    if (how != XTK__OUTPUT_HOLD && how != XTK__OUTPUT_SEND &&
        how != XTK__OUTPUT_DROP)
        return xtk__fail(EINVAL);
    if (kcall(dom, XTK_HVCTL_OP_OUTPUT_HOLD, flags, NULL, 0, NULL, 0, NULL) < 0)
        return -1;
    kd->holding = how == XTK__OUTPUT_HOLD;
    return 0;
}

/* What OUTPUT_RELEASE sent. */
static void output_of(struct xtk__output *out, const struct xtk_hvctl_output *o)
{
    out->items = o->items;
    out->bytes = o->bytes;
    out->held_max_ns = o->held_max_ns;
    out->held_sum_ns = o->held_sum_ns;
}

static int kvm_output_release(struct xtk_domain *dom, uint32_t epoch,
                              struct xtk__output *out)
{
    struct xtk_hvctl_release req = {.epoch = epoch};
    struct xtk_hvctl_output o;
    size_t got = 0;

    if (kcall(dom, XTK_HVCTL_OP_OUTPUT_RELEASE, 0, &req, sizeof(req), &o,
              sizeof(o), &got) < 0)
        return -1;
    if (got != sizeof(o)) {
        XTK_ERROR(dom->ctx, "output-release: short reply");
        return xtk__fail(EPROTO);
    }
    output_of(out, &o);
    return 0;
}

static int kvm_output_release_start(struct xtk_domain *dom, uint32_t epoch,
                                    int *fd)
{
    struct xtk_hvctl_release req = {.epoch = epoch};

    return async_send(dom, XTK__ASYNC_RELEASE, XTK_HVCTL_OP_OUTPUT_RELEASE, 0,
                      &req, sizeof(req), fd);
}

static int kvm_output_release_finish(struct xtk_domain *dom,
                                     struct xtk__output *out)
{
    struct kvm_async a;

    if (async_take(dom, XTK__ASYNC_RELEASE, &a) < 0)
        return -1;
    output_of(out, &a.r.output);
    return 0;
}

static int kvm_info(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    struct kvm_dom *kd = kd_of(dom);

    collect_pending(dom);
    if (info_of(dom->ctx, kd->sock, kd->rx, info, kd->net) < 0)
        return -1;
    kd->net_known = 1;
    return 0;
}

static int kvm_info_start(struct xtk_domain *dom, int *fd)
{
    return async_send(dom, XTK__ASYNC_INFO, XTK_HVCTL_OP_INFO, 0, NULL, 0, fd);
}

static int kvm_info_finish(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    struct kvm_dom *kd = kd_of(dom);
    struct kvm_async a;

    if (async_take(dom, XTK__ASYNC_INFO, &a) < 0 ||
        info_from(&a.r.info, a.got, info, kd->net) < 0)
        return -1;
    kd->net_known = 1;
    return 0;
}

static int kvm_pause(struct xtk_domain *dom, unsigned int flags)
{
    if (flags & ~XTK__PAUSE_HOLD)
        return xtk__fail(EINVAL);
    drop_stop_state(kd_of(dom));
    return kcall(dom, XTK_HVCTL_OP_PAUSE,
                 flags & XTK__PAUSE_HOLD ? XTK_HVCTL_PAUSE_HOLD : 0, NULL, 0,
                 NULL, 0, NULL);
}

static int kvm_unpause(struct xtk_domain *dom, unsigned int flags)
{
    if (flags & ~XTK__UNPAUSE_FORCE)
        return xtk__fail(EINVAL);
    drop_stop_state(kd_of(dom));
    return kcall(dom, XTK_HVCTL_OP_UNPAUSE,
                 flags & XTK__UNPAUSE_FORCE ? XTK_HVCTL_UNPAUSE_FORCE : 0, NULL,
                 0, NULL, 0, NULL);
}

/* Replies, then xtk-hv exits: wait for the connection to close, so that
 * when this returns the domain is gone. */
static int kvm_destroy(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);
    struct pollfd pfd = {.fd = kd->sock, .events = POLLIN};
    char c;

    if (kcall(dom, XTK_HVCTL_OP_DESTROY, 0, NULL, 0, NULL, 0, NULL) < 0)
        return -1;
    while (poll(&pfd, 1, CALL_TIMEOUT_MS) > 0 &&
           recv(kd->sock, &c, 1, MSG_DONTWAIT) > 0)
        ;
    return 0;
}

static int kvm_rename(struct xtk_domain *dom, const char *name)
{
    size_t n = strlen(name) + 1;

    if (n < 2 || n > XTK_HVCTL_NAME_MAX)
        return xtk__fail(EINVAL);
    return kcall(dom, XTK_HVCTL_OP_RENAME, 0, name, n, NULL, 0, NULL);
}

static int kvm_console_read(struct xtk_domain *dom, uint64_t *offset, char *buf,
                            size_t *len)
{
    struct kvm_dom *kd = kd_of(dom);
    struct xtk_hvctl_console_req req = {.offset = *offset};
    struct xtk_hvctl_console o;
    size_t got = 0, max = XTK_HVCTL_MSG_MAX - sizeof(struct xtk_hvctl_hdr);

    req.max = (uint32_t)(*len < max - sizeof(o) ? *len : max - sizeof(o));
    if (kcall(dom, XTK_HVCTL_OP_CONSOLE_READ, 0, &req, sizeof(req), NULL, max,
              &got) < 0)
        return -1;
    if (got < sizeof(o) || got - sizeof(o) > req.max)
        return xtk__fail(EPROTO);
    memcpy(&o, kd->rx + sizeof(struct xtk_hvctl_hdr), sizeof(o));
    memcpy(buf, kd->rx + sizeof(struct xtk_hvctl_hdr) + sizeof(o),
           got - sizeof(o));
    *offset = o.offset;
    *len = got - sizeof(o);
    return 0;
}

/* ---- memory ---------------------------------------------------------- */

static void *kvm_map_all(struct xtk_domain *dom, int prot)
{
    struct kvm_dom *kd = kd_of(dom);
    size_t size = kd->hello.nr_pages << XTK__PAGE_SHIFT;
    void *r = NULL;

    if (prot & ~(PROT_READ | PROT_WRITE))
        return xtk__fail_null(EINVAL);
    pthread_mutex_lock(&kd->map_lock);
    if (!kd->ram) {
        void *p = mmap(NULL, size, prot, MAP_SHARED, kd->mem_fd, 0);
        if (p == MAP_FAILED) {
            XTK_PERROR(dom->ctx, "domain %u: cannot map its RAM", dom->domid);
            goto out;
        }
        kd->ram = p;
        kd->ram_prot = prot;
    } else if ((prot | kd->ram_prot) != kd->ram_prot) {
        if (mprotect(kd->ram, size, prot | kd->ram_prot) < 0)
            goto out;
        kd->ram_prot |= prot;
    }
    r = kd->ram;
out:
    pthread_mutex_unlock(&kd->map_lock);
    return r;
}

static void *kvm_map_batch(struct xtk_domain *dom, int prot,
                           const uint64_t *pfns, unsigned int nr, int *errs)
{
    struct kvm_dom *kd = kd_of(dom);
    char *base;

    if (!nr || !pfns || !errs || (prot & ~(PROT_READ | PROT_WRITE)))
        return xtk__fail_null(EINVAL);
    base = mmap(NULL, (size_t)nr << XTK__PAGE_SHIFT, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    /* Runs of consecutive frames become one mapping each. */
    for (unsigned int i = 0; i < nr;) {
        unsigned int j = i + 1;

        if (pfns[i] >= kd->hello.nr_pages) {
            errs[i++] = EINVAL;
            continue;
        }
        while (j < nr && pfns[j] == pfns[j - 1] + 1 &&
               pfns[j] < kd->hello.nr_pages)
            j++;
        void *p = mmap(base + ((size_t)i << XTK__PAGE_SHIFT),
                       (size_t)(j - i) << XTK__PAGE_SHIFT, prot,
                       MAP_SHARED | MAP_FIXED, kd->mem_fd,
                       (off_t)(pfns[i] << XTK__PAGE_SHIFT));
        for (unsigned int k = i; k < j; k++)
            errs[k] = p == MAP_FAILED ? errno : 0;
        i = j;
    }
    return base;
}

static int kvm_unmap_batch(struct xtk_domain *dom, void *base, unsigned int nr)
{
    return munmap(base, (size_t)nr << XTK__PAGE_SHIFT);
}

/* The memfd's data extents (SEEK_DATA/SEEK_HOLE): holes were never
 * written and read as zero. */
static int kvm_populated(struct xtk_domain *dom, uint64_t *bitmap,
                         uint64_t nr_bits)
{
    struct kvm_dom *kd = kd_of(dom);
    off_t size = (off_t)(kd->hello.nr_pages << XTK__PAGE_SHIFT), data = 0;

    if (!bitmap || nr_bits < kd->hello.nr_pages)
        return xtk__fail(EINVAL);
    memset(bitmap, 0, (nr_bits + 63) / 64 * 8);
    while (data < size) {
        off_t hole;

        data = lseek(kd->mem_fd, data, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) /* no data after here */
                break;
            return -1;
        }
        hole = lseek(kd->mem_fd, data, SEEK_HOLE);
        if (hole < 0)
            return -1;
        if (hole > size)
            hole = size;
        for (uint64_t pfn = (uint64_t)data >> XTK__PAGE_SHIFT;
             pfn < ((uint64_t)hole + XTK__PAGE_SIZE - 1) >> XTK__PAGE_SHIFT;
             pfn++)
            bitmap[pfn / 64] |= 1ull << (pfn % 64);
        data = hole;
    }
    return 0;
}

static int kvm_write_frames(struct xtk_domain *dom, uint64_t pfn,
                            unsigned int nr, const void *buf)
{
    struct kvm_dom *kd = kd_of(dom);
    size_t len = (size_t)nr << XTK__PAGE_SHIFT, done = 0;

    if (!nr || pfn >= kd->hello.nr_pages || nr > kd->hello.nr_pages - pfn)
        return xtk__fail(EINVAL);
    while (done < len) {
        ssize_t n = pwrite(kd->mem_fd, (const char *)buf + done, len - done,
                           (off_t)((pfn << XTK__PAGE_SHIFT) + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -1 : xtk__fail(EIO);
        done += (size_t)n;
    }
    return 0;
}

static int kvm_populate(struct xtk_domain *dom, const uint64_t *pfns,
                        unsigned int nr)
{
    struct kvm_dom *kd = kd_of(dom);

    /* The memfd is sized already; its pages appear when written. */
    for (unsigned int i = 0; i < nr; i++)
        if (pfns[i] >= kd->hello.nr_pages)
            return xtk__fail(EINVAL);
    return 0;
}

/* ---- lazy restore ---------------------------------------------------- */

static int kvm_lazy_begin(struct xtk_domain *dom, int *uffd, uint64_t *base,
                          uint64_t *eager)
{
    struct kvm_dom *kd = kd_of(dom);
    struct xtk_hvctl_lazy o;
    unsigned int nfds = 1;
    size_t got = 0;
    int fd = -1;

    collect_pending(dom);
    if (call(dom->ctx, kd->sock, kd->rx, ++kd->next_id, XTK_HVCTL_OP_LAZY, 0,
             NULL, 0, &o, sizeof(o), &got, &fd, &nfds) < 0) {
        if (errno == ENOSYS)
            XTK_ERROR(dom->ctx,
                      "domain %u: xtk-hv cannot have a userfaultfd here "
                      "(its log says why): no lazy restore",
                      dom->domid);
        else
            XTK_PERROR(dom->ctx, "domain %u: LAZY", dom->domid);
        return -1;
    }
    if (got != sizeof(o) || nfds != 1 ||
        o.bytes != kd->hello.nr_pages << XTK__PAGE_SHIFT ||
        o.eager_pages > kd->hello.nr_pages) {
        if (nfds == 1)
            close(fd);
        XTK_ERROR(dom->ctx, "LAZY: malformed reply from xtk-hv");
        return xtk__fail(EPROTO);
    }
    *uffd = fd;
    *base = o.base;
    *eager = o.eager_pages;
    return 0;
}

static int kvm_discard(struct xtk_domain *dom, uint64_t pfn, uint64_t nr)
{
    struct kvm_dom *kd = kd_of(dom);

    if (pfn > kd->hello.nr_pages || nr > kd->hello.nr_pages - pfn)
        return xtk__fail(EINVAL);
    /* The memory file's pages go: every mapping of them (xtk-hv's, and
     * so KVM's) loses them too. */
    if (fallocate(kd->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(pfn << XTK__PAGE_SHIFT),
                  (off_t)(nr << XTK__PAGE_SHIFT)) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: cannot discard frames %#llx-%#llx",
                   dom->domid, (unsigned long long)pfn,
                   (unsigned long long)(pfn + nr - 1));
        return -1;
    }
    return 0;
}

static int kvm_lazy_end(struct xtk_domain *dom)
{
    return kcall(dom, XTK_HVCTL_OP_LAZY, XTK_HVCTL_LAZY_DONE, NULL, 0, NULL, 0,
                 NULL);
}

/* ---- dirty log ------------------------------------------------------- */

static int kvm_logdirty_enable(struct xtk_domain *dom)
{
    return kcall(dom, XTK_HVCTL_OP_LOGDIRTY_ENABLE, 0, NULL, 0, NULL, 0, NULL);
}

static int kvm_logdirty_disable(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);

    kd->stop_synced = kd->carry_set = 0;
    if (kd->carry)
        memset(kd->carry, 0, (kd->hello.nr_pages + 63) / 64 * 8);
    return kcall(dom, XTK_HVCTL_OP_LOGDIRTY_DISABLE, 0, NULL, 0, NULL, 0, NULL);
}

/* A sync's result, in the bitmap memfd, into the caller's bitmap with
 * what a sync no read took (carry). */
static void logdirty_copy(struct kvm_dom *kd, uint64_t *bitmap,
                          uint64_t nr_bits, uint64_t *dirty)
{
    uint64_t words = (kd->hello.nr_pages + 63) / 64, n = 0;

    memcpy(bitmap, kd->bitmap, words * 8);
    memset(bitmap + words, 0, ((nr_bits + 63) / 64 - words) * 8);
    if (kd->carry_set) {
        for (uint64_t i = 0; i < words; i++) {
            bitmap[i] |= kd->carry[i];
            kd->carry[i] = 0;
            n += (uint64_t)__builtin_popcountll(bitmap[i]);
        }
        kd->carry_set = 0;
        *dirty = n;
    }
}

static uint32_t logdirty_flags(unsigned int flags)
{
    return flags & XTK__LOGDIRTY_FINAL ? XTK_HVCTL_LOGDIRTY_FINAL : 0;
}

static int kvm_logdirty_read(struct xtk_domain *dom, unsigned int flags,
                             uint64_t *bitmap, uint64_t nr_bits,
                             uint64_t *dirty_count)
{
    struct kvm_dom *kd = kd_of(dom);
    struct xtk_hvctl_logdirty o;

    if ((flags & ~XTK__LOGDIRTY_FINAL) || !bitmap ||
        nr_bits < kd->hello.nr_pages)
        return xtk__fail(EINVAL);
    if (kd->stop_synced && (flags & XTK__LOGDIRTY_FINAL)) {
        /* The STOP synced, and the domain has not run since. */
        o.dirty = kd->stop_dirty;
        kd->stop_synced = 0;
    } else if (keep_stop_sync(kd) < 0 ||
               kcall_fixed(dom, XTK_HVCTL_OP_LOGDIRTY_SYNC,
                           logdirty_flags(flags), &o, sizeof(o)) < 0) {
        return -1;
    }
    logdirty_copy(kd, bitmap, nr_bits, &o.dirty);
    if (dirty_count)
        *dirty_count = o.dirty;
    return 0;
}

/* The sync sent ahead; the bitmap memfd is read at the finish (nothing
 * else syncs in between: any other operation first reads the answer). */
static int kvm_logdirty_start(struct xtk_domain *dom, unsigned int flags,
                              int *fd)
{
    struct kvm_dom *kd = kd_of(dom);

    if (flags & ~XTK__LOGDIRTY_FINAL)
        return xtk__fail(EINVAL);
    if (async_find(kd, XTK__ASYNC_DIRTY))
        return xtk__fail(EBUSY);
    if (keep_stop_sync(kd) < 0)
        return -1;
    return async_send(dom, XTK__ASYNC_DIRTY, XTK_HVCTL_OP_LOGDIRTY_SYNC,
                      logdirty_flags(flags), NULL, 0, fd);
}

static int kvm_logdirty_finish(struct xtk_domain *dom, uint64_t *bitmap,
                               uint64_t nr_bits, uint64_t *dirty_count)
{
    struct kvm_dom *kd = kd_of(dom);
    struct kvm_async a;

    if (!bitmap || nr_bits < kd->hello.nr_pages)
        return xtk__fail(EINVAL);
    if (async_take(dom, XTK__ASYNC_DIRTY, &a) < 0)
        return -1;
    logdirty_copy(kd, bitmap, nr_bits, &a.r.logdirty.dirty);
    if (dirty_count)
        *dirty_count = a.r.logdirty.dirty;
    return 0;
}

/* ---- suspend --------------------------------------------------------- */

static void drain(int fd)
{
    uint64_t v;

    while (read(fd, &v, sizeof(v)) == sizeof(v))
        ;
}

static void kvm_suspend_teardown(struct xtk_domain *dom);

/* The store method's fd: readable for the guest's notification and for
 * the store's answer to the request's write (*fd: the guest's, then the
 * two's). */
static int store_watch(struct kvm_dom *kd, int *fd)
{
    kd->store_ep = xtk__xs_pair_fd(*fd, kd->store_fd);
    if (kd->store_ep < 0)
        return -1;
    kd->store_owed = 0;
    *fd = kd->store_ep;
    return 0;
}

/* The store's answer to the request's write, if it is in (wait: waited
 * for): 0 (none owed, not in yet, or a success), -1 (the store refused
 * it, or went away: errno). */
static int store_answer(struct xtk_domain *dom, int wait)
{
    struct kvm_dom *kd = kd_of(dom);

    if (xtk__xs_reply_owed(kd->store_fd, &kd->store_owed, XTK_XS_WRITE, wait,
                           5000) < 0) {
        XTK_PERROR(dom->ctx, "domain %u: cannot write its control/shutdown",
                   dom->domid);
        return -1;
    }
    return 0;
}

static int kvm_suspend_setup(struct xtk_domain *dom,
                             enum xtk__suspend_method method, int *fd)
{
    struct kvm_dom *kd = kd_of(dom);

    if (kd->suspend_set)
        return xtk__fail(EBUSY);
    switch (method) {
    case XTK__SUSPEND_STORE: {
        char path[64], name[8];

        kd->store_fd = xtk__xs_connect(xtk__xs_path(NULL));
        snprintf(path, sizeof(path), "/local/domain/%u/name", dom->domid);
        if (kd->store_fd < 0 ||
            xtk__xs_request(kd->store_fd, XTK_XS_READ, path, strlen(path) + 1,
                            NULL, 0, name, sizeof(name) - 1, 5000) < 0) {
            XTK_PERROR(dom->ctx, "domain %u: not in the store", dom->domid);
            if (kd->store_fd >= 0)
                close(kd->store_fd);
            kd->store_fd = -1;
            return xtk__fail(ENOTSUP);
        }
        /* The notification is the suspend channel's, as for EVTCHN. */
        __attribute__((fallthrough));
    }
    case XTK__SUSPEND_EVTCHN:
        if (kd->from_guest[XTK_PORT_SUSPEND] < 0) {
            if (kd->store_fd >= 0) {
                close(kd->store_fd);
                kd->store_fd = -1;
            }
            return xtk__fail(ENOTSUP);
        }
        drain(kd->from_guest[XTK_PORT_SUSPEND]);
        *fd = kd->from_guest[XTK_PORT_SUSPEND];
        if (method == XTK__SUSPEND_STORE && store_watch(kd, fd) < 0) {
            close(kd->store_fd);
            kd->store_fd = -1;
            return -1;
        }
        break;
    case XTK__SUSPEND_PAUSE:
        kd->pause_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (kd->pause_evfd < 0)
            return -1;
        *fd = kd->pause_evfd;
        break;
    case XTK__SUSPEND_XL:
        XTK_ERROR(dom->ctx,
                  "domain %u: the xl suspend method is Xen's (its "
                  "@releaseDomain): use evtchn, store or pause",
                  dom->domid);
        return xtk__fail(ENOTSUP);
    default:
        return xtk__fail(EINVAL);
    }
    /* If we die before suspend_teardown, xtk-hv resumes the guest. */
    if (kcall(dom, XTK_HVCTL_OP_SUSPEND_GUARD, XTK_HVCTL_SUSPEND_GUARD_ON, NULL,
              0, NULL, 0, NULL) < 0) {
        int e = errno;
        kd->suspend_set = 1;
        kvm_suspend_teardown(dom);
        return xtk__fail(e);
    }
    kd->method = method;
    kd->suspend_set = 1;
    return 0;
}

/* The built-in guest still says it sits suspended (its status page). */
static int still_suspended(const struct kvm_dom *kd)
{
    return kd->status && kd->status->magic == XTK_GUEST_STATUS_MAGIC &&
           __atomic_load_n(&kd->status->state, __ATOMIC_ACQUIRE) ==
               XTK_GUEST_SUSPENDED;
}

static int kvm_suspend_busy(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);

    return kd->suspend_set && kd->method == XTK__SUSPEND_EVTCHN &&
           still_suspended(kd);
}

/*
 * The suspend port carries both "suspend" and, to a guest sitting
 * suspended, "resume"; two notifications the guest has not taken yet are
 * one interrupt.  So a request right after a resume (a checkpoint loop)
 * waits, at most 1 s, until the guest has left its suspended state, or it
 * would be taken for the resume and lost.
 */
static void wait_not_suspended(struct kvm_dom *kd)
{
    struct timespec ts = {0, 20000};

    for (int i = 0; i < 20000 && still_suspended(kd); i++)
        nanosleep(&ts, NULL);
}

/*
 * A built-in guest that allows it (XTK_GUEST_F_APS_STOPPABLE) has its
 * other vCPUs stopped by xtk-hv as the request goes out: vCPU 0 then has
 * a host CPU to take it, instead of waiting behind its siblings'
 * threads (issue 15: an 8-vCPU guest spinning on 2 cores).  Best effort:
 * without it the guest still suspends, only later.
 *
 * The hold is sent ahead (KVM_ASYNC_HOLD: the caller's loop does not
 * wait for xtk-hv; kvm.c takes the answer itself when it next reads the
 * connection, hold_answered), right after the caller has sent the
 * request.  xtk-hv takes the hold before anything this connection sends
 * later (the STOP).  The request used to go with the hold
 * (XTK_HVCTL_PAUSE_NOTIFY: xtk-hv notified the port), which put xtk-hv's
 * control thread's wake-up between the toolstack and vCPU 0: sent from
 * here, an idle 2-vCPU guest's request reaches its acknowledgement
 * 303 -> 246 us at p50 (docs/benchmarks.md).
 */
static void hold_aps(struct xtk_domain *dom, struct kvm_dom *kd)
{
    const struct xtk_guest_status *s = kd->status;

    if (!s || s->magic != XTK_GUEST_STATUS_MAGIC || s->nr_vcpus_up < 2 ||
        !(__atomic_load_n(&s->features, __ATOMIC_ACQUIRE) &
          XTK_GUEST_F_APS_STOPPABLE))
        return;
    /* (one still unanswered: EBUSY, then the round trip) */
    if (async_send(dom, KVM_ASYNC_HOLD, XTK_HVCTL_OP_PAUSE, XTK_HVCTL_PAUSE_APS,
                   NULL, 0, NULL) == 0 ||
        kcall(dom, XTK_HVCTL_OP_PAUSE, XTK_HVCTL_PAUSE_APS, NULL, 0, NULL, 0,
              NULL) == 0)
        kd->aps_held = 1;
    else
        XTK_DEBUG(dom->ctx, "domain %u: its other vCPUs not held: %s",
                  dom->domid, strerror(errno));
}

/* The hold sent ahead is answered: refused, the other vCPUs run on (the
 * request is out all the same). */
static void hold_answered(struct xtk_domain *dom, int err)
{
    struct kvm_dom *kd = kd_of(dom);

    if (!err)
        return;
    XTK_DEBUG(dom->ctx, "domain %u: its other vCPUs not held: %s", dom->domid,
              strerror(err));
    kd->aps_held = 0;
}

static int kvm_suspend_request(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);
    uint64_t one = 1;
    char path[64];

    if (!kd->suspend_set)
        return xtk__fail(EINVAL);
    switch (kd->method) {
    case XTK__SUSPEND_EVTCHN:
        wait_not_suspended(kd);
        /* The request, then the hold (xtk-hv may make vCPU 0 real-time
         * if it is late to take it: it must have it by then). */
        if (write(kd->to_guest[XTK_PORT_SUSPEND], &one, sizeof(one)) < 0)
            return -1;
        hold_aps(dom, kd);
        kd->suspend_pending = 1;
        return 0;
    case XTK__SUSPEND_STORE:
        snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
                 dom->domid);
        /* (an answer still owed: a request given up on before it) */
        if (store_answer(dom, 1) < 0)
            return -1;
        hold_aps(dom, kd);
        if (xtk__xs_write_send(kd->store_fd, path, "suspend") < 0) {
            XTK_PERROR(dom->ctx, "domain %u: cannot write %s", dom->domid,
                       path);
            return -1;
        }
        kd->store_owed = 1;
        kd->suspend_pending = 1;
        return 0;
    case XTK__SUSPEND_PAUSE:
        /* The STOP is the check's (sent ahead there): the request is
         * no round trip on the caller's loop. */
        return write(kd->pause_evfd, &one, sizeof(one)) < 0 ? -1 : 0;
    case XTK__SUSPEND_XL: /* refused by setup */
        break;
    }
    return xtk__fail(EINVAL);
}

/*
 * The notification read: 1 if the domain has suspended (PAUSE: it is to
 * be stopped; otherwise the request is settled) and the STOP is the
 * caller's, 0 if not (a stray event), -1.
 */
static int suspend_seen(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);
    uint64_t v;
    int fd = kd->method == XTK__SUSPEND_PAUSE
                 ? kd->pause_evfd
                 : kd->from_guest[XTK_PORT_SUSPEND];

    if (!kd->suspend_set)
        return xtk__fail(EINVAL);
    /* The store's answer first: a refused write fails the suspend now,
     * not when the guest is given up on. */
    if (kd->method == XTK__SUSPEND_STORE && store_answer(dom, 0) < 0)
        return -1;
    if (read(fd, &v, sizeof(v)) < 0)
        return errno == EAGAIN ? 0 : -1;
    if (kd->method == XTK__SUSPEND_PAUSE)
        return 1;
    /* A built-in guest says in its status page that it sits suspended; a
     * guest without one is taken at its word. */
    if (kd->status->magic == XTK_GUEST_STATUS_MAGIC &&
        __atomic_load_n(&kd->status->state, __ATOMIC_ACQUIRE) !=
            XTK_GUEST_SUSPENDED)
        return 0;
    kd->suspend_pending = 0;
    kd->aps_held = 0; /* STOP parks them all; the resume frees them all */
    return 1;
}

static int kvm_suspend_check(struct xtk_domain *dom)
{
    int r = suspend_seen(dom);

    if (r != 1)
        return r;
    return kvm_stop(dom) < 0 ? -1 : 1;
}

/* The same, the STOP sent ahead (2). */
static int kvm_suspend_check_ahead(struct xtk_domain *dom, int *fd)
{
    struct kvm_dom *kd = kd_of(dom);
    int r = suspend_seen(dom);

    if (r != 1)
        return r;
    drop_stop_state(kd);
    if (async_send(dom, XTK__ASYNC_STOP, XTK_HVCTL_OP_STOP, 0, NULL, 0, fd) < 0)
        return -1;
    return 2;
}

static int kvm_stop_finish(struct xtk_domain *dom)
{
    struct kvm_async a;

    return async_take(dom, XTK__ASYNC_STOP, &a);
}

static void kvm_suspend_teardown(struct xtk_domain *dom)
{
    struct kvm_dom *kd = kd_of(dom);

    /* Fails harmlessly on a domain destroyed meanwhile.  A request the
     * guest has not acted on yet (a save that failed just after asking)
     * keeps the guard: xtk-hv resumes the guest once it has suspended,
     * when this handle closes, instead of leaving it suspended. */
    if (kd->suspend_set && !kd->suspend_pending)
        kcall(dom, XTK_HVCTL_OP_SUSPEND_GUARD, 0, NULL, 0, NULL, 0, NULL);
    else if (kd->suspend_set)
        XTK_DEBUG(dom->ctx,
                  "domain %u: a suspend request is still in flight: "
                  "xtk-hv resumes the guest when it suspends",
                  dom->domid);
    /* A request given up on: the other vCPUs run again (the guest then
     * suspends without them held, and its guard resumes it). */
    if (kd->aps_held)
        kcall(dom, XTK_HVCTL_OP_UNPAUSE, XTK_HVCTL_UNPAUSE_APS, NULL, 0, NULL,
              0, NULL);
    kd->aps_held = 0;
    kd->suspend_pending = 0;
    if (kd->pause_evfd >= 0)
        close(kd->pause_evfd);
    if (kd->store_fd >= 0)
        close(kd->store_fd); /* (an answer owed goes with it) */
    if (kd->store_ep >= 0)
        close(kd->store_ep);
    kd->pause_evfd = kd->store_fd = kd->store_ep = -1;
    kd->store_owed = 0;
    kd->suspend_set = 0;
    drop_stop_state(kd);
}

/* ---- state ------------------------------------------------------------ */

static int kvm_get_state(struct xtk_domain *dom, void **buf, size_t *len)
{
    struct kvm_dom *kd = kd_of(dom);
    size_t got = 0;
    void *p;

    if (kd->stop_state) {
        /* Taken by the STOP that stopped the domain. */
        *buf = kd->stop_state;
        *len = kd->stop_len;
        kd->stop_state = NULL;
        kd->stop_len = 0;
        return 0;
    }
    if (kcall(dom, XTK_HVCTL_OP_GET_STATE, 0, NULL, 0, NULL, XTK_HVCTL_MSG_MAX,
              &got) < 0)
        return -1;
    p = malloc(got ? got : 1);
    if (!p)
        return -1;
    memcpy(p, kd->rx + sizeof(struct xtk_hvctl_hdr), got);
    *buf = p;
    *len = got;
    return 0;
}

static int kvm_set_state(struct xtk_domain *dom, const void *buf, size_t len)
{
    if (!buf && len)
        return xtk__fail(EINVAL);
    drop_stop_state(kd_of(dom));
    return kcall(dom, XTK_HVCTL_OP_SET_STATE, 0, buf, len, NULL, 0, NULL);
}

static int kvm_set_state_start(struct xtk_domain *dom, const void *buf,
                               size_t len)
{
    struct kvm_dom *kd = kd_of(dom);

    if (!buf && len)
        return xtk__fail(EINVAL);
    drop_stop_state(kd);
    return async_send(dom, XTK__ASYNC_STATE, XTK_HVCTL_OP_SET_STATE, 0, buf,
                      len, NULL);
}

/* (Nothing handed over: 0, as before any load.) */
static int kvm_set_state_finish(struct xtk_domain *dom)
{
    struct kvm_async a;

    if (!async_find(kd_of(dom), XTK__ASYNC_STATE))
        return 0;
    return async_take(dom, XTK__ASYNC_STATE, &a);
}

/* Before a RESUME: only a guest that sits suspended is resumed by it; one
 * that has yet to act on its request stays pending (see
 * suspend_teardown). */
static void resume_prepare(struct xtk_domain *dom, struct kvm_dom *kd)
{
    if (kd->status->magic != XTK_GUEST_STATUS_MAGIC ||
        __atomic_load_n(&kd->status->state, __ATOMIC_ACQUIRE) ==
            XTK_GUEST_SUSPENDED)
        kd->suspend_pending = 0;
    drop_stop_state(kd);
    dom->resumed_ns = 0;
}

static int kvm_resume(struct xtk_domain *dom)
{
    struct xtk_hvctl_resume o;
    struct kvm_dom *kd = kd_of(dom);

    resume_prepare(dom, kd);
    if (kcall_fixed(dom, XTK_HVCTL_OP_RESUME, 0, &o, sizeof(o)) < 0)
        return -1;
    /* xtk-hv's CLOCK_MONOTONIC is ours: one host. */
    dom->resumed_ns = o.running_ns;
    return 0;
}

/* RESUME sent ahead (xtk-hv sends nothing on the socket unasked). */
static int kvm_resume_start(struct xtk_domain *dom, int *fd)
{
    struct kvm_dom *kd = kd_of(dom);

    if (async_find(kd, XTK__ASYNC_RESUME))
        return xtk__fail(EBUSY);
    resume_prepare(dom, kd);
    return async_send(dom, XTK__ASYNC_RESUME, XTK_HVCTL_OP_RESUME, 0, NULL, 0,
                      fd);
}

static int kvm_resume_finish(struct xtk_domain *dom)
{
    struct kvm_async a;

    if (!async_find(kd_of(dom), XTK__ASYNC_RESUME))
        return 0;
    return async_take(dom, XTK__ASYNC_RESUME, &a);
}

/* ---- event channels ---------------------------------------------------- */

static int kvm_evtchn_bind(struct xtk_domain *dom, uint32_t port, int *fd)
{
    struct kvm_dom *kd = kd_of(dom);

    if (port > XTK_PORT_MAX || kd->from_guest[port] < 0)
        return xtk__fail(ENOENT);
    *fd = kd->from_guest[port];
    return 0;
}

static int kvm_evtchn_notify(struct xtk_domain *dom, uint32_t port)
{
    struct kvm_dom *kd = kd_of(dom);
    uint64_t one = 1;

    if (port > XTK_PORT_MAX || kd->to_guest[port] < 0)
        return xtk__fail(ENOENT);
    return write(kd->to_guest[port], &one, sizeof(one)) < 0 ? -1 : 0;
}

static int kvm_evtchn_ack(struct xtk_domain *dom, uint32_t port)
{
    struct kvm_dom *kd = kd_of(dom);
    uint64_t v;

    if (port > XTK_PORT_MAX || kd->from_guest[port] < 0)
        return xtk__fail(ENOENT);
    if (read(kd->from_guest[port], &v, sizeof(v)) < 0)
        return errno == EAGAIN ? 0 : -1;
    return v > INT_MAX ? INT_MAX : (int)v;
}

static int kvm_vcpus(struct xtk_domain *dom, struct xtk_vcpu_stats *out,
                     unsigned int max, unsigned int *nr)
{
    struct xtk_hvctl_vcpu v[XTK_GUEST_MAX_VCPUS];
    size_t got = 0;
    unsigned int n;

    if (kcall(dom, XTK_HVCTL_OP_VCPUS, 0, NULL, 0, v, sizeof(v), &got) < 0)
        return -1;
    if (got % sizeof(v[0]))
        return xtk__fail(EPROTO);
    n = (unsigned int)(got / sizeof(v[0]));
    for (unsigned int i = 0; i < n && i < max; i++) {
        struct xtk_vcpu_stats *o = &out[i];

        o->vcpu = v[i].index;
        o->flags = XTK_VCPU_WAIT;
        o->flags |= XTK_VCPU_YIELDS;
        if (v[i].flags & XTK_HVCTL_VCPU_PUBLISHED)
            o->flags |= XTK_VCPU_PUBLISHED;
        o->cpu_ns = v[i].run_ns;
        o->wait_ns = v[i].wait_ns;
        o->slices = v[i].slices;
        o->preemptions = v[i].switches_preempted;
        o->blocks = v[i].switches_voluntary;
        /* xtk-hv's (the guest's doorbell) and KVM's (a pause-loop exit,
         * KVM_HC_SCHED_YIELD): both give the vCPU's time to another. */
        o->yields_attempted = v[i].yields + v[i].kvm_yields_attempted;
        o->yields_successful = v[i].yields_given + v[i].kvm_yields_successful;
        o->boosts = v[i].boosts;
    }
    *nr = n;
    return 0;
}

const struct xtk__backend_ops xtk__kvm_backend = {
    .name = "kvm",
    .list = kvm_list,
    .lookup = kvm_lookup,
    .open = kvm_open,
    .create = kvm_create,
    .close = kvm_close,
    .info = kvm_info,
    .vcpus = kvm_vcpus,
    .pause = kvm_pause,
    .unpause = kvm_unpause,
    .destroy = kvm_destroy,
    .rename = kvm_rename,
    .console_read = kvm_console_read,
    .map_all = kvm_map_all,
    .map_batch = kvm_map_batch,
    .unmap_batch = kvm_unmap_batch,
    .populated = kvm_populated,
    .write_frames = kvm_write_frames,
    .populate = kvm_populate,
    .lazy_begin = kvm_lazy_begin,
    .lazy_end = kvm_lazy_end,
    .discard = kvm_discard,
    .logdirty_enable = kvm_logdirty_enable,
    .logdirty_read = kvm_logdirty_read,
    .logdirty_disable = kvm_logdirty_disable,
    .suspend_setup = kvm_suspend_setup,
    .suspend_request = kvm_suspend_request,
    .suspend_busy = kvm_suspend_busy,
    .suspend_check = kvm_suspend_check,
    .suspend_teardown = kvm_suspend_teardown,
    .get_state = kvm_get_state,
    .set_state = kvm_set_state,
    .set_state_start = kvm_set_state_start,
    .set_state_finish = kvm_set_state_finish,
    .resume = kvm_resume,
    .resume_start = kvm_resume_start,
    .resume_finish = kvm_resume_finish,
    .async_ready = kvm_async_ready,
    .suspend_check_ahead = kvm_suspend_check_ahead,
    .stop_finish = kvm_stop_finish,
    .logdirty_start = kvm_logdirty_start,
    .logdirty_finish = kvm_logdirty_finish,
    .info_start = kvm_info_start,
    .info_finish = kvm_info_finish,
    .output_release_start = kvm_output_release_start,
    .output_release_finish = kvm_output_release_finish,
    .net_sink = kvm_net_sink,
    .output_hold = kvm_output_hold,
    .output_release = kvm_output_release,
    .evtchn_bind = kvm_evtchn_bind,
    .evtchn_notify = kvm_evtchn_notify,
    .evtchn_ack = kvm_evtchn_ack,
};

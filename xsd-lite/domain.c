/*
 * domain.c - guest domains: INTRODUCE, RELEASE, and the death of KVM
 * domains.
 *
 * KVM introduction (the contract with xtk-hv, see xsd-lite(8)): a client
 * of the privileged socket sends INTRODUCE "<domid>\0<ring-gfn>\0<port>\0"
 * with three descriptors attached (SCM_RIGHTS) to the sendmsg() carrying
 * the header's first byte: [0] a memfd of the guest's RAM, whose page at
 * byte ring-gfn * 4096 is the ring, [1] an eventfd xsd-lite writes to
 * notify the guest (an irqfd), [2] an eventfd the guest's notifications
 * arrive on (an ioeventfd).  The port is only recorded.  There is no
 * hypervisor to report a KVM domain's death, so when the introducing
 * connection closes, its domains are treated as dead: their rings are
 * dropped, /local/domain/<domid> is removed and @releaseDomain fires.
 *
 * An INTRODUCE without descriptors is Xen's (xen.c, or ENOSYS).
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-domain"

#define XSD_PAGE 4096u

struct kvm_ring {
    struct xsd_ring ring;
    struct event *ev;
    int notify_fd; /* we write: the guest's interrupt */
    int kick_fd;   /* we read: the guest's notification */
};

struct xsd_dom *xsd_domain_find(struct xsd *x, uint32_t domid)
{
    struct xsd_dom *d = xsd_dom_get(x, domid, false);

    return d && d->conn ? d : NULL;
}

bool xsd_domain_exists(struct xsd *x, uint32_t domid)
{
    return domid == 0 || xsd_domain_find(x, domid) ||
           xsd_xen_domain_exists(x, domid);
}

static void kvm_notify(struct xsd_ring *ring)
{
    struct kvm_ring *k = (struct kvm_ring *)ring;
    uint64_t one = 1;

    /* EAGAIN: the counter is saturated, the guest will see it anyway. */
    if (write(k->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        XTK_DEBUG(ring->c ? ring->c->x->ctx : NULL, "notifying the guest: %s",
                  strerror(errno));
}

static void kvm_destroy(struct xsd_ring *ring)
{
    struct kvm_ring *k = (struct kvm_ring *)ring;

    if (k->ev)
        event_free(k->ev);
    munmap(ring->intf, XSD_PAGE);
    close(k->notify_fd);
    close(k->kick_fd);
    free(k);
}

static const struct xsd_ring_ops kvm_ring_ops = {
    .notify = kvm_notify,
    .destroy = kvm_destroy,
};

static void kvm_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kvm_ring *k = arg;
    struct xsd *x = k->ring.c->x;
    uint64_t v;

    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        XTK_DEBUG(x->ctx, "reading the guest's notification: %s",
                  strerror(errno));
    xsd_ring_kick(k->ring.c);
    xsd_after_io(x);
}

static bool is_eventfd(int fd)
{
    char link[64], target[64];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return false;
    target[n] = '\0';
    return !strcmp(target, "anon_inode:[eventfd]");
}

/*
 * Checks the three descriptors and maps the ring page.  The memfd must be
 * a shared-memory file (memfd or tmpfs: F_GET_SEALS works) opened
 * read-write and long enough; the others must be eventfds, which are made
 * non-blocking.  Returns the ring, or NULL with errno set.
 */
static struct kvm_ring *kvm_map(struct xsd *x, uint32_t domid, uint64_t gfn,
                                const int *fds)
{
    struct kvm_ring *k;
    struct stat st;
    void *page;
    int seals, fl;

    if (fstat(fds[0], &st) || !S_ISREG(st.st_mode) ||
        (seals = fcntl(fds[0], F_GET_SEALS)) < 0) {
        XTK_WARN(x->ctx, "domain %u: descriptor 0 is not a memfd", domid);
        return xtk__fail_null(EINVAL);
    }
    if (gfn >= (uint64_t)INT64_MAX / XSD_PAGE ||
        (uint64_t)st.st_size < (gfn + 1) * XSD_PAGE) {
        XTK_WARN(x->ctx, "domain %u: ring frame %" PRIu64 " beyond the memfd",
                 domid, gfn);
        return xtk__fail_null(EINVAL);
    }
    fl = fcntl(fds[0], F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDWR) {
        XTK_WARN(x->ctx, "domain %u: the memfd is not open read-write", domid);
        return xtk__fail_null(EACCES);
    }
    for (int i = 1; i < 3; i++) {
        if (!is_eventfd(fds[i]) || (fl = fcntl(fds[i], F_GETFL)) < 0 ||
            fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0) {
            XTK_WARN(x->ctx, "domain %u: descriptor %d is not an eventfd",
                     domid, i);
            return xtk__fail_null(EINVAL);
        }
    }
    if (!(seals & F_SEAL_SHRINK))
        XTK_DEBUG(x->ctx,
                  "domain %u: the memfd is not sealed against "
                  "shrinking; xsd-lite trusts its introducer",
                  domid);
    k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    page = mmap(NULL, XSD_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0],
                (off_t)(gfn * XSD_PAGE));
    if (page == MAP_FAILED) {
        XTK_WARN(x->ctx, "domain %u: mapping the ring: %s", domid,
                 strerror(errno));
        free(k);
        return xtk__fail_null(EINVAL);
    }
    k->ring.intf = page;
    k->ring.ops = &kvm_ring_ops;
    k->notify_fd = fds[1];
    k->kick_fd = fds[2];
    return k;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/*
 * INTRODUCE.  fds (nfds of them) are owned by this function from now on:
 * kept or closed.  Returns 0 or an errno.
 */
int xsd_domain_introduce(struct xsd_req *r, uint32_t domid, uint64_t gfn,
                         uint32_t port, int *fds, int nfds)
{
    struct xsd *x = r->c->x;
    struct xsd_ring *ring = NULL;
    struct kvm_ring *k = NULL;
    struct xsd_conn *c;
    struct xsd_dom *d;
    int err;

    if (domid == 0 || domid >= XSD_DOMID_FIRST_RESERVED ||
        (nfds && nfds != 3) || (!nfds && port == 0)) {
        close_all(fds, nfds);
        return EINVAL;
    }
    if (xsd_domain_find(x, domid)) {
        close_all(fds, nfds);
        return EEXIST;
    }
    if (nfds) {
        k = kvm_map(x, domid, gfn, fds);
        err = errno;
        close(fds[0]);
        if (!k) {
            close_all(fds + 1, 2);
            return err;
        }
        ring = &k->ring;
    } else if ((err = xsd_xen_introduce(x, domid, port, &ring))) {
        return err;
    }
    c = xsd_ring_conn_new(x, domid, ring, false);
    if (!c)
        return ENOMEM;
    if (k && x->base) {
        k->ev = event_new(x->base, k->kick_fd, EV_READ | EV_PERSIST,
                          kvm_kick_cb, k);
        if (!k->ev || event_add(k->ev, NULL)) {
            xsd_conn_kill(c, "no memory");
            return ENOMEM;
        }
    }
    d = c->dom;
    d->conn = c;
    d->introducer = k ? r->c : NULL;
    d->kind = k ? "kvm" : "xen";
    d->gfn = gfn;
    d->port = port;
    d->shutdown = false;
    d->has_target = false;
    XTK_INFO(x->ctx, "domain %u introduced (%s, frame %" PRIu64 ", port %u)",
             domid, d->kind, gfn, port);
    ring->ops->notify(ring);
    xsd_fire_special(x, "@introduceDomain");
    return 0;
}

/*
 * Drops domid's ring connection and fires @releaseDomain.  LOST (KVM: its
 * introducer is gone) also removes /local/domain/<domid>; a Xen domain's
 * home is the toolstack's to remove, as with xenstored.  Its nodes go to
 * dom0.  Returns 0, or ENOENT when the domain was not introduced.
 */
int xsd_domain_release(struct xsd *x, uint32_t domid, enum xsd_dom_end how)
{
    static const char *const what[] = {
        [XSD_DOM_RELEASED] = "released",
        [XSD_DOM_DIED] = "died",
        [XSD_DOM_LOST] = "lost (its introducer went away)",
    };
    struct xsd_dom *d = xsd_domain_find(x, domid);
    struct xsd_conn *c;
    struct xsd_node *home;
    char path[32];

    if (!d)
        return ENOENT;
    c = d->conn;
    d->conn = NULL;
    d->introducer = NULL;
    XTK_INFO(x->ctx, "domain %u %s", domid, what[how]);
    /* Its own watches must not hear about its removal. */
    xsd_watch_del_all(c);
    xsd_conn_kill(c,
                  how == XSD_DOM_RELEASED ? "domain released" : "domain died");
    if (how == XSD_DOM_LOST) {
        snprintf(path, sizeof(path), "/local/domain/%u", domid);
        home = xsd_find(x, path, strlen(path));
        if (home)
            xsd_remove_fire(x, home);
    }
    xsd_store_disown(x, domid);
    xsd_fire_special(x, "@releaseDomain");
    return 0;
}

/* See xsd.h. */
void xsd_domain_introducer_gone(struct xsd_conn *c)
{
    struct xsd *x = c->x;
    bool again = true;

    while (again) {
        again = false;
        for (uint32_t i = 0; i < x->ndbuckets && !again; i++) {
            for (struct xsd_dom *d = x->dbuckets[i]; d; d = d->hnext) {
                if (d->introducer == c && d->conn) {
                    xsd_domain_release(x, d->domid, XSD_DOM_LOST);
                    again = true;
                    break;
                }
            }
        }
    }
}

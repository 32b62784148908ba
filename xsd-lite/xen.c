/*
 * xen.c - guest rings on Xen: the store page granted by the guest
 * (GNTTAB_RESERVED_XENSTORE) mapped with libxengnttab, the event channel
 * bound with libxenevtchn.  Built where the Xen libraries are; it needs a
 * hypervisor (/dev/xen/gntdev, /dev/xen/evtchn) to do anything, and
 * without one an INTRODUCE fails with ENOSYS.
 *
 * Domain death is watched as xenstored does: Xen raises VIRQ_DOM_EXC in
 * dom0 when a domain shuts down, crashes or starts dying, and xsd-lite
 * then asks the hypervisor (xc_domain_getinfolist) about every Xen domain
 * it serves.  A domain newly shut down (or crashed) fires @releaseDomain
 * once, so that the toolstack (xl's domain-death watch, libxl's suspend)
 * looks; a dying or vanished one is released: its page unmapped (else
 * Xen cannot finish destroying it), its channel unbound, @releaseDomain
 * fired.  Its /local/domain/<domid> is the toolstack's to remove.
 *
 * dom0's own kernel talks to the store over a ring too (its xenbus: the
 * backends blkback and netback find their devices through it): a page
 * the kernel set aside, mapped through xsd_kva, and an event channel the
 * kernel left unbound for dom0 itself, named in xsd_port.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/event.h>
#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xen/grant_table.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-xen"

struct xen_state {
    xenevtchn_handle *xce;
    xengnttab_handle *xgt;
    xc_interface *xch; /* NULL: deaths are not noticed */
    struct event *ev;
    evtchn_port_t virq; /* VIRQ_DOM_EXC's port, when have_virq */
    bool have_virq;
};

struct xen_ring {
    struct xsd_ring ring;
    struct xen_state *xs;
    evtchn_port_t local;
    bool kva; /* dom0's page, mmap()ed from xsd_kva: not a grant */
};

static void xen_notify(struct xsd_ring *ring)
{
    struct xen_ring *xr = (struct xen_ring *)ring;

    xenevtchn_notify(xr->xs->xce, xr->local);
}

static void xen_destroy(struct xsd_ring *ring)
{
    struct xen_ring *xr = (struct xen_ring *)ring;

    xenevtchn_unbind(xr->xs->xce, xr->local);
    if (xr->kva)
        munmap(ring->intf, XC_PAGE_SIZE);
    else
        xengnttab_unmap(xr->xs->xgt, ring->intf, 1);
    free(xr);
}

static const struct xsd_ring_ops xen_ring_ops = {
    .notify = xen_notify,
    .destroy = xen_destroy,
};

enum dom_state { DOM_RUNNING, DOM_SHUTDOWN, DOM_DEAD, DOM_UNKNOWN };

/* What the hypervisor says of domid: dying and vanished are both DEAD. */
static enum dom_state dom_state(struct xen_state *xs, uint32_t domid)
{
    xc_domaininfo_t info;
    int n = xc_domain_getinfolist(xs->xch, domid, 1, &info);

    if (n < 0)
        return DOM_UNKNOWN;
    if (n == 0 || info.domain != domid || (info.flags & XEN_DOMINF_dying))
        return DOM_DEAD;
    /* XEN_DOMINF_shutdown covers a crash too (its reason says which). */
    return info.flags & XEN_DOMINF_shutdown ? DOM_SHUTDOWN : DOM_RUNNING;
}

static bool is_xen(const struct xsd_dom *d)
{
    return d->conn && d->conn->ring && d->conn->ring->ops == &xen_ring_ops;
}

/*
 * VIRQ_DOM_EXC: xenstored's check_domains().  A release may free domain
 * entries, so the walk starts over after each.  A shutdown fires
 * @releaseDomain once per domain (RESUME re-arms it); a release fires its
 * own.
 */
static void check_domains(struct xsd *x)
{
    struct xen_state *xs = x->xen;
    bool again = true, notify = false;

    while (again) {
        again = false;
        for (uint32_t i = 0; i < x->ndbuckets && !again; i++) {
            for (struct xsd_dom *d = x->dbuckets[i]; d; d = d->hnext) {
                if (!is_xen(d))
                    continue;
                switch (dom_state(xs, d->domid)) {
                case DOM_DEAD:
                    xsd_domain_release(x, d->domid, XSD_DOM_DIED);
                    notify = false;
                    again = true;
                    break;
                case DOM_SHUTDOWN:
                    if (!d->shutdown) {
                        XTK_INFO(x->ctx, "domain %u shut down", d->domid);
                        d->shutdown = true;
                        notify = true;
                    }
                    continue;
                case DOM_UNKNOWN:
                    XTK_WARN(x->ctx, "domain %u: asking Xen about it: %s",
                             d->domid, strerror(errno));
                    continue;
                case DOM_RUNNING:
                    continue;
                }
                break;
            }
        }
    }
    if (notify)
        xsd_fire_special(x, "@releaseDomain");
}

/* An event channel fired: a domain's exception, or a ring to serve. */
static void evtchn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xsd *x = arg;
    struct xen_state *xs = x->xen;
    xenevtchn_port_or_error_t port = xenevtchn_pending(xs->xce);

    if (port < 0)
        return;
    xenevtchn_unmask(xs->xce, (evtchn_port_t)port);
    if (xs->have_virq && (evtchn_port_t)port == xs->virq) {
        check_domains(x);
        xsd_after_io(x);
        return;
    }
    for (struct xsd_conn *c = x->conns; c; c = c->next) {
        if (c->ring && c->ring->ops == &xen_ring_ops &&
            ((struct xen_ring *)c->ring)->local == (evtchn_port_t)port) {
            xsd_ring_kick(c);
            break;
        }
    }
    xsd_after_io(x);
}

/*
 * Binds VIRQ_DOM_EXC (only one binder per domain: EEXIST while another
 * store daemon runs) and opens libxenctrl.  Without either, domains still
 * work, but only a RELEASE ends them.
 */
static void xen_watch_deaths(struct xsd *x, struct xen_state *xs)
{
    xenevtchn_port_or_error_t virq;

    xs->xch = xc_interface_open(NULL, NULL, 0);
    if (!xs->xch) {
        XTK_WARN(x->ctx,
                 "libxenctrl: %s; domain deaths will not be noticed (the "
                 "toolstack must RELEASE)",
                 strerror(errno));
        return;
    }
    virq = xenevtchn_bind_virq(xs->xce, VIRQ_DOM_EXC);
    if (virq < 0) {
        XTK_WARN(x->ctx,
                 "binding VIRQ_DOM_EXC: %s; domain deaths will not be "
                 "noticed (the toolstack must RELEASE)",
                 strerror(errno));
        xc_interface_close(xs->xch);
        xs->xch = NULL;
        return;
    }
    xs->virq = (evtchn_port_t)virq;
    xs->have_virq = true;
}

static struct xen_state *xen_open(struct xsd *x)
{
    struct xen_state *xs = calloc(1, sizeof(*xs));

    if (!xs)
        return NULL;
    xs->xce = xenevtchn_open(NULL, 0);
    xs->xgt = xs->xce ? xengnttab_open(NULL, 0) : NULL;
    if (!xs->xgt)
        goto err;
    if (x->base) {
        xs->ev = event_new(x->base, xenevtchn_fd(xs->xce), EV_READ | EV_PERSIST,
                           evtchn_cb, x);
        if (!xs->ev || event_add(xs->ev, NULL))
            goto err;
    }
    xen_watch_deaths(x, xs);
    return xs;

err:
    XTK_WARN(x->ctx, "Xen event channels or grant tables unavailable: %s",
             strerror(errno));
    if (xs->ev)
        event_free(xs->ev);
    if (xs->xgt)
        xengnttab_close(xs->xgt);
    if (xs->xce)
        xenevtchn_close(xs->xce);
    free(xs);
    return NULL;
}

/* The Xen state, opened at the first need; NULL without a hypervisor. */
static struct xen_state *xen_get(struct xsd *x)
{
    static bool unavailable; /* no hypervisor: it will not come later */

    if (!x->xen && !unavailable && !(x->xen = xen_open(x)))
        unavailable = true;
    return x->xen;
}

int xsd_xen_introduce(struct xsd *x, uint32_t domid, uint32_t port,
                      struct xsd_ring **ring)
{
    struct xen_state *xs = xen_get(x);
    struct xen_ring *xr;
    xenevtchn_port_or_error_t local;

    if (!xs)
        return ENOSYS;
    xr = calloc(1, sizeof(*xr));
    if (!xr)
        return ENOMEM;
    xr->ring.intf = xengnttab_map_grant_ref(
        xs->xgt, domid, GNTTAB_RESERVED_XENSTORE, PROT_READ | PROT_WRITE);
    if (!xr->ring.intf) {
        XTK_WARN(x->ctx, "domain %u: mapping its store page: %s", domid,
                 strerror(errno));
        free(xr);
        return EINVAL;
    }
    local = xenevtchn_bind_interdomain(xs->xce, domid, port);
    if (local < 0) {
        XTK_WARN(x->ctx, "domain %u: binding port %u: %s", domid, port,
                 strerror(errno));
        xengnttab_unmap(xs->xgt, xr->ring.intf, 1);
        free(xr);
        return EINVAL;
    }
    xr->local = (evtchn_port_t)local;
    xr->xs = xs;
    xr->ring.ops = &xen_ring_ops;
    *ring = &xr->ring;
    return 0;
}

int xsd_xen_dom0_ring(struct xsd *x)
{
    static const char *const kvas[] = {"/dev/xsd_kva", "/proc/xen/xsd_kva"};
    struct xen_state *xs;
    struct xen_ring *xr;
    struct xsd_conn *c;
    xenevtchn_port_or_error_t local;
    unsigned int port;
    void *page = MAP_FAILED;
    FILE *f;
    int fd = -1, n;

    for (size_t i = 0; fd < 0 && i < sizeof(kvas) / sizeof(kvas[0]); i++)
        fd = open(kvas[i], O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ENOENT;
    f = fopen("/proc/xen/xsd_port", "re");
    n = f ? fscanf(f, "%u", &port) : 0;
    if (f)
        fclose(f);
    if (n != 1) {
        close(fd);
        return ENOENT;
    }
    xs = xen_get(x);
    if (!xs) {
        close(fd);
        return ENOSYS;
    }
    page = mmap(NULL, XC_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (page == MAP_FAILED) {
        XTK_WARN(x->ctx, "dom0's ring: mapping its page: %s", strerror(errno));
        return errno;
    }
    /* Bound once: a second store daemon gets EBUSY here. */
    local = xenevtchn_bind_interdomain(xs->xce, 0, port);
    if (local < 0) {
        int e = errno;

        XTK_WARN(x->ctx,
                 "dom0's ring: binding its port %u: %s (another store "
                 "daemon serves dom0's kernel?)",
                 port, strerror(e));
        munmap(page, XC_PAGE_SIZE);
        return e;
    }
    xr = calloc(1, sizeof(*xr));
    if (!xr) {
        xenevtchn_unbind(xs->xce, (evtchn_port_t)local);
        munmap(page, XC_PAGE_SIZE);
        return ENOMEM;
    }
    xr->ring.intf = page;
    xr->ring.ops = &xen_ring_ops;
    xr->xs = xs;
    xr->local = (evtchn_port_t)local;
    xr->kva = true;
    c = xsd_ring_conn_new(x, 0, &xr->ring, true);
    if (!c)
        return ENOMEM;
    XTK_INFO(x->ctx, "dom0's kernel served on its ring (port %u)", port);
    /* The kernel probes its xenbus devices once the store tells it so. */
    xr->ring.ops->notify(&xr->ring);
    return 0;
}

/*
 * xenstored's get_domain_info(): a domain the hypervisor knows (dying or
 * not).  Where there is no hypervisor (no privcmd device) it is not even
 * asked, so that a KVM host's log stays quiet.
 */
bool xsd_xen_domain_exists(struct xsd *x, uint32_t domid)
{
    struct xen_state *xs;
    xc_domaininfo_t info;

    if (!x->xen && access("/dev/xen/privcmd", F_OK) < 0 &&
        access("/proc/xen/privcmd", F_OK) < 0)
        return false;
    xs = xen_get(x);
    if (!xs || !xs->xch)
        return false;
    return xc_domain_getinfolist(xs->xch, domid, 1, &info) == 1 &&
           info.domain == domid;
}

void xsd_xen_fini(struct xsd *x)
{
    struct xen_state *xs = x->xen;

    if (!xs)
        return;
    if (xs->ev)
        event_free(xs->ev);
    if (xs->xch)
        xc_interface_close(xs->xch);
    xengnttab_close(xs->xgt);
    xenevtchn_close(xs->xce); /* unbinds VIRQ_DOM_EXC too */
    free(xs);
    x->xen = NULL;
}

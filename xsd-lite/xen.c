/*
 * xen.c - guest rings on Xen: the store page granted by the guest
 * (GNTTAB_RESERVED_XENSTORE) mapped with libxengnttab, the event channel
 * bound with libxenevtchn.  Built where the Xen libraries are; it needs a
 * hypervisor (/dev/xen/gntdev, /dev/xen/evtchn) to do anything, and
 * without one an INTRODUCE fails with ENOSYS.
 *
 * Domain death is not watched (VIRQ_DOM_EXC): the toolstack RELEASEs.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/event.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xen/grant_table.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-xen"

struct xen_state {
    xenevtchn_handle *xce;
    xengnttab_handle *xgt;
    struct event *ev;
};

struct xen_ring {
    struct xsd_ring ring;
    struct xen_state *xs;
    evtchn_port_t local;
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
    xengnttab_unmap(xr->xs->xgt, ring->intf, 1);
    free(xr);
}

static const struct xsd_ring_ops xen_ring_ops = {
    .notify = xen_notify,
    .destroy = xen_destroy,
};

/* An event channel fired: find its ring and serve it. */
static void evtchn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xsd *x = arg;
    struct xen_state *xs = x->xen;
    xenevtchn_port_or_error_t port = xenevtchn_pending(xs->xce);

    if (port < 0)
        return;
    xenevtchn_unmask(xs->xce, (evtchn_port_t)port);
    for (struct xsd_conn *c = x->conns; c; c = c->next) {
        if (c->ring && c->ring->ops == &xen_ring_ops &&
            ((struct xen_ring *)c->ring)->local == (evtchn_port_t)port) {
            xsd_ring_kick(c);
            break;
        }
    }
    xsd_after_io(x);
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

int xsd_xen_introduce(struct xsd *x, uint32_t domid, uint32_t port,
                      struct xsd_ring **ring)
{
    struct xen_state *xs = x->xen;
    struct xen_ring *xr;
    xenevtchn_port_or_error_t local;

    static bool unavailable; /* no hypervisor: it will not come later */

    if (unavailable)
        return ENOSYS;
    if (!xs && !(xs = x->xen = xen_open(x))) {
        unavailable = true;
        return ENOSYS;
    }
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

void xsd_xen_fini(struct xsd *x)
{
    struct xen_state *xs = x->xen;

    if (!xs)
        return;
    if (xs->ev)
        event_free(xs->ev);
    xengnttab_close(xs->xgt);
    xenevtchn_close(xs->xce);
    free(xs);
    x->xen = NULL;
}

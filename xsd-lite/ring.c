/*
 * ring.c - a guest's connection through its ring page (struct
 * xenstore_domain_interface), whoever mapped it (domain.c for KVM, xen.c
 * for Xen).
 *
 * The guest produces requests into req[] and consumes responses from
 * rsp[]; the indices are free-running and masked.  Everything on the page
 * is written by the guest at any time, so each index is read once, and a
 * producer more than a ring ahead of its consumer is a broken guest: the
 * connection then stops being served (error = XENSTORE_ERROR_RINGIDX) and
 * stays so until the domain is released.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-ring"

#define RING_MASK(i) ((i) & (XENSTORE_RING_SIZE - 1))

static uint32_t load_idx(const XENSTORE_RING_IDX *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void store_idx(XENSTORE_RING_IDX *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static void ring_fail(struct xsd_conn *c, uint32_t err, const char *why)
{
    XTK_WARN(c->x->ctx, "domain %u: %s; its ring is no longer served", c->domid,
             why);
    c->ring->intf->error = err;
    c->failed = true;
    xsd_conn_reset(c);
    c->ring->ops->notify(c->ring);
}

/* Copies requests from the ring into c->in.  Returns bytes moved, or -1
 * when the indices make no sense. */
static int ring_read(struct xsd_conn *c)
{
    struct xenstore_domain_interface *intf = c->ring->intf;
    uint32_t cons = load_idx(&intf->req_cons);
    uint32_t prod = load_idx(&intf->req_prod);
    uint32_t avail, n, first;

    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* indices before data */
    avail = prod - cons;
    if (avail > XENSTORE_RING_SIZE)
        return -1;
    n = avail < xsd_conn_in_room(c) ? avail : xsd_conn_in_room(c);
    if (!n)
        return 0;
    first = XENSTORE_RING_SIZE - RING_MASK(cons);
    if (first > n)
        first = n;
    memcpy(c->in + c->inlen, intf->req + RING_MASK(cons), first);
    memcpy(c->in + c->inlen + first, intf->req, n - first);
    c->inlen += n;
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* data read before cons */
    store_idx(&intf->req_cons, cons + n);
    return (int)n;
}

/* Copies queued output into the response ring.  Returns bytes moved, or
 * -1 when the indices make no sense. */
static int ring_write(struct xsd_conn *c)
{
    struct xenstore_domain_interface *intf = c->ring->intf;
    uint32_t cons = load_idx(&intf->rsp_cons);
    uint32_t prod = load_idx(&intf->rsp_prod);
    uint32_t used, space, moved = 0;

    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* cons read before we write */
    used = prod - cons;
    if (used > XENSTORE_RING_SIZE)
        return -1;
    space = XENSTORE_RING_SIZE - used;
    while (c->out_head && space) {
        struct xsd_out *o = c->out_head;
        uint32_t n = o->len - o->off, first;

        if (n > space)
            n = space;
        first = XENSTORE_RING_SIZE - RING_MASK(prod);
        if (first > n)
            first = n;
        memcpy(intf->rsp + RING_MASK(prod), o->buf + o->off, first);
        memcpy(intf->rsp, o->buf + o->off + first, n - first);
        prod += n;
        space -= n;
        moved += n;
        o->off += n;
        if (o->off == o->len)
            xsd_conn_output_done(c, o);
    }
    if (moved) {
        __atomic_thread_fence(__ATOMIC_RELEASE); /* data before prod */
        store_idx(&intf->rsp_prod, prod);
    }
    return (int)moved;
}

static void ring_flush(struct xsd_conn *c)
{
    int n;

    if (c->failed)
        return;
    n = ring_write(c);
    if (n < 0)
        ring_fail(c, XENSTORE_ERROR_RINGIDX, "response indices out of range");
    else if (n > 0)
        c->ring->ops->notify(c->ring);
}

static void ring_pause(struct xsd_conn *c, bool paused)
{
    /* Input stays in the ring; the resume event picks it up again. */
    if (!paused && c->rev)
        event_active(c->rev, EV_READ, 0);
}

static void ring_destroy(struct xsd_conn *c)
{
    if (c->rev)
        event_free(c->rev);
    c->ring->ops->destroy(c->ring);
}

const struct xsd_transport xsd_ring_transport = {
    .name = "ring",
    .flush = ring_flush,
    .pause = ring_pause,
    .destroy = ring_destroy,
};

/* Xen's XENSTORE_RECONNECT: the guest asks for a fresh connection. */
static void ring_reconnect(struct xsd_conn *c)
{
    struct xenstore_domain_interface *intf = c->ring->intf;

    XTK_INFO(c->x->ctx, "domain %u reconnects its ring", c->domid);
    xsd_conn_reset(c);
    c->failed = false;
    store_idx(&intf->req_cons, 0);
    store_idx(&intf->req_prod, 0);
    store_idx(&intf->rsp_cons, 0);
    store_idx(&intf->rsp_prod, 0);
    intf->error = XENSTORE_ERROR_NONE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    intf->connection = XENSTORE_CONNECTED;
    c->ring->ops->notify(c->ring);
}

/*
 * See xsd.h.  Loops while requests keep coming and there is room.  What is
 * already buffered is handled before more is read, and nothing is taken
 * off the request ring while input is paused (too many replies unread):
 * req_cons stops within one ring of the last request handled, as a
 * socket's input stays in the kernel, and the resume (ring_pause) goes on
 * from there.
 */
void xsd_ring_kick(struct xsd_conn *c)
{
    bool notify = false;

    if (c->dead)
        return;
    if (c->ring->intf->connection == XENSTORE_RECONNECT) {
        ring_reconnect(c);
        return;
    }
    for (;;) {
        int n;

        xsd_conn_process(c);
        if (c->failed || c->dead || c->paused)
            break;
        n = ring_read(c);
        if (n < 0) {
            ring_fail(c, XENSTORE_ERROR_RINGIDX,
                      "request indices out of range");
            return;
        }
        if (n == 0)
            break;
        notify = true;
    }
    if (notify && !c->failed)
        c->ring->ops->notify(c->ring);
    ring_flush(c);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xsd_conn *c = arg;
    struct xsd *x = c->x;

    xsd_ring_kick(c);
    xsd_after_io(x);
}

/*
 * A connection for domid over ring (whose ops are called on it from now
 * on).  A guest's page is reset as Xen does on introduction: indices to
 * zero, the server's features advertised, connected.  Returns NULL on failure
 * (ring destroyed), in which case errno will be set.
 */
struct xsd_conn *xsd_ring_conn_new(struct xsd *x, uint32_t domid,
                                   struct xsd_ring *ring, bool priv)
{
    struct xenstore_domain_interface *intf = ring->intf;
    struct xsd_conn *c =
        xsd_conn_new(x, &xsd_ring_transport, domid, priv, false);

    if (!c) {
        ring->ops->destroy(ring);
        return NULL;
    }
    c->ring = ring;
    ring->c = c;
    if (x->base) {
        c->rev = event_new(x->base, -1, 0, resume_cb, c);
        if (!c->rev) {
            xsd_conn_kill(c, "no memory");
            return xtk__fail_null(ENOMEM);
        }
    }
    /* dom0's kernel set its page up at boot and may have written to it
     * already (a request waiting for the store to start): kept. */
    if (!priv) {
        store_idx(&intf->req_cons, 0);
        store_idx(&intf->req_prod, 0);
        store_idx(&intf->rsp_cons, 0);
        store_idx(&intf->rsp_prod, 0);
    }
    intf->server_features =
        XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR;
    intf->error = XENSTORE_ERROR_NONE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    intf->connection = XENSTORE_CONNECTED;
    return c;
}

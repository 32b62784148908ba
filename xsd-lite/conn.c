/*
 * conn.c - connections, whatever carries them (socket, ring, or a test's
 * memory): framing of the input, the output queue, back-pressure, bounded
 * watch-event queues and deferred destruction.
 *
 * Output is one FIFO per connection of whole messages (replies and watch
 * events).  When a connection has more replies queued than its
 * outstanding limit, its input is paused until the client reads them.
 * Watch events are bounded separately (cfg.watch_queue_max): at the bound
 * a socket connection is closed (its client learns of the loss through a
 * broken connection instead of silently missing an event) and a ring
 * connection, which cannot be closed, drops the event and counts it.
 *
 * A connection is never freed while something may be looking at it:
 * xsd_conn_kill() marks it and xsd_reap() frees it at the end of the
 * current event.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-conn"

/* Input buffer: one whole message and most of another. */
#define XSD_IN_SIZE (2 * XSD_MSG_MAX)

static void null_flush(struct xsd_conn *c)
{
    /* Nobody reads: the output is dropped as if it had been sent. */
    while (c->out_head)
        xsd_conn_output_done(c, c->out_head);
}

static void null_pause(struct xsd_conn *c, bool paused)
{
}

static void null_destroy(struct xsd_conn *c)
{
}

/* For tests and the fuzzer: output is discarded. */
const struct xsd_transport xsd_null_transport = {
    .name = "null",
    .flush = null_flush,
    .pause = null_pause,
    .destroy = null_destroy,
};

/*
 * Makes a connection.  Sockets are privileged (dom0); ring connections
 * belong to their domain and are subject to its quotas.  Returns NULL on
 * failure, in which case errno will be set.
 */
struct xsd_conn *xsd_conn_new(struct xsd *x, const struct xsd_transport *tp,
                              uint32_t domid, bool priv, bool ro)
{
    struct xsd_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->in = malloc(XSD_IN_SIZE);
    if (!c->in)
        goto err;
    if (!priv) {
        c->dom = xsd_dom_get(x, domid, true);
        if (!c->dom)
            goto err;
    }
    c->x = x;
    c->tp = tp;
    c->id = x->next_conn_id++;
    c->domid = domid;
    c->priv = priv;
    c->ro = ro;
    c->fd = -1;
    c->out_tail = &c->out_head;
    c->next_txid = 1;
    c->prefix_len = (uint8_t)snprintf(c->prefix, sizeof(c->prefix),
                                      "/local/domain/%u", domid);
    c->next = x->conns;
    if (x->conns)
        x->conns->prev = c;
    x->conns = c;
    x->nconns++;
    return c;

err:
    free(c->in);
    free(c);
    return NULL;
}

void xsd_conn_kill(struct xsd_conn *c, const char *why)
{
    if (c->dead)
        return;
    if (why)
        XTK_DEBUG(c->x->ctx, "connection %u (%s, domain %u) closed: %s", c->id,
                  c->tp->name, c->domid, why);
    c->dead = true;
    c->dead_next = c->x->dead;
    c->x->dead = c;
}

void xsd_conn_close_fds(struct xsd_conn *c)
{
    for (int i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    c->nfds = 0;
}

static void out_free_all(struct xsd_conn *c)
{
    while (c->out_head) {
        struct xsd_out *o = c->out_head;

        c->out_head = o->next;
        free(o);
    }
    c->out_tail = &c->out_head;
    c->out_replies = c->out_events = 0;
}

/* Drops watches, transactions, queued output and buffered input. */
void xsd_conn_reset(struct xsd_conn *c)
{
    xsd_watch_del_all(c);
    xsd_txn_free_all(c);
    out_free_all(c);
    xsd_conn_close_fds(c);
    c->in_off += c->inlen;
    c->inlen = 0;
}

static void conn_destroy(struct xsd_conn *c)
{
    struct xsd *x = c->x;

    if (c->dirty) {
        struct xsd_conn **pp = &x->dirty;

        while (*pp != c)
            pp = &(*pp)->dirty_next;
        *pp = c->dirty_next;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        x->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    x->nconns--;
    xsd_conn_reset(c);
    if (c->priv)
        xsd_domain_introducer_gone(c);
    if (c->dom && c->dom->conn == c)
        c->dom->conn = NULL;
    c->tp->destroy(c);
    xsd_dom_maybe_free(x, c->dom);
    free(c->in);
    free(c);
}

/* Frees the killed connections.  Destroying one may kill others (its
 * KVM domains), so this runs until none is left. */
void xsd_reap(struct xsd *x)
{
    if (x->reaping)
        return;
    x->reaping = true;
    while (x->dead) {
        struct xsd_conn *c = x->dead;

        x->dead = c->dead_next;
        conn_destroy(c);
    }
    x->reaping = false;
}

static void mark_dirty(struct xsd_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->x->dirty;
    c->x->dirty = c;
}

/* See xsd.h. */
void xsd_after_io(struct xsd *x)
{
    while (x->dirty || x->dead) {
        while (x->dirty) {
            struct xsd_conn *c = x->dirty;

            x->dirty = c->dirty_next;
            c->dirty = false;
            if (!c->dead)
                c->tp->flush(c);
        }
        xsd_reap(x);
    }
}

static uint32_t outstanding_limit(const struct xsd_conn *c)
{
    return c->priv ? c->x->cfg.sock_outstanding
                   : c->x->cfg.quota[XSD_Q_OUTSTANDING];
}

static void append(struct xsd_conn *c, struct xsd_out *o)
{
    o->next = NULL;
    *c->out_tail = o;
    c->out_tail = &o->next;
    if (o->event)
        c->out_events++;
    else
        c->out_replies++;
    mark_dirty(c);
}

/* The transport wrote all of o (the head of the queue). */
void xsd_conn_output_done(struct xsd_conn *c, struct xsd_out *o)
{
    c->out_head = o->next;
    if (!c->out_head)
        c->out_tail = &c->out_head;
    if (o->event)
        c->out_events--;
    else
        c->out_replies--;
    free(o);
    if (c->paused && c->out_replies < outstanding_limit(c)) {
        c->paused = false;
        c->tp->pause(c, false);
    }
}

static struct xsd_out *out_new(uint32_t type, uint32_t req_id, uint32_t tx_id,
                               uint32_t len, bool event)
{
    struct xsd_out *o = malloc(sizeof(*o) + XSD_HDR + len);
    struct xsd_sockmsg h = {type, req_id, tx_id, len};

    if (!o)
        return NULL;
    memcpy(o->buf, &h, sizeof(h));
    o->len = XSD_HDR + len;
    o->off = 0;
    o->event = event;
    return o;
}

/* Queues a reply.  Returns -1 on failure, in which case errno is set. */
int xsd_conn_send(struct xsd_conn *c, uint32_t type, uint32_t req_id,
                  uint32_t tx_id, const void *data, uint32_t len, bool event)
{
    struct xsd_out *o = out_new(type, req_id, tx_id, len, event);

    if (!o)
        return -1;
    if (len) /* an empty value is NULL */
        memcpy(o->buf + XSD_HDR, data, len);
    append(c, o);
    return 0;
}

/*
 * Queues the watch event "path\0token\0" for c.  Like Xen, an event too big
 * for a message is dropped, and so is one identical to an event still
 * waiting in the queue.  At the queue bound, see the top of this file.
 */
void xsd_conn_event(struct xsd_conn *c, const char *path, size_t plen,
                    const char *token, size_t tlen)
{
    uint32_t len = (uint32_t)(plen + tlen + 2);
    struct xsd_out *o;

    if (c->dead || c->failed || plen + tlen + 2 > XENSTORE_PAYLOAD_MAX)
        return;
    if (path[0] != '@') {
        for (o = c->out_head; o; o = o->next) {
            if (o->event && o->off == 0 && o->len == XSD_HDR + len &&
                !memcmp(o->buf + XSD_HDR, path, plen) &&
                !memcmp(o->buf + XSD_HDR + plen + 1, token, tlen))
                return;
        }
    }
    if (c->out_events >= c->x->cfg.watch_queue_max) {
        if (!c->events_dropped++)
            XTK_WARN(c->x->ctx,
                     "connection %u (domain %u): watch event queue full (%u)",
                     c->id, c->domid, c->x->cfg.watch_queue_max);
        if (!c->ring)
            xsd_conn_kill(c, "watch event queue overflow");
        return;
    }
    o = out_new(XS_WATCH_EVENT, 0, 0, len, true);
    if (!o) {
        c->events_dropped++;
        return;
    }
    memcpy(o->buf + XSD_HDR, path, plen);
    o->buf[XSD_HDR + plen] = '\0';
    memcpy(o->buf + XSD_HDR + plen + 1, token, tlen);
    o->buf[XSD_HDR + len - 1] = '\0';
    append(c, o);
}

/* A client broke the framing: a ring is ignored from now on (its error
 * field says why), a socket is closed. */
static void protocol_error(struct xsd_conn *c, uint32_t len)
{
    XTK_WARN(c->x->ctx,
             "connection %u (domain %u): message length %u over the maximum",
             c->id, c->domid, len);
    if (c->ring) {
        c->ring->intf->error = XENSTORE_ERROR_PROTO;
        c->failed = true;
        xsd_conn_reset(c);
        return;
    }
    xsd_conn_kill(c, "message too long");
}

/*
 * Dispatches every complete message in c->in, in order, until the input
 * runs out, the connection dies, or too many replies wait (then input is
 * paused until they are read).  File descriptors received with the input
 * go to the first INTRODUCE whose header begins in the data that carried
 * them; if there is none they are closed.
 */
void xsd_conn_process(struct xsd_conn *c)
{
    uint32_t off = 0;

    while (!c->dead && !c->failed && !c->paused) {
        struct xsd_sockmsg h;
        uint64_t start = c->in_off + off;

        if (c->inlen - off < XSD_HDR)
            break;
        memcpy(&h, c->in + off, sizeof(h));
        if (h.len > XENSTORE_PAYLOAD_MAX) {
            protocol_error(c, h.len);
            return;
        }
        if (c->inlen - off < XSD_HDR + h.len)
            break;
        if (c->out_replies >= outstanding_limit(c)) {
            c->paused = true;
            c->tp->pause(c, true);
            break;
        }
        if (c->nfds && start >= c->fds_hi)
            xsd_conn_close_fds(c);
        c->msg_fds = c->nfds && start >= c->fds_lo && h.type == XS_INTRODUCE;
        xsd_dispatch(c, &h, c->in + off + XSD_HDR);
        if (c->msg_fds) {
            xsd_conn_close_fds(c);
            c->msg_fds = false;
        }
        off += XSD_HDR + h.len;
    }
    if (c->dead || c->failed)
        return;
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
        c->in_off += off;
    }
    if (c->nfds && c->in_off >= c->fds_hi && !c->inlen)
        xsd_conn_close_fds(c);
}

/* Room left in the input buffer. */
uint32_t xsd_conn_in_room(const struct xsd_conn *c)
{
    return XSD_IN_SIZE - c->inlen;
}

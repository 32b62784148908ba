/*
 * store.c - a small xenstore client over the store ring (Xen's
 * xenstore_domain_interface layout), for vCPU 0's main loop only.
 *
 * At boot it publishes its suspend event channel
 * (device/suspend/event-channel) and watches control/shutdown.  When the
 * watch fires and the node says "suspend", it acknowledges by writing ""
 * (as Linux's xenbus does) and the caller suspends.  Paths are relative:
 * the store resolves them under /local/domain/<domid>.
 */
#include "guest.h"

#define XS_READ 2
#define XS_WATCH 4
#define XS_WRITE 11
#define XS_WATCH_EVENT 15
#define XS_ERROR 16
#define XS_RING 1024u
#define XS_PAYLOAD_MAX 4096u
#define XS_TIMEOUT_NS 2000000000ull

struct xs_ring {
    char req[XS_RING];
    char rsp[XS_RING];
    uint32_t req_cons, req_prod;
    uint32_t rsp_cons, rsp_prod;
    uint32_t server_features, connection, error;
};

struct xs_hdr {
    uint32_t type, req_id, tx_id, len;
};

static struct xs_ring *ring;
static uint32_t next_req = 1;
static int watch_pending, dead;
static char payload[XS_PAYLOAD_MAX + 1];

/* Waits for the store's interrupt; fails the store after a timeout. */
static int wait_store(uint64_t deadline)
{
    if (now_ns() > deadline) {
        if (!dead)
            kprintf("xtk-guest: the store does not answer\n");
        dead = 1;
        return -1;
    }
    /* The timer wakes us too, so that a store that died is noticed. */
    sys_wait(SYS_WAIT_SET, &kernel_events, EV_STORE | EV_TIMER);
    take_events(EV_STORE);
    return 0;
}

static int ring_write(const void *data, size_t len, uint64_t deadline)
{
    const char *p = data;

    while (len) {
        uint32_t prod = ring->req_prod;
        uint32_t space = XS_RING - (prod - READ_ONCE(ring->req_cons));
        if (!space) {
            evtchn_notify(XTK_PORT_STORE);
            if (wait_store(deadline))
                return -1;
            continue;
        }
        uint32_t chunk = XS_RING - prod % XS_RING;
        if (chunk > space)
            chunk = space;
        if (chunk > len)
            chunk = (uint32_t)len;
        memcpy(ring->req + prod % XS_RING, p, chunk);
        barrier();
        WRITE_ONCE(ring->req_prod, prod + chunk);
        p += chunk;
        len -= chunk;
    }
    return 0;
}

static int ring_read(void *data, size_t len, uint64_t deadline)
{
    char *p = data;

    while (len) {
        uint32_t cons = ring->rsp_cons;
        uint32_t avail = READ_ONCE(ring->rsp_prod) - cons;
        if (!avail) {
            if (wait_store(deadline))
                return -1;
            continue;
        }
        barrier();
        uint32_t chunk = XS_RING - cons % XS_RING;
        if (chunk > avail)
            chunk = avail;
        if (chunk > len)
            chunk = (uint32_t)len;
        memcpy(p, ring->rsp + cons % XS_RING, chunk);
        barrier();
        WRITE_ONCE(ring->rsp_cons, cons + chunk);
        evtchn_notify(XTK_PORT_STORE);
        p += chunk;
        len -= chunk;
    }
    return 0;
}

/* Reads one message into payload (NUL-terminated); -1 on a dead store. */
static int read_msg(struct xs_hdr *h, uint64_t deadline)
{
    if (ring_read(h, sizeof(*h), deadline))
        return -1;
    if (h->len > XS_PAYLOAD_MAX) {
        kprintf("xtk-guest: store message of %u bytes\n", h->len);
        dead = 1;
        return -1;
    }
    if (ring_read(payload, h->len, deadline))
        return -1;
    payload[h->len] = 0;
    if (h->type == XS_WATCH_EVENT)
        watch_pending = 1;
    return 0;
}

/* Sends a request whose payload is a then b; *id gets its id. */
static int send_request(uint32_t type, const char *a, size_t alen,
                        const char *b, size_t blen, uint64_t deadline,
                        uint32_t *id)
{
    struct xs_hdr h = {type, next_req++, 0, (uint32_t)(alen + blen)};

    *id = h.req_id;
    if (ring_write(&h, sizeof(h), deadline) || ring_write(a, alen, deadline) ||
        ring_write(b, blen, deadline))
        return -1;
    evtchn_notify(XTK_PORT_STORE);
    return 0;
}

/*
 * Sends a request and waits for its reply (in payload).  Returns the
 * reply's length, or -1 (an error reply, or the store is dead).
 */
static int request(uint32_t type, const char *a, size_t alen, const char *b,
                   size_t blen)
{
    uint64_t deadline = now_ns() + XS_TIMEOUT_NS;
    struct xs_hdr h;
    uint32_t id;

    if (dead || send_request(type, a, alen, b, blen, deadline, &id))
        return -1;
    for (;;) {
        if (read_msg(&h, deadline))
            return -1;
        if (h.type != XS_WATCH_EVENT && h.req_id == id) {
            return h.type == XS_ERROR ? -1 : (int)h.len;
        }
    }
}

static int store_write(const char *path, const char *value)
{
    return request(XS_WRITE, path, strlen(path) + 1, value, strlen(value));
}

/*
 * Publishes the suspend port and watches control/shutdown.  Without wait
 * (in a new domain) the requests go out without waiting for their
 * replies, which store_poll drops when they come: the workload runs on at
 * once, and a store that answers late only delays the next suspend
 * request.
 */
static int reg_request(int wait, uint32_t type, const char *a, size_t alen,
                       const char *b, size_t blen)
{
    uint32_t id;

    if (wait)
        return request(type, a, alen, b, blen);
    return send_request(type, a, alen, b, blen, now_ns() + XS_TIMEOUT_NS, &id);
}

static void store_register(int wait)
{
    char port[12];
    int n = ksnprintf(port, sizeof(port), "%u",
                      xen_mode ? xen_suspend_port() : XTK_PORT_SUSPEND);

    if (reg_request(wait, XS_WRITE, "device/suspend/event-channel",
                    sizeof("device/suspend/event-channel"), port,
                    (size_t)n) < 0)
        kprintf("xtk-guest: cannot publish the suspend channel\n");
    if (reg_request(wait, XS_WATCH, "control/shutdown",
                    sizeof("control/shutdown"), "xtk", sizeof("xtk")) < 0)
        kprintf("xtk-guest: cannot watch control/shutdown\n");
}

void store_init(void *page)
{
    ring = page;
    store_register(1);
    kprintf("xtk-guest: store connected\n");
}

void store_reconnect(void *page)
{
    ring = page;
    dead = 0;
    watch_pending = 0;
    store_register(0);
}

/*
 * Work for store_poll(): an event read on the way to a reply, or bytes in
 * the ring.  The second matters: waiting for a reply consumes the store's
 * interrupt, and a watch event that came with it would otherwise sit in
 * the ring until the next one.
 */
int store_pending(void)
{
    return !dead &&
           (watch_pending || READ_ONCE(ring->rsp_prod) != ring->rsp_cons);
}

int store_poll(void)
{
    struct xs_hdr h;

    if (dead)
        return 0;
    /* Whole messages already in the ring: replies to nothing are dropped. */
    while (READ_ONCE(ring->rsp_prod) - ring->rsp_cons >= sizeof(h)) {
        if (read_msg(&h, now_ns() + XS_TIMEOUT_NS))
            return 0;
    }
    if (!watch_pending)
        return 0;
    watch_pending = 0;
    status->store_events++;
    int n =
        request(XS_READ, "control/shutdown", sizeof("control/shutdown"), "", 0);
    if (n != 7 || strncmp(payload, "suspend", 7))
        return 0;
    if (store_write("control/shutdown", "") < 0)
        return 0;
    return 1;
}

/*
 * output.c - what the guest says to the world: its console and its
 * network ring (abi.h), sent at once, or held while a checkpointing save
 * asks (XTK_HVCTL_OP_OUTPUT_HOLD), as Remus holds a protected guest's
 * output until the backup has the checkpoint it came from.
 *
 * Held output is tagged with the epoch it belongs to: the one open when it
 * left the guest.  STOP closes the open epoch once the guest is stopped,
 * after taking whatever the rings still hold, so that an epoch's output is
 * exactly what the guest produced before the state the checkpoint copies
 * (the rings' consumer indexes are in that state: a backup that takes
 * over does not send any of it again).  OUTPUT_RELEASE sends the output
 * of every epoch up to the one named.  Holding ends with everything still
 * held sent (this copy runs on: its backup is gone) or dropped (another
 * copy runs the domain), as the holder says.  A holder that dies leaves
 * the output held (orphaned): this copy does not know whether its backup
 * will take over, so until a new save takes the hold over, or a toolstack
 * says which copy runs on (`xtk output DOMAIN release|drop`), or the
 * domain is destroyed, nothing more goes out; the guest runs on.
 *
 * Everything here runs under hv->console_lock (the vCPU threads write the
 * debug port's bytes; the main thread does the rest).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hv.h"

#define HELD_MAX (16u << 20) /* held bytes; then the rings wait */
#define HELD_MIN 8192u       /* $XTK_HV_HELD_MAX (tests) may go down to this */
#define NET_BACKLOG_MAX (1u << 20) /* a TCP sink's unsent bytes */
#define NET_RETRY_NS 1000000000ull /* a TCP sink's reconnect interval */

/* The bound on held bytes: HELD_MAX, or $XTK_HV_HELD_MAX for the tests
 * (which cannot wait for 16 MiB of numbered packets). */
static size_t held_max(void)
{
    static size_t max;

    if (!max) {
        const char *e = getenv("XTK_HV_HELD_MAX");
        unsigned long v = e ? strtoul(e, NULL, 10) : 0;

        max = v >= HELD_MIN && v <= HELD_MAX ? v : HELD_MAX;
    }
    return max;
}

struct hv_held {
    struct hv_held *next;
    uint32_t epoch;
    uint32_t kind; /* HV_OUT_* */
    uint64_t t_ns; /* when it left the guest */
    size_t len;
    char data[];
};

/* ---- the network sink -------------------------------------------------- */

int hv_net_parse(const char *spec, int *tcp, struct sockaddr_storage *sa,
                 socklen_t *salen)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai = NULL;
    char host[128];
    const char *h, *colon;
    size_t hl;

    if (!strncmp(spec, "udp:", 4))
        *tcp = 0;
    else if (!strncmp(spec, "tcp:", 4))
        *tcp = 1;
    else
        return -1;
    h = spec + 4;
    colon = strrchr(h, ':');
    if (!colon || !colon[1])
        return -1;
    hl = (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    if (!hl || hl >= sizeof(host))
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    hints.ai_socktype = *tcp ? SOCK_STREAM : SOCK_DGRAM;
    if (getaddrinfo(host, colon + 1, &hints, &ai) || !ai)
        return -1;
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* A TCP sink: (re)connects, without blocking; the loop waits for it. */
static void net_connect(struct hv *hv)
{
    uint64_t now = hv_now_ns();

    if (hv->net_fd >= 0 || now < hv->net_retry_ns)
        return;
    hv->net_retry_ns = now + NET_RETRY_NS;
    hv->net_fd = socket(hv->net_addr.ss_family,
                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (hv->net_fd < 0) {
        hv_log("network sink: socket: %m");
        return;
    }
    hv->net_connecting = 1;
    if (connect(hv->net_fd, (struct sockaddr *)&hv->net_addr,
                hv->net_addrlen) == 0)
        hv->net_connecting = 0;
    else if (errno != EINPROGRESS)
        hv_net_event(hv, 1);
}

int hv_net_open(struct hv *hv)
{
    hv->net_fd = -1;
    if (!hv->opt.net)
        return 0;
    if (hv_net_parse(hv->opt.net, &hv->net_tcp, &hv->net_addr,
                     &hv->net_addrlen) < 0) {
        hv_log("--net %s: not udp:HOST:PORT or tcp:HOST:PORT", hv->opt.net);
        errno = EINVAL;
        return -1;
    }
    if (hv->net_tcp) {
        net_connect(hv);
        return 0;
    }
    hv->net_fd = socket(hv->net_addr.ss_family,
                        SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (hv->net_fd < 0 || connect(hv->net_fd, (struct sockaddr *)&hv->net_addr,
                                  hv->net_addrlen) < 0) {
        hv_log("--net %s: %m", hv->opt.net);
        return -1;
    }
    /* Room for a release's burst (the packets a checkpoint held). */
    {
        int sz = 4 << 20;

        if (setsockopt(hv->net_fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz,
                       sizeof(sz)) < 0)
            setsockopt(hv->net_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    return 0;
}

/* Writes the TCP backlog out, as far as the socket takes it. */
static void net_flush(struct hv *hv)
{
    while (hv->net_fd >= 0 && !hv->net_connecting && hv->net_out_len) {
        ssize_t w = send(hv->net_fd, hv->net_out, hv->net_out_len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                hv_net_event(hv, 1);
            return;
        }
        memmove(hv->net_out, hv->net_out + w, hv->net_out_len - (size_t)w);
        hv->net_out_len -= (size_t)w;
    }
}

void hv_net_event(struct hv *hv, int failed)
{
    int err = 0;
    socklen_t el = sizeof(err);

    if (hv->net_fd < 0)
        return;
    if (!failed && hv->net_connecting &&
        (getsockopt(hv->net_fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err))
        failed = 1;
    if (failed) {
        if (!hv->net_failed_said)
            hv_log("network sink %s: %s: packets are lost until it is back",
                   hv->opt.net,
                   strerror(err     ? err
                            : errno ? errno
                                    : EIO));
        hv->net_failed_said = 1;
        close(hv->net_fd);
        hv->net_fd = -1;
        hv->net_connecting = 0;
        hv->net_out_len = 0;
        return;
    }
    if (hv->net_connecting) {
        hv->net_connecting = 0;
        hv->net_failed_said = 0;
    }
    net_flush(hv);
}

int hv_net_wants_out(const struct hv *hv)
{
    return hv->net_fd >= 0 && hv->net_tcp &&
           (hv->net_connecting || hv->net_out_len);
}

/* One packet to the sink (lost if it cannot go: a network may lose it). */
static void net_send(struct hv *hv, const char *p, size_t n)
{
    if (!hv->opt.net)
        return;
    if (hv->net_tcp) {
        net_connect(hv);
        if (hv->net_fd < 0 || hv->net_out_len + n > NET_BACKLOG_MAX) {
            hv->net_lost++;
            return;
        }
        if (!hv->net_out) {
            hv->net_out = malloc(NET_BACKLOG_MAX);
            if (!hv->net_out) {
                hv->net_lost++;
                return;
            }
        }
        memcpy(hv->net_out + hv->net_out_len, p, n);
        hv->net_out_len += n;
        net_flush(hv);
        return;
    }
    if (send(hv->net_fd, p, n, MSG_DONTWAIT) < 0)
        hv->net_lost++;
}

/* ---- held or sent -------------------------------------------------------- */

static void emit(struct hv *hv, unsigned int kind, const char *s, size_t n)
{
    if (kind == HV_OUT_CONSOLE)
        hv_console_emit(hv, s, n);
    else
        net_send(hv, s, n);
}

/* Output of the guest's (console_lock held). */
static void output_locked(struct hv *hv, unsigned int kind, const char *s,
                          size_t n)
{
    struct hv_held *h;

    if (hv->hold_owner == HV_HOLD_NONE) {
        emit(hv, kind, s, n);
        return;
    }
    if ((hv->held_bytes + n > held_max() && !hv->drain_all) ||
        !(h = malloc(sizeof(*h) + n))) {
        hv->held_lost += n; /* the debug port's bytes: nowhere to wait */
        return;
    }
    h->next = NULL;
    h->epoch = hv->hold_epoch;
    h->kind = kind;
    h->t_ns = hv_now_ns();
    h->len = n;
    memcpy(h->data, s, n);
    *hv->held_tail = h;
    hv->held_tail = &h->next;
    hv->held_bytes += n;
}

void hv_output(struct hv *hv, unsigned int kind, const char *s, size_t n)
{
    pthread_mutex_lock(&hv->console_lock);
    output_locked(hv, kind, s, n);
    pthread_mutex_unlock(&hv->console_lock);
}

/* Whether the rings may be taken from: not while the held output is at
 * its bound (the guest's rings fill and it waits, or drops, as it would
 * for a slow device). */
static int room(struct hv *hv)
{
    /* Room for a whole console ring or packet: taken, never dropped. */
    int r = hv->hold_owner == HV_HOLD_NONE ||
            hv->held_bytes + 4096 <= held_max() || hv->drain_all;

    if (!r && !hv->at_bound)
        hv_log("held output at its bound (%zu of %zu bytes): the guest's "
               "rings wait until a checkpoint's output is released",
               hv->held_bytes, held_max());
    hv->at_bound = !r;
    return r;
}

void hv_net_drain(struct hv *hv)
{
    struct xtk_net_ring *r = (void *)(hv->mem + XTK_GUEST_NET_GPA);
    uint64_t ev;
    uint32_t prod, cons;

    if (read(hv->ports[XTK_PORT_NET].from_guest, &ev, sizeof(ev)) < 0 &&
        errno != EAGAIN)
        hv_log("network eventfd: %m");
    pthread_mutex_lock(&hv->console_lock);
    prod = __atomic_load_n(&r->prod, __ATOMIC_ACQUIRE);
    cons = r->cons;
    if (prod - cons > XTK_NET_SLOTS) /* a confused guest: skip ahead */
        cons = prod - XTK_NET_SLOTS;
    for (; cons != prod && room(hv); cons++) {
        char pkt[XTK_NET_DATA_MAX];
        uint32_t len = r->slot[cons % XTK_NET_SLOTS].len;

        if (len > XTK_NET_DATA_MAX)
            len = XTK_NET_DATA_MAX;
        memcpy(pkt, r->slot[cons % XTK_NET_SLOTS].data, len);
        output_locked(hv, HV_OUT_NET, pkt, len);
    }
    __atomic_store_n(&r->cons, cons, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&hv->console_lock);
}

void hv_console_drain(struct hv *hv)
{
    struct xtk_cons_ring *r = (void *)(hv->mem + XTK_GUEST_CONS_GPA);
    uint64_t ev;
    char buf[sizeof(r->out)];
    size_t n = 0;

    if (read(hv->ports[XTK_PORT_CONSOLE].from_guest, &ev, sizeof(ev)) < 0 &&
        errno != EAGAIN)
        hv_log("console eventfd: %m");
    pthread_mutex_lock(&hv->console_lock);
    if (room(hv)) {
        uint32_t prod = __atomic_load_n(&r->out_prod, __ATOMIC_ACQUIRE);
        uint32_t cons = r->out_cons;

        if (prod - cons > sizeof(r->out)) /* a confused guest: skip ahead */
            cons = prod - (uint32_t)sizeof(r->out);
        while (cons != prod)
            buf[n++] = r->out[cons++ % sizeof(r->out)];
        __atomic_store_n(&r->out_cons, cons, __ATOMIC_RELEASE);
        if (n)
            output_locked(hv, HV_OUT_CONSOLE, buf, n);
    }
    pthread_mutex_unlock(&hv->console_lock);
}

/* ---- the holder's requests ------------------------------------------------
 */

int hv_output_hold(struct hv *hv, int ci)
{
    int r = 0;

    pthread_mutex_lock(&hv->console_lock);
    if (hv->hold_owner == HV_HOLD_NONE) {
        hv->hold_owner = ci;
        hv->hold_epoch = 1;
        hv_log("output held from now: released as checkpoints are safe");
    } else if (hv->hold_owner == HV_HOLD_ORPHAN) {
        hv->hold_owner = ci;
        hv_log("output held by a new save, with %zu bytes its last holder "
               "left: released with its first safe checkpoint",
               hv->held_bytes);
    } else if (hv->hold_owner != ci) {
        r = EBUSY;
    }
    pthread_mutex_unlock(&hv->console_lock);
    return r;
}

int hv_output_end(struct hv *hv, int ci, int send)
{
    struct hv_held *h, *next;
    uint64_t items = 0, bytes = 0;

    pthread_mutex_lock(&hv->console_lock);
    if (hv->hold_owner == HV_HOLD_NONE) {
        pthread_mutex_unlock(&hv->console_lock);
        return 0;
    }
    if (hv->hold_owner != ci && hv->hold_owner != HV_HOLD_ORPHAN) {
        pthread_mutex_unlock(&hv->console_lock);
        return EPERM;
    }
    for (h = hv->held_head; h; h = next) {
        next = h->next;
        items++;
        bytes += h->len;
        if (send)
            emit(hv, h->kind, h->data, h->len);
        free(h);
    }
    hv->held_head = NULL;
    hv->held_tail = &hv->held_head;
    hv->held_bytes = 0;
    hv->hold_owner = HV_HOLD_NONE;
    pthread_mutex_unlock(&hv->console_lock);
    hv_log("output no longer held: %llu item(s), %llu bytes still held %s "
           "(packets the network sink did not take so far: %llu)",
           (unsigned long long)items, (unsigned long long)bytes,
           send ? "sent (this copy is the one that runs on)"
                : "dropped (another copy runs the domain)",
           (unsigned long long)hv->net_lost);
    return 0;
}

void hv_output_orphan(struct hv *hv, int ci)
{
    pthread_mutex_lock(&hv->console_lock);
    if (hv->hold_owner == ci) {
        hv->hold_owner = HV_HOLD_ORPHAN;
        hv_log("the save holding output is gone: output stays held (%zu "
               "bytes) until a new save takes it, `xtk output DOMAIN "
               "release|drop`, or the domain's end",
               hv->held_bytes);
    }
    pthread_mutex_unlock(&hv->console_lock);
}

uint32_t hv_output_mark(struct hv *hv, int ci)
{
    uint32_t e = 0;

    /* What the stopped guest left in its rings: taken now, whatever the
     * bound, so that the copy that follows has them consumed (a copy that
     * resumes elsewhere never sends them again); held, it is the closing
     * epoch's. */
    hv->drain_all = 1;
    hv_console_drain(hv);
    hv_net_drain(hv);
    hv->drain_all = 0;
    pthread_mutex_lock(&hv->console_lock);
    if (hv->hold_owner == ci)
        e = hv->hold_epoch++;
    pthread_mutex_unlock(&hv->console_lock);
    return e;
}

int hv_output_release(struct hv *hv, int ci, uint32_t epoch,
                      struct xtk_hvctl_output *o)
{
    uint64_t now = hv_now_ns();
    struct hv_held *h;

    memset(o, 0, sizeof(*o));
    pthread_mutex_lock(&hv->console_lock);
    if (hv->hold_owner != ci) {
        pthread_mutex_unlock(&hv->console_lock);
        return EPERM;
    }
    if ((int32_t)(epoch - hv->hold_epoch) >= 0) { /* not closed yet */
        pthread_mutex_unlock(&hv->console_lock);
        return EINVAL;
    }
    while ((h = hv->held_head) && (int32_t)(h->epoch - epoch) <= 0) {
        uint64_t held = now - h->t_ns;

        hv->held_head = h->next;
        if (!hv->held_head)
            hv->held_tail = &hv->held_head;
        hv->held_bytes -= h->len;
        emit(hv, h->kind, h->data, h->len);
        o->items++;
        o->bytes += h->len;
        o->held_sum_ns += held;
        if (held > o->held_max_ns)
            o->held_max_ns = held;
        free(h);
    }
    pthread_mutex_unlock(&hv->console_lock);
    return 0;
}

/*
 * netbuf.c - a Xen guest's network output held in epochs by sch_plug in
 * dom0's kernel, set up and driven over rtnetlink (netbuf.h says what and
 * why).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/gen_stats.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "xen/netbuf.h"
#include "xtk-internal.h"

#define XTK_LOG_CONTEXT "xen"

#define PLUG_LIMIT (16u << 20) /* bytes held per vif, as xtk-hv's bound */
#define PLUG_HANDLE 0x10000u   /* 1: */
#define INGRESS_HANDLE 0xffff0000u
#define NL_TIMEOUT_MS 5000

/* ---- requests ---------------------------------------------------------- */

struct req {
    union {
        struct nlmsghdr h;
        char buf[512];
    } u;
};

static void *req_start(struct req *r, uint16_t type, uint16_t flags,
                       const void *hdr, size_t hlen)
{
    memset(r, 0, sizeof(*r));
    r->u.h.nlmsg_type = type;
    r->u.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    r->u.h.nlmsg_len = NLMSG_LENGTH(hlen);
    memcpy(NLMSG_DATA(&r->u.h), hdr, hlen);
    return NLMSG_DATA(&r->u.h);
}

static struct rtattr *attr(struct req *r, uint16_t type, const void *data,
                           size_t len)
{
    size_t at = NLMSG_ALIGN(r->u.h.nlmsg_len);
    struct rtattr *a = (struct rtattr *)(r->u.buf + at);

    /* The requests here are a few dozen bytes: a bug, not an input. */
    if (at + RTA_SPACE(len) > sizeof(r->u.buf))
        abort();
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    r->u.h.nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
    return a;
}

static void nest_end(struct req *r, struct rtattr *a)
{
    a->rta_len = (unsigned short)(r->u.buf + r->u.h.nlmsg_len - (char *)a);
}

static struct tcmsg tcm(int ifindex, uint32_t parent, uint32_t handle)
{
    struct tcmsg t = {.tcm_family = AF_UNSPEC,
                      .tcm_ifindex = ifindex,
                      .tcm_parent = parent,
                      .tcm_handle = handle};
    return t;
}

/* ---- the socket ---------------------------------------------------------- */

static int nl_open(struct xtk_ctx *ctx)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    int one = 1;

    if (fd < 0) {
        XTK_PERROR(ctx, "rtnetlink socket");
        return -1;
    }
    /* The kernel's own words in its errors, and no echo of the request. */
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    return fd;
}

/* The kernel's message in an error's extended ack, or "". */
static const char *ext_msg(const struct nlmsghdr *h)
{
    const struct nlmsgerr *e = NLMSG_DATA(h);
    const struct rtattr *a;
    int len;

    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
        return "";
    a = (const struct rtattr *)((const char *)e + sizeof(*e));
    len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*e));
    for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == NLMSGERR_ATTR_MSG && RTA_PAYLOAD(a) > 1 &&
            ((const char *)RTA_DATA(a))[RTA_PAYLOAD(a) - 1] == '\0')
            return RTA_DATA(a);
    return "";
}

struct qstats {
    uint64_t bytes, backlog, packets;
    uint32_t qlen, drops;
    int pkt64; /* packets came as TCA_STATS_PKT64 (over the 32-bit one) */
};

/* A qdisc's counters from an RTM_NEWQDISC message. */
static void parse_stats(const struct nlmsghdr *h, struct qstats *st)
{
    const struct rtattr *a =
        (const struct rtattr *)((const char *)NLMSG_DATA(h) +
                                NLMSG_ALIGN(sizeof(struct tcmsg)));
    int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(struct tcmsg));

    for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == TCA_STATS2) {
            const struct rtattr *b = RTA_DATA(a);
            int blen = (int)RTA_PAYLOAD(a);

            for (; RTA_OK(b, blen); b = RTA_NEXT(b, blen)) {
                if (b->rta_type == TCA_STATS_BASIC &&
                    RTA_PAYLOAD(b) >= sizeof(struct gnet_stats_basic)) {
                    struct gnet_stats_basic s;

                    memcpy(&s, RTA_DATA(b), sizeof(s));
                    st->bytes = s.bytes;
                    if (!st->pkt64)
                        st->packets = s.packets;
                } else if (b->rta_type == TCA_STATS_PKT64 &&
                           RTA_PAYLOAD(b) >= sizeof(uint64_t)) {
                    memcpy(&st->packets, RTA_DATA(b), sizeof(uint64_t));
                    st->pkt64 = 1;
                } else if (b->rta_type == TCA_STATS_QUEUE &&
                           RTA_PAYLOAD(b) >= sizeof(struct gnet_stats_queue)) {
                    struct gnet_stats_queue q;

                    memcpy(&q, RTA_DATA(b), sizeof(q));
                    st->qlen = q.qlen;
                    st->backlog = q.backlog;
                    st->drops = q.drops;
                }
            }
        }
    }
}

/*
 * Sends n requests (laid one after another in buf, len bytes, sequence
 * numbers from seq0) and reads until each has its answer: its ack, or for
 * an RTM_GETQDISC the qdisc (into stats[i], in order).  0, or -1 with
 * errno the first request's error, whose words (what) are logged unless
 * quiet names that errno (-1: none is logged).
 */
static int nl_talk(struct xtk_ctx *ctx, int fd, const void *buf, size_t len,
                   uint32_t seq0, unsigned int n, struct qstats *stats,
                   const char *what, int quiet)
{
    union {
        struct nlmsghdr h;
        char b[16384];
    } rx;
    unsigned int answered = 0, got = 0;
    int err = 0;
    const char *why = "";
    char whybuf[256];

    if (send(fd, buf, len, 0) != (ssize_t)len) {
        XTK_PERROR(ctx, "rtnetlink: %s", what);
        return -1;
    }
    while (answered < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t r;
        struct nlmsghdr *h = &rx.h;
        unsigned int left;

        /* The kernel answers at once; a request it never answers is a
         * bug here, which must not stop a guest for good. */
        r = poll(&p, 1, NL_TIMEOUT_MS);
        if (r == 0) {
            XTK_ERROR(ctx, "rtnetlink: %s: no answer in %d ms", what,
                      NL_TIMEOUT_MS);
            return xtk__fail(ETIMEDOUT);
        }
        if (r > 0)
            r = recv(fd, rx.b, sizeof(rx.b), 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            XTK_PERROR(ctx, "rtnetlink: %s", what);
            return -1;
        }
        left = (unsigned int)r;
        for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq < seq0 || h->nlmsg_seq >= seq0 + n)
                continue; /* not ours (a late answer) */
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);

                answered++;
                if (e->error && !err) {
                    err = -e->error;
                    snprintf(whybuf, sizeof(whybuf), "%s", ext_msg(h));
                    why = whybuf;
                }
            } else if (h->nlmsg_type == RTM_NEWQDISC && stats) {
                parse_stats(h, &stats[got++]);
                answered++;
            }
        }
    }
    if (err) {
        if (err != quiet && quiet != -1)
            XTK_ERROR(ctx, "rtnetlink: %s: %s%s%s", what, strerror(err),
                      *why ? ": " : "", why);
        errno = err;
        return -1;
    }
    return 0;
}

static uint32_t g_seq;

/* One request: its ack. */
static int nl_do(struct xtk_ctx *ctx, int fd, struct req *r, const char *what,
                 int quiet)
{
    uint32_t seq = __atomic_add_fetch(&g_seq, 1, __ATOMIC_RELAXED);

    r->u.h.nlmsg_seq = seq;
    return nl_talk(ctx, fd, r->u.buf, r->u.h.nlmsg_len, seq, 1, NULL, what,
                   quiet);
}

/* ---- the pieces ---------------------------------------------------------- */

static int link_add_ifb(struct xtk_ctx *ctx, int fd, const char *name)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    struct req r;
    struct rtattr *li;
    char what[64];

    req_start(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    attr(&r, IFLA_IFNAME, name, strlen(name) + 1);
    li = attr(&r, IFLA_LINKINFO, NULL, 0);
    attr(&r, IFLA_INFO_KIND, "ifb", 4);
    nest_end(&r, li);
    snprintf(what, sizeof(what), "creating ifb device %s", name);
    return nl_do(ctx, fd, &r, what, EEXIST);
}

static int link_up(struct xtk_ctx *ctx, int fd, int index, const char *name)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC,
                            .ifi_index = index,
                            .ifi_flags = IFF_UP,
                            .ifi_change = IFF_UP};
    struct req r;
    char what[64];

    req_start(&r, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    snprintf(what, sizeof(what), "setting %s up", name);
    return nl_do(ctx, fd, &r, what, 0);
}

/* Deletes link index, or name if index is 0. */
static int link_del(struct xtk_ctx *ctx, int fd, int index, const char *name)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index};
    struct req r;
    char what[64];

    req_start(&r, RTM_DELLINK, 0, &ifi, sizeof(ifi));
    if (!index)
        attr(&r, IFLA_IFNAME, name, strlen(name) + 1);
    snprintf(what, sizeof(what), "deleting %s", name);
    return nl_do(ctx, fd, &r, what, ENODEV);
}

static int plug_add(struct xtk_ctx *ctx, int fd, int ifb, const char *name)
{
    struct tcmsg t = tcm(ifb, TC_H_ROOT, PLUG_HANDLE);
    struct tc_plug_qopt q = {.action = TCQ_PLUG_LIMIT, .limit = PLUG_LIMIT};
    struct req r;
    char what[80];

    req_start(&r, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &t, sizeof(t));
    attr(&r, TCA_KIND, "plug", 5);
    attr(&r, TCA_OPTIONS, &q, sizeof(q));
    snprintf(what, sizeof(what), "the plug qdisc on %s (is sch_plug loaded?)",
             name);
    return nl_do(ctx, fd, &r, what, 0);
}

/* A plug's action into r (not sent). */
static void plug_req(struct req *r, int ifb, int action)
{
    struct tcmsg t = tcm(ifb, TC_H_ROOT, PLUG_HANDLE);
    struct tc_plug_qopt q = {.action = action};

    req_start(r, RTM_NEWQDISC, 0, &t, sizeof(t));
    attr(r, TCA_KIND, "plug", 5);
    attr(r, TCA_OPTIONS, &q, sizeof(q));
}

/* A request for the plug's counters into r (not sent). */
static void stats_req(struct req *r, int ifb)
{
    struct tcmsg t = tcm(ifb, TC_H_ROOT, PLUG_HANDLE);

    req_start(r, RTM_GETQDISC, 0, &t, sizeof(t));
    /* The answer is the qdisc, which the kernel multicasts to RTNLGRP_TC
     * and sends the asker only when asked to echo. */
    r->u.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ECHO;
}

static int plug_stats(struct xtk_ctx *ctx, int fd, int ifb, struct qstats *st)
{
    struct req r;
    uint32_t seq = __atomic_add_fetch(&g_seq, 1, __ATOMIC_RELAXED);

    memset(st, 0, sizeof(*st));
    stats_req(&r, ifb);
    r.u.h.nlmsg_seq = seq;
    return nl_talk(ctx, fd, r.u.buf, r.u.h.nlmsg_len, seq, 1, st,
                   "reading the plug's counters", 0);
}

static int ingress_add(struct xtk_ctx *ctx, int fd, int vif, const char *name)
{
    struct tcmsg t = tcm(vif, TC_H_INGRESS, INGRESS_HANDLE);
    struct req r;
    char what[80];

    req_start(&r, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &t, sizeof(t));
    attr(&r, TCA_KIND, "ingress", 8);
    snprintf(what, sizeof(what), "an ingress qdisc on %s", name);
    return nl_do(ctx, fd, &r, what, 0);
}

static int ingress_del(struct xtk_ctx *ctx, int fd, int vif, const char *name)
{
    struct tcmsg t = tcm(vif, TC_H_INGRESS, INGRESS_HANDLE);
    struct req r;
    char what[80];

    req_start(&r, RTM_DELQDISC, 0, &t, sizeof(t));
    snprintf(what, sizeof(what), "deleting %s's ingress qdisc", name);
    /* (none there: ENOENT or EINVAL, by kernel) */
    if (nl_do(ctx, fd, &r, what, -1) < 0) {
        if (errno != ENOENT && errno != EINVAL)
            XTK_PERROR(ctx, "rtnetlink: %s", what);
        return -1;
    }
    return 0;
}

/* Every packet arriving on vif goes to ifb instead (matchall, mirred). */
static int redirect_add(struct xtk_ctx *ctx, int fd, int vif, const char *name,
                        int ifb)
{
    struct tcmsg t = tcm(vif, INGRESS_HANDLE, 0);
    struct tc_mirred m = {.action = TC_ACT_STOLEN,
                          .eaction = TCA_EGRESS_REDIR,
                          .ifindex = (uint32_t)ifb};
    struct rtattr *opt, *acts, *act, *aopt;
    struct req r;
    char what[80];

    t.tcm_info = TC_H_MAKE(1u << 16, htons(ETH_P_ALL));
    req_start(&r, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, &t, sizeof(t));
    attr(&r, TCA_KIND, "matchall", 9);
    opt = attr(&r, TCA_OPTIONS, NULL, 0);
    acts = attr(&r, TCA_MATCHALL_ACT, NULL, 0);
    act = attr(&r, 1, NULL, 0); /* the first action */
    attr(&r, TCA_ACT_KIND, "mirred", 7);
    aopt = attr(&r, TCA_ACT_OPTIONS, NULL, 0);
    attr(&r, TCA_MIRRED_PARMS, &m, sizeof(m));
    nest_end(&r, aopt);
    nest_end(&r, act);
    nest_end(&r, acts);
    nest_end(&r, opt);
    snprintf(what, sizeof(what),
             "redirecting %s's packets (cls_matchall, act_mirred)", name);
    return nl_do(ctx, fd, &r, what, 0);
}

/* ---- the hold ------------------------------------------------------------ */

int xtk__netbuf_ifb_name(uint32_t domid, unsigned int devid,
                         char name[IF_NAMESIZE])
{
    int n = snprintf(name, IF_NAMESIZE, "xtkb%u.%u", domid, devid);

    return n < 0 || n >= IF_NAMESIZE ? xtk__fail(ENAMETOOLONG) : 0;
}

/* Takes down what hold set up on nb's first n devices (ingress, ifb). */
static void undo(struct xtk_ctx *ctx, int fd, struct xtk__netbuf *nb,
                 unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        if (nb->dev[i].vif_index > 0)
            (void)ingress_del(ctx, fd, nb->dev[i].vif_index, nb->dev[i].vif);
        if (nb->dev[i].made)
            (void)link_del(ctx, fd, nb->dev[i].ifb_index, nb->dev[i].ifb);
    }
}

int xtk__netbuf_hold(struct xtk_ctx *ctx, struct xtk__netbuf *nb,
                     uint32_t domid, const char (*vifs)[IF_NAMESIZE],
                     const unsigned int *devids, unsigned int n)
{
    int fd, e;
    unsigned int i;

    memset(nb, 0, sizeof(*nb));
    if (n > XTK__NETBUF_MAX)
        return xtk__fail(E2BIG);
    fd = nl_open(ctx);
    if (fd < 0)
        return -1;
    for (i = 0; i < n; i++) {
        __typeof__(&nb->dev[0]) d = &nb->dev[i];

        snprintf(d->vif, sizeof(d->vif), "%s", vifs[i]);
        if (xtk__netbuf_ifb_name(domid, devids[i], d->ifb) < 0)
            goto fail;
        d->vif_index = (int)if_nametoindex(d->vif);
        if (d->vif_index <= 0) {
            XTK_ERROR(ctx, "domain %u: no network device %s (its vif %u)",
                      domid, d->vif, devids[i]);
            errno = ENODEV;
            d->vif_index = 0;
            goto fail;
        }
        if (link_add_ifb(ctx, fd, d->ifb) < 0) {
            if (errno == EEXIST)
                XTK_ERROR(ctx,
                          "domain %u: %s exists: its output is held from a "
                          "save that ended (`xtk output %u release` or "
                          "`drop` first)",
                          domid, d->ifb, domid);
            d->vif_index = 0; /* nothing of this vif is ours yet */
            goto fail;
        }
        d->made = 1;
        d->ifb_index = (int)if_nametoindex(d->ifb);
        if (d->ifb_index <= 0) {
            XTK_PERROR(ctx, "domain %u: %s", domid, d->ifb);
            d->ifb_index = 0; /* (deleted by its name) */
            goto fail_ifb;
        }
        /* The plug before the redirect: nothing passes unheld. */
        if (link_up(ctx, fd, d->ifb_index, d->ifb) < 0 ||
            plug_add(ctx, fd, d->ifb_index, d->ifb) < 0)
            goto fail_ifb;
        if (ingress_add(ctx, fd, d->vif_index, d->vif) < 0)
            goto fail_ifb;
        if (redirect_add(ctx, fd, d->vif_index, d->vif, d->ifb_index) < 0)
            goto fail_dev;
        nb->n = i + 1;
    }
    nb->closed_ns[1] = xtk_now_ns();
    nb->fd = fd;
    return 0;
fail_ifb:
    nb->dev[i].vif_index = 0; /* the ingress is not ours */
fail_dev:
    i++;
fail:
    e = errno;
    undo(ctx, fd, nb, i);
    close(fd);
    memset(nb, 0, sizeof(*nb));
    errno = e;
    return -1;
}

void xtk__netbuf_close(struct xtk__netbuf *nb)
{
    if (nb->n)
        close(nb->fd);
    memset(nb, 0, sizeof(*nb));
}

int xtk__netbuf_close_epoch(struct xtk_ctx *ctx, struct xtk__netbuf *nb)
{
    struct req r[2 * XTK__NETBUF_MAX];
    struct qstats st[XTK__NETBUF_MAX];
    char buf[sizeof(r)];
    size_t len = 0;
    uint32_t seq0;
    uint64_t pkts = 0, bytes = 0;

    if (!nb->n)
        return 0;
    /* Each plug's "buffer" and its counters right after it, in one send:
     * the guest is stopped, so the counters are the epoch's end. */
    seq0 =
        __atomic_add_fetch(&g_seq, 2 * nb->n, __ATOMIC_RELAXED) - 2 * nb->n + 1;
    for (unsigned int i = 0; i < nb->n; i++) {
        uint32_t s = seq0 + 2 * i;

        plug_req(&r[2 * i], nb->dev[i].ifb_index, TCQ_PLUG_BUFFER);
        stats_req(&r[2 * i + 1], nb->dev[i].ifb_index);
        r[2 * i].u.h.nlmsg_seq = s;
        r[2 * i + 1].u.h.nlmsg_seq = s + 1;
        for (int k = 0; k < 2; k++) {
            memcpy(buf + len, r[2 * i + k].u.buf, r[2 * i + k].u.h.nlmsg_len);
            len += NLMSG_ALIGN(r[2 * i + k].u.h.nlmsg_len);
        }
    }
    memset(st, 0, sizeof(st));
    if (nl_talk(ctx, nb->fd, buf, len, seq0, 2 * nb->n, st, "closing an epoch",
                0) < 0)
        return -1;
    for (unsigned int i = 0; i < nb->n; i++) {
        pkts += (uint64_t)st[i].packets + st[i].qlen + st[i].drops;
        bytes += st[i].bytes + st[i].backlog;
    }
    nb->pkts[0] = nb->pkts[1];
    nb->bytes[0] = nb->bytes[1];
    nb->closed_ns[0] = nb->closed_ns[1];
    nb->pkts[1] = pkts;
    nb->bytes[1] = bytes;
    nb->closed_ns[1] = xtk_now_ns();
    return 0;
}

int xtk__netbuf_release(struct xtk_ctx *ctx, struct xtk__netbuf *nb,
                        struct xtk__output *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned int i = 0; i < nb->n; i++) {
        struct req r;

        plug_req(&r, nb->dev[i].ifb_index, TCQ_PLUG_RELEASE_ONE);
        if (nl_do(ctx, nb->fd, &r, "releasing an epoch", 0) < 0)
            return -1;
    }
    out->items = nb->pkts[1] - nb->pkts[0];
    out->bytes = nb->bytes[1] - nb->bytes[0];
    /* The plug keeps no times: a packet of the epoch was held at most
     * from the epoch's start to now. */
    if (out->items)
        out->held_max_ns = out->held_sum_ns = xtk_now_ns() - nb->closed_ns[0];
    return 0;
}

int xtk__netbuf_end(struct xtk_ctx *ctx, const char *vif, const char *ifb,
                    int send)
{
    int fd, ifb_index = (int)if_nametoindex(ifb), rc = 0;
    int vif_index = vif && *vif ? (int)if_nametoindex(vif) : 0;

    if (ifb_index <= 0)
        return xtk__fail(ENOENT);
    fd = nl_open(ctx);
    if (fd < 0)
        return -1;
    if (send) {
        struct req r;
        struct qstats st = {0};

        /* Everything held goes, and what comes passes; then the redirect
         * goes once the queue is empty (a second at most). */
        plug_req(&r, ifb_index, TCQ_PLUG_RELEASE_INDEFINITE);
        rc = nl_do(ctx, fd, &r, "releasing the held output", 0);
        for (int t = 0; !rc && t < 1000; t++) {
            if (plug_stats(ctx, fd, ifb_index, &st) < 0 || !st.qlen)
                break;
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
        if (!rc && st.qlen)
            XTK_WARN(ctx, "%s: %u packet(s) still queued after 1 s: dropped",
                     ifb, st.qlen);
    }
    if (vif_index > 0)
        (void)ingress_del(ctx, fd, vif_index, vif);
    if (send) /* what reached the ifb before the redirect went */
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    if (link_del(ctx, fd, ifb_index, ifb) < 0 && errno != ENODEV)
        rc = -1;
    close(fd);
    return rc;
}

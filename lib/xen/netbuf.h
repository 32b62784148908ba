/*
 * netbuf.h - a Xen guest's network output held in epochs, in dom0's
 * kernel, for checkpoints to a backup (the xen backend's output_hold).
 *
 * What xl remus's network buffer does, done over rtnetlink with no tool
 * or library in between: the packets the guest sends arrive on its vif's
 * ingress; a matchall filter there redirects each to an ifb device of its
 * own (xtkb<domid>.<devid>), whose root qdisc is sch_plug.  The plug holds
 * what it is given: "buffer" closes the current epoch (the packets
 * enqueued since the last one), "release one" lets the last closed epoch
 * go, "release indefinite" lets everything go and holds nothing more.
 * The plug counts only one closed epoch (a second "buffer" before the
 * "release one" forgets the first one's count), so the epochs this holds
 * unreleased are one at a time: the save waits for the backup's
 * acknowledgement of an epoch before it closes the next (output_depth 1).
 *
 * The hold lives in the kernel: it outlives the process that set it up.
 * Modules: ifb, sch_ingress, cls_matchall, act_mirred, sch_plug.
 */
#ifndef XTK_XEN_NETBUF_H
#define XTK_XEN_NETBUF_H

#include <net/if.h>
#include <stdint.h>

struct xtk_ctx;
struct xtk__output;

#define XTK__NETBUF_MAX 8 /* vifs of one domain */

struct xtk__netbuf {
    unsigned int n;
    int fd; /* the rtnetlink socket the stops use (while n > 0) */
    struct {
        char vif[IF_NAMESIZE], ifb[IF_NAMESIZE];
        int vif_index, ifb_index;
        int made; /* the ifb was made here */
    } dev[XTK__NETBUF_MAX];
    /* what the plugs had been given (sent, queued and dropped) at the last
     * two "buffer"s: the difference is the last closed epoch's */
    uint64_t pkts[2], bytes[2];
    uint64_t closed_ns[2]; /* their times */
};

/* The name of the ifb that holds vif devid of domid's output: 0, or -1
 * (ENAMETOOLONG: over IF_NAMESIZE). */
int xtk__netbuf_ifb_name(uint32_t domid, unsigned int devid,
                         char name[IF_NAMESIZE]);

/*
 * Starts holding the output of the n vifs named vifs[i] (devids[i]) of
 * domid into nb: 0, or -1 with errno (EEXIST: an ifb of the domain is
 * there already, a hold a dead save left) and an error logged; what it
 * set up is undone then.
 */
int xtk__netbuf_hold(struct xtk_ctx *ctx, struct xtk__netbuf *nb,
                     uint32_t domid, const char (*vifs)[IF_NAMESIZE],
                     const unsigned int *devids, unsigned int n);

/* Lets nb go (its socket), not the hold, which stays in the kernel: end
 * it with xtk__netbuf_end.  nb is all zero after. */
void xtk__netbuf_close(struct xtk__netbuf *nb);

/* Closes the current epoch on every vif ("buffer"): 0 or -1 (errno). */
int xtk__netbuf_close_epoch(struct xtk_ctx *ctx, struct xtk__netbuf *nb);

/* Lets the last closed epoch go ("release one"); out says how much it
 * was (packets as the plug counts them: a segmentation offload's
 * segments, not the guest's sends).  0 or -1 (errno). */
int xtk__netbuf_release(struct xtk_ctx *ctx, struct xtk__netbuf *nb,
                        struct xtk__output *out);

/*
 * Ends the hold of ifb device ifb (as xtk__netbuf_ifb_name names them) on
 * vif (which may be gone, "" if unknown): send, what is held goes first
 * (waited for, up to a second) and the redirect is taken away; otherwise
 * what is held is dropped with the ifb.  0, or -1 with errno (ENOENT: no
 * such ifb).
 */
int xtk__netbuf_end(struct xtk_ctx *ctx, const char *vif, const char *ifb,
                    int send);

#endif /* XTK_XEN_NETBUF_H */

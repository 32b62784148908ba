/*
 * hvctl.h - xtk-hv's control protocol (version 1), shared by xtk-hv and
 * libxtk's kvm backend.  man/xtk-hv.8 documents it for other clients.
 *
 * Transport: a SOCK_SEQPACKET Unix socket, <rundir>/<domid>.sock.  One
 * message per packet: a 24-byte header, then `len` bytes of payload.  All
 * fields are in the host's byte order (the socket is local).  A client
 * sends a request and reads its reply; replies come in request order.
 *
 * Requests carry op (XTK_HVCTL_OP_*); a reply carries op | XTK_HVCTL_REPLY,
 * the request's id, and error: 0, or a positive errno (then no payload).
 *
 * What the server does with a bad message, and the guest runs on in every
 * case:
 *   - not our magic, or a packet shorter than the header: disconnects;
 *   - another version: replies EPROTONOSUPPORT (the reply's version field
 *     is the server's);
 *   - len disagreeing with the packet's size, or a packet over
 *     XTK_HVCTL_MSG_MAX (truncated by the socket): replies EBADMSG;
 *   - an unknown op: ENOSYS; a payload of the wrong size for its op, or
 *     unknown flags: EINVAL.
 *
 * File descriptors travel with SCM_RIGHTS on the HELLO and LAZY replies
 * only.
 */
#ifndef XTK_HVCTL_H
#define XTK_HVCTL_H

#include <stddef.h>
#include <stdint.h>

#define XTK_HVCTL_MAGIC 0x484b5458u /* "XTKH" */
#define XTK_HVCTL_VERSION 1
#define XTK_HVCTL_MSG_MAX (128u * 1024) /* header included */
#define XTK_HVCTL_REPLY 0x8000u

struct xtk_hvctl_hdr {
    uint32_t magic;   /* XTK_HVCTL_MAGIC */
    uint16_t version; /* XTK_HVCTL_VERSION */
    uint16_t op;      /* XTK_HVCTL_OP_*, | XTK_HVCTL_REPLY in replies */
    uint32_t id;      /* chosen by the client, copied into the reply */
    uint32_t flags;   /* per op */
    int32_t error;    /* replies: 0 or a positive errno */
    uint32_t len;     /* payload bytes after the header */
};

enum xtk_hvctl_op {
    /*
     * Flags: XTK_HVCTL_HELLO_OWN (an empty domain: this connection is the
     * restore that fills it; if it closes before RESUME, xtk-hv destroys
     * the domain).  EBUSY while a lazy restore's memory is still
     * coming in (see LAZY), to any connection but the restore's.
     * Payload: none.  Reply: struct xtk_hvctl_hello, and with it the fds:
     * [0] guest RAM (memfd, nr_pages * 4096 bytes), [1] the dirty bitmap
     * (memfd, bitmap_bytes), then for each port in ports (lowest first) the
     * pair [to guest (write 8 bytes to notify), from guest (readable when
     * the guest notifies)] eventfds.
     */
    XTK_HVCTL_OP_HELLO = 1,
    /* Payload: none.  Reply: struct xtk_hvctl_info. */
    XTK_HVCTL_OP_INFO = 2,
    /*
     * Flags: XTK_HVCTL_PAUSE_HOLD (the pause lasts while this connection
     * does), else it lasts until an unpause.  Replies once every vCPU is
     * out of KVM_RUN and parked.  XTK_HVCTL_PAUSE_APS alone: every vCPU
     * but vCPU 0 is kicked out of KVM_RUN and parks, until the domain is
     * next told to run (a resume, an unpause), this connection releases it
     * (UNPAUSE with XTK_HVCTL_UNPAUSE_APS) or closes; the reply does not
     * wait for them.  For a suspend request to a guest that allows it
     * (XTK_GUEST_F_APS_STOPPABLE): vCPU 0 gets a host CPU to take it.
     * With XTK_HVCTL_PAUSE_NOTIFY too, xtk-hv then notifies the suspend
     * port itself (libxtk now notifies it itself and sends the hold
     * after, which is sooner).  A control thread that is not real-time gives
     * vCPU 0 its CPU (a directed yield) if vCPU 0's thread is preempted.
     */
    XTK_HVCTL_OP_PAUSE = 3,
    /* Flags: XTK_HVCTL_UNPAUSE_FORCE (every pause, whoever took it), or
     * XTK_HVCTL_UNPAUSE_APS alone (only this connection's PAUSE_APS). */
    XTK_HVCTL_OP_UNPAUSE = 4,
    /* Dirty logging on; this connection owns the log (EBUSY if another
     * does); it goes off when the connection closes. */
    XTK_HVCTL_OP_LOGDIRTY_ENABLE = 5,
    XTK_HVCTL_OP_LOGDIRTY_DISABLE = 6,
    /*
     * Writes the frames dirtied since the last sync into the bitmap memfd
     * and re-arms.  Flags: XTK_HVCTL_LOGDIRTY_FINAL (the domain must be
     * paused: EBUSY).  ENODATA if dirty logging is off.  Reply: struct
     * xtk_hvctl_logdirty.
     */
    XTK_HVCTL_OP_LOGDIRTY_SYNC = 7,
    /* Paused domain (EBUSY).  Reply: state records (see below). */
    XTK_HVCTL_OP_GET_STATE = 8,
    /* Paused or empty domain.  Payload: state records. */
    XTK_HVCTL_OP_SET_STATE = 9,
    /*
     * Starts an empty domain, wakes a suspended guest, drops all pauses.
     * Replies once the vCPUs that were parked have left their park for
     * KVM_RUN (a second at most): struct xtk_hvctl_resume.
     */
    XTK_HVCTL_OP_RESUME = 10,
    /* Replies, then the domain is gone and xtk-hv exits. */
    XTK_HVCTL_OP_DESTROY = 11,
    /* Payload: struct xtk_hvctl_console_req.  Reply: struct
     * xtk_hvctl_console, then the bytes. */
    XTK_HVCTL_OP_CONSOLE_READ = 12,
    /*
     * Flags: XTK_HVCTL_SUSPEND_GUARD_ON sets this connection's suspend
     * guard, none clears it.  While it is set the connection is suspending
     * the guest (a save): if it closes first (the toolstack died), xtk-hv
     * resumes the guest, at once if it sits suspended, else as soon as it
     * reports suspended (within XTK_HVCTL_ORPHAN_MS), so a dead save never
     * leaves a guest suspended.  Another connection's guard cancels that.
     */
    XTK_HVCTL_OP_SUSPEND_GUARD = 13,
    /* Payload: the new name, NUL-terminated (XTK_HVCTL_NAME_MAX with it).
     * EEXIST if another live domain has it. */
    XTK_HVCTL_OP_RENAME = 14,
    /*
     * The start of a stop-and-copy in one round trip: PAUSE with
     * XTK_HVCTL_PAUSE_HOLD; then GET_STATE; then, if this connection owns
     * the dirty log, LOGDIRTY_SYNC with XTK_HVCTL_LOGDIRTY_FINAL (state
     * first: a failed sync then loses nothing).  Room for the records is
     * that of GET_STATE less struct xtk_hvctl_stop.
     * Reply: struct xtk_hvctl_stop, then the state records.  On an error
     * the hold stays taken, as after a PAUSE.
     */
    XTK_HVCTL_OP_STOP = 15,
    /*
     * Flags: XTK_HVCTL_OUTPUT_HOLD_ON: the guest's output (console, network
     * ring) is held from now on, in epochs that each STOP of this
     * connection closes (struct xtk_hvctl_stop's epoch), until released;
     * EBUSY if another connection holds it; an orphaned hold is taken
     * over, what it held going out with this connection's first release.
     * Otherwise holding ends: XTK_HVCTL_OUTPUT_SEND sends what is still
     * held (this copy runs on), no flag drops it (another copy runs the
     * domain); EPERM unless this connection holds it or the hold is
     * orphaned.  A holding connection that closes orphans its hold: the
     * output stays held until one of the above (or the domain's end).
     */
    XTK_HVCTL_OP_OUTPUT_HOLD = 16,
    /*
     * Payload: struct xtk_hvctl_release.  Sends the held output of every
     * epoch up to the one named, which a STOP must have closed (EINVAL);
     * EPERM if this connection does not hold output.  Reply: struct
     * xtk_hvctl_output.
     */
    XTK_HVCTL_OP_OUTPUT_RELEASE = 17,
    /*
     * A lazy restore (xtk-restore --lazy).  No flag: from the empty
     * domain's creator (EPERM from another connection; EBUSY once resumed
     * or lazy already), its RAM is registered with a new userfaultfd for
     * missing pages (shared memory: UFFD_FEATURE_MISSING_SHMEM) and the
     * reply hands that fd over (SCM_RIGHTS): the restore fills the pages
     * with UFFDIO_COPY, and any access to a page not yet there, by a vCPU
     * or by xtk-hv, waits for it.  xtk-hv keeps a copy of the fd, so a
     * restore that dies cannot leave the pages it did not fill to be
     * given as zeroes: from then until XTK_HVCTL_LAZY_DONE, the creator's
     * connection closing destroys the domain (its vCPUs kicked out before
     * the copy is closed).  Only the pages below XTK_HVCTL_LAZY_EAGER are
     * touched by the host (the boot, status, ring and table pages): the
     * restore fills them before the RESUME.  Reply: struct
     * xtk_hvctl_lazy (where the RAM lies in xtk-hv: the addresses the fd's
     * messages and UFFDIO_COPY speak of).  XTK_HVCTL_LAZY_DONE: every
     * page is in; the copy is closed, the domain is an ordinary one.
     * ENOSYS where userfaultfd cannot be had.
     */
    XTK_HVCTL_OP_LAZY = 18,
    /* Payload: none.  Reply: struct xtk_hvctl_vcpu per vCPU (issue 15):
     * what the host knows of each vCPU's thread.  Never waits for a vCPU. */
    XTK_HVCTL_OP_VCPUS = 19,
    XTK_HVCTL_OP_MAX = 19,
};

#define XTK_HVCTL_HELLO_OWN 0x1u
#define XTK_HVCTL_PAUSE_HOLD 0x1u
#define XTK_HVCTL_PAUSE_APS 0x2u
#define XTK_HVCTL_PAUSE_NOTIFY 0x4u /* with PAUSE_APS: see OP_PAUSE */
#define XTK_HVCTL_UNPAUSE_FORCE 0x1u
#define XTK_HVCTL_UNPAUSE_APS 0x2u
#define XTK_HVCTL_LOGDIRTY_FINAL 0x1u
#define XTK_HVCTL_SUSPEND_GUARD_ON 0x1u
#define XTK_HVCTL_OUTPUT_HOLD_ON 0x1u
#define XTK_HVCTL_OUTPUT_SEND 0x2u
#define XTK_HVCTL_LAZY_DONE 0x1u
#define XTK_HVCTL_LAZY_EAGER 16 /* pages, from frame 0: see OP_LAZY */
#define XTK_HVCTL_ORPHAN_MS 10000

#define XTK_HVCTL_NAME_MAX 64 /* with the NUL */
#define XTK_HVCTL_NET_MAX 64  /* with the NUL */

struct xtk_hvctl_hello {
    uint32_t domid;
    uint32_t nr_vcpus;
    uint64_t nr_pages;
    uint32_t page_size;    /* 4096 */
    uint32_t bitmap_bytes; /* size of the bitmap memfd */
    uint32_t ports;        /* bit p: port p's eventfds follow */
    uint32_t nr_fds;
    char name[XTK_HVCTL_NAME_MAX];
};

struct xtk_hvctl_info {
    uint32_t domid;
    uint32_t nr_vcpus;
    uint64_t nr_pages;
    uint32_t flags;       /* XTK_DOMINFO_* (xtk/domain.h) */
    uint32_t guest_state; /* the status page's state (guests/abi.h) */
    uint64_t uptime_ns;
    uint32_t pid;
    uint32_t store; /* 1: registered in the store */
    char name[XTK_HVCTL_NAME_MAX];
    char net[XTK_HVCTL_NET_MAX]; /* --net, NUL-terminated; "": none */
};

/* One vCPU's thread and KVM's counters for it (XTK_HVCTL_OP_VCPUS). */
struct xtk_hvctl_vcpu {
    uint32_t index;
    uint32_t tid;   /* the host thread running it */
    uint32_t flags; /* XTK_HVCTL_VCPU_* */
    uint32_t reserved;
    /* /proc/self/task/TID/schedstat and status: time on a CPU, time
     * runnable but waiting for one (steal, as the guest would call it),
     * time slices; switches away by blocking and by preemption. */
    uint64_t run_ns, wait_ns, slices;
    uint64_t switches_voluntary, switches_preempted;
    /* KVM's binary statistics for the vCPU (KVM_HVCTL_VCPU_KVM_STATS). */
    uint64_t kvm_yields_attempted, kvm_yields_successful;
    uint64_t kvm_halt_exits, kvm_exits, kvm_hypercalls;
    uint64_t kvm_preemption_reported, kvm_preemption_other;
    /* xtk-hv's directed yields for the guest (abi.h, the yield-to
     * doorbell): asked for, given (the target was still preempted), and
     * given with the target's thread moved to the waiter's CPU. */
    uint64_t yields, yields_given, yields_moved;
    /* Times the control thread gave this vCPU its CPU for a suspend
     * request (the hold, XTK_HVCTL_PAUSE_APS). */
    uint64_t boosts;
};
#define XTK_HVCTL_VCPU_PUBLISHED 0x1u /* the guest sees its thread's state */
#define XTK_HVCTL_VCPU_KVM_STATS 0x2u /* the kvm_* counters are read */

struct xtk_hvctl_lazy {
    uint64_t base;        /* frame 0's address in xtk-hv */
    uint64_t bytes;       /* the RAM registered from there */
    uint32_t eager_pages; /* XTK_HVCTL_LAZY_EAGER */
    uint32_t reserved;
};

struct xtk_hvctl_logdirty {
    uint64_t dirty;    /* bits set in the bitmap */
    uint64_t nr_pages; /* bits in the bitmap that mean something */
};

struct xtk_hvctl_resume {
    /* CLOCK_MONOTONIC when the last parked vCPU left its park (when none
     * was parked: when the pauses were dropped); 0 if one has not within
     * a second, or the domain stays paused (destroyed meanwhile). */
    uint64_t running_ns;
};

#define XTK_HVCTL_STOP_SYNCED 0x1u /* the dirty log was synced */

struct xtk_hvctl_stop {
    uint32_t flags; /* XTK_HVCTL_STOP_* */
    /* The epoch of held output this STOP closed (the guest's output up to
     * the stop), if this connection holds output; else 0. */
    uint32_t epoch;
    struct xtk_hvctl_logdirty log; /* if XTK_HVCTL_STOP_SYNCED */
};

struct xtk_hvctl_release {
    uint32_t epoch;    /* up to and with this one */
    uint32_t reserved; /* zero */
};

struct xtk_hvctl_output {
    uint64_t items;       /* console writes and packets sent */
    uint64_t bytes;       /* their bytes */
    uint64_t held_max_ns; /* the longest any of them was held */
    uint64_t held_sum_ns; /* the sum of their holds */
};

struct xtk_hvctl_console_req {
    uint64_t offset; /* first byte wanted */
    uint32_t max;    /* at most this many (capped by the message size) */
    uint32_t reserved;
};

struct xtk_hvctl_console {
    /* Of the first byte returned: the one asked for, or the oldest kept if
     * that is gone, or the end if it lies beyond. */
    uint64_t offset;
    uint64_t end; /* the console's end: bytes written so far */
};

/*
 * State records, as in lib/backend.h: {u32 type, u32 length}, body, zero
 * padding to 8.  Every body starts with struct xtk_kvm_rec_head (the vCPU
 * index, or XTK_KVM_REC_VM for platform state) and then the KVM ioctl's
 * structure as <linux/kvm.h> defines it.  MSRS carries struct kvm_msrs
 * followed by its entries; CPUID struct kvm_cpuid2 followed by its
 * entries (the vCPU's CPUID table, which the destination takes when its
 * KVM offers every feature in it, and refuses otherwise).
 */
#define XTK_KVM_REC_BASE 0xcb560000u /* optional (bit 31) + "KV" */
enum xtk_kvm_rec {
    XTK_KVM_REC_CLOCK = XTK_KVM_REC_BASE + 0x01,   /* kvm_clock_data */
    XTK_KVM_REC_PIT2 = XTK_KVM_REC_BASE + 0x02,    /* kvm_pit_state2 */
    XTK_KVM_REC_IRQCHIP = XTK_KVM_REC_BASE + 0x03, /* kvm_irqchip (3) */
    XTK_KVM_REC_MP_STATE = XTK_KVM_REC_BASE + 0x10,
    XTK_KVM_REC_REGS = XTK_KVM_REC_BASE + 0x11,
    XTK_KVM_REC_SREGS = XTK_KVM_REC_BASE + 0x12,
    XTK_KVM_REC_XSAVE = XTK_KVM_REC_BASE + 0x13, /* kvm_xsave, sized */
    XTK_KVM_REC_XCRS = XTK_KVM_REC_BASE + 0x14,
    XTK_KVM_REC_DEBUGREGS = XTK_KVM_REC_BASE + 0x15,
    XTK_KVM_REC_LAPIC = XTK_KVM_REC_BASE + 0x16,
    XTK_KVM_REC_MSRS = XTK_KVM_REC_BASE + 0x17,
    XTK_KVM_REC_EVENTS = XTK_KVM_REC_BASE + 0x18,
    XTK_KVM_REC_CPUID = XTK_KVM_REC_BASE + 0x19, /* kvm_cpuid2, sized */
    XTK_KVM_REC_MAX = XTK_KVM_REC_BASE + 0xff,
};
#define XTK_KVM_REC_VM 0xffffffffu

struct xtk_kvm_rec_head {
    uint32_t instance; /* vCPU index, or XTK_KVM_REC_VM */
    uint32_t reserved; /* zero */
};

/*
 * Checks a received packet of n bytes (n may exceed XTK_HVCTL_MSG_MAX when
 * the socket truncated it; truncated says so).  Returns 0 if it can be
 * handled; else a positive errno to reply with, or -1 if the peer must be
 * disconnected.  For requests (reply == 0) also checks the op, its flags
 * and its payload size.
 */
int xtk__hvctl_check(const void *msg, size_t n, int truncated, int reply);

/* The name of an op, for logs ("?" if unknown). */
const char *xtk__hvctl_op_name(unsigned int op);

#endif /* XTK_HVCTL_H */

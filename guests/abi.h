/*
 * guests/abi.h - what xtk-hv, the built-in guest and the host-side checker
 * agree on: the guest-physical layout, the event channel ports, the boot
 * page xtk-hv fills in, and the status page the guest keeps (its
 * self-check).  Freestanding: only <stdint.h>.
 *
 * Layout of guest-physical memory: RAM is one range of frames, 0 to N-1
 * (the stream's pfns are these), placed as a PC's: the first 3 GiB at
 * guest-physical 0, the rest from 4 GiB (XTK_GUEST_HIGH_GPA), above the
 * 32-bit MMIO hole (xtk_guest_ram_gpa).  Below 3 GiB:
 *
 *   0x0000  unused
 *   0x1000  boot page      (struct xtk_guest_boot, written by xtk-hv)
 *   0x2000  status page    (struct xtk_guest_status, written by the guest)
 *   0x3000  console ring   (struct xtk_cons_ring, as Xen's xencons_interface)
 *   0x4000  store ring     (as Xen's xenstore_domain_interface)
 *   0x5000  GDT built by xtk-hv (the guest loads its own)
 *   0x6000  network ring   (struct xtk_net_ring: packets out, see below)
 *   0x8000  page tables built by xtk-hv: PML4, PDPT, then one PD (2 MiB
 *           pages) per GiB, identity-mapping the first 4 GiB and the
 *           RAM above it (up to 13 PDs, to 0x16fff)
 *   1 MiB   the guest image (ELF PT_LOAD segments; bss follows)
 *   4 MiB   workload area: the dirtier's working set and its table
 *
 * Event channels: port P (1..7) is a pair of eventfds.  toolstack->guest:
 * an irqfd on GSI 16+P, which the guest routes through the IOAPIC to
 * vector 0x40+P on vCPU 0.  guest->toolstack: an ioeventfd on the MMIO
 * doorbell at XTK_DOORBELL_GPA + 4*P (a 32-bit write; MMIO, not a port,
 * because kvm-pvm refuses port I/O from guest ring 3, where the guest
 * runs).  Neither goes through xtk-hv's code.
 */
#ifndef XTK_GUEST_ABI_H
#define XTK_GUEST_ABI_H

#include <stddef.h>
#include <stdint.h>

#define XTK_GUEST_BOOT_GPA 0x1000ull
#define XTK_GUEST_STATUS_GPA 0x2000ull
#define XTK_GUEST_CONS_GPA 0x3000ull
#define XTK_GUEST_STORE_GPA 0x4000ull
#define XTK_GUEST_GDT_GPA 0x5000ull
#define XTK_GUEST_NET_GPA 0x6000ull
#define XTK_GUEST_PT_GPA 0x8000ull /* PML4; PDPT +0x1000; PDs +0x2000.. */
#define XTK_GUEST_IMAGE_GPA 0x100000ull
#define XTK_GUEST_WORK_GPA 0x400000ull

#define XTK_GUEST_MIN_MIB 8     /* room for the image and a small workload */
#define XTK_GUEST_MAX_MIB 12288 /* 3 GiB below the MMIO hole, 9 above it */
#define XTK_GUEST_LOW_MAX 0xc0000000ull   /* RAM below the MMIO hole */
#define XTK_GUEST_HIGH_GPA 0x100000000ull /* where the rest of RAM goes */

/* The guest-physical address of byte `off` of RAM (frame off >> 12). */
static inline uint64_t xtk_guest_ram_gpa(uint64_t off)
{
    return off < XTK_GUEST_LOW_MAX
               ? off
               : off - XTK_GUEST_LOW_MAX + XTK_GUEST_HIGH_GPA;
}

/* RAM below the hole, of a guest with mem bytes in all. */
static inline uint64_t xtk_guest_low_bytes(uint64_t mem)
{
    return mem < XTK_GUEST_LOW_MAX ? mem : XTK_GUEST_LOW_MAX;
}
#define XTK_GUEST_MAX_VCPUS 8

/* Event channel ports. */
#define XTK_PORT_CONSOLE 1
#define XTK_PORT_STORE 2
#define XTK_PORT_SUSPEND 3
#define XTK_PORT_ECHO 4 /* the guest echoes every notification at once */
#define XTK_PORT_NET 5  /* guest->host: packets are in the network ring */
#define XTK_PORT_MAX 7
/* Port p's GSI, and the vector the guest takes it on, on vCPU 0 (its
 * IOAPIC pin 16+p programmed so; xtk-hv delivers ports 1-4 as MSIs to
 * the same vector and vCPU). */
#define XTK_PORT_GSI(p) (16 + (p))
#define XTK_PORT_VECTOR(p) (0x40 + (p))
#define XTK_DOORBELL_GPA 0xfebff000ull /* in the MMIO hole */
#define XTK_PORT_DOORBELL(p) (XTK_DOORBELL_GPA + 4 * (p))

/*
 * The yield-to doorbell (issue 15): a 32-bit write here of a vCPU's number
 * by a vCPU that waits for it and finds its host thread preempted
 * (XTK_BOOT_SCHED): xtk-hv gives the writer's CPU to that vCPU's thread (a
 * directed yield: hv/sched.c).  Exits to xtk-hv's vCPU thread.
 */
#define XTK_GUEST_YIELD_TO_GPA (XTK_DOORBELL_GPA + 0x104)

/*
 * The yield doorbell: a 32-bit write here, by a vCPU that has nothing to do
 * until the toolstack acts (a suspended guest, as Xen's SCHEDOP_shutdown
 * with SHUTDOWN_suspend), hands the vCPU to xtk-hv, which parks its thread
 * until the domain is next told to run (RESUME, UNPAUSE, the end of a pause,
 * a dead toolstack's suspend undone).  Not an ioeventfd: the write exits to
 * xtk-hv's vCPU thread.  The toolstack's pause then finds the vCPU parked
 * and need not kick it out of KVM_RUN.  The value written is the number of
 * the suspend it belongs to (status->suspends once that suspend is
 * counted): xtk-hv ignores a yield for a suspend it has already resumed,
 * which a vCPU stopped between its notification and its yield would
 * otherwise make after the resume, and sleep for good.
 */
#define XTK_GUEST_YIELD_GPA (XTK_DOORBELL_GPA + 0x100)

/*
 * "Suspended", and the yield (XTK_BOOT_SUSPENDED_EXIT): a 32-bit write
 * here of the suspend's number, in place of the suspend port's doorbell
 * then the yield doorbell.  xtk-hv takes the vCPU back (as the yield)
 * and then notifies the suspend port for it (as the doorbell's
 * ioeventfd): the toolstack, woken by the notification, never finds
 * vCPU 0 still in the guest, on its way to the yield.  (It did: woken on
 * vCPU 0's CPU, it took that CPU between the two writes, and its STOP
 * then waited for vCPU 0.)  Only where the boot page says so.
 */
#define XTK_GUEST_SUSPENDED_GPA (XTK_DOORBELL_GPA + 0x108)

/* Debug output port xtk-hv copies to the console (one byte per OUT). */
#define XTK_GUEST_DEBUG_PORT 0xe9

/* ---- the boot page -------------------------------------------------- */

#define XTK_GUEST_BOOT_MAGIC 0x544f4f424b5458ull /* "XTKBOOT" */
#define XTK_GUEST_BOOT_VERSION 1
#define XTK_GUEST_CMDLINE_MAX 1024

/* Boot flags. */
#define XTK_BOOT_STORE 0x1u /* a store ring is connected */
#define XTK_BOOT_SCHED 0x2u /* the vCPU threads' states are published */
/* xtk-hv takes "suspended" with the yield (XTK_GUEST_SUSPENDED_GPA) */
#define XTK_BOOT_SUSPENDED_EXIT 0x4u

/*
 * The vCPUs' host threads, as xtk-hv publishes them (XTK_BOOT_SCHED;
 * hv/sched.c): vCPU i's two read-only pages at XTK_GUEST_SCHED_GPA +
 * XTK_GUEST_SCHED_STRIDE * i are Linux's perf_event_mmap_page and one
 * page of PERF_RECORD_SWITCH records, written backward by the host's
 * kernel at each switch of the thread: the newest record starts at
 * data_head (modulo data_size, from data_offset).  A switch out with
 * PERF_RECORD_MISC_SWITCH_OUT_PREEMPT newest: the thread is preempted.
 */
#define XTK_GUEST_SCHED_GPA 0xfd000000ull /* in the MMIO hole */
#define XTK_GUEST_SCHED_STRIDE 0x2000ull
#define XTK_SCHED_DATA_HEAD 1024       /* perf_event_mmap_page.data_head */
#define XTK_SCHED_DATA_OFFSET 1040     /* .data_offset */
#define XTK_SCHED_DATA_SIZE 1048       /* .data_size */
#define XTK_SCHED_RECORD_SWITCH 14     /* PERF_RECORD_SWITCH */
#define XTK_SCHED_MISC_OUT 0x2000u     /* PERF_RECORD_MISC_SWITCH_OUT */
#define XTK_SCHED_MISC_PREEMPT 0x4000u /* ..._SWITCH_OUT_PREEMPT */

/*
 * Is vCPU i's thread preempted now, by its two pages p (at
 * XTK_GUEST_SCHED_GPA + XTK_GUEST_SCHED_STRIDE * i in the guest, their
 * mapping in xtk-hv)?  The newest record, read between two reads of
 * data_head that agree (the kernel did not write over it meanwhile): a
 * switch out by preemption.  No record yet, or a layout it does not
 * know: 0 (running).  The guest's waiters and xtk-hv's directed yield
 * both read it so.
 */
static inline int xtk_sched_preempted(const volatile uint8_t *p)
{
    const volatile uint64_t *headp =
        (const volatile uint64_t *)(p + XTK_SCHED_DATA_HEAD);
    uint64_t off = *(const volatile uint64_t *)(p + XTK_SCHED_DATA_OFFSET);
    uint64_t size = *(const volatile uint64_t *)(p + XTK_SCHED_DATA_SIZE);

    for (int tries = 0; tries < 4; tries++) {
        uint64_t head = __atomic_load_n(headp, __ATOMIC_ACQUIRE);
        const volatile uint8_t *rec = p + off + (head & (size - 1));
        uint32_t type;
        uint16_t misc;

        if (!head || !size || (size & (size - 1)) ||
            off + size > XTK_GUEST_SCHED_STRIDE ||
            (head & (size - 1)) + 8 > size)
            return 0;
        type = *(const volatile uint32_t *)rec;
        misc = *(const volatile uint16_t *)(rec + 4);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(headp, __ATOMIC_ACQUIRE) == head)
            return type == XTK_SCHED_RECORD_SWITCH &&
                   (misc & XTK_SCHED_MISC_OUT) &&
                   (misc & XTK_SCHED_MISC_PREEMPT);
    }
    return 0;
}

struct xtk_guest_boot {
    uint64_t magic;   /* XTK_GUEST_BOOT_MAGIC: xtk-hv booted us */
    uint32_t version; /* XTK_GUEST_BOOT_VERSION */
    uint32_t flags;   /* XTK_BOOT_* */
    uint64_t mem_bytes;
    uint32_t nr_vcpus;
    uint32_t tsc_khz;    /* 0: calibrate */
    uint32_t domid;      /* rewritten when a restored domain resumes */
    uint32_t generation; /* +1 at each resume of a restored domain */
    /* vCPUs (a bit each) xtk-hv has let go of their park that have not
     * run since: runnable, waiting for a host CPU, as a preempted one is
     * (its last context switch, a voluntary one, does not say so). */
    uint64_t waking;
    uint64_t reserved[3];
    char cmdline[XTK_GUEST_CMDLINE_MAX];
};

/* ---- the status page (the guest's self-check) ----------------------- */

#define XTK_GUEST_STATUS_MAGIC 0x5355544154534b58ull /* "XKSTATUS" */

enum xtk_guest_state {
    XTK_GUEST_BOOTING = 0,
    XTK_GUEST_RUNNING = 1,
    XTK_GUEST_SUSPENDED = 2, /* quiesced, waiting on the suspend port */
    XTK_GUEST_FAILED = 3,    /* a self-check or an exception: see message */
};

enum xtk_guest_workload {
    XTK_WORK_IDLE = 0,    /* halts, woken by its timer */
    XTK_WORK_COUNTER = 1, /* vCPU 0 increments counter */
    XTK_WORK_DIRTY = 2,   /* rewrites pages of the working set */
    XTK_WORK_SPIN = 3,    /* all vCPUs take a spin lock in turn */
    XTK_WORK_PORTS = 4,   /* vCPU 0 writes digits to the debug port */
    XTK_WORK_NMI = 5,     /* vCPU 0 sends vCPU 1 NMIs, one at a time */
};

/*
 * The dirtier: every `stride`th page of `pages` pages from
 * XTK_GUEST_WORK_GPA (the working set: `pages / stride` pages, rounded
 * up) is rewritten in turn, `rate` pages per second (0: flat out).  A
 * rewrite of page p with sequence number s fills every 8-byte word i with
 * xtk_guest_pattern(p, s, i) and records s in the table, which follows
 * the working-set area (one uint64_t per page of the area), and then adds
 * s - old to table_sum.
 */
struct xtk_guest_dirty {
    uint64_t pages;     /* size of the area, in pages */
    uint64_t stride;    /* 1: every page */
    uint64_t rate;      /* pages per second; 0: as fast as it can */
    uint64_t seq;       /* last sequence number written (0: none yet) */
    uint64_t table_sum; /* sum of the table's entries */
    uint64_t table_gpa;
    uint64_t passes;  /* full passes over the working set */
    uint64_t writing; /* pfn being rewritten, 0 between rewrites */
};

/*
 * The spin-lock workload: every vCPU takes `lock` (an xchg spin lock), checks
 * that guard_a == guard_b (the section is exclusive), sets both to a new
 * value, counts in shared_count and in per_cpu[its id], and releases.
 * With the guest stopped outside a section, the sum of per_cpu equals
 * shared_count.
 */
struct xtk_guest_spin {
    uint32_t lock;
    uint32_t holder; /* vCPU id + 1 while held */
    uint64_t guard_a, guard_b;
    uint64_t shared_count;
    uint64_t per_cpu[XTK_GUEST_MAX_VCPUS];
};

/*
 * The idle and counter workloads' self-check.  At boot the guest fills
 * `pages` pages from XTK_GUEST_WORK_GPA with xtk_guest_pattern(pfn, seed,
 * i), and keeps in the page after them (mirror_gpa) the complement of its
 * progress word (the counter; for idle, vCPU 0's heartbeat), written
 * just after the word itself: a restore that lost or tore a page, or put
 * back pages from different instants, breaks the pattern or the mirror.
 */
#define XTK_GUEST_FILL_PAGES 16

struct xtk_guest_fill {
    uint64_t pages; /* 0: no fill (the dirtier and spin have their own) */
    uint64_t seed;
    uint64_t mirror_gpa;
};

/*
 * KVM's steal-time area (Linux's struct kvm_steal_time, 64 bytes, 64-byte
 * aligned): the guest gives its address to MSR_KVM_STEAL_TIME and the
 * host's kernel keeps it: `steal`, the nanoseconds the vCPU's thread was
 * runnable but not running, and `preempted` bit 0, set when the thread is
 * scheduled out while it runs the vCPU and cleared when it runs it again.
 */
struct xtk_guest_steal {
    uint64_t steal;
    uint32_t version; /* odd while the host writes */
    uint32_t flags;
    uint8_t preempted; /* XTK_GUEST_STEAL_PREEMPTED */
    uint8_t pad8[3];
    uint32_t pad[11];
} __attribute__((aligned(64)));
_Static_assert(sizeof(struct xtk_guest_steal) == 64, "kvm_steal_time");
#define XTK_GUEST_STEAL_PREEMPTED 0x1u

/*
 * The lock-holder measures (issue 15; seeds 000 and 004).  A waiter on the
 * spin lock, or vCPU 0 waiting for the others to park, looks at the vCPU
 * it waits for: preempted (what xtk-hv publishes, XTK_BOOT_SCHED, or
 * KVM's steal-time flag), it does not spin on it but gives its own time
 * to it (xtk-hv's yield-to doorbell, a directed yield: the host runs that
 * vCPU's thread in the waiter's place).  pv=0 on the command line turns
 * both off (the features stay as found, `used` says 0).
 */
#define XTK_GUEST_PV_STEAL 0x1u     /* the steal-time area is on */
#define XTK_GUEST_PV_YIELD 0x2u     /* the host takes directed yields */
#define XTK_GUEST_PV_PREEMPTED 0x4u /* it can tell a preempted vCPU */

struct xtk_guest_pv {
    uint32_t features; /* XTK_GUEST_PV_*: what the guest found */
    uint32_t used;     /* the same bits: what it uses (pv=0: none) */
    /* The spin workload's lock: waits (an acquisition that found it
     * held), and the longest and total wait, in ns of the guest's clock. */
    uint64_t lock_waits;
    uint64_t lock_wait_max_ns;
    uint64_t lock_wait_total_ns;
    /* Per vCPU: times it found the vCPU it waited for preempted, and
     * directed yields it asked for. */
    uint64_t saw_preempted[XTK_GUEST_MAX_VCPUS];
    uint64_t yields[XTK_GUEST_MAX_VCPUS];
};

struct xtk_guest_status {
    uint64_t magic;    /* XTK_GUEST_STATUS_MAGIC once booted */
    uint32_t state;    /* enum xtk_guest_state */
    uint32_t workload; /* enum xtk_guest_workload */
    uint32_t nr_vcpus_up;
    uint32_t errors; /* self-check failures seen by the guest itself */
    uint64_t boot_tsc;
    uint64_t ticks;        /* timer interrupts on vCPU 0 */
    uint64_t counter;      /* XTK_WORK_COUNTER */
    uint64_t suspends;     /* completed suspends */
    uint64_t resumes;      /* and resumes */
    uint64_t store_events; /* control/shutdown watch events seen */
    uint64_t echoes;       /* echo-port notifications answered */
    uint64_t heartbeat[XTK_GUEST_MAX_VCPUS]; /* each vCPU's loop count */
    struct xtk_guest_dirty dirty;
    struct xtk_guest_spin spin;
    struct xtk_guest_fill fill;
    char message[256]; /* why state is FAILED */
    /* The last and the longest suspend as the guest saw it: from the
     * request's arrival to its work going on, on a clock that runs while
     * the domain is stopped (Xen's system time on Xen). */
    uint64_t stopped_last_ns, stopped_max_ns;
    uint64_t moves;    /* resumes in a new domain (a restore, a migration) */
    uint64_t net_seq;  /* the last packet's number (net=MS), 0: none yet */
    uint32_t features; /* XTK_GUEST_F_*: what the toolstack may do */
    uint32_t reserved;
    struct xtk_guest_pv pv;
    /* KVM's steal-time areas (MSR_KVM_STEAL_TIME), one per vCPU, written
     * by the host's kernel (XTK_GUEST_PV_STEAL). */
    struct xtk_guest_steal steal[XTK_GUEST_MAX_VCPUS];
    /* Idle and counter on KVM: RAM's last page, through its address
     * top_gpa (above the hole in a guest over 3 GiB): word 0 a second
     * copy of the mirror, written just after it (so a live migration
     * must carry that page's changes too), words 1.. written at boot
     * with xtk_guest_pattern(top_frame, fill.seed, i).  Checked after
     * every resume, and by the host at frame top_frame: RAM placed
     * where the guest does not find it breaks it.  0: none. */
    uint64_t top_gpa, top_frame;
    /* The nmi workload: vCPU 0 sends vCPU 1 an NMI (an IPI, delivery mode
     * NMI), counts it in nmi_sent, and sends the next once vCPU 1's
     * handler has counted it in nmi_taken.  An NMI lost (one a sibling
     * sent to a stopped vCPU, left out of its saved state) stops it: the
     * guest fails after two seconds of its ticks without the NMI. */
    uint64_t nmi_sent, nmi_taken;
    /* Suspends vCPU 0 said with another vCPU not parked: the host stopped
     * it where it was (XTK_GUEST_F_APS_STOPPABLE). */
    uint64_t unparked_suspends;
};
_Static_assert(sizeof(struct xtk_guest_status) <= 4096, "one page");

/*
 * The other vCPUs may be stopped by the hypervisor from the moment a
 * suspend is requested: vCPU 0 takes the request and says "suspended"
 * without them, and they park after the resume.  A guest whose vCPU 0
 * needs the others to suspend (Linux's stop_machine) must not set it.
 */
#define XTK_GUEST_F_APS_STOPPABLE 0x1u

/* tests/kvm/test-qemu.sh reads the counter through QEMU's monitor here. */
_Static_assert(offsetof(struct xtk_guest_status, counter) == 40,
               "the counter moved: update tests/kvm/test-qemu.sh");

/* The word a dirtier rewrite of page pfn with sequence seq puts at i. */
static inline uint64_t xtk_guest_pattern(uint64_t pfn, uint64_t seq, uint64_t i)
{
    uint64_t x = (pfn << 32) ^ (seq * 0x9e3779b97f4a7c15ull) ^ i;

    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

/* ---- the console ring (Xen's PV console layout) --------------------- */

struct xtk_cons_ring {
    char in[1024];
    char out[2048];
    uint32_t in_cons, in_prod;
    uint32_t out_cons, out_prod;
};

/* ---- the network ring ------------------------------------------------
 *
 * A minimal network device: the guest puts packets (at most
 * XTK_NET_DATA_MAX bytes each) in slots, advances prod and rings
 * XTK_PORT_NET; xtk-hv takes them in order, advances cons, and sends each
 * to the domain's network sink (xtk create --net), or holds it until the
 * checkpoint that covers it is safe at a backup (xtk-hv(8), "Output").
 * The guest never waits: with every slot taken it sends later.
 */
#define XTK_NET_SLOTS 15
#define XTK_NET_DATA_MAX 252

struct xtk_net_ring {
    uint32_t prod, cons; /* free-running; slot = index % XTK_NET_SLOTS */
    uint32_t reserved[14];
    struct {
        uint32_t len;
        char data[XTK_NET_DATA_MAX];
    } slot[XTK_NET_SLOTS];
};
_Static_assert(sizeof(struct xtk_net_ring) <= 4096, "one page");

#endif /* XTK_GUEST_ABI_H */

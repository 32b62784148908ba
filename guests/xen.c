/*
 * xen.c - the built-in guest on Xen, as a PVH domain: the few pieces of
 * Xen's guest interface it needs where xtk-hv gives it eventfd doorbells,
 * a boot page and fixed ring pages.
 *
 *   hypercalls   through the hypercall page Xen fills in (its MSR is in
 *                Xen's CPUID leaves); only from ring 0: Xen refuses a
 *                hypercall from an HVM guest's ring 3, so ring 3 asks
 *                through the SYS_HYPERCALL syscall (kernel.c);
 *   events       the shared-info page (mapped over a page of our bss with
 *                XENMEM_add_to_physmap, as Linux does) and the domain-wide
 *                callback vector (HVM_PARAM_CALLBACK_IRQ): one interrupt
 *                for every pending port, which xen_upcall() turns into
 *                kernel_events bits; no EOI, Xen injects it directly;
 *   rings        the console and store rings are the pages the domain
 *                builder put in HVM_PARAM_CONSOLE_PFN / STORE_PFN, their
 *                ports in *_EVTCHN;
 *   suspend      a port of our own, allocated unbound for dom0 and
 *                published as device/suspend/event-channel; a suspend is
 *                SCHEDOP_shutdown(SHUTDOWN_suspend), which returns 1 when
 *                the toolstack resumed this same domain (a checkpoint:
 *                libxenguest sets rax), 0 in a new domain after a restore,
 *                where shared info, the callback, the ports and the store
 *                are set up again;
 *   time         Xen's per-vCPU time (vcpu_time_info): the host's system
 *                time, which goes on across a save and a migration on one
 *                host, where the TSC Xen restores does not;
 *   vCPUs        counted with VCPUOP_is_up and started in 64-bit mode at
 *                _start64 with VCPUOP_initialise and VCPUOP_up;
 *   runstate     each vCPU's runstate area (VCPUOP_register_runstate_
 *                memory_area, registered by vCPU 0 for all, at boot and
 *                again in a new domain): Xen rewrites it at each switch,
 *                and RUNSTATE_runnable is a vCPU preempted (pv.c), to
 *                which a waiter gives way with SCHEDOP_yield (Xen has no
 *                directed yield).
 *
 * The constants and layouts are those of Xen's public headers (xen.h,
 * hvm/params.h, event_channel.h, memory.h, sched.h, vcpu.h,
 * hvm/hvm_vcpu.h, arch-x86/hvm/start_info.h), written out here: the guest
 * is freestanding.
 */
#include "guest.h"

/* Hypercall numbers and sub-operations. */
#define HC_MEMORY_OP 12
#define HC_VCPU_OP 24
#define HC_SCHED_OP 29
#define HC_EVTCHN_OP 32
#define HC_HVM_OP 34
#define XENMEM_ADD_TO_PHYSMAP 7
#define XENMAPSPACE_SHARED_INFO 0
#define VCPUOP_INITIALISE 0
#define VCPUOP_UP 1
#define VCPUOP_IS_UP 3
#define VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA 5
#define RUNSTATE_RUNNABLE 1
#define SCHEDOP_YIELD 0
#define VCPU_HVM_MODE_64B 1
#define SCHEDOP_SHUTDOWN 2
#define SHUTDOWN_SUSPEND 2
#define EVTCHNOP_SEND 4
#define EVTCHNOP_ALLOC_UNBOUND 6
#define EVTCHNOP_UNMASK 9
#define HVMOP_SET_PARAM 0
#define HVMOP_GET_PARAM 1
#define HVM_PARAM_CALLBACK_IRQ 0
#define HVM_PARAM_STORE_PFN 1
#define HVM_PARAM_STORE_EVTCHN 2
#define HVM_PARAM_CONSOLE_PFN 17
#define HVM_PARAM_CONSOLE_EVTCHN 18
#define CALLBACK_TYPE_VECTOR 2ull
#define DOMID_SELF 0x7ff0
#define START_MAGIC 0x336ec578u
#define MEMMAP_RAM 1

struct vcpu_time {
    uint32_t version, pad0;
    uint64_t tsc_timestamp, system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags, pad1[2];
};

struct vcpu_info {
    uint8_t upcall_pending, upcall_mask;
    uint8_t pad[6];
    uint64_t pending_sel;
    uint64_t arch[2];
    struct vcpu_time time;
};

struct shared_info {
    struct vcpu_info vcpu[32];
    uint64_t pending[64]; /* at 2048 */
    uint64_t mask[64];    /* at 2560 */
};

_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info");
_Static_assert(offsetof(struct shared_info, pending) == 2048, "shared_info");
_Static_assert(offsetof(struct shared_info, mask) == 2560, "shared_info");

struct hvm_param {
    uint16_t domid;
    uint32_t index;
    uint64_t value;
};

struct add_to_physmap {
    uint16_t domid, size;
    uint32_t space;
    uint64_t idx, gpfn;
};

struct alloc_unbound {
    uint16_t dom, remote_dom;
    uint32_t port;
};

struct vcpu_hvm_context {
    uint32_t mode, pad;
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, rip, rflags;
    uint64_t cr0, cr3, cr4, efer;
    uint64_t pad2; /* the union is as large as the 32-bit form */
};

_Static_assert(sizeof(struct vcpu_hvm_context) == 128, "vcpu_hvm_context");

struct start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries, reserved;
};

struct memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

extern uint64_t pvh_start_info; /* entry.S */
extern char boot_pml4[], _start64[];

/* vcpu.h's vcpu_runstate_info. */
struct runstate {
    int32_t state; /* RUNSTATE_* */
    uint32_t pad;
    uint64_t state_entry_time;
    uint64_t time[4]; /* ns in each state */
};
_Static_assert(sizeof(struct runstate) == 48, "vcpu_runstate_info");

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));
static struct runstate runstate[XTK_GUEST_MAX_VCPUS]
    __attribute__((aligned(64)));
static volatile int runstate_on;
static uint8_t shared_page[4096] __attribute__((aligned(4096)));
static struct shared_info *const shinfo = (void *)shared_page;

/* Logical port (abi.h: XTK_PORT_*) -> Xen's port; 0: none. */
static volatile uint32_t xen_port[XTK_PORT_MAX + 1];
static uint32_t xen_vcpus = 1;
int xen_mode;

/* ---- ring 0 --------------------------------------------------------- */

long xen_hypercall(unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3)
{
    long r;
    uint8_t *entry = hypercall_page + 32 * op;

    __asm__ __volatile__("call *%[entry]"
                         : "=a"(r), "+D"(a1), "+S"(a2), "+d"(a3)
                         : [entry] "r"(entry)
                         : "memory", "rcx", "r8", "r10", "r11");
    return r;
}

/* Shared info over our page, and the callback vector: at boot and again
 * in a new domain (neither travels with a saved guest). */
static int map_shared_info(void)
{
    struct add_to_physmap m = {DOMID_SELF, 0, XENMAPSPACE_SHARED_INFO, 0,
                               (uint64_t)shared_page / PAGE_SIZE};
    struct hvm_param p = {DOMID_SELF, HVM_PARAM_CALLBACK_IRQ,
                          CALLBACK_TYPE_VECTOR << 56 | VEC_XEN_UPCALL};

    if (xen_hypercall(HC_MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, (uint64_t)&m, 0))
        return -1;
    /* Every vCPU's runstate area, registered from here for all (Xen
     * copies the vCPU's runstate in at once): an area the hypervisor
     * does not keep reads as "not preempted". */
    runstate_on = 1;
    for (uint32_t i = 0; i < xen_vcpus; i++) {
        uint64_t area = (uint64_t)&runstate[i];
        if (xen_hypercall(HC_VCPU_OP, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, i,
                          (uint64_t)&area))
            runstate_on = 0;
    }
    for (uint32_t i = 0; i < xen_vcpus; i++)
        WRITE_ONCE(shinfo->vcpu[i].upcall_mask, 0);
    return xen_hypercall(HC_HVM_OP, HVMOP_SET_PARAM, (uint64_t)&p, 0) ? -1 : 0;
}

/*
 * From kernel_entry() on vCPU 0 of a PVH boot, before anything else: the
 * hypercall page, shared info, the callback, the vCPU count.  Returns 0,
 * or -1 when this is not Xen (the guest then fails its boot).
 */
int xen_early(void)
{
    const struct start_info *si = (const void *)pvh_start_info;
    uint32_t base, a, b, c, d;

    if (si->magic != START_MAGIC)
        return -1;
    for (base = 0x40000000; base < 0x40010000; base += 0x100) {
        cpuid(base, &a, &b, &c, &d);
        if (b == 0x566e6558 && c == 0x65584d4d && d == 0x4d4d566e &&
            a - base >= 2)
            break;
    }
    if (base >= 0x40010000)
        return -1;
    cpuid(base + 2, &a, &b, &c, &d);
    if (!a)
        return -1;
    wrmsr(b, (uint64_t)hypercall_page);
    xen_mode = 1;
    while (xen_vcpus < XTK_GUEST_MAX_VCPUS &&
           xen_hypercall(HC_VCPU_OP, VCPUOP_IS_UP, xen_vcpus, 0) >= 0)
        xen_vcpus++;
    return map_shared_info();
}

/* From kernel_entry() once the IDT is ready: the other vCPUs, at
 * _start64 on our page tables. */
void xen_start_aps(void)
{
    for (uint32_t i = 1; i < xen_vcpus; i++) {
        struct vcpu_hvm_context ctx = {
            .mode = VCPU_HVM_MODE_64B,
            .rdi = i,
            .rip = (uint64_t)_start64,
            .rflags = 0x2,
            .cr0 = 0x80000011, /* PG, ET, PE */
            .cr3 = (uint64_t)boot_pml4,
            .cr4 = 0x20,   /* PAE */
            .efer = 0x500, /* LME, LMA */
        };
        if (xen_hypercall(HC_VCPU_OP, VCPUOP_INITIALISE, i, (uint64_t)&ctx) ||
            xen_hypercall(HC_VCPU_OP, VCPUOP_UP, i, 0)) {
            xen_vcpus = i; /* run on the ones that started */
            return;
        }
    }
}

/* The callback vector (kernel.c): every pending, unmasked port, cleared,
 * as kernel_events bits. */
void xen_upcall(void)
{
    struct vcpu_info *v = &shinfo->vcpu[0];
    uint32_t ev = 0;

    WRITE_ONCE(v->upcall_pending, 0);
    uint64_t sel = __atomic_exchange_n(&v->pending_sel, 0, __ATOMIC_SEQ_CST);
    while (sel) {
        unsigned int w = (unsigned int)__builtin_ctzll(sel);
        sel &= sel - 1;
        uint64_t bits =
            READ_ONCE(shinfo->pending[w]) & ~READ_ONCE(shinfo->mask[w]);
        while (bits) {
            unsigned int bit = (unsigned int)__builtin_ctzll(bits);
            uint32_t port = w * 64 + bit;
            bits &= bits - 1;
            __atomic_fetch_and(&shinfo->pending[w], ~(1ull << bit),
                               __ATOMIC_SEQ_CST);
            if (port == xen_port[XTK_PORT_SUSPEND])
                ev |= EV_SUSPEND;
            else if (port == xen_port[XTK_PORT_STORE])
                ev |= EV_STORE;
        }
    }
    if (ev)
        __atomic_fetch_or(&kernel_events, ev, __ATOMIC_SEQ_CST);
}

/* SYS_XEN_SUSPEND: 1 resumed in this domain, 0 in a new one (shared info
 * and the callback set up again here), negative: refused. */
long xen_suspend_kernel(void)
{
    uint32_t reason = SHUTDOWN_SUSPEND;
    long r = xen_hypercall(HC_SCHED_OP, SCHEDOP_SHUTDOWN, (uint64_t)&reason, 0);

    if (r == 0 && map_shared_info() < 0)
        return -1;
    return r;
}

/* ---- ring 3 --------------------------------------------------------- */

int xen_runstate_on(void)
{
    return runstate_on;
}

int xen_vcpu_runnable(unsigned int cpu)
{
    return cpu < xen_vcpus &&
           READ_ONCE(runstate[cpu].state) == RUNSTATE_RUNNABLE;
}

static long hcall(unsigned int op, uint64_t a1, uint64_t a2)
{
    uint64_t args[3] = {op, a1, a2};

    return (long)sys_call(SYS_HYPERCALL, (uint64_t)args, 0);
}

static uint64_t get_param(uint32_t index)
{
    struct hvm_param p = {DOMID_SELF, index, 0};

    return hcall(HC_HVM_OP, HVMOP_GET_PARAM, (uint64_t)&p) ? 0 : p.value;
}

void xen_yield(void)
{
    hcall(HC_SCHED_OP, SCHEDOP_YIELD, 0);
}

void xen_notify(unsigned int port)
{
    uint32_t p = xen_port[port];

    if (p)
        hcall(HC_EVTCHN_OP, EVTCHNOP_SEND, (uint64_t)&p);
}

uint32_t xen_suspend_port(void)
{
    return xen_port[XTK_PORT_SUSPEND];
}

static void unmask(uint32_t port)
{
    __atomic_fetch_and(&shinfo->mask[port / 64], ~(1ull << (port % 64)),
                       __ATOMIC_SEQ_CST);
    if (READ_ONCE(shinfo->pending[port / 64]) & (1ull << (port % 64)))
        hcall(HC_EVTCHN_OP, EVTCHNOP_UNMASK, (uint64_t)&port);
}

/*
 * The rings and ports of this domain: at boot and in each new domain (the
 * builder's ports differ from the saved ones; the ring pages travel with
 * the memory).  A suspend port of our own, for dom0 to bind.
 */
int xen_setup(void **cons, void **store)
{
    struct alloc_unbound a = {DOMID_SELF, 0, 0};
    uint64_t cpfn = get_param(HVM_PARAM_CONSOLE_PFN);
    uint64_t spfn = get_param(HVM_PARAM_STORE_PFN);

    xen_port[XTK_PORT_CONSOLE] = (uint32_t)get_param(HVM_PARAM_CONSOLE_EVTCHN);
    xen_port[XTK_PORT_STORE] = (uint32_t)get_param(HVM_PARAM_STORE_EVTCHN);
    *cons = cpfn ? (void *)(cpfn * PAGE_SIZE) : NULL;
    *store =
        spfn && xen_port[XTK_PORT_STORE] ? (void *)(spfn * PAGE_SIZE) : NULL;
    if (xen_port[XTK_PORT_STORE])
        unmask(xen_port[XTK_PORT_STORE]);
    if (hcall(HC_EVTCHN_OP, EVTCHNOP_ALLOC_UNBOUND, (uint64_t)&a))
        return -1;
    xen_port[XTK_PORT_SUSPEND] = a.port;
    unmask(a.port);
    return 0;
}

/* A suspend: 1 resumed here, 0 in a new domain (xen_setup() again), -1. */
long xen_suspend(void)
{
    return (long)sys_call(SYS_XEN_SUSPEND, 0, 0);
}

uint32_t xen_nr_vcpus(void)
{
    return xen_vcpus;
}

/* The command line and RAM size from the start info. */
const char *xen_cmdline(uint64_t *mem_bytes)
{
    const struct start_info *si = (const void *)pvh_start_info;
    const struct memmap_entry *m = (const void *)si->memmap_paddr;

    *mem_bytes = 0;
    if (si->version >= 1)
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            if (m[i].type == MEMMAP_RAM)
                *mem_bytes += m[i].size;
    return si->cmdline_paddr ? (const char *)si->cmdline_paddr : "";
}

/* Xen's system time in ns, from vCPU 0's time info. */
uint64_t xen_clock_ns(void)
{
    const struct vcpu_time *t = &shinfo->vcpu[0].time;
    uint32_t ver;
    uint64_t ns;

    do {
        ver = READ_ONCE(t->version);
        barrier();
        uint64_t delta = rdtsc() - t->tsc_timestamp;
        if (t->tsc_shift >= 0)
            delta <<= t->tsc_shift;
        else
            delta >>= -t->tsc_shift;
        ns =
            t->system_time +
            (uint64_t)(((unsigned __int128)delta * t->tsc_to_system_mul) >> 32);
        barrier();
    } while ((ver & 1) || ver != READ_ONCE(t->version));
    return ns;
}

/*
 * main.c - the built-in guest's ring 3: boot, console, suspend.
 *
 * kernel.c drops every vCPU here.  vCPU 0 sets everything up and runs the
 * workload's main loop, which calls poll_events() between steps; interrupt
 * handlers only set bits in kernel_events.  The other vCPUs join once
 * vCPU 0 lets them (smp_go).  Devices (LAPIC, IOAPIC) are reached by MMIO,
 * doorbells by port writes (IOPL 3), both from ring 3.
 *
 * Suspend (the event channel or the store asks): vCPU 0 tells the others
 * to park (quiesce; under xtk-hv and on Xen the host stops them where they
 * are and they park after the resume, woken by an IPI; on plain hardware
 * it wakes them and waits for them first), marks the status page SUSPENDED,
 * rings the suspend doorbell (the toolstack's "suspended" notification; under
 * an xtk-hv that offers it, with its yield in one exit) and sleeps until the
 * suspend port fires again, which means "resume".  On Xen it
 * calls SCHEDOP_shutdown(SHUTDOWN_suspend) instead, and Xen tells the
 * toolstack (xen.c).  It then checks its workload's data, reconnects to
 * the store if it woke up in a new domain, and releases the others.
 *
 * Three platforms: xtk-hv (boot page), Xen PVH (xen.c), and plain
 * multiboot (QEMU: no rings, COM1 for the console).
 */
#include "guest.h"

#define LAPIC_ID 0x20
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
#define IOAPIC_BASE 0xfec00000ull
#define TICK_NS 10000000u /* the in-kernel LAPIC counts nanoseconds */
#define COM1 0x3f8

struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

struct xtk_guest_status *const status = (void *)XTK_GUEST_STATUS_GPA;
struct xtk_guest_boot *boot;
uint32_t nr_vcpus = 1;
uint64_t tsc_khz;
volatile uint32_t quiesce;

static char cmdline[XTK_GUEST_CMDLINE_MAX];
static uint64_t mem_bytes, boot_clock;
static struct xtk_cons_ring *cons_ring; /* NULL: no console ring */
static void *store_page;                /* NULL: no store */
static uint32_t seen_generation;
static uint32_t console_lock;
static struct xtk_net_ring *net_ring; /* NULL: none (not under xtk-hv) */
static uint64_t net_period_ns, net_next;
static volatile uint32_t smp_go, parked;
/* vCPU 0 sleeps until the last of the others parks (after a resume):
 * that one sends it VEC_PARKED. */
static volatile uint32_t parked_waiter;
static volatile uint8_t ap_parked[XTK_GUEST_MAX_VCPUS];
/* Under xtk-hv and on Xen the host stops the other vCPUs once vCPU 0 has
 * said "suspended" (do_suspend); apstop=guest on the command line parks
 * them first instead, as on plain hardware (for comparison). */
static int host_stops_aps;

static void lapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(LAPIC_BASE + reg, v);
}

static uint32_t lapic_read(uint32_t reg)
{
    return mmio_read32(LAPIC_BASE + reg);
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

/* Xen's clock on Xen: a restored guest's TSC starts where it stopped. */
uint64_t now_ns(void)
{
    if (xen_mode)
        return xen_clock_ns() - boot_clock;
    return (rdtsc() - status->boot_tsc) * 1000000ull / tsc_khz;
}

uint64_t guest_mem_bytes(void)
{
    return mem_bytes;
}

/* ---- console -------------------------------------------------------- */

static void ring_put(const char *s, size_t n)
{
    struct xtk_cons_ring *r = cons_ring;
    uint32_t prod = r->out_prod;

    for (size_t i = 0; i < n; i++) {
        /* Full: drop rather than wait on a host that does not read. */
        if (prod - READ_ONCE(r->out_cons) >= sizeof(r->out))
            break;
        r->out[prod % sizeof(r->out)] = s[i];
        prod++;
    }
    barrier();
    WRITE_ONCE(r->out_prod, prod);
    evtchn_notify(XTK_PORT_CONSOLE);
}

static void serial_put(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (int spin = 0; spin < 1000 && !(user_inb(COM1 + 5) & 0x20); spin++)
            cpu_relax();
        user_outb(COM1, (uint8_t)s[i]);
    }
}

void console_write(const char *s, size_t n)
{
    /* Bounded: an exception handler may find the lock held. */
    for (int spin = 0; spin < 1000000 && xchg32(&console_lock, 1); spin++)
        cpu_relax();
    if (cons_ring)
        ring_put(s, n);
    else if (xen_mode)
        for (size_t i = 0; i < n; i++) /* Xen's debug port, to its log */
            user_outb(XTK_GUEST_DEBUG_PORT, (uint8_t)s[i]);
    else
        serial_put(s, n);
    WRITE_ONCE(console_lock, 0);
}

void guest_fail(const char *why)
{
    size_t n = strlen(why);

    if (n >= sizeof(status->message))
        n = sizeof(status->message) - 1;
    memcpy(status->message, why, n);
    status->message[n] = 0;
    status->errors++;
    WRITE_ONCE(status->state, XTK_GUEST_FAILED);
    kprintf("xtk-guest: FAILED: %s\n", why);
}

/* ---- devices -------------------------------------------------------- */

static void send_wake_ipi(void)
{
    if (nr_vcpus < 2)
        return;
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, VEC_WAKE | (3u << 18)); /* all but self */
}

/* An NMI to vCPU cpu (its APIC id): physical destination, delivery mode
 * NMI, asserted. */
void send_nmi(unsigned int cpu)
{
    lapic_write(LAPIC_ICR_HI, cpu << 24);
    lapic_write(LAPIC_ICR_LO, (4u << 8) | (1u << 14));
}

/* Routes event channel port p's GSI to its vector on vCPU 0 (edge,
 * active high, fixed, physical). */
static void ioapic_route_port(unsigned int p)
{
    unsigned int pin = XTK_PORT_GSI(p);

    ioapic_write(0x11 + 2 * pin, 0);
    ioapic_write(0x10 + 2 * pin, XTK_PORT_VECTOR(p));
}

/* TSC kHz from the LAPIC timer, which counts nanoseconds under KVM. */
static uint64_t calibrate_tsc(void)
{
    uint64_t t0, t1;

    lapic_write(LAPIC_TIMER_DIV, 0xb);
    lapic_write(LAPIC_LVT_TIMER, 0x10000 | VEC_TIMER); /* masked */
    lapic_write(LAPIC_TIMER_INIT, 0xffffffffu);
    t0 = rdtsc();
    while (0xffffffffu - lapic_read(LAPIC_TIMER_CUR) < 10000000u)
        cpu_relax();
    t1 = rdtsc();
    return (t1 - t0) / 10; /* cycles in 10 ms, per ms */
}

static void timer_start(void)
{
    lapic_write(LAPIC_TIMER_DIV, 0xb);
    lapic_write(LAPIC_LVT_TIMER, (1u << 17) | VEC_TIMER); /* periodic */
    lapic_write(LAPIC_TIMER_INIT, TICK_NS);
}

/* ---- suspend -------------------------------------------------------- */

/* vCPU 0 waits for the others to park: one its host has preempted gets
 * vCPU 0's time (pv.c) rather than a spin. */
static void yield_to_unparked(void)
{
    for (unsigned int c = 1; c < nr_vcpus; c++)
        if (!READ_ONCE(ap_parked[c]) && pv_wait_on(0, c))
            return;
}

/*
 * Nothing is printed before "suspended" is signalled: a console write rings
 * the console's doorbell, which wakes xtk-hv's main thread to drain the
 * ring just when the toolstack's STOP needs it (and costs the guest a trap),
 * so the line about the suspend is written once the guest runs again.
 */
static void wait_parked(void)
{
    for (unsigned int spins = 0; READ_ONCE(parked) != nr_vcpus - 1;) {
        if (++spins % PV_CHECK_SPINS == 0)
            yield_to_unparked();
        cpu_relax();
    }
}

/* A suspend request has come (the store's is taken here). */
static int request_came(void)
{
    if (READ_ONCE(kernel_events) & EV_SUSPEND)
        return 1;
    return store_page &&
           ((take_events(EV_STORE) & EV_STORE) || store_pending()) &&
           store_poll();
}

/*
 * After a resume: the others parked, unless a suspend request comes
 * first (1 if one did).  Under xtk-hv vCPU 0 spins, giving its CPU to a
 * preempted one it waits for (a directed yield, pv.c).  On Xen, whose
 * yield is not directed, it sleeps instead: a vCPU that spun through its
 * time there waits longer for a CPU when the next request comes (Xen's
 * credit scheduler: docs/benchmarks.md), and the others, just let go,
 * need the CPU to reach their park.  The last to park wakes it
 * (ap_poll).  (Sleeping under xtk-hv cost an idle 8-vCPU guest's next
 * suspend ~40 us.)
 */
static int wait_parked_or_request(void)
{
    int r = 0;

    if (!xen_mode) {
        for (unsigned int spins = 0; READ_ONCE(parked) != nr_vcpus - 1;) {
            if (request_came())
                return 1;
            if (++spins % PV_CHECK_SPINS == 0)
                yield_to_unparked();
            cpu_relax();
        }
        return 0;
    }
    for (;;) {
        take_events(EV_PARKED);
        __atomic_store_n(&parked_waiter, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&parked, __ATOMIC_SEQ_CST) == nr_vcpus - 1)
            break;
        if ((r = request_came()))
            break;
        sys_wait(SYS_WAIT_SET, &kernel_events,
                 EV_PARKED | EV_SUSPEND | EV_STORE);
    }
    WRITE_ONCE(parked_waiter, 0);
    return r;
}

/* To vCPU 0 (APIC id 0): VEC_PARKED, fixed, physical destination. */
static void send_parked_ipi(void)
{
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, VEC_PARKED);
}

/*
 * The other vCPUs are told to park (quiesce, and the wake-up IPI for
 * halted ones).  Under xtk-hv vCPU 0 does not wait for them before it says
 * "suspended": xtk-hv stops every vCPU itself once told, wherever each one
 * is, as Xen stops an HVM guest's vCPUs.  Waiting for them is what an
 * overcommitted SMP guest's suspend spent its time on: siblings the host
 * had preempted, or halted ones noticing late (issue 15).  They park after
 * the resume instead, before vCPU 0 checks the workload's data, so the
 * check still sees them quiet; and the halted ones are woken for that only
 * then, after the resume: woken during the suspend, each was a thread
 * woken by vCPU 0 in KVM (vCPU 0's thread: +80 us of CPU per suspend with
 * 7 halted ones) for nothing, xtk-hv stopping it anyway (an idle 8-vCPU
 * guest's suspend p50 765 -> 697 us).  On Xen the same: Xen pauses every
 * vCPU of a domain one of them shuts down for a suspend, wherever it is,
 * and its save keeps them all.  In a new domain they run on from there as
 * soon as it is unpaused, before vCPU 0 has mapped shared info and
 * registered the runstate areas again: until they park they may read a
 * stale clock and stale runstates, which only the spin lock's measures
 * use.  On plain hardware, and with apstop=guest, they park first.
 */
static void do_suspend(const char *how)
{
    uint64_t t0 = now_ns(), stopped;
    int new_domain = 0, moved = 0;

    WRITE_ONCE(quiesce, 1);
    if (!host_stops_aps) {
        send_wake_ipi();
        wait_parked();
    }

again:
    take_events(EV_SUSPEND); /* from now on, the port means "resume" */
    /* The count first: a host that sees "suspended" sees this suspend's
     * number (xtk-hv resumes each number once). */
    status->suspends++;
    if (READ_ONCE(parked) != nr_vcpus - 1)
        status->unparked_suspends++;
    barrier();
    WRITE_ONCE(status->state, XTK_GUEST_SUSPENDED);
    barrier();
    if (xen_mode) {
        long r = xen_suspend(); /* Xen tells the toolstack */
        if (r < 0) {
            guest_fail("SCHEDOP_shutdown(suspend) failed");
            r = 1;
        }
        new_domain = r == 0;
        if (new_domain && xen_setup((void **)&cons_ring, &store_page) < 0)
            guest_fail("xen: no suspend port in the new domain");
    } else {
        if (boot && (READ_ONCE(boot->flags) & XTK_BOOT_SUSPENDED_EXIT)) {
            /* "suspended", stopped until resumed: one exit */
            hv_suspended((uint32_t)status->suspends);
        } else {
            evtchn_notify(XTK_PORT_SUSPEND); /* "suspended" */
            if (boot)
                hv_yield(
                    (uint32_t)status->suspends); /* stopped until resumed */
        }
        while (!take_events(EV_SUSPEND))
            sys_wait(SYS_WAIT_SET, &kernel_events, EV_SUSPEND);
        new_domain = boot && READ_ONCE(boot->generation) != seen_generation;
    }
    WRITE_ONCE(status->state, XTK_GUEST_RUNNING);
    status->resumes++;
    if (new_domain) {
        status->moves++;
        moved = 1;
        if (boot)
            seen_generation = boot->generation;
        if (store_page)
            store_reconnect(store_page);
    }
    /* Those the host stopped park now.  A request that comes meanwhile
     * (xtk-hv may hold them for it) is taken here: vCPU 0 must never wait
     * for vCPUs the toolstack stopped to let it suspend. */
    if (host_stops_aps) {
        send_wake_ipi();
        if (wait_parked_or_request())
            goto again;
    }

    work_verify();
    /* Stopped: from the request's arrival to work again, on a clock that
     * goes on while the domain is stopped (xen_clock_ns on Xen). */
    stopped = now_ns();
    stopped = stopped > t0 ? stopped - t0 : 0;
    status->stopped_last_ns = stopped;
    if (stopped > status->stopped_max_ns)
        status->stopped_max_ns = stopped;
    WRITE_ONCE(quiesce, 0);
    send_wake_ipi();
    if (moved && boot) {
        kprintf("xtk-guest: suspended (%s), resumed in domain %u; stopped %lu "
                "us\n",
                how, boot->domid, stopped / 1000);
    } else {
        kprintf("xtk-guest: suspended (%s), resumed%s; stopped %lu us\n", how,
                moved ? " in a new domain" : "", stopped / 1000);
    }
}

/*
 * On Xen, output the console daemon has not taken gets a notification
 * again every 50 ms: xenconsoled connects to a restored domain's ring
 * after the guest has written (and notified) its first line.
 */
static void console_kick(void)
{
    static uint64_t kicked;
    struct xtk_cons_ring *r = cons_ring;
    uint64_t t;

    if (!xen_mode || !r || READ_ONCE(r->out_cons) == READ_ONCE(r->out_prod))
        return;
    t = READ_ONCE(status->ticks);
    if (t - kicked < 5)
        return;
    kicked = t;
    evtchn_notify(XTK_PORT_CONSOLE);
}

/*
 * net=MS: a numbered packet every MS milliseconds on the network ring,
 * "xtk-net seq=N t=NS" (N from 1, the guest's clock in ns), for a client
 * outside to keep a transcript of.  With every slot taken the packet waits
 * for the next call: numbers are never skipped.
 */
static void net_poll(void)
{
    struct xtk_net_ring *r = net_ring;
    uint64_t now;
    uint32_t prod;
    int n;

    if (!r || !net_period_ns)
        return;
    now = now_ns();
    if (now < net_next)
        return;
    prod = r->prod;
    if (prod - READ_ONCE(r->cons) >= XTK_NET_SLOTS)
        return;
    n = ksnprintf(r->slot[prod % XTK_NET_SLOTS].data, XTK_NET_DATA_MAX,
                  "xtk-net seq=%lu t=%lu\n", status->net_seq + 1, now);
    r->slot[prod % XTK_NET_SLOTS].len = (uint32_t)n;
    status->net_seq++;
    barrier();
    WRITE_ONCE(r->prod, prod + 1);
    evtchn_notify(XTK_PORT_NET);
    net_next = net_next + net_period_ns > now ? net_next + net_period_ns
                                              : now + net_period_ns;
}

void poll_events(void)
{
    uint32_t ev = take_events(EV_SUSPEND | EV_STORE);

    console_kick();
    net_poll();
    if (ev & EV_SUSPEND)
        do_suspend("event channel");
    if (store_page && ((ev & EV_STORE) || store_pending()) && store_poll())
        do_suspend("store");
}

void ap_poll(unsigned int cpu)
{
    if (!READ_ONCE(quiesce))
        return;
    if (cpu < XTK_GUEST_MAX_VCPUS)
        WRITE_ONCE(ap_parked[cpu], 1);
    if (__atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST) == nr_vcpus - 1 &&
        __atomic_load_n(&parked_waiter, __ATOMIC_SEQ_CST))
        send_parked_ipi();
    /* Parked before the suspend is counted: its thread given back until
     * the resume.  (Not when xtk-hv stops the vCPUs: an AP may park after
     * the resume, and a yield then would hold it until the next one.) */
    if (boot && !host_stops_aps)
        hv_yield((uint32_t)status->suspends + 1);
    sys_wait(SYS_WAIT_CLEAR, &quiesce, 1);
    if (cpu < XTK_GUEST_MAX_VCPUS)
        WRITE_ONCE(ap_parked[cpu], 0);
    __atomic_sub_fetch(&parked, 1, __ATOMIC_SEQ_CST);
}

void idle_wait(unsigned int cpu)
{
    if (cpu) {
        ap_poll(cpu);
        sys_wait(SYS_WAIT_SET, &quiesce, 1);
        return;
    }
    poll_events();
    sys_wait(SYS_WAIT_SET, &kernel_events, EV_TIMER | EV_SUSPEND | EV_STORE);
    take_events(EV_TIMER);
}

/* ---- boot ----------------------------------------------------------- */

static void boot_bsp(struct xtk_guest_boot *b, struct multiboot_info *mbi)
{
    const char *cl = "";
    size_t n;

    /* Not the steal-time areas: KVM may be keeping them already. */
    memset(status, 0, offsetof(struct xtk_guest_status, steal));
    status->boot_tsc = rdtsc();
    if (b && b->magic == XTK_GUEST_BOOT_MAGIC &&
        b->version == XTK_GUEST_BOOT_VERSION) {
        boot = b;
        cl = b->cmdline;
        nr_vcpus = b->nr_vcpus ? b->nr_vcpus : 1;
        if (nr_vcpus > XTK_GUEST_MAX_VCPUS)
            nr_vcpus = XTK_GUEST_MAX_VCPUS;
        mem_bytes = b->mem_bytes;
        tsc_khz = b->tsc_khz;
        seen_generation = b->generation;
    } else if (xen_mode) {
        cl = xen_cmdline(&mem_bytes);
        nr_vcpus = xen_nr_vcpus();
        boot_clock = xen_clock_ns();
        if (xen_setup((void **)&cons_ring, &store_page) < 0)
            guest_fail("xen: cannot allocate a suspend port");
    } else if (mbi) {
        if (mbi->flags & 0x4)
            cl = (const char *)(uint64_t)mbi->cmdline;
        if (mbi->flags & 0x1)
            mem_bytes = ((uint64_t)mbi->mem_upper + 1024) << 10;
    }
    n = strlen(cl);
    if (n >= sizeof(cmdline))
        n = sizeof(cmdline) - 1;
    memcpy(cmdline, cl, n);
    cmdline[n] = 0;

    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
    if (!tsc_khz)
        tsc_khz = calibrate_tsc();
    if (boot) {
        ioapic_route_port(XTK_PORT_CONSOLE);
        ioapic_route_port(XTK_PORT_STORE);
        ioapic_route_port(XTK_PORT_SUSPEND);
        ioapic_route_port(XTK_PORT_ECHO);
        cons_ring = (void *)XTK_GUEST_CONS_GPA;
        net_ring = (void *)XTK_GUEST_NET_GPA;
        net_period_ns = cmdline_u64(cl, "net", 0) * 1000000ull;
        if (boot->flags & XTK_BOOT_STORE)
            store_page = (void *)XTK_GUEST_STORE_GPA;
    }
    if (boot || xen_mode) { /* a host that stops the vCPUs itself */
        size_t len;
        const char *a = cmdline_get(cl, "apstop", &len);

        host_stops_aps = !(a && len == 5 && !strncmp(a, "guest", 5));
        if (host_stops_aps)
            status->features |= XTK_GUEST_F_APS_STOPPABLE;
    }
    timer_start();
    status->nr_vcpus_up = 1;

    kprintf("xtk-guest: booting on %u vCPU(s), %lu MiB, %s, tsc %lu kHz, "
            "cmdline \"%s\"\n",
            nr_vcpus, mem_bytes >> 20,
            boot       ? "xtk-hv"
            : xen_mode ? "xen pvh"
                       : "multiboot",
            tsc_khz, cmdline);
    pv_setup(cmdline);
    work_setup(cmdline);
    if (store_page)
        store_init(store_page);
    status->magic = XTK_GUEST_STATUS_MAGIC;
    WRITE_ONCE(status->state, XTK_GUEST_RUNNING);
    kprintf("xtk-guest: running\n");
    WRITE_ONCE(smp_go, 1);
}

void user_main(uint64_t cpu, void *boot_page, void *mbi)
{
    if (cpu == 0) {
        boot_bsp(boot_page, mbi);
    } else {
        while (!READ_ONCE(smp_go))
            cpu_relax();
        lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
        __atomic_add_fetch(&status->nr_vcpus_up, 1, __ATOMIC_SEQ_CST);
    }
    work_run((unsigned int)cpu);
}

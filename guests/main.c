/*
 * main.c - the built-in guest: boot, interrupts, console, suspend.
 *
 * vCPU 0 sets everything up and runs the workload's main loop, which calls
 * poll_events() between steps; interrupt handlers only set flags.  The
 * other vCPUs join once vCPU 0 lets them (smp_go).
 *
 * Suspend (the event channel or the store asks): vCPU 0 parks the others
 * (a flag and a wake-up IPI), marks the status page SUSPENDED, rings the
 * suspend doorbell (the toolstack's "suspended" notification) and halts
 * until the suspend port fires again, which means "resume".  It then
 * checks its workload's data, reconnects to the store if it woke up in a
 * new domain, and releases the others.
 */
#include "guest.h"

#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
#define IOAPIC_BASE 0xfec00000ull

#define VEC_TIMER 0x30
#define VEC_WAKE 0x50
#define VEC_SPURIOUS 0xff
#define TICK_NS 10000000u /* the in-kernel LAPIC counts nanoseconds */

#define COM1 0x3f8

struct idt_gate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
};

struct frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx,
        rax;
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

extern char isr_stubs[];

struct xtk_guest_status *const status = (void *)XTK_GUEST_STATUS_GPA;
struct xtk_guest_boot *boot;
uint32_t nr_vcpus = 1;
uint64_t tsc_khz;
volatile int store_irq;

static struct idt_gate idt[256] __attribute__((aligned(16)));
static char cmdline[XTK_GUEST_CMDLINE_MAX];
static uint64_t mem_bytes;
static uint32_t seen_generation;
static uint32_t console_lock;
static volatile uint32_t smp_go, quiesce, parked;
static volatile int suspend_req, resume_kick;

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

uint64_t now_ns(void)
{
    return (rdtsc() - status->boot_tsc) * 1000000ull / tsc_khz;
}

/* ---- console -------------------------------------------------------- */

static void ring_put(const char *s, size_t n)
{
    struct xtk_cons_ring *r = (void *)XTK_GUEST_CONS_GPA;
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
        for (int spin = 0; spin < 100000 && !(inb(COM1 + 5) & 0x20); spin++)
            cpu_relax();
        outb(COM1, (uint8_t)s[i]);
    }
}

void console_write(const char *s, size_t n)
{
    while (xchg32(&console_lock, 1))
        cpu_relax();
    if (boot)
        ring_put(s, n);
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

/* ---- interrupts ----------------------------------------------------- */

static void idt_setup(void)
{
    for (int v = 0; v < 256; v++) {
        uint64_t a = (uint64_t)(isr_stubs + 16 * v);

        idt[v] = (struct idt_gate){
            .off0 = (uint16_t)a,
            .sel = 0x08,
            .type = 0x8e, /* present, interrupt gate */
            .off1 = (uint16_t)(a >> 16),
            .off2 = (uint32_t)(a >> 32),
        };
    }
}

static void idt_load(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } d = {sizeof(idt) - 1, (uint64_t)idt};

    __asm__ __volatile__("lidt %0" ::"m"(d));
}

static void lapic_setup(void)
{
    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

static void send_wake_ipi(void)
{
    if (nr_vcpus < 2)
        return;
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, VEC_WAKE | (3u << 18)); /* all but self */
}

void guest_isr(struct frame *f);
void guest_isr(struct frame *f)
{
    char msg[160];
    uint64_t cr2;

    if (f->vector < 32) {
        __asm__ __volatile__("mov %%cr2, %0" : "=r"(cr2));
        ksnprintf(msg, sizeof(msg),
                  "exception %lu error %lx at rip %lx (cr2 %lx, apic %u)",
                  f->vector, f->error, f->rip, cr2, lapic_read(LAPIC_ID) >> 24);
        guest_fail(msg);
        for (;;)
            __asm__ __volatile__("cli; hlt");
    }
    switch (f->vector) {
    case VEC_SPURIOUS:
        return; /* no EOI */
    case VEC_TIMER:
        status->ticks++;
        break;
    case XTK_PORT_VECTOR(XTK_PORT_SUSPEND):
        if (READ_ONCE(status->state) == XTK_GUEST_SUSPENDED)
            resume_kick = 1;
        else
            suspend_req = 1;
        break;
    case XTK_PORT_VECTOR(XTK_PORT_STORE):
        store_irq = 1;
        break;
    case XTK_PORT_VECTOR(XTK_PORT_ECHO):
        evtchn_notify(XTK_PORT_ECHO);
        status->echoes++;
        break;
    default:
        break;
    }
    lapic_write(LAPIC_EOI, 0);
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
    return (t1 - t0) / 10000;
}

static void timer_start(void)
{
    lapic_write(LAPIC_TIMER_DIV, 0xb);
    lapic_write(LAPIC_LVT_TIMER, (1u << 17) | VEC_TIMER); /* periodic */
    lapic_write(LAPIC_TIMER_INIT, TICK_NS);
}

/* ---- suspend -------------------------------------------------------- */

static void do_suspend(const char *how)
{
    kprintf("xtk-guest: suspending (%s)\n", how);
    WRITE_ONCE(quiesce, 1);
    send_wake_ipi();
    while (READ_ONCE(parked) != nr_vcpus - 1)
        cpu_relax();

    irq_disable();
    resume_kick = 0;
    WRITE_ONCE(status->state, XTK_GUEST_SUSPENDED);
    status->suspends++;
    barrier();
    evtchn_notify(XTK_PORT_SUSPEND); /* "suspended" */
    while (!resume_kick) {
        safe_halt();
        irq_disable();
    }
    WRITE_ONCE(status->state, XTK_GUEST_RUNNING);
    status->resumes++;
    irq_enable();

    if (boot && READ_ONCE(boot->generation) != seen_generation) {
        seen_generation = boot->generation;
        kprintf("xtk-guest: resumed in domain %u\n", boot->domid);
        if (boot->flags & XTK_BOOT_STORE)
            store_reconnect();
    } else {
        kprintf("xtk-guest: resumed\n");
    }
    work_verify();
    WRITE_ONCE(quiesce, 0);
    send_wake_ipi();
}

void poll_events(void)
{
    if (suspend_req) {
        suspend_req = 0;
        do_suspend("event channel");
    }
    if (store_irq) {
        store_irq = 0;
        if (boot && (boot->flags & XTK_BOOT_STORE) && store_poll())
            do_suspend("store");
    }
}

void ap_poll(unsigned int cpu)
{
    if (!READ_ONCE(quiesce))
        return;
    __atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST);
    irq_disable();
    while (READ_ONCE(quiesce)) {
        safe_halt();
        irq_disable();
    }
    irq_enable();
    __atomic_sub_fetch(&parked, 1, __ATOMIC_SEQ_CST);
}

void idle_wait(unsigned int cpu)
{
    if (cpu) {
        ap_poll(cpu);
        safe_halt();
        return;
    }
    poll_events();
    irq_disable();
    if (!suspend_req && !store_irq)
        safe_halt();
    irq_enable();
}

/* ---- boot ----------------------------------------------------------- */

static void boot_bsp(struct xtk_guest_boot *b, struct multiboot_info *mbi)
{
    const char *cl = "";
    size_t n;

    memset(status, 0, sizeof(*status));
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

    idt_setup();
    idt_load();
    outb(0x21, 0xff); /* mask the legacy PICs */
    outb(0xa1, 0xff);
    lapic_setup();
    if (!tsc_khz)
        tsc_khz = calibrate_tsc();
    if (boot) {
        ioapic_route_port(XTK_PORT_CONSOLE);
        ioapic_route_port(XTK_PORT_STORE);
        ioapic_route_port(XTK_PORT_SUSPEND);
        ioapic_route_port(XTK_PORT_ECHO);
    }
    timer_start();
    status->nr_vcpus_up = 1;

    kprintf("xtk-guest: booting on %u vCPU(s), %lu MiB, %s, tsc %lu kHz, "
            "cmdline \"%s\"\n",
            nr_vcpus, mem_bytes >> 20, boot ? "xtk-hv" : "multiboot", tsc_khz,
            cmdline);
    work_setup(cmdline);
    irq_enable();
    if (boot && (boot->flags & XTK_BOOT_STORE))
        store_init();
    status->magic = XTK_GUEST_STATUS_MAGIC;
    WRITE_ONCE(status->state, XTK_GUEST_RUNNING);
    kprintf("xtk-guest: running\n");
    WRITE_ONCE(smp_go, 1);
}

/* Where entry.S lands on every vCPU, on its own stack. */
void guest_entry(uint64_t cpu, struct xtk_guest_boot *b,
                 struct multiboot_info *mbi);
void guest_entry(uint64_t cpu, struct xtk_guest_boot *b,
                 struct multiboot_info *mbi)
{
    if (cpu == 0) {
        boot_bsp(b, mbi);
    } else {
        while (!READ_ONCE(smp_go))
            cpu_relax();
        idt_load();
        lapic_setup();
        __atomic_add_fetch(&status->nr_vcpus_up, 1, __ATOMIC_SEQ_CST);
        irq_enable();
    }
    work_run((unsigned int)cpu);
}

uint64_t guest_mem_bytes(void)
{
    return mem_bytes;
}

/*
 * kernel.c - the guest's ring 0, kept as small as it can be: kvm-pvm
 * emulates every ring-0 instruction (entry.S says why).  It loads the IDT
 * and a TSS per vCPU, then drops to ring 3; afterwards it only runs
 * interrupt handlers (which set bits in kernel_events) and the syscalls
 * (user_syscall): sleep until a bit changes, port I/O.
 */
#include "guest.h"

struct idt_gate {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, zero;
};

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
} __attribute__((packed));

struct frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx,
        rax;
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

extern char isr_stubs[], kernel_stacks[];
extern char isr_timer[], isr_suspend[], isr_store[], isr_echo[], isr_ud[],
    isr_parked[];

_Static_assert(ECHO_DOORBELL == XTK_PORT_DOORBELL(XTK_PORT_ECHO),
               "defs.h: ECHO_DOORBELL");
_Static_assert(STATUS_TICKS == XTK_GUEST_STATUS_GPA +
                                   offsetof(struct xtk_guest_status, ticks),
               "defs.h: STATUS_TICKS");
_Static_assert(STATUS_ECHOES == XTK_GUEST_STATUS_GPA +
                                    offsetof(struct xtk_guest_status, echoes),
               "defs.h: STATUS_ECHOES");
extern uint64_t gdt[];
extern uint64_t pvh_start_info; /* entry.S: Xen's hvm_start_info, or 0 */
void enter_user(uint64_t cpu, void *fn, void *arg1, void *arg2)
    __attribute__((noreturn));

volatile uint32_t kernel_events;

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct tss tss[XTK_GUEST_MAX_VCPUS] __attribute__((aligned(16)));
static volatile uint32_t idt_ready;

/* The frequent device interrupts and the waits (#UD) have short stubs of
 * their own (entry.S): every ring-0 instruction costs here. */
static uint64_t isr_address(int v)
{
    switch (v) {
    case 6:
        return (uint64_t)isr_ud;
    case VEC_TIMER:
        return (uint64_t)isr_timer;
    case XTK_PORT_VECTOR(XTK_PORT_SUSPEND):
        return (uint64_t)isr_suspend;
    case XTK_PORT_VECTOR(XTK_PORT_STORE):
        return (uint64_t)isr_store;
    case XTK_PORT_VECTOR(XTK_PORT_ECHO):
        return (uint64_t)isr_echo;
    case VEC_PARKED:
        return (uint64_t)isr_parked;
    default:
        return (uint64_t)(isr_stubs + 16 * v);
    }
}

static void idt_fill(void)
{
    for (int v = 0; v < 256; v++) {
        uint64_t a = isr_address(v);

        idt[v].off0 = (uint16_t)a;
        idt[v].sel = 0x08;
        idt[v].type = 0x8e; /* present, interrupt gate, ring 0 only */
        idt[v].off1 = (uint16_t)(a >> 16);
        idt[v].off2 = (uint32_t)(a >> 32);
    }
}

/* This vCPU's TSS: its ring-0 stack for interrupts taken in ring 3. */
static void tss_load(uint64_t cpu)
{
    struct tss *t = &tss[cpu];
    uint64_t base = (uint64_t)t, *d = &gdt[5 + 2 * cpu];

    t->rsp[0] = (uint64_t)(kernel_stacks + ((cpu + 1) << 14));
    t->iomap_base = sizeof(*t); /* no bitmap: IOPL decides */
    d[0] = (sizeof(*t) - 1) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
           ((base >> 24 & 0xff) << 56);
    d[1] = base >> 32;
    __asm__ __volatile__("ltr %w0" ::"r"(0x28 + 16 * cpu));
}

void kernel_entry(uint64_t cpu, void *boot_page, void *mbi);
void kernel_entry(uint64_t cpu, void *boot_page, void *mbi)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } d = {sizeof(idt) - 1, (uint64_t)idt};

    if (cpu == 0) {
        if (pvh_start_info && xen_early() < 0) {
            for (const char *m = "xtk-guest: not Xen, or no hypercalls\n"; *m;
                 m++)
                outb(XTK_GUEST_DEBUG_PORT, (uint8_t)*m);
            for (;;)
                __asm__ __volatile__("cli; hlt");
        }
        if (!xen_mode) {      /* a PVH domain has no PIC */
            outb(0x21, 0xff); /* mask the legacy PICs */
            outb(0xa1, 0xff);
        }
        idt_fill();
        WRITE_ONCE(idt_ready, 1);
        if (xen_mode)
            xen_start_aps();
    }
    while (!READ_ONCE(idt_ready))
        cpu_relax();
    __asm__ __volatile__("lidt %0" ::"m"(d));
    tss_load(cpu);
    if (!xen_mode)
        pv_init_cpu(cpu);
    enter_user(cpu, user_main, boot_page, mbi);
}

/*
 * The syscalls that are not waits (entry.S's isr_ud runs SYS_WAIT_SET and
 * SYS_WAIT_CLEAR itself), from the #UD handler with interrupts off:
 * SYS_OUTB and SYS_INB do port I/O (kvm-pvm refuses it from ring 3,
 * whatever IOPL says); on Xen, SYS_HYPERCALL and SYS_XEN_SUSPEND (Xen
 * refuses hypercalls from ring 3).
 */
uint64_t kernel_syscall(uint64_t op, uint64_t p, uint64_t mask);
uint64_t kernel_syscall(uint64_t op, uint64_t p, uint64_t mask)
{
    if (op == SYS_OUTB) {
        outb((uint16_t)p, (uint8_t)mask);
        return 0;
    }
    if (op == SYS_INB)
        return inb((uint16_t)p);
    if (op == SYS_HYPERCALL && xen_mode) {
        const uint64_t *a = (const uint64_t *)p;
        return (uint64_t)xen_hypercall((unsigned int)a[0], a[1], a[2], 0);
    }
    if (op == SYS_NMI && p < XTK_GUEST_MAX_VCPUS) {
        send_nmi((unsigned int)p);
        return 0;
    }
    if (op == SYS_XEN_SUSPEND && xen_mode)
        return (uint64_t)xen_suspend_kernel();
    return (uint64_t)-1;
}

void guest_isr(struct frame *f);
void guest_isr(struct frame *f)
{
    char msg[160];
    uint64_t cr2;

    if (f->vector == 6 && f->rip == (uint64_t)user_syscall) {
        f->rax = kernel_syscall(f->rdi, f->rsi, f->rdx);
        f->rip += 2; /* past the ud2 */
        return;
    }
    if (f->vector == 2) { /* an NMI (the nmi workload's): no EOI */
        __atomic_add_fetch(&status->nmi_taken, 1, __ATOMIC_SEQ_CST);
        return;
    }
    if (f->vector < 32) {
        __asm__ __volatile__("mov %%cr2, %0" : "=r"(cr2));
        ksnprintf(msg, sizeof(msg),
                  "exception %lu error %lx at rip %lx (cs %lx ss %lx rflags "
                  "%lx, cr2 %lx)",
                  f->vector, f->error, f->rip, f->cs, f->ss, f->rflags, cr2);
        guest_fail(msg);
        for (;;)
            __asm__ __volatile__("cli; hlt");
    }
    /* The device vectors have stubs of their own (entry.S); the rest
     * (the wake-up IPI, the console port) only wake a hlt. */
    if (f->vector == VEC_SPURIOUS)
        return; /* no EOI */
    if (f->vector == VEC_XEN_UPCALL && xen_mode) {
        xen_upcall(); /* Xen injects it past the LAPIC: no EOI */
        return;
    }
    mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
}

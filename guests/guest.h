/*
 * guest.h - what the built-in guest's files share.  Freestanding x86-64:
 * no libc, no floating point, no SSE; nothing that kvm-pvm cannot run
 * (int3, int1, cmpxchg16b).
 */
#ifndef XTK_GUEST_H
#define XTK_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "abi.h"
#include "defs.h"

#define barrier() __asm__ __volatile__("" ::: "memory")
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PAGE_SIZE 4096ull

/* ---- the machine ---------------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ __volatile__("outb %0, %1" ::"a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;

    __asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;

    __asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ __volatile__("wrmsr" ::"c"(msr), "a"((uint32_t)v),
                         "d"((uint32_t)(v >> 32)));
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c,
                         uint32_t *d)
{
    __asm__ __volatile__("cpuid"
                         : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                         : "a"(leaf), "c"(0));
}

static inline void cpu_relax(void)
{
    __asm__ __volatile__("pause" ::: "memory");
}

extern struct xtk_guest_status *const status; /* main.c */

/* ---- ring 0 and the syscall ------------------------------------------ */

/* The syscall numbers (SYS_WAIT_SET, SYS_WAIT_CLEAR, SYS_OUTB, SYS_INB) are
 * in defs.h, which entry.S shares. */

extern volatile uint32_t kernel_events;

/* Ring 3's way into ring 0 (entry.S, kernel.c): op with two arguments. */
uint64_t user_syscall(uint64_t op, uint64_t a1, uint64_t a2);

static inline uint64_t sys_call(unsigned int op, uint64_t a1, uint64_t a2)
{
    return user_syscall(op, a1, a2);
}

/* Sleeps (SYS_WAIT_SET or SYS_WAIT_CLEAR) on a word. */
static inline void sys_wait(unsigned int op, volatile uint32_t *p,
                            uint32_t mask)
{
    sys_call(op, (uint64_t)p, mask);
}

/* Port I/O from ring 3 goes through the kernel. */
static inline void user_outb(uint16_t port, uint8_t v)
{
    sys_call(SYS_OUTB, port, v);
}

static inline uint8_t user_inb(uint16_t port)
{
    return (uint8_t)sys_call(SYS_INB, port, 0);
}

/* Takes (and clears) the bits the interrupt handlers set. */
static inline uint32_t take_events(uint32_t mask)
{
    return __atomic_fetch_and(&kernel_events, ~mask, __ATOMIC_SEQ_CST) & mask;
}

/* Where ring 0 drops every vCPU into ring 3 (main.c). */
void user_main(uint64_t cpu, void *boot_page, void *mbi)
    __attribute__((noreturn));

static inline uint32_t xchg32(uint32_t *p, uint32_t v)
{
    __asm__ __volatile__("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}

static inline void atomic_inc64(uint64_t *p)
{
    __asm__ __volatile__("lock incq %0" : "+m"(*p) : : "memory");
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)addr = v;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
    return *(volatile uint32_t *)addr;
}

/* ---- xen.c: the guest on Xen (PVH) ----------------------------------- */

extern int xen_mode; /* booted by Xen as PVH */

/* Ring 0 (kernel.c). */
int xen_early(void);
void xen_start_aps(void);
void xen_upcall(void);
long xen_hypercall(unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3);
long xen_suspend_kernel(void);
/* Ring 3. */
int xen_setup(void **cons, void **store);
void xen_notify(unsigned int port);
uint32_t xen_suspend_port(void);
long xen_suspend(void);
uint32_t xen_nr_vcpus(void);
const char *xen_cmdline(uint64_t *mem_bytes);
uint64_t xen_clock_ns(void);
/* The runstate areas are kept by Xen; vCPU cpu is runnable but not
 * running (preempted); SCHEDOP_yield. */
int xen_runstate_on(void);
int xen_vcpu_runnable(unsigned int cpu);
void xen_yield(void);

/* Notifies event channel port (abi.h's numbers; guest -> toolstack). */
static inline void evtchn_notify(unsigned int port)
{
    if (xen_mode)
        xen_notify(port);
    else
        mmio_write32(XTK_PORT_DOORBELL(port), 1);
}

/* Under xtk-hv: give the vCPU back until the domain is told to run (abi.h,
 * XTK_GUEST_YIELD_GPA).  The caller still waits for what it waits for. */
static inline void hv_yield(uint32_t suspend_nr)
{
    mmio_write32(XTK_GUEST_YIELD_GPA, suspend_nr);
}

/* Under xtk-hv with XTK_BOOT_SUSPENDED_EXIT: "suspended" and the yield
 * in one exit (abi.h, XTK_GUEST_SUSPENDED_GPA). */
static inline void hv_suspended(uint32_t suspend_nr)
{
    mmio_write32(XTK_GUEST_SUSPENDED_GPA, suspend_nr);
}

/* ---- pv.c: the host's help against lock-holder preemption ----------- */

/* Every so many spins a waiter looks whether what it waits for runs. */
#define PV_CHECK_SPINS 16

/* What the host offers (XTK_GUEST_PV_*): pv_init_cpu() and pv_setup(). */
extern uint32_t pv_found;
/* What the guest uses (pv=0: nothing), set by pv_setup() at boot. */
extern uint32_t pv_used;
/* Ring 0: turns this vCPU's steal-time area on if KVM offers it. */
void pv_init_cpu(uint64_t cpu);
/* Ring 3. */
void pv_setup(const char *cmdline);
/* Is vCPU cpu's host thread preempted (scheduled out while it runs the
 * vCPU)?  On Xen its runstate; under xtk-hv what xtk-hv publishes; else
 * KVM's steal-time flag. */
int vcpu_preempted(unsigned int cpu);
/*
 * Waiter `self` waits for vCPU `cpu`: if that vCPU is preempted, counts
 * it and gives this vCPU's time to it (a directed yield, when offered).
 * Returns 1 if it was preempted.  Call it every so many spins, not each.
 */
int pv_wait_on(unsigned int self, unsigned int cpu);

/* ---- lib.c ---------------------------------------------------------- */

void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
uint64_t parse_u64(const char *s, const char **end);
/* The value of key=value in a space-separated command line, or NULL; *len
 * gets its length. */
const char *cmdline_get(const char *cmdline, const char *key, size_t *len);
uint64_t cmdline_u64(const char *cmdline, const char *key, uint64_t dflt);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ksnprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- main.c --------------------------------------------------------- */

extern struct xtk_guest_boot *boot; /* NULL without xtk-hv */
extern volatile uint32_t quiesce;   /* vCPU 0 is suspending: park */
extern uint32_t nr_vcpus;
extern uint64_t tsc_khz;

/* Writes to the console (the ring under xtk-hv, else COM1). */
void console_write(const char *s, size_t n);
/* Records a failed self-check: state FAILED, the message, and a line on
 * the console. */
void guest_fail(const char *why);
void send_nmi(unsigned int cpu); /* ring 0: an NMI IPI to vCPU cpu */
/*
 * What every workload loop on vCPU 0 calls between steps: handles a
 * suspend request and store events.  Cheap when there is nothing to do.
 */
void poll_events(void);
/* What every loop on other vCPUs calls: parks while vCPU 0 suspends. */
void ap_poll(unsigned int cpu);
/* Waits for an interrupt or an event (vCPU 0 also runs poll_events()). */
void idle_wait(unsigned int cpu);
/* Guest RAM in bytes (0 if unknown). */
uint64_t guest_mem_bytes(void);
/* Nanoseconds since boot, from the TSC. */
uint64_t now_ns(void);

/* ---- work.c --------------------------------------------------------- */

void work_setup(const char *cmdline);
void work_run(unsigned int cpu) __attribute__((noreturn));
/* Checks the workload's own data after a resume (errors++ on damage). */
void work_verify(void);

/* ---- store.c -------------------------------------------------------- */

/* Connects to the store ring at page: publishes the suspend port and
 * watches control/shutdown. */
void store_init(void *page);
/* After a restore into a new domain: the same again. */
void store_reconnect(void *page);
/* store_poll() has work (see store.c). */
int store_pending(void);
/* Handles pending replies and watch events; returns 1 if a suspend was
 * requested through control/shutdown (already acknowledged). */
int store_poll(void);

#endif /* XTK_GUEST_H */

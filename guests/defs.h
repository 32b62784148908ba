/*
 * defs.h - numbers the guest's assembly (entry.S) and C share: plain
 * constants only, no C.  kernel.c checks the ones derived from abi.h.
 */
#ifndef XTK_GUEST_DEFS_H
#define XTK_GUEST_DEFS_H

#define LAPIC_BASE 0xfee00000
#define LAPIC_EOI 0xb0
#define VEC_TIMER 0x30
#define VEC_WAKE 0x50
#define VEC_PARKED 0x51     /* to vCPU 0: the last of the others has parked */
#define VEC_XEN_UPCALL 0x60 /* Xen's callback vector (xen.c) */
#define VEC_SPURIOUS 0xff

/* Bits the interrupt handlers set in kernel_events. */
#define EV_TIMER 0x1
#define EV_SUSPEND 0x2
#define EV_STORE 0x4
#define EV_PARKED 0x8

/* The syscalls (guest.h, kernel.c; entry.S runs the waits itself). */
#define SYS_WAIT_SET 1    /* sleep until (*p & mask) != 0 */
#define SYS_WAIT_CLEAR 2  /* sleep until (*p & mask) == 0 */
#define SYS_OUTB 3        /* outb(a, b): ring 3 cannot do port I/O here */
#define SYS_INB 4         /* returns inb(a) */
#define SYS_HYPERCALL 5   /* Xen: a = {op, arg1, arg2}; returns its result */
#define SYS_XEN_SUSPEND 6 /* Xen: SCHEDOP_shutdown(suspend) (xen.c) */
#define SYS_NMI 7         /* an NMI to the vCPU whose APIC id is a */

/* From abi.h: the echo port's doorbell, the status page's counters. */
#define ECHO_DOORBELL 0xfebff010
#define STATUS_TICKS 0x2020
#define STATUS_ECHOES 0x2048

#endif /* XTK_GUEST_DEFS_H */

/*
 * entry.S - the built-in guest's entry points and mode switches.
 *
 * Three ways in, one way on:
 *   _start64  xtk-hv starts every vCPU here, already in 64-bit long mode
 *             with its own page tables and GDT: rdi = vCPU index,
 *             rsi = the boot page's address.  On Xen, vCPU 0 starts the
 *             others here too (VCPUOP_initialise in 64-bit mode, xen.c),
 *             on the page tables _start32 built.
 *   _start32  QEMU's multiboot loader starts vCPU 0 here in 32-bit
 *             protected mode without paging: eax = multiboot magic,
 *             ebx = multiboot info.  We build identity page tables for the
 *             first 4 GiB (2 MiB pages, user-accessible) in bss and switch
 *             to long mode.
 *   _start_pvh  Xen starts a PVH domain's vCPU 0 here (the PHYS32_ENTRY
 *             note below), in the same 32-bit state, with ebx = the
 *             hvm_start_info's address: kept in pvh_start_info, and on as
 *             _start32 without multiboot information.
 * Both load our GDT, take the vCPU's kernel stack and call
 * kernel_entry(cpu, boot, mbi) (kernel.c), which ends in enter_user().
 *
 * Rings: kvm-pvm emulates guest ring-0 code instruction by instruction
 * (about 1,800 cycles each) and runs ring 3 natively, so the guest keeps
 * ring 0 to a minimum (set-up, interrupt handlers, one wait syscall) and
 * runs everything else in ring 3 (its doorbells are MMIO writes: kvm-pvm
 * refuses port I/O from ring 3, whatever IOPL says).  User code enters the
 * kernel through user_syscall below.
 *
 * Nothing here (nor in the C code) may use int3, int1 or cmpxchg16b:
 * kvm-pvm cannot run them.
 */
#include "defs.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010002 /* memory info; a.out kludge (load addresses) */
#define STACK_SHIFT 14      /* 16 KiB per vCPU and ring */
#define MAX_VCPUS 8
#define USER_CS 0x23
#define USER_DS 0x1b
#define USER_FLAGS 0x202 /* IF */

    .section .multiboot, "a"
    .balign 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header     /* header_addr */
    .long __image_start /* load_addr */
    .long __data_end    /* load_end_addr */
    .long __bss_end     /* bss_end_addr */
    .long _start32      /* entry_addr */

/* Xen's PVH entry point: the one note a PVH kernel needs (libelf). */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                         /* name size: "Xen" */
    .long 4                         /* descriptor size */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long _start_pvh
    .balign 4

    .section .text.entry, "ax"
    .code32
    .globl _start_pvh
_start_pvh:
    cli
    mov %ebx, pvh_start_info        /* identity: paging is off */
    xor %ebx, %ebx                  /* no multiboot information */
    /* fall through */
    .globl _start32
_start32:
    cli
    mov %ebx, %esi                  /* keep the multiboot info */
    /* PML4[0] -> PDPT; PDPT[0..3] -> the four PDs; all user-accessible */
    lea boot_pdpt, %eax
    or $7, %eax
    mov %eax, boot_pml4
    lea boot_pd, %eax
    or $7, %eax
    xor %ecx, %ecx
1:  mov %eax, boot_pdpt(,%ecx,8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    /* 2048 PD entries of 2 MiB: present, writable, user, large */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x87, %eax
    mov %eax, boot_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, boot_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    lea boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $from32

    .code64
from32:
    xor %edi, %edi                  /* vCPU 0 */
    mov %esi, %edx                  /* multiboot info */
    xor %esi, %esi                  /* no boot page */
    jmp common64

    .globl _start64
_start64:
    cli
    xor %edx, %edx
common64:
    cmp $MAX_VCPUS, %rdi
    jae 5f
    lea 1(%rdi), %rax               /* this vCPU's kernel stack */
    shl $STACK_SHIFT, %rax
    lea kernel_stacks(%rip), %rcx
    add %rcx, %rax
    mov %rax, %rsp
    xor %ebp, %ebp
    lgdt gdt_desc(%rip)
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    pushq $0x08
    lea 3f(%rip), %rax
    pushq %rax
    lretq
3:  call kernel_entry
5:  cli
    hlt
    jmp 5b

/*
 * enter_user(cpu, fn, arg1, arg2): to ring 3, on the vCPU's user stack, at
 * fn(cpu, arg1, arg2).  Never returns.
 */
    .globl enter_user
enter_user:
    mov %rsi, %rax                  /* fn */
    mov %rdx, %rsi                  /* arg1 */
    mov %rcx, %rdx                  /* arg2 */
    lea 1(%rdi), %r8
    shl $STACK_SHIFT, %r8
    lea user_stacks(%rip), %r9
    add %r9, %r8
    sub $8, %r8                     /* as after a call */
    pushq $USER_DS
    pushq %r8
    pushq $USER_FLAGS
    pushq $USER_CS
    pushq %rax
    iretq

/*
 * user_syscall(op, a, b): ring 3's way into ring 0.  kvm-pvm runs neither
 * `syscall` (it stays in ring 3) nor `int n` (#UD) from guest ring 3 as
 * x86 does, but it delivers exceptions: the #UD of this ud2 is the call,
 * and returns past it with rax set.
 */
    .globl user_syscall
user_syscall:
    ud2
    ret

/*
 * The #UD vector.  The waits (SYS_WAIT_SET, SYS_WAIT_CLEAR: sleep until
 * (*rsi & edx) is non-zero, or zero) are what every wake-up goes through,
 * the suspend's too, so they run here in a dozen instructions each way
 * instead of a hundred through isr_common and C (kvm-pvm emulates every
 * ring-0 instruction); the other syscalls and a real #UD take the
 * general path (kernel.c).  An interrupt gate: IF is clear on entry, and
 * `sti; hlt` sleeps without missing a wake-up.
 */
    .globl isr_ud
isr_ud:
    cmpq $user_syscall, (%rsp)      /* the ud2's rip */
    jne 9f
    cmp $SYS_WAIT_SET, %rdi
    je 2f
    cmp $SYS_WAIT_CLEAR, %rdi
    jne 9f
1:  test %edx, (%rsi)               /* SYS_WAIT_CLEAR */
    jz 3f
    sti
    hlt
    cli
    jmp 1b
2:  test %edx, (%rsi)               /* SYS_WAIT_SET */
    jnz 3f
    sti
    hlt
    cli
    jmp 2b
3:  xor %eax, %eax
    addq $2, (%rsp)                 /* past the ud2 */
    iretq
9:  pushq $0                        /* as isr_stubs' vector 6 */
    pushq $6
    jmp isr_common

/*
 * The device interrupts' own stubs: a handful of instructions each (kvm-pvm
 * emulates every one), where the general path below runs a hundred.
 */
    .macro event_stub name, bits
    .globl \name
\name:
    lock orl $\bits, kernel_events(%rip)
    push %rax
    mov $(LAPIC_BASE + LAPIC_EOI), %eax
    movl $0, (%rax)
    pop %rax
    iretq
    .endm

    event_stub isr_suspend, EV_SUSPEND
    event_stub isr_store, EV_STORE
    event_stub isr_parked, EV_PARKED

    .globl isr_timer
isr_timer:
    lock incq STATUS_TICKS
    lock orl $EV_TIMER, kernel_events(%rip)
    push %rax
    mov $(LAPIC_BASE + LAPIC_EOI), %eax
    movl $0, (%rax)
    pop %rax
    iretq

/* The echo port answers at once: the event channel round trip's guest. */
    .globl isr_echo
isr_echo:
    push %rax
    mov $ECHO_DOORBELL, %eax
    movl $1, (%rax)
    lock incq STATUS_ECHOES
    mov $(LAPIC_BASE + LAPIC_EOI), %eax
    movl $0, (%rax)
    pop %rax
    iretq

/* Interrupt stubs: 16 bytes each, stub v at isr_stubs + 16 * v. */
    .balign 16
    .globl isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    mov %rsp, %rbx
    and $-16, %rsp
    cld
    call guest_isr
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

/*
 * The GDT: kernel code and data, user data and code (in the order sysret
 * wants), then one TSS descriptor per vCPU, filled in by kernel.c.
 */
    .section .data
    .balign 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00af9b000000ffff        /* 0x08: kernel code, 64-bit */
    .quad 0x00cf93000000ffff        /* 0x10: kernel data */
    .quad 0x00cff3000000ffff        /* 0x18: user data */
    .quad 0x00affb000000ffff        /* 0x20: user code, 64-bit */
    .skip 16 * MAX_VCPUS            /* 0x28: a TSS for each vCPU */
gdt_end:
    .balign 8
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt

    .globl pvh_start_info
    .balign 8
pvh_start_info:                     /* 0: not booted by Xen as PVH */
    .quad 0

    .section .bss
    .balign 4096
    .globl boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
    .globl kernel_stacks
kernel_stacks:
    .skip MAX_VCPUS << STACK_SHIFT
    .globl user_stacks
user_stacks:
    .skip MAX_VCPUS << STACK_SHIFT

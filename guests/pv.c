/*
 * pv.c - the built-in guest's help against lock-holder preemption (issue
 * 15; seeds 000 and 004).
 *
 * Preemption notification: under xtk-hv (XTK_BOOT_SCHED) each vCPU's host
 * thread is published in two read-only pages (abi.h, XTK_GUEST_SCHED_GPA)
 * that the host's kernel rewrites at every switch of that thread: the
 * guest reads whether the thread is preempted now.  Elsewhere, KVM's own
 * flag in the steal-time area (MSR_KVM_STEAL_TIME), which every vCPU turns
 * on at boot: kvm-pvm never sets it (hv/sched.c says why), a VMX or SVM
 * host does.  The steal-time area's `steal` is kept either way.  On Xen,
 * the vCPU's runstate (xen.c): RUNSTATE_runnable is preempted.
 *
 * Directed yield: a waiter that finds the vCPU it waits for preempted
 * writes that vCPU's number to xtk-hv's yield-to doorbell (abi.h), and
 * xtk-hv gives the waiter's CPU to that vCPU's thread.  KVM's own
 * KVM_HC_SCHED_YIELD is not used: kvm-pvm emulates the guest's ring 0,
 * and its emulator only rewrites a vmcall for the CPU to run again, so
 * the vCPU runs the same vmcall forever (seen: the vCPU spinning, no
 * yield counted by KVM).  On Xen, SCHEDOP_yield: Xen has no directed
 * yield, but the waiter's vCPU steps aside for the others.
 *
 * A waiter (the spin workload's lock, vCPU 0 waiting for the others to
 * park) calls pv_wait_on() every so many spins.
 */
#include "guest.h"

#define MSR_KVM_STEAL_TIME 0x4b564d03u
#define KVM_MSR_ENABLED 0x1ull
#define KVM_FEATURE_STEAL_TIME (1u << 5)

uint32_t pv_found, pv_used;

/* KVM's feature bits (CPUID 0x40000001 EAX), or 0 under anything else. */
static uint32_t kvm_features(void)
{
    uint32_t a, b, c, d;

    cpuid(0x40000000, &a, &b, &c, &d);
    /* "KVMKVMKVM\0\0\0" */
    if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d || a < 0x40000001)
        return 0;
    cpuid(0x40000001, &a, &b, &c, &d);
    return a;
}

void pv_init_cpu(uint64_t cpu)
{
    uint32_t f = kvm_features();

    if (cpu >= XTK_GUEST_MAX_VCPUS)
        return;
    if (f & KVM_FEATURE_STEAL_TIME) {
        wrmsr(MSR_KVM_STEAL_TIME,
              (uint64_t)&status->steal[cpu] | KVM_MSR_ENABLED);
        if (cpu == 0)
            pv_found |= XTK_GUEST_PV_STEAL;
    }
}

/* Under xtk-hv, which publishes the vCPU threads (a restored guest may
 * have moved to a host that does not). */
static int published(void)
{
    return boot && (READ_ONCE(boot->flags) & XTK_BOOT_SCHED);
}

void pv_setup(const char *cmdline)
{
    if ((xen_mode && xen_runstate_on()) || published())
        pv_found |= XTK_GUEST_PV_PREEMPTED | XTK_GUEST_PV_YIELD;
    else if (pv_found & XTK_GUEST_PV_STEAL)
        pv_found |= XTK_GUEST_PV_PREEMPTED; /* KVM's flag, where it works */
    status->pv.features = pv_found;
    pv_used = cmdline_u64(cmdline, "pv", 1) ? pv_found : 0;
    status->pv.used = pv_used;
}

int vcpu_preempted(unsigned int cpu)
{
    if (!(pv_used & XTK_GUEST_PV_PREEMPTED) || cpu >= nr_vcpus)
        return 0;
    if (xen_mode)
        return xen_vcpu_runnable(cpu);
    if (published())
        return ((READ_ONCE(boot->waking) >> cpu) & 1) ||
               xtk_sched_preempted(
                   (const volatile uint8_t *)(XTK_GUEST_SCHED_GPA +
                                              XTK_GUEST_SCHED_STRIDE * cpu));
    return (READ_ONCE(status->steal[cpu].preempted) &
            XTK_GUEST_STEAL_PREEMPTED) != 0;
}

int pv_wait_on(unsigned int self, unsigned int cpu)
{
    if (cpu >= XTK_GUEST_MAX_VCPUS || self >= XTK_GUEST_MAX_VCPUS ||
        !vcpu_preempted(cpu))
        return 0;
    status->pv.saw_preempted[self]++;
    if (!(pv_used & XTK_GUEST_PV_YIELD))
        return 1;
    if (xen_mode)
        xen_yield(); /* Xen's: not directed, but away from this vCPU */
    else if (published())
        mmio_write32(XTK_GUEST_YIELD_TO_GPA, cpu);
    else
        return 1;
    status->pv.yields[self]++;
    return 1;
}

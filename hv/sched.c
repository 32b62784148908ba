/*
 * sched.c - what xtk-hv tells the guest about its vCPUs' host threads, and
 * what it tells the toolstack about them (issue 15).
 *
 * Preemption notification.  KVM's own "preempted" flag in the steal-time
 * area is never set under kvm-pvm (the flag is only reported on an exit
 * at an instruction boundary, which kvm-pvm does not mark; measured: 0
 * samples set of 2,000 with 4 vCPUs on 2 cores, while `steal` grows).  So
 * xtk-hv publishes the state itself, at no cost to the vCPU threads: a
 * perf context-switch event on each vCPU thread, written backward (the
 * newest record always at data_head), whose two pages (the control page
 * and one page of records) are mapped read-only into the guest at
 * XTK_GUEST_SCHED_GPA + 8 KiB * vCPU.  The host's kernel writes a record
 * at each switch of the thread, in or out, and marks a switch out that
 * was a preemption: the guest reads the newest record (guests/pv.c).  The
 * guest is told by XTK_BOOT_SCHED, which it reads each time it would use
 * them.
 *
 * The events are opened on a thread of their own (hv_sched_start), and
 * an empty domain (a restore's) does not wait for them: the first
 * context-switch event on the host turns a static key of the kernel's on,
 * which patches its text (13-28 ms measured on this nested VM, where a
 * later open takes 0.07 ms), and that was half a lazy restore's time to
 * the guest's first instruction.  A restored guest runs without the
 * measures until they are there (it reads XTK_BOOT_SCHED each time); a
 * guest that boots here waits for them (it reads the flag once, at
 * boot).
 *
 * Statistics per vCPU (XTK_HVCTL_OP_VCPUS): the thread's run and wait
 * time and time slices (/proc/self/task/TID/schedstat), its voluntary and
 * involuntary switches (.../status), and KVM's own counters for it
 * (KVM_GET_STATS_FD: directed yields, halts, exits).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hv.h"

#define SCHED_PAGES 2 /* the control page and one page of records */

/* The vCPU thread's own set-up, before its first KVM_RUN: its thread id
 * and KVM's statistics fd for it. */
void hv_sched_thread_init(struct hv_vcpu *v)
{
    __atomic_store_n(&v->tid, (uint32_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    /* Here, before the first KVM_RUN: the ioctl waits for the vCPU's
     * mutex, which KVM_RUN holds; reading the fd later does not. */
    v->stats_fd = ioctl(v->fd, KVM_GET_STATS_FD, 0);
    if (v->stats_fd < 0)
        hv_log("vCPU %u: KVM_GET_STATS_FD: %m", v->index);
}

/*
 * vCPU v's page of scheduling records in the guest: its thread's
 * context-switch event, opened from this (another) thread.  -1 if the
 * guest cannot be told.
 */
static int publish(struct hv *hv, struct hv_vcpu *v)
{
    struct perf_event_attr a;
    struct kvm_userspace_memory_region r;
    long fd;
    void *p;

    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_DUMMY;
    a.context_switch = 1;
    a.write_backward = 1; /* overwrites: the newest record is at data_head */
    fd = syscall(SYS_perf_event_open, &a, (pid_t)v->tid, -1, -1,
                 PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        hv_log("vCPU %u: perf_event_open: %m: the guest is not told when "
               "its thread is preempted",
               v->index);
        return -1;
    }
    p = mmap(NULL, SCHED_PAGES * 4096, PROT_READ, MAP_SHARED, (int)fd, 0);
    if (p == MAP_FAILED) {
        hv_log("vCPU %u: mmap of the perf event: %m", v->index);
        close((int)fd);
        return -1;
    }
    memset(&r, 0, sizeof(r));
    r.slot = HV_SCHED_SLOT0 + v->index;
    r.flags = KVM_MEM_READONLY;
    r.guest_phys_addr = XTK_GUEST_SCHED_GPA + XTK_GUEST_SCHED_STRIDE * v->index;
    r.memory_size = SCHED_PAGES * 4096;
    r.userspace_addr = (uintptr_t)p;
    if (ioctl(hv->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        hv_log("vCPU %u: the perf event's pages in the guest: %m", v->index);
        munmap(p, SCHED_PAGES * 4096);
        close((int)fd);
        return -1;
    }
    close((int)fd); /* the mapping keeps the event */
    __atomic_store_n(&v->sched_page, p, __ATOMIC_RELEASE);
    return 0;
}

static void *publisher(void *arg)
{
    struct hv *hv = arg;

    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        int r;

        if (__atomic_load_n(&hv->quit, __ATOMIC_ACQUIRE))
            break;
        r = publish(hv, &hv->vcpus[i]);
        pthread_mutex_lock(&hv->lock);
        if (r == 0)
            hv->sched_published++;
        pthread_mutex_unlock(&hv->lock);
    }
    pthread_mutex_lock(&hv->lock);
    hv->sched_done = 1;
    pthread_cond_broadcast(&hv->parked_cond);
    /* An empty domain's memory is the restore's until its resume, which
     * sets the flag itself; a booting guest's is set by hv_vm_start(). */
    if (!hv->empty && hv->sched_told && !hv->quit)
        hv_vm_set_sched_flag(hv);
    pthread_mutex_unlock(&hv->lock);
    return NULL;
}

int hv_sched_start(struct hv *hv)
{
    int e = pthread_create(&hv->sched_th, NULL, publisher, hv);

    if (e) {
        errno = e;
        hv_log("the vCPUs' scheduling pages: cannot start a thread: %m: "
               "the guest is not told when its threads are preempted");
        return -1;
    }
    hv->sched_th_started = 1;
    return 0;
}

void hv_sched_stop(struct hv *hv)
{
    if (!hv->sched_th_started)
        return;
    pthread_join(hv->sched_th, NULL);
    hv->sched_th_started = 0;
}

/*
 * Gives the calling thread's CPU to vCPU t's thread if it is preempted:
 * 0 if t runs (or cannot be told), 1 if given, 2 if given with t moved
 * here.  Linux has no yield_to() for user space, so it is made of three
 * calls: t's thread is moved to this CPU (its allowed CPUs narrowed to
 * this one: a queued thread moves at once), the caller yields (t, queued
 * here now, runs in its place), and t's allowed CPUs are put back as they
 * were once the caller runs again.  One caller at a time moves a given
 * thread; others only yield.  A thread whose affinity does not allow this
 * CPU is not moved.
 */
static int give_cpu(struct hv_vcpu *t)
{
    cpu_set_t allowed, here;
    int cpu, moved = 0;

    const void *page = __atomic_load_n(&t->sched_page, __ATOMIC_ACQUIRE);

    if (!page || !t->tid ||
        (!xtk_sched_preempted(page) && !hv_vm_waking(t->hv, t->index)))
        return 0; /* it runs again: nothing to give it */
    cpu = sched_getcpu();
    if (cpu >= 0 && !__atomic_exchange_n(&t->boosting, 1, __ATOMIC_ACQUIRE)) {
        if (sched_getaffinity((pid_t)t->tid, sizeof(allowed), &allowed) == 0 &&
            CPU_ISSET(cpu, &allowed) && CPU_COUNT(&allowed) > 1) {
            CPU_ZERO(&here);
            CPU_SET(cpu, &here);
            moved = sched_setaffinity((pid_t)t->tid, sizeof(here), &here) == 0;
        }
        if (!moved)
            __atomic_store_n(&t->boosting, 0, __ATOMIC_RELEASE);
    }
    sched_yield();
    if (moved) {
        sched_setaffinity((pid_t)t->tid, sizeof(allowed), &allowed);
        __atomic_store_n(&t->boosting, 0, __ATOMIC_RELEASE);
    }
    return 1 + moved;
}

/* The yield-to doorbell (abi.h): vCPU v waits for vCPU `target`, whose
 * thread the guest saw preempted. */
void hv_sched_yield_to(struct hv *hv, struct hv_vcpu *v, uint32_t target)
{
    int r;

    if (target >= hv->nr_vcpus || target == v->index)
        return;
    __atomic_add_fetch(&v->yields, 1, __ATOMIC_RELAXED);
    r = give_cpu(&hv->vcpus[target]);
    if (r)
        __atomic_add_fetch(&v->yields_given, 1, __ATOMIC_RELAXED);
    if (r == 2)
        __atomic_add_fetch(&v->yields_moved, 1, __ATOMIC_RELAXED);
}

void hv_sched_boost(struct hv_vcpu *v)
{
    if (give_cpu(v))
        __atomic_add_fetch(&v->boosts, 1, __ATOMIC_RELAXED);
}

int hv_sched_rt_boost(struct hv_vcpu *v)
{
    struct sched_param sp = {.sched_priority = HV_RT_VCPU};

    if (!v->tid || __atomic_exchange_n(&v->rt_boosted, 1, __ATOMIC_ACQ_REL))
        return 0;
    if (sched_setscheduler((pid_t)v->tid, SCHED_FIFO, &sp) < 0) {
        __atomic_store_n(&v->rt_boosted, 0, __ATOMIC_RELEASE);
        return -1;
    }
    return 1;
}

void hv_sched_rt_unboost(struct hv_vcpu *v)
{
    struct sched_param sp = {.sched_priority = 0};

    if (__atomic_load_n(&v->rt_boosted, __ATOMIC_ACQUIRE) &&
        __atomic_exchange_n(&v->rt_boosted, 0, __ATOMIC_ACQ_REL) &&
        sched_setscheduler((pid_t)v->tid, SCHED_OTHER, &sp) < 0)
        hv_log("vCPU %u: back to SCHED_OTHER: %m", v->index);
}

/* The named counters of a KVM binary statistics fd, cumulative ones. */
static void kvm_stats_read(int sfd, struct xtk_hvctl_vcpu *o)
{
    static const struct {
        const char *name;
        size_t off;
    } want[] = {
        {"directed_yield_attempted",
         offsetof(struct xtk_hvctl_vcpu, kvm_yields_attempted)},
        {"directed_yield_successful",
         offsetof(struct xtk_hvctl_vcpu, kvm_yields_successful)},
        {"halt_exits", offsetof(struct xtk_hvctl_vcpu, kvm_halt_exits)},
        {"exits", offsetof(struct xtk_hvctl_vcpu, kvm_exits)},
        {"hypercalls", offsetof(struct xtk_hvctl_vcpu, kvm_hypercalls)},
        {"preemption_reported",
         offsetof(struct xtk_hvctl_vcpu, kvm_preemption_reported)},
        {"preemption_other",
         offsetof(struct xtk_hvctl_vcpu, kvm_preemption_other)},
    };
    struct kvm_stats_header h;
    size_t dsz;
    char *descs;

    if (pread(sfd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
        h.num_desc > 4096 || h.name_size > 4096)
        return;
    dsz = sizeof(struct kvm_stats_desc) + h.name_size;
    descs = malloc(dsz * h.num_desc);
    if (!descs)
        return;
    if (pread(sfd, descs, dsz * h.num_desc, h.desc_offset) ==
        (ssize_t)(dsz * h.num_desc)) {
        for (uint32_t i = 0; i < h.num_desc; i++) {
            const struct kvm_stats_desc *d = (const void *)(descs + i * dsz);
            uint64_t val;

            if (d->size != 1)
                continue;
            for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++)
                if (!strncmp(d->name, want[w].name, h.name_size) &&
                    pread(sfd, &val, sizeof(val), h.data_offset + d->offset) ==
                        (ssize_t)sizeof(val))
                    memcpy((char *)o + want[w].off, &val, sizeof(val));
        }
    }
    free(descs);
}

void hv_sched_vcpu_stats(struct hv_vcpu *v, struct xtk_hvctl_vcpu *o)
{
    char path[96], line[256];
    FILE *f;

    memset(o, 0, sizeof(*o));
    o->index = v->index;
    o->tid = v->tid;
    o->flags = __atomic_load_n(&v->sched_page, __ATOMIC_ACQUIRE)
                   ? XTK_HVCTL_VCPU_PUBLISHED
                   : 0;
    snprintf(path, sizeof(path), "/proc/self/task/%" PRIu32 "/schedstat",
             v->tid);
    f = v->tid ? fopen(path, "re") : NULL;
    if (f) {
        unsigned long long run, wait, slices;
        if (fscanf(f, "%llu %llu %llu", &run, &wait, &slices) == 3) {
            o->run_ns = run;
            o->wait_ns = wait;
            o->slices = slices;
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/self/task/%" PRIu32 "/status", v->tid);
    f = v->tid ? fopen(path, "re") : NULL;
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            unsigned long long n;
            if (sscanf(line, "voluntary_ctxt_switches: %llu", &n) == 1)
                o->switches_voluntary = n;
            else if (sscanf(line, "nonvoluntary_ctxt_switches: %llu", &n) == 1)
                o->switches_preempted = n;
        }
        fclose(f);
    }
    if (v->stats_fd >= 0) {
        o->flags |= XTK_HVCTL_VCPU_KVM_STATS;
        kvm_stats_read(v->stats_fd, o);
    }
    o->yields = __atomic_load_n(&v->yields, __ATOMIC_RELAXED);
    o->yields_given = __atomic_load_n(&v->yields_given, __ATOMIC_RELAXED);
    o->yields_moved = __atomic_load_n(&v->yields_moved, __ATOMIC_RELAXED);
    o->boosts = __atomic_load_n(&v->boosts, __ATOMIC_RELAXED);
}

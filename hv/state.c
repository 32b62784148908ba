/*
 * state.c - the VM's and vCPUs' state as records (lib/kvm/hvctl.h), for
 * GET_STATE and SET_STATE.  Called from the main thread with every vCPU
 * parked.
 *
 * Set order (as Firecracker and QEMU do): the platform first (PIT, the
 * three irqchips, then the clock, which must be set before any vCPU
 * runs); then per vCPU: CPUID (what the MSRs and XSAVE are checked
 * against), MP state, regs, sregs, XSAVE, XCRs, debug regs, LAPIC, MSRs
 * (TSC deadline last, after the LAPIC), events last.  Every record is
 * checked before anything is applied, the CPUID against what this host's
 * KVM offers; an MSR KVM refuses fails the load.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <x86intrin.h>

#include "backend.h"
#include "hv.h"

enum kind {
    K_CPUID,
    K_MP_STATE,
    K_REGS,
    K_SREGS,
    K_XSAVE,
    K_XCRS,
    K_DEBUGREGS,
    K_LAPIC,
    K_MSRS,
    K_EVENTS,
    K_NR_VCPU,
};

struct vcpu_rec {
    uint32_t type;
    unsigned long get, set;
    size_t size; /* 0: variable (CPUID, XSAVE, MSRS) */
};

/* In set order. */
static const struct vcpu_rec vcpu_recs[K_NR_VCPU] = {
    [K_CPUID] = {XTK_KVM_REC_CPUID, 0, 0, 0},
    [K_MP_STATE] = {XTK_KVM_REC_MP_STATE, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
                    sizeof(struct kvm_mp_state)},
    [K_REGS] = {XTK_KVM_REC_REGS, KVM_GET_REGS, KVM_SET_REGS,
                sizeof(struct kvm_regs)},
    [K_SREGS] = {XTK_KVM_REC_SREGS, KVM_GET_SREGS, KVM_SET_SREGS,
                 sizeof(struct kvm_sregs)},
    [K_XSAVE] = {XTK_KVM_REC_XSAVE, 0, KVM_SET_XSAVE, 0},
    [K_XCRS] = {XTK_KVM_REC_XCRS, KVM_GET_XCRS, KVM_SET_XCRS,
                sizeof(struct kvm_xcrs)},
    [K_DEBUGREGS] = {XTK_KVM_REC_DEBUGREGS, KVM_GET_DEBUGREGS,
                     KVM_SET_DEBUGREGS, sizeof(struct kvm_debugregs)},
    [K_LAPIC] = {XTK_KVM_REC_LAPIC, KVM_GET_LAPIC, KVM_SET_LAPIC,
                 sizeof(struct kvm_lapic_state)},
    [K_MSRS] = {XTK_KVM_REC_MSRS, 0, 0, 0},
    [K_EVENTS] = {XTK_KVM_REC_EVENTS, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
                  sizeof(struct kvm_vcpu_events)},
};

/* Where reserve() puts a record's body. */
#define REC_BODY (sizeof(struct xtk__rec_hdr) + sizeof(struct xtk_kvm_rec_head))

/*
 * Makes room for one record of size body bytes at *len in buf (max bytes):
 * its header and head written, the body and the padding zeroed.  Returns
 * where the body goes, for the ioctl to fill in place; NULL (E2BIG) if it
 * does not fit.  *len moves past the record.
 */
static void *reserve(void *buf, size_t max, size_t *len, uint32_t type,
                     uint32_t instance, size_t size)
{
    struct xtk_kvm_rec_head head = {.instance = instance};
    struct xtk__rec_hdr h = {type, (uint32_t)(sizeof(head) + size)};
    size_t total = sizeof(h) + ((h.length + 7) & ~7u);
    char *p = (char *)buf + *len;

    if (total > max - *len) {
        hv_log("state: more than %zu bytes of records", max);
        errno = E2BIG;
        return NULL;
    }
    memcpy(p, &h, sizeof(h));
    memcpy(p + sizeof(h), &head, sizeof(head));
    memset(p + REC_BODY, 0, total - REC_BODY);
    *len += total;
    return p + REC_BODY;
}

static int get_vm(struct hv *hv, void *buf, size_t max, size_t *len)
{
    struct kvm_irqchip *chip;
    void *p;

    p = reserve(buf, max, len, XTK_KVM_REC_CLOCK, XTK_KVM_REC_VM,
                sizeof(struct kvm_clock_data));
    if (!p || ioctl(hv->vm_fd, KVM_GET_CLOCK, p) < 0)
        goto err;
    p = reserve(buf, max, len, XTK_KVM_REC_PIT2, XTK_KVM_REC_VM,
                sizeof(struct kvm_pit_state2));
    if (!p || ioctl(hv->vm_fd, KVM_GET_PIT2, p) < 0)
        goto err;
    for (uint32_t id = 0; id < 3; id++) {
        chip = reserve(buf, max, len, XTK_KVM_REC_IRQCHIP, XTK_KVM_REC_VM,
                       sizeof(*chip));
        if (!chip)
            goto err;
        chip->chip_id = id;
        if (ioctl(hv->vm_fd, KVM_GET_IRQCHIP, chip) < 0)
            goto err;
    }
    return 0;
err:
    hv_log("state: VM: %m");
    return -1;
}

#define MAX_CPUID 256 /* KVM's KVM_MAX_CPUID_ENTRIES */

/* Room enough for one vCPU's records (with their headers). */
static size_t vcpu_recs_cap(const struct hv *hv)
{
    return 16384 + hv->xsave_size +
           MAX_CPUID * sizeof(struct kvm_cpuid_entry2) +
           HV_MAX_MSRS * sizeof(struct kvm_msr_entry);
}

/*
 * The vCPU's CPUID table: room for the most KVM keeps, then the record
 * cut down to the entries it has.
 */
static int get_cpuid(struct hv_vcpu *v, void *buf, size_t max, size_t *len)
{
    size_t start = *len, room = sizeof(struct kvm_cpuid2) +
                                MAX_CPUID * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c =
        reserve(buf, max, len, XTK_KVM_REC_CPUID, v->index, room);
    struct xtk__rec_hdr h;
    uint32_t size;

    if (!c)
        return -1;
    c->nent = MAX_CPUID;
    if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0)
        return -1;
    size = (uint32_t)(sizeof(*c) + c->nent * sizeof(c->entries[0]));
    memcpy(&h, (char *)buf + start, sizeof(h));
    h.length = (uint32_t)sizeof(struct xtk_kvm_rec_head) + size;
    memcpy((char *)buf + start, &h, sizeof(h));
    *len = start + sizeof(h) + ((h.length + 7) & ~7u);
    /* reserve() zeroed the room: the new padding is zero too. */
    return 0;
}

/*
 * The sregs' interrupt bitmap as KVM_GET_SREGS gives it: the interrupt
 * injected into the vCPU and not yet delivered, if any, which the events
 * also name.  KVM's copy in kvm_run keeps every bit an earlier KVM_RUN
 * set there (it only sets the bit, into a buffer KVM_GET_SREGS zeroes
 * and kvm_run's is not): seen here as a stale injected vector 0x30 long
 * after the events said none (the ports workload's exits).  Restored as
 * it was, SET_SREGS would inject it, were the events not set after.
 */
static void sync_irq_bitmap(struct kvm_sregs *s,
                            const struct kvm_vcpu_events *ev)
{
    memset(s->interrupt_bitmap, 0, sizeof(s->interrupt_bitmap));
    if (ev->interrupt.injected)
        s->interrupt_bitmap[ev->interrupt.nr / 64] |=
            1ull << (ev->interrupt.nr % 64);
}

/* The records a parked vCPU cannot change (hv_state_prefetch): the
 * MSRs but for the TSC, which goes on counting (msrs_tsc_moved). */
#define PF_KINDS                                                               \
    ((1u << K_CPUID) | (1u << K_XSAVE) | (1u << K_XCRS) |                      \
     (1u << K_DEBUGREGS) | (1u << K_MSRS))

#define MSR_IA32_TSC 0x10

/*
 * The TSC in an MSR record taken at host TSC `at`, moved on to now.  The
 * guest's TSC is the host's plus an offset (xtk-hv never sets another
 * rate: KVM_SET_TSC_KHZ; kvm-pvm has none), so it has gone on by as many
 * cycles as the host's since: as exact as a read then, give or take the
 * ioctl's own length either way.
 */
static void msrs_tsc_moved(struct kvm_msrs *m, uint64_t at, uint64_t now)
{
    for (uint32_t i = 0; i < m->nmsrs; i++)
        if (m->entries[i].index == MSR_IA32_TSC)
            m->entries[i].data += now - at;
}

/* The records the last KVM_RUN left in kvm_run (KVM_CAP_SYNC_REGS). */
#define SYNC_KINDS ((1u << K_REGS) | (1u << K_SREGS) | (1u << K_EVENTS))

/* The CPUID record into buf: the one kept (v->cpuid_rec), unless fresh
 * (or none kept yet): then KVM's, kept for the next time. */
static int get_cpuid_kept(struct hv_vcpu *v, void *buf, size_t max, size_t *len,
                          int fresh)
{
    size_t start = *len;
    void *keep;

    if (v->cpuid_len && !fresh) {
        if (v->cpuid_len > max - *len) {
            errno = E2BIG;
            return -1;
        }
        memcpy((char *)buf + *len, v->cpuid_rec, v->cpuid_len);
        *len += v->cpuid_len;
        return 0;
    }
    if (get_cpuid(v, buf, max, len) < 0)
        return -1;
    if (!fresh && (keep = realloc(v->cpuid_rec, *len - start))) {
        memcpy(keep, (char *)buf + start, *len - start);
        v->cpuid_rec = keep;
        v->cpuid_len = *len - start;
    }
    return 0;
}

/* One vCPU's records of the kinds in mask, each ioctl writing straight
 * into buf, or copied from what its thread kept (v->pf_valid) or from
 * its CPUID kept, unless fresh (KVM's answer, every one); with off,
 * where each one starts and its length (by kind). */
static int get_vcpu_kinds(struct hv *hv, struct hv_vcpu *v, void *buf,
                          size_t max, size_t *len, unsigned int mask,
                          size_t *off, size_t *rlen, int fresh)
{
    struct kvm_lapic_state lapic;
    int have_lapic = 0, stale;
    uint32_t svr;
    uint64_t t0;
    unsigned int sync;

    /* What of kvm_run's copy holds (hv_vcpu.synced).  A vCPU that has
     * not left KVM_RUN last may have been sent an NMI, SMI or SIPI by a
     * sibling since: its events from KVM.  An INIT, taken by the
     * GET_MP_STATE before (KVM's kvm_apic_accept_events()), resets every
     * register and leaves its LAPIC software-disabled (SVR 0xff): with
     * the APIC enabled, no INIT has come since it last ran, and the
     * registers it left hold; disabled, they are taken from KVM too. */
    sync = v->synced && !fresh ? SYNC_KINDS : 0;
    stale =
        sync && v->out_seq != __atomic_load_n(&hv->out_seq, __ATOMIC_RELAXED);
    if (stale)
        sync &= ~(1u << K_EVENTS);
    for (int k = 0; k < K_NR_VCPU; k++) {
        const struct vcpu_rec *d = &vcpu_recs[k];
        size_t size = d->size, start = *len;
        struct kvm_msrs *msrs;
        void *p;
        int r;

        if (!(mask & (1u << k)))
            continue;
        if ((k == K_REGS || k == K_SREGS) && (sync & (1u << k)) && stale &&
            !have_lapic) {
            /* After the MP state (in set order, before the registers). */
            if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
                goto err;
            have_lapic = 1;
            memcpy(&svr, &lapic.regs[0xf0], sizeof(svr));
            if (!(svr & 0x100))
                sync = 0;
        }
        if (v->pf_valid && !off && !fresh && (PF_KINDS & (1u << k))) {
            if (v->pf_len[k] > max - *len) {
                errno = E2BIG;
                goto err;
            }
            memcpy((char *)buf + *len, (char *)v->pf_buf + v->pf_off[k],
                   v->pf_len[k]);
            if (k == K_MSRS)
                msrs_tsc_moved((void *)((char *)buf + *len + REC_BODY),
                               v->pf_tsc, __rdtsc());
            *len += v->pf_len[k];
            continue;
        }
        if (k == K_CPUID) {
            r = get_cpuid_kept(v, buf, max, len, fresh);
        } else if (k == K_XSAVE) {
            size = hv->xsave_size;
            p = reserve(buf, max, len, d->type, v->index, size);
            r = !p ? -1
                   : ioctl(v->fd,
                           size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2
                                                           : KVM_GET_XSAVE,
                           p);
        } else if (k == K_MSRS) {
            size = sizeof(*msrs) + hv->nr_msrs * sizeof(msrs->entries[0]);
            msrs = p = reserve(buf, max, len, d->type, v->index, size);
            if (!p)
                goto err;
            msrs->nmsrs = hv->nr_msrs;
            for (unsigned int i = 0; i < hv->nr_msrs; i++)
                msrs->entries[i].index = hv->msrs[i];
            t0 = __rdtsc();
            r = ioctl(v->fd, KVM_GET_MSRS, msrs);
            v->msrs_tsc_err = (__rdtsc() - t0) / 2;
            v->msrs_tsc = t0 + v->msrs_tsc_err;
            if (r >= 0 && (unsigned int)r != hv->nr_msrs) {
                hv_log("vCPU %u: MSR %#x unreadable", v->index, hv->msrs[r]);
                errno = EIO;
                goto err;
            }
        } else if (k == K_LAPIC && have_lapic) {
            p = reserve(buf, max, len, d->type, v->index, size);
            if (p)
                memcpy(p, &lapic, size);
            r = p ? 0 : -1;
        } else if (sync & (1u << k)) {
            /* What the last KVM_RUN left in kvm_run: no ioctl. */
            const struct kvm_sync_regs *sr = &v->run->s.regs;

            p = reserve(buf, max, len, d->type, v->index, size);
            if (p)
                memcpy(p,
                       k == K_REGS    ? (const void *)&sr->regs
                       : k == K_SREGS ? (const void *)&sr->sregs
                                      : (const void *)&sr->events,
                       size);
            if (p && k == K_SREGS)
                sync_irq_bitmap(p, &sr->events);
            r = p ? 0 : -1;
        } else {
            p = reserve(buf, max, len, d->type, v->index, size);
            r = !p ? -1 : ioctl(v->fd, d->get, p);
        }
        if (r < 0)
            goto err;
        if (off) {
            off[k] = start;
            rlen[k] = *len - start;
        }
    }
    return 0;
err:
    hv_log("state: vCPU %u: %m", v->index);
    return -1;
}

static int get_vcpu(struct hv *hv, struct hv_vcpu *v, void *buf, size_t max,
                    size_t *len)
{
    return get_vcpu_kinds(hv, v, buf, max, len, ~0u, NULL, NULL, 0);
}

int hv_state_prefetch(struct hv *hv, struct hv_vcpu *v)
{
    size_t cap = vcpu_recs_cap(hv), len = 0;
    int r;

    if (v->pf_cap < cap) {
        void *b = realloc(v->pf_buf, cap);

        if (!b)
            return -1;
        v->pf_buf = b;
        v->pf_cap = cap;
    }
    r = get_vcpu_kinds(hv, v, v->pf_buf, v->pf_cap, &len, PF_KINDS, v->pf_off,
                       v->pf_len, 0);
    v->pf_tsc = v->msrs_tsc;
    v->pf_tsc_err = v->msrs_tsc_err;
    return r;
}

/* The TSC of kept (its thread's read at v->pf_tsc) moved on as a STOP
 * moves it, against fresh's (read at v->msrs_tsc): nonzero if they
 * differ by more than the reads' uncertainty and TSC_SLACK; kept then
 * has fresh's. */
#define TSC_SLACK 60000 /* cycles: 20 us at 3 GHz */
static int tsc_differs(const struct hv_vcpu *v, struct kvm_msrs *kept,
                       const struct kvm_msrs *fresh)
{
    uint64_t slack = v->pf_tsc_err + v->msrs_tsc_err + TSC_SLACK;
    uint64_t now = __rdtsc();

    msrs_tsc_moved(kept, v->pf_tsc, now);
    for (uint32_t i = 0; i < kept->nmsrs && i < fresh->nmsrs; i++) {
        uint64_t want, got = fresh->entries[i].data;

        if (kept->entries[i].index != MSR_IA32_TSC ||
            fresh->entries[i].index != MSR_IA32_TSC)
            continue;
        /* As it was when KVM's was read. */
        want = kept->entries[i].data - (now - v->msrs_tsc);
        kept->entries[i].data = got;
        if (want > got + slack || got > want + slack) {
            hv_log("state: vCPU %u: the TSC kept, moved on, is %" PRIu64
                   " cycles from KVM's (within %" PRIu64 " expected)",
                   v->index, want > got ? want - got : got - want, slack);
            return 1;
        }
    }
    return 0;
}

/* XTK_HV_CHECK_PREFETCH=1 (the tests): what a vCPU's thread kept, its
 * CPUID kept, and what its last KVM_RUN left in kvm_run (the sync regs)
 * are checked against KVM's own answer at each use; a difference fails
 * it. */
static int prefetch_checked(struct hv *hv, struct hv_vcpu *v)
{
    unsigned int mask = (v->pf_valid ? PF_KINDS : 0) |
                        (v->cpuid_len ? 1u << K_CPUID : 0) |
                        (v->synced ? SYNC_KINDS : 0);
    size_t cap = vcpu_recs_cap(hv);
    size_t off[K_NR_VCPU], rl[K_NR_VCPU], soff[K_NR_VCPU], srl[K_NR_VCPU];
    size_t len = 0, slen = 0;
    void *b, *sb = NULL, *mb = NULL;
    int r = 0;

    if (!mask)
        return 0;
    b = malloc(cap);
    if (!b || get_vcpu_kinds(hv, v, b, cap, &len, mask, off, rl, 1) < 0)
        r = -1;
    if (!r && v->synced &&
        (!(sb = malloc(cap)) ||
         get_vcpu_kinds(hv, v, sb, cap, &slen, SYNC_KINDS, soff, srl, 0) < 0))
        r = -1;
    for (int k = 0; k < K_NR_VCPU && !r; k++) {
        const void *kept;
        size_t klen;

        if (!(mask & (1u << k)))
            continue;
        if (SYNC_KINDS & (1u << k)) {
            kept = (char *)sb + soff[k];
            klen = srl[k];
        } else {
            kept =
                k == K_CPUID ? v->cpuid_rec : (char *)v->pf_buf + v->pf_off[k];
            klen = k == K_CPUID ? v->cpuid_len : v->pf_len[k];
        }
        if (k == K_MSRS && rl[k] == klen && (mb = malloc(klen))) {
            /* The TSC kept, moved on, against KVM's: both within their
             * reads' lengths (and some slack); the rest exactly. */
            memcpy(mb, kept, klen);
            kept = mb;
            if (tsc_differs(v, (void *)((char *)mb + REC_BODY),
                            (const void *)((char *)b + off[k] + REC_BODY))) {
                errno = EIO;
                r = -1;
                break;
            }
        }
        if (rl[k] != klen || memcmp((char *)b + off[k], kept, rl[k])) {
            size_t at = 0;

            while (at < rl[k] && at < klen &&
                   ((char *)b)[off[k] + at] == ((const char *)kept)[at])
                at++;
            hv_log("state: vCPU %u: record %#x %s differs from KVM's at "
                   "byte %zu",
                   v->index, vcpu_recs[k].type,
                   SYNC_KINDS & (1u << k) ? "as kvm_run has it" : "kept", at);
            errno = EIO;
            r = -1;
        }
    }
    free(mb);
    free(sb);
    free(b);
    return r;
}

/* XTK_HV_CHECK_PREFETCH=1 */
static int check_prefetch(void)
{
    static int check = -1;

    if (check < 0) {
        const char *e = getenv("XTK_HV_CHECK_PREFETCH");

        check = e && *e == '1';
    }
    return check;
}

/*
 * An SMP guest's vCPUs at a GET_STATE (a STOP's) are taken on two
 * threads: the control thread and a helper, each claiming the next vCPU
 * not taken yet, into that vCPU's own buffer; the control thread then
 * puts them in order.  Each vCPU's records are a few vCPU ioctls (~5 us
 * each on this nested machine, ~18 us a held vCPU, ~50 us vCPU 0),
 * taken one after another by one thread while the other core sat idle
 * with every vCPU parked.  From STATE_PAR_VCPUS vCPUs (a helper woken
 * costs about one vCPU's share).
 */
#define STATE_PAR_VCPUS 4

static void take_vcpu(struct hv *hv, struct hv_vcpu *v)
{
    v->st_len = 0;
    v->st_err = 0;
    if ((check_prefetch() && prefetch_checked(hv, v) < 0) ||
        get_vcpu(hv, v, v->st_buf, v->st_cap, &v->st_len) < 0)
        v->st_err = errno ? errno : EIO;
}

static void claim_vcpus(struct hv *hv)
{
    unsigned int i;

    while ((i = __atomic_fetch_add(&hv->st_next, 1, __ATOMIC_ACQ_REL)) <
           hv->nr_vcpus) {
        take_vcpu(hv, &hv->vcpus[i]);
        __atomic_add_fetch(&hv->st_finished, 1, __ATOMIC_RELEASE);
    }
}

static void *helper_main(void *arg)
{
    struct hv *hv = arg;
    struct sched_param sp = {.sched_priority = HV_RT_CONTROL};
    unsigned int seen;

    /* As the control thread: it takes its share at once.  (Named for
     * ps and the tests: the one other real-time thread.) */
    pthread_setname_np(pthread_self(), "xtk-hv-state");
    if (hv->control_rt)
        sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp);
    pthread_mutex_lock(&hv->st_lock);
    seen = hv->st_gen;
    for (;;) {
        while (hv->st_gen == seen && !hv->st_quit)
            pthread_cond_wait(&hv->st_cond, &hv->st_lock);
        if (hv->st_quit)
            break;
        seen = hv->st_gen;
        pthread_mutex_unlock(&hv->st_lock);
        claim_vcpus(hv);
        pthread_mutex_lock(&hv->st_lock);
        pthread_cond_signal(&hv->st_done_cond);
    }
    pthread_mutex_unlock(&hv->st_lock);
    return NULL;
}

void hv_state_helper_start(struct hv *hv)
{
    size_t cap = vcpu_recs_cap(hv);
    const char *e = getenv("XTK_HV_STATE_THREADS");
    int r;

    if (hv->nr_vcpus < STATE_PAR_VCPUS || (e && !strcmp(e, "1")))
        return;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];

        v->st_buf = malloc(cap);
        if (!v->st_buf)
            goto none;
        v->st_cap = cap;
    }
    pthread_mutex_init(&hv->st_lock, NULL);
    pthread_cond_init(&hv->st_cond, NULL);
    pthread_cond_init(&hv->st_done_cond, NULL);
    r = pthread_create(&hv->st_th, NULL, helper_main, hv);
    if (!r) {
        hv->st_th_started = 1;
        return;
    }
    errno = r;
none:
    hv_log("state: no helper thread (%m): the control thread takes every "
           "vCPU");
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        free(hv->vcpus[i].st_buf);
        hv->vcpus[i].st_buf = NULL;
        hv->vcpus[i].st_cap = 0;
    }
}

void hv_state_helper_stop(struct hv *hv)
{
    if (!hv->st_th_started)
        return;
    pthread_mutex_lock(&hv->st_lock);
    hv->st_quit = 1;
    pthread_cond_signal(&hv->st_cond);
    pthread_mutex_unlock(&hv->st_lock);
    pthread_join(hv->st_th, NULL);
    hv->st_th_started = 0;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        free(hv->vcpus[i].st_buf);
        hv->vcpus[i].st_buf = NULL;
    }
}

/* Every vCPU's records, the helper taking its share: in order into buf. */
static int get_vcpus_shared(struct hv *hv, void *buf, size_t max, size_t *len)
{
    __atomic_store_n(&hv->st_finished, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&hv->st_next, 0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&hv->st_lock);
    hv->st_gen++;
    pthread_cond_signal(&hv->st_cond);
    pthread_mutex_unlock(&hv->st_lock);
    claim_vcpus(hv);
    /* The helper's last vCPU, if it is still on one. */
    for (int spins = 0;
         spins < 2000 &&
         __atomic_load_n(&hv->st_finished, __ATOMIC_ACQUIRE) < hv->nr_vcpus;
         spins++)
        __builtin_ia32_pause();
    pthread_mutex_lock(&hv->st_lock);
    while (__atomic_load_n(&hv->st_finished, __ATOMIC_ACQUIRE) < hv->nr_vcpus)
        pthread_cond_wait(&hv->st_done_cond, &hv->st_lock);
    pthread_mutex_unlock(&hv->st_lock);
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];

        if (v->st_err) {
            errno = v->st_err;
            return -1;
        }
        if (v->st_len > max - *len) {
            errno = E2BIG;
            hv_log("state: vCPU %u: %m", i);
            return -1;
        }
        memcpy((char *)buf + *len, v->st_buf, v->st_len);
        *len += v->st_len;
    }
    return 0;
}

int hv_state_get(struct hv *hv, void *buf, size_t max, size_t *len)
{
    int check = check_prefetch();
    unsigned int kept = 0;

    *len = 0;
    if (get_vm(hv, buf, max, len) < 0)
        return -1;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        kept += hv->vcpus[i].pf_valid;
    if (hv->st_th_started) {
        if (get_vcpus_shared(hv, buf, max, len) < 0)
            return -1;
    } else {
        for (unsigned int i = 0; i < hv->nr_vcpus; i++)
            if ((check && prefetch_checked(hv, &hv->vcpus[i]) < 0) ||
                get_vcpu(hv, &hv->vcpus[i], buf, max, len) < 0)
                return -1;
    }
    if (check && kept)
        hv_log("state: what %u held vCPU(s) kept at their park is KVM's", kept);
    return 0;
}

/* ---- set ------------------------------------------------------------ */

struct parsed {
    const void *clock, *pit, *chip[3];
    const void *vcpu[XTK_GUEST_MAX_VCPUS][K_NR_VCPU];
    uint32_t vcpu_len[XTK_GUEST_MAX_VCPUS][K_NR_VCPU];
};

static int bad(const char *why, uint32_t type)
{
    hv_log("set-state: record %#x: %s", type, why);
    errno = EINVAL;
    return -1;
}

/* The entry for function.index in table c, or NULL. */
static const struct kvm_cpuid_entry2 *leaf_of(const struct kvm_cpuid2 *c,
                                              uint32_t function, uint32_t index)
{
    for (unsigned int i = 0; i < c->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &c->entries[i];

        if (e->function == function &&
            (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
             e->index == index))
            return e;
    }
    return NULL;
}

/*
 * The feature words of CPUID that a guest may rely on, with the bits the
 * kernel sets by itself (OSXSAVE, OSPKE: they follow CR4) left out.
 */
static const struct {
    uint32_t function, index;
    unsigned int reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
    uint32_t ignore;
    const char *name;
} feature_words[] = {
    {0x1, 0, 2, 1u << 27, "1.ecx"},
    {0x1, 0, 3, 0, "1.edx"},
    {0x7, 0, 1, 0, "7.0.ebx"},
    {0x7, 0, 2, 1u << 4, "7.0.ecx"},
    {0x7, 0, 3, 0, "7.0.edx"},
    {0x7, 1, 0, 0, "7.1.eax"},
    {0xd, 0, 0, 0, "0xd.0.eax (XCR0)"},
    {0xd, 0, 3, 0, "0xd.0.edx (XCR0)"},
    {0xd, 1, 0, 0, "0xd.1.eax"},
    {0x80000001, 0, 2, 0, "0x80000001.ecx"},
    {0x80000001, 0, 3, 0, "0x80000001.edx"},
    {0x80000008, 0, 1, 0, "0x80000008.ebx"},
};

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, unsigned int reg)
{
    return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

/*
 * Whether this host's KVM offers every CPU feature the source's vCPU had:
 * a guest that used one it no longer has would fault or misbehave after
 * the move, so that is a refusal, naming the features.  What is offered
 * is the vCPU's own table as KVM holds it here (KVM_GET_CPUID2 on the
 * vCPU xtk-hv set up; kvm-pvm fills in the host's features, which its
 * KVM_GET_SUPPORTED_CPUID does not list).
 */
static int cpuid_offered(const struct hv *hv, const struct kvm_cpuid2 *src,
                         uint32_t vcpu)
{
    struct kvm_cpuid2 *here =
        calloc(1, sizeof(*here) + MAX_CPUID * sizeof(here->entries[0]));
    int r = 0;

    if (!here)
        return -1;
    here->nent = MAX_CPUID;
    if (ioctl(hv->vcpus[vcpu].fd, KVM_GET_CPUID2, here) < 0) {
        hv_log("set-state: vCPU %u: KVM_GET_CPUID2: %m", vcpu);
        free(here);
        return -1;
    }
    for (size_t w = 0; w < sizeof(feature_words) / sizeof(feature_words[0]);
         w++) {
        const struct kvm_cpuid_entry2 *s, *h;
        uint32_t missing;

        s = leaf_of(src, feature_words[w].function, feature_words[w].index);
        if (!s)
            continue;
        h = leaf_of(here, feature_words[w].function, feature_words[w].index);
        missing = reg_of(s, feature_words[w].reg) &
                  ~(h ? reg_of(h, feature_words[w].reg) : 0) &
                  ~feature_words[w].ignore;
        if (missing) {
            hv_log("set-state: vCPU %u: the source's CPU has features this "
                   "host's KVM does not offer: CPUID %s bits %#x (the "
                   "source's %#x, here %#x)",
                   vcpu, feature_words[w].name, missing,
                   reg_of(s, feature_words[w].reg),
                   h ? reg_of(h, feature_words[w].reg) : 0);
            errno = EINVAL;
            r = -1;
            break;
        }
    }
    free(here);
    return r;
}

/* Checks one record and files it in p. */
static int parse_one(struct hv *hv, struct parsed *p, uint32_t type,
                     const void *body, uint32_t length)
{
    struct xtk_kvm_rec_head head;
    const char *data = (const char *)body + sizeof(head);
    uint32_t size;

    if (length < sizeof(head))
        return bad("shorter than its head", type);
    memcpy(&head, body, sizeof(head));
    size = length - (uint32_t)sizeof(head);
    if (head.reserved)
        return bad("reserved field set", type);

    if (type == XTK_KVM_REC_CLOCK || type == XTK_KVM_REC_PIT2 ||
        type == XTK_KVM_REC_IRQCHIP) {
        const void **slot;
        size_t want;

        if (head.instance != XTK_KVM_REC_VM)
            return bad("platform record for a vCPU", type);
        if (type == XTK_KVM_REC_CLOCK) {
            slot = &p->clock;
            want = sizeof(struct kvm_clock_data);
        } else if (type == XTK_KVM_REC_PIT2) {
            slot = &p->pit;
            want = sizeof(struct kvm_pit_state2);
        } else {
            struct kvm_irqchip chip;
            want = sizeof(chip);
            if (size != want)
                return bad("wrong size", type);
            memcpy(&chip, data, sizeof(chip));
            if (chip.chip_id > 2)
                return bad("no such irqchip", type);
            slot = &p->chip[chip.chip_id];
        }
        if (size != want)
            return bad("wrong size", type);
        if (*slot)
            return bad("twice", type);
        *slot = data;
        return 0;
    }

    if (head.instance >= hv->nr_vcpus)
        return bad("for a vCPU the domain lacks", type);
    for (int k = 0; k < K_NR_VCPU; k++) {
        const struct vcpu_rec *d = &vcpu_recs[k];

        if (d->type != type)
            continue;
        if (k == K_XSAVE && size != hv->xsave_size)
            return bad("XSAVE area of another size", type);
        if (k == K_CPUID) {
            struct kvm_cpuid2 c;
            if (size < sizeof(c))
                return bad("wrong size", type);
            memcpy(&c, data, sizeof(c));
            if (!c.nent || c.nent > MAX_CPUID ||
                size != sizeof(c) + c.nent * sizeof(struct kvm_cpuid_entry2))
                return bad("wrong size", type);
            if (cpuid_offered(hv, (const struct kvm_cpuid2 *)data,
                              head.instance) < 0)
                return -1;
        }
        if (k == K_MSRS) {
            struct kvm_msrs m;
            if (size < sizeof(m))
                return bad("wrong size", type);
            memcpy(&m, data, sizeof(m));
            if (m.nmsrs > HV_MAX_MSRS ||
                size != sizeof(m) + m.nmsrs * sizeof(struct kvm_msr_entry))
                return bad("wrong size", type);
        } else if (d->size && size != d->size) {
            return bad("wrong size", type);
        }
        if (p->vcpu[head.instance][k])
            return bad("twice", type);
        p->vcpu[head.instance][k] = data;
        p->vcpu_len[head.instance][k] = size;
        return 0;
    }
    return bad("unknown", type);
}

/*
 * KVM_SET_MSRS stops at the first MSR it refuses: that MSR's value would
 * be lost, so the load fails, naming it.
 */
static int set_msrs(struct hv_vcpu *v, const void *data, uint32_t size)
{
    struct kvm_msrs *m = malloc(size);
    int r;

    if (!m)
        return -1;
    memcpy(m, data, size);
    r = ioctl(v->fd, KVM_SET_MSRS, m);
    if (r >= 0 && (unsigned int)r != m->nmsrs) {
        hv_log("set-state: vCPU %u: MSR %#x (value %#llx) refused by this "
               "host's KVM",
               v->index, m->entries[r].index,
               (unsigned long long)m->entries[r].data);
        errno = EINVAL;
        r = -1;
    } else if (r > 0) {
        r = 0;
    }
    free(m);
    return r;
}

static int apply(struct hv *hv, struct parsed *p)
{
    if (p->pit && ioctl(hv->vm_fd, KVM_SET_PIT2, p->pit) < 0)
        goto err_vm;
    for (int i = 0; i < 3; i++)
        if (p->chip[i] && ioctl(hv->vm_fd, KVM_SET_IRQCHIP, p->chip[i]) < 0)
            goto err_vm;
    if (p->clock) {
        struct kvm_clock_data c;
        memcpy(&c, p->clock, sizeof(c));
        c.flags &= KVM_CLOCK_REALTIME; /* the only flag SET accepts */
        if (ioctl(hv->vm_fd, KVM_SET_CLOCK, &c) < 0)
            goto err_vm;
    }
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];

        v->synced = 0; /* kvm_run's copy is stale from here */
        for (int k = 0; k < K_NR_VCPU; k++) {
            const void *data = p->vcpu[i][k];
            int r;

            if (!data)
                continue;
            if (k == K_MSRS) {
                r = set_msrs(v, data, p->vcpu_len[i][k]);
            } else if (k == K_CPUID) {
                v->cpuid_len = 0; /* the kept copy is not this table */
                r = ioctl(v->fd, KVM_SET_CPUID2, data);
            } else {
                r = ioctl(v->fd, vcpu_recs[k].set, data);
            }
            if (r < 0) {
                hv_log("set-state: vCPU %u record %#x: %m", i,
                       vcpu_recs[k].type);
                return -1;
            }
        }
    }
    return 0;
err_vm:
    hv_log("set-state: platform: %m");
    return -1;
}

/* Files every record of buf in p; -1 (EINVAL) if one is wrong. */
static int parse(struct hv *hv, const void *buf, size_t len, struct parsed *p)
{
    size_t off = 0, skipped = 0;
    uint32_t type, length;
    const void *body;
    int r;

    while ((r = xtk__rec_next(buf, len, &off, &type, &body, &length)) > 0) {
        if (type < XTK_KVM_REC_BASE || type > XTK_KVM_REC_MAX) {
            skipped++;
            continue;
        }
        if (parse_one(hv, p, type, body, length) < 0)
            return -1;
    }
    if (skipped)
        hv_log("set-state: %zu records not KVM's: skipped", skipped);
    if (r < 0) {
        hv_log("set-state: records badly framed");
        errno = EINVAL;
    }
    return r;
}

int hv_state_check(struct hv *hv, const void *buf, size_t len)
{
    struct parsed *p = calloc(1, sizeof(*p));
    int r;

    if (!p)
        return -1;
    r = parse(hv, buf, len, p);
    free(p);
    return r;
}

int hv_state_set(struct hv *hv, const void *buf, size_t len)
{
    struct parsed *p = calloc(1, sizeof(*p));
    int r;

    /* What the vCPUs' threads kept is not their state any more. */
    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        hv->vcpus[i].pf_valid = 0;
    if (!p)
        return -1;
    r = parse(hv, buf, len, p);
    if (r == 0)
        r = apply(hv, p);
    free(p);
    return r;
}

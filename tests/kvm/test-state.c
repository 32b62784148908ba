/*
 * test-state.c - the state round trip, as the KVM selftests' state_test:
 * stop a guest, save its vCPU and platform state and its memory, destroy
 * it, create an empty domain, load memory and state, compare the state
 * read back with what was saved, resume, and check the guest carries on
 * (its own check after the resume and the host-side self-check pass).
 * Done for a guest that suspended itself (event channel) and for one
 * stopped by a pause in the middle of its work.  Also: bad state is
 * refused and an empty domain whose restore dies is destroyed.
 */
#include <linux/kvm.h>
#include <poll.h>

#include "kvm-test.h"
#include "kvm/hvctl.h"

static struct xtk_ctx *ctx;

struct saved {
    void *state;
    size_t len;
    uint8_t *ram;
    uint64_t nr_pages;
    uint32_t vcpus;
};

/* Finds the record of this type and instance in buf. */
static const uint8_t *find_rec(const void *buf, size_t len, uint32_t type,
                               uint32_t instance, uint32_t *length)
{
    size_t off = 0;
    uint32_t t, l;
    const void *body;

    while (xtk__rec_next(buf, len, &off, &t, &body, &l) == 1) {
        struct xtk_kvm_rec_head h;
        memcpy(&h, body, sizeof(h));
        if (t == type && h.instance == instance) {
            *length = l;
            return body;
        }
    }
    return NULL;
}

/*
 * What was loaded reads back the same, except what time changes: the
 * clock, the PIT's and the LAPIC timer's counts, the TSC (kvm-pvm ignores
 * writes to it) and what follows from it.
 */
static void compare_state(const struct saved *s, const void *buf, size_t len)
{
    static const uint32_t exact[] = {
        XTK_KVM_REC_MP_STATE, XTK_KVM_REC_REGS,    XTK_KVM_REC_SREGS,
        XTK_KVM_REC_XSAVE,    XTK_KVM_REC_XCRS,    XTK_KVM_REC_DEBUGREGS,
        XTK_KVM_REC_EVENTS,   XTK_KVM_REC_IRQCHIP, XTK_KVM_REC_CPUID,
    };
    static const size_t ev = sizeof(struct xtk_kvm_rec_head);
    size_t off = 0, n1 = 0, n2 = 0;
    uint32_t t, l;
    const void *body;

    while (xtk__rec_next(s->state, s->len, &off, &t, &body, &l) == 1)
        n1++;
    off = 0;
    while (xtk__rec_next(buf, len, &off, &t, &body, &l) == 1)
        n2++;
    TEST_ASSERT(n1 == n2 && n1 == 5 + 10 * (size_t)s->vcpus,
                "%zu records saved, %zu read back", n1, n2);

    for (uint32_t inst = 0; inst <= s->vcpus; inst++) {
        uint32_t instance = inst == s->vcpus ? XTK_KVM_REC_VM : inst;
        for (size_t i = 0; i < XTK__ARRAY_SIZE(exact); i++) {
            uint32_t la = 0, lb = 0;
            const uint8_t *a =
                find_rec(s->state, s->len, exact[i], instance, &la);
            const uint8_t *b = find_rec(buf, len, exact[i], instance, &lb);
            if (!a && !b && exact[i] == XTK_KVM_REC_IRQCHIP)
                continue; /* platform only */
            if ((instance == XTK_KVM_REC_VM) !=
                (exact[i] == XTK_KVM_REC_IRQCHIP))
                continue;
            TEST_ASSERT(a && b && la == lb, "record %#x of %#x in both",
                        exact[i], instance);
            for (uint32_t k = 0; k < la; k++) {
                /* A pending exception (a vCPU stopped on its way into an
                 * exception) reads back as injected: the same thing. */
                if (exact[i] == XTK_KVM_REC_EVENTS &&
                    (k == ev + 0 || k == ev + 3) &&
                    (a[ev] | a[ev + 3]) == (b[ev] | b[ev + 3]))
                    continue;
                TEST_ASSERT(a[k] == b[k],
                            "record %#x of %#x reads back: byte %u saved "
                            "%#x, read %#x",
                            exact[i], instance, k, a[k], b[k]);
            }
        }
        if (instance == XTK_KVM_REC_VM)
            continue;
        /* The LAPIC, but for the timer's current count (0x390). */
        uint32_t la = 0, lb = 0;
        const uint8_t *a =
            find_rec(s->state, s->len, XTK_KVM_REC_LAPIC, instance, &la);
        const uint8_t *b = find_rec(buf, len, XTK_KVM_REC_LAPIC, instance, &lb);
        size_t cur = sizeof(struct xtk_kvm_rec_head) + 0x390;
        TEST_ASSERT(a && b && la == lb && !memcmp(a, b, cur) &&
                        !memcmp(a + cur + 4, b + cur + 4, la - cur - 4),
                    "LAPIC of vCPU %u reads back", instance);
        /* The MSRs, but for the TSC and the kvmclock ones. */
        a = find_rec(s->state, s->len, XTK_KVM_REC_MSRS, instance, &la);
        b = find_rec(buf, len, XTK_KVM_REC_MSRS, instance, &lb);
        TEST_ASSERT(a && b && la == lb, "MSRs of vCPU %u", instance);
        const struct kvm_msr_entry *ea =
            (const void *)(a + sizeof(struct xtk_kvm_rec_head) + 8);
        const struct kvm_msr_entry *eb =
            (const void *)(b + sizeof(struct xtk_kvm_rec_head) + 8);
        for (size_t k = 0; k < (la - 16) / sizeof(*ea); k++) {
            TEST_ASSERT(ea[k].index == eb[k].index, "same MSR list");
            if (ea[k].index == 0x10 || ea[k].index == 0x6e0 ||
                (ea[k].index >= 0x4b564d00 && ea[k].index <= 0x4b564d07))
                continue;
            TEST_ASSERT(ea[k].data == eb[k].data,
                        "vCPU %u MSR %#x: saved %#llx, read back %#llx",
                        instance, ea[k].index, (unsigned long long)ea[k].data,
                        (unsigned long long)eb[k].data);
        }
    }
}

static struct saved save(struct xtk_domain *dom, int use_evtchn)
{
    struct saved s = {0};
    struct xtk_domain_info info;
    int fd;

    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    s.nr_pages = info.nr_pages;
    s.vcpus = info.nr_vcpus;
    TEST_ASSERT(dom->ops->suspend_setup(
                    dom, use_evtchn ? XTK__SUSPEND_EVTCHN : XTK__SUSPEND_PAUSE,
                    &fd) == 0 &&
                    dom->ops->suspend_request(dom) == 0,
                "suspend");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    TEST_ASSERT(poll(&p, 1, 5000) == 1 && dom->ops->suspend_check(dom) == 1,
                "suspended");
    TEST_ASSERT(dom->ops->get_state(dom, &s.state, &s.len) == 0, "get_state");
    s.ram = malloc(s.nr_pages << 12);
    TEST_ASSERT(s.ram, "malloc");
    memcpy(s.ram, kt_ram(dom), s.nr_pages << 12);
    dom->ops->suspend_teardown(dom);
    return s;
}

static struct xtk_domain *restore(const struct saved *s, const char *name)
{
    struct xtk_domain_config cfg = {.name = name,
                                    .memory_mib = s->nr_pages >> 8,
                                    .nr_vcpus = s->vcpus,
                                    .flags = XTK_DOMCFG_NO_STORE};
    struct xtk_domain *dom = xtk__domain_create_empty(ctx, &cfg);
    struct xtk_domain_info info;
    uint64_t pfns[64];
    void *back;
    size_t len;

    TEST_ASSERT(dom, "create empty");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0 &&
                    (info.flags & XTK_DOMINFO_EMPTY),
                "empty: flags %#x", info.flags);
    for (unsigned int i = 0; i < 64; i++)
        pfns[i] = i;
    TEST_ASSERT(dom->ops->populate(dom, pfns, 64) == 0, "populate");
    memcpy(kt_ram(dom), s->ram, s->nr_pages << 12);
    TEST_ASSERT(dom->ops->set_state(dom, s->state, s->len) == 0, "set_state");
    TEST_ASSERT(dom->ops->get_state(dom, &back, &len) == 0, "get_state");
    compare_state(s, back, len);
    free(back);
    return dom;
}

static void round_trip(const char *cmdline, uint32_t vcpus, int use_evtchn)
{
    struct xtk_domain *dom =
        kt_create(ctx, "src", vcpus, 16, cmdline, XTK_DOMCFG_NO_STORE);
    volatile struct xtk_guest_status *st;
    struct saved s;
    uint64_t hb;
    char con[8192];

    kt_wait_up(dom, vcpus);
    kt_sleep_ms(100);
    s = save(dom, use_evtchn);
    kt_check(dom);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy the source");
    xtk_domain_close(dom);

    dom = restore(&s, "dst");
    st = kt_status(dom);
    hb = st->heartbeat[0];
    kt_check(dom);
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    KT_WAIT(st->heartbeat[0] != hb, 5000, "the restored guest runs");
    if (use_evtchn) {
        KT_WAIT(st->resumes == 1, 5000, "it resumed");
        KT_WAIT(kt_console(dom, con, sizeof(con)) &&
                    strstr(con, "resumed in domain"),
                5000, "it knows it moved: '%s'", con);
    }
    for (uint32_t i = 0; i < vcpus; i++) {
        uint64_t v = st->heartbeat[i];
        KT_WAIT(st->heartbeat[i] != v, 5000, "vCPU %u runs", i);
    }
    TEST_ASSERT(st->state == XTK_GUEST_RUNNING && st->errors == 0,
                "the guest's own check after resume: %s",
                (const char *)st->message);
    kt_check(dom);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
    free(s.state);
    free(s.ram);
}

static void dirty_suspended(void)
{
    round_trip("workload=dirty pages=512 stride=2", 1, 1);
}

static void dirty_paused(void)
{
    round_trip("workload=dirty pages=512", 1, 0);
}

static void spin_2vcpus_suspended(void)
{
    round_trip("workload=spin", 2, 1);
}

static void spin_4vcpus_paused(void)
{
    round_trip("workload=spin", 4, 0);
}

/* The console's last byte: *last, unless there is more from *off on;
 * *off moves to its end. */
static void console_last(struct xtk_domain *dom, uint64_t *off, int *last)
{
    char buf[4096];

    for (;;) {
        size_t n = sizeof(buf);
        TEST_ASSERT(xtk_domain_console_read(dom, off, buf, &n) == 0,
                    "console read");
        if (!n)
            return;
        *last = (unsigned char)buf[n - 1];
        *off += n;
    }
}

static const struct kvm_regs *vcpu0_regs(const void *state, size_t len)
{
    uint32_t l = 0;
    const uint8_t *r = find_rec(state, len, XTK_KVM_REC_REGS, 0, &l);

    TEST_ASSERT(r && l == sizeof(struct xtk_kvm_rec_head) +
                              sizeof(struct kvm_regs),
                "vCPU 0's registers");
    return (const void *)(r + sizeof(struct xtk_kvm_rec_head));
}

/*
 * The sregs' interrupt bitmap names the interrupt the events say is
 * injected, and nothing else (KVM's copy of the sregs in kvm_run, which
 * xtk-hv reads to save an ioctl, keeps bits of interrupts long since
 * delivered).
 */
static void check_irq_bitmap(const void *state, size_t len, unsigned int stop)
{
    uint32_t ls = 0, le = 0;
    const uint8_t *rs = find_rec(state, len, XTK_KVM_REC_SREGS, 0, &ls);
    const uint8_t *re = find_rec(state, len, XTK_KVM_REC_EVENTS, 0, &le);
    struct kvm_sregs sr;
    struct kvm_vcpu_events ev;
    uint64_t want[4] = {0};

    TEST_ASSERT(rs && re &&
                    ls == sizeof(struct xtk_kvm_rec_head) + sizeof(sr) &&
                    le == sizeof(struct xtk_kvm_rec_head) + sizeof(ev),
                "vCPU 0's sregs and events");
    memcpy(&sr, rs + sizeof(struct xtk_kvm_rec_head), sizeof(sr));
    memcpy(&ev, re + sizeof(struct xtk_kvm_rec_head), sizeof(ev));
    if (ev.interrupt.injected)
        want[ev.interrupt.nr / 64] |= 1ull << (ev.interrupt.nr % 64);
    TEST_ASSERT(!memcmp(want, sr.interrupt_bitmap, sizeof(want)),
                "stop %u: the sregs' interrupt bitmap %#llx:%#llx:%#llx:%#llx, "
                "the events' injected interrupt %s %#x",
                stop, (unsigned long long)sr.interrupt_bitmap[3],
                (unsigned long long)sr.interrupt_bitmap[2],
                (unsigned long long)sr.interrupt_bitmap[1],
                (unsigned long long)sr.interrupt_bitmap[0],
                ev.interrupt.injected ? "is" : "is none, last",
                ev.interrupt.nr);
}

/* The next byte of the ports workload's cycle ("0123456789"). */
static int next_digit(int c)
{
    return c == '9' ? '0' : c + 1;
}

/*
 * A vCPU stopped right after a port write exited to xtk-hv: KVM moves its
 * RIP past the OUT only when the thread enters KVM_RUN again, so state
 * taken before that has the vCPU about to do the write it has done (KVM's
 * API: such an operation is complete only after a KVM_RUN, which
 * userspace must make, with immediate_exit, before it takes the state).
 * The ports workload writes one byte per exit, never the same twice in
 * a row: stopped with RIP at an OUT, AL must be the byte the console has
 * not had yet.  At each stop too, the sregs and the events agree on the
 * injected interrupt.  Then a restore from such a state: the console
 * goes on where the source's stopped, nothing written twice.
 */
static void port_exits(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "ports", 1, 16, "workload=ports", XTK_DOMCFG_NO_STORE);
    struct xtk_domain_info info;
    unsigned int at_out = 0, past_out = 0, stops = 0;
    uint64_t off = 0, t_end;
    struct saved s;
    char con[256];
    uint8_t *ram;
    int last = 0;

    kt_wait_up(dom, 1);
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    ram = kt_ram(dom);
    t_end = kt_now_ms() + 3000;
    while (stops < 400 && kt_now_ms() < t_end) {
        struct xtk_domain *h = xtk_domain_open(ctx, xtk_domain_id(dom));
        const struct kvm_regs *r;
        uint64_t rip;
        void *state;
        size_t len;

        TEST_ASSERT(h && xtk__domain_pause_hold(h) == 0, "pause");
        TEST_ASSERT(h->ops->get_state(h, &state, &len) == 0, "get_state");
        r = vcpu0_regs(state, len);
        rip = r->rip;
        check_irq_bitmap(state, len, stops);
        console_last(dom, &off, &last);
        TEST_ASSERT(rip > 0 && rip < (info.nr_pages << 12),
                    "RIP %#llx in RAM (identity-mapped)",
                    (unsigned long long)rip);
        /* out %al,(%dx) (0xee) or out %al,$imm8 (0xe6) */
        if (ram[rip] == 0xee || ram[rip] == 0xe6) {
            at_out++;
            TEST_ASSERT((uint8_t)r->rax != last,
                        "stop %u: stopped at the OUT at %#llx of '%c', the "
                        "byte the console already has: that write was done, "
                        "its completion not taken (no KVM_RUN after the exit)",
                        stops, (unsigned long long)rip, (char)r->rax);
        } else if (ram[rip - 1] == 0xee || (rip >= 2 && ram[rip - 2] == 0xe6)) {
            past_out++;
        }
        free(state);
        xtk_domain_close(h);
        stops++;
        kt_sleep_ms(stops % 3);
    }
    /* The case looked at was met (~1 stop in 12 here lands just past a
     * port write; without the completion, at it instead). */
    TEST_ASSERT(at_out + past_out >= 3,
                "%u stops: %u at an OUT, %u just past one", stops, at_out,
                past_out);
    printf("  %u stops: %u at an OUT, %u just past one\n", stops, at_out,
           past_out);

    /* Saved at such a place, restored: the console goes on from there. */
    s = save(dom, 0);
    console_last(dom, &off, &last);
    TEST_ASSERT(last >= '0' && last <= '9', "the source wrote digits");
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy the source");
    xtk_domain_close(dom);
    dom = restore(&s, "ports-dst");
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    KT_WAIT(kt_console(dom, con, 3) == 2, 5000, "the restored guest writes");
    TEST_ASSERT(con[0] == next_digit(last) && con[1] == next_digit(con[0]),
                "the source's console ended in '%c', the restored guest's "
                "begins \"%.2s\"",
                last, con);
    kt_check(dom);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
    free(s.state);
    free(s.ram);
}

/* vCPU i's events in state. */
static struct kvm_vcpu_events vcpu_events(const void *state, size_t len,
                                          uint32_t i)
{
    uint32_t l = 0;
    const uint8_t *r = find_rec(state, len, XTK_KVM_REC_EVENTS, i, &l);
    struct kvm_vcpu_events ev;

    TEST_ASSERT(r && l == sizeof(struct xtk_kvm_rec_head) + sizeof(ev),
                "vCPU %u's events", i);
    memcpy(&ev, r + sizeof(struct xtk_kvm_rec_head), sizeof(ev));
    return ev;
}

/*
 * An NMI sent to a stopped vCPU by a sibling still running.  KVM queues
 * it where KVM_GET_VCPU_EVENTS finds it, not in the copy of the events
 * kvm_run kept from that vCPU's exit (which xtk-hv reads to save
 * ioctls).  The nmi workload: vCPU 0 sends vCPU 1 an NMI and waits for
 * its handler to count it before the next; the suspend request holds
 * vCPU 1 at once and vCPU 0 runs on until it takes the request, so its
 * next NMI lands on a parked vCPU.  Whenever the saved memory has an NMI
 * sent and not taken, vCPU 1's saved events must have it pending (or
 * vCPU 1 inside its handler: NMIs masked); restored from such a state,
 * the guest takes it and goes on.  Without the events from KVM about one
 * save in three lost it (a restored guest's vCPU 0 then waits for ever).
 * XTK_HV_CHECK_PREFETCH (main) has every STOP compare what it took from
 * kvm_run with KVM's answer too.
 */
static void nmi_held(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "nmi", 2, 16, "workload=nmi", XTK_DOMCFG_NO_STORE);
    volatile struct xtk_guest_status *st;
    struct saved s, kept = {0};
    unsigned int saves = 0, in_flight = 0, pending = 0;
    uint64_t hb, t_end;

    kt_wait_up(dom, 2);
    st = kt_status(dom);
    KT_WAIT(st->heartbeat[0] > 100, 5000, "vCPU 0 sends NMIs (%llu)",
            (unsigned long long)st->heartbeat[0]);
    t_end = kt_now_ms() + 10000;
    while (saves < 60 && (pending < 3 || saves < 20) && kt_now_ms() < t_end) {
        const struct xtk_guest_status *g;
        struct kvm_vcpu_events ev;

        s = save(dom, 1);
        saves++;
        g = (const void *)(s.ram + XTK_GUEST_STATUS_GPA);
        ev = vcpu_events(s.state, s.len, 1);
        int flying = g->nmi_sent > g->nmi_taken;

        if (flying) {
            in_flight++;
            TEST_ASSERT(ev.nmi.pending || ev.nmi.injected || ev.nmi.masked,
                        "save %u: NMI %llu sent to vCPU 1 and not taken, "
                        "its events: pending %u injected %u masked %u",
                        saves, (unsigned long long)g->nmi_sent, ev.nmi.pending,
                        ev.nmi.injected, ev.nmi.masked);
        }
        if (flying && ev.nmi.pending) {
            pending++;
            free(kept.state);
            free(kept.ram);
            kept = s;
        } else {
            free(s.state);
            free(s.ram);
        }
        TEST_ASSERT(dom->ops->resume(dom) == 0, "resume the source");
        kt_check(dom);
    }
    printf("  %u saves: %u with an NMI in flight, %u of them pending on vCPU "
           "1\n",
           saves, in_flight, pending);
    TEST_ASSERT(pending >= 1,
                "%u saves, none with an NMI in flight pending on vCPU 1",
                saves);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy the source");
    xtk_domain_close(dom);

    dom = restore(&kept, "nmi-dst");
    st = kt_status(dom);
    hb = st->heartbeat[0];
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    KT_WAIT(st->heartbeat[0] > hb + 100 || st->state == XTK_GUEST_FAILED, 5000,
            "the restored guest's NMIs go on");
    TEST_ASSERT(st->state == XTK_GUEST_RUNNING && st->heartbeat[0] > hb + 100,
                "the restored guest: %s (vCPU 0's round trips %llu -> %llu)",
                (const char *)st->message, (unsigned long long)hb,
                (unsigned long long)st->heartbeat[0]);
    kt_check(dom);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
    free(kept.state);
    free(kept.ram);
}

/* The CPUID leaf `fn` (index 0) of vCPU 0 in state, or NULL. */
static struct kvm_cpuid_entry2 *cpuid_leaf(void *state, size_t len, uint32_t fn)
{
    uint32_t l = 0;
    uint8_t *r = (uint8_t *)find_rec(state, len, XTK_KVM_REC_CPUID, 0, &l);
    struct kvm_cpuid2 *c;

    if (!r)
        return NULL;
    c = (void *)(r + sizeof(struct xtk_kvm_rec_head));
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && !c->entries[i].index)
            return &c->entries[i];
    return NULL;
}

/*
 * xtk-hv keeps each vCPU's CPUID record after reading it once (KVM
 * changes the table only when told), and a SET_STATE's table replaces
 * it: an empty domain's state read (its own table kept), then a state
 * loaded whose table lacks KVM's steal-time feature (leaf 0x40000001
 * eax bit 5: kvm-pvm reads the CPU's feature leaves back as the host has
 * them, whatever was set, but KVM's own leaf as set), reads back without
 * it.
 */
static void cpuid_replaced(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "cpuid", 1, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    struct xtk_domain_config cfg = {.name = "cpuid-dst",
                                    .memory_mib = 16,
                                    .nr_vcpus = 1,
                                    .flags = XTK_DOMCFG_NO_STORE};
    const uint32_t steal = 1u << 5;
    struct kvm_cpuid_entry2 *e;
    struct saved s;
    void *back;
    size_t len;

    kt_wait_up(dom, 1);
    s = save(dom, 0);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy the source");
    xtk_domain_close(dom);
    e = cpuid_leaf(s.state, s.len, 0x40000001);
    TEST_ASSERT(e && (e->eax & steal), "KVM's features offer steal time");
    e->eax &= ~steal;

    dom = xtk__domain_create_empty(ctx, &cfg);
    TEST_ASSERT(dom, "create empty");
    TEST_ASSERT(dom->ops->get_state(dom, &back, &len) == 0, "get_state");
    e = cpuid_leaf(back, len, 0x40000001);
    TEST_ASSERT(e && (e->eax & steal), "the empty domain's own table has it");
    free(back);
    TEST_ASSERT(dom->ops->set_state(dom, s.state, s.len) == 0, "set_state");
    TEST_ASSERT(dom->ops->get_state(dom, &back, &len) == 0, "get_state");
    e = cpuid_leaf(back, len, 0x40000001);
    TEST_ASSERT(e && !(e->eax & steal),
                "CPUID 0x40000001 eax %#x read back after a table without "
                "steal time",
                e ? e->eax : 0);
    free(back);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
    free(s.state);
    free(s.ram);
}

/* Bad state is refused; an empty domain dies with its restore. */
static void refusals(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "r", 2, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    struct xtk_domain_info info;
    struct saved s;
    uint32_t id;
    uint8_t *bad;

    kt_wait_up(dom, 2);
    TEST_ASSERT_ERRNO(dom->ops->set_state(dom, "", 0), EBUSY);
    s = save(dom, 0);
    bad = malloc(s.len);
    memcpy(bad, s.state, s.len);
    /* A record for a vCPU the domain lacks. */
    size_t off = 0;
    uint32_t t, l;
    const void *body;
    while (xtk__rec_next(bad, s.len, &off, &t, &body, &l) == 1)
        if (t == XTK_KVM_REC_REGS)
            ((struct xtk_kvm_rec_head *)body)->instance = 7;
    TEST_ASSERT_ERRNO(dom->ops->set_state(dom, bad, s.len), EINVAL);
    /* The same, handed over ahead: the refusal comes from finish, also
     * when another operation read it first; then a good load goes. */
    TEST_ASSERT(dom->ops->set_state_start(dom, bad, s.len) == 0,
                "set_state_start does not wait");
    TEST_ASSERT_ERRNO(dom->ops->set_state_finish(dom), EINVAL);
    TEST_ASSERT(dom->ops->set_state_finish(dom) == 0, "the outcome is taken");
    TEST_ASSERT(dom->ops->set_state_start(dom, bad, s.len) == 0, "again");
    TEST_ASSERT(dom->ops->info(dom, &info) == 0, "info meanwhile");
    TEST_ASSERT_ERRNO(dom->ops->set_state_start(dom, s.state, s.len), EINVAL);
    TEST_ASSERT_ERRNO(dom->ops->set_state_finish(dom), EINVAL);
    TEST_ASSERT(dom->ops->set_state_start(dom, s.state, s.len) == 0 &&
                    dom->ops->set_state_finish(dom) == 0,
                "a good state loads ahead");
    /* A source CPU with a feature this host's KVM does not offer here
     * (xtk-hv hides CMPXCHG16B, CPUID 1.ecx bit 13): refused. */
    memcpy(bad, s.state, s.len);
    off = 0;
    int found = 0;
    while (xtk__rec_next(bad, s.len, &off, &t, &body, &l) == 1) {
        if (t != XTK_KVM_REC_CPUID)
            continue;
        struct kvm_cpuid2 *c =
            (void *)((uint8_t *)body + sizeof(struct xtk_kvm_rec_head));
        for (uint32_t i = 0; i < c->nent; i++)
            if (c->entries[i].function == 1) {
                c->entries[i].ecx |= 1u << 13;
                found = 1;
            }
    }
    TEST_ASSERT(found, "a CPUID leaf 1 in the state");
    TEST_ASSERT_ERRNO(dom->ops->set_state(dom, bad, s.len), EINVAL);
    /* An MSR KVM refuses fails the load (its value is never dropped). */
    memcpy(bad, s.state, s.len);
    off = 0;
    while (xtk__rec_next(bad, s.len, &off, &t, &body, &l) == 1)
        if (t == XTK_KVM_REC_MSRS) {
            struct kvm_msrs *m =
                (void *)((uint8_t *)body + sizeof(struct xtk_kvm_rec_head));
            m->entries[0].index = 0x12345678; /* no such MSR */
        }
    TEST_ASSERT_ERRNO(dom->ops->set_state(dom, bad, s.len), EINVAL);
    /* Broken framing. */
    TEST_ASSERT_ERRNO(dom->ops->set_state(dom, s.state, s.len - 3), EINVAL);
    /* Another backend's record is skipped. */
    struct {
        struct xtk__rec_hdr h;
        uint64_t body;
    } foreign = {{0x80001234, 8}, 0};
    TEST_ASSERT(dom->ops->set_state(dom, &foreign, sizeof(foreign)) == 0,
                "a foreign optional record is skipped");
    TEST_ASSERT(dom->ops->set_state(dom, s.state, s.len) == 0,
                "good state still loads");
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);

    /* The restore that made an empty domain dies: so does the domain. */
    dom = restore(&s, "orphan");
    id = xtk_domain_id(dom);
    xtk_domain_close(dom);
    KT_WAIT(!(dom = xtk_domain_open(ctx, id)), 5000, "the shell is gone");
    (void)info;
    free(bad);
    free(s.state);
    free(s.ram);
}

int main(void)
{
    /* Every STOP checks what xtk-hv kept or took from kvm_run. */
    setenv("XTK_HV_CHECK_PREFETCH", "1", 1);
    ctx = kt_setup();
    TEST_RUN(dirty_suspended);
    TEST_RUN(dirty_paused);
    TEST_RUN(spin_2vcpus_suspended);
    TEST_RUN(spin_4vcpus_paused);
    TEST_RUN(port_exits);
    TEST_RUN(nmi_held);
    TEST_RUN(cpuid_replaced);
    TEST_RUN(refusals);
    xtk_ctx_close(ctx);
    return 0;
}

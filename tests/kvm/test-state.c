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
    ctx = kt_setup();
    TEST_RUN(dirty_suspended);
    TEST_RUN(dirty_paused);
    TEST_RUN(spin_2vcpus_suspended);
    TEST_RUN(spin_4vcpus_paused);
    TEST_RUN(refusals);
    xtk_ctx_close(ctx);
    return 0;
}

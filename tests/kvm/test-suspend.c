/*
 * test-suspend.c - suspending a guest through the backend's suspend ops:
 * by its suspend event channel (the guest quiesces, says so on the
 * channel, and sits suspended until resumed) and by a hypervisor pause
 * (for guests without a PV suspend).  The "suspended" notification is an
 * fd that becomes readable; suspend_check confirms it and leaves the
 * domain stopped; resume lets the guest carry on.  The store path is in
 * test-store.c.
 */
#include <poll.h>

#include "kvm-test.h"

static struct xtk_ctx *ctx;

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, ms) == 1;
}

static uint64_t progress(volatile struct xtk_guest_status *st)
{
    uint64_t sum = st->counter;

    for (int i = 0; i < XTK_GUEST_MAX_VCPUS; i++)
        sum += st->heartbeat[i];
    return sum;
}

static int moves(volatile struct xtk_guest_status *st)
{
    uint64_t a = progress(st);

    kt_sleep_ms(50);
    return progress(st) != a;
}

/* Suspends by method m, checks the domain is stopped, resumes.  ahead:
 * the check by suspend_check_ahead, its stop sent ahead (2: the answer on
 * the fd it gives, stop_finish).  The request itself never stops the
 * domain (pause's STOP is the check's too). */
static void suspend_resume(struct xtk_domain *dom, enum xtk__suspend_method m,
                           int guest_knows, int ahead)
{
    volatile struct xtk_guest_status *st = kt_status(dom);
    struct xtk_domain_info info;
    uint64_t suspends = st->suspends, resumes = st->resumes;
    int fd = -1, r;
    void *state;
    size_t len;

    TEST_ASSERT(dom->ops->suspend_setup(dom, m, &fd) == 0 && fd >= 0,
                "suspend_setup(%d)", m);
    TEST_ASSERT(dom->ops->suspend_check(dom) == 0,
                "no notification yet: not suspended");
    TEST_ASSERT(dom->ops->suspend_request(dom) == 0, "request");
    if (m == XTK__SUSPEND_PAUSE)
        TEST_ASSERT(moves(st), "pause: the request alone leaves it running");
    do {
        int afd = -1;

        TEST_ASSERT(readable(fd, 30000), "the suspended notification came");
        if (!ahead) {
            r = dom->ops->suspend_check(dom);
            continue;
        }
        r = dom->ops->suspend_check_ahead(dom, &afd);
        if (r == 2) {
            /* (pause too: its STOP is the check's, not the request's) */
            unsigned int ready = 0;

            /* (the fd may wake first for the answer to the vCPUs' hold
             * sent with the request, which the backend takes itself) */
            for (int k = 0; k < 10 && !(ready & XTK__ASYNC_STOP); k++) {
                TEST_ASSERT(readable(afd, 30000), "the stop's answer came");
                ready = dom->ops->async_ready(dom);
            }
            TEST_ASSERT(ready == XTK__ASYNC_STOP, "ready: the stop (%#x)",
                        ready);
            TEST_ASSERT(dom->ops->stop_finish(dom) == 0, "stop_finish");
            TEST_ASSERT(!readable(afd, 0), "taken");
            r = 1;
        }
    } while (r == 0);
    TEST_ASSERT(r == 1, "suspend_check: %d", r);

    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    TEST_ASSERT(info.flags & XTK_DOMINFO_PAUSED, "stopped after the check");
    TEST_ASSERT(!!(info.flags & XTK_DOMINFO_SUSPENDED) == guest_knows,
                "suspended flag %#x", info.flags);
    TEST_ASSERT(!moves(st), "nothing runs");
    if (guest_knows) {
        TEST_ASSERT(st->state == XTK_GUEST_SUSPENDED &&
                        st->suspends == suspends + 1,
                    "the guest says it is suspended (state %u)", st->state);
        TEST_ASSERT(st->spin.holder == 0, "no vCPU inside the lock");
    }
    kt_check(dom);
    TEST_ASSERT(dom->ops->get_state(dom, &state, &len) == 0 && len > 0,
                "state of a suspended domain");
    free(state);

    dom->ops->suspend_teardown(dom);
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    KT_WAIT(moves(st), 5000, "runs after resume");
    if (guest_knows)
        KT_WAIT(st->resumes == resumes + 1 && st->state == XTK_GUEST_RUNNING,
                5000, "the guest resumed (resumes %llu, state %u)",
                (unsigned long long)st->resumes, st->state);
    TEST_ASSERT(
        xtk_domain_info(dom, &info) == 0 &&
            !(info.flags & (XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED)),
        "running: flags %#x", info.flags);
    kt_check(dom);
}

/*
 * A suspended guest yields its vCPUs to xtk-hv (abi.h), which parks them
 * until the domain is told to run.  Many quick suspends, each stopped by
 * the check the moment it is notified, so that the stop often lands
 * between the guest's notification and its yield: a yield that comes only
 * after the resume must be ignored, or the guest would sleep for good.
 * And a suspended, yielded guest that is only unpaused stays suspended
 * until resumed.
 */
/* Sets the event channel method up (*fd), asks the guest, and waits until
 * the check confirms it suspended and stopped it (cycle: for messages). */
static void evtchn_setup(struct xtk_domain *dom, int *fd)
{
    TEST_ASSERT(dom->ops->suspend_setup(dom, XTK__SUSPEND_EVTCHN, fd) == 0,
                "setup");
}

static void evtchn_suspend(struct xtk_domain *dom, int fd, int cycle)
{
    int r;

    TEST_ASSERT(dom->ops->suspend_request(dom) == 0, "request");
    do {
        TEST_ASSERT(readable(fd, 30000), "notified (cycle %d)", cycle);
        r = dom->ops->suspend_check(dom);
    } while (r == 0);
    TEST_ASSERT(r == 1, "suspend_check: %d (cycle %d)", r, cycle);
}

static void evtchn_yield(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "sy", 2, 16, "workload=counter", XTK_DOMCFG_NO_STORE);
    volatile struct xtk_guest_status *st = kt_status(dom);
    int fd = -1;

    kt_wait_up(dom, 2);
    for (int i = 0; i < 60; i++) {
        uint64_t resumes = st->resumes;

        evtchn_setup(dom, &fd);
        evtchn_suspend(dom, fd, i);
        dom->ops->suspend_teardown(dom);
        TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
        KT_WAIT(st->resumes == resumes + 1 && st->state == XTK_GUEST_RUNNING,
                5000, "cycle %d: the guest resumed (state %u)", i, st->state);
    }
    KT_WAIT(moves(st), 5000, "runs after 60 suspends");

    /* Resumed twice: the second may find the guest not yet out of its
     * suspend, and must not notify it again (once running it would take
     * that for a new request and suspend for good).  The window is a few
     * of the guest's instructions: this catches it only when the host
     * preempts the vCPU there, so it guards, it does not prove. */
    for (int i = 0; i < 50; i++) {
        evtchn_setup(dom, &fd);
        evtchn_suspend(dom, fd, i);
        TEST_ASSERT(dom->ops->resume(dom) == 0 && dom->ops->resume(dom) == 0,
                    "resumed twice");
        dom->ops->suspend_teardown(dom);
        KT_WAIT(st->state == XTK_GUEST_RUNNING, 5000, "cycle %d: resumed", i);
        kt_sleep_ms(20);
        TEST_ASSERT(st->state == XTK_GUEST_RUNNING,
                    "cycle %d: still runs after two resumes (state %u)", i,
                    st->state);
    }

    /* Suspended, the guest has not left its suspended state: a request
     * now would be taken for the resume (suspend_busy says so until the
     * guest has run its resume path after the resume). */
    evtchn_setup(dom, &fd);
    TEST_ASSERT(!dom->ops->suspend_busy(dom), "running: not busy");
    evtchn_suspend(dom, fd, 0);
    TEST_ASSERT(dom->ops->suspend_busy(dom), "suspended: busy");
    kt_sleep_ms(20);
    TEST_ASSERT(dom->ops->suspend_busy(dom), "stopped: still busy");
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    KT_WAIT(!dom->ops->suspend_busy(dom), 5000, "not busy once it ran");
    TEST_ASSERT(st->state == XTK_GUEST_RUNNING, "running");
    dom->ops->suspend_teardown(dom);

    /* Suspended and never paused: its vCPUs yielded.  An unpause lets them
     * run, and the guest stays suspended until the resume. */
    TEST_ASSERT(dom->ops->suspend_setup(dom, XTK__SUSPEND_EVTCHN, &fd) == 0,
                "setup");
    TEST_ASSERT(dom->ops->suspend_request(dom) == 0, "request");
    TEST_ASSERT(readable(fd, 30000), "notified");
    KT_WAIT(st->state == XTK_GUEST_SUSPENDED, 5000, "suspended");
    dom->ops->suspend_teardown(dom);
    TEST_ASSERT(xtk_domain_unpause(dom) == 0, "unpause");
    kt_sleep_ms(100);
    TEST_ASSERT(st->state == XTK_GUEST_SUSPENDED && !moves(st),
                "an unpause does not resume a suspended guest");
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    KT_WAIT(st->state == XTK_GUEST_RUNNING && moves(st), 5000,
            "runs after the resume");
    kt_check(dom);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void evtchn_1vcpu(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "s1", 1, 16, "workload=counter", XTK_DOMCFG_NO_STORE);
    char con[4096];

    kt_wait_up(dom, 1);
    suspend_resume(dom, XTK__SUSPEND_EVTCHN, 1, 0);
    suspend_resume(dom, XTK__SUSPEND_EVTCHN, 1, 0); /* and again */
    suspend_resume(dom, XTK__SUSPEND_EVTCHN, 1, 1); /* its stop ahead */
    kt_console(dom, con, sizeof(con));
    TEST_ASSERT(strstr(con, "xtk-guest: suspended (event channel), resumed"),
                "console: %s", con);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void evtchn_spin_4vcpus(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "s4", 4, 16, "workload=spin", XTK_DOMCFG_NO_STORE);

    kt_wait_up(dom, 4);
    suspend_resume(dom, XTK__SUSPEND_EVTCHN, 1, 0);
    suspend_resume(dom, XTK__SUSPEND_EVTCHN, 1, 1);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void pause_method(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "sp", 2, 16, "workload=spin", XTK_DOMCFG_NO_STORE);

    kt_wait_up(dom, 2);
    suspend_resume(dom, XTK__SUSPEND_PAUSE, 0, 0);
    suspend_resume(dom, XTK__SUSPEND_PAUSE, 0, 1);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

/* A save that dies after the guest suspended: its suspend guard makes
 * xtk-hv resume the guest, which carries on by itself. */
static void dead_saver(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "sd", 1, 16, "workload=counter", XTK_DOMCFG_NO_STORE);
    struct xtk_domain *saver;
    volatile struct xtk_guest_status *st;
    struct xtk_domain_info info;
    uint64_t resumes;
    int fd;

    kt_wait_up(dom, 1);
    st = kt_status(dom);
    resumes = st->resumes;
    saver = xtk_domain_open(ctx, xtk_domain_id(dom));
    TEST_ASSERT(saver, "open");
    TEST_ASSERT(saver->ops->suspend_setup(saver, XTK__SUSPEND_EVTCHN, &fd) ==
                        0 &&
                    saver->ops->suspend_request(saver) == 0,
                "request");
    TEST_ASSERT(readable(fd, 30000) && saver->ops->suspend_check(saver) == 1,
                "suspended");
    TEST_ASSERT(!moves(st), "the guest waits while the save lives");
    xtk_domain_close(saver); /* the saver dies */
    KT_WAIT(st->resumes == resumes + 1 && st->state == XTK_GUEST_RUNNING, 5000,
            "the guest resumed by itself (state %u)", st->state);
    KT_WAIT(moves(st), 5000, "running again");
    TEST_ASSERT(
        xtk_domain_info(dom, &info) == 0 &&
            !(info.flags & (XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED)),
        "flags %#x", info.flags);

    /* The same when the saver dies before the guest got round to
     * suspending: the guest is resumed once it has. */
    resumes = st->resumes;
    saver = xtk_domain_open(ctx, xtk_domain_id(dom));
    TEST_ASSERT(saver, "open");
    TEST_ASSERT(saver->ops->suspend_setup(saver, XTK__SUSPEND_EVTCHN, &fd) ==
                        0 &&
                    saver->ops->suspend_request(saver) == 0,
                "request");
    xtk_domain_close(saver);
    KT_WAIT(st->resumes == resumes + 1 && st->state == XTK_GUEST_RUNNING, 5000,
            "resumed after suspending late (state %u)", st->state);
    KT_WAIT(moves(st), 5000, "running again");
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

/*
 * A save that gives up right after asking (its destination died): it
 * resumes the guest and tears the suspend down before the guest has
 * acted on the request.  The guest, which suspends afterwards, must not
 * be left so.  Its vCPUs are held paused over the request, so the guest
 * cannot act on it before the resume.
 */
static void failed_saver(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "sf", 1, 16, "workload=counter", XTK_DOMCFG_NO_STORE);
    struct xtk_domain *saver;
    volatile struct xtk_guest_status *st;
    uint64_t resumes;
    int fd;

    kt_wait_up(dom, 1);
    st = kt_status(dom);
    resumes = st->resumes;
    saver = xtk_domain_open(ctx, xtk_domain_id(dom));
    TEST_ASSERT(saver && xtk__domain_pause_hold(saver) == 0, "pause");
    TEST_ASSERT(saver->ops->suspend_setup(saver, XTK__SUSPEND_EVTCHN, &fd) ==
                        0 &&
                    saver->ops->suspend_request(saver) == 0,
                "request");
    TEST_ASSERT(saver->ops->resume(saver) == 0, "resume");
    saver->ops->suspend_teardown(saver);
    xtk_domain_close(saver);
    KT_WAIT(st->resumes == resumes + 1 && st->state == XTK_GUEST_RUNNING, 30000,
            "resumed after suspending past its failed save (state %u)",
            st->state);
    KT_WAIT(moves(st), 5000, "running again");
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

int main(void)
{
    /* Every STOP checks what xtk-hv kept or took from kvm_run. */
    setenv("XTK_HV_CHECK_PREFETCH", "1", 1);
    ctx = kt_setup();
    TEST_RUN(evtchn_1vcpu);
    TEST_RUN(evtchn_spin_4vcpus);
    TEST_RUN(evtchn_yield);
    TEST_RUN(pause_method);
    TEST_RUN(dead_saver);
    TEST_RUN(failed_saver);
    xtk_ctx_close(ctx);
    return 0;
}

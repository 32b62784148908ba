/*
 * xen-probe - libxtk's xen backend against a live guest, inside the Xen
 * testbed's dom0 (tests/xen/dom0-init.sh runs it).
 *
 *   xen-probe [--pv] [--console FILE] NAME CYCLES
 *   xen-probe --status DOMID
 *   xen-probe --regs DOMID
 *
 * --regs prints each vCPU's registers from the domain's HVM context, and
 * the words at its stack pointer (read as a guest-physical address: the
 * built-in guest maps itself one to one), for a guest kept after it crashed
 * (on_crash = "preserve"): where a triple fault left it.
 *
 * --status reads xtk's built-in guest's status page (guests/abi.h) from a
 * running domain through a foreign mapping and prints it as one line of
 * key=value words; exit 0 if the page is the guest's, 1 if not.
 *
 * Each check prints one line, "XTK-OK <check> <detail>" or "XTK-FAIL
 * <check> <why>", as dom0-init.sh's own checks do; the exit status is the
 * number of failed checks.  The checks:
 *
 *   xtk-lookup    the domain is found by name and its information is sane
 *   xtk-pause     pause and unpause show in its information; a pause held
 *                 by a handle ends when the handle closes
 *   xtk-logdirty  the dirty log sees a running guest's writes, none while
 *                 it is paused, and gives a FINAL read only when stopped;
 *                 with --pv (a PV guest on a Xen built without shadow
 *                 paging, as Debian's is), enabling it fails with ENOTSUP
 *   xtk-evtchn    a guest without a published suspend channel is refused
 *                 the EVTCHN method with ENOTSUP
 *   xtk-suspend   CYCLES suspends by the store method, each noticed on the
 *                 subscribed event channel and followed by a cooperative
 *                 resume; prints the suspend latency's percentiles
 *   xtk-guard     a toolstack killed (SIGKILL) while it holds a pause,
 *                 right after it requested a suspend, and while the guest
 *                 sits suspended with the dirty log on: each time the
 *                 guest runs again, unpaused and resumed, with the dirty
 *                 log off (xtk-xen-guard undid it); and a toolstack whose
 *                 guard was killed between two pauses, which must start
 *                 another that releases both.  With --console (the
 *                 guest's console log, which xenconsoled writes), a
 *                 suspend counts as resumed once the guest's kernel says
 *                 so there ("Restarting tasks"), so a guest that suspends
 *                 late cannot pass for one that never did
 *   xtk-running   the guest is running afterwards, neither paused nor
 *                 suspended
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xtk/ctx.h>
#include <xtk/domain.h>
#include <xtk/stats.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <sys/mman.h>

#include "abi.h"

#include "backend.h"

static int failed;

#define OK(check, ...)                                                         \
    do {                                                                       \
        printf("XTK-OK " check " " __VA_ARGS__);                               \
        putchar('\n');                                                         \
        fflush(stdout);                                                        \
    } while (0)
#define FAIL(check, ...)                                                       \
    do {                                                                       \
        printf("XTK-FAIL " check " " __VA_ARGS__);                             \
        putchar('\n');                                                         \
        fflush(stdout);                                                        \
        failed++;                                                              \
    } while (0)

static void sleep_ms(unsigned int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static int info_of(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    return dom->ops->info(dom, info);
}

/* Waits up to ms for the domain's flags & mask to equal want. */
static int wait_flags(struct xtk_domain *dom, uint32_t mask, uint32_t want,
                      unsigned int ms)
{
    struct xtk_domain_info info;

    for (unsigned int t = 0;; t += 10) {
        if (info_of(dom, &info) == 0 && (info.flags & mask) == want)
            return 0;
        if (t >= ms)
            return -1;
        sleep_ms(10);
    }
}

static void check_pause(struct xtk_ctx *ctx, struct xtk_domain *dom)
{
    struct xtk_domain_info info = {0};
    struct xtk_domain *other;

    if (dom->ops->pause(dom, 0) < 0 || info_of(dom, &info) < 0 ||
        !(info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "pause: %s, flags %#x", strerror(errno), info.flags);
        return;
    }
    if (dom->ops->unpause(dom, XTK__UNPAUSE_FORCE) < 0 ||
        info_of(dom, &info) < 0 || (info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "unpause: %s, flags %#x", strerror(errno),
             info.flags);
        return;
    }
    other = xtk_domain_open(ctx, dom->domid);
    if (!other || xtk__domain_pause_hold(other) < 0 ||
        info_of(dom, &info) < 0 || !(info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "held pause: %s", strerror(errno));
        xtk_domain_close(other);
        return;
    }
    xtk_domain_close(other);
    if (info_of(dom, &info) < 0 || (info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "a held pause outlived its handle (flags %#x)",
             info.flags);
        return;
    }
    OK("xtk-pause", "pause, unpause and a pause held by a handle");
}

static void check_logdirty(struct xtk_domain *dom, uint64_t nr_bits, int pv)
{
    const struct xtk__backend_ops *o = dom->ops;
    uint64_t *bm = calloc((nr_bits + 63) / 64, 8);
    uint64_t first = 0, running = 0, paused = 0, final = 0;
    int busy;

    if (pv) {
        if (o->logdirty_enable(dom) == 0) {
            FAIL("xtk-logdirty", "a PV guest got a dirty log on a Xen "
                                 "without shadow paging");
            o->logdirty_disable(dom);
        } else if (errno != ENOTSUP) {
            FAIL("xtk-logdirty", "PV: refused with %s, not ENOTSUP",
                 strerror(errno));
        } else {
            OK("xtk-logdirty", "PV guest, Xen without shadow paging: ENOTSUP");
        }
        free(bm);
        return;
    }
    if (!bm || o->logdirty_enable(dom) < 0) {
        FAIL("xtk-logdirty", "enable: %s", strerror(errno));
        free(bm);
        return;
    }
    if (o->logdirty_read(dom, 0, bm, nr_bits, &first) < 0)
        goto fail;
    sleep_ms(2000); /* the guest prints a counter every second */
    if (o->logdirty_read(dom, 0, bm, nr_bits, &running) < 0)
        goto fail;
    busy =
        o->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr_bits, &final) < 0 &&
        errno == EBUSY;
    if (o->pause(dom, 0) < 0)
        goto fail;
    /* Two reads while paused: the first may still hold what the guest
     * wrote just before the pause; the second holds no guest write. */
    if (o->logdirty_read(dom, 0, bm, nr_bits, &paused) < 0 ||
        o->logdirty_read(dom, 0, bm, nr_bits, &paused) < 0 ||
        o->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr_bits, &final) < 0) {
        o->unpause(dom, XTK__UNPAUSE_FORCE);
        goto fail;
    }
    o->unpause(dom, XTK__UNPAUSE_FORCE);
    if (o->logdirty_disable(dom) < 0) {
        FAIL("xtk-logdirty", "disable: %s", strerror(errno));
        free(bm);
        return;
    }
    /* Xen itself writes a paused guest's memory (shared info, event
     * channel bits, the rings its backends and the store write): those
     * frames are logged too, but they are a handful next to what the
     * running guest wrote. */
    if (!running || paused * 2 > running || !busy)
        FAIL("xtk-logdirty",
             "first read %llu, running 2 s %llu, paused %llu, FINAL while "
             "running %s",
             (unsigned long long)first, (unsigned long long)running,
             (unsigned long long)paused, busy ? "refused" : "accepted");
    else
        OK("xtk-logdirty",
           "first read %llu frames, 2 s running %llu, paused %llu (Xen's "
           "own writes), FINAL %llu; FINAL refused while running",
           (unsigned long long)first, (unsigned long long)running,
           (unsigned long long)paused, (unsigned long long) final);
    free(bm);
    return;
fail:
    FAIL("xtk-logdirty", "read: %s", strerror(errno));
    o->logdirty_disable(dom);
    free(bm);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void check_suspend(struct xtk_domain *dom, int cycles)
{
    const struct xtk__backend_ops *o = dom->ops;
    uint64_t *lat = calloc((size_t)cycles, sizeof(*lat)), t0;
    int fd, r = 0, done = 0;
    struct pollfd p;

    if (o->suspend_setup(dom, XTK__SUSPEND_EVTCHN, &fd) == 0) {
        FAIL("xtk-evtchn", "a guest without device/suspend/event-channel "
                           "was given the EVTCHN method");
        o->suspend_teardown(dom);
    } else if (errno != ENOTSUP) {
        FAIL("xtk-evtchn", "refused with %s, not ENOTSUP", strerror(errno));
    } else {
        OK("xtk-evtchn", "no published suspend channel: ENOTSUP");
    }

    if (!lat || o->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) < 0) {
        FAIL("xtk-suspend", "setup: %s", strerror(errno));
        free(lat);
        return;
    }
    for (; done < cycles; done++) {
        t0 = xtk_now_ns();
        if (o->suspend_request(dom) < 0) {
            FAIL("xtk-suspend", "cycle %d: request: %s", done, strerror(errno));
            break;
        }
        do {
            p = (struct pollfd){.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 120000) != 1) {
                r = -1;
                errno = ETIMEDOUT;
                break;
            }
            r = o->suspend_check(dom);
        } while (r == 0);
        if (r < 0) {
            FAIL("xtk-suspend", "cycle %d: no suspended notification: %s", done,
                 strerror(errno));
            break;
        }
        lat[done] = xtk_now_ns() - t0;
        if (o->resume(dom) < 0 ||
            wait_flags(dom, XTK_DOMINFO_SUSPENDED, 0, 10000) < 0) {
            FAIL("xtk-suspend", "cycle %d: resume: %s", done, strerror(errno));
            break;
        }
        /* Let the guest's xenbus finish the resume before the next
         * request (it rewrites control/shutdown as it does). */
        sleep_ms(200);
    }
    o->suspend_teardown(dom);
    if (done == cycles) {
        qsort(lat, (size_t)cycles, sizeof(*lat), cmp_u64);
        OK("xtk-suspend",
           "%d store suspends noticed on an event channel, cooperative "
           "resumes: suspend latency p50 %.2f ms, p99 %.2f ms, max %.2f ms "
           "(TCG)",
           cycles, lat[cycles / 2] / 1e6, lat[(cycles * 99) / 100] / 1e6,
           lat[cycles - 1] / 1e6);
    }
    free(lat);
}

/* Waits for the domain's suspended notification (up to 30 s). */
static int wait_suspended(struct xtk_domain *dom, int fd)
{
    struct pollfd p;
    int r;

    do {
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 120000) != 1)
            return xtk__fail(ETIMEDOUT);
        r = dom->ops->suspend_check(dom);
    } while (r == 0);
    return r < 0 ? -1 : 0;
}

enum guard_case {
    HELD_PAUSE,
    JUST_REQUESTED,
    SUSPENDED_LOGGING,
    GUARD_REPLACED
};
static const char *const guard_case_name[] = {
    "holding a pause", "right after the suspend request",
    "with the guest suspended and the dirty log on",
    "holding two pauses, its first guard killed between them"};

/* The pids of running xtk-xen-guard processes, up to max; how many. */
static int guards(pid_t *pids, int max)
{
    char path[300], comm[64];
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    while (d && n < max && (e = readdir(d))) {
        FILE *f;
        long p = strtol(e->d_name, NULL, 10);

        if (p <= 1)
            continue;
        snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "xtk-xen-guard\n"))
            pids[n++] = (pid_t)p;
        fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/*
 * Takes a pause (which starts a guard), kills that guard, then takes a
 * second pause: the handle must notice and start another, which then
 * releases both when the toolstack dies.
 */
static int pause_kill_guard_pause(struct xtk_domain *dom)
{
    pid_t before[16], after[16];
    int nb = guards(before, 16), na, killed = 0;

    if (xtk__domain_pause_hold(dom) < 0)
        return -1;
    na = guards(after, 16);
    for (int i = 0; i < na; i++) {
        int old = 0;
        for (int j = 0; j < nb; j++)
            old |= after[i] == before[j];
        if (!old && kill(after[i], SIGKILL) == 0)
            killed++;
    }
    if (killed != 1)
        return xtk__fail(ESRCH); /* not exactly one new guard */
    sleep_ms(200);               /* gone, its socket closed */
    return xtk__domain_pause_hold(dom);
}

/*
 * A child takes hold of the domain as one case says, tells us, and is
 * killed with SIGKILL; 0 if it got that far.
 */
static int killed_holding(uint32_t domid, enum guard_case c, int pv)
{
    int pfd[2], fd, st;
    char ok = 0;
    pid_t pid;

    if (pipe(pfd) < 0)
        return -1;
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, 0);
        struct xtk_domain *dom = ctx ? xtk_domain_open(ctx, domid) : NULL;
        const struct xtk__backend_ops *o = dom ? dom->ops : NULL;
        int r = -1;

        close(pfd[0]);
        if (!o)
            _exit(1);
        switch (c) {
        case HELD_PAUSE:
            r = xtk__domain_pause_hold(dom);
            break;
        case JUST_REQUESTED:
            r = o->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) < 0
                    ? -1
                    : o->suspend_request(dom);
            break;
        case SUSPENDED_LOGGING:
            r = (!pv && o->logdirty_enable(dom) < 0) ||
                        o->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) < 0 ||
                        o->suspend_request(dom) < 0 ||
                        wait_suspended(dom, fd) < 0
                    ? -1
                    : 0;
            break;
        case GUARD_REPLACED:
            r = pause_kill_guard_pause(dom);
            break;
        }
        if (r != 0 || write(pfd[1], "k", 1) != 1)
            _exit(1);
        for (;;)
            pause(); /* until killed */
    }
    close(pfd[1]);
    {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 60000) != 1 || read(pfd[0], &ok, 1) != 1)
            ok = 0;
    }
    close(pfd[0]);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return ok == 'k' ? 0 : xtk__fail(EIO);
}

/* 1: the dirty log was off (and is again), 0: on, -1: cannot tell. */
static int logdirty_off(uint32_t domid)
{
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    int off;

    if (!xch)
        return -1;
    off = xc_shadow_control(xch, domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
                            NULL, 0) == 0;
    if (off)
        xc_shadow_control(xch, domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0);
    xc_interface_close(xch);
    return off;
}

static const char *console_log;

/* How many times the guest's kernel says it came back from a suspend. */
static int resumes_said(void)
{
    char line[512];
    int n = 0;
    FILE *f = console_log ? fopen(console_log, "r") : NULL;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, "Restarting tasks") != NULL;
    fclose(f);
    return n;
}

static void check_guard(struct xtk_domain *dom, int pv)
{
    const uint32_t busy = XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED;

    for (int c = HELD_PAUSE; c <= GUARD_REPLACED; c++) {
        int said = resumes_said();

        if (killed_holding(dom->domid, (enum guard_case)c, pv) < 0) {
            FAIL("xtk-guard", "the toolstack could not get %s: %s",
                 guard_case_name[c], strerror(errno));
            return;
        }
        /* A suspended guest has come back once its kernel says so; without
         * the console, right after its request the guest has yet to
         * suspend: give it time to (a failed guard leaves it so). */
        if (c != HELD_PAUSE && c != GUARD_REPLACED && said >= 0) {
            for (int t = 0; t < 600 && resumes_said() <= said; t++)
                sleep_ms(100);
            if (resumes_said() <= said) {
                FAIL("xtk-guard",
                     "killed %s: the guest's kernel never says "
                     "it resumed (%s)",
                     guard_case_name[c], console_log);
                return;
            }
        } else if (c == JUST_REQUESTED) {
            sleep_ms(5000);
        }
        if (wait_flags(dom, busy, 0, 60000) < 0) {
            FAIL("xtk-guard", "killed %s: the guest stays paused or suspended",
                 guard_case_name[c]);
            return;
        }
        /* The guard switches the log off after it has resumed the guest:
         * give it a moment. */
        for (int t = 0; !pv && c == SUSPENDED_LOGGING && t < 100 &&
                        logdirty_off(dom->domid) != 1;
             t++)
            sleep_ms(100);
        if (!pv && c == SUSPENDED_LOGGING && logdirty_off(dom->domid) != 1) {
            FAIL("xtk-guard", "killed %s: the dirty log stays on",
                 guard_case_name[c]);
            return;
        }
        /* The resumed guest's xenbus settles before the next request. */
        sleep_ms(500);
    }
    OK("xtk-guard",
       "a toolstack killed holding a pause, right after a "
       "suspend request, with the guest suspended%s, and holding "
       "two pauses with its first guard killed between them: "
       "each time the guest runs on",
       pv ? "" : " and the dirty log on (then off)");
}

/* --status DOMID: the built-in guest's self-check, as it stands. */
static int print_status(const char *domid_s)
{
    char *end;
    unsigned long domid = strtoul(domid_s, &end, 10);
    xenforeignmemory_handle *fm;
    xen_pfn_t pfn = XTK_GUEST_STATUS_GPA >> 12;
    int err = 0, rc = 1;
    const struct xtk_guest_status *st;

    if (*end || end == domid_s) {
        fprintf(stderr, "xen-probe: %s is not a domain id\n", domid_s);
        return 2;
    }
    fm = xenforeignmemory_open(NULL, 0);
    if (!fm) {
        perror("xen-probe: xenforeignmemory_open");
        return 1;
    }
    st = xenforeignmemory_map(fm, (uint32_t)domid, PROT_READ, 1, &pfn, &err);
    if (!st || err) {
        fprintf(stderr, "xen-probe: domain %lu: mapping its status page: %s\n",
                domid, strerror(st ? -err : errno));
    } else if (st->magic != XTK_GUEST_STATUS_MAGIC) {
        fprintf(stderr, "xen-probe: domain %lu has no xtk guest status page\n",
                domid);
    } else {
        unsigned long long saw = 0, yields = 0;

        for (int i = 0; i < XTK_GUEST_MAX_VCPUS; i++) {
            saw += st->pv.saw_preempted[i];
            yields += st->pv.yields[i];
        }
        /* The lock-holder measures (issue 15): what the guest uses, the
         * preempted vCPUs it saw, the yields it made, the spin lock. */
        printf("pv_used=%u saw=%llu yields=%llu lock_acq=%llu "
               "lock_waits=%llu lock_max_us=%llu ",
               st->pv.used, saw, yields,
               (unsigned long long)st->spin.shared_count,
               (unsigned long long)st->pv.lock_waits,
               (unsigned long long)(st->pv.lock_wait_max_ns / 1000));
        printf("state=%u workload=%u vcpus=%u counter=%llu suspends=%llu "
               "resumes=%llu errors=%u stopped_last_us=%llu "
               "stopped_max_us=%llu ticks=%llu moves=%llu unparked=%llu "
               "message=%.200s\n",
               st->state, st->workload, st->nr_vcpus_up,
               (unsigned long long)st->counter,
               (unsigned long long)st->suspends,
               (unsigned long long)st->resumes, st->errors,
               (unsigned long long)(st->stopped_last_ns / 1000),
               (unsigned long long)(st->stopped_max_ns / 1000),
               (unsigned long long)st->ticks, (unsigned long long)st->moves,
               (unsigned long long)st->unparked_suspends,
               st->message[0] ? st->message : "-");
        rc = 0;
    }
    if (st)
        xenforeignmemory_unmap(fm, (void *)st, 1);
    xenforeignmemory_close(fm);
    return rc;
}

/* ---- --calls: what each call of the final round costs here ---------- */

/* Exported by libxenctrl 4.17, declared only in its private header. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num,
                          xen_pfn_t *arr);

enum call {
    C_SYSCALL,
    C_VERSION,
    C_GETINFO,
    C_TSC,
    C_CTX_SIZE,
    C_CTX,
    C_PARAM,
    C_CLEAN,
    C_TYPES1,
    C_MAP1,
    C_NR
};
static const char *const call_name[C_NR] = {
    "getppid (a syscall)",    "xc_version (a hypercall)",
    "xc_domain_getinfolist",  "xc_domain_get_tsc_info",
    "hvm_getcontext (size)",  "hvm_getcontext",
    "xc_hvm_param_get",       "shadow CLEAN (whole space)",
    "get_pfn_type_batch (1)", "foreignmemory map+unmap (1)"};

/* One call of kind c; 0 or -1. */
static int one_call(enum call c, xc_interface *xch, xenforeignmemory_handle *fm,
                    uint32_t domid, xc_hypercall_buffer_t *hb,
                    unsigned long bits, uint8_t *ctx, uint32_t ctx_size)
{
    xc_domaininfo_t xi;
    xen_pfn_t pfn = 0;
    uint32_t tm, khz, inc;
    uint64_t ns, v;
    int err = 0;
    void *p;

    switch (c) {
    case C_SYSCALL:
        return getppid() > 0 ? 0 : -1;
    case C_VERSION:
        return xc_version(xch, XENVER_version, NULL) > 0 ? 0 : -1;
    case C_GETINFO:
        return xc_domain_getinfolist(xch, domid, 1, &xi) == 1 ? 0 : -1;
    case C_TSC:
        return xc_domain_get_tsc_info(xch, domid, &tm, &ns, &khz, &inc);
    case C_CTX_SIZE:
        return xc_domain_hvm_getcontext(xch, domid, NULL, 0) > 0 ? 0 : -1;
    case C_CTX:
        return xc_domain_hvm_getcontext(xch, domid, ctx, ctx_size) > 0 ? 0 : -1;
    case C_PARAM:
        return xc_hvm_param_get(xch, domid, HVM_PARAM_X87_FIP_WIDTH, &v);
    case C_CLEAN:
        return xc_logdirty_control(xch, domid, XEN_DOMCTL_SHADOW_OP_CLEAN, hb,
                                   bits, 0, NULL) < 0
                   ? -1
                   : 0;
    case C_TYPES1:
        return xc_get_pfn_type_batch(xch, domid, 1, &pfn);
    case C_MAP1:
        p = xenforeignmemory_map(fm, domid, PROT_READ, 1, &pfn, &err);
        if (!p || err)
            return -1;
        return xenforeignmemory_unmap(fm, p, 1);
    default:
        return -1;
    }
}

/*
 * xen-probe --calls DOMID N: with the PVH domain paused and its dirty log
 * on, N timed calls of each kind the final round of a save makes; prints
 * the median and the largest (us) of each, one line, for the benchmark.
 */
static int time_calls(uint32_t domid, int n)
{
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
    DECLARE_HYPERCALL_BUFFER(uint8_t, bm);
    xen_pfn_t nr = 0;
    unsigned long pages;
    uint64_t *t = calloc((size_t)n, sizeof(*t));
    uint8_t *ctx = NULL;
    int size, rc = 1, paused = 0, logging = 0;

    if (!xch || !fm || !t || xc_domain_nr_gpfns(xch, domid, &nr) < 0)
        goto out;
    pages = (unsigned long)((nr + 7) / 8 + 4095) / 4096;
    bm = xc_hypercall_buffer_alloc_pages(xch, bm, (int)pages);
    if (!bm || xc_domain_pause(xch, domid) < 0)
        goto out;
    paused = 1;
    if (xc_shadow_control(xch, domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
                          NULL, 0) < 0)
        goto out;
    logging = 1;
    size = xc_domain_hvm_getcontext(xch, domid, NULL, 0);
    if (size <= 0 || !(ctx = malloc((size_t)size)))
        goto out;
    printf("XTK-NOTE calls: median/max (us) of %d calls each, the domain "
           "paused, its log on, %lu frames:",
           n, (unsigned long)nr);
    for (int c = 0; c < C_NR; c++) {
        for (int i = 0; i < n; i++) {
            uint64_t t0 = xtk_now_ns();
            if (one_call((enum call)c, xch, fm, domid, HYPERCALL_BUFFER(bm),
                         (unsigned long)nr, ctx, (uint32_t)size) < 0) {
                printf(" %s: failed (%s);", call_name[c], strerror(errno));
                goto next;
            }
            t[i] = xtk_now_ns() - t0;
        }
        qsort(t, (size_t)n, sizeof(*t), cmp_u64);
        printf(" %s %.1f/%.1f;", call_name[c], (double)t[n / 2] / 1e3,
               (double)t[n - 1] / 1e3);
next:;
    }
    printf("\n");
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "xen-probe --calls: %s\n", strerror(errno));
    if (logging)
        xc_shadow_control(xch, domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0);
    if (paused)
        xc_domain_unpause(xch, domid);
    if (bm)
        xc_hypercall_buffer_free_pages(xch, bm, (int)pages);
    free(ctx);
    free(t);
    if (fm)
        xenforeignmemory_close(fm);
    if (xch)
        xc_interface_close(xch);
    return rc;
}

/* The guest-physical word at gpa (identity-mapped guests), or ~0. */
static uint64_t guest_word(xenforeignmemory_handle *fm, uint32_t domid,
                           uint64_t gpa)
{
    xen_pfn_t pfn = gpa >> 12;
    uint64_t v = ~0ull;
    int err = 0;
    uint8_t *p = xenforeignmemory_map(fm, domid, PROT_READ, 1, &pfn, &err);

    if (!p || err)
        return v;
    memcpy(&v, p + (gpa & 0xff8), sizeof(v));
    xenforeignmemory_unmap(fm, p, 1);
    return v;
}

/* --regs DOMID: each vCPU's saved registers and the top of its stack. */
static int print_regs(const char *arg)
{
    char *end;
    unsigned long id = strtoul(arg, &end, 10);
    uint32_t domid = (uint32_t)id;
    xc_interface *xch = NULL;
    xenforeignmemory_handle *fm = NULL;
    uint8_t *buf = NULL;
    int size, rc = 1;

    if (*end || end == arg || id >= DOMID_FIRST_RESERVED) {
        fprintf(stderr, "xen-probe: %s is not a domain id\n", arg);
        return 2;
    }
    xch = xc_interface_open(NULL, NULL, 0);
    fm = xenforeignmemory_open(NULL, 0);
    if (!xch || !fm)
        goto out;
    size = xc_domain_hvm_getcontext(xch, domid, NULL, 0);
    if (size <= 0 || !(buf = malloc((size_t)size)) ||
        (size = xc_domain_hvm_getcontext(xch, domid, buf, (uint32_t)size)) <= 0)
        goto out;
    for (size_t off = 0;
         off + sizeof(struct hvm_save_descriptor) <= (size_t)size;) {
        struct hvm_save_descriptor d;
        struct hvm_hw_cpu c;

        memcpy(&d, buf + off, sizeof(d));
        off += sizeof(d);
        if (d.length > (size_t)size - off)
            break;
        if (d.typecode == HVM_SAVE_CODE(CPU) && d.length >= sizeof(c)) {
            memcpy(&c, buf + off, sizeof(c));
            printf("vcpu %u: rip %#llx rsp %#llx rflags %#llx cs %#x/%#x ss "
                   "%#x cr0 %#llx cr2 %#llx cr3 %#llx cr4 %#llx tr %#x base "
                   "%#llx idtr %#llx/%#x gdtr %#llx/%#x pending %#x err %#x\n",
                   d.instance, (unsigned long long)c.rip,
                   (unsigned long long)c.rsp, (unsigned long long)c.rflags,
                   c.cs_sel, c.cs_arbytes, c.ss_sel, (unsigned long long)c.cr0,
                   (unsigned long long)c.cr2, (unsigned long long)c.cr3,
                   (unsigned long long)c.cr4, c.tr_sel,
                   (unsigned long long)c.tr_base,
                   (unsigned long long)c.idtr_base, c.idtr_limit,
                   (unsigned long long)c.gdtr_base, c.gdtr_limit,
                   c.pending_event, c.error_code);
            printf("  rax %#llx rbx %#llx rcx %#llx rdx %#llx rsi %#llx rdi "
                   "%#llx rbp %#llx r8 %#llx r11 %#llx\n",
                   (unsigned long long)c.rax, (unsigned long long)c.rbx,
                   (unsigned long long)c.rcx, (unsigned long long)c.rdx,
                   (unsigned long long)c.rsi, (unsigned long long)c.rdi,
                   (unsigned long long)c.rbp, (unsigned long long)c.r8,
                   (unsigned long long)c.r11);
            printf("  stack:");
            for (int i = 0; i < 12; i++)
                printf(" %#llx", (unsigned long long)guest_word(
                                     fm, domid, c.rsp + 8 * (uint64_t)i));
            printf("\n");
        }
        off += d.length;
        if (d.typecode == HVM_SAVE_CODE(END))
            break;
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "xen-probe --regs: %s\n", strerror(errno));
    free(buf);
    if (fm)
        xenforeignmemory_close(fm);
    if (xch)
        xc_interface_close(xch);
    return rc;
}

int main(int argc, char **argv)
{
    struct xtk_ctx *ctx;
    struct xtk_domain *dom;
    struct xtk_domain_info info;
    int cycles, pv = 0;

    if (argc == 3 && !strcmp(argv[1], "--status"))
        return print_status(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--regs"))
        return print_regs(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "--calls") && atoi(argv[3]) > 0)
        return time_calls((uint32_t)atoi(argv[2]), atoi(argv[3]));
    for (;;) {
        if (argc > 1 && !strcmp(argv[1], "--pv")) {
            pv = 1;
            argc--, argv++;
        } else if (argc > 2 && !strcmp(argv[1], "--console")) {
            console_log = argv[2];
            argc -= 2, argv += 2;
        } else {
            break;
        }
    }
    if (argc != 3 || (cycles = atoi(argv[2])) <= 0) {
        fprintf(stderr, "usage: xen-probe [--pv] [--console FILE] NAME CYCLES\n"
                        "       xen-probe --status DOMID\n"
                        "       xen-probe --regs DOMID\n"
                        "       xen-probe --calls DOMID N\n");
        return 2;
    }
    setenv("XTK_BACKEND", "xen", 1);
    ctx = xtk_ctx_open(NULL, NULL, 0);
    if (!ctx) {
        FAIL("xtk-lookup", "no context: %s", strerror(errno));
        return failed;
    }
    dom = xtk_domain_lookup(ctx, argv[1]);
    if (!dom || info_of(dom, &info) < 0) {
        FAIL("xtk-lookup", "%s: %s", argv[1], strerror(errno));
        xtk_ctx_close(ctx);
        return failed;
    }
    if (strcmp(info.name, argv[1]) || !info.nr_vcpus || !info.nr_pages)
        FAIL("xtk-lookup", "domain %u: name '%s', %u vCPUs, %llu pages",
             info.domid, info.name, info.nr_vcpus,
             (unsigned long long)info.nr_pages);
    else
        OK("xtk-lookup", "%s is domain %u: %u vCPU(s), %llu pages, flags %#x",
           info.name, info.domid, info.nr_vcpus,
           (unsigned long long)info.nr_pages, info.flags);

    check_pause(ctx, dom);
    /* The p2m of a 128 MiB guest is well under 1 M frames. */
    check_logdirty(dom, 1u << 20, pv);
    check_suspend(dom, cycles);
    check_guard(dom, pv);

    if (wait_flags(dom, XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED, 0, 5000) <
        0)
        FAIL("xtk-running", "the guest is left paused or suspended");
    else
        OK("xtk-running", "neither paused nor suspended");
    xtk_domain_close(dom);
    xtk_ctx_close(ctx);
    return failed;
}

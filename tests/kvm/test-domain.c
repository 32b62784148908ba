/*
 * test-domain.c - domains through the public API: guests with 1, 2 and 4
 * vCPUs boot, print on their console, stop when paused (their counter,
 * read from guest memory, stands still) and go on when unpaused; list,
 * lookup, unique names; pauses taken for a handle's life end with it; a
 * destroyed domain is gone; the host-side self-check of every workload
 * fails when one word of the workload's memory changes.
 */
#include "config.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>

#include "kvm-test.h"

static struct xtk_ctx *ctx;

/* The counter advances (or not) over 100 ms. */
static int counter_moves(volatile struct xtk_guest_status *st)
{
    uint64_t a = st->counter;

    kt_sleep_ms(100);
    return st->counter != a;
}

/* Every vCPU's loop goes round within 3 s (a loaded host may keep one, or
 * the lock holder the others wait for, off a core for a while). */
static int heartbeats_move(volatile struct xtk_guest_status *st, uint32_t n)
{
    uint64_t a[XTK_GUEST_MAX_VCPUS], deadline = kt_now_ms() + 3000;
    uint32_t moved = 0;

    for (uint32_t i = 0; i < n; i++)
        a[i] = st->heartbeat[i];
    while (moved != (1u << n) - 1 && kt_now_ms() < deadline) {
        kt_sleep_ms(10);
        for (uint32_t i = 0; i < n; i++)
            if (st->heartbeat[i] != a[i])
                moved |= 1u << i;
    }
    return moved == (1u << n) - 1;
}

static void boot_pause_unpause(uint32_t vcpus)
{
    char name[32], con[8192];
    struct xtk_domain *dom;
    struct xtk_domain_info info;
    volatile struct xtk_guest_status *st;

    snprintf(name, sizeof(name), "vcpus-%u", vcpus);
    dom = kt_create(ctx, name, vcpus, 32,
                    vcpus > 1 ? "workload=spin" : "workload=counter",
                    XTK_DOMCFG_NO_STORE);
    kt_wait_up(dom, vcpus);
    st = kt_status(dom);

    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    TEST_ASSERT(info.nr_vcpus == vcpus && info.nr_pages == 32 * 256 &&
                    !strcmp(info.name, name) &&
                    !(info.flags & ~0u & XTK_DOMINFO_PAUSED),
                "info: %u vCPUs, %llu pages, %s, flags %#x", info.nr_vcpus,
                (unsigned long long)info.nr_pages, info.name, info.flags);

    KT_WAIT(kt_console(dom, con, sizeof(con)) &&
                strstr(con, "xtk-guest: running"),
            5000, "console says running: '%s'", con);
    TEST_ASSERT(strstr(con, vcpus > 1 ? "workload=spin" : "workload=counter"),
                "console shows the command line: '%s'", con);

    /* Running: every vCPU's loop goes round. */
    TEST_ASSERT(heartbeats_move(st, vcpus), "all %u vCPUs run", vcpus);
    if (vcpus == 1)
        KT_WAIT(counter_moves(st), 3000, "counter moves");

    TEST_ASSERT(xtk_domain_pause(dom) == 0, "pause");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0 &&
                    (info.flags & XTK_DOMINFO_PAUSED),
                "info says paused");
    /* Paused means stopped: not one more increment. */
    if (vcpus == 1)
        TEST_ASSERT(!counter_moves(st), "counter stopped while paused");
    uint64_t hb[XTK_GUEST_MAX_VCPUS];
    for (uint32_t i = 0; i < vcpus; i++)
        hb[i] = st->heartbeat[i];
    kt_sleep_ms(100);
    for (uint32_t i = 0; i < vcpus; i++)
        TEST_ASSERT(st->heartbeat[i] == hb[i], "vCPU %u stopped", i);
    kt_check(dom);

    TEST_ASSERT(xtk_domain_unpause(dom) == 0, "unpause");
    TEST_ASSERT(heartbeats_move(st, vcpus), "all vCPUs run again");
    if (vcpus == 1)
        KT_WAIT(counter_moves(st), 3000, "counter moves again");
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
}

static void vcpus_1(void)
{
    boot_pause_unpause(1);
}

static void vcpus_2(void)
{
    boot_pause_unpause(2);
}

static void vcpus_4(void)
{
    boot_pause_unpause(4);
}

/* list, lookup by name and by id, unique names, destroy. */
static void names_and_destroy(void)
{
    struct xtk_domain *a, *b, *c;
    struct xtk_domain_info *v;
    struct xtk_domain_config cfg = {.name = "alpha", .flags = 1};
    size_t n;
    uint32_t ida, idb;
    char idbuf[32];

    a = kt_create(ctx, "alpha", 1, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    b = kt_create(ctx, NULL, 1, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    ida = xtk_domain_id(a);
    idb = xtk_domain_id(b);
    TEST_ASSERT(ida && idb && ida != idb, "ids %u %u", ida, idb);

    errno = 0;
    TEST_ASSERT(!xtk_domain_create(ctx, &cfg) && errno == EEXIST,
                "a second 'alpha' is refused with EEXIST (errno %d)", errno);

    TEST_ASSERT(xtk_domain_list(ctx, &v, &n) == 0 && n == 2, "list: %zu", n);
    TEST_ASSERT(v[0].domid < v[1].domid, "sorted by id");
    TEST_ASSERT(!strcmp(v[ida < idb ? 0 : 1].name, "alpha"), "name listed");
    snprintf(idbuf, sizeof(idbuf), "domain-%u", idb);
    TEST_ASSERT(!strcmp(v[ida < idb ? 1 : 0].name, idbuf), "default name %s",
                idbuf);
    free(v);

    c = xtk_domain_lookup(ctx, "alpha");
    TEST_ASSERT(c && xtk_domain_id(c) == ida, "lookup by name");
    xtk_domain_close(c);
    snprintf(idbuf, sizeof(idbuf), "%u", idb);
    c = xtk_domain_lookup(ctx, idbuf);
    TEST_ASSERT(c && xtk_domain_id(c) == idb, "lookup by id");
    xtk_domain_close(c);
    errno = 0;
    TEST_ASSERT(!xtk_domain_lookup(ctx, "nobody") && errno == ENOENT,
                "unknown name: ENOENT");

    /* Renames: a taken name is refused, a free one moves. */
    TEST_ASSERT_ERRNO(xtk_domain_rename(b, "alpha"), EEXIST);
    TEST_ASSERT_ERRNO(xtk_domain_rename(b, "no/slash"), EINVAL);
    TEST_ASSERT(xtk_domain_rename(a, "beta") == 0, "rename alpha to beta");
    c = xtk_domain_lookup(ctx, "beta");
    TEST_ASSERT(c && xtk_domain_id(c) == ida, "found by its new name");
    xtk_domain_close(c);
    errno = 0;
    TEST_ASSERT(!xtk_domain_lookup(ctx, "alpha") && errno == ENOENT,
                "not by its old one");
    TEST_ASSERT(xtk_domain_rename(b, "alpha") == 0, "the old name is free");
    TEST_ASSERT_ERRNO(xtk_domain_rename(b, "42"), EINVAL); /* an id? */
    snprintf(idbuf, sizeof(idbuf), "domain-%u", idb);
    TEST_ASSERT(xtk_domain_rename(b, idbuf) == 0, "and back");

    TEST_ASSERT(xtk_domain_destroy(a) == 0, "destroy");
    xtk_domain_close(a);
    errno = 0;
    TEST_ASSERT(!xtk_domain_open(ctx, ida) && errno == ENOENT,
                "destroyed domain is gone");
    TEST_ASSERT(xtk_domain_list(ctx, &v, &n) == 0 && n == 1 &&
                    v[0].domid == idb,
                "list after destroy");
    free(v);
    /* Its name is free again. */
    a = kt_create(ctx, "alpha", 1, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    TEST_ASSERT(xtk_domain_id(a) != ida, "ids are not reused at once");
    xtk_domain_destroy(a);
    xtk_domain_close(a);
    xtk_domain_destroy(b);
    xtk_domain_close(b);
}

/*
 * Recovery: a pause held by a handle (what the save engine takes) ends when
 * the handle closes, as it would if the toolstack died; a plain pause
 * outlives its handle and any handle's unpause ends it.
 */
static void pauses_and_handles(void)
{
    struct xtk_domain *dom, *h;
    volatile struct xtk_guest_status *st;
    struct xtk_domain_info info;
    uint32_t id;

    dom = kt_create(ctx, "holder", 1, 16, "workload=counter",
                    XTK_DOMCFG_NO_STORE);
    kt_wait_up(dom, 1);
    st = kt_status(dom);
    id = xtk_domain_id(dom);

    h = xtk_domain_open(ctx, id);
    TEST_ASSERT(h && xtk__domain_pause_hold(h) == 0, "hold a pause");
    TEST_ASSERT(!counter_moves(st), "stopped while held");
    xtk_domain_close(h); /* as if the toolstack died */
    KT_WAIT(xtk_domain_info(dom, &info) == 0 &&
                !(info.flags & XTK_DOMINFO_PAUSED),
            5000, "the held pause ended with its handle");
    KT_WAIT(counter_moves(st), 3000, "runs again");

    h = xtk_domain_open(ctx, id);
    TEST_ASSERT(h && xtk_domain_pause(h) == 0, "plain pause");
    xtk_domain_close(h);
    TEST_ASSERT(!counter_moves(st), "a plain pause outlives its handle");
    h = xtk_domain_open(ctx, id);
    TEST_ASSERT(h && xtk__domain_pause_hold(h) == 0, "and a held one");
    TEST_ASSERT(xtk_domain_unpause(dom) == 0, "unpause from another handle");
    KT_WAIT(counter_moves(st), 3000, "unpause always works");
    xtk_domain_close(h);

    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    errno = 0;
    TEST_ASSERT(xtk_domain_pause(dom) == -1 && errno == ESRCH,
                "a destroyed domain's handle: ESRCH (errno %d)", errno);
    xtk_domain_close(dom);
}

/* All of /proc/PID/NAME (NUL-terminated too) into buf; its length, or -1. */
static ssize_t read_proc(const char *pid, const char *name, char *buf,
                         size_t size)
{
    char path[600];
    ssize_t len = 0, r;
    int fd;

    snprintf(path, sizeof(path), "/proc/%s/%s", pid, name);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    while ((size_t)len < size - 1 &&
           (r = read(fd, buf + len, size - 1 - (size_t)len)) > 0)
        len += r;
    close(fd);
    buf[len] = 0;
    return len;
}

/* Whether the NUL-separated list in buf (len bytes) has item s. */
static int has_item(const char *buf, ssize_t len, const char *s)
{
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(buf + i) + 1)
        if (!strcmp(buf + i, s))
            return 1;
    return 0;
}

/* The vCPU threads (xtk-hv-vcpuN) of domain `name`'s xtk-hv, of this
 * test's run directory: how many. */
static unsigned int vcpu_threads(const char *name, pid_t *tid, unsigned int max)
{
    static char buf[1 << 16];
    char want[128], task[600];
    unsigned int n = 0;
    DIR *d = opendir("/proc"), *td;
    struct dirent *e, *te;
    ssize_t len;

    TEST_ASSERT(d, "/proc");
    snprintf(want, sizeof(want), "XTK_RUNDIR=%s", kt_rundir);
    while ((e = readdir(d))) {
        len = read_proc(e->d_name, "cmdline", buf, sizeof(buf));
        if (len <= 0 || !has_item(buf, len, "--name") ||
            !has_item(buf, len, name) || !strstr(buf, "xtk-hv"))
            continue;
        len = read_proc(e->d_name, "environ", buf, sizeof(buf));
        if (len <= 0 || !has_item(buf, len, want))
            continue;
        snprintf(task, sizeof(task), "/proc/%s/task", e->d_name);
        td = opendir(task);
        while (td && (te = readdir(td))) {
            unsigned int i;

            snprintf(task, sizeof(task), "task/%s/comm", te->d_name);
            if (read_proc(e->d_name, task, buf, sizeof(buf)) > 0 &&
                sscanf(buf, "xtk-hv-vcpu%u", &i) == 1 && i < max) {
                tid[i] = (pid_t)atoi(te->d_name);
                n++;
            }
        }
        if (td)
            closedir(td);
    }
    closedir(d);
    return n;
}

static volatile int hog_stop;

/* Real-time, on the CPU it was started on: nothing else runs there. */
static void *hog(void *arg)
{
    uint64_t end = kt_now_ms() + 10000;

    (void)arg;
    while (!hog_stop && kt_now_ms() < end)
        ;
    return NULL;
}

/*
 * A vCPU let go of its park that has not run since is runnable, waiting
 * for a CPU, as a preempted one is: the boot page's waking mask says so
 * to the guest (which counts it preempted and gives it its time), from
 * the unpause until its thread gets a CPU.  The vCPU threads pinned to a
 * CPU a real-time thread of the test's fills: after an unpause every bit
 * stays set; the hog gone, every bit clears as the guest runs.
 */
static void waking_mask(void)
{
    struct xtk_domain *dom, *h;
    volatile struct xtk_guest_boot *b;
    volatile struct xtk_guest_status *st;
    struct sched_param sp = {.sched_priority = 1};
    struct xtk_domain_info info;
    pthread_attr_t attr;
    uint64_t w;
    cpu_set_t mine, one, rest;
    pthread_t th;
    int r;
    pid_t tid[4];
    int cpu = -1;

    TEST_ASSERT(sched_getaffinity(0, sizeof(mine), &mine) == 0, "affinity");
    if (CPU_COUNT(&mine) < 2) {
        printf("  skipped: one CPU\n");
        return;
    }
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mine))
            cpu = c;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    rest = mine;
    CPU_CLR(cpu, &rest);

    dom = kt_create(ctx, "waking", 4, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    kt_wait_up(dom, 4);
    b = (volatile struct xtk_guest_boot *)(kt_ram(dom) + XTK_GUEST_BOOT_GPA);
    st = kt_status(dom);
    TEST_ASSERT(vcpu_threads("waking", tid, 4) == 4,
                "xtk-hv's four vCPU threads");
    for (int i = 0; i < 4; i++)
        TEST_ASSERT(sched_setaffinity(tid[i], sizeof(one), &one) == 0,
                    "pin vCPU %d's thread", i);
    TEST_ASSERT(sched_setaffinity(0, sizeof(rest), &rest) == 0, "move off");
    TEST_ASSERT(b->waking == 0, "running: none waking (%#llx)",
                (unsigned long long)b->waking);

    h = xtk_domain_open(ctx, xtk_domain_id(dom));
    TEST_ASSERT(h && xtk__domain_pause_hold(h) == 0, "pause");
    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &sp);
    pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
    hog_stop = 0;
    r = pthread_create(&th, &attr, hog, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        printf("  skipped: no real-time thread here\n");
        xtk_domain_close(h);
        xtk_domain_destroy(dom);
        xtk_domain_close(dom);
        sched_setaffinity(0, sizeof(mine), &mine);
        return;
    }
    kt_sleep_ms(20);     /* the hog has its CPU */
    xtk_domain_close(h); /* the pause ends: the vCPUs are let go */
    KT_WAIT(xtk_domain_info(dom, &info) == 0 &&
                !(info.flags & XTK_DOMINFO_PAUSED),
            5000, "unpaused");
    kt_sleep_ms(50);
    w = b->waking;
    hog_stop = 1;
    pthread_join(th, NULL);
    TEST_ASSERT(w == 0xf,
                "let go but kept off their CPU, all four waking (%#llx)",
                (unsigned long long)w);
    KT_WAIT(b->waking == 0, 5000, "each clears as it runs (%#llx)",
            (unsigned long long)b->waking);
    TEST_ASSERT(heartbeats_move(st, 1), "the guest runs");
    TEST_ASSERT(sched_setaffinity(0, sizeof(mine), &mine) == 0, "back");
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
}

/*
 * The host-side self-check is worth something only if it fails: with each
 * workload stopped, it passes; one word changed in the workload's memory
 * (a patterned page, the mirror, the dirtier's table, the spin counts)
 * fails it with EILSEQ; the word put back, it passes again.
 */
static int check_once(struct xtk_domain *dom, char *why, size_t len)
{
    struct xtk_domain_info info;

    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    return xtk__guest_check(kt_ram(dom), info.nr_pages, why, len);
}

static void flip_fails(struct xtk_domain *dom, uint64_t gpa, const char *what)
{
    uint64_t *w = (uint64_t *)(kt_ram(dom) + gpa), old = *w;
    char why[256] = "";

    *w ^= 1ull << 17;
    errno = 0;
    TEST_ASSERT(check_once(dom, why, sizeof(why)) == -1 && errno == EILSEQ,
                "a flipped bit in %s fails the self-check (errno %d)", what,
                errno);
    *w = old;
    TEST_ASSERT(check_once(dom, why, sizeof(why)) == 0,
                "%s put back, the self-check passes: %s", what, why);
}

static void self_check_fails(void)
{
    static const char *const loads[] = {"workload=idle", "workload=counter",
                                        "workload=dirty pages=64 rate=0",
                                        "workload=spin"};

    for (unsigned int k = 0; k < 4; k++) {
        struct xtk_domain *dom, *h;
        volatile struct xtk_guest_status *st;
        uint32_t vcpus = k == 3 ? 2 : 1;
        char why[256] = "";

        dom = kt_create(ctx, NULL, vcpus, 16, loads[k], XTK_DOMCFG_NO_STORE);
        kt_wait_up(dom, vcpus);
        st = kt_status(dom);
        if (k == 2)
            KT_WAIT(st->dirty.passes > 0, 5000, "a pass over the 64 pages");
        kt_sleep_ms(50); /* let the workload run a little */
        h = xtk_domain_open(ctx, xtk_domain_id(dom));
        TEST_ASSERT(h && xtk__domain_pause_hold(h) == 0, "hold a pause");
        TEST_ASSERT(check_once(dom, why, sizeof(why)) == 0, "%s: %s", loads[k],
                    why);
        if (k < 2) {
            TEST_ASSERT(st->fill.pages == XTK_GUEST_FILL_PAGES, "fill set up");
            flip_fails(dom, XTK_GUEST_WORK_GPA + 5 * 4096 + 8 * 77,
                       "a patterned page");
            flip_fails(dom, st->fill.mirror_gpa, "the mirror");
        } else if (k == 2) {
            /* Not the page being rewritten, which the check skips. */
            uint64_t idx =
                st->dirty.writing == (XTK_GUEST_WORK_GPA >> 12) + 3 ? 9 : 3;
            flip_fails(dom, XTK_GUEST_WORK_GPA + idx * 4096 + 8 * 9,
                       "a dirtied page");
            flip_fails(dom, st->dirty.table_gpa + 8 * idx,
                       "the dirtier's table");
        } else {
            flip_fails(dom,
                       XTK_GUEST_STATUS_GPA +
                           offsetof(struct xtk_guest_status, spin.per_cpu[1]),
                       "a spin count");
        }
        xtk_domain_close(h);
        TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
        xtk_domain_close(dom);
    }
}

int main(void)
{
    /* Every STOP checks what xtk-hv kept or took from kvm_run. */
    setenv("XTK_HV_CHECK_PREFETCH", "1", 1);
    ctx = kt_setup();
    TEST_RUN(vcpus_1);
    TEST_RUN(vcpus_2);
    TEST_RUN(vcpus_4);
    TEST_RUN(names_and_destroy);
    TEST_RUN(pauses_and_handles);
    TEST_RUN(waking_mask);
    TEST_RUN(self_check_fails);
    xtk_ctx_close(ctx);
    return 0;
}

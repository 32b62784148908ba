/*
 * sr-bench.c - the save engine's throughput and the restore's time to the
 * first guest instruction, with real KVM guests (docs/benchmarks.md,
 * "save/restore", benchmarks 3 and 4).
 *
 *   sr-bench throughput [MIB [RUNS]]
 *       A guest of MIB (default 1024) whose memory above the guest's own
 *       4 MiB is filled with random words (incompressible, no zero page),
 *       saved non-live to /dev/null with 1, 2 (and 3) sender threads,
 *       next to a single-threaded memcpy of the same memory into a buffer,
 *       in the same run, RUNS times interleaved (default 5).  Then an idle
 *       guest of MIB (never-written memory) saved the same way.
 *       The save's time is the final round's (the guest is stopped:
 *       "final dirty sync" to "last page sent"), its rate the data bytes
 *       over that time.  /dev/null never reads what it is given, so that
 *       measures the engine's own work (zero detection, entries, syscalls);
 *       the same saves into a pipe that another thread drains (the kernel
 *       copies every byte in and out) are the cost with a real consumer,
 *       set against that pipe's own ceiling (the same bytes written into
 *       it from a buffer).
 *
 *   sr-bench restore [MIB [RUNS]]
 *   sr-bench [all [MIB [RUNS]]]     both (what scripts/bench.sh runs)
 *       The random guest saved to a file in /dev/shm, then restored RUNS
 *       times eagerly, lazily (XTK_RESTORE_LAZY) from the file with the
 *       index the save put after its END, and lazily from a copy of the
 *       file without it (its records read for one), in turn: the time
 *       from the start of the restore to the domain's resume, i.e. until
 *       its first instruction can run (eager: the stream read from the
 *       page cache, every page copied into the new domain; lazy: the
 *       index, or the records without the page contents), and to the
 *       moment every page is in ("memory complete"; eager: the same
 *       moment); the lazy restores' pages faulted in and prefetched.
 *       SR_GAP_US: the pause between two restores (default 1.5 s; 0 to 10 s).
 *
 * XTK_HV and XTK_GUEST default to the build's xtk-hv and guest beside this
 * program's folder.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xtk/xtk.h>

#include "abi.h"
#include "backend.h"

#define MAX_RUNS 100

static struct xtk_ctx *ctx;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Median, min, max of n values (sorted in place). */
static void spread(double *v, int n, double out[3])
{
    qsort(v, (size_t)n, sizeof(*v), by_value);
    out[0] = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    out[1] = v[0];
    out[2] = v[n - 1];
}

static struct xtk_domain *create(uint64_t mib, const char *name)
{
    struct xtk_domain_config cfg = {.name = name,
                                    .memory_mib = mib,
                                    .cmdline = "workload=idle",
                                    .flags = XTK_DOMCFG_NO_STORE};
    struct xtk_domain *dom = xtk_domain_create(ctx, &cfg);
    volatile struct xtk_guest_status *st;

    if (!dom)
        die("create");
    st = (void *)((char *)dom->ops->map_all(dom, PROT_READ) +
                  XTK_GUEST_STATUS_GPA);
    for (int i = 0; i < 500 && st->state != XTK_GUEST_RUNNING; i++)
        usleep(10000);
    if (st->state != XTK_GUEST_RUNNING) {
        fprintf(stderr, "the guest did not come up\n");
        exit(1);
    }
    return dom;
}

/* SR_GAP_US: the pause between two restores, 0 to 10 s (1.5 s if unset
 * or not a number in that range). */
static useconds_t gap_us(void)
{
    const char *v = getenv("SR_GAP_US");
    char *end;
    unsigned long us = v ? strtoul(v, &end, 10) : 0;

    return v && *v && !*end && us <= 10000000 ? (useconds_t)us : 1500000;
}

/* Random words over everything above the guest's own 4 MiB, but RAM's
 * last page (the idle guest's too: abi.h, top_gpa). */
static void fill_random(struct xtk_domain *dom, uint64_t bytes)
{
    uint64_t *p = dom->ops->map_all(dom, PROT_READ | PROT_WRITE);
    uint64_t x = 0x9e3779b97f4a7c15ull;

    if (!p)
        die("map");
    /* Not the idle guest's own self-check pages (abi.h). */
    for (uint64_t i =
             (XTK_GUEST_WORK_GPA + (XTK_GUEST_FILL_PAGES + 1) * 4096) / 8;
         i < (bytes - 4096) / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = x;
    }
}

/*
 * Saves dom non-live (it is resumed: XTK_SAVE_KEEP) into out.  Returns
 * the final round's time (final dirty sync to last page sent) in ns, and
 * the data bytes it sent.
 */
static double save_once(struct xtk_domain *dom, struct xtk_stream *out,
                        unsigned int senders, uint64_t *data_bytes)
{
    struct xtk_save_options o = {.flags = XTK_SAVE_KEEP, .senders = senders};
    struct xtk_save *sv = xtk_save_new(dom, out, &o);
    uint64_t ns, pages = 0;

    if (!sv || xtk_save_run(sv) < 0)
        die("save");
    if (xtk_stats_interval(xtk_save_stats(sv), "final dirty sync",
                           "last page sent", &ns) < 0)
        die("interval");
    xtk_stats_counter(xtk_save_stats(sv), "pages with data", &pages);
    *data_bytes = pages * XTK_PAGE_SIZE;
    xtk_save_free(sv);
    return (double)ns;
}

/* A pipe whose reader thread throws away what it reads. */
static void *drain(void *arg)
{
    static char sink[1 << 20];
    int fd = *(int *)arg;

    while (read(fd, sink, sizeof(sink)) > 0)
        ;
    return NULL;
}

static int pipe_with_reader(pthread_t *t, int *rfd)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe");
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    *rfd = p[0];
    if (pthread_create(t, NULL, drain, rfd))
        die("thread");
    return p[1];
}

/* The pipe's own ceiling: the same bytes written from a buffer, 4 MiB at
 * a time, into a pipe drained the same way. */
static double pipe_floor_once(const char *buf, uint64_t bytes)
{
    pthread_t t;
    int rfd, fd = pipe_with_reader(&t, &rfd);
    uint64_t t0 = xtk_now_ns(), done = 0;

    while (done < bytes) {
        ssize_t n = write(fd, buf + done,
                          bytes - done < (4u << 20) ? bytes - done : 4u << 20);
        if (n <= 0)
            die("write");
        done += (uint64_t)n;
    }
    close(fd);
    pthread_join(t, NULL);
    close(rfd);
    return (double)(xtk_now_ns() - t0);
}

static double memcpy_once(const void *ram, void *buf, uint64_t bytes)
{
    uint64_t t0 = xtk_now_ns();

    memcpy(buf, ram, bytes);
    return (double)(xtk_now_ns() - t0);
}

static int throughput(uint64_t mib, int runs)
{
    uint64_t bytes = mib << 20, data = 0;
    struct xtk_domain *dom = create(mib, "bench-random");
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct xtk_stream *out = NULL;
    const unsigned int senders[] = {1, 2, 3, 1, 2};
    const char *names[] = {"/dev/null, 1 sender", "/dev/null, 2 senders",
                           "/dev/null, 3 senders", "pipe, 1 sender",
                           "pipe, 2 senders"};
    double mc[MAX_RUNS], pf[MAX_RUNS], sv[5][MAX_RUNS], s[3];
    char *buf = malloc(bytes);
    const void *ram;

    if (null < 0 || !buf)
        die("setup");
    memset(buf, 1, bytes); /* fault it in before timing */
    fill_random(dom, bytes);
    ram = dom->ops->map_all(dom, PROT_READ);
    printf("save of a %llu MiB guest, random memory, non-live (GB/s)\n"
           "%4s %8s %8s %8s %8s %8s %8s %8s\n",
           (unsigned long long)mib, "run", "memcpy", "null-1", "null-2",
           "null-3", "pipe-1", "pipe-2", "pipe");
    for (int r = 0; r < runs; r++) {
        mc[r] = memcpy_once(ram, buf, bytes);
        printf("%4d %8.2f", r, bytes / mc[r]);
        for (int k = 0; k < 5; k++) {
            pthread_t t;
            int rfd, fd = k < 3 ? null : pipe_with_reader(&t, &rfd);

            out = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE);
            if (!out)
                die("stream");
            sv[k][r] = save_once(dom, out, senders[k], &data);
            xtk_stream_close(out);
            if (k >= 3) {
                close(fd);
                pthread_join(t, NULL);
                close(rfd);
            }
            sv[k][r] = data / sv[k][r]; /* GB/s */
            printf(" %8.2f", sv[k][r]);
        }
        mc[r] = bytes / mc[r];
        pf[r] = bytes / pipe_floor_once(buf, bytes);
        printf(" %8.2f\n", pf[r]);
        fflush(stdout);
    }
    for (int k = 0; k < 5; k++) {
        double ratio[MAX_RUNS];

        for (int r = 0; r < runs; r++)
            ratio[r] = sv[k][r] / mc[r];
        spread(sv[k], runs, s);
        printf("  %-21s %6.2f GB/s [%.2f-%.2f]", names[k], s[0], s[1], s[2]);
        spread(ratio, runs, s);
        printf(" = %.2f x memcpy [%.2f-%.2f]", s[0], s[1], s[2]);
        if (k >= 3) {
            for (int r = 0; r < runs; r++)
                ratio[r] = sv[k][r] / pf[r];
            spread(ratio, runs, s);
            printf(" = %.2f x the pipe [%.2f-%.2f]", s[0], s[1], s[2]);
        }
        printf("\n");
    }
    spread(pf, runs, s);
    printf("  %-21s %6.2f GB/s [%.2f-%.2f]\n", "pipe (from a buffer)", s[0],
           s[1], s[2]);
    spread(mc, runs, s);
    printf("  %-21s %6.2f GB/s [%.2f-%.2f]\n", "memcpy (1 thread)", s[0], s[1],
           s[2]);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
    free(buf);

    /* An idle guest: its memory was never written. */
    dom = create(mib, "bench-idle");
    printf("save of an idle %llu MiB guest to /dev/null (non-live, 2 "
           "senders): whole save, suspend to end sent\n",
           (unsigned long long)mib);
    for (int r = 0; r < runs; r++) {
        struct xtk_save_options o = {.flags = XTK_SAVE_KEEP};
        struct xtk_save *sv1;
        uint64_t ns;

        out = xtk_stream_fd(ctx, null, XTK_STREAM_WRITE);
        sv1 = out ? xtk_save_new(dom, out, &o) : NULL;
        if (!sv1 || xtk_save_run(sv1) < 0 ||
            xtk_stats_interval(xtk_save_stats(sv1), "suspend requested",
                               "end sent", &ns) < 0)
            die("idle save");
        mc[r] = ns / 1e6;
        xtk_save_free(sv1);
        xtk_stream_close(out);
    }
    spread(mc, runs, s);
    printf("  %.2f ms [%.2f-%.2f]\n", s[0], s[1], s[2]);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
    close(null);
    return 0;
}

/* p50 and p99 of v[0..n-1] (sorted in place). */
static void p50_p99(double *v, int n, double *p50, double *p99)
{
    qsort(v, (size_t)n, sizeof(*v), by_value);
    *p50 = v[n / 2];
    *p99 = v[(n * 99 + 99) / 100 - 1 < n ? (n * 99 + 99) / 100 - 1 : n - 1];
}

/*
 * A copy of the file at path without the index after its END (to its
 * END), at bare.  The index's offset is in the file's last 24 bytes.
 */
static void copy_without_index(const char *path, const char *bare)
{
    int in = open(path, O_RDONLY), out;
    uint8_t foot[24];
    uint64_t at, done = 0;
    off_t size = in >= 0 ? lseek(in, 0, SEEK_END) : -1;
    static uint8_t buf[1 << 20];

    if (size < 24 || pread(in, foot, 24, size - 24) != 24 ||
        memcmp(foot + 16, "xtkLZIXE", 8))
        die("the saved file has no lazy index");
    memcpy(&at, foot, 8);
    out = open(bare, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0)
        die(bare);
    while (done < at) {
        size_t n = at - done < sizeof(buf) ? at - done : sizeof(buf);

        if (pread(in, buf, n, (off_t)done) != (ssize_t)n ||
            write(out, buf, n) != (ssize_t)n)
            die("copy");
        done += n;
    }
    close(in);
    close(out);
}

static int restore(uint64_t mib, int runs)
{
    const char *path = "/dev/shm/xtk-sr-bench.xtk";
    const char *bare = "/dev/shm/xtk-sr-bench-noindex.xtk";
    static const char *const mode[3] = {"eager", "lazy", "scan"};
    struct xtk_domain *dom = create(mib, "bench-restore");
    struct xtk_stream *s;
    struct xtk_save *sv;
    /* [0] eager, [1] lazy from the index, [2] lazy reading the records
     * for one: to the first instruction, to every page in */
    double first[3][MAX_RUNS], full[3][MAX_RUNS], created[3][MAX_RUNS];
    double v[3], a, b;
    uint64_t faults[3][MAX_RUNS], fetched[3][MAX_RUNS];

    fill_random(dom, mib << 20);
    s = xtk_stream_file(ctx, path, XTK_STREAM_WRITE);
    sv = s ? xtk_save_new(dom, s, NULL) : NULL; /* destroys the source */
    if (!sv || xtk_save_run(sv) < 0 || xtk_stream_close(s) < 0)
        die("save to /dev/shm");
    xtk_save_free(sv);
    xtk_domain_close(dom);
    copy_without_index(path, bare);
    printf("restore of a %llu MiB guest (random memory) from a file in "
           "/dev/shm, eager, lazy (XTK_RESTORE_LAZY) with the file's index "
           "and lazy without it (scan) in turn\n"
           "%4s %6s %12s %16s %14s %12s %12s\n",
           (unsigned long long)mib, "run", "mode", "created ms",
           "first instr ms", "all in ms", "faulted", "prefetched");
    for (int r = 0; r < runs; r++) {
        for (int lazy = 0; lazy < 3; lazy++) {
            struct xtk_restore_options o = {.flags =
                                                lazy ? XTK_RESTORE_LAZY : 0};
            struct xtk_restore *rs;
            struct xtk_stats *st;
            uint64_t ns;

            s = xtk_stream_file(ctx, lazy == 2 ? bare : path, XTK_STREAM_READ);
            rs = s ? xtk_restore_new(ctx, s, &o) : NULL;
            if (!rs || xtk_restore_run(rs) < 0)
                die("restore");
            st = xtk_restore_stats(rs);
            if (xtk_stats_interval(st, "restore started", "resumed", &ns) < 0)
                die("interval");
            first[lazy][r] = ns / 1e6;
            full[lazy][r] = first[lazy][r];
            if (lazy) {
                if (xtk_stats_interval(st, "restore started", "memory complete",
                                       &ns) < 0)
                    die("interval");
                full[lazy][r] = ns / 1e6;
                xtk_stats_counter(st, "lazy pages faulted", &faults[lazy][r]);
                xtk_stats_counter(st, "lazy pages prefetched",
                                  &fetched[lazy][r]);
            }
            xtk_stats_interval(st, "restore started", "domain created", &ns);
            created[lazy][r] = ns / 1e6;
            if (getenv("SR_BENCH_REPORT")) {
                char *t = xtk_stats_format(st, XTK_STATS_TABLE);

                fputs(t ? t : "", stdout);
                free(t);
            }
            printf("%4d %6s %12.1f %16.1f %14.1f", r, mode[lazy],
                   created[lazy][r], first[lazy][r], full[lazy][r]);
            if (lazy)
                printf(" %12llu %12llu", (unsigned long long)faults[lazy][r],
                       (unsigned long long)fetched[lazy][r]);
            printf("\n");
            fflush(stdout);
            dom = xtk_domain_open(ctx, xtk_restore_domid(rs));
            xtk_domain_destroy(dom);
            xtk_domain_close(dom);
            xtk_restore_free(rs);
            xtk_stream_close(s);
            /* Its xtk-hv frees the memory as it exits, on the other CPU,
             * and about a second after its vCPUs' perf events closed the
             * kernel turns their static key off again (patching its
             * text, milliseconds here): neither under the next restore,
             * which then starts on a host where no xtk-hv runs. */
            usleep(gap_us());
        }
    }
    for (int lazy = 0; lazy < 3; lazy++) {
        const char *m = mode[lazy];

        p50_p99(first[lazy], runs, &a, &b);
        printf("  %s to the first instruction: p50 %.1f ms, p99 %.1f ms\n", m,
               a, b);
        p50_p99(full[lazy], runs, &a, &b);
        printf("  %s to every page in:         p50 %.1f ms, p99 %.1f ms\n", m,
               a, b);
        spread(created[lazy], runs, v);
        printf("  %s domain created at %.1f ms [%.1f-%.1f]\n", m, v[0], v[1],
               v[2]);
    }
    {
        double f[3], g[3];

        for (int k = 0; k < 3; k++) {
            p50_p99(first[k], runs, &f[k], &b);
            p50_p99(full[k], runs, &g[k], &b);
        }
        printf("  lazy / eager at p50: first instruction %.3f, every page "
               "in %.2f\n",
               f[1] / f[0], g[1] / g[0]);
        printf("  lazy with the index / without (scan) at p50: first "
               "instruction %.3f, every page in %.2f\n",
               f[1] / f[2], g[1] / g[2]);
    }
    if (!getenv("SR_BENCH_KEEP")) {
        unlink(path);
        unlink(bare);
    }
    return 0;
}

/* The build's xtk-hv and guest, beside this program's folder, unless the
 * environment says otherwise. */
static void find_build(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');
    char path[4096];

    snprintf(path, sizeof(path), "%.*s/../xtk-hv",
             slash ? (int)(slash - argv0) : 1, slash ? argv0 : ".");
    setenv("XTK_HV", path, 0);
    snprintf(path, sizeof(path), "%.*s/../guests/xtk-guest.elf",
             slash ? (int)(slash - argv0) : 1, slash ? argv0 : ".");
    setenv("XTK_GUEST", path, 0);
    setenv("XTK_RUNDIR", "/tmp/xtk-sr-bench", 0);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 1024;
    int runs = argc > 3 ? atoi(argv[3]) : 5, rc = 0;

    if (mib < 16 || mib > XTK_GUEST_MAX_MIB || runs < 1 || runs > MAX_RUNS ||
        (strcmp(what, "throughput") && strcmp(what, "restore") &&
         strcmp(what, "all"))) {
        fprintf(stderr,
                "usage: sr-bench [throughput|restore|all [MIB [RUNS]]]\n");
        return 2;
    }
    find_build(argv[0]);
    ctx = xtk_ctx_open(NULL, NULL, 0);
    if (!ctx)
        die("ctx");
    if (strcmp(what, "restore"))
        rc |= throughput(mib, runs);
    if (strcmp(what, "throughput"))
        rc |= restore(mib, runs);
    xtk_ctx_close(ctx);
    return rc;
}

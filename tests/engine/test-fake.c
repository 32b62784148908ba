/*
 * test-fake.c - the save and restore engines on the fault-injecting
 * backend (XTK_BACKEND=fake, lib/fake/fake.h): no /dev/kvm, no xtk-hv.
 *   - round trips: a live save of a guest writing its memory to a file
 *     and a restore from it, and a live migration over a socket pair with
 *     the reply, both jobs in one loop; the restored guest's check of its
 *     memory against the checksum its state carries passes and it runs;
 *   - every backend operation a save calls, failing at its first and at
 *     its last call (a pre-copy round's dirty read and the final one, the
 *     suspend, the state...): the save fails with that error, or, past the
 *     point of no return, completes; a failed save leaves the source
 *     running, unpaused, not suspended, not logging, with no handle but
 *     the test's; a completed one has the source gone and a restorable
 *     file;
 *   - every operation a restore calls, failing: the restore fails and no
 *     domain is left (never a half-built guest);
 *   - cancel after each phase the save stamps: before the guest is asked
 *     to stop, ECANCELED and the source runs on; once it has stopped, the
 *     save completes;
 *   - a guest that never answers the suspend request: ETIMEDOUT after the
 *     timeout, the request withdrawn, the guest running;
 *   - checkpoints to a backup in the same loop: END; the source failing
 *     at an epoch (the backup, promoted, runs exactly the last complete
 *     epoch); the backup failing to write an epoch (promoted: the last
 *     complete one, never the torn one; cancelled: nothing left; the
 *     source runs on unprotected); the backup stalled past the peer
 *     timeout (the source runs on unprotected); the backup failing after
 *     END;
 *   - a bandwidth limit on pre-copy is kept, and lifted while the save
 *     runs;
 *   - a restore whose stream (a pipe) stalls half-way is cancelled at
 *     once, nothing left;
 *   - no descriptor is left open (and, under ASan, no memory).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <xtk/ctx.h>
#include <xtk/domain.h>
#include <xtk/restore.h>
#include <xtk/save.h>
#include <xtk/stats.h>

#include "../../lib/fake/fake.h"
#include "../test.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct xtk_ctx *ctx;
static char img[64];
static unsigned int serial;

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    TEST_ASSERT(d, "/proc/self/fd");
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static struct xtk_domain *source(const char *cmdline)
{
    char name[32];
    struct xtk_domain_config c = {
        .name = name, .memory_mib = 16, .cmdline = cmdline};
    struct xtk_domain *dom;

    snprintf(name, sizeof(name), "src-%u", ++serial);
    dom = xtk_domain_create(ctx, &c);
    TEST_ASSERT(dom, "create %s", name);
    return dom;
}

static struct xtk__fake_status status(uint32_t domid)
{
    struct xtk__fake_status st;

    TEST_ASSERT(xtk__fake_status(domid, &st) == 0, "domain %u exists", domid);
    return st;
}

/* The domain runs: unpaused, not suspended, not crashed, and its thread
 * makes progress. */
static void assert_runs(uint32_t domid, const char *what)
{
    struct xtk__fake_status a = status(domid), b;
    struct timespec ts = {0, 20 * 1000 * 1000};

    TEST_ASSERT(!(a.flags & (XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED |
                             XTK_DOMINFO_EMPTY | XTK_DOMINFO_CRASHED)),
                "%s: domain %u runs (flags %#x)", what, domid, a.flags);
    /* (up to 2 s: under ASan beside the Xen testbed its thread once got
     * no CPU in 20 ms) */
    for (int i = 0; i < 100; i++) {
        nanosleep(&ts, NULL);
        b = status(domid);
        if (b.ticks > a.ticks)
            break;
    }
    TEST_ASSERT(b.ticks > a.ticks, "%s: domain %u makes progress", what, domid);
}

/* A source whose save failed: as it was before, with `handles` open (the
 * test's). */
static void assert_left(uint32_t domid, const char *what, unsigned int handles)
{
    struct xtk__fake_status st = status(domid);

    assert_runs(domid, what);
    TEST_ASSERT(!st.logging && !st.suspend_wanted && st.pauses == 0 &&
                    st.handles == handles,
                "%s: domain %u left as it was (logging %d, suspend asked %d, "
                "pauses %u, handles %u)",
                what, domid, st.logging, st.suspend_wanted, st.pauses,
                st.handles);
}

/* A live save of dom to img: 0, or -1 with errno. */
static int save_file(struct xtk_domain *dom, struct xtk_save_options *o)
{
    struct xtk_stream *out = xtk_stream_file(ctx, img, XTK_STREAM_WRITE);
    struct xtk_save *sv;
    int rc, e;

    TEST_ASSERT(out, "open %s", img);
    sv = xtk_save_new(dom, out, o);
    TEST_ASSERT(sv, "xtk_save_new");
    rc = xtk_save_run(sv);
    e = errno;
    xtk_save_free(sv);
    TEST_ASSERT(xtk_stream_close(out) == 0 || rc < 0, "close %s", img);
    errno = e;
    return rc;
}

/* Restores img as a new domain: its id, or 0 with errno. */
static uint32_t restore_file(void)
{
    char name[32];
    struct xtk_restore_options ro = {.name = name};
    struct xtk_stream *in = xtk_stream_file(ctx, img, XTK_STREAM_READ);
    struct xtk_restore *rs;
    uint32_t domid = 0;
    int e;

    snprintf(name, sizeof(name), "dst-%u", ++serial);
    TEST_ASSERT(in, "open %s", img);
    rs = xtk_restore_new(ctx, in, &ro);
    TEST_ASSERT(rs, "xtk_restore_new");
    if (xtk_restore_run(rs) == 0)
        domid = xtk_restore_domid(rs);
    e = errno;
    xtk_restore_free(rs);
    xtk_stream_close(in);
    errno = e;
    return domid;
}

static void destroy(uint32_t domid)
{
    struct xtk_domain *dom = xtk_domain_open(ctx, domid);

    TEST_ASSERT(dom, "open %u", domid);
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy %u", domid);
    xtk_domain_close(dom);
}

static void assert_untouched(uint32_t domid, const char *what)
{
    assert_left(domid, what, 1);
}

/* The restored domain runs on from where its source was. */
static void assert_restored(uint32_t domid, uint64_t writes_before)
{
    struct xtk__fake_status st = status(domid);

    TEST_ASSERT(!(st.flags & XTK_DOMINFO_CRASHED),
                "domain %u passed its memory check", domid);
    TEST_ASSERT(st.writes >= writes_before,
                "domain %u runs on from its source's %llu writes (%llu)", domid,
                (unsigned long long)writes_before,
                (unsigned long long)st.writes);
    assert_runs(domid, "restored");
}

static void roundtrip(void)
{
    struct xtk_domain *dom = source("dirty=20000:2048");
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
    uint32_t id = xtk_domain_id(dom), domid;
    unsigned int before = xtk__fake_count();
    uint64_t writes;
    struct timespec ts = {0, 30 * 1000 * 1000};

    nanosleep(&ts, NULL); /* some memory written */
    TEST_ASSERT(save_file(dom, &o) == 0, "live save");
    TEST_ASSERT(xtk__fake_status(id, &(struct xtk__fake_status){0}) < 0,
                "the source is gone");
    writes = 1; /* it wrote before it stopped */
    xtk_domain_close(dom);
    TEST_ASSERT(xtk__fake_count() == before - 1, "one domain fewer");
    domid = restore_file();
    TEST_ASSERT(domid, "restore");
    assert_restored(domid, writes);
    destroy(domid);
}

struct job {
    int done, err;
};

static void save_done(struct xtk_save *sv, int err, void *arg)
{
    struct job *j = arg;

    (void)sv;
    j->done = 1;
    j->err = err;
}

static void restore_done(struct xtk_restore *rs, int err, void *arg)
{
    struct job *j = arg;

    (void)rs;
    j->done = 1;
    j->err = err;
}

/* ---- a save and a restore joined by a socket pair, in one loop ------- */

#define DECIDE_PROMOTE 1
#define DECIDE_CANCEL 2

struct pair {
    struct job sj, rj;
    int decide; /* what a backup does when it loses its source */
    int lost_calls, lost_err;
    uint32_t src, dst;     /* domain ids (dst: 0 unless the restore ran) */
    unsigned int writes;   /* the restore's write_frames calls */
    uint64_t backup_lost;  /* the source's report says so */
    uint64_t stops_waited; /* stops that waited for an acknowledgement */
    /* Faults set (in place of the first ones) once the backup has
     * acknowledged its first epoch: only checkpoints come after. */
    const char *faults_acked;
    uint64_t put_off; /* the "suspend request put off" histogram's count */
};

static void on_lost(struct xtk_restore *rs, int err, void *arg)
{
    struct pair *p = arg;

    p->lost_calls++;
    p->lost_err = err;
    if (p->decide == DECIDE_PROMOTE)
        TEST_ASSERT(xtk_restore_promote(rs) == 0, "promote");
    else
        TEST_ASSERT(xtk_restore_cancel(rs) == 0, "cancel");
}

/* Saves dom (its handle closed after) with o into a restore with ro over
 * a socket pair, faults set once both exist, until both have ended. */
static void run_pair(struct pair *p, struct xtk_domain *dom,
                     struct xtk_save_options *o, struct xtk_restore_options *ro,
                     const char *faults)
{
    struct xtk_stream *out, *in;
    struct xtk_save *sv;
    struct xtk_restore *rs;
    int sp[2];

    p->src = xtk_domain_id(dom);
    ro->lost = on_lost;
    ro->lost_arg = p;
    TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0,
                "socketpair");
    o->peer_fd = sp[0];
    ro->peer_fd = sp[1];
    out = xtk_stream_socket(ctx, sp[0], XTK_STREAM_WRITE);
    in = xtk_stream_socket(ctx, sp[1], XTK_STREAM_READ);
    TEST_ASSERT(out && in, "streams");
    rs = xtk_restore_new(ctx, in, ro);
    sv = xtk_save_new(dom, out, o);
    TEST_ASSERT(rs && sv, "jobs");
    TEST_ASSERT(xtk__fake_faults(faults) == 0, "%s", faults);
    TEST_ASSERT(xtk_restore_start(rs, restore_done, &p->rj) == 0, "restore");
    TEST_ASSERT(xtk_save_start(sv, save_done, &p->sj) == 0, "save");
    while (!(p->sj.done && p->rj.done)) {
        uint64_t acked = 0;

        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
        if (p->faults_acked &&
            xtk_stats_counter(xtk_save_stats(sv), "epochs acknowledged",
                              &acked) == 0 &&
            acked) {
            TEST_ASSERT(xtk__fake_faults(p->faults_acked) == 0, "%s",
                        p->faults_acked);
            p->faults_acked = NULL;
        }
    }
    p->writes = xtk__fake_calls("write_frames");
    {
        struct xtk_hist *h =
            xtk_stats_hist(xtk_save_stats(sv), "suspend request put off", "ns");
        struct xtk_hist_summary hs;

        if (h && xtk_hist_summarize(h, &hs) == 0)
            p->put_off = hs.count;
    }
    xtk_stats_counter(xtk_save_stats(sv), "backup lost", &p->backup_lost);
    xtk_stats_counter(xtk_save_stats(sv),
                      "stops waiting for an acknowledgement", &p->stops_waited);
    TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
    p->dst = p->rj.err ? 0 : xtk_restore_domid(rs);
    xtk_save_free(sv);
    xtk_restore_free(rs);
    xtk_stream_close(out);
    xtk_stream_close(in);
    close(sp[0]);
    close(sp[1]);
    xtk_domain_close(dom);
}

/* Migration over a socket pair, the save and the restore in one loop. */
static void migrate(void)
{
    struct xtk_domain *dom = source("dirty=20000:4096");
    struct xtk_save_options o = {.flags = XTK_SAVE_MIGRATE};
    struct xtk_restore_options ro = {.flags = XTK_RESTORE_REPLY,
                                     .name = "migrated"};
    struct timespec ts = {0, 30 * 1000 * 1000};
    struct pair p = {0};

    nanosleep(&ts, NULL); /* some memory written */
    run_pair(&p, dom, &o, &ro, "");
    TEST_ASSERT(p.sj.err == 0 && p.rj.err == 0,
                "migrated (save %d, restore %d)", p.sj.err, p.rj.err);
    TEST_ASSERT(xtk__fake_status(p.src, &(struct xtk__fake_status){0}) < 0,
                "the source is gone");
    assert_restored(p.dst, 1);
    destroy(p.dst);
}

/* The caller's loop, watched: the longest gap between two of its 10 ms
 * ticks. */
struct watcher {
    uint64_t last, max_gap;
    uint64_t from, ticks; /* ticks after from (0: none counted) */
    struct event *ev;
};

static void on_watch_tick(evutil_socket_t fd, short what, void *arg)
{
    struct watcher *w = arg;
    uint64_t now = xtk_now_ns();

    (void)fd, (void)what;
    if (w->last && now - w->last > w->max_gap)
        w->max_gap = now - w->last;
    w->last = now;
    if (w->from && now > w->from)
        w->ticks++;
}

static void watch_loop(struct watcher *w)
{
    struct timeval tv = {0, 10000};

    *w = (struct watcher){0};
    w->ev =
        event_new(xtk_ctx_event_base(ctx), -1, EV_PERSIST, on_watch_tick, w);
    TEST_ASSERT(w->ev && event_add(w->ev, &tv) == 0, "a timer");
}

/* The save's reader at the pipe's far end, which stops reading for 1 s
 * once told (hold) as the final round begins. */
struct slow_reader {
    int fd, hold;
    uint64_t bytes;
};

static void *slow_read(void *arg)
{
    struct slow_reader *r = arg;
    char buf[65536];
    ssize_t n;

    for (;;) {
        if (__atomic_exchange_n(&r->hold, 0, __ATOMIC_SEQ_CST))
            nanosleep(&(struct timespec){1, 0}, NULL);
        n = read(r->fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        r->bytes += (uint64_t)n;
    }
    return NULL;
}

static void hold_reader(struct xtk_stats *st, const struct xtk_stats_event *ev,
                        void *arg)
{
    struct slow_reader *r = arg;

    (void)st;
    if (ev->kind == XTK_STATS_EVENT_PHASE &&
        !strcmp(ev->phase, "suspended notified"))
        __atomic_store_n(&r->hold, 1, __ATOMIC_SEQ_CST);
}

/* A live save into a pipe whose reader stops for 1 s as the final round
 * begins: the final round's ~200 pages (more than the pipe holds) and the
 * END wait on libxtk's threads, never on the caller's loop. */
static void final_round_off_loop(void)
{
    struct xtk_domain *dom = source("dirty=1000000:400");
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
    struct slow_reader r = {0};
    struct xtk_stream *out;
    struct job j = {0};
    struct xtk_save *sv;
    struct watcher w;
    pthread_t t;
    int pp[2];

    TEST_ASSERT(pipe(pp) == 0, "pipe");
    r.fd = pp[0];
    TEST_ASSERT(pthread_create(&t, NULL, slow_read, &r) == 0, "reader");
    out = xtk_stream_fd(ctx, pp[1], XTK_STREAM_WRITE);
    sv = out ? xtk_save_new(dom, out, &o) : NULL;
    TEST_ASSERT(sv, "save");
    xtk_stats_set_observer(xtk_save_stats(sv), hold_reader, &r);
    watch_loop(&w);
    TEST_ASSERT(xtk_save_start(sv, save_done, &j) == 0, "start");
    while (!j.done)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
    event_free(w.ev);
    TEST_ASSERT(j.err == 0, "saved (%s)", strerror(j.err));
    xtk_save_free(sv);
    xtk_stream_close(out);
    close(pp[1]);
    pthread_join(t, NULL);
    close(pp[0]);
    TEST_ASSERT(w.max_gap < 500000000ull,
                "the loop ran while the reader did not read (longest gap "
                "%.0f ms)",
                w.max_gap / 1e6);
    fprintf(stderr,
            "   the reader stalled 1 s: %llu bytes, the loop's longest gap "
            "%.1f ms\n",
            (unsigned long long)r.bytes, w.max_gap / 1e6);
    xtk_domain_close(dom);
}

/* The operations a save calls, and how often (the idle guest's save is
 * the same every time: a round of everything, a round of nothing, the
 * stop). */
static const char *const save_ops[] = {
    "info",
    "map_all",
    "logdirty_enable",
    "logdirty_read",
    "logdirty_disable",
    "suspend_setup",
    "suspend_request",
    "suspend_check",
    "get_state",
    "resume",
    "pause",
    "unpause",
    "destroy",
};

static void save_faults(void)
{
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
    unsigned int calls[N(save_ops)];
    struct xtk_domain *dom;
    int tried = 0, failed = 0;

    /* The calls of a save that works. */
    dom = source("dirty=0");
    TEST_ASSERT(xtk__fake_faults("") == 0, "no faults");
    TEST_ASSERT(save_file(dom, &o) == 0, "the save without faults");
    for (size_t i = 0; i < N(save_ops); i++)
        calls[i] = xtk__fake_calls(save_ops[i]);
    xtk_domain_close(dom);
    TEST_ASSERT(calls[3] >= 2 && calls[7] >= 1 && calls[8] == 1,
                "a save reads the log, checks the suspend, takes the state");

    for (size_t i = 0; i < N(save_ops); i++) {
        for (unsigned int nth = 1; nth <= calls[i]; nth++) {
            char spec[64], what[80];
            uint32_t id;
            int rc, e;

            if (nth != 1 && nth != calls[i])
                continue; /* the first and the last call */
            snprintf(spec, sizeof(spec), "%s@%u=ENXIO", save_ops[i], nth);
            snprintf(what, sizeof(what), "%s failing", spec);
            dom = source("dirty=0");
            id = xtk_domain_id(dom);
            TEST_ASSERT(xtk__fake_faults(spec) == 0, "%s", spec);
            rc = save_file(dom, &o);
            e = errno;
            TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
            tried++;
            if (rc < 0) {
                failed++;
                TEST_ASSERT(e == ENXIO, "%s: the save fails with it (%s)", what,
                            strerror(e));
                assert_untouched(id, what);
                xtk_domain_destroy(dom);
            } else {
                uint32_t domid;
                /* Past the point of no return (the stream is whole and
                 * committed): the source is gone, the file restores. */
                TEST_ASSERT(
                    xtk__fake_status(id, &(struct xtk__fake_status){0}) < 0 ||
                        !strcmp(save_ops[i], "destroy"),
                    "%s: the save completed and the source is gone", what);
                domid = restore_file();
                TEST_ASSERT(domid, "%s: its file restores", what);
                assert_restored(domid, 0);
                destroy(domid);
                if (xtk__fake_status(id, &(struct xtk__fake_status){0}) == 0)
                    xtk_domain_destroy(dom);
            }
            fprintf(stderr, "   %-28s %s\n", spec,
                    rc < 0 ? "failed, source untouched"
                           : "completed, source gone, file restores");
            xtk_domain_close(dom);
        }
    }
    TEST_ASSERT(failed > 0 && tried >= (int)N(save_ops) - 4,
                "faults were made (%d of %d saves failed)", failed, tried);
}

/* The operations a restore may call (those it does are failed). */
static const char *const restore_ops[] = {
    "create", "info",      "map_all", "populate", "write_frames",
    "pause",  "set_state", "rename",  "resume",
};

static void restore_faults(void)
{
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
    struct xtk_domain *dom = source("dirty=5000:1024");
    unsigned int calls[N(restore_ops)], n, failed = 0;
    uint32_t domid;

    TEST_ASSERT(save_file(dom, &o) == 0, "a file to restore");
    xtk_domain_close(dom);
    n = xtk__fake_count();
    TEST_ASSERT(xtk__fake_faults("") == 0, "counting");
    domid = restore_file();
    TEST_ASSERT(domid, "the restore without faults");
    for (size_t i = 0; i < N(restore_ops); i++)
        calls[i] = xtk__fake_calls(restore_ops[i]);
    destroy(domid);
    TEST_ASSERT(calls[0] == 1 && calls[2] >= 1 && calls[6] >= 1 &&
                    calls[8] == 1,
                "a restore creates, maps, loads the state and resumes");
    for (size_t i = 0; i < N(restore_ops); i++) {
        for (unsigned int nth = 1; nth <= calls[i]; nth++) {
            char spec[64];

            if (nth != 1 && nth != calls[i])
                continue;
            snprintf(spec, sizeof(spec), "%s@%u=ENOSPC", restore_ops[i], nth);
            TEST_ASSERT(xtk__fake_faults(spec) == 0, "%s", spec);
            domid = restore_file();
            TEST_ASSERT(!domid && errno == ENOSPC,
                        "%s: the restore fails with it (%u, %s)", spec, domid,
                        strerror(errno));
            TEST_ASSERT(xtk__fake_count() == n,
                        "%s: no domain is left (%u, was %u)", spec,
                        xtk__fake_count(), n);
            fprintf(stderr, "   %-28s failed, nothing left\n", spec);
            failed++;
        }
    }
    TEST_ASSERT(failed >= 4, "faults were made");
    TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
}

/* Cancel once the save has stamped a given phase. */
struct canceller {
    const char *phase;
    int round; /* or: once the first pre-copy round's row is in */
    struct event *ev;
    struct xtk_save *sv;
};

static void on_event(struct xtk_stats *st, const struct xtk_stats_event *ev,
                     void *arg)
{
    struct canceller *c = arg;

    (void)st;
    if ((ev->kind == XTK_STATS_EVENT_PHASE && c->phase &&
         !strcmp(ev->phase, c->phase)) ||
        (ev->kind == XTK_STATS_EVENT_ROUND && c->round))
        event_active(c->ev, 0, 0); /* libevent, not libxtk */
}

static void do_cancel(evutil_socket_t fd, short what, void *arg)
{
    struct canceller *c = arg;

    (void)fd;
    (void)what;
    xtk_save_cancel(c->sv);
}

static int save_cancelled(struct xtk_domain *dom, struct canceller *c)
{
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
    struct xtk_stream *out = xtk_stream_file(ctx, img, XTK_STREAM_WRITE);
    struct job j = {0};

    TEST_ASSERT(out, "open %s", img);
    c->sv = xtk_save_new(dom, out, &o);
    TEST_ASSERT(c->sv, "xtk_save_new");
    c->ev = event_new(xtk_ctx_event_base(ctx), -1, 0, do_cancel, c);
    TEST_ASSERT(c->ev, "event");
    xtk_stats_set_observer(xtk_save_stats(c->sv), on_event, c);
    TEST_ASSERT(xtk_save_start(c->sv, save_done, &j) == 0, "start");
    while (!j.done)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
    event_free(c->ev);
    xtk_save_free(c->sv);
    xtk_stream_close(out);
    errno = j.err;
    return j.err ? -1 : 0;
}

static void cancel_phases(void)
{
    static const char *const before_stop[] = {
        "save started", "domain prepared", "dirty log on", "suspend requested"};
    static const char *const after_stop[] = {
        "suspended notified", "final dirty sync", "last page sent",
        "state sent", "end sent"};
    struct canceller c;
    struct xtk_domain *dom;
    uint32_t id, domid;

    /* In pre-copy: the first round's row is in, the second round runs. */
    for (size_t i = 0; i <= N(before_stop); i++) {
        c = (struct canceller){0};
        if (i < N(before_stop))
            c.phase = before_stop[i];
        else
            c.round = 1;
        dom = source("dirty=20000:4096");
        id = xtk_domain_id(dom);
        TEST_ASSERT(save_cancelled(dom, &c) < 0 && errno == ECANCELED,
                    "cancel after %s: ECANCELED",
                    c.phase ? c.phase : "round 1");
        assert_untouched(id, c.phase ? c.phase : "round 1");
        fprintf(stderr, "   cancel after %-20s ECANCELED, source runs\n",
                c.phase ? c.phase : "round 1");
        xtk_domain_destroy(dom);
        xtk_domain_close(dom);
    }
    for (size_t i = 0; i < N(after_stop); i++) {
        c = (struct canceller){.phase = after_stop[i]};
        dom = source("dirty=20000:4096");
        id = xtk_domain_id(dom);
        TEST_ASSERT(save_cancelled(dom, &c) == 0,
                    "cancel after %s: the final round completes", c.phase);
        TEST_ASSERT(xtk__fake_status(id, &(struct xtk__fake_status){0}) < 0,
                    "cancel after %s: the source is gone", c.phase);
        xtk_domain_close(dom);
        domid = restore_file();
        TEST_ASSERT(domid, "cancel after %s: the file restores", c.phase);
        assert_restored(domid, 0);
        destroy(domid);
        fprintf(stderr, "   cancel after %-20s completed, file restores\n",
                c.phase);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    unsigned int *ticks = arg;

    (void)fd, (void)what;
    (*ticks)++;
}

/* The save's set-up (the backend's round trips, the headers, the dirty
 * log) runs off the caller's thread: a backend stalled in it leaves the
 * loop running; a cancel meanwhile ends the save once the set-up is out
 * (ECANCELED through done), a free meanwhile waits for it (no done);
 * either way the source is left as it was. */
static void setup_off_loop(void)
{
    static const char *const stalls[] = {"info@1=stall:1000",
                                         "logdirty_enable@1=stall:1000"};
    struct event_base *base = xtk_ctx_event_base(ctx);

    for (size_t i = 0; i < N(stalls); i++) {
        for (int freed = 0; freed < 2; freed++) {
            struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
            struct xtk_domain *dom = source("dirty=20000:4096");
            uint32_t id = xtk_domain_id(dom);
            struct xtk_stream *out =
                xtk_stream_file(ctx, img, XTK_STREAM_WRITE);
            struct timeval tv = {0, 10000};
            unsigned int ticks = 0;
            struct job j = {0};
            struct event *tick;
            struct xtk_save *sv;
            uint64_t t0, took;
            char what[96];

            snprintf(what, sizeof(what), "%s, then %s", stalls[i],
                     freed ? "freed" : "cancelled");
            TEST_ASSERT(out, "open %s", img);
            sv = xtk_save_new(dom, out, &o);
            TEST_ASSERT(sv, "xtk_save_new");
            TEST_ASSERT(xtk__fake_faults(stalls[i]) == 0, "%s", stalls[i]);
            tick = event_new(base, -1, EV_PERSIST, on_tick, &ticks);
            TEST_ASSERT(tick && event_add(tick, &tv) == 0, "a timer");
            t0 = xtk_now_ns();
            TEST_ASSERT(xtk_save_start(sv, save_done, &j) == 0, "start");
            while (ticks < 5)
                event_base_loop(base, EVLOOP_ONCE);
            took = xtk_now_ns() - t0;
            /* A loop held by the stalled call would tick only after it. */
            TEST_ASSERT(took < 700000000ull && !j.done,
                        "%s: the loop ran during the set-up (5 ticks in %.0f "
                        "ms, done %d)",
                        what, took / 1e6, j.done);
            if (freed) {
                xtk_save_free(sv);
                sv = NULL;
                TEST_ASSERT(!j.done, "%s: done is not called", what);
            } else {
                xtk_save_cancel(sv);
                while (!j.done)
                    event_base_loop(base, EVLOOP_ONCE);
                TEST_ASSERT(j.err == ECANCELED, "%s: ECANCELED (%s)", what,
                            strerror(j.err));
            }
            event_free(tick);
            TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
            xtk_save_free(sv);
            xtk_stream_close(out);
            assert_untouched(id, what);
            fprintf(stderr, "   %-44s source runs\n", what);
            xtk_domain_destroy(dom);
            xtk_domain_close(dom);
        }
    }
}

/* A save's end does the domain's side (its resume, the dirty log's and
 * the suspend channel's end) on a thread: a backend stalled there leaves
 * the loop running, and done comes once it is out. */
struct end_probe {
    struct xtk_save *sv;
    struct event *ev;
    unsigned int ticks, at_cancel;
};

static void probe_event(struct xtk_stats *st, const struct xtk_stats_event *ev,
                        void *arg)
{
    struct end_probe *p = arg;

    (void)st;
    if (ev->kind == XTK_STATS_EVENT_PHASE &&
        !strcmp(ev->phase, "suspend requested"))
        event_active(p->ev, 0, 0);
}

static void probe_cancel(evutil_socket_t fd, short what, void *arg)
{
    struct end_probe *p = arg;

    (void)fd, (void)what;
    p->at_cancel = p->ticks;
    xtk_save_cancel(p->sv);
}

static void end_off_loop(void)
{
    struct xtk_domain *dom = source("dirty=1000:256 nosuspend");
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE, .timeout_ms = 5000};
    struct xtk_stream *out = xtk_stream_file(ctx, img, XTK_STREAM_WRITE);
    struct event_base *base = xtk_ctx_event_base(ctx);
    uint32_t id = xtk_domain_id(dom);
    struct timeval tv = {0, 10000};
    struct end_probe p = {0};
    struct job j = {0};
    struct event *tick;

    TEST_ASSERT(out, "open %s", img);
    p.sv = xtk_save_new(dom, out, &o);
    TEST_ASSERT(p.sv, "xtk_save_new");
    p.ev = event_new(base, -1, 0, probe_cancel, &p);
    tick = event_new(base, -1, EV_PERSIST, on_tick, &p.ticks);
    TEST_ASSERT(p.ev && tick && event_add(tick, &tv) == 0, "events");
    xtk_stats_set_observer(xtk_save_stats(p.sv), probe_event, &p);
    TEST_ASSERT(xtk__fake_faults("resume@1=stall:1000") == 0, "faults");
    TEST_ASSERT(xtk_save_start(p.sv, save_done, &j) == 0, "start");
    while (!j.done)
        event_base_loop(base, EVLOOP_ONCE);
    TEST_ASSERT(j.err == ECANCELED,
                "cancelled while suspending: ECANCELED (%s)", strerror(j.err));
    TEST_ASSERT(xtk__fake_calls("resume") == 1, "the source was resumed");
    /* A loop held by the stalled resume would tick once or twice after. */
    TEST_ASSERT(p.ticks - p.at_cancel >= 20,
                "the loop ran while the end's resume stalled (%u ticks)",
                p.ticks - p.at_cancel);
    TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
    event_free(tick);
    event_free(p.ev);
    xtk_save_free(p.sv);
    xtk_stream_close(out);
    assert_untouched(id, "after the end");
    fprintf(stderr,
            "   a resume stalled 1 s at the end: %u ticks of the loop\n",
            p.ticks - p.at_cancel);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void no_suspend(void)
{
    struct xtk_domain *dom = source("dirty=1000:256 nosuspend");
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE, .timeout_ms = 300};
    uint32_t id = xtk_domain_id(dom);

    TEST_ASSERT(xtk__fake_faults("") == 0, "no faults (the counts from 0)");
    TEST_ASSERT(save_file(dom, &o) < 0 && errno == ETIMEDOUT,
                "a guest that does not suspend: ETIMEDOUT");
    assert_untouched(id, "after the timeout");
    TEST_ASSERT(xtk__fake_calls("info") >= 3,
                "the watch asked after it while it did not suspend (%u)",
                xtk__fake_calls("info") - 1);
    /* The watch's question (asked ahead, answered later on the loop)
     * failing: the save fails with it, not with the timeout. */
    o.timeout_ms = 5000;
    TEST_ASSERT(xtk__fake_faults("info@2=ENXIO") == 0, "faults");
    TEST_ASSERT(save_file(dom, &o) < 0 && errno == ENXIO,
                "its watch failing: ENXIO (%s)", strerror(errno));
    TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
    assert_untouched(id, "after the watch failed");
    /* The watch's question answered 2 s late, the timeout (at 0.3 s)
     * ending the save meanwhile: the answer still out is waited for on
     * the end's thread, and the caller's loop runs on (its 10 ms timer
     * ticks between 0.6 s and the end: none if the loop waited). */
    {
        struct watcher w;
        uint64_t t0, dt;

        o.timeout_ms = 300;
        TEST_ASSERT(xtk__fake_faults("info@2=late:2000") == 0, "faults");
        watch_loop(&w);
        t0 = xtk_now_ns();
        w.from = t0 + 600000000ull;
        TEST_ASSERT(save_file(dom, &o) < 0 && errno == ETIMEDOUT,
                    "its watch answering late: ETIMEDOUT (%s)",
                    strerror(errno));
        dt = xtk_now_ns() - t0;
        event_free(w.ev);
        TEST_ASSERT(xtk__fake_faults("") == 0, "faults off");
        TEST_ASSERT(dt > 1900000000ull,
                    "its end waited for the answer (%.0f ms)", dt / 1e6);
        TEST_ASSERT(w.ticks >= 20,
                    "the loop ran meanwhile (%llu ticks of 10 ms from 0.6 s "
                    "to the end at %.0f ms; longest gap %.0f ms)",
                    (unsigned long long)w.ticks, dt / 1e6, w.max_gap / 1e6);
        fprintf(stderr,
                "   the watch answering 2 s late at the timeout: done after "
                "%.0f ms, the loop ticked %llu times meanwhile (longest gap "
                "%.1f ms)\n",
                dt / 1e6, (unsigned long long)w.ticks, w.max_gap / 1e6);
        assert_untouched(id, "after the late answer");
    }
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

/* The pre-copy bandwidth limit: kept, changed while the save runs. */
struct lift {
    struct xtk_save *sv;
    int rounds; /* round rows seen (the observer's count) */
};

static void count_rounds(struct xtk_stats *st, const struct xtk_stats_event *ev,
                         void *arg)
{
    (void)st;
    if (ev->kind == XTK_STATS_EVENT_ROUND)
        __atomic_fetch_add(&((struct lift *)arg)->rounds, 1, __ATOMIC_RELAXED);
}

static void lift_limit(evutil_socket_t fd, short what, void *arg)
{
    struct lift *l = arg;

    (void)fd;
    (void)what;
    TEST_ASSERT(__atomic_load_n(&l->rounds, __ATOMIC_RELAXED) == 0,
                "at 512 KiB/s, no round of 8 MiB is over after 0.5 s");
    TEST_ASSERT(xtk_save_set_bandwidth(l->sv, 0) == 0, "lift the limit");
}

static void bandwidth(void)
{
    /* Every page of the first 8 MiB written (and no more: a pre-copy at
     * a limit that a guest outpaces never ends), so that a round sends
     * them. */
    struct xtk_domain *dom = source("dirty=400000:2048:20000");
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE,
                                 .max_bandwidth = 4 << 20};
    struct timespec ts = {0, 60 * 1000 * 1000};
    struct xtk_stream *out;
    struct timeval half = {0, 500 * 1000};
    struct lift l = {0};
    struct job j = {0};
    struct event *ev;
    uint64_t t0, ns;
    uint32_t domid;

    nanosleep(&ts, NULL);
    t0 = xtk_now_ns();
    TEST_ASSERT(save_file(dom, &o) == 0, "a save at 4 MiB/s");
    ns = xtk_now_ns() - t0;
    xtk_domain_close(dom);
    /* 8 MiB at 4 MiB/s: 2 s, less the 50 ms an idle link may lend. */
    TEST_ASSERT(ns >= 1900ull * 1000 * 1000,
                "8 MiB at 4 MiB/s took %.3f s: the limit was kept", ns / 1e9);
    domid = restore_file();
    TEST_ASSERT(domid, "it restores");
    assert_restored(domid, 1);
    destroy(domid);
    fprintf(stderr, "   8 MiB at 4 MiB/s: %.2f s\n", ns / 1e9);

    /* 512 KiB/s, lifted after half a second: the save then ends. */
    dom = source("dirty=400000:2048:20000");
    nanosleep(&ts, NULL);
    o.max_bandwidth = 512 << 10;
    out = xtk_stream_file(ctx, img, XTK_STREAM_WRITE);
    TEST_ASSERT(out, "open %s", img);
    l.sv = xtk_save_new(dom, out, &o);
    TEST_ASSERT(l.sv, "save");
    xtk_stats_set_observer(xtk_save_stats(l.sv), count_rounds, &l);
    ev = evtimer_new(xtk_ctx_event_base(ctx), lift_limit, &l);
    TEST_ASSERT(ev && evtimer_add(ev, &half) == 0, "timer");
    TEST_ASSERT(xtk_save_start(l.sv, save_done, &j) == 0, "start");
    while (!j.done)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
    TEST_ASSERT(!j.err, "the save ended once the limit was lifted (%d)", j.err);
    TEST_ASSERT(!evtimer_pending(ev, NULL), "the limit was lifted mid-save");
    event_free(ev);
    xtk_save_free(l.sv);
    xtk_stream_close(out);
    xtk_domain_close(dom);
    domid = restore_file();
    TEST_ASSERT(domid, "it restores");
    assert_restored(domid, 1);
    destroy(domid);
}

/* ---- continuous checkpointing to a backup in this process ------------ */

/*
 * A guest (its cmdline) checkpointed every 10 ms (epochs of them, then
 * END) to a backup on the other end of a socket pair, with faults set
 * once both have started.  The source domain is left for the caller (it
 * may run on).
 */
static void checkpoint_guest_timeout(struct pair *p, const char *cmdline,
                                     const char *faults, unsigned int epochs,
                                     uint32_t timeout_ms)
{
    struct xtk_save_options o = {.flags = XTK_SAVE_MIGRATE | XTK_SAVE_LIVE,
                                 .checkpoint_interval_ms = 10,
                                 .checkpoints = epochs,
                                 .heartbeat_ms = 50,
                                 .peer_timeout_ms = timeout_ms};
    struct xtk_restore_options ro = {.flags = XTK_RESTORE_REPLY,
                                     .name = "backup",
                                     .peer_timeout_ms = timeout_ms};

    run_pair(p, source(cmdline), &o, &ro, faults);
}

static void checkpoint_guest(struct pair *p, const char *cmdline,
                             const char *faults, unsigned int epochs)
{
    checkpoint_guest_timeout(p, cmdline, faults, epochs, 500);
}

/* The same for a guest dirtying 20,000 pages/s over 2048. */
static void checkpoint_pair(struct pair *p, const char *faults,
                            unsigned int epochs)
{
    checkpoint_guest(p, "dirty=20000:2048", faults, epochs);
}

static int exists(uint32_t domid)
{
    struct xtk__fake_status st;

    return xtk__fake_status(domid, &st) == 0;
}

static void checkpoint_faults(void)
{
    unsigned int n = xtk__fake_count(), writes,
                 idle = xtk__fake_counts().idle_resumes;
    struct pair p = {0};
    struct watcher w;
    char spec[64];

    /* No fault: 12 epochs, then END moves the guest to the backup. */
    checkpoint_pair(&p, "", 12);
    writes = p.writes;
    TEST_ASSERT(!p.sj.err && !p.rj.err && !p.lost_calls,
                "12 epochs, then END (save %d, backup %d)", p.sj.err, p.rj.err);
    TEST_ASSERT(!exists(p.src) && p.dst, "the backup runs the guest");
    assert_restored(p.dst, 1);
    destroy(p.dst);
    fprintf(stderr, "   12 epochs then END: the backup runs the guest\n");

    /* The source's save fails at its 6th stop (its state): its guest runs
     * on there; the backup, promoted, runs the last complete epoch. */
    p = (struct pair){.decide = DECIDE_PROMOTE};
    checkpoint_pair(&p, "get_state@6=EIO", 0);
    TEST_ASSERT(p.sj.err == EIO, "the source's save fails (%d)", p.sj.err);
    TEST_ASSERT(p.lost_calls == 1, "the backup lost its source");
    TEST_ASSERT(!p.rj.err && p.dst, "the promoted backup runs (%d)", p.rj.err);
    assert_restored(p.dst, 1); /* exactly a complete epoch */
    assert_left(p.src, "the source after its save failed", 0);
    destroy(p.dst);
    destroy(p.src);
    fprintf(stderr, "   the source fails at epoch 5: the promoted backup runs "
                    "the last complete epoch\n");

    /* The backup fails writing an epoch, two thirds into the run: it
     * leaves its source, which runs on unprotected; promoted, it runs the
     * last complete epoch, never the torn one; cancelled, nothing is
     * left. */
    for (int decide = DECIDE_PROMOTE; decide <= DECIDE_CANCEL; decide++) {
        p = (struct pair){.decide = decide};
        snprintf(spec, sizeof(spec), "write_frames@%u=EIO", writes * 2 / 3 + 1);
        checkpoint_pair(&p, spec, 0);
        TEST_ASSERT(p.lost_calls == 1 && p.lost_err == EIO,
                    "%s: the backup failed by itself (%d)", spec, p.lost_err);
        TEST_ASSERT(p.sj.err && p.backup_lost == 1,
                    "%s: the source lost its backup (%s)", spec,
                    strerror(p.sj.err));
        assert_left(p.src, "the source that lost its backup", 0);
        if (decide == DECIDE_PROMOTE) {
            TEST_ASSERT(!p.rj.err && p.dst, "%s: promoted, it runs (%d)", spec,
                        p.rj.err);
            assert_restored(p.dst, 1);
            destroy(p.dst);
        } else {
            TEST_ASSERT(p.rj.err == ECANCELED && !p.dst, "%s: stood down (%d)",
                        spec, p.rj.err);
        }
        destroy(p.src);
        fprintf(stderr, "   %s at the backup, %s: %s\n", spec,
                decide == DECIDE_PROMOTE ? "promoted" : "cancelled",
                decide == DECIDE_PROMOTE ? "runs the last complete epoch"
                                         : "nothing left");
    }

    /* The backup stalls 1.5 s writing an epoch (a stuck host), three
     * times the peer timeout: the source gives it up and runs on
     * unprotected; the backup, its stream gone when it wakes, stands
     * down. */
    p = (struct pair){.decide = DECIDE_CANCEL};
    snprintf(spec, sizeof(spec), "write_frames@%u=stall:1500",
             writes * 2 / 3 + 1);
    watch_loop(&w);
    checkpoint_pair(&p, spec, 0);
    event_free(w.ev);
    TEST_ASSERT(p.sj.err && p.backup_lost == 1,
                "%s: the source gave its backup up (%s)", spec,
                strerror(p.sj.err));
    /* Nothing the source sends (the epoch, heartbeats) waits on the
     * loop for the stalled backup. */
    TEST_ASSERT(w.max_gap < 300000000ull,
                "%s: the loop ran meanwhile (longest gap %.0f ms)", spec,
                w.max_gap / 1e6);
    TEST_ASSERT(p.rj.err == ECANCELED && !p.dst,
                "%s: the backup stood down (%d)", spec, p.rj.err);
    assert_left(p.src, "the source whose backup stalled", 0);
    destroy(p.src);
    fprintf(stderr, "   %s at the backup: the source runs on unprotected\n",
            spec);

    /* The backup cannot load the state after END: the source, told so,
     * runs on; nothing is left at the backup. */
    p = (struct pair){.decide = DECIDE_CANCEL};
    checkpoint_pair(&p, "set_state@1=EIO", 5);
    TEST_ASSERT(p.rj.err == EIO && !p.dst, "the backup fails (%d)", p.rj.err);
    TEST_ASSERT(p.sj.err, "the source's save fails");
    assert_left(p.src, "the source whose backup failed at END", 0);
    destroy(p.src);
    fprintf(stderr, "   set_state failing after END: the source runs on\n");
    TEST_ASSERT(xtk__fake_count() == n, "no domain left");
    /* A source whose save failed between epochs runs already: it is not
     * resumed again (on KVM a second notification to a guest not yet
     * out of its suspend was taken, once it ran, for a new request, and
     * left it suspended for good). */
    TEST_ASSERT(xtk__fake_counts().idle_resumes == idle,
                "%u resume(s) of a running source",
                xtk__fake_counts().idle_resumes - idle);
}

/*
 * Output held by a backend that holds one closed epoch at a time (Xen's
 * plug): with a backup slower than the interval, each stop waits for the
 * acknowledgement of the epoch before, and no stop or release ever goes
 * beyond the depth (the fake counts it); with any depth, nothing waits.
 * A release that fails while a stop waits for it fails the save (it
 * would wait for good): the source runs on.
 */
static void output_depth(void)
{
    unsigned int n = xtk__fake_count(), v0 = xtk__fake_output_violations();
    /* Once the backup has acknowledged its first epoch, some of its
     * later writes stall (where the checkpoints' writes start in the
     * count depends on the source's speed: 5 stalls at fixed calls 70-94
     * of the whole run missed every checkpoint once, in an ASan run): the
     * first and every 20th after it (a checkpoint is 1-60 writes), 100 ms
     * each, ten times the 10 ms interval; the peer timeout 3 s, beyond
     * all five in a row (with depth 0 nothing waits for them: 500 ms, the
     * other tests', lost the backup after five 200 ms stalls). */
    static const char slow[] =
        "write_frames@1=stall:100,write_frames@20=stall:100,"
        "write_frames@40=stall:100,write_frames@60=stall:100,"
        "write_frames@80=stall:100";
    struct pair p;

    for (int depth = 1; depth >= 0; depth--) {
        char cmd[64];

        snprintf(cmd, sizeof(cmd), "dirty=2000:256 output=%d", depth);
        p = (struct pair){.faults_acked = slow};
        checkpoint_guest_timeout(&p, cmd, "", 8, 3000);
        TEST_ASSERT(!p.sj.err && !p.rj.err && p.dst,
                    "depth %d: 8 epochs, then END (save %d, backup %d)", depth,
                    p.sj.err, p.rj.err);
        TEST_ASSERT(xtk__fake_output_violations() == v0,
                    "depth %d: %u stops or releases beyond the depth", depth,
                    xtk__fake_output_violations() - v0);
        if (depth)
            TEST_ASSERT(p.stops_waited >= 1,
                        "depth 1: stops waited for an acknowledgement (%llu; "
                        "the backup's later writes %u)",
                        (unsigned long long)p.stops_waited, p.writes);
        else
            TEST_ASSERT(!p.stops_waited, "depth 0: no stop waited (%llu)",
                        (unsigned long long)p.stops_waited);
        assert_restored(p.dst, 1);
        destroy(p.dst);
        fprintf(stderr,
                "   output depth %d, a slow backup: %llu stop(s) "
                "waited, none beyond the depth (%u later writes)\n",
                depth, (unsigned long long)p.stops_waited, p.writes);
    }

    p = (struct pair){.decide = DECIDE_CANCEL};
    checkpoint_guest(&p, "dirty=2000:256 output=1",
                     "write_frames@70=stall:40,output_release@2=EIO", 0);
    TEST_ASSERT(p.sj.err == EIO, "a failed release fails the save (%d)",
                p.sj.err);
    TEST_ASSERT(p.rj.err == ECANCELED && !p.dst, "the backup stood down (%d)",
                p.rj.err);
    assert_left(p.src, "the source whose release failed", 0);
    destroy(p.src);
    TEST_ASSERT(xtk__fake_output_violations() == v0, "no violation");
    TEST_ASSERT(xtk__fake_count() == n, "no domain left");
    fprintf(stderr, "   a failed release (no later epoch can close): the save "
                    "fails, the source runs on\n");
}

/* A restore whose stream (a pipe) stalls half-way: cancel ends it at
 * once, and nothing is left. */
static void cancel_stalled_restore(void)
{
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE};
    struct xtk_domain *dom = source("dirty=5000:1024");
    struct xtk_restore_options ro = {.name = "stalled"};
    struct xtk_restore *rs;
    struct xtk_stream *in;
    struct job j = {0};
    char buf[65536];
    unsigned int n;
    int fd, pp[2];
    ssize_t got;
    uint64_t t;
    struct xtk__fake_status st = {0};

    /* Enough of its memory written that the file (zero pages elided) is
     * over 64 KiB: saved at once, on a loaded host the guest had not run
     * yet (an ASan run, "the file's start"). */
    for (int i = 0; i < 500 && st.writes < 256; i++) {
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        TEST_ASSERT(xtk__fake_status(xtk_domain_id(dom), &st) == 0, "status");
    }
    TEST_ASSERT(save_file(dom, &o) == 0, "a file to restore");
    xtk_domain_close(dom);
    n = xtk__fake_count();
    /* Its first 64 KiB down a pipe whose writer then says nothing. */
    fd = open(img, O_RDONLY | O_CLOEXEC);
    TEST_ASSERT(fd >= 0, "open %s", img);
    got = read(fd, buf, sizeof(buf));
    close(fd);
    TEST_ASSERT(got == (ssize_t)sizeof(buf), "the file's start");
    TEST_ASSERT(pipe(pp) == 0, "pipe");
    TEST_ASSERT(write(pp[1], buf, sizeof(buf)) == (ssize_t)sizeof(buf),
                "into the pipe");
    in = xtk_stream_fd(ctx, pp[0], XTK_STREAM_READ);
    TEST_ASSERT(in, "stream");
    rs = xtk_restore_new(ctx, in, &ro);
    TEST_ASSERT(rs, "restore");
    TEST_ASSERT(xtk_restore_start(rs, restore_done, &j) == 0, "start");
    t = xtk_now_ns() + 100 * 1000 * 1000;
    while (xtk_now_ns() < t) /* it reads what there is, then waits */
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_NONBLOCK);
    TEST_ASSERT(!j.done, "a stalled stream: the restore waits");
    TEST_ASSERT(xtk_restore_cancel(rs) == 0, "cancel");
    while (!j.done)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
    TEST_ASSERT(j.err == ECANCELED, "cancelled (%s)", strerror(j.err));
    TEST_ASSERT(xtk__fake_count() == n, "nothing left");
    xtk_restore_free(rs);
    xtk_stream_close(in);
    close(pp[0]);
    close(pp[1]);
    fprintf(stderr,
            "   a restore stalled on a pipe: cancelled, nothing left\n");

    /* Freed while stalled (the writer still silent): the reader is told
     * to stop, the free waits for it, nothing is left, done is not
     * called. */
    j = (struct job){0};
    TEST_ASSERT(pipe(pp) == 0, "pipe");
    TEST_ASSERT(write(pp[1], buf, sizeof(buf)) == (ssize_t)sizeof(buf),
                "into the pipe");
    in = xtk_stream_fd(ctx, pp[0], XTK_STREAM_READ);
    rs = in ? xtk_restore_new(ctx, in, &ro) : NULL;
    TEST_ASSERT(rs && xtk_restore_start(rs, restore_done, &j) == 0, "start");
    t = xtk_now_ns() + 100 * 1000 * 1000;
    while (xtk_now_ns() < t)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_NONBLOCK);
    TEST_ASSERT(!j.done, "a stalled stream: the restore waits");
    t = xtk_now_ns();
    xtk_restore_free(rs);
    t = xtk_now_ns() - t;
    TEST_ASSERT(t < 5000000000ull,
                "the free did not wait for the stream (%.0f ms)", t / 1e6);
    event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_NONBLOCK);
    TEST_ASSERT(!j.done && xtk__fake_count() == n,
                "freed: no done, nothing left (done %d)", j.done);
    xtk_stream_close(in);
    close(pp[0]);
    close(pp[1]);
    fprintf(stderr,
            "   a restore stalled on a pipe: freed in %.1f ms, nothing left\n",
            t / 1e6);
}

/* A guest slow to leave its last suspend (20 ms, twice the interval):
 * each next request is put off from the loop (suspend_busy) rather than
 * waited for in the backend, and the checkpoints go on. */
static void slow_resume(void)
{
    struct pair p = {0};
    unsigned int w0 = xtk__fake_counts().requests_waited;

    checkpoint_guest(&p, "dirty=2000:256 slowresume=20", "", 6);
    TEST_ASSERT(!p.sj.err && !p.rj.err && p.dst,
                "6 epochs, then END (save %d, backup %d)", p.sj.err, p.rj.err);
    TEST_ASSERT(p.put_off >= 1, "requests put off: %llu",
                (unsigned long long)p.put_off);
    assert_restored(p.dst, 1);
    TEST_ASSERT(xtk__fake_counts().requests_waited == w0,
                "no request waited in the backend (%u)",
                xtk__fake_counts().requests_waited - w0);
    destroy(p.dst);
    fprintf(stderr, "   %llu suspend request(s) put off, none waited\n",
            (unsigned long long)p.put_off);
}

static void bad_fault_lists(void)
{
    const char *bad[] = {"nosuch",      "info@x",          "info=EWHAT",
                         "info=stall:", "info@1=stall:5x", "info=0",
                         "info=late:",  "info@1=late:5x"};

    for (size_t i = 0; i < N(bad); i++)
        TEST_ASSERT_ERRNO(xtk__fake_faults(bad[i]), EINVAL);
    TEST_ASSERT(xtk__fake_faults(
                    "info@2=EIO,pause=stall:1,,resume=5,resume@2=late:1") == 0,
                "a good list");
    TEST_ASSERT(xtk__fake_faults(NULL) == 0, "none");
}

int main(void)
{
    int fds;

    alarm(120); /* a job that never ends fails the test, not the suite */
    xtk__fake_register();
    setenv("XTK_BACKEND", "fake", 1);
    snprintf(img, sizeof(img), "/tmp/xtk-test-fake.%d", (int)getpid());
    /* $XTK_TEST_VERBOSE: the library's warnings and errors on stderr. */
    ctx = xtk_ctx_open(NULL, NULL,
                       getenv("XTK_TEST_VERBOSE") ? 0 : XTK_CTX_SILENT);
    TEST_ASSERT(ctx, "xtk_ctx_open");
    fds = open_fds();
    TEST_RUN(bad_fault_lists);
    TEST_RUN(roundtrip);
    TEST_RUN(migrate);
    TEST_RUN(final_round_off_loop);
    TEST_RUN(save_faults);
    TEST_RUN(restore_faults);
    TEST_RUN(cancel_phases);
    TEST_RUN(setup_off_loop);
    TEST_RUN(end_off_loop);
    TEST_RUN(no_suspend);
    TEST_RUN(slow_resume);
    TEST_RUN(checkpoint_faults);
    TEST_RUN(output_depth);
    TEST_RUN(bandwidth);
    TEST_RUN(cancel_stalled_restore);
    TEST_ASSERT(xtk__fake_count() == 0, "no domain is left (%u)",
                xtk__fake_count());
    TEST_ASSERT(open_fds() == fds, "no descriptor is left open (%d, was %d)",
                open_fds(), fds);
    unlink(img);
    xtk_ctx_close(ctx);
    return 0;
}

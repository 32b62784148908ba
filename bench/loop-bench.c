/*
 * loop-bench - how long libxtk holds up the caller's event loop.
 *
 * libxtk runs in the caller's libevent loop (xtk_ctx_open() with the
 * caller's event_base).  A management daemon has its own work on that
 * loop; here it is a 1 ms timer, whose lateness (when it fired, less when
 * it was due) is what libxtk's callbacks cost the caller.  First the
 * timer alone for two seconds (the same guests running: the machine's own
 * noise), then with a live migration of one domain and continuous
 * checkpointing of another on the same loop, until both have ended.
 *
 * A lateness is the loop thread either busy or blocked in a callback
 * (libxtk's share, or the timer's own) or waiting for a CPU while it was
 * runnable (the machine's: two cores shared with the guests, their
 * senders and the destinations).  The kernel counts the second per
 * thread (/proc/thread-self/schedstat, time on a runqueue): "held" is the
 * lateness less the loop thread's runqueue wait since the previous
 * firing, i.e. what the loop itself spent past the due time.
 *
 * usage: loop-bench MIG_DOMAIN tcp:HOST:PORT CKPT_DOMAIN tcp:HOST:PORT
 *                   [EPOCHS [INTERVAL_MS]]
 * (xtk-restore listening at both; bench/loop-bench.py sets it all up.)
 * Prints one line per part: fires, lateness p50 / p99 / max (us).
 */
#define _GNU_SOURCE /* SCHED_RESET_ON_FORK */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <xtk/xtk.h>

#define TICK_NS 1000000ull

#define MAX_STALLS 64
#define STALL_NS 1000000ull /* a lateness worth explaining: the target */

struct ticker {
    struct event *ev;
    struct xtk_hist *h, *held;
    int schedstat;   /* the loop thread's /proc/thread-self/schedstat */
    uint64_t waited; /* its runqueue wait (ns) at the previous firing */
    uint64_t due;
    uint64_t fires;
    int record;
    size_t nstalls;
    uint64_t stall_at[MAX_STALLS], stall_ns[MAX_STALLS], stall_held[MAX_STALLS];
};

/* The loop thread's time on a runqueue so far (ns), or 0. */
static uint64_t rq_wait(int fd)
{
    char buf[96];
    uint64_t run, wait;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    if (n <= 0)
        return 0;
    buf[n] = 0;
    return sscanf(buf, "%" SCNu64 " %" SCNu64, &run, &wait) == 2 ? wait : 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct ticker *t = arg;
    uint64_t now = xtk_now_ns();
    uint64_t late = now > t->due ? now - t->due : 0;
    uint64_t w = rq_wait(t->schedstat), dw = w > t->waited ? w - t->waited : 0;

    t->waited = w;
    xtk_hist_record(t->h, late);
    xtk_hist_record(t->held, late > dw ? late - dw : 0);
    t->fires++;
    if (t->record && now > t->due + STALL_NS && t->nstalls < MAX_STALLS) {
        t->stall_at[t->nstalls] = t->due;
        t->stall_held[t->nstalls] = late > dw ? late - dw : 0;
        t->stall_ns[t->nstalls++] = now - t->due;
    }
    /* The next one is due a tick after this firing (a late tick is not
     * made up for: each lateness is one stall of the loop). */
    t->due = now + TICK_NS;
}

static int connect_to(const char *target)
{
    char host[256], *port;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int fd, one = 1;

    if (strncmp(target, "tcp:", 4) ||
        snprintf(host, sizeof(host), "%s", target + 4) >= (int)sizeof(host) ||
        !(port = strrchr(host, ':')))
        return -1;
    *port++ = 0;
    if (getaddrinfo(host, port, &hints, &res))
        return -1;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

struct job {
    struct xtk_domain *dom;
    struct xtk_stream *out;
    struct xtk_save *sv;
    int fd, ended, err;
    uint64_t start_ns; /* xtk_save_start's own time on the loop */
};

static void on_done(struct xtk_save *sv, int err, void *arg)
{
    struct job *j = arg;

    j->ended = 1;
    j->err = err;
}

static int start(struct xtk_ctx *ctx, struct job *j, const char *dom,
                 const char *target, struct xtk_save_options *o)
{
    j->dom = xtk_domain_lookup(ctx, dom);
    j->fd = connect_to(target);
    if (!j->dom || j->fd < 0) {
        fprintf(stderr, "loop-bench: %s -> %s: %s\n", dom, target,
                strerror(errno));
        return -1;
    }
    o->flags |= XTK_SAVE_MIGRATE;
    o->peer_fd = j->fd;
    j->out = xtk_stream_socket(ctx, j->fd, XTK_STREAM_WRITE);
    j->sv = j->out ? xtk_save_new(j->dom, j->out, o) : NULL;
    if (!j->sv) {
        fprintf(stderr, "loop-bench: %s: %s\n", dom, strerror(errno));
        return -1;
    }
    j->start_ns = xtk_now_ns();
    if (xtk_save_start(j->sv, on_done, j) < 0) {
        fprintf(stderr, "loop-bench: %s: %s\n", dom, strerror(errno));
        return -1;
    }
    j->start_ns = xtk_now_ns() - j->start_ns;
    return 0;
}

/* The job's last phase stamped before ns, and how long before. */
static const char *phase_before(struct xtk_save *sv, uint64_t ns, uint64_t *ago)
{
    struct xtk_stats *st = xtk_save_stats(sv);
    const char *best = "(none yet)", *name;
    uint64_t t;

    *ago = 0;
    for (size_t i = 0; i < xtk_stats_phase_count(st); i++)
        if (xtk_stats_phase_get(st, i, &name, &t) == 0 && t <= ns) {
            best = name;
            *ago = ns - t;
        }
    return best;
}

static void report(const char *what, struct ticker *t)
{
    struct xtk_hist_summary s, h;

    xtk_hist_summarize(t->h, &s);
    xtk_hist_summarize(t->held, &h);
    printf("%-34s fires %6llu  lateness us p50 %8.1f  p99 %8.1f  max %9.1f\n",
           what, (unsigned long long)t->fires, s.p50 / 1e3, s.p99 / 1e3,
           s.max / 1e3);
    printf("%-34s              held us     p50 %8.1f  p99 %8.1f  max %9.1f\n",
           "  (less its runqueue wait)", h.p50 / 1e3, h.p99 / 1e3, h.max / 1e3);
}

static void nice_loop(int on)
{
    const char *n = getenv("LOOP_BENCH_NICE");
    const char *f = getenv("LOOP_BENCH_FIFO");

    if (n && *n && setpriority(PRIO_PROCESS, 0, on ? atoi(n) : 0) < 0)
        perror("loop-bench: setpriority");
    if (f && *f) {
        /* The loop thread alone in SCHED_FIFO; the threads it makes (any
         * of libxtk's, at any time) start as SCHED_OTHER: reset on fork. */
        struct sched_param sp = {.sched_priority = on ? atoi(f) : 0};

        if (sched_setscheduler(
                0, on ? SCHED_FIFO | SCHED_RESET_ON_FORK : SCHED_OTHER, &sp) <
            0)
            perror("loop-bench: sched_setscheduler");
    }
}

int main(int argc, char **argv)
{
    struct event_base *base;
    struct timeval tick = {0, 1000};
    struct ticker t = {0};
    struct job mig = {0}, ck = {0};
    struct xtk_save_options mo = {.flags = XTK_SAVE_LIVE};
    struct xtk_save_options co = {.flags = XTK_SAVE_LIVE};
    struct xtk_ctx *ctx;
    uint64_t end;

    if (argc < 5) {
        fprintf(stderr, "usage: loop-bench MIG_DOMAIN tcp:HOST:PORT "
                        "CKPT_DOMAIN tcp:HOST:PORT [EPOCHS [INTERVAL_MS]]\n");
        return 2;
    }
    /* libxtk's threads post to the loop: it must be made locked. */
    if (evthread_use_pthreads() < 0)
        return 1;
    {
        /* A daemon that cares about 1 ms asks for precise timers (libevent
         * reads the coarse clock otherwise: 4 ms ticks here). */
        struct event_config *cfg = event_config_new();

        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    co.checkpoints = argc > 5 ? (uint32_t)atoi(argv[5]) : 100;
    co.checkpoint_interval_ms = argc > 6 ? (uint32_t)atoi(argv[6]) : 25;
    ctx = xtk_ctx_open(NULL, base, 0);
    if (!base || !ctx)
        return 1;
    t.h = xtk_hist_new();
    t.held = xtk_hist_new();
    t.schedstat = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (t.schedstat < 0) {
        perror("loop-bench: /proc/thread-self/schedstat");
        return 1;
    }
    t.waited = rq_wait(t.schedstat);
    /* (for loop-bench.py --trace: the loop thread's system calls) */
    printf("loop thread %d\n", (int)getpid());
    t.ev = event_new(base, -1, EV_PERSIST, on_tick, &t);
    t.due = xtk_now_ns() + TICK_NS;
    event_add(t.ev, &tick);
    /* LOOP_BENCH_NICE=N: the loop thread alone at nice N (Linux: per
     * thread), as a daemon that cares about its latency would run it;
     * libxtk's threads, made while it is 0, keep theirs. */
    nice_loop(1);

    /* The timer alone: the machine's own noise. */
    end = xtk_now_ns() + 2000000000ull;
    while (xtk_now_ns() < end)
        event_base_loop(base, EVLOOP_ONCE);
    report("timer alone", &t);

    xtk_hist_reset(t.h);
    xtk_hist_reset(t.held);
    t.fires = 0;
    nice_loop(0);
    if (start(ctx, &mig, argv[1], argv[2], &mo) < 0 ||
        start(ctx, &ck, argv[3], argv[4], &co) < 0)
        return 1;
    nice_loop(1);
    t.due = xtk_now_ns() + TICK_NS;
    t.record = 1;
    while (!mig.ended || !ck.ended)
        event_base_loop(base, EVLOOP_ONCE);
    report("timer + migration + checkpoints", &t);
    /* Each stall over 1 ms, with what each job had last done when it
     * began (the loop was in that job's next step). */
    for (size_t i = 0; i < t.nstalls; i++) {
        uint64_t a, b;
        const char *pm = phase_before(mig.sv, t.stall_at[i], &a);
        const char *pc = phase_before(ck.sv, t.stall_at[i], &b);

        printf("  stall %6.2f ms (held %.2f): migration after \"%s\" "
               "(+%.2f ms), checkpoints after \"%s\" (+%.2f ms)\n",
               t.stall_ns[i] / 1e6, t.stall_held[i] / 1e6, pm, a / 1e6, pc,
               b / 1e6);
    }
    /* A job's start (its set-up) runs on the caller's loop too: a job
     * started while others run holds them this long. */
    printf("xtk_save_start: migration %.2f ms, checkpoints %.2f ms\n",
           mig.start_ns / 1e6, ck.start_ns / 1e6);
    printf("migration: %s; checkpoints: %s\n",
           mig.err ? strerror(mig.err) : "ok",
           ck.err ? strerror(ck.err) : "ok");
    {
        struct xtk_hist *d =
            xtk_stats_hist(xtk_save_stats(mig.sv), "downtime", "ns");
        struct xtk_hist_summary s;

        if (d && xtk_hist_summarize(d, &s) == 0 && s.count)
            printf("migration downtime %.2f ms\n", s.max / 1e6);
    }
    xtk_save_free(mig.sv);
    xtk_save_free(ck.sv);
    xtk_stream_close(mig.out);
    xtk_stream_close(ck.out);
    close(mig.fd);
    close(ck.fd);
    xtk_domain_close(mig.dom);
    xtk_domain_close(ck.dom);
    event_free(t.ev);
    xtk_hist_free(t.h);
    xtk_hist_free(t.held);
    close(t.schedstat);
    xtk_ctx_close(ctx);
    event_base_free(base);
    return mig.err || ck.err;
}

/*
 * fake.c - the fault-injecting backend (XTK_BACKEND=fake, tests only):
 * guests that are memory and a thread in this process.  See fake.h.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <xtk/stats.h>

#include "../backend.h"
#include "fake.h"

#define XTK_LOG_CONTEXT "fake"

/* The state record: an optional type of its own, which no other backend
 * reads. */
#define FAKE_REC_STATE (XTK__REC_OPTIONAL | 0x0fa4e001u)

struct fake_state {
    uint64_t writes, max_writes;
    uint64_t sum; /* the memory's checksum when the guest stopped */
    uint32_t pps, ws;
    uint32_t nosuspend, nr_vcpus;
};

struct fake_dom {
    struct fake_dom *next;
    uint32_t id;
    char name[XTK_DOMAIN_NAME_MAX + 1];
    uint64_t nr_pages;
    uint32_t nr_vcpus;
    uint8_t *mem;
    uint64_t *dirty; /* the log: set by the guest as it writes */
    uint64_t created_ns;
    unsigned int refs;    /* the registry's (until destroyed) + handles' */
    unsigned int handles; /* open handles */
    unsigned int pauses;  /* pauses held, by any handle */
    int destroyed, empty, suspended, crashed, logging;
    int suspend_wanted; /* requested, not acted on yet */
    int suspend_efd;    /* where the guest says it has suspended */
    /* the guest */
    pthread_t thread;
    int started, stop;
    uint64_t writes, ticks;
    uint64_t max_writes; /* then it writes no more; 0: no end */
    uint32_t pps, ws;
    int nosuspend;
    /* "slowresume=MS": after a resume, the guest leaves its suspended
     * state MS ms later (as a KVM guest on a loaded host runs its resume
     * path late); a suspend request meanwhile waits (suspend_busy says
     * so), as KVM's does */
    uint32_t slow_resume_ms;
    uint64_t busy_until; /* xtk_now_ns() */
    uint64_t check_sum;  /* a loaded state's checksum, for resume */
    int check_pending;
    /* output held in epochs ("output=DEPTH"; -1: it cannot be held): the
     * epochs the stops closed and those released; a stop or release
     * beyond the depth is counted as a violation */
    int out_depth, out_holding;
    uint32_t out_closed, out_released, out_violations;
};

struct fake_handle {
    struct fake_dom *d;
    unsigned int holds, plain; /* pauses this handle took */
    int logging;
    int efd;    /* suspend_setup's */
    int method; /* enum xtk__suspend_method */
    int guard;  /* a suspend asked through this handle, not torn down */
    /* Requests sent ahead: each done at once, its outcome kept for its
     * finish; async_efd (a timerfd) readable while one is answered (the
     * kinds in async; an answer "late" (a fault) is so from due[] on, and
     * its finish waits for it). */
    int async_efd;
    unsigned int async;
    uint64_t due[8]; /* by the kind's bit: CLOCK_MONOTONIC ns, 0: at once */
    int resume_err, dirty_err, release_err, info_err;
    struct xtk_domain_info info; /* info_start's answer */
    uint64_t *dirty_bits, dirty_count, dirty_nbits;
    struct xtk__output released;
    int out_counted; /* this suspend's stop closed an epoch */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xtk__fake_counts g_counts; /* under g_lock */
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static struct fake_dom *g_doms;
static uint32_t g_next_id = 1;
static unsigned int g_out_violations; /* every domain's, destroyed too */

/* ---- faults ---------------------------------------------------------- */

enum fake_op {
    OP_LIST,
    OP_LOOKUP,
    OP_OPEN,
    OP_CREATE,
    OP_INFO,
    OP_PAUSE,
    OP_UNPAUSE,
    OP_DESTROY,
    OP_RENAME,
    OP_MAP_ALL,
    OP_POPULATE,
    OP_WRITE_FRAMES,
    OP_LOGDIRTY_ENABLE,
    OP_LOGDIRTY_READ,
    OP_LOGDIRTY_DISABLE,
    OP_SUSPEND_SETUP,
    OP_SUSPEND_REQUEST,
    OP_SUSPEND_CHECK,
    OP_GET_STATE,
    OP_SET_STATE,
    OP_RESUME,
    OP_OUTPUT_HOLD,
    OP_OUTPUT_RELEASE,
    OP_NR
};

static const char *const op_names[OP_NR] = {
    "list",
    "lookup",
    "open",
    "create",
    "info",
    "pause",
    "unpause",
    "destroy",
    "rename",
    "map_all",
    "populate",
    "write_frames",
    "logdirty_enable",
    "logdirty_read",
    "logdirty_disable",
    "suspend_setup",
    "suspend_request",
    "suspend_check",
    "get_state",
    "set_state",
    "resume",
    "output_hold",
    "output_release",
};

#define FAULTS_MAX 16

struct fault {
    enum fake_op op;
    unsigned int nth; /* 0: every call */
    int err;
    unsigned int stall_ms;
    unsigned int late_ms; /* sent ahead: answered this much later */
};

/* A fault's late answer (late_ms) for the request being sent ahead on this
 * thread (ahead set around the operation by its *_start), for async_put;
 * outside a *_start a late answer is waited for: a stall. */
static __thread int t_ahead;
static __thread unsigned int t_late;

static pthread_mutex_t f_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault f_list[FAULTS_MAX];
static unsigned int f_nr;
static unsigned int f_calls[OP_NR];
static int f_set; /* set by xtk__fake_faults: the environment is not read */

static const struct {
    const char *name;
    int err;
} err_names[] = {
    {"EIO", EIO},       {"ENOMEM", ENOMEM},       {"EINVAL", EINVAL},
    {"EBUSY", EBUSY},   {"ESRCH", ESRCH},         {"ENOENT", ENOENT},
    {"EAGAIN", EAGAIN}, {"ETIMEDOUT", ETIMEDOUT}, {"EFAULT", EFAULT},
    {"ENOSPC", ENOSPC}, {"EPERM", EPERM},         {"ENXIO", ENXIO},
    {"EPIPE", EPIPE},   {"ENOTSUP", ENOTSUP},
};

static int parse_err(const char *s, size_t len, int *err)
{
    char *end;
    long v;

    for (size_t i = 0; i < XTK__ARRAY_SIZE(err_names); i++)
        if (strlen(err_names[i].name) == len &&
            !strncmp(s, err_names[i].name, len)) {
            *err = err_names[i].err;
            return 0;
        }
    v = strtol(s, &end, 10);
    if (end != s + len || v <= 0 || v > 4095)
        return -1;
    *err = (int)v;
    return 0;
}

/* One "OP[@N][=ERR|=stall:MS|=late:MS]" of len bytes. */
static int parse_fault(const char *s, size_t len, struct fault *f)
{
    size_t oplen = strcspn(s, "@=");
    const char *p = s + oplen, *end = s + len;
    char *e;

    if (oplen > len)
        oplen = len, p = end;
    *f = (struct fault){.op = OP_NR, .err = EIO};
    for (int i = 0; i < OP_NR; i++)
        if (strlen(op_names[i]) == oplen && !strncmp(s, op_names[i], oplen))
            f->op = (enum fake_op)i;
    if (f->op == OP_NR)
        return -1;
    if (p < end && *p == '@') {
        unsigned long n = strtoul(p + 1, &e, 10);
        if (e == p + 1 || e > end || n > 1000000)
            return -1;
        f->nth = (unsigned int)n;
        p = e;
    }
    if (p < end && *p == '=') {
        p++;
        size_t k = (size_t)(end - p) > 6 && !strncmp(p, "stall:", 6)  ? 6
                   : (size_t)(end - p) > 5 && !strncmp(p, "late:", 5) ? 5
                                                                      : 0;

        if (k) {
            unsigned long ms = strtoul(p + k, &e, 10);
            if (e != end || e == p + k || ms > 600000)
                return -1;
            if (k == 6)
                f->stall_ms = (unsigned int)ms;
            else
                f->late_ms = (unsigned int)ms;
            f->err = 0;
            p = end;
        } else {
            if (parse_err(p, (size_t)(end - p), &f->err) < 0)
                return -1;
            p = end;
        }
    }
    return p == end ? 0 : -1;
}

static int set_faults(const char *spec)
{
    struct fault list[FAULTS_MAX];
    unsigned int n = 0;
    const char *s = spec ? spec : "";

    while (*s) {
        size_t len = strcspn(s, ",");
        if (len && (n == FAULTS_MAX || parse_fault(s, len, &list[n++]) < 0))
            return xtk__fail(EINVAL);
        s += len;
        if (*s == ',')
            s++;
    }
    memcpy(f_list, list, n * sizeof(list[0]));
    f_nr = n;
    memset(f_calls, 0, sizeof(f_calls));
    return 0;
}

int xtk__fake_faults(const char *spec)
{
    int rc;

    pthread_mutex_lock(&f_lock);
    rc = set_faults(spec);
    if (rc == 0)
        f_set = 1;
    pthread_mutex_unlock(&f_lock);
    return rc;
}

struct xtk__fake_counts xtk__fake_counts(void)
{
    struct xtk__fake_counts c;

    pthread_mutex_lock(&g_lock);
    c = g_counts;
    pthread_mutex_unlock(&g_lock);
    return c;
}

unsigned int xtk__fake_calls(const char *op)
{
    unsigned int n = 0;

    pthread_mutex_lock(&f_lock);
    for (int i = 0; i < OP_NR; i++)
        if (!strcmp(op, op_names[i]))
            n = f_calls[i];
    pthread_mutex_unlock(&f_lock);
    return n;
}

/*
 * Counts a call of op and says whether it fails: 0, or -1 with errno set
 * (and the failure logged as injected).  A stall sleeps here, unlocked.
 */
static int fault(struct xtk_ctx *ctx, enum fake_op op)
{
    unsigned int call, stall = 0, late = 0;
    int err = 0;

    pthread_mutex_lock(&f_lock);
    if (!f_set) {
        const char *env = getenv("XTK_FAKE_FAULTS");
        f_set = 1;
        if (env && set_faults(env) < 0)
            XTK_ERROR(ctx,
                      "XTK_FAKE_FAULTS=%s: not "
                      "OP[@N][=ERR|=stall:MS|=late:MS],...",
                      env);
    }
    call = ++f_calls[op];
    for (unsigned int i = 0; i < f_nr; i++)
        if (f_list[i].op == op && (!f_list[i].nth || f_list[i].nth == call)) {
            stall = f_list[i].stall_ms;
            late = f_list[i].late_ms;
            err = f_list[i].err;
            break;
        }
    pthread_mutex_unlock(&f_lock);
    if (late && t_ahead) {
        XTK_DEBUG(ctx, "%s (call %u): answered %u ms late (injected)",
                  op_names[op], call, late);
        t_late = late;
    } else if (late) {
        stall = late;
    }
    if (stall) {
        struct timespec ts = {stall / 1000, (long)(stall % 1000) * 1000000};
        XTK_DEBUG(ctx, "%s (call %u): stalls %u ms (injected)", op_names[op],
                  call, stall);
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    if (!err)
        return 0;
    XTK_ERROR(ctx, "%s (call %u): fails with %s (injected)", op_names[op], call,
              strerror(err));
    return xtk__fail(err);
}

#define FAULT(ctx, op)                                                         \
    do {                                                                       \
        if (fault((ctx), (op)) < 0)                                            \
            return -1;                                                         \
    } while (0)

/* ---- the guest ------------------------------------------------------- */

static uint64_t checksum(const struct fake_dom *d)
{
    const uint64_t *w = (const uint64_t *)(const void *)d->mem;
    uint64_t n = d->nr_pages << (XTK__PAGE_SHIFT - 3),
             h = 0xcbf29ce484222325ull;

    for (uint64_t i = 0; i < n; i++)
        h = (h ^ w[i] ^ i) * 0x100000001b3ull;
    return h;
}

static int running(const struct fake_dom *d)
{
    return !d->stop && !d->pauses && !d->suspended && !d->empty && !d->crashed;
}

/* Locked.  The guest writes n pages, each a word it has not written yet
 * (its write count), and logs them. */
static void guest_write(struct fake_dom *d, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        uint64_t pfn = (d->writes * 2654435761ull) % d->ws;
        uint64_t *page =
            (uint64_t *)(void *)(d->mem + (pfn << XTK__PAGE_SHIFT));
        page[d->writes % (XTK__PAGE_SIZE / 8)] = d->writes + 1;
        d->dirty[pfn / 64] |= 1ull << (pfn % 64);
        d->writes++;
    }
}

static void *guest_main(void *arg)
{
    struct fake_dom *d = arg;
    unsigned int acc = 0;
    struct timespec ts;

    pthread_mutex_lock(&g_lock);
    while (!d->stop) {
        if (!running(d)) {
            pthread_cond_wait(&g_cond, &g_lock);
            continue;
        }
        if (d->suspend_wanted && !d->nosuspend) {
            uint64_t one = 1;
            d->suspend_wanted = 0;
            d->suspended = 1;
            if (d->suspend_efd >= 0 &&
                write(d->suspend_efd, &one, sizeof(one)) != sizeof(one))
                abort(); /* an eventfd write cannot fail */
            continue;
        }
        d->ticks++;
        acc += d->pps;
        if (d->max_writes && d->writes + acc / 1000 > d->max_writes)
            acc = (unsigned int)(d->max_writes - d->writes) * 1000;
        guest_write(d, acc / 1000);
        acc %= 1000;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&g_cond, &g_lock, &ts);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* Locked: starts the guest's thread once. */
static int guest_start(struct fake_dom *d)
{
    int e;

    if (d->started)
        return 0;
    e = pthread_create(&d->thread, NULL, guest_main, d);
    if (e)
        return xtk__fail(e);
    d->started = 1;
    return 0;
}

/* ---- the registry ---------------------------------------------------- */

static struct fake_dom *find_id(uint32_t id)
{
    for (struct fake_dom *d = g_doms; d; d = d->next)
        if (d->id == id)
            return d;
    return NULL;
}

static struct fake_dom *find_name(const char *name)
{
    for (struct fake_dom *d = g_doms; d; d = d->next)
        if (!strcmp(d->name, name))
            return d;
    return NULL;
}

/* Locked: drops a reference, freeing the domain with the last. */
static void dom_put(struct fake_dom *d)
{
    if (--d->refs)
        return;
    munmap(d->mem, d->nr_pages << XTK__PAGE_SHIFT);
    free(d->dirty);
    free(d);
}

static void fill_info(const struct fake_dom *d, struct xtk_domain_info *info)
{
    memset(info, 0, sizeof(*info));
    info->domid = d->id;
    info->nr_vcpus = d->nr_vcpus;
    info->nr_pages = d->nr_pages;
    info->flags = (d->pauses ? XTK_DOMINFO_PAUSED : 0) |
                  (d->suspended ? XTK_DOMINFO_SUSPENDED : 0) |
                  (d->empty ? XTK_DOMINFO_EMPTY : 0) |
                  (d->logging ? XTK_DOMINFO_LOGDIRTY : 0) |
                  (d->crashed ? XTK_DOMINFO_CRASHED : 0);
    info->uptime_ns = xtk_now_ns() - d->created_ns;
    snprintf(info->name, sizeof(info->name), "%s", d->name);
}

unsigned int xtk__fake_output_violations(void)
{
    unsigned int n;

    pthread_mutex_lock(&g_lock);
    n = g_out_violations;
    pthread_mutex_unlock(&g_lock);
    return n;
}

int xtk__fake_status(uint32_t domid, struct xtk__fake_status *st)
{
    struct fake_dom *d;
    struct xtk_domain_info info;

    pthread_mutex_lock(&g_lock);
    d = find_id(domid);
    if (d) {
        fill_info(d, &info);
        *st = (struct xtk__fake_status){
            .writes = d->writes,
            .ticks = d->ticks,
            .flags = info.flags,
            .logging = d->logging,
            .suspend_wanted = d->suspend_wanted,
            .handles = d->handles,
            .pauses = d->pauses,
            .out_closed = d->out_closed,
            .out_released = d->out_released,
            .out_violations = d->out_violations,
        };
    }
    pthread_mutex_unlock(&g_lock);
    return d ? 0 : xtk__fail(ENOENT);
}

unsigned int xtk__fake_count(void)
{
    unsigned int n = 0;

    pthread_mutex_lock(&g_lock);
    for (struct fake_dom *d = g_doms; d; d = d->next)
        n++;
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* ---- discovery ------------------------------------------------------- */

static int fake_list(struct xtk_ctx *ctx, struct xtk_domain_info **infos,
                     size_t *nr)
{
    size_t n = 0;

    FAULT(ctx, OP_LIST);
    pthread_mutex_lock(&g_lock);
    for (struct fake_dom *d = g_doms; d; d = d->next)
        n++;
    *infos = calloc(n ? n : 1, sizeof(**infos));
    if (!*infos) {
        pthread_mutex_unlock(&g_lock);
        return -1;
    }
    n = 0;
    for (struct fake_dom *d = g_doms; d; d = d->next)
        fill_info(d, &(*infos)[n++]);
    pthread_mutex_unlock(&g_lock);
    *nr = n;
    return 0;
}

static int fake_lookup(struct xtk_ctx *ctx, const char *name, uint32_t *domid)
{
    struct fake_dom *d;

    FAULT(ctx, OP_LOOKUP);
    pthread_mutex_lock(&g_lock);
    d = find_name(name);
    if (d)
        *domid = d->id;
    pthread_mutex_unlock(&g_lock);
    return d ? 0 : xtk__fail(ENOENT);
}

/* ---- the handle ------------------------------------------------------ */

static struct fake_handle *handle_new(struct xtk_domain *dom,
                                      struct fake_dom *d)
{
    struct fake_handle *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->d = d;
    h->efd = h->async_efd = -1;
    d->refs++;
    d->handles++;
    dom->priv = h;
    dom->domid = d->id;
    return h;
}

static int fake_open(struct xtk_domain *dom)
{
    struct fake_dom *d;
    int rc = 0;

    FAULT(dom->ctx, OP_OPEN);
    pthread_mutex_lock(&g_lock);
    d = find_id(dom->domid);
    if (!d)
        rc = xtk__fail(ENOENT);
    else if (!handle_new(dom, d))
        rc = -1;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* "dirty=PPS[:WS[:TOTAL]]", "nosuspend", "slowresume=MS" and
 * "output=DEPTH", separated by spaces. */
static int parse_cmdline(struct xtk_ctx *ctx, const char *cmdline,
                         struct fake_dom *d)
{
    const char *s = cmdline ? cmdline : "";

    d->pps = 1000;
    d->ws = 1024;
    d->out_depth = -1;
    while (*s) {
        size_t len = strcspn(s, " ");
        char *end;
        if (len > 6 && !strncmp(s, "dirty=", 6)) {
            unsigned long pps = strtoul(s + 6, &end, 10), ws = d->ws;
            unsigned long long total = 0;
            if (*end == ':')
                ws = strtoul(end + 1, &end, 10);
            if (*end == ':')
                total = strtoull(end + 1, &end, 10);
            if (end != s + len || pps > 10000000 || !ws || ws > UINT32_MAX)
                goto bad;
            d->pps = (uint32_t)pps;
            d->ws = (uint32_t)ws;
            d->max_writes = total;
        } else if (len == 9 && !strncmp(s, "nosuspend", 9)) {
            d->nosuspend = 1;
        } else if (len > 11 && !strncmp(s, "slowresume=", 11)) {
            unsigned long ms = strtoul(s + 11, &end, 10);
            if (end != s + len || ms > 10000)
                goto bad;
            d->slow_resume_ms = (uint32_t)ms;
        } else if (len > 7 && !strncmp(s, "output=", 7)) {
            unsigned long depth = strtoul(s + 7, &end, 10);
            if (end != s + len || depth > 64)
                goto bad;
            d->out_depth = (int)depth;
        } else if (len) {
            goto bad;
        }
        s += len;
        while (*s == ' ')
            s++;
    }
    if (d->ws > d->nr_pages)
        d->ws = (uint32_t)d->nr_pages;
    return 0;
bad:
    XTK_ERROR(ctx,
              "the fake guest's command line '%s': "
              "'dirty=PAGES_PER_S[:WORKING_SET[:TOTAL]]', "
              "'nosuspend', 'slowresume=MS' and 'output=DEPTH' only",
              cmdline);
    return xtk__fail(EINVAL);
}

static int fake_create(struct xtk_domain *dom,
                       const struct xtk_domain_config *cfg, unsigned int flags)
{
    struct fake_dom *d;
    uint64_t mib = cfg->memory_mib ? cfg->memory_mib : 64;
    int rc = -1;

    FAULT(dom->ctx, OP_CREATE);
    if (cfg->kernel) {
        XTK_ERROR(dom->ctx, "the fake backend boots no kernel (%s)",
                  cfg->kernel);
        return xtk__fail(ENOENT);
    }
    if (mib > 4096 || cfg->nr_vcpus > 64 ||
        (cfg->name && strlen(cfg->name) > XTK_DOMAIN_NAME_MAX))
        return xtk__fail(EINVAL);
    d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->nr_pages = mib << (20 - XTK__PAGE_SHIFT);
    d->nr_vcpus = cfg->nr_vcpus ? cfg->nr_vcpus : 1;
    d->suspend_efd = -1;
    d->refs = 1;
    d->created_ns = xtk_now_ns();
    d->empty = !!(flags & XTK__CREATE_EMPTY);
    d->pauses = (cfg->flags & XTK_DOMCFG_PAUSED) ? 1 : 0;
    if (parse_cmdline(dom->ctx, cfg->cmdline, d) < 0) {
        free(d);
        return -1;
    }
    d->mem = mmap(NULL, d->nr_pages << XTK__PAGE_SHIFT, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    d->dirty = calloc((d->nr_pages + 63) / 64, sizeof(uint64_t));
    if (d->mem == MAP_FAILED || !d->dirty) {
        if (d->mem != MAP_FAILED)
            munmap(d->mem, d->nr_pages << XTK__PAGE_SHIFT);
        free(d->dirty);
        free(d);
        return xtk__fail(ENOMEM);
    }
    pthread_mutex_lock(&g_lock);
    d->id = g_next_id++;
    if (cfg->name)
        snprintf(d->name, sizeof(d->name), "%s", cfg->name);
    else
        snprintf(d->name, sizeof(d->name), "domain-%" PRIu32, d->id);
    if (find_name(d->name)) {
        errno = EEXIST;
    } else if ((d->empty || guest_start(d) == 0) && handle_new(dom, d)) {
        d->next = g_doms;
        g_doms = d;
        rc = 0;
    }
    if (rc < 0) {
        int e = errno;
        d->stop = 1;
        pthread_cond_broadcast(&g_cond);
        pthread_mutex_unlock(&g_lock);
        if (d->started)
            pthread_join(d->thread, NULL);
        munmap(d->mem, d->nr_pages << XTK__PAGE_SHIFT);
        free(d->dirty);
        free(d);
        return xtk__fail(e);
    }
    pthread_mutex_unlock(&g_lock);
    return 0;
}

/* Locked: what a handle holds is let go (close, or the end of a suspend). */
static void release_suspend(struct fake_handle *h)
{
    if (h->d->suspend_efd == h->efd)
        h->d->suspend_efd = -1;
    if (h->efd >= 0)
        close(h->efd);
    h->efd = -1;
}

static void fake_close(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d = h->d;

    pthread_mutex_lock(&g_lock);
    d->pauses -= h->holds < d->pauses ? h->holds : d->pauses;
    if (h->logging)
        d->logging = 0;
    if (h->guard) {
        /* The save that asked died: the guest is not left suspended. */
        d->suspend_wanted = 0;
        d->suspended = 0;
    }
    release_suspend(h);
    if (h->async_efd >= 0)
        close(h->async_efd);
    free(h->dirty_bits);
    d->handles--;
    dom_put(d);
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
    free(h);
    dom->priv = NULL;
}

/* Locked: the handle's domain, unless destroyed (ESRCH). */
static struct fake_dom *live(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;

    if (h->d->destroyed)
        return xtk__fail_null(ESRCH);
    return h->d;
}

/* ---- control --------------------------------------------------------- */

static int fake_info(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    struct fake_dom *d;

    FAULT(dom->ctx, OP_INFO);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d)
        fill_info(d, info);
    pthread_mutex_unlock(&g_lock);
    return d ? 0 : -1;
}

static int fake_pause(struct xtk_domain *dom, unsigned int flags)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;

    FAULT(dom->ctx, OP_PAUSE);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d) {
        /* The guest writes only under the lock: once this returns, it is
         * stopped. */
        d->pauses++;
        if (flags & XTK__PAUSE_HOLD)
            h->holds++;
        else
            h->plain++;
    }
    pthread_mutex_unlock(&g_lock);
    return d ? 0 : -1;
}

static int fake_unpause(struct xtk_domain *dom, unsigned int flags)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;

    FAULT(dom->ctx, OP_UNPAUSE);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d) {
        unsigned int mine = h->holds + h->plain;
        d->pauses = (flags & XTK__UNPAUSE_FORCE) || mine >= d->pauses
                        ? 0
                        : d->pauses - mine;
        h->holds = h->plain = 0;
        pthread_cond_broadcast(&g_cond);
    }
    pthread_mutex_unlock(&g_lock);
    return d ? 0 : -1;
}

static int fake_destroy(struct xtk_domain *dom)
{
    struct fake_dom *d, **pp;
    int started;

    FAULT(dom->ctx, OP_DESTROY);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (!d) {
        pthread_mutex_unlock(&g_lock);
        return -1;
    }
    for (pp = &g_doms; *pp != d; pp = &(*pp)->next)
        ;
    *pp = d->next;
    d->destroyed = 1;
    d->stop = 1;
    d->logging = 0;
    started = d->started;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
    if (started)
        pthread_join(d->thread, NULL);
    pthread_mutex_lock(&g_lock);
    dom_put(d); /* the registry's */
    pthread_mutex_unlock(&g_lock);
    return 0;
}

static int fake_rename(struct xtk_domain *dom, const char *name)
{
    struct fake_dom *d, *other;
    int rc = -1;

    FAULT(dom->ctx, OP_RENAME);
    if (!name || !*name || strlen(name) > XTK_DOMAIN_NAME_MAX)
        return xtk__fail(EINVAL);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    other = find_name(name);
    if (d && other && other != d)
        errno = EEXIST;
    else if (d) {
        snprintf(d->name, sizeof(d->name), "%s", name);
        rc = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- memory ---------------------------------------------------------- */

static void *fake_map_all(struct xtk_domain *dom, int prot)
{
    struct fake_handle *h = dom->priv;

    (void)prot;
    if (fault(dom->ctx, OP_MAP_ALL) < 0)
        return NULL;
    /* The domain's memory lives as long as a handle on it. */
    return h->d->mem;
}

static int fake_populate(struct xtk_domain *dom, const uint64_t *pfns,
                         unsigned int nr)
{
    struct fake_handle *h = dom->priv;

    FAULT(dom->ctx, OP_POPULATE);
    for (unsigned int i = 0; i < nr; i++)
        if (pfns[i] >= h->d->nr_pages)
            return xtk__fail(EINVAL);
    return 0;
}

static int fake_write_frames(struct xtk_domain *dom, uint64_t pfn,
                             unsigned int nr, const void *buf)
{
    struct fake_handle *h = dom->priv;

    FAULT(dom->ctx, OP_WRITE_FRAMES);
    if (pfn >= h->d->nr_pages || nr > h->d->nr_pages - pfn)
        return xtk__fail(EINVAL);
    memcpy(h->d->mem + (pfn << XTK__PAGE_SHIFT), buf,
           (size_t)nr << XTK__PAGE_SHIFT);
    return 0;
}

/* ---- dirty log ------------------------------------------------------- */

static int stopped(const struct fake_dom *d)
{
    return d->pauses || d->suspended || d->empty;
}

static int fake_logdirty_enable(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;
    int rc = -1;

    FAULT(dom->ctx, OP_LOGDIRTY_ENABLE);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d && d->logging && !h->logging)
        errno = EBUSY;
    else if (d) {
        memset(d->dirty, 0, (d->nr_pages + 63) / 64 * sizeof(uint64_t));
        d->logging = h->logging = 1;
        rc = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_logdirty_read(struct xtk_domain *dom, unsigned int flags,
                              uint64_t *bitmap, uint64_t nr_bits,
                              uint64_t *dirty_count)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;
    uint64_t words, n = 0;
    int rc = -1;

    FAULT(dom->ctx, OP_LOGDIRTY_READ);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (!d)
        goto out;
    words = (d->nr_pages + 63) / 64;
    if (!h->logging || nr_bits < d->nr_pages) {
        errno = EINVAL;
        goto out;
    }
    if ((flags & XTK__LOGDIRTY_FINAL) && !stopped(d)) {
        errno = EBUSY;
        goto out;
    }
    memset(bitmap, 0, (nr_bits + 63) / 64 * sizeof(uint64_t));
    memcpy(bitmap, d->dirty, words * sizeof(uint64_t));
    memset(d->dirty, 0, words * sizeof(uint64_t));
    for (uint64_t i = 0; i < words; i++)
        n += (uint64_t)__builtin_popcountll(bitmap[i]);
    *dirty_count = n;
    rc = 0;
out:
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_logdirty_disable(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;

    FAULT(dom->ctx, OP_LOGDIRTY_DISABLE);
    pthread_mutex_lock(&g_lock);
    if (h->logging)
        h->d->logging = h->logging = 0;
    pthread_mutex_unlock(&g_lock);
    return 0;
}

/* ---- suspend --------------------------------------------------------- */

static int fake_suspend_setup(struct xtk_domain *dom,
                              enum xtk__suspend_method method, int *fd)
{
    struct fake_handle *h = dom->priv;
    int rc = -1;

    FAULT(dom->ctx, OP_SUSPEND_SETUP);
    if (method == XTK__SUSPEND_XL) {
        XTK_ERROR(dom->ctx, "a fake guest has no store to watch");
        return xtk__fail(ENOTSUP);
    }
    pthread_mutex_lock(&g_lock);
    if (live(dom)) {
        release_suspend(h);
        h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (h->efd >= 0) {
            h->method = method;
            *fd = h->efd;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_suspend_busy(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;
    int busy;

    pthread_mutex_lock(&g_lock);
    d = live(dom);
    busy = d && h->method != XTK__SUSPEND_PAUSE && xtk_now_ns() < d->busy_until;
    pthread_mutex_unlock(&g_lock);
    return busy;
}

static int fake_suspend_request(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;
    uint64_t one = 1;
    int rc = -1;

    FAULT(dom->ctx, OP_SUSPEND_REQUEST);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d && h->method != XTK__SUSPEND_PAUSE) {
        /* As KVM's: a guest still in its last suspend is waited for. */
        uint64_t now;
        int waited = 0;

        while (d && (now = xtk_now_ns()) < d->busy_until) {
            uint64_t left = d->busy_until - now;
            struct timespec ts = {(time_t)(left / 1000000000u),
                                  (long)(left % 1000000000u)};

            waited = 1;
            pthread_mutex_unlock(&g_lock);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&g_lock);
            d = live(dom);
        }
        if (waited)
            g_counts.requests_waited++;
    }
    if (d && h->efd < 0) {
        errno = EINVAL;
    } else if (d) {
        h->guard = 1;
        h->out_counted = 0;
        if (h->method == XTK__SUSPEND_PAUSE) {
            d->pauses++;
            h->holds++;
            if (write(h->efd, &one, sizeof(one)) != sizeof(one))
                abort();
        } else {
            d->suspend_wanted = 1;
            d->suspend_efd = h->efd;
            pthread_cond_broadcast(&g_cond);
        }
        rc = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_suspend_check(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;
    uint64_t v;
    int rc = -1;

    FAULT(dom->ctx, OP_SUSPEND_CHECK);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d) {
        if (h->efd >= 0 && read(h->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            XTK_PERROR(dom->ctx, "read the suspend eventfd");
        rc = h->method == XTK__SUSPEND_PAUSE ? d->pauses > 0 : d->suspended;
        if (rc == 1 && d->out_holding && !h->out_counted) {
            /* The stop closes an epoch of output. */
            h->out_counted = 1;
            dom->output_epoch = ++d->out_closed;
            if (d->out_depth &&
                d->out_closed - d->out_released > (uint32_t)d->out_depth)
                d->out_violations++, g_out_violations++;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static void fake_suspend_teardown(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;

    pthread_mutex_lock(&g_lock);
    if (h->d->suspend_efd == h->efd)
        h->d->suspend_wanted = 0;
    release_suspend(h);
    h->guard = 0;
    pthread_mutex_unlock(&g_lock);
}

/* ---- state ----------------------------------------------------------- */

static int fake_get_state(struct xtk_domain *dom, void **buf, size_t *len)
{
    struct fake_dom *d;
    struct fake_state s;
    size_t cap = 0;
    int rc = -1;

    FAULT(dom->ctx, OP_GET_STATE);
    *buf = NULL;
    *len = 0;
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d && !stopped(d))
        errno = EBUSY;
    else if (d) {
        s = (struct fake_state){
            .writes = d->writes,
            .max_writes = d->max_writes,
            .sum = checksum(d),
            .pps = d->pps,
            .ws = d->ws,
            .nosuspend = (uint32_t)d->nosuspend,
            .nr_vcpus = d->nr_vcpus,
        };
        rc = xtk__rec_append(buf, len, &cap, FAKE_REC_STATE, &s, sizeof(s),
                             NULL, 0);
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_set_state(struct xtk_domain *dom, const void *buf, size_t len)
{
    struct fake_dom *d;
    struct fake_state s;
    size_t off = 0;
    uint32_t type, length;
    const void *body;
    int r, found = 0, rc = -1;

    FAULT(dom->ctx, OP_SET_STATE);
    while ((r = xtk__rec_next(buf, len, &off, &type, &body, &length)) == 1) {
        if (type != FAKE_REC_STATE)
            continue; /* another backend's */
        if (length != sizeof(s)) {
            XTK_ERROR(dom->ctx, "a fake state record of %" PRIu32 " bytes",
                      length);
            return xtk__fail(EINVAL);
        }
        memcpy(&s, body, sizeof(s));
        found = 1;
    }
    if (r < 0) {
        XTK_ERROR(dom->ctx, "malformed state records");
        return xtk__fail(EINVAL);
    }
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d && !stopped(d))
        errno = EBUSY;
    else if (d && found &&
             (s.nr_vcpus != d->nr_vcpus || !s.ws || s.ws > d->nr_pages)) {
        XTK_ERROR(dom->ctx,
                  "the state is for %" PRIu32 " vCPUs and a working set of "
                  "%" PRIu32 " frames; the domain has %" PRIu32 " and %" PRIu64,
                  s.nr_vcpus, s.ws, d->nr_vcpus, d->nr_pages);
        errno = EINVAL;
    } else if (d) {
        if (found) {
            d->writes = s.writes;
            d->max_writes = s.max_writes;
            d->pps = s.pps;
            d->ws = s.ws;
            d->nosuspend = (int)s.nosuspend;
            d->check_sum = s.sum;
            d->check_pending = 1;
        }
        rc = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_resume(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    struct fake_dom *d;
    int rc = -1;

    FAULT(dom->ctx, OP_RESUME);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d) {
        if (d->check_pending && checksum(d) != d->check_sum) {
            /* The guest's own check of the memory it was restored with. */
            XTK_ERROR(dom->ctx,
                      "fake domain %" PRIu32 ": its memory is not what it "
                      "was when its state was taken: the guest crashed",
                      d->id);
            d->crashed = 1;
        }
        if (!d->suspended && !d->pauses && !d->empty && !d->suspend_wanted)
            g_counts.idle_resumes++; /* nothing to resume or call off */
        d->check_pending = 0;
        d->empty = 0;
        if (d->suspended && d->slow_resume_ms)
            d->busy_until = xtk_now_ns() + d->slow_resume_ms * 1000000ull;
        d->suspended = 0;
        d->suspend_wanted = 0;
        d->pauses = 0;
        h->holds = h->plain = 0;
        rc = guest_start(d);
        if (rc == 0)
            dom->resumed_ns = xtk_now_ns();
        pthread_cond_broadcast(&g_cond);
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- requests sent ahead ------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned int kind_bit(unsigned int kind)
{
    return (unsigned int)__builtin_ctz(kind) & 7u;
}

/* The timerfd set to fire at the first answer due among those out (at
 * once for one due already), or stopped with none out. */
static void async_arm(struct fake_handle *h)
{
    struct itimerspec it = {{0, 0}, {0, 0}};
    uint64_t v, first = UINT64_MAX;

    (void)!read(h->async_efd, &v, sizeof(v)); /* (EAGAIN: none pending) */
    for (unsigned int k = 0; k < 8; k++)
        if ((h->async >> k) & 1 && h->due[k] < first)
            first = h->due[k];
    if (first != UINT64_MAX) {
        if (!first)
            first = 1; /* long past: fires at once */
        it.it_value.tv_sec = (time_t)(first / 1000000000ull);
        it.it_value.tv_nsec = (long)(first % 1000000000ull);
    }
    if (timerfd_settime(h->async_efd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
        abort();
}

/* An outcome is in for kind (or, a late answer injected, will be): the
 * timerfd says so until it is taken. */
static int async_put(struct fake_handle *h, unsigned int kind, int *fd)
{
    unsigned int late = t_late;

    t_late = 0;
    if (h->async & kind)
        return xtk__fail(EBUSY);
    if (h->async_efd < 0)
        h->async_efd =
            timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (h->async_efd < 0)
        return -1;
    h->async |= kind;
    h->due[kind_bit(kind)] = late ? mono_ns() + late * 1000000ull : 0;
    async_arm(h);
    *fd = h->async_efd;
    return 0;
}

/* kind's outcome taken (ENOENT: none was asked for); one answered late is
 * waited for, as a real backend's finish waits for its answer. */
static int async_take(struct fake_handle *h, unsigned int kind, int err)
{
    uint64_t due, now;

    if (!(h->async & kind))
        return xtk__fail(ENOENT);
    due = h->due[kind_bit(kind)];
    while ((now = mono_ns()) < due) {
        struct timespec ts = {(time_t)((due - now) / 1000000000ull),
                              (long)((due - now) % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
    h->async &= ~kind;
    async_arm(h);
    return err ? xtk__fail(err) : 0;
}

static unsigned int fake_async_ready(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;
    unsigned int ready = 0;
    uint64_t now = mono_ns();

    for (unsigned int k = 0; k < 8; k++)
        if ((h->async >> k) & 1 && h->due[k] <= now)
            ready |= 1u << k;
    return ready;
}

/* The stop is done at once: its outcome goes as an answer sent ahead. */
static int fake_suspend_check_ahead(struct xtk_domain *dom, int *fd)
{
    struct fake_handle *h = dom->priv;
    int r;

    if (h->async & XTK__ASYNC_STOP)
        return xtk__fail(EBUSY);
    t_ahead = 1;
    r = fake_suspend_check(dom);
    t_ahead = 0;
    if (r != 1) {
        t_late = 0; /* nothing goes ahead */
        return r;
    }
    return async_put(h, XTK__ASYNC_STOP, fd) < 0 ? -1 : 2;
}

static int fake_stop_finish(struct xtk_domain *dom)
{
    return async_take(dom->priv, XTK__ASYNC_STOP, 0);
}

static int fake_resume_start(struct xtk_domain *dom, int *fd)
{
    struct fake_handle *h = dom->priv;

    if (h->async & XTK__ASYNC_RESUME)
        return xtk__fail(EBUSY);
    t_ahead = 1;
    h->resume_err = fake_resume(dom) < 0 ? errno : 0;
    t_ahead = 0;
    return async_put(h, XTK__ASYNC_RESUME, fd);
}

static int fake_resume_finish(struct xtk_domain *dom)
{
    struct fake_handle *h = dom->priv;

    if (!(h->async & XTK__ASYNC_RESUME))
        return 0;
    return async_take(h, XTK__ASYNC_RESUME, h->resume_err);
}

/* The read is done at the start, into the handle's own bitmap. */
static int fake_logdirty_start(struct xtk_domain *dom, unsigned int flags,
                               int *fd)
{
    struct fake_handle *h = dom->priv;
    uint64_t nbits;

    if (h->async & XTK__ASYNC_DIRTY)
        return xtk__fail(EBUSY);
    pthread_mutex_lock(&g_lock);
    nbits = h->d->nr_pages;
    pthread_mutex_unlock(&g_lock);
    if (!h->dirty_bits || h->dirty_nbits < nbits) {
        uint64_t *b = calloc((nbits + 63) / 64, sizeof(uint64_t));

        if (!b)
            return -1;
        free(h->dirty_bits);
        h->dirty_bits = b;
        h->dirty_nbits = nbits;
    }
    t_ahead = 1;
    h->dirty_err = fake_logdirty_read(dom, flags, h->dirty_bits, h->dirty_nbits,
                                      &h->dirty_count) < 0
                       ? errno
                       : 0;
    t_ahead = 0;
    return async_put(h, XTK__ASYNC_DIRTY, fd);
}

/* Asked at the start; the answer taken at the finish. */
static int fake_info_start(struct xtk_domain *dom, int *fd)
{
    struct fake_handle *h = dom->priv;

    if (h->async & XTK__ASYNC_INFO)
        return xtk__fail(EBUSY);
    t_ahead = 1;
    h->info_err = fake_info(dom, &h->info) < 0 ? errno : 0;
    t_ahead = 0;
    return async_put(h, XTK__ASYNC_INFO, fd);
}

static int fake_info_finish(struct xtk_domain *dom,
                            struct xtk_domain_info *info)
{
    struct fake_handle *h = dom->priv;

    if (async_take(h, XTK__ASYNC_INFO, h->info_err) < 0)
        return -1;
    *info = h->info;
    return 0;
}

static int fake_logdirty_finish(struct xtk_domain *dom, uint64_t *bitmap,
                                uint64_t nr_bits, uint64_t *dirty_count)
{
    struct fake_handle *h = dom->priv;

    if (!bitmap || nr_bits < h->dirty_nbits)
        return xtk__fail(EINVAL);
    if (async_take(h, XTK__ASYNC_DIRTY, h->dirty_err) < 0)
        return -1;
    memset(bitmap, 0, (nr_bits + 63) / 64 * sizeof(uint64_t));
    memcpy(bitmap, h->dirty_bits,
           (h->dirty_nbits + 63) / 64 * sizeof(uint64_t));
    if (dirty_count)
        *dirty_count = h->dirty_count;
    return 0;
}

/* ---- output ------------------------------------------------------------ */

/* Holding is bookkeeping only: the epochs the stops close and those
 * released, checked against the depth the guest was given. */
static int fake_output_hold(struct xtk_domain *dom, int how)
{
    struct fake_dom *d;
    int rc = -1;

    FAULT(dom->ctx, OP_OUTPUT_HOLD);
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d && d->out_depth < 0) {
        errno = ENOTSUP;
    } else if (d) {
        if (how == XTK__OUTPUT_HOLD && d->out_holding && d->out_depth == 1 &&
            d->out_released < d->out_closed) {
            /* As Xen's plug: a hold a dead save left, with an epoch
             * unreleased, cannot be taken over. */
            errno = EEXIST;
        } else if (how == XTK__OUTPUT_HOLD) {
            /* (a hold left by a dead save is taken over: the numbers go
             * on) */
            d->out_holding = 1;
            dom->output_epoch = d->out_closed;
            dom->output_depth = (unsigned int)d->out_depth;
            rc = 0;
        } else {
            d->out_holding = 0;
            d->out_released = d->out_closed;
            dom->output_depth = 0;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_output_release(struct xtk_domain *dom, uint32_t epoch,
                               struct xtk__output *out)
{
    struct fake_dom *d;
    int rc = -1;

    FAULT(dom->ctx, OP_OUTPUT_RELEASE);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&g_lock);
    d = live(dom);
    if (d && (!d->out_holding || epoch > d->out_closed)) {
        errno = EINVAL;
    } else if (d) {
        if (epoch > d->out_released) {
            if (d->out_depth && epoch - d->out_released > 1 &&
                d->out_depth == 1)
                d->out_violations++, g_out_violations++;
            d->out_released = epoch;
        }
        rc = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static int fake_output_release_start(struct xtk_domain *dom, uint32_t epoch,
                                     int *fd)
{
    struct fake_handle *h = dom->priv;

    if (h->async & XTK__ASYNC_RELEASE)
        return xtk__fail(EBUSY);
    t_ahead = 1;
    h->release_err =
        fake_output_release(dom, epoch, &h->released) < 0 ? errno : 0;
    t_ahead = 0;
    return async_put(h, XTK__ASYNC_RELEASE, fd);
}

static int fake_output_release_finish(struct xtk_domain *dom,
                                      struct xtk__output *out)
{
    struct fake_handle *h = dom->priv;

    if (async_take(h, XTK__ASYNC_RELEASE, h->release_err) < 0)
        return -1;
    *out = h->released;
    return 0;
}

static const struct xtk__backend_ops xtk__fake_backend = {
    .name = "fake",
    .list = fake_list,
    .lookup = fake_lookup,
    .open = fake_open,
    .create = fake_create,
    .close = fake_close,
    .info = fake_info,
    .pause = fake_pause,
    .unpause = fake_unpause,
    .destroy = fake_destroy,
    .rename = fake_rename,
    .map_all = fake_map_all,
    .populate = fake_populate,
    .write_frames = fake_write_frames,
    .logdirty_enable = fake_logdirty_enable,
    .logdirty_read = fake_logdirty_read,
    .logdirty_disable = fake_logdirty_disable,
    .suspend_setup = fake_suspend_setup,
    .suspend_request = fake_suspend_request,
    .suspend_busy = fake_suspend_busy,
    .suspend_check = fake_suspend_check,
    .suspend_teardown = fake_suspend_teardown,
    .get_state = fake_get_state,
    .set_state = fake_set_state,
    .resume = fake_resume,
    .resume_start = fake_resume_start,
    .resume_finish = fake_resume_finish,
    .async_ready = fake_async_ready,
    .suspend_check_ahead = fake_suspend_check_ahead,
    .stop_finish = fake_stop_finish,
    .logdirty_start = fake_logdirty_start,
    .logdirty_finish = fake_logdirty_finish,
    .info_start = fake_info_start,
    .info_finish = fake_info_finish,
    .output_release_start = fake_output_release_start,
    .output_release_finish = fake_output_release_finish,
    .output_hold = fake_output_hold,
    .output_release = fake_output_release,
};

void xtk__fake_register(void)
{
    xtk__test_backend = &xtk__fake_backend;
}

/*
 * lazy.c - a lazy restore's pager (see lazy.h, xtk_restore(3)).
 *
 * Two threads serve one userfaultfd registered on the domain's memory (in
 * xtk-hv: the fd came from the backend):
 *
 *   fault   waits for the fd's page faults (a vCPU, or xtk-hv itself,
 *           touching a frame not yet in) and answers each at once with
 *           the frame's contents: read from the file where the index says
 *           (one page), or zeroes;
 *   fill    walks the frames in order and puts in every one that has
 *           contents, in runs of up to FILL_RUN pages that lie one after
 *           another in the file (the file's order, for its first round).
 *
 * Both put pages in with UFFDIO_COPY, which refuses a page that is there
 * already (EEXIST): whichever comes second for a frame loses, so a frame
 * the guest has written since it came in is never put in again.  Frames
 * without contents are never filled: once every other frame is in, the
 * fd is closed, and a first touch of one of them then gets a new zeroed
 * page from the kernel, which is what it holds.
 *
 * The file: held under a read lease (F_SETLEASE, F_RDLCK).  Opening it
 * for writing or truncating it then waits (up to the kernel's
 * lease-break-time, 45 s by default) until the lease is let go, and the
 * lease reads as broken at once (F_GETLEASE): checked after every read
 * and before its pages go in, so a byte read while the lease held cannot
 * have changed.  A broken lease, a read error or a short read fails the
 * pager: it serves nothing more, and the restore destroys the domain.
 *
 * A post-copy migration's pager (xtk__lazy_new_remote) has no file: the
 * frames still to come arrive in the stream, which the restore's reader
 * puts in (xtk__lazy_put), each once; the fault thread asks the source
 * for a frame the guest touches before it came (once per frame; the
 * vCPU waits until the reader puts it in, which wakes it), and answers a
 * touch of any other missing frame (one the source never wrote) with
 * zeroes.  A fault's service time then runs from its read to its page
 * put in: the request's way to the source and the page's way back.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend.h"
#include "lazy-index.h"
#include "lazy.h"

#define XTK_LOG_CONTEXT "restore"

#define FILL_RUN 64 /* pages a fill step reads and puts in at most */

struct xtk__lazy {
    struct xtk_ctx *ctx;
    struct xtk_stats *st;
    int fd;
    char *path;
    uint64_t nr_pages;
    uint64_t *index; /* per frame: its contents' file offset, 0: zero */
    /* Or the file's own index (xtk__lazy_use_index): its runs, and per
     * record whether it was read and found to hold what the runs say. */
    struct xtk__lzx *ix;
    uint8_t *rec_ok;
    uint64_t *present; /* bits: put in by the pager (fault or fill) */
    int uffd;
    uint64_t base;
    int stop_fd; /* an eventfd: the fault thread stops */
    pthread_t fault_th, fill_th;
    int fault_started, fill_started, lease;
    unsigned int slow_us; /* XTK_FAULT_LAZY_SLOW: a pause per fill run */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    int failed, err, fill_done;

    /* The fault thread's: faults served, and how long each took, from
     * its message read to its page in (ns). */
    uint64_t faulted, zero_faulted, *samples;
    size_t nsamples, samples_cap;
    /* The fill thread's. */
    uint64_t prefetched;

    /* Post-copy (no file): the frames still to come, when each was first
     * asked for (0: not asked), how to ask, how many are still out. */
    uint64_t *todo;
    uint64_t *asked_at;
    int (*ask)(void *arg, uint64_t pfn);
    void *ask_arg;
    uint64_t missing;
};

static int failed(struct xtk__lazy *lz)
{
    return __atomic_load_n(&lz->failed, __ATOMIC_ACQUIRE);
}

/* The pager's first failure (err), logged by the caller: it serves no
 * more from now on. */
static int fail(struct xtk__lazy *lz, int err)
{
    pthread_mutex_lock(&lz->lock);
    if (!lz->failed) {
        lz->err = err;
        __atomic_store_n(&lz->failed, 1, __ATOMIC_RELEASE);
    }
    pthread_cond_broadcast(&lz->cond);
    pthread_mutex_unlock(&lz->lock);
    return xtk__fail(err);
}

static void set_present(struct xtk__lazy *lz, uint64_t pfn, uint64_t n)
{
    for (uint64_t i = pfn; i < pfn + n; i++)
        __atomic_fetch_or(&lz->present[i / 64], 1ull << (i % 64),
                          __ATOMIC_RELAXED);
}

static int is_present(struct xtk__lazy *lz, uint64_t pfn)
{
    return !!(__atomic_load_n(&lz->present[pfn / 64], __ATOMIC_RELAXED) &
              (1ull << (pfn % 64)));
}

/* Still under an unbroken lease: what was read is what the file held. */
static int lease_held(struct xtk__lazy *lz)
{
    if (fcntl(lz->fd, F_GETLEASE) == F_RDLCK)
        return 0;
    XTK_ERROR(lz->ctx,
              "%s is being changed, truncated or removed (its read lease "
              "was broken) while the guest's memory was still coming in "
              "from it: the domain is stopped (it never ran on changed "
              "memory)",
              lz->path);
    return fail(lz, ESTALE);
}

/* Reads n pages of frame pfn on from file offset off into buf. */
static int read_pages(struct xtk__lazy *lz, uint64_t pfn, uint64_t off,
                      void *buf, unsigned int n)
{
    size_t len = (size_t)n << XTK__PAGE_SHIFT, got = 0;

    while (got < len) {
        ssize_t r =
            pread(lz->fd, (char *)buf + got, len - got, (off_t)(off + got));

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;

            XTK_ERROR(lz->ctx,
                      "%s: cannot read frame %#llx's contents at offset "
                      "%llu (%s): the domain is stopped",
                      lz->path, (unsigned long long)pfn,
                      (unsigned long long)(off + got), strerror(e));
            return fail(lz, e);
        }
        if (r == 0) {
            XTK_ERROR(lz->ctx,
                      "%s ends at offset %llu, before frame %#llx's "
                      "contents: truncated while the guest's memory was "
                      "coming in from it: the domain is stopped",
                      lz->path, (unsigned long long)(off + got),
                      (unsigned long long)(pfn + got / XTK__PAGE_SIZE));
            return fail(lz, EBADMSG);
        }
        got += (size_t)r;
    }
    return lease_held(lz);
}

/*
 * Record rec of the file's index, checked against the record itself before
 * any page of it goes in (once): 0, or -1 (the pager failed, logged).
 */
static int rec_checked(struct xtk__lazy *lz, uint32_t rec)
{
    uint8_t *head;
    size_t len = 16 + 8 * 1024, need = 0;
    char why[256];
    int r;

    if (__atomic_load_n(&lz->rec_ok[rec], __ATOMIC_ACQUIRE))
        return 0;
    for (;;) {
        size_t got = 0;

        head = malloc(len);
        if (!head) {
            XTK_ERROR(lz->ctx, "lazy restore: out of memory");
            return fail(lz, ENOMEM);
        }
        while (got < len) {
            ssize_t n = pread(lz->fd, head + got, len - got,
                              (off_t)(lz->ix->recs[rec] + got));

            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int e = errno;

                free(head);
                XTK_ERROR(lz->ctx,
                          "%s: cannot read the PAGE_DATA record at offset "
                          "%llu (%s): the domain is stopped",
                          lz->path, (unsigned long long)lz->ix->recs[rec],
                          strerror(e));
                return fail(lz, e);
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
        if (lease_held(lz) < 0) {
            free(head);
            return -1;
        }
        r = xtk__lzx_check_record(lz->ix, rec, head, got, &need, why,
                                  sizeof(why));
        free(head);
        if (r == 1 && need > len && got == len) {
            len = need;
            continue;
        }
        break;
    }
    if (r == 1)
        snprintf(why, sizeof(why),
                 "the file ends inside the PAGE_DATA record at offset %llu",
                 (unsigned long long)lz->ix->recs[rec]);
    if (r != 0) {
        int e = r < 0 && errno == ENOMEM ? ENOMEM : EBADMSG;

        XTK_ERROR(lz->ctx,
                  "%s: the index at its end does not match its records (%s): "
                  "the domain is stopped (no page of that record went in)",
                  lz->path, why);
        return fail(lz, e);
    }
    __atomic_store_n(&lz->rec_ok[rec], 1, __ATOMIC_RELEASE);
    return 0;
}

/*
 * Where frame pfn's contents lie in the file (*off; 0: it has none), its
 * record checked first when they come from the file's index.  0, or -1
 * (the pager failed).
 */
static int where(struct xtk__lazy *lz, uint64_t pfn, uint64_t *off)
{
    int64_t j;

    if (!lz->ix) {
        *off = lz->index ? lz->index[pfn] : 0;
        return 0;
    }
    j = xtk__lzx_find(lz->ix, pfn);
    if (j < 0) {
        *off = 0;
        return 0;
    }
    if (rec_checked(lz, lz->ix->runs[j].rec) < 0)
        return -1;
    *off =
        lz->ix->runs[j].off + ((pfn - lz->ix->runs[j].pfn) << XTK__PAGE_SHIFT);
    return 0;
}

/*
 * Puts n pages from buf in at frame pfn on.  Pages there already are
 * passed over (another thread won them).  Sets *done to the pages this
 * call put in.  0, or -1 (failed).
 */
static int put_pages(struct xtk__lazy *lz, uint64_t pfn, const void *buf,
                     unsigned int n, unsigned int *done)
{
    unsigned int i = 0;

    *done = 0;
    while (i < n) {
        struct uffdio_copy c = {
            .dst = lz->base + ((pfn + i) << XTK__PAGE_SHIFT),
            .src = (uintptr_t)buf + ((uint64_t)i << XTK__PAGE_SHIFT),
            .len = (uint64_t)(n - i) << XTK__PAGE_SHIFT,
        };

        if (ioctl(lz->uffd, UFFDIO_COPY, &c) == 0) {
            set_present(lz, pfn + i, n - i);
            *done += n - i;
            return 0;
        }
        if (errno == EAGAIN && c.copy > 0) { /* in part */
            unsigned int k = (unsigned int)(c.copy >> XTK__PAGE_SHIFT);

            set_present(lz, pfn + i, k);
            *done += k;
            i += k;
            continue;
        }
        if (errno == EEXIST) { /* the first is there: the next */
            struct uffdio_range r = {lz->base + ((pfn + i) << XTK__PAGE_SHIFT),
                                     XTK__PAGE_SIZE};

            ioctl(lz->uffd, UFFDIO_WAKE, &r); /* whoever waits for it */
            i++;
            continue;
        }
        if (errno == EINTR || errno == EAGAIN)
            continue;
        {
            int e = errno;

            XTK_ERROR(lz->ctx,
                      "cannot put frame %#llx in the domain's memory (%s): "
                      "the domain is stopped",
                      (unsigned long long)(pfn + i),
                      e == ESRCH ? "the domain is gone" : strerror(e));
            return fail(lz, e);
        }
    }
    return 0;
}

/* One frame, as a fault wants it (or an eager one): 1 if this call put
 * it in (*had: it had contents), 0 if it was there, -1. */
static int serve(struct xtk__lazy *lz, uint64_t pfn, int *had)
{
    static const uint8_t zero[XTK__PAGE_SIZE];
    uint8_t page[XTK__PAGE_SIZE] __attribute__((aligned(64)));
    const void *src = zero;
    unsigned int done;
    uint64_t off = 0;

    *had = 0;
    if (lz->todo && (__atomic_load_n(&lz->todo[pfn / 64], __ATOMIC_ACQUIRE) &
                     (1ull << (pfn % 64)))) {
        /* On its way: asked for once; the reader's UFFDIO_COPY wakes
         * whoever waits for it. */
        if (!__atomic_load_n(&lz->asked_at[pfn], __ATOMIC_RELAXED)) {
            __atomic_store_n(&lz->asked_at[pfn], xtk_now_ns(),
                             __ATOMIC_RELAXED);
            if (lz->ask(lz->ask_arg, pfn) < 0)
                return fail(lz, errno ? errno : EIO);
        }
        return 0;
    }
    if (lz->todo && is_present(lz, pfn)) { /* it came meanwhile */
        struct uffdio_range r = {lz->base + (pfn << XTK__PAGE_SHIFT),
                                 XTK__PAGE_SIZE};

        ioctl(lz->uffd, UFFDIO_WAKE, &r);
        return 0;
    }
    if (!lz->todo && where(lz, pfn, &off) < 0)
        return -1;
    if (!lz->todo && off) {
        if (read_pages(lz, pfn, off, page, 1) < 0)
            return -1;
        src = page;
        *had = 1;
    }
    if (put_pages(lz, pfn, src, 1, &done) < 0)
        return -1;
    return (int)done;
}

/* A fault's service time, kept for the report (one thread at a time:
 * the fault thread of a file's pager, the reader of a post-copy's). */
static void sample(struct xtk__lazy *lz, uint64_t ns)
{
    if (lz->nsamples == lz->samples_cap) {
        size_t cap = lz->samples_cap ? lz->samples_cap * 2 : 1024;
        uint64_t *s = realloc(lz->samples, cap * sizeof(*s));

        if (s) {
            lz->samples = s;
            lz->samples_cap = cap;
        }
    }
    if (lz->nsamples < lz->samples_cap)
        lz->samples[lz->nsamples++] = ns;
}

static void *fault_main(void *arg)
{
    struct xtk__lazy *lz = arg;
    struct uffd_msg msg[16];

    while (!failed(lz)) {
        struct pollfd p[2] = {{.fd = lz->uffd, .events = POLLIN},
                              {.fd = lz->stop_fd, .events = POLLIN}};
        uint64_t t0;
        ssize_t n;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            XTK_PERROR(lz->ctx, "lazy restore: poll");
            fail(lz, errno);
            break;
        }
        if (p[1].revents)
            break;
        t0 = xtk_now_ns();
        n = read(lz->uffd, msg, sizeof(msg));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            XTK_PERROR(lz->ctx, "lazy restore: reading the faults");
            fail(lz, errno);
            break;
        }
        for (size_t i = 0; i < (size_t)n / sizeof(msg[0]) && !failed(lz); i++) {
            uint64_t addr = msg[i].arg.pagefault.address, pfn;
            int r, had;

            if (msg[i].event != UFFD_EVENT_PAGEFAULT)
                continue;
            if (addr < lz->base || addr - lz->base >= lz->nr_pages
                                                          << XTK__PAGE_SHIFT) {
                XTK_ERROR(lz->ctx, "lazy restore: a fault outside the "
                                   "guest's memory");
                fail(lz, EFAULT);
                break;
            }
            pfn = (addr - lz->base) >> XTK__PAGE_SHIFT;
            r = serve(lz, pfn, &had);
            if (r < 0)
                break;
            if (r > 0) {
                if (had)
                    lz->faulted++;
                else
                    lz->zero_faulted++;
            }
            if (!lz->todo) /* a remote frame's time is taken when it comes */
                sample(lz, xtk_now_ns() - t0);
        }
    }
    return NULL;
}

static void *fill_main(void *arg)
{
    struct xtk__lazy *lz = arg;
    uint8_t *buf = aligned_alloc(4096, FILL_RUN * XTK__PAGE_SIZE);
    uint64_t pfn = 0;

    if (!buf) {
        XTK_ERROR(lz->ctx, "lazy restore: out of memory");
        fail(lz, ENOMEM);
        return NULL;
    }
    /* From the file's index: run by run (each contiguous in the file),
     * its record checked first. */
    for (uint32_t j = 0; lz->ix && j < lz->ix->nr_runs && !failed(lz); j++) {
        const struct xtk__lzx_run *run = &lz->ix->runs[j];

        if (rec_checked(lz, run->rec) < 0)
            break;
        for (uint32_t i = 0; i < run->count && !failed(lz);) {
            unsigned int n = 1, done;

            if (is_present(lz, run->pfn + i)) {
                i++;
                continue;
            }
            while (n < FILL_RUN && i + n < run->count &&
                   !is_present(lz, run->pfn + i + n))
                n++;
            if (read_pages(lz, run->pfn + i,
                           run->off + ((uint64_t)i << XTK__PAGE_SHIFT), buf,
                           n) < 0 ||
                put_pages(lz, run->pfn + i, buf, n, &done) < 0)
                break;
            lz->prefetched += done;
            i += n;
            if (lz->slow_us)
                usleep(lz->slow_us);
        }
    }
    while (!lz->ix && pfn < lz->nr_pages && !failed(lz)) {
        uint64_t off = lz->index[pfn];
        unsigned int n = 1, done;

        if (!off || is_present(lz, pfn)) {
            pfn++;
            continue;
        }
        while (n < FILL_RUN && pfn + n < lz->nr_pages &&
               lz->index[pfn + n] == off + ((uint64_t)n << XTK__PAGE_SHIFT) &&
               !is_present(lz, pfn + n))
            n++;
        if (read_pages(lz, pfn, off, buf, n) < 0 ||
            put_pages(lz, pfn, buf, n, &done) < 0)
            break;
        lz->prefetched += done;
        pfn += n;
        if (lz->slow_us)
            usleep(lz->slow_us);
    }
    free(buf);
    pthread_mutex_lock(&lz->lock);
    lz->fill_done = 1;
    pthread_cond_broadcast(&lz->cond);
    pthread_mutex_unlock(&lz->lock);
    return NULL;
}

struct xtk__lazy *xtk__lazy_new(struct xtk_ctx *ctx, int fd, const char *path,
                                uint64_t nr_pages, struct xtk_stats *st)
{
    struct xtk__lazy *lz = calloc(1, sizeof(*lz));
    const char *slow = getenv("XTK_FAULT_LAZY_SLOW");

    if (!lz)
        return NULL;
    lz->ctx = ctx;
    lz->st = st;
    lz->fd = fd;
    lz->uffd = lz->stop_fd = -1;
    lz->nr_pages = nr_pages;
    pthread_mutex_init(&lz->lock, NULL);
    pthread_cond_init(&lz->cond, NULL);
    lz->path = strdup(path ? path : "the stream's file");
    lz->index = xtk__frames_alloc(nr_pages * sizeof(*lz->index));
    lz->present = calloc((nr_pages + 63) / 64 + 1, sizeof(*lz->present));
    lz->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (!lz->path || !lz->index || !lz->present || lz->stop_fd < 0) {
        XTK_PERROR(ctx, "lazy restore: cannot set up");
        goto err;
    }
    if (slow)
        lz->slow_us = (unsigned int)strtoul(slow, NULL, 10);
    if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0) {
        int e = errno;

        XTK_ERROR(ctx,
                  "%s: cannot hold a read lease on it (%s%s): a lazy "
                  "restore must know that the file stays as it is while "
                  "the guest's memory comes from it",
                  lz->path, strerror(e),
                  e == EAGAIN ? ": it is open for writing elsewhere" : "");
        errno = e;
        goto err;
    }
    lz->lease = 1;
    /* F_SETLEASE made this process the file's owner, to whom a lease
     * break sends SIGIO (by default fatal): no owner, no signal; the
     * break is seen by F_GETLEASE. */
    if (fcntl(fd, F_SETOWN, 0) < 0) {
        XTK_PERROR(ctx, "%s: F_SETOWN", lz->path);
        goto err;
    }
    return lz;
err : {
    int e = errno;
    xtk__lazy_free(lz);
    errno = e;
}
    return NULL;
}

struct xtk__lazy *xtk__lazy_new_remote(struct xtk_ctx *ctx, uint64_t nr_pages,
                                       const uint64_t *todo,
                                       struct xtk_stats *st,
                                       int (*ask)(void *arg, uint64_t pfn),
                                       void *arg)
{
    struct xtk__lazy *lz = calloc(1, sizeof(*lz));
    uint64_t words = (nr_pages + 63) / 64;

    if (!lz)
        return NULL;
    lz->ctx = ctx;
    lz->st = st;
    lz->fd = lz->uffd = lz->stop_fd = -1;
    lz->nr_pages = nr_pages;
    lz->ask = ask;
    lz->ask_arg = arg;
    pthread_mutex_init(&lz->lock, NULL);
    pthread_cond_init(&lz->cond, NULL);
    lz->present = calloc(words + 1, sizeof(*lz->present));
    lz->todo = calloc(words + 1, sizeof(*lz->todo));
    lz->asked_at = xtk__frames_alloc(nr_pages * sizeof(*lz->asked_at));
    lz->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (!lz->present || !lz->todo || !lz->asked_at || lz->stop_fd < 0) {
        int e = errno;

        XTK_PERROR(ctx, "post-copy: cannot set up");
        xtk__lazy_free(lz);
        errno = e;
        return NULL;
    }
    memcpy(lz->todo, todo, words * 8);
    for (uint64_t w = 0; w < words; w++)
        lz->missing += (uint64_t)__builtin_popcountll(lz->todo[w]);
    return lz;
}

int xtk__lazy_put(struct xtk__lazy *lz, uint64_t pfn, const void *buf,
                  unsigned int n)
{
    static const uint8_t zero[XTK__PAGE_SIZE];
    uint64_t now;

    if (failed(lz))
        return xtk__fail(lz->err);
    for (unsigned int i = 0; i < n; i++)
        if (pfn + i >= lz->nr_pages ||
            !(lz->todo[(pfn + i) / 64] & (1ull << ((pfn + i) % 64)))) {
            XTK_ERROR(lz->ctx,
                      "post-copy: frame %#llx came, which was not to come "
                      "(or came before)",
                      (unsigned long long)(pfn + i));
            return fail(lz, EPROTO);
        }
    for (unsigned int i = 0; i < n; i++) {
        unsigned int done;
        const void *src =
            buf ? (const uint8_t *)buf + ((size_t)i << XTK__PAGE_SHIFT) : zero;

        if (put_pages(lz, pfn + i, src, 1, &done) < 0)
            return -1;
        if (!done) {
            XTK_ERROR(lz->ctx,
                      "post-copy: frame %#llx was in the guest's memory "
                      "before it came",
                      (unsigned long long)(pfn + i));
            return fail(lz, EPROTO);
        }
        /* After its page is in (a fault that sees no bit sees it). */
        __atomic_fetch_and(&lz->todo[(pfn + i) / 64],
                           ~(1ull << ((pfn + i) % 64)), __ATOMIC_RELEASE);
    }
    now = xtk_now_ns();
    for (unsigned int i = 0; i < n; i++) {
        uint64_t t = __atomic_load_n(&lz->asked_at[pfn + i], __ATOMIC_RELAXED);

        if (!t) {
            lz->prefetched++;
            continue;
        }
        lz->faulted++;
        sample(lz, now - t);
    }
    lz->missing -= n;
    return 0;
}

int xtk__lazy_check(struct xtk__lazy *lz)
{
    return failed(lz) ? xtk__fail(lz->err) : 0;
}

uint64_t xtk__lazy_missing(const struct xtk__lazy *lz)
{
    return lz->missing;
}

void xtk__lazy_note(struct xtk__lazy *lz, uint64_t pfn, uint64_t off)
{
    if (lz->index && pfn < lz->nr_pages)
        lz->index[pfn] = off;
}

int xtk__lazy_use_index(struct xtk__lazy *lz, struct xtk__lzx *ix)
{
    struct xtk__lzx *own = malloc(sizeof(*own));
    uint8_t *ok = calloc(ix->nr_recs ? ix->nr_recs : 1, 1);

    if (!own || !ok) {
        free(own);
        free(ok);
        return xtk__fail(ENOMEM);
    }
    *own = *ix;
    memset(ix, 0, sizeof(*ix));
    lz->ix = own;
    lz->rec_ok = ok;
    xtk__frames_free(lz->index, lz->nr_pages * sizeof(*lz->index));
    lz->index = NULL;
    return 0;
}

const struct xtk__lzx *xtk__lazy_index(const struct xtk__lazy *lz)
{
    return lz->ix;
}

int xtk__lazy_start(struct xtk__lazy *lz, int uffd, uint64_t base)
{
    lz->uffd = uffd;
    lz->base = base;
    if (pthread_create(&lz->fault_th, NULL, fault_main, lz)) {
        XTK_ERROR(lz->ctx, "lazy restore: cannot start its fault thread");
        return fail(lz, EAGAIN);
    }
    lz->fault_started = 1;
    return 0;
}

int xtk__lazy_read(struct xtk__lazy *lz, uint64_t pfn, void *page)
{
    uint64_t off;

    if (pfn >= lz->nr_pages)
        return xtk__fail(EINVAL);
    if (where(lz, pfn, &off) < 0)
        return -1;
    if (!off) {
        memset(page, 0, XTK__PAGE_SIZE);
        return 0;
    }
    return read_pages(lz, pfn, off, page, 1);
}

int xtk__lazy_fill(struct xtk__lazy *lz)
{
    if (pthread_create(&lz->fill_th, NULL, fill_main, lz)) {
        XTK_ERROR(lz->ctx, "lazy restore: cannot start its fill thread");
        return fail(lz, EAGAIN);
    }
    lz->fill_started = 1;
    return 0;
}

static void stop_faults(struct xtk__lazy *lz)
{
    uint64_t one = 1;

    if (!lz->fault_started)
        return;
    if (write(lz->stop_fd, &one, sizeof(one)) != sizeof(one))
        __atomic_store_n(&lz->failed, 1, __ATOMIC_RELEASE);
    pthread_join(lz->fault_th, NULL);
    lz->fault_started = 0;
}

int xtk__lazy_wait(struct xtk__lazy *lz)
{
    pthread_mutex_lock(&lz->lock);
    while (!lz->fill_done && !lz->failed)
        pthread_cond_wait(&lz->cond, &lz->lock);
    pthread_mutex_unlock(&lz->lock);
    return failed(lz) ? xtk__fail(lz->err) : 0;
}

/* The counters and the faults' histogram, into the report, once the
 * threads that keep them have stopped. */
static void report(struct xtk__lazy *lz)
{
    const char *p = lz->todo ? "postcopy" : "lazy";
    char name[XTK_STATS_NAME_MAX + 1];
    struct xtk_hist *h;

    snprintf(name, sizeof(name), "%s fault service", p);
    h = xtk_stats_hist(lz->st, name, "ns");
    snprintf(name, sizeof(name), "%s pages faulted", p);
    xtk_stats_count(lz->st, name, lz->faulted);
    snprintf(name, sizeof(name), "%s zero pages faulted", p);
    xtk_stats_count(lz->st, name, lz->zero_faulted);
    snprintf(name, sizeof(name), "%s pages %s", p,
             lz->todo ? "pushed" : "prefetched");
    xtk_stats_count(lz->st, name, lz->prefetched);
    for (size_t i = 0; h && i < lz->nsamples; i++)
        xtk_hist_record(h, lz->samples[i]);
}

void xtk__lazy_free(struct xtk__lazy *lz)
{
    if (!lz)
        return;
    if (lz->fill_started) {
        __atomic_store_n(&lz->failed, 1, __ATOMIC_RELEASE);
        pthread_join(lz->fill_th, NULL);
    }
    stop_faults(lz);
    if (lz->uffd >= 0) {
        close(lz->uffd);
        report(lz);
    }
    if (lz->lease)
        fcntl(lz->fd, F_SETLEASE, F_UNLCK);
    if (lz->stop_fd >= 0)
        close(lz->stop_fd);
    pthread_mutex_destroy(&lz->lock);
    pthread_cond_destroy(&lz->cond);
    free(lz->samples);
    free(lz->todo);
    xtk__frames_free(lz->asked_at, lz->nr_pages * sizeof(*lz->asked_at));
    xtk__frames_free(lz->index, lz->nr_pages * sizeof(*lz->index));
    if (lz->ix) {
        xtk__lzx_free(lz->ix);
        free(lz->ix);
    }
    free(lz->rec_ok);
    free(lz->present);
    free(lz->path);
    free(lz);
}

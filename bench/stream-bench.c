/*
 * stream-bench.c - the record writer's throughput against the memcpy floor.
 *
 * Writes SIZE of page data (default 1 GiB, 4 KiB pages in PAGE_DATA records
 * of 1024) to /dev/null through libxtk's stream, plain and through the zlib
 * layer at level 1, and copies the same data once with a single-threaded
 * memcpy(), in the same run, RUNS times interleaved; the zlib layer is
 * also set against zlib itself (deflate() at level 1 over the same data,
 * output discarded).  Prints each run and the median, min and max of each,
 * as GB/s and as ratios to their floor, and the p50/p99 time of one
 * PAGE_DATA write.
 *
 * Page contents: half of each page random words, half a short pattern, so
 * that zlib has about as much to find as in a real guest's memory.
 *
 *   stream-bench [SIZE_MIB [RUNS]]
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include <xtk/xtk.h>

#define BATCH 1024u

static struct xtk_ctx *ctx;
static uint8_t *src, *dst;
static size_t npages;
static uint64_t *pfns;
static const void **pages;

static void fill(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (size_t p = 0; p < npages; p++) {
        uint64_t *w = (uint64_t *)(src + p * XTK_PAGE_SIZE);
        for (unsigned i = 0; i < XTK_PAGE_SIZE / 16; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w[i] = x;
        }
        for (unsigned i = XTK_PAGE_SIZE / 16; i < XTK_PAGE_SIZE / 8; i++)
            w[i] = (p << 16) | (i % 8);
        pfns[p] = xtk_pfn_entry(p, XTK_PAGE_NOTAB);
        pages[p] = src + p * XTK_PAGE_SIZE;
    }
}

/* Writes every page to /dev/null; returns the time in ns. */
static uint64_t write_stream(int level, struct xtk_hist *batch_ns)
{
    struct xtk_stream *s = xtk_stream_file(ctx, "/dev/null", XTK_STREAM_WRITE);
    uint64_t t0 = xtk_now_ns();

    if (!s || (level >= 0 && xtk_stream_push_zlib(s, level) < 0) ||
        xtk_stream_write_image_header(s) < 0 ||
        xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 4, 17) < 0)
        goto fail;
    for (size_t p = 0; p < npages; p += BATCH) {
        uint32_t n = npages - p < BATCH ? (uint32_t)(npages - p) : BATCH;
        uint64_t t = xtk_now_ns();
        if (xtk_stream_write_page_data(s, n, pfns + p, pages + p) < 0)
            goto fail;
        xtk_hist_record(batch_ns, xtk_now_ns() - t);
    }
    if (xtk_stream_write_end(s) < 0)
        goto fail;
    if (xtk_stream_close(s) < 0) {
        s = NULL;
        goto fail;
    }
    return xtk_now_ns() - t0;
fail:
    fprintf(stderr, "stream-bench: writing failed: %s\n", strerror(errno));
    xtk_stream_close(s);
    exit(1);
}

static uint64_t copy(void)
{
    uint64_t t0 = xtk_now_ns();

    memcpy(dst, src, npages * XTK_PAGE_SIZE);
    __asm__ volatile("" : : "r"(dst) : "memory");
    return xtk_now_ns() - t0;
}

/* zlib alone: deflate the same bytes, level 1, gzip wrapper. */
static uint64_t deflate_only(void)
{
    static uint8_t out[256 << 10];
    size_t total = npages * XTK_PAGE_SIZE, done = 0;
    z_stream z = {0};
    uint64_t t0 = xtk_now_ns();

    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        exit(1);
    do {
        uInt n = total - done > (1u << 30) ? (1u << 30) : (uInt)(total - done);
        int flush = done + n == total ? Z_FINISH : Z_NO_FLUSH, rc;

        z.next_in = src + done;
        z.avail_in = n;
        do {
            z.next_out = out;
            z.avail_out = sizeof(out);
            rc = deflate(&z, flush);
        } while (z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
        done += n;
    } while (done < total);
    deflateEnd(&z);
    return xtk_now_ns() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* median, min, max of n values (sorted in place) */
static void spread(double *v, int n, double out[3])
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    out[0] = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    out[1] = v[0];
    out[2] = v[n - 1];
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    double gb, m[64], pl[64], zl[64], df[64], rp[64], rz[64], rd[64], s[3];
    struct xtk_hist *hp = xtk_hist_new(), *hz = xtk_hist_new();
    struct xtk_hist_summary sp, sz;

    if (!mib || runs < 1 || runs > 64) {
        fprintf(stderr, "usage: stream-bench [SIZE_MIB [RUNS (1-64)]]\n");
        return 2;
    }
    npages = mib * 256;
    gb = (double)npages * XTK_PAGE_SIZE / 1e9;
    ctx = xtk_ctx_open(NULL, NULL, 0);
    src = malloc(npages * XTK_PAGE_SIZE);
    dst = malloc(npages * XTK_PAGE_SIZE);
    pfns = malloc(npages * sizeof(*pfns));
    pages = malloc(npages * sizeof(*pages));
    if (!ctx || !src || !dst || !pfns || !pages || !hp || !hz) {
        fprintf(stderr, "stream-bench: %s\n", strerror(errno));
        return 1;
    }
    fill();
    memset(dst, 1, npages * XTK_PAGE_SIZE); /* fault it in: not timed */
    printf("stream-bench: %zu MiB of page data (%zu pages, PAGE_DATA of %u) "
           "to /dev/null, %d runs\n",
           mib, npages, BATCH, runs);
    printf("%4s %11s %11s %11s %11s %12s %11s %12s\n", "run", "memcpy GB/s",
           "plain GB/s", "zlib-1 GB/s", "deflate-1", "plain/memcpy",
           "zlib/memcpy", "zlib/deflate");
    for (int r = 0; r < runs; r++) {
        m[r] = gb / ((double)copy() / 1e9);
        pl[r] = gb / ((double)write_stream(-1, hp) / 1e9);
        zl[r] = gb / ((double)write_stream(1, hz) / 1e9);
        df[r] = gb / ((double)deflate_only() / 1e9);
        rp[r] = pl[r] / m[r];
        rz[r] = zl[r] / m[r];
        rd[r] = zl[r] / df[r];
        printf("%4d %11.2f %11.2f %11.3f %11.3f %12.2f %11.3f %12.3f\n", r + 1,
               m[r], pl[r], zl[r], df[r], rp[r], rz[r], rd[r]);
        fflush(stdout);
    }
    printf("median [min-max]:\n");
    spread(m, runs, s);
    printf("  memcpy        %8.2f GB/s [%.2f-%.2f]\n", s[0], s[1], s[2]);
    spread(pl, runs, s);
    printf("  plain         %8.2f GB/s [%.2f-%.2f]\n", s[0], s[1], s[2]);
    spread(zl, runs, s);
    printf("  zlib-1        %8.3f GB/s [%.3f-%.3f]\n", s[0], s[1], s[2]);
    spread(df, runs, s);
    printf("  deflate-1     %8.3f GB/s [%.3f-%.3f]\n", s[0], s[1], s[2]);
    spread(rp, runs, s);
    printf("  plain/memcpy  %8.2f      [%.2f-%.2f]\n", s[0], s[1], s[2]);
    spread(rz, runs, s);
    printf("  zlib/memcpy   %8.3f      [%.3f-%.3f]\n", s[0], s[1], s[2]);
    spread(rd, runs, s);
    printf("  zlib/deflate  %8.3f      [%.3f-%.3f]\n", s[0], s[1], s[2]);
    xtk_hist_summarize(hp, &sp);
    xtk_hist_summarize(hz, &sz);
    printf("one PAGE_DATA write (4 MiB): plain p50 %.1f us p99 %.1f us; "
           "zlib-1 p50 %.1f us p99 %.1f us\n",
           (double)sp.p50 / 1e3, (double)sp.p99 / 1e3, (double)sz.p50 / 1e3,
           (double)sz.p99 / 1e3);
    xtk_hist_free(hp);
    xtk_hist_free(hz);
    free(src);
    free(dst);
    free(pfns);
    free(pages);
    xtk_ctx_close(ctx);
    return 0;
}

/*
 * xtk-stream - write a synthetic migration stream, or verify and dump one,
 * and print the latency report of the work.  See xtk-stream(1).
 *
 * It uses only libxtk's public API.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xtk/xtk.h>

#include "cli.h"

#define DEFAULT_PAGES 16384u
#define DEFAULT_BATCH 1024u
#define MAX_BATCH 32768u
#define MAX_PAGES (1u << 24) /* 64 GiB of guest memory */

const char *cli_prog = "xtk-stream";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s synth [-o FILE|-] [-n PAGES] [-b BATCH] "
            "[-c CHECKPOINTS] [-d DIRTY]\n"
            "                  [-z[LEVEL]] [--checksum] [-s SEED] "
            "[--json FILE|-] [-q] [-v]\n"
            "       %s verify [-i FILE|-] [-z] [--checksum] [--timeout MS] "
            "[--json FILE|-] [-q] [-v]\n"
            "       %s dump [-i FILE|-] [-z] [-v]\n"
            "       %s --help | --version\n"
            "See xtk-stream(1).\n",
            cli_prog, cli_prog, cli_prog, cli_prog);
}

/* The options every command takes: --json, -q, -v.  1 if opt was one. */
static int common_option(struct xtk_ctx *ctx, int opt, const char **json,
                         int *quiet)
{
    switch (opt) {
    case 'j':
        *json = optarg;
        return 1;
    case 'q':
        *quiet = 1;
        return 1;
    case 'v':
        xtk_logger_set_level(xtk_ctx_logger(ctx), XTK_LOG_DEBUG);
        return 1;
    }
    return 0;
}

/* A usage error in a command's arguments: opt is the option whose value
 * was refused, '?' for one getopt refused, -1 for an extra operand. */
static int bad_usage(int opt, char **argv)
{
    if (opt == '?')
        return cli_usage_error(NULL);
    if (opt == -1)
        return cli_usage_error("unexpected argument '%s'", argv[optind]);
    return cli_usage_error("bad value '%s'", optarg);
}

/* ---- synth ------------------------------------------------------------ */

struct synth {
    uint64_t pages, dirty, seed;
    uint32_t batch;
    unsigned checkpoints;
    int level; /* -2: no compression */
    int checksum;
    uint8_t *mem;
};

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/*
 * Fills page pfn as the guest would have it in epoch `epoch`: every 16th
 * page is all zeroes; the others are half random words, half a short
 * repeating pattern (so that compression has something to find).
 */
static void fill_page(const struct synth *sy, uint64_t pfn, unsigned epoch)
{
    uint64_t *w = (uint64_t *)(sy->mem + pfn * XTK_PAGE_SIZE);
    uint64_t x =
        (sy->seed ^ (pfn * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)epoch << 48)) |
        1;

    if (pfn % 16 == 15) {
        memset(w, 0, XTK_PAGE_SIZE);
        return;
    }
    for (unsigned i = 0; i < XTK_PAGE_SIZE / 16; i++)
        w[i] = xorshift(&x);
    for (unsigned i = XTK_PAGE_SIZE / 16; i < XTK_PAGE_SIZE / 8; i++)
        w[i] = (pfn << 16) | (epoch << 8) | (i % 8);
}

static int page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;

    for (unsigned i = 0; i < XTK_PAGE_SIZE / 8; i++)
        acc |= w[i];
    return acc == 0;
}

/* The records that end an epoch of an HVM stream (synthetic contents). */
static int write_state_records(struct xtk_stream *s, unsigned epoch)
{
    uint8_t tsc[24] = {0}, ctx[64];
    uint64_t params[1 + 2 * 2] = {2, 1 /* STORE_PFN */, 0xfeffe,
                                  2 /* STORE_EVTCHN */, 1};
    uint32_t khz = 2000000;
    uint64_t ns = 1000000ull * epoch;

    memcpy(tsc + 4, &khz, 4);
    memcpy(tsc + 8, &ns, 8);
    for (unsigned i = 0; i < sizeof(ctx); i++)
        ctx[i] = (uint8_t)(0xa5 ^ i ^ epoch);
    if (xtk_stream_write_record(s, XTK_REC_X86_TSC_INFO, tsc, sizeof(tsc)) ||
        xtk_stream_write_record(s, XTK_REC_HVM_PARAMS, params,
                                sizeof(params)) ||
        xtk_stream_write_record(s, XTK_REC_HVM_CONTEXT, ctx, sizeof(ctx)))
        return -1;
    return 0;
}

/* Sends the pages whose bit is set in `want`, in batches. */
static int send_round(const struct synth *sy, struct xtk_stream *s,
                      const uint8_t *want, struct xtk_hist *batch_ns,
                      uint64_t *sent, uint64_t *zero)
{
    uint64_t *pfns = malloc(sy->batch * sizeof(*pfns));
    const void **pages = malloc(sy->batch * sizeof(*pages));
    uint32_t n = 0;
    int rc = -1;

    if (!pfns || !pages)
        goto out;
    for (uint64_t pfn = 0; pfn <= sy->pages; pfn++) {
        if (pfn < sy->pages && !(want[pfn / 8] & (1u << (pfn % 8))))
            continue;
        if (pfn < sy->pages) {
            const uint8_t *p = sy->mem + pfn * XTK_PAGE_SIZE;
            int z = page_is_zero(p);

            pfns[n] = xtk_pfn_entry(pfn, z ? XTK_PAGE_XALLOC : XTK_PAGE_NOTAB);
            pages[n] = z ? NULL : p;
            *zero += (uint64_t)z;
            n++;
        }
        if (n == sy->batch || (pfn == sy->pages && n)) {
            uint64_t t = xtk_now_ns();
            if (xtk_stream_write_page_data(s, n, pfns, pages) < 0)
                goto out;
            xtk_hist_record(batch_ns, xtk_now_ns() - t);
            *sent += n;
            n = 0;
        }
    }
    rc = 0;
out:
    free(pfns);
    free(pages);
    return rc;
}

static int synth_run(struct synth *sy, struct xtk_stream *s,
                     struct xtk_stats *st)
{
    size_t bitmap_len = (size_t)(sy->pages + 7) / 8;
    uint8_t *want = malloc(bitmap_len);
    struct xtk_hist *batch_ns = xtk_stats_hist(st, "batch write", "ns");
    struct xtk_hist *ckpt_ns = xtk_stats_hist(st, "checkpoint write", "ns");
    uint64_t rnd = sy->seed | 1, zero = 0;
    struct xtk_stream_counters c;
    int rc = -1;

    if (!want || !batch_ns || !ckpt_ns)
        goto out;
    for (uint64_t p = 0; p < sy->pages; p++)
        fill_page(sy, p, 0);
    xtk_stats_phase(st, "guest memory ready");
    if (xtk_stream_write_image_header(s) < 0 ||
        xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 4, 17) < 0 ||
        xtk_stream_write_record(s, XTK_REC_STATIC_DATA_END, NULL, 0) < 0)
        goto out;
    xtk_stats_phase(st, "headers written");

    for (unsigned r = 0; r <= sy->checkpoints; r++) {
        struct xtk_stats_round row = {.round = r};
        uint64_t before, t0;
        char phase[64];

        /* Round 0 sends everything; later epochs what the "guest"
         * dirtied meanwhile (not timed: the guest's own work). */
        memset(want, r ? 0 : 0xff, bitmap_len);
        if (r) {
            for (uint64_t i = 0; i < sy->dirty; i++) {
                uint64_t pfn = xorshift(&rnd) % sy->pages;
                if (!(want[pfn / 8] & (1u << (pfn % 8))))
                    fill_page(sy, pfn, r);
                want[pfn / 8] |= (uint8_t)(1u << (pfn % 8));
            }
        }
        xtk_stream_get_counters(s, &c);
        before = c.bytes;
        t0 = xtk_now_ns();
        if (send_round(sy, s, want, batch_ns, &row.sent, &zero) < 0 ||
            write_state_records(s, r) < 0)
            goto out;
        if (r < sy->checkpoints) {
            uint64_t t = xtk_now_ns();
            if (xtk_stream_write_checkpoint(s) < 0)
                goto out;
            xtk_hist_record(ckpt_ns, xtk_now_ns() - t);
        }
        row.ns = xtk_now_ns() - t0;
        xtk_stream_get_counters(s, &c);
        row.bytes = c.bytes - before;
        row.dirty = r ? row.sent : sy->pages;
        xtk_stats_add_round(st, &row);
        if (r < sy->checkpoints)
            snprintf(phase, sizeof(phase), "checkpoint %u written", r + 1);
        else
            snprintf(phase, sizeof(phase), "round %u sent", r);
        xtk_stats_phase(st, phase);
    }
    if (xtk_stream_write_end(s) < 0)
        goto out;
    xtk_stats_phase(st, "end written");
    xtk_stream_get_counters(s, &c);
    xtk_stats_count(st, "page entries", c.page_entries);
    xtk_stats_count(st, "pages with data", c.pages);
    xtk_stats_count(st, "zero pages elided", zero);
    xtk_stats_count(st, "records", c.records);
    xtk_stats_count(st, "stream bytes", c.bytes);
    rc = 0;
out:
    free(want);
    return rc;
}

static int cmd_synth(struct xtk_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"pages", required_argument, NULL, 'n'},
        {"batch", required_argument, NULL, 'b'},
        {"checkpoints", required_argument, NULL, 'c'},
        {"dirty", required_argument, NULL, 'd'},
        {"compress", optional_argument, NULL, 'z'},
        {"checksum", no_argument, NULL, 'C'},
        {"seed", required_argument, NULL, 's'},
        {"json", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {0},
    };
    struct synth sy = {.pages = DEFAULT_PAGES,
                       .batch = DEFAULT_BATCH,
                       .level = -2,
                       .seed = 1,
                       .dirty = UINT64_MAX};
    const char *out = "-", *json = NULL;
    struct xtk_stream *s;
    struct xtk_stats *st;
    struct xtk_stream_counters c;
    int quiet = 0, opt, fd, rc = 1;
    uint64_t v;

    while ((opt = getopt_long(argc, argv, "o:n:b:c:d:z::s:qv", opts, NULL)) !=
           -1) {
        switch (opt) {
        case 'o':
            out = optarg;
            break;
        case 'n':
            if (cli_parse_u64(optarg, 1, MAX_PAGES, 0, &sy.pages))
                goto bad;
            break;
        case 'b':
            if (cli_parse_u64(optarg, 1, MAX_BATCH, 0, &v))
                goto bad;
            sy.batch = (uint32_t)v;
            break;
        case 'c':
            if (cli_parse_u64(optarg, 0, 100000, 0, &v))
                goto bad;
            sy.checkpoints = (unsigned)v;
            break;
        case 'd':
            if (cli_parse_u64(optarg, 0, MAX_PAGES, 0, &sy.dirty))
                goto bad;
            break;
        case 'z':
            sy.level = 1;
            if (optarg) {
                if (cli_parse_u64(optarg, 0, 9, 0, &v))
                    goto bad;
                sy.level = (int)v;
            }
            break;
        case 'C':
            sy.checksum = 1;
            break;
        case 's':
            if (cli_parse_u64(optarg, 0, UINT64_MAX, 0, &sy.seed))
                goto bad;
            break;
        default:
            if (!common_option(ctx, opt, &json, &quiet))
                goto bad;
        }
    }
    if (optind != argc)
        goto bad;
    if (sy.dirty == UINT64_MAX)
        sy.dirty = sy.pages / 8 ? sy.pages / 8 : 1;
    if (!strcmp(out, "-") && isatty(1)) {
        fprintf(stderr,
                "%s: not writing a binary stream to a terminal "
                "(use -o FILE)\n",
                cli_prog);
        return 1;
    }

    st = xtk_stats_new("xtk-stream synth");
    sy.mem = malloc((size_t)sy.pages * XTK_PAGE_SIZE);
    if (!st || !sy.mem) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        goto out;
    }
    xtk_stats_phase(st, "start");
    unsigned flags = XTK_STREAM_WRITE | (sy.checksum ? XTK_STREAM_CHECKSUM : 0);
    if (!strcmp(out, "-")) {
        fd = 1;
        s = xtk_stream_fd(ctx, fd, flags);
    } else {
        s = xtk_stream_file(ctx, out, flags);
    }
    if (!s || (sy.level >= 0 && xtk_stream_push_zlib(s, sy.level) < 0)) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, out, strerror(errno));
        xtk_stream_close(s);
        goto out;
    }
    if (synth_run(&sy, s, st) < 0) {
        fprintf(stderr, "%s: writing %s failed: %s\n", cli_prog, out,
                strerror(errno));
        xtk_stream_close(s);
        goto out;
    }
    xtk_stream_get_counters(s, &c);
    if (xtk_stream_close(s) < 0) {
        fprintf(stderr, "%s: closing %s: %s\n", cli_prog, out, strerror(errno));
        goto out;
    }
    xtk_stats_phase(st, "stream closed");
    /* raw_bytes is final only after close (the compression trailer). */
    rc = 0;
    if (!quiet && cli_write_report(st, XTK_STATS_TABLE,
                                   strcmp(out, "-") ? "-" : NULL) < 0)
        rc = 1;
    if (json && cli_write_report(st, XTK_STATS_JSON, json) < 0)
        rc = 1;
out:
    free(sy.mem);
    xtk_stats_free(st);
    return rc;
bad:
    return bad_usage(opt, argv);
}

/* ---- verify and dump -------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* xtk's own rule on top of the library's: a pfn at most once a record. */
static int check_unique(const struct xtk_stream_page_data *pd, uint64_t *tmp,
                        uint64_t at)
{
    for (uint32_t i = 0; i < pd->count; i++)
        tmp[i] = xtk_pfn_entry_pfn(pd->pfns[i]);
    qsort(tmp, pd->count, sizeof(*tmp), cmp_u64);
    for (uint32_t i = 1; i < pd->count; i++)
        if (tmp[i] == tmp[i - 1]) {
            fprintf(stderr,
                    "%s: PAGE_DATA at offset %" PRIu64 " names pfn %#" PRIx64
                    " twice\n",
                    cli_prog, at, tmp[i]);
            errno = EBADMSG;
            return -1;
        }
    return 0;
}

/* Whether the fd holds a gzip stream (regular files only; the fd's offset
 * is not moved). */
static int looks_gzipped(int fd)
{
    uint8_t m[2];

    return pread(fd, m, 2, 0) == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

static int cmd_read(struct xtk_ctx *ctx, int argc, char **argv, int dump)
{
    static const struct option opts[] = {
        {"input", required_argument, NULL, 'i'},
        {"compressed", no_argument, NULL, 'z'},
        {"checksum", no_argument, NULL, 'C'},
        {"timeout", required_argument, NULL, 't'},
        {"json", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {0},
    };
    const char *in = "-", *json = NULL;
    int compressed = 0, quiet = 0, opt, fd, rc = 1;
    unsigned flags = XTK_STREAM_READ;
    uint64_t timeout = 0, nrec[256] = {0}, noptional = 0, epochs = 0;
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;
    struct xtk_stream_counters c, before = {0};
    struct xtk_stream *s = NULL;
    struct xtk_stats *st = NULL;
    struct xtk_hist *rec_ns;
    uint64_t *tmp = NULL, t_epoch;
    size_t tmp_cap = 0;
    uint8_t extra;

    while ((opt = getopt_long(argc, argv, "i:zqv", opts, NULL)) != -1) {
        switch (opt) {
        case 'i':
            in = optarg;
            break;
        case 'z':
            compressed = 1;
            break;
        case 'C':
            flags |= XTK_STREAM_CHECKSUM;
            break;
        case 't':
            if (cli_parse_u64(optarg, 1, 86400000, 0, &timeout))
                goto bad;
            break;
        default:
            if (!common_option(ctx, opt, &json, &quiet))
                goto bad;
        }
    }
    if (optind != argc)
        goto bad;

    st = xtk_stats_new(dump ? "xtk-stream dump" : "xtk-stream verify");
    if (!st || !(rec_ns = xtk_stats_hist(st, "record read", "ns")))
        goto out_err;
    xtk_stats_phase(st, "start");
    if (!strcmp(in, "-")) {
        fd = 0;
    } else {
        fd = open(in, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            goto out_err;
        flags |= XTK_STREAM_OWN_FD;
    }
    compressed |= looks_gzipped(fd);
    s = xtk_stream_fd(ctx, fd, flags);
    if (!s || (compressed && xtk_stream_push_zlib(s, -1) < 0) ||
        (timeout && xtk_stream_set_timeout(s, (int)timeout) < 0))
        goto out_err;

    if (xtk_stream_read_image_header(s, &ih) < 0 ||
        xtk_stream_read_domain_header(s, &dh) < 0)
        goto out;
    xtk_stats_phase(st, "headers read");
    if (!quiet) {
        char from[48] = "not from Xen (Xen version 0.0)";

        /* Xen writes its version; 0.0 is anything else: xtk's KVM
         * streams, and Xen's conversions of legacy streams. */
        if (dh.xen_major || dh.xen_minor)
            snprintf(from, sizeof(from), "from Xen %u.%u", dh.xen_major,
                     dh.xen_minor);
        printf("stream: version %u, little-endian, %s, %s%s\n", ih.version,
               dh.type == XTK_DOMAIN_X86_HVM ? "x86 HVM" : "x86 PV", from,
               compressed ? ", gzip" : "");
    }
    t_epoch = xtk_now_ns();
    for (;;) {
        uint64_t t = xtk_now_ns();
        struct xtk_stream_page_data pd;
        const char *name;

        if (xtk_stream_read_record(s, &rec) < 0)
            goto out;
        xtk_hist_record(rec_ns, xtk_now_ns() - t);
        name = xtk_stream_record_name(rec.type);
        if (!name && !dump) {
            /* Stricter than a restore, which skips it: a record nobody
             * knows is more likely a corrupt type than a newer one. */
            fprintf(stderr,
                    "%s: unknown optional record type %#x at offset %" PRIu64
                    "\n",
                    cli_prog, rec.type, rec.offset);
            errno = EPROTO;
            goto out;
        }
        if (rec.type < 256)
            nrec[rec.type]++;
        else
            noptional++;
        if (rec.type == XTK_REC_PAGE_DATA) {
            if (xtk_stream_page_data_parse(rec.body, rec.length, &pd) < 0)
                goto out;
            if (pd.count > tmp_cap) {
                uint64_t *n = realloc(tmp, pd.count * sizeof(*tmp));
                if (!n)
                    goto out_err;
                tmp = n;
                tmp_cap = pd.count;
            }
            if (check_unique(&pd, tmp, rec.offset) < 0)
                goto out;
        }
        if (dump) {
            printf("%10" PRIu64 "  %-26s %#10x %9u", rec.offset,
                   name ? name : "(optional)", rec.type, rec.length);
            if (rec.type == XTK_REC_PAGE_DATA)
                printf("  count %u, %u with data, pfn %#" PRIx64 "..%#" PRIx64,
                       pd.count, pd.npages, xtk_pfn_entry_pfn(pd.pfns[0]),
                       xtk_pfn_entry_pfn(pd.pfns[pd.count - 1]));
            putchar('\n');
        }
        if (rec.type == XTK_REC_CHECKPOINT || rec.type == XTK_REC_END) {
            struct xtk_stats_round row = {.round = (uint32_t)epochs};
            char phase[64];

            xtk_stream_get_counters(s, &c);
            row.dirty = c.page_entries - before.page_entries;
            row.sent = c.pages - before.pages;
            row.bytes = c.bytes - before.bytes;
            row.ns = xtk_now_ns() - t_epoch;
            xtk_stats_add_round(st, &row);
            before = c;
            t_epoch = xtk_now_ns();
            snprintf(phase, sizeof(phase), "%s %" PRIu64 " read",
                     rec.type == XTK_REC_END ? "end, epoch" : "checkpoint",
                     epochs);
            xtk_stats_phase(st, phase);
            epochs++;
        }
        if (rec.type == XTK_REC_END)
            break;
    }
    /* Stricter than Xen: nothing may follow END (for gzip, this also
     * reads and checks the compressed stream's trailer). */
    if (xtk_stream_read(s, &extra, 1) == 0) {
        fprintf(stderr, "%s: data after the END record\n", cli_prog);
        errno = EBADMSG;
        goto out;
    }
    if (errno != ENODATA)
        goto out;
    xtk_stats_phase(st, "end of stream checked");
    xtk_stream_get_counters(s, &c);
    xtk_stats_count(st, "records", c.records);
    xtk_stats_count(st, "page entries", c.page_entries);
    xtk_stats_count(st, "pages with data", c.pages);
    xtk_stats_count(st, "checkpoints", nrec[XTK_REC_CHECKPOINT]);
    xtk_stats_count(st, "stream bytes", c.bytes);
    xtk_stats_count(st, "bytes read", c.raw_bytes);
    if (!quiet && !dump) {
        printf("records: %" PRIu64, c.records);
        for (unsigned t = 0; t < 256; t++)
            if (nrec[t])
                printf(", %s %" PRIu64, xtk_stream_record_name(t), nrec[t]);
        if (noptional)
            printf(", optional %" PRIu64, noptional);
        printf("\npages: %" PRIu64 " entries, %" PRIu64 " with data; "
               "epochs: %" PRIu64 "\n",
               c.page_entries, c.pages, epochs);
        printf("%s: valid\n", in);
    }
    rc = 0;
    if (!quiet && !dump && cli_write_report(st, XTK_STATS_TABLE, "-") < 0)
        rc = 1;
    if (json && cli_write_report(st, XTK_STATS_JSON, json) < 0)
        rc = 1;
    goto out;

out_err:
    fprintf(stderr, "%s: %s: %s\n", cli_prog, in, strerror(errno));
out:
    if (rc) {
        int err = s && xtk_stream_error(s) ? xtk_stream_error(s) : errno;
        fprintf(stderr, "%s: %s: not a valid stream (%s)\n", cli_prog, in,
                strerror(err));
    }
    xtk_stream_close(s);
    xtk_stats_free(st);
    free(tmp);
    return rc;
bad:
    return bad_usage(opt, argv);
}

int main(int argc, char **argv)
{
    struct xtk_logger *lg;
    struct xtk_ctx *ctx;
    const char *cmd;
    int rc;

    cli_init(argv);
    if (argc < 2)
        return cli_usage_error("no command (synth, verify or dump)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        cli_print_version();
        return 0;
    }
    if (argv[1][0] == '-') {
        fprintf(stderr, "%s: unrecognized option '%s'\n", cli_prog, argv[1]);
        return cli_usage_error(NULL);
    }
    if (strcmp(argv[1], "synth") && strcmp(argv[1], "verify") &&
        strcmp(argv[1], "dump")) {
        fprintf(stderr, "%s: unknown command '%s'\n", cli_prog, argv[1]);
        return cli_usage_error(NULL);
    }
    lg = xtk_logger_stderr_new(XTK_LOG_WARN, 0);
    ctx = lg ? xtk_ctx_open(lg, NULL, XTK_CTX_OWN_LOGGER) : NULL;
    if (!ctx) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        xtk_logger_destroy(lg);
        return 1;
    }
    cmd = argv[1];
    argv[1] = (char *)cli_prog; /* for getopt's messages */
    if (!strcmp(cmd, "synth"))
        rc = cmd_synth(ctx, argc - 1, argv + 1);
    else if (!strcmp(cmd, "verify"))
        rc = cmd_read(ctx, argc - 1, argv + 1, 0);
    else
        rc = cmd_read(ctx, argc - 1, argv + 1, 1);
    xtk_ctx_close(ctx);
    return rc;
}

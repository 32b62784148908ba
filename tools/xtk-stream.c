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
#include <sys/stat.h>
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
            "[--format libxc|libxl|xl]\n"
            "                  [--config FILE] [--json FILE|-] [-q] [-v]\n"
            "       %s verify [-i FILE|-] [-z] [--checksum] [--timeout MS] "
            "[--format F]\n"
            "                  [--json FILE|-] [-q] [-v]\n"
            "       %s dump [-i FILE|-] [-z] [--format F] [-v]\n"
            "       %s wrap-xl [--config FILE] [--libxl] [-q] [-v] "
            "IN|- OUT|-\n"
            "       %s unwrap-xl [--config-out FILE] [-q] [-v] IN|- OUT|-\n"
            "       %s --help | --version\n"
            "See xtk-stream(1).\n",
            cli_prog, cli_prog, cli_prog, cli_prog, cli_prog, cli_prog);
}

static const char *const framing_names[] = {"libxc", "libxl", "xl"};

/* "libxc", "libxl" or "xl" into XTK_STREAM_FRAMING_*; -1 otherwise. */
static int parse_framing(const char *arg, uint32_t *out)
{
    for (uint32_t i = 0; i < 3; i++)
        if (!strcmp(arg, framing_names[i])) {
            *out = i;
            return 0;
        }
    fprintf(stderr, "%s: --format libxc, libxl or xl, not '%s'\n", cli_prog,
            arg);
    return -1;
}

/* The framing's lines of verify and dump (nothing for a bare stream). */
static void print_framing(const struct xtk_stream_framing *fr)
{
    if (fr->framing == XTK_STREAM_FRAMING_XL)
        printf("xl: mandatory flags %#x (%sSTREAMv2), optional flags %#x, "
               "optional data %u bytes; config: %s, %u bytes\n",
               fr->xl_mandatory_flags,
               fr->xl_mandatory_flags & XTK_XL_CONFIG_JSON ? "JSON, " : "",
               fr->xl_optional_flags, fr->xl_optional_len,
               !fr->config_len                               ? "none"
               : fr->xl_mandatory_flags & XTK_XL_CONFIG_JSON ? "JSON"
                                                             : "xl .cfg text",
               fr->config_len);
    if (fr->framing != XTK_STREAM_FRAMING_LIBXC)
        printf("libxl: version 2, little-endian%s; LIBXC_CONTEXT, the libxc "
               "stream at offset %" PRIu64 "\n",
               fr->libxl_options & XTK_LIBXL_OPT_LEGACY
                   ? ", converted from a legacy stream"
                   : "",
               fr->libxc_offset);
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
    uint32_t framing; /* XTK_STREAM_FRAMING_* */
    uint8_t *config;  /* for xl framing (NULL: none) */
    uint32_t config_len;
    int config_json;
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
        {"format", required_argument, NULL, 'F'},
        {"config", required_argument, NULL, 'K'},
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
        case 'F':
            if (parse_framing(optarg, &sy.framing) < 0)
                goto bad;
            break;
        case 'K':
            free(sy.config);
            sy.config =
                cli_read_config(optarg, &sy.config_len, &sy.config_json);
            if (!sy.config)
                return 1;
            break;
        default:
            if (!common_option(ctx, opt, &json, &quiet))
                goto bad;
        }
    }
    if (optind != argc || (sy.config && sy.framing != XTK_STREAM_FRAMING_XL)) {
        if (sy.config)
            fprintf(stderr, "%s: --config needs --format xl\n", cli_prog);
        goto bad;
    }
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
    if (!s || (sy.level >= 0 && xtk_stream_push_zlib(s, sy.level) < 0) ||
        xtk_stream_write_framing(s, sy.framing,
                                 sy.config_json ? XTK_XL_CONFIG_JSON : 0,
                                 sy.config, sy.config_len) < 0) {
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
    free(sy.config);
    xtk_stats_free(st);
    return rc;
bad:
    free(sy.config);
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
        {"format", required_argument, NULL, 'F'},
        {"json", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {0},
    };
    const char *in = "-", *json = NULL;
    int compressed = 0, quiet = 0, opt, fd, rc = 1;
    uint32_t want_framing = UINT32_MAX; /* any */
    struct xtk_stream_framing fr = {0}, now;
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
        case 'F':
            if (parse_framing(optarg, &want_framing) < 0)
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

    if (xtk_stream_read_framing(s, &fr) < 0)
        goto out;
    if (want_framing != UINT32_MAX && fr.framing != want_framing) {
        fprintf(stderr, "%s: %s: %s framing, not %s\n", cli_prog, in,
                framing_names[fr.framing], framing_names[want_framing]);
        errno = EPROTO;
        goto out;
    }
    if (!quiet)
        print_framing(&fr);
    free(fr.config); /* not needed here */
    fr.config = NULL;
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
        if (dump && fr.framing != XTK_STREAM_FRAMING_LIBXC &&
            (rec.type == XTK_REC_CHECKPOINT || rec.type == XTK_REC_END)) {
            uint64_t emu = fr.libxl_emulator_records;

            /* The libxl records the stream read after it. */
            xtk_stream_get_framing(s, &fr);
            if (fr.libxl_emulator_records > emu)
                printf("%10s  (libxl: %" PRIu64 " emulator records)\n", "",
                       fr.libxl_emulator_records - emu);
            printf("%10" PRIu64 "  %-26s %#10x %9u\n",
                   rec.type == XTK_REC_END ? fr.libxl_end_offset
                                           : fr.libxl_checkpoint_end_offset,
                   rec.type == XTK_REC_END ? "libxl END"
                                           : "libxl CHECKPOINT_END",
                   rec.type == XTK_REC_END ? XTK_LIBXL_REC_END
                                           : XTK_LIBXL_REC_CHECKPOINT_END,
                   0);
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
    xtk_stream_get_framing(s, &now);
    if (now.framing != XTK_STREAM_FRAMING_LIBXC)
        xtk_stats_count(st, "libxl records", now.libxl_records);
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
        if (now.framing != XTK_STREAM_FRAMING_LIBXC)
            printf("libxl: %" PRIu64 " records: LIBXC_CONTEXT, %" PRIu64
                   " CHECKPOINT_END, %" PRIu64 " emulator (skipped), END\n",
                   now.libxl_records, now.libxl_checkpoint_ends,
                   now.libxl_emulator_records);
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
    free(fr.config);
    return rc;
bad:
    return bad_usage(opt, argv);
}

/* ---- wrap-xl and unwrap-xl -------------------------------------------- */

/* An input stream: a file or stdin, gzip recognised; its framing read. */
static struct xtk_stream *open_input(struct xtk_ctx *ctx, const char *in,
                                     struct xtk_stream_framing *fr)
{
    unsigned flags = XTK_STREAM_READ;
    struct xtk_stream *s;
    int fd = 0;

    if (strcmp(in, "-")) {
        fd = open(in, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, in, strerror(errno));
            return NULL;
        }
        flags |= XTK_STREAM_OWN_FD;
    }
    s = xtk_stream_fd(ctx, fd, flags);
    if (!s || (looks_gzipped(fd) && xtk_stream_push_zlib(s, -1) < 0) ||
        xtk_stream_read_framing(s, fr) < 0) {
        fprintf(
            stderr, "%s: %s: not a valid stream (%s)\n", cli_prog, in,
            strerror(s && xtk_stream_error(s) ? xtk_stream_error(s) : errno));
        xtk_stream_close(s);
        return NULL;
    }
    return s;
}

/*
 * Copies the stream `in` (framing read) record by record to out_fd with
 * the framing given: the headers and records as they are, checksum
 * records made anew (the writer checksums when the input did).  Every
 * record is checked on the way.  0, or -1 (and a message).
 */
static int copy_records(struct xtk_ctx *ctx, struct xtk_stream *in,
                        const char *in_name, int out_fd, uint32_t framing,
                        uint32_t xl_flags, const void *config,
                        uint32_t config_len, uint64_t *records)
{
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;
    struct xtk_stream *out = NULL;
    int rc;

    *records = 0;
    if (xtk_stream_read_image_header(in, &ih) < 0 ||
        xtk_stream_read_domain_header(in, &dh) < 0 ||
        xtk_stream_read_record(in, &rec) < 0)
        goto bad_input;
    out = xtk_stream_fd(
        ctx, out_fd,
        XTK_STREAM_WRITE |
            (rec.type == XTK_REC_CHECKSUM ? XTK_STREAM_CHECKSUM : 0));
    if (!out ||
        xtk_stream_write_framing(out, framing, xl_flags, config, config_len) <
            0 ||
        xtk_stream_write_image_header(out) < 0 ||
        xtk_stream_write_domain_header(out, dh.type, dh.xen_major,
                                       dh.xen_minor) < 0)
        goto bad_output;
    for (;;) {
        if (rec.type == XTK_REC_CHECKPOINT)
            rc = xtk_stream_write_checkpoint(out);
        else if (rec.type == XTK_REC_END)
            rc = xtk_stream_write_end(out);
        else if (rec.type == XTK_REC_CHECKSUM)
            rc = 0; /* the writer adds its own */
        else
            rc = xtk_stream_write_record(out, rec.type, rec.body, rec.length);
        if (rc < 0)
            goto bad_output;
        (*records)++;
        if (rec.type == XTK_REC_END)
            break;
        if (xtk_stream_read_record(in, &rec) < 0)
            goto bad_input;
    }
    if (xtk_stream_close(out) < 0) {
        out = NULL;
        goto bad_output;
    }
    return 0;

bad_input:
    fprintf(stderr, "%s: %s: not a valid stream (%s)\n", cli_prog, in_name,
            strerror(xtk_stream_error(in) ? xtk_stream_error(in) : errno));
    xtk_stream_close(out);
    return -1;
bad_output:
    fprintf(stderr, "%s: writing: %s\n", cli_prog, strerror(errno));
    xtk_stream_close(out);
    return -1;
}

/* The output: stdout (not a terminal) or a file created or truncated;
 * never the input itself. */
static int open_output(const char *path, const char *in)
{
    struct stat a, b;
    int fd;

    if (!strcmp(path, "-")) {
        if (isatty(1)) {
            fprintf(stderr, "%s: not writing a binary stream to a terminal\n",
                    cli_prog);
            return -1;
        }
        return 1;
    }
    if (strcmp(in, "-") && stat(in, &a) == 0 && stat(path, &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        fprintf(stderr, "%s: %s is the input\n", cli_prog, path);
        return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
    return fd;
}

static void close_output(int fd, const char *path, int failed)
{
    if (fd > 1) {
        close(fd);
        if (failed)
            unlink(path); /* never a partial stream left behind */
    }
}

/*
 * wrap-xl: a stream (bare, libxl or xl) into an xl file (or a libxl
 * stream) with the config given, or the one it had.
 */
static int cmd_wrap(struct xtk_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'K'},
        {"libxl", no_argument, NULL, 'L'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {0},
    };
    struct xtk_stream_framing fr = {0};
    struct xtk_stream *in = NULL;
    uint8_t *config = NULL;
    uint32_t config_len = 0, framing = XTK_STREAM_FRAMING_XL;
    int json = 0, quiet = 0, opt, fd = -1, rc = 1;
    const char *json_report = NULL;
    uint64_t records;

    while ((opt = getopt_long(argc, argv, "K:qv", opts, NULL)) != -1) {
        switch (opt) {
        case 'K':
            free(config);
            config = cli_read_config(optarg, &config_len, &json);
            if (!config)
                return 1;
            break;
        case 'L':
            framing = XTK_STREAM_FRAMING_LIBXL;
            break;
        default:
            if (!common_option(ctx, opt, &json_report, &quiet))
                goto bad;
        }
    }
    if (optind + 2 != argc || (config && framing != XTK_STREAM_FRAMING_XL))
        goto bad;
    in = open_input(ctx, argv[optind], &fr);
    if (!in)
        goto out;
    if (!config && framing == XTK_STREAM_FRAMING_XL && fr.config) {
        /* Re-framing an xl file: its config stays. */
        config = fr.config;
        fr.config = NULL;
        config_len = fr.config_len;
        json = !!(fr.xl_mandatory_flags & XTK_XL_CONFIG_JSON);
    }
    fd = open_output(argv[optind + 1], argv[optind]);
    if (fd < 0)
        goto out;
    if (copy_records(ctx, in, argv[optind], fd, framing,
                     json ? XTK_XL_CONFIG_JSON : 0, config, config_len,
                     &records) < 0)
        goto out;
    rc = 0;
    if (!quiet)
        fprintf(stderr,
                "%s: %s -> %s: %s framing, config %s (%u bytes), %" PRIu64
                " records\n",
                cli_prog, argv[optind], argv[optind + 1],
                framing_names[framing],
                !config_len ? "none"
                : json      ? "JSON"
                            : "xl .cfg text",
                config_len, records);
out:
    close_output(fd, argv[optind + 1], rc != 0);
    xtk_stream_close(in);
    free(fr.config);
    free(config);
    return rc;
bad:
    free(config);
    return bad_usage(opt, argv);
}

/* unwrap-xl: the bare stream out of an xl file or a libxl stream, and the
 * config into a file if asked. */
static int cmd_unwrap(struct xtk_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config-out", required_argument, NULL, 'K'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {0},
    };
    struct xtk_stream_framing fr = {0};
    struct xtk_stream *in = NULL;
    const char *config_out = NULL, *json_report = NULL;
    int quiet = 0, opt, fd = -1, rc = 1;
    uint64_t records;

    while ((opt = getopt_long(argc, argv, "qv", opts, NULL)) != -1) {
        switch (opt) {
        case 'K':
            config_out = optarg;
            break;
        default:
            if (!common_option(ctx, opt, &json_report, &quiet))
                goto bad;
        }
    }
    if (optind + 2 != argc)
        goto bad;
    in = open_input(ctx, argv[optind], &fr);
    if (!in)
        goto out;
    if (config_out && !fr.config) {
        fprintf(stderr, "%s: %s has no config\n", cli_prog, argv[optind]);
        goto out;
    }
    if (config_out) {
        /* JSON without the NUL the file format adds: a text file. */
        size_t n =
            fr.config_len - !!(fr.xl_mandatory_flags & XTK_XL_CONFIG_JSON);
        FILE *f = fopen(config_out, "wb");
        int bad = !f || fwrite(fr.config, 1, n, f) != n;

        if ((f && fclose(f) != 0) || bad) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, config_out,
                    strerror(errno));
            goto out;
        }
    }
    fd = open_output(argv[optind + 1], argv[optind]);
    if (fd < 0)
        goto out;
    if (copy_records(ctx, in, argv[optind], fd, XTK_STREAM_FRAMING_LIBXC, 0,
                     NULL, 0, &records) < 0)
        goto out;
    rc = 0;
    if (!quiet)
        fprintf(stderr,
                "%s: %s -> %s: %s framing removed, %" PRIu64 " records\n",
                cli_prog, argv[optind], argv[optind + 1],
                framing_names[fr.framing], records);
out:
    close_output(fd, argv[optind + 1], rc != 0);
    xtk_stream_close(in);
    free(fr.config);
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
        return cli_usage_error(
            "no command (synth, verify, dump, wrap-xl or unwrap-xl)");
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
        strcmp(argv[1], "dump") && strcmp(argv[1], "wrap-xl") &&
        strcmp(argv[1], "unwrap-xl")) {
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
    else if (!strcmp(cmd, "dump"))
        rc = cmd_read(ctx, argc - 1, argv + 1, 1);
    else if (!strcmp(cmd, "wrap-xl"))
        rc = cmd_wrap(ctx, argc - 1, argv + 1);
    else
        rc = cmd_unwrap(ctx, argc - 1, argv + 1);
    xtk_ctx_close(ctx);
    return rc;
}

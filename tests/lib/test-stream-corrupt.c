/*
 * test-stream-corrupt.c - the corrupt-stream matrix.  A known good stream
 * is truncated at every record boundary and at random offsets, has bits
 * flipped, lengths inflated, unknown records spliced in and padding
 * dirtied; every case must end in a clean error (never a crash, a hang or
 * an acceptance of something wrong).
 *
 * What a bit flip can legitimately get through: a flip inside page data,
 * inside a pfn number or a page type that stays valid, or inside an opaque
 * body (HVM_CONTEXT) or its length where the padding absorbs it changes
 * the content, not the structure, and no reader can tell.  Three things
 * cover that:
 *   - flips in the bytes whose every value is checked (headers, record
 *     types and fixed lengths, counts, reserved bits, padding) must all be
 *     refused;
 *   - with checksum records (XTK_STREAM_CHECKSUM), a flip anywhere must be
 *     refused;
 *   - through the zlib layer, gzip's own CRC refuses a flip anywhere after
 *     the 10-byte gzip header.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream-util.h"
#include "test.h"

static struct xtk_ctx *ctx;
static struct tstream known;
static uint8_t *plain, *ck, *gz;
static size_t plain_len, ck_len, gz_len;
static uint64_t rnd = 0x1234567;

/* Byte classes in the plain stream. */
#define B_CHECKED 1 /* any change of this byte must be refused */
#define B_PAD 2     /* padding (also checked) */
static uint8_t *cls;
static size_t *bounds; /* record boundaries (offsets where records start) */
static size_t nbounds;

static int is_error(int err)
{
    return err == EBADMSG || err == EPROTO || err == E2BIG || err == ENODATA;
}

static int flip_read(const uint8_t *data, size_t len, size_t bit,
                     unsigned flags, int zlib)
{
    uint8_t *copy = malloc(len);
    int err;

    TEST_ASSERT(copy, "malloc");
    memcpy(copy, data, len);
    copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    err = read_all(ctx, copy, len, flags, zlib);
    free(copy);
    return err;
}

static void mark(size_t off, size_t n, uint8_t c)
{
    memset(cls + off, c, n);
}

/* Walks the plain stream: records where each record starts and which
 * bytes are fully checked. */
static void classify(void)
{
    size_t off = 40;

    cls = calloc(plain_len, 1);
    bounds = malloc((known.nrecs + 2) * sizeof(*bounds));
    TEST_ASSERT(cls && bounds, "calloc");
    mark(0, 24, B_CHECKED); /* image header */
    /* domain type, page shift, reserved (not the Xen version) */
    mark(24, 8, B_CHECKED);
    bounds[nbounds++] = 40;
    for (size_t i = 0; i < known.nrecs; i++) {
        const struct trec *r = &known.recs[i];
        size_t body = off + 8, pad = (r->length + 7) & ~7u;

        mark(off, 4, B_CHECKED); /* type */
        /* the length, when fixed or derived from the body */
        if (r->type != XTK_REC_HVM_CONTEXT)
            mark(off + 4, 4, B_CHECKED);
        mark(body + r->length, pad - r->length, B_PAD);
        /* PAGE_DATA count and reserved; each entry's reserved bits are
         * flipped one by one in test_checked_flips(). */
        if (r->type == XTK_REC_PAGE_DATA || r->type == XTK_REC_HVM_PARAMS)
            mark(body, 8, B_CHECKED);
        else if (r->type == XTK_REC_X86_TSC_INFO)
            mark(body + 20, 4, B_CHECKED);
        off = body + pad;
        bounds[nbounds++] = off;
    }
    TEST_ASSERT(off == plain_len, "walked %zu of %zu bytes", off, plain_len);
    nbounds--; /* the last is the end of the stream */
}

static int is_bound(size_t off)
{
    for (size_t i = 0; i < nbounds; i++)
        if (bounds[i] == off)
            return 1;
    return 0;
}

/* Truncation at every record boundary: a clean end (ENODATA); anywhere
 * else: truncated (EBADMSG). */
static void test_truncation(void)
{
    TEST_ASSERT(read_all(ctx, plain, 0, 0, 0) == ENODATA, "empty");
    TEST_ASSERT(read_all(ctx, plain, 24, 0, 0) == EBADMSG, "image header only");
    for (size_t i = 0; i < nbounds; i++) {
        int err = read_all(ctx, plain, bounds[i], 0, 0);
        TEST_ASSERT(err == ENODATA, "cut at boundary %zu (offset %zu): %d", i,
                    bounds[i], err);
        err = read_all(ctx, ck, bounds[i], XTK_STREAM_CHECKSUM, 0);
        TEST_ASSERT(is_error(err), "checksummed cut at %zu: %d", bounds[i],
                    err);
    }
    for (int i = 0; i < 300; i++) {
        size_t at = 1 + test_rand(&rnd) % (plain_len - 1);
        int err = read_all(ctx, plain, at, 0, 0);
        TEST_ASSERT(err == (is_bound(at) ? ENODATA : EBADMSG), "cut at %zu: %d",
                    at, err);
    }
    for (size_t at = 0; at < gz_len; at += 1 + test_rand(&rnd) % 97) {
        int err = read_all(ctx, gz, at, 0, 1);
        TEST_ASSERT(is_error(err), "compressed cut at %zu: %d", at, err);
    }
}

/* Every bit of every checked byte. */
static void test_checked_flips(void)
{
    size_t n = 0;

    for (size_t off = 0; off < plain_len; off++) {
        if (!cls[off])
            continue;
        for (unsigned b = 0; b < 8; b++) {
            int err = flip_read(plain, plain_len, off * 8 + b, 0, 0);
            TEST_ASSERT(is_error(err),
                        "flip of bit %u at offset %zu accepted (%d)", b, off,
                        err);
            n++;
        }
    }
    /* The reserved bits 52-59 of every pfn entry. */
    for (size_t i = 0, off = 40; i < known.nrecs; i++) {
        const struct trec *r = &known.recs[i];
        if (r->type == XTK_REC_PAGE_DATA)
            for (uint32_t e = 0; e < r->count; e++)
                for (unsigned bit = 52; bit < 60; bit++) {
                    size_t at = (off + 16 + 8 * e) * 8 + bit;
                    TEST_ASSERT(flip_read(plain, plain_len, at, 0, 0) ==
                                    EBADMSG,
                                "reserved pfn bit %u of entry %u", bit, e);
                    n++;
                }
        off += 8 + ((r->length + 7) & ~7u);
    }
    fprintf(stderr, "   %zu flips of checked bits, all refused\n", n);
}

/* With checksum records, a flip anywhere is refused. */
static void test_checksummed_flips(void)
{
    size_t n = 0;

    for (size_t bit = 0; bit < 128 * 8; bit++, n++)
        TEST_ASSERT(
            is_error(flip_read(ck, ck_len, bit, XTK_STREAM_CHECKSUM, 0)),
            "flip of bit %zu accepted", bit);
    for (int i = 0; i < 1500; i++, n++) {
        size_t bit = test_rand(&rnd) % (ck_len * 8);
        int err = flip_read(ck, ck_len, bit, XTK_STREAM_CHECKSUM, 0);
        TEST_ASSERT(is_error(err), "flip of bit %zu (offset %zu) accepted: %d",
                    bit % 8, bit / 8, err);
    }
    fprintf(stderr, "   %zu flips of a checksummed stream, all refused\n", n);
}

/* Random flips anywhere in a plain stream: never a crash; an accepted one
 * must have hit a byte whose values are not all checked. */
static void test_random_flips(void)
{
    int accepted = 0;

    for (int i = 0; i < 1500; i++) {
        size_t bit = test_rand(&rnd) % (plain_len * 8);
        int err = flip_read(plain, plain_len, bit, 0, 0);
        TEST_ASSERT(err == 0 || is_error(err), "errno %d", err);
        if (!err) {
            TEST_ASSERT(!cls[bit / 8], "flip at checked offset %zu accepted",
                        bit / 8);
            accepted++;
        }
    }
    fprintf(stderr,
            "   1500 random flips: %d accepted (page data, pfn "
            "numbers, opaque bodies), the rest refused\n",
            accepted);
    /* gzip's CRC covers everything after its header. */
    for (int i = 0; i < 800; i++) {
        size_t bit = 80 + test_rand(&rnd) % (gz_len * 8 - 80);
        int err = flip_read(gz, gz_len, bit, 0, 1);
        TEST_ASSERT(is_error(err), "compressed flip at offset %zu: %d", bit / 8,
                    err);
    }
}

/* Lengths over the limit, and a little longer than the truth. */
static void test_lengths(void)
{
    uint8_t *copy = malloc(plain_len);

    TEST_ASSERT(copy, "malloc");
    for (size_t i = 0; i < nbounds; i++) {
        size_t at = bounds[i] + 4;
        uint32_t len, bad[] = {XTK_STREAM_RECORD_MAX + 1, UINT32_MAX, 0};

        memcpy(&len, plain + at, 4);
        bad[2] = len + 8;
        for (int k = 0; k < 3; k++) {
            int err;
            memcpy(copy, plain, plain_len);
            memcpy(copy + at, &bad[k], 4);
            err = read_all(ctx, copy, plain_len, 0, 0);
            TEST_ASSERT(k < 2 ? err == E2BIG : is_error(err),
                        "record %zu with length %u: %d", i, bad[k], err);
        }
    }
    free(copy);
}

/* Splices `rec` (a whole record) in before record i. */
static int splice_read(size_t i, const void *rec, size_t n, int *lib_err)
{
    size_t at = bounds[i], len = plain_len + n;
    uint8_t *copy = malloc(len);
    struct xtk_stream *s;
    struct xtk_stream_record r;
    int err;

    TEST_ASSERT(copy, "malloc");
    memcpy(copy, plain, at);
    memcpy(copy + at, rec, n);
    memcpy(copy + at + n, plain + at, plain_len - at);
    err = read_all(ctx, copy, len, 0, 0);
    /* The library alone (no strict rule on optional records). */
    s = mem_reader(ctx, copy, len, 0, 0);
    xtk_stream_read_image_header(s, &(struct xtk_stream_image_header){0});
    xtk_stream_read_domain_header(s, &(struct xtk_stream_domain_header){0});
    *lib_err = 0;
    do {
        if (xtk_stream_read_record(s, &r) < 0) {
            *lib_err = errno;
            break;
        }
    } while (r.type != XTK_REC_END);
    xtk_stream_close(s);
    free(copy);
    return err;
}

static void test_unknown_records(void)
{
    uint32_t mandatory[4] = {0x13, 5, 0x01020304, 0};
    uint32_t optional[4] = {0x80001234, 5, 0x01020304, 0};
    uint32_t huge[2] = {0x7fffffff, 0};
    int lib;

    for (size_t i = 0; i < nbounds; i++) {
        TEST_ASSERT(splice_read(i, mandatory, 16, &lib) == EPROTO &&
                        lib == EPROTO,
                    "unknown mandatory record before record %zu", i);
        TEST_ASSERT(splice_read(i, huge, 8, &lib) == EPROTO && lib == EPROTO,
                    "type 0x7fffffff before record %zu", i);
        TEST_ASSERT(splice_read(i, optional, 16, &lib) == EPROTO && lib == 0,
                    "unknown optional record before record %zu: skipped by "
                    "the library, refused by the strict reader",
                    i);
        optional[3] = 0x100; /* now its padding is not zero */
        TEST_ASSERT(splice_read(i, optional, 16, &lib) == EBADMSG &&
                        lib == EBADMSG,
                    "optional record with bad padding");
        optional[3] = 0;
    }
}

/* Every padding byte, set to each of a few values: EBADMSG. */
static void test_bad_padding(void)
{
    uint8_t *copy = malloc(plain_len);
    size_t n = 0;

    TEST_ASSERT(copy, "malloc");
    for (size_t off = 0; off < plain_len; off++) {
        if (cls[off] != B_PAD)
            continue;
        for (unsigned v = 1; v < 256; v += 127) {
            memcpy(copy, plain, plain_len);
            copy[off] = (uint8_t)v;
            TEST_ASSERT(read_all(ctx, copy, plain_len, 0, 0) == EBADMSG,
                        "padding byte %zu = %u", off, v);
        }
        n++;
    }
    free(copy);
    TEST_ASSERT(n > 0, "the stream has padding");
}

/* Each header field, with the errno it must give. */
static void test_header_errnos(void)
{
    static const struct {
        size_t off;
        uint8_t val;
        int err;
    } cases[] = {
        {0, 0x7f, EBADMSG}, /* marker: a legacy stream */
        {8, 'x', EBADMSG},  /* id */
        {15, 2, EPROTO},    /* version 2 */
        {15, 4, EPROTO},    /* version 4 */
        {17, 1, EPROTO},    /* big-endian */
        {17, 2, EBADMSG},   /* reserved option bit */
        {19, 1, EBADMSG},   /* reserved */
        {23, 1, EBADMSG},   /* reserved */
        {24, 3, EPROTO},    /* domain type 3 */
        {24, 0, EPROTO},    /* domain type 0 */
        {28, 13, EPROTO},   /* page shift 13 */
        {30, 1, EBADMSG},   /* domain header reserved */
    };
    uint8_t *copy = malloc(plain_len);

    TEST_ASSERT(copy, "malloc");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int err;
        memcpy(copy, plain, plain_len);
        copy[cases[i].off] = cases[i].val;
        err = read_all(ctx, copy, plain_len, 0, 0);
        TEST_ASSERT(err == cases[i].err, "byte %zu = %u: errno %d, want %d",
                    cases[i].off, cases[i].val, err, cases[i].err);
    }
    free(copy);
}

int main(void)
{
    ctx = test_ctx();
    tstream_build(&known, 7, 24, 8, 3, 0);
    plain = tstream_bytes(&known, 0, -1, &plain_len);
    ck = tstream_bytes(&known, XTK_STREAM_CHECKSUM, -1, &ck_len);
    gz = tstream_bytes(&known, 0, 1, &gz_len);
    TEST_ASSERT(read_all(ctx, plain, plain_len, 0, 0) == 0, "the good stream");
    TEST_ASSERT(read_all(ctx, ck, ck_len, XTK_STREAM_CHECKSUM, 0) == 0,
                "the good checksummed stream");
    TEST_ASSERT(read_all(ctx, gz, gz_len, 0, 1) == 0, "the good gzip stream");
    classify();
    TEST_RUN(test_truncation);
    TEST_RUN(test_header_errnos);
    TEST_RUN(test_checked_flips);
    TEST_RUN(test_checksummed_flips);
    TEST_RUN(test_random_flips);
    TEST_RUN(test_lengths);
    TEST_RUN(test_unknown_records);
    TEST_RUN(test_bad_padding);
    free(cls);
    free(bounds);
    free(plain);
    free(ck);
    free(gz);
    tstream_free(&known);
    xtk_ctx_close(ctx);
    return 0;
}

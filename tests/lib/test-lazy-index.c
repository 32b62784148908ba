/*
 * test-lazy-index.c - the lazy restore's index after a file's END
 * (lib/lazy-index.c): built from a known stream, it places every frame's
 * last contents; read back it says which records a lazy restore reads;
 * each record checks against it; and a damaged, truncated or lying index
 * is refused (parse or record check), never taken.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <xtk/xtk.h>

#include "lazy-index.h"
#include "test.h"

#define NR_PAGES 32

static struct xtk_ctx *ctx;
static char path[] = "/tmp/xtk-test-lzx-XXXXXX";
static uint64_t end_pos;                     /* END's end */
static uint64_t rec_a, rec_b, rec_c, rec_st; /* record offsets */
static uint8_t pages[NR_PAGES][4096];

static uint64_t file_size(int fd)
{
    struct stat st;

    TEST_ASSERT(fstat(fd, &st) == 0, "fstat");
    return (uint64_t)st.st_size;
}

/*
 * headers, HVM_PARAMS, PAGE_DATA A (frames 0-9), PAGE_DATA B (3 and 4
 * again, 5 XALLOC), HVM_CONTEXT, PAGE_DATA C (7 again, 20), END: written
 * with extra (a CHECKPOINT before A, or an L1 table page in B) where asked.
 */
static int write_stream(int checkpoint, int pv_page)
{
    struct xtk_stream *s;
    uint64_t params[3] = {1, 0, 0}, ctxt[3] = {1, 2, 3};
    uint64_t a[10], b[3], c[2];
    const void *pa[10], *pb[3], *pc[2];
    struct xtk_stream_counters cn;
    int fd = open(path, O_RDWR | O_TRUNC);

    TEST_ASSERT(fd >= 0, "open %s", path);
    s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE);
    TEST_ASSERT(s, "stream");
    TEST_ASSERT(
        xtk_stream_write_image_header(s) == 0 &&
            xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 0, 0) == 0,
        "headers");
    TEST_ASSERT(xtk_stream_write_record(s, XTK_REC_HVM_PARAMS, params, 24) == 0,
                "params");
    if (checkpoint)
        TEST_ASSERT(xtk_stream_write_checkpoint(s) == 0, "checkpoint");
    for (int i = 0; i < 10; i++) {
        a[i] = xtk_pfn_entry((uint64_t)i, XTK_PAGE_NOTAB);
        pa[i] = pages[i];
    }
    xtk_stream_get_counters(s, &cn);
    rec_a = cn.bytes;
    TEST_ASSERT(xtk_stream_write_page_data(s, 10, a, pa) == 0, "A");
    b[0] = xtk_pfn_entry(3, XTK_PAGE_NOTAB);
    b[1] = xtk_pfn_entry(4, pv_page ? XTK_PAGE_L1TAB : XTK_PAGE_NOTAB);
    b[2] = xtk_pfn_entry(5, XTK_PAGE_XALLOC);
    pb[0] = pages[3];
    pb[1] = pages[4];
    pb[2] = NULL;
    xtk_stream_get_counters(s, &cn);
    rec_b = cn.bytes;
    TEST_ASSERT(xtk_stream_write_page_data(s, 3, b, pb) == 0, "B");
    xtk_stream_get_counters(s, &cn);
    rec_st = cn.bytes;
    TEST_ASSERT(xtk_stream_write_record(s, XTK_REC_HVM_CONTEXT, ctxt, 20) == 0,
                "context");
    c[0] = xtk_pfn_entry(7, XTK_PAGE_NOTAB);
    c[1] = xtk_pfn_entry(20, XTK_PAGE_NOTAB);
    pc[0] = pages[7];
    pc[1] = pages[20];
    xtk_stream_get_counters(s, &cn);
    rec_c = cn.bytes;
    TEST_ASSERT(xtk_stream_write_page_data(s, 2, c, pc) == 0, "C");
    TEST_ASSERT(xtk_stream_write_end(s) == 0, "end");
    xtk_stream_get_counters(s, &cn);
    end_pos = cn.bytes;
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    return fd;
}

/* The index of the file as the save builds it, appended; its length. */
static size_t append_index(int fd)
{
    void *buf;
    size_t len;
    char why[256];

    TEST_ASSERT(xtk__lzx_build(fd, 0, end_pos, NR_PAGES, &buf, &len, why,
                               sizeof(why)) == 0,
                "build: %s", why);
    TEST_ASSERT(pwrite(fd, buf, len, (off_t)end_pos) == (ssize_t)len, "write");
    free(buf);
    return len;
}

static void test_build_and_read(void)
{
    int fd = write_stream(0, 0);
    struct xtk__lzx ix;
    char why[256];
    static const struct {
        uint64_t pfn;
        uint32_t count;
        uint64_t *rec;
        unsigned int slot; /* the page's place among its record's pages */
    } want[] = {
        {0, 3, &rec_a, 0}, {3, 2, &rec_b, 0}, {6, 1, &rec_a, 6},
        {7, 1, &rec_c, 0}, {8, 2, &rec_a, 8}, {20, 1, &rec_c, 1},
    };

    append_index(fd);
    TEST_ASSERT(xtk__lzx_read(fd, &ix, why, sizeof(why)) == 0, "read: %s", why);
    TEST_ASSERT(ix.nr_pages == NR_PAGES && ix.nr_runs == 6 && ix.nr_recs == 3 &&
                    ix.nr_others == 1,
                "%u runs, %u records, %u others", ix.nr_runs, ix.nr_recs,
                ix.nr_others);
    TEST_ASSERT(ix.pages_begin == rec_a && ix.others[0] == rec_st &&
                    ix.end_off == end_pos - 8 && ix.trailer_off == end_pos,
                "offsets");
    for (unsigned i = 0; i < 6; i++) {
        const struct xtk__lzx_run *r = &ix.runs[i];
        uint64_t rec = *want[i].rec;
        uint32_t count = rec == rec_a ? 10 : rec == rec_b ? 3 : 2;

        TEST_ASSERT(r->pfn == want[i].pfn && r->count == want[i].count &&
                        ix.recs[r->rec] == rec &&
                        r->off ==
                            rec + 16 + 8ull * count + 4096ull * want[i].slot,
                    "run %u: %llu+%u at %llu", i, (unsigned long long)r->pfn,
                    r->count, (unsigned long long)r->off);
    }
    TEST_ASSERT(xtk__lzx_find(&ix, 5) == -1 && xtk__lzx_find(&ix, 4) == 1 &&
                    xtk__lzx_find(&ix, 21) == -1 &&
                    xtk__lzx_find(&ix, 20) == 5 && xtk__lzx_next(&ix, 10) == 5,
                "find");
    /* What a lazy restore reads: up to A; then the state; then END. */
    TEST_ASSERT(xtk__lzx_next_read(&ix, 40) == 40, "before");
    TEST_ASSERT(xtk__lzx_next_read(&ix, rec_a) == rec_st, "A");
    TEST_ASSERT(xtk__lzx_next_read(&ix, rec_st) == rec_st, "state");
    TEST_ASSERT(xtk__lzx_next_read(&ix, rec_c) == end_pos - 8, "C");
    /* Each record checks against the index. */
    for (uint32_t r = 0; r < ix.nr_recs; r++) {
        uint8_t head[16 + 8 * 10];
        size_t need = 0, len = 16;
        int rc;

        TEST_ASSERT(pread(fd, head, sizeof(head), (off_t)ix.recs[r]) ==
                        (ssize_t)sizeof(head),
                    "pread");
        while ((rc = xtk__lzx_check_record(&ix, r, head, len, &need, why,
                                           sizeof(why))) == 1)
            len = need;
        TEST_ASSERT(rc == 0, "record %u: %s", r, why);
    }
    xtk__lzx_free(&ix);
    close(fd);
}

/* Rewrites run i of the index at the file's end (its CRC made good), then
 * parses it and checks every record: 0 if all passed. */
static int lie(int fd, unsigned i, int64_t dpfn, int64_t doff, int dcount)
{
    uint64_t size = file_size(fd), at, len;
    uint8_t foot[24], *buf;
    struct xtk__lzx ix;
    char why[256];
    uint32_t crc, nrecs, nothers;
    int rc = 0;

    TEST_ASSERT(pread(fd, foot, 24, (off_t)(size - 24)) == 24, "foot");
    memcpy(&at, foot, 8);
    len = size - 24 - at;
    buf = malloc(len);
    TEST_ASSERT(buf && pread(fd, buf, len, (off_t)at) == (ssize_t)len, "read");
    memcpy(&nrecs, buf + 48, 4);
    memcpy(&nothers, buf + 56, 4);
    {
        uint8_t *r = buf + 64 + 8 * (nrecs + nothers) + 24 * i;
        uint64_t pfn, off;
        uint32_t count;

        memcpy(&pfn, r, 8);
        memcpy(&off, r + 8, 8);
        memcpy(&count, r + 16, 4);
        pfn += (uint64_t)dpfn;
        off += (uint64_t)doff;
        count += (uint32_t)dcount;
        memcpy(r, &pfn, 8);
        memcpy(r + 8, &off, 8);
        memcpy(r + 16, &count, 4);
    }
    crc = (uint32_t)crc32(0, buf, (uInt)len);
    if (xtk__lzx_parse(buf, len, at, crc, &ix, why, sizeof(why)) < 0) {
        free(buf);
        return -1;
    }
    for (uint32_t r = 0; r < ix.nr_recs && !rc; r++) {
        uint8_t head[16 + 8 * 10];
        size_t need = 0;

        TEST_ASSERT(pread(fd, head, sizeof(head), (off_t)ix.recs[r]) > 0,
                    "pread");
        rc = xtk__lzx_check_record(&ix, r, head, sizeof(head), &need, why,
                                   sizeof(why));
        TEST_ASSERT(rc != 1, "a whole head was given");
    }
    xtk__lzx_free(&ix);
    free(buf);
    return rc;
}

static void test_lies(void)
{
    int fd = write_stream(0, 0);

    append_index(fd);
    TEST_ASSERT(lie(fd, 0, 0, 0, 0) == 0, "the index as built");
    /* Frames shifted against their pages, or a page more than the record
     * has, or a run that overlaps the next: each refused. */
    TEST_ASSERT(lie(fd, 0, 0, 4096, -1) < 0, "offset + 1 page");
    TEST_ASSERT(lie(fd, 0, 1, 0, -1) < 0, "frame + 1");
    TEST_ASSERT(lie(fd, 1, 0, 0, 1) < 0, "a third frame in B's run");
    TEST_ASSERT(lie(fd, 3, 0, 4096, 0) < 0, "7 at 20's page");
    TEST_ASSERT(lie(fd, 5, 0, -4096, 0) < 0, "20 at 7's page");
    TEST_ASSERT(lie(fd, 2, 0, 8, 0) < 0, "not page-aligned");
    TEST_ASSERT(lie(fd, 0, 0, 0, 1) < 0, "0-3 overlaps the next run");
    close(fd);
}

static void test_damage(void)
{
    int fd = write_stream(0, 0);
    size_t len = append_index(fd);
    uint64_t size = file_size(fd);
    uint8_t *orig = malloc(len);
    struct xtk__lzx ix;
    char why[256];

    TEST_ASSERT(orig && pread(fd, orig, len, (off_t)end_pos) == (ssize_t)len,
                "read");
    /* Every bit of head, records, others and runs (the CRC), and of the
     * foot's offset and CRC: never an index. */
    for (size_t bit = 0; bit < (len - 8) * 8; bit++) {
        uint8_t b = orig[bit / 8] ^ (uint8_t)(1u << (bit % 8));
        int rc;

        TEST_ASSERT(pwrite(fd, &b, 1, (off_t)(end_pos + bit / 8)) == 1, "w");
        rc = xtk__lzx_read(fd, &ix, why, sizeof(why));
        TEST_ASSERT(rc != 0, "bit %zu flipped: taken", bit);
        if (rc < 0)
            TEST_ASSERT(errno == EBADMSG, "bit %zu: errno %d", bit, errno);
        TEST_ASSERT(pwrite(fd, &orig[bit / 8], 1, (off_t)(end_pos + bit / 8)) ==
                        1,
                    "w");
    }
    /* The foot's magic: no index at all. */
    {
        uint8_t b = orig[len - 1] ^ 1;

        TEST_ASSERT(pwrite(fd, &b, 1, (off_t)(size - 1)) == 1, "w");
        TEST_ASSERT(xtk__lzx_read(fd, &ix, why, sizeof(why)) == 1, "magic");
        TEST_ASSERT(pwrite(fd, &orig[len - 1], 1, (off_t)(size - 1)) == 1, "w");
    }
    /* Cut anywhere in it: no index, or a refused one. */
    for (uint64_t cut = end_pos; cut < size; cut++) {
        TEST_ASSERT(ftruncate(fd, (off_t)cut) == 0, "truncate");
        TEST_ASSERT(xtk__lzx_read(fd, &ix, why, sizeof(why)) != 0,
                    "cut at %llu: taken", (unsigned long long)cut);
    }
    TEST_ASSERT(ftruncate(fd, (off_t)end_pos) == 0 &&
                    pwrite(fd, orig, len, (off_t)end_pos) == (ssize_t)len,
                "restore");
    TEST_ASSERT(xtk__lzx_read(fd, &ix, why, sizeof(why)) == 0, "again: %s",
                why);
    xtk__lzx_free(&ix);
    free(orig);
    close(fd);
}

static void test_not_indexed(void)
{
    void *buf;
    size_t len;
    char why[256];
    int fd;

    fd = write_stream(1, 0);
    TEST_ASSERT(xtk__lzx_build(fd, 0, end_pos, NR_PAGES, &buf, &len, why,
                               sizeof(why)) == 1,
                "a checkpointed stream indexed");
    TEST_ASSERT(strstr(why, "CHECKPOINT"), "%s", why);
    close(fd);
    fd = write_stream(0, 1);
    TEST_ASSERT(xtk__lzx_build(fd, 0, end_pos, NR_PAGES, &buf, &len, why,
                               sizeof(why)) == 1,
                "a PV page indexed");
    close(fd);
    fd = write_stream(0, 0);
    TEST_ASSERT(
        xtk__lzx_build(fd, 0, end_pos, 16, &buf, &len, why, sizeof(why)) == 1,
        "frame 20 of 16 indexed");
    TEST_ASSERT(xtk__lzx_build(fd, 0, end_pos - 8, NR_PAGES, &buf, &len, why,
                               sizeof(why)) == 1,
                "no END");
    close(fd);
}

int main(void)
{
    int fd = mkstemp(path);

    TEST_ASSERT(fd >= 0, "mkstemp");
    close(fd);
    for (int i = 0; i < NR_PAGES; i++)
        memset(pages[i], i + 1, sizeof(pages[i]));
    ctx = xtk_ctx_open(NULL, NULL, 0);
    TEST_ASSERT(ctx, "ctx");
    TEST_RUN(test_build_and_read);
    TEST_RUN(test_lies);
    TEST_RUN(test_damage);
    TEST_RUN(test_not_indexed);
    xtk_ctx_close(ctx);
    unlink(path);
    return 0;
}

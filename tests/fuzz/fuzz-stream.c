/*
 * fuzz-stream.c - libFuzzer targets for the record reader.
 *
 * fuzz-stream-reader: the input is a plain stream; fuzz-stream-zlib: the
 * input goes through the zlib layer first (built with FUZZ_ZLIB).  The
 * first byte picks reader options (checksums required, a small record
 * limit, a placer that takes PAGE_DATA contents into memory of its own as
 * the restore does, no reading of the framing), the rest is the stream:
 * bare, or framed as libxl's stream or an xl save file, whose framing is
 * read first (config included) as the restore does, and whose libxl
 * records after CHECKPOINT and END the reader checks.  Every record is
 * read to the
 * end and PAGE_DATA views (or the placed pages) are walked, so that
 * anything the reader hands back is touched.  A crash, a hang, a leak or
 * unbounded memory is a bug.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xtk/xtk.h>

#include "stream-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern volatile uint64_t xtk_fuzz_sink;

static struct xtk_ctx *ctx;

/* The placer's memory: 64 pages, in pieces of at most 8 pages. */
static uint8_t area[64 * XTK_PAGE_SIZE];
static size_t placed_bytes;

static int place(void *arg, const struct xtk_stream_page_data *pd,
                 struct iovec *iov, int *iovcnt)
{
    size_t len = (size_t)pd->npages * XTK_PAGE_SIZE, off = 0;
    int n = 0;

    (void)arg;
    if (len > sizeof(area))
        return 0;
    while (off < len && n < *iovcnt) {
        size_t k =
            len - off < 8 * XTK_PAGE_SIZE ? len - off : 8 * XTK_PAGE_SIZE;
        iov[n++] = (struct iovec){area + off, k};
        off += k;
    }
    if (off < len)
        return 0;
    *iovcnt = n;
    placed_bytes = len;
    return 1;
}

/* Reads the whole stream the way a restore would; returns the sum of
 * everything it saw, so nothing is optimised away. */
static uint64_t consume(struct xtk_stream *s, int framing)
{
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;
    struct xtk_stream_framing fr;
    uint64_t sum = 0;
    uint8_t extra;

    if (framing) {
        if (xtk_stream_read_framing(s, &fr) < 0)
            return 0;
        sum += fr.framing + fr.config_len + fr.libxc_offset;
        if (fr.config)
            sum += ((const uint8_t *)fr.config)[fr.config_len]; /* its NUL */
        free(fr.config);
    }
    if (xtk_stream_read_image_header(s, &ih) < 0 ||
        xtk_stream_read_domain_header(s, &dh) < 0)
        return 0;
    for (int n = 0; n < 100000; n++) {
        struct xtk_stream_page_data pd;

        if (xtk_stream_read_record(s, &rec) < 0)
            return sum;
        sum += rec.type + rec.length;
        if (rec.length && !xtk__stream_placed(s)) /* else: header only */
            sum += ((const uint8_t *)rec.body)[rec.length - 1];
        if (rec.type == XTK_REC_PAGE_DATA &&
            xtk_stream_page_data_parse(rec.body, rec.length, &pd) == 0) {
            for (uint32_t i = 0; i < pd.count; i++)
                sum += xtk_pfn_entry_pfn(pd.pfns[i]);
            if (xtk__stream_placed(s))
                sum += area[placed_bytes - 1];
            else if (pd.npages)
                sum += pd.pages[(size_t)pd.npages * XTK_PAGE_SIZE - 1];
        }
        if (rec.type == XTK_REC_END)
            break;
    }
    if (xtk_stream_get_framing(s, &fr) == 0)
        sum += fr.libxl_records + fr.libxl_end_offset;
    if (xtk_stream_read(s, &extra, 1) == 0)
        sum += extra;
    return sum;
}

/* Where consume()'s result goes, so that nothing is optimised away. */
volatile uint64_t xtk_fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xtk_stream *s;
    unsigned flags = XTK_STREAM_READ | XTK_STREAM_OWN_FD;
    uint8_t opts;
    int fd;

    if (!ctx)
        ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);
    if (!ctx || size < 1)
        return 0;
    opts = data[0];
    data++;
    size--;
    if (opts & 1)
        flags |= XTK_STREAM_CHECKSUM;
    fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    lseek(fd, 0, SEEK_SET);
    s = xtk_stream_fd(ctx, fd, flags);
    if (!s)
        return 0;
    if (opts & 2)
        xtk_stream_set_record_limit(s, 4096 + 64);
    if (opts & 4)
        xtk__stream_set_placer(s, place, NULL);
#ifdef FUZZ_ZLIB
    if (xtk_stream_push_zlib(s, -1) < 0) {
        xtk_stream_close(s);
        return 0;
    }
#endif
    xtk_fuzz_sink = consume(s, !(opts & 8));
    xtk_stream_close(s);
    return 0;
}

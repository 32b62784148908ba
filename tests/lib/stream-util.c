/*
 * stream-util.c - the known stream the stream tests write and read back.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stream-util.h"
#include "test.h"

uint64_t test_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

struct xtk_ctx *test_ctx(void)
{
    const char *v = getenv("XTK_TEST_VERBOSE");
    struct xtk_ctx *ctx;

    if (v && *v == '1')
        ctx = xtk_ctx_open(xtk_logger_stderr_new(XTK_LOG_DEBUG, 0), NULL,
                           XTK_CTX_OWN_LOGGER);
    else
        ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);
    TEST_ASSERT(ctx, "xtk_ctx_open");
    return ctx;
}

static struct trec *add(struct tstream *t, uint32_t type, uint32_t length)
{
    struct trec *r;

    t->recs = realloc(t->recs, (t->nrecs + 1) * sizeof(*t->recs));
    TEST_ASSERT(t->recs, "realloc");
    r = &t->recs[t->nrecs++];
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->length = length;
    if (length) {
        r->body = aligned_alloc(8, (length + 7) & ~7u);
        TEST_ASSERT(r->body, "aligned_alloc");
    }
    return r;
}

static void add_page_data(struct tstream *t, uint64_t *rnd,
                          const uint64_t *pfn_list, uint32_t n)
{
    uint64_t *entries = malloc(n * sizeof(*entries));
    uint32_t npages = 0;
    struct trec *r;
    uint8_t *p;

    TEST_ASSERT(entries, "malloc");
    for (uint32_t i = 0; i < n; i++) {
        unsigned type = XTK_PAGE_NOTAB;
        if (i % 32 == 31)
            type = XTK_PAGE_XTAB;
        else if (pfn_list[i] % 16 == 15)
            type = XTK_PAGE_XALLOC;
        else if (pfn_list[i] % 64 == 1)
            type = XTK_PAGE_L1TAB | XTK_PAGE_PINNED;
        entries[i] = xtk_pfn_entry(pfn_list[i], type);
        npages += (uint32_t)xtk_page_type_has_data(type);
    }
    r = add(t, XTK_REC_PAGE_DATA, 8 + 8 * n + XTK_PAGE_SIZE * npages);
    r->count = n;
    r->pfns = entries;
    r->pages = calloc(n, sizeof(*r->pages));
    TEST_ASSERT(r->pages, "calloc");
    memcpy(r->body, &n, 4);
    memset(r->body + 4, 0, 4);
    memcpy(r->body + 8, entries, 8 * n);
    p = r->body + 8 + 8 * n;
    for (uint32_t i = 0; i < n; i++) {
        if (!xtk_page_type_has_data(xtk_pfn_entry_type(entries[i])))
            continue;
        for (unsigned k = 0; k < XTK_PAGE_SIZE; k += 8) {
            uint64_t w = test_rand(rnd);
            memcpy(p + k, &w, 8);
        }
        r->pages[i] = malloc(XTK_PAGE_SIZE);
        TEST_ASSERT(r->pages[i], "malloc");
        memcpy(r->pages[i], p, XTK_PAGE_SIZE);
        p += XTK_PAGE_SIZE;
    }
}

void tstream_build(struct tstream *t, uint64_t seed, unsigned npages,
                   unsigned batch, unsigned epochs, unsigned opts)
{
    uint64_t rnd = seed | 1, *list = malloc(npages * sizeof(*list));

    TEST_ASSERT(list && batch, "malloc");
    memset(t, 0, sizeof(*t));
    t->domain_type = XTK_DOMAIN_X86_HVM;
    add(t, XTK_REC_STATIC_DATA_END, 0);
    for (unsigned e = 0; e < epochs; e++) {
        unsigned n = 0;
        struct trec *r;

        for (unsigned p = 0; p < npages; p++)
            if (!e || test_rand(&rnd) % 4 == 0)
                list[n++] = p;
        for (unsigned i = 0; i < n; i += batch)
            add_page_data(t, &rnd, list + i, n - i < batch ? n - i : batch);

        r = add(t, XTK_REC_X86_TSC_INFO, 24);
        memset(r->body, 0, 24);
        r->body[4] = (uint8_t)e; /* khz */
        r = add(t, XTK_REC_HVM_PARAMS, 8 + 16 * 2);
        memset(r->body, 0, r->length);
        r->body[0] = 2;
        r->body[8] = 1;
        r->body[16] = (uint8_t)(0x40 + e);
        r->body[24] = 2;
        r->body[32] = 7;
        r = add(t, XTK_REC_HVM_CONTEXT, 29 + 2 * e);
        for (unsigned i = 0; i < r->length; i++)
            r->body[i] = (uint8_t)(test_rand(&rnd) | 1);
        if (opts & TS_OPTIONAL) {
            r = add(t, XTK_REC_KVM_VCPU, 13);
            for (unsigned i = 0; i < r->length; i++)
                r->body[i] = (uint8_t)(0x80 + i);
        }
        if (e + 1 < epochs)
            add(t, XTK_REC_CHECKPOINT, 0);
    }
    add(t, XTK_REC_END, 0);
    free(list);
}

void tstream_free(struct tstream *t)
{
    for (size_t i = 0; i < t->nrecs; i++) {
        struct trec *r = &t->recs[i];
        for (uint32_t k = 0; r->pages && k < r->count; k++)
            free(r->pages[k]);
        free(r->pages);
        free(r->pfns);
        free(r->body);
    }
    free(t->recs);
    memset(t, 0, sizeof(*t));
}

void tstream_write(const struct tstream *t, struct xtk_stream *s)
{
    TEST_ASSERT(xtk_stream_write_image_header(s) == 0, "image header");
    TEST_ASSERT(xtk_stream_write_domain_header(s, t->domain_type, 4, 17) == 0,
                "domain header");
    for (size_t i = 0; i < t->nrecs; i++) {
        const struct trec *r = &t->recs[i];
        int rc;

        if (r->type == XTK_REC_PAGE_DATA)
            rc = xtk_stream_write_page_data(s, r->count, r->pfns,
                                            (const void *const *)r->pages);
        else if (r->type == XTK_REC_CHECKPOINT)
            rc = xtk_stream_write_checkpoint(s);
        else if (r->type == XTK_REC_END)
            rc = xtk_stream_write_end(s);
        else
            rc = xtk_stream_write_record(s, r->type, r->body, r->length);
        TEST_ASSERT(rc == 0, "writing record %zu (type %#x)", i, r->type);
    }
}

unsigned tstream_check(const struct tstream *t, struct xtk_stream *s)
{
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    unsigned checksums = 0;

    TEST_ASSERT(xtk_stream_read_image_header(s, &ih) == 0, "image header");
    TEST_ASSERT(ih.version == 3 && ih.options == 0, "version %u options %u",
                ih.version, ih.options);
    TEST_ASSERT(xtk_stream_read_domain_header(s, &dh) == 0, "domain header");
    TEST_ASSERT(dh.type == t->domain_type && dh.page_shift == 12 &&
                    dh.xen_major == 4 && dh.xen_minor == 17,
                "domain header %u %u %u.%u", dh.type, dh.page_shift,
                dh.xen_major, dh.xen_minor);
    for (size_t i = 0; i < t->nrecs; i++) {
        const struct trec *r = &t->recs[i];
        struct xtk_stream_record rec;

        TEST_ASSERT(xtk_stream_read_record(s, &rec) == 0, "reading record %zu",
                    i);
        if (rec.type == XTK_REC_CHECKSUM) {
            checksums++;
            i--;
            continue;
        }
        TEST_ASSERT(rec.type == r->type && rec.length == r->length,
                    "record %zu: type %#x length %u, want %#x %u", i, rec.type,
                    rec.length, r->type, r->length);
        TEST_ASSERT(!r->length || !memcmp(rec.body, r->body, r->length),
                    "record %zu (%s): body differs", i,
                    xtk_stream_record_name(r->type));
        TEST_ASSERT(((uintptr_t)rec.body & 7) == 0, "body alignment");
        if (r->type == XTK_REC_PAGE_DATA) {
            struct xtk_stream_page_data pd;
            uint32_t k = 0;

            TEST_ASSERT(xtk_stream_page_data_parse(rec.body, rec.length, &pd) ==
                            0,
                        "parse");
            TEST_ASSERT(pd.count == r->count, "count");
            for (uint32_t e = 0; e < pd.count; e++) {
                TEST_ASSERT(pd.pfns[e] == r->pfns[e], "entry %u", e);
                if (!r->pages[e])
                    continue;
                TEST_ASSERT(!memcmp(pd.pages + (size_t)k * XTK_PAGE_SIZE,
                                    r->pages[e], XTK_PAGE_SIZE),
                            "page of entry %u", e);
                k++;
            }
            TEST_ASSERT(k == pd.npages, "pages %u vs %u", k, pd.npages);
        }
    }
    return checksums;
}

uint8_t *tstream_bytes(const struct tstream *t, unsigned flags, int level,
                       size_t *len)
{
    struct xtk_ctx *ctx = test_ctx();
    int fd = memfd_create("tstream", MFD_CLOEXEC);
    struct xtk_stream *s;
    uint8_t *data;
    off_t size;

    TEST_ASSERT(fd >= 0, "memfd_create");
    s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE | flags);
    TEST_ASSERT(s, "xtk_stream_fd");
    if (level >= 0)
        TEST_ASSERT(xtk_stream_push_zlib(s, level) == 0, "push_zlib");
    tstream_write(t, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    size = lseek(fd, 0, SEEK_END);
    TEST_ASSERT(size > 0, "size");
    data = malloc((size_t)size);
    TEST_ASSERT(data && pread(fd, data, (size_t)size, 0) == size, "pread");
    close(fd);
    xtk_ctx_close(ctx);
    *len = (size_t)size;
    return data;
}

struct xtk_stream *mem_reader(struct xtk_ctx *ctx, const void *data, size_t len,
                              unsigned flags, int zlib)
{
    int fd = memfd_create("input", MFD_CLOEXEC);
    struct xtk_stream *s;

    TEST_ASSERT(fd >= 0, "memfd_create");
    TEST_ASSERT(!len || write(fd, data, len) == (ssize_t)len, "write");
    TEST_ASSERT(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    s = xtk_stream_fd(ctx, fd, XTK_STREAM_READ | XTK_STREAM_OWN_FD | flags);
    TEST_ASSERT(s, "xtk_stream_fd");
    if (zlib)
        TEST_ASSERT(xtk_stream_push_zlib(s, -1) == 0, "push_zlib");
    return s;
}

int read_all(struct xtk_ctx *ctx, const void *data, size_t len, unsigned flags,
             int zlib)
{
    struct xtk_stream *s = mem_reader(ctx, data, len, flags, zlib);
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;
    int err = 0;
    uint8_t extra;

    if (xtk_stream_read_image_header(s, &ih) < 0 ||
        xtk_stream_read_domain_header(s, &dh) < 0)
        goto fail;
    for (;;) {
        if (xtk_stream_read_record(s, &rec) < 0)
            goto fail;
        if ((rec.type & XTK_REC_OPTIONAL) &&
            !xtk_stream_record_name(rec.type)) {
            err = EPROTO;
            goto out;
        }
        if (rec.type == XTK_REC_END)
            break;
    }
    if (xtk_stream_read(s, &extra, 1) == 0) {
        err = EBADMSG; /* data after END */
        goto out;
    }
    if (errno != ENODATA)
        goto fail;
    goto out;
fail:
    err = errno;
    TEST_ASSERT(err && err == xtk_stream_error(s),
                "errno %d is the sticky error %d", err, xtk_stream_error(s));
out:
    xtk_stream_close(s);
    return err;
}

/*
 * test-stream.c - the record stream: round trips through every layer
 * (file, zlib, socketpair, TCP loopback, non-blocking pipe), Xen's own
 * verify-stream-v2 on a plain stream read back through both layers, the sticky
 * error, timeouts, argument checks, what the writer refuses, and a reader
 * fed a lying length.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream-internal.h"
#include "stream-util.h"
#include "test.h"

static struct xtk_ctx *ctx;
static struct tstream known;

static char *tmp_path(void)
{
    static char path[64];
    int fd;

    strcpy(path, "/tmp/xtk-test-stream-XXXXXX");
    fd = mkstemp(path);
    TEST_ASSERT(fd >= 0, "mkstemp");
    close(fd);
    return path;
}

/* Plain file: write, read back, compare everything; counters agree. */
static void test_roundtrip_file(void)
{
    char *path = tmp_path();
    struct xtk_stream_counters wc, rc;
    struct xtk_stream *s = xtk_stream_file(ctx, path, XTK_STREAM_WRITE);

    TEST_ASSERT(s, "open for writing");
    tstream_write(&known, s);
    TEST_ASSERT(xtk_stream_get_counters(s, &wc) == 0, "counters");
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    TEST_ASSERT(wc.bytes == wc.raw_bytes, "plain: %llu vs %llu",
                (unsigned long long)wc.bytes, (unsigned long long)wc.raw_bytes);

    s = xtk_stream_file(ctx, path, XTK_STREAM_READ);
    TEST_ASSERT(s, "open for reading");
    TEST_ASSERT(tstream_check(&known, s) == 0, "no checksum records");
    TEST_ASSERT(xtk_stream_get_counters(s, &rc) == 0, "counters");
    TEST_ASSERT(rc.bytes == wc.bytes && rc.records == wc.records &&
                    rc.pages == wc.pages && rc.page_entries == wc.page_entries,
                "reader counted %llu bytes %llu records %llu pages, writer "
                "%llu %llu %llu",
                (unsigned long long)rc.bytes, (unsigned long long)rc.records,
                (unsigned long long)rc.pages, (unsigned long long)wc.bytes,
                (unsigned long long)wc.records, (unsigned long long)wc.pages);
    TEST_ASSERT(wc.records == known.nrecs, "records %llu, want %zu",
                (unsigned long long)wc.records, known.nrecs);
    TEST_ASSERT_ERRNO(xtk_stream_read_record(s, &(struct xtk_stream_record){0}),
                      EINVAL); /* after END */
    TEST_ASSERT(xtk_stream_error(s) == 0, "EINVAL is not sticky");
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    unlink(path);
}

/* zlib: gzip out, smaller, readable only through the zlib layer. */
static void test_roundtrip_zlib(void)
{
    size_t plain_len, z_len;
    uint8_t *plain = tstream_bytes(&known, 0, -1, &plain_len);
    uint8_t *z = tstream_bytes(&known, 0, 1, &z_len);
    struct xtk_stream *s;

    TEST_ASSERT(z[0] == 0x1f && z[1] == 0x8b, "a gzip header");
    TEST_ASSERT(z_len < plain_len, "compressed %zu < plain %zu", z_len,
                plain_len);
    s = mem_reader(ctx, z, z_len, 0, 1);
    tstream_check(&known, s);
    xtk_stream_close(s);
    TEST_ASSERT(read_all(ctx, z, z_len, 0, 1) == 0, "strict read of gzip");
    TEST_ASSERT(read_all(ctx, plain, plain_len, 0, 0) == 0, "strict read");
    /* Compressed bytes through the plain layer: not a stream. */
    TEST_ASSERT(read_all(ctx, z, z_len, 0, 0) == EBADMSG, "gzip as plain");
    /* Plain bytes through the zlib layer: corrupt compressed data. */
    TEST_ASSERT(read_all(ctx, plain, plain_len, 0, 1) == EBADMSG,
                "plain as gzip");
    /* Levels 0 and 9 read back the same. */
    for (int level = 0; level <= 9; level += 9) {
        free(z);
        z = tstream_bytes(&known, 0, level, &z_len);
        s = mem_reader(ctx, z, z_len, 0, 1);
        tstream_check(&known, s);
        xtk_stream_close(s);
    }
    free(z);
    free(plain);
}

/*
 * Xen's own verifier on a stream of Xen's records only (no optional ones:
 * Xen 4.17 refuses those), written through the plain layer; then the same
 * records read back through the plain layer and, written again through the
 * zlib layer, through the zlib layer: every record, pfn and page byte
 * compared with what was written.
 */
static void test_xen_verifier(void)
{
    const char *bindir = getenv("XEN_BINDIR");
    char *path = tmp_path(), zpath[80], cmd[512];
    struct tstream xs;
    struct xtk_stream *s;
    int rc;

    TEST_ASSERT(bindir && *bindir, "XEN_BINDIR is set (make check sets it)");
    snprintf(cmd, sizeof(cmd), "%s/verify-stream-v2", bindir);
    TEST_ASSERT(access(cmd, X_OK) == 0,
                "%s exists (Debian package xen-utils-4.17)", cmd);
    tstream_build(&xs, 7, 2000, 300, 3, 0);
    s = xtk_stream_file(ctx, path, XTK_STREAM_WRITE);
    TEST_ASSERT(s, "open for writing");
    tstream_write(&xs, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    snprintf(cmd, sizeof(cmd),
             "PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 "
             "%s/verify-stream-v2 -q -i %s",
             bindir, path);
    rc = system(cmd);
    TEST_ASSERT(rc == 0, "verify-stream-v2 accepts the stream (status %d)", rc);

    s = xtk_stream_file(ctx, path, XTK_STREAM_READ);
    TEST_ASSERT(s, "open for reading");
    tstream_check(&xs, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");

    snprintf(zpath, sizeof(zpath), "%s.gz", path);
    s = xtk_stream_file(ctx, zpath, XTK_STREAM_WRITE);
    TEST_ASSERT(s && xtk_stream_push_zlib(s, 1) == 0, "zlib writer");
    tstream_write(&xs, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    s = xtk_stream_file(ctx, zpath, XTK_STREAM_READ);
    TEST_ASSERT(s && xtk_stream_push_zlib(s, 0) == 0, "zlib reader");
    tstream_check(&xs, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    /* The gzip file is the plain file compressed, byte for byte. */
    snprintf(cmd, sizeof(cmd), "zcat %s | cmp -s - %s", zpath, path);
    TEST_ASSERT(system(cmd) == 0,
                "zcat of the zlib layer's file is the plain file");
    unlink(zpath);
    unlink(path);
    tstream_free(&xs);
}

/*
 * The placer (restore's path for pages resent to frames already written):
 * PAGE_DATA contents read straight into the caller's memory, every other
 * record as usual; a record the placer declines comes through the body
 * buffer.  Every placed page must be the page written; a stream cut in
 * the middle of placed pages is EBADMSG.
 */
struct placer {
    uint8_t *area;
    size_t used, cap;
    unsigned int calls;
};

static int test_place(void *arg, const struct xtk_stream_page_data *pd,
                      struct iovec *iov, int *iovcnt)
{
    struct placer *p = arg;
    size_t len = (size_t)pd->npages * XTK_PAGE_SIZE;

    if (++p->calls % 3 == 0 || p->used + len > p->cap || *iovcnt < 2)
        return 0; /* every third declined */
    /* Two pieces, so that readv fills more than one. */
    iov[0] = (struct iovec){p->area + p->used, XTK_PAGE_SIZE};
    iov[1] =
        (struct iovec){p->area + p->used + XTK_PAGE_SIZE, len - XTK_PAGE_SIZE};
    *iovcnt = pd->npages > 1 ? 2 : 1;
    p->used += len;
    return 1;
}

static void test_placer(void)
{
    char *path = tmp_path();
    struct placer pl = {.cap = 64u << 20};
    struct xtk_stream *s = xtk_stream_file(ctx, path, XTK_STREAM_WRITE);
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    unsigned placed = 0, declined = 0;
    size_t off = 0;
    off_t size;

    TEST_ASSERT(s, "open for writing");
    tstream_write(&known, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    pl.area = malloc(pl.cap);
    TEST_ASSERT(pl.area, "malloc");

    s = xtk_stream_file(ctx, path, XTK_STREAM_READ);
    TEST_ASSERT(s, "open for reading");
    xtk__stream_set_placer(s, test_place, &pl);
    TEST_ASSERT(xtk_stream_read_image_header(s, &ih) == 0 &&
                    xtk_stream_read_domain_header(s, &dh) == 0,
                "headers");
    for (size_t i = 0; i < known.nrecs; i++) {
        const struct trec *r = &known.recs[i];
        struct xtk_stream_record rec;
        struct xtk_stream_page_data pd;
        uint32_t k = 0;

        TEST_ASSERT(xtk_stream_read_record(s, &rec) == 0, "record %zu", i);
        TEST_ASSERT(rec.type == r->type && rec.length == r->length,
                    "record %zu: type %#x length %u", i, rec.type, rec.length);
        if (r->type != XTK_REC_PAGE_DATA) {
            TEST_ASSERT(!xtk__stream_placed(s), "only PAGE_DATA is placed");
            TEST_ASSERT(!r->length || !memcmp(rec.body, r->body, r->length),
                        "record %zu body", i);
            continue;
        }
        TEST_ASSERT(xtk_stream_page_data_parse(rec.body, rec.length, &pd) == 0,
                    "parse");
        for (uint32_t e = 0; e < pd.count; e++) {
            const uint8_t *got;

            TEST_ASSERT(pd.pfns[e] == r->pfns[e], "entry %u", e);
            if (!r->pages[e])
                continue;
            got = xtk__stream_placed(s)
                      ? pl.area + off + (size_t)k * XTK_PAGE_SIZE
                      : pd.pages + (size_t)k * XTK_PAGE_SIZE;
            TEST_ASSERT(!memcmp(got, r->pages[e], XTK_PAGE_SIZE),
                        "record %zu page of entry %u (%s)", i, e,
                        xtk__stream_placed(s) ? "placed" : "in the body");
            k++;
        }
        if (xtk__stream_placed(s)) {
            off += (size_t)pd.npages * XTK_PAGE_SIZE;
            placed++;
        } else if (pd.npages) {
            declined++;
        }
    }
    TEST_ASSERT(placed >= 2 && declined >= 1, "placed %u, declined %u", placed,
                declined);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");

    /* Cut in the middle of the first record's pages (placed: the first
     * call is taken): a clean EBADMSG, no crash. */
    size = 64 + 16 + 8 + 8 * (off_t)known.recs[1].count + 3 * XTK_PAGE_SIZE + 5;
    TEST_ASSERT(known.recs[1].type == XTK_REC_PAGE_DATA, "record 1 has pages");
    TEST_ASSERT(truncate(path, size) == 0, "truncate");
    pl = (struct placer){.area = pl.area, .cap = 64u << 20};
    s = xtk_stream_file(ctx, path, XTK_STREAM_READ);
    TEST_ASSERT(s, "open");
    xtk__stream_set_placer(s, test_place, &pl);
    TEST_ASSERT(xtk_stream_read_image_header(s, &ih) == 0 &&
                    xtk_stream_read_domain_header(s, &dh) == 0,
                "headers");
    {
        struct xtk_stream_record rec;
        TEST_ASSERT(xtk_stream_read_record(s, &rec) == 0, "STATIC_DATA_END");
        TEST_ASSERT_ERRNO(xtk_stream_read_record(s, &rec), EBADMSG);
        TEST_ASSERT(pl.calls == 1, "the record was being placed");
    }
    xtk_stream_close(s);
    free(pl.area);
    unlink(path);
}

/* Checksum records: after the domain header and before CHECKPOINT/END;
 * verified whether or not the reader asks for them. */
static void test_checksums(void)
{
    size_t len, plain_len;
    uint8_t *data = tstream_bytes(&known, XTK_STREAM_CHECKSUM, -1, &len);
    uint8_t *plain = tstream_bytes(&known, 0, -1, &plain_len);
    unsigned checkpoints = 0;
    struct xtk_stream *s;

    for (size_t i = 0; i < known.nrecs; i++)
        checkpoints += known.recs[i].type == XTK_REC_CHECKPOINT;
    for (unsigned flags = 0; flags <= XTK_STREAM_CHECKSUM;
         flags += XTK_STREAM_CHECKSUM) {
        s = mem_reader(ctx, data, len, flags, 0);
        unsigned n = tstream_check(&known, s);
        TEST_ASSERT(n == checkpoints + 2, "%u checksum records, want %u", n,
                    checkpoints + 2);
        xtk_stream_close(s);
    }
    TEST_ASSERT(len == plain_len + (checkpoints + 2) * 24ull, "24 bytes each");
    /* A reader that requires checksums refuses a stream without. */
    TEST_ASSERT(read_all(ctx, plain, plain_len, XTK_STREAM_CHECKSUM, 0) ==
                    EBADMSG,
                "no checksums");
    /* Through zlib too. */
    free(data);
    data = tstream_bytes(&known, XTK_STREAM_CHECKSUM, 1, &len);
    TEST_ASSERT(read_all(ctx, data, len, XTK_STREAM_CHECKSUM, 1) == 0,
                "checksummed gzip");
    free(data);
    free(plain);
}

/* A checksummed PAGE_DATA record of LIVE_PAGES pages written into a pipe
 * of one page, whose pages change while the writer is blocked in it. */
#define LIVE_PAGES 8
static uint8_t *live_pages;

static void *live_writer(void *p)
{
    struct xtk_stream *s = xtk_stream_fd(ctx, *(int *)p,
                                         XTK_STREAM_WRITE | XTK_STREAM_OWN_FD |
                                             XTK_STREAM_CHECKSUM);
    uint64_t pfns[LIVE_PAGES];
    const void *pages[LIVE_PAGES];

    TEST_ASSERT(s, "writer stream");
    for (int i = 0; i < LIVE_PAGES; i++) {
        pfns[i] = xtk_pfn_entry((uint64_t)i, XTK_PAGE_NOTAB);
        pages[i] = live_pages + (size_t)i * XTK_PAGE_SIZE;
    }
    TEST_ASSERT(
        xtk_stream_write_image_header(s) == 0 &&
            xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 4, 17) == 0 &&
            xtk_stream_write_page_data(s, LIVE_PAGES, pfns, pages) == 0 &&
            xtk_stream_write_end(s) == 0,
        "write");
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    return NULL;
}

/*
 * What a live save does: the pages are a running guest's, and the guest
 * writes to one after the writer took it but before the kernel has its
 * bytes (here: while the writer is blocked on a full pipe).  The checksum
 * must cover the bytes that were written, so the stream verifies.
 */
static void test_checksum_live_pages(void)
{
    int p[2], queued = 0, full = (int)XTK_PAGE_SIZE;
    size_t cap = 64 * XTK_PAGE_SIZE, len = 0;
    uint8_t *got = malloc(cap);
    pthread_t th;

    live_pages = malloc((size_t)LIVE_PAGES * XTK_PAGE_SIZE);
    TEST_ASSERT(got && live_pages, "malloc");
    memset(live_pages, 0x5a, (size_t)LIVE_PAGES * XTK_PAGE_SIZE);
    TEST_ASSERT(pipe2(p, O_CLOEXEC) == 0, "pipe2");
    TEST_ASSERT(fcntl(p[1], F_SETPIPE_SZ, XTK_PAGE_SIZE) >= 0, "pipe size");
    TEST_ASSERT(pthread_create(&th, NULL, live_writer, &p[1]) == 0, "thread");
    /* The pipe is full: the writer is blocked part-way through the pages. */
    for (int i = 0; i < 5000 && queued < full; i++) {
        TEST_ASSERT(ioctl(p[0], FIONREAD, &queued) == 0, "FIONREAD");
        if (queued < full)
            usleep(1000);
    }
    TEST_ASSERT(queued == full, "the pipe filled (%d bytes)", queued);
    usleep(20000);
    /* The guest runs on. */
    memset(live_pages, 0xa5, (size_t)LIVE_PAGES * XTK_PAGE_SIZE);
    for (;;) {
        ssize_t n = read(p[0], got + len, cap - len);
        TEST_ASSERT(n >= 0 && len + (size_t)n < cap, "read");
        if (!n)
            break;
        len += (size_t)n;
    }
    pthread_join(th, NULL);
    close(p[0]);
    TEST_ASSERT(read_all(ctx, got, len, XTK_STREAM_CHECKSUM, 0) == 0,
                "the checksummed stream of changing pages verifies");
    free(got);
    free(live_pages);
}

struct writer_arg {
    int fd;
    int socket;
    int level;
    int rc;
};

static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    struct xtk_stream *s =
        a->socket
            ? xtk_stream_socket(ctx, a->fd,
                                XTK_STREAM_WRITE | XTK_STREAM_OWN_FD)
            : xtk_stream_fd(ctx, a->fd, XTK_STREAM_WRITE | XTK_STREAM_OWN_FD);

    TEST_ASSERT(s, "writer stream");
    if (a->level >= 0)
        TEST_ASSERT(xtk_stream_push_zlib(s, a->level) == 0, "push_zlib");
    tstream_write(&known, s);
    a->rc = xtk_stream_close(s);
    return NULL;
}

/* One end written by a thread, the other read here and compared. */
static void transfer(int wfd, int rfd, int socket, int level)
{
    struct writer_arg a = {.fd = wfd, .socket = socket, .level = level};
    struct xtk_stream *s;
    pthread_t th;
    uint8_t extra;

    TEST_ASSERT(pthread_create(&th, NULL, writer_thread, &a) == 0, "thread");
    s = socket
            ? xtk_stream_socket(ctx, rfd, XTK_STREAM_READ | XTK_STREAM_OWN_FD)
            : xtk_stream_fd(ctx, rfd, XTK_STREAM_READ | XTK_STREAM_OWN_FD);
    TEST_ASSERT(s, "reader stream");
    if (level >= 0)
        TEST_ASSERT(xtk_stream_push_zlib(s, -1) == 0, "push_zlib");
    TEST_ASSERT(xtk_stream_set_timeout(s, 20000) == 0, "timeout");
    tstream_check(&known, s);
    TEST_ASSERT_ERRNO(xtk_stream_read(s, &extra, 1), ENODATA);
    xtk_stream_close(s);
    pthread_join(th, NULL);
    TEST_ASSERT(a.rc == 0, "writer closed cleanly");
}

static void test_socketpair(void)
{
    for (int level = -1; level <= 1; level += 2) {
        int sv[2], small = 4096;

        TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
        /* Small buffers: the kernel takes partial writes. */
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        transfer(sv[0], sv[1], 1, level);
    }
}

static void test_tcp_loopback(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t slen = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c, a;

    TEST_ASSERT(l >= 0, "socket");
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TEST_ASSERT(bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind");
    TEST_ASSERT(listen(l, 1) == 0, "listen");
    TEST_ASSERT(getsockname(l, (struct sockaddr *)&sa, &slen) == 0, "name");
    for (int level = -1; level <= 1; level += 2) {
        c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        TEST_ASSERT(c >= 0, "socket");
        TEST_ASSERT(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0,
                    "connect");
        a = accept(l, NULL, NULL);
        TEST_ASSERT(a >= 0, "accept");
        transfer(c, a, 1, level);
    }
    close(l);
}

/* Non-blocking pipe with its small buffer: EAGAIN both ways, waited out
 * with poll(). */
static void test_nonblocking_pipe(void)
{
    int p[2];

    TEST_ASSERT(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    transfer(p[1], p[0], 0, -1);
}

/*
 * xtk_stream_custom: a transport of the test's (bytes XORed with 0x5a, at
 * most 1000 a call, on a non-blocking socket pair with small buffers, so
 * that short counts and EAGAIN come often) carries the known stream;
 * flush is called; bad arguments are refused.
 */
struct xor_io {
    int fd;
    unsigned flushes;
};

static ssize_t xor_write(void *arg, const void *buf, size_t len)
{
    struct xor_io *x = arg;
    uint8_t tmp[1000];
    size_t n = len < sizeof(tmp) ? len : sizeof(tmp);

    for (size_t i = 0; i < n; i++)
        tmp[i] = ((const uint8_t *)buf)[i] ^ 0x5a;
    return send(x->fd, tmp, n, MSG_NOSIGNAL);
}

static ssize_t xor_read(void *arg, void *buf, size_t len)
{
    struct xor_io *x = arg;
    ssize_t n = recv(x->fd, buf, len < 1000 ? len : 1000, 0);

    for (ssize_t i = 0; i < n; i++)
        ((uint8_t *)buf)[i] ^= 0x5a;
    return n;
}

static int xor_flush(void *arg)
{
    ((struct xor_io *)arg)->flushes++;
    return 0;
}

static const struct xtk_stream_io xor_ops = {
    .write = xor_write,
    .read = xor_read,
    .flush = xor_flush,
};

static void *xor_writer(void *p)
{
    struct xor_io *x = p;
    struct xtk_stream *s =
        xtk_stream_custom(ctx, x->fd, XTK_STREAM_WRITE, &xor_ops, x);

    TEST_ASSERT(s, "custom writer");
    TEST_ASSERT(xtk_stream_set_timeout(s, 20000) == 0, "timeout");
    tstream_write(&known, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "writer closed cleanly");
    shutdown(x->fd, SHUT_WR);
    return NULL;
}

static void test_custom_transport(void)
{
    struct xor_io w = {0}, r = {0};
    struct xtk_stream *s;
    int sv[2], small = 4096;
    pthread_t th;
    uint8_t extra;

    TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0,
                "socketpair");
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    w.fd = sv[0];
    r.fd = sv[1];
    TEST_ASSERT(pthread_create(&th, NULL, xor_writer, &w) == 0, "thread");
    s = xtk_stream_custom(ctx, r.fd, XTK_STREAM_READ, &xor_ops, &r);
    TEST_ASSERT(s, "custom reader");
    TEST_ASSERT(xtk_stream_set_timeout(s, 20000) == 0, "timeout");
    tstream_check(&known, s);
    TEST_ASSERT_ERRNO(xtk_stream_read(s, &extra, 1), ENODATA);
    xtk_stream_close(s);
    pthread_join(th, NULL);
    TEST_ASSERT(w.flushes > 0, "the transport was flushed");
    TEST_ASSERT(r.flushes == 0, "a reader is not flushed");
    close(sv[0]);
    close(sv[1]);
    TEST_ASSERT(!xtk_stream_custom(ctx, 0, XTK_STREAM_READ, NULL, NULL) &&
                    errno == EINVAL,
                "no io: EINVAL");
    TEST_ASSERT(!xtk_stream_custom(ctx, 0, XTK_STREAM_READ | XTK_STREAM_OWN_FD,
                                   &xor_ops, &r) &&
                    errno == EINVAL,
                "OWN_FD: EINVAL");
}

/* The first error sticks: later calls fail at once with it. */
static void test_sticky_error(void)
{
    int sv[2];
    struct xtk_stream *s;
    uint64_t pfn = xtk_pfn_entry(1, XTK_PAGE_NOTAB);
    static uint8_t page[XTK_PAGE_SIZE];
    const void *pages[1] = {page};
    struct xtk_stream_counters c;
    int rc = 0, i;

    /* A socket whose peer is gone: EPIPE, and no SIGPIPE (MSG_NOSIGNAL:
     * SIGPIPE is not ignored here, so it would kill the test). */
    TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    close(sv[1]);
    s = xtk_stream_socket(ctx, sv[0], XTK_STREAM_WRITE | XTK_STREAM_OWN_FD);
    TEST_ASSERT(s, "stream");
    TEST_ASSERT(xtk_stream_write_image_header(s) == 0, "buffered: no error "
                                                       "yet");
    TEST_ASSERT(xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 4, 17) ==
                    0,
                "buffered");
    for (i = 0; i < 100 && rc == 0; i++)
        rc = xtk_stream_write_page_data(s, 1, &pfn, pages);
    TEST_ASSERT(rc == -1 && errno == EPIPE, "EPIPE, got rc %d errno %d", rc,
                errno);
    TEST_ASSERT(i == 1, "a page is written directly: fails at once (%d)", i);
    TEST_ASSERT(xtk_stream_error(s) == EPIPE, "sticky");
    xtk_stream_get_counters(s, &c);
    TEST_ASSERT_ERRNO(xtk_stream_write_checkpoint(s), EPIPE);
    TEST_ASSERT_ERRNO(xtk_stream_write(s, "x", 1), EPIPE);
    TEST_ASSERT_ERRNO(xtk_stream_flush(s), EPIPE);
    TEST_ASSERT_ERRNO(xtk_stream_push_zlib(s, 1), EPIPE);
    TEST_ASSERT_ERRNO(xtk_stream_close(s), EPIPE);

    /* Reading: the first error (here ETIMEDOUT) stays. */
    TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    s = xtk_stream_socket(ctx, sv[0], XTK_STREAM_READ | XTK_STREAM_OWN_FD);
    TEST_ASSERT(s && xtk_stream_set_timeout(s, 50) == 0, "stream");
    uint64_t t0 = xtk_now_ns();
    TEST_ASSERT_ERRNO(
        xtk_stream_read_image_header(s, &(struct xtk_stream_image_header){0}),
        ETIMEDOUT);
    TEST_ASSERT(xtk_now_ns() - t0 >= 40000000ull, "waited for the timeout");
    TEST_ASSERT(write(sv[1], "late", 4) == 4, "write");
    TEST_ASSERT_ERRNO(xtk_stream_read(s, page, 4), ETIMEDOUT);
    TEST_ASSERT_ERRNO(xtk_stream_close(s), ETIMEDOUT);
    close(sv[1]);
}

/* Clean end vs truncation for raw reads, and the bypass of the buffer. */
static void test_raw_bytes(void)
{
    size_t big = 3 * XTK__STREAM_BUF_SIZE + 5;
    uint8_t *data = malloc(big), *back = malloc(big);
    struct xtk_stream *s;

    TEST_ASSERT(data && back, "malloc");
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    s = mem_reader(ctx, data, big, 0, 0);
    TEST_ASSERT(xtk_stream_read(s, back, 3) == 0, "small");
    TEST_ASSERT(xtk_stream_read(s, back + 3, big - 3 - 2) == 0, "large");
    TEST_ASSERT(xtk_stream_read(s, back + big - 2, 2) == 0, "tail");
    TEST_ASSERT(!memcmp(data, back, big), "same bytes");
    TEST_ASSERT_ERRNO(xtk_stream_read(s, back, 1), ENODATA);
    xtk_stream_close(s);

    s = mem_reader(ctx, data, 10, 0, 0);
    TEST_ASSERT_ERRNO(xtk_stream_read(s, back, 11), EBADMSG);
    TEST_ASSERT(xtk_stream_error(s) == EBADMSG, "sticky truncation");
    xtk_stream_close(s);

    /* writev of mixed sizes arrives in order. */
    {
        int fd = memfd_create("w", MFD_CLOEXEC);
        struct iovec iov[4] = {
            {data, 1}, {data + 1, 70000}, {data + 70001, 9}, {data + 70010, 5}};
        s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE);
        TEST_ASSERT(s && xtk_stream_writev(s, iov, 4) == 0, "writev");
        TEST_ASSERT(xtk_stream_write(s, data + 70015, 100) == 0, "write");
        TEST_ASSERT(xtk_stream_close(s) == 0, "close");
        TEST_ASSERT(pread(fd, back, 70115, 0) == 70115, "pread");
        TEST_ASSERT(!memcmp(data, back, 70115), "writev order");
        close(fd);
    }
    free(data);
    free(back);
}

static void test_bad_arguments(void)
{
    struct xtk_stream *s;
    int fd = memfd_create("x", MFD_CLOEXEC);

    TEST_ASSERT(fd >= 0, "memfd");
    errno = 0;
    TEST_ASSERT(!xtk_stream_fd(NULL, fd, XTK_STREAM_READ) && errno == EINVAL,
                "no ctx");
    TEST_ASSERT(!xtk_stream_fd(ctx, fd, 0) && errno == EINVAL, "no direction");
    TEST_ASSERT(!xtk_stream_fd(ctx, fd, XTK_STREAM_READ | XTK_STREAM_WRITE) &&
                    errno == EINVAL,
                "both directions");
    TEST_ASSERT(!xtk_stream_fd(ctx, -1, XTK_STREAM_READ) && errno == EINVAL,
                "bad fd");
    TEST_ASSERT(!xtk_stream_fd(ctx, fd, XTK_STREAM_READ | 0x100) &&
                    errno == EINVAL,
                "unknown flag");
    TEST_ASSERT(!xtk_stream_file(ctx, "/nonexistent/x", XTK_STREAM_READ) &&
                    errno == ENOENT,
                "missing file");
    TEST_ASSERT(xtk_stream_close(NULL) == 0, "close(NULL)");

    s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE);
    TEST_ASSERT(s, "stream");
    TEST_ASSERT_ERRNO(xtk_stream_push_zlib(s, 10), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_set_timeout(s, -1), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_set_record_limit(s, 4), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_set_record_limit(s, XTK_STREAM_RECORD_MAX + 1),
                      EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_read(s, &fd, 1), EINVAL); /* write stream */
    TEST_ASSERT_ERRNO(xtk_stream_write_end(s), EINVAL);    /* no headers */
    TEST_ASSERT_ERRNO(xtk_stream_write_domain_header(s, 2, 4, 17), EINVAL);
    TEST_ASSERT(xtk_stream_write_image_header(s) == 0, "image header");
    TEST_ASSERT_ERRNO(xtk_stream_write_image_header(s), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_domain_header(s, 3, 4, 17), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write(s, NULL, 1), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_get_counters(s, NULL), EINVAL);
    TEST_ASSERT(xtk_stream_error(s) == 0, "argument errors are not sticky");
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    TEST_ASSERT(xtk_stream_error(NULL) == EINVAL, "error(NULL)");
    close(fd);
}

/* The writer refuses, with nothing written, what a reader would refuse. */
static void test_writer_refuses(void)
{
    int fd = memfd_create("w", MFD_CLOEXEC);
    struct xtk_stream *s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE);
    static uint8_t page[XTK_PAGE_SIZE], body[64];
    const void *pages[2] = {page, NULL};
    uint64_t pfns[2];
    struct xtk_stream_counters before, after;

    TEST_ASSERT(
        s && xtk_stream_write_image_header(s) == 0 &&
            xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 4, 17) == 0,
        "headers");
    xtk_stream_get_counters(s, &before);
    pfns[0] = xtk_pfn_entry(1, XTK_PAGE_NOTAB);
    pfns[1] = xtk_pfn_entry(2, XTK_PAGE_NOTAB); /* carries data, no page */
    TEST_ASSERT_ERRNO(xtk_stream_write_page_data(s, 2, pfns, pages), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_page_data(s, 0, pfns, pages), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_page_data(s, 1, pfns, NULL), EINVAL);
    pfns[0] |= 1ull << 55; /* reserved bit */
    TEST_ASSERT_ERRNO(xtk_stream_write_page_data(s, 1, pfns, pages), EINVAL);
    pfns[0] = xtk_pfn_entry(1, 0x6); /* reserved type */
    TEST_ASSERT_ERRNO(xtk_stream_write_page_data(s, 1, pfns, pages), EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_record(s, XTK_REC_X86_TSC_INFO, body, 16), EINVAL);
    body[20] = 1; /* TSC_INFO's reserved field */
    TEST_ASSERT_ERRNO(
        xtk_stream_write_record(s, XTK_REC_X86_TSC_INFO, body, 24), EINVAL);
    body[20] = 0;
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, XTK_REC_X86_PV_INFO, body, 8),
                      EINVAL); /* PV record in an HVM stream */
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, 0x13, body, 8), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, XTK_REC_TOOLSTACK, body, 8),
                      EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_record(s, XTK_REC_CHECKPOINT_DIRTY_PFN_LIST, body, 8),
        EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, XTK_REC_END, body, 8), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, XTK_REC_CHECKSUM, body, 16),
                      EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, XTK_REC_HVM_PARAMS, body, 24),
                      EINVAL); /* count 0 in 24 bytes */
    TEST_ASSERT_ERRNO(xtk_stream_write_record(s, XTK_REC_PAGE_DATA, body, 24),
                      EINVAL);
    TEST_ASSERT(xtk_stream_set_record_limit(s, 4096) == 0, "limit");
    pfns[0] = xtk_pfn_entry(1, XTK_PAGE_NOTAB);
    TEST_ASSERT_ERRNO(xtk_stream_write_page_data(s, 1, pfns, pages), E2BIG);
    xtk_stream_get_counters(s, &after);
    TEST_ASSERT(after.bytes == before.bytes && after.records == 0,
                "nothing written (%llu bytes, %llu records)",
                (unsigned long long)(after.bytes - before.bytes),
                (unsigned long long)after.records);
    TEST_ASSERT(xtk_stream_error(s) == 0, "refusals are not sticky");

    /* Places: policies only before STATIC_DATA_END; TSC_INFO once per
     * epoch; an optional record anywhere. */
    TEST_ASSERT(
        xtk_stream_write_record(s, XTK_REC_X86_CPUID_POLICY, body, 24) == 0,
        "policy first");
    TEST_ASSERT(xtk_stream_write_record(s, XTK_REC_STATIC_DATA_END, NULL, 0) ==
                    0,
                "static data end");
    TEST_ASSERT_ERRNO(
        xtk_stream_write_record(s, XTK_REC_X86_CPUID_POLICY, body, 24), EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_record(s, XTK_REC_STATIC_DATA_END, NULL, 0), EINVAL);
    TEST_ASSERT(xtk_stream_write_record(s, XTK_REC_X86_TSC_INFO, body, 24) == 0,
                "tsc");
    TEST_ASSERT_ERRNO(
        xtk_stream_write_record(s, XTK_REC_X86_TSC_INFO, body, 24), EINVAL);
    TEST_ASSERT(xtk_stream_write_record(s, XTK_REC_KVM_VM, body, 5) == 0,
                "optional");
    TEST_ASSERT(xtk_stream_write_record(s, 0x80001234, body, 0) == 0,
                "unknown optional");
    TEST_ASSERT(xtk_stream_write_checkpoint(s) == 0, "checkpoint");
    TEST_ASSERT(xtk_stream_write_record(s, XTK_REC_X86_TSC_INFO, body, 24) == 0,
                "tsc in the next epoch");
    TEST_ASSERT(xtk_stream_write_end(s) == 0, "end");
    TEST_ASSERT_ERRNO(xtk_stream_write_checkpoint(s), EINVAL);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    close(fd);
}

/* Builds the headers of an HVM stream followed by `extra` bytes. */
static size_t with_headers(uint8_t *buf, const void *extra, size_t n)
{
    static const uint8_t h[40] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'X', 'E',
        'N',  'F',  0,    0,    0,    3,    0,    0,    0,   0,
        0,    0,    0,    0,    2,    0,    0,    0,    12,  0,
        0,    0,    4,    0,    0,    0,    17,   0,    0,   0};

    memcpy(buf, h, sizeof(h));
    memcpy(buf + sizeof(h), extra, n);
    return sizeof(h) + n;
}

/* A length that lies: memory grows with the data, not with the claim. */
static void test_lying_length(void)
{
    size_t n = 8 + 5000;
    uint8_t *rec = calloc(1, n), *buf = malloc(n + 40);
    uint32_t hdr[2] = {XTK_REC_PAGE_DATA, 100u << 20};
    struct xtk_stream_record r;
    struct xtk_stream *s;

    TEST_ASSERT(rec && buf, "malloc");
    memcpy(rec, hdr, 8);
    rec[8] = 1; /* count 1 */
    n = with_headers(buf, rec, n);
    s = mem_reader(ctx, buf, n, 0, 0);
    TEST_ASSERT(xtk_stream_read_image_header(
                    s, &(struct xtk_stream_image_header){0}) == 0 &&
                    xtk_stream_read_domain_header(
                        s, &(struct xtk_stream_domain_header){0}) == 0,
                "headers");
    TEST_ASSERT_ERRNO(xtk_stream_read_record(s, &r), EBADMSG);
    TEST_ASSERT(xtk__stream_body_capacity(s) <= (1u << 20),
                "allocated %zu for 5000 bytes of data",
                xtk__stream_body_capacity(s));
    xtk_stream_close(s);

    /* Over the limit: refused before any of the body is read. */
    hdr[1] = XTK_STREAM_RECORD_MAX + 8;
    memcpy(rec, hdr, 8);
    n = with_headers(buf, rec, 8 + 5000);
    TEST_ASSERT(read_all(ctx, buf, n, 0, 0) == E2BIG, "over the limit");
    hdr[1] = 4104; /* over a limit the reader set lower */
    memcpy(rec, hdr, 8);
    n = with_headers(buf, rec, 8 + 5000);
    s = mem_reader(ctx, buf, n, 0, 0);
    TEST_ASSERT(xtk_stream_set_record_limit(s, 4096) == 0, "limit");
    xtk_stream_read_image_header(s, &(struct xtk_stream_image_header){0});
    xtk_stream_read_domain_header(s, &(struct xtk_stream_domain_header){0});
    TEST_ASSERT_ERRNO(xtk_stream_read_record(s, &r), E2BIG);
    TEST_ASSERT(xtk__stream_body_capacity(s) == 0, "nothing allocated");
    xtk_stream_close(s);
    free(rec);
    free(buf);
}

/* take_body hands the buffer over; the next read makes a new one. */
static void test_take_body(void)
{
    size_t len;
    uint8_t *data = tstream_bytes(&known, 0, -1, &len);
    struct xtk_stream *s = mem_reader(ctx, data, len, 0, 0);
    struct xtk_stream_record r;
    struct xtk_stream_page_data pd;
    void *kept[3] = {0};
    int n = 0;

    xtk_stream_read_image_header(s, &(struct xtk_stream_image_header){0});
    xtk_stream_read_domain_header(s, &(struct xtk_stream_domain_header){0});
    for (size_t i = 0; i < known.nrecs && n < 3; i++) {
        TEST_ASSERT(xtk_stream_read_record(s, &r) == 0, "record %zu", i);
        if (r.type != XTK_REC_PAGE_DATA)
            continue;
        kept[n] = xtk_stream_take_body(s);
        TEST_ASSERT(kept[n] == r.body, "the body itself");
        TEST_ASSERT(!memcmp(kept[n], known.recs[i].body, r.length), "bytes");
        n++;
    }
    TEST_ASSERT(n == 3 && kept[0] != kept[1] && kept[1] != kept[2],
                "separate buffers");
    TEST_ASSERT(
        xtk_stream_page_data_parse(kept[0], known.recs[1].length, &pd) == 0,
        "kept body parses");
    TEST_ASSERT_ERRNO(
        xtk_stream_page_data_parse((uint8_t *)kept[0] + 4, 64, &pd),
        EINVAL); /* misaligned */
    for (int i = 0; i < 3; i++)
        free(kept[i]);
    xtk_stream_close(s);
    free(data);
}

static void test_record_names(void)
{
    TEST_ASSERT(!strcmp(xtk_stream_record_name(XTK_REC_PAGE_DATA), "PAGE_DATA"),
                "PAGE_DATA");
    TEST_ASSERT(!strcmp(xtk_stream_record_name(XTK_REC_X86_MSR_POLICY),
                        "X86_MSR_POLICY"),
                "last Xen type");
    TEST_ASSERT(
        !strcmp(xtk_stream_record_name(XTK_REC_KVM_VCPU), "XTK_KVM_VCPU"),
        "xtk type");
    TEST_ASSERT(!xtk_stream_record_name(0x13), "unknown");
    for (uint32_t t = XTK_REC_CHECKSUM; t <= XTK_REC_KVM_DEVICE; t++)
        TEST_ASSERT(!xtk_stream_record_name(t) ||
                        ((t & XTK_REC_OPTIONAL) && t >= XTK_REC_XTK_FIRST &&
                         t <= XTK_REC_XTK_LAST),
                    "xtk's types are optional and in range");
}

/* xtk__stream_room: what the output takes now without waiting (the save
 * writes from the caller's loop only what fits). */
static void fill(int fd)
{
    static char junk[4096];

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (write(fd, junk, sizeof(junk)) > 0)
        ;
}

static void test_room(void)
{
    char path[] = "/tmp/xtk-room.XXXXXX";
    struct xtk_stream *s;
    int sp[2], pp[2], fd;
    size_t room;

    fd = mkstemp(path);
    TEST_ASSERT(fd >= 0, "a file");
    unlink(path);
    s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE | XTK_STREAM_OWN_FD);
    TEST_ASSERT(s && xtk__stream_room(s) == SIZE_MAX, "a file: no limit");
    xtk_stream_close(s);

    TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
    s = xtk_stream_socket(ctx, sp[0], XTK_STREAM_WRITE);
    room = xtk__stream_room(s);
    TEST_ASSERT(room >= 16384 && room < SIZE_MAX, "an empty socket: %zu", room);
    TEST_ASSERT(xtk_stream_write(s, "abcd", 4) == 0 &&
                    xtk__stream_room(s) == room - 4,
                "less what the stream buffers");
    xtk_stream_close(s);
    fill(sp[0]);
    s = xtk_stream_socket(ctx, sp[0], XTK_STREAM_WRITE);
    TEST_ASSERT(xtk__stream_room(s) < 4096, "a full socket: %zu",
                xtk__stream_room(s));
    xtk_stream_close(s);
    close(sp[0]);
    close(sp[1]);

    TEST_ASSERT(pipe(pp) == 0, "pipe");
    s = xtk_stream_fd(ctx, pp[1], XTK_STREAM_WRITE);
    room = xtk__stream_room(s);
    TEST_ASSERT(room == (size_t)fcntl(pp[1], F_GETPIPE_SZ),
                "an empty pipe: %zu", room);
    xtk_stream_close(s);
    fill(pp[1]);
    s = xtk_stream_fd(ctx, pp[1], XTK_STREAM_WRITE);
    TEST_ASSERT(xtk__stream_room(s) == 0, "a full pipe: %zu",
                xtk__stream_room(s));
    xtk_stream_close(s);
    close(pp[0]);
    close(pp[1]);
}

int main(void)
{
    /* The fd layer's writev raises SIGPIPE on a dead pipe like any other
     * write; a program using it on pipes ignores SIGPIPE (sockets do not
     * need to: the socket layer sends with MSG_NOSIGNAL). */
    ctx = test_ctx();
    tstream_build(&known, 42, 1500, 256, 3, TS_OPTIONAL);
    TEST_RUN(test_roundtrip_file);
    TEST_RUN(test_roundtrip_zlib);
    TEST_RUN(test_xen_verifier);
    TEST_RUN(test_placer);
    TEST_RUN(test_checksums);
    TEST_RUN(test_checksum_live_pages);
    TEST_RUN(test_socketpair);
    TEST_RUN(test_tcp_loopback);
    TEST_RUN(test_nonblocking_pipe);
    TEST_RUN(test_custom_transport);
    TEST_RUN(test_sticky_error);
    TEST_RUN(test_raw_bytes);
    TEST_RUN(test_bad_arguments);
    TEST_RUN(test_writer_refuses);
    TEST_RUN(test_lying_length);
    TEST_RUN(test_take_body);
    TEST_RUN(test_record_names);
    TEST_RUN(test_room);
    tstream_free(&known);
    xtk_ctx_close(ctx);
    return 0;
}

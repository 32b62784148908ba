/*
 * stream-zlib.c - the compression layer of the stream: gzip out, gzip or
 * zlib in.
 *
 * It sits on any other layer.  Writing compresses each iovec as it comes
 * (no gathering copy) into a 256 KiB output buffer that goes to the layer
 * below when full, on flush (a zlib sync flush) and on finish.  Reading
 * inflates from a 256 KiB input buffer straight into the caller's memory.
 * Everything it allocates is fixed at creation: compressed input cannot
 * make it grow.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "stream-internal.h"

#define XTK_LOG_CONTEXT "stream"

#define ZBUF_SIZE (256u << 10)
#define ZCHUNK (1u << 30) /* zlib counts in uInt */

struct zlib_layer {
    struct xtk__layer l;
    z_stream z;
    int writing;
    int member_ended; /* read: a gzip member ended; another may follow */
    int below_eof;    /* read: the layer below has no more */
    uint8_t *zbuf;    /* write: output; read: input */
    size_t zused;     /* write: bytes of output in zbuf */
};

static int zfail(struct zlib_layer *zl, int zrc, const char *doing)
{
    int err = zrc == Z_MEM_ERROR ? ENOMEM : zrc == Z_DATA_ERROR ? EBADMSG : EIO;

    return xtk__stream_fail(zl->l.s, err, "zlib %s failed (%d): %s", doing, zrc,
                            zl->z.msg ? zl->z.msg : "no message");
}

/* Writes the output buffer to the layer below. */
static int zl_drain(struct zlib_layer *zl)
{
    struct iovec iov = {.iov_base = zl->zbuf, .iov_len = zl->zused};

    if (!zl->zused)
        return 0;
    zl->zused = 0;
    return zl->l.below->ops->writev(zl->l.below, &iov, 1);
}

/*
 * Runs deflate with `flush` until the input is consumed (Z_NO_FLUSH), the
 * flush is complete (Z_SYNC_FLUSH) or the stream is finished (Z_FINISH).
 */
static int zl_deflate(struct zlib_layer *zl, int flush)
{
    for (;;) {
        int rc;

        zl->z.next_out = zl->zbuf + zl->zused;
        zl->z.avail_out = (uInt)(ZBUF_SIZE - zl->zused);
        rc = deflate(&zl->z, flush);
        zl->zused = ZBUF_SIZE - zl->z.avail_out;
        if (rc == Z_STREAM_ERROR)
            return zfail(zl, rc, "deflate");
        if (zl->zused == ZBUF_SIZE) {
            if (zl_drain(zl) < 0)
                return -1;
            continue;
        }
        /* Output space left: deflate did all it could with this input. */
        if (flush == Z_NO_FLUSH)
            return 0;
        if (flush == Z_FINISH && rc != Z_STREAM_END)
            continue;
        return zl_drain(zl);
    }
}

static int zl_writev(struct xtk__layer *l, struct iovec *iov, int iovcnt)
{
    struct zlib_layer *zl = (struct zlib_layer *)l;

    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;

        while (left) {
            uInt n = left > ZCHUNK ? ZCHUNK : (uInt)left;

            zl->z.next_in = (Bytef *)p;
            zl->z.avail_in = n;
            if (zl_deflate(zl, Z_NO_FLUSH) < 0)
                return -1;
            p += n;
            left -= n;
        }
    }
    return 0;
}

static int zl_flush(struct xtk__layer *l)
{
    return zl_deflate((struct zlib_layer *)l, Z_SYNC_FLUSH);
}

static int zl_finish(struct xtk__layer *l)
{
    return zl_deflate((struct zlib_layer *)l, Z_FINISH);
}

/* Refills the input buffer from below; 0, or -1 (sticky error set). */
static int zl_fill(struct zlib_layer *zl)
{
    ssize_t n = zl->l.below->ops->read(zl->l.below, zl->zbuf, ZBUF_SIZE);

    if (n < 0)
        return -1;
    if (n == 0)
        zl->below_eof = 1;
    zl->z.next_in = zl->zbuf;
    zl->z.avail_in = (uInt)n;
    return 0;
}

/*
 * Inflates into buf.  Returns the bytes produced (>= 1), 0 at the clean
 * end (a member ended and nothing follows), or -1 (corrupt data, a stream
 * that ends before its trailer, an error below).  Every pass either
 * consumes input or reaches the end below, so it cannot spin.
 */
static ssize_t zl_read(struct xtk__layer *l, void *buf, size_t len)
{
    struct zlib_layer *zl = (struct zlib_layer *)l;
    uInt want = len > ZCHUNK ? ZCHUNK : (uInt)len;

    zl->z.next_out = buf;
    zl->z.avail_out = want;
    for (;;) {
        size_t produced = want - zl->z.avail_out;
        uInt in_before;
        int rc;

        if (!zl->z.avail_in && !zl->below_eof && zl_fill(zl) < 0)
            return -1;
        if (zl->member_ended) {
            if (!zl->z.avail_in && zl->below_eof)
                return (ssize_t)produced;
            if (!zl->z.avail_in)
                continue;
            /* Another gzip member follows. */
            if (inflateReset(&zl->z) != Z_OK)
                return zfail(zl, Z_STREAM_ERROR, "inflateReset");
            zl->member_ended = 0;
        }
        if (!zl->z.avail_in && zl->below_eof) {
            if (produced)
                return (ssize_t)produced;
            return xtk__stream_fail(
                l->s, EBADMSG,
                "compressed stream truncated after %llu "
                "compressed bytes",
                (unsigned long long)l->s->counters.raw_bytes);
        }
        in_before = zl->z.avail_in;
        rc = inflate(&zl->z, Z_NO_FLUSH);
        produced = want - zl->z.avail_out;
        if (rc == Z_STREAM_END) {
            zl->member_ended = 1;
        } else if (rc == Z_BUF_ERROR) {
            if (zl->z.avail_in && zl->z.avail_in == in_before && !produced)
                return zfail(zl, Z_DATA_ERROR, "inflate");
        } else if (rc != Z_OK) {
            return zfail(zl, rc == Z_NEED_DICT ? Z_DATA_ERROR : rc, "inflate");
        }
        if (produced)
            return (ssize_t)produced;
    }
}

static int zl_destroy(struct xtk__layer *l)
{
    struct zlib_layer *zl = (struct zlib_layer *)l;

    if (zl->writing)
        deflateEnd(&zl->z);
    else
        inflateEnd(&zl->z);
    free(zl->zbuf);
    free(zl);
    return 0;
}

static const struct xtk__layer_ops zlib_ops = {
    .name = "zlib",
    .writev = zl_writev,
    .read = zl_read,
    .flush = zl_flush,
    .finish = zl_finish,
    .destroy = zl_destroy,
};

struct xtk__layer *xtk__layer_zlib_new(struct xtk_stream *s,
                                       struct xtk__layer *below, int level)
{
    struct zlib_layer *zl = calloc(1, sizeof(*zl));
    int rc;

    if (!zl)
        return NULL;
    zl->l.ops = &zlib_ops;
    zl->l.below = below;
    zl->l.s = s;
    zl->writing = !!(s->flags & XTK_STREAM_WRITE);
    zl->zbuf = malloc(ZBUF_SIZE);
    if (!zl->zbuf)
        goto err_zl;
    if (zl->writing)
        /* 15 + 16: a gzip wrapper, so the output is a .gz file. */
        rc = deflateInit2(&zl->z, level, Z_DEFLATED, 15 + 16, 8,
                          Z_DEFAULT_STRATEGY);
    else
        /* 15 + 32: accept gzip or zlib, detected from the header. */
        rc = inflateInit2(&zl->z, 15 + 32);
    if (rc != Z_OK) {
        errno = rc == Z_MEM_ERROR ? ENOMEM : EINVAL;
        goto err_buf;
    }
    return &zl->l;

err_buf:
    free(zl->zbuf);
err_zl:
    free(zl);
    return NULL;
}

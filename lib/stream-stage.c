/*
 * stream-stage.c - the staging layer of a write stream: what an epoch
 * writes while its guest is stopped is kept in memory (the copy is the
 * only thing the guest waits for), and written out once the guest runs
 * again.
 *
 * It sits right above the bottom (fd) layer, so that a compressed
 * stream's bytes are staged compressed; it is put there the first time
 * staging is asked for.  While staging, writes are appended to a buffer
 * that is kept from one epoch to the next; past the limit, what is held
 * is written out at once and the rest of the epoch goes straight down
 * (the guest then waits for it, as without staging).  Otherwise writes
 * pass straight down.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream-internal.h"

#define XTK_LOG_CONTEXT "stream"

struct stage_layer {
    struct xtk__layer l;
    int holding;
    size_t limit;
    uint8_t *buf;
    size_t len, cap;
    int overflowed; /* this epoch went past the limit */
};

static int down(struct stage_layer *st, struct iovec *iov, int iovcnt)
{
    return st->l.below->ops->writev(st->l.below, iov, iovcnt);
}

/* Writes what is held, and forgets it. */
static int release(struct stage_layer *st)
{
    struct iovec iov = {.iov_base = st->buf, .iov_len = st->len};

    if (!st->len)
        return 0;
    st->len = 0;
    return down(st, &iov, 1);
}

static int stage_writev(struct xtk__layer *l, struct iovec *iov, int iovcnt)
{
    struct stage_layer *st = (struct stage_layer *)l;
    size_t total = 0;

    if (!st->holding)
        return down(st, iov, iovcnt);
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (st->len + total > st->limit) {
        /* Too big to hold: out now, and the rest of the epoch too. */
        st->holding = 0;
        st->overflowed = 1;
        if (release(st) < 0)
            return -1;
        return down(st, iov, iovcnt);
    }
    if (st->len + total > st->cap) {
        size_t cap = st->cap ? st->cap : 1u << 20;
        uint8_t *b;

        while (cap < st->len + total)
            cap *= 2;
        b = realloc(st->buf, cap);
        if (!b) { /* no memory to hold it: out now, as past the limit */
            st->holding = 0;
            st->overflowed = 1;
            if (release(st) < 0)
                return -1;
            return down(st, iov, iovcnt);
        }
        st->buf = b;
        st->cap = cap;
    }
    for (int i = 0; i < iovcnt; i++) {
        memcpy(st->buf + st->len, iov[i].iov_base, iov[i].iov_len);
        st->len += iov[i].iov_len;
    }
    return 0;
}

static int stage_destroy(struct xtk__layer *l)
{
    struct stage_layer *st = (struct stage_layer *)l;

    free(st->buf);
    free(st);
    return 0;
}

static const struct xtk__layer_ops stage_ops = {
    .name = "stage",
    .writev = stage_writev,
    .destroy = stage_destroy,
};

/* The stream's staging layer, put in place above the bottom one if it is
 * not there yet; NULL (errno) if it cannot be. */
static struct stage_layer *stage_of(struct xtk_stream *s, int create)
{
    struct xtk__layer **at = &s->top;
    struct stage_layer *st;

    if (!s->top)
        return xtk__fail_null(EINVAL);
    while ((*at)->below) {
        if ((*at)->ops == &stage_ops)
            return (struct stage_layer *)*at;
        at = &(*at)->below;
    }
    if (!create)
        return xtk__fail_null(ENOENT);
    /* *at is the bottom layer: the stage goes right above it. */
    st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->l.ops = &stage_ops;
    st->l.s = s;
    st->l.below = *at;
    *at = &st->l;
    return st;
}

int xtk__stream_stage_begin(struct xtk_stream *s, size_t limit)
{
    struct stage_layer *st;

    if (!s || !(s->flags & XTK_STREAM_WRITE))
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    /* Whatever was written before goes out first. */
    if (xtk_stream_flush(s) < 0)
        return -1;
    st = stage_of(s, 1);
    if (!st)
        return -1;
    if (st->len)
        return xtk__fail(EBUSY); /* the last epoch is not out yet */
    st->holding = 1;
    st->overflowed = 0;
    st->limit = limit;
    return 0;
}

int xtk__stream_stage_end(struct xtk_stream *s, size_t *held, int *overflowed)
{
    struct stage_layer *st;

    if (!s || !(st = stage_of(s, 0)))
        return xtk__fail(EINVAL);
    /* The stream's own buffer into the stage, then no more holding. */
    if (xtk_stream_flush(s) < 0)
        return -1;
    st->holding = 0;
    if (held)
        *held = st->len;
    if (overflowed)
        *overflowed = st->overflowed;
    return 0;
}

int xtk__stream_stage_drain(struct xtk_stream *s)
{
    struct stage_layer *st;

    if (!s || !(st = stage_of(s, 0)) || st->holding)
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    if (release(st) < 0)
        return -1;
    for (struct xtk__layer *l = st->l.below; l; l = l->below)
        if (l->ops->flush && l->ops->flush(l) < 0)
            return -1;
    return 0;
}

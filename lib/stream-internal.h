/*
 * stream-internal.h - what the stream's files share: the stream object and
 * its layers.
 *
 * A stream is a buffer on top of a chain of layers.  The bottom layer
 * talks to an fd; a zlib layer sits on another layer.  Layers never return
 * short writes (writev writes everything or fails); a layer read may
 * return fewer bytes than asked (>= 1), 0 at the end, -1 on error.  Every
 * failure goes through xtk__stream_fail(), which keeps the first error.
 */
#ifndef XTK_STREAM_INTERNAL_H
#define XTK_STREAM_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <xtk/stream.h>

#include "xtk-internal.h"

struct xtk__layer;

struct xtk__layer_ops {
    const char *name;
    /* Writes all of iov (iovcnt >= 1) or fails: 0 or -1.  May modify the
     * iovec array (not the memory it points at). */
    int (*writev)(struct xtk__layer *l, struct iovec *iov, int iovcnt);
    /* Reads up to len (>= 1) bytes: how many (>= 1), 0 at the end, -1. */
    ssize_t (*read)(struct xtk__layer *l, void *buf, size_t len);
    /* The same into iov (iovcnt >= 1, at most IOV_MAX).  May be NULL. */
    ssize_t (*readv)(struct xtk__layer *l, const struct iovec *iov, int iovcnt);
    /* Pushes what the layer holds down (write streams).  May be NULL. */
    int (*flush)(struct xtk__layer *l);
    /* Moves len bytes on without reading them (a regular file's lseek):
     * 0, or -1 if it cannot (not a file, or past its end: nothing moved;
     * the caller reads them instead).  May be NULL. */
    int (*skip)(struct xtk__layer *l, uint64_t len);
    /* Ends the layer's data (a compression trailer).  May be NULL. */
    int (*finish)(struct xtk__layer *l);
    /* Frees the layer (not the one below); closes an owned fd. 0 or -1. */
    int (*destroy)(struct xtk__layer *l);
};

struct xtk__layer {
    const struct xtk__layer_ops *ops;
    struct xtk__layer *below;
    struct xtk_stream *s;
};

enum xtk__stream_state {
    XTK__S_IMAGE_HEADER, /* nothing yet */
    XTK__S_DOMAIN_HEADER,
    XTK__S_RECORDS,
    XTK__S_ENDED, /* END went by */
};

/* What the record layer knows about where it is in the stream. */
struct xtk__record_state {
    enum xtk__stream_state state;
    uint32_t domain_type;
    uint32_t epoch_seen; /* once-per-epoch records seen (rule flags) */
    unsigned int seen_page_data : 1;
    unsigned int seen_static_data_end : 1;
    unsigned int checksummed : 1;   /* checksum records in use */
    unsigned int last_checksum : 1; /* the previous record was one */
};

#define XTK__STREAM_BUF_SIZE (128u << 10)
#define XTK__STREAM_IOV_MAX 1024

/*
 * A placer decides, for a PAGE_DATA record whose header and pfn entries
 * have been read and checked (pd; pd->pages is not valid yet), whether
 * its page contents go straight into memory of the caller's instead of
 * the body buffer: it fills iov (at most *iovcnt entries, in the order of
 * the entries with data, covering exactly pd->npages pages) and sets
 * *iovcnt, returning 1; or returns 0 (the body buffer, as usual).  Or,
 * returning 2, has the contents skipped: they start at the stream's
 * offset (xtk__stream_offset) when it is called, and are not read at all
 * where the bottom layer can seek (a lazy restore's index of a file).
 */
typedef int xtk__stream_place_fn(void *arg,
                                 const struct xtk_stream_page_data *pd,
                                 struct iovec *iov, int *iovcnt);

struct xtk_stream {
    struct xtk_ctx *ctx;
    unsigned int flags;
    struct xtk__layer *top;
    int err;        /* sticky: 0 or the first errno */
    int timeout_ms; /* 0: none */
    uint32_t record_limit;
    /* An fd (an eventfd the owner writes) that ends every wait with
     * ECANCELED once readable; -1: none (the field is 0 until set: see
     * cancel_set). */
    int cancel_fd, cancel_set;

    /* The buffer.  Read: input not yet consumed is [rpos, blen).  Write:
     * pending output is [0, blen), of which [0, rpos) is already queued
     * in iov (between large pieces written from the caller's memory). */
    uint8_t *buf;
    size_t blen, rpos;
    struct iovec *iov; /* scratch for writev (write streams) */

    struct xtk_stream_counters counters;
    /* The layer just skipped input (a lazy restore's index): the next
     * buffer fill reads only a record's head, not the buffer's size of
     * contents that will be skipped as well. */
    int after_skip;

    /* Records. */
    struct xtk__record_state rs;
    uint8_t *body; /* read: the body buffer, 8-byte aligned */
    size_t body_cap;
    /* CRC-32 of the bytes since the last checksum record (or start). */
    uint32_t crc;
    uint64_t crc_bytes;
    int crc_on; /* compute it */

    /* PAGE_DATA payloads read straight to where the placer says
     * (xtk__stream_set_placer); placed: the last record's were. */
    xtk__stream_place_fn *place;
    void *place_arg;
    int placed;

    /* The libxl / xl framing (stream-xl.c); fr.config is always NULL. */
    struct xtk_stream_framing fr;
    int framing_done; /* read or written: no second time */
};

/*
 * Sets (or, with NULL, clears) the read stream's placer.  Used only where
 * the bottom layer can readv and no layer transforms the bytes (no zlib),
 * and not for checksummed streams; elsewhere records are read as usual.
 */
void xtk__stream_set_placer(struct xtk_stream *s, xtk__stream_place_fn *place,
                            void *arg);

/* Whether the record just read had its pages placed (its body then holds
 * only the header and the pfn entries, though its length is the whole). */
int xtk__stream_placed(const struct xtk_stream *s);

/* The fd of a read stream that is a regular file read as it is (one fd
 * layer: no compression, not a socket), else -1. */
int xtk__stream_file_fd(const struct xtk_stream *s);

/* Moves past len bytes of input (buffered input first, then the layer's
 * skip, else reading them): 0, 1 at the end of the stream (truncated;
 * *got says how far it got), -1 on error (sticky).  No CRC. */
int xtk__stream_skip(struct xtk_stream *s, uint64_t len, uint64_t *got);

/*
 * Passes over len bytes of whole PAGE_DATA records at a record boundary
 * (a lazy restore that has the file's own index of them): as
 * xtk__stream_skip, and the record layer takes PAGE_DATA as seen.  0, or
 * -1 (EBADMSG where the stream ends first; sticky, logged).
 */
int xtk__stream_pass_records(struct xtk_stream *s, uint64_t len);

/* Reads exactly the bytes iov describes (buffered input first): 0, 1 at
 * the end of the stream (truncated), -1 on error (sticky). */
int xtk__stream_readv_some(struct xtk_stream *s, struct iovec *iov, int iovcnt,
                           size_t *got);

/* Records the stream's first error, logs it, sets errno; returns -1. */
int xtk__stream_fail(struct xtk_stream *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * How many bytes a write stream takes now without waiting on its fd: the
 * bottom fd's room (a regular file, a block or character device: no
 * limit; a socket: half its send buffer, the kernel's accounting taking
 * the rest, less what it holds unsent; a pipe: its size less what it
 * holds) less what the stream's buffer holds.  0 when not known (no fd at
 * the bottom, or another kind of fd).
 */
size_t xtk__stream_room(struct xtk_stream *s);

/* The bottom layer over an fd (socket: use send/recv with MSG_NOSIGNAL). */
struct xtk__layer *xtk__layer_fd_new(struct xtk_stream *s, int fd, int own,
                                     int socket);
/* A zlib layer over `below`. */
struct xtk__layer *xtk__layer_zlib_new(struct xtk_stream *s,
                                       struct xtk__layer *below, int level);

/* Waits until fd is ready for events (POLLIN/POLLOUT), honouring the
 * stream's timeout and its cancel fd; 0 or -1 (ETIMEDOUT, ECANCELED or
 * poll's errno), not sticky. */
int xtk__stream_wait(struct xtk_stream *s, int fd, short events);

/*
 * Makes every wait of the stream (and, for an fd stream, every read and
 * write, which then poll first) end with ECANCELED once cancel_fd is
 * readable: a restore's reader thread stops even on a pipe or a blocking
 * socket that brings nothing more.  The caller owns cancel_fd.
 */
void xtk__stream_set_cancel(struct xtk_stream *s, int cancel_fd);

/*
 * A stream another writer fills (a Xen PV guest's, by libxenguest's own
 * save): external_begin writes out what is buffered (the framing) and
 * gives the fd, if the stream is a plain fd with nothing written of the
 * migration stream yet and no checksums (else EINVAL); once the other
 * writer has written the migration stream to its END, external_end adds
 * what the framing puts after it (libxl's END) and counts the stream as
 * ended.
 */
int xtk__stream_external_begin(struct xtk_stream *s, int *fd);
int xtk__stream_external_end(struct xtk_stream *s);

/*
 * Output in pieces: xtk__stream_put() copies a small piece into the buffer
 * or queues a large one (>= 4 KiB) as an iovec pointing at the caller's
 * memory; xtk__stream_put_end() writes whatever is queued, so it must come
 * before the caller's memory goes away.  *niov starts at 0.
 */
int xtk__stream_put(struct xtk_stream *s, int *niov, const void *p, size_t len);
int xtk__stream_put_end(struct xtk_stream *s, int *niov);

/* Writes the iovecs (already checked) through the buffer. */
int xtk__stream_writev(struct xtk_stream *s, const struct iovec *iov,
                       int iovcnt);

/* Reads up to len bytes, stopping early only at the end of the stream:
 * 0 when all came, 1 at the end (*got says how many did), -1 on error. */
int xtk__stream_read_some(struct xtk_stream *s, void *buf, size_t len,
                          size_t *got);

/* Reads exactly len bytes; `what` names them for the error message.  The
 * end of the stream before the first byte is ENODATA when the caller is on
 * a boundary where the stream may end, else (and part-way) EBADMSG. */
int xtk__stream_read_exact(struct xtk_stream *s, void *buf, size_t len,
                           const char *what, int boundary);

/*
 * Makes at least len (<= XTK__STREAM_BUF_SIZE) bytes of input available at
 * s->buf + s->rpos without consuming them: 0, 1 if the stream ends first
 * (*avail says how many there are), -1 on error (sticky).
 */
int xtk__stream_peek(struct xtk_stream *s, size_t len, size_t *avail);

/* Reads len bytes of a record body into s->body (grown only as the data
 * arrives; name and at describe the record for messages).  0 or -1. */
int xtk__stream_read_body(struct xtk_stream *s, uint32_t len, const char *name,
                          uint64_t at);

/*
 * stream-stage.c: staging.  stage_begin flushes the stream and from then on
 * keeps what reaches the bottom layer in memory (up to limit bytes; past
 * it, what is held and the rest go straight out); stage_end flushes the
 * stream into the stage and stops keeping (*held: the bytes kept,
 * *overflowed: the limit was hit); stage_drain writes what was kept to
 * the bottom layer (blocking, the stream's timeout applies).  begin fails
 * with EBUSY while an epoch is kept and not drained.  The stage layer is
 * put above the bottom one at the first begin.  0 or -1.
 */
int xtk__stream_stage_begin(struct xtk_stream *s, size_t limit);
int xtk__stream_stage_end(struct xtk_stream *s, size_t *held, int *overflowed);
int xtk__stream_stage_drain(struct xtk_stream *s);

/* stream-xl.c: the libxl records that follow a CHECKPOINT or END record
 * (libxc_type) of a stream in libxl framing, read and checked, or
 * written.  0 or -1 (sticky). */
int xtk__libxl_read_after(struct xtk_stream *s, uint32_t libxc_type);
int xtk__libxl_write_after(struct xtk_stream *s, uint32_t libxc_type);

/* Offset of the next byte the caller reads or writes. */
static inline uint64_t xtk__stream_offset(const struct xtk_stream *s)
{
    return s->counters.bytes;
}

/* For tests: the capacity of the record body buffer. */
size_t xtk__stream_body_capacity(const struct xtk_stream *s);

#endif /* XTK_STREAM_INTERNAL_H */

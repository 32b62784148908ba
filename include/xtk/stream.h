/*
 * xtk/stream.h - the record stream: Xen's migration stream v2 over a
 * buffered byte stream with fd, socket and zlib layers.  See xtk_stream(3)
 * for the API and xtk-stream(5) for the format.
 *
 * Byte stream (modelled on Redis's rio):
 *   - one struct xtk_stream per direction (read or write), over an fd, a
 *     socket or a file, with an optional zlib (gzip) layer pushed on top;
 *   - a call either transfers everything it was asked to or fails: there is
 *     never a short read or write (EINTR is retried, EAGAIN on a
 *     non-blocking fd waits with poll());
 *   - the error is sticky: the first failure is kept and every later call
 *     fails at once with the same errno (xtk_stream_error());
 *   - byte, record and page counters.
 *
 * Records: helpers that write the image header, domain header, records
 * with their zero padding, PAGE_DATA from an array of pfn entries plus page
 * pointers (the pages go to the kernel with writev(), never copied into a
 * buffer), CHECKPOINT and END; and a reader that validates everything it
 * returns and hands back PAGE_DATA as a parsed view into its buffer.
 *
 * errno values a reader (or a corrupt stream) produces:
 *   ENODATA   the stream ended cleanly on a record boundary before END
 *             (or before the first byte of a raw read);
 *   EBADMSG   malformed: bad marker or id, reserved bits or fields set,
 *             non-zero padding, a length that does not match the content,
 *             PAGE_DATA count 0, bad page type, a checksum mismatch,
 *             corrupt compressed data, or truncation inside a header or
 *             record;
 *   E2BIG     a record longer than the stream's record limit;
 *   EPROTO    well formed but not acceptable here: version other than 3,
 *             big-endian stream, domain type other than PV/HVM, page shift
 *             other than 12, unknown mandatory record type, a record in
 *             the wrong place or for the other domain type;
 *   ETIMEDOUT nothing arrived within the stream's timeout;
 *   (and for the libxl and xl framing around a stream, see "framing"
 *   below: the same errnos, and E2BIG for an xl config over the limit);
 *   and any errno of read()/write()/recv()/send() (EPIPE, ECONNRESET...).
 * Each is logged once, with the offset, through the context's logger.
 * Caller mistakes (bad arguments, calls out of order) give EINVAL and do
 * not touch the sticky error.
 *
 * Threads: a stream is used by one thread at a time.  Each record-writing
 * call writes a whole record, so sender threads sharing one stream need
 * only a mutex around each xtk_stream_write_page_data() call.
 *
 * Byte order: xtk runs on little-endian hosts and writes little-endian
 * streams (the image header is big-endian, as the format says).
 */
#ifndef XTK_STREAM_H
#define XTK_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xtk_ctx;
struct xtk_stream;

/* ---- format constants (xtk-stream(5)) ------------------------------- */

#define XTK_STREAM_MARKER 0xffffffffffffffffull
#define XTK_STREAM_ID 0x58454e46u /* "XENF" */
#define XTK_STREAM_VERSION 3u
#define XTK_STREAM_IMAGE_HEADER_SIZE 24
#define XTK_STREAM_DOMAIN_HEADER_SIZE 16
#define XTK_STREAM_RECORD_HEADER_SIZE 8

#define XTK_PAGE_SHIFT 12
#define XTK_PAGE_SIZE 4096u

/* Domain types (domain header). */
#define XTK_DOMAIN_X86_PV 1u
#define XTK_DOMAIN_X86_HVM 2u

/* Record types: every type Xen defines... */
#define XTK_REC_END 0x00u
#define XTK_REC_PAGE_DATA 0x01u
#define XTK_REC_X86_PV_INFO 0x02u
#define XTK_REC_X86_PV_P2M_FRAMES 0x03u
#define XTK_REC_X86_PV_VCPU_BASIC 0x04u
#define XTK_REC_X86_PV_VCPU_EXTENDED 0x05u
#define XTK_REC_X86_PV_VCPU_XSAVE 0x06u
#define XTK_REC_SHARED_INFO 0x07u
#define XTK_REC_X86_TSC_INFO 0x08u
#define XTK_REC_HVM_CONTEXT 0x09u
#define XTK_REC_HVM_PARAMS 0x0au
#define XTK_REC_TOOLSTACK 0x0bu /* deprecated; refused */
#define XTK_REC_X86_PV_VCPU_MSRS 0x0cu
#define XTK_REC_VERIFY 0x0du
#define XTK_REC_CHECKPOINT 0x0eu
#define XTK_REC_CHECKPOINT_DIRTY_PFN_LIST 0x0fu
#define XTK_REC_STATIC_DATA_END 0x10u
#define XTK_REC_X86_CPUID_POLICY 0x11u
#define XTK_REC_X86_MSR_POLICY 0x12u

/*
 * ...and xtk's own.  Bit 31 marks a record optional: a reader that does not
 * know the type skips it (Xen's restore does), an unknown type without the
 * bit is refused.  xtk's types live in 0x80580000-0x8058ffff ("X" in bits
 * 16-23).  Note that Xen 4.17's verify-stream-v2 refuses every type it
 * does not know, optional or not: streams meant for Xen carry none of
 * these.
 */
#define XTK_REC_OPTIONAL 0x80000000u
#define XTK_REC_XTK_FIRST 0x80580000u
#define XTK_REC_XTK_LAST 0x8058ffffu
/* CRC-32 of the stream up to here; body: struct xtk_stream_checksum_body. */
#define XTK_REC_CHECKSUM 0x80580001u
/*
 * A checkpointed stream's heartbeat (between epochs, to a live backup,
 * which answers it on the back channel); 16 bytes: u32 number, u32 the
 * last epoch sent, u32 the source's deadline in ms, u32 zero.
 */
#define XTK_REC_HEARTBEAT 0x80580002u
/*
 * A post-copy migration's switch (xtk-stream(5), "POST-COPY"): the source
 * has stopped the guest and sent its state; the frames whose bits are set
 * come after this record, each once, in PAGE_DATA records, and the
 * destination may run the guest before they are all in.  Body: u32
 * version (1), u32 zero, u64 the bitmap's bits (the domain's frames), u64
 * the bits set, then the bitmap (u64 words, little-endian).  Optional: a
 * reader that skips it gets every frame before END all the same.
 */
#define XTK_REC_POSTCOPY 0x80580003u
/*
 * Before a post-copy's stop, the guest still running on the source: the
 * frames it dirtied since they were last sent, which will come again
 * after the switch (a subset of its list).  The destination may take
 * them out of memory now, off the downtime, and says when it has (the
 * back channel's PREPARED).  Body as XTK_REC_POSTCOPY's.
 */
#define XTK_REC_POSTCOPY_PREPARE 0x80580004u
/*
 * Reserved for KVM state in xtk's own records.  Not written: Xen 4.17's
 * verify-stream-v2 refuses every record type it does not know, optional
 * ones too, so the save engine carries a KVM domain's shape in HVM_PARAMS
 * and its state in the one HVM_CONTEXT record instead (xtk-stream(5),
 * "KVM DOMAINS").
 */
#define XTK_REC_KVM_VCPU 0x80580010u
#define XTK_REC_KVM_VM 0x80580011u
#define XTK_REC_KVM_MEMORY 0x80580012u
#define XTK_REC_KVM_DEVICE 0x80580013u

/* The default (and largest) record body length a stream accepts: 128 MiB,
 * Xen's REC_LENGTH_MAX. */
#define XTK_STREAM_RECORD_MAX (128u << 20)

/* ---- PAGE_DATA entries ------------------------------------------------ */

/* Page types (bits 63-60 of a pfn entry). */
#define XTK_PAGE_NOTAB 0x0u /* a normal page */
#define XTK_PAGE_L1TAB 0x1u
#define XTK_PAGE_L2TAB 0x2u
#define XTK_PAGE_L3TAB 0x3u
#define XTK_PAGE_L4TAB 0x4u
/* 0x5-0x8 are reserved; 0x9-0xc are L1-L4 tables, pinned. */
#define XTK_PAGE_PINNED 0x8u /* or'ed into L1-L4 */
#define XTK_PAGE_BROKEN 0xdu /* no data */
/* No data: Xen populates the frame without contents.  xtk's save engine
 * sends an all-zero page this way (zero pages are elided), and xtk's
 * restore zeroes the frame when it is already populated. */
#define XTK_PAGE_XALLOC 0xeu
#define XTK_PAGE_XTAB 0xfu /* invalid or absent frame: no data */

#define XTK_PFN_TYPE_SHIFT 60
#define XTK_PFN_MASK ((1ull << 52) - 1)
#define XTK_PFN_RESERVED_MASK (0xffull << 52)

/* A pfn entry from a frame number and a page type. */
static inline uint64_t xtk_pfn_entry(uint64_t pfn, unsigned int type)
{
    return ((uint64_t)type << XTK_PFN_TYPE_SHIFT) | (pfn & XTK_PFN_MASK);
}

static inline uint64_t xtk_pfn_entry_pfn(uint64_t entry)
{
    return entry & XTK_PFN_MASK;
}

static inline unsigned int xtk_pfn_entry_type(uint64_t entry)
{
    return (unsigned int)(entry >> XTK_PFN_TYPE_SHIFT);
}

/* Whether a page type is defined (not 0x5-0x8). */
static inline int xtk_page_type_valid(unsigned int type)
{
    return type <= 0xf && (type < 0x5 || type > 0x8);
}

/* Whether an entry of this (valid) type carries a page of data. */
static inline int xtk_page_type_has_data(unsigned int type)
{
    return type <= 0x4 || (type >= 0x9 && type <= 0xc);
}

/* ---- opening and closing -------------------------------------------- */

/* Flags for the constructors. */
#define XTK_STREAM_READ 0x1u /* exactly one of READ and WRITE */
#define XTK_STREAM_WRITE 0x2u
#define XTK_STREAM_OWN_FD 0x4u /* xtk_stream_close() closes the fd */
/*
 * Writing: emit an XTK_REC_CHECKSUM record right after the domain header
 * and right before every CHECKPOINT and END, each covering every byte
 * since the previous one.  Reading: require them (a reader verifies
 * checksums whenever the first record is a checksum record; this flag makes
 * their absence an error too).  A checksummed writer copies what it is
 * given and checksums the copy, so memory that changes while it is written
 * (a live guest's pages) cannot make the checksum disagree with the bytes.
 */
#define XTK_STREAM_CHECKSUM 0x8u

/*
 * A stream over a file descriptor (a file, a pipe, stdin/stdout).  The fd
 * may be blocking or not.  With XTK_STREAM_OWN_FD the stream closes it,
 * also when this call fails.
 * Returns NULL on failure, in which case errno will be set.
 */
struct xtk_stream *xtk_stream_fd(struct xtk_ctx *ctx, int fd,
                                 unsigned int flags);

/*
 * A stream over a connected stream socket (TCP, Unix): like
 * xtk_stream_fd(), but sends with MSG_NOSIGNAL, so a peer that went away
 * gives EPIPE rather than SIGPIPE.
 */
struct xtk_stream *xtk_stream_socket(struct xtk_ctx *ctx, int fd,
                                     unsigned int flags);

/*
 * A stream over a transport of the caller's (TLS, say), whose bytes cross
 * the connected socket fd.  io->write sends up to len bytes and returns how
 * many (> 0), or -1 with errno; io->read receives up to len bytes: how many
 * (> 0), 0 at the end, or -1 with errno.  EINTR is retried; on EAGAIN the
 * stream waits (poll(), with its timeout) for fd to be writable or
 * readable and calls again with the same bytes, unless io->pending (may be
 * NULL) says the transport holds bytes to read already.  io->flush (may be
 * NULL) is called after each write of the stream (0, or -1 with errno,
 * EAGAIN waiting as above): it pushes out what the transport gathered.
 * Neither may return a short count as an error.  Make fd non-blocking for
 * the timeout to bound every call.  The stream does not close fd; io and
 * arg must outlive it.  (XTK_0.6)
 */
struct xtk_stream_io {
    ssize_t (*write)(void *arg, const void *buf, size_t len);
    ssize_t (*read)(void *arg, void *buf, size_t len);
    int (*flush)(void *arg);
    size_t (*pending)(void *arg);
};
struct xtk_stream *xtk_stream_custom(struct xtk_ctx *ctx, int fd,
                                     unsigned int flags,
                                     const struct xtk_stream_io *io, void *arg);

/*
 * The other direction of such a connection, for the save and restore
 * engines' messages (the destination's reply, a backup's acknowledgements
 * and heartbeat answers; xtk_save_options and xtk_restore_options
 * peer_io): send and recv as send(2) and recv(2) with MSG_DONTWAIT (at
 * most len bytes, -1 with errno EAGAIN when none can go or has come now,
 * recv 0 at the end); they may be called from another thread than the
 * stream's, at the same time.  (XTK_0.6)
 */
struct xtk_peer_io {
    ssize_t (*send)(void *arg, const void *buf, size_t len);
    ssize_t (*recv)(void *arg, void *buf, size_t len);
    void *arg;
};

/*
 * A stream over a file it opens (O_CLOEXEC; writing creates or truncates
 * it with mode 0644).  The stream owns the fd.
 */
struct xtk_stream *xtk_stream_file(struct xtk_ctx *ctx, const char *path,
                                   unsigned int flags);

/*
 * Pushes a compression layer on top of the stream: everything written from
 * now on is gzip-compressed (a file written so is a valid .gz), everything
 * read is decompressed (gzip or zlib, auto-detected; concatenated gzip
 * members are read as one stream; a compressed stream that ends before its
 * trailer is EBADMSG).  level: -1 for zlib's default, 0-9 (1 is fast);
 * ignored for reading.  A write stream is flushed first; a read stream
 * must have nothing buffered (else EBUSY), so push it before reading.
 * Returns -1 on failure, in which case errno will be set.
 */
int xtk_stream_push_zlib(struct xtk_stream *s, int level);

/*
 * Every later read or write fails with ETIMEDOUT (sticky) when the fd is
 * not ready within timeout_ms milliseconds; 0 (the default) waits forever.
 * A restore from a socket sets it so that a dead sender ends the stream.
 */
int xtk_stream_set_timeout(struct xtk_stream *s, int timeout_ms);

/*
 * The longest record body the stream accepts (longer is E2BIG, when
 * reading and when writing).  8 <= max <= XTK_STREAM_RECORD_MAX (the
 * default).
 */
int xtk_stream_set_record_limit(struct xtk_stream *s, uint32_t max);

/*
 * Closes the stream: a write stream is flushed and its compression layer
 * finished; an owned fd is closed.  The stream is freed in every case.
 * Returns 0, or -1 with errno set to the stream's sticky error or to what
 * the final flush or close() failed with.  Accepts NULL (returns 0).
 */
int xtk_stream_close(struct xtk_stream *s);

/* ---- bytes ------------------------------------------------------------ */

/*
 * Writes len bytes (or the iovecs, in order).  Small pieces are copied to
 * the stream's buffer; large ones (4 KiB and more) are handed to the layer
 * below with writev() without copying, so the caller's memory need only
 * stay valid during the call.  Returns 0, or -1 with errno set.
 */
int xtk_stream_write(struct xtk_stream *s, const void *buf, size_t len);
int xtk_stream_writev(struct xtk_stream *s, const struct iovec *iov,
                      int iovcnt);

/*
 * Reads exactly len bytes.  Returns 0, or -1 with errno set: ENODATA if the
 * stream ended before the first byte, EBADMSG if it ended part-way.
 */
int xtk_stream_read(struct xtk_stream *s, void *buf, size_t len);

/*
 * Pushes everything written so far down to the fd (a compression layer
 * does a zlib sync flush, so the reader can decode all of it now).
 */
int xtk_stream_flush(struct xtk_stream *s);

/* The sticky error: 0, or the errno of the first failure. */
int xtk_stream_error(const struct xtk_stream *s);

struct xtk_stream_counters {
    uint64_t bytes;        /* bytes through the stream (uncompressed) */
    uint64_t raw_bytes;    /* bytes through the fd (compressed, if zlib) */
    uint64_t records;      /* records (not headers) read or written */
    uint64_t page_entries; /* PAGE_DATA entries */
    uint64_t pages;        /* pages of data in them */
};

/* Copies the counters.  Returns 0, or -1 with errno set (EINVAL). */
int xtk_stream_get_counters(const struct xtk_stream *s,
                            struct xtk_stream_counters *out);

/* ---- records: writing ----------------------------------------------- */

/*
 * The image header (version 3, little-endian) and the domain header
 * (page shift 12; type XTK_DOMAIN_X86_PV or _HVM), each once, in this
 * order, before any record.  xen_major/minor: the version the state comes
 * from (Xen writes its own; 0 means "converted from a legacy stream").
 */
int xtk_stream_write_image_header(struct xtk_stream *s);
int xtk_stream_write_domain_header(struct xtk_stream *s, uint32_t type,
                                   uint32_t xen_major, uint32_t xen_minor);

/*
 * Writes one record: header, body, zero padding to 8 bytes.  The body is
 * checked as a reader would check it (sizes and reserved fields of known
 * types, place in the stream): EINVAL and nothing written if a reader
 * would refuse it; E2BIG (nothing written) over the record limit.  A PAGE_DATA
 * body must be given in one piece (xtk_stream_write_record()), or better by
 * xtk_stream_write_page_data().  After END nothing more can be written.
 */
int xtk_stream_write_record(struct xtk_stream *s, uint32_t type,
                            const void *body, uint32_t length);
int xtk_stream_write_recordv(struct xtk_stream *s, uint32_t type,
                             const struct iovec *iov, int iovcnt);

/*
 * Writes one PAGE_DATA record of count entries.  pfns[i] is an entry made
 * with xtk_pfn_entry(); pages[i] is the page of entry i when its type
 * carries data (ignored, may be NULL, otherwise).  Pages are written with
 * writev straight from where they are; adjacent pages are merged into one
 * iovec.  EINVAL (nothing written) for count 0, reserved bits or types, or
 * a missing page; E2BIG for a record over the limit (send smaller batches).
 */
int xtk_stream_write_page_data(struct xtk_stream *s, uint32_t count,
                               const uint64_t *pfns, const void *const *pages);

/*
 * CHECKPOINT: everything before it is a consistent state.  The stream is
 * flushed, so the receiver has the whole epoch.
 */
int xtk_stream_write_checkpoint(struct xtk_stream *s);

/* END: the last record.  The stream is flushed. */
int xtk_stream_write_end(struct xtk_stream *s);

/* ---- records: reading ----------------------------------------------- */

struct xtk_stream_image_header {
    uint32_t version; /* 3 */
    uint16_t options; /* 0: little-endian */
};

struct xtk_stream_domain_header {
    uint32_t type;       /* XTK_DOMAIN_X86_PV or _HVM */
    uint16_t page_shift; /* 12 */
    uint32_t xen_major;
    uint32_t xen_minor;
};

/*
 * Reads and checks the image header, then the domain header: once each,
 * in this order, before any record (EINVAL otherwise).
 */
int xtk_stream_read_image_header(struct xtk_stream *s,
                                 struct xtk_stream_image_header *out);
int xtk_stream_read_domain_header(struct xtk_stream *s,
                                  struct xtk_stream_domain_header *out);

struct xtk_stream_record {
    uint32_t type;
    uint32_t length;  /* body length, without padding */
    const void *body; /* 8-byte aligned; valid until the next read call */
    uint64_t offset;  /* where the record header starts in the stream */
};

/*
 * Reads the next record into *rec, checked: length within the limit,
 * padding zero, known mandatory type, the body of a known type well
 * formed, and in its place (for example no PV record in an HVM stream, no
 * policy record after STATIC_DATA_END).  Optional records (bit 31) are
 * returned for the caller to use or skip.  END is returned as a record;
 * reading after it is EINVAL.  The body is read into a buffer that grows
 * only as data arrives, so a lying length cannot make it allocate more
 * than the data it was actually sent (plus 1 MiB).
 * Returns 0, or -1 with errno set (see the list at the top).
 */
int xtk_stream_read_record(struct xtk_stream *s, struct xtk_stream_record *rec);

/*
 * Takes the body buffer of the record just read: the caller now owns it
 * (release with free()), and the next read allocates a new one.  For
 * restore's epoch buffering without a copy.  NULL if there is none.
 */
void *xtk_stream_take_body(struct xtk_stream *s);

/* A PAGE_DATA body, parsed in place. */
struct xtk_stream_page_data {
    uint32_t count;       /* entries, > 0 */
    uint32_t npages;      /* entries whose type carries data */
    const uint64_t *pfns; /* count entries (xtk_pfn_entry_pfn/_type) */
    const uint8_t *pages; /* npages * XTK_PAGE_SIZE bytes, in entry order */
};

/*
 * Parses and checks a PAGE_DATA body (one xtk_stream_read_record()
 * returned, or a copy of it): count > 0, no reserved bits, valid types,
 * length == 8 + 8 * count + 4096 * npages.  body must be 8-byte aligned.
 * Returns 0, or -1 with errno set: EBADMSG if malformed, EINVAL for bad
 * arguments.
 */
int xtk_stream_page_data_parse(const void *body, uint32_t length,
                               struct xtk_stream_page_data *out);

/* The body of an XTK_REC_CHECKSUM record (little-endian). */
struct xtk_stream_checksum_body {
    uint32_t algorithm; /* 1: CRC-32 (ISO 3309, zlib's crc32()) */
    uint32_t crc;
    uint64_t covered; /* bytes covered: from the end of the previous
                         checksum record (or the stream's start) to the
                         start of this one */
};

/* "PAGE_DATA", "CHECKPOINT", "XTK_KVM_VCPU"...; NULL for an unknown type. */
const char *xtk_stream_record_name(uint32_t type);

/* ---- framing: libxl's stream and xl's save file (since XTK_0.2) ------ */

/*
 * What may come before the image header (xtk-stream(5), "FRAMING"):
 *
 *   LIBXC  nothing: a bare stream, as above;
 *   LIBXL  libxl's stream: a 16-byte big-endian header ("LibxlFmt",
 *          version 2), then libxl records (little-endian {u32 type,
 *          u32 length}, body, zero padding to 8): LIBXC_CONTEXT, after
 *          which the whole bare stream follows inline; a CHECKPOINT_END
 *          after each of its CHECKPOINTs; the libxl END after its END;
 *   XL     xl's save file (`xl save`, `xl restore`): a 48-byte xl header,
 *          the domain's configuration, then a libxl stream.
 *
 * On a write stream, xtk_stream_write_framing() writes everything up to
 * the image header, and from then on the stream adds the libxl records
 * itself: xtk_stream_write_checkpoint() writes CHECKPOINT_END after the
 * CHECKPOINT, xtk_stream_write_end() the libxl END after the END, in the
 * same flush.  On a read stream, xtk_stream_read_framing() recognises
 * the framing, checks it, hands back the configuration and leaves the
 * stream at the image header; xtk_stream_read_record() then reads and
 * checks the libxl records after each CHECKPOINT and after END before it
 * returns them (emulator records there are checked and skipped).  The
 * records in between, their offsets (which count from the first byte of
 * the file) and the counters are as in a bare stream; checksum records
 * cover the bare stream only (the window starts at the image header).
 */
#define XTK_STREAM_FRAMING_LIBXC 0u
#define XTK_STREAM_FRAMING_LIBXL 1u
#define XTK_STREAM_FRAMING_XL 2u

/* The xl header (Xen's tools/xl/xl.h): 48 bytes in the host's order. */
#define XTK_XL_MAGIC "Xen saved domain, xl format\n \0 \r"
#define XTK_XL_MAGIC_SIZE 32
#define XTK_XL_HEADER_SIZE 48
#define XTK_XL_BYTEORDER 0x01020304u
/* mandatory_flags: an xl that does not know one refuses the file. */
#define XTK_XL_CONFIG_JSON 0x1u /* the configuration is libxl's JSON */
#define XTK_XL_STREAM_V2 0x2u   /* a libxl stream follows (always, here) */
/*
 * optional_data_len bounds: the optional data is a u32 config length, the
 * config, and possibly more that xl skips.  xtk refuses more than 1 MiB of
 * it (E2BIG); a config may thus be up to 1 MiB - 4 bytes.
 */
#define XTK_XL_OPTIONAL_MAX (1u << 20)

/* The libxl stream (Xen's docs/specs/libxl-migration-stream.pandoc). */
#define XTK_LIBXL_IDENT 0x4c6962786c466d74ull /* "LibxlFmt" */
#define XTK_LIBXL_VERSION 2u
#define XTK_LIBXL_HEADER_SIZE 16
#define XTK_LIBXL_OPT_BIG_ENDIAN 0x1u /* refused */
#define XTK_LIBXL_OPT_LEGACY 0x2u     /* converted from a legacy stream */
#define XTK_LIBXL_REC_END 0u
#define XTK_LIBXL_REC_LIBXC_CONTEXT 1u
#define XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA 2u
#define XTK_LIBXL_REC_EMULATOR_CONTEXT 3u
#define XTK_LIBXL_REC_CHECKPOINT_END 4u
#define XTK_LIBXL_REC_CHECKPOINT_STATE 5u /* COLO only; refused */

struct xtk_stream_framing {
    uint32_t framing;            /* XTK_STREAM_FRAMING_* */
    uint32_t xl_mandatory_flags; /* XL: XTK_XL_CONFIG_JSON | _STREAM_V2 */
    uint32_t xl_optional_flags;  /* XL: as in the file (none defined) */
    uint32_t xl_optional_len;    /* XL: optional_data_len */
    /*
     * XL: the domain's configuration, config_len bytes (for JSON, its
     * terminating NUL included, as xl writes it), plus a NUL xtk adds so
     * that text can be used as a string; malloc()ed, the caller frees it.
     * NULL (and config_len 0) when the file has none.  Always NULL from
     * xtk_stream_get_framing().
     */
    void *config;
    uint32_t config_len;
    uint32_t libxl_options; /* LIBXL, XL: the libxl header's options */
    uint64_t libxc_offset;  /* where the image header starts */
    uint64_t libxl_records; /* libxl records read or written so far */
    uint64_t libxl_checkpoint_ends;
    uint64_t libxl_emulator_records; /* read: checked and skipped */
    uint64_t libxl_end_offset; /* where the libxl END starts (0: not yet) */
    uint64_t libxl_checkpoint_end_offset; /* ... the latest CHECKPOINT_END */
    uint64_t reserved[4];                 /* zero; room for later versions */
};

/*
 * Writes the framing (before the image header; once; nothing written to
 * the stream yet, else EINVAL).  framing XTK_STREAM_FRAMING_LIBXC: writes
 * nothing (flags 0, no config).  LIBXL: the libxl header and
 * LIBXC_CONTEXT (flags 0, no config).  XL: the xl header with
 * mandatory_flags xl_flags | XTK_XL_STREAM_V2, the optional data (the
 * config's length, then config_len bytes of config: xl's .cfg text, or
 * with XTK_XL_CONFIG_JSON libxl's JSON including its terminating NUL, and
 * no other NUL), the libxl header and LIBXC_CONTEXT.  config may be NULL
 * with config_len 0 (then `xl restore` needs a config file given).
 * Returns 0, or -1 with errno set: EINVAL for bad arguments (nothing
 * written), E2BIG for a config over XTK_XL_OPTIONAL_MAX - 4 bytes.
 */
int xtk_stream_write_framing(struct xtk_stream *s, uint32_t framing,
                             uint32_t xl_flags, const void *config,
                             uint32_t config_len);

/*
 * Reads the framing at the start of a read stream (push a zlib layer
 * first, if any; call before xtk_stream_read_image_header(), once): an xl
 * file or a libxl stream is read and checked up to and including
 * LIBXC_CONTEXT; anything else is taken for a bare stream, of which
 * nothing is consumed (its image header then says whether it is one).
 * Fills *out (its config is the caller's to free).  Returns 0, or -1 with
 * errno set: EBADMSG (a bad magic or ident, a byte order that is no byte
 * order, reserved bits, a config that does not fit its optional data, a
 * JSON config that is not one NUL-terminated string, a bad length or
 * padding in a libxl record, truncation), EPROTO (a big-endian file,
 * mandatory flags xtk does not know, a pre-v2 stream, a libxl version
 * other than 2, a first libxl record other than LIBXC_CONTEXT), E2BIG
 * (optional data over XTK_XL_OPTIONAL_MAX), ENODATA (the stream ended on
 * a libxl record boundary, or was empty: then nothing is read), or an
 * I/O errno; sticky, as every read error.  EINVAL if called twice or not
 * at the start.
 */
int xtk_stream_read_framing(struct xtk_stream *s,
                            struct xtk_stream_framing *out);

/*
 * The stream's framing as read or written so far, with the libxl record
 * counters (config NULL).  A stream whose framing was never read or
 * written reports XTK_STREAM_FRAMING_LIBXC.  Returns 0, or -1 (EINVAL).
 */
int xtk_stream_get_framing(const struct xtk_stream *s,
                           struct xtk_stream_framing *out);

#ifdef __cplusplus
}
#endif

#endif /* XTK_STREAM_H */

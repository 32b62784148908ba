/*
 * stream-xl.c - the framing around a migration stream: libxl's stream
 * (Xen's docs/specs/libxl-migration-stream.pandoc) and xl's save file
 * (the header of Xen's tools/xl/xl.h), written, recognised and checked,
 * and the libxl records that follow a CHECKPOINT and the END of the bare
 * stream inside.  See xtk_stream(3) and xtk-stream(5), "FRAMING".
 *
 * The bare stream's reader and writer (stream.c) call in here after each
 * CHECKPOINT and END record of a framed stream; everything else about the
 * stream is unchanged by the framing.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "stream-internal.h"

#define XTK_LOG_CONTEXT "stream"

#define LIBXL_REC_HEADER_SIZE 8
/* An emulator record's body starts with {u32 emulator_id, u32 index}. */
#define EMULATOR_HEADER_SIZE 8
#define EMULATOR_ID_MAX 2u /* 0 unknown, 1 qemu-trad, 2 qemu-upstream */

static const char *const libxl_names[] = {
    [XTK_LIBXL_REC_END] = "END",
    [XTK_LIBXL_REC_LIBXC_CONTEXT] = "LIBXC_CONTEXT",
    [XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA] = "EMULATOR_XENSTORE_DATA",
    [XTK_LIBXL_REC_EMULATOR_CONTEXT] = "EMULATOR_CONTEXT",
    [XTK_LIBXL_REC_CHECKPOINT_END] = "CHECKPOINT_END",
    [XTK_LIBXL_REC_CHECKPOINT_STATE] = "CHECKPOINT_STATE",
};

static const char *libxl_name(uint32_t type)
{
    if (type < XTK__ARRAY_SIZE(libxl_names))
        return libxl_names[type];
    return type & XTK_REC_OPTIONAL ? "optional" : "unknown";
}

static uint32_t padded(uint32_t length)
{
    return (uint32_t)((length + 7ull) & ~7ull);
}

/* The bare stream starts here: its offset, and a new checksum window
 * (checksum records cover the bare stream, not the framing). */
static void bare_stream_starts(struct xtk_stream *s)
{
    s->crc = (uint32_t)crc32(0, NULL, 0);
    s->crc_bytes = 0;
    s->fr.libxc_offset = xtk__stream_offset(s);
}

static void count_libxl(struct xtk_stream *s, uint32_t type, uint64_t at)
{
    s->fr.libxl_records++;
    if (type == XTK_LIBXL_REC_CHECKPOINT_END) {
        s->fr.libxl_checkpoint_ends++;
        s->fr.libxl_checkpoint_end_offset = at;
    } else if (type == XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA ||
               type == XTK_LIBXL_REC_EMULATOR_CONTEXT)
        s->fr.libxl_emulator_records++;
    else if (type == XTK_LIBXL_REC_END)
        s->fr.libxl_end_offset = at;
}

/* ---- writing ---------------------------------------------------------- */

/* Queues a libxl record without a body (all xtk writes). */
static int put_libxl(struct xtk_stream *s, int *niov, uint32_t type)
{
    uint32_t h[2] = {type, 0};
    uint64_t at = xtk__stream_offset(s);

    if (xtk__stream_put(s, niov, h, sizeof(h)) < 0)
        return -1;
    count_libxl(s, type, at);
    return 0;
}

int xtk__libxl_write_after(struct xtk_stream *s, uint32_t libxc_type)
{
    int niov = 0;

    if (put_libxl(s, &niov,
                  libxc_type == XTK_REC_END ? XTK_LIBXL_REC_END
                                            : XTK_LIBXL_REC_CHECKPOINT_END) < 0)
        return -1;
    return xtk__stream_put_end(s, &niov);
}

/* Whether a JSON config is what xl writes: one string, its NUL included. */
static int json_config_ok(const uint8_t *c, uint32_t len)
{
    return len && !c[len - 1] && !memchr(c, 0, len - 1);
}

int xtk_stream_write_framing(struct xtk_stream *s, uint32_t framing,
                             uint32_t xl_flags, const void *config,
                             uint32_t config_len)
{
    uint8_t xh[XTK_XL_HEADER_SIZE] = {0}, lh[XTK_LIBXL_HEADER_SIZE] = {0};
    uint32_t v;
    uint64_t ident = htobe64(XTK_LIBXL_IDENT);
    int niov = 0;

    if (!s || !(s->flags & XTK_STREAM_WRITE) || s->framing_done ||
        s->rs.state != XTK__S_IMAGE_HEADER || xtk__stream_offset(s))
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    if (framing > XTK_STREAM_FRAMING_XL || (config_len && !config) ||
        (framing != XTK_STREAM_FRAMING_XL && (xl_flags || config_len)) ||
        (xl_flags & ~(XTK_XL_CONFIG_JSON | XTK_XL_STREAM_V2)))
        return xtk__fail(EINVAL);
    if (config_len > XTK_XL_OPTIONAL_MAX - 4)
        return xtk__fail(E2BIG);
    if ((xl_flags & XTK_XL_CONFIG_JSON) && !json_config_ok(config, config_len))
        return xtk__fail(EINVAL);
    s->framing_done = 1;
    if (framing == XTK_STREAM_FRAMING_LIBXC)
        return 0;

    if (framing == XTK_STREAM_FRAMING_XL) {
        memcpy(xh, XTK_XL_MAGIC, XTK_XL_MAGIC_SIZE);
        v = XTK_XL_BYTEORDER;
        memcpy(xh + 32, &v, 4);
        v = xl_flags | XTK_XL_STREAM_V2;
        memcpy(xh + 36, &v, 4);
        /* optional_flags (xh + 40) stay zero: none is defined */
        v = 4 + config_len;
        memcpy(xh + 44, &v, 4);
        /* The optional data, as xl lays it out: the config's length,
         * then the config. */
        if (xtk__stream_put(s, &niov, xh, sizeof(xh)) < 0 ||
            xtk__stream_put(s, &niov, &config_len, 4) < 0 ||
            xtk__stream_put(s, &niov, config, config_len) < 0)
            return -1;
        s->fr.xl_mandatory_flags = xl_flags | XTK_XL_STREAM_V2;
        s->fr.xl_optional_len = 4 + config_len;
        s->fr.config_len = config_len;
    }
    memcpy(lh, &ident, 8);
    v = htobe32(XTK_LIBXL_VERSION);
    memcpy(lh + 8, &v, 4);
    /* options (lh + 12): 0, little-endian and not converted */
    if (xtk__stream_put(s, &niov, lh, sizeof(lh)) < 0 ||
        put_libxl(s, &niov, XTK_LIBXL_REC_LIBXC_CONTEXT) < 0 ||
        xtk__stream_put_end(s, &niov) < 0)
        return -1;
    s->fr.framing = framing;
    bare_stream_starts(s);
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

/* Where a libxl record is read, for the rules and the messages. */
enum where {
    W_HEAD,       /* before the bare stream: up to LIBXC_CONTEXT */
    W_CHECKPOINT, /* after a CHECKPOINT: up to CHECKPOINT_END */
    W_END,        /* after the END: up to the libxl END */
};

static const char *const where_names[] = {
    [W_HEAD] = "before the bare stream",
    [W_CHECKPOINT] = "after a CHECKPOINT",
    [W_END] = "after the END",
};

static const uint32_t where_wants[] = {
    [W_HEAD] = XTK_LIBXL_REC_LIBXC_CONTEXT,
    [W_CHECKPOINT] = XTK_LIBXL_REC_CHECKPOINT_END,
    [W_END] = XTK_LIBXL_REC_END,
};

/*
 * Checks a libxl record's body (in s->body) by its type.  0, or -1 (the
 * sticky error set).
 */
static int check_libxl_body(struct xtk_stream *s, uint32_t type,
                            uint32_t length, uint64_t at)
{
    const uint8_t *b = s->body;
    const char *name = libxl_name(type);

    switch (type) {
    case XTK_LIBXL_REC_END:
    case XTK_LIBXL_REC_LIBXC_CONTEXT:
    case XTK_LIBXL_REC_CHECKPOINT_END:
        if (length)
            return xtk__stream_fail(s, EBADMSG,
                                    "libxl %s record at offset %llu with a "
                                    "body of %u bytes (it has none)",
                                    name, (unsigned long long)at, length);
        return 0;
    case XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA:
    case XTK_LIBXL_REC_EMULATOR_CONTEXT:
        if (length < EMULATOR_HEADER_SIZE)
            return xtk__stream_fail(s, EBADMSG,
                                    "libxl %s record at offset %llu of %u "
                                    "bytes: too short for its emulator "
                                    "header",
                                    name, (unsigned long long)at, length);
        if (xtk__get_le32(b) > EMULATOR_ID_MAX)
            return xtk__stream_fail(s, EPROTO,
                                    "libxl %s record at offset %llu: unknown "
                                    "emulator id %u",
                                    name, (unsigned long long)at,
                                    xtk__get_le32(b));
        if (type == XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA &&
            length > EMULATOR_HEADER_SIZE) {
            /* Key/value pairs of NUL-terminated strings. */
            uint32_t nuls = 0;

            for (uint32_t i = EMULATOR_HEADER_SIZE; i < length; i++)
                nuls += !b[i];
            if (b[length - 1] || nuls % 2)
                return xtk__stream_fail(s, EBADMSG,
                                        "libxl %s record at offset %llu: not "
                                        "pairs of NUL-terminated strings",
                                        name, (unsigned long long)at);
        }
        return 0;
    case XTK_LIBXL_REC_CHECKPOINT_STATE:
        return xtk__stream_fail(s, EPROTO,
                                "libxl %s record at offset %llu: a COLO "
                                "stream, which xtk does not read",
                                name, (unsigned long long)at);
    default:
        if (!(type & XTK_REC_OPTIONAL))
            return xtk__stream_fail(s, EPROTO,
                                    "libxl record at offset %llu: unknown "
                                    "mandatory type %#x",
                                    (unsigned long long)at, type);
        return 0; /* optional: skipped */
    }
}

/*
 * Reads the next libxl record (header, body into s->body, padding) and
 * checks it.  0 with *type_out set, or -1 (sticky).
 */
static int read_libxl(struct xtk_stream *s, enum where w, uint32_t *type_out)
{
    uint64_t at = xtk__stream_offset(s);
    uint32_t h[2], type, length, pad_len;
    uint8_t pad[8];
    char what[48];
    size_t got;
    int rc;

    rc = xtk__stream_read_some(s, h, sizeof(h), &got);
    if (rc < 0)
        return -1;
    if (rc > 0 && !got)
        return xtk__stream_fail(s, ENODATA,
                                "stream ended at offset %llu %s, without "
                                "the libxl %s record",
                                (unsigned long long)at, where_names[w],
                                libxl_name(where_wants[w]));
    if (rc > 0)
        return xtk__stream_fail(s, EBADMSG,
                                "stream truncated at offset %llu, in a libxl "
                                "record header",
                                (unsigned long long)(at + got));
    type = *type_out = h[0];
    length = h[1];
    if (length > s->record_limit)
        return xtk__stream_fail(s, E2BIG,
                                "libxl %s record at offset %llu: length %u "
                                "is over the limit of %u",
                                libxl_name(type), (unsigned long long)at,
                                length, s->record_limit);
    /* A type refused whatever its body: nothing more is read. */
    if (type == XTK_LIBXL_REC_CHECKPOINT_STATE ||
        (type >= XTK__ARRAY_SIZE(libxl_names) && !(type & XTK_REC_OPTIONAL)))
        return check_libxl_body(s, type, length, at);
    snprintf(what, sizeof(what), "libxl %s", libxl_name(type));
    if (xtk__stream_read_body(s, length, what, at) < 0)
        return -1;
    pad_len = padded(length) - length;
    if (pad_len) {
        if (xtk__stream_read_exact(s, pad, pad_len, "libxl record padding", 0) <
            0)
            return -1;
        for (uint32_t i = 0; i < pad_len; i++)
            if (pad[i])
                return xtk__stream_fail(s, EBADMSG,
                                        "libxl %s record at offset %llu: "
                                        "non-zero padding",
                                        libxl_name(type),
                                        (unsigned long long)at);
    }
    if (check_libxl_body(s, type, length, at) < 0)
        return -1;
    count_libxl(s, type, at);
    return 0;
}

/*
 * Reads libxl records up to the one that w wants: emulator records after
 * a CHECKPOINT or the END are checked and skipped, as are optional
 * records anywhere; anything else is out of place.
 */
static int read_libxl_until(struct xtk_stream *s, enum where w)
{
    for (;;) {
        uint64_t at = xtk__stream_offset(s);
        uint32_t type = 0;

        if (read_libxl(s, w, &type) < 0)
            return -1;
        if (type == where_wants[w])
            return 0;
        if (type & XTK_REC_OPTIONAL) {
            XTK_DEBUG(s->ctx, "skipping optional libxl record %#x at %llu",
                      type, (unsigned long long)at);
            continue;
        }
        if (w != W_HEAD && (type == XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA ||
                            type == XTK_LIBXL_REC_EMULATOR_CONTEXT)) {
            XTK_DEBUG(s->ctx, "skipping libxl %s record at %llu",
                      libxl_name(type), (unsigned long long)at);
            continue;
        }
        return xtk__stream_fail(s, EPROTO,
                                "libxl %s record at offset %llu %s, where "
                                "%s%s was due",
                                libxl_name(type), (unsigned long long)at,
                                where_names[w],
                                w == W_HEAD ? "" : "emulator records or ",
                                libxl_name(where_wants[w]));
    }
}

int xtk__libxl_read_after(struct xtk_stream *s, uint32_t libxc_type)
{
    return read_libxl_until(s,
                            libxc_type == XTK_REC_END ? W_END : W_CHECKPOINT);
}

/* The libxl header, then the records up to LIBXC_CONTEXT. */
static int read_libxl_header(struct xtk_stream *s)
{
    uint8_t h[XTK_LIBXL_HEADER_SIZE];
    uint64_t ident;
    uint32_t version, options;

    if (xtk__stream_read_exact(s, h, sizeof(h), "the libxl header", 0) < 0)
        return -1;
    memcpy(&ident, h, 8);
    memcpy(&version, h + 8, 4);
    memcpy(&options, h + 12, 4);
    ident = be64toh(ident);
    version = be32toh(version);
    options = be32toh(options);
    if (ident != XTK_LIBXL_IDENT)
        return xtk__stream_fail(s, EBADMSG,
                                "libxl header: ident %#llx is not "
                                "\"LibxlFmt\"",
                                (unsigned long long)ident);
    if (version != XTK_LIBXL_VERSION)
        return xtk__stream_fail(s, EPROTO,
                                "libxl header: version %u; xtk reads "
                                "version 2",
                                version);
    if (options & ~(XTK_LIBXL_OPT_BIG_ENDIAN | XTK_LIBXL_OPT_LEGACY))
        return xtk__stream_fail(s, EBADMSG,
                                "libxl header: reserved option bits set "
                                "(%#x)",
                                options);
    if (options & XTK_LIBXL_OPT_BIG_ENDIAN)
        return xtk__stream_fail(s, EPROTO, "libxl header: a big-endian stream");
    s->fr.libxl_options = options;
    if (s->fr.framing == XTK_STREAM_FRAMING_LIBXC)
        s->fr.framing = XTK_STREAM_FRAMING_LIBXL;
    return read_libxl_until(s, W_HEAD);
}

/*
 * The xl header and its optional data; *config gets the config (or
 * NULL).  The libxl stream follows.
 */
static int read_xl_header(struct xtk_stream *s, uint8_t **config)
{
    uint8_t h[XTK_XL_HEADER_SIZE], *opt;
    uint32_t order, mflags, oflags, olen, clen;

    *config = NULL;
    if (xtk__stream_read_exact(s, h, sizeof(h), "the xl header", 0) < 0)
        return -1;
    order = xtk__get_le32(h + 32);
    mflags = xtk__get_le32(h + 36);
    oflags = xtk__get_le32(h + 40);
    olen = xtk__get_le32(h + 44);
    if (memcmp(h, XTK_XL_MAGIC, XTK_XL_MAGIC_SIZE))
        return xtk__stream_fail(s, EBADMSG,
                                "xl header: the magic is not xl's (a "
                                "corrupt file)");
    if (order == __builtin_bswap32(XTK_XL_BYTEORDER))
        return xtk__stream_fail(s, EPROTO, "xl header: a big-endian file");
    if (order != XTK_XL_BYTEORDER)
        return xtk__stream_fail(s, EBADMSG,
                                "xl header: byte order mark %#x is not "
                                "0x01020304",
                                order);
    if (mflags & ~(XTK_XL_CONFIG_JSON | XTK_XL_STREAM_V2))
        return xtk__stream_fail(s, EPROTO,
                                "xl header: mandatory flags %#x that xtk "
                                "does not know (a newer xl's file)",
                                mflags &
                                    ~(XTK_XL_CONFIG_JSON | XTK_XL_STREAM_V2));
    if (!(mflags & XTK_XL_STREAM_V2))
        return xtk__stream_fail(s, EPROTO,
                                "xl header: no STREAMv2 flag: a legacy "
                                "stream (Xen 4.5 or older), which xtk does "
                                "not read");
    if (olen > XTK_XL_OPTIONAL_MAX)
        return xtk__stream_fail(s, E2BIG,
                                "xl header: %u bytes of optional data; xtk "
                                "takes at most %u",
                                olen, XTK_XL_OPTIONAL_MAX);
    if (olen && olen < 4)
        return xtk__stream_fail(s, EBADMSG,
                                "xl header: %u bytes of optional data "
                                "cannot hold the config's length",
                                olen);
    if (!olen && (mflags & XTK_XL_CONFIG_JSON))
        return xtk__stream_fail(s, EBADMSG,
                                "xl header: the JSON flag, but no config");
    s->fr.framing = XTK_STREAM_FRAMING_XL;
    s->fr.xl_mandatory_flags = mflags;
    s->fr.xl_optional_flags = oflags;
    s->fr.xl_optional_len = olen;
    if (!olen)
        return 0;

    opt = malloc((size_t)olen + 1);
    if (!opt)
        return xtk__stream_fail(
            s, ENOMEM, "no memory for %u bytes of xl optional data", olen);
    if (xtk__stream_read_exact(s, opt, olen, "the xl optional data", 0) < 0)
        goto fail;
    clen = xtk__get_le32(opt);
    if (clen > olen - 4) {
        xtk__stream_fail(s, EBADMSG,
                         "xl optional data: a config of %u bytes in %u "
                         "bytes",
                         clen, olen - 4);
        goto fail;
    }
    if ((mflags & XTK_XL_CONFIG_JSON) && !json_config_ok(opt + 4, clen)) {
        xtk__stream_fail(s, EBADMSG,
                         "xl config: the JSON flag, but not one "
                         "NUL-terminated string of %u bytes",
                         clen);
        goto fail;
    }
    if (olen > 4 + clen)
        XTK_DEBUG(s->ctx, "xl header: skipping %u bytes of optional data",
                  olen - 4 - clen);
    s->fr.config_len = clen;
    if (!clen) {
        free(opt);
        return 0;
    }
    memmove(opt, opt + 4, clen);
    opt[clen] = 0;
    *config = opt;
    return 0;

fail:
    free(opt);
    return -1;
}

int xtk_stream_read_framing(struct xtk_stream *s,
                            struct xtk_stream_framing *out)
{
    uint8_t *config = NULL;
    uint64_t ident;
    size_t avail;
    int rc;

    if (!s || !out || !(s->flags & XTK_STREAM_READ) || s->framing_done ||
        s->rs.state != XTK__S_IMAGE_HEADER || xtk__stream_offset(s))
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    memset(out, 0, sizeof(*out));
    s->framing_done = 1;
    /* The first 8 bytes tell: xl's magic starts "Xen save", libxl's
     * header "LibxlFmt", the bare stream's marker is all ones (or it is
     * something else, which its image header will say). */
    if (xtk__stream_peek(s, 8, &avail) < 0)
        return -1;
    if (avail >= 8)
        memcpy(&ident, s->buf + s->rpos, 8);
    if (avail >= 8 && !memcmp(s->buf + s->rpos, XTK_XL_MAGIC, 8))
        rc = read_xl_header(s, &config) < 0 ? -1 : read_libxl_header(s);
    else if (avail >= 8 && be64toh(ident) == XTK_LIBXL_IDENT)
        rc = read_libxl_header(s);
    else
        return 0; /* bare: nothing consumed */
    if (rc < 0) {
        free(config);
        return -1;
    }
    bare_stream_starts(s);
    *out = s->fr;
    out->config = config;
    XTK_DEBUG(s->ctx,
              "%s framing: config of %u bytes%s, the bare stream at "
              "offset %llu",
              s->fr.framing == XTK_STREAM_FRAMING_XL ? "xl" : "libxl",
              s->fr.config_len,
              s->fr.xl_mandatory_flags & XTK_XL_CONFIG_JSON ? " (JSON)" : "",
              (unsigned long long)s->fr.libxc_offset);
    return 0;
}

int xtk_stream_get_framing(const struct xtk_stream *s,
                           struct xtk_stream_framing *out)
{
    if (!s || !out)
        return xtk__fail(EINVAL);
    *out = s->fr;
    out->config = NULL;
    return 0;
}

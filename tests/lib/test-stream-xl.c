/*
 * test-stream-xl.c - the libxl and xl framing around a stream (xtk_stream(3),
 * "framing"; xtk-stream(5), "FRAMING").
 *
 *   - the bytes xtk writes: xl header, optional data (config length and
 *     config), libxl header, LIBXC_CONTEXT, the bare stream with a libxl
 *     CHECKPOINT_END after each CHECKPOINT, the libxl END after END;
 *   - Xen 4.17's verify-stream-v2 -f xl and -f libxl accept them;
 *   - reading back: the framing, the config, every record; the bare stream
 *     (also gzipped) still reads, with nothing consumed by the framing;
 *   - byte for byte: a file read record by record and written again with
 *     the framing and config read is the same file (checksummed ones too:
 *     the checksum window is the bare stream's);
 *   - every field of the xl header, the optional data, the libxl header
 *     and the libxl records, corrupted: the errno and a message that says
 *     what is wrong; truncation at every offset and bit flips in the
 *     framing: a clean error, never a crash;
 *   - what the writer refuses.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stream-util.h"
#include "test.h"

/* A logger that keeps the first error message of a read. */
struct capture {
    struct xtk_logger lg;
    char first[512];
};

static void cap_vmessage(struct xtk_logger *lg, xtk_log_level level,
                         int errnoval, const char *context, const char *fmt,
                         va_list al)
{
    struct capture *c = (struct capture *)lg;
    int e = errno;

    (void)errnoval;
    (void)context;
    if (level >= XTK_LOG_ERROR && !c->first[0])
        vsnprintf(c->first, sizeof(c->first), fmt, al);
    if (getenv("XTK_TEST_VERBOSE")) {
        vfprintf(stderr, fmt, al);
        fputc('\n', stderr);
    }
    errno = e;
}

static struct capture cap = {.lg = {.vmessage = cap_vmessage}};
static struct xtk_ctx *ctx;

static const char json_cfg[] =
    "{\n    \"c_info\": {\n        \"type\": \"pvh\",\n        \"name\": "
    "\"guest\"\n    },\n    \"b_info\": {\n        \"max_memkb\": 16384\n"
    "    }\n}\n"; /* sizeof: the NUL included, as xl writes it */
static const char text_cfg[] =
    "name = \"guest\"\ntype = \"pvh\"\nmemory = 16\n";

/* Offsets in an xl file whose config is clen bytes. */
#define OFF_CONFIG 52u /* after the header and the config length */
static size_t libxl_at(uint32_t clen)
{
    return OFF_CONFIG + clen;
}
static size_t bare_at(uint32_t clen)
{
    return libxl_at(clen) + XTK_LIBXL_HEADER_SIZE + 8;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static uint8_t *memfd_bytes(int fd, size_t *len)
{
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *data;

    TEST_ASSERT(size > 0, "size");
    data = malloc((size_t)size);
    TEST_ASSERT(data && pread(fd, data, (size_t)size, 0) == size, "pread");
    close(fd);
    *len = (size_t)size;
    return data;
}

/* t written with the framing, through zlib if level >= 0. */
static uint8_t *framed_bytes(const struct tstream *t, uint32_t framing,
                             uint32_t xl_flags, const void *cfg, uint32_t clen,
                             unsigned sflags, int level, size_t *len)
{
    int fd = memfd_create("xl", MFD_CLOEXEC);
    struct xtk_stream *s;

    TEST_ASSERT(fd >= 0, "memfd_create");
    s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE | sflags);
    TEST_ASSERT(s, "xtk_stream_fd");
    if (level >= 0)
        TEST_ASSERT(xtk_stream_push_zlib(s, level) == 0, "push_zlib");
    TEST_ASSERT(xtk_stream_write_framing(s, framing, xl_flags, cfg, clen) == 0,
                "write_framing %u", framing);
    tstream_write(t, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    return memfd_bytes(fd, len);
}

/*
 * Reads a framed stream strictly (framing, headers, records to END, then
 * the end of the data).  Returns 0 or the errno; the first error message
 * is in cap.first.  *fr gets the framing as it stood at the end.
 */
static int read_framed(const uint8_t *data, size_t len, unsigned sflags,
                       struct xtk_stream_framing *fr_out)
{
    struct xtk_stream *s = mem_reader(ctx, data, len, sflags, 0);
    struct xtk_stream_framing fr;
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;
    uint8_t extra;
    int err = 0;

    cap.first[0] = 0;
    if (xtk_stream_read_framing(s, &fr) < 0)
        goto fail;
    free(fr.config);
    if (xtk_stream_read_image_header(s, &ih) < 0 ||
        xtk_stream_read_domain_header(s, &dh) < 0)
        goto fail;
    do {
        if (xtk_stream_read_record(s, &rec) < 0)
            goto fail;
    } while (rec.type != XTK_REC_END);
    if (xtk_stream_read(s, &extra, 1) == 0) {
        err = EBADMSG;
        snprintf(cap.first, sizeof(cap.first), "data after the end");
        goto out;
    }
    if (errno != ENODATA)
        goto fail;
    goto out;
fail:
    err = errno;
    TEST_ASSERT(err && err == xtk_stream_error(s), "errno %d, sticky %d", err,
                xtk_stream_error(s));
    TEST_ASSERT(cap.first[0], "an error message for errno %d", err);
out:
    if (fr_out)
        xtk_stream_get_framing(s, fr_out);
    xtk_stream_close(s);
    return err;
}

/* The bare stream's bytes with the libxl records a framed writer adds. */
static uint8_t *expected_inner(const uint8_t *bare, size_t bare_len,
                               size_t *len, unsigned *ckpts)
{
    uint8_t *out = malloc(bare_len * 2 + 64);
    size_t o = 40, k;

    TEST_ASSERT(out, "malloc");
    memcpy(out, bare, 40);
    k = 40;
    *ckpts = 0;
    while (o < bare_len) {
        uint32_t type = get32(bare + o), rl = get32(bare + o + 4);
        size_t n = 8 + ((rl + 7) & ~7u);

        memcpy(out + k, bare + o, n);
        k += n;
        o += n;
        if (type == XTK_REC_CHECKPOINT || type == XTK_REC_END) {
            put32(out + k, type == XTK_REC_END ? XTK_LIBXL_REC_END
                                               : XTK_LIBXL_REC_CHECKPOINT_END);
            put32(out + k + 4, 0);
            k += 8;
            *ckpts += type == XTK_REC_CHECKPOINT;
        }
    }
    TEST_ASSERT(o == bare_len, "walked the bare stream");
    *len = k;
    return out;
}

static struct tstream known;   /* 3 epochs: 2 CHECKPOINTs */
static struct tstream plainst; /* 1 epoch, for Xen's verifier */

/* ---- the bytes ------------------------------------------------------ */

static void test_layout(void)
{
    size_t bare_len, xl_len, lx_len, in_len;
    uint8_t *bare = tstream_bytes(&known, 0, -1, &bare_len);
    uint8_t *xl =
        framed_bytes(&known, XTK_STREAM_FRAMING_XL, XTK_XL_CONFIG_JSON,
                     json_cfg, sizeof(json_cfg), 0, -1, &xl_len);
    uint8_t *lx = framed_bytes(&known, XTK_STREAM_FRAMING_LIBXL, 0, NULL, 0, 0,
                               -1, &lx_len);
    uint32_t clen = sizeof(json_cfg);
    size_t b = bare_at(clen);
    unsigned ckpts;
    uint8_t *inner = expected_inner(bare, bare_len, &in_len, &ckpts);
    static const uint8_t libxl_hdr[16] = {'L', 'i', 'b', 'x', 'l', 'F',
                                          'm', 't', 0,   0,   0,   2};

    TEST_ASSERT(ckpts == 2, "two CHECKPOINTs");
    TEST_ASSERT(!memcmp(xl, "Xen saved domain, xl format\n \0 \r", 32),
                "xl magic");
    TEST_ASSERT(get32(xl + 32) == 0x01020304, "byte order");
    TEST_ASSERT(get32(xl + 36) == 3, "mandatory flags: JSON | STREAMv2");
    TEST_ASSERT(get32(xl + 40) == 0, "optional flags");
    TEST_ASSERT(get32(xl + 44) == 4 + clen, "optional data length");
    TEST_ASSERT(get32(xl + 48) == clen, "config length");
    TEST_ASSERT(!memcmp(xl + OFF_CONFIG, json_cfg, clen), "config");
    TEST_ASSERT(!memcmp(xl + libxl_at(clen), libxl_hdr, 16), "libxl header");
    TEST_ASSERT(get32(xl + libxl_at(clen) + 16) ==
                        XTK_LIBXL_REC_LIBXC_CONTEXT &&
                    get32(xl + libxl_at(clen) + 20) == 0,
                "LIBXC_CONTEXT");
    TEST_ASSERT(xl_len == b + in_len, "length %zu, want %zu", xl_len,
                b + in_len);
    TEST_ASSERT(!memcmp(xl + b, inner, in_len),
                "the bare stream with CHECKPOINT_END and END");
    /* libxl framing alone: the same after its header. */
    TEST_ASSERT(lx_len == 24 + in_len && !memcmp(lx, libxl_hdr, 16) &&
                    !memcmp(lx + 24, inner, in_len),
                "libxl framing");
    free(inner);
    free(bare);
    free(xl);
    free(lx);
}

/* ---- reading back ----------------------------------------------------- */

static void check_framed(const uint8_t *data, size_t len, uint32_t framing,
                         uint32_t flags, const void *cfg, uint32_t clen,
                         unsigned sflags, int zlib)
{
    struct xtk_stream *s = mem_reader(ctx, data, len, sflags, zlib);
    struct xtk_stream_framing fr, now;
    uint8_t extra;

    TEST_ASSERT(xtk_stream_read_framing(s, &fr) == 0, "read_framing: %s",
                cap.first);
    TEST_ASSERT(fr.framing == framing, "framing %u, want %u", fr.framing,
                framing);
    if (framing == XTK_STREAM_FRAMING_XL) {
        TEST_ASSERT(fr.xl_mandatory_flags == (flags | XTK_XL_STREAM_V2),
                    "mandatory flags %#x", fr.xl_mandatory_flags);
        TEST_ASSERT(fr.xl_optional_flags == 0 && fr.xl_optional_len == 4 + clen,
                    "optional flags and length");
    }
    TEST_ASSERT(fr.config_len == clen, "config length %u, want %u",
                fr.config_len, clen);
    if (clen)
        TEST_ASSERT(fr.config && !memcmp(fr.config, cfg, clen) &&
                        !((uint8_t *)fr.config)[clen],
                    "the config, NUL-terminated");
    else
        TEST_ASSERT(!fr.config, "no config");
    free(fr.config);
    TEST_ASSERT(fr.libxc_offset == (framing == XTK_STREAM_FRAMING_XL
                                        ? bare_at(clen)
                                    : framing == XTK_STREAM_FRAMING_LIBXL ? 24
                                                                          : 0),
                "the bare stream at %llu", (unsigned long long)fr.libxc_offset);
    tstream_check(&known, s);
    TEST_ASSERT_ERRNO(xtk_stream_read(s, &extra, 1), ENODATA);
    TEST_ASSERT(xtk_stream_get_framing(s, &now) == 0 && !now.config,
                "get_framing");
    if (framing != XTK_STREAM_FRAMING_LIBXC) {
        TEST_ASSERT(now.libxl_checkpoint_ends == 2, "2 CHECKPOINT_END");
        TEST_ASSERT(now.libxl_records == 4, "4 libxl records, not %llu",
                    (unsigned long long)now.libxl_records);
        TEST_ASSERT(zlib || now.libxl_end_offset == len - 8,
                    "libxl END at %llu",
                    (unsigned long long)now.libxl_end_offset);
    } else {
        TEST_ASSERT(now.libxl_records == 0 && now.libxc_offset == 0,
                    "a bare stream");
    }
    xtk_stream_close(s);
}

static void test_read_back(void)
{
    static const struct {
        uint32_t framing, flags;
        const void *cfg;
        uint32_t clen;
        unsigned sflags;
    } cases[] = {
        {XTK_STREAM_FRAMING_XL, XTK_XL_CONFIG_JSON, json_cfg, sizeof(json_cfg),
         0},
        {XTK_STREAM_FRAMING_XL, 0, text_cfg, sizeof(text_cfg) - 1, 0},
        {XTK_STREAM_FRAMING_XL, 0, NULL, 0, 0},
        {XTK_STREAM_FRAMING_XL, XTK_XL_CONFIG_JSON | XTK_XL_STREAM_V2, json_cfg,
         sizeof(json_cfg), XTK_STREAM_CHECKSUM},
        {XTK_STREAM_FRAMING_LIBXL, 0, NULL, 0, 0},
        {XTK_STREAM_FRAMING_LIBXL, 0, NULL, 0, XTK_STREAM_CHECKSUM},
        {XTK_STREAM_FRAMING_LIBXC, 0, NULL, 0, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint8_t *d;

        for (int level = -1; level <= 1; level += 2) {
            d = framed_bytes(&known, cases[i].framing, cases[i].flags,
                             cases[i].cfg, cases[i].clen, cases[i].sflags,
                             level, &len);
            check_framed(d, len, cases[i].framing,
                         cases[i].flags & XTK_XL_CONFIG_JSON, cases[i].cfg,
                         cases[i].clen, cases[i].sflags, level >= 0);
            if (level < 0)
                TEST_ASSERT(read_framed(d, len, cases[i].sflags, NULL) == 0,
                            "strict read of case %zu: %s", i, cap.first);
            free(d);
        }
    }
    /* A bare stream written as today: read_framing consumes nothing. */
    {
        size_t len;
        uint8_t *d = tstream_bytes(&known, 0, -1, &len);

        check_framed(d, len, XTK_STREAM_FRAMING_LIBXC, 0, NULL, 0, 0, 0);
        free(d);
        d = tstream_bytes(&known, 0, 1, &len);
        check_framed(d, len, XTK_STREAM_FRAMING_LIBXC, 0, NULL, 0, 0, 1);
        free(d);
    }
}

/* An xl file read without reading its framing: the error says so. */
static void test_hint(void)
{
    size_t len;
    uint8_t *d =
        framed_bytes(&known, XTK_STREAM_FRAMING_XL, 0, NULL, 0, 0, -1, &len);
    struct xtk_stream *s = mem_reader(ctx, d, len, 0, 0);
    struct xtk_stream_image_header ih;

    cap.first[0] = 0;
    TEST_ASSERT_ERRNO(xtk_stream_read_image_header(s, &ih), EBADMSG);
    TEST_ASSERT(strstr(cap.first, "xl save file") &&
                    strstr(cap.first, "xtk_stream_read_framing"),
                "message: %s", cap.first);
    xtk_stream_close(s);
    free(d);
}

/* ---- byte for byte ------------------------------------------------------ */

/* Reads a framed stream and writes what it read, framing included. */
static uint8_t *copy_through(const uint8_t *data, size_t len, unsigned sflags,
                             size_t *out_len)
{
    struct xtk_stream *in = mem_reader(ctx, data, len, sflags, 0);
    int fd = memfd_create("copy", MFD_CLOEXEC);
    struct xtk_stream *out = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE | sflags);
    struct xtk_stream_framing fr;
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;

    TEST_ASSERT(out, "writer");
    TEST_ASSERT(xtk_stream_read_framing(in, &fr) == 0, "read_framing");
    TEST_ASSERT(xtk_stream_write_framing(
                    out, fr.framing, fr.xl_mandatory_flags & XTK_XL_CONFIG_JSON,
                    fr.config, fr.config_len) == 0,
                "write_framing");
    free(fr.config);
    TEST_ASSERT(xtk_stream_read_image_header(in, &ih) == 0 &&
                    xtk_stream_read_domain_header(in, &dh) == 0,
                "headers");
    TEST_ASSERT(xtk_stream_write_image_header(out) == 0 &&
                    xtk_stream_write_domain_header(out, dh.type, dh.xen_major,
                                                   dh.xen_minor) == 0,
                "headers");
    do {
        int rc;

        TEST_ASSERT(xtk_stream_read_record(in, &rec) == 0, "record");
        if (rec.type == XTK_REC_CHECKSUM)
            continue; /* the writer makes its own */
        if (rec.type == XTK_REC_CHECKPOINT)
            rc = xtk_stream_write_checkpoint(out);
        else if (rec.type == XTK_REC_END)
            rc = xtk_stream_write_end(out);
        else
            rc = xtk_stream_write_record(out, rec.type, rec.body, rec.length);
        TEST_ASSERT(rc == 0, "writing %#x", rec.type);
    } while (rec.type != XTK_REC_END);
    xtk_stream_close(in);
    TEST_ASSERT(xtk_stream_close(out) == 0, "close");
    return memfd_bytes(fd, out_len);
}

static void test_byte_for_byte(void)
{
    for (unsigned sflags = 0; sflags <= XTK_STREAM_CHECKSUM;
         sflags += XTK_STREAM_CHECKSUM) {
        for (uint32_t f = XTK_STREAM_FRAMING_LIBXC; f <= XTK_STREAM_FRAMING_XL;
             f++) {
            size_t len, len2;
            int json = f == XTK_STREAM_FRAMING_XL;
            uint8_t *d =
                framed_bytes(&known, f, json ? XTK_XL_CONFIG_JSON : 0,
                             json ? json_cfg : NULL,
                             json ? sizeof(json_cfg) : 0, sflags, -1, &len);
            uint8_t *d2 = copy_through(d, len, sflags, &len2);

            TEST_ASSERT(len == len2 && !memcmp(d, d2, len),
                        "framing %u, flags %#x: %zu bytes in, %zu out, "
                        "different",
                        f, sflags, len, len2);
            free(d);
            free(d2);
        }
    }
}

/* ---- Xen's verifier ----------------------------------------------------- */

static void test_xen_verifier(void)
{
    const char *bindir = getenv("XEN_BINDIR");
    char path[] = "/tmp/xtk-xl-XXXXXX", cmd[512];
    static const char *const fmts[] = {"libxc", "libxl", "xl", "xl"};
    int fd, rc;

    TEST_ASSERT(bindir && *bindir, "XEN_BINDIR is set (make check sets it)");
    snprintf(cmd, sizeof(cmd), "%s/verify-stream-v2", bindir);
    TEST_ASSERT(access(cmd, X_OK) == 0,
                "%s exists (Debian package xen-utils-4.17)", cmd);
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t f = i < 3 ? i : XTK_STREAM_FRAMING_XL;
        size_t len;
        uint8_t *d = framed_bytes(&plainst, f, i == 2 ? XTK_XL_CONFIG_JSON : 0,
                                  i == 2   ? (const void *)json_cfg
                                  : i == 3 ? text_cfg
                                           : NULL,
                                  i == 2   ? sizeof(json_cfg)
                                  : i == 3 ? sizeof(text_cfg) - 1
                                           : 0,
                                  0, -1, &len);

        fd = mkstemp(path);
        TEST_ASSERT(fd >= 0 && write(fd, d, len) == (ssize_t)len, "tmp file");
        close(fd);
        snprintf(cmd, sizeof(cmd),
                 "PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 "
                 "%s/verify-stream-v2 -q -f %s -i %s",
                 bindir, fmts[i], path);
        rc = system(cmd);
        TEST_ASSERT(rc == 0, "verify-stream-v2 -f %s accepts it (status %d)",
                    fmts[i], rc);
        /* ... and refuses it as the wrong format (it is that strict). */
        if (i) {
            snprintf(cmd, sizeof(cmd),
                     "PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 "
                     "%s/verify-stream-v2 -q -f libxc -i %s",
                     bindir, path);
            TEST_ASSERT(system(cmd) != 0, "-f libxc refuses a framed file");
        }
        unlink(path);
        strcpy(path, "/tmp/xtk-xl-XXXXXX");
        free(d);
    }
}

/* ---- corruption ------------------------------------------------------- */

static int is_error(int err)
{
    return err == EBADMSG || err == EPROTO || err == E2BIG || err == ENODATA;
}

/* A copy of data with a u32 written at off. */
static int try32(const uint8_t *data, size_t len, size_t off, uint32_t v)
{
    uint8_t *c = malloc(len);
    int err;

    TEST_ASSERT(c, "malloc");
    memcpy(c, data, len);
    put32(c + off, v);
    err = read_framed(c, len, 0, NULL);
    free(c);
    return err;
}

/* A copy of data with n bytes spliced in at off (replacing cut bytes). */
static int splice(const uint8_t *data, size_t len, size_t off, size_t cut,
                  const void *ins, size_t n, struct xtk_stream_framing *fr)
{
    uint8_t *c = malloc(len + n);
    int err;

    TEST_ASSERT(c && cut <= len - off, "malloc");
    memcpy(c, data, off);
    if (n)
        memcpy(c + off, ins, n);
    memcpy(c + off + n, data + off + cut, len - off - cut);
    err = read_framed(c, len - cut + n, 0, fr);
    free(c);
    return err;
}

/* Whether the first error message has word in it (NULL: any). */
static int says(const char *word)
{
    return !word || strstr(cap.first, word);
}

/* A read's errno, and a message that says what is wrong. */
#define EXPECT(call, err, word)                                                \
    do {                                                                       \
        int got_ = (call);                                                     \
        TEST_ASSERT(got_ == (err), "%s: errno %d (%s), want %d; message: %s",  \
                    #call, got_, strerror(got_), (err), cap.first);            \
        TEST_ASSERT(says(word), "%s: the message lacks \"%s\": %s", #call,     \
                    (const char *)(word), cap.first);                          \
    } while (0)

static uint8_t *good;
static size_t good_len;
static const uint32_t clen = sizeof(json_cfg);

static void test_xl_header(void)
{
    uint8_t *c = malloc(good_len);
    size_t p = libxl_at(clen);

    TEST_ASSERT(c, "malloc");
    EXPECT(read_framed(good, good_len, 0, NULL), 0, NULL);
    /* The magic, after the 8 bytes that say "xl": EBADMSG. */
    for (size_t off = 8; off < 32; off++) {
        memcpy(c, good, good_len);
        c[off] ^= 0x20;
        EXPECT(read_framed(c, good_len, 0, NULL), EBADMSG, "magic");
    }
    /* In the first 8, it is not an xl file: the image header refuses it. */
    memcpy(c, good, good_len);
    c[0] = 'x';
    EXPECT(read_framed(c, good_len, 0, NULL), EBADMSG, "image header");
    EXPECT(try32(good, good_len, 32, 0x04030201), EPROTO, "big-endian");
    EXPECT(try32(good, good_len, 32, 0x01020305), EBADMSG, "byte order");
    EXPECT(try32(good, good_len, 36, 3 | 4), EPROTO, "mandatory flags");
    EXPECT(try32(good, good_len, 36, 3 | 0x80000000u), EPROTO,
           "mandatory flags");
    EXPECT(try32(good, good_len, 36, XTK_XL_CONFIG_JSON), EPROTO, "legacy");
    EXPECT(try32(good, good_len, 36, 0), EPROTO, "legacy");
    /* optional_flags: xl ignores them, and so does xtk. */
    EXPECT(try32(good, good_len, 40, 0xffffffffu), 0, NULL);
    EXPECT(try32(good, good_len, 44, XTK_XL_OPTIONAL_MAX + 1), E2BIG,
           "optional data");
    EXPECT(try32(good, good_len, 44, UINT32_MAX), E2BIG, "optional data");
    EXPECT(try32(good, good_len, 44, 3), EBADMSG, "config's length");
    EXPECT(try32(good, good_len, 44, 0), EBADMSG, "JSON flag");
    /* Shorter than the config it holds. */
    EXPECT(try32(good, good_len, 44, 4 + clen - 1), EBADMSG, "config of");
    /* Longer: the libxl header is then read from the wrong place. */
    EXPECT(try32(good, good_len, 44, 4 + clen + 8), EBADMSG, "libxl header");
    /* The config's length. */
    EXPECT(try32(good, good_len, 48, clen + 1), EBADMSG, "config of");
    EXPECT(try32(good, good_len, 48, UINT32_MAX), EBADMSG, "config of");
    EXPECT(try32(good, good_len, 48, 0), EBADMSG, "JSON");
    /* A JSON config that is not one NUL-terminated string... */
    memcpy(c, good, good_len);
    c[OFF_CONFIG + clen - 1] = '}';
    EXPECT(read_framed(c, good_len, 0, NULL), EBADMSG, "NUL-terminated");
    memcpy(c, good, good_len);
    c[OFF_CONFIG + 3] = 0;
    EXPECT(read_framed(c, good_len, 0, NULL), EBADMSG, "NUL-terminated");
    /* ... is fine as .cfg text (xl takes that with its length). */
    put32(c + 36, XTK_XL_STREAM_V2);
    EXPECT(read_framed(c, good_len, 0, NULL), 0, NULL);
    /* Optional data after the config (a newer xl's): skipped. */
    {
        uint8_t tail[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        uint8_t *g = malloc(good_len + sizeof(tail));
        struct xtk_stream_framing fr;
        struct xtk_stream *s;

        TEST_ASSERT(g, "malloc");
        memcpy(g, good, p);
        memcpy(g + p, tail, sizeof(tail));
        memcpy(g + p + sizeof(tail), good + p, good_len - p);
        put32(g + 44, 4 + clen + sizeof(tail));
        EXPECT(read_framed(g, good_len + sizeof(tail), 0, NULL), 0, NULL);
        s = mem_reader(ctx, g, good_len + sizeof(tail), 0, 0);
        TEST_ASSERT(xtk_stream_read_framing(s, &fr) == 0 &&
                        fr.config_len == clen &&
                        fr.xl_optional_len == 4 + clen + sizeof(tail) &&
                        !memcmp(fr.config, json_cfg, clen),
                    "the config, with a tail after it");
        free(fr.config);
        xtk_stream_close(s);
        free(g);
    }
    free(c);
}

static void test_libxl_header(void)
{
    size_t p = libxl_at(clen);
    uint8_t *c = malloc(good_len);

    TEST_ASSERT(c, "malloc");
    for (size_t off = p; off < p + 8; off++) {
        memcpy(c, good, good_len);
        c[off] ^= 1;
        EXPECT(read_framed(c, good_len, 0, NULL), EBADMSG, "LibxlFmt");
    }
    EXPECT(try32(good, good_len, p + 8, htobe32(1)), EPROTO, "version");
    EXPECT(try32(good, good_len, p + 8, htobe32(3)), EPROTO, "version");
    EXPECT(try32(good, good_len, p + 12, htobe32(1)), EPROTO, "big-endian");
    EXPECT(try32(good, good_len, p + 12, htobe32(4)), EBADMSG, "reserved");
    EXPECT(try32(good, good_len, p + 12, htobe32(0x80000000u)), EBADMSG,
           "reserved");
    /* Converted from a legacy stream: fine (the stream inside is v2). */
    EXPECT(try32(good, good_len, p + 12, htobe32(2)), 0, NULL);
    free(c);
}

static void test_libxl_records(void)
{
    size_t p = libxl_at(clen) + 16, end = good_len - 8, ck = 0;
    uint32_t emu[4] = {XTK_LIBXL_REC_EMULATOR_CONTEXT, 13, 2, 0};
    uint8_t emu_rec[8 + 16] = {0}, xs_rec[8 + 16] = {0};
    uint32_t opt[2] = {0x80000007u, 0};
    struct xtk_stream_framing fr;

    /* Where the first CHECKPOINT_END is. */
    for (size_t o = bare_at(clen) + 16; o < good_len;
         o += 8 + ((get32(good + o + 4) + 7) & ~7u))
        if (get32(good + o) == XTK_REC_CHECKPOINT) {
            ck = o + 8;
            break;
        }
    TEST_ASSERT(ck && get32(good + ck) == XTK_LIBXL_REC_CHECKPOINT_END,
                "found the CHECKPOINT_END");
    TEST_ASSERT(get32(good + end) == XTK_LIBXL_REC_END, "the libxl END");

    /* LIBXC_CONTEXT. */
    EXPECT(try32(good, good_len, p, XTK_LIBXL_REC_EMULATOR_CONTEXT), EBADMSG,
           "emulator header"); /* length 0 */
    EXPECT(try32(good, good_len, p, XTK_LIBXL_REC_END), EPROTO,
           "LIBXC_CONTEXT was due");
    EXPECT(try32(good, good_len, p, XTK_LIBXL_REC_CHECKPOINT_END), EPROTO,
           "LIBXC_CONTEXT was due");
    EXPECT(try32(good, good_len, p, XTK_LIBXL_REC_CHECKPOINT_STATE), EPROTO,
           "COLO");
    EXPECT(try32(good, good_len, p, 6), EPROTO, "unknown mandatory");
    EXPECT(try32(good, good_len, p + 4, 8), EBADMSG, "has none");
    EXPECT(try32(good, good_len, p + 4, XTK_STREAM_RECORD_MAX + 1), E2BIG,
           "limit");
    /* An optional record before it is skipped. */
    EXPECT(splice(good, good_len, p, 0, opt, 8, NULL), 0, NULL);

    /* CHECKPOINT_END. */
    EXPECT(try32(good, good_len, ck, XTK_LIBXL_REC_END), EPROTO,
           "CHECKPOINT_END was due");
    EXPECT(try32(good, good_len, ck, XTK_LIBXL_REC_LIBXC_CONTEXT), EPROTO,
           "CHECKPOINT_END was due");
    EXPECT(try32(good, good_len, ck, 0x13), EPROTO, "unknown mandatory");
    EXPECT(try32(good, good_len, ck + 4, 16), EBADMSG, "has none");
    /* Missing: the bare stream's next record is read as a libxl one. */
    EXPECT(splice(good, good_len, ck, 8, NULL, 0, NULL), EBADMSG, "has none");
    /* Emulator records before it: checked and skipped. */
    memcpy(emu_rec, emu, 16);
    EXPECT(splice(good, good_len, ck, 0, emu_rec, sizeof(emu_rec), &fr), 0,
           NULL);
    TEST_ASSERT(fr.libxl_emulator_records == 1 && fr.libxl_checkpoint_ends == 2,
                "counted");

    /* The libxl END. */
    EXPECT(try32(good, good_len, end, XTK_LIBXL_REC_CHECKPOINT_END), EPROTO,
           "END was due");
    EXPECT(try32(good, good_len, end, XTK_LIBXL_REC_LIBXC_CONTEXT), EPROTO,
           "END was due");
    EXPECT(try32(good, good_len, end, 0x7fffffff), EPROTO, "unknown");
    EXPECT(try32(good, good_len, end + 4, 8), EBADMSG, "truncated");
    EXPECT(read_framed(good, good_len - 8, 0, NULL), ENODATA, "libxl END");
    EXPECT(read_framed(good, good_len - 3, 0, NULL), EBADMSG, "truncated");
    EXPECT(splice(good, good_len, good_len, 0, "junk", 4, NULL), EBADMSG,
           "after the end");
    EXPECT(splice(good, good_len, end, 0, opt, 8, NULL), 0, NULL);
    /* Emulator records before it (as libxl writes for HVM guests). */
    EXPECT(splice(good, good_len, end, 0, emu_rec, sizeof(emu_rec), &fr), 0,
           NULL);
    TEST_ASSERT(fr.libxl_emulator_records == 1 &&
                    fr.libxl_end_offset == end + sizeof(emu_rec),
                "counted, END at %llu",
                (unsigned long long)fr.libxl_end_offset);
    emu_rec[8] = 3; /* emulator id */
    EXPECT(splice(good, good_len, end, 0, emu_rec, sizeof(emu_rec), NULL),
           EPROTO, "emulator id");
    emu_rec[8] = 1;
    emu_rec[8 + 15] = 1; /* padding */
    EXPECT(splice(good, good_len, end, 0, emu_rec, sizeof(emu_rec), NULL),
           EBADMSG, "padding");
    emu_rec[8 + 15] = 0;
    put32(emu_rec + 4, 7); /* too short for its header */
    EXPECT(splice(good, good_len, end, 0, emu_rec, sizeof(emu_rec), NULL),
           EBADMSG, "too short");
    /* Xenstore data: pairs of NUL-terminated strings. */
    put32(xs_rec, XTK_LIBXL_REC_EMULATOR_XENSTORE_DATA);
    put32(xs_rec + 4, 8 + 8);
    memcpy(xs_rec + 16, "key\0val", 8);
    EXPECT(splice(good, good_len, end, 0, xs_rec, sizeof(xs_rec), NULL), 0,
           NULL);
    memcpy(xs_rec + 16, "key\0valx", 8);
    EXPECT(splice(good, good_len, end, 0, xs_rec, sizeof(xs_rec), NULL),
           EBADMSG, "NUL-terminated");
    memcpy(xs_rec + 16, "keyvalx", 8);
    EXPECT(splice(good, good_len, end, 0, xs_rec, sizeof(xs_rec), NULL),
           EBADMSG, "NUL-terminated");
    /* Before LIBXC_CONTEXT, an emulator record is out of place. */
    memcpy(xs_rec + 16, "key\0val", 8);
    EXPECT(splice(good, good_len, p, 0, xs_rec, sizeof(xs_rec), NULL), EPROTO,
           "LIBXC_CONTEXT was due");
}

/* The libxl record boundaries and the ends of the bare stream's records
 * in a framed file: where a cut is a clean end (ENODATA). */
static int clean_cut(const uint8_t *d, size_t len, size_t at)
{
    size_t b = bare_at(clen), o = b + 40;

    if (at == 0 || at == libxl_at(clen) + 16 || at == b || at == len - 8)
        return 1;
    while (o < len - 8) {
        uint32_t type = get32(d + o);

        if (at == o)
            return 1;
        o += 8 + ((get32(d + o + 4) + 7) & ~7u);
        if (type == XTK_REC_CHECKPOINT) {
            if (at == o)
                return 1;
            o += 8; /* CHECKPOINT_END */
        }
    }
    return 0;
}

static void test_truncation(void)
{
    size_t n = 0;

    for (size_t at = 0; at < good_len; at++) {
        int err;

        /* Every offset of the framing and near the libxl records, a
         * sample of the bare stream in between. */
        if (at > bare_at(clen) + 64 && at < good_len - 64 && at % 61)
            continue;
        err = read_framed(good, at, 0, NULL);
        TEST_ASSERT(err == (clean_cut(good, good_len, at) ? ENODATA : EBADMSG),
                    "cut at %zu: errno %d (%s)", at, err, cap.first);
        n++;
    }
    fprintf(stderr, "   %zu cuts, each a clean error\n", n);
}

/* Every bit of the framing's checked bytes, and of the libxl records. */
static void test_flips(void)
{
    uint8_t *c = malloc(good_len);
    size_t n = 0, p = libxl_at(clen);

    TEST_ASSERT(c, "malloc");
    for (size_t off = 0; off < good_len; off++) {
        int checked = off < OFF_CONFIG || (off >= p && off < p + 24) ||
                      off >= good_len - 8;

        /* Not checked: optional_flags (ignored, as xl does), the config
         * (its content), libxl's legacy option bit. */
        if (!checked || (off >= 40 && off < 44))
            continue;
        for (unsigned b = 0; b < 8; b++) {
            int err;

            /* Not checked either: libxl's legacy option bit, and the
             * JSON flag (the config then reads as .cfg text). */
            if ((off == p + 15 && b == 1) || (off == 36 && b == 0))
                continue;
            memcpy(c, good, good_len);
            c[off] ^= (uint8_t)(1u << b);
            err = read_framed(c, good_len, 0, NULL);
            TEST_ASSERT(is_error(err), "flip of bit %u at %zu accepted (%d)", b,
                        off, err);
            n++;
        }
    }
    fprintf(stderr, "   %zu flips in the framing, all refused\n", n);
    free(c);
}

/* ---- what the writer refuses ------------------------------------------ */

static void test_writer(void)
{
    int fd = memfd_create("w", MFD_CLOEXEC);
    struct xtk_stream *s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE), *r;
    struct xtk_stream_framing fr;
    static uint8_t big[XTK_XL_OPTIONAL_MAX];
    char bad_json[] = "{\0}";

    TEST_ASSERT(s, "writer");
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(NULL, 0, 0, NULL, 0), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(s, 3, 0, NULL, 0), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(s, XTK_STREAM_FRAMING_LIBXL,
                                               XTK_XL_CONFIG_JSON, NULL, 0),
                      EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_framing(s, XTK_STREAM_FRAMING_LIBXL, 0, text_cfg, 4),
        EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_framing(s, XTK_STREAM_FRAMING_LIBXC, 0, text_cfg, 4),
        EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL, 4, NULL, 0), EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL, 0, NULL, 4), EINVAL);
    /* JSON: one string, its NUL included. */
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL,
                                               XTK_XL_CONFIG_JSON, NULL, 0),
                      EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL,
                                               XTK_XL_CONFIG_JSON, json_cfg,
                                               sizeof(json_cfg) - 1),
                      EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL,
                                               XTK_XL_CONFIG_JSON, bad_json,
                                               sizeof(bad_json)),
                      EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL, 0, big,
                                               sizeof(big) - 3),
                      E2BIG);
    /* Nothing was written by any of those; the largest config fits. */
    TEST_ASSERT(lseek(fd, 0, SEEK_END) == 0, "nothing written");
    TEST_ASSERT(xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL, 0, big,
                                         sizeof(big) - 4) == 0,
                "a config of 1 MiB - 4");
    TEST_ASSERT_ERRNO(
        xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL, 0, NULL, 0), EINVAL);
    tstream_write(&plainst, s);
    TEST_ASSERT(xtk_stream_close(s) == 0, "close");
    {
        size_t len;
        uint8_t *d = memfd_bytes(fd, &len);

        r = mem_reader(ctx, d, len, 0, 0);
        TEST_ASSERT(xtk_stream_read_framing(r, &fr) == 0 &&
                        fr.config_len == sizeof(big) - 4 &&
                        fr.xl_optional_len == XTK_XL_OPTIONAL_MAX,
                    "the largest config reads back");
        free(fr.config);
        TEST_ASSERT_ERRNO(xtk_stream_read_framing(r, &fr), EINVAL);
        tstream_check(&plainst, r);
        xtk_stream_close(r);
        free(d);
    }

    /* After the image header: too late, both ways. */
    fd = memfd_create("w", MFD_CLOEXEC);
    s = xtk_stream_fd(ctx, fd, XTK_STREAM_WRITE | XTK_STREAM_OWN_FD);
    TEST_ASSERT(s && xtk_stream_write_image_header(s) == 0, "image header");
    TEST_ASSERT_ERRNO(
        xtk_stream_write_framing(s, XTK_STREAM_FRAMING_XL, 0, NULL, 0), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stream_read_framing(s, &fr), EINVAL);
    xtk_stream_close(s);
    {
        size_t len;
        uint8_t *d = tstream_bytes(&plainst, 0, -1, &len);

        r = mem_reader(ctx, d, len, 0, 0);
        TEST_ASSERT(xtk_stream_read_image_header(
                        r, &(struct xtk_stream_image_header){0}) == 0,
                    "image header");
        TEST_ASSERT_ERRNO(xtk_stream_read_framing(r, &fr), EINVAL);
        TEST_ASSERT_ERRNO(xtk_stream_write_framing(r, 0, 0, NULL, 0), EINVAL);
        xtk_stream_close(r);
        /* An empty stream: ENODATA, and the image header says it too. */
        r = mem_reader(ctx, d, 0, 0, 0);
        TEST_ASSERT(xtk_stream_read_framing(r, &fr) == 0 &&
                        fr.framing == XTK_STREAM_FRAMING_LIBXC,
                    "nothing to read");
        TEST_ASSERT_ERRNO(xtk_stream_read_image_header(
                              r, &(struct xtk_stream_image_header){0}),
                          ENODATA);
        xtk_stream_close(r);
        free(d);
    }
}

int main(void)
{
    ctx = xtk_ctx_open(&cap.lg, NULL, 0);
    TEST_ASSERT(ctx, "xtk_ctx_open");
    tstream_build(&known, 11, 40, 16, 3, 0);
    tstream_build(&plainst, 5, 300, 100, 1, 0);
    good = framed_bytes(&known, XTK_STREAM_FRAMING_XL, XTK_XL_CONFIG_JSON,
                        json_cfg, clen, 0, -1, &good_len);
    TEST_RUN(test_layout);
    TEST_RUN(test_read_back);
    TEST_RUN(test_hint);
    TEST_RUN(test_byte_for_byte);
    TEST_RUN(test_xen_verifier);
    TEST_RUN(test_xl_header);
    TEST_RUN(test_libxl_header);
    TEST_RUN(test_libxl_records);
    TEST_RUN(test_truncation);
    TEST_RUN(test_flips);
    TEST_RUN(test_writer);
    free(good);
    tstream_free(&known);
    tstream_free(&plainst);
    xtk_ctx_close(ctx);
    return 0;
}

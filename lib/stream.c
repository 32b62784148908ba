/*
 * stream.c - Xen's migration stream v2: writing and checking records.
 *
 * One table says what each record type may look like (sizes, a reserved
 * field, which domain type it belongs to); the writer and the reader run
 * the same checks, so xtk never writes what it would refuse to read.
 * See xtk-stream(5) for the format and the rules.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "stream-internal.h"

#define XTK_LOG_CONTEXT "stream"

/* Record bodies are read in steps of at most this much. */
#define READ_STEP (1u << 20)

enum {
    DOM_ANY = 0,
    DOM_PV = XTK_DOMAIN_X86_PV,
    DOM_HVM = XTK_DOMAIN_X86_HVM,
};

/* Rule flags. */
#define R_REFUSED 0x1u /* deprecated: never accepted */
#define R_STATIC 0x2u  /* only before STATIC_DATA_END and any PAGE_DATA */
#define R_BACK 0x4u    /* only on COLO's back channel, refused here */
/* At most once per epoch (between CHECKPOINTs); bit in epoch_seen. */
#define R_ONCE_TSC 0x10u
#define R_ONCE_CONTEXT 0x20u
#define R_ONCE_PARAMS 0x40u
#define R_ONCE_SHARED 0x80u
#define R_ONCE (R_ONCE_TSC | R_ONCE_CONTEXT | R_ONCE_PARAMS | R_ONCE_SHARED)

#define NOMAX UINT32_MAX

struct rec_rule {
    const char *name;
    uint32_t min, max; /* body length (max 0: no bound but the limit) */
    uint32_t multiple; /* length is a multiple of it (0: any) */
    uint8_t domain;    /* DOM_* */
    uint8_t res_off;   /* a reserved field that must be zero... */
    uint8_t res_len;   /* ...this long (0: none) */
    uint8_t flags;
};

#define VCPU_RULE(n)                                                           \
    {                                                                          \
        n, 8, NOMAX, 0, DOM_PV, 4, 4, 0                                        \
    }

static const struct rec_rule xen_rules[] = {
    [XTK_REC_END] = {"END", 0, 0, 0, DOM_ANY, 0, 0, 0},
    [XTK_REC_PAGE_DATA] = {"PAGE_DATA", 16, NOMAX, 8, DOM_ANY, 4, 4, 0},
    [XTK_REC_X86_PV_INFO] = {"X86_PV_INFO", 8, 8, 0, DOM_PV, 2, 6, 0},
    [XTK_REC_X86_PV_P2M_FRAMES] = {"X86_PV_P2M_FRAMES", 8, NOMAX, 8, DOM_PV, 0,
                                   0, 0},
    [XTK_REC_X86_PV_VCPU_BASIC] = VCPU_RULE("X86_PV_VCPU_BASIC"),
    [XTK_REC_X86_PV_VCPU_EXTENDED] = VCPU_RULE("X86_PV_VCPU_EXTENDED"),
    [XTK_REC_X86_PV_VCPU_XSAVE] = VCPU_RULE("X86_PV_VCPU_XSAVE"),
    [XTK_REC_SHARED_INFO] = {"SHARED_INFO", 4096, 4096, 0, DOM_PV, 0, 0,
                             R_ONCE_SHARED},
    [XTK_REC_X86_TSC_INFO] = {"X86_TSC_INFO", 24, 24, 0, DOM_ANY, 20, 4,
                              R_ONCE_TSC},
    [XTK_REC_HVM_CONTEXT] = {"HVM_CONTEXT", 1, NOMAX, 0, DOM_HVM, 0, 0,
                             R_ONCE_CONTEXT},
    [XTK_REC_HVM_PARAMS] = {"HVM_PARAMS", 8, NOMAX, 8, DOM_HVM, 4, 4,
                            R_ONCE_PARAMS},
    [XTK_REC_TOOLSTACK] = {"TOOLSTACK", 0, 0, 0, DOM_ANY, 0, 0, R_REFUSED},
    [XTK_REC_X86_PV_VCPU_MSRS] = VCPU_RULE("X86_PV_VCPU_MSRS"),
    [XTK_REC_VERIFY] = {"VERIFY", 0, 0, 0, DOM_ANY, 0, 0, 0},
    [XTK_REC_CHECKPOINT] = {"CHECKPOINT", 0, 0, 0, DOM_ANY, 0, 0, 0},
    [XTK_REC_CHECKPOINT_DIRTY_PFN_LIST] = {"CHECKPOINT_DIRTY_PFN_LIST", 0,
                                           NOMAX, 8, DOM_ANY, 0, 0, R_BACK},
    [XTK_REC_STATIC_DATA_END] = {"STATIC_DATA_END", 0, 0, 0, DOM_ANY, 0, 0, 0},
    [XTK_REC_X86_CPUID_POLICY] = {"X86_CPUID_POLICY", 24, NOMAX, 24, DOM_ANY, 0,
                                  0, R_STATIC},
    [XTK_REC_X86_MSR_POLICY] = {"X86_MSR_POLICY", 16, NOMAX, 16, DOM_ANY, 0, 0,
                                R_STATIC},
};

static const struct rec_rule checksum_rule = {"XTK_CHECKSUM", 16, 16, 0,
                                              DOM_ANY,        0,  0,  0};
static const struct rec_rule heartbeat_rule = {"XTK_HEARTBEAT", 16, 16, 0,
                                               DOM_ANY,         12, 4,  0};
static const struct rec_rule postcopy_rule = {"XTK_POSTCOPY", 32, NOMAX, 8,
                                              DOM_HVM,        4,  4,     0};
static const struct rec_rule prepare_rule = {
    "XTK_POSTCOPY_PREPARE", 32, NOMAX, 8, DOM_HVM, 4, 4, 0};

static const struct {
    uint32_t type;
    const char *name;
} xtk_names[] = {
    {XTK_REC_CHECKSUM, "XTK_CHECKSUM"},
    {XTK_REC_HEARTBEAT, "XTK_HEARTBEAT"},
    {XTK_REC_POSTCOPY, "XTK_POSTCOPY"},
    {XTK_REC_POSTCOPY_PREPARE, "XTK_POSTCOPY_PREPARE"},
    {XTK_REC_KVM_VCPU, "XTK_KVM_VCPU"},
    {XTK_REC_KVM_VM, "XTK_KVM_VM"},
    {XTK_REC_KVM_MEMORY, "XTK_KVM_MEMORY"},
    {XTK_REC_KVM_DEVICE, "XTK_KVM_DEVICE"},
};

const char *xtk_stream_record_name(uint32_t type)
{
    if (type < XTK__ARRAY_SIZE(xen_rules))
        return xen_rules[type].name;
    for (size_t i = 0; i < XTK__ARRAY_SIZE(xtk_names); i++)
        if (xtk_names[i].type == type)
            return xtk_names[i].name;
    return NULL;
}

static const char *domain_name(uint32_t type)
{
    return type == DOM_PV ? "x86 PV" : type == DOM_HVM ? "x86 HVM" : "?";
}

static uint32_t padded(uint32_t length)
{
    return (uint32_t)((length + 7ull) & ~7ull);
}

/* Why a record was refused: an errno and a reason. */
struct verdict {
    int err;
    char why[160];
};

static int refuse(struct verdict *v, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct verdict *v, int err, const char *fmt, ...)
{
    va_list al;

    v->err = err;
    va_start(al, fmt);
    vsnprintf(v->why, sizeof(v->why), fmt, al);
    va_end(al);
    return -1;
}

/*
 * Checks a record that would come next in a stream in state rs: the type,
 * the length against limit and the type's rule, the first bytes of the body
 * (head holds min(length, 24) of them), its place in the stream.  PAGE_DATA
 * bodies are checked in full elsewhere.  0, or -1 with *v filled in.
 */
static int check_record(const struct xtk__record_state *rs, uint32_t limit,
                        uint32_t type, uint32_t length, const uint8_t *head,
                        struct verdict *v)
{
    const struct rec_rule *r = NULL;

    if (length > limit)
        return refuse(v, E2BIG, "length %u is over the limit of %u", length,
                      limit);
    if (type < XTK__ARRAY_SIZE(xen_rules))
        r = &xen_rules[type];
    else if (type == XTK_REC_CHECKSUM)
        r = &checksum_rule;
    else if (type == XTK_REC_HEARTBEAT)
        r = &heartbeat_rule;
    else if (type == XTK_REC_POSTCOPY)
        r = &postcopy_rule;
    else if (type == XTK_REC_POSTCOPY_PREPARE)
        r = &prepare_rule;
    else if (!(type & XTK_REC_OPTIONAL))
        return refuse(v, EPROTO, "unknown mandatory record type %#x", type);
    if (type == XTK_REC_CHECKSUM && !rs->checksummed)
        return refuse(v, EPROTO,
                      "checksum record in a stream whose first "
                      "record was not one");
    if (rs->checksummed && !rs->last_checksum &&
        (type == XTK_REC_CHECKPOINT || type == XTK_REC_END))
        return refuse(v, EBADMSG, "%s not preceded by a checksum record",
                      r->name);
    if (!r)
        return 0; /* an optional record xtk does not know: the caller's */

    if (r->flags & R_REFUSED)
        return refuse(v, EPROTO, "%s records are deprecated", r->name);
    if (r->flags & R_BACK)
        return refuse(v, EPROTO, "%s belongs on the back channel", r->name);
    if (r->flags & rs->epoch_seen & R_ONCE)
        return refuse(v, EPROTO, "a second %s record in one epoch", r->name);
    if (r->domain && r->domain != rs->domain_type)
        return refuse(v, EPROTO, "%s record in an %s stream", r->name,
                      domain_name(rs->domain_type));
    if (length < r->min || length > r->max ||
        (r->multiple && length % r->multiple))
        return refuse(v, EBADMSG, "%s record with a body of %u bytes", r->name,
                      length);
    for (unsigned i = r->res_off; i < r->res_off + r->res_len; i++)
        if (head[i])
            return refuse(v, EBADMSG,
                          "%s record with reserved bytes %u-%u "
                          "set",
                          r->name, r->res_off, r->res_off + r->res_len - 1);
    if (r->flags & R_STATIC && (rs->seen_static_data_end || rs->seen_page_data))
        return refuse(v, EPROTO, "%s record after the static data", r->name);

    switch (type) {
    case XTK_REC_STATIC_DATA_END:
        if (rs->seen_static_data_end || rs->seen_page_data)
            return refuse(v, EPROTO, "STATIC_DATA_END after %s",
                          rs->seen_page_data ? "PAGE_DATA" : "STATIC_DATA_END");
        break;
    case XTK_REC_X86_PV_INFO:
        if ((head[0] != 4 && head[0] != 8) || (head[1] != 3 && head[1] != 4))
            return refuse(v, EBADMSG,
                          "X86_PV_INFO with guest width %u and "
                          "%u page table levels",
                          head[0], head[1]);
        break;
    case XTK_REC_HVM_PARAMS:
        if ((uint64_t)xtk__get_le32(head) * 16 + 8 != length)
            return refuse(v, EBADMSG, "HVM_PARAMS of %u entries in %u bytes",
                          xtk__get_le32(head), length);
        break;
    case XTK_REC_CHECKSUM:
        if (xtk__get_le32(head) != 1)
            return refuse(v, EBADMSG, "checksum algorithm %u",
                          xtk__get_le32(head));
        break;
    }
    return 0;
}

/* What a record accepted in state rs changes. */
static void advance(struct xtk__record_state *rs, uint32_t type)
{
    rs->last_checksum = type == XTK_REC_CHECKSUM;
    if (type < XTK__ARRAY_SIZE(xen_rules))
        rs->epoch_seen |= xen_rules[type].flags & R_ONCE;
    if (type == XTK_REC_CHECKPOINT)
        rs->epoch_seen = 0;
    if (type == XTK_REC_PAGE_DATA)
        rs->seen_page_data = 1;
    else if (type == XTK_REC_STATIC_DATA_END)
        rs->seen_static_data_end = 1;
    else if (type == XTK_REC_END)
        rs->state = XTK__S_ENDED;
}

/* Parses a PAGE_DATA body (8-byte aligned), saying what is wrong. */
static int parse_page_data(const uint8_t *b, uint32_t length,
                           struct xtk_stream_page_data *out, struct verdict *v)
{
    const uint64_t *pfns = (const uint64_t *)(b + 8);
    uint32_t count, npages = 0;

    if (length < 16)
        return refuse(v, EBADMSG, "PAGE_DATA of %u bytes", length);
    count = xtk__get_le32(b);
    if (!count)
        return refuse(v, EBADMSG, "PAGE_DATA with count 0");
    if (xtk__get_le32(b + 4))
        return refuse(v, EBADMSG, "PAGE_DATA with its reserved field set");
    if ((uint64_t)count * 8 + 8 > length)
        return refuse(v, EBADMSG, "PAGE_DATA of %u entries in %u bytes", count,
                      length);
    for (uint32_t i = 0; i < count; i++) {
        unsigned t = xtk_pfn_entry_type(pfns[i]);
        if (pfns[i] & XTK_PFN_RESERVED_MASK)
            return refuse(v, EBADMSG,
                          "PAGE_DATA entry %u (%#llx) has "
                          "reserved bits set",
                          i, (unsigned long long)pfns[i]);
        if (!xtk_page_type_valid(t))
            return refuse(v, EBADMSG,
                          "PAGE_DATA entry %u has reserved type "
                          "%#x",
                          i, t);
        npages += (uint32_t)xtk_page_type_has_data(t);
    }
    if (8 + (uint64_t)count * 8 + (uint64_t)npages * XTK_PAGE_SIZE != length)
        return refuse(v, EBADMSG,
                      "PAGE_DATA of %u entries, %u with data, "
                      "in %u bytes (want %llu)",
                      count, npages, length,
                      8 + (unsigned long long)count * 8 +
                          (unsigned long long)npages * XTK_PAGE_SIZE);
    out->count = count;
    out->npages = npages;
    out->pfns = pfns;
    out->pages = npages ? b + 8 + (size_t)count * 8 : NULL;
    return 0;
}

int xtk_stream_page_data_parse(const void *body, uint32_t length,
                               struct xtk_stream_page_data *out)
{
    struct xtk_stream_page_data pd;
    struct verdict v;

    if (!body || !out || ((uintptr_t)body & 7))
        return xtk__fail(EINVAL);
    if (parse_page_data(body, length, &pd, &v) < 0)
        return xtk__fail(v.err);
    *out = pd;
    return 0;
}

/* ---- writing ---------------------------------------------------------- */

/* A record call is allowed: the stream goes the right way (XTK_STREAM_READ
 * or _WRITE), is where the call belongs, and has not failed. */
static int check_state(struct xtk_stream *s, unsigned dir,
                       enum xtk__stream_state want)
{
    if (!s || !(s->flags & dir) || s->rs.state != want)
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    return 0;
}

static int write_state(struct xtk_stream *s, enum xtk__stream_state want)
{
    return check_state(s, XTK_STREAM_WRITE, want);
}

int xtk_stream_write_image_header(struct xtk_stream *s)
{
    uint8_t h[XTK_STREAM_IMAGE_HEADER_SIZE] = {0};
    uint64_t marker = htobe64(XTK_STREAM_MARKER);
    uint32_t id = htobe32(XTK_STREAM_ID), version = htobe32(XTK_STREAM_VERSION);

    if (write_state(s, XTK__S_IMAGE_HEADER) < 0)
        return -1;
    memcpy(h, &marker, 8);
    memcpy(h + 8, &id, 4);
    memcpy(h + 12, &version, 4);
    /* options (0: little-endian) and the reserved fields stay zero */
    if (xtk_stream_write(s, h, sizeof(h)) < 0)
        return -1;
    s->rs.state = XTK__S_DOMAIN_HEADER;
    return 0;
}

static int write_checksum(struct xtk_stream *s);

int xtk_stream_write_domain_header(struct xtk_stream *s, uint32_t type,
                                   uint32_t xen_major, uint32_t xen_minor)
{
    uint8_t h[XTK_STREAM_DOMAIN_HEADER_SIZE] = {0};
    uint16_t shift = XTK_PAGE_SHIFT;

    if (write_state(s, XTK__S_DOMAIN_HEADER) < 0)
        return -1;
    if (type != XTK_DOMAIN_X86_PV && type != XTK_DOMAIN_X86_HVM)
        return xtk__fail(EINVAL);
    memcpy(h, &type, 4);
    memcpy(h + 4, &shift, 2);
    memcpy(h + 8, &xen_major, 4);
    memcpy(h + 12, &xen_minor, 4);
    if (xtk_stream_write(s, h, sizeof(h)) < 0)
        return -1;
    s->rs.state = XTK__S_RECORDS;
    s->rs.domain_type = type;
    if (s->flags & XTK_STREAM_CHECKSUM) {
        s->rs.checksummed = 1;
        return write_checksum(s);
    }
    return 0;
}

/* Writes a checked record: header, the body pieces, zero padding. */
static int emit(struct xtk_stream *s, uint32_t type, uint32_t length,
                const struct iovec *body, int nbody)
{
    static const uint8_t zeros[8];
    uint32_t hdr[2] = {type, length};
    int niov = 0;

    if (xtk__stream_put(s, &niov, hdr, sizeof(hdr)) < 0)
        return -1;
    for (int i = 0; i < nbody; i++)
        if (xtk__stream_put(s, &niov, body[i].iov_base, body[i].iov_len) < 0)
            return -1;
    if (xtk__stream_put(s, &niov, zeros, padded(length) - length) < 0 ||
        xtk__stream_put_end(s, &niov) < 0)
        return -1;
    s->counters.records++;
    advance(&s->rs, type);
    return 0;
}

/* Writes an XTK_REC_CHECKSUM record for the bytes since the last one. */
static int write_checksum(struct xtk_stream *s)
{
    struct xtk_stream_checksum_body b = {
        .algorithm = 1, .crc = s->crc, .covered = s->crc_bytes};
    struct iovec iov = {.iov_base = &b, .iov_len = sizeof(b)};

    if (emit(s, XTK_REC_CHECKSUM, sizeof(b), &iov, 1) < 0)
        return -1;
    s->crc = (uint32_t)crc32(0, NULL, 0);
    s->crc_bytes = 0;
    return 0;
}

/* Gathers the first min(length, 24) bytes of a body given in pieces. */
static void gather_head(const struct iovec *iov, int iovcnt, uint8_t *head)
{
    size_t got = 0;

    memset(head, 0, 24);
    for (int i = 0; i < iovcnt && got < 24; i++) {
        size_t k = iov[i].iov_len < 24 - got ? iov[i].iov_len : 24 - got;
        memcpy(head + got, iov[i].iov_base, k);
        got += k;
    }
}

int xtk_stream_write_recordv(struct xtk_stream *s, uint32_t type,
                             const struct iovec *iov, int iovcnt)
{
    struct xtk__record_state rs;
    struct xtk_stream_page_data pd = {0};
    struct verdict v;
    uint8_t head[24];
    uint64_t length = 0;

    if (write_state(s, XTK__S_RECORDS) < 0)
        return -1;
    if (iovcnt < 0 || (iovcnt && !iov))
        return xtk__fail(EINVAL);
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len && !iov[i].iov_base)
            return xtk__fail(EINVAL);
        length += iov[i].iov_len;
    }
    if (length > s->record_limit)
        return xtk__fail(E2BIG);
    if (type == XTK_REC_CHECKSUM)
        return xtk__fail(EINVAL); /* written by the stream itself */
    gather_head(iov, iovcnt, head);
    if (type == XTK_REC_PAGE_DATA &&
        (iovcnt != 1 || ((uintptr_t)iov[0].iov_base & 7) ||
         parse_page_data(iov[0].iov_base, (uint32_t)length, &pd, &v) < 0))
        return xtk__fail(EINVAL);
    /* Checked as if the checksum record the stream adds were there. */
    rs = s->rs;
    if (type == XTK_REC_CHECKPOINT || type == XTK_REC_END)
        rs.last_checksum = 1;
    if (check_record(&rs, s->record_limit, type, (uint32_t)length, head, &v) <
        0) {
        XTK_DEBUG(s->ctx, "refusing to write record %#x: %s", type, v.why);
        return xtk__fail(v.err == E2BIG ? E2BIG : EINVAL);
    }
    if ((type == XTK_REC_CHECKPOINT || type == XTK_REC_END) &&
        s->rs.checksummed && write_checksum(s) < 0)
        return -1;
    if (emit(s, type, (uint32_t)length, iov, iovcnt) < 0)
        return -1;
    /* A framed stream: libxl's CHECKPOINT_END or END goes out with it. */
    if ((type == XTK_REC_CHECKPOINT || type == XTK_REC_END) &&
        s->fr.framing != XTK_STREAM_FRAMING_LIBXC &&
        xtk__libxl_write_after(s, type) < 0)
        return -1;
    if (type == XTK_REC_PAGE_DATA) {
        s->counters.page_entries += pd.count;
        s->counters.pages += pd.npages;
    }
    if (type == XTK_REC_CHECKPOINT || type == XTK_REC_END)
        return xtk_stream_flush(s);
    return 0;
}

int xtk_stream_write_record(struct xtk_stream *s, uint32_t type,
                            const void *body, uint32_t length)
{
    struct iovec iov = {.iov_base = (void *)body, .iov_len = length};

    if (length && !body)
        return xtk__fail(EINVAL);
    return xtk_stream_write_recordv(s, type, &iov, length ? 1 : 0);
}

int xtk_stream_write_checkpoint(struct xtk_stream *s)
{
    return xtk_stream_write_recordv(s, XTK_REC_CHECKPOINT, NULL, 0);
}

int xtk_stream_write_end(struct xtk_stream *s)
{
    return xtk_stream_write_recordv(s, XTK_REC_END, NULL, 0);
}

int xtk_stream_write_page_data(struct xtk_stream *s, uint32_t count,
                               const uint64_t *pfns, const void *const *pages)
{
    uint32_t head[2] = {count, 0}, rh[2];
    uint64_t length;
    uint32_t npages = 0;
    int niov = 0;

    if (write_state(s, XTK__S_RECORDS) < 0)
        return -1;
    if (!count || !pfns)
        return xtk__fail(EINVAL);
    for (uint32_t i = 0; i < count; i++) {
        unsigned t = xtk_pfn_entry_type(pfns[i]);
        if ((pfns[i] & XTK_PFN_RESERVED_MASK) || !xtk_page_type_valid(t))
            return xtk__fail(EINVAL);
        if (xtk_page_type_has_data(t)) {
            if (!pages || !pages[i])
                return xtk__fail(EINVAL);
            npages++;
        }
    }
    length = 8 + (uint64_t)count * 8 + (uint64_t)npages * XTK_PAGE_SIZE;
    if (length > s->record_limit)
        return xtk__fail(E2BIG);

    /* Everything goes through xtk__stream_put: the pfn array and the
     * pages are queued from where they are, never copied (unless the
     * stream is checksummed: then they are copied, and the copy is what
     * the CRC covers). */
    rh[0] = XTK_REC_PAGE_DATA;
    rh[1] = (uint32_t)length;
    if (xtk__stream_put(s, &niov, rh, sizeof(rh)) < 0 ||
        xtk__stream_put(s, &niov, head, sizeof(head)) < 0 ||
        xtk__stream_put(s, &niov, pfns, (size_t)count * 8) < 0)
        return -1;
    for (uint32_t i = 0; i < count; i++)
        if (xtk_page_type_has_data(xtk_pfn_entry_type(pfns[i])) &&
            xtk__stream_put(s, &niov, pages[i], XTK_PAGE_SIZE) < 0)
            return -1;
    if (xtk__stream_put_end(s, &niov) < 0)
        return -1;
    s->counters.records++;
    s->counters.page_entries += count;
    s->counters.pages += npages;
    advance(&s->rs, XTK_REC_PAGE_DATA);
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

static int read_state(struct xtk_stream *s, enum xtk__stream_state want)
{
    return check_state(s, XTK_STREAM_READ, want);
}

int xtk_stream_read_image_header(struct xtk_stream *s,
                                 struct xtk_stream_image_header *out)
{
    uint8_t h[XTK_STREAM_IMAGE_HEADER_SIZE];
    uint64_t marker;
    uint32_t id, version, res2;
    uint16_t options, res1;

    if (read_state(s, XTK__S_IMAGE_HEADER) < 0 || !out)
        return out ? -1 : xtk__fail(EINVAL);
    if (xtk__stream_read_exact(s, h, sizeof(h), "the image header", 1) < 0)
        return -1;
    memcpy(&marker, h, 8);
    memcpy(&id, h + 8, 4);
    memcpy(&version, h + 12, 4);
    memcpy(&options, h + 16, 2);
    memcpy(&res1, h + 18, 2);
    memcpy(&res2, h + 20, 4);
    marker = be64toh(marker);
    id = be32toh(id);
    version = be32toh(version);
    options = be16toh(options);
    if (marker != XTK_STREAM_MARKER &&
        (!memcmp(h, XTK_XL_MAGIC, 8) ||
         be64toh(xtk__get_le64(h)) == XTK_LIBXL_IDENT))
        return xtk__stream_fail(s, EBADMSG,
                                "image header: this is %s; read its framing "
                                "first (xtk_stream_read_framing())",
                                h[0] == 'X' ? "an xl save file"
                                            : "a libxl stream");
    if (marker != XTK_STREAM_MARKER)
        return xtk__stream_fail(s, EBADMSG,
                                "image header: marker %#llx is not "
                                "0xffffffffffffffff (a legacy stream, or "
                                "not a migration stream)",
                                (unsigned long long)marker);
    if (id != XTK_STREAM_ID)
        return xtk__stream_fail(s, EBADMSG,
                                "image header: id %#x is not \"XENF\"", id);
    if (version != XTK_STREAM_VERSION)
        return xtk__stream_fail(s, EPROTO,
                                "image header: version %u; xtk reads "
                                "version 3",
                                version);
    if ((options & ~1u) || res1 || res2)
        return xtk__stream_fail(s, EBADMSG,
                                "image header: reserved bits set (options "
                                "%#x, reserved %#x %#x)",
                                options, res1, res2);
    if (options & 1u)
        return xtk__stream_fail(s, EPROTO, "image header: a big-endian stream");
    out->version = version;
    out->options = options;
    s->rs.state = XTK__S_DOMAIN_HEADER;
    return 0;
}

int xtk_stream_read_domain_header(struct xtk_stream *s,
                                  struct xtk_stream_domain_header *out)
{
    uint8_t h[XTK_STREAM_DOMAIN_HEADER_SIZE];
    uint32_t type;
    uint16_t shift, res;

    if (read_state(s, XTK__S_DOMAIN_HEADER) < 0 || !out)
        return out ? -1 : xtk__fail(EINVAL);
    if (xtk__stream_read_exact(s, h, sizeof(h), "the domain header", 0) < 0)
        return -1;
    memcpy(&type, h, 4);
    memcpy(&shift, h + 4, 2);
    memcpy(&res, h + 6, 2);
    if (type != XTK_DOMAIN_X86_PV && type != XTK_DOMAIN_X86_HVM)
        return xtk__stream_fail(s, EPROTO, "domain header: domain type %u",
                                type);
    if (shift != XTK_PAGE_SHIFT)
        return xtk__stream_fail(
            s, EPROTO, "domain header: page shift %u; xtk reads 12", shift);
    if (res)
        return xtk__stream_fail(s, EBADMSG, "domain header: reserved field %#x",
                                res);
    out->type = type;
    out->page_shift = shift;
    out->xen_major = xtk__get_le32(h + 8);
    out->xen_minor = xtk__get_le32(h + 12);
    s->rs.state = XTK__S_RECORDS;
    s->rs.domain_type = type;
    return 0;
}

/* The body of the record at `at` ended after `got` of its `len` bytes. */
static int truncated_body(struct xtk_stream *s, size_t got, uint32_t len,
                          const char *name, uint64_t at)
{
    return xtk__stream_fail(s, EBADMSG,
                            "stream truncated at offset %llu: %zu of the %u "
                            "body bytes of the %s record at offset %llu",
                            (unsigned long long)xtk__stream_offset(s), got, len,
                            name, (unsigned long long)at);
}

/* Reads `len` bytes of a record's body into s->body from `off` on,
 * growing it only as the data arrives. */
static int read_body_at(struct xtk_stream *s, uint32_t off, uint32_t len,
                        const char *name, uint64_t at)
{
    size_t got = off;

    len += off;
    while (got < len) {
        size_t step = len - got < READ_STEP ? len - got : READ_STEP, n;
        int rc;

        if (got + step > s->body_cap) {
            size_t cap = s->body_cap * 2;
            uint8_t *nb;

            if (cap > len)
                cap = len;
            if (cap < got + step)
                cap = got + step;
            nb = realloc(s->body, cap);
            if (!nb)
                return xtk__stream_fail(
                    s, ENOMEM, "no memory for a record of %u bytes", len);
            s->body = nb;
            s->body_cap = cap;
        }
        rc = xtk__stream_read_some(s, s->body + got, step, &n);
        if (rc < 0)
            return -1;
        got += n;
        if (rc > 0)
            return truncated_body(s, got, len, name, at);
    }
    return 0;
}

int xtk__stream_read_body(struct xtk_stream *s, uint32_t len, const char *name,
                          uint64_t at)
{
    return read_body_at(s, 0, len, name, at);
}

void xtk__stream_set_placer(struct xtk_stream *s, xtk__stream_place_fn *place,
                            void *arg)
{
    s->place = place;
    s->place_arg = arg;
}

int xtk__stream_placed(const struct xtk_stream *s)
{
    return s->placed;
}

/*
 * A PAGE_DATA body whose pages may go where the placer says: the header
 * and the pfn entries into s->body, checked as the reader checks them;
 * then, if the placer takes the record, the pages straight into its
 * memory (one readv for many pages: no copy through the body buffer);
 * else the rest into s->body as usual.  0, or -1 (sticky error; v says
 * why for a refusal of the entries, which the caller reports).
 */
static int read_page_data_body(struct xtk_stream *s, uint32_t length,
                               const char *name, uint64_t at, struct verdict *v,
                               int *refused)
{
    struct iovec iov[IOV_MAX];
    struct xtk_stream_page_data pd;
    int n = IOV_MAX;
    uint32_t count, hlen;
    size_t got;
    int rc;

    *refused = 0;
    if (length < 16)
        return xtk__stream_read_body(s, length, name, at);
    if (read_body_at(s, 0, 8, name, at) < 0)
        return -1;
    count = xtk__get_le32(s->body);
    if ((uint64_t)count * 8 + 8 > length)
        return read_body_at(s, 8, length - 8, name, at);
    hlen = 8 + count * 8;
    if (read_body_at(s, 8, hlen - 8, name, at) < 0)
        return -1;
    if (parse_page_data(s->body, length, &pd, v) < 0) {
        *refused = 1;
        return 0;
    }
    if (!pd.npages)
        return read_body_at(s, hlen, length - hlen, name, at);
    rc = s->place(s->place_arg, &pd, iov, &n);
    if (!rc)
        return read_body_at(s, hlen, length - hlen, name, at);
    if (rc == 2) {
        uint64_t skipped;

        rc = xtk__stream_skip(s, length - hlen, &skipped);
        if (rc < 0)
            return -1;
        if (rc > 0)
            return truncated_body(s, hlen + (size_t)skipped, length, name, at);
        s->placed = 1;
        return 0;
    }
    rc = xtk__stream_readv_some(s, iov, n, &got);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return truncated_body(s, hlen + got, length, name, at);
    s->placed = 1;
    return 0;
}

int xtk_stream_read_record(struct xtk_stream *s, struct xtk_stream_record *rec)
{
    struct verdict v;
    uint32_t hdr[2], type, length, crc = 0;
    uint64_t at, crc_bytes = 0;
    const char *name;
    uint8_t pad[8], head[24] = {0};
    size_t got;
    int rc;

    if (read_state(s, XTK__S_RECORDS) < 0 || !rec)
        return rec ? -1 : xtk__fail(EINVAL);
    at = xtk__stream_offset(s);
    if (s->crc_on) {
        crc = s->crc;
        crc_bytes = s->crc_bytes;
    }
    rc = xtk__stream_read_some(s, hdr, sizeof(hdr), &got);
    if (rc < 0)
        return -1;
    if (rc > 0 && !got)
        return xtk__stream_fail(s, ENODATA,
                                "stream ended at offset %llu without an END "
                                "record",
                                (unsigned long long)at);
    if (rc > 0)
        return xtk__stream_fail(s, EBADMSG,
                                "stream truncated at offset %llu, in a "
                                "record header",
                                (unsigned long long)(at + got));
    type = hdr[0];
    length = hdr[1];
    name = xtk_stream_record_name(type);
    if (!name)
        name = (type & XTK_REC_OPTIONAL) ? "optional" : "unknown";

    /* The first record says whether the stream is checksummed. */
    if (s->counters.records == 0) {
        if (type == XTK_REC_CHECKSUM)
            s->rs.checksummed = 1;
        else if (s->flags & XTK_STREAM_CHECKSUM)
            return xtk__stream_fail(s, EBADMSG,
                                    "the stream has no checksum records");
        else
            s->crc_on = 0;
    }

    /* Type and length first: nothing is read for a record refused here. */
    if (check_record(&s->rs, s->record_limit, type, length, head, &v) < 0 &&
        v.err != EBADMSG)
        goto refused;
    s->placed = 0;
    if (type == XTK_REC_PAGE_DATA && s->place && !s->crc_on &&
        s->top->ops->readv) {
        int refused;

        if (read_page_data_body(s, length, name, at, &v, &refused) < 0)
            return -1;
        if (refused)
            goto refused;
    } else if (xtk__stream_read_body(s, length, name, at) < 0) {
        return -1;
    }
    if (padded(length) != length) {
        uint32_t n = padded(length) - length;
        if (xtk__stream_read_exact(s, pad, n, "record padding", 0) < 0)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (pad[i])
                return xtk__stream_fail(s, EBADMSG,
                                        "record %llu (%s) at offset %llu: "
                                        "non-zero padding",
                                        (unsigned long long)s->counters.records,
                                        name, (unsigned long long)at);
    }
    if (length) {
        /* A placed PAGE_DATA's body holds its header and entries only. */
        size_t have =
            s->placed ? 8 + 8 * (size_t)xtk__get_le32(s->body) : length;
        memcpy(head, s->body, have < 24 ? have : 24);
    }
    if (check_record(&s->rs, s->record_limit, type, length, head, &v) < 0)
        goto refused;
    if (type == XTK_REC_PAGE_DATA) {
        struct xtk_stream_page_data pd;
        if (parse_page_data(s->body, length, &pd, &v) < 0)
            goto refused;
        s->counters.page_entries += pd.count;
        s->counters.pages += pd.npages;
    }
    if (type == XTK_REC_CHECKSUM) {
        uint32_t want = xtk__get_le32(s->body + 4);
        uint64_t covered = xtk__get_le64(s->body + 8);
        if (covered != crc_bytes || want != crc) {
            refuse(&v, EBADMSG,
                   "checksum mismatch: record says %#x over %llu bytes, the "
                   "data has %#x over %llu bytes",
                   want, (unsigned long long)covered, crc,
                   (unsigned long long)crc_bytes);
            goto refused;
        }
        s->crc = (uint32_t)crc32(0, NULL, 0);
        s->crc_bytes = 0;
    }

    s->counters.records++;
    advance(&s->rs, type);
    /* A framed stream: the epoch or the stream is complete only with
     * libxl's CHECKPOINT_END or END after it. */
    if ((type == XTK_REC_CHECKPOINT || type == XTK_REC_END) &&
        s->fr.framing != XTK_STREAM_FRAMING_LIBXC &&
        xtk__libxl_read_after(s, type) < 0)
        return -1;
    rec->type = type;
    rec->length = length;
    rec->body = length ? s->body : NULL;
    rec->offset = at;
    return 0;

refused:
    return xtk__stream_fail(s, v.err,
                            "record %llu (%s, type %#x) at offset "
                            "%llu: %s",
                            (unsigned long long)s->counters.records, name, type,
                            (unsigned long long)at, v.why);
}

void *xtk_stream_take_body(struct xtk_stream *s)
{
    void *b;

    if (!s)
        return xtk__fail_null(EINVAL);
    b = s->body;
    s->body = NULL;
    s->body_cap = 0;
    return b;
}

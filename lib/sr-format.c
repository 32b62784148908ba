/*
 * sr-format.c - xtk's conventions inside Xen's migration stream (see
 * sr-format.h): the domain's shape in HVM_PARAMS, the state blob in
 * HVM_CONTEXT, and the migration reply.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "sr-format.h"

static int why_fail(char *why, size_t whylen, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int why_fail(char *why, size_t whylen, int err, const char *fmt, ...)
{
    va_list al;

    va_start(al, fmt);
    vsnprintf(why, whylen, fmt, al);
    va_end(al);
    errno = err;
    return -1;
}

/* A NUL-padded field of size bytes (not NUL-terminated when full). */
static void put_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    memset(dst, 0, size);
    memcpy(dst, src, n < size ? n : size);
}

static void put_param(uint8_t *p, unsigned int i, uint64_t index,
                      uint64_t value)
{
    memcpy(p + 8 + 16 * i, &index, 8);
    memcpy(p + 16 + 16 * i, &value, 8);
}

size_t xtk__sr_config_encode(const struct xtk__sr_config *c, void *buf)
{
    uint8_t *p = buf;
    uint32_t count = XTK__SR_PARAMS + !!c->no_store, zero = 0;
    char name[8 * XTK__SR_NAME_PARAMS] = {0};
    char net[8 * XTK__SR_NET_PARAMS] = {0};
    unsigned int k = XTK__SR_PARAMS;

    memcpy(p, &count, 4);
    memcpy(p + 4, &zero, 4);
    put_param(p, 0, XTK__SR_PARAM_VERSION, 1);
    put_param(p, 1, XTK__SR_PARAM_NR_PAGES, c->nr_pages);
    put_param(p, 2, XTK__SR_PARAM_NR_VCPUS, c->nr_vcpus);
    put_str(name, sizeof(name) - 1, c->name);
    for (unsigned int i = 0; i < XTK__SR_NAME_PARAMS; i++) {
        uint64_t v;
        memcpy(&v, name + 8 * i, 8);
        put_param(p, 3 + i, XTK__SR_PARAM_NAME + i, v);
    }
    if (c->no_store)
        put_param(p, k++, XTK__SR_PARAM_NO_STORE, 1);
    if (c->net[0]) {
        put_str(net, sizeof(net) - 1, c->net);
        for (unsigned int j = 0; j < XTK__SR_NET_PARAMS; j++) {
            uint64_t v;
            memcpy(&v, net + 8 * j, 8);
            put_param(p, k++, XTK__SR_PARAM_NET + j, v);
        }
    }
    count = k;
    memcpy(p, &count, 4);
    return 8 + 16 * (size_t)count;
}

int xtk__sr_config_decode(const void *body, uint32_t len,
                          struct xtk__sr_config *c, char *why, size_t whylen)
{
    const uint8_t *p = body;
    struct xtk__sr_config tmp = {0};
    char name[8 * XTK__SR_NAME_PARAMS + 1] = {0};
    char net[8 * XTK__SR_NET_PARAMS + 1] = {0};
    unsigned int seen = 0;
    uint32_t count;

    if (len < 8)
        return why_fail(why, whylen, EPROTO, "HVM_PARAMS of %u bytes", len);
    memcpy(&count, p, 4);
    if ((uint64_t)count * 16 + 8 != len)
        return why_fail(why, whylen, EPROTO,
                        "HVM_PARAMS of %u entries in %u "
                        "bytes",
                        count, len);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t index, value;

        memcpy(&index, p + 8 + 16 * i, 8);
        memcpy(&value, p + 16 + 16 * i, 8);
        if (index < XTK__SR_PARAM_BASE ||
            index >= XTK__SR_PARAM_NET + XTK__SR_NET_PARAMS)
            return why_fail(why, whylen, EPROTO,
                            "HVM parameter %#llx: a Xen guest's, not xtk's",
                            (unsigned long long)index);
        if (index >= XTK__SR_PARAM_NET) {
            memcpy(net + 8 * (index - XTK__SR_PARAM_NET), &value, 8);
            continue;
        }
        if (index >= XTK__SR_PARAM_NAME &&
            index < XTK__SR_PARAM_NAME + XTK__SR_NAME_PARAMS) {
            memcpy(name + 8 * (index - XTK__SR_PARAM_NAME), &value, 8);
            seen |= 1u << 3;
            continue;
        }
        switch (index) {
        case XTK__SR_PARAM_VERSION:
            if (value != 1)
                return why_fail(why, whylen, EPROTO,
                                "domain shape version %llu (this xtk knows 1)",
                                (unsigned long long)value);
            seen |= 1u << 0;
            break;
        case XTK__SR_PARAM_NR_PAGES:
            tmp.nr_pages = value;
            seen |= 1u << 1;
            break;
        case XTK__SR_PARAM_NR_VCPUS:
            if (value > UINT32_MAX)
                value = UINT32_MAX;
            tmp.nr_vcpus = (uint32_t)value;
            seen |= 1u << 2;
            break;
        case XTK__SR_PARAM_NO_STORE:
            if (value > 1)
                return why_fail(why, whylen, EPROTO,
                                "no-store parameter %llu (0 or 1)",
                                (unsigned long long)value);
            tmp.no_store = (uint32_t)value;
            break;
        default:
            return why_fail(why, whylen, EPROTO, "unknown xtk parameter %#llx",
                            (unsigned long long)index);
        }
    }
    if (seen != 0xf)
        return why_fail(why, whylen, EPROTO,
                        "the domain's shape is incomplete (version, memory, "
                        "vCPUs and name are needed)");
    if (!tmp.nr_pages || !tmp.nr_vcpus)
        return why_fail(why, whylen, EPROTO,
                        "a domain of %llu pages and %u "
                        "vCPUs",
                        (unsigned long long)tmp.nr_pages, tmp.nr_vcpus);
    if (strlen(name) > XTK_DOMAIN_NAME_MAX)
        return why_fail(why, whylen, EPROTO, "a name longer than %d bytes",
                        XTK_DOMAIN_NAME_MAX);
    memcpy(tmp.name, name, strlen(name) + 1);
    if (strlen(net) > XTK__NET_MAX)
        return why_fail(why, whylen, EPROTO,
                        "a network sink longer than %d bytes", XTK__NET_MAX);
    memcpy(tmp.net, net, strlen(net) + 1);
    *c = tmp;
    return 0;
}

void xtk__sr_state_header(struct xtk__sr_state_hdr *h, const char *backend,
                          const struct xtk__sr_config *c, size_t len)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, XTK__SR_STATE_MAGIC, sizeof(h->magic));
    h->version = XTK__SR_STATE_VERSION;
    h->length = (uint32_t)len;
    put_str(h->backend, sizeof(h->backend), backend);
    h->nr_vcpus = c->nr_vcpus;
    h->nr_pages = c->nr_pages;
}

int xtk__sr_state_check(const void *body, uint32_t blen, const char *backend,
                        const struct xtk__sr_config *c, const void **recs,
                        size_t *len, char *why, size_t whylen)
{
    struct xtk__sr_state_hdr h;
    char want[sizeof(h.backend)] = {0};
    const uint8_t *p = body;
    size_t off = 0, n = 0;
    const void *rb;
    uint32_t type, rlen;
    int r;

    if (blen < sizeof(h))
        return why_fail(why, whylen, EBADMSG,
                        "HVM_CONTEXT of %u bytes: no xtk state header", blen);
    memcpy(&h, p, sizeof(h));
    if (memcmp(h.magic, XTK__SR_STATE_MAGIC, sizeof(h.magic)))
        return why_fail(why, whylen, EPROTO,
                        "HVM_CONTEXT is not xtk's state (a Xen guest's?)");
    if (h.version != XTK__SR_STATE_VERSION)
        return why_fail(why, whylen, EPROTO,
                        "state version %u (this xtk knows %u)", h.version,
                        XTK__SR_STATE_VERSION);
    put_str(want, sizeof(want), backend);
    if (memcmp(h.backend, want, sizeof(want)))
        return why_fail(why, whylen, EPROTO,
                        "state of backend '%.8s', this domain is %s", h.backend,
                        backend);
    if (h.reserved || h.reserved2 || h.length != blen - sizeof(h))
        return why_fail(why, whylen, EBADMSG,
                        "malformed state header (length %u in %u bytes)",
                        h.length, blen);
    if (h.nr_vcpus != c->nr_vcpus || h.nr_pages != c->nr_pages)
        return why_fail(why, whylen, EPROTO,
                        "state of a domain of %u vCPUs and %llu pages, "
                        "the stream's is %u and %llu",
                        h.nr_vcpus, (unsigned long long)h.nr_pages, c->nr_vcpus,
                        (unsigned long long)c->nr_pages);
    while ((r = xtk__rec_next(p + sizeof(h), h.length, &off, &type, &rb,
                              &rlen)) == 1)
        n++;
    if (r < 0 || !n)
        return why_fail(why, whylen, EBADMSG,
                        "malformed state records (%zu good ones)", n);
    *recs = p + sizeof(h);
    *len = h.length;
    return 0;
}

int xtk__sr_reply_check(struct xtk__sr_reply *r)
{
    if (r->magic != XTK__SR_REPLY_MAGIC ||
        (r->version != 1 && r->version != XTK__SR_REPLY_VERSION) ||
        r->reserved || r->status < 0 ||
        (r->version == 1 && r->resumed_to_reply_ns))
        return xtk__fail(EPROTO);
    if (r->version == 1) /* a resume time on the destination's clock */
        r->end_to_resumed_ns = 0;
    return 0;
}

_Static_assert(sizeof(struct xtk__sr_msg) == sizeof(struct xtk__sr_reply),
               "a back-channel message is a reply's size");
_Static_assert(sizeof(struct xtk__sr_heartbeat) == 16, "a heartbeat's body");

int xtk__sr_msg_check(const struct xtk__sr_msg *m)
{
    if (m->magic != XTK__SR_REPLY_MAGIC || m->version != XTK__SR_MSG_VERSION ||
        !m->kind || m->kind > XTK__SR_MSG_LAST || m->reserved || m->reserved2 ||
        !m->seq)
        return xtk__fail(EPROTO);
    return 0;
}

int xtk__sr_postcopy_check(const void *body, uint32_t len, uint64_t nr_pages,
                           uint64_t eager, const uint64_t **bits,
                           uint64_t *count, char *why, size_t whylen)
{
    struct xtk__sr_postcopy h;
    const uint64_t *w = (const uint64_t *)((const char *)body + sizeof(h));
    uint64_t words = (nr_pages + 63) / 64, n = 0;

    if (len < sizeof(h)) {
        snprintf(why, whylen, "a post-copy record of %u bytes", len);
        return xtk__fail(EPROTO);
    }
    memcpy(&h, body, sizeof(h));
    if (h.version != XTK__SR_POSTCOPY_VERSION || h.reserved) {
        snprintf(why, whylen, "a post-copy record of version %u", h.version);
        return xtk__fail(EPROTO);
    }
    if (h.nr_bits != nr_pages || len != sizeof(h) + words * 8) {
        snprintf(why, whylen,
                 "a post-copy record for %llu frames (%u bytes) in a "
                 "domain of %llu",
                 (unsigned long long)h.nr_bits, len,
                 (unsigned long long)nr_pages);
        return xtk__fail(EPROTO);
    }
    for (uint64_t i = 0; i < words; i++) {
        uint64_t v;

        memcpy(&v, &w[i], sizeof(v));
        n += (uint64_t)__builtin_popcountll(v);
        if (i == words - 1 && (nr_pages % 64) && (v >> (nr_pages % 64))) {
            snprintf(why, whylen,
                     "a post-copy record with frames beyond "
                     "the domain's memory");
            return xtk__fail(EPROTO);
        }
        if (i * 64 < eager) {
            uint64_t below =
                eager - i * 64 >= 64 ? ~0ull : (1ull << (eager - i * 64)) - 1;

            if (v & below) {
                snprintf(
                    why, whylen,
                    "a post-copy record that leaves out frame %llu, "
                    "which the host reads before the guest runs",
                    (unsigned long long)(i * 64 +
                                         (uint64_t)__builtin_ctzll(v & below)));
                return xtk__fail(EPROTO);
            }
        }
    }
    if (n != h.count) {
        snprintf(why, whylen,
                 "a post-copy record that counts %llu frames and has %llu",
                 (unsigned long long)h.count, (unsigned long long)n);
        return xtk__fail(EPROTO);
    }
    *bits = w;
    *count = n;
    return 0;
}

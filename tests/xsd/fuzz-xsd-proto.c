/*
 * fuzz-xsd-proto.c - libFuzzer target: xsd-lite's message parser and
 * dispatcher, in-process, on four connections (privileged, read-only, and
 * two guest domains with small quotas).
 *
 * Input: a sequence of chunks, each "<selector byte><length byte>" then
 * that many bytes for the connection selector % 4 (its stream goes on
 * where the last chunk left it).  Every store is freed at the end, so a
 * leak is a finding too.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "xsd-lite/xsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool alive(struct xsd *x, const struct xsd_conn *k)
{
    for (struct xsd_conn *c = x->conns; c; c = c->next)
        if (c == k)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct xtk_ctx *ctx;
    struct xsd_config cfg;
    struct xsd x;
    struct xsd_conn *c[4];

    if (!ctx)
        ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);
    xsd_config_default(&cfg);
    cfg.no_files = true;
    cfg.quota[XSD_Q_NODES] = 40;
    cfg.quota[XSD_Q_WATCHES] = 8;
    cfg.quota[XSD_Q_TXNS] = 3;
    cfg.quota[XSD_Q_TXN_NODES] = 32;
    cfg.quota[XSD_Q_MEMORY] = 64 * 1024;
    cfg.watch_queue_max = 16;
    if (!ctx || xsd_init(&x, ctx, NULL, &cfg))
        return 0;
    c[0] = xsd_conn_new(&x, &xsd_null_transport, 0, true, false);
    c[1] = xsd_conn_new(&x, &xsd_null_transport, 0, true, true);
    c[2] = xsd_conn_new(&x, &xsd_null_transport, 5, false, false);
    c[3] = xsd_conn_new(&x, &xsd_null_transport, 6, false, false);
    while (size >= 2) {
        struct xsd_conn *k = c[data[0] % 4];
        size_t n = data[1];

        data += 2;
        size -= 2;
        if (n > size)
            n = size;
        if (!k || k->dead || k->failed) {
            data += n;
            size -= n;
            continue;
        }
        if (n > xsd_conn_in_room(k))
            n = xsd_conn_in_room(k);
        memcpy(k->in + k->inlen, data, n);
        k->inlen += (uint32_t)n;
        data += n;
        size -= n;
        xsd_conn_process(k);
        xsd_after_io(&x);
        /* A killed connection is freed by now. */
        for (int i = 0; i < 4; i++)
            if (c[i] && !alive(&x, c[i]))
                c[i] = NULL;
    }
    xsd_fini(&x);
    return 0;
}

/*
 * fuzz-hvctl.c - libFuzzer target for what xtk-hv and the kvm backend read
 * from peers they do not trust: control messages (as requests and as
 * replies), state records (framing and xtk-hv's record checks), and a
 * guest's memory as the host-side self-check reads it.  The first byte
 * picks which.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "backend.h"
#include "hv.h"
#include "kvm/hvctl.h"
#include "kvm/kvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A guest's RAM: room for the workload area the checker may walk. */
#define RAM_PAGES ((XTK_GUEST_WORK_GPA >> 12) + 256)
static uint8_t ram[RAM_PAGES << 12];

static void records(const uint8_t *d, size_t n)
{
    static struct hv hv;
    void *copy = NULL;
    size_t off = 0, len = 0, cap = 0;
    uint32_t type, length;
    const void *body;

    /* Framing: what xtk__rec_next accepts re-frames identically. */
    while (xtk__rec_next(d, n, &off, &type, &body, &length) == 1)
        if (xtk__rec_append(&copy, &len, &cap, type, body, length, NULL, 0))
            abort();
    if (len > off || (len && memcmp(copy, d, len)))
        abort();
    free(copy);

    hv_log_quiet = 1;
    hv.nr_vcpus = 1 + (n ? d[0] % XTK_GUEST_MAX_VCPUS : 0);
    hv.xsave_size = 4096;
    hv_state_check(&hv, d, n);
}

static void guest_memory(const uint8_t *d, size_t n)
{
    char why[256];
    size_t k;

    /* The status page, then the rest spread over the workload area. */
    memset(ram + XTK_GUEST_STATUS_GPA, 0, 4096);
    k = n < 4096 ? n : 4096;
    memcpy(ram + XTK_GUEST_STATUS_GPA, d, k);
    for (size_t i = k, page = 0; i < n; i += 64, page++) {
        size_t m = n - i < 64 ? n - i : 64;
        memcpy(ram + XTK_GUEST_WORK_GPA + ((page * 7) % 256) * 4096 +
                   (i % 4032),
               d + i, m);
    }
    xtk__guest_check(ram, RAM_PAGES, why, sizeof(why));
    xtk__guest_check(ram, XTK_GUEST_WORK_GPA >> 12, why, sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    switch (data[0] % 3) {
    case 0:
        xtk__hvctl_check(data + 1, size - 1, data[0] & 0x80, 0);
        xtk__hvctl_check(data + 1, size - 1, data[0] & 0x80, 1);
        break;
    case 1:
        records(data + 1, size - 1);
        break;
    default:
        guest_memory(data + 1, size - 1);
    }
    return 0;
}

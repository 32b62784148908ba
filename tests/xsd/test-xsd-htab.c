/*
 * test-xsd-htab.c - xsd-lite's one hash table of path-keyed objects
 * (xsd-lite/htab.h; nodes, watched paths and transactions' paths live in
 * it): lookups by path and length, growth, removal from any place in a
 * chain, and a table that cannot grow (too few buckets) still working.
 */
#include "config.h"

#include <stdio.h>

#include "test.h"
#include "xsd-lite/xsd.h"

struct item {
    struct item *hnext;
    uint32_t hash;
    uint16_t plen;
    char path[24];
};

XSD_HTAB_DEFINE(items, struct item)

#define N 5000

static struct item v[N];

static struct item *find(struct xsd_htab *t, const char *p)
{
    return items_find(t, p, strlen(p), xsd_hash(p, strlen(p)));
}

int main(void)
{
    struct xsd_htab t;

    TEST_ASSERT(xsd_htab_init(&t, 4) == 0 && t.nb == 4 && !t.n, "init");
    for (int i = 0; i < N; i++) {
        v[i].plen = (uint16_t)snprintf(v[i].path, sizeof(v[i].path),
                                       "/local/domain/%d", i);
        v[i].hash = xsd_hash(v[i].path, v[i].plen);
        items_insert(&t, &v[i]);
    }
    TEST_ASSERT(t.n == N && t.nb >= N && !(t.nb & (t.nb - 1)),
                "grew: %llu entries, %llu buckets", (unsigned long long)t.n,
                (unsigned long long)t.nb);
    for (int i = 0; i < N; i++)
        TEST_ASSERT(find(&t, v[i].path) == &v[i], "find %s", v[i].path);
    /* A prefix of the paths, given as a longer string's first bytes. */
    TEST_ASSERT(
        !items_find(&t, "/local/domain/12", 14, xsd_hash("/local/domain/", 14)),
        "a prefix");
    TEST_ASSERT(!find(&t, "/local/domain/x"), "absent");
    /* Remove every other one, heads and middles of chains alike. */
    for (int i = 0; i < N; i += 2)
        items_remove(&t, &v[i]);
    TEST_ASSERT(t.n == N / 2, "%llu left", (unsigned long long)t.n);
    for (int i = 0; i < N; i++)
        TEST_ASSERT(find(&t, v[i].path) == (i % 2 ? &v[i] : NULL),
                    "after "
                    "removal %s",
                    v[i].path);
    for (int i = 1; i < N; i += 2)
        items_remove(&t, &v[i]);
    TEST_ASSERT(!t.n, "empty");
    for (uint64_t i = 0; i < t.nb; i++)
        TEST_ASSERT(!t.b[i], "bucket %llu not empty", (unsigned long long)i);
    xsd_htab_fini(&t);
    TEST_ASSERT(!t.b && !t.nb, "fini");
    return 0;
}

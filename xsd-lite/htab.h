/*
 * htab.h - the chained hash table of xsd-lite's path-keyed objects: the
 * store's nodes (store.c), the watched paths (watch.c) and the paths a
 * transaction touched (txn.c).  One implementation, instantiated for each
 * type by XSD_HTAB_DEFINE, so that the hot lookups stay direct (no calls
 * through pointers, the key compared in place).
 *
 * An entry type has the fields
 *     TYPE *hnext;      the bucket chain
 *     uint32_t hash;    xsd_hash() of its path
 *     (an integer) plen;
 *     char path[];      its path (plen bytes, NUL-terminated)
 * and the table is a power-of-two array of buckets that doubles when it
 * holds more entries than buckets (on ENOMEM it just stays fuller).
 */
#ifndef XSD_HTAB_H
#define XSD_HTAB_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct xsd_htab {
    void **b;    /* buckets: chains of entries */
    uint64_t nb; /* buckets, a power of two */
    uint64_t n;  /* entries */
};

/* An empty table of nb (a power of two) buckets: 0, or -1 (ENOMEM). */
static inline int xsd_htab_init(struct xsd_htab *t, uint64_t nb)
{
    t->b = calloc(nb, sizeof(*t->b));
    t->nb = t->b ? nb : 0;
    t->n = 0;
    return t->b ? 0 : -1;
}

/* Frees the buckets (not the entries). */
static inline void xsd_htab_fini(struct xsd_htab *t)
{
    free(t->b);
    t->b = NULL;
    t->nb = t->n = 0;
}

/*
 * Defines, for entries of TYPE:
 *   TYPE *P_find(const struct xsd_htab *, const char *path, size_t plen,
 *                uint32_t hash)      the entry of path, or NULL
 *   void P_insert(struct xsd_htab *, TYPE *e)  (e->hash and path set)
 *   void P_remove(struct xsd_htab *, TYPE *e)  (e is in the table)
 */
#define XSD_HTAB_DEFINE(P, type)                                               \
    static inline __attribute__((unused)) type *P##_find(                      \
        const struct xsd_htab *t, const char *path, size_t plen, uint32_t h)   \
    {                                                                          \
        type *e = t->b[h & (t->nb - 1)];                                       \
                                                                               \
        for (; e; e = e->hnext)                                                \
            if (e->hash == h && e->plen == plen &&                             \
                !memcmp(e->path, path, plen))                                  \
                return e;                                                      \
        return NULL;                                                           \
    }                                                                          \
                                                                               \
    static __attribute__((unused)) void P##_grow(struct xsd_htab *t)           \
    {                                                                          \
        uint64_t nb = t->nb * 2;                                               \
        void **b = calloc(nb, sizeof(*b));                                     \
                                                                               \
        if (!b)                                                                \
            return;                                                            \
        for (uint64_t i = 0; i < t->nb; i++) {                                 \
            type *e = t->b[i], *next;                                          \
                                                                               \
            for (; e; e = next) {                                              \
                next = e->hnext;                                               \
                e->hnext = b[e->hash & (nb - 1)];                              \
                b[e->hash & (nb - 1)] = e;                                     \
            }                                                                  \
        }                                                                      \
        free(t->b);                                                            \
        t->b = b;                                                              \
        t->nb = nb;                                                            \
    }                                                                          \
                                                                               \
    static inline                                                              \
        __attribute__((unused)) void P##_insert(struct xsd_htab *t, type *e)   \
    {                                                                          \
        void **b = &t->b[e->hash & (t->nb - 1)];                               \
                                                                               \
        e->hnext = *b;                                                         \
        *b = e;                                                                \
        if (++t->n > t->nb)                                                    \
            P##_grow(t);                                                       \
    }                                                                          \
                                                                               \
    static inline                                                              \
        __attribute__((unused)) void P##_remove(struct xsd_htab *t, type *e)   \
    {                                                                          \
        void **head = &t->b[e->hash & (t->nb - 1)];                            \
        type *p = *head;                                                       \
                                                                               \
        if (p == e) {                                                          \
            *head = e->hnext;                                                  \
        } else {                                                               \
            while (p->hnext != e)                                              \
                p = p->hnext;                                                  \
            p->hnext = e->hnext;                                               \
        }                                                                      \
        t->n--;                                                                \
    }

#endif /* XSD_HTAB_H */

/*
 * test-xsd-ring.c - guests on KVM-style rings: the introduction contract
 * (memfd + two eventfds over SCM_RIGHTS, through xtk__xs_introduce_kvm), a
 * guest thread that talks through its ring page, permissions and quotas of that
 * unprivileged connection (in transactions too), guests that stop reading
 * their replies or their watch events, guests that write garbage (bad
 * lengths, indices that run away), reconnection, RELEASE, and the death of
 * a domain whose introducer goes away.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "test.h"
#include "xs-client.h"
#include "xsdt.h"

#define REQ(c, type, tx, ...) xsdt_req((c), (type), (tx), __VA_ARGS__, NULL)
#define GREQ(g, type, tx, ...)                                                 \
    xsdt_guest_req((g), (type), (tx), __VA_ARGS__, NULL)

static struct xsdt_daemon d;
static struct xsdt_client w; /* dom0 toolstack */
static int intro = -1;       /* the introducer's connection */
static struct xsdt_guest g5; /* domain 5 */

static void witness(void)
{
    XSDT_EXPECT(xsdt_write(&w, 0, "/witness", "alive"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/witness"), "alive");
}

static void expect_event(struct xsdt_client *c, const char *path)
{
    struct xsdt_msg m;

    TEST_ASSERT(!xsdt_event(c, &m, 5000), "no event for %s", path);
    TEST_ASSERT(!strcmp(m.body, path), "event %s, wanted %s", m.body, path);
}

static void guest_expect_event(struct xsdt_guest *g, const char *path,
                               const char *token)
{
    struct xsdt_msg m;

    TEST_ASSERT(!xsdt_guest_event(g, &m, 5000), "guest: no event for %s", path);
    TEST_ASSERT(!strcmp(m.body, path) &&
                    !strcmp(m.body + strlen(m.body) + 1, token),
                "guest event %s, wanted %s", m.body, path);
}

/* A toolstack's preparation of a domain's home: owned by it, dom0 reads.
 * After the introduction: only then does the domain exist for the store,
 * which refuses an owner that does not exist. */
static void make_home(uint32_t domid)
{
    char path[32], owner[16];

    snprintf(path, sizeof(path), "/local/domain/%u", domid);
    snprintf(owner, sizeof(owner), "n%u", domid);
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, path), "OK");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, path, owner, "r0"), "OK");
}

static void introduce_guest(struct xsdt_guest *g, uint32_t domid)
{
    xsdt_guest_new(g, 4, 2);
    TEST_ASSERT(!xtk__xs_introduce_kvm(intro, domid, 2, 1, g->memfd, g->irq_fd,
                                       g->kick_fd, 5000),
                "introduce %u", domid);
    make_home(domid);
}

static void test_introduce(void)
{
    struct xsdt_client watcher;
    const char *s;

    TEST_ASSERT(!xsdt_connect(&watcher, d.sock), "connect");
    XSDT_EXPECT(REQ(&watcher, XS_WATCH, 0, "@introduceDomain", "i"), "OK");
    expect_event(&watcher, "@introduceDomain");
    /* Domain 5 does not exist yet: it cannot own a node. */
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/local/domain/5"), "OK");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/local/domain/5", "n5", "r0"),
                "ENOENT");
    xsdt_guest_new(&g5, 8, 5);
    intro = xtk__xs_connect(d.sock);
    TEST_ASSERT(intro >= 0, "xsd_client_connect");
    TEST_ASSERT(!xtk__xs_introduce_kvm(intro, 5, 5, 42, g5.memfd, g5.irq_fd,
                                       g5.kick_fd, 5000),
                "xsd_introduce_kvm");
    make_home(5);
    expect_event(&watcher, "@introduceDomain");
    xsdt_close(&watcher);
    TEST_ASSERT(g5.intf->connection == XENSTORE_CONNECTED &&
                    (g5.intf->server_features & XENSTORE_SERVER_FEATURE_ERROR),
                "ring page not set up");
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "5"), "T");
    s = REQ(&w, XS_CONTROL, 0, "domains");
    TEST_ASSERT(strstr(s, "5 kvm 5 42"), "CONTROL domains: %s", s);
    /* The guest's first words. */
    XSDT_EXPECT(GREQ(&g5, XS_GET_DOMAIN_PATH, 0, "5"), "/local/domain/5");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "data/x", "hello"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/x"), "hello");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "data/x"), "hello");
    XSDT_EXPECT(GREQ(&g5, XS_GET_PERMS, 0, "data/x"), "n5");
    TEST_ASSERT(g5.irqs > 0, "the guest was never notified");
    /* Introducing it twice: EEXIST, and the descriptors are not kept. */
    {
        int before = xsdt_daemon_fds(&d);

        TEST_ASSERT(xtk__xs_introduce_kvm(intro, 5, 5, 42, g5.memfd, g5.irq_fd,
                                          g5.kick_fd, 5000) == -1 &&
                        errno == EEXIST,
                    "second introduction");
        TEST_ASSERT(xsdt_daemon_fds(&d) == before, "descriptors leaked");
    }
}

/* A request bigger than the ring crosses it in several pieces. */
static void test_big_request(void)
{
    static char v[2000];

    memset(v, 'q', sizeof(v) - 1);
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "data/big", v), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "data/big"), v);
}

static void test_permissions(void)
{
    XSDT_EXPECT(xsdt_write(&w, 0, "/secret/inner", "s"), "OK");
    /* Not readable: EACCES, and missing nodes there do not say ENOENT. */
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "/secret/inner"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "/secret/none"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "/local/domain/5/none"), "ENOENT");
    XSDT_EXPECT(GREQ(&g5, XS_DIRECTORY, 0, "/secret"), "EACCES");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "/secret/x", "1"), "EACCES");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "/newtop", "1"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_MKDIR, 0, "/secret"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_RM, 0, "/secret"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_RM, 0, "/secret/none"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_SET_PERMS, 0, "/secret", "b5"), "EACCES");
    /* Read access granted to it; write to another domain. */
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/secret", "n0", "r5", "w6"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "/secret"), "");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "/secret", "x"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "/secret/none"), "ENOENT");
    /* The default (owner's letter) applies to domains not listed. */
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/secret", "w0"), "OK");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "/secret/made-by-5", "x"), "OK");
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "/secret/made-by-5"), "w5");
    /* The owner may change permissions but not the owner; an owner that
     * does not exist is ENOENT first, as with xenstored. */
    XSDT_EXPECT(GREQ(&g5, XS_SET_PERMS, 0, "data/x", "n5", "r6"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_SET_PERMS, 0, "data/x", "n0"), "EPERM");
    XSDT_EXPECT(GREQ(&g5, XS_SET_PERMS, 0, "data/x", "n7"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/local/domain/5/data/x", "n0"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "data/x"), "EACCES");
    /* Privileged requests. */
    XSDT_EXPECT(GREQ(&g5, XS_INTRODUCE, 0, "6", "1", "1"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_RELEASE, 0, "5"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_CONTROL, 0, "help"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_IS_DOMAIN_INTRODUCED, 0, "5"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_RESUME, 0, "5"), "EACCES");
    XSDT_EXPECT(GREQ(&g5, XS_SET_TARGET, 0, "5", "0"), "EACCES");
    /* Watches only tell it about what it may read. */
    XSDT_EXPECT(GREQ(&g5, XS_WATCH, 0, "/", "all"), "OK");
    guest_expect_event(&g5, "/", "all");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/secret", "n0"), "OK");
    XSDT_EXPECT(xsdt_write(&w, 0, "/secret/inner", "t"), "OK");
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/5/visible", "v"), "OK");
    guest_expect_event(&g5, "/local/domain/5/visible", "all");
    XSDT_EXPECT(GREQ(&g5, XS_UNWATCH, 0, "/", "all"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_WATCH, 0, "data", "rel"), "OK");
    guest_expect_event(&g5, "data", "rel");
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/5/data/y", "1"), "OK");
    guest_expect_event(&g5, "data/y", "rel");
    XSDT_EXPECT(GREQ(&g5, XS_RESET_WATCHES, 0, ""), "OK");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/secret"), "OK");
}

/*
 * An entry naming a domain that does not exist is kept (GET_PERMS shows
 * it) but grants nothing, even once a domain of that id is introduced:
 * it must not inherit what was meant for another (xenstored's
 * XS_PERM_IGNORE).  Named once it exists, the entry counts.
 */
static void test_perms_of_absent_domains(void)
{
    struct xsdt_guest g7;
    struct xsdt_msg m;

    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "data/early", "e"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_SET_PERMS, 0, "data/early", "n5", "r7"), "OK");
    xsdt_rpc(&w, XS_GET_PERMS, 0, "/local/domain/5/data/early", 27, &m);
    TEST_ASSERT(m.h.type == XS_GET_PERMS && m.h.len == 6 &&
                    !memcmp(m.body, "n5\0r7\0", 6),
                "the entry is shown");
    introduce_guest(&g7, 7);
    XSDT_EXPECT(GREQ(&g7, XS_READ, 0, "/local/domain/5/data/early"), "EACCES");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "data/late", "l"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_SET_PERMS, 0, "data/late", "n5", "r7"), "OK");
    XSDT_EXPECT(GREQ(&g7, XS_READ, 0, "/local/domain/5/data/late"), "l");
    /* A privileged client may now give it a node, too. */
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/local/domain/5/data/late", "n7"),
                "OK");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "7"), "OK");
    xsdt_guest_free(&g7);
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "/local/domain/5/data/late"), "n0");
    witness();
}

static void set_quota(const char *name, const char *value)
{
    const char *s = REQ(&w, XS_CONTROL, 0, "quota", "set", name, value);

    TEST_ASSERT(strstr(s, name), "quota set %s: %s", name, s);
}

/* A number from a CONTROL answer: the one after "name". */
static unsigned long control_number(const char *cmd, const char *arg,
                                    const char *name)
{
    const char *s = REQ(&w, XS_CONTROL, 0, cmd, arg), *p = strstr(s, name);

    TEST_ASSERT(p, "CONTROL %s %s: no %s in %s", cmd, arg, name, s);
    return strtoul(p + strlen(name), NULL, 10);
}

static uint32_t ring_idx(const XENSTORE_RING_IDX *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void test_quotas(void)
{
    char path[64], val[2100];
    const char *s = NULL;
    unsigned long have;
    uint32_t t[3];
    int i;

    /* Nodes: creating stops at the quota. */
    set_quota("nodes", "30");
    for (i = 0; i < 40; i++) {
        snprintf(path, sizeof(path), "q/n%d", i);
        s = GREQ(&g5, XS_MKDIR, 0, path);
        if (strcmp(s, "OK"))
            break;
    }
    XSDT_EXPECT(s, "ENOSPC");
    TEST_ASSERT(i > 10 && i < 30, "node quota hit after %d nodes", i);
    XSDT_EXPECT(GREQ(&g5, XS_RM, 0, "q"), "OK");
    /* ... and in a transaction: what it created counts (5 more allowed,
     * "qt/a" is two nodes) ... */
    have = control_number("quota", "5", "nodes");
    snprintf(val, sizeof(val), "%lu", have + 5);
    set_quota("nodes", val);
    t[0] = (uint32_t)strtoul(GREQ(&g5, XS_TRANSACTION_START, 0, ""), NULL, 10);
    for (i = 0; i < 10; i++) {
        snprintf(path, sizeof(path), "qt/%c", 'a' + i);
        s = GREQ(&g5, XS_MKDIR, t[0], path);
        if (strcmp(s, "OK"))
            break;
    }
    XSDT_EXPECT(s, "ENOSPC");
    TEST_ASSERT(i == 4, "node quota in a transaction hit after %d MKDIRs", i);
    TEST_ASSERT(control_number("quota", "5", "nodes") == have,
                "a transaction's nodes were charged before its commit");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t[0], "T"), "OK");
    TEST_ASSERT(control_number("quota", "5", "nodes") == have + 5,
                "the committed nodes were not charged");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/qt/d"), "");
    XSDT_EXPECT(GREQ(&g5, XS_RM, 0, "qt"), "OK");
    /* ... and at commit, against what the domain owns then. */
    snprintf(val, sizeof(val), "%lu", have + 3);
    set_quota("nodes", val);
    t[0] = (uint32_t)strtoul(GREQ(&g5, XS_TRANSACTION_START, 0, ""), NULL, 10);
    XSDT_EXPECT(GREQ(&g5, XS_MKDIR, t[0], "qc/a"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_MKDIR, 0, "qo/a"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t[0], "T"), "ENOSPC");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t[0], "T"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/qc"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/qo/a"), "");
    TEST_ASSERT(control_number("quota", "5", "nodes") == have + 2,
                "nodes after the refused commit");
    XSDT_EXPECT(GREQ(&g5, XS_RM, 0, "qo"), "OK");
    set_quota("nodes", "1000");
    /* Watches (E2BIG, as Xen 4.17). */
    set_quota("watches", "3");
    XSDT_EXPECT(GREQ(&g5, XS_WATCH, 0, "w1", "t"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_WATCH, 0, "w2", "t"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_WATCH, 0, "w3", "t"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_WATCH, 0, "w4", "t"), "E2BIG");
    XSDT_EXPECT(GREQ(&g5, XS_RESET_WATCHES, 0, ""), "OK");
    set_quota("watches", "128");
    /* Transactions. */
    set_quota("transactions", "2");
    for (i = 0; i < 2; i++) {
        s = GREQ(&g5, XS_TRANSACTION_START, 0, "");
        t[i] = (uint32_t)strtoul(s, NULL, 10);
        TEST_ASSERT(t[i], "guest transaction: %s", s);
    }
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_START, 0, ""), "ENOSPC");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t[0], "F"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t[1], "F"), "OK");
    set_quota("transactions", "10");
    /* Nodes touched by one transaction. */
    set_quota("transaction-nodes", "8");
    s = GREQ(&g5, XS_TRANSACTION_START, 0, "");
    t[2] = (uint32_t)strtoul(s, NULL, 10);
    for (i = 0; i < 20; i++) {
        snprintf(path, sizeof(path), "tq%d", i);
        s = xsdt_guest_write(&g5, t[2], path, "v");
        if (strcmp(s, "OK"))
            break;
    }
    XSDT_EXPECT(s, "ENOSPC");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t[2], "F"), "OK");
    set_quota("transaction-nodes", "1024");
    /* Node size and permission count. */
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "toobig", val), "ENOSPC");
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "perms", "x"), "OK");
    XSDT_EXPECT(
        GREQ(&g5, XS_SET_PERMS, 0, "perms", "n5", "r1", "r2", "r3", "r4", "r6"),
        "ENOSPC");
    XSDT_EXPECT(
        GREQ(&g5, XS_SET_PERMS, 0, "perms", "n5", "r1", "r2", "r3", "r4"),
        "OK");
    /* Memory. */
    set_quota("memory", "20000");
    memset(val, 'm', 1500);
    val[1500] = '\0';
    for (i = 0; i < 40; i++) {
        snprintf(path, sizeof(path), "mem%d", i);
        s = xsdt_guest_write(&g5, 0, path, val);
        if (strcmp(s, "OK"))
            break;
    }
    XSDT_EXPECT(s, "ENOMEM");
    TEST_ASSERT(i > 2 && i < 20, "memory quota hit after %d writes", i);
    set_quota("memory", "2621440");
    s = REQ(&w, XS_CONTROL, 0, "quota", "5");
    TEST_ASSERT(strstr(s, "Domain 5"), "quota 5: %s", s);
    /* Privileged clients have no quotas. */
    set_quota("nodes", "5");
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/5/by-dom0/a/b/c/d/e/f", "1"),
                "OK");
    set_quota("nodes", "1000");
}

/* The next reply on g's ring (waits up to 5 s). */
static void guest_next_reply(struct xsdt_guest *g, struct xsdt_msg *m)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&g->lock);
        if (g->nreplies) {
            *m = g->replies[0];
            memmove(g->replies, g->replies + 1,
                    (size_t)--g->nreplies * sizeof(*g->replies));
            pthread_mutex_unlock(&g->lock);
            return;
        }
        pthread_mutex_unlock(&g->lock);
        usleep(10000);
    }
    TEST_ASSERT(0, "no reply on the ring");
}

/* Outstanding requests: many at once, answered in order, none lost. */
static void test_outstanding(void)
{
    char buf[64 * 40];
    size_t n = 0;

    for (uint32_t i = 0; i < 60; i++) {
        struct xsd_sockmsg h = {XS_READ, 1000 + i, 0, 7};

        memcpy(buf + n, &h, sizeof(h));
        memcpy(buf + n + sizeof(h), "data/y", 7);
        n += sizeof(h) + 7;
        if (n + sizeof(h) + 7 > sizeof(buf) || i == 59) {
            xsdt_guest_send_bytes(&g5, buf, n);
            n = 0;
        }
    }
    for (uint32_t i = 0; i < 60; i++) {
        struct xsdt_msg m;

        guest_next_reply(&g5, &m);
        TEST_ASSERT(m.h.req_id == 1000 + i && !strcmp(m.body, "1"),
                    "pipelined ring reply %u: %u %s", i, m.h.req_id, m.body);
    }
}

/*
 * A guest that stops reading its replies: once the response ring is full
 * and the outstanding quota of replies waits behind it, the daemon takes
 * no more requests off the ring (req_cons stops, the guest's request ring
 * stays full), while everyone else is served; when the guest reads again,
 * every reply comes, in order.
 */
static void test_outstanding_bound(void)
{
    enum { N = 200, BOUND = 8 };
    const uint32_t req_size = sizeof(struct xsd_sockmsg) + 7; /* "hold/x" */
    const uint32_t rsp_size = sizeof(struct xsd_sockmsg) + 1; /* "1" */
    const uint32_t in_ring = XENSTORE_RING_SIZE / rsp_size;
    char buf[N * 32];
    struct xsdt_guest g;
    uint32_t base, cons, n = 0;

    introduce_guest(&g, 7);
    XSDT_EXPECT(xsdt_guest_write(&g, 0, "hold/x", "1"), "OK");
    set_quota("outstanding", "8");
    xsdt_guest_hold(&g, true);
    base = ring_idx(&g.intf->req_cons); /* the indices run since introduction */
    for (uint32_t i = 0; i < N; i++) {
        struct xsd_sockmsg h = {XS_READ, 5000 + i, 0, 7};

        memcpy(buf + n, &h, sizeof(h));
        memcpy(buf + n + sizeof(h), "hold/x", 7);
        n += req_size;
    }
    xsdt_guest_send_bytes(&g, buf, n);
    /* The bound is reached... */
    for (int i = 0; i < 500; i++) {
        if (control_number("quota", "7", "outstanding") == BOUND)
            break;
        usleep(10000);
    }
    TEST_ASSERT(control_number("quota", "7", "outstanding") == BOUND,
                "outstanding replies: %lu, not %d",
                control_number("quota", "7", "outstanding"), BOUND);
    /* ... and stays: no more requests are taken. */
    cons = ring_idx(&g.intf->req_cons) - base;
    usleep(300000);
    TEST_ASSERT(ring_idx(&g.intf->req_cons) - base == cons,
                "req_cons moved from %u to %u while replies wait", cons,
                ring_idx(&g.intf->req_cons) - base);
    TEST_ASSERT(control_number("quota", "7", "outstanding") == BOUND,
                "outstanding replies grew past the bound");
    TEST_ASSERT(ring_idx(&g.intf->rsp_prod) - g.intf->rsp_cons ==
                    XENSTORE_RING_SIZE,
                "the response ring is not full");
    TEST_ASSERT(ring_idx(&g.intf->req_prod) - base - cons == XENSTORE_RING_SIZE,
                "the request ring is not full");
    /* The replies in the ring and the BOUND queued behind it were answered;
     * buffered beyond them: at most one read of the ring after a partial
     * request. */
    TEST_ASSERT(cons >= (in_ring + BOUND) * req_size &&
                    cons <
                        (in_ring + BOUND + 1) * req_size + XENSTORE_RING_SIZE &&
                    cons < n,
                "req_cons %u: %u requests of %u taken with %u answered", cons,
                cons / req_size, N, in_ring + BOUND);
    /* Others are served meanwhile. */
    witness();
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "data/y"), "1");
    /* Reading again, every reply comes, in order. */
    xsdt_guest_hold(&g, false);
    for (uint32_t i = 0; i < N; i++) {
        struct xsdt_msg m;

        guest_next_reply(&g, &m);
        TEST_ASSERT(m.h.req_id == 5000 + i && !strcmp(m.body, "1"),
                    "reply %u after the stall: %u %s", i, m.h.req_id, m.body);
    }
    TEST_ASSERT(ring_idx(&g.intf->req_cons) - base == n,
                "requests left in the ring");
    TEST_ASSERT(control_number("quota", "7", "outstanding") == 0,
                "replies still queued");
    set_quota("outstanding", "20");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "7"), "OK");
    xsdt_guest_free(&g);
}

/* The ring connection of domid in CONTROL connections: its queued events
 * and its dropped ones. */
static void ring_queue(uint32_t domid, unsigned *events, unsigned long *dropped)
{
    const char *s = REQ(&w, XS_CONTROL, 0, "connections");

    for (const char *l = s; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        unsigned id, dom, watches, txns, replies;
        char kind[16], mode[16];

        if (sscanf(l, "%u %15s %u %15s %u %u %u %u %lu", &id, kind, &dom, mode,
                   &watches, &txns, &replies, events, dropped) == 9 &&
            !strcmp(kind, "ring") && dom == domid)
            return;
    }
    TEST_ASSERT(0, "no ring of domain %u in: %s", domid, s);
}

/*
 * A guest that never reads its watch events: a ring cannot be closed, so
 * past the bound (-W 32 here) events are dropped and counted, everyone
 * else is served, and the guest, reading again, gets the events that were
 * kept, in order, and is served as before.
 */
static void test_ring_event_bound(void)
{
    enum { N = 200, W = 32 };
    struct xsdt_guest g;
    char path[64];
    unsigned events;
    unsigned long dropped;
    int got = 0;

    introduce_guest(&g, 8);
    XSDT_EXPECT(GREQ(&g, XS_WATCH, 0, "ev", "t"), "OK");
    guest_expect_event(&g, "ev", "t");
    xsdt_guest_hold(&g, true);
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/local/domain/8/ev/%d", i);
        XSDT_EXPECT(xsdt_write(&w, 0, path, "x"), "OK");
    }
    ring_queue(8, &events, &dropped);
    TEST_ASSERT(events == W && dropped > 0 && dropped < N - W,
                "ring event queue: %u queued, %lu dropped", events, dropped);
    /* Others are served; the guest is not disconnected. */
    witness();
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "data/y"), "1");
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "8"), "T");
    /* Reading again: what was kept, the oldest first. */
    xsdt_guest_hold(&g, false);
    for (;; got++) {
        struct xsdt_msg m;

        if (xsdt_guest_event(&g, &m, 300))
            break;
        snprintf(path, sizeof(path), "ev/%d", got);
        TEST_ASSERT(!strcmp(m.body, path), "event %d is %s", got, m.body);
    }
    TEST_ASSERT((unsigned long)got + dropped == N,
                "%d events received and %lu dropped of %d", got, dropped, N);
    ring_queue(8, &events, &dropped);
    TEST_ASSERT(events == 0, "%u events still queued", events);
    /* The queue works again. */
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/8/ev/again", "x"), "OK");
    guest_expect_event(&g, "ev/again", "t");
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "ev/again"), "x");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "8"), "OK");
    xsdt_guest_free(&g);
}

static void test_guest_transactions(void)
{
    const char *s = GREQ(&g5, XS_TRANSACTION_START, 0, "");
    uint32_t t = (uint32_t)strtoul(s, NULL, 10);
    unsigned long mem;

    TEST_ASSERT(t, "TRANSACTION_START: %s", s);
    XSDT_EXPECT(GREQ(&g5, XS_READ, t, "data/y"), "1");
    XSDT_EXPECT(xsdt_guest_write(&g5, t, "data/z", "2"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t, "T"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/z"), "2");
    s = GREQ(&g5, XS_TRANSACTION_START, 0, "");
    t = (uint32_t)strtoul(s, NULL, 10);
    XSDT_EXPECT(GREQ(&g5, XS_READ, t, "data/y"), "1");
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/5/data/y", "changed"), "OK");
    XSDT_EXPECT(xsdt_guest_write(&g5, t, "data/z", "3"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t, "T"), "EAGAIN");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/z"), "2");
    /* A write only checks the node's permissions: another client's write
     * of the value does not conflict with it, a permission change does. */
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "data/pz", "0"), "OK");
    t = (uint32_t)strtoul(GREQ(&g5, XS_TRANSACTION_START, 0, ""), NULL, 10);
    XSDT_EXPECT(xsdt_guest_write(&g5, t, "data/pz", "guest"), "OK");
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/5/data/pz", "dom0"), "OK");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t, "T"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/pz"), "guest");
    t = (uint32_t)strtoul(GREQ(&g5, XS_TRANSACTION_START, 0, ""), NULL, 10);
    XSDT_EXPECT(xsdt_guest_write(&g5, t, "data/pz", "again"), "OK");
    XSDT_EXPECT(
        REQ(&w, XS_SET_PERMS, 0, "/local/domain/5/data/pz", "n5", "r0", "r6"),
        "OK");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t, "T"), "EAGAIN");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/pz"), "guest");
    /* RESET_WATCHES drops the guest's transactions and what they held. */
    mem = control_number("quota", "5", "memory");
    t = (uint32_t)strtoul(GREQ(&g5, XS_TRANSACTION_START, 0, ""), NULL, 10);
    XSDT_EXPECT(xsdt_guest_write(&g5, t, "data/rz", "dropped"), "OK");
    TEST_ASSERT(control_number("quota", "5", "transactions") == 1 &&
                    control_number("quota", "5", "memory") > mem,
                "the open transaction is not accounted");
    XSDT_EXPECT(GREQ(&g5, XS_RESET_WATCHES, 0, ""), "OK");
    TEST_ASSERT(control_number("quota", "5", "transactions") == 0 &&
                    control_number("quota", "5", "memory") == mem,
                "RESET_WATCHES left the transaction accounted");
    XSDT_EXPECT(GREQ(&g5, XS_READ, t, "data/rz"), "ENOENT");
    XSDT_EXPECT(GREQ(&g5, XS_TRANSACTION_END, t, "T"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/rz"), "ENOENT");
}

/* Introductions that must fail, without leaking a descriptor. */
static void test_bad_introductions(void)
{
    struct xsdt_guest g;
    int before, pfd[2], rofd, ro;
    char path[64];

    xsdt_guest_new(&g, 2, 1);
    TEST_ASSERT(!pipe(pfd), "pipe");
    snprintf(path, sizeof(path), "/proc/self/fd/%d", g.memfd);
    rofd = open(path, O_RDONLY | O_CLOEXEC);
    TEST_ASSERT(rofd >= 0, "reopen memfd read-only");
    before = xsdt_daemon_fds(&d);
#define BAD(expr, err)                                                         \
    TEST_ASSERT((expr) == -1 && errno == (err), "%s: errno %d", #expr, errno)
    BAD(xtk__xs_introduce_kvm(intro, 9, 2, 1, g.memfd, g.irq_fd, g.kick_fd,
                              5000),
        EINVAL); /* frame beyond the memfd */
    BAD(xtk__xs_introduce_kvm(intro, 9, 1, 1, g.memfd, pfd[0], g.kick_fd, 5000),
        EINVAL); /* not an eventfd */
    BAD(xtk__xs_introduce_kvm(intro, 9, 1, 1, g.irq_fd, g.irq_fd, g.kick_fd,
                              5000),
        EINVAL); /* not a memfd */
    BAD(xtk__xs_introduce_kvm(intro, 9, 1, 1, rofd, g.irq_fd, g.kick_fd, 5000),
        EACCES); /* not writable */
    BAD(xtk__xs_introduce_kvm(intro, 0, 1, 1, g.memfd, g.irq_fd, g.kick_fd,
                              5000),
        EINVAL);
    BAD(xtk__xs_introduce_kvm(intro, 0x7ff0, 1, 1, g.memfd, g.irq_fd, g.kick_fd,
                              5000),
        EINVAL);
    ro = xtk__xs_connect(d.ro);
    TEST_ASSERT(ro >= 0, "connect read-only");
    BAD(xtk__xs_introduce_kvm(ro, 9, 1, 1, g.memfd, g.irq_fd, g.kick_fd, 5000),
        EROFS);
    close(ro);
#undef BAD
    usleep(100000); /* the read-only connection's close */
    TEST_ASSERT(xsdt_daemon_fds(&d) == before, "descriptors leaked: %d then %d",
                before, xsdt_daemon_fds(&d));
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "9"), "F");
    close(pfd[0]);
    close(pfd[1]);
    close(rofd);
    xsdt_guest_free(&g);
    witness();
}

/* Waits (up to 5 s) for the ring's error field. */
static void wait_ring_error(struct xsdt_guest *g, uint32_t err)
{
    for (int i = 0; i < 500 && g->intf->error != err; i++)
        usleep(10000);
    TEST_ASSERT(g->intf->error == err, "ring error %u, wanted %u",
                g->intf->error, err);
}

static void test_garbage(void)
{
    struct xsdt_guest g;
    struct xsd_sockmsg h = {XS_READ, 1, 0, XENSTORE_PAYLOAD_MAX + 1};
    char junk[512];

    /* A length over the maximum. */
    introduce_guest(&g, 20);
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "/local/domain/20"), "");
    xsdt_guest_send_bytes(&g, &h, sizeof(h));
    wait_ring_error(&g, XENSTORE_ERROR_PROTO);
    witness();
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "20"), "OK");
    xsdt_guest_free(&g);

    /* Request indices that run away. */
    introduce_guest(&g, 21);
    pthread_mutex_lock(&g.lock);
    g.intf->req_prod = g.intf->req_cons + 3 * XENSTORE_RING_SIZE;
    pthread_mutex_unlock(&g.lock);
    TEST_ASSERT(write(g.kick_fd, &(uint64_t){1}, 8) == 8, "kick");
    wait_ring_error(&g, XENSTORE_ERROR_RINGIDX);
    witness();
    /* A reconnection brings it back. */
    pthread_mutex_lock(&g.lock);
    g.intf->connection = XENSTORE_RECONNECT;
    pthread_mutex_unlock(&g.lock);
    TEST_ASSERT(write(g.kick_fd, &(uint64_t){1}, 8) == 8, "kick");
    for (int i = 0; i < 500 && g.intf->connection != XENSTORE_CONNECTED; i++)
        usleep(10000);
    TEST_ASSERT(g.intf->connection == XENSTORE_CONNECTED &&
                    g.intf->error == XENSTORE_ERROR_NONE,
                "reconnection");
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "/local/domain/21"), "");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "21"), "OK");
    xsdt_guest_free(&g);

    /* Response indices that run away. */
    introduce_guest(&g, 22);
    pthread_mutex_lock(&g.lock);
    g.intf->rsp_cons = g.intf->rsp_prod - 5 * XENSTORE_RING_SIZE;
    pthread_mutex_unlock(&g.lock);
    {
        struct xsd_sockmsg r = {XS_READ, 9, 0, 2};

        xsdt_guest_send_bytes(&g, &r, sizeof(r));
        xsdt_guest_send_bytes(&g, "/", 2);
    }
    wait_ring_error(&g, XENSTORE_ERROR_RINGIDX);
    witness();
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "22"), "OK");
    xsdt_guest_free(&g);

    /* Junk that is framed: answered with errors, the guest goes on. */
    introduce_guest(&g, 23);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 37 + 11);
    for (int k = 0; k < 8; k++) {
        struct xsd_sockmsg j = {(uint32_t)(50 + k), 900, 0, 64};

        xsdt_guest_send_bytes(&g, &j, sizeof(j));
        xsdt_guest_send_bytes(&g, junk + k * 64, 64);
    }
    for (int k = 0; k < 8; k++) {
        struct xsdt_msg m;

        guest_next_reply(&g, &m);
        TEST_ASSERT(m.h.type == XS_ERROR && m.h.req_id == 900 &&
                        !strcmp(m.body, "ENOSYS"),
                    "junk answered with %u %s", m.h.type, m.body);
    }
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "/local/domain/23"), "");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "23"), "OK");
    xsdt_guest_free(&g);
    witness();
}

static void test_set_target(void)
{
    struct xsdt_guest g;

    introduce_guest(&g, 6);
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "/local/domain/5/data/z"), "EACCES");
    /* Malformed, or naming a domain not introduced: nothing changes. */
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "6"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "6", "5", "5"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "6", "5x"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "6", "4294967301"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "6", "99"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "99", "5"), "ENOENT");
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "/local/domain/5/data/z"), "EACCES");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "6", "5"), "OK");
    XSDT_EXPECT(GREQ(&g, XS_READ, 0, "/local/domain/5/data/z"), "2");
    XSDT_EXPECT(REQ(&w, XS_RESUME, 0, "6"), "OK");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "6"), "OK");
    xsdt_guest_free(&g);
}

static void test_release(void)
{
    struct xsdt_client watcher;
    struct xsdt_msg m;

    TEST_ASSERT(!xsdt_connect(&watcher, d.sock), "connect");
    XSDT_EXPECT(REQ(&watcher, XS_WATCH, 0, "@releaseDomain", "r"), "OK");
    expect_event(&watcher, "@releaseDomain");
    /* Its nodes go to dom0. */
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "/local/domain/5/data/z"), "n5");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "5"), "OK");
    expect_event(&watcher, "@releaseDomain");
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "5"), "F");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "5"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/z"), "2");
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "/local/domain/5/data/z"), "n0");
    /* The ring is no longer served. */
    {
        struct xsd_sockmsg h = {XS_READ, 77, 0, 2};

        xsdt_guest_send_bytes(&g5, &h, sizeof(h));
        xsdt_guest_send_bytes(&g5, "/", 2);
        usleep(300000);
        pthread_mutex_lock(&g5.lock);
        TEST_ASSERT(!g5.nreplies, "a released ring was answered");
        pthread_mutex_unlock(&g5.lock);
    }
    xsdt_guest_free(&g5);
    /* A new domain 5 can be introduced again. */
    xsdt_guest_new(&g5, 8, 5);
    TEST_ASSERT(!xtk__xs_introduce_kvm(intro, 5, 5, 42, g5.memfd, g5.irq_fd,
                                       g5.kick_fd, 5000),
                "re-introduce 5");
    XSDT_EXPECT(GREQ(&g5, XS_READ, 0, "/local/domain/5/data/z"), "EACCES");
    TEST_ASSERT(xsdt_event(&watcher, &m, 200), "unexpected event %s", m.body);
    xsdt_close(&watcher);
}

/* The introducer goes away: its KVM domains are dead. */
static void test_introducer_death(void)
{
    struct xsdt_client watcher;
    struct xsdt_guest g;
    int intro2 = xtk__xs_connect(d.sock);

    TEST_ASSERT(intro2 >= 0, "connect");
    TEST_ASSERT(!xsdt_connect(&watcher, d.sock), "connect");
    xsdt_guest_new(&g, 4, 3);
    TEST_ASSERT(!xtk__xs_introduce_kvm(intro2, 30, 3, 7, g.memfd, g.irq_fd,
                                       g.kick_fd, 5000),
                "introduce 30");
    make_home(30);
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/30/device/vif/0", "x"), "OK");
    XSDT_EXPECT(xsdt_guest_write(&g, 0, "name", "thirty"), "OK");
    XSDT_EXPECT(REQ(&watcher, XS_WATCH, 0, "@releaseDomain", "r"), "OK");
    expect_event(&watcher, "@releaseDomain");
    XSDT_EXPECT(REQ(&watcher, XS_WATCH, 0, "/local/domain/30", "home"), "OK");
    expect_event(&watcher, "/local/domain/30");
    close(intro2);
    /* Removal of its home fires, then @releaseDomain. */
    {
        bool home = false, rel = false;
        struct xsdt_msg m;

        while (!rel) {
            TEST_ASSERT(!xsdt_event(&watcher, &m, 5000),
                        "no event after the introducer died");
            home |= !strcmp(m.body, "/local/domain/30");
            rel |= !strcmp(m.body, "@releaseDomain");
        }
        TEST_ASSERT(home, "/local/domain/30 removal did not fire");
    }
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "30"), "F");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/30"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/5/data/z"), "2");
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "5"), "T");
    xsdt_close(&watcher);
    xsdt_guest_free(&g);
    witness();
}

int main(void)
{
    xsdt_daemon_start(&d, "-W", "32", NULL);
    TEST_ASSERT(!xsdt_connect(&w, d.sock), "connect");
    witness();
    TEST_RUN(test_introduce);
    TEST_RUN(test_big_request);
    TEST_RUN(test_permissions);
    TEST_RUN(test_perms_of_absent_domains);
    TEST_RUN(test_quotas);
    TEST_RUN(test_outstanding);
    TEST_RUN(test_outstanding_bound);
    TEST_RUN(test_ring_event_bound);
    TEST_RUN(test_guest_transactions);
    TEST_RUN(test_bad_introductions);
    TEST_RUN(test_garbage);
    TEST_RUN(test_set_target);
    TEST_RUN(test_release);
    TEST_RUN(test_introducer_death);
    /* The last introducer leaving kills domain 5 too. */
    close(intro);
    for (int i = 0; i < 100; i++) {
        if (!strcmp(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "5"), "F"))
            break;
        usleep(10000);
    }
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "5"), "F");
    xsdt_guest_free(&g5);
    /* A daemon stopped with a live guest and its introducer still there
     * exits cleanly (and, built with ASan, without a leak). */
    intro = xtk__xs_connect(d.sock);
    TEST_ASSERT(intro >= 0, "connect");
    introduce_guest(&g5, 41);
    XSDT_EXPECT(xsdt_guest_write(&g5, 0, "alive", "1"), "OK");
    xsdt_close(&w);
    xsdt_daemon_stop(&d, false);
    close(intro);
    xsdt_guest_free(&g5);
    return 0;
}

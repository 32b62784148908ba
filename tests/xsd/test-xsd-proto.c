/*
 * test-xsd-proto.c - xsd-lite's wire protocol on raw sockets, without
 * libxenstore: every message type, every error path, transactions and
 * their conflicts, watches, and bad input (over-long lengths, headers in
 * pieces, unterminated strings, unknown types, clients that vanish
 * mid-message or never read, a thousand connections at once).  After each
 * bad client, a witness client must still be served.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "xsdt.h"

static struct xsdt_daemon d;
static struct xsdt_client w; /* the witness */

#define REQ(c, type, tx, ...) xsdt_req((c), (type), (tx), __VA_ARGS__, NULL)

/* The daemon still answers a plain READ. */
static void witness(void)
{
    XSDT_EXPECT(xsdt_write(&w, 0, "/witness", "alive"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/witness"), "alive");
}

/* A reply of the given raw payload (bytes, len). */
static void expect_raw(struct xsdt_client *c, uint32_t type,
                       const void *payload, uint32_t len, uint32_t want_type,
                       const char *want)
{
    struct xsdt_msg m;

    xsdt_rpc(c, type, 0, payload, len, &m);
    TEST_ASSERT(m.h.type == want_type && !strcmp(m.body, want),
                "type %u request: reply type %u \"%s\", wanted %u \"%s\"", type,
                m.h.type, m.body, want_type, want);
}

static void test_basic_types(void)
{
    struct xsdt_msg m;
    char buf[256];
    uint32_t n;

    XSDT_EXPECT(xsdt_write(&w, 0, "/basic/a", "1"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/basic/a"), "1");
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/basic/dir"), "OK");
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/basic/dir"), "OK"); /* exists: fine */
    XSDT_EXPECT(xsdt_read(&w, 0, "/basic/dir"), "");
    /* DIRECTORY answers in creation order. */
    xsdt_rpc(&w, XS_DIRECTORY, 0, "/basic", 7, &m);
    TEST_ASSERT(m.h.type == XS_DIRECTORY && m.h.len == 6 &&
                    !memcmp(m.body, "a\0dir\0", 6),
                "DIRECTORY /basic: %u bytes", m.h.len);
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "/basic/a"), "n0");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/basic/a", "r0", "w7", "b9"), "OK");
    xsdt_rpc(&w, XS_GET_PERMS, 0, "/basic/a", 9, &m);
    TEST_ASSERT(m.h.len == 9 && !memcmp(m.body, "r0\0w7\0b9\0", 9),
                "GET_PERMS after SET_PERMS");
    /* New nodes inherit their parent's permissions. */
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/basic/dir", "w0", "r4"), "OK");
    XSDT_EXPECT(xsdt_write(&w, 0, "/basic/dir/x/y", "v"), "OK");
    xsdt_rpc(&w, XS_GET_PERMS, 0, "/basic/dir/x/y", 15, &m);
    TEST_ASSERT(m.h.len == 6 && !memcmp(m.body, "w0\0r4\0", 6),
                "inherited permissions");
    XSDT_EXPECT(REQ(&w, XS_GET_DOMAIN_PATH, 0, "7"), "/local/domain/7");
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "7"), "F");
    XSDT_EXPECT(REQ(&w, XS_IS_DOMAIN_INTRODUCED, 0, "0"), "T");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "7"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_RELEASE, 0, "0"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_RESUME, 0, "7"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_RESUME, 0, "0"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "7", "8"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_RESET_WATCHES, 0, ""), "OK");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "print", "from test-xsd-proto"), "OK");
    TEST_ASSERT(strstr(REQ(&w, XS_CONTROL, 0, "help"), "quota"),
                "CONTROL help");
    TEST_ASSERT(strstr(REQ(&w, XS_CONTROL, 0, "tree", "/basic"), "/basic/a"),
                "CONTROL tree");
    TEST_ASSERT(strstr(REQ(&w, XS_CONTROL, 0, "quota"), "nodes"),
                "CONTROL quota");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "no-such-command"), "EINVAL");
    /* An fd-less INTRODUCE is Xen's: no Xen here. */
    n = xsdt_strings(buf, sizeof(buf), "5", "1234", "3", NULL);
    expect_raw(&w, XS_INTRODUCE, buf, n, XS_ERROR, "ENOSYS");
    n = xsdt_strings(buf, sizeof(buf), "5", "1234", NULL);
    expect_raw(&w, XS_INTRODUCE, buf, n, XS_ERROR, "EINVAL");
    n = xsdt_strings(buf, sizeof(buf), "0", "1", "3", NULL);
    expect_raw(&w, XS_INTRODUCE, buf, n, XS_ERROR, "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/basic/a"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/basic/a"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/basic"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/basic/dir/x/y"), "ENOENT");
    /* Replies echo req_id and tx_id: checked by xsdt_rpc; and a raw one. */
    xsdt_send(&w, XS_READ, 0xdeadbeef, 0, "/witness", 9);
    TEST_ASSERT(!xsdt_recv(&w, &m, 5000) && m.h.req_id == 0xdeadbeef,
                "req_id echo");
}

/*
 * SET_PERMS whose owner names a domain that does not exist is ENOENT, as
 * with Xen 4.17's xenstored, for a privileged client too: in a
 * transaction, on a special node, whatever the node.  Other entries
 * naming one are kept.
 */
static void test_perms_absent_owner(void)
{
    struct xsdt_msg m;
    uint32_t t;

    XSDT_EXPECT(xsdt_write(&w, 0, "/pd", "1"), "OK");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/pd", "n7"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/pd", "b7", "r0"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/pd", "n32752"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "@releaseDomain", "n7"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/pd/none", "n7"), "ENOENT");
    t = xsdt_txn(&w);
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, t, "/pd", "n7"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_TRANSACTION_END, t, "T"), "OK");
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "/pd"), "n0");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/pd", "n0", "r7", "w8"), "OK");
    xsdt_rpc(&w, XS_GET_PERMS, 0, "/pd", 4, &m);
    TEST_ASSERT(m.h.type == XS_GET_PERMS && m.h.len == 9 &&
                    !memcmp(m.body, "n0\0r7\0w8\0", 9),
                "entries of absent domains kept");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/pd"), "OK");
    witness();
}

static void test_types_unknown(void)
{
    uint32_t bad[] = {
        XS_WATCH_EVENT, XS_ERROR,   20,         XS_TYPE_COUNT, 24, 25, 26,
        1000,           XS_INVALID, 0xffffffffu};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_raw(&w, bad[i], "/x", 3, XS_ERROR, "ENOSYS");
    witness();
}

static void test_paths(void)
{
    char longp[4000];

    XSDT_EXPECT(xsdt_read(&w, 0, "/no/such/node"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, ""), "EINVAL");
    XSDT_EXPECT(xsdt_read(&w, 0, "/a//b"), "EINVAL");
    XSDT_EXPECT(xsdt_read(&w, 0, "/a/"), "EINVAL");
    XSDT_EXPECT(xsdt_read(&w, 0, "/a b"), "EINVAL");
    XSDT_EXPECT(xsdt_read(&w, 0, "/a\xff"), "EINVAL");
    XSDT_EXPECT(xsdt_read(&w, 0, "@introduceDomain"), "EINVAL");
    XSDT_EXPECT(xsdt_write(&w, 0, "@releaseDomain", "x"), "EINVAL");
    XSDT_EXPECT(xsdt_write(&w, 0, "/ok-_@chars/Z9", "x"), "OK");
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "@introduceDomain"), "n0");
    XSDT_EXPECT(REQ(&w, XS_GET_PERMS, 0, "@nosuch"), "ENOENT");
    /* Relative paths are below /local/domain/0 for a socket. */
    XSDT_EXPECT(xsdt_write(&w, 0, "rel/x", "r"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/0/rel/x"), "r");
    /* Lengths: 2048 past /local/domain/N/, 3072 in all, 2048 elsewhere. */
    memset(longp, 'a', sizeof(longp));
    longp[0] = '/';
    longp[2049] = '\0';
    XSDT_EXPECT(xsdt_read(&w, 0, longp), "EINVAL");
    longp[2048] = '\0';
    XSDT_EXPECT(xsdt_read(&w, 0, longp), "ENOENT");
    memset(longp, 'a', sizeof(longp));
    memcpy(longp, "/local/domain/3/", 16);
    longp[16 + 2048] = '\0';
    XSDT_EXPECT(xsdt_read(&w, 0, longp), "ENOENT");
    longp[16 + 2048] = 'a';
    longp[16 + 2049] = '\0';
    XSDT_EXPECT(xsdt_read(&w, 0, longp), "EINVAL");
    /* Over 3072 in all. */
    memset(longp, 'a', sizeof(longp));
    longp[0] = '/';
    longp[3073] = '\0';
    XSDT_EXPECT(xsdt_read(&w, 0, longp), "EINVAL");
    /* RM: "/" never; a missing node is fine if its parent exists. */
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/ok-_@chars/none"), "OK");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/none/none"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_GET_DOMAIN_PATH, 0, "abc"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_GET_DOMAIN_PATH, 0, "-1"), "EINVAL");
    witness();
}

static void test_unterminated(void)
{
    char buf[64];

    expect_raw(&w, XS_READ, "/witness", 8, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_READ, "", 0, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_READ, "/a\0/b\0", 6, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_WRITE, "/nonul", 6, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_MKDIR, "/x", 2, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_RM, "/x", 2, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_DIRECTORY, "/", 1, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_GET_PERMS, "/", 1, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_WATCH, "/x\0tok", 6, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_WATCH, "/x\0", 3, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_UNWATCH, "/x", 2, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_SET_PERMS, "/witness\0", 9, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_SET_PERMS, "/witness\0r0", 11, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_DIRECTORY_PART, "/\0", 2, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_DIRECTORY_PART, "/\0x\0", 4, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_TRANSACTION_END, "T", 1, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_GET_DOMAIN_PATH, "1", 1, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_CONTROL, "help", 4, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_CONTROL, "", 0, XS_ERROR, "EINVAL");
    /* Malformed permission strings. */
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/witness", "x5"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/witness", "r"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/witness", "r1x"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/witness", "r99999999999"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/nope", "r0"), "ENOENT");
    /* A value is any bytes, NULs included. */
    memcpy(buf, "/bin\0a\0b\xff", 9);
    expect_raw(&w, XS_WRITE, buf, 9, XS_WRITE, "OK");
    {
        struct xsdt_msg m;

        xsdt_rpc(&w, XS_READ, 0, "/bin", 5, &m);
        TEST_ASSERT(m.h.len == 4 && !memcmp(m.body, "a\0b\xff", 4),
                    "binary value");
    }
    witness();
}

static void test_directory_part(void)
{
    char path[64], got[16384];
    struct xsdt_msg m;
    size_t have = 0, want_len = 0;
    char gen[32] = "";

    /* 300 children of 20-odd bytes: more than 4096 bytes of names. */
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof(path), "/big/child-with-a-long-name-%03d", i);
        XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, path), "OK");
        want_len += strlen(path) - 5 + 1;
    }
    XSDT_EXPECT(REQ(&w, XS_DIRECTORY, 0, "/big"), "E2BIG");
    for (int chunks = 0;; chunks++) {
        char off[16], buf[64];
        uint32_t n;
        size_t gl;

        TEST_ASSERT(chunks < 10, "DIRECTORY_PART does not end");
        snprintf(off, sizeof(off), "%zu", have);
        n = xsdt_strings(buf, sizeof(buf), "/big", off, NULL);
        xsdt_rpc(&w, XS_DIRECTORY_PART, 0, buf, n, &m);
        TEST_ASSERT(m.h.type == XS_DIRECTORY_PART, "DIRECTORY_PART: %s",
                    m.body);
        gl = strlen(m.body) + 1;
        if (chunks == 0)
            strcpy(gen, m.body);
        else
            TEST_ASSERT(!strcmp(gen, m.body), "generation changed");
        memcpy(got + have, m.body + gl, m.h.len - gl);
        have += m.h.len - gl;
        if (have >= 2 && got[have - 1] == '\0' && got[have - 2] == '\0')
            break;
    }
    TEST_ASSERT(have == want_len + 1, "DIRECTORY_PART gave %zu bytes, not %zu",
                have, want_len + 1);
    for (size_t off = 0, i = 0; off < want_len; i++) {
        snprintf(path, sizeof(path), "child-with-a-long-name-%03zu", i);
        TEST_ASSERT(!strcmp(got + off, path), "child %zu is %s", i, got + off);
        off += strlen(path) + 1;
    }
    /* Past the end: just the generation and an empty string. */
    {
        char buf[64];
        uint32_t n = xsdt_strings(buf, sizeof(buf), "/big", "99999", NULL);

        xsdt_rpc(&w, XS_DIRECTORY_PART, 0, buf, n, &m);
        TEST_ASSERT(m.h.len == strlen(gen) + 2, "DIRECTORY_PART past the end");
    }
    /* The generation changes with the children. */
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/big/another"), "OK");
    {
        char buf[64];
        uint32_t n = xsdt_strings(buf, sizeof(buf), "/big", "0", NULL);

        xsdt_rpc(&w, XS_DIRECTORY_PART, 0, buf, n, &m);
        TEST_ASSERT(strcmp(gen, m.body), "generation did not change");
    }
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/big"), "OK");
    witness();
}

static void expect_event(struct xsdt_client *c, const char *path,
                         const char *token)
{
    struct xsdt_msg m;

    TEST_ASSERT(!xsdt_event(c, &m, 5000), "no event for %s", path);
    TEST_ASSERT(m.h.req_id == 0 && m.h.tx_id == 0, "event ids");
    TEST_ASSERT(!strcmp(m.body, path) &&
                    !strcmp(m.body + strlen(m.body) + 1, token),
                "event %s %s, wanted %s %s", m.body,
                m.body + strlen(m.body) + 1, path, token);
}

static void expect_no_event(struct xsdt_client *c)
{
    struct xsdt_msg m;

    TEST_ASSERT(c->nev == 0 && xsdt_recv(c, &m, 100),
                "unexpected message (type %u)", c->nev ? 15 : m.h.type);
}

static void test_watches(void)
{
    struct xsdt_client c;

    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/wt", "tok"), "OK");
    expect_event(&c, "/wt", "tok"); /* the initial event */
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/wt", "tok"), "EEXIST");
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/wt", "tok2"), "OK");
    expect_event(&c, "/wt", "tok2");
    XSDT_EXPECT(REQ(&c, XS_UNWATCH, 0, "/wt", "tok2"), "OK");
    XSDT_EXPECT(REQ(&c, XS_UNWATCH, 0, "/wt", "tok2"), "ENOENT");
    /* A write below fires; one elsewhere does not. */
    XSDT_EXPECT(xsdt_write(&w, 0, "/wt/a/b", "1"), "OK");
    expect_event(&c, "/wt/a/b", "tok");
    XSDT_EXPECT(xsdt_write(&w, 0, "/wtx", "1"), "OK");
    expect_no_event(&c);
    /* MKDIR fires only when it creates. */
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/wt/a"), "OK");
    expect_no_event(&c);
    /* RM: each removed descendant fires its exact watches, then the root. */
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/wt/a/b", "deep"), "OK");
    expect_event(&c, "/wt/a/b", "deep");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/wt/a"), "OK");
    expect_event(&c, "/wt/a/b", "deep");
    expect_event(&c, "/wt/a", "tok");
    expect_no_event(&c);
    /* SET_PERMS fires. */
    XSDT_EXPECT(REQ(&w, XS_SET_PERMS, 0, "/wt", "n0"), "OK");
    expect_event(&c, "/wt", "tok");
    /* Relative watches get relative paths. */
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "relw", "r"), "OK");
    expect_event(&c, "relw", "r");
    XSDT_EXPECT(xsdt_write(&w, 0, "/local/domain/0/relw/x", "1"), "OK");
    expect_event(&c, "relw/x", "r");
    /* The special watches, and UNWATCH of a relative one. */
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "@releaseDomain", "rel"), "OK");
    expect_event(&c, "@releaseDomain", "rel");
    XSDT_EXPECT(REQ(&c, XS_UNWATCH, 0, "relw", "r"), "OK");
    /* RESET_WATCHES drops them all. */
    XSDT_EXPECT(REQ(&c, XS_RESET_WATCHES, 0, ""), "OK");
    XSDT_EXPECT(xsdt_write(&w, 0, "/wt/c", "1"), "OK");
    expect_no_event(&c);
    /* A watch on / sees everything. */
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/", "root"), "OK");
    expect_event(&c, "/", "root");
    XSDT_EXPECT(xsdt_write(&w, 0, "/wt/d", "1"), "OK");
    expect_event(&c, "/wt/d", "root");
    xsdt_close(&c);
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/wt"), "OK");
    witness();
}

static void test_transactions(void)
{
    struct xsdt_client a, b, obs;
    uint32_t t1, t2, t3;

    TEST_ASSERT(!xsdt_connect(&a, d.sock) && !xsdt_connect(&b, d.sock) &&
                    !xsdt_connect(&obs, d.sock),
                "connect");
    XSDT_EXPECT(xsdt_write(&w, 0, "/tx/a", "a"), "OK");
    XSDT_EXPECT(REQ(&obs, XS_WATCH, 0, "/tx", "o"), "OK");
    expect_event(&obs, "/tx", "o");

    /* Ids: per connection, never 0, distinct. */
    t1 = xsdt_txn(&a);
    t2 = xsdt_txn(&a);
    TEST_ASSERT(t1 && t2 && t1 != t2, "transaction ids %u %u", t1, t2);
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_START, t1, ""), "EBUSY");
    XSDT_EXPECT(xsdt_read(&a, 12345, "/tx/a"), "ENOENT");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, 0, "T"), "ENOENT");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "X"), "EINVAL");
    XSDT_EXPECT(xsdt_read(&b, t1, "/tx/a"), "ENOENT"); /* not b's */
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t2, "F"), "OK");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t2, "F"), "ENOENT");

    /* Reads see own writes; others do not until commit; events on commit. */
    XSDT_EXPECT(xsdt_write(&a, t1, "/tx/a", "b"), "OK");
    XSDT_EXPECT(xsdt_write(&a, t1, "/tx/new/deep", "n"), "OK");
    XSDT_EXPECT(xsdt_read(&a, t1, "/tx/a"), "b");
    XSDT_EXPECT(xsdt_read(&a, 0, "/tx/a"), "a");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/new/deep"), "ENOENT");
    expect_no_event(&obs);
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "OK");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/a"), "b");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/new/deep"), "n");
    expect_event(&obs, "/tx/a", "o");
    expect_event(&obs, "/tx/new/deep", "o");

    /* Conflict: what it read changed. */
    t1 = xsdt_txn(&a);
    XSDT_EXPECT(xsdt_read(&a, t1, "/tx/a"), "b");
    XSDT_EXPECT(xsdt_write(&b, 0, "/tx/a", "c"), "OK");
    XSDT_EXPECT(xsdt_read(&a, t1, "/tx/a"), "b"); /* repeatable */
    XSDT_EXPECT(xsdt_write(&a, t1, "/tx/a", "d"), "OK");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "EAGAIN");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/a"), "c");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "ENOENT"); /* gone */

    /* No conflict: blind writes, and different nodes. */
    t1 = xsdt_txn(&a);
    t2 = xsdt_txn(&b);
    XSDT_EXPECT(xsdt_write(&a, t1, "/tx/a", "blind"), "OK");
    XSDT_EXPECT(xsdt_write(&a, t1, "/local/domain/11/x", "1"), "OK");
    XSDT_EXPECT(xsdt_write(&b, t2, "/local/domain/12/x", "2"), "OK");
    XSDT_EXPECT(xsdt_write(&w, 0, "/tx/a", "outside"), "OK");
    XSDT_EXPECT(REQ(&b, XS_TRANSACTION_END, t2, "T"), "OK");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/tx/a"), "blind");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/11/x"), "1");
    XSDT_EXPECT(xsdt_read(&w, 0, "/local/domain/12/x"), "2");

    /* Conflict: a listed directory gained a child. */
    t1 = xsdt_txn(&a);
    TEST_ASSERT(REQ(&a, XS_DIRECTORY, t1, "/tx")[0], "DIRECTORY in txn");
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/tx/sibling"), "OK");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "EAGAIN");

    /* Conflict: a node it found missing appeared. */
    t1 = xsdt_txn(&a);
    XSDT_EXPECT(xsdt_read(&a, t1, "/tx/late"), "ENOENT");
    XSDT_EXPECT(xsdt_write(&w, 0, "/tx/late", "x"), "OK");
    XSDT_EXPECT(xsdt_write(&a, t1, "/tx/other", "x"), "OK");
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "EAGAIN");
    XSDT_EXPECT(xsdt_read(&w, 0, "/tx/other"), "ENOENT");

    /* RM inside: gone for the transaction, there for others, then gone. */
    t1 = xsdt_txn(&a);
    XSDT_EXPECT(REQ(&a, XS_RM, t1, "/tx/new"), "OK");
    XSDT_EXPECT(xsdt_read(&a, t1, "/tx/new/deep"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/new/deep"), "n");
    XSDT_EXPECT(xsdt_write(&a, t1, "/tx/new/again", "y"), "OK");
    {
        struct xsdt_msg m;

        xsdt_rpc(&a, XS_DIRECTORY, t1, "/tx/new", 8, &m);
        TEST_ASSERT(m.h.len == 6 && !memcmp(m.body, "again\0", 6),
                    "DIRECTORY after RM and WRITE in a transaction");
    }
    XSDT_EXPECT(REQ(&a, XS_TRANSACTION_END, t1, "T"), "OK");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/new/deep"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&b, 0, "/tx/new/again"), "y");

    /* Abort leaves nothing. */
    t3 = xsdt_txn(&b);
    XSDT_EXPECT(xsdt_write(&b, t3, "/tx/aborted", "x"), "OK");
    XSDT_EXPECT(REQ(&b, XS_TRANSACTION_END, t3, "F"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/tx/aborted"), "ENOENT");

    /* Watches are not transactional: WATCH ignores the id. */
    XSDT_EXPECT(REQ(&b, XS_WATCH, 999, "/tx", "x"), "OK");
    /* Closing a connection drops its transactions. */
    t3 = xsdt_txn(&b);
    XSDT_EXPECT(xsdt_write(&b, t3, "/tx/closed", "x"), "OK");
    xsdt_close(&b);
    xsdt_close(&a);
    xsdt_close(&obs);
    XSDT_EXPECT(xsdt_read(&w, 0, "/tx/closed"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/tx"), "OK");
    witness();
}

static void test_read_only(void)
{
    struct xsdt_client ro;

    TEST_ASSERT(!xsdt_connect(&ro, d.ro), "connect read-only");
    XSDT_EXPECT(xsdt_read(&ro, 0, "/witness"), "alive");
    XSDT_EXPECT(xsdt_write(&ro, 0, "/witness", "x"), "EROFS");
    XSDT_EXPECT(REQ(&ro, XS_MKDIR, 0, "/ro"), "EROFS");
    XSDT_EXPECT(REQ(&ro, XS_RM, 0, "/witness"), "EROFS");
    XSDT_EXPECT(REQ(&ro, XS_SET_PERMS, 0, "/witness", "n0"), "EROFS");
    XSDT_EXPECT(REQ(&ro, XS_CONTROL, 0, "help"), "EROFS");
    XSDT_EXPECT(REQ(&ro, XS_WATCH, 0, "/witness", "t"), "OK");
    xsdt_close(&ro);
    witness();
}

/* A header (and body) split into one-byte writes. */
static void test_split_header(void)
{
    char buf[64];
    struct xsd_sockmsg h = {XS_READ, 77, 0, 9};
    struct xsdt_msg m;

    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), "/witness", 9);
    for (size_t i = 0; i < sizeof(h) + 9; i++) {
        TEST_ASSERT(write(w.fd, buf + i, 1) == 1, "write");
        usleep(1000);
    }
    TEST_ASSERT(!xsdt_recv(&w, &m, 5000) && m.h.req_id == 77 &&
                    !strcmp(m.body, "alive"),
                "split request");
    witness();
}

static bool closed_by_daemon(struct xsdt_client *c)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    char b[256];

    while (poll(&p, 1, 5000) == 1) {
        ssize_t n = read(c->fd, b, sizeof(b));

        if (n <= 0)
            return true;
    }
    return false;
}

static void test_too_long(void)
{
    struct xsdt_client c;
    struct xsd_sockmsg h = {XS_READ, 1, 0, XENSTORE_PAYLOAD_MAX + 1};

    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    TEST_ASSERT(write(c.fd, &h, sizeof(h)) == sizeof(h), "write");
    TEST_ASSERT(closed_by_daemon(&c), "an over-long message was accepted");
    xsdt_close(&c);
    /* Exactly the maximum is fine. */
    {
        static char big[XENSTORE_PAYLOAD_MAX];

        TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
        memset(big, 'v', sizeof(big));
        memcpy(big, "/maxed", 7);
        expect_raw(&c, XS_WRITE, big, sizeof(big), XS_WRITE, "OK");
        xsdt_close(&c);
    }
    witness();
}

static void test_close_mid_message(void)
{
    struct xsd_sockmsg h = {XS_WRITE, 1, 0, 100};
    struct xsdt_client c;

    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    TEST_ASSERT(write(c.fd, &h, 7) == 7, "write");
    xsdt_close(&c);
    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    TEST_ASSERT(write(c.fd, &h, sizeof(h)) == sizeof(h) &&
                    write(c.fd, "/half\0abc", 9) == 9,
                "write");
    xsdt_close(&c);
    /* And one with a transaction and watches open. */
    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/half", "t"), "OK");
    (void)xsdt_txn(&c);
    TEST_ASSERT(write(c.fd, &h, 3) == 3, "write");
    xsdt_close(&c);
    witness();
    XSDT_EXPECT(xsdt_read(&w, 0, "/half"), "ENOENT");
}

static void test_thousand_connections(void)
{
    enum { N = 1000 };
    struct xsdt_client *cs = calloc(N, sizeof(*cs));
    struct xsdt_msg m;

    TEST_ASSERT(cs, "calloc");
    for (int i = 0; i < N; i++)
        TEST_ASSERT(!xsdt_connect(&cs[i], d.sock), "connection %d", i);
    for (int i = 0; i < N; i++) {
        char p[32];

        snprintf(p, sizeof(p), "/many/%d", i);
        xsdt_send(&cs[i], XS_MKDIR, (uint32_t)i, 0, p, (uint32_t)strlen(p) + 1);
    }
    for (int i = 0; i < N; i++) {
        TEST_ASSERT(!xsdt_recv(&cs[i], &m, 10000) && m.h.type == XS_MKDIR &&
                        m.h.req_id == (uint32_t)i,
                    "connection %d got no answer", i);
        xsdt_close(&cs[i]);
    }
    free(cs);
    TEST_ASSERT(strstr(REQ(&w, XS_CONTROL, 0, "stats"), "connections "),
                "stats");
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/many"), "OK");
    witness();
}

enum { PIPELINED = 2000 };

static void *pipeline_writer(void *arg)
{
    struct xsdt_client *c = arg;

    for (uint32_t i = 0; i < PIPELINED; i++)
        xsdt_send(c, XS_READ, i, 0, "/maxed", 7);
    return NULL;
}

/*
 * Requests sent without waiting for replies, with 4 KiB replies (8 MiB in
 * all) read slowly: the daemon pauses this client's input while its
 * replies wait, and all are answered, in order.
 */
static void test_pipelined(void)
{
    enum { N = PIPELINED };
    struct xsdt_client c;
    struct xsdt_msg m;
    pthread_t thr;

    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    TEST_ASSERT(!pthread_create(&thr, NULL, pipeline_writer, &c), "thread");
    usleep(200000); /* let the replies pile up first */
    for (uint32_t i = 0; i < N; i++)
        TEST_ASSERT(!xsdt_recv(&c, &m, 10000) && m.h.req_id == i &&
                        m.h.len == XENSTORE_PAYLOAD_MAX - 7,
                    "pipelined reply %u", i);
    pthread_join(thr, NULL);
    xsdt_close(&c);
    witness();
}

/* A client that never reads its events: others are served, and the stuck
 * one is disconnected at the queue bound (1024 by default). */
static void test_never_reads(void)
{
    struct xsdt_client stuck;
    char p[64];

    TEST_ASSERT(!xsdt_connect(&stuck, d.sock), "connect");
    xsdt_send(&stuck, XS_WATCH, 1, 0, "/spam\0t", 8);
    /* Until the kernel's buffer and the daemon's queue are both full. */
    for (int i = 0; i < 20000; i++) {
        struct pollfd pf = {stuck.fd, POLLRDHUP, 0};

        snprintf(p, sizeof(p), "/spam/%d", i);
        XSDT_EXPECT(xsdt_write(&w, 0, p, "0123456789012345678901234567890123"),
                    "OK");
        if (i % 256 == 0 && poll(&pf, 1, 0) == 1)
            break;
    }
    TEST_ASSERT(closed_by_daemon(&stuck),
                "a client that never reads was kept forever");
    xsdt_close(&stuck);
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/spam"), "OK");
    witness();
}

/* Sends len bytes of messages in one sendmsg() carrying nfds copies of fd
 * (SCM_RIGHTS). */
static void send_with_fds(struct xsdt_client *c, const void *buf, size_t len,
                          int fd, int nfds)
{
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(16 * sizeof(int))];
    } cb;
    struct iovec iov = {(void *)buf, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *cm;

    TEST_ASSERT(nfds > 0 && nfds <= 16, "nfds %d", nfds);
    memset(&cb, 0, sizeof(cb));
    mh.msg_control = cb.b;
    mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    for (int i = 0; i < nfds; i++)
        memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof(int));
    TEST_ASSERT(sendmsg(c->fd, &mh, MSG_NOSIGNAL) == (ssize_t)len, "sendmsg");
}

/* A message (header + payload) into buf at *n. */
static void put_msg(char *buf, size_t *n, uint32_t type, uint32_t id,
                    const void *p, uint32_t len)
{
    struct xsd_sockmsg h = {type, id, 0, len};

    memcpy(buf + *n, &h, sizeof(h));
    memcpy(buf + *n + sizeof(h), p, len);
    *n += sizeof(h) + len;
}

static void expect_reply(struct xsdt_client *c, uint32_t id, uint32_t type,
                         const char *body)
{
    struct xsdt_msg m;

    TEST_ASSERT(!xsdt_recv(c, &m, 5000), "no reply %u", id);
    TEST_ASSERT(m.h.req_id == id && m.h.type == type && !strcmp(m.body, body),
                "reply %u: %u %u \"%s\", wanted %u \"%s\"", id, m.h.req_id,
                m.h.type, m.body, type, body);
}

/*
 * KVM INTRODUCE with the wrong descriptors: 1, 2, 4, or more than the
 * daemon takes in one message (MSG_CTRUNC): EINVAL, every descriptor
 * closed, the connection still served.  Descriptors on another message
 * are closed too and do not carry over to a later INTRODUCE; those on data
 * holding a READ then an INTRODUCE go to the INTRODUCE.
 */
static void test_introduce_fds(void)
{
    static const char intro[] = "9\0"
                                "1\0"
                                "1";
    struct xsdt_client c;
    char buf[256];
    size_t n;
    int efd = eventfd(0, EFD_CLOEXEC), before;
    const int counts[] = {1, 2, 4, 12};

    TEST_ASSERT(efd >= 0, "eventfd");
    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    XSDT_EXPECT(xsdt_read(&c, 0, "/witness"), "alive");
    before = xsdt_daemon_fds(&d);
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        n = 0;
        put_msg(buf, &n, XS_INTRODUCE, 100 + (uint32_t)i, intro, sizeof(intro));
        send_with_fds(&c, buf, n, efd, counts[i]);
        expect_reply(&c, 100 + (uint32_t)i, XS_ERROR, "EINVAL");
        TEST_ASSERT(xsdt_daemon_fds(&d) == before, "%d descriptors: %d leaked",
                    counts[i], xsdt_daemon_fds(&d) - before);
    }
    /* Three descriptors and a payload that is not an INTRODUCE's. */
    n = 0;
    put_msg(buf, &n, XS_INTRODUCE, 110,
            "9\0"
            "1",
            4);
    send_with_fds(&c, buf, n, efd, 3);
    expect_reply(&c, 110, XS_ERROR, "EINVAL");
    /* On a READ: closed, and the next INTRODUCE is Xen's (ENOSYS here). */
    n = 0;
    put_msg(buf, &n, XS_READ, 111, "/witness", 9);
    send_with_fds(&c, buf, n, efd, 3);
    expect_reply(&c, 111, XS_READ, "alive");
    n = 0;
    put_msg(buf, &n, XS_INTRODUCE, 112, intro, sizeof(intro));
    TEST_ASSERT(send(c.fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n, "send");
    expect_reply(&c, 112, XS_ERROR, "ENOSYS");
    TEST_ASSERT(xsdt_daemon_fds(&d) == before, "descriptors on a READ leaked");
    /* A READ and an INTRODUCE in one sendmsg: the INTRODUCE gets them (an
     * eventfd is not a memfd: EINVAL, not Xen's ENOSYS). */
    n = 0;
    put_msg(buf, &n, XS_READ, 113, "/witness", 9);
    put_msg(buf, &n, XS_INTRODUCE, 114, intro, sizeof(intro));
    send_with_fds(&c, buf, n, efd, 3);
    expect_reply(&c, 113, XS_READ, "alive");
    expect_reply(&c, 114, XS_ERROR, "EINVAL");
    TEST_ASSERT(xsdt_daemon_fds(&d) == before, "descriptors leaked");
    XSDT_EXPECT(REQ(&c, XS_IS_DOMAIN_INTRODUCED, 0, "9"), "F");
    xsdt_close(&c);
    close(efd);
    witness();
}

/* SET_TARGET wants two domids. */
static void test_set_target_args(void)
{
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "7"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "7", "8", "9"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "x", "8"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "7", "-1"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "7", ""), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "4294967296", "8"), "EINVAL");
    expect_raw(&w, XS_SET_TARGET,
               "7\0"
               "8",
               3, XS_ERROR, "EINVAL");
    expect_raw(&w, XS_SET_TARGET, "", 0, XS_ERROR, "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_SET_TARGET, 0, "7", "8"), "ENOENT");
    witness();
}

/* RESET_WATCHES drops the connection's transactions too. */
static void test_reset_drops_transactions(void)
{
    struct xsdt_client c;
    uint32_t t;

    TEST_ASSERT(!xsdt_connect(&c, d.sock), "connect");
    XSDT_EXPECT(REQ(&c, XS_WATCH, 0, "/reset", "t"), "OK");
    expect_event(&c, "/reset", "t");
    t = xsdt_txn(&c);
    XSDT_EXPECT(xsdt_write(&c, t, "/reset/in-txn", "x"), "OK");
    XSDT_EXPECT(REQ(&c, XS_RESET_WATCHES, 0, ""), "OK");
    XSDT_EXPECT(xsdt_read(&c, t, "/reset/in-txn"), "ENOENT");
    XSDT_EXPECT(REQ(&c, XS_TRANSACTION_END, t, "T"), "ENOENT");
    XSDT_EXPECT(xsdt_read(&w, 0, "/reset/in-txn"), "ENOENT");
    XSDT_EXPECT(xsdt_write(&w, 0, "/reset/after", "x"), "OK");
    expect_no_event(&c);
    /* The connection goes on: a new transaction commits. */
    t = xsdt_txn(&c);
    XSDT_EXPECT(xsdt_write(&c, t, "/reset/again", "y"), "OK");
    XSDT_EXPECT(REQ(&c, XS_TRANSACTION_END, t, "T"), "OK");
    XSDT_EXPECT(xsdt_read(&w, 0, "/reset/again"), "y");
    xsdt_close(&c);
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/reset"), "OK");
    witness();
}

/* The quota and tree CONTROL answers fit and say something real. */
static void test_control(void)
{
    const char *s = REQ(&w, XS_CONTROL, 0, "quota", "0");

    TEST_ASSERT(strstr(s, "Domain 0") && strstr(s, "nodes"), "quota 0: %s", s);
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "quota", "12345"), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "quota", "set", "nodes", "x"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "log", "nonsense"), "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "log", "debug"), "debug");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "tree", "/nope"), "ENOENT");
}

/* The bytes of a file (NUL-terminated, malloc'd); its length to *len. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "re");
    char *buf;
    long n;

    TEST_ASSERT(f, "%s", path);
    TEST_ASSERT(!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 &&
                    !fseek(f, 0, SEEK_SET),
                "size of %s", path);
    buf = malloc((size_t)n + 1);
    TEST_ASSERT(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s",
                path);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/*
 * A tree bigger than one message: E2BIG as a reply, complete in a file
 * (tree PATH FILE).  And the file errors of tree and save: EIO.
 */
static void test_control_files(void)
{
    enum { N = 120 };
    static char want[N * 96];
    char file[256], bad[256], path[64], val[48];
    size_t wl, len;
    const char *s;
    char *got;

    memset(val, 'v', 40);
    val[40] = '\0';
    XSDT_EXPECT(REQ(&w, XS_MKDIR, 0, "/bigtree"), "OK");
    wl = (size_t)snprintf(want, sizeof(want), "/bigtree = \"\" (n0)\n");
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/bigtree/node-%03d", i);
        XSDT_EXPECT(xsdt_write(&w, 0, path, val), "OK");
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl,
                               "%s = \"%s\" (n0)\n", path, val);
    }
    /* A value with bytes that are escaped. */
    expect_raw(&w, XS_WRITE, "/bigtree/q\0a\"b\\\n", 16, XS_WRITE, "OK");
    wl += (size_t)snprintf(want + wl, sizeof(want) - wl,
                           "/bigtree/q = \"a\\x22b\\x5c\\x0a\" (n0)\n");
    TEST_ASSERT(wl > XENSTORE_PAYLOAD_MAX, "the tree is only %zu bytes", wl);
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "tree", "/bigtree"), "E2BIG");
    snprintf(file, sizeof(file), "%s/tree.out", d.dir);
    s = REQ(&w, XS_CONTROL, 0, "tree", "/bigtree", file);
    snprintf(path, sizeof(path), "wrote %d nodes (%zu bytes) to ", N + 2, wl);
    TEST_ASSERT(!strncmp(s, path, strlen(path)) && strstr(s, file),
                "tree to a file: %s", s);
    got = slurp(file, &len);
    TEST_ASSERT(len == wl && !memcmp(got, want, wl),
                "the dumped tree (%zu bytes) is not the tree (%zu bytes)", len,
                wl);
    free(got);
    /* The whole store, over the same file. */
    s = REQ(&w, XS_CONTROL, 0, "tree", "/", file);
    TEST_ASSERT(!strncmp(s, "wrote ", 6), "tree / to a file: %s", s);
    got = slurp(file, &len);
    TEST_ASSERT(!strncmp(got, "/ = \"\" (n0)\n", 12) &&
                    strstr(got, "\n/witness = \"alive\" (n0)\n") &&
                    strstr(got, want),
                "tree / in the file");
    free(got);
    /* Errors: a directory that does not exist, a directory as the file. */
    snprintf(bad, sizeof(bad), "%s/no/such/dir", d.dir);
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "tree", "/bigtree", bad), "EIO");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "tree", "/bigtree", d.dir), "EIO");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "tree", "/nope", file), "ENOENT");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "tree", "/bigtree", file, "x"),
                "EINVAL");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "save", bad), "EIO");
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "save", d.dir), "EIO");
    /* Not over a device (a /dev/null of our own): it stays a device. */
    {
        char dev[300];
        struct stat sb;

        snprintf(dev, sizeof(dev), "%s/null", d.dir);
        TEST_ASSERT(mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0, "mknod");
        XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "save", dev), "EIO");
        TEST_ASSERT(stat(dev, &sb) == 0 && S_ISCHR(sb.st_mode),
                    "the device is still a device");
        unlink(dev);
    }
    XSDT_EXPECT(REQ(&w, XS_CONTROL, 0, "save"), "EINVAL"); /* no -S */
    s = REQ(&w, XS_CONTROL, 0, "save", file);
    TEST_ASSERT(!strncmp(s, "saved ", 6), "save to a file: %s", s);
    XSDT_EXPECT(REQ(&w, XS_RM, 0, "/bigtree"), "OK");
    witness();
}

int main(void)
{
    xsdt_raise_fd_limit();
    xsdt_daemon_start(&d, NULL);
    TEST_ASSERT(!xsdt_connect(&w, d.sock), "connect");
    witness();
    TEST_RUN(test_basic_types);
    TEST_RUN(test_perms_absent_owner);
    TEST_RUN(test_types_unknown);
    TEST_RUN(test_paths);
    TEST_RUN(test_unterminated);
    TEST_RUN(test_directory_part);
    TEST_RUN(test_watches);
    TEST_RUN(test_transactions);
    TEST_RUN(test_read_only);
    TEST_RUN(test_split_header);
    TEST_RUN(test_too_long);
    TEST_RUN(test_close_mid_message);
    TEST_RUN(test_thousand_connections);
    TEST_RUN(test_pipelined);
    TEST_RUN(test_never_reads);
    TEST_RUN(test_control);
    TEST_RUN(test_control_files);
    TEST_RUN(test_introduce_fds);
    TEST_RUN(test_set_target_args);
    TEST_RUN(test_reset_drops_transactions);
    xsdt_close(&w);
    xsdt_daemon_stop(&d, false);
    return 0;
}

/*
 * test-netbuf.c - the xen backend's held network output (lib/xen/netbuf.c)
 * against this machine's kernel, in a network namespace of its own with a
 * veth standing in for a vif.
 *
 * Where the kernel has the plug qdisc (a Debian kernel: the testbed's
 * dom0, where the whole is tested with a real guest, dev-held): the hold
 * sets up an ifb with the plug, the vif's ingress redirected to it; an
 * epoch closes and is released; the end takes everything away; a second
 * hold of the same vif is refused (EEXIST) and leaves the first alone.
 * Where it has not (this project's CI kernel): the hold fails naming the
 * plug and leaves nothing behind (no ifb, no ingress qdisc).  Both: a vif
 * that does not exist is refused (ENODEV), an ifb in the way (a hold a
 * dead save left) is refused (EEXIST) and left as it was, and ending a
 * hold that is not there says ENOENT.
 */
#include "config.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "test.h"
#include "xen/netbuf.h"
#include "xtk-internal.h"

static char last_error[512];

static void vmessage(struct xtk_logger *lg, xtk_log_level level, int errnoval,
                     const char *context, const char *format, va_list al)
{
    (void)lg, (void)errnoval, (void)context;
    if (level >= XTK_LOG_ERROR)
        vsnprintf(last_error, sizeof(last_error), format, al);
}

static struct xtk_logger logger = {.vmessage = vmessage};

/* sh -c cmd succeeded (its output thrown away). */
static int sh(const char *cmd)
{
    char buf[512];

    snprintf(buf, sizeof(buf), "(%s) >/dev/null 2>&1", cmd);
    return system(buf) == 0;
}

static void assert_clean(const char *what)
{
    TEST_ASSERT(!sh("ip link show xtkb7.0"), "%s: no ifb left", what);
    TEST_ASSERT(!sh("tc qdisc show dev xtkv0 | grep -q ingress"),
                "%s: no ingress qdisc left on the vif", what);
}

int main(void)
{
    const char vif[1][IF_NAMESIZE] = {"xtkv0"};
    const char nodev[1][IF_NAMESIZE] = {"xtkv9"};
    const unsigned int devid[1] = {0};
    struct xtk__netbuf nb;
    struct xtk__output out;
    struct xtk_ctx *ctx;
    int plug;

    if (geteuid() != 0)
        TEST_SKIP("needs root (a network namespace of its own)");
    if (!sh("command -v ip && command -v tc"))
        TEST_SKIP("needs iproute2's ip and tc");
    TEST_ASSERT(unshare(CLONE_NEWNET) == 0, "a network namespace");
    TEST_ASSERT(sh("ip link add xtkv0 type veth peer name xtkv1 && "
                   "ip link set xtkv0 up && ip link set xtkv1 up"),
                "a veth pair (the veth module)");
    ctx = xtk_ctx_open(&logger, NULL, 0);
    TEST_ASSERT(ctx, "context");
    /* Does this kernel have the plug?  (Asked of it with tc, apart.) */
    plug = sh("ip link add xtkp0 type dummy && "
              "tc qdisc add dev xtkp0 root plug && ip link del xtkp0");
    sh("ip link del xtkp0");
    fprintf(stderr, "   the plug qdisc: %s in this kernel\n",
            plug ? "there" : "missing");

    TEST_ASSERT_ERRNO(xtk__netbuf_hold(ctx, &nb, 7, nodev, devid, 1), ENODEV);
    assert_clean("no such vif");

    if (!plug) {
        TEST_ASSERT(xtk__netbuf_hold(ctx, &nb, 7, vif, devid, 1) < 0,
                    "a hold without the plug fails");
        TEST_ASSERT(strstr(last_error, "plug"), "the error names the plug: %s",
                    last_error);
        assert_clean("the failed hold");
        fprintf(stderr, "   the hold fails (%s), nothing left\n", last_error);
    } else {
        TEST_ASSERT(xtk__netbuf_hold(ctx, &nb, 7, vif, devid, 1) == 0,
                    "hold: %s", last_error);
        TEST_ASSERT(sh("tc qdisc show dev xtkb7.0 | grep -q plug"),
                    "the plug on the ifb");
        TEST_ASSERT(sh("tc filter show dev xtkv0 ingress | grep -q mirred"),
                    "the vif's packets redirected");
        TEST_ASSERT(xtk__netbuf_close_epoch(ctx, &nb) == 0, "an epoch closes");
        TEST_ASSERT(xtk__netbuf_release(ctx, &nb, &out) == 0, "and goes");
        /* A second hold of the vif: refused, the first left working. */
        {
            struct xtk__netbuf nb2;

            TEST_ASSERT_ERRNO(xtk__netbuf_hold(ctx, &nb2, 7, vif, devid, 1),
                              EEXIST);
            TEST_ASSERT(sh("tc qdisc show dev xtkb7.0 | grep -q plug"),
                        "the first hold stays");
        }
        TEST_ASSERT(xtk__netbuf_end(ctx, "xtkv0", "xtkb7.0", 1) == 0,
                    "the hold ends, sending: %s", last_error);
        xtk__netbuf_close(&nb);
        assert_clean("the hold ended");
        TEST_ASSERT(xtk__netbuf_hold(ctx, &nb, 7, vif, devid, 1) == 0,
                    "hold again: %s", last_error);
        TEST_ASSERT(xtk__netbuf_end(ctx, "xtkv0", "xtkb7.0", 0) == 0,
                    "the hold ends, dropping: %s", last_error);
        xtk__netbuf_close(&nb);
        assert_clean("the hold dropped");
        fprintf(stderr, "   hold, an epoch closed and released, ended "
                        "(sent, dropped): nothing left\n");
    }

    /* An ifb in the way (what a dead save's hold looks like): refused,
     * and left as it was. */
    TEST_ASSERT(sh("ip link add xtkb7.0 type ifb"), "an ifb (the ifb module)");
    TEST_ASSERT_ERRNO(xtk__netbuf_hold(ctx, &nb, 7, vif, devid, 1), EEXIST);
    TEST_ASSERT(strstr(last_error, "xtk output"),
                "the error says what to do: %s", last_error);
    TEST_ASSERT(sh("ip link show xtkb7.0"), "the ifb in the way is left");
    TEST_ASSERT(!sh("tc qdisc show dev xtkv0 | grep -q ingress"),
                "no ingress qdisc on the vif");
    TEST_ASSERT(xtk__netbuf_end(ctx, "xtkv0", "xtkb7.0", 0) == 0,
                "ended by hand (xtk output ... drop)");
    assert_clean("ended by hand");
    TEST_ASSERT_ERRNO(xtk__netbuf_end(ctx, "xtkv0", "xtkb7.0", 1), ENOENT);
    fprintf(stderr, "   no vif: ENODEV; an ifb in the way: EEXIST, left; "
                    "nothing to end: ENOENT\n");
    xtk_ctx_close(ctx);
    return 0;
}

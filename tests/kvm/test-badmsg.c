/*
 * test-badmsg.c - bad control messages on xtk-hv's socket: short packets,
 * a foreign magic, another version, lengths that lie, unknown ops and
 * flags, wrong payload sizes, oversized packets, fds nobody asked for,
 * state that makes no sense, a peer that hangs up or never reads, too many
 * connections.  Each gets an error reply or a disconnect, xtk-hv leaks
 * nothing, and the guest runs on throughout.
 */
#include <dirent.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "kvm-test.h"
#include "kvm/hvctl.h"

#define HV_MAX_CONNS_TEST 16 /* hv/hv.h HV_MAX_CONNS */

static struct xtk_ctx *ctx;
static struct xtk_domain *dom;
static volatile struct xtk_guest_status *st;

static int conn(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%u.sock", kt_rundir,
             xtk_domain_id(dom));
    TEST_ASSERT(fd >= 0 && connect(fd, (void *)&sa, sizeof(sa)) == 0,
                "connect");
    return fd;
}

static struct xtk_hvctl_hdr hdr(uint16_t op, uint32_t len)
{
    return (struct xtk_hvctl_hdr){.magic = XTK_HVCTL_MAGIC,
                                  .version = XTK_HVCTL_VERSION,
                                  .op = op,
                                  .id = 42,
                                  .len = len};
}

/* Sends raw bytes; returns the reply's error, or -1 if disconnected. */
static int exchange(int fd, const void *msg, size_t n)
{
    static char buf[XTK_HVCTL_MSG_MAX];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    struct xtk_hvctl_hdr h;
    ssize_t r;

    TEST_ASSERT(send(fd, msg, n, MSG_NOSIGNAL) == (ssize_t)n, "send %zu", n);
    TEST_ASSERT(poll(&p, 1, 5000) == 1, "an answer comes");
    r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0)
        return -1;
    TEST_ASSERT(r >= (ssize_t)sizeof(h), "reply of %zd bytes", r);
    memcpy(&h, buf, sizeof(h));
    TEST_ASSERT(h.magic == XTK_HVCTL_MAGIC && h.version == XTK_HVCTL_VERSION &&
                    (h.op & XTK_HVCTL_REPLY),
                "a reply header");
    return h.error;
}

static void guest_runs(void)
{
    uint64_t a = st->counter;
    struct xtk_domain_info info;

    KT_WAIT(st->counter != a, 5000, "the guest runs on");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0 &&
                    !(info.flags & (XTK_DOMINFO_PAUSED | XTK_DOMINFO_CRASHED)),
                "and xtk-hv answers: flags %#x", info.flags);
}

static int open_fds(pid_t pid)
{
    char path[64];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    TEST_ASSERT(d, "%s", path);
    while ((de = readdir(d)))
        n++;
    closedir(d);
    return n;
}

static pid_t hv_pid(void)
{
    struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_INFO, 0);
    char buf[sizeof(h) + sizeof(struct xtk_hvctl_info)];
    struct xtk_hvctl_info info;
    int fd = conn();

    TEST_ASSERT(send(fd, &h, sizeof(h), 0) == sizeof(h) &&
                    recv(fd, buf, sizeof(buf), 0) == sizeof(buf),
                "info");
    memcpy(&info, buf + sizeof(h), sizeof(info));
    close(fd);
    return (pid_t)info.pid;
}

static void framing(void)
{
    struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_INFO, 0);
    char big[XTK_HVCTL_MSG_MAX + 64];
    int fd;

    fd = conn();
    TEST_ASSERT(exchange(fd, &h, 5) == -1, "a short packet: disconnected");
    close(fd);

    fd = conn();
    h.magic = 0x12345678;
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == -1,
                "another magic: disconnected");
    close(fd);

    fd = conn();
    h = hdr(XTK_HVCTL_OP_INFO, 0);
    h.version = 99;
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EPROTONOSUPPORT,
                "another version");
    h = hdr(XTK_HVCTL_OP_INFO, 100); /* says 100, carries 0 */
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EBADMSG, "len lies (more)");
    memset(big, 0, sizeof(big));
    h = hdr(XTK_HVCTL_OP_INFO, 0); /* says 0, carries 8 */
    memcpy(big, &h, sizeof(h));
    TEST_ASSERT(exchange(fd, big, sizeof(h) + 8) == EBADMSG, "len lies (less)");
    h = hdr(XTK_HVCTL_OP_SET_STATE, sizeof(big) - sizeof(h));
    memcpy(big, &h, sizeof(h));
    TEST_ASSERT(exchange(fd, big, sizeof(big)) == EBADMSG,
                "a packet over the maximum");
    h = hdr(99, 0);
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == ENOSYS, "unknown op");
    h = hdr(0, 0);
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == ENOSYS, "op 0");
    h = hdr(XTK_HVCTL_OP_PAUSE, 0);
    h.flags = 0x80;
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EINVAL, "unknown flags");
    h = hdr(XTK_HVCTL_OP_INFO | XTK_HVCTL_REPLY, 0);
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EINVAL, "a reply as request");
    h = hdr(XTK_HVCTL_OP_INFO, 0);
    h.error = 5;
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EINVAL, "a request with error");
    h = hdr(XTK_HVCTL_OP_CONSOLE_READ, 3);
    memcpy(big, &h, sizeof(h));
    TEST_ASSERT(exchange(fd, big, sizeof(h) + 3) == EINVAL,
                "payload of the wrong size");
    h = hdr(XTK_HVCTL_OP_INFO, 0);
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == 0, "the connection still works");
    close(fd);
    guest_runs();
}

static void semantics(void)
{
    struct xtk_hvctl_hdr h;
    char buf[256];
    int fd = conn();

    h = hdr(XTK_HVCTL_OP_GET_STATE, 0);
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EBUSY, "state of a running VM");
    h = hdr(XTK_HVCTL_OP_SET_STATE, 16);
    memset(buf, 0xab, sizeof(buf));
    memcpy(buf, &h, sizeof(h));
    TEST_ASSERT(exchange(fd, buf, sizeof(h) + 16) == EBUSY,
                "set state on a running VM");
    h = hdr(XTK_HVCTL_OP_LOGDIRTY_SYNC, 0);
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == ENODATA, "sync without a log");
    h = hdr(XTK_HVCTL_OP_HELLO, 0);
    h.flags = XTK_HVCTL_HELLO_OWN;
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == EBUSY,
                "owning a domain that is not empty");

    h = hdr(XTK_HVCTL_OP_PAUSE, 0);
    h.flags = XTK_HVCTL_PAUSE_HOLD;
    TEST_ASSERT(exchange(fd, &h, sizeof(h)) == 0, "pause");
    h = hdr(XTK_HVCTL_OP_SET_STATE, 16);
    memcpy(buf, &h, sizeof(h));
    TEST_ASSERT(exchange(fd, buf, sizeof(h) + 16) == EINVAL, "garbage state");
    struct {
        struct xtk_hvctl_hdr h;
        struct xtk__rec_hdr r;
        struct xtk_kvm_rec_head head;
        char body[64];
    } rec = {hdr(XTK_HVCTL_OP_SET_STATE, 8 + 8 + 64),
             {XTK_KVM_REC_REGS, 8 + 64},
             {0, 0},
             {0}};
    TEST_ASSERT(exchange(fd, &rec, sizeof(rec)) == EINVAL,
                "registers of the wrong size");
    close(fd); /* hangs up holding a pause: the pause goes */
    guest_runs();
}

static void fds_and_hangups(void)
{
    pid_t pid = hv_pid();
    int before = open_fds(pid);

    /* Once hv_pid()'s own connection is gone. */
    for (int i = 0; i < 10; i++, kt_sleep_ms(10))
        if (open_fds(pid) < before)
            before = open_fds(pid);

    /* Requests carrying fds: they are closed, not kept. */
    for (int i = 0; i < 20; i++) {
        struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_INFO, 0);
        int efd = eventfd(0, EFD_CLOEXEC), fd = conn();
        char cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {&h, sizeof(h)};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf,
                            .msg_controllen = sizeof(cbuf)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &efd, sizeof(int));
        TEST_ASSERT(sendmsg(fd, &mh, 0) == sizeof(h), "sendmsg with an fd");
        char buf[256];
        TEST_ASSERT(recv(fd, buf, sizeof(buf), 0) > 0, "reply");
        close(efd);
        close(fd);
    }
    /* Hang up right after a request, and mid-pause. */
    for (int i = 0; i < 20; i++) {
        struct xtk_hvctl_hdr h =
            hdr(i % 2 ? XTK_HVCTL_OP_PAUSE : XTK_HVCTL_OP_CONSOLE_READ,
                i % 2 ? 0 : 16);
        char buf[64] = {0};
        int fd = conn();
        memcpy(buf, &h, sizeof(h));
        TEST_ASSERT(send(fd, buf, sizeof(h) + h.len, 0) > 0, "send");
        close(fd);
    }
    /* A peer that sends and never reads is dropped, not waited for. */
    int greedy = conn();
    for (int i = 0; i < 4000; i++) {
        struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_GET_STATE, 0);
        if (send(greedy, &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            break;
    }
    close(greedy);
    /* Every connection is accepted once a later one is (the backlog is in
     * order), and handled once none is open any more. */
    int last = conn();
    struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_INFO, 0);
    TEST_ASSERT(exchange(last, &h, sizeof(h)) == 0, "a last request");
    close(last);
    KT_WAIT(open_fds(pid) == before, 5000, "no fd leaked: %d then %d", before,
            open_fds(pid));
    /* ...and the sticky pause the hang-ups left is lifted by an unpause. */
    TEST_ASSERT(xtk_domain_unpause(dom) == 0, "unpause");
    guest_runs();
}

static void too_many(void)
{
    int fds[HV_MAX_CONNS_TEST];
    int n = 0;

    /* The test's own handle holds one connection. */
    for (n = 0; n < HV_MAX_CONNS_TEST - 1; n++) {
        struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_INFO, 0);
        fds[n] = conn();
        TEST_ASSERT(exchange(fds[n], &h, sizeof(h)) == 0, "connection %d", n);
    }
    int extra = conn();
    struct xtk_hvctl_hdr h = hdr(XTK_HVCTL_OP_INFO, 0);
    struct pollfd p = {.fd = extra, .events = POLLIN};
    char buf[256];
    send(extra, &h, sizeof(h), MSG_NOSIGNAL);
    TEST_ASSERT(poll(&p, 1, 2000) == 1 && recv(extra, buf, sizeof(buf), 0) <= 0,
                "one too many is refused");
    close(extra);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    guest_runs();
}

int main(void)
{
    ctx = kt_setup();
    dom = kt_create(ctx, "target", 1, 16, "workload=counter",
                    XTK_DOMCFG_NO_STORE);
    kt_wait_up(dom, 1);
    st = kt_status(dom);
    TEST_RUN(framing);
    TEST_RUN(semantics);
    TEST_RUN(fds_and_hangups);
    TEST_RUN(too_many);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
    xtk_ctx_close(ctx);
    return 0;
}

/*
 * postcopy-floor.c - the floors of a post-copy fault's service time
 * (bench/postcopy-bench.py prints them beside xtk's and QEMU's):
 *
 *   uffd      a thread touches a page of a shared memfd mapping that is
 *             not there; another thread, blocked reading the userfaultfd,
 *             puts it in (UFFDIO_COPY): touch to touch-returned;
 *   request   a 32-byte request over loopback TCP and a page-sized reply
 *             (a PAGE_DATA record of one frame: 4,120 bytes) back, by a
 *             thread waiting on the other end: send to last byte read.
 *
 * usage: postcopy-floor [SAMPLES]    (prints p50, p99, min, in us)
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define REPLY (PAGE + 24)

static uint64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void show(const char *what, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp);
    printf("%-8s p50 %.1f us  p99 %.1f us  min %.1f us  (%zu samples)\n", what,
           v[n / 2] / 1e3, v[(n * 99 + 99) / 100 - 1] / 1e3, v[0] / 1e3, n);
}

/* ---- uffd -------------------------------------------------------------- */

struct uffd_arg {
    int fd;
    size_t n;
};

static void *uffd_main(void *arg)
{
    struct uffd_arg *a = arg;
    static uint8_t src[PAGE] __attribute__((aligned(PAGE)));

    memset(src, 0x5a, sizeof(src));
    for (size_t i = 0; i < a->n; i++) {
        struct uffd_msg m;
        struct uffdio_copy c;

        if (read(a->fd, &m, sizeof(m)) != sizeof(m))
            return NULL;
        c = (struct uffdio_copy){
            .dst = m.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
            .src = (uintptr_t)src,
            .len = PAGE,
        };
        if (ioctl(a->fd, UFFDIO_COPY, &c) < 0)
            return NULL;
    }
    return NULL;
}

static int floor_uffd(size_t n, uint64_t *v)
{
    struct uffdio_api api = {.api = UFFD_API,
                             .features = UFFD_FEATURE_MISSING_SHMEM};
    int mfd = memfd_create("floor", MFD_CLOEXEC), fd;
    struct uffd_arg a;
    pthread_t th;
    uint8_t *m;

    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

        if (dev >= 0) {
            fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
            close(dev);
        }
    }
    if (mfd < 0 || fd < 0 || ftruncate(mfd, (off_t)(n * PAGE)) < 0 ||
        ioctl(fd, UFFDIO_API, &api) < 0) {
        perror("userfaultfd");
        return -1;
    }
    m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (m == MAP_FAILED)
        return -1;
    {
        struct uffdio_register r = {.range = {(uintptr_t)m, n * PAGE},
                                    .mode = UFFDIO_REGISTER_MODE_MISSING};

        if (ioctl(fd, UFFDIO_REGISTER, &r) < 0) {
            perror("UFFDIO_REGISTER");
            return -1;
        }
    }
    a = (struct uffd_arg){fd, n};
    pthread_create(&th, NULL, uffd_main, &a);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_ns();

        if (*(volatile uint8_t *)(m + i * PAGE) != 0x5a)
            return -1;
        v[i] = now_ns() - t0;
    }
    pthread_join(th, NULL);
    munmap(m, n * PAGE);
    close(fd);
    close(mfd);
    return 0;
}

/* ---- request/reply over loopback TCP ------------------------------------ */

static int read_all(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = recv(fd, (char *)buf + got, len - got, 0);

        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void *server_main(void *arg)
{
    int fd = *(int *)arg;
    static uint8_t reply[REPLY];
    uint8_t req[32];

    memset(reply, 0x5a, sizeof(reply));
    while (read_all(fd, req, sizeof(req)) == 0)
        if (send(fd, reply, sizeof(reply), MSG_NOSIGNAL) != sizeof(reply))
            break;
    return NULL;
}

static int floor_request(size_t n, uint64_t *v)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM, 0), c, s, one = 1;
    static uint8_t buf[REPLY];
    uint8_t req[32] = {0};
    pthread_t th;

    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    s = accept(l, NULL, NULL);
    if (s < 0)
        return -1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_create(&th, NULL, server_main, &s);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_ns();

        if (send(c, req, sizeof(req), 0) != sizeof(req) ||
            read_all(c, buf, sizeof(buf)) < 0)
            return -1;
        v[i] = now_ns() - t0;
    }
    shutdown(c, SHUT_RDWR);
    pthread_join(th, NULL);
    close(c);
    close(s);
    close(l);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 4096;
    uint64_t *v = calloc(n ? n : 1, sizeof(*v));

    if (!v || !n)
        return 2;
    if (floor_uffd(n, v) < 0) {
        fprintf(stderr, "postcopy-floor: the userfaultfd floor failed\n");
        return 1;
    }
    show("uffd", v, n);
    if (floor_request(n, v) < 0) {
        fprintf(stderr, "postcopy-floor: the request floor failed: %s\n",
                strerror(errno));
        return 1;
    }
    show("request", v, n);
    free(v);
    return 0;
}

/*
 * xtk-udp - numbered datagrams for the testbed's held-output check
 * (tests/xen/dom0-init.sh, dev-held).  Built static: the same
 * binary runs in the devices guest and in dom0.
 *
 *   xtk-udp send ADDR PORT MS      sends "N" to ADDR:PORT every MS ms, N
 *                                  counting from 0 in this process's
 *                                  memory (a checkpoint keeps it, a
 *                                  failover goes on from it); a send that
 *                                  fails is tried again with the same N
 *   xtk-udp record ADDR PORT FILE  appends each datagram to ADDR:PORT to
 *                                  FILE, a line each
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int addr_of(const char *ip, const char *port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)atoi(port));
    return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    char buf[64];
    int fd;

    if (argc != 5 || addr_of(argv[2], argv[3], &sa) < 0) {
        fprintf(stderr, "usage: xtk-udp send|record ADDR PORT MS|FILE\n");
        return 2;
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    if (!strcmp(argv[1], "send")) {
        long ms = atol(argv[4]);
        unsigned long n = 0;

        for (;;) {
            int len = snprintf(buf, sizeof(buf), "%lu\n", n);

            if (sendto(fd, buf, (size_t)len, 0, (struct sockaddr *)&sa,
                       sizeof(sa)) == len)
                n++;
            nap(ms);
        }
    }
    if (!strcmp(argv[1], "record")) {
        int out = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);

        if (out < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            perror(argv[4]);
            return 1;
        }
        for (;;) {
            ssize_t r = recv(fd, buf, sizeof(buf) - 1, 0);

            if (r <= 0 || buf[r - 1] != '\n')
                continue;
            if (write(out, buf, (size_t)r) != r) {
                perror("write");
                return 1;
            }
        }
    }
    fprintf(stderr, "xtk-udp: send or record, not '%s'\n", argv[1]);
    return 2;
}

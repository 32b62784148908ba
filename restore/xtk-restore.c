/*
 * xtk-restore - restore a domain from a file or stdin, or receive one that
 * an xtk-save migrates here.  See xtk-restore(1).
 *
 * A thin front end of xtk/restore.h: it opens the source (a gzip stream is
 * recognised by its first bytes in a file or on a socket; -z says so for
 * a pipe), runs the restore, prints the new domain's id on stdout and the
 * report on stderr.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xtk/restore.h>

#include "cli.h"
#include "tls.h"

const char *cli_prog = "xtk-restore";

#define DEFAULT_TIMEOUT_MS 30000
/*
 * A migration's receive buffer (the kernel's autotuning grows it to
 * 6 MiB): small during pre-copy, so that what the source has handed to its
 * kernel is close to applied here, and the source can tell when the
 * stream has drained before it stops the guest (see save/save.c, drain);
 * widened for the stop-and-copy (RCVBUF_FINAL, the restore does it when
 * the state arrives), which wants the link's full speed: with 256 KiB the
 * source stalls whenever this end is busy writing a batch into memory.
 */
#define RCVBUF_DEFAULT (256 * 1024)
#define RCVBUF_FINAL (4 * 1024 * 1024)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] FILE|-|listen:[HOST:]PORT\n"
            "       %s [options] --stdio\n"
            "  -n, --name NAME         the new domain's name (default: the "
            "stream's)\n"
            "  -z, --decompress        the input is gzip (found by itself "
            "in files and sockets)\n"
            "  -t, --timeout MS        a socket's silence limit (30000)\n"
            "  -L, --lazy              FILE: run the domain at once; its "
            "memory comes from\n"
            "                          FILE as it is touched (the file "
            "must stay unchanged)\n"
            "  -J, --stats-json FILE   write the report as JSON\n"
            "  -q, --quiet             no report on stderr\n"
            "  -v, --verbose\n"
            "      --port-file FILE    listen: write the port listened on "
            "there\n"
            "      --peer-timeout MS   a backup: its source is lost when "
            "silent this long (5000)\n"
            "      --failover-timeout MS\n"
            "                          a backup: run the last checkpoint "
            "once its source is\n"
            "                          silent this long (risks two copies: "
            "see the manual)\n"
            "      --tls               listen: TLS, x509 certificates from "
            "%s\n"
            "      --tls-dir DIR       ... from DIR\n"
            "      --tls-psk FILE      listen: TLS with the pre-shared keys "
            "of FILE\n"
            "      --tls-authz NAME    accept only a source named NAME (once "
            "a name)\n"
            "      --tls-tries N       refuse at most N connections that fail "
            "TLS (10)\n"
            "      --stdio             a migration's far end over ssh: the "
            "stream on stdin,\n"
            "                          the reply on stdout (xtk-save "
            "ssh:HOST runs it)\n"
            "      --version\n"
            "See xtk-restore(1).\n",
            cli_prog, cli_prog, CLI_TLS_DIR);
}

/*
 * A backup: SIGUSR1 promotes it; SIGINT and SIGTERM stop the restore (a
 * second one: at once, the domain left to the backend's cleanup).  They
 * are read from a signalfd on the event loop, blocked in every thread
 * (a backend's libraries start their own): SIGUSR1 from the start, the
 * other two once the restore starts (before, they end the process as
 * usual, e.g. while it waits for its connection).
 */
static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    static int stopping;
    struct signalfd_siginfo si;
    int sig;

    (void)what;
    if (read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    sig = (int)si.ssi_signo;
    if (sig == SIGUSR1) {
        fprintf(stderr, "%s: promoted: running the last complete checkpoint\n",
                cli_prog);
        if (xtk_restore_promote(arg) < 0)
            fprintf(stderr, "%s: cannot promote: %s\n", cli_prog,
                    strerror(errno));
        return;
    }
    if (stopping++)
        _exit(1);
    fprintf(stderr, "%s: signal %d: stopping\n", cli_prog, (int)sig);
    xtk_restore_cancel(arg);
}

static void on_lost(struct xtk_restore *rs, int err, void *arg)
{
    (void)rs, (void)arg;
    (void)err; /* the library's warning said why */
    fprintf(stderr,
            "%s: kill -USR1 %ld runs the last complete checkpoint here "
            "(once the source's host is known dead); kill -TERM %ld "
            "stands down\n",
            cli_prog, (long)getpid(), (long)getpid());
}

static int gzip_magic(const unsigned char *m, ssize_t n)
{
    return n == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

/* Whether a socket's stream starts with gzip's magic: peeked, not read. */
static int socket_is_gzip(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    unsigned char m[2];

    if (poll(&p, 1, timeout_ms) <= 0)
        return 0; /* the stream will time out by itself */
    return gzip_magic(m, recv(fd, m, 2, MSG_PEEK | MSG_WAITALL));
}

/* The same for a regular file (an fd, read at offset 0 without moving). */
static int file_is_gzip(int fd)
{
    unsigned char m[2];
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return gzip_magic(m, pread(fd, m, 2, 0));
}

static int path_is_gzip(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0)
        return 0; /* opening the stream will say why */
    r = file_is_gzip(fd);
    close(fd);
    return r;
}

/*
 * --port-file: the port listened on, and a newline, put in place at once
 * (a temporary file renamed), so that a script that sees the file can
 * read the whole number and connect.
 */
static int write_port_file(const char *path, const char *where)
{
    char tmp[PATH_MAX];
    const char *colon = strrchr(where, ':');
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >=
        (int)sizeof(tmp)) {
        fprintf(stderr, "%s: %s: name too long\n", cli_prog, path);
        return -1;
    }
    f = fopen(tmp, "we");
    if (f && fprintf(f, "%s\n", colon ? colon + 1 : where) < 0) {
        fclose(f);
        f = NULL;
    }
    if (!f || fclose(f) != 0 || rename(tmp, path) < 0) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/*
 * The source's connection on lfd.  With TLS, a connection whose handshake
 * or peer fails the checks (an intruder, a wrong certificate or key) is
 * dropped with a line that says why, and the listener waits on, up to
 * tries refusals.  The socket the stream comes on (with TLS, the relay's
 * plain end; *session set), or -1 (and a message).
 */
static int accept_peer(int lfd, int rcvbuf, int rmax,
                       struct cli_tls_creds *creds, int tries, int quiet,
                       int timeout_ms, struct cli_link **session)
{
    for (int refused = 0;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char h[NI_MAXHOST] = "?", p[NI_MAXSERV] = "?", why[512];
        int fd = cli_tcp_accept(lfd, 0, rcvbuf, rmax);

        if (fd < 0 || !creds)
            return fd;
        if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
            getnameinfo((struct sockaddr *)&ss, len, h, sizeof(h), p, sizeof(p),
                        NI_NUMERICHOST | NI_NUMERICSERV);
        /* One that connects and says nothing holds the listener this long
         * at most. */
        *session = cli_tls_start(creds, fd, NULL,
                                 timeout_ms < 10000 ? timeout_ms : 10000, why,
                                 sizeof(why));
        if (*session) {
            if (!quiet)
                fprintf(stderr, "%s: %s:%s: %s\n", cli_prog, h, p,
                        cli_link_describe(*session));
            return cli_link_plain_fd(*session);
        }
        close(fd);
        refused++;
        fprintf(stderr, "%s: connection from %s:%s refused (%d of %d): %s\n",
                cli_prog, h, p, refused, tries, why);
        if (refused == tries) {
            fprintf(stderr, "%s: %d connections refused: no more tries\n",
                    cli_prog, refused);
            return -1;
        }
    }
}

/* A migration's or a backup's: the reply on fd, the source's deadlines. */
static void peer_options(struct xtk_restore_options *o, struct xtk_stream *in,
                         int fd, int timeout_ms, int failover, uint64_t peer_ms)
{
    if (in)
        xtk_stream_set_timeout(in, timeout_ms);
    o->flags |= XTK_RESTORE_REPLY | (failover ? XTK_RESTORE_FAILOVER : 0);
    o->peer_fd = fd;
    o->peer_timeout_ms = (uint32_t)peer_ms;
    o->lost = on_lost;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"decompress", no_argument, NULL, 'z'},
        {"timeout", required_argument, NULL, 't'},
        {"stats-json", required_argument, NULL, 'J'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"port-file", required_argument, NULL, 'p'},
        {"peer-timeout", required_argument, NULL, 'T'},
        {"failover-timeout", required_argument, NULL, 'F'},
        {"tls-tries", required_argument, NULL, 'A'},
        {"stdio", no_argument, NULL, 'S'},
        {"lazy", no_argument, NULL, 'L'},
        CLI_TLS_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli_tls_opts tls = {0};
    struct cli_tls_creds *creds = NULL;
    struct cli_link *session = NULL;
    uint64_t tries = 10;
    int stdio = 0;
    struct xtk_restore_options o = {0};
    const char *json = NULL, *src, *port_file = NULL;
    char *host = NULL, *port = NULL;
    int unzip = 0, quiet = 0, verbose = 0, rc = 1, c, fd = -1, sock = 0;
    uint64_t timeout = DEFAULT_TIMEOUT_MS;
    int rcvbuf = RCVBUF_DEFAULT;
    const char *e = getenv("XTK_RCVBUF");
    struct xtk_restore *rs = NULL;
    struct xtk_stream *in = NULL;
    struct xtk_ctx *ctx;
    struct event *sigev = NULL;
    sigset_t sigs;
    int sigfd = -1;
    uint64_t peer_ms = 0;
    int failover = 0;

    cli_init(argv);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    while ((c = getopt_long(argc, argv, "n:zt:J:qvhL", longopts, NULL)) != -1) {
        int r = cli_tls_option(c, optarg, &tls);

        if (r < 0)
            return 2;
        if (r)
            continue;
        switch (c) {
        case 'n':
            o.name = optarg;
            break;
        case 'z':
            unzip = 1;
            break;
        case 't':
            if (cli_parse_u64(optarg, 1, 86400000, 0, &timeout) < 0) {
                fprintf(stderr, "%s: bad timeout '%s'\n", cli_prog, optarg);
                return 2;
            }
            break;
        case 'J':
            json = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            cli_print_version();
            return 0;
        case 'p':
            port_file = optarg;
            break;
        case 'T':
        case 'F':
            if (cli_parse_u64(optarg, 1, 86400000, 0, &peer_ms) < 0) {
                fprintf(stderr, "%s: bad timeout '%s'\n", cli_prog, optarg);
                return 2;
            }
            failover |= c == 'F';
            break;
        case 'S':
            stdio = 1;
            break;
        case 'L':
            o.flags |= XTK_RESTORE_LAZY;
            break;
        case 'A':
            if (cli_parse_u64(optarg, 1, 1000000, 0, &tries) < 0) {
                fprintf(stderr, "%s: --tls-tries: bad number '%s'\n", cli_prog,
                        optarg);
                return 2;
            }
            break;
        default:
            return cli_usage_error(NULL);
        }
    }
    if (stdio && optind != argc)
        return cli_usage_error("--stdio takes no source: it is stdin");
    if (!stdio && optind + 1 != argc)
        return cli_usage_error(optind == argc ? "no FILE, - or listen:PORT"
                                              : "one source only");
    src = stdio ? "stdin" : argv[optind];
    if (stdio && (port_file || cli_tls_wanted(&tls)))
        return cli_usage_error("--stdio comes over ssh: no --port-file, no "
                               "TLS");
    if (cli_tls_options_ok(&tls) < 0)
        return 2;
    if (cli_tls_wanted(&tls) && strncmp(src, "listen:", 7))
        return cli_usage_error("TLS is for listen:[HOST:]PORT");
    if ((o.flags & XTK_RESTORE_LAZY) &&
        (stdio || !strcmp(src, "-") || !strncmp(src, "listen:", 7)))
        return cli_usage_error("--lazy reads a FILE as the guest needs it: "
                               "not a pipe or a connection");
    /* The address is checked before anything starts. */
    if (!strncmp(src, "listen:", 7) &&
        (cli_split_endpoint(src + 7, 1, &host, &port) < 0 ||
         !cli_port_ok(port, 1))) {
        free(host);
        free(port);
        return 2;
    }
    if (port_file && strncmp(src, "listen:", 7))
        return cli_usage_error("--port-file is for listen:[HOST:]PORT");
    if (peer_ms && !stdio && strncmp(src, "listen:", 7))
        return cli_usage_error("--peer-timeout and --failover-timeout are "
                               "for a backup: listen:[HOST:]PORT");
    /* The credentials are read before anything listens. */
    if (cli_tls_wanted(&tls) && !(creds = cli_tls_creds_load(&tls, 1))) {
        free(host);
        free(port);
        return 1;
    }
    if (e && *e)
        rcvbuf = atoi(e); /* for experiments; 0: the kernel's */
    signal(SIGPIPE, SIG_IGN);
    ctx = cli_ctx_open();
    if (!ctx)
        return 1;
    if (verbose)
        cli_verbose();
    if (port) {
        int rmax = rcvbuf ? (rcvbuf > RCVBUF_FINAL ? rcvbuf : RCVBUF_FINAL) : 0;
        char where[NI_MAXHOST + NI_MAXSERV + 4];
        /* No address named: this host only (the stream is in clear). */
        int lfd = cli_tcp_listen(host ? host : "127.0.0.1", port, rmax,
                                 creds != NULL, where, sizeof(where));

        if (lfd < 0)
            goto out;
        if (!quiet)
            fprintf(stderr, "%s: listening on %s\n", cli_prog, where);
        if (port_file && write_port_file(port_file, where) < 0) {
            close(lfd);
            goto out;
        }
        fd = accept_peer(lfd, rcvbuf, rmax, creds, (int)tries, quiet,
                         (int)timeout, &session);
        close(lfd);
        if (fd < 0)
            goto out;
        sock = 1;
        /* With TLS the stream comes through the session, in line (and the
         * reply goes back so: o.peer_io). */
        in = session ? xtk_stream_custom(ctx, cli_link_tcp_fd(session),
                                         XTK_STREAM_READ, &cli_tls_stream_io,
                                         session)
                     : xtk_stream_socket(ctx, fd, XTK_STREAM_READ);
        peer_options(&o, in, fd, (int)timeout, failover, peer_ms);
        o.final_rcvbuf = rcvbuf ? RCVBUF_FINAL : 0;
        o.peer_io = session ? cli_link_peer_io(session) : NULL;
    } else if (stdio) {
        char why[256];

        /* stdin and stdout are ssh's pipes (or one socket): the relay
         * gives the engine the socket it reads and replies on. */
        session = cli_link_stdio(0, 1, why, sizeof(why));
        if (!session) {
            fprintf(stderr, "%s: %s\n", cli_prog, why);
            goto out;
        }
        fd = cli_link_plain_fd(session);
        sock = 1;
        in = xtk_stream_socket(ctx, fd, XTK_STREAM_READ);
        peer_options(&o, in, fd, (int)timeout, failover, peer_ms);
    } else if (!strcmp(src, "-")) {
        in = xtk_stream_fd(ctx, 0, XTK_STREAM_READ);
        fd = -1;
    } else {
        in = xtk_stream_file(ctx, src, XTK_STREAM_READ);
    }
    if (!in) {
        cli_error("%s: %s", src, strerror(errno));
        goto out;
    }
    if (!unzip && session && !stdio) {
        unsigned char m[2];

        unzip = gzip_magic(m, cli_link_peek(session, m, 2, (int)timeout));
    } else if (!unzip)
        unzip = sock                ? socket_is_gzip(fd, (int)timeout)
                : !strcmp(src, "-") ? file_is_gzip(0)
                                    : path_is_gzip(src);
    if (unzip && (o.flags & XTK_RESTORE_LAZY)) {
        fprintf(stderr,
                "%s: %s is compressed: a lazy restore reads pages where "
                "they lie in the file (decompress it first)\n",
                cli_prog, src);
        goto out;
    }
    if (unzip && xtk_stream_push_zlib(in, -1) < 0) {
        fprintf(stderr, "%s: decompression: %s\n", cli_prog, strerror(errno));
        goto out;
    }
    rs = xtk_restore_new(ctx, in, &o);
    if (!rs) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        goto out;
    }
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd >= 0)
        sigev = event_new(xtk_ctx_event_base(ctx), sigfd, EV_READ | EV_PERSIST,
                          on_signal, rs);
    if (!sigev || event_add(sigev, NULL) < 0) {
        fprintf(stderr, "%s: cannot take signals: %s\n", cli_prog,
                strerror(errno ? errno : ENOMEM));
        goto out;
    }
    if (xtk_restore_run(rs) == 0) {
        /* With --stdio, stdout is the source's: the id goes to stderr. */
        if (stdio && !quiet)
            fprintf(stderr, "%s: domain %u\n", cli_prog, xtk_restore_domid(rs));
        else if (!stdio)
            printf("%u\n", xtk_restore_domid(rs));
        fflush(stdout);
        rc = 0;
    } else {
        cli_error("%s: restore failed: %s", src, strerror(errno));
    }
    /* A failed restore's report is shown with -v only: one line says why. */
    if (!quiet && (rc == 0 || verbose))
        cli_write_report(xtk_restore_stats(rs), XTK_STATS_TABLE, NULL);
    if (json &&
        cli_write_report(xtk_restore_stats(rs), XTK_STATS_JSON, json) < 0)
        rc = 1;
out:
    if (sigev)
        event_free(sigev);
    if (sigfd >= 0)
        close(sigfd);
    free(host);
    free(port);
    xtk_restore_free(rs);
    xtk_stream_close(in);
    if (session) /* it owns fd, its plain end */
        cli_link_end(session, 5000);
    else if (fd >= 0)
        close(fd);
    cli_tls_creds_free(creds);
    xtk_ctx_close(ctx);
    return rc;
}

/*
 * cli.h - what xtk's command-line programs share: number parsing, the
 * report written as a table or JSON, a logger, and TCP endpoints.  Built
 * into each program (not part of libxtk): cli.c, and cli-ctx.c (the
 * report and the logger, below) for the programs that open a context.
 */
#ifndef XTK_CLI_H
#define XTK_CLI_H

#include <stdint.h>

#include <xtk/xtk.h>

/* The program's name, for messages ("xtk-save"). */
extern const char *cli_prog;

/*
 * Call first in main(): getopt names the program by argv[0], which in a
 * build tree is libtool's .libs/lt-PROG; this puts cli_prog there.
 */
void cli_init(char **argv);

/* --version: "PROG VERSION" on stdout. */
void cli_print_version(void);

/*
 * A usage error: "PROG: MESSAGE" (fmt NULL: none, getopt has said what
 * was wrong) and "Try 'PROG --help' for more information." on stderr.
 * Returns 2, the status to exit with.
 */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Parses a decimal (or 0x hex) number in [min, max]; with suffixes (K, M,
 * G: powers of 1024) if sizes is set.  0, or -1 for a bad one.  The
 * parser every program shares (lib/parse-num.h), for cli.c's users.
 */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, int sizes,
                  uint64_t *out);

/* ---- cli-ctx.c ---- */

/* Writes a report to path ("-": stdout, NULL: stderr) as XTK_STATS_TABLE
 * or _JSON; says why on stderr if it cannot.  0 or -1. */
int cli_write_report(const struct xtk_stats *st, int format, const char *path);

/*
 * A context with a stderr logger (at WARN; progress drawn on a tty) that
 * counts the errors it prints.
 */
struct xtk_ctx *cli_ctx_open(void);

/* -v: that logger prints debug messages too. */
void cli_verbose(void);

/* Whether the library has logged an error (said why something failed). */
int cli_errors_logged(void);

/*
 * A failure's one line, "PROG: MESSAGE", unless the library has logged an
 * error already (which said why, better).
 */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cli.c ---- */

/*
 * Whether a domain name is one xtk-hv takes: [A-Za-z0-9_.-], 1 to
 * XTK_DOMAIN_NAME_MAX characters, not all digits (that reads as an id).
 */
int cli_domain_name_ok(const char *name);

/*
 * Splits "HOST:PORT" (the host may be "[v6]"), or "PORT" alone when
 * host_optional (host NULL then).  Returns malloc()ed strings, or -1 (and
 * a message) for a malformed one (then neither is set, or both are NULL).
 */
int cli_split_endpoint(const char *s, int host_optional, char **host,
                       char **port);

/*
 * A connected TCP socket (TCP_NODELAY), or -1 (and a message), within
 * wait_ms: a refused connection is retried until then (the listener may
 * be starting), and one that is not answered is given up then.  Unless
 * secured (TLS will run on it), warns on stderr when the peer is not on
 * this host (the stream is in clear).
 */
int cli_tcp_connect(const char *host, const char *port, int wait_ms,
                    int secured);

/*
 * Whether port is a TCP port number, 1 to 65535 (or 0, "any free one",
 * when zero_ok); says why not on stderr.
 */
int cli_port_ok(const char *port, int zero_ok);

/* Whether sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
struct sockaddr;
int cli_addr_is_loopback(const struct sockaddr *sa);

/*
 * Listens on host:port (host NULL: every address; port 0: one the kernel
 * picks); unless secured (TLS), warns on stderr when that is not a
 * loopback address (anyone who reaches it can send a domain) and puts the
 * address bound, "ADDR:PORT"
 * ("[ADDR]:PORT" for IPv6), in where.  rcvbuf_max (0: the kernel's): the
 * receive buffer the connection is set up for (TCP's window scale is fixed at
 * the handshake from the buffer then, so a buffer widened later, up to this,
 * can use all of it).  The listening socket, or -1 (and a message).
 */
int cli_tcp_listen(const char *host, const char *port, int rcvbuf_max,
                   int secured, char *where, size_t where_len);

/*
 * Accepts one connection on lfd (waiting at most timeout_ms, 0: forever);
 * lfd stays open.  rcvbuf: the connection's receive buffer (0: the
 * kernel's, autotuned; at most rcvbuf_max, as given to cli_tcp_listen).
 * The connected socket (TCP_NODELAY), or -1 (and a message).
 */
int cli_tcp_accept(int lfd, int timeout_ms, int rcvbuf, int rcvbuf_max);

/*
 * Reads a domain configuration for an xl save file (xtk_stream(3),
 * "framing"): libxl's JSON if its first non-blank byte is '{' (as
 * `xl save` stores it, or `xl list -l` prints it), else the text of an xl
 * .cfg file.  Sets *json; for JSON, *len includes the terminating NUL
 * (appended if the file has none; a NUL elsewhere is refused).  At most
 * XTK_XL_OPTIONAL_MAX - 4 bytes.  Returns a malloc()ed buffer, or NULL
 * (and a message).
 */
uint8_t *cli_read_config(const char *path, uint32_t *len, int *json);

#endif /* XTK_CLI_H */

/*
 * cli.h - what xtk's command-line programs share: number parsing, the
 * report written as a table or JSON, a logger, and TCP endpoints.  Built
 * into each program (not part of libxtk).
 */
#ifndef XTK_CLI_H
#define XTK_CLI_H

#include <stdint.h>

#include <xtk/xtk.h>

/* The program's name, for messages ("xtk-save"). */
extern const char *cli_prog;

/*
 * Parses a decimal (or 0x hex) number in [min, max]; with suffixes (K, M,
 * G: powers of 1024) if sizes is set.  0, or -1 for a bad one.
 */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, int sizes,
                  uint64_t *out);

/* Writes a report to path ("-": stdout, NULL: stderr) as XTK_STATS_TABLE
 * or _JSON; says why on stderr if it cannot.  0 or -1. */
int cli_write_report(const struct xtk_stats *st, int format, const char *path);

/* A context with a stderr logger (at WARN; progress drawn on a tty). */
struct xtk_ctx *cli_ctx_open(void);

/*
 * Splits "HOST:PORT" (the host may be "[v6]"), or "PORT" alone when
 * host_optional (host NULL then).  Returns malloc()ed strings, or -1 (and
 * a message) for a malformed one.
 */
int cli_split_endpoint(const char *s, int host_optional, char **host,
                       char **port);

/*
 * A connected TCP socket (TCP_NODELAY), or -1 (and a message).  A refused
 * connection is retried for up to wait_ms (the listener may be starting).
 */
int cli_tcp_connect(const char *host, const char *port, int wait_ms);

/*
 * Listens on host:port (host NULL: every address), accepts one
 * connection (waiting at most timeout_ms, 0: forever) and closes the
 * listener.  rcvbuf: the receive buffer's size (0: the kernel's,
 * autotuned).  rcvbuf_max (0: rcvbuf): the size the connection is set up
 * for (TCP's window scale is fixed at the handshake from the buffer then,
 * so a buffer widened later, up to this, can use all of it).  The
 * connected socket (TCP_NODELAY), or -1 (and a message).
 */
int cli_tcp_accept_one(const char *host, const char *port, int timeout_ms,
                       int rcvbuf, int rcvbuf_max);

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

/*
 * xs-client.h - the one minimal xenstore wire client of xtk, over a Unix
 * socket: for xtk-hv (which registers its domain and introduces its store
 * ring to xsd-lite, passing fds), the kvm and xen backends
 * (control/shutdown) and the tests.  It has one request out at a time
 * (waited for, or its reply taken later: xtk__xs_send, xtk__xs_reply) and
 * never sets a watch, so no event can arrive between a request and its
 * reply.
 */
#ifndef XTK_XS_CLIENT_H
#define XTK_XS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* Message types used here (xs_wire.h). */
#define XTK_XS_DIRECTORY 1
#define XTK_XS_READ 2
#define XTK_XS_INTRODUCE 8
#define XTK_XS_RELEASE 9
#define XTK_XS_WRITE 11
#define XTK_XS_MKDIR 12
#define XTK_XS_RM 13
#define XTK_XS_SET_PERMS 14
#define XTK_XS_ERROR 16
#define XTK_XS_PAYLOAD_MAX 4096u

/*
 * The store's socket: path if not NULL, else $XENSTORED_PATH, else
 * $XENSTORED_RUNDIR/socket, else /run/xenstored/socket (as libxenstore).
 */
const char *xtk__xs_path(const char *path);

/* Connects; returns the fd (close it to disconnect) or -1 with errno. */
int xtk__xs_connect(const char *path);

/*
 * One request: payload is `len` bytes; fds (nfds of them) go with it by
 * SCM_RIGHTS.  On success returns the reply's length, its payload (up to
 * max bytes, NUL-terminated: reply needs max + 1 bytes) in reply.  An error
 * reply sets errno from its name (ENOENT...) and returns -1; so do I/O
 * errors (EPIPE when the store went away) and a reply over 4096 bytes
 * (EBADMSG).  timeout_ms bounds the wait for the reply.
 */
int xtk__xs_request(int fd, uint32_t type, const void *payload, size_t len,
                    const int *fds, unsigned int nfds, char *reply, size_t max,
                    int timeout_ms);

/*
 * The same in two halves, for a caller that must not wait: the request
 * sent (0, or -1 with errno), then its reply taken (as xtk__xs_request's;
 * type: the request's).  Nothing else may be sent on fd in between.
 */
int xtk__xs_send(int fd, uint32_t type, const void *payload, size_t len,
                 const int *fds, unsigned int nfds);
int xtk__xs_reply(int fd, uint32_t type, char *reply, size_t max,
                  int timeout_ms);

/*
 * A reply still owed (*owed) to a request xtk__xs_send sent: with wait 0
 * taken only if it is in already, else waited for up to timeout_ms (what
 * else is asked on fd must come after it); *owed is cleared once it is
 * taken.  0 (none owed, not in yet, or a success), or -1 with errno as
 * xtk__xs_reply's.
 */
int xtk__xs_reply_owed(int fd, int *owed, uint32_t type, int wait,
                       int timeout_ms);

/*
 * For a suspend request by the store: a descriptor (epoll) readable while
 * the guest's notification (notify_fd) or the store's connection is, so
 * that the write's answer is taken when it comes, not waited for.  -1
 * with errno.
 */
int xtk__xs_pair_fd(int notify_fd, int store_fd);

/* XS_WRITE of path = value; xtk__xs_write_send only sends it (its reply
 * is xtk__xs_reply's, of XTK_XS_WRITE). */
int xtk__xs_write(int fd, const char *path, const char *value);
int xtk__xs_write_send(int fd, const char *path, const char *value);

/*
 * xsd-lite's KVM introduction (xsd-lite(8)): XS_INTRODUCE of domid with
 * its store ring at guest frame ring_gfn and its port, the guest RAM memfd
 * and the two eventfds (notify: xsd-lite writes it to kick the guest; kick:
 * the guest's notifications) attached by SCM_RIGHTS.  Use one connection
 * per introducer and keep it open for the domain's life: when it closes,
 * xsd-lite takes the domain as dead.  The descriptors are copied into
 * xsd-lite; the caller keeps its own.  Returns 0, or -1 with errno set
 * (EBADF for a negative descriptor, else the store's answer).
 */
int xtk__xs_introduce_kvm(int fd, uint32_t domid, uint64_t ring_gfn,
                          uint32_t port, int memfd, int notify_fd, int kick_fd,
                          int timeout_ms);

#endif /* XTK_XS_CLIENT_H */

/*
 * xsd-introduce.h - the client side of xsd-lite's KVM introduction, for
 * xtk-hv (and tests): noinst library libxsd-client.la.
 *
 * The contract (see xsd-lite(8)): on the privileged socket, INTRODUCE
 * "<domid>\0<ring-gfn>\0<port>\0" with three descriptors attached to the
 * sendmsg() carrying the header's first byte: a memfd holding the guest's
 * RAM (the ring is the page at byte ring-gfn * 4096), an eventfd xsd-lite
 * writes to notify the guest (wire it to an irqfd), and an eventfd
 * xsd-lite reads for the guest's notifications (an ioeventfd).  xsd-lite
 * makes both eventfds' file descriptions non-blocking.  When the
 * connection that introduced a domain closes, xsd-lite treats the domain
 * as dead: it drops the ring, removes /local/domain/<domid> and fires
 * @releaseDomain.  So keep that connection open for the domain's life.
 *
 * Conventions: -1 and errno on failure; errno is the daemon's answer
 * (EEXIST, EINVAL, EACCES, ENOSYS, ...) or the I/O error.
 */
#ifndef XSD_INTRODUCE_H
#define XSD_INTRODUCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Connects to xsd-lite's privileged socket: path, else $XENSTORED_PATH,
 * else /run/xenstored/socket.  Returns the socket (close-on-exec), or -1.
 */
int xsd_client_connect(const char *path);

/*
 * Introduces KVM domain domid on fd (from xsd_client_connect(); use one
 * connection per introducer and no watches on it) and waits for the
 * answer.  The descriptors are copied into xsd-lite; the caller keeps its
 * own.  Returns 0, or -1 with errno set.
 */
int xsd_introduce_kvm(int fd, uint32_t domid, uint64_t ring_gfn, uint32_t port,
                      int memfd, int notify_fd, int kick_fd);

/* Releases domid (XS_RELEASE).  Returns 0, or -1 with errno set. */
int xsd_release_domain(int fd, uint32_t domid);

#ifdef __cplusplus
}
#endif

#endif /* XSD_INTRODUCE_H */

/*
 * store.c - the domain in the store (xsd-lite), as libxl registers a Xen
 * domain: XS_INTRODUCE with the guest RAM memfd and the store port's two
 * eventfds, so that the guest's store traffic goes straight between its
 * ring and xsd-lite, then its nodes under /local/domain/<domid> (libxl
 * writes them first, but a Xen domain exists for xenstored before it is
 * introduced; a KVM domain exists for xsd-lite once introduced).
 *
 * The connection stays open for the domain's life: when xtk-hv exits (or
 * dies), xsd-lite sees it close, forgets the ring, removes
 * /local/domain/<domid> and fires @releaseDomain.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hv.h"
#include "xs-client.h"

#define STORE_TIMEOUT_MS 5000

static int xs_put(struct hv *hv, const char *base, const char *rel,
                  const char *value)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", base, rel);
    if (xtk__xs_write(hv->store_fd, path, value) < 0) {
        hv_log("store: write %s: %m", path);
        return -1;
    }
    return 0;
}

/* perms is "n0\0r<domid>\0"-style: a list of NUL-terminated entries. */
static int xs_perms(struct hv *hv, const char *path, const char *perms,
                    size_t plen)
{
    char buf[512];
    size_t n = strlen(path) + 1;

    memcpy(buf, path, n);
    memcpy(buf + n, perms, plen);
    if (xtk__xs_request(hv->store_fd, XTK_XS_SET_PERMS, buf, n + plen, NULL, 0,
                        NULL, 0, STORE_TIMEOUT_MS) < 0) {
        hv_log("store: set perms on %s: %m", path);
        return -1;
    }
    return 0;
}

/* An empty node the guest owns. */
static int guest_node(struct hv *hv, const char *base, const char *rel,
                      const char *perms, size_t plen)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", base, rel);
    if (xs_put(hv, base, rel, "") < 0)
        return -1;
    return xs_perms(hv, path, perms, plen);
}

int hv_store_register(struct hv *hv)
{
    const char *sock = xtk__xs_path(hv->opt.store_path);
    char base[64], v[64], perms[64], guest_rw[64];
    size_t plen, glen;

    hv->store_fd = xtk__xs_connect(sock);
    if (hv->store_fd < 0) {
        hv_log("store: %s: %m", sock);
        return -1;
    }
    snprintf(base, sizeof(base), "/local/domain/%u", hv->domid);
    /* The domain reads its subtree; dom0 owns it.  The nodes the guest
     * writes are its own. */
    plen = (size_t)snprintf(perms, sizeof(perms), "n0%cr%u", 0, hv->domid) + 1;
    glen = (size_t)snprintf(guest_rw, sizeof(guest_rw), "n%u", hv->domid) + 1;

    /* Introduced first: the store takes permissions naming a domain only
     * once it exists (as xenstored asks Xen), and on KVM it exists for the
     * store once introduced.  The guest does not run yet. */
    if (xtk__xs_introduce_kvm(
            hv->store_fd, hv->domid, XTK_GUEST_STORE_GPA >> 12, XTK_PORT_STORE,
            hv->mem_fd, hv->ports[XTK_PORT_STORE].to_guest,
            hv->ports[XTK_PORT_STORE].from_guest, STORE_TIMEOUT_MS) < 0) {
        hv_log("store: introduce domain %u: %m", hv->domid);
        goto err;
    }
    if (xs_put(hv, base, "name", hv->name) < 0 ||
        xs_perms(hv, base, perms, plen) < 0)
        goto err;
    snprintf(v, sizeof(v), "%u", hv->domid);
    if (xs_put(hv, base, "domid", v) < 0)
        goto err;
    snprintf(v, sizeof(v), "%llu", (unsigned long long)(hv->mem_bytes >> 10));
    if (xs_put(hv, base, "memory/target", v) < 0 ||
        xs_put(hv, base, "memory/static-max", v) < 0)
        goto err;
    snprintf(v, sizeof(v), "%u", hv->nr_vcpus);
    if (xs_put(hv, base, "vcpus", v) < 0)
        goto err;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "cpu/%u/availability", i);
        if (xs_put(hv, base, rel, "online") < 0)
            goto err;
    }
    snprintf(v, sizeof(v), "%llu",
             (unsigned long long)(XTK_GUEST_CONS_GPA >> 12));
    if (xs_put(hv, base, "console/ring-ref", v) < 0)
        goto err;
    snprintf(v, sizeof(v), "%u", XTK_PORT_CONSOLE);
    if (xs_put(hv, base, "console/port", v) < 0 ||
        xs_put(hv, base, "console/type", "xtk-hv") < 0)
        goto err;
    snprintf(v, sizeof(v), "%llu",
             (unsigned long long)(XTK_GUEST_STORE_GPA >> 12));
    if (xs_put(hv, base, "store/ring-ref", v) < 0)
        goto err;
    snprintf(v, sizeof(v), "%u", XTK_PORT_STORE);
    if (xs_put(hv, base, "store/port", v) < 0)
        goto err;
    /* Written by the guest: the suspend request's acknowledgement, and
     * its suspend channel. */
    if (guest_node(hv, base, "control/shutdown", guest_rw, glen) < 0 ||
        guest_node(hv, base, "device/suspend/event-channel", guest_rw, glen) <
            0 ||
        guest_node(hv, base, "data", guest_rw, glen) < 0)
        goto err;

    hv_log("store: domain %u introduced at %s", hv->domid, sock);
    return 0;
err:
    close(hv->store_fd);
    hv->store_fd = -1;
    return -1;
}

/* The store connection is readable: nothing is expected on it, so it
 * closed (or misbehaves): the domain is no longer in the store. */
void hv_store_handle(struct hv *hv)
{
    char buf[256];
    ssize_t n = read(hv->store_fd, buf, sizeof(buf));

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    hv_log("store: the connection %s: the domain left the store",
           n == 0 ? "closed" : "sent something unexpected");
    close(hv->store_fd);
    hv->store_fd = -1;
}

void hv_store_set_name(struct hv *hv)
{
    char base[64];

    if (hv->store_fd < 0)
        return;
    snprintf(base, sizeof(base), "/local/domain/%u", hv->domid);
    xs_put(hv, base, "name", hv->name);
}

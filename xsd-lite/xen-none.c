/*
 * xen-none.c - built where the Xen libraries are not: an INTRODUCE
 * without KVM descriptors cannot be served.
 */
#include "config.h"

#include "xsd.h"

int xsd_xen_introduce(struct xsd *x, uint32_t domid, uint32_t port,
                      struct xsd_ring **ring)
{
    return ENOSYS;
}

void xsd_xen_fini(struct xsd *x)
{
}

int xsd_xen_dom0_ring(struct xsd *x)
{
    return ENOENT;
}

bool xsd_xen_domain_exists(struct xsd *x, uint32_t domid)
{
    return false;
}

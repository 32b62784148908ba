/*
 * backend-pick.c - the choice of backend (XTK_BACKEND), in an object of
 * its own: it names every backend, and a program linked with libxtk's
 * objects statically that never chooses one (xtk-hv, the KVM domain's
 * process) then leaves the others out, the Xen backend and the twenty
 * libraries of Xen's toolstack it needs with it (their loading cost ~1.3
 * ms of every xtk-hv start, on a lazy restore's critical path).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define XTK_LOG_CONTEXT "backend"

/* A backend a test program registered (lib/fake/: xtk__fake_register()):
 * in the tests only, which link libxtk's objects statically. */
const struct xtk__backend_ops *xtk__test_backend;

const struct xtk__backend_ops *xtk__backend_pick(struct xtk_ctx *ctx)
{
    const char *want = getenv("XTK_BACKEND");

    if (!want || !*want || !strcmp(want, xtk__kvm_backend.name))
        return &xtk__kvm_backend;
#ifdef HAVE_XEN_BACKEND
    if (!strcmp(want, xtk__xen_backend.name))
        return &xtk__xen_backend;
#endif
    if (xtk__test_backend && !strcmp(want, xtk__test_backend->name))
        return xtk__test_backend;
    XTK_ERROR(ctx, "XTK_BACKEND=%s: no such backend in this build", want);
    errno = ENOTSUP;
    return NULL;
}

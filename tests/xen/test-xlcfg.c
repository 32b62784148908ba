/*
 * xl's text config read into libxl's (lib/xen/xlcfg.c), without Xen: the
 * keys xtk's domain builder reads (disks and vifs among them), other
 * devices and unknown keys refused by name, and text that is not a config
 * refused whole.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libxl.h>
#include <libxl_utils.h>

#include <xtk/ctx.h>

#include "xen/xlcfg.h"

static int failed;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                        \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
            failed++;                                                          \
        }                                                                      \
    } while (0)

/* Reads text; 0 or the errno of a refusal. */
static int read_cfg(struct xtk_ctx *ctx, const char *text,
                    libxl_domain_config *c)
{
    libxl_domain_config_init(c);
    if (xtk__xen_config_from_text(ctx, text, strlen(text) + 1, c) < 0)
        return errno ? errno : -1;
    return 0;
}

int main(void)
{
    struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, 0);
    libxl_domain_config c;
    int r;

    if (!ctx) {
        printf("FAIL: no context\n");
        return 1;
    }
    /* The testbed's built-in guest, with what xl also allows around it:
     * comments, ';' and '#' inside strings, a list over lines, an empty
     * device list. */
    r = read_cfg(ctx,
                 "# the built-in guest\n"
                 "name = \"g3\"\n"
                 "type = \"pvh\"\n"
                 "kernel = \"/usr/lib/xtk/xtk-guest.elf\"\n"
                 "extra = \"workload=counter; x=#1\" # a comment\n"
                 "memory = 32; maxmem = 64\n"
                 "vcpus = 2\n"
                 "maxvcpus = 4\n"
                 "uuid = \"a0b1c2d3-0000-4000-8000-00000000abcd\"\n"
                 "on_poweroff = \"destroy\"\n"
                 "on_crash = 'preserve'\n"
                 "cpuid = \"host,rdtscp=0\"\n"
                 "disk = [\n  ]\n"
                 "max_grant_frames = 64\n",
                 &c);
    CHECK(r == 0, "the built-in guest's config refused: %d", r);
    if (!r) {
        const libxl_domain_build_info *b = &c.b_info;
        char u[LIBXL_UUID_FMTLEN + 1];

        CHECK(!strcmp(c.c_info.name, "g3"), "name %s", c.c_info.name);
        CHECK(c.c_info.type == LIBXL_DOMAIN_TYPE_PVH, "type %d", c.c_info.type);
        CHECK(b->target_memkb == 32 * 1024 && b->max_memkb == 64 * 1024,
              "memory %llu of %llu kB", (unsigned long long)b->target_memkb,
              (unsigned long long)b->max_memkb);
        CHECK(b->max_vcpus == 4, "max_vcpus %d", b->max_vcpus);
        CHECK(libxl_bitmap_count_set(&b->avail_vcpus) == 2 &&
                  libxl_bitmap_test(&b->avail_vcpus, 1) &&
                  !libxl_bitmap_test(&b->avail_vcpus, 2),
              "avail_vcpus");
        CHECK(b->kernel && !strcmp(b->kernel, "/usr/lib/xtk/xtk-guest.elf"),
              "kernel %s", b->kernel ? b->kernel : "(none)");
        CHECK(b->cmdline && !strcmp(b->cmdline, "workload=counter; x=#1"),
              "cmdline %s", b->cmdline ? b->cmdline : "(none)");
        CHECK(c.on_poweroff == LIBXL_ACTION_ON_SHUTDOWN_DESTROY &&
                  c.on_reboot == LIBXL_ACTION_ON_SHUTDOWN_RESTART &&
                  c.on_crash == LIBXL_ACTION_ON_SHUTDOWN_PRESERVE,
              "actions %d %d %d", c.on_poweroff, c.on_reboot, c.on_crash);
        CHECK(b->cpuid != NULL, "no cpuid policy");
        CHECK(b->max_grant_frames == 64, "max_grant_frames %u",
              b->max_grant_frames);
        snprintf(u, sizeof(u), LIBXL_UUID_FMT, LIBXL_UUID_BYTES(c.c_info.uuid));
        CHECK(!strcmp(u, "a0b1c2d3-0000-4000-8000-00000000abcd"), "uuid %s", u);
    }
    libxl_domain_config_dispose(&c);

    /* xl's defaults: PV, 128 MiB, 1 vCPU; root and extra make cmdline. */
    r = read_cfg(ctx, "name='p'\nroot='/dev/xvda1'\nextra='quiet'\n", &c);
    CHECK(r == 0 && c.c_info.type == LIBXL_DOMAIN_TYPE_PV &&
              c.b_info.target_memkb == 128 * 1024 && c.b_info.max_vcpus == 1 &&
              c.b_info.u.pv.slack_memkb == 0 && c.b_info.cmdline &&
              !strcmp(c.b_info.cmdline, "root=/dev/xvda1 quiet"),
          "defaults: r %d type %d cmdline %s", r, c.c_info.type,
          c.b_info.cmdline ? c.b_info.cmdline : "(none)");
    libxl_domain_config_dispose(&c);

    /* Disks and network interfaces, in xl's syntax. */
    r = read_cfg(ctx,
                 "name='d'\ntype='pvh'\n"
                 "disk = [ '/run/d.img,raw,xvda,rw',\n"
                 "         'format=raw, vdev=xvdb, access=ro, "
                 "target=/run/e.img' ]\n"
                 "vif = [ 'bridge=xenbr0,mac=00:16:3e:0a:0b:0c,ip=10.0.0.2',"
                 " 'vifname=v1, type=vif, rate=10Mb/s, mtu=1400, "
                 "script=vif-route, backend=0' ]\n",
                 &c);
    CHECK(r == 0 && c.num_disks == 2 && c.num_nics == 2,
          "devices: r %d, %d disks, %d nics", r, c.num_disks, c.num_nics);
    if (!r && c.num_disks == 2 && c.num_nics == 2) {
        const libxl_device_disk *d0 = &c.disks[0], *d1 = &c.disks[1];
        const libxl_device_nic *n0 = &c.nics[0], *n1 = &c.nics[1];

        CHECK(d0->pdev_path && !strcmp(d0->pdev_path, "/run/d.img") &&
                  d0->vdev && !strcmp(d0->vdev, "xvda") &&
                  d0->format == LIBXL_DISK_FORMAT_RAW && d0->readwrite,
              "disk 0: %s %s %d rw %d", d0->pdev_path ? d0->pdev_path : "-",
              d0->vdev ? d0->vdev : "-", d0->format, d0->readwrite);
        CHECK(d1->pdev_path && !strcmp(d1->pdev_path, "/run/e.img") &&
                  d1->vdev && !strcmp(d1->vdev, "xvdb") && !d1->readwrite,
              "disk 1: %s %s rw %d", d1->pdev_path ? d1->pdev_path : "-",
              d1->vdev ? d1->vdev : "-", d1->readwrite);
        CHECK(n0->devid == 0 && n0->bridge && !strcmp(n0->bridge, "xenbr0") &&
                  n0->mac[0] == 0x00 && n0->mac[2] == 0x3e &&
                  n0->mac[5] == 0x0c && n0->ip && !strcmp(n0->ip, "10.0.0.2"),
              "nic 0: devid %d bridge %s mac[5] %#x", n0->devid,
              n0->bridge ? n0->bridge : "-", n0->mac[5]);
        CHECK(n1->devid == 1 && n1->ifname && !strcmp(n1->ifname, "v1") &&
                  n1->nictype == LIBXL_NIC_TYPE_VIF && n1->mtu == 1400 &&
                  n1->rate_bytes_per_interval > 0 && n1->script &&
                  !strcmp(n1->script, "vif-route"),
              "nic 1: devid %d ifname %s type %d mtu %d rate %llu", n1->devid,
              n1->ifname ? n1->ifname : "-", n1->nictype, n1->mtu,
              (unsigned long long)n1->rate_bytes_per_interval);
    }
    libxl_domain_config_dispose(&c);

    /* Refused whole, each with its reason. */
    static const struct {
        const char *text;
        int err;
    } bad[] = {
        {"name='g'\nvif = [ 'bridge=xenbr0,accel=x' ]\n", ENOTSUP},
        {"name='g'\nvif = [ 'backend=netdom' ]\n", ENOTSUP},
        {"name='g'\nvif = [ 'mac=00:16:3e:01:02' ]\n", EINVAL},
        {"name='g'\nvif = [ 'mac=00:16:3e:01:02:03:04' ]\n", EINVAL},
        {"name='g'\nvif = [ 'mtu=9' ]\n", EINVAL},
        {"name='g'\nvif = [ 'bridge' ]\n", EINVAL},
        {"name='g'\nvif = [ 'type=tap' ]\n", EINVAL},
        {"name='g'\ndisk = [ 'vdev=xvda,format=nosuch,target=/x' ]\n", EINVAL},
        {"name='g'\npci = [ '00:02.0' ]\n", ENOTSUP},
        {"name='g'\nvfb = [ 'vnc=1' ]\n", ENOTSUP},
        {"name='g'\ntsc_mode = 'native'\n", ENOTSUP},
        {"name='g'\ncpus = '0-1'\n", ENOTSUP},
        {"name='g'\nmemory = 'lots'\n", EINVAL},
        {"name='g'\nvcpus = 4\nmaxvcpus = 2\n", EINVAL},
        {"name='g'\ntype = 'kvm'\n", EINVAL},
        {"name='g'\non_crash = 'explode'\n", EINVAL},
        {"name='g'\ncpuid = 'rdtscp=0'\n", EINVAL},
        {"name='g'\ncpuid = 'host,nosuchflag=0'\n", EINVAL},
        {"memory = 32\n", EINVAL},
        {"name = 'g\n", EINVAL},
        {"name = 'g' ]\n", EINVAL},
        {"{ \"c_info\": {} }", EINVAL},
        {"name = 'g\001'\n", EINVAL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = read_cfg(ctx, bad[i].text, &c);
        CHECK(r == bad[i].err, "case %zu (%s): %d, not %d", i, bad[i].text, r,
              bad[i].err);
        libxl_domain_config_dispose(&c);
    }
    xtk_ctx_close(ctx);
    printf("%s\n", failed ? "FAIL" : "PASS: xl text configs");
    return failed ? 1 : 0;
}

#!/usr/bin/env bash
# xsd-lite as the store of a real Xen: Debian's Xen 4.17 and a Debian dom0
# booted under QEMU (TCG), the way the project's Xen testbed notes
# (shared/reference/xen-testbed.md) describe.  In dom0
# (tests/xen/dom0-init.sh) xsd-lite from this build replaces xenstored;
# xen-init-dom0, xenconsoled and xl then run against it, a PV guest
# (Debian's cloud kernel, tests/xen/domu-init.sh) talks to it over its
# ring, is saved, restored and shut down, and Xen's test-xenstore runs.
# libxtk's xen backend (tests/xen/xen-probe.c) drives that PV guest and a
# PVH one: lookup, pause, the dirty log, and suspends by the store with the
# "suspended" notification on an event channel, each resumed in place.
# Each check prints XTK-OK or XTK-FAIL on dom0's console; this script
# passes only if every check it knows said OK.
#
# Downloads (apt-get download, once) and the initramfs that does not
# depend on the build are kept in $XTK_XEN_CACHE (default
# $top_builddir/tests/xen/cache); a run only adds this build's xsd-lite
# and dom0's /init on top.  One boot; QEMU gets $XTK_XEN_TIMEOUT seconds
# (2400: a run takes 5-12 minutes of TCG, by the machine, and up to 25
# on a slow or busy one), and a boot that
# dies before dom0's /init runs is tried once more.
# QEMU's machine: $XTK_XEN_SMP CPUs (1: one host core, which leaves the
# other to the tests running beside it, and is no slower under TCG),
# $XTK_XEN_TCG (multi) TCG threads, "-cpu max,-smap,-smep,-pku" plus
# $XTK_XEN_CPU_EXTRA; the kernels are Debian's current 6.1 ABI, or
# $XTK_XEN_KERNEL_ABI (e.g. 6.1.0-57).  Xen's command line has
# spec-ctrl=eager-fpu (below, at the boot) and then $XTK_XEN_ARGS.
set -uo pipefail
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir/build}
here=$top_srcdir/tests/xen
xsd=${XSD_LITE:-$top_builddir/xsd-lite/xsd-lite}
probe=${XEN_PROBE:-$top_builddir/tests/xen/xen-probe}
guard=${XTK_XEN_GUARD:-$top_builddir/xtk-xen-guard}
# xtk-save itself, the binary behind libtool's wrapper, with its libxtk
xtksave=${XTK_SAVE:-$top_builddir/.libs/xtk-save}
xtkrestore=${XTK_RESTORE:-$top_builddir/.libs/xtk-restore}
xtkcli=${XTK_CLI:-$top_builddir/xtk} # the xtk command (destroy, output)
# the built-in guest, which Xen boots as a PVH kernel
guestelf=${XTK_GUEST:-$top_builddir/guests/xtk-guest.elf}
libdir=${XTK_LIBDIR:-$top_builddir/.libs}
xenbin=${XEN_BINDIR:-/usr/lib/xen-4.17/bin}
store=${XTK_XEN_STORE:-xsd-lite} # dom0's store daemon: see below
cache=${XTK_XEN_CACHE:-$top_builddir/tests/xen/cache}
timeout=${XTK_XEN_TIMEOUT:-2400}
tcg=${XTK_XEN_TCG:-multi}
start=$(date +%s)

die() {
  echo "FAIL: $*" >&2
  exit 1
}
log() { echo "testbed: $*" >&2; }

# Everything comes from Debian packages that scripts/deps.txt lists; a
# missing one is a failure, not a skip (CI runs this on every machine).
for p in qemu-system-x86_64 cpio apt-get apt-cache dpkg-deb ldd gzip; do
  command -v "$p" >/dev/null || die "$p is missing (scripts/setup.sh installs it)"
done
for f in /bin/busybox "$xenbin/xl" "$xenbin/xen-init-dom0" \
  "$xenbin/xenconsoled" "$xenbin/test-xenstore" "$xenbin/libxl-save-helper" \
  "$xenbin/xenstore-control" /usr/bin/xenstore-read "$xsd" "$probe" "$guard" \
  "$xtksave" "$xtkrestore" "$xtkcli" "$xenbin/verify-stream-v2" "$guestelf"; do
  [ -x "$f" ] || [ -r "$f" -a "$f" = "$guestelf" ] || die "$f is missing (scripts/setup.sh: busybox-static, xen-utils-4.17, xenstore-utils; or make check builds xsd-lite and xen-probe)"
done
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not static (Debian's busybox-static)"

mkdir -p "$cache/debs" || die "cannot create $cache"
run=$(mktemp -d /tmp/xtk-xen.XXXXXX) || die "mktemp"
qpid=
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null
  rm -rf "$run"
}
trap cleanup EXIT

# ---- the packages: Xen's hypervisor and two kernels, downloaded once ----
apt_ready() {
  apt-cache show xen-hypervisor-4.17-amd64 >/dev/null 2>&1 && return 0
  log "no package lists: apt-get update"
  apt-get update -q >&2 || true
  apt-cache show xen-hypervisor-4.17-amd64 >/dev/null 2>&1
}

# fetch PACKAGE[=VERSION]: its .deb in $cache/debs (downloaded if missing).
fetch() {
  local name=${1%%=*} have
  have=$(ls "$cache/debs/${name}_"*.deb 2>/dev/null | head -n 1)
  if [ -z "$have" ]; then
    (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "$1" >&2) ||
      return 1
    have=$(ls "$cache/debs/${name}_"*.deb 2>/dev/null | head -n 1)
  fi
  [ -n "$have" ] && echo "$have"
}

# The kernel ABI Debian's linux-image-amd64 points at now (6.1.0-N), else
# the newest 6.1 that apt-cache offers.
kernel_abi() {
  local abi
  if [ -n "${XTK_XEN_KERNEL_ABI:-}" ]; then
    echo "$XTK_XEN_KERNEL_ABI"
    return
  fi
  abi=$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/.*Depends: linux-image-\([0-9.]*-[0-9]*\)-amd64$/\1/p' | head -n 1)
  [ -n "$abi" ] && apt-cache show "linux-image-$abi-amd64-unsigned" >/dev/null 2>&1 &&
    { echo "$abi"; return; }
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' |
    sed -n 's/^linux-image-\(6\.1\.0-[0-9]*\)-amd64-unsigned .*/\1/p' | sort -V | tail -n 1
}

# cp_libs ROOT FILE: the shared libraries ldd lists for FILE (and the
# dynamic loader) at their own paths under ROOT.
cp_libs() {
  local lib
  for lib in $(ldd "$2" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
    [ -e "$1$lib" ] && continue
    mkdir -p "$1$(dirname "$lib")" && cp -L "$lib" "$1$lib" || return 1
  done
}

# cp_bin ROOT FILE...: each FILE at its own path under ROOT, with its
# libraries.
cp_bin() {
  local root=$1 f
  shift
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")" && cp -L "$f" "$root$f" && cp_libs "$root" "$f" ||
      return 1
  done
}

# busybox_root ROOT: a static busybox with a link for each applet.
busybox_root() {
  local a
  mkdir -p "$1/bin" "$1/sbin" "$1/usr/bin" "$1/usr/sbin" "$1/proc" "$1/sys" \
    "$1/dev" "$1/run" "$1/tmp" "$1/etc" || return 1
  cp /bin/busybox "$1/bin/busybox" || return 1
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"
  done
}

mkcpio() { # mkcpio DIR FILE: an uncompressed newc archive of DIR
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$2"
}

# What the cached part depends on: this script, the guest's /init and the
# Debian packages copied in (a change of any rebuilds it).
base_key=$(
  cat "$0" "$here/domu-init.sh" "$here/xtk-udp.c" | md5sum | cut -d' ' -f1
  dpkg-query -W -f='${Package} ${Version}\n' xen-utils-4.17 xenstore-utils \
    xen-utils-common busybox-static libc6 libgcc-s1 bash util-linux mount \
    2>/dev/null
  echo "kernel ${XTK_XEN_KERNEL_ABI:-default}"
)

build_base() {
  local ver abi xdeb k0 k1 x b d m
  apt_ready || die "apt-cache knows no xen-hypervisor-4.17-amd64 (apt-get update failed?)"
  # The hypervisor of the tools' own version if it is there, else apt's.
  ver=$(dpkg-query -W -f='${Version}' xen-utils-4.17 2>/dev/null)
  xdeb=$(fetch "xen-hypervisor-4.17-amd64=$ver" || fetch xen-hypervisor-4.17-amd64) ||
    die "apt-get download xen-hypervisor-4.17-amd64 failed"
  abi=$(kernel_abi)
  [ -n "$abi" ] || die "apt-cache offers no linux-image-6.1.0-N-amd64-unsigned"
  log "Xen $(basename "$xdeb"), kernels $abi"
  k0=$(fetch "linux-image-$abi-amd64-unsigned") ||
    die "apt-get download linux-image-$abi-amd64-unsigned failed"
  k1=$(fetch "linux-image-$abi-cloud-amd64-unsigned") ||
    die "apt-get download linux-image-$abi-cloud-amd64-unsigned failed"

  x=$run/x
  mkdir -p "$x"
  for d in "$xdeb" "$k0" "$k1"; do
    dpkg -x "$d" "$x" 2>/dev/null || dpkg-deb -x "$d" "$x" || die "unpacking $d"
  done
  zcat "$x/boot/xen-4.17-amd64.gz" >"$run/xen.elf" || die "no xen-4.17-amd64.gz in $xdeb"
  cp "$x/boot/vmlinuz-$abi-amd64" "$run/vmlinuz-dom0" || die "no dom0 kernel in $k0"

  # The guest's initramfs: busybox, its /init, and a /sbin/poweroff that
  # powers off (the kernel runs it on control/shutdown = poweroff).
  d=$run/domu
  busybox_root "$d" || die "building the guest's initramfs"
  cp "$here/domu-init.sh" "$d/init" && chmod 755 "$d/init"
  # numbered datagrams from the devices guest to dom0 (a static binary:
  # the guest has no libc of its own)
  ${CC:-cc} -static -O2 -Wall -Wextra -Werror -o "$d/sbin/xtk-udp" \
    "$here/xtk-udp.c" || die "building xtk-udp (static: libc6-dev's libc.a)"
  rm -f "$d/sbin/poweroff"
  printf '#!/bin/sh\nexec /bin/busybox poweroff -f\n' >"$d/sbin/poweroff"
  chmod 755 "$d/sbin/poweroff"
  b=$run/base
  busybox_root "$b" || die "building dom0's initramfs"
  mkdir -p "$b/var/lib/xtk" "$b/lib/modules/xen" "$b/etc/xen" "$b/var/lib/xen" \
    "$b/var/log/xen" || die "mkdir"
  # Xen's PV disk and network drivers for the devices guest (xtk.dev=)
  mkdir -p "$d/lib/modules" || die mkdir
  for m in block/xen-blkfront net/xen-netfront; do
    cp "$x/lib/modules/$abi-cloud-amd64/kernel/drivers/$m.ko" "$d/lib/modules/" ||
      die "no module $m in $k1"
  done
  mkcpio "$d" "$b/var/lib/xtk/domu.cpio" || die "cpio of the guest"
  cp "$d/sbin/xtk-udp" "$b/usr/bin/xtk-udp" || die "copying xtk-udp"
  cp "$x/boot/vmlinuz-$abi-cloud-amd64" "$b/var/lib/xtk/vmlinuz-domu" ||
    die "no cloud kernel in $k1"
  for m in xen-evtchn xen-privcmd xenfs/xenfs xen-gntdev xen-gntalloc; do
    cp "$x/lib/modules/$abi-amd64/kernel/drivers/xen/$m.ko" "$b/lib/modules/xen/" ||
      die "no module $m in $k0"
  done
  # dom0's backends for the devices guest: blkback on loop devices,
  # netback on a bridge (stp and llc are the bridge's own dependencies)
  mkdir -p "$b/lib/modules/dev" || die mkdir
  # (and, for xtk's held output on checkpoints, what xl remus's network
  # buffer uses: an ifb, the ingress qdisc, a filter and action that
  # redirect to it, the plug qdisc)
  for m in drivers/block/loop drivers/block/xen-blkback/xen-blkback \
    drivers/net/xen-netback/xen-netback net/llc/llc net/802/stp \
    net/bridge/bridge drivers/net/ifb net/sched/sch_ingress \
    net/sched/cls_matchall net/sched/act_mirred net/sched/sch_plug; do
    cp "$x/lib/modules/$abi-amd64/kernel/$m.ko" "$b/lib/modules/dev/" ||
      die "no module $m in $k0"
  done
  # virtio-blk, for the output disk that carries files back to the host
  mkdir -p "$b/lib/modules/virtio" || die mkdir
  for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_legacy_dev \
    virtio/virtio_pci_modern_dev virtio/virtio_pci block/virtio_blk; do
    cp "$x/lib/modules/$abi-amd64/kernel/drivers/$m.ko" "$b/lib/modules/virtio/" ||
      die "no module $m in $k0"
  done
  : >"$b/etc/xen/xl.conf"
  ln -s /run "$b/var/run"
  ln -s /run/lock "$b/var/lock"
  cp_bin "$b" "$xenbin/xl" "$xenbin/xen-init-dom0" "$xenbin/xenconsoled" \
    "$xenbin/test-xenstore" "$xenbin/libxl-save-helper" \
    "$xenbin/xenstore-control" /usr/bin/xenstore ||
    die "copying Xen's tools"
  for t in /usr/bin/xenstore-*; do
    [ "$t" = /usr/bin/xenstore-control ] && continue
    cp -a "$t" "$b$t" || die "copying $t"
  done
  # libxl runs Xen's hotplug scripts (bash) for a disk or a vif: the
  # scripts, bash, and util-linux's flock and losetup, which they use as
  # a Debian dom0 has them
  cp_bin "$b" /bin/bash /usr/bin/flock /sbin/losetup &&
    mkdir -p "$b/etc/xen" && cp -a /etc/xen/scripts "$b/etc/xen/" ||
    die "copying bash, flock, losetup or Xen's hotplug scripts"
  ln -s "$xenbin/xl" "$b/usr/sbin/xl"
  ln -sf "$xenbin/xenstore-control" "$b/usr/bin/xenstore-control"
  lg=$(ldconfig -p | sed -n 's/.*libgcc_s.so.1 (libc6,x86-64) => //p' | head -n 1)
  [ -n "$lg" ] || die "no libgcc_s.so.1 (xl aborts without it)"
  mkdir -p "$b$(dirname "$lg")" && cp -L "$lg" "$b$lg" || die "copying $lg"
  mkcpio "$b" "$run/base.cpio" || die "cpio of dom0"
  mv "$run/xen.elf" "$run/vmlinuz-dom0" "$run/base.cpio" "$cache/" &&
    echo "$base_key" >"$cache/base.key" || die "writing $cache"
  rm -rf "$x" "$d" "$b"
}

if [ "$(cat "$cache/base.key" 2>/dev/null)" != "$base_key" ] ||
  [ ! -s "$cache/base.cpio" ] || [ ! -s "$cache/xen.elf" ] ||
  [ ! -s "$cache/vmlinuz-dom0" ]; then
  log "building the cached part in $cache"
  rm -f "$cache/base.key"
  build_base
fi

# ---- this run's part: xsd-lite from the build tree and dom0's /init -----
o=$run/overlay
mkdir -p "$o/usr/sbin" || die mkdir
[ "$(head -c 2 "$xsd")" != '#!' ] || die "$xsd is a libtool wrapper: this test wants the binary"
cp "$xsd" "$o/usr/sbin/xsd-lite" && cp_libs "$o" "$xsd" || die "copying $xsd"
[ "$(head -c 2 "$probe")" != '#!' ] || die "$probe is a libtool wrapper: this test wants the binary"
cp "$probe" "$o/usr/sbin/xen-probe" && cp_libs "$o" "$probe" || die "copying $probe"
[ "$(head -c 2 "$guard")" != '#!' ] || die "$guard is a libtool wrapper: this test wants the binary"
cp "$guard" "$o/usr/sbin/xtk-xen-guard" && cp_libs "$o" "$guard" || die "copying $guard"
[ "$(head -c 2 "$xtksave")" != '#!' ] || die "$xtksave is a libtool wrapper: this test wants the binary"
mkdir -p "$o/usr/lib/x86_64-linux-gnu" || die mkdir
cp "$xtksave" "$o/usr/sbin/xtk-save" &&
  cp -L "$libdir/libxtk.so.0" "$o/usr/lib/x86_64-linux-gnu/libxtk.so.0" &&
  LD_LIBRARY_PATH=$libdir cp_libs "$o" "$xtksave" || die "copying $xtksave"
[ "$(head -c 2 "$xtkrestore")" != '#!' ] || die "$xtkrestore is a libtool wrapper: this test wants the binary"
cp "$xtkrestore" "$o/usr/sbin/xtk-restore" &&
  LD_LIBRARY_PATH=$libdir cp_libs "$o" "$xtkrestore" || die "copying $xtkrestore"
[ "$(head -c 2 "$xtkcli")" != '#!' ] || die "$xtkcli is a libtool wrapper: this test wants the binary"
cp "$xtkcli" "$o/usr/sbin/xtk" &&
  LD_LIBRARY_PATH=$libdir cp_libs "$o" "$xtkcli" || die "copying $xtkcli"
mkdir -p "$o/usr/lib/xtk" && cp "$guestelf" "$o/usr/lib/xtk/xtk-guest.elf" ||
  die "copying $guestelf"
# Xen's own store daemon in place of xsd-lite (XTK_XEN_STORE).
case $store in
xenstored) cp_bin "$o" "$xenbin/xenstored" || die "copying Xen's xenstored" ;;
oxenstored)
  cp_bin "$o" "$xenbin/oxenstored" && mkdir -p "$o/etc/xen" &&
    cp /etc/xen/oxenstored.conf "$o/etc/xen/" || die "copying Xen's oxenstored"
  ;;
esac
cp "$here/dom0-init.sh" "$o/init" && chmod 755 "$o/init" &&
  cp "$here/dom0-bench.sh" "$o/bench.sh" || die "copying dom0's /init"
mkcpio "$o" "$run/overlay.cpio" || die "cpio of the overlay"
# Concatenated newc archives: the kernel unpacks both, the later one wins.
cat "$cache/base.cpio" "$run/overlay.cpio" >"$run/dom0.cpio" || die "dom0.cpio"
ln -s "$cache/xen.elf" "$run/xen.elf"
ln -s "$cache/vmlinuz-dom0" "$run/vmlinuz-dom0"

# ---- the boot --------------------------------------------------------------
# Xen switches FPU state lazily on AMD CPUs (QEMU's "max" is one): CR0.TS
# set at a vCPU switch, the state restored on the #NM that follows.  Under
# QEMU 7.2's TCG with XSAVE in the CPU that corrupts dom0's processes now
# and then (a pointer read as 0 or garbage: busybox applets, xl, glibc's
# loader), and only while another domain runs: measured with
# scripts/xen-crash-stress.sh, 48 crashes in 2,939 rounds lazily, none in
# 1,764 with eager-fpu (docs/benchmarks.md).  Eager switching is Xen's
# own default on Intel CPUs; it keeps XSAVE and AVX in the emulated CPU.
# XTK_XEN_ARGS: more options for Xen's command line (experiments).
xen_args="spec-ctrl=eager-fpu ${XTK_XEN_ARGS:+$XTK_XEN_ARGS }"
boot() { # boot OUTPUT: Xen and dom0 under QEMU, console to OUTPUT
  (cd "$run" && exec timeout -k 10 "$timeout" qemu-system-x86_64 \
    -accel "tcg,thread=$tcg" -cpu "max,-smap,-smep,-pku${XTK_XEN_CPU_EXTRA:-}" \
    -m 2048 -smp "${XTK_XEN_SMP:-1}" -nographic -no-reboot \
    -drive "file=out.img,if=none,id=out,format=raw" \
    -device virtio-blk-pci,drive=out \
    -kernel xen.elf -append "${xen_args}dom0_mem=768M console=com1 com1=115200,8n1" \
    -initrd "vmlinuz-dom0 console=hvc0 earlyprintk=xen rdinit=/init quiet${bench:+ xtk.bench=$bench}${only:+ xtk.only=${only//,/,,}}${store_arg}${smp_rows},dom0.cpio" \
    -monitor "unix:mon.sock,server=on,wait=off" \
    </dev/null >"$1" 2>&1) &
  qpid=$!
  rm -f "$run/froze" "$run/nudged"
  watch_console "$1" "$qpid" &
  local wpid=$!
  wait "$qpid"
  local rc=$?
  kill "$wpid" 2>/dev/null
  wait "$wpid" 2>/dev/null
  qpid=
  return $rc
}

# A machine that stopped: the console silent for $XTK_XEN_SILENT seconds
# (240).  dom0 prints at least every 60-90 s while it lives, even through
# a stalled check (dom0-init.sh's watchdog), and Xen and the kernels print
# all through the boot, so that long a silence means the emulated machine
# stopped: under TCG, now and then, the vCPU sits halted in Xen's idle
# loop with nothing pending, QEMU idle, for good (seen for 18 minutes;
# QEMU's CPU has no TSC-deadline timer, so Xen times with the local APIC's
# one-shot count).  What QEMU's monitor says of the vCPU and its local
# APIC (its timer's count, IRR and ISR say whether the timer was armed
# or an interrupt was left in service) goes to the log; then the machine
# is sent an NMI, which Xen passes to dom0 and which wakes dom0's vCPU.
# If the console moves within $XTK_XEN_NUDGE_WAIT s (100: more than
# dom0's watchdog interval), the run goes on and the log says so
# ($run/nudged); otherwise QEMU is killed ($run/froze) and boot_to_init
# boots again.
silent=${XTK_XEN_SILENT:-240}
nudge_wait=${XTK_XEN_NUDGE_WAIT:-100}
# monitor CMD...: each HMP command's output, through QEMU's monitor socket.
monitor() {
  /usr/bin/python3 - "$run/mon.sock" "$@" <<'PY' 2>&1
import re, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])
def read():
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
            if out.endswith(b"(qemu) "):
                break
    except socket.timeout:
        pass
    # the monitor's line editor echoes each key with escapes: dropped
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.decode(errors="replace"))
    return [l for l in text.replace("\r", "").split("\n")[1:] if not l.startswith("(qemu)")]
read()
for cmd in sys.argv[2:]:
    s.sendall(cmd.encode() + b"\n")
    print("(qemu) " + cmd)
    print("\n".join(read()))
PY
}
watch_console() { # watch_console CONSOLE PID-OF-TIMEOUT
  local size last=-1 since now qemu ticks nudged=
  since=$(date +%s)
  while kill -0 "$2" 2>/dev/null; do
    sleep 15
    size=$(stat -c %s "$1" 2>/dev/null || echo 0)
    now=$(date +%s)
    if [ "$size" != "$last" ]; then
      last=$size
      since=$now
      if [ -n "$nudged" ]; then
        echo "the console moved again $((now - nudged)) s after the NMI: the run goes on" >>"$run/nudged"
        nudged=
      fi
      continue
    fi
    if [ -n "$nudged" ]; then
      [ $((now - nudged)) -ge "$nudge_wait" ] || continue
      # The NMI did not wake it: the machine is lost, boot again.
      echo "the console stayed silent $((now - nudged)) s after the NMI" >>"$run/nudged"
      mv "$run/nudged" "$run/froze"
      kill "$qemu" 2>/dev/null
      return 0
    fi
    [ $((now - since)) -ge "$silent" ] || continue
    qemu=$(pgrep -P "$2" | head -n 1)
    ticks=$(awk '{print $14 + $15}' "/proc/$qemu/stat" 2>/dev/null)
    {
      echo "the console was silent for $((now - since)) s; QEMU (pid $qemu) has used $((${ticks:-0} / $(getconf CLK_TCK))) s of CPU"
      monitor "info status" "info cpus" "info lapic" "info pic" "info registers -a" "nmi"
    } >>"$run/nudged"
    nudged=$(date +%s)
  done
}

# boot_to_init OUTPUT: a boot whose dom0 reached its /init, tried twice
# (QEMU or Xen dying before /init is the environment, not a check).
boot_to_init() {
  local try t0
  for try in 1 2; do
    t0=$(date +%s)
    rm -f "$run/out.img" && truncate -s 1G "$run/out.img" || die "the output disk"
    boot "$1"
    rc=$?
    tr -d '\r' <"$1" >"$1.txt"
    log "boot $try: QEMU exited $rc after $(($(date +%s) - t0)) s"
    if [ -s "$run/nudged" ]; then
      echo "---- boot $try: the machine stopped, and an NMI woke it ----"
      head -c 20000 "$run/nudged"
    fi
    if [ -s "$run/froze" ]; then
      # The machine stopped (watch_console): not a check's failure but the
      # emulator's; said loudly, with what QEMU said of the vCPUs, and the
      # whole run booted once more.
      echo "---- console of boot $try, whose machine stopped ----"
      tail -n 40 "$1.txt"
      echo "---- QEMU's monitor when it stopped ----"
      head -c 20000 "$run/froze"
      [ "$try" = 2 ] && die "the emulated machine stopped in both boots (see above)"
      log "boot $try: the emulated machine stopped (console silent ${silent} s, an NMI did not wake it): booting once more"
      continue
    fi
    grep -q '^XTK-INIT' "$1.txt" && return 0
    echo "---- console of boot $try ----"
    tail -n 60 "$1.txt"
    [ "$try" = 2 ] && die "Xen/dom0 did not reach dom0's /init twice (QEMU exit $rc)"
    log "retrying the boot once"
  done
}

# The built-in guest's checks (dom0-init.sh, builtin()).
builtin_checks="builtin-boot builtin-checkpoint builtin-save builtin-xl
  builtin-text builtin-migrate builtin-destroy"
# The SMP built-in guest's (4 vCPUs, its lock under overcommit; issue 15).
spin_checks="builtin-spin builtin-spin-checkpoint builtin-spin-restore"
# The devices guest's checks (dom0-init.sh, devices()).
device_checks="dev-create dev-xl-xtk dev-missing dev-migrate dev-text
  dev-held dev-destroy"
# Every check dom0-init.sh makes; none may be missing or failed.
checks="xsd-lite xen-init-dom0 xenconsoled test-xenstore xl-create introduce
  guest-ring guest-console xl-save save-release xl-restore restore-runs
  shutdown release xsd-lite-alive pvh-create pvh-destroy
  xtk-save xtk-save-restore xtk-live xtk-live-restore xtk-kill xtk-kill-final
  xl-save-xtk-restore xtk-restore-bad xtk-restore-kill xtk-restore xtk-migrate
  xtk-checkpoint xtk-failover xtk-port-reuse xtk-suspend-xl xtk-save-pv
  xtk-save-pv-restore xtk-restore-pv xtk-restore-pv-bad $builtin_checks
  $spin_checks $device_checks"
# and xen-probe's, once for each guest (tests/xen/xen-probe.c)
probes="xtk-lookup xtk-pause xtk-logdirty xtk-evtchn xtk-suspend xtk-guard
  xtk-running"
# XTK_XEN_BENCH=ROUNDS: dom0 runs its benchmark (tests/xen/dom0-bench.sh)
# in place of the checks after the PVH guest's creation (bench/xen-bench.sh
# reads its XTK-BENCH lines from the console printed below).
bench=${XTK_XEN_BENCH:-}
# XTK_XEN_ONLY=a list of builtin, spin, pv and devices: dom0 makes the
# built-in guest's checks, the SMP built-in guest's (spin), the PV guest's
# restore checks, the devices guest's checks, or several, alone (a short
# run, for work on one part; the sanitizer pass of CI runs
# builtin,pv,devices: the spin guest's checkpoints take the library's
# paths builtin's do, with 4 vCPUs under TCG and ASan for 150 s).
only=${XTK_XEN_ONLY:-}
if [ -n "$only" ]; then
  checks="xsd-lite xen-init-dom0 xenconsoled test-xenstore"
  for part in ${only//,/ }; do
    case $part in
    builtin) checks="$checks $builtin_checks" ;;
    spin) checks="$checks $spin_checks" ;;
    pv) checks="$checks xl-create xtk-restore-pv xtk-restore-pv-bad" ;;
    devices) checks="$checks $device_checks" ;;
    smp) [ -n "$bench" ] || die "XTK_XEN_ONLY=smp is a benchmark (XTK_XEN_BENCH)" ;;
    *) die "XTK_XEN_ONLY=$only: a list of 'builtin', 'spin', 'pv' and 'devices'" ;;
    esac
  done
  checks="$checks xsd-lite-alive"
  probes=
fi
# XTK_XEN_STORE=xenstored or oxenstored: Xen's own store daemon (C or
# OCaml) is dom0's store in place of xsd-lite, for the xtk parts
# (XTK_XEN_ONLY): people run xtk with those far more often.  The checks
# that look into xsd-lite (its rings, its log) are the full run's.
store_arg=
case $store in
xsd-lite) ;;
xenstored | oxenstored)
  [ -n "$only" ] || die "XTK_XEN_STORE=$store needs XTK_XEN_ONLY (builtin, pv, devices or a list)"
  store_arg=" xtk.store=$store"
  ;;
*) die "XTK_XEN_STORE=$store: xsd-lite, xenstored or oxenstored" ;;
esac
if [ -n "$bench" ]; then
  # With XTK_XEN_ONLY=builtin or devices: that guest's rounds alone.
  if [ "$only" = builtin ] || [ "$only" = devices ] || [ "$only" = smp ]; then
    checks="xsd-lite xen-init-dom0 xenconsoled test-xenstore bench"
  elif [ -n "$only" ]; then
    die "XTK_XEN_BENCH takes XTK_XEN_ONLY=builtin, devices, smp or nothing"
  else
    checks="xsd-lite xen-init-dom0 xenconsoled test-xenstore xl-create
    pvh-create bench"
  fi
  probes=
fi
# XTK_XEN_SMP_VCPUS="8" and XTK_XEN_SMP_WORKLOADS="spin" (with
# XTK_XEN_ONLY=smp): only those rows of the SMP benchmark; and
# XTK_XEN_SOAK=N: in its place N runs of 15 s of that guest (the first
# of each, 8 and spin by default) with no checkpoint, each alive or dead
# (tests/xen/dom0-bench.sh).
smp_rows=
if [ -n "${XTK_XEN_SMP_VCPUS:-}${XTK_XEN_SMP_WORKLOADS:-}${XTK_XEN_SOAK:-}" ]; then
  [ "$only" = smp ] && [ -n "$bench" ] ||
    die "XTK_XEN_SMP_VCPUS, XTK_XEN_SMP_WORKLOADS and XTK_XEN_SOAK need XTK_XEN_ONLY=smp and XTK_XEN_BENCH"
  [[ ${XTK_XEN_SMP_VCPUS:-8} =~ ^[1-8]( [1-8])*$ ]] ||
    die "XTK_XEN_SMP_VCPUS=$XTK_XEN_SMP_VCPUS: vCPU counts 1-8, separated by spaces"
  [[ ${XTK_XEN_SMP_WORKLOADS:-spin} =~ ^(spin|idle)( (spin|idle))*$ ]] ||
    die "XTK_XEN_SMP_WORKLOADS=$XTK_XEN_SMP_WORKLOADS: 'spin' and/or 'idle'"
  [[ ${XTK_XEN_SOAK:-1} =~ ^[1-9][0-9]*$ ]] ||
    die "XTK_XEN_SOAK=$XTK_XEN_SOAK: a number of runs"
fi
[ -n "${XTK_XEN_SMP_VCPUS:-}" ] && smp_rows=" xtk.smpn=$(tr ' ' / <<<"$XTK_XEN_SMP_VCPUS")"
[ -n "${XTK_XEN_SMP_WORKLOADS:-}" ] && smp_rows="$smp_rows xtk.smpwl=$(tr ' ' / <<<"$XTK_XEN_SMP_WORKLOADS")"
[ -n "${XTK_XEN_SOAK:-}" ] && smp_rows="$smp_rows xtk.soak=$XTK_XEN_SOAK"
if [ -n "$store_arg" ]; then
  checks=$(for c in $checks; do
    case $c in xsd-lite) echo store ;; xsd-lite-alive) echo store-alive ;; *) echo "$c" ;; esac
  done | tr '\n' ' ')
fi

# verify_files CONSOLE: each file dom0 wrote to the output disk (its
# XTK-FILE lines: name, offset in MiB, size) through Xen's
# verify-stream-v2 -f xl (check xtk-verify); adds to bad.
verify_files() {
  local name off size n=0 f
  while read -r name off size; do
    f=$run/$name
    dd if="$run/out.img" bs=1M skip="$off" count=$(((size + 1048575) / 1048576)) \
      2>/dev/null | head -c "$size" >"$f"
    n=$((n + 1))
    if PYTHONPATH=$xenbin/../lib/python /usr/bin/python3 "$xenbin/verify-stream-v2" \
      -f xl -i "$f" >"$f.verify" 2>&1; then
      echo "ok   xtk-verify: $name ($size bytes): verify-stream-v2 -f xl accepts it"
    else
      echo "FAIL xtk-verify: $name: $(tail -n 3 "$f.verify" | tr '\n' ';')"
      bad=$((bad + 1))
    fi
    rm -f "$f"
  done < <(sed -n 's/^XTK-FILE //p' "$1")
  if [ "$n" = 0 ]; then
    echo "FAIL xtk-verify: dom0 exported no file"
    bad=$((bad + 1))
  fi
}

# evaluate CONSOLE: prints each check's line; sets bad (failed checks),
# crashes (programs that crashed in dom0) and res.
evaluate() {
  local c n
  res=$(sed -n '/^XTK-BEGIN/,/^XTK-END/p' "$1" | grep -E '^XTK-(OK|FAIL|END) ')
  crashes=$(grep '^XTK-NOTE crash: ' "$1")
  bad=0
  for c in $checks; do
    if grep -q "^XTK-OK $c " <<<"$res"; then
      echo "ok   $c: $(sed -n "s/^XTK-OK $c //p" <<<"$res" | head -n 1)"
    else
      echo "FAIL $c: $(sed -n "s/^XTK-FAIL $c //p" <<<"$res" | head -n 1)"
      bad=$((bad + 1))
    fi
  done
  for c in $probes; do
    n=$(grep -c "^XTK-OK $c " <<<"$res")
    if [ "$n" = 2 ]; then
      grep "^XTK-OK $c " <<<"$res" | sed "s/^XTK-OK $c /ok   $c: /"
    else
      echo "FAIL $c: $n of 2 guests OK; $(sed -n "s/^XTK-FAIL $c //p" <<<"$res" | head -n 1)"
      bad=$((bad + 1))
    fi
  done
  [ -n "$bench" ] || [ "$only" = pv ] || verify_files "$1"
  grep -q '^XTK-FAIL ' <<<"$res" && bad=$((bad + 1))
  grep -q '^XTK-END ' <<<"$res" || bad=$((bad + 1))
  return 0
}

# No program may crash in dom0 (check dom0-crashes): dom0's kernel lines
# about a segfault or a general protection fault come out as XTK-NOTE
# crash.  They used to come now and then, from Xen's lazy FPU switching
# under TCG (see xen_args above); one now is a bug to look into, in xtk's
# programs or in the testbed, and the run is not retried to hide it.
out=$run/console
boot_to_init "$out"
echo "---- dom0's console ----"
cat "$out.txt"
echo "---- end of dom0's console ----"
killed=
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  killed=1
  log "QEMU was killed after $timeout s"
fi
evaluate "$out.txt"
if [ -z "$crashes" ]; then
  echo "ok   dom0-crashes: no program crashed in dom0"
else
  echo "FAIL dom0-crashes: $(grep -c . <<<"$crashes") program(s) crashed in dom0:"
  sed 's/^XTK-NOTE crash: /       /' <<<"$crashes"
  bad=$((bad + 1))
fi
log "wall time $(($(date +%s) - start)) s"
grep -q '^XTK-END ' <<<"$res" ||
  die "dom0 did not finish its checks (QEMU exit $rc${killed:+, killed after $timeout s}; see the console above)"
[ "$bad" = 0 ] || die "$bad check(s) failed inside the Xen testbed"
echo "PASS: every Xen testbed check passed"

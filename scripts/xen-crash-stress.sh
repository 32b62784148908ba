#!/usr/bin/env bash
# Counts the programs that crash in the Xen testbed's dom0 while it starts
# processes over and over with guests running: the experiment behind
# Xen's spec-ctrl=eager-fpu on the testbed's command line
# (tests/xen/testbed.sh).  Uses the testbed's cache (run the testbed once
# first) and the build's xsd-lite; one boot of QEMU (TCG, one CPU).
#
#   scripts/xen-crash-stress.sh BUILD_DIR [SECONDS [GUESTS [CPU [XEN_ARGS]]]]
#
# GUESTS: pv, pvh, both or none (default pv); CPU: QEMU's -cpu (default
# the testbed's, max,-smap,-smep,-pku); XEN_ARGS: Xen's command line
# options (default none: Xen's own lazy FPU switching).  Three shells in
# dom0 each run `xl list`, `xenstore-ls` and a pipe of three busybox
# applets in a loop for SECONDS (240); prints one line:
#   crashes N rounds R
# then dom0's kernel lines about each crash.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [SECONDS [GUESTS [CPU [XEN_ARGS]]]]}" && pwd)
secs=${2:-240}
guests=${3:-pv}
cpu=${4:-max,-smap,-smep,-pku}
xenargs=${5:-}
cache=${XTK_XEN_CACHE:-$build/tests/xen/cache}
xsd=$build/xsd-lite/xsd-lite
for f in base.cpio xen.elf vmlinuz-dom0; do
  [ -s "$cache/$f" ] || { echo "no $cache/$f: run tests/xen/testbed.sh once" >&2; exit 2; }
done
[ "$(head -c 4 "$xsd" 2>/dev/null)" = $'\x7fELF' ] || { echo "no $xsd" >&2; exit 2; }
case $guests in pv | pvh | both | none) ;; *) echo "GUESTS: pv, pvh, both or none" >&2; exit 2 ;; esac

run=$(mktemp -d /tmp/xtk-stress.XXXXXX)
trap 'rm -rf "$run"' EXIT
o=$run/o
mkdir -p "$o/usr/sbin"
cp "$xsd" "$o/usr/sbin/xsd-lite"
for lib in $(ldd "$xsd" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p'); do
  mkdir -p "$o$(dirname "$lib")" && cp -L "$lib" "$o$lib"
done
# dom0's PATH, mounts and console: the testbed's own /init's first lines
{
  echo '#!/bin/sh'
  sed -n '/^PATH=/,/^exec <\/dev\/console/p' "$top/tests/xen/dom0-init.sh"
} >"$o/init"
grep -q '^exec </dev/console' "$o/init" || { echo "tests/xen/dom0-init.sh changed: no preamble" >&2; exit 2; }
cat >>"$o/init" <<INIT
for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc; do
  insmod /lib/modules/xen/\$m.ko
done
mount -t xenfs xenfs /proc/xen
mkdir -p /run/xenstored /run/xen /run/lock /var/lib/xen /var/log/xen/console
xsd-lite -s /run/xenstored/socket -F /run/xsd-lite.pid -L /run/xsd-lite.log
xen-init-dom0 >/run/xen-init-dom0.log 2>&1
xenconsoled --log=guest --pid-file=/run/xenconsoled.pid
printf '%s\n' 'name = "g1"' 'type = "pv"' 'kernel = "/var/lib/xtk/vmlinuz-domu"' \
  'ramdisk = "/var/lib/xtk/domu.cpio"' 'extra = "console=hvc0 rdinit=/init"' \
  'memory = 128' 'vcpus = 1' >/etc/xen/g1.cfg
sed -e 's/^name = .*/name = "g2"/' -e 's/^type = .*/type = "pvh"/' /etc/xen/g1.cfg >/etc/xen/g2.cfg
echo 'cpuid = "host,rdtscp=0"' >>/etc/xen/g2.cfg
case $guests in pv | both) xl create /etc/xen/g1.cfg ;; esac
case $guests in pvh | both) xl create /etc/xen/g2.cfg ;; esac
sleep 20
end=\$((\$(cut -d. -f1 /proc/uptime) + $secs))
worker() {
  i=0
  while [ "\$(cut -d. -f1 /proc/uptime)" -lt \$end ]; do
    timeout 20 xl list >/dev/null 2>&1
    timeout 20 xenstore-ls /local/domain >/dev/null 2>&1
    echo a | sed s/a/b/ | awk '{ print \$1 }' >/dev/null
    i=\$((i + 1))
  done
  echo \$i >/run/rounds.\$1
}
worker 1 & worker 2 & worker 3 &
wait
echo "XTK-STRESS crashes \$(dmesg | grep -cE 'segfault|general protection|traps:') rounds \$(cat /run/rounds.* | awk '{ n += \$1 } END { print n }')"
dmesg | grep -E 'segfault|general protection|traps:' | sed 's/^/XTK-STRESS-CRASH /'
poweroff -f
INIT
chmod 755 "$o/init"
(cd "$o" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$run/o.cpio"
cat "$cache/base.cpio" "$run/o.cpio" >"$run/dom0.cpio"
ln -s "$cache/xen.elf" "$run/xen.elf"
ln -s "$cache/vmlinuz-dom0" "$run/vmlinuz-dom0"
(cd "$run" && timeout -k 10 $((secs + 600)) qemu-system-x86_64 -accel tcg,thread=multi \
  -cpu "$cpu" -m 2048 -smp 1 -nographic -no-reboot -kernel xen.elf \
  -append "${xenargs:+$xenargs }dom0_mem=768M console=com1 com1=115200,8n1" \
  -initrd "vmlinuz-dom0 console=hvc0 earlyprintk=xen rdinit=/init quiet,dom0.cpio" \
  </dev/null >"$run/console" 2>&1)
tr -d '\r' <"$run/console" | sed -n 's/^XTK-STRESS //p; s/^XTK-STRESS-CRASH /  /p' | grep . ||
  { echo "dom0 printed no result; its console's tail:" >&2; tail -n 30 "$run/console" >&2; exit 1; }

#!/bin/sh
# The PV guest's /init (tests/xen/testbed.sh): a counter on its console.
# Its kernel's xenbus does the store work (control/feature-*, the shutdown
# watch); /sbin/poweroff is what the kernel runs on control/shutdown.
/bin/mount -t proc proc /proc
/bin/mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "xtk-domu: up"
# The guest's own view of the time it did not run (a save, a migration:
# the downtime as its users clock it): /proc/uptime (the boot clock, which
# counts a suspend) read every 10 ms, each gap of 50 ms or more printed.
# Builtins only, but for usleep: uptime in centiseconds ("12.05" -> 1205;
# the 1 in front keeps "05" from reading as octal).  Only with xtk.gap on
# the kernel's command line (the benchmark's guest): 100 wake-ups a second
# slow a TCG machine down.
grep -q 'xtk\.gap' /proc/cmdline && (
  read -r u _ </proc/uptime
  p=$((1${u#*.} - 100 + ${u%.*} * 100))
  while :; do
    usleep 10000
    read -r u _ </proc/uptime
    c=$((1${u#*.} - 100 + ${u%.*} * 100))
    [ $((c - p)) -ge 5 ] && echo "xtk-domu: gap $(((c - p) * 10)) ms at $u"
    p=$c
  done
) &
# xtk.dev=ADDR (the devices guest): its disk and network interface, as
# Xen's PV drivers give them (xen-blkfront, xen-netfront): ADDR/24 on
# eth0, and the counter written to the disk's first sector as well, each
# write flushed to dom0's backend.
dev=$(sed -n 's/.*xtk\.dev=\([0-9.]*\).*/\1/p' /proc/cmdline)
if [ -n "$dev" ]; then
  insmod /lib/modules/xen-blkfront.ko
  insmod /lib/modules/xen-netfront.ko
  n=0
  while [ ! -b /dev/xvda ] || ! ip link show eth0 >/dev/null 2>&1; do
    [ $n -ge 300 ] && { echo "xtk-domu: no xvda or eth0"; break; }
    usleep 100000
    n=$((n + 1))
  done
  ip addr add "$dev/24" dev eth0 && ip link set eth0 up &&
    echo "xtk-domu: eth0 $dev, disk /dev/xvda"
  # xtk.udp=ADDR:PORT: numbered datagrams to ADDR:PORT, 20 a second (the
  # held-output check: what a client outside sees of a checkpointed guest)
  udp=$(sed -n 's/.*xtk\.udp=\([0-9.]*:[0-9]*\).*/\1/p' /proc/cmdline)
  [ -n "$udp" ] && /sbin/xtk-udp send "${udp%:*}" "${udp#*:}" 50 &
fi
i=0
while :; do
  echo "xtk-domu: counter $i at $(cut -d' ' -f1 /proc/uptime)"
  [ -n "$dev" ] && echo "xtk-disk $i" |
    dd of=/dev/xvda bs=512 count=1 conv=notrunc,sync,fsync 2>/dev/null
  i=$((i + 1))
  sleep 1
done

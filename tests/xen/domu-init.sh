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
i=0
while :; do
  echo "xtk-domu: counter $i at $(cut -d' ' -f1 /proc/uptime)"
  i=$((i + 1))
  sleep 1
done

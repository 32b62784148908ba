#!/bin/sh
# The PV guest's /init (tests/xen/testbed.sh): a counter on its console.
# Its kernel's xenbus does the store work (control/feature-*, the shutdown
# watch); /sbin/poweroff is what the kernel runs on control/shutdown.
/bin/mount -t proc proc /proc
/bin/mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "xtk-domu: up"
i=0
while :; do
  echo "xtk-domu: counter $i at $(cut -d' ' -f1 /proc/uptime)"
  i=$((i + 1))
  sleep 1
done

#!/bin/sh
# dom0's /init in tests/xen/testbed.sh: xsd-lite is the store of a real Xen.
#
# It starts xsd-lite (there is no xenstored in this initramfs), Xen's
# xen-init-dom0 and xenconsoled, then checks, each result one line on the
# console between XTK-BEGIN and XTK-END:
#   XTK-OK <check> <detail>   or   XTK-FAIL <check> <why>
# The host script wants every check it knows to say OK.  Nothing here may
# exit: this is PID 1, and the last thing it does is power the machine off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# What udev makes on a Debian dom0 and Xen's hotplug scripts use
# (locking.sh stats /dev/stdin: without it, claim_lock loops forever).
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
exec </dev/console >/dev/console 2>&1
# the loopback, for a migration from this host to itself over TCP
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "XTK-INIT dom0 up at $(cut -d' ' -f1 /proc/uptime) s"

failed=0
# Each check's line ends with dom0's uptime: where the run's time goes.
ok() {
  echo "XTK-OK $* [at $(now) s]"
  : >/run/last-result
}
bad() {
  echo "XTK-FAIL $* [at $(now) s]"
  failed=1
  : >/run/last-result
}
now() { cut -d' ' -f1 /proc/uptime; }
# since T: seconds from uptime T to now, two decimals.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# xl and the probes get a deadline (TCG-sized): a command that hangs fails
# its check, and the run still gets to print what it knows.
xl() { timeout 300 /usr/lib/xen-4.17/bin/xl "$@"; }
probe() { timeout 900 xen-probe "$@"; }
# waitfor SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
waitfor() {
  _wn=$(($1 * 5))
  shift
  until "$@" >/dev/null 2>&1; do
    _wn=$((_wn - 1))
    [ "$_wn" -gt 0 ] || return 1
    sleep 0.2
  done
}
# The guest's console (xenconsoled --log=guest): its last counter.
counter() {
  grep -o 'xtk-domu: counter [0-9]*' /var/log/xen/console/guest-g1.log \
    2>/dev/null | tail -n 1 | cut -d' ' -f3
}
counter_above() { [ "$(counter)" -gt "$1" ] 2>/dev/null; }
# domid_of NAME: the domain's id; asked up to 3 times, a second apart
# (from when programs in this dom0 crashed now and then: testbed.sh).
domid_of() {
  for _ in 1 2 3; do
    _id=$(xl domid "$1" 2>/dev/null) && [ -n "$_id" ] && { echo "$_id"; return 0; }
    sleep 1
  done
  return 1
}
value_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
# guest_watches DOMID: the watches DOMID's ring connection holds.
guest_watches() {
  xenstore-control connections 2>/dev/null |
    awk -v d="$1" '$2 == "ring" && $3 == d { print $5 }'
}
# introduced DOMID: xsd-lite serves DOMID's ring, a Xen one.  Xen's own
# daemons tell no such thing: there, the toolstack's nodes of it exist
# (the guests' own checks then show whether their store works).
introduced() {
  if [ "${store:-xsd-lite}" = xsd-lite ]; then
    xenstore-control domains 2>/dev/null | grep -q "^$1 xen "
  else
    xenstore-exists "/local/domain/$1/domid" 2>/dev/null
  fi
}
# gone DOMID: Xen has no such domain (not even a dying one), the store
# has no /local/domain/DOMID and xsd-lite no ring for it.
gone() {
  ! xl list "$1" >/dev/null 2>&1 &&
    ! xenstore-exists "/local/domain/$1" 2>/dev/null &&
    ! introduced "$1"
}
# watch_start NAME PATH: a watcher that waits for one event after the
# initial one; watch_fired NAME: it saw that event.
watch_start() {
  xenstore-watch -n 2 "$2" >"/run/watch-$1" 2>&1 &
  eval "watch_pid_$1=$!"
  waitfor 10 grep -q . "/run/watch-$1"
}
watch_fired() {
  eval "p=\$watch_pid_$1"
  waitfor 20 sh -c "! kill -0 $p" && [ "$(grep -c . "/run/watch-$1")" -ge 2 ]
}

# A watchdog: when no check has had a result for 3 minutes, what each process
# of dom0 is doing (state, kernel wait channel, command line) and the logs
# written meanwhile go to the console, once per stall: a run the host
# stops at its deadline still says where it stood.  While the stall lasts
# a line every 60 s says dom0 still lives: the host (testbed.sh) takes a
# console silent for minutes for a machine that stopped (it froze once
# under TCG, every vCPU halted with nothing pending).
: >/run/last-result
(
  while sleep 30; do
    [ -n "$(find /run/last-result -mmin -3 2>/dev/null)" ] && continue
    if [ -e /run/stall-told ] && [ /run/stall-told -nt /run/last-result ]; then
      [ -n "$(find /run/stall-told -mmin -1 2>/dev/null)" ] && continue
      : >/run/stall-told
      echo "XTK-NOTE stall: dom0 lives, still no check result at $(cut -d' ' -f1 /proc/uptime) s"
      continue
    fi
    : >/run/stall-told
    echo "XTK-NOTE stall: no check result for 3 min at $(cut -d' ' -f1 /proc/uptime) s"
    for d in /proc/[0-9]*; do
      [ -r "$d/cmdline" ] || continue
      c=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)
      [ -n "$c" ] || continue
      echo "XTK-NOTE stall: ${d#/proc/} $(cut -d' ' -f3 "$d/stat" 2>/dev/null) $(cat "$d/wchan" 2>/dev/null) $c"
    done
    find /run /var/log/xen -name '*.log' -mmin -5 2>/dev/null | while read -r f; do
      tail -n 5 "$f" | sed "s|^|XTK-NOTE stall: $f: |"
    done
  done
) &

for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc; do
  insmod "/lib/modules/xen/$m.ko" || echo "XTK-NOTE insmod $m failed"
done
mount -t xenfs xenfs /proc/xen
mkdir -p /run/xenstored /run/xen /run/lock /var/lib/xen /var/log/xen/console
echo "XTK-BEGIN"

# ---- the store: xsd-lite, a daemon that returns once it serves ----------
# xtk.store=xenstored or oxenstored (XTK_XEN_STORE): Xen's own daemon,
# C or OCaml, in its place (check "store"), for the xtk parts.
store=$(sed -n 's/.*xtk\.store=\([a-z-]*\).*/\1/p' /proc/cmdline)
store=${store:-xsd-lite}
storepid=/run/xsd-lite.pid
case $store in
xsd-lite)
  if xsd-lite -s /run/xenstored/socket -F /run/xsd-lite.pid -L /run/xsd-lite.log; then
    ok xsd-lite "serving /run/xenstored/socket, pid $(cat /run/xsd-lite.pid)"
  else
    bad xsd-lite "did not start"
  fi
  ;;
*)
  storepid=/run/xen/xenstored.pid
  mkdir -p /var/lib/xenstored
  if [ "$store" = xenstored ]; then
    /usr/lib/xen-4.17/bin/xenstored --pid-file "$storepid" >/run/store.log 2>&1
  else
    /usr/lib/xen-4.17/bin/oxenstored --pid-file "$storepid" >/run/store.log 2>&1
  fi
  if waitfor 20 test -S /run/xenstored/socket && waitfor 5 test -s "$storepid"; then
    ok store "Xen's $store serving /run/xenstored/socket, pid $(cat "$storepid")"
  else
    bad store "Xen's $store did not start: $(tail -n 3 /run/store.log | tr '\n' ';')"
  fi
  ;;
esac
if xen-init-dom0 >/run/xen-init-dom0.log 2>&1; then
  ok xen-init-dom0 "name $(xenstore-read /local/domain/0/name 2>&1)"
else
  bad xen-init-dom0 "exit $?: $(tail -n 3 /run/xen-init-dom0.log)"
fi
if xenconsoled --log=guest --pid-file=/run/xenconsoled.pid; then
  ok xenconsoled started
else
  bad xenconsoled "did not start"
fi

# ---- Xen's own test program, through libxenstore -------------------------
t=$(now)
if test-xenstore -i 20 >/run/test-xenstore.log 2>&1; then
  ok test-xenstore "-i 20 passed in $(since "$t") s"
else
  bad test-xenstore "exit $?: $(tail -n 5 /run/test-xenstore.log)"
fi

# finish: the last checks, the logs of a failed run, and the power off.
finish() {
  if [ "$store" != xsd-lite ]; then
    if kill -0 "$(cat "$storepid" 2>/dev/null)" 2>/dev/null; then
      ok store-alive "Xen's $store still serving"
    else
      bad store-alive "Xen's $store died: $(tail -n 3 /run/store.log | tr '\n' ';')"
    fi
  elif kill -0 "$(cat /run/xsd-lite.pid 2>/dev/null)" 2>/dev/null; then
    ok xsd-lite-alive "still serving; $(xenstore-control stats 2>&1 | tr '\n' ' ')"
  else
    bad xsd-lite-alive "xsd-lite died"
  fi

  # A program that crashed in dom0 (the testbed's own health): each one.
  dmesg | grep -E 'segfault|general protection|traps:' | sed 's/^/XTK-NOTE crash: /'
  grep -E ': (warning|error|critical): ' /run/xsd-lite.log | head -n 20 |
    sed 's/^/XTK-NOTE xsd-lite: /'
  if [ "$failed" != 0 ]; then
    for f in /run/xsd-lite.log /var/log/xen/console/guest-g1.log \
      /var/log/xen/xl-g1.log* /run/xl-create.log /run/xl-save.log \
      /run/xl-restore.log /run/xl-create-g2.log /run/xen-probe-g1.log \
      /run/xen-probe-g2.log /run/xl-shutdown.log /run/xtk-save.log \
      /run/xtk-kill.log /run/xtk-kill-final.log /run/xtk-save-pv.log \
      /run/xl-restore-pv.log \
      /run/xl-restore-save.log /run/xtk-live.log /run/xl-restore-live.log \
      /run/xl-save-g2.log /run/xl-migrate-g2.log /run/xl-save-xtk-restore.log \
      /run/xtk-restore.log /run/xtk-restore-bad.log /run/xtk-xtk-migrate-save.log \
      /run/xtk-g2m.log /var/log/xen/console/guest-g2m.log \
      /run/xtk-xtk-checkpoint-save.log /run/xtk-g2c.log /run/xtk-fo-save.log \
      /run/xtk-g2f.log /var/log/xen/console/guest-g2f.log \
      /var/log/xen/console/guest-g2.log \
      /var/log/xen/console/guest-g2--incoming.log /run/xl-create-g3.log \
      /var/log/xen/console/guest-g3.log /run/xtk-g3-ckpt.log \
      /run/xtk-g3-save.log /run/xl-restore-g3.log /run/xl-save-g3.log \
      /run/xtk-g3-migrate.log /run/xtk-g3m.log /run/xl-save-pv.log \
      /run/xtk-restore-pv.log /run/xtk-restore-pv-bad.log \
      /run/xl-create-g4.log /var/log/xen/console/guest-g4.log \
      /var/log/xen/xl-g4.log /run/dev-xl-xtk.log /run/dev-missing.log \
      /run/dev-migrate.log /run/dev-text.log /run/dev-destroy.log \
      /var/log/xen/xen-hotplug.log; do
      echo "XTK-LOG ---- $f"
      n=60
      case $f in *guest-g2.log) n=300 ;; esac
      tail -n "$n" "$f" 2>&1 | sed 's/^/XTK-LOG /'
    done
    for c in "xl list" "ps" "xenstore-control domains" "xl dmesg" "dmesg"; do
      echo "XTK-LOG ---- $c"
      $c 2>&1 | grep -v ' \[.*\]$' | tail -n 40 | sed 's/^/XTK-LOG /'
    done
  fi
  echo "XTK-END failed=$failed at $(now) s"
  sleep 1
  poweroff -f
}

# The output disk (a virtio disk QEMU gives dom0): files for the host to
# check with Xen's verify-stream-v2.
outdisk=
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev \
  virtio_pci virtio_blk; do
  insmod "/lib/modules/virtio/$m.ko" 2>/dev/null
done
waitfor 20 test -b /dev/vda && outdisk=/dev/vda
outmb=0
# export FILE NAME: FILE onto the output disk, announced for the host.
export_file() {
  [ -n "$outdisk" ] || { echo "XTK-NOTE no output disk: $2 not exported"; return; }
  size=$(wc -c <"$1")
  if dd if="$1" of="$outdisk" bs=1M seek="$outmb" conv=fsync 2>/dev/null; then
    echo "XTK-FILE $2 $outmb $size"
    outmb=$((outmb + (size + 1048575) / 1048576))
  else
    echo "XTK-NOTE writing $2 to $outdisk failed"
  fi
}

# scan_line LOG: what a save that is not live read of the frame space
# (xtk-save -v); scan_bounded LOG: it stopped before the end, having found
# every frame the domain owns (lib/xen/xen.c, xen_frames).
scan_line() { grep -o '[0-9]* of its [0-9]* frames found reading [0-9]* of [0-9]* frame types' "$1" | head -n 1; }
scan_bounded() {
  scan_line "$1" | awk '$1 == $4 && $8 < $10 { ok = 1 } END { exit !ok }'
}

# ---- xtk's built-in guest on Xen, as a PVH domain ------------------------
# guests/xtk-guest.elf is a PVH kernel too (Xen's PHYS32_ENTRY note,
# guests/xen.c): the same guest, workload and self-check as on KVM, with
# Xen's event channels, hypercalls and SCHEDOP_shutdown(suspend), and a
# suspend event channel of its own.  Its status page (its counter, its
# self-check) is read from dom0 by xen-probe --status.
#   builtin-boot        xl create: it runs on 2 vCPUs, counts, and
#                       publishes device/suspend/event-channel
#   builtin-checkpoint  xtk-save -c -l -N 5 --suspend evtchn: the request
#                       and the "suspended" notification both on event
#                       channels, each suspend resumed in place
#                       (SCHEDOP_shutdown returns 1); the self-check holds
#   builtin-save        xtk-save --suspend evtchn --format xl, then xl
#                       restore: it resumes in a new domain (returns 0),
#                       sets up its ports and the store again, counts on;
#                       the file goes to the host for verify-stream-v2
#   builtin-xl          xl save of it (libxl too uses the published
#                       channel, and the subscribed one for "suspended"),
#                       then xtk-restore of xl's file
#   builtin-text        xtk-save --config (xl's text config in the file):
#                       a config with a virtual channel (a device xtk
#                       does not build) refused by xtk-restore, the
#                       guest's own restored by it
#   builtin-migrate     xtk-save --live --suspend evtchn to xtk-restore on
#                       this host over TCP: the source is gone, the
#                       destination counts on
#   builtin-destroy     xl destroy: gone from Xen and the store
g3st() { xen-probe --status "$1" 2>&1; }
g3f() { g3st "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# g3_ok DOMID [COUNTER]: running, no self-check error, counting past COUNTER.
g3_ok() {
  [ "$(g3f "$1" state)" = 1 ] && [ "$(g3f "$1" errors)" = 0 ] &&
    [ "$(g3f "$1" counter)" -gt "${2:-0}" ] 2>/dev/null
}
# g3_counts DOMID: g3_ok, and the counter moves within 10 s.
g3_counts() {
  _c=$(g3f "$1" counter)
  [ -n "$_c" ] && waitfor 10 g3_ok "$1" "$_c"
}
# g3_resumed PATTERN N: the console holds N lines matching PATTERN.
# (Not n for a count here: waitfor uses it.)
g3_resumed() {
  [ "$(grep -c "$1" /var/log/xen/console/guest-g3.log 2>/dev/null)" -ge "$2" ]
}
# g3_config FILE VCPUS: the built-in guest's config, the counter workload.
g3_config() {
  cat >"$1" <<EOF3
name = "g3"
type = "pvh"
kernel = "/usr/lib/xtk/xtk-guest.elf"
extra = "workload=counter"
memory = 32
vcpus = $2
on_poweroff = "destroy"
EOF3
}
builtin() {
  g3log=/var/log/xen/console/guest-g3.log
  g3_config /etc/xen/g3.cfg 2
  t=$(now)
  d3=
  if xl create /etc/xen/g3.cfg >/run/xl-create-g3.log 2>&1; then
    d3=$(domid_of g3)
  fi
  port=
  if [ -n "$d3" ] && waitfor 60 grep -q 'xtk-guest: running' "$g3log" &&
    g3_counts "$d3" && [ "$(g3f "$d3" vcpus)" = 2 ] &&
    port=$(xenstore-read "/local/domain/$d3/device/suspend/event-channel") &&
    [ -n "$port" ]; then
    ok builtin-boot "domain $d3 up in $(since "$t") s, suspend port $port: $(g3st "$d3")"
  else
    bad builtin-boot "domain '$d3': $(g3st "$d3"); port '$port'; $(tail -n 5 /run/xl-create-g3.log | tr '\n' ';') console: $(tail -n 5 "$g3log" | tr '\n' ';')"
    return
  fi

  s0=$(g3f "$d3" suspends)
  t=$(now)
  if XTK_BACKEND=xen timeout 300 xtk-save -c -l -I 100 -N 5 --suspend evtchn \
    g3 /dev/null 2>/run/xtk-g3-ckpt.log && g3_counts "$d3" &&
    [ "$(g3f "$d3" suspends)" -ge "$((s0 + 5))" ] &&
    [ "$(g3f "$d3" suspends)" = "$(g3f "$d3" resumes)" ]; then
    ok builtin-checkpoint "5 checkpoints in $(since "$t") s: $(g3st "$d3"); $(grep -E '^ *(suspend|final round) \(us\)' /run/xtk-g3-ckpt.log | tr -s ' ' | tr '\n' ';')"
  else
    bad builtin-checkpoint "$(g3st "$d3"); $(tail -n 5 /run/xtk-g3-ckpt.log | tr '\n' ';')"
  fi

  old=$d3
  nl=$(grep -c 'resumed in a new domain' "$g3log")
  mv=$(g3f "$d3" moves)
  t=$(now)
  xsw=
  if XTK_BACKEND=xen timeout 300 xtk-save -v --suspend evtchn --format xl g3 \
    /run/g3.xl 2>/run/xtk-g3-save.log && xsw=$(since "$t") &&
    waitfor 30 gone "$old" &&
    scan_bounded /run/xtk-g3-save.log &&
    xl restore /run/g3.xl >/run/xl-restore-g3.log 2>&1 &&
    d3=$(domid_of g3) && g3_counts "$d3" && [ "$(g3f "$d3" moves)" = "$((mv + 1))" ] &&
    waitfor 10 g3_resumed 'resumed in a new domain' "$((nl + 1))"; then
    export_file /run/g3.xl g3.xl
    ok builtin-save "domain $old saved by xtk-save ($(wc -c </run/g3.xl) bytes), xl restored it as $d3 in $(since "$t") s (xtk-save's wall $xsw s): $(g3st "$d3"); $(scan_line /run/xtk-g3-save.log); $(grep -o 'its guard started in [0-9.]* ms' /run/xtk-g3-save.log | head -n 1); phases (ms since start, since the one before): $(grep -E '^  [a-z][a-z ]* +[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+$' /run/xtk-g3-save.log | tr -s ' ' | tr '\n' ';') $(grep -E '^ *(suspend|final round|downtime) \(us\)' /run/xtk-g3-save.log | tr -s ' ' | tr '\n' ';')"
  else
    bad builtin-save "domain $old -> '$d3': $(g3st "$d3"); scan: '$(scan_line /run/xtk-g3-save.log)'; resume lines $nl -> $(grep -c 'resumed in a new domain' "$g3log"), moves $mv; console port $(xenstore-read /local/domain/$d3/console/port 2>&1), $(xl dmesg | grep -c "(d$d3)") lines from it in xl dmesg; $(tail -n 5 /run/xtk-g3-save.log | tr '\n' ';') $(tail -n 3 /run/xl-restore-g3.log | tr '\n' ';')"
    d3=$(domid_of g3) || return
  fi
  rm -f /run/g3.xl

  old=$d3
  nl=$(grep -c 'resumed in a new domain' "$g3log")
  mv=$(g3f "$d3" moves)
  t=$(now)
  if xl save g3 /run/g3-xl.save >/run/xl-save-g3.log 2>&1 &&
    xlw=$(since "$t") && waitfor 30 gone "$old" &&
    XTK_BACKEND=xen timeout 300 xtk-restore /run/g3-xl.save \
      >/run/xtk-restore-g3.out 2>/run/xl-restore-g3.log &&
    d3=$(cat /run/xtk-restore-g3.out) && [ -n "$d3" ] && introduced "$d3" &&
    g3_counts "$d3" && [ "$(g3f "$d3" moves)" = "$((mv + 1))" ] &&
    waitfor 10 g3_resumed 'resumed in a new domain' "$((nl + 1))"; then
    ok builtin-xl "xl save, then xtk-restore: domain $old -> $d3 in $(since "$t") s (xl save's wall $xlw s, xtk-save's above ${xsw:-?} s): $(g3st "$d3")"
  else
    bad builtin-xl "domain $old -> '$d3': $(g3st "$d3"); resume lines $nl -> $(grep -c 'resumed in a new domain' "$g3log"), moves $mv; console port $(xenstore-read /local/domain/$d3/console/port 2>&1), $(xl dmesg | grep -c "(d$d3)") lines from it in xl dmesg; $(tail -n 3 /run/xl-save-g3.log | tr '\n' ';') $(tail -n 3 /run/xl-restore-g3.log | tr '\n' ';')"
    d3=$(domid_of g3) || return
  fi
  rm -f /run/g3-xl.save

  # xl's text config in the file (xtk-save --config, as xl save DOM FILE
  # CONFIG writes): a copy that gives the guest a channel (a device xtk
  # does not build) is refused whole by xtk-restore (the guest saved with -c runs on), then
  # the guest's own config restores it.
  old=$d3
  mv=$(g3f "$d3" moves)
  nl=$(grep -c 'resumed in a new domain' "$g3log")
  sed 's/^name = .*/name = "g3d"/' /etc/xen/g3.cfg >/run/g3-dev.cfg
  echo "channel = [ 'name=org.xtk.test, connection=pty' ]" >>/run/g3-dev.cfg
  t=$(now)
  tx=
  if XTK_BACKEND=xen timeout 300 xtk-save -c --suspend evtchn --format xl \
    --config /run/g3-dev.cfg g3 /run/g3d.xl 2>/run/xtk-g3d-save.log &&
    ! XTK_BACKEND=xen timeout 300 xtk-restore /run/g3d.xl \
      >/dev/null 2>/run/xtk-g3d-restore.log &&
    grep -q "gives the guest devices ('channel')" /run/xtk-g3d-restore.log &&
    ! xl domid g3d >/dev/null 2>&1 && g3_counts "$d3"; then
    tx="a config with a channel refused: $(grep -o "error: .*" /run/xtk-g3d-restore.log | head -n 1 | cut -c1-120);"
  fi
  rm -f /run/g3d.xl
  if [ -n "$tx" ] &&
    XTK_BACKEND=xen timeout 300 xtk-save --suspend evtchn --format xl \
      --config /etc/xen/g3.cfg g3 /run/g3t.xl 2>/run/xtk-g3t-save.log &&
    waitfor 30 gone "$old" &&
    XTK_BACKEND=xen timeout 300 xtk-restore /run/g3t.xl \
      >/run/xtk-g3t.out 2>/run/xtk-g3t-restore.log &&
    d3=$(cat /run/xtk-g3t.out) && [ -n "$d3" ] && introduced "$d3" &&
    g3_counts "$d3" && [ "$(g3f "$d3" moves)" = "$((mv + 1))" ] &&
    waitfor 10 g3_resumed 'resumed in a new domain' "$((nl + 1))"; then
    ok builtin-text "$tx xtk-save --config (xl's text), then xtk-restore: domain $old -> $d3 in $(since "$t") s: $(g3st "$d3")"
  else
    bad builtin-text "domain $old -> '$d3': $(g3st "$d3"); refusal: '$tx' $(tail -n 2 /run/xtk-g3d-save.log /run/xtk-g3d-restore.log | tr '\n' ';'); $(tail -n 3 /run/xtk-g3t-save.log /run/xtk-g3t-restore.log | tr '\n' ';')"
    xl destroy g3d >/dev/null 2>&1
    d3=$(domid_of g3) || return
  fi
  rm -f /run/g3t.xl

  old=$d3
  rm -f /run/bk3.port
  XTK_BACKEND=xen timeout 300 xtk-restore -v --name g3m --port-file /run/bk3.port \
    listen:127.0.0.1:0 >/run/xtk-g3m.out 2>/run/xtk-g3m.log &
  bp3=$!
  t=$(now)
  if waitfor 30 test -s /run/bk3.port &&
    XTK_BACKEND=xen timeout 300 xtk-save --live --suspend evtchn --format xl \
      g3 "tcp:127.0.0.1:$(cat /run/bk3.port)" 2>/run/xtk-g3-migrate.log &&
    wait "$bp3" && d3=$(cat /run/xtk-g3m.out) && [ -n "$d3" ] &&
    waitfor 30 gone "$old" && xl rename g3m g3 && g3_counts "$d3"; then
    ok builtin-migrate "domain $old -> $d3 in $(since "$t") s: $(g3st "$d3"); $(grep -E '^ *(final round|downtime) ' /run/xtk-g3-migrate.log | tr -s ' ' | tr '\n' ';')"
    # Where the stop went: the source's phases from the request on, the
    # destination's from the END on.
    echo "XTK-NOTE builtin-migrate, source: $(sed -n '/suspend requested/,/^$/p' /run/xtk-g3-migrate.log | tr -s ' ' | tr '\n' ';' | cut -c1-600)"
    echo "XTK-NOTE builtin-migrate, destination: $(sed -n '/end received/,/^$/p' /run/xtk-g3m.log | tr -s ' ' | tr '\n' ';' | cut -c1-400) $(grep -E 'ring-refs written|unpaused' /run/xtk-g3m.log | tr '\n' ';')"
  else
    bad builtin-migrate "domain $old -> '$d3': $(g3st "$d3"); save: $(tail -n 5 /run/xtk-g3-migrate.log | tr '\n' ';') restore: $(tail -n 5 /run/xtk-g3m.log | tr '\n' ';')"
    kill "$bp3" 2>/dev/null
    d3=$(domid_of g3) || d3=$(domid_of g3m) || return
  fi

  t=$(now)
  if xl destroy "$d3" >/run/xl-destroy-g3.log 2>&1 && waitfor 30 gone "$d3"; then
    ok builtin-destroy "domain $d3 gone in $(since "$t") s"
  else
    bad builtin-destroy "domain $d3: $(xl list 2>&1 | tr '\n' ';')"
  fi
}

# ---- the built-in guest's spin lock on Xen (issue 15) --------------------
# g5: 4 vCPUs sharing this machine's CPU(s) with dom0, every vCPU taking
# the guest's lock in turn and holding it a while (hold=64).  A waiter
# that finds the holder preempted (RUNSTATE_runnable in the holder's
# runstate area, which Xen keeps) must see it and step aside
# (SCHEDOP_yield); then 10 checkpoints of it, each passing its self-check,
# its other vCPUs stopped by Xen where they were (the guest counts the
# suspends it said with them not parked); then saved so, mid-lock, and
# restored by xtk-restore as a new domain, which goes on taking its lock.
# g5_moved DOMID N: the guest has resumed N times in a new domain.
g5_moved() { [ "$(g3f "$1" moves)" = "$2" ]; }
builtin_spin() {
  g5log=/var/log/xen/console/guest-g5.log
  cat >/etc/xen/g5.cfg <<'EOF5'
name = "g5"
type = "pvh"
kernel = "/usr/lib/xtk/xtk-guest.elf"
extra = "workload=spin hold=64"
memory = 32
vcpus = 4
on_poweroff = "destroy"
EOF5
  t=$(now)
  d5=
  if xl create /etc/xen/g5.cfg >/run/xl-create-g5.log 2>&1; then
    d5=$(domid_of g5)
  fi
  if [ -n "$d5" ] && waitfor 60 grep -q 'xtk-guest: running' "$g5log" &&
    sleep 3 && [ "$(g3f "$d5" state)" = 1 ] &&
    [ "$(g3f "$d5" errors)" = 0 ] && [ "$(g3f "$d5" vcpus)" = 4 ] &&
    [ "$(g3f "$d5" pv_used)" = 6 ] && [ "$(g3f "$d5" saw)" -gt 0 ] &&
    [ "$(g3f "$d5" yields)" -gt 0 ]; then
    ok builtin-spin "domain $d5 up in $(since "$t") s, its waiters see preempted holders and yield: $(g3st "$d5")"
  else
    bad builtin-spin "domain '$d5': $(g3st "$d5"); $(tail -n 3 /run/xl-create-g5.log | tr '\n' ';') console: $(tail -n 5 "$g5log" | tr '\n' ';')"
    [ -n "$d5" ] && xl destroy "$d5" >/dev/null 2>&1
    return
  fi
  s0=$(g3f "$d5" suspends)
  t=$(now)
  if XTK_BACKEND=xen timeout 300 xtk-save -c -l -I 50 -N 10 --suspend evtchn \
    g5 /dev/null 2>/run/xtk-g5-ckpt.log && sleep 1 &&
    [ "$(g3f "$d5" state)" = 1 ] && [ "$(g3f "$d5" errors)" = 0 ] &&
    [ "$(g3f "$d5" suspends)" -ge "$((s0 + 10))" ] &&
    [ "$(g3f "$d5" suspends)" = "$(g3f "$d5" resumes)" ] &&
    [ "$(g3f "$d5" unparked)" -gt 0 ]; then
    ok builtin-spin-checkpoint "10 checkpoints in $(since "$t") s: $(g3st "$d5"); $(grep -E '^ *suspend \(us\)' /run/xtk-g5-ckpt.log | tr -s ' ' | tr '\n' ';')"
  else
    bad builtin-spin-checkpoint "$(g3st "$d5"); $(tail -n 5 /run/xtk-g5-ckpt.log | tr '\n' ';')"
  fi

  old=$d5
  mv=$(g3f "$d5" moves)
  u0=$(g3f "$d5" unparked)
  t=$(now)
  a=
  if XTK_BACKEND=xen timeout 300 xtk-save --suspend evtchn --format xl g5 \
    /run/g5.xl 2>/run/xtk-g5-save.log && waitfor 30 gone "$old" &&
    XTK_BACKEND=xen timeout 300 xtk-restore /run/g5.xl \
      >/run/xtk-g5-restore.out 2>/run/xtk-g5-restore.log &&
    d5=$(cat /run/xtk-g5-restore.out) && [ -n "$d5" ] &&
    waitfor 10 g5_moved "$d5" "$((mv + 1))" && a=$(g3f "$d5" lock_acq) && sleep 2 && [ "$(g3f "$d5" state)" = 1 ] &&
    [ "$(g3f "$d5" errors)" = 0 ] && [ "$(g3f "$d5" lock_acq)" -gt "$a" ] &&
    [ "$(g3f "$d5" unparked)" -gt "$u0" ]; then
    ok builtin-spin-restore "saved with its vCPUs stopped where they were, restored as domain $d5 in $(since "$t") s: $(g3st "$d5")"
  else
    bad builtin-spin-restore "domain $old -> '$d5' (lock_acq '$a'): $(g3st "$d5"); $(tail -n 3 /run/xtk-g5-save.log /run/xtk-g5-restore.log | tr '\n' ';')"
    d5=$(domid_of g5) || d5=$old
  fi
  rm -f /run/g5.xl
  xl destroy "$d5" >/dev/null 2>&1
  waitfor 30 gone "$d5"
}

# ---- xtk-restore of a PV guest: libxenguest's restore, fed by xtk --------
# g1_config: the PV guest's config (Debian's cloud kernel, tests/xen/domu-init.sh).
g1_config() {
  cat >/etc/xen/g1.cfg <<'EOF'
name = "g1"
type = "pv"
kernel = "/var/lib/xtk/vmlinuz-domu"
ramdisk = "/var/lib/xtk/domu.cpio"
extra = "console=hvc0 rdinit=/init"
memory = 128
vcpus = 1
on_poweroff = "destroy"
EOF
}
#   xtk-restore-pv      xl save of the PV guest g1, then xtk-restore of the
#                       file: xtk builds the PV domain from the file's
#                       config and feeds the checked records to
#                       libxenguest's restore; the guest counts on
#   xtk-restore-pv-bad  copies of that file cut in its memory and just
#                       before its END are refused, and leave no domain
# cut_check CHECK FILE NAME: xtk-restore of FILE (guest NAME's) cut in its
# memory and just before its END: each refused, with no domain and no
# /libxl node left (check CHECK).  Sets n0 and l0: the domains and the
# /libxl nodes before.
cut_check() {
  size=$(wc -c <"$2")
  n0=$(xl list 2>/dev/null | tail -n +2 | wc -l)
  l0=$(xenstore-list /libxl 2>/dev/null | tr '\n' ' ')
  why=
  msg=
  for cut in $((size / 2)) $((size - 24)); do
    head -c "$cut" "$2" >/run/cut.save
    if XTK_BACKEND=xen timeout 300 xtk-restore /run/cut.save >/run/$1.out \
      2>/run/$1.log; then
      why="$why a copy cut at $cut of $size bytes restored;"
      xl destroy "$(cat /run/$1.out)" 2>/dev/null
    elif [ "$(xl list 2>/dev/null | tail -n +2 | wc -l)" != "$n0" ] ||
      xl domid "$3" >/dev/null 2>&1 ||
      [ "$(xenstore-list /libxl 2>/dev/null | tr '\n' ' ')" != "$l0" ]; then
      why="$why cut at $cut: a domain is left: $(xl list | tr '\n' ';') /libxl: $(xenstore-list /libxl | tr '\n' ' ');"
    else
      msg="$msg [$cut: $(grep -E 'error' /run/$1.log | tail -n 1)]"
    fi
  done
  rm -f /run/cut.save
  if [ -z "$why" ]; then
    ok "$1" "truncated copies refused, no domain left:$msg"
  else
    bad "$1" "$why"
  fi
}
# pv_checks: with g1 running as domain $domid; sets domid.
pv_checks() {
  if [ -z "$domid" ] || ! xl save g1 /run/g1-pv.save >/run/xl-save-pv.log 2>&1 ||
    ! waitfor 30 gone "$domid"; then
    bad xtk-restore-pv "xl save of g1 '$domid': $(tail -n 3 /run/xl-save-pv.log | tr '\n' ';')"
    bad xtk-restore-pv-bad "nothing to restore"
    domid=$(domid_of g1)
    return
  fi
  cut_check xtk-restore-pv-bad /run/g1-pv.save g1
  before=$(counter)
  t=$(now)
  domid=
  if XTK_BACKEND=xen timeout 300 xtk-restore /run/g1-pv.save \
    >/run/xtk-restore-pv.out 2>/run/xtk-restore-pv.log; then
    domid=$(cat /run/xtk-restore-pv.out)
  fi
  if [ -n "$domid" ] && introduced "$domid" &&
    waitfor 120 counter_above "$((${before:-0} + 1))"; then
    ok xtk-restore-pv "domain $domid restored by xtk-restore (libxenguest's restore) in $(since "$t") s, counter $before -> $(counter); $(grep -E '^ *(domain created|end received|resumed) ' /run/xtk-restore-pv.log | tr -s ' ' | tr '\n' ';')"
  else
    bad xtk-restore-pv "domain '$domid': counter $before -> $(counter); $(tail -n 8 /run/xtk-restore-pv.log | tr '\n' ';')"
    [ -n "$domid" ] && xl destroy "$domid" 2>/dev/null
    xl restore /run/g1-pv.save >/dev/null 2>&1
    domid=$(domid_of g1)
  fi
  rm -f /run/g1-pv.save
}

# domains: how many Xen has (dom0 included).
domains() { xl list 2>/dev/null | tail -n +2 | wc -l; }
# reap PID SECONDS: PID's exit status once it has exited, polled (never a
# blocking wait: a process stuck in the kernel would hold the whole run),
# or 124 if it still runs after SECONDS.
reap() {
  waitfor "$2" sh -c "! kill -0 $1" || return 124
  wait "$1"
}
# backup_start NAME [-v]: an xtk-restore for NAME listening on a port of
# 127.0.0.1 (the port in /run/bk.port, its pid in $bp).
backup_start() {
  rm -f /run/bk.port
  XTK_BACKEND=xen timeout -k 10 600 xtk-restore $2 --name "$1" \
    --port-file /run/bk.port listen:127.0.0.1:0 >/run/xtk-$1.out \
    2>/run/xtk-$1.log &
  bp=$!
  waitfor 30 test -s /run/bk.port
}
# ---- devices: a Linux PVH guest with a disk and a network interface -----
# g4 (Debian's cloud kernel, tests/xen/domu-init.sh with xtk.dev=) has a
# 4 MiB disk, a file in dom0 served by blkback through a loop device (Xen's
# block script), and a vif on the bridge xenbr0 (Xen's vif-bridge
# script).  The guest writes its counter to the disk's first sector every
# second; dom0 pings it.  xtk's domain builder adds both devices through
# libxl in each restore:
#   dev-create        xl create of g4: its counter on the disk, a ping
#   dev-xl-xtk        xl save -> xtk-restore: the disk's counter goes on,
#                     the guest answers pings
#   dev-missing       that file restored where its disk is missing: refused
#                     before the guest runs, naming the disk; no domain,
#                     no backend, no loop device left
#   dev-migrate       xtk-save --live -> xtk-restore over TCP on this
#                     host (the disk open read-write in both domains of
#                     the same VM for a moment, as block's sharing check
#                     allows): the source is gone, the destination's disk
#                     and network work
#   dev-text          xtk-save --config (xl's text, with the disk and vif
#                     lines) -> xtk-restore: the same
#   dev-held          xtk-save --live -I 300 to a backup with g4's network
#                     output held (sch_plug on an ifb its vif's packets
#                     are redirected to): xtk-save killed (-9) after 4
#                     epochs, the primary runs on with its datagrams held
#                     (none reaches dom0); fenced by xtk destroy (the ifb
#                     goes too), the backup promoted: dom0 never sees a
#                     datagram number twice
#   dev-destroy       xl destroy: the backends and loop devices go
g4_disk() {
  dd if=/run/g4.img bs=512 count=1 2>/dev/null | tr -d '\000' |
    sed -n 's/^xtk-disk \([0-9]*\)$/\1/p'
}
g4_disk_above() { [ "$(g4_disk)" -gt "$1" ] 2>/dev/null; }
g4_ping() { ping -c 1 -W 2 10.99.0.2 >/dev/null 2>&1; }
# g4_works CHECK T0 OLD: the restored g4 (domain $d4) writes its disk on
# and answers a ping.
g4_works() {
  local before
  before=$(g4_disk)
  if [ -n "$d4" ] && introduced "$d4" &&
    waitfor 120 g4_disk_above "$((${before:-0} + 1))" && waitfor 60 g4_ping; then
    ok "$1" "domain $3 -> $d4 in $(since "$2") s: disk counter $before -> $(g4_disk), pings answered; backends: vbd $(xenstore-list /local/domain/0/backend/vbd/$d4 2>/dev/null | tr '\n' ' ')vif $(xenstore-list /local/domain/0/backend/vif/$d4 2>/dev/null | tr '\n' ' '); $(losetup -a 2>/dev/null | wc -l) loop device(s)"
  else
    bad "$1" "domain $3 -> '$d4': disk counter $before -> $(g4_disk); ping $(g4_ping && echo ok || echo none); vbd state $(xenstore-read /local/domain/0/backend/vbd/$d4/51712/state 2>&1), vif state $(xenstore-read /local/domain/0/backend/vif/$d4/0/state 2>&1); $(tail -n 6 /run/$1.log 2>/dev/null | tr '\n' ';')"
  fi
}
# dev_setup [EXTRA]: dom0's backends, the bridge xenbr0, g4's disk and its
# config (EXTRA appended to its kernel command line).
dev_setup() {
  local m
  for m in loop xen-blkback xen-netback llc stp bridge sch_ingress \
    cls_matchall act_mirred sch_plug; do
    insmod "/lib/modules/dev/$m.ko" || echo "XTK-NOTE insmod $m failed"
  done
  # (no ifb0 and ifb1 of its own: xtk makes the ifbs it holds output on)
  insmod /lib/modules/dev/ifb.ko numifbs=0 || echo "XTK-NOTE insmod ifb failed"
  ip link add xenbr0 type bridge && ip addr add 10.99.0.1/24 dev xenbr0 &&
    ip link set xenbr0 up || echo "XTK-NOTE no bridge xenbr0"
  dd if=/dev/zero of=/run/g4.img bs=1M count=4 2>/dev/null
  cat >/etc/xen/g4.cfg <<'EOF'
name = "g4"
type = "pvh"
kernel = "/var/lib/xtk/vmlinuz-domu"
ramdisk = "/var/lib/xtk/domu.cpio"
extra = "console=hvc0 rdinit=/init xtk.dev=10.99.0.2 EXTRA"
memory = 128
vcpus = 1
cpuid = "host,rdtscp=0"
on_poweroff = "destroy"
disk = [ 'format=raw, vdev=xvda, access=rw, target=/run/g4.img' ]
vif = [ 'bridge=xenbr0, mac=00:16:3e:00:00:04' ]
EOF
  sed -i "s/ EXTRA\"/${1:+ $1}\"/" /etc/xen/g4.cfg
}
# udp_n: the datagrams dom0 has from g4 (xtk-udp record).
udp_n() { wc -l </run/udp.log 2>/dev/null || echo 0; }
udp_above() { [ "$(udp_n)" -gt "$1" ]; }
# dev_held: checkpoints of g4 (domain $d4) to a backup with its network
# output held (dev-held); $d4 the domain that runs g4 after.
dev_held() {
  local t th hs old held= refused= bk= n0 n1 n2 c0 ifb v
  old=$d4
  t=$(now)
  rm -f /run/udp.log
  xtk-udp record 10.99.0.1 7001 /run/udp.log &
  rp=$!
  if [ -z "$old" ] || ! waitfor 60 udp_above 20 || ! backup_start g4f -v; then
    bad dev-held "g4 '$old' sends $(udp_n) datagrams, or no backup listening"
    kill "$rp" 2>/dev/null
    return
  fi
  ifb=xtkb$old.0
  XTK_BACKEND=xen xtk-save --live -I 300 --suspend store --format xl g4 \
    "tcp:127.0.0.1:$(cat /run/bk.port)" 2>/run/dev-held-save.log &
  sp=$!
  if waitfor 180 grep -q 'epoch 4 complete' /run/xtk-g4f.log &&
    ip link show "$ifb" >/dev/null 2>&1; then
    # While the save lives, nobody else ends its hold.
    refused=
    ! XTK_BACKEND=xen xtk output g4 release 2>/run/dev-held-output.log &&
      grep -q 'running save holds' /run/dev-held-output.log && refused=1
    kill -9 "$sp" 2>/dev/null
    reap "$sp" 30 2>/dev/null
    # The primary runs on (given back by xtk-save's guard), its output
    # held in the kernel: no datagram of it reaches dom0 while its disk
    # counter moves on.
    sleep 1
    n0=$(udp_n)
    th=$(now)
    c0=$(g4_disk)
    waitfor 90 g4_disk_above "$((${c0:-0} + 2))" && sleep 1
    n1=$(udp_n)
    hs=$(since "$th")
    [ "$n1" = "$n0" ] && g4_disk_above "$((${c0:-0} + 1))" &&
      ip link show "$ifb" >/dev/null 2>&1 && held=1
    # The fence (xtk destroy: the held output goes with the domain),
    # then the backup promoted runs the last complete epoch.
    XTK_BACKEND=xen xtk destroy "$old" >/run/dev-held-destroy.log 2>&1
    waitfor 30 gone "$old"
    ip link show "$ifb" >/dev/null 2>&1 && held="$held, $ifb left"
    t=$(now)
    kill -USR1 "$bp" 2>/dev/null
    reap "$bp" 320 && bk=$(cat /run/xtk-g4f.out)
    # What dom0 saw: numbers that only go up (a number again would be
    # output of an epoch the backup did not have: the copy that ran it
    # died and the backup ran it again); a gap is a datagram lost.
    if [ -n "$bk" ] && waitfor 120 udp_above "$((n1 + 20))"; then
      n2=$(udp_n)
      v=$(awk 'NR == 1 { m = $1; next }
        $1 <= m { r++ } $1 > m + 1 { g += $1 - m - 1 } $1 > m { m = $1 }
        END { printf "%d %d %d", r, g, m }' /run/udp.log)
    fi
    set -- $v
    if [ "$held" = 1 ] && [ "$refused" = 1 ] && [ -n "$bk" ] &&
      [ "${1:-x}" = 0 ] && xl rename g4f g4; then
      d4=$bk
      ok dev-held "xtk output refused while the save held; the primary killed (-9) after 4 epochs ran on with its output held (no datagram in $hs s while its disk counter went on from $c0; $n0 datagrams before); fenced (xtk destroy, $ifb gone) and the backup promoted (domain $bk, running $(since "$t") s after): $n2 datagrams, none repeated, up to $3, $2 lost"
    else
      bad dev-held "held '$held', xtk output refused '$refused' ($(head -c 200 /run/dev-held-output.log)) ($n0 -> $n1 datagrams, disk $c0 -> $(g4_disk)), backup '$bk', repeated/lost/last: '$v'; save: $(grep -v debug /run/dev-held-save.log | tail -n 4 | tr '\n' ';') backup: $(grep -v debug /run/xtk-g4f.log | tail -n 4 | tr '\n' ';')"
      [ -n "$bk" ] && xl destroy "$bk" >/dev/null 2>&1
      d4=
    fi
  else
    bad dev-held "no fourth epoch at the backup, or no $ifb: save: $(grep -v debug /run/dev-held-save.log | tail -n 5 | tr '\n' ';') backup: $(grep -v debug /run/xtk-g4f.log | tail -n 5 | tr '\n' ';') links: $(ip -o link show | cut -d: -f2 | tr '\n' ' ')"
    kill -9 "$sp" "$bp" 2>/dev/null
    reap "$sp" 30 2>/dev/null
    # (what the killed save held, so that the checks after see g4 work)
    XTK_BACKEND=xen xtk output g4 release 2>/dev/null
    d4=$(domid_of g4)
  fi
  kill "$rp" 2>/dev/null
}
devices() {
  local m t old con=/var/log/xen/console
  dev_setup xtk.udp=10.99.0.1:7001
  t=$(now)
  d4=
  xl -vvv create /etc/xen/g4.cfg >/run/xl-create-g4.log 2>&1 && d4=$(domid_of g4)
  if [ -n "$d4" ] && waitfor 120 g4_disk_above 1 && waitfor 60 g4_ping; then
    ok dev-create "domain $d4 up in $(since "$t") s: disk counter $(g4_disk), pings answered; $(grep -h 'xtk-domu: eth0' $con/guest-g4.log | head -n 1)"
  else
    bad dev-create "g4 '$d4': disk counter '$(g4_disk)', ping $(g4_ping && echo ok || echo none); $(grep -E 'error|hotplug' /run/xl-create-g4.log | head -n 8 | tr '\n' ';') console: $(tail -n 5 $con/guest-g4.log 2>/dev/null | tr '\n' ';')"
    [ -n "$d4" ] && xl destroy "$d4" 2>/dev/null
    for m in dev-xl-xtk dev-missing dev-migrate dev-text dev-held dev-destroy; do
      bad $m "no guest"
    done
    return
  fi

  # xl save -> xtk-restore
  old=$d4
  t=$(now)
  if xl save g4 /run/g4.save >/run/xl-save-g4.log 2>&1 && waitfor 30 gone "$old" &&
    XTK_BACKEND=xen timeout 300 xtk-restore /run/g4.save >/run/dev-xl-xtk.out \
      2>/run/dev-xl-xtk.log; then
    d4=$(cat /run/dev-xl-xtk.out)
  else
    d4=$(domid_of g4)
    tail -n 3 /run/xl-save-g4.log >>/run/dev-xl-xtk.log
  fi
  g4_works dev-xl-xtk "$t" "$old"

  # A copy of that file restored where its disk is missing: refused at
  # once, naming the disk; nothing left behind.
  n0=$(domains)
  l0=$(losetup -a 2>/dev/null | wc -l)
  mv /run/g4.img /run/g4.away
  if ! XTK_BACKEND=xen timeout 300 xtk-restore --name g4x /run/g4.save \
    >/dev/null 2>/run/dev-missing.log &&
    grep -q 'disk xvda (/run/g4.img)' /run/dev-missing.log &&
    [ "$(domains)" = "$n0" ] && ! xl domid g4x >/dev/null 2>&1 &&
    [ "$(losetup -a 2>/dev/null | wc -l)" = "$l0" ] &&
    [ "$(xenstore-list /local/domain/0/backend/vbd 2>/dev/null | wc -l)" = 1 ]; then
    ok dev-missing "refused: $(grep -o 'error: .*disk xvda.*' /run/dev-missing.log | head -n 1 | cut -c1-240)"
  else
    bad dev-missing "domains $n0 -> $(domains), loop devices $l0 -> $(losetup -a 2>/dev/null | wc -l), vbd backends of $(xenstore-list /local/domain/0/backend/vbd 2>/dev/null | tr '\n' ' '); $(tail -n 4 /run/dev-missing.log | tr '\n' ';')"
    xl destroy g4x 2>/dev/null
  fi
  mv /run/g4.away /run/g4.img
  rm -f /run/g4.save

  # xtk-save --live -> xtk-restore on this host
  old=$d4
  t=$(now)
  d4=
  if [ -n "$old" ] && backup_start g4m &&
    XTK_BACKEND=xen timeout 300 xtk-save --live --suspend store --format xl \
      g4 "tcp:127.0.0.1:$(cat /run/bk.port)" 2>/run/dev-migrate-save.log &&
    reap "$bp" 320 && d4=$(cat /run/xtk-g4m.out) && [ -n "$d4" ] &&
    waitfor 30 gone "$old" && xl rename g4m g4; then
    cp /run/xtk-g4m.log /run/dev-migrate.log
  else
    kill "$bp" 2>/dev/null
    cat /run/dev-migrate-save.log /run/xtk-g4m.log >/run/dev-migrate.log 2>/dev/null
    d4=$(domid_of g4)
  fi
  g4_works dev-migrate "$t" "$old"

  # xtk-save --config (xl's text, with disk and vif) -> xtk-restore
  old=$d4
  t=$(now)
  if [ -n "$old" ] && XTK_BACKEND=xen timeout 300 xtk-save --suspend store \
    --format xl --config /etc/xen/g4.cfg g4 /run/g4t.xl 2>/run/dev-text-save.log &&
    waitfor 30 gone "$old" &&
    XTK_BACKEND=xen timeout 300 xtk-restore /run/g4t.xl >/run/dev-text.out \
      2>/run/dev-text.log; then
    d4=$(cat /run/dev-text.out)
  else
    d4=$(domid_of g4)
    tail -n 3 /run/dev-text-save.log >>/run/dev-text.log 2>/dev/null
  fi
  [ -s /run/g4t.xl ] && export_file /run/g4t.xl g4t.xl
  rm -f /run/g4t.xl
  g4_works dev-text "$t" "$old"

  dev_held

  # xl destroy of the last one: its backends and loop device go with it
  t=$(now)
  if [ -n "$d4" ] && xl destroy g4 2>/run/dev-destroy.log && waitfor 30 gone "$d4" &&
    waitfor 30 sh -c '[ -z "$(losetup -a)" ]' &&
    [ -z "$(xenstore-list /local/domain/0/backend/vbd 2>/dev/null)" ] &&
    [ -z "$(xenstore-list /local/domain/0/backend/vif 2>/dev/null)" ]; then
    ok dev-destroy "domain $d4 gone in $(since "$t") s, no backend and no loop device left"
  else
    bad dev-destroy "domain '$d4': $(xl list 2>&1 | tr '\n' ';') loop: $(losetup -a 2>&1 | tr '\n' ';') vbd: $(xenstore-list /local/domain/0/backend/vbd 2>&1 | tr '\n' ' ') vif: $(xenstore-list /local/domain/0/backend/vif 2>&1 | tr '\n' ' ')"
    [ -n "$d4" ] && xl destroy "$d4" 2>/dev/null
  fi
  rm -f /run/g4.img
}

# xtk.only=a list of builtin, spin, pv and devices on dom0's command line
# (XTK_XEN_ONLY, for work on one part, and CI's sanitizer pass): the PV
# guest's restore, the built-in guest's checks, the SMP built-in guest's,
# the devices guest's, or several, alone.
only=$(sed -n 's/.*xtk\.only=\([a-z,]*\).*/\1/p' /proc/cmdline)
bench=$(sed -n 's/.*xtk\.bench=\([0-9]*\).*/\1/p' /proc/cmdline)
# With xtk.bench too: the benchmark's built-in guest rounds alone.
[ -n "$bench" ] && [ "$only" = builtin ] && bench_builtin=1 && . /bench.sh
# ... or the devices guest's (g4: a disk and a vif) migrations alone.
[ -n "$bench" ] && [ "$only" = devices ] && bench_devices=1 && . /bench.sh
# ... or the SMP built-in guests' suspend and lock (issue 15).
[ -n "$bench" ] && [ "$only" = smp ] && bench_smp=1 && . /bench.sh
if [ -n "$only" ]; then
  case ",$only," in
  *,pv,*)
    g1_config
    domid=
    xl create /etc/xen/g1.cfg >/run/xl-create.log 2>&1 && domid=$(domid_of g1)
    if [ -n "$domid" ] && waitfor 90 counter_above 1; then
      ok xl-create "PV domain $domid counts"
    else
      bad xl-create "g1: $(tail -n 5 /run/xl-create.log | tr '\n' ';')"
    fi
    pv_checks
    [ -n "$domid" ] && xl destroy "$domid" 2>/dev/null
    ;;
  esac
  case ",$only," in *,builtin,*) builtin ;; esac
  case ",$only," in *,spin,*) builtin_spin ;; esac
  case ",$only," in *,devices,*) devices ;; esac
  finish
fi

# ---- a PV guest: its kernel talks to xsd-lite over its ring -------------
g1_config
watch_start intro @introduceDomain
t=$(now)
domid=
if xl -vvv create /etc/xen/g1.cfg >/run/xl-create.log 2>&1; then
  domid=$(xl domid g1 2>/dev/null)
  ok xl-create "domain $domid in $(since "$t") s"
else
  bad xl-create "exit $?: $(tail -n 5 /run/xl-create.log)"
fi
if [ -n "$domid" ] && watch_fired intro && introduced "$domid"; then
  ok introduce "@introduceDomain fired; xsd-lite serves domain $domid's ring"
else
  bad introduce "no @introduceDomain, or domain '$domid' not introduced: $(xenstore-control domains 2>&1 | tr '\n' ';')"
fi
# Linux's xenbus (drivers/xen/manage.c) writes control/feature-poweroff=1
# once it has registered its shutdown watch: only the guest writes the 1,
# and only the guest's kernel puts watches on its ring connection.
node=/local/domain/$domid/control/feature-poweroff
if [ -n "$domid" ] && waitfor 90 value_is "$node" 1 &&
  [ "$(guest_watches "$domid")" -ge 1 ] 2>/dev/null; then
  perms=$(xenstore-ls -p "/local/domain/$domid/control" 2>/dev/null |
    sed -n 's/^feature-poweroff = .*(\([^)]*\))$/\1/p')
  ok guest-ring "$node = 1 (perms $perms) after $(since "$t") s; the guest's ring holds $(guest_watches "$domid") watch(es)"
else
  bad guest-ring "$node never became 1: $(xenstore-ls "/local/domain/$domid" 2>&1 | head -n 20 | tr '\n' ';')"
fi
if waitfor 30 counter_above 1; then
  ok guest-console "the guest counts: $(counter)"
else
  bad guest-console "no counter on the guest's console"
fi

# ---- libxtk's xen backend (tests/xen/xen-probe.c) -----------------------
# A PVH guest beside the PV one: the same kernel, HVM-style memory.  Under
# TCG Xen cannot emulate RDTSCP for it, so the guest is told there is none.
sed -e 's/^name = .*/name = "g2"/' -e 's/^type = .*/type = "pvh"/' \
  /etc/xen/g1.cfg >/etc/xen/g2.cfg
echo 'cpuid = "host,rdtscp=0"' >>/etc/xen/g2.cfg
t=$(now)
d2=
if xl create /etc/xen/g2.cfg >/run/xl-create-g2.log 2>&1; then
  d2=$(domid_of g2)
fi
if [ -n "$d2" ] &&
  waitfor 90 value_is "/local/domain/$d2/control/feature-poweroff" 1; then
  ok pvh-create "PVH domain $d2 up in $(since "$t") s"
else
  bad pvh-create "g2 (PVH) did not come up: $(tail -n 5 /run/xl-create-g2.log | tr '\n' ';')"
fi
# The benchmark instead of the checks below (bench/xen-bench.sh boots
# dom0 with xtk.bench=ROUNDS on its command line): it never returns.
[ -n "$bench" ] && [ -n "$d2" ] && . /bench.sh
# Each probe prints its own XTK-OK/XTK-FAIL lines.  Debian's Xen is built
# without shadow paging, so a PV guest has no dirty log (--pv).
export XTK_XEN_GUARD=/usr/sbin/xtk-xen-guard
con=/var/log/xen/console
[ -n "$d2" ] && { probe --console $con/guest-g2.log g2 20 \
  2>/run/xen-probe-g2.log || failed=1; }
probe --pv --console $con/guest-g1.log g1 10 2>/run/xen-probe-g1.log ||
  failed=1
# ---- xtk-save of the PVH guest, xl restore of what it wrote -------------
# xtk's own engine (the dirty log, batches of foreign mappings, the store
# request with its notification on an event channel) writes Xen's own
# stream for an HVM/PVH guest in xl's file format; xl restores it and the
# guest counts on.  Each file is also copied to the output disk (a
# virtio disk QEMU gives dom0) for the host to check with Xen's
# verify-stream-v2: an XTK-FILE line says where.
# (xenconsoled names a guest's log after its name when it first sees it:
# g2log changes when g2 comes back from a migration under another name,
# and xl migrate's destination is g2--incoming until the end, which
# xenconsoled may see first.  The guest's counter only grows: the largest
# in either log is its last.)
g2log=guest-g2.log
counter2() {
  cat "$con/$g2log" "$con/guest-g2--incoming.log" 2>/dev/null |
    grep -o 'xtk-domu: counter [0-9]*' | cut -d' ' -f3 | sort -n | tail -n 1
}
counter2_above() { [ "$(counter2)" -gt "$1" ] 2>/dev/null; }
# ---- xtk-save of the PV guest: libxenguest's own save, xtk's suspend ----
# A PV guest's stream is libxenguest's (its page tables rewritten frame by
# frame): xtk-save drives xc_domain_save with its own suspend (the store
# request, the notification on an event channel) and timing, in xl's file
# format with libxl's JSON config; xl restores it and the guest counts on.
# (Debian's Xen has no shadow paging: a PV guest is saved stopped.)
if [ -n "$domid" ]; then
  t=$(now)
  if XTK_BACKEND=xen timeout 300 xtk-save --suspend store --format xl g1 \
    /run/pv.xl 2>/run/xtk-save-pv.log && waitfor 30 gone "$domid"; then
    ok xtk-save-pv "domain $domid saved by xtk-save in $(since "$t") s ($(wc -c </run/pv.xl) bytes), gone; $(grep -E '^ *(suspend|final round) \(us\)' /run/xtk-save-pv.log | tr -s ' ' | tr '\n' ';')"
    export_file /run/pv.xl pv.xl
    before=$(counter)
    t=$(now)
    domid=
    if xl restore /run/pv.xl >/run/xl-restore-pv.log 2>&1; then
      domid=$(domid_of g1)
    fi
    if [ -n "$domid" ] && waitfor 120 counter_above "$((${before:-0} + 1))"; then
      ok xtk-save-pv-restore "xl restore: domain $domid in $(since "$t") s, counter $before -> $(counter)"
    else
      bad xtk-save-pv-restore "domain '$domid': counter $before -> $(counter); $(tail -n 5 /run/xl-restore-pv.log | tr '\n' ';')"
      domid=$(domid_of g1)
    fi
  else
    bad xtk-save-pv "exit $?: $(grep -E 'error|warning' /run/xtk-save-pv.log | head -n 5 | tr '\n' ';')"
    bad xtk-save-pv-restore "nothing to restore"
    domid=$(domid_of g1)
  fi
  rm -f /run/pv.xl
else
  bad xtk-save-pv "no PV guest g1"
  bad xtk-save-pv-restore "no PV guest g1"
fi
pv_checks
# xtk_roundtrip NAME XTK-SAVE-OPTIONS...: xtk-save of g2 into /run/NAME.xl
# (check xtk-NAME), then xl restore of it (check xtk-NAME-restore).
xtk_roundtrip() {
  name=$1
  shift
  file=/run/$name.xl
  old=$(domid_of g2)
  if [ -z "$old" ]; then
    bad "xtk-$name" "no domain g2 to save"
    bad "xtk-$name-restore" "no domain g2 to save"
    return
  fi
  t=$(now)
  if XTK_BACKEND=xen timeout 300 xtk-save -v "$@" --suspend store --format xl \
    --config /etc/xen/g2.cfg g2 "$file" 2>/run/xtk-$name.log; then
    if waitfor 30 gone "$old"; then
      ok "xtk-$name" "domain $old saved by xtk-save $* in $(since "$t") s ($(wc -c <"$file") bytes), gone; $(scan_line /run/xtk-$name.log); $(grep -E '^ *(suspend|final round|downtime) ' /run/xtk-$name.log | tr -s ' ' | tr '\n' ';')"
    else
      bad "xtk-$name" "saved, but domain $old is still there: $(xl list 2>&1 | tr '\n' ';')"
    fi
  else
    bad "xtk-$name" "exit $?: $(grep -E ': (error|warning): ' /run/xtk-$name.log | head -n 5 | tr '\n' ';')"
    bad "xtk-$name-restore" "nothing to restore"
    d2=$(domid_of g2)
    return
  fi
  export_file "$file" "$name.xl"
  before=$(counter2)
  t=$(now)
  d2=
  if xl -vvv restore "$file" >/run/xl-restore-$name.log 2>&1; then
    d2=$(domid_of g2)
  fi
  t2=$(now)
  if [ -n "$d2" ] && introduced "$d2" &&
    waitfor 120 counter2_above "$((${before:-0} + 1))"; then
    ok "xtk-$name-restore" "xl restore: domain $d2 in $(since "$t") s, counter $before -> $(counter2) $(since "$t2") s after"
  else
    bad "xtk-$name-restore" "domain '$d2': counter $before -> $(counter2); $(tail -n 8 /run/xl-restore-$name.log | tr '\n' ';')"
  fi
  rm -f "$file"
}
if [ -n "$d2" ]; then
  # Xen's own save of the same guest, which runs on (-c): for comparison.
  t=$(now)
  if xl save -c g2 /run/g2-xl.save >/run/xl-save-g2.log 2>&1; then
    echo "XTK-NOTE xl save -c of g2: $(since "$t") s, $(wc -c </run/g2-xl.save) bytes"
  else
    echo "XTK-NOTE xl save -c of g2 failed: $(tail -n 5 /run/xl-save-g2.log | tr '\n' ';')"
  fi
  rm -f /run/g2-xl.save
  xtk_roundtrip save
  # Xen's own live migration of the same guest, on this host (xl's empty
  # ssh command runs the receiver here): for comparison.
  if [ -n "$d2" ]; then
    before=$(counter2)
    t=$(now)
    if xl migrate -s '' g2 'xl migrate-receive' >/run/xl-migrate-g2.log 2>&1; then
      d2=$(domid_of g2)
      if waitfor 60 counter2_above "$((${before:-0} + 1))"; then
        echo "XTK-NOTE xl migrate of g2 on this host: $(since "$t") s, domain $d2 runs on, counter $before -> $(counter2)"
      else
        echo "XTK-NOTE xl migrate of g2 on this host: $(since "$t") s, domain '$d2': counter $before -> $(counter2) (stuck)"
      fi
    else
      echo "XTK-NOTE xl migrate of g2 failed: $(tail -n 5 /run/xl-migrate-g2.log | tr '\n' ';')"
      d2=$(domid_of g2)
    fi
  fi
  if [ -n "$d2" ]; then
    xtk_roundtrip live --live
  else
    bad xtk-live "no domain g2 to save"
    bad xtk-live-restore "no domain g2 to save"
  fi
  # Xen's own save and restore of the same guest: for comparison.
  if [ -n "$d2" ]; then
    before=$(counter2)
    t=$(now)
    if xl save g2 /run/g2-xl.save >/run/xl-save-g2b.log 2>&1 &&
      waitfor 30 gone "$d2"; then
      ts=$(since "$t")
      t=$(now)
      if xl restore /run/g2-xl.save >/run/xl-restore-g2b.log 2>&1; then
        d2=$(domid_of g2)
        tr=$(since "$t")
        t=$(now)
        if waitfor 120 counter2_above "$((${before:-0} + 1))"; then
          echo "XTK-NOTE xl save of g2: $ts s; xl restore: $tr s, counter $before -> $(counter2) $(since "$t") s after"
        else
          echo "XTK-NOTE xl save of g2: $ts s; xl restore: $tr s, counter $before -> $(counter2) (stuck 120 s)"
        fi
      else
        echo "XTK-NOTE xl restore of g2 failed: $(tail -n 3 /run/xl-restore-g2b.log | tr '\n' ';')"
        d2=
      fi
    else
      echo "XTK-NOTE xl save of g2 failed: $(tail -n 3 /run/xl-save-g2b.log | tr '\n' ';')"
      d2=$(domid_of g2)
    fi
    rm -f /run/g2-xl.save
  fi
  # ---- kill -9 of xtk-save: in its first live round, and with the guest
  # suspended in the final round of a plain save.  Its output is a pipe
  # whose reader takes 8 MiB and then reads no more: xtk-save blocks there,
  # with the guest's dirty log on and its suspend notification subscribed
  # (and, plain, the guest suspended).  Killed there, its guard
  # (xtk-xen-guard) gives all of it back; Xen's own live migration (which
  # wants the dirty log off and a running guest) then works and the guest
  # counts on.
  # xtk_kill CHECK WHERE XTK-SAVE-OPTION...
  xtk_kill() {
    kc=$1 kwhere=$2
    shift 2
    if [ -z "$d2" ]; then
      bad "$kc" "no domain g2"
      return
    fi
    rm -f /run/kill.fifo /run/kill.read
    mkfifo /run/kill.fifo
    { head -c 8388608 >/dev/null; : >/run/kill.read; sleep 900; } </run/kill.fifo &
    rp=$!
    XTK_BACKEND=xen xtk-save "$@" --suspend store --format xl \
      --config /etc/xen/g2.cfg g2 - >/run/kill.fifo 2>/run/$kc.log &
    kp=$!
    if waitfor 120 test -e /run/kill.read && kill -0 "$kp" 2>/dev/null; then
      kill -9 "$kp"
      wait "$kp" 2>/dev/null
      before=$(counter2)
      t=$(now)
      if waitfor 90 sh -c '! pidof xtk-xen-guard' &&
        xl migrate -s '' g2 'xl migrate-receive' >/run/xl-migrate-$kc.log 2>&1 &&
        d2=$(domid_of g2) &&
        waitfor 120 counter2_above "$((${before:-0} + 1))"; then
        ok "$kc" "xtk-save killed (-9) $kwhere; its guard: $(grep -i 'guard' /run/$kc.log | tr '\n' ';' | cut -c1-300); then xl migrate: domain $d2 in $(since "$t") s, counter $before -> $(counter2)"
      else
        bad "$kc" "after the kill: guard $(pidof xtk-xen-guard || echo gone), domain '$d2', counter $before -> $(counter2); xtk-save: $(tail -n 5 /run/$kc.log | tr '\n' ';'); xl migrate: $(tail -n 5 /run/xl-migrate-$kc.log | tr '\n' ';')"
        d2=$(domid_of g2)
      fi
    else
      bad "$kc" "xtk-save did not block $kwhere: $(tail -n 5 /run/$kc.log | tr '\n' ';')"
      kill -9 "$kp" 2>/dev/null
      d2=$(domid_of g2)
    fi
    # the reader, and the sleep it left holding the pipe
    kill "$rp" 2>/dev/null
    pkill -f 'sleep 900' 2>/dev/null
    rm -f /run/kill.fifo /run/kill.read
  }
  xtk_kill xtk-kill "in its first live round" --live
  xtk_kill xtk-kill-final "with the guest suspended in its final round"
else
  for c in xtk-save xtk-save-restore xtk-live xtk-live-restore xtk-kill \
    xtk-kill-final xl-save-xtk-restore xtk-restore-bad xtk-restore-kill xtk-restore \
    xtk-migrate \
    xtk-checkpoint xtk-failover xtk-port-reuse xtk-suspend-xl; do
    bad "$c" "no PVH guest g2"
  done
fi

# ---- xtk-restore onto Xen: xtk's domain builder --------------------------
# xtk builds the PVH domain from the libxl config in the file's xl header
# and runs its own restore engine on Xen's stream:
#   xl-save-xtk-restore  xl save -> xtk-restore, the guest counts on
#   xtk-restore-bad      truncated copies of an xtk-save file (in its
#                        memory, and just before its END) are refused and
#                        leave no domain behind
#   xtk-restore          xtk-save (libxl's JSON config, as xl save writes
#                        it) -> xtk-restore, the guest counts on
#   xtk-migrate          xtk-save --live to xtk-restore over TCP on this
#                        host: the source is gone, the destination counts on
# A restored domain is then an ordinary one for xl (xl save, destroy).
# xtk_restore_check CHECK FILE: xtk-restore of FILE; sets d2.
xtk_restore_check() {
  before=$(counter2)
  t=$(now)
  d2=
  if XTK_BACKEND=xen timeout 300 xtk-restore "$2" >/run/$1.out \
    2>/run/$1.log; then
    d2=$(cat /run/$1.out)
  fi
  if [ -n "$d2" ] && introduced "$d2" &&
    waitfor 120 counter2_above "$((${before:-0} + 1))"; then
    ok "$1" "domain $d2 restored by xtk-restore in $(since "$t") s, counter $before -> $(counter2); $(grep -E '^ *(domain created|CPU policy loaded|state loaded|resumed) ' /run/$1.log | tr -s ' ' | tr '\n' ';')"
  else
    bad "$1" "domain '$d2': counter $before -> $(counter2); $(tail -n 8 /run/$1.log | tr '\n' ';')"
    d2=$(domid_of g2)
  fi
}
if [ -n "$d2" ] && xl save g2 /run/g2-x.save >/run/xl-save-x.log 2>&1 &&
  waitfor 30 gone "$d2"; then
  xtk_restore_check xl-save-xtk-restore /run/g2-x.save
  if [ -z "$d2" ] && xl restore /run/g2-x.save >/run/xl-restore-x.log 2>&1; then
    d2=$(domid_of g2) # to go on with
  fi
else
  bad xl-save-xtk-restore "xl save of g2 '$d2': $(tail -n 3 /run/xl-save-x.log | tr '\n' ';')"
  d2=$(domid_of g2)
fi
rm -f /run/g2-x.save
if [ -n "$d2" ] && XTK_BACKEND=xen timeout 300 xtk-save --suspend store \
  --format xl g2 /run/x.xl 2>/run/xtk-save-x.log && waitfor 30 gone "$d2"; then
  cut_check xtk-restore-bad /run/x.xl g2
  size=$(wc -c </run/x.xl)
  # xtk-restore killed (-9) with its domain half-built: its input is a
  # pipe that stalls after half the file.  Its guard destroys the domain.
  rm -f /run/kr.fifo /run/kr.half
  mkfifo /run/kr.fifo
  { head -c "$((size / 2))" /run/x.xl; : >/run/kr.half; sleep 900; } \
    >/run/kr.fifo &
  wp=$!
  XTK_BACKEND=xen xtk-restore - </run/kr.fifo >/dev/null \
    2>/run/xtk-restore-kill.log &
  kp=$!
  if waitfor 120 test -e /run/kr.half && sleep 1 &&
    [ "$(domains)" -gt "$n0" ] && kill -9 "$kp"; then
    wait "$kp" 2>/dev/null
    if waitfor 90 sh -c '! pidof xtk-xen-guard' &&
      waitfor 30 sh -c "[ \$(xl list 2>/dev/null | tail -n +2 | wc -l) = $n0 ]" &&
      [ "$(xenstore-list /libxl 2>/dev/null | tr '\n' ' ')" = "$l0" ]; then
      ok xtk-restore-kill "xtk-restore killed (-9) half-way; its guard: $(grep -i 'guard' /run/xtk-restore-kill.log | tr '\n' ';' | cut -c1-200)"
    else
      bad xtk-restore-kill "after the kill: $(xl list 2>&1 | tr '\n' ';') /libxl: $(xenstore-list /libxl | tr '\n' ' '); $(tail -n 5 /run/xtk-restore-kill.log | tr '\n' ';')"
    fi
  else
    bad xtk-restore-kill "no half-built domain to kill: $(tail -n 5 /run/xtk-restore-kill.log | tr '\n' ';')"
    kill -9 "$kp" 2>/dev/null
  fi
  kill "$wp" 2>/dev/null
  pkill -f 'sleep 900' 2>/dev/null
  rm -f /run/kr.fifo /run/kr.half
  export_file /run/x.xl x.xl
  xtk_restore_check xtk-restore /run/x.xl
  # A domain xtk built is one xl knows (libxl's record of it, its
  # suspend): xl save -c of it works, and it runs on.
  if [ -n "$d2" ]; then
    before=$(counter2)
    if xl save -c g2 /run/xc.save >/run/xl-save-c-x.log 2>&1 &&
      waitfor 120 counter2_above "$((${before:-0} + 1))"; then
      echo "XTK-NOTE xl save -c of the domain xtk-restore built: ok, counter $before -> $(counter2)"
    else
      bad xtk-restore "xl save -c of the domain xtk-restore built: $(tail -n 3 /run/xl-save-c-x.log | tr '\n' ';') counter $before -> $(counter2)"
    fi
    rm -f /run/xc.save
  fi
  if [ -z "$d2" ] && xl restore /run/x.xl >/run/xl-restore-x.log 2>&1; then
    d2=$(domid_of g2)
  fi
else
  bad xtk-restore-bad "xtk-save of g2 '$d2' failed: $(tail -n 3 /run/xtk-save-x.log | tr '\n' ';')"
  bad xtk-restore-kill "nothing to restore"
  bad xtk-restore "nothing to restore"
  d2=$(domid_of g2)
fi
rm -f /run/x.xl
# counter_of NAME: the last counter on guest NAME's console.
counter_of() {
  grep -o 'xtk-domu: counter [0-9]*' "$con/guest-$1.log" 2>/dev/null |
    tail -n 1 | cut -d' ' -f3
}
counter_of_above() { [ "$(counter_of "$1")" -gt "$2" ] 2>/dev/null; }
# xtk_to_backup CHECK NAME XTK-SAVE-OPTIONS...: xtk-save --live of g2 to
# an xtk-restore --name NAME on this host over TCP: the source must be
# gone and the destination count on (then renamed g2).
xtk_to_backup() {
  bk_check=$1 bk_name=$2
  shift 2
  if [ -z "$d2" ]; then
    bad "$bk_check" "no domain g2"
    return
  fi
  old=$d2
  before=$(counter2)
  t=$(now)
  if backup_start "$bk_name" &&
    XTK_BACKEND=xen timeout 300 xtk-save --live "$@" --suspend store \
      --format xl g2 "tcp:127.0.0.1:$(cat /run/bk.port)" \
      2>/run/xtk-$bk_check-save.log && reap "$bp" 320 &&
    d2=$(cat /run/xtk-$bk_name.out) && [ -n "$d2" ] && waitfor 30 gone "$old" &&
    xl rename "$bk_name" g2 && g2log=guest-$bk_name.log &&
    waitfor 120 counter2_above "$((${before:-0} + 1))"; then
    ok "$bk_check" "domain $old -> $d2 in $(since "$t") s${*:+ ($*)}, counter $before -> $(counter2); $(grep -E '^ *(final round|downtime) ' /run/xtk-$bk_check-save.log | tr -s ' ' | tr '\n' ';')"
  else
    bad "$bk_check" "domain $old -> '$d2': counter $before -> $(counter2); save: $(tail -n 5 /run/xtk-$bk_check-save.log | tr '\n' ';') restore: $(tail -n 5 /run/xtk-$bk_name.log | tr '\n' ';')"
    kill "$bp" 2>/dev/null
    d2=$(domid_of g2)
  fi
}
xtk_to_backup xtk-migrate g2m

# ---- checkpoints on Xen: epochs to an xtk-restore backup ------------------
#   xtk-checkpoint  xtk-save --live -I 300 -N 5 to xtk-restore over TCP:
#                   five epochs, the guest resumed in place after each,
#                   then the END: the source is gone, the backup runs
#   xtk-failover    the same without a count, xtk-save killed (-9) once
#                   the backup has two complete epochs: the source runs on
#                   (given back by xtk-save's guard) and the backup holds
#                   the last complete epoch without running it; once the
#                   source is destroyed (the fence), SIGUSR1 promotes the
#                   backup, which runs that epoch and counts on (as g2)
xtk_to_backup xtk-checkpoint g2c -I 300 -N 5
if [ -n "$d2" ] && backup_start g2f -v; then
  XTK_BACKEND=xen xtk-save --live -I 300 --suspend store --format xl g2 \
    "tcp:127.0.0.1:$(cat /run/bk.port)" 2>/run/xtk-fo-save.log &
  sp=$!
  if waitfor 120 grep -q 'epoch 2 complete' /run/xtk-g2f.log &&
    kill -9 "$sp" 2>/dev/null; then
    reap "$sp" 30 2>/dev/null
    s0=$(counter2)
    held=
    # The backup holds while the source counts on: one copy runs.
    if waitfor 60 grep -q 'holding checkpoint' /run/xtk-g2f.log &&
      waitfor 90 grep -q 'the toolstack went away' /run/xtk-fo-save.log &&
      waitfor 120 counter2_above "$((${s0:-0} + 1))" &&
      [ -z "$(counter_of g2f)" ] && kill -0 "$bp" 2>/dev/null &&
      xl list g2f 2>/dev/null | awk 'NR == 2 { p = $5 ~ /p/ } END { exit !p }'; then
      held=1
    fi
    xl destroy "$d2" >/dev/null 2>&1 # the fence
    t=$(now)
    kill -USR1 "$bp" 2>/dev/null
    bk=
    sigs=
    if ! waitfor 20 sh -c "! kill -0 $bp"; then
      # Still there: what its threads do with signals, for the record.
      for f in /proc/$bp/task/*/status; do
        sigs="$sigs ${f#/proc/}: $(grep -E '^(State|SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt)' "$f" | tr -s '\t\n' '  ')"
      done
    fi
    reap "$bp" 320 && bk=$(cat /run/xtk-g2f.out)
    if [ -n "$held" ] && [ -n "$bk" ] && waitfor 120 counter_of_above g2f 1 &&
      xl rename g2f g2; then
      g2log=guest-g2f.log
      ok xtk-failover "xtk-save killed (-9) after $(grep -c 'complete' /run/xtk-g2f.log) epochs: the source ran on and the backup held; fenced, then promoted: $(grep -o 'failing over.*' /run/xtk-g2f.log), domain $bk counts $(counter2) $(since "$t") s after"
    else
      bad xtk-failover "held '$held', backup '$bk' counter '$(counter_of g2f)', source $s0 -> $(counter2); backup: $(grep -v debug /run/xtk-g2f.log | tail -n 5 | tr '\n' ';') ${sigs:+signals:$sigs}"
      [ -n "$bk" ] && xl destroy "$bk" >/dev/null 2>&1
    fi
  else
    bad xtk-failover "no second epoch at the backup: save: $(tail -n 5 /run/xtk-fo-save.log | tr '\n' ';') backup: $(tail -n 5 /run/xtk-g2f.log | tr '\n' ';')"
    kill -9 "$sp" "$bp" 2>/dev/null
  fi
  d2=$(domid_of g2)
else
  bad xtk-failover "no domain g2, or no backup listening"
fi

# ---- the store method's notification port: one per guest, not per save --
# Two saves one after the other (checkpoints to /dev/null, the guest
# resumed in place): the second binds the guest's port the first left
# unbound (kept in /libxl/N/xtk-suspend-port) instead of allocating one.
if [ -n "$d2" ]; then
  ports=
  for i in 1 2; do
    XTK_BACKEND=xen timeout 300 xtk-save -c -l -I 100 -N 2 --suspend store \
      g2 /dev/null 2>/run/xtk-port-$i.log &&
      ports="$ports $(xenstore-read "/libxl/$d2/xtk-suspend-port" 2>/dev/null)"
  done
  # shellcheck disable=SC2086
  set -- $ports
  if [ $# = 2 ] && [ "$1" = "$2" ]; then
    ok xtk-port-reuse "two saves, one guest port ($1)"
  else
    bad xtk-port-reuse "ports:$ports; $(tail -n 3 /run/xtk-port-1.log /run/xtk-port-2.log | tr '\n' ';')"
  fi
else
  bad xtk-port-reuse "no domain g2"
fi

# ---- the xl suspend method: xl's own notification, the seed's baseline ----
# Three checkpoints to /dev/null, the guest resumed in place after each,
# each suspend noticed by a store watch on @releaseDomain (as libxl does),
# not on an event channel; then the guest counts on.
if [ -n "$d2" ]; then
  before=$(counter2)
  if XTK_BACKEND=xen timeout 300 xtk-save -c -l -I 100 -N 3 --suspend xl g2 \
    /dev/null 2>/run/xtk-suspend-xl.log &&
    waitfor 120 counter2_above "$((${before:-0} + 1))"; then
    ok xtk-suspend-xl "3 checkpoints, each suspend noticed by @releaseDomain, counter $before -> $(counter2); $(grep -E '^ *suspend \(us\)' /run/xtk-suspend-xl.log | tr -s ' ')"
  else
    bad xtk-suspend-xl "counter $before -> $(counter2); $(tail -n 5 /run/xtk-suspend-xl.log | tr '\n' ';')"
  fi
else
  bad xtk-suspend-xl "no domain g2"
fi

if [ -n "$d2" ] && xl destroy g2 >/run/xl-destroy-g2.log 2>&1 &&
  waitfor 30 gone "$d2"; then
  ok pvh-destroy "domain $d2 gone"
else
  bad pvh-destroy "domain '$d2': $(xl list 2>&1 | tr '\n' ';')"
fi

# ---- xl save / xl restore: the suspend goes through control/shutdown ----
# (xl save right after xtk's suspends of g1 also shows that xtk gave the
# suspend notification back: subscribed to xtk's port, Xen would raise no
# VIRQ_DOM_EXC, xsd-lite no @releaseDomain, and xl would wait 60 s.)
restored=
if [ -n "$domid" ]; then
  watch_start release @releaseDomain
  t=$(now)
  if xl save g1 /run/g1.save >/run/xl-save.log 2>&1; then
    ok xl-save "domain $domid saved in $(since "$t") s ($(wc -c </run/g1.save) bytes)"
  else
    bad xl-save "exit $?: $(tail -n 5 /run/xl-save.log | tr '\n' ';')"
  fi
  before=$(counter)
  if watch_fired release && waitfor 30 gone "$domid"; then
    # The old domain is gone: its last counter on the console is final
    # but for a line left unread in its console ring (saved with it), so
    # a counter two past it is the restored guest's own.
    before=$(counter)
    ok save-release "@releaseDomain fired; domain $domid gone from Xen and the store"
  else
    bad save-release "domain $domid still there: $(xl list 2>&1 | tr '\n' ';') $(xenstore-control domains 2>&1 | tr '\n' ';')"
  fi
  if [ -s /run/g1.save ]; then
    t=$(now)
    if xl -vvv restore /run/g1.save >/run/xl-restore.log 2>&1; then
      restored=$(xl domid g1 2>/dev/null)
      ok xl-restore "domain $restored restored in $(since "$t") s"
    else
      bad xl-restore "exit $?: $(tail -n 5 /run/xl-restore.log | tr '\n' ';')"
    fi
    if [ -n "$restored" ] && introduced "$restored" &&
      waitfor 60 counter_above "$((${before:-0} + 1))"; then
      ok restore-runs "domain $restored introduced, counter $before -> $(counter)"
    else
      bad restore-runs "domain '$restored': counter $before -> $(counter)"
    fi
  fi
fi

# ---- xl shutdown: a watch fired at the guest, through its ring ----------
victim=${restored:-$domid}
if [ -n "$victim" ]; then
  watch_start release2 @releaseDomain
  t=$(now)
  if xl shutdown g1 >/run/xl-shutdown.log 2>&1 && waitfor 60 gone "$victim"; then
    ok shutdown "domain $victim saw control/shutdown, powered off and is gone in $(since "$t") s"
  else
    bad shutdown "domain $victim: $(xl list 2>&1 | tr '\n' ';') $(xenstore-control domains 2>&1 | tr '\n' ';')"
  fi
  if watch_fired release2; then
    ok release "@releaseDomain fired for domain $victim; xsd-lite saw $(grep -c ' died$' /run/xsd-lite.log) domain death(s)"
  else
    bad release "no @releaseDomain for domain $victim"
  fi
fi

builtin
builtin_spin
devices
finish

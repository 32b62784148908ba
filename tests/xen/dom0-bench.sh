# dom0's benchmark (sourced by tests/xen/dom0-init.sh when dom0's command
# line has xtk.bench=ROUNDS; bench/xen-bench.sh boots it): xtk beside xl on
# the same PVH guest (g2, the cloud kernel) in one boot, ROUNDS times each:
#   migrate   xl migrate to this host, and xtk-save --live to an xtk-restore
#             on this host over TCP: the wall time, the guest's own view of
#             its downtime (the largest gap its 10 ms clock loop saw,
#             tests/xen/domu-init.sh), and xtk-save's downtime figure
#   save      xl save and xtk-save --format xl (non-live) to a file: wall
#   restore   xl restore and xtk-restore of those files: wall, to the
#             command's return (the guest runs)
# (Or, with xtk.only=devices, the devices guest's migrations alone:
# devices_rounds below.)
# Then the same on xtk's built-in guest (g3, guests/xtk-guest.elf booted
# as PVH, the counter workload, 32 MiB, 1 vCPU), whose suspend takes no
# kernel freeze: the seed's table with (c), both directions on event
# channels, and ROUNDS migrations, saves and restores each way, its
# downtime as it clocks it itself (status page: from the request's
# arrival to its work going on, on Xen's system time; xen-probe --status).
# Each figure is an XTK-BENCH line; the host computes percentiles and
# ratios.  Absolute times are QEMU TCG's: only the ratios mean anything.
# Never returns: powers the machine off.
con=/var/log/xen/console
export XTK_XEN_GUARD=/usr/sbin/xtk-xen-guard
xl destroy g1 >/dev/null 2>&1 # a quiet machine: g2 alone
# bench_builtin=1 (xtk.only=builtin): the built-in guest's part alone.
bench_builtin=${bench_builtin:-}
# bench_devices=1 (xtk.only=devices): the devices guest's part alone.
bench_devices=${bench_devices:-}
# g2 again, with its clock loop on (xtk.gap: tests/xen/domu-init.sh)
if [ -z "$bench_builtin$bench_devices${bench_smp:-}" ]; then
  ups=$(grep -c 'xtk-domu: up' "$con/guest-g2.log")
  xl destroy g2 >/dev/null 2>&1
  waitfor 30 sh -c '! xl domid g2'
  sed 's/^extra = "\(.*\)"/extra = "\1 xtk.gap"/' /etc/xen/g2.cfg >/etc/xen/g2b.cfg
  if ! xl create /etc/xen/g2b.cfg >/run/b-create.log 2>&1 ||
    ! waitfor 90 sh -c "[ \$(grep -c 'xtk-domu: up' $con/guest-g2.log) -gt $ups ]"; then
    bad bench "g2 with xtk.gap: $(tail -n 3 /run/b-create.log | tr '\n' ';')"
  fi
fi
# gap_mark, then gap_max: the largest gap (ms) a guest printed since.
gap_mark() {
  for f in "$con"/guest-*.log; do echo "$f $(wc -l <"$f")"; done >/run/gap.mark
}
gap_max() {
  {
    while read -r f n; do tail -n +"$((n + 1))" "$f"; done </run/gap.mark
    for f in "$con"/guest-*.log; do grep -q "^$f " /run/gap.mark || cat "$f"; done
  } | sed -n 's/.*xtk-domu: gap \([0-9]*\) ms.*/\1/p' | sort -n | tail -n 1
}
# ms_since T: milliseconds from uptime T to now.
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
# settle: the guest runs and counts again before the next measurement.
settle() {
  c=$(grep -ho 'xtk-domu: counter [0-9]*' "$con"/guest-*.log | wc -l)
  waitfor 60 sh -c "[ \$(grep -ho 'xtk-domu: counter [0-9]*' $con/guest-*.log | wc -l) -ge $((c + 2)) ]"
}
failed=0
rounds=$bench
# The seed's experiment (seed 001) on this guest: checkpoints every 100 ms,
# the guest resumed in place after each (-c), 30 epochs per suspend
# method: (a) xl's way, the request in the store and the "suspended"
# notification by the store's @releaseDomain watch; (b) the request in the
# store, the notification on an event channel.  Each histogram of the
# report (suspend: request to notified; final round: request to the
# epoch's last byte; downtime: request to the guest's vCPUs running) as
# an XTK-SEED line: method, histogram, count min p50 p90 p99 max mean (us).
# seed_runs NAME TAG SETTLE METHOD...: the experiment on guest NAME, each
# method after SETTLE; TAG prefixes the method in the XTK-SEED lines.
seed_runs() {
  _g=$1 _tag=$2 _settle=$3
  shift 3
  for m in "$@"; do
    $_settle
    if XTK_BACKEND=xen timeout 300 xtk-save -c -l -I 100 -N 30 --suspend "$m" \
      "$_g" /dev/null 2>/run/b-seed-$_g-$m.log; then
      for h in suspend 'final round' downtime; do
        sed -n "s/^ *$h (us) *\([0-9].*\)/XTK-SEED $_tag$m $h|\1/p" \
          /run/b-seed-$_g-$m.log | sed 's/ *| */|/' | head -n 1
      done
      # the last epoch's phases (ms since the start, since the one before)
      echo "XTK-NOTE seed $_tag$m, last epoch: $(grep -E '^  [a-z][a-z ]* +[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+$' /run/b-seed-$_g-$m.log | tr -s ' ' | tail -n 8 | tr '\n' ';')"
    else
      bad bench "$_g, checkpoints with --suspend $m: $(tail -n 3 /run/b-seed-$_g-$m.log | tr '\n' ';')"
    fi
  done
}
# bench_end: the verdict, crashes seen, and the power off.
bench_end() {
  [ "$failed" = 0 ] && ok bench "$rounds rounds"
  dmesg | grep -E 'segfault|general protection|traps:' | sed 's/^/XTK-NOTE crash: /'
  echo "XTK-END failed=$failed at $(now) s"
  sleep 1
  poweroff -f
}
# migrate_round GUEST TAG R: round R of xl migrate, then xtk-save --live
# to an xtk-restore over TCP, of GUEST to this host; an XTK-BENCH line for
# each (TAGxl-migrate, TAGxtk-migrate: wall, the guest's largest gap, and
# xtk-save's own downtime figure).  1 if either failed.
migrate_round() {
  local g=$1 tag=$2 r=$3 w dt rp
  settle
  gap_mark
  t=$(now)
  if xl migrate -s '' "$g" 'xl migrate-receive' >"/run/b-$g-xlm.log" 2>&1; then
    w=$(ms_since "$t")
    settle
    echo "XTK-BENCH ${tag}xl-migrate $r wall_ms=$w gap_ms=$(gap_max)"
  else
    bad bench "$g, round $r: xl migrate: $(tail -n 3 "/run/b-$g-xlm.log" | tr '\n' ';')"
    return 1
  fi
  settle
  rm -f /run/b.port
  XTK_BACKEND=xen xtk-restore -q --name "${g}m" --port-file /run/b.port \
    listen:127.0.0.1:0 >"/run/b-$g-xr.out" 2>"/run/b-$g-xr.log" &
  rp=$!
  waitfor 30 test -s /run/b.port
  gap_mark
  t=$(now)
  if XTK_BACKEND=xen xtk-save --live --suspend store --format xl "$g" \
    "tcp:127.0.0.1:$(cat /run/b.port)" 2>"/run/b-$g-xs.log" && wait "$rp"; then
    w=$(ms_since "$t")
    waitfor 30 sh -c "! xl domid $g" && xl rename "${g}m" "$g"
    settle
    dt=$(sed -n 's/^ *downtime (us) *[0-9]* *\([0-9.]*\).*/\1/p' "/run/b-$g-xs.log" | head -n 1)
    echo "XTK-BENCH ${tag}xtk-migrate $r wall_ms=$w gap_ms=$(gap_max) xtk_downtime_ms=$(awk -v d="${dt:-0}" 'BEGIN { printf "%d", d / 1000 }')"
  else
    bad bench "$g, round $r: xtk migrate: $(tail -n 3 "/run/b-$g-xs.log" | tr '\n' ';') $(tail -n 3 "/run/b-$g-xr.log" | tr '\n' ';')"
    kill "$rp" 2>/dev/null
    return 1
  fi
}
# held_round MODE R: checkpoints of g4 to a backup on this host (above).
hist_f() { # LOG NAME FIELD: a report histogram's field (3: p50, 5: p99)
  sed -n "s/^ *$2 (us) *//p" "$1" | head -n 1 | awk -v f="$3" '{ printf "%d", $f }'
}
held_round() {
  local mode=$1 r=$2 opt= log=/run/b-held.log rp
  [ "$mode" = unheld ] && opt=--no-output-hold
  settle
  rm -f /run/b.port
  XTK_BACKEND=xen xtk-restore -q --name g4m --port-file /run/b.port \
    listen:127.0.0.1:0 >/run/b-held-xr.out 2>/run/b-held-xr.log &
  rp=$!
  waitfor 30 test -s /run/b.port
  if XTK_BACKEND=xen timeout 600 xtk-save --live -I 100 -N 30 $opt \
    --suspend store --format xl g4 "tcp:127.0.0.1:$(cat /run/b.port)" \
    2>$log && wait "$rp" && waitfor 30 sh -c "! xl domid g4" &&
    xl rename g4m g4; then
    echo "XTK-BENCH d-$mode $r pause_p50_us=$(hist_f $log downtime 3) pause_p99_us=$(hist_f $log downtime 5) ack_p50_us=$(hist_f $log 'ack wait' 3) waited_p50_us=$(hist_f $log 'stop waited for acknowledgement' 3) waited_p99_us=$(hist_f $log 'stop waited for acknowledgement' 5) waited_n=$(sed -n 's/^ *stops waiting for an acknowledgement *\([0-9]*\).*/\1/p' $log | head -n 1) released=$(sed -n 's/^ *output released *\([0-9]*\).*/\1/p' $log | head -n 1)"
  else
    bad bench "g4, checkpoints ($mode), round $r: $(tail -n 3 $log | tr '\n' ';') $(tail -n 3 /run/b-held-xr.log | tr '\n' ';')"
    kill "$rp" 2>/dev/null
    XTK_BACKEND=xen xtk output g4 release 2>/dev/null
    return 1
  fi
}
# The devices guest (g4, tests/xen/dom0-init.sh: a disk on a loop device,
# a vif on a bridge, the cloud kernel as PVH, its 10 ms clock loop on):
# ROUNDS migrations to this host each way, wall and the guest's own gap.
# Both toolstacks add the destination's devices (libxl, Xen's hotplug
# scripts); xl does so after the memory, with the guest stopped, xtk
# before the memory.
devices_rounds() {
  dev_setup xtk.gap
  if ! xl create /etc/xen/g4.cfg >/run/b4-create.log 2>&1 ||
    ! waitfor 120 g4_disk_above 1 || ! waitfor 60 g4_ping; then
    bad bench "g4: $(tail -n 3 /run/b4-create.log | tr '\n' ';')"
    return
  fi
  r=0
  while [ "$r" -lt "$rounds" ] && [ "$failed" = 0 ]; do
    r=$((r + 1))
    migrate_round g4 d- "$r" || break
  done
  # Checkpoints to a backup, the guest's vif output held and not held
  # (--no-output-hold), in turns: 30 epochs 100 ms apart, then END (the
  # backup runs g4).  XTK-BENCH d-held / d-unheld: the report's pause
  # (downtime: suspend request to vCPUs running) p50 and p99, the acks'
  # wait, and with the hold how long stops waited for an acknowledgement
  # (the plug holds one epoch) and how many did.
  r=0
  while [ "$r" -lt "$rounds" ] && [ "$failed" = 0 ]; do
    r=$((r + 1))
    for mode in held unheld; do
      held_round "$mode" "$r" || break 2
    done
  done
  # the disk and the network still work after all of it
  before=$(g4_disk)
  waitfor 60 g4_disk_above "$((${before:-0} + 1))" && waitfor 30 g4_ping ||
    bad bench "g4 after the rounds: disk counter $before -> $(g4_disk), ping $(g4_ping && echo ok || echo none)"
}
if [ -n "$bench_devices" ]; then
  devices_rounds
  bench_end
fi
# bench_smp=1 (xtk.only=smp; issue 15): the built-in guest with 1, 2, 4
# and 8 vCPUs, spin (hold=64) and idle, its lock-holder measures on (pv)
# and off (pv=0), and on with its vCPU 0 parking the others before it
# suspends (park: apstop=guest; otherwise Xen stops them where they are),
# checkpointed $rounds x 8 times 20 ms apart to /dev/null on its event
# channel: an XTK-SMP line per run with the report's suspend and downtime
# (request to resumed) histograms (count min p50 p90 p99 max mean, us).  Then seed 000's measure
# on the 8-vCPU spin guest, pv on and off $rounds times: XTK-LOCK lines
# with its lock acquisitions, waits and longest wait over 5 s.
bench_smp=${bench_smp:-}
smp_guest() { # NAME VCPUS EXTRA
  cat >"/etc/xen/$1.cfg" <<EOF6
name = "$1"
type = "pvh"
kernel = "/usr/lib/xtk/xtk-guest.elf"
extra = "$3"
memory = 32
vcpus = $2
on_poweroff = "destroy"
on_crash = "preserve"
on_reboot = "preserve"
EOF6
  xl create "/etc/xen/$1.cfg" >"/run/$1-create.log" 2>&1 &&
    waitfor 60 grep -q 'xtk-guest: running' "$con/guest-$1.log"
}
# xtk.smpn=N/N.. and xtk.smpwl=W/W.. (XTK_XEN_SMP_VCPUS and
# XTK_XEN_SMP_WORKLOADS): only those rows, e.g. the 8-vCPU spin guest
# again and again.  A row that fails prints the last 120 lines of Xen's log
# (XTK-DMESG lines) and the guest's console (XTK-GCON) after its line.
smp_ns=$(sed -n 's/.*xtk\.smpn=\([0-9/]*\).*/\1/p' /proc/cmdline | tr / ' ')
smp_wls=$(sed -n 's/.*xtk\.smpwl=\([a-z/]*\).*/\1/p' /proc/cmdline | tr / ' ')
# (A triple fault is a reboot to Xen, which xl would restart as a new
# domain: the guest is kept instead, for its registers, and destroyed
# after.)
smp_evidence() { # GUEST
  xl dmesg 2>&1 | tail -n 120 | sed 's/^/XTK-DMESG /'
  tail -n 40 "$con/guest-$1.log" 2>&1 | sed 's/^/XTK-GCON /'
  xen-probe --regs "$(domid_of "$1")" 2>&1 | sed 's/^/XTK-REGS /'
}
# smp_up GUEST VCPUS EXTRA WHAT: smp_guest, or a failed WHAT with its
# evidence and the guest gone.
smp_up() {
  smp_guest "$1" "$2" "$3" && return 0
  bad bench "$4: $(tail -n 3 "/run/$1-create.log" | tr '\n' ';')"
  smp_evidence "$1"
  xl destroy "$1" >/dev/null 2>&1
  return 1
}
# smp_alive GUEST DOMID: running (not shut down or crashed), its
# self-check clean.
smp_alive() {
  local flags
  flags=$(xl list "$1" 2>/dev/null | awk 'NR == 2 { print $5 }')
  [ -n "$flags" ] && [ "${flags#*[sc]}" = "$flags" ] &&
    [ "$(g3f "$2" state)" = 1 ] && [ "$(g3f "$2" errors)" = 0 ]
}
smp_rounds() {
  local wl n pv extra d st
  for wl in ${smp_wls:-spin idle}; do
    for n in ${smp_ns:-1 2 4 8}; do
      for pv in on off park; do
        extra="workload=$wl"
        [ "$wl" = spin ] && extra="$extra hold=64"
        [ "$pv" = off ] && extra="$extra pv=0"
        [ "$pv" = park ] && extra="$extra apstop=guest"
        smp_up s "$n" "$extra" "smp $wl $n $pv" || continue
        d=$(domid_of s)
        sleep 1
        if XTK_BACKEND=xen timeout 600 xtk-save -c -l -I 20 \
          -N "$((rounds * 8))" --suspend evtchn s /dev/null \
          2>/run/s-ckpt.log && [ "$(g3f "$d" errors)" = 0 ]; then
          echo "XTK-SMP $wl $n $pv|$(sed -n 's/^ *suspend (us) *//p' /run/s-ckpt.log | head -n 1)|$(sed -n 's/^ *downtime (us) *//p' /run/s-ckpt.log | head -n 1)"
        else
          bad bench "smp $wl $n $pv: $(g3st "$d"); $(tail -n 3 /run/s-ckpt.log | tr '\n' ';') console: $(tail -n 4 "$con/guest-s.log" | tr '\n' ';') xl dmesg: $(xl dmesg | tail -n 6 | tr '\n' ';')"
          smp_evidence s
        fi
        xl destroy s >/dev/null 2>&1
        waitfor 30 gone "$d"
      done
    done
  done
  for r in $(seq "$rounds"); do
    for pv in on off; do
      extra="workload=spin hold=64"
      [ "$pv" = off ] && extra="$extra pv=0"
      smp_up l 8 "$extra" "lock $pv" || continue
      d=$(domid_of l)
      a0=$(g3f "$d" lock_acq)
      sleep 5
      st=$(g3st "$d")
      echo "XTK-LOCK $pv $r a0=$a0 $st"
      smp_alive l "$d" || { bad bench "lock $pv $r: $st"; smp_evidence l; }
      xl destroy l >/dev/null 2>&1
      waitfor 30 gone "$d"
    done
  done
}
# xtk.soak=N (XTK_XEN_SOAK; with xtk.only=smp): no benchmark, but N
# rounds of the 8-vCPU spin guest (or xtk.smpn's first size and
# xtk.smpwl's first workload) left to run 15 s with no checkpoint: an
# XTK-SOAK line each, alive or dead, and a dead one's evidence.  For the
# guest's deaths on two TCG CPUs (docs/benchmarks.md).
soak=$(sed -n 's/.*xtk\.soak=\([0-9]*\).*/\1/p' /proc/cmdline)
soak_rounds() {
  local i d n wl extra
  set -- ${smp_ns:-8}
  n=$1
  set -- ${smp_wls:-spin}
  wl=$1
  extra="workload=$wl"
  [ "$wl" = spin ] && extra="$extra hold=64"
  for i in $(seq "$soak"); do
    smp_up s "$n" "$extra" "soak $i" || continue
    d=$(domid_of s)
    sleep 15
    if smp_alive s "$d"; then
      echo "XTK-SOAK $wl $n $i alive $(g3st "$d")"
    else
      echo "XTK-SOAK $wl $n $i dead ($(xl list s 2>&1 | tail -n 1)) $(g3st "$d")"
      bad bench "soak $i: domain $d died"
      smp_evidence s
    fi
    xl destroy s >/dev/null 2>&1
    waitfor 30 gone "$d"
  done
}
if [ -n "$bench_smp" ] && [ -n "$soak" ]; then
  soak_rounds
  bench_end
fi
if [ -n "$bench_smp" ]; then
  smp_rounds
  bench_end
fi
linux_rounds() {
seed_runs g2 "" settle xl store
# Xen's own checkpoint, xl save -c (a file, the guest resumed in place):
# the whole command, for scale.
for i in 1 2 3; do
  settle
  t=$(now)
  xl save -c g2 /run/b-c.save >/run/b-xlc.log 2>&1 &&
    echo "XTK-BENCH xl-save-c $i wall_ms=$(ms_since "$t")"
  rm -f /run/b-c.save
done
r=0
while [ "$r" -lt "$rounds" ] && [ "$failed" = 0 ]; do
  r=$((r + 1))
  migrate_round g2 "" "$r" || break
  # xl save, xl restore
  settle
  t=$(now)
  if xl save g2 /run/b.save >/run/b-xls.log 2>&1 && w=$(ms_since "$t") &&
    waitfor 30 sh -c '! xl domid g2' && t=$(now) &&
    xl restore /run/b.save >/run/b-xlr.log 2>&1; then
    echo "XTK-BENCH xl-save $r wall_ms=$w"
    echo "XTK-BENCH xl-restore $r wall_ms=$(ms_since "$t")"
  else
    bad bench "round $r: xl save/restore: $(tail -n 3 /run/b-xls.log /run/b-xlr.log | tr '\n' ';')"
    break
  fi
  rm -f /run/b.save
  # xtk-save, xtk-restore
  settle
  t=$(now)
  if XTK_BACKEND=xen xtk-save --suspend store --format xl g2 /run/b.xl \
    2>/run/b-xs2.log && w=$(ms_since "$t") &&
    waitfor 30 sh -c '! xl domid g2' && t=$(now) &&
    XTK_BACKEND=xen xtk-restore -q /run/b.xl >/dev/null 2>/run/b-xr2.log; then
    echo "XTK-BENCH xtk-save $r wall_ms=$w"
    echo "XTK-BENCH xtk-restore $r wall_ms=$(ms_since "$t")"
  else
    bad bench "round $r: xtk-save/xtk-restore: $(tail -n 3 /run/b-xs2.log /run/b-xr2.log | tr '\n' ';')"
    break
  fi
  rm -f /run/b.xl
done
}
[ -z "$bench_builtin" ] && linux_rounds
# ---- the built-in guest ---------------------------------------------------
xl destroy g2 >/dev/null 2>&1
xl destroy g2m >/dev/null 2>&1
waitfor 30 sh -c '! xl domid g2'
g3_config /etc/xen/g3b.cfg 1
# b_stopped DOMID: the guest's own figure of its last suspend (us).
b_stopped() { g3f "$1" stopped_last_us; }
# b_settle DOMID: it counts.
b_settle() { g3_counts "$1"; }
b=
if [ "$failed" = 0 ] && xl create /etc/xen/g3b.cfg >/run/b3-create.log 2>&1 &&
  b=$(domid_of g3) && waitfor 60 g3_ok "$b"; then
  # what each call of a final round costs on this boot (one line)
  xen-probe --calls "$b" 30 2>&1 | head -n 1
  seed_runs g3 b: "b_settle $b" xl store evtchn
  for i in 1 2 3; do
    b_settle "$b"
    t=$(now)
    xl save -c g3 /run/b3-c.save >/run/b3-xlc.log 2>&1 &&
      echo "XTK-BENCH b-xl-save-c $i wall_ms=$(ms_since "$t")"
    rm -f /run/b3-c.save
  done
else
  bad bench "the built-in guest: $(tail -n 3 /run/b3-create.log | tr '\n' ';') $(g3st "$b")"
fi
r=0
while [ -n "$b" ] && [ "$r" -lt "$rounds" ] && [ "$failed" = 0 ]; do
  r=$((r + 1))
  b_settle "$b"
  t=$(now)
  if xl migrate -s '' g3 'xl migrate-receive' >/run/b3-xlm.log 2>&1; then
    w=$(ms_since "$t")
    b=$(domid_of g3) && b_settle "$b"
    echo "XTK-BENCH b-xl-migrate $r wall_ms=$w gap_us=$(b_stopped "$b")"
  else
    bad bench "built-in guest, round $r: xl migrate: $(tail -n 3 /run/b3-xlm.log | tr '\n' ';')"
    break
  fi
  b_settle "$b"
  rm -f /run/b.port
  XTK_BACKEND=xen xtk-restore -q --name g3m --port-file /run/b.port \
    listen:127.0.0.1:0 >/run/b3-xr.out 2>/run/b3-xr.log &
  rp=$!
  waitfor 30 test -s /run/b.port
  t=$(now)
  if XTK_BACKEND=xen xtk-save --live --suspend evtchn --format xl g3 \
    "tcp:127.0.0.1:$(cat /run/b.port)" 2>/run/b3-xs.log && wait "$rp"; then
    w=$(ms_since "$t")
    waitfor 30 sh -c '! xl domid g3' && xl rename g3m g3
    b=$(domid_of g3) && b_settle "$b"
    dt=$(sed -n 's/^ *downtime (us) *[0-9]* *\([0-9.]*\).*/\1/p' /run/b3-xs.log | head -n 1)
    echo "XTK-BENCH b-xtk-migrate $r wall_ms=$w gap_us=$(b_stopped "$b") xtk_downtime_us=${dt:-0}"
  else
    bad bench "built-in guest, round $r: xtk migrate: $(tail -n 3 /run/b3-xs.log | tr '\n' ';') $(tail -n 3 /run/b3-xr.log | tr '\n' ';')"
    kill "$rp" 2>/dev/null
    break
  fi
  b_settle "$b"
  t=$(now)
  if xl save g3 /run/b.save >/run/b3-xls.log 2>&1 && w=$(ms_since "$t") &&
    waitfor 30 sh -c '! xl domid g3' && t=$(now) &&
    xl restore /run/b.save >/run/b3-xlr.log 2>&1; then
    echo "XTK-BENCH b-xl-save $r wall_ms=$w"
    echo "XTK-BENCH b-xl-restore $r wall_ms=$(ms_since "$t")"
    b=$(domid_of g3)
  else
    bad bench "built-in guest, round $r: xl save/restore: $(tail -n 3 /run/b3-xls.log /run/b3-xlr.log | tr '\n' ';')"
    break
  fi
  rm -f /run/b.save
  b_settle "$b"
  t=$(now)
  if XTK_BACKEND=xen xtk-save --suspend evtchn --format xl g3 /run/b.xl \
    2>/run/b3-xs2.log && w=$(ms_since "$t") &&
    waitfor 30 sh -c '! xl domid g3' && t=$(now) &&
    XTK_BACKEND=xen xtk-restore -q /run/b.xl >/dev/null 2>/run/b3-xr2.log; then
    echo "XTK-BENCH b-xtk-save $r wall_ms=$w"
    echo "XTK-BENCH b-xtk-restore $r wall_ms=$(ms_since "$t")"
    b=$(domid_of g3)
  else
    bad bench "built-in guest, round $r: xtk-save/xtk-restore: $(tail -n 3 /run/b3-xs2.log /run/b3-xr2.log | tr '\n' ';')"
    break
  fi
  rm -f /run/b.xl
done
bench_end

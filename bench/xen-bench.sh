#!/bin/bash
# bench/xen-bench.sh BUILD_DIR [ROUNDS]: xtk beside xl on a real Xen 4.17,
# in one boot of the Xen testbed (tests/xen/testbed.sh, QEMU TCG), on the
# same PVH guest (Debian's cloud kernel), ROUNDS times each (default 5):
#   migrate   xl migrate to the same host, and xtk-save --live to an
#             xtk-restore on the same host over TCP; the downtime as the
#             guest clocks it (the largest gap its 10 ms loop on the boot
#             clock saw, tests/xen/domu-init.sh), xtk-save's own downtime
#             figure (suspend request to the destination running), and
#             the wall time of the whole migration
#   save      xl save and xtk-save --format xl (non-live): wall time
#   restore   xl restore and xtk-restore of those files: wall time to the
#             command's return, the guest running
# Then the same on xtk's built-in guest booted as PVH (32 MiB, 1 vCPU, the
# counter workload), whose downtime it clocks itself (from the request's
# arrival to its work going on, on Xen's system time), and the seed's
# table on both guests: (a) xl's way (store request, @releaseDomain),
# (b) store request + event channel, (c) for the built-in guest, both on
# event channels.
# With XTK_XEN_ONLY=smp (issue 15): the built-in guest with 1-8 vCPUs,
# spin and idle, its lock-holder measures on and off, and on with vCPU 0
# parking the others before it suspends (Xen stopping them otherwise),
# ROUNDS x 8 checkpoints each (the suspend and downtime histograms), and
# seed 000's lock measure (XTK_XEN_SMP=2 gives Xen both cores;
# XTK_XEN_SMP_VCPUS="8" and XTK_XEN_SMP_WORKLOADS="spin" only those rows).
# With XTK_XEN_ONLY=builtin, the built-in guest's part alone (a shorter
# boot); with XTK_XEN_ONLY=devices, ROUNDS migrations each way of the
# testbed's devices guest (the cloud kernel as PVH with a disk on a loop
# device and a vif on a bridge), whose destination devices xl adds after
# the memory and xtk before it, then ROUNDS x 2 checkpointing saves of it
# to a backup (30 epochs 100 ms apart), its vif's output held (a plug
# qdisc) and not held (--no-output-hold) in turns: the pause, and how long
# stops waited for the backup's acknowledgement (the plug holds one
# epoch).  The last epoch's phases of each seed run follow the tables.
# It prints p50 and p99 (nearest rank: with 5 rounds, the largest) of each
# series, and xtk's p50 over xl's.  TCG makes absolute times meaningless:
# compare the ratios only, and only within one run.  The testbed takes
# both cores: run it alone.
set -u
build=${1:?usage: bench/xen-bench.sh BUILD_DIR [ROUNDS]}
rounds=${2:-5}
case $rounds in '' | *[!0-9]*) echo "ROUNDS: a number" >&2; exit 2 ;; esac
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd) || exit 2
out=$(mktemp /tmp/xtk-xen-bench.XXXXXX)
trap 'rm -f "$out"' EXIT
make -C "$build" -s tests/xen/xen-probe xtk-xen-guard >/dev/null || exit 1
echo "xen-bench: booting the testbed, $rounds rounds (several minutes)" >&2
# Both guests' rounds take 15-25 minutes of TCG on a 2-core host: the
# testbed's own deadline (1500 s) is for its checks.
if ! XTK_XEN_BENCH=$rounds XTK_XEN_TIMEOUT=${XTK_XEN_TIMEOUT:-3000} \
  top_srcdir=$top top_builddir=$build \
  bash "$top/tests/xen/testbed.sh" >"$out" 2>&1; then
  grep -aE '^(FAIL|testbed:|XTK-FAIL)' "$out" >&2
  echo "xen-bench: the benchmark boot failed (its console: XTK_XEN_BENCH=$rounds bash tests/xen/testbed.sh)" >&2
  # The SMP runs stand alone: those that ran are still reported.
  grep -aq '^XTK-SMP ' "$out" || exit 1
  echo "xen-bench: the runs that completed follow" >&2
fi
tr -d '\r' <"$out" | awk -v rounds="$rounds" '
  # XTK-BENCH NAME ROUND key=value...
  /^XTK-BENCH / {
    for (i = 4; i <= NF; i++) {
      split($i, kv, "=")
      k = $2 " " kv[1]
      n[k]++
      v[k, n[k]] = kv[2] + 0
    }
  }
  # XTK-SEED [b:]METHOD HIST|count min p50 p90 p99 max mean
  # (b: the built-in guest)
  /^XTK-SEED / {
    split($0, part, "|")
    head = substr(part[1], 10)
    split(part[2], f, " ")
    m = head; sub(/ .*/, "", m)
    span = substr(head, length(m) + 2)
    g = "linux"
    if (m ~ /^b:/) { g = "builtin"; m = substr(m, 3) }
    label = (m == "xl" ? "(a) xl" : m == "store" ? "(b) store+evtchn" : "(c) evtchn both") ": " span
    seed[g, ++nseed[g]] = sprintf("  %-30s %5d %9d %9d %9d %9d %9d", label, f[1], f[7], f[2], f[6], f[3], f[5])
    sp50[g, m, span] = f[3]
  }
  function sort(k,    i, j, t) {
    for (i = 1; i <= n[k]; i++)
      for (j = i + 1; j <= n[k]; j++)
        if (v[k, j] < v[k, i]) { t = v[k, i]; v[k, i] = v[k, j]; v[k, j] = t }
  }
  function pct(k, p,    r) {
    r = int((p * n[k] + 99) / 100)
    if (r < 1) r = 1
    return v[k, r]
  }
  function row(label, k) {
    if (!n[k]) { printf "  %-44s (none)\n", label; return }
    sort(k)
    printf "  %-44s %3d %9d %9d\n", label, n[k], pct(k, 50), pct(k, 99)
    p50[k] = pct(k, 50)
  }
  function seed_table(g, name,    i) {
    if (!nseed[g])
      return
    print "seed 001 on Xen, " name ": checkpoints every 100 ms, resumed in place (us)"
    printf "  %-30s %5s %9s %9s %9s %9s %9s\n", "method, span", "n", "avg", "min", "max", "median", "p99"
    for (i = 1; i <= nseed[g]; i++) print seed[g, i]
    if (sp50[g, "xl", "suspend"] && sp50[g, "store", "suspend"])
      printf "  (b)/(a), suspend p50: %.2f; final round p50: %.2f\n",
        sp50[g, "store", "suspend"] / sp50[g, "xl", "suspend"],
        sp50[g, "store", "final round"] / sp50[g, "xl", "final round"]
    if (sp50[g, "xl", "suspend"] && sp50[g, "evtchn", "suspend"])
      printf "  (c)/(a), suspend p50: %.2f; final round p50: %.2f\n",
        sp50[g, "evtchn", "suspend"] / sp50[g, "xl", "suspend"],
        sp50[g, "evtchn", "final round"] / sp50[g, "xl", "final round"]
  }
  function ratio(label, a, b) {
    if (p50[a] && p50[b])
      printf "  %-44s %.2f\n", label, p50[a] / p50[b]
  }
  # XTK-SMP WORKLOAD VCPUS PV|count min p50 p90 p99 max mean (us): the
  # suspend|and the downtime (request to resumed)
  /^XTK-SMP / {
    split($0, part, "|")
    split(part[1], h, " ")
    split(part[2], f, " ")
    split(part[3], dt, " ")
    k = h[2] " " h[3] " " h[4]
    smp[++nsmp] = k
    smp50[k] = f[3]; smp90[k] = f[4]; smp99[k] = f[5]; smpd50[k] = dt[3]
    if (h[3] == 1) smpbase[h[2] " " h[4]] = f[3]
  }
  # XTK-LOCK PV ROUND a0=N key=value... (xen-probe --status)
  /^XTK-LOCK / {
    pv = $2; nl[pv]++
    for (i = 4; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "a0") a0 = kv[2]
      if (kv[1] == "lock_acq") acq = kv[2]
      if (kv[1] == "lock_max_us") lmax = kv[2]
      if (kv[1] == "yields") ly = kv[2]
    }
    lock[pv, nl[pv]] = sprintf("  %-4s %3d %14.0f %16.1f %10d", pv, $3, (acq - a0) / 5, lmax / 1000, ly)
    lrate[pv, nl[pv]] = (acq - a0) / 5
    lwait[pv, nl[pv]] = lmax / 1000
  }
  function median(a, pv, m,    i, j, t, x) {
    for (i = 1; i <= m; i++) x[i] = a[pv, i]
    for (i = 1; i <= m; i++)
      for (j = i + 1; j <= m; j++)
        if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
    return x[int((m + 1) / 2)]
  }
  END {
    if (nsmp || nl["on"]) {
      print "SMP built-in guests on Xen (issue 15): suspend (us), checkpoints 20 ms apart"
      print "  (pv: on, off, or park: on, vCPU 0 parking the others before it suspends;"
      print "  downtime: request to resumed, without the guest'"'"'s own check after the resume)"
      printf "  %-24s %9s %9s %9s %10s %14s\n", "workload vCPUs pv", "p50", "p90", "p99", "p50 vs 1", "downtime p50"
      for (i = 1; i <= nsmp; i++) {
        k = smp[i]; split(k, h, " ")
        b = smpbase[h[1] " " h[3]]
        printf "  %-24s %9.0f %9.0f %9.0f %9.2fx %14.0f\n", k, smp50[k], smp90[k], smp99[k], b ? smp50[k] / b : 0, smpd50[k]
      }
      if (nl["on"]) {
        print "seed 000: the spin lock of an 8-vCPU guest (hold=64), 5 s each"
        print "  pv   run acquisitions/s  longest wait ms     yields"
        for (i = 1; i <= nl["on"] || i <= nl["off"]; i++) {
          if (lock["on", i] != "") print lock["on", i]
          if (lock["off", i] != "") print lock["off", i]
        }
        if (nl["on"] && nl["off"])
          printf "  median: acquisitions/s on/off %.2fx, longest wait on/off %.2fx\n",
            median(lrate, "on", nl["on"]) / median(lrate, "off", nl["off"]),
            median(lwait, "on", nl["on"]) / median(lwait, "off", nl["off"])
      }
      exit
    }
    if (n["xl-save wall_ms"] || nseed["linux"]) {
      print "xen-bench: one boot of Xen 4.17 under QEMU TCG, a 128 MiB PVH guest (ms)"
      printf "  %-44s %3s %9s %9s\n", "", "n", "p50", "p99"
      row("xl migrate: downtime (guest gap)", "xl-migrate gap_ms")
      row("xtk migrate: downtime (guest gap)", "xtk-migrate gap_ms")
      row("xtk migrate: request to vCPUs running (*)", "xtk-migrate xtk_downtime_ms")
      row("xl migrate: wall", "xl-migrate wall_ms")
      row("xtk migrate: wall", "xtk-migrate wall_ms")
      row("xl save: wall", "xl-save wall_ms")
      row("xtk-save: wall", "xtk-save wall_ms")
      row("xl restore: wall", "xl-restore wall_ms")
      row("xtk-restore: wall", "xtk-restore wall_ms")
      row("xl save -c (Xen'"'"'s own checkpoint): wall", "xl-save-c wall_ms")
      print "ratios, xtk / xl (p50):"
      ratio("migration downtime, guest gap", "xtk-migrate gap_ms", "xl-migrate gap_ms")
      ratio("migration wall", "xtk-migrate wall_ms", "xl-migrate wall_ms")
      ratio("save wall", "xtk-save wall_ms", "xl-save wall_ms")
      ratio("restore wall", "xtk-restore wall_ms", "xl-restore wall_ms")
      seed_table("linux", "the cloud kernel (PVH)")
    }
    if (n["d-xl-migrate wall_ms"] || n["d-xtk-migrate wall_ms"]) {
      print "the devices guest (the cloud kernel as PVH, 128 MiB, a disk and a vif; ms):"
      printf "  %-44s %3s %9s %9s\n", "", "n", "p50", "p99"
      row("xl migrate: downtime (guest gap)", "d-xl-migrate gap_ms")
      row("xtk migrate: downtime (guest gap)", "d-xtk-migrate gap_ms")
      row("xtk migrate: request to vCPUs running (*)", "d-xtk-migrate xtk_downtime_ms")
      row("xl migrate: wall", "d-xl-migrate wall_ms")
      row("xtk migrate: wall", "d-xtk-migrate wall_ms")
      print "ratios, xtk / xl (p50), the devices guest:"
      ratio("migration downtime, guest gap", "d-xtk-migrate gap_ms", "d-xl-migrate gap_ms")
      ratio("migration wall", "d-xtk-migrate wall_ms", "d-xl-migrate wall_ms")
      if (n["d-held pause_p50_us"]) {
        print "the devices guest checkpointed to a backup, 30 epochs 100 ms apart (us; per run):"
        printf "  %-44s %3s %9s %9s\n", "", "n", "p50", "p99"
        row("vif output held: pause p50", "d-held pause_p50_us")
        row("not held (--no-output-hold): pause p50", "d-unheld pause_p50_us")
        row("vif output held: pause p99", "d-held pause_p99_us")
        row("not held: pause p99", "d-unheld pause_p99_us")
        row("held: the backup'"'"'s ack, p50", "d-held ack_p50_us")
        row("not held: the backup'"'"'s ack, p50", "d-unheld ack_p50_us")
        row("held: stops that waited for an ack (count)", "d-held waited_n")
        row("held: a stop'"'"'s wait for the ack, p50", "d-held waited_p50_us")
        row("held: packets released (count)", "d-held released")
        print "ratios, held / not held (p50 of the runs):"
        ratio("pause p50", "d-held pause_p50_us", "d-unheld pause_p50_us")
        ratio("pause p99", "d-held pause_p99_us", "d-unheld pause_p99_us")
      }
      if (!n["b-xl-migrate wall_ms"]) exit
    }
    print "the built-in guest (guests/xtk-guest.elf as PVH, 32 MiB, 1 vCPU):"
    printf "  %-44s %3s %9s %9s\n", "", "n", "p50", "p99"
    row("xl migrate: downtime, guest-clocked (us)", "b-xl-migrate gap_us")
    row("xtk migrate: downtime, guest-clocked (us)", "b-xtk-migrate gap_us")
    row("xtk migrate: request to vCPUs running (us)", "b-xtk-migrate xtk_downtime_us")
    row("xl migrate: wall (ms)", "b-xl-migrate wall_ms")
    row("xtk migrate: wall (ms)", "b-xtk-migrate wall_ms")
    row("xl save: wall (ms)", "b-xl-save wall_ms")
    row("xtk-save: wall (ms)", "b-xtk-save wall_ms")
    row("xl restore: wall (ms)", "b-xl-restore wall_ms")
    row("xtk-restore: wall (ms)", "b-xtk-restore wall_ms")
    row("xl save -c: wall (ms)", "b-xl-save-c wall_ms")
    print "ratios, xtk / xl (p50), the built-in guest:"
    ratio("migration downtime, guest-clocked", "b-xtk-migrate gap_us", "b-xl-migrate gap_us")
    ratio("migration wall", "b-xtk-migrate wall_ms", "b-xl-migrate wall_ms")
    ratio("save wall", "b-xtk-save wall_ms", "b-xl-save wall_ms")
    ratio("restore wall", "b-xtk-restore wall_ms", "b-xl-restore wall_ms")
    seed_table("builtin", "the built-in guest")
    print "(*) xtk-save'"'"'s downtime figure: the suspend request to the"
    print "    destination'"'"'s vCPUs running; it leaves out the guest kernel'"'"'s"
    print "    own freeze before its suspend and thaw after its resume, which"
    print "    the guest-gap rows include (they are what its processes see)."
  }'
grep -a '^XTK-NOTE \(seed\|calls\)' "$out" | tr -d '\r' | sed 's/^XTK-NOTE //'

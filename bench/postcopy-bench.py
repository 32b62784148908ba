#!/usr/bin/env python3
"""postcopy-bench.py - post-copy migration, xtk beside QEMU 7.2 (issue 13).

The workload pre-copy cannot migrate: the built-in guest (256 MiB, the
same binary under QEMU) rewriting a 64 MiB hot set flat out, the link
capped at 128 MiB/s (QEMU's max-bandwidth, xtk-save --bandwidth), over
loopback TCP.  Each run, one migration each, interleaved:

  xtk    xtk-save --live --postcopy (the switch after the first round,
         256 MiB at the cap: ~2 s) to xtk-restore listen:;
  QEMU   postcopy-ram on both ends, migrate-start-postcopy 2 s after the
         migration started (as measured in ../shared/reference/kvm.md).

After the switch both push the rest without a limit (their defaults:
QEMU's max-postcopy-bandwidth 0, xtk-save's --postcopy-bandwidth unset;
--postcopy-cap applies the 128 MiB/s cap to both pushes instead), and
both serve the pages asked for ahead of the push.  Per run:

  downtime   the guest stopped on the source to running on the
             destination, end to end, one clock: xtk's "suspend
             requested" (source) to "resumed" (destination); QEMU's STOP
             event (source) to its RESUME (destination), which starts
             later (the vCPUs already stopped) -- QEMU's own `downtime`
             (query-migrate) is printed too;
  total      the migration from its start to every page on the
             destination (xtk: save started to memory complete; QEMU:
             query-migrate total-time);
  faults     pages asked for on fault (xtk: the destination's faulted
             pages; QEMU: postcopy-requests), and for xtk their service
             time (fault read to page in, destination: p50, p99), beside
             QEMU's vCPU blocktime (postcopy-blocktime, ms in all);
  residency  the guest running to its last page in.

And the floors of a fault's service, measured in the same run
(bench/postcopy-floor): a userfaultfd round trip alone, and a page-sized
request/reply over loopback TCP.

usage: postcopy-bench.py BUILD_DIR [RUNS] [--no-qemu] [--postcopy-cap]
                         [--json FILE]
Run as root (KVM); make bench/postcopy-floor first.
"""
import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "engine_bench", os.path.join(HERE, "engine-bench.py"))
eb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eb)

PAGES, RATE = "16384", "0"   # the 64 MiB hot set, flat out
CAP = 128 << 20              # bytes a second
SWITCH_S = 2.0               # QEMU: migrate-start-postcopy after this


def phases(rep):
    return {p["name"]: p["ns"] for p in rep["phases"]}


def xtk_run(env, i, pc_cap):
    name = "pc%d" % i
    env.xtk("create", "-n", name, "-m", "256", "-w", "dirty", "-P", PAGES,
            "-r", RATE, "--no-store")
    env.wait_up(name)
    time.sleep(1.0)
    port = eb.free_port()
    sj, dj = (os.path.join(env.work, "%s-%s.json" % (name, w))
              for w in ("src", "dst"))
    dst = env.spawn(env.path("xtk-restore"), "-q", "-J", dj,
                    "listen:127.0.0.1:%d" % port, rundir="dst",
                    stdout=subprocess.DEVNULL)
    eb.wait_listen(port)
    env.run(env.path("xtk-save"), "-q", "-l", "-p", "-b", str(CAP), "-J", sj,
            *(["--postcopy-bandwidth", str(CAP)] if pc_cap else []),
            name, "tcp:127.0.0.1:%d" % port)
    if dst.wait(60):
        raise RuntimeError("xtk-restore failed")
    env.wait_up(name, rundir="dst")
    env.xtk("destroy", name, rundir="dst")
    s, d = json.load(open(sj)), json.load(open(dj))
    sp, dp = phases(s), phases(d)
    fs = eb.hist(d, "postcopy fault service")
    return {
        "downtime": (dp["resumed"] - sp["suspend requested"]) / 1e6,
        "source downtime": eb.hist(s, "downtime")["max"] / 1e6,
        "total": (dp["memory complete"] - sp["save started"]) / 1e6,
        "faults": d["counters"]["postcopy pages faulted"],
        "pushed": d["counters"]["postcopy pages pushed"],
        "frames": d["counters"]["postcopy frames"],
        "fault p50 us": fs["p50"] / 1e3,
        "fault p99 us": fs["p99"] / 1e3,
        "residency": (dp["memory complete"] - dp["resumed"]) / 1e6,
        "blocked": fs["count"] * fs["mean"] / 1e6,
    }


def qemu_run(env, pc_cap):
    append = "workload=dirty pages=%s rate=%s" % (PAGES, RATE)
    src = eb.Qemu(env, "qsrc", append)
    dst = eb.Qemu(env, "qdst", append, incoming=True)
    try:
        src.wait_serial("xtk-guest: running")
        time.sleep(1.0)
        caps = [{"capability": "postcopy-ram", "state": True}]
        src.cmd("migrate-set-capabilities", capabilities=caps)
        dst.cmd("migrate-set-capabilities", capabilities=caps + [
            {"capability": "postcopy-blocktime", "state": True}])
        port = eb.free_port()
        dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        src.cmd("migrate-set-parameters", **{
            "downtime-limit": 300, "max-bandwidth": CAP,
            "max-postcopy-bandwidth": CAP if pc_cap else 0})
        t0 = time.time()
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        time.sleep(SWITCH_S)
        src.cmd("migrate-start-postcopy")
        while True:
            st = src.cmd("query-migrate")
            if st["status"] == "completed":
                break
            if st["status"] in ("failed", "cancelled"):
                raise RuntimeError("QEMU migration %s" % st["status"])
            if time.time() - t0 > 60:
                raise RuntimeError("QEMU migration: no end in 60 s")
            time.sleep(0.01)
        stop, resume = src.event_time("STOP"), dst.event_time("RESUME")
        bt = dst.cmd("query-migrate").get("postcopy-blocktime")
        return {
            "downtime": (resume - stop) * 1e3,
            "source downtime": st.get("downtime"),
            "total": st["total-time"],
            "faults": st["ram"].get("postcopy-requests"),
            "blocked": bt,
        }
    finally:
        src.close()
        dst.close()


def p(v):
    v = [x for x in v if x is not None]
    if not v:
        return "-"
    return "p50 %.2f, p99 %.2f [%.2f-%.2f]" % (
        statistics.median(v), eb.pct(v, 99), min(v), max(v))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("runs", type=int, nargs="?", default=5)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--postcopy-cap", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    have_qemu = not a.no_qemu and shutil.which("qemu-system-x86_64")
    env = eb.Env(a.build)
    try:
        print("load: %s" % open("/proc/loadavg").read().strip())
        fl = subprocess.run([env.path("bench/postcopy-floor"), "4096"],
                            capture_output=True, text=True, check=True).stdout
        xs, qs = [], []
        for i in range(a.runs):
            xs.append(xtk_run(env, i, a.postcopy_cap))
            if have_qemu:
                for t in range(3):
                    try:
                        qs.append(qemu_run(env, a.postcopy_cap))
                        break
                    except (OSError, RuntimeError, ValueError) as e:
                        print("  (QEMU attempt %d failed: %s; again)"
                              % (t + 1, e), flush=True)
        print("post-copy migration, 256 MiB guest, 64 MiB hot set flat out, "
              "128 MiB/s cap on pre-copy%s, loopback TCP, %d runs each"
              % (" and the push" if a.postcopy_cap else "", a.runs))
        rows = [("downtime, end to end (ms)", "downtime"),
                ("downtime, source's own figure (ms)", "source downtime"),
                ("total time (ms)", "total"),
                ("pages asked for on fault", "faults"),
                ("vCPU time blocked on faults (ms)", "blocked")]
        for label, k in rows:
            print("  %-36s xtk  %s" % (label, p([r[k] for r in xs])))
            if qs:
                print("  %-36s QEMU %s" % ("", p([r[k] for r in qs])))
        print("  xtk: frames after the switch %s; pushed %s; fault service "
              "p50 %s us, p99 %s us; residency (running to last page) %s ms"
              % (p([r["frames"] for r in xs]), p([r["pushed"] for r in xs]),
                 p([r["fault p50 us"] for r in xs]),
                 p([r["fault p99 us"] for r in xs]),
                 p([r["residency"] for r in xs])))
        print("  floors (same run, bench/postcopy-floor):")
        for line in fl.splitlines():
            print("    " + line)
        if qs:
            for label, k in (("downtime", "downtime"), ("total", "total"),
                             ("faults", "faults")):
                x = statistics.median([r[k] for r in xs])
                q = statistics.median([r[k] for r in qs if r[k] is not None])
                print("  xtk / QEMU, p50 %s: %.2f" % (label, x / q))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"xtk": xs, "qemu": qs, "floors": fl}, f, indent=1)
        print("load: %s" % open("/proc/loadavg").read().strip())
    finally:
        env.close()


if __name__ == "__main__":
    main()

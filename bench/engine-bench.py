#!/usr/bin/env python3
"""engine-bench.py - the save engine's critical path, against its peer.

Benchmarks 1 and 2 of docs/benchmarks.md, "save/restore" (3 and 4 are
bench/sr-bench):

  final-round   The seed's experiment (seeds/001): the final round of a
                128 MiB idle guest (suspend request to the last byte of the
                epoch sent), RUNS times, the request through the store
                (control/shutdown in xsd-lite) and through the guest's
                suspend event channel, in the seed's form (avg, min, max,
                median) plus p99.  A checkpointing save to /dev/null
                repeats the final round every 20 ms, as the seed's harness
                looped over it.

  migrate       Live-migration downtime (suspend request on the source to
                the guest running on the destination, from the reply's
                resume time) of a 256 MiB guest over TCP on loopback,
                (a) dirtying 2,000 pages/s over 64 MiB, (b) rewriting a
                16 MiB hot set flat out; RUNS migrations each per suspend
                method (--suspend evtchn and pause, interleaved), with the
                stop-and-copy broken down per phase (both ends stamp
                CLOCK_MONOTONIC), and in the same run QEMU migrating the
                same guest binary with the same workload, measured two ways:
                its own `downtime` from query-migrate (counted on the source,
                from before it stops the vCPUs to the end of its sending: it
                leaves out the destination loading state and resuming, so
                xtk's source-side part is printed too) and end to end, from
                the source's QMP STOP event to the destination's RESUME
                event (QMP timestamps are CLOCK_REALTIME, one clock for both
                QEMUs here; STOP is sent once the vCPUs are stopped and
                RESUME before they run again, so this span starts later and
                ends earlier than xtk's: xtk's "stopped -> resumed" span,
                from the vCPUs parked, is printed next to it).  For (b) the
                floor: the hot set's bytes over the stream bandwidth, itself
                measured in the same run by non-live migrations of the same
                guest (the guest stopped, memory sent at full speed).

usage: engine-bench.py BUILD_DIR final-round|migrate|all [RUNS]
                       [--scenarios a,b] [--suspend evtchn,pause] [--no-qemu]
                       [--json FILE]
Run as root (KVM).  Needs qemu-system-x86_64 for migrate.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def form(values):
    """The seed's form, in ms: avg, min, max, median, and p99."""
    return ("avg: %.2f ms, min: %.2f, max: %.2f, median: %.2f, p99: %.2f"
            % (statistics.mean(values), min(values), max(values),
               statistics.median(values), pct(values, 99)))


class Env:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.work = tempfile.mkdtemp(prefix="xtk-engine-bench.")
        self.env = dict(os.environ,
                        XTK_HV=self.path("xtk-hv"),
                        XTK_GUEST=self.path("guests/xtk-guest.elf"),
                        XTK_RUNDIR=os.path.join(self.work, "src"),
                        XENSTORED_PATH=os.path.join(self.work, "xs.sock"))
        self.procs = []

    def path(self, p):
        return os.path.join(self.build, p)

    def run(self, *args, rundir="src", **kw):
        env = dict(self.env, XTK_RUNDIR=os.path.join(self.work, rundir))
        return subprocess.run(args, env=env, check=True, **kw)

    def spawn(self, *args, rundir="src", **kw):
        env = dict(self.env, XTK_RUNDIR=os.path.join(self.work, rundir))
        p = subprocess.Popen(args, env=env, **kw)
        self.procs.append(p)
        return p

    def xtk(self, *args, rundir="src"):
        return self.run(self.path("xtk"), *args, rundir=rundir,
                        capture_output=True, text=True).stdout

    def wait_up(self, dom, rundir="src"):
        for _ in range(200):
            r = subprocess.run([self.path("xtk"), "check", dom],
                               env=dict(self.env, XTK_RUNDIR=os.path.join(
                                   self.work, rundir)),
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not come up" % dom)

    def destroy_all(self):
        for rd in ("src", "dst"):
            if not os.path.isdir(os.path.join(self.work, rd)):
                continue
            out = self.xtk("list", rundir=rd)
            for line in out.splitlines()[1:]:
                self.xtk("destroy", line.split()[1], rundir=rd)
            # (the next run reuses the names: each must be gone, not only
            # on its way out)
            for _ in range(100):
                if len(self.xtk("list", rundir=rd).splitlines()) <= 1:
                    break
                time.sleep(0.05)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            self.destroy_all()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def hist(report, name):
    for h in report["histograms"]:
        if h["name"] == name:
            return h
    raise KeyError(name)


# ---- 1. the final round, store vs event channel ---------------------------

def final_round(env, runs):
    xsd = env.spawn(env.path("xsd-lite/xsd-lite"), "-N", "-s",
                    env.env["XENSTORED_PATH"], "-l", "warning")
    for _ in range(100):
        if os.path.exists(env.env["XENSTORED_PATH"]):
            break
        time.sleep(0.02)
    env.xtk("create", "-n", "seed", "-m", "128", "-w", "idle")
    env.wait_up("seed")
    time.sleep(0.5)
    results = {}
    for method in ("store", "evtchn"):
        js = os.path.join(env.work, method + ".json")
        with open(os.devnull, "wb") as null:
            env.run(env.path("xtk-save"), "-q", "-c", "-l", "-s", method,
                    "-I", "20", "-N", str(runs), "-J", js, "seed", "-",
                    stdout=null)
        rep = json.load(open(js))
        # Every epoch's final round: the histogram has them all; the
        # phases give each one (suspend requested -> checkpoint/end sent).
        vals, t0 = [], None
        for ph in rep["phases"]:
            if ph["name"] == "suspend requested":
                t0 = ph["ns"]
            elif ph["name"] in ("checkpoint sent", "end sent") and t0:
                vals.append((ph["ns"] - t0) / 1e6)
                t0 = None
        susp = hist(rep, "suspend")
        results[method] = vals
        print("  %-7s final round (%d runs): %s" % (method, len(vals),
                                                    form(vals)))
        print("          suspend request -> suspended: median %.3f ms, "
              "p99 %.3f ms" % (susp["p50"] / 1e6, susp["p99"] / 1e6))
    env.xtk("destroy", "seed")
    xsd.terminate()
    xsd.wait()
    s, e = (statistics.median(results[m]) for m in ("store", "evtchn"))
    print("  event channel median / store median = %.2f; target: event "
          "channel median <= 1 ms: %s" % (e / s, "met" if e <= 1 else
                                          "MISSED"))
    return results


# ---- 2. live migration downtime, xtk vs QEMU ----------------------------

SCENARIOS = {
    "a": ("dirtying 2,000 pages/s over 64 MiB", "16384", "2000"),
    "b": ("rewriting a 16 MiB hot set flat out", "4096", "0"),
}


def wait_listen(port, tries=200, pause=0.01):
    """Until something listens on TCP port here (ss(8))."""
    for _ in range(tries):
        if subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                          capture_output=True, text=True).stdout.strip():
            return
        time.sleep(pause)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def xtk_migrate(env, pages, rate, suspend="evtchn"):
    """One migration; returns the source's and the destination's reports."""
    env.xtk("create", "-n", "mig", "-m", "256", "-w", "dirty", "-P", pages,
            "-r", rate, "--no-store")
    env.wait_up("mig")
    time.sleep(1.0)  # the working set written, the dirtier in its stride
    port = free_port()
    js = os.path.join(env.work, "src.json")
    jd = os.path.join(env.work, "dst.json")
    dst = env.spawn(env.path("xtk-restore"), "-q", "-J", jd,
                    "listen:127.0.0.1:%d" % port, rundir="dst",
                    stdout=subprocess.DEVNULL)
    env.run(env.path("xtk-save"), "-q", "-l", "-s", suspend, "-J", js, "mig",
            "tcp:127.0.0.1:%d" % port)
    if dst.wait(timeout=30) != 0:
        raise RuntimeError("xtk-restore failed")
    env.wait_up("mig", rundir="dst")
    env.xtk("destroy", "mig", rundir="dst")
    return json.load(open(js)), json.load(open(jd))


def phase_times(rep):
    """A report's phases by name (the last of each), ns."""
    return {ph["name"]: ph["ns"] for ph in rep["phases"]}


# The stop-and-copy, stamp to stamp (source stamps, then the
# destination's; both CLOCK_MONOTONIC on one machine).  The source sends
# the state before the final round's pages, and the destination loads it
# as it arrives: it hands the state to xtk-hv, reads the last pages while
# xtk-hv loads it, and at END confirms the load and resumes.
PHASES = [
    ("guest suspends, vCPUs stopped", "suspend requested",
     "suspended notified"),
    ("  of which: the guest's acknowledgement", "suspend requested",
     "guest acknowledged"),
    ("  of which: STOP (pause, sync, state)", "guest acknowledged",
     "suspended notified"),
    ("state written", "suspended notified", "state sent"),
    ("final dirty-log read", "state sent", "final dirty sync"),
    ("last pages and END written", "final dirty sync", "end sent"),
    ("  of which: to the last page", "final dirty sync", "last page sent"),
    ("state to the destination", "state sent", "state received"),
    ("destination: state handed to xtk-hv", "state received",
     "state load started"),
    ("END to the destination", "end sent", "end received"),
    ("destination: END -> resumed", "end received", "resumed"),
    ("  state load confirmed, from END", "end received", "state loaded"),
    ("  RESUME's reply, from END", "end received", "resume returned"),
]


def breakdown(src, dst):
    """Each PHASES span of one migration, ms (None where a stamp lacks)."""
    t = phase_times(src)
    t.update(phase_times(dst))
    out = {}
    for name, a, b in PHASES:
        out[name] = (t[b] - t[a]) / 1e6 if a in t and b in t else None
    return out


def stream_bandwidth(env, runs=5):
    """
    The stream's bandwidth over loopback TCP: non-live saves (the guest
    stopped, as in a final round) of a guest with 128 MiB of data into a
    TCP connection whose other end only reads and discards; bytes over
    time of the one round.  GB/s, one value per run.
    """
    import threading
    env.xtk("create", "-n", "bw", "-m", "256", "-w", "dirty", "-P", "32768",
            "-r", "0", "--no-store")
    env.wait_up("bw")
    time.sleep(1.5)  # passes over the working set: all of it written
    vals = []
    for _ in range(runs):
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        cli = socket.create_connection(lsock.getsockname())
        srv, _ = lsock.accept()
        lsock.close()

        def drain():
            buf = bytearray(1 << 20)
            while srv.recv_into(buf):
                pass
        t = threading.Thread(target=drain)
        t.start()
        js = os.path.join(env.work, "bw.json")
        env.run(env.path("xtk-save"), "-q", "-c", "-J", js, "bw", "-",
                stdout=cli.fileno())
        cli.close()
        t.join()
        srv.close()
        r = max(json.load(open(js))["rounds"], key=lambda r: r["bytes"])
        vals.append(r["bytes"] / r["ns"])
    env.xtk("destroy", "bw")
    return vals


class Qemu:
    def __init__(self, env, name, append, incoming=False):
        self.dir = os.path.join(env.work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.qmp_path = os.path.join(self.dir, "qmp")
        self.serial = os.path.join(self.dir, "serial")
        args = ["qemu-system-x86_64", "-enable-kvm",
                "-cpu", "host,-cx16,-arch-capabilities", "-smp", "1",
                "-m", "256", "-nodefaults", "-no-user-config",
                "-display", "none", "-no-reboot",
                "-kernel", env.path("guests/xtk-guest.elf"),
                "-append", append,
                "-serial", "file:" + self.serial,
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if incoming:
            args += ["-incoming", "defer"]
        self.proc = env.spawn(*args)
        for _ in range(200):
            if os.path.exists(self.qmp_path):
                break
            time.sleep(0.02)
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(100):
            try:
                self.sock.connect(self.qmp_path)
                break
            except OSError:
                time.sleep(0.02)
        self.f = self.sock.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, c, **a):
        self.f.write(json.dumps({"execute": c, "arguments": a}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events.append(r)
            elif "return" in r:
                return r["return"]
            elif "error" in r:
                raise RuntimeError("%s: %s" % (c, r["error"]))

    def event_time(self, name, timeout=10):
        """The QMP timestamp of event name (waiting for it), seconds since
        the epoch: QEMU stamps events with g_get_real_time()."""
        self.sock.settimeout(timeout)
        try:
            while not any(e["event"] == name for e in self.events):
                self.events.append(json.loads(self.f.readline()))
        finally:
            self.sock.settimeout(None)
        ts = [e for e in self.events if e["event"] == name][0]["timestamp"]
        return ts["seconds"] + ts["microseconds"] / 1e6

    def wait_serial(self, text, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if text in open(self.serial).read():
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise RuntimeError("QEMU guest: no '%s'" % text)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def qemu_migrate(env, pages, rate):
    append = "workload=dirty pages=%s rate=%s" % (pages, rate)
    src = Qemu(env, "qsrc", append)
    dst = Qemu(env, "qdst", append, incoming=True)
    try:
        src.wait_serial("xtk-guest: running")
        time.sleep(1.0)
        port = free_port()
        dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        src.cmd("migrate-set-parameters", **{"downtime-limit": 300,
                                             "max-bandwidth": 4 << 30})
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        while True:
            st = src.cmd("query-migrate")
            if st["status"] == "completed":
                st["stop-to-resume"] = (dst.event_time("RESUME") -
                                        src.event_time("STOP")) * 1e3
                return st
            if st["status"] in ("failed", "cancelled"):
                raise RuntimeError("QEMU migration %s" % st["status"])
            time.sleep(0.01)
    finally:
        src.close()
        dst.close()


def qemu_migrate_retry(env, pages, rate, tries=3):
    """qemu_migrate, again (with a fresh pair) when QEMU's QMP did not give
    an event or a migration failed: each such retry is printed."""
    for i in range(tries):
        try:
            return qemu_migrate(env, pages, rate)
        except (OSError, RuntimeError, ValueError) as e:
            print("      (QEMU migration attempt %d failed: %s: %s; again)"
                  % (i + 1, type(e).__name__, e), flush=True)
    raise RuntimeError("QEMU: %d failed migrations in a row" % tries)


def pcts(v):
    return "p50 %.2f ms, p99 %.2f ms [%.2f-%.2f]" % (
        statistics.median(v), pct(v, 99), min(v), max(v))


def migrate(env, runs, scenarios, methods, have_qemu):
    out = {}
    for key in scenarios:
        what, pages, rate = SCENARIOS[key]
        xd = {m: [] for m in methods}     # request -> resumed (the issue's)
        xs = {m: [] for m in methods}     # request -> END sent (source side)
        xst = {m: [] for m in methods}    # vCPUs stopped -> resumed
        ph = {m: [] for m in methods}
        qd, qe = [], []
        bw = stream_bandwidth(env) if key == "b" else []
        for i in range(runs):
            for m in methods:
                src, dst = xtk_migrate(env, pages, rate, m)
                t = phase_times(src)
                # One machine: the destination's report is on this clock
                # too, so its "resumed" can be set against the source's
                # stamps, exactly (across hosts only spans compare, and the
                # source's "downtime" is derived from them: xtk_save(3)).
                td = phase_times(dst)
                xd[m].append((td["resumed"] - t["suspend requested"]) / 1e6)
                xs[m].append(hist(src, "final round")["max"] / 1e6)
                xst[m].append((td["resumed"] -
                               t["suspended notified"]) / 1e6)
                ph[m].append(breakdown(src, dst))
            if have_qemu:
                st = qemu_migrate_retry(env, pages, rate)
                qd.append(st["downtime"])
                qe.append(st["stop-to-resume"])
        print("  (%s) %s, %d runs" % (key, what, runs))
        for m in methods:
            print("      xtk --suspend %-6s request -> resumed (end to end): %s"
                  % (m, pcts(xd[m])))
            print("          source side (request -> END sent): %s"
                  % pcts(xs[m]))
            print("          vCPUs stopped -> resumed: %s" % pcts(xst[m]))
            for name, _, _ in PHASES:
                v = [r[name] for r in ph[m] if r[name] is not None]
                if v:
                    print("            %-32s p50 %6.3f ms  p99 %6.3f ms"
                          % (name, statistics.median(v), pct(v, 99)))
        if qd:
            print("      QEMU query-migrate downtime (source side): %s"
                  % pcts(qd))
            print("      QEMU STOP -> RESUME (end to end): %s" % pcts(qe))
            q50, e50 = statistics.median(qd), statistics.median(qe)
            for m in methods:
                x50 = statistics.median(xd[m])
                print("      --suspend %-6s xtk end to end / QEMU downtime = "
                      "%.2f (the issue's target <= 0.5: %s); / QEMU STOP -> "
                      "RESUME = %.2f (%s); xtk source side / QEMU downtime "
                      "= %.2f"
                      % (m, x50 / q50, "met" if x50 <= 0.5 * q50 else
                         "MISSED", x50 / e50, "met" if x50 <= 0.5 * e50
                         else "MISSED", statistics.median(xs[m]) / q50))
        if bw:
            gbs = statistics.median(bw)
            floor = (int(pages) * 4096) / gbs / 1e6
            x50 = statistics.median(xd[methods[0]])
            print("      stream bandwidth (loopback TCP, 5 runs) %.2f GB/s "
                  "[%.2f-%.2f]; floor = 16 MiB / bandwidth = %.2f ms; "
                  "xtk (--suspend %s) p50 / floor = %.2f (target <= 1.5: %s)"
                  % (gbs, min(bw), max(bw), floor, methods[0], x50 / floor,
                     "met" if x50 <= 1.5 * floor else "MISSED"))
        out[key] = {"xtk": {m: {"end to end": xd[m], "source side": xs[m],
                                "stopped to resumed": xst[m],
                                "phases": ph[m]} for m in methods},
                    "qemu": {"downtime": qd, "stop to resume": qe},
                    "bandwidth GB/s": bw}
    return out


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("what", choices=("final-round", "migrate", "all"))
    ap.add_argument("runs", type=int, nargs="?", default=0)
    ap.add_argument("--scenarios", default="a,b")
    ap.add_argument("--suspend", default="evtchn,pause")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--json", help="also write every measurement here")
    a = ap.parse_args()
    scenarios = a.scenarios.split(",")
    methods = a.suspend.split(",")
    if any(k not in SCENARIOS for k in scenarios) or \
            any(m not in ("evtchn", "pause") for m in methods):
        ap.error("unknown scenario or suspend method")
    build, what, runs = a.build, a.what, a.runs
    have_qemu = not a.no_qemu and shutil.which("qemu-system-x86_64")
    env = Env(build)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        print("load: %s" % open("/proc/loadavg").read().strip())
        if what in ("final-round", "all"):
            print("1. final round of a 128 MiB idle guest "
                  "(suspend request -> last byte sent)")
            final_round(env, runs or 100)
        if what in ("migrate", "all"):
            print("2. live migration downtime, 256 MiB guest, loopback TCP")
            res = migrate(env, runs or 30, scenarios, methods, have_qemu)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(res, f, indent=1)
        print("load: %s" % open("/proc/loadavg").read().strip())
    finally:
        env.close()


if __name__ == "__main__":
    main()

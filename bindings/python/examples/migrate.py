#!/usr/bin/env python3
"""Migrates a built-in guest from one run directory to another (two
"hosts" in one process, over loopback TCP), printing each pre-copy round
as it comes, then the round table and the downtime.

    migrate.py [RUN_DIR_A RUN_DIR_B]     (default: two directories in /tmp)
"""
import sys
import tempfile
import time

import xtk


def main():
    if len(sys.argv) == 3:
        run_a, run_b = sys.argv[1:]
    else:
        top = tempfile.mkdtemp(prefix="xtk-migrate-")
        run_a, run_b = top + "/a", top + "/b"
    with xtk.Context(run_a) as a, xtk.Context(run_b) as b:
        a.create(name="demo", memory_mib=256, workload="dirty",
                 pages=16384, rate=2000)
        dest = b.restore("listen:0")
        job = a.migrate("demo", "tcp:127.0.0.1:%d" % dest.port,
                        max_downtime_ms=50)
        print("round     dirty      sent   MiB    ms")
        while not job.done():
            for ev in job.events_now():
                if ev.kind == "round":
                    r = ev.data
                    print("%5d %9d %9d %5.1f %5.1f" % (
                        r["round"], r["dirty"], r["sent"],
                        r["bytes"] / 2**20, r["ns"] / 1e6))
            time.sleep(0.01)
        job.wait()
        dest.wait()
        st = job.stats()
        for h in st["histograms"]:
            if h["name"] == "downtime":
                print("downtime %.2f ms (suspend request to the guest "
                      "running at the destination)" % (h["max"] / 1e6))
        print("domains at A:", [i.name for i in a.domains()],
              "at B:", [i.name for i in b.domains()])
        b.domain("demo").destroy()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checkpoints four built-in guests at once from one asyncio loop, each to
its own backup (a restore listening in a second run directory), printing
every epoch as it comes; after EPOCHS checkpoints each guest moves to its
backup (END).

    checkpoint4.py [INTERVAL_MS [EPOCHS]]     (default: 25 ms, 20)
"""
import asyncio
import sys
import tempfile

import xtk


async def follow(name, job):
    async for ev in job.events():
        if ev.kind == "epoch" and ev.data["ack_ns"]:
            e = ev.data
            print("%s epoch %3d: pause %6.2f ms, %5d pages, acked after "
                  "%6.2f ms" % (name, e["epoch"], e["pause_ns"] / 1e6,
                                e["pages"], e["ack_ns"] / 1e6))
    await job


async def main(interval, epochs):
    top = tempfile.mkdtemp(prefix="xtk-ckpt-")
    with xtk.Context(top + "/primary") as a, \
            xtk.Context(top + "/backup") as b:
        names = ["g%d" % i for i in range(4)]
        for n in names:
            a.create(name=n, workload="dirty", pages=2048, rate=2000)
        backups = [b.restore("listen:0") for _ in names]
        jobs = [a.checkpoint(n, "tcp:127.0.0.1:%d" % bk.port, interval,
                             count=epochs)
                for n, bk in zip(names, backups)]
        await asyncio.gather(*(follow(n, j) for n, j in zip(names, jobs)),
                             *backups)
        print("running at the backup:", [i.name for i in b.domains()])
        for n in names:
            b.domain(n).destroy()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 25,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 20))

"""Line samples of `scale-1m`'s join at several points of one run: what grows with N.

    PYTHONPATH=src .venv/bin/python bench/results/sim1m9/sample_growth.py --at 4000 --at 30000 --at 60000 --slice 2000

One run builds `scale-1m` (seed 1, collector off, as runner.run_size's join); at each --at it
runs the next --slice joins with an ITIMER_PROF signal every 1 ms of CPU (no per-call overhead),
counting the Python line and function each sample interrupts (time in a C call falls on the
line that made it). Prints, per function and per line, ms of CPU per join at each point, sorted
by the growth from the first point to the last: the lines whose cost grows with N are the ones
that read memory out of cache.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import signal
import sys
import time

from weftnet.core.dht import DhtConfig
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.engine import SIM_DHT, Simulation
from weftnet.sim.runner import storm_join
from weftnet.sim.scenario import load_scenario
from weftnet.sim.underlay import UnderlayConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--at", type=int, action="append", required=True)
    ap.add_argument("--slice", type=int, default=2000)
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--json")
    a = ap.parse_args()
    sc = load_scenario(resolve_scenario("scale-1m"))
    n = sc.sizes[-1]
    sim = Simulation(1, DhtConfig(**{**SIM_DHT, **sc.dht}), UnderlayConfig(**sc.underlay))
    first = sim.add_node()
    sim.join(first, None)
    storm_join(sim, n, sc.join_duration)
    gap = sc.join_duration / (n - 1)
    gc.disable()
    lines: collections.Counter = collections.Counter()
    funcs: collections.Counter = collections.Counter()
    total = [0]

    def handler(signum, frame) -> None:
        total[0] += 1
        c = frame.f_code
        f = c.co_filename.rsplit('/', 1)[-1]
        lines[f"{f}:{frame.f_lineno} {c.co_name}"] += 1
        funcs[f"{f}:{c.co_firstlineno} {c.co_name}"] += 1

    points = []
    for at in sorted(a.at):
        sim.run_until(at * gap)
        lines.clear(); funcs.clear(); total[0] = 0
        e0 = sim.events_processed
        signal.signal(signal.SIGPROF, handler)
        signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
        c0 = time.process_time()
        sim.run_until((at + a.slice) * gap)
        cpu = time.process_time() - c0
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        ms = 1000 * cpu / a.slice
        ev = (sim.events_processed - e0) / a.slice
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"{a.slice} joins from {at}: {cpu:.1f} s CPU, {ms:.3f} ms/join, {ev:.1f} events/join, "
              f"{total[0]} samples, load {load}", flush=True)
        points.append({"at": at, "ms": ms, "events": ev, "load": load, "samples": total[0],
                       "funcs": {k: ms * v / total[0] for k, v in funcs.items()},
                       "lines": {k: ms * v / total[0] for k, v in lines.items()}})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(points, f)
    for what in ("funcs", "lines"):
        keys = set().union(*(p[what] for p in points))
        rows = sorted(keys, key=lambda k: -points[-1][what].get(k, 0))[:a.top]
        print(f"\n-- {what}: ms per join at " + ", ".join(str(p['at']) for p in points) + " (sorted by the last)")
        for k in rows:
            vals = [p[what].get(k, 0.0) for p in points]
            print("  ".join(f"{v:6.3f}" for v in vals) + f"  {vals[-1] - vals[0]:+6.3f}  {k}")


if __name__ == "__main__":
    sys.exit(main())

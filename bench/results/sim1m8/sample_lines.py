"""Line-level CPU samples of `scale-1m`'s join (a statistical profiler: no per-call overhead).

    PYTHONPATH=src .venv/bin/python bench/results/sim1m8/sample_lines.py --build 20000 --slice 3000

Builds `scale-1m` to --build joined (seed 1, collector off), then runs --slice more joins
with an ITIMER_PROF signal every 1 ms of CPU; each sample counts the Python line it
interrupted (time in C calls falls on the line that made them) and that line's function,
with its caller's line. Prints the top lines and functions by share of samples.
"""
from __future__ import annotations

import argparse
import collections
import gc
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
    ap.add_argument("--build", type=int, default=20000)
    ap.add_argument("--slice", type=int, default=3000)
    ap.add_argument("--top", type=int, default=60)
    a = ap.parse_args()
    sc = load_scenario(resolve_scenario("scale-1m"))
    n = sc.sizes[-1]
    sim = Simulation(1, DhtConfig(**{**SIM_DHT, **sc.dht}), UnderlayConfig(**sc.underlay))
    first = sim.add_node()
    sim.join(first, None)
    storm_join(sim, n, sc.join_duration)
    gap = sc.join_duration / (n - 1)
    gc.disable()
    sim.run_until(a.build * gap)
    lines: collections.Counter = collections.Counter()
    funcs: collections.Counter = collections.Counter()
    total = [0]

    def where(f) -> str:
        c = f.f_code
        return f"{c.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno} {c.co_name}"

    def handler(signum, frame) -> None:
        total[0] += 1
        lines[where(frame)] += 1
        c = frame.f_code
        funcs[f"{c.co_filename.rsplit('/', 1)[-1]}:{c.co_firstlineno} {c.co_name}"] += 1

    signal.signal(signal.SIGPROF, handler)
    signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
    c0 = time.process_time()
    sim.run_until((a.build + a.slice) * gap)
    cpu = time.process_time() - c0
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    print(f"{a.slice} joins from {a.build}: {cpu:.1f} s CPU, {1000 * cpu / a.slice:.3f} ms/join, {total[0]} samples")
    print("\n-- functions (self) --")
    for k, v in funcs.most_common(a.top // 2):
        print(f"{100 * v / total[0]:6.2f}%  {k}")
    print("\n-- lines --")
    for k, v in lines.most_common(a.top):
        print(f"{100 * v / total[0]:6.2f}%  {k}")


if __name__ == "__main__":
    sys.exit(main())

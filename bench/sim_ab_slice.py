"""A/B of checkouts on the same stretch of `scale-1m`'s join, on a shared machine.

    .venv/bin/python bench/sim_ab_slice.py --src /tmp/before/src --src src --build 60000 --slice 3000 --rounds 4
    .venv/bin/python bench/sim_ab_slice.py --src src --src src --python - --python /usr/bin/python3.11  # interpreters

Each side (``--src``, two or more: a checkout's ``src/``) runs in a worker process of its own that
builds `scale-1m` to ``--build`` nodes joined (seed 1, the scenario's arrival times, the
collector off as `runner.run_size` has it) and then waits. The builds run one after the
other; then, ``--rounds`` times, each worker forks a child that runs the next ``--slice``
joins from the built state and reports its user CPU, the sides taking turns (in an order
that changes every round), so a busy minute of the shared machine falls on all of them.

Why this instead of two whole runs: CPU per join moves with the machine's load by up to
~20% (bench/results/sim.md, seventh round), more than most single changes are worth. A
forked child starts from its side's state as built (copy-on-write, same addresses each
time), so the repeats of one side differ only by the machine, and a side's median is
compared with the others' measured minutes apart. Each side builds its own state with
its own code, so a change of object layout is measured too. Each child also reports a
hash of the random generator's state and the event counters after the slice: equal
hashes on two sides mean the two codes drew and did the same (byte-identical runs).
Memory: every side holds its built state at once (0.75 GiB each at 60,000 joined); each reports
its peak RSS (VmHWM) once built, the sides building one after the other.
User CPU is what is compared (the kernel's page copies for a forked child are system time).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys


def worker(build: int, slice_: int, seed: int, scenario: str) -> int:
    import gc
    import hashlib
    import resource
    import time

    import weftnet
    from weftnet.core.dht import DhtConfig
    from weftnet.sim.cli import resolve_scenario
    from weftnet.sim.engine import SIM_DHT, Simulation
    from weftnet.sim.runner import storm_join
    from weftnet.sim.scenario import load_scenario
    from weftnet.sim.underlay import UnderlayConfig

    sc = load_scenario(resolve_scenario(scenario))
    n = sc.sizes[-1] if sc.sizes else sc.nodes
    sim = Simulation(seed, DhtConfig(**{**SIM_DHT, **sc.dht}), UnderlayConfig(**sc.underlay))
    first = sim.add_node()
    sim.join(first, None)
    storm_join(sim, n, sc.join_duration)
    gap = sc.join_duration / max(1, n - 1)
    gc.disable()
    c0 = time.process_time()
    sim.run_until(build * gap)
    cpu = time.process_time() - c0
    hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    print(f"built {weftnet.__file__} {cpu:.1f} s CPU, peak RSS {hwm / 1024:.0f} MiB", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            e0 = sim.events_processed
            u0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
            sim.run_until((build + slice_) * gap)
            u1 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
            h = hashlib.sha256(repr((sim.rng.getstate(), sim.events_processed, sim.messages_delivered,
                                     sim.timers_fired, sim.timers_rearmed, sim.metrics.joins_ok,
                                     sim.metrics.joins_failed)).encode()).hexdigest()[:12]
            os.write(wfd, f"{u1 - u0:.3f} {sim.events_processed - e0} {h}".encode())
            os._exit(0)
        os.close(wfd)
        data = b""
        while chunk := os.read(rfd, 4096):
            data += chunk
        os.close(rfd)
        os.waitpid(pid, 0)
        print(data.decode(), flush=True)
    sys.stdout.flush()
    os._exit(0)  # not a teardown of a million objects one by one


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=pathlib.Path, action="append", default=[],
                    help="a checkout's src/ (give two or more: the first is the reference)")
    ap.add_argument("--python", action="append", default=[],
                    help="the interpreter of the side given by the --src at the same place (default: this one; "
                         "this interpreter's site-packages stay on its path, for the dependencies)")
    ap.add_argument("--scenario", default="scale-1m")
    ap.add_argument("--build", type=int, default=60_000, help="nodes joined before the slice")
    ap.add_argument("--slice", type=int, default=3_000, help="joins in the measured slice")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.build, a.slice, a.seed, a.scenario)
    if len(a.src) < 2:
        ap.error("give --src at least twice")
    if len(a.python) > len(a.src):
        ap.error("more --python than --src")
    procs = []
    for i, src in enumerate(a.src):
        py = a.python[i] if i < len(a.python) and a.python[i] != "-" else sys.executable
        path = [str(src.resolve())]
        if py != sys.executable:
            import sysconfig
            path.append(sysconfig.get_paths()["purelib"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        p = subprocess.Popen([py, __file__, "--worker", "--build", str(a.build), "--slice",
                              str(a.slice), "--seed", str(a.seed), "--scenario", a.scenario],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        print(f"side {i} ({src}, {py}): {p.stdout.readline().strip()} at {a.build:,} joined", flush=True)
        procs.append(p)
    res: list[list[float]] = [[] for _ in procs]
    hashes: list[set] = [set() for _ in procs]
    for r in range(a.rounds):
        order = list(range(len(procs)))
        order = order[r % len(order):] + order[:r % len(order)]  # each side first in turn
        if r % 2 and len(order) > 2:  # (with two sides the reversal undid the turn: side 0 always went first)
            order.reverse()
        for i in order:
            p = procs[i]
            p.stdin.write("go\n")
            p.stdin.flush()
            user, events, h = p.stdout.readline().split()
            res[i].append(float(user))
            hashes[i].add(h)
            print(f"round {r} side {i}: user {float(user):7.2f} s  {1000 * float(user) / a.slice:.3f} ms/join  "
                  f"{events} events  state {h}  load {os.getloadavg()[0]:.2f}", flush=True)
    for p in procs:
        p.stdin.close()
        p.wait()
    ref = statistics.median(res[0])
    print(f"median user CPU for {a.slice:,} joins from {a.build:,} joined, per side (ratio to side 0; "
          f"state after the slice against side 0's):")
    for i, src in enumerate(a.src):
        m = statistics.median(res[i])
        same = "same" if hashes[i] == hashes[0] and len(hashes[i]) == 1 else "DIFFERENT"
        print(f"  side {i}: {m:7.2f} s  {1000 * m / a.slice:.3f} ms/join  x{m / ref:.3f}  {same}  ({src})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

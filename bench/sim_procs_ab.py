"""Wall time and memory of `scale-1m`'s join to N nodes on one process or several, interleaved.

    .venv/bin/python bench/sim_procs_ab.py --nodes 30000 --rounds 3 [--sides classic,1,2]
    .venv/bin/python bench/sim_procs_ab.py --nodes 20000 --rounds 2 --sides base:2,2 --base-src ../main/src

A side is ``classic`` (the engine of `weft sim` without --procs: sim/engine.py) or a number P
(the partitioned engine of sim/parallel.py on P processes, as `weft sim --procs P`). Each
measurement is a fresh interpreter that builds `scale-1m`'s storm (seed 1, a million arrivals over
the hour, the collector off as the runner has it) up to N nodes joined and prints its wall time,
the CPU (user + system) and peak RSS summed over its processes, and a digest of what the run did
(joins, events, messages, the routing tables' sizes): equal digests for 1 and 2 show the same run.
The sides take turns, in an order that changes every round, so the shared machine's load falls on
all of them; the load average is printed with each row. A side ``base:S`` runs side S with
``--base-src DIR`` first on PYTHONPATH (another tree's code, e.g. main's, as the baseline of an A/B).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024.0  # (CPU s, MiB)


def one(side: str, nodes: int, seed: int) -> dict:
    import gc

    from weftnet.core.dht import DhtConfig
    from weftnet.sim.cli import resolve_scenario
    from weftnet.sim.engine import SIM_DHT, Simulation
    from weftnet.sim.runner import storm_join
    from weftnet.sim.scenario import load_scenario
    from weftnet.sim.underlay import UnderlayConfig

    sc = load_scenario(resolve_scenario("scale-1m"))
    n = sc.sizes[-1]
    gap = sc.join_duration / max(1, n - 1)
    dcfg = DhtConfig(**{**SIM_DHT, **sc.dht})
    t_end = nodes * gap

    def body(sim, _progress=None) -> dict:
        gc.disable()
        first = sim.add_node()
        sim.join(first, None)
        storm_join(sim, n, sc.join_duration)
        sim.run_until(t_end)
        cpu, rss = _usage()
        mine = [len(x.dht.table) for x in sim.alive if x.dht is not None]
        return {"cpu": cpu, "rss": rss, "joins": sim.metrics.joins_ok, "failed": sim.metrics.joins_failed,
                "delivered": sim.messages_delivered, "tables": mine,
                "node_events": getattr(sim, "messages_popped", 0) + getattr(sim, "timer_events", 0),
                "calls": sim.calls_run, "events": sim.events_processed, "alive": len(sim.alive),
                "windows": getattr(sim, "windows", 0), "messages_out": getattr(sim, "messages_out", 0)}

    t0 = time.perf_counter()
    if side == "classic":
        parts = [body(Simulation(seed, dcfg, UnderlayConfig(**sc.underlay)))]
        events = parts[0]["events"]
    else:
        from weftnet.sim.parallel import PSimulation, run_parallel

        procs = int(side)
        parts = run_parallel(procs, lambda rank, p, links: PSimulation(seed, dcfg, UnderlayConfig(**sc.underlay),
                                                                       rank, p, links), body)
        events = sum(p["node_events"] for p in parts) + parts[0]["calls"]
    wall = time.perf_counter() - t0
    cpu0, rss0 = _usage()  # this process's, to the end (rank 0 is this process)
    cpu = cpu0 + sum(p["cpu"] for p in parts[1:])
    rss = rss0 + sum(p["rss"] for p in parts[1:])
    state = (sum(p["joins"] for p in parts), sum(p["failed"] for p in parts), events,
             sum(p["delivered"] for p in parts), sorted(s for p in parts for s in p["tables"]), parts[0]["alive"])
    return {"side": side, "nodes": nodes, "wall": round(wall, 2), "cpu": round(cpu, 2), "rss_mib": round(rss, 1),
            "procs_rss_mib": [round(rss0, 1)] + [round(p["rss"], 1) for p in parts[1:]],
            "procs_cpu": [round(cpu0, 2)] + [round(p["cpu"], 2) for p in parts[1:]],
            "events": events, "joins": state[0], "delivered": state[3],
            "windows": parts[0]["windows"], "cross_partition": sum(p["messages_out"] for p in parts),
            "digest": hashlib.sha256(repr(state).encode()).hexdigest()[:12]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30_000, help="nodes joined (scale-1m's storm to this many)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sides", default="1,2", help="comma-separated: classic and/or process counts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="append each row to this file (JSON lines)")
    ap.add_argument("--base-src", help="the source tree (a src directory) that sides named base:S run")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.nodes, a.seed)), flush=True)
        sys.stdout.flush()
        os._exit(0)  # not a teardown of the run's objects one by one
    sides = a.sides.split(",")
    for r in range(a.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for side in order:
            load = os.getloadavg()[0]
            env = dict(os.environ)
            run = side
            if side.startswith("base:"):
                if not a.base_src:
                    ap.error("a base:S side needs --base-src")
                run = side[5:]
                env["PYTHONPATH"] = os.pathsep.join([a.base_src] + [x for x in [env.get("PYTHONPATH")] if x])
            out = subprocess.run([sys.executable, __file__, "--one", run, "--nodes", str(a.nodes), "--seed",
                                  str(a.seed)], capture_output=True, text=True, check=True, env=env).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row.update(side=side, round=r, load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2),
                       src=a.base_src if side.startswith("base:") else os.environ.get("PYTHONPATH", ""))
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs a scenario: the phases of an experiment, one network size at a time.

Phases, in virtual time, for each size N:

1. **join** — ``storm``: node 0 starts alone; the others arrive evenly over
   ``[join] duration``, each bootstrapping through a random node already in;
   ``warm``: all N appear at once with tables filled from the ID space.
2. a 30 s settle;
3. **lookups** — ``[lookups] count`` lookups of random live node IDs from
   random live nodes, evenly over ``[lookups] duration``;
4. **records** — ``[records] count`` puts, each read back from another random
   node 30 s later;
5. **churn** — for ``[churn] duration``: every node's session length is drawn
   (exponential or Pareto with the configured median); at its end the node
   crashes or leaves gracefully (``crash_fraction``) and a fresh node takes its
   place through a random live node; lookups keep running at
   ``lookups_per_minute``; ``[[partition]]`` entries cut regions apart and heal.

The result is a plain dict (see report.py) whose deterministic part depends
only on the scenario and the seed.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any, Callable

from weftnet.core.dht import DhtConfig
from weftnet.sim import report
from weftnet.sim.engine import SIM_DHT, Simulation, lookup_windows
from weftnet.sim.scenario import Scenario
from weftnet.sim.underlay import UnderlayConfig

__all__ = ["run_scenario", "run_size"]

SETTLE = 30.0


def _session(sim: Simulation, sc: Scenario) -> float:
    if sc.churn_distribution == "exponential":
        return sim.rng.expovariate(math.log(2) / sc.median_session)
    scale = sc.median_session / 2 ** (1 / sc.pareto_shape)
    return scale * sim.rng.paretovariate(sc.pareto_shape)


def storm_join(sim: Simulation, n: int, duration: float) -> None:
    """Schedule nodes 2..n to arrive evenly over ``duration`` s, each joining through a random
    live node (the first node, added and joined by the caller, is node 1)."""
    gap = duration / max(1, n - 1)
    nxt = [1]

    def arrive() -> None:
        # Arrivals are queued one at a time, each by the one before: a million of
        # them queued up front would deepen every heap operation of the run.
        i = nxt[0] = nxt[0] + 1
        if i < n:
            sim.at(i * gap, arrive)
        via = sim.random_alive()
        node = sim.add_node()
        sim.join(node, via)

    if n > 1:
        sim.at(gap, arrive)


def run_size(sc: Scenario, n: int, seed: int, progress: Callable[[str, float], None] | None = None,
             procs: int | None = None) -> dict[str, Any]:
    """One size of a scenario. ``procs`` None: the classic engine (one process, one random
    source); a number: the partitioned engine of sim/parallel.py on that many processes (the
    same bytes for every number)."""
    if procs is not None:
        from weftnet.sim.parallel import run_size_parallel
        return run_size_parallel(sc, n, seed, procs, progress)
    dcfg = DhtConfig(**{**SIM_DHT, **sc.dht})
    sim = Simulation(seed, dcfg, UnderlayConfig(**sc.underlay))
    d = drive(sim, sc, n, dcfg, progress)
    m = sim.metrics
    return assemble(sc, n, d, m, m.lookups[:d["lookups_end"]], m.lookups[d["churn_before"]:],
                    sim.table_sizes(), len(sim.alive),
                    sim.events_processed, sim.messages_delivered, sim.messages_lost,
                    sim.underlay.memory_bytes())


def drive(sim: Simulation, sc: Scenario, n: int, dcfg: DhtConfig,
          progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Run the phases on ``sim``; returns the phase marks ``assemble`` needs."""
    phase = {"name": "join"}
    total = (sc.join_duration if sc.join_mode == "storm" else 0) + SETTLE + sc.lookup_duration + \
        (60.0 if sc.records else 0) + sc.churn_duration + 60.0

    def tick(now: float) -> None:
        if progress:
            progress(phase["name"], min(1.0, now / total))

    # 1. join
    first = sim.add_node()
    sim.join(first, None)
    if sc.join_mode == "warm":
        for _ in range(n - 1):
            sim.add_node()
        sim.warm_tables()
        t = 0.0
    else:
        storm_join(sim, n, sc.join_duration)
        t = sc.join_duration
    # The join makes no cyclic garbage (gc.collect() after 5,000-20,000 joins of scale-1m
    # finds none), only objects that live to the end: collecting during it rescans them for
    # nothing (2-4% of its CPU, growing with N). Off for the join, then what it built is
    # frozen (never scanned again by the young passes of the later phases), given back to
    # the collector's oldest generation at the end of the run.
    collecting = gc.isenabled()
    gc.disable()
    try:
        sim.run_until(t + SETTLE, tick)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    t += SETTLE
    joined_at = t

    # 2. lookups
    phase["name"] = "lookups"
    lookups_start = t
    if sc.lookups:
        gap = sc.lookup_duration / sc.lookups
        for i in range(sc.lookups):
            sim.at(t + i * gap, sim.lookup)
        t += sc.lookup_duration
    # Let the last lookups finish before anything else starts.
    sim.run_until(t + dcfg.lookup_timeout, tick)
    t += dcfg.lookup_timeout
    lookups_end = len(sim.metrics.lookups)

    # 3. records
    if sc.records:
        phase["name"] = "records"
        gap = 30.0 / sc.records
        for i in range(sc.records):
            value = sim.rng.randbytes(32)
            sim.at(t + i * gap, lambda v=value: sim.put_then_get(v, 30.0, sc.quorum))
        t += 30.0 + 30.0 + dcfg.lookup_timeout
        sim.run_until(t, tick)

    # 4. churn
    marks: dict[str, Any] = {"joined_at": joined_at, "lookups_end": lookups_end,
                             "churn_before": len(sim.metrics.lookups), "churn": None}
    if sc.churn_duration > 0:
        phase["name"] = "churn"
        start = t
        end = t + sc.churn_duration
        before = len(sim.metrics.lookups)

        def schedule_departure(node, since: float) -> None:
            when = since + _session(sim, sc)
            if when < end:
                sim.at(when, lambda: leave(node))

        def leave(node) -> None:
            if not node.alive:
                return
            sim.depart(node, graceful=sim.rng.random() >= sc.crash_fraction)
            sim.metrics.arrivals += 1
            via = sim.random_alive(exclude=node)
            fresh = sim.add_node()
            sim.join(fresh, via)
            schedule_departure(fresh, sim.now)

        for node in list(sim.alive):
            # Sessions already under way: for the exponential the remaining time
            # has the same law (memoryless); for Pareto we draw afresh.
            schedule_departure(node, start)
        if sc.churn_lookups_per_minute > 0:
            gap = 60.0 / sc.churn_lookups_per_minute
            k = 0
            while start + k * gap < end:
                sim.at(start + k * gap, sim.lookup)
                k += 1
        for p in sc.partitions:
            sim.at(start + p["start"], lambda p=p: sim.underlay.partition(list(p["a"]), list(p["b"])))
            sim.at(start + p["end"], sim.underlay.heal)
        sim.run_until(end + dcfg.lookup_timeout, tick)
        t = end + dcfg.lookup_timeout
        marks["churn_before"] = before
        marks["churn"] = (start, end)
    elif sc.partitions:
        for p in sc.partitions:
            sim.at(lookups_start + p["start"], lambda p=p: sim.underlay.partition(list(p["a"]), list(p["b"])))
            sim.at(lookups_start + p["end"], sim.underlay.heal)

    gc.unfreeze()
    marks["t"] = t
    return marks


def assemble(sc: Scenario, n: int, d: dict[str, Any], m, lookups: list, recs: list, table_sizes: list[int],
             alive: int, events: int, delivered: int, lost: int, underlay_bytes: int) -> dict[str, Any]:
    """The result of one size from what ``drive`` ran (``m``: the Metrics; ``lookups``: the
    lookup phase's records; ``recs``: the churn phase's)."""
    churn: dict[str, Any] = {}
    if d["churn"] is not None:
        start, end = d["churn"]
        churn = {
            "duration": sc.churn_duration,
            "distribution": sc.churn_distribution,
            "median_session": sc.median_session,
            "departures_crash": m.departures_crash,
            "departures_graceful": m.departures_graceful,
            "arrivals": m.arrivals,
            "lookups": report.lookup_stats(recs),
            "windows": lookup_windows(recs, start, end),
        }
    return {
        "nodes": n,
        "join": {"mode": sc.join_mode, "ok": m.joins_ok, "failed": m.joins_failed, "joined_at": d["joined_at"]},
        "lookups": report.lookup_stats(lookups),
        "lookup_records": lookups,
        "records": {"puts_ok": m.puts_ok, "puts_failed": m.puts_failed, "gets_ok": m.gets_ok,
                    "gets_failed": m.gets_failed,
                    "get_success_rate": round(m.gets_ok / max(1, m.gets_ok + m.gets_failed), 6)},
        "churn": churn,
        "routing_table": report.distribution(table_sizes),
        "alive_at_end": alive,
        "virtual_seconds": round(d["t"], 3),
        "events": events,
        "messages_delivered": delivered,
        "messages_lost": lost,
        "underlay_bytes": underlay_bytes,
    }


def run_scenario(sc: Scenario, seed: int | None = None, sizes: list[int] | None = None,
                 progress: Callable[[int, str, float], None] | None = None,
                 procs: int | None = None) -> tuple[dict, dict, list]:
    """Run every size. Returns (summary, run_info, raw results): only summary is deterministic.

    ``procs``: None for the classic engine, a number for the partitioned one (sim/parallel.py)."""
    seed = sc.seed if seed is None else seed
    if procs is not None:
        from weftnet.sim.parallel import check_procs
        check_procs(sc, procs)  # (a bad count fails here, before anything runs)
    results = []
    wall = {}
    # A run allocates millions of long-lived objects (tables, contacts) and
    # makes almost no cyclic garbage; the default collector would rescan the
    # whole heap over and over (measured: 27% of the wall time at 20,000
    # nodes). Collect young objects rarely and the old generation almost never.
    saved = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)
    try:
        for n in sizes or sc.sizes:
            t0 = time.perf_counter()
            r = run_size(sc, n, seed, (lambda ph, f, n=n: progress(n, ph, f)) if progress else None, procs)
            wall[str(n)] = round(time.perf_counter() - t0, 2)
            results.append(r)
    finally:
        gc.set_threshold(*saved)
    summary = report.summary(sc, seed, results)
    info = {"wall_seconds": wall, **report.machine_info()}
    if procs is not None:
        # The model the partitioned engine runs (the same bytes for any --procs), named in the
        # summary since it is not the classic engine's; the process count only in run_info.
        summary["engine"] = "partitioned"
        info["procs"] = procs
        # Each process's CPU (user + system) and peak RSS at the end of each size (rank 0 first: this one).
        info["processes"] = {str(r["nodes"]): r.get("processes") for r in results}
    return summary, info, results

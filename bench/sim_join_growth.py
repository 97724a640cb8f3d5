"""What grows with N in `scale-1m`'s join: per-slice counters and profiles along one run.

    .venv/bin/python bench/sim_join_growth.py --to 130000 --every 10000 \
        --profile 15000:20000 --profile 125000:130000 --out out/growth

Runs the first ``--to`` joins of `scale-1m` exactly as `bench/sim_scale.py --scenario scale-1m`
does (same seed, same arrival times: node i arrives at i * 3600 / 999,999 s), stopping at
checkpoints every ``--every`` joins. For each slice between checkpoints it records the CPU
spent, events by kind (messages delivered, timers that did work, stale timer entries, workload
calls), the DHT's own counters summed over all nodes (requests sent, timeouts, lookups started
by kind), the event heap's size and the garbage collector's passes and time; a slice given
with ``--profile A:B`` (in nodes joined) also runs under cProfile, and its top functions are
reported per join. Writes growth.csv and profile_A_B.txt into --out and prints a table.
``--gc off`` runs the joins with the collector off, as `runner.run_size` does since the seventh
round (``--gc runner``: its thresholds before that, for a run of the code before it).

``--project growth.csv`` (no run) projects a million joins from such a table, as
`bench/sim_scale_progress.py` does from a `scale-1m` log: a least-squares fit of the ms of CPU
per join against log2 N over the slices not profiled (weighted by N), summed from the last of
them to 1,000,000 on top of the CPU they measured (a profiled slice counts at the fit's value).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import gc
import io
import os
import pathlib
import pstats
import resource
import time
from collections import Counter

from weftnet.core.dht import DhtConfig
from weftnet.core.dht.engine import Dht
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.engine import SIM_DHT, Simulation
from weftnet.sim.runner import storm_join
from weftnet.sim.scenario import load_scenario
from weftnet.sim.underlay import UnderlayConfig

KINDS = Counter()
_orig_start = Dht._start_lookup


def _counting_start(self, kind, *a, **kw):
    KINDS[kind] += 1
    return _orig_start(self, kind, *a, **kw)


def project(path: pathlib.Path, n_end: int = 1_000_000) -> str:
    import math

    rows = list(csv.DictReader(open(path)))
    prev, pts, measured, end = 1, [], 0.0, 1
    for r in rows:
        n, ms = int(r["nodes"]), float(r["ms_cpu_per_join"])
        if not int(r["profiled"]):
            pts.append((math.log2((prev + n) / 2), ms, n, n - prev))
        prev = n
    w = [p[2] for p in pts]
    sw = sum(w)
    mx = sum(wi * p[0] for wi, p in zip(w, pts)) / sw
    my = sum(wi * p[1] for wi, p in zip(w, pts)) / sw
    b = (sum(wi * (p[0] - mx) * (p[1] - my) for wi, p in zip(w, pts))
         / sum(wi * (p[0] - mx) ** 2 for wi, p in zip(w, pts)))
    a = my - b * mx
    prev = 1
    for r in rows:  # measured CPU to the last slice; a profiled slice at the fit's value
        n, ms = int(r["nodes"]), float(r["ms_cpu_per_join"])
        measured += (n - prev) * (a + b * math.log2((prev + n) / 2) if int(r["profiled"]) else ms) / 1000
        prev = end = n
    step = 1000
    more = sum((a + b * math.log2(n + step / 2)) * step for n in range(end, n_end, step)) / 1000
    return (f"projection to {n_end:,} joined from {path} (fit ms CPU/join = {a:.2f} + {b:.3f} * log2 N over "
            f"{len(pts)} slices; {a + b * math.log2(n_end):.2f} ms at {n_end:,}): join CPU {measured + more:,.0f} s "
            f"({measured:,.0f} s to {end:,})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="scale-1m")
    ap.add_argument("--to", type=int, default=130_000)
    ap.add_argument("--every", type=int, default=10_000)
    ap.add_argument("--profile", action="append", default=[], help="A:B, nodes joined")
    ap.add_argument("--out", default="out/growth")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gc", choices=("runner", "off"), default="runner",
                    help="the runner's GC thresholds, or no collection during the joins")
    ap.add_argument("--project", type=pathlib.Path, help="a growth.csv: project a million joins from it, no run")
    a = ap.parse_args()
    if a.project:
        print(project(a.project))
        return 0
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sc = load_scenario(resolve_scenario(a.scenario))
    n = sc.sizes[-1] if sc.sizes else sc.nodes
    Dht._start_lookup = _counting_start
    sim = Simulation(a.seed, DhtConfig(**{**SIM_DHT, **sc.dht}), UnderlayConfig(**sc.underlay))
    first = sim.add_node()
    sim.join(first, None)
    storm_join(sim, n, sc.join_duration)  # as runner.run_size joins
    gap = sc.join_duration / max(1, n - 1)  # node m arrives at m * gap

    gc_time = [0.0, 0]
    t_gc = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            t_gc[0] = time.process_time()
        else:
            gc_time[0] += time.process_time() - t_gc[0]
            gc_time[1] += 1

    gc.callbacks.append(on_gc)
    saved = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)  # the runner's
    if a.gc == "off":
        gc.disable()
    profiles = [tuple(int(x) for x in p.split(":")) for p in a.profile]
    marks = sorted({*range(a.every, a.to + 1, a.every), *(x for p in profiles for x in p)})
    rows = []
    prev = None

    def snapshot(nodes_in: int) -> dict:
        st = Counter()
        for node in sim.nodes:
            s = node.dht.stats
            for k in ("requests_sent", "requests_received", "responses", "timeouts"):
                st[k] += s.get(k, 0)
        return {"nodes": nodes_in, "virtual_s": round(sim.now, 2), "cpu_s": time.process_time(),
                "wall_s": time.perf_counter(), "events": sim.events_processed,
                "msg": sim.events_processed - sim.timers_fired - sim.timers_stale - sim.calls_run,
                "timer": sim.timers_fired, "noop": sim.timers_rearmed, "stale": sim.timers_stale, "call": sim.calls_run, "heap": len(sim._heap), "far": sum(map(len, sim._far.values())),
                "gc_s": gc_time[0], "gc_n": gc_time[1], **st, **{f"lk_{k}": v for k, v in KINDS.items()},
                "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}

    prof = None
    prev = snapshot(1)
    for m in marks:
        start = next((p for p in profiles if p[0] == prev["nodes"]), None)
        if start:
            prof = cProfile.Profile()
            prof.enable()
        sim.run_until(m * gap)
        if prof is not None:
            prof.disable()
        cur = snapshot(m)
        dn = cur["nodes"] - prev["nodes"]
        row = {"nodes": m, "heap": cur["heap"], "far": cur["far"], "rss_gib": round(cur["rss_gib"], 2),
               "load1": round(os.getloadavg()[0], 2),
               "ms_cpu_per_join": round(1000 * (cur["cpu_s"] - prev["cpu_s"]) / dn, 3),
               "profiled": int(prof is not None)}
        for k in ("events", "msg", "timer", "noop", "stale", "call", "requests_sent", "timeouts", "gc_n"):
            row[f"{k}_per_join"] = round((cur.get(k, 0) - prev.get(k, 0)) / dn, 3)
        row["gc_ms_per_join"] = round(1000 * (cur["gc_s"] - prev["gc_s"]) / dn, 3)
        row["us_cpu_per_event"] = round(1e6 * (cur["cpu_s"] - prev["cpu_s"]) / max(1, cur["events"] - prev["events"]), 2)
        for k in sorted(x for x in cur if x.startswith("lk_")):
            row[f"{k}_per_join"] = round((cur[k] - prev.get(k, 0)) / dn, 3)
        rows.append(row)
        print(row, flush=True)
        if prof is not None:
            s = io.StringIO()
            ps = pstats.Stats(prof, stream=s)
            tt = ps.total_tt
            lines = [f"cProfile of joins {prev['nodes']:,}-{m:,} ({dn:,} joins; profiled total {tt:.1f} s, "
                     f"{1000 * tt / dn:.3f} ms per join)", "", "tottime ms/join  calls/join  function"]
            items = sorted(ps.stats.items(), key=lambda kv: -kv[1][2])[:40]
            for (fn, line, name), (cc, nc, ttime, ct, _) in items:
                lines.append(f"{1000 * ttime / dn:10.4f} {nc / dn:10.2f}  {pathlib.Path(fn).name}:{line} {name}")
            (out / f"profile_{prev['nodes']}_{m}.txt").write_text("\n".join(lines) + "\n")
            prof = None
        prev = cur
    gc.enable()
    gc.set_threshold(*saved)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "nodes", k))
    with open(out / "growth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

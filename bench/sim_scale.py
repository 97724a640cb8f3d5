"""The simulator at scale: 100,000 nodes join, then 10,000 lookups (issue bar: < 10 min, < 8 GiB).

    .venv/bin/python bench/sim_scale.py [--scenario scale-100k] [--nodes N] [--out DIR]

Runs the bundled scenario in this process through the same runner as
`weft sim`, then writes bench/results/sim.md (appending a row per run to the
table there) with wall time, peak RSS, lookup success and the hop and latency
distributions, and the machine described. Plots and summary.json go to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import time

from weftnet.sim.cli import resolve_scenario
from weftnet.sim.report import text_summary, write_outputs
from weftnet.sim.runner import SETTLE, run_scenario
from weftnet.sim.scenario import load_scenario

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine() -> str:
    import os

    model = next((l.split(":", 1)[1].strip() for l in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "unknown CPU")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="scale-100k")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="out/sim-scale")
    a = ap.parse_args()
    sc = load_scenario(resolve_scenario(a.scenario))
    sizes = [a.nodes] if a.nodes else sc.sizes
    t0 = time.perf_counter()
    c0 = time.process_time()
    last = [0.0]

    def total_virtual(n: int) -> float:  # runner.run_size's ``total``
        return ((sc.join_duration if sc.join_mode == "storm" else 0) + SETTLE + sc.lookup_duration
                + (60.0 if sc.records else 0) + sc.churn_duration + 60.0)

    def progress(n, phase, frac):
        now = time.perf_counter()
        if now - last[0] > 60:
            last[0] = now
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            # In a storm join node i arrives at i * duration / (N - 1): the virtual time says how many are in.
            virt = frac * total_virtual(n)
            joined = n if sc.join_mode != "storm" else min(n, 1 + int(virt / sc.join_duration * (n - 1)))
            print(f"  N={n:,} {phase} {100 * frac:.1f}% (virtual {virt:.0f} s, {joined:,} nodes in)  "
                  f"({now - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU, peak RSS {rss:.2f} GiB, "
                  f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)

    summary, info, results = run_scenario(sc, a.seed, sizes, progress)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    load = os.getloadavg()[1]
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    write_outputs(pathlib.Path(a.out), summary, info, results)
    print(text_summary(summary, info))
    RESULTS.mkdir(exist_ok=True)
    md = RESULTS / "sim.md"
    header = (
        "# Simulator at scale\n\n"
        "Each row: `.venv/bin/python bench/sim_scale.py --scenario NAME [--nodes N]` — the real `Dht` class per\n"
        "node, simulated authenticated channel, Internet-like latency model (docs/simulator.md). Wall time and\n"
        "peak RSS are for the whole run in one process on one core.\n\n"
        "| date | scenario | nodes | join | lookups | found | hops mean / p99 / max | latency p50 / p99 (virtual ms) | requests per lookup | events | wall | peak RSS | machine |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    text = md.read_text() if md.exists() else header
    for r in summary["runs"]:
        lk = r["lookups"]
        h, lat = lk["hops"], lk["latency_ms"]
        text += (
            f"| {time.strftime('%Y-%m-%d')} | {summary['scenario']} | {r['nodes']:,} | {r['join']['mode']} "
            f"({r['join']['ok']:,} ok) | {lk['count']:,} | {100 * (lk['success_rate'] or 0):.2f}% | "
            f"{h.get('mean')} / {h.get('p99')} / {h.get('max')} | {lat.get('p50')} / {lat.get('p99')} | "
            f"{lk['messages'].get('mean')} | {r['events']:,} | {info['wall_seconds'][str(r['nodes'])]:.0f} s "
            f"(CPU {cpu:.0f} s, load {load:.1f}) | "
            f"{rss_gib:.2f} GiB | {machine()} |\n"
        )
    md.write_text(text)
    print(f"\ntotal wall {wall:.0f} s, CPU {cpu:.0f} s, peak RSS {rss_gib:.2f} GiB; appended to {md}")
    (pathlib.Path(a.out) / "bench.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_gib": rss_gib,
                                                                 "loadavg_5min": load}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

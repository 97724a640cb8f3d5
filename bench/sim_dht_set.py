"""DHT settings A/B in the simulator (bench/sim_fill_depths.py of djoin8, for any DhtConfig field).

    .venv/bin/python bench/sim_dht_set.py --kind latency --nodes 5000 --seeds 1,2,3 --variants "main;join_fill=5"

Each ``--variants`` entry (separated by ``;``) is one variant: ``NAME=VALUE`` pairs separated by
``,`` (integers), set on the DhtConfig the runner builds; ``main`` (or empty) is the defaults.
Every other setting is the scenario's. Kinds:

* ``latency``: bench/sim_latency.py's scenario (storm join, lookups, then ``--churn-minutes`` of
  churn at 600 lookups a minute) with the library's defaults (own-ID refresh off, hourly bucket
  refresh, as latency-100k runs them);
* ``churn``: the bundled ``churn`` scenario (2,000 nodes, one hour of churn); ``--nodes`` overrides;
* ``churn-long``: bench/sim_churn.py's scenario (``--hours`` of churn, 600 lookups a minute).

A field that is not a scenario key is set by each worker on the DhtConfig the runner builds
(nothing in sim/ changes). Prints one row per variant and seed, and writes them as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import sys
import time
import tomllib

HERE = pathlib.Path(__file__).resolve().parent


def _point(task: tuple[dict, dict, tuple[int, ...]]) -> tuple[dict, dict]:
    from weftnet.core.dht import engine
    from weftnet.sim import runner
    from weftnet.sim.sweep import run_point

    base, point, extra = task
    real = engine.DhtConfig
    runner.DhtConfig = lambda **kw: real(**{**kw, **extra})
    return run_point(base, point)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("latency", "churn", "churn-long"), default="latency")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--variants", default="main")
    ap.add_argument("--churn-minutes", type=float, default=1.0)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="out/sim-dht-set.json")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    if a.kind == "latency":
        import sim_latency

        nodes = a.nodes or 5000
        base = sim_latency.scenario(nodes, a.churn_minutes, {"self_refresh": False, "refresh_interval": 3600.0})
    elif a.kind == "churn":
        from weftnet.sim.cli import BUNDLED

        base = tomllib.loads((BUNDLED / "churn.toml").read_text())
        nodes = a.nodes or base["scenario"]["nodes"]
    else:
        import sim_churn

        nodes = a.nodes or 2000
        base = sim_churn.scenario(nodes, a.hours, {})
    variants = [v.strip() for v in a.variants.split(";")]

    def parse(v: str) -> dict:
        if v in ("", "main"):
            return {}
        return {name: int(value) for name, _, value in (p.partition("=") for p in v.split(","))}
    seeds = [int(s) for s in a.seeds.split(",")]
    tasks = [(base, {"nodes": nodes, "seed": s, "settings": {}}, parse(v)) for s in seeds for v in variants]
    t0 = time.perf_counter()
    rows = []
    print("| kind | nodes | seed | variant | found | p50 / p99 ms | churn: found | worst minute | p50 / p99 ms "
          "| requests/lookup | table | events | CPU s |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    pct = lambda x: f"{100 * x:.2f}%" if x is not None else "-"  # noqa: E731
    with multiprocessing.get_context("spawn").Pool(a.workers) as pool:
        for (_, point, v), (row, timing) in zip(tasks, pool.imap(_point, tasks)):  # in order, as they end
            label = ",".join(f"{k}={x}" for k, x in v.items()) or "main"
            row = dict(row, kind=a.kind, variant=label, **timing)
            rows.append(row)
            print(f"| {a.kind} | {nodes} | {point['seed']} | {label} | "
                  f"{pct(row.get('lookup_success'))} | {row.get('latency_p50_ms')} / {row.get('latency_p99_ms')} | "
                  f"{pct(row.get('churn_success'))} | {pct(row.get('churn_worst_minute'))} | "
                  f"{row.get('churn_latency_p50_ms')} / {row.get('churn_latency_p99_ms')} | "
                  f"{row.get('requests_per_lookup')} | {row.get('table_mean')} | {row.get('events'):,} | "
                  f"{timing['cpu_s']:.0f} |", flush=True)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wall {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

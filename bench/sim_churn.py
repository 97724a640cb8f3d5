"""Lookups under hours of churn, one DHT setting at a time (issue 16: >= 99.5% in every minute).

    .venv/bin/python bench/sim_churn.py [--nodes 2000] [--hours 3] [--workers 2] [--variants a,b] [--no-save]

Every variant is the bundled `churn-long` scenario (storm join, then exponential
sessions with a median of 30 minutes, half of the departures crashes, each
replaced by a fresh node, 600 lookups a minute) with one DHT setting changed
from this commit's defaults. Reported per variant: lookups found during churn,
the worst one-minute window, how many minutes fell under 99.5%, and the
latency of lookups under churn (virtual time, the Internet model). The table
is appended to bench/results/sim_churn.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

VARIANTS = {
    "defaults": {},
    "without Leave messages": {"say_leave": False},
    "without self refresh": {"self_refresh": False},
    "full refresh after join instead of join fill": {"refresh_on_join": True},
    "own-ID lookup every 5 min": {"maintenance_interval": 300.0},
    "idle buckets refreshed after 15 min": {"refresh_interval": 900.0},
    "before issue 16's second round": {"say_leave": False, "self_refresh": False, "join_fill": 0,
                                       "refresh_on_join": True},
    "fill 8 nearest first (the defaults before 2026-11-30)": {"join_fill": 8, "fill_by_rtt": False,
                                                             "fill_topup": False},
    "fill 8 fastest first": {"join_fill": 8, "fill_by_rtt": True, "fill_topup": False},
    "fill 6 nearest first": {"join_fill": 6, "fill_by_rtt": False, "fill_topup": False},
    "fill 6 fastest first": {"join_fill": 6, "fill_by_rtt": True, "fill_topup": False},
    "fill 6 fastest first, top-up (the defaults since join round five)": {"join_fill": 6, "fill_by_rtt": True,
                                                                          "fill_topup": True},
}


def scenario(n: int, hours: float, dht: dict) -> dict:
    return {
        "scenario": {"name": "churn-long", "nodes": n},
        "join": {"mode": "storm", "duration": 600},
        "lookups": {"count": 1000, "duration": 60},
        "churn": {"duration": hours * 3600, "distribution": "exponential", "median_session": 1800,
                  "crash_fraction": 0.5, "lookups_per_minute": 600},
        "dht": dht,
    }


def run(name: str, data: dict, n: int, seed: int) -> dict:
    import gc

    from weftnet.sim.runner import run_size
    from weftnet.sim.scenario import scenario_from_dict

    sc = scenario_from_dict(data, "<sim_churn>")
    gc.set_threshold(200_000, 50, 1000)
    t0, c0 = time.perf_counter(), time.process_time()
    r = run_size(sc, n, seed)
    churn = r["churn"]
    windows = churn["windows"]
    lat = churn["lookups"]["latency_ms"]
    return {
        "variant": name, "dht": data["dht"], "nodes": n, "seed": seed,
        "hours": data["churn"]["duration"] / 3600,
        "lookups": churn["lookups"]["count"], "found": churn["lookups"]["success_rate"],
        "worst_minute": min(w["success_rate"] for w in windows),
        "minutes": len(windows), "minutes_under_99_5": sum(w["success_rate"] < 0.995 for w in windows),
        "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
        "departures": churn["departures_crash"] + churn["departures_graceful"],
        "table_mean": r["routing_table"].get("mean"), "events": r["events"],
        "wall_s": round(time.perf_counter() - t0), "cpu_s": round(time.process_time() - c0),
        "windows": [w["success_rate"] for w in windows],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variants", help="comma-separated parts of variant names (default: all)")
    ap.add_argument("--set", default="", help="extra DHT settings for every variant, as JSON")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--out", default="out/sim-churn")
    a = ap.parse_args()
    extra = json.loads(a.set) if a.set else {}
    variants = VARIANTS
    if a.variants:
        variants = {k: v for k, v in variants.items() if any(w.strip() in k for w in a.variants.split(","))}
    tasks = [(name, scenario(a.nodes, a.hours, {**extra, **v}), a.nodes, a.seed) for name, v in variants.items()]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(a.workers) as pool:
        rows = pool.starmap(run, tasks)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"\n### {a.nodes:,} nodes, {a.hours:g} h of churn, seed {a.seed}, {time.strftime('%Y-%m-%d')}"
             + (f", also {json.dumps(extra)}" if extra else "") + "\n",
             "| variant | lookups | found | worst minute | minutes < 99.5% | p50 ms | p99 ms | departures | table | "
             "events | CPU s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['lookups']:,} | {100 * r['found']:.3f}% | {100 * r['worst_minute']:.2f}% | "
                     f"{r['minutes_under_99_5']} of {r['minutes']} | {r['p50_ms']} | {r['p99_ms']} | {r['departures']:,} | "
                     f"{r['table_mean']} | {r['events']:,} | {r['cpu_s']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"wall {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if a.no_save:
        return 0
    md = RESULTS / "sim_churn.md"
    if not md.exists():
        md.write_text("# Lookups under hours of churn, one setting at a time\n\n"
                      "`bench/sim_churn.py` (docs/simulator.md). Virtual-time latencies, Internet model.\n")
    with open(md, "a") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

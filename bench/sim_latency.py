"""Lookup latency at Internet scale, one technique at a time (issue 16's ablation).

    .venv/bin/python bench/sim_latency.py [--nodes 20000] [--churn-minutes 30] [--workers 2] [--variants a,b]

Each variant is the same scenario (storm join, then lookups, then churn with
lookups all along) with one DHT setting changed from the *baseline* — the
settings before this work — and finally with every kept change together.
Latencies are virtual time in the simulator's Internet model (inter-region
RTT 40-290 ms), so they do not depend on how busy the machine is. The table
goes to bench/results/sim_latency.md (appended) and the raw rows to --out.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from weftnet.sim.sweep import run_point

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

BASELINE = {"stop_at_target": False, "first_round": 0, "adaptive_rto": False, "refresh_on_join": False,
            "min_rto": 0.5, "join_fill": 0, "self_refresh": False, "say_leave": False, "refresh_interval": 3600.0}
VARIANTS = {
    "baseline (before)": {},
    "stop at target": {"stop_at_target": True},
    "first round 6": {"first_round": 6},
    "first round 10": {"first_round": 10},
    "RTT timeouts (adaptive, min 0.2 s)": {"adaptive_rto": True, "min_rto": 0.2},
    "tables filled after join": {"refresh_on_join": True},
    "proximity (PNS)": {"proximity": True},
    "kept together": None,  # filled from --kept
    # Combinations, to see whether a change that does nothing alone helps with the others:
    "stop + RTT timeouts": {"stop_at_target": True, "adaptive_rto": True, "min_rto": 0.2},
    "stop + RTT timeouts + PNS": {"stop_at_target": True, "adaptive_rto": True, "min_rto": 0.2, "proximity": True},
    "stop + RTT timeouts + PNS + filled tables": {"stop_at_target": True, "adaptive_rto": True, "min_rto": 0.2,
                                                  "proximity": True, "refresh_on_join": True},
}

#: Round two (--round 2): the base is the defaults before it as the large scenarios ran
#: them (no full refresh after join: at 100,000 nodes it multiplies the join traffic by
#: the bucket count; no join fill, own-ID refresh or Leave, which came with it), and each
#: variant changes one thing from there.
BASELINE2 = {"refresh_on_join": False, "join_fill": 0, "self_refresh": False, "say_leave": False,
             "refresh_interval": 3600.0}
VARIANTS2 = {
    "defaults, no refresh (base)": {},
    "full refresh after join": {"refresh_on_join": True},
    "join fill 4": {"join_fill": 4},
    "join fill 8": {"join_fill": 8},
    "proximity (PNS)": {"proximity": True},
    "join fill 8 + PNS": {"join_fill": 8, "proximity": True},
    "full refresh + PNS": {"refresh_on_join": True, "proximity": True},
}

#: Round three (--round 3): the base is today's defaults as latency-100k runs them
#: (join fill 8, no own-ID refresh, hourly bucket refresh); each variant changes one thing.
BASELINE3 = {"self_refresh": False, "refresh_interval": 3600.0,
             # the fill as round three ran it (the defaults since join round five: by RTT, 6, top-up)
             "join_fill": 8, "fill_by_rtt": False, "fill_topup": False}
VARIANTS3 = {
    "defaults (base)": {},
    "alpha 5": {"alpha": 5},
    "hedge 1.5 RTT": {"lookup_hedge": 1.5},
    "PRS 2 bits": {"prs_bits": 2},
    "PRS 4 bits": {"prs_bits": 4},
    "PRS 4 bits + RTT hints": {"prs_bits": 4, "rtt_hints": True},
    "PRS 2 bits + RTT hints": {"prs_bits": 2, "rtt_hints": True},
    "PRS 4 bits + RTT hints + hedge 1.5": {"prs_bits": 4, "rtt_hints": True, "lookup_hedge": 1.5},
    "PRS 4 bits + RTT hints + PNS": {"prs_bits": 4, "rtt_hints": True, "proximity": True},
    # Round four: what churn costs (idle buckets refreshed after 15 min, the default; own-ID refresh).
    "bucket refresh 15 min": {"refresh_interval": 900.0},
    "own-ID refresh": {"self_refresh": True},
    # Issue 16, join CPU round: fewer fill requests per bucket (the fill now asks only nodes the
    # table does not hold, starting from those the join lookup heard of in the bucket).
    # (The fill variants name every fill setting: the defaults moved to the fill by RTT, 6, top-up.)
    "join fill 6": {"join_fill": 6, "fill_by_rtt": False, "fill_topup": False},
    "join fill 4": {"join_fill": 4, "fill_by_rtt": False, "fill_topup": False},
    "join fill 8 nearest first": {"join_fill": 8, "fill_by_rtt": False, "fill_topup": False},
    # Join round four: the fill asks the fastest nodes of a bucket first (RTT hints from FindNear).
    "fill by RTT": {"fill_by_rtt": True, "join_fill": 8, "fill_topup": False},
    "fill by RTT, join fill 6": {"fill_by_rtt": True, "join_fill": 6, "fill_topup": False},
    "fill by RTT, join fill 4": {"fill_by_rtt": True, "join_fill": 4, "fill_topup": False},
    # Join round five: the fill tops a bucket up to join_fill instead of adding join_fill.
    "fill by RTT, join fill 6, top-up": {"fill_by_rtt": True, "join_fill": 6, "fill_topup": True},
}


def scenario(n: int, churn_minutes: float, dht: dict) -> dict:
    return {
        "scenario": {"name": "latency", "nodes": n},
        "join": {"mode": "storm", "duration": max(60.0, 3600.0 * n / 100_000)},
        "lookups": {"count": max(1000, n // 10), "duration": 600},
        "churn": {"duration": churn_minutes * 60, "median_session": 1800, "crash_fraction": 0.5,
                  "lookups_per_minute": 600},
        "dht": dht,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--churn-minutes", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variants", help="comma-separated names (default: all)")
    ap.add_argument("--kept", default="stop_at_target,adaptive_rto,refresh_on_join",
                    help="settings of 'kept together', as names from the variants")
    ap.add_argument("--round", type=int, default=1, help="2 or 3: that round's base and variants")
    ap.add_argument("--no-save", action="store_true", help="print only (do not append to bench/results)")
    ap.add_argument("--out", default="out/sim-latency")
    a = ap.parse_args()
    kept = {}
    for name in a.kept.split(","):
        for v in VARIANTS.values():
            if v and name in v:
                kept.update(v)
    variants = dict(VARIANTS, **{"kept together": kept})
    base = BASELINE
    if a.round == 2:
        variants, base = dict(VARIANTS2), BASELINE2
    if a.round == 3:
        variants, base = dict(VARIANTS3), BASELINE3
    if a.variants:
        variants = {k: v for k, v in variants.items() if any(w.strip() in k for w in a.variants.split(","))}
    tasks = [(name, scenario(a.nodes, a.churn_minutes, {**base, **v}))
             for name, v in variants.items()]
    point = {"nodes": a.nodes, "seed": a.seed, "settings": {}}
    t0 = time.perf_counter()
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(a.workers) as pool:
        outs = pool.starmap(run_point, [(sc, point) for _, sc in tasks])
    rows = [dict(row, variant=name, dht=sc["dht"], **timing) for (name, sc), (row, timing) in zip(tasks, outs)]
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"\n### {a.nodes:,} nodes, seed {a.seed}, {time.strftime('%Y-%m-%d')} "
             f"(churn: {a.churn_minutes:g} min, median session 30 min, half crashes, 600 lookups/min)\n",
             "| variant | lookups found | p50 ms | p99 ms | hops | requests | churn: found | worst minute | "
             "p50 ms | p99 ms | table |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {100 * r['lookup_success']:.2f}% | {r['latency_p50_ms']} | {r['latency_p99_ms']} | "
            f"{r['hops_mean']} | {r['requests_per_lookup']} | "
            f"{100 * (r['churn_success'] or 0):.2f}% | {100 * (r['churn_worst_minute'] or 0):.2f}% | "
            f"{r['churn_latency_p50_ms']} | {r['churn_latency_p99_ms']} | {r['table_mean']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"wall {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if a.no_save:
        return 0
    md = RESULTS / "sim_latency.md"
    if not md.exists():
        md.write_text("# Lookup latency in the simulator, one technique at a time\n\n"
                      "`bench/sim_latency.py`: see docs/simulator.md. Virtual-time latencies (Internet model).\n")
    with open(md, "a") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

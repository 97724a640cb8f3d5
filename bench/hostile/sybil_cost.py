"""What placing one identity among the k nodes closest to a key costs at 10^6 nodes (issue 9, item 13).

    .venv/bin/python bench/hostile/sybil_cost.py [--nodes 1000000] [--keys 12] [--seconds 5]

1. Measures this machine's key-generation rate: Ed25519 key pair + node ID +
   puzzle hash, the loop `weft init` runs (core/puzzle.py), on one core.
2. Models the honest network: ``--nodes`` random node IDs (SHA-256 outputs are
   uniform). For random keys it finds the distance of the k-th closest honest
   node, so an attacker's ID lands among the k closest with probability
   ``p = d_k / 2^256`` per passing identity; it then *draws* attacker IDs until
   one lands (a geometric trial per key), to check the model.
3. An attacker needs ``1/p`` passing identities per placement, each costing
   ``2^difficulty`` key generations: the table gives the time at this
   machine's rate on one core, and at 100x and 10,000x that rate (many cores;
   optimised code with incremental point addition on GPUs, which this script
   does not measure: an assumption, stated as such).

This is the simulator's model of the puzzle's cost: simulated nodes do not
pay it (docs/simulator.md), the attacker's arithmetic is done here instead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from weftnet.core.identity import Identity
from weftnet.core.puzzle import _bits

K = 20


def keygen_rate(seconds: float) -> float:
    rng = random.SystemRandom()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ident = Identity.generate(rng)
        _bits(ident.node_id.raw)
        n += 1
    return n / (time.perf_counter() - t0)


def kth_distance(ids: list[int], key: int, k: int) -> int:
    """The XOR distance of the k-th closest ID to ``key`` (one pass, no sort of everything)."""
    import heapq

    return heapq.nsmallest(k, (i ^ key for i in ids))[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    rate = keygen_rate(a.seconds)
    rng = random.Random(a.seed)
    ids = [rng.getrandbits(256) for _ in range(a.nodes)]
    fractions, draws = [], []
    for _ in range(a.keys):
        key = rng.getrandbits(256)
        dk = kth_distance(ids, key, K)
        fractions.append(dk / 2**256)
        n = 1
        while rng.getrandbits(256) ^ key >= dk:  # an attacker's passing IDs, until one lands
            n += 1
        draws.append(n)
    p = sum(fractions) / len(fractions)
    per_placement = 1 / p
    rows = []
    for d in (0, 8, 12, 14, 16, 20):
        keygens = per_placement * 2**d
        rows.append({"difficulty": d, "keygens": keygens, "seconds_one_core": keygens / rate,
                     "seconds_100x": keygens / rate / 100, "seconds_10000x": keygens / rate / 10_000,
                     "honest_init_seconds": 2**d / rate})
    out = {"nodes": a.nodes, "k": K, "keys": a.keys, "keygen_rate_per_core": rate,
           "ids_per_placement_model": per_placement, "ids_per_placement_drawn_mean": sum(draws) / len(draws),
           "rows": rows, "cpu": os.cpu_count()}
    print(f"key generation (Ed25519 + node ID + puzzle hash), one core: {rate:,.0f} per second")
    print(f"{a.nodes:,} nodes, k = {K}: one passing ID lands among the k closest to a key with p = {p:.3g} "
          f"(model: {per_placement:,.0f} IDs per placement; drawn: {out['ids_per_placement_drawn_mean']:,.0f} "
          f"on average over {a.keys} keys)")
    print("| difficulty | key generations per placement | one core | 100x | 10,000x (assumed) | honest `weft init` |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['difficulty']} | {r['keygens']:.3g} | {_dur(r['seconds_one_core'])} | {_dur(r['seconds_100x'])} | "
              f"{_dur(r['seconds_10000x'])} | {_dur(r['honest_init_seconds'])} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


def _dur(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


if __name__ == "__main__":
    main()

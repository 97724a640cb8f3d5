"""Digests of simulator results, to show that a speed-up changed nothing a run reports.

    .venv/bin/python bench/sim_digest.py                       # this checkout
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/sim_digest.py   # e.g. a `git archive` of main

For each case it runs the scenario through ``runner.run_scenario`` and prints the
first 16 hex digits of the SHA-256 of its summary (the deterministic part: every
count, distribution and latency, not the wall time). Cases: the bundled `small`
and `churn` scenarios as they are, and `scale-1m` cut to 8,000 and 20,000 nodes at
its own arrival rate (N x 3600 / 999,999 s of joins) with N / 10 lookups over its
600 s: the code path of the million-node run at a size that takes a minute.
Two checkouts whose lines are equal gave byte-identical results.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time

import weftnet
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.runner import run_scenario
from weftnet.sim.scenario import load_scenario


def cases(names: list[str]):
    for name in names:
        if name.startswith("scale-1m@"):
            n = int(name.split("@", 1)[1])
            sc = load_scenario(resolve_scenario("scale-1m"))
            yield name, dataclasses.replace(sc, sizes=[n], join_duration=n * 3600 / 999_999, lookups=n // 10)
        else:
            yield name, load_scenario(resolve_scenario(name))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", default=["small", "churn", "scale-1m@8000", "scale-1m@20000"])
    a = ap.parse_args()
    print(f"# weftnet from {weftnet.__file__}")
    for name, sc in cases(a.cases):
        c0 = time.process_time()
        summary, _info, _raw = run_scenario(sc)
        digest = hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]
        print(f"{name:16} {digest}  ({time.process_time() - c0:.1f} s CPU)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

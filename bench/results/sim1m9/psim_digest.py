"""Digests of the partitioned engine's results (as bench/sim_digest.py's, with --procs).

    PYTHONPATH=src .venv/bin/python bench/results/sim1m9/psim_digest.py small:2 scale-1m@8000:2
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time

import weftnet
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.runner import run_scenario
from weftnet.sim.scenario import load_scenario

print(f"# weftnet from {weftnet.__file__}")
for arg in sys.argv[1:]:
    name, procs = arg.rsplit(":", 1)
    if name.startswith("scale-1m@"):
        n = int(name.split("@", 1)[1])
        sc = load_scenario(resolve_scenario("scale-1m"))
        sc = dataclasses.replace(sc, sizes=[n], join_duration=n * 3600 / 999_999, lookups=n // 10)
    else:
        sc = load_scenario(resolve_scenario(name))
    c0 = time.time()
    summary, _info, _raw = run_scenario(sc, procs=int(procs))
    digest = hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]
    print(f"{arg:20} {digest}  ({time.time() - c0:.1f} s wall)", flush=True)

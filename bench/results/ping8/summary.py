#!/usr/bin/env python3
"""Summarise the alternated runs in this directory: for corecost-*.txt, each build's runs (the
median µs of a ping's four passes per run of 1,000 pings), their lowest, lower quartile and
median, and how often each build was lower in a round (the lowest of its three runs against the
other's); for parsecost.txt, the lowest ns per call over the rounds.

    python summary.py [FILES...]
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent


def corecost(path: Path) -> None:
    runs: dict[str, list[float]] = {}
    rounds: dict[int, dict[str, float]] = {}
    loads = []
    rnd = build = None
    for line in path.read_text().splitlines():
        m = re.match(r"== round (\d+) build (\S+) \S+ load(?:avg)? ([\d.]+)", line)
        if m:
            rnd, build = int(m[1]), m[2]
            loads.append(float(m[3]))
            continue
        m = re.search(r"=\s+([\d.]+)\s+\(whole", line)
        if m and build:
            v = float(m[1])
            runs.setdefault(build, []).append(v)
            r = rounds.setdefault(rnd, {})
            r[build] = min(v, r.get(build, v))
    print(f"{path.name}: load {min(loads):.2f}-{max(loads):.2f}")
    for b, v in runs.items():
        v = sorted(v)
        print(f"  {b:5s} runs {len(v):3d}  lowest {v[0]:7.2f}  p25 {v[len(v) // 4]:7.2f}  median {statistics.median(v):7.2f}")
    names = list(runs)
    if len(names) == 2:
        a, b = names
        wins = sum(1 for r in rounds.values() if a in r and b in r and r[b] < r[a])
        both = sum(1 for r in rounds.values() if a in r and b in r)
        ratios = sorted(r[b] / r[a] for r in rounds.values() if a in r and b in r)
        print(f"  {b} lower than {a} in {wins} of {both} rounds (each build's best run of the round); "
              f"ratio {b}/{a} per round: median {statistics.median(ratios):.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}")


def parsecost(path: Path) -> None:
    best: dict[str, dict[str, float]] = {}
    build = None
    for line in path.read_text().splitlines():
        m = re.match(r"== round \d+ build (\S+)", line)
        if m:
            build = m[1]
            continue
        if build:
            for k, v in re.findall(r"(\w+:\w+)\s+([\d.]+)", line):
                d = best.setdefault(build, {})
                d[k] = min(float(v), d.get(k, float("inf")))
    print(f"{path.name}: lowest ns per call over the rounds")
    for b, d in best.items():
        print(f"  {b:5s} " + "  ".join(f"{k} {v:7.1f}" for k, v in d.items()))


def main() -> None:
    files = [Path(f) for f in sys.argv[1:]] or sorted(HERE.glob("corecost-*.txt")) + [HERE / "parsecost.txt"]
    for f in files:
        if f.exists():
            (parsecost if f.name.startswith("parsecost") else corecost)(f)


if __name__ == "__main__":
    main()

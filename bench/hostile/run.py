"""Run the hostile-peer benches on the tree before the hardening and on this one, side by side.

    .venv/bin/python bench/hostile/run.py [--before REF] [--floods 3]

``--before`` is a git ref of this repository (default ``main`` as it was
before issue 9 merged: pass the commit) exported with ``git archive`` to a
temporary directory; both trees run with this checkout's virtualenv and the
same attacker scripts. Writes bench/results/hostile.json and
bench/results/hostile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "bench" / "results"


def export(ref: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="weft-before-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(d)], input=archive, check=True)
    return d / "src"


def run_json(cmd: list[str], src: Path, timeout: float = 1800) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tempfile.gettempdir())
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="main")
    ap.add_argument("--floods", type=int, default=3)
    a = ap.parse_args()
    trees = {"before": export(a.before), "after": ROOT / "src"}
    py = sys.executable
    out: dict = {"before_ref": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", a.before],
                                              capture_output=True, text=True).stdout.strip(),
                 "after_ref": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip(),
                 "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
                            f"Python {platform.python_version()}",
                 "load_average_at_start": os.getloadavg()[0]}
    for name in ("harness", "store"):
        for tree, src in trees.items():
            print(f"{name} ({tree}) ...", file=sys.stderr)
            out.setdefault(name, {})[tree] = run_json([py, str(HERE / f"{name}.py")], src)
    out["flood"] = {"before": [], "after": []}
    for i in range(a.floods):
        for tree, src in trees.items():
            print(f"flood {i + 1} ({tree}) ...", file=sys.stderr)
            r = run_json([py, str(HERE / "flood.py"), "--tree", tree, "--src", str(src)], src)
            r.pop("ping_flood_all_ms", None)
            out["flood"][tree].append(r)
            time.sleep(2)
    print("sybil cost ...", file=sys.stderr)
    sy = Path(tempfile.mkdtemp()) / "sybil.json"
    subprocess.run([py, str(HERE / "sybil_cost.py"), "--keys", "60", "--json", str(sy)], check=True,
                   capture_output=True)
    out["sybil"] = json.loads(sy.read_text())
    out["load_average_at_end"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS / 'hostile.json'}", file=sys.stderr)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


if __name__ == "__main__":
    main()

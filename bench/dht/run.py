"""DHT benchmark: weftnet against bmuller's `kademlia` (PyPI 2.2.3), side by side.

    .venv/bin/python bench/dht/run.py [--sizes 100,500] [--records 200] [--seed 1]

Each (implementation, size) pair runs the same workload (bench/dht/common.py)
in a fresh Python process on 127.0.0.1, one after the other, and the script
prints one table and writes bench/results/dht.md and dht.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
SIDES = {"kademlia 2.2.3": "kademlia_side.py", "weftnet": "weftnet_side.py"}
COLUMNS = [
    ("impl", "implementation"), ("nodes", "nodes"), ("get_ok", "gets ok"), ("put_ok", "puts ok"),
    ("get_p50_ms", "get p50 ms"), ("get_p95_ms", "get p95 ms"), ("put_p50_ms", "put p50 ms"),
    ("put_p95_ms", "put p95 ms"), ("datagrams_per_get", "datagrams/get"), ("rss_kib_per_node", "KiB/node"),
    ("join_seconds", "join s"),
]

NOTES = """\
Reading the table: every weftnet message rides an authenticated, encrypted
session (Noise IK, docs/handshake.md); kademlia sends plain msgpack over UDP.
The first message to a node therefore costs weftnet a handshake, about ten
X25519 operations across both ends, and in this one-process benchmark both
ends' CPU lands on the caller's clock. That is why puts (a FIND_NODE lookup,
then STORE to the 20 closest, most of them never met before) and joins (the
own-ID lookup, then a few requests into each farther bucket: `join_fill`,
docs/dht.md; before issue 16's second round, a full lookup per bucket) are
slower, and why memory per node is higher (a session per contact). Gets keep at most one handshake outstanding and hedge
the next (docs/dht.md, "Cost-aware gets").
"""


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,500")
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/results")
    a = ap.parse_args()
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        for name, script in SIDES.items():
            t = time.time()
            proc = subprocess.run(
                [sys.executable, str(HERE / script), "--nodes", str(n), "--records", str(a.records), "--seed", str(a.seed)],
                capture_output=True, text=True, timeout=a.timeout, cwd=HERE,
            )
            if proc.returncode != 0:
                print(f"{name} at {n} nodes failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                rows.append({"impl": name, "nodes": n, "error": proc.stderr.strip().splitlines()[-1:] })
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["wall_seconds"] = round(time.time() - t, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    lines = [header, sep]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['nodes']} | failed: {r['error']} |")
        else:
            lines.append("| " + " | ".join(str(r.get(k)) for k, _ in COLUMNS) + " |")
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "dht.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
        (RESULTS / "dht.md").write_text(
            "# DHT benchmark: weftnet vs bmuller's kademlia 2.2.3\n\n"
            f"Run: `.venv/bin/python bench/dht/run.py --sizes {a.sizes} --records {a.records} --seed {a.seed}`"
            f" on {time.strftime('%Y-%m-%d')}.\n\nMachine: {machine()}.\n\n"
            "Workload (bench/dht/common.py): N nodes on 127.0.0.1 in one process each, joined one by one "
            "from a random joined node; R records put from random nodes; each read back from a different "
            "random node. Latencies are wall-clock per operation; datagrams/get counts every datagram any "
            "node received during the get phase, divided by R; KiB/node is RSS growth divided by N.\n\n"
            + table + "\n\n" + NOTES
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

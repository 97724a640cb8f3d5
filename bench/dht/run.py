"""DHT benchmark: weftnet against bmuller's `kademlia` (PyPI 2.2.3), side by side.

    .venv/bin/python bench/dht/run.py [--sizes 100,500] [--records 200] [--seed 1]

Each (implementation, size) pair runs the same workload (bench/dht/common.py)
in a fresh Python process on 127.0.0.1, one after the other, and the script
prints one table, writes bench/results/dht.json and appends a dated section
to bench/results/dht.md (earlier runs stay there). Next to wall-clock times
it reports each side's CPU seconds per phase and the load average while that
side ran: on a shared machine wall time says more about the other jobs.

Each weftnet node gets its own copy of the library's process-wide caches (decoded contacts, the ID
puzzle's bits, address blocks: bench/dht/pernode.py), as a node alone in its process has: the default
since 2026-11-30 17:40 (``--per-node-caches`` is still accepted). ``--shared-caches``: the runs of record
before it, where the 1,000 nodes of one process share those caches and most of a join's first contacts
hit an entry another node made: CPU (and memory) a real node pays and the bench did not charge to
weftnet (kademlia's nodes share nothing of the kind). bench/results/djoin9.

``--gc daemon``: both sides' processes (kademlia's too) take the collector setting a weftnet daemon
runs with (``quiet_collector``: gc.freeze and thresholds 50,000 / 20 / 20); the default, ``default``,
is Python's, as in every run of record. Each side reports its collections' CPU seconds per phase
(``join_gc_cpu_seconds`` ...; bench/dht/common.py, bench/results/djoin11).

``--warm-up``: before its memory baseline each side runs two throwaway nodes (one joins the other, puts
a record, reads it back, both stop), so KiB/node counts what each node adds and not what the process
sets up once at its first node (for weftnet ~1.6-2 MB, mostly the crypto library's lazy set-up,
bench/results/dmem17 §4: 16-20 KiB a node at 100 nodes). Off in the runs of record, whose column counts it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
sys.path.append(str(HERE.parent))  # bench/, for hostinfo
from hostinfo import cpu_model  # noqa: E402
SIDES = {"kademlia 2.2.3": "kademlia_side.py", "weftnet": "weftnet_side.py"}
COLUMNS = [
    ("impl", "implementation"), ("nodes", "nodes"), ("get_ok", "gets ok"), ("put_ok", "puts ok"),
    ("get_p50_ms", "get p50 ms"), ("get_p95_ms", "get p95 ms"), ("put_p50_ms", "put p50 ms"),
    ("put_p95_ms", "put p95 ms"), ("datagrams_per_get", "datagrams/get"), ("rss_kib_per_node", "KiB/node"),
    ("datagrams_per_join", "datagrams/join"),
    ("join_seconds", "join s"), ("join_cpu_seconds", "join CPU s"), ("put_cpu_seconds", "put CPU s"),
    ("get_cpu_seconds", "get CPU s"), ("join_gc_cpu_seconds", "join GC CPU s"), ("load", "load avg"),
]


def machine() -> str:
    model = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}"


def _child_env() -> dict[str, str]:
    """The caller's environment, with PYTHONPATH's relative entries made absolute: each side runs
    in bench/dht, where ``PYTHONPATH=src`` would name nothing and silently measure the installed tree."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p
                                            for p in env["PYTHONPATH"].split(os.pathsep))
    return env


def run_side(cmd: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, list[float]]:
    """Run one side; sample the 1-minute load average every 5 s while it runs."""
    loads: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while True:
            loads.append(os.getloadavg()[0])
            if stop.wait(5.0):
                return

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE, env=_child_env())
    finally:
        stop.set()
        t.join()
    return proc, loads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,500")
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/results")
    ap.add_argument("--gc", choices=("default", "daemon"), default="default",
                    help="the garbage collector's setting for both sides (bench/dht/common.py)")
    ap.add_argument("--title", default="rerun", help="heading of the section appended to dht.md")
    caches = ap.add_mutually_exclusive_group()
    caches.add_argument("--per-node-caches", action="store_true",
                        help="each weftnet node its own caches, as alone in its process (the default; "
                             "bench/dht/pernode.py)")
    caches.add_argument("--shared-caches", action="store_true",
                        help="the weftnet nodes of the process share the library's caches (the runs of "
                             "record before 2026-11-30 17:40; flatters weftnet's join CPU and memory)")
    ap.add_argument("--warm-up", action="store_true",
                    help="each side runs two throwaway nodes before its memory baseline (see above)")
    a = ap.parse_args()
    a.per_node_caches = not a.shared_caches
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        for name, script in SIDES.items():
            t = time.time()
            extra = ["--per-node-caches"] if a.per_node_caches and name == "weftnet" else []
            extra += ["--warm-up"] if a.warm_up else []
            proc, loads = run_side(
                [sys.executable, str(HERE / script), "--nodes", str(n), "--records", str(a.records), "--seed", str(a.seed),
                 "--gc", a.gc, *extra],
                a.timeout,
            )
            if proc.returncode != 0:
                print(f"{name} at {n} nodes failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                rows.append({"impl": name, "nodes": n, "error": proc.stderr.strip().splitlines()[-1:] })
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["wall_seconds"] = round(time.time() - t, 1)
            row["load"] = f"{min(loads):.1f}-{max(loads):.1f}"
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
        md = RESULTS / "dht.md"
        head = md.read_text() if md.exists() else "# DHT benchmark: weftnet vs bmuller's kademlia 2.2.3\n"
        md.write_text(
            head.rstrip("\n") + "\n\n"
            f"## {time.strftime('%Y-%m-%d')}: {a.title}\n\n"
            f"Run: `.venv/bin/python bench/dht/run.py --sizes {a.sizes} --records {a.records} --seed {a.seed}"
            f"{'' if a.per_node_caches else ' --shared-caches'}{'' if a.gc == 'default' else ' --gc ' + a.gc}"
            f"{' --warm-up' if a.warm_up else ''}` (weftnet's nodes "
            f"{'each with its own caches' if a.per_node_caches else 'sharing the process caches'}"
            f"{'; memory from after two throwaway nodes on each side' if a.warm_up else ''}).\n"
            f"Machine: {machine()}. Load avg: the 1-minute load average sampled every 5 s while that side ran "
            "(lowest-highest); CPU s: the CPU seconds of that side's process in each phase.\n\n"
            + table + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bench/dht's workload on one side under tracemalloc: the traced bytes per node by line between the two
points where the bench reads its RSS (before the nodes, after the puts), as bench/dht counts memory.

    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem12/trace_side.py kademlia --nodes 1000
    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem12/trace_side.py weftnet --nodes 1000 [--per-node-caches]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc

sys.path.insert(0, ".")

STATE: dict = {}


def traced_rss() -> int:
    gc.collect()
    if "base" not in STATE:
        tracemalloc.start(1)
        STATE["base"] = tracemalloc.take_snapshot()
    elif "snap" not in STATE:
        STATE["snap"] = tracemalloc.take_snapshot()
    return 0


def report(nodes: int, top: int) -> None:
    flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
    snap, base = STATE["snap"].filter_traces(flt), STATE["base"].filter_traces(flt)
    for key in ("filename", "lineno"):
        stats = snap.compare_to(base, key)
        total = sum(s.size_diff for s in stats)
        print(f"\n== by {key}: {total / nodes / 1024:.2f} KiB per node traced ({nodes} nodes)")
        for s in stats[:top]:
            fr = s.traceback[0]
            where = fr.filename.split("site-packages/")[-1].split("/src/")[-1]
            where = where if key == "filename" else f"{where}:{fr.lineno}"
            print(f"{s.size_diff / nodes:9.1f} B {s.count_diff / nodes:7.2f} blocks  {where}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=("weftnet", "kademlia"))
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--per-node-caches", action="store_true")
    ap.add_argument("--top", type=int, default=50)
    a = ap.parse_args()
    if a.side == "kademlia":
        import kademlia_side as side
    else:
        import weftnet_side as side

        if a.per_node_caches:
            import pernode

            pernode.install()
    side.rss_bytes = traced_rss
    asyncio.run(side.main(a.nodes, a.records, 1))
    report(a.nodes, a.top)

"""A node's fixed cost, no peers: N nodes started (a bound UDP socket each, as bench/dht starts them), no
join; RSS growth per node (bench/dht's measure) and, with --trace, tracemalloc's bytes per node by line.

    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem12/empty_nodes.py weftnet [--nodes 1000] [--per-node-caches] [--trace]
    cd bench/dht && python ../results/dmem12/empty_nodes.py kademlia [--nodes 1000] [--trace]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tracemalloc

sys.path.insert(0, ".")
from common import rss_bytes  # noqa: E402


async def weftnet(n: int, per_node: bool) -> list:
    import weftnet_side

    from weftnet.core.identity import Identity
    from weftnet.runtime.driver import start_node

    if per_node:
        import pernode

        pernode.install()
    rng = random.Random(1)
    system_rng = random.SystemRandom()
    config = weftnet_side._config(True)
    ids = [Identity.generate(rng) for _ in range(n + 1)]
    warm = await start_node(ids[-1], rng=system_rng, config=config)  # first-use imports
    begin()
    out = [await start_node(ids[i], rng=system_rng, config=config) for i in range(n)]
    await asyncio.sleep(0)
    return out + [warm]


async def kademlia(n: int) -> list:
    from kademlia.network import Server

    random.seed(1)
    warm = Server()
    await warm.listen(0, interface="127.0.0.1")
    begin()
    out = []
    for _ in range(n):
        s = Server()
        await s.listen(0, interface="127.0.0.1")
        out.append(s)
    await asyncio.sleep(0)
    return out + [warm]


STATE: dict = {}


def begin() -> None:
    gc.collect()
    STATE["rss0"] = rss_bytes()
    if STATE["trace"]:
        tracemalloc.start(1)
        STATE["snap0"] = tracemalloc.take_snapshot()


async def main(a) -> None:
    STATE["trace"] = a.trace
    nodes = await (weftnet(a.nodes, a.per_node_caches) if a.side == "weftnet" else kademlia(a.nodes))
    gc.collect()
    rss1 = rss_bytes()
    print(f"{a.side}: {(rss1 - STATE['rss0']) / a.nodes / 1024:.2f} KiB RSS growth per node, {a.nodes} nodes, no peers")
    if a.trace:
        snap = tracemalloc.take_snapshot()
        flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = snap.filter_traces(flt).compare_to(STATE["snap0"].filter_traces(flt), "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"traced {total / a.nodes / 1024:.2f} KiB per node")
        for s in stats[: a.top]:
            fr = s.traceback[0]
            where = fr.filename.split("site-packages/")[-1].split("/src/")[-1]
            print(f"{s.size_diff / a.nodes:9.1f} B {s.count_diff / a.nodes:6.2f} blocks  {where}:{fr.lineno}")
    del nodes


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=("weftnet", "kademlia"))
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--per-node-caches", action="store_true")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    asyncio.run(main(ap.parse_args()))

"""What bench/dht's put phase adds to a node (tracemalloc, by line): a snapshot after the joins and one
after the 200 puts, compared. Run from bench/dht:
    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem17/put_breakdown.py --nodes 100 [--top 40]"""
from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tracemalloc

sys.path.insert(0, ".")
from common import workload_plan  # noqa: E402

import weftnet_side  # noqa: E402
from weftnet.core.identity import Identity  # noqa: E402
from weftnet.runtime.driver import start_node  # noqa: E402


async def main(nodes: int, records: int, top: int) -> None:
    joins, puts, _ = workload_plan(1, nodes, records)
    rng = random.Random(1)
    system_rng = random.SystemRandom()
    config = weftnet_side._config(True)
    tracemalloc.start(1)
    drivers = []
    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=system_rng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok
        drivers.append(d)
    gc.collect()
    s0 = tracemalloc.take_snapshot()
    for _k, value, who in puts:
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        assert ev.ok
    gc.collect()
    s1 = tracemalloc.take_snapshot()
    held = sum(len(d.core.dht.index) for d in drivers)
    flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
    st = s1.filter_traces(flt).compare_to(s0.filter_traces(flt), "lineno")
    tot = sum(s.size_diff for s in st)
    print(f"puts: {tot / nodes / 1024:.2f} KiB traced a node; {held / nodes:.1f} records a node, "
          f"{tot / max(held, 1):.0f} B traced per record held")
    for s in st[:top]:
        fr = s.traceback[0]
        where = fr.filename.split("site-packages/")[-1].split("/src/")[-1]
        print(f"{s.size_diff / nodes:9.1f} B {s.count_diff / nodes:7.2f} blocks  {s.size_diff / max(held, 1):7.1f} B/rec  {where}:{fr.lineno}")
    for d in drivers:
        d.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    import pernode
    pernode.install()
    asyncio.run(main(a.nodes, a.records, a.top))

"""RSS (and optionally tracemalloc's traced total) at checkpoints of bench/dht's weftnet workload:
after node 1, 2, 5, 10, 25, 50, ... and after the puts. Run from bench/dht:
    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem17/rss_probe.py --nodes 100 [--trace]
``--warm``: the crypto library's first use (OpenSSL's set-up, cffi's binding) before the baseline.
Shows how much of the RSS growth the first nodes take (a fixed cost, divided by N in the bench's column)."""
from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tracemalloc

sys.path.insert(0, ".")
from common import rss_bytes, workload_plan  # noqa: E402

import weftnet_side  # noqa: E402
from weftnet.core.identity import Identity  # noqa: E402
from weftnet.runtime.driver import start_node  # noqa: E402


async def main(nodes: int, records: int, seed: int, trace: bool, warm: bool) -> None:
    joins, puts, _ = workload_plan(seed, nodes, records)
    if warm:  # the process's first use of the crypto library, before the baseline
        from mem_breakdown import warm_crypto

        warm_crypto()
    rng = random.Random(seed)
    rss0 = rss_bytes()
    t0 = tracemalloc.get_traced_memory()[0] if trace else 0
    system_rng = random.SystemRandom()
    config = weftnet_side._config(True)
    marks = {1, 2, 3, 5, 10, 25, 50, 100, 250, 500, 1000, nodes}
    drivers = []
    last = (rss0, t0)

    def mark(what):
        nonlocal last
        r = rss_bytes()
        t = tracemalloc.get_traced_memory()[0] if trace else 0
        print(f"{what:>14s}  rss +{(r - rss0) / 1024:9.1f} KiB (step +{(r - last[0]) / 1024:8.1f})"
              + (f"  traced +{(t - t0) / 1024:9.1f} KiB (step +{(t - last[1]) / 1024:8.1f})" if trace else ""))
        last = (r, t)

    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=system_rng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok
        drivers.append(d)
        if i + 1 in marks:
            mark(f"node {i + 1}")
    for n, (_k, value, who) in enumerate(puts):
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        assert ev.ok
        if n + 1 in (1, 10, 50, 100, 200):
            mark(f"put {n + 1}")
    r = rss_bytes()
    print(f"per node: {(r - rss0) / nodes / 1024:.1f} KiB")
    for d in drivers:
        d.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--warm", action="store_true", help="the crypto library's first use before the baseline")
    a = ap.parse_args()
    import pernode
    pernode.install()
    if a.trace:
        tracemalloc.start(1)
    asyncio.run(main(a.nodes, a.records, 1, a.trace, a.warm))

"""bench/dht's weftnet workload with callgrind's instrumentation on for the get phase only: the
instructions the 200 gets cost, which the other jobs on a shared machine do not move.

    cd bench/dht && PYTHONHASHSEED=0 PYTHONPATH=../../src valgrind --tool=callgrind --instr-atstart=no \\
        --callgrind-out-file=/tmp/cg.%p python ../results/dget1/cg_gets.py --nodes 100

(per-node caches, Python's collector, as bench/dht/run.py; ``callgrind_control -i on|off`` around the gets.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import random
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "dht"))
from common import workload_plan  # noqa: E402


async def main(nodes: int, records: int, seed: int) -> None:
    import weftnet_side
    from weftnet.core.identity import Identity
    from weftnet.runtime.driver import start_node

    joins, puts, gets = workload_plan(seed, nodes, records)
    rng = random.Random(seed)
    system_rng = random.SystemRandom()
    config = weftnet_side._config(True)
    drivers = []
    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=system_rng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok
        drivers.append(d)
    keys = []
    for key, value, who in puts:
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        keys.append(ev.key)
    base = sum(d.received for d in drivers)
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    ok = 0
    for (key, value, _), rkey, who in zip(puts, keys, gets):
        ev = await drivers[who].request(lambda core, tt, k=rkey: core.get(k, tt))
        ok += ev.ok and ev.value == value
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    print(f"{nodes} nodes: {ok}/{records} read, {(sum(d.received for d in drivers) - base) / records:.2f} datagrams a get")
    for d in drivers:
        d.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import pernode

    pernode.install()
    asyncio.run(main(a.nodes, a.records, a.seed))

"""After bench/dht's joins and puts (weftnet_side's workload, per-node caches), for each per-node object of the
DHT (engine, sessionless, routing table, store index, quota tables, peer estimates), the container attributes
(dict, list, set, bytearray, array, OrderedDict) and how many nodes left them empty, with their bytes per node
(sys.getsizeof). What an ordinary node never writes is a candidate for lazy creation.

    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem14/empty_tables.py --nodes 300
"""
import argparse
import asyncio
import collections
import random
import sys
from array import array
from collections import OrderedDict

sys.path.insert(0, ".")
import pernode  # noqa: E402
import weftnet_side  # noqa: E402
from common import workload_plan  # noqa: E402


async def main(nodes: int, records: int) -> None:
    from weftnet.core.identity import Identity
    from weftnet.runtime.driver import start_node

    joins, puts, _ = workload_plan(1, nodes, records)
    rng = random.Random(1)
    config = weftnet_side._config(True)
    srng = random.SystemRandom()
    drivers = []
    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=srng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok
        drivers.append(d)
    for _k, value, who in puts:
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        assert ev.ok
    owners = {
        "dht": lambda c: c.dht, "sessionless": lambda c: c.sessionless, "table": lambda c: c.dht.table,
        "index": lambda c: c.dht.index, "rtt": lambda c: c.dht._rtt, "peer_limit": lambda c: c.dht._peer_limit,
        "prefix_limit": lambda c: c.dht._prefix_limit, "hint_target": lambda c: c.dht._hint_target,
        "store": lambda c: c.dht.store,
    }
    kinds = (dict, list, set, bytearray, array, OrderedDict)
    for oname, get in owners.items():
        empty, size, seen = collections.Counter(), collections.Counter(), collections.Counter()
        for d in drivers:
            o = get(d.core)
            names = set(getattr(o, "__dict__", {})) | {s for k in type(o).__mro__ for s in getattr(k, "__slots__", ())}
            for a in names:
                v = getattr(o, a, None)
                if isinstance(v, kinds):
                    seen[a] += 1
                    size[a] += sys.getsizeof(v)
                    empty[a] += not len(v)
        for a in sorted(seen):
            print(f"{oname}.{a:22s} empty in {empty[a]:4d}/{seen[a]} nodes, {size[a] / nodes:7.0f} B a node")
    for d in drivers:
        d.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=300)
    ap.add_argument("--records", type=int, default=200)
    a = ap.parse_args()
    pernode.install()
    asyncio.run(main(a.nodes, a.records))

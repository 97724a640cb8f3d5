"""X25519 computations (sessionless ``static_dh``) per phase of bench/dht's workload, per node, for a
given bound of the sessionless key table (``Sessionless(keys=...)``, main's ``cache=``: 256 on main, 64 here), and the
key table's entries per node at the end: what a smaller bound would cost in CPU against what it saves.

    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem14/count_dh.py --nodes 500 --cache 256
"""
import argparse
import asyncio
import random
import sys

sys.path.insert(0, ".")
import pernode  # noqa: E402
import weftnet_side  # noqa: E402
from common import workload_plan  # noqa: E402


async def main(nodes: int, records: int, cache: int) -> None:
    import weftnet.core.dht.sessionless as sl
    from weftnet.core.identity import Identity
    from weftnet.runtime.driver import start_node

    init = sl.Sessionless.__init__
    if "keys" in init.__code__.co_varnames[:init.__code__.co_argcount]:
        d = list(init.__defaults__)  # (this branch: ``keys`` is the key table's bound, the last argument)
        d[-1] = cache
    else:
        d = list(init.__defaults__)  # (main: ``cache`` bounded it)
        d[0] = cache
    init.__defaults__ = tuple(d)
    calls = [0]
    plain = sl.static_dh

    def counted(*a, **kw):
        calls[0] += 1
        return plain(*a, **kw)

    sl.static_dh = counted
    joins, puts, gets = workload_plan(1, nodes, records)
    rng = random.Random(1)
    config = weftnet_side._config(True)
    srng = random.SystemRandom()
    drivers = []
    for i in range(nodes):
        dr = await start_node(Identity.generate(rng), rng=srng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await dr.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok
        drivers.append(dr)
    out = {"join": calls[0] / nodes}
    c0 = calls[0]
    keys = []
    for _k, value, who in puts:
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        assert ev.ok
        keys.append(ev.key)
    out["put"] = (calls[0] - c0) / len(puts)
    c0 = calls[0]
    ok = 0
    for (_k, value, _w), key, who in zip(puts, keys, gets):
        ev = await drivers[who].request(lambda c, t, k=key: c.get(k, t))
        ok += ev.ok and ev.value == value
    out["get"] = (calls[0] - c0) / len(puts)
    sizes = [len(dr.core.sessionless._keys) for dr in drivers]
    over = sum(s > 85 for s in sizes)
    print(f"cache {cache}: X25519 a join {out['join']:.2f}, a put {out['put']:.2f}, a get {out['get']:.2f}; "
          f"key table {sum(sizes) / nodes:.1f} entries a node (max {max(sizes)}, {over} of {nodes} over 85); "
          f"read {ok}/{len(puts)}")
    for dr in drivers:
        dr.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--cache", type=int, default=256)
    a = ap.parse_args()
    pernode.install()
    asyncio.run(main(a.nodes, a.records, a.cache))

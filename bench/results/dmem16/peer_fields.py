"""Which Peer fields are non-default after bench/dht's joins and puts (50 nodes)."""
import asyncio, collections, dataclasses, random, sys
sys.path.insert(0, ".")
import weftnet_side, pernode
from common import workload_plan
from weftnet.core.identity import Identity
from weftnet.runtime.driver import start_node
from weftnet.core.session.transport import Peer

async def main(nodes=60):
    pernode.install()
    joins, puts, _ = workload_plan(1, nodes, 100)
    rng = random.Random(1); srng = random.SystemRandom(); cfg = weftnet_side._config(True)
    ds = []
    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=srng, config=cfg)
        if joins[i] is not None:
            ep = ds[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
        ds.append(d)
    for _k, v, who in puts:
        await ds[who].request(lambda c, t, v=v: c.put(v, t))
    C = collections.Counter(); n = 0
    for d in ds:
        for p in d.core.transport._peers.values():
            n += 1
            for f in dataclasses.fields(Peer):
                dv = f.default if f.default is not dataclasses.MISSING else None
                if f.default is dataclasses.MISSING: continue
                if getattr(p, f.name) != dv:
                    C[f.name] += 1
    print("peers", n)
    for f in dataclasses.fields(Peer):
        print(f"{f.name:22s} {C[f.name]}")
    for d in ds: d.close()
asyncio.run(main())

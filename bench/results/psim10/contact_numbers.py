"""A NODES answer's 20 contacts as node numbers, at 100,000 nodes (psim10): by_key[c.key].index
(A), the endpoint with an identity check against the node's contact (B), the endpoint alone (C).

    PYTHONPATH=src .venv/bin/python bench/results/psim10/contact_numbers.py
"""
import time, random
from weftnet.core.dht import DhtConfig
from weftnet.sim.engine import SIM_DHT, _HOSTS
from weftnet.sim.underlay import UnderlayConfig
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.scenario import load_scenario
from weftnet.sim.parallel import PSimulation
sc = load_scenario(resolve_scenario("scale-1m"))
sim = PSimulation(1, DhtConfig(**{**SIM_DHT, **sc.dht}), UnderlayConfig(**sc.underlay), 0, 2, {})
for _ in range(100000): sim.add_node()
r = random.Random(1)
msgs = [tuple(sim.nodes[r.randrange(100000)].contact for _ in range(20)) for _ in range(20000)]
by_key = sim.by_key; nodes = sim.nodes
hix = {h: i << 16 for i, h in enumerate(_HOSTS)}
def A():
    return [[by_key[c.key].index for c in m] for m in msgs]
def B():
    out = []
    for m in msgs:
        l = []
        for c in m:
            h, p = c.endpoint
            i = hix[h] | p
            if nodes[i].contact is not c: raise KeyError
            l.append(i)
        out.append(l)
    return out
def C():
    return [[hix[c.endpoint[0]] | c.endpoint[1] for c in m] for m in msgs]
assert A() == B() == C()
for f in (A, B, C, A, B, C):
    t = time.process_time(); f(); print(f.__name__, round((time.process_time() - t) / 20000 * 1e6, 2), "us per Nodes")

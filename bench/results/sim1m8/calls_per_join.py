"""Python calls per join by (file, function, caller) over a slice of `scale-1m`'s join (sys.setprofile).

    PYTHONPATH=src .venv/bin/python bench/results/sim1m8/calls_per_join.py 3000 500   # build, slice
"""
import collections, sys, gc
from weftnet.core.dht import DhtConfig
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.engine import SIM_DHT, Simulation
from weftnet.sim.runner import storm_join
from weftnet.sim.scenario import load_scenario
from weftnet.sim.underlay import UnderlayConfig
sc = load_scenario(resolve_scenario("scale-1m"))
n = sc.sizes[-1]
sim = Simulation(1, DhtConfig(**{**SIM_DHT, **sc.dht}), UnderlayConfig(**sc.underlay))
first = sim.add_node(); sim.join(first, None)
storm_join(sim, n, sc.join_duration)
gap = sc.join_duration / (n - 1)
gc.disable()
B=int(sys.argv[1]); S=int(sys.argv[2])
sim.run_until(B * gap)
calls = collections.Counter()
def prof(frame, event, arg):
    if event == "call":
        c = frame.f_code
        b = frame.f_back
        calls[(c.co_filename.rsplit('/',1)[-1], c.co_name, b.f_code.co_name if b else "")] += 1
    elif event == "c_call":
        pass
sys.setprofile(prof)
sim.run_until((B + S) * gap)
sys.setprofile(None)
for k, v in calls.most_common(45):
    print(f"{v / S:8.2f}  {k}")

"""CPU of the partitioned engine's exchange per process, to N joined of scale-1m's storm (psim10).

    PYTHONPATH=TREE/src .venv/bin/python bench/results/psim10/exchange_cost.py 8000 2

Wraps PSimulation._exchange (the barrier: encode, pickle, pipe, unpickle, queue), _dumps,
pickle.loads and, where they exist, _encode/_decode, with time.process_time() accumulators, and
prints one dict per process: its CPU for the run, crossing messages sent, and those sums (s).
Run against main's tree and this branch's, alternately.
"""
import sys, time, gc, pickle
from weftnet.core.dht import DhtConfig
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.engine import SIM_DHT
from weftnet.sim.runner import storm_join
from weftnet.sim.scenario import load_scenario
from weftnet.sim.underlay import UnderlayConfig
import weftnet.sim.parallel as P
nodes = int(sys.argv[1])
sc = load_scenario(resolve_scenario("scale-1m"))
n = sc.sizes[-1]; gap = sc.join_duration / max(1, n - 1)
dcfg = DhtConfig(**{**SIM_DHT, **sc.dht})
acc = {"dumps": 0.0, "exchange": 0.0, "window": 0.0, "send_recv": 0.0, "loads": 0.0}
od, oe, ow = P.PSimulation._dumps, P.PSimulation._exchange, P.PSimulation._run_window
def d(self, o):
    t = time.process_time(); r = od(self, o); acc["dumps"] += time.process_time() - t; return r
def e(self):
    t = time.process_time(); r = oe(self); acc["exchange"] += time.process_time() - t; return r
def w(self, *a):
    t = time.perf_counter(); r = ow(self, *a); acc["window"] += time.perf_counter() - t; return r
ol = pickle.loads
def L(data):
    t = time.process_time(); r = ol(data); acc["loads"] += time.process_time() - t; return r
P.pickle.loads = L
P.PSimulation._dumps, P.PSimulation._exchange, P.PSimulation._run_window = d, e, w
def wrap(name):
    f = getattr(P.PSimulation, name, None)
    if f is None: return
    acc[name] = 0.0
    def g(self, *a):
        t = time.process_time(); r = f(self, *a); acc[name] += time.process_time() - t; return r
    setattr(P.PSimulation, name, g)
wrap("_encode"); wrap("_decode")
def body(sim, _p=None):
    gc.disable()
    first = sim.add_node(); sim.join(first, None)
    storm_join(sim, n, sc.join_duration)
    c0 = time.process_time(); t0 = time.perf_counter()
    sim.run_until(nodes * gap)
    return dict(rank=sim.rank, cpu=time.process_time() - c0, wall=time.perf_counter() - t0, out=sim.messages_out,
                popped=sim.messages_popped, timers=sim.timer_events, windows=sim.windows, **{k: round(v, 2) for k, v in acc.items()})
for r in P.run_parallel(int(sys.argv[2]), lambda r,p,l: P.PSimulation(1, dcfg, UnderlayConfig(**sc.underlay), r, p, l), body):
    print(r)

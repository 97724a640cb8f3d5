import sys, json, time
sys.path.insert(0, __import__("os").path.dirname(__file__))
from weftnet.sim.scenario import load_scenario
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.underlay import UnderlayConfig
from weftnet.sim.nat import NAT_KINDS, NatMix
import os
if os.environ.get('WATCH'):
    import watch
import natrun
sc = load_scenario(resolve_scenario("nat-mix"))
nat = sc.nat
shares = {kind: float(nat.get(kind.replace("-", "_"), 0.0)) for kind in NAT_KINDS}
mix = NatMix(shares, float(nat.get("relay_share", 0.3)), int(nat.get("relays_per_node", 2)))
t = time.time()
out = natrun.run_connectivity(sc.sizes[0], int(nat.get("pairs", 300)), sc.seed, mix, float(nat.get("settle", 90.0)), UnderlayConfig(**sc.underlay))
import sys as _s
_s.stdout.flush()
print(json.dumps(out["overall"]), json.dumps(out["reply"]), time.time() - t)

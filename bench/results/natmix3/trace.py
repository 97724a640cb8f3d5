import sys
from weftnet.sim.cli import resolve_scenario
from weftnet.sim.scenario import load_scenario
from weftnet.sim import nat as natmod
from weftnet.core import node as nodemod
WATCH = set(int(x) for x in sys.argv[2].split(","))
state = {"j": -1, "core": None, "t0": 0}
oping = nodemod.NodeCore.ping
def ping(self, target, now):
    state["j"] += 1
    state["core"] = self if state["j"] in WATCH else None
    state["t0"] = now
    state["peer"] = target
    if state["core"] is not None:
        print(f"--- pair {state['j']} ping {target.text()} session={self.transport.has_session(target)} path={self.transport.current_path(target)}")
    return oping(self, target, now)
nodemod.NodeCore.ping = ping
onext = nodemod.NodeCore.next_event
def nxt(self):
    ev = onext(self)
    if ev is not None and self is state["core"]:
        print(f"  {self.now_hint if hasattr(self,'now_hint') else ''}{ev}")
    return ev
nodemod.NodeCore.next_event = nxt
for name in ("_start_ping", "_retry_ping", "_find", "_fail"):
    o = getattr(nodemod.NodeCore, name)
    def mk(o, name):
        def f(self, op, *a):
            if self is state["core"]:
                now = a[-1] if isinstance(a[-1], float) else a[1] if len(a) > 1 else None
                print(f"  {name} stage={op.stage} args={[x for x in a if isinstance(x, float)]} t={[round(x - state['t0'],3) for x in a if isinstance(x, float)]}")
            return o(self, op, *a)
        return f
    setattr(nodemod.NodeCore, name, mk(o, name))
sc = load_scenario(resolve_scenario("nat-mix"))
sc.nat["pairs"] = max(WATCH) + 1
out = natmod.run_nat_scenario(sc, int(sys.argv[1]), 40)
print(out["reply"])

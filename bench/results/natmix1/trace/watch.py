"""Watch one pair of nodes through a whole nat-mix run: every datagram between them and deep calls."""
import os, atexit
from weftnet.sim import nat as N
import deep

HOSTS_A = {"11.0.32.1"}
HOSTS_B = {"10.0.6.2", "51.0.6.1"}
BUF = []
CORES = {}
_orig_add = N.NatNetwork.add

def _short(x):
    return str(x)[:90]

def add(self, addr, node):
    r = _orig_add(self, addr, node)
    if addr[0] in HOSTS_A:
        CORES["A"] = node
    if addr[0] in HOSTS_B:
        CORES["B"] = node
    if len(CORES) == 2 and not getattr(self, "_watched", False):
        self._watched = True
        if not getattr(deep, "_installed", False):
            deep.install(); deep._installed = True
        ca, cb = CORES["A"], CORES["B"]
        deep.W.update(on=True, buf=BUF, t0=0.0, objs={id(ca.transport): ("A", cb.node_id), id(cb.transport): ("B", ca.node_id), id(ca.reach): ("A", cb.node_id), id(cb.reach): ("B", ca.node_id)})
        orig = self._transmit
        net = self
        def _transmit(src, dst, data):
            h = getattr(dst, "host", None) or (dst[0] if isinstance(dst, tuple) else None)
            if (src[0] in HOSTS_A and h in HOSTS_B) or (src[0] in HOSTS_B and h in HOSTS_A):
                BUF.append(("W", round(net.now, 4), "send", src, _short(dst), len(data), data[:2].hex()))
            return orig(src, dst, data)
        self._transmit = _transmit
        prev = self.on_deliver
        def on_deliver(src, dst, data):
            if isinstance(src, tuple) and ((src[0] in HOSTS_A and dst[0] in HOSTS_B) or (src[0] in HOSTS_B and dst[0] in HOSTS_A)):
                BUF.append(("W", round(net.now, 4), "dlvr", src, dst, len(data), data[:2].hex()))
            if prev:
                prev(src, dst, data)
        self.on_deliver = on_deliver
    return r

N.NatNetwork.add = add

def dump():
    with open(os.environ.get("OUTDIR", "/tmp/natmix1") + "/watch.txt", "w") as f:
        for e in BUF:
            f.write(repr(e)[:400] + "\n")
atexit.register(dump)

def t0r(x, n):
    return round(x - n, 3)
import json, time
from weftnet.sim.nat import NatBox

class Tracer:
    def __init__(self, out=None, dump=None, thresh=1.0):
        import os
        d = os.environ.get("OUTDIR", "/tmp/natmix1")
        os.makedirs(d, exist_ok=True)
        out = out or d + "/pairs.jsonl"
        dump = dump or d + "/slow"
        self.out = open(out, "w")
        self.dump = dump
        self.thresh = thresh
        self.buf = []
        self.hosts = set()
        self.net = None
        self.t0 = None

    def _hook(self, net):
        if self.net is net:
            return
        self.net = net
        orig = net._transmit
        tr = self
        def _transmit(src, dst, data):
            if tr.hosts:
                h = getattr(dst, "host", None) or (dst[0] if isinstance(dst, tuple) else None)
                if src[0] in tr.hosts or h in tr.hosts:
                    tr.buf.append((round(net.now - tr.t0, 4), "send", src, repr(dst), len(data), data[:2].hex()))
            return orig(src, dst, data)
        net._transmit = _transmit
        def on_deliver(src, dst, data):
            if tr.hosts and (dst[0] in tr.hosts or (isinstance(src, tuple) and src[0] in tr.hosts)):
                tr.buf.append((round(net.now - tr.t0, 4), "dlvr", repr(src), dst, len(data), data[:2].hex()))
        net.on_deliver = on_deliver

    def begin(self, j, a, b, kinds, addrs, net):
        self._hook(net)
        self.buf = []
        self.t0 = net.now
        import os, deep
        if os.environ.get("WATCH"):
            if str(j) in os.environ.get("DEEP_J", "").split(","):
                ca, cb = net.nodes[addrs[a]], net.nodes[addrs[b]]
                deep.W["buf"].append(("PAIR START", j, net.now))
                deep.W["buf"].append(("STATE A->B", deep.peer_state(ca, cb.node_id, net.now)))
                deep.W["buf"].append(("STATE B->A", deep.peer_state(cb, ca.node_id, net.now)))
            return
        deep.W["on"] = False
        if str(j) in os.environ.get("DEEP_J", "").split(","):
            if not getattr(deep, "_installed", False):
                deep.install(); deep._installed = True
            ca, cb = net.nodes[addrs[a]], net.nodes[addrs[b]]
            deep.W.update(on=True, buf=self.buf, t0=net.now, objs={id(ca.transport): ("A", cb.node_id), id(cb.transport): ("B", ca.node_id), id(ca.reach): ("A", cb.node_id), id(cb.reach): ("B", ca.node_id)})
            self.buf.append(("STATE A->B", deep.peer_state(ca, cb.node_id, net.now)))
            self.buf.append(("STATE B->A", deep.peer_state(cb, ca.node_id, net.now)))
            for i in (a, b):
                box = net.behind.get(addrs[i][0])
                if box is not None:
                    self.buf.append(("BOX", i, {p: (e["priv"], t0r(e["last"], net.now), {r: round(tt - net.now, 3) for r, tt in e["perms"].items() if r[0] in (addrs[a][0], addrs[b][0]) or True}) for p, e in box._in.items()}))
        self.hosts = {addrs[a][0], addrs[b][0]}
        for i in (a, b):
            box = net.behind.get(addrs[i][0])
            if box is not None:
                self.hosts.add(box.ip)
                if not getattr(box, "_traced", False):
                    box._traced = True
                    orig = box.inbound
                    tr = self
                    def inbound(src, port, now, orig=orig, box=box):
                        r = orig(src, port, now)
                        if r is None and tr.hosts and box.ip in tr.hosts:
                            tr.buf.append((round(now - tr.t0, 4), "NATDROP", src, (box.ip, port), 0, ""))
                        return r
                    box.inbound = inbound

    def end(self, j, a, b, kinds, path, t_direct, t_reply):
        rec = dict(j=j, a=a, b=b, ka=kinds[a], kb=kinds[b], path=path, t_direct=t_direct, t_reply=t_reply, wall=time.time())
        self.out.write(json.dumps(rec) + "\n"); self.out.flush()
        import deep, os
        if not os.environ.get("WATCH"):
            deep.W["on"] = False
        if (t_direct or 0) > self.thresh or (t_reply or 0) > self.thresh or deep.W["buf"] is self.buf:
            with open(f"{self.dump}-{j}.txt", "w") as f:
                f.write(json.dumps(rec) + "\n")
                for e in self.buf:
                    f.write(repr(e) + "\n")
        self.hosts = set()
        self.buf = []

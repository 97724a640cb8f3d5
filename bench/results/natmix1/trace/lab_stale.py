import sys, os
sys.path.insert(0, os.environ.get("TESTS", "tests"))
sys.path.insert(0, __import__("os").path.dirname(__file__))
from reach_lab import SimLab
import deep

def run(seed=1, forget=True, idle=0.0, deep_on=True):
    lab = SimLab(seed=seed, nat_timeout=float(os.environ.get("NATT", "120")))
    lab.public("R1", relay=True)
    lab.public("R2", relay=True)
    lab.public("P")
    lab.behind("B", "port-restricted", reach={"keep_punched": float(os.environ.get("KEEP", "600"))})
    lab.join_all()
    ev = lab.ping("B", "P")
    assert ev.ok
    lab.run(5)
    print("path P->B", lab.path("P", "B"), "B->P", lab.path("B", "P"))
    if idle:
        lab.run(idle)
    if os.environ.get("UNTIL_QUIET"):
        p_, b_ = lab.cores["P"], lab.cores["B"]
        q = float(os.environ["UNTIL_QUIET"])
        for _ in range(400):
            peer = p_.transport._by_node[b_.node_id]
            if peer.last_received is not None and lab.net.now - peer.last_received > q:
                break
            lab.run(5)
        print("quiet at", lab.net.now - 1_000_000, "has_session", p_.transport.has_session(b_.node_id))
    box = lab.boxes["B"]
    P = lab.addrs["P"]
    if forget:
        for port, e in box._in.items():
            e["perms"].pop(P, None)
    net = lab.net
    p, b = lab.cores["P"], lab.cores["B"]
    buf = []
    if deep_on:
        if not getattr(deep, "_installed", False):
            deep.install(); deep._installed = True
        deep.W.update(on=True, buf=buf, t0=net.now, objs={id(p.transport): ("P", b.node_id), id(b.transport): ("B", p.node_id), id(p.reach): ("P", b.node_id), id(b.reach): ("B", p.node_id)})
        buf.append(("STATE P->B", deep.peer_state(p, b.node_id, net.now)))
    t0 = net.now
    op = p.ping(b.node_id, net.now)
    net.flush(P)
    done = {}
    def fin():
        while (e := p.next_event()) is not None:
            if getattr(e, "op_id", None) == op:
                done["ev"] = e
        return "ev" in done
    net.run_for(20, until=fin)
    t_reply = net.now - t0
    from weftnet.core.reach.paths import path_kind
    t_direct = None
    end = net.now + 5
    while net.now < end:
        if t_direct is None and path_kind(p.transport.current_path(b.node_id)) == "direct" and p.transport.has_session(b.node_id):
            t_direct = net.now - t0
        net.run_for(0.05)
    deep.W["on"] = False
    print("ok", done["ev"].ok, "t_reply", round(t_reply, 3), "t_direct", t_direct and round(t_direct, 3))
    return buf


def main2():
    seed = int(sys.argv[2]); idle = float(sys.argv[3]); forget = sys.argv[4] == "1"
    buf = run(seed=seed, forget=forget, idle=idle)
    for x in buf:
        print(x)

if __name__ == "__main__" and sys.argv[1] == "x":
    main2()
elif __name__ == "__main__":
    buf = run(seed=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    for x in buf:
        print(x)

import sys
sys.path.insert(0, "tests")
from test_reach_stale_path import _stale_lab
lab = _stale_lab()
p, b = lab.cores["P"], lab.cores["B"]
t0 = lab.net.now
op = p.ping(b.node_id, t0)
lab.net.flush(lab.addrs["P"])
res = {}
def done():
    if "direct" not in res and lab.path("P", "B") == "direct" and p.reach.stats["fallbacks"]:
        res["direct"] = lab.net.now - t0
    while (ev := p.next_event()) is not None:
        if getattr(ev, "op_id", None) == op:
            res["reply"] = lab.net.now - t0; res["ev"] = ev
    return "reply" in res and "direct" in res
lab.net.run_for(10.0, until=done)
print(res, lab.path("P","B"))

import sys, collections
sys.argv = [sys.argv[0], "--nodes", "300", "--per-node-caches"]
from weftnet.core.dht import peers
C = collections.Counter()
for name in ("srtt", "rtt", "sample", "allow", "credit", "refund", "credit_of", "_new", "forget", "__contains__"):
    f = getattr(peers.PeerEstimates, name)
    def w(self, *a, _f=f, _n=name):
        C[_n] += 1
        return _f(self, *a)
    setattr(peers.PeerEstimates, name, w)
import runpy
try:
    runpy.run_path("weftnet_side.py", run_name="__main__")
finally:
    print(dict(C), file=sys.stderr)

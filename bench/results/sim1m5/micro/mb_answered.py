import random, timeit, sys
from weftnet.core.contact import Contact
from weftnet.core.dht.lookup import Lookup
from weftnet.core.dht.routing import RoutingTable
rng = random.Random(1)
pool = [Contact(rng.randbytes(32), ("10.0.0.0", i)) for i in range(2000)]
own = rng.getrandbits(256)
table = RoutingTable(own, per_prefix=None)
for c in pool[:400]: table.add(c, 0.0)
print(len(table))
replies = []
for i in range(31):
    replies.append(rng.sample(pool[:600], 20))
def run(fh):
    lk = Lookup(1, "bootstrap", own, 0.0, own_key=own)
    lk.seed(replies[0][:3])
    for r in replies:
        for c in lk.next_requests(0.0):
            lk.answered(c.key, r, None, fh)
    return lk
n = 200
for fh in (None, table):
    t = min(timeit.Timer(lambda: run(fh), timer=__import__("time").process_time).repeat(number=n, repeat=9)) / n
    print("first_hand", type(fh).__name__, round(t * 1e6), "us per lookup")

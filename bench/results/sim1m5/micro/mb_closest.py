import random, timeit, time
from weftnet.core.contact import Contact
from weftnet.core.dht.routing import RoutingTable
rng = random.Random(1)
N = 40000
pool = []
for i in range(N):
    c = Contact(rng.randbytes(32), ("10.0.0.0", i))
    pool.append(c)
own = pool[0].key
t = RoutingTable(own, per_prefix=None)
for c in pool[1:]: t.add(c, 0.0)
print(len(t), len(t._by_depth), [len(b.entries) for b in t._by_depth])
near = sorted(pool[1:], key=lambda c: c.key ^ own)[:300]
qs = [c.key for c in rng.sample(near, 200)]
def run(ex):
    for j in qs:
        t.closest(j, 20, exclude=j if ex else None, ordered=False)
for ex in (True, False):
    print(ex, round(min(timeit.Timer(lambda: run(ex), timer=time.process_time).repeat(number=50, repeat=9)) / 50 / len(qs) * 1e6, 2), "us per closest")

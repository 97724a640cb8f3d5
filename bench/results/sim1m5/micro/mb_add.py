import random, timeit, time
from weftnet.core.contact import Contact
from weftnet.core.dht.routing import RoutingTable
rng = random.Random(1)
own = rng.getrandbits(256)
pool = [Contact(rng.randbytes(32), ("10.0.0.0", i)) for i in range(400)]
def build():
    t = RoutingTable(own, per_prefix=None)
    for c in pool: t.add(c, 1.0)
    for c in pool: t.add(c, 2.0)
    return t
print(len(build()))
t = min(timeit.Timer(build, timer=time.process_time).repeat(number=300, repeat=9)) / 300
print(round(t * 1e6, 1), "us per 800 adds")

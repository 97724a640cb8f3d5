import random, timeit, time
from operator import attrgetter
from weftnet.core.contact import Contact
rng = random.Random(1)
K = attrgetter("key")
def loop(entries, key):
    for c in entries:
        if c.key == key:
            return c
    return None
def viamap(entries, key):
    if key in map(K, entries):
        for c in entries:
            if c.key == key:
                return c
    return None
def viamap2(entries, key):
    ks = list(map(K, entries))
    if key in ks:
        return entries[ks.index(key)]
    return None
for m in (3, 10, 20):
    es = [Contact(rng.randbytes(32), ("10.0.0.0", i)) for i in range(m)]
    miss = rng.getrandbits(256)
    hit = es[m // 2].key
    for f in (loop, viamap, viamap2):
        assert f(es, hit) is es[m//2] and f(es, miss) is None
        for name, key in (("miss", miss), ("hit", hit)):
            t = min(timeit.Timer(lambda: f(es, key), timer=time.process_time).repeat(number=100000, repeat=7)) / 100000
            print(m, f.__name__, name, round(t * 1e9), "ns")

import random, timeit, time, sys
from weftnet.core.contact import Contact
from weftnet.core.dht.lookup import Lookup
from weftnet.core.dht.routing import RoutingTable
rng = random.Random(1)
pool = [Contact(rng.randbytes(32), ("10.0.0.0", i)) for i in range(3000)]
own = pool[0].key
table = RoutingTable(own, per_prefix=None)
for c in pool[1:300]: table.add(c, 0.0)
srt = sorted(pool[1:], key=lambda c: c.key ^ own)
def reply_for(key):
    # the 20 nearest to own among a random 1500 of the pool, as a node nearer the target would know
    r = random.Random(key)
    sub = r.sample(srt[:600], 40)
    return sorted(sub, key=lambda c: c.key ^ own)[:20]
replies = {c.key: reply_for(c.key) for c in pool}
def run(part):
    lk = Lookup(1, "bootstrap", own, 0.0, own_key=own)
    lk.seed(table.closest(own, 20))
    q = lk.next_requests(0.0)
    n = 0
    while q:
        c = q.pop(0)
        if part != "n": lk.answered(c.key, replies[c.key], None, table)
        if part == "a": continue
        if lk.finished(): break
        q += lk.next_requests(0.0)
        n += 1
    return n
print("answers", run("all"))
for part in ("a", "all"):
    t = min(timeit.Timer(lambda: run(part), timer=time.process_time).repeat(number=300, repeat=9)) / 300
    print(part, round(t * 1e6, 1), "us per lookup")
from time import process_time_ns as pc
T = {"answered": 0, "finished": 0, "next": 0}
def run2():
    lk = Lookup(1, "bootstrap", own, 0.0, own_key=own)
    lk.seed(table.closest(own, 20))
    q = lk.next_requests(0.0)
    while q:
        c = q.pop(0)
        t0 = pc(); lk.answered(c.key, replies[c.key], None, table); t1 = pc()
        f = lk.finished(); t2 = pc()
        T["answered"] += t1 - t0; T["finished"] += t2 - t1
        if f: break
        t3 = pc(); q += lk.next_requests(0.0); T["next"] += pc() - t3
for i in range(2000): run2()
print({k: round(v / 2000 / 1000, 1) for k, v in T.items()}, "us per lookup")

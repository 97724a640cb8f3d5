"""What a join's lookup costs when it ends: Lookup.closest() and Lookup.hops() on a lookup as a
join leaves it (~130 candidates heard of, the ~25 nearest asked and answered).

    PYTHONPATH=src .venv/bin/python bench/results/sim1m9/mb_lookup_end.py
"""
import random
import timeit

from weftnet.core.contact import Contact
from weftnet.core.dht.lookup import ANSWERED, Lookup

rng = random.Random(1)
contacts = [Contact(rng.randbytes(32), ("10.0.0.0", i)) for i in range(130)]
target = rng.getrandbits(256)
lk = Lookup(1, "bootstrap", target, 0.0)
lk.seed(contacts)
for c in lk.order[:25]:
    c.state = ANSWERED
want = [c.contact for c in lk.order if c.state == ANSWERED][:20]
assert lk.closest() == want and lk.hops() == lk.order[0].depth
n = 20000
for name, f in (("closest()", lk.closest), ("hops()", lk.hops)):
    t = min(timeit.repeat(f, number=n, repeat=9)) / n * 1e6
    print(f"{name:10} {t:.2f} us")

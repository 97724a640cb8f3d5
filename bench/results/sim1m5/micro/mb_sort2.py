import random, timeit
from weftnet.core.contact import Contact
rng = random.Random(1)
cs = [Contact(rng.randbytes(32), ("10.0.0.0", i)) for i in range(20)]
t = rng.getrandbits(256)
def a(contacts, target, n=None):
    r = sorted(contacts, key=lambda c: c.key ^ target)
    return r if n is None else r[:n]
def c(contacts, target, n=None):
    by = {c.key ^ target: c for c in contacts}
    if len(by) != len(contacts):
        return a(contacts, target, n)
    ds = sorted(by)
    if n is not None: ds = ds[:n]
    return [by[x] for x in ds]
def e(contacts, target, n=None):
    by = {c.key ^ target: c for c in contacts}
    if len(by) != len(contacts):
        return a(contacts, target, n)
    ds = sorted(by)
    if n is not None: del ds[n:]
    return list(map(by.__getitem__, ds))
for n in (None, 5, 20):
  for m in (3, 8, 20):
    assert a(cs[:m],t,n)==c(cs[:m],t,n)==e(cs[:m],t,n)
for m in (3, 8, 20):
  for f in (a,c,e):
    print(m, f.__name__, round(min(timeit.repeat(lambda: f(cs[:m], t), number=20000, repeat=7))/20000*1e6, 2), "us")

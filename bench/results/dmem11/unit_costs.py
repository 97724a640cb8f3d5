# Unit costs of what dmem11 changed, either tree:
#   PYTHONPATH=<tree>/src python bench/results/dmem11/unit_costs.py
# public_key read (a decoded contact; one made from its fields), a decode that misses the cache and one
# that hits (in a 20-contact answer), shared_contact that misses, Contact(...) made, == and hash, and
# Sessionless._keep of a peer already kept (every answer) and the ss look-up (every query).
import hashlib, inspect, time, timeit
import weftnet.core.contact as cm
from weftnet.core.contact import Contact, ContactSeq, shared_contact
from weftnet.core.identity import Identity
import random
raws = []
for i in range(2000):
    b = bytearray(); Contact(hashlib.sha256(i.to_bytes(4, 'big')).digest(), ("127.0.0.1", 10000 + i))._pack_body(b); raws.append(bytes(b))
class NoStore(dict):
    def __setitem__(s, k, v): pass
seq = ContactSeq(20)
def miss():
    saved = cm._CACHE; cm._CACHE = NoStore()
    try:
        for j in range(0, 2000, 20): seq.unpack(blobs[j // 20], 0)
    finally: cm._CACHE = saved
held = [Contact._unpack_body(r, 0)[0] for r in raws]
blobs = []
for j in range(0, 2000, 20):
    b = bytearray(); seq.pack(tuple(held[j:j + 20]), b); blobs.append(memoryview(bytes(b)))
def hit():
    for b in blobs: seq.unpack(b, 0)
def best(fn, n=1, per=2000): return min(timeit.repeat(fn, number=n, repeat=7, timer=time.process_time)) / (n * per) * 1e9
pks = [hashlib.sha256(b"x" + i.to_bytes(4, 'big')).digest() for i in range(2000)]
def smiss():
    saved = cm._CACHE; cm._CACHE = NoStore()
    try:
        for i, p in enumerate(pks): shared_contact(p, ("127.0.0.2", 20000 + i))
    finally: cm._CACHE = saved
def made():
    for i, p in enumerate(pks): Contact(p, ("127.0.0.2", 20000 + i))
dec = held[5]; own = Contact(pks[5], ("127.0.0.2", 5))
other = Contact(pks[6], ("127.0.0.2", 6)); twin = Contact(dec.public_key, dec.endpoint)
print("public_key read: decoded %.0f ns, made %.0f ns" % (best(lambda: dec.public_key, 100000, 1), best(lambda: own.public_key, 100000, 1)))
print("decode miss %.0f ns, hit (in a 20-seq) %.0f ns a contact" % (best(miss), best(hit)))
print("shared_contact miss %.0f ns, Contact() %.0f ns" % (best(smiss), best(made)))
print("== unequal %.0f ns, == equal (other object) %.0f ns, hash %.0f ns" % (
    best(lambda: dec == other, 100000, 1), best(lambda: dec == twin, 100000, 1), best(lambda: hash(dec), 100000, 1)))
from weftnet.core.node import NodeCore
import weftnet.core.dht.sessionless as sl
core = NodeCore(Identity.generate(random.Random(1)), random.Random(2), 1000.0)
s = core.sessionless
new = 'peer' in inspect.signature(s._keep).parameters
peers = held[:80]
for c in peers:
    s._keep(c.key if new else c.public_key, bytes(32), bytes(16), 1000.0)
def keep():
    for c in peers: s._keep(c.key if new else c.public_key, bytes(32), bytes(16), 1001.0)
def ss():
    if new:
        for c in peers: s._static_dh(c.public_key, c.key)
    else:
        for c in peers: s._static_dh(c.public_key)
print("sessionless _keep (kept) %.0f ns, ss look-up %.0f ns a peer" % (best(keep, 50, 80), best(ss, 50, 80)))

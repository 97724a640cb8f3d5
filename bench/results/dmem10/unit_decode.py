# Unit costs: a contact decode that misses the cache, one that hits (in a 20-contact answer), a node_id read.
# PYTHONPATH=<tree>/src python bench/results/dmem10/unit_decode.py
import time, timeit, hashlib
import weftnet.core.contact as cm
from weftnet.core.contact import Contact, ContactSeq
raws=[]
for i in range(2000):
    b=bytearray(); Contact(hashlib.sha256(i.to_bytes(4,'big')).digest(), ("127.0.0.1", 10000+i))._pack_body(b); raws.append(bytes(b))
class NoStore(dict):
    def __setitem__(s,k,v): pass
def miss():
    saved=cm._CACHE; cm._CACHE=NoStore()
    try:
        for r in raws: Contact._unpack_body(r,0)
    finally: cm._CACHE=saved
held=[Contact._unpack_body(r,0)[0] for r in raws]
seq=ContactSeq(20)
blobs=[]
for j in range(0,2000,20):
    b=bytearray(); seq.pack(tuple(held[j:j+20]),b); blobs.append(memoryview(bytes(b)))
def hit():
    for b in blobs: seq.unpack(b,0)
def best(fn): return min(timeit.repeat(fn,number=1,repeat=7,timer=time.process_time))/2000*1e6
c=held[5]
print("decode miss %.2f us, decode hit (in a 20-seq) %.3f us, node_id read %.3f us" % (best(miss), best(hit), min(timeit.repeat(lambda: c.node_id, number=20000, repeat=5, timer=time.process_time))/20000*1e6))

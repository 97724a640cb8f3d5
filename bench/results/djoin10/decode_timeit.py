import random, time
from weftnet.core import contact as C
from weftnet.core.identity import Identity
rng = random.Random(1)
keys = [Identity.generate(rng).public_key for _ in range(4000)]
cs = [C.Contact(k, (f"127.0.{i//250}.{i%250+1}", 40000+i)) for i,k in enumerate(keys)]
seq = C.ContactSeq(20)
blobs = []
for j in range(200):
    out = bytearray(); seq.pack(tuple(cs[j*20:(j+1)*20]), out); blobs.append(bytes(out))
def run():
    C._CACHE.clear()
    t=time.process_time()
    for b in blobs: seq.unpack(memoryview(b), 0)
    return (time.process_time()-t)/4000*1e6
print("miss µs/contact", min(run() for _ in range(5)))
def runhit():
    t=time.process_time()
    for b in blobs: seq.unpack(memoryview(b), 0)
    return (time.process_time()-t)/4000*1e6
print("hit µs/contact", min(runhit() for _ in range(5)))

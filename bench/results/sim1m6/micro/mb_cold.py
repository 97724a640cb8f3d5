import random, time, sys

from weftnet.core.contact import Contact
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300000
rng = random.Random(1)
cs = [Contact(rng.randbytes(32), ("10.0.0.0", i & 0xFFFF)) for i in range(N)]
# buckets: 20 random contacts each, like routing tables spread over the heap
B = N // 4
buckets = [[cs[rng.randrange(N)] for _ in range(20)] for _ in range(B)]
blooms = []
for b in buckets:
    m = 0
    for c in b:
        m |= 1 << (c.key & 255)
    blooms.append(m)
order = [rng.randrange(B) for _ in range(200000)]
probe = Contact(rng.randbytes(32), ("10.0.0.1", 1)).key
def scan():
    t = time.process_time()
    for i in order:
        for c in buckets[i]:
            if c.key == probe:
                break
    return time.process_time() - t
def bloom():
    t = time.process_time()
    for i in order:
        if blooms[i] >> (probe & 255) & 1:
            for c in buckets[i]:
                if c.key == probe:
                    break
    return time.process_time() - t
def touch_list():
    t = time.process_time()
    for i in order:
        len(buckets[i])
    return time.process_time() - t
for r in range(3):
    print(f"scan {scan()/len(order)*1e6:.2f} us  bloom {bloom()/len(order)*1e6:.2f} us  len {touch_list()/len(order)*1e6:.2f} us")

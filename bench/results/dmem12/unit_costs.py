"""Unit costs of the contact cache (run with each tree): a ContactSeq decode of a 20-contact answer whose
contacts are all new here (misses: decoded and cached), all cached (hits), and, in a tree with sweeps, a
sweep of a cache of 80 held contacts. PYTHONPATH=<tree>/src python bench/results/dmem12/unit_costs.py"""
import gc
import hashlib
import timeit

import weftnet.core.contact as contact
from weftnet.core.contact import Contact, ContactSeq


def key(i):
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


seq = ContactSeq(20)
answers = []
for a in range(400):
    made = [Contact(key(a * 20 + i), ("10.%d.%d.%d" % (a >> 8, a & 255, i), 4000 + i)) for i in range(20)]
    out = bytearray()
    seq.pack(tuple(made), out)
    answers.append(memoryview(bytes(out)))
gc.disable()
best = []
for _ in range(5):
    contact._CACHE.clear()
    held = []
    t = timeit.default_timer()
    for m in answers:
        held.append(seq.unpack(m, 0)[0])
    best.append((timeit.default_timer() - t) / 8000)
print(f"decode, miss (new here, cached): {min(best) * 1e6:.2f} us a contact")
best = []
for _ in range(5):
    t = timeit.default_timer()
    for m in answers:
        seq.unpack(m, 0)
    best.append((timeit.default_timer() - t) / 8000)
print(f"decode, hit: {min(best) * 1e6:.3f} us a contact")
best = []
for _ in range(5):
    contact._CACHE.clear()
    t = timeit.default_timer()
    for m in answers:
        seq.unpack(m, 0)  # nothing holds them: freed (weak cache) or swept (dmem12)
    best.append((timeit.default_timer() - t) / 8000)
print(f"decode, miss, contact dropped at once: {min(best) * 1e6:.2f} us a contact (with its removal)")
if hasattr(contact, "_sweep"):
    table = {}
    keep = [c for batch in held[:4] for c in batch]  # 80 held contacts
    for c in keep:
        table[c.wire] = c
    n = 20000
    t = timeit.timeit(lambda: contact._sweep(table), number=n)
    print(f"sweep of 80 held contacts: {t / n * 1e6:.2f} us ({t / n / 80 * 1e9:.0f} ns an entry)")

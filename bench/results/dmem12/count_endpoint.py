"""Contact.endpoint reads per phase of bench/dht's weftnet side (per-node caches), and how many were
of a contact read from the wire (``wire`` set, made by a decode or for an asker). From the worktree root:
    PYTHONPATH=src python bench/results/dmem12/count_endpoint.py 500
"""
import asyncio
import collections
import sys

sys.path.insert(0, "bench/dht")
import pernode  # noqa: E402

pernode.install()
import common  # noqa: E402
import weftnet_side  # noqa: E402

import weftnet.core.contact as contact  # noqa: E402

N = collections.Counter()
desc = contact.Contact.__dict__["endpoint"]
slot = desc if not isinstance(desc, property) else None
get = (lambda self: desc.__get__(self, contact.Contact)) if slot is not None else desc.fget


def endpoint(self):
    N["endpoint"] += 1
    if self.wire is not None and getattr(self, "_pk", 0) is None:
        N["of_wire"] += 1
    return get(self)


if slot is not None:
    # keep the slot for stores (the class's own setter is captured at import), read through the property
    contact.Contact.endpoint = property(endpoint, desc.__set__)
else:
    contact.Contact.endpoint = property(endpoint)
cpu = common.cpu_now
marks = []


def cpu_now():
    marks.append(dict(N))
    return cpu()


weftnet_side.cpu_now = cpu_now
asyncio.run(weftnet_side.main(int(sys.argv[1]), 200, 1))
for name, (m0, m1) in zip(("joins", "puts", "gets"), ((marks[0], marks[1]), (marks[2], marks[3]), (marks[4], marks[5]))):
    print(name, {k: v - m0.get(k, 0) for k, v in m1.items()}, "per op:",
          {k: round((v - m0.get(k, 0)) / (499 if name == "joins" else 200), 1) for k, v in m1.items()})

"""Contact-cache hits by kind, per phase of bench/dht's weftnet side (per-node caches): a contact of an
answer found alive in the cache (hit) that the node's routing table holds, or that only something else
(a lookup in flight, a reply) holds; and the misses (decoded). Run from the worktree root:
    PYTHONPATH=src python bench/results/dmem12/count_hits.py 500
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
from weftnet.core.node import NodeCore  # noqa: E402

N = collections.Counter()
CORES = {}
init = NodeCore.__init__


def __init__(self, *a, **kw):
    init(self, *a, **kw)
    CORES[id(pernode._CURRENT[0])] = self


NodeCore.__init__ = __init__
unpack = contact.ContactSeq.unpack


def counted(self, buf, off):
    cache = contact._CACHE
    # By id, not holding them (that would keep them cached); a tree before dmem12 keeps weak references.
    before = {raw: id(v if hasattr(v, "wire") else v()) for raw, v in cache.items()}
    items, end = unpack(self, buf, off)
    core = CORES.get(id(pernode._CURRENT[0]))
    for c in items:
        if before.get(c.wire) == id(c):
            if core is not None and core.dht.table.get(c.key) is c:
                N["hit_table"] += 1
            else:
                N["hit_other"] += 1
        else:
            N["miss"] += 1
    return items, end


contact.ContactSeq.unpack = counted
cpu = common.cpu_now
marks = []


def cpu_now():
    marks.append(dict(N))
    return cpu()


weftnet_side.cpu_now = cpu_now
asyncio.run(weftnet_side.main(int(sys.argv[1]), 200, 1))
# cpu_now is read before and after each phase (joins, puts, gets)
for name, (m0, m1) in zip(("joins", "puts", "gets"), ((marks[0], marks[1]), (marks[2], marks[3]), (marks[4], marks[5]))):
    print(name, {k: v - m0.get(k, 0) for k, v in m1.items()})

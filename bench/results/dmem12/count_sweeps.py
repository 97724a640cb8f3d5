"""Sweeps of the contact cache per phase of bench/dht's weftnet side (per-node caches): how many, the entries
they read, the dicts they copied, and idle sweeps (a node with no query in flight). From the worktree root:
    PYTHONPATH=src python bench/results/dmem12/count_sweeps.py 1000
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
sweep = contact._sweep


def counted(table):
    N["sweeps"] += 1
    N["entries read"] += len(table)
    size = sys.getsizeof(table)
    sweep(table)
    N["dicts copied"] += sys.getsizeof(table) < size
    return None


contact._sweep = counted
idle = contact.sweep


def idle_counted():
    N["idle sweeps"] += 1
    idle()


import weftnet.core.dht.sessionless as sl  # noqa: E402

sl.sweep_contacts = idle_counted
cpu = common.cpu_now
marks = []


def cpu_now():
    marks.append(dict(N))
    return cpu()


weftnet_side.cpu_now = cpu_now
n = int(sys.argv[1])
asyncio.run(weftnet_side.main(n, 200, 1))
for name, ops, (m0, m1) in zip(("joins", "puts", "gets"), (n - 1, 200, 200),
                               ((marks[0], marks[1]), (marks[2], marks[3]), (marks[4], marks[5]))):
    d = {k: v - m0.get(k, 0) for k, v in m1.items()}
    print(name, d, "per op:", {k: round(v / ops, 2) for k, v in d.items()})

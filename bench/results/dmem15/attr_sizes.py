"""Per-attribute bytes of a node's own objects (not shared with the other nodes), for a node with no peer.

    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem15/attr_sizes.py [--count 50]

For each per-node object (NodeCore, its transport, admission, DHT, sessionless, ...) the object itself
(sys.getsizeof, with its __dict__ when it has one) and, per attribute, the bytes of the objects
reachable from it that no other node reaches (so shared constants count nothing), averaged over nodes.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
from collections import defaultdict

SKIP = (type, type(sys), type(len))


def own(obj, seen: set, shared: set) -> int:
    """Bytes of the objects reachable from ``obj`` that are not in ``shared`` and not yet ``seen``."""
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen or i in shared or isinstance(o, SKIP):
            continue
        seen.add(i)
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50)
    a = ap.parse_args()
    from weftnet.core.identity import Identity
    from weftnet.core.node import NodeConfig, NodeCore

    rng = random.Random(1)
    cfg = NodeConfig.lab()
    nodes = [NodeCore(Identity.generate(rng), rng, 0.0, cfg, endpoint=("127.0.0.1", 4000 + n))
             for n in range(a.count)]
    # shared: everything two nodes reach
    counts: dict[int, int] = defaultdict(int)
    for n in nodes:
        s: set = set()
        own(n, s, set())
        for i in s:
            counts[i] += 1
    shared = {i for i, c in counts.items() if c > 1}
    rows: dict[str, int] = defaultdict(int)
    total = 0
    for n in nodes:
        seen: set = set()
        parts = [("core", n), ("transport", n.transport), ("admission", n.transport.admission),
                 ("dht", n.dht), ("sessionless", n.sessionless)]
        for label, o in parts:
            if o is None:
                continue
            seen.add(id(o))
            size = sys.getsizeof(o)
            d = getattr(o, "__dict__", None)
            rows[f"{label} (object)"] += size
            if d is not None:
                rows[f"{label} (__dict__)"] += sys.getsizeof(d)
                seen.add(id(d))
        for label, o in parts:
            if o is None:
                continue
            names = list(getattr(type(o), "__slots__", ())) + list(getattr(o, "__dict__", {}) or {})
            for name in names:
                if name in ("__dict__", "__weakref__"):
                    continue
                try:
                    v = getattr(o, name) if name in getattr(type(o), "__slots__", ()) else o.__dict__[name]
                except (AttributeError, KeyError):
                    continue
                rows[f"{label}.{name}"] += own(v, seen, shared)
        total += own(n, seen, shared)
    per = a.count
    grand = sum(rows.values()) + total
    print(f"{grand / per:.0f} B a node's own objects ({per} nodes, no peer)")
    for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
        if v:
            print(f"{v / per:9.1f} B  {k}")
    if total:
        print(f"{total / per:9.1f} B  (rest)")


if __name__ == "__main__":
    main()

"""Where a weftnet node's memory goes: tracemalloc snapshots grouped by file and line.

    .venv/bin/python bench/dht/mem_breakdown.py empty [--count 50]
    .venv/bin/python bench/dht/mem_breakdown.py bench [--nodes 100] [--records 200] [--isolated] [--warm]

``empty``: ``count`` NodeCores built with no peer (the lab config the bench uses), the traced
bytes per node by line. ``bench``: bench/dht's join and put phases (weftnet_side.py, real UDP on
127.0.0.1), then the traced bytes per node by line and by file, after the puts (where the bench
reads its RSS). tracemalloc counts Python allocations only (not the allocator's slack), and slows
the run several times: its figures say where memory goes, bench/dht/run.py says how much.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tracemalloc


def _report(snap: tracemalloc.Snapshot, base: tracemalloc.Snapshot, per: int, top: int) -> None:
    flt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    snap, base = snap.filter_traces(flt), base.filter_traces(flt)
    for key in ("filename", "lineno"):
        stats = snap.compare_to(base, key)
        total = sum(s.size_diff for s in stats)
        print(f"\n== by {key}: {total / per / 1024:.2f} KiB per node traced ({per} nodes)")
        for s in stats[:top]:
            if s.size_diff <= 0:
                continue
            fr = s.traceback[0]
            where = fr.filename.split("site-packages/")[-1].split("/src/")[-1]
            where = where if key == "filename" else f"{where}:{fr.lineno}"
            print(f"{s.size_diff / per:9.1f} B {s.count_diff / per:7.2f} blocks  {where}")


def empty(count: int, top: int) -> None:
    from weftnet.core.identity import Identity
    from weftnet.core.node import NodeConfig, NodeCore

    rng = random.Random(1)
    ids = [Identity.generate(rng) for _ in range(count)]
    cfg = NodeConfig.lab()
    NodeCore(Identity.generate(rng), rng, 0.0, cfg)  # module-level caches and first-use imports
    gc.collect()
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    nodes = [NodeCore(i, rng, 0.0, cfg, endpoint=("127.0.0.1", 4000 + n)) for n, i in enumerate(ids)]
    gc.collect()
    snap = tracemalloc.take_snapshot()
    _report(snap, base, count, top)
    del nodes


def warm_crypto() -> None:
    """The process's first use of the crypto library (``--warm``): OpenSSL's set-up at the first Ed25519
    key, the cffi binding ``cryptography`` imports at the first X25519 key (~230 KiB of Python objects),
    the first AEAD. A daemon pays them once, whatever the number of nodes; in a run of N nodes they are
    1/N of them a node (bench/results/dmem17)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from weftnet.core.identity import Identity, verify_signature

    ident = Identity.generate(random.Random(0))
    verify_signature(ident.public_key, ident.sign(b"warm"), b"warm")
    x = X25519PrivateKey.from_private_bytes(bytes(range(32)))
    x.exchange(x.public_key())
    aead = ChaCha20Poly1305(bytes(32))
    aead.decrypt(bytes(12), aead.encrypt(bytes(12), b"warm", b""), b"")


async def bench(nodes: int, records: int, seed: int, isolated: bool, top: int, per_node: bool = False) -> None:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import weftnet_side
    from common import workload_plan

    from weftnet.core.identity import Identity
    from weftnet.runtime.driver import start_node

    if isolated:
        weftnet_side._isolate()
    if per_node:
        import pernode

        pernode.install()
    joins, puts, _gets = workload_plan(seed, nodes, records)
    rng = random.Random(seed)
    system_rng = random.SystemRandom()
    config = weftnet_side._config(True)
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    drivers = []
    for i in range(nodes):
        if isolated:
            system_rng, config = random.SystemRandom(), weftnet_side._config(True)
        d = await start_node(Identity.generate(rng), rng=system_rng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok, ev.error
        drivers.append(d)
    for _key, value, who in puts:
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        assert ev.ok, ev.error
    gc.collect()
    snap = tracemalloc.take_snapshot()
    _report(snap, base, nodes, top)
    _tables(drivers, nodes)
    if per_node:
        _caches(nodes)
    tables = [len(d.core.dht.table) for d in drivers]
    print(f"\nrouting-table contacts per node: {sum(tables) / nodes:.1f}; transport peers per node: "
          f"{sum(len(d.core.transport._peers) for d in drivers) / nodes:.1f}")
    for d in drivers:
        d.close()


def _caches(nodes: int) -> None:
    """Entries, hits and misses of each node's own caches (``--per-node-caches``), per node."""
    import pernode

    print()
    for name, (entries, hits, misses) in sorted(pernode.stats().items()):
        print(f"{name:26s} {entries / nodes:8.1f} entries {hits / nodes:9.1f} hits {misses / nodes:8.1f} misses per node")


def _tables(drivers, nodes: int) -> None:
    """Entries and bytes (the table itself, not what it holds) of the per-peer tables, per node."""
    rows = {
        "sessionless keys": lambda c: c.sessionless._keys if hasattr(c.sessionless, "_keys") else c.sessionless._peers,
        "rtt + hint credit": lambda c: c.dht._rtt._slot if getattr(c.dht._rtt, "_keys", None) is None else c.dht._rtt._keys,
        "  (3 doubles a peer)": lambda c: c.dht._rtt._v,
        "peer limit (gcra)": lambda c: c.dht._peer_limit._t,
        "prefix limit (gcra)": lambda c: c.dht._prefix_limit._t,
        "transport peers": lambda c: c.transport._peers,
        "records": lambda c: c.dht.index._meta,
    }
    print()
    for name, get in rows.items():
        tabs = [get(d.core) for d in drivers]
        n = sum(len(t) for t in tabs) / nodes
        size = sum(sys.getsizeof(t) for t in tabs) / nodes
        print(f"{name:22s} {n:7.1f} entries {size:8.0f} B of table per node")
    slots = [d.core.sessionless._slots for d in drivers]
    print(f"sessionless key slots: {sum(len(s) for s in slots) / nodes:.0f} B used, "
          f"{sum(sys.getsizeof(s) for s in slots) / nodes:.0f} B allocated per node")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("empty", "bench"))
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--isolated", action="store_true")
    ap.add_argument("--per-node-caches", action="store_true", help="each node its own caches (bench/dht/pernode.py)")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--warm", action="store_true",
                    help="the crypto library's first use before the baseline (a per-process cost, not a node's)")
    a = ap.parse_args()
    if a.warm:
        warm_crypto()
    if a.what == "empty":
        empty(a.count, a.top)
    else:
        asyncio.run(bench(a.nodes, a.records, a.seed, a.isolated, a.top, a.per_node_caches))

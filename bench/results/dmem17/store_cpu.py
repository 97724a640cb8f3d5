"""CPU of the DHT's record paths (no network): STOREs of new records from distinct peers, the same records
again (a holder's duplicate STORE), FindValue answered from the store, replica offers, the hourly
replication pass and expiry, each as microseconds per call, best of several repeats.
    PYTHONPATH=<tree>/src python bench/results/dmem17/store_cpu.py [--records 42]"""
from __future__ import annotations

import argparse
import random
import time

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore
from weftnet.core.dht.messages import FindValue, OfferItem, ReplicaOffer, Store
from weftnet.core.identity import Identity

T0 = 1_000_000.0


def run(n: int, reps: int) -> dict[str, float]:
    rng = random.Random(1)
    me = Contact(Identity.generate(rng).public_key, ("198.51.100.1", 4500))
    peers = [Contact(Identity.generate(rng).public_key, (f"10.0.{i // 200}.{i % 200 + 1}", 4000)) for i in range(n)]
    recs = [ImmutableRecord(rng.randbytes(66)) for _ in range(n)]
    blobs = [r.encode() for r in recs]
    best: dict[str, float] = {}

    def timed(name, fn, count):
        t = time.perf_counter()
        fn()
        dt = (time.perf_counter() - t) / count * 1e6
        best[name] = min(best.get(name, 1e18), dt)

    for _ in range(reps):
        d = Dht(me, random.Random(2), T0, DhtConfig(exempt_prefixes=["10.0.0.0/8"]), MemoryStore())

        def stores(now=T0 + 1):
            for i in range(n):
                d.on_message(peers[i], Store(i + 1, blobs[i]), now)
            d.messages_to_send()

        timed("store new", stores, n)
        assert len(d.index) == n
        timed("store again", lambda: stores(T0 + 2), n)

        def gets():
            for i in range(n):
                d.on_message(peers[i], FindValue(i + 1, recs[i].key), T0 + 3)
            d.messages_to_send()

        timed("find value", gets, n)
        offer = ReplicaOffer(1, tuple(OfferItem(r.key, 0) for r in recs[:32]))

        def offers():
            for i in range(n):  # each peer offers 32 records this node holds
                d.on_message(peers[i], offer, T0 + 4)
            d.messages_to_send()

        timed("offer of 32", offers, n)
        timed("replicate pass", lambda: d._replicate(T0 + 10_000), 1)
        d.messages_to_send()
        timed("expire all", lambda: d._maintain(T0 + 200_000), 1)
        assert len(d.index) == 0
    return best


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=42)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    for name, us in run(a.records, a.reps).items():
        print(f"{name:16s} {us:10.2f} us")

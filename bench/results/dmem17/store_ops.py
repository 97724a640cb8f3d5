"""The DHT's record paths for instruction counts under callgrind (no network, seeded): with --upto K, the first K
phases of: 1 STOREs of new records from distinct peers, 2 the same STOREs again, 3 FindValue answered from the
store, 4 each peer offering 32 held records, 5 the replication pass, 6 expiry of all. The difference between
runs with K and K-1 is the cost of phase K:
    PYTHONHASHSEED=0 PYTHONPATH=<tree>/src valgrind --tool=callgrind python store_ops.py --records 42 --upto K"""
from __future__ import annotations

import argparse
import random

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore
from weftnet.core.dht.messages import FindValue, OfferItem, ReplicaOffer, Store
from weftnet.core.identity import Identity

T0 = 1_000_000.0


def main(n: int, upto: int) -> None:
    rng = random.Random(1)
    me = Contact(Identity.generate(rng).public_key, ("198.51.100.1", 4500))
    peers = [Contact(Identity.generate(rng).public_key, (f"10.0.{i // 200}.{i % 200 + 1}", 4000)) for i in range(n)]
    recs = [ImmutableRecord(rng.randbytes(66)) for _ in range(n)]
    blobs = [r.encode() for r in recs]
    offer = ReplicaOffer(1, tuple(OfferItem(r.key, 0) for r in recs[:32]))
    d = Dht(me, random.Random(2), T0, DhtConfig(exempt_prefixes=["10.0.0.0/8"]), MemoryStore())
    phases = [
        lambda: [d.on_message(peers[i], Store(i + 1, blobs[i]), T0 + 1) for i in range(n)],
        lambda: [d.on_message(peers[i], Store(i + 1, blobs[i]), T0 + 2) for i in range(n)],
        lambda: [d.on_message(peers[i], FindValue(i + 1, recs[i].key), T0 + 3) for i in range(n)],
        lambda: [d.on_message(peers[i], offer, T0 + 4) for i in range(n)],
        lambda: d._replicate(T0 + 10_000),
        lambda: d._maintain(T0 + 200_000),
    ]
    for ph in phases[:upto]:
        ph()
        d.messages_to_send()
    print(len(d.index))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=42)
    ap.add_argument("--upto", type=int, default=6)
    a = ap.parse_args()
    main(a.records, a.upto)

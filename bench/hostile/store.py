"""Issue 9, item 3: what a STORE costs when the store is full, by store size, on SQLite.

    PYTHONPATH=/path/to/tree/src .venv/bin/python bench/hostile/store.py   # prints one JSON object

For N = 1,000, 10,000 and 100,000: a node.db full of N records (max_records
= N, written straight into SQLite), a Dht opened on it, then 200 STOREs of
new records from 50 peers in 50 address blocks (so no quota is in the way:
this measures admission and eviction). Wall-clock ms per STORE, median and
p95, on this machine; run.py runs it for the trees before and after.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord
from weftnet.core.dht.messages import Store
from weftnet.core.dht.store import StoredRecord
from weftnet.core.identity import Identity
from weftnet.runtime.store import SqliteStore

T0 = 1_700_000_000.0


def run(n: int, stores: int = 200) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="weft-store-"))
    s = SqliteStore(tmp / "node.db")
    rng = random.Random(n)
    s.db.execute("BEGIN")
    for i in range(n):
        rec = ImmutableRecord(b"filler %d " % i + rng.randbytes(40))
        s.put(StoredRecord(rec.key, rec.encode(), T0 + 86_400, False, None, T0))
    s.db.execute("COMMIT")
    me = Contact(Identity.generate(random.Random(1)).public_key, ("198.51.100.1", 4500))
    t_open = time.perf_counter()
    d = Dht(me, random.Random(2), T0, DhtConfig(max_records=n), s)
    open_s = time.perf_counter() - t_open
    peers = [Contact(Identity.generate(rng).public_key, (f"10.{i}.0.1", 4000)) for i in range(50)]
    times = []
    for i in range(stores):
        msg = Store(i + 1, ImmutableRecord(b"new %d" % i).encode())
        t = time.perf_counter()
        d.on_message(peers[i % 50], msg, T0 + 1 + i * 0.01)
        times.append((time.perf_counter() - t) * 1000)
        d.messages_to_send()
        while d.next_event() is not None:
            pass
    held = len(s)
    accepted, evicted = d.stats["records_stored"], d.stats["records_evicted"]
    s.close()
    times.sort()
    return {"records": n, "store_ms_p50": round(statistics.median(times), 3),
            "store_ms_p95": round(times[int(0.95 * len(times))], 3), "held_after": held,
            "open_s": round(open_s, 2), "stores_accepted": accepted, "evictions": evicted}


def main() -> None:
    print(json.dumps({"runs": [run(n) for n in (1_000, 10_000, 100_000)]}))


if __name__ == "__main__":
    main()

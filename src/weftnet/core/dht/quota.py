"""The record store's index in memory: eviction order, expiry order and per-source quotas.

The DHT asks it, for every STORE, four questions that must not cost a scan
of the store (a full store of 100,000 records made each STORE take 0.4 s
before; docs/security.md, item 3):

* how much does this sender (node ID) and its address prefix hold? — two
  dict lookups (counts and bytes, kept up to date on every add and remove);
* which records have expired? — a heap by expiry time, built when a full
  store first evicts (until then the maintenance pass, every 10 minutes,
  reads each record's expiry: O(n) per pass, not per STORE, and no 64 bytes
  a record for a heap entry);
* which record is this node least responsible for? — a heap by XOR distance
  from the node's own ID, of records it did not publish itself;
* how many records and bytes are held? — two counters.

Heaps use lazy deletion (an entry is checked against the current metadata
when it surfaces) and are rebuilt when stale entries outnumber live ones,
so every operation is O(log n) amortised. The index is rebuilt from the
store once when the node starts (``SqliteStore`` keeps the sender and prefix
of each record, so quotas survive a restart).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from weftnet.core.dht.store import MemoryStore
from weftnet.core.limits import NO_ENTRIES

__all__ = ["StoreIndex", "Meta"]

#: Per-source usage is one int: records in the bits from 48 up, bytes below (a store holds far less than 2**48 bytes).
_ONE = 1 << 48
_BYTES = _ONE - 1


@dataclass(slots=True)
class Meta:
    expires: float
    own: bool
    size: int
    origin: bytes  # node ID of the peer that stored it (b"" for our own records)
    prefix: str  # that peer's address prefix ("" if exempt or own)
    touched: float = 0.0  # last time a peer stored or offered it (replication skips it then)


class StoreIndex:
    __slots__ = ("own_key", "_meta", "_by_expiry", "_by_far", "_origin", "_prefix", "bytes", "_records")

    def __init__(self, own_key: int, store=None):
        self.own_key = own_key
        # With an in-memory store, a record's own StoredRecord (which has the same fields) is its
        # entry here, when its fields agree with what is indexed: no second object per record.
        self._records: dict | None = store._records if type(store) is MemoryStore else None
        self._meta: dict[bytes, Meta] = {}
        # (expires, key); None until an eviction asks for the oldest expired record (_expiry_heap)
        self._by_expiry: list[tuple[float, bytes]] | None = None
        # (-distance, key), records not our own; None until the first eviction asks for it (a store
        # that never fills never needs it, and an entry costs about 120 bytes a record)
        self._by_far: list[tuple[int, bytes]] | None = None
        # node ID -> records << 48 | bytes, one int each (a list and two ints cost ~100 bytes more)
        self._origin: dict[bytes, int] = {}
        self._prefix: dict[str, int] = NO_ENTRIES  # a dict from the first record a non-exempt peer stores
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, key: bytes) -> bool:
        return key in self._meta

    def get(self, key: bytes) -> Meta | None:
        return self._meta.get(key)

    def add(self, key: bytes, expires: float, own: bool, size: int, origin: bytes = b"", prefix: str = "",
            now: float = 0.0) -> None:
        """Index a record (replacing what was indexed for that key)."""
        self.remove(key)
        r = self._records.get(key) if self._records is not None else None
        if r is not None and r.expires == expires and r.own == own and r.origin == origin and r.prefix == prefix \
                and len(r.blob) == size:
            m = r
            m.touched = now
        else:
            m = Meta(expires, own, size, origin, prefix, now)
        self._meta[key] = m
        self.bytes += size
        if self._by_expiry is not None:
            heapq.heappush(self._by_expiry, (expires, key))
        if not own and self._by_far is not None:
            heapq.heappush(self._by_far, (-self.dist(key), key))
        if prefix and self._prefix is NO_ENTRIES:
            self._prefix = {}
        for table, k in ((self._origin, origin), (self._prefix, prefix)):
            if k:
                table[k] = table.get(k, 0) + _ONE + size
        self._compact()

    def remove(self, key: bytes) -> Meta | None:
        m = self._meta.pop(key, None)
        if m is None:
            return None
        self.bytes -= m.size
        for table, k in ((self._origin, m.origin), (self._prefix, m.prefix)):
            if k:
                u = table[k] - _ONE - m.size
                if u < _ONE:
                    del table[k]
                else:
                    table[k] = u
        return m

    def dist(self, key: bytes) -> int:
        """XOR distance of ``key`` from this node's ID (computed, not kept: a 256-bit int is 60 bytes a record)."""
        return int.from_bytes(key, "big") ^ self.own_key

    def usage(self, origin: bytes = b"", prefix: str = "") -> tuple[int, int, int, int]:
        """(records, bytes) held for this sender, then for its prefix."""
        o = self._origin.get(origin, 0) if origin else 0
        p = self._prefix.get(prefix, 0) if prefix else 0
        return o >> 48, o & _BYTES, p >> 48, p & _BYTES

    def _expiry_heap(self) -> list[tuple[float, bytes]]:
        h = self._by_expiry
        if h is None:
            h = self._by_expiry = [(m.expires, k) for k, m in self._meta.items()]
            heapq.heapify(h)
        return h

    def next_expiry(self) -> float | None:
        h = self._expiry_heap()
        while h:
            exp, key = h[0]
            m = self._meta.get(key)
            if m is not None and m.expires == exp:
                return exp
            heapq.heappop(h)
        return None

    def pop_expired(self, now: float, limit: int | None = None) -> list[bytes]:
        """Keys whose expiry has passed, removed from the index (the caller deletes them)."""
        out: list[bytes] = []
        if self._by_expiry is None and limit is None:
            # The maintenance pass, with no heap: one read of each record's expiry (earliest first, as
            # the heap would give them).
            for _exp, key in sorted((m.expires, k) for k, m in self._meta.items() if m.expires <= now):
                self.remove(key)
                out.append(key)
            return out
        h = self._expiry_heap()
        while h and h[0][0] <= now and (limit is None or len(out) < limit):
            exp, key = heapq.heappop(h)
            m = self._meta.get(key)
            if m is not None and m.expires == exp:
                self.remove(key)
                out.append(key)
        return out

    def farthest(self) -> tuple[bytes, int] | None:
        """The record (not our own) whose key is farthest from our ID, and that distance."""
        h = self._by_far
        if h is None:
            h = self._by_far = [(-self.dist(k), k) for k, m in self._meta.items() if not m.own]
            heapq.heapify(h)
        while h:
            neg, key = h[0]
            m = self._meta.get(key)
            if m is not None and not m.own:  # (a key's distance never changes: no stale distances)
                return key, -neg
            heapq.heappop(h)
        return None

    def _compact(self) -> None:
        n = len(self._meta)
        if self._by_expiry is not None and len(self._by_expiry) > 2 * n + 1024:
            self._by_expiry = [(m.expires, k) for k, m in self._meta.items()]
            heapq.heapify(self._by_expiry)
        if self._by_far is not None and len(self._by_far) > 2 * n + 1024:
            self._by_far = [(-self.dist(k), k) for k, m in self._meta.items() if not m.own]
            heapq.heapify(self._by_far)

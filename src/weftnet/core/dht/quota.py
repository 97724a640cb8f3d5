"""The record store's index in memory: eviction order, expiry order and per-source quotas.

The DHT asks it, for every STORE, four questions that must not cost a scan
of the store (a full store of 100,000 records made each STORE take 0.4 s
before; docs/security.md, item 3):

* how much does this sender (node ID) and its address prefix hold? — two
  dict lookups (counts and bytes, kept up to date on every add and remove)
  once the index holds more than :data:`SMALL` records; up to that, a read
  of those few entries (a bounded cost per STORE, and no dict entry and int
  a source: ~75 bytes a record);
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

A record's entry here is one bytes object (core/dht/store.py: its expiry, last touch, size, flags,
origin and prefix). With a :class:`~weftnet.core.dht.store.MemoryStore` the index indexes the store's
own dict, whose entries also carry the blob: one dict entry and one object a record, and the store's
``put`` and ``delete`` go through :meth:`StoreIndex._put` and :meth:`StoreIndex.remove`, so the
accounting always sees the record a put replaces.
"""

from __future__ import annotations

import heapq

from weftnet.core.dht.store import (
    HEAD,
    OLEN_AT,
    MemoryStore,
    entry_expires,
    entry_fields,
    entry_matches,
    entry_origin,
    entry_own,
    entry_prefix,
    entry_prefix_is,
    entry_size,
    entry_touched,
    entry_with_touched,
    pack_entry,
)
from weftnet.core.limits import NO_ENTRIES

__all__ = ["StoreIndex", "Meta", "SMALL"]

#: Per-source usage is one int: records in the bits from 48 up, bytes below (a store holds far less than 2**48 bytes).
_ONE = 1 << 48
_BYTES = _ONE - 1
#: Up to this many records held, usage per peer and prefix is read from the entries; past it, two dicts
#: keep it (and keep it from then on).
SMALL = 64


class Meta:
    """A record's entry in the index, as :meth:`StoreIndex.get` found it (its fields are read from the
    entry when asked). Setting ``touched`` writes it back to the index (replication skips a record
    touched within the interval)."""

    __slots__ = ("_e", "_index", "_key")

    def __init__(self, entry: bytes, index: "StoreIndex | None" = None, key: bytes = b""):
        self._e = entry
        self._index = index
        self._key = key

    @property
    def expires(self) -> float:
        return entry_expires(self._e)

    @property
    def own(self) -> bool:
        return entry_own(self._e)

    @property
    def size(self) -> int:
        return entry_size(self._e)

    @property
    def origin(self) -> bytes:
        """Node ID of the peer that stored it (b"" for our own records)."""
        return entry_origin(self._e)

    @property
    def prefix(self) -> str:
        """That peer's address prefix ("" if exempt or own)."""
        return entry_prefix(self._e)

    @property
    def touched(self) -> float:
        """Last time a peer stored or offered it (replication skips it then)."""
        return entry_touched(self._e)

    @touched.setter
    def touched(self, now: float) -> None:
        e = self._index.touch(self._key, now) if self._index is not None else None
        self._e = entry_with_touched(self._e, now) if e is None else e

    def __repr__(self) -> str:
        return (f"Meta(expires={self.expires!r}, own={self.own!r}, size={self.size!r}, origin={self.origin!r}, "
                f"prefix={self.prefix!r}, touched={self.touched!r})")


class StoreIndex:
    __slots__ = ("own_key", "_meta", "_by_expiry", "_by_far", "_origin", "_prefix", "bytes", "_shared")

    def __init__(self, own_key: int, store=None):
        self.own_key = own_key
        # (expires, key); None until an eviction asks for the oldest expired record (_expiry_heap)
        self._by_expiry: list[tuple[float, bytes]] | None = None
        # (-distance, key), records not our own; None until the first eviction asks for it (a store
        # that never fills never needs it, and an entry costs about 120 bytes a record)
        self._by_far: list[tuple[int, bytes]] | None = None
        # node ID -> records << 48 | bytes, one int each; None while the index holds at most SMALL
        # records (usage is then read from the entries)
        self._origin: dict[bytes, int] | None = None
        # the same by address prefix: NO_ENTRIES until a non-exempt one is counted in it
        self._prefix: dict[str, int] = NO_ENTRIES
        self.bytes = 0
        # key -> entry; with an in-memory store, the store's own dict (its entries carry the blob too)
        self._shared = isinstance(store, MemoryStore)
        if self._shared:
            store._index = self  # (the newest index of a store is the one its put and delete go through)
            self._meta: dict[bytes, bytes] = store._records
            for e in self._meta.values():
                self.bytes += entry_size(e)
            if len(self._meta) > SMALL:
                self._tally()
        else:
            self._meta = {}

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, key: bytes) -> bool:
        return key in self._meta

    def get(self, key: bytes) -> Meta | None:
        e = self._meta.get(key)
        return None if e is None else Meta(e, self, key)

    def touch(self, key: bytes, now: float) -> bytes | None:
        """A peer stored or offered the record ``key`` at ``now`` (its new entry, None if not held)."""
        e = self._meta.get(key)
        if e is not None:
            e = self._meta[key] = entry_with_touched(e, now)
        return e

    def add(self, key: bytes, expires: float, own: bool, size: int, origin: bytes = b"", prefix: str = "",
            now: float = 0.0) -> None:
        """Index a record (replacing what was indexed for that key), touched at ``now``. With a
        MemoryStore, the record it holds for ``key`` (put there first; ``size`` is its blob's)."""
        if not self._shared:
            self._put(key, pack_entry(expires, now, 0.0, None, size, own, origin, prefix))
            return
        e = self._meta.get(key)
        if e is None:
            raise ValueError("an index over a MemoryStore indexes the records it holds: put the record first")
        if entry_matches(e, expires, own, size, origin, prefix):  # (as the store's put just wrote it)
            if entry_touched(e) != now:
                self._meta[key] = entry_with_touched(e, now)
            return
        _ex, _touched, stored_at, seq, esize, _own, _origin, _prefix, at = entry_fields(e)
        if esize != size:
            raise ValueError(f"the record held is {esize} bytes, not {size}")
        self._put(key, pack_entry(expires, now, stored_at, seq, size, own, origin, prefix, e[at:]))

    def _put(self, key: bytes, e: bytes) -> None:
        """Hold entry ``e`` for ``key`` (what was held for it accounted out first)."""
        meta = self._meta
        if key in meta:
            self._drop(key)
        meta[key] = e
        self.bytes += entry_size(e)
        if self._origin is not None:
            self._count(e, 1)
        elif len(meta) > SMALL:
            self._tally()
        if self._by_expiry is not None or self._by_far is not None:
            if self._by_expiry is not None:
                heapq.heappush(self._by_expiry, (entry_expires(e), key))
            if self._by_far is not None and not entry_own(e):
                heapq.heappush(self._by_far, (-self.dist(key), key))
            self._compact()

    def remove(self, key: bytes) -> Meta | None:
        """Drop ``key`` from the index (with a MemoryStore, from the store too)."""
        e = self._drop(key)
        return None if e is None else Meta(e)

    def _drop(self, key: bytes) -> bytes | None:
        e = self._meta.pop(key, None)
        if e is not None:
            self.bytes -= entry_size(e)
            if self._origin is not None:
                self._count(e, -1)
        return e

    def _count(self, e: bytes, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) entry ``e`` in the usage by origin and by prefix."""
        d = sign * (_ONE + entry_size(e))
        origin = entry_origin(e)
        if origin:
            u = self._origin.get(origin, 0) + d
            if u < _ONE:
                del self._origin[origin]
            else:
                self._origin[origin] = u
        prefix = entry_prefix(e)
        if prefix:
            if self._prefix is NO_ENTRIES:
                self._prefix = {}
            u = self._prefix.get(prefix, 0) + d
            if u < _ONE:
                del self._prefix[prefix]
            else:
                self._prefix[prefix] = u

    def _tally(self) -> None:
        """From now on, keep the usage by origin and by prefix in dicts (built from the entries)."""
        self._origin, self._prefix = {}, NO_ENTRIES
        for e in self._meta.values():
            self._count(e, 1)

    def dist(self, key: bytes) -> int:
        """XOR distance of ``key`` from this node's ID (computed, not kept: a 256-bit int is 60 bytes a record)."""
        return int.from_bytes(key, "big") ^ self.own_key

    def usage(self, origin: bytes = b"", prefix: str = "") -> tuple[int, int, int, int]:
        """(records, bytes) held for this sender, then for its prefix."""
        if self._origin is None:  # at most SMALL entries: read them
            n_o = b_o = n_p = b_p = 0
            if origin:
                olen = len(origin)
                for e in [e for e in self._meta.values() if e.startswith(origin, HEAD)]:
                    if e[OLEN_AT] == olen:
                        n_o += 1
                        b_o += entry_size(e)
            if prefix:
                pb = prefix.encode("utf-8", "surrogatepass")
                for e in [e for e in self._meta.values() if entry_prefix_is(e, pb)]:
                    n_p += 1
                    b_p += entry_size(e)
            return n_o, b_o, n_p, b_p
        o = self._origin.get(origin, 0) if origin else 0
        p = self._prefix.get(prefix, 0) if prefix else 0
        return o >> 48, o & _BYTES, p >> 48, p & _BYTES

    def _expiry_heap(self) -> list[tuple[float, bytes]]:
        h = self._by_expiry
        if h is None:
            h = self._by_expiry = [(entry_expires(e), k) for k, e in self._meta.items()]
            heapq.heapify(h)
        return h

    def next_expiry(self) -> float | None:
        h = self._expiry_heap()
        while h:
            exp, key = h[0]
            e = self._meta.get(key)
            if e is not None and entry_expires(e) == exp:
                return exp
            heapq.heappop(h)
        return None

    def pop_expired(self, now: float, limit: int | None = None) -> list[bytes]:
        """Keys whose expiry has passed, removed from the index (the caller deletes them)."""
        out: list[bytes] = []
        if self._by_expiry is None and limit is None:
            # The maintenance pass, with no heap: one read of each record's expiry (earliest first, as
            # the heap would give them).
            for _exp, key in sorted((x, k) for k, e in self._meta.items() if (x := entry_expires(e)) <= now):
                self._drop(key)
                out.append(key)
            return out
        h = self._expiry_heap()
        while h and h[0][0] <= now and (limit is None or len(out) < limit):
            exp, key = heapq.heappop(h)
            e = self._meta.get(key)
            if e is not None and entry_expires(e) == exp:
                self._drop(key)
                out.append(key)
        return out

    def farthest(self) -> tuple[bytes, int] | None:
        """The record (not our own) whose key is farthest from our ID, and that distance."""
        h = self._by_far
        if h is None:
            h = self._by_far = [(-self.dist(k), k) for k, e in self._meta.items() if not entry_own(e)]
            heapq.heapify(h)
        while h:
            neg, key = h[0]
            e = self._meta.get(key)
            if e is not None and not entry_own(e):  # (a key's distance never changes: no stale distances)
                return key, -neg
            heapq.heappop(h)
        return None

    def _compact(self) -> None:
        n = len(self._meta)
        if self._by_expiry is not None and len(self._by_expiry) > 2 * n + 1024:
            self._by_expiry = [(entry_expires(e), k) for k, e in self._meta.items()]
            heapq.heapify(self._by_expiry)
        if self._by_far is not None and len(self._by_far) > 2 * n + 1024:
            self._by_far = [(-self.dist(k), k) for k, e in self._meta.items() if not entry_own(e)]
            heapq.heapify(self._by_far)

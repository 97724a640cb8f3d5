"""Where a node keeps the records it holds: the RecordStore protocol and an in-memory store.

The daemon uses ``weftnet.runtime.store.SqliteStore`` (same protocol, on disk);
the simulator and tests use :class:`MemoryStore`.

Eviction policy (applied by the DHT when the store is full, in O(log n)
through its in-memory index, core/dht/quota.py): expired records go first;
then, among records this node did not publish itself, the one whose key is
farthest (XOR) from this node's ID — the node least responsible for it — but
only if the newcomer is closer than it (else the newcomer is refused). A
node's own published records are never evicted for a peer's.

A store may raise :class:`~weftnet.errors.StorageError` from ``put`` or
``delete`` (a full disk); the DHT counts it and answers the STORE with a
refusal, and nothing else stops.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    from weftnet.core.dht.quota import StoreIndex

__all__ = ["StoredRecord", "RecordStore", "MemoryStore"]

# -- a record's entry: its metadata and its blob in one bytes object --------------------------------
#
# What a record held in memory cost was set by its objects, not its bytes: a StoredRecord (104 bytes),
# its blob, its expiry and timestamps (a float each, 24), the node ID of the peer that stored it (65),
# and the index's own entry for it in a second dict (bench/results/dmem17). An entry is one bytes
# object: a fixed head (expires, touched, stored_at, seq, size, flags, the lengths of origin and
# prefix), then the origin, the prefix (UTF-8) and the blob. A MemoryStore keeps the entries, in the
# one dict its index (core/dht/quota.py) also indexes; for a store that is not in memory the index
# keeps the same head without the blob.
_HEAD = struct.Struct("<dddQIBBH")
HEAD = _HEAD.size  # 40 bytes
_TOUCHED_AT, _SIZE_AT, _FLAGS_AT, OLEN_AT, _PLEN_AT = 8, 32, 36, 37, 38
_OWN, _HAS_SEQ = 1, 2
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


def pack_entry(expires: float, touched: float, stored_at: float, seq: int | None, size: int, own: bool,
               origin: bytes, prefix: str, blob: bytes = b"") -> bytes:
    """A record's entry. Raises ValueError for a field out of range (an origin over 255 bytes, a seq
    outside 64 bits): nothing the DHT makes (node IDs are 32 bytes, seq a u64 on the wire)."""
    p = prefix.encode("utf-8", "surrogatepass") if prefix else b""
    try:
        head = _HEAD.pack(expires, touched, stored_at, 0 if seq is None else seq, size,
                          (_OWN if own else 0) | (0 if seq is None else _HAS_SEQ), len(origin), len(p))
    except struct.error as exc:
        raise ValueError(f"record metadata out of range: {exc}") from None
    return b"".join((head, origin, p, blob))


def entry_expires(e: bytes) -> float:
    return _F64.unpack_from(e)[0]


def entry_touched(e: bytes) -> float:
    return _F64.unpack_from(e, _TOUCHED_AT)[0]


def entry_size(e: bytes) -> int:
    return _U32.unpack_from(e, _SIZE_AT)[0]


def entry_own(e: bytes) -> bool:
    return bool(e[_FLAGS_AT] & _OWN)


def entry_prefix_is(e: bytes, prefix: bytes) -> bool:
    """``prefix`` encoded (UTF-8)."""
    return _U16.unpack_from(e, _PLEN_AT)[0] == len(prefix) and e.startswith(prefix, HEAD + e[OLEN_AT])


def entry_origin(e: bytes) -> bytes:
    return e[HEAD:HEAD + e[OLEN_AT]]


def entry_prefix(e: bytes) -> str:
    plen = _U16.unpack_from(e, _PLEN_AT)[0]
    if not plen:
        return ""
    o = HEAD + e[OLEN_AT]
    return e[o:o + plen].decode("utf-8", "surrogatepass")


def entry_fields(e: bytes) -> tuple[float, float, float, int | None, int, bool, bytes, str, int]:
    """(expires, touched, stored_at, seq, size, own, origin, prefix, where the blob starts)."""
    expires, touched, stored_at, seq, size, flags, olen, plen = _HEAD.unpack_from(e)
    o = HEAD + olen
    end = o + plen
    return (expires, touched, stored_at, seq if flags & _HAS_SEQ else None, size, bool(flags & _OWN),
            e[HEAD:o] if olen else b"", e[o:end].decode("utf-8", "surrogatepass") if plen else "", end)


def entry_matches(e: bytes, expires: float, own: bool, size: int, origin: bytes, prefix: str) -> bool:
    """Whether entry ``e`` holds these fields (all but the times and seq)."""
    ex, _touched, _stored_at, _seq, sz, flags, olen, plen = _HEAD.unpack_from(e)
    if ex != expires or sz != size or bool(flags & _OWN) != bool(own) or olen != len(origin) \
            or (olen and not e.startswith(origin, HEAD)):
        return False
    if not prefix:
        return not plen
    p = prefix.encode("utf-8", "surrogatepass")
    return plen == len(p) and e.startswith(p, HEAD + olen)


def entry_with_touched(e: bytes, touched: float) -> bytes:
    """The same entry, ``touched`` replaced."""
    return _F64.pack(touched).join((e[:_TOUCHED_AT], e[_TOUCHED_AT + 8:]))


class StoredRecord:
    """A record as a store holds it: its key, its blob (the encoded record, exactly as validated), when
    it expires, whether this node published it (and republishes it), its seq (mutable records), when
    it was stored, the node ID of the peer that stored it here and that peer's address prefix ("" if
    exempt; both for quota accounting), and when a peer last stored or offered it (the index's
    ``Meta.touched``; ``stored_at`` unless given; not compared).

    It is its entry (above) and key: the fields are read from the entry when asked, and setting one
    makes a new entry (then ``put`` it). A MemoryStore keeps the entry a ``put`` gives it and hands out
    a StoredRecord around it, so a record in memory is one bytes object."""

    __slots__ = ("key", "_e")
    __hash__ = None  # type: ignore[assignment]  (mutable, as the dataclass it was)

    def __init__(self, key: bytes, blob: bytes, expires: float, own: bool, seq: int | None = None,
                 stored_at: float = 0.0, origin: bytes = b"", prefix: str = "", touched: float | None = None):
        self.key = key
        self._e = pack_entry(expires, stored_at if touched is None else touched, stored_at, seq, len(blob), own,
                             origin, prefix, blob)

    @classmethod
    def of_entry(cls, key: bytes, entry: bytes) -> "StoredRecord":
        r = cls.__new__(cls)
        r.key = key
        r._e = entry
        return r

    def _fields(self) -> tuple:
        expires, touched, stored_at, seq, _size, own, origin, prefix, at = entry_fields(self._e)
        return (self._e[at:], expires, own, seq, stored_at, origin, prefix, touched)

    def _set(self, i: int, value) -> None:
        f = list(self._fields())
        f[i] = value
        blob, expires, own, seq, stored_at, origin, prefix, touched = f
        self._e = pack_entry(expires, touched, stored_at, seq, len(blob), own, origin, prefix, blob)

    @property
    def blob(self) -> bytes:
        e = self._e
        return e[HEAD + e[OLEN_AT] + _U16.unpack_from(e, _PLEN_AT)[0]:]

    @blob.setter
    def blob(self, value: bytes) -> None:
        self._set(0, value)

    @property
    def expires(self) -> float:
        return _F64.unpack_from(self._e)[0]

    @expires.setter
    def expires(self, value: float) -> None:
        self._e = _F64.pack(value) + self._e[8:]

    @property
    def own(self) -> bool:
        return bool(self._e[_FLAGS_AT] & _OWN)

    @own.setter
    def own(self, value: bool) -> None:
        self._set(2, bool(value))

    @property
    def seq(self) -> int | None:
        e = self._e
        return _HEAD.unpack_from(e)[3] if e[_FLAGS_AT] & _HAS_SEQ else None

    @seq.setter
    def seq(self, value: int | None) -> None:
        self._set(3, value)

    @property
    def stored_at(self) -> float:
        return _F64.unpack_from(self._e, 16)[0]

    @stored_at.setter
    def stored_at(self, value: float) -> None:
        self._set(4, value)

    @property
    def origin(self) -> bytes:
        return entry_origin(self._e)

    @origin.setter
    def origin(self, value: bytes) -> None:
        self._set(5, value)

    @property
    def prefix(self) -> str:
        return entry_prefix(self._e)

    @prefix.setter
    def prefix(self, value: str) -> None:
        self._set(6, value)

    @property
    def touched(self) -> float:
        return entry_touched(self._e)

    @touched.setter
    def touched(self, value: float) -> None:
        self._e = entry_with_touched(self._e, value)

    @property
    def size(self) -> int:
        return entry_size(self._e)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.key == other.key and self._fields()[:-1] == other._fields()[:-1]

    def __repr__(self) -> str:
        blob, expires, own, seq, stored_at, origin, prefix, _touched = self._fields()
        return (f"StoredRecord(key={self.key!r}, blob={blob!r}, expires={expires!r}, own={own!r}, seq={seq!r}, "
                f"stored_at={stored_at!r}, origin={origin!r}, prefix={prefix!r})")


class RecordStore(Protocol):
    def get(self, key: bytes) -> StoredRecord | None: ...

    def put(self, record: StoredRecord) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def __len__(self) -> int: ...

    def records(self) -> Iterator[StoredRecord]: ...


class MemoryStore:
    """Records in memory: one dict, key -> entry (above). The node's :class:`StoreIndex` indexes the
    same dict (no second entry a record), so a ``put`` or ``delete`` goes through that index's
    accounting once it is attached; ``get`` and ``records`` hand out new StoredRecords around the
    entries."""

    __slots__ = ("_records", "_index")

    def __init__(self) -> None:
        self._records: dict[bytes, bytes] = {}
        self._index: StoreIndex | None = None  # set by the StoreIndex that indexes this store

    def get(self, key: bytes) -> StoredRecord | None:
        e = self._records.get(key)
        return None if e is None else StoredRecord.of_entry(key, e)

    def put(self, record: StoredRecord) -> None:
        if self._index is None:
            self._records[record.key] = record._e
        else:
            self._index._put(record.key, record._e)

    def delete(self, key: bytes) -> None:
        if self._index is None:
            self._records.pop(key, None)
        else:
            self._index._drop(key)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> Iterator[StoredRecord]:
        recs = self._records
        return iter([StoredRecord.of_entry(k, recs[k]) for k in sorted(recs)])

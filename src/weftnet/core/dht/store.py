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

from dataclasses import dataclass, field
from typing import Iterator, Protocol

__all__ = ["StoredRecord", "RecordStore", "MemoryStore"]


@dataclass(slots=True)  # one per record held
class StoredRecord:
    key: bytes
    blob: bytes  # the encoded record, exactly as validated
    expires: float
    own: bool  # published by this node (republished by it)
    seq: int | None = None
    stored_at: float = 0.0
    origin: bytes = b""  # node ID of the peer that stored it here (quota accounting)
    prefix: str = ""  # that peer's address prefix, "" if exempt
    #: Last time a peer stored or offered it: the index's ``Meta.touched``. A MemoryStore's record is
    #: its own index entry (core/dht/quota.py): one object a record instead of two (~80 bytes).
    touched: float = field(default=0.0, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.blob)


class RecordStore(Protocol):
    def get(self, key: bytes) -> StoredRecord | None: ...

    def put(self, record: StoredRecord) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def __len__(self) -> int: ...

    def records(self) -> Iterator[StoredRecord]: ...


class MemoryStore:
    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[bytes, StoredRecord] = {}

    def get(self, key: bytes) -> StoredRecord | None:
        return self._records.get(key)

    def put(self, record: StoredRecord) -> None:
        self._records[record.key] = record

    def delete(self, key: bytes) -> None:
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> Iterator[StoredRecord]:
        return iter(sorted(self._records.values(), key=lambda r: r.key))

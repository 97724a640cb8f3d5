"""Putting pieces of a payload back together, under bounds a hostile sender cannot stretch.

Used for transport fragments (core/transport.py, pieces of one sealed
payload) and for offloaded VPN packets (core/vpn.py, chunks of one
superpacket). Sans-IO: time is an argument.

Bounds: at most ``max_entries`` payloads in progress (when a new one starts,
the oldest are dropped first: every expired one, and then as many as needed
to make room); each must be complete within ``timeout`` of its first piece;
pieces of one payload adding up to more than ``max_bytes`` drop it. A second
copy of a piece is ignored; pieces announcing a different count drop the
payload.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

__all__ = ["Reassembly", "REFUSED"]

#: ``Reassembly.add`` result: the piece contradicted its payload or made it too long; the payload is dropped.
REFUSED: Any = object()


class Reassembly:
    """Payloads in progress, keyed by the caller (sender and packet/counter)."""

    __slots__ = ("max_entries", "timeout", "max_bytes", "on_evict", "_table")

    def __init__(self, max_entries: int, timeout: float, max_bytes: int,
                 on_evict: Callable[[Hashable], None]):
        self.max_entries = max_entries
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.on_evict = on_evict  # called with the key of each payload dropped unfinished
        # key -> [deadline, count, pieces received, pieces, bytes]; dict order is start order
        self._table: dict[Hashable, list] = {}

    def __len__(self) -> int:
        return len(self._table)

    def add(self, key: Hashable, index: int, count: int, piece: bytes, now: float) -> bytes | None:
        """Take piece ``index`` of ``count``: the whole payload once complete, None while
        pieces are missing, or :data:`REFUSED`. The caller has checked ``index < count``."""
        table = self._table
        entry = table.get(key)
        if entry is None:
            while table:  # oldest first: drop the expired, and the oldest beyond the bound
                k, e = next(iter(table.items()))
                if e[0] > now and len(table) < self.max_entries:
                    break
                del table[k]
                self.on_evict(k)
            entry = table[key] = [now + self.timeout, count, 0, [None] * count, 0]
        elif entry[1] != count:
            del table[key]
            return REFUSED
        parts = entry[3]
        if parts[index] is None:
            entry[4] += len(piece)
            if entry[4] > self.max_bytes:
                del table[key]
                return REFUSED
            parts[index] = piece
            entry[2] += 1
        if entry[2] < count:
            return None
        del table[key]
        return b"".join(parts)

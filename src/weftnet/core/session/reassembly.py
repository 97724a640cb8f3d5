"""Putting pieces of a payload back together, under bounds a hostile sender cannot stretch.

Used for transport fragments (core/transport.py, pieces of one sealed
payload) and for offloaded VPN packets (core/vpn.py, chunks of one
superpacket). Sans-IO: time is an argument.

Bounds: at most ``max_entries`` payloads in progress (when a new one starts,
the oldest are dropped first: every expired one, and then as many as needed
to make room), and at most ``max_per_source`` of them from one source (the
first element of the key: a peer or a session), so that one sender filling
the table pushes out its own oldest payloads, not everyone else's; each must
be complete within ``timeout`` of its first piece;
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

    __slots__ = ("max_entries", "max_per_source", "timeout", "max_bytes", "on_evict", "_table", "_sources")

    def __init__(self, max_entries: int, timeout: float, max_bytes: int,
                 on_evict: Callable[[Hashable], None], max_per_source: int | None = None):
        self.max_entries = max_entries
        # A quarter of the table by default: it takes four senders at their quota to fill it.
        self.max_per_source = max_per_source or max(1, max_entries // 4)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.on_evict = on_evict  # called with the key of each payload dropped unfinished
        # key -> [deadline, count, pieces received, pieces, bytes]; dict order is start order
        self._table: dict[tuple, list] = {}
        self._sources: dict[Hashable, int] = {}  # source -> payloads of its in progress

    def _forget(self, key: tuple) -> None:
        del self._table[key]
        src = key[0]
        left = self._sources[src] - 1
        if left:
            self._sources[src] = left
        else:
            del self._sources[src]

    def in_progress(self, source: Hashable) -> int:
        """Payloads from ``source`` waiting for pieces."""
        return self._sources.get(source, 0)

    def __len__(self) -> int:
        return len(self._table)

    def add(self, key: tuple, index: int, count: int, piece: bytes, now: float) -> bytes | None:
        """Take piece ``index`` of ``count`` of the payload ``key`` (a tuple whose first
        element names the source): the whole payload once complete, None while pieces are
        missing, or :data:`REFUSED`. The caller has checked ``index < count``."""
        table = self._table
        entry = table.get(key)
        if entry is None:
            while table:  # oldest first: drop the expired, and the oldest beyond the bound
                k, e = next(iter(table.items()))
                if e[0] > now and len(table) < self.max_entries:
                    break
                self._forget(k)
                self.on_evict(k)
            src = key[0]
            if self._sources.get(src, 0) >= self.max_per_source:
                # The source is at its quota: its own oldest payload makes room.
                k = next(k for k in table if k[0] == src)
                self._forget(k)
                self.on_evict(k)
            entry = table[key] = [now + self.timeout, count, 0, [None] * count, 0]
            self._sources[src] = self._sources.get(src, 0) + 1
        elif entry[1] != count:
            self._forget(key)
            return REFUSED
        parts = entry[3]
        if parts[index] is None:
            entry[4] += len(piece)
            if entry[4] > self.max_bytes:
                self._forget(key)
                return REFUSED
            parts[index] = piece
            entry[2] += 1
        if entry[2] < count:
            return None
        self._forget(key)
        return b"".join(parts)

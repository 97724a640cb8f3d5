"""VPN labels this PE hands out (RFC 4364 section 4.3.2; values per RFC 3032).

A remote PE puts the label we advertised with a route in front of every
packet it sends us for that route; the label alone says which VRF (and, in
per-prefix mode, which route) the packet belongs to. Labels 0-15 are
reserved (RFC 3032 section 2.1), so the pool is a configurable range inside
16..2^20-1. The allocator is deterministic (lowest free label first), so a
restarted PE with the same configuration advertises the same labels.
"""

from __future__ import annotations

import heapq

from weftnet.errors import NetworkError

__all__ = ["LabelAllocator", "MIN_LABEL", "MAX_LABEL"]

MIN_LABEL = 16
MAX_LABEL = (1 << 20) - 1


class LabelAllocator:
    """Labels in ``[low, high]``: ``allocate()`` the lowest free, ``reserve(n)`` a chosen one, ``free(n)``."""

    def __init__(self, low: int = MIN_LABEL, high: int = MAX_LABEL):
        if not MIN_LABEL <= low <= high <= MAX_LABEL:
            raise NetworkError(f"label range {low}-{high} must lie inside {MIN_LABEL}-{MAX_LABEL}")
        self.low, self.high = low, high
        self._next = low  # every label >= _next is free unless in _used
        self._freed: list[int] = []  # a heap of freed labels below _next
        self._used: set[int] = set()

    def __len__(self) -> int:
        return len(self._used)

    @property
    def capacity(self) -> int:
        return self.high - self.low + 1

    def allocate(self) -> int | None:
        """The lowest free label, or None when the range is exhausted."""
        while self._freed:
            n = heapq.heappop(self._freed)
            if n not in self._used:
                self._used.add(n)
                return n
        while self._next <= self.high:
            n = self._next
            self._next += 1
            if n not in self._used:
                self._used.add(n)
                return n
        return None

    def reserve(self, label: int) -> None:
        """Take one chosen label (a VRF configured with a fixed label)."""
        if not self.low <= label <= self.high:
            raise NetworkError(f"label {label} is outside the label range {self.low}-{self.high}")
        if label in self._used:
            raise NetworkError(f"label {label} is already in use")
        self._used.add(label)

    def free(self, label: int) -> None:
        if label in self._used:
            self._used.discard(label)
            if label < self._next:
                heapq.heappush(self._freed, label)

    def in_use(self, label: int) -> bool:
        return label in self._used

"""Sliding-window anti-replay for transport counters (RFC 6479's idea).

The window remembers the greatest counter accepted and a bitmap of the
``size`` counters below it. :meth:`check` says whether a counter *could* be
fresh and must be called before decryption; :meth:`accept` records it and
must be called only *after* the AEAD tag verified, so forged packets can
never move the window.

Counter partitions (docs/dataplane.md, "Several workers"; docs/handshake.md):
the top byte of a 64-bit counter names a *partition*. A sender that seals
one session's packets in several processes gives each its own partition, so
no counter is ever used twice under one key however the processes run; the
receiver keeps one window per partition, because partitions advance at their
own rates and one window would take a fast partition's counters as proof
that a slow one's are old. Partition 0 is the plain window (every sender
before this change, and every process that is the only one sealing: their
counters stay below 2**56). The other partitions get a window the first time
a packet of theirs passes ``accept`` — after its tag verified, so only the
peer can create one — and at most :data:`MAX_PARTITIONS` of them per
session; a counter of any further partition is refused. A counter is
checked against its own partition's window only, and each window accepts a
counter at most once: no packet is accepted twice.
"""

from __future__ import annotations

__all__ = ["ReplayWindow", "PARTITION_SHIFT", "MAX_PARTITIONS", "partition_of"]

#: A counter's partition is its top byte.
PARTITION_SHIFT = 56
_PARTITIONED = 1 << PARTITION_SHIFT
_LOW = _PARTITIONED - 1
#: Windows per session besides partition 0's (each ~300 bytes at the default size).
MAX_PARTITIONS = 16


def partition_of(counter: int) -> int:
    """The partition a 64-bit counter belongs to (0 for every counter below 2**56)."""
    return counter >> PARTITION_SHIFT


_MASKS: dict[int, int] = {}


def _mask(size: int) -> int:
    """``2**size - 1``, shared by every window of that size (a 2,048-bit int is 300 bytes)."""
    m = _MASKS.get(size)
    if m is None:
        m = _MASKS[size] = (1 << size) - 1
    return m


class ReplayWindow:
    __slots__ = ("size", "top", "bits", "_mask", "partitions")

    def __init__(self, size: int = 2048):
        self.size = size
        self.top = -1  # greatest accepted counter; -1 = none yet
        self.bits = 0  # bit i set <=> counter (top - i) accepted
        self._mask = _mask(size)
        #: Partition (1-255) -> its own window; None until a partitioned counter is accepted.
        self.partitions: dict[int, ReplayWindow] | None = None

    def check(self, counter: int) -> bool:
        if counter >= _PARTITIONED:
            return self._check_partition(counter)
        if counter > self.top:
            return True
        back = self.top - counter
        if back >= self.size:
            return False
        return not (self.bits >> back) & 1

    def accept(self, counter: int) -> bool:
        """Record a verified counter. False if it was a replay after all."""
        if counter >= _PARTITIONED:
            return self._accept_partition(counter)
        if counter > self.top:
            shift = counter - self.top
            self.bits = ((self.bits << shift) | 1) & self._mask if shift < self.size else 1
            self.top = counter
            return True
        back = self.top - counter
        if back >= self.size or (self.bits >> back) & 1:
            return False
        self.bits |= 1 << back
        return True

    def is_duplicate(self, counter: int) -> bool:
        """Whether ``counter`` was accepted already (not merely too old)."""
        w = self
        if counter >= _PARTITIONED:
            w = (self.partitions or {}).get(counter >> PARTITION_SHIFT)
            if w is None:
                return False
            counter &= _LOW
        return counter <= w.top and w.top - counter < w.size and bool((w.bits >> (w.top - counter)) & 1)

    def _check_partition(self, counter: int) -> bool:
        parts = self.partitions
        w = parts.get(counter >> PARTITION_SHIFT) if parts else None
        if w is None:  # a partition not seen yet: fresh if there is room for its window
            return parts is None or len(parts) < MAX_PARTITIONS
        return w.check(counter & _LOW)

    def _accept_partition(self, counter: int) -> bool:
        parts = self.partitions
        if parts is None:
            parts = self.partitions = {}
        p = counter >> PARTITION_SHIFT
        w = parts.get(p)
        if w is None:
            if len(parts) >= MAX_PARTITIONS:
                return False
            w = parts[p] = ReplayWindow(self.size)
        return w.accept(counter & _LOW)

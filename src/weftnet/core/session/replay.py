"""Sliding-window anti-replay for transport counters (RFC 6479's idea).

The window remembers the greatest counter accepted and a bitmap of the
``size`` counters below it. :meth:`check` says whether a counter *could* be
fresh and must be called before decryption; :meth:`accept` records it and
must be called only *after* the AEAD tag verified, so forged packets can
never move the window.
"""

from __future__ import annotations

__all__ = ["ReplayWindow"]


_MASKS: dict[int, int] = {}


def _mask(size: int) -> int:
    """``2**size - 1``, shared by every window of that size (a 2,048-bit int is 300 bytes)."""
    m = _MASKS.get(size)
    if m is None:
        m = _MASKS[size] = (1 << size) - 1
    return m


class ReplayWindow:
    __slots__ = ("size", "top", "bits", "_mask")

    def __init__(self, size: int = 2048):
        self.size = size
        self.top = -1  # greatest accepted counter; -1 = none yet
        self.bits = 0  # bit i set <=> counter (top - i) accepted
        self._mask = _mask(size)

    def check(self, counter: int) -> bool:
        if counter > self.top:
            return True
        back = self.top - counter
        if back >= self.size:
            return False
        return not (self.bits >> back) & 1

    def accept(self, counter: int) -> bool:
        """Record a verified counter. False if it was a replay after all."""
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

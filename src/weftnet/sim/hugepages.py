"""The simulator's heap in 2 MiB pages, on Linux: fewer address translations missed.

A large run reads other nodes' objects all over a heap of gigabytes (every answer names 20
contacts, each two objects somewhere else), and with 4 KiB pages nearly every such read also
misses the TLB: the page walk is memory too, and in a virtual machine a nested one. The
interpreter's allocator maps its arenas without asking for huge pages, so as the heap grows
:class:`Collapser` asks the kernel to back what it has mapped with 2 MiB pages
(``madvise(MADV_COLLAPSE)``, Linux 6.1+, which works whenever transparent huge pages are not
``never``), each 2 MiB-aligned range once. Nothing a run computes depends on it (the same
objects at the same addresses, only the kernel's page tables change): a run gives the same
bytes with it or without it. The copy it costs is kernel time, a few seconds for a heap of
10 GiB. Off with ``WEFTNET_SIM_HUGEPAGES=0``, and wherever the call is missing (another OS, an
older kernel, huge pages ``never``): then it does nothing.
"""

from __future__ import annotations

import os
import sys

__all__ = ["Collapser"]

_MADV_COLLAPSE = 25
_HUGE = 2 << 20
#: Heap growth (resident bytes) between two passes.
_STEP = 64 << 20
#: The 2 MiB ranges already asked for (by address), for the whole process: a sweep runs many
#: simulations one after another in one heap.
_DONE: set[int] = set()


def _madvise():
    if not sys.platform.startswith("linux") or os.environ.get("WEFTNET_SIM_HUGEPAGES", "1") == "0":
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            if "[never]" in f.read():
                return None
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError, ImportError):
        return None


class Collapser:
    """Call :meth:`maybe` now and then (the simulator does once per virtual second): when the
    process's resident memory has grown by 64 MiB since the last pass, the anonymous
    read-write mappings are collapsed into huge pages, each aligned 2 MiB range once a process."""

    __slots__ = ("_madvise", "_next", "passes", "collapsed")

    def __init__(self) -> None:
        self._madvise = _madvise()
        self._next = 0
        self.passes = 0
        self.collapsed = 0  # bytes

    def maybe(self) -> None:
        if self._madvise is None:
            return
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            self._madvise = None
            return
        if rss < self._next:
            return
        self._next = rss + _STEP
        self.collapse()

    def collapse(self) -> None:
        try:
            with open("/proc/self/maps") as f:
                maps = f.read().splitlines()
        except OSError:
            self._madvise = None
            return
        self.passes += 1
        done, madvise = _DONE, self._madvise
        for line in maps:
            fields = line.split()
            if fields[1] != "rw-p" or (len(fields) > 5 and fields[5] != "[heap]"):
                continue  # only anonymous private memory (the allocator's), not files or stacks
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            for a in range((lo + _HUGE - 1) & ~(_HUGE - 1), hi & ~(_HUGE - 1), _HUGE):
                if a in done:
                    continue
                done.add(a)
                if madvise(a, _HUGE, _MADV_COLLAPSE) == 0:
                    self.collapsed += _HUGE

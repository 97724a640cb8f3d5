"""Keep the C heap's free top instead of handing it back to the kernel after every packet.

The data plane allocates and frees buffers of up to 64 KiB many thousand times a
second (a TUN read, a joined run of fragments, a decrypted payload). glibc's
``free`` gives the top of the heap back to the kernel (``brk``) whenever more
than ``M_TRIM_THRESHOLD`` bytes (128 KiB by default) are free there, and the
next buffer takes it again: a page fault and a zeroed page per 4 KiB, every
time. Profiled on the bench's receiving daemon, that was 6-8% of its CPU
(``exc_page_fault``, ``clear_page_erms``, ``unmap_page_range``). A threshold
of a few MiB keeps that much free memory in the process instead
(docs/dataplane.md, "CPU per GB").
"""

from __future__ import annotations

import ctypes

__all__ = ["keep_heap", "TRIM_THRESHOLD"]

_M_TRIM_THRESHOLD = -1  # malloc.h
#: Free memory the heap keeps at its top before giving any back.
TRIM_THRESHOLD = 8 << 20


def keep_heap(trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's trim threshold (``mallopt(M_TRIM_THRESHOLD)``); False where there is no
    glibc ``mallopt`` (musl, other systems) or it refuses: nothing else changes then."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1

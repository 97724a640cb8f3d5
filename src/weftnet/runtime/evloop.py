"""How ``weft up``'s packet path is scheduled: its event loop and its kernel time slice.

**The event loop**: uvloop where it is installed, else asyncio's own.

Each ping through a tunnel wakes the daemons four times, and every wake-up runs
the loop's own dispatch (select, the ready queue, a handle per callback) before
the packet's callback. asyncio does that in Python; uvloop (libuv) does it in C.
Measured on this project's bench machine with kernel tracepoints
(docs/dataplane.md, "Latency"): from the moment ``epoll_wait`` returns to the
callback's first system call, a median of 32-50 µs with asyncio's loop against
14-22 µs with uvloop, and 10-15% less CPU per ping. The daemon works the same
on either; ``[dataplane] event_loop`` picks one ("auto": uvloop if it can be
imported).

**The time slice** (``[dataplane] sched_slice_us``, :func:`request_slice`): on a
busy machine a daemon woken by a packet often finds its core running another
process. Linux's EEVDF scheduler (6.6+) lets the woken task in at once only if
its virtual deadline is earlier than the running one's; otherwise it waits,
here for up to a 4 ms tick: the 4 ms p99 (at times p90) of a ping. Since
Linux 6.12 a normal task may ask for a shorter slice (``sched_setattr`` with
``sched_runtime``, 0.1-100 ms, no privilege needed): its deadlines come
sooner, so a wake-up preempts sooner, and it is itself preempted sooner when
it runs long. Its share of the CPU (its weight, its nice value) is unchanged.
The daemon asks for 100 µs for its main thread (data-plane workers inherit it
when forked); an older kernel ignores the request, and the status says so. In
the measurements those 4 ms waits became rarer, not gone (p99 median of eight
rounds 4.31 against 4.67 ms).

**Only while the CPUs are contended** (``[dataplane] sched_slice_pressure``,
:class:`SliceFollower`): on an idle machine the short slice cost ~90 µs of
ping p50 (0.694 against 0.605 ms, eight interleaved rounds), at load 9 it
halved it (0.980 against 2.080). The kernel's pressure stall information
says which machine this is: ``/proc/pressure/cpu``'s "some avg10", the share
of the last 10 s in which some runnable task waited for a CPU. The daemon
reads it every :data:`PRESSURE_INTERVAL` seconds and asks for the short slice
while it is at or above the threshold (off again below half of it), the
kernel's default otherwise. Without that file (a kernel without PSI, or
``psi=0``) it keeps the short slice, as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from typing import Any, Callable, Coroutine

from weftnet.errors import ConfigError

__all__ = ["CHOICES", "loop_factory", "loop_name", "run", "request_slice", "current_slice", "cpu_pressure",
           "SliceFollower", "PRESSURE_INTERVAL"]

CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """(name of the loop, factory) for ``choice``; the factory is None for asyncio's default loop.

    ``"uvloop"`` without uvloop installed is a ConfigError; ``"auto"`` then falls back to asyncio."""
    if choice not in CHOICES:
        raise ConfigError(f"[dataplane] event_loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("[dataplane] event_loop = \"uvloop\" but uvloop is not installed "
                              "(pip install uvloop, or use \"auto\" or \"asyncio\")") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(main: Coroutine[Any, Any, Any], choice: str = "auto") -> Any:
    """Run ``main`` to completion on the loop ``choice`` names (like ``asyncio.run``)."""
    _name, factory = loop_factory(choice)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio": which loop ``loop`` is (for the log and ``weft status``)."""
    return "uvloop" if type(loop).__module__.split(".")[0] == "uvloop" else "asyncio"


#: sched_setattr / sched_getattr by machine (x86_64, then the generic table of arm64 and riscv64).
_SCHED_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275), "riscv64": (274, 275)}
#: struct sched_attr (linux/sched/types.h), SCHED_ATTR_SIZE_VER1: size, policy, flags, nice,
#: priority, runtime, deadline, period, util_min, util_max.
_ATTR = struct.Struct("IIQiIQQQII")
SCHED_OTHER = 0
#: The kernel's bounds for a requested slice (kernel/sched/syscalls.c), in µs.
SLICE_MIN_US, SLICE_MAX_US = 100, 100_000


def _syscall(nr: int, *args) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, *args) != 0:
        return ctypes.get_errno() or 1
    return 0


def _get_attr(tid: int) -> tuple | None:
    calls = _SCHED_CALLS.get(os.uname().machine)
    if calls is None:
        return None
    buf = ctypes.create_string_buffer(_ATTR.size)
    if _syscall(calls[1], tid, buf, _ATTR.size, 0):
        return None
    return _ATTR.unpack(buf.raw)


def current_slice(tid: int = 0) -> int | None:
    """The time slice (µs) of thread ``tid`` (0: the calling thread) as the kernel reports it (its
    default where none was asked for, e.g. 1,400 on a 2-core machine; 0 on kernels before 6.12);
    None where it cannot be read (another machine type, no sched_getattr)."""
    attr = _get_attr(tid)
    return None if attr is None else attr[5] // 1000


def request_slice(us: int, tid: int = 0) -> int | None:
    """Ask the kernel for a time slice of ``us`` µs for thread ``tid`` (0: the calling thread),
    keeping its policy and nice value; ``us`` = 0 asks for the kernel's default again.

    Returns the slice in force afterwards as the kernel reports it (µs; where the kernel ignores
    the request, as kernels before 6.12 do, that is not ``us``), or None where it cannot be set
    (not a normal-policy thread, a machine type without a known system call number, a refusal)."""
    if us and not SLICE_MIN_US <= us <= SLICE_MAX_US:
        raise ValueError(f"a time slice is from {SLICE_MIN_US} to {SLICE_MAX_US} µs, not {us}")
    attr = _get_attr(tid)
    if attr is None or attr[1] != SCHED_OTHER:
        return None
    _size, policy, _flags, nice, prio, *_ = attr
    buf = _ATTR.pack(_ATTR.size, policy, 0, nice, prio, us * 1000, 0, 0, 0, 0)
    if _syscall(_SCHED_CALLS[os.uname().machine][0], tid, ctypes.c_char_p(buf), 0):
        return None
    return current_slice(tid)


#: Where the kernel reports CPU pressure (Linux 4.20+ with PSI).
PRESSURE_FILE = "/proc/pressure/cpu"
#: Seconds between two readings of it (its "avg10" is a 10 s average: reading it more often adds little).
PRESSURE_INTERVAL = 5.0


def cpu_pressure(path: str = PRESSURE_FILE) -> float | None:
    """The share (%) of the last 10 s in which some runnable task waited for a CPU ("some avg10"
    in ``/proc/pressure/cpu``); None where the kernel does not report it."""
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError:
        return None
    for field in line.split()[1:]:
        name, _, value = field.partition(b"=")
        if name == b"avg10":
            try:
                return float(value)
            except ValueError:
                return None
    return None


class SliceFollower:
    """Asks for ``slice_us`` for the calling thread while CPU pressure is at or above ``threshold`` %
    (and until it falls below half of that), for the kernel's default slice otherwise; with no
    pressure reading, for ``slice_us`` (the fixed setting's behaviour). :meth:`check` is called
    periodically from the thread it governs (``sched_setattr`` here acts on the calling thread)."""

    def __init__(self, slice_us: int, threshold: float,
                 read: Callable[[], float | None] = cpu_pressure,
                 request: Callable[[int], int | None] = request_slice):
        self.slice_us = slice_us
        self.threshold = threshold
        self._read = read
        self._request = request
        #: The short slice is asked for (None: not decided yet).
        self.short: bool | None = None
        #: The last pressure read (None: none available).
        self.pressure: float | None = None
        self.changes = 0

    def check(self) -> bool:
        """Read the pressure and ask for the slice it calls for if that changed; True if the
        short slice is now asked for."""
        p = self.pressure = self._read()
        if p is None:
            want = True
        elif self.short:
            want = p >= self.threshold / 2
        else:
            want = p >= self.threshold
        if want != self.short:
            self._request(self.slice_us if want else 0)
            if self.short is not None:
                self.changes += 1
            self.short = want
        return want

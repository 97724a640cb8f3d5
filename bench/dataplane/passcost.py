#!/usr/bin/env python3
"""What one pass of a ping through the daemon's callbacks costs, warm and with cold caches.

Two daemons' packet callbacks (``Daemon._on_tun_readable``, ``UdpDriver._on_readable`` with the
TUN drain) carry pings between two members of a private network over UDP on loopback, with
SOCK_SEQPACKET pairs standing in for the TUNs (tests/test_dataplane_latency.py's harness; no
namespaces, no root). Per pass it times, from the callback's start, the system call that carries
the packet on (A: the ``sendto``; B: the reply's ``sendto`` after the drain; A: the TUN
``writev``) and the whole callback. "cold" runs each pass right after streaming 8 MiB through the
caches (what another process on the core does between two packets); "warm" runs them back to
back; with ``--idle-ms MS``, "idle" runs each pass right after sleeping MS ms (what a ping MS ms
after the last one finds on a machine with nothing else to run). Medians of PINGS passes (the
first 20 left out), twice each.

    .venv/bin/python bench/dataplane/passcost.py [--pings 300] [--idle-ms 10] [--patch FILE.py]

``--patch`` imports a module first (e.g. a prototype that replaces a callback) to compare it.
Prints its table; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import socket
import statistics
import sys
import tempfile
import time
import types

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

_THRASH = bytearray(8 << 20)
MARKS: list[float] = []
#: ping's default payload (56 bytes: an 84-byte IPv4 packet), so the passes see the packet a ping sends.
PING_DATA = bytes(56)


def thrash() -> None:
    b = _THRASH
    for i in range(0, len(b), 4096):
        b[i] = 1
    bytes(memoryview(b))


class _SockProxy:
    """The driver's socket, noting when each ``sendto`` returned."""

    def __init__(self, sock):
        self._s = sock

    def sendto(self, *args):
        r = self._s.sendto(*args)
        MARKS.append(time.perf_counter())
        return r

    def __getattr__(self, name):
        return getattr(self._s, name)


def _instrument_writev() -> None:
    import weftnet.runtime.daemon as dmod

    real = os.writev
    proxy = types.ModuleType("os")
    proxy.__getattr__ = lambda name: getattr(os, name)  # type: ignore[attr-defined]

    def writev(fd, bufs):
        r = real(fd, bufs)
        MARKS.append(time.perf_counter())
        return r

    proxy.writev = writev  # type: ignore[attr-defined]
    dmod.os = proxy


def members():
    """The two member daemons of tests/test_dataplane_latency.py on loopback: ``(a, b, nid, socks)``
    (the network's ID, and the UDP sockets to close after)."""
    from test_dataplane_latency import _members

    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    (a, b), nid = _members(pathlib.Path(tempfile.mkdtemp()), socks)
    return a, b, nid, socks


def run(pings: int, mode: str, idle_s: float = 0.0) -> tuple[list[float], list[float]]:
    from vpn_packets import icmp_echo

    from weftnet.core.vpn.network import VNET_NONE

    a, b, nid, socks = members()
    for d in (a, b):
        d.driver.sock = _SockProxy(d.driver.sock)
    ta, tb = a._tuns[nid], b._tuns[nid]
    crit: list[list[float]] = [[], [], []]
    whole: list[list[float]] = [[], [], []]
    clock = time.perf_counter

    def one(i, fn):
        MARKS.clear()
        if mode == "cold":
            thrash()
        elif mode == "idle":
            time.sleep(idle_s)
        t = clock()
        fn()
        whole[i].append(clock() - t)
        crit[i].append((MARKS[-1] if i == 1 else MARKS[0]) - t)

    try:
        for seq in range(1, pings + 1):
            ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq & 0xFFFF, data=PING_DATA)
            reply = icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=seq & 0xFFFF, reply=True, data=PING_DATA)
            ta.kernel.send(VNET_NONE + ping)
            one(0, lambda: a._on_tun_readable(nid, ta))
            tb.kernel.send(VNET_NONE + reply)
            one(1, b.driver._on_readable)
            assert tb.kernel.recv(65_535)[10:] == ping
            one(2, a.driver._on_readable)
            assert ta.kernel.recv(65_535)[10:] == reply
    finally:
        for d in (a, b):
            for tun in d._tuns.values():
                tun.close()
            d.driver.close()
        for s in socks:
            s.close()
    med = lambda v: statistics.median(v[20:]) * 1e6  # noqa: E731
    return [med(v) for v in crit], [med(v) for v in whole]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pings", type=int, default=300)
    p.add_argument("--patch", type=pathlib.Path, help="a module to import first (a prototype to compare)")
    p.add_argument("--idle-ms", type=float, default=0.0, metavar="MS",
                   help="also run each pass right after sleeping MS ms (rows 'idle'); 0: not")
    args = p.parse_args()
    if not 0 <= args.idle_ms <= 1000:
        p.error("--idle-ms wants 0-1000")
    if args.patch is not None:
        spec = importlib.util.spec_from_file_location("patch", args.patch)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    _instrument_writev()
    from weftnet.runtime import evloop

    async def main_async():
        print(f"load {os.getloadavg()[0]:.2f}; µs, medians; to the packet's system call | whole callback")
        modes = ("warm", "cold", "idle") if args.idle_ms else ("warm", "cold")
        for mode in modes + modes:
            c, w = run(args.pings, mode, args.idle_ms / 1000)
            print(f"{mode}  A TUN {c[0]:6.1f}  B UDP+drain {c[1]:6.1f}  A UDP {c[2]:6.1f}"
                  f"  = {sum(c):6.1f}  |  {w[0]:6.1f} {w[1]:6.1f} {w[2]:6.1f} = {sum(w):6.1f}")

    evloop.run(main_async(), "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())

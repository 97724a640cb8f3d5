#!/usr/bin/env python3
"""How long a lone ping waits inside the overlay interface's callbacks, lone-packet-first reader on
and off alternately (in one process; the reader's ``_sparse`` flag forced each time).

tests/test_overlay_latency.py's harness (two nodes, real UDP sockets on loopback, SOCK_SEQPACKET
TUN stand-ins). Per ping: at A, from entering ``OverlayInterface._on_readable`` to the ``sendto``
of the sealed ping; at B, from entering ``UdpDriver._on_readable`` (the ping's datagram waiting,
the host's echo reply queued on B's TUN in advance) to the ``sendto`` of the reply, which B's TUN
drain reads through the same reader. Wall time (perf_counter_ns). ``--cold`` writes over a 32 MB
buffer before each ping (as bench/dataplane/passcost.py does) so caches are cold as between pings
10 ms apart on a busy machine.

    PYTHONPATH=src:tests python bench/results/ov6/tools/lonecost.py --pings 400 [--cold]
"""
import argparse
import asyncio
import pathlib
import socket
import statistics
import tempfile
import time

import test_overlay_latency as h

from weftnet.core.vpn.network import VNET_NONE
from weftnet.runtime import evloop

p = argparse.ArgumentParser()
p.add_argument("--pings", type=int, default=400)
p.add_argument("--cold", action="store_true")
args = p.parse_args()
junk = bytearray(32 << 20)


class Stamp:
    def __init__(self, sock):
        self._s, self.at = sock, 0

    def sendto(self, *a):
        if not self.at:
            self.at = time.perf_counter_ns()
        return self._s.sendto(*a)

    def __getattr__(self, n):
        return getattr(self._s, n)


async def main():
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    a, b = h._overlay_nodes(pathlib.Path(tempfile.mkdtemp()), socks)
    ia, ib = a.driver.core.identity, b.driver.core.identity
    sa, sb = Stamp(a.driver.sock), Stamp(b.driver.sock)
    a.driver.sock, b.driver.sock = sa, sb
    res = {("A", True): [], ("A", False): [], ("B", True): [], ("B", False): []}
    for i in range(args.pings):
        lone = i % 2 == 0
        seq = 100 + i
        if args.cold:
            junk[::64] = bytes(len(junk[::64]))
        a.overlay.tun.kernel.send(VNET_NONE + h._echo(ia, ib, seq))
        a.overlay._sparse = lone
        sa.at = 0
        t0 = time.perf_counter_ns()
        a.overlay._on_readable()
        res[("A", lone)].append((sa.at - t0) / 1000)
        b.overlay.tun.kernel.send(VNET_NONE + h._echo(ib, ia, seq, reply=True))
        b.overlay._sparse = lone
        if args.cold:
            junk[::64] = bytes(len(junk[::64]))
        sb.at = 0
        t0 = time.perf_counter_ns()
        b.driver._on_readable()
        res[("B", lone)].append((sb.at - t0) / 1000)
        a.driver._on_readable()
        a.overlay.tun.kernel.recv(65_535)
        b.overlay.tun.kernel.recv(65_535)
    for (side, lone), v in res.items():
        v = v[10:]
        print(f"{side} {'lone-first' if lone else 'batch-first'}{' (cold)' if args.cold else ''}: µs to send, "
              f"median {statistics.median(v):.1f}, p90 {statistics.quantiles(v, n=10)[-1]:.1f} ({len(v)} pings)")
    for d in (a, b):
        d.overlay.tun.close()
        d.driver.close()
    for s in socks:
        s.close()

evloop.run(main(), "auto")

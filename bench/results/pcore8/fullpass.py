#!/usr/bin/env python3
"""The daemon's share of one ping's passes, its callbacks whole (branch pcore8).

bench/dataplane/passcost.py's harness (two member daemons on loopback, SOCK_SEQPACKET pairs for
the TUNs), but the TUNs marked ``vnet`` as the daemon marks them (every TUN read starts with a
virtio_net_hdr, all zero for a ping), warm, and timed as whole callbacks: A's
``_on_tun_readable`` (read, route, firewall, seal, ``sendto``, the read that finds the TUN empty,
the timer), B's ``UdpDriver._on_readable`` (``recvmsg``, open, TUN ``writev``, the drain's read of
the echo reply, seal, ``sendto``, the timer) and A's ``_on_readable`` (``recvmsg``, open, TUN
``writev``). The system calls are in (on loopback and socketpairs). Prints, per run, the medians
(µs) of PINGS pings (the first 200 left out) per pass and in all, and the 10th percentile of a
whole ping's; with ``--marks``, also from each pass's start to the system call that carries the
packet on (A: the ``sendto``; B: the reply's ``sendto``; A: the TUN ``writev``), as
bench/dataplane/passcost.py marks them. ``--profile FILE`` writes a cProfile of the last run.

    PYTHONPATH=SRC python fullpass.py --tests TESTS_DIR [--pings 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import statistics
import sys
import tempfile
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tests", type=pathlib.Path, required=True)
    p.add_argument("--pings", type=int, default=3000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profile", type=pathlib.Path)
    p.add_argument("--marks", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(args.tests))
    from test_dataplane_latency import _members
    from vpn_packets import icmp_echo

    from weftnet.runtime import evloop

    async def run():
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        (a, b), nid = _members(pathlib.Path(tempfile.mkdtemp()), socks)
        for d in (a, b):
            d.driver.core.vpn._vnet.add(nid)
        for d in (a, b):  # the timers the harness's set-up left due, as the daemon's loop runs them (paths
            d.driver._on_timer()  # then tracks the peer, and its per-packet note is the tracked one)
        ta, tb = a._tuns[nid], b._tuns[nid]
        marks: list[float] = []
        if args.marks:  # the time each packet-carrying system call returned
            clk = time.perf_counter
            real_writev = os.writev

            def writev(fd, bufs):
                r = real_writev(fd, bufs)
                marks.append(clk())
                return r
            os.writev = writev

            class Sock:
                def __init__(self, sock):
                    self._s = sock

                def sendto(self, *a):
                    r = self._s.sendto(*a)
                    marks.append(clk())
                    return r

                def __getattr__(self, name):
                    return getattr(self._s, name)
            for d in (a, b):
                d.driver.sock = Sock(d.driver.sock)
        hdr = bytes(10)
        clock = time.perf_counter
        print(f"load {os.getloadavg()[0]:.2f}; µs, medians of {args.pings} pings: A out | B in+out | A in = all")
        pings = [(hdr + icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=s & 0xFFFF, data=bytes(56)),
                  hdr + icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=s & 0xFFFF, reply=True, data=bytes(56)))
                 for s in range(1, 1001)]
        a_tun, b_udp, a_udp = (lambda: a._on_tun_readable(nid, ta)), b.driver._on_readable, a.driver._on_readable
        for run_ in range(args.runs):
            prof = None
            if args.profile and run_ == args.runs - 1:
                import cProfile
                prof = cProfile.Profile()
                prof.enable()
            t = [[], [], []]
            crit = [[], [], []]
            for seq in range(args.pings + 200):
                ping, reply = pings[seq % 1000]
                ta.kernel.send(ping)
                marks.clear()
                t0 = clock()
                a_tun()
                t1 = clock()
                m1 = marks[:]
                tb.kernel.send(reply)
                marks.clear()
                t2 = clock()
                b_udp()
                t3 = clock()
                m2 = marks[:]
                marks.clear()
                a_udp()
                t4 = clock()
                m3 = marks[:]
                if args.marks and seq >= 200:
                    crit[0].append(m1[0] - t0)  # A's sendto
                    crit[1].append(m2[-1] - t2)  # B's reply's sendto (after its writev)
                    crit[2].append(m3[0] - t3)  # A's TUN writev
                assert tb.kernel.recv(65_535) == ping and ta.kernel.recv(65_535) == reply
                if seq >= 200:
                    t[0].append(t1 - t0)
                    t[1].append(t3 - t2)
                    t[2].append(t4 - t3)
            if prof is not None:
                prof.disable()
                prof.dump_stats(str(args.profile))
            m = [statistics.median(v) * 1e6 for v in t]
            whole = sorted(sum(x) for x in zip(*t))
            print(f"A out {m[0]:6.2f}  B in+out {m[1]:6.2f}  A in {m[2]:6.2f}  = {sum(m):6.2f}"
                  f"  (whole ping: p10 {whole[len(whole) // 10] * 1e6:6.2f})"
                  + ("  to the call: " + " ".join(f"{statistics.median(v) * 1e6:6.2f}" for v in crit)
                     + f" = {sum(statistics.median(v) for v in crit) * 1e6:6.2f}" if args.marks else ""), flush=True)
        for d in (a, b):
            for tun in d._tuns.values():
                tun.close()
            d.driver.close()
        for s in socks:
            s.close()

    evloop.run(run(), "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())

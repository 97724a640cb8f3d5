#!/usr/bin/env python3
"""The core's share of one ping's four passes, without the system calls (branch ping7).

passcost.py's two members (tests/test_dataplane_latency.py's harness), but the callbacks' core
calls made directly, in a loop: A's ``vpn_outbound`` of the echo request (as a TUN read returns
it, virtio_net_hdr first) with ``datagrams_to_send`` and ``get_timer`` (what ``transmit`` asks);
B's ``receive_datagrams`` of that datagram, its TUN write taken from ``tun_out``, the echo reply's
``vpn_outbound``, ``datagrams_to_send``, ``get_timer``; A's ``receive_datagrams`` of the reply,
``tun_out``, ``get_timer``. Checks each packet arrives intact. Prints the medians (µs) of PINGS
pings (the first 200 left out) per pass and in all, and the 10th percentile of a whole ping's
(less disturbed by other jobs on a shared machine), three runs of them. Run it with PYTHONPATH at
the tree to measure; the harness is imported from the tests directory given by --tests. The
network is marked as the daemon marks it (``add_network(..., vnet=True)``: its TUN reads start
with a virtio_net_hdr), which the harness leaves out (passcost.py feeds bare packets).

    PYTHONPATH=SRC python corecost.py --tests TESTS_DIR [--pings 3000]
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
    p.add_argument("--profile", type=pathlib.Path, help="write a cProfile of the last round here")
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
        ca, cb = a.driver.core, b.driver.core
        for c in (ca, cb):  # as the daemon's TUNs: a virtio_net_hdr in front of each packet read
            c.vpn._vnet.add(nid)
        for d in (a, b):  # the timers the harness's set-up left due, as the daemon's loop runs them (paths
            d.driver._on_timer()  # then tracks the peer, and its per-packet note is the tracked one)
        src_a = a.driver._endpoint(a.driver.sock.getsockname())
        src_b = b.driver._endpoint(b.driver.sock.getsockname())
        hdr = bytes(10)
        clock = time.perf_counter
        print(f"load {os.getloadavg()[0]:.2f}; µs, medians of {args.pings} pings: A out | B in+out | A in = all")
        for _rnd in range(args.runs):
            t = [[], [], []]
            prof = None
            if args.profile and _rnd == args.runs - 1:
                import cProfile
                prof = cProfile.Profile()
                prof.enable()
            for seq in range(1, args.pings + 201):
                ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq & 0xFFFF, data=bytes(56))
                reply = icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=seq & 0xFFFF, reply=True, data=bytes(56))
                now = a.driver.clock()
                t0 = clock()
                ca.vpn_outbound(nid, [hdr + ping], now)
                out = ca.datagrams_to_send(now)
                ca.get_timer()
                t1 = clock()
                cb.receive_datagrams([(out[-1][0], src_a)], now)
                got = cb.tun_out[:]
                cb.tun_out.clear()
                cb.vpn_outbound(nid, [hdr + reply], now)
                out = cb.datagrams_to_send(now)
                cb.get_timer()
                t2 = clock()
                ca.receive_datagrams([(out[-1][0], src_b)], now)
                back = ca.tun_out[:]
                ca.tun_out.clear()
                ca.get_timer()
                t3 = clock()
                assert bytes(got[-1][2]) == ping and bytes(back[-1][2]) == reply, (got, back)
                if seq > 200:
                    t[0].append(t1 - t0)
                    t[1].append(t2 - t1)
                    t[2].append(t3 - t2)
            if prof is not None:
                prof.disable()
                prof.dump_stats(str(args.profile))
            m = [statistics.median(v) * 1e6 for v in t]
            whole = sorted(sum(x) for x in zip(*t))
            print(f"A out {m[0]:6.2f}  B in+out {m[1]:6.2f}  A in {m[2]:6.2f}  = {sum(m):6.2f}"
                  f"  (whole ping: p10 {whole[len(whole) // 10] * 1e6:6.2f})")
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

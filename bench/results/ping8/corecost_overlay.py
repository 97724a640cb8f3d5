#!/usr/bin/env python3
"""The core's share of one ping's four passes through the overlay interface, without the system
calls (branch ping8; bench/results/ping7/corecost.py for the overlay's ``weft0``).

tests/test_overlay_latency.py's two nodes (their overlay interfaces up with the default firewall,
each address resolved in the other's cache, the ping's flow opened by a first ping and reply; the
pings here are ``ping -6``'s size, 56 bytes of data), the daemon's core calls made directly, in a loop: A's ``overlay_outbound`` of the echo request as the
TUN read returns it (an all-zero virtio_net_hdr first) with ``datagrams_to_send`` and
``get_timer`` (what ``transmit`` asks); B's ``receive_datagrams`` of that datagram, its TUN write
taken from ``tun_out``, the echo reply's ``overlay_outbound``, ``datagrams_to_send``,
``get_timer``; A's ``receive_datagrams`` of the reply, ``tun_out``, ``get_timer``. Checks each
packet arrives intact. Prints the medians (µs) of PINGS pings (the first 200 left out) per pass
and in all, and the 10th percentile of a whole ping's, three runs of them. Run it with PYTHONPATH
at the tree to measure; the harness is imported from the tests directory given by --tests.

    PYTHONPATH=SRC python corecost_overlay.py --tests TESTS_DIR [--pings 1000]
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
    p.add_argument("--pings", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    sys.path.insert(0, str(args.tests))
    from test_overlay_latency import _overlay_nodes
    from vpn_packets import icmp_echo

    from weftnet.core.vpn.network import VNET_NONE
    from weftnet.runtime import evloop

    async def run():
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        a, b = _overlay_nodes(pathlib.Path(tempfile.mkdtemp()), socks)
        ca, cb = a.driver.core, b.driver.core
        ia, ib = ca.identity, cb.identity
        src_a = a.driver._endpoint(a.driver.sock.getsockname())
        src_b = b.driver._endpoint(b.driver.sock.getsockname())
        clock = time.perf_counter
        print(f"load {os.getloadavg()[0]:.2f}; µs, medians of {args.pings} pings: A out | B in+out | A in = all")
        for _rnd in range(args.runs):
            t = [[], [], []]
            for seq in range(2, args.pings + 202):
                ping = icmp_echo(str(ia.address), str(ib.address), 7, seq & 0xFFFF, data=bytes(56))  # as ping -6
                reply = icmp_echo(str(ib.address), str(ia.address), 7, seq & 0xFFFF, reply=True, data=bytes(56))
                now = a.driver.clock()
                t0 = clock()
                ca.overlay_outbound([VNET_NONE + ping], now)
                out = ca.datagrams_to_send(now)
                ca.get_timer()
                t1 = clock()
                cb.receive_datagrams([(out[-1][0], src_a)], now)
                got = cb.tun_out[:]
                cb.tun_out.clear()
                cb.overlay_outbound([VNET_NONE + reply], now)
                out = cb.datagrams_to_send(now)
                cb.get_timer()
                t2 = clock()
                ca.receive_datagrams([(out[-1][0], src_b)], now)
                back = ca.tun_out[:]
                ca.tun_out.clear()
                ca.get_timer()
                t3 = clock()
                assert bytes(got[-1][2]) == ping and bytes(back[-1][2]) == reply, (got, back)
                if seq > 201:
                    t[0].append(t1 - t0)
                    t[1].append(t2 - t1)
                    t[2].append(t3 - t2)
            m = [statistics.median(v) * 1e6 for v in t]
            whole = sorted(sum(x) for x in zip(*t))
            print(f"A out {m[0]:6.2f}  B in+out {m[1]:6.2f}  A in {m[2]:6.2f}  = {sum(m):6.2f}"
                  f"  (whole ping: p10 {whole[len(whole) // 10] * 1e6:6.2f})")
        assert ca.overlay.data.drops == {} and cb.overlay.data.drops == {}
        for d in (a, b):
            d.overlay.tun.close()
            d.driver.close()
        for s in socks:
            s.close()

    evloop.run(run(), "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())

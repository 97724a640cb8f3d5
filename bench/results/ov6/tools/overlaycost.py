#!/usr/bin/env python3
"""CPU per 64 KB TCP superpacket through the overlay interface's daemon callbacks, without root.

bench/dataplane/bulkcost.py for the overlay interface: two nodes with their overlay interfaces up
(tests/test_overlay_latency.py's harness: real UDP sockets on loopback, SOCK_SEQPACKET pairs
standing in for the weft0 TUNs, offload headers on), B's firewall the overlay default plus
`weft allow tcp 5201`. A's TUN read (``--burst`` TCPv6 superpackets of ``--size`` bytes), B's UDP
read, its TUN write and the drain that reads ``--acks`` ACKs per superpacket queued on B's TUN
and sends them back, and A's UDP read of those ACKs. Process CPU time per step.

    PYTHONPATH=<src>:<ov6>/tests python overlaycost.py [--n 2000] [--burst 4] [--acks 1]

The harness (tests/) is this branch's; the code measured is whichever ``src`` comes first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import socket
import sys
import tempfile
import time

SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33


def run(args) -> str:
    import test_overlay_latency as harness
    from vpn_packets import tcp

    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.network import VNET_HDR
    from weftnet.runtime.config import OverlayConfig
    from weftnet.runtime.driver import set_buffers
    from weftnet.runtime.overlay import FLOWS_PER_PEER, make_rule, overlay_firewall_config

    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        set_buffers(s, 16 << 20)
    da, db = harness._overlay_nodes(pathlib.Path(tempfile.mkdtemp()), socks)
    from weftnet.core.session import ciphers as cph

    for d in (da, db):  # AES-256-GCM, as the bench's daemons negotiate
        for peer in d.core.transport._peers.values():
            for s in (peer.current, *peer.older):
                if s is not None:
                    s.cipher, s._aead, s.block_limit = cph.AES_256_GCM, cph.AEADS[cph.AES_256_GCM], \
                        cph.BLOCK_LIMIT[cph.AES_256_GCM]
                    s._send = s._recv = None
        tun = d.overlay.tun
        for s in (tun._end, tun.kernel):
            for opt, force in ((socket.SO_SNDBUF, SO_SNDBUFFORCE), (socket.SO_RCVBUF, SO_RCVBUFFORCE)):
                try:
                    s.setsockopt(socket.SOL_SOCKET, force, 32 << 20)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    db.core.overlay.data.firewall = Firewall.from_config(
        overlay_firewall_config(OverlayConfig(), [make_rule("tcp", "5201", None)]), "[overlay] firewall",
        default_max_flows_per_peer=FLOWS_PER_PEER)
    for d, other in ((da, db), (db, da)):
        d.core.transport.set_max_datagram(other.core.node_id, 1472)
    a, b = str(da.core.identity.address), str(db.core.identity.address)
    ta, tb = da.overlay.tun, db.overlay.tun
    data = random.Random(1).randbytes(args.size - 60)
    superpacket = VNET_HDR.pack(1, 4, 60, 1348, 40, 16) + tcp(a, b, 40000, 5201, flags=0x10, data=data)
    ack = VNET_HDR.pack(1, 0, 0, 0, 40, 16) + tcp(b, a, 5201, 40000, flags=0x10)
    clock = time.process_time
    spent = [0.0, 0.0, 0.0]
    got = acks = 0
    try:
        for it in range(args.n // args.burst + 3):
            if it == 3:  # warmed up (the first superpacket opened the flow at both ends)
                spent, got, acks = [0.0, 0.0, 0.0], 0, 0
            for _ in range(args.burst):
                ta.kernel.send(superpacket)
            c = clock()
            da.overlay._on_readable()
            spent[0] += clock() - c
            for _ in range(args.burst * args.acks):
                tb.kernel.send(ack)
            c = clock()
            db.driver._on_readable()
            spent[1] += clock() - c
            c = clock()
            da.driver._on_readable()
            spent[2] += clock() - c
            while True:
                try:
                    m = tb.kernel.recv(70_000)
                except BlockingIOError:
                    break
                if m != superpacket:
                    raise SystemExit("a superpacket arrived changed")
                got += 1
            while True:
                try:
                    ta.kernel.recv(70_000)
                    acks += 1
                except BlockingIOError:
                    break
    finally:
        for d in (da, db):
            d.overlay.tun.close()
            d.driver.close()
        for s in socks:
            s.close()
    if not got:
        raise SystemExit(f"no superpacket arrived (B's drops: {db.core.overlay.data.drops})")
    gb = got * (len(superpacket) - 10) / 1e9
    us = [t / got * 1e6 for t in spent]
    return (f"{got} superpackets of {args.size} bytes, {acks} ACKs, burst {args.burst}: µs per superpacket "
            f"A out {us[0]:.1f}, B in (+ ACKs out) {us[1]:.1f}, A ACKs in {us[2]:.1f}; CPU s/GB "
            f"A {(spent[0] + spent[2]) / gb:.2f}, B {spent[1] / gb:.2f}, both {sum(spent) / gb:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--burst", type=int, default=4)
    p.add_argument("--acks", type=int, default=1)
    p.add_argument("--size", type=int, default=63_784)
    args = p.parse_args()
    from weftnet.runtime import evloop

    async def main_async():
        print(run(args))

    evloop.run(main_async(), "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())

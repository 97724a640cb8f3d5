#!/usr/bin/env python3
"""A worker's per-batch Python, dp9's ``_WorkerLoop`` against main's, alternating every burst.

Two worker loops (runtime/dpworkers.py: this tree's, and BASE's copy of the file loaded beside it)
over the same kind of network (tests/test_vpn_fastpath.py's world: member A with a tracked TCP
flow to member B) each get, in turn, a burst read from their TUN queue (``--burst`` 64 KiB TCP
superpackets of the flow, a SOCK_SEQPACKET pair standing in for the queue) and a burst of the
flow's inbound chunks (its ACKs, as B sends them). The seal, the UDP send and the TUN write are
left out in both (the same stand-ins: what is compared is the loop's own Python around the
network's decisions). Process CPU time per packet, BASE and new alternating every burst.

    PYTHONPATH=src python3 bench/results/dp9/tools/worker_toggle.py --base /tmp/dp9snap/a9172d6/src
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests"))


def _loop(cls, net, peer):
    tun, queue = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (tun, queue):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    queue.setblocking(False)
    lp = cls.__new__(cls)
    lp.slot, lp.nets, lp.coalesce = 1, {net.network_id: net}, set()
    lp.queue_of, lp.net_of = {net.network_id: queue.fileno()}, {queue.fileno(): net.network_id}

    class Seal:
        counter, reserved = 0, 1 << 60

        def seal(self, node, payload, now):
            return [payload]

        def wants_rekey(self, node, now):
            return False

    lp.crypto, lp.endpoints = Seal(), {peer: ("127.0.0.1", 9)}
    lp.stats = {"packets_out": 0, "packets_in": 0, "bytes_out": 0, "bytes_in": 0, "upcalls": 0,
                "tun_write_errors": 0, "send_errors": 0, "acks_filtered": 0}
    lp._written, lp._nudged = set(), {}
    lp._send_all = lambda out: None
    lp._write = lambda fd, vnet, packet: None
    lp._upcall = lambda msg: None
    lp._count_drop = lambda way, r: None
    return lp, tun, queue


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="BASE's src directory (its runtime/dpworkers.py is loaded)")
    p.add_argument("--n", type=int, default=20000, help="bursts per build")
    p.add_argument("--burst", type=int, default=4)
    args = p.parse_args()
    from test_vpn_fastpath import A4, B4, T0, VNETS, chunk, world
    from vpn_packets import tcp

    from weftnet.runtime import dpworkers as new

    spec = importlib.util.spec_from_file_location("dpworkers_base", Path(args.base) / "weftnet/runtime/dpworkers.py")
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    loops = {}
    import types

    for mod in (base, new):  # the networks' clock: a second after the flow opened
        mod.time = types.SimpleNamespace(time=lambda: T0 + 1, monotonic=time.monotonic)
    for name, mod in (("base", base), ("new", new)):
        net, ib = world()
        peer = ib.node_id.raw
        first = VNETS[2] + tcp(A4, B4, 40000, 5201, flags=0x10)
        net.outbound_read(first, T0)  # opens the flow
        lp, tun, queue = _loop(mod._WorkerLoop, net, peer)
        loops[name] = (lp, tun, queue, net, peer)
    superpacket = VNETS[0] + tcp(A4, B4, 40000, 5201, flags=0x10, data=os.urandom(63_744))
    ack = VNETS[2] + tcp(B4, A4, 5201, 40000, flags=0x10)
    spent = {k: [0.0, 0.0] for k in loops}
    clock = time.process_time
    for it in range(args.n + 50):
        for name in (("base", "new") if it % 2 else ("new", "base")):
            lp, tun, queue, net, peer = loops[name]
            inbound = [chunk(net, ack[:10], ack[10:]) for _ in range(args.burst * 2)]
            for _ in range(args.burst):
                tun.send(superpacket)
            c = clock()
            lp._on_tun(queue.fileno())
            c2 = clock()
            lp._opened = lambda datagrams, _now, peer=peer: ((peer, d) for d in datagrams)
            lp._on_udp(inbound)
            c3 = clock()
            if it >= 50:
                spent[name][0] += c2 - c
                spent[name][1] += c3 - c2
    for name in ("base", "new"):
        out_us = spent[name][0] / (args.n * args.burst) * 1e6
        in_us = spent[name][1] / (args.n * args.burst * 2) * 1e6
        lp = loops[name][0]
        print(f"{name}: out {out_us:.2f} µs per superpacket, in {in_us:.2f} µs per ACK chunk "
              f"(sent {lp.stats['packets_out']}, in {lp.stats['packets_in']})")
    print(f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

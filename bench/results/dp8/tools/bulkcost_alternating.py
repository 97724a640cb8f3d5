#!/usr/bin/env python3
"""CPU per 64 KiB TCP superpacket through the daemon's own callbacks, without root.

Two members of a private network (tests/test_dataplane_latency.py's harness: real UDP sockets on
loopback, SOCK_SEQPACKET pairs standing in for the TUNs, the TUNs with offload) carry TCP
superpackets the way the bench's iperf3 run makes the kernel hand them over: A's TUN read
(``--burst`` superpackets of ``--size`` bytes with a GSO_TCPV4 virtio_net_hdr), B's UDP read, its
TUN write and the drain that reads ``--acks`` TCP ACKs per superpacket queued on B's TUN and
sends them back, and A's UDP read of those ACKs. The path MTU is set to the bench's (1,472-byte
datagrams on a 1,500-byte veth). Reports the process CPU time of each step per superpacket and
CPU seconds per GB of superpacket for each end. Crypto, copies, the interpreter and the system
calls on loopback are in it; the kernel's work on a veth and the inner TCP stack are not.

    .venv/bin/python bench/dataplane/bulkcost.py [--n 3000] [--burst 4] [--profile out.prof]

Prints one line; writes nothing (``--profile`` writes a cProfile file of the measured part).
"""

from __future__ import annotations

import argparse
import pathlib
import random
import socket
import sys
import tempfile
import time

import os; REPO = pathlib.Path(os.environ["REPO"])
sys.path.insert(0, str(REPO / "tests"))

SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33


def run(args) -> str:
    import test_dataplane_latency as harness
    from vpn_packets import tcp

    from weftnet.core.vpn.network import VNET_HDR
    from weftnet.runtime.driver import set_buffers

    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        set_buffers(s, 16 << 20)
    (da, db), nid = harness._members(pathlib.Path(tempfile.mkdtemp()), socks)
    if args.cipher == "aes-256-gcm":  # what bench/dataplane's daemons negotiate on a CPU with AES instructions
        from weftnet.core.session import ciphers as cph

        for d in (da, db):
            for peer in d.core.transport._peers.values():
                for s in (peer.current, *peer.older):
                    if s is not None:
                        s.cipher, s._aead, s.block_limit = cph.AES_256_GCM, cph.AEADS[cph.AES_256_GCM], \
                            cph.BLOCK_LIMIT[cph.AES_256_GCM]
                        s._send = s._recv = None
    for d in (da, db):
        d.core.vpn._vnet.add(nid)  # the TUNs have offload: packets carry a virtio_net_hdr
        tun = d._tuns[nid]
        for s in (tun._end, tun.kernel):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    s.setsockopt(socket.SOL_SOCKET, {socket.SO_SNDBUF: SO_SNDBUFFORCE,
                                                     socket.SO_RCVBUF: SO_RCVBUFFORCE}[opt], 32 << 20)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    for d, other in ((da, db), (db, da)):
        d.core.transport.set_max_datagram(other.core.node_id, 1472)
    ta, tb = da._tuns[nid], db._tuns[nid]
    data = random.Random(1).randbytes(args.size - 40)
    superpacket = VNET_HDR.pack(1, 1, 40, 1368, 20, 16) + tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x10, data=data)
    ack = VNET_HDR.pack(1, 0, 0, 0, 20, 16) + tcp("10.1.0.2", "10.1.0.1", 5201, 40000, flags=0x10)
    clock = time.process_time
    spent = [0.0, 0.0, 0.0]
    got = acks = 0
    prof = None
    spent_b0 = [0.0]
    spent_a0 = [0.0]
    TOGGLE = None
    if os.environ.get("TOGGLE"):
        ns = {}
        exec(open(os.environ["TOGGLE"]).read(), ns)
        TOGGLE = ns["toggle"]
    try:
        for it in range(args.n // args.burst + 3):
            if it == 3:  # warmed up
                spent, got, acks = [0.0, 0.0, 0.0], 0, 0
                spent_b0[0] = 0.0
                spent_a0[0] = 0.0
                if args.profile:
                    import cProfile

                    prof = cProfile.Profile()
                    prof.enable()
            for _ in range(args.burst):
                ta.kernel.send(superpacket)
            if TOGGLE: TOGGLE(it % 2, da, db)
            c = clock()
            da._on_tun_readable(nid, ta)
            if it % 2: spent[0] += clock() - c
            else: spent_a0[0] += clock() - c
            for _ in range(args.burst * args.acks):
                tb.kernel.send(ack)
            if TOGGLE: TOGGLE(it % 2, da, db)
            c = clock()
            db.driver._on_readable()
            if it % 2: spent[1] += clock() - c
            else: spent_b0[0] += clock() - c
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
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
    finally:
        for d in (da, db):
            for tun in d._tuns.values():
                tun.close()
            d.driver.close()
        for s in socks:
            s.close()
    gb = got * (len(superpacket) - 10) / 1e9
    us = [t / got * 1e6 for t in spent]
    if TOGGLE:
        return f"A out: on {spent[0] / got * 2e6:.2f} off {spent_a0[0] / got * 2e6:.2f}; B in: toggle on (odd) {spent[1] / got * 2e6:.2f} µs, off (even) {spent_b0[0] / got * 2e6:.2f} µs per superpacket"
    return (f"{got} superpackets of {args.size} bytes, {acks} ACKs, burst {args.burst}: µs per superpacket "
            f"A out {us[0]:.1f}, B in (+ ACKs out) {us[1]:.1f}, A ACKs in {us[2]:.1f}; CPU s/GB "
            f"A {(spent[0] + spent[2]) / gb:.2f}, B {spent[1] / gb:.2f}, both {sum(spent) / gb:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="superpackets (default 3000)")
    p.add_argument("--burst", type=int, default=4, help="superpackets per TUN wake-up (default 4)")
    p.add_argument("--acks", type=int, default=1, help="TCP ACKs B sends back per superpacket (default 1)")
    p.add_argument("--size", type=int, default=63_784,
                   help="IP size of a superpacket (default 63,784: 47 segments of 1,356 bytes, what a "
                        "64,000-byte gso_max_size gives at the bench's tunnel MTU)")
    p.add_argument("--cipher", choices=("aes-256-gcm", "chacha20-poly1305"), default="aes-256-gcm",
                   help="the sessions' transport cipher (default aes-256-gcm, as the bench's daemons negotiate)")
    p.add_argument("--profile", help="write a cProfile file of the measured part")
    args = p.parse_args()
    from weftnet.runtime import evloop

    async def main_async():
        print(run(args))

    evloop.run(main_async(), "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())

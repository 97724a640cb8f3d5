#!/usr/bin/env python3
"""ns per call of the firewall's parse (``_parse``) and of the lone-packet reader the VPN's fast
paths call (main: ``core/vpn/network._plain_flow``; branch ping8: ``core/vpn/firewall.read_flow``,
which ``_parse`` now calls too), for the packets a ping and a bulk flow carry, plus one the common
case declines (a fragment: the walk). Best of REPEAT runs of NUMBER calls each (timeit).

    PYTHONPATH=SRC:TESTS python parsecost.py [--number 200000 --repeat 7]
"""

from __future__ import annotations

import argparse
import os
import timeit

from vpn_packets import icmp_echo, tcp, udp

import weftnet.core.vpn.firewall as fw
import weftnet.core.vpn.network as net


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--number", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    reader = getattr(fw, "read_flow", None) or net._plain_flow
    packets = {
        "tcp4": tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x10),
        "ping4": icmp_echo("10.1.0.1", "10.1.0.2", 7, seq=3, data=bytes(56)),
        "tcp6": tcp("fd00::1", "fd00::2", 40000, 5201, flags=0x10),
        "ping6": icmp_echo("fd00::1", "fd00::2", 7, seq=3, data=bytes(56)),
        "frag4": udp("10.1.0.1", "10.1.0.2", 1, 2, offset=8),
    }
    row = [f"load {os.getloadavg()[0]:.2f} reader={reader.__module__}.{reader.__name__}"]
    for name, pkt in packets.items():
        for what, f, call in (("parse", fw._parse, lambda f=fw._parse, pkt=pkt: f(pkt)),
                              ("read", reader, lambda f=reader, pkt=pkt, n=len(pkt): f(pkt, 0, n))):
            if what == "read" and name == "frag4":
                continue
            best = min(timeit.repeat(call, number=args.number, repeat=args.repeat)) / args.number * 1e9
            row.append(f"{what}:{name} {best:6.1f}")
    print("  ".join(row))


if __name__ == "__main__":
    main()

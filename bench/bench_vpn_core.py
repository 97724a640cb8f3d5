"""Per-packet cost of the sans-IO VPN data plane (no crypto, no I/O): outbound on one member,
inbound on the other, for 1200-byte UDP packets on one tracked flow.

    .venv/bin/python bench/bench_vpn_core.py   # writes bench/results/vpn_core.md
"""

import pathlib
import platform
import random
import struct
import time

from weftnet.core.vpn.firewall import Firewall
from weftnet.core.identity import Identity
from weftnet.core.vpn.netcert import NetworkAuthority
from weftnet.core.vpn.network import VpnNetwork

T0 = 1_800_000_000.0
OPEN = {"inbound": [{"proto": "udp", "port": "5000-6000", "group": "bench"}],
        "outbound": [{"proto": "any", "port": "any", "host": "any"}]}


def udp(src, dst, sport, dport, n):
    data = bytes(n)
    dg = struct.pack("!HHHH", sport, dport, 8 + n, 0) + data
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(dg), 1, 0x4000, 64, 17, 0,
                       bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + dg


def main(n=200_000):
    auth = NetworkAuthority.create("bench", ["10.1.0.0/24"], random.Random(1), T0)
    ids = [Identity.from_seed(bytes([i]) * 32) for i in (1, 2)]
    nets = []
    for i, ident in enumerate(ids):
        cert = auth.sign_member(ident.node_id, [f"10.1.0.{i + 1}"], ["bench"], not_before=int(T0) - 1,
                                not_after=int(T0) + 86400, serial=i + 1)
        nets.append(VpnNetwork(auth.descriptor, cert, T0, firewall=Firewall.from_config(OPEN)))
    a, b = nets
    a.add_certificate(b.own_cert, T0)
    b.add_certificate(a.own_cert, T0)
    pkt = udp("10.1.0.1", "10.1.0.2", 40000, 5353, 1172)
    a.outbound(pkt, T0)
    payload = a.outbound(pkt, T0).payloads[0]
    t = time.perf_counter()
    for _ in range(n):
        a.outbound(pkt, T0)
    out_s = (time.perf_counter() - t) / n
    sender = ids[0].node_id
    t = time.perf_counter()
    for _ in range(n):
        b.inbound(sender, payload, T0)
    in_s = (time.perf_counter() - t) / n
    lines = [
        "# VPN data-plane core (bench/bench_vpn_core.py)",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, one core, {n} packets of {len(pkt)} bytes,",
        "one tracked UDP flow, no encryption and no I/O (the core alone).",
        "",
        "| direction | µs per packet | packets/s | Mbit/s of inner packets |",
        "|---|---|---|---|",
        f"| outbound (TUN -> transport) | {out_s * 1e6:.2f} | {1 / out_s:,.0f} | {len(pkt) * 8 / out_s / 1e6:,.0f} |",
        f"| inbound (transport -> TUN) | {in_s * 1e6:.2f} | {1 / in_s:,.0f} | {len(pkt) * 8 / in_s / 1e6:,.0f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = pathlib.Path(__file__).resolve().parent / "results" / "vpn_core.md"
    out.write_text(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""UPDATE parse rate, weftnet's codec against exabgp's parser, on the same messages, in one run.

    .venv/bin/python bench/bgp/parse_rate.py [--routes 100000] [--repeat 3]

For each family (IPv4 unicast, VPNv4, EVPN type 2, EVPN type 5) it builds
UPDATEs the way a speaker packs them (as many routes per 4096-octet message as
fit, one attribute set), then times ``weftnet.core.bgp.update.parse_update``
and exabgp's ``Update.unpack_message`` (library level, with a Negotiated from
two OPENs) over the same bodies. Both produce full route objects. Best of
``--repeat`` runs; routes per second.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from bgp_exabgp import FAMILIES, _negotiated  # noqa: E402
from weftnet.core.bgp.attributes import AsPath, Attributes, ExtendedCommunities, LocalPref, NextHop, Origin  # noqa: E402
from weftnet.core.bgp.extcommunity import Encapsulation, RouteTarget  # noqa: E402
from weftnet.core.bgp.family import IPV4_UNICAST, L2VPN_EVPN, VPNV4  # noqa: E402
from weftnet.core.bgp.nlri import EvpnIpPrefix, EvpnMacIp, Prefix, RouteDistinguisher, VpnPrefix  # noqa: E402
from weftnet.core.bgp.speaker import _pack  # noqa: E402
from weftnet.core.bgp.update import UpdateContext, parse_update  # noqa: E402


def routes(kind: str, n: int):
    rd = RouteDistinguisher.parse("192.0.2.1:100")
    for i in range(n):
        if kind == "ipv4":
            yield Prefix(ipaddress.IPv4Network((0x0A000000 + (i << 8), 24)))
        elif kind == "vpnv4":
            yield VpnPrefix(rd, ipaddress.IPv4Network((0x0A000000 + (i << 8), 24)), 100 + i % 1000)
        elif kind == "evpn-mac":
            yield EvpnMacIp(rd, (0x020000000000 + i).to_bytes(6, "big"), ipaddress.IPv4Address(0x0A640000 + i), 100)
        else:
            yield EvpnIpPrefix(rd, ipaddress.IPv4Network((0x0A000000 + (i << 8), 24)), None, 100)


FAM = {"ipv4": IPV4_UNICAST, "vpnv4": VPNV4, "evpn-mac": L2VPN_EVPN, "evpn-prefix": L2VPN_EVPN}


def messages(kind: str, n: int) -> list[bytes]:
    attrs = Attributes([Origin(0), AsPath.sequence(65002), LocalPref(100),
                        ExtendedCommunities((RouteTarget.parse("65001:100"), Encapsulation(8)))])
    nh = ipaddress.IPv4Address("192.0.2.1")
    if kind == "ipv4":
        attrs = attrs.replace(NextHop(nh))
    return [m[19:] for m, _ in _pack(FAM[kind], [], {(attrs, nh): list(routes(kind, n))}, True)]


def bench(fn, bodies, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for b in bodies:
            fn(b)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update as XUpdate

    neg = _negotiated()
    ctx = UpdateContext(True, False, 65002, frozenset(FAMILIES))
    rows = []
    for kind in ("ipv4", "vpnv4", "evpn-mac", "evpn-prefix"):
        bodies = messages(kind, a.routes)
        got = sum(sum(map(len, parse_update(b, ctx).announced.values())) for b in bodies)
        theirs = sum(len(XUpdate.unpack_message(b, Direction.IN, neg).nlris) for b in bodies)
        assert got == theirs == a.routes, (kind, got, theirs)
        tw = bench(lambda b: parse_update(b, ctx), bodies, a.repeat)
        tx = bench(lambda b: XUpdate.unpack_message(b, Direction.IN, neg), bodies, a.repeat)
        rows.append({"family": kind, "routes": a.routes, "messages": len(bodies),
                     "weftnet_routes_per_s": round(a.routes / tw), "exabgp_routes_per_s": round(a.routes / tx),
                     "ratio": round(tx / tw, 2)})
        print(f"{kind:12s} {len(bodies):5d} msgs  weftnet {a.routes / tw:>10,.0f} routes/s  "
              f"exabgp {a.routes / tx:>10,.0f} routes/s  (weftnet {tx / tw:.2f}x)")
    if a.json:
        a.json.write_text(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

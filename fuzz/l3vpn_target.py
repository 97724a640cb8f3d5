"""The ``l3vpn`` fuzz target (fuzz/weftfuzz.py): a PE's labelled data plane under hostile input.

Our PE has two VRFs whose customers use the same addresses (red and blue,
both 10.1.0.0/25 at our site); a remote PE "R" is trusted, a stranger is
not. Inputs go to ``on_payload`` (from R or the stranger: MplsPacket,
MplsChunk, anything) and to ``outbound`` (packets from a VRF's TUN, with or
without a virtio_net_hdr). Nothing may raise; whatever reaches a TUN must be
an IP packet for an address of that VRF's own site, and whatever is sent
must go to R.

A fifth of the inputs are VPNv4/VPNv6 UPDATE bodies (mutations of the ones
a PE sends): the BGP codec parses them (a ``Notify`` is the codec refusing,
as it must) and the routes go through the plane's import, as the runtime
does with a path the speaker selected.
"""

from __future__ import annotations

import ipaddress
import struct

from weftnet.core.identity import Identity
from weftnet.core.l3vpn.ids import parse_rd, parse_rt
from weftnet.core.l3vpn.messages import CHUNK_SIZE, MplsPacket
from weftnet.core.l3vpn.plane import L3vpnPlane
from weftnet.core.l3vpn.policy import VrfPolicy
from weftnet.core.l3vpn.vrf import LocalRoute, VpnRoute, VrfConfig, vrf_key
from weftnet.core.vpn.network import VNET_HDR

N = ipaddress.ip_network
SITE = N("10.1.0.0/25")
REMOTE = N("10.1.0.128/25")
RED_LABEL, BLUE_LABEL, R_LABEL = 100, 101, 200


def build() -> tuple[L3vpnPlane, list, bytes, bytes]:
    remote = Identity.from_seed(bytes([5]) * 32).node_id
    stranger = Identity.from_seed(bytes([6]) * 32).node_id
    sent: list = []
    plane = L3vpnPlane(lambda node, payloads, now: sent.append((node, payloads)), [], nexthop="192.0.2.1")
    plane.set_pes({"192.0.2.5": remote})
    for name, rd, rt, label in (("red", "65000:1", "65000:100", RED_LABEL), ("blue", "65000:2", "65000:200", BLUE_LABEL)):
        plane.add_vrf(VrfConfig(name, parse_rd(rd), VrfPolicy.from_config([rt], [rt]), label=label))
        plane.set_local_route(name, LocalRoute(SITE, "static", "192.168.1.2"))
        plane.set_local_route(name, LocalRoute(N("fd00:1::/64"), "static", "fe80::2", "eth1"))
        plane.update_vpn([VpnRoute(parse_rd("65000:9" + str(label)), REMOTE, R_LABEL,
                                   frozenset({parse_rt(rt)}),
                                   "192.0.2.5", "bgp")])
    return plane, sent, remote, stranger


def _packets() -> list[bytes]:
    out = []
    for src, dst in (("10.1.0.200", "10.1.0.10"), ("fd00:2::1", "fd00:1::10"), ("10.1.0.10", "10.1.0.200")):
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        icmp = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"ping"
        if len(s) == 4:
            out.append(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, s, d) + icmp)
        else:
            out.append(struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 64, s, d) + icmp)
    return out


def update_corpus() -> list[bytes]:
    """UPDATE bodies (no BGP header) announcing and withdrawing VPNv4/VPNv6 routes, as a PE sends them."""
    from weftnet.core.bgp.attributes import Attributes, MpReach, MpUnreach
    from weftnet.core.bgp.family import VPNV4, VPNV6
    from weftnet.core.bgp.update import Update
    from weftnet.core.l3vpn.bgp import export_route, withdrawal

    out = []
    for prefix, rts in (("10.1.0.128/25", ["65000:100"]), ("10.9.0.0/16", ["65000:100", "65000:200", "1.2.3.4:5"]),
                        ("fd00:9::/48", ["65000:200"]), ("0.0.0.0/0", ["4200000000:7"])):
        r = VpnRoute(parse_rd("65000:77"), N(prefix), 300, frozenset(parse_rt(t) for t in rts), "")
        nlri, attrs, nh = export_route(r, "192.0.2.5")
        fam = VPNV4 if r.prefix.version == 4 else VPNV6
        out.append(Update(attributes=attrs.replace(MpReach(fam, nh, (nlri,)))).body(True))
        out.append(Update(attributes=Attributes([MpUnreach(fam, (withdrawal(r.rd, r.prefix),))])).body(True))
    return out


def corpus() -> list[bytes]:
    """Labelled payloads R would send us (both VRFs, chunks) and raw packets for a VRF's TUN side."""
    pkts = _packets()
    out = [MplsPacket.header(lab) + p for lab in (RED_LABEL, BLUE_LABEL) for p in pkts]
    plane, sent, _r, _s = build()
    big = pkts[2][:2] + struct.pack("!H", 20 + 8 + CHUNK_SIZE) + pkts[2][4:] + bytes(CHUNK_SIZE)
    plane.outbound(vrf_key("red"), [VNET_HDR.pack(1, 1, 40, 1240, 20, 16) + big], 0.0)
    for _node, payloads in sent:
        # As R would send them to us: relabel towards our red VRF.
        out += [p[:2] + struct.pack("!I", RED_LABEL << 12 | 0x1FF) + p[6:] for p in payloads]
    return out + pkts + [bytes(10) + p for p in pkts] + update_corpus()


class L3vpnTarget:
    def update(self, body: bytes) -> None:
        from weftnet.core.bgp.errors import Notify
        from weftnet.core.bgp.family import VPNV4, VPNV6
        from weftnet.core.bgp.rib import Path, PeerInfo
        from weftnet.core.bgp.update import UpdateContext, parse_update
        from weftnet.core.l3vpn.bgp import vpn_route_from_path

        try:
            parsed = parse_update(body, self.ctx)
        except Notify:
            return
        for fam in (VPNV4, VPNV6):
            for n in parsed.withdrawn.get(fam, ()):
                self.plane.update_vpn(withdraw=[(n.rd.packed, n.network)])
            if parsed.treat_as_withdraw:
                for n in parsed.announced.get(fam, ()):
                    self.plane.update_vpn(withdraw=[(n.rd.packed, n.network)])
                continue
            for n in parsed.announced.get(fam, ()):
                route = vpn_route_from_path(Path(n, parsed.attributes, parsed.next_hops.get(fam), self.peer))
                self.plane.update_vpn([route])

    def __init__(self, rng):
        import ipaddress as _ip

        from weftnet.core.bgp.family import VPNV4, VPNV6
        from weftnet.core.bgp.rib import PeerInfo
        from weftnet.core.bgp.update import UpdateContext

        self.ctx = UpdateContext(families=frozenset({VPNV4, VPNV6}))
        self.peer = PeerInfo("192.0.2.5", 65000, _ip.IPv4Address("192.0.2.5"), _ip.ip_address("192.0.2.5"), True)
        self.rng = rng
        self.reset()

    def reset(self) -> None:
        self.plane, self.sent, self.remote, self.stranger = build()
        self.now = 1_700_000_000.0
        self.inputs = 0

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        if self.inputs > 5000:
            self.reset()
        self.now += 0.001
        plane = self.plane
        r = self.rng.random()
        if r < 0.2:
            self.update(data)
        elif r < 0.6:
            sender = self.remote if self.rng.random() < 0.9 else self.stranger
            if len(data) >= 2 and data[0] == 1 and data[1] in (0x5C, 0x5D):
                plane.on_payload(sender, data, self.now)
            else:  # the transport's sink only sees these two types; decode stays the wire target's job
                plane.on_payload(sender, b"\x01\x5c" + data, self.now)
        else:
            plane.outbound(vrf_key(self.rng.choice(("red", "blue"))), [data], self.now, vnet=r < 0.8)
        for key, vnet, packet in plane.tun_out:
            vrf = plane._by_key[key]
            dst = packet[16:20] if packet[0] >> 4 == 4 else packet[24:40]
            e = vrf.fib.lookup(dst)
            if e is None or e.kind != "local" or len(vnet) not in (0, 10):
                raise AssertionError(f"delivered a packet to {vrf.name} that is not for its site")
        plane.tun_out.clear()
        for node, _payloads in self.sent:
            if node != self.remote:
                raise AssertionError("sent to a node that is not the PE of the route")
        self.sent.clear()

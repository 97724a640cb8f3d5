"""A hostile member or overlay peer against the data plane's tables and checks (docs/security.md item 17).

Each test drives the sans-IO cores (no sockets) as an attacker would and asserts what the attacker
and its victims see: packets delivered or dropped, frames sent to whom, table entries held, and
the signature checks a stranger's messages cost us. The figures before and after the fixes are in
bench/results/audit2/README.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from test_l2_core import A as L2_A, C as L2_C, L2Lab, arp_request, ip_frame
from test_vpn_core import T0, Net, node
from vpn_packets import tcp, udp
from weftnet.core import wire
from weftnet.core.identity import Identity
from weftnet.core.vpn import netcert
from weftnet.core.vpn.ethernet import parse_mac
from weftnet.core.vpn.firewall import INBOUND, OUTBOUND, Firewall, parse_packet
from weftnet.core.vpn.l2network import L2Frame
from weftnet.core.vpn.network import CertOffer, Deliver, Drop, Send

V, H, M = node(11), node(12), node(13)  # victim, honest member, hostile member
V4, H4, M4 = "10.1.0.1", "10.1.0.2", "10.1.0.3"
V6, M6 = "fd00:1::1", "fd00:1::3"

#: The victim opens TCP connections anywhere and serves DNS (UDP 53) to every member.
RULES = {"outbound": [{"proto": "tcp", "port": "any", "host": "any"}],
         "inbound": [{"proto": "udp", "port": 53, "host": "any"}]}


def _vpn():
    net = Net(seed=3)
    v = net.member(V, V4, V6, fw=RULES)
    h = net.member(H, H4)
    m = net.member(M, M4, M6)
    for x in (h, m):
        v.add_certificate(x.own_cert, T0)
    return net, v, h, m


def _vpn_packet(v, packet):
    from weftnet.core.vpn.network import VpnPacket

    return wire.encode(VpnPacket(v.network_id, packet))


def test_a_member_filling_conntrack_does_not_evict_another_members_flow():
    """A hostile member sends DNS queries from 70,000 source ports and addresses (each a flow the
    victim's firewall must track, its default table being 65,536): the victim's own TCP connection
    to an honest member must keep working (its reply passes); the member's flows push out its own."""
    net, v, h, m = _vpn()
    syn = tcp(V4, H4, 40000, 22, flags=0x02)
    assert isinstance(v.outbound(syn, T0), Send)  # the victim connects to the honest member
    for i in range(70_000):
        src, dst = (M4, V4) if i % 2 else (M6, V6)
        r = v.inbound(M.node_id, _vpn_packet(v, udp(src, dst, 1024 + i // 2, 53, data=b"q")), T0 + 1 + i * 1e-5)
        assert isinstance(r, Deliver)
    fw = v.firewall
    assert len(fw) <= fw.max_flows
    synack = tcp(H4, V4, 22, 40000, flags=0x12)
    r = v.inbound(H.node_id, _vpn_packet(v, synack), T0 + 2)
    assert isinstance(r, Deliver), f"the honest member's reply was dropped ({r})"
    assert fw.counters["evicted"] > 0  # the hostile member's own flows made room for its newer ones


def test_overlay_peers_at_their_quota_cannot_evict_a_lighter_peers_flow():
    """The overlay interface's firewall (any node may send; 1,024 flows per peer): peers at their
    quota fill the table; an honest peer's flow, opened before or after, survives."""
    fw = Firewall.from_config({"inbound": [{"proto": "udp", "port": 53, "host": "any"}],
                               "outbound": [{"proto": "tcp", "port": "any", "host": "any"}],
                               "conntrack": {"max_flows": 4096}}, default_max_flows_per_peer=1024)
    me = ipaddress.ip_address("fd77:6566::1")
    honest, sybils = b"H" * 32, [bytes([i]) * 32 for i in range(6)]
    out = parse_packet(tcp(str(me), "fd77:6566::2", 40000, 443))
    assert fw.check(OUTBOUND, out, honest, frozenset(), 0) is None
    t = 1.0
    for s in sybils:
        for port in range(1100):
            t += 1e-4
            fw.check(INBOUND, parse_packet(udp("fd77:6566::9", str(me), 1024 + port, 53)), s, frozenset(), t)
    assert len(fw) == 4096
    reply = parse_packet(tcp("fd77:6566::2", str(me), 443, 40000, flags=0x12))
    assert fw.check(INBOUND, reply, honest, frozenset(), t + 1) is None  # still tracked
    late = parse_packet(tcp(str(me), "fd77:6566::3", 40001, 443))
    assert fw.check(OUTBOUND, late, honest, frozenset(), t + 1) is None
    assert fw.check(INBOUND, parse_packet(tcp("fd77:6566::3", str(me), 443, 40001, flags=0x12)), honest,
                    frozenset(), t + 2) is None


def test_a_full_mac_table_takes_a_lighter_members_mac_and_does_not_flood_its_traffic():
    """Member A (hostile) fills B's MAC table up to its quota, the table being full with C's first
    MACs: C's next MAC must still be learned, so B's unicast frames to it go to C alone and are not
    flooded to every member — A included — at the flood rate."""
    lab = L2Lab(max_macs=6, mac_quota=4)
    b = lab.b
    for i in range(4):  # A at its quota
        frame = arp_request(parse_mac(f"02:aa:00:00:00:{0x10 + i:02x}"), "10.1.0.17", "10.1.0.2")
        assert isinstance(b.inbound(L2_A.node_id, wire.encode(L2Frame(b.network_id, frame)), T0 + i), Deliver)
    c_macs = [parse_mac(f"02:cc:00:00:00:{0x10 + i:02x}") for i in range(3)]
    for i, mac in enumerate(c_macs):
        frame = arp_request(mac, "10.1.0.49", "10.1.0.2")
        assert isinstance(b.inbound(L2_C.node_id, wire.encode(L2Frame(b.network_id, frame)), T0 + 10 + i), Deliver)
    assert b.member_of(c_macs[2], T0 + 20) == L2_C.node_id.raw, "C's third MAC was refused: the table is full"
    assert b.macs.count(L2_A.node_id.raw) == 3 and len(b.macs) == 6
    # B's host talks to C's third host: one copy, to C.
    frame = ip_frame(c_macs[2], parse_mac("02:bb:00:00:00:01"), udp("10.1.0.33", "10.1.0.49", 5000, 5000))
    r = b.outbound(frame, T0 + 21)
    assert isinstance(r, Send) and r.node_id == L2_C.node_id


def _stranger_offer(v, h):
    """A certificate offer from a node that is no member: a member's certificate with the
    stranger's node ID put in (the only kind it can make: its signature does not verify)."""
    stranger = node(99)
    cert = dataclasses.replace(h.own_cert, node_id=stranger.node_id.raw)
    return stranger, wire.encode(CertOffer(v.network_id, cert, 1))


def test_a_strangers_offers_and_replayed_revocation_lists_cost_one_signature_check(monkeypatch):
    """Any node with a session can send certificate offers naming itself and replay the network's
    revocation list; each used to cost the victim an Ed25519 verification (about 0.1 ms here) for
    the sender's cheap send. At most one per sender per interval now, and none for a list no newer
    than the one held."""
    net, v, h, m = _vpn()
    calls = []
    real = netcert.verify_signature
    monkeypatch.setattr(netcert, "verify_signature", lambda *a: calls.append(1) or real(*a))
    stranger, offer = _stranger_offer(v, h)
    for i in range(1000):
        r = v.inbound(stranger.node_id, offer, T0 + i * 0.001)
        assert isinstance(r, Drop)
    assert len(calls) <= 1, f"{len(calls)} signature checks for 1,000 offers from a stranger"
    rl = net.auth.revocation_list(1, int(T0), serials=[77])
    assert v.inbound(H.node_id, wire.encode(rl), T0) is None and v.revocations.seq == 1
    calls.clear()
    for i in range(1000):
        v.inbound(M.node_id, wire.encode(rl), T0 + 1 + i * 0.001)
    assert calls == [], f"{len(calls)} signature checks for 1,000 replays of the list held"
    # A member re-offering the certificate we hold costs no check either; a new list still goes in.
    calls.clear()
    for i in range(100):
        assert v.inbound(H.node_id, wire.encode(CertOffer(v.network_id, h.own_cert, 0)), T0 + 2 + i) is None
    assert calls == []
    rl2 = net.auth.revocation_list(2, int(T0), serials=[77, m.own_cert.serial])
    assert v.inbound(H.node_id, wire.encode(rl2), T0 + 200) is None
    assert v.revocations.seq == 2 and M.node_id.raw not in {c.node_id for c in v.members()}


def test_a_pe_announcing_a_full_vrf_cannot_take_the_sites_own_routes():
    """A remote PE (BGP peer, within its maximum-prefix) announces as many VPN routes as the VRF's
    prefix limit for a target the VRF imports: the site's own routes — a static one added later,
    a CE's — must still go in, and packets from the core to them still be delivered."""
    from weftnet.core.l3vpn.ids import parse_rd, parse_rt
    from weftnet.core.l3vpn.plane import L3vpnPlane
    from weftnet.core.l3vpn.policy import VrfPolicy
    from weftnet.core.l3vpn.vrf import LocalRoute, VpnRoute, VrfConfig
    from weftnet.core.l3vpn.messages import MplsPacket
    from vpn_packets import icmp_echo

    N = ipaddress.ip_network
    remote = Identity.from_seed(bytes([5]) * 32).node_id
    plane = L3vpnPlane(lambda node, payloads, now: None, [], nexthop="192.0.2.1")
    plane.set_pes({"192.0.2.5": remote})
    plane.add_vrf(VrfConfig("red", parse_rd("65000:1"), VrfPolicy.from_config(["65000:100"], ["65000:100"]),
                            label=100, max_routes=1000))
    assert plane.set_local_route("red", LocalRoute(N("10.1.0.0/25"), "static", "192.168.1.2"))
    flood = [VpnRoute(parse_rd("65000:9"), N(f"10.{200 + i // 256}.{i % 256}.0/24"), 200,
                      frozenset({parse_rt("65000:100")}), "192.0.2.5", "bgp") for i in range(1500)]
    plane.update_vpn(flood)
    assert plane.set_local_route("red", LocalRoute(N("10.1.1.0/24"), "ce1", "192.168.1.3")), \
        "the site's new route was refused: the PE's routes filled the VRF"
    red = plane.vrfs["red"]
    assert red.fib.get(N("10.1.1.0/24")).kind == "local"
    plane.on_payload(remote, MplsPacket.header(100) + icmp_echo("10.9.9.9", "10.1.1.7", 1), 0.0)
    assert [p[2][16:20] for p in plane.tun_out] == [ipaddress.ip_address("10.1.1.7").packed]
    assert len(red.imported) == 1000 and red.refused == 500  # the PE's own excess is what is refused


def lan_beacon_reflection(keys=60, seconds=30):
    """An attacker sends signed LAN beacons of fresh keys, two a second, with a victim's address as
    their source (spoofed; any key is free to make). Returns (beacon bytes, bytes and datagrams
    the victim received from the node that heard them)."""
    from hostile_tools import Sink
    from test_overlay_node import node as overlay_node
    from weftnet.core.overlay.discovery import LanDiscovery
    from weftnet.sim.harness import SimNetwork

    net = SimNetwork(8)
    rng = random.Random(8)
    f = overlay_node(net, Identity.generate(rng), 2, 8)
    victim = Sink()
    net.add(("198.51.100.7", 4500), victim)
    sent = 0
    idents = [Identity.generate(rng) for _ in range(keys)]
    per = max(1, keys // seconds)
    for t in range(seconds):
        for k in idents[per * t:per * (t + 1)]:
            b = LanDiscovery(k).beacon(4500, net.now)
            sent += len(b)
            f.lan_received(b, "198.51.100.7", net.now)
        net.flush(f.endpoint)
        net.run_for(1.0)
    net.run_for(30.0)
    return sent, victim.bytes, victim.datagrams


def test_lan_beacons_with_a_spoofed_source_reflect_less_than_they_cost():
    """A beacon (108 bytes, unauthenticated) made the node start a Noise handshake to its source
    address, with retries: 7.7x the beacon's bytes at a victim of the attacker's choosing. Now
    one Hello (64 bytes), never repeated, and a handshake only once that address answers."""
    sent, got, datagrams = lan_beacon_reflection()
    assert got <= sent, f"{got} bytes in {datagrams} datagrams to the victim for {sent} bytes of beacons"


def test_a_members_first_fragments_do_not_push_out_another_members():
    """The firewall remembers allowed first fragments (4,096) so their later fragments pass. A member
    sending 5,000 first fragments must not make an honest member's later fragment be refused."""
    from vpn_packets import ipv4

    net, v, h, m = _vpn()
    assert isinstance(v.inbound(H.node_id, _vpn_packet(v, udp(H4, V4, 5000, 53, data=b"a" * 32, ident=7, mf=True)),
                                T0), Deliver)
    for i in range(5000):  # each a new flow (a new source port), so each first fragment is remembered
        v.inbound(M.node_id, _vpn_packet(v, udp(M4, V4, 1024 + i, 53, data=b"b" * 32, ident=100 + i, mf=True)),
                  T0 + 1)
    later = ipv4(H4, V4, 17, b"c" * 24, ident=7, offset=40)
    r = v.inbound(H.node_id, _vpn_packet(v, later), T0 + 2)
    assert isinstance(r, Deliver), f"the honest member's later fragment was refused ({r})"
    assert len(v.firewall._fragments) <= 4096


def test_a_tracked_flows_fragmented_datagram_passes_whole():
    """Not an attack, found on the way: the first fragment of a datagram of an already tracked flow
    passed by the flow but was not remembered, so its later fragments were refused (a large DNS
    answer, say, lost its tail)."""
    from vpn_packets import ipv4

    net, v, h, m = _vpn()
    assert isinstance(v.inbound(H.node_id, _vpn_packet(v, udp(H4, V4, 5000, 53, data=b"q")), T0), Deliver)
    first = udp(H4, V4, 5000, 53, data=b"a" * 32, ident=9, mf=True)
    assert isinstance(v.inbound(H.node_id, _vpn_packet(v, first), T0 + 1), Deliver)
    r = v.inbound(H.node_id, _vpn_packet(v, ipv4(H4, V4, 17, b"c" * 24, ident=9, offset=40)), T0 + 2)
    assert isinstance(r, Deliver), r


def test_shares_finds_the_heaviest_owner_as_a_scan_would():
    """The O(1) count of entries per owner behind both tables' eviction agrees with a scan."""
    from weftnet.core.vpn.l2switch import Shares

    rng = random.Random(5)
    sh, naive = Shares(), {}
    for _ in range(20_000):
        o = rng.randrange(12)
        op = rng.random()
        if op < 0.55:
            sh.add(o)
            naive[o] = naive.get(o, 0) + 1
        elif op < 0.98 and naive.get(o):
            sh.remove(o)
            naive[o] -= 1
            if not naive[o]:
                del naive[o]
        elif op >= 0.98:
            sh.drop(o)
            naive.pop(o, None)
        top = max(naive.values(), default=0)
        assert sh.top == top and sh.counts == naive
        if top:
            h = sh.heaviest(rng.randrange(12))
            assert naive.get(h, 0) == top

"""The sans-IO layer-2 switch (core/vpn/l2network.py) under normal and hostile frames: learning,
aging, flooding and its rate limits, ARP/ND answered locally, quotas, anti-spoofing, the firewall
inside frames, offloaded superframes, and the version-2 certificate that grants MACs."""

import dataclasses
import ipaddress
import random
import struct

import pytest

from vpn_packets import icmp_echo, tcp, udp
from weftnet.core import wire
from weftnet.core.identity import Identity
from weftnet.core.vpn.ethernet import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IPV4,
    ETH_P_IPV6,
    _checksum,
    eui64_link_local,
    member_mac,
    parse_arp,
    parse_mac,
    parse_nd,
)
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.l2network import L2Frame, L2Network, LocalBinding, MemberScan
from weftnet.core.vpn.l2switch import AgingTable, TokenBucket
from weftnet.core.vpn.netcert import (
    BadSignature,
    Binding,
    L2Grant,
    MacPrefix,
    NetworkAuthority,
    cert_from_directory,
    cert_from_member_record,
)
from weftnet.core.vpn.network import (
    VNET_HDR,
    VNET_NONE,
    Deliver,
    Drop,
    RouteMiss,
    Send,
    VpnNetwork,
    VpnPacket,
)
from weftnet.errors import NetworkError

T0 = 1_800_000_000.0
OPEN = {"inbound": [{"proto": "any", "port": "any", "host": "any"}],
        "outbound": [{"proto": "any", "port": "any", "host": "any"}]}


def node(seed):
    return Identity.from_seed(random.Random(seed).randbytes(32))


A, B, C = node(1), node(2), node(3)
MAC_A1, MAC_B1, MAC_C1 = parse_mac("02:aa:00:00:00:01"), parse_mac("02:bb:00:00:00:01"), parse_mac("02:cc:00:00:00:01")


def eth(dst, src, etype, payload):
    return dst + src + struct.pack("!H", etype) + payload


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, ipaddress.ip_address(spa).packed, tha,
                       ipaddress.ip_address(tpa).packed)


def arp_request(src_mac, src_ip, target_ip):
    return eth(BROADCAST, src_mac, ETH_P_ARP, arp(1, src_mac, src_ip, bytes(6), target_ip))


def arp_reply_frame(src_mac, src_ip, dst_mac, dst_ip):
    return eth(dst_mac, src_mac, ETH_P_ARP, arp(2, src_mac, src_ip, dst_mac, dst_ip))


def ip_frame(dst_mac, src_mac, packet):
    return eth(dst_mac, src_mac, ETH_P_IPV4 if packet[0] >> 4 == 4 else ETH_P_IPV6, packet)


def neighbor_solicit(src_mac, src_ip, target_ip):
    target = ipaddress.ip_address(target_ip).packed
    src = ipaddress.ip_address(src_ip).packed
    dst = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
    icmp = struct.pack("!BBHI16s", 135, 0, 0, 0, target) + bytes((1, 1)) + src_mac
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 255, src, dst) + icmp
    return eth(bytes.fromhex("3333ff") + target[13:], src_mac, ETH_P_IPV6, ip)


class L2Lab:
    """A layer-2 network with three members: A (10.1.0.1), B (10.1.0.2), C (10.1.0.3).

    Each member's certificate grants a /40 of MACs (02:aa:.., 02:bb:.., 02:cc:..), the /28 of
    container addresses 10.1.0.16*n and binds one container (MAC 02:xx:00:00:00:01 at 10.1.0.16*n+1).
    """

    def __init__(self, fw=OPEN, **kw):
        self.auth = NetworkAuthority.create("l2lab", ["10.1.0.0/24", "fd00:1::/64"], random.Random(7), T0, layer=2)
        self.serial = 0
        self.nets = {}
        for ident, n, mac in ((A, 1, MAC_A1), (B, 2, MAC_B1), (C, 3, MAC_C1)):
            self.serial += 1
            grant = L2Grant((MacPrefix(mac[:5] + b"\x00", 40),),
                            (ipaddress.ip_network(f"10.1.0.{16 * n}/28"), ipaddress.ip_network(f"fd00:1::{n}00/120")),
                            (Binding(mac, ipaddress.ip_address(f"10.1.0.{16 * n + 1}")),))
            cert = self.auth.sign_member(ident.node_id, [f"10.1.0.{n}", f"fd00:1::{n}"], not_before=int(T0) - 1,
                                         not_after=int(T0) + 3600, serial=self.serial, l2=grant)
            self.nets[n] = L2Network(self.auth.descriptor, cert, T0, firewall=Firewall.from_config(fw), **kw)
        self.a, self.b, self.c = self.nets[1], self.nets[2], self.nets[3]
        for x in self.nets.values():
            for y in self.nets.values():
                if x is not y:
                    x.add_certificate(y.own_cert, T0)
            while x.next_event():
                pass

    def carry(self, src, send, now=T0):
        """Deliver a Send's payloads at its destination; return the results that are not None."""
        dst = next(n for n in self.nets.values() if n.node_id == send.node_id)
        out = [dst.inbound(src.node_id, p, now) for p in send.payloads]
        return dst, [r for r in out if r is not None]


def drain(net):
    out = []
    while (ev := net.next_event()) is not None:
        out.append(ev)
    return out


@pytest.fixture
def lab():
    return L2Lab()


# -- certificates ------------------------------------------------------------------------------


def test_a_v1_certificate_keeps_its_bytes_and_a_v2_certificate_is_signed_over_its_grant(lab):
    l3 = NetworkAuthority.create("lab", ["10.1.0.0/24"], random.Random(1), T0)
    v1 = l3.sign_member(A.node_id, ["10.1.0.1"], ["web"], not_before=0, not_after=10, serial=1)
    assert v1.l2 is None and len(wire.encode(v1)) == 169  # the layout docs/wire/vpn.md gives
    assert wire.decode(wire.encode(v1)) == v1
    v2 = lab.a.own_cert
    raw = wire.encode(v2)
    grant = bytearray()
    v2.l2._pack_body(grant)
    stripped = dataclasses.replace(v2, l2=None)
    assert wire.decode(raw) == v2 and raw == wire.encode(stripped) + b"\x02" + bytes(grant)
    # Stripping the grant turns it into a version-1 certificate whose signature no longer verifies.
    with pytest.raises(BadSignature):
        stripped.verify(lab.auth.descriptor, T0)
    # The descriptor says the layer, under its signature.
    assert lab.auth.descriptor.layer == 2 and wire.decode(wire.encode(lab.auth.descriptor)).layer == 2
    with pytest.raises(NetworkError, match="layer 3"):
        l3.sign_member(A.node_id, ["10.1.0.1"], not_before=0, not_after=10, serial=2, l2=L2Grant())


def test_a_layer_2_certificate_is_findable_by_bound_address_and_by_serial(lab):
    cert = lab.b.own_cert
    records = lab.auth.directory_records(cert)
    salts = {r.salt for r in records}
    assert len(records) == 4  # two addresses, one bound address, one member record
    bound = ipaddress.ip_address("10.1.0.33")
    rec = next(r for r in records if r.salt.endswith(bound.packed))
    assert cert_from_directory(rec, lab.auth.descriptor, bound) == cert
    member = next(r for r in records if b"member" in r.salt)
    assert cert_from_member_record(member, lab.auth.descriptor, cert.serial) == cert
    assert len(salts) == 4


def test_networks_refuse_the_other_layer(lab):
    with pytest.raises(NetworkError, match="layer-3"):
        l3 = NetworkAuthority.create("lab", ["10.1.0.0/24"], random.Random(1), T0)
        L2Network(l3.descriptor, l3.sign_member(A.node_id, ["10.1.0.1"], not_before=0, not_after=T0 + 10,
                                                serial=1), T0)
    r = lab.b.inbound(A.node_id, wire.encode(VpnPacket(lab.a.network_id, icmp_echo("10.1.0.1", "10.1.0.2", 1))), T0)
    assert isinstance(r, Drop) and r.reason == "wrong-layer"


# -- unicast, learning, aging -------------------------------------------------------------------


def test_a_unicast_frame_reaches_the_member_and_its_source_mac_is_learned(lab):
    host = parse_mac("02:aa:00:00:00:02")  # in A's range, not bound in its certificate
    frame = ip_frame(member_mac(lab.b.network_id, B.node_id.raw), host, icmp_echo("10.1.0.18", "10.1.0.2", 7))
    out = lab.a.outbound(frame, T0)
    assert isinstance(out, Send) and out.node_id == lab.b.node_id
    assert wire.decode(out.payloads[0]).TYPE == 0x53  # our certificate offer rides in front, the first time
    dst, res = lab.carry(lab.a, out)
    assert res == [Deliver(frame, b"")]
    assert dst.member_of(host, T0) == A.node_id.raw
    macs = {m["mac"]: m for m in dst.stats()["macs"]}
    assert macs["02:aa:00:00:00:02"] == {"mac": "02:aa:00:00:00:02", "member": A.node_id.text(), "kind": "learned",
                                         "age": 0.0}
    assert macs["02:aa:00:00:00:01"]["kind"] == "cert"  # bound: known without learning
    assert dst.stats()["mac_table"]["learned"] == 1


def test_learned_macs_age_out_and_the_timer_says_when():
    lab = L2Lab(mac_age=30)
    lab.b.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id, arp_request(parse_mac("02:aa:00:00:00:09"),
                                                                                "10.1.0.18", "10.1.0.33"))), T0)
    assert lab.b.member_of(parse_mac("02:aa:00:00:00:09"), T0 + 29) == A.node_id.raw
    assert lab.b.get_timer() == T0 + 30
    lab.b.handle_timer(T0 + 30)
    assert lab.b.member_of(parse_mac("02:aa:00:00:00:09"), T0 + 30) is None
    assert lab.b.stats()["mac_table"]["aged"] == 1 and lab.b.stats()["mac_table"]["entries"] == 0


def test_unknown_unicast_is_flooded_until_the_mac_is_learned(lab):
    unknown = parse_mac("02:bb:00:00:00:07")
    frame = ip_frame(unknown, MAC_A1, udp("10.1.0.17", "10.1.0.39", 5000, 53))
    out = lab.a.outbound(frame, T0)
    assert isinstance(out, list) and {s.node_id for s in out} == {lab.b.node_id, lab.c.node_id}
    assert lab.a.l2["unknown_unicast"] == 1
    # B answers from that MAC: A learns it and the next frame goes to B only.
    back = lab.b.outbound(ip_frame(MAC_A1, unknown, udp("10.1.0.39", "10.1.0.17", 53, 5000)), T0)
    lab.carry(lab.b, back)
    out = lab.a.outbound(frame, T0 + 1)
    assert isinstance(out, Send) and out.node_id == lab.b.node_id


def test_a_mac_that_moves_to_another_member_follows(lab):
    mobile = parse_mac("02:aa:00:00:00:05")
    # Give C a grant for the same MAC range by another certificate: a VM migrated from A to C.
    grant = L2Grant((MacPrefix(parse_mac("02:aa:00:00:00:00"), 40),), (ipaddress.ip_network("10.1.0.16/28"),))
    lab.serial += 1
    c2 = lab.auth.sign_member(C.node_id, ["10.1.0.3"], not_before=int(T0), not_after=int(T0) + 3600,
                              serial=lab.serial, l2=grant)
    lab.b.add_certificate(c2, T0)
    frame = eth(BROADCAST, mobile, ETH_P_ARP, arp(1, mobile, "10.1.0.20", bytes(6), "10.1.0.33"))
    lab.b.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id, frame)), T0)
    assert lab.b.member_of(mobile, T0) == A.node_id.raw
    lab.b.inbound(C.node_id, wire.encode(L2Frame(lab.a.network_id, frame)), T0 + 5)
    assert lab.b.member_of(mobile, T0 + 5) == C.node_id.raw
    assert lab.b.macs.stats["moved"] == 1


def test_a_mac_seen_behind_our_own_bridge_is_forgotten_as_remote(lab):
    # B's certificate grants A's MAC range too: a VM may migrate from A to B.
    grant = L2Grant((MacPrefix(parse_mac("02:aa:00:00:00:00"), 40), MacPrefix(parse_mac("02:bb:00:00:00:00"), 40)),
                    (ipaddress.ip_network("10.1.0.16/28"),))
    b2 = L2Network(lab.auth.descriptor, lab.auth.sign_member(B.node_id, ["10.1.0.2"], not_before=int(T0) - 1,
                                                             not_after=int(T0) + 3600, serial=20, l2=grant), T0)
    b2.add_certificate(lab.a.own_cert, T0)
    mobile = parse_mac("02:aa:00:00:00:05")
    b2.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id, arp_request(mobile, "10.1.0.20", "10.1.0.2"))), T0)
    assert b2.member_of(mobile, T0) == A.node_id.raw
    b2.outbound(arp_request(mobile, "10.1.0.20", "10.1.0.1"), T0 + 10)  # now it speaks from B's bridge
    assert b2.member_of(mobile, T0 + 10) is None and b2.macs.stats["moved"] == 1


# -- flooding, ARP and ND -----------------------------------------------------------------------


def test_an_arp_request_for_an_unknown_address_is_flooded_once_to_every_member(lab):
    out = lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.40"), T0)
    assert isinstance(out, list) and sorted(s.node_id.raw for s in out) == sorted([B.node_id.raw, C.node_id.raw])
    events = drain(lab.a)
    assert [str(e.address) for e in events if isinstance(e, RouteMiss)] == ["10.1.0.40"]
    # The asker is a host behind A's bridge: reported once, for a control plane to advertise.
    assert [e for e in events if isinstance(e, LocalBinding)] == [
        LocalBinding(MAC_A1, ipaddress.ip_address("10.1.0.17").packed)]
    # An address outside the network's prefixes is flooded too, but never looked up in the DHT.
    assert isinstance(lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "192.0.2.1"), T0), list)
    assert drain(lab.a) == []
    # Split horizon: what a member receives goes to its bridge, never on to another member.
    for s in out:
        dst, res = lab.carry(lab.a, s)
        assert all(isinstance(r, Deliver) for r in res)
        assert dst.messages_to_send() == []


def test_an_arp_request_for_a_certified_binding_is_answered_locally(lab):
    out = lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.33"), T0)
    assert isinstance(out, Deliver) and not out.vnet
    reply = parse_arp(out.packet[14:])
    assert out.packet[:6] == MAC_A1 and out.packet[6:12] == MAC_B1
    assert reply.op == 2 and reply.sha == MAC_B1 and reply.spa == ipaddress.ip_address("10.1.0.33").packed
    assert reply.tha == MAC_A1 and reply.tpa == ipaddress.ip_address("10.1.0.17").packed
    # A member's own address answers with the MAC of its bridge.
    out = lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.3"), T0)
    assert parse_arp(out.packet[14:]).sha == member_mac(lab.a.network_id, C.node_id.raw)
    assert lab.a.l2["arp_suppressed"] == 2 and lab.a.l2["flooded"] == 0


def test_a_snooped_arp_reply_lets_the_next_request_be_answered_locally(lab):
    host = parse_mac("02:bb:00:00:00:09")
    lab.a.inbound(B.node_id, wire.encode(L2Frame(lab.a.network_id,
                                                 arp_reply_frame(host, "10.1.0.40", MAC_A1, "10.1.0.17"))), T0)
    out = lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.40"), T0 + 1)
    assert isinstance(out, Deliver) and parse_arp(out.packet[14:]).sha == host
    # A request for a host behind our own bridge is left to that host: nothing crosses the WAN.
    lab.a.outbound(arp_reply_frame(parse_mac("02:aa:00:00:00:03"), "10.1.0.19", MAC_A1, "10.1.0.17"), T0)
    r = lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.19"), T0 + 2)
    assert isinstance(r, Drop) and r.reason == "arp-local"


def test_a_neighbor_solicitation_for_a_known_address_gets_a_valid_advertisement(lab):
    lab.b.outbound(neighbor_solicit(MAC_B1, "fd00:1::2", "fd00:1::3"), T0)  # B learns nothing from its own
    host_ll = eui64_link_local(MAC_A1)
    out = lab.a.outbound(neighbor_solicit(MAC_A1, str(ipaddress.ip_address(host_ll)), "fd00:1::2"), T0)
    assert isinstance(out, Deliver)
    frame = out.packet
    assert frame[:6] == MAC_A1 and frame[6:12] == member_mac(lab.a.network_id, B.node_id.raw)
    ip = frame[14:]
    na = parse_nd(ip)
    assert na.kind == 136 and na.target == ipaddress.ip_address("fd00:1::2").packed and na.lladdr == frame[6:12]
    pseudo = ip[8:24] + ip[24:40] + struct.pack("!I3xB", len(ip) - 40, 58)
    assert _checksum(pseudo + ip[40:]) == 0
    assert lab.a.l2["nd_suppressed"] == 1


def test_flooding_is_rate_limited_both_ways():
    lab = L2Lab(flood_rate=5)
    results = [lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", f"10.1.0.{100 + i}"), T0) for i in range(15)]
    assert sum(isinstance(r, list) for r in results) == 10  # a burst of twice the rate
    assert lab.a.drops["flood-rate"] == 5
    assert isinstance(lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.60"), T0 + 1), list)
    inbound = [lab.b.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id,
                                                            arp_request(MAC_A1, "10.1.0.17", "10.1.0.61"))), T0)
               for _ in range(12)]
    assert sum(isinstance(r, Deliver) for r in inbound) == 10
    assert lab.b.peers[A.node_id.raw].drops["flood-rate"] == 2


def test_a_member_learns_at_most_its_quota_of_macs():
    lab = L2Lab(mac_quota=4)
    for i in range(10):
        frame = arp_request(parse_mac(f"02:aa:00:00:00:{0x10 + i:02x}"), "10.1.0.17", "10.1.0.1")
        r = lab.b.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id, frame)), T0 + i)
        assert isinstance(r, Deliver)  # certified MACs still pass; they are just not remembered
    assert lab.b.macs.count(A.node_id.raw) == 4 and lab.b.macs.stats["quota"] == 6


# -- what members may source ------------------------------------------------------------------


@pytest.mark.parametrize("frame,reason", [
    (arp_request(parse_mac("02:cc:00:00:00:05"), "10.1.0.17", "10.1.0.2"), "spoofed-mac"),
    (arp_request(MAC_A1, "10.1.0.49", "10.1.0.2"), "spoofed-source"),
    (eth(BROADCAST, MAC_A1, ETH_P_ARP, arp(1, MAC_C1, "10.1.0.17", bytes(6), "10.1.0.2")), "spoofed-arp"),
    (ip_frame(MAC_B1, MAC_A1, icmp_echo("10.1.0.50", "10.1.0.33", 1)), "spoofed-source"),
    (ip_frame(MAC_B1, MAC_A1, icmp_echo("fd00:1::300", "fd00:1::2", 1)), "spoofed-source"),
    (eth(BROADCAST, MAC_A1, 0x88CC, bytes(40)), "ethertype"),
    (ip_frame(MAC_B1, BROADCAST, icmp_echo("10.1.0.17", "10.1.0.33", 1)), "spoofed-mac"),
    (ip_frame(MAC_C1, MAC_A1, icmp_echo("10.1.0.17", "10.1.0.49", 1)), "not-for-us"),
])
def test_a_member_sourcing_what_its_certificate_does_not_grant_is_dropped(lab, frame, reason):
    r = lab.b.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id, frame)), T0)
    assert isinstance(r, Drop) and r.reason == reason
    assert lab.b.peers[A.node_id.raw].drops[reason] == 1
    assert len(lab.b.macs) == 0 and len(lab.b.neighbors) == 0  # nothing learned from it


def test_our_own_bridge_may_source_only_what_our_certificate_grants(lab):
    r = lab.a.outbound(arp_request(parse_mac("02:bb:00:00:00:05"), "10.1.0.17", "10.1.0.2"), T0)
    assert isinstance(r, Drop) and r.reason == "bad-source-mac"
    r = lab.a.outbound(ip_frame(MAC_B1, MAC_A1, icmp_echo("10.1.0.99", "10.1.0.2", 1)), T0)
    assert isinstance(r, Drop) and r.reason == "bad-source"
    # The bridge's own MAC with the member's address, DHCP from 0.0.0.0 and an EUI-64 link-local source pass.
    own = lab.a.own_mac
    assert isinstance(lab.a.outbound(ip_frame(MAC_B1, own, icmp_echo("10.1.0.1", "10.1.0.2", 1)), T0), Send)
    assert isinstance(lab.a.outbound(ip_frame(BROADCAST, MAC_A1, udp("0.0.0.0", "255.255.255.255", 68, 67)), T0),
                      list)
    ll = str(ipaddress.ip_address(eui64_link_local(MAC_A1)))
    assert isinstance(lab.a.outbound(ip_frame(BROADCAST, MAC_A1, udp(ll, "ff02::1", 5353, 5353)), T0), list)


def test_the_firewall_judges_the_ip_packets_inside_frames():
    lab = L2Lab(fw={"outbound": OPEN["outbound"], "inbound": [{"proto": "icmp", "port": "any", "host": "any"}]})
    to_b = member_mac(lab.a.network_id, B.node_id.raw)
    _, res = lab.carry(lab.a, lab.a.outbound(ip_frame(to_b, MAC_A1, tcp("10.1.0.17", "10.1.0.2", 4000, 22)), T0))
    assert isinstance(res[-1], Drop) and res[-1].reason == "firewall"
    _, res = lab.carry(lab.a, lab.a.outbound(ip_frame(to_b, MAC_A1, icmp_echo("10.1.0.17", "10.1.0.2", 3)), T0))
    assert isinstance(res[-1], Deliver)
    # The reply is part of a tracked flow and returns through A's firewall.
    back = lab.b.outbound(ip_frame(MAC_A1, to_b, icmp_echo("10.1.0.2", "10.1.0.17", 3, reply=True)), T0)
    _, res = lab.carry(lab.b, back)
    assert isinstance(res[-1], Deliver)


def test_a_non_members_frames_never_reach_the_bridge(lab):
    stranger = node(9)
    r = lab.b.inbound(stranger.node_id, wire.encode(L2Frame(lab.a.network_id,
                                                            arp_request(MAC_A1, "10.1.0.17", "10.1.0.2"))), T0)
    assert isinstance(r, Drop) and r.reason == "not-member"
    assert lab.b.messages_to_send()[0][0] == stranger.node_id  # our offer, so a member that lost state re-offers


def test_a_removed_member_leaves_no_entries_behind(lab):
    lab.b.inbound(A.node_id, wire.encode(L2Frame(lab.a.network_id,
                                                 arp_request(MAC_A1, "10.1.0.17", "10.1.0.2"))), T0)
    assert lab.b.member_of(MAC_A1, T0) is not None and lab.b.neighbor(ipaddress.ip_address("10.1.0.17").packed, T0)
    rl = lab.auth.revocation_list(seq=1, issued_at=int(T0), serials=[lab.a.own_cert.serial])
    lab.b.update_revocations(rl)
    assert lab.b.member_of(MAC_A1, T0) is None
    assert lab.b.neighbor(ipaddress.ip_address("10.1.0.17").packed, T0) is None
    assert lab.b.neighbor(ipaddress.ip_address("10.1.0.17").packed, T0) is None


# -- offload, EVPN hooks, discovery ---------------------------------------------------------------


def test_an_offloaded_superframe_travels_in_chunks_with_its_header(lab):
    lab.a.chunk_size = 4096
    to_b = member_mac(lab.a.network_id, B.node_id.raw)
    seg = tcp("10.1.0.17", "10.1.0.2", 4000, 80, flags=0x10, data=bytes(20000))
    vnet = VNET_HDR.pack(1, 1, 14 + 40, 1448, 14 + 20, 16)
    frame = ip_frame(to_b, MAC_A1, seg)
    out = lab.a.outbound_vnet(vnet, frame, T0)
    assert isinstance(out, Send) and len(out.payloads) == 1 + 5  # the offer, then five 4 KB pieces
    _, res = lab.carry(lab.a, out)
    assert res == [Deliver(frame, vnet)]
    # A header the kernel would not produce never reaches the receiver's TAP.
    bad = VNET_HDR.pack(1, 1, 14 + 40, 1448, 2, 16)
    _, res = lab.carry(lab.a, lab.a.outbound_vnet(bad, frame, T0))
    assert isinstance(res[-1], Drop) and res[-1].reason == "bad-offload"
    assert lab.a.outbound_vnet(VNET_NONE, frame[:200], T0)  # a plain frame goes as an L2Frame


def test_a_control_plane_may_steer_frames_only_to_what_a_certificate_grants(lab):
    host = parse_mac("02:cc:00:00:00:33")
    lab.a.inbound(C.node_id, wire.encode(L2Frame(lab.a.network_id, arp_request(host, "10.1.0.50", "10.1.0.1"))), T0)
    assert [m["kind"] for m in lab.a.stats()["macs"] if m["mac"] == "02:cc:00:00:00:33"] == ["learned"]
    assert lab.a.install_remote(C.node_id, host, "10.1.0.50")
    # The route replaces what the frame taught: one entry, of kind evpn.
    assert [m["kind"] for m in lab.a.stats()["macs"] if m["mac"] == "02:cc:00:00:00:33"] == ["evpn"]
    assert lab.a.member_of(host, T0) == C.node_id.raw
    out = lab.a.outbound(arp_request(MAC_A1, "10.1.0.17", "10.1.0.50"), T0)
    assert isinstance(out, Deliver) and parse_arp(out.packet[14:]).sha == host
    assert not lab.a.install_remote(C.node_id, parse_mac("02:bb:00:00:00:33"))  # B's MACs
    assert not lab.a.install_remote(C.node_id, parse_mac("02:cc:00:00:00:34"), "10.1.0.17")  # A's address
    assert {"ip": "10.1.0.50", "mac": "02:cc:00:00:00:33", "member": C.node_id.text(), "kind": "evpn"} in \
        lab.a.stats()["bindings"]
    lab.a.withdraw_remote(C.node_id, host, "10.1.0.50")
    assert lab.a.member_of(host, T0) is None
    # A route for a MAC the certificate binds, withdrawn again, leaves the certificate's binding in place.
    assert lab.a.install_remote(C.node_id, MAC_C1, "10.1.0.49")
    assert {m["mac"]: m["kind"] for m in lab.a.stats()["macs"]}["02:cc:00:00:00:01"] == "evpn"
    lab.a.withdraw_remote(C.node_id, MAC_C1, "10.1.0.49")
    assert lab.a.member_of(MAC_C1, T0) == C.node_id.raw
    assert lab.a.neighbor(ipaddress.ip_address("10.1.0.49").packed, T0) == (MAC_C1, C.node_id.raw)


def test_the_member_scan_reads_unknown_serials_until_a_gap():
    lab = L2Lab()
    scan = MemberScan(lab.a)  # A holds serials 1 (itself), 2 and 3
    first = scan.next_serials()
    assert first == [4, 5, 6, 7, 8, 9, 10, 11]
    for s in first:
        scan.answered(s)
    scan.found(9)  # a member found at 9: the scan goes on to 9 + 16
    rest = []
    while not scan.done():
        batch = scan.next_serials()
        rest += batch
        for s in batch:
            scan.answered(s)
    assert rest == list(range(12, 26))


def test_aging_table_and_token_bucket_bounds():
    t = AgingTable(max_entries=3, quota=2, age=10)
    assert t.learn(b"a", "x", 1, 0) and t.learn(b"b", "x", 1, 0)
    assert not t.learn(b"c", "x", 1, 0)  # quota
    assert t.learn(b"c", "y", 1, 5) and t.learn(b"d", "z", 1, 5)  # full: x, the heaviest, loses its oldest
    assert b"a" not in t and t.count("x") == 1 and len(t) == 3
    assert t.stats["quota"] == 1 and t.stats["full"] == 1 and t.stats["evicted"] == 1
    assert t.next_expiry() == 10 and t.expire(10) == 1 and len(t) == 2 and t.count("x") == 0
    b = TokenBucket(2, 4, 0)
    assert [b.take(0) for _ in range(5)] == [True] * 4 + [False]
    assert b.take(0.5) and not b.take(0.5)


def test_every_new_message_round_trips_and_an_l3_network_refuses_l2_frames(lab):
    f = L2Frame(lab.a.network_id, arp_request(MAC_A1, "10.1.0.17", "10.1.0.2"))
    assert wire.decode(wire.encode(f)) == f
    l3 = NetworkAuthority.create("lab", ["10.1.0.0/24"], random.Random(1), T0)
    net = VpnNetwork(l3.descriptor, l3.sign_member(A.node_id, ["10.1.0.1"], not_before=0, not_after=int(T0) + 10,
                                                   serial=1), T0)
    r = net.inbound(B.node_id, wire.encode(L2Frame(net.network_id, f.frame)), T0)
    assert isinstance(r, Drop)

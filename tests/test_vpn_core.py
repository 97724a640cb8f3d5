"""The sans-IO VPN data plane under hostile input: members, spoofing, expiry, revocation,
firewall, MTU, and two networks with the same prefixes."""

import ipaddress
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpn_packets import icmp_echo, tcp, udp
from weftnet.core import wire
from weftnet.core.vpn.firewall import Firewall, parse_packet
from weftnet.core.identity import Identity, NodeId
from weftnet.core.vpn.netcert import CertificateError, NetworkAuthority
from weftnet.core.vpn.network import (
    CertOffer,
    Deliver,
    Drop,
    MemberAdded,
    MemberRemoved,
    RouteMiss,
    Send,
    VpnNetwork,
    VpnPacket,
    VpnSwitch,
    _checksum,
)
from weftnet.errors import NetworkError

T0 = 1_800_000_000.0
OPEN = {"inbound": [{"proto": "any", "port": "any", "host": "any"}],
        "outbound": [{"proto": "any", "port": "any", "host": "any"}]}


def node(seed):
    return Identity.from_seed(random.Random(seed).randbytes(32))


class Net:
    """One network with an authority and helpers to make members."""

    def __init__(self, seed=1, name="lab", prefixes=("10.1.0.0/24", "fd00:1::/64")):
        self.auth = NetworkAuthority.create(name, prefixes, random.Random(seed), T0)
        self.serial = 0

    def cert(self, ident, *ips, groups=(), life=3600.0, nb=None):
        self.serial += 1
        nb = T0 - 1 if nb is None else nb
        return self.auth.sign_member(ident.node_id, ips, groups, not_before=int(nb),
                                     not_after=int(nb + life), serial=self.serial)

    def member(self, ident, *ips, fw=OPEN, groups=(), life=3600.0, mtu=1280):
        return VpnNetwork(self.auth.descriptor, self.cert(ident, *ips, groups=groups, life=life), T0,
                          firewall=Firewall.from_config(fw), mtu=mtu)


def deliver(src_net, dst_net, packet, now=T0):
    """Send a packet from one member's TUN to another member; return what reaches its TUN."""
    out = src_net.outbound(packet, now)
    if not isinstance(out, Send):
        return out
    assert out.node_id == dst_net.node_id
    results = [dst_net.inbound(src_net.node_id, p, now) for p in out.payloads]
    return [r for r in results if r is not None]


A, B, C, X = node(1), node(2), node(3), node(4)


@pytest.fixture
def lab():
    net = Net()
    a = net.member(A, "10.1.0.1", "fd00:1::1")
    b = net.member(B, "10.1.0.2", "fd00:1::2", groups=("web",))
    return net, a, b


def test_first_packet_carries_the_offer_and_reaches_the_tun(lab):
    net, a, b = lab
    ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=7)
    assert isinstance(a.outbound(ping, T0), Drop)  # a does not know b yet
    assert a.drops["no-route"] == 1
    assert a.next_event() == RouteMiss(ipaddress.ip_address("10.1.0.2"))
    a.add_certificate(b.own_cert, T0)
    out = a.outbound(ping, T0)
    assert isinstance(out, Send) and len(out.payloads) == 2
    assert wire.decode(out.payloads[0]) == CertOffer(a.network_id, a.own_cert, 0)
    assert wire.decode(out.payloads[1]) == VpnPacket(a.network_id, ping)
    assert b.inbound(A.node_id, out.payloads[0], T0) is None
    assert b.inbound(A.node_id, out.payloads[1], T0) == Deliver(ping)
    # The reply goes back with b's offer; later packets carry no offer.
    pong = icmp_echo("10.1.0.2", "10.1.0.1", ident=7, reply=True)
    assert deliver(b, a, pong) == [Deliver(pong)]
    assert len(a.outbound(ping, T0 + 1).payloads) == 1
    assert b.peers[A.node_id.raw].packets_in == 1 and b.peers[A.node_id.raw].bytes_in == len(ping)
    assert a.stats()["peers"][B.node_id.text()]["packets_out"] == 2


def test_ipv6_inside_the_network(lab):
    net, a, b = lab
    a.add_certificate(b.own_cert, T0)
    pkt = udp("fd00:1::1", "fd00:1::2", 5000, 53)
    assert deliver(a, b, pkt) == [Deliver(pkt)]


def test_non_member_never_reaches_the_tun(lab):
    net, a, b = lab
    pkt = VpnPacket(a.network_id, icmp_echo("10.1.0.9", "10.1.0.1", ident=1)).encode()
    assert a.inbound(X.node_id, pkt, T0) == Drop("not-member")
    # It is asked (once per interval) to offer a certificate.
    assert a.messages_to_send() == [(X.node_id, CertOffer(a.network_id, a.own_cert, 1).encode())]
    assert a.inbound(X.node_id, pkt, T0 + 1) == Drop("not-member")
    assert a.messages_to_send() == []
    # A certificate from another authority for the same name and prefixes gets nowhere.
    rogue = Net(seed=99)
    fake = rogue.cert(X, "10.1.0.9")
    offer = CertOffer(a.network_id, fake, 0).encode()
    assert a.inbound(X.node_id, offer, T0) == Drop("wrong-network")
    forged = CertOffer(rogue.auth.network_id, fake, 0).encode()
    assert a.inbound(X.node_id, forged, T0) == Drop("wrong-network")
    assert a.inbound(X.node_id, pkt, T0 + 20) == Drop("not-member")
    assert X.node_id.raw not in a.peers  # no per-peer state for non-members
    assert a.drops["not-member"] == 3


def test_offer_must_be_the_senders_own_certificate(lab):
    net, a, b = lab
    offer = CertOffer(a.network_id, b.own_cert, 0).encode()
    assert a.inbound(X.node_id, offer, T0) == Drop("offer-not-own")
    assert a.route("10.1.0.2") is None


def test_spoofed_source_is_dropped(lab):
    net, a, b = lab
    c = net.member(C, "10.1.0.3")
    a.add_certificate(b.own_cert, T0)
    a.add_certificate(c.own_cert, T0)
    spoofed = VpnPacket(a.network_id, udp("10.1.0.3", "10.1.0.1", 1, 2)).encode()
    assert a.inbound(B.node_id, spoofed, T0) == Drop("spoofed-source", B.node_id)
    outside = VpnPacket(a.network_id, udp("192.168.1.1", "10.1.0.1", 1, 2)).encode()
    assert a.inbound(B.node_id, outside, T0) == Drop("spoofed-source", B.node_id)
    assert a.peers[B.node_id.raw].drops == {"spoofed-source": 2}
    not_for_us = VpnPacket(a.network_id, udp("10.1.0.2", "10.1.0.3", 1, 2)).encode()
    assert a.inbound(B.node_id, not_for_us, T0) == Drop("not-for-us", B.node_id)


def test_outbound_source_must_be_ours(lab):
    net, a, b = lab
    a.add_certificate(b.own_cert, T0)
    assert a.outbound(udp("10.1.0.7", "10.1.0.2", 1, 2), T0) == Drop("bad-source")
    assert a.outbound(b"\x45\x00", T0) == Drop("malformed:short-header")


def test_expired_certificates(lab):
    net, a, b = lab
    short = net.member(C, "10.1.0.3", life=60)
    a.add_certificate(short.own_cert, T0)
    pkt = VpnPacket(a.network_id, udp("10.1.0.3", "10.1.0.1", 1, 2)).encode()
    assert isinstance(a.inbound(C.node_id, pkt, T0 + 10), Deliver)
    assert a.get_timer() == short.own_cert.not_after
    assert a.inbound(C.node_id, pkt, T0 + 60) == Drop("cert-expired", C.node_id)
    events = []
    while (e := a.next_event()) is not None:
        events.append(e)
    assert MemberRemoved(C.node_id, "expired") in events
    assert a.inbound(C.node_id, pkt, T0 + 61) == Drop("not-member")
    # An expired certificate cannot be (re-)offered.
    assert a.inbound(C.node_id, CertOffer(a.network_id, short.own_cert, 0).encode(), T0 + 61) == Drop("cert-expired")
    # Outbound to an expired member also stops, via the timer.
    a.add_certificate(b.own_cert, T0)
    a.handle_timer(T0 + 4000)
    assert a.members() == []


def test_not_yet_valid_offer(lab):
    net, a, b = lab
    future = net.cert(C, "10.1.0.3", nb=T0 + 100)
    assert a.inbound(C.node_id, CertOffer(a.network_id, future, 0).encode(), T0) == Drop("cert-not-yet-valid")


def test_revocation_removes_member_and_is_checked(lab):
    net, a, b = lab
    a.add_certificate(b.own_cert, T0)
    pkt = VpnPacket(a.network_id, udp("10.1.0.2", "10.1.0.1", 1, 2)).encode()
    assert isinstance(a.inbound(B.node_id, pkt, T0), Deliver)
    crl = net.auth.revocation_list(seq=1, issued_at=int(T0), serials=[b.own_cert.serial])
    # A list signed by someone else is refused; the authority's is applied.
    bogus = Net(seed=7).auth.revocation_list(seq=9, issued_at=int(T0), serials=[b.own_cert.serial])
    assert a.inbound(X.node_id, bogus.encode(), T0) == Drop("wrong-network")
    assert a.inbound(X.node_id, crl.encode(), T0) is None
    assert a.inbound(B.node_id, pkt, T0) == Drop("not-member")
    assert a.inbound(B.node_id, CertOffer(a.network_id, b.own_cert, 0).encode(), T0) == Drop("cert-revoked")
    with pytest.raises(CertificateError):
        a.add_certificate(b.own_cert, T0)
    assert a.update_revocations(crl) is False  # not newer
    # A new certificate for the same node is not revoked by serial.
    fresh = net.cert(B, "10.1.0.2")
    assert a.add_certificate(fresh, T0) is True
    assert isinstance(a.inbound(B.node_id, pkt, T0), Deliver)


def test_inbound_firewall_denies_port_and_conntrack_allows_replies():
    net = Net()
    fw_a = {"inbound": [{"proto": "tcp", "port": 22, "group": "ops"}],
            "outbound": [{"proto": "any", "port": "any", "host": "any"}]}
    a = net.member(A, "10.1.0.1", fw=fw_a)
    b = net.member(B, "10.1.0.2", groups=("ops",))
    c = net.member(C, "10.1.0.3", groups=("web",))
    for m in (b, c):
        a.add_certificate(m.own_cert, T0)
        m.add_certificate(a.own_cert, T0)
    ssh = tcp("10.1.0.2", "10.1.0.1", 40000, 22)
    assert deliver(b, a, ssh) == [Deliver(ssh)]
    assert deliver(b, a, tcp("10.1.0.2", "10.1.0.1", 40000, 23)) == [Drop("firewall", B.node_id)]
    assert deliver(c, a, tcp("10.1.0.3", "10.1.0.1", 40000, 22)) == [Drop("firewall", C.node_id)]
    # a's own outbound connection to c: c's answer comes back through conntrack.
    syn = tcp("10.1.0.1", "10.1.0.3", 50000, 8080)
    assert deliver(a, c, syn) == [Deliver(syn)]
    synack = tcp("10.1.0.3", "10.1.0.1", 8080, 50000, flags=0x12)
    assert deliver(c, a, synack) == [Deliver(synack)]
    assert a.peers[C.node_id.raw].drops == {"firewall": 1}


def test_outbound_firewall_denies():
    net = Net()
    a = net.member(A, "10.1.0.1", fw={"outbound": [{"proto": "udp", "port": 53, "host": "any"}]})
    b = net.member(B, "10.1.0.2")
    a.add_certificate(b.own_cert, T0)
    assert isinstance(a.outbound(udp("10.1.0.1", "10.1.0.2", 1, 53), T0), Send)
    assert a.outbound(udp("10.1.0.1", "10.1.0.2", 1, 54), T0) == Drop("firewall", B.node_id)


def test_two_networks_with_the_same_prefixes_stay_separate():
    n1, n2 = Net(seed=1, name="one"), Net(seed=2, name="two")
    a1 = n1.member(A, "10.1.0.1")
    a2 = n2.member(A, "10.1.0.1")
    b1 = n1.member(B, "10.1.0.2")  # B is in network one only
    c2 = n2.member(C, "10.1.0.2")  # C holds the same address in network two
    switch = VpnSwitch()
    switch.add(a1)
    switch.add(a2)
    with pytest.raises(NetworkError):
        switch.add(a1)
    for sender, net in ((b1, a1), (c2, a2)):
        offer = CertOffer(net.network_id, sender.own_cert, 0).encode()
        assert switch.inbound(sender.node_id, offer, T0) == (net, None)
    assert a1.route("10.1.0.2") == B.node_id and a2.route("10.1.0.2") == C.node_id
    pkt = udp("10.1.0.2", "10.1.0.1", 1, 2)
    assert switch.inbound(B.node_id, VpnPacket(a1.network_id, pkt).encode(), T0) == (a1, Deliver(pkt))
    # B, member of one, aims at network two: not a member there.
    assert switch.inbound(B.node_id, VpnPacket(a2.network_id, pkt).encode(), T0) == (a2, Drop("not-member"))
    # C cannot get into network one by offering its network-two certificate there.
    assert switch.inbound(C.node_id, CertOffer(a1.network_id, c2.own_cert, 0).encode(), T0) == (a1, Drop("wrong-network"))
    assert switch.inbound(C.node_id, VpnPacket(a1.network_id, pkt).encode(), T0) == (a1, Drop("not-member"))
    # Outbound from the two TUNs goes to two different nodes.
    assert a1.outbound(udp("10.1.0.1", "10.1.0.2", 1, 2), T0).node_id == B.node_id
    assert a2.outbound(udp("10.1.0.1", "10.1.0.2", 1, 2), T0).node_id == C.node_id
    assert switch.inbound(B.node_id, VpnPacket(bytes(32), pkt).encode(), T0) == (None, Drop("unknown-network"))
    assert switch.inbound(B.node_id, b"\x01\x40hello", T0)[1] == Drop("undecodable")


def test_address_reassignment_goes_to_the_newer_certificate(lab):
    net, a, b = lab
    a.add_certificate(b.own_cert, T0)
    newer = net.cert(C, "10.1.0.2", nb=T0)
    assert a.add_certificate(newer, T0) is True
    assert a.route("10.1.0.2") == C.node_id
    assert B.node_id not in [NodeId(c.node_id) for c in a.members()]
    with pytest.raises(CertificateError, match="newer certificate"):
        a.add_certificate(b.own_cert, T0)
    with pytest.raises(CertificateError, match="own addresses"):
        a.add_certificate(net.cert(X, "10.1.0.1"), T0)


def test_too_big_with_df_returns_icmp_to_the_tun(lab):
    net, a, b = lab
    a.add_certificate(b.own_cert, T0)
    big = tcp("10.1.0.1", "10.1.0.2", 1000, 80, data=bytes(1400), df=True)
    out = a.outbound(big, T0)
    assert isinstance(out, Deliver)
    info = parse_packet(out.packet)
    assert (info.proto, info.icmp_type, info.src, info.dst) == (1, 3, b"\x0a\x01\x00\x02", b"\x0a\x01\x00\x01")
    assert out.packet[20 + 1] == 4  # code: fragmentation needed
    assert struct.unpack("!H", out.packet[26:28])[0] == 1280
    assert _checksum(out.packet[:20]) == 0 and _checksum(out.packet[20:]) == 0
    assert out.packet[28:48] == big[:20]  # quotes the header (+8 bytes)
    big6 = udp("fd00:1::1", "fd00:1::2", 1, 2, data=bytes(1300))
    out6 = a.outbound(big6, T0)
    assert isinstance(out6, Deliver)
    p = out6.packet
    assert p[40] == 2 and struct.unpack("!I", p[44:48])[0] == 1280 and len(p) <= 1280
    pseudo = p[8:24] + p[24:40] + struct.pack("!I3xB", len(p) - 40, 58)
    assert _checksum(pseudo + p[40:]) == 0
    assert a.drops["too-big"] == 2


def test_too_big_without_df_is_fragmented_and_passes_the_far_firewall():
    net = Net()
    a = net.member(A, "10.1.0.1", mtu=600)
    b = net.member(B, "10.1.0.2", fw={"inbound": [{"proto": "udp", "port": 53, "host": "any"}]})
    a.add_certificate(b.own_cert, T0)
    b.add_certificate(a.own_cert, T0)
    big = udp("10.1.0.1", "10.1.0.2", 1000, 53, data=bytes(range(256)) * 6)
    got = deliver(a, b, big)
    assert all(isinstance(r, Deliver) for r in got) and len(got) == 3
    frags = [r.packet for r in got]
    assert all(len(f) <= 600 for f in frags)
    assert b"".join(f[20:] for f in frags) == big[20:]
    offsets = [struct.unpack("!H", f[6:8])[0] for f in frags]
    assert [o & 0x2000 for o in offsets] == [0x2000, 0x2000, 0]
    assert all(_checksum(f[:20]) == 0 for f in frags)


def test_route_miss_is_rate_limited(lab):
    net, a, b = lab
    for t in (0, 1, 2):
        a.outbound(udp("10.1.0.1", "10.1.0.50", 1, 2), T0 + t)
    assert a.next_event() == RouteMiss(ipaddress.ip_address("10.1.0.50"))
    assert a.next_event() is None
    a.outbound(udp("10.1.0.1", "10.1.0.50", 1, 2), T0 + 6)
    assert isinstance(a.next_event(), RouteMiss)


def test_offer_with_reply_is_answered(lab):
    net, a, b = lab
    assert b.inbound(A.node_id, CertOffer(a.network_id, a.own_cert, 1).encode(), T0) is None
    ((to, payload),) = b.messages_to_send()
    assert to == A.node_id and wire.decode(payload) == CertOffer(b.network_id, b.own_cert, 0)
    assert isinstance(b.next_event(), MemberAdded)


def test_own_certificate_must_be_valid():
    net = Net()
    with pytest.raises(CertificateError):
        VpnNetwork(net.auth.descriptor, net.cert(A, "10.1.0.1", nb=T0 - 7200), T0)
    with pytest.raises(NetworkError, match="MTU"):
        VpnNetwork(net.auth.descriptor, net.cert(A, "10.1.0.1"), T0, mtu=100)


def test_batches_match_single_calls(lab):
    net, a, b = lab
    a.add_certificate(b.own_cert, T0)
    pkts = [udp("10.1.0.1", "10.1.0.2", p, 9) for p in range(1, 6)]
    outs = a.outbound_batch(pkts, T0)
    payloads = [(A.node_id, p) for o in outs for p in o.payloads]
    results = b.inbound_batch(payloads, T0)
    assert [r for r in results if r is not None] == [Deliver(p) for p in pkts]


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_payloads_only_ever_drop(data):
    net = Net()
    a = net.member(A, "10.1.0.1")
    b = net.member(B, "10.1.0.2")
    a.add_certificate(b.own_cert, T0)
    for sender in (X, B):
        for payload in (data, b"\x01\x52" + a.network_id + data, b"\x01\x53" + a.network_id + data,
                        b"\x01\x51" + a.network_id + data):
            r = a.inbound(sender.node_id, payload, T0)
            if isinstance(r, Deliver):  # only a well-formed packet from the member, to us, may pass
                info = parse_packet(r.packet)
                assert sender is B and (info.src, info.dst) == (b"\x0a\x01\x00\x02", b"\x0a\x01\x00\x01")
            else:
                assert r is None or isinstance(r, Drop)


def test_golden_vpn_packet_layout():
    nid = bytes(range(32))
    assert VpnPacket(nid, b"\x45abc").encode() == bytes((1, 0x52)) + nid + b"\x45abc"
    assert wire.decode(bytes((1, 0x52)) + nid + b"\x60") == VpnPacket(nid, b"\x60")
    with pytest.raises(wire.DecodeError):
        wire.decode(bytes((1, 0x52)) + nid)  # no packet
    net = Net()
    cert = net.cert(A, "10.1.0.1")
    raw = CertOffer(net.auth.network_id, cert, 1).encode()
    assert raw == bytes((1, 0x53)) + net.auth.network_id + wire.encode(cert)[2:] + b"\x01"
    with pytest.raises(wire.DecodeError):
        wire.decode(raw[:-1] + b"\x02")

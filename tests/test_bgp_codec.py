"""The BGP codec: agreement with exabgp's decoder, RFC 7606 decisions, header/OPEN errors, 4-octet AS, fuzzing."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgp_exabgp import exabgp_crosscheck  # noqa: F401  (fixture)
from bgp_pair import Net
from weftnet.core.bgp.attributes import (
    AS_TRANS, AsPath, Attributes, ClusterList, Communities, ExtendedCommunities, LocalPref, Med,
    MpReach, MpUnreach, NextHop, Origin, OriginatorId, PmsiTunnel, UnknownAttribute,
)
from weftnet.core.bgp.errors import Notify
from weftnet.core.bgp.extcommunity import Encapsulation, MacMobility, RouteTarget, RouterMac, decode_ext_community
from weftnet.core.bgp.family import IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6
from weftnet.core.bgp.message import MessageFramer, Notification, Open, RouteRefresh
from weftnet.core.bgp.nlri import (
    EvpnInclusiveMulticast, EvpnIpPrefix, EvpnMacIp, EvpnOther, Prefix, RouteDistinguisher, VpnPrefix, decode_nlri,
)
from weftnet.core.bgp.update import ParsedUpdate, Update, UpdateContext, end_of_rib, parse_update

pytestmark = pytest.mark.usefixtures("exabgp_crosscheck")  # every UPDATE encoded here is also decoded by exabgp
ALL = frozenset({IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6})
CTX = UpdateContext(True, False, 0, ALL)
EBGP = UpdateContext(True, True, 65002, ALL)
ip = ipaddress.ip_address
net = ipaddress.ip_network
RD = RouteDistinguisher.parse
BASE = [Origin(0), AsPath.sequence(65002, 65010)]


def evpn_routes():
    rd = RD("192.0.2.1:100")
    mac = bytes.fromhex("020000000001")
    return [
        EvpnMacIp(rd, mac, None, 100),
        EvpnMacIp(rd, mac, ip("10.1.1.1"), 100, 5000),
        EvpnMacIp(RD("65000:7"), mac, ip("2001:db8::1"), 100, ethernet_tag=3),
        EvpnInclusiveMulticast(rd, ip("192.0.2.1")),
        EvpnInclusiveMulticast(RD("4200000000:9"), ip("2001:db8::9"), 5),
        EvpnIpPrefix(rd, net("10.20.0.0/16"), None, 100),
        EvpnIpPrefix(rd, net("10.21.0.0/24"), ip("10.21.0.1"), 100),
        EvpnIpPrefix(rd, net("2001:db8:5::/48"), None, 100),
    ]


def sample_updates() -> list[Update]:
    rt = RouteTarget.parse("65000:100")
    ext = ExtendedCommunities((rt, RouteTarget.parse("192.0.2.1:7"), Encapsulation(8), MacMobility(3)))
    vpn = [VpnPrefix(RD("65000:1"), net("10.9.0.0/24"), 100), VpnPrefix(RD("192.0.2.1:2"), net("10.0.0.0/8"), 16)]
    vpn6 = [VpnPrefix(RD("65000:1"), net("2001:db8:9::/64"), 200)]
    return [
        Update(attributes=Attributes(BASE + [NextHop(ip("192.0.2.9")), Med(10), LocalPref(200),
                                             Communities((65000 << 16 | 1, 0xFFFFFF01)), OriginatorId(ip("9.9.9.9")),
                                             ClusterList((ip("1.1.1.1"), ip("2.2.2.2")))]),
               nlri=(Prefix.parse("192.0.2.0/24"), Prefix.parse("198.51.100.128/25"), Prefix.parse("0.0.0.0/0"))),
        Update(withdrawn=(Prefix.parse("203.0.113.0/24"), Prefix.parse("10.0.0.0/8"))),
        Update(attributes=Attributes(BASE + [MpReach(IPV6_UNICAST, ip("2001:db8::1"), (Prefix.parse("2001:db8:1::/48"),
                                                                                      Prefix.parse("::/0")))])),
        Update(attributes=Attributes([MpUnreach(IPV6_UNICAST, (Prefix.parse("2001:db8:2::/48"),))])),
        Update(attributes=Attributes(BASE + [ext, MpReach(VPNV4, ip("192.0.2.1"), tuple(vpn))])),
        Update(attributes=Attributes([MpUnreach(VPNV4, tuple(vpn))])),
        Update(attributes=Attributes(BASE + [ext, MpReach(VPNV6, ip("2001:db8::1"), tuple(vpn6))])),
        Update(attributes=Attributes([MpUnreach(VPNV6, tuple(vpn6))])),
        Update(attributes=Attributes(BASE + [ext, PmsiTunnel.ingress_replication(ip("192.0.2.1"), 100),
                                             MpReach(L2VPN_EVPN, ip("192.0.2.1"), tuple(evpn_routes()))])),
        Update(attributes=Attributes([MpUnreach(L2VPN_EVPN, tuple(evpn_routes()))])),
    ]


def test_updates_decode_alike_in_exabgp(exabgp_crosscheck):  # noqa: F811
    """Every UPDATE built here, and every one two speakers exchange below, is decoded by exabgp too (fixture)."""
    for u in sample_updates():
        body = u.body()
        p = parse_update(body, CTX)
        assert not p.treat_as_withdraw and not p.errors
        assert Update.encode(u)[19:] == body
    # what the speaker itself sends: unicast with MED/LOCAL_PREF rules, EVPN from instances
    n = Net()
    a = n.add("10.0.0.1", 65001, [IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4])
    b = n.add("10.0.0.2", 65001, [IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4])
    n.peer("10.0.0.1", "10.0.0.2")
    n.peer("10.0.0.2", "10.0.0.1")
    n.start()
    a.originate(Prefix.parse("192.0.2.0/24"), Attributes([Med(5), Communities((1,))]), now=n.now)
    a.originate(Prefix.parse("2001:db8::/32"), now=n.now)
    a.originate(VpnPrefix(RD("65001:1"), net("10.9.0.0/24"), 100),
                Attributes([ExtendedCommunities((RouteTarget.parse("65001:1"),))]), ip("10.0.0.1"), n.now)
    for r in evpn_routes():
        a.originate(r, Attributes([ExtendedCommunities((RouteTarget.parse("65001:100"), Encapsulation(8)))]),
                    ip("10.0.0.1"), n.now)
    n.pump()
    a.withdraw(Prefix.parse("192.0.2.0/24"), n.now)
    a.withdraw(evpn_routes()[0], n.now)
    n.pump()
    assert b.rib.count(L2VPN_EVPN) == len(evpn_routes()) - 1
    assert len(exabgp_crosscheck) > 10


@given(st.lists(st.sampled_from(evpn_routes() + [VpnPrefix(RD("1:1"), net("10.0.0.0/8"), 1)]), min_size=1, max_size=5))
def test_nlri_round_trip(routes):
    for r in routes:
        assert decode_nlri(r.family, r.encode()) == [r]


@given(st.integers(0, 128), st.binary(min_size=16, max_size=16))
def test_prefix_round_trip_and_host_bits(plen, raw):
    data = bytes([plen]) + raw[: (plen + 7) // 8]
    (p,) = decode_nlri(IPV6_UNICAST, data)
    assert p.network.prefixlen == plen
    assert decode_nlri(IPV6_UNICAST, p.encode()) == [p]


def body(attrs: bytes, nlri: bytes = b"", withdrawn: bytes = b"") -> bytes:
    return struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri


def attr(flags: int, code: int, value: bytes) -> bytes:
    return bytes([flags, code, len(value)]) + value


ORIGIN = attr(0x40, 1, b"\x00")
PATH = attr(0x40, 2, b"\x02\x01" + (65002).to_bytes(4, "big"))
NH = attr(0x40, 3, bytes([192, 0, 2, 1]))
NLRI = b"\x18\xc0\x00\x02"
GOOD = ORIGIN + PATH + NH


@pytest.mark.parametrize("case,attrs,nlri,ctx,expect", [
    ("well formed", GOOD, NLRI, CTX, "ok"),
    ("ORIGIN 3", attr(0x40, 1, b"\x03") + PATH + NH, NLRI, CTX, "withdraw"),
    ("ORIGIN flags say optional", attr(0xC0, 1, b"\x00") + PATH + NH, NLRI, CTX, "withdraw"),
    ("AS_PATH segment overrun", ORIGIN + attr(0x40, 2, b"\x02\x05\x00\x00") + NH, NLRI, CTX, "withdraw"),
    ("AS_PATH segment type 7", ORIGIN + attr(0x40, 2, b"\x07\x01\x00\x00\x00\x01") + NH, NLRI, CTX, "withdraw"),
    ("NEXT_HOP of 5 octets", ORIGIN + PATH + attr(0x40, 3, b"\x01\x02\x03\x04\x05"), NLRI, CTX, "withdraw"),
    ("NEXT_HOP 0.0.0.0", ORIGIN + PATH + attr(0x40, 3, bytes(4)), NLRI, CTX, "withdraw"),
    ("missing AS_PATH", ORIGIN + NH, NLRI, CTX, "withdraw"),
    ("missing NEXT_HOP", ORIGIN + PATH, NLRI, CTX, "withdraw"),
    ("MED of 3 octets", GOOD + attr(0x80, 4, b"\x00\x00\x01"), NLRI, CTX, "withdraw"),
    ("COMMUNITIES of 6 octets", GOOD + attr(0xC0, 8, bytes(6)), NLRI, CTX, "withdraw"),
    ("EXTENDED COMMUNITIES of 12", GOOD + attr(0xC0, 16, bytes(12)), NLRI, CTX, "withdraw"),
    ("CLUSTER_LIST empty", GOOD + attr(0x80, 10, b""), NLRI, CTX, "withdraw"),
    ("eBGP first AS is not the peer", ORIGIN + attr(0x40, 2, b"\x02\x01" + (65099).to_bytes(4, "big")) + NH, NLRI,
     EBGP, "withdraw"),
    ("ATOMIC_AGGREGATE with a value", GOOD + attr(0x40, 6, b"\x01"), NLRI, CTX, "discard"),
    ("AGGREGATOR of 5 octets", GOOD + attr(0xC0, 7, bytes(5)), NLRI, CTX, "discard"),
    ("LOCAL_PREF from eBGP", GOOD + attr(0x40, 5, b"\x00\x00\x00\x64"), NLRI, EBGP, "discard"),
    ("ORIGIN twice", GOOD + attr(0x40, 1, b"\x01"), NLRI, CTX, "discard"),
    ("attribute overruns the field", GOOD + b"\x40\x05\x09\x00", NLRI, CTX, (3, 1)),
    ("attribute header truncated", GOOD + b"\x40", NLRI, CTX, (3, 1)),
    ("unrecognised well-known attribute", GOOD + attr(0x40, 99, b"x"), NLRI, CTX, (3, 2)),
    ("MP_REACH twice", GOOD + attr(0x80, 15, b"\x00\x02\x01") * 2, b"", CTX, (3, 1)),
    ("MP_REACH next hop of 7 octets", ORIGIN + PATH + attr(0x80, 14, b"\x00\x02\x01\x07" + bytes(7) + b"\x00"), b"",
     CTX, (3, 9)),
    ("MP_REACH with a truncated EVPN route", ORIGIN + PATH + attr(0x80, 14, b"\x00\x19\x46\x04" + bytes(4) + b"\x00"
                                                                   + b"\x02\x21" + bytes(10)), b"", CTX, (3, 9)),
    ("MP_REACH flags say transitive", ORIGIN + PATH + attr(0xC0, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00"), b"",
     CTX, (3, 4)),
    ("IPv4 prefix of 33 bits", GOOD, b"\x21" + bytes(5), CTX, (3, 10)),
    ("IPv4 prefix runs past the end", GOOD, b"\x18\xc0", CTX, (3, 10)),
])
def test_rfc7606_decisions(case, attrs, nlri, ctx, expect):
    if isinstance(expect, tuple):
        with pytest.raises(Notify) as ei:
            parse_update(body(attrs, nlri), ctx)
        assert (ei.value.code, ei.value.subcode) == expect, case
        return
    p = parse_update(body(attrs, nlri), ctx)
    if expect == "ok":
        assert p.announced and not p.treat_as_withdraw
    elif expect == "withdraw":
        assert p.treat_as_withdraw and not p.announced
        assert p.withdrawn[IPV4_UNICAST] == [Prefix.parse("192.0.2.0/24")]
    else:
        assert not p.treat_as_withdraw and p.announced and p.discarded, case


def test_unknown_optional_transitive_is_kept_partial_and_nontransitive_dropped():
    p = parse_update(body(GOOD + attr(0xC0, 200, b"abc") + attr(0x80, 201, b"xyz"), NLRI), CTX)
    kept = p.attributes.get(200)
    assert isinstance(kept, UnknownAttribute) and kept.flags & 0x20 and kept.value == b"abc"
    assert p.attributes.get(201) is None
    assert kept.encode() == b"\xe0\xc8\x03abc"


def test_end_of_rib_markers():
    assert parse_update(end_of_rib(IPV4_UNICAST).body()).end_of_rib == IPV4_UNICAST
    assert parse_update(end_of_rib(L2VPN_EVPN).body(), CTX).end_of_rib == L2VPN_EVPN


def test_unsupported_family_is_ignored_not_fatal():
    mp = attr(0x80, 14, struct.pack("!HBB", 1, 133, 4) + bytes(4) + b"\x00" + b"\x07" + bytes(7))
    p = parse_update(body(ORIGIN + PATH + mp), CTX)
    assert not p.announced and p.ignored_families


def test_as4_towards_a_two_octet_peer():
    path = AsPath.sequence(4200000001, 65002, 70000)
    a = Attributes([Origin(0), path, NextHop(ip("192.0.2.1"))])
    b2 = Update(attributes=a, nlri=(Prefix.parse("192.0.2.0/24"),)).body(asn4=False)
    old = parse_update(b2, UpdateContext(False, False, 0, ALL))
    assert old.attributes.as_path == path  # AS4_PATH restored what AS_TRANS hid (RFC 6793 4.2.3)
    assert AS_TRANS.to_bytes(2, "big") in b2
    # a 4-octet speaker ignores AS4_PATH and reads the 4-octet AS_PATH
    assert parse_update(Update(attributes=a).body(True) + b"", CTX).attributes.as_path == path


def test_header_errors():
    marker = b"\xff" * 16
    cases = [
        (b"\x00" * 16 + b"\x00\x13\x04", (1, 1, b"")),
        (marker + b"\x00\x12\x04", (1, 2, b"\x00\x12")),
        (marker + b"\x00\x14\x04\x00", (1, 2, b"\x00\x14")),  # a KEEPALIVE is exactly 19
        (marker + b"\x10\x01\x02", (1, 2, b"\x10\x01")),  # over 4096
        (marker + b"\x00\x13\x09", (1, 3, b"\x09")),
    ]
    for data, (code, sub, d) in cases:
        with pytest.raises(Notify) as ei:
            MessageFramer().feed(data)
        assert (ei.value.code, ei.value.subcode, ei.value.data) == (code, sub, d)


def test_framer_reassembles_split_messages():
    msgs = [Open(65001, 90, ip("192.0.2.1")).encode(), RouteRefresh(L2VPN_EVPN).encode(), Notification(6, 2).encode()]
    stream = b"".join(msgs)
    f = MessageFramer()
    out = []
    for i in range(0, len(stream), 7):
        out += f.feed(stream[i:i + 7])
    assert [t for t, _ in out] == [1, 5, 3] and f.pending == 0


def open_body(version=4, asn=65001, hold=90, bgp_id="192.0.2.1", params=b""):
    return struct.pack("!BHH4sB", version, asn, hold, ip(bgp_id).packed, len(params)) + params


@pytest.mark.parametrize("kw,expect", [
    ({"version": 3}, (2, 1, b"\x00\x04")),
    ({"hold": 2}, (2, 6, b"")),
    ({"bgp_id": "0.0.0.0"}, (2, 3, bytes(4))),
    ({"bgp_id": "224.0.0.1"}, (2, 3, bytes([224, 0, 0, 1]))),
    ({"params": b"\x01\x02ab"}, (2, 4, b"")),
    ({"params": b"\x02\x05\x01\x04\x00\x01"}, (2, 0, b"")),  # parameter longer than what follows
    ({"params": b"\x02\x03\x41\x01\x00"}, (2, 0, b"")),  # 4-octet AS capability of 1 octet
    ({"asn": 0}, (2, 2, b"\x00\x00")),
])
def test_open_errors(kw, expect):
    b = open_body(**kw)
    if kw.get("params") == b"\x02\x05\x01\x04\x00\x01":
        b = b[:-1] + b"\x01"  # keep the declared length consistent with the message
    with pytest.raises(Notify) as ei:
        Open.decode(b)
    assert (ei.value.code, ei.value.subcode, ei.value.data) == expect


def test_open_round_trip_with_capabilities():
    from weftnet.core.bgp.capability import FourOctetAs, GracefulRestart, Multiprotocol, RouteRefreshCapability

    caps = (Multiprotocol(L2VPN_EVPN), RouteRefreshCapability(), FourOctetAs(4200000000),
            GracefulRestart(120, True, False, ((L2VPN_EVPN, True),)))
    o = Open(4200000000, 9, ip("192.0.2.1"), caps)
    d = Open.decode(o.encode()[19:])
    assert d.asn == 4200000000 and d.my_as_field == AS_TRANS and d.capabilities == caps


def test_extended_communities_round_trip():
    for c in (RouteTarget.parse("65000:100"), RouteTarget.parse("192.0.2.1:5"), RouteTarget.parse("4200000000:7"),
              Encapsulation(8), MacMobility(7, True), RouterMac(bytes.fromhex("020000000009"))):
        assert decode_ext_community(c.encode()) == c


def test_evpn_other_route_types_are_carried_whole():
    raw = bytes([1, 25]) + bytes(25)  # an Ethernet A-D route (type 1)
    (r,) = decode_nlri(L2VPN_EVPN, raw)
    assert isinstance(r, EvpnOther) and r.encode() == raw


VALID_BODIES = [u.body() for u in sample_updates()]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(VALID_BODIES), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=6),
       st.integers(0, 4096), st.booleans())
def test_mutated_updates_notify_or_withdraw_never_crash(base, edits, cut, ebgp):
    b = bytearray(base)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    b = bytes(b[: max(4, cut)]) if cut < len(b) else bytes(b)
    try:
        p = parse_update(b, EBGP if ebgp else CTX)
    except Notify as n:
        assert n.code in (1, 3)
        return
    assert isinstance(p, ParsedUpdate)
    if p.treat_as_withdraw:
        assert not p.announced


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_in_an_established_session_never_crash(data):
    """Through the whole session: NOTIFICATION (and Idle) or routes; never an exception."""
    n = Net()
    a = n.add("10.0.0.1", 65001, [IPV4_UNICAST, L2VPN_EVPN])
    n.add("10.0.0.2", 65002, [IPV4_UNICAST, L2VPN_EVPN])
    n.peer("10.0.0.1", "10.0.0.2")
    n.peer("10.0.0.2", "10.0.0.1")
    n.start()
    conn = next(c for c, s in a._conns.items())
    frame = b"\xff" * 16 + struct.pack("!HB", 19 + len(data) + 4, 2) + body(b"", data) if len(data) < 4000 else data
    a.data_received(conn, frame, n.now)
    sent = [x for x in a.actions()]
    st_ = a.peers["10.0.0.2"].sessions[0].state.value
    notes = [x for x in sent if type(x).__name__ == "Send" and x.data[18] == 3]
    assert st_ == "Established" or notes

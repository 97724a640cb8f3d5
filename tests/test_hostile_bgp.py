"""A hostile BGP peer (or a stranger at the BGP port) against the sans-IO speaker (docs/security.md item 17).

The speaker is driven as the daemon drives it, without sockets: TCP segments in, actions out. Each
test asserts what the attacker and the rest of the network see: bytes sent back, NOTIFICATION codes,
routes kept, addresses the EVPN data plane floods to.
"""

from __future__ import annotations

import ipaddress
import random

from weftnet.core.bgp import IPV4_UNICAST, L2VPN_EVPN, PeerConfig, Speaker, SpeakerConfig, State
from weftnet.core.bgp.attributes import AsPath, Attributes, MpReach, MpUnreach, NextHop, Origin
from weftnet.core.bgp.capability import FourOctetAs, Multiprotocol, RouteRefreshCapability
from weftnet.core.bgp import evpn as evpn_module
from weftnet.core.bgp.evpn import EviConfig, Evpn, RecordingDataplane
from weftnet.core.bgp.extcommunity import RouteTarget
from weftnet.core.bgp.attributes import ExtendedCommunities
from weftnet.core.bgp.message import Keepalive, MessageFramer, Open
from weftnet.core.bgp.nlri import EvpnInclusiveMulticast, Prefix, RouteDistinguisher
from weftnet.core.bgp.policy import RouteTargetImport
from weftnet.core.bgp.session import Send
from weftnet.core.bgp.update import Update

ip = ipaddress.ip_address
T0 = 1000.0
US, PEER, OTHER = "192.0.2.1", "192.0.2.2", "192.0.2.3"
FAMS = (IPV4_UNICAST, L2VPN_EVPN)
MAX_VTEPS_PER_VNI = getattr(evpn_module, "MAX_VTEPS_PER_VNI", 1024)  # (absent before the bound)


def speaker(max_prefixes=100_000, evpn=False):
    sp = Speaker(SpeakerConfig(65001, ipaddress.IPv4Address(US), FAMS), random.Random(1), T0)
    ev = None
    if evpn:
        sp.import_policy = rti = RouteTargetImport()
        ev = Evpn(sp, RecordingDataplane(), rti)
    for addr, asn in ((PEER, 65002), (OTHER, 65003)):
        sp.add_peer(PeerConfig(addr, asn, families=FAMS, max_prefixes=max_prefixes), T0)
    sp.start(T0)
    if ev is not None:
        ev.add_instance(EviConfig.auto(100, 65001, ipaddress.IPv4Address(US), ip(US), [RouteTarget.parse("65001:100")]),
                        T0)
    return sp, ev


def establish(sp, addr, asn, conn):
    s = sp.peers[addr].session
    if s.state == State.IDLE:
        s.handle_idle_accept(T0)
    assert sp.connection_accepted(conn, US, addr, T0)
    caps = tuple(Multiprotocol(f) for f in FAMS) + (RouteRefreshCapability(), FourOctetAs(asn))
    sp.data_received(conn, Open(asn, 90, ip(addr), caps).encode() + Keepalive().encode(), T0)
    sent(sp)
    assert s.state == State.ESTABLISHED, s.last_error


def sent(sp):
    """Everything the speaker sends now, as framed messages (type, body)."""
    out = []
    for act in sp.actions():
        if isinstance(act, Send):
            f = MessageFramer()
            out += f.feed(act.data)
    return out


def announce(asn, *prefixes, nh=PEER):
    return Update(attributes=Attributes([Origin(0), AsPath.sequence(asn), NextHop(ip(nh))]),
                  nlri=tuple(Prefix.parse(p) for p in prefixes)).encode(True)


def test_a_stranger_at_the_bgp_port_gets_nothing():
    sp, _ = speaker()
    assert not sp.connection_accepted(7, US, "203.0.113.9", T0)  # no configured peer there: refused
    assert sent(sp) == [] and sp.stats["connections_rejected"] == 1
    sp.data_received(7, Open(65009, 90, ip("203.0.113.9"), ()).encode(), T0)  # not a connection we hold
    assert sent(sp) == []


def test_a_malformed_attribute_withdraws_its_routes_and_loses_nothing_else_in_the_segment():
    """RFC 7606: an UPDATE whose ORIGIN is malformed is treat-as-withdraw; the UPDATEs before and after
    it in the same TCP segment are processed, the session stays up, and nothing is sent back."""
    sp, _ = speaker()
    establish(sp, PEER, 65002, 1)
    bad = bytearray(announce(65002, "198.51.100.0/24"))
    i = bad.index(bytes((0x40, 1, 1)))  # ORIGIN: flags, type, length 1, value
    bad[i + 3] = 7  # no such origin (RFC 4271 5.1.1)
    segment = announce(65002, "192.0.2.0/24") + bytes(bad) + announce(65002, "203.0.113.0/24")
    sp.data_received(1, segment, T0 + 1)
    replies = sent(sp)
    best = {str(p.nlri) for p in sp.rib.best_paths(IPV4_UNICAST)}
    assert best == {"192.0.2.0/24", "203.0.113.0/24"}
    assert sp.peers[PEER].session.state == State.ESTABLISHED and sp.stats["treat_as_withdraw"] == 1
    assert all(t != 3 for t, _ in replies)  # no NOTIFICATION


def test_a_broken_header_gets_one_notification_no_larger_than_it():
    sp, _ = speaker()
    establish(sp, PEER, 65002, 1)
    junk = b"\xfe" * 16 + (19).to_bytes(2, "big") + b"\x04"  # a KEEPALIVE with a bad marker
    sp.data_received(1, junk, T0 + 1)
    replies = sent(sp)
    notes = [(body[0], body[1]) for t, body in replies if t == 3]
    assert notes == [(1, 1)]  # Message Header Error / Connection Not Synchronized (RFC 4271 6.1)
    assert sum(19 + len(b) for _, b in replies) <= len(junk) + 2


def test_a_peer_past_its_maximum_prefix_is_reset_and_another_peers_routes_stay():
    sp, _ = speaker(max_prefixes=100)
    establish(sp, PEER, 65002, 1)
    establish(sp, OTHER, 65003, 2)
    sp.data_received(2, announce(65003, "203.0.113.0/24", nh=OTHER), T0 + 1)
    for k in range(3):  # 300 prefixes, 100 per UPDATE
        sp.data_received(1, announce(65002, *(f"10.{k}.{i}.0/24" for i in range(100))), T0 + 2)
    notes = [(b[0], b[1]) for t, b in sent(sp) if t == 3]
    assert notes == [(6, 1)]  # Cease / Maximum Number of Prefixes Reached (RFC 4486)
    assert sp.peers[PEER].prefixes_in == 0
    assert {str(p.nlri) for p in sp.rib.best_paths(IPV4_UNICAST)} == {"203.0.113.0/24"}
    assert sp.peers[OTHER].session.state == State.ESTABLISHED


def type3_update(originators, withdraw=False):
    rd = RouteDistinguisher.parse(f"{PEER}:100")
    routes = tuple(EvpnInclusiveMulticast(rd, ip(o)) for o in originators)
    if withdraw:
        return Update(attributes=Attributes([MpUnreach(L2VPN_EVPN, routes)])).encode(True)
    return Update(attributes=Attributes([Origin(0), AsPath.sequence(65002),
                                         ExtendedCommunities((RouteTarget.parse("65001:100"),)),
                                         MpReach(L2VPN_EVPN, ip(PEER), routes)])).encode(True)


def test_type3_routes_cannot_name_more_vteps_than_the_bound_for_flooded_frames():
    """Each type-3 route names a VTEP every flooded frame of the VNI is copied to (ingress
    replication). A peer naming addresses of its choice, 150 per UPDATE, must not make one
    broadcast frame go to thousands of them; and withdrawing them is one lookup each."""
    sp, ev = speaker(evpn=True)
    establish(sp, PEER, 65002, 1)
    names = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(3000)]
    for k in range(0, len(names), 150):
        sp.data_received(1, type3_update(names[k:k + 150]), T0 + 1)
    assert sp.peers[PEER].session.state == State.ESTABLISHED
    flood = ev.dp.flood.get(100, set())
    assert len(flood) == MAX_VTEPS_PER_VNI, f"a flooded frame goes to {len(flood)} addresses the peer named"
    assert ev.instances[100].stats.get("vtep_limit_drops") == 3000 - MAX_VTEPS_PER_VNI
    for k in range(0, len(names), 150):
        sp.data_received(1, type3_update(names[k:k + 150], withdraw=True), T0 + 2)
    assert ev.dp.flood.get(100, set()) == set() and ev.instances[100].bum == {}
    sp.data_received(1, type3_update(["192.0.2.2"]), T0 + 3)  # the real VTEP still gets in afterwards
    assert ev.dp.flood[100] == {ip("192.0.2.2")}

"""The overlay interface's sans-IO parts: the resolution cache, the per-packet checks, LAN beacons.

Time is a variable; nothing here sleeps or touches a socket.
"""

import ipaddress
import json
import pathlib
import random
import struct

import pytest
from vpn_packets import icmp_echo, ipv6, tcp, udp

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity, NodeId
from weftnet.core.overlay.dataplane import OverlayDataPlane, icmp6_unreachable
from weftnet.core.overlay.discovery import LanDiscovery
from weftnet.core.overlay.messages import BEACON_SIZE, LanBeacon, OverlayChunk, OverlayPacket
from weftnet.core.overlay.resolver import LIMITED, LOOKUP, NEGATIVE, PENDING, AddressCache
from weftnet.core.vpn.firewall import Firewall, PacketInfo, parse_packet, parse_rules
from weftnet.core.vpn.network import VNET_HDR, Deliver, Drop, Send
from weftnet.core.wire import decode, encode
from weftnet.errors import NetworkError

T0 = 1_700_000_000.0
RNG = random.Random(5)
A, B, C = (Identity.generate(RNG) for _ in range(3))
ALLOW_OUT = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
             "inbound": [{"proto": "icmpv6", "port": "any", "host": "any"}]}


def addr(ident) -> str:
    return str(ident.address)


def plane(ident=A, rules=ALLOW_OUT, **kw) -> OverlayDataPlane:
    return OverlayDataPlane(ident.address.packed, firewall=Firewall.from_config(rules), **kw)


def key(ident) -> bytes:
    return ident.address.packed[4:]


# -- the resolution cache ------------------------------------------------------------

def test_the_cache_only_learns_a_node_whose_id_carries_the_address():
    cache = AddressCache()
    assert not cache.learn(key(A), B.node_id, None, T0)  # B's key does not derive A's address
    assert cache.get(key(A), T0) is None
    assert cache.learn(key(A), A.node_id, None, T0)
    assert cache.get(key(A), T0 + 1).node_id == A.node_id
    assert not cache.forget(B.node_id) and cache.forget(A.node_id) and key(A) not in cache


def test_a_miss_looks_up_once_holds_packets_and_a_failure_is_remembered():
    cache = AddressCache(negative_ttl=15.0, max_held=2)
    assert cache.begin(key(B), T0) == LOOKUP
    assert cache.begin(key(B), T0) == PENDING  # one lookup per address at a time
    for i in range(4):
        cache.hold(key(B), f"p{i}", 100)
    assert cache.stats["held_dropped"] == 2  # only the newest two wait
    assert cache.finish(key(B), None, None, T0 + 1) == ["p2", "p3"]
    assert cache.begin(key(B), T0 + 5) == NEGATIVE  # nobody has it: no new lookup for a while
    assert cache.begin(key(B), T0 + 17) == LOOKUP
    contact = Contact(B.public_key, ("192.0.2.2", 4500))
    assert cache.finish(key(B), B.node_id, contact, T0 + 18) == []
    assert cache.get(key(B), T0 + 18).contact == contact


def test_a_found_node_that_does_not_derive_the_address_is_a_miss():
    cache = AddressCache()
    assert cache.begin(key(C), T0) == LOOKUP
    cache.finish(key(C), A.node_id, None, T0)  # a lookup "answered" with the wrong node
    assert cache.get(key(C), T0) is None and cache.begin(key(C), T0) == NEGATIVE


def test_a_scan_of_the_address_space_costs_a_bounded_number_of_lookups():
    cache = AddressCache(lookup_rate=8.0, lookup_burst=32.0, max_lookups=1000)
    rng = random.Random(1)
    states = [cache.begin(rng.randbytes(12), T0) for _ in range(10_000)]
    assert states.count(LOOKUP) == 32 and states.count(LIMITED) == 10_000 - 32
    # One second later the budget has refilled by the rate, not more.
    later = [cache.begin(rng.randbytes(12), T0 + 1.0) for _ in range(1000)]
    assert later.count(LOOKUP) == 8


def test_lookups_in_flight_and_held_bytes_are_bounded():
    cache = AddressCache(max_lookups=4, lookup_burst=100, max_held_bytes=1000)
    keys = [bytes([i]) * 12 for i in range(6)]
    assert [cache.begin(k, T0) for k in keys] == [LOOKUP] * 4 + [LIMITED] * 2
    assert cache.hold(keys[0], "a", 600) and not cache.hold(keys[1], "b", 600)
    assert not cache.hold(keys[0], "huge", 2000)
    assert cache.lookups_in_flight == 4


def test_entries_expire_when_idle_and_the_table_is_bounded():
    cache = AddressCache(max_entries=3, ttl=100.0)
    nodes = [Identity.generate(RNG) for _ in range(5)]
    for n in nodes:
        cache.learn(key(n), n.node_id, None, T0)
    assert len(cache) == 3 and cache.get(key(nodes[0]), T0) is None  # least recently used went first
    assert cache.get(key(nodes[4]), T0 + 99) is not None
    cache.expire(T0 + 150)
    assert len(cache) == 1  # only the one used at T0 + 99 is left


# -- the per-packet checks ---------------------------------------------------------

def test_outbound_checks_source_destination_and_mtu():
    p = plane()
    info = p.classify(b"", icmp_echo(addr(A), addr(B), 1), T0)
    assert isinstance(info, PacketInfo)
    assert p.classify(b"", icmp_echo("10.0.0.1", "10.0.0.2", 1), T0).reason == "not-ipv6"
    assert p.classify(b"", icmp_echo(addr(A), "ff02::16", 1), T0).reason == "not-overlay"  # the kernel's MLD
    assert p.classify(b"", icmp_echo(addr(C), addr(B), 1), T0).reason == "bad-source"
    big = udp(addr(A), addr(B), 1000, 2000, data=bytes(1400))
    r = p.classify(b"", big, T0)
    assert isinstance(r, Deliver)
    ptb = parse_packet(r.packet)
    assert ptb.proto == 58 and ptb.icmp_type == 2 and ptb.src == B.address.packed and ptb.dst == A.address.packed
    assert struct.unpack_from("!I", r.packet, 44)[0] == 1280  # the MTU the sender must use
    assert ptb.inner[1] == A.address.packed  # quotes the packet, so the kernel finds the socket
    # A TCP superpacket from a TUN with offload is larger than the MTU on purpose: it is chunked.
    sp = tcp(addr(A), addr(B), 40000, 22, data=bytes(30_000))
    vnet = VNET_HDR.pack(1, 4, 60, 1208, 40, 16)
    assert isinstance(p.classify(vnet, sp, T0), PacketInfo)
    assert p.classify(VNET_HDR.pack(0, 3, 0, 0, 0, 0), sp, T0).reason == "unsupported-offload"  # UFO


def test_send_builds_packets_and_chunks_and_the_outbound_firewall_holds():
    p = plane(chunk_size=20_000)
    pkt = icmp_echo(addr(A), addr(B), 7)
    r = p.send(p.classify(b"", pkt, T0), b"", pkt, B.node_id, T0)
    assert isinstance(r, Send) and r.node_id == B.node_id and decode(r.payloads[0]) == OverlayPacket(pkt)
    sp = tcp(addr(A), addr(B), 40000, 22, data=bytes(50_000))
    vnet = VNET_HDR.pack(1, 4, 60, 1208, 40, 16)
    r = p.send(p.classify(vnet, sp, T0), vnet, sp, B.node_id, T0)
    chunks = [decode(x) for x in r.payloads]
    assert [c.count for c in chunks] == [3, 3, 3] and b"".join(c.data for c in chunks) == vnet + sp
    only_icmp = plane(rules={"outbound": [{"proto": "icmpv6", "port": "any", "host": "any"}]})
    t = tcp(addr(A), addr(B), 40000, 22)
    assert only_icmp.send(only_icmp.classify(b"", t, T0), b"", t, B.node_id, T0).reason == "firewall"


def test_inbound_delivers_only_packets_from_the_senders_own_address():
    p = plane()  # we are A
    echo = icmp_echo(addr(B), addr(A), 3)
    assert p.inbound(B.node_id, encode(OverlayPacket(echo)), T0) == Deliver(echo)
    # C's session carrying a packet that claims to come from B: the source is C's to prove.
    r = p.inbound(C.node_id, encode(OverlayPacket(echo)), T0)
    assert r.reason == "spoofed-source" and p.drops["spoofed-source"] == 1
    assert p.inbound(B.node_id, encode(OverlayPacket(icmp_echo(addr(B), addr(C), 3))), T0).reason == "not-for-us"
    assert p.inbound(B.node_id, encode(OverlayPacket(icmp_echo("10.0.0.2", "10.0.0.1", 3))), T0).reason == "not-ipv6"
    assert p.inbound(B.node_id, b"\x01\x58", T0).reason == "undecodable"


def test_inbound_is_default_deny_and_replies_to_our_own_flows_come_in():
    p = plane()
    syn = tcp(addr(B), addr(A), 50000, 22)
    assert p.inbound(B.node_id, encode(OverlayPacket(syn)), T0).reason == "firewall"
    # We open a connection to B; its answer passes by connection tracking.
    out = tcp(addr(A), addr(B), 41000, 80)
    assert isinstance(p.send(p.classify(b"", out, T0), b"", out, B.node_id, T0), Send)
    answer = tcp(addr(B), addr(A), 80, 41000, flags=0x12)
    assert isinstance(p.inbound(B.node_id, encode(OverlayPacket(answer)), T0 + 1), Deliver)
    # ... but only from the node the flow is with: C cannot ride on it (nor claim B's address).
    c_answer = tcp(addr(C), addr(A), 80, 41000, flags=0x12)
    assert p.inbound(C.node_id, encode(OverlayPacket(c_answer)), T0 + 1).reason == "firewall"


def test_a_rule_by_node_or_by_address_admits_that_node_only():
    rules = {"outbound": ALLOW_OUT["outbound"],
             "inbound": [{"proto": "tcp", "port": 22, "host": B.node_id.text()},
                         {"proto": "tcp", "port": 80, "cidr": f"{addr(C)}/128"}]}
    p = plane(rules=rules)
    assert isinstance(p.inbound(B.node_id, encode(OverlayPacket(tcp(addr(B), addr(A), 5, 22))), T0), Deliver)
    assert p.inbound(C.node_id, encode(OverlayPacket(tcp(addr(C), addr(A), 5, 22))), T0).reason == "firewall"
    assert isinstance(p.inbound(C.node_id, encode(OverlayPacket(tcp(addr(C), addr(A), 5, 80))), T0), Deliver)
    assert p.inbound(B.node_id, encode(OverlayPacket(tcp(addr(B), addr(A), 5, 80))), T0).reason == "firewall"


def test_offloaded_chunks_are_reassembled_and_a_bad_header_never_reaches_the_kernel():
    sender, receiver = plane(B, chunk_size=20_000), plane(A, rules={"inbound": [{"proto": "tcp", "port": 22,
                                                                                 "host": "any"}]})
    sp = tcp(addr(B), addr(A), 40000, 22, data=bytes(50_000))
    vnet = VNET_HDR.pack(1, 4, 60, 1208, 40, 16)
    payloads = sender.send(sender.classify(vnet, sp, T0), vnet, sp, A.node_id, T0).payloads
    assert receiver.inbound(B.node_id, payloads[2], T0) is None
    assert receiver.inbound(B.node_id, payloads[0], T0) is None
    assert receiver.inbound(B.node_id, payloads[1], T0) == Deliver(sp, vnet)
    # A UDP fragmentation offload header (no TUN produces it here) is refused.
    bad = encode(OverlayChunk(9, 0, 1, VNET_HDR.pack(0, 3, 0, 100, 0, 0) + sp[:2000]))
    assert receiver.inbound(B.node_id, bad, T0).reason == "bad-offload"
    bad_count = encode(OverlayChunk(10, 0, 2, b"x" * 100))
    later = encode(OverlayChunk(10, 1, 3, b"x" * 100))
    assert receiver.inbound(B.node_id, bad_count, T0) is None
    assert receiver.inbound(B.node_id, later, T0).reason == "bad-chunk"


def test_per_peer_counters_and_flows_are_bounded():
    p = OverlayDataPlane(A.address.packed, max_peer_counters=8, firewall=Firewall.from_config(
        {"inbound": [{"proto": "udp", "port": "any", "host": "any"}]}, default_max_flows_per_peer=16))
    senders = [Identity.generate(RNG) for _ in range(20)]
    for s in senders:
        p.inbound(s.node_id, encode(OverlayPacket(udp(addr(s), addr(A), 1, 2))), T0)
    assert len(p.peers) == 8 and p.totals.packets_in == 20
    # One peer opening flow after flow stops at its quota; the others keep theirs.
    b = senders[0]
    results = [p.inbound(b.node_id, encode(OverlayPacket(udp(addr(b), addr(A), 1000 + i, 53))), T0) for i in range(40)]
    assert sum(isinstance(r, Deliver) for r in results) == 15 and p.drops["flow-quota"] == 25
    assert len(p.firewall) == 19 + 16


def test_removing_a_rule_cuts_the_flows_it_admitted_only():
    fw = Firewall.from_config({"outbound": ALLOW_OUT["outbound"],
                               "inbound": [{"proto": "tcp", "port": 22, "host": "any"}]})
    p = OverlayDataPlane(A.address.packed, firewall=fw)
    assert isinstance(p.inbound(B.node_id, encode(OverlayPacket(tcp(addr(B), addr(A), 5000, 22))), T0), Deliver)
    out = tcp(addr(A), addr(B), 6000, 80)
    p.send(p.classify(b"", out, T0), b"", out, B.node_id, T0)
    assert len(fw) == 2
    inbound, outbound = parse_rules({"outbound": ALLOW_OUT["outbound"]})
    assert fw.replace_rules(inbound, outbound) == 1
    assert p.inbound(B.node_id, encode(OverlayPacket(tcp(addr(B), addr(A), 5000, 22, flags=0x10))), T0).reason \
        == "firewall"
    assert isinstance(p.inbound(B.node_id, encode(OverlayPacket(tcp(addr(B), addr(A), 80, 6000, 0x10))), T0), Deliver)


def test_the_unreachable_error_quotes_the_packet_for_the_local_socket():
    pkt = tcp(addr(A), addr(B), 40000, 22)
    info = parse_packet(pkt)
    err = parse_packet(icmp6_unreachable(pkt, info))
    assert err.icmp_type == 1 and err.src == B.address.packed and err.dst == A.address.packed
    assert err.inner == (6, A.address.packed, 40000, B.address.packed, 22)


def test_the_data_plane_refuses_an_address_outside_the_overlay():
    with pytest.raises(NetworkError):
        OverlayDataPlane(ipaddress.IPv6Address("fd00::1").packed)
    with pytest.raises(NetworkError):
        OverlayDataPlane(A.address.packed, mtu=1000)


# -- LAN beacons ---------------------------------------------------------------------

def beacon(ident, port=4500, at=T0) -> bytes:
    return encode(LanBeacon.create(ident, port, int(at * 1000)))


def test_a_valid_beacon_names_the_key_at_its_source_address():
    d = LanDiscovery(A, T0)
    assert len(beacon(B)) == BEACON_SIZE
    c = d.receive(beacon(B, 4511), "192.0.2.7", T0 + 1)
    assert c == Contact(B.public_key, ("192.0.2.7", 4511))
    assert d.receive(d.beacon(4500, T0), "192.0.2.1", T0) is None and d.stats["own"] == 1


def test_forged_stale_and_replayed_beacons_are_refused():
    d = LanDiscovery(A, T0, cooldown=0.0)
    forged = bytearray(beacon(B))
    forged[35] ^= 1  # the port, after signing
    assert d.receive(bytes(forged), "192.0.2.7", T0) is None and d.stats["bad_signature"] == 1
    assert d.receive(beacon(B, at=T0 - 600), "192.0.2.7", T0) is None and d.stats["stale"] == 1
    assert d.receive(beacon(B, at=T0 + 600), "192.0.2.7", T0) is None and d.stats["stale"] == 2
    first = beacon(B, at=T0)
    assert d.receive(first, "192.0.2.7", T0) is not None
    # The same beacon again, from anywhere: a replay.
    assert d.receive(first, "192.0.2.66", T0 + 1) is None and d.stats["replayed"] == 1
    assert d.receive(b"\x01\x5a" + bytes(10), "192.0.2.7", T0) is None and d.stats["malformed"] == 1


def test_beacons_cost_bounded_work_per_source_per_key_and_in_all():
    d = LanDiscovery(A, T0, cooldown=30.0, connect_rate=2.0, connect_burst=3.0)
    got = [d.receive(beacon(B, at=T0 + i * 0.001), "192.0.2.7", T0) for i in range(10)]
    assert sum(c is not None for c in got) == 1  # one attempt per key per cooldown
    assert d.stats["source_limited"] == 6  # the source's burst of 4, then nothing this second
    keys = [Identity.generate(RNG) for _ in range(10)]
    out = [d.receive(beacon(k), f"192.0.2.{100 + i}", T0) for i, k in enumerate(keys)]
    assert sum(c is not None for c in out) == 2 and d.stats["connect_limited"] == 8  # global budget
    d2 = LanDiscovery(A, T0, max_keys=4, connect_burst=100)
    for i, k in enumerate(keys):
        d2.receive(beacon(k), f"192.0.2.{i}", T0)
    assert len(d2._keys) == 4


def test_the_beacon_vector_is_a_real_signature():
    vectors = json.loads((pathlib.Path(__file__).parent / "vectors" / "messages.json").read_text())
    (vec,) = [v for v in vectors if v["type"] == "LanBeacon"]
    b = decode(bytes.fromhex(vec["hex"]))
    assert b.verify() and b.port == 4500
    assert not LanBeacon(b.public_key, 4501, b.timestamp_ms, b.signature).verify()

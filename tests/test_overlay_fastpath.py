"""The overlay interface's fast paths (OverlayDataPlane.outbound_fast, inbound_fast, with their
plain halves for packets without offload; docs/overlay.md, "Data plane") decide exactly as the full
paths do.

Two copies of the same overlay plane (ours, A; B and C resolved in its address cache, D an address
nobody holds) see the same sequence of generated packets, each packet changed at random in its
offload header, IP header or ports, with the clock moving on (so flows and cache entries expire):
one copy is the plane as it runs (fast path first, the full path where the fast one declines),
the other the full path alone. Inbound, the packets come from B's session, in an OverlayChunk (with
the offload header) or an OverlayPacket (without, as a ping travels): from B's own address,
spoofed from C's, for A or not for A. Among the packets are pings and their replies (ICMPv6 echo,
and an IPv4 echo the interface refuses) and a UDP packet larger than the MTU. The firewall is the
overlay's default (inbound ICMPv6 only, outbound anything) with the two rules the benchmark adds,
``weft allow tcp 5201`` and ``weft allow udp 53``, so the default deny is exercised on every step. Every result (payloads
sent, packets for the TUN, drops and their reasons, lookups started) and every piece of state
the paths touch (the firewall's flows in order with their expiry, its counters and quotas, the
per-peer and total counters, the drops, the packet ID, the cache's entries in order with their
last use, its statistics, negative entries and held packets) must be the same after each packet.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vpn_packets import altered, icmp_echo, ipv6, tcp, udp

from weftnet.core.identity import Identity
from weftnet.core.overlay import OverlayPlane
from weftnet.core.overlay.resolver import AddressCache
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.network import GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR
from weftnet.runtime.config import OverlayConfig
from weftnet.runtime.overlay import FLOWS_PER_PEER, make_rule, overlay_firewall_config

T0 = 1_700_000_000.0
_RNG = random.Random(16)
A, B, C, D = (Identity.generate(_RNG) for _ in range(4))
SAVED = [make_rule("tcp", "5201", None), make_rule("udp", "53", None)]  # what `weft allow` saves
#: The overlay's default rules and these saved ones; a small per-peer quota, short UDP flows.
CFG = OverlayConfig(firewall={"conntrack": {"tcp_timeout": 30, "udp_timeout": 20, "max_flows_per_peer": 6}})


def firewall() -> Firewall:
    return Firewall.from_config(overlay_firewall_config(CFG, SAVED), "[overlay] firewall",
                                default_max_flows_per_peer=FLOWS_PER_PEER)


class _Transport:
    """Records what the plane sends; a session is up with B and C (the nodes it sends to)."""

    def __init__(self):
        self.sent: list = []

    def send_to(self, node_id, payload, now):
        self.sent.append(("session", node_id.raw, bytes(payload)))
        return node_id.raw in (B.node_id.raw, C.node_id.raw)

    def send(self, contact, payload, now):
        self.sent.append(("contact", contact, bytes(payload)))

    def has_session(self, node_id):
        return False

    def close(self, node_id, now):
        self.sent.append(("close", node_id.raw))


class _Table:
    def closest(self, target, n):
        return []


class _Dht:
    """Lookups are started (and recorded), never answered: a miss holds its packets."""

    def __init__(self):
        self.table = _Table()
        self.lookups: list = []

    def find_node(self, target, now):
        self.lookups.append(target.raw)
        return len(self.lookups)


def world() -> OverlayPlane:
    p = OverlayPlane(A, _Transport(), _Dht(), [], T0, cache=AddressCache(ttl=60.0, now=T0))
    p.enable(T0, firewall=firewall(), vnet=True, chunk_size=2048)  # the larger packets go in two chunks
    for n in (B, C):
        assert p.cache.learn(n.address.packed[4:], n.node_id, None, T0)
    return p


def _a(i) -> str:
    return str(i.address)


def _packets(src, dst):
    return [
        tcp(src, dst, 40000, 5201, flags=0x18, data=bytes(3000)),
        tcp(src, dst, 40000, 5201, flags=0x10),
        tcp(src, dst, 40001, 22, flags=0x02),
        udp(src, dst, 5000, 53, data=b"q" * 30),
        udp(src, dst, 5000, 9999, data=b"q" * 30),
        tcp(src, dst, 5201, 40000, flags=0x10),  # the other way round: a reply (or a stray)
        udp(src, dst, 53, 5000, data=b""),
        ipv6(src, dst, 0, bytes([6, 0]) + bytes(6) + tcp(src, dst, 40000, 5201, flags=0x10)[40:]),  # hop-by-hop
        icmp_echo(src, dst, 7),
        tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x10),  # IPv4 on the overlay interface
        icmp_echo(src, dst, 7, seq=2, data=bytes(56)),  # a ping as ping sends it
        icmp_echo(src, dst, 7, seq=2, reply=True, data=bytes(56)),  # and its reply
        udp(src, dst, 5000, 53, data=b"q" * 2000),  # more than the interface's MTU
        icmp_echo("10.1.0.1", "10.1.0.2", 7, seq=2, data=bytes(56)),  # an IPv4 ping
        icmp_echo(src, dst, 7, seq=3, data=b""),  # ping -s 0: 48 bytes
        icmp_echo(src, dst, 7, seq=3, reply=True, data=bytes(11)),  # 59 bytes, below a TCP header
        udp(src, dst, 5000, 53, data=b""),  # 48 bytes
    ]


# Out: ours to B, to C, to D (nobody), to ourselves, from someone else. In (from B's session):
# from B's address, from C's (spoofed), to D (not for us).
OUT = (_packets(_a(A), _a(B)) + _packets(_a(A), _a(C)) + _packets(_a(A), _a(D)) + _packets(_a(A), _a(A))
       + _packets(_a(C), _a(B)))
IN = _packets(_a(B), _a(A)) + _packets(_a(C), _a(A)) + _packets(_a(B), _a(D))

VNETS = [
    VNET_HDR.pack(1, GSO_TCPV6, 60, 1348, 40, 16),  # a TCPv6 superpacket
    VNET_HDR.pack(1, 0, 0, 0, 40, 16),  # checksum offload only (an ACK)
    VNET_HDR.pack(1, 0, 0, 0, 40, 6),  # checksum offload, UDP
    VNET_HDR.pack(0, 0, 0, 0, 0, 0),  # nothing: the plain path
    VNET_HDR.pack(1, GSO_UDP_L4, 48, 1200, 40, 6),  # UDP segmentation (the full path's)
    VNET_HDR.pack(1, GSO_TCPV6 | 0x80, 60, 1348, 40, 16),  # with ECN
    VNET_HDR.pack(1, GSO_TCPV4, 40, 1368, 40, 16),  # a TCPv4 kind on an IPv6 packet
    VNET_HDR.pack(2, GSO_TCPV6, 60, 1348, 40, 16),  # a flag a TUN never sets
    VNET_HDR.pack(1, GSO_TCPV6, 60, 0, 40, 16),  # no segment size
    VNET_HDR.pack(1, 3, 60, 1348, 40, 16),  # an unknown offload
    VNET_HDR.pack(1, 0, 0, 0, 4000, 16),  # a checksum offset outside the packet
]


def state(p: OverlayPlane):
    d, fw, c = p.data, p.data.firewall, p.cache
    return (list((k, v.as_dict()) for k, v in d.peers.items()), sorted(d.drops.items()), d.totals.as_dict(),
            d._next_packet_id, [(k, f.expires, f.proto, f.inbound) for k, f in fw._flows.items()],
            sorted(fw.counters.items()), sorted(fw._per_peer.items()) if fw._per_peer is not None else None,
            [(k, r.node_id.raw, r.contact, r.last_used) for k, r in c._routes.items()], sorted(c.stats.items()),
            list(c._negative.items()), {k: [(repr(i), s) for i, s in q] for k, q in c._pending.items()},
            c._held_bytes, sorted(p.stats.items()), sorted(p._lookups.items()), p.dht.lookups)


def chunk(vnet, packet, count=1, index=0):
    return b"\x01\x59" + struct.pack("!IBB", 9, index, count) + vnet + packet


def outputs(p: OverlayPlane):
    """What the step made the plane send and write to its TUN (taken out, for the next step)."""
    sent, p.transport.sent = p.transport.sent, []
    tun = [(k, bytes(v), bytes(pkt)) for k, v, pkt in p.tun_out]
    p.tun_out.clear()
    return sent, tun


def _full_outbound(p: OverlayPlane, packets, now):
    """The plane's outbound with the fast path switched off (the code before it, unchanged)."""
    data = p.data
    saved = data.outbound_fast
    data.outbound_fast = lambda buf, cache, now: None
    try:
        p.outbound(packets, now)
    finally:
        data.outbound_fast = saved


def _full_inbound(p: OverlayPlane, sender, payload, now):
    data = p.data
    saved = data.inbound_fast
    data.inbound_fast = lambda peer, payload, now: None
    try:
        p.on_payload(sender, payload, now)
    finally:
        data.inbound_fast = saved


#: Steps lean on the established flows (the bulk a data plane carries) so the fast paths are
#: taken often, and on the same packets changed, so they are declined at every check.
MAIN = [0, 0, 0, 1, 1, 3, 5, 6, 10, 10, 11, 11, 12]
_FLIPS = st.lists(st.tuples(st.integers(0, 69), st.integers(0, 255)), min_size=1, max_size=3)
step = st.tuples(
    st.booleans(),  # out (A's TUN) or in (from B's session)
    st.sampled_from(MAIN * 4 + list(range(len(OUT)))),
    st.sampled_from([0, 0, 1, 1, 2, 3, 3] * 3 + list(range(len(VNETS)))),
    st.integers(0, 4).flatmap(lambda k: _FLIPS if k == 0 else st.just([])),  # byte changes, one step in 5
    st.sampled_from([0] * 12 + [1, 2, 7]),  # bytes cut off the end
    st.sampled_from([0.0] * 6 + [0.5, 1.5, 5.0, 25.0, 70.0]),  # seconds passing first
    st.sampled_from([1] * 8 + [2]),  # chunk count (inbound)
    st.booleans(),  # inbound: in an OverlayPacket (no offload header) rather than an OverlayChunk
    st.sampled_from([0] * 10 + [1, 6]),  # bytes after the packet's end (as link-layer padding)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=20, max_size=60))
def test_the_fast_paths_decide_and_count_exactly_as_the_full_paths(steps):
    run(steps)


def run(steps) -> int:
    """The steps through both copies, compared after each; returns how many took a fast path."""
    fast, slow = world(), world()
    now = T0
    taken = 0
    for out, which, v, flips, cut, later, count, plain, pad in steps:
        now += later
        packets = OUT if out else IN
        buf = altered(VNETS[v] + packets[which % len(packets)], flips, cut) + bytes(pad)
        before = fast.data.firewall.counters["tracked_pass"]
        if out:
            fast.outbound([buf], now)
            _full_outbound(slow, [buf], now)
        else:
            payload = b"\x01\x58" + buf[10:] if plain else chunk(buf[:10], buf[10:], count)
            fast.on_payload(B.node_id, payload, now)
            _full_inbound(slow, B.node_id, payload, now)
        assert outputs(fast) == outputs(slow)
        assert state(fast) == state(slow)
        taken += fast.data.firewall.counters["tracked_pass"] - before
    return taken


def test_the_comparison_takes_the_fast_paths_often():
    """(The property above is worth something only if the fast paths are taken in it.)"""
    rng = random.Random(5)
    steps = []
    for _ in range(200):
        which = rng.choice(MAIN)
        ping = which >= 10  # without offload, as a ping is read from the TUN and sent
        steps.append((rng.random() < 0.5, which, 3 if ping else rng.choice([0, 1, 2]), [], 0, 0.5, 1, ping, 0))
    assert _count_fast(steps) >= 100
    pings = [(k % 2 == 0, 10 + k % 2, 3, [], 0, 0.5, 1, True, 0) for k in range(40)]  # out, reply in, ...
    assert _count_fast(pings) == 39  # all but the first, which opens the flow


def _count_fast(steps) -> int:
    """How many steps the fast paths themselves took (not the full path's tracked passes)."""
    p = world()
    data = p.data
    hits = [0]
    of, inf = data.outbound_fast, data.inbound_fast

    def outbound_fast(buf, cache, now):
        r = of(buf, cache, now)
        hits[0] += r is not None
        return r

    def inbound_fast(peer, payload, now):
        r = inf(peer, payload, now)
        hits[0] += r is not None
        return r

    data.outbound_fast, data.inbound_fast = outbound_fast, inbound_fast
    now = T0
    for out, which, v, _flips, _cut, later, count, plain, _pad in steps:
        now += later
        buf = VNETS[v] + (OUT if out else IN)[which]
        if out:
            p.outbound([buf], now)
        else:
            p.on_payload(B.node_id, b"\x01\x58" + buf[10:] if plain else chunk(buf[:10], buf[10:], count), now)
    return hits[0]


def test_an_established_flow_takes_the_fast_paths_and_the_default_deny_holds():
    """A TCP flow's superpackets out and its ACKs in, once the first packet opened it, take the fast
    paths: the same payload and TUN write as the full paths, the flow refreshed. A packet to a port
    no rule opens, from an address that is not the sender's, or from a flow never opened, is
    refused as before."""
    p = world()
    sends = []
    of = p.data.outbound_fast
    p.data.outbound_fast = lambda buf, cache, now: sends.append(of(buf, cache, now)) or sends[-1]
    syn = VNETS[1] + tcp(_a(A), _a(B), 40000, 5201, flags=0x02)
    p.outbound([syn], T0)
    assert sends == [None]  # a new flow: the full path opens it
    assert [s[1] for s in p.transport.sent] == [B.node_id.raw]
    data = VNETS[0] + tcp(_a(A), _a(B), 40000, 5201, flags=0x18, data=bytes(1900))
    p.outbound([data], T0 + 1)
    assert sends[1] is not None and sends[1][0].node_id == B.node_id
    assert p.transport.sent[-1] == ("session", B.node_id.raw, b"\x01\x59" + struct.pack("!IBB", 2, 0, 1) + data)
    ack = VNETS[1] + tcp(_a(B), _a(A), 5201, 40000, flags=0x10)
    assert p.data.inbound_fast(B.node_id.raw, chunk(ack[:10], ack[10:]), T0 + 2) is not None
    assert p.data.firewall.counters["tracked_pass"] == 2
    key = (6, A.address.packed, 40000, B.address.packed, 5201, B.node_id.raw)
    assert p.data.firewall._flows[key].expires == T0 + 2 + 30
    p.tun_out.clear()
    refused = [tcp(_a(B), _a(A), 40000, 22, flags=0x02),  # no rule opens port 22
               tcp(_a(C), _a(A), 5201, 40000, flags=0x10),  # C's address from B's session
               tcp(_a(B), _a(A), 5201, 40001, flags=0x10)]  # no flow 40001 was opened
    for pkt in refused:
        p.on_payload(B.node_id, chunk(VNETS[1], pkt), T0 + 3)
    assert p.tun_out == []
    assert p.data.drops == {"firewall": 2, "spoofed-source": 1}


def test_a_packet_from_another_address_than_the_senders_is_refused_even_if_a_flow_matched():
    """The fast path checks the source as the full path does, not only through the flow key: were
    a flow ever tracked under B's session for C's address, C's address still could not come in
    from B (nor could a packet to ourselves go out as a flow to a peer)."""
    for path in ("fast", "full"):
        p = world()
        fw = p.data.firewall
        fw._track((6, A.address.packed, 40000, C.address.packed, 5201, B.node_id.raw), T0, False)
        fw._track((6, A.address.packed, 40000, A.address.packed, 5201, A.node_id.raw), T0, False)
        fw._track((58, A.address.packed, 7, C.address.packed, 7, B.node_id.raw), T0, False)
        pkt = VNETS[1] + tcp(_a(C), _a(A), 5201, 40000, flags=0x10)
        ping = b"\x01\x58" + icmp_echo(_a(C), _a(A), 7, reply=True, data=bytes(56))  # no offload header
        for payload in (chunk(pkt[:10], pkt[10:]), ping):
            if path == "fast":
                p.on_payload(B.node_id, payload, T0 + 1)
            else:
                _full_inbound(p, B.node_id, payload, T0 + 1)
        assert p.tun_out == [] and p.data.drops == {"spoofed-source": 2}
        assert p.cache.learn(A.address.packed[4:], A.node_id, None, T0)  # our own address, as if resolved
        out = VNETS[1] + tcp(_a(A), _a(A), 40000, 5201, flags=0x10)
        (p.outbound if path == "fast" else lambda b, now: _full_outbound(p, b, now))([out], T0 + 1)
        fw._track((58, A.address.packed, 7, A.address.packed, 7, A.node_id.raw), T0, False)
        (p.outbound if path == "fast" else lambda b, now: _full_outbound(p, b, now))(
            [VNETS[3] + icmp_echo(_a(A), _a(A), 7, data=bytes(56))], T0 + 1)
        assert p.transport.sent == [] and p.data.drops == {"spoofed-source": 2, "not-overlay": 2}


@pytest.mark.parametrize("size", [56, 0, 11])  # ping's own, ping -s 0 (48 bytes), below a TCP header (59)
def test_a_ping_and_its_reply_take_the_fast_paths_once_the_first_opened_the_flow(size):
    """Pings out of the TUN (an all-zero offload header) and their replies in (OverlayPacket) take
    the fast paths once the first request opened the flow, with the full paths' payload and TUN
    write; so do pings from B and A's replies once B's first passed the inbound rule. A ping too
    big for the MTU, one from another address than its sender's, or one with another identifier
    (no flow yet) is left to the full path, which answers "packet too big", refuses the forged
    source and passes the new ping by the inbound ICMPv6 rule, as before. Short pings (``ping -s
    0``) too."""
    p = world()
    hits = []
    of, inf = p.data.outbound_fast, p.data.inbound_fast
    p.data.outbound_fast = lambda buf, cache, now: hits.append(of(buf, cache, now)) or hits[-1]
    p.data.inbound_fast = lambda peer, payload, now: hits.append(inf(peer, payload, now)) or hits[-1]
    none = VNETS[3]
    for seq in range(1, 4):
        ping = icmp_echo(_a(A), _a(B), 7, seq=seq, data=bytes(size))
        p.outbound([none + ping], T0 + seq)
        assert p.transport.sent[-1] == ("session", B.node_id.raw, b"\x01\x58" + ping)
        reply = icmp_echo(_a(B), _a(A), 7, seq=seq, reply=True, data=bytes(size))
        p.on_payload(B.node_id, b"\x01\x58" + reply, T0 + seq)
        assert [(k, bytes(v), bytes(pkt)) for k, v, pkt in p.tun_out] == [(b"overlay", b"", reply)]
        p.tun_out.clear()
    assert [h is not None for h in hits] == [False, True, True, True, True, True]
    key = (58, A.address.packed, 7, B.address.packed, 7, B.node_id.raw)
    fw = p.data.firewall
    assert fw._flows[key].expires == T0 + 3 + fw.timeouts.get(58, fw.timeouts[None])
    assert fw.counters["tracked_pass"] == 5 and fw.counters["rule_pass"] == 1
    hits.clear()
    for seq in range(1, 3):  # B pings A: the first passes the inbound ICMPv6 rule, the rest its flow
        p.on_payload(B.node_id, b"\x01\x58" + icmp_echo(_a(B), _a(A), 9, seq=seq, data=bytes(size)), T0 + 5)
        p.outbound([none + icmp_echo(_a(A), _a(B), 9, seq=seq, reply=True, data=bytes(size))], T0 + 5)
    assert [h is not None for h in hits] == [False, True, True, True]
    assert len(p.tun_out) == 2 and len(p.transport.sent) == 3 + 2
    p.tun_out.clear()
    hits.clear()
    big = icmp_echo(_a(A), _a(B), 7, seq=9, data=bytes(1300))
    p.outbound([none + big], T0 + 6)
    spoofed = icmp_echo(_a(C), _a(A), 7, seq=9, reply=True, data=bytes(56))
    p.on_payload(B.node_id, b"\x01\x58" + spoofed, T0 + 6)
    other = icmp_echo(_a(B), _a(A), 8, seq=9, data=bytes(56))
    p.on_payload(B.node_id, b"\x01\x58" + other, T0 + 6)
    assert hits == [None, None, None]
    assert len(p.transport.sent) == 5  # nothing more sent
    assert [bytes(pkt) for _k, _v, pkt in p.tun_out][1:] == [other]
    assert bytes(p.tun_out[0][2])[40] == 2  # ICMPv6 packet too big, to the application
    assert p.data.drops == {"too-big": 1, "spoofed-source": 1}
    assert fw.counters["rule_pass"] == 3

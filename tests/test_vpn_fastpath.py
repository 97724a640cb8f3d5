"""The data plane's fast paths (VpnNetwork.outbound_fast, inbound_fast, inbound_packet_fast;
docs/dataplane.md) decide exactly as the full path does.

Two copies of the same two networks see the same sequence of generated packets, each packet
changed at random in its offload header, IP header or ports, with the clock moving on (so flows
and certificates expire): one copy takes the fast path first and the full path only where the
fast one declines, as the plane does; the other only the full path. Every result (payloads sent,
packets for the TUN, drops and their reasons) and every piece of state the paths touch (the
firewall's flows in order with their expiry, its counters, the per-member counters, drops,
packet IDs, offers, events) must be the same after each packet.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_vpn_core import T0, Net, node
from vpn_packets import altered, icmp_echo, ipv4, tcp, udp

from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.network import GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR, Deliver, Drop, Send

#: Outbound: TCP anywhere, UDP to port 53, pings; inbound: TCP to 5201, UDP from anyone to 53. Anything
#: else is refused unless a flow this side opened answers it.
RULES = {"outbound": [{"proto": "tcp", "port": "any", "host": "any"}, {"proto": "udp", "port": 53, "host": "any"},
                      {"proto": "icmp", "port": "any", "host": "any"}, {"proto": "icmpv6", "port": "any", "host": "any"}],
         "inbound": [{"proto": "tcp", "port": 5201, "host": "any"}, {"proto": "udp", "port": 53, "host": "any"}],
         "conntrack": {"tcp_timeout": 30, "udp_timeout": 20, "max_flows_per_peer": 6}}

A4, B4, C4, X4 = "10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.9"
A6, B6, C6 = "fd00:1::1", "fd00:1::2", "fd00:1::3"

VNETS = [
    VNET_HDR.pack(1, GSO_TCPV4, 40, 1368, 20, 16),  # a TCPv4 superpacket
    VNET_HDR.pack(1, GSO_TCPV6, 60, 1348, 40, 16),  # a TCPv6 superpacket
    VNET_HDR.pack(1, 0, 0, 0, 20, 16),  # checksum offload only (an ACK)
    VNET_HDR.pack(0, 0, 0, 0, 0, 0),  # nothing: the plain path
    VNET_HDR.pack(1, GSO_UDP_L4, 28, 1200, 20, 6),  # UDP segmentation (the full path's)
    VNET_HDR.pack(1, GSO_TCPV4 | 0x80, 40, 1368, 20, 16),  # with ECN
    VNET_HDR.pack(2, GSO_TCPV4, 40, 1368, 20, 16),  # a flag a TUN never sets
    VNET_HDR.pack(1, GSO_TCPV4, 40, 0, 20, 16),  # no segment size
    VNET_HDR.pack(1, 3, 40, 1368, 20, 16),  # an unknown offload
]


def _packets(src4, dst4, src6, dst6):
    return [
        tcp(src4, dst4, 40000, 5201, flags=0x18, data=bytes(3000)),
        tcp(src4, dst4, 40000, 5201, flags=0x10),
        tcp(src4, dst4, 40001, 22, flags=0x02),
        udp(src4, dst4, 5000, 53, data=b"q" * 30),
        udp(src4, dst4, 5000, 9999, data=b"q" * 30),
        tcp(src6, dst6, 40000, 5201, flags=0x18, data=bytes(2000)),
        udp(src6, dst6, 5000, 53, data=b""),
        tcp(src4, dst4, 40000, 5201, mf=True, data=bytes(100)),
        icmp_echo(src4, dst4, 7),
        ipv4(src4, dst4, 6, bytes(30)),
        icmp_echo(src4, dst4, 7, reply=True, data=bytes(56)),  # a ping's reply (as ping sends it)
        icmp_echo(src6, dst6, 9, data=bytes(56)),
        udp(src4, dst4, 5000, 53, data=b"q" * 2000),  # more than the network's MTU
        icmp_echo(src4, dst4, 7, seq=3, data=b""),  # ping -s 0: 28 bytes
        icmp_echo(src6, dst6, 9, seq=3, reply=True, data=b""),  # 48 bytes
        udp(src4, dst4, 5000, 53, data=b""),  # 28 bytes
    ]


OUT = _packets(A4, B4, A6, B6) + _packets(A4, X4, A6, C6) + _packets(C4, B4, C6, B6)  # ours, no route, not ours
IN = _packets(B4, A4, B6, A6) + _packets(C4, A4, C6, A6) + _packets(B4, C4, B6, C6)  # member, spoofed, not for us


def world():
    """Member A (whose paths are tested) and member B, as in the test above; C's addresses belong to nobody."""
    net = Net()
    ia, ib = node(1), node(2)
    a = net.member(ia, A4, A6, fw=RULES)
    b = net.member(ib, B4, B6, fw=RULES, life=400.0)  # B's certificate expires within the run
    a.add_certificate(b.own_cert, T0)
    a.next_event()
    return a, ib


def state(n):
    fw = n.firewall
    return (sorted((k, v.as_dict()) for k, v in n.peers.items()), sorted(n.drops.items()),
            [(k, f.expires, f.proto, f.inbound) for k, f in fw._flows.items()], sorted(fw.counters.items()),
            sorted(fw._per_peer.items()) if fw._per_peer is not None else None,
            n._next_packet_id, sorted((k, m.offered_at) for k, m in n._members.items()),
            [repr(e) for e in n._events], list(n._outgoing), n.own_revoked)


def result(r):
    if type(r) is Send:
        return ("send", r.node_id.raw, r.payloads)
    if type(r) is Deliver:
        return ("deliver", bytes(r.vnet), bytes(r.packet))
    if type(r) is Drop:
        return ("drop", r.reason, r.node_id)
    return r


def chunk(n, vnet, packet, count=1, index=0):
    return b"\x01\x55" + n.network_id + struct.pack("!IBB", 9, index, count) + vnet + packet


#: Steps lean on the established flows (the bulk a data plane carries) so the fast paths are
#: taken often, and on the same packets changed, so they are declined at every check.
MAIN = [0, 0, 0, 1, 1, 1, 3, 5, 5, 6, 8, 10, 11]
_FLIPS = st.lists(st.tuples(st.integers(0, 69), st.integers(0, 255)), min_size=1, max_size=3)
step = st.tuples(
    st.booleans(),  # out (A's TUN) or in (from a member)
    st.sampled_from(MAIN * 3 + list(range(len(OUT)))),
    st.sampled_from([0, 0, 1, 2, 2, 3] * 3 + list(range(len(VNETS)))),
    st.integers(0, 4).flatmap(lambda k: _FLIPS if k == 0 else st.just([])),  # byte changes, one step in 5
    st.sampled_from([0] * 12 + [1, 2, 7]),  # bytes cut off the end
    st.sampled_from([0.0] * 6 + [0.5, 5.0, 25.0, 100.0]),  # seconds passing first
    st.sampled_from([1] * 8 + [2]),  # chunk count (inbound)
    st.booleans(),  # inbound: in a VpnPacket (no offload header) rather than chunks
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=20, max_size=60))
def test_the_fast_paths_decide_and_count_exactly_as_the_full_paths(steps):
    run(steps)


def run(steps) -> int:
    """The steps through both copies, compared after each; returns how many took a fast path."""
    fast, ib = world()
    slow, _ = world()
    now = T0
    taken = 0
    for out, which, v, flips, cut, later, count, plain in steps:
        now += later
        buf = altered(VNETS[v] + (OUT if out else IN)[which], flips, cut)
        if out:
            f = fast.outbound_fast(buf, now)
            got = ("send", f[0].raw, f[1]) if f is not None else result(fast.outbound_read(buf, now))
            want = result(slow.outbound_read(buf, now))
        elif plain:
            payload = b"\x01\x52" + fast.network_id + buf[10:]
            f = fast.inbound_packet_fast(ib.node_id.raw, payload, now)
            got = ("deliver", b"", bytes(f)) if f is not None else \
                result(fast._inbound_packet(ib.node_id.raw, payload, now))
            want = result(slow._inbound_packet(ib.node_id.raw, payload, now))
        else:
            payload = chunk(fast, buf[:10], buf[10:], count)
            f = fast.inbound_fast(ib.node_id.raw, payload, now)
            got = ("deliver", bytes(f[0]), bytes(f[1])) if f is not None else \
                result(fast._inbound_chunk(ib.node_id.raw, payload, now))
            want = result(slow._inbound_chunk(ib.node_id.raw, payload, now))
        taken += f is not None
        assert got == want
        assert state(fast) == state(slow)
    return taken


def test_the_comparison_takes_the_fast_paths_often():
    """(The property above is worth something only if the fast paths are taken in it.)"""
    import random

    rng = random.Random(5)
    steps = [(rng.random() < 0.5, rng.choice(MAIN), rng.choice([0, 0, 1, 2, 2, 3]), [], 0, 0.5, 1, rng.random() < 0.3)
             for _ in range(200)]
    assert run(steps) >= 100


def test_the_fast_paths_take_the_bulk_of_an_established_flow():
    """A TCP flow's superpackets out and its ACKs in, once the first packet opened the flow, take
    the fast paths: the same payloads and TUN writes as the full paths, the flow refreshed."""
    a, ib = world()
    syn = VNETS[2] + tcp(A4, B4, 40000, 5201, flags=0x02)
    assert a.outbound_fast(syn, T0) is None  # a new flow: the full path opens it
    assert type(a.outbound_read(syn, T0)) is Send
    data = VNETS[0] + tcp(A4, B4, 40000, 5201, flags=0x18, data=bytes(60_000))
    f = a.outbound_fast(data, T0 + 1)
    assert f is not None and f[0].raw == ib.node_id.raw and len(f[1]) == 1 and f[1][0].endswith(data)
    ack = VNETS[2] + tcp(B4, A4, 5201, 40000, flags=0x10)
    got = a.inbound_fast(ib.node_id.raw, chunk(a, ack[:10], ack[10:]), T0 + 2)
    assert got is not None and bytes(got[0]) == ack[:10] and bytes(got[1]) == ack[10:]
    assert a.firewall.counters["tracked_pass"] == 2
    key = (6, bytes([10, 1, 0, 1]), 40000, bytes([10, 1, 0, 2]), 5201, ib.node_id.raw)
    assert a.firewall._flows[key].expires == T0 + 2 + 30


@pytest.mark.parametrize("size", [56, 0, 11])  # ping's own, ping -s 0 (28 bytes), below a TCP header (39)
def test_a_ping_and_its_reply_take_the_fast_paths_once_the_first_opened_the_flow(size):
    """A ping's echo requests out (no offload header: a VpnPacket) and the replies in take the
    fast paths once the first request opened the flow: the same payload and TUN write as the full
    paths, the flow refreshed; a reply with another identifier (no flow) is left to the full path.
    Short pings (``ping -s 0``) too."""
    a, ib = world()
    fast, _ = world()
    first = VNETS[3] + icmp_echo(A4, B4, 7, data=bytes(size))
    assert a.outbound_fast(first, T0) is None  # a new flow: the full path opens it
    assert type(a.outbound_read(first, T0)) is Send
    ping = VNETS[3] + icmp_echo(A4, B4, 7, seq=2, data=bytes(size))
    f = a.outbound_fast(ping, T0 + 1)
    assert type(fast.outbound_read(first, T0)) is Send
    assert f is not None and f[0].raw == ib.node_id.raw and f[1] == fast.outbound_read(ping, T0 + 1).payloads
    reply = icmp_echo(B4, A4, 7, seq=2, reply=True, data=bytes(size))
    got = a.inbound_packet_fast(ib.node_id.raw, b"\x01\x52" + a.network_id + reply, T0 + 2)
    assert got == reply
    assert a.firewall.counters["tracked_pass"] == 2
    key = (1, bytes([10, 1, 0, 1]), 7, bytes([10, 1, 0, 2]), 7, ib.node_id.raw)
    assert a.firewall._flows[key].expires == T0 + 2 + a.firewall.timeouts.get(1, a.firewall.timeouts[None])
    other = icmp_echo(B4, A4, 8, seq=2, reply=True, data=bytes(56))
    assert a.inbound_packet_fast(ib.node_id.raw, b"\x01\x52" + a.network_id + other, T0 + 2) is None
    assert type(a._inbound_packet(ib.node_id.raw, b"\x01\x52" + a.network_id + other, T0 + 2)) is Drop

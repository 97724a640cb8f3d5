"""Offloaded packets (TCP superpackets with a virtio_net_hdr) cut in VpnChunk pieces and put back together."""

import random
import struct

from test_vpn_core import OPEN, T0, Net, node
from vpn_packets import tcp

from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.network import (
    GSO_TCPV4,
    MAX_REASSEMBLIES,
    VNET_HDR,
    VNET_NONE,
    Deliver,
    Drop,
    Send,
    VpnChunk,
    VpnNetwork,
)
from weftnet.core.wire import decode


def pair(fw_b=OPEN, chunk_size=1280):
    net = Net()
    ia, ib = node(1), node(2)
    a = VpnNetwork(net.auth.descriptor, net.cert(ia, "10.1.0.1"), T0, firewall=Firewall.from_config(OPEN),
                   chunk_size=chunk_size)
    b = VpnNetwork(net.auth.descriptor, net.cert(ib, "10.1.0.2"), T0, firewall=Firewall.from_config(fw_b))
    a.add_certificate(b.own_cert, T0)
    b.add_certificate(a.own_cert, T0)
    return net, ia, ib, a, b


def superpacket(dport=80, size=60_000):
    pkt = tcp("10.1.0.1", "10.1.0.2", 40000, dport, flags=0x18, data=bytes(random.Random(3).randbytes(size)))
    vnet = VNET_HDR.pack(1, GSO_TCPV4, 40, 1240, 20, 16)  # NEEDS_CSUM, TCPv4, MSS 1240
    return vnet, pkt


def chunks(send):
    return [p for p in send.payloads if p[1] == VpnChunk.TYPE]


def test_a_superpacket_crosses_in_pieces_out_of_order_and_arrives_whole():
    net, ia, ib, a, b = pair()
    vnet, pkt = superpacket()
    s = a.outbound_vnet(vnet, pkt, T0)
    assert isinstance(s, Send)
    pieces = chunks(s)
    assert len(pieces) == -(-(len(pkt) + 10) // 1280) and all(len(p) <= 1280 + 40 for p in pieces)
    assert decode(pieces[0]).count == len(pieces)
    random.Random(5).shuffle(pieces)
    results = [b.inbound(ia.node_id, p, T0) for p in pieces]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == Deliver(pkt, vnet)
    assert b.peers[ia.node_id.raw].bytes_in == len(pkt)


def test_a_plain_packet_from_an_offload_tun_takes_the_plain_path():
    net, ia, ib, a, b = pair()
    small = tcp("10.1.0.1", "10.1.0.2", 40000, 80)
    s = a.outbound_vnet(VNET_NONE, small, T0)
    assert [p[1] for p in s.payloads][-1] == 0x52
    assert b.inbound(ia.node_id, s.payloads[-1], T0) == Deliver(small)


def test_pieces_from_a_non_member_are_not_even_buffered():
    net, ia, ib, a, b = pair()
    vnet, pkt = superpacket()
    pieces = chunks(a.outbound_vnet(vnet, pkt, T0))
    stranger = node(9)
    for p in pieces:
        assert isinstance(b.inbound(stranger.node_id, p, T0), Drop)
    assert b.drops["not-member"] == len(pieces) and not b._reassembly


def test_reassembly_is_bounded_and_times_out():
    net, ia, ib, a, b = pair()
    vnet, pkt = superpacket()
    for i in range(MAX_REASSEMBLIES + 50):
        first = chunks(a.outbound_vnet(vnet, pkt, T0))[0]
        b.inbound(ia.node_id, first, T0)
    assert len(b._reassembly) <= MAX_REASSEMBLIES
    # Pieces of a packet that never completes are dropped once they are too old.
    first = chunks(a.outbound_vnet(vnet, pkt, T0))[0]
    b.inbound(ia.node_id, first, T0 + 10)
    assert len(b._reassembly) == 1 and b.drops["reassembly-timeout"] >= MAX_REASSEMBLIES


def test_a_header_the_kernel_must_not_see_is_dropped_and_the_firewall_still_judges():
    net, ia, ib, a, b = pair(fw_b={"outbound": [{"proto": "any", "port": "any", "host": "any"}],
                                   "inbound": [{"proto": "tcp", "port": 22, "host": "any"}]})
    _, pkt = superpacket()
    bad = VNET_HDR.pack(1, 3, 40, 1240, 20, 16)  # UDP fragmentation offload: not from a TUN of ours
    s = a.outbound_vnet(bad, pkt, T0)
    assert isinstance(s, Drop) and s.reason == "unsupported-offload"
    # Forged on the wire: a csum offset beyond the packet.
    evil = VNET_HDR.pack(1, GSO_TCPV4, 40, 1240, 60_000, 16)
    piece = b"\x01\x55" + b.network_id + struct.pack("!IBB", 7, 0, 1) + evil + pkt[:200]
    r = b.inbound(ia.node_id, piece, T0)
    assert isinstance(r, Drop) and r.reason == "bad-offload"
    vnet, pkt = superpacket(dport=80)
    results = [b.inbound(ia.node_id, p, T0) for p in chunks(a.outbound_vnet(vnet, pkt, T0))]
    assert isinstance(results[-1], Drop) and results[-1].reason == "firewall"


def test_a_member_cannot_make_a_reassembly_larger_than_a_packet():
    net, ia, ib, a, b = pair()
    head = b"\x01\x55" + b.network_id
    for i in range(3):
        r = b.inbound(ia.node_id, head + struct.pack("!IBB", 5, i, 64) + bytes(30_000), T0)
    assert isinstance(r, Drop) and r.reason == "bad-chunk" and not b._reassembly

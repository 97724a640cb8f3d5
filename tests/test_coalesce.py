"""UDP bursts read from a TUN joined into one GSO_UDP_L4 packet, and what the receiving kernel makes of it."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from test_vpn_offload import pair
from test_vpn_core import T0
from vpn_packets import tcp, udp

from weftnet.core.vpn.coalesce import GSO_UDP_L4, coalesce_udp, udp_segments
from weftnet.core.vpn.network import VNET_HDR, VNET_NONE, Deliver, Send, offload_header_ok

CSUM = VNET_HDR.pack(1, 0, 0, 0, 20, 6)  # NEEDS_CSUM, as a TUN with offload hands a UDP datagram over


def dg(src="10.1.0.1", dst="10.1.0.2", sport=5000, dport=5201, data=b"x" * 1200, vnet=CSUM, **kw):
    return vnet + udp(src, dst, sport, dport, data, **kw)


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def udp_checksum_ok(pkt: bytes) -> bool:
    if pkt[0] >> 4 == 4:
        hl = 20
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, 17, len(pkt) - hl)
    else:
        hl = 40
        pseudo = pkt[8:40] + struct.pack("!IxxxB", len(pkt) - hl, 17)
    return ones_sum(pseudo + pkt[hl:]) == 0xFFFF


def datagram_view(pkt: bytes):
    """What an application sees of a datagram: addresses, ports, payload."""
    hl = 20 if pkt[0] >> 4 == 4 else 40
    addrs = pkt[12:20] if hl == 20 else pkt[8:40]
    return addrs, pkt[hl:hl + 4], pkt[hl + 8:]


def test_a_burst_of_one_flow_becomes_one_packet_and_comes_back_datagram_by_datagram():
    burst = [dg(data=bytes([i]) * 1200) for i in range(10)] + [dg(data=b"end")]
    out = coalesce_udp(burst)
    assert len(out) == 1
    flags, gso_type, hdr_len, gso_size, csum_start, csum_off = VNET_HDR.unpack(out[0][:10])
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_off) == (1, GSO_UDP_L4, 28, 1200, 20, 6)
    assert len(out[0]) == 10 + 20 + 8 + 10 * 1200 + 3
    # The IPv4 header of the whole is valid (the receiving ip_rcv checks it) and covers the whole.
    assert ones_sum(out[0][10:30]) == 0xFFFF and struct.unpack("!H", out[0][12:14])[0] == len(out[0]) - 10
    assert offload_header_ok(out[0][:10], out[0][10:])
    segs = udp_segments(out[0])
    assert [datagram_view(s) for s in segs] == [datagram_view(p[10:]) for p in burst]
    assert all(udp_checksum_ok(s) and ones_sum(s[:20]) == 0xFFFF for s in segs)


def test_ipv6_bursts_join_too():
    burst = [dg("fd00::1", "fd00::2", data=bytes([i]) * 1000, vnet=VNET_HDR.pack(1, 0, 0, 0, 40, 6)) for i in range(5)]
    (one,) = coalesce_udp(burst)
    assert VNET_HDR.unpack(one[:10])[1:4] == (GSO_UDP_L4, 48, 1000)
    assert struct.unpack("!H", one[14:16])[0] == len(one) - 10 - 40
    segs = udp_segments(one)
    assert [datagram_view(s) for s in segs] == [datagram_view(p[10:]) for p in burst]
    assert all(udp_checksum_ok(s) for s in segs)


def test_what_cannot_be_joined_passes_unchanged_and_in_order():
    a = dg(sport=1)
    b = dg(sport=2)  # another flow
    t = VNET_NONE + tcp("10.1.0.1", "10.1.0.2", 1, 2, data=b"y" * 1200)
    frag = dg(mf=True)
    ttl = dg(ttl=5)
    big = dg(data=b"z" * 1300)  # larger than the run's first: starts a new run
    pkts = [a, b, t, frag, a, ttl, a, big]
    assert coalesce_udp(pkts) == pkts


def test_only_the_last_datagram_of_a_run_may_be_shorter_and_the_run_is_bounded():
    pkts = [dg(data=b"a" * 100), dg(data=b"b" * 50), dg(data=b"c" * 100), dg(data=b"d" * 100)]
    out = coalesce_udp(pkts)
    assert len(out) == 2
    assert [datagram_view(s)[2] for s in udp_segments(out[0])] == [b"a" * 100, b"b" * 50]
    assert [datagram_view(s)[2] for s in udp_segments(out[1])] == [b"c" * 100, b"d" * 100]
    many = [dg(data=b"q" * 1000)] * 100
    out = coalesce_udp(many)
    assert all(len(o) - 10 <= 59_000 for o in out)
    assert sum(len(udp_segments(o)) for o in out) == 100


def test_a_joined_burst_crosses_the_vpn_as_one_payload_and_is_delivered_with_its_header():
    net, ia, ib, a, b = pair(chunk_size=60_000)
    (one,) = coalesce_udp([dg(data=bytes([i]) * 1200) for i in range(40)])
    s = a.outbound_vnet(one[:10], one[10:], T0)
    assert isinstance(s, Send)
    data = [p for p in s.payloads if p[1] == 0x55]
    assert len(data) == 1  # one sealed payload for 40 datagrams
    r = b.inbound(ia.node_id, data[0], T0)
    assert isinstance(r, Deliver) and r.vnet == one[:10] and r.packet == one[10:]


def test_a_peer_cannot_pass_a_udp_offload_header_on_something_else():
    (one,) = coalesce_udp([dg(), dg()])
    vnet, pkt = one[:10], one[10:]
    assert offload_header_ok(vnet, pkt)
    as_tcp = pkt[:9] + b"\x06" + pkt[10:]
    assert not offload_header_ok(vnet, as_tcp)  # UDP segmentation of a TCP packet
    flags, kind, hl, size, start, off = VNET_HDR.unpack(vnet)
    assert not offload_header_ok(VNET_HDR.pack(0, kind, hl, size, start, off), pkt)  # no checksum completion
    assert not offload_header_ok(VNET_HDR.pack(flags, kind, hl, size, start, 16), pkt)  # checksum not UDP's
    assert not offload_header_ok(VNET_HDR.pack(flags, kind, hl, len(pkt), start, off), pkt)  # nothing to cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([4, 6]), st.integers(1, 1400)), max_size=80))
def test_joining_never_changes_what_the_applications_receive(spec):
    pkts = []
    for flow, version, size in spec:
        src, dst = ("10.1.0.1", "10.1.0.2") if version == 4 else ("fd00::1", "fd00::2")
        start = 20 if version == 4 else 40
        pkts.append(dg(src, dst, sport=1000 + flow, data=bytes([flow]) * size,
                       vnet=VNET_HDR.pack(1, 0, 0, 0, start, 6)))
    out = coalesce_udp(pkts)
    back = []
    for o in out:
        if o[1] == GSO_UDP_L4:
            assert offload_header_ok(o[:10], o[10:])
            back.extend(datagram_view(s) for s in udp_segments(o))
        else:
            back.append(datagram_view(o[10:]))
    assert back == [datagram_view(p[10:]) for p in pkts]

"""Pure TCP ACKs superseded within one TUN read batch are left out (core/vpn/ackfilter.py), and
nothing else: duplicate ACKs, SACKs, flags, data, other connections and order are kept; a real
TCP connection through a TUN-like path still delivers everything when its ACKs are thinned."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from vpn_packets import ip

from weftnet.core.vpn.ackfilter import filter_acks
from weftnet.core.vpn.network import VNET_HDR

CSUM = VNET_HDR.pack(1, 0, 0, 0, 20, 16)  # NEEDS_CSUM, as a TUN with offload hands a TCP ACK over
TS = bytes((1, 1, 8, 10)) + bytes(8)  # NOP, NOP, timestamps


def seg(ack: int, *, src="10.1.0.2", dst="10.1.0.1", sport=5201, dport=40000, flags=0x10, opts=TS,
        data=b"", vnet=CSUM, window=500) -> bytes:
    doff = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 7, ack, doff << 4, flags, window, 0, 0)
    return vnet + ip(src, dst, 6, hdr + opts + data)


def test_a_later_ack_of_the_same_connection_supersedes_the_earlier_ones():
    acks = [seg(1000), seg(2000), seg(3000)]
    assert filter_acks(acks) == [acks[2]]
    v6 = [seg(1000, src="fd00::2", dst="fd00::1"), seg(5000, src="fd00::2", dst="fd00::1", opts=b"")]
    assert filter_acks(v6) == [v6[1]]
    wrapped = [seg(0xFFFFFF00), seg(0x10)]  # serial number arithmetic across the wrap
    assert filter_acks(wrapped) == [wrapped[1]]


def test_everything_that_carries_information_is_kept():
    same = [seg(1000), seg(1000), seg(1000, window=900)]  # duplicate ACKs, a window update
    assert filter_acks(same) is same
    filled = [seg(1000), seg(1000), seg(1000), seg(9000)]  # dupacks, then the hole is filled
    assert filter_acks(filled) == [filled[3]]
    older = [seg(2000), seg(1000)]  # the later acknowledges less: both go as they came
    assert filter_acks(older) is older
    sack = bytes((1, 1, 5, 10)) + bytes(8)
    for later in (seg(2000, opts=sack), seg(2000, flags=0x11), seg(2000, flags=0x18), seg(2000, data=b"x"),
                  seg(2000, flags=0x50), seg(2000, vnet=VNET_HDR.pack(1, 1, 0, 0, 20, 16))):
        pkts = [seg(1000), later]
        assert filter_acks(pkts) is pkts  # a SACK, FIN, PSH, data, ECE, an offloaded packet: no pure ACK
    other = [seg(1000), seg(2000, sport=5202), seg(3000, dst="10.1.0.9")]  # other connections
    assert filter_acks(other) is other


def test_another_packet_of_the_connection_between_two_acks_keeps_the_first():
    between = [seg(1000), seg(1500, data=b"payload"), seg(2000)]
    assert filter_acks(between) is between
    kept = [seg(1000), seg(1500), seg(1600, data=b"d"), seg(1700), seg(2000)]
    assert filter_acks(kept) == [kept[1], kept[2], kept[4]]  # order kept, one of each run left


def test_what_is_no_tcp_or_malformed_passes_untouched():
    junk = [b"", b"\x00" * 9, VNET_HDR.pack(0, 0, 0, 0, 0, 0) + b"\x45" + bytes(30), seg(1000)[:40],
            CSUM + ip("10.1.0.2", "10.1.0.1", 17, bytes(20)), seg(2000)]
    assert filter_acks(junk) is junk
    ipopts = CSUM + b"\x46" + seg(1000)[11:]  # IHL 6: options
    assert filter_acks([ipopts, seg(3000)])[0] is ipopts


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6), st.sampled_from([0x10, 0x18, 0x11])),
                min_size=0, max_size=20))
def test_per_connection_the_highest_ack_survives_and_nothing_else_is_lost(spec):
    pkts = [seg(1000 + 500 * a, sport=5201 + c, flags=f, data=b"d" if f == 0x18 else b"")
            for c, a, f in spec]
    out = filter_acks(pkts)
    kept = [i for i, p in enumerate(pkts) if any(q is p for q in out)]
    assert [pkts[i] for i in kept] == out  # a subsequence: order kept, nothing new
    for i, (c, a, f) in enumerate(spec):
        later = [j for j in range(i + 1, len(spec)) if spec[j][0] == c]
        if not later or f != 0x10:
            assert i in kept  # the last packet of a connection, data and flags always go
        elif i not in kept:  # left out: a later pure ACK acknowledges more, no other packet between
            nxt = next((j for j in later if spec[j][2] != 0x10), len(spec))
            assert any(spec[j][1] > a for j in later if j < nxt)
        else:  # kept: no later pure ACK before the connection's next other packet acknowledges more
            nxt = next((j for j in later if spec[j][2] != 0x10), len(spec))
            assert not any(spec[j][1] > a for j in later if j < nxt)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["sp", "ack", "ack2", "udp", "short"]), max_size=8))
def test_a_batch_without_two_plain_packets_is_handed_on_as_the_full_steps_would(kinds):
    """prepare_batch skips coalescing and filtering when fewer than two packets lack a segmentation
    offload (neither step looks at the others): the result is what the steps give, every time."""
    from vpn_packets import udp

    from weftnet.core.vpn.ackfilter import prepare_batch
    from weftnet.core.vpn.coalesce import coalesce_udp
    from weftnet.core.vpn.network import GSO_TCPV4

    made = {"sp": VNET_HDR.pack(1, GSO_TCPV4, 40, 1368, 20, 16) + ip("10.1.0.1", "10.1.0.2", 6, bytes(3000)),
            "ack": seg(1000), "ack2": seg(2000), "udp": VNET_HDR.pack(1, 0, 0, 0, 20, 6) + udp("10.1.0.1", "10.1.0.2", 5, 6),
            "short": b"\x00"}
    batch = [made[k] for k in kinds]
    for ack_filter in (True, False):
        full = coalesce_udp(batch)
        n = len(full)
        if ack_filter:
            full = filter_acks(full)
        assert prepare_batch(batch, ack_filter) == (full, n - len(full))

"""The firewall's one-struct read of the common packet (IPv4 without options or IPv6 without
extension headers, TCP or UDP or an ICMP echo, not a fragment; :func:`read_flow`, which
``_parse`` and the data planes' fast paths for lone packets share) decides exactly as the full
walk does, for real packets and for mutations of them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from vpn_packets import icmp_echo, icmp_error, tcp, udp

from weftnet.core.vpn.firewall import (PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, MalformedPacket, _parse,
                                      _parse_walk, read_flow)

REAL = [
    tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x10),
    tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x18, data=bytes(1400), df=True),
    udp("10.1.0.1", "10.1.0.2", 5000, 53, data=b"q" * 30),
    udp("10.1.0.1", "10.1.0.2", 5000, 53, data=b""),
    tcp("10.1.0.1", "10.1.0.2", 1, 2, mf=True),
    udp("10.1.0.1", "10.1.0.2", 1, 2, offset=8),
    icmp_echo("10.1.0.1", "10.1.0.2", 7),
    tcp("fd00::1", "fd00::2", 40000, 5201, flags=0x10),
    tcp("fd00::1", "fd00::2", 40000, 5201, flags=0x18, data=bytes(1200)),
    udp("fd00::1", "fd00::2", 5000, 53, data=b"q" * 30),
    udp("fd00::1", "fd00::2", 5000, 53, data=b""),
    tcp("fd00::1", "fd00::2", 1, 2, ext=bytes((6, 0)) + bytes(6)),
    icmp_echo("10.1.0.1", "10.1.0.2", 7, seq=3, data=bytes(56)),  # ping's own size: the fast read
    icmp_echo("10.1.0.2", "10.1.0.1", 7, seq=3, reply=True, data=bytes(56)),
    icmp_echo("fd00::1", "fd00::2", 7, seq=3, data=bytes(56)),
    icmp_echo("fd00::2", "fd00::1", 7, seq=3, reply=True, data=bytes(56)),
    icmp_echo("10.1.0.1", "10.1.0.2", 7, seq=4, data=b""),  # ping -s 0: 28 bytes, the shortest echo
    icmp_echo("10.1.0.2", "10.1.0.1", 7, seq=4, reply=True, data=b""),
    icmp_echo("fd00::1", "fd00::2", 7, seq=4, data=b""),  # 48 bytes
    icmp_echo("fd00::2", "fd00::1", 7, seq=4, reply=True, data=b""),
    icmp_echo("10.1.0.1", "10.1.0.2", 7, seq=4, data=bytes(11)),  # ping -s 11: 39 bytes, below a TCP header
    icmp_echo("fd00::1", "fd00::2", 7, seq=4, data=bytes(11)),  # 59 bytes
    icmp_error("10.1.0.2", "10.1.0.1", udp("10.1.0.1", "10.1.0.2", 5000, 53, data=b"q" * 30)),
    icmp_error("fd00::2", "fd00::1", udp("fd00::1", "fd00::2", 5000, 53, data=b"q" * 30)),
]


def outcome(f, p):
    try:
        return f(p)
    except MalformedPacket as exc:
        return ("malformed", exc.reason)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4),
       st.integers(0, 80), st.booleans())
def test_the_fast_read_decides_as_the_walk(base, flips, cut, view):
    p = bytearray(base)
    for i, v in flips:
        if i < len(p):
            p[i] = v
    if cut:
        p = p[:max(0, len(p) - cut)]
    data = memoryview(bytes(p)) if view else bytes(p)
    assert outcome(_parse, data) == outcome(_parse_walk, data)


def test_the_common_case_takes_the_fast_read():
    info = _parse(REAL[1])
    assert (info.proto, info.sport, info.dport, info.tcp_flags, info.dont_fragment, info.total_length) == \
        (6, 40000, 5201, 0x18, True, 1440)
    assert info == _parse_walk(REAL[1])
    info6 = _parse(REAL[8])
    assert (info6.version, info6.proto, info6.sport, info6.tcp_flags, info6.header_length) == (6, 6, 40000, 0x18, 40)
    assert info6 == _parse_walk(REAL[8])


def test_a_ping_takes_the_fast_read(monkeypatch):
    """ping's own size, and the short ones (``ping -s 0`` and the sizes below a TCP header),
    both ways, IPv4 and IPv6: the fast read, with the walk's fields."""
    import weftnet.core.vpn.firewall as fw

    def no_walk(*a):
        raise AssertionError("a ping took the full walk")

    for packet, version, kind in ((REAL[12], 4, 8), (REAL[13], 4, 0), (REAL[14], 6, 128), (REAL[15], 6, 129),
                                  (REAL[16], 4, 8), (REAL[17], 4, 0), (REAL[18], 6, 128), (REAL[19], 6, 129),
                                  (REAL[20], 4, 8), (REAL[21], 6, 128), (REAL[6], 4, 8)):
        with monkeypatch.context() as m:
            m.setattr(fw, "_parse_walk", no_walk)
            info = _parse(packet)
        assert (info.version, info.icmp_type, info.sport, info.dport, info.total_length) == \
            (version, kind, 7, 7, len(packet))
        assert info == _parse_walk(packet)


def _common(info, size) -> bool:
    """The walk's result is the case read_flow takes (module docstring)."""
    v4 = info.version == 4
    return (info.fragment == 0 and info.header_length == (20 if v4 else 40) and size >= (28 if v4 else 48)
            and (info.proto in (PROTO_TCP, PROTO_UDP)
                 or info.proto == (PROTO_ICMP if v4 else PROTO_ICMPV6)
                 and info.icmp_type in ((8, 0) if v4 else (128, 129))))


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4),
       st.sampled_from([None] * 6 + [0, 1, 6, 17, 44, 58]),
       st.none() | st.sampled_from([0, 4, 5, 6, 7, 8, 9, 12, 19, 20, 21, 40]),
       st.sampled_from([0] * 8 + [1, 2, 7, 20, 40, 80]), st.binary(max_size=60), st.binary(max_size=8), st.booleans())
def test_the_shared_reader_takes_exactly_the_common_case_and_reads_it_as_the_walk(base, flips, proto, length, cut,
                                                                                   before, after, view):
    """read_flow at an offset into a larger buffer (what comes before and after the packet is not
    read): fields exactly when the walk finds the common case, and then the walk's fields. Besides
    random bytes, the protocol and the length (beyond the IP header) are set to values about the
    reader's limits."""
    p = bytearray(base)
    v4 = p[0] >> 4 == 4
    if proto is not None:
        p[9 if v4 else 6] = proto
    if length is not None:
        p[2 if v4 else 4:4 if v4 else 6] = (length + (20 if v4 else 0)).to_bytes(2, "big")
    for i, v in flips:
        if i < len(p):
            p[i] = v
    if cut:
        p = p[:max(0, len(p) - cut)]
    packet = bytes(p)
    buf = before + packet + after
    got = read_flow(memoryview(buf) if view else buf, len(before), len(before) + len(packet))
    want = outcome(_parse_walk, packet)
    if type(want) is tuple or not _common(want, len(packet)):
        assert got is None, (got, want)
    else:
        assert got == (want.proto, want.src, want.dst, want.sport, want.dport, want.total_length)

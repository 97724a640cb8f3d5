"""A burst of UDP datagrams read from a TUN, joined into one UDP segmentation-offload packet (sans-IO).

Why: the data plane pays per packet it handles (a firewall check, a seal, a
datagram or a TUN write), not per byte. TCP already arrives from a TUN with
offload as 64 KB superpackets that the receiving kernel segments; UDP does
only when the sending application uses UDP GSO (``UDP_SEGMENT``) and the TUN
has negotiated ``TUN_F_USO4``/``TUN_F_USO6`` (Linux 6.2). Most applications
(iperf3, DNS, games, WireGuard-in-weftnet) send datagram by datagram, so the
reader joins what one wake-up read instead: consecutive datagrams of one flow
become one packet with a ``virtio_net_hdr`` of type ``GSO_UDP_L4``, which
travels as one sealed payload and is cut back into the same datagrams by the
receiving kernel when it is written to the TUN there (``__udp_gso_segment``,
or ``udp_rcv_segment`` for a local socket without ``UDP_GRO``).

What may be joined (the receiver must get back exactly what was sent):

* no offload already (``GSO_NONE``), IPv4 without options and not a fragment,
  or IPv6 with UDP as the first next header;
* the same addresses, ports, TOS/traffic class, TTL/hop limit, DF bit and
  IPv6 flow label;
* every datagram the same size except the last, which may be shorter (the
  segmentation rule of UDP GSO, ``gso_size`` = payload bytes per datagram);
* at most :data:`MAX_SEGMENTS` datagrams and :data:`MAX_BYTES` bytes.

The joined packet carries the first datagram's IP header with the length
fixed (and the IPv4 header checksum recomputed, as the receiving ``ip_rcv``
checks it), a UDP header whose length covers the whole and whose checksum
field holds the pseudo-header sum (``VIRTIO_NET_HDR_F_NEEDS_CSUM``: every
segment's checksum is completed by the kernel). IPv4 identifiers of the
segments are renumbered from the first one, as for any GSO packet.

Inputs and outputs are ``virtio_net_hdr`` + IP packet bytes, as a TUN with
``IFF_VNET_HDR`` reads and writes them.
"""

from __future__ import annotations

import struct

__all__ = ["GSO_UDP_L4", "MAX_SEGMENTS", "MAX_BYTES", "coalesce_udp", "udp_segments"]

#: ``VIRTIO_NET_HDR_GSO_UDP_L4`` (include/uapi/linux/virtio_net.h).
GSO_UDP_L4 = 5
#: At most this many datagrams per joined packet (the kernel's UDP GSO allows 64 on older kernels).
MAX_SEGMENTS = 64
#: At most this many bytes of IP packet per joined packet: one VpnChunk (60,000 bytes) with its header.
MAX_BYTES = 59_000

_VNET = struct.Struct("=BBHHHH")
_VNET_LEN = 10
_NEEDS_CSUM = 1
_U16 = struct.Struct("!H")
_V4_SUM = struct.Struct("!10H")
_LENS4 = struct.Struct("!H20xH")  # from the IPv4 total length to the UDP length
_LENS6 = struct.Struct("!H38xH")  # from the IPv6 payload length to the UDP length
_PROTO_UDP = 17


def _flow_key(p: bytes) -> tuple[bytes, int] | None:
    """(what must match for two datagrams to be joined, IP header length), or None if ``p`` cannot be."""
    if len(p) < _VNET_LEN + 29 or p[1] != 0 or p[0] & ~_NEEDS_CSUM:  # gso_type NONE, no other flags
        return None
    v = p[_VNET_LEN] >> 4
    if v == 4:
        if (p[_VNET_LEN] != 0x45 or p[_VNET_LEN + 9] != _PROTO_UDP or p[_VNET_LEN + 6] & 0x3F or p[_VNET_LEN + 7]
                or _U16.unpack_from(p, _VNET_LEN + 2)[0] != len(p) - _VNET_LEN
                or _U16.unpack_from(p, _VNET_LEN + 24)[0] != len(p) - _VNET_LEN - 20):
            return None  # options, another protocol, a fragment, padding or a bad UDP length
        # version/IHL, TOS; DF; TTL, protocol; addresses; ports
        return p[10:12] + bytes((p[16] & 0x40,)) + p[18:20] + p[22:34], 20
    if v == 6:
        if (len(p) < _VNET_LEN + 49 or p[_VNET_LEN + 6] != _PROTO_UDP
                or _U16.unpack_from(p, _VNET_LEN + 4)[0] != len(p) - _VNET_LEN - 40
                or _U16.unpack_from(p, _VNET_LEN + 44)[0] != len(p) - _VNET_LEN - 40):
            return None
        # version, traffic class, flow label; next header, hop limit; addresses; ports
        return p[10:14] + p[16:54], 40
    return None


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _pseudo_sum(ip: bytes, hl: int, udp_len: int) -> int:
    """The UDP pseudo-header sum (not complemented), as the checksum field of a NEEDS_CSUM packet holds it."""
    addrs = ip[12:20] if hl == 20 else ip[8:40]
    s = sum(struct.unpack(f"!{len(addrs) // 2}H", addrs)) + _PROTO_UDP + udp_len
    return _fold(s)


def _join(group: list[bytes], hl: int) -> bytes:
    first = group[0]
    ip_hdr = first[_VNET_LEN:_VNET_LEN + hl]
    ports = first[_VNET_LEN + hl:_VNET_LEN + hl + 4]
    start = _VNET_LEN + hl + 8
    body = b"".join([p[start:] for p in group])
    udp_len = 8 + len(body)
    seg = len(first) - start
    if hl == 20:
        h = bytearray(ip_hdr)
        h[2:4] = _U16.pack(20 + udp_len)
        h[10:12] = b"\x00\x00"
        h[10:12] = _U16.pack(~_fold(sum(_V4_SUM.unpack(h))) & 0xFFFF)
        ip_hdr = bytes(h)
    else:
        ip_hdr = ip_hdr[:4] + _U16.pack(udp_len) + ip_hdr[6:]
    udp = ports + _U16.pack(udp_len) + _U16.pack(_pseudo_sum(ip_hdr, hl, udp_len))
    vnet = _VNET.pack(_NEEDS_CSUM, GSO_UDP_L4, hl + 8, seg, hl, 6)
    return b"".join((vnet, ip_hdr, udp, body))


def coalesce_udp(packets: list[bytes], max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_BYTES) -> list[bytes]:
    """``packets`` (each ``virtio_net_hdr`` + IP packet, in the order read) with every run of joinable
    UDP datagrams of one flow replaced by one ``GSO_UDP_L4`` packet; everything else, and the order of
    all flows, unchanged."""
    out: list[bytes] = []
    n = len(packets)
    i = 0
    while i < n:
        p = packets[i]
        fk = _flow_key(p)
        j = i + 1
        if fk is not None and j < n:
            hl = fk[1]
            size = len(p)
            head = _VNET_LEN + hl + 8
            if size > head:  # an empty datagram cannot be a segment
                # What every later datagram must repeat byte for byte (the reader's hot loop: slices, no
                # parsing): the vnet flags and type; for IPv4 version/IHL/TOS, flags/fragment/TTL/protocol,
                # addresses and ports; for IPv6 version/class/flow label, next header/hop limit,
                # addresses and ports. The lengths are checked against the datagram's own size.
                vh = p[:2]
                if hl == 20:
                    a, b, c = p[10:12], p[16:20], p[22:34]
                    lens, la, lb = _LENS4, 10, 30
                else:
                    a, b, c = p[10:14], p[16:18], p[18:54]
                    lens, la, lb = _LENS6, 50, 50
                total = size - _VNET_LEN
                limit = max_bytes
                stop = min(n, i + max_segments)
                while j < stop:
                    q = packets[j]
                    lq = len(q)
                    if lq > size or lq <= head or total + lq - head > limit:
                        break
                    if hl == 20:
                        if q[10:12] != a or q[16:20] != b or q[22:34] != c or q[:2] != vh:
                            break
                    elif q[10:14] != a or q[16:18] != b or q[18:54] != c or q[:2] != vh:
                        break
                    ip_len, udp_len = lens.unpack_from(q, _VNET_LEN + 2 if hl == 20 else _VNET_LEN + 4)
                    if ip_len != lq - la or udp_len != lq - lb:
                        break
                    total += lq - head
                    j += 1
                    if lq < size:
                        break  # only the last segment may be shorter
        if j - i > 1:
            out.append(_join(packets[i:j], fk[1]))
        else:
            out.append(p)
        i = j
    return out


def udp_segments(packet: bytes) -> list[bytes]:
    """The datagrams a ``GSO_UDP_L4`` packet from :func:`coalesce_udp` stands for, as plain IP packets with
    complete checksums (what the receiving kernel makes of it; used by tests and by a receiver without USO)."""
    flags, gso_type, hdr_len, seg, csum_start, _off = _VNET.unpack_from(packet)
    if gso_type != GSO_UDP_L4:
        raise ValueError("not a UDP segmentation-offload packet")
    ip = packet[_VNET_LEN:]
    hl = csum_start
    body = ip[hl + 8:]
    out = []
    ident = _U16.unpack_from(ip, 4)[0] if hl == 20 else 0
    for k, off in enumerate(range(0, len(body), seg)):
        chunk = body[off:off + seg]
        udp_len = 8 + len(chunk)
        if hl == 20:
            h = bytearray(ip[:20])
            h[2:4] = _U16.pack(20 + udp_len)
            h[4:6] = _U16.pack((ident + k) & 0xFFFF)
            h[10:12] = b"\x00\x00"
            h[10:12] = _U16.pack(~_fold(sum(_V4_SUM.unpack(h))) & 0xFFFF)
        else:
            h = bytearray(ip[:40])
            h[4:6] = _U16.pack(udp_len)
        udp = bytearray(ip[hl:hl + 4] + _U16.pack(udp_len) + b"\x00\x00" + chunk)
        s = _pseudo_sum(bytes(h), hl, udp_len)
        data = bytes(udp) + (b"\x00" if len(udp) % 2 else b"")
        s = _fold(s + sum(struct.unpack(f"!{len(data) // 2}H", data)))
        udp[6:8] = _U16.pack((~s & 0xFFFF) or 0xFFFF)
        out.append(bytes(h) + bytes(udp))
    return out

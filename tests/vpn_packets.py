"""IP packet builders for the VPN tests (firewall, data plane). Checksums are left zero:
nothing on these paths verifies transport checksums."""

import ipaddress
import struct


def _ip(a):
    return ipaddress.ip_address(a)


def ipv4(src, dst, proto, payload, *, ident=1, df=False, mf=False, offset=0, ttl=64):
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (offset // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags, ttl, proto, 0,
                      _ip(src).packed, _ip(dst).packed)
    return hdr + payload


def ipv6(src, dst, proto, payload, *, ext=b""):
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(payload), proto, 64, _ip(src).packed, _ip(dst).packed)
    return hdr + ext + payload


def ip(src, dst, proto, payload, **kw):
    return (ipv4 if _ip(src).version == 4 else ipv6)(src, dst, proto, payload, **kw)


def tcp(src, dst, sport, dport, flags=0x02, data=b"", **kw):
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + data
    return ip(src, dst, 6, seg, **kw)


def udp(src, dst, sport, dport, data=b"x", **kw):
    dg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return ip(src, dst, 17, dg, **kw)


def icmp_echo(src, dst, ident, seq=1, reply=False, data=b"ping"):
    v6 = _ip(src).version == 6
    t = (129 if reply else 128) if v6 else (0 if reply else 8)
    msg = struct.pack("!BBHHH", t, 0, 0, ident, seq) + data
    return ip(src, dst, 58 if v6 else 1, msg)


def icmp_error(src, dst, quoted, v4_type=3, v6_type=1, code=3):
    v6 = _ip(src).version == 6
    msg = struct.pack("!BBHI", v6_type if v6 else v4_type, code, 0, 0) + quoted
    return ip(src, dst, 58 if v6 else 1, msg)


def altered(base: bytes, flips, cut: int) -> bytes:
    """``base`` with a step's bytes changed (offsets past its end ignored) and ``cut`` bytes cut
    off its end: the packet the differential tests feed both paths."""
    buf = bytearray(base)
    for i, value in flips:
        if i < len(buf):
            buf[i] = value
    return bytes(buf[:len(buf) - cut])

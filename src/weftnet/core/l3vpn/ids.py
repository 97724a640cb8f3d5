"""Route distinguishers and route targets as the VRF tables hold them: their eight wire octets.

RFC 4364 section 4.2 (RD) and RFC 4360 section 4 / RFC 5668 (route-target
extended community). Both have three forms that operators write the same
way: ``ASN:N`` (2-octet AS, 4-octet number), ``A.B.C.D:N`` (IPv4 address,
2-octet number) and ``ASN4:N`` (4-octet AS, 2-octet number). The tables key
on the packed octets (cheap to hash, exactly what BGP carries); text is
parsed once, at configuration time, and formatted only for display.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["parse_rd", "format_rd", "parse_rt", "format_rt", "is_route_target"]


def _parse(text: str, what: str) -> tuple[int, bytes]:
    """(type 0|1|2, the 6 value octets) of ``ADMIN:NUMBER``."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string like \"65000:1\", not {text!r}")
    admin, sep, num = text.strip().rpartition(":")
    if not sep or not num.isdigit() or not admin:
        raise ValueError(f"{what} {text!r}: expected ASN:NUMBER or IPV4:NUMBER")
    n = int(num)
    if "." in admin:
        try:
            ip = ipaddress.IPv4Address(admin)
        except ValueError:
            raise ValueError(f"{what} {text!r}: {admin!r} is not an IPv4 address") from None
        if n > 0xFFFF:
            raise ValueError(f"{what} {text!r}: the number after an IPv4 address is at most 65535")
        return 1, ip.packed + struct.pack("!H", n)
    if not admin.isdigit():
        raise ValueError(f"{what} {text!r}: expected ASN:NUMBER or IPV4:NUMBER")
    asn = int(admin)
    if asn <= 0xFFFF and n <= 0xFFFFFFFF:
        return 0, struct.pack("!HI", asn, n)
    if asn <= 0xFFFFFFFF and n <= 0xFFFF:
        return 2, struct.pack("!IH", asn, n)
    raise ValueError(f"{what} {text!r}: out of range (a 4-octet AS takes a number up to 65535)")


def _format(t: int, v: bytes) -> str:
    if t == 0:
        return f"{int.from_bytes(v[:2], 'big')}:{int.from_bytes(v[2:], 'big')}"
    if t == 1:
        return f"{ipaddress.IPv4Address(v[:4])}:{int.from_bytes(v[4:], 'big')}"
    if t == 2:
        return f"{int.from_bytes(v[:4], 'big')}:{int.from_bytes(v[4:], 'big')}"
    return f"type{t}:{v.hex()}"


def parse_rd(text: str) -> bytes:
    """The 8 octets of a route distinguisher (2-octet type, 6-octet value); ValueError says why not."""
    t, v = _parse(text, "route distinguisher")
    return struct.pack("!H", t) + v


def format_rd(rd: bytes) -> str:
    return _format(int.from_bytes(rd[:2], "big"), rd[2:])


def parse_rt(text: str) -> bytes:
    """The 8 octets of a route-target extended community (type 0x00/0x01/0x02, sub-type 0x02)."""
    t, v = _parse(text, "route target")
    return bytes((t, 0x02)) + v


def format_rt(rt: bytes) -> str:
    return _format(rt[0], rt[2:])


def is_route_target(community: bytes) -> bool:
    """True for an 8-octet extended community that is a route target (transitive, sub-type 2)."""
    return len(community) == 8 and community[0] in (0, 1, 2) and community[1] == 0x02

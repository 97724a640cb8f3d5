"""Extended communities (RFC 4360): eight octets each, type and sub-type first.

Interpreted here: route targets (RFC 4360 section 4; 2-octet AS, IPv4 and
4-octet AS forms, RFC 5668), the encapsulation community (RFC 9012 section
4.1; tunnel type 8 = VXLAN, RFC 8365 section 5.1.3), EVPN MAC Mobility (RFC
7432 section 7.7), EVPN Router's MAC (RFC 9135 section 8.1) and the default
gateway community (RFC 7432 section 7.8). Anything else is kept as
:class:`OpaqueExtCommunity` and passed on unchanged.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = ["ExtCommunity", "RouteTarget", "Encapsulation", "MacMobility", "RouterMac", "DefaultGateway",
           "OpaqueExtCommunity", "decode_ext_community", "TUNNEL_VXLAN"]

TUNNEL_VXLAN = 8  # RFC 9012 tunnel type registry


class ExtCommunity:
    __slots__ = ()

    def encode(self) -> bytes:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RouteTarget(ExtCommunity):
    """Route target: ``kind`` 0 (2-octet AS : 4-octet), 1 (IPv4 : 2-octet) or 2 (4-octet AS : 2-octet)."""

    kind: int
    admin: int  # the AS number, or the IPv4 address as an integer
    assigned: int

    @classmethod
    def parse(cls, text: str) -> "RouteTarget":
        admin, sep, num = text.strip().rpartition(":")
        if not sep or not num.isdigit():
            raise ValueError(f"route target {text!r}: expected ASN:NUMBER or IPV4:NUMBER")
        n = int(num)
        if "." in admin:
            if n > 0xFFFF:
                raise ValueError(f"route target {text!r}: the number after an IPv4 address is at most 65535")
            return cls(1, int(ipaddress.IPv4Address(admin)), n)
        if not admin.isdigit():
            raise ValueError(f"route target {text!r}: expected ASN:NUMBER or IPV4:NUMBER")
        asn = int(admin)
        if asn <= 0xFFFF and n <= 0xFFFFFFFF:
            return cls(0, asn, n)
        if asn <= 0xFFFFFFFF and n <= 0xFFFF:
            return cls(2, asn, n)
        raise ValueError(f"route target {text!r}: out of range")

    def encode(self) -> bytes:
        if self.kind == 0:
            return struct.pack("!BBHI", 0, 2, self.admin, self.assigned)
        if self.kind == 1:
            return struct.pack("!BBIH", 1, 2, self.admin, self.assigned)
        return struct.pack("!BBIH", 2, 2, self.admin, self.assigned)

    def __str__(self) -> str:
        admin = str(ipaddress.IPv4Address(self.admin)) if self.kind == 1 else str(self.admin)
        return f"{admin}:{self.assigned}"


@dataclass(frozen=True, slots=True)
class Encapsulation(ExtCommunity):
    tunnel_type: int

    def encode(self) -> bytes:
        return struct.pack("!BBIH", 0x03, 0x0C, 0, self.tunnel_type)

    def __str__(self) -> str:
        return "encap:vxlan" if self.tunnel_type == TUNNEL_VXLAN else f"encap:{self.tunnel_type}"


@dataclass(frozen=True, slots=True)
class MacMobility(ExtCommunity):
    sequence: int
    sticky: bool = False

    def encode(self) -> bytes:
        return struct.pack("!BBBBI", 0x06, 0x00, 1 if self.sticky else 0, 0, self.sequence)

    def __str__(self) -> str:
        return f"mac-mobility:{self.sequence}" + (":sticky" if self.sticky else "")


@dataclass(frozen=True, slots=True)
class RouterMac(ExtCommunity):
    mac: bytes

    def encode(self) -> bytes:
        return b"\x06\x03" + self.mac

    def __str__(self) -> str:
        return "rmac:" + ":".join(f"{b:02x}" for b in self.mac)


@dataclass(frozen=True, slots=True)
class DefaultGateway(ExtCommunity):
    def encode(self) -> bytes:
        return b"\x03\x0d" + bytes(6)

    def __str__(self) -> str:
        return "default-gateway"


@dataclass(frozen=True, slots=True)
class OpaqueExtCommunity(ExtCommunity):
    raw: bytes

    def encode(self) -> bytes:
        return self.raw

    def __str__(self) -> str:
        return "ext:" + self.raw.hex()


def decode_ext_community(raw: bytes) -> ExtCommunity:
    """One 8-octet community; never fails (unknown kinds stay opaque)."""
    t, s = raw[0], raw[1]
    if s == 2 and t in (0, 1, 2):
        if t == 0:
            _, _, a, n = struct.unpack("!BBHI", raw)
        else:
            _, _, a, n = struct.unpack("!BBIH", raw)
        return RouteTarget(t, a, n)
    if t == 0x03 and s == 0x0C:
        return Encapsulation(int.from_bytes(raw[6:8], "big"))
    if t == 0x06 and s == 0x00:
        return MacMobility(int.from_bytes(raw[4:8], "big"), bool(raw[2] & 1))
    if t == 0x06 and s == 0x03:
        return RouterMac(bytes(raw[2:8]))
    if t == 0x03 and s == 0x0D:
        return DefaultGateway()
    return OpaqueExtCommunity(bytes(raw))

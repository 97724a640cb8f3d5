"""Route distinguishers (RFC 4364 section 4.2): eight octets, a 2-octet type then the value.

Type 0: 2-octet ASN : 4-octet number; type 1: IPv4 address : 2-octet number;
type 2: 4-octet ASN : 2-octet number. Text forms as operators write them:
``65000:100``, ``192.0.2.1:5``, ``4200000000:7``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = ["RouteDistinguisher"]


@dataclass(frozen=True, slots=True)
class RouteDistinguisher:
    packed: bytes  # the 8 wire octets; the trusted constructor takes them as they are

    @classmethod
    def from_wire(cls, data: bytes) -> "RouteDistinguisher":
        if len(data) != 8:
            raise ValueError("a route distinguisher is 8 octets")
        return cls(bytes(data))

    @classmethod
    def parse(cls, text: str) -> "RouteDistinguisher":
        """``ASN:N``, ``IPV4:N`` or ``ASN4:N``; ValueError says what is wrong."""
        admin, sep, num = text.strip().rpartition(":")
        if not sep or not num.isdigit():
            raise ValueError(f"route distinguisher {text!r}: expected ASN:NUMBER or IPV4:NUMBER")
        n = int(num)
        if "." in admin:
            ip = ipaddress.IPv4Address(admin)
            if n > 0xFFFF:
                raise ValueError(f"route distinguisher {text!r}: the number after an IPv4 address is at most 65535")
            return cls(struct.pack("!H4sH", 1, ip.packed, n))
        if not admin.isdigit():
            raise ValueError(f"route distinguisher {text!r}: expected ASN:NUMBER or IPV4:NUMBER")
        asn = int(admin)
        if asn <= 0xFFFF and n <= 0xFFFFFFFF:
            return cls(struct.pack("!HHI", 0, asn, n))
        if asn <= 0xFFFFFFFF and n <= 0xFFFF:
            return cls(struct.pack("!HIH", 2, asn, n))
        raise ValueError(f"route distinguisher {text!r}: out of range")

    @property
    def type(self) -> int:
        return int.from_bytes(self.packed[:2], "big")

    def __str__(self) -> str:
        t, v = self.type, self.packed[2:]
        if t == 0:
            return f"{int.from_bytes(v[:2], 'big')}:{int.from_bytes(v[2:], 'big')}"
        if t == 1:
            return f"{ipaddress.IPv4Address(v[:4])}:{int.from_bytes(v[4:], 'big')}"
        if t == 2:
            return f"{int.from_bytes(v[:4], 'big')}:{int.from_bytes(v[4:], 'big')}"
        return f"type{t}:{v.hex()}"

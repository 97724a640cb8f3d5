"""OPEN capabilities (RFC 5492), one class per capability.

Multiprotocol (code 1, RFC 4760 section 8), Route Refresh (2, RFC 2918),
Graceful Restart (64, RFC 4724 section 3, with the N bit of RFC 8538), 4-octet
AS (65, RFC 6793), Enhanced Route Refresh (70, RFC 7313, recognised only).
Anything else is :class:`UnknownCapability`, kept so ``weft bgp summary`` can
show what a peer offered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.bgp.family import Family

__all__ = ["Capability", "Multiprotocol", "RouteRefreshCapability", "GracefulRestart", "FourOctetAs",
           "EnhancedRouteRefresh", "UnknownCapability", "decode_capabilities", "encode_capabilities"]


class Capability:
    __slots__ = ()
    CODE: ClassVar[int] = 0

    def encode_value(self) -> bytes:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def decode(cls, value: bytes) -> "Capability":  # pragma: no cover
        raise NotImplementedError

    def encode(self) -> bytes:
        v = self.encode_value()
        return bytes([self.CODE, len(v)]) + v


@dataclass(frozen=True, slots=True)
class Multiprotocol(Capability):
    CODE = 1
    family: Family

    def encode_value(self) -> bytes:
        return struct.pack("!HBB", self.family.afi, 0, self.family.safi)

    @classmethod
    def decode(cls, value: bytes) -> "Multiprotocol":
        if len(value) != 4:
            raise ValueError("multiprotocol capability is not 4 octets")
        afi, _, safi = struct.unpack("!HBB", value)
        return cls(Family(afi, safi))

    def __str__(self) -> str:
        return f"multiprotocol {self.family}"


@dataclass(frozen=True, slots=True)
class RouteRefreshCapability(Capability):
    CODE = 2

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, value: bytes) -> "RouteRefreshCapability":
        if value:
            raise ValueError("route refresh capability has a value")
        return cls()

    def __str__(self) -> str:
        return "route-refresh"


@dataclass(frozen=True, slots=True)
class EnhancedRouteRefresh(Capability):
    CODE = 70

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, value: bytes) -> "EnhancedRouteRefresh":
        if value:
            raise ValueError("enhanced route refresh capability has a value")
        return cls()

    def __str__(self) -> str:
        return "enhanced-route-refresh"


@dataclass(frozen=True, slots=True)
class GracefulRestart(Capability):
    """``families`` maps each family to its Forwarding State bit; empty: a receiver-only speaker (RFC 4724 3)."""

    CODE = 64
    restart_time: int
    restarting: bool = False  # R bit
    notification: bool = False  # N bit (RFC 8538)
    families: tuple[tuple[Family, bool], ...] = ()

    def encode_value(self) -> bytes:
        head = (0x8000 if self.restarting else 0) | (0x4000 if self.notification else 0) | (self.restart_time & 0xFFF)
        return struct.pack("!H", head) + b"".join(struct.pack("!HBB", f.afi, f.safi, 0x80 if fwd else 0)
                                                  for f, fwd in self.families)

    @classmethod
    def decode(cls, value: bytes) -> "GracefulRestart":
        if len(value) < 2 or (len(value) - 2) % 4:
            raise ValueError("graceful restart capability length is not 2 + 4n")
        head = int.from_bytes(value[:2], "big")
        fams = []
        for i in range(2, len(value), 4):
            afi, safi, flags = struct.unpack("!HBB", value[i:i + 4])
            fams.append((Family(afi, safi), bool(flags & 0x80)))
        return cls(head & 0xFFF, bool(head & 0x8000), bool(head & 0x4000), tuple(fams))

    def __str__(self) -> str:
        return f"graceful-restart {self.restart_time}s" + (" (restarting)" if self.restarting else "")


@dataclass(frozen=True, slots=True)
class FourOctetAs(Capability):
    CODE = 65
    asn: int

    def encode_value(self) -> bytes:
        return struct.pack("!I", self.asn)

    @classmethod
    def decode(cls, value: bytes) -> "FourOctetAs":
        if len(value) != 4:
            raise ValueError("4-octet AS capability is not 4 octets")
        return cls(int.from_bytes(value, "big"))

    def __str__(self) -> str:
        return f"4-octet-as {self.asn}"


@dataclass(frozen=True, slots=True)
class UnknownCapability(Capability):
    code: int
    value: bytes

    def encode(self) -> bytes:
        return bytes([self.code, len(self.value)]) + self.value

    def __str__(self) -> str:
        return f"capability {self.code}"


_CLASSES = {c.CODE: c for c in (Multiprotocol, RouteRefreshCapability, GracefulRestart, FourOctetAs,
                                EnhancedRouteRefresh)}


def decode_capabilities(data: bytes) -> list[Capability]:
    """The capabilities in one Capabilities optional parameter; ValueError if malformed."""
    out: list[Capability] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("capability header truncated")
        code, n = data[pos], data[pos + 1]
        if pos + 2 + n > len(data):
            raise ValueError(f"capability {code} overruns its parameter")
        value = bytes(data[pos + 2:pos + 2 + n])
        pos += 2 + n
        cls = _CLASSES.get(code)
        out.append(cls.decode(value) if cls else UnknownCapability(code, value))
    return out


def encode_capabilities(caps) -> bytes:
    return b"".join(c.encode() for c in caps)

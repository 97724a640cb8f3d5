"""Path attributes (RFC 4271 section 4.3 and 5), one class per attribute, and the :class:`Attributes` set.

Each class has ``TYPE``, its expected ``FLAGS`` (optional / transitive bits),
``ON_ERROR`` (what RFC 7606 section 7 prescribes when its value is malformed:
``DISCARD`` the attribute, ``WITHDRAW`` the UPDATE's routes, or ``RESET`` the
session), a trusted constructor (the dataclass fields) and a validating
``decode(value, asn4)`` that raises :class:`MalformedAttribute`. Whether an
error withdraws, discards or resets is decided in ``update.py``; nothing here
knows about sessions.

Implemented: ORIGIN (1), AS_PATH (2, 2- and 4-octet, RFC 6793), NEXT_HOP (3),
MULTI_EXIT_DISC (4), LOCAL_PREF (5), ATOMIC_AGGREGATE (6), AGGREGATOR (7),
COMMUNITIES (8, RFC 1997), ORIGINATOR_ID (9) and CLUSTER_LIST (10) (RFC 4456),
MP_REACH_NLRI (14) and MP_UNREACH_NLRI (15) (RFC 4760), EXTENDED COMMUNITIES
(16, RFC 4360), AS4_PATH (17) and AS4_AGGREGATOR (18) (RFC 6793), PMSI_TUNNEL
(22, RFC 6514 section 5; ingress replication per RFC 7432 section 11.2 and RFC
8365 section 5.1.3). Any other attribute is :class:`UnknownAttribute`: optional
transitive ones are passed on with the Partial bit set, others dropped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import ClassVar, Iterable

from weftnet.core.bgp.errors import MalformedAttribute
from weftnet.core.bgp.extcommunity import ExtCommunity, decode_ext_community
from weftnet.core.bgp.family import AFI_IPV4, AFI_IPV6, SAFI_VPN, Family
from weftnet.core.bgp.nlri import Nlri, decode_nlri

__all__ = [
    "Attribute", "Attributes", "Origin", "AsPath", "NextHop", "Med", "LocalPref", "AtomicAggregate", "Aggregator",
    "Communities", "OriginatorId", "ClusterList", "MpReach", "MpUnreach", "ExtendedCommunities", "As4Path",
    "As4Aggregator", "PmsiTunnel", "UnknownAttribute", "ATTRIBUTE_CLASSES", "OPTIONAL", "TRANSITIVE", "PARTIAL",
    "EXTENDED", "DISCARD", "WITHDRAW", "RESET", "AS_TRANS", "AS_SET", "AS_SEQUENCE", "IGP", "EGP", "INCOMPLETE",
]

OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10
DISCARD, WITHDRAW, RESET = 1, 2, 3
AS_TRANS = 23456
AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET = 1, 2, 3, 4
IGP, EGP, INCOMPLETE = 0, 1, 2
PMSI_INGRESS_REPLICATION = 6

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Attribute:
    __slots__ = ()
    TYPE: ClassVar[int] = 0
    FLAGS: ClassVar[int] = OPTIONAL
    ON_ERROR: ClassVar[int] = WITHDRAW
    NAME: ClassVar[str] = ""

    @property
    def flags(self) -> int:
        return self.FLAGS

    def encode_value(self, asn4: bool) -> bytes:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "Attribute":  # pragma: no cover
        raise NotImplementedError

    def encode(self, asn4: bool = True) -> bytes:
        v = self.encode_value(asn4)
        flags = self.flags & ~EXTENDED
        if len(v) > 255:
            return struct.pack("!BBH", flags | EXTENDED, self.TYPE, len(v)) + v
        return struct.pack("!BBB", flags, self.TYPE, len(v)) + v

    def to_json(self):  # the value shown by `weft bgp routes --json`
        return str(self)


def _u32(cls, value: bytes):
    if len(value) != 4:
        raise MalformedAttribute(f"{cls.NAME} is {len(value)} octets, not 4")
    return int.from_bytes(value, "big")


@dataclass(frozen=True, slots=True)
class Origin(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 1, TRANSITIVE, WITHDRAW, "ORIGIN"
    value: int = IGP

    def encode_value(self, asn4: bool) -> bytes:
        return bytes([self.value])

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "Origin":
        if len(value) != 1 or value[0] > 2:
            raise MalformedAttribute("ORIGIN must be one octet of 0, 1 or 2")
        return cls(value[0])

    def __str__(self) -> str:
        return ("igp", "egp", "incomplete")[self.value]


@dataclass(frozen=True, slots=True)
class AsPath(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 2, TRANSITIVE, WITHDRAW, "AS_PATH"
    segments: tuple[tuple[int, tuple[int, ...]], ...] = ()

    @classmethod
    def sequence(cls, *asns: int) -> "AsPath":
        return cls(((AS_SEQUENCE, tuple(asns)),) if asns else ())

    def encode_value(self, asn4: bool) -> bytes:
        out = bytearray()
        for seg_type, asns in self.segments:
            for i in range(0, len(asns), 255):  # a segment holds at most 255 ASes
                chunk = asns[i:i + 255]
                out += bytes([seg_type, len(chunk)])
                if asn4:
                    out += struct.pack(f"!{len(chunk)}I", *chunk)
                else:
                    out += struct.pack(f"!{len(chunk)}H", *(a if a <= 0xFFFF else AS_TRANS for a in chunk))
        return bytes(out)

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "AsPath":
        width = 4 if asn4 else 2
        segs, pos = [], 0
        while pos < len(value):
            if pos + 2 > len(value):
                raise MalformedAttribute("AS_PATH segment header truncated")
            seg_type, n = value[pos], value[pos + 1]
            if seg_type not in (1, 2, 3, 4) or n == 0:
                raise MalformedAttribute(f"AS_PATH segment type {seg_type} with {n} ASes")
            end = pos + 2 + n * width
            if end > len(value):
                raise MalformedAttribute("AS_PATH segment overruns the attribute")
            asns = struct.unpack(f"!{n}{'I' if asn4 else 'H'}", value[pos + 2:end])
            segs.append((seg_type, asns))
            pos = end
        return cls(tuple(segs))

    @property
    def length(self) -> int:
        """RFC 4271 9.1.2.2 a): an AS_SET counts as one; confederation segments do not count (RFC 5065)."""
        n = 0
        for seg_type, asns in self.segments:
            n += len(asns) if seg_type == AS_SEQUENCE else 1 if seg_type == AS_SET else 0
        return n

    @property
    def first_as(self) -> int | None:
        for seg_type, asns in self.segments:
            if seg_type == AS_SEQUENCE:
                return asns[0]
            return None
        return None

    @property
    def neighbor_as(self) -> int | None:
        return self.first_as

    def contains(self, asn: int) -> bool:
        return any(asn in asns for _, asns in self.segments)

    def needs_as4(self) -> bool:
        return any(a > 0xFFFF for _, asns in self.segments for a in asns)

    def prepend(self, asn: int, times: int = 1) -> "AsPath":
        if self.segments and self.segments[0][0] == AS_SEQUENCE and len(self.segments[0][1]) + times <= 255:
            return AsPath(((AS_SEQUENCE, (asn,) * times + self.segments[0][1]),) + self.segments[1:])
        return AsPath(((AS_SEQUENCE, (asn,) * times),) + self.segments)

    def merge_as4(self, as4: "As4Path") -> "AsPath":
        """RFC 6793 section 4.2.3: the path a 2-octet speaker passed on, with the 4-octet ASes restored."""
        need = self.length - as4.path.length
        if need < 0:
            return self  # AS4_PATH longer than AS_PATH: ignore it
        head: list[tuple[int, tuple[int, ...]]] = []
        for seg_type, asns in self.segments:
            if need <= 0:
                break
            if seg_type == AS_SEQUENCE:
                take = asns[:need]
                head.append((seg_type, take))
                need -= len(take)
            else:
                head.append((seg_type, asns))
                need -= 1 if seg_type == AS_SET else 0
        return AsPath(tuple(head) + as4.path.segments)

    def __str__(self) -> str:
        parts = []
        for seg_type, asns in self.segments:
            s = " ".join(map(str, asns))
            parts.append({AS_SET: "{%s}", AS_CONFED_SEQUENCE: "(%s)", AS_CONFED_SET: "[%s]"}.get(seg_type, "%s") % s)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class NextHop(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 3, TRANSITIVE, WITHDRAW, "NEXT_HOP"
    address: ipaddress.IPv4Address

    def encode_value(self, asn4: bool) -> bytes:
        return self.address.packed

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "NextHop":
        if len(value) != 4:
            raise MalformedAttribute(f"NEXT_HOP is {len(value)} octets, not 4")
        return cls(ipaddress.IPv4Address(value))

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True, slots=True)
class Med(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 4, OPTIONAL, WITHDRAW, "MULTI_EXIT_DISC"
    value: int

    def encode_value(self, asn4: bool) -> bytes:
        return self.value.to_bytes(4, "big")

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "Med":
        return cls(_u32(cls, value))

    def __str__(self) -> str:
        return str(self.value)

    def to_json(self):
        return self.value


@dataclass(frozen=True, slots=True)
class LocalPref(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 5, TRANSITIVE, WITHDRAW, "LOCAL_PREF"
    value: int

    def encode_value(self, asn4: bool) -> bytes:
        return self.value.to_bytes(4, "big")

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "LocalPref":
        return cls(_u32(cls, value))

    def __str__(self) -> str:
        return str(self.value)

    def to_json(self):
        return self.value


@dataclass(frozen=True, slots=True)
class AtomicAggregate(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 6, TRANSITIVE, DISCARD, "ATOMIC_AGGREGATE"

    def encode_value(self, asn4: bool) -> bytes:
        return b""

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "AtomicAggregate":
        if value:
            raise MalformedAttribute("ATOMIC_AGGREGATE has a value")
        return cls()

    def __str__(self) -> str:
        return "atomic-aggregate"


@dataclass(frozen=True, slots=True)
class Aggregator(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 7, OPTIONAL | TRANSITIVE, DISCARD, "AGGREGATOR"
    asn: int
    address: ipaddress.IPv4Address

    def encode_value(self, asn4: bool) -> bytes:
        if asn4:
            return struct.pack("!I", self.asn) + self.address.packed
        return struct.pack("!H", self.asn if self.asn <= 0xFFFF else AS_TRANS) + self.address.packed

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "Aggregator":
        want = 8 if asn4 else 6
        if len(value) != want:
            raise MalformedAttribute(f"AGGREGATOR is {len(value)} octets, not {want}")
        return cls(int.from_bytes(value[:-4], "big"), ipaddress.IPv4Address(value[-4:]))

    def __str__(self) -> str:
        return f"{self.asn} {self.address}"


@dataclass(frozen=True, slots=True)
class Communities(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 8, OPTIONAL | TRANSITIVE, WITHDRAW, "COMMUNITIES"
    values: tuple[int, ...]

    def encode_value(self, asn4: bool) -> bytes:
        return struct.pack(f"!{len(self.values)}I", *self.values)

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "Communities":
        if not value or len(value) % 4:
            raise MalformedAttribute(f"COMMUNITIES length {len(value)} is not a non-zero multiple of 4")
        return cls(struct.unpack(f"!{len(value) // 4}I", value))

    def __str__(self) -> str:
        return " ".join(f"{v >> 16}:{v & 0xFFFF}" for v in self.values)

    def to_json(self):
        return [f"{v >> 16}:{v & 0xFFFF}" for v in self.values]


@dataclass(frozen=True, slots=True)
class OriginatorId(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 9, OPTIONAL, WITHDRAW, "ORIGINATOR_ID"
    router_id: ipaddress.IPv4Address

    def encode_value(self, asn4: bool) -> bytes:
        return self.router_id.packed

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "OriginatorId":
        if len(value) != 4:
            raise MalformedAttribute(f"ORIGINATOR_ID is {len(value)} octets, not 4")
        return cls(ipaddress.IPv4Address(value))

    def __str__(self) -> str:
        return str(self.router_id)


@dataclass(frozen=True, slots=True)
class ClusterList(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 10, OPTIONAL, WITHDRAW, "CLUSTER_LIST"
    ids: tuple[ipaddress.IPv4Address, ...]

    def encode_value(self, asn4: bool) -> bytes:
        return b"".join(i.packed for i in self.ids)

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "ClusterList":
        if not value or len(value) % 4:
            raise MalformedAttribute(f"CLUSTER_LIST length {len(value)} is not a non-zero multiple of 4")
        return cls(tuple(ipaddress.IPv4Address(value[i:i + 4]) for i in range(0, len(value), 4)))

    def __str__(self) -> str:
        return " ".join(map(str, self.ids))

    def to_json(self):
        return [str(i) for i in self.ids]


_NH_LENGTHS = {AFI_IPV4: (4, 16, 32), AFI_IPV6: (16, 32)}


def _nh_lengths(family: Family) -> tuple[int, ...]:
    if family.safi == SAFI_VPN:  # RD (zero) before each address, RFC 4364 4.3.2 / RFC 4659 3.2
        return (12, 24, 48)
    return _NH_LENGTHS.get(family.afi, (4, 16, 32))


def _decode_next_hop(family: Family, raw: bytes) -> tuple[IPAddress, IPAddress | None]:
    if len(raw) not in _nh_lengths(family):
        raise MalformedAttribute(f"MP_REACH_NLRI next hop of {len(raw)} octets for {family}")
    if family.safi == SAFI_VPN:
        half = len(raw) // (2 if len(raw) == 48 else 1)
        raw = raw[8:half] + (raw[half + 8:] if len(raw) == 48 else b"")
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw), None
    glob = ipaddress.IPv6Address(raw[:16])
    return glob, ipaddress.IPv6Address(raw[16:32]) if len(raw) == 32 else None


@dataclass(frozen=True, slots=True)
class MpReach(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 14, OPTIONAL, RESET, "MP_REACH_NLRI"
    family: Family
    next_hop: IPAddress | None
    nlri: tuple[Nlri, ...]
    link_local: IPAddress | None = None

    def encode_value(self, asn4: bool) -> bytes:
        nh = self.next_hop.packed if self.next_hop is not None else b""
        if self.link_local is not None:
            nh += self.link_local.packed
        if self.family.safi == SAFI_VPN:
            nh = bytes(8) + nh
        return (struct.pack("!HBB", self.family.afi, self.family.safi, len(nh)) + nh + b"\x00"
                + b"".join(n.encode() for n in self.nlri))

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "MpReach | UnknownAttribute":
        if len(value) < 5:
            raise MalformedAttribute("MP_REACH_NLRI shorter than 5 octets")
        afi, safi, nhlen = struct.unpack("!HBB", value[:4])
        fam = Family(afi, safi)
        if 4 + nhlen + 1 > len(value):
            raise MalformedAttribute("MP_REACH_NLRI next hop overruns the attribute")
        from weftnet.core.bgp.nlri import SUPPORTED_FAMILIES

        if fam not in SUPPORTED_FAMILIES:
            return _Unsupported(cls.TYPE, fam)
        nh, ll = _decode_next_hop(fam, value[4:4 + nhlen])
        try:
            nlri = decode_nlri(fam, value[5 + nhlen:])
        except ValueError as exc:
            raise MalformedAttribute(f"MP_REACH_NLRI: {exc}") from None
        return cls(fam, nh, tuple(nlri), ll)

    def __str__(self) -> str:
        return f"{self.family} via {self.next_hop}: {len(self.nlri)} routes"


@dataclass(frozen=True, slots=True)
class MpUnreach(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 15, OPTIONAL, RESET, "MP_UNREACH_NLRI"
    family: Family
    nlri: tuple[Nlri, ...]

    def encode_value(self, asn4: bool) -> bytes:
        body = b"".join(n.encode(withdraw=True) if self.family.safi == SAFI_VPN else n.encode()  # type: ignore[call-arg]
                        for n in self.nlri)
        return struct.pack("!HB", self.family.afi, self.family.safi) + body

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "MpUnreach | UnknownAttribute":
        if len(value) < 3:
            raise MalformedAttribute("MP_UNREACH_NLRI shorter than 3 octets")
        afi, safi = struct.unpack("!HB", value[:3])
        fam = Family(afi, safi)
        from weftnet.core.bgp.nlri import SUPPORTED_FAMILIES

        if fam not in SUPPORTED_FAMILIES:
            return _Unsupported(cls.TYPE, fam)
        try:
            return cls(fam, tuple(decode_nlri(fam, value[3:])))
        except ValueError as exc:
            raise MalformedAttribute(f"MP_UNREACH_NLRI: {exc}") from None

    def __str__(self) -> str:
        return f"{self.family}: {len(self.nlri)} withdrawn"


@dataclass(frozen=True, slots=True)
class ExtendedCommunities(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 16, OPTIONAL | TRANSITIVE, WITHDRAW, "EXTENDED_COMMUNITIES"
    values: tuple[ExtCommunity, ...]

    def encode_value(self, asn4: bool) -> bytes:
        return b"".join(v.encode() for v in self.values)

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "ExtendedCommunities":
        if not value or len(value) % 8:
            raise MalformedAttribute(f"EXTENDED_COMMUNITIES length {len(value)} is not a non-zero multiple of 8")
        return cls(tuple(decode_ext_community(value[i:i + 8]) for i in range(0, len(value), 8)))

    def of_type(self, kind: type) -> list:
        return [v for v in self.values if isinstance(v, kind)]

    def __str__(self) -> str:
        return " ".join(map(str, self.values))

    def to_json(self):
        return [str(v) for v in self.values]


@dataclass(frozen=True, slots=True)
class As4Path(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 17, OPTIONAL | TRANSITIVE, DISCARD, "AS4_PATH"
    path: AsPath

    def encode_value(self, asn4: bool) -> bytes:
        return self.path.encode_value(True)

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "As4Path":
        p = AsPath.decode(value, True)
        if any(t in (AS_CONFED_SEQUENCE, AS_CONFED_SET) for t, _ in p.segments):
            raise MalformedAttribute("AS4_PATH carries confederation segments")  # RFC 6793 section 6
        return cls(p)

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class As4Aggregator(Attribute):
    TYPE, FLAGS, ON_ERROR, NAME = 18, OPTIONAL | TRANSITIVE, DISCARD, "AS4_AGGREGATOR"
    asn: int
    address: ipaddress.IPv4Address

    def encode_value(self, asn4: bool) -> bytes:
        return struct.pack("!I", self.asn) + self.address.packed

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "As4Aggregator":
        if len(value) != 8:
            raise MalformedAttribute(f"AS4_AGGREGATOR is {len(value)} octets, not 8")
        return cls(int.from_bytes(value[:4], "big"), ipaddress.IPv4Address(value[4:]))

    def __str__(self) -> str:
        return f"{self.asn} {self.address}"


@dataclass(frozen=True, slots=True)
class PmsiTunnel(Attribute):
    """P-Multicast Service Interface tunnel (RFC 6514 section 5). For EVPN ingress replication (type 6) the
    tunnel identifier is the originating router's IP and, with VXLAN, the label field carries the VNI."""

    TYPE, FLAGS, ON_ERROR, NAME = 22, OPTIONAL | TRANSITIVE, WITHDRAW, "PMSI_TUNNEL"
    tunnel_type: int
    label: int
    tunnel_id: bytes
    pmsi_flags: int = 0

    @classmethod
    def ingress_replication(cls, endpoint: IPAddress, label: int) -> "PmsiTunnel":
        return cls(PMSI_INGRESS_REPLICATION, label, endpoint.packed)

    @property
    def endpoint(self) -> IPAddress | None:
        if len(self.tunnel_id) == 4:
            return ipaddress.IPv4Address(self.tunnel_id)
        if len(self.tunnel_id) == 16:
            return ipaddress.IPv6Address(self.tunnel_id)
        return None

    def encode_value(self, asn4: bool) -> bytes:
        return bytes([self.pmsi_flags, self.tunnel_type]) + self.label.to_bytes(3, "big") + self.tunnel_id

    @classmethod
    def decode(cls, value: bytes, asn4: bool) -> "PmsiTunnel":
        if len(value) < 5:
            raise MalformedAttribute("PMSI_TUNNEL shorter than 5 octets")
        if value[1] == PMSI_INGRESS_REPLICATION and len(value) not in (9, 21):
            raise MalformedAttribute("PMSI_TUNNEL ingress replication endpoint is not an IPv4 or IPv6 address")
        return cls(value[1], int.from_bytes(value[2:5], "big"), bytes(value[5:]), value[0])

    def __str__(self) -> str:
        if self.tunnel_type == PMSI_INGRESS_REPLICATION:
            return f"ingress-replication {self.endpoint} label {self.label}"
        return f"type {self.tunnel_type} label {self.label} id {self.tunnel_id.hex()}"


@dataclass(frozen=True, slots=True)
class UnknownAttribute(Attribute):
    ON_ERROR = DISCARD
    type_code: int
    attr_flags: int
    value: bytes

    @property
    def TYPE(self) -> int:  # type: ignore[override]
        return self.type_code

    @property
    def flags(self) -> int:
        return self.attr_flags

    def encode_value(self, asn4: bool) -> bytes:
        return self.value

    def __str__(self) -> str:
        return f"type {self.type_code} flags 0x{self.attr_flags:02x} {self.value.hex()}"


def _Unsupported(type_code: int, family: Family) -> UnknownAttribute:
    """MP_(UN)REACH_NLRI of a family this speaker does not implement: kept as unknown, so the parser ignores it."""
    return UnknownAttribute(type_code, OPTIONAL, struct.pack("!HB", family.afi, family.safi))


ATTRIBUTE_CLASSES: dict[int, type[Attribute]] = {
    c.TYPE: c for c in (Origin, AsPath, NextHop, Med, LocalPref, AtomicAggregate, Aggregator, Communities,
                        OriginatorId, ClusterList, MpReach, MpUnreach, ExtendedCommunities, As4Path, As4Aggregator,
                        PmsiTunnel)
}


class Attributes:
    """An immutable set of path attributes (at most one per type), hashable so routes can share one."""

    __slots__ = ("_by_type", "_hash", "_memo")

    def __init__(self, attrs: Iterable[Attribute] = ()):
        by_type = {a.TYPE: a for a in attrs}
        self._by_type = dict(sorted(by_type.items()))
        self._hash: int | None = None
        self._memo: dict | None = None

    def memo(self, key, compute):
        """A value derived from these attributes, computed once: every route of one UPDATE shares one set."""
        if self._memo is None:
            self._memo = {}
        try:
            return self._memo[key]
        except KeyError:
            v = self._memo[key] = compute(self)
            return v

    def get(self, type_code: int):
        return self._by_type.get(type_code)

    def __contains__(self, type_code: int) -> bool:
        return type_code in self._by_type

    def __iter__(self):
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def replace(self, *attrs: Attribute) -> "Attributes":
        d = dict(self._by_type)
        for a in attrs:
            d[a.TYPE] = a
        return Attributes(d.values())

    def without(self, *types: int) -> "Attributes":
        return Attributes(a for t, a in self._by_type.items() if t not in types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attributes) and self._by_type == other._by_type

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._by_type.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"Attributes({list(self._by_type.values())!r})"

    # typed accessors
    origin = property(lambda self: self._by_type.get(1))
    as_path = property(lambda self: self._by_type.get(2) or EMPTY_PATH)
    next_hop = property(lambda self: self._by_type.get(3))
    med = property(lambda self: self._by_type.get(4))
    local_pref = property(lambda self: self._by_type.get(5))
    communities = property(lambda self: self._by_type.get(8))
    originator_id = property(lambda self: self._by_type.get(9))
    cluster_list = property(lambda self: self._by_type.get(10))
    pmsi = property(lambda self: self._by_type.get(22))

    @property
    def ext_communities(self) -> tuple[ExtCommunity, ...]:
        ec = self._by_type.get(16)
        return ec.values if ec is not None else ()

    def encode(self, asn4: bool = True) -> bytes:
        """The attributes as sent to a peer; towards a 2-octet peer AS4_PATH/AS4_AGGREGATOR carry what AS_TRANS hid."""
        out = [a.encode(asn4) for a in self._by_type.values()]
        if not asn4:
            path = self._by_type.get(2)
            if path is not None and path.needs_as4() and 17 not in self._by_type:
                out.append(As4Path(path).encode(True))
            agg = self._by_type.get(7)
            if agg is not None and agg.asn > 0xFFFF and 18 not in self._by_type:
                out.append(As4Aggregator(agg.asn, agg.address).encode(True))
        return b"".join(out)

    def to_dict(self) -> dict:
        return {(type(a).NAME or f"type{a.TYPE}").lower(): a.to_json() for a in self._by_type.values()}


EMPTY_PATH = AsPath()

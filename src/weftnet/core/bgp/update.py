"""UPDATE messages (RFC 4271 section 4.3): the trusted :class:`Update` and the validating :func:`parse_update`.

:func:`parse_update` applies the revised error handling of RFC 7606 and
returns a :class:`ParsedUpdate`, or raises :class:`Notify` when the session
must be reset. The decisions, in the order they are taken:

* withdrawn-routes or total-attribute lengths that do not fit the message,
  an attribute header or value that overruns the attribute field: the routes
  cannot be located, so session reset, Malformed Attribute List (3/1);
* MP_REACH_NLRI or MP_UNREACH_NLRI twice, or either one malformed (bad
  next-hop length, NLRI that does not parse): session reset, Malformed
  Attribute List or Optional Attribute Error (3/9) (RFC 7606 3g, 7.11, 5.3);
* an IPv4 NLRI or withdrawn field that does not parse: session reset,
  Invalid Network Field (3/10);
* an unrecognised well-known attribute: session reset (3/2), as RFC 4271 6.3;
* any other attribute seen twice: all but the first discarded (3g);
* attribute flags that conflict with the type: treat-as-withdraw (3c);
* a malformed value: the attribute's own rule, ``ON_ERROR`` in
  ``attributes.py`` (treat-as-withdraw for ORIGIN, AS_PATH, NEXT_HOP, MED,
  LOCAL_PREF, COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST, EXTENDED
  COMMUNITIES, PMSI_TUNNEL; attribute discard for ATOMIC_AGGREGATE,
  AGGREGATOR, AS4_PATH, AS4_AGGREGATOR);
* LOCAL_PREF, ORIGINATOR_ID or CLUSTER_LIST from an external peer: discarded
  (7.5, 7.9, 7.10);
* a missing well-known mandatory attribute (ORIGIN, AS_PATH; NEXT_HOP when
  the IPv4 NLRI field is used): treat-as-withdraw (3d);
* from an external peer, an AS_PATH whose first AS is not the peer's:
  treat-as-withdraw (RFC 4271 6.3 asks for a NOTIFICATION; RFC 7606 7.2
  relaxes AS_PATH errors to treat-as-withdraw).

Treat-as-withdraw turns every route the message announces into a withdrawal.
The result carries what was wrong, so the session can count and log it.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from weftnet.core.bgp import errors as E
from weftnet.core.bgp.attributes import (
    ATTRIBUTE_CLASSES, EXTENDED, OPTIONAL, PARTIAL, RESET, TRANSITIVE, WITHDRAW, As4Aggregator, As4Path,
    Aggregator, AsPath, Attribute, Attributes, MpReach, MpUnreach, UnknownAttribute,
)
from weftnet.core.bgp.errors import MalformedAttribute, Notify
from weftnet.core.bgp.family import IPV4_UNICAST, Family
from weftnet.core.bgp.message import UPDATE, frame
from weftnet.core.bgp.nlri import MalformedNlri, Nlri, Prefix
from weftnet.core.bgp.nlri.prefix import decode_prefixes

__all__ = ["Update", "ParsedUpdate", "UpdateContext", "parse_update", "end_of_rib"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Update:
    """An UPDATE as this speaker builds it (trusted: nothing is checked). MP_REACH/MP_UNREACH go in ``attributes``."""

    withdrawn: tuple[Prefix, ...] = ()
    attributes: Attributes = field(default_factory=Attributes)
    nlri: tuple[Prefix, ...] = ()

    def body(self, asn4: bool = True) -> bytes:
        w = b"".join(p.encode() for p in self.withdrawn)
        a = self.attributes.encode(asn4)
        return struct.pack("!H", len(w)) + w + struct.pack("!H", len(a)) + a + b"".join(p.encode() for p in self.nlri)

    def encode(self, asn4: bool = True) -> bytes:
        return frame(UPDATE, self.body(asn4))


def end_of_rib(family: Family) -> Update:
    """RFC 4724 section 2: an empty UPDATE (IPv4 unicast) or an empty MP_UNREACH_NLRI."""
    if family == IPV4_UNICAST:
        return Update()
    return Update(attributes=Attributes([MpUnreach(family, ())]))


@dataclass(frozen=True, slots=True)
class UpdateContext:
    """What the session negotiated that parsing depends on."""

    asn4: bool = True
    ebgp: bool = False
    peer_as: int = 0
    families: frozenset[Family] = frozenset({IPV4_UNICAST})


@dataclass
class ParsedUpdate:
    announced: dict[Family, list[Nlri]] = field(default_factory=dict)
    withdrawn: dict[Family, list[Nlri]] = field(default_factory=dict)
    attributes: Attributes = field(default_factory=Attributes)
    next_hops: dict[Family, IPAddress] = field(default_factory=dict)
    treat_as_withdraw: bool = False
    errors: list[str] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    end_of_rib: Family | None = None
    ignored_families: list[Family] = field(default_factory=list)

    @property
    def route_count(self) -> int:
        return sum(map(len, self.announced.values())) + sum(map(len, self.withdrawn.values()))


def _attr_bytes(data: bytes, start: int, end: int) -> bytes:
    return bytes(data[start:end])


def parse_update(body: bytes, ctx: UpdateContext = UpdateContext()) -> ParsedUpdate:
    n = len(body)
    if n < 4:  # the framer guarantees 4; a caller feeding bodies directly may not
        raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason="UPDATE body shorter than 4 octets")
    wlen = int.from_bytes(body[0:2], "big")
    if 2 + wlen + 2 > n:
        raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason="withdrawn routes length overruns the message")
    alen = int.from_bytes(body[2 + wlen:4 + wlen], "big")
    astart = 4 + wlen
    aend = astart + alen
    if aend > n:
        raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason="total path attribute length overruns the message")
    out = ParsedUpdate()
    if n == 4 and wlen == 0 and alen == 0:
        out.end_of_rib = IPV4_UNICAST
        return out
    try:
        withdrawn = decode_prefixes(body[2:2 + wlen], 4)
        nlri = decode_prefixes(body[aend:], 4)
    except MalformedNlri as exc:
        raise Notify(E.UPDATE, E.INVALID_NETWORK, reason=str(exc)) from None

    attrs: dict[int, Attribute] = {}
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    seen: set[int] = set()
    as4_path: As4Path | None = None
    as4_agg: As4Aggregator | None = None
    taw = False
    pos = astart
    while pos < aend:
        hstart = pos
        if pos + 3 > aend:
            raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason="attribute header truncated")
        flags, tcode = body[pos], body[pos + 1]
        if flags & EXTENDED:
            if pos + 4 > aend:
                raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason="attribute header truncated")
            vlen = int.from_bytes(body[pos + 2:pos + 4], "big")
            pos += 4
        else:
            vlen = body[pos + 2]
            pos += 3
        if pos + vlen > aend:
            raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason=f"attribute {tcode} overruns the attribute field")
        value = body[pos:pos + vlen]
        pos += vlen
        raw = _attr_bytes(body, hstart, pos)
        if tcode in seen:
            if tcode in (MpReach.TYPE, MpUnreach.TYPE):
                raise Notify(E.UPDATE, E.MALFORMED_ATTR_LIST, reason=f"attribute {tcode} appears twice")
            out.discarded.append(tcode)
            out.errors.append(f"attribute {tcode} repeated: discarded")
            continue
        seen.add(tcode)
        cls = ATTRIBUTE_CLASSES.get(tcode)
        if cls is None:
            if not flags & OPTIONAL:
                raise Notify(E.UPDATE, E.UNRECOGNIZED_WELL_KNOWN, raw, reason=f"unrecognised well-known attribute {tcode}")
            if flags & TRANSITIVE:
                attrs[tcode] = UnknownAttribute(tcode, (flags | PARTIAL) & ~EXTENDED, bytes(value))
            continue
        if (flags & (OPTIONAL | TRANSITIVE)) != (cls.FLAGS & (OPTIONAL | TRANSITIVE)):
            if cls.ON_ERROR == RESET:
                raise Notify(E.UPDATE, E.ATTR_FLAGS, raw, reason=f"{cls.NAME} flags 0x{flags:02x}")
            taw = True
            out.errors.append(f"{cls.NAME}: flags 0x{flags:02x} conflict with the type: treat-as-withdraw")
            continue
        try:
            attr = cls.decode(value, ctx.asn4)
        except (MalformedAttribute, ValueError) as exc:
            if cls.ON_ERROR == RESET:
                raise Notify(E.UPDATE, E.OPTIONAL_ATTR, raw, reason=f"{cls.NAME}: {exc}") from None
            if cls.ON_ERROR == WITHDRAW:
                taw = True
                out.errors.append(f"{cls.NAME}: {exc}: treat-as-withdraw")
            else:
                out.discarded.append(tcode)
                out.errors.append(f"{cls.NAME}: {exc}: attribute discarded")
            continue
        if isinstance(attr, UnknownAttribute):  # MP attribute of a family we do not implement
            out.ignored_families.append(Family(*struct.unpack("!HB", attr.value)))
            continue
        if tcode in (5, 9, 10) and ctx.ebgp:
            out.discarded.append(tcode)
            continue
        if isinstance(attr, MpReach):
            mp_reach = attr
        elif isinstance(attr, MpUnreach):
            mp_unreach = attr
        elif isinstance(attr, As4Path):
            as4_path = attr
        elif isinstance(attr, As4Aggregator):
            as4_agg = attr
        else:
            attrs[tcode] = attr

    # RFC 6793 4.2.3: from a 2-octet speaker, rebuild the real path; a 4-octet speaker's AS4_* are ignored.
    if not ctx.asn4:
        path = attrs.get(AsPath.TYPE)
        agg = attrs.get(Aggregator.TYPE)
        if as4_agg is not None and isinstance(agg, Aggregator) and agg.asn == 23456:
            attrs[Aggregator.TYPE] = Aggregator(as4_agg.asn, as4_agg.address)
            if isinstance(path, AsPath) and as4_path is not None:
                attrs[AsPath.TYPE] = path.merge_as4(as4_path)
        elif as4_agg is None and isinstance(path, AsPath) and as4_path is not None:
            attrs[AsPath.TYPE] = path.merge_as4(as4_path)

    if mp_unreach is not None:
        if not mp_unreach.nlri and not nlri and not withdrawn and mp_reach is None and not attrs:
            out.end_of_rib = mp_unreach.family
            return out
        out.withdrawn.setdefault(mp_unreach.family, []).extend(mp_unreach.nlri)
    if withdrawn:
        out.withdrawn.setdefault(IPV4_UNICAST, []).extend(withdrawn)

    announcing = bool(nlri) or (mp_reach is not None and bool(mp_reach.nlri))
    if announcing:
        missing = [name for t, name in ((1, "ORIGIN"), (2, "AS_PATH")) if t not in attrs]
        if nlri and 3 not in attrs:
            missing.append("NEXT_HOP")
        if missing:
            taw = True
            out.errors.append(f"missing well-known attribute(s) {', '.join(missing)}: treat-as-withdraw")
        path = attrs.get(AsPath.TYPE)
        if ctx.ebgp and isinstance(path, AsPath) and ctx.peer_as and path.first_as != ctx.peer_as:
            taw = True
            out.errors.append(f"AS_PATH does not start with the peer's AS {ctx.peer_as}: treat-as-withdraw")
        nh = attrs.get(3)
        if nlri and nh is not None and (int(nh.address) == 0 or nh.address.is_multicast):
            taw = True
            out.errors.append(f"NEXT_HOP {nh.address} is not a usable address: treat-as-withdraw")
    out.treat_as_withdraw = taw
    out.attributes = Attributes(attrs.values())
    target = out.withdrawn if taw else out.announced
    if nlri:
        target.setdefault(IPV4_UNICAST, []).extend(nlri)
        if not taw:
            out.next_hops[IPV4_UNICAST] = attrs[3].address  # type: ignore[union-attr]
    if mp_reach is not None and mp_reach.nlri:
        target.setdefault(mp_reach.family, []).extend(mp_reach.nlri)
        if not taw and mp_reach.next_hop is not None:
            out.next_hops[mp_reach.family] = mp_reach.next_hop
    for fam in list(out.announced):
        if fam not in ctx.families:
            out.ignored_families.append(fam)
            del out.announced[fam]
    for fam in list(out.withdrawn):
        if fam not in ctx.families:
            del out.withdrawn[fam]
    return out

"""The per-network firewall: default-deny rules plus connection tracking.

Theory of operation
-------------------
Each private network has an inbound and an outbound rule list. Rules only
allow; anything no rule allows is dropped (default deny), as in Nebula's
host firewall. A rule names a protocol (``any``, ``icmp``, ``icmpv6``,
``tcp``, ``udp``), a destination port range (or ``fragment`` for the later
fragments of a fragmented packet, which carry no ports), and *who*: the
peer's node ID (``host``), groups from the peer's member certificate
(``group`` or ``groups``, all of which the peer must hold), and/or a
``cidr`` the peer's overlay address lies in. When a rule gives several of
host, groups and cidr, all must match.

Connection tracking keeps a table of flows keyed, from this host's point of
view, by ``(protocol, local address, local port, remote address, remote
port, peer node ID)``. A packet a rule allows creates (or refreshes) its flow; a packet
of a tracked flow passes in either direction without consulting the rules,
so replies to allowed traffic come back (TCP, UDP, ICMP echo by its
identifier). ICMP errors (destination unreachable, packet too big, time
exceeded, parameter problem) pass when the packet they quote belongs to a
tracked flow, so path-MTU discovery keeps working. Flows expire after a
per-protocol idle timeout, checked against the ``now`` the caller passes.
The table is bounded, and fair between peers: when it is full, an expired
flow goes first, else a flow of the peer holding the most flows (its least
recently used among the table's 64 least recently used, else the oldest it
opened; counted as ``evicted``), so a peer opening flows cannot grow memory
nor push out another peer's flows while it holds more than that peer
(docs/security.md item 17). An optional quota per peer (``max_flows_per_peer``) refuses a
peer's new flows beyond it (``flow-quota``).

IPv4 fragments (RFC 791 section 3.2) and IPv6 fragments (RFC 8200 section
4.5): the first fragment carries the ports and is judged by the rules; the
identification of an allowed first fragment is remembered briefly so its
later fragments pass. A later fragment with no allowed first fragment only
passes a ``port = "fragment"`` rule.

:func:`parse_packet` reads just enough of an IPv4 (RFC 791) or IPv6
(RFC 8200) header and the transport header for the 5-tuple; a short or
malformed packet raises :class:`MalformedPacket` (a NetworkError) and the
callers drop it and count the reason.

No I/O, no clock: every time-dependent call takes ``now``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from weftnet.core.identity import NodeId
from weftnet.core.vpn.l2switch import Shares
from weftnet.errors import ConfigError, NetworkError, ParseError

__all__ = [
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "PROTO_ICMPV6",
    "MalformedPacket",
    "PacketInfo",
    "parse_packet",
    "read_flow",
    "TCP_UDP",
    "Rule",
    "parse_rule",
    "parse_rules",
    "Firewall",
    "INBOUND",
    "OUTBOUND",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
_PROTOS = {"any": None, "icmp": PROTO_ICMP, "tcp": PROTO_TCP, "udp": PROTO_UDP, "icmpv6": PROTO_ICMPV6}
_PROTO_NAMES = {v: k for k, v in _PROTOS.items() if v is not None}

INBOUND = "inbound"
OUTBOUND = "outbound"

# ICMP messages that quote the packet that caused them (RFC 792, RFC 4443 section 3).
_ICMP4_ERRORS = frozenset({3, 4, 5, 11, 12})
_ICMP6_ERRORS = frozenset({1, 2, 3, 4})
_ICMP4_ECHO = {8: "request", 0: "reply"}
_ICMP6_ECHO = {128: "request", 129: "reply"}

# IPv6 extension headers walked to find the transport header (RFC 8200 section 4).
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAG = 44
_MAX_EXT_HEADERS = 8


class MalformedPacket(NetworkError):
    """An IP packet too short or inconsistent to classify. ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"malformed packet ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


@dataclass(slots=True)
class PacketInfo:
    """What the firewall and router need from one IP packet.

    ``sport``/``dport`` are the TCP/UDP ports, or the echo identifier (both
    fields) for ICMP echo, else 0. ``fragment`` is 0 (not fragmented),
    1 (first fragment) or 2 (a later fragment, no transport header).
    ``inner`` is the flow key quoted by an ICMP error, from the quoting
    packet's sender's side: ``(proto, src, sport, dst, dport)``.
    """

    version: int
    src: bytes
    dst: bytes
    proto: int
    sport: int = 0
    dport: int = 0
    fragment: int = 0
    frag_id: int = 0
    icmp_type: int = -1
    tcp_flags: int = 0
    inner: tuple | None = None
    total_length: int = 0
    dont_fragment: bool = False
    header_length: int = 0

    @property
    def src_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.src)

    @property
    def dst_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.dst)


def _l4(info: PacketInfo, packet: bytes | memoryview, off: int, end: int, quoted: bool) -> None:
    """Fill ports / ICMP fields from the transport header at ``off``."""
    proto = info.proto
    avail = end - off
    if proto in (PROTO_TCP, PROTO_UDP):
        need = 4 if quoted else (20 if proto == PROTO_TCP else 8)
        if avail < need:
            raise MalformedPacket("short-l4", f"{_PROTO_NAMES[proto]} header needs {need} bytes, {avail} left")
        info.sport = (packet[off] << 8) | packet[off + 1]
        info.dport = (packet[off + 2] << 8) | packet[off + 3]
        if proto == PROTO_TCP and not quoted:
            info.tcp_flags = packet[off + 13]
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        if avail < (4 if quoted else 8):
            raise MalformedPacket("short-l4", f"ICMP header needs 8 bytes, {avail} left")
        t = packet[off]
        info.icmp_type = t
        echo = _ICMP4_ECHO if proto == PROTO_ICMP else _ICMP6_ECHO
        errors = _ICMP4_ERRORS if proto == PROTO_ICMP else _ICMP6_ERRORS
        if t in echo and avail >= 6:
            ident = (packet[off + 4] << 8) | packet[off + 5]
            info.sport = info.dport = ident
        elif t in errors and not quoted:
            try:
                q = _parse(memoryview(packet)[off + 8 : end], quoted=True)
            except MalformedPacket:
                return  # an error quoting garbage relates to no flow
            if q.version == info.version:
                info.inner = (q.proto, q.src, q.sport, q.dst, q.dport)


#: An IPv4 header without options and the first four bytes after it (the ports of TCP or UDP).
_V4_PORTS = struct.Struct("!BxH2xHxB2x4s4sHH")
#: An IPv6 header and the first four bytes after it.
_V6_PORTS = struct.Struct("!4xHBx16s16sHH")


#: TCP and UDP: what a flow with an offload header carries, so what the offload fast paths take from
#: :func:`read_flow` (an ICMP echo goes through them only without offload).
TCP_UDP = frozenset({PROTO_TCP, PROTO_UDP})


def read_flow(buf: bytes | memoryview, off: int, n: int) -> tuple[int, bytes, bytes, int, int, int] | None:
    """``(proto, src, dst, sport, dport, total)`` of the packet at ``buf[off:n]`` if it is the data
    plane's common case, read with one ``struct`` call: IPv4 without options (first byte 0x45,
    ``n - off`` at least 28) or IPv6 without extension headers (``n - off`` at least 48), not a
    fragment, its total length within ``n - off``, and TCP (total at least 40 / 60), UDP (28 / 48)
    or an ICMP or ICMPv6 echo request or reply (28 / 48), whose identifier is both ports (so a
    ``ping -s 0``, 28 / 48 bytes, is read here too: the struct itself needs 24 / 44). None
    otherwise (the caller then takes :func:`_parse_walk` or its full path). The one reader of this
    case: :func:`_parse` builds its :class:`PacketInfo` from it, and the data planes' fast paths
    (core/vpn/network.py, core/overlay/dataplane.py; those for offloaded packets take its
    :data:`TCP_UDP` results only) use the fields as they are; it decides as the walk does
    (tests/test_firewall_fastpath.py)."""
    size = n - off
    v = buf[off] if size > 0 else 0
    if v == 0x45 and size >= 28:
        _vi, total, ff, proto, src, dst, sport, dport = _V4_PORTS.unpack_from(buf, off)
        if ff & 0x3FFF or total > size:
            return None
        if proto == PROTO_TCP:
            return (proto, src, dst, sport, dport, total) if total >= 40 else None
        if proto == PROTO_UDP:
            return (proto, src, dst, sport, dport, total) if total >= 28 else None
        if proto == PROTO_ICMP and total >= 28 and sport >> 8 in _ICMP4_ECHO:  # a ping: type, then ident
            ident = (buf[off + 24] << 8) | buf[off + 25]
            return proto, src, dst, ident, ident, total
        return None
    if v >> 4 == 6 and size >= 48:
        plen, proto, src, dst, sport, dport = _V6_PORTS.unpack_from(buf, off)
        total = 40 + plen
        if total > size:
            return None
        if proto == PROTO_TCP:
            return (proto, src, dst, sport, dport, total) if total >= 60 else None
        if proto == PROTO_UDP:
            return (proto, src, dst, sport, dport, total) if total >= 48 else None
        if proto == PROTO_ICMPV6 and total >= 48 and sport >> 8 in _ICMP6_ECHO:
            ident = (buf[off + 44] << 8) | buf[off + 45]
            return proto, src, dst, ident, ident, total
    return None


def _parse(packet: bytes | memoryview, quoted: bool = False) -> PacketInfo:
    """One packet's :class:`PacketInfo`; raises :class:`MalformedPacket`. The data plane's common
    case is read by :func:`read_flow` (one ``struct`` call); anything else, and anything that
    case would refuse, takes the full walk (:func:`_parse_walk`), which decides the same
    (tests/test_firewall_fastpath.py)."""
    if not quoted:
        f = read_flow(packet, 0, len(packet))
        if f is not None:
            proto, src, dst, sport, dport, total = f
            if len(src) == 4:
                df = bool(packet[6] & 0x40)
                if proto == PROTO_TCP:
                    return PacketInfo(4, src, dst, PROTO_TCP, sport, dport, 0, 0, -1, packet[33], None, total, df, 20)
                if proto == PROTO_UDP:
                    return PacketInfo(4, src, dst, PROTO_UDP, sport, dport, 0, 0, -1, 0, None, total, df, 20)
                return PacketInfo(4, src, dst, PROTO_ICMP, sport, dport, 0, 0, packet[20], 0, None, total, df, 20)
            if proto == PROTO_TCP:
                return PacketInfo(6, src, dst, PROTO_TCP, sport, dport, 0, 0, -1, packet[53], None, total, True, 40)
            if proto == PROTO_UDP:
                return PacketInfo(6, src, dst, PROTO_UDP, sport, dport, 0, 0, -1, 0, None, total, True, 40)
            return PacketInfo(6, src, dst, PROTO_ICMPV6, sport, dport, 0, 0, packet[40], 0, None, total, True, 40)
    return _parse_walk(packet, quoted)


def _parse_walk(packet: bytes | memoryview, quoted: bool = False) -> PacketInfo:
    n = len(packet)
    if n < 1:
        raise MalformedPacket("empty")
    version = packet[0] >> 4
    if version == 4:
        if n < 20:
            raise MalformedPacket("short-header", f"IPv4 header needs 20 bytes, got {n}")
        ihl = (packet[0] & 0x0F) * 4
        total = (packet[2] << 8) | packet[3]
        if ihl < 20 or n < ihl:
            raise MalformedPacket("bad-header-length", f"IPv4 IHL {ihl}")
        if quoted:  # an ICMP error may quote a truncated packet
            total = min(total, n) if total >= ihl else n
        elif total < ihl or total > n:
            raise MalformedPacket("bad-total-length", f"IPv4 total length {total}, packet {n}")
        flags_frag = (packet[6] << 8) | packet[7]
        offset = flags_frag & 0x1FFF
        more = bool(flags_frag & 0x2000)
        info = PacketInfo(4, bytes(packet[12:16]), bytes(packet[16:20]), packet[9], total_length=total,
                          dont_fragment=bool(flags_frag & 0x4000), header_length=ihl)
        if offset or more:
            info.fragment = 2 if offset else 1
            info.frag_id = (packet[4] << 8) | packet[5]
        if info.fragment != 2:
            _l4(info, packet, ihl, total, quoted)
        return info
    if version == 6:
        if n < 40:
            raise MalformedPacket("short-header", f"IPv6 header needs 40 bytes, got {n}")
        total = 40 + ((packet[4] << 8) | packet[5])
        if quoted:
            total = min(total, n)
        elif total > n:
            raise MalformedPacket("bad-total-length", f"IPv6 payload length {total - 40}, packet {n}")
        info = PacketInfo(6, bytes(packet[8:24]), bytes(packet[24:40]), packet[6], total_length=total,
                          dont_fragment=True, header_length=40)
        nh, off = packet[6], 40
        for _ in range(_MAX_EXT_HEADERS):
            if nh in _IPV6_EXT:
                if off + 8 > total:
                    raise MalformedPacket("short-ext-header", "IPv6 extension header truncated")
                nh, off = packet[off], off + 8 * (packet[off + 1] + 1)
            elif nh == _IPV6_FRAG:
                if off + 8 > total:
                    raise MalformedPacket("short-ext-header", "IPv6 fragment header truncated")
                fo = (packet[off + 2] << 8) | packet[off + 3]
                info.frag_id = int.from_bytes(packet[off + 4 : off + 8], "big")
                info.fragment = 2 if fo >> 3 else (1 if fo & 1 else 0)
                nh, off = packet[off], off + 8
            else:
                break
        else:
            raise MalformedPacket("too-many-ext-headers", f"more than {_MAX_EXT_HEADERS} IPv6 extension headers")
        if off > total:
            raise MalformedPacket("short-ext-header", "IPv6 extension headers overrun the packet")
        info.proto = nh
        info.header_length = off
        if info.fragment != 2:
            _l4(info, packet, off, total, quoted)
        return info
    raise MalformedPacket("bad-version", f"IP version {version}")


def parse_packet(packet: bytes | memoryview) -> PacketInfo:
    """Classify one IPv4 or IPv6 packet. Raises :class:`MalformedPacket` (never another exception)."""
    return _parse(packet)


# ---------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class Rule:
    """One allow rule. ``ports`` is ``None`` (any), ``"fragment"`` or ``(low, high)`` inclusive."""

    name: str
    proto: int | None = None
    ports: tuple[int, int] | str | None = None
    host: bytes | None = None
    groups: frozenset[str] = frozenset()
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    _cidr_bits: tuple[int, int, int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.cidr is not None:
            plen = self.cidr.prefixlen
            width = 32 if self.cidr.version == 4 else 128
            mask = ((1 << plen) - 1) << (width - plen) if plen else 0
            object.__setattr__(self, "_cidr_bits", (self.cidr.version, int(self.cidr.network_address), mask))

    def matches(self, info: PacketInfo, remote: bytes, peer: bytes, peer_groups: frozenset[str]) -> bool:
        if self.proto is not None and info.proto != self.proto:
            return False
        if self.ports == "fragment":
            if info.fragment != 2:
                return False
        elif info.fragment == 2:
            if self.ports is not None:
                return False  # a later fragment has no port to compare
        elif self.ports is not None and info.proto in (PROTO_TCP, PROTO_UDP):
            lo, hi = self.ports
            if not lo <= info.dport <= hi:
                return False
        if self.host is not None and self.host != peer:
            return False
        if self.groups and not self.groups <= peer_groups:
            return False
        if self._cidr_bits is not None:
            version, net, mask = self._cidr_bits
            if (4 if len(remote) == 4 else 6) != version or int.from_bytes(remote, "big") & mask != net:
                return False
        return True


_RULE_KEYS = frozenset({"proto", "port", "host", "group", "groups", "cidr"})


def _parse_port(where: str, value: Any) -> tuple[int, int] | str | None:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: port must be a number, a range 'low-high', 'any' or 'fragment'")
    if isinstance(value, int):
        if value == 0:
            return None
        if not 1 <= value <= 65535:
            raise ConfigError(f"{where}: port {value} is outside 1-65535")
        return (value, value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: port must be a number, a range 'low-high', 'any' or 'fragment'")
    s = value.strip().lower()
    if s in ("any", "0"):
        return None
    if s == "fragment":
        return "fragment"
    lo_s, sep, hi_s = s.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
    except ValueError:
        raise ConfigError(f"{where}: port {value!r} is not a number, a range 'low-high', 'any' or 'fragment'") from None
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
        raise ConfigError(f"{where}: port range {value!r} must be within 1-65535 with low <= high")
    return (lo, hi)


def parse_rule(where: str, raw: Mapping[str, Any]) -> Rule:
    """One rule from a TOML-shaped table. ``where`` names it in errors (``firewall.inbound[2]``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a rule is a table of proto, port, host, group(s), cidr")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (rules take {', '.join(sorted(_RULE_KEYS))})")
    proto_text = raw.get("proto", "any")
    if not isinstance(proto_text, str) or proto_text.lower() not in _PROTOS:
        raise ConfigError(f"{where}: proto {proto_text!r} is not one of {', '.join(_PROTOS)}")
    proto = _PROTOS[proto_text.lower()]
    if "port" not in raw:
        raise ConfigError(f"{where}: needs a port (a number, 'low-high', 'any' or 'fragment')")
    ports = _parse_port(where, raw["port"])
    if ports not in (None, "fragment") and proto not in (PROTO_TCP, PROTO_UDP):
        raise ConfigError(f"{where}: a port range needs proto 'tcp' or 'udp', not {proto_text!r}")

    selectors = [k for k in ("host", "group", "groups", "cidr") if k in raw]
    if not selectors:
        raise ConfigError(f"{where}: needs at least one of host, group, groups, cidr (use host = 'any' for anyone)")
    host: bytes | None = None
    if "host" in raw:
        h = raw["host"]
        if not isinstance(h, str):
            raise ConfigError(f"{where}: host must be a node ID or 'any'")
        if h.strip().lower() != "any":
            try:
                host = NodeId.parse(h).raw
            except ParseError as exc:
                raise ConfigError(f"{where}: host: {exc}") from None
    groups: set[str] = set()
    if "group" in raw:
        g = raw["group"]
        if not isinstance(g, str) or not g:
            raise ConfigError(f"{where}: group must be a group name")
        if g.lower() != "any":
            groups.add(g)
    if "groups" in raw:
        gs = raw["groups"]
        if not isinstance(gs, list) or not gs or not all(isinstance(x, str) and x for x in gs):
            raise ConfigError(f"{where}: groups must be a non-empty list of group names")
        groups.update(gs)
    cidr = None
    if "cidr" in raw:
        c = raw["cidr"]
        if not isinstance(c, str):
            raise ConfigError(f"{where}: cidr must be text like '10.1.0.0/24'")
        if c.strip().lower() != "any":
            try:
                cidr = ipaddress.ip_network(c.strip(), strict=True)
            except ValueError as exc:
                raise ConfigError(f"{where}: cidr {c!r}: {exc}") from None
    return Rule(where, proto, ports, host, frozenset(groups), cidr)


def parse_rules(config: Mapping[str, Any] | None, where: str = "firewall") -> tuple[list[Rule], list[Rule]]:
    """``{"inbound": [...], "outbound": [...]}`` -> (inbound rules, outbound rules)."""
    if config is None:
        return [], []
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: must be a table with 'inbound' and 'outbound' rule lists")
    unknown = sorted(set(config) - {INBOUND, OUTBOUND, "conntrack"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected inbound, outbound, conntrack)")
    out = []
    for direction in (INBOUND, OUTBOUND):
        rules = config.get(direction, [])
        if not isinstance(rules, list):
            raise ConfigError(f"{where}.{direction}: must be a list of rules")
        out.append([parse_rule(f"{where}.{direction}[{i}]", r) for i, r in enumerate(rules)])
    return out[0], out[1]


# ---------------------------------------------------------------------------
# The firewall with its connection table


@dataclass(slots=True)
class _Flow:
    expires: float
    proto: int
    inbound: bool = False  # opened by an inbound packet (replace_rules re-checks it against inbound rules)


class Firewall:
    """Rules for one network plus its connection-tracking table.

    ``check(direction, info, peer, peer_groups, now)`` returns ``None`` when
    the packet may pass, else a short drop reason (``"no-rule"``).
    """

    DEFAULT_TIMEOUTS = {PROTO_TCP: 720.0, PROTO_UDP: 180.0, None: 60.0}
    FRAGMENT_TIMEOUT = 30.0
    #: A full table looks this far into its least recently used flows for one of the heaviest peer's.
    EVICT_SCAN = 64
    #: First fragments remembered (so their later fragments pass), a quarter of them per peer at most.
    MAX_FRAGMENTS = 4096

    def __init__(
        self,
        inbound: Iterable[Rule] = (),
        outbound: Iterable[Rule] = (),
        *,
        max_flows: int = 65_536,
        timeouts: Mapping[int | None, float] | None = None,
        max_flows_per_peer: int | None = None,
    ):
        if max_flows < 1:
            raise ConfigError("conntrack max_flows must be at least 1")
        if max_flows_per_peer is not None and max_flows_per_peer < 1:
            raise ConfigError("conntrack max_flows_per_peer must be at least 1")
        self.inbound = list(inbound)
        self.outbound = list(outbound)
        self.max_flows = max_flows
        self.timeouts = dict(self.DEFAULT_TIMEOUTS)
        if timeouts:
            self.timeouts.update(timeouts)
        self._flows: OrderedDict[tuple, _Flow] = OrderedDict()
        self._fragments: OrderedDict[tuple, float] = OrderedDict()
        self._frag_peers: dict[bytes, OrderedDict[tuple, None]] = {}  # each peer's, oldest first
        self.counters: dict[str, int] = {"evicted": 0, "expired": 0, "tracked_pass": 0, "rule_pass": 0}
        #: An optional quota of flows per peer node ID (the overlay interface, open to any node).
        self.max_flows_per_peer = max_flows_per_peer
        #: Each peer's flows, oldest opened first: a full table evicts from the peer holding the most
        #: (one peer cannot push out everybody else's flows). Touched when a flow opens or closes,
        #: never per packet of a tracked flow.
        self._per_peer: dict[bytes, OrderedDict[tuple, None]] = {}
        self._shares = Shares()  # which peer holds the most flows, in O(1)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, where: str = "firewall", *,
                    default_max_flows_per_peer: int | None = None) -> "Firewall":
        """Rules plus optional ``conntrack = {max_flows, max_flows_per_peer, tcp_timeout, udp_timeout,
        default_timeout}``."""
        inbound, outbound = parse_rules(config, where)
        ct = (config or {}).get("conntrack", {})
        if not isinstance(ct, Mapping):
            raise ConfigError(f"{where}.conntrack: must be a table")
        keys = {"max_flows", "max_flows_per_peer", "tcp_timeout", "udp_timeout", "default_timeout"}
        unknown = sorted(set(ct) - keys)
        if unknown:
            raise ConfigError(f"{where}.conntrack: unknown key {unknown[0]!r}")
        timeouts: dict[int | None, float] = {}
        for key, proto in (("tcp_timeout", PROTO_TCP), ("udp_timeout", PROTO_UDP), ("default_timeout", None)):
            if key in ct:
                v = ct[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ConfigError(f"{where}.conntrack.{key}: must be a positive number of seconds")
                timeouts[proto] = float(v)
        max_flows = ct.get("max_flows", 65_536)
        if isinstance(max_flows, bool) or not isinstance(max_flows, int) or max_flows < 1:
            raise ConfigError(f"{where}.conntrack.max_flows: must be a positive integer")
        per_peer = ct.get("max_flows_per_peer", default_max_flows_per_peer)
        if per_peer is not None and (isinstance(per_peer, bool) or not isinstance(per_peer, int) or per_peer < 1):
            raise ConfigError(f"{where}.conntrack.max_flows_per_peer: must be a positive integer")
        return cls(inbound, outbound, max_flows=max_flows, timeouts=timeouts, max_flows_per_peer=per_peer)

    def __len__(self) -> int:
        return len(self._flows)

    @staticmethod
    def flow_key(direction: str, info: PacketInfo, peer: bytes) -> tuple:
        """``(proto, local addr, local port, remote addr, remote port, peer)`` from this host's side.

        The peer's node ID is part of the key so a flow opened with one member
        can never carry packets from another, whatever addresses they claim.
        """
        if direction == OUTBOUND:
            return (info.proto, info.src, info.sport, info.dst, info.dport, peer)
        return (info.proto, info.dst, info.dport, info.src, info.sport, peer)

    def _lookup(self, key: tuple, now: float) -> bool:
        flow = self._flows.get(key)
        if flow is None:
            return False
        if flow.expires <= now:
            del self._flows[key]
            self._untrack(key)
            self.counters["expired"] += 1
            return False
        flow.expires = now + self.timeouts.get(flow.proto, self.timeouts[None])
        self._flows.move_to_end(key)
        return True

    def pass_tracked(self, key: tuple, now: float) -> bool:
        """The data plane's fast path (core/vpn/network.py): True, with the flow refreshed and
        counted exactly as :meth:`check` does it, if ``key`` (a :meth:`flow_key`) is a tracked
        flow that has not expired; False otherwise, having changed nothing (the caller then
        takes :meth:`check`, which decides and expires as usual)."""
        flow = self._flows.get(key)
        if flow is None or flow.expires <= now:
            return False
        flow.expires = now + self.timeouts.get(flow.proto, self.timeouts[None])
        self._flows.move_to_end(key)
        self.counters["tracked_pass"] += 1
        return True

    def _track(self, key: tuple, now: float, inbound: bool = False) -> bool:
        """Open or refresh the flow ``key``; False if its peer is over its quota of flows."""
        proto = key[0]
        timeout = self.timeouts.get(proto, self.timeouts[None])
        flow = self._flows.get(key)
        if flow is not None:
            flow.expires = now + timeout
            self._flows.move_to_end(key)
            return True
        peer = key[5]
        mine = self._per_peer.get(peer)
        if self.max_flows_per_peer is not None and mine is not None and len(mine) >= self.max_flows_per_peer:
            self.counters["quota"] = self.counters.get("quota", 0) + 1
            return False
        flows = self._flows
        while len(flows) >= self.max_flows:
            k, old = next(iter(flows.items()))  # least recently used: the likeliest to be expired already
            if old.expires <= now:
                self.counters["expired"] += 1
            else:
                # Nothing expired: a flow of the peer holding the most goes (the newcomer's if that is
                # the newcomer), so no peer's volume pushes out a lighter peer's flows: its least recently
                # used among the EVICT_SCAN least recently used of all, else the oldest it opened.
                per = self._per_peer
                heaviest = self._shares.heaviest(peer)
                if k[5] != heaviest:
                    for i, k in enumerate(flows):
                        if k[5] == heaviest:
                            break
                        if i >= self.EVICT_SCAN:
                            k = next(iter(per[heaviest]))
                            break
                self.counters["evicted"] += 1
            del flows[k]
            self._untrack(k)
        flows[key] = _Flow(now + timeout, proto, inbound)
        mine = self._per_peer.get(peer)  # (eviction may have emptied and dropped the newcomer's own)
        if mine is None:
            mine = self._per_peer[peer] = OrderedDict()
        mine[key] = None
        self._shares.add(peer)
        return True

    def _untrack(self, key: tuple) -> None:
        mine = self._per_peer.get(key[5])
        if mine is not None and mine.pop(key, 0) is None:
            self._shares.remove(key[5])
            if not mine:
                del self._per_peer[key[5]]

    def _fragment_key(self, info: PacketInfo, peer: bytes) -> tuple:
        return (info.proto, info.src, info.dst, info.frag_id, peer)

    def check(self, direction: str, info: PacketInfo, peer: bytes, peer_groups: frozenset[str], now: float) -> str | None:
        """Decide one packet. ``peer`` is the remote member's node ID (raw bytes)."""
        if info.fragment == 2:
            fkey = self._fragment_key(info, peer)
            exp = self._fragments.get(fkey)
            if exp is not None and exp > now:
                self.counters["tracked_pass"] += 1
                return None
        else:
            key = self.flow_key(direction, info, peer)
            if self._lookup(key, now):
                self.counters["tracked_pass"] += 1
                if info.fragment == 1:  # a tracked flow's fragmented datagram: its later fragments pass too
                    self._remember_fragment(info, peer, now)
                return None
            if info.inner is not None:
                # An ICMP error quotes a packet this host's peer received from
                # (outbound flow) or sent to (inbound) us; its flow is the quoted
                # packet's, seen from the other direction.
                p, s, sp, d, dp = info.inner
                inner_key = (p, s, sp, d, dp, peer) if direction == INBOUND else (p, d, dp, s, sp, peer)
                if self._lookup(inner_key, now):
                    self.counters["tracked_pass"] += 1
                    return None
        remote = info.src if direction == INBOUND else info.dst
        rules = self.inbound if direction == INBOUND else self.outbound
        for rule in rules:
            if rule.matches(info, remote, peer, peer_groups):
                break
        else:
            return "no-rule"
        if info.fragment == 2:
            self.counters["rule_pass"] += 1
            return None
        if info.icmp_type >= 0 and info.inner is not None:
            self.counters["rule_pass"] += 1
            return None  # errors open no flow
        if not self._track(self.flow_key(direction, info, peer), now, direction == INBOUND):
            return "flow-quota"
        self.counters["rule_pass"] += 1
        if info.fragment == 1:
            self._remember_fragment(info, peer, now)
        return None

    def replace_rules(self, inbound: Iterable[Rule], outbound: Iterable[Rule],
                      groups_of: Callable[[bytes], frozenset[str]] = lambda peer: frozenset()) -> int:
        """Install new rule lists; tracked flows the new rules would no longer open are closed.

        A flow is re-checked in the direction that opened it (a connection
        accepted under a removed inbound rule is cut, while one this host
        opened stays). ``groups_of`` gives a peer's groups. Returns how many
        flows were closed.
        """
        self.inbound = list(inbound)
        self.outbound = list(outbound)
        closed = 0
        for key, flow in list(self._flows.items()):
            proto, local, lport, remote, rport, peer = key
            version = 4 if len(local) == 4 else 6
            if flow.inbound:
                info, rules = PacketInfo(version, remote, local, proto, rport, lport), self.inbound
            else:
                info, rules = PacketInfo(version, local, remote, proto, lport, rport), self.outbound
            groups = groups_of(peer)
            if not any(r.matches(info, remote, peer, groups) for r in rules):
                del self._flows[key]
                self._untrack(key)
                closed += 1
        self._fragments.clear()
        self._frag_peers.clear()
        self.counters["closed_by_rules"] = self.counters.get("closed_by_rules", 0) + closed
        return closed

    def _remember_fragment(self, info: PacketInfo, peer: bytes, now: float) -> None:
        fkey = self._fragment_key(info, peer)
        frags = self._fragments
        if fkey not in frags:
            # Small, bounded: fragments are rare on a path whose MTU is respected. A peer holding a
            # quarter of it loses its own oldest, so one peer's first fragments never push out others'.
            mine = self._frag_peers.get(peer)
            if mine is not None and len(mine) >= self.MAX_FRAGMENTS // 4:
                self._forget_fragment(next(iter(mine)))
            elif len(frags) >= self.MAX_FRAGMENTS:
                self._forget_fragment(next(iter(frags)))
            mine = self._frag_peers.get(peer)
            if mine is None:
                mine = self._frag_peers[peer] = OrderedDict()
            mine[fkey] = None
        frags[fkey] = now + self.FRAGMENT_TIMEOUT
        frags.move_to_end(fkey)

    def _forget_fragment(self, fkey: tuple) -> None:
        del self._fragments[fkey]
        mine = self._frag_peers[fkey[4]]
        del mine[fkey]
        if not mine:
            del self._frag_peers[fkey[4]]

    def expire(self, now: float, budget: int = 1024) -> int:
        """Drop up to ``budget`` expired flows from the least-recently-used end; returns how many."""
        n = 0
        while self._flows and n < budget:
            key, flow = next(iter(self._flows.items()))
            if flow.expires > now:
                break
            del self._flows[key]
            self._untrack(key)
            n += 1
        self.counters["expired"] += n
        while self._fragments:
            fkey, exp = next(iter(self._fragments.items()))
            if exp > now:
                break
            self._forget_fragment(fkey)
        return n

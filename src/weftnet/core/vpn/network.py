"""The sans-IO data plane of one private network: TUN packets in, session payloads out, and back.

Theory of operation (docs/vpn.md)
---------------------------------
A :class:`VpnNetwork` is this node's membership of one network. It holds the
network's descriptor, this node's own certificate, the certificates of the
members it has learned, a routing table (overlay address -> member node ID)
built from those certificates, the firewall, and per-peer counters. It never
touches a TUN device or a socket; the runtime calls:

* ``outbound(packet, now)`` for an IP packet read from the TUN. Checks, in
  order: the packet parses; its source is one of our certified addresses;
  it fits the overlay MTU (else an ICMP "fragmentation needed" / "packet too
  big" goes back to the TUN, or an IPv4 packet without DF is fragmented,
  RFC 791 section 3.2 - never a silent drop); its destination is a member's
  certified address; that member's certificate is still valid; the outbound
  firewall allows it. Result: :class:`Send` (node ID + wire payloads for the
  secure transport), :class:`Deliver` (an ICMP error for the TUN) or
  :class:`Drop` (a reason, counted).
* ``inbound(sender, payload, now)`` for a payload the secure transport
  received from the authenticated ``sender`` node ID. A data packet
  (:class:`VpnPacket`) is delivered only if the sender holds a valid,
  unexpired, unrevoked certificate for this network; the inner source address
  is one that certificate grants (anti-spoofing); the destination is one of
  ours; and the inbound firewall allows it. Certificates travel over the
  overlay in :class:`CertOffer` messages (a member offers its own certificate
  only - the offer's certificate must name the sender); revocation lists
  (:class:`~weftnet.core.vpn.netcert.RevocationList`) are accepted when signed
  by the authority and newer than the one held.
* ``messages_to_send()`` for control messages the core wants sent
  (certificate offers), ``next_event()`` for events (:class:`RouteMiss`,
  :class:`MemberAdded`, :class:`MemberRemoved`), ``get_timer()`` /
  ``handle_timer(now)`` to expire certificates and idle flows.

The first packet to a peer (and one every ``offer_interval`` seconds) carries
our certificate offer in front of it, so a peer learns who we are before our
data arrives; a data packet from a sender we do not know yet draws a
rate-limited offer with ``want_reply`` set, so the two sides converge after a
restart. Nothing from a non-member ever reaches the TUN.

:class:`VpnSwitch` holds the networks this node belongs to and dispatches
inbound payloads by network ID, so two networks with overlapping prefixes
stay separate (each has its own TUN, routing table and firewall).

Batching: ``outbound_batch`` / ``inbound_batch`` take lists so a driver can
read many packets per wake-up; per-packet work is independent.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar, Iterable

from weftnet.core.vpn.firewall import (
    INBOUND,
    OUTBOUND,
    PROTO_ICMP,
    PROTO_ICMPV6,
    TCP_UDP,
    Firewall,
    MalformedPacket,
    PacketInfo,
    parse_packet,
    read_flow,
)
from weftnet.core.identity import NodeId
from weftnet.core.vpn.netcert import (
    AddressOutsideNetwork,
    BadSignature,
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    NetCert,
    NetworkDescriptor,
    RevocationList,
    WrongNetwork,
)
from weftnet.core.session.reassembly import REFUSED, Reassembly
from weftnet.core.wire import (
    MAX_MESSAGE_SIZE,
    U8,
    U32,
    VERSION,
    Fixed,
    Message,
    Rest,
    Struct,
    decode,
    encode,
    peek_type,
    register,
)
from weftnet.errors import DecodeError, NetworkError

__all__ = [
    "DEFAULT_MTU",
    "MIN_MTU",
    "MAX_MTU",
    "VPN_OVERHEAD",
    "VpnPacket",
    "VpnChunk",
    "CertOffer",
    "Send",
    "Deliver",
    "Drop",
    "RouteMiss",
    "MemberAdded",
    "MemberRemoved",
    "PeerCounters",
    "VpnNetwork",
    "VpnSwitch",
    "icmp_too_big",
    "fragment_ipv4",
    "offload_header_ok",
]

#: Overlay MTU: the IPv6 minimum link MTU (RFC 8200 section 5), so overlay
#: packets fit every path whose underlay MTU is at least 1280 + VPN_OVERHEAD.
DEFAULT_MTU = 1280
MIN_MTU = 576
MAX_MTU = 9000
#: Bytes the overlay adds to an inner packet on an IPv6 underlay: IPv6 40 +
#: UDP 8 + transport framing 30 (version, type, receiver index, counter, AEAD
#: tag) + VpnPacket header 34 (version, type, network ID).
VPN_OVERHEAD = 40 + 8 + 30 + 34

_NETWORK_ID = Fixed(32)
_HDR = bytes((VERSION, 0x52))
_CHUNK_HDR = bytes((VERSION, 0x55))
_CHUNK_FIELDS = struct.Struct("!IBB")
#: ``virtio_net_hdr`` (include/uapi/linux/virtio_net.h), host byte order as the TUN uses it.
VNET_HDR = struct.Struct("=BBHHHH")
VNET_HDR_LEN = 10
VNET_NONE = bytes(VNET_HDR_LEN)
VNET_F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 0, 1, 4, 5, 0x80
#: The offloads a TUN hands over and a peer may send: TCP segmentation, UDP segmentation (core/vpn/coalesce.py).
GSO_KINDS = (GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4)
#: The offloads the data plane's fast paths take (:meth:`VpnNetwork.outbound_fast`); UDP
#: segmentation, with its extra checks, takes the full path.
_FAST_KINDS = frozenset((GSO_NONE, GSO_TCPV4, GSO_TCPV6))
MAX_CHUNKS = 64
#: Offloaded packets are cut in pieces of this size; the transport seals each
#: piece once and fragments it to datagram size (TransportFragment). A full
#: chunk's fragments fit one UDP GSO send even at the smallest datagram size
#: (1,344 bytes: 49 pieces, 65,440 bytes with their headers; core/session/train.py),
#: so the receiver gets them in one read and opens them at once.
CHUNK_SIZE = 64_600
#: The runtime caps a network TUN's superpackets at this size (``gso_max_size``),
#: so that each one is a single chunk: one seal, one open, no chunk reassembly.
GSO_MAX_SIZE = 64_000
#: Reassembly: a packet's pieces must all arrive within this many seconds; at most this many at once,
#: each at most the largest packet a TUN hands over (so at most 256 x 64 KiB buffered per network).
REASSEMBLY_TIMEOUT = 2.0
MAX_REASSEMBLIES = 256
MAX_REASSEMBLED = VNET_HDR_LEN + 65_535


@register
@dataclass(frozen=True)
class VpnPacket(Message):
    """One IP packet of one network, inside a secure session."""

    TYPE: ClassVar = 0x52
    network_id: bytes
    packet: bytes
    FIELDS: ClassVar = (("network_id", _NETWORK_ID), ("packet", Rest(MAX_MESSAGE_SIZE - 34, min_len=1)))


@register
@dataclass(frozen=True)
class VpnChunk(Message):
    """One piece of an offloaded packet: ``virtio_net_hdr (10) | IP packet``, cut in ``count`` pieces.

    Carries TCP superpackets (up to 64 KiB, from a TUN with segmentation
    offload) and packets whose checksum the kernel left partial. The receiver
    reassembles the pieces of one ``packet_id`` and writes the whole to its
    TUN with the header, so its kernel does the segmentation or checksum.
    """

    TYPE: ClassVar = 0x55
    network_id: bytes
    packet_id: int
    index: int
    count: int
    data: bytes
    FIELDS: ClassVar = (("network_id", _NETWORK_ID), ("packet_id", U32), ("index", U8), ("count", U8),
                        ("data", Rest(MAX_MESSAGE_SIZE - 40, min_len=1)))

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_CHUNKS or not 0 <= self.index < self.count:
            raise ValueError(f"chunk {self.index} of {self.count}: count is 1-{MAX_CHUNKS} and index below it")


@register
@dataclass(frozen=True)
class CertOffer(Message):
    """A member's own certificate; ``want_reply`` asks the receiver to offer its own back."""

    TYPE: ClassVar = 0x53
    network_id: bytes
    certificate: NetCert
    want_reply: int
    FIELDS: ClassVar = (("network_id", _NETWORK_ID), ("certificate", Struct(NetCert)), ("want_reply", U8))

    def __post_init__(self) -> None:
        if self.want_reply not in (0, 1):
            raise ValueError("want_reply is 0 or 1")


# --- results and events -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send each payload, in order, to ``node_id`` through the secure transport."""

    node_id: NodeId
    payloads: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Write ``packet`` to this network's TUN (after ``vnet``, its virtio_net_hdr, if not empty)."""

    packet: bytes
    vnet: bytes = b""


@dataclass(frozen=True, slots=True)
class Drop:
    """The packet was dropped; ``reason`` is a short tag counted in the stats."""

    reason: str
    node_id: NodeId | None = None


@dataclass(frozen=True, slots=True)
class RouteMiss:
    """A packet for ``address`` found no member: the runtime may look the member up."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class MemberAdded:
    node_id: NodeId
    certificate: NetCert


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    node_id: NodeId
    reason: str


@dataclass
class PeerCounters:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"packets_in": self.packets_in, "bytes_in": self.bytes_in, "packets_out": self.packets_out,
                "bytes_out": self.bytes_out, "drops": dict(sorted(self.drops.items()))}


@dataclass
class _Member:
    cert: NetCert
    groups: frozenset[str]
    addresses: frozenset[bytes]
    offered_at: float | None = None  # when we last offered our certificate to this member
    #: The member's NodeId, made once (every packet sent to it is addressed with it).
    nid: NodeId | None = None


_CERT_REASONS: tuple[tuple[type[CertificateError], str], ...] = (
    (CertificateExpired, "cert-expired"),
    (CertificateNotYetValid, "cert-not-yet-valid"),
    (CertificateRevoked, "cert-revoked"),
    (WrongNetwork, "wrong-network"),
    (BadSignature, "bad-signature"),
    (AddressOutsideNetwork, "address-outside-network"),
)


def _cert_reason(exc: CertificateError) -> str:
    for cls, reason in _CERT_REASONS:
        if isinstance(exc, cls):
            return reason
    return "bad-certificate"


def offload_header_ok(vnet: bytes, packet: bytes) -> bool:
    """True if a peer's ``virtio_net_hdr`` may go to our kernel with ``packet``.

    The header reaches the kernel, so only what a TUN itself produces is let
    through: TCPv4/TCPv6 segmentation (or none) with a segment size below the
    packet length, and checksum offsets inside the packet.
    """
    flags, gso_type, _hl, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
    kind = gso_type & ~GSO_ECN
    if kind == GSO_UDP_L4:  # UDP segmentation: a UDP packet whose checksum the kernel completes
        if gso_type != kind or flags != VNET_F_NEEDS_CSUM or csum_offset != 6 or len(packet) < 29:
            return False
        version = packet[0] >> 4
        if not ((version == 4 and packet[9] == 17) or (version == 6 and len(packet) >= 49 and packet[6] == 17)):
            return False
    return not (kind not in GSO_KINDS or flags & ~VNET_F_NEEDS_CSUM
                or (kind != GSO_NONE and not 0 < gso_size < len(packet))
                or (flags & VNET_F_NEEDS_CSUM and csum_start + csum_offset + 2 > len(packet)))


# --- ICMP and fragmentation ---------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def icmp_too_big(packet: bytes, info: PacketInfo, mtu: int) -> bytes:
    """The ICMP error telling the sender of ``packet`` to use at most ``mtu`` bytes.

    IPv4: destination unreachable, code 4 "fragmentation needed and DF set",
    next-hop MTU in the second word (RFC 792, RFC 1191 section 4). IPv6:
    "packet too big" (RFC 4443 section 3.2), quoting as much of the packet as
    fits in the minimum MTU. Its source is the original destination, so the
    error arrives from the TUN's side of the route (a local source arriving on
    the TUN would be a martian).
    """
    if info.version == 4:
        quoted = packet[: info.header_length + 8]
        body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted
        body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, PROTO_ICMP, 0,
                                    info.dst, info.src))
        hdr[10:12] = struct.pack("!H", _checksum(bytes(hdr)))
        return bytes(hdr) + body
    quoted = packet[: 1280 - 48]
    body = struct.pack("!BBHI", 2, 0, 0, mtu) + quoted
    pseudo = info.dst + info.src + struct.pack("!I3xB", len(body), PROTO_ICMPV6)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), PROTO_ICMPV6, 64, info.dst, info.src)
    return hdr + body


def fragment_ipv4(packet: bytes, info: PacketInfo, mtu: int) -> list[bytes]:
    """Split an IPv4 packet (DF clear) into fragments of at most ``mtu`` bytes (RFC 791 section 3.2).

    Every fragment repeats the header (options included) with its own offset,
    MF flag and checksum; an already-fragmented packet keeps its offset base
    and its own MF on the last piece.
    """
    ihl = info.header_length
    header = packet[:ihl]
    data = packet[ihl : info.total_length]
    step = (mtu - ihl) // 8 * 8
    if step <= 0:
        raise NetworkError(f"MTU {mtu} leaves no room for an IPv4 fragment")
    flags_frag = struct.unpack_from("!H", packet, 6)[0]
    base = flags_frag & 0x1FFF
    last_more = flags_frag & 0x2000
    out = []
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        more = 0x2000 if start + step < len(data) else last_more
        h = bytearray(header)
        struct.pack_into("!H", h, 2, ihl + len(chunk))
        struct.pack_into("!H", h, 6, more | (base + start // 8))
        h[10:12] = b"\x00\x00"
        struct.pack_into("!H", h, 10, _checksum(bytes(h)))
        out.append(bytes(h) + chunk)
    return out


# --- one network --------------------------------------------------------------


class VpnNetwork:
    """This node's data plane for one private network (see the module docstring)."""

    #: Re-offer our certificate to a peer this often (seconds), carried on a data packet.
    OFFER_INTERVAL = 300.0
    #: Answer an unknown sender with our offer at most this often per sender.
    UNKNOWN_SENDER_INTERVAL = 10.0
    #: Report a route miss for one address at most this often.
    ROUTE_MISS_INTERVAL = 5.0
    _MAX_RATE_ENTRIES = 4096

    def __init__(
        self,
        descriptor: NetworkDescriptor,
        own_cert: NetCert,
        now: float,
        *,
        firewall: Firewall | None = None,
        revocations: RevocationList | None = None,
        mtu: int = DEFAULT_MTU,
        chunk_size: int = CHUNK_SIZE,
    ):
        descriptor.verify()
        if revocations is not None:
            revocations.verify(descriptor)
        own_cert.verify(descriptor, now, revocations)
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise NetworkError(f"overlay MTU {mtu} is outside {MIN_MTU}-{MAX_MTU}")
        self.descriptor = descriptor
        self.network_id = descriptor.network_id
        self.own_cert = own_cert
        self.node_id = NodeId(own_cert.node_id)
        self.firewall = firewall if firewall is not None else Firewall()
        self.revocations = revocations
        self.mtu = mtu
        if not 512 <= chunk_size <= MAX_MESSAGE_SIZE - 40:
            raise NetworkError(f"chunk size {chunk_size} is outside 512-{MAX_MESSAGE_SIZE - 40}")
        self.chunk_size = chunk_size
        self._own_addresses = frozenset(a.packed for a in own_cert.addresses)
        self._members: dict[bytes, _Member] = {}
        self._routes: dict[bytes, bytes] = {}
        self.peers: dict[bytes, PeerCounters] = {}
        self.drops: dict[str, int] = {}
        self._outgoing: list[tuple[NodeId, bytes]] = []
        self._events: list = []
        self._unknown_answered: OrderedDict[bytes, float] = OrderedDict()
        self._route_missed: OrderedDict[bytes, float] = OrderedDict()
        #: Senders whose new certificate or revocation list cost a signature check, and when (docs/security.md item 17).
        self._checked: OrderedDict[bytes, float] = OrderedDict()
        self._next_packet_id = 0
        self._next_expiry: float | None = None  # get_timer's cache; None after a membership change
        #: Our own certificate is on a revocation list we accepted: we send nothing more.
        self.own_revoked = False
        self._reassembly = Reassembly(MAX_REASSEMBLIES, REASSEMBLY_TIMEOUT, MAX_REASSEMBLED,
                                      lambda key: self._drop("reassembly-timeout", key[0]))
        self._offer_plain = encode(CertOffer(self.network_id, own_cert, 0))
        self._offer_reply = encode(CertOffer(self.network_id, own_cert, 1))

    # -- membership ------------------------------------------------------------

    def members(self) -> list[NetCert]:
        """Known member certificates, sorted by node ID."""
        return [self._members[k].cert for k in sorted(self._members)]

    def route(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> NodeId | None:
        raw = self._routes.get(ipaddress.ip_address(address).packed)
        return NodeId(raw) if raw is not None else None

    def add_certificate(self, cert: NetCert, now: float) -> bool:
        """Verify and install a member certificate (from a file, the DHT or an offer).

        Raises a :class:`~weftnet.core.vpn.netcert.CertificateError` subclass when
        the certificate must not be trusted. Returns False when an equal or
        newer certificate for the same member is already installed. An address
        claimed by two valid certificates goes to the newer one (later
        not_before, then higher serial): the authority reassigned it.
        """
        cert.verify(self.descriptor, now, self.revocations)
        if cert.node_id == self.own_cert.node_id:
            return False
        if any(a.packed in self._own_addresses for a in cert.addresses):
            raise CertificateError(f"certificate #{cert.serial} claims one of this node's own addresses")
        old = self._members.get(cert.node_id)
        if old is not None and (old.cert.not_before, old.cert.serial) >= (cert.not_before, cert.serial):
            return False
        for a in cert.addresses:
            holder = self._routes.get(a.packed)
            if holder is not None and holder != cert.node_id:
                other = self._members[holder].cert
                if (other.not_before, other.serial) > (cert.not_before, cert.serial):
                    raise CertificateError(
                        f"address {a} belongs to a newer certificate (#{other.serial}) of another member"
                    )
        for a in cert.addresses:
            holder = self._routes.get(a.packed)
            if holder is not None and holder != cert.node_id:
                self._remove(holder, f"address {a} reassigned")
        if old is not None:
            for a in old.addresses:
                self._routes.pop(a, None)
        addresses = frozenset(a.packed for a in cert.addresses)
        self._next_expiry = None
        self._members[cert.node_id] = _Member(cert, frozenset(cert.groups), addresses,
                                              old.offered_at if old is not None else None, NodeId(cert.node_id))
        for a in addresses:
            self._routes[a] = cert.node_id
        self.peers.setdefault(cert.node_id, PeerCounters())
        self._events.append(MemberAdded(NodeId(cert.node_id), cert))
        return True

    def _remove(self, node_id: bytes, reason: str) -> None:
        self._next_expiry = None
        m = self._members.pop(node_id, None)
        if m is None:
            return
        for a in m.addresses:
            if self._routes.get(a) == node_id:
                del self._routes[a]
        self._events.append(MemberRemoved(NodeId(node_id), reason))

    def update_revocations(self, revocations: RevocationList) -> bool:
        """Install a newer signed revocation list and remove members it revokes.

        Raises :class:`~weftnet.core.vpn.netcert.CertificateError` for a list that
        is not signed by this network's authority. Returns False for a list no
        newer than the one held.
        """
        if self.revocations is not None and revocations.seq <= self.revocations.seq:
            return False  # cheapest check first: a replay of the list held costs no signature check
        revocations.verify(self.descriptor)
        self.revocations = revocations
        if revocations.revokes(self.own_cert):
            self.own_revoked = True
        for node_id in sorted(self._members):
            if revocations.revokes(self._members[node_id].cert):
                self._remove(node_id, "revoked")
        return True

    # -- counters --------------------------------------------------------------

    def _drop(self, reason: str, peer: bytes | None = None) -> Drop:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if peer is not None:
            counters = self.peers.get(peer)
            if counters is not None:  # only members get per-peer entries (bounded)
                counters.drop(reason)
            return Drop(reason, NodeId(peer))
        return Drop(reason)

    def stats(self) -> dict:
        """Counters for the control API: totals, drops by reason, and per member."""
        return {
            "network": self.descriptor.name,
            "network_id": self.network_id.hex(),
            "members": len(self._members),
            "flows": len(self.firewall),
            "drops": dict(sorted(self.drops.items())),
            "peers": {NodeId(k).text(): v.as_dict() for k, v in sorted(self.peers.items())},
        }

    # -- the data plane --------------------------------------------------------

    def _route_out(self, packet: bytes, now: float):
        """The checks every outbound packet passes: (info, member node ID, member) or a Drop."""
        try:
            info = parse_packet(packet)
        except MalformedPacket as exc:
            return self._drop("malformed:" + exc.reason)
        if info.src not in self._own_addresses:
            return self._drop("bad-source")
        if now >= self.own_cert.not_after:
            return self._drop("own-cert-expired")
        if self.own_revoked:
            return self._drop("own-cert-revoked")
        node = self._routes.get(info.dst)
        if node is None:
            self._route_miss(info.dst, now)
            return self._drop("no-route")
        member = self._members[node]
        if now >= member.cert.not_after:
            self._remove(node, "expired")
            return self._drop("cert-expired", node)
        if self.firewall.check(OUTBOUND, info, node, member.groups, now) is not None:
            return self._drop("firewall", node)
        return info, node, member

    def _with_offer(self, member: _Member, payloads: list[bytes], now: float) -> list[bytes]:
        if member.offered_at is None or now - member.offered_at >= self.OFFER_INTERVAL:
            member.offered_at = now
            payloads.insert(0, self._offer_plain)
        return payloads

    def outbound(self, packet: bytes, now: float) -> Send | Deliver | Drop:
        """Route one IP packet read from the TUN."""
        r = self._route_out(packet, now)
        if type(r) is Drop:
            return r
        info, node, member = r
        if info.total_length > self.mtu:
            if info.version == 4 and not info.dont_fragment:
                payloads = [_HDR + self.network_id + p for p in fragment_ipv4(packet, info, self.mtu)]
            else:
                self.drops["too-big"] = self.drops.get("too-big", 0) + 1
                return Deliver(icmp_too_big(packet, info, self.mtu))
        else:  # the common case, one piece (no list comprehension: a frame of its own on 3.11)
            payloads = [_HDR + self.network_id + (packet if len(packet) == info.total_length
                                                  else packet[: info.total_length])]
        c = self.peers[node]
        c.packets_out += len(payloads)
        c.bytes_out += info.total_length
        if member.offered_at is None or now - member.offered_at >= self.OFFER_INTERVAL:
            payloads = self._with_offer(member, payloads, now)
        return Send(member.nid or NodeId(node), tuple(payloads))

    def outbound_vnet(self, vnet: bytes, packet: bytes, now: float) -> Send | Deliver | Drop:
        """Route one packet read from a TUN with offload: ``vnet`` is its virtio_net_hdr.

        A plain packet (no segmentation, checksum complete) takes the normal
        path. A TCP or UDP superpacket, or a packet with a partial checksum, travels
        whole in :class:`VpnChunk` pieces of ``chunk_size`` bytes (the
        receiver's kernel segments it or completes the checksum).
        """
        if vnet == VNET_NONE:
            return self.outbound(packet, now)
        if len(vnet) != VNET_HDR_LEN:
            return self._drop("malformed:vnet-header")
        return self.outbound_read(vnet + packet, now)

    def outbound_read(self, buf: bytes, now: float) -> Send | Deliver | Drop:
        """:meth:`outbound_vnet` for a packet as a TUN read returns it (``virtio_net_hdr | packet``
        in one buffer): the same decisions, without copying the packet out of the buffer and
        back in front of the chunk header (a 64 KiB superpacket is copied once, not three times)."""
        if len(buf) < VNET_HDR_LEN:
            return self._drop("malformed:vnet-header")
        if buf.startswith(VNET_NONE):
            return self.outbound(buf[VNET_HDR_LEN:], now)
        if buf[1] & ~GSO_ECN not in GSO_KINDS:
            return self._drop("unsupported-offload")
        r = self._route_out(memoryview(buf)[VNET_HDR_LEN:], now)
        if type(r) is Drop:
            return r
        info, node, member = r
        payloads = self._chunks(buf)
        if payloads is None:
            return self._drop("too-big", node)
        c = self.peers[node]
        c.packets_out += 1
        c.bytes_out += len(buf) - VNET_HDR_LEN
        return Send(member.nid or NodeId(node), tuple(self._with_offer(member, payloads, now)))

    # The data plane's fast paths. Bulk traffic is TCP superpackets and their ACKs of flows the
    # firewall tracks already; for those, the two methods below make the decisions of
    # outbound_read and _inbound_chunk with one struct read of the headers and no PacketInfo,
    # Send, Deliver or NodeId made per packet. Anything else (a first packet, a fragment, IP
    # options, ICMP other than echo, UDP segmentation, an expired certificate or flow, a drop) returns None
    # having changed nothing, and the caller takes the full path, which decides it as before
    # (tests/test_vpn_fastpath.py compares the two on generated packets). A packet without
    # offload (a ping, a lone small packet: a VpnPacket, not chunks) has its own pair,
    # :meth:`_outbound_plain_fast` and :meth:`inbound_packet_fast`.

    def outbound_fast(self, buf: bytes, now: float) -> tuple[NodeId, tuple[bytes, ...]] | None:
        """:meth:`outbound_read` of a TUN read ``buf`` (virtio_net_hdr | packet) for a tracked
        TCP or UDP flow (or, without offload, an ICMP echo) to a member: ``(member, payloads)``,
        with the counters, the firewall and the packet ID moved as its :class:`Send` would;
        None (nothing changed) otherwise."""
        n = len(buf)
        if n < 38 or buf[1] & 0x7F not in _FAST_KINDS or self.own_revoked:
            return None
        if buf.startswith(VNET_NONE):
            return self._outbound_plain_fast(buf, n, now)
        f = read_flow(buf, VNET_HDR_LEN, n)
        if f is None or f[0] not in TCP_UDP:
            return None
        proto, src, dst, sport, dport, _total = f
        node = self._routes.get(dst)
        if node is None or src not in self._own_addresses or now >= self.own_cert.not_after:
            return None
        member = self._members[node]
        if now >= member.cert.not_after or len(buf) > self.chunk_size * MAX_CHUNKS \
                or not self.firewall.pass_tracked((proto, src, sport, dst, dport, node), now):
            return None
        payloads = self._chunks(buf)
        c = self.peers[node]
        c.packets_out += 1
        c.bytes_out += n - VNET_HDR_LEN
        nid = member.nid
        if nid is None:
            nid = member.nid = NodeId(node)
        return nid, tuple(self._with_offer(member, payloads, now))

    def _outbound_plain_fast(self, buf: bytes, n: int, now: float) -> tuple[NodeId, tuple[bytes, ...]] | None:
        """:meth:`outbound` of ``buf[10:]`` (a TUN read without offload) for a tracked flow
        to a member that fits the network's MTU; the caller checked the length and revocation."""
        f = read_flow(buf, VNET_HDR_LEN, n)
        if f is None:
            return None
        proto, src, dst, sport, dport, total = f
        node = self._routes.get(dst)
        if node is None or src not in self._own_addresses or now >= self.own_cert.not_after or total > self.mtu:
            return None
        member = self._members[node]
        if now >= member.cert.not_after or not self.firewall.pass_tracked((proto, src, sport, dst, dport, node), now):
            return None
        payloads = [_HDR + self.network_id + buf[VNET_HDR_LEN:VNET_HDR_LEN + total]]
        c = self.peers[node]
        c.packets_out += 1
        c.bytes_out += total
        if member.offered_at is None or now - member.offered_at >= self.OFFER_INTERVAL:
            payloads = self._with_offer(member, payloads, now)
        nid = member.nid
        if nid is None:
            nid = member.nid = NodeId(node)
        return nid, tuple(payloads)

    def inbound_packet_fast(self, peer: bytes, payload: bytes, now: float) -> bytes | None:
        """:meth:`_inbound_packet` of a VpnPacket of this network (the caller found the network
        by the payload's network ID) that holds a packet of a tracked flow from a member: the
        packet for the TUN (no offload header), with the counters and the firewall moved as its
        :class:`Deliver` would; None (nothing changed) otherwise."""
        f = read_flow(payload, 34, len(payload))
        if f is None:
            return None
        member = self._members.get(peer)
        if member is None or now >= member.cert.not_after:
            return None
        proto, src, dst, sport, dport, total = f
        if (src not in member.addresses or dst not in self._own_addresses
                or not self.firewall.pass_tracked((proto, dst, dport, src, sport, peer), now)):
            return None
        c = self.peers[peer]
        c.packets_in += 1
        c.bytes_in += total
        return payload[34:34 + total]

    def inbound_fast(self, peer: bytes, payload: bytes, now: float) -> tuple[bytes, memoryview] | None:
        """:meth:`_inbound_chunk` of a VpnChunk of this network (the caller found the network by
        the payload's network ID) that holds one whole packet of a tracked TCP or UDP flow from
        a member, with an offload header a TUN makes: ``(vnet, packet)`` for the TUN, with the
        counters and the firewall moved as its :class:`Deliver` would; None (nothing changed)
        otherwise."""
        n = len(payload)
        if n < 78 or payload[39] != 1 or payload[38] != 0:
            return None
        member = self._members.get(peer)
        if member is None or now >= member.cert.not_after:
            return None
        flags, gso_type, _hl, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(payload, 40)
        size = n - 50  # the packet, as the offload header is checked against it
        kind = gso_type & 0x7F
        if (kind not in _FAST_KINDS or flags & ~VNET_F_NEEDS_CSUM or (kind and not 0 < gso_size < size)
                or (flags and csum_start + csum_offset + 2 > size)):
            return None
        f = read_flow(payload, 50, n)
        if f is None or f[0] not in TCP_UDP:
            return None
        proto, src, dst, sport, dport, total = f
        if (src not in member.addresses or dst not in self._own_addresses
                or not self.firewall.pass_tracked((proto, dst, dport, src, sport, peer), now)):
            return None
        c = self.peers[peer]
        c.packets_in += 1
        c.bytes_in += total
        return payload[40:50], memoryview(payload)[50:50 + total]

    def _chunks(self, blob: bytes) -> list[bytes] | None:
        """``blob`` (virtio_net_hdr + packet or frame) as VpnChunk payloads; None if it needs too many."""
        step = self.chunk_size
        count = -(-len(blob) // step)
        if count > MAX_CHUNKS:
            return None
        pid = self._next_packet_id = (self._next_packet_id + 1) & 0xFFFFFFFF
        head = _CHUNK_HDR + self.network_id
        if count == 1:
            return [b"".join((head, _CHUNK_FIELDS.pack(pid, 0, 1), blob))]
        return [head + _CHUNK_FIELDS.pack(pid, i, count) + blob[i * step:(i + 1) * step] for i in range(count)]

    def outbound_batch(self, packets: Iterable[bytes], now: float) -> list[Send | Deliver | Drop]:
        return [self.outbound(p, now) for p in packets]

    def inbound(self, sender: NodeId | bytes, payload: bytes, now: float) -> Deliver | Drop | None:
        """Handle one payload from the secure transport; ``sender`` is authenticated by it.

        Returns :class:`Deliver` (write to the TUN), :class:`Drop`, or None for
        a control message that was consumed (offers, revocation lists).
        """
        peer = sender.raw if isinstance(sender, NodeId) else sender
        try:
            code = peek_type(payload)
        except DecodeError:
            return self._drop("undecodable")
        if code == VpnPacket.TYPE:
            return self._inbound_packet(peer, payload, now)
        if code == VpnChunk.TYPE:
            return self._inbound_chunk(peer, payload, now)
        try:
            msg = decode(payload)
        except DecodeError:
            return self._drop("undecodable", peer if peer in self._members else None)
        if isinstance(msg, CertOffer):
            return self._inbound_offer(peer, msg, now)
        if isinstance(msg, RevocationList):
            if msg.network_id != self.network_id:
                return self._drop("wrong-network")
            if (self.revocations is None or msg.seq > self.revocations.seq) and not self._rate_ok(
                    self._checked, b"r" + peer, now, self.UNKNOWN_SENDER_INTERVAL):
                return self._drop("check-rate")  # a newer list's signature: one check per sender per interval
            try:
                self.update_revocations(msg)
            except CertificateError as exc:
                return self._drop(_cert_reason(exc))
            return None
        return self._drop("unexpected-message")

    def inbound_batch(self, items: Iterable[tuple[NodeId | bytes, bytes]], now: float) -> list[Deliver | Drop | None]:
        return [self.inbound(s, p, now) for s, p in items]

    def _inbound_packet(self, peer: bytes, payload: bytes, now: float) -> Deliver | Drop:
        if len(payload) < 35:
            return self._drop("undecodable")
        if payload[2:34] != self.network_id:
            return self._drop("wrong-network")
        member = self._members.get(peer)
        if member is None:
            self._answer_unknown(peer, now)
            return self._drop("not-member")
        return self._admit(peer, member, payload[34:], b"", now)

    def _admit(self, peer: bytes, member: _Member, packet: bytes, vnet: bytes, now: float) -> Deliver | Drop:
        """The checks a packet from a member passes before it reaches our TUN."""
        if now >= member.cert.not_after:
            self._remove(peer, "expired")
            return self._drop("cert-expired", peer)
        try:
            info = parse_packet(packet)
        except MalformedPacket as exc:
            return self._drop("malformed:" + exc.reason, peer)
        if info.src not in member.addresses:
            return self._drop("spoofed-source", peer)
        if info.dst not in self._own_addresses:
            return self._drop("not-for-us", peer)
        if self.firewall.check(INBOUND, info, peer, member.groups, now) is not None:
            return self._drop("firewall", peer)
        c = self.peers[peer]
        c.packets_in += 1
        c.bytes_in += info.total_length
        if len(packet) != info.total_length:
            packet = packet[: info.total_length]  # link-layer padding never reaches the TUN
        return Deliver(packet, vnet)

    def _inbound_chunk(self, peer: bytes, payload: bytes, now: float) -> Deliver | Drop | None:
        if len(payload) < 41:
            return self._drop("undecodable")
        if payload[2:34] != self.network_id:
            return self._drop("wrong-network")
        member = self._members.get(peer)
        if member is None:  # nothing is buffered for a non-member
            self._answer_unknown(peer, now)
            return self._drop("not-member")
        pid, index, count = _CHUNK_FIELDS.unpack_from(payload, 34)
        if not 1 <= count <= MAX_CHUNKS or index >= count:
            return self._drop("bad-chunk", peer)
        if count == 1:  # a view: the packet is copied once, by the TUN write
            return self._reassembled(peer, member, memoryview(payload)[40:], now)
        data = payload[40:]
        whole = self._reassembly.add((peer, pid), index, count, data, now)
        if whole is None:
            return None
        if whole is REFUSED:  # a count that changed, or more than any TUN packet: a hostile member
            return self._drop("bad-chunk", peer)
        return self._reassembled(peer, member, whole, now)

    def _reassembled(self, peer: bytes, member: _Member, blob: bytes, now: float) -> Deliver | Drop:
        if len(blob) < VNET_HDR_LEN + 20:
            return self._drop("bad-chunk", peer)
        vnet, packet = bytes(blob[:VNET_HDR_LEN]), blob[VNET_HDR_LEN:]
        if not offload_header_ok(vnet, packet):
            return self._drop("bad-offload", peer)
        return self._admit(peer, member, packet, vnet, now)

    def _inbound_offer(self, peer: bytes, offer: CertOffer, now: float) -> Drop | None:
        if offer.network_id != self.network_id or offer.certificate.network_id != self.network_id:
            return self._drop("wrong-network")
        if offer.certificate.node_id != peer:
            # A member vouches only for itself; relaying others' certificates
            # would let a member pin a stale one.
            return self._drop("offer-not-own")
        held = self._members.get(peer)
        if held is not None and held.cert == offer.certificate:
            # The certificate we hold (a refresh, or a request for ours): its signature was checked.
            if now >= held.cert.not_after:
                self._remove(peer, "expired")
                return self._drop("cert-expired", peer)
        elif not self._rate_ok(self._checked, b"c" + peer, now, self.UNKNOWN_SENDER_INTERVAL):
            return self._drop("check-rate")  # a new certificate's signature: one check per sender per interval
        else:
            try:
                self.add_certificate(offer.certificate, now)
            except CertificateError as exc:
                return self._drop(_cert_reason(exc))
        if offer.want_reply and self._rate_ok(self._checked, b"a" + peer, now, self.UNKNOWN_SENDER_INTERVAL):
            m = self._members.get(peer)
            if m is not None:
                m.offered_at = now
            self._outgoing.append((NodeId(peer), self._offer_plain))
        return None

    def _rate_ok(self, table: OrderedDict, key: bytes, now: float, interval: float) -> bool:
        last = table.get(key)
        if last is not None and now - last < interval:
            return False
        table[key] = now
        table.move_to_end(key)
        while len(table) > self._MAX_RATE_ENTRIES:
            table.popitem(last=False)
        return True

    def _answer_unknown(self, peer: bytes, now: float) -> None:
        if self._rate_ok(self._unknown_answered, peer, now, self.UNKNOWN_SENDER_INTERVAL):
            self._outgoing.append((NodeId(peer), self._offer_reply))

    def _route_miss(self, dst: bytes, now: float) -> None:
        if self._rate_ok(self._route_missed, dst, now, self.ROUTE_MISS_INTERVAL):
            self._events.append(RouteMiss(ipaddress.ip_address(dst)))

    # -- pulled output, timers -------------------------------------------------

    def offer_to(self, node_id: NodeId | bytes, now: float, want_reply: bool = True) -> None:
        """Queue our certificate offer for a peer (e.g. when a session comes up)."""
        raw = node_id.raw if isinstance(node_id, NodeId) else node_id
        m = self._members.get(raw)
        if m is not None:
            m.offered_at = now
        self._outgoing.append((NodeId(raw), self._offer_reply if want_reply else self._offer_plain))

    def messages_to_send(self) -> list[tuple[NodeId, bytes]]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> RouteMiss | MemberAdded | MemberRemoved | None:
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        """The next certificate expiry among members (ours included).

        Drivers ask after every batch of packets, so the minimum is kept until
        membership changes rather than recomputed over every member each time.
        """
        if self._next_expiry is None:
            deadlines = [m.cert.not_after for m in self._members.values()]
            deadlines.append(self.own_cert.not_after)
            self._next_expiry = float(min(deadlines))
        return self._next_expiry

    def handle_timer(self, now: float) -> None:
        for node_id in sorted(self._members):
            if now >= self._members[node_id].cert.not_after:
                self._remove(node_id, "expired")
        self.firewall.expire(now)


# --- all networks of a node ---------------------------------------------------


class VpnSwitch:
    """The networks this node belongs to, keyed by network ID.

    Payloads from the transport are dispatched by the network ID that every
    VPN message carries first, so networks never see each other's traffic
    even when their prefixes overlap.
    """

    #: 0x56 is a layer-2 network's L2Frame (core/vpn/l2network.py).
    VPN_TYPES = frozenset({VpnPacket.TYPE, VpnChunk.TYPE, CertOffer.TYPE, RevocationList.TYPE, 0x56})

    def __init__(self) -> None:
        self.networks: dict[bytes, VpnNetwork] = {}
        self.drops: dict[str, int] = {}

    def add(self, network: VpnNetwork) -> None:
        if network.network_id in self.networks:
            raise NetworkError(f"already a member of network {network.descriptor.name!r}")
        self.networks[network.network_id] = network

    def remove(self, network_id: bytes) -> None:
        self.networks.pop(network_id, None)

    @classmethod
    def handles(cls, payload: bytes) -> bool:
        """True if ``payload`` is a VPN message (so the runtime should hand it here)."""
        return len(payload) >= 2 and payload[0] == VERSION and payload[1] in cls.VPN_TYPES

    def inbound(self, sender: NodeId | bytes, payload: bytes, now: float) -> tuple[VpnNetwork | None, Deliver | Drop | None]:
        """Dispatch one payload; returns the network it belonged to (None if none) and its result."""
        if len(payload) < 34 or not self.handles(payload):
            self.drops["undecodable"] = self.drops.get("undecodable", 0) + 1
            return None, Drop("undecodable")
        net = self.networks.get(bytes(payload[2:34]))
        if net is None:
            self.drops["unknown-network"] = self.drops.get("unknown-network", 0) + 1
            return None, Drop("unknown-network")
        return net, net.inbound(sender, payload, now)

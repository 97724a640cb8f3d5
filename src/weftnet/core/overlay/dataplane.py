"""The per-packet checks of the overlay interface: TUN packets out, session payloads in. Sans-IO.

Theory of operation (docs/overlay.md, "Data plane")
---------------------------------------------------
The overlay interface carries IPv6 between overlay addresses
(``fd77:6566::/32`` + 96 bits of a node ID), one per key, with no authority
and no membership: any node may send, so everything a sender can claim is
checked against what its session proves. This class is the private
networks' data plane (core/vpn/network.py) reduced to that rule, and it
reuses its parts: the packet parser and the default-deny firewall with
connection tracking (core/vpn/firewall.py), ICMP packet-too-big, the offload
header check, and the bounded reassembly of offloaded packets.

**Out** (a packet the kernel routed to the interface), in two steps around
resolution, which may take a DHT lookup:

1. :meth:`classify`: the offload header is one a TUN produces; the packet
   parses as IPv6 (``not-ipv6``, ``malformed:<reason>``); its destination is
   an overlay address (``not-overlay``: the kernel's own multicast, for one)
   other than ours; its source is our address (``bad-source``); a packet
   larger than the MTU without segmentation offload gets ICMPv6 "packet too
   big" back (RFC 4443 section 3.2; ``too-big``).
2. :meth:`send`: once the address resolved to a node, the outbound firewall;
   then the wire payloads: :class:`OverlayPacket`, or for a superpacket (TCP
   segmentation offload) or a partial checksum, :class:`OverlayChunk` pieces
   of ``chunk_size`` bytes carrying the ``virtio_net_hdr``.

**In** (:meth:`inbound`, a payload from the session of the authenticated
``sender``): offloaded pieces are reassembled (bounded in count, bytes and
time); the packet must parse as IPv6; **its source must be the sender's own
overlay address** (``spoofed-source``): what reaches the TUN is always from
the address of the key that sent it, so the firewall and applications can
trust it; the destination must be ours (``not-for-us``); the inbound firewall
must allow it (``firewall``, default deny; replies to our own flows pass by
connection tracking). The result is a :class:`~weftnet.core.vpn.network.Deliver`.

**Fast paths** (:meth:`outbound_fast`, :meth:`inbound_fast`): a packet of a flow the firewall
already tracks, to or from a resolved address, is decided with one struct read and one flow
lookup, with the same checks; anything else is declined with nothing changed and takes the
steps above. A packet without offload (a ping, a lone small packet: an OverlayPacket, not a
chunk) is read by the firewall's :func:`~weftnet.core.vpn.firewall.read_flow`, so ICMPv6 echo
requests and replies of a tracked flow take them too.

Counters: drops by reason, and per peer (packets and bytes each way, drops)
for at most ``max_peer_counters`` peers, least recently active evicted first
(any key may send, so this table is bounded, unlike a private network's).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from typing import Any

from weftnet.core.identity import OVERLAY_PREFIX, NodeId
from weftnet.core.overlay.messages import CHUNK_FIELDS, CHUNK_HEADER, MAX_CHUNKS, PACKET_HEADER, OverlayChunk
from weftnet.core.overlay.resolver import Route
from weftnet.core.session.reassembly import REFUSED, Reassembly
from weftnet.core.vpn.firewall import (
    INBOUND,
    OUTBOUND,
    PROTO_ICMPV6,
    TCP_UDP,
    Firewall,
    MalformedPacket,
    PacketInfo,
    parse_packet,
    read_flow,
)
from weftnet.core.vpn.network import (
    GSO_ECN,
    GSO_KINDS,
    MAX_REASSEMBLED,
    VNET_HDR,
    VNET_HDR_LEN,
    VNET_F_NEEDS_CSUM,
    VNET_NONE,
    Deliver,
    Drop,
    PeerCounters,
    Send,
    _checksum,
    icmp_too_big,
    offload_header_ok,
)
from weftnet.core.wire import MAX_MESSAGE_SIZE
from weftnet.errors import NetworkError

__all__ = ["OverlayDataPlane", "icmp6_unreachable", "DEFAULT_MTU", "MIN_MTU", "MAX_MTU"]

#: The IPv6 minimum link MTU (RFC 8200 section 5): one inner packet fits one datagram on any
#: underlay path of 1,360 bytes or more (IPv6 40 + UDP 8 + session framing 30 + header 2).
DEFAULT_MTU = 1280
MIN_MTU = 1280
MAX_MTU = 9000
#: Offloaded packets travel in pieces of at most this much (``virtio_net_hdr | packet``): one
#: OverlayChunk fills one wire message, which the transport seals once.
OVERLAY_CHUNK_SIZE = MAX_MESSAGE_SIZE - CHUNK_HEADER
#: The runtime caps the interface's superpackets at this size (``gso_max_size``), so that each one
#: is a single chunk: one seal, one open, no chunk reassembly.
GSO_MAX_SIZE = 64_000
PREFIX = OVERLAY_PREFIX.network_address.packed[:4]
_CHUNK_HDR = bytes((PACKET_HEADER[0], OverlayChunk.TYPE))
_NO_GROUPS: frozenset[str] = frozenset()
REASSEMBLY_TIMEOUT = 2.0
MAX_REASSEMBLIES = 256
#: The offloads the fast paths take (as core/vpn/network.py's): none, TCPv4, TCPv6 segmentation;
#: UDP segmentation, with its extra checks, takes the full path.
_FAST_KINDS = frozenset((0, 1, 4))
_CHUNK_TYPE = OverlayChunk.TYPE
_PACKET_TYPE = PACKET_HEADER[1]


def icmp6_unreachable(packet: bytes, info: PacketInfo, code: int = 3) -> bytes:
    """ICMPv6 destination unreachable (RFC 4443 section 3.1), code 3 "address unreachable" by default.

    Sent back into the TUN when no node holds a destination address, so a
    local application fails at once ("No route to host") instead of waiting
    out its timeouts. Like "packet too big", it comes from the destination
    address (a local source arriving on the TUN would be a martian).
    """
    body = struct.pack("!BBHI", 1, code, 0, 0) + packet[: 1280 - 48]
    pseudo = info.dst + info.src + struct.pack("!I3xB", len(body), PROTO_ICMPV6)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), PROTO_ICMPV6, 64, info.dst, info.src) + body


class OverlayDataPlane:
    """The overlay interface's packet checks and counters (see the module docstring)."""

    def __init__(self, address: bytes, *, firewall: Firewall | None = None, mtu: int = DEFAULT_MTU,
                 chunk_size: int = OVERLAY_CHUNK_SIZE, max_peer_counters: int = 1024):
        if len(address) != 16 or address[:4] != PREFIX:
            raise NetworkError("the overlay interface's address must be an overlay address (fd77:6566::/32)")
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise NetworkError(f"overlay interface MTU {mtu} is outside {MIN_MTU}-{MAX_MTU}")
        if not 512 <= chunk_size <= MAX_MESSAGE_SIZE - CHUNK_HEADER:
            raise NetworkError(f"chunk size {chunk_size} is outside 512-{MAX_MESSAGE_SIZE - CHUNK_HEADER}")
        self.address = address
        self.firewall = firewall if firewall is not None else Firewall()
        self.mtu = mtu
        self.chunk_size = chunk_size
        self.max_peer_counters = max_peer_counters
        self.peers: OrderedDict[bytes, PeerCounters] = OrderedDict()
        self.drops: dict[str, int] = {}
        self.totals = PeerCounters()
        self._next_packet_id = 0
        self._reassembly = Reassembly(MAX_REASSEMBLIES, REASSEMBLY_TIMEOUT, MAX_REASSEMBLED,
                                      lambda key: self.drop("reassembly-timeout", key[0]))

    # -- counters ------------------------------------------------------------------
    def drop(self, reason: str, peer: bytes | None = None) -> Drop:
        """Count a drop (and against ``peer`` if it has counters)."""
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if peer is not None:
            c = self.peers.get(peer)
            if c is not None:
                c.drop(reason)
        return Drop(reason)

    def _counters(self, peer: bytes) -> PeerCounters:
        c = self.peers.get(peer)
        if c is None:
            c = self.peers[peer] = PeerCounters()
            while len(self.peers) > self.max_peer_counters:
                self.peers.popitem(last=False)
        else:
            self.peers.move_to_end(peer)
        return c

    def stats(self) -> dict:
        return {
            "address": str(ipaddress.IPv6Address(self.address)),
            "mtu": self.mtu,
            "flows": len(self.firewall),
            "packets_in": self.totals.packets_in, "bytes_in": self.totals.bytes_in,
            "packets_out": self.totals.packets_out, "bytes_out": self.totals.bytes_out,
            "drops": dict(sorted(self.drops.items())),
            "peers": {NodeId(k).text(): v.as_dict() for k, v in sorted(self.peers.items())},
        }

    # -- out -----------------------------------------------------------------------
    def classify(self, vnet: bytes, packet: bytes, now: float) -> PacketInfo | Deliver | Drop:
        """Step 1 for a packet read from the TUN (``vnet``: its virtio_net_hdr, or b"")."""
        offloaded = bool(vnet) and vnet != VNET_NONE
        if offloaded:
            if len(vnet) != VNET_HDR_LEN:
                return self.drop("malformed:vnet-header")
            if VNET_HDR.unpack(vnet)[1] & ~GSO_ECN not in GSO_KINDS:
                return self.drop("unsupported-offload")
        try:
            info = parse_packet(packet)
        except MalformedPacket as exc:
            return self.drop("malformed:" + exc.reason)
        if info.version != 6:
            return self.drop("not-ipv6")
        dst = info.dst
        if dst[:4] != PREFIX or dst == self.address:
            return self.drop("not-overlay")
        if info.src != self.address:
            return self.drop("bad-source")
        if not offloaded and info.total_length > self.mtu:
            self.drops["too-big"] = self.drops.get("too-big", 0) + 1
            return Deliver(icmp_too_big(packet, info, self.mtu))
        return info

    def send(self, info: PacketInfo, vnet: bytes, packet: bytes, node_id: NodeId, now: float) -> Send | Drop:
        """Step 2: the outbound firewall, then the payloads for ``node_id`` (which holds the address)."""
        peer = node_id.raw
        verdict = self.firewall.check(OUTBOUND, info, peer, _NO_GROUPS, now)
        if verdict is not None:
            return self.drop("firewall" if verdict == "no-rule" else verdict, peer)
        c = self._counters(peer)
        t = self.totals
        c.packets_out += 1
        t.packets_out += 1
        c.bytes_out += info.total_length
        t.bytes_out += info.total_length
        if not vnet or vnet == VNET_NONE:
            return Send(node_id, (PACKET_HEADER + (packet if len(packet) == info.total_length
                                                   else packet[: info.total_length]),))
        pid = self._next_packet_id = (self._next_packet_id + 1) & 0xFFFFFFFF
        step = self.chunk_size
        if VNET_HDR_LEN + len(packet) <= step:  # the usual case: one piece, one copy
            return Send(node_id, (b"".join((_CHUNK_HDR, CHUNK_FIELDS.pack(pid, 0, 1), vnet, packet)),))
        blob = vnet + packet
        count = -(-len(blob) // step)
        if count > MAX_CHUNKS:
            return self.drop("too-big", peer)
        return Send(node_id, tuple(_CHUNK_HDR + CHUNK_FIELDS.pack(pid, i, count) + blob[i * step:(i + 1) * step]
                                   for i in range(count)))

    # The fast paths (docs/overlay.md, "Data plane"). Bulk traffic is TCP superpackets and their
    # ACKs of flows the firewall tracks already; for those, the two methods below make the
    # decisions of classify + send and of inbound with one struct read of the headers and no
    # PacketInfo, Send or Deliver made per packet, and without copying the packet out of the TUN
    # read. Anything else (a first packet, IPv4, extension headers, ICMPv6 other than an echo
    # without offload, UDP segmentation, a packet in several chunks, one larger than the MTU
    # without offload, an unresolved or expired address, an expired flow, any drop)
    # returns None having changed nothing, and the caller takes the full path, which decides it
    # as before (tests/test_overlay_fastpath.py compares the two on generated packets).

    def outbound_fast(self, buf: bytes, cache: Any, now: float) -> tuple[Route, bytes] | None:
        """:meth:`classify` and :meth:`send` of a TUN read ``buf`` (virtio_net_hdr | IPv6 packet)
        for a tracked TCP or UDP flow (or, without offload, an ICMPv6 echo) to a resolved address:
        ``(route, payload)``, with the cache, the counters, the firewall and the packet ID moved as
        the full path moves them; None (nothing changed) otherwise. ``cache``: the plane's
        :class:`AddressCache`."""
        n = len(buf)
        if n < 58 or buf[1] & 0x7F not in _FAST_KINDS or buf[10] >> 4 != 6:
            return None
        if buf.startswith(VNET_NONE):
            return self._outbound_plain_fast(buf, n, cache, now)
        if n > self.chunk_size:
            return None
        f = read_flow(buf, VNET_HDR_LEN, n)
        if f is None or f[0] not in TCP_UDP:
            return None
        proto, src, dst, sport, dport, total = f
        if src != self.address or dst[:4] != PREFIX or dst == src:
            return None
        key = dst[4:]
        route = cache.peek(key, now)
        if route is None:
            return None
        peer = route.node_id.raw
        if not self.firewall.pass_tracked((proto, src, sport, dst, dport, peer), now):
            return None
        cache.get(key, now)  # the hit, as the full path counts it
        c = self._counters(peer)
        t = self.totals
        c.packets_out += 1
        t.packets_out += 1
        c.bytes_out += total
        t.bytes_out += total
        pid = self._next_packet_id = (self._next_packet_id + 1) & 0xFFFFFFFF
        return route, b"".join((_CHUNK_HDR, CHUNK_FIELDS.pack(pid, 0, 1), buf))

    def inbound_fast(self, peer: bytes, payload: bytes, now: float) -> tuple[memoryview, memoryview] | None:
        """:meth:`inbound` of an OverlayChunk from ``peer`` that holds one whole IPv6 packet of a
        tracked TCP or UDP flow, with an offload header a TUN makes, or of an OverlayPacket of a
        tracked flow (:meth:`_inbound_plain_fast`): ``(vnet, packet)`` for the TUN, with the
        counters and the firewall moved as its :class:`Deliver` would; None (nothing changed)
        otherwise."""
        n = len(payload)
        if n < 50:
            return None
        typ = payload[1]
        if typ != _CHUNK_TYPE:
            return self._inbound_plain_fast(peer, payload, n, now) if typ == _PACKET_TYPE else None
        if n < 66 or payload[7] != 1 or payload[6] != 0:
            return None
        flags, gso_type, _hl, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(payload, 8)
        size = n - 18  # the packet, as the offload header is checked against it
        kind = gso_type & 0x7F
        if (kind not in _FAST_KINDS or flags & ~VNET_F_NEEDS_CSUM or (kind and not 0 < gso_size < size)
                or (flags and csum_start + csum_offset + 2 > size) or payload[18] >> 4 != 6):
            return None
        f = read_flow(payload, 18, n)
        if f is None or f[0] not in TCP_UDP:
            return None
        proto, src, dst, sport, dport, total = f
        if dst != self.address or src[:4] != PREFIX or src[4:] != peer[:12] \
                or not self.firewall.pass_tracked((proto, dst, dport, src, sport, peer), now):
            return None
        c = self._counters(peer)
        t = self.totals
        c.packets_in += 1
        t.packets_in += 1
        c.bytes_in += total
        t.bytes_in += total
        view = memoryview(payload)
        return view[8:18], view[18:18 + total]

    def _outbound_plain_fast(self, buf: bytes, n: int, cache: Any, now: float) -> tuple[Route, bytes] | None:
        """:meth:`outbound_fast` of a TUN read without offload (a ping, a lone small packet): the
        OverlayPacket the full path sends for a tracked flow to a resolved address that fits the
        MTU; the caller checked the offload header, the length and the IP version."""
        f = read_flow(buf, VNET_HDR_LEN, n)
        if f is None:
            return None
        proto, src, dst, sport, dport, total = f
        if src != self.address or dst[:4] != PREFIX or dst == src or total > self.mtu:
            return None
        key = dst[4:]
        route = cache.peek(key, now)
        if route is None:
            return None
        peer = route.node_id.raw
        if not self.firewall.pass_tracked((proto, src, sport, dst, dport, peer), now):
            return None
        cache.get(key, now)  # the hit, as the full path counts it
        c = self._counters(peer)
        t = self.totals
        c.packets_out += 1
        t.packets_out += 1
        c.bytes_out += total
        t.bytes_out += total
        return route, PACKET_HEADER + buf[VNET_HDR_LEN:VNET_HDR_LEN + total]

    def _inbound_plain_fast(self, peer: bytes, payload: bytes, n: int, now: float) -> tuple[bytes, memoryview] | None:
        """:meth:`inbound_fast` of an OverlayPacket (no offload header: a ping, a lone small
        packet) of a tracked flow from ``peer``'s own address to ours: ``(b"", packet)``."""
        f = read_flow(payload, 2, n)
        if f is None:
            return None
        proto, src, dst, sport, dport, total = f
        if dst != self.address or src[:4] != PREFIX or src[4:] != peer[:12] \
                or not self.firewall.pass_tracked((proto, dst, dport, src, sport, peer), now):
            return None
        c = self._counters(peer)
        t = self.totals
        c.packets_in += 1
        t.packets_in += 1
        c.bytes_in += total
        t.bytes_in += total
        return b"", memoryview(payload)[2:2 + total]

    def unreachable(self, packet: bytes, info: PacketInfo) -> Deliver:
        """The ICMPv6 error for a packet to an address nobody holds."""
        self.drops["no-route"] = self.drops.get("no-route", 0) + 1
        return Deliver(icmp6_unreachable(packet, info))

    # -- in ------------------------------------------------------------------------
    def inbound(self, sender: NodeId, payload: bytes, now: float) -> Deliver | Drop | None:
        """A payload from ``sender``'s session: Deliver, Drop, or None (a piece is waiting for the rest)."""
        peer = sender.raw
        if len(payload) < 3:
            return self.drop("undecodable")
        if payload[1] == OverlayChunk.TYPE:
            if len(payload) < CHUNK_HEADER + 1:
                return self.drop("undecodable")
            pid, index, count = CHUNK_FIELDS.unpack_from(payload, 2)
            if not 1 <= count <= MAX_CHUNKS or index >= count:
                return self.drop("bad-chunk", peer)
            blob = memoryview(payload)[CHUNK_HEADER:]  # views, not copies, up to the TUN write
            if count > 1:
                blob = self._reassembly.add((peer, pid), index, count, blob, now)
                if blob is None:
                    return None
                if blob is REFUSED:
                    return self.drop("bad-chunk", peer)
            if len(blob) < VNET_HDR_LEN + 40:
                return self.drop("bad-chunk", peer)
            vnet, packet = blob[:VNET_HDR_LEN], blob[VNET_HDR_LEN:]
            if not offload_header_ok(vnet, packet):
                return self.drop("bad-offload", peer)
            return self._admit(peer, packet, vnet, now)
        return self._admit(peer, memoryview(payload)[2:], b"", now)

    def _admit(self, peer: bytes, packet: bytes | memoryview, vnet: bytes | memoryview, now: float) -> Deliver | Drop:
        try:
            info = parse_packet(packet)
        except MalformedPacket as exc:
            return self.drop("malformed:" + exc.reason, peer)
        if info.version != 6:
            return self.drop("not-ipv6", peer)
        if info.src[:4] != PREFIX or info.src[4:] != peer[:12]:
            return self.drop("spoofed-source", peer)
        if info.dst != self.address:
            return self.drop("not-for-us", peer)
        verdict = self.firewall.check(INBOUND, info, peer, _NO_GROUPS, now)
        if verdict is not None:
            return self.drop("firewall" if verdict == "no-rule" else verdict, peer)
        c = self._counters(peer)
        t = self.totals
        c.packets_in += 1
        t.packets_in += 1
        c.bytes_in += info.total_length
        t.bytes_in += info.total_length
        if len(packet) != info.total_length:
            packet = packet[: info.total_length]  # link-layer padding never reaches the TUN
        return Deliver(packet, vnet)

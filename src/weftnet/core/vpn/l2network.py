"""The sans-IO data plane of one layer-2 private network: Ethernet frames between members' bridges.

Theory of operation (docs/l2.md)
--------------------------------
In a layer-2 network every member runs a Linux bridge with a TAP device
(runtime/l2dev.py); VMs and containers attach to the bridge, and so may a
kernel VXLAN device that joins a data-centre fabric. The daemon reads the
frames the bridge sends into the TAP and hands them to
:meth:`L2Network.outbound_vnet`; frames members send us arrive through
:meth:`L2Network.inbound` and are written to the TAP, from where the bridge
delivers them. This class is the switch between the TAP and the WAN: one
port per member, each reached through the member's encrypted session.

Membership, certificates, offers, revocation and expiry are those of
:class:`~weftnet.core.vpn.network.VpnNetwork`, which this class extends; a
layer-2 certificate additionally states what its member may source
(:class:`~weftnet.core.vpn.netcert.L2Grant`): its own bridge's MAC (derived
from the network and node IDs, :func:`~weftnet.core.vpn.ethernet.member_mac`),
MAC prefixes, IP sources and MAC/IP bindings.

**Out** (a frame from our bridge), in order: the frame parses (untagged
Ethernet II; IPv4, IPv6 or ARP); its source MAC is one our certificate grants
(``bad-source-mac``); the IP or ARP sender address is one it grants
(``bad-source``; an ARP sender MAC must be the frame's, ``bad-arp``); an ARP request or neighbour solicitation for an address
whose MAC we know is answered on the spot — from a member's certificate, from
EVPN, or snooped from an earlier reply (``arp_suppressed`` /
``nd_suppressed``: nothing crosses the WAN) — or dropped if that address is
behind our own bridge (its host answers); then a unicast frame to a known MAC
goes to the member behind it, after the outbound firewall for IP packets;
anything else (broadcast, multicast, unknown unicast) is **flooded**: one copy
to every member (head-end replication), at most ``flood_rate`` frames per
second (``flood-rate``), and an unanswered ARP or NS also raises a
:class:`~weftnet.core.vpn.network.RouteMiss` so the runtime looks the
address's holder up in the DHT.

**In** (a frame from member M, authenticated by its session): M holds a
valid certificate (``not-member``); the source MAC is unicast and granted to
M (``spoofed-mac``); the IP or ARP sender address is granted to M
(``spoofed-source``, ``spoofed-arp``); the inbound firewall allows the IP
packet (``firewall``; ARP and neighbour discovery are link signalling and
pass); a flooded frame is within M's own ``flood_rate``; a unicast frame is
not for a MAC we know behind another member (``not-for-us``). Then M's
source MAC is learned (``M``'s quota, aging), ARP and ND messages are
snooped for IP/MAC bindings, and the frame is delivered to our bridge.

**Split horizon**: a frame from the WAN is only ever delivered to our
bridge, never sent on to another member; the bridge itself never sends a
frame back out of the port (the TAP) it came in on. So a frame crosses the
WAN at most once, and loops through two sites are impossible as long as each
fabric segment has one weftnet gateway (docs/l2.md, "Loops").

Offloaded TCP superframes (TAP with ``IFF_VNET_HDR`` and segmentation
offload) travel as :class:`~weftnet.core.vpn.network.VpnChunk` pieces of
``virtio_net_hdr | frame``, reassembled like the layer-3 network's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar, Iterable

from weftnet.core.identity import NodeId
from weftnet.core.vpn.ethernet import (
    ARP_REQUEST,
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IPV4,
    ETH_P_IPV6,
    ND_NA,
    ND_NS,
    MalformedFrame,
    arp_reply,
    eui64_link_local,
    is_multicast,
    mac_text,
    member_mac,
    neighbor_advert,
    parse_arp,
    parse_nd,
)
from weftnet.core.vpn.firewall import (
    INBOUND,
    OUTBOUND,
    PROTO_ICMPV6,
    PROTO_UDP,
    Firewall,
    MalformedPacket,
    parse_packet,
)
from weftnet.core.vpn.l2switch import AgingTable, TokenBucket
from weftnet.core.vpn.netcert import L2Grant, NetCert, NetworkDescriptor, RevocationList
from weftnet.core.vpn.network import (
    CHUNK_SIZE,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    VNET_F_NEEDS_CSUM,
    VNET_HDR,
    VNET_HDR_LEN,
    VNET_NONE,
    Deliver,
    Drop,
    Send,
    VpnNetwork,
    _Member,
)
from weftnet.core.wire import MAX_MESSAGE_SIZE, VERSION, Fixed, Message, Rest, register
from weftnet.errors import NetworkError

__all__ = ["L2Frame", "L2Network", "LocalBinding", "MemberScan", "LOCAL", "DEFAULT_L2_MTU"]

#: The IP MTU of a layer-2 network's bridge: Ethernet's, so VMs and containers need no change.
#: Frames larger than one underlay datagram travel in transport fragments (docs/l2.md, "MTU").
DEFAULT_L2_MTU = 1500
#: Owner of neighbour entries for hosts behind our own bridge.
LOCAL = b""
_L2_HDR = bytes((VERSION, 0x56))
_ND_TYPES = frozenset({133, 134, 135, 136, 137})  # RS, RA, NS, NA, redirect (RFC 4861 section 4)
_ZERO4 = bytes(4)
_ZERO6 = bytes(16)


@register
@dataclass(frozen=True)
class L2Frame(Message):
    """One Ethernet frame (without FCS) of one layer-2 network, inside a secure session."""

    TYPE: ClassVar = 0x56
    network_id: bytes
    frame: bytes
    FIELDS: ClassVar = (("network_id", Fixed(32)), ("frame", Rest(MAX_MESSAGE_SIZE - 34, min_len=ETH_HLEN)))


@dataclass(frozen=True, slots=True)
class LocalBinding:
    """A host behind our own bridge showed its MAC and IP (in ARP or ND): a control plane may advertise it."""

    mac: bytes
    ip: bytes


class _Grant:
    """What one member may source, precomputed for the per-frame checks."""

    __slots__ = ("mac", "macs", "mac_prefixes", "ips", "nets")

    def __init__(self, network_id: bytes, cert: NetCert):
        l2 = cert.l2 or L2Grant()
        self.mac = member_mac(network_id, cert.node_id)
        self.macs = frozenset({self.mac} | {b.mac for b in l2.bindings} | {p.mac for p in l2.macs if p.length == 48})
        self.mac_prefixes = tuple((48 - p.length, int.from_bytes(p.mac, "big") >> (48 - p.length))
                                  for p in l2.macs if p.length < 48)
        self.ips = frozenset({a.packed for a in cert.addresses} | {b.address.packed for b in l2.bindings})
        self.nets = tuple((n.max_prefixlen // 8, n.max_prefixlen - n.prefixlen,
                           int(n.network_address) >> (n.max_prefixlen - n.prefixlen)) for n in l2.sources)

    def mac_ok(self, mac: bytes) -> bool:
        if mac in self.macs:
            return True
        if self.mac_prefixes:
            v = int.from_bytes(mac, "big")
            return any(v >> s == p for s, p in self.mac_prefixes)
        return False

    def ip_ok(self, ip: bytes) -> bool:
        if ip in self.ips:
            return True
        if self.nets:
            v, n = int.from_bytes(ip, "big"), len(ip)
            return any(size == n and v >> s == p for size, s, p in self.nets)
        return False


class L2Network(VpnNetwork):
    """This node's switch for one layer-2 network (see the module docstring)."""

    #: Learned MACs and snooped bindings age out after this many seconds without a frame confirming them.
    MAC_AGE = 300.0
    #: Learned MACs (and, separately, snooped bindings) held at once, and per member.
    MAX_MACS = 16384
    MAC_QUOTA = 1024
    #: Flooded frames per second: ours to all members, and each member's to us (burst: twice as many).
    FLOOD_RATE = 200.0
    #: Entries shown by stats().
    SHOW_MACS = 256

    def __init__(
        self,
        descriptor: NetworkDescriptor,
        own_cert: NetCert,
        now: float,
        *,
        firewall: Firewall | None = None,
        revocations: RevocationList | None = None,
        mtu: int = DEFAULT_L2_MTU,
        chunk_size: int = CHUNK_SIZE,
        mac_age: float | None = None,
        mac_quota: int | None = None,
        max_macs: int | None = None,
        flood_rate: float | None = None,
    ):
        if descriptor.layer != 2:
            raise NetworkError(f"network {descriptor.name!r} is a layer-3 network")
        super().__init__(descriptor, own_cert, now, firewall=firewall, revocations=revocations, mtu=mtu,
                         chunk_size=chunk_size)
        age = self.MAC_AGE if mac_age is None else float(mac_age)
        quota = self.MAC_QUOTA if mac_quota is None else int(mac_quota)
        size = self.MAX_MACS if max_macs is None else int(max_macs)
        rate = self.FLOOD_RATE if flood_rate is None else float(flood_rate)
        if age <= 0 or quota < 1 or size < 1 or rate <= 0:
            raise NetworkError("mac_age, mac_quota, max_macs and flood_rate must be positive")
        self.flood_rate = rate
        self.own_mac = member_mac(self.network_id, own_cert.node_id)
        self._own_node = own_cert.node_id
        self._own_grant = _Grant(self.network_id, own_cert)
        self._grants: dict[bytes, _Grant] = {}
        #: MAC -> member it was last seen behind (learned from inbound frames).
        self.macs = AgingTable(size, quota, age)
        #: IP (packed) -> MAC, owned by a member or LOCAL (snooped from ARP and ND).
        self.neighbors = AgingTable(size, quota, age)
        #: MAC -> (member, source), IP -> (MAC, member, source): from certificates ...
        self._static_macs: dict[bytes, tuple[bytes, str]] = {}
        self._static_ips: dict[bytes, tuple[bytes, bytes, str]] = {}
        #: ... and from a control plane (EVPN), which takes precedence and can be withdrawn again.
        self._cp_macs: dict[bytes, tuple[bytes, str]] = {}
        self._cp_ips: dict[bytes, tuple[bytes, bytes, str]] = {}
        self._flood_out = TokenBucket(rate, 2 * rate, now)
        self._flood_in: dict[bytes, TokenBucket] = {}
        self.l2 = dict.fromkeys(
            ("frames_out", "frames_in", "flooded", "flood_copies", "unknown_unicast", "floods_in",
             "arp_suppressed", "nd_suppressed", "arp_local", "nd_local"), 0)
        self._install_static(own_cert, "cert")
        self._now = now

    # -- membership ------------------------------------------------------------

    def add_certificate(self, cert: NetCert, now: float) -> bool:
        added = super().add_certificate(cert, now)
        if added:
            self._grants[cert.node_id] = _Grant(self.network_id, cert)
            self._flood_in.setdefault(cert.node_id, TokenBucket(self.flood_rate, 2 * self.flood_rate, now))
            self._drop_static(cert.node_id, "cert")
            self._install_static(cert, "cert")
        return added

    def _remove(self, node_id: bytes, reason: str) -> None:
        super()._remove(node_id, reason)
        self._grants.pop(node_id, None)
        self._flood_in.pop(node_id, None)
        self.macs.remove_owner(node_id)
        self.neighbors.remove_owner(node_id)
        self._drop_static(node_id, None)

    def _install_static(self, cert: NetCert, source: str) -> None:
        node = cert.node_id
        mac = member_mac(self.network_id, node)
        self._static_macs[mac] = (node, source)
        for a in cert.addresses:
            self._static_ips[a.packed] = (mac, node, source)
        for b in (cert.l2.bindings if cert.l2 is not None else ()):
            self._static_macs[b.mac] = (node, source)
            self._static_ips[b.address.packed] = (b.mac, node, source)

    def _drop_static(self, node: bytes, source: str | None) -> None:
        for macs, ips in ((self._static_macs, self._static_ips), (self._cp_macs, self._cp_ips)):
            for mac in [m for m, (n, s) in macs.items() if n == node and source in (None, s)]:
                del macs[mac]
            for ip in [i for i, (_m, n, s) in ips.items() if n == node and source in (None, s)]:
                del ips[ip]

    # -- the control plane (EVPN, docs/evpn.md) ----------------------------------

    def install_remote(self, node_id: NodeId | bytes, mac: bytes, ip: str | None = None,
                       source: str = "evpn") -> bool:
        """A control plane says ``mac`` (and ``ip``) is behind member ``node_id``.

        Refused (False) unless the member is known and its certificate grants
        the MAC (and the IP): a control plane can steer frames, never widen
        what a member may source.
        """
        node = node_id.raw if isinstance(node_id, NodeId) else node_id
        grant = self._grants.get(node)
        if grant is None or not grant.mac_ok(mac) or is_multicast(mac):
            return False
        packed = ipaddress.ip_address(ip).packed if ip is not None else None
        if packed is not None and not grant.ip_ok(packed):
            return False
        self._cp_macs[mac] = (node, source)
        self.macs.forget(mac)  # the control plane's word replaces what frames taught us
        if packed is not None:
            self._cp_ips[packed] = (mac, node, source)
            self.neighbors.forget(packed)
        return True

    def withdraw_binding(self, node_id: NodeId | bytes, ip: str, source: str = "evpn") -> None:
        """Take back only the MAC/IP binding a control plane installed for ``ip`` (the MAC entry stays)."""
        node = node_id.raw if isinstance(node_id, NodeId) else node_id
        packed = ipaddress.ip_address(ip).packed
        e = self._cp_ips.get(packed)
        if e is not None and e[1] == node and e[2] == source:
            del self._cp_ips[packed]

    def withdraw_remote(self, node_id: NodeId | bytes, mac: bytes, ip: str | None = None,
                        source: str = "evpn") -> None:
        node = node_id.raw if isinstance(node_id, NodeId) else node_id
        if self._cp_macs.get(mac) == (node, source):
            del self._cp_macs[mac]
        if ip is not None:
            packed = ipaddress.ip_address(ip).packed
            e = self._cp_ips.get(packed)
            if e is not None and e[1] == node and e[2] == source:
                del self._cp_ips[packed]

    # -- lookups ---------------------------------------------------------------

    def member_of(self, mac: bytes, now: float) -> bytes | None:
        """The member a unicast MAC is behind (our own node ID for our own), or None if unknown."""
        s = self._cp_macs.get(mac) or self._static_macs.get(mac)
        if s is not None:
            return s[0]
        e = self.macs.get(mac, now)
        return e[0] if e is not None else None

    def neighbor(self, ip: bytes, now: float) -> tuple[bytes, bytes] | None:
        """``(MAC, owner)`` for an IP (owner: a member, our node ID or LOCAL), or None."""
        s = self._cp_ips.get(ip) or self._static_ips.get(ip)
        if s is not None:
            return s[0], s[1]
        e = self.neighbors.get(ip, now)
        return (e[1], e[0]) if e is not None else None

    def _is_ours(self, owner: bytes) -> bool:
        return owner == LOCAL or owner == self._own_node

    # -- out: frames from our bridge --------------------------------------------

    def outbound(self, frame: bytes, now: float):
        """Switch one frame read from the TAP (no virtio_net_hdr)."""
        return self._out(VNET_NONE, frame, now)

    def outbound_vnet(self, vnet: bytes, frame: bytes, now: float):
        """Switch one frame read from a TAP with offload: ``vnet`` is its virtio_net_hdr.

        Returns :class:`Send`, :class:`Deliver` (an ARP or ND answer for the
        TAP), :class:`Drop`, or a list of :class:`Send` (a flood).
        """
        if len(vnet) != VNET_HDR_LEN:
            return self._drop("malformed:vnet-header")
        if vnet != VNET_NONE:
            gso_type = vnet[1]
            if gso_type & ~GSO_ECN not in (GSO_NONE, GSO_TCPV4, GSO_TCPV6):
                return self._drop("unsupported-offload")
        return self._out(vnet, frame, now)

    def outbound_read(self, buf: bytes, now: float):
        """A frame as a TAP read returns it (``virtio_net_hdr | frame``)."""
        return self.outbound_vnet(buf[:VNET_HDR_LEN], buf[VNET_HDR_LEN:], now)

    def outbound_batch(self, packets: Iterable[bytes], now: float) -> list:
        return [self.outbound(p, now) for p in packets]

    def _out(self, vnet: bytes, frame: bytes, now: float):
        if len(frame) < ETH_HLEN:
            return self._drop("malformed:short-frame")
        dst, src = frame[0:6], frame[6:12]
        etype = (frame[12] << 8) | frame[13]
        if now >= self.own_cert.not_after:
            return self._drop("own-cert-expired")
        if self.own_revoked:
            return self._drop("own-cert-revoked")
        grant = self._own_grant
        if is_multicast(src) or not grant.mac_ok(src):
            return self._drop("bad-source-mac")
        self._now = now
        if src in self.macs:  # a MAC we learned behind a member is now behind our bridge: it moved here
            self.macs.forget(src)
            self.macs.stats["moved"] += 1
        info = None
        if etype == ETH_P_ARP:
            try:
                arp = parse_arp(memoryview(frame)[ETH_HLEN:])
            except MalformedFrame as exc:
                return self._drop("malformed:" + exc.reason)
            if arp.sha != src:  # what remote caches would learn must be what we checked
                return self._drop("bad-arp")
            if not arp.is_probe and not grant.ip_ok(arp.spa):
                return self._drop("bad-source")
            if not arp.is_probe:
                self._learn_local(arp.spa, arp.sha, now)
            if arp.op == ARP_REQUEST and not arp.is_probe and not arp.is_gratuitous:
                known = self.neighbor(arp.tpa, now)
                if known is not None:
                    if self._is_ours(known[1]):
                        self.l2["arp_local"] += 1
                        return self._drop("arp-local")
                    self.l2["arp_suppressed"] += 1
                    return Deliver(arp_reply(arp, known[0]))
                self._look_up(arp.tpa, now)
        elif etype == ETH_P_IPV4 or etype == ETH_P_IPV6:
            ip = memoryview(frame)[ETH_HLEN:]
            try:
                info = parse_packet(ip)
            except MalformedPacket as exc:
                return self._drop("malformed:" + exc.reason)
            if (info.version == 4) != (etype == ETH_P_IPV4):
                return self._drop("malformed:ethertype-mismatch")
            if not self._source_ok(grant, info, src):
                return self._drop("bad-source")
            if info.proto == PROTO_ICMPV6 and info.icmp_type in _ND_TYPES:
                nd = parse_nd(ip)
                if nd is not None:
                    self._snoop_nd(nd, LOCAL, grant, now)
                    if nd.kind == ND_NS and nd.src != _ZERO6:
                        known = self.neighbor(nd.target, now)
                        if known is not None:
                            if self._is_ours(known[1]):
                                self.l2["nd_local"] += 1
                                return self._drop("nd-local")
                            self.l2["nd_suppressed"] += 1
                            return Deliver(neighbor_advert(nd, src, known[0]))
                        self._look_up(nd.target, now)
                info = None  # neighbour discovery is link signalling: no firewall, no flow
        else:
            return self._drop("ethertype")
        self.l2["frames_out"] += 1
        if not is_multicast(dst):
            node = self.member_of(dst, now)
            if node is not None:
                if node == self._own_node:
                    return self._drop("own-mac")
                member = self._members.get(node)
                if member is None:
                    return self._drop("no-route")
                return self._unicast(node, member, info, vnet, frame, now)
            self.l2["unknown_unicast"] += 1
        return self._flood(info, vnet, frame, now)

    def _look_up(self, ip: bytes, now: float) -> None:
        """Ask the runtime to find the holder of an address in the DHT (only addresses of this network)."""
        if self.descriptor.contains(ipaddress.ip_address(ip)):
            self._route_miss(ip, now)

    def _source_ok(self, grant: _Grant, info, src_mac: bytes) -> bool:
        """May the holder of ``grant`` send an IP packet from ``info.src`` (in a frame from ``src_mac``)?"""
        s = info.src
        if grant.ip_ok(s):
            return True
        if info.version == 4:
            # DHCP (RFC 2131 section 4.1): a client without an address yet.
            return s == _ZERO4 and info.proto == PROTO_UDP and info.sport == 68 and info.dport == 67
        if s == _ZERO6:  # duplicate address detection and MLD before an address is configured (RFC 4862 5.4)
            return info.proto == PROTO_ICMPV6
        # A link-local address derived from the frame's (already checked) MAC (RFC 4291 appendix A).
        return s == eui64_link_local(src_mac)

    def _snoop_nd(self, nd, owner: bytes, grant: _Grant, now: float) -> None:
        if nd.lladdr is None or is_multicast(nd.lladdr) or not grant.mac_ok(nd.lladdr):
            return
        addr = nd.src if nd.kind == ND_NS else nd.target
        if addr != _ZERO6 and addr[:2] != b"\xfe\x80" and grant.ip_ok(addr):
            if owner == LOCAL:
                self._learn_local(addr, nd.lladdr, now)
            else:
                self.neighbors.learn(addr, owner, nd.lladdr, now)

    def _learn_local(self, ip: bytes, mac: bytes, now: float) -> None:
        """A binding snooped behind our own bridge; a new one is reported (LocalBinding) for a control plane."""
        if self.neighbors.get(ip, now) != (LOCAL, mac) and self.neighbors.learn(ip, LOCAL, mac, now):
            self._events.append(LocalBinding(mac, ip))

    def _payloads(self, vnet: bytes, frame: bytes) -> list[bytes] | None:
        if vnet == VNET_NONE:
            return [_L2_HDR + self.network_id + frame]
        return self._chunks(vnet + frame)

    def _unicast(self, node: bytes, member: _Member, info, vnet: bytes, frame: bytes, now: float):
        if now >= member.cert.not_after:
            self._remove(node, "expired")
            return self._drop("cert-expired", node)
        if info is not None and self.firewall.check(OUTBOUND, info, node, member.groups, now) is not None:
            return self._drop("firewall", node)
        payloads = self._payloads(vnet, frame)
        if payloads is None:
            return self._drop("too-big", node)
        c = self.peers[node]
        c.packets_out += 1
        c.bytes_out += len(frame)
        return Send(NodeId(node), tuple(self._with_offer(member, payloads, now)))

    def _flood(self, info, vnet: bytes, frame: bytes, now: float):
        if not self._members:
            return self._drop("no-members")
        if not self._flood_out.take(now):
            return self._drop("flood-rate")
        payloads = self._payloads(vnet, frame)
        if payloads is None:
            return self._drop("too-big")
        out = []
        for node in sorted(self._members):
            member = self._members[node]
            if now >= member.cert.not_after:
                continue  # removed at the next timer
            if info is not None and self.firewall.check(OUTBOUND, info, node, member.groups, now) is not None:
                self.peers[node].drop("firewall")
                continue
            c = self.peers[node]
            c.packets_out += 1
            c.bytes_out += len(frame)
            out.append(Send(NodeId(node), tuple(self._with_offer(member, list(payloads), now))))
        self.l2["flooded"] += 1
        self.l2["flood_copies"] += len(out)
        return out if out else self._drop("firewall")

    # -- in: frames from members ------------------------------------------------

    def inbound(self, sender: NodeId | bytes, payload: bytes, now: float) -> Deliver | Drop | None:
        if len(payload) >= 2 and payload[0] == VERSION and payload[1] == L2Frame.TYPE:
            peer = sender.raw if isinstance(sender, NodeId) else sender
            return self._inbound_l2(peer, payload, now)
        return super().inbound(sender, payload, now)

    def _inbound_l2(self, peer: bytes, payload: bytes, now: float) -> Deliver | Drop:
        if len(payload) < 34 + ETH_HLEN:
            return self._drop("undecodable")
        if payload[2:34] != self.network_id:
            return self._drop("wrong-network")
        member = self._members.get(peer)
        if member is None:
            self._answer_unknown(peer, now)
            return self._drop("not-member")
        return self._admit_frame(peer, member, payload[34:], b"", now)

    def _inbound_packet(self, peer: bytes, payload: bytes, now: float) -> Drop:
        return self._drop("wrong-layer", peer if peer in self._members else None)

    def _reassembled(self, peer: bytes, member: _Member, blob: bytes, now: float) -> Deliver | Drop:
        blob = bytes(blob)  # a view of the payload (VpnNetwork._inbound_chunk): MACs become dict keys
        if len(blob) < VNET_HDR_LEN + ETH_HLEN + 20:
            return self._drop("bad-chunk", peer)
        vnet, frame = blob[:VNET_HDR_LEN], blob[VNET_HDR_LEN:]
        flags, gso_type, _hl, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
        kind = gso_type & ~GSO_ECN
        # The header reaches our kernel: only what a TAP itself produces is let through.
        if (kind not in (GSO_NONE, GSO_TCPV4, GSO_TCPV6) or flags & ~VNET_F_NEEDS_CSUM
                or (kind != GSO_NONE and not 0 < gso_size < len(frame))
                or (flags & VNET_F_NEEDS_CSUM and csum_start + csum_offset + 2 > len(frame))
                or (flags & VNET_F_NEEDS_CSUM and csum_start < ETH_HLEN)):
            return self._drop("bad-offload", peer)
        etype = (frame[12] << 8) | frame[13]
        if kind != GSO_NONE and etype != (ETH_P_IPV4 if kind == GSO_TCPV4 else ETH_P_IPV6):
            return self._drop("bad-offload", peer)
        return self._admit_frame(peer, member, frame, vnet, now)

    def _admit_frame(self, peer: bytes, member: _Member, frame: bytes, vnet: bytes, now: float) -> Deliver | Drop:
        """The checks a frame from a member passes before it reaches our bridge."""
        self._now = now
        if now >= member.cert.not_after:
            self._remove(peer, "expired")
            return self._drop("cert-expired", peer)
        grant = self._grants[peer]
        dst, src = frame[0:6], frame[6:12]
        if is_multicast(src) or not grant.mac_ok(src):
            return self._drop("spoofed-mac", peer)
        etype = (frame[12] << 8) | frame[13]
        if etype == ETH_P_ARP:
            try:
                arp = parse_arp(memoryview(frame)[ETH_HLEN:])
            except MalformedFrame as exc:
                return self._drop("malformed:" + exc.reason, peer)
            if not arp.is_probe and not grant.ip_ok(arp.spa):
                return self._drop("spoofed-source", peer)
            if is_multicast(arp.sha) or not grant.mac_ok(arp.sha):
                return self._drop("spoofed-arp", peer)
            if not arp.is_probe:
                self.neighbors.learn(arp.spa, peer, arp.sha, now)
        elif etype == ETH_P_IPV4 or etype == ETH_P_IPV6:
            ip = memoryview(frame)[ETH_HLEN:]
            try:
                info = parse_packet(ip)
            except MalformedPacket as exc:
                return self._drop("malformed:" + exc.reason, peer)
            if (info.version == 4) != (etype == ETH_P_IPV4):
                return self._drop("malformed:ethertype-mismatch", peer)
            if not self._source_ok(grant, info, src):
                return self._drop("spoofed-source", peer)
            nd = parse_nd(ip) if info.proto == PROTO_ICMPV6 and info.icmp_type in _ND_TYPES else None
            if nd is not None:
                if nd.kind == ND_NA and not grant.ip_ok(nd.target):
                    return self._drop("spoofed-source", peer)
                self._snoop_nd(nd, peer, grant, now)
            elif self.firewall.check(INBOUND, info, peer, member.groups, now) is not None:
                return self._drop("firewall", peer)
        else:
            return self._drop("ethertype", peer)
        if is_multicast(dst):
            if not self._flood_in[peer].take(now):
                return self._drop("flood-rate", peer)
            self.l2["floods_in"] += 1
        else:
            owner = self.member_of(dst, now)
            if owner is not None and owner != peer and owner != self._own_node:
                return self._drop("not-for-us", peer)
        static = self._cp_macs.get(src) or self._static_macs.get(src)
        if static is None or static[0] != peer:  # certified and control-plane MACs need no learning
            self.macs.learn(src, peer, None, now)
        self.l2["frames_in"] += 1
        c = self.peers[peer]
        c.packets_in += 1
        c.bytes_in += len(frame)
        return Deliver(frame, vnet)

    # -- timers and counters ------------------------------------------------------

    def get_timer(self) -> float | None:
        times = [t for t in (super().get_timer(), self.macs.next_expiry(), self.neighbors.next_expiry())
                 if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        super().handle_timer(now)
        self.macs.expire(now)
        self.neighbors.expire(now)

    def stats(self) -> dict:
        s = super().stats()
        s.update(self.l2_stats(self._now))  # ages as of the last frame or timer
        return s

    def l2_stats(self, now: float) -> dict:
        """The switch's counters and tables as of ``now`` (bounded: SHOW_MACS entries each)."""
        macs = []
        for mac, (node, source) in sorted({**self._static_macs, **self._cp_macs}.items()):
            if node != self._own_node:
                macs.append({"mac": mac_text(mac), "member": NodeId(node).text(), "kind": source})
        for mac, owner, _v, age in self.macs.items(now):
            if age < self.macs.age:
                macs.append({"mac": mac_text(mac), "member": NodeId(owner).text(), "kind": "learned",
                             "age": round(age, 1)})
        bindings = [{"ip": str(ipaddress.ip_address(ip)), "mac": mac_text(mac), "member": NodeId(node).text(),
                     "kind": source}
                    for ip, (mac, node, source) in sorted({**self._static_ips, **self._cp_ips}.items())
                    if node != self._own_node]
        neigh = []
        for ip, owner, mac, age in self.neighbors.items(now):
            if age < self.neighbors.age:
                neigh.append({"ip": str(ipaddress.ip_address(ip)), "mac": mac_text(mac),
                              "member": "local" if owner == LOCAL else NodeId(owner).text(), "age": round(age, 1)})
        return {
            "layer": 2,
            "mac": mac_text(self.own_mac),
            "mac_age": self.macs.age,
            "flood_rate": self.flood_rate,
            "l2": dict(self.l2),
            "mac_table": {"entries": len(self.macs), **self.macs.stats},
            "neighbor_table": {"entries": len(self.neighbors), **self.neighbors.stats},
            "macs": macs[: self.SHOW_MACS],
            "bindings": bindings[: self.SHOW_MACS],
            "neighbors": neigh[: self.SHOW_MACS],
        }


class MemberScan:
    """Which member records of a layer-2 network to read from the DHT (docs/l2.md, "Finding members").

    The authority signs one member record per certificate, under its serial
    (1, 2, 3, ...). A scan reads every serial we do not hold (ours, members
    we know and revoked serials are skipped), ``WINDOW`` at a time, and stops
    ``GAP`` serials past the highest one found, so members whose records are
    missing (never online, expired) do not end it early.
    """

    GAP = 16
    WINDOW = 8
    MAX_SERIAL = 4096

    def __init__(self, net: L2Network):
        known = {c.serial for c in net.members()} | {net.own_cert.serial}
        revoked = set(net.revocations.serials) if net.revocations is not None else set()
        self._skip = known | revoked
        self.highest = max(known)
        self._next = 1
        self._in_flight: set[int] = set()

    def _limit(self) -> int:
        return min(self.highest + self.GAP, self.MAX_SERIAL)

    def next_serials(self) -> list[int]:
        out = []
        while len(self._in_flight) < self.WINDOW and self._next <= self._limit():
            serial = self._next
            self._next += 1
            if serial not in self._skip:
                self._in_flight.add(serial)
                out.append(serial)
        return out

    def found(self, serial: int) -> None:
        self.highest = max(self.highest, serial)

    def answered(self, serial: int) -> None:
        self._in_flight.discard(serial)

    def done(self) -> bool:
        return not self._in_flight and self._next > self._limit()

#!/usr/bin/env python3
"""Fuzz the wire decoder and the handshake responder with random and mutated inputs.

    .venv/bin/python fuzz/weftfuzz.py --target all --count 1000000 --seed 1

Targets:

* ``wire``: ``weftnet.core.wire.decode`` must return a message or raise
  ``DecodeError`` — nothing else — and whatever decodes must re-encode to the
  same bytes.
* ``transport``: ``SecureTransport.receive_datagram`` (the responder side of
  the handshake, and the transport path of an established session) must never
  raise, and must never answer anything but a valid padded Hello.
* ``vpn``: a private network's data plane (``VpnNetwork``) fed hostile
  payloads from a member and from a stranger (``inbound``: VPN packets,
  offloaded chunks, certificate offers, revocation lists) and hostile packets
  from its own TUN (``outbound`` and ``outbound_vnet``) must return a result,
  never raise; what it lets through to the TUN must parse as an IP packet.
* ``reach``: a relay R with sessions to A and C (C registered to be reachable
  through R) gets hostile payloads from A over the real session (``Forward``
  headers, probes, call-me-maybe, relay requests), the same straight into its
  reach engine from a relayed path, and hostile endpoint-record values from a
  DHT read. Nothing may raise, and R may never amplify: per input it passes on
  at most one Forward, in as many datagrams towards C as A sent, each exactly
  as long.
* ``dht``: the DHT message layer (``Dht.on_message``) of a node with a
  routing table, records and operations in flight, fed every decodable
  mutation from known contacts and strangers, verified or not; replies are
  often aimed at a request really in flight (its rid and contact), reports at
  a route really in flight, so the response paths are reached. It must never
  raise, everything it sends must encode, and its store must stay within its
  bounds (records, bytes, per-peer quota) and in step with its index.
* ``l2``: a layer-2 network's switch (``L2Network``) fed hostile payloads
  from a member and a stranger (``L2Frame``, offloaded chunks of frames,
  offers) and hostile frames from its own TAP (``outbound_vnet``): it must
  return a result, never raise; a frame it lets through to the bridge must
  come from a MAC the sending member's certificate grants; an answer it gives
  the TAP (ARP/ND) must be addressed to the frame's sender; nothing from the
  WAN is ever sent on (split horizon), and its tables stay within bounds.
* ``overlay``: a whole node with the overlay interface on, fed hostile
  overlay payloads (packets, offloaded chunks) from a peer's session and a
  stranger's, hostile packets from its own overlay TUN, and hostile LAN
  beacons: it must never raise; what reaches its TUN from a peer must be an
  IPv6 packet for our address from that peer's own address, and what it
  makes itself must be an ICMPv6 error addressed to us.


* ``bgp``: the BGP speaker (``weftnet.core.bgp``): hostile bytes on an
  established session (EVPN instance attached) and hostile UPDATE bodies for
  ``parse_update`` must give a NOTIFICATION or treat-as-withdraw, never an
  exception; everything the speaker sends must frame as BGP messages.
* ``l3vpn``: a PE's labelled data plane (``L3vpnPlane``, fuzz/l3vpn_target.py)
  fed hostile MplsPacket/MplsChunk payloads from a PE and a stranger, and
  hostile packets from its VRFs' TUNs: never raises, delivers only to a
  VRF's own site, sends only to the route's PE.
* ``pmtu``: path MTU discovery (fuzz/pmtu_target.py) fed hostile MtuProbe
  payloads from the peer it searches and a stranger: never raises, answers
  only well-formed probes with a bare ack, moves only on that peer's acks.
* ``paths``: a node T offering transit, with sessions to A (the hostile
  sender) and C, gets hostile payloads from A over the real session (path
  probes, replies, link adverts, ``Forward`` headers through it), the same
  straight into its paths engine from a detoured path, and hostile data-plane
  payloads through its class steering. Nothing may raise; T answers a probe
  with at most one reply no longer than the probe, and passes on at most one
  Forward per input, each exactly as long as what A sent.

* ``workers``: a data-plane worker's crypto (fuzz/workers_target.py) fed
  hostile datagrams around a live session (real data and fragments of its
  partition, mutations, other partitions) and hostile WorkerSlots payloads to
  a node: never raises, opens only what the peer sealed and each counter
  once, reassembly and the table of peers' slots stay bounded.

Inputs are a mix of pure random bytes and mutations (bit flips, byte
overwrites, truncation, extension, splicing, length-field edits, type and
version swaps) of a corpus of *valid* messages of every registered type —
including real handshake messages addressed to the fuzzed node and real
transport packets of a live session — so mutations reach deep code paths.

* ``sessionless``: sessionless DHT queries and answers (core/dht/sessionless.py):
  queries from known askers and strangers, proofs (empty queries and DhtProofs,
  0x34, some with a valid cookie for the source), and answers to the node's
  own queries in flight, some sealed for real around hostile plaintext; an
  answer larger than the query it answers, or anything sent back to a
  DhtProof, is a failure.
* ``reachpeer``: a hostile session peer (fuzz/reachpeer_target.py): reach and
  paths payloads from its own and spoofed sources, ReachTests in the clear;
  everything sent to an address it chose must be charged to its ledger, and
  the session never follows an unproven source.
Exit status 1 and a reproducer (hex) on the first failure.
"""

from __future__ import annotations

import argparse
from collections import Counter
import importlib
import pkgutil
import random
import sys
import time
import traceback

import weftnet.core
from weftnet.core import wire
from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.session.packets import HelloReply
from weftnet.core.session.transport import SecureTransport
from weftnet.core.vpn.network import Deliver, Drop, Send
from weftnet.errors import DecodeError

A, B = ("192.0.2.1", 1000), ("192.0.2.2", 2000)
T0 = 1_700_000_000.0


def load_all_messages() -> None:
    for m in pkgutil.walk_packages(weftnet.core.__path__, "weftnet.core."):
        importlib.import_module(m.name)


def valid_corpus(rng: random.Random) -> list[bytes]:
    """Real messages of every kind: a handshake, session traffic, DHT and app messages."""
    from weftnet.core.dht import ImmutableRecord, MutableRecord
    from weftnet.core.dht.messages import (
        FindNode, FindValue, Nodes, OfferItem, ReplicaOffer, ReplicaWant, Replicate, Route, RouteAck, RouteBack,
        RouteHop, Store, StoreAck, Value,
    )
    from weftnet.core.node import AppText, SignedText
    from weftnet.core.session.packets import CookieReply, EarlyData, Hello, Ping, Pong

    ia, ib = Identity.from_seed(bytes(32)), Identity.from_seed(bytes([1]) * 32)
    c = Contact(ib.public_key, ("198.51.100.7", 4500))
    c6 = Contact(ia.public_key, ("2001:db8::1", 4500))
    imm = ImmutableRecord(b"value")
    mut = MutableRecord.create(ia, b"salt", 7, 3600, b"mutable value")
    out = [
        wire.encode(m)
        for m in (
            FindNode(1, bytes(32)), Nodes(2, (c, c6)), FindValue(3, bytes(32)), Value(4, imm.encode(), (c,)),
            Store(5, mut.encode()), StoreAck(6, 1, ""), Route(7, bytes(32), c, 1, 32, 1, b"payload"),
            RouteAck(8, 2, 1, ""), RouteHop(9, 1), AppText("hello"), SignedText("hello", bytes(64)), Hello(1, bytes(60)), Ping(1, b"x"),
            Pong(2), CookieReply(1, bytes(12), bytes(32)),
            RouteBack(9, 2, 1, c, ""), RouteBack(10, 1, 0, c6, "why"),
            ReplicaOffer(11, (OfferItem(imm.key, 0), OfferItem(mut.key, 7))), ReplicaWant(12, 3),
            EarlyData(wire.encode(FindNode(1, bytes(32))), bytes(40)),
            Replicate(13, 600, mut.encode()), Replicate(14, 60, imm.encode()),
        )
    ]
    # A real handshake towards the fuzzed responder (B), and real session packets.
    a = SecureTransport(ia, random.Random(rng.random()), T0)
    b = SecureTransport(ib, random.Random(rng.random()), T0)
    a.send(Contact(ib.public_key, B), wire.encode(AppText("early")), T0)
    (init, _), = a.datagrams_to_send(T0)
    out.append(init)
    # A padded Init too (EarlyData inside), from another initiator.
    a2 = SecureTransport(Identity.from_seed(bytes([3]) * 32), random.Random(rng.random()), T0)
    a2.send(Contact(ib.public_key, B), wire.encode(FindNode(9, bytes(32))), T0, large_reply=True)
    out += [d for d, _ in a2.datagrams_to_send(T0)]
    b.receive_datagram(init, A, T0)
    for d, _ in b.datagrams_to_send(T0):
        out.append(d)
        a.receive_datagram(d, B, T0)
    for i in range(3):
        a.send(Contact(ib.public_key, B), wire.encode(Ping(i, b"")), T0)
    a.send(Contact(ib.public_key, B), b"\x01\x20" + bytes(3000), T0)  # a large payload: fragments
    out += [d for d, _ in a.datagrams_to_send(T0)]
    return out + vpn_corpus() + l2_corpus() + overlay_corpus()


def vpn_network(seed_node: int, ip: str):
    """A member of the fuzz network (fixed authority, so corpus payloads name its network ID)."""
    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.netcert import NetworkAuthority
    from weftnet.core.vpn.network import VpnNetwork

    auth = NetworkAuthority.create("fuzz", ["10.1.0.0/24", "fd00:1::/64"], random.Random(42), T0)
    ident = Identity.from_seed(bytes([seed_node]) * 32)
    cert = auth.sign_member(ident.node_id, [ip, ip.replace("10.1.0.", "fd00:1::")], ["g"],
                            not_before=int(T0) - 10, not_after=int(T0) + 86400, serial=seed_node)
    allow = [{"proto": "any", "port": "any", "host": "any"}]
    return auth, ident, VpnNetwork(auth.descriptor, cert, T0, firewall=Firewall.from_config(
        {"inbound": allow, "outbound": allow}), chunk_size=1280)


def vpn_corpus() -> list[bytes]:
    """VPN payloads from member M (10.1.0.2) to us (10.1.0.1), and raw IP packets for our TUN side."""
    import struct

    from weftnet.core.vpn.network import VNET_HDR

    auth, _, m = vpn_network(2, "10.1.0.2")
    _, us_ident, us = vpn_network(1, "10.1.0.1")
    m.add_certificate(us.own_cert, T0)
    ips = []
    for src, dst in (("10.1.0.2", "10.1.0.1"), ("fd00:1::2", "fd00:1::1")):
        v6 = ":" in src
        s, d = (__import__("ipaddress").ip_address(x).packed for x in (src, dst))
        for proto, l4 in ((6, struct.pack("!HHIIBBHHH", 4000, 80, 1, 0, 0x50, 0x02, 512, 0, 0)),
                          (17, struct.pack("!HHHH", 5000, 53, 8 + 4, 0) + b"abcd"),
                          (58 if v6 else 1, struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 7, 1) + b"ping")):
            if v6:
                ips.append(struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, s, d) + l4)
            else:
                ips.append(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, s, d) + l4)
    out = []
    for pkt in ips:
        r = m.outbound(pkt, T0)
        out += list(r.payloads) if isinstance(r, Send) else []
    big = ips[0][:2] + struct.pack("!H", 4020) + ips[0][4:] + bytes(4000)
    r = m.outbound_vnet(VNET_HDR.pack(1, 1, 40, 1240, 20, 16), big, T0)
    out += list(r.payloads) if isinstance(r, Send) else []
    rl = auth.revocation_list(seq=1, issued_at=int(T0), serials=[99])
    out.append(wire.encode(rl))
    return out + ips


def l2_network(seed_node: int, n: int):
    """Member n of the layer-2 fuzz network: MACs 02:0n:00:00:00:00/40, sources 10.2.n.0/24, one binding."""
    import ipaddress

    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.l2network import L2Network
    from weftnet.core.vpn.netcert import Binding, L2Grant, MacPrefix, NetworkAuthority

    auth = NetworkAuthority.create("fuzz2", ["10.2.0.0/16", "fd00:2::/64"], random.Random(43), T0, layer=2)
    ident = Identity.from_seed(bytes([seed_node]) * 32)
    grant = L2Grant((MacPrefix(bytes((2, n, 0, 0, 0, 0)), 40),),
                    (ipaddress.ip_network(f"10.2.{n}.0/24"), ipaddress.ip_network(f"fd00:2::{n}00/120")),
                    (Binding(bytes((2, n, 0, 0, 0, 1)), ipaddress.ip_address(f"10.2.{n}.1")),))
    cert = auth.sign_member(ident.node_id, [f"10.2.0.{n}", f"fd00:2::{n}"], ["g"], not_before=int(T0) - 10,
                            not_after=int(T0) + 86400, serial=n, l2=grant)
    allow = [{"proto": "any", "port": "any", "host": "any"}]
    return auth, ident, L2Network(auth.descriptor, cert, T0, firewall=Firewall.from_config(
        {"inbound": allow, "outbound": allow}), chunk_size=1280, max_macs=64, mac_quota=16, flood_rate=1000)


def l2_frames(n: int, to: int) -> list[bytes]:
    """Frames member n's bridge sends towards member to: ARP, IPv4, IPv6 with ND, a TCP segment."""
    import ipaddress
    import struct

    from weftnet.core.vpn.ethernet import member_mac

    me, peer, bcast = bytes((2, n, 0, 0, 0, 1)), bytes((2, to, 0, 0, 0, 1)), b"\xff" * 6

    def ip4(src, dst, proto, l4):
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, s, d) + l4

    def ip6(src, dst, proto, l4, hop=64):
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        return struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, hop, s, d) + l4

    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, me, bytes((10, 2, n, 1)), bytes(6), bytes((10, 2, to, 9)))
    reply = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, me, bytes((10, 2, n, 1)), peer, bytes((10, 2, to, 1)))
    target = ipaddress.ip_address(f"fd00:2::{to}").packed
    ns = struct.pack("!BBHI16s", 135, 0, 0, 0, target) + bytes((1, 1)) + me
    na = struct.pack("!BBHI16s", 136, 0, 0, 0x60000000, ipaddress.ip_address(f"fd00:2::{n}00").packed) + bytes((2, 1)) + me
    tcp = struct.pack("!HHIIBBHHH", 4000, 80, 1, 0, 0x50, 0x10, 512, 0, 0) + bytes(64)
    return [
        bcast + me + b"\x08\x06" + arp,
        peer + me + b"\x08\x06" + reply,
        peer + me + b"\x08\x00" + ip4(f"10.2.{n}.1", f"10.2.{to}.1", 1, struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"hi"),
        peer + me + b"\x08\x00" + ip4(f"10.2.{n}.1", f"10.2.{to}.1", 6, tcp),
        bytes.fromhex("3333ff") + target[13:] + me + b"\x86\xdd" + ip6(f"fd00:2::{n}", f"ff02::1:ff00:{to}", 58, ns, 255),
        peer + me + b"\x86\xdd" + ip6(f"fd00:2::{n}00", f"fd00:2::{to}", 58, na, 255),
        bcast + me + b"\x08\x00" + ip4("0.0.0.0", "255.255.255.255", 17, struct.pack("!HHHH", 68, 67, 8, 0)),
        member_mac(bytes(32), bytes(32)) + me + b"\x88\xcc" + bytes(30),
    ]


def l2_corpus() -> list[bytes]:
    """Payloads member 2 sends to member 1 (frames, chunks, its offer), and frames for 1's TAP."""
    from weftnet.core.vpn.network import VNET_HDR

    _, _, m = l2_network(2, 2)
    _, _, us = l2_network(1, 1)
    m.add_certificate(us.own_cert, T0)
    out = []
    for f in l2_frames(2, 1):
        r = m.outbound(f, T0)
        for s in (r if isinstance(r, list) else [r]):
            out += list(s.payloads) if isinstance(s, Send) else []
    seg = l2_frames(2, 1)[3]
    big = seg[:16] + (20 + 20 + 3000).to_bytes(2, "big") + seg[18:] + bytes(3000)
    r = m.outbound_vnet(VNET_HDR.pack(1, 1, 14 + 40, 1448, 14 + 20, 16), big, T0)
    out += list(r.payloads) if isinstance(r, Send) else []
    return out + l2_frames(1, 2)


def _ipv6_packets(src: bytes, dst: bytes) -> list[bytes]:
    import struct

    out = []
    for proto, l4 in ((6, struct.pack("!HHIIBBHHH", 4000, 22, 1, 0, 0x50, 0x02, 512, 0, 0)),
                      (17, struct.pack("!HHHH", 5000, 53, 8 + 4, 0) + b"abcd"),
                      (58, struct.pack("!BBHHH", 128, 0, 0, 7, 1) + b"ping")):
        out.append(struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst) + l4)
    return out


def overlay_corpus() -> list[bytes]:
    """Overlay payloads from M to us, beacons, and packets from our own overlay TUN (with a vnet header)."""
    import struct

    from weftnet.core.overlay.dataplane import OverlayDataPlane
    from weftnet.core.overlay.messages import LanBeacon
    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.network import VNET_HDR, VNET_NONE

    us, m = Identity.from_seed(bytes([1]) * 32), Identity.from_seed(bytes([2]) * 32)
    allow = [{"proto": "any", "port": "any", "host": "any"}]
    mp = OverlayDataPlane(m.address.packed, firewall=Firewall.from_config({"outbound": allow}), chunk_size=1280)
    out = []
    for pkt in _ipv6_packets(m.address.packed, us.address.packed):
        out += list(mp.send(mp.classify(b"", pkt, T0), b"", pkt, us.node_id, T0).payloads)
    big = _ipv6_packets(m.address.packed, us.address.packed)[0]
    big = big[:4] + struct.pack("!H", 20 + 4000) + big[6:] + bytes(4000)
    vnet = VNET_HDR.pack(1, 4, 60, 1208, 40, 16)
    out += list(mp.send(mp.classify(vnet, big, T0), vnet, big, us.node_id, T0).payloads)
    out += [wire.encode(LanBeacon.create(m, 4500, int(T0 * 1000) + i)) for i in range(3)]
    out += [VNET_NONE + p for p in _ipv6_packets(us.address.packed, m.address.packed)]
    out.append(vnet + big.replace(m.address.packed, b"\x00" * 16).replace(us.address.packed, m.address.packed))
    return out


def bgp_corpus() -> list[bytes]:
    """Valid BGP messages, framed: OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH and UPDATEs of every family."""
    import ipaddress as ipa

    from weftnet.core.bgp.attributes import (
        AsPath, Attributes, ClusterList, Communities, ExtendedCommunities, LocalPref, Med, MpReach, MpUnreach, NextHop,
        Origin, OriginatorId, PmsiTunnel,
    )
    from weftnet.core.bgp.capability import FourOctetAs, GracefulRestart, Multiprotocol, RouteRefreshCapability
    from weftnet.core.bgp.extcommunity import Encapsulation, MacMobility, RouteTarget, RouterMac
    from weftnet.core.bgp.family import FAMILY_BY_NAME, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6
    from weftnet.core.bgp.message import Keepalive, Notification, Open, RouteRefresh
    from weftnet.core.bgp.nlri import (
        EvpnInclusiveMulticast, EvpnIpPrefix, EvpnMacIp, Prefix, RouteDistinguisher, VpnPrefix,
    )
    from weftnet.core.bgp.update import Update, end_of_rib

    ip, net, rd = ipa.ip_address, ipa.ip_network, RouteDistinguisher.parse("192.0.2.2:100")
    base = [Origin(0), AsPath.sequence(65002, 4200000000)]
    ext = ExtendedCommunities((RouteTarget.parse("65001:100"), Encapsulation(8), MacMobility(2), RouterMac(bytes(6))))
    mac = bytes.fromhex("020000000001")
    evpn = (EvpnMacIp(rd, mac, None, 100), EvpnMacIp(rd, mac, ip("10.1.1.1"), 100, 7),
            EvpnInclusiveMulticast(rd, ip("192.0.2.2")), EvpnIpPrefix(rd, net("10.2.0.0/16"), ip("10.2.0.1"), 100),
            EvpnIpPrefix(rd, net("2001:db8::/32"), None, 100))
    vpn = (VpnPrefix(rd, net("10.9.0.0/24"), 100),)
    ups = [
        Update(attributes=Attributes(base + [NextHop(ip("192.0.2.2")), Med(1), LocalPref(5), Communities((1, 2)),
                                             OriginatorId(ip("1.1.1.1")), ClusterList((ip("2.2.2.2"),))]),
               nlri=(Prefix.parse("198.51.100.0/24"), Prefix.parse("10.0.0.0/8"))),
        Update(withdrawn=(Prefix.parse("198.51.100.0/24"),)),
        Update(attributes=Attributes(base + [ext, PmsiTunnel.ingress_replication(ip("192.0.2.2"), 100),
                                             MpReach(L2VPN_EVPN, ip("192.0.2.2"), evpn)])),
        Update(attributes=Attributes([MpUnreach(L2VPN_EVPN, evpn)])),
        Update(attributes=Attributes(base + [ext, MpReach(VPNV4, ip("192.0.2.2"), vpn)])),
        Update(attributes=Attributes([MpUnreach(VPNV6, (VpnPrefix(rd, net("2001:db8::/48"), 5),))])),
        Update(attributes=Attributes(base + [MpReach(IPV6_UNICAST, ip("2001:db8::2"), (Prefix.parse("2001:db8:1::/48"),))])),
        end_of_rib(L2VPN_EVPN),
    ]
    caps = tuple(Multiprotocol(f) for f in FAMILY_BY_NAME.values()) + (
        RouteRefreshCapability(), FourOctetAs(65002), GracefulRestart(120, False, False, ((L2VPN_EVPN, True),)))
    from l3vpn_target import update_corpus  # what an L3VPN PE announces and withdraws (fuzz/l3vpn_target.py)

    pe = [b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body for body in update_corpus()]
    return ([u.encode(True) for u in ups] + [u.encode(False) for u in ups[:3]] + pe
            + [Open(65002, 90, ip("192.0.2.2"), caps).encode(), Keepalive().encode(), Notification(6, 2, b"bye").encode(),
               RouteRefresh(L2VPN_EVPN).encode()])


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(9)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # overwrite a byte with an interesting value
            b[rng.randrange(len(b))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2 and b:  # truncate
            del b[rng.randrange(len(b)):]
        elif op == 3:  # extend
            b += rng.randbytes(rng.choice((1, 2, 16, 200)))
        elif op == 4 and corpus:  # splice with another message
            other = rng.choice(corpus)
            cut = rng.randrange(len(b) + 1)
            b = b[:cut] + other[rng.randrange(len(other) + 1):]
        elif op == 5 and len(b) > 4:  # a length/count field: set a big-endian u16 somewhere
            i = rng.randrange(2, len(b) - 1)
            b[i:i + 2] = rng.choice((0, 1, 255, 256, 0x7FFF, 0xFFFF)).to_bytes(2, "big")
        elif op == 6 and len(b) >= 2:  # swap the type
            b[1] = rng.randrange(256)
        elif op == 7 and b:  # swap the version
            b[0] = rng.choice((0, 2, 255))
        elif op == 8 and b:  # delete a range
            i = rng.randrange(len(b))
            del b[i:i + rng.randrange(1, 9)]
    return bytes(b)


def gen_inputs(rng: random.Random, corpus: list[bytes]):
    while True:
        r = rng.random()
        if r < 0.15:
            yield rng.randbytes(rng.randrange(0, 300))
        elif r < 0.25:
            yield bytes((1, rng.randrange(256))) + rng.randbytes(rng.randrange(0, 200))
        else:
            yield mutate(rng.choice(corpus), rng, corpus)


def fuzz_wire(data: bytes) -> None:
    try:
        msg = wire.decode(data)
    except DecodeError:
        return
    again = wire.encode(msg)
    if again != data:
        raise AssertionError(f"decoded then re-encoded differently: {again.hex()}")


class _Target:
    """A stateful target, rebuilt every 5,000 inputs; each input advances time by 1 ms."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.reset()

    def reset(self) -> None:
        self.now = T0
        self.inputs = 0

    def tick(self) -> None:
        self.inputs += 1
        if self.inputs > 5000:
            self.reset()
        self.now += 0.001


class TransportTarget(_Target):
    """A responder with one live session."""

    def reset(self) -> None:
        ib = Identity.from_seed(bytes([1]) * 32)
        self.t = SecureTransport(ib, random.Random(self.rng.random()), T0)
        super().reset()

    def __call__(self, data: bytes) -> None:
        self.tick()
        src = A if self.rng.random() < 0.7 else (f"203.0.113.{self.rng.randrange(256)}", self.rng.randrange(65536))
        self.t.receive_datagram(data, src, self.now)
        for d, _ in self.t.datagrams_to_send(self.now):
            kind = d[1]
            if kind == HelloReply.TYPE:
                continue
            # Valid handshake messages from the corpus legitimately get answers
            # (a Response, a Pong) — but only if the input authenticates, which a
            # mutated input cannot; decoding the answer proves it is well formed.
            wire.decode(d)
        while self.t.next_event() is not None:
            pass
        if self.inputs % 997 == 0:
            self.t.handle_timer(self.now)


class VpnTarget(_Target):
    """Our member of the fuzz network: payloads from member M or a stranger, packets from our TUN."""

    def reset(self) -> None:
        from ipaddress import ip_address

        from weftnet.core.vpn.firewall import parse_packet

        _, self.m_ident, m = vpn_network(2, "10.1.0.2")
        _, _, self.us = vpn_network(1, "10.1.0.1")
        self.us.add_certificate(m.own_cert, T0)
        self.stranger = Identity.from_seed(bytes([9]) * 32).node_id
        self.parse = parse_packet
        self.ours = {ip_address("10.1.0.1").packed, ip_address("fd00:1::1").packed}
        super().reset()

    def __call__(self, data: bytes) -> None:
        self.tick()
        r = self.rng.random()
        if r < 0.6:
            sender = self.m_ident.node_id if self.rng.random() < 0.85 else self.stranger
            res = self.us.inbound(sender, data, self.now)
            if isinstance(res, Deliver):
                info = self.parse(res.packet)  # whatever reaches the TUN is a well-formed packet for us
                if info.dst not in self.ours or len(res.vnet) not in (0, 10):
                    raise AssertionError("delivered a packet that is not for this member")
            elif res is not None and not isinstance(res, Drop):
                raise AssertionError(f"inbound returned {res!r}")
        elif r < 0.8:
            res = self.us.outbound(data, self.now)
            if not isinstance(res, (Send, Deliver, Drop)):
                raise AssertionError(f"outbound returned {res!r}")
        else:
            res = self.us.outbound_vnet(data[:10], data[10:], self.now)
            if not isinstance(res, (Send, Deliver, Drop)):
                raise AssertionError(f"outbound_vnet returned {res!r}")
        self.us.messages_to_send()
        while self.us.next_event() is not None:
            pass
        if self.inputs % 997 == 0:
            self.us.handle_timer(self.now)


def reach_corpus() -> list[bytes]:
    """Valid reach payloads (docs/wire/reach.md) around the ReachTarget's nodes."""
    from weftnet.core.reach.messages import (
        CAND_LOCAL, CAND_REFLEXIVE, NAT_EIM, OP_DIALBACK, OP_REGISTER, CallMeMaybe, Candidate, EndpointRecord,
        Forward, Probe, ProbeReply, ReachTest, RelayRef, RelayReply, RelayRequest,
    )

    c_id = Identity.from_seed(bytes([3]) * 32)
    inner = bytes.fromhex("0104") + bytes(40)
    return [wire.encode(m) for m in (
        Forward((c_id.node_id.raw,), (), inner),
        Forward((c_id.node_id.raw, bytes(32)), (), inner),
        Forward((), (bytes(32),), inner),
        Probe(1, b""), Probe(2, bytes(100)), ProbeReply(1, ("198.51.100.7", 4500)), ProbeReply(2, None),
        CallMeMaybe((("198.51.100.7", 4500), ("10.0.0.2", 4500))),
        RelayRequest(OP_REGISTER, 600, 0), RelayRequest(OP_DIALBACK, 0, 7),
        RelayReply(OP_REGISTER, 1, 600, 0, ("198.51.100.7", 4500), ("203.0.113.1", 4500), ""),
        ReachTest(7),
        EndpointRecord(NAT_EIM, 2, (Candidate(CAND_REFLEXIVE, ("198.51.100.7", 4500)),
                                    Candidate(CAND_LOCAL, ("10.0.0.2", 4500))),
                       (RelayRef(c_id.public_key, ("203.0.113.3", 4500)),)),
    )]


class _Trio(_Target):
    """Three NodeCores, A (the hostile sender), a node in the middle and C, wired by hand."""

    ADDR: dict[str, tuple[str, int]]
    MIDDLE: str

    @staticmethod
    def _dest(dst) -> tuple:
        return dst

    def _exchange(self, now: float) -> list:
        """Deliver datagrams among the three until quiet; returns the middle node's (to anyone)."""
        from_middle = []
        for _ in range(20):
            moved = False
            for name, core in self.nodes.items():
                for d, dst in core.datagrams_to_send(now):
                    moved = True
                    if name == self.MIDDLE:
                        from_middle.append((d, dst))
                    to = self._dest(dst)
                    target = next((n for n, ad in self.ADDR.items() if ad == to), None)
                    if target is not None:
                        self.nodes[target].receive_datagram(d, self.ADDR[name], now)
            if not moved:
                break
        for core in self.nodes.values():
            while core.next_event() is not None:
                pass
        return from_middle


class ReachTarget(_Trio):
    """A relay R with sessions to A (the hostile sender) and C (registered with R)."""

    ADDR = {"A": ("192.0.2.1", 1000), "R": ("192.0.2.2", 2000), "C": ("192.0.2.3", 3000)}
    MIDDLE = "R"

    def reset(self) -> None:
        from weftnet.core.node import NodeConfig, NodeCore
        from weftnet.core.reach.engine import ReachConfig
        from weftnet.core.reach.relay import RelayConfig

        self.nodes = {}
        for i, name in enumerate("ARC", start=1):
            cfg = NodeConfig(reach=ReachConfig(enabled=True), relay=RelayConfig(enabled=name == "R"))
            self.nodes[name] = NodeCore(Identity.from_seed(bytes([i]) * 32), random.Random(self.rng.random()),
                                        T0, cfg, endpoint=self.ADDR[name])
        a, r, c = (self.nodes[n] for n in "ARC")
        for x in (a, c):
            x.transport.connect(self.ADDR["R"], T0, r.identity.public_key)
        self._exchange(T0)
        r.reach.relay.register(c.node_id, 600, T0)
        super().reset()


    def __call__(self, data: bytes) -> None:
        from weftnet.core.dht import events as dht_events
        from weftnet.core.dht.records import MutableRecord
        from weftnet.core.reach.engine import ENDPOINT_SALT
        from weftnet.core.reach.paths import Via

        self.tick()
        a, r, c = (self.nodes[n] for n in "ARC")
        roll = self.rng.random()
        if roll < 0.6:  # over the real A-R session
            a.transport.send_to(r.node_id, data, self.now)
            sent = a.datagrams_to_send(self.now)
            before = r.transport.stats["relay_forwarded"]
            r.receive_datagrams([(d, self.ADDR["A"]) for d, _ in sent], self.now)
            to_c = [d for d, dst in r.datagrams_to_send(self.now) if dst == self.ADDR["C"]]
            passed = r.transport.stats["relay_forwarded"] - before
            # R's own traffic to C (a heartbeat probe, say) may go out in the same step: the forwarded
            # datagrams must be among what went to C, each exactly as long as one A sent.
            missing = Counter(len(d) for d, _ in sent) - Counter(len(d) for d in to_c)
            if passed > 1 or (passed and missing) or len(to_c) > len(sent) * passed + 2:
                raise AssertionError(f"relay amplified: {[len(d) for d, _ in sent]} in, {[len(d) for d in to_c]} out")
        elif roll < 0.85:  # straight into the reach engine, as if it came through a relay
            r.reach.on_message(a.node_id, data, Via((c.node_id.raw,), a.node_id.raw), self.now)
        else:  # an endpoint record value from a DHT read
            op = 10**9 + self.inputs
            r.reach._resolving[op] = (a.node_id, a.identity.public_key)
            rec = MutableRecord.create(a.identity, ENDPOINT_SALT, self.inputs, 600, data[:1000])
            r.reach.on_dht_event(dht_events.LookupDone(op, "get", rec.key, True, (), (rec,), 1, 0, 0.0, 0), self.now)
        if self.inputs % 997 == 0:
            for core in self.nodes.values():
                core.handle_timer(self.now)
        self._exchange(self.now)


def dht_corpus() -> list[bytes]:
    """DHT messages about the fuzzed node's neighbourhood: its contacts, keys near it, records."""
    from weftnet.core.dht import ImmutableRecord, MutableRecord
    from weftnet.core.dht.messages import (
        FindNear, FindNode, FindValue, Leave, NearNodes, Nodes, OfferItem, ReplicaOffer, ReplicaWant, Replicate, Route, RouteAck, RouteBack,
        RouteHop, Store, StoreAck, Value,
    )

    contacts = DhtTarget.contacts_for()
    owner = Identity.from_seed(bytes([7]) * 32)
    recs = [ImmutableRecord(b"v%d" % i) for i in range(4)]
    recs += [MutableRecord.create(owner, b"s%d" % i, i + 1, 600 * (i + 1), b"m%d" % i) for i in range(3)]
    out = []
    for i, r in enumerate(recs):
        blob = r.encode()
        out += [wire.encode(Store(i, blob)), wire.encode(Replicate(i, 60 * i, blob)),
                wire.encode(Value(i, blob, tuple(contacts[:i]))), wire.encode(FindValue(i, r.key))]
    c = contacts[0]
    out += [
        wire.encode(FindNode(1, contacts[3].node_id.raw)), wire.encode(Nodes(2, tuple(contacts[:20]))),
        wire.encode(Nodes(3, tuple(contacts[20:30]))), wire.encode(StoreAck(4, 1, "")),
        wire.encode(StoreAck(5, 0, "store full")), wire.encode(Route(6, contacts[9].node_id.raw, c, 0, 32, 1, b"x")),
        wire.encode(Route(7, bytes(32), c, 254, 255, 1, b"")), wire.encode(Route(7, bytes(32), c, 255, 255, 1, b"")),
        wire.encode(RouteAck(8, 3, 1, "")),
        wire.encode(RouteHop(9, 2)), wire.encode(RouteBack(10, 2, 0, contacts[5], "")),
        wire.encode(RouteBack(11, 4, 2, contacts[6], "hop limit reached")),
        wire.encode(ReplicaOffer(12, tuple(OfferItem(r.key, r.seq or 0) for r in recs))),
        wire.encode(ReplicaWant(13, 0x7F)),
        wire.encode(Leave()),  # issue 16: the sender leaves our table
        wire.encode(FindNear(14, contacts[4].node_id.raw)),  # issue 16: answers with our RTTs
        wire.encode(NearNodes(15, tuple(contacts[:20]), tuple(range(0, 40000, 2000)))),
        wire.encode(NearNodes(16, tuple(contacts[:3]), (1,))),  # lists that do not match
    ]
    return out


class DhtTarget(_Target):
    """One node's DHT with a table, records and operations in flight (``Dht.on_message``)."""

    N_CONTACTS = 40

    @staticmethod
    def contacts_for() -> list[Contact]:
        out = []
        for n in range(DhtTarget.N_CONTACTS):
            ident = Identity.from_seed(bytes([n + 2]) * 32)
            host = f"198.51.{n % 4}.{n + 1}" if n % 5 else f"2001:db8::{n + 1:x}"
            out.append(Contact(ident.public_key, (host, 4000 + n)))
        return out

    def reset(self) -> None:
        from weftnet.core.dht import Dht, DhtConfig, MemoryStore

        me = Identity.from_seed(bytes([1]) * 32)
        self.cfg = DhtConfig(k=8, max_records=48, max_store_bytes=32 * 1024, records_per_peer=12,
                             records_per_prefix=30, hint_inflight_per_address=1, mutable_quorum=2,
                             held_senders=8, seen_cache=64)
        self.d = Dht(Contact(me.public_key, B), random.Random(self.rng.random()), T0, self.cfg, MemoryStore(), me)
        self.contacts = self.contacts_for()
        self.by_key = {c.node_id.int: c for c in self.contacts}
        for c in self.contacts[:28]:
            self.d.table.add(c, T0)
        self.stranger = Contact(Identity.from_seed(bytes([99]) * 32).public_key, ("203.0.113.9", 9))
        super().reset()

    def __call__(self, data: bytes) -> None:
        import dataclasses

        from weftnet.core.dht import ImmutableRecord
        from weftnet.core.dht.messages import Nodes, ReplicaWant, RouteAck, RouteBack, RouteHop, StoreAck, Value

        self.tick()
        rng, d = self.rng, self.d
        if self.inputs % 1500 == 0:
            self.now += 3700.0  # past the hourly republish and replication, and some expiries
        try:
            msg = wire.decode(data)
        except DecodeError:
            msg = None
        if msg is not None:
            sender = self.stranger if rng.random() < 0.1 else rng.choice(self.contacts)
            if isinstance(msg, (Nodes, Value, StoreAck, ReplicaWant)) and d._requests and rng.random() < 0.6:
                rid = rng.choice(sorted(d._requests))
                msg = dataclasses.replace(msg, rid=rid)
                sender = self.by_key.get(d._requests[rid].key, sender)
            elif isinstance(msg, (RouteHop, RouteAck, RouteBack)) and d._route_back and rng.random() < 0.6:
                mid = rng.choice(list(d._route_back))
                msg = dataclasses.replace(msg, msg_id=mid)
                sender = self.by_key.get(d._route_back[mid][1], sender)
            d.on_message(sender, msg, self.now, rng.random() < 0.8)
        r = rng.random()
        if r < 0.02:
            d.find_node(rng.choice(self.contacts).node_id, self.now)
        elif r < 0.04:
            d.get(rng.choice((ImmutableRecord(b"v1").key, rng.randbytes(32))), self.now)
        elif r < 0.05:
            d.put(ImmutableRecord(rng.randbytes(8)), self.now)
        elif r < 0.06:
            d.route(rng.randbytes(32), b"p", self.now, trace=rng.random() < 0.5)
        elif r < 0.07:
            d.on_verified(rng.choice(self.contacts).node_id, self.now)
        elif r < 0.08:
            c = rng.choice(self.contacts)
            d.on_unreachable(c.node_id, self.now, c.endpoint if rng.random() < 0.5 else ("192.0.2.1", 1))
        for _contact, out in d.messages_to_send():
            wire.encode(out)  # everything it sends must be a valid message
        while d.next_event() is not None:
            pass
        if self.inputs % 97 == 0:
            d.handle_timer(self.now)
        cfg = self.cfg
        if len(d.index) > cfg.max_records or d.index.bytes > cfg.max_store_bytes or len(d.index) != len(d.store):
            raise AssertionError(f"store out of bounds: {len(d.index)} records, {d.index.bytes} bytes, "
                                 f"{len(d.store)} in the store")
        held: dict[bytes, int] = {}
        for rec in d.store.records():
            if rec.origin:
                held[rec.origin] = held.get(rec.origin, 0) + 1
        for origin, n in held.items():
            if n > cfg.records_per_peer or d.index.usage(origin)[0] != n:
                raise AssertionError(f"peer {origin.hex()[:12]} holds {n} records (usage says "
                                     f"{d.index.usage(origin)[0]}), quota {cfg.records_per_peer}")
def sessionless_corpus() -> list[bytes]:
    """Sessionless DHT queries (0x32) to the fuzzed node from known askers, proofs, and answers (0x33)
    to the queries it has in flight (SessionlessTarget re-tags those), all of them valid."""
    from weftnet.core.dht.messages import FindNear, FindNode, FindValue, Nodes
    from weftnet.core.dht.sessionless import QUERY_OVERHEAD, DhtProof, seal_answer, seal_query, static_dh

    me = Identity.from_seed(bytes([1]) * 32)
    out = []
    for n, req in enumerate((FindNode(1, bytes(32)), FindNear(2, bytes([7]) * 32), FindValue(3, bytes([9]) * 32))):
        asker = Identity.from_seed(bytes([n + 2]) * 32)
        ss = static_dh(asker, me.public_key)
        for pad in (0, 300, 900):
            raw, keys = seal_query(asker.public_key, me.public_key, ss, 100 + n, bytes([n]) * 16, wire.encode(req),
                                   None, pad)
            out.append(raw)
        out.append(seal_query(asker.public_key, me.public_key, ss, 200 + n, bytes([n + 5]) * 16, b"", bytes(16))[0])
        reply = wire.encode(Nodes(req.rid, tuple(DhtTarget.contacts_for()[:n * 4])))
        out.append(seal_answer(keys, 100 + n, bytes(12), 0, bytes(16), reply))
    out.append(bytes((1, 0x32)) + bytes(QUERY_OVERHEAD))
    for n in range(3):  # DhtProofs (0x34) from the same askers, cookies that do not check
        out.append(wire.encode(DhtProof(Identity.from_seed(bytes([n + 2]) * 32).public_key, bytes([n]) * 16)))
    return out


class SessionlessTarget(_Target):
    """Both ends of sessionless queries on one node (core/dht/sessionless.py): queries from strangers and
    from askers it knows, answers to its own queries in flight. Checked: nothing it sends back to a
    query is larger than the query, and every datagram it sends decodes."""

    def reset(self) -> None:
        from weftnet.core.dht import Dht, DhtConfig, MemoryStore
        from weftnet.core.dht.sessionless import Sessionless

        from weftnet.core.session.transport import TransportConfig

        me = Identity.from_seed(bytes([1]) * 32)
        rng = random.Random(self.rng.random())
        # One run in three under load (cookie round trips), the others answering (an input a millisecond).
        load = self.rng.choice((50, 10**6, 10**6))
        self.t = SecureTransport(me, rng, T0, TransportConfig(handshakes_per_second_under_load=load))
        self.d = Dht(Contact(me.public_key, B), rng, T0, DhtConfig(k=8, peer_burst=50, prefix_burst=200), MemoryStore(), me)
        for c in DhtTarget.contacts_for()[:24]:
            self.d.table.add(c, T0)
        self.s = Sessionless(me, rng, T0, self.t, self.d, cache=16, fallback=lambda *a: None)
        self.t.on_query = self.s.on_datagram
        self.t.on_query_cookie = lambda m, now: self.s.on_cookie(m.receiver_index, m.nonce, m.encrypted_cookie, now)
        self.targets = DhtTarget.contacts_for()[:6]
        self.queries = [q for q in sessionless_corpus() if q[1] == 0x32]
        super().reset()

    def __call__(self, data: bytes) -> None:
        from weftnet.core.dht.messages import FindNode

        self.tick()
        rng, s = self.rng, self.s
        asked = rng.random() < 0.05
        if asked:  # a query of our own, whose answer the corpus may match
            c = rng.choice(self.targets)
            s.ask(c, FindNode(rng.getrandbits(64), rng.randbytes(32)), self.now)
        if len(data) >= 6 and data[:2] == b"\x01\x33" and s._pending and rng.random() < 0.5:
            data = data[:2] + rng.choice(list(s._pending)).to_bytes(4, "big") + data[6:]  # an answer to one in flight
        elif rng.random() < 0.1:
            data = rng.choice(self.queries)  # a replay, maybe from another source
        elif rng.random() < 0.1:
            # A DhtProof whose cookie is valid for its asker at A (or the input cut to its place).
            asker = Identity.from_seed(bytes([rng.randrange(2, 5)]) * 32).public_key
            cookie = s._cookie(rng.choice((s._secret, s._previous)), asker, A)
            data = (bytes((1, 0x34)) + asker + cookie + data[:rng.choice((0, 0, 3))])[:rng.choice((50, 50, 40))]
        elif rng.random() < 0.15:
            # A query that authenticates (sealed by a known asker), carrying the input as its plaintext.
            import struct

            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            from weftnet.core.dht.sessionless import query_keys, static_dh
            from weftnet.core.session import handshake as hs

            asker = Identity.from_seed(bytes([rng.randrange(2, 5)]) * 32)
            nonce = rng.randbytes(16)
            keys = query_keys(static_dh(asker, s.public_key), asker.public_key, s.public_key, nonce)
            head = bytes((1, 0x32)) + rng.randbytes(4) + asker.public_key + nonce
            sealed = ChaCha20Poly1305(keys.query).encrypt(bytes(12), data[:1300], head)
            body = head + struct.pack("!H", len(sealed)) + sealed
            data = body + hs.MAC(hs.mac1_key(s.public_key), body) + bytes(16)
        elif s._pending and rng.random() < 0.2:
            # An answer that authenticates (sealed by the node asked), carrying the input as its plaintext.
            from weftnet.core.dht.sessionless import query_keys, static_dh

            tag = rng.choice(list(s._pending))
            p = s._pending[tag]
            n = self.targets.index(p.contact)
            ident = Identity.from_seed(bytes([n + 2]) * 32)
            keys = query_keys(static_dh(ident, s.public_key), s.public_key, ident.public_key, p.nonce)
            head = bytes((1, 0x33)) + tag.to_bytes(4, "big") + bytes(12)
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            data = head + ChaCha20Poly1305(keys.answer).encrypt(bytes(12), data[:1200], head)
        src = A if rng.random() < 0.7 else (f"203.0.113.{rng.randrange(256)}", rng.randrange(1, 65536))
        self.t.receive_datagram(data, src, self.now)
        for d, _ in self.t.datagrams_to_send(self.now):
            wire.decode(d)
            if len(data) > 1 and data[1] == 0x34 and not asked:
                raise AssertionError(f"a DhtProof was answered with {d[:2].hex()}")
            if d[1] == 0x33 and len(d) > len(data):
                raise AssertionError(f"answered {len(data)} bytes with {len(d)}")
        self.d.messages_to_send()
        while self.d.next_event() is not None or self.t.next_event() is not None:
            pass
        if self.inputs % 97 == 0:
            s.handle_timer(self.now + 2.0)


class L2Target(_Target):
    """Our member of the layer-2 fuzz network: payloads from member M or a stranger, frames from our TAP."""

    def reset(self) -> None:
        from weftnet.core.vpn.l2network import _Grant

        _, self.m_ident, m = l2_network(2, 2)
        _, _, self.us = l2_network(1, 1)
        self.us.add_certificate(m.own_cert, T0)
        self.m_grant = _Grant(self.us.network_id, m.own_cert)
        self.stranger = Identity.from_seed(bytes([9]) * 32).node_id
        super().reset()

    def __call__(self, data: bytes) -> None:
        self.tick()
        us = self.us
        r = self.rng.random()
        if r < 0.6:
            sender = self.m_ident.node_id if self.rng.random() < 0.85 else self.stranger
            res = us.inbound(sender, data, self.now)
            if isinstance(res, Deliver):
                f = res.packet
                if sender != self.m_ident.node_id or len(f) < 14 or not self.m_grant.mac_ok(f[6:12]) or f[6] & 1:
                    raise AssertionError("delivered a frame its sender may not source")
                if len(res.vnet) not in (0, 10):
                    raise AssertionError("delivered a bad virtio_net_hdr")
            elif res is not None and not isinstance(res, Drop):
                raise AssertionError(f"inbound returned {res!r} (a frame from the WAN is never sent on)")
        else:
            frame = data[10:] if r < 0.8 else data
            res = us.outbound_vnet(data[:10], frame, self.now) if r < 0.8 else us.outbound(frame, self.now)
            for x in (res if isinstance(res, list) else [res]):
                if isinstance(x, Deliver) and x.packet[:6] != frame[6:12]:
                    raise AssertionError("answered a frame to someone other than its sender")
                if not isinstance(x, (Send, Deliver, Drop)):
                    raise AssertionError(f"outbound returned {x!r}")
        if len(us.macs) > us.macs.max_entries or len(us.neighbors) > us.neighbors.max_entries:
            raise AssertionError("a table outgrew its bound")
        us.messages_to_send()
        while us.next_event() is not None:
            pass
        if self.inputs % 997 == 0:
            us.handle_timer(self.now)


class OverlayTarget(_Target):
    """Our node with the overlay interface on: payloads from peer M or a stranger, TUN packets, beacons."""

    def reset(self) -> None:
        from weftnet.core.node import NodeCore
        from weftnet.core.overlay import OVERLAY_TUN
        from weftnet.core.vpn.firewall import Firewall, parse_packet

        us = Identity.from_seed(bytes([1]) * 32)
        self.m = Identity.from_seed(bytes([2]) * 32).node_id
        self.stranger = Identity.from_seed(bytes([9]) * 32).node_id
        self.core = NodeCore(us, random.Random(self.rng.random()), T0)
        allow = [{"proto": "any", "port": "any", "host": "any"}]
        self.core.overlay.enable(T0, firewall=Firewall.from_config({"inbound": allow, "outbound": allow}),
                                 vnet=True, chunk_size=1280)
        self.ours = us.address.packed
        self.key = OVERLAY_TUN
        self.parse = parse_packet
        super().reset()
        self.now = T0

    def __call__(self, data: bytes) -> None:
        self.tick()
        r = self.rng.random()
        core = self.core
        tun_out = core.vpn.tun_out
        kind = data[1] if len(data) > 1 else -1  # steer each input to the path its kind reaches deepest
        if kind == 0x5A or r < 0.05:
            core.lan_received(data, f"192.0.2.{self.rng.randrange(1, 255)}", self.now)
        elif kind in (0x58, 0x59) or r < 0.4:
            sender = self.m if self.rng.random() < 0.85 else self.stranger
            core.overlay.on_payload(sender, data, self.now)
            for key, vnet, packet in tun_out:
                info = self.parse(packet)
                if key != self.key or info.dst != self.ours or info.src[4:] != sender.raw[:12] or len(vnet) not in (0, 10):
                    raise AssertionError("delivered a packet that is not from the sender's address to ours")
        else:
            core.overlay_outbound([data], self.now)
            for key, vnet, packet in tun_out:
                info = self.parse(packet)
                if info.proto != 58 or info.icmp_type not in (1, 2) or info.dst != self.ours:
                    raise AssertionError("the node wrote something other than an ICMPv6 error for us")
        tun_out.clear()
        core.datagrams_to_send(self.now)
        while core.next_event() is not None:
            pass
        if self.inputs % 997 == 0:
            core.handle_timer(self.now)


class BgpTarget(_Target):
    """An established session of a speaker with an EVPN instance; input is a TCP segment from the peer,
    or (a quarter of the time) an UPDATE body straight into the parser."""

    def reset(self) -> None:
        import ipaddress as ipa

        from weftnet.core.bgp import PeerConfig, Speaker, SpeakerConfig
        from weftnet.core.bgp.evpn import EviConfig, Evpn, RecordingDataplane
        from weftnet.core.bgp.family import FAMILY_BY_NAME
        from weftnet.core.bgp.policy import RouteTargetImport

        fams = tuple(FAMILY_BY_NAME.values())
        self.sp = Speaker(SpeakerConfig(65001, ipa.IPv4Address("192.0.2.1"), fams), random.Random(self.rng.random()), T0)
        self.sp.import_policy = rti = RouteTargetImport()
        self.evpn = Evpn(self.sp, RecordingDataplane(), rti)
        self.sp.add_peer(PeerConfig("192.0.2.2", 65002, families=fams, max_prefixes=5000), T0)
        self.sp.start(T0)
        self.evpn.add_instance(EviConfig.auto(100, 65001, ipa.IPv4Address("192.0.2.1"), ipa.IPv4Address("192.0.2.1")), T0)
        self.evpn.local_mac(100, bytes.fromhex("02000000aa01"), T0)
        self.hello = [m for m in bgp_corpus() if m[18] in (1, 4)]
        self.conn = 0
        super().reset()
        self._establish()

    def _establish(self) -> None:
        from weftnet.core.bgp import State

        s = self.sp.peers["192.0.2.2"].session
        self.conn += 1
        if s.state == State.IDLE:
            s.handle_idle_accept(self.now)
        self.sp.connection_accepted(self.conn, "192.0.2.1", "192.0.2.2", self.now)
        for m in self.hello:
            self.sp.data_received(self.conn, m, self.now)
        self.sp.actions()
        assert s.state == State.ESTABLISHED, s.last_error

    def __call__(self, data: bytes) -> None:
        from weftnet.core.bgp import State
        from weftnet.core.bgp.errors import Notify
        from weftnet.core.bgp.message import MessageFramer
        from weftnet.core.bgp.session import Send
        from weftnet.core.bgp.update import ParsedUpdate, UpdateContext, parse_update

        self.tick()
        if self.rng.random() < 0.25:
            try:
                p = parse_update(data[19:] if data[:16] == b"\xff" * 16 else data,
                                 UpdateContext(self.rng.random() < 0.5, self.rng.random() < 0.5, 65002,
                                               frozenset(self.sp.cfg.families)))
            except Notify as n:
                if n.code not in (1, 3):
                    raise AssertionError(f"UPDATE parser gave NOTIFICATION {n.code}/{n.subcode}") from None
                return
            if not isinstance(p, ParsedUpdate) or (p.treat_as_withdraw and p.announced):
                raise AssertionError("treat-as-withdraw left routes announced")
            return
        self.sp.data_received(self.conn, data, self.now)
        if self.inputs % 97 == 0:
            self.sp.handle_timer(self.now)
        for act in self.sp.actions():
            if isinstance(act, Send):
                f = MessageFramer()
                if not f.feed(act.data) or f.pending:
                    raise AssertionError(f"the speaker sent a malformed message: {act.data.hex()}")
        if self.sp.peers["192.0.2.2"].session.state != State.ESTABLISHED:
            self._establish()


def paths_corpus() -> list[bytes]:
    """Valid paths payloads (docs/wire/paths.md) and data-plane payloads for the classes."""
    from weftnet.core.paths.messages import FLAG_TRANSIT, LinkInfo, PathAdvert, PathProbe, PathProbeReply
    from weftnet.core.reach.messages import Forward

    c_id = Identity.from_seed(bytes([3]) * 32)
    inner = bytes.fromhex("0104") + bytes(40)
    ip4 = bytes.fromhex("450000200000000040110000") + bytes([10, 9, 0, 1, 10, 9, 0, 2]) + bytes.fromhex("13c413c4000c0000")
    ip6 = bytes.fromhex("6b80000000081140") + b"\xfd" + bytes(15) + b"\xfd" + bytes(14) + b"\x02" + bytes.fromhex("13c4177000080000")
    return [wire.encode(m) for m in (
        PathProbe(1, 1), PathProbeReply(1, 1), PathProbeReply(2**64 - 1, 7),
        PathAdvert(FLAG_TRANSIT, (LinkInfo("fiber", ("192.0.2.10", 4500), 1, 0),
                                  LinkInfo("lte", ("2001:db8::10", 4600), 50, 1))),
        Forward((c_id.node_id.raw,), (), inner),
    )] + [b"\x01\x52" + bytes(32) + ip4, b"\x01\x58" + ip6 + b"0",
          b"\x01\x55" + bytes(32) + bytes.fromhex("000000070002") + bytes(10) + ip4]


class PathsTarget(_Trio):
    """A transit node T with sessions to A (the hostile sender) and C, and classes configured."""

    ADDR = {"A": ("192.0.2.1", 1000), "T": ("192.0.2.2", 2000), "C": ("192.0.2.3", 3000)}
    MIDDLE = "T"

    def reset(self) -> None:
        from weftnet.core.node import NodeConfig, NodeCore
        from weftnet.core.paths.config import ClassSpec, LinkSpec, PathsConfig

        classes = (ClassSpec("voice", proto=17, dport=((5060, 5060),), latency=0.1, policy="duplicate"),
                   ClassSpec("bulk", proto=6, policy="balance"), ClassSpec("rest", policy="cheapest"))
        self.nodes = {}
        for i, name in enumerate("ATC", start=1):
            pc = PathsConfig(transit=name == "T", classes=classes if name == "T" else (),
                             links=(LinkSpec("main", 1, False, self.ADDR[name], True),
                                    LinkSpec("lte", 9, True, ("198.51.100.9", 4600), False)))
            self.nodes[name] = NodeCore(Identity.from_seed(bytes([i]) * 32), random.Random(self.rng.random()),
                                        T0, NodeConfig(paths=pc), endpoint=self.ADDR[name])
        a, t, c = (self.nodes[n] for n in "ATC")
        for x in (a, c):
            x.transport.connect(self.ADDR["T"], T0, t.identity.public_key)
        self._exchange(T0)
        t.paths.track(c.node_id, T0)
        t.paths.track(a.node_id, T0)
        t.handle_timer(T0)  # both tracked: steering classifies, probes go out
        self._exchange(T0)
        super().reset()

    @staticmethod
    def _dest(dst) -> tuple:
        return tuple(dst)[:2]  # a LinkAddr (one of the lte link's datagrams) is its host and port

    def __call__(self, data: bytes) -> None:
        from weftnet.core.reach.paths import Via

        self.tick()
        a, t, c = (self.nodes[n] for n in "ATC")
        roll = self.rng.random()
        if roll < 0.55:  # over the real A-T session
            a.transport.send_to(t.node_id, data, self.now)
            sent = a.datagrams_to_send(self.now)
            before = t.transport.stats["relay_forwarded"]
            t.receive_datagrams([(d, self.ADDR["A"]) for d, _ in sent], self.now)
            out = t.datagrams_to_send(self.now)
            to_c = [d for d, dst in out if tuple(dst)[:2] == self.ADDR["C"]]
            to_a = [d for d, dst in out if tuple(dst)[:2] == self.ADDR["A"]]
            passed = t.transport.stats["relay_forwarded"] - before
            if passed > 1 or (passed and sorted(len(d) for d in to_c[-len(sent):]) != sorted(len(d) for d, _ in sent)):
                raise AssertionError(f"transit amplified: {[len(d) for d, _ in sent]} in, {[len(d) for d in to_c]} out")
            if len(data) > 1 and data[1] == 0x18 and sent and to_a and max(len(d) for d in to_a) > max(len(d) for d, _ in sent):
                raise AssertionError("a probe reply was larger than the probe")
        elif roll < 0.8:  # straight into the paths engine, as if it came over a detour through C
            t.paths.on_message(a.node_id, data, Via((c.node_id.raw,), a.node_id.raw), self.now)
        else:  # our own data plane, steered by class
            r = t.paths.steer(c.node_id, data, self.now)
            if r is not None and not 1 <= len(r) <= 2:
                raise AssertionError(f"steer gave {r!r}")
        if self.inputs % 997 == 0:
            for core in self.nodes.values():
                core.handle_timer(self.now)
        self._exchange(self.now)


def run(target: str, count: int, seed: int, quiet: bool = False) -> int:
    load_all_messages()
    rng = random.Random(seed)
    corpus = valid_corpus(rng)
    targets = []
    if target in ("wire", "all"):
        targets.append(("wire", fuzz_wire))
    if target in ("transport", "all"):
        targets.append(("transport", TransportTarget(random.Random(seed + 1))))
    if target in ("vpn", "all"):
        targets.append(("vpn", VpnTarget(random.Random(seed + 2))))
    if target in ("l2", "all"):
        targets.append(("l2", L2Target(random.Random(seed + 6))))
    if target in ("dht", "all"):
        targets.append(("dht", DhtTarget(random.Random(seed + 7))))
    if target in ("reach", "all"):
        targets.append(("reach", ReachTarget(random.Random(seed + 8))))
    if target in ("overlay", "all"):
        targets.append(("overlay", OverlayTarget(random.Random(seed + 3))))
    if target in ("bgp", "all"):
        targets.append(("bgp", BgpTarget(random.Random(seed + 4))))
    if target in ("l3vpn", "all"):
        from l3vpn_target import L3vpnTarget

        targets.append(("l3vpn", L3vpnTarget(random.Random(seed + 5))))
    if target in ("pmtu", "all"):
        from pmtu_target import PmtuTarget

        targets.append(("pmtu", PmtuTarget(random.Random(seed + 9))))
    if target in ("paths", "all"):
        targets.append(("paths", PathsTarget(random.Random(seed + 10))))
    if target in ("sessionless", "all"):
        targets.append(("sessionless", SessionlessTarget(random.Random(seed + 12))))
    if target in ("workers", "all"):
        from workers_target import WorkersTarget

        targets.append(("workers", WorkersTarget(random.Random(seed + 11))))
    if target in ("train", "all"):
        from train_target import TrainTarget

        targets.append(("train", TrainTarget(random.Random(seed + 13))))
    if target in ("ciphers", "all"):
        from ciphers_target import CiphersTarget

        targets.append(("ciphers", CiphersTarget(random.Random(seed + 14))))
    if target in ("ackfilter", "all"):
        from ackfilter_target import AckFilterTarget

        targets.append(("ackfilter", AckFilterTarget(random.Random(seed + 15))))
    if target in ("reachpeer", "all"):
        from reachpeer_target import ReachPeerTarget

        targets.append(("reachpeer", ReachPeerTarget(random.Random(seed + 16))))
    if target in ("config", "all"):
        from config_target import ConfigTarget

        targets.append(("config", ConfigTarget(random.Random(seed + 17))))
    per = count // len(targets)
    t0 = time.perf_counter()
    done = 0
    for name, fn in targets:
        # The data plane gets mostly its own messages, so mutations go deep into it.
        own = {"vpn": vpn_corpus() * 4 + corpus, "l2": l2_corpus() * 4 + corpus,
               "overlay": overlay_corpus() * 4 + corpus, "dht": dht_corpus() * 4 + corpus,
               "bgp": bgp_corpus(), "reach": reach_corpus() * 6 + corpus,
               "paths": paths_corpus() * 6 + corpus,
               "sessionless": sessionless_corpus() * 8 + corpus}.get(name, corpus)
        if name == "l3vpn":
            from l3vpn_target import corpus as l3vpn_corpus

            own = l3vpn_corpus() * 4 + corpus
        if name == "pmtu":
            from pmtu_target import corpus as pmtu_corpus

            own = pmtu_corpus() * 4 + corpus
        if name == "workers":
            from workers_target import corpus as workers_corpus

            own = workers_corpus() * 6 + corpus
        if name == "train":
            from train_target import corpus as train_corpus

            own = train_corpus() * 8 + corpus
        if name == "ciphers":
            from ciphers_target import corpus as ciphers_corpus

            own = ciphers_corpus() * 8 + corpus
        if name == "ackfilter":
            from ackfilter_target import corpus as ackfilter_corpus

            own = ackfilter_corpus() * 8
        if name == "config":
            from config_target import corpus as config_corpus

            own = config_corpus() * 8
        if name == "reachpeer":
            from reachpeer_target import corpus as reachpeer_corpus

            own = reachpeer_corpus() * 8 + corpus
        gen = gen_inputs(random.Random(f"{seed}-{name}"), own)
        for i in range(per):
            data = next(gen)
            try:
                fn(data)
            except Exception:
                print(f"FAIL target={name} input#{i} seed={seed}\nhex={data.hex()}", file=sys.stderr)
                traceback.print_exc()
                return 1
            done += 1
            if not quiet and done % 100_000 == 0:
                print(f"{done:,} inputs, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not quiet:
        print(f"ok: {done:,} inputs ({', '.join(n for n, _ in targets)}), seed {seed}, "
              f"{time.perf_counter() - t0:.1f} s, 0 failures")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("wire", "transport", "vpn", "l2", "dht", "overlay", "bgp", "l3vpn", "reach",
                                         "pmtu", "paths", "workers", "sessionless", "train", "ciphers", "ackfilter", "reachpeer",
                                         "config", "all"),
                    default="all")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    return run(a.target, a.count, a.seed)


if __name__ == "__main__":
    sys.exit(main())

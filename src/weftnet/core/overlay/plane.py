"""The overlay interface inside a node: IPv6 between key-derived addresses, sans-IO.

Theory of operation (docs/overlay.md)
-------------------------------------
Every node owns one overlay address, ``fd77:6566::/32`` + the first 96 bits
of its node ID. With the interface enabled, the runtime hands this plane the
packets its kernel routes to ``fd77:6566::/32`` (:meth:`outbound`), and the
transport hands it the overlay payloads of every session (:meth:`on_payload`,
the transport's sink). Packets for the TUN collect in ``tun_out`` under the
key :data:`OVERLAY_TUN` (the list the node's private networks use too, so the
driver writes both the same way).

* **Out**: :class:`~weftnet.core.overlay.dataplane.OverlayDataPlane` checks
  the packet; the destination's 96 bits are looked up in the
  :class:`~weftnet.core.overlay.resolver.AddressCache`. A hit goes to that
  node at once, over its session (or a handshake to its contact). A miss
  takes the node from the routing table if a session with it is up, else
  holds the packet and asks the DHT for the nodes closest to ``ID prefix ||
  zeros``: only a contact whose own key derives the address is taken, and the
  Noise handshake the first packet rides in proves that key. Nobody found: a
  negative entry, and ICMPv6 "address unreachable" back to the application.
  Lookups are rate-limited by the cache, so a scan of the address space is
  not a lookup storm.
* **In**: the data plane checks the packet came from the sender's own
  address, is for ours, and passes the default-deny firewall. A delivered
  packet teaches the cache its sender (the reply needs no lookup).
* **Churn**: a node that stops answering is forgotten, so the next packet
  looks it up again and finds it wherever it is now. Two signals: the
  transport gives up a handshake with it (unreachable), or traffic to it has
  gone one way for a liveness interval (5 s) and a transport ping over its
  session goes unanswered for another (a node that restarted has lost the
  session we still send on). Its session is closed too, so the next packet
  handshakes afresh, to wherever the lookup finds it. A session coming up
  clears a negative entry.

Path choice and relays live in the transport: this plane sends by node ID,
so whatever path the transport picks for a node carries its overlay traffic.
"""

from __future__ import annotations

from typing import Any, Callable

from weftnet.core.dht import Dht
from weftnet.core.dht import events as dht_events
from weftnet.core.identity import Identity, NodeId
from weftnet.core.overlay.dataplane import DEFAULT_MTU, OVERLAY_CHUNK_SIZE, OverlayDataPlane
from weftnet.core.overlay.ratelimit import TokenBucket
from weftnet.core.overlay.resolver import LIMITED, LOOKUP, NEGATIVE, PENDING, AddressCache, Route
from weftnet.core.session.transport import SecureTransport
from weftnet.core.vpn.firewall import Firewall, PacketInfo
from weftnet.core.vpn.network import VNET_HDR_LEN, Deliver, Send
from weftnet.errors import SessionError

__all__ = ["OverlayPlane", "OVERLAY_TUN"]

#: The key of overlay-interface packets in the node's ``tun_out`` list (network IDs are 32 bytes).
OVERLAY_TUN = b"overlay"


class OverlayPlane:
    """The overlay interface of one node, wired to its transport and DHT (module docstring)."""

    #: Idle firewall flows and cache entries are swept this often (seconds).
    SWEEP_INTERVAL = 30.0
    #: ICMPv6 errors this plane writes to the TUN, per second (RFC 4443 section 2.4 (f)).
    ICMP_RATE = 50.0
    #: Traffic to a node that went one way for this long draws a ping; no answer within as long: dead.
    LIVENESS_INTERVAL = 5.0
    #: ... and that ping, unanswered, is sent again every LIVENESS_REPING seconds up to
    #: LIVENESS_PINGS in all (each on the path in use then): one datagram lost on a lossy path, or
    #: on a path that failed just before a detour took over, does not close a working session.
    LIVENESS_PINGS = 3
    LIVENESS_REPING = 1.0
    #: Addresses whose node is being reached through its endpoint record at once (oldest out), and
    #: how long their packets wait for it: a handshake's timeout (10 s) and the record's read.
    MAX_REACHING = 256
    REACH_WAIT = 12.0

    def __init__(self, identity: Identity, transport: SecureTransport, dht: Dht, tun_out: list,
                 now: float = 0.0, cache: AddressCache | None = None):
        self.address = identity.address.packed
        self.transport = transport
        self.dht = dht
        self.tun_out = tun_out
        self.cache = cache if cache is not None else AddressCache(now=now)
        self.data: OverlayDataPlane | None = None
        self.vnet = False
        self._lookups: dict[int, bytes] = {}  # DHT op id -> address key
        self._icmp = TokenBucket(self.ICMP_RATE, self.ICMP_RATE, now)
        self._sweep_at: float | None = None
        self._live_at: float | None = None
        self._seen: dict[bytes, tuple[int, int]] = {}  # peer -> (packets out, packets in) at the last check
        self._probes: dict[bytes, tuple[int, float, int]] = {}  # peer -> (first ping id, sent at, pings)
        self._reping_at: float | None = None
        self.stats = dict.fromkeys(("not_enabled", "no_endpoint", "icmp_limited", "probes", "dead_peers",
                                    "reaching"), 0)
        #: ``reach_node(public_key, now)``: reach a node through its own endpoint record, as a user's
        #: request (set by NodeCore when reach is on). A lookup that named an address's node but never
        #: heard it (behind a NAT) hands it there instead of answering "unreachable".
        self.reach_node: Callable[[bytes, float], None] | None = None
        self._reaching: dict[bytes, float] = {}  # address key -> until when its packets wait for that

    @property
    def enabled(self) -> bool:
        return self.data is not None

    def enable(self, now: float, *, firewall: Firewall | None = None, mtu: int = DEFAULT_MTU, vnet: bool = False,
               chunk_size: int = OVERLAY_CHUNK_SIZE) -> None:
        """Start carrying overlay traffic. ``vnet``: packets from the TUN start with a virtio_net_hdr."""
        self.data = OverlayDataPlane(self.address, firewall=firewall, mtu=mtu, chunk_size=chunk_size)
        self.vnet = vnet
        self._sweep_at = now + self.SWEEP_INTERVAL
        self._live_at = now + self.LIVENESS_INTERVAL

    def disable(self) -> None:
        self.data = None
        self._sweep_at = self._live_at = None
        self._seen.clear()
        self._probes.clear()
        self._reping_at = None

    # -- out -----------------------------------------------------------------------
    def outbound(self, packets: list[bytes], now: float) -> None:
        """Packets read from the overlay TUN (each with its virtio_net_hdr if ``vnet``)."""
        data = self.data
        if data is None:
            self.stats["not_enabled"] += len(packets)
            return
        vnet_on = self.vnet
        cache = self.cache
        get = cache.get
        fast = data.outbound_fast if vnet_on else None
        for packet in packets:
            if vnet_on:
                f = fast(packet, cache, now)  # a tracked flow's packet (OverlayDataPlane.outbound_fast)
                if f is not None:
                    self._send(f[0], (f[1],), now)
                    continue
                vnet, packet = packet[:VNET_HDR_LEN], packet[VNET_HDR_LEN:]
            else:
                vnet = b""
            r = data.classify(vnet, packet, now)
            if type(r) is not PacketInfo:
                if type(r) is Deliver:
                    self.tun_out.append((OVERLAY_TUN, r.vnet, r.packet))
                continue
            key = r.dst[4:16]
            route = get(key, now)
            if route is None:
                self._miss(key, r, vnet, packet, now)
                continue
            s = data.send(r, vnet, packet, route.node_id, now)
            if type(s) is Send:
                self._send(route, s.payloads, now)

    def _send(self, route: Route, payloads: tuple[bytes, ...], now: float) -> None:
        t = self.transport
        if t.send_to(route.node_id, payloads[0], now):
            for p in payloads[1:]:
                t.send_to(route.node_id, p, now)
        elif route.contact is not None:
            for p in payloads:
                t.send(route.contact, p, now)
        elif self._reaching and self._reaching.get(route.node_id.raw[:12], 0.0) > now:
            self.data.drop("reaching")  # its handshake, from its endpoint record, is under way
        else:  # learned from a session the transport no longer knows: look it up again next time
            self.stats["no_endpoint"] += 1
            self.cache.forget(route.node_id)

    def _miss(self, key: bytes, info: PacketInfo, vnet: bytes, packet: bytes, now: float) -> None:
        cache = self.cache
        state = cache.begin(key, now)
        if state == PENDING:
            cache.hold(key, (info, vnet, packet), len(packet))
        elif state == NEGATIVE:
            self._unreachable(packet, info, now)
        elif state == LIMITED:
            self.data.drop("lookup-limited")
        elif state == LOOKUP:
            target = key + bytes(20)
            near = self.dht.table.closest(int.from_bytes(target, "big"), 1)
            if near and near[0].node_id.raw[:12] == key and self.transport.has_session(near[0].node_id):
                # A live session with the holder: no lookup needed (its key is proven already).
                cache.finish(key, near[0].node_id, near[0], now)
                self._forward(key, [(info, vnet, packet)], now)
                return
            cache.hold(key, (info, vnet, packet), len(packet))
            self._lookups[self.dht.find_node(NodeId(target), now)] = key

    def _forward(self, key: bytes, held: list, now: float) -> None:
        data = self.data
        route = self.cache.get(key, now)
        if data is None or route is None:
            return
        for info, vnet, packet in held:
            s = data.send(info, vnet, packet, route.node_id, now)
            if type(s) is Send:
                self._send(route, s.payloads, now)

    def _unreachable(self, packet: bytes, info: PacketInfo, now: float) -> None:
        if self._icmp.take(now):
            self.tun_out.append((OVERLAY_TUN, b"", self.data.unreachable(packet, info).packet))
        else:
            self.stats["icmp_limited"] += 1
            self.data.drop("no-route")

    # -- in ------------------------------------------------------------------------
    def on_payload(self, sender: NodeId, payload: bytes, now: float) -> None:
        """An overlay payload (0x58, 0x59) from an authenticated sender: the transport's sink."""
        data = self.data
        if data is None:
            self.stats["not_enabled"] += 1
            return
        f = data.inbound_fast(sender.raw, payload, now)  # a tracked flow's packet
        if f is not None:
            self.tun_out.append((OVERLAY_TUN, f[0], f[1]))
            key = sender.raw[:12]
            if key not in self.cache:
                self.cache.learn(key, sender, None, now)
            return
        r = data.inbound(sender, payload, now)
        if type(r) is Deliver:
            self.tun_out.append((OVERLAY_TUN, r.vnet, r.packet))
            key = sender.raw[:12]
            if key not in self.cache:
                self.cache.learn(key, sender, None, now)

    # -- the rest of the node --------------------------------------------------------
    def on_dht_event(self, ev: Any, now: float) -> bool:
        """Consume the end of a lookup this plane started; False if it is not ours."""
        if not isinstance(ev, dht_events.LookupDone):
            return False
        key = self._lookups.pop(ev.op_id, None)
        if key is None:
            return False
        match = next((c for c in ev.contacts if c.node_id.raw[:12] == key), None)
        if match is None and self.reach_node is not None:
            named = next((c for c in ev.silent if c.node_id.raw[:12] == key), None)
            if named is not None:
                # Named, but it never answered (behind a NAT, say): reach it on the paths its own
                # endpoint record names (its relays, then a punch). Its packets are dropped, not
                # refused, until its handshake ends (a lookup can start only after that).
                self.reach_node(named.public_key, now)
                reaching = self._reaching
                if key not in reaching and len(reaching) >= self.MAX_REACHING:
                    del reaching[next(iter(reaching))]
                reaching[key] = now + self.REACH_WAIT
                self.stats["reaching"] += 1
                held = self.cache.finish(key, named.node_id, None, now)
                if self.data is not None:
                    for _ in held:
                        self.data.drop("reaching")
                return True
        held = self.cache.finish(key, match.node_id if match else None, match, now)
        if self.data is None:
            return True
        if match is not None:
            self._forward(key, held, now)
        else:
            for info, _vnet, packet in held:
                self._unreachable(packet, info, now)
        return True

    def on_session_up(self, node_id: NodeId) -> None:
        self.cache.clear_negative(node_id.raw[:12])
        if self._reaching:
            self._reaching.pop(node_id.raw[:12], None)

    def on_unreachable(self, node_id: NodeId, now: float) -> None:
        if self.cache.forget(node_id):
            self.transport.close(node_id, now)  # the next packet handshakes to wherever a lookup finds it

    def on_pong(self, node_id: NodeId, ping_id: int) -> None:
        probe = self._probes.get(node_id.raw)
        if probe is not None and ping_id >= probe[0]:  # the first ping's or a later one's
            del self._probes[node_id.raw]

    def _check_liveness(self, now: float) -> None:
        """Ping nodes our traffic has gone one way to; forget those that do not answer (module docstring)."""
        seen: dict[bytes, tuple[int, int]] = {}
        for peer, c in self.data.peers.items():
            prev = self._seen.get(peer)
            seen[peer] = (c.packets_out, c.packets_in)
            heard = prev is not None and c.packets_in > prev[1]
            probe = self._probes.get(peer)
            if probe is not None:
                if heard:
                    del self._probes[peer]
                elif now - probe[1] >= self.LIVENESS_INTERVAL:
                    del self._probes[peer]
                    node = NodeId(peer)
                    self.stats["dead_peers"] += 1
                    self.cache.forget(node)
                    self.transport.close(node, now)
                continue
            if prev is not None and c.packets_out > prev[0] and not heard:
                try:
                    self._probes[peer] = (self.transport.ping(NodeId(peer), now), now, 1)
                    self.stats["probes"] += 1
                    if self._reping_at is None:
                        self._reping_at = now + self.LIVENESS_REPING
                except SessionError:
                    pass
        self._seen = seen
        for peer in [p for p in self._probes if p not in seen]:
            del self._probes[peer]

    def _reping(self, now: float) -> None:
        """Ping again the peers whose liveness ping is unanswered (LIVENESS_PINGS in all)."""
        nxt = None
        for peer, (first, at, n) in list(self._probes.items()):
            due = at + n * self.LIVENESS_REPING
            if n < self.LIVENESS_PINGS and due <= now:
                try:
                    self.transport.ping(NodeId(peer), now)
                    self.stats["probes"] += 1
                    n += 1
                except SessionError:
                    n = self.LIVENESS_PINGS
                self._probes[peer] = (first, at, n)
                due = at + n * self.LIVENESS_REPING
            if n < self.LIVENESS_PINGS and (nxt is None or due < nxt):
                nxt = due
        self._reping_at = nxt

    def get_timer(self) -> float | None:
        if self._sweep_at is None:
            return None
        t = min(self._sweep_at, self._live_at)
        return t if self._reping_at is None else min(t, self._reping_at)

    def handle_timer(self, now: float) -> None:
        if self.data is None:
            return
        if now >= self._live_at:
            self._live_at = now + self.LIVENESS_INTERVAL
            self._check_liveness(now)
        if self._reping_at is not None and now >= self._reping_at:
            self._reping(now)
        if now >= self._sweep_at:
            self._sweep_at = now + self.SWEEP_INTERVAL
            self.data.firewall.expire(now)
            self.cache.expire(now)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.data is not None}
        if self.data is not None:
            out.update(self.data.stats())
        c = self.cache
        out["cache"] = {"entries": len(c), "negative": c.negative_count, "lookups_in_flight": c.lookups_in_flight,
                        **c.stats}
        out.update(self.stats)
        return out

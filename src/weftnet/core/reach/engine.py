"""Reach: make every node reachable — own endpoints, endpoint records, relays, hole punching, keepalives. Sans-IO.

Theory of operation (docs/reach.md)
-----------------------------------
The transport carries packets over paths (core/reach/paths.py) and forwards
through relays (``Forward``); this engine decides which paths exist and
which are tried:

* **Own endpoints.** After a session comes up on a UDP path, the node sends a
  ``Probe``; the ``ProbeReply`` says which source the peer saw. Reports from
  peers at different addresses classify the NAT (core/reach/nat.py). A peer
  is asked to have a third node dial us back (``ReachTest``) to learn whether
  we are reachable unsolicited.
* **Relays.** A node that is not reachable unsolicited registers with up to
  ``relays`` peers that offer relaying (``RelayRequest``), renews the lease
  at half-time and keeps the session's NAT mapping open with a probe every
  ``keepalive`` seconds.
* **Endpoint record.** The node publishes a signed mutable DHT record
  (key = SHA-256(public key ‖ "weft/endpoints")): NAT class, reachability,
  candidates (reflexive, local) and relays, with a short TTL, again whenever
  it changes and at half its TTL.
* **Resolution.** When a handshake gets no answer (or at once for a node the
  user asked for), the node reads the peer's endpoint record and gives the
  transport every candidate and a ``Via`` through each of its relays; the
  transport sends the pending Init on all of them at once.
* **Hole punching.** When a session runs through a relay, both ends send a
  ``CallMeMaybe`` with their candidates through it and probe every candidate
  of the other on a schedule (0, 0.1, 0.3, 0.7, 1.5, 3 s). A probe answered
  on a direct path confirms it and the policy moves the session there —
  without a new handshake. A direct path in use that stops answering (a
  heartbeat probe unanswered for ``heartbeat`` seconds while we send) is
  declared dead and the session falls back to a relay; punching starts again.

Inputs: transport events and reach payloads (via NodeCore), DHT completions,
``now``; outputs go through the transport and the DHT.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from weftnet.core.counters import Counters
from weftnet.core.dht import events as dht_events
from weftnet.core.dht.records import ImmutableRecord, MutableRecord
from weftnet.core.identity import Identity, NodeId, RandomSource, node_id_for
from weftnet.core.reach.messages import (
    NAT_EDM,
    NAT_UNKNOWN,
    NAT_NAMES,
    NAT_PUBLIC,
    NAT_UDP_BLOCKED,
    OP_DIALBACK,
    OP_REGISTER,
    OP_UNREGISTER,
    CallMeMaybe,
    Candidate,
    EndpointRecord,
    MAX_CANDIDATES,
    MAX_RELAYS,
    Probe,
    ProbeReply,
    ReachTest,
    RelayRef,
    RelayReply,
    RelayRequest,
)
from weftnet.core.reach.nat import NatObserver
from weftnet.core.reach.paths import DIRECT, RELAY, STREAM, AltSource, PathPolicy, StreamLink, Via, is_udp, path_kind
from weftnet.core.reach.relay import RelayConfig, RelayService
from weftnet.core.wire import decode, decode_as, encode
from weftnet.errors import DecodeError

__all__ = ["ReachConfig", "Reach", "ReachEvent", "endpoint_record_key", "ENDPOINT_SALT", "REACH_TYPES"]

ENDPOINT_SALT = b"weft/endpoints"
#: Payload types this engine handles (inside sessions).
REACH_TYPES = frozenset((0x13, 0x14, 0x15, 0x16, 0x17))


def endpoint_record_key(public_key: bytes) -> bytes:
    """The DHT key of a node's endpoint record (a mutable record signed by that key)."""
    return hashlib.sha256(public_key + ENDPOINT_SALT).digest()


@dataclass
class ReachConfig:
    #: Active behaviour (probing, records, relays, resolution, punching). Off: the node still
    #: answers probes and receives forwarded packets, but never starts anything.
    enabled: bool = False
    #: A probe on a kept path (relay sessions, punched paths) when nothing was sent for this long:
    #: shorter than NAT mapping timeouts (RFC 4787 asks for >= 2 min; many boxes keep 30 s).
    keepalive: float = 25.0
    #: A path in use that has not been heard from for this long while we send gets a probe;
    #: unanswered after as long again, it is dead.
    heartbeat: float = 2.0
    #: A direct path heard from within this long is not left when the peer's packets start coming
    #: through a relay (PathPolicy.trust); quieter than that, we follow the peer to the relay.
    trust: float = 2.0
    punch: bool = True
    punch_schedule: tuple = (0.0, 0.1, 0.3, 0.7, 1.5, 3.0)
    #: After a punch that did not work: try again after this long, doubling up to repunch_max.
    repunch: float = 30.0
    repunch_max: float = 300.0
    #: Punched paths are kept open this long after the punch (then traffic alone keeps them).
    keep_punched: float = 600.0
    #: Relays to register with when not reachable unsolicited (0 = never).
    relays: int = 2
    lease: int = 600
    record_ttl: int = 600
    publish_min_interval: float = 5.0
    #: Without a dial-back answer this long after the first session, assume not reachable.
    settle: float = 4.0
    resolve_cache: float = 60.0
    #: A handshake to a DHT contact with no answer after this long makes the node read the
    #: contact's endpoint record (a user's own request: at once).
    resolve_delay: float = 0.5
    max_resolving: int = 8
    #: Reflexive reports expire after this long (a changed mapping is noticed).
    report_ttl: float = 600.0
    dialback_interval: float = 600.0


@dataclass(frozen=True)
class ReachEvent:
    """Something an operator wants in the log: a path upgraded or lost, NAT class, relays, record."""

    kind: ClassVar[str] = "reach"
    what: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "detail": self.detail}


class _PeerReach:
    __slots__ = ("node_id", "candidates", "punch_times", "punch_fails", "next_punch", "cmm_sent",
                 "hb_target", "hb_sent", "kept_until", "probed", "seen_out", "own_sent", "tended",
                 "in_bytes", "in_datagrams", "paid_bytes", "paid_datagrams", "hb_wait")

    def __init__(self, node_id: NodeId, received: tuple[int, int] = (0, 0)):
        self.node_id = node_id
        self.candidates: dict = {}  # direct UDP candidates of the peer -> origin
        self.punch_times: list[float] = []
        self.punch_fails = 0
        self.next_punch: float | None = None
        self.cmm_sent = -1e18
        self.hb_target = None
        self.hb_sent = 0.0
        self.hb_wait = 0.0  # how long the heartbeat probe out (hb_target) may go unanswered
        self.kept_until = 0.0
        self.probed: dict = {}  # target -> last probe time (reactive probes are rate-limited)
        self.seen_out = 0  # the peer's packets_out when last tended
        self.tended = 0.0
        self.own_sent = 0  # of those, our probes
        # The peer's bytes and datagrams in when this entry was made, and what was sent since to its
        # paths that have not answered (Reach._pay): the peer pays for what it makes us send there.
        self.in_bytes, self.in_datagrams = received
        self.paid_bytes = self.paid_datagrams = 0


class _Lease:
    __slots__ = ("public_key", "endpoint", "until", "renew_at")

    def __init__(self, public_key: bytes, endpoint, until: float, renew_at: float):
        self.public_key, self.endpoint, self.until, self.renew_at = public_key, endpoint, until, renew_at


class Reach:
    """NAT traversal and relaying for one node. See the module docstring."""

    # Slots: past 30 attributes an instance's dict stops sharing its keys (1.6 KB a node); "__dict__"
    # stays for attributes added later and for tests that replace a method on one instance.
    __slots__ = ("identity", "node_id", "transport", "dht", "config", "_rng", "_emit", "nat", "relay", "_peers",
                 "_probes", "_leases", "_asked", "_not_relay", "_cache", "_resolving", "_resolve_due",
                 "_resolved_at", "_reread", "_settling", "_wanted", "_claimed", "_connect_to", "_locating", "_located_at", "_publishing",
                 "_published", "_published_at", "_publish_due", "_seq", "_dialback", "_no_dialback",
                 "_dialback_next", "_dialback_by", "_dialback_times", "_first_session", "_refresh_at",
                 "_last_class", "_wake", "_own_at", "alt_port", "urgent", "stats", "__dict__")

    MAX_PEERS = 1024
    #: Own endpoints (NAT class, dial-back, reports) and relay registrations are looked after this often,
    #: and at once after anything that may change them.
    OWN_EVERY = 5.0
    MAX_PROBES = 4096
    MAX_CACHE = 4096
    #: How long a record that names no way in (no relay, not reachable unsolicited) is reused.
    STALE_CACHE = 5.0
    #: A provisional record (its node had not yet learnt its NAT class, reachability or relays)
    #: of a peer we have a session with is read again this many times, STALE_CACHE, then twice,
    #: four and eight times that after each read: nothing else reads it while the session lasts.
    SETTLE_READS = 4
    #: Dial-back tests run for others: at most this many per second in all.
    DIALBACK_PER_SECOND = 10
    #: What we send to a peer's paths that have not answered (addresses it named in a call-me-maybe
    #: or a record or a link advert, a source no answer has come back from) is paid, byte for byte
    #: and datagram for datagram, by what the peer sent us since its ledger began (security.md,
    #: item 18). A punch may go this far ahead of that, once per ledger: six probes, a punch's
    #: first rounds to its candidates, before the peer's own probes (which pay our answers and
    #: later rounds) can have got through our NAT.
    UNPAID_BYTES = 360
    UNPAID_DATAGRAMS = 6
    #: A punch probe's padding: its reply (which names the address it came from, 30 bytes at most)
    #: is never larger than the probe.
    PROBE_PAD = 18
    #: The data header and AEAD tag around a payload (core/session/transport.py).
    SEALED = 30

    def __init__(self, identity: Identity, transport: Any, dht: Any, rng: RandomSource, now: float,
                 config: ReachConfig | None = None, relay: RelayConfig | None = None,
                 emit: Callable[[Any], None] | None = None):
        self.identity = identity
        self.node_id = identity.node_id
        self.transport = transport
        self.dht = dht
        self.config = cfg = config or ReachConfig()
        self._rng = rng
        self._emit = emit or (lambda ev: None)
        self.nat = NatObserver(cfg.report_ttl)
        self.relay = RelayService(relay or RelayConfig(), now) if (relay and relay.enabled) else None
        transport.relay = self.relay
        transport.on_clear = self.on_clear
        transport.paths_wanted = cfg.enabled
        transport.quiet_after = cfg.heartbeat if cfg.enabled else float("inf")
        transport.policy = PathPolicy(cfg.trust)
        transport.policy.heard = self._on_heard
        transport.policy.pay = self._pay
        self._peers: dict[NodeId, _PeerReach] = {}
        self._probes: dict[int, tuple] = {}  # txid -> (node, target, sent, purpose, cost paid by the peer)
        self._leases: dict[NodeId, _Lease] = {}  # relays we are registered with
        self._asked: dict[NodeId, float] = {}  # register requests outstanding -> deadline
        self._not_relay: dict[NodeId, float] = {}  # refused until
        self._cache: dict[NodeId, tuple[EndpointRecord, float]] = {}
        self._resolving: dict[int, tuple[NodeId, bytes]] = {}  # dht op -> (node, public key)
        self._resolve_due: dict[NodeId, tuple[float, bytes, bool]] = {}
        self._resolved_at: dict[NodeId, float] = {}
        self._reread: dict[NodeId, float] = {}  # node -> its record's last early re-read (one per 10 s)
        self._settling: dict[NodeId, int] | None = None  # node -> re-reads of its provisional record so far
        self._wanted: dict[NodeId, float] = {}
        self._claimed: dict[NodeId, int] | None = None  # node -> the hint source paying for its record's Inits
        self._connect_to: dict[NodeId, bytes] = {}  # nodes to handshake with once their record is read
        self._locating: dict[int, NodeId] = {}  # dht op -> node whose ID record is read (locate)
        self._located_at: dict[NodeId, float] = {}
        self._publishing: set[int] = set()
        self._published: bytes | None = None
        self._published_at: float | None = None
        self._publish_due: float | None = None
        self._seq = 0
        self._dialback: dict[int, float] = {}  # nonce -> deadline
        self._no_dialback: dict[NodeId, float] = {}  # peers that cannot test us, until
        self._dialback_next = 0.0
        self._dialback_by: dict[NodeId, float] = {}  # requester -> last served
        self._dialback_times: deque[float] | tuple = ()  # a deque from the first dial-back (624 bytes)
        self._first_session: float | None = None
        self._refresh_at = 0.0
        self._last_class = None
        self._wake: float | None = None
        self._own_at = 0.0
        #: The runtime has a second UDP port to answer dial-back tests from (RFC 5780, CHANGE-PORT).
        self.alt_port = False
        #: ``urgent(node_id)``: handshakes to this node resolve its record at once (set by NodeCore: VPN members).
        self.urgent: Callable[[NodeId], bool] | None = None
        self.stats = Counters(
            ("probes_sent", "probe_replies", "unpaid_refused", "unproven_bytes", "unproven_datagrams", "punches", "punch_success", "punch_failed", "paths_upgraded",
             "paths_dead", "fallbacks", "resolves", "resolved", "resolve_failed", "records_published",
             "relay_registrations", "relay_refusals", "dialbacks", "dialback_served", "dialback_inconclusive", "reach_tests_received",
             "call_me_maybe_sent", "call_me_maybe_received", "claimed_relays_unpaid"))

    # -- driver-facing ------------------------------------------------------
    def set_local_endpoints(self, endpoints: list, now: float) -> None:
        """The node's own bound endpoints (the runtime lists its interface addresses)."""
        if self.nat.set_local([tuple(e) for e in endpoints]):
            self._refresh_at = now  # re-learn what peers see, then republish
            self._dialback_next = now
            self._changed(now)

    def want(self, node_id: NodeId, now: float) -> None:
        """The user asked for this node (ping, send): resolve its record at once if needed."""
        if self._claimed:
            self._claimed.pop(node_id, None)  # ours to pay now, not a hint's source's
        if len(self._wanted) >= self.MAX_PEERS:
            self._wanted.pop(next(iter(self._wanted)))
        self._wanted[node_id] = now + 60.0
        t = self.transport
        if self.config.enabled and t.handshaking(node_id) and not t.has_session(node_id):
            # A handshake (the DHT's, say) is already waiting: do not let the user wait out its delay.
            pk = t.public_key_of(node_id)
            if pk is not None:
                self._resolve(node_id, pk, now, urgent=True)
                self._plan(now, node_id, partial=True)

    def on_session_up(self, node_id: NodeId, endpoint, now: float) -> None:
        if self._claimed:
            self._claimed.pop(node_id, None)
        if self._first_session is None:
            self._first_session = now
            self._own_at = now
        if not self.config.enabled:
            return
        kind = path_kind(endpoint)
        if kind == RELAY:
            self._start_punch(self._peer(node_id), now)
        else:
            if self.nat.classify(now) != NAT_PUBLIC:
                # Through our NAT: keep the mapping open while the session is used (and a while after).
                self._peer(node_id).kept_until = now + self.config.keep_punched
            if is_udp(endpoint) and self._want_report(endpoint[0], now):
                self._probe(node_id, endpoint, "reflexive", now)
        cached = self._cache.get(node_id)
        if cached is not None and node_id not in self._resolve_due:
            # A copy read before this session (a DHT contact's handshake read it), too young to be
            # read again yet: if it is provisional, read it again once it is stale.
            pk = self.transport.public_key_of(node_id)
            if pk is not None:
                self._settle_read(node_id, pk, cached[0], now, read_at=cached[1])
        self._plan(now, node_id, partial=True)

    def on_session_down(self, node_id: NodeId, now: float) -> None:
        if self.relay is not None:
            self.relay.session_down(node_id)
        self._peers.pop(node_id, None)
        if self._leases.pop(node_id, None) is not None:
            self._emit(ReachEvent("relay lost", node_id.text()))
            self._changed(now)
        self._asked.pop(node_id, None)
        if self._settling:
            self._settling.pop(node_id, None)  # a new session reads a provisional record again

    def on_path_changed(self, node_id: NodeId, target, previous, now: float) -> None:
        if previous is None or not self.config.enabled:
            return
        pr = self._peer(node_id)
        if path_kind(target) == RELAY and path_kind(previous) != RELAY:
            self.stats["fallbacks"] += 1
            self._emit(ReachEvent("path fell back to relay", f"{node_id.text()} via {_short(target)}"))
            pr.punch_times = []
            pr.next_punch = now  # the mapping may have moved: punch again at once
        elif path_kind(target) != RELAY and path_kind(previous) == RELAY:
            self.stats["paths_upgraded"] += 1
            pr.kept_until = now + self.config.keep_punched
            pr.punch_times = []
            pr.punch_fails = 0
            self._emit(ReachEvent("path upgraded to direct", f"{node_id.text()} at {_short(target)}"))
        self._plan(now, node_id, partial=True)

    def on_path_quiet(self, node_id: NodeId, target, now: float) -> None:
        """We send to this peer and hear nothing: probe the path in use; unanswered, it is dead."""
        if not self.config.enabled:
            return
        pr = self._peer(node_id)
        if pr.hb_target is None and target is not None:
            self._heartbeat(pr, target, now)
        self._plan(now, node_id, partial=True)

    def on_paths_wanted(self, node_id: NodeId, public_key: bytes, attempt: int, now: float) -> None:
        if not self.config.enabled:
            return
        urgent = self._wanted.get(node_id, 0.0) > now or (self.urgent is not None and self.urgent(node_id))
        if self._leases and self.nat.stream_only:
            # No UDP here at all: every peer is reached through our own relay (it opens the way on).
            self.transport.add_paths(node_id, self._own_relay_paths(node_id), "own-relay", now)
        # Still no answer after what a cached record offered: it may be stale (relays change).
        # A DHT contact that may well answer on its own is looked up only if it has not after
        # ``resolve_delay`` (most handshakes complete in one round trip, well within that).
        delay = 0.0 if urgent or attempt > 0 else self.config.resolve_delay
        self._resolve(node_id, public_key, now, urgent, force=attempt >= 2, delay=delay)
        self._plan(now, node_id, partial=True)

    def on_message(self, node_id: NodeId, payload: bytes, addr, now: float) -> None:
        """A reach payload (REACH_TYPES) from an authenticated peer, arrived on path ``addr``."""
        try:
            msg = decode(payload)
        except DecodeError:
            return
        t = type(msg)
        if t is Probe:
            observed = tuple(addr) if is_udp(addr) else None
            reply = encode(ProbeReply(msg.txid, observed))
            if self._pay(node_id, addr, len(reply) + self.SEALED, now, request=len(payload) + self.SEALED):
                self.transport.send_on(node_id, reply, addr, now)
            self._reactive_probe(node_id, addr, now)
        elif t is ProbeReply:
            self._on_probe_reply(node_id, addr, msg, now)
        elif t is CallMeMaybe:
            self._on_call_me_maybe(node_id, msg, now)
        elif t is RelayRequest:
            self._on_relay_request(node_id, addr, msg, now)
        elif t is RelayReply:
            self._on_relay_reply(node_id, addr, msg, now)
        self._plan(now, node_id, partial=True)

    def on_clear(self, data: bytes, addr, now: float) -> None:
        """An in-the-clear ReachTest: the dial-back we asked for got through unsolicited."""
        try:
            msg = decode_as(ReachTest, data)
        except DecodeError:
            return
        if self._dialback.pop(msg.nonce, None) is not None:
            self.stats["reach_tests_received"] += 1
            if self.transport.has_sent_to(addr):
                # We sent to that very endpoint ourselves: our NAT may have let the test in for that
                # reason alone. Inconclusive: ask again later.
                self.stats["dialback_inconclusive"] += 1
                self._dialback_next = now + 30.0
                return
            if self.nat.set_reachable(True, now):
                self._emit(ReachEvent("reachable unsolicited", "yes"))
                self._changed(now)
            self._plan(now, partial=True)

    def on_dht_event(self, ev: Any, now: float) -> bool:
        """Consume the completion of a DHT operation this engine started; False if it is not ours."""
        op = getattr(ev, "op_id", None)
        if op in self._publishing:
            self._publishing.discard(op)
            return True
        located = self._locating.pop(op, None)
        if located is not None:
            pk = next((r.value for r in getattr(ev, "values", ()) if isinstance(r, ImmutableRecord)
                       and len(r.value) == 32 and node_id_for(r.value) == located), None)
            if pk is not None:
                self.reach_node(pk, now)
            return True
        entry = self._resolving.pop(op, None)
        if entry is None:
            return False
        node_id, public_key = entry
        best = None
        if isinstance(ev, dht_events.LookupDone):
            for rec in ev.values:
                if isinstance(rec, MutableRecord) and rec.public_key == public_key and rec.salt == ENDPOINT_SALT:
                    if best is None or rec.seq > best.seq:
                        best = rec
        value = None
        if best is not None:
            try:
                value = decode_as(EndpointRecord, best.value)
            except DecodeError:
                value = None
        if value is None:
            self.stats["resolve_failed"] += 1
            self._connect_to.pop(node_id, None)
        else:
            self.stats["resolved"] += 1
            if len(self._cache) >= self.MAX_CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[node_id] = (value, now)
            self._apply(node_id, value, now)
        self.transport.await_record(node_id, False)  # read: a handshake still out of Inits ends as it would have
        self._settle_read(node_id, public_key, value, now)
        self._plan(now, node_id, partial=True)
        return True

    # -- timers --------------------------------------------------------------
    def get_timer(self) -> float | None:
        return self._wake

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        if self.relay is not None:
            self.relay.expire(now)
        if cfg.enabled:
            for nonce, deadline in list(self._dialback.items()):
                if deadline <= now:
                    del self._dialback[nonce]
                    if self.nat.reachable is None and self.nat.set_reachable(False, now):
                        self._emit(ReachEvent("reachable unsolicited", "no"))
                        self._changed(now)
            for node_id, (due, pk, force) in sorted(self._resolve_due.items(), key=lambda kv: kv[1][0]):
                if due > now:
                    continue
                cached = self._cache.get(node_id)
                fresh = self._fresh(cached, now) and not force
                if not fresh and len(self._resolving) >= cfg.max_resolving:
                    continue  # wait for a slot
                del self._resolve_due[node_id]
                if not force and self.transport.has_session(node_id):
                    continue  # it answered in the meantime
                if fresh:
                    self._apply(node_id, cached[0], now)
                    self.transport.await_record(node_id, False)
                else:
                    self._start_resolve(node_id, pk, now)
            for node_id in list(self._peers):
                pr = self._peers.get(node_id)
                if pr is not None and self._peer_due(node_id, pr, now) <= now:
                    pr.tended = now
                    self._tend(pr, now)
            if now >= self._own_at:
                self._own_at = now + self.OWN_EVERY
                self._tend_relays(now)
                self._tend_own(now)
            if self._publish_due is not None and now >= self._publish_due:
                self._publish(now)
        self._plan(now)

    def _peer_due(self, node: NodeId, pr: _PeerReach, now: float) -> float:
        """When this peer next needs tending (punch step, heartbeat, keepalive, or a look now and then)."""
        cfg = self.config
        due = float("inf")
        if pr.punch_times:
            due = pr.punch_times[0]
        elif pr.next_punch is not None:
            due = pr.next_punch
        if pr.hb_target is not None:
            due = min(due, pr.hb_sent + pr.hb_wait)
        if node in self._leases or now < pr.kept_until:
            # The next keepalive (a second after the last look at the soonest: one that could not go out waits).
            due = min(due, max(self.transport.last_sent(node) + cfg.keepalive, pr.tended + 1.0))
        elif due == float("inf"):
            due = pr.tended + cfg.keepalive  # looked at now and then, until its session ends
        return due

    def _global_due(self, now: float) -> float:
        cfg = self.config
        times = [self._own_at] if self._first_session is not None else []
        for lease in self._leases.values():
            times.append(min(lease.renew_at, lease.until))
        times.extend(self._asked.values())
        for node_id, (due, _, force) in self._resolve_due.items():
            c = self._cache.get(node_id)
            if len(self._resolving) < cfg.max_resolving or (self._fresh(c, now) and not force):
                times.append(due)
        times.extend(self._dialback.values())
        if self._publish_due is not None:
            times.append(self._publish_due)
        return min(times) if times else float("inf")

    def _plan(self, now: float, node: NodeId | None = None, partial: bool = False) -> None:
        """The next deadline. ``partial``: after an input that touched at most peer ``node``, so only
        its deadlines and the global ones can have moved earlier (handle_timer makes a full pass)."""
        if not self.config.enabled:
            self._wake = None if self.relay is None else now + 60.0
            return
        due = self._global_due(now)
        if partial:
            pr = self._peers.get(node) if node is not None else None
            if pr is not None:
                due = min(due, self._peer_due(node, pr, now))
            if self._wake is not None:
                due = min(due, self._wake)
        else:
            for node, p in self._peers.items():
                due = min(due, self._peer_due(node, p, now))
        # Anything already due was handled by the caller just now; what is left waits at least a tick.
        self._wake = None if due == float("inf") else max(now + 0.001, due)

    # -- per peer ------------------------------------------------------------
    def _peer(self, node_id: NodeId) -> _PeerReach:
        pr = self._peers.get(node_id)
        if pr is None:
            if len(self._peers) >= self.MAX_PEERS:
                # The oldest entry, but never a relay of ours: its keepalives hold our NAT mapping
                # open, and a peer with many identities must not make us drop them.
                self._peers.pop(next(n for n in self._peers if n not in self._leases))
            pr = self._peers[node_id] = _PeerReach(node_id, self.transport.received(node_id))
            cached = self._cache.get(node_id)
            if cached is not None:
                for c in cached[0].candidates:
                    pr.candidates.setdefault(tuple(c.endpoint), "record")
        return pr

    def _tend(self, pr: _PeerReach, now: float) -> None:
        cfg = self.config
        node = pr.node_id
        t = self.transport
        if not t.has_session(node):
            pr.punch_times, pr.next_punch, pr.hb_target = [], None, None
            if now > pr.kept_until and node not in self._leases:
                self._peers.pop(node, None)
            return
        current = t.current_path(node)
        out = t.traffic(node)[1]
        if out - pr.seen_out > pr.own_sent and pr.kept_until > 0.0:
            pr.kept_until = now + cfg.keep_punched  # in use (more than our own probes went out)
        pr.seen_out, pr.own_sent = out, 0
        if pr.punch_times:
            self._punch_tick(pr, now)
        elif pr.next_punch is not None and now >= pr.next_punch:
            pr.next_punch = None
            if self._needs_punch(node, current):
                self._start_punch(pr, now)
        if current is None:
            return
        # Heartbeat: is the path in use still answering?
        p = t.path(node, current)
        last_rx = max(p.last_rx or 0.0, p.confirmed or 0.0)
        sent = t.last_sent(node)
        if pr.hb_target is not None:
            if pr.hb_target != current or last_rx >= pr.hb_sent:
                pr.hb_target = None
            elif now - pr.hb_sent >= pr.hb_wait:
                pr.hb_target = None
                self.stats["paths_dead"] += 1
                self._emit(ReachEvent("path dead", f"{node.text()} at {_short(current)}"))
                t.path_dead(node, current, now)
                if t.current_path(node) == current:
                    # Nothing else known: find the peer's relays, and try its candidates again.
                    pk = t.public_key_of(node)
                    if pk is not None:
                        self._resolve(node, pk, now, urgent=True, force=True)
                    pr.next_punch = now
                return
        elif sent > last_rx and now - last_rx >= cfg.heartbeat:
            self._heartbeat(pr, current, now)
            return
        kept = node in self._leases or now < pr.kept_until
        if kept and now - sent >= cfg.keepalive:
            self._probe(node, current, "keepalive", now)

    #: A path in use that nothing came back on for longer than a peer keeping its NAT open sends
    #: keepalives (``keepalive`` + ``heartbeat``) is stale: the peer's NAT may have forgotten us (it
    #: stopped its keepalives ``keep_punched`` after the session's last use; filters time out after
    #: 30 s to a few minutes). Its heartbeat probe waits STALE_RTTS round trips of that path (at
    #: least STALE_WAIT_MIN), not ``heartbeat``, before the path is declared dead and the session
    #: falls back to a relay, which punches the path open again (docs/reach.md).
    STALE_RTTS = 4
    STALE_WAIT_MIN = 0.25

    def _heartbeat(self, pr: _PeerReach, target, now: float) -> None:
        """Probe the path in use; unanswered after ``pr.hb_wait``, it is dead (``_tend``)."""
        cfg = self.config
        wait = cfg.heartbeat
        p = self.transport.path(pr.node_id, target)
        if p is not None and is_udp(target):
            heard = max(p.last_rx or 0.0, p.confirmed or 0.0)
            # The path's own RTT (a probe of ours answered there), else the peer's (its handshakes):
            # a peer's one path often has no Path record of its own until this probe makes one.
            rtt = p.rtt if p.rtt is not None else self.transport.srtt(pr.node_id)
            if rtt is not None and now - heard >= cfg.keepalive + cfg.heartbeat:
                wait = min(wait, max(self.STALE_WAIT_MIN, self.STALE_RTTS * rtt))
        pr.hb_target, pr.hb_sent, pr.hb_wait = target, now, wait
        self._probe(pr.node_id, target, "heartbeat", now)

    def _start_punch(self, pr: _PeerReach, now: float) -> None:
        if not self.config.punch:
            return
        if not self._fresh(self._cache.get(pr.node_id), now):
            # Its record: relays to fall back on, and its NAT class (a futile punch is not repeated),
            # also when its call-me-maybe came first and named candidates, or the copy we have was
            # read before it had registered with its relay.
            pk = self.transport.public_key_of(pr.node_id)
            if pk is not None:
                self._resolve(pr.node_id, pk, now, urgent=True, force=True)  # read though the session is up
        self.stats["punches"] += 1
        pr.punch_times = [now + d for d in self.config.punch_schedule]
        pr.next_punch = None
        self._send_call_me_maybe(pr, now)
        self._punch_tick(pr, now)

    def _needs_punch(self, node: NodeId, current) -> bool:
        """The session runs through a relay, or on a direct path that stopped answering."""
        if path_kind(current) == RELAY:
            return True
        p = self.transport.path(node, current) if current is not None else None
        return p is not None and p.dead

    def _punch_tick(self, pr: _PeerReach, now: float) -> None:
        node = pr.node_id
        current = self.transport.current_path(node)
        if not self._needs_punch(node, current):
            pr.punch_times = []  # done: the session moved to a working direct path
            return
        while pr.punch_times and pr.punch_times[0] <= now:
            pr.punch_times.pop(0)
            for target in self._targets(pr, now):
                self._probe(node, target, "punch", now)
        if not pr.punch_times:
            self.stats["punch_failed"] += 1
            pr.punch_fails += 1
            if self._futile(pr, now):
                pr.next_punch = None  # both ends filter strangers and one maps per destination: it cannot work
            else:
                pr.next_punch = now + min(self.config.repunch_max,
                                          self.config.repunch * 2 ** (pr.punch_fails - 1))

    def _futile(self, pr: _PeerReach, now: float) -> bool:
        """A plain punch cannot work: both ends drop unsolicited packets, and one maps per destination
        (RFC 5128 section 3.3; the peer's side comes from its endpoint record)."""
        cached = self._cache.get(pr.node_id)
        if cached is None:
            return False
        rec = cached[0]
        ours = self.nat.classify(now)
        both_closed = self.nat.reachable is False and rec.reachable == 2
        return both_closed and NAT_EDM in (ours, rec.nat)

    def _targets(self, pr: _PeerReach, now: float) -> list:
        own = set(self.nat.local) | set(self.nat.reflexive(now))
        return [c for c in list(pr.candidates)[:2 * MAX_CANDIDATES] if c not in own]

    def _send_call_me_maybe(self, pr: _PeerReach, now: float) -> None:
        cands = [e for _, e in self.nat.candidates(now)]
        if self.nat.classify(now) == NAT_EDM:
            # No mapping of ours fits the peer (each destination gets another port), but our NAT's
            # address does: a peer behind an address-restricted NAT that probes it opens its filter
            # to every port of that address, so our probes from the fresh mapping get in and are
            # answered there (a peer-reflexive candidate). The newest mapping: one address, one entry.
            cands = [e for e in self.nat.reflexive(now)[-1:] if e not in cands] + cands
        cands = tuple(cands[:MAX_CANDIDATES])
        if self.transport.send_to(pr.node_id, encode(CallMeMaybe(cands)), now):
            pr.cmm_sent = now
            self.stats["call_me_maybe_sent"] += 1

    def _on_call_me_maybe(self, node_id: NodeId, msg: CallMeMaybe, now: float) -> None:
        self.stats["call_me_maybe_received"] += 1
        if not self.config.enabled:
            return
        pr = self._peer(node_id)
        for e in msg.candidates:
            if len(pr.candidates) >= 2 * MAX_CANDIDATES:
                break
            pr.candidates.setdefault(tuple(e), "callme")
        self.transport.add_paths(node_id, [tuple(e) for e in msg.candidates], "callme", now)
        if not self._needs_punch(node_id, self.transport.current_path(node_id)):
            return
        if now - pr.cmm_sent > 2.0:
            self._send_call_me_maybe(pr, now)
        self.stats["punches"] += 1
        pr.punch_times = [now + d for d in self.config.punch_schedule]
        pr.next_punch = None
        self._punch_tick(pr, now)

    def _reactive_probe(self, node_id: NodeId, addr, now: float) -> None:
        """A probe came in on a direct path we do not use: probe back on it, to confirm it from our side."""
        if not self.config.enabled or path_kind(addr) == RELAY:
            return
        current = self.transport.current_path(node_id)
        if addr == current or not self._needs_punch(node_id, current):
            return
        pr = self._peer(node_id)
        if now - pr.probed.get(addr, -1e18) < 0.05:
            return
        if is_udp(addr):
            pr.candidates.setdefault(tuple(addr), "peer")  # a peer-reflexive candidate (ICE)
        self._probe(node_id, addr, "punch", now)

    #: A direct source of a peer that never answered is probed at most this often (path validation).
    VALIDATE_EVERY = 0.25

    def _on_heard(self, node_id: NodeId, target, now: float) -> None:
        """An authenticated packet from a direct path of a peer that has never answered there (the
        peer's NAT rebound, it moved, or it is punching; or the key holder sent from a spoofed
        source): probe it, paid like any unverified send (``_pay``); once answered, the session moves
        there (``_on_probe_reply``). Runs with reach's active behaviour off too: it is roaming."""
        if node_id == self.node_id or not self.transport.has_session(node_id):
            return
        pr = self._peer(node_id)
        if now - pr.probed.get(target, -1e18) < self.VALIDATE_EVERY:
            return
        self._probe(node_id, target, "validate", now)

    def _probe(self, node_id: NodeId, target, purpose: str, now: float) -> None:
        txid = self._rng.getrandbits(64)
        probe = encode(Probe(txid, bytes(self.PROBE_PAD) if purpose == "punch" else b""))
        cost = len(probe) + self.SEALED
        paid = not self._verified(node_id, target)
        if paid and not self._pay(node_id, target, cost, now, ahead=purpose == "punch"):
            return
        if not self.transport.send_on(node_id, probe, target, now):
            if paid:
                pr = self._peers.get(node_id)
                if pr is not None:
                    pr.paid_bytes -= cost
                    pr.paid_datagrams -= 1
                self.stats["unproven_bytes"] -= cost
                self.stats["unproven_datagrams"] -= 1
        else:
            if len(self._probes) >= self.MAX_PROBES:
                self._probes.pop(next(iter(self._probes)))
            self._probes[txid] = (node_id, target, now, purpose, cost if paid else 0)
            self.stats["probes_sent"] += 1
            pr = self._peers.get(node_id)
            if pr is not None:
                pr.own_sent += 1
                if len(pr.probed) >= 2 * MAX_CANDIDATES:
                    pr.probed.pop(next(iter(pr.probed)))
                pr.probed[target] = now

    def _verified(self, node_id: NodeId, target) -> bool:
        """A path to ``node_id`` that sends reach nothing it has to pay for: the one in use, one an
        answer came back on, a relay (inside our session with it) or a TCP link."""
        if path_kind(target) != DIRECT:
            return True
        t = self.transport
        if target == t.current_path(node_id):
            return True
        p = t.path(node_id, target)
        return p is not None and p.confirmed is not None

    def _pay(self, node_id: NodeId, target, size: int, now: float, ahead: bool = False,
             request: int = 0) -> bool:
        """May we send one datagram of ``size`` bytes to ``target`` for ``node_id``? Free on a
        verified path, and for an answer no larger than the ``request`` datagram that came from
        there (its sender paid for it: one datagram, no more bytes). Otherwise (an address the peer
        named, a source it was only heard from, which it may have spoofed) the peer pays: what it
        sent us since we began keeping its account, less what we sent to such paths (a punch probe,
        ``ahead``, may go UNPAID_BYTES / UNPAID_DATAGRAMS beyond that). Refused: not sent, counted."""
        if self._verified(node_id, target):
            return True
        if size <= request:
            self.stats["unproven_bytes"] += size
            self.stats["unproven_datagrams"] += 1
            return True
        pr = self._peer(node_id)
        got_bytes, got_datagrams = self.transport.received(node_id)
        extra_bytes, extra_datagrams = (self.UNPAID_BYTES, self.UNPAID_DATAGRAMS) if ahead else (0, 0)
        if (pr.paid_bytes + size > got_bytes - pr.in_bytes + extra_bytes
                or pr.paid_datagrams + 1 > got_datagrams - pr.in_datagrams + extra_datagrams):
            self.stats["unpaid_refused"] += 1
            return False
        pr.paid_bytes += size
        pr.paid_datagrams += 1
        self.stats["unproven_bytes"] += size
        self.stats["unproven_datagrams"] += 1
        return True

    def _on_probe_reply(self, node_id: NodeId, addr, msg: ProbeReply, now: float) -> None:
        entry = self._probes.pop(msg.txid, None)
        if entry is None or entry[0] != node_id:
            return
        self.stats["probe_replies"] += 1
        _, target, sent, purpose, cost = entry
        pr = self._peers.get(node_id)
        if cost and pr is not None:
            # The address answered: it is the peer's, and what we sent there is given back.
            pr.paid_bytes = max(0, pr.paid_bytes - cost)
            pr.paid_datagrams = max(0, pr.paid_datagrams - 1)
        before = self.transport.current_path(node_id)
        self.transport.confirm_path(node_id, target, now - sent, now)
        if purpose == "validate" and path_kind(before) == DIRECT:
            # The peer was heard from there and now answers there: follow it (roaming, validated).
            self.transport.follow(node_id, target, now)
        if purpose == "punch" and path_kind(before) == RELAY and path_kind(self.transport.current_path(node_id)) != RELAY:
            self.stats["punch_success"] += 1
        if msg.observed is not None and is_udp(target) and self.config.enabled:
            self._report(target[0], msg.observed, now)

    # -- own endpoints -----------------------------------------------------------
    def _report(self, peer_ip: str, observed, now: float) -> None:
        if self.nat.report(peer_ip, tuple(observed), now):
            self._refresh_at = now  # ask other peers too: is the change ours or only that path's?
            self._changed(now)

    def _want_report(self, peer_ip: str, now: float) -> bool:
        return self.nat.reports(now) < 4 and not self.nat.has_report(peer_ip, now)

    def _tend_own(self, now: float) -> None:
        cfg = self.config
        nat = self.nat
        # Stream-only: sessions exist, all over TCP links (UDP is blocked).
        sessions = self.transport.sessions()
        links = [n for n, ep, _ in sessions if path_kind(ep) == STREAM]
        udp = [n for n, ep, _ in sessions if is_udp(ep)]
        nat.stream_only = bool(links) and not udp
        cls = nat.classify(now)
        if cls != self._last_class:
            self._last_class = cls
            self._emit(ReachEvent("nat", NAT_NAMES[cls]))
            self._changed(now)
        # Keep at least two fresh reflexive reports (from peers at different addresses).
        if now >= self._refresh_at and nat.reports(now) < 2:
            self._refresh_at = now + 30.0
            asked = 0
            for n in udp:
                ep = self.transport.current_path(n)
                self._probe(n, ep, "reflexive", now)
                asked += 1
                if asked >= 3:
                    break
        # Dial-back: are we reachable unsolicited?
        if nat.reachable is None and not self._dialback and now >= self._dialback_next and udp:
            if cls == NAT_UDP_BLOCKED:
                nat.set_reachable(False, now)
            else:
                askers = [n for n in udp if self._no_dialback.get(n, 0.0) <= now]
                if askers:
                    asker = askers[self._rng.getrandbits(16) % len(askers)]
                    nonce = self._rng.getrandbits(64)
                    if self.transport.send_to(asker, encode(RelayRequest(OP_DIALBACK, 0, nonce)), now):
                        self._dialback[nonce] = now + 3.0
                        self._dialback_next = now + 10.0
                        self.stats["dialbacks"] += 1
        elif nat.reachable is not None and nat.reachable_at is not None and \
                now - nat.reachable_at > cfg.dialback_interval:
            nat.reachable = None  # ask again now and then: networks change
        if nat.stream_only and nat.reachable is None:
            nat.set_reachable(False, now)
        # Refresh the record at half its TTL.
        if self._published_at is not None and now - self._published_at >= cfg.record_ttl / 2:
            self._changed(now, force=True)

    def _want_relays(self, now: float) -> bool:
        cfg = self.config
        if cfg.relays <= 0 or self.relay is not None:
            return False
        cls = self.nat.classify(now)
        if cls == NAT_PUBLIC:
            return self.nat.reachable is False  # a firewall in front of a public address
        # Behind any NAT. A dial-back from another port that gets in proves little about strangers
        # at other addresses (an address-restricted NAT lets it in), so a node behind a NAT always
        # keeps relays — once its NAT is known, or when it stays unknown after `settle`.
        if cls != NAT_UNKNOWN:
            return True
        return self._first_session is not None and now - self._first_session >= cfg.settle

    def _tend_relays(self, now: float) -> None:
        cfg = self.config
        for node, deadline in list(self._asked.items()):
            if deadline <= now:
                del self._asked[node]
                self._not_relay[node] = now + 600.0
        for node, lease in list(self._leases.items()):
            if now >= lease.until:
                del self._leases[node]
                self._changed(now)
            elif now >= lease.renew_at:
                lease.renew_at = now + 10.0  # until the renewal is answered
                self.transport.send_to(node, encode(RelayRequest(OP_REGISTER, cfg.lease, 0)), now)
        if not self._want_relays(now):
            return
        need = cfg.relays - len(self._leases) - len(self._asked)
        if need <= 0:
            return
        cands = []
        for n, ep, srtt in self.transport.sessions():
            if n in self._leases or n in self._asked or self._not_relay.get(n, 0.0) > now:
                continue
            kind = path_kind(ep)
            if kind == RELAY:
                continue
            cands.append((0 if kind == STREAM else 1, srtt if srtt is not None else 1.0, n.raw, n))
        cands.sort()
        for *_, n in cands[:need]:
            if self.transport.send_to(n, encode(RelayRequest(OP_REGISTER, cfg.lease, 0)), now):
                self._asked[n] = now + 5.0

    # -- relay control -----------------------------------------------------------
    def _own_public_endpoint(self, now: float):
        """The UDP endpoint others should use for us (for relay references in records)."""
        if self.nat.classify(now) == NAT_PUBLIC:
            return next(iter(e for e in self.nat.local if e[0] not in ("0.0.0.0", "::")), None)
        refl = self.nat.reflexive(now)
        if refl:
            return refl[0]
        return next(iter(e for e in self.nat.local if e[0] not in ("0.0.0.0", "::")), None)

    def _on_relay_request(self, node_id: NodeId, addr, msg: RelayRequest, now: float) -> None:
        t = self.transport
        observed = tuple(addr) if is_udp(addr) else None
        if msg.op == OP_REGISTER:
            if self.relay is None:
                reply = RelayReply(OP_REGISTER, 0, 0, 0, observed, None, "not a relay")
            elif path_kind(addr) == RELAY:
                reply = RelayReply(OP_REGISTER, 0, 0, 0, None, None, "register directly, not through a relay")
            else:
                host = addr[0]
                lease, reason = self.relay.register(node_id, msg.lease, now, host,
                                                    self.transport.admission.exempt.covers(host))
                reply = RelayReply(OP_REGISTER, 1 if lease else 0, lease, 0, observed,
                                   self._own_public_endpoint(now), reason)
            data = encode(reply)
            if self._pay(node_id, addr, len(data) + self.SEALED, now):  # (always larger than the request)
                t.send_on(node_id, data, addr, now)
        elif msg.op == OP_UNREGISTER:
            if self.relay is not None:
                self.relay.unregister(node_id)
        elif msg.op == OP_DIALBACK:
            # RFC 5780's filtering test with CHANGE-PORT: one 10-byte datagram from our second port
            # (one the requester never sent to) to the source we saw, at a bounded rate.
            ok, reason = 0, "no UDP address seen"
            if observed is not None:
                reason = "no alternate port here" if not self.alt_port else "rate limited"
                last = self._dialback_by.get(node_id, -1e18)
                test = encode(ReachTest(msg.nonce))
                if self.alt_port and now - last >= 5.0 and self._pay(node_id, addr, len(test), now) \
                        and self._dialback_budget(now):
                    t.send_clear(test, AltSource(observed[0], observed[1]))
                    ok, reason = 1, ""
                    self.stats["dialback_served"] += 1
                    if len(self._dialback_by) >= self.MAX_PEERS:
                        self._dialback_by.pop(next(iter(self._dialback_by)))
                    self._dialback_by[node_id] = now
            data = encode(RelayReply(OP_DIALBACK, ok, 0, msg.nonce, observed, None, reason))
            if self._pay(node_id, addr, len(data) + self.SEALED, now):  # (always larger than the request)
                t.send_on(node_id, data, addr, now)

    def _dialback_budget(self, now: float) -> bool:
        times = self._dialback_times
        if type(times) is tuple:
            times = self._dialback_times = deque()
        while times and times[0] <= now - 1.0:
            times.popleft()
        if len(times) >= self.DIALBACK_PER_SECOND:
            return False
        times.append(now)
        return True

    def _on_relay_reply(self, node_id: NodeId, addr, msg: RelayReply, now: float) -> None:
        if msg.op == OP_REGISTER:
            asked = self._asked.pop(node_id, None)
            lease = self._leases.get(node_id)
            if asked is None and lease is None:
                return
            if msg.observed is not None and is_udp(addr):
                self._report(addr[0], msg.observed, now)
            if not msg.ok:
                self.stats["relay_refusals"] += 1
                self._not_relay[node_id] = now + 3600.0
                self._own_at = now  # ask another
                if self._leases.pop(node_id, None) is not None:
                    self._changed(now)
                return
            pk = self.transport.public_key_of(node_id)
            ep = tuple(addr) if is_udp(addr) else None
            if msg.endpoint is not None and type(addr) is not Via and tuple(msg.endpoint)[0] == addr[0]:
                # Where the relay asks others to reach it (another port, its UDP one when we reach it
                # over TCP): on its own host only. Our record names it, and everyone who reads the
                # record would send handshakes there: a relay naming another host would aim them all
                # at that host (security.md, item 18).
                ep = tuple(msg.endpoint)
            if pk is None or ep is None:
                return
            new = node_id not in self._leases
            self._leases[node_id] = _Lease(pk, ep, now + msg.lease, now + msg.lease / 2)
            self._peer(node_id)  # tended: keepalives hold the NAT mapping open
            if new:
                self.stats["relay_registrations"] += 1
                self._emit(ReachEvent("relay registered", f"{node_id.text()} at {_short(ep)}"))
                self._changed(now)
                if self.nat.stream_only:
                    # No UDP here: the handshakes already waiting (the join's lookup started them
                    # before this relay took us) can only get through it. Offer them the way now
                    # rather than let them time out.
                    for n in self.transport.pending_handshakes():
                        if n != node_id:
                            self.transport.add_paths(n, [Via((node_id.raw,), n.raw)], "own-relay", now)
        elif msg.op == OP_DIALBACK:
            if msg.nonce in self._dialback and not msg.ok:
                # That peer cannot test us (no second port, or busy): ask another soon.
                del self._dialback[msg.nonce]
                if len(self._no_dialback) >= self.MAX_PEERS:
                    self._no_dialback.pop(next(iter(self._no_dialback)))
                self._no_dialback[node_id] = now + (3600.0 if "alternate" in msg.reason else 60.0)
                self._dialback_next = now + 2.0

    # -- endpoint record ---------------------------------------------------------
    def record(self, now: float) -> EndpointRecord:
        nat = self.nat
        cands = tuple(Candidate(kind, ep) for kind, ep in nat.candidates(now))
        relays = tuple(RelayRef(lease.public_key, lease.endpoint)
                       for _, lease in sorted(self._leases.items(), key=lambda kv: kv[0].raw))[:MAX_RELAYS]
        reach = 0 if nat.reachable is None else (1 if nat.reachable else 2)
        return EndpointRecord(nat.classify(now), reach, cands, relays)

    def _changed(self, now: float, force: bool = False) -> None:
        if not self.config.enabled:
            return
        self._own_at = min(self._own_at, now)  # relays may be wanted now, or no longer
        value = encode(self.record(now))
        if value == self._published and not force:
            return
        earliest = now if self._published_at is None else self._published_at + self.config.publish_min_interval
        due = max(now, earliest)
        if self._publish_due is None or due < self._publish_due:
            self._publish_due = due

    def _publish(self, now: float) -> None:
        self._publish_due = None
        if self._first_session is None or not self.transport.sessions():
            self._publish_due = now + 5.0  # nobody to store it yet
            return
        rec = self.record(now)
        value = encode(rec)
        self._seq = max(self._seq + 1, int(now * 1000))
        record = MutableRecord.create(self.identity, ENDPOINT_SALT, self._seq, self.config.record_ttl, value)
        self._publishing.add(self.dht.put(record, now))
        if self.nat.stream_only:
            # No UDP: no node learns us as a contact (we talk to everyone through a relay), so a
            # lookup for our ID finds nobody. Our public key, stored under our ID (SHA-256 of it:
            # a self-certifying immutable record), lets others read our endpoint record (reach_node).
            self._publishing.add(self.dht.put(ImmutableRecord(self.identity.public_key), now))
        self._published, self._published_at = value, now
        self.stats["records_published"] += 1

    # -- resolution ----------------------------------------------------------------
    def _resolve(self, node_id: NodeId, public_key: bytes, now: float, urgent: bool, force: bool = False,
                 delay: float = 0.0) -> None:
        if node_id == self.node_id:
            return
        due = self._resolve_due.get(node_id)
        if due is not None:
            # Asked for sooner (a user's request): bring the read forward. Forced (the session is up,
            # or the copy failed): a queued read must not be dropped because the session came up.
            if now + delay < due[0] or (force and not due[2]):
                self._resolve_due[node_id] = (min(due[0], now + delay), due[1], due[2] or force)
            self.transport.await_record(node_id, True)
            return
        if any(n == node_id for n, _ in self._resolving.values()):
            self.transport.await_record(node_id, True)  # a new handshake waits for the read under way
            return
        cached = self._cache.get(node_id)
        fresh = self._fresh(cached, now) and not force
        if fresh and delay == 0.0:
            self._apply(node_id, cached[0], now)
            return
        last = self._resolved_at.get(node_id, -1e18)
        if not fresh and now - last < (2.0 if urgent else 10.0):
            # A DHT contact's record is read at most every 10 s, but a handshake that still gets no
            # answer after the record's paths may have read it just before the node registered with
            # its relay (a node that has just joined): one early re-read, or the handshake (10 s)
            # runs out on the stale copy's paths — the first contact between NATed nodes missed.
            if not (force and now - last >= 2.0 and now - self._reread.get(node_id, -1e18) >= 10.0):
                return
            if len(self._reread) >= self.MAX_CACHE:
                self._reread.pop(next(iter(self._reread)))
            self._reread[node_id] = now
        if len(self._resolve_due) >= self.MAX_PEERS:
            return
        self._resolve_due[node_id] = (now + delay, public_key, force)
        # A handshake to a second-hand endpoint would give up after its one Init, perhaps before
        # the record is read: it waits for the record's paths instead (still within its timeout).
        self.transport.await_record(node_id, True)

    def claim(self, node_id: NodeId, source: int, now: float) -> None:
        """A handshake to ``node_id`` goes to an endpoint a DHT reply from ``source`` named (a hint),
        not at our user's request: the Inits its endpoint record earns on paths nobody has heard it
        on are paid from ``source``'s credit (``Dht.pay_for_hint``; docs/security.md, item 19), or not
        sent. A user's request (``want``) ends the claim."""
        if not self.config.enabled or self._wanted.get(node_id, 0.0) > now:
            return
        claimed = self._claimed
        if claimed is None:
            claimed = self._claimed = {}
        elif node_id not in claimed and len(claimed) >= self.MAX_PEERS:
            claimed.pop(next(iter(claimed)))
        claimed[node_id] = source

    def reach_node(self, public_key: bytes, now: float, source: int | None = None) -> None:
        """Reach a node no lookup named (one without UDP, found by its ID record): read its endpoint
        record and start a handshake on the paths it names. ``source``: a hint's, whose source pays
        for what the record earns (``claim``); None: our user's request."""
        node_id = node_id_for(public_key)
        if not self.config.enabled or node_id == self.node_id or self.transport.has_session(node_id):
            return
        if source is None:
            self.want(node_id, now)
        if len(self._connect_to) >= self.MAX_PEERS:
            self._connect_to.pop(next(iter(self._connect_to)))
        self._connect_to[node_id] = public_key
        cached = self._cache.get(node_id)
        if self._fresh(cached, now):
            self._apply(node_id, cached[0], now)
        elif not any(n == node_id for n, _ in self._resolving.values()):
            self._resolve_due.pop(node_id, None)
            self._start_resolve(node_id, public_key, now)
        self._plan(now, node_id, partial=True)

    def locate(self, node_id: NodeId, now: float) -> bool:
        """Reach a node a lookup did not name (private-network traffic to a member, say): read the
        public key it stores under its ID, then go on as ``reach_node``. At most one read per node
        in flight and one every 10 s. False if nothing was started."""
        t = self.transport
        if (not self.config.enabled or node_id == self.node_id or t.has_session(node_id) or t.reaching(node_id)
                or node_id in self._locating.values() or now - self._located_at.get(node_id, -1e18) < 10.0
                or len(self._locating) >= self.config.max_resolving):
            return False
        if len(self._located_at) >= self.MAX_CACHE:
            self._located_at.pop(next(iter(self._located_at)))
        self._located_at[node_id] = now
        self._locating[self.dht.get(node_id.raw, now)] = node_id
        return True

    @staticmethod
    def _provisional(rec: EndpointRecord | None) -> bool:
        """A record published before its node knew itself: its NAT class or whether it is reachable
        unsolicited not learnt yet, or no relay named by a node not reachable unsolicited (it had not
        registered yet). A node publishes its first record at its first session, and the next one
        ``publish_min_interval`` later at the soonest: a peer that met it in between reads the first."""
        return rec is None or rec.nat == NAT_UNKNOWN or rec.reachable == 0 or (not rec.relays and rec.reachable != 1)

    def _fresh(self, cached, now: float) -> bool:
        """A cached record still good to use instead of a read (``resolve_cache``). A provisional one
        (most likely read just after its node joined) is good for ``STALE_CACHE`` seconds only, or every
        handshake to that node in the next minute starts on its paths alone, none of which works, and
        its NAT class reads "unknown" (``weft peers``, /metrics) for a node that knows it."""
        if cached is None:
            return False
        rec, at = cached
        ttl = self.STALE_CACHE if self._provisional(rec) else self.config.resolve_cache
        return now - at < ttl

    def _settle_read(self, node_id: NodeId, public_key: bytes, rec: EndpointRecord | None, now: float,
                     read_at: float | None = None) -> None:
        """After a read (at ``read_at``, now if None), or when a session comes up: if the copy is
        provisional (or there is none) and we have a session with its node, read it again a little
        later (``SETTLE_READS`` times at most, backing off). With the session up nothing else would:
        its punch is tried again only after ``repunch`` (30 s), and a punch between two
        endpoint-dependent NATs is never tried again once both records say so."""
        settling = self._settling
        if not self._provisional(rec):
            if settling is not None:
                settling.pop(node_id, None)
            return
        if not self.config.enabled or not self.transport.has_session(node_id):
            return
        if settling is None:
            settling = self._settling = {}
        n = settling.get(node_id, 0)
        if n >= self.SETTLE_READS or node_id in self._resolve_due or len(self._resolve_due) >= self.MAX_PEERS:
            return
        if node_id not in settling and len(settling) >= self.MAX_CACHE:
            settling.pop(next(iter(settling)))
        settling[node_id] = n + 1
        due = (now if read_at is None else read_at) + self.STALE_CACHE * 2 ** n
        self._resolve_due[node_id] = (max(now, due), public_key, True)

    def _start_resolve(self, node_id: NodeId, public_key: bytes, now: float) -> None:
        if len(self._resolved_at) >= self.MAX_CACHE:
            self._resolved_at.pop(next(iter(self._resolved_at)))
        self._resolved_at[node_id] = now
        self.stats["resolves"] += 1
        op = self.dht.get(endpoint_record_key(public_key), now)
        self._resolving[op] = (node_id, public_key)

    def _own_relay_paths(self, node_id: NodeId) -> list:
        return [Via((r.raw,), node_id.raw) for r in sorted(self._leases, key=lambda n: n.raw) if r != node_id]

    def _apply(self, node_id: NodeId, rec: EndpointRecord, now: float) -> None:
        own = set(self.nat.local) | set(self.nat.reflexive(now))
        targets = []
        pr = self._peer(node_id)
        source = self._claimed.get(node_id) if self._claimed else None
        pay = None if source is None else (lambda endpoint: self.dht.pay_for_hint(endpoint, source, now))
        for c in rec.candidates:
            ep = tuple(c.endpoint)
            if ep in own:
                continue
            pr.candidates.setdefault(ep, "record")
            targets.append(ep)
        own = sorted(self._leases, key=lambda n: n.raw) if self.nat.stream_only else []
        for r in rec.relays:
            rid = node_id_for(r.public_key)
            if rid == self.node_id or rid == node_id:
                continue
            if pay is not None and not self.transport.has_session(rid) and not pay(tuple(r.endpoint)):
                self.stats["claimed_relays_unpaid"] += 1
                continue  # a hint's record names it, and the hint's source cannot pay for its Init
            self.transport.learn_endpoint(r.public_key, tuple(r.endpoint), now)
            targets.append(Via((rid.raw,), node_id.raw))
            # With no UDP of our own, its relay is reached through ours: two hops.
            targets += [Via((mine.raw, rid.raw), node_id.raw) for mine in own if mine != rid]
        if self.nat.stream_only:
            targets += self._own_relay_paths(node_id)
        pk = self._connect_to.pop(node_id, None)
        if pk is not None and targets and not self.transport.handshaking(node_id) \
                and not self.transport.has_session(node_id):
            # Found by its ID record, not by a lookup: no handshake to it yet. Its own record names the
            # paths. Sought for a hint (``claim``): its first Init is the hint's source's to pay, too.
            if pay is None:
                self.transport.connect(targets[0], now, pk)
            else:
                first = next((t for t in targets if type(t) is not tuple or pay(t)), None)
                if first is not None:
                    self.transport.connect(first, now, pk, vouched=False)
        self.transport.add_paths(node_id, targets, "record", now, pay)

    # -- introspection -------------------------------------------------------------
    def status(self, now: float) -> dict[str, Any]:
        d = self.nat.status(now)
        rec = self.record(now)
        d.update({
            "enabled": self.config.enabled,
            "candidates": [f"{_kind_name(c.kind)} {_ep(c.endpoint)}" for c in rec.candidates],
            "relays": [{"node_id": n.text(), "endpoint": _ep(lease.endpoint), "lease_left": round(lease.until - now, 1)}
                       for n, lease in sorted(self._leases.items(), key=lambda kv: kv[0].raw)],
            "record": None if self._published_at is None else {"seq": self._seq,
                                                               "age": round(now - self._published_at, 1),
                                                               "ttl": self.config.record_ttl},
            "keepalive": self.config.keepalive,
            "stats": dict(self.stats),
        })
        if self.relay is not None:
            d["relay"] = self.relay.status(now)
        return d


def _ep(e) -> str:
    h, p = e[0], e[1]
    return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"


def _kind_name(kind: int) -> str:
    return {1: "local", 2: "reflexive"}.get(kind, str(kind))


def _short(target) -> str:
    if type(target) is Via:
        return "relay " + ",".join(NodeId(h).text()[:12] for h in target.hops)
    if type(target) is StreamLink:
        return f"tcp {_ep(target)}"
    return _ep(target) if target is not None else "-"

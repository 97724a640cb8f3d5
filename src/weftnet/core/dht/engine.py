"""The DHT engine: Kademlia, key-based routing and records for one node, sans-IO.

Theory of operation
-------------------
``Dht`` never sees a datagram. Its driver (NodeCore over real sessions, or
the simulator over a latency model) hands it decoded messages together with
the authenticated sender (:meth:`on_message`), tells it when a node could not
be reached (:meth:`on_unreachable`), and collects ``(Contact, Message)``
pairs to send (:meth:`messages_to_send`) and events (:meth:`next_event`).
Time and randomness come in as arguments, so the simulator can run 100,000
of these in one process and replay a run from a seed.

* Every authenticated sender that has proven it receives at its address
  (``verified``) is offered to the routing table (contacts are learned from
  all traffic); a sender whose session is still half-open (early data in a
  handshake) gets answers to FIND_NODE and FIND_VALUE (the transport keeps
  them within the bytes of its Init), while its STORE, routed and
  replication messages wait until it is verified (:meth:`on_verified`).
* Requests (FIND_NODE, FIND_VALUE, STORE) carry a random request ID and a
  deadline of ``srtt + 4·rttvar`` of that contact (RFC 6298's rule, clamped);
  a reply is accepted only from the node asked, with the ID it was asked.
  A timeout counts one failure against the contact; the table evicts after
  ``max_failures`` in a row.
* Lookups are :class:`~weftnet.core.dht.lookup.Lookup` state machines; a put
  is a FIND_NODE of the key followed by STORE to the k closest; a get is a
  FIND_VALUE that validates every record it receives.
* Key-based routing (Dabek et al., "Towards a Common API for Structured
  Peer-to-Peer Overlays", IPTPS 2003): ``route(key, payload)`` forwards
  greedily, each hop strictly closer to the key by XOR, through the
  application's ``forward`` upcall, until no closer node is known; that node
  calls ``deliver``. Trace reports and the acknowledgement travel back
  along the path, hop by hop over sessions that already exist: nothing is
  ever sent to an endpoint a routed message names (docs/security.md, item 4).
* Maintenance runs on one timer: refresh of idle buckets, republishing of
  own records, re-replication of held records (an inventory first, then
  only what a neighbour lacks, with the lifetime the record has left),
  expiry.

Limits against one hostile host (docs/security.md): requests per peer and
per address prefix (token buckets that volume cannot wipe); records per
peer and per prefix, in count and bytes, a TTL cap, and STOREs only for keys
this node is among the k closest known to; an O(log n) index for admission,
expiry and eviction (quota.py); hinted contacts cost their source; the
S/Kademlia ID puzzle for routing-table entries.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from weftnet.core.contact import Addr, Contact
from weftnet.core.dht import events as ev
from weftnet.core.dht.lookup import ANSWERED, CANDIDATE, Candidate, Lookup
from weftnet.core.histogram import LatencyHistogram
from weftnet.core.dht.peers import PeerEstimates
from weftnet.core.dht.messages import (
    BACK_DELIVERED,
    BACK_FAILED,
    BACK_HOP,
    MAX_CONTACTS,
    MAX_OFFER,
    RTT_UNKNOWN,
    FindNear,
    FindNode,
    FindValue,
    Leave,
    NearNodes,
    Nodes,
    OfferItem,
    ReplicaOffer,
    ReplicaWant,
    Replicate,
    Route,
    RouteAck,
    RouteBack,
    RouteHop,
    Store,
    StoreAck,
    Value,
)
from weftnet.core.dht.quota import StoreIndex
from weftnet.core.dht.records import ImmutableRecord, MutableRecord, Record, decode_record
from weftnet.core.dht.routing import ID_BITS, RoutingTable
from weftnet.core.dht.store import MemoryStore, RecordStore, StoredRecord
from weftnet.core.identity import Identity, NodeId, RandomSource
from weftnet.core.limits import NO_ENTRIES, ExemptPrefixes, Gcra, TokenBuckets, address_key, prefix_key
from weftnet.core.puzzle import meets_puzzle
from weftnet.core.wire import Message
from weftnet.errors import RecordError, StorageError

__all__ = ["Dht", "DhtConfig", "KbrApplication"]


@dataclass
class DhtConfig:
    k: int = 20
    alpha: int = 3
    #: S/Kademlia disjoint paths per lookup (1 = plain Kademlia).
    disjoint_paths: int = 1
    max_failures: int = 3
    #: Contacts per IPv4 /24 or IPv6 /48 in one bucket (None = no limit).
    per_prefix: int | None = 2
    #: A bucket none of whose range has talked to us for this long gets a refresh lookup.
    #: 15 min, as Mainline DHT (BEP 5): under churn, 1 h let tables rot (bench/results/sim_churn.md).
    refresh_interval: float = 900.0
    republish_interval: float = 3600.0
    replicate_interval: float = 3600.0
    #: Expiry sweep and idle-bucket check. Reads check expiry themselves, so this
    #: can be coarse: a timer per node per minute is what a large simulation
    #: would spend most of its events on.
    maintenance_interval: float = 600.0
    default_ttl: float = 24 * 3600.0
    #: Request timeouts: RTO of a contact = srtt + 4*rttvar, clamped to these.
    min_rto: float = 0.2
    max_rto: float = 5.0
    initial_rto: float = 2.0
    lookup_timeout: float = 30.0
    route_timeout: float = 10.0
    hop_limit: int = 32
    max_records: int = 100_000
    #: Record bytes held at most (blobs; 100,000 full records would be ~130 MB).
    max_store_bytes: int = 64 * 1024 * 1024
    #: Records one peer (node ID), and one address prefix, may have stored here.
    records_per_peer: int = 1000
    bytes_per_peer: int = 1024 * 1024
    records_per_prefix: int = 4000
    bytes_per_prefix: int = 4 * 1024 * 1024
    #: No record is kept longer than this after it was stored, whatever its TTL says.
    max_ttl: float = 24 * 3600.0
    #: Reads of a mutable record wait for this many copies from the network (not our own)
    #: and return the highest seq, as BEP 44 readers do; a local copy never answers alone.
    mutable_quorum: int = 5
    #: Incoming requests per peer, and per address prefix: token bucket refill rate and burst.
    peer_rate: float = 200.0
    peer_burst: float = 400.0
    prefix_rate: float = 1000.0
    prefix_burst: float = 2000.0
    seen_cache: int = 4096
    #: S/Kademlia static puzzle (core/puzzle.py): leading zero bits a contact's ID hash needs
    #: to enter the routing table. A network parameter; 0 = off (the library default, for
    #: tests and the simulator); the daemon's default is ``runtime.config.DEFAULT_ID_DIFFICULTY``.
    id_difficulty: int = 0
    #: Sources exempt from the per-prefix limits here (CIDR strings). Empty for a real node;
    #: a loopback test lab sets ``weftnet.core.limits.LOOPBACK_LAB``.
    exempt_prefixes: tuple = ()
    #: A request to a contact we only heard of (a hint) costs its source this many bytes of
    #: credit (one HandshakeInit with the request as early data, ~206 bytes: the transport
    #: sends one only to such an endpoint), earned by the bytes of the source's replies and
    #: given back when the hinted contact answers. Each source starts with one (0 = off).
    hint_cost: int = 256
    hint_credit_max: float = 16384.0
    #: Requests to hinted contacts in flight per target address (0 = no limit), and what
    #: one target address may be sent because of hints: a burst of two requests, then one
    #: every four seconds (whatever the number of sources naming it).
    hint_inflight_per_address: int = 2
    hint_target_burst: float = 512.0
    hint_target_rate: float = 64.0
    #: STORE, routed and replication messages held per half-open sender, and senders held.
    held_per_sender: int = 4
    held_senders: int = 256
    #: After the bootstrap lookup, refresh every bucket farther than our own
    #: (Kademlia section 2.3), so a new node's table fills at once. Off: ``join_fill``
    #: does as well for lookup latency with a fraction of the requests (docs/dht.md).
    refresh_on_join: bool = False
    #: Without ``refresh_on_join``: after the bootstrap lookup, each farther bucket
    #: that is not full gets a lookup of a random ID in its range that starts from
    #: the one contact nearest to it and sends at most this many requests (0 = none):
    #: the rest go to nodes its answer named. Whoever answers enters the table (and
    #: learns us): a few live contacts per bucket for a fraction of a full refresh's traffic.
    #: 6 with ``fill_by_rtt`` and ``fill_topup`` (8 nearest first, adding 8, before 2026-11-30's
    #: join round five): 15% fewer datagrams per join at 1,000 nodes in bench/dht (docs/dht.md, "Joining").
    join_fill: int = 6
    #: The fill asks, among the nodes of the bucket it heard of, the one with the lowest expected
    #: RTT first (any of them moves it as far: they share the bucket's prefix), and asks with
    #: FindNear when ``rtt_hints`` is on, so each answer says what its sender measured to the
    #: nodes it names: the contacts a fill adds are near ones, which proximity route selection
    #: then takes as first hops (docs/dht.md, "Joining"). Off: nearest to the fill's target first.
    #: Over 3 h of churn at 2,000 nodes, seeds 1-3, with ``join_fill = 6``: 55 / 13 / 8 lookups
    #: failed against 5 / 45 / 12 for the nearest-first fill of 8, the worst minute 99.33% on
    #: seed 1 only (bench/results/sim_churn.md, 2026-11-30).
    fill_by_rtt: bool = True
    #: The fill tops each farther bucket up to ``join_fill`` contacts (what the join lookup
    #: already put there counts; a bucket that has them gets no request) instead of adding
    #: up to ``join_fill`` to whatever it holds: bench/dht at 1,000 nodes 19.1 -> 16.2 fill
    #: requests and 126 -> 118 datagrams per join; 3 h of churn at 2,000 nodes (seed 1) 22 lookups
    #: failed, worst minute 99.50%, against 55 and 99.33% without it (bench/results/djoin5/dht.md).
    fill_topup: bool = True
    #: Every ``maintenance_interval``, look up our own ID: our current k nearest
    #: hear from us and keep us in their tables. Under churn the nodes that learned
    #: a node at its join leave, and a node none of its live neighbours knows
    #: cannot be found (docs/dht.md, "Churn").
    self_refresh: bool = True
    #: ``leave()`` tells every contact (Leave, 0x30), which drops us from its table at
    #: once and fails what it asked us, instead of timing out on us for minutes.
    say_leave: bool = True
    #: Gets, when the driver says which contacts have a session (``Dht.has_session``):
    #: cold requests (each a handshake) outstanding at once, and the hedge delay
    #: after which one more goes out = ``hedge_rtts`` x the mean smoothed RTT,
    #: clamped to [hedge_min, hedge_max]. See lookup.py, "Cost-aware reads".
    cold_parallel: int = 1
    hedge_rtts: float = 3.0
    hedge_min: float = 0.02
    hedge_max: float = 1.0
    #: Contacts whose RTT estimate and hint credit are kept (the oldest goes first; core/dht/peers.py).
    rtt_cache: int = 4096
    #: Lookup latency (docs/dht.md, "Lookups at Internet latency"); each was
    #: measured on its own in the simulator. A node lookup ends when the node
    #: itself answers:
    stop_at_target: bool = True
    #: Requests in a lookup's first round, before any answer (0: alpha).
    first_round: int = 0
    #: A contact never measured gets the node-wide RTT estimate (mean + 4 x
    #: mean deviation of all samples, clamped to [min_rto, initial_rto]) as
    #: its timeout instead of initial_rto.
    adaptive_rto: bool = True
    #: Proximity neighbour selection: a contact that answers fast takes the
    #: place of a slow (or, if it is near, an unmeasured) one in a full bucket.
    proximity: bool = False
    #: A node that talks to us takes the place of a contact whose last request
    #: failed, in a full bucket (routing.py); off, it waits for the eviction.
    replace_failing: bool = True
    #: Proximity route selection: a lookup asks, among its unasked candidates within
    #: this many bits of progress of the nearest one, the one with the lowest measured
    #: RTT first (never measured: the node's mean RTT). -1 = off (nearest first).
    prs_bits: int = 4
    #: Hedged requests in lookups: a request not answered after this many times its
    #: contact's expected RTT stops counting against alpha, so the next candidate goes
    #: out without waiting for the timeout (0 = off).
    lookup_hedge: float = 0.0
    #: Node lookups ask with FindNear (0x36), whose answer (NearNodes, 0x37) says what
    #: its sender measured to each contact it names; a contact never measured by us is
    #: then expected at (our RTT to the sender + the sender's to it) for ``prs_bits``.
    #: Every node answers FindNear; turn asking on once the whole network does.
    rtt_hints: bool = True
    #: Requests in flight for node lookups (0: ``alpha``): a fourth answers for a
    #: departed contact among the first three, and for a slow one (docs/dht.md,
    #: "Lookups"). Gets, puts, joins and fills keep ``alpha``.
    lookup_alpha: int = 4
    #: Lookup requests (FIND_NODE, FindNear, FIND_VALUE) to a node without a session go as one
    #: sessionless DhtQuery (0x32) answered by one DhtAnswer (0x33), keyed by the static-static DH,
    #: instead of a handshake (core/dht/sessionless.py). Off: every exchange rides a Noise IK
    #: session, which hides the asker's identity on the wire (docs/security.md).
    sessionless: bool = True


class KbrApplication(Protocol):
    """Upcalls of key-based routing. Either may be omitted."""

    def forward(self, key: bytes, payload: bytes, next_hop: Contact) -> Contact | None: ...

    def deliver(self, key: bytes, payload: bytes, origin: Contact) -> None: ...


@dataclass(slots=True)
class _Request:
    rid: int
    key: int  # the contact asked
    op_id: int
    deadline: float
    sent: float
    kind: str
    timed_out: bool = False
    endpoint: Addr | None = None  # where it was sent (a failure counts only against that endpoint)
    hint: tuple | None = None  # (source key, address key) if the contact was only heard of
    data: Any = None  # a ReplicaOffer's items


@dataclass
class _Op:
    op_id: int
    kind: str
    started: float
    deadline: float
    lookup: Lookup | None = None
    record: Record | None = None
    key: bytes = b""
    quorum: int = 1
    mutable_quorum: int = 1
    local: Record | None = None  # get: our own copy, compared but never counted
    pending_stores: set = field(default_factory=set)
    #: STOREs past their RTO, still listened to (a late ack counts: a stalled process or a
    #: slow path is not a refusal) until ``max_rto`` later.
    late_stores: set = field(default_factory=set)
    stored: int = 0
    unanswered: int = 0
    late_acks: int = 0
    refusals: dict = field(default_factory=dict)  # a refusing StoreAck's reason -> count
    # route
    msg_id: int = 0
    trace: bool = False
    hops: dict = field(default_factory=dict)  # hop number -> Hop (reports may arrive in any order)
    hop_count: int = 0
    acked: bool = False  # trace: the ack is in, some hop reports may still be on the way
    hedge_at: float = 0.0  # get: the hedge wake-up already scheduled


class _Stats(dict):
    """Counters that exist once counted: a node that never hit one keeps no slot for it
    (a million simulated nodes each saving the 13 zeros add up); reads of an unseen one give 0."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return 0


_STATS = (
    "requests_sent", "requests_received", "responses", "timeouts", "rate_limited",
    "records_stored", "records_rejected", "records_evicted", "records_expired",
    "routes_forwarded", "routes_delivered", "routes_dropped", "unsolicited",
)


#: What an OrderedDict or dict that was never written answers (one shared read-only object, core/limits.py:
#: most nodes never hold a message, route one, get an offer, reject a message or register an app, and a
#: million simulated nodes would otherwise keep their empty tables each). Writers swap in a real one.
_NO_ENTRIES: Any = NO_ENTRIES


class Dht:
    """One node's DHT. See the module docstring for how to drive it."""

    # Slots: a million of these in the simulator (a dict of 40 attributes is 1.6 KiB each).
    # "__dict__" stays, so a test can still replace a method on one instance.
    __slots__ = ("config", "contact", "node_id", "key", "identity", "_rng", "exempt", "table", "store",
                 "index", "_out", "_events", "_requests", "_timers", "_ops", "_next_op", "_routes",
                 "_route_back", "_peer_limit", "_prefix_limit", "_hint_inflight",
                 "_hint_target", "_hinted", "_held", "_rtt", "_apps", "has_session", "_srtt_mean",
                 "_rttvar_mean", "_maintenance_at", "_republish_at", "_replicate_at", "_wanted", "stats",
                 "reject_reasons", "latency", "__dict__")

    def __init__(
        self,
        contact: Contact,
        rng: RandomSource,
        now: float,
        config: DhtConfig | None = None,
        store: RecordStore | None = None,
        identity: Identity | None = None,
    ):
        self.config = cfg = config or DhtConfig()
        self.contact = contact
        self.node_id: NodeId = contact.node_id
        self.key = contact.key
        self.identity = identity
        self._rng = rng
        self.exempt = ExemptPrefixes.shared(tuple(cfg.exempt_prefixes))
        self.table = RoutingTable(self.key, cfg.k, cfg.max_failures, cfg.per_prefix, cfg.replace_failing,
                                  self.exempt, cfg.id_difficulty)
        self.store: RecordStore = store if store is not None else MemoryStore()
        self.index = StoreIndex(self.key, self.store)
        for r in self.store.records():  # once, at start-up: the store may be a database
            self.index.add(r.key, r.expires, r.own, len(r.blob), r.origin, r.prefix, r.stored_at)
        self._out: list[tuple[Contact, Message]] = []
        self._events: list = []  # a few at a time; an empty deque would be 624 bytes a node
        self._requests: dict[int, _Request] = {}
        self._timers: list[tuple[float, int, int]] = []  # (deadline, kind 0=request 1=op 2=hedge, id)
        self._ops: dict[int, _Op] = {}
        self._next_op = 1
        self._routes: dict[int, int] = _NO_ENTRIES  # route msg_id -> op_id (origin side)
        #: msg_id -> (the contact it came from, or None at the origin; the key it went on to)
        self._route_back: OrderedDict[int, tuple[Contact | None, int]] = _NO_ENTRIES
        # Request limits per peer and per address prefix, one float per busy key (Gcra):
        # bounded, and volume cannot wipe them.
        self._peer_limit = Gcra(cfg.peer_rate, cfg.peer_burst)
        self._prefix_limit = Gcra(cfg.prefix_rate, cfg.prefix_burst)
        self._hint_inflight: dict[str, int] = {}
        self._hint_target = TokenBuckets(cfg.hint_target_rate, cfg.hint_target_burst)
        self._hinted: dict[int, tuple] = {}  # contact key -> (endpoint, source key) of a request to a hint in flight
        self._held: OrderedDict[int, list] = _NO_ENTRIES  # sender key -> [(contact, msg, time, learn)]
        # Per contact that answered: srtt, rttvar and the hint credit, in one slot of one array
        # (core/dht/peers.py); bounded (oldest first out), since every node that ever answered lands
        # here. Each source starts with one request's worth of credit (a small network answers
        # with one or two contacts: their reply alone would not pay for asking them).
        self._rtt = PeerEstimates(cfg.rtt_cache, cfg.hint_cost, cfg.hint_credit_max)
        self._apps: list[Any] | tuple = ()  # a list from the first app
        #: Set by the driver: True if a request to this contact is cheap (an open
        #: session). None (the simulator) means every contact costs the same.
        self.has_session: Any = None
        self._srtt_mean: float | None = None  # over all RTT samples, for the hedge delay
        self._rttvar_mean = 0.0  # their mean deviation, for the timeout of unmeasured contacts
        self._maintenance_at = now + cfg.maintenance_interval
        self._republish_at = now + cfg.republish_interval
        # Holders of one record must not all offer it at the same moment (each would send
        # it to the same newcomer): the first round comes at a random point of the interval.
        self._replicate_at = now + cfg.replicate_interval * (0.5 + rng.random())
        self._wanted: OrderedDict[bytes, float] = _NO_ENTRIES  # keys asked for in a ReplicaWant, when
        self.stats: dict[str, int] = _Stats()
        self.reject_reasons: dict[str, int] = _NO_ENTRIES  # a dict from the first rejection
        #: Duration of every finished operation by kind and outcome (ok, failed, timeout),
        #: when a driver wants it (the daemon does; 100,000 simulated nodes do not).
        self.latency: LatencyHistogram | None = None

    # -- driver surface -------------------------------------------------------
    def set_local_contact(self, contact: Contact) -> None:
        if contact.public_key != self.contact.public_key:
            raise ValueError("the local contact must keep this node's key")
        self.contact = contact

    def register_app(self, app: Any) -> None:
        if type(self._apps) is tuple:
            self._apps = []
        self._apps.append(app)

    def messages_to_send(self) -> list[tuple[Contact, Message]]:
        out, self._out = self._out, []
        return out

    def hint_source(self, contact: Contact) -> int | None:
        """If a message to ``contact`` goes to an endpoint we only heard of (for the transport and
        sessionless queries), the key of the node whose reply named it there; else None."""
        h = self._hinted.get(contact.key)
        return h[1] if h is not None and h[0] == contact.endpoint else None

    def next_event(self):
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        t = self._maintenance_at  # (comparisons, not min(): drivers ask after every pass)
        if self._republish_at < t:
            t = self._republish_at
        if self._replicate_at < t:
            t = self._replicate_at
        timers = self._timers
        # Drop deadlines of requests and operations that already completed, so
        # the driver is not woken for nothing.
        while timers:
            when, kind, ident = timers[0]
            live = self._requests.get(ident) if kind == 0 else self._ops.get(ident)
            if live is not None and (live.deadline == when or kind == 2):
                break
            heapq.heappop(timers)
        if timers and timers[0][0] < t:
            t = timers[0][0]
        return t

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, kind, ident = heapq.heappop(self._timers)
            if kind == 2:
                op = self._ops.get(ident)
                if op is not None:
                    self._advance(op, now)
                continue
            if kind == 0:
                req = self._requests.get(ident)
                if req is None or req.deadline > now:
                    continue
                if req.timed_out:
                    self._drop_request(ident)  # the grace period for a late answer is over
                    if req.kind == "store":
                        op = self._ops.get(req.op_id)
                        if op is not None and req.rid in op.late_stores:
                            op.late_stores.discard(req.rid)
                            self._stores_settled(op, now)
                    continue
                # Count the failure and move the lookup on, but keep listening
                # a while: a late answer is still an answer (a busy peer is not a dead one).
                req.timed_out = True
                req.deadline = now + self.config.max_rto
                heapq.heappush(self._timers, (req.deadline, 0, ident))
                self.stats["timeouts"] += 1
                self._on_request_failed(req, now)
            else:
                op = self._ops.get(ident)
                if op is not None and op.deadline <= now:
                    if op.acked:
                        self._finish(op, now, ok=True)  # a hop's report was lost; the route was not
                    else:
                        self._finish(op, now, ok=False, error="timed out")
        if now >= self._maintenance_at:
            self._maintenance_at = now + self.config.maintenance_interval
            self._maintain(now)
        if now >= self._republish_at:
            self._republish_at = now + self.config.republish_interval
            self._republish(now)
        if now >= self._replicate_at:
            self._replicate_at = now + self.config.replicate_interval
            self._replicate(now)

    def on_unreachable(self, node_id: NodeId, now: float, endpoint: Addr | None = None) -> None:
        """The transport gave up on ``node_id`` at ``endpoint``.

        Only a failure at the endpoint our table has for it counts against the
        contact: a dead address someone else told us about must not evict a
        live contact (docs/security.md, item 4)."""
        key = node_id.int
        self._fail_contact(key, endpoint)
        for rid, req in sorted(self._requests.items()):
            if req.key == key:
                self._drop_request(rid)
                self._on_request_failed(req, now, count_failure=False)

    def on_message(self, sender: Contact, msg: Message, now: float, verified: bool = True,
                   learn: bool = True) -> None:
        """A decoded message from an authenticated sender.

        ``verified``: the sender has proven it receives at ``sender.endpoint``
        (False for early data in a handshake the transport has not confirmed).
        ``learn=False``: answer the sender but keep it out of the routing table (its endpoint
        is not one others could use, e.g. it was heard only through a relay)."""
        skey = sender.key
        t = type(msg)
        if t is Leave:
            self._on_leave(sender, skey, now)
            return
        if verified and learn:
            self.table.add(sender, now, skey)
        if t is Nodes or t is Value or t is StoreAck or t is ReplicaWant or t is NearNodes:
            self._on_response(sender, skey, msg, now)
            return
        if t is RouteAck or t is RouteHop or t is RouteBack:
            self._on_route_report(sender, msg, now)
            return
        if not verified and (t is Store or t is Route or t is Replicate or t is ReplicaOffer):
            self._hold(sender, skey, msg, now, learn)
            return
        if not verified and learn and (t is FindNode or t is FindNear or t is FindValue):
            self._remember_asker(sender, skey, now)
        if not self._allow(sender, skey, now):
            self.stats["rate_limited"] += 1
            return
        self.stats["requests_received"] += 1
        if t is FindNode or t is FindNear or t is FindValue:
            self._out.append((sender, self._lookup_reply(sender, msg, now)))
        elif t is Store:
            self._on_store(sender, msg.rid, msg.record, None, now)
        elif t is Replicate:
            self._on_store(sender, msg.rid, msg.record, float(msg.remaining), now)
        elif t is ReplicaOffer:
            self._on_offer(sender, msg, now)
        elif t is Route:
            self._on_route(sender, msg, now)

    def _on_leave(self, sender: Contact, skey: int, now: float) -> None:
        """The sender is going away: out of the table now (a replacement takes its slot),
        and what we asked it fails at once, so no lookup waits for its timeout."""
        if not self._allow(sender, skey, now):
            self.stats["rate_limited"] += 1
            return
        self.stats["leaves"] += 1
        self.table.remove(skey)
        self._rtt.forget(skey)
        self._held.pop(skey, None)
        for rid, req in sorted(self._requests.items()):
            if req.key == skey and not req.timed_out:
                self._drop_request(rid)
                self._on_request_failed(req, now, count_failure=False)

    def learn(self, contact: Contact, now: float) -> bool:
        """``contact`` proved it receives at its endpoint outside a session (a sessionless query
        that echoed a valid cookie, core/dht/sessionless.py): offer it to the routing table,
        within the same per-peer and per-prefix request quotas as any message. True if it is there."""
        key = contact.key
        if key == self.key or not self._allow(contact, key, now):
            return False
        return self.table.add(contact, now, key)

    def on_reply(self, sender: Contact, msg: Message, now: float, learn: bool) -> None:
        """A reply (Nodes, NearNodes, Value or StoreAck) to one of our requests, from ``sender``, who
        answered outside a session (core/dht/sessionless.py): ``on_message(sender, msg, now,
        verified=learn, learn=learn)`` without the dispatch over every message type."""
        skey = sender.key
        if learn:
            self.table.add(sender, now, skey)
        self._on_response(sender, skey, msg, now)

    def answer(self, sender: Contact, msg: Message, now: float) -> Message | None:
        """The reply to lookup request ``msg`` (FindNode, FindNear or FindValue) from ``sender``, who
        asked outside a session and is not learned from it (core/dht/sessionless.py): what
        ``on_message(sender, msg, now, verified=False, learn=False)`` would queue for it, returned
        instead (no dispatch over every message type, no round trip through what is to be sent).
        None if the per-peer or per-prefix quota refuses it."""
        skey = sender.key
        if not self._allow(sender, skey, now):
            self.stats["rate_limited"] += 1
            return None
        self.stats["requests_received"] += 1
        return self._lookup_reply(sender, msg, now)

    def take_reply(self, key: int, rid: int) -> Message | None:
        """Take the answer to request ``rid`` of contact ``key`` out of what is to be sent (the
        driver seals it itself: core/dht/sessionless.py). None if there is none (rate-limited)."""
        out = self._out
        for i in range(len(out) - 1, -1, -1):
            c, m = out[i]
            if getattr(m, "rid", None) == rid and c.key == key:
                del out[i]
                return m
        return None

    def on_verified(self, node_id: NodeId, now: float) -> None:
        """The transport confirmed ``node_id`` receives at its address: handle what it held."""
        held = self._held.pop(node_id.int, None)
        for contact, msg, at, learn in held or ():
            if now - at > self.config.lookup_timeout:
                continue
            if msg is None:  # it asked us something while half-open: learn it now
                self.table.add(contact, now, node_id.int)
            else:
                self.on_message(contact, msg, now, verified=True, learn=learn)

    def _hold(self, sender: Contact, skey: int, msg: Message, now: float, learn: bool = True) -> None:
        """Keep a message from a half-open sender until it is verified (bounded, oldest out)."""
        cfg = self.config
        if self._held is _NO_ENTRIES:
            self._held = OrderedDict()
        q = self._held.get(skey)
        if q is None:
            if len(self._held) >= cfg.held_senders:
                self._held.popitem(last=False)
            q = self._held[skey] = []
        if len(q) >= cfg.held_per_sender:
            del q[0]
        q.append((sender, msg, now, learn))
        self.stats["held_unverified"] += 1

    def _remember_asker(self, sender: Contact, skey: int, now: float) -> None:
        """A half-open sender's FIND_NODE / FIND_VALUE is answered at once (docs/handshake.md,
        "Return routability") but teaches the table nothing; a marker among its held messages
        (same bounds) adds it to the table when the transport confirms it. Without this, a
        joining node's lookup, whose every first request rides in a handshake, put it in no
        table but its bootstrap peer's."""
        q = self._held.get(skey) if self._held is not _NO_ENTRIES else None
        if q is not None and any(m is None for _c, m, _a, _l in q):
            return
        if self._held is _NO_ENTRIES:
            self._held = OrderedDict()
        if q is None:
            if len(self._held) >= self.config.held_senders:
                self._held.popitem(last=False)
            q = self._held[skey] = []
        if len(q) >= self.config.held_per_sender:
            del q[0]
        q.append((sender, None, now, True))

    # -- API ----------------------------------------------------------------
    def bootstrap(self, contacts: list[Contact], now: float) -> int:
        for c in contacts:
            if c.key != self.key:
                self.table.add(c, now)
        op = self._start_lookup("bootstrap", self.key, now, seed=contacts)
        return op.op_id

    def find_node(self, target: NodeId, now: float) -> int:
        return self._start_lookup("find_node", target.int, now).op_id

    def put(self, record: Record, now: float) -> int:
        key = record.key
        self._store_local(key, record, now, own=True)
        return self._start_lookup("store", int.from_bytes(key, "big"), now, record=record).op_id

    def get(self, key: bytes, now: float, quorum: int | None = None) -> int:
        """Read a record.

        An immutable record is self-certifying: the first valid copy (ours
        included) answers, or ``quorum`` of them, ours counted. A mutable one is not — an older copy, validly
        signed, could be replayed to any holder — so it waits for
        ``quorum`` (default ``mutable_quorum``) copies from *other* nodes and
        returns the highest seq of those and ours (BEP 44's rule). If a newer
        one turns up than ours, ours is replaced (read repair)."""
        cfg = self.config
        op = self._new_op("get", now, cfg.lookup_timeout)
        op.key = key
        op.quorum = max(1, quorum or 1)
        op.mutable_quorum = max(1, quorum if quorum is not None else cfg.mutable_quorum)
        local = self._valid_local(key, now)
        if isinstance(local, ImmutableRecord) and op.quorum <= 1:
            self._complete_get(op, [local], now, hops=0, messages=0)
            return op.op_id
        mutable = isinstance(local, MutableRecord)
        op.local = local if mutable else None
        lk = Lookup(op.op_id, "get", int.from_bytes(key, "big"), now, cfg.k, cfg.alpha, cfg.disjoint_paths,
                    op.mutable_quorum if mutable else op.quorum, self.key, has_session=self.has_session,
                    cold_limit=cfg.cold_parallel, hedge=self._hedge_delay(), first_round=cfg.first_round)
        self._latency_knobs(lk)
        if local is not None and not mutable:
            lk.values.append(local)  # a self-certifying copy counts as ours: one of the quorum
        op.lookup = lk
        lk.seed(self.table.closest(lk.target, self.config.k))
        self._advance(op, now)
        return op.op_id

    def route(self, key: bytes, payload: bytes, now: float, trace: bool = False,
              first_hop: Contact | None = None) -> int:
        op = self._new_op("route", now, self.config.route_timeout)
        op.key, op.trace = key, trace
        op.msg_id = self._rng.getrandbits(64)
        if self._routes is _NO_ENTRIES:
            self._routes = {}
        self._routes[op.msg_id] = op.op_id
        msg = Route(op.msg_id, key, self.contact, 0, self.config.hop_limit, 1 if trace else 0, payload)
        self._forward(msg, now, exclude=None, first_hop=first_hop, prev=None)
        return op.op_id

    def leave(self, now: float) -> int:
        """Hand every held record to the closest other nodes before going away (with the
        lifetime each has left: leaving extends nothing)."""
        op = self._new_op("leave", now, self.config.lookup_timeout)
        for rec in list(self.store.records()):
            left = int(rec.expires - now)
            if left <= 0:
                continue
            target = int.from_bytes(rec.key, "big")
            for c in self.table.closest(target, self.config.k):
                rid = self._request(c, Replicate(0, min(left, 2**32 - 1), rec.blob), op.op_id, now, "store")
                op.pending_stores.add(rid)
        if self.config.say_leave:
            # Then tell every contact (only those with a session, when the driver says
            # which have one: a handshake per contact is not worth a goodbye).
            has = self.has_session
            for c in self.table.contacts():
                if has is None or has(c):
                    self._out.append((c, Leave()))
        if not op.pending_stores:
            self._finish(op, now, ok=True)
        return op.op_id

    # -- introspection ---------------------------------------------------------
    def export_contacts(self) -> list[Contact]:
        return self.table.contacts()

    def import_contacts(self, contacts: list[Contact], now: float) -> None:
        for c in contacts:
            self.table.add(c, now)

    def contact_for(self, node_id: NodeId) -> Contact | None:
        return self.table.get(node_id.int)

    def summary(self) -> dict[str, Any]:
        return {
            "contacts": len(self.table),
            "buckets": len(self.table.buckets),
            "records": len(self.index),
            "record_bytes": self.index.bytes,
            "evictions": self.table.evictions,
            "prefix_refusals": self.table.prefix_refusals,
            "puzzle_refusals": self.table.puzzle_refusals,
            "operations_in_flight": len(self._ops),
            "requests_in_flight": len(self._requests),
            "stats": {k: self.stats[k] for k in _STATS},
            "rejected": dict(sorted(self.reject_reasons.items())),
        }

    # -- requests and RTT -------------------------------------------------------
    def _rto(self, key: int) -> float:
        r = self._rtt.rtt(key)
        cfg = self.config
        if r is None:
            m = self._srtt_mean
            if m is None or not cfg.adaptive_rto:
                return cfg.initial_rto
            return min(cfg.initial_rto, max(cfg.min_rto, m + 4 * self._rttvar_mean))
        return min(cfg.max_rto, max(cfg.min_rto, r[0] + 4 * r[1]))

    def _srtt_of(self, key: int) -> float | None:
        return self._rtt.srtt(key)

    def _hedge_delay(self) -> float:
        cfg = self.config
        if self._srtt_mean is None:
            return cfg.hedge_max
        return min(cfg.hedge_max, max(cfg.hedge_min, cfg.hedge_rtts * self._srtt_mean))

    def _rtt_sample(self, key: int, rtt: float) -> None:
        m = self._srtt_mean
        if m is None:
            self._srtt_mean, self._rttvar_mean = rtt, rtt / 2
        else:
            self._rttvar_mean = 0.9 * self._rttvar_mean + 0.1 * abs(m - rtt)
            self._srtt_mean = 0.9 * m + 0.1 * rtt
        self._rtt.sample(key, rtt)

    def _request(self, contact: Contact, msg: Message | tuple, op_id: int, now: float, kind: str,
                 hint: tuple | None = None, data: Any = None) -> int:
        rid = self._rng.getrandbits(64)
        while rid in self._requests or rid == 0:
            rid = self._rng.getrandbits(64)
        if type(msg) is tuple:  # (class, its one field after rid): built once, with the rid
            msg = msg[0](rid, msg[1])
        else:
            msg = type(msg)(rid, *[getattr(msg, n) for n, _ in msg.FIELDS[1:]])
        key = contact.key
        req = _Request(rid, key, op_id, now + self._rto(key), now, kind, endpoint=contact.endpoint, hint=hint,
                       data=data)
        self._requests[rid] = req
        heapq.heappush(self._timers, (req.deadline, 0, rid))
        if hint is not None:
            self._hinted[key] = (contact.endpoint, hint[0])
        self._out.append((contact, msg))
        self.stats["requests_sent"] += 1
        return rid

    def _drop_request(self, rid: int) -> _Request | None:
        """Forget a request; a hinted one gives back its slot at the target address."""
        requests = self._requests
        req = requests.pop(rid, None)
        if not requests:
            requests.clear()  # a dict keeps the table it grew to until cleared (a join's ~40 requests: 2 KB)
        if req is not None and req.hint is not None:
            self._release_hint(req)
        return req

    def _release_hint(self, req: _Request) -> None:
        _source, where = req.hint
        n = self._hint_inflight.get(where, 0) - 1
        if n > 0:
            self._hint_inflight[where] = n
        else:
            self._hint_inflight.pop(where, None)
        h = self._hinted.get(req.key)
        if h is not None and h[0] == req.endpoint:
            del self._hinted[req.key]
        req.hint = None

    def _on_response(self, sender: Contact, skey: int, msg: Message, now: float) -> None:
        req = self._requests.get(msg.rid)
        if req is None or req.key != skey:
            self.stats["unsolicited"] += 1
            return
        del self._requests[msg.rid]
        if not self._requests:
            self._requests.clear()  # (as in _drop_request)
        if req.hint is not None:
            # The hinted contact answered: it is a willing node, not a victim. Its
            # source, and its address, get back what asking it cost.
            self._rtt.refund(req.hint[0], self.config.hint_cost)
            self._hint_target.refund(req.hint[1], self.config.hint_cost)
            self._release_hint(req)
        self.stats["responses"] += 1
        if not req.timed_out:
            rtt = now - req.sent
            self._rtt_sample(skey, rtt)
            if self.config.proximity:
                assert self._srtt_mean is not None
                self.table.prefer_nearer(sender, rtt, self._srtt_of, 0.5 * self._srtt_mean)
        if type(msg) is ReplicaWant:
            self._on_want(sender, req, msg, now)
            return
        op = self._ops.get(req.op_id)
        if op is None:
            return
        if isinstance(msg, StoreAck):
            op.pending_stores.discard(req.rid)
            if req.timed_out:  # a late ack: its timeout counted it unanswered
                op.late_stores.discard(req.rid)
                op.unanswered -= 1
                op.late_acks += 1
            if msg.ok:
                op.stored += 1
            else:
                reasons = op.refusals
                why = msg.reason[:120] if msg.reason in reasons or len(reasons) < 4 else "other"
                reasons[why] = reasons.get(why, 0) + 1
            self._stores_settled(op, now)
            return
        lk = op.lookup
        if lk is None:
            return
        # What this answer weighed is what the contacts it names may cost us if they
        # never answer (item 6): 11 bytes of header, 39 or 51 per contact.
        if self.config.hint_cost and not self.exempt.everything:  # (if it is, no hint is ever charged)
            size = 11 + sum(39 if ":" not in c.endpoint[0] else 51 for c in msg.contacts)
            if isinstance(msg, Value):
                size += len(msg.record)
            self._rtt.credit(skey, size)
        if isinstance(msg, Value):
            rec = self._validate_blob(msg.record, op.key, sender)
            if rec is not None:
                lk.values.append(rec)
                if isinstance(rec, MutableRecord):
                    lk.quorum = max(lk.quorum, op.mutable_quorum)
        # Contacts heard of are candidates for this lookup only; the table learns
        # a node when it talks to us (the paper's rule), so hearsay cannot fill it.
        via = None
        if type(msg) is NearNodes and lk.rtt_of is not None:
            via = self._via_rtts(skey, msg)
        # A named contact our table holds is asked at the endpoint we learned first-hand;
        # one that fails the ID puzzle is dropped (both only for contacts new to the lookup).
        difficulty = self.config.id_difficulty
        lk.answered(skey, msg.contacts, via, self.table,  # (its by_key is itself); the lookup skips our own contact
                    (lambda c: meets_puzzle(c.node_id, difficulty)) if difficulty else None)
        self._advance(op, now)

    def _via_rtts(self, skey: int, msg: NearNodes) -> dict | None:
        """Expected RTTs of the contacts a NearNodes names: ours to its sender plus its
        own to each (a hint; mismatched lists are ignored and counted)."""
        if len(msg.rtts) != len(msg.contacts):
            self.stats["near_nodes_mismatched"] += 1
            return None
        base = self._srtt_of(skey)
        if base is None:
            return None
        return {c.key: base + r / 10000 for c, r in zip(msg.contacts, msg.rtts) if r != RTT_UNKNOWN}

    def _fail_contact(self, key: int, endpoint: Addr | None) -> None:
        known = self.table.get(key)
        if known is None:
            return
        if endpoint is not None and known.endpoint != endpoint:
            self.stats["failures_not_counted"] += 1  # a second-hand address failed, not the contact
            return
        self.table.fail(key)

    def _on_request_failed(self, req: _Request, now: float, count_failure: bool = True) -> None:
        if req.hint is not None:
            self._release_hint(req)
        if count_failure:
            self._fail_contact(req.key, req.endpoint)
        op = self._ops.get(req.op_id)
        if op is None:
            return
        if req.kind == "store":
            op.pending_stores.discard(req.rid)
            op.unanswered += 1
            if req.timed_out and req.rid in self._requests:
                op.late_stores.add(req.rid)  # still listened to until its grace ends
            self._stores_settled(op, now)
            return
        if op.lookup is not None:
            op.lookup.failed(req.key)
            self._advance(op, now)

    def _stores_settled(self, op: _Op, now: float) -> None:
        """End a put (or leave) once each STORE is acked, refused or past its grace: ok with one
        ack or more, the moment there is one and nothing is pending; failed only when none of the
        nodes asked took the record, saying whether they refused it (and why) or never answered."""
        if op.pending_stores:
            return
        if op.stored > 0:
            if op.late_stores and op.late_acks:
                # Acks are coming in late (the process stalled, or the path slowed): the rest of
                # them are likely right behind. Count those arriving within min_rto (acked:
                # the op's timer then ends it as a success), so the put reports where it is held.
                if not op.acked:
                    op.acked = True
                    op.deadline = min(op.deadline, now + self.config.min_rto)
                    heapq.heappush(self._timers, (op.deadline, 1, op.op_id))
                return
            self._finish(op, now, ok=True)
            return
        if op.late_stores:
            return  # every STORE is past its RTO, none has answered yet: wait for a late ack
        refused = sum(op.refusals.values())
        asked = refused + op.unanswered
        why = "; ".join(f"{r or 'no reason given'} ({n})" for r, n in sorted(op.refusals.items()))
        if refused and op.unanswered:
            error = (f"none of the {asked} nodes asked took the record: {refused} refused it ({why}), "
                     f"{op.unanswered} never answered")
        elif refused:
            error = f"all {asked} nodes asked refused the record: {why}"
        else:
            error = f"none of the {asked} nodes asked to store the record answered"
        self._finish(op, now, ok=False, error=error)

    # -- lookups ------------------------------------------------------------
    def _new_op(self, kind: str, now: float, timeout: float) -> _Op:
        op = _Op(self._next_op, kind, now, now + timeout)
        self._next_op += 1
        self._ops[op.op_id] = op
        heapq.heappush(self._timers, (op.deadline, 1, op.op_id))
        return op

    def _start_lookup(self, kind: str, target: int, now: float, seed: list[Contact] | None = None,
                      record: Record | None = None, budget: int = 0, sources: dict | None = None) -> _Op:
        op = self._new_op(kind, now, self.config.lookup_timeout)
        if record is not None:
            op.record, op.key = record, record.key
        cfg = self.config
        lk = Lookup(op.op_id, kind, target, now, cfg.k, cfg.alpha, cfg.disjoint_paths, 1, self.key,
                    stop_at_target=cfg.stop_at_target and kind == "find_node", first_round=cfg.first_round,
                    budget=budget)
        self._latency_knobs(lk)
        op.lookup = lk
        if kind == "fill":
            # A fill asks only nodes the table does not hold: those the join lookup heard of in
            # the bucket (``seed``), else the table's nearest, whose answer names some.
            lk.skip = self.table.by_key
            initial = list(seed) if seed else self.table.closest(target, 1)
        else:
            initial = self.table.closest(target, 1 if budget else cfg.k)
            if seed:
                initial = list({c.key: c for c in list(seed) + initial}.values())
        lk.seed([c for c in initial if c.key != self.key], sources)
        self._advance(op, now)
        return op

    def _latency_knobs(self, lk: Lookup) -> None:
        """Proximity route selection, RTT hints and hedging, for the lookups someone waits
        for (a node, a record); a fill asks the fastest node of its bucket first (``fill_by_rtt``).
        Joins, refreshes and puts stay nearest first."""
        cfg = self.config
        if (cfg.prs_bits >= 0 or cfg.lookup_hedge) and lk.kind in ("find_node", "get"):
            lk.rtt_of = self._srtt_of
            lk.unknown_rtt = self._srtt_mean or 0.0
            lk.prs_bits = cfg.prs_bits
            lk.hedge_rtts = cfg.lookup_hedge
        elif cfg.fill_by_rtt and lk.kind == "fill":
            lk.rtt_of = self._srtt_of
            lk.unknown_rtt = self._srtt_mean or 0.0
            lk.prs_bits = ID_BITS  # the whole bucket: any of its nodes is as good a first hop by distance
        if cfg.lookup_alpha and lk.kind == "find_node":
            lk.alpha = cfg.lookup_alpha

    def _advance(self, op: _Op, now: float) -> None:
        lk = op.lookup
        if lk is None or op.op_id not in self._ops:
            return
        if lk.finished():
            if not self._reseed(op, lk, now):
                self._lookup_finished(op, now)
            return
        gate = None
        # (With every source exempt the gate would say yes to each candidate: skip it.)
        if (self.config.hint_cost or self.config.hint_inflight_per_address) and not self.exempt.everything:
            gate = lambda cand: self._gate_hint(cand, now)  # noqa: E731
        asks = lk.next_requests(now, gate)
        if asks:
            if op.kind == "get":
                msg: tuple = (FindValue, op.key)
            elif self.config.rtt_hints and lk.rtt_of is not None:
                msg = (FindNear, lk.target.to_bytes(32, "big"))
            else:
                msg = (FindNode, lk.target.to_bytes(32, "big"))
            for cand in asks:
                self._request(cand.contact, msg, op.op_id, now, "lookup", hint=cand.hint_slot)
        if lk.has_session is not None or lk.hedge_rtts:
            hedge = lk.next_hedge(now)
            if hedge is not None and hedge != op.hedge_at:
                op.hedge_at = hedge
                heapq.heappush(self._timers, (hedge, 2, op.op_id))  # wake to send the hedged request
        if not asks and not any(r.op_id == op.op_id and not r.timed_out for r in self._requests.values()):
            if self._reseed(op, lk, now):
                return
            self._lookup_finished(op, now)

    def _reseed(self, op: _Op, lk: Lookup, now: float) -> bool:
        """Every contact the lookup had failed: go on with the next ones of the table.

        The table's nearest contacts to a target are what a lookup starts from;
        when all of them have left (a long-lived node's table under churn), the
        lookup would end with nothing although the table holds more. Up to
        twice, the next k of the table are added and asked.
        """
        if lk.reseeds >= 2 or any(c.state == ANSWERED for c in lk.candidates.values()):
            return False
        lk.reseeds += 1
        before = len(lk.candidates)
        lk.seed(self.table.closest(lk.target, self.config.k * (lk.reseeds + 1)))
        if len(lk.candidates) == before:
            return False
        self._advance(op, now)
        return True

    def _gate_hint(self, cand: Candidate, now: float) -> bool | None:
        """May we ask a contact we only heard of? (docs/security.md, item 6)

        A contact in our table at the same endpoint, or one we have a session
        with, is first-hand: yes. Otherwise the request must fit in its
        source's credit (earned by the bytes of that source's answers, given
        back when the hinted contact answers), and at most
        ``hint_inflight_per_address`` such requests may be in flight to one
        address; otherwise it waits (None), and a lookup whose remaining
        candidates all wait ends with what it has. Exempt prefixes skip both."""
        c = cand.contact
        known = self.table.get(cand.key)
        cand.hint_slot = None
        if known is not None and known.endpoint == c.endpoint:
            return True
        if self.has_session is not None and self.has_session(c):
            return True
        if self.exempt.covers(c.endpoint[0]):
            return True
        cfg = self.config
        where = address_key(c.endpoint[0])
        if cfg.hint_inflight_per_address and self._hint_inflight.get(where, 0) >= cfg.hint_inflight_per_address:
            self.stats["hints_deferred"] += 1
            return None
        if cfg.hint_cost:
            if not self._hint_target.allow(where, now, cfg.hint_cost):
                self.stats["hints_deferred"] += 1
                return None  # this address has had its share for now
            if not self._rtt.allow(cand.source, cfg.hint_cost):
                self._hint_target.refund(where, cfg.hint_cost)
                self.stats["hints_deferred"] += 1
                return None  # until an answer from one of its hints gives the credit back
        self._hint_inflight[where] = self._hint_inflight.get(where, 0) + 1
        cand.hint_slot = (cand.source, where)
        return True

    def may_ask_hint_again(self, contact: Contact, source: int, now: float) -> bool:
        """A sessionless ask to a hint went unanswered: may a second datagram (the handshake's Init)
        go to its endpoint? Nobody vouched for that address, so the second is paid as the first
        was, by the target address's bucket and by the credit of ``source``, the node whose reply
        named it (docs/security.md, item 6); False is counted."""
        if self.pay_for_hint(contact.endpoint, source, now):
            return True
        self.stats["hint_fallbacks_dropped"] += 1
        return False

    def pay_for_hint(self, endpoint, source: int, now: float) -> bool:
        """One datagram to ``endpoint``, an address nobody vouched for that a reply from ``source``
        led us to: paid as a hint's ask is, by the address's bucket and by ``source``'s credit
        (``hint_cost`` each); False, and nothing charged, if either is short. Reach pays the Inits
        a hint's endpoint record earns this way (docs/security.md, item 19)."""
        cfg = self.config
        if not cfg.hint_cost or self.exempt.covers(endpoint[0]):
            return True
        where = address_key(endpoint[0])
        if self._hint_target.allow(where, now, cfg.hint_cost):
            if self._rtt.allow(source, cfg.hint_cost):
                return True
            self._hint_target.refund(where, cfg.hint_cost)
        return False

    def _lookup_finished(self, op: _Op, now: float) -> None:
        lk = op.lookup
        assert lk is not None
        lk.done = True
        if op.kind == "get":
            self._complete_get(op, lk.values, now, lk.hops(), lk.messages)
        elif op.kind == "store":
            targets = lk.closest(self.config.k)
            assert op.record is not None
            blob = op.record.encode()
            for c in targets:
                rid = self._request(c, Store(0, blob), op.op_id, now, "store")
                op.pending_stores.add(rid)
            if not targets:
                # Alone in the overlay: the record is stored here only.
                self._finish(op, now, ok=True, contacts=[], hops=lk.hops(), messages=lk.messages, stored=1)
        else:
            self._finish(op, now, ok=True, contacts=lk.closest(), hops=lk.hops(), messages=lk.messages)
            if op.kind == "bootstrap" and (self.config.refresh_on_join or self.config.join_fill):
                # Contacts the join lookup heard of and never asked (hearsay: asked by the fill,
                # never put in the table unheard). Not listed for a join with no fill (scale-1m's): a
                # scan of every candidate (~130), out of cache by then, for nothing.
                self._fill_after_join(now, [c for c in lk.order if c.state == CANDIDATE])

    def _fill_after_join(self, now: float, heard: list[Candidate] | None = None) -> None:
        """Kademlia section 2.3: a new node refreshes every bucket farther than its
        nearest neighbour (``refresh_on_join``), or, cheaper, sends a few requests
        into each farther bucket that is not full (``join_fill``): at most as many as
        the bucket has free slots, only to nodes the table does not hold yet (asking a
        contact it holds adds nothing), starting from those the join lookup heard of
        in the bucket (``heard``), nearest to the fill's target first. With ``fill_topup``
        a bucket gets only what it lacks of ``join_fill`` contacts."""
        cfg = self.config
        if not cfg.refresh_on_join and not cfg.join_fill:
            return
        table = self.table.by_key
        for b in list(self.table.buckets):
            if b.covers(self.key) or (not cfg.refresh_on_join and len(b.entries) >= cfg.k):
                continue
            target = b.lo + self._rng.getrandbits(256) % (b.hi - b.lo + 1)
            if cfg.refresh_on_join:
                b.touched = now
                self._start_lookup("refresh", target, now)
            else:
                budget = min(cfg.join_fill, cfg.k) - len(b.entries) if cfg.fill_topup \
                    else min(cfg.join_fill, cfg.k - len(b.entries))
                if budget <= 0:
                    continue
                seed = [c for c in heard or () if b.lo <= c.key <= b.hi and c.key not in table]
                self._start_lookup("fill", target, now, seed=[c.contact for c in seed], budget=budget,
                                   sources={c.key: c.source for c in seed if c.source >= 0})

    def _complete_get(self, op: _Op, values: list, now: float, hops: int, messages: int) -> None:
        values = list(values)
        local = op.local
        if isinstance(local, MutableRecord):
            values.append(local)
        ok = bool(values)
        if values and isinstance(values[0], MutableRecord):
            values = sorted(values, key=lambda r: -r.seq)
            best = values[0]
            if isinstance(local, MutableRecord) and best.seq > local.seq:
                self._repair(op.key, best, now)
        self._finish(op, now, ok=ok, values=values, hops=hops, messages=messages,
                     error=None if ok else "not found")

    def _repair(self, key: bytes, rec: MutableRecord, now: float) -> None:
        """A read found a newer copy than ours: hold that one instead (our own records excepted)."""
        existing = self.store.get(key)
        if existing is None or existing.own:
            return
        self._store_local(key, rec, now, own=False, origin=existing.origin, prefix=existing.prefix)

    def _finish(self, op: _Op, now: float, ok: bool, contacts: list | None = None, values: list | None = None,
                hops: int | None = None, messages: int | None = None, stored: int | None = None,
                error: str | None = None) -> None:
        if self._ops.pop(op.op_id, None) is None:
            return
        if not self._ops:
            self._ops.clear()  # (as in _drop_request)
        if self.latency is not None:
            self.latency.observe(op.kind, "ok" if ok else ("timeout" if error == "timed out" else "failed"),
                                 now - op.started)
        for rid in [rid for rid, r in self._requests.items() if r.op_id == op.op_id]:
            self._drop_request(rid)
        lk = op.lookup
        if op.kind == "route":
            self._routes.pop(op.msg_id, None)
            hops = tuple(op.hops[h] for h in sorted(op.hops))
            self._events.append(ev.RouteResult(op.op_id, ok, hops, error, op.hop_count))
            return
        if lk is not None:
            contacts = lk.closest() if contacts is None else contacts
            hops = lk.hops() if hops is None else hops
            messages = lk.messages if messages is None else messages
        stored_n = op.stored if stored is None else stored
        silent = ()
        if lk is not None and op.kind == "find_node":
            silent = tuple(c.contact for c in lk.candidates.values() if c.distance >> 160 == 0 and c.state != ANSWERED)
        self._events.append(ev.LookupDone(
            op.op_id, op.kind, op.key or (lk.target.to_bytes(32, "big") if lk else b""), ok,
            tuple(contacts or ()), tuple(values or ()), messages or 0, hops or 0, now - op.started,
            stored_n, error if error is not None else (None if ok else "failed"),
            sum(op.refusals.values()), op.unanswered, silent,
        ))

    # -- serving requests ---------------------------------------------------
    def _source_prefix(self, sender: Contact) -> str:
        """The sender's address prefix for limits and quotas; "" if exempt."""
        host = sender.endpoint[0]
        return "" if self.exempt.covers(host) else prefix_key(host)

    def _allow(self, sender: Contact, key: int, now: float) -> bool:
        """A token bucket per peer (``peer_rate``/s, burst ``peer_burst``) and one per address
        prefix (``prefix_rate``, ``prefix_burst``), each kept as one float per busy key
        (limits.Gcra): bounded, and no number of identities empties them."""
        if not self._peer_limit.allow(key, now):
            return False
        prefix = self._source_prefix(sender)
        return not prefix or self._prefix_limit.allow(prefix, now)

    def _lookup_reply(self, sender: Contact, msg: Message, now: float) -> Message:
        """The reply to lookup request ``msg`` (FindNode, FindNear or FindValue), in a session
        (:meth:`on_message`) or outside one (:meth:`answer`) alike."""
        t = type(msg)
        if t is FindNear:
            return self._nodes_reply(sender, msg.rid, msg.target, True)
        if t is FindNode:
            return self._nodes_reply(sender, msg.rid, msg.target)
        rec = self.store.get(msg.key)
        if rec is not None and rec.expires > now:
            # The value alone, as in the paper: a reader that wants a quorum
            # still has the rest of its shortlist to ask.
            return Value(msg.rid, rec.blob, ())
        return self._nodes_reply(sender, msg.rid, msg.key)

    def _nodes_reply(self, sender: Contact, rid: int, target: bytes, near: bool = False) -> Nodes:
        # In no particular order: a reader sorts what it receives by its own distance.
        contacts = self.table.closest(int.from_bytes(target, "big"), MAX_CONTACTS, exclude=sender.key,
                                      ordered=False)
        if near:
            srtt = self._rtt.srtt
            hints = tuple([RTT_UNKNOWN if (r := srtt(c.key)) is None
                           else min(RTT_UNKNOWN - 1, int(r * 10000)) for c in contacts])
            return NearNodes(rid, tuple(contacts), hints)
        return Nodes(rid, tuple(contacts))

    def _valid_local(self, key: bytes, now: float) -> Record | None:
        rec = self.store.get(key)
        if rec is None:
            return None
        if rec.expires <= now:
            self._delete(key)
            self.stats["records_expired"] += 1
            return None
        try:
            return decode_record(rec.blob)
        except RecordError:
            self._delete(key)
            return None

    def _delete(self, key: bytes) -> None:
        self.index.remove(key)
        try:
            self.store.delete(key)
        except StorageError:
            self.stats["storage_errors"] += 1

    def _reject(self, reason: str, sender: Contact | None) -> None:
        self.stats["records_rejected"] += 1
        if reason not in self.reject_reasons and len(self.reject_reasons) >= 64:
            reason = "other"  # reasons can carry numbers from a peer: the table stays small
        if self.reject_reasons is _NO_ENTRIES:
            self.reject_reasons = {}
        self.reject_reasons[reason] = self.reject_reasons.get(reason, 0) + 1
        self._events.append(ev.Rejected(reason, sender.node_id if sender else None))

    def _validate_blob(self, blob: bytes, key: bytes | None, sender: Contact | None) -> Record | None:
        try:
            rec = decode_record(blob)
            rec.validate(rec.key if key is None else key)
            return rec
        except RecordError as exc:
            self._reject(str(exc), sender)
            return None

    def _responsible(self, key: bytes, sender: int | None = None) -> bool:
        """Plausibly responsible for ``key``: among the 2k nodes closest to it that we know
        of, the sender aside. (k exactly would refuse the next holders when the current
        ones leave: their tables still list the ones that went. 2k keeps a STORE to the
        neighbourhood of our ID, which is what bounds a flood of arbitrary keys.)"""
        target = int.from_bytes(key, "big")
        n = 2 * self.config.k
        closest = self.table.closest(target, n, exclude=sender, ordered=False)
        return len(closest) < n or self.key ^ target <= max(c.key ^ target for c in closest)

    def _on_store(self, sender: Contact, rid: int, blob: bytes, remaining: float | None, now: float) -> None:
        """A STORE (``remaining`` None: from the publisher, its full TTL) or a Replicate."""
        rec = self._validate_blob(blob, None, sender)
        if rec is None:
            self._out.append((sender, StoreAck(rid, 0, "invalid record")))
            return
        if not self._responsible(rec.key, sender.key):
            self._reject("not among the k closest nodes this node knows for the key", sender)
            self._out.append((sender, StoreAck(rid, 0, "not responsible for this key")))
            return
        ok, reason = self._store_local(rec.key, rec, now, own=False, origin=sender.node_id.raw,
                                       prefix=self._source_prefix(sender), remaining=remaining)
        self._out.append((sender, StoreAck(rid, 1 if ok else 0, reason)))

    def _lifetime(self, rec: Record, remaining: float | None) -> float:
        cfg = self.config
        life = float(rec.ttl) if isinstance(rec, MutableRecord) else cfg.default_ttl
        if remaining is not None:
            life = min(life, remaining)
        return max(0.0, min(life, cfg.max_ttl))

    def _store_local(self, key: bytes, rec: Record, now: float, own: bool, origin: bytes = b"",
                     prefix: str = "", remaining: float | None = None) -> tuple[bool, str]:
        """Admission (quotas, capacity, eviction) in O(log n), then one write."""
        cfg = self.config
        existing = self.store.get(key)
        if existing is not None and existing.expires <= now:
            self._delete(key)
            existing = None
        same = False
        if isinstance(rec, MutableRecord) and existing is not None:
            old = decode_record(existing.blob)
            if isinstance(old, MutableRecord):
                if rec.seq < old.seq:
                    self._reject("older sequence number", None)
                    return False, "older sequence number"
                if rec.seq == old.seq and rec.value != old.value:
                    self._reject("same sequence number, different value", None)
                    return False, "same sequence number, different value"
                same = rec.seq == old.seq
        elif existing is not None:
            same = True  # an immutable record is its key
        blob = rec.encode()
        expires = now + self._lifetime(rec, remaining)
        meta = self.index.get(key)
        if same and existing is not None and not own:
            # The record we hold, again. A holder's replica never extends its life (item 7);
            # a STORE is its publisher's republish, and does. Either way a peer holds it, so
            # replication can skip it this round.
            if meta is not None:
                meta.touched = now
            if remaining is None and expires > existing.expires:
                existing.expires = expires
                try:
                    self.store.put(existing)
                except StorageError:
                    self.stats["storage_errors"] += 1
                    return False, "storage error"
                self.index.add(key, expires, existing.own, len(existing.blob), existing.origin, existing.prefix, now)
            return True, ""
        if existing is None and not own:
            reason = self._over_quota(origin, prefix, len(blob))
            if reason:
                self._reject(reason, None)
                return False, reason
        if existing is None:
            # A newcomer: make room, or refuse it if it is the least useful record.
            while len(self.index) >= cfg.max_records or self.index.bytes + len(blob) > cfg.max_store_bytes:
                if not self._evict_one(key, now, own):
                    return False, "store full"
        keep_own = own or bool(existing and existing.own)
        if not own and existing is not None and existing.own:
            origin, prefix = b"", ""
        try:
            self.store.put(StoredRecord(key, blob, expires, keep_own, rec.seq, now, origin, prefix))
        except StorageError:
            self.stats["storage_errors"] += 1
            return False, "storage error"
        self.index.add(key, expires, keep_own, len(blob), origin, prefix, now)
        self.stats["records_stored"] += 1
        return True, ""

    def _over_quota(self, origin: bytes, prefix: str, size: int) -> str:
        cfg = self.config
        ix = self.index
        if len(ix) < min(cfg.records_per_peer, cfg.records_per_prefix) \
                and ix.bytes + size <= min(cfg.bytes_per_peer, cfg.bytes_per_prefix):
            return ""  # all the store holds is within one source's quota (no source holds more than all of it)
        n_o, b_o, n_p, b_p = ix.usage(origin, prefix)
        if origin and (n_o >= cfg.records_per_peer or b_o + size > cfg.bytes_per_peer):
            return "quota of this peer reached"
        if prefix and (n_p >= cfg.records_per_prefix or b_p + size > cfg.bytes_per_prefix):
            return "quota of this address prefix reached"
        return ""

    def _evict_one(self, incoming: bytes, now: float, incoming_own: bool) -> bool:
        """Eviction policy of store.py, in O(log n): expired first, then the farthest
        record not our own if the newcomer is closer (or ours)."""
        for key in self.index.pop_expired(now, limit=1):
            self._delete(key)
            self.stats["records_expired"] += 1
            return True
        far = self.index.farthest()
        if far is None:
            return False
        victim, dist = far
        if not incoming_own and dist < int.from_bytes(incoming, "big") ^ self.key:
            return False  # the newcomer is the least useful record: refuse it instead
        self._delete(victim)
        self.stats["records_evicted"] += 1
        return True

    # -- replication (item 7) -------------------------------------------------
    def _on_offer(self, sender: Contact, msg: ReplicaOffer, now: float) -> None:
        """Which of the offered records do we lack (or hold older), and should hold?"""
        wanted = 0
        if self._wanted is _NO_ENTRIES:
            self._wanted = OrderedDict()
        asked = self._wanted
        for i, item in enumerate(msg.items):
            meta = self.index.get(item.key)
            if meta is not None and meta.expires > now:
                held = self.store.get(item.key)
                if held is not None and (held.seq or 0) >= item.seq:
                    meta.touched = now  # someone holds it and offers it: no need to offer it ourselves
                    continue
            if now - asked.get(item.key, -1e18) < 2 * self.config.max_rto:
                continue  # already asked another holder for it: one copy is enough
            if self._responsible(item.key, sender.key):
                wanted |= 1 << i
                asked[item.key] = now
                asked.move_to_end(item.key)
                if len(asked) > 4096:
                    asked.popitem(last=False)
        self.stats["replica_offers"] += 1
        self._out.append((sender, ReplicaWant(msg.rid, wanted)))

    def _on_want(self, sender: Contact, req: _Request, msg: ReplicaWant, now: float) -> None:
        items = req.data or ()
        for i, item in enumerate(items):
            if not msg.wanted >> i & 1:
                continue
            rec = self.store.get(item.key)
            if rec is None or rec.expires <= now:
                continue
            left = min(int(rec.expires - now), 2**32 - 1)
            self._request(sender, Replicate(0, left, rec.blob), 0, now, "store")
            self.stats["replicas_sent"] += 1

    def _replicate(self, now: float) -> None:
        """Hourly: offer each record we hold (not our own, not stored or offered to us
        within the last interval) to the k closest nodes we know for its key."""
        interval = self.config.replicate_interval
        offers: dict[int, tuple[Contact, list[OfferItem]]] = {}
        for r in list(self.store.records()):
            if r.own or r.expires <= now:
                continue
            meta = self.index.get(r.key)
            if meta is not None and now - meta.touched < interval:
                continue  # recently stored or offered here: its other holders have it
            target = int.from_bytes(r.key, "big")
            for c in self.table.closest(target, self.config.k):
                entry = offers.get(c.key)
                if entry is None:
                    entry = offers[c.key] = (c, [])
                entry[1].append(OfferItem(r.key, r.seq or 0))
        for contact, items in offers.values():
            for i in range(0, len(items), MAX_OFFER):
                chunk = tuple(items[i:i + MAX_OFFER])
                self._request(contact, ReplicaOffer(0, chunk), 0, now, "offer", data=chunk)

    # -- key-based routing ----------------------------------------------------
    def _remember_route(self, msg_id: int, prev: Contact | None, nxt: int) -> None:
        back = self._route_back
        if back is _NO_ENTRIES:
            back = self._route_back = OrderedDict()
        back[msg_id] = (prev, nxt)
        if len(back) > self.config.seen_cache:
            back.popitem(last=False)

    def _on_route(self, sender: Contact, msg: Route, now: float) -> None:
        if msg.msg_id in self._route_back or msg.msg_id in self._routes:
            self.stats["routes_dropped"] += 1
            return
        # Reports go to the node the message came from (authenticated), never to the
        # origin the message names: that endpoint is the sender's claim.
        if msg.hops >= msg.hop_limit:  # checked before counting: a u8 field never overflows
            self.stats["routes_dropped"] += 1
            self._remember_route(msg.msg_id, sender, -1)
            self._out.append((sender, RouteAck(msg.msg_id, min(255, msg.hops + 1), 0, "hop limit reached")))
            return
        hops = msg.hops + 1
        if msg.flags & 1:
            self._out.append((sender, RouteHop(msg.msg_id, hops)))
        msg = Route(msg.msg_id, msg.key, msg.origin, hops, msg.hop_limit, msg.flags, msg.payload)
        self._forward(msg, now, exclude=sender.key, prev=sender)

    def _next_hop(self, key: bytes, exclude: int | None) -> Contact | None:
        target = int.from_bytes(key, "big")
        best = self.table.closest(target, 1, exclude=exclude)
        if best and best[0].key ^ target < self.key ^ target:
            return best[0]
        return None

    def _forward(self, msg: Route, now: float, exclude: int | None, first_hop: Contact | None = None,
                 prev: Contact | None = None) -> None:
        nxt = first_hop if first_hop is not None else self._next_hop(msg.key, exclude)
        for app in self._apps:
            if nxt is None:
                break
            hook = getattr(app, "forward", None)
            if hook is not None:
                nxt = hook(msg.key, msg.payload, nxt)
        if nxt is not None:
            self.stats["routes_forwarded"] += 1
            self._remember_route(msg.msg_id, prev, nxt.key)
            self._out.append((nxt, msg))
            return
        # No closer node is known: this node is the root for the key.
        self.stats["routes_delivered"] += 1
        self._remember_route(msg.msg_id, prev, -1)
        for app in self._apps:
            hook = getattr(app, "deliver", None)
            if hook is not None:
                hook(msg.key, msg.payload, msg.origin)
        self._events.append(ev.Delivered(msg.key, msg.payload, msg.origin.node_id, msg.hops, msg.origin.public_key))
        if prev is None:
            op = self._ops.get(self._routes.get(msg.msg_id, -1))
            if op is not None:
                self._route_report(op, 0, BACK_DELIVERED, self.contact, "", now)
        else:
            self._out.append((prev, RouteAck(msg.msg_id, msg.hops, 1, "")))

    def _on_route_report(self, sender: Contact, msg: Message, now: float) -> None:
        """A RouteHop or RouteAck from the next hop, or a RouteBack passed along the path."""
        entry = self._route_back.get(msg.msg_id)
        if entry is None or entry[1] != sender.key:
            self.stats["unsolicited"] += 1  # only the node we handed the message to may report on it
            return
        t = type(msg)
        if t is RouteBack:
            back = msg
        elif t is RouteHop:
            back = RouteBack(msg.msg_id, msg.hop, BACK_HOP, sender, "")
        else:
            back = RouteBack(msg.msg_id, msg.hops, BACK_DELIVERED if msg.ok else BACK_FAILED, sender, msg.reason)
        prev = entry[0]
        if prev is not None:
            self._out.append((prev, back))  # on towards the origin, over the session it came by
            return
        op = self._ops.get(self._routes.get(msg.msg_id, -1))
        if op is None:
            self.stats["unsolicited"] += 1
            return
        self._route_report(op, back.hop, back.kind, back.node, back.reason, now)

    def _route_report(self, op: _Op, number: int, kind: int, node: Contact, reason: str, now: float) -> None:
        hop = ev.Hop(node.node_id, node.endpoint, now - op.started)
        if kind == BACK_HOP:
            if op.trace and len(op.hops) < 64:
                op.hops.setdefault(number, hop)
                if op.acked and len(op.hops) >= op.hop_count:
                    self._finish(op, now, ok=True)
            return
        ok = kind == BACK_DELIVERED
        op.hops.setdefault(number, hop)
        op.hop_count = number
        if not op.trace:
            op.hops = {number: op.hops[number]}
        elif ok and len(op.hops) < number:
            # Hop reports travel separately and may still be on their way.
            op.acked = True
            op.deadline = now + 2 * self.config.min_rto
            heapq.heappush(self._timers, (op.deadline, 1, op.op_id))
            return
        self._finish(op, now, ok=ok, error=None if ok else reason)

    # -- maintenance -----------------------------------------------------------
    def _maintain(self, now: float) -> None:
        for key in self.index.pop_expired(now):  # the index knows what expired: no scan
            self._delete(key)
            self.stats["records_expired"] += 1
        if self.config.self_refresh and len(self.table):
            self._start_lookup("refresh", self.key, now)
        for b in self.table.idle_buckets(now, self.config.refresh_interval):
            if not b.entries:
                continue
            target = b.lo + self._rng.getrandbits(256) % (b.hi - b.lo + 1)
            b.touched = now
            self._start_lookup("refresh", target, now)

    def _republish(self, now: float) -> None:
        """Hourly: the publisher stores its own records again (and so keeps them alive)."""
        for r in list(self.store.records()):
            if not r.own or r.expires <= now:
                continue
            try:
                rec = decode_record(r.blob)
            except RecordError:
                continue
            if isinstance(rec, ImmutableRecord):
                r.expires = now + self.config.default_ttl
                try:
                    self.store.put(r)
                except StorageError:
                    self.stats["storage_errors"] += 1
                    continue
                self.index.add(r.key, r.expires, True, len(r.blob), now=now)
            self._start_lookup("store", int.from_bytes(r.key, "big"), now, record=rec)

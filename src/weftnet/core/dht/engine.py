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

* Every authenticated sender is offered to the routing table (contacts are
  learned from all traffic).
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
  calls ``deliver`` and acknowledges to the origin.
* Maintenance runs on one timer: refresh of idle buckets, republishing of
  own records, re-replication of held records, expiry.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from weftnet.core.contact import Contact
from weftnet.core.dht import events as ev
from weftnet.core.histogram import LatencyHistogram
from weftnet.core.dht.lookup import Lookup
from weftnet.core.dht.messages import (
    MAX_CONTACTS,
    FindNode,
    FindValue,
    Nodes,
    Route,
    RouteAck,
    RouteHop,
    Store,
    StoreAck,
    Value,
)
from weftnet.core.dht.records import ImmutableRecord, MutableRecord, Record, decode_record
from weftnet.core.dht.routing import RoutingTable
from weftnet.core.dht.store import MemoryStore, RecordStore, StoredRecord
from weftnet.core.identity import Identity, NodeId, RandomSource
from weftnet.core.wire import Message
from weftnet.errors import RecordError

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
    refresh_interval: float = 3600.0
    republish_interval: float = 3600.0
    replicate_interval: float = 3600.0
    #: Expiry sweep and idle-bucket check. Reads check expiry themselves, so this
    #: can be coarse: a timer per node per minute is what a large simulation
    #: would spend most of its events on.
    maintenance_interval: float = 600.0
    default_ttl: float = 24 * 3600.0
    #: Request timeouts: RTO of a contact = srtt + 4*rttvar, clamped to these.
    min_rto: float = 0.5
    max_rto: float = 5.0
    initial_rto: float = 2.0
    lookup_timeout: float = 30.0
    route_timeout: float = 10.0
    hop_limit: int = 32
    max_records: int = 100_000
    #: Incoming requests per peer: token bucket refill rate and burst.
    peer_rate: float = 200.0
    peer_burst: float = 400.0
    seen_cache: int = 4096
    #: After the bootstrap lookup, refresh every bucket farther than our own
    #: (Kademlia section 2.3), so a new node's table fills at once.
    refresh_on_join: bool = True
    #: Gets, when the driver says which contacts have a session (``Dht.has_session``):
    #: cold requests (each a handshake) outstanding at once, and the hedge delay
    #: after which one more goes out = ``hedge_rtts`` x the mean smoothed RTT,
    #: clamped to [hedge_min, hedge_max]. See lookup.py, "Cost-aware reads".
    cold_parallel: int = 1
    hedge_rtts: float = 3.0
    hedge_min: float = 0.02
    hedge_max: float = 1.0


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
    pending_stores: set = field(default_factory=set)
    stored: int = 0
    store_failed: int = 0
    # route
    msg_id: int = 0
    trace: bool = False
    hops: dict = field(default_factory=dict)  # hop number -> Hop (reports may arrive in any order)
    hop_count: int = 0
    acked: bool = False  # trace: the ack is in, some hop reports may still be on the way
    hedge_at: float = 0.0  # get: the hedge wake-up already scheduled


@dataclass(slots=True)
class _Rtt:
    srtt: float
    rttvar: float


class Dht:
    """One node's DHT. See the module docstring for how to drive it."""

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
        self.key = contact.node_id.int
        self.identity = identity
        self._rng = rng
        self.table = RoutingTable(self.key, cfg.k, cfg.max_failures, cfg.per_prefix)
        self.store: RecordStore = store if store is not None else MemoryStore()
        self._out: list[tuple[Contact, Message]] = []
        self._events: deque = deque()
        self._requests: dict[int, _Request] = {}
        self._timers: list[tuple[float, int, int]] = []  # (deadline, kind 0=request 1=op 2=hedge, id)
        self._ops: dict[int, _Op] = {}
        self._next_op = 1
        self._routes: dict[int, int] = {}  # route msg_id -> op_id (origin side)
        self._seen: dict[int, None] = {}
        self._rtt: dict[int, _Rtt] = {}
        self._buckets: dict[int, list[float]] = {}  # peer key -> [tokens, last]
        self._apps: list[Any] = []
        #: Set by the driver: True if a request to this contact is cheap (an open
        #: session). None (the simulator) means every contact costs the same.
        self.has_session: Any = None
        self._srtt_mean: float | None = None  # over all RTT samples, for the hedge delay
        self._maintenance_at = now + cfg.maintenance_interval
        self._republish_at = now + cfg.republish_interval
        self._replicate_at = now + cfg.replicate_interval
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "requests_sent", "requests_received", "responses", "timeouts", "rate_limited",
                "records_stored", "records_rejected", "records_evicted", "records_expired",
                "routes_forwarded", "routes_delivered", "routes_dropped", "unsolicited",
            ),
            0,
        )
        self.reject_reasons: dict[str, int] = {}
        #: Duration of every finished operation by kind and outcome (ok, failed, timeout),
        #: when a driver wants it (the daemon does; 100,000 simulated nodes do not).
        self.latency: LatencyHistogram | None = None

    # -- driver surface -------------------------------------------------------
    def set_local_contact(self, contact: Contact) -> None:
        if contact.public_key != self.contact.public_key:
            raise ValueError("the local contact must keep this node's key")
        self.contact = contact

    def register_app(self, app: Any) -> None:
        self._apps.append(app)

    def messages_to_send(self) -> list[tuple[Contact, Message]]:
        out, self._out = self._out, []
        return out

    def next_event(self):
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        t = min(self._maintenance_at, self._republish_at, self._replicate_at)
        timers = self._timers
        # Drop deadlines of requests and operations that already completed, so
        # the driver is not woken for nothing.
        while timers:
            when, kind, ident = timers[0]
            live = self._requests.get(ident) if kind == 0 else self._ops.get(ident)
            if live is not None and (live.deadline == when or kind == 2):
                break
            heapq.heappop(timers)
        if timers:
            t = min(t, timers[0][0])
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
                    del self._requests[ident]  # the grace period for a late answer is over
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
            self._republish(now, own=True)
        if now >= self._replicate_at:
            self._replicate_at = now + self.config.replicate_interval
            self._republish(now, own=False)

    def on_unreachable(self, node_id: NodeId, now: float) -> None:
        key = node_id.int
        self.table.fail(key)
        for rid, req in sorted(self._requests.items()):
            if req.key == key:
                del self._requests[rid]
                self._on_request_failed(req, now, count_failure=False)

    def on_message(self, sender: Contact, msg: Message, now: float, learn: bool = True) -> None:
        """``learn=False``: answer the sender but keep it out of the routing table (its endpoint
        is not one others could use, e.g. it was heard only through a relay)."""
        skey = sender.node_id.int
        if learn:
            self.table.add(sender, now, skey)
        t = type(msg)
        if t is Nodes or t is Value or t is StoreAck:
            self._on_response(sender, skey, msg, now)
            return
        if t is RouteAck or t is RouteHop:
            self._on_route_report(sender, msg, now)
            return
        if not self._allow(skey, now):
            self.stats["rate_limited"] += 1
            return
        self.stats["requests_received"] += 1
        if t is FindNode:
            self._reply_nodes(sender, msg.rid, msg.target)
        elif t is FindValue:
            self._on_find_value(sender, msg, now)
        elif t is Store:
            self._on_store(sender, msg, now)
        elif t is Route:
            self._on_route(sender, msg, now)

    # -- API ----------------------------------------------------------------
    def bootstrap(self, contacts: list[Contact], now: float) -> int:
        for c in contacts:
            if c.node_id.int != self.key:
                self.table.add(c, now)
        op = self._start_lookup("bootstrap", self.key, now, seed=contacts)
        return op.op_id

    def find_node(self, target: NodeId, now: float) -> int:
        return self._start_lookup("find_node", target.int, now).op_id

    def put(self, record: Record, now: float) -> int:
        key = record.key
        self._store_local(key, record, now, own=True)
        return self._start_lookup("store", int.from_bytes(key, "big"), now, record=record).op_id

    def get(self, key: bytes, now: float, quorum: int = 1) -> int:
        op = self._new_op("get", now, self.config.lookup_timeout)
        op.key, op.quorum = key, max(1, quorum)
        local = self._valid_local(key, now)
        if local is not None and op.quorum == 1:
            self._complete_get(op, [local], now, hops=0, messages=0)
            return op.op_id
        cfg = self.config
        lk = Lookup(op.op_id, "get", int.from_bytes(key, "big"), now, cfg.k, cfg.alpha, cfg.disjoint_paths,
                    op.quorum, self.key, has_session=self.has_session, cold_limit=cfg.cold_parallel,
                    hedge=self._hedge_delay())
        if local is not None:
            lk.values.append(local)
        op.lookup = lk
        lk.seed(self.table.closest(lk.target, self.config.k))
        self._advance(op, now)
        return op.op_id

    def route(self, key: bytes, payload: bytes, now: float, trace: bool = False,
              first_hop: Contact | None = None) -> int:
        op = self._new_op("route", now, self.config.route_timeout)
        op.key, op.trace = key, trace
        op.msg_id = self._rng.getrandbits(64)
        self._routes[op.msg_id] = op.op_id
        msg = Route(op.msg_id, key, self.contact, 0, self.config.hop_limit, 1 if trace else 0, payload)
        self._remember(op.msg_id)
        self._forward(msg, now, exclude=None, first_hop=first_hop)
        return op.op_id

    def leave(self, now: float) -> int:
        """Hand every held record to the closest other nodes before going away."""
        op = self._new_op("leave", now, self.config.lookup_timeout)
        for rec in list(self.store.records()):
            if rec.expires <= now:
                continue
            target = int.from_bytes(rec.key, "big")
            for c in self.table.closest(target, self.config.k):
                rid = self._request(c, Store(0, rec.blob), op.op_id, now, "store")
                op.pending_stores.add(rid)
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
            "records": len(self.store),
            "evictions": self.table.evictions,
            "operations_in_flight": len(self._ops),
            "requests_in_flight": len(self._requests),
            "stats": dict(self.stats),
            "rejected": dict(sorted(self.reject_reasons.items())),
        }

    # -- requests and RTT -------------------------------------------------------
    def _rto(self, key: int) -> float:
        r = self._rtt.get(key)
        if r is None:
            return self.config.initial_rto
        return min(self.config.max_rto, max(self.config.min_rto, r.srtt + 4 * r.rttvar))

    def _hedge_delay(self) -> float:
        cfg = self.config
        if self._srtt_mean is None:
            return cfg.hedge_max
        return min(cfg.hedge_max, max(cfg.hedge_min, cfg.hedge_rtts * self._srtt_mean))

    def _rtt_sample(self, key: int, rtt: float) -> None:
        m = self._srtt_mean
        self._srtt_mean = rtt if m is None else 0.9 * m + 0.1 * rtt
        r = self._rtt.get(key)
        if r is None:
            self._rtt[key] = _Rtt(rtt, rtt / 2)
        else:
            r.rttvar = 0.75 * r.rttvar + 0.25 * abs(r.srtt - rtt)
            r.srtt = 0.875 * r.srtt + 0.125 * rtt

    def _request(self, contact: Contact, msg: Message, op_id: int, now: float, kind: str) -> int:
        rid = self._rng.getrandbits(64)
        while rid in self._requests or rid == 0:
            rid = self._rng.getrandbits(64)
        msg = type(msg)(rid, *[getattr(msg, n) for n, _ in msg.FIELDS[1:]])
        key = contact.node_id.int
        req = _Request(rid, key, op_id, now + self._rto(key), now, kind)
        self._requests[rid] = req
        heapq.heappush(self._timers, (req.deadline, 0, rid))
        self._out.append((contact, msg))
        self.stats["requests_sent"] += 1
        return rid

    def _on_response(self, sender: Contact, skey: int, msg: Message, now: float) -> None:
        req = self._requests.get(msg.rid)
        if req is None or req.key != skey:
            self.stats["unsolicited"] += 1
            return
        del self._requests[msg.rid]
        self.stats["responses"] += 1
        if not req.timed_out:
            self._rtt_sample(skey, now - req.sent)
        op = self._ops.get(req.op_id)
        if op is None:
            return
        if isinstance(msg, StoreAck):
            op.pending_stores.discard(req.rid)
            if msg.ok:
                op.stored += 1
            else:
                op.store_failed += 1
            if not op.pending_stores:
                self._finish(op, now, ok=op.stored > 0)
            return
        lk = op.lookup
        if lk is None:
            return
        contacts = list(msg.contacts)
        if isinstance(msg, Value):
            rec = self._validate_blob(msg.record, op.key, sender)
            if rec is not None:
                lk.values.append(rec)
        # Contacts heard of are candidates for this lookup only; the table learns
        # a node when it talks to us (the paper's rule), so hearsay cannot fill it.
        lk.answered(skey, contacts)  # the lookup skips our own contact itself
        self._advance(op, now)

    def _on_request_failed(self, req: _Request, now: float, count_failure: bool = True) -> None:
        if count_failure:
            self.table.fail(req.key)
        op = self._ops.get(req.op_id)
        if op is None:
            return
        if req.kind == "store":
            op.pending_stores.discard(req.rid)
            op.store_failed += 1
            if not op.pending_stores:
                self._finish(op, now, ok=op.stored > 0)
            return
        if op.lookup is not None:
            op.lookup.failed(req.key)
            self._advance(op, now)

    # -- lookups ------------------------------------------------------------
    def _new_op(self, kind: str, now: float, timeout: float) -> _Op:
        op = _Op(self._next_op, kind, now, now + timeout)
        self._next_op += 1
        self._ops[op.op_id] = op
        heapq.heappush(self._timers, (op.deadline, 1, op.op_id))
        return op

    def _start_lookup(self, kind: str, target: int, now: float, seed: list[Contact] | None = None,
                      record: Record | None = None) -> _Op:
        op = self._new_op(kind, now, self.config.lookup_timeout)
        if record is not None:
            op.record, op.key = record, record.key
        cfg = self.config
        lk = Lookup(op.op_id, kind, target, now, cfg.k, cfg.alpha, cfg.disjoint_paths, 1, self.key)
        op.lookup = lk
        initial = self.table.closest(target, cfg.k)
        if seed:
            initial = list({c.node_id.int: c for c in list(seed) + initial}.values())
        lk.seed([c for c in initial if c.node_id.int != self.key])
        self._advance(op, now)
        return op

    def _advance(self, op: _Op, now: float) -> None:
        lk = op.lookup
        if lk is None or op.op_id not in self._ops:
            return
        if lk.finished():
            self._lookup_finished(op, now)
            return
        asks = lk.next_requests(now)
        for cand in asks:
            if op.kind == "get":
                msg: Message = FindValue(0, op.key)
            else:
                msg = FindNode(0, lk.target.to_bytes(32, "big"))
            self._request(cand.contact, msg, op.op_id, now, "lookup")
        if lk.has_session is not None:
            hedge = lk.next_hedge(now)
            if hedge is not None and hedge != op.hedge_at:
                op.hedge_at = hedge
                heapq.heappush(self._timers, (hedge, 2, op.op_id))  # wake to send the hedged request
        if not asks and not any(r.op_id == op.op_id and not r.timed_out for r in self._requests.values()):
            self._lookup_finished(op, now)

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
            if op.kind == "bootstrap" and self.config.refresh_on_join:
                for b in list(self.table.buckets):
                    if not b.covers(self.key):
                        b.touched = now
                        target = b.lo + self._rng.getrandbits(256) % (b.hi - b.lo + 1)
                        self._start_lookup("refresh", target, now)

    def _complete_get(self, op: _Op, values: list, now: float, hops: int, messages: int) -> None:
        ok = bool(values)
        if values and isinstance(values[0], MutableRecord):
            values = sorted(values, key=lambda r: -r.seq)
        self._finish(op, now, ok=ok, values=values, hops=hops, messages=messages,
                     error=None if ok else "not found")

    def _finish(self, op: _Op, now: float, ok: bool, contacts: list | None = None, values: list | None = None,
                hops: int | None = None, messages: int | None = None, stored: int | None = None,
                error: str | None = None) -> None:
        if self._ops.pop(op.op_id, None) is None:
            return
        if self.latency is not None:
            self.latency.observe(op.kind, "ok" if ok else ("timeout" if error == "timed out" else "failed"),
                                 now - op.started)
        for rid in [rid for rid, r in self._requests.items() if r.op_id == op.op_id]:
            del self._requests[rid]
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
        self._events.append(ev.LookupDone(
            op.op_id, op.kind, op.key or (lk.target.to_bytes(32, "big") if lk else b""), ok,
            tuple(contacts or ()), tuple(values or ()), messages or 0, hops or 0, now - op.started,
            stored_n, error if error is not None else (None if ok else "failed"),
        ))

    # -- serving requests ---------------------------------------------------
    def _allow(self, key: int, now: float) -> bool:
        cfg = self.config
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) > 10_000:
                self._buckets.clear()  # bounded memory; a fresh start is generous, not unsafe
            b = self._buckets[key] = [cfg.peer_burst, now]
        b[0] = min(cfg.peer_burst, b[0] + (now - b[1]) * cfg.peer_rate)
        b[1] = now
        if b[0] < 1.0:
            return False
        b[0] -= 1.0
        return True

    def _reply_nodes(self, sender: Contact, rid: int, target: bytes) -> None:
        contacts = self.table.closest(int.from_bytes(target, "big"), MAX_CONTACTS, exclude=sender.node_id.int)
        self._out.append((sender, Nodes(rid, tuple(contacts))))

    def _valid_local(self, key: bytes, now: float) -> Record | None:
        rec = self.store.get(key)
        if rec is None:
            return None
        if rec.expires <= now:
            self.store.delete(key)
            self.stats["records_expired"] += 1
            return None
        try:
            return decode_record(rec.blob)
        except RecordError:
            self.store.delete(key)
            return None

    def _on_find_value(self, sender: Contact, msg: FindValue, now: float) -> None:
        rec = self.store.get(msg.key)
        if rec is not None and rec.expires > now:
            # The value alone, as in the paper: a reader that wants a quorum
            # still has the rest of its shortlist to ask.
            self._out.append((sender, Value(msg.rid, rec.blob, ())))
        else:
            self._reply_nodes(sender, msg.rid, msg.key)

    def _reject(self, reason: str, sender: Contact | None) -> None:
        self.stats["records_rejected"] += 1
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

    def _on_store(self, sender: Contact, msg: Store, now: float) -> None:
        rec = self._validate_blob(msg.record, None, sender)
        if rec is None:
            self._out.append((sender, StoreAck(msg.rid, 0, "invalid record")))
            return
        ok, reason = self._store_local(rec.key, rec, now, own=False)
        self._out.append((sender, StoreAck(msg.rid, 1 if ok else 0, reason)))

    def _store_local(self, key: bytes, rec: Record, now: float, own: bool) -> tuple[bool, str]:
        existing = self.store.get(key)
        if isinstance(rec, MutableRecord) and existing is not None and existing.expires > now:
            old = decode_record(existing.blob)
            if isinstance(old, MutableRecord):
                if rec.seq < old.seq:
                    self._reject("older sequence number", None)
                    return False, "older sequence number"
                if rec.seq == old.seq and rec.value != old.value:
                    self._reject("same sequence number, different value", None)
                    return False, "same sequence number, different value"
        ttl = rec.ttl if isinstance(rec, MutableRecord) else self.config.default_ttl
        if existing is None and len(self.store) >= self.config.max_records:
            if not self._evict_one(key, now, own):
                return False, "store full"
        self.store.put(StoredRecord(key, rec.encode(), now + ttl, own or bool(existing and existing.own),
                                    rec.seq, now))
        self.stats["records_stored"] += 1
        return True, ""

    def _evict_one(self, incoming: bytes, now: float, incoming_own: bool) -> bool:
        """Eviction policy of store.py: expired first, then the farthest non-own record."""
        victim, worst = None, -1
        mine = int.from_bytes(incoming, "big") ^ self.key
        for r in self.store.records():
            if r.expires <= now:
                victim = r
                break
            if r.own:
                continue
            d = int.from_bytes(r.key, "big") ^ self.key
            if d > worst:
                victim, worst = r, d
        if victim is None or (victim.expires > now and not incoming_own and worst < mine):
            return False  # the newcomer is the least useful record: refuse it instead
        self.store.delete(victim.key)
        self.stats["records_evicted"] += 1
        return True

    # -- key-based routing ----------------------------------------------------
    def _remember(self, msg_id: int) -> None:
        self._seen[msg_id] = None
        if len(self._seen) > self.config.seen_cache:
            del self._seen[next(iter(self._seen))]

    def _on_route(self, sender: Contact, msg: Route, now: float) -> None:
        if msg.msg_id in self._seen:
            self.stats["routes_dropped"] += 1
            return
        self._remember(msg.msg_id)
        origin = msg.origin
        if sender.node_id == origin.node_id:
            origin = sender  # the endpoint we actually see beats the one it believes it has
        hops = msg.hops + 1
        msg = Route(msg.msg_id, msg.key, origin, hops, msg.hop_limit, msg.flags, msg.payload)
        if msg.flags & 1:
            self._out.append((origin, RouteHop(msg.msg_id, hops)))
        if hops > msg.hop_limit:
            self.stats["routes_dropped"] += 1
            self._out.append((origin, RouteAck(msg.msg_id, hops, 0, "hop limit reached")))
            return
        self._forward(msg, now, exclude=sender.node_id.int)

    def _next_hop(self, key: bytes, exclude: int | None) -> Contact | None:
        target = int.from_bytes(key, "big")
        best = self.table.closest(target, 1, exclude=exclude)
        if best and best[0].node_id.int ^ target < self.key ^ target:
            return best[0]
        return None

    def _forward(self, msg: Route, now: float, exclude: int | None, first_hop: Contact | None = None) -> None:
        nxt = first_hop if first_hop is not None else self._next_hop(msg.key, exclude)
        for app in self._apps:
            if nxt is None:
                break
            hook = getattr(app, "forward", None)
            if hook is not None:
                nxt = hook(msg.key, msg.payload, nxt)
        if nxt is not None:
            self.stats["routes_forwarded"] += 1
            self._out.append((nxt, msg))
            return
        # No closer node is known: this node is the root for the key.
        self.stats["routes_delivered"] += 1
        for app in self._apps:
            hook = getattr(app, "deliver", None)
            if hook is not None:
                hook(msg.key, msg.payload, msg.origin)
        self._events.append(ev.Delivered(msg.key, msg.payload, msg.origin.node_id, msg.hops))
        if msg.origin.node_id == self.node_id:
            self._on_route_report(self.contact, RouteAck(msg.msg_id, 0, 1, ""), now)
        else:
            self._out.append((msg.origin, RouteAck(msg.msg_id, msg.hops, 1, "")))

    def _on_route_report(self, sender: Contact, msg: Message, now: float) -> None:
        op = self._ops.get(self._routes.get(msg.msg_id, -1))
        if op is None:
            self.stats["unsolicited"] += 1
            return
        hop = ev.Hop(sender.node_id, sender.endpoint, now - op.started)
        if isinstance(msg, RouteHop):
            if op.trace and len(op.hops) < 64:
                op.hops.setdefault(msg.hop, hop)
                if op.acked and len(op.hops) >= op.hop_count:
                    self._finish(op, now, ok=True)
            return
        op.hops.setdefault(msg.hops, hop)
        op.hop_count = msg.hops
        if not op.trace:
            op.hops = {msg.hops: op.hops[msg.hops]}
        elif msg.ok and len(op.hops) < msg.hops:
            # Hop reports travel separately and may still be on their way.
            op.acked = True
            op.deadline = now + 2 * self.config.min_rto
            heapq.heappush(self._timers, (op.deadline, 1, op.op_id))
            return
        self._finish(op, now, ok=bool(msg.ok), error=None if msg.ok else msg.reason)

    # -- maintenance -----------------------------------------------------------
    def _maintain(self, now: float) -> None:
        for r in list(self.store.records()):
            if r.expires <= now:
                self.store.delete(r.key)
                self.stats["records_expired"] += 1
        for b in self.table.idle_buckets(now, self.config.refresh_interval):
            if not b.entries:
                continue
            target = b.lo + self._rng.getrandbits(256) % (b.hi - b.lo + 1)
            b.touched = now
            self._start_lookup("refresh", target, now)

    def _republish(self, now: float, own: bool) -> None:
        for r in list(self.store.records()):
            if r.own != own or r.expires <= now:
                continue
            try:
                rec = decode_record(r.blob)
            except RecordError:
                continue
            if own and isinstance(rec, ImmutableRecord):
                r.expires = now + self.config.default_ttl
                self.store.put(r)
            self._start_lookup("store", int.from_bytes(r.key, "big"), now, record=rec)

"""The DHT core: routing table, lookup state machine, records, storage, KBR.

Most tests drive ``Dht`` instances directly over a tiny in-memory network
(``Net`` below): messages are delivered as objects after a seeded latency, so
the DHT logic is tested without sessions or sockets.
"""

from __future__ import annotations

import heapq
import random

import pytest
from hypothesis import given, settings, strategies as st

from weftnet.core import wire
from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore, MutableRecord, decode_record, events
from weftnet.core.dht.lookup import Lookup
from weftnet.core.dht.messages import FindNode, Nodes, Store, StoreAck
from weftnet.core.dht.routing import RoutingTable
from weftnet.core.dht.store import StoredRecord
from weftnet.core.identity import Identity, NodeId
from weftnet.errors import RecordError

T0 = 1_000_000.0


def contact(i: int, host: str | None = None) -> Contact:
    pk = random.Random(i).randbytes(32)
    return Contact(pk, (host or f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 4000))


# -- routing table ---------------------------------------------------------------


def test_table_splits_only_around_own_id_and_keeps_k_per_bucket():
    own = contact(0)
    t = RoutingTable(own.node_id.int, k=4, per_prefix=None)
    for i in range(1, 400):
        t.add(contact(i), T0)
    assert all(len(b.entries) <= 4 for b in t.buckets)
    # Buckets are contiguous and cover the whole space.
    assert t.buckets[0].lo == 0 and t.buckets[-1].hi == 2**256 - 1
    assert all(a.hi + 1 == b.lo for a, b in zip(t.buckets, t.buckets[1:]))
    # Only the bucket holding our ID was ever split: at most one bucket per depth.
    assert len(t.buckets) <= 257
    # The closest contacts to our own ID are all kept (the table is densest near us).
    everyone = sorted((contact(i) for i in range(1, 400)), key=lambda c: c.node_id.int ^ own.node_id.int)
    kept = {c.node_id for c in t.closest(own.node_id.int, 4)}
    assert kept == {c.node_id for c in everyone[:4]}


def test_full_bucket_uses_replacement_cache_and_evicts_only_after_repeated_failures():
    own = contact(0)
    t = RoutingTable(own.node_id.int, k=2, max_failures=3, per_prefix=None)
    far = [c for c in (contact(i) for i in range(1, 200)) if (c.node_id.int ^ own.node_id.int) >> 255][:4]
    for c in far:
        t.add(c, T0)
    bucket = t.bucket_for(far[0].node_id.int)
    assert bucket.entries == far[:2]
    assert far[2] in bucket.replacements and far[3] in bucket.replacements
    assert not t.fail(far[0].node_id.int) and not t.fail(far[0].node_id.int)
    assert far[0].node_id.int in t  # two failures are not enough
    t.add(far[0], T0)  # it answered after all: failures reset
    assert not t.fail(far[0].node_id.int) and not t.fail(far[0].node_id.int)
    assert t.fail(far[0].node_id.int)  # three in a row
    assert far[0].node_id.int not in t
    assert far[3].node_id.int in t  # the most recent replacement took its place


def test_per_prefix_limit_resists_one_address_block_and_exempts_only_what_is_configured():
    """A full bucket gives a block at most ``per_prefix`` slots once other blocks' contacts come;
    one with room takes any (test_dht_prefix.py has the rule, its invariant and the /24 deployment)."""
    own = contact(0)
    sybils = [contact(i, host="127.0.0.1") for i in range(1, 120)]
    others = [contact(5000 + i, host=f"198.51.{i}.9") for i in range(200)]

    def loopback_in_crowded_buckets(t):
        for c in sybils + others:
            t.add(c, T0)
        return [sum(1 for c in b.entries if c.endpoint[0] == "127.0.0.1") for b in t.buckets
                if len(b.entries) == t.k and sum(1 for c in others if b.covers(c.node_id.int)) >= t.k]

    # Nothing is exempt silently: loopback counts like any block...
    crowded = loopback_in_crowded_buckets(RoutingTable(own.node_id.int, k=8, per_prefix=2))
    assert crowded and max(crowded) <= 2
    # ...unless the configuration says so (a local test lab): then nothing displaces it.
    from weftnet.core.limits import LOOPBACK_LAB, ExemptPrefixes

    lab = RoutingTable(own.node_id.int, k=8, per_prefix=2, exempt=ExemptPrefixes(LOOPBACK_LAB))
    crowded = loopback_in_crowded_buckets(lab)
    assert max(crowded) == lab.k


# -- lookup state machine -----------------------------------------------------------


def test_lookup_is_not_lock_step_and_ends_when_k_closest_answered():
    target = 0
    cs = [contact(i) for i in range(1, 40)]
    lk = Lookup(1, "find_node", target, T0, k=5, alpha=3)
    lk.seed(cs[:10])
    first = lk.next_requests()
    assert len(first) == 3  # alpha in flight
    assert lk.next_requests() == []  # nothing more while three are out
    lk.answered(first[0].key, cs[10:20])
    nxt = lk.next_requests()
    assert len(nxt) == 1  # one answer -> exactly one new request, no waiting for a round
    lk.failed(first[1].key)
    assert len(lk.next_requests()) == 1
    # Drive to completion: everyone answers with nothing new.
    for _ in range(100):
        pending = [c for c in lk.candidates.values() if c.state == 1]
        if not pending and lk.finished():
            break
        for c in pending:
            lk.answered(c.key, [])
        lk.next_requests()
    assert lk.finished()
    closest = lk.closest(5)
    known = sorted((c for c in lk.candidates.values() if c.state != 3), key=lambda c: c.distance)[:5]
    assert [c.node_id for c in closest] == [c.contact.node_id for c in known]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lookup_reports_the_nearest_that_answered_and_the_hops_of_the_nearest(seed):
    """What a lookup returns (its closest contacts, its hop count) comes from the nearest
    candidates that answered, whatever became of the others (asked, failed, never asked)."""
    rng = random.Random(seed)
    target = rng.getrandbits(256)
    lk = Lookup(1, "bootstrap", target, T0, k=20, alpha=4)
    assert lk.closest() == [] and lk.hops() == 0
    lk.seed([contact(i) for i in range(1, 8)])
    pool = [contact(i) for i in range(8, 400)]
    for _ in range(40):
        asks = lk.next_requests()
        if not asks:
            break
        for c in asks:
            if rng.random() < 0.2:
                lk.failed(c.key)
            else:
                lk.answered(c.key, rng.sample(pool, 20))
    answered = [c for c in lk.order if c.state == 2]
    assert len(answered) > 20 and any(c.state == 3 for c in lk.order) and any(c.state == 0 for c in lk.order)
    for n in (None, 0, 1, 7, 20, len(answered), 500):
        want = [c.contact for c in answered][: 20 if n is None else n]
        assert lk.closest(n) == want
    assert lk.hops() == answered[0].depth > 1


def test_disjoint_paths_never_share_a_contact():
    cs = [contact(i) for i in range(1, 60)]
    lk = Lookup(1, "find_node", 0, T0, k=5, alpha=2, disjoint=3)
    lk.seed(cs[:9])
    asked = lk.next_requests()
    assert {c.path for c in asked} == {0, 1, 2}
    for c in asked:
        lk.answered(c.key, cs[9 + c.path * 5: 14 + c.path * 5])
    paths = {}
    for c in lk.candidates.values():
        paths.setdefault(c.key, set()).add(c.path)
    assert all(len(p) == 1 for p in paths.values())


def test_value_lookup_keeps_one_handshake_out_and_hedges_the_next():
    cs = sorted((contact(i) for i in range(1, 40)), key=lambda c: c.node_id.int)  # target 0: nearest first
    warm_keys = {c.node_id.int for c in cs[3:]}  # the three nearest have no session
    lk = Lookup(1, "get", 0, T0, k=5, alpha=3, has_session=lambda c: c.node_id.int in warm_keys,
                cold_limit=1, hedge=0.05)
    lk.seed(cs[:10])
    first = lk.next_requests(T0)
    # Nearest first, but only one request that needs a handshake; the warm ones fill alpha.
    assert [c.contact for c in first] == [cs[0], cs[3], cs[4]]
    lk.answered(cs[3].node_id.int, [])
    assert lk.next_requests(T0 + 0.01) == []  # the second cold one waits for the first
    assert lk.next_hedge(T0 + 0.01) == pytest.approx(T0 + 0.05)
    # The first cold request is slow: after the hedge delay the next one goes out.
    assert [c.contact for c in lk.next_requests(T0 + 0.06)] == [cs[1]]
    # An answer (or a failure) frees the slot at once, whatever the hedge.
    lk.failed(cs[1].node_id.int)
    assert [c.contact for c in lk.next_requests(T0 + 0.061)] == [cs[2]]
    # Node lookups ignore the hint: they must hear from the k closest anyway.
    plain = Lookup(2, "find_node", 0, T0, k=5, alpha=3, has_session=lambda c: False)
    plain.seed(cs[:10])
    assert [c.contact for c in plain.next_requests(T0)] == cs[:3]


def test_get_with_session_hint_sends_one_cold_request_then_hedges():
    def reader(warm):
        d = Dht(contact(1), random.Random(1), T0, DhtConfig(per_prefix=None))
        d.import_contacts([contact(i) for i in range(2, 40)], T0)
        d.has_session = warm
        return d

    key = ImmutableRecord(b"x").key
    cold = reader(lambda c: False)
    cold.get(key, T0)
    sent = cold.messages_to_send()
    assert len(sent) == 1 and type(sent[0][1]).__name__ == "FindValue"
    # No RTT measured yet: the hedge is hedge_max; then the second request goes out.
    assert cold.get_timer() == pytest.approx(T0 + cold.config.hedge_max)
    t = T0 + cold.config.hedge_max
    cold.handle_timer(t)
    hedged = cold.messages_to_send()
    assert len(hedged) == 1 and hedged[0][0] != sent[0][0]
    # Once round trips are measured, the hedge is a few of them (here 10 ms -> 30 ms).
    cold.on_message(hedged[0][0], Nodes(hedged[0][1].rid, ()), t + 0.01)
    cold.messages_to_send()
    cold.get(ImmutableRecord(b"y").key, T0 + 2)
    assert len(cold.messages_to_send()) == 1
    assert cold.get_timer() == pytest.approx(T0 + 2 + 3 * 0.01)
    # Over open sessions a get asks alpha contacts at once, as plain Kademlia does.
    warm = reader(lambda c: True)
    warm.get(key, T0)
    assert len(warm.messages_to_send()) == 3


# -- records ---------------------------------------------------------------------


def test_immutable_record_is_content_addressed():
    r = ImmutableRecord(b"hello")
    r.validate(r.key)
    with pytest.raises(RecordError):
        r.validate(bytes(32))
    assert decode_record(r.encode()) == r
    with pytest.raises(RecordError):
        ImmutableRecord(b"x" * 1001)


def test_mutable_record_signature_and_forgery():
    owner = Identity.generate(random.Random(1))
    r = MutableRecord.create(owner, b"salt", 1, 60, b"v1")
    r.validate(r.key)
    forged = MutableRecord(r.public_key, r.salt, 2, r.ttl, b"evil", r.signature)
    with pytest.raises(RecordError, match="signature"):
        forged.validate(r.key)
    other = MutableRecord.create(Identity.generate(random.Random(2)), b"salt", 5, 60, b"x")
    with pytest.raises(RecordError, match="hash to its key"):
        other.validate(r.key)
    with pytest.raises(RecordError):
        decode_record(b"\x01\x29\xff")


# -- many nodes over an in-memory network -----------------------------------------


class Net:
    """Dht instances exchanging message objects with seeded latency (and optional loss)."""

    def __init__(self, n: int, seed: int = 1, k: int = 20, loss: float = 0.0, **cfg):
        self.rng = random.Random(seed)
        self.now = T0
        self.loss = loss
        self.heap: list = []
        self.seq = 0
        self.nodes: dict[int, Dht] = {}
        self.contacts: list[Contact] = []
        self.idents: list[Identity] = []
        self.dead: set[int] = set()
        for i in range(n):
            ident = Identity.generate(random.Random(seed * 100_000 + i))
            c = Contact(ident.public_key, (f"10.{i // 250}.{i % 250}.1", 4000))
            d = Dht(c, random.Random(seed * 7 + i), self.now, DhtConfig(k=k, per_prefix=None, **cfg),
                    MemoryStore(), ident)
            self.nodes[c.node_id.int] = d
            self.contacts.append(c)
            self.idents.append(ident)
        self.events: dict[int, list] = {}

    def dht(self, i: int) -> Dht:
        return self.nodes[self.contacts[i].node_id.int]

    def delay(self, msg) -> float | None:
        """How long ``msg`` takes to arrive; None: it is lost."""
        if self.rng.random() < self.loss:
            return None
        return self.rng.uniform(0.005, 0.05)

    def flush(self, d: Dht) -> None:
        for dst, msg in d.messages_to_send():
            delay = self.delay(msg)
            if delay is None:
                continue
            # Everything crosses the real codec, as it would on the wire.
            data = wire.encode(msg)
            self.seq += 1
            heapq.heappush(self.heap, (self.now + delay, self.seq, d.contact, dst, data))
        ev = self.events.setdefault(d.key, [])
        while (e := d.next_event()) is not None:
            ev.append(e)
        t = d.get_timer()
        if t is not None:
            self.seq += 1
            heapq.heappush(self.heap, (t, self.seq, None, d.contact, None))

    def run(self, until: float) -> None:
        while self.heap and self.heap[0][0] <= until:
            t, _, src, dst, data = heapq.heappop(self.heap)
            self.now = max(self.now, t)
            d = self.nodes.get(dst.node_id.int)
            if d is None or dst.node_id.int in self.dead:
                continue
            if data is None:
                if d.get_timer() is not None and d.get_timer() <= self.now:
                    d.handle_timer(self.now)
                    self.flush(d)
                continue
            d.on_message(src, wire.decode(data), self.now)
            self.flush(d)
        self.now = max(self.now, until)

    def call(self, i: int, fn) -> events.LookupDone:
        d = self.dht(i)
        op = fn(d)
        self.flush(d)
        deadline = self.now + 60
        while self.now < deadline:
            for e in self.events.get(d.key, []):
                if getattr(e, "op_id", None) == op:
                    self.events[d.key].remove(e)
                    return e
            nxt = self.heap[0][0] if self.heap else deadline
            self.run(min(deadline, nxt))
        raise AssertionError("operation never completed")

    def join_all(self) -> None:
        for i in range(1, len(self.contacts)):
            via = self.contacts[self.rng.randrange(i)]
            e = self.call(i, lambda d, via=via: d.bootstrap([via], self.now))
            assert e.ok

    def kill(self, i: int) -> None:
        self.dead.add(self.contacts[i].node_id.int)


@pytest.fixture(scope="module")
def net200():
    net = Net(200, seed=3)
    net.join_all()
    return net


def test_every_node_finds_every_other_by_lookup(net200):
    rng = random.Random(9)
    hops, msgs = [], []
    for _ in range(300):
        a, b = rng.sample(range(200), 2)
        target = net200.contacts[b].node_id
        e = net200.call(a, lambda d: d.find_node(target, net200.now))
        assert e.ok and e.contacts[0].node_id == target
        hops.append(e.hops)
        msgs.append(e.messages)
    assert max(hops) <= 6  # log2(200) ~ 7.6; with k=20 far fewer hops are needed
    assert sum(msgs) / len(msgs) < 60


def test_kbr_reaches_the_node_and_trace_lists_hops(net200):
    rng = random.Random(10)
    for _ in range(200):
        a, b = rng.sample(range(200), 2)
        target = net200.contacts[b]
        e = net200.call(a, lambda d: d.route(target.node_id.raw, b"hi", net200.now, trace=True))
        assert e.ok, e
        assert e.hops[-1].node_id == target.node_id
        assert e.hop_count == len(e.hops) >= 1
        delivered = [x for x in net200.events[target.node_id.int] if isinstance(x, events.Delivered)]
        assert delivered and delivered[-1].payload == b"hi"


def test_kbr_forward_upcall_can_redirect_and_drop(net200):
    d0 = net200.dht(0)
    detour = net200.contacts[7]
    seen = []

    class App:
        def forward(self, key, payload, next_hop):
            seen.append(next_hop)
            return None if payload == b"drop" else detour

        def deliver(self, key, payload, origin):
            pass

    app = App()
    d0.register_app(app)
    try:
        target = net200.contacts[150].node_id
        e = net200.call(0, lambda d: d.route(target.raw, b"via 7", net200.now, trace=True))
        assert seen and e.hops[0].node_id == detour.node_id  # the first hop is the application's choice
        e = net200.call(0, lambda d: d.route(target.raw, b"drop", net200.now))
        # Dropping at the origin means this node delivers to itself: it is the root now.
        assert e.ok and e.hops[-1].node_id == d0.node_id
    finally:
        d0._apps.remove(app)


def test_hop_limit_holds(net200):
    d = net200.dht(0)
    target = net200.contacts[120].node_id
    old = d.config.hop_limit
    d.config.hop_limit = 0
    try:
        e = net200.call(0, lambda d: d.route(target.raw, b"x", net200.now))
        if e.hop_count:  # the target was not our direct neighbour
            assert not e.ok and "hop limit" in e.error
    finally:
        d.config.hop_limit = old


def test_put_get_and_survival_after_30_percent_crash():
    net = Net(200, seed=4)
    net.join_all()
    rng = random.Random(4)
    keys = []
    for i in range(60):
        v = rng.randbytes(40)
        e = net.call(rng.randrange(200), lambda d, v=v: d.put(ImmutableRecord(v), net.now))
        assert e.ok and e.stored >= 10
        keys.append((e.target, v))
    for k, v in keys:
        e = net.call(rng.randrange(200), lambda d, k=k: d.get(k, net.now))
        assert e.ok and e.values[0].value == v
    for i in rng.sample(range(200), 60):
        net.kill(i)
    alive = [i for i in range(200) if net.contacts[i].node_id.int not in net.dead]
    for k, v in keys:
        e = net.call(rng.choice(alive), lambda d, k=k: d.get(k, net.now))
        assert e.ok and e.values[0].value == v


def test_mutable_records_newest_seq_wins_and_quorum():
    net = Net(60, seed=5)
    net.join_all()
    owner = net.idents[3]
    r1 = MutableRecord.create(owner, b"s", 1, 3600, b"one")
    r2 = MutableRecord.create(owner, b"s", 2, 3600, b"two")
    assert net.call(3, lambda d: d.put(r1, net.now)).ok
    assert net.call(3, lambda d: d.put(r2, net.now)).ok
    # An old copy replayed later is refused by holders.
    stale = net.call(3, lambda d: d.put(r1, net.now))
    assert stale.stored == 0
    e = net.call(40, lambda d: d.get(r1.key, net.now, quorum=5))
    assert e.ok and len(e.values) >= 5 and e.values[0].value == b"two"
    equal_seq = MutableRecord.create(owner, b"s", 2, 3600, b"conflict")
    assert net.call(3, lambda d: d.put(equal_seq, net.now)).stored == 0


def test_invalid_records_are_rejected_never_stored_and_counted():
    net = Net(30, seed=6)
    net.join_all()
    target = net.dht(5)
    owner = Identity.generate(random.Random(77))
    good = MutableRecord.create(owner, b"s", 1, 60, b"v")
    forged = MutableRecord(good.public_key, good.salt, 9, 60, b"evil", good.signature)
    before = len(target.store)
    target.on_message(net.contacts[1], Store(42, forged.encode()), net.now)
    target.on_message(net.contacts[1], Store(43, b"\x01\x29\xff\xff"), net.now)
    acks = [m for _, m in target.messages_to_send() if isinstance(m, StoreAck)]
    assert [a.ok for a in acks] == [0, 0]
    assert len(target.store) == before
    assert target.stats["records_rejected"] == 2
    reasons = target.summary()["rejected"]
    assert any("signature" in r for r in reasons) and any("malformed" in r for r in reasons)


def test_expiry_and_bounded_storage():
    d = Dht(contact(1), random.Random(1), T0, DhtConfig(max_records=5, maintenance_interval=10))
    keys = []
    for i in range(12):
        r = ImmutableRecord(b"v%d" % i)
        d.on_message(contact(2), Store(i + 1, r.encode()), T0)
        keys.append(r.key)
    assert len(d.store) == 5
    # Kept: the records closest to our own ID (the eviction policy).
    kept = sorted(keys, key=lambda k: int.from_bytes(k, "big") ^ d.key)[:5]
    assert sorted(r.key for r in d.store.records()) == sorted(kept)
    owner = Identity.generate(random.Random(3))
    short = MutableRecord.create(owner, b"t", 1, 30, b"short-lived")
    d2 = Dht(contact(1), random.Random(1), T0, DhtConfig(maintenance_interval=10))
    d2.on_message(contact(2), Store(1, short.encode()), T0)
    assert len(d2.store) == 1
    d2.handle_timer(T0 + 40)
    assert len(d2.store) == 0 and d2.stats["records_expired"] == 1


def test_rate_limit_per_peer():
    d = Dht(contact(1), random.Random(1), T0, DhtConfig(peer_rate=10, peer_burst=20))
    for i in range(100):
        d.on_message(contact(2), FindNode(i, bytes(32)), T0)
    assert len([m for _, m in d.messages_to_send() if isinstance(m, Nodes)]) == 20
    assert d.stats["rate_limited"] == 80
    d.on_message(contact(3), FindNode(1, bytes(32)), T0)  # another peer is unaffected
    assert len(d.messages_to_send()) == 1


def test_unsolicited_and_misaddressed_replies_are_ignored():
    net = Net(20, seed=7)
    net.join_all()
    d = net.dht(0)
    d.on_message(net.contacts[5], Nodes(12345, (net.contacts[6],)), net.now)
    assert d.stats["unsolicited"] >= 1


def test_graceful_leave_hands_records_over():
    net = Net(40, seed=8, k=3)
    net.join_all()
    r = ImmutableRecord(b"handed over")
    assert net.call(2, lambda d: d.put(r, net.now)).ok
    holders = [i for i in range(40) if net.dht(i).store.get(r.key)]
    for i in holders:
        e = net.call(i, lambda d: d.leave(net.now))
        assert e.ok and e.stored >= 1
        net.kill(i)
    alive = [i for i in range(40) if i not in holders]
    e = net.call(alive[0], lambda d: d.get(r.key, net.now))
    assert e.ok and e.values[0].value == b"handed over"


def test_one_seed_one_run():
    def run(seed):
        net = Net(40, seed=seed)
        net.join_all()
        e = net.call(3, lambda d: d.find_node(net.contacts[30].node_id, net.now))
        return (round(net.now, 9), e.messages, [c.node_id.raw for c in e.contacts])

    assert run(12) == run(12)
    assert run(12) != run(13)


def test_persisted_table_rejoins(tmp_path):
    from weftnet.runtime.store import SqliteStore

    net = Net(30, seed=9)
    net.join_all()
    s = SqliteStore(tmp_path / "node.db")
    s.save_contacts(net.dht(4).export_contacts(), net.now)
    s.put(StoredRecord(b"k" * 32, ImmutableRecord(b"x").encode(), net.now + 60, True, None, net.now))
    s.close()
    s2 = SqliteStore(tmp_path / "node.db")
    loaded = s2.load_contacts()
    assert {c.node_id for c in loaded} == {c.node_id for c in net.dht(4).export_contacts()}
    assert s2.get(b"k" * 32).own and len(s2) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b.ljust(32, b"\0")[:32]), st.integers(0, 2**64 - 1))
def test_dht_messages_round_trip(key, rid):
    c = contact(rid % 1000)
    for m in (FindNode(rid, key), Nodes(rid, (c,) * (rid % 21)), StoreAck(rid, rid % 2, "why")):
        assert wire.decode(wire.encode(m)) == m


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("add", "move", "fail", "remove")), st.integers(0, 59)), max_size=200))
def test_the_table_finds_every_contact_it_holds_by_id_and_no_other(ops):
    """There is no index by ID (core/dht/routing.py): a contact is found by scanning its bucket. Through
    adds, address changes, failures and leaves, ``get``, ``in``, ``by_key`` and ``len`` agree with the
    contacts the buckets list, and each contact is listed once."""
    t = RoutingTable(0, k=3, max_failures=2, per_prefix=None)
    pool = [contact(i) for i in range(1, 61)]
    for op, i in ops:
        c = pool[i]
        if op == "add":
            t.add(c, 0.0)
        elif op == "move":
            t.add(Contact(c.public_key, ("10.9.%d.%d" % (i // 200, i % 200 + 1), 7000)), 0.0)
        elif op == "fail":
            t.fail(c.node_id.int)
        else:
            t.remove(c.node_id.int)
    held = t.contacts()
    keys = [c.node_id.int for c in held]
    assert len(keys) == len(set(keys)) == len(t)
    for c in pool:
        key = c.node_id.int
        found = t.get(key)
        assert (key in t) == (key in t.by_key) == (found is not None) == (key in keys)
        assert found is None or found is held[keys.index(key)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("add", "fail", "remove", "closest")), st.integers(0, 79)), max_size=250))
def test_the_table_finds_every_contact_when_slots_change_hands_and_closest_leaves_out_the_asker(ops):
    """Under the per-prefix limit (a newcomer of a small block takes the slot of a crowded block's
    entry) and failing-slot takeovers, after evictions and leaves, ``get`` finds exactly the contacts
    the buckets list, and ``closest`` with an asker excluded (left out of its bucket in the pass that
    copies it, core/dht/routing.py) is the nearest of all the others, never the asker."""
    t = RoutingTable(0, k=4, max_failures=2, per_prefix=1)
    pool = [contact(i, f"203.0.{i % 3}.{i + 1}") for i in range(1, 81)]
    for op, i in ops:
        c = pool[i]
        if op == "add":
            t.add(c, 0.0)
        elif op == "fail":
            t.fail(c.node_id.int)
        elif op == "remove":
            t.remove(c.node_id.int)
        else:
            target = pool[(i * 7) % 80].node_id.int
            held = t.contacts()
            want = sorted((h for h in held if h.key != c.key), key=lambda h: h.key ^ target)[:5]
            assert t.closest(target, 5, exclude=c.key) == want
    held = t.contacts()
    keys = [c.node_id.int for c in held]
    assert len(keys) == len(set(keys)) == len(t)
    for c in pool:
        found = t.get(c.node_id.int)
        assert (found is not None) == (c.node_id.int in keys)
        assert found is None or found is held[keys.index(c.node_id.int)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 50), st.booleans()), max_size=40),
       st.integers(0, 60), st.booleans())
def test_expired_records_are_found_with_or_without_the_expiry_heap(adds, now, evicted_first):
    """The index builds its expiry heap only when a full store first evicts; the maintenance pass
    before that reads each record's expiry. Both find the same expired records, earliest first."""
    from weftnet.core.dht.quota import StoreIndex

    lazy, eager = StoreIndex(0), StoreIndex(0)
    eager.next_expiry()  # builds the heap at once
    for k, expires, own in adds:
        key = bytes([k]) * 32
        for ix in (lazy, eager):
            ix.add(key, float(expires), own, 10)
    if evicted_first:  # an eviction asked for one: from then on the lazy index keeps the heap too
        assert lazy.pop_expired(float(now), limit=1) == eager.pop_expired(float(now), limit=1)
    got = lazy.pop_expired(float(now))
    assert got == eager.pop_expired(float(now))
    assert len(lazy) == len(eager) and all(lazy.get(k).expires > now for k in list(lazy._meta))


def test_contacts_that_share_a_tag_are_told_apart_by_their_full_id():
    """A bucket scan compares each entry's ``tag`` (the ID's low 8 bits, core/contact.py) before its
    256-bit ID. Contacts whose IDs share those 8 bits, in one bucket: ``get`` finds each one and no
    absent ID of the same tag, ``add`` of a known ID at a new address moves that entry only, and
    ``closest`` leaves out exactly the excluded one."""
    rng = random.Random(7)
    own = Contact(bytes(32), ("198.51.100.1", 7000)).key
    by_tag: dict[int, list[Contact]] = {}
    while True:  # contacts in one bucket of a table at depth 0 (top bit differs from ours) with one tag
        c = Contact(rng.randbytes(32), ("198.51.100.%d" % rng.randrange(2, 250), 7000))
        if (c.key ^ own) >> 255 and c.tag == c.key & 255:
            group = by_tag.setdefault(c.tag, [])
            group.append(c)
            if len(group) == 7:
                break
    same = by_tag[c.tag]
    held, absent = same[:6], same[6]
    assert {h.tag for h in same} == {absent.tag} and len({h.key for h in same}) == 7
    t = RoutingTable(own, k=20, per_prefix=None)
    for h in held:
        assert t.add(h, 0.0)
    assert len(t) == 6
    for h in held:
        assert t.get(h.key) is h
    assert t.get(absent.key) is None and absent.key not in t
    moved = Contact(held[3].public_key, ("203.0.113.9", 7001))
    assert t.add(moved, 1.0) and len(t) == 6
    assert t.get(held[3].key) is moved
    assert [t.get(h.key) for h in held[:3] + held[4:]] == held[:3] + held[4:]
    target = held[0].key
    want = sorted((h for h in t.contacts() if h.key != held[2].key), key=lambda h: h.key ^ target)
    assert t.closest(target, 20, exclude=held[2].key) == want and len(want) == 5
    assert t.closest(target, 20, exclude=absent.key) == sorted(t.contacts(), key=lambda h: h.key ^ target)

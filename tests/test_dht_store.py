"""The DHT's record store and its index (core/dht/store.py, core/dht/quota.py): a record held in memory is
one bytes object (its entry), in the one dict the store and its index share; usage per peer and prefix is
read from the entries up to ``SMALL`` records and kept in dicts past that. What a user can see must not
depend on any of it: a record reads back as it was put, in memory and after a restart from SQLite, and
quotas, expiry and eviction give the same answers as a plain model of the store."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore, MutableRecord, StoredRecord
from weftnet.core.dht.messages import Store, StoreAck
from weftnet.core.dht.quota import SMALL, StoreIndex
from weftnet.core.identity import Identity

T0 = 1_000_000.0


def _acks(d: Dht) -> list[StoreAck]:
    out = [m for _, m in d.messages_to_send() if isinstance(m, StoreAck)]
    while d.next_event() is not None:
        pass
    return out


def test_a_record_reads_back_from_the_memory_store_exactly_as_it_was_put():
    s = MemoryStore()
    StoreIndex(7, s)
    owner = Identity.generate(random.Random(1))
    mut = MutableRecord.create(owner, b"salt", 2**64 - 1, 3600, b"value")
    recs = [
        StoredRecord(mut.key, mut.encode(), T0 + 0.125, False, 2**64 - 1, T0, b"\x01" * 32, "2001:db8:1::/48", T0 + 5),
        StoredRecord(ImmutableRecord(b"x").key, ImmutableRecord(b"x").encode(), -1.5, True, None, 0.0),
        StoredRecord(b"\x00" * 32, b"", 1e300, False, 0, 3.25, b"\xff" * 32, "pr\u00e9fixe-\udc80"),
    ]
    for r in recs:
        s.put(r)
    for r in recs:
        got = s.get(r.key)
        assert got == r and got is not r
        assert (got.key, got.blob, got.expires, got.own, got.seq, got.stored_at, got.origin, got.prefix, got.touched) \
            == (r.key, r.blob, r.expires, r.own, r.seq, r.stored_at, r.origin, r.prefix, r.touched)
    assert recs[1].touched == recs[1].stored_at  # touched defaults to when it was stored
    assert [r.key for r in s.records()] == sorted(r.key for r in recs) and len(s) == 3
    # A changed copy is not the held record until it is put.
    got = s.get(recs[0].key)
    got.expires = T0 + 99
    assert s.get(recs[0].key).expires == T0 + 0.125
    s.put(got)
    assert s.get(recs[0].key).expires == T0 + 99 and s.get(recs[0].key).blob == mut.encode()
    s.delete(recs[0].key)
    assert s.get(recs[0].key) is None and len(s) == 2
    with pytest.raises(ValueError):
        StoredRecord(b"k" * 32, b"v", 1.0, False, origin=b"o" * 256)


def test_a_record_and_its_quota_read_back_the_same_after_a_restart_from_sqlite(tmp_path):
    from weftnet.runtime.store import SqliteStore

    me = Contact(Identity.generate(random.Random(8)).public_key, ("198.51.100.1", 4500))
    peers = [Contact(Identity.generate(random.Random(20 + i)).public_key, ("203.0.113.%d" % (i + 1), 4000))
             for i in range(3)]
    owner = Identity.generate(random.Random(9))
    cfg = DhtConfig(records_per_peer=5)
    s = SqliteStore(tmp_path / "node.db")
    d = Dht(me, random.Random(1), T0, cfg, s)
    mut = MutableRecord.create(owner, b"s", 7, 600, b"mutable")
    d.on_message(peers[0], Store(1, mut.encode()), T0)
    for i in range(8):
        d.on_message(peers[1 + i % 2], Store(2 + i, ImmutableRecord(b"r%d" % i).encode()), T0 + i)
    assert [a.ok for a in _acks(d)] == [1] * 9
    before = {r.key: r for r in s.records()}
    usage = [d.index.usage(p.node_id.raw, d._source_prefix(p)) for p in peers]
    s.close()
    s2 = SqliteStore(tmp_path / "node.db")
    d2 = Dht(me, random.Random(1), T0 + 10, cfg, s2)
    assert {r.key: r for r in s2.records()} == before
    assert s2.get(mut.key).seq == 7 and s2.get(mut.key).origin == peers[0].node_id.raw
    assert [d2.index.usage(p.node_id.raw, d2._source_prefix(p)) for p in peers] == usage
    assert d2._valid_local(mut.key, T0 + 10) == mut
    s2.close()


@pytest.mark.parametrize("held_before", [0, 2 * SMALL])
def test_a_peers_quota_refuses_at_the_same_count_with_few_or_many_records_held(held_before):
    """Up to SMALL records the index reads usage from the entries, past it from its dicts: the
    quota of a peer and of a prefix refuse at the same count either way."""
    me = Contact(Identity.generate(random.Random(2)).public_key, ("198.51.100.1", 4500))
    # (k: with 2k above the peers it meets, the node is responsible for every key it is sent)
    cfg = DhtConfig(k=200, records_per_peer=12, records_per_prefix=20, bytes_per_peer=10_000)
    d = Dht(me, random.Random(3), T0, cfg, MemoryStore())
    rng = random.Random(4)
    for i in range(held_before):  # many peers, one record each, each from a prefix of its own
        p = Contact(Identity.generate(rng).public_key, ("100.64.%d.1" % i, 4000))
        d.on_message(p, Store(i, ImmutableRecord(b"bulk%d" % i).encode()), T0)
    assert [a.ok for a in _acks(d)] == [1] * held_before
    assert (d.index._origin is None) == (held_before <= SMALL)
    a = Contact(Identity.generate(rng).public_key, ("203.0.113.5", 4000))
    b = Contact(Identity.generate(rng).public_key, ("203.0.113.77", 4000))  # the same /24 as a
    got = []
    for i in range(15):
        d.on_message(a, Store(1000 + i, ImmutableRecord(b"a%d" % i).encode()), T0 + 1)
        got.append(_acks(d)[0])
    assert [x.ok for x in got] == [1] * 12 + [0] * 3 and got[-1].reason == "quota of this peer reached"
    got = []
    for i in range(10):
        d.on_message(b, Store(2000 + i, ImmutableRecord(b"b%d" % i).encode()), T0 + 2)
        got.append(_acks(d)[0])
    assert [x.ok for x in got] == [1] * 8 + [0] * 2 and got[-1].reason == "quota of this address prefix reached"
    assert d.index.usage(a.node_id.raw, "203.0.113.0/24")[0::2] == (12, 20)
    big = ImmutableRecord(b"z" * 1000)
    c = Contact(Identity.generate(rng).public_key, ("198.18.0.1", 4000))
    for i in range(9):
        d.on_message(c, Store(3000 + i, ImmutableRecord(bytes([i]) * 1000).encode()), T0 + 3)
    oks = [x.ok for x in _acks(d)]
    assert oks == [1] * 9
    d.on_message(c, Store(3100, big.encode()), T0 + 3)
    (ack,) = _acks(d)
    assert ack.ok == 0 and ack.reason == "quota of this peer reached"  # 9 * 1,003 + 1,003 > 10,000 bytes


# -- the index against a model of the store ----------------------------------------------------------

_ORIGINS = [b"", b"\x01" * 32, b"\x02" * 32, b"\x01" * 31]  # (the last a prefix of the first)
_PREFIXES = ["", "198.51.100.0/24", "2001:db8::/48"]


class StoreModel(RuleBasedStateMachine):
    """A MemoryStore and its index (and an index over no store), driven as the engine drives them,
    against a dict of plain fields: the same records, bytes, usage per origin and prefix (on both
    sides of SMALL), expiry order and farthest record."""

    def __init__(self):
        super().__init__()
        self.store = MemoryStore()
        self.ix = StoreIndex(0xA5 << 248, self.store)
        self.plain = StoreIndex(0xA5 << 248)  # as over a SqliteStore: the index holds heads only
        self.model: dict[bytes, tuple] = {}  # key -> (expires, own, size, origin, prefix, touched)

    keys = st.integers(0, 3 * SMALL).map(lambda i: i.to_bytes(2, "big") * 16)

    @rule(key=keys, expires=st.integers(0, 40), own=st.booleans(), size=st.integers(0, 40),
          origin=st.sampled_from(_ORIGINS), prefix=st.sampled_from(_PREFIXES), now=st.integers(0, 40))
    def put(self, key, expires, own, size, origin, prefix, now):
        if own:
            origin, prefix = b"", ""
        self.store.put(StoredRecord(key, bytes(size), float(expires), own, None, float(now), origin, prefix))
        self.ix.add(key, float(expires), own, size, origin, prefix, float(now))
        self.plain.add(key, float(expires), own, size, origin, prefix, float(now))
        self.model[key] = (float(expires), own, size, origin, prefix, float(now))

    @rule(n=st.integers(1, 3 * SMALL), seed=st.integers(0, 2**16))
    def put_many(self, n, seed):
        rng = random.Random(seed)
        for _ in range(n):
            self.put(rng.randrange(3 * SMALL + 1).to_bytes(2, "big") * 16, rng.randrange(40), False,
                     rng.randrange(40), rng.choice(_ORIGINS), rng.choice(_PREFIXES), rng.randrange(40))

    @rule(key=keys)
    def delete(self, key):
        self.ix.remove(key)
        self.store.delete(key)
        self.plain.remove(key)
        self.model.pop(key, None)

    @rule(key=keys, now=st.integers(41, 60))
    def touch(self, key, now):
        m = self.ix.get(key)
        if m is None:
            assert key not in self.model
            return
        m.touched = float(now)
        self.plain.get(key).touched = float(now)
        self.model[key] = self.model[key][:5] + (float(now),)

    @rule(now=st.integers(0, 45), limit=st.sampled_from([None, 1, 3]))
    def expire(self, now, limit):
        want = sorted((v[0], k) for k, v in self.model.items() if v[0] <= now)
        if limit is not None:
            want = want[:limit]
        got = self.ix.pop_expired(float(now), limit)
        assert got == [k for _, k in want] == self.plain.pop_expired(float(now), limit)
        for k in got:
            self.store.delete(k)
            del self.model[k]

    @precondition(lambda self: self.model)
    @rule()
    def evict_farthest(self):
        far = self.ix.farthest()
        cands = [(self.ix.dist(k), k) for k, v in self.model.items() if not v[1]]
        assert far == self.plain.farthest()
        if not cands:
            assert far is None
            return
        assert far == (max(cands)[1], max(cands)[0])
        self.delete(far[0])

    @invariant()
    def same_as_the_model(self):
        m = self.model
        assert len(self.ix) == len(self.store) == len(self.plain) == len(m)
        assert self.ix.bytes == self.plain.bytes == sum(v[2] for v in m.values())
        for origin in _ORIGINS[1:]:
            for prefix in _PREFIXES:
                want = (sum(v[3] == origin for v in m.values()), sum(v[2] for v in m.values() if v[3] == origin),
                        sum(v[4] == prefix for v in m.values()) if prefix else 0,
                        sum(v[2] for v in m.values() if v[4] == prefix) if prefix else 0)
                assert self.ix.usage(origin, prefix) == want == self.plain.usage(origin, prefix)
        for k, v in m.items():
            for meta in (self.ix.get(k), self.plain.get(k)):
                assert (meta.expires, meta.own, meta.size, meta.origin, meta.prefix, meta.touched) == v
            r = self.store.get(k)
            assert (r.expires, r.own, len(r.blob), r.origin, r.prefix) == v[:5]


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_a_record_held_in_memory_costs_one_entry_and_its_key():
    """A node holding records from many peers (each peer known already): each costs its key, its entry
    (metadata and blob in one bytes object), a slot of one dict and its peer's rate-limit entry: ~360
    bytes traced, where the StoredRecord, its blob, its origin, its floats, two dict slots and the
    quota's int came to ~590 (bench/results/dmem17)."""
    me = Contact(Identity.generate(random.Random(5)).public_key, ("198.51.100.1", 4500))
    rng = random.Random(6)
    peers = [Contact(Identity.generate(rng).public_key, ("10.0.%d.%d" % (i // 200, i % 200 + 1), 4000))
             for i in range(SMALL)]
    blobs = [ImmutableRecord(rng.randbytes(66)).encode() for _ in peers]
    d = Dht(me, random.Random(7), T0, DhtConfig(k=200, exempt_prefixes=["10.0.0.0/8"]), MemoryStore())
    d.import_contacts(peers, T0)  # (known already: what is measured is what holding their records adds)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, p in enumerate(peers):
            d.on_message(p, Store(i + 1, blobs[i]), T0)
        d.messages_to_send()
        while d.next_event() is not None:
            pass
        gc.collect()
        per_record = (tracemalloc.get_traced_memory()[0] - before) / len(peers)
    finally:
        tracemalloc.stop()
    assert len(d.index) == SMALL and d.index._origin is None
    assert per_record < 450, per_record

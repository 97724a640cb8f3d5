"""The process-wide contact cache (core/contact.py) stays bounded, and what it keeps per contact.

It is filled from what peers send (every contact of every DHT answer), so it must stay bounded
whatever they send (docs/security.md); node IDs and Ed25519 -> X25519 conversions are computed, not
kept (bench/results/dmem9)."""

from __future__ import annotations

import hashlib
import sys
import weakref

import pytest

from weftnet.core import contact as contact_mod
from weftnet.core import identity
from weftnet.core.contact import Contact, ContactSeq, shared_contact


def _key(i: int) -> bytes:
    # Any 32 bytes make a contact (the node ID is the key's hash); distinct keys, distinct contacts.
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def _encoded(contacts) -> bytes:
    out = bytearray()
    ContactSeq(len(contacts)).pack(tuple(contacts), out)
    return bytes(out)


def test_contact_cache_stays_bounded_when_answers_carry_more_distinct_contacts_than_its_bound(monkeypatch):
    assert contact_mod.CACHE_MAX <= 65536
    monkeypatch.setattr(contact_mod, "_CACHE", {})
    monkeypatch.setattr(contact_mod, "CACHE_MAX", 2048)  # the same rule, a bound a test can overrun quickly
    bound = contact_mod.CACHE_MAX
    seq = ContactSeq(20)
    sizes = []
    for start in range(0, bound + 400, 20):  # more distinct contacts than the bound, 20 an answer
        batch = [Contact(_key(i), ("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), 4000 + i % 1000))
                 for i in range(start, start + 20)]
        got, _ = seq.unpack(memoryview(_encoded(batch)), 0)
        assert got == tuple(batch)
        sizes.append(len(contact_mod._CACHE))
    assert max(sizes) <= bound
    assert sizes[-1] < bound  # emptied when full, then filled again


def test_contact_cache_stays_bounded_when_more_distinct_contacts_than_its_bound_are_all_still_held(monkeypatch):
    # The cache keeps only contacts something else holds; here the test holds every one it decodes.
    monkeypatch.setattr(contact_mod, "_CACHE", {})
    monkeypatch.setattr(contact_mod, "CACHE_MAX", 512)
    seq, held, sizes = ContactSeq(20), [], []
    for start in range(0, 512 * 3, 20):
        batch = [Contact(_key(i), ("10.1.%d.%d" % (i >> 8 & 255, i & 255), 4000 + i % 1000)) for i in range(start, start + 20)]
        got, _ = seq.unpack(memoryview(_encoded(batch)), 0)
        assert got == tuple(batch)
        held.extend(got)
        sizes.append(len(contact_mod._CACHE))
    assert max(sizes) <= 512 and len(held) == 512 * 3 + 4
    # A contact still held but dropped from the cache when it was emptied decodes again, equal.
    again, _ = seq.unpack(memoryview(_encoded(held[:20])), 0)
    assert again == tuple(held[:20])


def test_a_contact_nothing_holds_any_more_leaves_the_cache_at_its_next_sweep_and_decodes_again_equal(monkeypatch):
    table: dict = {}
    monkeypatch.setattr(contact_mod, "_CACHE", table)
    made = [Contact(_key(i), ("203.0.113.%d" % i, 6000 + i)) for i in range(20)]
    raw = _encoded(made)
    got, _ = ContactSeq(20).unpack(memoryview(raw), 0)
    assert len(table) == 20 and all(table[c.wire] is c for c in got)
    kept = got[3]
    del got
    # Until a sweep they stay (a hit then is the same contact, equal); a sweep drops the unheld ones,
    # with their encodings: only the one still held is left.
    contact_mod._sweep(table)
    assert list(table) == [kept.wire] and table[kept.wire] is kept
    again, _ = ContactSeq(20).unpack(memoryview(raw), 0)
    assert again == tuple(made) and again[3] is kept
    assert len(table) == 20


def test_the_cache_sweeps_as_it_fills_so_contacts_nothing_holds_do_not_pile_up(monkeypatch):
    # A join decodes hundreds of contacts, most held only while its lookups run: the cache holds at
    # most a sweep's step (8 at a node's sizes) of contacts nothing else holds, whatever it decoded.
    table: dict = {}
    monkeypatch.setattr(contact_mod, "_CACHE", table)
    held = []
    for start in range(0, 2000, 20):
        batch = [Contact(_key(i), ("10.3.%d.%d" % (i >> 8 & 255, i & 255), 7000 + i % 1000)) for i in range(start, start + 20)]
        got, _ = ContactSeq(20).unpack(memoryview(_encoded(batch)), 0)
        held.extend(got[:2])  # 2 of each answer stay held (a routing table's), the rest are dropped
        del got
        unheld = len(table) - len(held)
        assert 0 <= unheld <= 20 + contact_mod._step(len(table))
    assert len(held) == 200 and all(table[c.wire] is c for c in held)
    contact_mod._sweep(table)
    assert sorted(table) == sorted(c.wire for c in held)


def test_the_cache_gives_back_its_room_when_the_contacts_it_held_are_freed(monkeypatch):
    # A join fills a node's cache with the contacts of its lookups (~220 at 1,000 nodes), then keeps
    # its routing table's (~80): the dict must not keep the size it grew to.
    table: dict = {}
    monkeypatch.setattr(contact_mod, "_CACHE", table)
    made = [Contact(_key(i), ("10.2.%d.%d" % (i >> 8 & 255, i & 255), 7000 + i)) for i in range(240)]
    got = []
    for start in range(0, 240, 20):
        got.extend(ContactSeq(20).unpack(memoryview(_encoded(made[start:start + 20])), 0)[0])
    assert len(table) == 240
    grown = sys.getsizeof(table)
    kept = got[::3]  # 80 still held (a routing table's)
    del got
    contact_mod._sweep(table)
    assert contact_mod._CACHE is table and len(table) == 80
    assert sys.getsizeof(table) * 3 < grown
    assert sys.getsizeof(table) <= sys.getsizeof(dict.fromkeys(range(80))) + 64
    # Still the same cache: held contacts hit, a freed one leaves, new ones enter.
    again, _ = ContactSeq(20).unpack(memoryview(_encoded(made[:20])), 0)
    assert again == tuple(made[:20]) and again[0] is kept[0] and again[3] is kept[1]
    del kept
    contact_mod._sweep(table)
    assert sorted(table) == sorted(c.wire for c in again)
    del again
    contact_mod._sweep(table)
    assert not table


def test_the_cache_keeps_no_weak_reference_per_contact(monkeypatch):
    # A weak entry (a weakref subclass naming its key) cost 96 bytes a contact, more than anything a
    # node holds per contact but the contact itself (bench/results/dmem12): an entry is the contact.
    table: dict = {}
    monkeypatch.setattr(contact_mod, "_CACHE", table)
    got, _ = ContactSeq(20).unpack(memoryview(_encoded([Contact(_key(i), ("198.51.100.%d" % i, 80)) for i in range(5)])), 0)
    asker = shared_contact(_key(40), ("192.0.2.40", 4040))
    assert all(type(v) is Contact for v in table.values()) and table[asker.wire] is asker
    assert all(table[c.wire] is c and weakref.getweakrefcount(c) == 0 for c in got)


def test_a_contact_keeps_its_node_id_as_an_integer_and_makes_the_id_on_demand():
    c = Contact(_key(9), ("198.51.100.3", 4500))
    nid = identity.node_id_for(_key(9))
    assert c.key == nid.int and c.tag == nid.int & 255
    assert c.node_id == nid and c.node_id.int == nid.int and c.node_id.raw == nid.raw
    assert hash(c.node_id) == hash(nid) and repr(c).startswith(f"Contact({nid.short()}@")
    assert "node_id" not in Contact.__slots__  # no NodeId (and its digest) kept per contact


def test_contacts_of_askers_stay_bounded_too(monkeypatch):
    monkeypatch.setattr(contact_mod, "_CACHE", {})
    monkeypatch.setattr(contact_mod, "CACHE_MAX", 256)
    for i in range(1000):
        c = shared_contact(_key(i), ("192.0.2.%d" % (i & 255), 5000 + i))
        assert c == Contact(_key(i), ("192.0.2.%d" % (i & 255), 5000 + i))
        assert len(contact_mod._CACHE) <= 256


def test_a_decoded_contact_is_sent_on_as_the_bytes_it_came_in_and_equals_a_new_one(monkeypatch):
    monkeypatch.setattr(contact_mod, "_CACHE", {})
    made = [Contact(_key(1), ("198.51.100.7", 4501)), Contact(_key(2), ("2001:db8::1", 65535))]
    raw = _encoded(made)
    got, end = ContactSeq(20).unpack(memoryview(raw), 0)
    assert end == len(raw) and got == tuple(made)
    assert _encoded(got) == raw == _encoded([Contact(c.public_key, c.endpoint) for c in made])
    # The encoding is the cache's key itself, not a copy; a contact has no instance dict.
    assert all(contact_mod._CACHE[c.wire] is c for c in got)
    assert not hasattr(got[0], "__dict__")
    assert sys.getsizeof(got[0]) <= sys.getsizeof(object()) + 16 + 8 * len(Contact.__slots__)


def test_a_contact_read_from_the_wire_keeps_no_public_key_object_of_its_own(monkeypatch):
    # Its key is read from its encoding (the cache's key): ~80 bytes less for every contact a node
    # holds (bench/results/dmem11). Equal, hashed and sent as one made from its fields.
    monkeypatch.setattr(contact_mod, "_CACHE", {})
    made = [Contact(_key(i), ("198.51.100.%d" % i, 4600 + i)) for i in range(3)] + [Contact(_key(9), ("2001:db8::9", 9))]
    got, _ = ContactSeq(20).unpack(memoryview(_encoded(made)), 0)
    asker = shared_contact(bytes(_key(20)), ("192.0.2.20", 4620))
    for c, m in zip(got + (asker,), made + [Contact(_key(20), ("192.0.2.20", 4620))]):
        assert "_pk" not in Contact.__slots__ and c.public_key == m.public_key and c.public_key == c.wire[:32]
        assert c == m and m == c and hash(c) == hash(m) and c.key == m.key and c.node_id == m.node_id
        assert _encoded([c]) == _encoded([m])
    fresh = Contact(_key(5), ("198.51.100.5", 4605))
    assert fresh.public_key is fresh.public_key  # one made from its fields keeps the key it was given
    assert fresh.wire is None and _encoded([fresh]) and fresh.wire[:32] == _key(5)  # until it is encoded
    assert got[0] != got[1] and got[0] != Contact(got[0].public_key, ("198.51.100.0", 4601))
    with pytest.raises(AttributeError):  # frozen
        got[0].endpoint = ("192.0.2.1", 1)


def test_node_ids_and_key_conversions_keep_nothing_per_key():
    before = [getattr(f, "cache_info", None) for f in (identity.node_id_for, identity.ed25519_public_to_x25519)]
    assert before == [None, None]  # plain functions: nothing kept for the keys peers send
    a = identity.node_id_for(_key(7))
    assert a == identity.node_id_for(_key(7)) and a.raw == hashlib.sha256(_key(7)).digest()


def test_without_reference_counts_a_sweep_empties_the_cache_and_decodes_stay_equal(monkeypatch):
    # An interpreter whose reference counts tell nothing (no sys.getrefcount, or a calibration that
    # fails) still imports the module and decodes the same contacts: each sweep then drops every entry,
    # held or not, which costs decodes and never a wrong or unbounded cache.
    table: dict = {}
    monkeypatch.setattr(contact_mod, "_CACHE", table)
    monkeypatch.setattr(contact_mod, "_BASE", None)
    held, sizes = [], []
    for start in range(0, 600, 20):
        batch = [Contact(_key(i), ("10.4.%d.%d" % (i >> 8 & 255, i & 255), 5000 + i)) for i in range(start, start + 20)]
        got, _ = ContactSeq(20).unpack(memoryview(_encoded(batch)), 0)
        assert got == tuple(batch)
        held.extend(got)
        sizes.append(len(table))
    assert max(sizes) < 600  # swept (emptied) along the way although every contact is still held
    contact_mod._sweep(table)
    assert table == {}
    again, _ = ContactSeq(20).unpack(memoryview(_encoded(held[:20])), 0)
    assert again == tuple(held[:20])
    monkeypatch.setattr(contact_mod, "_refcount", None)
    assert contact_mod._calibrate() is None


def test_a_contact_is_four_slots_and_takes_no_weak_reference():
    # Six slots were 80 bytes as allocated, four are 64: ~1.3 KiB a node for its ~80 contacts
    # (bench/results/dmem14). Nothing makes a weak reference to a contact since the cache holds them plainly.
    c = Contact(_key(7), ("198.51.100.7", 4507))
    assert len(Contact.__slots__) == 4 and sys.getsizeof(c) == sys.getsizeof(Contact(_key(8), ("::1", 1)))
    with pytest.raises(TypeError):
        weakref.ref(c)
    with pytest.raises(AttributeError):
        c.wire = b""  # frozen: the encoding is read-only from outside

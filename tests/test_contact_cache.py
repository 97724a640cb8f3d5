"""The process-wide contact cache (core/contact.py) stays bounded, and what it keeps per contact.

It is filled from what peers send (every contact of every DHT answer), so it must stay bounded
whatever they send (docs/security.md); node IDs and Ed25519 -> X25519 conversions are computed, not
kept (bench/results/dmem9)."""

from __future__ import annotations

import hashlib
import sys

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


def test_node_ids_and_key_conversions_keep_nothing_per_key():
    before = [getattr(f, "cache_info", None) for f in (identity.node_id_for, identity.ed25519_public_to_x25519)]
    assert before == [None, None]  # plain functions: nothing kept for the keys peers send
    a = identity.node_id_for(_key(7))
    assert a == identity.node_id_for(_key(7)) and a.raw == hashlib.sha256(_key(7)).digest()

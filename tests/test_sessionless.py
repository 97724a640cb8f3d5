"""Sessionless DHT queries (core/dht/sessionless.py, docs/security.md "Sessionless DHT queries").

What a user notices: lookups to nodes we have no session with cost no handshake and leave no
session behind; the node asked answers, never with more bytes than it was sent, keeps nothing per
query, and enters the asker in its routing table only once the asker proved its address; a
hostile or replayed query buys nothing more. Sans-IO: two NodeCores wired by hand, no sockets.
"""

from __future__ import annotations

import json
import pathlib
import random
import sys
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from weftnet.core import wire
from weftnet.core.contact import Contact
from weftnet.core.dht import DhtConfig
from weftnet.core.dht import sessionless as sl
from weftnet.core.dht.messages import FindNode, NearNodes, Nodes
from weftnet.core.dht.records import ImmutableRecord
from weftnet.core.identity import Identity, node_key_for
from weftnet.core.node import GetResult, LookupResult, NodeConfig, NodeCore
from weftnet.core.session.transport import TransportConfig
from weftnet.runtime.config import DEFAULT_CONFIG, config_from_dict

T0 = 1_000_000.0
V = json.loads((pathlib.Path(__file__).parent / "vectors" / "dhtquery.json").read_text())


def _node(seed: int, host: str, dht: DhtConfig | None = None, transport: TransportConfig | None = None) -> NodeCore:
    cfg = NodeConfig(dht=dht or DhtConfig(), transport=transport or TransportConfig())
    core = NodeCore(Identity.from_seed(bytes([seed]) * 32), random.Random(seed), T0, cfg)
    core.set_local_endpoint((host, 4500))
    return core


class Wire:
    """Datagrams between NodeCores by endpoint; ``log`` keeps (src, dst, bytes) of all of them."""

    def __init__(self, *cores: NodeCore):
        self.by_ep = {c.endpoint: c for c in cores}
        self.log: list[tuple] = []
        self.now = T0

    def pump(self, rounds: int = 20, drop=None) -> None:
        for _ in range(rounds):
            moved = False
            for src, core in list(self.by_ep.items()):
                for data, dst in core.datagrams_to_send(self.now):
                    self.log.append((src, dst, data))
                    moved = True
                    if drop is not None and drop(src, dst, data):
                        continue
                    if dst in self.by_ep:
                        self.by_ep[dst].receive_datagram(data, src, self.now)
            if not moved:
                return

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [t for c in self.by_ep.values() if (t := c.get_timer()) is not None and t <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            for c in self.by_ep.values():
                t = c.get_timer()
                if t is not None and t <= self.now:
                    c.handle_timer(self.now)
            self.pump()
        self.now = end


def _events(core, kind):
    out = []
    while (ev := core.next_event()) is not None:
        if isinstance(ev, kind):
            out.append(ev)
    return out


def _pair(dht_a=None, dht_b=None, transport_a=None, transport_b=None):
    a = _node(1, "198.18.1.1", dht_a, transport_a)
    b = _node(2, "198.18.2.1", dht_b, transport_b)
    a.dht.table.add(Contact(b.identity.public_key, b.endpoint), T0)  # first-hand: not a hint
    return a, b, Wire(a, b)


def _query(asker: Identity, answerer: Identity, request: bytes, *, tag=7, nonce=bytes(16), echo=None, pad=0):
    ss = sl.static_dh(asker, answerer.public_key)
    return sl.seal_query(asker.public_key, answerer.public_key, ss, tag, nonce, request, echo, pad)


def test_the_golden_query_and_answer_are_reproduced_byte_for_byte():
    asker, answerer = Identity.from_seed(bytes.fromhex(V["asker_seed"])), Identity.from_seed(bytes.fromhex(V["answerer_seed"]))
    ss = sl.static_dh(asker, answerer.public_key)
    assert ss.hex() == V["static_dh"] and ss == sl.static_dh(answerer, asker.public_key)  # one ss, both ends
    raw, keys = sl.seal_query(asker.public_key, answerer.public_key, ss, V["tag"], bytes.fromhex(V["query_nonce"]),
                              bytes.fromhex(V["request"]), bytes.fromhex(V["echo"]), V["pad_to"])
    assert raw.hex() == V["query_hex"] and len(raw) == V["pad_to"]
    assert (keys.query.hex(), keys.answer.hex()) == (V["query_key"], V["answer_key"])
    msg = wire.decode(raw)
    assert isinstance(msg, sl.DhtQuery) and msg.asker == asker.public_key
    assert sl.open_query(msg, keys) == (bytes.fromhex(V["echo"]), bytes.fromhex(V["request"]))
    answer = sl.seal_answer(keys, V["tag"], bytes.fromhex(V["answer_nonce"]), V["flags"], bytes.fromhex(V["cookie"]),
                            bytes.fromhex(V["reply"]))
    assert answer.hex() == V["answer_hex"] and len(answer) <= len(raw)
    assert sl.open_answer(answer, keys) == (V["flags"], bytes.fromhex(V["cookie"]), bytes.fromhex(V["reply"]))


def test_a_lookup_to_a_node_without_a_session_makes_no_handshake_and_leaves_no_session():
    a, b, w = _pair()
    a.lookup(b.node_id, w.now)
    w.pump()
    res = _events(a, LookupResult)
    assert res and res[0].ok and b.identity.public_key in [c.public_key for c in res[0].contacts]
    kinds = [d[1] for _s, _d, d in w.log]
    assert kinds[:3] == [0x32, 0x33, 0x34]  # query, answer, then the asker's proof of address (a DhtProof)
    assert 1 not in kinds  # no HandshakeInit either way
    assert a.transport.stats["handshakes_initiated"] == b.transport.stats["handshakes_initiated"] == 0
    assert not a.transport.has_session(b.node_id) and not b.transport.has_session(a.node_id)
    # The answer was never larger than its query, and the answerer now knows the asker (after the proof).
    q, ans = w.log[0][2], w.log[1][2]
    assert len(ans) <= len(q)
    assert b.dht.table.get(a.node_id.int) is not None and a.dht.table.get(b.node_id.int) is not None
    assert b.sessionless.stats["askers_learned"] == 1 and b.sessionless.summary()["pending"] == 0


def test_the_answerer_learns_the_asker_only_once_it_proved_its_address():
    a, b, w = _pair()
    a.lookup(b.node_id, w.now)
    w.pump(drop=lambda s, d, data: data[1] == 0x34)  # the proof is lost
    assert _events(a, LookupResult)[0].ok
    assert b.dht.table.get(a.node_id.int) is None  # answered, not learned
    proof = next(d for s, _d, d in w.log if d[1] == 0x34)
    assert len(proof) == sl.PROOF_SIZE == 50 and proof[2:34] == a.identity.public_key
    # The proof replayed from another address (a spoofer who saw it) proves nothing; nor does its
    # cookie under another key, or a guessed one.
    b.receive_datagram(proof, ("203.0.113.9", 4500), w.now)
    other = Identity.from_seed(bytes([9]) * 32).public_key
    b.receive_datagram(proof[:2] + other + proof[34:], a.endpoint, w.now)
    b.receive_datagram(proof[:34] + bytes(16), a.endpoint, w.now)
    assert b.dht.table.get(a.node_id.int) is None and len(b.dht.table) == 0
    assert b.sessionless.stats["auth_failures"] == 3 and b.sessionless.stats["proofs_received"] == 0
    # From the asker's own address it does.
    b.receive_datagram(proof, a.endpoint, w.now)
    assert b.dht.table.get(a.node_id.int).endpoint == a.endpoint
    # A later query echoes the cookie itself: the answer says it was learned, no second proof.
    a.lookup(b.node_id, w.now + 1)
    w.now += 1
    sent_before = a.sessionless.stats["proofs_sent"]
    w.pump()
    assert a.sessionless.stats["proofs_sent"] == sent_before


def test_an_answerer_that_does_not_know_dhtproof_gets_the_proof_as_an_empty_query():
    a, b, w = _pair()
    b.sessionless.wanted_flags = sl.FLAG_WANTED  # B answers as nodes before DhtProof (0x34) did
    a.lookup(b.node_id, w.now)
    w.pump()
    assert _events(a, LookupResult)[0].ok
    kinds = [d[1] for _s, _d, d in w.log]
    assert kinds[:3] == [0x32, 0x33, 0x32] and 0x34 not in kinds
    assert b.dht.table.get(a.node_id.int).endpoint == a.endpoint


def test_a_query_sealed_with_another_key_or_tampered_with_is_not_answered():
    a, b, w = _pair()
    req = wire.encode(FindNode(5, bytes(32)))
    mallory = Identity.from_seed(bytes([9]) * 32)
    # Claims to be A, but sealed under Mallory's ss with B: no answer.
    raw, _ = _query(mallory, b.identity, req)
    forged = raw[:6] + a.identity.public_key + raw[38:]
    from weftnet.core.session import handshake as hs
    forged = forged[:-32] + hs.MAC(hs.mac1_key(b.identity.public_key), forged[:-32]) + bytes(16)
    b.receive_datagram(forged, ("198.18.9.1", 4500), w.now)
    assert b.datagrams_to_send(w.now) == [] and b.sessionless.stats["auth_failures"] == 1
    # A real query with one ciphertext byte flipped: mac1 catches it; with mac1 recomputed, the AEAD does.
    raw, _ = _query(a.identity, b.identity, req, pad=300)
    bad = bytearray(raw)
    bad[80] ^= 1
    b.receive_datagram(bytes(bad), a.endpoint, w.now)
    bad = bytes(bad[:-32]) + hs.MAC(hs.mac1_key(b.identity.public_key), bytes(bad[:-32])) + bytes(16)
    b.receive_datagram(bad, a.endpoint, w.now)
    assert b.datagrams_to_send(w.now) == []
    assert b.sessionless.stats["auth_failures"] == 3
    assert b.dht.stats["requests_received"] == 0


def test_a_tampered_or_forged_answer_is_refused_and_the_real_one_still_counts():
    a, b, w = _pair()
    a.lookup(b.node_id, w.now)
    (query, dst), = a.datagrams_to_send(w.now)
    b.receive_datagram(query, a.endpoint, w.now)
    (answer, _), = b.datagrams_to_send(w.now)
    bad = bytearray(answer)
    bad[-1] ^= 1
    a.receive_datagram(bytes(bad), b.endpoint, w.now)
    a.receive_datagram(answer[:6] + bytes(12) + answer[18:], b.endpoint, w.now)  # another nonce
    assert a.sessionless.stats["auth_failures"] == 2 and a.sessionless.summary()["pending"] == 1
    assert not _events(a, LookupResult)
    a.receive_datagram(answer, b.endpoint, w.now)
    assert _events(a, LookupResult)[0].ok


def test_a_replayed_query_costs_the_answerer_one_answer_of_at_most_its_size_and_no_state():
    a, b, w = _pair()
    b.dht.table.add(Contact(Identity.from_seed(bytes([40]) * 32).public_key, ("198.18.40.1", 4500)), T0)
    raw, _ = _query(a.identity, b.identity, wire.encode(FindNode(5, bytes(32))), pad=400)
    spoofed = ("203.0.113.7", 9999)
    outs = []
    for src in (a.endpoint, a.endpoint, spoofed):
        b.receive_datagram(raw, src, w.now)
        outs += [(d, dst, src) for d, dst in b.datagrams_to_send(w.now)]
    assert len(outs) == 3
    for d, dst, src in outs:
        assert dst == src and d[1] == 0x33 and len(d) <= len(raw)
    assert len({d for d, _, _ in outs}) == 3  # a fresh AEAD nonce each time: no nonce reuse under one key
    assert b.sessionless.summary()["pending"] == 0 and not b.transport._peers  # nothing kept per query
    assert b.dht.table.get(a.node_id.int) is None  # and no replay teaches the table anything


def test_an_answer_is_never_larger_than_its_query_even_with_twenty_ipv6_contacts():
    a, b, w = _pair()
    for n in range(30):
        ident = Identity.from_seed(bytes([50 + n]) * 32)
        b.dht.table.add(Contact(ident.public_key, (f"2001:db8:{n}::1", 4500)), T0)
    for pad in (0, 200, 400, 900, 1344):
        raw, keys = _query(a.identity, b.identity, wire.encode(FindNode(5, bytes(32))), pad=pad, tag=pad + 1)
        b.receive_datagram(raw, a.endpoint, w.now)
        (ans, _), = b.datagrams_to_send(w.now)
        assert len(ans) <= len(raw)
        _flags, _cookie, reply = sl.open_answer(ans, keys)
        msg = wire.decode(reply)
        assert isinstance(msg, Nodes) and (pad < 1344 or len(msg.contacts) == 20)
    assert b.sessionless.stats["answers_truncated"] >= 3


_CONTACTS = [Contact(Identity.from_seed(bytes([n + 1]) * 32).public_key,
                     (f"2001:db8::{n + 1:x}" if n % 3 == 0 else f"198.51.100.{n + 1}", 1000 + n)) for n in range(24)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_CONTACTS), max_size=20, unique=True), st.integers(0, 1400),
       st.booleans(), st.binary(max_size=1100), st.integers(0, 2**256 - 1))
def test_fit_reply_never_exceeds_its_room_and_keeps_the_nearest(contacts, room, near, record, target):
    from weftnet.core.dht.messages import Value

    if near:
        reply = NearNodes(1, tuple(contacts), tuple(range(len(contacts))))
    elif record:
        reply = Value(1, record, tuple(contacts[:8]))
    else:
        reply = Nodes(1, tuple(contacts))
    raw, flags = sl.fit_reply(reply, room, target)
    assert len(raw) <= room
    if raw:
        got = wire.decode(raw)
        kept = [c.node_id.int ^ target for c in got.contacts]
        dropped = [c.node_id.int ^ target for c in reply.contacts if c not in got.contacts]
        assert not dropped or not kept or max(kept) < min(dropped)  # the farthest went first
        if near:
            assert len(got.rtts) == len(got.contacts)
    assert bool(flags & sl.FLAG_TOO_LARGE) == (not raw and isinstance(reply, Value))


def test_queries_beyond_the_dht_quota_of_one_peer_are_not_answered():
    a, b, w = _pair(dht_b=DhtConfig(peer_rate=0.001, peer_burst=5))
    answered = 0
    for n in range(20):
        raw, _ = _query(a.identity, b.identity, wire.encode(FindNode(n, bytes(32))), tag=n + 1, nonce=bytes([n]) * 16,
                        pad=300)
        b.receive_datagram(raw, a.endpoint, w.now)
        answered += len(b.datagrams_to_send(w.now))
    assert answered == 5 and b.sessionless.stats["queries_dropped"] == 15


def test_under_load_a_query_gets_a_cookie_first_and_is_answered_once_it_echoes_it():
    a, b, w = _pair(transport_b=TransportConfig(handshakes_per_second_under_load=10))
    for n in range(3):  # Inits and queries with a valid mac1 draw on one budget (burst 1): B is under load now
        raw, _ = _query(Identity.from_seed(bytes([60 + n]) * 32), b.identity, b"", tag=n + 1)
        b.receive_datagram(raw, ("198.18.60.1", 4500), w.now)
    b.datagrams_to_send(w.now)
    a.lookup(b.node_id, w.now)
    w.pump()
    kinds = [d[1] for _s, _d, d in w.log]
    assert kinds[:4] == [0x32, 0x03, 0x32, 0x33]  # query, CookieReply, the query again with mac2, the answer
    assert a.sessionless.stats["cookies_received"] == 1
    assert _events(a, LookupResult)[0].ok


def test_a_query_nobody_answers_goes_on_over_a_session():
    a, b, w = _pair()
    a.lookup(b.node_id, w.now)
    w.pump(drop=lambda s, d, data: data[1] in (0x32, 0x33))  # sessionless traffic lost (a NAT, a firewall)
    assert not _events(a, LookupResult)
    w.advance(1.5)
    assert a.sessionless.stats["fallbacks"] == 1
    assert a.transport.has_session(b.node_id)  # the fallback's handshake
    assert _events(a, LookupResult)[0].ok


def test_a_record_too_large_for_the_answer_is_read_over_a_session():
    small = TransportConfig(max_datagram=600)  # our queries are at most 600 bytes: a 1,000-byte record cannot come back
    a, b, w = _pair(transport_a=small)
    record = ImmutableRecord(bytes(range(256)) * 3 + bytes(232))
    b.dht._store_local(record.key, record, T0, own=True)
    a.get(record.key, w.now)
    w.pump()
    got = _events(a, GetResult)
    assert b.sessionless.stats["too_large"] >= 1 and a.sessionless.stats["too_large_fallbacks"] >= 1
    assert got and got[0].ok and got[0].value == record.value
    assert a.transport.has_session(b.node_id)


def test_off_every_lookup_request_rides_a_handshake_as_before():
    a, b, w = _pair(dht_a=DhtConfig(sessionless=False))
    assert a.sessionless is None
    a.lookup(b.node_id, w.now)
    w.pump()
    assert _events(a, LookupResult)[0].ok
    assert 0x32 not in [d[1] for _s, _d, d in w.log] and a.transport.stats["handshakes_initiated"] == 1
    cfg = config_from_dict({"dht": {"sessionless": False}})
    # weft up's default is on (docs/operating.md), as weft init writes it; the key turns it off.
    assert cfg.sessionless is False and config_from_dict({}).sessionless is True
    assert tomllib.loads(DEFAULT_CONFIG)["dht"]["sessionless"] is True


def test_a_put_stores_without_a_session_where_the_lookup_proved_our_address():
    a, b, w = _pair()
    a.put(b"stored without a session", w.now)
    w.pump()
    from weftnet.core.node import PutResult

    res = _events(a, PutResult)
    assert res and res[0].ok
    key = res[0].key
    assert b.dht.store.get(key) is not None  # B holds it, counted against A's quota
    assert a.sessionless.stats["stores_sent"] == 1 and b.sessionless.stats["stores_unproven"] == 0
    assert a.transport.stats["handshakes_initiated"] == b.transport.stats["handshakes_initiated"] == 0
    assert not a.transport.has_session(b.node_id)


def test_a_store_from_an_unproven_address_is_not_stored():
    from weftnet.core.dht.messages import Store

    a, b, w = _pair()
    record = ImmutableRecord(b"from nowhere proven")
    raw, _ = _query(a.identity, b.identity, wire.encode(Store(9, record.encode())), pad=200)  # no echo
    b.receive_datagram(raw, a.endpoint, w.now)
    assert b.datagrams_to_send(w.now) == [] and b.dht.store.get(record.key) is None
    assert b.sessionless.stats["stores_unproven"] == 1
    # A proof-of-address cookie B gave A, echoed from another address (a replay by a spoofer): still refused.
    a.lookup(b.node_id, w.now)
    w.pump()
    cookie = a.sessionless._cookie_from(b.node_id.int, w.now, 60.0)
    raw, _ = _query(a.identity, b.identity, wire.encode(Store(9, record.encode())), echo=cookie, pad=200, tag=9)
    b.receive_datagram(raw, ("203.0.113.5", 4500), w.now)
    assert b.datagrams_to_send(w.now) == [] and b.dht.store.get(record.key) is None
    # From A's own address: stored, and acknowledged in no more bytes than the query.
    b.receive_datagram(raw, a.endpoint, w.now)
    (ack, _), = b.datagrams_to_send(w.now)
    assert len(ack) <= len(raw) and b.dht.store.get(record.key) is not None


def test_without_a_fresh_cookie_a_store_rides_a_session():
    a, b, w = _pair()
    a.put(b"first put", w.now)
    w.pump()
    w.now += 61.0  # A's cookie from B is older than a STORE may lean on
    a.dht.handle_timer(w.now)
    a.put(b"second put", w.now)
    w.pump(drop=lambda s, d, data: data[1] in (0x32, 0x33))  # and this lookup's queries are lost: no new cookie
    w.advance(3.0)
    assert a.sessionless.stats["stores_sent"] == 1
    assert a.transport.has_session(b.node_id)


def test_no_proof_is_sent_where_the_answerers_table_has_no_room_for_the_asker():
    a, b, w = _pair(dht_b=DhtConfig(k=2, per_prefix=None))
    for n in range(60):
        ident = Identity.from_seed(bytes([100 + n]) * 32)
        b.dht.table.add(Contact(ident.public_key, (f"198.19.{n}.1", 4500)), T0)
    a_contact = Contact(a.identity.public_key, a.endpoint)
    assert not b.dht.table.has_room(a_contact, a.node_id.int)  # A's bucket at B is full and cannot split
    a.lookup(b.node_id, w.now)
    w.pump()
    assert _events(a, LookupResult)[0].ok
    assert [d[1] for _s, _d, d in w.log] == [0x32, 0x33]  # no proof: it would only reach B's replacements
    assert a.sessionless.stats["proofs_sent"] == 0 and b.dht.table.get(a.node_id.int) is None


def test_a_peer_that_restarted_elsewhere_and_asks_outside_a_session_gets_its_stale_session_dropped():
    from weftnet.core.node import PingResult

    a, b, w = _pair()
    b.dht.table.add(Contact(a.identity.public_key, a.endpoint), T0)
    b.ping(a.node_id, w.now)  # B and A have a session
    w.pump()
    assert b.transport.has_session(a.node_id) and _events(b, PingResult)[0].ok
    # A restarts at another address, with no session, and looks B up: a query, B's WANTED, A's proof.
    del w.by_ep[a.endpoint]
    a2 = _node(1, "198.18.3.1")
    a2.dht.table.add(Contact(b.identity.public_key, b.endpoint), T0)
    w.by_ep[a2.endpoint] = a2
    w.now += 5.0
    a2.lookup(b.node_id, w.now)
    w.pump()
    assert b.sessionless.stats["sessions_lost_by_peer"] == 1 and not b.transport.has_session(a.node_id)
    assert b.transport.endpoint_of(a.node_id) == a2.endpoint
    # B's next ping starts a handshake at the new address, and it answers.
    b.ping(a.node_id, w.now)
    w.pump()
    assert _events(b, PingResult)[-1].ok and b.transport.has_session(a.node_id)


def test_a_session_that_just_carried_something_is_not_dropped_by_a_query():
    a, b, w = _pair()
    b.dht.table.add(Contact(a.identity.public_key, a.endpoint), T0)
    b.ping(a.node_id, w.now)
    w.pump()
    assert b.transport.has_session(a.node_id)
    # A sessionless query from A's address with a valid cookie, moments after A was heard on the session.
    a.transport.close(b.node_id, w.now)  # A's side lost it, B's has heard from A within the last 2 s
    a.lookup(b.node_id, w.now)
    w.pump()
    a.lookup(b.node_id, w.now + 0.5)
    w.now += 0.5
    w.pump()
    assert b.sessionless.stats["askers_learned"] >= 1  # the second query's echo proved A's address
    assert b.sessionless.stats["sessions_lost_by_peer"] == 0 and b.transport.has_session(a.node_id)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.booleans(), st.integers(1, 3)), max_size=40))
def test_the_key_cache_keeps_each_peers_own_key_and_cookie_and_forgets_the_oldest(writes):
    """The per-peer key cache (ss | cookie | when in fixed slots of one buffer) against a model:
    at most ``cache`` peers; when full, the oldest not written again since it entered (or was
    passed over) is forgotten, an older one written again goes to the young end once (second
    chance); and no peer ever reads another's key or cookie after slots are handed on."""
    core = _node(1, "10.0.0.1")
    s = core.sessionless
    s.keys_max = 3
    model: dict[int, tuple[bytes, bytes | None]] = {}
    again: set[int] = set()
    for n, (peer, with_cookie, gen) in enumerate(writes):
        key = node_key_for(bytes([peer]) * 32)  # kept by node ID (its contact's integer)
        ss = bytes([peer, gen]) * 16
        cookie = bytes([0x80 | peer, gen]) * 8 if with_cookie else None
        if cookie is None:
            s._keep(key, ss)
        else:
            s._keep(key, ss, cookie, T0 + n)
        if key in model:
            again.add(key)
        else:
            while len(model) >= 3:
                old = next(iter(model))
                value = model.pop(old)
                if old in again:
                    again.discard(old)
                    model[old] = value
                else:
                    break
        model[key] = (ss, cookie)
    assert s._kept() == list(model)
    for key, (ss, cookie) in model.items():
        assert s._static_dh(b"unused: kept", key) == ss
        assert s._cookie_from(key, T0 + 100, 1000) == cookie
        assert s._cookie_from(key, T0 + 10_000, 1000) is None  # too old
    assert len(s._slots) <= 3 * 56


def test_the_key_cache_keeps_its_size_while_the_same_peers_answer_again_and_again():
    # A node at 1,000 nodes keeps ~80 peers here, each of which answers many queries: rewriting
    # their entries must not grow the table (a dict whose entries move to its end does, ~3-fold).
    core = _node(1, "10.0.0.1")
    s = core.sessionless
    s.keys_max = 128  # (room for the 81 below; the bound itself is tested at the end)
    keys = [node_key_for(bytes([i, 7]) * 16) for i in range(81)]
    for k in keys:
        s._keep(k, bytes(32))
    size = sys.getsizeof(s._peers) + sys.getsizeof(s._tags) + sys.getsizeof(s._slots)
    for n in range(20):
        for k in keys:
            s._keep(k, bytes([n]) * 32, bytes([n]) * 16, T0 + n)
    assert sys.getsizeof(s._peers) + sys.getsizeof(s._tags) + sys.getsizeof(s._slots) == size
    assert s._kept() == keys  # (written again: each stays where it is)
    assert all(s._cookie_from(k, T0 + 20, 1000) == bytes([19]) * 16 for k in keys)
    # Still bounded by ``keys_max`` when more distinct peers than that come.
    for i in range(3 * s.keys_max):
        s._keep(node_key_for(bytes([i & 255, i >> 8, 9]) + bytes(29)), bytes(32))
        assert len(s._peers) <= s.keys_max and len(s._slots) <= s.keys_max * 56
    assert sl.KEYS_MAX == _node(2, "10.0.0.2").sessionless.keys_max == 64  # a node's own bound


def test_a_full_key_cache_keeps_its_dict_at_the_size_of_its_entries_and_each_peers_own_key():
    # At its bound each newcomer evicts one entry (and passes over those written again): holes at the
    # dict's old end, entries at its young end. The dict grew to 256 slots for 64 entries (4.7 KiB
    # against 2.3; bench/results/dmem14) before it was copied to its size; the order (CLOCK's) stays.
    core = _node(1, "10.0.0.1")
    s = core.sessionless
    assert s.keys_max == sl.KEYS_MAX == 64
    ss_of = {}
    for i in range(2000):
        key = node_key_for(i.to_bytes(2, "big") * 16)
        ss_of[key] = bytes([i & 255, i >> 8]) * 16
        s._keep(key, ss_of[key])
        if i % 3 == 0 and i > 10:  # a recent peer answers again: second chance
            again = node_key_for((i - 5).to_bytes(2, "big") * 16)
            if s._slot_of(again) is not None:
                s._keep(again, ss_of[again], b"c" * 16, T0 + i)
        assert len(s._peers) == len(s._tags) <= 64
    assert len(s._peers) == len(set(s._peers)) == 64 and len(s._slots) == 64 * 56
    assert all(s._static_dh(b"unused: kept", k) == ss_of[k] for k in s._peers)
    # Found by tag and integer: the table takes a list and a byte a peer, not a dict (2.3 KiB for 64)
    assert sys.getsizeof(s._peers) + sys.getsizeof(s._tags) < sys.getsizeof(dict.fromkeys(range(64))) // 2


def test_the_query_keys_are_the_handshakes_hkdf_for_any_keys_and_nonce():
    """query_keys is written out in one function (issue 16, djoin6): it must stay the KDF of
    docs/wire/dht.md for every input, not only the golden vector's."""
    from weftnet.core.session import handshake as hs

    rng = random.Random(16)
    for _ in range(50):
        ss, asker, answerer, nonce = rng.randbytes(32), rng.randbytes(32), rng.randbytes(32), rng.randbytes(16)
        kq, ka = hs.KDF(hs.HASH(sl.LABEL_QUERY + asker + answerer + nonce), ss, 2)
        assert sl.query_keys(ss, asker, answerer, nonce) == sl.QueryKeys(kq, ka)


def test_a_peer_key_that_maps_to_a_low_order_point_is_refused_not_used():
    """A key whose X25519 form is a low-order point (u = 0 or 1) would give an all-zero ss that
    anyone can compute: refused as a handshake failure, as the Noise handshake refuses it."""
    me = Identity.from_seed(bytes(range(32)))
    p = 2**255 - 19
    for y in (p - 1, 0):  # u = (1 + y) / (1 - y): 0 and 1
        try:
            sl.static_dh(me, y.to_bytes(32, "little"))
        except sl.HandshakeError:
            continue
        raise AssertionError(f"y = {y}: a low-order ss was computed")


@given(st.sampled_from([0x20, 0x36, 0x22]), st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32),
       st.binary(max_size=3))
@settings(max_examples=200, deadline=None)
def test_a_lookup_request_in_a_query_decodes_as_the_generic_decoder_decodes_it(kind, rid, target, tail):
    """The answerer decodes the lookup requests directly; what it makes (or refuses) must be what
    wire.decode makes of the same bytes, trailing bytes and another version included."""
    raw = bytes((wire.VERSION, kind)) + rid.to_bytes(8, "big") + target + tail
    for data in (raw, bytes((wire.VERSION + 1,)) + raw[1:]):
        try:
            expected = wire.decode(data)
        except Exception as exc:  # noqa: BLE001
            try:
                sl._decode_request(data)
            except type(exc):
                continue
            raise AssertionError("decoded what wire.decode refuses") from None
        assert sl._decode_request(data) == expected

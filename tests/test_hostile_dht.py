"""Hostile peers against the DHT and whole nodes (issue 9, items 2-8, 11, 13, 14), on the harness.

Scripted attackers built from weftnet's own classes; every test asserts the
fixed behaviour with a figure (bytes out / bytes in, records held against a
quota, store operations per STORE, how long a record outlives its publisher).
"""

from __future__ import annotations

import logging
import random

from hostile_tools import T0, InitForge, Sink, contact, events, overlay, wait
from test_dht import Net

from weftnet.core import wire
from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore, MutableRecord
from weftnet.core.dht.messages import (
    FindNode, FindValue, Nodes, ReplicaOffer, Replicate, Route, Store, StoreAck,
)
from weftnet.core.dht.routing import RoutingTable
from weftnet.core.identity import Identity, NodeId
from weftnet.core.node import GetResult, NodeConfig, NodeCore, PingResult
from weftnet.core.puzzle import generate_identity, meets_puzzle
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.netcert import NetworkAuthority
from weftnet.core.vpn.network import VpnNetwork
from weftnet.core.wire import encode


def dht_config(**kw) -> NodeConfig:
    return NodeConfig(dht=DhtConfig(**kw))


# -- item 5: early data before return routability ---------------------------------------


def test_early_data_from_a_spoofed_source_is_answered_within_its_own_size_and_learns_nothing():
    """Before: FindNode in a spoofed Init got 4.4x back, FindValue 5.5x, a routed message
    6.4x to a third party, and the spoofed endpoint entered the routing table."""
    net, nodes = overlay(8, seed=5)
    v = nodes[0]
    big = ImmutableRecord(bytes(range(256)) * 3 + b"x" * 200)
    v.dht._store_local(big.key, big, net.now, own=True)
    spoofed = ("192.0.2.99", 4444)
    sink = net.add(spoofed, Sink())
    key = random.Random(1).randbytes(32)
    attacker = Identity.generate(random.Random(2))
    origin = Contact(attacker.public_key, spoofed)
    cases = {
        "FindNode": encode(FindNode(1, key)),
        "FindValue": encode(FindValue(2, big.key)),
        "Route": encode(Route(3, nodes[5].node_id.raw, origin, 0, 32, 1, b"y" * 600)),
    }
    forwarded = v.dht.stats["routes_forwarded"]
    for i, (name, payload) in enumerate(cases.items()):
        forge = InitForge(v.identity.public_key, identities=1, seed=10 + i, payload=payload)
        init = forge.next()
        before = sink.bytes
        net.inject(spoofed, v.endpoint, init)
        net.run_for(5.0)
        ratio = (sink.bytes - before) / len(init)
        assert ratio <= 1.0, (name, sink.bytes - before, len(init))
        assert forge.idents[0].node_id.int not in v.dht.table, name  # no routing-table entry
    assert v.dht.stats["routes_forwarded"] == forwarded  # the routed message waits for proof: none comes
    assert v.dht.stats["held_unverified"] >= 1


# -- item 6: node lists as reflection ---------------------------------------------------


def _poisoned_lookups(contacts: int, lookups: int):
    """An attacker (node 1) answers every FIND_NODE and FindNear, in a session or to a sessionless
    query (``_nodes_reply``), with ``contacts`` invented contacts at a victim address; node 0 runs
    ``lookups`` lookups of the attacker's neighbourhood (not of the attacker itself: a lookup of a
    node's own ID stops at it). Returns node 0, the victim's sink and the bytes the attacker sent
    node 0."""
    net, nodes = overlay(12, seed=6)
    v, a = nodes[0], nodes[1]
    victim = ("192.0.2.66", 53)
    sink = net.add(victim, Sink())
    rng = random.Random(3)
    invented = tuple(Contact(Identity.generate(rng).public_key, victim) for _ in range(contacts))
    a.dht._nodes_reply = lambda sender, rid, target, near=False: Nodes(rid, invented)
    from_attacker = [0]

    def count(src, dst, data):
        if src == a.endpoint and dst == v.endpoint:
            from_attacker[0] += len(data)

    net.on_deliver = count
    near = NodeId(a.node_id.raw[:31] + bytes([a.node_id.raw[31] ^ 1]))
    for _ in range(lookups):
        wait(net, v, v.lookup(near, net.now))
    net.run_for(15.0)
    assert from_attacker[0] > 0
    return v, sink, from_attacker[0], invented


def test_a_reply_naming_invented_contacts_at_a_victim_sends_it_less_than_the_reply():
    """Before: one 821-byte reply listing 20 invented contacts made the node send
    26,780 bytes (32.6x) to the third party, handshakes retried for 10 s. Three lookups here,
    each asking the attacker."""
    v, sink, sent, _ = _poisoned_lookups(20, 3)
    assert sink.bytes <= sent, (sink.bytes, sent)
    assert sink.datagrams <= 6  # one ask per hint, at most two per address in a burst
    assert v.dht.stats["hints_deferred"] > 0


def test_one_reply_naming_invented_contacts_gets_the_victim_fewer_bytes_than_the_reply():
    """One lookup, one poisoned reply (the attacker pays for nothing else). Before: the two hinted
    asks went as 256-byte sessionless queries and, unanswered, again half a second later as 206-byte
    Inits that nobody paid for: 924 bytes in 4 datagrams for the attacker's 821 (1.13x). The
    second datagram to a hint is now paid as the first was."""
    v, sink, sent, invented = _poisoned_lookups(20, 1)
    assert sink.bytes <= sent, (sink.bytes, sink.datagrams, sent)
    assert v.dht.stats["hint_fallbacks_dropped"] >= 1
    assert not any(v.transport.handshaking(c.node_id) for c in invented)  # no handshake went there either
    from weftnet.runtime.opsview import hardening_view  # what an operator sees (/metrics, weft status)

    assert hardening_view(v)["dht_hint_fallbacks_dropped"] == v.dht.stats["hint_fallbacks_dropped"]


def test_a_reply_naming_one_invented_contact_gets_the_victim_one_ask_and_no_second_datagram():
    """The smallest poisoned reply (one contact, 80 bytes) uses the one ask every source starts
    with (docs/security.md, item 6, its limit); the unanswered ask's second datagram (a 206-byte
    Init) must be paid from the source's credit too, and it has none left. Before: 462 bytes in 2
    datagrams (5.8x); now one 256-byte ask."""
    v, sink, _, _ = _poisoned_lookups(1, 1)
    assert sink.datagrams == 1 and sink.bytes <= v.dht.config.hint_cost, (sink.bytes, sink.datagrams)
    assert v.dht.stats["hint_fallbacks_dropped"] == 1


# -- item 4: routed messages that name someone else as their origin ---------------------


def test_routed_messages_naming_honest_nodes_at_bogus_endpoints_reflect_nothing_and_evict_nobody():
    """Before: 30 such messages evicted 10 of 10 honest contacts and reflected 13.7x of the
    attacker's bytes at an arbitrary IP:port. Reports now travel back along the path."""
    net, nodes = overlay(14, seed=7)
    a = nodes[1]  # the attacker: a verified member of the overlay
    bogus = ("192.0.2.250", 9)
    sink = net.add(bogus, Sink())
    honest = nodes[2:12]
    tables_before = {c.node_id: sum(c.node_id.int in n.dht.table for n in nodes) for c in honest}
    sent = 0
    for i in range(30):
        h = honest[i % 10]
        origin = Contact(h.identity.public_key, bogus)
        target = nodes[(i * 5) % 14]
        msg = encode(Route(1000 + i, target.node_id.raw, origin, 0, 32, 1, b"z" * 100))
        sent += len(msg)
        a.transport.send(contact(nodes[0]), msg, net.now)
        net.flush(a.endpoint)
        net.run_for(1.0)
    net.run_for(30.0)
    assert sink.datagrams == 0  # nothing reached the endpoint the messages named
    for c in honest:
        assert sum(c.node_id.int in n.dht.table for n in nodes) >= tables_before[c.node_id], c
    assert sum(n.dht.table.evictions for n in nodes) == 0


def test_a_failed_handshake_to_a_second_hand_address_does_not_count_against_a_contact():
    d = Dht(Contact(Identity.generate(random.Random(1)).public_key, ("10.0.0.1", 1)), random.Random(2), T0)
    h = Contact(Identity.generate(random.Random(3)).public_key, ("198.51.100.5", 4500))
    d.table.add(h, T0)
    for _ in range(10):
        d.on_unreachable(h.node_id, T0, ("192.0.2.250", 9))  # a hint named it there: not its failure
    assert h.node_id.int in d.table and d.stats["failures_not_counted"] == 10
    for _ in range(3):
        d.on_unreachable(h.node_id, T0, h.endpoint)  # at its own endpoint: it does count
    assert h.node_id.int not in d.table


def test_text_from_a_peer_cannot_forge_a_log_line():
    from weftnet.runtime.logs import _Formatter

    forged = 'hi\n2026-01-01T00:00:00.000Z warning revocation list installed network=lab seq=99'
    rec = logging.LogRecord("weftnet.daemon", logging.INFO, "", 0, "message received", (), None)
    rec.origin, rec.text = "wn1x", forged
    line = _Formatter("text").format(rec)
    assert "\n" not in line and line.count("warning") == 1 and '\\n2026' in line


def test_a_routed_text_shows_only_a_sender_who_signed_it():
    """A routed message names its origin and no hop can check the claim: a text that names
    an honest node as its sender reaches the user only with that node's signature."""
    from weftnet.core.node import AppText, SendResult, SignedText, TextReceived

    net, nodes = overlay(8, seed=12)
    honest, target, mallory = nodes[1], nodes[5], nodes[6]
    events(target)
    r = wait(net, honest, honest.send_text(target.node_id, "meet at noon", net.now))
    assert isinstance(r, SendResult) and r.ok
    got = [e for e in events(target) if isinstance(e, TextReceived)]
    assert [(e.origin, e.text) for e in got] == [(honest.node_id, "meet at noon")]

    # Mallory routes texts that name the honest node as their origin: one signed with her own
    # key, one unsigned in the older form. Neither is shown; both are counted.
    key = target.node_id.raw
    forged = [
        SignedText("send the money", mallory.identity.sign(SignedText.signing_input(key, "send the money"))),
        AppText("send the money"),
    ]
    for i, msg in enumerate(forged):
        route = Route(900 + i, key, contact(honest), 0, 32, 0, encode(msg))
        mallory.transport.send(contact(target), encode(route), net.now)
        net.flush(mallory.endpoint)
        net.run_for(2.0)
    assert not [e for e in events(target) if isinstance(e, TextReceived)]
    assert target.texts_dropped == {"forged": 1, "unsigned": 1}
    assert target.dht.stats["routes_delivered"] >= 3  # the routes were delivered; the texts refused


# -- item 3: storage quotas and O(log n) admission ----------------------------------------


class CountingStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.ops = {"get": 0, "put": 0, "delete": 0, "records": 0}

    def get(self, key):
        self.ops["get"] += 1
        return super().get(key)

    def put(self, record):
        self.ops["put"] += 1
        super().put(record)

    def delete(self, key):
        self.ops["delete"] += 1
        super().delete(key)

    def records(self):
        self.ops["records"] += 1
        return super().records()


def test_one_peer_storing_100000_records_gets_its_quota_and_no_store_scans_the_store():
    """Before: one peer stored 100,000 records (146 MB, some with a 136-year expiry) and
    then every STORE scanned them all (0.4-0.6 s each)."""
    store = CountingStore()
    me = Contact(Identity.generate(random.Random(1)).public_key, ("198.51.100.1", 4500))
    cfg = DhtConfig()
    d = Dht(me, random.Random(2), T0, cfg, store)
    store.ops = dict.fromkeys(store.ops, 0)  # (building the index at start-up reads the store once)
    attacker = Contact(Identity.generate(random.Random(3)).public_key, ("203.0.113.5", 4000))
    for i in range(100_000):
        now = T0 + i / 150  # under the per-peer request rate: the quota is what stops it
        d.on_message(attacker, Store(i + 1, ImmutableRecord(i.to_bytes(4, "big")).encode()), now)
        if i % 1000 == 999:
            d.messages_to_send()
            while d.next_event() is not None:
                pass
    assert len(d.index) == cfg.records_per_peer  # 1,000 of 100,000
    assert store.ops["records"] == 0  # no scan, ever
    assert (store.ops["get"] + store.ops["put"] + store.ops["delete"]) / 100_000 <= 2.0
    # A record that asks for 136 years gets the cap.
    owner = Identity.generate(random.Random(4))
    forever = MutableRecord.create(owner, b"s", 1, 2**32 - 1, b"v")
    other = Contact(owner.public_key, ("198.51.100.77", 4000))
    d.on_message(other, Store(7, forever.encode()), now)
    assert store.get(forever.key).expires <= now + cfg.max_ttl


def test_a_full_store_admits_and_evicts_in_logarithmic_time_and_per_prefix_quotas_hold():
    store = CountingStore()
    me = Contact(Identity.generate(random.Random(5)).public_key, ("198.51.100.1", 4500))
    cfg = DhtConfig(max_records=2000, records_per_peer=100, records_per_prefix=300)
    d = Dht(me, random.Random(6), T0, cfg, store)
    store.ops = dict.fromkeys(store.ops, 0)
    rng = random.Random(7)
    peers = [Contact(Identity.generate(rng).public_key, (f"10.{i // 10}.{i % 10}.{i % 7 + 1}", 4000))
             for i in range(60)]
    i = 0
    for rnd in range(200):
        for p in peers:
            d.on_message(p, Store(i, ImmutableRecord(b"r%d" % i).encode()), T0 + i * 1e-4)
            i += 1
        d.messages_to_send()
        while d.next_event() is not None:
            pass
    assert len(d.index) == 2000 and d.stats["records_evicted"] > 0
    assert store.ops["records"] == 0
    assert (store.ops["get"] + store.ops["put"] + store.ops["delete"]) / i <= 3.0
    for prefix in d.index._prefix:
        assert d.index.usage(prefix=prefix)[2] <= cfg.records_per_prefix, prefix
    # Kept: the records closest to our ID (the stated eviction policy).
    dists = sorted(d.index.dist(k) for k in d.index._meta)
    assert dists[-1] == max(d.index.dist(k) for k in d.index._meta)


def test_quotas_survive_a_restart(tmp_path):
    from weftnet.runtime.store import SqliteStore

    me = Contact(Identity.generate(random.Random(8)).public_key, ("198.51.100.1", 4500))
    attacker = Contact(Identity.generate(random.Random(9)).public_key, ("203.0.113.5", 4000))
    cfg = DhtConfig(records_per_peer=50)
    s = SqliteStore(tmp_path / "node.db")
    d = Dht(me, random.Random(1), T0, cfg, s)
    for i in range(80):
        d.on_message(attacker, Store(i, ImmutableRecord(b"q%d" % i).encode()), T0)
    s.close()
    s2 = SqliteStore(tmp_path / "node.db")
    d2 = Dht(me, random.Random(1), T0, cfg, s2)
    for i in range(80, 160):
        d2.on_message(attacker, Store(i, ImmutableRecord(b"q%d" % i).encode()), T0)
    assert len(s2) == 50
    s2.close()


def test_stores_for_keys_far_from_this_node_are_refused():
    net = Net(60, seed=21, k=4)
    net.join_all()
    d = net.dht(0)
    far = max((ImmutableRecord(b"f%d" % i) for i in range(200)),
              key=lambda r: int.from_bytes(r.key, "big") ^ d.key)
    d.on_message(net.contacts[5], Store(1, far.encode()), net.now)
    (ack,) = [m for _, m in d.messages_to_send() if isinstance(m, StoreAck)]
    assert ack.ok == 0 and "responsible" in ack.reason and d.store.get(far.key) is None


# -- item 7: the publisher's expiry bounds a record's life; replication by inventory ----


class MeteredNet(Net):
    """Net, counting the bytes of every message by type."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.bytes_by_type: dict[str, int] = {}

    def flush(self, d):
        out = d.messages_to_send()
        for _, msg in out:
            name = type(msg).__name__
            self.bytes_by_type[name] = self.bytes_by_type.get(name, 0) + len(wire.encode(msg)) + 30
        d._out = out + d._out
        super().flush(d)


def test_a_record_dies_with_its_publishers_lifetime_and_replication_sends_only_what_is_missing():
    """Before: every holder re-sent every record hourly (21.7x the stored bytes per hour)
    and each copy reset the 24 h lifetime: a record outlived its publisher by 72 h."""
    net = MeteredNet(24, seed=22, k=5, refresh_interval=1e9)
    net.join_all()
    rec = ImmutableRecord(b"R" * 900)
    e = net.call(3, lambda d: d.put(rec, net.now))
    assert e.ok and e.stored >= 3
    published = net.now
    net.kill(3)  # the publisher goes away for good
    net.run(published + 3.5 * 3600)  # the first rounds carry it to the nodes next in line
    carried = net.bytes_by_type.get("Replicate", 0)
    copies = sum(net.dht(i).store.get(rec.key) is not None for i in range(24) if i != 3)
    assert carried <= copies * (len(rec.encode()) + 50)  # each new holder got one copy, not one per holder
    net.bytes_by_type.clear()
    net.run(published + 12.5 * 3600)  # nine more rounds: everyone near the key has it
    assert net.bytes_by_type.get("Replicate", 0) + net.bytes_by_type.get("Store", 0) == 0
    per_hour = net.bytes_by_type.get("ReplicaOffer", 0) / 9
    assert per_hour <= 2 * len(rec.encode()), per_hour  # inventories only (40 bytes a record)
    alive = [i for i in range(24) if i != 3]
    e = net.call(alive[0], lambda d: d.get(rec.key, net.now))
    assert e.ok  # still there at 12 h
    net.run(published + 24 * 3600 + 700)  # its lifetime, plus one maintenance round
    holders = [i for i in alive if net.dht(i).store.get(rec.key) is not None]
    assert holders == [], holders


# -- items 2 and 11: revocations and rollback ---------------------------------------------


def test_revocation_list_2_reaches_every_member_in_one_check_although_they_hold_list_1():
    """Before: a member's check returned its own stored copy (list #1), members republished
    it, and #2 never arrived (a revoked serial accepted 30 minutes later)."""
    net, nodes = overlay(24, seed=23, config_for=lambda i: dht_config(k=4))
    rng = random.Random(23)
    lab = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, net.now)
    rl1 = lab.revocation_list(seq=1, issued_at=int(net.now), serials=[90])
    rec1 = lab.revocation_record(rl1)
    allow = {"inbound": [{"proto": "any", "port": "any", "host": "any"}],
             "outbound": [{"proto": "any", "port": "any", "host": "any"}]}
    members = []
    for i, core in enumerate(nodes[1:6]):
        cert = lab.sign_member(core.node_id, [f"10.1.0.{i + 1}"], not_before=int(net.now) - 10,
                               not_after=int(net.now) + 86400, serial=i + 1)
        vnet = VpnNetwork(lab.descriptor, cert, net.now, revocations=rl1, firewall=Firewall.from_config(allow))
        core.vpn.add_network(vnet, lab.directory_records(cert), revocation_record=rec1)
        members.append((core, vnet))
        core.vpn_publish(net.now)  # each holds #1 locally and spreads it
        net.flush(core.endpoint)
    net.run_for(20.0)
    rl2 = lab.revocation_list(seq=2, issued_at=int(net.now), serials=[90, 3])
    owner = nodes[10]
    owner.vpn.add_published(lab.revocation_record(rl2))
    owner.vpn_publish(net.now)
    net.flush(owner.endpoint)
    net.run_for(20.0)
    for core, _ in members:  # one check each
        core.vpn_check_revocations(net.now)
        net.flush(core.endpoint)
    net.run_for(30.0)
    seqs = [vnet.revocations.seq for _, vnet in members]
    assert seqs == [2] * 5, seqs
    assert all(vnet.own_revoked == (vnet is members[2][1]) for _, vnet in members)


def test_a_replayed_older_record_on_a_node_that_had_none_does_not_roll_back_its_reads():
    """Before: the node's own get (quorum 1) served the replayed seq 1."""
    net, nodes = overlay(30, seed=24, config_for=lambda i: dht_config(k=4))
    owner = nodes[2]
    r1 = MutableRecord.create(owner.identity, b"s", 1, 3600, b"old")
    r2 = MutableRecord.create(owner.identity, b"s", 2, 3600, b"new")
    ev = wait(net, owner, owner.put(b"new", net.now, mutable_salt=b"s"))  # seq from the clock
    assert ev.ok
    key = r1.key
    target = int.from_bytes(key, "big")
    ranked = sorted((n for n in nodes if n is not owner), key=lambda n: n.node_id.int ^ target)
    x = next(n for n in ranked[4:] if n.dht.store.get(key) is None)  # near the key, holds nothing
    attacker = contact(nodes[-1])
    x.dht.on_message(attacker, Store(77, r1.encode()), net.now)  # the replay
    assert x.dht.store.get(key) is not None  # accepted: it had none, and it is validly signed
    ev = wait(net, x, x.get(key, net.now))
    assert isinstance(ev, GetResult) and ev.ok and ev.value == b"new" and ev.seq > r2.seq - 1
    assert MutableRecord is type(x.dht._valid_local(key, net.now)) and x.dht._valid_local(key, net.now).seq > 1


# -- item 13: what an identity costs ------------------------------------------------------


def test_identities_that_fail_the_puzzle_stay_out_of_the_table_and_lookups():
    own = generate_identity(random.Random(30), 8)
    t = RoutingTable(own.node_id.int, k=20, per_prefix=None, difficulty=8)
    rng = random.Random(31)
    cheap = [Contact(rng.randbytes(32), (f"203.0.{i % 250}.1", 4000)) for i in range(2000)]
    added = sum(t.add(c, T0) for c in cheap)
    assert added == sum(meets_puzzle(c.node_id, 8) for c in cheap) < 25  # about 2000/256
    assert t.puzzle_refusals == 2000 - added
    paid = [generate_identity(rng, 8) for _ in range(3)]
    assert all(t.add(Contact(i.public_key, ("198.51.100.1", 1)), T0) for i in paid)


def test_request_limits_per_prefix_hold_against_20000_identities():
    """Before: limits were per identity, and the table of buckets was wiped past 10,000."""
    d = Dht(Contact(Identity.generate(random.Random(1)).public_key, ("198.51.100.1", 1)), random.Random(2), T0,
            DhtConfig(peer_rate=200, peer_burst=400, prefix_rate=1000, prefix_burst=2000))
    rng = random.Random(3)
    answered = 0
    for i in range(20_000):
        sender = Contact(rng.randbytes(32), (f"203.0.113.{i % 250 + 1}", 4000 + i % 1000))
        d.on_message(sender, FindNode(i, bytes(32)), T0 + i * 1e-5, verified=False)
        answered += len(d.messages_to_send())
    assert answered <= 2000 + 1000 * 0.2 + 1, answered  # the /24's burst, plus 0.2 s of its rate
    assert d.stats["rate_limited"] >= 17_000


# -- item 14: one bad message must not cost the rest of a batch --------------------------


def test_a_route_at_hop_255_does_not_raise_and_the_rest_of_the_batch_is_handled():
    net, (a, b) = overlay(2, seed=25)
    bomb = encode(Route(5, bytes(32), contact(a), 255, 255, 1, b""))
    a.transport.send(contact(b), bomb, net.now)
    op = a.ping(b.node_id, net.now)
    datagrams = a.datagrams_to_send(net.now)  # the route and the ping, one batch
    b.receive_datagrams([(d, a.endpoint) for d, _ in datagrams], net.now)
    for d, dst in b.datagrams_to_send(net.now):
        a.receive_datagram(d, b.endpoint, net.now)
    got = [e for e in events(a) if isinstance(e, PingResult) and e.op_id == op]
    assert got and got[0].ok
    assert b.internal_errors == 0 and b.dht.stats["routes_dropped"] == 1


# -- item 8: a full disk ----------------------------------------------------------------


def test_a_full_database_is_counted_logged_once_and_the_node_keeps_answering(tmp_path, caplog):
    """Before: 2,319 failed STOREs logged 52,695 traceback lines and stopped the packet loop."""
    from weftnet.runtime.store import SqliteStore

    store = SqliteStore(tmp_path / "node.db")
    store.db.execute("PRAGMA max_page_count = 12")  # a disk that is full after a few pages
    net, nodes = overlay(3, seed=26)
    v2 = NodeCore(Identity.generate(random.Random(8)), random.Random(9), net.now, NodeConfig(), store)
    v2.set_local_endpoint(("198.18.50.1", 4500))
    net.add(v2.endpoint, v2)
    a = nodes[1]
    wait(net, a, a.connect(v2.endpoint, net.now))
    caplog.set_level(logging.WARNING, logger="weftnet.store")
    for i in range(400):
        a.transport.send(contact(v2), encode(Store(i, ImmutableRecord(b"%d" % i + b"." * 900).encode())), net.now)
        if i % 20 == 0:
            net.flush(a.endpoint)
            net.run_for(0.05)
    net.flush(a.endpoint)
    net.run_for(2.0)
    assert v2.dht.stats["storage_errors"] > 100
    assert len([r for r in caplog.records if r.name == "weftnet.store"]) == 1
    ev = wait(net, a, a.ping(v2.node_id, net.now))
    assert ev.ok and v2.internal_errors == 0
    store.close()


def test_replicas_and_offers_from_half_open_senders_wait_for_proof():
    d = Dht(Contact(Identity.generate(random.Random(1)).public_key, ("198.51.100.1", 1)), random.Random(2), T0)
    s = Contact(Identity.generate(random.Random(3)).public_key, ("192.0.2.1", 5))
    r = ImmutableRecord(b"held")
    for msg in (Store(1, r.encode()), Replicate(2, 60, r.encode()), ReplicaOffer(3, ())):
        d.on_message(s, msg, T0, verified=False)
    assert d.messages_to_send() == [] and len(d.index) == 0 and s.node_id.int not in d.table
    d.on_verified(s.node_id, T0 + 1)
    assert len(d.index) == 1 and len(d.messages_to_send()) == 3


def test_a_publisher_that_stays_keeps_its_record_alive_past_its_first_lifetime():
    """The other side of item 7: holders never extend a record's life for each other, but
    the publisher's own hourly STORE does."""
    net = Net(16, seed=27, k=4, refresh_interval=1e9)
    net.join_all()
    rec = ImmutableRecord(b"kept alive by its publisher")
    assert net.call(2, lambda d: d.put(rec, net.now)).ok
    start = net.now
    net.run(start + 24.5 * 3600)  # past the first lifetime, before the next republish could restore it
    holders = [i for i in range(16) if i != 2 and net.dht(i).store.get(rec.key) is not None]
    assert len(holders) >= 3
    assert all(net.dht(i).store.get(rec.key).expires > net.now for i in holders)

"""What a node carries: engines it never used are not built, counters it never moved take no room,
and none of that changes what the node does or reports (issue 16, memory per node)."""

import json
import random

import pytest
from test_vpn_node import build, member, send, tun_packets
from vpn_packets import icmp_echo

from weftnet.core.contact import Contact, shared_contact
from weftnet.core.counters import Counters
from weftnet.core.dht.store import StoredRecord
from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore
from weftnet.core.reach.engine import ReachConfig
from weftnet.core.vpn.netcert import NetworkAuthority
from weftnet.core.vpn.network import VpnPacket
from weftnet.core.wire import encode

_LAZY = ("_vpn", "_overlay", "_lan", "_l3vpn", "_pmtu")


def _settle(net, node, op_id, seconds=10.0):
    net.flush(node.endpoint)
    net.run_for(seconds)
    events = []
    while (ev := node.next_event()) is not None:
        events.append(ev)
    return next(e for e in events if getattr(e, "op_id", None) == op_id)


def test_a_dht_only_node_builds_no_vpn_overlay_lan_l3vpn_or_pmtu_engine_and_reports_the_same_status():
    net, _rng, nodes = build(seed=21, n=5)
    put = _settle(net, nodes[1], nodes[1].put(b"hello", net.now))
    got = _settle(net, nodes[3], nodes[3].get(put.key, net.now))
    assert put.ok and got.ok and got.value == b"hello"
    for core in nodes:
        assert all(getattr(core, name) is None for name in _LAZY), core.node_id.short()
        assert core.tun_out == []
    # status() shows what it showed when every node built every engine, and builds nothing.
    lean = nodes[2].status(net.now)
    assert all(getattr(nodes[2], name) is None for name in _LAZY)
    for name in ("vpn", "overlay", "lan", "l3vpn", "pmtu"):
        getattr(nodes[4], name)  # built by first use
    full = nodes[4].status(net.now)
    for key in ("networks", "vpn", "overlay", "discovery", "l3vpn"):
        assert lean[key] == full[key], key
    assert list(lean) == list(full)
    assert list(lean["transport"]) == list(full["transport"]) and "handshakes_initiated" in lean["transport"]
    json.dumps(lean)


def test_a_network_joined_late_builds_its_plane_on_first_use_and_carries_packets():
    net, rng, nodes = build(seed=23, n=5)
    assert nodes[1]._vpn is None and nodes[2]._vpn is None
    lab = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, net.now)
    a = member(lab, nodes[1], "10.1.0.1", net.now, 1)
    member(lab, nodes[2], "10.1.0.2", net.now, 2)
    for core in nodes[1:3]:
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=3)
    send(net, nodes[1], a, ping)  # resolves 10.1.0.2 (dropped, as before)
    send(net, nodes[1], a, ping)
    assert tun_packets(nodes[2], lab.network_id) == [ping]
    assert nodes[2].vpn.tun_out is nodes[2].tun_out  # the one list the driver writes to the TUNs
    assert nodes[3]._vpn is None  # a node outside the network still has none


def test_a_data_plane_payload_to_a_node_without_the_plane_builds_it_and_is_dropped_and_counted():
    net, _rng, nodes = build(seed=25, n=4)
    target = nodes[2]
    assert target._vpn is None
    forged = encode(VpnPacket(bytes(32), icmp_echo("10.9.0.1", "10.9.0.2", ident=1)))
    nodes[1].transport.send(Contact(target.identity.public_key, target.endpoint), forged, net.now)
    net.flush(nodes[1].endpoint)
    net.run_for(3.0)
    assert target._vpn is not None and target.tun_out == []
    assert target.vpn.switch.drops == {"unknown-network": 1}  # counted as before: a network it is not in


def test_counters_read_every_name_and_store_only_what_moved():
    c = Counters(("sent", "received", "dropped"))
    c["received"] += 2
    c["received"] += 1
    assert dict(c) == {"sent": 0, "received": 3, "dropped": 0}
    assert {**c} == dict(c) and list(c) == ["sent", "received", "dropped"] and len(c) == 3
    assert sorted(c.items()) == [("dropped", 0), ("received", 3), ("sent", 0)]
    assert c.get("sent") == 0 and c.get("nope") is None and c.get("nope", 7) == 7
    assert "sent" in c and "nope" not in c
    assert json.loads(json.dumps(c)) == {"sent": 0, "received": 3, "dropped": 0}
    assert c == {"sent": 0, "received": 3, "dropped": 0} and c != {"received": 3}
    assert dict.__len__(c) == 1  # one stored entry, not three
    with pytest.raises(KeyError):
        c["recieved"] += 1  # a typo is still an error, not a new counter
    c["extra"] = 5  # an undeclared name set on purpose shows, after the declared ones
    assert list(c) == ["sent", "received", "dropped", "extra"]


def test_shared_contact_is_the_decoded_contact_and_equal_to_a_new_one():
    from weftnet.core import contact as contact_mod
    from weftnet.core.identity import Identity
    import random

    ident = Identity.generate(random.Random(5))
    ep = ("198.51.100.9", 4501)
    encoded = bytearray()
    Contact(ident.public_key, ep)._pack_body(encoded)
    decoded, _ = Contact._unpack_body(memoryview(bytes(encoded)), 0)
    got = shared_contact(bytes(ident.public_key), ep)
    assert got is decoded and got == Contact(ident.public_key, ep)
    assert shared_contact(ident.public_key, ("198.51.100.9", 4502)).endpoint == ("198.51.100.9", 4502)
    assert shared_contact(ident.public_key, ("node-7", 1)) == Contact(ident.public_key, ("node-7", 1))
    assert len(contact_mod._CACHE) <= 65536


def test_tables_of_requests_and_operations_give_their_room_back_once_empty():
    """A put asks many nodes at once; once every request and operation has ended, the node's tables of
    them are as small as a new node's (a dict keeps the table it grew to until it is cleared)."""
    import sys

    net, _rng, nodes = build(seed=25, n=8)
    for i, node in enumerate(nodes[1:4]):
        put = _settle(net, node, node.put(b"record %d" % i, net.now))
        assert put.ok
    net.run_for(30.0)
    empty = sys.getsizeof({})
    for core in nodes:
        for table in (core.dht._requests, core.dht._ops, core._ops, core._dht_ops, core.sessionless._pending):
            assert not table and sys.getsizeof(table) == empty, core.node_id.short()


def _dht_run(monkeypatch, lazy: bool):
    monkeypatch.setattr(NodeCore, "LAZY_REACH_PATHS", lazy)
    net, _rng, nodes = build(seed=27, n=8)
    keys = []
    for i, node in enumerate(nodes[1:5]):
        put = _settle(net, node, node.put(b"value %d" % i, net.now))
        assert put.ok
        keys.append(put.key)
    got = [_settle(net, nodes[(i + 3) % 8], nodes[(i + 3) % 8].get(k, net.now)) for i, k in enumerate(keys)]
    return net, nodes, got


def test_reach_and_paths_built_late_give_the_node_what_building_them_at_once_gave(monkeypatch):
    """A DHT node (reach, relaying and transit off; no links, routes or classes) builds Reach and
    Paths on first use. Until then it does what a node that built them at once does, to the byte;
    once built (here by status()), the transport's hooks are the ones building at once set."""
    net_e, eager, got_e = _dht_run(monkeypatch, False)
    net_l, lazy, got_l = _dht_run(monkeypatch, True)
    assert [(g.ok, g.value) for g in got_l] == [(g.ok, g.value) for g in got_e] and all(g.ok for g in got_l)
    for e, n in zip(eager, lazy):
        assert e._reach is not None and n._reach is None and n._paths is None
        assert [c.node_id for c in n.dht.table.contacts()] == [c.node_id for c in e.dht.table.contacts()]
        assert dict(n.dht.stats) == dict(e.dht.stats) and dict(n.transport.stats) == dict(e.transport.stats)
    for e, n in zip(eager, lazy):
        st_e, st_l = e.status(net_e.now), n.status(net_l.now)  # builds them
        assert st_l["reach"] == st_e["reach"] and st_l["paths"] == st_e["paths"]
        te, tl = e.transport, n.transport
        assert type(tl.relay) is type(te.relay) and tl.relay is n.paths.transit
        assert tl.relay.enabled == te.relay.enabled and type(tl.relay.relay) is type(te.relay.relay)
        assert type(tl.policy) is type(te.policy) and tl.policy.trust == te.policy.trust
        assert tl.policy is n.paths.policy and tl.on_clear == n.reach.on_clear and tl.steer == n.paths.steer
        assert (tl.paths_wanted, tl.quiet_after) == (te.paths_wanted, te.quiet_after)
        assert n.reach._first_session == e.reach._first_session


def test_the_first_thing_the_transport_asks_of_its_relay_or_policy_builds_reach_and_paths():
    core = NodeCore(Identity.generate(random.Random(5)), random.Random(5), 100.0)
    assert core._reach is None and core._paths is None
    assert core.transport.relay.enabled is False  # a Transit that does not pass transit traffic
    assert core._reach is not None and core.transport.relay is core.paths.transit
    assert core.transport.policy is core.paths.policy and core.reach.relay is None
    with_relay = NodeCore(Identity.generate(random.Random(6)), random.Random(6), 100.0,
                          NodeConfig(reach=ReachConfig(enabled=True)))
    assert with_relay._reach is not None and with_relay._paths is not None  # reach on: built at once


def test_nodes_with_no_query_in_flight_keep_no_contact_that_only_the_contact_cache_holds(monkeypatch):
    """The contact cache (core/contact.py) holds its contacts plainly and drops those nothing else holds
    by sweeps: once the nodes' lookups are over, the contacts only those lookups held are gone, not left
    until the next decode (~10 a node at 1,000 nodes, ~360 bytes each; bench/results/dmem12)."""
    from weftnet.core import contact as contact_mod

    cache: dict = {}
    monkeypatch.setattr(contact_mod, "_CACHE", cache)
    decoded: dict = {}  # id -> the encoding of every contact made from the wire (kept alive: ids stay theirs)
    keep = contact_mod._keep

    def _keep(raw, obj):
        decoded[id(raw)] = raw
        keep(raw, obj)

    monkeypatch.setattr(contact_mod, "_keep", _keep)
    net, _rng, nodes = build(seed=29, n=8)
    for i, node in enumerate(nodes[1:6]):
        put = _settle(net, node, node.put(b"kept %d" % i, net.now))
        assert put.ok
        got = _settle(net, nodes[(i + 4) % 8], nodes[(i + 4) % 8].get(put.key, net.now))
        assert got.ok and got.value == b"kept %d" % i
    del put, got
    assert cache and all(type(c) is Contact for c in cache.values())
    assert not contact_mod._unheld(cache, contact_mod._BASE)
    # and what the routing tables hold of what came off the wire is still there (hits, not decodes)
    held = {c.wire for n in nodes for c in n.dht.table.contacts() if decoded.get(id(c.wire)) is c.wire}
    assert held and held <= set(cache)


def test_a_contact_read_from_an_answer_keeps_the_address_tuple_its_own_answers_come_from(monkeypatch):
    """A contact decoded from a DHT answer comes with a tuple and a port of its own; once it answers us
    from that endpoint it holds the one tuple the network hands us for that address instead (~96 bytes
    a contact, ~40 a node at 1,000 nodes; bench/results/dmem12). Equal either way."""
    from weftnet.core import contact as contact_mod

    decoded = {}  # contacts a DHT answer's decode made (not found in the cache, not made for an asker)
    unpack = contact_mod.ContactSeq.unpack

    def recording(self, buf, off):
        before = {id(c) for c in contact_mod._CACHE.values()}
        items, end = unpack(self, buf, off)
        for c in items:
            if id(c) not in before:
                decoded[id(c)] = c
        return items, end

    monkeypatch.setattr(contact_mod.ContactSeq, "unpack", recording)
    net, _rng, nodes = build(seed=31, n=8)
    sources = {}  # the address objects the network handed the nodes: a new one a datagram (kept)
    transmit = net._transmit

    def fresh_source(src, dst, data):
        src = (str(src[0]), int(src[1]))
        sources[id(src)] = src
        transmit(src, dst, data)

    net._transmit = fresh_source
    for i, node in enumerate(nodes[2:7]):
        put = _settle(net, node, node.put(b"shared %d" % i, net.now))
        assert put.ok
    decoded_that_answered = 0
    for n in nodes:
        for c in n.dht.table.contacts():
            if decoded.get(id(c)) is c and n.sessionless._cookie_from(c.key, net.now, 1e9) is not None:
                decoded_that_answered += 1
                assert sources.get(id(c.endpoint)) is c.endpoint
                assert c == Contact(c.public_key, tuple(c.endpoint)) and hash(c) == hash(Contact(c.public_key, c.endpoint))
    assert decoded_that_answered > 0


def test_tables_a_node_never_writes_are_one_read_only_empty_table_until_its_first_write():
    """Tables most nodes never write (routed messages, rejections, failed contacts, forwarders' next
    hops, load cookies, a prefix's stored records) start as one shared empty table that refuses
    writes, so a write site that forgot to swap in its own would fail, never share one node's entries
    with another (bench/results/dmem14); the first write gives the node a dict of its own."""
    from weftnet.core.limits import NO_ENTRIES

    rng = random.Random(41)
    a, b = (NodeCore(Identity.generate(rng), rng, 0.0, NodeConfig.lab(), endpoint=("127.0.0.1", 4100 + i))
            for i in range(2))
    tables = lambda n: (n.dht._routes, n.dht.reject_reasons, n.dht.table._failures, n.sessionless._proven,
                        n.sessionless._load_cookies, n.dht.index._prefix)
    assert all(t is NO_ENTRIES for n in (a, b) for t in tables(n))
    for write in (lambda t: t.__setitem__(1, 1), lambda t: t.setdefault(1, 1), lambda t: t.update({1: 1}),
                  lambda t: t.__delitem__(1)):
        with pytest.raises((TypeError, AttributeError)):
            write(NO_ENTRIES)
    assert len(NO_ENTRIES) == 0 and NO_ENTRIES.get(1) is None and 1 not in NO_ENTRIES
    a.dht._reject("too large", None)
    peer = Contact(Identity.generate(rng).public_key, ("198.51.100.7", 4107))
    assert a.dht.table.add(peer, 0.0) and not a.dht.table.fail(peer.key)
    a.dht.store.put(StoredRecord(b"k" * 32, b"v" * 10, 100.0, False, None, 0.0, b"o" * 32, "198.51.100.0/24"))
    assert a.dht.reject_reasons == {"too large": 1} and a.dht.summary()["rejected"] == {"too large": 1}
    assert a.dht.table.failures(peer.key) == 1 and a.dht.index.usage(b"o" * 32, "198.51.100.0/24")[2] == 1
    assert all(t is NO_ENTRIES for t in tables(b))  # the other node's are still empty
    assert b.dht.summary()["rejected"] == {} and b.dht.table.failures(peer.key) == 0


def test_a_joined_dht_node_keeps_no_hello_half_open_or_fragment_table_and_builds_admission_buckets_on_use():
    """A node's transport tables that a DHT node fills once, or never (the hello it joined with, the
    half-open peer it confirmed, fragments, admission's rate limits, the TCP links), hold nothing of
    their own once done: the shared read-only empty table, or no table (bench/results/dmem15). What
    they hold when used is unchanged: a second hello, a rate limit with the configured rate."""
    from types import MappingProxyType

    from weftnet.core.limits import NO_ENTRIES

    net, _rng, nodes = build(seed=43, n=6)
    for i, node in enumerate(nodes[1:3]):
        assert _settle(net, node, node.put(b"joined %d" % i, net.now)).ok
    net.run_for(30.0)
    for core in nodes:
        t = core.transport
        assert core.peers(net.now), core.node_id.short()  # it joined
        assert t._hello_pending is NO_ENTRIES and t._hello_expect is NO_ENTRIES
        assert t._half_open is NO_ENTRIES
        assert t._reassembly is None  # no payload in this run was cut in fragments
        assert core.worker_slots is NO_ENTRIES and core._reach_held is NO_ENTRIES
        assert type(core.texts_dropped) is MappingProxyType and dict(core.texts_dropped) == {"forged": 0, "unsigned": 0}
    hub = nodes[0].transport.admission
    assert hub._hello_addr is not None and hub._known  # it answered the joiners' hellos and handshakes
    assert hub._hello_addr.rate == float(nodes[0].config.transport.hello_per_source_per_second)
    assert nodes[1].transport.admission._hello_addr is None  # a joiner never answered a hello
    # A node that joined still says hello again: the table is its own again while the hello is pending.
    late = nodes[1].transport
    late.connect(("198.18.40.1", 4500), net.now)
    assert late._hello_pending is not NO_ENTRIES and ("198.18.40.1", 4500) in late._hello_pending
    assert nodes[2].transport._hello_pending is NO_ENTRIES
    net.flush(nodes[1].endpoint)
    net.run_for(120.0)  # nobody there: it gives up, and the table is the shared empty one again
    assert late._hello_pending is NO_ENTRIES


def test_a_dht_nodes_kept_peer_keys_and_rtt_estimates_are_found_by_tag_each_peer_its_own():
    """The sessionless keys a node keeps (ss with each peer) and its RTT and hint-credit estimates are
    slot tables found by a byte tag, not dicts (bench/results/dmem16): after joins and puts each kept ss
    is the one with that peer's own key, each estimate belongs to a node of the network, and the
    tables take less than a dict of their peers would."""
    import sys

    from weftnet.core.dht.sessionless import static_dh

    net, _rng, nodes = build(seed=44, n=8)
    for i, node in enumerate(nodes[1:4]):
        assert _settle(net, node, node.put(b"kept %d" % i, net.now)).ok
    net.run_for(30.0)
    by_key = {core.dht.contact.key: core for core in nodes}
    kept = 0
    for core in nodes:
        s, est = core.sessionless, core.dht._rtt
        assert len(s._peers) == len(s._tags) == len(s._slots) // 56 <= s.keys_max
        for key in s._peers:
            assert s._peers[s._slot_of(key)] == key
            assert s._static_dh(b"unused: kept", key) == static_dh(core.identity, by_key[key].identity.public_key)
            kept += 1
        assert est._slot is None and set(est._keys) <= set(by_key) and len(est) == len(est._v) // 3
        if s._peers:
            assert sys.getsizeof(s._peers) + sys.getsizeof(s._tags) < sys.getsizeof(dict.fromkeys(s._peers))
    assert kept >= len(nodes)  # every node asked or answered sessionless queries

"""A key's own endpoint record as reflection (docs/security.md, item 19), on the hostile harness.

The attacker holds a second key, K, never online, and publishes K's endpoint record (a signed DHT
record, as every node publishes its own: docs/reach.md) naming eight victims' addresses as K's
candidates. Then, answering one lookup, it names K at a ninth victim's address. The node asks
that hint, reads K's record when the ask goes unanswered, and tries the paths the record names:
before, every one of them, again every second for the handshake's ten seconds. Now each Init to a
path nobody heard K on is paid from the credit the replying node earned with the bytes of its own
answers (as the hint's ask is, item 6): the victims get no more than the attacker paid.
"""

from __future__ import annotations

import random
from unittest import mock

from hostile_tools import Sink, overlay, wait

from weftnet.core.contact import Contact
from weftnet.core.dht import MutableRecord
from weftnet.core.dht.messages import Nodes
from weftnet.core.identity import Identity, NodeId
from weftnet.core.node import NodeConfig
from weftnet.core.reach.engine import ENDPOINT_SALT, ReachConfig
from weftnet.core.reach.messages import CAND_REFLEXIVE, NAT_EIM, NAT_PUBLIC, Candidate, EndpointRecord, RelayRef
from weftnet.core.wire import encode


def _attack(record_of, newcomer=False):
    """The attacker's record for K (``record_of(named)``), then one reply naming K at a ninth address.
    ``newcomer``: the victim node has had no answer from the attacker before (its credit is the
    one ask every source starts with)."""
    net, nodes = overlay(12, seed=6, config_for=lambda i: NodeConfig(reach=ReachConfig(enabled=True)))
    v, a = nodes[0], nodes[1]
    named = [(f"192.0.2.{70 + i}", 53) for i in range(8)]
    sinks = [net.add(x, Sink()) for x in named]
    hinted = ("192.0.2.66", 53)
    hint_sink = net.add(hinted, Sink())
    k = Identity.generate(random.Random(99))
    record = MutableRecord.create(k, ENDPOINT_SALT, 1, 3600, encode(record_of(named)))
    a.dht.put(record, net.now)
    net.flush(a.endpoint)
    net.run_for(5.0)
    assert sum(n.dht.store.get(record.key) is not None for n in nodes) >= 5  # where a read finds it
    a.dht._nodes_reply = lambda sender, rid, target, near=False: Nodes(rid, (Contact(k.public_key, hinted),))
    near = NodeId(a.node_id.raw[:31] + bytes([a.node_id.raw[31] ^ 1]))
    skey = a.node_id.int  # (the DHT's credit is kept per contact key: the ID as an integer)
    if newcomer:
        v.dht._rtt.forget(skey)
    paid = [v.dht._rtt.credit_of(skey)]  # what the attacker's earlier answers left it, and what it earns now
    rtt, credit = v.dht._rtt, type(v.dht._rtt).credit

    def counted(self, key, amount):
        if self is rtt and key == skey:
            paid.append(amount)
        credit(self, key, amount)

    with mock.patch.object(type(rtt), "credit", counted):
        wait(net, v, v.lookup(near, net.now))
        net.run_for(60.0)
    assert hint_sink.datagrams <= 2  # the ask and its paid second datagram (item 6)
    assert not v.transport.has_session(k.node_id)
    # Every byte the victims got was paid for by bytes of the attacker's own answers (or is the one
    # ask every source starts with).
    assert hint_sink.bytes + sum(s.bytes for s in sinks) <= sum(paid), (hint_sink.bytes, sum(paid))
    return v, [s.datagrams for s in sinks], sum(s.bytes for s in sinks)


def test_a_record_naming_victims_gets_them_a_few_inits_not_a_handshake_s_retries():
    v, datagrams, _ = _attack(lambda named: EndpointRecord(
        NAT_PUBLIC, 1, tuple(Candidate(CAND_REFLEXIVE, x) for x in named), ()))
    # Before: 14,832 bytes in 72 Inits to the record's addresses (9 each), 2,316 in 11 to the hinted
    # one; then (a read granting two paths an Init each, charged to no one) 824 bytes in 4.
    assert sum(datagrams) <= 2 and sum(1 for d in datagrams if d) <= 1, datagrams
    assert v.transport.stats["claimed_inits_withheld"] > 0


def test_a_record_naming_victims_as_its_relays_gets_each_one_init_per_read():
    """The same through the record's relay references: a handshake to each named "relay"."""
    v, datagrams, sent = _attack(lambda named: EndpointRecord(NAT_EIM, 2, (), tuple(
        RelayRef(Identity.generate(random.Random(500 + i)).public_key, x) for i, x in enumerate(named[:4]))))
    # Before: 36 Inits (14,616 bytes), 9 to each of the four, each carrying the relayed Init; then
    # (one Init to each relay a read names, charged to no one) 1,312 bytes in 8.
    assert max(datagrams) <= 2 and sum(datagrams) <= 3, datagrams
    assert sent <= 256 * sum(datagrams)  # no Init to a second-hand address above a hint's cost


def test_a_record_from_a_source_that_sent_us_almost_nothing_gets_its_victims_what_it_paid():
    """An attacker whose answers to this one lookup are all it ever sent us: its one free ask goes
    to the hint, and the record it led to earns the Inits its own answer holding the record pays
    for: one (two through its relays). Before, 20 (3,280 bytes) and 14 (2,296): an unpaid hint's
    record started a handshake as if our user had asked for the node."""
    v, datagrams, _ = _attack(lambda named: EndpointRecord(
        NAT_PUBLIC, 1, tuple(Candidate(CAND_REFLEXIVE, x) for x in named), ()), newcomer=True)
    assert sum(datagrams) <= 1, datagrams
    v, datagrams, _ = _attack(lambda named: EndpointRecord(NAT_EIM, 2, (), tuple(
        RelayRef(Identity.generate(random.Random(500 + i)).public_key, x) for i, x in enumerate(named[:4]))),
        newcomer=True)
    assert sum(datagrams) <= 2, datagrams
    assert v.reach.stats["claimed_relays_unpaid"] > 0

"""A key's own endpoint record as reflection (docs/security.md, item 19), on the hostile harness.

The attacker holds a second key, K, never online, and publishes K's endpoint record (a signed DHT
record, as every node publishes its own: docs/reach.md) naming eight victims' addresses as K's
candidates. Then, answering one lookup, it names K at a ninth victim's address. The node asks
that hint, reads K's record when the ask goes unanswered, and tries the paths the record names:
before, every one of them, again every second for the handshake's ten seconds.
"""

from __future__ import annotations

import random

from hostile_tools import Sink, overlay, wait

from weftnet.core.contact import Contact
from weftnet.core.dht import MutableRecord
from weftnet.core.dht.messages import Nodes
from weftnet.core.identity import Identity, NodeId
from weftnet.core.node import NodeConfig
from weftnet.core.reach.engine import ENDPOINT_SALT, ReachConfig
from weftnet.core.reach.messages import CAND_REFLEXIVE, NAT_EIM, NAT_PUBLIC, Candidate, EndpointRecord, RelayRef
from weftnet.core.wire import encode


def _attack(record_of):
    """The attacker's record for K (``record_of(named)``), then one reply naming K at a ninth address."""
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
    wait(net, v, v.lookup(near, net.now))
    net.run_for(60.0)
    assert hint_sink.datagrams <= 2  # the ask and its paid second datagram (item 6)
    assert not v.transport.has_session(k.node_id)
    return v, [s.datagrams for s in sinks], sum(s.bytes for s in sinks)


def test_a_record_naming_victims_gets_them_a_few_inits_not_a_handshake_s_retries():
    v, datagrams, _ = _attack(lambda named: EndpointRecord(
        NAT_PUBLIC, 1, tuple(Candidate(CAND_REFLEXIVE, x) for x in named), ()))
    # Before: 14,832 bytes in 72 Inits to the record's addresses (9 each), 2,316 in 11 to the hinted one.
    assert sum(datagrams) <= 4 and sum(1 for d in datagrams if d) <= 2, datagrams
    assert v.transport.stats["claimed_inits_withheld"] > 0


def test_a_record_naming_victims_as_its_relays_gets_each_one_init_per_read():
    """The same through the record's relay references: a handshake to each named "relay"."""
    v, datagrams, sent = _attack(lambda named: EndpointRecord(NAT_EIM, 2, (), tuple(
        RelayRef(Identity.generate(random.Random(500 + i)).public_key, x) for i, x in enumerate(named[:4]))))
    # Before: 36 Inits (14,616 bytes), 9 to each of the four, each carrying the relayed Init.
    assert max(datagrams) <= 2 and sum(datagrams) <= 8, datagrams
    assert sent <= 256 * sum(datagrams)  # no Init to a second-hand address above a hint's cost

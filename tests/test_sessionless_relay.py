"""A relay opens sessions for its registered nodes to nodes it met only through sessionless queries.

docs/deploy.md, step 10, with sessionless DHT queries on: site D, without UDP, registers with the
relay over TCP and reaches the other sites through it. The relay opens a session to the next hop on
D's behalf only to an endpoint it knows first-hand (core/session/transport.py, ``_on_forward``).
Join handshakes used to leave the relay a session with every node its join met; sessionless
queries leave none, and the routing table (in a large overlay, a full bucket; here R's buckets
hold one contact each) may have no room for that node, so the relay refused
D's handshake to it and D never reached it. Sans-IO: NodeCores in the simulator's NAT lab.
"""

from __future__ import annotations

import pytest
from reach_lab import SimLab


def lab_of(seed: int) -> SimLab:
    """A (the entry), R (relay), B and C public in one /24; D behind a router that drops UDP."""
    lab = SimLab(seed=seed)
    lab.public("A")
    lab.public("R", relay=True)
    lab.public("B")
    lab.public("C")
    lab.behind("D", "udp-blocked")
    for name, core in lab.cores.items():
        core.dht.table.per_prefix = None
    # R's table holds one contact per bucket (its buckets full, as in a large overlay); the others'
    # hold all, so every lookup finds every node and only R's next-hop knowledge is in question.
    lab.cores["R"].dht.table.k = 1
    lab.join_all()
    return lab


# Seeds whose IDs put B or C in a bucket of R's already full (at k = 1 most put each in its own).
@pytest.mark.parametrize("seed", [22, 55])
def test_a_udp_blocked_node_reaches_a_node_its_relay_met_only_sessionless(seed):
    lab = lab_of(seed)
    r, d = lab.cores["R"], lab.cores["D"]
    assert lab.path("D", "R") == "tcp"
    # The nodes R neither holds in its routing table nor has a session with (which ones depends on
    # who asked whom first): R knows them only from sessionless queries, whose address they proved.
    strangers = [n for n in "BC" if not r.transport.has_session(lab.cores[n].node_id)
                 and r.dht.contact_for(lab.cores[n].node_id) is None]
    assert strangers and r.transport.stats["handshakes_initiated"] <= 2
    for name in strangers:
        x = lab.cores[name]
        assert r.sessionless.proven_contact(x.node_id).endpoint == x.endpoint
        assert not d.transport.has_session(x.node_id)
        d.transport.connect(x.endpoint, lab.net.now, x.identity.public_key)  # its UDP goes nowhere
        lab.run(10)
        assert d.transport.has_session(x.node_id) and lab.path("D", name) == "relay"
        assert lab.ping("D", name).ok and lab.ping(name, "D").ok
    assert r.reach.relay.stats["opened_for_peers"] >= len(strangers)
    assert r.reach.relay.stats["refused_no_session"] == 0


def test_only_a_forwarder_keeps_the_contacts_it_met_sessionless():
    """What the relay keeps is bounded (the sessionless cache's size) and costs nodes that pass
    nothing on nothing: the DHT's memory per node is a bench column."""
    lab = lab_of(22)
    r = lab.cores["R"]
    met = [n for n in "ABC" if r.sessionless.proven_contact(lab.cores[n].node_id) is not None]
    assert met
    for name in "ABCD":
        core = lab.cores[name]
        assert all(core.sessionless.proven_contact(o.node_id) is None for o in lab.cores.values())
    assert 0 < r.sessionless.summary()["next_hops_kept"] <= r.sessionless.cache

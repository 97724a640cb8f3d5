"""``connect(..., join=True)``: the request ends when the node has joined, not when its first session is up.

What a user (bench/dht, a script bringing nodes up one after another) notices: once the join is
reported done, the new node's table is filled near its ID, the nodes nearest to it already know
it, and a record put before it joined is read at once. A plain ``connect`` still reports as soon
as the session to the bootstrap peer is up, with the join lookup still running.
"""

import random

from weftnet.core.dht.records import ImmutableRecord
from weftnet.core.identity import Identity
from weftnet.core.node import Connected, GetResult, NodeCore
from weftnet.sim.harness import SimNetwork


def _core(net, rng, i):
    core = NodeCore(Identity.generate(rng), random.Random(1000 + i), net.now)
    core.set_local_endpoint((f"198.18.{i}.1", 4500))  # one /24 each: the per-prefix limit would hide some
    net.add(core.endpoint, core)
    return core


def _wait(net, core, kind, seconds=30.0):
    seen = []

    def done():
        while (ev := core.next_event()) is not None:
            if isinstance(ev, kind):
                seen.append(ev)
        return bool(seen)

    net.run_for(seconds, until=done)
    return seen[0] if seen else None


def _network(n=40, seed=7):
    net, rng = SimNetwork(seed), random.Random(seed)
    nodes = [_core(net, rng, 0)]
    for i in range(1, n):
        core = _core(net, rng, i)
        core.connect(nodes[0].endpoint, net.now, join=True)
        net.flush(core.endpoint)
        assert _wait(net, core, Connected).ok
        nodes.append(core)
    net.run_for(30.0)  # the join fills end
    for core in nodes:
        while core.next_event() is not None:
            pass
    return net, rng, nodes


def _nearest(nodes, node_id, count):
    return sorted((c for c in nodes if c.node_id != node_id), key=lambda c: c.node_id.int ^ node_id.int)[:count]


def test_a_join_reports_done_when_the_node_is_known_to_its_neighbours_and_can_read_at_once():
    net, rng, nodes = _network()
    record = ImmutableRecord(b"put before the newcomer joined")
    nodes[5].put(record.value, net.now)
    net.flush(nodes[5].endpoint)
    net.run_for(10.0)

    newcomer = _core(net, rng, 200)
    newcomer.connect(nodes[3].endpoint, net.now, join=True)
    net.flush(newcomer.endpoint)
    ev = _wait(net, newcomer, Connected)
    assert ev is not None and ev.ok and ev.node_id == nodes[3].node_id
    # Joined: the table holds the neighbourhood, and the nearest nodes have it in theirs.
    assert len(newcomer.dht.table) >= 20
    near = _nearest(nodes, newcomer.node_id, 5)
    assert all(c.dht.table.get(newcomer.node_id.int) is not None for c in near)
    # ... and a read needs nothing more.
    newcomer.get(record.key, net.now)
    net.flush(newcomer.endpoint)
    got = _wait(net, newcomer, GetResult)
    assert got is not None and got.ok and got.value == record.value


def test_a_plain_connect_reports_the_session_before_the_join_lookup_has_run():
    net, rng, nodes = _network(n=30, seed=8)
    newcomer = _core(net, rng, 201)
    newcomer.connect(nodes[0].endpoint, net.now)
    net.flush(newcomer.endpoint)
    ev = _wait(net, newcomer, Connected)
    assert ev is not None and ev.ok
    assert len(newcomer.dht.table) == 1  # only the bootstrap peer so far; the join goes on after
    net.run_for(10.0)
    assert len(newcomer.dht.table) >= 20


def test_a_join_through_a_silent_endpoint_fails_with_a_reason():
    net, rng, nodes = _network(n=3, seed=9)
    newcomer = _core(net, rng, 202)
    newcomer.connect(("198.18.250.1", 4500), net.now, join=True)  # nobody there
    net.flush(newcomer.endpoint)
    ev = _wait(net, newcomer, Connected, seconds=60.0)
    assert ev is not None and not ev.ok and "did not answer" in ev.error


def test_a_join_proves_its_address_in_50_bytes_and_its_fill_asks_only_nodes_it_does_not_hold():
    """What a join costs the network (issue 16: join CPU against kademlia's): a proof of address
    is one 50-byte DhtProof, not a 122-byte sealed query, and the table fill after the join asks
    only nodes the newcomer's table does not hold yet, starting from those its join lookup heard
    of: asking a contact it holds adds nothing to either table."""
    net, rng, nodes = _network(n=60, seed=11)
    newcomer = _core(net, rng, 203)
    sent = []
    net.on_deliver = lambda src, dst, data: sent.append((dst, data)) if src == newcomer.endpoint else None
    newcomer.connect(nodes[7].endpoint, net.now, join=True)
    net.flush(newcomer.endpoint)
    assert _wait(net, newcomer, Connected).ok
    held = {c.endpoint for c in newcomer.dht.export_contacts()}  # the table as the fill starts
    joined = len(sent)
    net.run_for(30.0)
    fill = [dst for dst, data in sent[joined:] if data[1] == 0x32]
    assert len(fill) >= 4  # the fill ran (the far buckets of a 60-node network are not full)
    assert not [dst for dst in fill if dst in held]
    assert len(newcomer.dht.table) >= len(held) + len(fill) - 2  # (nearly) every fill request a new contact
    proofs = [data for _dst, data in sent if data[1] == 0x34]
    assert len(proofs) >= 15 and {len(p) for p in proofs} == {50}
    empty_queries = [data for _dst, data in sent if data[1] == 0x32 and len(data) < 150]
    assert not empty_queries  # (the old proof: a DhtQuery with an empty request, 122 bytes)
    print(f"join: {joined} datagrams, fill: {len(sent) - joined}, proofs {len(proofs)}, table {len(newcomer.dht.table)}")

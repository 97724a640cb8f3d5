"""Path MTU discovery over a session (core/session/pmtu.py): the search, and two nodes using what it finds."""

import random

import pytest

from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore, PathMtuChanged
from weftnet.core.session.pmtu import GRANULARITY, MAX_ROUNDS, SEAL_OVERHEAD, PathMtu, PathMtuFound, MtuProbe
from weftnet.core.wire import decode, encode

T0 = 1_000_000.0
A, B = Identity.from_seed(bytes(31) + b"\x01").node_id, Identity.from_seed(bytes(31) + b"\x02").node_id


def search(path_datagram: int, loss_every: int = 0, ceiling: int = 8972) -> tuple[PathMtuFound, int]:
    """Run a search from A to B over a path that carries datagrams up to ``path_datagram`` bytes."""
    a, b = PathMtu(1344, ceiling), PathMtu(1344, ceiling)
    now = T0
    a.start(B, 4, now)
    rounds = 0
    sent = 0
    while (ev := a.next_event()) is None:
        probes = a.probes_to_send()
        if probes:
            rounds += 1
        for node_id, payload in probes:
            assert node_id == B
            sent += 1
            datagram = len(payload) + SEAL_OVERHEAD
            if datagram > path_datagram or (loss_every and sent % loss_every == 0):
                continue  # dropped on the way (don't-fragment)
            ack = b.on_payload(A, payload, now)
            assert ack is not None and len(ack) < 16  # the answer is small, whatever the probe
            a.on_payload(B, ack, now + 0.01)
        if not probes or a.get_timer() is not None and a.get_timer() <= now + 1:
            now = max(now, a.get_timer() or now)
            a.handle_timer(now)
        assert rounds <= MAX_ROUNDS + 1
    return ev, rounds


@pytest.mark.parametrize("mtu", [1500, 9000, 1400, 1380, 1492, 4000, 2345])
def test_the_search_finds_the_largest_datagram_the_path_carries(mtu):
    path = mtu - 28
    ev, rounds = search(path)
    assert isinstance(ev, PathMtuFound) and ev.node_id == B
    assert path - GRANULARITY <= ev.datagram <= path
    assert ev.link_mtu == ev.datagram + 28
    assert rounds <= MAX_ROUNDS


def test_common_links_are_settled_in_one_round():
    for mtu in (1500, 9000, 1400):
        ev, rounds = search(mtu - 28)
        assert (ev.datagram, rounds) == (mtu - 28, 1)


def test_a_path_smaller_than_the_start_keeps_the_start_and_losses_only_make_it_smaller():
    ev, _ = search(1300)
    assert ev.datagram == 1344  # what the transport sent before; nothing larger arrived
    ev, _ = search(1472, loss_every=3)
    assert ev.datagram <= 1472


def test_acks_from_someone_else_or_for_nothing_change_nothing():
    a = PathMtu(1344, 8972)
    a.start(B, 4, T0)
    probes = a.probes_to_send()
    pid = decode(probes[0][1]).probe_id
    ack = encode(MtuProbe(pid, 1))
    stranger = Identity.from_seed(bytes(31) + b"\x09").node_id
    assert a.on_payload(stranger, ack, T0) is None
    assert a.on_payload(B, encode(MtuProbe(0xFFFF, 1)), T0) is None
    assert a.stats["unexpected_acks"] == 2
    assert a.on_payload(B, b"\x01\x5b\x00", T0) is None and a.stats["malformed"] == 1
    with pytest.raises(ValueError):
        MtuProbe(1, 1, b"pad")  # an ack is never padded: answering costs less than asking


def test_the_table_is_bounded():
    a = PathMtu(1344, 8972, max_peers=4)
    for i in range(10):
        a.start(Identity.from_seed(bytes(31) + bytes([i + 10])).node_id, 4, T0)
    assert len(a._searches) == 4
    assert len(a._by_probe) == sum(len(s.outstanding) for s in a._searches.values())


def pair(pmtu_ceiling=8972):
    rng = random.Random(4)
    cfg = NodeConfig(pmtu_ceiling=pmtu_ceiling)
    a = NodeCore(Identity.generate(rng), random.Random(1), T0, cfg)
    b = NodeCore(Identity.generate(rng), random.Random(2), T0, cfg)
    a.set_local_endpoint(("192.0.2.1", 4500))
    b.set_local_endpoint(("192.0.2.2", 4500))
    return a, b


def run(a, b, path_datagram, seconds=6.0, sizes=None, start=T0):
    """Carry datagrams both ways for ``seconds``, dropping those larger than the path allows."""
    now = start
    nodes = {a.endpoint: a, b.endpoint: b}
    src = {id(a): a.endpoint, id(b): b.endpoint}
    end = start + seconds
    while now < end:
        moved = False
        for node in (a, b):
            for data, dst in node.datagrams_to_send(now) + node.probes_to_send():
                moved = True
                if sizes is not None:
                    sizes.append(len(data))
                if len(data) <= path_datagram and dst in nodes:
                    nodes[dst].receive_datagram(data, src[id(node)], now)
        if not moved:
            timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
            now = max(now + 0.001, min(timers)) if timers else end
            for node in (a, b):
                t = node.get_timer()
                if t is not None and t <= now:
                    node.handle_timer(now)
    return now


def events(core, cls):
    out = []
    while (ev := core.next_event()) is not None:
        if isinstance(ev, cls):
            out.append(ev)
    return out


def test_two_nodes_measure_their_path_and_send_datagrams_that_size():
    a, b = pair()
    a.connect(b.endpoint, T0)
    run(a, b, 1472)
    assert not events(a, PathMtuChanged)  # nothing large was sent: no probe, no cost
    assert a.pmtu.stats["probes_sent"] == 0
    # The first payload that needs fragments starts the search.
    a.transport.send_to(b.node_id, b"\x01\x20" + bytes(5_000), T0 + 6)
    a.handle_timer(T0 + 6)  # any pass through the node (a driver calls one after every input)
    run(a, b, 1472, seconds=3.0, start=T0 + 6)
    (found,) = events(a, PathMtuChanged)
    assert found.node_id == b.node_id and found.datagram == 1472 and found.link_mtu == 1500
    assert a.pmtu.size_for(b.node_id) == 1472
    # A large payload now leaves in 1,472-byte fragments instead of 1,344-byte ones.
    sizes = []
    a.transport.send_to(b.node_id, b"\x01\x20" + bytes(20_000), T0 + 9)
    run(a, b, 1472, seconds=0.1, sizes=sizes, start=T0 + 9)
    assert max(sizes) == 1472 and len(sizes) == -(-(20_002 + 16) // (1472 - 16))


def test_without_a_ceiling_nothing_is_probed():
    a, b = pair(pmtu_ceiling=0)
    a.connect(b.endpoint, T0)
    run(a, b, 9000)
    a.transport.send_to(b.node_id, b"\x01\x20" + bytes(5_000), T0 + 6)
    a.handle_timer(T0 + 6)
    sizes = []
    run(a, b, 9000, seconds=3.0, sizes=sizes, start=T0 + 6)
    assert not events(a, PathMtuChanged) and max(sizes) <= 1344 + 100
    assert a.pmtu.stats["probes_sent"] == 0


def test_the_cached_timer_is_always_the_earliest_deadline_of_the_searches():
    """get_timer is kept between changes (drivers ask after every batch): after any mix of starts,
    acks, losses, timers and forgotten peers it equals the minimum over the searches."""
    rng = random.Random(7)
    a, b = PathMtu(1344, 8972), PathMtu(1344, 8972)
    peers = [Identity.from_seed(bytes(30) + bytes((1, i))).node_id for i in range(4)]
    now = T0

    def truth():
        times = [t for s in a._searches.values() for t in (s.deadline, s.done_at) if t is not None]
        return min(times) if times else None

    for _ in range(400):
        step = rng.randrange(4)
        if step == 0:
            a.start(rng.choice(peers), 4, now)
        elif step == 1:
            for node_id, payload in a.probes_to_send():
                if rng.random() < 0.7:
                    a.on_payload(node_id, b.on_payload(A, payload, now), now)
        elif step == 2:
            now = max(now + 0.1, a.get_timer() or now)
            a.handle_timer(now)
        else:
            a.forget(rng.choice(peers))
        assert a.get_timer() == truth()

"""The simulator's hot paths give the same answers as the plain models they stand for.

The engine computes each message's delay inline instead of calling
``Underlay.one_way`` (it runs once per message, ~70 times per join at a
million nodes), and ``RoutingTable.closest`` picks the nearest of a partial
bucket with a sort. These tests pin both to the reference computation, so a
speed-up can never change what a simulation reports.
"""

from __future__ import annotations

import random

import pytest

from weftnet.core.contact import Contact
from weftnet.core.dht.routing import RoutingTable
from weftnet.sim.engine import Simulation
from weftnet.sim.underlay import UnderlayConfig


def _storm(sim: Simulation, n: int, lookups: int) -> list:
    first = sim.add_node()
    sim.join(first, None)

    def arrive() -> None:
        via = sim.random_alive()
        sim.join(sim.add_node(), via)

    for i in range(1, n):
        sim.at(i * 0.2, arrive)
    sim.run_until(n * 0.2 + 30)
    t = sim.now
    for i in range(lookups):
        sim.at(t + i * 0.1, sim.lookup)
    sim.run_until(t + lookups * 0.1 + 40)
    return [(r.start, r.ok, r.hops, r.latency, r.messages) for r in sim.metrics.lookups]


def test_inline_message_delays_equal_the_underlay_model():
    fast = Simulation(5)
    # A blocked region pair that no node is in sends every message through
    # Underlay.one_way (the reference) without losing any.
    slow = Simulation(5)
    slow.underlay.partition([250], [251])
    a, b = _storm(fast, 120, 60), _storm(slow, 120, 60)
    assert len(a) == 60 and sum(ok for _, ok, *_ in a) >= 59
    assert a == b
    assert fast.events_processed == slow.events_processed and fast.messages_lost == slow.messages_lost == 0


def test_loss_still_goes_through_the_underlay_model():
    sim = Simulation(3, underlay=UnderlayConfig(loss=0.2))
    _storm(sim, 60, 20)
    assert sim.messages_lost > 0 and sim.messages_delivered > 0


def test_huge_pages_change_no_result(monkeypatch):
    """The simulator asks the kernel to back its heap with 2 MiB pages as it grows (sim/hugepages.py):
    a run with that on reports the same lookups, events and messages as with it off; off
    (``WEFTNET_SIM_HUGEPAGES=0``), the kernel is never asked."""
    monkeypatch.setenv("WEFTNET_SIM_HUGEPAGES", "0")
    off = Simulation(7)
    assert off.hugepages._madvise is None
    monkeypatch.delenv("WEFTNET_SIM_HUGEPAGES")
    on = Simulation(7)
    a, b = _storm(on, 120, 60), _storm(off, 120, 60)
    assert len(a) == 60 and a == b
    assert on.events_processed == off.events_processed and on.messages_delivered == off.messages_delivered
    assert off.hugepages.passes == 0
    if on.hugepages._madvise is not None:  # Linux with transparent huge pages not "never"
        assert on.hugepages.passes >= 1


def _contact(rng: random.Random, i: int) -> Contact:
    return Contact(rng.randbytes(32), (f"10.0.{i // 256}.{i % 256}", 4000))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_closest_is_the_brute_force_nearest(seed):
    rng = random.Random(seed)
    own = _contact(rng, 0)
    table = RoutingTable(own.node_id.int, k=8, per_prefix=None)
    for i in range(1, 400):
        table.add(_contact(rng, i), 0.0)
    held = table.contacts()
    assert len(held) > 40  # several buckets, some full, so partial buckets are exercised
    for _ in range(60):
        target = rng.getrandbits(256) if rng.random() < 0.7 else rng.choice(held).node_id.int
        n = rng.choice([1, 3, 8, 13, 30])
        exclude = rng.choice([None, rng.choice(held).node_id.int, rng.getrandbits(256)])
        pool = [c for c in held if c.node_id.int != exclude]
        want = sorted(pool, key=lambda c: c.node_id.int ^ target)[:n]
        assert table.closest(target, n, exclude=exclude) == want
        assert set(table.closest(target, n, exclude=exclude, ordered=False)) == set(want)


@pytest.mark.parametrize("seed", [1, 2])
def test_events_run_in_time_then_schedule_order_near_or_far(seed):
    """Events a second or more ahead wait outside the heap (sim/engine.py): they must still
    run in (time, order scheduled) order, as from one heap, with ties and events scheduled
    by events, and none past the end of a run_until."""
    rng = random.Random(seed)
    sim = Simulation(seed)
    ran: list[tuple[float, int]] = []
    want: list[tuple[float, int, int]] = []
    count = [0]

    def schedule(when: float) -> None:
        count[0] += 1
        i = count[0]
        want.append((when, i, i))

        def fire() -> None:
            ran.append((sim.now, i))
            if rng.random() < 0.5:  # events scheduling events, near, far and at "now"
                schedule(sim.now + rng.choice([0.0, 0.001, 0.5, 0.99, 1.0, 3.7, 600.0, rng.random() * 50]))

        sim.at(when, fire)

    for _ in range(300):
        schedule(rng.choice([0.0, 1.0, 2.0, 120.0, rng.random() * 5, rng.random() * 900]))
    sim.run_until(60.0)
    assert all(t <= 60.0 for t, _ in ran) and sim.now == 60.0
    sim.run_until(2000.0)
    expect = [(t, i) for t, _, i in sorted(w for w in want if w[0] <= 2000.0)]
    assert ran == expect and len(ran) > 400


def test_contact_key_is_its_node_id_integer():
    c = _contact(random.Random(4), 1)
    assert c.key == c.node_id.int == int.from_bytes(c.node_id.raw, "big")


def test_idle_buckets_only_those_untouched_for_the_interval():
    rng = random.Random(6)
    table = RoutingTable(_contact(rng, 0).node_id.int, k=4, per_prefix=None)
    for i in range(1, 60):
        table.add(_contact(rng, i), float(i))
    assert table.idle_buckets(60.0, 100.0) == []
    idle = table.idle_buckets(200.0, 100.0)
    assert idle == [b for b in table.buckets if 200.0 - b.touched >= 100.0] and idle
    assert [b.lo for b in idle] == sorted(b.lo for b in idle)

"""Reach in the simulator: real NodeCores behind modelled NATs (tests/reach_lab.py, weftnet.sim.nat).

Virtual time, so the latency figures here are exact for the model (10 ms one way);
the real NAT lab in namespaces is tests/test_reach_netns.py.
"""

from __future__ import annotations

import pytest

from reach_lab import SimLab

from weftnet.core.node import TextReceived


def lab_of(*kinds: str, seed: int = 1, **kw) -> SimLab:
    """Two public relays (P, Q), then clients A, B, ... behind the given NAT kinds."""
    lab = SimLab(seed=seed, **kw)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    for name, kind in zip("ABCD", kinds):
        lab.behind(name, kind)
    return lab


def first_event_time(lab: SimLab, name: str, kind: str, since: float) -> float | None:
    for t, ev in lab.events[name]:
        if t >= since and getattr(ev, "kind", None) == kind:
            return t
    return None


def test_endpoint_independent_pair_goes_direct_within_two_seconds_and_relays_stay_quiet():
    lab = lab_of("port-restricted", "port-restricted")
    lab.join("P", "Q")
    lab.run(1)
    lab.join("B", "P")
    lab.run(20)  # B is settled (registered with relays, record published) before A arrives
    t0 = lab.net.now
    lab.join("A", "P")
    lab.run(20)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"
    upgraded = [t for t, ev in lab.events["A"] if getattr(ev, "kind", "") == "path" and ev.path[0].isdigit()]
    assert upgraded and upgraded[0] - t0 < 2.0  # A's first packet to B went out at t0 (its bootstrap lookup)
    before = lab.forwarded()
    for _ in range(5):
        assert lab.ping("A", "B").ok and lab.ping("B", "A").ok
    r = lab.send("A", "B", "hello")
    assert r.ok
    assert any(isinstance(ev, TextReceived) and ev.text == "hello" for _, ev in lab.events["B"])
    assert lab.forwarded() == before  # every packet after the upgrade took the direct path


@pytest.mark.parametrize("kinds", [("port-restricted", "symmetric"), ("symmetric", "symmetric")])
def test_symmetric_nat_is_reached_through_a_relay(kinds):
    lab = lab_of(*kinds)
    lab.join_all()
    r = lab.ping("A", "B")
    assert r.ok, r.error
    lab.run(5)
    assert lab.path("A", "B") == "relay" and lab.path("B", "A") == "relay"
    before = lab.forwarded()
    assert lab.ping("B", "A").ok
    assert lab.send("A", "B", "through a relay").ok
    assert any(isinstance(ev, TextReceived) and ev.text == "through a relay" for _, ev in lab.events["B"])
    assert lab.forwarded() > before


@pytest.mark.parametrize("kinds", [("full-cone", "symmetric"), ("restricted", "port-restricted")])
def test_a_punch_towards_a_permissive_nat_upgrades_to_direct(kinds):
    lab = lab_of(*kinds)
    lab.join_all()
    assert lab.ping("B", "A").ok
    lab.run(5)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"


def test_udp_blocked_client_reaches_and_is_reached_over_tcp_to_a_relay():
    lab = lab_of("udp-blocked", "port-restricted")
    lab.join_all()
    assert lab.nat("A")["nat"] == "udp-blocked"
    assert lab.path("A", "P") == "tcp"
    assert lab.ping("B", "A").ok and lab.ping("A", "B").ok
    lab.run(5)
    assert lab.path("A", "B") == "relay" and lab.path("B", "A") == "relay"
    assert lab.send("B", "A", "over tcp").ok


@pytest.mark.parametrize("kind, nat, reachable", [
    ("public", "public", True),
    ("full-cone", "endpoint-independent", True),
    ("port-restricted", "endpoint-independent", False),
    ("symmetric", "endpoint-dependent", False),
    ("udp-blocked", "udp-blocked", False),
])
def test_each_node_classifies_its_own_nat(kind, nat, reachable):
    lab = lab_of("port-restricted")
    if kind == "public":
        lab.public("X")
    else:
        lab.behind("X", kind)
    lab.join_all()
    st = lab.nat("X")
    assert st["nat"] == nat and st["reachable"] is reachable
    relays = lab.cores["X"].reach.status(lab.net.now)["relays"]
    assert bool(relays) is (not reachable)  # registered with relays exactly when strangers cannot reach it

"""A direct path that went stale while its session lasted (bench/results/natmix1).

The nat-mix run's slowest pair (public -> port-restricted, 3.2 s to a direct path): the
port-restricted peer had stopped its keepalives (``keep_punched`` after the session's last use),
its NAT had forgotten the public node, and the public node's session, rekeyed under the last
keepalive, was still good. Its Ping, its rekey and its heartbeat probe all died at the NAT; the
path was declared dead only after ``heartbeat`` (2 s), and the ping's third Ping (3 s in) was the
first to get through. Whole NodeCores behind modelled NATs, virtual time only.
"""

from __future__ import annotations

from reach_lab import SimLab


def _stale_lab() -> SimLab:
    """P (public) has a session with B (port-restricted) on a direct path B has stopped keeping
    open and B's NAT (30 s filters) has forgotten; P's session is still good."""
    lab = SimLab(seed=1, nat_timeout=30.0)
    lab.public("R1", relay=True)
    lab.public("R2", relay=True)
    lab.public("P")
    lab.behind("B", "port-restricted", reach={"keep_punched": 30.0})
    lab.join_all()
    assert lab.ping("B", "P").ok
    p, b = lab.cores["P"], lab.cores["B"]
    box, at = lab.boxes["B"], lab.addrs["P"]
    for _ in range(200):
        lab.run(5)
        if all(at not in e["perms"] or lab.net.now - e["perms"][at] > box.timeout for e in box._in.values()):
            break
    assert lab.net.now - p.transport.path(b.node_id, p.transport.current_path(b.node_id)).last_rx > 30.0
    assert p.transport.has_session(b.node_id) and lab.path("P", "B") == "direct"
    return lab


def test_a_ping_over_a_direct_path_the_peers_nat_forgot_is_answered_within_a_second_and_a_half():
    """Before: answered 3.02 s in (the third Ping), direct again 2.2 s in. Now the stale path's
    heartbeat probe is given four round trips, not 2 s: the session falls back to a relay 0.25 s
    in, the punch opens B's NAT again, and the second Ping (1 s in) is answered on a direct path."""
    lab = _stale_lab()
    p, b = lab.cores["P"], lab.cores["B"]
    t0 = lab.net.now
    op = p.ping(b.node_id, t0)
    lab.net.flush(lab.addrs["P"])
    direct_at = []

    def done() -> bool:
        if not direct_at and lab.path("P", "B") == "direct" and p.reach.stats["fallbacks"]:
            direct_at.append(lab.net.now)
        while (ev := p.next_event()) is not None:
            if getattr(ev, "op_id", None) == op:
                done.ev, done.at = ev, lab.net.now
        return hasattr(done, "ev") and bool(direct_at)

    lab.net.run_for(10.0, until=done)
    assert done.ev.ok
    assert done.at - t0 <= 1.5
    assert lab.path("P", "B") == "direct" and direct_at and direct_at[0] - t0 <= 1.0
    assert p.reach.stats["unpaid_refused"] == 0 and b.reach.stats["unpaid_refused"] == 0


def test_a_stale_path_whose_peer_still_answers_is_kept():
    """The short wait only moves a path whose peer does not answer: P and a public peer Q, silent
    for a minute (nobody keeps a public node's path open), stay direct with nothing declared dead."""
    lab = SimLab(seed=1)
    lab.public("R1", relay=True)
    lab.public("P")
    lab.public("Q")
    lab.join_all()
    assert lab.ping("Q", "P").ok
    p, q = lab.cores["P"], lab.cores["Q"]
    for _ in range(60):
        lab.run(5)
        last = p.transport.path(q.node_id, p.transport.current_path(q.node_id)).last_rx
        if lab.net.now - last > 30.0:
            break
    assert lab.net.now - last > 30.0 and p.transport.has_session(q.node_id)
    assert lab.ping("P", "Q").ok
    lab.run(3)
    assert lab.path("P", "Q") == "direct" and p.reach.stats["paths_dead"] == 0


def test_a_ping_whose_path_dies_under_it_goes_again_at_once_on_the_new_path():
    """Before: the Ping sent on the stale path died at B's NAT, the session moved to a relay 0.25 s
    in, and the ping waited for its own retry (1 s in) to go again: answered 1.02 s in. Now the
    session's leaving a dead path sends the ping's Ping again at once on the new path (our user's
    ping only, once per change): answered before the first retry would have gone."""
    lab = _stale_lab()
    p, b = lab.cores["P"], lab.cores["B"]
    t0 = lab.net.now
    op = p.ping(b.node_id, t0)
    lab.net.flush(lab.addrs["P"])

    def done() -> bool:
        while (ev := p.next_event()) is not None:
            if getattr(ev, "op_id", None) == op:
                done.ev = ev
        return hasattr(done, "ev")

    lab.net.run_for(10.0, until=done)
    assert done.ev.ok and p.reach.stats["paths_dead"] >= 1
    assert lab.net.now - t0 < 0.9

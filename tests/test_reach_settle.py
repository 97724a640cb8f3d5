"""A peer's NAT class as its endpoint record says it, once the peer knows it (simulator, virtual time).

A node publishes its first endpoint record at its first session, before it has learnt its NAT
class, whether it is reachable unsolicited or which relays it registered with, and the next one
``publish_min_interval`` (5 s) later at the soonest. A peer that met it in between read the
first and, its session up, read nothing again until its next punch (30 s): `weft peers` and
/metrics (``weftnet_peer_path{nat=...}``) said "unknown" for a node that knew its class (the NAT
lab's test_metrics_... flaked on it: C's label for D).
"""

from __future__ import annotations

from reach_lab import SimLab

from weftnet.runtime.opsview import peer_reach_reader


def _lab(seed: int, publics: str = "PQ") -> SimLab:
    lab = SimLab(seed=seed)
    for name in publics:
        lab.public(name, relay=True)
    lab.behind("A", "symmetric")
    lab.behind("B", "symmetric")
    if len(publics) > 1:
        lab.join(publics[1], publics[0])
        lab.run(1)
    lab.join("A", publics[0])
    lab.run(20)  # A settled before B arrives
    return lab


def test_a_peer_met_as_it_joined_has_its_nat_class_read_once_it_published_it():
    for seed in (1, 2, 3):
        lab = _lab(seed)
        a, b = lab.cores["A"], lab.cores["B"]
        label = peer_reach_reader(a)
        t0 = lab.net.now
        lab.join("B", "P")
        lab.run(2)
        assert a.transport.has_session(b.node_id)  # met while B joined (its lookups), through a relay
        assert label(b.node_id) == ("relay", "unknown")  # B's first record: published before B knew
        lab.run(10)
        assert lab.nat("B")["nat"] == "endpoint-dependent"
        # B republished at +5 s; A read it again (it said "unknown" until A's next punch, +34 s)
        assert label(b.node_id) == ("relay", "endpoint-dependent"), (seed, lab.net.now - t0)


def test_a_provisional_copy_read_before_the_session_is_read_again_once_stale():
    """The NAT lab's order (traced in the daemons' logs): C's handshake to D, a DHT contact, read
    D's first record (no session yet); D's session came up 3 s later, the copy still young enough
    to reuse, and C kept it until its next punch, 33 s on."""
    for seed in (1, 2, 3):
        lab = _lab(seed)
        a, b = lab.cores["A"], lab.cores["B"]
        label = peer_reach_reader(a)
        t0 = lab.net.now
        lab.join("B", "P")
        lab.run(0.5)
        a.reach.on_paths_wanted(b.node_id, b.identity.public_key, 0, lab.net.now)  # a DHT contact's handshake
        a._pump(lab.net.now)
        lab.net.flush(lab.addrs["A"])
        lab.run(2)
        copy = a.reach._cache.get(b.node_id)
        assert copy is not None and copy[0].nat == 0  # B's first record, read by A
        assert lab.ping("B", "A").ok
        assert a.transport.has_session(b.node_id)
        lab.run(7)
        assert label(b.node_id) == ("relay", "endpoint-dependent"), (seed, lab.net.now - t0)


def test_a_record_that_stays_provisional_is_read_again_a_bounded_number_of_times():
    lab = _lab(4, publics="P")  # one public node: one outside report each, NAT class never learnt
    a, b = lab.cores["A"], lab.cores["B"]
    lab.join("B", "P")
    lab.run(2)
    assert a.transport.has_session(b.node_id)
    before = a.reach.stats["resolves"]
    lab.run(200)
    assert lab.nat("B")["nat"] == "unknown"
    assert peer_reach_reader(a)(b.node_id)[1] == "unknown"  # (what its record says: B does not know)
    # The settle reads (4: +5, +10, +20, +40 s) and a punch's read now and then, not one every 5 s.
    assert a.reach.stats["resolves"] - before <= 4 + 4, a.reach.stats


def test_a_new_session_reads_a_still_provisional_record_again():
    """The bound on those reads is per session: a session that ended (here closed by A, as its
    overlay plane closes one to a peer it found dead) and came back reads the record again."""
    for seed in (4, 5):
        lab = _lab(seed, publics="P")
        a, b = lab.cores["A"], lab.cores["B"]
        lab.join("B", "P")
        lab.run(202)  # the first session's settle reads, all spent
        a.transport.close(b.node_id, lab.net.now)
        a._pump(lab.net.now)
        lab.run(5)
        assert not a.transport.has_session(b.node_id)
        before = a.reach.stats["resolves"]
        assert lab.ping("A", "B").ok  # a new session
        lab.run(80)
        # its settle reads (+5, +10, +20, +40 s), besides a punch's read: not the punch's alone
        assert 4 <= a.reach.stats["resolves"] - before <= 4 + 2, (seed, a.reach.stats)

"""Small pieces of reach on their own: NAT classification, the path policy, the relay's bookkeeping."""

from __future__ import annotations

from weftnet.core.identity import Identity
from weftnet.core.reach.messages import NAT_EDM, NAT_EIM, NAT_PUBLIC, NAT_UDP_BLOCKED, NAT_UNKNOWN
from weftnet.core.reach.nat import MAX_REPORTS, NatObserver
from weftnet.core.reach.paths import MAX_PATHS, PathPolicy, PathSet, StreamLink, Via, path_kind
from weftnet.core.reach.relay import RelayConfig, RelayService

LOCAL = ("10.0.0.2", 4500)


def test_nat_classification_from_reports():
    nat = NatObserver()
    nat.set_local([LOCAL])
    assert nat.classify(0) == NAT_UNKNOWN
    nat.report("198.51.100.1", ("203.0.113.5", 4500), 0)
    assert nat.classify(0) == NAT_UNKNOWN and nat.reflexive(0) == [("203.0.113.5", 4500)]
    nat.report("198.51.100.2", ("203.0.113.5", 4500), 1)
    assert nat.classify(1) == NAT_EIM
    nat.report("198.51.100.3", ("203.0.113.5", 40001), 2)
    assert nat.classify(2) == NAT_EDM
    assert [k for k, _ in nat.candidates(2)] == [1]  # behind an EDM NAT only the local candidate is published


def test_a_lan_peer_seeing_our_local_address_does_not_make_us_public():
    nat = NatObserver()
    nat.set_local([LOCAL])
    nat.report("10.0.0.7", LOCAL, 0)
    assert nat.classify(0) == NAT_PUBLIC  # all that is known
    nat.report("198.51.100.1", ("203.0.113.5", 4500), 0)
    nat.report("198.51.100.2", ("203.0.113.5", 4500), 0)
    assert nat.classify(0) == NAT_EIM


def test_a_moved_mapping_discards_older_reports_and_reports_expire():
    nat = NatObserver(report_ttl=100)
    nat.set_local([LOCAL])
    nat.report("198.51.100.1", ("203.0.113.5", 4500), 0)
    nat.report("198.51.100.2", ("203.0.113.5", 4500), 0)
    nat.set_reachable(False, 0)
    assert nat.report("198.51.100.1", ("203.0.113.5", 5000), 10)  # rebinding: a change
    assert nat.reports(10) == 1 and nat.reachable is None
    assert nat.reports(200) == 0 and nat.classify(200) == NAT_UNKNOWN
    for i in range(MAX_REPORTS + 5):
        nat.report(f"192.0.2.{i}", ("203.0.113.5", 5000), 300)
    assert nat.reports(300) == MAX_REPORTS
    nat.stream_only = True
    assert nat.classify(10_000) == NAT_UDP_BLOCKED and nat.candidates(10_000) == []
    assert nat.set_local([("10.9.9.9", 4500)]) and nat.reports(300) == 0  # a new network: start over


def test_path_policy_roams_between_direct_paths_but_leaves_a_relay_only_for_a_confirmed_one():
    pol = PathPolicy(trust=2.0)
    paths = PathSet()
    relay = Via((bytes(32),), bytes([1]) * 32)
    a, b = ("198.51.100.1", 1), ("198.51.100.2", 2)
    paths.add(a, "contact", 0).last_rx = 0
    assert pol.on_rx(paths, a, b, 1)  # roaming
    paths.add(relay, "record", 0)
    assert not pol.on_rx(paths, relay, b, 1)  # heard once, never answered
    paths.add(b, "peer", 0).confirmed = 1
    assert pol.on_rx(paths, relay, b, 1)
    # A relay while a direct path was heard just now: stay; quiet for longer than trust: follow.
    paths.get(a).last_rx = 10
    assert not pol.on_rx(paths, a, relay, 11) and pol.on_rx(paths, a, relay, 13)
    # choose: confirmed direct before TCP before relay; dead ones never.
    link = StreamLink("198.51.100.9", 443, 1)
    paths.add(link, "link", 0).confirmed = 1
    assert pol.choose(paths, relay, 20) == b
    paths.get(b).dead = True
    assert pol.choose(paths, relay, 20) == link and path_kind(link) == "tcp"
    assert set(pol.handshake_targets(paths, a)) == {a, relay, link}


def test_a_path_set_is_bounded_and_keeps_the_path_in_use():
    paths = PathSet()
    keep = ("198.51.100.1", 1)
    paths.add(keep, "contact", 0)
    for i in range(MAX_PATHS * 3):
        paths.add(("198.51.100.2", 1000 + i), "record", i, keep=keep)
    assert len(paths) == MAX_PATHS and paths.get(keep) is not None


def test_relay_registrations_are_bounded_and_expire():
    ids = [Identity.from_seed(bytes([i]) * 32).node_id for i in range(1, 5)]
    relay = RelayService(RelayConfig(enabled=True, max_sessions=2, max_lease=100), 0)
    assert relay.register(ids[0], 600, 0) == (100, "")  # the lease is capped
    assert relay.register(ids[1], 10, 0) == (30, "")  # and has a floor
    assert relay.register(ids[2], 60, 0) == (0, "relay full")
    assert relay.admit(ids[2], ids[3], 100, 1) == "not_registered"
    assert relay.admit(ids[2], ids[0], 100, 1) is None  # one end registered
    assert relay.may_open(ids[0], ids[3], 1) and not relay.may_open(ids[2], ids[3], 1)
    relay.expire(31)
    assert relay.registered(31) == [ids[0]]
    assert RelayService(RelayConfig(enabled=False), 0).register(ids[0], 60, 0) == (0, "not a relay")

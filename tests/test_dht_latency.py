"""Issue 16: lookup-latency techniques and the compact routing state, each checked on its own."""

from __future__ import annotations

import dataclasses
import random

import pytest

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig
from weftnet.core.dht.lookup import ANSWERED, IN_FLIGHT, Lookup
from weftnet.core.dht.messages import FindNear, FindNode, Nodes
from weftnet.core.dht.records import ImmutableRecord
from weftnet.core.dht.routing import RoutingTable

T0 = 1000.0


def contact(i: int, host: str | None = None) -> Contact:
    pk = random.Random(i).randbytes(32)
    return Contact(pk, (host or f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 4000))


def by_distance(cs, target):
    return sorted(cs, key=lambda c: c.node_id.int ^ target)


# -- ending a node lookup when the node answers ------------------------------------------


def test_node_lookup_asks_the_target_at_once_and_ends_when_it_answers():
    cs = [contact(i) for i in range(1, 60)]
    target = cs[50]
    t = target.node_id.int
    lk = Lookup(1, "find_node", t, T0, k=5, alpha=3, stop_at_target=True)
    lk.seed(by_distance(cs[:20], t)[5:15])  # the target is not among the first contacts
    first = lk.next_requests()
    assert len(first) == 3
    lk.answered(first[0].key, [target, *cs[20:25]])
    # The reply named the target: the freed slot goes to it, ahead of anything else.
    nxt = lk.next_requests()
    assert [c.key for c in nxt] == [t]
    assert not lk.finished()
    lk.answered(t, cs[25:30])
    # Nothing can be closer than distance 0: the lookup is over with requests still out.
    assert lk.finished() and lk.closest()[0] == target
    assert sum(1 for c in lk.candidates.values() if c.state == IN_FLIGHT) == 2


def test_key_lookups_still_wait_for_the_k_closest():
    cs = [contact(i) for i in range(1, 60)]
    t = cs[50].node_id.int
    for kind, stop in (("store", True), ("find_node", False)):
        lk = Lookup(1, kind, t, T0, k=5, alpha=3, stop_at_target=stop and kind == "find_node")
        lk.seed([cs[50], *cs[:10]])
        for c in lk.next_requests():
            lk.answered(c.key, [])
        assert lk.candidates[t].state == ANSWERED and not lk.finished()


def test_engine_uses_stop_at_target_for_find_node_only():
    d = Dht(contact(1), random.Random(1), T0, DhtConfig(per_prefix=None))
    others = [contact(i) for i in range(2, 30)]
    d.import_contacts(others, T0)
    target = others[7]
    d.find_node(target.node_id, T0)
    sent = d.messages_to_send()
    assert any(c == target for c, _ in sent)  # it is in our table, so among the nearest asked
    req = next(m for c, m in sent if c == target)
    d.on_message(target, Nodes(req.rid, ()), T0 + 0.05)
    done = d.next_event()
    assert done.ok and done.contacts[0] == target and done.duration == pytest.approx(0.05)


def test_first_round_is_wider_then_alpha():
    cs = [contact(i) for i in range(1, 60)]
    lk = Lookup(1, "find_node", 0, T0, k=20, alpha=3, first_round=8)
    lk.seed(cs[:30])
    first = lk.next_requests()
    assert len(first) == 8
    lk.answered(first[0].key, [])
    assert len(lk.next_requests()) == 0  # 7 still out: back to alpha
    for c in first[1:6]:
        lk.answered(c.key, [])
    assert len(lk.next_requests()) == 1  # 2 out -> one more keeps alpha = 3


def test_node_lookups_keep_lookup_alpha_in_flight_and_other_lookups_alpha():
    cfg = DhtConfig(per_prefix=None)
    assert cfg.lookup_alpha == 4 and cfg.alpha == 3
    d = Dht(contact(1), random.Random(1), T0, cfg)
    d.import_contacts([contact(i) for i in range(2, 40)], T0)
    d.messages_to_send()
    d.find_node(contact(77).node_id, T0)
    first = d.messages_to_send()
    assert len(first) == 4
    # A departed contact among them: its timeout sends the next candidate, 4 stay in flight.
    d.handle_timer(T0 + cfg.initial_rto + 0.01)
    assert len(d.messages_to_send()) == 4
    d.put(ImmutableRecord(b"churn"), T0 + 3)  # a put's FIND_NODE half keeps plain alpha
    assert len(d.messages_to_send()) == cfg.alpha
    off = Dht(contact(1), random.Random(1), T0, dataclasses.replace(cfg, lookup_alpha=0))
    off.import_contacts([contact(i) for i in range(2, 40)], T0)
    off.messages_to_send()
    off.find_node(contact(77).node_id, T0)
    assert len(off.messages_to_send()) == cfg.alpha


# -- timeouts from measured round trips ---------------------------------------------------


def timeout_of_first_request(cfg: DhtConfig, rtt: float | None) -> float:
    cfg = dataclasses.replace(cfg, prs_bits=-1)  # nearest first: the measured contacts are not preferred
    d = Dht(contact(1), random.Random(1), T0, cfg)
    peers = [contact(i) for i in range(2, 40)]
    d.import_contacts(peers, T0)
    now = T0
    if rtt is not None:  # measure a few contacts at `rtt`
        for p in peers[:5]:
            d.find_node(p.node_id, now)
            for c, m in d.messages_to_send():
                if c == p:
                    d.on_message(p, Nodes(m.rid, ()), now + rtt)
            now += 1.0
    d.find_node(contact(999).node_id, now)
    sent = [c for c, m in d.messages_to_send() if isinstance(m, (FindNode, FindNear))]
    fresh = next(c for c in sent if c.node_id.int not in {p.node_id.int for p in peers[:5]})
    req = next(r for r in d._requests.values() if r.key == fresh.node_id.int)
    return req.deadline - now


def test_unmeasured_contacts_get_a_timeout_from_the_nodes_own_round_trips():
    cfg = DhtConfig(per_prefix=None, min_rto=0.2)
    assert timeout_of_first_request(cfg, None) == pytest.approx(cfg.initial_rto)  # nothing measured yet
    assert timeout_of_first_request(cfg, 0.01) == pytest.approx(0.2)  # 10 ms paths: the floor
    assert 0.25 < timeout_of_first_request(cfg, 0.15) < 1.0  # ~150 ms paths: mean + 4 deviations
    off = DhtConfig(per_prefix=None, min_rto=0.2, adaptive_rto=False)
    assert timeout_of_first_request(off, 0.01) == pytest.approx(off.initial_rto)


# -- proximity neighbour selection -------------------------------------------------------


def full_far_bucket(k=4):
    own = contact(0)
    t = RoutingTable(own.node_id.int, k=k, per_prefix=None)
    far = [c for c in (contact(i) for i in range(1, 400)) if (c.node_id.int ^ own.node_id.int) >> 255]
    near = next(c for c in (contact(i) for i in range(1, 400)) if not (c.node_id.int ^ own.node_id.int) >> 255)
    for c in far[:k] + [near]:  # the near one makes the first bucket split: the far half is full
        t.add(c, T0)
    assert len(t.buckets) == 2
    return t, far


def test_a_fast_answer_displaces_a_slow_contact_which_waits_in_the_replacements():
    t, far = full_far_bucket()
    rtts = {far[0].node_id.int: 0.250, far[1].node_id.int: 0.040, far[2].node_id.int: 0.300}
    newcomer = far[10]
    assert not t.prefer_nearer(newcomer, 0.200, rtts.get, near=0.05)  # not twice as fast as anyone
    assert t.prefer_nearer(newcomer, 0.030, rtts.get, near=0.0)  # 30 ms: the 300 ms one goes
    b = t.bucket_for(newcomer.node_id.int)
    assert newcomer in b.entries and far[2] not in b.entries and far[2] in b.replacements
    assert len(b.entries) == 4 and len(t) == 5 and t.get(far[2].node_id.int) is None


def test_only_a_near_contact_displaces_one_never_measured():
    t, far = full_far_bucket()
    rtts = {c.node_id.int: 0.010 for c in far[1:4]}  # far[0] was never measured
    assert not t.prefer_nearer(far[10], 0.030, rtts.get, near=0.020)
    assert t.prefer_nearer(far[10], 0.005, rtts.get, near=0.020)
    assert far[0] not in t.bucket_for(far[0].node_id.int).entries
    # A bucket with room, or the one holding our own ID, is not this method's business.
    assert not RoutingTable(contact(0).node_id.int, k=4).prefer_nearer(far[11], 0.001, rtts.get, 1.0)


def test_proximity_in_the_engine_prefers_contacts_that_answer_fast():
    cfg = DhtConfig(k=2, per_prefix=None, proximity=True)
    d = Dht(contact(0), random.Random(1), T0, cfg)
    far = [c for c in (contact(i) for i in range(1, 400)) if (c.node_id.int ^ d.key) >> 255]
    near = [c for c in (contact(i) for i in range(1, 400)) if not (c.node_id.int ^ d.key) >> 255]
    d.import_contacts(near[:3] + far[:2], T0)  # the far half of the ID space: a full bucket of two
    d.find_node(far[5].node_id, T0)
    newcomer_asked = False
    for _ in range(4):  # everyone answers in 200 ms, naming far[5]; far[5] answers in 10 ms
        for dst, m in d.messages_to_send():
            if dst == far[5]:
                d.on_message(far[5], Nodes(m.rid, ()), T0 + 0.21)  # asked at T0 + 0.2
                newcomer_asked = True
            else:
                d.on_message(dst, Nodes(m.rid, (far[5],)), T0 + 0.2)
    assert newcomer_asked
    assert far[5] in d.table.bucket_for(far[5].node_id.int).entries
    assert len(d.table.bucket_for(far[5].node_id.int).entries) == 2
    # Without the setting the bucket keeps its first two, as plain Kademlia does.
    plain = Dht(contact(0), random.Random(1), T0, DhtConfig(k=2, per_prefix=None))
    plain.import_contacts(near[:3] + far[:2], T0)
    plain.on_message(far[5], FindNode(1, bytes(32)), T0)
    assert far[5] not in plain.table.bucket_for(far[5].node_id.int).entries


# -- the compact routing table ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_closest_matches_brute_force_and_buckets_tile_the_space(seed):
    rng = random.Random(seed)
    own = rng.getrandbits(256)
    t = RoutingTable(own, rng.choice([2, 4, 20]), 3, None)
    cs = [Contact(rng.randbytes(32), ("10.0.0.1", i)) for i in range(rng.choice([5, 300, 2000]))]
    cs += [Contact(rng.randbytes(32), ("10.0.0.2", i)) for i in range(50)]
    for c in cs:
        t.add(c, T0)
    kept = t.contacts()
    assert len(kept) == len(t) and all(t.bucket_for(c.node_id.int).covers(c.node_id.int) for c in kept)
    assert all(a.hi + 1 == b.lo for a, b in zip(t.buckets, t.buckets[1:])) and t.bucket_for(own).covers(own)
    for _ in range(100):
        target = rng.choice([rng.getrandbits(256), own ^ rng.getrandbits(rng.randrange(1, 256)),
                             rng.choice(kept).node_id.int])
        n = rng.choice([1, 3, 20, 50])
        exclude = rng.choice([None, rng.choice(kept).node_id.int])
        want = by_distance([c for c in kept if c.node_id.int != exclude], target)[:n]
        assert t.closest(target, n, exclude) == want


def test_rate_limit_state_stays_small_with_many_quiet_peers():
    d = Dht(contact(0), random.Random(1), T0, DhtConfig(per_prefix=None, peer_rate=10, peer_burst=20))
    peers = [contact(i) for i in range(1, 2001)]
    for i, p in enumerate(peers):  # 2,000 peers, one request each, 10 ms apart
        d.on_message(p, FindNode(i + 1, bytes(32)), T0 + i * 0.01)
    assert d.stats["requests_received"] == 2000 and d.stats["rate_limited"] == 0
    assert len(d._peer_limit) < 100  # a peer whose bucket has refilled needs no entry
    assert d.summary()["stats"]["rate_limited"] == 0 and "timeouts" in d.summary()["stats"]


# -- churn: live newcomers take the slots of failing contacts -----------------------------


def test_a_newcomer_takes_the_slot_of_a_contact_that_failed_its_last_request():
    t, far = full_far_bucket()
    b = t.bucket_for(far[0].node_id.int)
    assert not t.add(far[10], T0)  # a full bucket of healthy contacts: the newcomer waits
    assert far[10] in b.replacements
    assert not t.fail(far[2].node_id.int)  # one failure: not evicted (max_failures is 3)...
    assert t.add(far[11], T0)  # ...but a node that talks to us is the better bet
    assert far[11] in b.entries and far[2] not in b.entries and far[2] in b.replacements
    assert t.failures(far[2].node_id.int) == 0 and len(b.entries) == 4
    # An answer clears a failure: then there is no questionable slot to take.
    t.fail(far[0].node_id.int)
    t.add(far[0], T0)
    assert not t.add(far[12], T0)
    # Off, the bucket keeps its failing contact until max_failures evicts it.
    plain, far2 = full_far_bucket()
    plain.replace_failing = False
    plain.fail(far2[1].node_id.int)
    assert not plain.add(far2[11], T0)


def test_a_lookup_whose_every_contact_failed_goes_on_with_the_rest_of_the_table():
    d = Dht(contact(0), random.Random(1), T0, DhtConfig(per_prefix=None, k=5))
    everyone = [contact(i) for i in range(1, 300)]
    d.import_contacts(everyone, T0)
    target = contact(5000).node_id
    d.find_node(target, T0)
    asked, now = set(), T0
    for _ in range(40):  # nobody ever answers: every request times out
        asked |= {c.node_id.int for c, _ in d.messages_to_send()}
        t = d.get_timer()
        if t is None or t > T0 + 60:
            break
        now = t
        d.handle_timer(now)
        if (ev := d.next_event()) is not None:
            break
    assert ev is not None and not ev.contacts
    nearest = [c.node_id.int for c in d.table.closest(target.int, 15)]
    # It asked the table's 5 nearest, then the next 5, then the next 5 (two reseeds), then gave up.
    assert asked == set(nearest)


# -- filling the table after the join, and keeping our neighbours aware of us ---------------


def test_a_budgeted_lookup_sends_no_more_than_its_budget():
    cs = [contact(i) for i in range(1, 200)]
    t = contact(5000).node_id.int
    lk = Lookup(1, "fill", t, T0, k=20, alpha=3, budget=5)
    lk.seed(cs[:10])
    sent, rest = [], iter(cs[10:])
    while (asks := lk.next_requests()):
        sent += asks
        for c in asks:  # every answer names five more nodes
            lk.answered(c.key, [next(rest) for _ in range(5)])
    assert len(sent) == 5 and lk.messages == 5


def join_through(cfg: DhtConfig, peers: list[Contact]) -> tuple[Dht, list]:
    """A node joins through peers[0]; every peer answers at once with its own nearest to the
    asked ID among ``peers``. Returns the node and the IDs it asked for, in order."""
    d = Dht(contact(0), random.Random(7), T0, cfg)
    d.bootstrap([peers[0]], T0)
    asked = []
    for _ in range(200):
        out = d.messages_to_send()
        if not out:
            break
        for dst, m in out:
            if isinstance(m, FindNode):
                tgt = int.from_bytes(m.target, "big")
                asked.append(tgt)
                d.on_message(dst, Nodes(m.rid, tuple(by_distance(peers, tgt)[:20])), T0 + 0.05)
    return d, asked


def test_join_fill_sends_a_few_requests_into_each_farther_bucket():
    peers = [contact(i) for i in range(1, 3000)]
    plain, asked_plain = join_through(DhtConfig(per_prefix=None, refresh_on_join=False, join_fill=0), peers)
    filled, asked = join_through(DhtConfig(per_prefix=None, refresh_on_join=False, join_fill=3), peers)
    full, asked_full = join_through(DhtConfig(per_prefix=None, refresh_on_join=True), peers)
    own = filled.key
    far_buckets = [b for b in filled.table.buckets if not b.covers(own)]
    # Each farther bucket that was not full after the bootstrap got at most 3 requests:
    fills = [a for a in asked if a != own]
    assert 0 < len(fills) <= 3 * len(far_buckets)
    assert len(filled.table) > len(plain.table)  # whoever answered is in the table now
    # ... and far fewer than a full refresh (a whole lookup per bucket) sends.
    assert len(asked) < len(asked_full)
    # The buckets farthest away (half and a quarter of the ID space) are no longer thin.
    for d in (0, 1):
        assert len(filled.table.buckets[d].entries) >= min(3, len(plain.table.buckets[d].entries) + 1)


def test_self_refresh_looks_up_our_own_id_at_each_maintenance_round():
    peers = [contact(i) for i in range(1, 50)]
    for on in (True, False):
        cfg = DhtConfig(per_prefix=None, self_refresh=on, maintenance_interval=600.0)
        d = Dht(contact(0), random.Random(1), T0, cfg)
        d.import_contacts(peers, T0)
        d.handle_timer(T0 + 600.0)
        targets = {m.target for _, m in d.messages_to_send() if isinstance(m, FindNode)}
        assert (d.contact.node_id.raw in targets) is on


# -- a node going away says so ---------------------------------------------------------------


def test_a_leaving_node_is_dropped_at_once_and_no_lookup_waits_for_it():
    from weftnet.core.dht.messages import Leave

    d = Dht(contact(0), random.Random(1), T0, DhtConfig(per_prefix=None, k=5))
    everyone = [contact(i) for i in range(1, 300)]
    d.import_contacts(everyone, T0)
    target = contact(5000).node_id
    d.find_node(target, T0)
    asked = [c for c, m in d.messages_to_send() if isinstance(m, FindNode)]
    gone = asked[0]
    size = len(d.table)
    d.on_message(gone, Leave(), T0 + 0.01)
    assert d.table.get(gone.node_id.int) is None and d.stats["leaves"] == 1
    # Its request failed at once: the lookup asked someone else without waiting for a timeout,
    # and the leaver's slot went to a replacement (the table did not shrink).
    again = [c for c, m in d.messages_to_send() if isinstance(m, FindNode)]
    assert len(again) == 1 and again[0] not in asked
    assert len(d.table) == size - 1 + (len(d.table.bucket_for(gone.node_id.int).entries) == 5)
    assert d.messages_to_send() == []  # a Leave is never answered
    # ... and a Leave names no one but its sender: nobody else is touched.
    d.on_message(asked[1], Leave(), T0 + 0.02)
    assert all(d.table.get(c.node_id.int) is not None for c in asked[2:])


def test_leave_tells_every_contact_with_a_session():
    from weftnet.core.dht.messages import Leave

    d = Dht(contact(0), random.Random(1), T0, DhtConfig(per_prefix=None))
    peers = [contact(i) for i in range(1, 40)]
    d.import_contacts(peers, T0)
    d.leave(T0)
    told = {c.node_id.int for c, m in d.messages_to_send() if isinstance(m, Leave)}
    assert told == {c.node_id.int for c in d.table.contacts()}
    d2 = Dht(contact(0), random.Random(1), T0, DhtConfig(per_prefix=None))
    d2.import_contacts(peers, T0)
    d2.has_session = lambda c: c.node_id.int % 2 == 0
    d2.leave(T0)
    told = {c.node_id.int for c, m in d2.messages_to_send() if isinstance(m, Leave)}
    assert told and all(k % 2 == 0 for k in told)
    quiet = Dht(contact(0), random.Random(1), T0, DhtConfig(per_prefix=None, say_leave=False))
    quiet.import_contacts(peers, T0)
    quiet.leave(T0)
    assert not [m for _, m in quiet.messages_to_send() if isinstance(m, Leave)]


# -- proximity route selection and hedged requests ------------------------------------------


def _same_level(cs, target, n):
    """n contacts whose distance to target has the same highest bit (the same progress)."""
    groups: dict[int, list] = {}
    for c in cs:
        groups.setdefault((c.node_id.int ^ target).bit_length(), []).append(c)
    return next(g for g in sorted(groups.values(), key=len, reverse=True) if len(g) >= n)[:n]


def test_proximity_route_selection_asks_the_fastest_of_equally_close_candidates_first():
    cs = [contact(i) for i in range(1, 400)]
    t = contact(999).node_id.int
    level = by_distance(_same_level(cs, t, 6), t)
    rtts = {c.node_id.int: 0.2 for c in level}
    fast = level[4]  # fifth nearest, but the only near one
    rtts[fast.node_id.int] = 0.005
    plain = Lookup(1, "find_node", t, T0, k=20, alpha=1)
    plain.seed(level)
    assert plain.next_requests()[0].contact == level[0]  # nearest first
    prs = Lookup(1, "find_node", t, T0, k=20, alpha=1, rtt_of=rtts.get, unknown_rtt=0.1, prs_bits=0)
    prs.seed(level)
    assert prs.next_requests()[0].contact == fast
    # Never measured counts as the node's mean RTT: faster than 0.2 s, slower than 5 ms.
    del rtts[level[2].node_id.int]
    prs2 = Lookup(1, "find_node", t, T0, k=20, alpha=2, rtt_of=rtts.get, unknown_rtt=0.1, prs_bits=0)
    prs2.seed(level)
    assert [c.contact for c in prs2.next_requests()] == [fast, level[2]]


def test_proximity_route_selection_gives_up_no_more_progress_than_allowed():
    cs = [contact(i) for i in range(1, 400)]
    t = contact(999).node_id.int
    ordered = by_distance(cs, t)
    near, far = ordered[0], ordered[-1]  # far is many bits behind near
    assert (far.node_id.int ^ t).bit_length() > (near.node_id.int ^ t).bit_length() + 2
    rtts = {near.node_id.int: 0.3, far.node_id.int: 0.001}
    lk = Lookup(1, "find_node", t, T0, k=20, alpha=1, rtt_of=rtts.get, unknown_rtt=0.1, prs_bits=2)
    lk.seed([near, far])
    assert lk.next_requests()[0].contact == near


def test_a_request_slower_than_expected_lets_the_next_candidate_go_without_a_timeout():
    cs = [contact(i) for i in range(1, 60)]
    t = contact(999).node_id.int
    rtts = {c.node_id.int: 0.1 for c in cs}
    lk = Lookup(1, "find_node", t, T0, k=20, alpha=2, rtt_of=rtts.get, unknown_rtt=0.1, hedge_rtts=1.5)
    lk.seed(cs[:30])
    first = lk.next_requests(T0)
    assert len(first) == 2
    assert lk.next_requests(T0 + 0.1) == []  # both still within 1.5 x their RTT
    assert lk.next_hedge(T0) == pytest.approx(T0 + 0.15)
    more = lk.next_requests(T0 + 0.16)  # both are late: two more go out, still listening to the first
    assert len(more) == 2 and all(c.state == IN_FLIGHT for c in first)
    # At most twice alpha in flight, however late they all are.
    assert lk.next_requests(T0 + 10) == []
    lk.answered(first[0].key, [])
    assert len(lk.next_requests(T0 + 10)) == 1
    # Without hedging, nothing goes out until an answer or a timeout.
    plain = Lookup(1, "find_node", t, T0, k=20, alpha=2)
    plain.seed(cs[:30])
    plain.next_requests(T0)
    assert plain.next_requests(T0 + 10) == []


def test_engine_hedges_a_slow_lookup_request_on_its_timer():
    d = Dht(contact(1), random.Random(1), T0, DhtConfig(per_prefix=None, alpha=1, lookup_alpha=0, lookup_hedge=1.5))
    others = [contact(i) for i in range(2, 30)]
    d.import_contacts(others, T0)
    # One measured round trip of 40 ms to every contact (a ping each).
    for c in others:
        d._rtt_sample(c.node_id.int, 0.04)
    target = contact(500).node_id
    d.find_node(target, T0)
    assert len(d.messages_to_send()) == 1
    wake = d.get_timer()
    assert wake == pytest.approx(T0 + 0.06)  # 1.5 x 40 ms, long before the request's timeout
    d.handle_timer(wake)
    assert len(d.messages_to_send()) == 1  # the next candidate, without waiting for a timeout
    assert d.stats["timeouts"] == 0


def test_find_near_is_answered_with_the_rtts_we_measured():
    from weftnet.core.dht.messages import RTT_UNKNOWN, FindNear, NearNodes

    d = Dht(contact(1), random.Random(1), T0, DhtConfig(per_prefix=None))
    others = [contact(i) for i in range(2, 8)]
    d.import_contacts(others, T0)
    d._rtt_sample(others[0].node_id.int, 0.0123)
    asker = contact(100)
    d.on_message(asker, FindNear(7, others[0].node_id.raw), T0)
    [(to, reply)] = d.messages_to_send()
    assert to == asker and isinstance(reply, NearNodes) and reply.rid == 7
    assert len(reply.rtts) == len(reply.contacts) == len(others)
    hints = dict(zip(reply.contacts, reply.rtts))
    assert hints[others[0]] == 123  # 0.1 ms units
    assert all(hints[c] == RTT_UNKNOWN for c in others[1:])


def test_rtt_hints_steer_a_lookup_to_a_contact_near_its_namer():
    from weftnet.core.dht.messages import RTT_UNKNOWN, FindNear, NearNodes

    cfg = DhtConfig(per_prefix=None, alpha=1, lookup_alpha=0, prs_bits=3, rtt_hints=True)
    d = Dht(contact(1), random.Random(1), T0, cfg)
    t = contact(999).node_id.int
    pool = [contact(i) for i in range(2, 600)]
    seed_c = by_distance(pool, t)[-1]  # far from the target: whatever it names is closer
    d.import_contacts([seed_c], T0)
    for i in range(5):
        d._rtt_sample(10_000 + i, 0.2)  # the node's mean RTT, assumed for contacts without a hint
    d._rtt_sample(seed_c.node_id.int, 0.004)
    d.find_node(contact(999).node_id, T0)
    [(to, req)] = d.messages_to_send()
    assert to == seed_c and isinstance(req, FindNear)
    named = by_distance(_same_level(pool[:-1], t, 5), t)
    rtts = [RTT_UNKNOWN] * 5
    rtts[3] = 20  # 2 ms from the namer: the fourth nearest is the one near us
    d.on_message(seed_c, NearNodes(req.rid, tuple(named), tuple(rtts)), T0 + 0.004)
    [(to2, _)] = d.messages_to_send()
    assert to2 == named[3]
    # Without hints (plain Nodes) the nearest goes first.
    d2 = Dht(contact(1), random.Random(1), T0, DhtConfig(per_prefix=None, alpha=1, lookup_alpha=0, prs_bits=3, rtt_hints=False))
    d2.import_contacts([seed_c], T0)
    d2._rtt_sample(seed_c.node_id.int, 0.004)
    d2.find_node(contact(999).node_id, T0)
    [(_, req2)] = d2.messages_to_send()
    assert type(req2) is FindNode
    d2.on_message(seed_c, Nodes(req2.rid, tuple(named)), T0 + 0.004)
    [(to3, _)] = d2.messages_to_send()
    assert to3 == named[0]


def test_near_nodes_with_mismatched_lists_are_used_without_hints():
    from weftnet.core.dht.messages import NearNodes

    cfg = DhtConfig(per_prefix=None, alpha=1, lookup_alpha=0, prs_bits=3, rtt_hints=True)
    d = Dht(contact(1), random.Random(1), T0, cfg)
    t = contact(999).node_id.int
    pool = [contact(i) for i in range(2, 600)]
    seed_c = by_distance(pool, t)[-1]
    d.import_contacts([seed_c], T0)
    d._rtt_sample(seed_c.node_id.int, 0.004)
    d.find_node(contact(999).node_id, T0)
    [(_, req)] = d.messages_to_send()
    named = by_distance(_same_level(pool[:-1], t, 5), t)
    d.on_message(seed_c, NearNodes(req.rid, tuple(named), (1,)), T0 + 0.004)
    [(to, _)] = d.messages_to_send()
    assert to == named[0] and d.stats["near_nodes_mismatched"] == 1


def test_a_half_open_find_near_is_answered_and_its_sender_learned_once_confirmed():
    from weftnet.core.dht.messages import FindNear, NearNodes

    d = Dht(contact(1), random.Random(1), T0, DhtConfig(per_prefix=None))
    d.import_contacts([contact(i) for i in range(2, 8)], T0)
    asker = contact(100)
    d.on_message(asker, FindNear(9, contact(5).node_id.raw), T0, verified=False)
    [(to, reply)] = d.messages_to_send()
    assert to == asker and isinstance(reply, NearNodes)  # answered at once, as a FindNode is
    assert asker.node_id.int not in d.table
    d.on_verified(asker.node_id, T0 + 0.1)
    assert asker.node_id.int in d.table


# -- a lookup's candidates kept in order as they arrive ------------------------------------


def test_lookup_asks_nearest_first_with_candidates_arriving_in_any_order():
    """Candidates are put in their place by distance as answers come in (no re-sort per
    answer): whatever order answers name them in, the lookup asks the nearest unasked first,
    and its result is the k nearest that answered."""
    rng = random.Random(7)
    cs = [contact(i) for i in range(1, 400)]
    target = rng.getrandbits(256)
    lk = Lookup(1, "find_node", target, T0, k=8, alpha=3)
    lk.seed(rng.sample(cs, 5))
    answered = set()
    while not lk.finished():
        asks = lk.next_requests()
        if not asks:
            break
        unasked = [c for c in lk.candidates.values() if c.state not in (IN_FLIGHT, ANSWERED) and c not in asks]
        # Nothing left unasked is nearer than what was just asked (one path, nothing failed).
        assert all(u.distance > max(a.distance for a in asks) for u in unasked)
        for cand in asks:
            lk.answered(cand.key, rng.sample(cs, 12))  # in no particular order
            answered.add(cand.key)
    assert [c.distance for c in lk.order] == sorted(c.distance for c in lk.candidates.values())
    want = sorted((c for c in lk.candidates.values() if c.key in answered), key=lambda c: c.distance)[:8]
    assert lk.closest() == [c.contact for c in want]

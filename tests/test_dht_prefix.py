"""The DHT's per-prefix limit binds only where there is contention (core/dht/routing.py, docs/dht.md).

A bucket with room takes any contact, so nodes that share one IPv4 /24 (a few VPSs of one
provider, a data-centre subnet, the deploy walk-through's four sites) all find each other. In a
full bucket a contact from a block holding fewer than ``per_prefix`` entries takes the slot of an
entry of a block holding more, so an address block that filled a bucket first (an eclipse
attempt) keeps at most ``per_prefix`` of it once contacts from other blocks arrive.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

from weftnet.core.contact import Contact
from weftnet.core.dht.routing import RoutingTable, prefix_of
from weftnet.core.limits import LOOPBACK_LAB, ExemptPrefixes

sys.path.insert(0, str(Path(__file__).parent))
from reach_lab import SimLab  # noqa: E402

T0 = 1_000_000.0
OWN = Contact(random.Random(0).randbytes(32), ("192.0.2.250", 4000))
OWN_KEY = OWN.node_id.int


def far_contacts(host_of, n: int, seed: int = 1) -> list[Contact]:
    """``n`` contacts whose IDs differ from ours in the first bit: after the first split they all
    fall in one bucket that can never split again, so it fills and stays full."""
    out, i = [], seed * 1_000_000
    while len(out) < n:
        i += 1
        c = Contact(random.Random(i).randbytes(32), (host_of(len(out)), 4000))
        if (c.node_id.int ^ OWN_KEY) >> 255:
            out.append(c)
    return out


def excess(table: RoutingTable, bucket) -> int:
    """How many entries of ``bucket`` its blocks hold beyond ``per_prefix``, in all."""
    counts: dict[str, int] = {}
    for c in bucket.entries:
        if not table.exempt.covers(c.endpoint[0]):
            counts[prefix_of(c.endpoint)] = counts.get(prefix_of(c.endpoint), 0) + 1
    return sum(max(0, n - table.per_prefix) for n in counts.values())


def block_count(bucket, block: str) -> int:
    return sum(1 for c in bucket.entries if prefix_of(c.endpoint) == block)


# -- the table --------------------------------------------------------------------


def test_a_bucket_with_room_takes_a_third_contact_of_one_24():
    t = RoutingTable(OWN_KEY, k=20, per_prefix=2)
    site = far_contacts(lambda i: f"203.0.113.{i + 1}", 3)
    for c in site:
        assert t.has_room(c, c.node_id.int)
        assert t.add(c, T0)
    assert len(t.bucket_for(site[0].node_id.int).entries) == 3
    assert t.prefix_refusals == 0


def test_in_a_full_bucket_diverse_newcomers_displace_the_crowded_block_and_the_block_is_refused():
    t = RoutingTable(OWN_KEY, k=4, per_prefix=2)
    attacker = far_contacts(lambda i: f"203.0.113.{i + 1}", 6)
    for c in attacker[:5]:
        t.add(c, T0)  # the fifth splits the first bucket; the far one holds four, full, and stays
    bucket = t.bucket_for(attacker[0].node_id.int)
    assert not bucket.last and len(bucket.entries) == 4
    assert block_count(bucket, "203.0.113.0/24") == 4
    # A newcomer of the crowded block is refused (it waits in the replacement cache).
    late = attacker[5]
    assert not t.has_room(late, late.node_id.int)
    refusals = t.prefix_refusals
    assert not t.add(late, T0)
    assert late.node_id.int not in t and late in bucket.replacements
    assert t.prefix_refusals == refusals + 1
    # Each newcomer from another block takes the slot of the crowded block's newest entry.
    honest = far_contacts(lambda i: f"198.51.{100 + i}.7", 3, seed=2)
    for n, c in enumerate(honest[:2]):
        assert t.has_room(c, c.node_id.int)
        newest = [e for e in bucket.entries if prefix_of(e.endpoint) == "203.0.113.0/24"][-1]
        assert t.add(c, T0)
        assert c.node_id.int in t and newest.node_id.int not in t and newest in bucket.replacements
        assert block_count(bucket, "203.0.113.0/24") == 3 - n
    # Now no block holds more than per_prefix: a full bucket refuses everyone, diverse or not.
    assert not t.has_room(honest[2], honest[2].node_id.int)
    assert not t.add(honest[2], T0)
    assert len(bucket.entries) == 4 and block_count(bucket, "203.0.113.0/24") == 2


def test_the_entry_that_failed_goes_first_among_the_crowded_block():
    t = RoutingTable(OWN_KEY, k=4, per_prefix=2, max_failures=5)
    attacker = far_contacts(lambda i: f"203.0.113.{i + 1}", 5)
    for c in attacker:
        t.add(c, T0)
    bucket = t.bucket_for(attacker[0].node_id.int)
    failing = bucket.entries[0]
    t.fail(failing.node_id.int)
    honest = far_contacts(lambda i: "198.51.100.7", 1, seed=2)[0]
    assert t.add(honest, T0)
    assert failing.node_id.int not in t and t.failures(failing.node_id.int) == 0


def test_one_24_that_filled_the_table_first_keeps_per_prefix_of_each_full_bucket_once_others_arrive():
    t = RoutingTable(OWN_KEY, k=20, per_prefix=2)
    rng = random.Random(7)
    sybils = [Contact(rng.randbytes(32), (f"203.0.113.{i % 250 + 1}", 4000)) for i in range(300)]
    honest = [Contact(rng.randbytes(32), (f"{20 + i // 256}.{i % 256}.9.1", 4000)) for i in range(400)]
    for c in sybils:
        t.add(c, T0)
    assert max(block_count(b, "203.0.113.0/24") for b in t.buckets) == 20  # room: it took them
    for c in honest:
        t.add(c, T0)
    crowded = 0
    for b in t.buckets:
        offered = sum(1 for c in honest if b.covers(c.node_id.int))
        if len(b.entries) == t.k and offered >= t.k:
            crowded += 1
            assert block_count(b, "203.0.113.0/24") <= 2, b
    assert crowded >= 3
    # An exempt block (configured, never implied) is never displaced.
    lab = RoutingTable(OWN_KEY, k=20, per_prefix=2, exempt=ExemptPrefixes(LOOPBACK_LAB))
    for c in sybils:
        lab.add(Contact(c.public_key, ("127.0.0.1", c.endpoint[1] + sybils.index(c))), T0)
    before = len(lab)
    for c in honest:
        lab.add(c, T0)
    assert sum(1 for c in lab.contacts() if c.endpoint[0] == "127.0.0.1") == before


# -- the invariant, for any sequence ------------------------------------------------

BLOCKS = ["203.0.113", "198.51.100", "192.0.2", "100.64.0"]
POOL = [Contact(random.Random(10_000 + i).randbytes(32), (f"{BLOCKS[i % 4]}.{i + 1}", 4000)) for i in range(48)]
# A crowded pool: half the identities in the first block.
POOL += [Contact(random.Random(20_000 + i).randbytes(32), (f"203.0.113.{100 + i}", 4000)) for i in range(48)]

ops = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "fail", "remove"]),
                         st.integers(0, len(POOL) - 1)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(2, 5), st.integers(1, 3))
def test_per_prefix_invariant_holds_after_any_sequence(seq, k, per_prefix):
    """With a bucket's excess the sum over blocks of the entries each holds beyond ``per_prefix``:

    * ``has_room`` says what ``add`` does, and a bucket with room refuses no one;
    * an add into a full bucket never raises its excess (only a free slot can);
    * a newcomer to a full bucket whose block holds fewer than ``per_prefix`` entries, while the
      excess is above zero, gets in and lowers the excess by exactly one.
    """
    t = RoutingTable(OWN_KEY, k=k, per_prefix=per_prefix, max_failures=2)
    for op, i in seq:
        c = POOL[i]
        key = c.node_id.int
        if op == "fail":
            t.fail(key)
            continue
        if op == "remove":
            t.remove(key)
            continue
        if key in t:
            assert t.add(c, T0)
            continue
        bucket = t.bucket_for(key)
        full = len(bucket.entries) >= k
        before = excess(t, bucket)
        mine = block_count(bucket, prefix_of(c.endpoint))
        room = t.has_room(c, key)
        got = t.add(c, T0)
        assert got == room
        if not full:
            assert got
            continue
        if bucket.last:
            continue  # it split: the bucket it lands in did not exist before
        after = excess(t, bucket)
        assert after <= before
        if mine < per_prefix and before > 0:
            assert got and after == before - 1
        assert len(bucket.entries) == k


# -- end to end: a handful of nodes in one /24, default per_prefix ---------------------


def test_nodes_sharing_one_24_all_find_each_other_by_node_id_with_the_default_limit():
    lab = SimLab(seed=1)
    names = [f"N{i}" for i in range(8)]
    for n in names:
        lab.public(n)  # 203.0.113.1 ... 203.0.113.8
    assert all(lab.cores[n].dht.table.per_prefix == 2 and not lab.cores[n].dht.table.exempt for n in names)
    lab.join_all()
    for a in names:
        assert len(lab.cores[a].dht.table) == len(names) - 1, a
        for b in names:
            if a == b:
                continue
            target = lab.cores[b]
            ev = lab.request(a, lab.cores[a].lookup(target.node_id, lab.net.now))
            assert ev is not None and ev.ok, (a, b)
            assert any(c.node_id == target.node_id and c.endpoint == lab.addrs[b] for c in ev.contacts), (a, b)

"""The table fill after a join, tapered by bucket depth (``fill_depths``).

What a user notices: a join sends into each farther bucket only as many fill requests as its
depth's entry allows (the farthest buckets fewest), still topping a bucket up rather than adding
(docs/dht.md, "Joining"); an empty ``fill_depths`` fills every bucket to ``join_fill``.
"""

from __future__ import annotations

import collections
import random

import pytest

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig
from weftnet.core.dht.messages import FindNode, Nodes
from weftnet.core.dht.routing import ID_BITS

T0 = 1_000_000.0


def _contact(i: int) -> Contact:
    return Contact(random.Random(9000 + i).randbytes(32), (f"10.8.{i // 256}.{i % 256}", 4000))


def _depth(own: Contact, c: Contact) -> int:
    return ID_BITS - (own.key ^ c.key).bit_length()


def _fill(depths: tuple[int, ...], held: int = 1) -> dict[int, int]:
    """A node holding ``held`` contacts in each of the buckets at depth 0, 1 and 2, and 20 deeper
    ones (so its table has split into those buckets), runs its fill; each node asked answers with
    nodes of the same depth it has not named yet. Returns the fill's requests by depth."""
    own = _contact(0)
    cfg = DhtConfig(per_prefix=None, join_fill=6, fill_depths=depths, hint_cost=0, hint_inflight_per_address=0)
    dht = Dht(own, random.Random(5), T0, cfg)
    by_depth: dict[int, list[Contact]] = collections.defaultdict(list)
    for i in range(1, 3000):
        c = _contact(i)
        d = _depth(own, c)
        by_depth[min(d, 3)].append(c)
    for d in (0, 1, 2):
        for c in by_depth[d][:held]:
            dht.table.add(c, T0)
    for c in by_depth[3][:20]:
        dht.table.add(c, T0)
    assert {b.depth for b in dht.table.buckets if not b.covers(own.key)} >= {0, 1, 2}
    spare = {d: iter(by_depth[d][held:]) for d in (0, 1, 2)}
    sent: collections.Counter = collections.Counter()
    dht._fill_after_join(T0)
    for _ in range(100):
        out = dht.messages_to_send()
        if not out:
            break
        for dst, m in out:
            assert isinstance(m, FindNode)
            d = _depth(own, dst)
            sent[d] += 1
            named = tuple(c for _, c in zip(range(4), spare[d])) if d in spare else ()
            dht.on_message(dst, Nodes(m.rid, named), T0 + 0.05)
    return {d: sent[d] for d in (0, 1, 2)}


def test_far_buckets_get_fewer_fill_requests_than_near_ones():
    # Topped up to 2, 4 and 6 contacts: one held in each, so 1, 3 and 5 requests.
    assert _fill((2, 4, 6)) == {0: 1, 1: 3, 2: 5}
    # The last entry holds for every deeper bucket.
    assert _fill((3, 5)) == {0: 2, 1: 4, 2: 4}


def test_without_a_taper_every_bucket_is_topped_up_to_join_fill():
    assert _fill(()) == {0: 5, 1: 5, 2: 5}
    # An entry above join_fill is capped at join_fill.
    assert _fill((9, 9, 9)) == {0: 5, 1: 5, 2: 5}


@pytest.mark.parametrize("depths", [(0,), (0, 6), (1, 1, 1)])
def test_a_bucket_already_holding_its_share_gets_none(depths):
    sent = _fill(depths, held=1)
    for d in (0, 1, 2):
        want = min(6, depths[min(d, len(depths) - 1)])
        assert sent[d] == max(0, want - 1)

"""Paths as a hostile peer sees it: link adverts, probes from a spoofed source, the advert table (security.md, item 18).

Whole NodeCores on the hostile-network harness (tests/hostile_tools.py), virtual time; bytes and
datagrams are counted on the simulated wire.
"""

from __future__ import annotations

import random

from hostile_tools import Sink, overlay

from weftnet.core.identity import Identity
from weftnet.core.paths.messages import FLAG_TRANSIT, LinkInfo, PathAdvert, PathProbe
from weftnet.core.wire import encode

TARGET = "192.0.2.77"


def _count_and_maybe_mute(net, x, v, mute_after_first: bool) -> dict:
    sent = {"bytes": 0, "datagrams": 0}
    orig = net._transmit

    def transmit(src, dst, data):
        if src == x.endpoint and dst == v.endpoint:
            if mute_after_first and sent["datagrams"]:
                return  # X answers nothing more: its advert is all it pays
            sent["bytes"] += len(data)
            sent["datagrams"] += 1
        orig(src, dst, data)

    net._transmit = transmit
    return sent


def test_links_a_peer_advertises_at_a_third_party_get_no_more_than_the_peer_sent():
    """V sends data to X (so V measures X's paths); X advertises eight links, all at someone else's
    address, then says nothing more. Before: V probed each of them for as long as it tracked X,
    backing off to one probe per link every 5 s: 24,156 bytes in 549 datagrams to the target in
    five minutes, for one 138-byte datagram (175x, and growing with time)."""
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    sink = Sink()
    for p in range(8):
        net.add((TARGET, 7000 + p), sink)
    sent = _count_and_maybe_mute(net, x, v, mute_after_first=True)
    adv = PathAdvert(0, tuple(LinkInfo(f"l{p}", (TARGET, 7000 + p), 1, 0) for p in range(8)))
    x.transport.send_to(v.node_id, encode(adv), net.now)
    net.flush(x.endpoint)
    for _ in range(300):
        v.paths.track(x.node_id, net.now)  # V's traffic to X
        net.flush(v.endpoint)
        net.run_for(1.0)
    assert sent["datagrams"] == 1
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]
    assert v.paths.stats["probes_unpaid"] > 0


def test_a_peer_that_keeps_talking_pays_for_probes_of_its_links_and_no_more():
    """The same advert from a peer that keeps answering V's probes of its real path: its links are
    still probed (it pays for them with what it sends), never for more than it sent."""
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    sink = Sink()
    for p in range(8):
        net.add((TARGET, 7000 + p), sink)
    sent = _count_and_maybe_mute(net, x, v, mute_after_first=False)
    adv = PathAdvert(0, tuple(LinkInfo(f"l{p}", (TARGET, 7000 + p), 1, 0) for p in range(8)))
    x.transport.send_to(v.node_id, encode(adv), net.now)
    net.flush(x.endpoint)
    for _ in range(60):
        v.paths.track(x.node_id, net.now)
        net.flush(v.endpoint)
        net.run_for(1.0)
    assert sink.datagrams > 0
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]


def test_path_probes_from_a_spoofed_source_are_answered_only_as_far_as_the_peer_pays():
    """X's PathProbes, sealed under its session with V, arrive from a spoofed source: V's replies
    there (each as long as a probe) and its validation probes never add up to more than X sent,
    and V's session stays where X really is."""
    net, nodes = overlay(6, seed=4)
    v, x = nodes[0], nodes[2]
    target = (TARGET, 9999)
    sink = Sink()
    net.add(target, sink)
    sent = {"bytes": 0, "datagrams": 0}
    orig = net._transmit

    def transmit(src, dst, data):
        if src == x.endpoint and dst == v.endpoint:
            sent["bytes"] += len(data)
            sent["datagrams"] += 1
            src = target
        orig(src, dst, data)

    net._transmit = transmit
    for i in range(300):
        x.transport.send_to(v.node_id, encode(PathProbe(i, i)), net.now)
        net.flush(x.endpoint)
        net.run_for(0.01)
    net.run_for(3)
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]
    assert v.transport.current_path(x.node_id) == x.endpoint


def test_a_flood_of_adverts_does_not_make_a_node_forget_the_links_of_the_peers_it_measures():
    """5,000 identities advertise links (and transit); the table keeps 4,096 and the tracked
    peer's advert, and a transit intermediate's before the flood's untracked ones. Before: oldest
    out, the tracked peer's first."""
    net, nodes = overlay(4, seed=7)
    v, x, c = nodes[0], nodes[1], nodes[2]
    honest = PathAdvert(0, (LinkInfo("lte", ("198.51.100.20", 4600), 50, 1),))
    v.paths.track(x.node_id, net.now)
    v.paths.handle_timer(net.now)
    v.paths.on_message(x.node_id, encode(honest), x.endpoint, net.now)
    v.paths.on_message(c.node_id, encode(PathAdvert(FLAG_TRANSIT, ())), c.endpoint, net.now)
    assert x.node_id in v.paths._peers
    rng = random.Random(3)
    junk = encode(PathAdvert(0, (LinkInfo("x", ("203.0.113.5", 4500), 1, 0),)))
    for _ in range(5000):
        v.paths.on_message(Identity.generate(rng).node_id, junk, ("203.0.113.5", 4500), net.now)
    assert len(v.paths._adverts) <= v.paths.MAX_ADVERTS
    assert v.paths._adverts.get(x.node_id) == honest
    assert c.node_id in v.paths._adverts

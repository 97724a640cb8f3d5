"""Paths, sans-IO: measurement, failover, detours, classes and explicit routes on a virtual clock.

Whole NodeCores (the real transport with its cryptography, reach and paths engines) on
weftnet.sim.paths.MultiLinkNetwork: nodes with several underlay links, impairments between
sockets. Times here are virtual, so the figures are exact for the model (10 ms one way);
the real links, impaired in namespaces, are tests/test_paths_netns.py.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from weftnet.core.identity import Identity
from weftnet.core.paths.classes import Classifier
from weftnet.core.paths.config import ClassSpec, PathsConfig, paths_config_from_dict
from weftnet.core.paths.engine import describe_target
from weftnet.core.paths.messages import PathProbe, PathProbeReply
from weftnet.core.paths.meter import DOWN, UP, PathMeter
from weftnet.core.reach.paths import LinkAddr, Via
from weftnet.core.wire import encode
from weftnet.errors import ConfigError
from weftnet.sim.paths import Impairment, PathLab, largest_gap

# -- the meter -------------------------------------------------------------------------------


def test_meter_measures_rtt_jitter_and_loss_and_goes_down_after_the_detection_time():
    m = PathMeter("p", window=10)
    now = 0.0
    for i, rtt in enumerate([0.020, 0.024, 0.020, 0.024]):
        m.probe_sent(now)
        m.answer(rtt, now + rtt)
        now += 0.2
    assert m.state == UP and m.up_since is not None
    assert 0.020 < m.srtt < 0.024
    assert 0.0005 < m.jitter < 0.004  # successive samples differ by 4 ms
    assert m.loss == 0.0
    for _ in range(2):
        m.probe_sent(now)
        m.timed_out(now + 1.0)
        now += 0.2
    assert m.loss == pytest.approx(2 / 6)
    # Nothing answered for the detection time while probes went out: down. Not before.
    last = m.last_answer
    assert not m.check(last + 0.5, 0.6) and m.state == UP
    assert m.check(last + 0.6, 0.6) and m.state == DOWN
    # Up again after two answers in a row; the outage's losses no longer count.
    m.probe_sent(now)
    m.answer(0.02, now)
    assert m.state == DOWN
    m.probe_sent(now)
    m.answer(0.02, now)
    assert m.state == UP and m.loss == 0.0


def test_a_path_that_never_answers_is_down_after_the_detection_time():
    m = PathMeter("p")
    m.probe_sent(10.0)
    assert not m.check(10.7, 0.6)  # one probe is not enough evidence
    m.probe_sent(10.2)
    assert m.check(10.7, 0.6) and m.state == DOWN


# -- classes ------------------------------------------------------------------------------------

def _ipv4(proto: int, sport: int, dport: int, src="10.9.0.1", dst="10.9.0.2", dscp=0) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, dscp << 2, 28, 0, 0, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return head + struct.pack("!HHHH", sport, dport, 8, 0)


def _ipv6(proto: int, sport: int, dport: int, src="fd77::1", dst="fd77::2", dscp=0) -> bytes:
    head = struct.pack("!IHBB16s16s", (6 << 28) | ((dscp << 2) << 20), 8, proto, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return head + struct.pack("!HHHH", sport, dport, 8, 0)


def test_classifier_matches_protocol_ports_dscp_prefixes_and_network():
    nid = bytes(range(32))
    classes = (
        ClassSpec("voice", proto=17, dport=((5060, 5061),), dscp=frozenset({46})),
        ClassSpec("corp-ssh", proto=6, ports=((22, 22),), network="corp", dst=(ipaddress.ip_network("10.9.0.0/24"),)),
        ClassSpec("overlay-web", proto=6, dport=((443, 443),), network="overlay"),
        ClassSpec("lab-net", src=(ipaddress.ip_network("fd77::/16"),)),
    )
    c = Classifier(classes, lambda n: "corp" if n == nid else None)
    vpn = b"\x01\x52" + nid
    assert c.classify(vpn + _ipv4(17, 4000, 5060, dscp=46))[0] == 0
    assert c.classify(vpn + _ipv4(17, 4000, 5060, dscp=0)) is None  # wrong DSCP
    assert c.classify(vpn + _ipv4(6, 22, 50000))[0] == 1  # either port
    assert c.classify(b"\x01\x52" + bytes(32) + _ipv4(6, 22, 50000)) is None  # another network
    assert c.classify(vpn + _ipv4(6, 22, 50000, dst="10.8.0.2")) is None  # outside the prefix
    assert c.classify(b"\x01\x58" + _ipv6(6, 50000, 443))[0] == 2
    assert c.classify(b"\x01\x58" + _ipv6(17, 1, 2))[0] == 3
    assert c.classify(b"\x01\x58" + _ipv6(17, 1, 2, src="2001:db8::1")) is None
    mpls = Classifier((ClassSpec("pe", proto=6, network="l3vpn"),))  # an L3VPN PE's labelled packets
    assert mpls.classify(b"\x01\x5c" + bytes(4) + _ipv4(6, 1, 2))[0] == 0
    assert mpls.classify(b"\x01\x52" + nid + _ipv4(6, 1, 2)) is None
    # One flow, one hash; another flow, (almost surely) another.
    a = c.classify(vpn + _ipv4(17, 4000, 5060, dscp=46))[1]
    assert a == c.classify(vpn + _ipv4(17, 4000, 5060, dscp=46))[1]
    assert a != c.classify(vpn + _ipv4(17, 4001, 5060, dscp=46))[1]
    # Offloaded pieces: the first carries the header (after a 10-byte virtio header), the rest follow it.
    first = b"\x01\x55" + nid + struct.pack("!IBB", 7, 0, 2) + bytes(10) + _ipv4(6, 22, 50000)
    rest = b"\x01\x55" + nid + struct.pack("!IBB", 7, 1, 2) + bytes(100)
    assert c.classify(first)[0] == 1 and c.classify(rest) == c.classify(first)
    assert c.classify(b"\x01\x55" + nid + struct.pack("!IBB", 8, 1, 2) + bytes(100)) is None  # unknown packet
    # Garbage never raises.
    for junk in (b"", b"\x01", b"\x01\x52", b"\x01\x58\x45", b"\x01\x59" + bytes(3), b"\x01\x55" + bytes(40)):
        c.classify(junk)


def test_config_tables_are_validated_with_one_line_errors():
    cfg, links = paths_config_from_dict(
        {"interval": 0.1, "detect": 0.5, "transit": True},
        [{"name": "fiber", "bind": "192.0.2.1:4500", "cost": 1}, {"name": "lte", "interface": "wwan0", "port": 4600,
                                                                   "cost": 50, "metered": True}],
        [{"name": "voice", "proto": "udp", "dport": "5060-5061", "latency": 0.15, "policy": "cheapest",
          "links": ["fiber", "lte"]}],
        [{"node": Identity.from_seed(bytes(32)).node_id.text(), "via": [Identity.from_seed(b"\x01" * 32).node_id.text()]}],
    )
    assert cfg.interval == 0.1 and cfg.transit and [s.name for s in cfg.links] == ["fiber", "lte"]
    assert cfg.classes[0].dport == ((5060, 5061),) and cfg.classes[0].proto == 17
    assert links[1] == {"name": "lte", "interface": "wwan0", "port": 4600}
    assert len(cfg.routes) == 1
    bad = [
        ({"intervall": 1}, None, None, None, "unknown key [paths] intervall"),
        ({"detect": 0.1, "interval": 0.2}, None, None, None, "at least one interval"),
        (None, [{"name": "x"}], None, None, "give bind"),
        (None, [{"name": "Bad Name", "bind": "1.2.3.4:1"}], None, None, "name must be"),
        (None, {"name": "x"}, None, None, "write [[link]]"),
        (None, None, [{"name": "c", "dport": 80}], None, "ports need proto"),
        (None, None, [{"name": "c", "policy": "fastest"}], None, "policy must be one of"),
        (None, None, [{"name": "c", "links": ["nope"]}], None, "which no [[link]] has"),
        (None, None, [{"name": "c", "loss": 5}], None, "share from 0 to 1"),
        (None, None, None, [{"node": "wn1xyz", "via": []}], "node"),
    ]
    for paths, lk, cl, rt, msg in bad:
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            paths_config_from_dict(paths, lk, cl, rt)


# -- labs -----------------------------------------------------------------------------------------

def _by_isp(s, d) -> bool:
    """The underlay: isp1 addresses (10.1.x) reach only isp1 addresses, isp2 only isp2."""
    return s[0].split(".")[1] == d[0].split(".")[1]


def two_sites(seed: int = 1, classes: tuple = (), paths: dict | None = None, costs=None) -> PathLab:
    lab = PathLab(seed)
    lab.net.routable = _by_isp
    for name, i in (("A", 1), ("B", 2)):
        lab.node(name, {"isp1": f"10.1.0.{i}", "isp2": f"10.2.0.{i}"}, classes=classes, paths=paths,
                 costs=costs or {"isp1": 1, "isp2": 10})
    lab.mesh()
    return lab


def detour_lab(seed: int = 1, transit: bool = True) -> PathLab:
    lab = PathLab(seed)
    for name, i in (("A", 1), ("B", 2), ("C", 3), ("D", 4)):
        lab.node(name, {"isp": f"10.1.0.{i}"}, transit=transit and name in "CD")
    lab.mesh()
    return lab


def sessions(lab: PathLab) -> int:
    return sum(c.transport.stats["handshakes_completed"] for c in lab.cores.values())


def test_each_usable_link_pair_is_measured_and_pairs_that_do_not_connect_back_off():
    lab = two_sites()
    lab.stream("A", "B", 4.0)
    st = lab.cores["A"].paths.peer_status(lab.node_id("B"), lab.net.now)
    rows = {r["path"]: r for r in st["paths"]}
    assert rows["10.1.0.2:4500"]["state"] == "up" and rows["10.1.0.2:4500"]["link"] == "isp1"
    assert rows["10.2.0.2:4500 on isp2"]["state"] == "up" and rows["10.2.0.2:4500 on isp2"]["link"] == "isp2"
    assert 19.0 < rows["10.2.0.2:4500 on isp2"]["rtt_ms"] < 22.0  # two 10 ms hops
    assert rows["10.2.0.2:4500"]["state"] == "down" and rows["10.1.0.2:4500 on isp2"]["state"] == "down"
    # While traffic flows, usable paths are probed every 0.2 s; the pairs that never answer, less and less.
    before = {k: v["probes"] for k, v in rows.items()}
    lab.stream("A", "B", 20.0, rate=20)
    rows = {r["path"]: r for r in lab.cores["A"].paths.peer_status(lab.node_id("B"), lab.net.now)["paths"]}
    sent = {k: rows[k]["probes"] - before[k] for k in rows}
    assert 80 <= sent["10.1.0.2:4500"] <= 120 and 80 <= sent["10.2.0.2:4500 on isp2"] <= 120
    assert sent["10.2.0.2:4500"] < 40 and sent["10.1.0.2:4500 on isp2"] < 40


def test_a_link_whose_round_trip_grows_past_the_probe_timeout_stays_up_and_measured():
    """Before: a probe's reply after its timeout (1 s here) was thrown away, though meter.py says a
    late reply counts for liveness and RTT: a link whose round trip grew to 1.6 s (a bufferbloated
    uplink) was declared down and never measured again, while it carried every packet. After: the
    late replies keep it up, its RTT follows, and its probes are answered in time again."""
    lab = two_sites()
    lab.stream("A", "B", 3.0)
    lab.net.impair(Impairment(lambda s, d: s[0].startswith("10.2.") or d[0].startswith("10.2."), delay=0.8))
    lab.stream("A", "B", 30.0, rate=20)
    a = lab.cores["A"].paths
    rows = {r["path"]: r for r in a.peer_status(lab.node_id("B"), lab.net.now)["paths"]}
    slow = rows["10.2.0.2:4500 on isp2"]
    assert slow["state"] == "up"
    assert 1500.0 < slow["rtt_ms"] < 1800.0  # two 10 ms hops and 0.8 s each way
    assert a.stats["probe_replies_late"] > 0
    assert rows["10.1.0.2:4500"]["state"] == "up"


def test_an_idle_peer_is_probed_slowly_and_an_active_one_fast():
    lab = two_sites()
    lab.stream("A", "B", 2.0)
    a = lab.cores["A"].paths
    lab.run(10.0)  # active_for (5 s) runs out
    before = a.stats["probes_sent"]
    lab.run(20.0)
    idle = a.stats["probes_sent"] - before
    before = a.stats["probes_sent"]
    lab.stream("A", "B", 20.0, rate=10)
    active = a.stats["probes_sent"] - before
    assert idle <= 20  # ~2 usable pairs every 5 s (+ backed-off dead pairs)
    assert active >= 150  # ~2 pairs x 5 a second x 20 s
    lab.run(70.0)
    assert lab.cores["A"].paths.peer_status(lab.node_id("B"), lab.net.now) is None  # no longer tracked


def test_a_cut_link_moves_traffic_to_the_other_link_within_detection_plus_one_interval():
    lab = two_sites()
    lab.stream("A", "B", 3.0, rate=100)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)  # isp1: cheaper and as fast
    made = sessions(lab)
    t_cut = lab.net.now
    lab.net.cut_host("10.1.0.1")  # A's isp1 interface goes down
    lab.stream("A", "B", 4.0, rate=100, start_seq=1000)
    assert lab.path("A", "B") == LinkAddr("10.2.0.2", 4500, "isp2")
    gap = largest_gap(lab.received("B", "A"), t_cut, lab.net.now)
    cfg = PathsConfig()
    assert gap <= cfg.detect + cfg.interval + 0.05  # detection, one probe interval, one one-way delay
    assert sessions(lab) == made  # the same session: nothing inside the overlay is reset
    events = [ev.what for _, ev in lab.events["A"] if getattr(ev, "kind", "") == "paths"]
    assert "path down" in events


def test_a_blackholed_direct_path_detours_through_a_transit_peer_and_comes_back_with_hysteresis():
    lab = detour_lab()
    lab.stream("A", "B", 3.0, rate=50)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)
    made = sessions(lab)
    t_cut = lab.net.now
    cut = lab.net.cut("10.1.0.1", "10.1.0.2")
    lab.stream("A", "B", 5.0, rate=50, start_seq=1000)
    path = lab.path("A", "B")
    assert type(path) is Via and len(path.hops) == 1 and path.hops[0] in (lab.node_id("C").raw, lab.node_id("D").raw)
    gap = largest_gap(lab.received("B", "A"), t_cut, lab.net.now)
    assert gap < 1.0
    relayed = sum(lab.cores[n].paths.transit.stats["forwarded"] for n in "CD")
    assert relayed > 100
    # Heal: back to the direct path, but only after it has been up for `hold` (2 s), and once.
    lab.net.impairments.remove(cut)
    t_heal = lab.net.now
    lab.stream("A", "B", 8.0, rate=50, start_seq=2000)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)
    back = [t for t, ev in lab.events["A"] if getattr(ev, "what", "") == "detour left"]
    assert len(back) == 1 and back[0] - t_heal >= 2.0
    taken = [t for t, ev in lab.events["A"] if getattr(ev, "what", "") == "detour taken"]
    assert len(taken) == 1  # no flapping
    assert sessions(lab) == made


def test_an_idle_peer_answers_through_the_detour_once_its_direct_path_is_blackholed():
    """B tracks A (it sent A data a while ago) but is idle: its meter probes A every 5 s and takes
    15 s to call a path down. A streams to B, the direct path is blackholed, A detours through C or
    D: B hears A only there and must answer there too (reach's rule: a path in use not heard on for
    ``trust`` is left for the one the peer's packets come on), not keep sending into the blackhole
    until its idle meter notices (A's pings unanswered ~10 s: the netns blackhole test's overlay
    liveness then took B for dead and closed the session)."""
    lab = PathLab(2)
    for name, i in (("A", 1), ("B", 2), ("C", 3), ("D", 4)):
        lab.node(name, {"isp": f"10.1.0.{i}"}, transit=name in "CD", reach=True)
    lab.mesh()
    lab.stream("B", "A", 2.0, rate=20)  # B tracks A from now on, idle after active_for
    lab.run(10.0)
    lab.stream("A", "B", 3.0, rate=50)
    a, b = lab.cores["A"], lab.node_id("B")
    assert lab.cores["B"].paths.peer_status(lab.node_id("A"), lab.net.now)["active"] is False
    lab.net.cut("10.1.0.1", "10.1.0.2")
    lab.stream("A", "B", 2.0, rate=50, start_seq=1000)
    assert type(lab.path("A", "B")) is Via
    ids = []
    for i in range(8):  # a ping every 0.5 s for 4 s, 2 s into the outage
        ids.append(a.transport.ping(b, lab.net.now))
        lab.net.flush(lab.addrs["A"])
        lab.stream("A", "B", 0.5, rate=50, start_seq=2000 + 100 * i)
    lab.run(1.0)
    unanswered = [i for i in ids if i in (a.transport._by_node[b].pings or {})]
    assert unanswered == []
    assert type(lab.path("B", "A")) is Via


def test_a_much_faster_detour_replaces_a_slow_direct_path_and_a_small_gain_does_not():
    lab = detour_lab(seed=2)
    lab.stream("A", "B", 3.0)
    slow = lab.net.cut("10.1.0.1", "10.1.0.2", loss=0.0, delay=0.1)  # +200 ms RTT on the direct path
    lab.stream("A", "B", 6.0, start_seq=1000)
    assert type(lab.path("A", "B")) is Via
    lab.net.impairments.remove(slow)
    lab.net.cut("10.1.0.1", "10.1.0.2", loss=0.0, delay=0.005)  # +10 ms: below the 30 ms margin
    lab.stream("A", "B", 8.0, start_seq=2000)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)


def test_without_transit_no_node_forwards_and_no_detour_is_taken():
    lab = detour_lab(transit=False)
    lab.stream("A", "B", 2.0)
    lab.net.cut("10.1.0.1", "10.1.0.2")
    lab.stream("A", "B", 4.0, start_seq=1000)
    assert type(lab.path("A", "B")) is not Via
    assert all(lab.cores[n].paths.transit.stats["forwarded"] == 0 for n in "CD")


def test_a_latency_sla_class_avoids_the_link_that_violates_it():
    voice = ClassSpec("voice", proto=17, dport=((5060, 5060),), latency=0.05, policy="cheapest")
    lab = two_sites(classes=(voice,))
    lab.stream("A", "B", 3.0)
    lab.stream("A", "B", 2.0, dport=5060, start_seq=500)
    by = lab.cores["A"].paths.status(lab.net.now)["classes"][0]["links"]
    assert by == {"isp1": 100}  # both meet the SLA: the cheaper link
    lab.net.cut("10.1.0.1", "10.1.0.2", loss=0.0, delay=0.04)  # isp1's RTT goes to ~100 ms
    lab.stream("A", "B", 4.0, start_seq=1000)
    lab.stream("A", "B", 2.0, dport=5060, start_seq=2000)
    st = lab.cores["A"].paths.status(lab.net.now)["classes"][0]
    assert st["links"]["isp2"] == 100 and st["links"]["isp1"] == 100 and st["sla_unmet"] == 0
    late = [arr - sent for seq, sent, arr in lab.received("B", "A", 5060) if seq >= 2000]
    assert max(late) < 0.025  # the class's packets took isp2: ~10 ms one way, not ~50


def test_a_duplicate_class_survives_loss_on_both_links_with_far_less_loss():
    critical = ClassSpec("critical", proto=17, dport=((6000, 6000),), policy="duplicate")
    lab = two_sites(classes=(critical,))
    lab.stream("A", "B", 3.0)
    for host in ("10.1.0.2", "10.2.0.2"):
        lab.net.cut_host(host, loss=0.05)
    n = lab.stream("A", "B", 20.0, rate=100, dport=6000, start_seq=10_000)
    dup_loss = 1 - len(lab.received("B", "A", 6000)) / n
    n2 = lab.stream("A", "B", 20.0, rate=100, start_seq=50_000)
    plain_loss = 1 - len([r for r in lab.received("B", "A", 5004) if r[0] >= 50_000]) / n2
    assert plain_loss > 0.03
    assert dup_loss < 0.01 and dup_loss < plain_loss / 5
    b = lab.cores["B"].transport.stats
    assert b["duplicates_dropped"] > 1500  # the second copies, dropped before any decryption
    st = lab.cores["A"].paths.status(lab.net.now)["classes"][0]
    assert st["duplicated"] > 1800 and set(st["links"]) == {"isp1", "isp2"}


def test_a_duplicate_class_keeps_both_links_when_its_peer_is_tracked_again_after_a_session_restart():
    """tests/test_paths_netns.py's lab (links l1, l2 and c to a third site, 5% loss into B): the
    overlay plane closes A's session with B mid-stream (as it does for a peer it finds dead) and
    the next packet makes a new one; paths tracks B afresh. Its second link answered A's probes a
    moment ago and must be probed at once, not paid for from reach's ledger of the new session
    as if B had only named it: there, six link pairs that never answer (our c link, the other
    ISP's address) took the little the ledger held, and the class ran on one link for seconds
    (seed 3: the whole 7 s, 4.7% lost; the netns test saw 5.7%)."""
    critical = ClassSpec("critical", proto=17, dport=((6000, 6000),), policy="duplicate", links=("isp1", "isp2"))
    lab = PathLab(3)
    lab.net.routable = _by_isp  # so c (10.3.0.1 at A, 10.4.0.2 at B) reaches neither the other c nor an ISP
    for name, i in (("A", 1), ("B", 2)):
        lab.node(name, {"isp1": f"10.1.0.{i}", "isp2": f"10.2.0.{i}", "c": f"10.{2 + i}.0.{i}"},
                 classes=(critical,), reach=True, costs={"isp1": 1, "isp2": 10, "c": 50})
    lab.mesh()
    a, b = lab.cores["A"], lab.node_id("B")
    lab.stream("A", "B", 3.0)
    lab.net.impair(Impairment(lambda s, d: d[0] in ("10.1.0.2", "10.2.0.2"), loss=0.05))
    lab.stream("A", "B", 2.0, start_seq=5000)
    before = a.paths.status(lab.net.now)["classes"][0]["links"].get("isp2", 0)
    a.transport.close(b, lab.net.now)
    n = lab.stream("A", "B", 7.0, rate=100, dport=6000, start_seq=10_000)
    dup_loss = 1 - len(lab.received("B", "A", 6000)) / n
    st = a.paths.status(lab.net.now)["classes"][0]
    assert a.transport.stats["handshakes_initiated"] >= 2  # a new session, and B tracked again
    assert st["links"]["isp2"] - before >= 0.9 * n  # both links from the first fraction of a second
    assert dup_loss < 0.01

def test_a_peer_dropped_from_tracking_is_not_steered_until_tracked_again():
    """Steering finds its peer by the ID's bytes, a second table beside the tracked peers: a peer
    dropped (idle, or evicted for another at max_tracked) must be gone from both, and one tracked
    again is steered afresh. A payload to a dropped peer takes the default path, uncounted."""
    critical = ClassSpec("critical", proto=17, dport=((6000, 6000),), policy="duplicate")
    lab = PathLab(2)
    lab.net.routable = _by_isp
    for name, i in (("A", 1), ("B", 2), ("C", 3)):
        lab.node(name, {"isp1": f"10.1.0.{i}", "isp2": f"10.2.0.{i}"}, classes=(critical,),
                 paths={"max_tracked": 1}, costs={"isp1": 1, "isp2": 10})
    lab.mesh()
    a = lab.cores["A"].paths
    b, c = lab.node_id("B"), lab.node_id("C")

    def counts():
        st = a.status(lab.net.now)["classes"][0]
        return st["packets"], st["duplicated"]

    lab.stream("A", "B", 3.0, dport=6000)
    assert a.peer_status(b, lab.net.now) is not None and counts()[1] > 50
    # C becomes active: with room for one, B (idle longer) is evicted.
    lab.stream("A", "C", 3.0, dport=6000, start_seq=1000)
    assert a.peer_status(b, lab.net.now) is None and a.peer_status(c, lab.net.now) is not None
    before = counts()
    lab.stream("A", "B", 0.1, rate=10, dport=6000, start_seq=2000)  # one payload, to an untracked peer
    assert counts() == before and [r[0] for r in lab.received("B", "A", 6000)][-1] == 2000
    # Tracked again (C, idle longer now, goes): B's critical payloads are duplicated again.
    lab.stream("A", "B", 3.0, dport=6000, start_seq=3000)
    assert a.peer_status(b, lab.net.now) is not None and a.peer_status(c, lab.net.now) is None
    assert counts()[1] > before[1] + 50
    # Idle past track_for: dropped; a payload then is not steered, and it is tracked anew after.
    lab.run(70.0)
    assert a.peer_status(b, lab.net.now) is None
    before = counts()
    lab.stream("A", "B", 0.1, rate=10, dport=6000, start_seq=4000)
    assert counts() == before
    lab.stream("A", "B", 3.0, dport=6000, start_seq=5000)
    assert counts()[1] > before[1] + 50


def test_default_traffic_stays_off_a_metered_link_while_another_is_up():
    lab = PathLab(6)
    lab.net.routable = _by_isp
    for name, i in (("A", 1), ("B", 2)):
        # isp1 is the metered one here, and it is the main socket: traffic would start on it.
        lab.node(name, {"isp1": f"10.1.0.{i}", "isp2": f"10.2.0.{i}"}, metered=("isp1",), costs={"isp1": 1, "isp2": 5})
    lab.mesh()
    lab.stream("A", "B", 3.0)
    assert lab.path("A", "B") == LinkAddr("10.2.0.2", 4500, "isp2")
    lab.net.cut_host("10.2.0.1")  # the unmetered link fails: the metered one is better than nothing
    lab.stream("A", "B", 3.0, start_seq=1000)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)


def test_a_reloaded_config_changes_classes_routes_and_timers_at_once():
    lab = PathLab(7)
    for name, i in (("A", 1), ("B", 2), ("X", 3)):
        lab.node(name, {"isp": f"10.1.0.{i}"}, transit=name == "X")
    lab.mesh()
    a = lab.cores["A"].paths
    from dataclasses import replace

    from weftnet.core.paths.config import RouteSpec

    route = RouteSpec(lab.node_id("B"), (lab.node_id("X"),))
    voice = ClassSpec("voice", proto=17, dport=((5004, 5004),), policy="best")
    lines = a.reconfigure(replace(a.cfg, interval=0.1, classes=(voice,), routes=(route,)), lab.net.now)
    assert any("probe every 0.1 s" in x for x in lines) and any("route to" in x for x in lines)
    lab.stream("A", "B", 2.0)
    assert lab.path("A", "B") == Via((lab.node_id("X").raw,), lab.node_id("B").raw)
    assert a.status(lab.net.now)["classes"][0]["packets"] == 100
    a.reconfigure(replace(a.cfg, routes=()), lab.net.now)
    lab.stream("A", "B", 2.0, start_seq=1000)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)


def test_a_balanced_class_spreads_flows_over_both_links_and_keeps_each_flow_on_one():
    bulk = ClassSpec("bulk", proto=17, dport=((7000, 7000),), policy="balance")
    lab = two_sites(classes=(bulk,))
    lab.stream("A", "B", 3.0)
    for i in range(16):
        lab.stream("A", "B", 0.2, rate=50, dport=7000, sport=41000 + i, start_seq=100_000 + 100 * i)
    by = lab.cores["A"].paths.status(lab.net.now)["classes"][0]["links"]
    assert set(by) == {"isp1", "isp2"} and min(by.values()) >= 30
    sent_on = lab.net.sent_by_link
    assert sent_on[(lab.addrs["A"], "isp2")] > 100


def test_an_explicit_route_pins_two_hops_and_clearing_it_returns_to_direct():
    lab = PathLab(3)
    for name, i in (("A", 1), ("B", 2), ("X", 3), ("Y", 4)):
        lab.node(name, {"isp": f"10.1.0.{i}"}, transit=name in "XY")
    lab.mesh()
    a = lab.cores["A"]
    x, y, b = lab.node_id("X"), lab.node_id("Y"), lab.node_id("B")
    with pytest.raises(ConfigError, match="same node twice"):
        a.paths.set_route(b, [x, x], lab.net.now)
    with pytest.raises(ConfigError, match="its own destination"):
        a.paths.set_route(b, [b], lab.net.now)
    a.paths.set_route(b, [x, y], lab.net.now)
    lab.stream("A", "B", 3.0, start_seq=0)
    assert lab.path("A", "B") == Via((x.raw, y.raw), b.raw)
    assert len(lab.received("B", "A")) >= 145
    assert lab.cores["X"].paths.transit.stats["forwarded"] >= 150
    assert lab.cores["Y"].paths.transit.stats["forwarded"] >= 150
    route = a.paths.routes(lab.net.now)[0]
    assert route["via"] == [x.text(), y.text()] and route["in_use"] and route["state"] == "up"
    assert describe_target(lab.path("A", "B")) == f"via {x.text()},{y.text()}"
    assert a.paths.clear_route(b, lab.net.now) == 1
    lab.stream("A", "B", 2.0, start_seq=1000)
    assert lab.path("A", "B") == ("10.1.0.2", 4500)


def test_probe_replies_are_never_larger_than_probes_and_are_rate_limited():
    lab = detour_lab()
    a, b = lab.cores["A"], lab.cores["B"]
    assert len(encode(PathProbeReply(2**64 - 1, 2**32 - 1))) == len(encode(PathProbe(2**64 - 1, 2**32 - 1)))
    before = b.paths.stats["replies_limited"]
    for i in range(200):  # 200 probes at once: more than max_reply_rate (50) a second
        a.transport.send_to(b.node_id, encode(PathProbe(i, i)), lab.net.now)
    lab.net.flush(lab.addrs["A"])
    lab.run(0.5)
    assert b.paths.stats["replies_limited"] - before >= 140


def test_status_reports_links_paths_classes_and_transit():
    bulk = ClassSpec("bulk", proto=17, dport=((7000, 7000),), policy="balance")
    lab = two_sites(classes=(bulk,))
    lab.stream("A", "B", 3.0)
    st = lab.cores["A"].status(lab.net.now)["paths"]
    assert [link["name"] for link in st["links"]] == ["isp1", "isp2"]
    assert st["links"][0]["main"] and st["links"][0]["paths_up"] == 1 and st["links"][1]["paths_up"] == 1
    assert st["classes"][0]["name"] == "bulk" and "transit" in st and st["stats"]["probes_sent"] > 0
    peers = lab.cores["A"].peers(lab.net.now)
    rows = peers[0]["paths"]
    assert any(r.get("measured", {}).get("state") == "up" and r["link"] == "isp2" for r in rows)


def test_a_deterministic_run_for_a_seed():
    def run() -> list:
        lab = detour_lab(seed=9)
        lab.stream("A", "B", 2.0)
        lab.net.cut("10.1.0.1", "10.1.0.2")
        lab.stream("A", "B", 2.0, start_seq=1000)
        return lab.received("B", "A")

    assert run() == run()


@pytest.mark.slow
def test_the_ron_experiment_routes_around_cuts_that_the_direct_path_cannot():
    from weftnet.sim.paths import OutageModel, run_ron

    model = OutageModel(per_minute=6.0, region_share=0.3, cut_share=1.0, median=15.0)
    with_d = run_ron(nodes=7, pairs=6, duration=90.0, seed=4, model=model, detour=True)
    without = run_ron(nodes=7, pairs=6, duration=90.0, seed=4, model=model, detour=False)
    assert with_d["outages"] == without["outages"]  # one schedule for both runs
    cuts_with = [r for r in with_d["affected"] if r["cut"]]
    cuts_without = [r for r in without["affected"] if r["cut"]]
    assert cuts_with and len(cuts_with) == len(cuts_without)
    assert not any(r["routed_around"] for r in cuts_without)  # nothing else carries the traffic
    routed = [r for r in cuts_with if r["routed_around"]]
    assert len(routed) >= 0.8 * len(cuts_with)
    assert all(r["recovery"] < 2.0 for r in routed)  # virtual time: detection (0.6 s) + a probe interval + RTT
    assert all(r["stretch"] >= 1.0 for r in routed if r["stretch"])


def test_a_transit_hop_without_a_session_to_the_next_hop_opens_one_at_a_bounded_rate():
    lab = PathLab(8)
    for name, i in (("A", 1), ("B", 2), ("X", 3)):
        lab.node(name, {"isp": f"10.1.0.{i}"}, transit=name == "X")
    lab.mesh()
    x, b = lab.cores["X"], lab.node_id("B")
    x.transport.close(b, lab.net.now)  # X and B no longer have a session (an idle one expired)
    lab.cores["B"].transport.close(lab.node_id("X"), lab.net.now)
    assert not x.transport.has_session(b)
    lab.cores["A"].paths.set_route(b, [lab.node_id("X")], lab.net.now)
    lab.stream("A", "B", 2.0)
    assert x.transport.has_session(b)
    assert x.paths.transit.stats["opened_for_peers"] == 1 and len(lab.received("B", "A")) >= 90
    t = x.paths.transit
    for _ in range(20):  # another sender cannot make X open sessions without bound
        t.may_open(lab.node_id("A"), b, lab.net.now)
    assert t.stats["opened_for_peers"] == t.OPENS_PER_MINUTE and t.stats["refused_open_rate"] >= 10

"""The speaker's routing: decision process, iBGP/eBGP export rules, route reflection, graceful restart,
route refresh, prefix limits, policy hooks; EVPN instances over a recording dataplane; the [bgp] config."""

from __future__ import annotations

import ipaddress

import pytest

from bgp_exabgp import exabgp_crosscheck  # noqa: F401  (fixture: every UPDATE sent here is checked)
from bgp_pair import Net
from weftnet.core.bgp import IPV4_UNICAST, L2VPN_EVPN
from weftnet.core.bgp.capability import GracefulRestart
from weftnet.core.bgp.session import PeerSession
from weftnet.core.bgp.attributes import (
    AsPath, Attributes, ClusterList, LocalPref, Med, Origin, OriginatorId,
)
from weftnet.core.bgp.evpn import EviConfig, Evpn, RecordingDataplane
from weftnet.core.bgp.extcommunity import MacMobility, RouteTarget
from weftnet.core.bgp.nlri import EvpnMacIp, Prefix
from weftnet.core.bgp.policy import RouteTargetImport
from weftnet.core.bgp.rib import Path, PeerInfo, select_best
from weftnet.errors import ConfigError

pytestmark = pytest.mark.usefixtures("exabgp_crosscheck")
ip = ipaddress.ip_address
P = Prefix.parse("192.0.2.0/24")


def path(src="a", asn=65002, rid="1.1.1.1", addr="10.0.0.1", ibgp=False, seq=0, **attrs) -> Path:
    a = [Origin(attrs.pop("origin", 0)), AsPath.sequence(*attrs.pop("as_path", (asn,)))]
    if "lp" in attrs:
        a.append(LocalPref(attrs.pop("lp")))
    if "med" in attrs:
        a.append(Med(attrs.pop("med")))
    if "oid" in attrs:
        a.append(OriginatorId(ip(attrs.pop("oid"))))
    if "cl" in attrs:
        a.append(ClusterList(tuple(ip(x) for x in attrs.pop("cl"))))
    return Path(P, Attributes(a), ip("192.0.2.254"), PeerInfo(src, asn, ip(rid), ip(addr), ibgp), seq)


@pytest.mark.parametrize("winner,loser,why", [
    (path("a", lp=200), path("b", lp=100), "higher LOCAL_PREF"),
    (path("a", as_path=(1,)), path("b", as_path=(1, 2)), "shorter AS_PATH"),
    (path("a", origin=0), path("b", origin=2), "lower ORIGIN"),
    (path("a", med=5), path("b", med=10), "lower MED from the same AS"),
    (path("a"), path("b", ibgp=True, asn=65002), "eBGP over iBGP"),
    (path("a", rid="1.1.1.1"), path("b", rid="2.2.2.2"), "lower BGP identifier"),
    (path("a", rid="9.9.9.9", oid="1.1.1.1"), path("b", rid="2.2.2.2"), "ORIGINATOR_ID stands for the identifier"),
    (path("a", cl=["1.1.1.1"]), path("b", cl=["1.1.1.1", "2.2.2.2"]), "shorter CLUSTER_LIST"),
    (path("a", addr="10.0.0.1"), path("b", addr="10.0.0.2"), "lower peer address"),
])
def test_decision_process(winner, loser, why):
    assert select_best([loser, winner]) is winner, why
    assert select_best([winner, loser]) is winner, why


def test_med_is_only_compared_within_one_neighbour_as():
    a = path("a", asn=1, as_path=(1,), med=100, rid="1.1.1.1")
    b = path("b", asn=2, as_path=(2,), med=5, rid="2.2.2.2")
    assert select_best([a, b]) is a  # different neighbour AS: MED ignored, BGP identifier decides


def three(n: Net, ibgp_ab=True, rr=False):
    """A - B - C in a line; A-B iBGP or eBGP, B-C iBGP; B reflects for A and C if rr."""
    a = n.add("10.0.0.1", 65000 if ibgp_ab else 65001, [IPV4_UNICAST])
    b = n.add("10.0.0.2", 65000, [IPV4_UNICAST])
    c = n.add("10.0.0.3", 65000, [IPV4_UNICAST])
    n.peer("10.0.0.1", "10.0.0.2")
    n.peer("10.0.0.2", "10.0.0.1", route_reflector_client=rr)
    n.peer("10.0.0.2", "10.0.0.3", route_reflector_client=rr)
    n.peer("10.0.0.3", "10.0.0.2")
    n.start()
    return a, b, c


def best(sp, nlri=P):
    return sp.rib.best(nlri.family, nlri.key)


def test_ibgp_routes_are_not_passed_to_other_ibgp_peers_without_reflection():
    n = Net()
    a, b, c = three(n)
    a.originate(P, now=n.now)
    n.pump()
    assert best(b) is not None and best(c) is None


def test_route_reflector_sets_originator_and_cluster_and_stops_loops():
    n = Net()
    a, b, c = three(n, rr=True)
    a.originate(P, Attributes([Med(7)]), now=n.now)
    n.pump()
    p = best(c)
    assert p.attrs.originator_id.router_id == ip("10.0.0.1")
    assert p.attrs.cluster_list.ids == (ip("10.0.0.2"),)
    assert p.next_hop == ip("10.0.0.1")  # a reflector leaves the next hop alone
    assert p.attrs.local_pref.value == 100
    # C hands it back to B? C is no reflector, so no; and A drops its own route if it ever came back
    assert best(a).local


def test_ebgp_prepends_sets_next_hop_and_strips_ibgp_attributes():
    n = Net()
    a, b, c = three(n, ibgp_ab=False)
    b.originate(Prefix.parse("198.51.100.0/24"), Attributes([LocalPref(300), Med(9)]), now=n.now)
    a.originate(P, Attributes([Med(3)]), now=n.now)
    n.pump()
    pa = best(a, Prefix.parse("198.51.100.0/24"))
    assert pa.attrs.as_path == AsPath.sequence(65000) and pa.next_hop == ip("10.0.0.2")
    assert pa.attrs.local_pref is None and pa.attrs.med.value == 9  # our own route's MED goes out
    pb = best(b)
    assert pb.attrs.as_path == AsPath.sequence(65001) and pb.attrs.med.value == 3
    pc = best(c)  # learned by B over eBGP: passed on to iBGP with LOCAL_PREF, next hop unchanged
    assert pc.attrs.local_pref.value == 100 and pc.next_hop == ip("10.0.0.1")


def test_ebgp_drops_routes_with_our_as_in_the_path():
    n = Net()
    a = n.add("10.0.0.1", 65001, [IPV4_UNICAST])
    b = n.add("10.0.0.2", 65002, [IPV4_UNICAST])
    n.peer("10.0.0.1", "10.0.0.2")
    n.peer("10.0.0.2", "10.0.0.1")
    n.start()
    a.originate(P, Attributes([AsPath.sequence(65002, 7)]), now=n.now)
    n.pump()
    assert best(b) is None and b.stats["loops_dropped"] == 1


def pair(n: Net, gr=120, restarting_a=None, **kw):
    a = n.add("10.0.0.1", 65001, [IPV4_UNICAST], graceful_restart_time=gr)
    b = n.add("10.0.0.2", 65002, [IPV4_UNICAST], graceful_restart_time=gr)
    n.peer("10.0.0.1", "10.0.0.2", **kw)
    n.peer("10.0.0.2", "10.0.0.1", **kw)
    if restarting_a:  # A offers what FRR or GoBGP with graceful restart offer: IPv4 with forwarding preserved
        plain = PeerSession.open_message

        def open_message(self):
            o = plain(self)
            if self.local_as != 65001:
                return o
            caps = tuple(c for c in o.capabilities if not isinstance(c, GracefulRestart))
            return type(o)(o.asn, o.hold_time, o.router_id,
                           caps + (GracefulRestart(gr, False, False, ((IPV4_UNICAST, True),)),))

        restarting_a.setattr(PeerSession, "open_message", open_message)
    n.start()
    return a, b


def test_graceful_restart_keeps_routes_stale_until_end_of_rib(monkeypatch):
    n = Net()
    a, b = pair(n, restarting_a=monkeypatch)
    a.originate(P, now=n.now)
    a.originate(Prefix.parse("203.0.113.0/24"), now=n.now)
    n.pump()
    n.refuse.add("10.0.0.1")  # A's side stays unreachable for a while
    n.refuse.add("10.0.0.2")
    n.cut("10.0.0.1", "10.0.0.2")
    p = best(b)
    assert p is not None and p.stale  # RFC 4724 4.2: kept, marked stale
    assert b.summary(n.now)["peers"][0]["stale"] == 2
    a.withdraw(Prefix.parse("203.0.113.0/24"), n.now)
    n.refuse.clear()
    n.advance(70)
    assert b.peers["10.0.0.1"].established is not None
    assert best(b) is not None and not best(b).stale  # re-announced before End-of-RIB
    assert best(b, Prefix.parse("203.0.113.0/24")) is None  # not re-announced: removed at End-of-RIB
    assert b.stats["stale_removed"] == 1


def test_graceful_restart_timer_expiry_removes_stale_routes(monkeypatch):
    n = Net()
    a, b = pair(n, gr=30, restarting_a=monkeypatch)
    a.originate(P, now=n.now)
    n.pump()
    n.refuse.update({"10.0.0.1", "10.0.0.2"})
    n.cut("10.0.0.1", "10.0.0.2")
    assert best(b).stale
    n.advance(35)
    assert best(b) is None


def test_a_receiver_only_peer_gets_no_grace():
    n = Net()
    a, b = pair(n)  # A offers graceful restart without families (receiver only): its routes go at once
    a.originate(P, now=n.now)
    n.pump()
    n.refuse.update({"10.0.0.1", "10.0.0.2"})
    n.cut("10.0.0.1", "10.0.0.2")
    assert best(b) is None


def test_notification_ends_without_graceful_restart(monkeypatch):
    n = Net()
    a, b = pair(n, restarting_a=monkeypatch)
    a.originate(P, now=n.now)
    n.pump()
    a.peers["10.0.0.2"].session.stop(n.now)
    n.pump()
    assert best(b) is None


def test_route_refresh_resends_the_table():
    n = Net()
    a, b = pair(n)
    a.originate(P, now=n.now)
    n.pump()
    before = len(n.wire)
    assert b.request_refresh("10.0.0.1", IPV4_UNICAST)
    n.pump()
    resent = [d for src, _, d in n.wire[before:] if src == "10.0.0.1" and d[18] == 2]
    assert resent and Prefix.parse("192.0.2.0/24").encode() in resent[0]


def test_prefix_limit_resets_the_session():
    n = Net()
    a, b = pair(n, max_prefixes=3)
    for i in range(5):
        a.originate(Prefix.parse(f"10.{i}.0.0/16"), now=n.now)
    n.pump()
    notes = [d[19:21] for src, _, d in n.wire if src == "10.0.0.2" and d[18] == 3]
    assert b"\x06\x01" in notes  # Cease / Maximum Number of Prefixes Reached
    assert b.rib.count(IPV4_UNICAST) == 0


def test_policy_hooks():
    n = Net()
    a, b = pair(n)
    b.import_policy = lambda peer, p: None if p.nlri == P else p
    a.export_policy = lambda peer, p, attrs: attrs.replace(Med(42))
    a.originate(P, now=n.now)
    a.originate(Prefix.parse("198.51.100.0/24"), now=n.now)
    n.pump()
    assert best(b) is None and b.stats["policy_rejected"] == 1
    assert best(b, Prefix.parse("198.51.100.0/24")).attrs.med.value == 42


# -- EVPN --------------------------------------------------------------------------------------------------------------
MAC = bytes.fromhex("020000000001")


def evpn_pair(n: Net, rt_b: str = "65000:100"):
    sides = []
    for addr, rt in (("10.0.0.1", "65000:100"), ("10.0.0.2", rt_b)):
        sp = n.add(addr, 65000, [L2VPN_EVPN])
        rti = RouteTargetImport()
        sp.import_policy = rti
        ev = Evpn(sp, RecordingDataplane(), rti)
        sides.append((sp, ev, EviConfig.auto(100, 65000, sp.cfg.router_id, ip(addr), [RouteTarget.parse(rt)])))
    n.peer("10.0.0.1", "10.0.0.2")
    n.peer("10.0.0.2", "10.0.0.1")
    n.start()
    for sp, ev, cfg in sides:
        ev.add_instance(cfg, n.now)
    n.pump()
    return sides[0][1], sides[1][1]


def test_evpn_instances_exchange_flood_and_mac_routes():
    n = Net()
    ea, eb = evpn_pair(n)
    assert ea.dp.flood == {100: {ip("10.0.0.2")}} and eb.dp.flood == {100: {ip("10.0.0.1")}}
    ea.local_mac(100, MAC, n.now, ip("10.100.0.1"))
    n.pump()
    assert eb.dp.fdb == {(100, MAC): ip("10.0.0.1")}
    ea.local_mac_gone(100, MAC, n.now)
    n.pump()
    assert eb.dp.fdb == {} and ("fdb_del", 100, MAC, ip("10.0.0.1")) in eb.dp.calls


def test_evpn_mac_mobility_sequence_numbers():
    n = Net()
    ea, eb = evpn_pair(n)
    ea.local_mac(100, MAC, n.now)
    n.pump()
    eb.local_mac(100, MAC, n.now)  # the MAC shows up behind B: B advertises seq 1, A withdraws
    n.pump()
    assert eb.instances[100].local_seq[MAC] == 1
    assert MAC not in ea.instances[100].local_macs and ea.dp.fdb[(100, MAC)] == ip("10.0.0.2")
    assert eb.dp.fdb == {}
    ea.local_mac(100, MAC, n.now)  # and back: seq 2
    n.pump()
    assert ea.instances[100].local_seq[MAC] == 2 and eb.dp.fdb[(100, MAC)] == ip("10.0.0.1")
    mine = [p for p in ea.speaker.originated(L2VPN_EVPN) if isinstance(p.nlri, EvpnMacIp)]
    assert [c.sequence for c in mine[0].attrs.ext_communities if isinstance(c, MacMobility)] == [2]


def test_evpn_route_targets_decide_import():
    n = Net()
    ea, eb = evpn_pair(n, rt_b="65000:999")
    assert ea.dp.flood == {} and eb.dp.flood == {}  # nothing imported either way
    assert eb.speaker.stats["policy_rejected"] >= 1


# -- config ------------------------------------------------------------------------------------------------------------
def test_bgp_config_parses_and_defaults():
    from weftnet.runtime.config import config_from_dict

    cfg = config_from_dict({"bgp": {"asn": 65001, "router_id": "192.0.2.1", "port": 1179,
                                    "peers": [{"address": "192.0.2.2", "remote_as": 65002}],
                                    "evpn": [{"vni": 100, "prefixes": ["10.9.0.0/24"]}]}})
    b = cfg.bgp
    assert b.families == (L2VPN_EVPN,) and b.peers[0].families == (L2VPN_EVPN,)
    evi = b.evpn[0]
    assert str(evi.rd) == "192.0.2.1:100" and [str(t) for t in evi.export_targets] == ["65001:100"]
    assert evi.local_vtep == ip("192.0.2.1")


@pytest.mark.parametrize("bgp,msg", [
    ({"asn": 65001}, "needs asn and router_id"),
    ({"asn": 0, "router_id": "1.1.1.1"}, "AS number"),
    ({"asn": 1, "router_id": "::1"}, "IPv4"),
    ({"asn": 1, "router_id": "1.1.1.1", "colour": 1}, "unknown key"),
    ({"asn": 1, "router_id": "1.1.1.1", "families": ["ipx"]}, "unknown address family"),
    ({"asn": 1, "router_id": "1.1.1.1", "hold_time": 2}, "hold_time"),
    ({"asn": 1, "router_id": "1.1.1.1", "peers": [{"address": "1.1.1.2"}]}, "remote_as"),
    ({"asn": 1, "router_id": "1.1.1.1", "peers": [{"remote_as": 2}]}, "exactly one of address or node"),
    ({"asn": 1, "router_id": "1.1.1.1", "peers": [{"address": "x", "remote_as": 2}]}, "IP address"),
    ({"asn": 1, "router_id": "1.1.1.1", "peers": [{"node": "wn1nope", "remote_as": 2}]}, "node"),
    ({"asn": 1, "router_id": "1.1.1.1", "evpn": [{"vni": 0}]}, "vni"),
    ({"asn": 1, "router_id": "1.1.1.1", "evpn": [{"vni": 5, "rd": "x:y"}]}, "route distinguisher"),
    ({"asn": 1, "router_id": "1.1.1.1", "families": ["ipv4"], "evpn": [{"vni": 5}]}, "needs \"evpn\""),
    ({"asn": 1, "router_id": "1.1.1.1", "evpn": [{"vni": 5, "route_targets": ["1"]}]}, "route target"),
])
def test_bgp_config_errors(bgp, msg):
    from weftnet.runtime.config import config_from_dict

    with pytest.raises(ConfigError, match=msg):
        config_from_dict({"bgp": bgp})


def test_peer_named_by_node_id_uses_its_overlay_address():
    from weftnet.core.identity import Identity
    from weftnet.runtime.config import config_from_dict

    ident = Identity.from_seed(bytes(32))
    cfg = config_from_dict({"bgp": {"asn": 1, "router_id": "1.1.1.1",
                                    "peers": [{"node": ident.node_id.text(), "remote_as": 2}]}})
    assert cfg.bgp.peers[0].address == str(ident.address)
    assert cfg.bgp.peers[0].key == ident.node_id.text()


# -- the asyncio driver, over loopback TCP (no root needed) ----------------------------------------------------------
def test_asyncio_driver_over_loopback():
    import asyncio

    from weftnet.core.bgp.session import PeerConfig
    from weftnet.runtime.bgp import BgpService
    from weftnet.runtime.bgpconfig import BgpSettings

    async def main():
        loop = asyncio.get_running_loop()

        def settings(asn, rid, listen, peer_port, passive):
            s = BgpSettings(asn, ip(rid), listen=listen, port=0, families=(L2VPN_EVPN,), hold_time=9)
            s.peers.append(PeerConfig("127.0.0.1", 65002 if asn == 65001 else 65001, peer_port, (L2VPN_EVPN,), 9,
                                      passive=passive, connect_retry=0.2))
            s.evpn.append(EviConfig.auto(100, 65000, ip(rid), ip(rid), [RouteTarget.parse("65000:100")]))
            return s

        a = BgpService(settings(65001, "10.0.0.1", "127.0.0.1", 179, True), loop, RecordingDataplane())
        await a.start()
        b = BgpService(settings(65002, "10.0.0.2", "", a.port, False), loop, RecordingDataplane())
        await b.start()
        try:
            for _ in range(200):  # a generous deadline, not a timing assertion
                if all(s.summary()["peers"][0]["state"] == "Established" for s in (a, b)) and b.dataplane.flood:
                    break
                await asyncio.sleep(0.05)
            assert a.summary()["peers"][0]["state"] == "Established"
            assert b.dataplane.flood == {100: {ip("10.0.0.1")}}
            a.evpn.local_mac(100, MAC, a.now())
            a.transmit()
            for _ in range(200):
                if b.dataplane.fdb:
                    break
                await asyncio.sleep(0.05)
            assert b.dataplane.fdb == {(100, MAC): ip("10.0.0.1")}
            assert b.stats()["peers_established"] == 1 and b.routes("evpn")["evpn"]
        finally:
            await b.close()
            await a.close()
        # stopping sent a Cease; A saw the session go down
        for _ in range(100):
            if a.summary()["peers"][0]["state"] != "Established":
                break
            await asyncio.sleep(0.05)
        assert a.summary()["peers"][0]["state"] != "Established"

    asyncio.run(main())

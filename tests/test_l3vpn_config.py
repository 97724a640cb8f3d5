"""`[l3vpn]` and `[vrf.NAME]` in the config file: what a valid PE config becomes, and a clear error for each
mistake (docs/l3vpn.md, "Config keys")."""

import random

import pytest

from weftnet.core.identity import Identity
from weftnet.core.l3vpn.ids import format_rd
from weftnet.errors import ConfigError
from weftnet.runtime.config import config_from_dict

NODE = Identity.generate(random.Random(5)).node_id.text()


def good():
    return {
        "bgp": {"asn": 65000, "router_id": "10.251.0.1", "families": ["vpnv4", "vpnv6"]},
        "l3vpn": {"nexthop": "10.251.0.1", "label_range": [1000, 1999], "pes": {"10.251.0.2": NODE}},
        "vrf": {
            "red": {"rd": "65000:11", "route_targets": ["65000:100"], "netns": "vrf-red",
                    "static": [{"prefix": "10.0.0.0/25", "via": "192.168.1.2"}],
                    "ce": [{"address": "192.168.1.2", "remote_as": 65101, "hold_time": 9}]},
            "hub": {"rd": "192.0.2.1:50", "import_targets": ["65000:2"], "export_targets": ["65000:1"],
                    "label_mode": "per-prefix", "export_map": [{"prefixes": ["10.9.0.0/16"], "add_rt": ["65000:9"]}]},
        },
    }


def test_a_pe_config_becomes_vrfs_with_their_policy_namespace_and_ce_peers():
    cfg = config_from_dict(good())
    assert cfg.l3vpn.nexthop == "10.251.0.1" and (cfg.l3vpn.label_low, cfg.l3vpn.label_high) == (1000, 1999)
    assert cfg.l3vpn.pes["10.251.0.2"].text() == NODE
    red, hub = cfg.vrfs["red"], cfg.vrfs["hub"]
    assert format_rd(red.core.rd) == "65000:11" and red.netns == "vrf-red" and red.tun == "l3-red"
    assert red.core.policy.describe()["import"] == ["65000:100"] == red.core.policy.describe()["export"]
    assert [(str(s.prefix), s.via) for s in red.static] == [("10.0.0.0/25", "192.168.1.2")]
    assert [(p.address, p.remote_as, p.hold_time) for p in red.ce] == [("192.168.1.2", 65101, 9)]
    assert hub.netns == "vrf-hub" and hub.core.label_mode == "per-prefix"
    assert hub.core.policy.describe()["export_map"] == [{"prefixes": ["10.9.0.0/16"], "add_rt": ["65000:9"]}]


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["vrf"]["red"].pop("rd"), r"\[vrf.red\] needs rd"),
    (lambda c: c["vrf"]["red"].update(rd="65000"), "route distinguisher"),
    (lambda c: c["vrf"]["hub"].update(rd="65000:11"), "also the RD"),
    (lambda c: c["vrf"]["red"].update(colour="red"), "unknown key colour"),
    (lambda c: c["vrf"]["red"].update(route_targets="65000:100"), "list"),
    (lambda c: c["vrf"]["red"].update(route_targets=[], import_targets=[], export_targets=[]), "needs route_targets"),
    (lambda c: c["vrf"]["red"]["static"].append({"prefix": "10.1.0.0/16"}), "needs via"),
    (lambda c: c["vrf"]["red"]["static"].append({"prefix": "10.1.0.1/16", "via": "1.2.3.4"}), "host bits"),
    (lambda c: c["vrf"]["red"]["ce"].append({"address": "192.168.1.9"}), "needs address and remote_as"),
    (lambda c: c["vrf"]["red"]["ce"].append({"address": "192.168.1.2", "remote_as": 1}), "same CE twice"),
    (lambda c: c["vrf"]["red"]["ce"][0].update(families=["evpn"]), "unicast"),
    (lambda c: c["vrf"]["red"].update(label=7), "label must be"),
    (lambda c: c["vrf"]["red"].update(label_mode="per-ce"), "label_mode"),
    (lambda c: c["vrf"]["hub"].update(netns="vrf-red"), "share netns"),
    (lambda c: c["vrf"]["red"].update(tun="a/b"), "not a valid interface name"),
    (lambda c: c["vrf"].update({"bad name!": {"rd": "1:1"}}), "VRF name"),
    (lambda c: c["l3vpn"].update(label_range=[5, 10]), "label_range"),
    (lambda c: c["l3vpn"]["pes"].update({"not-an-ip": NODE}), "next hop"),
    (lambda c: c["l3vpn"]["pes"].update({"10.0.0.9": "wn1nonsense"}), r"\[l3vpn.pes\] 10.0.0.9"),
    (lambda c: c["l3vpn"].update(nexthop="pe1"), "nexthop must be an IP address"),
])
def test_each_mistake_is_one_clear_config_error(edit, message):
    c = good()
    edit(c)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(c, "pe.toml")

"""The ``[bgp]`` section of the node's config (docs/bgp.md lists every key).

    [bgp]
    asn = 65001
    router_id = "192.0.2.1"
    listen = "0.0.0.0"          # "" = do not accept connections
    port = 179                  # 179 needs root; any port works between weftnet and FRR/GoBGP
    families = ["evpn"]         # ipv4, ipv6, evpn, vpnv4, vpnv6
    [[bgp.peers]]
    address = "192.0.2.2"       # or node = "wn1..." (the peer's overlay address)
    remote_as = 65002
    [[bgp.evpn]]
    vni = 100

Unknown keys are errors, like everywhere in the config.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from weftnet.core.bgp.evpn import EviConfig
from weftnet.core.bgp.extcommunity import RouteTarget
from weftnet.core.bgp.family import L2VPN_EVPN, Family, parse_family
from weftnet.core.bgp.nlri import RouteDistinguisher
from weftnet.core.bgp.session import PeerConfig
from weftnet.errors import ConfigError

__all__ = ["BgpSettings", "parse_bgp"]


@dataclass
class BgpSettings:
    asn: int
    router_id: ipaddress.IPv4Address
    listen: str = "0.0.0.0"
    port: int = 179
    families: tuple[Family, ...] = ()
    hold_time: int = 90
    cluster_id: ipaddress.IPv4Address | None = None
    graceful_restart_time: int = 120
    connect_retry: float = 2.0
    peers: list[PeerConfig] = field(default_factory=list)
    evpn: list[EviConfig] = field(default_factory=list)
    vxlan_port: int = 4789


_TOP = {"asn": int, "router_id": str, "listen": str, "port": int, "families": list, "hold_time": int,
        "cluster_id": str, "graceful_restart_time": int, "connect_retry": (int, float), "peers": list,
        "evpn": list, "vxlan_port": int}
_PEER = {"address": str, "node": str, "remote_as": int, "port": int, "families": list, "hold_time": int,
         "passive": bool, "route_reflector_client": bool, "next_hop_self": bool, "max_prefixes": int, "name": str}
_EVPN = {"vni": int, "rd": str, "route_targets": list, "import_targets": list, "export_targets": list,
         "local_vtep": str, "bridge": str, "vxlan": str, "create": bool, "prefixes": list, "router_mac": str}


def _check(table: Any, schema: dict, where: str) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for k, v in table.items():
        typ = schema.get(k)
        if typ is None:
            file, sep, table = where.rpartition(": ")  # "config.toml: [bgp]" -> the file first, as elsewhere
            raise ConfigError(f"{file}{sep}unknown key {table} {k} (known: {', '.join(schema)})")
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise ConfigError(f"{where} {k} has the wrong type: {v!r}")
    return table


def _asn(v: int, where: str) -> int:
    if not 1 <= v <= 0xFFFFFFFF:
        raise ConfigError(f"{where} must be an AS number from 1 to 4294967295, not {v}")
    return v


def _families(v: list, where: str) -> tuple[Family, ...]:
    try:
        return tuple(parse_family(str(x)) for x in v)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _ip(v: str, where: str, version: int | None = None):
    try:
        a = ipaddress.ip_address(v)
    except ValueError:
        raise ConfigError(f"{where} must be an IP address, not {v!r}") from None
    if version and a.version != version:
        raise ConfigError(f"{where} must be an IPv{version} address, not {v!r}")
    return a


def _rts(v: list, where: str) -> tuple[RouteTarget, ...]:
    try:
        return tuple(RouteTarget.parse(str(x)) for x in v)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_bgp(table: Any, where: str = "config") -> BgpSettings:
    t = _check(table, _TOP, f"{where}: [bgp]")
    if "asn" not in t or "router_id" not in t:
        raise ConfigError(f"{where}: [bgp] needs asn and router_id")
    s = BgpSettings(_asn(t["asn"], f"{where}: [bgp] asn"), _ip(t["router_id"], f"{where}: [bgp] router_id", 4))
    s.listen = t.get("listen", s.listen)
    if s.listen:
        _ip(s.listen, f"{where}: [bgp] listen")
    s.port = t.get("port", s.port)
    s.vxlan_port = t.get("vxlan_port", s.vxlan_port)
    for key in ("port", "vxlan_port"):
        if not 0 <= getattr(s, key) <= 65535:
            raise ConfigError(f"{where}: [bgp] {key} must be from 0 to 65535")
    s.hold_time = t.get("hold_time", s.hold_time)
    if s.hold_time != 0 and not 3 <= s.hold_time <= 65535:
        raise ConfigError(f"{where}: [bgp] hold_time must be 0 or from 3 to 65535 (RFC 4271 4.2)")
    s.graceful_restart_time = t.get("graceful_restart_time", s.graceful_restart_time)
    if not 0 <= s.graceful_restart_time <= 4095:
        raise ConfigError(f"{where}: [bgp] graceful_restart_time must be from 0 to 4095 seconds")
    s.connect_retry = float(t.get("connect_retry", s.connect_retry))
    if not 0.1 <= s.connect_retry <= 600:
        raise ConfigError(f"{where}: [bgp] connect_retry must be from 0.1 to 600 seconds")
    if "cluster_id" in t and t["cluster_id"]:
        s.cluster_id = _ip(t["cluster_id"], f"{where}: [bgp] cluster_id", 4)
    evpn_tables = t.get("evpn", [])
    s.families = _families(t["families"], f"{where}: [bgp] families") if "families" in t else (
        (L2VPN_EVPN,) if evpn_tables else (parse_family("ipv4"),))
    for i, p in enumerate(t.get("peers", [])):
        s.peers.append(_peer(p, s, f"{where}: [[bgp.peers]] #{i + 1}"))
    keys = [p.key for p in s.peers]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{where}: [[bgp.peers]] names the same peer twice")
    for i, e in enumerate(evpn_tables):
        s.evpn.append(_evi(e, s, f"{where}: [[bgp.evpn]] #{i + 1}"))
    if len({e.vni for e in s.evpn}) != len(s.evpn):
        raise ConfigError(f"{where}: [[bgp.evpn]] configures the same VNI twice")
    if s.evpn and L2VPN_EVPN not in s.families:
        raise ConfigError(f"{where}: [[bgp.evpn]] needs \"evpn\" in [bgp] families")
    return s


def _peer(table: Any, s: BgpSettings, where: str) -> PeerConfig:
    t = _check(table, _PEER, where)
    if "remote_as" not in t:
        raise ConfigError(f"{where} needs remote_as")
    if ("address" in t) == ("node" in t):
        raise ConfigError(f"{where} needs exactly one of address or node")
    if "node" in t:
        from weftnet.core.identity import NodeId
        from weftnet.errors import ParseError

        try:
            node = NodeId.parse(t["node"])
        except ParseError as exc:
            raise ConfigError(f"{where} node: {exc}") from None
        address, name = str(node.address()), t.get("name") or t["node"]
    else:
        address, name = str(_ip(t["address"], f"{where} address")), t.get("name", "")
    fams = _families(t["families"], f"{where} families") if "families" in t else s.families
    hold = t.get("hold_time", s.hold_time)
    if hold != 0 and not 3 <= hold <= 65535:
        raise ConfigError(f"{where} hold_time must be 0 or from 3 to 65535")
    port = t.get("port", 179)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where} port must be from 1 to 65535")
    maxp = t.get("max_prefixes", 100_000)
    if not 1 <= maxp <= 10_000_000:
        raise ConfigError(f"{where} max_prefixes must be from 1 to 10000000")
    return PeerConfig(address, _asn(t["remote_as"], f"{where} remote_as"), port, fams, hold, t.get("passive", False),
                      t.get("route_reflector_client", False), t.get("next_hop_self", False), maxp,
                      connect_retry=s.connect_retry, name=name)


def _evi(table: Any, s: BgpSettings, where: str) -> EviConfig:
    t = _check(table, _EVPN, where)
    if "vni" not in t or not 1 <= t["vni"] <= 0xFFFFFF:
        raise ConfigError(f"{where} needs vni, from 1 to 16777215")
    vni = t["vni"]
    vtep = _ip(t.get("local_vtep", str(s.router_id)), f"{where} local_vtep")
    rts = _rts(t.get("route_targets", []), f"{where} route_targets")
    imp = _rts(t.get("import_targets", []), f"{where} import_targets") or rts
    exp = _rts(t.get("export_targets", []), f"{where} export_targets") or rts
    auto = EviConfig.auto(vni, s.asn, s.router_id, vtep)
    try:
        rd = RouteDistinguisher.parse(t["rd"]) if t.get("rd") else auto.rd
        prefixes = tuple(ipaddress.ip_network(str(p), strict=False) for p in t.get("prefixes", []))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    rmac = None
    if t.get("router_mac"):
        try:
            rmac = bytes.fromhex(t["router_mac"].replace(":", ""))
        except ValueError:
            rmac = b""
        if len(rmac) != 6:
            raise ConfigError(f"{where} router_mac must be a MAC address like 02:00:00:00:00:01")
    for key in ("bridge", "vxlan"):
        name = t.get(key, "")
        if name and (len(name) > 15 or any(c in name for c in "/ :")):
            raise ConfigError(f"{where} {key} {name!r} is not a valid interface name")
    return EviConfig(vni, rd, vtep, frozenset(imp or auto.import_targets), exp or auto.export_targets, prefixes,
                     rmac, t.get("bridge", ""), t.get("vxlan", ""), t.get("create", True))

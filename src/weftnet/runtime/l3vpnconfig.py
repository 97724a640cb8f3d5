"""The ``[l3vpn]`` and ``[vrf.NAME]`` sections of the node's config (docs/l3vpn.md, docs/operating.md).

    [l3vpn]
    nexthop = "192.0.2.1"        # the BGP next hop of this PE's VPN routes (default: [bgp] router_id)
    label_range = [1000, 99999]  # labels this PE hands out (default 16-1048575)
    [l3vpn.pes]                  # other weftnet PEs: their BGP next hop -> node ID
    "192.0.2.2" = "wn1..."

    [vrf.red]
    rd = "65000:1"
    route_targets = ["65000:100"]          # import and export (or import_targets / export_targets)
    static = [{ prefix = "10.0.0.0/25", via = "192.168.1.2" }]
    ce = [{ address = "192.168.1.2", remote_as = 65101 }]

Every problem is a :class:`~weftnet.errors.ConfigError` naming the key; unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from weftnet.errors import ConfigError

__all__ = ["L3vpnSettings", "VrfSettings", "StaticRoute", "parse_l3vpn", "parse_vrfs", "MAX_VRFS"]

MAX_VRFS = 256
MAX_STATIC = 10_000
MAX_CE = 64

_L3VPN = {"nexthop": str, "label_range": list, "pes": dict}
_VRF = {"rd": str, "route_targets": list, "import_targets": list, "export_targets": list, "import_map": list,
        "export_map": list, "label": int, "label_mode": str, "max_routes": int, "netns": str, "tun": str,
        "mtu": int, "offload": bool, "static": list, "ce": list, "ce_hold_time": int}
_STATIC = {"prefix": str, "via": str, "dev": str}
_CE = {"address": str, "remote_as": int, "port": int, "hold_time": int, "passive": bool, "max_prefixes": int,
       "families": list}


@dataclass
class L3vpnSettings:
    nexthop: str = ""
    label_low: int = 16
    label_high: int = (1 << 20) - 1
    pes: dict[str, Any] = field(default_factory=dict)  # next hop text -> NodeId


@dataclass(frozen=True)
class StaticRoute:
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: str = ""
    dev: str = ""


@dataclass
class VrfSettings:
    """One ``[vrf.NAME]``: the core's VrfConfig plus where it lives on this host."""

    name: str
    core: Any  # weftnet.core.l3vpn.vrf.VrfConfig
    netns: str
    tun: str
    mtu: int = 1400
    offload: bool = True
    static: list[StaticRoute] = field(default_factory=list)
    ce: list[Any] = field(default_factory=list)  # weftnet.core.bgp.PeerConfig


def _check(table: Any, schema: dict, where: str) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for k, v in table.items():
        typ = schema.get(k)
        if typ is None:
            raise ConfigError(f"{where}: unknown key {k} (known: {', '.join(schema)})")
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            kind = {str: "a string", int: "an integer", list: "a list", dict: "a table", bool: "true or false"}[typ]
            raise ConfigError(f"{where} {k} must be {kind}, not {v!r}")
    return table


def _ifname(name: str, where: str) -> str:
    if not 1 <= len(name.encode()) <= 15 or any(c in name for c in "/ \t\n:") or name in (".", ".."):
        raise ConfigError(f"{where} {name!r} is not a valid interface name (1-15 characters, no '/', ':' or spaces)")
    return name


def parse_l3vpn(table: Any, where: str = "config") -> L3vpnSettings:
    from weftnet.core.identity import NodeId
    from weftnet.errors import ParseError

    t = _check(table, _L3VPN, f"{where}: [l3vpn]")
    s = L3vpnSettings()
    if "nexthop" in t:
        try:
            s.nexthop = str(ipaddress.ip_address(t["nexthop"]))
        except ValueError:
            raise ConfigError(f"{where}: [l3vpn] nexthop must be an IP address, not {t['nexthop']!r}") from None
    if "label_range" in t:
        r = t["label_range"]
        if (len(r) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                or not 16 <= r[0] <= r[1] <= (1 << 20) - 1):
            raise ConfigError(f"{where}: [l3vpn] label_range must be [LOW, HIGH] with 16 <= LOW <= HIGH <= 1048575")
        s.label_low, s.label_high = r
    for nh, node in t.get("pes", {}).items():
        try:
            key = str(ipaddress.ip_address(nh))
        except ValueError:
            raise ConfigError(f"{where}: [l3vpn.pes] key {nh!r} must be the PE's BGP next hop (an IP address)") from None
        if not isinstance(node, str):
            raise ConfigError(f"{where}: [l3vpn.pes] {nh} must be a node ID string")
        try:
            s.pes[key] = NodeId.parse(node)
        except ParseError as exc:
            raise ConfigError(f"{where}: [l3vpn.pes] {nh}: {exc}") from None
    return s


def parse_vrfs(values: Any, where: str = "config") -> dict[str, VrfSettings]:
    from weftnet.core.bgp.family import IPV4_UNICAST, IPV6_UNICAST, parse_family
    from weftnet.core.bgp.session import PeerConfig
    from weftnet.core.l3vpn.ids import parse_rd
    from weftnet.core.l3vpn.policy import VrfPolicy
    from weftnet.core.l3vpn.vrf import LABEL_MODES, VrfConfig
    from weftnet.core.vpn.netcert import check_name

    if not isinstance(values, dict):
        raise ConfigError(f"{where}: [vrf] must be a table of [vrf.NAME] tables")
    if len(values) > MAX_VRFS:
        raise ConfigError(f"{where}: at most {MAX_VRFS} VRFs")
    out: dict[str, VrfSettings] = {}
    rds: dict[bytes, str] = {}
    for name, table in values.items():
        w = f"{where}: [vrf.{name}]"
        try:
            check_name("VRF", name)
        except ValueError as exc:
            raise ConfigError(f"{w}: {exc}") from None
        t = _check(table, _VRF, w)
        if "rd" not in t:
            raise ConfigError(f"{w} needs rd (a route distinguisher like \"65000:1\")")
        try:
            rd = parse_rd(t["rd"])
            both = t.get("route_targets", [])
            policy = VrfPolicy.from_config(t.get("import_targets", both), t.get("export_targets", both),
                                           t.get("import_map", []), t.get("export_map", []))
        except ValueError as exc:
            raise ConfigError(f"{w}: {exc}") from None
        if rd in rds:
            raise ConfigError(f"{w} rd {t['rd']} is also the RD of [vrf.{rds[rd]}]; each VRF needs its own")
        rds[rd] = name
        if not policy.import_rts and not policy.export_rts:
            raise ConfigError(f"{w} needs route_targets (or import_targets / export_targets)")
        label = t.get("label", 0)
        if label and not 16 <= label <= (1 << 20) - 1:
            raise ConfigError(f"{w} label must be 0 (allocate) or from 16 to 1048575, not {label}")
        mode = t.get("label_mode", "per-vrf")
        if mode not in LABEL_MODES:
            raise ConfigError(f"{w} label_mode must be one of {', '.join(LABEL_MODES)}, not {mode!r}")
        max_routes = t.get("max_routes", 100_000)
        if not 1 <= max_routes <= 10_000_000:
            raise ConfigError(f"{w} max_routes must be from 1 to 10000000")
        core = VrfConfig(name, rd, policy, label, mode, max_routes)
        netns = t.get("netns") or f"vrf-{name}"
        if "/" in netns or netns in (".", "..") or len(netns) > 64:
            raise ConfigError(f"{w} netns {netns!r} is not a valid namespace name")
        tun = _ifname(t.get("tun") or ("l3-" + name)[:15], f"{w} tun")
        mtu = t.get("mtu", 1400)
        if not 576 <= mtu <= 9000:
            raise ConfigError(f"{w} mtu must be from 576 to 9000, not {mtu}")
        vs = VrfSettings(name, core, netns, tun, mtu, t.get("offload", True))
        statics = t.get("static", [])
        if len(statics) > MAX_STATIC:
            raise ConfigError(f"{w} at most {MAX_STATIC} static routes")
        for i, r in enumerate(statics):
            rw = f"{w} static[{i}]"
            _check(r, _STATIC, rw)
            try:
                prefix = ipaddress.ip_network(r.get("prefix", ""), strict=True)
            except ValueError as exc:
                raise ConfigError(f"{rw} prefix: {exc}") from None
            via = r.get("via", "")
            if via:
                try:
                    va = ipaddress.ip_address(via)
                except ValueError:
                    raise ConfigError(f"{rw} via must be an IP address, not {via!r}") from None
                if va.version != prefix.version and not (prefix.version == 4 and va.version == 6):
                    raise ConfigError(f"{rw} via {via} is not an IPv{prefix.version} address")
                via = str(va)
            dev = _ifname(r["dev"], f"{rw} dev") if r.get("dev") else ""
            if not via and not dev:
                raise ConfigError(f"{rw} needs via (the CE's address) or dev (the interface the prefix is on)")
            vs.static.append(StaticRoute(prefix, via, dev))
        ces = t.get("ce", [])
        if len(ces) > MAX_CE:
            raise ConfigError(f"{w} at most {MAX_CE} CE neighbours")
        for i, c in enumerate(ces):
            cw = f"{w} ce[{i}]"
            _check(c, _CE, cw)
            if "address" not in c or "remote_as" not in c:
                raise ConfigError(f"{cw} needs address and remote_as")
            try:
                addr = str(ipaddress.ip_address(c["address"]))
            except ValueError:
                raise ConfigError(f"{cw} address must be an IP address, not {c['address']!r}") from None
            if not 1 <= c["remote_as"] <= 0xFFFFFFFF:
                raise ConfigError(f"{cw} remote_as must be from 1 to 4294967295")
            hold = c.get("hold_time", t.get("ce_hold_time", 90))
            if hold != 0 and not 3 <= hold <= 65535:
                raise ConfigError(f"{cw} hold_time must be 0 or from 3 to 65535")
            port = c.get("port", 179)
            if not 1 <= port <= 65535:
                raise ConfigError(f"{cw} port must be from 1 to 65535")
            try:
                fams = tuple(parse_family(str(f)) for f in c.get("families", ["ipv4", "ipv6"]))
            except ValueError as exc:
                raise ConfigError(f"{cw} families: {exc}") from None
            if any(f not in (IPV4_UNICAST, IPV6_UNICAST) for f in fams) or not fams:
                raise ConfigError(f"{cw} families are ipv4 and/or ipv6 (PE-CE routing is unicast)")
            maxp = c.get("max_prefixes", 10_000)
            if not 1 <= maxp <= 1_000_000:
                raise ConfigError(f"{cw} max_prefixes must be from 1 to 1000000")
            vs.ce.append(PeerConfig(addr, c["remote_as"], port, fams, hold, c.get("passive", False),
                                    max_prefixes=maxp, connect_retry=1.0, connect_retry_max=10.0))
        if len({p.address for p in vs.ce}) != len(vs.ce):
            raise ConfigError(f"{w} names the same CE twice")
        out[name] = vs
    netns_seen: dict[str, str] = {}
    for vs in out.values():
        if vs.netns in netns_seen:
            raise ConfigError(f"{where}: [vrf.{vs.name}] and [vrf.{netns_seen[vs.netns]}] share netns {vs.netns!r}; "
                              "a VRF is its own namespace")
        netns_seen[vs.netns] = vs.name
    return out

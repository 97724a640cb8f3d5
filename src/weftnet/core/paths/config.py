"""Configuration of path measurement, detours, underlay links, traffic classes and explicit routes.

The dataclasses are what the core runs on; :func:`paths_config_from_dict`
validates the ``[paths]``, ``[[link]]``, ``[[class]]`` and ``[[route]]``
tables of a node's config file (docs/operating.md) into them, raising
:class:`~weftnet.errors.ConfigError` with one line that names the key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.errors import ConfigError, ParseError

__all__ = [
    "PathsConfig",
    "LinkSpec",
    "ClassSpec",
    "RouteSpec",
    "POLICIES",
    "MAX_CLASSES",
    "MAX_ROUTES",
    "paths_config_from_dict",
    "parse_ports",
    "check_route",
]

#: Class policies (docs/paths.md, "Traffic classes").
POLICIES = ("best", "cheapest", "balance", "duplicate")
MAX_CLASSES = 32
MAX_ROUTES = 256
MAX_CONFIG_LINKS = 8
#: Overlay nodes between us and the destination on an explicit route (the Forward header carries
#: at most four nodes, the destination included).
MAX_ROUTE_HOPS = 3
_LINK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,14}$")
_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "gre": 47, "esp": 50}


@dataclass(frozen=True)
class LinkSpec:
    """One underlay link of this node: its socket's endpoint, cost and whether it is metered.

    ``main``: this link is the node's main socket (``[node] listen``/``port``); its paths
    are plain ``(host, port)`` targets, the other links' paths :class:`LinkAddr` ones.
    """

    name: str
    cost: int = 1
    metered: bool = False
    endpoint: tuple | None = None  # what peers are told to send to (the bound or advertised address)
    main: bool = False


@dataclass(frozen=True)
class ClassSpec:
    """A traffic class: match rules, an SLA and a policy (docs/paths.md)."""

    name: str
    proto: int | None = None
    ports: tuple = ()  # ((lo, hi), ...) matched against either port
    sport: tuple = ()
    dport: tuple = ()
    dscp: frozenset = frozenset()
    src: tuple = ()  # ip_network objects
    dst: tuple = ()
    network: str | None = None  # a private network's name, or "overlay" for weft0
    latency: float | None = None  # SLA: the longest round-trip time, seconds
    jitter: float | None = None
    loss: float | None = None  # 0..1
    policy: str = "best"
    links: tuple = ()  # only paths leaving on these links (empty: any)


@dataclass(frozen=True)
class RouteSpec:
    """An explicit route: traffic to ``node`` goes through ``via`` (nearest first)."""

    node: NodeId
    via: tuple


@dataclass
class PathsConfig:
    enabled: bool = True
    #: Probe interval on the paths of a peer that carries traffic (BFD's "desired min TX").
    interval: float = 0.2
    #: Probe interval on the paths of a tracked peer that is idle.
    idle_interval: float = 5.0
    #: A path whose probes have gone unanswered this long is down (BFD's detection time);
    #: never less than two round trips plus one interval.
    detect: float = 0.6
    #: A peer is active (fast probing) this long after its last data packet.
    active_for: float = 5.0
    #: ... and tracked (slow probing, detours kept) this long after it.
    track_for: float = 60.0
    max_tracked: int = 64
    #: Probes per second this node sends in all (the rest wait).
    max_probe_rate: int = 400
    #: Probe replies per second one peer gets (more probes are not answered).
    max_reply_rate: int = 50
    #: Outcomes kept per path for the loss estimate.
    loss_window: int = 50
    detour: bool = True
    #: One-hop detours measured per active peer (RON: candidates from peers we already measure).
    detour_candidates: int = 3
    detour_interval: float = 1.0
    #: A detour replaces the direct path when better by this much RTT, or by this much loss.
    detour_latency_margin: float = 0.030
    detour_loss_margin: float = 0.05
    #: The direct path must be up this long before traffic moves back to it from a detour.
    hold: float = 2.0
    #: Forward packets between our peers (be a detour intermediate or a hop of an explicit route).
    transit: bool = False
    transit_peer_rate: int = 12_500_000
    transit_total_rate: int = 50_000_000
    links: tuple = ()  # LinkSpec
    classes: tuple = ()  # ClassSpec
    routes: tuple = ()  # RouteSpec


# -- validation of the config file's tables ----------------------------------------------

_PATHS_KEYS: dict[str, tuple[type, float, float]] = {
    "enabled": (bool, 0, 0),
    "interval": (float, 0.02, 60.0),
    "idle_interval": (float, 0.1, 600.0),
    "detect": (float, 0.05, 600.0),
    "active_for": (float, 0.5, 3600.0),
    "track_for": (float, 1.0, 86_400.0),
    "max_tracked": (int, 1, 4096),
    "max_probe_rate": (int, 1, 100_000),
    "max_reply_rate": (int, 1, 10_000),
    "loss_window": (int, 4, 1000),
    "detour": (bool, 0, 0),
    "detour_candidates": (int, 0, 16),
    "detour_interval": (float, 0.02, 600.0),
    "detour_latency_margin": (float, 0.0, 10.0),
    "detour_loss_margin": (float, 0.0, 1.0),
    "hold": (float, 0.0, 3600.0),
    "transit": (bool, 0, 0),
    "transit_peer_rate": (int, 1000, 10**11),
    "transit_total_rate": (int, 1000, 10**12),
}
_LINK_KEYS = {"name", "bind", "interface", "port", "cost", "metered", "advertise"}
_CLASS_KEYS = {"name", "proto", "ports", "sport", "dport", "dscp", "src", "dst", "network", "latency", "jitter",
               "loss", "policy", "links"}
_ROUTE_KEYS = {"node", "via"}


def _number(value: Any, typ: type, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (typ is int and not isinstance(value, int)):
        raise ConfigError(f"{where} must be {'an integer' if typ is int else 'a number'}, not {value!r}")
    return typ(value)


def parse_ports(value: Any, where: str) -> tuple:
    """``80``, ``"80,443"``, ``"10000-20000"`` or a list of those -> ((lo, hi), ...)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(f"{where}: {item!r} is not a port")
        if isinstance(item, int):
            parts = [str(item)]
        elif isinstance(item, str):
            parts = [p.strip() for p in item.split(",") if p.strip()]
        else:
            raise ConfigError(f"{where}: {item!r} is not a port or range")
        for part in parts:
            lo, sep, hi = part.partition("-")
            if not lo.isdigit() or (sep and not hi.isdigit()):
                raise ConfigError(f"{where}: {part!r} is not a port or a range like 10000-20000")
            a, b = int(lo), int(hi) if sep else int(lo)
            if not 0 <= a <= b <= 65535:
                raise ConfigError(f"{where}: {part!r} is not a range of ports 0-65535")
            out.append((a, b))
    if not out:
        raise ConfigError(f"{where}: no ports given")
    return tuple(out)


def _prefixes(value: Any, where: str) -> tuple:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: {item!r} is not a prefix like \"10.9.0.0/24\"")
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not a prefix like \"10.9.0.0/24\"") from None
    return tuple(out)


def _link(table: Any, where: str) -> tuple[dict, LinkSpec]:
    """A [[link]] table: the runtime part (bind, interface, port, advertise) and the core part."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in table:
        if key not in _LINK_KEYS:
            raise ConfigError(f"{where}: unknown key {key} (known: {', '.join(sorted(_LINK_KEYS))})")
    name = table.get("name")
    if not isinstance(name, str) or not _LINK_NAME.match(name):
        raise ConfigError(f"{where}: name must be 1-15 characters of a-z, 0-9, '-' and '_', not {name!r}")
    where = f"[[link]] {name}"
    cost = _number(table.get("cost", 1), int, f"{where}: cost")
    if not 0 <= cost <= 65535:
        raise ConfigError(f"{where}: cost must be from 0 to 65535, not {cost}")
    metered = table.get("metered", False)
    if not isinstance(metered, bool):
        raise ConfigError(f"{where}: metered must be true or false, not {metered!r}")
    rt: dict[str, Any] = {"name": name}
    bind, iface = table.get("bind"), table.get("interface")
    if bind is None and iface is None:
        raise ConfigError(f"{where}: give bind = \"ADDRESS:PORT\" or interface = \"NAME\" (or both)")
    if iface is not None:
        if not isinstance(iface, str) or not 1 <= len(iface.encode()) <= 15 or any(c in iface for c in "/ :"):
            raise ConfigError(f"{where}: interface {iface!r} is not an interface name")
        rt["interface"] = iface
    if bind is not None:
        rt["bind"] = _endpoint(bind, f"{where}: bind")
        if "port" in table:
            raise ConfigError(f"{where}: port goes in bind (\"ADDRESS:PORT\"), not beside it")
    else:
        port = _number(table.get("port", 0), int, f"{where}: port")
        if not 0 <= port <= 65535:
            raise ConfigError(f"{where}: port must be from 0 to 65535, not {port}")
        rt["port"] = port
    if "advertise" in table:
        rt["advertise"] = _endpoint(table["advertise"], f"{where}: advertise")
    return rt, LinkSpec(name, cost, metered)


def _endpoint(value: Any, where: str) -> tuple:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be \"ADDRESS:PORT\", not {value!r}")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where} must be \"ADDRESS:PORT\", not {value!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{where}: {host!r} is not an IP address") from None
    return (host, int(port))


def _class(table: Any, where: str) -> ClassSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in table:
        if key not in _CLASS_KEYS:
            raise ConfigError(f"{where}: unknown key {key} (known: {', '.join(sorted(_CLASS_KEYS))})")
    name = table.get("name")
    if not isinstance(name, str) or not _LINK_NAME.match(name):
        raise ConfigError(f"{where}: name must be 1-15 characters of a-z, 0-9, '-' and '_', not {name!r}")
    where = f"[[class]] {name}"
    kw: dict[str, Any] = {"name": name}
    if "proto" in table:
        p = table["proto"]
        if isinstance(p, str) and p.lower() in _PROTOS:
            kw["proto"] = _PROTOS[p.lower()]
        elif isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 255:
            kw["proto"] = p
        elif not (isinstance(p, str) and p.lower() == "any"):
            raise ConfigError(f"{where}: proto must be one of {', '.join(_PROTOS)}, any, or a number 0-255, not {p!r}")
    for key in ("ports", "sport", "dport"):
        if key in table:
            kw[key] = parse_ports(table[key], f"{where}: {key}")
    if (kw.get("ports") or kw.get("sport") or kw.get("dport")) and kw.get("proto") not in (6, 17, 132):
        raise ConfigError(f"{where}: ports need proto = \"tcp\", \"udp\" or \"sctp\"")
    if "dscp" in table:
        d = table["dscp"]
        items = d if isinstance(d, list) else [d]
        if not items or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 63 for x in items):
            raise ConfigError(f"{where}: dscp must be a number 0-63 or a list of them, not {d!r}")
        kw["dscp"] = frozenset(items)
    for key in ("src", "dst"):
        if key in table:
            kw[key] = _prefixes(table[key], f"{where}: {key}")
    if "network" in table:
        n = table["network"]
        if not isinstance(n, str) or not n:
            raise ConfigError(f"{where}: network must be a private network's name or \"overlay\", not {n!r}")
        kw["network"] = n
    if "latency" in table:
        kw["latency"] = _number(table["latency"], float, f"{where}: latency")
    if "jitter" in table:
        kw["jitter"] = _number(table["jitter"], float, f"{where}: jitter")
    if "loss" in table:
        kw["loss"] = _number(table["loss"], float, f"{where}: loss")
        if not 0.0 <= kw["loss"] <= 1.0:
            raise ConfigError(f"{where}: loss is a share from 0 to 1 (0.01 = 1%), not {kw['loss']}")
    for key in ("latency", "jitter"):
        if key in kw and not 0.0 < kw[key] <= 60.0:
            raise ConfigError(f"{where}: {key} is in seconds, from 0 to 60, not {kw[key]}")
    policy = table.get("policy", "best")
    if policy not in POLICIES:
        raise ConfigError(f"{where}: policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    kw["policy"] = policy
    if "links" in table:
        links = table["links"]
        if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
            raise ConfigError(f"{where}: links must be a list of link names")
        kw["links"] = tuple(links)
    return ClassSpec(**kw)


def check_route(node: NodeId, via: list, own: NodeId | None = None) -> tuple:
    """The hops of an explicit route, checked: 1-3 distinct nodes, neither us nor the destination."""
    if not 1 <= len(via) <= MAX_ROUTE_HOPS:
        raise ConfigError(f"a route goes through 1 to {MAX_ROUTE_HOPS} nodes, not {len(via)}")
    hops = []
    for h in via:
        if not isinstance(h, NodeId):
            try:
                h = NodeId.parse(h) if isinstance(h, str) else None
            except ParseError as exc:
                raise ConfigError(f"route via: {exc}") from None
            if h is None:
                raise ConfigError("route via: node IDs are strings")
        if h == node:
            raise ConfigError("a route cannot go through its own destination")
        if own is not None and h == own:
            raise ConfigError("a route cannot go through this node itself")
        if h in hops:
            raise ConfigError("a route cannot go through the same node twice")
        hops.append(h)
    return tuple(hops)


def _route(table: Any, where: str) -> RouteSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in table:
        if key not in _ROUTE_KEYS:
            raise ConfigError(f"{where}: unknown key {key} (known: node, via)")
    try:
        node = NodeId.parse(table["node"]) if isinstance(table.get("node"), str) else None
    except ParseError as exc:
        raise ConfigError(f"{where}: node: {exc}") from None
    if node is None:
        raise ConfigError(f"{where}: node must be a node ID (wn1...)")
    via = table.get("via")
    if not isinstance(via, list):
        raise ConfigError(f"{where}: via must be a list of node IDs")
    try:
        return RouteSpec(node, check_route(node, via))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def paths_config_from_dict(paths: Any, links: Any, classes: Any, routes: Any,
                           where: str = "config") -> tuple[PathsConfig, list[dict]]:
    """Validate the four tables (None = absent); returns the core config and the runtime's link tables."""
    cfg = PathsConfig()
    if paths is not None:
        if not isinstance(paths, dict):
            raise ConfigError(f"{where}: [paths] must be a table")
        for key, value in paths.items():
            spec = _PATHS_KEYS.get(key)
            if spec is None:
                raise ConfigError(f"{where}: unknown key [paths] {key} (known: {', '.join(_PATHS_KEYS)})")
            typ, lo, hi = spec
            if typ is bool:
                if not isinstance(value, bool):
                    raise ConfigError(f"{where}: [paths] {key} must be true or false, not {value!r}")
            else:
                value = _number(value, typ, f"{where}: [paths] {key}")
                if not lo <= value <= hi:
                    raise ConfigError(f"{where}: [paths] {key} must be from {lo} to {hi}, not {value}")
            setattr(cfg, key, value)
    rt_links: list[dict] = []
    specs = []
    for name, value, maxn in (("link", links, MAX_CONFIG_LINKS), ("class", classes, MAX_CLASSES),
                              ("route", routes, MAX_ROUTES)):
        if value is None:
            continue
        if not isinstance(value, list):
            raise ConfigError(f"{where}: write [[{name}]] (an array of tables), not [{name}]")
        if len(value) > maxn:
            raise ConfigError(f"{where}: at most {maxn} [[{name}]] entries, not {len(value)}")
    for i, table in enumerate(links or []):
        rt, spec = _link(table, f"{where}: [[link]] #{i + 1}")
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"{where}: two [[link]] entries are named {spec.name!r}")
        specs.append(spec)
        rt_links.append(rt)
    cfg.links = tuple(specs)
    names = {s.name for s in specs}
    out = []
    for i, table in enumerate(classes or []):
        c = _class(table, f"{where}: [[class]] #{i + 1}")
        if any(o.name == c.name for o in out):
            raise ConfigError(f"{where}: two [[class]] entries are named {c.name!r}")
        unknown = [n for n in c.links if n not in names and n != "main"]
        if unknown:
            raise ConfigError(f"{where}: [[class]] {c.name}: links names {unknown[0]!r}, which no [[link]] has")
        out.append(c)
    cfg.classes = tuple(out)
    rs = []
    for i, table in enumerate(routes or []):
        r = _route(table, f"{where}: [[route]] #{i + 1}")
        if any(o.node == r.node for o in rs):
            raise ConfigError(f"{where}: two [[route]] entries for {r.node.text()}")
        rs.append(r)
    cfg.routes = tuple(rs)
    if cfg.detect < cfg.interval:
        raise ConfigError(f"{where}: [paths] detect ({cfg.detect} s) must be at least one interval ({cfg.interval} s)")
    return cfg, rt_links

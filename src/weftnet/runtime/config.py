"""The node's TOML config file: schema, defaults, validation.

Every problem is a :class:`~weftnet.errors.ConfigError` whose message names
the file, the key and what is wrong, e.g.
``config.toml: [dht] k must be an integer from 1 to 64, not "twenty"``.
Unknown keys are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.core.paths.config import PathsConfig, paths_config_from_dict
from weftnet.core.session.ciphers import parse_names
from weftnet.errors import ConfigError, ParseError, WeftError

__all__ = ["Config", "NetworkConfig", "OverlayConfig", "PeerSpec", "load_config", "config_from_bytes", "parse_peer",
           "parse_listen", "DEFAULT_CONFIG", "DEFAULT_PORT", "DEFAULT_OVERLAY_FIREWALL", "DEFAULT_ID_DIFFICULTY"]

DEFAULT_PORT = 4500
#: The network's node-ID puzzle (core/puzzle.py): `weft init` pays 2^12 key generations
#: (about 0.3-0.6 s here); an attacker pays that for every identity (docs/security.md).
DEFAULT_ID_DIFFICULTY = 12

DEFAULT_CONFIG = f"""\
# weftnet node configuration (docs/operating.md lists every key).

[node]
# Address and UDP port to listen on. Port 0 picks a free port.
listen = "0.0.0.0"
port = {DEFAULT_PORT}
# Peers to join through: "HOST:PORT", or "NODEID@HOST:PORT" to pin the key;
# "tcp://[NODEID@]HOST:PORT" joins a relay over TCP (where UDP is blocked).
peers = []

[reach]
enabled = true      # NAT traversal: endpoint records, relays, hole punching (docs/reach.md)
keepalive = 25      # seconds between keepalives on paths through a NAT
relays = 2          # relays to register with when this node is not reachable unsolicited
punch = true        # try to upgrade relayed sessions to direct ones
alt_port = 0        # second UDP port dial-back tests go out from: 0 = any free one, -1 = none

[relay]
enabled = false     # forward session packets for nodes registered with this one
max_sessions = 64   # nodes registered at once
peer_rate = 5000000     # bytes per second forwarded for one peer (40 Mbit/s)
total_rate = 50000000   # bytes per second forwarded in all (400 Mbit/s)
tcp_port = 0        # also accept relay clients over TCP on this port (e.g. 443); 0 = off

[log]
level = "info"      # debug | info | warning | error
format = "text"     # text | json

[dht]
k = 20              # bucket size and replication factor
alpha = 3           # parallel requests per lookup
lookup_alpha = 4    # node lookups: parallel requests (0 = alpha; docs/dht.md)
cold_parallel = 1   # gets: requests at once to nodes without a session (each a handshake)
disjoint_paths = 1  # S/Kademlia disjoint lookup paths (1 = plain Kademlia)
per_prefix = 2      # contacts per IPv4 /24 or IPv6 /48 a full bucket keeps; a bucket with room takes any (0 = no limit)
max_records = 100000
prs_bits = 4        # lookups: bits of progress a faster candidate may give up (-1 = nearest first)
rtt_hints = true    # node lookups ask FindNear: answers carry the answerer's RTTs (docs/dht.md)
sessionless = true  # lookup requests to nodes without a session: one sealed datagram each way, no handshake (docs/dht.md)
id_difficulty = {DEFAULT_ID_DIFFICULTY}  # node-ID puzzle: leading zero bits (a network parameter)

[limits]
# Per-source limits against one hostile host (docs/security.md). Sources in
# these prefixes are exempt: only for a lab of many nodes on one address.
exempt_prefixes = []
max_peers = 20000          # sessions and remembered peers; a full table evicts the least valuable
records_per_peer = 1000    # records one peer may have stored here
records_per_prefix = 4000  # ... and one IPv4 /24 or IPv6 /48
max_ttl = 86400            # seconds a stored record lives at most

[control]
socket = ""         # default: control.sock in the state directory

# [metrics]
# listen = "127.0.0.1:9477"   # Prometheus endpoint /metrics (docs/metrics.md); off when absent
# peer_series = 100           # per-peer series for at most this many peers (the busiest)
# hosts = []                  # names a scraper may use in Host besides IP addresses, localhost
#                             # and this host's name (others are refused: DNS rebinding)
# [dataplane]
# pmtu_max = 8972     # path MTU discovery: datagrams up to this many bytes where the
#                     # path carries them (docs/dataplane.md); 0 keeps them at 1344
# workers = 1         # data-plane processes for private networks (1-16; docs/dataplane.md)
# event_loop = "auto" # "auto" (uvloop if installed), "uvloop" or "asyncio" (docs/dataplane.md, "Latency")
# sched_slice_us = 100 # kernel time slice the daemon asks for (100-100000 µs; 0: the kernel's default)
# sched_slice_pressure = 10 # ask for it only while CPU pressure (PSI "some avg10", %) is at least
#                     # this (0: always; docs/dataplane.md, "Latency")
# ciphers = ["aes-256-gcm", "chacha20-poly1305"]  # transport ciphers accepted, preferred first;
#                     # default: AES-256-GCM first where the CPU has AES instructions (docs/handshake.md)
# ack_filter = true   # leave out pure TCP ACKs that a later one read from the TUN with them supersedes
# [dashboard]
# listen = "127.0.0.1:9478"   # live web dashboard; read-only unless the token in
#                             # dashboard.token (state directory) is presented

# Private networks this node has joined (weft net join) run when the node is
# up, each on its own TUN device. Per network, all optional:
# [networks.NAME]
# tun = "wn-NAME"     # device name (at most 15 characters)
# mtu = 1280          # overlay MTU, 576-9000; unset: 1280, raised to what the paths
#                     # to the members carry once path MTU discovery has measured them
# netns = ""          # an existing network namespace to put the TUN in
# offload = true      # TCP segmentation offload: TCP crosses in 64 KiB superpackets
# txqueuelen = 1000   # packets the kernel queues on the TUN
# firewall.outbound = [ {{ proto = "any", port = "any", host = "any" }} ]
# firewall.inbound  = [ {{ proto = "icmp", port = "any", host = "any" }} ]
# The firewall denies everything that no rule allows (docs/vpn.md). Without a
# firewall key a network allows all outbound traffic and inbound ICMP.
# A layer-2 network (weft net create --l2, docs/l2.md) runs a bridge and a TAP
# instead of a TUN (mtu defaults to 1500 there):
# bridge = "wb-NAME"  # bridge for VMs/containers (created unless it exists)
# tap = "wt-NAME"     # TAP device, a port of the bridge
# mac_age = 300       # seconds a learned MAC or ARP/ND binding lives unconfirmed
# mac_quota = 1024    # learned MACs (and bindings) per member
# flood_rate = 200    # broadcast/unknown frames per second, out and per member in
# vxlan = {{ vni = 100, local = "192.0.2.1", remotes = ["192.0.2.2"] }}  # a VTEP on a fabric

# The overlay interface: this node's key-derived address (weft id) on a TUN,
# reaching every other node by its address (docs/overlay.md). Needs root or
# CAP_NET_ADMIN; without them the node runs without it. All optional:
# [overlay]
# enable = true       # false: no overlay interface
# interface = "weft0"
# mtu = 1280          # 1280-9000
# offload = true
# txqueuelen = 1000
# firewall.inbound  = [ {{ proto = "icmpv6", port = "any", host = "any" }} ]
# firewall.outbound = [ {{ proto = "any", port = "any", host = "any" }} ]
# Inbound is default-deny: add services with 'weft allow tcp 22 [--from NODE]'.
# discovery.interfaces = ["eth0"]   # find nodes on these LANs (signed beacons)
# discovery.port = 4501
# discovery.interval = 5

# A BGP speaker, with EVPN/VXLAN instances, runs when [bgp] is present
# (docs/bgp.md, docs/evpn.md):
# [bgp]
# asn = 65001
# router_id = "192.0.2.1"
# families = ["evpn"]
# [[bgp.peers]]
# address = "192.0.2.2"
# remote_as = 65002
# [[bgp.evpn]]
# vni = 100

# Paths (docs/paths.md): every path to a peer that carries traffic is measured;
# traffic moves to a better one, or to a one-hop detour, when its path fails.
# [paths]
# interval = 0.2      # probe interval while traffic flows (idle_interval = 5)
# detect = 0.6        # a path is down after this long without an answer
# transit = false     # forward between our peers (be a detour or route hop)
# Several underlay links (SD-WAN), traffic classes, explicit routes:
# [[link]]
# name = "fiber"
# bind = "192.0.2.10:4500"    # or interface = "eth1" with port = 4500
# cost = 1
# metered = false
# [[class]]
# name = "voice"
# proto = "udp"
# dport = "5060,10000-20000"
# latency = 0.15      # SLA: round-trip seconds (also jitter, loss)
# policy = "cheapest" # best | cheapest | balance | duplicate
# [[route]]
# node = "wn1..."
# via = ["wn1...", "wn1..."]
"""


DEFAULT_FIREWALL = {
    "outbound": [{"proto": "any", "port": "any", "host": "any"}],
    "inbound": [{"proto": "icmp", "port": "any", "host": "any"}, {"proto": "icmpv6", "port": "any", "host": "any"}],
}


#: The overlay interface's rules when the config has none: inbound ICMPv6 only (ping, errors), all outbound.
DEFAULT_OVERLAY_FIREWALL = {
    "outbound": [{"proto": "any", "port": "any", "host": "any"}],
    "inbound": [{"proto": "icmpv6", "port": "any", "host": "any"}],
}


@dataclass
class OverlayConfig:
    """``[overlay]``: the overlay interface (docs/overlay.md)."""

    enable: bool = True
    interface: str = "weft0"
    mtu: int = 1280
    offload: bool = True
    txqueuelen: int = 1000
    #: None: DEFAULT_OVERLAY_FIREWALL. Rules saved by ``weft allow`` are added to the inbound list.
    firewall: dict | None = None
    #: LAN discovery: interfaces to beacon on and listen to (empty: off).
    discovery_interfaces: list[str] = field(default_factory=list)
    discovery_port: int = 4501
    discovery_interval: float = 5.0


@dataclass
class NetworkConfig:
    """``[networks.NAME]``: how this node runs one joined private network."""

    name: str
    tun: str = ""
    #: None: 1280 for a layer-3 network, 1500 for a layer-2 one (effective_mtu).
    mtu: int | None = None
    netns: str = ""
    #: TCP segmentation and checksum offload on the TUN: TCP travels in 64 KiB superpackets.
    offload: bool = True
    #: Packets the kernel queues on the TUN for the daemon to read.
    txqueuelen: int = 1000
    #: None: the default rules (all outbound, ICMP inbound), as in Nebula's example config.
    firewall: dict | None = None

    #: Layer-2 networks only (docs/l2.md).
    bridge: str = ""
    tap: str = ""
    mac_age: int = 300
    mac_quota: int = 1024
    flood_rate: int = 200
    vxlan: Any = None  # runtime.l2dev.VxlanConfig after validation

    def effective_mtu(self, layer: int) -> int:
        return self.mtu if self.mtu is not None else (1500 if layer == 2 else 1280)

    @property
    def bridge_name(self) -> str:
        return self.bridge or ("wb-" + self.name)[:15]

    @property
    def tap_name(self) -> str:
        return self.tap or ("wt-" + self.name)[:15]

    @property
    def effective_firewall(self) -> dict:
        return DEFAULT_FIREWALL if self.firewall is None else self.firewall

    @property
    def tun_name(self) -> str:
        return self.tun or ("wn-" + self.name)[:15]


@dataclass(frozen=True)
class PeerSpec:
    host: str
    port: int
    node_id: NodeId | None = None
    #: Join over a TCP link (a relay's ``[relay] tcp_port``) instead of UDP.
    tcp: bool = False

    def __str__(self) -> str:
        pin = f"{self.node_id.text()}@" if self.node_id else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tcp://' if self.tcp else ''}{pin}{host}:{self.port}"


def parse_peer(text: str) -> PeerSpec:
    """``HOST:PORT``, ``[V6]:PORT`` or ``NODEID@HOST:PORT``, each optionally ``tcp://``. Raises ParseError."""
    s = text.strip()
    tcp = False
    if s.lower().startswith("tcp://"):
        tcp, s = True, s[6:]
    elif "://" in s:
        raise ParseError(f"peer {text!r}: the only scheme is tcp:// (plain HOST:PORT is UDP)")
    node_id = None
    if "@" in s:
        pin, s = s.split("@", 1)
        node_id = NodeId.parse(pin)
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
        if not sep:
            raise ParseError(f"peer {text!r}: expected [IPV6]:PORT")
    else:
        host, sep, port = s.rpartition(":")
        if not sep or not host:
            raise ParseError(f"peer {text!r}: expected HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ParseError(f"peer {text!r}: port must be a number from 1 to 65535")
    return PeerSpec(host, int(port), node_id, tcp)


@dataclass
class Config:
    listen: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    peers: list[PeerSpec] = field(default_factory=list)
    log_level: str = "info"
    log_format: str = "text"
    k: int = 20
    alpha: int = 3
    lookup_alpha: int = 4
    cold_parallel: int = 1
    disjoint_paths: int = 1
    per_prefix: int = 2
    max_records: int = 100_000
    prs_bits: int = 4
    rtt_hints: bool = True
    sessionless: bool = True
    id_difficulty: int = DEFAULT_ID_DIFFICULTY
    exempt_prefixes: list[str] = field(default_factory=list)
    max_peers: int = 20_000
    records_per_peer: int = 1000
    records_per_prefix: int = 4000
    max_ttl: int = 86_400
    control_socket: str = ""
    networks: dict[str, NetworkConfig] = field(default_factory=dict)
    reach_enabled: bool = True
    reach_keepalive: float = 25.0
    reach_relays: int = 2
    reach_punch: bool = True
    reach_alt_port: int = 0
    relay_enabled: bool = False
    relay_max_sessions: int = 64
    relay_peer_rate: int = 5_000_000
    relay_total_rate: int = 50_000_000
    relay_tcp_port: int = 0
    metrics_listen: str = ""  # "HOST:PORT"; empty: no metrics endpoint
    metrics_peer_series: int = 100
    #: Names besides IP literals, localhost and this host's own name that /metrics answers to in a
    #: request's Host header (a DNS-rebinding page has its own name there: docs/security.md item 20).
    metrics_hosts: list[str] = field(default_factory=list)
    dashboard_listen: str = ""  # "HOST:PORT"; empty: no dashboard
    pmtu_max: int = 8972  # [dataplane]: path MTU discovery's largest datagram (0: off)
    workers: int = 1  # [dataplane]: processes carrying private-network flows (runtime/dpworkers.py)
    event_loop: str = "auto"  # [dataplane]: the daemon's event loop (runtime/evloop.py)
    sched_slice_us: int = 100  # [dataplane]: kernel time slice asked for, µs; 0 = kernel default (runtime/evloop.py)
    sched_slice_pressure: int = 10  # [dataplane]: ...only while CPU pressure is at least this %; 0 = always
    ciphers: list | None = None  # [dataplane]: transport ciphers, preferred first; None: by the CPU (ciphers.py)
    ack_filter: bool = True  # [dataplane]: leave out pure TCP ACKs a later one read with them supersedes
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    bgp: Any = None  # runtime.bgpconfig.BgpSettings when [bgp] is present
    l3vpn: Any = None  # runtime.l3vpnconfig.L3vpnSettings when [l3vpn] is present
    vrfs: dict[str, Any] = field(default_factory=dict)  # [vrf.NAME]: runtime.l3vpnconfig.VrfSettings
    #: [paths], [[link]], [[class]], [[route]] (docs/paths.md): the core's config, and the links' sockets.
    paths: PathsConfig = field(default_factory=PathsConfig)
    link_tables: list = field(default_factory=list)
    #: Where the settings came from: the file, or None if there was none (defaults in force).
    source: str | None = None


#: Validated by core/paths/config.py (docs/paths.md).
_PATHS_SECTIONS = ("paths", "link", "class", "route")

_SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "node": {"listen": ("listen", str), "port": ("port", int), "peers": ("peers", list)},
    "log": {"level": ("log_level", str), "format": ("log_format", str)},
    "dht": {
        "k": ("k", int),
        "alpha": ("alpha", int),
        "lookup_alpha": ("lookup_alpha", int),
        "cold_parallel": ("cold_parallel", int),
        "disjoint_paths": ("disjoint_paths", int),
        "per_prefix": ("per_prefix", int),
        "max_records": ("max_records", int),
        "prs_bits": ("prs_bits", int),
        "rtt_hints": ("rtt_hints", bool),
        "sessionless": ("sessionless", bool),
        "id_difficulty": ("id_difficulty", int),
    },
    "limits": {
        "exempt_prefixes": ("exempt_prefixes", list),
        "max_peers": ("max_peers", int),
        "records_per_peer": ("records_per_peer", int),
        "records_per_prefix": ("records_per_prefix", int),
        "max_ttl": ("max_ttl", int),
    },
    "control": {"socket": ("control_socket", str)},
    "reach": {
        "enabled": ("reach_enabled", bool),
        "keepalive": ("reach_keepalive", float),
        "relays": ("reach_relays", int),
        "punch": ("reach_punch", bool),
        "alt_port": ("reach_alt_port", int),
    },
    "relay": {
        "enabled": ("relay_enabled", bool),
        "max_sessions": ("relay_max_sessions", int),
        "peer_rate": ("relay_peer_rate", int),
        "total_rate": ("relay_total_rate", int),
        "tcp_port": ("relay_tcp_port", int),
    },
    "metrics": {"listen": ("metrics_listen", str), "peer_series": ("metrics_peer_series", int),
                "hosts": ("metrics_hosts", list)},
    "dashboard": {"listen": ("dashboard_listen", str)},
    "dataplane": {"pmtu_max": ("pmtu_max", int), "workers": ("workers", int), "event_loop": ("event_loop", str),
                  "sched_slice_us": ("sched_slice_us", int),
                  "sched_slice_pressure": ("sched_slice_pressure", int), "ciphers": ("ciphers", list),
                  "ack_filter": ("ack_filter", bool)},
}
_RANGES = {
    "port": (0, 65535),
    "k": (1, 64),
    "alpha": (1, 16),
    "lookup_alpha": (0, 16),
    "cold_parallel": (1, 16),
    "disjoint_paths": (1, 8),
    "per_prefix": (0, 64),
    "max_records": (1, 10_000_000),
    "prs_bits": (-1, 32),
    "id_difficulty": (0, 32),
    "max_peers": (16, 10_000_000),
    "records_per_peer": (1, 10_000_000),
    "records_per_prefix": (1, 10_000_000),
    "max_ttl": (60, 30 * 86_400),
    "reach_keepalive": (1, 3600),
    "reach_relays": (0, 4),
    "reach_alt_port": (-1, 65535),
    "relay_max_sessions": (1, 100_000),
    "relay_peer_rate": (1000, 10**10),
    "relay_total_rate": (1000, 10**11),
    "relay_tcp_port": (0, 65535),
    "metrics_peer_series": (0, 10_000),
    "pmtu_max": (0, 65_000),
    "workers": (1, 16),
    "sched_slice_us": (0, 100_000),
    "sched_slice_pressure": (0, 100),
}
#: A DNS name as it may appear in a Host header (labels of letters, digits, '-' and '_'; a final dot).
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                        r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", bool: "true or false", float: "a number"}


def load_config(path: Path) -> Config:
    """Read and validate a config file; a missing file gives the defaults."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()  # source None: the caller says that defaults are in force
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    cfg = config_from_bytes(raw, str(path))
    cfg.source = str(path)
    return cfg


def config_from_bytes(raw: bytes, where: str = "config") -> Config:
    """A config file's bytes -> a validated Config, or a one-line ConfigError (fuzz/config_target.py)."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid TOML: {' '.join(str(exc).split())}") from None
    return config_from_dict(data, where)


def config_from_dict(data: dict, where: str = "config") -> Config:
    cfg = Config()
    paths_tables = {k: data[k] for k in _PATHS_SECTIONS if k in data}
    for section, values in data.items():
        if section in _PATHS_SECTIONS:
            continue
        if section == "networks":
            cfg.networks = _networks(values, where)
            continue
        if section == "overlay":
            cfg.overlay = _overlay(values, where)
            continue
        if section == "bgp":
            from weftnet.runtime.bgpconfig import parse_bgp

            cfg.bgp = parse_bgp(values, where)
            continue
        if section in ("l3vpn", "vrf"):
            from weftnet.runtime.l3vpnconfig import parse_l3vpn, parse_vrfs

            if section == "l3vpn":
                cfg.l3vpn = parse_l3vpn(values, where)
            else:
                cfg.vrfs = parse_vrfs(values, where)
            continue
        if section not in _SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(_SCHEMA)}, networks, overlay, bgp, "
                              "l3vpn, vrf, paths, [[link]], [[class]], [[route]])")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in values.items():
            if key not in _SCHEMA[section]:
                known = ", ".join(_SCHEMA[section])
                raise ConfigError(f"{where}: unknown key [{section}] {key} (known: {known})")
            attr, typ = _SCHEMA[section][key]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or (typ in (int, float) and isinstance(value, bool)):
                raise ConfigError(f"{where}: [{section}] {key} must be {_TYPE_NAMES[typ]}, not {value!r}")
            if attr in _RANGES:
                lo, hi = _RANGES[attr]
                if not lo <= value <= hi:
                    raise ConfigError(f"{where}: [{section}] {key} must be from {lo} to {hi}, not {value}")
            setattr(cfg, attr, value)
    try:
        ipaddress.ip_address(cfg.listen)
    except ValueError:
        raise ConfigError(f"{where}: [node] listen must be an IP address, not {cfg.listen!r}") from None
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{where}: [log] level must be debug, info, warning or error, not {cfg.log_level!r}")
    if cfg.event_loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"{where}: [dataplane] event_loop must be auto, uvloop or asyncio, not {cfg.event_loop!r}")
    if 0 < cfg.sched_slice_us < 100:
        raise ConfigError(f"{where}: [dataplane] sched_slice_us must be 0 (the kernel's default) or from 100 "
                          f"to 100000, not {cfg.sched_slice_us}")
    if cfg.ciphers is not None:
        bad = [c for c in cfg.ciphers if not isinstance(c, str)]
        if bad:  # a table or a list among the names (the core's parser only knows strings)
            raise ConfigError(f"{where}: [dataplane] ciphers must be a list of cipher names, not {bad[0]!r}")
        try:
            parse_names(cfg.ciphers)
        except ValueError as exc:
            raise ConfigError(f"{where}: [dataplane] ciphers: {exc}") from None
    if cfg.log_format not in ("text", "json"):
        raise ConfigError(f"{where}: [log] format must be text or json, not {cfg.log_format!r}")
    peers = []
    for p in cfg.peers:
        if not isinstance(p, str):
            raise ConfigError(f"{where}: [node] peers must be strings like \"HOST:PORT\", not {p!r}")
        try:
            peers.append(parse_peer(p))
        except ParseError as exc:
            raise ConfigError(f"{where}: [node] peers: {exc}") from None
    cfg.peers = peers
    for p in cfg.exempt_prefixes:
        try:
            if not isinstance(p, str):
                raise ValueError
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise ConfigError(f"{where}: [limits] exempt_prefixes must be IP prefixes like \"127.0.0.0/8\", "
                              f"not {p!r}") from None
    for h in cfg.metrics_hosts:
        if not isinstance(h, str) or not _HOST_NAME.fullmatch(h):
            raise ConfigError(f"{where}: [metrics] hosts must be DNS names like \"node1.example.net\", "
                              f"not {h!r}") from None
    cfg.metrics_hosts = [h.lower().rstrip(".") for h in cfg.metrics_hosts]
    for section, value in (("metrics", cfg.metrics_listen), ("dashboard", cfg.dashboard_listen)):
        if value:
            try:
                parse_listen(value)
            except ParseError as exc:
                raise ConfigError(f"{where}: [{section}] listen: {exc}") from None
    if paths_tables:
        try:
            cfg.paths, cfg.link_tables = paths_config_from_dict(
                paths_tables.get("paths"), paths_tables.get("link"), paths_tables.get("class"),
                paths_tables.get("route"), where)
        except ConfigError as exc:
            msg = str(exc)  # core/paths/config.py names a [[link]] without the file: add it
            raise ConfigError(msg if msg.startswith(f"{where}: ") else f"{where}: {msg}") from None
    return cfg


def parse_listen(text: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPV6]:PORT`` of a local HTTP endpoint. Raises ParseError."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ParseError(f"expected IP:PORT like \"127.0.0.1:9477\", not {text!r}") from None
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ParseError(f"expected IP:PORT with a port from 1 to 65535, not {text!r}")
    return host, int(port)


_NET_KEYS = {"tun": str, "mtu": int, "netns": str, "offload": bool, "txqueuelen": int, "firewall": dict,
             "bridge": str, "tap": str, "mac_age": int, "mac_quota": int, "flood_rate": int, "vxlan": dict}
_L2_RANGES = {"mac_age": (1, 86_400), "mac_quota": (1, 65_536), "flood_rate": (1, 1_000_000)}


def _networks(values: Any, where: str) -> dict[str, NetworkConfig]:
    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.netcert import check_name
    from weftnet.core.vpn.network import MAX_MTU, MIN_MTU

    if not isinstance(values, dict):
        raise ConfigError(f"{where}: [networks] must be a table of [networks.NAME] tables")
    out = {}
    for name, table in values.items():
        try:
            check_name("network", name)
        except ValueError as exc:
            raise ConfigError(f"{where}: [networks.{name}]: {exc}") from None
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [networks.{name}] must be a table")
        nc = NetworkConfig(name)
        for key, value in table.items():
            typ = _NET_KEYS.get(key)
            if typ is None:
                raise ConfigError(f"{where}: unknown key [networks.{name}] {key} (known: {', '.join(_NET_KEYS)})")
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                kind = {dict: "a table", bool: "true or false"}.get(typ) or _TYPE_NAMES[typ]
                raise ConfigError(f"{where}: [networks.{name}] {key} must be {kind}, not {value!r}")
            setattr(nc, key, value)
        if not 1 <= nc.txqueuelen <= 100_000:
            raise ConfigError(f"{where}: [networks.{name}] txqueuelen must be from 1 to 100000, not {nc.txqueuelen}")
        if nc.mtu is not None and not MIN_MTU <= nc.mtu <= MAX_MTU:
            raise ConfigError(f"{where}: [networks.{name}] mtu must be from {MIN_MTU} to {MAX_MTU}, not {nc.mtu}")
        for key, (lo, hi) in _L2_RANGES.items():
            if not lo <= getattr(nc, key) <= hi:
                raise ConfigError(f"{where}: [networks.{name}] {key} must be from {lo} to {hi}, not {getattr(nc, key)}")
        for key, dev in (("tun", nc.tun_name), ("bridge", nc.bridge_name), ("tap", nc.tap_name)):
            if not 1 <= len(dev.encode()) <= 15 or any(c in dev for c in "/ \t\n:") or dev in (".", ".."):
                raise ConfigError(f"{where}: [networks.{name}] {key} {dev!r} is not a valid interface name (1-15 "
                                  "characters, no '/', ':' or spaces)")
        if nc.vxlan is not None:
            from weftnet.runtime.l2dev import parse_vxlan

            nc.vxlan = parse_vxlan(nc.vxlan, f"{where}: [networks.{name}]")
        try:
            Firewall.from_config(nc.effective_firewall, f"[networks.{name}] firewall")
        except WeftError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out[name] = nc
    return out


_OVERLAY_KEYS = {"enable": bool, "interface": str, "mtu": int, "offload": bool, "txqueuelen": int, "firewall": dict,
                 "discovery": dict}
_DISCOVERY_KEYS = {"interfaces": list, "port": int, "interval": (int, float)}


def _overlay(values: Any, where: str) -> OverlayConfig:
    from weftnet.core.vpn.firewall import Firewall

    if not isinstance(values, dict):
        raise ConfigError(f"{where}: [overlay] must be a table")
    oc = OverlayConfig()
    for key, value in values.items():
        typ = _OVERLAY_KEYS.get(key)
        if typ is None:
            raise ConfigError(f"{where}: unknown key [overlay] {key} (known: {', '.join(_OVERLAY_KEYS)})")
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            kind = {dict: "a table", bool: "true or false"}.get(typ) or _TYPE_NAMES[typ]
            raise ConfigError(f"{where}: [overlay] {key} must be {kind}, not {value!r}")
        if key == "discovery":
            for dkey, dval in value.items():
                dtyp = _DISCOVERY_KEYS.get(dkey)
                if dtyp is None:
                    raise ConfigError(f"{where}: unknown key [overlay] discovery.{dkey} "
                                      f"(known: {', '.join(_DISCOVERY_KEYS)})")
                if not isinstance(dval, dtyp) or isinstance(dval, bool):
                    kind = {list: "a list of interface names", int: "an integer"}.get(dtyp, "a number")
                    raise ConfigError(f"{where}: [overlay] discovery.{dkey} must be {kind}, not {dval!r}")
                setattr(oc, "discovery_" + dkey, dval)
            continue
        setattr(oc, key, value)
    if not 1280 <= oc.mtu <= 9000:
        raise ConfigError(f"{where}: [overlay] mtu must be from 1280 to 9000 (IPv6 needs 1280), not {oc.mtu}")
    if not 1 <= oc.txqueuelen <= 100_000:
        raise ConfigError(f"{where}: [overlay] txqueuelen must be from 1 to 100000, not {oc.txqueuelen}")
    name = oc.interface
    if not 1 <= len(name.encode()) <= 15 or any(c in name for c in "/ \t\n:") or name in (".", ".."):
        raise ConfigError(f"{where}: [overlay] interface {name!r} is not a valid interface name (1-15 characters, "
                          "no '/', ':' or spaces)")
    for ifname in oc.discovery_interfaces:
        if not isinstance(ifname, str) or not 1 <= len(ifname.encode()) <= 15 or any(c in ifname for c in "/ :"):
            raise ConfigError(f"{where}: [overlay] discovery.interfaces: {ifname!r} is not an interface name")
    if not 1 <= oc.discovery_port <= 65535:
        raise ConfigError(f"{where}: [overlay] discovery.port must be from 1 to 65535, not {oc.discovery_port}")
    if not 0.5 <= oc.discovery_interval <= 3600:
        raise ConfigError(f"{where}: [overlay] discovery.interval must be from 0.5 to 3600 seconds, "
                          f"not {oc.discovery_interval}")
    oc.discovery_interval = float(oc.discovery_interval)
    if oc.firewall is not None:
        try:
            Firewall.from_config(oc.firewall, "[overlay] firewall")
            from weftnet.runtime.overlay import _check_overlay_rules

            for direction in ("inbound", "outbound"):
                _check_overlay_rules(oc.firewall.get(direction, []), f"[overlay] firewall.{direction}")
        except WeftError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return oc

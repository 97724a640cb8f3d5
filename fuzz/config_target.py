"""The ``config`` fuzz target (fuzz/weftfuzz.py): the node's config file (runtime/config.py).

The file is the operator's, not a stranger's, but a mistake in it must cost one clear line
(``config.toml: [section] key ...``) and never a traceback or an "internal error": `weft up`,
every CLI command that reads it and every reload parse it. Half the inputs are the bytes of a
file (mutations of the default config and of a config that uses every section: networks with
firewalls and VXLAN, the overlay, BGP with EVPN, L3VPN and VRFs, paths, links, classes and
routes); the other half seed a mutation of that config's tables, where values are replaced by
values of every TOML type (strings, integers out of range, NaN, lists, tables) and keys dropped.
``config_from_bytes`` / ``config_from_dict`` must return a Config or raise ConfigError with a
message of one line naming the file; found the cipher list's TypeError (audit3).
"""

from __future__ import annotations

import copy
import json
import math
import random
import re

from weftnet.core.identity import Identity
from weftnet.errors import ConfigError
from weftnet.runtime.config import DEFAULT_CONFIG, config_from_bytes, config_from_dict

WHERE = "config.toml"
_NODE = Identity.from_seed(bytes([41]) * 32).node_id.text()
_NODE2 = Identity.from_seed(bytes([42]) * 32).node_id.text()

#: A config that uses every section (each value valid).
RICH = {
    "node": {"listen": "0.0.0.0", "port": 4500, "peers": ["192.0.2.4:4500", f"tcp://{_NODE}@[2001:db8::1]:443"]},
    "log": {"level": "info", "format": "json"},
    "dht": {"k": 20, "alpha": 3, "prs_bits": -1, "rtt_hints": True},
    "limits": {"exempt_prefixes": ["127.0.0.0/8"], "max_peers": 20000, "max_ttl": 86400},
    "reach": {"enabled": True, "keepalive": 25, "relays": 2, "alt_port": -1},
    "relay": {"enabled": True, "max_sessions": 64, "tcp_port": 443},
    "metrics": {"listen": "127.0.0.1:9477", "peer_series": 100},
    "dashboard": {"listen": "[::1]:9478"},
    "dataplane": {"pmtu_max": 8972, "workers": 2, "event_loop": "auto", "ciphers": ["aes-256-gcm", "chacha20-poly1305"],
                  "sched_slice_us": 100},
    "networks": {
        "lab": {"tun": "wn-lab", "mtu": 1400, "offload": True,
                "firewall": {"inbound": [{"proto": "tcp", "port": "22-25", "host": "any", "groups": ["ops"]},
                                         {"proto": "icmp", "port": "any", "cidr": "10.0.0.0/8"}],
                             "outbound": [{"proto": "any", "port": "any", "host": "any"}],
                             "conntrack": {"max_flows": 1000, "max_flows_per_peer": 100}}},
        "l2": {"bridge": "wb-l2", "tap": "wt-l2", "mac_age": 300, "mac_quota": 64,
               "vxlan": {"vni": 100, "local": "192.0.2.1", "remotes": ["192.0.2.2"]}},
    },
    "overlay": {"enable": True, "interface": "weft0", "mtu": 1280,
                "firewall": {"inbound": [{"proto": "tcp", "port": 22, "host": _NODE}]},
                "discovery": {"interfaces": ["eth0"], "port": 4501, "interval": 5}},
    "bgp": {"asn": 65000, "router_id": "10.251.0.1", "families": ["vpnv4", "vpnv6", "evpn"], "hold_time": 90,
            "peers": [{"address": "192.0.2.2", "remote_as": 65002, "families": ["evpn"], "max_prefixes": 10,
                       "name": "tor1"}, {"node": _NODE, "remote_as": 65000, "passive": True}],
            "evpn": [{"vni": 100, "rd": "192.0.2.1:100", "route_targets": ["65000:1"], "prefixes": ["10.100.0.0/24"],
                      "router_mac": "02:00:00:00:00:01"}]},
    "l3vpn": {"nexthop": "10.251.0.1", "label_range": [1000, 1999], "pes": {"10.251.0.2": _NODE}},
    "vrf": {"red": {"rd": "65000:11", "route_targets": ["65000:100"], "netns": "vrf-red",
                    "static": [{"prefix": "10.0.0.0/25", "via": "192.168.1.2"}],
                    "ce": [{"address": "192.168.1.2", "remote_as": 65101, "hold_time": 9}]},
            "hub": {"rd": "192.0.2.1:50", "import_targets": ["65000:2"], "export_targets": ["65000:1"],
                    "label_mode": "per-prefix", "export_map": [{"prefixes": ["10.9.0.0/16"], "add_rt": ["65000:9"]}]}},
    "paths": {"interval": 0.2, "detect": 0.6, "transit": True},
    "link": [{"name": "fiber", "bind": "192.0.2.10:4500", "cost": 1, "metered": False},
             {"name": "lte", "interface": "eth1", "port": 4500, "metered": True}],
    "class": [{"name": "voice", "proto": "udp", "dport": "5060,10000-20000", "latency": 0.15, "policy": "cheapest"}],
    "route": [{"node": _NODE, "via": [_NODE2]}],
}

#: Values of every TOML type, in and out of every range the config has.
VALUES = [0, -1, 1, 15, 16, 65535, 65536, 2**31, 2**63 - 1, -2**63, 0.5, -0.0, 1e308, math.nan, math.inf, -math.inf,
          True, False, "", "x", "any", "0", "-1", "1-0", "5-3", "65000:1", "4294967296:1", "1.2.3.4", "::", "::1/200",
          "10.0.0.0/33", "0.0.0.0:0", "[::1]:99999", "wn1", "a" * 200, "é" * 10, "a/b", "\x00", " ",
          [], [1], ["x"], [[]], [{}], [None], {}, {"x": 1}, {"inbound": 1}, None]


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML's basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"


def to_toml(d: dict) -> str:
    """A config table as a file: scalars and arrays first, then one [section] per table."""
    head = [f"{_key(k)} = {_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    body = []
    for k, v in d.items():
        if isinstance(v, dict):
            body.append(f"[{_key(k)}]")
            body += [f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(head + body) + "\n"


def corpus() -> list[bytes]:
    out = [DEFAULT_CONFIG.encode(), to_toml(RICH).encode()]
    for section in RICH:  # one section each: short files, so byte mutations land in them
        out.append(to_toml({section: RICH[section]}).encode())
    return out


def _paths(d, pre=()):
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        yield pre + (k,)
        yield from _paths(v, pre + (k,))


def mutate_tables(rng: random.Random, d: dict) -> dict:
    """Replace, drop or stretch one to three values anywhere in ``d`` (in place)."""
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(d))
        if not paths:
            break
        p = rng.choice(paths)
        parent = d
        for k in p[:-1]:
            parent = parent[k]
        r = rng.random()
        if r < 0.7:
            parent[p[-1]] = copy.deepcopy(rng.choice(VALUES))
        elif r < 0.85:
            del parent[p[-1]]
        else:
            v = parent[p[-1]]
            if isinstance(v, str):
                parent[p[-1]] = v + rng.choice(("x", ":1", "/8", "-", "5", ","))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                parent[p[-1]] = v * rng.choice((-1, 1000, 10**6)) + rng.choice((0, 1))
    return d


def _drop_none(v):
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v if x is not None]
    return v


class ConfigTarget:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.bases = [RICH, _drop_none(__import__("tomllib").loads(DEFAULT_CONFIG))]

    def __call__(self, data: bytes) -> None:
        if self.rng.random() < 0.5:
            self.check(lambda: config_from_bytes(data, WHERE))
            return
        d = mutate_tables(random.Random(data), copy.deepcopy(self.rng.choice(self.bases)))
        d = _drop_none(d)  # TOML has no null
        self.check(lambda: config_from_dict(d, WHERE))

    @staticmethod
    def check(parse) -> None:
        try:
            parse()
        except ConfigError as exc:
            msg = str(exc)
            if "\n" in msg or not msg.startswith(WHERE + ": "):
                raise AssertionError(f"a config error that is not one line naming the file: {msg!r}") from None

"""Scenario files: an experiment as TOML, so a result is reproducible from a file and a seed.

    [scenario]
    name = "small"
    nodes = 2000            # or sizes = [1000, 10000] for a sweep
    seed = 1                # default; `weft sim --seed` overrides

    [underlay]              # sim/underlay.py
    regions = 6
    jitter = 0.1
    loss = 0.0

    [dht]                   # core/dht DhtConfig fields
    k = 20
    alpha = 3

    [join]
    mode = "storm"          # "storm": every node bootstraps through a random joined node;
                            # "warm": tables pre-filled from the ID space (documented shortcut)
    duration = 600          # seconds over which the nodes arrive

    [lookups]
    count = 1000            # node-ID lookups from random nodes to random live nodes
    duration = 600

    [records]
    count = 200             # puts from random nodes, then gets from others
    quorum = 1

    [churn]
    duration = 3600         # churn phase length; 0 = no churn
    distribution = "exponential"   # or "pareto"
    median_session = 1800   # seconds
    pareto_shape = 2.0
    crash_fraction = 0.5    # the rest leave gracefully
    lookups_per_minute = 60

    [[partition]]           # regions cut apart from `start` to `end` (seconds into the churn/lookup phase)
    start = 100
    end = 200
    a = [0]
    b = [1, 2]

    [nat]                   # instead of the DHT phases: the NAT connectivity experiment (sim/nat.py)
    public = 0.15           # shares of nodes behind each kind of NAT (normalised)
    full_cone = 0.05
    restricted = 0.05
    port_restricted = 0.5
    symmetric = 0.2
    udp_blocked = 0.05
    relay_share = 0.3       # public nodes that are relays
    relays_per_node = 2
    pairs = 200             # random pairs pinged
    settle = 90             # seconds after the joins before the pings

Every problem is a ConfigError naming the file, the table and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weftnet.errors import ConfigError

__all__ = ["Scenario", "load_scenario", "scenario_from_dict"]


@dataclass
class Scenario:
    name: str = "scenario"
    sizes: list[int] = field(default_factory=lambda: [2000])
    seed: int = 1
    underlay: dict[str, Any] = field(default_factory=dict)
    dht: dict[str, Any] = field(default_factory=dict)
    join_mode: str = "storm"
    join_duration: float = 600.0
    lookups: int = 1000
    lookup_duration: float = 600.0
    records: int = 0
    quorum: int = 1
    churn_duration: float = 0.0
    churn_distribution: str = "exponential"
    median_session: float = 1800.0
    pareto_shape: float = 2.0
    crash_fraction: float = 0.5
    churn_lookups_per_minute: float = 60.0
    partitions: list[dict[str, Any]] = field(default_factory=list)
    #: The [nat] table: run the NAT connectivity experiment (sim/nat.py) instead of the DHT phases.
    nat: dict[str, Any] | None = None
    source: str = "<dict>"


_TABLES = {
    "scenario": {"name": str, "nodes": int, "sizes": list, "seed": int},
    "underlay": {"regions": int, "region_spread_ms": (int, float), "min_access_ms": (int, float),
                 "max_access_ms": (int, float), "jitter": (int, float), "loss": (int, float)},
    "dht": {"k": int, "alpha": int, "disjoint_paths": int, "max_failures": int, "min_rto": (int, float),
            "max_rto": (int, float), "initial_rto": (int, float), "lookup_timeout": (int, float),
            "refresh_on_join": bool, "stop_at_target": bool, "first_round": int, "adaptive_rto": bool,
            "proximity": bool, "replace_failing": bool, "maintenance_interval": (int, float), "refresh_interval": (int, float),
            "join_fill": int, "self_refresh": bool, "say_leave": bool, "prs_bits": int,
            "lookup_hedge": (int, float), "rtt_hints": bool,
            "lookup_alpha": int, "fill_by_rtt": bool, "fill_topup": bool},
    "join": {"mode": str, "duration": (int, float)},
    "lookups": {"count": int, "duration": (int, float)},
    "records": {"count": int, "quorum": int},
    "churn": {"duration": (int, float), "distribution": str, "median_session": (int, float),
              "pareto_shape": (int, float), "crash_fraction": (int, float), "lookups_per_minute": (int, float)},
    "nat": {"public": (int, float), "full_cone": (int, float), "restricted": (int, float),
            "port_restricted": (int, float), "symmetric": (int, float), "udp_blocked": (int, float),
            "relay_share": (int, float), "relays_per_node": int, "pairs": int, "settle": (int, float)},
}


def load_scenario(path: Path) -> Scenario:
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such scenario file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return scenario_from_dict(data, str(path))


def _check(where: str, table: str, key: str, value: Any, typ: Any) -> None:
    types = typ if isinstance(typ, tuple) else (typ,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join({int: "an integer", float: "a number", str: "a string", list: "a list",
                             bool: "true or false"}[t] for t in types)
        raise ConfigError(f"{where}: [{table}] {key} must be {names}, not {value!r}")


def scenario_from_dict(data: dict, where: str = "<dict>") -> Scenario:
    sc = Scenario(source=where)
    for table, values in data.items():
        if table == "partition":
            if not isinstance(values, list):
                raise ConfigError(f"{where}: [[partition]] must be an array of tables")
            for p in values:
                for key in ("start", "end", "a", "b"):
                    if key not in p:
                        raise ConfigError(f"{where}: [[partition]] needs {key}")
                if not p["start"] < p["end"]:
                    raise ConfigError(f"{where}: [[partition]] start must be before end")
                sc.partitions.append(dict(p))
            continue
        if table not in _TABLES:
            raise ConfigError(f"{where}: unknown table [{table}] (known: {', '.join(_TABLES)}, partition)")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{table}] must be a table")
        for key, value in values.items():
            if key not in _TABLES[table]:
                raise ConfigError(f"{where}: unknown key [{table}] {key} (known: {', '.join(_TABLES[table])})")
            _check(where, table, key, value, _TABLES[table][key])
    s = data.get("scenario", {})
    sc.name = s.get("name", sc.name)
    if "nodes" in s and "sizes" in s:
        raise ConfigError(f"{where}: [scenario] give nodes or sizes, not both")
    if "nodes" in s:
        sc.sizes = [s["nodes"]]
    if "sizes" in s:
        sc.sizes = list(s["sizes"])
    if not sc.sizes or any(not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= 2_000_000 for n in sc.sizes):
        raise ConfigError(f"{where}: [scenario] node counts must be integers from 2 to 2,000,000")
    sc.seed = s.get("seed", sc.seed)
    sc.underlay = dict(data.get("underlay", {}))
    sc.dht = dict(data.get("dht", {}))
    j = data.get("join", {})
    sc.join_mode = j.get("mode", sc.join_mode)
    if sc.join_mode not in ("storm", "warm"):
        raise ConfigError(f"{where}: [join] mode must be \"storm\" or \"warm\", not {sc.join_mode!r}")
    sc.join_duration = float(j.get("duration", sc.join_duration))
    lk = data.get("lookups", {})
    sc.lookups = lk.get("count", sc.lookups)
    sc.lookup_duration = float(lk.get("duration", sc.lookup_duration))
    r = data.get("records", {})
    sc.records = r.get("count", sc.records)
    sc.quorum = r.get("quorum", sc.quorum)
    c = data.get("churn", {})
    sc.churn_duration = float(c.get("duration", 0.0))
    sc.churn_distribution = c.get("distribution", sc.churn_distribution)
    if sc.churn_distribution not in ("exponential", "pareto"):
        raise ConfigError(f"{where}: [churn] distribution must be \"exponential\" or \"pareto\"")
    sc.median_session = float(c.get("median_session", sc.median_session))
    sc.pareto_shape = float(c.get("pareto_shape", sc.pareto_shape))
    sc.crash_fraction = float(c.get("crash_fraction", sc.crash_fraction))
    sc.churn_lookups_per_minute = float(c.get("lookups_per_minute", sc.churn_lookups_per_minute))
    if not 0.0 <= sc.crash_fraction <= 1.0:
        raise ConfigError(f"{where}: [churn] crash_fraction must be from 0 to 1")
    if sc.median_session <= 0 or sc.pareto_shape <= 0:
        raise ConfigError(f"{where}: [churn] median_session and pareto_shape must be positive")
    for name, v in (("[lookups] count", sc.lookups), ("[records] count", sc.records)):
        if v < 0:
            raise ConfigError(f"{where}: {name} must not be negative")
    if "nat" in data:
        sc.nat = dict(data["nat"])
        for key, v in sc.nat.items():
            if v < 0:
                raise ConfigError(f"{where}: [nat] {key} must not be negative")
        if not any(sc.nat.get(k, 0) for k in ("public", "full_cone", "restricted", "port_restricted", "symmetric",
                                                "udp_blocked")):
            raise ConfigError(f"{where}: [nat] needs a share above 0 for at least one kind of NAT")
        if not 0 < sc.nat.get("relay_share", 0.3) <= 1:
            raise ConfigError(f"{where}: [nat] relay_share must be above 0 and at most 1")
    return sc

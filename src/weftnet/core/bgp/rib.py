"""Routing information bases (RFC 4271 section 3.2) and the decision process (section 9.1).

* Adj-RIB-In: per peer, per family, the routes the peer sent that passed
  import (key -> :class:`Path`); bounded by the peer's ``max_prefixes``.
* Loc-RIB: per family, for each route key every candidate path (one per
  source) and the best one (:func:`select_best`).
* Adj-RIB-Out: per peer, per family, what was last advertised (key ->
  (attributes, next hop)), so only changes are sent.

Route keys are the NLRI's ``key`` (see ``nlri/``): per family, the bytes that
name a route. Paths with the same key from different sources compete.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from weftnet.core.bgp.attributes import Attributes
from weftnet.core.bgp.family import Family
from weftnet.core.bgp.nlri import Nlri

__all__ = ["PeerInfo", "Path", "LocRib", "select_best", "LOCAL_SOURCE", "DEFAULT_LOCAL_PREF"]

DEFAULT_LOCAL_PREF = 100
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Where a path came from."""

    key: str
    asn: int
    router_id: ipaddress.IPv4Address
    address: IPAddress
    ibgp: bool
    rr_client: bool = False


LOCAL_SOURCE = PeerInfo("local", 0, ipaddress.IPv4Address(0), ipaddress.IPv4Address(0), False)


@dataclass(slots=True)
class Path:
    nlri: Nlri
    attrs: Attributes
    next_hop: IPAddress | None
    source: PeerInfo  # LOCAL_SOURCE for routes this speaker originates
    seq: int = 0  # arrival order: the older path wins final ties, as operators expect
    stale: bool = False

    @property
    def family(self) -> Family:
        return self.nlri.family

    @property
    def local(self) -> bool:
        return self.source is LOCAL_SOURCE

    def to_dict(self) -> dict:
        d = {"family": str(self.family), **self.nlri.to_dict(),
             "next_hop": None if self.next_hop is None else str(self.next_hop),
             "source": self.source.key, "attributes": self.attrs.to_dict()}
        if self.stale:
            d["stale"] = True
        return d


def _local_pref(p: Path) -> int:
    lp = p.attrs.local_pref
    return lp.value if lp is not None else DEFAULT_LOCAL_PREF


def _router_id(p: Path) -> int:
    oid = p.attrs.originator_id  # RFC 4456 section 9: the ORIGINATOR_ID stands in for the BGP Identifier
    return int(oid.router_id) if oid is not None else int(p.source.router_id)


def _keep(paths: list[Path], score) -> list[Path]:
    best = min(score(p) for p in paths)
    return [p for p in paths if score(p) == best]


def select_best(paths: list[Path]) -> Path | None:
    """The decision process of RFC 4271 9.1.2.2, after locally originated routes (which always win):
    highest LOCAL_PREF, shortest AS_PATH, lowest ORIGIN, lowest MED among routes from the same neighbouring
    AS, eBGP over iBGP, lowest BGP Identifier (ORIGINATOR_ID for reflected routes), shortest CLUSTER_LIST
    (RFC 4456 9), lowest peer address, then the oldest."""
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0]
    cands = [p for p in paths if p.local] or list(paths)
    cands = _keep(cands, lambda p: -_local_pref(p))
    cands = _keep(cands, lambda p: p.attrs.as_path.length)
    cands = _keep(cands, lambda p: p.attrs.origin.value if p.attrs.origin is not None else 2)
    if len(cands) > 1:  # c) MED, compared only between routes from the same neighbouring AS; missing = 0
        by_as: dict[int | None, int] = {}
        for p in cands:
            nas = p.attrs.as_path.neighbor_as
            med = p.attrs.med.value if p.attrs.med is not None else 0
            by_as[nas] = min(med, by_as.get(nas, med))
        cands = [p for p in cands if (p.attrs.med.value if p.attrs.med is not None else 0)
                 == by_as[p.attrs.as_path.neighbor_as]]
    cands = _keep(cands, lambda p: 1 if p.source.ibgp else 0)
    cands = _keep(cands, _router_id)
    cands = _keep(cands, lambda p: len(p.attrs.cluster_list.ids) if p.attrs.cluster_list is not None else 0)
    cands = _keep(cands, lambda p: (p.source.address.version, int(p.source.address)))
    return min(cands, key=lambda p: p.seq)


@dataclass
class _Entry:
    paths: dict[str, Path] = field(default_factory=dict)  # source key -> path
    best: Path | None = None


class LocRib:
    """Every candidate path per family and key, and the best of each."""

    def __init__(self) -> None:
        self.tables: dict[Family, dict[bytes, _Entry]] = {}

    def update(self, family: Family, key: bytes, source: str, path: Path | None) -> tuple[Path | None, Path | None]:
        """Add/replace (path) or remove (None) ``source``'s path; returns (old best, new best)."""
        table = self.tables.setdefault(family, {})
        entry = table.get(key)
        if entry is None:
            if path is None:
                return None, None
            entry = table[key] = _Entry()
        old = entry.best
        if path is None:
            if entry.paths.pop(source, None) is None:
                return old, old
        else:
            entry.paths[source] = path
        entry.best = select_best(list(entry.paths.values()))
        if not entry.paths:
            del table[key]
        return old, entry.best

    def best(self, family: Family, key: bytes) -> Path | None:
        e = self.tables.get(family, {}).get(key)
        return e.best if e else None

    def best_paths(self, family: Family) -> Iterator[Path]:
        for e in self.tables.get(family, {}).values():
            if e.best is not None:
                yield e.best

    def all_paths(self, family: Family) -> Iterator[tuple[Path, bool]]:
        for e in self.tables.get(family, {}).values():
            for p in e.paths.values():
                yield p, p is e.best

    def count(self, family: Family) -> int:
        return len(self.tables.get(family, {}))

    def families(self) -> Iterable[Family]:
        return self.tables.keys()

"""Import and export policies by route target (RFC 4364 section 4.3.1, RFC 7432 section 7.10).

A policy is a plain callable the speaker calls per route (``Speaker.import_policy``
/ ``export_policy``). :class:`RouteTargetImport` keeps a VPN or EVPN route only if
it carries a route target some local consumer imports, as a PE must (RFC 4364
4.3.5; a route reflector keeps everything and does not install it). Consumers
(EVPN instances here, VRFs in the L3VPN layer) register the targets they import
with :meth:`RouteTargetImport.register`, so the speaker stays free of VRF logic.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from weftnet.core.bgp.attributes import Attributes
from weftnet.core.bgp.extcommunity import RouteTarget
from weftnet.core.bgp.family import L2VPN_EVPN, VPNV4, VPNV6, Family
from weftnet.core.bgp.rib import Path, PeerInfo

__all__ = ["route_targets", "RouteTargetImport", "chain_import", "chain_export"]

RT_FAMILIES = frozenset({L2VPN_EVPN, VPNV4, VPNV6})


def _rts(attrs: Attributes) -> frozenset[RouteTarget]:
    return frozenset(c for c in attrs.ext_communities if isinstance(c, RouteTarget))


def route_targets(attrs: Attributes) -> frozenset[RouteTarget]:
    return attrs.memo("route_targets", _rts)


class RouteTargetImport:
    """Import policy: routes of ``families`` must carry at least one registered target."""

    def __init__(self, families: Iterable[Family] = RT_FAMILIES, keep_all: bool = False):
        self.families = frozenset(families)
        self.keep_all = keep_all  # a route reflector: keep every route
        self._targets: Counter[RouteTarget] = Counter()

    def register(self, targets: Iterable[RouteTarget]) -> None:
        self._targets.update(set(targets))

    def unregister(self, targets: Iterable[RouteTarget]) -> None:
        self._targets.subtract(set(targets))
        self._targets += Counter()  # drop zero counts

    @property
    def targets(self) -> frozenset[RouteTarget]:
        return frozenset(self._targets)

    def __call__(self, peer: PeerInfo, path: Path) -> Path | None:
        if self.keep_all or path.family not in self.families:
            return path
        return path if route_targets(path.attrs) & self._targets.keys() else None


def chain_import(*policies: Callable[[PeerInfo, Path], Path | None]) -> Callable[[PeerInfo, Path], Path | None]:
    def run(peer: PeerInfo, path: Path) -> Path | None:
        for p in policies:
            path = p(peer, path)  # type: ignore[assignment]
            if path is None:
                return None
        return path
    return run


def chain_export(*policies):
    def run(peer: PeerInfo, path: Path, attrs: Attributes) -> Attributes | None:
        for p in policies:
            attrs = p(peer, path, attrs)
            if attrs is None:
                return None
        return attrs
    return run

"""One VRF: a customer's routing instance on this PE (RFC 4364 sections 3-4), sans-IO.

A VRF holds two kinds of routes per prefix:

* **local** routes (:class:`LocalRoute`): the customer's own prefixes at this
  PE's site, configured (``static``) or learned from a CE router over eBGP
  (``ce:ADDRESS``). The best local route is what the VRF exports as a VPN route.
* **imported** routes (:class:`Candidate`): VPN routes of other sites whose
  route targets this VRF's policy imports, each resolved to where a packet
  goes: a remote PE (its node ID and the label it advertised) or another
  VRF on this PE (a local import, e.g. two sites of one customer, or an
  extranet).

Selection per prefix: a local route beats an imported one (a site's own
routes stay at the site, like eBGP over iBGP); among local routes a static
one beats a CE's; among imported ones a resolved one beats an unresolved
one, then the lower ``pref`` (the BGP best-path order its caller computed),
then the lower RD and source for a fixed order. The winner is the VRF's
forwarding entry (:class:`FibEntry`), kept in a longest-prefix-match table
for the data plane.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.core.l3vpn.fib import PrefixTable
from weftnet.core.l3vpn.ids import format_rd, format_rt
from weftnet.core.l3vpn.messages import MplsChunk, MplsPacket
from weftnet.core.l3vpn.policy import VrfPolicy

__all__ = ["VrfConfig", "LocalRoute", "VpnRoute", "Candidate", "FibEntry", "Vrf", "VrfCounters", "vrf_key",
           "LOCAL", "REMOTE", "LEAK", "UNRESOLVED"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: FibEntry kinds: deliver at this site / send to a remote PE / hand to another VRF here / nowhere to send.
LOCAL, REMOTE, LEAK, UNRESOLVED = "local", "remote", "vrf", "unresolved"
LABEL_MODES = ("per-vrf", "per-prefix")


def vrf_key(name: str) -> bytes:
    """The key a VRF's TUN packets carry through the driver (never a 32-byte network ID)."""
    return b"vrf:" + name.encode()


@dataclass(frozen=True)
class VrfConfig:
    """What defines a VRF in the core: name, RD, route-target policy, label allocation."""

    name: str
    rd: bytes
    policy: VrfPolicy
    #: 0: the PE allocates one from its range; otherwise this fixed label (per-vrf mode).
    label: int = 0
    label_mode: str = "per-vrf"
    #: Most prefixes the VRF holds of its own site's, and as many imported (other PEs', leaked); more are
    #: refused and counted (a prefix limit). Counted apart, so imported routes never crowd out the site's own.
    max_routes: int = 100_000

    def __post_init__(self) -> None:
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {', '.join(LABEL_MODES)}, not {self.label_mode!r}")
        if len(self.rd) != 8:
            raise ValueError("a route distinguisher is 8 octets")


@dataclass(frozen=True, slots=True)
class LocalRoute:
    """A customer prefix at this PE's site: configured (``source="static"``) or from a CE (``"ce:ADDR"``)."""

    prefix: IPNetwork
    source: str
    nexthop: str = ""  # the CE's address; "" when the prefix is directly on ``dev``
    dev: str = ""
    pref: tuple = ()  # among several CE routes for one prefix, lower wins (BGP best-path order)
    attrs: Any = None  # the CE's path attributes, carried into the VPN route (AS path, MED, ...)


@dataclass(frozen=True, slots=True)
class VpnRoute:
    """A VPN-IPv4/IPv6 route (RFC 4364 section 4.3.4, RFC 4659): (RD, prefix), label, targets, next hop."""

    rd: bytes
    prefix: IPNetwork
    label: int
    rts: frozenset[bytes]
    nexthop: str  # the BGP next hop (the originating PE's address)
    source: str = ""  # who told us (a BGP peer), or "local" for this PE's own exports
    pref: tuple = ()
    attrs: Any = None
    #: The originating PE's node ID when known without the next-hop map (a PE peer inside the overlay).
    node: bytes | None = None
    #: Set on this PE's own exports: the VRF it came from.
    origin_vrf: str = ""

    @property
    def key(self) -> tuple[bytes, IPNetwork]:
        return self.rd, self.prefix

    def to_dict(self) -> dict:
        return {"rd": format_rd(self.rd), "prefix": str(self.prefix), "label": self.label,
                "rts": sorted(format_rt(r) for r in self.rts), "nexthop": self.nexthop, "source": self.source}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An imported VPN route as one VRF sees it: where its packets go."""

    route: VpnRoute
    kind: str  # REMOTE, LEAK or UNRESOLVED
    node: bytes | None = None  # REMOTE: the PE's node ID
    vrf: str = ""  # LEAK: the VRF on this PE that exported it
    node_id: NodeId | None = None  # REMOTE: ``node`` as a NodeId, and as text (made once per route)
    peer: str = ""

    def order(self) -> tuple:
        r = self.route
        return (self.kind == UNRESOLVED, r.pref, r.rd, r.source)


@dataclass(slots=True)
class FibEntry:
    """The forwarding decision for one prefix of one VRF."""

    kind: str
    prefix: IPNetwork
    local: LocalRoute | None = None
    candidate: Candidate | None = None
    node: bytes | None = None
    node_id: NodeId | None = None
    peer: str = ""  # REMOTE: the PE's node ID as text (the counters' key)
    label: int = 0
    header: bytes = b""  # REMOTE: the MplsPacket header to prepend
    chunk_header: bytes = b""
    vrf: str = ""  # LEAK: the exporting VRF

    def same_forwarding(self, other: "FibEntry | None") -> bool:
        if other is None:
            return False
        return (self.kind, self.node, self.label, self.vrf, self.local) == (
            other.kind, other.node, other.label, other.vrf, other.local)


@dataclass
class VrfCounters:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    #: Per remote PE (node ID hex, or "vrf:NAME" for another VRF here): [packets in, packets out].
    peers: dict[str, list[int]] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"packets_in": self.packets_in, "bytes_in": self.bytes_in, "packets_out": self.packets_out,
                "bytes_out": self.bytes_out, "drops": dict(sorted(self.drops.items())),
                "peers": {k: {"packets_in": v[0], "packets_out": v[1]} for k, v in sorted(self.peers.items())}}


class Vrf:
    """Routes, selection and the forwarding table of one VRF (the module docstring)."""

    def __init__(self, config: VrfConfig, label: int):
        self.config = config
        self.name = config.name
        self.key = vrf_key(config.name)
        self.rd = config.rd
        self.policy = config.policy
        self.label = label  # per-vrf label (also the fallback in per-prefix mode)
        self.local: dict[IPNetwork, dict[str, LocalRoute]] = {}
        self.imported: dict[IPNetwork, dict[tuple, Candidate]] = {}
        self.fib: PrefixTable[FibEntry] = PrefixTable()
        self.counters = VrfCounters()
        self.refused = 0  # routes refused by the prefix limit
        self._present: set[IPNetwork] = set()  # prefixes with a local or an imported route

    def prefixes(self) -> int:
        return len(self._present)

    def note(self, prefix: IPNetwork) -> None:
        """Keep the prefix count current after ``prefix``'s routes changed."""
        if prefix in self.local or prefix in self.imported:
            self._present.add(prefix)
        else:
            self._present.discard(prefix)

    def room_for(self, prefix: IPNetwork, local: bool = False) -> bool:
        """False if ``prefix`` is new to the VRF's site routes (``local``) or to its imported routes, and
        those are at the prefix limit. Apart, so that a PE announcing as many routes as it may cannot
        take a prefix of the VRF's own site from it (docs/security.md item 17)."""
        table = self.local if local else self.imported
        return prefix in table or len(table) < self.config.max_routes

    def best_local(self, prefix: IPNetwork) -> LocalRoute | None:
        routes = self.local.get(prefix)
        if not routes:
            return None
        return min(routes.values(), key=lambda r: (r.source != "static", r.pref, r.source))

    def best_imported(self, prefix: IPNetwork) -> Candidate | None:
        cands = self.imported.get(prefix)
        if not cands:
            return None
        return min(cands.values(), key=Candidate.order)

    def select(self, prefix: IPNetwork) -> FibEntry | None:
        """The forwarding entry ``prefix`` should have now (not yet installed)."""
        local = self.best_local(prefix)
        if local is not None:
            return FibEntry(LOCAL, prefix, local=local)
        cand = self.best_imported(prefix)
        if cand is None:
            return None
        if cand.kind == REMOTE:
            label = cand.route.label
            node_id = cand.node_id or NodeId(cand.node)
            return FibEntry(REMOTE, prefix, candidate=cand, node=cand.node, node_id=node_id,
                            peer=cand.peer or node_id.text(), label=label, header=MplsPacket.header(label),
                            chunk_header=MplsChunk.header(label))
        if cand.kind == LEAK:
            return FibEntry(LEAK, prefix, candidate=cand, vrf=cand.vrf, label=cand.route.label)
        return FibEntry(UNRESOLVED, prefix, candidate=cand)

"""Reach wire messages: the forwarding header, path probes, call-me-maybe, relay control, endpoint records.

Byte layouts: docs/wire/reach.md. The vocabulary follows Tailscale's disco
(a ping with a transaction ID, a pong that says where the ping came from, a
"call me maybe" with candidate endpoints), carried *inside* weftnet sessions
instead of beside them, so every one of them is authenticated:

* ``Forward`` (0x12) — inside a hop-by-hop session: "pass this opaque packet
  on". ``hops`` are the nodes still to cross, the last being the destination;
  ``trail`` lists the nodes crossed so far, each appended by the hop that
  authenticated it. The two lists trade entries as the packet moves, so a
  relay's output is exactly as long as its input.
* ``Probe`` (0x13) / ``ProbeReply`` (0x14) — inside the end-to-end session,
  sent on one chosen path: liveness, RTT and, in the reply, the UDP source the
  prober was seen from (its reflexive address).
* ``CallMeMaybe`` (0x15) — "I am probing you at these; probe me at mine".
* ``RelayRequest`` (0x16) / ``RelayReply`` (0x17) — register to be reachable
  through a relay (a lease), and the dial-back test of unsolicited reachability.
* ``ReachTest`` (0x0C) — in the clear: the dial-back probe itself, sent from the
  asked node's second UDP port (RFC 5780's filtering test). Never answered.
* ``EndpointRecord`` (0x0D) — the value of a node's signed endpoint record in
  the DHT (never sent as a datagram).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.wire import U8, U32, U64, Bytes, Endpoint, Fixed, Message, Optional, Rest, Seq, Struct, Text, register

__all__ = [
    "MAX_HOPS",
    "MAX_CANDIDATES",
    "MAX_RELAYS",
    "Forward",
    "Probe",
    "ProbeReply",
    "CallMeMaybe",
    "RelayRequest",
    "RelayReply",
    "ReachTest",
    "Candidate",
    "RelayRef",
    "EndpointRecord",
    "OP_REGISTER",
    "OP_UNREGISTER",
    "OP_DIALBACK",
    "NAT_UNKNOWN",
    "NAT_PUBLIC",
    "NAT_EIM",
    "NAT_EDM",
    "NAT_UDP_BLOCKED",
    "NAT_NAMES",
    "CAND_LOCAL",
    "CAND_REFLEXIVE",
]

#: Overlay nodes on one forwarded path, destination included (hops + trail).
MAX_HOPS = 4
MAX_CANDIDATES = 8
MAX_RELAYS = 4

OP_REGISTER, OP_UNREGISTER, OP_DIALBACK = 1, 2, 3

NAT_UNKNOWN, NAT_PUBLIC, NAT_EIM, NAT_EDM, NAT_UDP_BLOCKED = 0, 1, 2, 3, 4
NAT_NAMES = {
    NAT_UNKNOWN: "unknown",
    NAT_PUBLIC: "public",
    NAT_EIM: "endpoint-independent",
    NAT_EDM: "endpoint-dependent",
    NAT_UDP_BLOCKED: "udp-blocked",
}
CAND_LOCAL, CAND_REFLEXIVE = 1, 2

_NODE = Fixed(32)


@register
@dataclass(frozen=True)
class Forward(Message):
    """The forwarding header (inside a hop session). The receive path parses it by hand, same layout."""

    TYPE: ClassVar = 0x12
    hops: tuple
    trail: tuple
    packet: bytes
    FIELDS: ClassVar = (
        ("hops", Seq(_NODE, MAX_HOPS)),
        ("trail", Seq(_NODE, MAX_HOPS)),
        ("packet", Rest(min_len=1)),
    )

    def __post_init__(self) -> None:
        if not 1 <= len(self.hops) + len(self.trail) <= MAX_HOPS:
            raise ValueError(f"a forwarded path crosses 1 to {MAX_HOPS} nodes")


@register
@dataclass(frozen=True)
class Probe(Message):
    TYPE: ClassVar = 0x13
    txid: int
    padding: bytes
    FIELDS: ClassVar = (("txid", U64), ("padding", Bytes(1200)))


@register
@dataclass(frozen=True)
class ProbeReply(Message):
    """``observed``: the UDP source the probe came from; absent for a relayed or TCP path."""

    TYPE: ClassVar = 0x14
    txid: int
    observed: tuple | None
    FIELDS: ClassVar = (("txid", U64), ("observed", Optional(Endpoint)))


@register
@dataclass(frozen=True)
class CallMeMaybe(Message):
    TYPE: ClassVar = 0x15
    candidates: tuple
    FIELDS: ClassVar = (("candidates", Seq(Endpoint, MAX_CANDIDATES)),)


@register
@dataclass(frozen=True)
class RelayRequest(Message):
    """``op``: register or unregister (``lease`` seconds), or dial-back (answered by a ReachTest
    carrying ``nonce``, sent from the asked node's second port)."""

    TYPE: ClassVar = 0x16
    op: int
    lease: int
    nonce: int
    FIELDS: ClassVar = (("op", U8), ("lease", U32), ("nonce", U64))


@register
@dataclass(frozen=True)
class RelayReply(Message):
    """``observed``: the requester's UDP source as the relay sees it; ``endpoint``: the UDP endpoint
    the relay tells others to reach it at (for the requester's endpoint record)."""

    TYPE: ClassVar = 0x17
    op: int
    ok: int
    lease: int
    nonce: int
    observed: tuple | None
    endpoint: tuple | None
    reason: str
    FIELDS: ClassVar = (
        ("op", U8),
        ("ok", U8),
        ("lease", U32),
        ("nonce", U64),
        ("observed", Optional(Endpoint)),
        ("endpoint", Optional(Endpoint)),
        ("reason", Text(100)),
    )


@register
@dataclass(frozen=True)
class ReachTest(Message):
    """In the clear, from a dial-back helper to an observed address: 10 bytes, never answered."""

    TYPE: ClassVar = 0x0C
    nonce: int
    FIELDS: ClassVar = (("nonce", U64),)


@dataclass(frozen=True)
class Candidate(Message):
    kind: int  # CAND_LOCAL | CAND_REFLEXIVE
    endpoint: tuple
    FIELDS: ClassVar = (("kind", U8), ("endpoint", Endpoint))


@dataclass(frozen=True)
class RelayRef(Message):
    """A relay the node is registered with: its key (so a session can be opened) and UDP endpoint."""

    public_key: bytes
    endpoint: tuple
    FIELDS: ClassVar = (("public_key", Fixed(32)), ("endpoint", Endpoint))


@register
@dataclass(frozen=True)
class EndpointRecord(Message):
    """The value of a node's endpoint record (a signed mutable DHT record, docs/reach.md)."""

    TYPE: ClassVar = 0x0D
    nat: int
    reachable: int  # 0 unknown, 1 yes, 2 no
    candidates: tuple
    relays: tuple
    FIELDS: ClassVar = (
        ("nat", U8),
        ("reachable", U8),
        ("candidates", Seq(Struct(Candidate), MAX_CANDIDATES)),
        ("relays", Seq(Struct(RelayRef), MAX_RELAYS)),
    )

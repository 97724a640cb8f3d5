"""Path wire messages: measurement probes and a node's link advertisement (docs/wire/paths.md).

All three travel *inside* an end-to-end session, so each is authenticated
and, on a relayed or detoured path, opaque to the nodes in between:

* ``PathProbe`` (0x18) — sent on one chosen path (a link pair, a detour, an
  explicit route) to measure it: round-trip time, loss, jitter, liveness.
* ``PathProbeReply`` (0x19) — sent back on the path the probe came on, never
  larger than the probe (a prober cannot make us send more than it sent).
* ``PathAdvert`` (0x1A) — the sender's underlay links (name, UDP endpoint,
  cost, metered) and whether it forwards for its peers (transit), so the
  receiver can make a path per link pair and pick detour intermediates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.wire import U8, U16, U32, U64, Endpoint, Message, Seq, Struct, Text, register

__all__ = ["PathProbe", "PathProbeReply", "PathAdvert", "LinkInfo", "PATHS_TYPES", "MAX_LINKS",
           "FLAG_TRANSIT", "LINK_NAME_MAX"]

#: Underlay links a node may advertise.
MAX_LINKS = 8
LINK_NAME_MAX = 15
#: PathAdvert.flags: the sender forwards packets between its peers (detours, explicit routes).
FLAG_TRANSIT = 0x01


@register
@dataclass(frozen=True)
class PathProbe(Message):
    """``txid`` matches the reply; ``seq`` counts the sender's probes on this path."""

    TYPE: ClassVar = 0x18
    txid: int
    seq: int
    FIELDS: ClassVar = (("txid", U64), ("seq", U32))


@register
@dataclass(frozen=True)
class PathProbeReply(Message):
    TYPE: ClassVar = 0x19
    txid: int
    seq: int
    FIELDS: ClassVar = (("txid", U64), ("seq", U32))


@dataclass(frozen=True)
class LinkInfo(Message):
    name: str
    endpoint: tuple
    cost: int
    metered: int
    FIELDS: ClassVar = (("name", Text(LINK_NAME_MAX)), ("endpoint", Endpoint), ("cost", U16), ("metered", U8))


@register
@dataclass(frozen=True)
class PathAdvert(Message):
    TYPE: ClassVar = 0x1A
    flags: int
    links: tuple
    FIELDS: ClassVar = (("flags", U8), ("links", Seq(Struct(LinkInfo), MAX_LINKS)))


#: Payload types the paths engine handles (inside sessions).
PATHS_TYPES = frozenset((PathProbe.TYPE, PathProbeReply.TYPE, PathAdvert.TYPE))

"""Events the DHT engine reports to its driver (``Dht.next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass

from weftnet.core.contact import Addr
from weftnet.core.identity import NodeId

__all__ = ["LookupDone", "RouteResult", "Delivered", "Rejected", "Hop"]


@dataclass(frozen=True)
class LookupDone:
    """A find_node, get, put (kind "store"), bootstrap, refresh or leave finished."""

    op_id: int
    kind: str
    target: bytes
    ok: bool
    contacts: tuple  # the closest nodes that answered, nearest first
    values: tuple  # validated records (get), highest seq first
    messages: int  # requests this operation sent
    hops: int  # depth of the closest answer in the lookup graph
    duration: float
    stored: int  # STORE acknowledgements (put, leave)
    error: str | None = None
    refused: int = 0  # put, leave: STOREs a node refused (its reason is in ``error`` if none took it)
    unanswered: int = 0  # put, leave: STOREs no answer came back for, late ones included
    #: find_node: nodes named whose ID shares its first 96 bits (an overlay address) with the target
    #: but that did not answer (behind a NAT, say): the node a user looked for may be one of them.
    silent: tuple = ()


@dataclass(frozen=True)
class Hop:
    node_id: NodeId
    endpoint: Addr
    rtt: float  # from the origin's send to this hop's report arriving


@dataclass(frozen=True)
class RouteResult:
    op_id: int
    ok: bool
    hops: tuple  # Hop per reporting node (trace), or the delivering node only
    error: str | None = None
    hop_count: int = 0  # overlay hops the message took to its root


@dataclass(frozen=True)
class Delivered:
    """This node is the root for a routed key: the payload is delivered here."""

    key: bytes
    payload: bytes
    origin: NodeId
    hops: int
    #: The Ed25519 key the message names as its origin: a claim, which an application that
    #: cares checks against a signature in its payload (node.py's SignedText does).
    origin_key: bytes = b""


@dataclass(frozen=True)
class Rejected:
    reason: str
    sender: NodeId | None

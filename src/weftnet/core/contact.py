"""A contact: how to reach a node - its public key and underlay UDP endpoint.

Contacts travel inside DHT replies, so their wire form is a nested record
(``public_key:bytes[32] | endpoint``). The node ID is derived from the key,
never sent, so a peer cannot hand out a contact whose ID and key disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from weftnet.core.identity import NodeId, node_id_for
from weftnet.core.wire import Endpoint, Fixed, Message

__all__ = ["Contact", "Addr"]

#: An underlay UDP endpoint as (host, port); host is an IPv4 or IPv6 literal.
Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Contact(Message):
    public_key: bytes
    endpoint: Addr
    node_id: NodeId = field(init=False, compare=False, repr=False)

    FIELDS: ClassVar = (("public_key", Fixed(32)), ("endpoint", Endpoint))

    def __post_init__(self) -> None:
        object.__setattr__(self, "node_id", node_id_for(self.public_key))
        host, port = self.endpoint
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        object.__setattr__(self, "endpoint", (host, port))

    def __repr__(self) -> str:
        return f"Contact({self.node_id.short()}@{self.endpoint[0]}:{self.endpoint[1]})"

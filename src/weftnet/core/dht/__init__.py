"""The Kademlia DHT, key-based routing and records (docs/dht.md). Sans-IO."""

from weftnet.core.dht import events
from weftnet.core.dht.engine import Dht, DhtConfig, KbrApplication
from weftnet.core.dht.records import ImmutableRecord, MutableRecord, decode_record
from weftnet.core.dht.routing import RoutingTable
from weftnet.core.dht.store import MemoryStore, RecordStore, StoredRecord

__all__ = [
    "Dht",
    "DhtConfig",
    "KbrApplication",
    "ImmutableRecord",
    "MutableRecord",
    "decode_record",
    "RoutingTable",
    "MemoryStore",
    "RecordStore",
    "StoredRecord",
    "events",
]

"""The overlay interface: IPv6 between key-derived addresses, and local peer discovery (docs/overlay.md).

* ``messages`` — the wire messages (0x58 packet, 0x59 chunk, 0x5A LAN beacon).
* ``resolver`` — :class:`AddressCache`: overlay address -> node, bounded, with negative entries and a lookup budget.
* ``dataplane`` — :class:`OverlayDataPlane`: the per-packet checks (source proven by the session, firewall, MTU).
* ``plane`` — :class:`OverlayPlane`: the interface wired to the node's sessions and DHT.
* ``discovery`` — :class:`LanDiscovery`: signed LAN beacons that can only start a handshake.
* ``ratelimit`` — token buckets.
"""

from weftnet.core.overlay.dataplane import OverlayDataPlane
from weftnet.core.overlay.discovery import LanDiscovery
from weftnet.core.overlay.messages import OVERLAY_TYPES, LanBeacon, OverlayChunk, OverlayPacket
from weftnet.core.overlay.plane import OVERLAY_TUN, OverlayPlane
from weftnet.core.overlay.resolver import AddressCache

__all__ = ["OverlayDataPlane", "LanDiscovery", "OVERLAY_TYPES", "LanBeacon", "OverlayChunk", "OverlayPacket",
           "OVERLAY_TUN", "OverlayPlane", "AddressCache"]

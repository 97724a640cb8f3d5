"""Local peer discovery: signed LAN beacons, judged under bounds. Sans-IO.

Theory of operation (docs/overlay.md, "Discovery")
--------------------------------------------------
A node with discovery on broadcasts a :class:`LanBeacon` on the interfaces
it was told to use, every few seconds: its public key, its UDP port and the
time, signed by the key. A node hearing one connects to the key at the
beacon's *source address* and the advertised port — and that is all a beacon
can do. It never changes where an existing session or handshake goes, and
the Noise IK handshake it starts succeeds only with the holder of the key,
so a forged or replayed beacon from elsewhere costs a failed handshake and
redirects nothing. Once the session is up the peer joins the DHT with this
node (so a site needs one seed peer, or none on an isolated LAN).

:meth:`LanDiscovery.receive` decides, cheapest checks first:

1. exactly :data:`~weftnet.core.overlay.messages.BEACON_SIZE` bytes of type
   0x5A (anything else is dropped unread);
2. a per-source token bucket (1 beacon/s, burst 4; at most ``max_sources``
   sources tracked) and a global budget of signature checks (50/s), so a
   flood costs at most that many verifications per second;
3. not our own key; a timestamp within ``window`` seconds of our clock and
   newer than the last accepted beacon of that key (a replay is refused);
   at most one connection attempt per key every ``cooldown`` seconds (a key
   heard again sooner is not even verified);
4. the Ed25519 signature;
5. at most ``connect_rate`` attempts per second in all: what beacons can make
   this node send is bounded whatever is heard. Each attempt is one Hello to
   the source (smaller than the beacon, never repeated: the source may be
   spoofed) and a handshake only once that address answers with the key
   (``SecureTransport.connect(..., hello_first=True)``, docs/security.md item 17).

Keys heard are kept in a bounded table (``max_keys``, least recently heard
evicted). The caller checks it has no session or handshake with the key
already, connects, and reports the outcome with :meth:`joined` /
:meth:`failed`.
"""

from __future__ import annotations

from collections import OrderedDict

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity, NodeId
from weftnet.core.overlay.messages import BEACON_SIZE, LanBeacon
from weftnet.core.overlay.ratelimit import KeyedBuckets, TokenBucket
from weftnet.core.wire import VERSION, decode_as, encode
from weftnet.errors import DecodeError

__all__ = ["LanDiscovery"]


class LanDiscovery:
    """Makes this node's beacons and judges the beacons it hears (see the module docstring)."""

    def __init__(
        self,
        identity: Identity,
        now: float = 0.0,
        *,
        window: float = 120.0,
        source_rate: float = 1.0,
        source_burst: float = 4.0,
        verify_rate: float = 50.0,
        connect_rate: float = 2.0,
        connect_burst: float = 8.0,
        cooldown: float = 30.0,
        max_sources: int = 1024,
        max_keys: int = 1024,
        max_joining: int = 64,
    ):
        self.identity = identity
        self.window = window
        self.cooldown = cooldown
        self.max_keys = max_keys
        self.max_joining = max_joining
        self._sources = KeyedBuckets(source_rate, source_burst, max_sources)
        self._verify = TokenBucket(verify_rate, verify_rate, now)
        self._connect = TokenBucket(connect_rate, connect_burst, now)
        self._keys: OrderedDict[bytes, list] = OrderedDict()  # public key -> [last timestamp_ms, next attempt]
        self._joining: OrderedDict[NodeId, Contact] = OrderedDict()
        self.stats = dict.fromkeys(
            ("sent", "heard", "malformed", "source_limited", "verify_limited", "own", "stale", "replayed",
             "bad_signature", "cooldown", "connect_limited", "known", "connects", "joined", "failed"), 0)

    def beacon(self, port: int, now: float) -> bytes:
        """This node's beacon for UDP ``port``, stamped ``now``."""
        self.stats["sent"] += 1
        return encode(LanBeacon.create(self.identity, port, max(0, int(now * 1000))))

    def receive(self, data: bytes, source: str, now: float) -> Contact | None:
        """A datagram heard on a discovery socket from IP ``source``: the contact to connect to, or None."""
        self.stats["heard"] += 1
        if len(data) != BEACON_SIZE or data[0] != VERSION or data[1] != LanBeacon.TYPE:
            self.stats["malformed"] += 1
            return None
        if not self._sources.take(source, now):
            self.stats["source_limited"] += 1
            return None
        try:
            beacon = decode_as(LanBeacon, data)
        except DecodeError:
            self.stats["malformed"] += 1
            return None
        if beacon.public_key == self.identity.public_key:
            self.stats["own"] += 1
            return None
        if abs(beacon.timestamp_ms / 1000.0 - now) > self.window:
            self.stats["stale"] += 1
            return None
        seen = self._keys.get(beacon.public_key)
        if seen is not None and beacon.timestamp_ms <= seen[0]:
            self.stats["replayed"] += 1
            return None
        if seen is not None and now < seen[1]:  # asked for less than ``cooldown`` ago: no signature check
            self.stats["cooldown"] += 1
            return None
        if not self._verify.take(now):
            self.stats["verify_limited"] += 1
            return None
        if not beacon.verify():
            self.stats["bad_signature"] += 1
            return None
        try:
            contact = Contact(beacon.public_key, (source, beacon.port))
        except ValueError:
            self.stats["malformed"] += 1
            return None
        if seen is None:
            seen = self._keys[beacon.public_key] = [beacon.timestamp_ms, 0.0]
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            seen[0] = beacon.timestamp_ms
            self._keys.move_to_end(beacon.public_key)
        if not self._connect.take(now):
            self.stats["connect_limited"] += 1
            return None
        seen[1] = now + self.cooldown
        return contact

    # -- the caller's connection attempts ------------------------------------------
    def joining(self, contact: Contact) -> None:
        """The caller is connecting to ``contact`` because of a beacon."""
        self.stats["connects"] += 1
        self._joining[contact.node_id] = contact
        self._joining.move_to_end(contact.node_id)
        while len(self._joining) > self.max_joining:
            self._joining.popitem(last=False)

    def joined(self, node_id: NodeId) -> bool:
        """A session with ``node_id`` came up: True if a beacon started it."""
        if self._joining.pop(node_id, None) is None:
            return False
        self.stats["joined"] += 1
        return True

    def failed(self, node_id: NodeId | None) -> bool:
        """A handshake with ``node_id`` failed: True if a beacon started it (not the peer's fault,
        perhaps: a replayed beacon names a wrong address, so the caller should not count it)."""
        if node_id is None or self._joining.pop(node_id, None) is None:
            return False
        self.stats["failed"] += 1
        return True

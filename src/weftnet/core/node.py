"""NodeCore: one overlay node's whole protocol logic, sans-IO.

Theory of operation
-------------------
A node is two engines stacked, and this class is the glue between them:

* :class:`~weftnet.core.session.transport.SecureTransport` turns UDP datagrams into
  authenticated, encrypted sessions with other nodes (docs/handshake.md);
* :class:`~weftnet.core.dht.Dht` is Kademlia plus key-based routing and
  records (docs/dht.md); it speaks to *contacts* and never sees a datagram.

Datagrams come in through :meth:`receive_datagram`; the transport decrypts
them and yields ``Received`` payloads, which are decoded with the one wire
codec and handed to the DHT with the authenticated sender as a
:class:`~weftnet.core.contact.Contact`. What the DHT wants to send is
encoded and given to the transport, which opens sessions on demand (the first
message rides inside the handshake). :meth:`_pump` moves work between the two
until both are quiet, after every input.

User requests (ping, send, trace, put, get, lookup, connect, leave) return an
``op_id`` at once and complete later with an event carrying that ``op_id``.
Every request has a deadline, so each one completes exactly once, with
``ok=False`` and a reason if the network never answered.

The driver (asyncio daemon, in-process demo, simulator harness) does the I/O:
it calls :meth:`receive_datagram` / :meth:`handle_timer`, sends what
:meth:`datagrams_to_send` returns, re-arms one timer at :meth:`get_timer`,
and reads :meth:`next_event`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

from weftnet.core import wire
from weftnet.core.contact import Addr, Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MutableRecord, RecordStore
from weftnet.core.dht import events as dht_events
from weftnet.core.dht.messages import FindNear, FindNode, FindValue, Store
from weftnet.core.dht.sessionless import Sessionless
from weftnet.core.identity import Identity, NodeId, RandomSource, node_id_for, verify_signature
from weftnet.core.limits import LOOPBACK_LAB, NO_ENTRIES
from weftnet.core.l3vpn.plane import L3VPN_TYPES, L3vpnPlane
from weftnet.core.overlay import OVERLAY_TYPES, LanDiscovery, OverlayPlane
from weftnet.core.paths.config import PathsConfig
from weftnet.core.paths.engine import _ACTIVE_TYPES as _PATHS_ACTIVE_TYPES
from weftnet.core.paths.engine import Paths, describe_target
from weftnet.core.paths.messages import PATHS_TYPES
from weftnet.core.reach.engine import REACH_TYPES, Reach, ReachConfig
from weftnet.core.reach.messages import NAT_PUBLIC
from weftnet.core.reach.paths import RELAY, LinkAddr, StreamLink, Via, path_kind
from weftnet.core.reach.relay import RelayConfig
from weftnet.core.session.pmtu import PROBE_TYPE, PathMtu
from weftnet.core.session.workers import WORKER_SLOTS_TYPE, WorkerSlots
from weftnet.core.session.transport import (
    PathChanged,
    PathQuiet,
    PathsWanted,
    PongReceived,
    Received,
    SecureTransport,
    SessionDown,
    SessionUp,
    TransportConfig,
    Unreachable,
)
from weftnet.core.vpn.network import VpnSwitch
from weftnet.core.vpn.plane import VpnPlane
from weftnet.core.wire import Fixed, Message, Text, register
from weftnet.errors import DecodeError, SessionError

__all__ = [
    "NodeConfig",
    "PathMtuChanged",
    "NodeCore",
    "NodeEvent",
    "Connected",
    "PingResult",
    "SendResult",
    "TraceResult",
    "PutResult",
    "GetResult",
    "LookupResult",
    "LeaveResult",
    "TextReceived",
    "PeerUp",
    "PeerDown",
    "PathUpdate",
    "describe_path",
    "AppText",
    "SignedText",
    "LanPeer",
]

#: Type codes 0x40-0x4F are node-level application payloads carried by KBR.
TEXT_MAX = 1000
#: A ping op with no Pong after this long sends another Ping, then after twice as long, and so on
#: until its deadline (``NodeCore._retry_ping``).
_PING_RETRY = 1.0
#: A ping op sends its Ping again at once when the session leaves a path that died under it (the
#: Pings out went where nothing answers), at most this many times (``NodeCore._ping_moved``).
_PING_MOVES = 2
#: Requests whose answers are larger than the Init that could carry them.
_LARGE_REPLY = frozenset((FindNode, FindNear, FindValue))
#: What may go as a sessionless query (a STORE only where our address is proven: core/dht/sessionless.py).
_SESSIONLESS = _LARGE_REPLY | {Store}
#: User requests whose target node, met as a hint in their lookup, is the user's to reach (``_claim``).
_SOUGHT = frozenset(("ping", "send", "trace", "connect"))


@register
@dataclass(frozen=True)
class AppText(Message):
    """An unsigned short text (the first form of ``weft send``): still decoded, never shown.

    A routed message names its origin, and nothing along the route can check
    that claim, so a text without its origin's signature could put words in
    anyone's mouth. Nodes drop it and count it (``texts_unsigned``).
    """

    TYPE: ClassVar = 0x40
    text: str
    FIELDS: ClassVar = (("text", Text(TEXT_MAX)),)


_TEXT_TAG = b"weftnet-text-v1"


@register
@dataclass(frozen=True)
class SignedText(Message):
    """A short text routed to a node ID or key (``weft send``), signed by its origin.

    The signature is Ed25519 by the origin's identity over ``"weftnet-text-v1"
    || routed key (32 bytes) || text (UTF-8)``; the receiver checks it against
    the key the routed message names as its origin, so the sender a user is
    shown is proven. (A node on the route can deliver a copy again: the same
    words from the same sender to the same key, nothing new.)
    """

    TYPE: ClassVar = 0x41
    text: str
    signature: bytes
    FIELDS: ClassVar = (("text", Text(TEXT_MAX)), ("signature", Fixed(64)))

    @staticmethod
    def signing_input(key: bytes, text: str) -> bytes:
        return _TEXT_TAG + key + text.encode("utf-8")


@dataclass
class NodeConfig:
    transport: TransportConfig = field(default_factory=TransportConfig)
    dht: DhtConfig = field(default_factory=DhtConfig)
    #: A request the network never answers fails after this long.
    request_timeout: float = 15.0
    #: Lifetime given to mutable records published with ``put(..., mutable_salt=...)``.
    record_ttl: int = 24 * 3600
    #: Path MTU discovery on every session (core/session/pmtu.py): datagrams up to this many bytes
    #: of UDP payload where the path carries them; 0 turns it off (datagrams stay at max_datagram).
    pmtu_ceiling: int = 0
    #: NAT traversal (off by default in the library; the daemon turns it on) and the relay service.
    reach: ReachConfig = field(default_factory=ReachConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    #: Path measurement, detours, underlay links, traffic classes, explicit routes (docs/paths.md).
    paths: PathsConfig = field(default_factory=PathsConfig)

    @classmethod
    def lab(cls, prefixes: tuple = LOOPBACK_LAB) -> "NodeConfig":
        """For a lab of many honest nodes on one address (the demo, tests, benches on
        127.0.0.1): per-address and per-prefix limits do not apply to ``prefixes``. Said
        out loud, never implied: a real node's defaults exempt nothing."""
        return cls(transport=TransportConfig(exempt_prefixes=tuple(prefixes)),
                   dht=DhtConfig(exempt_prefixes=tuple(prefixes)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, NodeId):
        return value.text()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, Contact):
        return {"node_id": value.node_id.text(), "endpoint": f"{value.endpoint[0]}:{value.endpoint[1]}"}
    if isinstance(value, (Via, StreamLink, LinkAddr)):
        return describe_path(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
            return f"{value[0]}:{value[1]}" if ":" not in value[0] else f"[{value[0]}]:{value[1]}"
        return [_jsonable(v) for v in value]
    return value


def describe_path(target: Any) -> str:
    """A path as text: ``198.51.100.7:4500``, ``tcp 198.51.100.7:443`` or ``relay wn1…`` (node IDs of the hops)."""
    if target is None:
        return "-"
    if type(target) is Via:
        return "relay " + ",".join(NodeId(h).text() for h in target.hops)
    if type(target) is StreamLink:
        host = f"[{target.host}]" if ":" in target.host else target.host
        return f"tcp {host}:{target.port}"
    if type(target) is LinkAddr:
        return describe_target(target)
    host, port = target[0], target[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dht_endpoint(target: Any) -> Addr:
    """What the DHT may record for a peer: its UDP endpoint; a TCP link's address; nothing for a relayed peer."""
    if type(target) is StreamLink:
        return (target.host, target.port)
    if type(target) is Via or target is None:
        return ("0.0.0.0", 0)
    if type(target) is tuple and len(target) == 2:
        return target  # shared: the driver hands one tuple per endpoint
    return (target[0], target[1])


@dataclass(frozen=True)
class NodeEvent:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        d.update({f.name: _jsonable(getattr(self, f.name)) for f in fields(self)})
        return d


@dataclass(frozen=True)
class Connected(NodeEvent):
    kind: ClassVar[str] = "connected"
    op_id: int
    ok: bool
    node_id: NodeId | None = None
    error: str | None = None


@dataclass(frozen=True)
class PingResult(NodeEvent):
    kind: ClassVar[str] = "ping"
    op_id: int
    ok: bool
    node_id: NodeId | None = None
    rtt: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SendResult(NodeEvent):
    kind: ClassVar[str] = "send"
    op_id: int
    ok: bool
    delivered_to: NodeId | None = None
    hops: int = 0
    error: str | None = None


@dataclass(frozen=True)
class TraceResult(NodeEvent):
    kind: ClassVar[str] = "trace"
    op_id: int
    ok: bool
    hops: tuple = ()
    error: str | None = None


@dataclass(frozen=True)
class PutResult(NodeEvent):
    kind: ClassVar[str] = "put"
    op_id: int
    ok: bool
    key: bytes = b""
    stored_at: int = 0
    error: str | None = None
    #: Why a put failed, counted: STOREs the nodes asked refused, and STOREs never answered
    #: (each listened to for ``max_rto`` past its timeout). ``error`` says it in words.
    refused: int = 0
    unanswered: int = 0


@dataclass(frozen=True)
class GetResult(NodeEvent):
    kind: ClassVar[str] = "get"
    op_id: int
    ok: bool
    key: bytes = b""
    value: bytes | None = None
    seq: int | None = None
    error: str | None = None
    copies: int = 0  # valid copies read (a quorum get fails with fewer than asked)


@dataclass(frozen=True)
class LookupResult(NodeEvent):
    kind: ClassVar[str] = "lookup"
    op_id: int
    ok: bool
    target: NodeId | None = None
    contacts: tuple = ()
    hops: int = 0
    messages: int = 0
    error: str | None = None


@dataclass(frozen=True)
class LeaveResult(NodeEvent):
    kind: ClassVar[str] = "leave"
    op_id: int
    ok: bool
    handed_over: int = 0
    error: str | None = None


@dataclass(frozen=True)
class TextReceived(NodeEvent):
    kind: ClassVar[str] = "text"
    origin: NodeId
    text: str


@dataclass(frozen=True)
class PeerUp(NodeEvent):
    kind: ClassVar[str] = "peer_up"
    node_id: NodeId
    endpoint: Addr


@dataclass(frozen=True)
class PathMtuChanged(NodeEvent):
    """Path MTU discovery found how large a datagram reaches a peer (``link_mtu``: with IP and UDP)."""

    kind: ClassVar[str] = "path_mtu"
    node_id: NodeId
    datagram: int
    link_mtu: int


@dataclass(frozen=True)
class PathUpdate(NodeEvent):
    """The path in use to a peer changed (direct, TCP or through a relay)."""

    kind: ClassVar[str] = "path"
    node_id: NodeId
    path: str
    previous: str


@dataclass(frozen=True)
class PeerDown(NodeEvent):
    kind: ClassVar[str] = "peer_down"
    node_id: NodeId
    reason: str


@dataclass(frozen=True)
class LanPeer(NodeEvent):
    """A node found by a LAN beacon proved its key: a session is up and the DHT knows it."""

    kind: ClassVar[str] = "lan_peer"
    node_id: NodeId
    endpoint: Addr


@dataclass
class _Op:
    """A user request in flight."""

    op_id: int
    kind: str
    deadline: float
    started: float
    target: Any = None  # NodeId, IPv6Address, endpoint or key
    ping_id: int | None = None
    ping_ids: tuple = ()  # every Ping this op sent (it resends: _PING_RETRY); a Pong to any ends it
    retry_at: float | None = None
    moves: int = 0  # Pings sent again because the session left a dead path (_PING_MOVES)
    node_id: NodeId | None = None
    stage: str = ""
    payload: bytes = b""
    quorum: int = 1


#: Data-plane payload type code -> the plane whose ``on_payload`` takes it (NodeCore._sink).
_SINK_OWNER: dict[int, str] = {
    **dict.fromkeys(VpnSwitch.VPN_TYPES, "vpn"),
    **dict.fromkeys(OVERLAY_TYPES, "overlay"),
    **dict.fromkeys(L3VPN_TYPES, "l3vpn"),
    PROBE_TYPE: "pmtu",
    WORKER_SLOTS_TYPE: "slots",
}
_SINK_TYPES = frozenset(_SINK_OWNER)
_NO_SINKS: dict = {}  # shared, never written: a node's table until its first data-plane payload
#: A node's ``texts_dropped`` until it drops one (read-only, one for every node; _text_dropped copies it).
_NO_TEXTS_DROPPED = MappingProxyType({"forged": 0, "unsigned": 0})


def _reach_paths_idle(config: "NodeConfig") -> bool:
    """A new Reach and Paths would do nothing of their own with this config (no timer, nothing sent
    at a session's start): reach and relaying off; no transit, links, routes or traffic classes."""
    r, p = config.reach, config.paths
    return not r.enabled and not config.relay.enabled and not p.transit and not p.links and not p.routes \
        and not p.classes


class _BuildOnUse:
    """The transport's ``relay`` or ``policy`` until Reach and Paths are built (NodeCore.__init__):
    the first thing the transport asks of it builds both, then goes to the object Paths put there."""

    __slots__ = ("core", "hook")

    def __init__(self, core: "NodeCore", hook: str):
        self.core, self.hook = core, hook

    def __getattr__(self, name: str):
        self.core._build_reach_paths()
        return getattr(getattr(self.core.transport, self.hook), name)


class NodeCore:
    """One node: secure transport + DHT + user requests. No I/O (module docstring)."""

    # Slots: past 30 attributes an instance's dict stops sharing its keys (1.6 KB a node); "__dict__"
    # stays for attributes added later and for tests that replace a method on one instance.
    __slots__ = ("identity", "node_id", "address", "config", "_rng", "transport", "dht", "endpoint", "started",
                 "_next_op", "_ops", "_dht_ops", "_events", "tun_out", "_vpn", "_overlay", "_lan", "_l3vpn", "_pmtu",
                 "_sink_table", "worker_slots", "_probes_out", "_reach", "sessionless", "_paths", "_mutable_seq",
                 "decode_errors", "_reach_held", "texts_dropped", "internal_errors", "_first_session_at",
                 "__dict__", "__weakref__")

    #: Build Reach and Paths on first use when the config gives them nothing to do on their own
    #: (_reach_paths_idle); False: always at once (tests compare the two).
    LAZY_REACH_PATHS = True

    def __init__(
        self,
        identity: Identity,
        rng: RandomSource,
        now: float,
        config: NodeConfig | None = None,
        store: RecordStore | None = None,
        endpoint: Addr = ("0.0.0.0", 0),
    ):
        self.identity = identity
        self.node_id = identity.node_id
        self.address = identity.address
        self.config = config or NodeConfig()
        self._rng = rng
        self.transport = SecureTransport(identity, rng, now, self.config.transport)
        self.dht = Dht(Contact(identity.public_key, endpoint), rng, now, self.config.dht, store, identity)
        self.dht.has_session = self._has_session  # gets spare handshakes (dht/lookup.py)
        self.transport.keep = self._is_contact  # a full peer table keeps routing-table contacts
        self.endpoint = endpoint
        self.started = now
        self._next_op = 1
        self._ops: dict[int, _Op] = {}
        self._dht_ops: dict[int, int] = {}  # dht op id -> node op id
        self._events: list[NodeEvent] = []  # a few at a time: an empty deque is 624 bytes a node
        #: (network ID or OVERLAY_TUN or a VRF key, virtio_net_hdr or b"", IP packet) for the driver to
        #: write to that TUN: one list the VPN, overlay and L3VPN planes append to.
        self.tun_out: list[tuple[bytes, bytes, bytes]] = []
        # The VPN, overlay, LAN discovery, L3VPN and path MTU engines are built on first use
        # (the properties below): a node that never joins a network, never carries overlay
        # traffic, never hears a beacon and never probes a path carries none of their tables
        # (about 12 KB a node; bench/results/dht.md). Their behaviour once built is unchanged:
        # each is built with the node's start time, as it was when every node built them all.
        self._vpn: VpnPlane | None = None
        self._overlay: OverlayPlane | None = None
        self._lan: LanDiscovery | None = None
        self._l3vpn: L3vpnPlane | None = None
        self._pmtu: PathMtu | None = None
        # Data-plane payloads skip the event queue: the transport hands them to their plane by type
        # code (``_sink``). The table of handlers is filled per plane when its first payload comes.
        self._sink_table: dict[int, Any] = _NO_SINKS
        #: Peers that run several data-plane workers: node ID -> their worker slots (WorkerSlots, docs/dataplane.md).
        self.worker_slots: dict[bytes, int] = NO_ENTRIES  # a dict from the first WorkerSlots (_on_worker_slots)
        self._probes_out: list[tuple[bytes, Addr]] = []
        self.transport.sink = self._sink
        self.transport.sink_types = _SINK_TYPES  # the same set for every node: one object
        # Reach and Paths: at once, or, when the config gives them nothing to do on their own (reach
        # and relaying off, no transit, links, routes or traffic classes: a DHT node), on first use
        # (_build_reach_paths), about 3.5 KB a node that never needs them. Their constructors set
        # the transport's hooks (Reach its relay, clear-text handler and path policy; Paths wraps
        # the relay and the policy and sets the steering hook); until then the hooks below build
        # both, in that order, at their first call, so a node that builds them late has the hooks
        # a node that built them at once has.
        self._reach: Reach | None = None
        self._paths: Paths | None = None
        self._first_session_at: float | None = None  # (Reach notes the first session: told when built)
        lazy = self.LAZY_REACH_PATHS and _reach_paths_idle(self.config)
        if not lazy:
            self._new_reach(now)
        self.transport.find_contact = self.dht.contact_for
        #: Lookup requests to nodes without a session, without a handshake (core/dht/sessionless.py).
        self.sessionless: Sessionless | None = None
        if self.config.dht.sessionless:
            self.sessionless = Sessionless(identity, rng, now, self.transport, self.dht, fallback=self._over_session)
            self.sessionless.may_store = self._public
            self.transport.on_query = self.sessionless.on_datagram
            self.transport.on_query_cookie = self._on_query_cookie
        if not lazy:
            self._new_paths(now)
        else:
            t = self.transport
            t.on_clear = self._clear_before_reach
            t.relay = _BuildOnUse(self, "relay")
            t.policy = _BuildOnUse(self, "policy")
            t.steer = self._steer_before_paths if self.config.paths.enabled else None
        if (sl := self.sessionless) is not None:  # a relay's next hops: met over sessions, or sessionless
            sl.forwards = self._forwards
            self.transport.find_contact = self._find_contact
        self._mutable_seq = 0
        self.decode_errors = 0
        # Written by few nodes: a read-only shared table until the first write (64 and 184 bytes a node).
        self._reach_held: dict[NodeId, list] = NO_ENTRIES  # reach and paths early data from half-open peers
        self.texts_dropped = _NO_TEXTS_DROPPED  # routed texts whose origin is not proven (_text_dropped)
        #: Messages an engine failed on (a bug, counted and skipped: one bad message must
        #: not cost the rest of a receive batch; the fuzzer hunts these down).
        self.internal_errors = 0

    def _text_dropped(self, why: str) -> None:
        td = self.texts_dropped
        if td is _NO_TEXTS_DROPPED:
            td = self.texts_dropped = dict(td)
        td[why] += 1

    # -- engines built on first use (see __init__) ------------------------------------
    def _new_reach(self, now: float) -> Reach:
        r = self._reach = Reach(self.identity, self.transport, self.dht, self._rng, now, self.config.reach,
                                self.config.relay, self._events.append)
        r.urgent = self._vpn_member
        return r

    def _new_paths(self, now: float) -> Paths:
        p = self._paths = Paths(self.identity, self.transport, self.dht, self._rng, now, self.config.paths,
                                self._events.append, self._network_name)
        return p

    def _build_reach_paths(self) -> None:
        """Reach, then Paths (Paths wraps the relay and the policy Reach set), with the node's start
        time, as built at once."""
        if self._reach is None:
            r = self._new_reach(self.started)
            if self._first_session_at is not None:  # what its on_session_up would have noted
                r._first_session = r._own_at = self._first_session_at
        if self._paths is None:
            self._new_paths(self.started)

    @property
    def reach(self) -> Reach:
        if self._reach is None:
            self._build_reach_paths()
        return self._reach

    @property
    def paths(self) -> Paths:
        if self._paths is None:
            self._build_reach_paths()
        return self._paths

    def _clear_before_reach(self, data: bytes, addr: Addr, now: float) -> None:
        self.reach.on_clear(data, addr, now)  # (Reach's constructor makes itself the handler)

    def _steer_before_paths(self, node_id: NodeId, payload: bytes, now: float):
        # Paths.steer notes nothing and steers nothing but active traffic (its first test): a DHT
        # node's payloads build nothing.
        if len(payload) < 2 or payload[1] not in _PATHS_ACTIVE_TYPES:
            return None
        return self.paths.steer(node_id, payload, now)

    def _new_engine(self, name: str) -> Any:
        """A new engine ``name`` (vpn, overlay, lan, l3vpn, pmtu), as the node builds it on first use
        (the vpn property then sets its hooks) and as ``status()`` reads one never built."""
        if name == "vpn":
            return VpnPlane(self.transport, self.dht, self._vpn_event)
        if name == "overlay":
            return OverlayPlane(self.identity, self.transport, self.dht, self.tun_out, self.started)
        if name == "lan":
            return LanDiscovery(self.identity, self.started)
        if name == "l3vpn":
            return L3vpnPlane(self._send_to_node, self.tun_out)
        mtu = self.config.transport.max_datagram
        return PathMtu(mtu, max(self.config.pmtu_ceiling, mtu))

    @property
    def vpn(self) -> VpnPlane:
        v = self._vpn
        if v is None:
            v = self._vpn = self._new_engine("vpn")
            v.tun_out = self.tun_out
            v.locate_fallback = self.reach.locate  # a member without UDP: its ID record (docs/reach.md)
            v.reach_node = self.reach.reach_node  # a member named but silent: its endpoint record
        return v

    @property
    def overlay(self) -> OverlayPlane:
        o = self._overlay
        if o is None:
            o = self._overlay = self._new_engine("overlay")
            if self.config.reach.enabled:
                o.reach_node = self.reach.reach_node  # a node named but silent: its own record's paths
        return o

    @property
    def lan(self) -> LanDiscovery:
        d = self._lan
        if d is None:
            d = self._lan = self._new_engine("lan")
        return d

    @property
    def l3vpn(self) -> L3vpnPlane:
        p = self._l3vpn
        if p is None:
            p = self._l3vpn = self._new_engine("l3vpn")
        return p

    @property
    def pmtu(self) -> PathMtu:
        p = self._pmtu
        if p is None:
            p = self._pmtu = self._new_engine("pmtu")
        return p

    @property
    def _sinks(self) -> dict[int, Any]:
        """Every data-plane type code -> its handler (builds every plane; a harness may replace one)."""
        for code in _SINK_OWNER:
            if code not in self._sink_table:
                self._make_sink(code)
        return self._sink_table

    def _make_sink(self, code: int) -> Any:
        """The handler of payload type ``code``, entered in the sink table with its plane's other codes."""
        owner = _SINK_OWNER[code]
        if owner == "pmtu":
            f = self._on_path_probe
        elif owner == "slots":
            f = self._on_worker_slots
        else:
            f = getattr(self, owner).on_payload
        if self._sink_table is _NO_SINKS:
            self._sink_table = {}
        for c, o in _SINK_OWNER.items():
            if o == owner:
                self._sink_table.setdefault(c, f)
        return self._sink_table[code]

    def _send_to_node(self, node_id: NodeId, payloads: tuple[bytes, ...], now: float) -> None:
        self.vpn.send_to_node(node_id, payloads, now)  # the L3VPN plane sends through the VPN plane

    def _on_query_cookie(self, m: Any, now: float) -> bool:
        return self.sessionless.on_cookie(m.receiver_index, m.nonce, m.encrypted_cookie, now)

    def _forwards(self) -> bool:
        if self._reach is None:
            return False  # (built on first use only where relaying and transit are off)
        return self.reach.relay is not None or self.paths.transit.enabled

    def _find_contact(self, nid: NodeId) -> Contact | None:
        return self.dht.contact_for(nid) or self.sessionless.proven_contact(nid)

    def _hold_reach(self, node_id: NodeId, payload: bytes, endpoint: Any) -> None:
        """Keep a reach or paths message from a half-open peer until its SessionUp (bounded, oldest out)."""
        held = self._reach_held
        if held is NO_ENTRIES:
            held = self._reach_held = {}
        if node_id not in held and len(held) >= 256:
            del held[next(iter(held))]
        q = held.setdefault(node_id, [])
        if len(q) < 4:
            q.append((payload, endpoint))

    def _vpn_member(self, node_id: NodeId) -> bool:
        if self._vpn is None:
            return False
        raw = node_id.raw
        return any(raw in net._members for net in self._vpn.switch.networks.values())

    def _network_name(self, network_id: bytes) -> str | None:
        if self._vpn is None:
            return None
        net = self._vpn.switch.networks.get(network_id)
        return None if net is None else net.descriptor.name

    def _public(self, now: float) -> bool:
        """Not behind a NAT, as far as reach can tell. A node behind one keeps its STOREs on sessions:
        reach learns the NAT's mapping from the peers it has sessions with (core/reach/nat.py)."""
        return not self.config.reach.enabled or self.reach.nat.classify(now) == NAT_PUBLIC

    def _over_session(self, contact: Contact, msg: Any, now: float, source: int | None = None,
                      direct: bool = True) -> None:
        """A sessionless query went unanswered, or its answer could not carry the reply (a large
        record): ask again over a session (core/dht/sessionless.py). ``source``: the node whose reply
        named the contact (a hint), None if first-hand. Not ``direct``: the query went to a hint, and
        neither its address's bucket nor its source's credit would pay for a second datagram there
        (docs/security.md, item 6), so nothing more goes there; the node is sought on the paths its
        own signed record names, as reach does for a node no lookup named, and the request is left to
        time out. Either way, to a hint, the Inits its record earns are the source's to pay (item 19)."""
        if source is not None:
            self._claim(contact.node_id, source, now)
        if not direct:
            self.reach.reach_node(contact.public_key, now, source)
            return
        self.transport.send(contact, wire.encode(msg), now, unverified=source is not None,
                            large_reply=source is None)

    def _claim(self, node_id: NodeId, source: int, now: float) -> None:
        """A DHT request goes to ``node_id`` at an endpoint a reply from ``source`` named (a hint): what
        its endpoint record earns is that source's to pay (``Reach.claim``), unless our user asked for
        this very node (a ping or a send to its address, looked up): then it is the user's request."""
        r = self._reach
        if r is None:  # (unbuilt: reach is off, nothing to claim)
            return
        for op in self._ops.values():
            if op.kind in _SOUGHT and self._matches(op, node_id):
                r.want(node_id, now)
                return
        r.claim(node_id, source, now)

    def _has_session(self, contact: Contact) -> bool:
        return self.transport.has_session(contact.node_id)

    def _is_contact(self, node_id: NodeId) -> bool:
        return node_id.int in self.dht.table

    def _sink(self, node_id: NodeId, payload: bytes, now: float) -> None:
        try:
            f = self._sink_table[payload[1]]
        except KeyError:
            f = self._make_sink(payload[1])
        f(node_id, payload, now)

    def _on_worker_slots(self, node_id: NodeId, payload: bytes, now: float) -> None:
        try:
            slots = wire.decode_as(WorkerSlots, payload).slots
        except DecodeError:
            return
        if 2 <= slots <= 16 and (node_id.raw in self.worker_slots or len(self.worker_slots) < 4096):
            if self.worker_slots is NO_ENTRIES:
                self.worker_slots = {}
            self.worker_slots[node_id.raw] = slots

    def _on_path_probe(self, node_id: NodeId, payload: bytes, now: float) -> None:
        ack = self.pmtu.on_payload(node_id, payload, now)
        if ack is not None:
            self.transport.send_to(node_id, ack, now)

    def probes_to_send(self) -> list[tuple[bytes, Addr]]:
        """Path MTU probes, sealed: the driver sends each with don't-fragment set (pmtu.py)."""
        out = self._probes_out
        if out:  # (none, the common case: no list made per pass)
            self._probes_out = []
        return out

    # -- driver surface -------------------------------------------------------
    def set_local_endpoint(self, endpoint: Addr) -> None:
        self.endpoint = endpoint
        self.dht.set_local_contact(Contact(self.identity.public_key, endpoint))

    def set_local_endpoints(self, endpoints: list[Addr], now: float) -> None:
        """Every endpoint this node's socket can be reached at locally (its interface addresses)."""
        self.reach.set_local_endpoints(endpoints, now)
        self._pump(now)

    def link_down(self, link: StreamLink, now: float) -> None:
        """The runtime lost a TCP link (docs/reach.md): sessions over it end."""
        self.transport.link_down(link, now)
        self._pump(now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.receive_datagrams([(data, addr)], now)

    def receive_datagrams(self, datagrams: list[tuple[bytes, Addr]], now: float) -> None:
        """A batch of datagrams that arrived together (one pass of the engines afterwards).

        A failure inside an engine is counted in ``internal_errors``, and the
        engines still run over what did arrive: the node goes on."""
        try:
            self.transport.receive_datagrams(datagrams, now)
        except Exception:  # noqa: BLE001 - a bug must not stop the node (docs/security.md, item 14)
            self.internal_errors += 1
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        # Only the engines that are due: a transport sweep is O(peers).
        t = self.transport.get_timer()
        if t is not None and t <= now:
            self.transport.handle_timer(now)
        t = self.dht.get_timer()
        if t is not None and t <= now:
            self.dht.handle_timer(now)
        for engine in (self._vpn, self._overlay, self._pmtu):  # those built (see __init__)
            if engine is not None and (t := engine.get_timer()) is not None and t <= now:
                engine.handle_timer(now)
        if self._reach is not None:  # (unbuilt, they have no timer: see __init__)
            t = self._reach.get_timer()
            if t is not None and t <= now:
                self._reach.handle_timer(now)
            t = self._paths.get_timer()
            if t is not None and t <= now:
                self._paths.handle_timer(now)
        if self.sessionless is not None and (t := self.sessionless.get_timer()) is not None and t <= now:
            self.sessionless.handle_timer(now)
        for op in sorted(self._ops.values(), key=lambda o: o.op_id):
            if op.deadline <= now:
                self._fail(op, "timed out: no answer from the overlay")
            elif op.retry_at is not None and op.retry_at <= now:
                self._retry_ping(op, now)
        self._pump(now)

    def get_timer(self) -> float | None:
        # Drivers ask after every batch of packets: no lists built on the way (docs/dataplane.md, "Latency").
        # The planes that are off are skipped, not asked (no tuple of their answers built per call).
        # Each plane written out, not a loop over a tuple of them: about 0.6 µs a call less.
        best = self.transport.get_timer()
        t = self.dht.get_timer()
        if t is not None and (best is None or t < best):
            best = t
        sub = self._vpn
        if sub is not None and (t := sub.get_timer()) is not None and (best is None or t < best):
            best = t
        sub = self._overlay
        if sub is not None and (t := sub.get_timer()) is not None and (best is None or t < best):
            best = t
        sub = self._reach
        if sub is not None and (t := sub.get_timer()) is not None and (best is None or t < best):
            best = t
        sub = self._pmtu
        if sub is not None and (t := sub.get_timer()) is not None and (best is None or t < best):
            best = t
        sub = self._paths
        if sub is not None and (t := sub.get_timer()) is not None and (best is None or t < best):
            best = t
        sub = self.sessionless
        if sub is not None and (t := sub.get_timer()) is not None and (best is None or t < best):
            best = t
        if self._ops:
            for op in self._ops.values():
                if best is None or op.deadline < best:
                    best = op.deadline
                if op.retry_at is not None and op.retry_at < best:
                    best = op.retry_at
        return best

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        return self.transport.datagrams_to_send(now)

    def next_event(self) -> NodeEvent | None:
        return self._events.pop(0) if self._events else None

    # -- requests ----------------------------------------------------------
    def connect(self, endpoint: Addr, now: float, node_id: NodeId | None = None, *, join: bool = False) -> int:
        """Open a session to an endpoint and join the overlay through it.

        The join (a lookup of our own ID through that peer, docs/dht.md) always
        starts once the session is up; ``join=True`` completes the request only
        when that lookup has ended, i.e. when this node is in its neighbours'
        tables and can put and get (the farther buckets are filled after, in
        the background: ``join_fill``)."""
        op = self._new_op("connect", now, endpoint)
        op.node_id = node_id
        op.stage = "join" if join else ""
        self.transport.connect(endpoint, now)
        self._pump(now)
        return op.op_id

    def bootstrap(self, contacts: list[Contact], now: float) -> None:
        """Rejoin from known contacts (e.g. a persisted routing table)."""
        if contacts:
            self.dht.bootstrap(contacts, now)
            self._pump(now)

    def ping(self, target: NodeId | ipaddress.IPv6Address, now: float) -> int:
        op = self._new_op("ping", now, target)
        node_id = self._resolve_local(target)
        if node_id is not None:
            self.reach.want(node_id, now)
            self._start_ping(op, node_id, now)
        else:
            self._find(op, target, now)
        self._pump(now)
        return op.op_id

    def send_text(self, target: NodeId | bytes, text: str, now: float) -> int:
        op = self._new_op("send", now, target)
        if isinstance(target, NodeId):
            self.reach.want(target, now)
        key = target.raw if isinstance(target, NodeId) else bytes(target)
        sig = self.identity.sign(SignedText.signing_input(key, text))
        op.payload = wire.encode(SignedText(text, sig))
        self._dht_ops[self.dht.route(key, op.payload, now)] = op.op_id
        self._pump(now)
        return op.op_id

    def trace(self, target: NodeId | ipaddress.IPv6Address, now: float) -> int:
        op = self._new_op("trace", now, target)
        node_id = self._resolve_local(target)
        if node_id is None:
            self._find(op, target, now)  # an overlay address: find its node first
        else:
            op.target = node_id
            self._dht_ops[self.dht.route(node_id.raw, b"", now, trace=True)] = op.op_id
        self._pump(now)
        return op.op_id

    def put(self, value: bytes, now: float, *, mutable_salt: bytes | None = None) -> int:
        op = self._new_op("put", now, None)
        if mutable_salt is None:
            record = ImmutableRecord(value)
        else:
            self._mutable_seq = max(self._mutable_seq + 1, int(now * 1000))
            record = MutableRecord.create(
                self.identity, mutable_salt, self._mutable_seq, self.config.record_ttl, value
            )
        op.target = record.key
        self._dht_ops[self.dht.put(record, now)] = op.op_id
        self._pump(now)
        return op.op_id

    def get(self, key: bytes, now: float, quorum: int | None = None) -> int:
        """Read a record; ``quorum`` None is the safe read (mutable records: the highest
        seq of several holders, docs/dht.md)."""
        op = self._new_op("get", now, key)
        op.quorum = quorum or 1  # an explicit quorum is enforced; the safe read takes what it finds
        self._dht_ops[self.dht.get(key, now, quorum=quorum)] = op.op_id
        self._pump(now)
        return op.op_id

    def lookup(self, target: NodeId, now: float) -> int:
        op = self._new_op("lookup", now, target)
        self._dht_ops[self.dht.find_node(target, now)] = op.op_id
        self._pump(now)
        return op.op_id

    def leave(self, now: float) -> int:
        op = self._new_op("leave", now, None)
        self._dht_ops[self.dht.leave(now)] = op.op_id
        self._pump(now)
        return op.op_id

    def vpn_outbound(self, network_id: bytes, packets: list[bytes], now: float) -> None:
        """IP packets read from the TUN of a private network (docs/vpn.md)."""
        v = self._vpn
        (self.vpn if v is None else v).outbound(network_id, packets, now)  # (built: no property call)
        self._pump(now)

    def overlay_outbound(self, packets: list[bytes], now: float) -> None:
        """IPv6 packets read from the overlay interface (docs/overlay.md)."""
        self.overlay.outbound(packets, now)
        self._pump(now)

    def lan_beacon(self, port: int, now: float) -> bytes:
        """This node's signed LAN beacon, for the driver to broadcast (docs/overlay.md, "Discovery")."""
        return self.lan.beacon(port, now)

    def lan_received(self, data: bytes, source: str, now: float) -> None:
        """A datagram heard on a discovery socket from IP ``source``; a valid beacon of a new key
        starts a handshake to it (never moves an existing session or handshake)."""
        contact = self.lan.receive(data, source, now)
        if contact is None:
            return
        nid = contact.node_id
        if self.transport.has_session(nid) or self.transport.handshaking(nid):
            self.lan.stats["known"] += 1
            return
        self.lan.joining(contact)
        # The beacon's source may be spoofed: one Hello there first, the handshake once it answers with the key.
        self.transport.connect(contact.endpoint, now, contact.public_key, hello_first=True)
        self._pump(now)

    def l3vpn_outbound(self, vrf_key: bytes, packets: list[bytes], now: float) -> None:
        """IP packets read from a VRF's TUN (docs/l3vpn.md)."""
        self.l3vpn.outbound(vrf_key, packets, now)
        self._pump(now)

    def vpn_publish(self, now: float) -> int:
        """Publish our directory (and held revocation) records in the DHT; returns how many."""
        n = self.vpn.publish(now)
        self._pump(now)
        return n

    def vpn_check_revocations(self, now: float) -> None:
        """Look for newer revocation lists of our networks in the DHT."""
        self.vpn.check_revocations(now)
        self._pump(now)

    # -- introspection -------------------------------------------------------
    def peers(self, now: float) -> list[dict[str, Any]]:
        out = []
        for p in self.transport.peers(now):
            d = {f.name: _jsonable(getattr(p, f.name)) for f in fields(p)}
            d["address"] = str(p.node_id.address())
            kind = path_kind(p.endpoint)
            d["path"] = kind
            d["via"] = [NodeId(h).text() for h in p.endpoint.hops] if kind == RELAY else []
            rows = self.paths.path_rows(p.node_id, self.transport.path_table(p.node_id, now), now)
            d["paths"] = [{**{k: v for k, v in row.items() if k != "target"}, "target": describe_path(row["target"])}
                          for row in rows]
            out.append(d)
        return out

    def status(self, now: float) -> dict[str, Any]:
        return {
            "node_id": self.node_id.text(),
            "address": str(self.address),
            "public_key": self.identity.public_key.hex(),
            "endpoint": _jsonable(self.endpoint),
            "uptime": round(now - self.started, 3),
            "sessions": self.peers(now),
            "transport": dict(self.transport.stats),
            "dht": self.dht.summary(),
            "sessionless": self.sessionless.summary() if self.sessionless is not None else None,
            "requests_in_flight": len(self._ops),
            "texts_dropped": dict(self.texts_dropped),
            "internal_errors": self.internal_errors,
            # An engine never built reports what a new one would, without being kept (see __init__).
            "networks": self._idle("vpn").status(),
            "vpn": dict(self._idle("vpn").stats),
            "overlay": self._idle("overlay").status(),
            "discovery": dict(self._idle("lan").stats),
            "l3vpn": self._idle("l3vpn").status(),
            "reach": self.reach.status(now),
            "paths": self.paths.status(now),
        }

    # -- internals -----------------------------------------------------------
    def _idle(self, name: str) -> Any:
        """The engine ``name`` if built, else a new one that is not kept (for reading its status):
        building one has no effect on anything else (the vpn property's hooks are not set here)."""
        engine = getattr(self, "_" + name)
        return engine if engine is not None else self._new_engine(name)

    def _new_op(self, kind: str, now: float, target: Any) -> _Op:
        op = _Op(self._next_op, kind, now + self.config.request_timeout, now, target)
        self._next_op += 1
        self._ops[op.op_id] = op
        return op

    def _resolve_local(self, target: NodeId | ipaddress.IPv6Address) -> NodeId | None:
        if isinstance(target, NodeId):
            return target
        for p in self.transport.peers():
            if p.node_id.address() == target:
                return p.node_id
        for c in self.dht.export_contacts():
            if c.node_id.address() == target:
                return c.node_id
        return None

    def _find(self, op: _Op, target: NodeId | ipaddress.IPv6Address, now: float) -> None:
        """Look a node up in the DHT (an overlay address names the ID's first 96 bits)."""
        if isinstance(target, ipaddress.IPv6Address):
            key = NodeId(target.packed[4:] + bytes(20))
        else:
            key = target
        op.stage = "lookup"
        self._dht_ops[self.dht.find_node(key, now)] = op.op_id

    def _matches(self, op: _Op, node_id: NodeId) -> bool:
        t = op.target
        return node_id == t if isinstance(t, NodeId) else node_id.address() == t

    def _start_ping(self, op: _Op, node_id: NodeId, now: float, contact: Contact | None = None) -> None:
        op.node_id = node_id
        op.stage = "ping"
        try:
            op.ping_id = self.transport.ping(node_id, now)
            op.ping_ids += (op.ping_id,)
            op.retry_at = now + _PING_RETRY
        except SessionError:
            if contact is None:
                contact = self.dht.contact_for(node_id)
            if contact is None:
                self._find(op, node_id, now)
                return
            op.stage = "connect"
            self.transport.connect(contact.endpoint, now, contact.public_key)

    def _retry_ping(self, op: _Op, now: float) -> None:
        """No Pong yet: one lost packet must not fail the ping, so it sends another Ping within
        its deadline, 1 s after the first and then twice as long each time (1, 3, 7 s in). Only
        over a session: without one the transport queues the Ping and retries its own handshake."""
        op.retry_at = None
        if op.kind != "ping" or op.stage != "ping" or op.node_id is None:
            return
        op.retry_at = now + _PING_RETRY * 2 ** (len(op.ping_ids) - op.moves)  # (its own resends only)
        if not self.transport.has_session(op.node_id):
            return
        try:
            op.ping_id = self.transport.ping(op.node_id, now)
        except SessionError:
            return
        op.ping_ids += (op.ping_id,)

    def _ping_moved(self, node_id: NodeId, previous, now: float) -> None:
        """The session to ``node_id`` left ``previous`` because it died (reach's heartbeat found it
        silent): a ping of our user's still waiting sent its Pings there, where nothing answers.
        Send one again now on the new path, not at the next retry (1, 3, 7 s in). Only our user's
        pings (never DHT or liveness traffic), only when the old path is dead (a change between
        working paths loses nothing), at most _PING_MOVES times per ping; over the session, on
        the path the transport chose, as every Ping goes."""
        p = self.transport.path(node_id, previous) if previous is not None else None
        if p is None or not p.dead:
            return
        for op in list(self._ops.values()):
            if op.kind == "ping" and op.stage == "ping" and op.node_id == node_id and op.moves < _PING_MOVES:
                try:
                    op.ping_id = self.transport.ping(node_id, now)
                except SessionError:
                    return
                op.moves += 1
                op.ping_ids += (op.ping_id,)

    def _send_over_session(self, op: _Op, now: float, contact: Contact | None = None) -> None:
        """Route a send's text to its target as the first hop, over the session that came up with it."""
        if contact is None:
            pk = self.transport.public_key_of(op.target)
            ep = self.transport.endpoint_of(op.target)
            if pk is None or ep is None:
                self._fail(op, "no node with that ID is in the overlay")
                return
            contact = Contact(pk, _dht_endpoint(ep))
        op.stage = "routed"
        self._dht_ops[self.dht.route(op.target.raw, op.payload, now, first_hop=contact)] = op.op_id

    def _located(self, op: _Op, ev: Any, now: float) -> None:
        """A ping's read of the ID record of a node no lookup named: its public key, then its endpoint record."""
        pk = next((r.value for r in ev.values if isinstance(r, ImmutableRecord) and len(r.value) == 32
                   and node_id_for(r.value) == op.target), None)
        if pk is None:
            self._fail(op, "no node with that ID or address was found in the overlay")
            return
        op.node_id = op.target
        if self.transport.has_session(op.target):
            # The session came up while the record was read (reach's own read of its endpoint
            # record, or the node reached us): its SessionUp went by in the "locate" stage, and
            # reach_node starts nothing for a node we have a session with, so nothing would end
            # the wait but the deadline (nat-mix seed 1: a full-cone -> udp-blocked ping).
            if op.kind == "ping":
                self._start_ping(op, op.target, now)
            else:
                self._send_over_session(op, now)
            return
        op.stage = "connect"  # its SessionUp ends the wait, or its handshake's end
        self.reach.reach_node(pk, now)

    def _complete(self, op: _Op, event: NodeEvent) -> None:
        if self._ops.pop(op.op_id, None) is not None:
            for dht_op, node_op in list(self._dht_ops.items()):
                if node_op == op.op_id:
                    del self._dht_ops[dht_op]
            if not self._ops:  # a dict keeps the table it grew to until cleared
                self._ops.clear()
            if not self._dht_ops:
                self._dht_ops.clear()
            self._events.append(event)

    def _fail(self, op: _Op, error: str) -> None:
        cls = {
            "connect": Connected,
            "ping": PingResult,
            "send": SendResult,
            "trace": TraceResult,
            "put": PutResult,
            "get": GetResult,
            "lookup": LookupResult,
            "leave": LeaveResult,
        }[op.kind]
        self._complete(op, cls(op_id=op.op_id, ok=False, error=error))

    def _pump(self, now: float) -> None:
        t, d, pm = self.transport, self.dht, self._pmtu
        if not (t._events or d._out or d._events or t.pmtu_wanted or (pm is not None and (pm._out or pm._events))):
            return  # the common case after a data packet: nothing queued (no calls, docs/dataplane.md "Latency")
        for _ in range(10_000):  # bounded: a bug must not become a hang
            busy = False
            while (ev := self.transport.next_event()) is not None:
                busy = True
                self._on_transport_event(ev, now)
            for contact, msg in self.dht.messages_to_send():
                busy = True
                try:
                    payload = wire.encode(msg)
                except ValueError:
                    self.internal_errors += 1
                    continue
                hint = self.dht.hint_source(contact)
                # A lookup request to a node we have no session with, at a UDP endpoint: one
                # sessionless query, no handshake (to a hint: no larger than its cost, docs/security.md).
                if (sl := self.sessionless) is not None and type(msg) in _SESSIONLESS \
                        and type(contact.endpoint) is tuple and contact.endpoint[1] \
                        and self.transport.idle(contact.node_id) and sl.ask(contact, msg, now, hint, payload):
                    continue
                # A first request whose answer is large pads its Init, so the answer fits in
                # what a responder may send before we prove our address (not for hints:
                # what those cost is paid by their source, docs/dht.md).
                if hint is not None:
                    self._claim(contact.node_id, hint, now)
                self.transport.send(contact, payload, now, unverified=hint is not None,
                                    large_reply=hint is None and type(msg) in _LARGE_REPLY)
            while (dev := self.dht.next_event()) is not None:
                busy = True
                self._on_dht_event(dev, now)
            if self.transport.pmtu_wanted:
                self._pmtu_for(self.transport.pmtu_wanted, now)
                self.transport.pmtu_wanted = ()
            if (pm := self._pmtu) is not None and (pm._out or pm._events):
                self._pump_pmtu(now)
            if not busy:
                return

    def _vpn_event(self, ev: Any) -> None:
        self._events.append(ev)
        if getattr(ev, "kind", None) == "vpn_member" and ev.change == "added":
            self.transport.want_pmtu(ev.node_id)  # a member's path sets its network's TUN MTU

    def _pmtu_for(self, node_ids: list[NodeId], now: float) -> None:
        """Start a path MTU search to each of these peers that has a session and none yet (pmtu.py)."""
        if self.config.pmtu_ceiling <= self.config.transport.max_datagram:
            return
        for node_id in node_ids:
            if self.pmtu.tracking(node_id):
                continue
            endpoint = self.transport.endpoint_of(node_id)
            if type(endpoint) is tuple and self.transport.has_session(node_id):  # a direct UDP path
                self.pmtu.start(node_id, 6 if ":" in endpoint[0] else 4, now)

    def _pump_pmtu(self, now: float) -> None:
        for node_id, payload in self.pmtu.probes_to_send():
            sealed = self.transport.seal(node_id, payload, now)
            if sealed is not None:
                self._probes_out.append(sealed)
        while (ev := self.pmtu.next_event()) is not None:
            self.transport.set_max_datagram(ev.node_id, ev.datagram)
            self._events.append(PathMtuChanged(ev.node_id, ev.datagram, ev.link_mtu))

    def _on_transport_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, Received):
            payload = ev.payload
            if len(payload) >= 2 and payload[1] in REACH_TYPES:
                if ev.verified:
                    self.reach.on_message(ev.node_id, payload, ev.endpoint, now)
                else:
                    # Early data from a half-open peer (a relay request, a probe): nothing is
                    # granted or answered on another path before it proves its address.
                    self._hold_reach(ev.node_id, payload, ev.endpoint)
                return
            if len(payload) >= 2 and payload[1] in PATHS_TYPES:
                if ev.verified:
                    self.paths.on_message(ev.node_id, payload, ev.endpoint, now)
                else:
                    self._hold_reach(ev.node_id, payload, ev.endpoint)  # as reach's: until its SessionUp
                return
            if len(payload) >= 2 and payload[1] in _SINK_OWNER and payload[0] == wire.VERSION:
                self._sink(ev.node_id, payload, now)  # early data in a handshake (the rest takes the sink)
                return
            try:
                msg = wire.decode(payload)
            except DecodeError:
                self.decode_errors += 1
                return
            # A peer heard only through a relay is known to others by its own address: answer it,
            # but do not offer it as a contact. One on a TCP link is offered (at the link's address,
            # which fails over UDP, so whoever tries reads its endpoint record and finds its relays):
            # without that, a node that only speaks TCP could not be found by ID at all.
            try:
                self.dht.on_message(Contact(ev.public_key, _dht_endpoint(ev.endpoint)), msg, now, ev.verified,
                                    learn=path_kind(ev.endpoint) != RELAY and type(ev.endpoint) is not LinkAddr)
            except Exception:  # noqa: BLE001 - counted; the rest of the batch still runs
                self.internal_errors += 1
        elif isinstance(ev, PathChanged):
            if self._reach is not None:  # (unbuilt, reach is off and paths tracks no peer)
                self._reach.on_path_changed(ev.node_id, ev.target, ev.previous, now)
                self._paths.on_path_changed(ev.node_id, ev.target, ev.previous, now)
                self._ping_moved(ev.node_id, ev.previous, now)
            self._events.append(PathUpdate(ev.node_id, describe_path(ev.target), describe_path(ev.previous)))
        elif isinstance(ev, PathsWanted):
            if self._reach is not None:  # (unbuilt, reach is off: it does nothing with them)
                self._reach.on_paths_wanted(ev.node_id, ev.public_key, ev.attempt, now)
        elif isinstance(ev, PathQuiet):
            if self._reach is not None:
                self._reach.on_path_quiet(ev.node_id, ev.target, now)
        elif isinstance(ev, PongReceived):
            if self._overlay is not None:  # (a plane never built sent no probe)
                self._overlay.on_pong(ev.node_id, ev.ping_id)
            for op in list(self._ops.values()):
                if op.kind == "ping" and ev.ping_id in op.ping_ids and op.node_id == ev.node_id:
                    self._complete(op, PingResult(op.op_id, True, ev.node_id, ev.rtt))
        elif isinstance(ev, SessionUp):
            self._events.append(PeerUp(ev.node_id, ev.endpoint))
            if self._reach is not None:
                self._reach.on_session_up(ev.node_id, ev.endpoint, now)
            elif self._first_session_at is None:
                self._first_session_at = now  # (all an unbuilt, switched-off reach would note)
            if self._vpn_member(ev.node_id):
                self._pmtu_for([ev.node_id], now)  # a member: its path sets its network's TUN MTU
            if self._paths is not None:  # (unbuilt: no links to advertise, no transit, routes or candidates)
                self._paths.on_session_up(ev.node_id, ev.endpoint, now)
            self.dht.on_verified(ev.node_id, now)  # what it sent before proving its address
            for payload, endpoint in self._reach_held.pop(ev.node_id, ()):
                if payload[1] in REACH_TYPES:
                    self.reach.on_message(ev.node_id, payload, endpoint, now)
                else:
                    self.paths.on_message(ev.node_id, payload, endpoint, now)
            contact = Contact(ev.public_key, _dht_endpoint(ev.endpoint))
            if self._overlay is not None:  # (a plane never built has no negative entry to clear)
                self._overlay.on_session_up(ev.node_id)
            if self._lan is not None and self._lan.joined(ev.node_id):
                self.dht.bootstrap([contact], now)  # join the overlay through the LAN neighbour
                self._events.append(LanPeer(ev.node_id, ev.endpoint))
            for op in sorted(self._ops.values(), key=lambda o: o.op_id):
                if op.kind == "connect" and op.target == ev.endpoint and op.stage != "bootstrap":
                    if op.node_id is not None and op.node_id != ev.node_id:
                        self.transport.close(ev.node_id, now)
                        self._fail(op, f"{ev.endpoint[0]}:{ev.endpoint[1]} is {ev.node_id.text()}, not the pinned {op.node_id.text()}")
                        continue
                    dht_op = self.dht.bootstrap([contact], now)
                    if op.stage == "join":  # complete when the join lookup ends (below, LookupDone)
                        op.node_id, op.stage = ev.node_id, "bootstrap"
                        self._dht_ops[dht_op] = op.op_id
                    else:
                        self._complete(op, Connected(op.op_id, True, ev.node_id))
                elif op.kind == "ping" and op.stage == "connect" and op.node_id == ev.node_id:
                    self._start_ping(op, ev.node_id, now, contact)
                elif op.kind == "send" and op.stage == "connect" and op.node_id == ev.node_id:
                    self._send_over_session(op, now, contact)
        elif isinstance(ev, SessionDown):
            if self._pmtu is not None:
                self._pmtu.forget(ev.node_id)
            self._events.append(PeerDown(ev.node_id, ev.reason))
            if self._reach is not None:  # (unbuilt, neither holds anything about a peer)
                self._reach.on_session_down(ev.node_id, now)
                self._paths.on_session_down(ev.node_id, now)
        elif isinstance(ev, Unreachable):
            if ev.node_id is not None:
                if self._overlay is not None:  # (a plane never built has no route to forget)
                    self._overlay.on_unreachable(ev.node_id, now)
                if self._lan is None or not self._lan.failed(ev.node_id):  # a beacon may name a wrong address: not the node's fault
                    self.dht.on_unreachable(ev.node_id, now, ev.endpoint)
            for op in sorted(self._ops.values(), key=lambda o: o.op_id):
                if op.kind == "connect" and op.target == ev.endpoint and op.stage != "bootstrap":
                    self._fail(op, f"{ev.endpoint[0]}:{ev.endpoint[1]} did not answer: {ev.reason}")
                elif op.kind in ("ping", "send") and op.node_id is not None and op.node_id == ev.node_id \
                        and op.stage != "routed":
                    self._fail(op, f"{ev.node_id.text()} is unreachable: {ev.reason}")

    def _on_dht_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, dht_events.Delivered):
            try:
                msg = wire.decode(ev.payload)
            except DecodeError:
                self.decode_errors += 1
                return
            if isinstance(msg, SignedText):
                if len(ev.origin_key) == 32 and verify_signature(
                        ev.origin_key, msg.signature, SignedText.signing_input(ev.key, msg.text)):
                    self._events.append(TextReceived(ev.origin, msg.text))
                else:
                    self._text_dropped("forged")
            elif isinstance(msg, AppText):
                self._text_dropped("unsigned")
            return
        if self._reach is not None and (self._reach.on_dht_event(ev, now) or self._paths.on_dht_event(ev, now)):
            return  # (unbuilt, they started no DHT operation)
        # (a plane never built started no lookup)
        if (self._vpn is not None and self._vpn.on_dht_event(ev, now)) \
                or (self._overlay is not None and self._overlay.on_dht_event(ev, now)):
            return
        op_id = self._dht_ops.pop(getattr(ev, "op_id", -1), None)
        op = self._ops.get(op_id) if op_id is not None else None
        if op is None:
            return
        if isinstance(ev, dht_events.RouteResult):
            hops = tuple(
                {"node_id": h.node_id, "endpoint": h.endpoint, "rtt": round(h.rtt, 6)} for h in ev.hops
            )
            final = ev.hops[-1].node_id if ev.hops else None
            if op.kind == "trace":
                ok = ev.ok and final == op.target
                err = None if ok else (ev.error or f"the route ended at {final.text() if final else 'nobody'}")
                self._complete(op, TraceResult(op.op_id, ok, hops, err))
            else:
                ok = ev.ok and (not isinstance(op.target, NodeId) or final == op.target)
                if not ok and isinstance(op.target, NodeId) and op.stage == "":
                    # Greedy routing stopped short (a table near the target is
                    # incomplete): find the node iteratively and route to it directly.
                    op.stage = "direct"
                    self._dht_ops[self.dht.find_node(op.target, now)] = op.op_id
                    return
                err = None
                if not ok:
                    err = ev.error or "no node with that ID is in the overlay (the route ended at the closest node)"
                self._complete(op, SendResult(op.op_id, ok, final, ev.hop_count, err))
        elif isinstance(ev, dht_events.LookupDone):
            if op.stage == "locate":  # a ping or a send: the ID record of a node no lookup named
                self._located(op, ev, now)
            elif op.kind == "send":
                match = next((c for c in ev.contacts if c.node_id == op.target), None)
                if match is None and self.transport.has_session(op.target):
                    self._send_over_session(op, now)  # it did not answer the lookup, but a session came up
                elif match is None and self.config.reach.enabled and not self.transport.reaching(op.target):
                    # As a ping does: a node without UDP is named by no lookup (docs/reach.md, "TCP links").
                    op.stage = "locate"
                    self._dht_ops[self.dht.get(op.target.raw, now)] = op.op_id
                elif match is None and self.transport.reaching(op.target):
                    op.node_id, op.stage = op.target, "connect"  # its SessionUp routes the text
                elif match is None:
                    self._fail(op, "no node with that ID is in the overlay")
                else:
                    self._dht_ops[self.dht.route(op.target.raw, op.payload, now, first_hop=match)] = op.op_id
            elif op.kind == "ping":
                match = next((c for c in ev.contacts if self._matches(op, c.node_id)), None)
                if match is None and isinstance(op.target, NodeId) and self.transport.has_session(op.target):
                    # It did not answer the lookup in time, but a session came up meanwhile (its
                    # handshake through a relay, say): ping over it.
                    self.reach.want(op.target, now)
                    self._start_ping(op, op.target, now)
                elif match is None and self.config.reach.enabled \
                        and (named := next((c for c in ev.silent if self._matches(op, c.node_id)), None)) is not None:
                    # Named, but it did not answer the lookup (behind a NAT, say): reach it as our
                    # user asked, on the paths its own endpoint record names (its relays, then a
                    # punch). Its SessionUp ends the wait, or its handshake's end does.
                    self.reach.reach_node(named.public_key, now)
                    op.node_id, op.stage = named.node_id, "connect"
                elif match is None and isinstance(op.target, NodeId) and self.config.reach.enabled \
                        and not self.transport.reaching(op.target):
                    # No lookup names a node without UDP (it talks to everyone through a relay):
                    # read the public key it stores under its ID (docs/reach.md, "TCP links").
                    op.stage = "locate"
                    self._dht_ops[self.dht.get(op.target.raw, now)] = op.op_id
                elif match is None and isinstance(op.target, NodeId) and self.transport.reaching(op.target):
                    # Named in answers but not answering within the lookup's timeout: a node
                    # behind NAT whose handshake goes through its endpoint record (docs/reach.md).
                    # Its session ends the wait (SessionUp), or its handshake's end does.
                    op.node_id, op.stage = op.target, "connect"
                elif match is None:
                    self._fail(op, "no node with that ID or address was found in the overlay")
                else:
                    self.reach.want(match.node_id, now)
                    self._start_ping(op, match.node_id, now, match)
            elif op.kind == "trace":
                match = next((c for c in ev.contacts if self._matches(op, c.node_id)), None)
                if match is None:
                    self._fail(op, "no node with that address was found in the overlay")
                else:
                    op.target = match.node_id
                    self._dht_ops[self.dht.route(match.node_id.raw, b"", now, trace=True)] = op.op_id
            elif op.kind == "lookup":
                self._complete(
                    op,
                    LookupResult(op.op_id, ev.ok, op.target, tuple(ev.contacts), ev.hops, ev.messages,
                                 None if ev.ok else "lookup failed"),
                )
            elif op.kind == "get":
                if ev.ok and len(ev.values) < op.quorum:
                    self._complete(op, GetResult(op.op_id, False, op.target, copies=len(ev.values),
                                                 error=f"only {len(ev.values)} of the {op.quorum} copies asked for "
                                                       "were found"))
                elif ev.ok and ev.values:
                    best = ev.values[0]
                    self._complete(op, GetResult(op.op_id, True, op.target, best.value, getattr(best, "seq", None),
                                                 copies=len(ev.values)))
                else:
                    self._complete(op, GetResult(op.op_id, False, op.target, error="no record with that key was found"))
            elif op.kind == "put":
                stored = getattr(ev, "stored", len(ev.contacts))
                ok = ev.ok and stored > 0
                err = None
                if not ok:  # the DHT's own words: who refused and why, or who never answered
                    err = ev.error if ev.error not in (None, "failed") else "no node accepted the record"
                    if err == "timed out":
                        err = f"timed out after {self.dht.config.lookup_timeout:g} s with no node holding the record"
                self._complete(op, PutResult(op.op_id, ok, op.target, stored, err, ev.refused, ev.unanswered))
            elif op.kind == "leave":
                self._complete(op, LeaveResult(op.op_id, ev.ok, getattr(ev, "stored", 0)))
            elif op.kind == "connect":  # connect(join=True): the join lookup has ended
                self._complete(op, Connected(op.op_id, True, op.node_id))

"""SecureTransport: every handshake and session of one node, sans-IO.

Theory of operation
-------------------
The transport turns UDP datagrams into authenticated, encrypted sessions
with other nodes, named by their Ed25519 public keys (docs/handshake.md).

* ``send(contact, payload)`` delivers through the peer's current session;
  without one it starts a Noise IK handshake and queues the payload — the
  first queued payload rides inside the HandshakeInit as early data, so a
  first request to a new peer costs one round trip.
* ``receive_datagram`` dispatches on the packet type. Anything that fails
  authentication (mac1, AEAD tag, stale timestamp, replayed counter, unknown
  index) is dropped *silently* and counted; nothing raises.
* A peer has one *current* session for sending and up to two *older* ones
  that still receive during a changeover (rekey, simultaneous open — where
  each side ends up sending on a different one of two sessions), so no packet
  in flight is lost to a new session. Beyond two, the one the peer has gone
  longest without using is retired, never simply the oldest (the peer may
  still be sending on it).
* Timers: handshake retransmit with jitter and a give-up deadline
  (``Unreachable``), rekey after a time or message count, refusal to send on
  an expired session, optional keepalives after receiving without sending, idle expiry
  (``SessionDown``), and cookie-secret rotation.
* Under load (Inits beyond ``handshakes_per_second_under_load`` a second,
  burst a tenth of it; admission.py) an Init without a valid mac2 is answered with a CookieReply
  binding a cookie to the source address, instead of costing any DH; one
  with a valid mac2 still passes a token bucket per source address and
  prefix (admission.py) before any DH.
* **Return routability before state** (docs/security.md): a responder keeps
  an Init from an identity it does not know as a *half-open* peer, in a
  small bounded table, until the initiator proves it receives at its
  address by sending under the new session (the initiator sends a
  keepalive at once if it has nothing queued). Until then: no
  ``SessionUp``, early data is delivered marked ``verified=False``, and
  everything sent to it (Response included) fits in the bytes of its Init.
  Half-open peers expire; idle peers are forgotten; a full peer table
  evicts its least valuable entry (half-open, then idle, never a pinned
  routing-table contact) instead of refusing newcomers.
* Paths (core/reach/paths.py, docs/reach.md): a peer is reached over a path —
  a UDP endpoint, a TCP link, or a ``Via`` through overlay nodes. A peer with
  more than one known path keeps a ``PathSet``; ``policy`` picks the one in
  use (``peer.endpoint``). Session packets bound for a ``Via`` travel inside
  the first hop's session under a ``Forward`` header; a ``Forward`` that
  arrives is either for us (its packet is received as if it came from the
  ``Via`` back) or passed on if ``relay`` admits it — one packet out per
  packet in, of the same size. Packets that arrive through a relay go
  through exactly the same checks as any other (admission counts a relayed
  Init against the relay it came through), plus one: the peer the
  end-to-end session authenticates must be the origin the relays vouch for.

Inputs are bytes, ``now`` and the ``rng`` given at construction; outputs are
datagrams, events and one timer deadline.
"""

from __future__ import annotations

import heapq
import itertools
import struct
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from weftnet.core.counters import Counters
from weftnet.core.limits import NO_ENTRIES
from weftnet.core.session import ciphers as cph
from weftnet.core.session import handshake as hs
from weftnet.core.session.admission import Admission
from weftnet.core.contact import Addr, Contact
from weftnet.core.identity import Identity, NodeId, RandomSource, node_id_for
from weftnet.core.reach.paths import LinkAddr, PathPolicy, PathSet, Via, is_udp, path_kind
from weftnet.core.session.packets import (
    HELLO_MIN_SIZE,
    MAX_EARLY_DATA,
    EarlyData,
    MAX_FRAGMENTS,
    CookieReply,
    HandshakeInit,
    HandshakeResponse,
    Hello,
    HelloReply,
    Ping,
    Pong,
)
from weftnet.core.session.reassembly import REFUSED, Reassembly
from weftnet.core.session.replay import ReplayWindow
from weftnet.core.session.train import SealBuffer, Train, join
from weftnet.core.wire import MAX_MESSAGE_SIZE, VERSION, decode, encode
from weftnet.errors import DecodeError, HandshakeError, SessionError

__all__ = [
    "TransportConfig",
    "SecureTransport",
    "SessionUp",
    "SessionDown",
    "Received",
    "PongReceived",
    "Unreachable",
    "PeerInfo",
    "PathChanged",
    "PathsWanted",
    "PathQuiet",
]

_T_INIT, _T_RESP, _T_COOKIE, _T_DATA, _T_HELLO, _T_HELLO_REPLY, _T_FRAGMENT = 1, 2, 3, 4, 5, 6, 7
_PING, _PONG, _FORWARD = 0x10, 0x11, 0x12
_T_REACH_TEST = 0x0C
_T_QUERY, _T_ANSWER = 0x32, 0x33  # sessionless DHT queries (core/dht/sessionless.py)
_T_PROOF = 0x34  # ... and their proofs of address
#: A Forward header: version, type, hop count, trail count, then 32 bytes a node (hops + trail).
_FWD_BASE = 4
#: What a Forward adds to an end-to-end datagram per session layer it crosses: data header, tag, header.
_FWD_OVERHEAD = 14 + 16 + _FWD_BASE
#: The largest packet a relay passes on: a whole end-to-end datagram (the hop sessions cut it in pieces).
MAX_RELAYED = MAX_MESSAGE_SIZE
_DATA_HEADER = 14  # version, type, receiver index u32, counter u64
_CAPTURE = ("", 0)  # a stand-in direct target: the datagrams are collected, then sent on the real paths
_FRAG_HEADER = 16  # the same, then index u8, count u8
_TAG = 16  # both transport ciphers' (core/session/ciphers.py): a payload seals to this much more
_FRAG_FIELDS = struct.Struct("!2xIQBB")
_DATA_FIELDS = struct.Struct("!2xIQ")  # a data header's receiver index and counter, in one read
_HEAD = struct.Struct("!BBIQ")  # a data or fragment header: version, type, receiver index, counter
_NONCE = struct.Struct("<4xQ")  # the AEAD nonce of a counter: 0^32 || counter (u64 LE)
#: Fragments of one payload must all arrive within this long; at most this many payloads in
#: reassembly, each at most one wire message (so at most 128 x 64 KiB buffered).
FRAGMENT_TIMEOUT = 2.0
MAX_REASSEMBLIES = 128
MAX_REASSEMBLED = MAX_MESSAGE_SIZE + 16
_COOKIE_LIFETIME = 120.0
#: Older sessions a peer keeps receiving on beside its current one (``SecureTransport._install``).
MAX_OLDER = 2
#: The smallest datagram that can be a HandshakeInit (empty early-data field).
_INIT_MIN = 148
#: Early data an Init to an endpoint learned second-hand may carry: the Init stays within what a DHT
#: hint's ask costs (256 bytes, docs/security.md items 6 and 19); what is larger waits for the session.
SECOND_HAND_EARLY = 256 - 164

#: Messages one direction of a session carries before it keeps its AEAD object (see Session).
HOT_AFTER = 32


@dataclass
class TransportConfig:
    """Timers in seconds. Defaults follow WireGuard's (whitepaper section 6)."""

    rekey_after_time: float = 120.0
    reject_after_time: float = 180.0
    rekey_after_messages: int = 2**60
    reject_after_messages: int = 2**64 - 2**13 - 1
    handshake_retry: float = 1.0
    handshake_timeout: float = 10.0
    #: Passive keepalive after receiving data and sending nothing for this long
    #: (0 = off: DHT traffic is request/response, so it would only add load).
    keepalive: float = 0.0
    idle_timeout: float = 540.0
    max_queued: int = 256
    handshakes_per_second_under_load: int = 200
    #: Under load, Inits with a valid mac2 that may cost a DH, per second, per source address
    #: (IPv4 address or IPv6 /64) and per IPv4 /24 or IPv6 /48 (admission.py).
    handshake_rate_per_address: float = 20.0
    handshake_burst_per_address: float = 10.0
    handshake_rate_per_prefix: float = 100.0
    handshake_burst_per_prefix: float = 50.0
    hello_per_second: int = 1000
    hello_per_source_per_second: int = 5
    hello_per_prefix_per_second: int = 20
    #: Peers kept (sessions and what the node remembers of past ones); a full table evicts.
    max_peers: int = 20_000
    #: Responder-side handshakes from unknown identities awaiting proof of return routability.
    max_half_open: int = 1024
    half_open_timeout: float = 10.0
    #: A peer with no session, nothing queued and nothing received for this long is forgotten.
    forget_after: float = 3600.0
    #: Inits sent to an endpoint learned second-hand (``send(..., unverified=True)``) before giving up.
    unverified_attempts: int = 1
    #: Sources exempt from per-address and per-prefix limits (CIDR strings). Empty for a real
    #: node; a loopback test lab sets ``weftnet.core.limits.LOOPBACK_LAB``.
    exempt_prefixes: tuple = ()
    #: Largest UDP payload sent: 1392-byte underlay paths (see docs/vpn.md, MTU) minus IPv6 and UDP headers.
    #: A payload whose datagram would be larger is sealed once and sent in TransportFragment pieces.
    max_datagram: int = 1344
    #: Transport ciphers this node accepts, in preference order (core/session/ciphers.py codes;
    #: ChaCha20-Poly1305 always among them). The default, ChaCha20-Poly1305 alone, sends no offer.
    ciphers: tuple = cph.DEFAULT


# -- events ---------------------------------------------------------------------


@dataclass(frozen=True)
class SessionUp:
    node_id: NodeId
    public_key: bytes
    endpoint: Addr
    initiator: bool


@dataclass(frozen=True)
class SessionDown:
    node_id: NodeId
    reason: str


@dataclass(frozen=True)
class Received:
    node_id: NodeId
    public_key: bytes
    endpoint: Addr
    payload: bytes
    #: False for early data from a peer that has not yet proven it receives at ``endpoint``.
    verified: bool = True


@dataclass(frozen=True)
class PongReceived:
    node_id: NodeId
    ping_id: int
    rtt: float


@dataclass(frozen=True)
class Unreachable:
    node_id: NodeId | None
    endpoint: Addr
    reason: str


@dataclass(frozen=True)
class PathChanged:
    """The path in use to a peer changed (``previous`` None: the first one)."""

    node_id: NodeId
    target: object
    previous: object


@dataclass(frozen=True)
class PathQuiet:
    """We keep sending to a peer that has not been heard from for ``quiet_after``: probe its path."""

    node_id: NodeId
    target: object


@dataclass(frozen=True)
class PathsWanted:
    """A handshake to a peer is waiting for an answer (``attempt`` Inits sent so far): more paths would help."""

    node_id: NodeId
    public_key: bytes
    attempt: int


@dataclass(frozen=True)
class PeerInfo:
    node_id: NodeId
    public_key: bytes
    endpoint: Addr
    session_age: float | None
    srtt: float | None
    last_rtt: float | None
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    last_received: float | None
    initiator: bool | None
    rekeys: int


# -- sessions and peers ---------------------------------------------------------


def _heard(s: "Session") -> float:
    return s.heard


class Session:
    """One set of transport keys: a send counter and a receive replay window.

    An AEAD object of ``cryptography`` holds about 2.2 KB of OpenSSL state, and
    a DHT node keeps a session with each of its ~100 contacts, most of which
    carry few messages. So a session keeps its two 32-byte keys and
    builds the AEAD object per message (a few microseconds), and caches it
    only once that direction has carried :data:`HOT_AFTER` messages — the VPN
    data plane's sessions become hot within a few packets.
    """

    __slots__ = ("local_index", "remote_index", "send_key", "recv_key", "_send", "_recv", "opened",
                 "counter", "window", "created", "initiator", "peer", "heard", "cipher", "_aead", "blocks",
                 "block_limit", "answered")

    def __init__(self, local_index: int, remote_index: int, send_key: bytes, recv_key: bytes,
                 created: float, initiator: bool, peer: "Peer", cipher: int = cph.CHACHA20_POLY1305):
        self.cipher = cipher  # the transport cipher the handshake agreed on (ciphers.py)
        self._aead = cph.AEADS[cipher]
        self.blocks = 0  # 16-byte blocks sealed (payload and tag): what AES-GCM's usage limit counts
        self.block_limit = cph.BLOCK_LIMIT[cipher]
        self.local_index = local_index
        self.remote_index = remote_index
        self.send_key = send_key
        self.recv_key = recv_key
        self._send = None
        self._recv = None
        self.opened = 0  # payloads authenticated
        self.counter = 0
        self.window = ReplayWindow()
        self.created = created
        self.initiator = initiator
        self.peer = peer
        self.heard = created  # made, or last opened a packet from the peer: what _install keeps by
        #: A responder's session: the address its Response went to, until the first packet opens on it.
        self.answered = None

    @property
    def send(self):
        aead = self._send
        if aead is None:
            aead = self._aead(self.send_key)
            if self.counter >= HOT_AFTER:
                self._send = aead
        return aead

    @property
    def recv(self):
        aead = self._recv
        if aead is None:
            aead = self._aead(self.recv_key)
            if self.opened >= HOT_AFTER:
                self._recv = aead
        return aead


@dataclass(slots=True)  # one per known node: no per-instance dict
class Peer:
    public_key: bytes
    node_id: NodeId
    endpoint: Addr | None = None
    current: Session | None = None
    # The five containers below start as the shared empty tuple and become a list (dict) on first
    # write: a DHT contact's peer never uses most of them, and four empty lists and a dict were
    # 290 bytes of every peer (bench/results/dht.md).
    older: list | tuple = ()  # retired sessions, still receiving
    pending: hs.InitiatorHandshake | None = None
    pending_sent: float = 0.0
    pending_started: float = 0.0
    pending_retry_at: float | None = None
    pending_early: bytes = b""
    queue: list | tuple = ()  # payloads waiting for a session (an empty deque is 10x a list)
    greatest_timestamp: bytes = b""
    last_timestamp_sent: bytes = b""
    last_sent: float = 0.0
    last_received: float | None = None
    last_data_received: float = 0.0
    keepalive_due: float | None = None
    cookie: bytes | None = None
    cookie_at: float = 0.0
    srtt: float | None = None
    rttvar: float = 0.0
    last_rtt: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    rekeys: int = 0
    pings: dict | None = None
    early_rx: list | tuple = ()
    paths: PathSet | None = None  # made when a second path is known (core/reach/paths.py)
    quiet_at: float = -1.0  # when PathQuiet was last reported
    #: Responder side, before return routability is proven: bytes it may still be sent
    #: (None: confirmed, no limit), what waits for the proof, and since when it waits.
    budget: int | None = None
    held: list | tuple = ()
    half_open_at: float = 0.0
    #: The endpoint an authenticated packet last came from (or the user gave).
    verified_endpoint: Addr | None = None
    attempts: int = 0  # Inits of the pending handshake
    max_attempts: int | None = None  # set for endpoints learned second-hand
    #: The peer's endpoint record is being read (reach): a handshake out of Inits waits for it.
    awaiting_record: bool = False
    pad_to: int = 0  # the next Init carrying early data is padded to this many bytes
    max_datagram: int | None = None  # the path's datagram size when path MTU discovery found it (pmtu.py)
    max_datagram_path: Addr | None = None  # ... for this UDP endpoint (another path uses the default)
    pmtu_asked: bool = False  # listed once in SecureTransport.pmtu_wanted
    #: The static-static DH with this peer's key (handshake.py): one X25519 less per later handshake.
    static_dh: bytes | None = None
    #: UDP paths nobody has heard this peer on that only a claim names (its endpoint record, or a
    #: second-hand endpoint that has had its Init) -> the Inits each may still get: one per record
    #: read naming it (``add_paths``), none otherwise. A record is its key's own word on where it
    #: is, and that key may be an attacker's naming victims (docs/security.md, item 19).
    grants: dict | None = None

    def rtt_sample(self, rtt: float) -> None:
        """RFC 6298 section 2 smoothing."""
        self.last_rtt = rtt
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt


#: A transport's ``worker_slots`` until a daemon with data-plane workers sets its own: one empty
#: frozenset for every node of a process (each ``frozenset()`` call makes a 216-byte object).
_NO_SLOTS: frozenset[int] = frozenset()


class SecureTransport:
    """All handshakes and sessions of one node. See the module docstring."""

    # Slots: past 30 attributes an instance's dict stops sharing its keys (1.6 KB a node); "__dict__"
    # stays for attributes added later and for tests that replace a method on one instance.
    __slots__ = ("identity", "node_id", "config", "_rng", "_peers", "_by_node", "_indices", "_out", "_events",
                 "_reassembly", "sink", "sink_types", "worker_slots", "pmtu_wanted", "_hello_pending", "_hello_expect",
                 "admission", "_half_open", "keep", "_cookie_secret", "_cookie_rotate_at", "_retries", "_seq",
                 "_next_sweep", "_own_mac1_key", "_own_cookie_key", "_next_ping", "policy", "relay", "on_clear",
                 "on_query", "on_query_cookie", "find_contact", "paths_wanted", "quiet_after", "steer",
                 "_depth", "stats", "trains", "_seal", "__dict__")

    def __init__(self, identity: Identity, rng: RandomSource, now: float, config: TransportConfig | None = None):
        self.identity = identity
        self.node_id = identity.node_id
        self.config = config or TransportConfig()
        self._rng = rng
        self._peers: dict[bytes, Peer] = {}  # by Ed25519 public key
        self._by_node: dict[NodeId, Peer] = {}
        self._indices: dict[int, Peer | Session] = {}  # local index -> pending peer or session
        self._out: list[tuple[bytes, Addr]] = []
        self._events: list = []  # a few at a time: an empty deque is 624 bytes a node
        #: (session index, counter) -> pieces: made by the first fragment (_reassembler); most DHT
        #: nodes never get one, and an empty table with its bound method was 280 bytes a node.
        self._reassembly: Reassembly | None = None
        #: Set by a driver that sends a :class:`Train` in one UDP GSO send: a payload cut in
        #: fragments for a UDP endpoint (the main socket's, or an extra underlay link's: a
        #: ``LinkAddr``) then leaves as one Train instead of one datagram per piece.
        self.trains = False
        self._seal: SealBuffer | None = None  # made by the first train cut (a driver's transport only)
        #: Payloads whose type code (second byte) is in ``sink_types`` go straight to
        #: ``sink(node_id, payload, now)`` instead of becoming ``Received`` events: the
        #: VPN data plane's hot path (no event object, no dispatch per packet).
        self.sink = None
        self.sink_types: frozenset[int] = frozenset()
        #: Counter partitions whose low four bits are in here belong to this node's data-plane
        #: workers (docs/dataplane.md, "Several workers"): their windows are there, so this
        #: transport never opens them (a datagram GRO joined behind one of ours lands here).
        self.worker_slots: frozenset[int] = _NO_SLOTS
        #: Peers whose path is worth measuring: sent a payload too large for one datagram (listed once
        #: each), or named by the node (a network member). The node starts a path MTU search for
        #: those with a session (core/session/pmtu.py) and clears the list.
        self.pmtu_wanted: list[NodeId] | tuple = ()  # a list from the first (an empty list is 56 bytes a node)
        #: Endpoint -> (nonce, started, retry_at): NO_ENTRIES while none is pending (_hellos_done), so a
        #: joiner's one Hello leaves no emptied dict behind (160 bytes a node in bench/dht).
        self._hello_pending: dict[Addr, tuple[int, float, float]] = NO_ENTRIES
        #: A hello_first connect's endpoint -> the key it must answer with (NO_ENTRIES until the first).
        self._hello_expect: dict[Addr, bytes] = NO_ENTRIES
        self.admission = Admission(self.config)
        #: Oldest first; NO_ENTRIES until the first (an initiator-only node never has one: 128 bytes).
        self._half_open: OrderedDict[bytes, Peer] = NO_ENTRIES
        #: Set by the node: True for peers it wants kept when the peer table is full
        #: (its routing-table contacts). None: only activity counts.
        self.keep = None
        self._cookie_secret = rng.randbytes(32)
        self._cookie_rotate_at = now + _COOKIE_LIFETIME
        self._retries: list = []  # (retry time, seq, peer)
        self._seq = 0
        self._next_sweep = float("inf")
        self._own_mac1_key = hs.mac1_key(identity.public_key)
        self._own_cookie_key = hs.cookie_key(identity.public_key)
        self._next_ping = 1
        #: Picks the path in use per peer (core/reach/paths.py); replaceable.
        self.policy = PathPolicy()
        #: Admits Forward packets to pass on (``admit(src, dst, size, now) -> None | reason``); None = no relaying.
        self.relay = None
        #: In-the-clear reach messages (ReachTest) go to ``on_clear(data, addr, now)``.
        self.on_clear = None
        #: Sessionless DHT queries, answers and proofs (0x32-0x34) go to ``on_query(data, addr, now)``, and a
        #: CookieReply for no handshake of ours to ``on_query_cookie(msg, now) -> bool`` (core/dht/sessionless.py).
        self.on_query = None
        self.on_query_cookie = None
        #: ``find_contact(node_id) -> Contact | None``: where a relay may find a next hop it has no
        #: session with (NodeCore: the routing table).
        self.find_contact = None
        #: Emit PathsWanted when a handshake starts and at each retry (set when reach is on).
        self.paths_wanted = False
        #: Emit PathQuiet when sending to a peer not heard from for this long (reach sets it).
        self.quiet_after = float("inf")
        #: Per-payload path choice (core/paths): ``steer(node_id, payload, now)`` returns None (the
        #: path in use) or a tuple of one or two targets; with two, the payload is sealed once and
        #: the same datagrams go out on both (the receiver's replay window drops the later copy).
        self.steer = None
        self._depth = 0  # Forward nesting while receiving (bounded)
        self.stats: dict[str, int] = Counters(
            (
                "handshakes_initiated", "handshakes_completed", "handshakes_failed", "auth_failures",
                "claimed_inits_withheld",
                "replays_dropped", "malformed_dropped", "unknown_index_dropped", "cookies_sent",
                "cookies_received", "hello_replies", "hello_dropped", "keepalives_sent",
                "expired_dropped", "queue_dropped", "fragments_expired",
                "relayed_out", "relayed_in", "relay_forwarded", "relay_refused", "relay_no_path",
                "relay_spoofed", "path_changes", "duplicated_out", "duplicates_dropped",
                "handshakes_rate_limited", "half_open", "half_open_expired", "confirmed",
                "held_until_confirmed", "peers_evicted", "peers_forgotten", "crossed_adopted",
                "sessions_lost_by_peer", "rekeys_unanswered", "sessions_aes_256_gcm",
            )
        )

    def want_pmtu(self, node_id: NodeId) -> None:
        """List ``node_id`` in ``pmtu_wanted`` (the node reads it and puts back the empty tuple)."""
        if type(self.pmtu_wanted) is tuple:
            self.pmtu_wanted = []
        self.pmtu_wanted.append(node_id)

    def _reassembler(self) -> Reassembly:
        """The fragment table, made on the first fragment."""
        r = self._reassembly = Reassembly(MAX_REASSEMBLIES, FRAGMENT_TIMEOUT, MAX_REASSEMBLED, self._fragments_expired)
        return r

    # -- API ---------------------------------------------------------------------
    def connect(self, endpoint: Addr, now: float, public_key: bytes | None = None, *, hello_first: bool = False,
                vouched: bool = True) -> None:
        """Open a session to ``endpoint`` (to the holder of ``public_key``, or whoever answers a Hello there).
        ``hello_first`` (with ``public_key``): the endpoint came from an unauthenticated sender (a LAN
        beacon's source address, maybe spoofed), so it gets one Hello (64 bytes), never repeated, and the
        handshake starts only once the endpoint has answered with that key (docs/security.md item 17).
        Not ``vouched`` (with ``public_key``): a record a DHT hint led to names the endpoint, so it is
        second-hand, as the hint was: one Init, until an answer or the record's paths say more (item 19)."""
        if public_key is not None and hello_first:
            if endpoint not in self._hello_pending:
                nonce = self._rng.getrandbits(64)
                if self._hello_pending is NO_ENTRIES:
                    self._hello_pending = {}
                self._hello_pending[endpoint] = (nonce, now, now + self._jitter(self.config.handshake_retry))
                if self._hello_expect is NO_ENTRIES:
                    self._hello_expect = {}
                self._hello_expect[endpoint] = public_key
                self._send_hello(endpoint, nonce)
            return
        if public_key is not None:
            peer = self._peer(public_key, now)
            if peer.endpoint is None or peer.current is None:
                if vouched:
                    self._set_endpoint(peer, endpoint, "contact", now)
                    peer.verified_endpoint = endpoint  # given by the user, or it answered our Hello
                    peer.max_attempts = None
                else:
                    self._set_endpoint(peer, endpoint, "record", now)
                    peer.max_attempts = None if type(endpoint) is not tuple or endpoint == peer.verified_endpoint \
                        else self.config.unverified_attempts
            if peer.current is None and peer.pending is None:
                self._start_handshake(peer, now)
            elif peer.current is not None and peer.endpoint == endpoint:
                # Already connected: report it, so a caller waiting on it hears.
                self._events.append(SessionUp(peer.node_id, peer.public_key, endpoint, peer.current.initiator))
            return
        for peer in self._peers.values():
            if peer.endpoint == endpoint and peer.current is not None:
                self._events.append(SessionUp(peer.node_id, peer.public_key, endpoint, peer.current.initiator))
                return
        if endpoint not in self._hello_pending:
            nonce = self._rng.getrandbits(64)
            if self._hello_pending is NO_ENTRIES:
                self._hello_pending = {}
            self._hello_pending[endpoint] = (nonce, now, now + self._jitter(self.config.handshake_retry))
            self._send_hello(endpoint, nonce)

    def _hellos_done(self) -> None:
        """The hello tables back to the shared empty one once nothing is pending."""
        if not self._hello_pending:
            self._hello_pending = NO_ENTRIES
        if not self._hello_expect:
            self._hello_expect = NO_ENTRIES

    def send(self, contact: Contact, payload: bytes, now: float, *, unverified: bool = False,
             large_reply: bool = False) -> None:
        """Send to ``contact``. ``unverified``: its endpoint was learned second-hand (a DHT
        hint), so a handshake to it gets ``unverified_attempts`` Inits, not retries for
        ``handshake_timeout`` (docs/security.md, item 6). ``large_reply``: the payload asks
        for an answer larger than a bare Init, so if it rides in one, the Init is padded to
        ``max_datagram`` and the answer can come before return routability is proven."""
        peer = self._peer(contact.public_key, now)
        if peer.endpoint is None or (peer.current is None and peer.pending is None):
            self._set_endpoint(peer, contact.endpoint, "contact", now)
            hinted = unverified and contact.endpoint != peer.verified_endpoint
            peer.max_attempts = self.config.unverified_attempts if hinted else None
            if large_reply and not hinted and peer.current is None:
                peer.pad_to = self.config.max_datagram
        self._send_payload(peer, payload, now)

    def send_to(self, node_id: NodeId, payload: bytes, now: float) -> bool:
        peer = self._by_node.get(node_id)
        if peer is None or peer.endpoint is None:
            return False
        self._send_payload(peer, payload, now)
        return True

    def seal(self, node_id: NodeId, payload: bytes, now: float) -> tuple[bytes, Addr] | None:
        """``payload`` sealed on the current session as one datagram, returned instead of queued (a
        path MTU probe, which the driver sends with don't-fragment set); None without a usable session."""
        peer = self._by_node.get(node_id)
        if peer is None or peer.current is None or peer.budget is not None or type(peer.endpoint) is not tuple:
            return None  # no session, or a path (a relay, a TCP link) whose datagram size is not ours to probe
        s = peer.current
        if (now - s.created >= self.config.reject_after_time or s.counter >= self.config.reject_after_messages
                or s.blocks >= s.block_limit):
            return None
        counter = s.counter
        s.counter += 1
        s.blocks += (len(payload) >> 4) + 2
        ct = s.send.encrypt(b"\x00\x00\x00\x00" + counter.to_bytes(8, "little"), payload, None)
        pkt = b"\x01\x04" + s.remote_index.to_bytes(4, "big") + counter.to_bytes(8, "big") + ct
        peer.bytes_out += len(pkt)
        peer.packets_out += 1
        peer.last_sent = now
        return pkt, peer.endpoint

    def set_max_datagram(self, node_id: NodeId, size: int | None) -> None:
        """Datagrams to ``node_id`` up to ``size`` bytes (None: ``config.max_datagram``)."""
        peer = self._by_node.get(node_id)
        if peer is not None:
            peer.max_datagram = size
            peer.max_datagram_path = peer.endpoint if type(peer.endpoint) is tuple else None

    def ping(self, node_id: NodeId, now: float) -> int:
        peer = self._by_node.get(node_id)
        if peer is None or peer.endpoint is None:
            raise SessionError(f"no session with {node_id.text()} and no known endpoint")
        ping_id = self._next_ping
        self._next_ping += 1
        if peer.pings is None:
            peer.pings = {}
        peer.pings[ping_id] = now
        if len(peer.pings) > 64:  # unanswered pings must not pile up
            del peer.pings[min(peer.pings)]
        self._send_payload(peer, encode(Ping(ping_id, b"")), now)
        return ping_id

    def close(self, node_id: NodeId, now: float) -> None:
        """End this node's sessions here (a pinned-node mismatch, a peer the overlay plane found
        dead). Reported as every other end of a session is, so reach, paths and PMTU forget it."""
        peer = self._by_node.get(node_id)
        if peer is not None:
            if peer.current is not None:
                self._events.append(SessionDown(peer.node_id, "closed"))
            self._drop_sessions(peer)
            peer.pending = None
            peer.queue = ()

    def endpoint_of(self, node_id: NodeId) -> Addr | None:
        peer = self._by_node.get(node_id)
        return None if peer is None else peer.endpoint

    def has_session(self, node_id: NodeId) -> bool:
        peer = self._by_node.get(node_id)
        return peer is not None and peer.current is not None and peer.budget is None

    def idle(self, node_id: NodeId) -> bool:
        """``not has_session(node_id) and not handshaking(node_id)``, with one look-up (asked for every
        DHT request the node sends: a node without either gets it as a sessionless query)."""
        peer = self._by_node.get(node_id)
        return peer is None or (peer.pending is None and (peer.current is None or peer.budget is not None))

    def handshaking(self, node_id: NodeId) -> bool:
        """True while a handshake this node started with ``node_id`` is waiting for its answer."""
        peer = self._by_node.get(node_id)
        return peer is not None and peer.pending is not None

    def peers(self, now: float | None = None) -> list[PeerInfo]:
        out = []
        for peer in sorted(self._peers.values(), key=lambda p: p.node_id.raw):
            s = peer.current
            if s is None or peer.budget is not None:
                continue
            out.append(PeerInfo(
                peer.node_id, peer.public_key, peer.endpoint,
                None if now is None else round(now - s.created, 3), peer.srtt, peer.last_rtt,
                peer.bytes_in, peer.bytes_out, peer.packets_in, peer.packets_out, peer.last_received,
                s.initiator, peer.rekeys,
            ))
        return out

    def rekey(self, node_id: NodeId, now: float, local_index: int | None = None) -> bool:
        """Start a new handshake with a peer we have a session with, now (a data-plane worker that
        died took its replay windows with it: its successor opens only with keys made after; a
        worker sealed half of AES-GCM's usage limit under the session ``local_index``, if that is
        still the current one)."""
        peer = self._by_node.get(node_id)
        if peer is None or peer.current is None or peer.pending is not None or peer.endpoint is None:
            return False
        if local_index is not None and peer.current.local_index != local_index:
            return False
        peer.rekeys += 1
        self._start_handshake(peer, now)
        return True

    def worker_keys(self, node_ids) -> tuple[list, dict[bytes, int]]:
        """The keys data-plane workers need for these peers (docs/dataplane.md, "Several workers"):
        every session of theirs that may still receive, and per peer reached over plain UDP the
        local index of the one to send with (core/session/workers.py)."""
        from weftnet.core.session.workers import SessionKeys

        keys, current = [], {}
        default = self.config.max_datagram
        for nid in node_ids:
            peer = self._by_node.get(nid)
            if peer is None or peer.current is None or peer.budget is not None or type(peer.endpoint) is not tuple:
                continue
            size = peer.max_datagram if peer.max_datagram and peer.max_datagram_path in (None, peer.endpoint) else default
            for s in (peer.current, *peer.older):
                keys.append(SessionKeys(nid.raw, s.local_index, s.remote_index, s.send_key, s.recv_key, s.created,
                                        peer.endpoint, size, s.cipher))
            current[nid.raw] = peer.current.local_index
        return keys, current

    def session_counters(self) -> list[tuple[NodeId, int, int, int, int, float | None]]:
        """``(node_id, bytes_in, bytes_out, packets_in, packets_out, srtt)`` per peer with a
        session: what a metrics scrape needs, without building a PeerInfo per peer."""
        return [(p.node_id, p.bytes_in, p.bytes_out, p.packets_in, p.packets_out, p.srtt)
                for p in self._peers.values() if p.current is not None]

    def traffic_totals(self) -> dict[str, int]:
        """Bytes and packets to and from every peer ever known (monotonic: peers are never forgotten)."""
        t = dict.fromkeys(("bytes_in", "bytes_out", "packets_in", "packets_out"), 0)
        for p in self._peers.values():
            t["bytes_in"] += p.bytes_in
            t["bytes_out"] += p.bytes_out
            t["packets_in"] += p.packets_in
            t["packets_out"] += p.packets_out
        return t

    def session_ages(self, now: float) -> dict[NodeId, float]:
        return {p.node_id: now - p.current.created for p in self._peers.values()
                if p.current is not None and p.budget is None}

    # -- paths (core/reach/paths.py; driven by core/reach/engine.py) -------------
    def sessions(self) -> list[tuple[NodeId, object, float | None]]:
        """``(node_id, path in use, srtt)`` of every peer with a session (no PeerInfo per peer)."""
        return [(p.node_id, p.endpoint, p.srtt) for p in self._peers.values() if p.current is not None]

    def reaching(self, node_id: NodeId) -> bool:
        """Whether a handshake with ``node_id`` is under way (no session yet)."""
        peer = self._by_node.get(node_id)
        return peer is not None and peer.current is None and peer.pending is not None

    def public_key_of(self, node_id: NodeId) -> bytes | None:
        peer = self._by_node.get(node_id)
        return None if peer is None else peer.public_key

    def current_path(self, node_id: NodeId):
        """The path in use to a peer (an endpoint, a StreamLink or a Via), or None."""
        peer = self._by_node.get(node_id)
        return None if peer is None else peer.endpoint

    def traffic(self, node_id: NodeId) -> tuple[int, int]:
        """(packets in, packets out) of a peer so far."""
        peer = self._by_node.get(node_id)
        return (0, 0) if peer is None else (peer.packets_in, peer.packets_out)

    def received(self, node_id: NodeId) -> tuple[int, int]:
        """(bytes in, packets in) from a peer so far: what reach charges unverified sends against."""
        peer = self._by_node.get(node_id)
        return (0, 0) if peer is None else (peer.bytes_in, peer.packets_in)

    def last_sent(self, node_id: NodeId) -> float:
        peer = self._by_node.get(node_id)
        return 0.0 if peer is None else peer.last_sent

    def srtt(self, node_id: NodeId) -> float | None:
        """The smoothed round-trip time to a peer (its handshakes and pings), or None."""
        peer = self._by_node.get(node_id)
        return None if peer is None else peer.srtt

    def path(self, node_id: NodeId, target):
        """The :class:`Path` record of one path to a peer (made if the peer is known), or None."""
        peer = self._by_node.get(node_id)
        if peer is None:
            return None
        p = self._paths(peer, 0.0).get(target)
        return p

    def learn_endpoint(self, public_key: bytes, endpoint, now: float) -> None:
        """Remember how to reach a node we may need as a relay (no handshake yet)."""
        if public_key == self.identity.public_key:
            return
        peer = self._peers.get(public_key)
        if peer is None and len(self._peers) >= self.config.max_peers:
            return
        peer = self._peer(public_key, now)
        if peer.endpoint is None or (peer.current is None and peer.pending is None):
            self._set_endpoint(peer, endpoint, "record", now)
            # Another node's record names this relay there: second-hand, as a DHT hint is (one
            # Init, until the relay's own record or an answer vouches for it; security.md item 19).
            peer.max_attempts = None if endpoint == peer.verified_endpoint else self.config.unverified_attempts
        else:
            self._paths(peer, now).add(endpoint, "record", now, keep=peer.endpoint)

    def add_paths(self, node_id: NodeId, targets, origin: str, now: float, pay=None) -> int:
        """Candidate paths to a known peer (from its endpoint record or its call-me-maybe).

        A handshake waiting for an answer is sent again at once, on every path. ``pay(endpoint)``
        (a record a hint led to): each UDP path nobody heard the peer on gets its Init only if this
        returns True (docs/security.md, item 19). Returns how many paths were new.
        """
        peer = self._by_node.get(node_id)
        if peer is None:
            return 0
        paths = self._paths(peer, now)
        new = 0
        for t in targets:
            if t == peer.endpoint or (type(t) is Via and (self.node_id.raw in t.hops or t.peer != node_id.raw)):
                continue
            if paths.get(t) is None:
                new += 1
            paths.add(t, origin, now, keep=peer.endpoint)
        if origin == "record":
            self._grant(peer, paths, targets, 1, pay)
        if peer.pending is not None and peer.current is None and (new or peer.max_attempts is not None):
            # The node's own signed record (or its call-me-maybe) named these paths: the
            # handshake is no longer only to an endpoint someone else told us about, so it
            # retries as to a first-hand endpoint (the record's bounds are reach's, docs/reach.md),
            # also when an earlier record had named the same paths already; on the record's UDP
            # paths nobody has heard it on, one Init per read (``_grant``).
            if peer.max_attempts is not None and type(peer.endpoint) is tuple and peer.endpoint not in targets:
                self._grant(peer, paths, (peer.endpoint,), 0)  # the second-hand endpoint had its Init
            peer.max_attempts = None
            peer.awaiting_record = False
            self._send_init(peer, now)
        cur = paths.get(peer.endpoint)
        if new and cur is not None and cur.dead:
            self._rechoose(peer, now)  # the path in use stopped answering: one of these may do
        return new

    #: UDP paths a record read may have Inits sent to before the peer is heard on any (the rest of
    #: the record's paths, relays aside, wait for the next read or for the peer).
    RECORD_GRANTS = 2

    def _grant(self, peer: Peer, paths, targets, inits: int = 1, pay=None) -> None:
        """The UDP paths of ``targets`` that nobody heard ``peer`` on may get ``inits`` Inits each
        (at most ``RECORD_GRANTS`` of them per call, and only those ``pay`` pays for, if given; the
        others none) until it is heard there."""
        grants = peer.grants
        if grants is None:
            grants = peer.grants = {}
        given = 0
        for t in targets:
            if type(t) is not tuple or t == peer.verified_endpoint:
                continue
            p = paths.get(t)
            if p is not None and p.heard:
                grants.pop(t, None)
                continue
            if len(grants) >= 64 and t not in grants:
                grants.pop(next(iter(grants)))  # (bounded: a peer has at most MAX_PATHS paths anyway)
            n = inits if given < self.RECORD_GRANTS and (pay is None or not inits or pay(t)) else 0
            grants[t] = n
            given += n > 0

    def await_record(self, node_id: NodeId, waiting: bool) -> bool:
        """Reach reads the endpoint record of ``node_id`` (``waiting``), or is done with it: a pending
        handshake to a second-hand endpoint that has sent its one Init waits for the record's paths
        instead of giving up (still within ``handshake_timeout``; no Init goes out meanwhile).
        False if no handshake is pending."""
        peer = self._by_node.get(node_id)
        if peer is None or peer.pending is None:
            return False
        peer.awaiting_record = waiting
        return True

    def pending_handshakes(self) -> list[NodeId]:
        """Peers a first handshake is waiting on (no session yet)."""
        return [p.node_id for p in self._peers.values() if p.pending is not None and p.current is None]

    def send_on(self, node_id: NodeId, payload: bytes, target, now: float) -> bool:
        """Send one payload over the current session on a chosen path (probes); False without a session."""
        peer = self._by_node.get(node_id)
        if peer is None:
            return False
        if target == peer.endpoint:
            if peer.current is None:
                return False
            self._send_payload(peer, payload, now)
            return True
        s = peer.current
        if (s is None or now - s.created >= self.config.reject_after_time
                or s.counter >= self.config.reject_after_messages or s.blocks >= s.block_limit):
            return False
        if peer.budget is not None:
            return False  # half-open: no probes elsewhere before it proves its own address
        if type(target) is Via and self.node_id.raw in target.hops:
            return False
        p = self._paths(peer, now).add(target, "probe", now, keep=peer.endpoint)
        p.last_tx = now
        last = peer.last_sent
        self._encrypt_and_send(peer, s, payload, now, target)
        peer.last_sent = last  # a probe elsewhere says nothing about the path in use
        return True

    def confirm_path(self, node_id: NodeId, target, rtt: float | None, now: float) -> None:
        """An answer came back on ``target`` (a probe reply): it works both ways. The policy may move to it."""
        peer = self._by_node.get(node_id)
        if peer is None:
            return
        p = self._paths(peer, now).add(target, "probe", now, keep=peer.endpoint)
        p.dead = False
        p.confirmed = p.last_rx = now
        if rtt is not None:
            p.rtt = rtt if p.rtt is None else 0.875 * p.rtt + 0.125 * rtt
        self._rechoose(peer, now)

    def follow(self, node_id: NodeId, target, now: float) -> bool:
        """Move the session to ``target``, a path the peer was heard on that has just answered a probe
        (reach's path validation): the roaming an unproven source no longer does by itself."""
        peer = self._by_node.get(node_id)
        if peer is None or peer.current is None or target == peer.endpoint or peer.paths is None:
            return False
        p = peer.paths.get(target)
        if p is None or p.dead or p.confirmed is None:
            return False
        self._switch(peer, target, now)
        return True

    def rechoose(self, node_id: NodeId, now: float) -> None:
        """Ask the policy again which path to use (its measurements changed)."""
        peer = self._by_node.get(node_id)
        if peer is not None and peer.paths is not None and peer.current is not None:
            self._rechoose(peer, now)

    def path_dead(self, node_id: NodeId, target, now: float) -> None:
        """``target`` stopped answering: never chosen again until it answers or is offered anew."""
        peer = self._by_node.get(node_id)
        if peer is None:
            return
        p = self._paths(peer, now).get(target)
        if p is None:
            p = self._paths(peer, now).add(target, "probe", now)
        p.dead = True
        p.confirmed = None
        self._rechoose(peer, now)

    def path_table(self, node_id: NodeId, now: float | None = None) -> list[dict]:
        """Every known path to a peer, the one in use first."""
        peer = self._by_node.get(node_id)
        if peer is None:
            return []
        rows = []
        known = list(peer.paths) if peer.paths is not None else []
        if peer.endpoint is not None and (peer.paths is None or peer.paths.get(peer.endpoint) is None):
            rows.append({"target": peer.endpoint, "in_use": True, "kind": path_kind(peer.endpoint),
                         "origin": "contact", "rx_age": None if now is None or peer.last_received is None
                         else round(now - peer.last_received, 3), "confirmed_age": None, "rtt": peer.srtt,
                         "dead": False})
        for p in known:
            d = p.info(now)
            d["target"] = p.target
            d["in_use"] = p.target == peer.endpoint
            rows.append(d)
        rows.sort(key=lambda d: not d["in_use"])
        return rows

    def has_sent_to(self, endpoint) -> bool:
        """Whether any peer is, or was tried, at this endpoint (a NAT would let its packets in)."""
        endpoint = tuple(endpoint)
        for peer in self._peers.values():
            if peer.endpoint == endpoint:
                return True
            if peer.paths is not None and endpoint in peer.paths.paths:
                return True
        return endpoint in self._hello_pending

    def send_clear(self, data: bytes, addr) -> None:
        """A datagram in the clear (a dial-back ReachTest; ``addr`` may be an AltSource)."""
        self._out.append((data, addr))

    def link_down(self, link, now: float) -> None:
        """The runtime lost a stream link: sessions that used it end, and it is forgotten as a path."""
        for peer in list(self._peers.values()):
            if peer.paths is not None:
                peer.paths.remove(link)
            if peer.endpoint == link:
                had = peer.current is not None
                self._drop_sessions(peer)
                peer.endpoint = None
                if peer.pending is not None:
                    self._indices.pop(peer.pending.local_index, None)
                    peer.pending = None
                    peer.pending_retry_at = None
                if had:
                    self._events.append(SessionDown(peer.node_id, "link closed"))

    def _paths(self, peer: Peer, now: float) -> PathSet:
        paths = peer.paths
        if paths is None:
            paths = peer.paths = PathSet(peer.node_id)
            if peer.endpoint is not None:
                p = paths.add(peer.endpoint, "contact", now)
                p.last_rx = peer.last_received
        return paths

    def _set_endpoint(self, peer: Peer, target, origin: str, now: float) -> None:
        if peer.endpoint is not None and peer.endpoint != target:
            self._paths(peer, now)  # the old endpoint stays a candidate
        if peer.paths is not None:
            peer.paths.add(target, origin, now, keep=peer.endpoint)
        peer.endpoint = target

    def _switch(self, peer: Peer, target, now: float) -> None:
        previous, peer.endpoint = peer.endpoint, target
        if peer.current is not None:  # before the first session, SessionUp names the path
            self.stats["path_changes"] += 1
            self._events.append(PathChanged(peer.node_id, target, previous))
            if peer.pending is not None and peer.paths is not None:
                left = peer.paths.get(previous)
                if left is not None and left.dead:
                    # A rekey's Init went on the path in use only, and that path died: send it
                    # again now on this one, not a retry period later (the deadline runs from
                    # the start). Only then: a path change while both work would cost an Init
                    # each and could starve the handshake.
                    self._send_init(peer, now)

    def _rechoose(self, peer: Peer, now: float) -> None:
        best = self.policy.choose(peer.paths, peer.endpoint, now)
        if best is not None and best != peer.endpoint:
            self._switch(peer, best, now)

    def _rx_path(self, peer: Peer, addr, now: float) -> bool:
        """An authenticated packet from ``peer`` on a path other than the one in use. False: drop it."""
        if type(addr) is Via and addr.peer != peer.node_id.raw:
            self.stats["relay_spoofed"] += 1  # relays vouch for another origin than the session proves
            return False
        if peer.endpoint is None:
            peer.endpoint = addr
            return True
        paths = self._paths(peer, now)
        p = paths.add(addr, "peer", now, keep=peer.endpoint)
        p.last_rx = now
        p.dead = False
        if self.policy.on_rx(paths, peer.endpoint, addr, now):
            self._switch(peer, addr, now)
        return True

    def _emit(self, pkt: bytes, target, now: float) -> None:
        if type(target) is Via:
            self._relay_out(pkt, target, now)
        elif target is not None:
            self._out.append((pkt, target))

    def _relay_out(self, pkt: bytes, via: Via, now: float) -> None:
        """Send an end-to-end packet along ``via``: inside the first hop's session, under a Forward header."""
        try:
            relay = self._by_node.get(NodeId(via.hops[0]))
        except Exception:  # not a 32-byte node ID
            relay = None
        if relay is None or relay.endpoint is None or type(relay.endpoint) is Via or not 1 <= len(via.hops) < 4:
            self.stats["relay_no_path"] += 1
            return
        fwd = b"\x01\x12" + bytes((len(via.hops),)) + b"".join(via.hops[1:]) + via.peer + b"\x00" + pkt
        self.stats["relayed_out"] += 1
        self._send_payload(relay, fwd, now)

    def _on_forward(self, hop: Peer, plain: bytes, now: float, verified: bool = True) -> None:
        """A Forward from ``hop`` (authenticated): for us, or to pass on if ``relay`` admits it
        and ``hop`` has proven it receives at its address (a relay works for no half-open peer)."""
        n = len(plain)
        if n < _FWD_BASE:
            self.stats["malformed_dropped"] += 1
            return
        hops = plain[2]
        h_end = 3 + 32 * hops
        if n <= h_end:
            self.stats["malformed_dropped"] += 1
            return
        trail = plain[h_end]
        t_end = h_end + 1 + 32 * trail
        if not 1 <= hops + trail <= 4 or n <= t_end:
            self.stats["malformed_dropped"] += 1
            return
        me = self.node_id.raw
        packet = plain[t_end:]
        if hops == 0:
            # For us: the first trail entry is the origin, the rest is the way back (reversed).
            if trail == 0 or self._depth >= 2:
                self.stats["malformed_dropped"] += 1
                return
            origin = plain[h_end + 1:h_end + 33]
            back = [hop.node_id.raw]
            for i in range(trail - 1, 0, -1):
                back.append(plain[h_end + 1 + 32 * i:h_end + 33 + 32 * i])
            if origin == me or me in back or len(set(back)) != len(back) or origin in back:
                self.stats["relay_refused"] += 1  # a loop
                return
            self.stats["relayed_in"] += 1
            self._depth += 1
            try:
                self.receive_datagram(packet, Via(tuple(back), origin), now)
            finally:
                self._depth -= 1
            return
        # Pass on: only as a relay that admits it, to a peer with a session on a path of its own.
        nxt_raw = plain[3:35]
        relay = self.relay
        if (relay is None or not verified or nxt_raw == me or nxt_raw == hop.node_id.raw
                or len(packet) > MAX_RELAYED):
            self.stats["relay_refused"] += 1
            return
        try:
            nid = NodeId(nxt_raw)
        except Exception:
            self.stats["relay_refused"] += 1
            return
        nxt = self._by_node.get(nid)
        s = None if nxt is None else nxt.current
        usable = (s is not None and type(nxt.endpoint) is not Via and nxt.endpoint is not None
                  and now - s.created < self.config.reject_after_time)
        if not usable:
            # No session with the next hop. Only for a node registered here (one that may have no
            # other way out, e.g. UDP blocked) does the relay open one, at a bounded rate, to an
            # endpoint it knows itself; otherwise the packet is dropped.
            contact = self.find_contact(nid) if self.find_contact is not None else None
            if contact is None and nxt is not None and is_udp(nxt.endpoint):
                contact = Contact(nxt.public_key, nxt.endpoint)
            # A handshake already under way is one open, however many packets wait for it.
            opening = nxt is not None and nxt.pending is not None
            if (contact is None or opening and len(nxt.queue) >= 8
                    or not opening and not relay.may_open(hop.node_id, nid, now)):
                self.stats["relay_refused"] += 1
                relay.refused("no-session")
                return
        reason = relay.admit(hop.node_id, nid, n, now)
        if reason is not None:
            self.stats["relay_refused"] += 1
            return
        # The hop leaves the list, the sender joins the trail: the output is exactly as long as the input.
        out = (b"\x01\x12" + bytes((hops - 1,)) + plain[35:h_end] + bytes((trail + 1,))
               + plain[h_end + 1:t_end] + hop.node_id.raw + packet)
        self.stats["relay_forwarded"] += 1
        if usable:
            self._encrypt_and_send(nxt, s, out, now)
        else:
            self.send(contact, out, now)  # queued until the handshake completes

    # -- sans-IO surface -------------------------------------------------------
    def receive_datagrams(self, datagrams: list[tuple[bytes, Addr]], now: float) -> None:
        """A batch, as a driver reads it. All the fragments of one payload arriving together and in
        order (as UDP GRO hands them over) are joined at once, with the checks ``_on_fragment`` makes
        per piece made once; anything else goes through :meth:`receive_datagram` one by one."""
        n = len(datagrams)
        if n == 1:  # a lone datagram (a ping, sparse traffic): no run to look for
            data, addr = datagrams[0]
            if type(data) is Train:
                self._on_train(data, addr, now)
            else:
                self.receive_datagram(data, addr, now)
            return
        recv = self.receive_datagram
        i = 0
        while i < n:
            data, addr = datagrams[i]
            if type(data) is Train:  # a UDP GRO read: usually all the pieces of one payload
                self._on_train(data, addr, now)
                i += 1
                continue
            if len(data) > _FRAG_HEADER and data[1] == _T_FRAGMENT and data[14] == 0 and data[0] == VERSION:
                count = data[15]
                if 2 <= count <= MAX_FRAGMENTS and i + count <= n:
                    head = data[:14]
                    total = len(data) - _FRAG_HEADER
                    for j in range(1, count):
                        d, a = datagrams[i + j]
                        if len(d) <= _FRAG_HEADER or d[14] != j or d[15] != count or d[:14] != head or a != addr:
                            break
                        total += len(d) - _FRAG_HEADER
                        if total > MAX_REASSEMBLED:  # the piece-by-piece path refuses it, buffering nothing big
                            break
                    else:
                        self._on_fragment_run(datagrams, i, count, addr, now)
                        i += count
                        continue
            recv(data, addr, now)
            i += 1

    def _on_fragment_run(self, datagrams: list, i: int, count: int, addr: Addr, now: float) -> None:
        local, counter, _index, _count = _FRAG_FIELDS.unpack_from(datagrams[i][0])
        s = self._indices.get(local)
        if type(s) is not Session:
            self.stats["unknown_index_dropped"] += count  # nothing is buffered without a session
            return
        if not self._fresh(s, counter):
            return
        whole = b"".join([memoryview(d)[_FRAG_HEADER:] for d, _ in datagrams[i:i + count]])
        self._open(s, counter, whole, 0, count, addr, now)

    def _on_train(self, train: Train, addr: Addr, now: float) -> None:
        sealed = train.sealed
        if sealed is not None:  # joined as it was read (Train.read)
            local, counter, _index, count = train.first
        else:
            sealed = join(train.data, train.seg, MAX_FRAGMENTS, MAX_REASSEMBLED)
            if sealed is None:  # not exactly one payload's pieces: one by one, as read without GRO
                self.receive_datagrams([(d, addr) for d in train.datagrams()], now)
                return
            local, counter, _index, count = _FRAG_FIELDS.unpack_from(train.data)
        s = self._indices.get(local)
        if type(s) is not Session:
            self.stats["unknown_index_dropped"] += count  # nothing is buffered without a session
            return
        if self._fresh(s, counter):
            self._open(s, counter, sealed, 0, count, addr, now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            if len(data) < 2 or data[0] != VERSION:
                self.stats["malformed_dropped"] += 1
                return
            kind = data[1]
            if kind == _T_DATA:
                self._on_data(data, addr, now)
            elif kind == _T_FRAGMENT:
                self._on_fragment(data, addr, now)
            elif kind == _T_QUERY or kind == _T_ANSWER or kind == _T_PROOF:
                # (before the handshake's kinds: a join's datagrams are nearly all sessionless queries)
                if self.on_query is not None and is_udp(addr):
                    self.on_query(data, addr, now)
                else:
                    self.stats["malformed_dropped"] += 1
            elif kind == _T_INIT:
                self._on_init(data, addr, now)
            elif kind == _T_RESP:
                self._on_response(data, addr, now)
            elif kind == _T_COOKIE:
                self._on_cookie(data, addr, now)
            elif kind == _T_HELLO:
                self._on_hello(data, addr, now)
            elif kind == _T_HELLO_REPLY:
                self._on_hello_reply(data, addr, now)
            elif kind == _T_REACH_TEST and self.on_clear is not None and is_udp(addr):
                self.on_clear(data, addr, now)
            else:
                self.stats["malformed_dropped"] += 1
        except DecodeError:
            self.stats["malformed_dropped"] += 1
        except HandshakeError:
            self.stats["auth_failures"] += 1

    # Timers. Three kinds, none of which costs a pass over every peer per
    # datagram: handshake retries sit in a heap keyed by peer; hello retries are
    # few; session deadlines that only ever move later (idle, expiry,
    # keepalive) are found by a sweep that runs only when the earliest of them
    # is due, and that computes the next one.
    def _wake_retry(self, peer: Peer) -> None:
        self._seq += 1
        heapq.heappush(self._retries, (peer.pending_retry_at, self._seq, peer))

    def _sweep_by(self, when: float) -> None:
        if when < self._next_sweep:
            self._next_sweep = when

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        if now >= self._cookie_rotate_at:
            self._cookie_secret = self._rng.randbytes(32)
            self._cookie_rotate_at = now + _COOKIE_LIFETIME
        while self._retries and self._retries[0][0] <= now:
            when, _, peer = heapq.heappop(self._retries)
            if peer.pending is None or peer.pending_retry_at != when:
                continue  # answered, or re-armed since
            if now - peer.pending_started >= cfg.handshake_timeout:
                self._give_up(peer, "handshake timed out", now)
            elif peer.max_attempts is not None and peer.attempts >= peer.max_attempts:
                if peer.awaiting_record:
                    # No more Inits to the second-hand endpoint, but the record being read may
                    # name paths of the peer's own (add_paths): wait for it, within the timeout.
                    peer.pending_retry_at = now + self._jitter(cfg.handshake_retry)
                    self._wake_retry(peer)
                else:
                    self._give_up(peer, "no answer from an endpoint learned second-hand", now)
            else:
                self._send_init(peer, now)
                if self.paths_wanted and (peer.current is None or now - (peer.last_received or 0.0) > cfg.handshake_retry):
                    attempt = 1 + int((now - peer.pending_started) / cfg.handshake_retry)
                    self._events.append(PathsWanted(peer.node_id, peer.public_key, attempt))
        if self._half_open is not NO_ENTRIES and self._half_open:  # (identity first: no Python __len__ per pass)
            self._expire_half_open(now)
        if self._hello_pending is not NO_ENTRIES and self._hello_pending:
            for endpoint, (nonce, started, retry_at) in list(self._hello_pending.items()):
                expect = self._hello_expect.get(endpoint)
                if expect is not None and now >= retry_at:  # one Hello only to an unverified endpoint
                    del self._hello_pending[endpoint], self._hello_expect[endpoint]
                    self._events.append(Unreachable(node_id_for(expect), endpoint, "no answer to hello"))
                elif now - started >= cfg.handshake_timeout:
                    del self._hello_pending[endpoint]
                    self._events.append(Unreachable(None, endpoint, "no answer to hello"))
                elif now >= retry_at:
                    self._hello_pending[endpoint] = (nonce, started, now + self._jitter(cfg.handshake_retry))
                    self._send_hello(endpoint, nonce)
            self._hellos_done()
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        cfg = self.config
        nxt = float("inf")
        # dict order is insertion order: deterministic for a given run.
        for peer in list(self._peers.values()):
            s = peer.current
            if s is None:
                if peer.pending is None and not peer.queue and peer.budget is None:
                    forget_at = max(peer.last_received or 0.0, peer.last_sent) + cfg.forget_after
                    if now >= forget_at:
                        self.stats["peers_forgotten"] += 1
                        self._forget(peer)
                    else:
                        nxt = min(nxt, forget_at)
                continue
            idle_at = (peer.last_received or s.created) + cfg.idle_timeout
            expire_at = s.created + 3 * cfg.reject_after_time
            if now >= idle_at or now >= expire_at:
                self._drop_sessions(peer)
                self._events.append(SessionDown(peer.node_id, "idle" if now >= idle_at else "expired"))
                continue
            if peer.keepalive_due is not None and now >= peer.keepalive_due:
                peer.keepalive_due = None
                if peer.last_sent < peer.last_data_received:
                    self.stats["keepalives_sent"] += 1
                    self._encrypt_and_send(peer, s, b"", now)
            nxt = min(nxt, idle_at, expire_at)
            if peer.keepalive_due is not None:
                nxt = min(nxt, peer.keepalive_due)
        self._next_sweep = nxt

    def get_timer(self) -> float | None:
        # (Comparisons, not min(): asked after every pass, and usually nothing but the first two.)
        deadline = self._cookie_rotate_at
        if self._next_sweep < deadline:
            deadline = self._next_sweep
        if self._retries and self._retries[0][0] < deadline:
            deadline = self._retries[0][0]
        if self._half_open is not NO_ENTRIES and self._half_open:
            deadline = min(deadline, next(iter(self._half_open.values())).half_open_at + self.config.half_open_timeout)
        if self._hello_pending is not NO_ENTRIES and self._hello_pending:
            for _nonce, started, retry_at in self._hello_pending.values():
                deadline = min(deadline, retry_at, started + self.config.handshake_timeout)
        return deadline

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self):
        return self._events.pop(0) if self._events else None

    # -- the peer table (docs/security.md, item 1) -----------------------------
    def _peer(self, public_key: bytes, now: float) -> Peer:
        peer = self._peers.get(public_key)
        if peer is None:
            if len(self._peers) >= self.config.max_peers:
                self._evict_one(now)
            peer = Peer(public_key, node_id_for(public_key))
            self._peers[public_key] = peer
            self._by_node[peer.node_id] = peer
        return peer

    def _touch(self, peer: Peer) -> None:
        """Move a peer to the young end of the table (the eviction scan starts at the old end)."""
        peers = self._peers
        if peers.get(peer.public_key) is peer:
            del peers[peer.public_key]
            peers[peer.public_key] = peer

    def _evict_one(self, now: float) -> None:
        """Make room for a newcomer: the least valuable peer goes.

        Half-open handshakes first (oldest first); then, among the oldest 64
        peers, the one without a session that has been quiet longest, else
        the quietest session. Peers with a handshake we started and peers the
        node wants kept (``keep``: its routing-table contacts) are skipped
        and moved to the young end, so each eviction costs O(1) amortised.
        """
        if self._half_open is not NO_ENTRIES and self._half_open:
            victim = next(iter(self._half_open.values()))
        else:
            keep = self.keep
            victim, best = None, None
            scanned = [self._peers[pk] for pk in itertools.islice(self._peers, 64)]
            for peer in scanned:
                if peer.pending is not None or (keep is not None and keep(peer.node_id)):
                    self._touch(peer)
                    continue
                score = (peer.current is None, now - max(peer.last_received or 0.0, peer.last_sent))
                if best is None or score > best:
                    victim, best = peer, score
            if victim is None:
                victim = scanned[0]  # every one is valuable: the table must stay bounded anyway
        self.stats["peers_evicted"] += 1
        if victim.current is not None and victim.budget is None:
            self._events.append(SessionDown(victim.node_id, "evicted"))
        self._forget(victim)

    def _forget(self, peer: Peer) -> None:
        """Drop every trace of a peer: sessions, pending handshake, queues."""
        self._drop_sessions(peer)
        if peer.pending is not None:
            self._indices.pop(peer.pending.local_index, None)
        peer.pending = None
        peer.pending_retry_at = None
        peer.queue = ()
        peer.held = ()
        if self._peers.get(peer.public_key) is peer:
            del self._peers[peer.public_key]
        if self._by_node.get(peer.node_id) is peer:
            del self._by_node[peer.node_id]
        self._off_half_open(peer)

    def _off_half_open(self, peer: Peer) -> None:
        """``peer`` out of the half-open table; the table back to the shared empty one when emptied
        (an emptied OrderedDict keeps its room: ~110 bytes of each node that ever answered a handshake)."""
        ho = self._half_open
        if ho.pop(peer.public_key, None) is not None and not ho:
            self._half_open = NO_ENTRIES

    def _expire_half_open(self, now: float) -> None:
        ho, limit = self._half_open, self.config.half_open_timeout
        while ho:
            peer = next(iter(ho.values()))
            if now - peer.half_open_at < limit:
                return
            self.stats["half_open_expired"] += 1
            self._forget(peer)

    def _confirm(self, peer: Peer, addr: Addr, now: float) -> None:
        """A half-open peer sent under its new session: it receives at ``addr``. Keep it."""
        peer.budget = None
        peer.verified_endpoint = addr
        self._off_half_open(peer)
        self.stats["confirmed"] += 1
        self.admission.remember(self._source(addr), now)
        self._events.append(SessionUp(peer.node_id, peer.public_key, addr, False))
        held, peer.held = peer.held, ()
        s = peer.current
        for payload in held:
            if s is not None:
                self._encrypt_and_send(peer, s, payload, now)

    def _within_budget(self, peer: Peer, payload: bytes) -> bool:
        """Before return routability: spend the Init's bytes on this payload, or hold it."""
        size = len(payload) + _DATA_HEADER + 16
        if size > self.config.max_datagram:
            size += -(-size // (self.config.max_datagram - _FRAG_HEADER)) * 2
        if size <= peer.budget:
            peer.budget -= size
            return True
        if not peer.held:
            peer.held = [payload]
        elif len(peer.held) < 16:
            peer.held.append(payload)
        self.stats["held_until_confirmed"] += 1
        return False

    # -- sending --------------------------------------------------------------
    def _jitter(self, base: float) -> float:
        return base * (1.0 + 0.3 * self._rng.random())

    def _new_index(self, owner) -> int:
        while True:
            idx = self._rng.getrandbits(32)
            if idx and idx not in self._indices:
                self._indices[idx] = owner
                return idx

    def _send_payload(self, peer: Peer, payload: bytes, now: float) -> None:
        s = peer.current
        cfg = self.config
        lr = peer.last_received
        if lr is not None and now - lr >= self.quiet_after and peer.quiet_at <= lr:
            # Sending, but nothing heard for a while: is the path still there? (reach probes it)
            peer.quiet_at = now
            self._events.append(PathQuiet(peer.node_id, peer.endpoint))
        if (s is not None and now - s.created < cfg.reject_after_time and s.counter < cfg.reject_after_messages
                and s.blocks < s.block_limit):
            if peer.budget is not None and not self._within_budget(peer, payload):
                return
            steer = self.steer
            targets = None if steer is None or peer.budget is not None else steer(peer.node_id, payload, now)
            if targets is None:
                self._encrypt_and_send(peer, s, payload, now)
            elif len(targets) == 1:
                self._encrypt_and_send(peer, s, payload, now, targets[0])
            else:
                self._encrypt_and_send_twice(peer, s, payload, now, targets[0], targets[1])
            if (
                peer.pending is None
                and (now - s.created >= cfg.rekey_after_time + (0 if s.initiator else 10.0)
                     or s.counter >= cfg.rekey_after_messages or s.blocks >= s.block_limit / 2)
            ):
                peer.rekeys += 1
                self._start_handshake(peer, now)
            return
        if not peer.queue:
            peer.queue = []
        elif len(peer.queue) >= cfg.max_queued:
            del peer.queue[0]
            self.stats["queue_dropped"] += 1
        peer.queue.append(payload)
        if peer.pending is None:
            if s is not None:
                peer.rekeys += 1
            self._start_handshake(peer, now)

    def _encrypt_and_send(self, peer: Peer, s: Session, payload: bytes, now: float, target=None) -> None:
        counter = s.counter
        s.counter = counter + 1
        s.blocks += (len(payload) >> 4) + 2
        aead = s._send
        if aead is None:  # not hot yet: the property builds it (and keeps it once hot)
            aead = s.send
        size = len(payload) + _TAG  # what it seals to
        ep = peer.endpoint if target is None else target
        relayed = type(ep) is Via
        limit = self.config.max_datagram
        if relayed:
            # Through a relay, a large payload goes whole inside one Forward and the hop session cuts
            # that in pieces: one AEAD per hop per payload, not one per piece. A payload too large
            # for that is cut here, leaving room for the Forward header and the hop session.
            if size + _DATA_HEADER + _FWD_BASE + 32 * len(ep.hops) <= MAX_MESSAGE_SIZE:
                limit = MAX_MESSAGE_SIZE
            else:
                limit -= _FWD_OVERHEAD + 32 * len(ep.hops)
        elif peer.max_datagram and ep == peer.max_datagram_path:  # the UDP path path MTU discovery measured
            limit = peer.max_datagram
        step = limit - _FRAG_HEADER
        if size + _DATA_HEADER <= limit or size > MAX_REASSEMBLED or size > step * MAX_FRAGMENTS:
            ct = aead.encrypt(_NONCE.pack(counter), payload, None)
            pkt = _HEAD.pack(VERSION, _T_DATA, s.remote_index, counter) + ct
            if relayed:
                self._relay_out(pkt, ep, now)
            else:
                self._out.append((pkt, ep))
            peer.bytes_out += len(pkt)
            peer.packets_out += 1
        else:
            # Sealed once, cut in pieces: the receiver authenticates the whole after reassembly.
            count = -(-size // step)
            head = _HEAD.pack(VERSION, _T_FRAGMENT, s.remote_index, counter)
            if self.trains and (type(ep) is tuple or type(ep) is LinkAddr) and ep is not _CAPTURE:
                seal = self._seal
                if seal is None:
                    seal = self._seal = SealBuffer(MAX_REASSEMBLED)
                # Sealed into the buffer and cut from it at once (train.py): one copy, no view made per piece.
                self._out.append((Train(seal.seal_cut(aead, _NONCE.pack(counter), payload, head, step)[0],
                                        limit, count), ep))
            else:
                mv = memoryview(aead.encrypt(_NONCE.pack(counter), payload, None))  # one copy per piece, not two
                if relayed:
                    for i in range(count):
                        self._relay_out(head + bytes((i, count)) + mv[i * step:(i + 1) * step], ep, now)
                else:
                    self._out.extend([(head + bytes((i, count)) + mv[i * step:(i + 1) * step], ep)
                                      for i in range(count)])
            peer.bytes_out += size + count * _FRAG_HEADER
            peer.packets_out += count
            if not peer.pmtu_asked and type(ep) is tuple and len(self.pmtu_wanted) < 1024:  # worth measuring
                peer.pmtu_asked = True
                self.want_pmtu(peer.node_id)
        peer.last_sent = now

    def _encrypt_and_send_twice(self, peer: Peer, s: Session, payload: bytes, now: float, first, second) -> None:
        """Seal once, send the same datagrams on two paths (a duplicated traffic class). Pieces are
        cut to the direct datagram size even for a relayed copy, so both copies are the same bytes."""
        out, self._out = self._out, []
        try:
            self._encrypt_and_send(peer, s, payload, now, _CAPTURE)
            made = self._out
        finally:
            self._out = out
        for target in (first, second):
            for pkt, _ in made:
                self._emit(pkt, target, now)
        n = len(made)
        peer.packets_out += n
        peer.bytes_out += sum(len(p) for p, _ in made)
        self.stats["duplicated_out"] += n

    def _start_handshake(self, peer: Peer, now: float) -> None:
        if peer.endpoint is None:
            return
        if self.paths_wanted and peer.current is None:
            self._events.append(PathsWanted(peer.node_id, peer.public_key, 0))
        peer.pending_started = now
        peer.attempts = 0
        peer.awaiting_record = False
        peer.pending_early = b""
        offer = self._offer
        room = MAX_EARLY_DATA if peer.max_attempts is None else SECOND_HAND_EARLY
        if peer.queue and len(peer.queue[0]) <= room - (len(offer) + 4 if offer else 0):
            peer.pending_early = self._padded(peer.queue.pop(0), peer.pad_to, offer)
        elif offer:
            peer.pending_early = self._padded(b"", peer.pad_to, offer)
        peer.pad_to = 0
        self.stats["handshakes_initiated"] += 1
        self._send_init(peer, now)

    @property
    def _offer(self) -> bytes:
        """The cipher offer an Init carries (ciphers.py); none when only the default is accepted."""
        ciphers = self.config.ciphers
        return b"" if ciphers == cph.DEFAULT else cph.offer_tail(ciphers)

    @staticmethod
    def _padded(early: bytes, pad_to: int, tail: bytes = b"") -> bytes:
        """Early data wrapped in EarlyData so that its Init is ``pad_to`` bytes (if it can be),
        with ``tail`` (a cipher offer or choice, ciphers.py) first in the padding."""
        # An Init is 164 bytes plus its early data; EarlyData adds 4 (header, length).
        room = min(pad_to - 164, MAX_EARLY_DATA) - 4 - len(early) - len(tail)
        if tail:
            return encode(EarlyData(early, tail + bytes(max(0, room) if pad_to > 0 else 0)))
        if pad_to <= 0 or room <= 0:
            return early
        return encode(EarlyData(early, bytes(room)))

    @staticmethod
    def _unpadded(early: bytes) -> tuple[bytes | None, tuple[int, ...] | None]:
        """Early data as a handshake message carried it, out of its EarlyData padding if padded
        (``_padded``), and the ciphers the padding states (None: none); payload None if it claims
        to be padded but does not decode. HandshakeError: a malformed cipher list."""
        if early[:2] != b"\x01\x08":  # version 1, EarlyData
            return early, None
        try:
            msg = decode(early)
        except DecodeError:
            return None, None
        return msg.payload, cph.parse_tail(msg.padding)

    def _send_init(self, peer: Peer, now: float) -> None:
        if peer.pending is not None:
            self._indices.pop(peer.pending.local_index, None)
        cookie = peer.cookie if peer.cookie is not None and now - peer.cookie_at < _COOKIE_LIFETIME else None
        ts = hs.tai64n(now)
        if ts <= peer.last_timestamp_sent:  # strictly increasing, even within one clock tick
            ts = (int.from_bytes(peer.last_timestamp_sent, "big") + 1).to_bytes(12, "big")
        peer.last_timestamp_sent = ts
        idx = self._new_index(peer)
        try:
            raw, state = hs.create_init(self.identity, peer.public_key, idx, now, self._rng,
                                        peer.pending_early, cookie, ts, peer.static_dh)
        except HandshakeError as exc:
            self._indices.pop(idx, None)
            self._give_up(peer, str(exc), now)
            return
        peer.pending = state
        peer.static_dh = state.static_dh
        peer.attempts += 1
        peer.pending_sent = now
        peer.pending_retry_at = now + self._jitter(self.config.handshake_retry)
        self._wake_retry(peer)
        if peer.current is None and peer.paths is not None:
            # A first handshake goes out on every live path at once (the first to arrive wins;
            # the responder drops the others as replays of the same timestamp), save the claimed
            # paths whose Inits are spent (``_grant``).
            grants = peer.grants
            for target in self.policy.handshake_targets(peer.paths, peer.endpoint):
                if grants:
                    left = grants.get(target)
                    if left is not None:
                        p = peer.paths.get(target)
                        if p is not None and p.heard:
                            del grants[target]  # heard there since: a path like any other
                        elif left <= 0:
                            self.stats["claimed_inits_withheld"] += 1
                            continue
                        else:
                            grants[target] = left - 1
                self._emit(raw, target, now)
        else:
            self._emit(raw, peer.endpoint, now)
        peer.last_sent = now

    def _give_up(self, peer: Peer, reason: str, now: float) -> None:
        peer.early_rx = ()
        started = peer.pending_started
        if peer.pending is not None:
            self._indices.pop(peer.pending.local_index, None)
        peer.pending = None
        peer.pending_retry_at = None
        early, peer.pending_early = peer.pending_early, b""
        early = self._unpadded(early)[0] or b""  # our own Init's: the payload, without padding or offer
        dropped = len(peer.queue) + (1 if early else 0)
        peer.queue = ()
        self.stats["handshakes_failed"] += 1
        cur = peer.current
        if cur is not None and not cur.initiator and cur.created >= started:
            # The peer's own Init reached us while ours waited (two symmetric NATs: only one
            # direction's Init gets through): it is reachable, and what ours queued went in
            # the session that came up. Not a failure anyone should act on. What our Init
            # carried as early data goes there now (a ping waited for its deadline before).
            if early and now - cur.created < self.config.reject_after_time:
                self._encrypt_and_send(peer, cur, early, now)
                dropped -= 1
            self.stats["queue_dropped"] += dropped
            return
        self.stats["queue_dropped"] += dropped
        cfg = self.config
        if (
            cur is not None and cur.created < started and (peer.last_received or -1e18) >= started
            and now - cur.created < cfg.reject_after_time and cur.counter < cfg.reject_after_messages
            and cur.blocks < cur.block_limit
        ):
            # A rekey went unanswered, but the peer kept sending on the session it was to
            # replace, and that session may still be used: the peer is reachable. Carry on
            # with it; the next packet sent starts the rekey again.
            self.stats["rekeys_unanswered"] += 1
            return
        self._events.append(Unreachable(peer.node_id, peer.endpoint, reason))
        if peer.current is None and not peer.older:
            self._forget(peer)  # never had a session: nothing worth remembering

    def _send_hello(self, endpoint: Addr, nonce: int) -> None:
        pkt = encode(Hello(nonce, bytes(HELLO_MIN_SIZE - 10)))
        self._out.append((pkt, endpoint))

    # -- receiving ------------------------------------------------------------
    def _on_data(self, data: bytes, addr: Addr, now: float) -> None:
        if len(data) < _DATA_HEADER + 16:
            self.stats["malformed_dropped"] += 1
            return
        local, counter = _DATA_FIELDS.unpack_from(data)
        owner = self._indices.get(local)
        if type(owner) is not Session:
            if isinstance(owner, Peer) and owner.pending is not None and len(owner.early_rx) < 16:
                # The responder may send right after its Response, and the two
                # can swap places on the way: hold the data until the Response
                # arrives (it is authenticated then, not now).
                if not owner.early_rx:
                    owner.early_rx = []
                owner.early_rx.append((data, addr))
                return
            self.stats["unknown_index_dropped"] += 1
            return
        if not self._fresh(owner, counter):
            return
        self._open(owner, counter, data[14:], len(data), 1, addr, now)

    def _on_fragment(self, data: bytes, addr: Addr, now: float) -> None:
        """A piece of a large payload: buffered (bounded) until all pieces are in, then opened whole."""
        if len(data) < _FRAG_HEADER + 1:
            self.stats["malformed_dropped"] += 1
            return
        local, counter, index, count = _FRAG_FIELDS.unpack_from(data)
        s = self._indices.get(local)
        if type(s) is not Session:
            self.stats["unknown_index_dropped"] += 1  # nothing is buffered without a session
            return
        if not 2 <= count <= MAX_FRAGMENTS or index >= count:
            self.stats["malformed_dropped"] += 1
            return
        if not self._fresh(s, counter):
            return
        # A view, not a copy: the pieces are copied once, when the whole is joined.
        r = self._reassembly
        if r is None:
            r = self._reassembler()
        whole = r.add((local, counter), index, count, memoryview(data)[16:], now)
        if whole is None:
            return
        if whole is REFUSED:  # a count that changed, or more bytes than any payload
            self.stats["malformed_dropped"] += 1
            return
        self._open(s, counter, whole, len(data), count, addr, now)

    def _fresh(self, s: Session, counter: int) -> bool:
        """The window's pre-check before any decryption or buffering (it moves only in ``_open``)."""
        w = s.window
        if counter >> 56:
            if (counter >> 56) & 15 in self.worker_slots:
                self.stats["replays_dropped"] += 1  # another process of ours holds that partition's window
                return False
            fresh = w.check(counter)
        else:  # partition 0: a counter past the top is fresh (check's first answer, without the call)
            fresh = counter > w.top or w.check(counter)
        if not fresh or counter >= self.config.reject_after_messages:
            self.stats["replays_dropped"] += 1
            if w.is_duplicate(counter):
                self.stats["duplicates_dropped"] += 1  # a copy of one accepted (a duplicated class, or the network)
            return False
        return True

    def _fragments_expired(self, key) -> None:
        self.stats["fragments_expired"] += 1

    def _open(self, s: Session, counter: int, ct: bytes, size: int, datagrams: int, addr: Addr, now: float) -> None:
        """Authenticate and decrypt one payload, then hand it on (the window moves only after the tag)."""
        try:
            aead = s._recv
            if aead is None:  # not hot yet: the property builds it (and keeps it once hot)
                aead = s.recv
            plain = aead.decrypt(_NONCE.pack(counter), ct, None)
        except InvalidTag:
            self.stats["auth_failures"] += 1
            return
        if now - s.created >= self.config.reject_after_time:
            self.stats["expired_dropped"] += 1
            return
        if not s.window.accept(counter):
            self.stats["replays_dropped"] += 1
            return
        s.opened += 1
        s.heard = now
        peer = s.peer
        if s is not peer.current:
            self._adopt(peer, s)
        if s.answered is not None:
            if s.answered == addr and addr != peer.endpoint and type(addr) is not Via:
                # The first packet under keys only our Response (sent to ``addr``) gave: whoever sent
                # it reads ``addr``. Proven, as a probe answered there: the session may follow.
                p = self._paths(peer, now).add(addr, "handshake", now)
                p.confirmed = now
            s.answered = None
        if addr != peer.endpoint:
            if not self._rx_path(peer, addr, now):
                return
        elif peer.paths is not None:
            p = peer.paths.paths.get(addr)
            if p is not None:
                p.last_rx = now
        peer.verified_endpoint = addr
        peer.last_received = now
        peer.bytes_in += size if datagrams == 1 else len(ct) + datagrams * _FRAG_HEADER
        peer.packets_in += datagrams
        if peer.budget is not None:
            self._confirm(peer, addr, now)  # it derived keys from our Response: it receives at addr
        if not plain:
            return  # keepalive
        peer.last_data_received = now
        if peer.keepalive_due is None and self.config.keepalive > 0:
            peer.keepalive_due = now + self.config.keepalive
            self._sweep_by(peer.keepalive_due)
        self._deliver(peer, s, plain, addr, now, True)

    def _deliver(self, peer: Peer, s: Session, plain: bytes, addr, now: float, verified: bool) -> None:
        """One authenticated payload (transport data, or early data in an Init): pings and pongs
        are the transport's own, a Forward is relayed or received; the rest goes to the sink or
        out as ``Received``."""
        kind = plain[1] if len(plain) >= 2 and plain[0] == VERSION else None
        if kind == _PING:
            try:
                ping = decode(plain)
            except DecodeError:
                self.stats["malformed_dropped"] += 1
                return
            pong = encode(Pong(ping.ping_id))
            if peer.budget is None or self._within_budget(peer, pong):
                self._encrypt_and_send(peer, peer.current or s, pong, now)
        elif kind == _PONG:
            try:
                pong = decode(plain)
            except DecodeError:
                self.stats["malformed_dropped"] += 1
                return
            sent = None if peer.pings is None else peer.pings.pop(pong.ping_id, None)
            if sent is not None:
                rtt = max(0.0, now - sent)
                peer.rtt_sample(rtt)
                self._events.append(PongReceived(peer.node_id, pong.ping_id, rtt))
        elif kind in self.sink_types:
            self.sink(peer.node_id, plain, now)
        elif kind == _FORWARD:
            self._on_forward(peer, plain, now, verified)
        else:
            self._events.append(Received(peer.node_id, peer.public_key, addr, plain, verified))

    def _cookie_for(self, addr: Addr) -> bytes:
        return hs.MAC(self._cookie_secret, f"{addr[0]}|{addr[1]}".encode())

    def _on_init(self, data: bytes, addr: Addr, now: float) -> None:
        # Cheapest first: size and mac1 (one keyed hash) on the raw bytes, then
        # the admission checks, and only then a decode and the first DH.
        if len(data) < _INIT_MIN:
            self.stats["malformed_dropped"] += 1
            return
        if not hs.check_mac1(data, self.identity.public_key):
            self.stats["auth_failures"] += 1
            return
        if not self._admit_init(data, addr, now):
            return
        msg = decode(data)
        assert isinstance(msg, HandshakeInit)
        result = hs.consume_init(self.identity, msg, self._static_dh_of)
        if type(addr) is Via and node_id_for(result.peer_public).raw != addr.peer:
            self.stats["relay_spoofed"] += 1  # the relays vouch for another origin than the Init proves
            return
        self._accept_init(result, len(data), addr, now)

    def _static_dh_of(self, public_key: bytes) -> bytes | None:
        peer = self._peers.get(public_key)
        return None if peer is None else peer.static_dh

    def _source(self, addr):
        """The address a packet's sender is limited by (admission.py): its own, or for one that
        came through relays, the address of the relay that handed it to us (a relay is one
        source however many nodes it carries; it has per-peer limits of its own)."""
        if type(addr) is Via:
            hop = self._by_node.get(NodeId(addr.hops[0]))
            ep = None if hop is None else hop.endpoint
            return ep if ep is not None and type(ep) is not Via else ("0.0.0.0", 0)
        return addr

    def lost_by_peer(self, node_id: NodeId, addr: Addr, now: float, quiet: float = 2.0) -> bool:
        """``node_id`` proved it receives at ``addr`` in a sessionless query (core/dht/sessionless.py),
        which it sends only when it holds no session with us: a session of ours with it that has
        carried nothing from it for ``quiet`` seconds is one it lost (it restarted, maybe elsewhere).
        Drop it and make ``addr`` its endpoint, so the next payload starts a handshake there."""
        peer = self._by_node.get(node_id)
        if peer is None or peer.current is None or peer.pending is not None or peer.budget is not None:
            return False
        if (peer.last_received or 0.0) > now - quiet:
            return False  # (a handshake it answered a moment ago: its confirmation may still be on the way)
        self._drop_sessions(peer)
        self._events.append(SessionDown(peer.node_id, "lost by the peer"))
        if addr != peer.endpoint:
            self._set_endpoint(peer, addr, "contact", now)
        peer.verified_endpoint = addr
        self.stats["sessions_lost_by_peer"] += 1
        return True

    def admit_query(self, data: bytes, addr: Addr, now: float) -> bool:
        """A sessionless DHT query (its tag where an Init has its index, its macs last, as an
        Init's) passes the same load check, cookie round trip and per-source buckets as an Init."""
        return self._admit_init(data, addr, now)

    def _admit_init(self, data: bytes, addr: Addr, now: float) -> bool:
        """Under load: a cookie round trip first, then a token bucket per source (admission.py)."""
        if not self.admission.note_init(now):
            return True
        if not hs.check_mac2(data, self._cookie_for(addr)):
            # CookieReply (50 bytes) < any Init (148+): no amplification towards a spoofed source.
            nonce = self._rng.randbytes(12)
            enc = ChaCha20Poly1305(self._own_cookie_key).encrypt(nonce, self._cookie_for(addr), data[-32:-16])
            self._emit(encode(CookieReply(int.from_bytes(data[2:6], "big"), nonce, enc)), addr, now)
            self.stats["cookies_sent"] += 1
            return False
        if not self.admission.allow_handshake(self._source(addr), now):
            self.stats["handshakes_rate_limited"] += 1
            return False
        return True

    def _accept_init(self, result: hs.ResponderResult, init_size: int, addr: Addr, now: float) -> None:
        payload, offered = self._unpadded(result.payload)  # a malformed offer fails the handshake here
        peer = self._peers.get(result.peer_public)
        if peer is None:
            peer = self._half_open_peer(result.peer_public, now)
        elif result.timestamp <= peer.greatest_timestamp:
            self.stats["replays_dropped"] += 1
            return
        peer.greatest_timestamp = result.timestamp
        peer.static_dh = result.static_dh
        idx = self._new_index(None)
        cookie = peer.cookie if peer.cookie is not None and now - peer.cookie_at < _COOKIE_LIFETIME else None
        # The pick goes back in the Response (sealed, bound to the Init's transcript) whenever the
        # Init offered; an Init without an offer gets ChaCha20-Poly1305 and the Response as before.
        cipher = cph.choose(offered, self.config.ciphers)
        answer = b"" if offered is None else self._padded(b"", 0, cph.offer_tail((cipher,)))
        raw, send_key, recv_key = hs.create_response(result, idx, self._rng, answer, cookie)
        session = Session(idx, result.peer_index, send_key, recv_key, now, False, peer, cipher)
        session.answered = addr
        if cipher == cph.AES_256_GCM:
            self.stats["sessions_aes_256_gcm"] += 1
        self._indices[idx] = session
        self._emit(raw, addr, now)
        if peer.budget is not None:
            # Half-open: a retransmitted Init replaces the session, and what may be sent
            # to it before it proves return routability is what its Init weighed.
            self._drop_sessions(peer)
            peer.budget = max(0, init_size - len(raw))
            peer.half_open_at = now
            self._half_open.move_to_end(peer.public_key)
        if addr != peer.endpoint:
            self._rx_path(peer, addr, now)
        peer.last_received = now
        peer.last_sent = now
        self._install(peer, session, now)
        if payload is None:
            self.stats["malformed_dropped"] += 1
            payload = b""
        if payload:
            peer.last_data_received = now
            self._deliver(peer, session, payload, addr, now, peer.budget is None)

    def _half_open_peer(self, public_key: bytes, now: float) -> Peer:
        """A peer for an identity we do not know, on probation until it proves return routability."""
        if len(self._half_open) >= self.config.max_half_open:
            self.stats["peers_evicted"] += 1
            self._forget(next(iter(self._half_open.values())))
        peer = self._peer(public_key, now)
        peer.budget = 0
        peer.half_open_at = now
        if self._half_open is NO_ENTRIES:
            self._half_open = OrderedDict()
        self._half_open[public_key] = peer
        self.stats["half_open"] += 1
        return peer

    def _on_response(self, data: bytes, addr: Addr, now: float) -> None:
        msg = decode(data)
        assert isinstance(msg, HandshakeResponse)
        peer = self._indices.get(msg.receiver_index)
        if not isinstance(peer, Peer) or peer.pending is None or peer.pending.local_index != msg.receiver_index:
            self.stats["unknown_index_dropped"] += 1
            return
        if not hs.check_mac1(data, self.identity.public_key):
            self.stats["auth_failures"] += 1
            return
        if type(addr) is Via and addr.peer != peer.node_id.raw:
            self.stats["relay_spoofed"] += 1
            return
        state = peer.pending
        answer, send_key, recv_key = hs.consume_response(self.identity, state, msg)
        cipher = cph.CHACHA20_POLY1305  # a responder that states no choice (an older one) uses it
        if answer:
            _, chosen = self._unpadded(answer)
            if chosen is not None:
                if len(chosen) != 1 or chosen[0] not in self.config.ciphers:
                    raise HandshakeError(f"the responder chose cipher {chosen}, not one we offered")
                cipher = chosen[0]
        session = Session(state.local_index, msg.sender_index, send_key, recv_key, now, True, peer, cipher)
        if cipher == cph.AES_256_GCM:
            self.stats["sessions_aes_256_gcm"] += 1
        self._indices[state.local_index] = session
        peer.pending = None
        peer.pending_retry_at = None
        peer.pending_early = b""
        rtt = max(0.0, now - peer.pending_sent)
        # The Response proves that the responder read our Init: at an address we sent it to. From
        # any other source it proves nothing about that source (the key holder may have put any
        # there, and the session's answers would follow): that source is left to validation.
        sent_to = addr == peer.endpoint or (peer.current is None and peer.paths is not None
                                            and (q := peer.paths.get(addr)) is not None and not q.dead)
        if sent_to and (peer.paths is not None or addr != peer.endpoint):
            p = self._paths(peer, now).add(addr, "handshake", now)
            p.confirmed, p.rtt, p.last_rx = now, rtt, now  # a round trip on it: an answer came back
        if addr != peer.endpoint:
            if sent_to or peer.endpoint is None:
                self._switch(peer, addr, now)
            else:
                self._rx_path(peer, addr, now)  # heard there: reach probes it before anything follows
        peer.last_received = now
        peer.rtt_sample(rtt)
        peer.verified_endpoint = addr
        peer.max_attempts = None
        self.admission.remember(self._source(addr), now)
        self._install(peer, session, now)
        if session.counter == 0:
            # Nothing queued: confirm at once, so the responder keeps the session
            # and releases what it holds for us (WireGuard's first keepalive).
            self._encrypt_and_send(peer, session, b"", now)
        held, peer.early_rx = peer.early_rx, ()
        for data_held, addr_held in held:
            self._on_data(data_held, addr_held, now)

    def _adopt(self, peer: Peer, s: Session) -> None:
        """A packet opened on an older session: after a crossed first handshake, move to it.

        When both ends' Inits cross, each installs the other's session and then its own, and
        sends on the one it started: both are initiators, so both rekey at the same moment and
        the rekeys cross again, two handshakes every rekey interval where one would do. The end
        with the larger key gives way: once the peer sends on the session the peer started
        (proof the peer has it), that session becomes current and ours older, so only the peer
        rekeys on time. Only for sessions made within one handshake's life of each other, and
        never while a handshake of ours is pending."""
        cur = peer.current
        if (
            cur is None
            or s.initiator
            or not cur.initiator
            or peer.pending is not None
            or abs(s.created - cur.created) > self.config.handshake_timeout
            or self.identity.public_key < peer.public_key
        ):
            return
        older = [cur, *(o for o in peer.older if o is not s)]
        peer.older = older
        peer.current = s
        self.stats["crossed_adopted"] += 1

    def _install(self, peer: Peer, session: Session, now: float) -> None:
        """Make a new session current; the old current keeps receiving for a while.

        At most ``MAX_OLDER`` older sessions stay; beyond that the one the peer has gone longest
        without using goes (by ``heard``: made, or last opened a packet), not simply the oldest:
        after a crossed first handshake each end sends on the session it started, so the one
        the peer sends on can be the oldest we have, and a crossed rekey then brings two new
        sessions at once. Retiring by age dropped everything the peer still sent until it
        switched (nat-mix: a Pong lost as an unknown index)."""
        was_up = peer.current is not None
        if peer.current is not None:
            peer.older = [peer.current, *peer.older]
            while len(peer.older) > MAX_OLDER:
                stale = min(reversed(peer.older), key=_heard)  # on a tie, the one installed first
                peer.older.remove(stale)
                self._indices.pop(stale.local_index, None)
        peer.current = session
        self.stats["handshakes_completed"] += 1
        self._touch(peer)
        self._sweep_by(now + min(self.config.idle_timeout, 3 * self.config.reject_after_time))
        if not was_up and peer.budget is None:
            self._events.append(SessionUp(peer.node_id, peer.public_key, peer.endpoint, session.initiator))
        queued, peer.queue = peer.queue, ()
        for payload in queued:
            self._encrypt_and_send(peer, session, payload, now)

    def _drop_sessions(self, peer: Peer) -> None:
        for s in (peer.current, *peer.older):
            if s is not None:
                self._indices.pop(s.local_index, None)
        peer.current = None
        peer.older = ()
        peer.keepalive_due = None

    def _on_cookie(self, data: bytes, addr: Addr, now: float) -> None:
        msg = decode(data)
        assert isinstance(msg, CookieReply)
        peer = self._indices.get(msg.receiver_index)
        if not isinstance(peer, Peer) or peer.pending is None:
            if self.on_query_cookie is None or not self.on_query_cookie(msg, now):
                self.stats["unknown_index_dropped"] += 1
            return
        try:
            cookie = ChaCha20Poly1305(hs.cookie_key(peer.public_key)).decrypt(
                msg.nonce, msg.encrypted_cookie, peer.pending.mac1
            )
        except InvalidTag:
            self.stats["auth_failures"] += 1
            return
        peer.cookie, peer.cookie_at = cookie, now
        self.stats["cookies_received"] += 1
        # Retry at once with mac2 rather than waiting out the retransmit timer.
        self._send_init(peer, now)

    def _on_hello(self, data: bytes, addr: Addr, now: float) -> None:
        if len(data) < HELLO_MIN_SIZE or type(addr) is Via:  # key discovery is for underlay endpoints
            self.stats["hello_dropped"] += 1
            return
        msg = decode(data)
        assert isinstance(msg, Hello)
        if not self.admission.allow_hello(self._source(addr), now):  # per address, per prefix, then in all
            self.stats["hello_dropped"] += 1
            return
        self.stats["hello_replies"] += 1
        self._emit(encode(HelloReply(msg.nonce, self.identity.public_key)), addr, now)

    def _on_hello_reply(self, data: bytes, addr: Addr, now: float) -> None:
        msg = decode(data)
        assert isinstance(msg, HelloReply)
        pending = self._hello_pending.get(addr)
        if pending is None or pending[0] != msg.nonce:
            self.stats["unknown_index_dropped"] += 1
            return
        del self._hello_pending[addr]
        expect = self._hello_expect.pop(addr, None)
        self._hellos_done()
        if expect is not None and msg.public_key != expect:
            self._events.append(Unreachable(node_id_for(expect), addr, "another key answered there"))
            return
        if msg.public_key == self.identity.public_key:
            self._events.append(Unreachable(None, addr, "that endpoint is this node itself"))
            return
        self.connect(addr, now, msg.public_key)

"""Sessionless DHT queries: FIND_NODE / FindNear / FIND_VALUE (and STORE where our address is
proven) to a node without a session.

Theory of operation
-------------------
A first request to a node over a session costs a Noise IK handshake (ten
scalar multiplications across both ends, and a session each end keeps).
A lookup asks ~20 nodes it has never met, so joins and the lookup phase of
puts were mostly handshakes (bench/results/dht.md). Here a lookup request
to a node we hold no session with goes in one datagram, DhtQuery (0x32),
and comes back in one, DhtAnswer (0x33); neither end keeps a session:

* **Keys.** ``ss`` = X25519(our static, their static), both static keys in
  their X25519 form (core/identity.py) as in the handshake's ss. It never
  changes for a pair of keys, so each end computes it once and keeps it
  (bounded cache, or the transport's peer entry): one X25519 per side on
  first contact, none after. Per query, ``k_query, k_answer =
  KDF(HASH(label | asker key | answerer key | nonce), ss, 2)`` with the
  asker's random 16-byte nonce: both keys, and the direction, are bound in
  (a query reflected back to its sender opens under other keys).
* **Query** (asker to answerer): the asker's Ed25519 key in the clear, the
  nonce, the request sealed under k_query (the header as associated data),
  then mac1 (keyed by the answerer's key, as an Init's) and mac2 (the
  under-load cookie, as an Init's). The sealed plaintext is ``echo`` (a
  proof-of-address cookie from an earlier answer, or zeros), the request,
  and zero padding: the query is padded to the largest answer it may get.
  An empty request is a *proof*: it is never answered.
* **Answer**: the query's tag, a random 12-byte AEAD nonce, and ``flags |
  cookie | reply`` sealed under k_answer. It is **never larger than the
  query** it answers: the contacts farthest from the target are dropped until it fits; a
  record that still does not fit is not sent (flag TOO_LARGE: the asker
  asks again over a session). A random nonce, because the answerer keeps no
  state: a replayed query gets a new answer under the same key, never the
  same nonce.
* **Proof of address.** The answer carries ``cookie = MAC(secret, asker key
  | source address)`` with a secret that rotates every two minutes (the
  previous one is still accepted). Only whoever receives at that address
  can read it (it is sealed to the asker). A query or proof that echoes a
  valid cookie proves the asker receives at its source address, and only
  then does the answerer offer it to its routing table (bounded, with the
  DHT's per-peer and per-prefix request quotas). An asker whose answer says
  it was not learned, and that the answerer's table has room for it (flag
  WANTED), sends a proof at once (one datagram, no answer): a 50-byte
  DhtProof (0x34: its key and the cookie, in the clear) where the answer
  also says the answerer takes one (flag PROOF), else an empty DhtQuery. The
  cookie is bound to the asker's key and source address and reached the
  asker sealed: whoever sends it back from that address receives there, and
  an eavesdropper who copies it can only repeat that same claim, from that
  address, for the cookie's two to four minutes (it cannot seal a query or a
  STORE with it). Checking one costs a keyed BLAKE2s, as mac1 does; a proof
  is never answered.
* **No state per query** on the answerer; per-source limits and the
  under-load cookie round trip are the transport's, as for Inits
  (admission.py). A replay costs the answerer one KDF and one AEAD, and
  sends at most the replay's size back to its source.

* **STORE** rides a query only to a node whose cookie for us is younger than
  60 s (one our lookup just asked), and is stored only if the echo proves
  the address; otherwise it goes over a session.

The asker keeps its own requests (tag -> keys) until answered; one without an
answer after ``fallback_after`` (0.5 s) goes on over the transport (a handshake,
with its retries and path search), its late answer still welcome for 10 s.
Security argument: docs/security.md, "Sessionless DHT queries"; layouts:
docs/wire/dht.md. Sans-IO: ``now`` and the ``rng`` come in.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys
from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from weftnet.core import wire
from weftnet.core.contact import Addr, Contact, share_endpoint, shared_contact, sweep as sweep_contacts
from weftnet.core.counters import Counters
from weftnet.core.dht.messages import FindNear, FindNode, FindValue, NearNodes, Nodes, Store, StoreAck, Value
from weftnet.core.dht.peers import find_tagged
from weftnet.core.identity import Identity, RandomSource, ed25519_public_to_x25519, node_key_for
from weftnet.core.limits import NO_ENTRIES
from weftnet.core.session import handshake as hs
from weftnet.core.wire import U32, VERSION, Bytes, Fixed, Message, Rest, register
from weftnet.errors import DecodeError, HandshakeError, IdentityError

__all__ = [
    "DhtQuery",
    "DhtAnswer",
    "QueryKeys",
    "Sessionless",
    "seal_query",
    "open_query",
    "seal_answer",
    "open_answer",
    "query_keys",
    "FLAG_LEARNED",
    "FLAG_TOO_LARGE",
    "FLAG_WANTED",
    "FLAG_PROOF",
    "DhtProof",
    "PROOF_SIZE",
    "QUERY_OVERHEAD",
    "ANSWER_OVERHEAD",
]

# (cryptography's public constructor: its private Rust module, a little faster, is not an interface to rely on)
_x25519_public = X25519PublicKey.from_public_bytes

LABEL_QUERY = b"weftnet dht query v1"
FLAG_LEARNED = 0x01  # the echoed cookie was valid: the answerer offered the asker to its table
FLAG_TOO_LARGE = 0x02  # the reply did not fit in the query's size: ask over a session
FLAG_WANTED = 0x04  # not learned, but the answerer's table has room for the asker: a proof would get it in
FLAG_PROOF = 0x08  # the answerer takes a DhtProof (0x34): the cheap proof (set with WANTED by nodes that know it)
MAX_SEALED = 1400
_TAG = 16
#: version, type, tag, key, nonce, sealed length; plaintext echo and request length; AEAD tag; mac1, mac2.
QUERY_OVERHEAD = 2 + 4 + 32 + 16 + 2 + 16 + 2 + _TAG + 32
#: version, type, tag, nonce; plaintext flags and cookie; AEAD tag.
ANSWER_OVERHEAD = 2 + 4 + 12 + 1 + 16 + _TAG
#: The smallest datagram that can be a DhtQuery (empty request, no padding).
QUERY_MIN = QUERY_OVERHEAD
_COOKIE_LIFETIME = 120.0
_PENDING_TIMEOUT = 10.0
#: After this many unanswered queries in a row, lookups use the transport (its paths: relays, TCP
#: links) for ``_SILENT_PAUSE`` seconds, then one query tries again: a node whose UDP is blocked.
_SILENT_LIMIT = 3
_SILENT_PAUSE = 30.0
_ASKABLE = (FindNode, FindNear, FindValue)
_REPLIES = (Nodes, NearNodes, Value, StoreAck)
#: A STORE goes sessionless only to a node whose cookie for us is younger than this: its answerer
#: accepts a STORE only from a proven address (the cookie of this or the previous two-minute slot).
_STORE_COOKIE_AGE = 60.0
#: The largest StoreAck: rid, ok, a reason of at most 120 bytes.
_STORE_ACK_MAX = 2 + 8 + 1 + 1 + 120


@register
@dataclass(frozen=True, slots=True)
class DhtQuery(Message):
    """A sessionless lookup request (0x32); ``sealed`` is the AEAD ciphertext of
    ``echo:bytes[16] | request: u16 length + bytes | padding``."""

    TYPE: ClassVar = 0x32
    tag: int
    asker: bytes
    nonce: bytes
    sealed: bytes
    mac1: bytes
    mac2: bytes
    FIELDS: ClassVar = (
        ("tag", U32),
        ("asker", Fixed(32)),
        ("nonce", Fixed(16)),
        ("sealed", Bytes(MAX_SEALED)),
        ("mac1", Fixed(16)),
        ("mac2", Fixed(16)),
    )


@register
@dataclass(frozen=True, slots=True)
class DhtAnswer(Message):
    """The answer to a DhtQuery (0x33); ``sealed`` is the AEAD ciphertext of
    ``flags:u8 | cookie:bytes[16] | reply`` (reply: a Nodes, NearNodes or Value, or empty)."""

    TYPE: ClassVar = 0x33
    tag: int
    nonce: bytes
    sealed: bytes
    FIELDS: ClassVar = (("tag", U32), ("nonce", Fixed(12)), ("sealed", Rest(max_len=MAX_SEALED, min_len=_TAG + 17)))


@register
@dataclass(frozen=True, slots=True)
class DhtProof(Message):
    """A proof of address (0x34): the asker's Ed25519 key and the cookie the answerer sealed to it
    in a DhtAnswer, sent back from the address it asked from; never answered (docs/wire/dht.md)."""

    TYPE: ClassVar = 0x34
    asker: bytes
    cookie: bytes
    FIELDS: ClassVar = (("asker", Fixed(32)), ("cookie", Fixed(16)))


#: version, type, asker key, cookie.
PROOF_SIZE = 2 + 32 + 16
_PROOF_HEAD = bytes((VERSION, DhtProof.TYPE))


@dataclass(frozen=True, slots=True)
class QueryKeys:
    query: bytes
    answer: bytes


def static_dh(identity: Identity, peer_public: bytes) -> bytes:
    """ss with the node whose Ed25519 key is ``peer_public`` (HandshakeError if it is not a usable key)."""
    try:
        px = ed25519_public_to_x25519(peer_public)
    except IdentityError as exc:
        raise HandshakeError(str(exc)) from None
    try:
        return identity.x25519_private.exchange(_x25519_public(px))
    except ValueError:  # low-order point: the shared secret would be all zeros (as hs.DH says)
        raise HandshakeError("degenerate Diffie-Hellman result") from None


_blake2s = hashlib.blake2s
_IPAD, _OPAD = hs._IPAD, hs._OPAD


def query_keys(ss: bytes, asker: bytes, answerer: bytes, nonce: bytes) -> QueryKeys:
    """``KDF(HASH(label | asker | answerer | nonce), ss, 2)`` (core/session/handshake.py: HKDF with
    HMAC-BLAKE2s, the chaining key as salt), written out in one function: seven BLAKE2s calls and
    no lists, the same bytes (tests/vectors/dhtquery.json). Every query costs each end one."""
    ck = _blake2s(LABEL_QUERY + asker + answerer + nonce).digest().ljust(64, b"\0")
    prk = _blake2s(ck.translate(_OPAD) + _blake2s(ck.translate(_IPAD) + ss).digest()).digest().ljust(64, b"\0")
    inner, outer = prk.translate(_IPAD), prk.translate(_OPAD)
    kq = _blake2s(outer + _blake2s(inner + b"\x01").digest()).digest()
    return QueryKeys(kq, _blake2s(outer + _blake2s(inner + kq + b"\x02").digest()).digest())


_AT = struct.Struct("d")
_ZERO12 = bytes(12)
_ZEROS = bytes(MAX_SEALED)
_ZERO16 = bytes(16)
_SLOT = 56  # a kept peer's ss | cookie | when (Sessionless._keep)
_NO_COOKIE = bytes(24)
_sizeof = sys.getsizeof
_EMPTY_DICT = sys.getsizeof({})
#: The peers whose ss (and the proof-of-address cookie each gave us) a node keeps at most
#: (``Sessionless.keys_max``); past it, the oldest not written again goes (CLOCK, ``_keep``), and a peer
#: that comes back costs one X25519 again. 256 kept ~81 peers a node at 1,000 nodes (38% of the nodes
#: with a dict of 256 slots, 4.7 KiB, where up to 85 entries take 2.3): 64 keeps 61.5, ~1.9 KiB a node
#: less, for 1.1 more X25519 a put (of 39) and 0.5 a get (of 1.5), none a join, in bench/dht's workload
#: at 1,000 nodes (~40 us a put, ~17 us a get; bench/results/dmem14).
KEYS_MAX = 64


def seal_query(asker: bytes, answerer: bytes, ss: bytes, tag: int, nonce: bytes, request: bytes,
               echo: bytes | None = None, pad_to: int = 0, cookie: bytes | None = None) -> tuple[bytes, QueryKeys]:
    """A DhtQuery datagram from ``asker`` to ``answerer`` (Ed25519 keys) carrying ``request`` (an
    encoded FindNode / FindNear / FindValue, or b"" for a proof), padded to ``pad_to`` bytes if shorter;
    ``cookie``: the answerer's under-load cookie (mac2). Returns (datagram, keys)."""
    keys = query_keys(ss, asker, answerer, nonce)
    plain = (echo or _ZERO16) + struct.pack("!H", len(request)) + request
    room = pad_to - QUERY_OVERHEAD - len(request)
    if room > 0:
        plain += bytes(min(room, MAX_SEALED - _TAG - len(plain)))
    head = bytes((VERSION, DhtQuery.TYPE)) + struct.pack("!I", tag) + asker + nonce
    sealed = ChaCha20Poly1305(keys.query).encrypt(_ZERO12, plain, head)
    body = head + struct.pack("!H", len(sealed)) + sealed
    m1 = hs.MAC(hs.mac1_key(answerer), body)
    m2 = hs.MAC(cookie, body + m1) if cookie is not None else _ZERO16
    return body + m1 + m2, keys


def open_query(msg: DhtQuery, keys: QueryKeys) -> tuple[bytes, bytes]:
    """(echo, request) of a decoded DhtQuery; HandshakeError if it does not authenticate,
    DecodeError if its plaintext is malformed."""
    head = bytes((VERSION, DhtQuery.TYPE)) + struct.pack("!I", msg.tag) + msg.asker + msg.nonce
    return _open_sealed(head, msg.sealed, keys)


_QUERY_HEAD = 2 + 4 + 32 + 16  # version, type, tag, asker, nonce: the AEAD's associated data


def _split_query(data: bytes) -> tuple[bytes, bytes]:
    """(head, sealed) of a DhtQuery datagram, checked as ``wire.decode_as(DhtQuery, data)`` checks it
    (the layout is fixed: the generic decoder and a frozen dataclass cost more than the AEAD)."""
    n = len(data)
    if n < _QUERY_HEAD + 2 + 32 or data[1] != DhtQuery.TYPE:
        raise DecodeError("DhtQuery: truncated")
    m = int.from_bytes(data[_QUERY_HEAD:_QUERY_HEAD + 2], "big")
    if m > MAX_SEALED:
        raise DecodeError(f"DhtQuery: sealed of {m} bytes exceeds {MAX_SEALED}")
    if _QUERY_HEAD + 2 + m + 32 != n:
        raise DecodeError("DhtQuery: length does not match its sealed field")
    return data[:_QUERY_HEAD], data[_QUERY_HEAD + 2:_QUERY_HEAD + 2 + m]


def _open_sealed(head: bytes, sealed: bytes, keys: QueryKeys) -> tuple[bytes, bytes]:
    try:
        plain = ChaCha20Poly1305(keys.query).decrypt(_ZERO12, sealed, head)
    except InvalidTag:
        raise HandshakeError("query does not authenticate") from None
    if len(plain) < 18:
        raise DecodeError("query plaintext shorter than its echo and request length")
    n = struct.unpack_from("!H", plain, 16)[0]
    if 18 + n > len(plain):
        raise DecodeError("query request runs past its plaintext")
    if plain[18 + n:] != _ZEROS[:len(plain) - 18 - n]:
        raise DecodeError("query padding is not zeros")
    return plain[:16], plain[18:18 + n]


def seal_answer(keys: QueryKeys, tag: int, nonce: bytes, flags: int, cookie: bytes, reply: bytes) -> bytes:
    head = bytes((VERSION, DhtAnswer.TYPE)) + struct.pack("!I", tag) + nonce
    return head + ChaCha20Poly1305(keys.answer).encrypt(nonce, bytes((flags,)) + cookie + reply, head)


def open_answer(data: bytes, keys: QueryKeys) -> tuple[int, bytes, bytes]:
    """(flags, cookie, reply) of a DhtAnswer datagram; HandshakeError if it does not authenticate."""
    try:
        plain = ChaCha20Poly1305(keys.answer).decrypt(data[6:18], data[18:], data[:18])
    except InvalidTag:
        raise HandshakeError("answer does not authenticate") from None
    return plain[0], plain[1:17], plain[17:]


_FIND = {bytes((VERSION, FindNear.TYPE)): FindNear, bytes((VERSION, FindNode.TYPE)): FindNode,
         bytes((VERSION, FindValue.TYPE)): FindValue}


def _decode_request(request: bytes) -> Message:
    """``wire.decode(request)``, with the lookup requests (version, type, rid:u64, 32 bytes: 42 bytes
    exactly, as the generic decoder checks them) made directly: nearly every query carries one."""
    cls = _FIND.get(request[:2]) if len(request) == 42 else None
    if cls is None:
        return wire.decode(request)
    return cls(int.from_bytes(request[2:10], "big"), request[10:42])


def answer_room(query_size: int) -> int:
    """Bytes of reply an answer to a query of ``query_size`` bytes may carry."""
    return query_size - ANSWER_OVERHEAD


_TRUNCATED = 0x100  # (fit_reply's report only, never on the wire)


def fit_reply(reply: Message, room: int, target: int = 0) -> tuple[bytes, int]:
    """``reply`` encoded within ``room`` bytes: the contacts farthest from ``target`` (XOR) are
    dropped until it fits (flags: an internal TRUNCATED bit); (b"", FLAG_TOO_LARGE) if even without
    contacts it does not (a record too large)."""
    raw = wire.encode(reply)
    if len(raw) <= room:
        return raw, 0
    t = type(reply)
    if t is not Nodes and t is not NearNodes and t is not Value:
        return b"", 0  # (a StoreAck always fits: a STORE's query is padded for the largest)
    pairs = list(zip(reply.contacts, reply.rtts)) if t is NearNodes else [(c, 0) for c in reply.contacts]
    pairs.sort(key=lambda p: p[0].key ^ target)
    # Drop from the far end what the sizes say (a contact is 39 bytes, 51 for IPv6; an RTT hint 2),
    # then encode once (again with one fewer, should a count be off).
    extra = 2 if t is NearNodes else 0
    size = len(raw)
    while pairs and size > room:
        size -= (51 if ":" in pairs[-1][0].endpoint[0] else 39) + extra
        pairs.pop()
    while True:
        if t is NearNodes:
            smaller = NearNodes(reply.rid, tuple(c for c, _ in pairs), tuple(r for _, r in pairs))
        elif t is Nodes:
            smaller = Nodes(reply.rid, tuple(c for c, _ in pairs))
        else:
            smaller = Value(reply.rid, reply.record, tuple(c for c, _ in pairs))
        raw = wire.encode(smaller)
        if len(raw) <= room:
            return raw, _TRUNCATED
        if not pairs:
            return b"", (FLAG_TOO_LARGE if t is Value else 0)
        pairs.pop()


@dataclass(slots=True)
class _Pending:
    contact: Contact
    msg: Message
    keys: QueryKeys
    sent: float
    raw: bytes  # the query, for a resend with mac2 after a CookieReply
    request: bytes
    pad_to: int
    nonce: bytes
    hint: int | None = None  # the key of the node whose reply named the contact there (a hint)


class Sessionless:
    """Both ends of sessionless queries for one node.

    The node hands it lookup requests (:meth:`ask`), incoming 0x32/0x33 datagrams
    (:meth:`on_datagram`) and CookieReplies for our tags (:meth:`on_cookie`); it
    calls back into the DHT (``dht.answer`` for a lookup request's reply, ``dht.on_message`` and
    ``dht.take_reply`` for a STORE's, ``dht.on_reply``, ``dht.learn``)
    and sends through ``transport`` (its ``_emit`` for datagrams, its admission
    for load, its peer entries for ss)."""

    def __init__(self, identity: Identity, rng: RandomSource, now: float, transport, dht,
                 cache: int = 256, fallback=None, fallback_after: float = 0.5, keys: int = KEYS_MAX):
        self.identity = identity
        self.public_key = identity.public_key
        self._rng = rng
        self.transport = transport
        self.dht = dht
        self.cache = cache  # the bound of ``_proven``
        self.keys_max = keys  # the bound of ``_peers``
        #: ``fallback(contact, msg, now, source, direct=True)``: send this request over a session instead
        #: (no answer within ``fallback_after``, or an answer too large to carry the reply); ``source``:
        #: the node whose reply named the contact (a hint), None if first-hand; ``direct`` False: not to
        #: the contact's endpoint (a hint whose second datagram nobody would pay for).
        self.fallback = fallback
        self.fallback_after = fallback_after
        #: ``may_store(now)``: whether STOREs may go sessionless at all (None: yes).
        self.may_store = None
        #: ``forwards()``: whether this node passes Forwards on for others (a relay, a transit; None: no).
        #: Then it keeps the contacts whose address an exchange here proved (:meth:`proven_contact`).
        self.forwards = None
        #: What an answer says to an asker our table has room for: send a proof, and (FLAG_PROOF) a
        #: DhtProof will do (nodes before 0x34 said WANTED alone, and got an empty DhtQuery).
        self.wanted_flags = FLAG_WANTED | FLAG_PROOF
        # node ID -> contact, oldest written first, at most ``cache``. Tables most nodes never write
        # (this one: forwarders only; load cookies) start as the one read-only empty
        # table (core/limits.py) and get a dict of their own at their first write.
        self._proven: dict[int, Contact] = NO_ENTRIES
        #: The peers whose ss we keep, by slot: ``_peers[i]`` is the node ID as an integer of the peer
        #: in slot ``i`` (its contact's ``key``, the same object: a contact keeps no public key object
        #: of its own, core/contact.py), ``_tags[i]`` its low 8 bits, at most ``keys_max``
        #: (:data:`KEYS_MAX`) slots. Slot ``i`` of ``_slots`` is ss (32 bytes) | its proof-of-address
        #: cookie for us (16) | when we got it (a double, 0: no cookie), 56 bytes of one bytearray: no
        #: bytes object per peer (33 bytes of header each; memory per node is a bench column). A peer
        #: is found by its tag (``bytearray.find``, in C) and then its integer compared, ~0.1 us: no
        #: dict, whose 64 entries took 2.3 KiB a node where the list and the tags take ~0.7
        #: (bench/results/dmem16). Only ``_keep`` replaces an entry, with the newcomer in the evicted
        #: one's slot, so the slots in use are always 0 .. len(_peers) - 1.
        self._peers: list[int] = []
        self._tags = bytearray()
        self._slots = bytearray()
        #: One byte a slot: 1 if the peer's entry was written again since it entered or the hand last
        #: passed over it (CLOCK, second chance): when full, the hand (``_hand``, the next slot it
        #: reads) clears the marks it passes and the first slot unmarked is the one evicted. The hand
        #: starts at slot 0 when the table first fills, so the order it reads is the order the peers
        #: entered, an entry passed over going to its end; an entry written again stays where it is.
        self._used = bytearray()
        self._hand = 0
        self._pending: dict[int, _Pending] = {}  # tag -> our query, oldest first
        self._silent = 0  # queries in a row that fell back unanswered
        self._retry_at = 0.0
        self._late: dict[int, _Pending] = {}  # queries that went on over the transport, answer still welcome
        self._load_cookies: dict[int, tuple[bytes, float]] = NO_ENTRIES  # answerer's node ID -> (its mac2 cookie, when)
        self._secret = rng.randbytes(32)
        self._previous = self._secret
        self._rotate_at = now + _COOKIE_LIFETIME
        self._mac1_key = hs.mac1_key(self.public_key)
        self.stats: dict[str, int] = Counters((
            "queries_sent", "answers_received", "proofs_sent", "queries_answered", "queries_dropped",
            "answers_truncated", "too_large", "askers_learned", "auth_failures", "malformed", "unknown_tag",
            "cookies_received", "fallbacks", "too_large_fallbacks", "stores_sent", "stores_unproven", "sessions_lost_by_peer",
            "proofs_received"))

    # -- keys ---------------------------------------------------------------------
    def _slot_of(self, peer: int) -> int | None:
        """The slot of the peer whose node ID as an integer is ``peer``, or None."""
        return find_tagged(self._tags, self._peers, peer)

    def _kept(self) -> list[int]:
        """The peers kept, in the order the hand reads them (the first is the next it considers)."""
        h = self._hand
        return self._peers[h:] + self._peers[:h]

    def _static_dh(self, peer_public: bytes, peer: int, keep: bool = True) -> bytes:
        """ss with ``peer_public`` (whose node ID as an integer is ``peer``): kept, the transport's, or
        one X25519 (then kept, unless ``keep`` is False: a query's asker is kept only once its query
        authenticates)."""
        tags = self._tags  # (_slot_of, written out: this runs for every query sent and received)
        tag = peer & 255
        i = tags.find(tag)
        while i >= 0:
            if self._peers[i] == peer:
                o = i * _SLOT
                return bytes(self._slots[o:o + 32])
            i = tags.find(tag, i + 1)
        ss = self.transport._static_dh_of(peer_public) or static_dh(self.identity, peer_public)
        if keep:
            self._keep(peer, ss, absent=True)
        return ss

    def _keep(self, peer: int, ss: bytes, cookie: bytes = _ZERO16, at: float = 0.0, absent: bool = False) -> None:
        """Keep ``ss`` (and ``cookie``, got at ``at``) for ``peer``; ``absent``: the caller has just
        found it is not kept (no second search)."""
        used = self._used
        slot = None if absent else self._slot_of(peer)
        if slot is not None:
            used[slot] = 1  # written again: passed over once when the hand reaches it
        else:
            peers = self._peers
            n = len(peers)
            if n >= self.keys_max:
                # The first slot from the hand not written again since it entered (or was passed
                # over), whose place the newcomer takes; each one passed over has its mark cleared,
                # so this ends within one turn of the slots.
                hand = self._hand
                while True:
                    slot = hand
                    hand = hand + 1 if hand + 1 < n else 0
                    if not used[slot]:
                        break
                    used[slot] = 0
                self._hand = hand
                peers[slot] = peer
                self._tags[slot] = peer & 255
                used[slot] = 0
            else:
                slot = n  # the slots in use are 0 .. n - 1
                peers.append(peer)
                self._tags.append(peer & 255)
                if slot == len(used):
                    used.append(0)
                used[slot] = 0
        o = slot * _SLOT
        # A peer that only asked us gave us no cookie: when = 0.
        entry = ss + (cookie + _AT.pack(at) if at else _NO_COOKIE)
        if o < len(self._slots):
            self._slots[o:o + _SLOT] = entry
        else:
            # A new slot: a copy of the table one slot longer, allocated to its size (a bytearray
            # extended in place reserves ~1/8 more to grow: ~370 bytes a node at 1,000 nodes,
            # bench/results/dmem14), for a copy of at most ``keys_max`` slots (3.5 KiB) once per peer
            # kept, beside the X25519 that peer's ss cost.
            self._slots = self._slots + entry

    def _cookie_from(self, peer: int, now: float, max_age: float) -> bytes | None:
        """The proof-of-address cookie the node ``peer`` (its ID as an integer) gave us, if younger
        than ``max_age``."""
        slot = self._slot_of(peer)
        if slot is None:
            return None
        o = slot * _SLOT
        at = _AT.unpack_from(self._slots, o + 48)[0]
        return bytes(self._slots[o + 32:o + 48]) if at and now - at < max_age else None

    def _prove(self, contact: Contact) -> None:
        """``contact`` proved it receives at its endpoint (it answered there, or echoed our cookie
        from there). A forwarder keeps it as a next hop it may open a session to for a registered
        node: what a join handshake's session left behind before, and a routing table full (or at
        its per-prefix limit) has no room for."""
        if self.forwards is None or not self.forwards():
            return
        proven = self._proven
        if proven is NO_ENTRIES:
            proven = self._proven = {}
        key = contact.key
        if proven.pop(key, None) is None and len(proven) >= self.cache:
            del proven[next(iter(proven))]
        proven[key] = contact

    def _idle(self) -> None:
        """No query of ours in flight (its last answer came): the contacts its lookups held are free,
        so the contact cache sheds them now (core/contact.py: else they stayed until the next decode,
        ~10 a node at 1,000 nodes), and the table of queries in flight gives back the room it grew to
        (a dict keeps its size: ~450 bytes a node after a put; bench/results/dmem12)."""
        sweep_contacts()
        if _sizeof(self._pending) > _EMPTY_DICT:
            self._pending = {}

    def proven_contact(self, node_id) -> Contact | None:
        """The contact of ``node_id`` if a sessionless exchange proved its address (forwarders only)."""
        return self._proven.get(node_id.int)

    def _cookie(self, secret: bytes, asker: bytes, addr: Addr) -> bytes:
        return hs.MAC(secret, asker + f"{addr[0]}|{addr[1]}".encode())

    def _rotate(self, now: float) -> None:
        if now >= self._rotate_at:
            self._previous, self._secret = self._secret, self._rng.randbytes(32)
            self._rotate_at = now + _COOKIE_LIFETIME

    # -- asking -------------------------------------------------------------------
    def ask(self, contact: Contact, msg: Message, now: float, hint: int | None = None,
            request: bytes | None = None) -> bool:
        """Send lookup request ``msg`` to ``contact`` as a DhtQuery; False if it must go over the
        transport instead (not a lookup request). ``hint``: the endpoint was only heard of, from
        the node of that key, and the DHT charged it ``hint_cost`` bytes for asking: the query is no larger
        (docs/security.md, item 6), so its answer carries the few contacts nearest the target.
        ``request``: ``msg`` already encoded, if the caller has it."""
        t = type(msg)
        if t is Store:
            if self.may_store is not None and not self.may_store(now):
                return False  # (a node behind a NAT keeps its STORE sessions: reach learns its mapping on them)
            if self._cookie_from(contact.key, now, _STORE_COOKIE_AGE) is None:
                return False  # no fresh proof of our address there: over a session
        elif t not in _ASKABLE:
            return False
        if self._silent >= _SILENT_LIMIT and now < self._retry_at:
            return False  # our last queries all went unanswered (UDP blocked here?): the transport's paths
        if request is None:
            request = wire.encode(msg)
        pad_to = self._pad_for(msg, contact)
        cost = self.dht.config.hint_cost
        if hint is not None and cost:
            pad_to = min(pad_to, max(cost, QUERY_OVERHEAD + len(request)))
        self._send_query(contact, msg, request, pad_to, now, hint)
        self.stats["stores_sent" if t is Store else "queries_sent"] += 1
        return True

    def _pad_for(self, msg: Message, contact: Contact) -> int:
        """The size of the query: room for the largest answer it may get (20 contacts of the
        answerer's address family, their RTT hints; a Value: the largest datagram we send)."""
        cap = self.transport.config.max_datagram
        if type(msg) is Store:
            return ANSWER_OVERHEAD + _STORE_ACK_MAX
        if type(msg) is FindValue:
            return cap
        per = 51 if ":" in contact.endpoint[0] else 39
        reply = 11 + 20 * per + (41 if type(msg) is FindNear else 0)
        return min(cap, ANSWER_OVERHEAD + reply)

    def _send_query(self, contact: Contact, msg: Message | None, request: bytes, pad_to: int, now: float,
                    hint: int | None = None) -> None:
        pk = contact.public_key
        peer = contact.key
        ss = self._static_dh(pk, peer)
        nonce = self._rng.randbytes(16)
        tag = self._new_tag()
        echo = self._cookie_from(peer, now, _COOKIE_LIFETIME / 2)
        under_load = self._load_cookies.get(peer) if self._load_cookies else None
        cookie = under_load[0] if under_load is not None and now - under_load[1] < _COOKIE_LIFETIME else None
        raw, keys = seal_query(self.public_key, pk, ss, tag, nonce, request, echo, pad_to, cookie)
        if msg is not None:
            if len(self._pending) >= 1024:
                self.handle_timer(now + self.fallback_after)  # the oldest goes over the transport now
            self._pending[tag] = _Pending(contact, msg, keys, now, raw, request, pad_to, nonce, hint)
        self.transport.send_clear(raw, contact.endpoint)

    def _new_tag(self) -> int:
        while True:
            tag = self._rng.getrandbits(32)
            if tag and tag not in self._pending and tag not in self._late:
                return tag

    def get_timer(self) -> float | None:
        """When the oldest unanswered query falls back to a session (oldest first: dict order)."""
        if self._pending:
            for p in self._pending.values():
                return p.sent + self.fallback_after
        return None

    def handle_timer(self, now: float) -> None:
        """Queries unanswered after ``fallback_after`` go again over the transport: a node behind a
        NAT that drops our datagram is reached by a handshake, whose retries and path search
        (relays, hole punching: core/reach) a single datagram does not have. The DHT request is
        the same (same rid), so whichever answer comes first counts."""
        pend = self._pending
        while pend:
            tag, p = next(iter(pend.items()))
            if now - p.sent < self.fallback_after:
                return
            del pend[tag]
            late = self._late  # a late answer still counts, for a while (the DHT keeps listening too)
            while late and now - next(iter(late.values())).sent >= _PENDING_TIMEOUT or len(late) >= 1024:
                del late[next(iter(late))]
            late[tag] = p
            self.stats["fallbacks"] += 1
            self._silent += 1
            if self._silent >= _SILENT_LIMIT:
                self._retry_at = now + _SILENT_PAUSE
            if self.fallback is not None:
                # To a hint, a second datagram is paid as the first was; unpaid, the node is sought
                # only on the paths its own record names (docs/security.md, item 6).
                direct = p.hint is None or self.dht.may_ask_hint_again(p.contact, p.hint, now)
                self.fallback(p.contact, p.msg, now, p.hint, direct)

    def asking(self, tag: int) -> bool:
        return tag in self._pending

    def on_cookie(self, tag: int, nonce: bytes, encrypted_cookie: bytes, now: float) -> bool:
        """A CookieReply to one of our queries (the answerer is under load): send it again with mac2."""
        p = self._pending.get(tag)
        if p is None:
            return False
        try:
            cookie = ChaCha20Poly1305(hs.cookie_key(p.contact.public_key)).decrypt(
                nonce, encrypted_cookie, p.raw[-32:-16])
        except InvalidTag:
            self.stats["auth_failures"] += 1
            return True
        self.stats["cookies_received"] += 1
        if self._load_cookies is NO_ENTRIES:
            self._load_cookies = {}
        if len(self._load_cookies) >= 64:
            del self._load_cookies[next(iter(self._load_cookies))]
        self._load_cookies[p.contact.key] = (cookie, now)
        del self._pending[tag]
        self._send_query(p.contact, p.msg, p.request, p.pad_to, now)
        return True

    # -- receiving ----------------------------------------------------------------
    def on_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            kind = data[1]
            if kind == DhtQuery.TYPE:
                self._on_query(data, addr, now)
            elif kind == DhtProof.TYPE:
                self._on_proof(data, addr, now)
            else:
                self._on_answer(data, addr, now)
        except DecodeError:
            self.stats["malformed"] += 1
        except HandshakeError:
            self.stats["auth_failures"] += 1

    def _on_query(self, data: bytes, addr: Addr, now: float) -> None:
        # Cheapest first, as for an Init: size and mac1, then load (cookie round trip, per-source
        # buckets), and only then a decode, the ss (cached, or one X25519) and the AEAD.
        if len(data) < QUERY_MIN:
            self.stats["malformed"] += 1
            return
        if not hmac.compare_digest(hs.MAC(self._mac1_key, data[:-32]), data[-32:-16]):
            self.stats["auth_failures"] += 1
            return
        if not self.transport.admit_query(data, addr, now):
            self.stats["queries_dropped"] += 1
            return
        head, sealed = _split_query(data)
        asker = head[6:38]
        if asker == self.public_key:
            self.stats["malformed"] += 1
            return
        peer = node_key_for(asker)
        slot = self._slot_of(peer)
        cached = slot is not None
        if cached:
            o = slot * _SLOT
            ss = bytes(self._slots[o:o + 32])
        else:  # (kept only once the query authenticates, below)
            ss = self.transport._static_dh_of(asker) or static_dh(self.identity, asker)
        keys = query_keys(ss, asker, self.public_key, head[38:54])
        echo, request = _open_sealed(head, sealed, keys)  # raises before anything is kept
        # The contact our table has for it, if at this address, by the integer the table is keyed by
        # (no NodeId object: made only for a proven asker).
        known = self.dht.table.get(peer)
        contact = known if known is not None and known.endpoint == addr else shared_contact(asker, addr, peer)
        if not cached:
            self._keep(contact.key, ss, absent=True)  # the contact's integer: one object for both
        self._rotate(now)
        # The cookie this answer carries, which is also the one a valid echo under the current
        # secret equals (computed once for both).
        cookie = self._cookie(self._secret, asker, addr)
        proven = echo != _ZERO16 and self._valid_cookie(echo, asker, addr, now, cookie)
        if proven:
            self._proven_asker(contact, addr, now)
        if not request:
            return  # a proof: never answered
        req = _decode_request(request)
        t = type(req)
        if t in _ASKABLE:
            # Answer only: the asker entered the table above if its address is proven, not here
            # (what dht.on_message(verified=False, learn=False) does, the reply handed back).
            reply = self.dht.answer(contact, req, now)
        elif t is Store:
            if not proven:
                self.stats["stores_unproven"] += 1  # a STORE only from a proven address (docs/security.md)
                return
            self.dht.on_message(contact, req, now, verified=True, learn=False)
            reply = self.dht.take_reply(contact.key, req.rid)
        else:
            self.stats["malformed"] += 1
            return
        if reply is None:
            self.stats["queries_dropped"] += 1  # rate-limited by the DHT's per-peer and per-prefix quotas
            return
        target = req.key if t is FindValue else req.target if t is not Store else bytes(32)
        raw_reply, flags = fit_reply(reply, answer_room(len(data)), int.from_bytes(target, "big"))
        if flags & FLAG_TOO_LARGE:
            self.stats["too_large"] += 1
        elif flags:
            self.stats["answers_truncated"] += 1
            flags = 0
        if proven:
            flags |= FLAG_LEARNED
        elif known is not None:
            # (table.has_room's answer for a contact the table holds, from the look-up above: nothing
            # since has changed the table, which only a proven asker's learn does)
            if known.endpoint != addr:
                flags |= self.wanted_flags
        elif self.dht.table.has_room(contact, contact.key):
            flags |= self.wanted_flags
        answer = seal_answer(keys, int.from_bytes(head[2:6], "big"), self._rng.randbytes(12), flags, cookie,
                             raw_reply)
        assert len(answer) <= len(data)  # never more back than came in (fit_reply)
        self.stats["queries_answered"] += 1
        self.transport.send_clear(answer, addr)

    def _valid_cookie(self, cookie: bytes, asker: bytes, addr: Addr, now: float,
                      current: bytes | None = None) -> bool:
        """``cookie`` is the one we gave ``asker`` at ``addr`` (this secret or the previous one);
        ``current``: the one under this secret, if the caller computed it (after rotating at ``now``)."""
        self._rotate(now)
        if current is None:
            current = self._cookie(self._secret, asker, addr)
        return (hmac.compare_digest(cookie, current)
                or hmac.compare_digest(cookie, self._cookie(self._previous, asker, addr)))

    def _proven_asker(self, contact: Contact, addr: Addr, now: float) -> None:
        """``contact`` echoed a valid cookie from ``addr``: it receives there. Offer it to the table
        (within the DHT's per-peer and per-prefix quotas)."""
        if self.transport.lost_by_peer(contact.node_id, addr, now):
            self.stats["sessions_lost_by_peer"] += 1  # it asks outside a session: it has none with us
        self._prove(contact)
        if self.dht.learn(contact, now):
            self.stats["askers_learned"] += 1

    def _on_proof(self, data: bytes, addr: Addr, now: float) -> None:
        """A DhtProof: the asker's key and the cookie we sealed to it, from the address we gave it
        for. Checked with one keyed BLAKE2s (two across a secret rotation), never answered."""
        if len(data) != PROOF_SIZE:
            self.stats["malformed"] += 1
            return
        asker, cookie = data[2:34], data[34:]
        if asker == self.public_key or not self._valid_cookie(cookie, asker, addr, now):
            self.stats["auth_failures"] += 1
            return
        self.stats["proofs_received"] += 1
        peer = node_key_for(asker)
        known = self.dht.table.get(peer)
        contact = known if known is not None and known.endpoint == addr else shared_contact(asker, addr, peer)
        self._proven_asker(contact, addr, now)

    def _on_answer(self, data: bytes, addr: Addr, now: float) -> None:
        if len(data) < 18 + _TAG + 17:
            self.stats["malformed"] += 1
            return
        tag = struct.unpack_from("!I", data, 2)[0]
        p = self._pending.get(tag) or self._late.get(tag)
        if p is None:
            self.stats["unknown_tag"] += 1
            return
        flags, cookie, reply = open_answer(data, p.keys)  # a forgery leaves the request pending
        if self._pending.pop(tag, None) is None:
            del self._late[tag]
        self.stats["answers_received"] += 1
        self._silent = 0
        c = p.contact
        # (its ss is kept from when we asked, as a rule: the slot gets its cookie, when, and a second chance)
        self._keep(c.key, self._static_dh(c.public_key, c.key, keep=False), cookie, now)
        if flags & FLAG_TOO_LARGE:
            self.stats["too_large_fallbacks"] += 1
            if self.fallback is not None:
                self.fallback(p.contact, p.msg, now, p.hint)
            return
        msg = wire.decode(reply)
        if type(msg) not in _REPLIES or msg.rid != p.msg.rid:
            self.stats["malformed"] += 1
            return
        if flags & FLAG_WANTED and addr == p.contact.endpoint:
            # Prove our address now (one datagram, never answered), so the answerer learns us as a
            # handshake's confirmation made it before; only where its table has room for us (a full
            # bucket far from us would only put us among its replacements).
            self.stats["proofs_sent"] += 1
            if flags & FLAG_PROOF:
                self.transport.send_clear(_PROOF_HEAD + self.public_key + cookie, p.contact.endpoint)
            else:  # an answerer that does not know DhtProof: the proof is an empty query
                self._send_query(p.contact, None, b"", 0, now)
        # The answer proves its sender holds the answerer's key and received our nonce at the
        # endpoint we asked: verified there; from elsewhere (a NAT rebinding): answered, not learned.
        verified = addr == p.contact.endpoint
        if verified:
            share_endpoint(p.contact, addr)  # one tuple for the address, not two (core/contact.py)
            self._prove(p.contact)
        self.dht.on_reply(p.contact, msg, now, learn=verified)
        if not self._pending:
            self._idle()

    def summary(self) -> dict[str, int]:
        return {**self.stats, "pending": len(self._pending) + len(self._late), "peers_kept": len(self._peers),
                "next_hops_kept": len(self._proven)}

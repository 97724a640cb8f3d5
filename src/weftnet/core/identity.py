"""Node identity: keys, node IDs, overlay addresses and their text forms.

A node is its Ed25519 key pair (RFC 8032). Everything else is derived, so
anyone holding the public key can check any claim made about it
(docs/identity.md):

* **node ID** = SHA-256(raw 32-byte Ed25519 public key), 256 bits.
* **overlay address** = the ULA prefix ``fd77:6566::/32`` followed by the first
  96 bits (12 bytes) of the node ID.
* **X25519 static key** for the Noise handshake = the Ed25519 key mapped to
  Curve25519 (the birational map of RFC 7748 section 4.1, as libsodium's
  ``crypto_sign_ed25519_pk_to_curve25519``, age and Yggdrasil use), so a
  node has one secret and a peer needs only the Ed25519 public key to
  start a handshake.

Text forms:

* node ID: ``wn1`` + lowercase RFC 4648 base32 (no padding) of the 32-byte ID
  followed by a 4-byte checksum, SHA-256("weftnet-id" || id)[:4]. A typo is
  caught before anything is sent.
* overlay address: ordinary IPv6 text (``fd77:6566:...``); it is checked by
  re-deriving it from a key or node ID.

This module does no I/O; key generation takes a random source.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from weftnet.errors import IdentityError, ParseError

__all__ = [
    "RandomSource",
    "OVERLAY_PREFIX",
    "NodeId",
    "Identity",
    "node_id_for",
    "overlay_address_for",
    "ed25519_public_to_x25519",
    "parse_node_ref",
]

OVERLAY_PREFIX = ipaddress.IPv6Network("fd77:6566::/32")
_PREFIX_BYTES = OVERLAY_PREFIX.network_address.packed[:4]
_TEXT_PREFIX = "wn1"
_CHECKSUM_TAG = b"weftnet-id"
_P = 2**255 - 19  # the field prime of Curve25519 / Ed25519

try:  # GMP's modular inverse (~1.7 us) where installed; CPython's extended Euclid (~15-19 us) if not
    from gmpy2 import invert as _gmp_invert
    from gmpy2 import mpz as _mpz

    _P_MPZ = _mpz(_P)

    def _inverse(x: int) -> int:
        """1 / x mod p, for 0 < x < 2p not a multiple of p."""
        return int(_gmp_invert(x, _P_MPZ))
except ImportError:  # pragma: no cover - gmpy2 is a dependency on CPython
    def _inverse(x: int) -> int:
        """1 / x mod p, for 0 < x < 2p not a multiple of p."""
        return pow(x, -1, _P)


class RandomSource(Protocol):
    """What the core needs from a random source. ``random.Random`` and
    ``random.SystemRandom`` both qualify; the runtime passes a system source,
    the simulator and tests a seeded one."""

    def randbytes(self, n: int) -> bytes: ...

    def random(self) -> float: ...

    def getrandbits(self, k: int) -> int: ...


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A 256-bit node ID. Compare, hash and XOR-distance as bytes."""

    raw: bytes
    #: The ID as an integer (XOR distance is one operation on these). A slot,
    #: not a property: the DHT reads it for every contact of every reply.
    int: "builtins.int" = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise IdentityError("a node ID is exactly 32 bytes")
        object.__setattr__(self, "int", int.from_bytes(self.raw, "big"))

    # Equality and hash of the bytes, as the dataclass's would be, without the one-item tuples it
    # builds per call: every table keyed by node ID (sessions, paths, the DHT's) hashes one per
    # look-up, and compares one when the key is an equal ID made elsewhere.
    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self.raw == other.raw
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.raw)

    @classmethod
    def of_int(cls, value: "builtins.int") -> "NodeId":
        """The ID whose ``int`` is ``value`` (0 <= value < 2**256), reusing that int object."""
        obj = _new(cls)
        _set_raw(obj, value.to_bytes(32, "big"))
        _set_int(obj, value)
        return obj

    def distance(self, other: "NodeId | bytes") -> int:
        o = other.raw if isinstance(other, NodeId) else other
        return int.from_bytes(self.raw, "big") ^ int.from_bytes(o, "big")

    def text(self) -> str:
        check = hashlib.sha256(_CHECKSUM_TAG + self.raw).digest()[:4]
        return _TEXT_PREFIX + base64.b32encode(self.raw + check).decode("ascii").lower().rstrip("=")

    def short(self) -> str:
        """An abbreviation for logs and tables (not parseable back)."""
        return self.raw.hex()[:12]

    def address(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(_PREFIX_BYTES + self.raw[:12])

    @classmethod
    def parse(cls, text: str) -> "NodeId":
        """Parse the ``wn1...`` text form, or 64 hex digits. Raises :class:`ParseError`."""
        s = text.strip()
        if len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s):
            return cls(bytes.fromhex(s))
        if not s.lower().startswith(_TEXT_PREFIX):
            raise ParseError(f"{text!r} is not a node ID: it should start with {_TEXT_PREFIX!r} (or be 64 hex digits)")
        body = s[len(_TEXT_PREFIX) :].lower()
        alphabet = "abcdefghijklmnopqrstuvwxyz234567"
        for i, c in enumerate(body):
            if c not in alphabet:
                raise ParseError(
                    f"node ID has {c!r} at position {i + len(_TEXT_PREFIX) + 1}; only a-z and 2-7 are used"
                )
        if len(body) != 58:
            raise ParseError(f"node ID has {len(body) + 3} characters, expected 61")
        raw = base64.b32decode(body.upper() + "======")
        node, check = raw[:32], raw[32:]
        if hashlib.sha256(_CHECKSUM_TAG + node).digest()[:4] != check:
            raise ParseError("node ID checksum does not match: a character is mistyped")
        return cls(node)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"NodeId({self.short()})"


def node_id_for(public_key: bytes) -> NodeId:
    # Not cached: a SHA-256 of 32 bytes and the NodeId, ~1.5 us; an LRU entry kept for it cost a node
    # ~150 bytes a peer it ever met (bench/results/dmem9), and a decoded contact keeps its ID anyway.
    if len(public_key) != 32:
        raise IdentityError("an Ed25519 public key is exactly 32 bytes")
    return NodeId(hashlib.sha256(public_key).digest())


# The slots' own setters (a frozen dataclass's __setattr__ refuses; object.__setattr__ is slower): a
# contact's NodeId is made from its integer at each read (contact.py).
_new = object.__new__
_set_raw = NodeId.__dict__["raw"].__set__
_set_int = NodeId.__dict__["int"].__set__


def node_key_for(public_key: bytes) -> int:
    """``node_id_for(public_key).int``, without the NodeId (a contact keeps the integer only)."""
    if len(public_key) != 32:
        raise IdentityError("an Ed25519 public key is exactly 32 bytes")
    return int.from_bytes(hashlib.sha256(public_key).digest(), "big")


def overlay_address_for(public_key: bytes) -> ipaddress.IPv6Address:
    return node_id_for(public_key).address()


def ed25519_public_to_x25519(public_key: bytes) -> bytes:
    """Map an Ed25519 public key to its X25519 (Montgomery u) form.

    u = (1 + y) / (1 - y) mod p, where y is the Edwards y coordinate
    (RFC 7748 section 4.1). Raises :class:`IdentityError` for encodings that
    are not a usable point (y >= p, or y = 1 which maps to infinity).

    The modular inverse is GMP's where gmpy2 is installed (a dependency on CPython: ~2 us a
    conversion against ~15-19 us for CPython's ``pow(x, -1, p)``, which is the fallback; the same
    value either way). A join at 1,000 nodes converts ~75 keys (docs/dht.md).

    Not cached: a node converts a peer's key to compute ss with it, and keeps the ss
    (sessionless key slots, sessions), so a cache of conversions was asked again only for a peer whose
    ss had been dropped; per node it held one 200-byte entry a peer and was never hit (bench/results/dmem9).
    """
    if len(public_key) != 32:
        raise IdentityError("an Ed25519 public key is exactly 32 bytes")
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise IdentityError("Ed25519 public key is not a valid point encoding")
    u = (1 + y) * _inverse(_P + 1 - y) % _P
    return u.to_bytes(32, "little")


class Identity:
    """A node's private identity. Holds the Ed25519 seed; derives the rest."""

    __slots__ = ("_sk", "public_key", "node_id", "__dict__")

    def __init__(self, private_key: Ed25519PrivateKey):
        self._sk = private_key
        self.public_key: bytes = private_key.public_key().public_bytes_raw()
        self.node_id: NodeId = node_id_for(self.public_key)

    @classmethod
    def generate(cls, rng: RandomSource) -> "Identity":
        return cls.from_seed(rng.randbytes(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        if len(seed) != 32:
            raise IdentityError("an Ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, data: bytes) -> "Identity":
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(f"identity key file is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError("identity key file does not hold an Ed25519 key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._sk.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def seed(self) -> bytes:
        return self._sk.private_bytes_raw()

    @property
    def address(self) -> ipaddress.IPv6Address:
        return self.node_id.address()

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message)

    @cached_property
    def x25519_private(self) -> X25519PrivateKey:
        # The X25519 scalar is the clamped first half of SHA-512(seed) - the
        # same scalar Ed25519 signs with, so it pairs with the mapped public key.
        h = hashlib.sha512(self.seed).digest()[:32]
        return X25519PrivateKey.from_private_bytes(h)

    @cached_property
    def x25519_public(self) -> bytes:
        return self.x25519_private.public_key().public_bytes_raw()


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature by ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def parse_node_ref(text: str) -> NodeId | ipaddress.IPv6Address:
    """Parse what a person may type for a node: a node ID or an overlay address."""
    s = text.strip()
    if ":" in s:
        try:
            addr = ipaddress.IPv6Address(s)
        except ValueError:
            raise ParseError(f"{text!r} is not an IPv6 address") from None
        if addr not in OVERLAY_PREFIX:
            raise ParseError(f"{addr} is not an overlay address: overlay addresses are in {OVERLAY_PREFIX}")
        return addr
    return NodeId.parse(s)


__all__.append("verify_signature")

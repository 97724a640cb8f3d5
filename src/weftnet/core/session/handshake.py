"""The Noise IK handshake: Noise_IK_25519_ChaChaPoly_BLAKE2s, prologue "weftnet v1".

The Noise Protocol Framework (revision 34), pattern IK::

    <- s
    ...
    -> e, es, s, ss      HandshakeInit  (+ optional early data after ss)
    <- e, ee, se         HandshakeResponse (+ optional payload)

The structure follows WireGuard's (Donenfeld, NDSS 2017, section 5.4): HASH is
BLAKE2s-256, MAC is keyed BLAKE2s-128, KDF is HKDF over HMAC-BLAKE2s, the
static key sent by the initiator is its 32-byte Ed25519 public key (so the
responder learns the peer's node ID), and both static keys enter the DH as
their X25519 mappings (core/identity.py). Every step is written out in
docs/handshake.md. Nothing here keeps state between calls except the small
objects it returns; nothing does I/O; ephemeral keys come from ``rng``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from weftnet.core.identity import Identity, RandomSource, ed25519_public_to_x25519
from weftnet.core.session.packets import HandshakeInit, HandshakeResponse
from weftnet.core.wire import encode
from weftnet.errors import HandshakeError, IdentityError

__all__ = [
    "CONSTRUCTION",
    "PROLOGUE",
    "InitiatorHandshake",
    "ResponderResult",
    "create_init",
    "consume_init",
    "consume_response",
    "mac1_key",
    "cookie_key",
    "tai64n",
    "aead_encrypt",
    "aead_decrypt",
]

CONSTRUCTION = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"weftnet v1"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
_ZERO_NONCE = bytes(12)


def HASH(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


def MAC(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


_BLOCK = 64  # BLAKE2s block size, which HMAC pads the key to
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > _BLOCK:
        key = HASH(key)
    key = key.ljust(_BLOCK, b"\0")
    return key.translate(_IPAD), key.translate(_OPAD)


def HMAC(key: bytes, data: bytes) -> bytes:
    """RFC 2104 HMAC over BLAKE2s, written out with hashlib: two hash calls, less than half
    the time ``hmac.digest(key, data, "blake2s")`` took here, and a handshake makes 36 of
    them. The vectors in tests/vectors pin the bytes."""
    return _hmac_with(*_hmac_pads(key), data)


def _hmac_with(inner: bytes, outer: bytes, data: bytes) -> bytes:
    """HMAC-BLAKE2s of ``data`` under the key whose pads are ``inner`` and ``outer``."""
    return hashlib.blake2s(outer + hashlib.blake2s(inner + data).digest()).digest()


def KDF(ck: bytes, ikm: bytes, n: int) -> list[bytes]:
    """HKDF (RFC 5869) with HMAC-BLAKE2s, chaining key as salt: n 32-byte outputs."""
    inner, outer = _hmac_pads(HMAC(ck, ikm))  # the PRK's pads serve every output
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = _hmac_with(inner, outer, prev + bytes((i,)))
        out.append(prev)
    return out


def nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack("<Q", counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce(counter), ciphertext, ad)
    except InvalidTag:
        raise HandshakeError("authentication tag does not verify") from None


def DH(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # low-order point: the shared secret would be all zeros
        raise HandshakeError("degenerate Diffie-Hellman result") from None


_C0 = HASH(CONSTRUCTION)
_H0 = HASH(_C0 + PROLOGUE)


def mac1_key(ed25519_public: bytes) -> bytes:
    return HASH(LABEL_MAC1 + ed25519_public)


def cookie_key(ed25519_public: bytes) -> bytes:
    return HASH(LABEL_COOKIE + ed25519_public)


def tai64n(now: float) -> bytes:
    """12-byte TAI64N label of a time: strictly increasing with ``now``."""
    secs = int(now)
    nanos = int((now - secs) * 1e9)
    return struct.pack(">QI", 0x400000000000000A + secs, nanos)


def _mac_fields(body: bytes, ed25519_public: bytes, cookie: bytes | None) -> tuple[bytes, bytes]:
    """mac1 over the message up to mac1; mac2 over the message up to mac2 (or zeros)."""
    m1 = MAC(mac1_key(ed25519_public), body)
    m2 = MAC(cookie, body + m1) if cookie is not None else bytes(16)
    return m1, m2


def _without_macs(raw: bytes) -> bytes:
    return raw[:-32]


@dataclass
class InitiatorHandshake:
    """What an initiator keeps between sending Init and receiving Response."""

    local_index: int
    peer_public: bytes  # the responder's Ed25519 public key
    ephemeral: X25519PrivateKey
    ck: bytes
    h: bytes
    mac1: bytes  # of the Init we sent (associated data of a cookie reply)
    timestamp: bytes
    #: The static-static DH (ss): it never changes for a pair of keys, so the caller keeps it
    #: with the peer and passes it to the next handshake (WireGuard precomputes it the same way).
    static_dh: bytes = b""


def create_init(
    identity: Identity,
    peer_public: bytes,
    local_index: int,
    now: float,
    rng: RandomSource,
    payload: bytes = b"",
    cookie: bytes | None = None,
    timestamp: bytes | None = None,
    static_dh: bytes | None = None,
) -> tuple[bytes, InitiatorHandshake]:
    """Build a HandshakeInit datagram to the node with Ed25519 key ``peer_public``
    (``static_dh``: the ss of this pair of keys, if an earlier handshake computed it)."""
    try:
        rs = ed25519_public_to_x25519(peer_public)
    except IdentityError as exc:
        raise HandshakeError(str(exc)) from None
    ck, h = _C0, HASH(_H0 + rs)
    e = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    e_pub = e.public_key().public_bytes_raw()
    ck = KDF(ck, e_pub, 1)[0]
    h = HASH(h + e_pub)
    ck, k = KDF(ck, DH(e, rs), 2)
    enc_static = aead_encrypt(k, 0, identity.public_key, h)
    h = HASH(h + enc_static)
    ss = static_dh or DH(identity.x25519_private, rs)
    ck, k = KDF(ck, ss, 2)
    ts = timestamp or tai64n(now)
    enc_ts = aead_encrypt(k, 0, ts, h)
    h = HASH(h + enc_ts)
    enc_payload = aead_encrypt(k, 1, payload, h)
    h = HASH(h + enc_payload)
    body = encode(HandshakeInit(local_index, e_pub, enc_static, enc_ts, enc_payload, bytes(16), bytes(16)))
    m1, m2 = _mac_fields(_without_macs(body), peer_public, cookie)
    raw = _without_macs(body) + m1 + m2
    return raw, InitiatorHandshake(local_index, peer_public, e, ck, h, m1, ts, ss)


def check_mac1(raw: bytes, own_public: bytes) -> bool:
    return hmac.compare_digest(MAC(mac1_key(own_public), raw[:-32]), raw[-32:-16])


def check_mac2(raw: bytes, cookie: bytes) -> bool:
    return hmac.compare_digest(MAC(cookie, raw[:-16]), raw[-16:])


@dataclass
class ResponderResult:
    """An authenticated Init, and what the responder needs to answer it."""

    peer_public: bytes  # the initiator's Ed25519 public key
    peer_index: int
    timestamp: bytes
    payload: bytes
    ck: bytes
    h: bytes
    peer_ephemeral: bytes
    peer_static_x: bytes
    static_dh: bytes = b""  # ss, for the caller to keep with the peer (InitiatorHandshake.static_dh)


def consume_init(identity: Identity, msg: HandshakeInit,
                 static_dh: Callable[[bytes], bytes | None] | None = None) -> ResponderResult:
    """Authenticate and open a HandshakeInit. Raises HandshakeError on any failure.
    ``static_dh(initiator's Ed25519 key)``: the ss kept from an earlier handshake, or None."""
    s_pub = identity.x25519_public
    ck, h = _C0, HASH(_H0 + s_pub)
    ck = KDF(ck, msg.ephemeral, 1)[0]
    h = HASH(h + msg.ephemeral)
    ck, k = KDF(ck, DH(identity.x25519_private, msg.ephemeral), 2)
    peer_public = aead_decrypt(k, 0, msg.encrypted_static, h)
    h = HASH(h + msg.encrypted_static)
    try:
        peer_x = ed25519_public_to_x25519(peer_public)
    except IdentityError as exc:
        raise HandshakeError(str(exc)) from None
    ss = static_dh(peer_public) if static_dh is not None else None
    ss = ss or DH(identity.x25519_private, peer_x)
    ck, k = KDF(ck, ss, 2)
    ts = aead_decrypt(k, 0, msg.encrypted_timestamp, h)
    h = HASH(h + msg.encrypted_timestamp)
    payload = aead_decrypt(k, 1, msg.encrypted_payload, h)
    h = HASH(h + msg.encrypted_payload)
    return ResponderResult(peer_public, msg.sender_index, ts, payload, ck, h, msg.ephemeral, peer_x, ss)


def create_response(
    result: ResponderResult,
    local_index: int,
    rng: RandomSource,
    payload: bytes = b"",
    cookie: bytes | None = None,
) -> tuple[bytes, bytes, bytes]:
    """Build the HandshakeResponse. Returns (datagram, send_key, receive_key)."""
    e = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    e_pub = e.public_key().public_bytes_raw()
    ck = KDF(result.ck, e_pub, 1)[0]
    h = HASH(result.h + e_pub)
    ck = KDF(ck, DH(e, result.peer_ephemeral), 1)[0]
    ck, k = KDF(ck, DH(e, result.peer_static_x), 2)
    enc_payload = aead_encrypt(k, 0, payload, h)
    body = encode(HandshakeResponse(local_index, result.peer_index, e_pub, enc_payload, bytes(16), bytes(16)))
    m1, m2 = _mac_fields(_without_macs(body), result.peer_public, cookie)
    t_initiator_send, t_responder_send = KDF(ck, b"", 2)
    return _without_macs(body) + m1 + m2, t_responder_send, t_initiator_send


def consume_response(
    identity: Identity, state: InitiatorHandshake, msg: HandshakeResponse
) -> tuple[bytes, bytes, bytes]:
    """Authenticate a HandshakeResponse. Returns (payload, send_key, receive_key)."""
    ck = KDF(state.ck, msg.ephemeral, 1)[0]
    h = HASH(state.h + msg.ephemeral)
    ck = KDF(ck, DH(state.ephemeral, msg.ephemeral), 1)[0]
    ck, k = KDF(ck, DH(identity.x25519_private, msg.ephemeral), 2)
    payload = aead_decrypt(k, 0, msg.encrypted_payload, h)
    t_initiator_send, t_responder_send = KDF(ck, b"", 2)
    return payload, t_initiator_send, t_responder_send

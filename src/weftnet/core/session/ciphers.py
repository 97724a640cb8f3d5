"""Transport ciphers: which AEAD a session's transport data is sealed with, and how the two
ends agree on it inside the handshake (docs/handshake.md, "Transport ciphers").

Two ciphers, one code each:

* 1, ChaCha20-Poly1305 (RFC 8439): the default, and the fallback every node accepts;
* 2, AES-256-GCM (NIST SP 800-38D): 3x faster than ChaCha20-Poly1305 where the CPU has AES
  instructions (bench/results/crypto.md), much slower where it has not.

Both take the 32-byte transport keys and the 12-byte nonce ``0^32 || counter (u64 LE)`` as they
are. The Noise chain of the handshake itself stays ChaCha20-Poly1305 whatever is chosen.

The offer rides in the tail of an ``EarlyData`` (0x08) in the HandshakeInit's encrypted
payload; the choice, in the same place in the HandshakeResponse's. The tail was zero padding
before (and an older node ignores it): ``0x01 | n:u8 | n cipher codes (u8)`` then zero
padding; a tail that begins with 0x00 (or is empty) offers nothing. Both payloads are AEAD
sealed with the chain's hash as associated data, so an offer or a choice changed on the way
fails the handshake: no downgrade. Sans-IO: which ciphers a node accepts is an argument
(the runtime reads the CPU's ``aes`` flag or ``[dataplane] ciphers``).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from weftnet.errors import HandshakeError

__all__ = [
    "CHACHA20_POLY1305", "AES_256_GCM", "NAMES", "AEADS", "BLOCK_LIMIT", "DEFAULT", "MAX_OFFERED",
    "offer_tail", "parse_tail", "choose", "parse_names", "cpu_prefers",
]

CHACHA20_POLY1305 = 1
AES_256_GCM = 2
NAMES = {"chacha20-poly1305": CHACHA20_POLY1305, "aes-256-gcm": AES_256_GCM}
#: Code -> the ``cryptography`` AEAD class (both: 32-byte key, 12-byte nonce, 16-byte tag).
AEADS = {CHACHA20_POLY1305: ChaCha20Poly1305, AES_256_GCM: AESGCM}
#: 16-byte blocks (a payload of n bytes counts n // 16 + 2: its blocks and its tag's) one process
#: may seal under one key: AES-GCM's confidentiality bound (draft-irtf-cfrg-aead-limits, 5.1:
#: advantage <= (blocks + messages + 1)^2 / 2^129) stays below 2^-57 for up to 16 processes
#: sealing one session (the main process and 15 workers: 16 x 2^32 = 2^36 blocks). A sender rekeys
#: at half of it and stops sealing at it (docs/handshake.md, "Transport ciphers"). ChaCha20-Poly1305
#: has no such bound short of its nonce space (counters stay below 2^64).
BLOCK_LIMIT = {CHACHA20_POLY1305: float("inf"), AES_256_GCM: 1 << 32}
#: What a node accepts unless told otherwise; it then sends no offer at all (as before).
DEFAULT = (CHACHA20_POLY1305,)
#: At most this many codes in an offer (a longer one is refused).
MAX_OFFERED = 8
_TAG_CIPHERS = 0x01


def offer_tail(ciphers: tuple[int, ...]) -> bytes:
    """The EarlyData tail that states ``ciphers`` (an offer in preference order, or one choice)."""
    if not 1 <= len(ciphers) <= MAX_OFFERED:
        raise ValueError(f"1-{MAX_OFFERED} ciphers")
    return bytes((_TAG_CIPHERS, len(ciphers), *ciphers))


def parse_tail(tail: bytes) -> tuple[int, ...] | None:
    """The ciphers an EarlyData tail states, None if it states none (zero padding, or empty).
    Codes this node does not know are kept (the caller ignores them). HandshakeError if the
    tail begins like a list but is not one (inside an authenticated payload: the peer's bug).
    A tail that begins with another byte states no list either: room for a later extension,
    which a node of this version then ignores (the padding is authenticated, so ignoring it
    lets nothing in) instead of failing a handshake with a newer node."""
    if not tail or tail[0] != _TAG_CIPHERS:
        return None
    if len(tail) < 2 or not 1 <= tail[1] <= MAX_OFFERED or len(tail) < 2 + tail[1]:
        raise HandshakeError("malformed cipher list")
    return tuple(tail[2:2 + tail[1]])


def choose(offered: tuple[int, ...] | None, accepted: tuple[int, ...]) -> int:
    """The responder's pick: the first of its own ``accepted`` (preference order) that the
    initiator offered; ChaCha20-Poly1305 when it offered nothing or nothing in common."""
    if offered:
        for c in accepted:
            if c in offered:
                return c
    return CHACHA20_POLY1305


def parse_names(names) -> tuple[int, ...]:
    """Config names in preference order -> codes; ValueError with a one-line reason if bad."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise ValueError("a non-empty list of cipher names")
    out = []
    for n in names:
        if n not in NAMES:
            raise ValueError(f"unknown cipher {n!r} (known: {', '.join(NAMES)})")
        if NAMES[n] in out:
            raise ValueError(f"cipher {n!r} named twice")
        out.append(NAMES[n])
    if CHACHA20_POLY1305 not in out:
        raise ValueError("the list must include chacha20-poly1305, the fallback every node accepts")
    return tuple(out)


def cpu_prefers(cpu_flags: str) -> tuple[int, ...]:
    """The default list for a CPU with these /proc/cpuinfo flags: AES-256-GCM first where it
    has AES instructions and carry-less multiplication for GHASH (x86 ``aes`` and ``pclmulqdq``,
    arm64 ``aes`` and ``pmull``), else ChaCha20-Poly1305 only."""
    flags = set(cpu_flags.split())
    if "aes" in flags and ("pclmulqdq" in flags or "pmull" in flags):
        return (AES_256_GCM, CHACHA20_POLY1305)
    return DEFAULT

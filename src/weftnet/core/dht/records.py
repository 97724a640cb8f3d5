"""DHT records: immutable content-addressed values and signed mutable records.

* **Immutable**: ``key = SHA-256(value)``. Anyone can check a value against
  its key, so a holder cannot substitute another.
* **Mutable** (in the spirit of BitTorrent BEP 44): owned by an Ed25519 key;
  ``key = SHA-256(public_key || salt)``; carries a sequence number and a TTL;
  the owner signs ``"weftnet-record-v1" || u8 len(salt) || salt || u64 seq ||
  u32 ttl || value``. A higher seq replaces a lower one; an equal seq with a
  different value is refused (the owner must bump seq).

Values are at most 1,000 bytes. Validation raises
:class:`~weftnet.errors.RecordError` with the reason.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from typing import ClassVar

from weftnet.core.dht.messages import MAX_SALT, MAX_VALUE
from weftnet.core.identity import Identity, verify_signature
from weftnet.core.wire import U32, U64, Bytes, Fixed, Message, decode, register
from weftnet.errors import DecodeError, RecordError

__all__ = ["ImmutableRecord", "MutableRecord", "Record", "decode_record", "signing_input"]

_TAG = b"weftnet-record-v1"


@register
@dataclass(frozen=True, slots=True)
class ImmutableRecord(Message):
    """Wire type 0x29: the record is its own encoding."""

    TYPE: ClassVar = 0x29
    value: bytes
    FIELDS: ClassVar = (("value", Bytes(MAX_VALUE)),)

    def __post_init__(self) -> None:
        if len(self.value) > MAX_VALUE:
            raise RecordError(f"value of {len(self.value)} bytes exceeds the limit of {MAX_VALUE}")

    @property
    def key(self) -> bytes:
        return hashlib.sha256(self.value).digest()

    seq = None
    ttl = None

    def validate(self, key: bytes) -> None:
        if self.key != key:
            raise RecordError("immutable record does not hash to its key")


def signing_input(salt: bytes, seq: int, ttl: int, value: bytes) -> bytes:
    return _TAG + bytes((len(salt),)) + salt + struct.pack(">QI", seq, ttl) + value


@register
@dataclass(frozen=True, slots=True)
class MutableRecord(Message):
    """Wire type 0x2A: the record is its own encoding."""

    TYPE: ClassVar = 0x2A
    public_key: bytes
    salt: bytes
    seq: int
    ttl: int
    value: bytes
    signature: bytes
    FIELDS: ClassVar = (
        ("public_key", Fixed(32)),
        ("salt", Bytes(MAX_SALT)),
        ("seq", U64),
        ("ttl", U32),
        ("value", Bytes(MAX_VALUE)),
        ("signature", Fixed(64)),
    )

    @classmethod
    def create(cls, owner: Identity, salt: bytes, seq: int, ttl: int, value: bytes) -> "MutableRecord":
        if len(salt) > MAX_SALT:
            raise RecordError(f"salt of {len(salt)} bytes exceeds the limit of {MAX_SALT}")
        if len(value) > MAX_VALUE:
            raise RecordError(f"value of {len(value)} bytes exceeds the limit of {MAX_VALUE}")
        if not 0 <= seq < 2**64 or not 0 < ttl < 2**32:
            raise RecordError("seq must fit in 64 bits and ttl be 1..2^32-1 seconds")
        sig = owner.sign(signing_input(salt, seq, ttl, value))
        return cls(owner.public_key, salt, seq, ttl, value, sig)

    @property
    def key(self) -> bytes:
        return hashlib.sha256(self.public_key + self.salt).digest()

    def validate(self, key: bytes) -> None:
        if self.key != key:
            raise RecordError("mutable record's owner key and salt do not hash to its key")
        if len(self.value) > MAX_VALUE:
            raise RecordError("value too large")
        if not verify_signature(self.public_key, self.signature, signing_input(self.salt, self.seq, self.ttl, self.value)):
            raise RecordError("signature does not verify")


Record = ImmutableRecord | MutableRecord


def decode_record(blob: bytes) -> Record:
    """Decode a record blob (as carried in Store and Value). Raises RecordError."""
    try:
        msg = decode(blob)
    except DecodeError as exc:
        raise RecordError(f"malformed record: {exc}") from None
    if isinstance(msg, (ImmutableRecord, MutableRecord)):
        return msg
    raise RecordError(f"not a record: {type(msg).__name__}")

"""Private-network membership: the network authority, member certificates and revocation.

A private network (docs/vpn.md) is defined by its **authority**, an Ed25519
key pair kept by the network's owner. The network ID is SHA-256 of the
authority's raw public key, so anyone holding a network ID can check every
statement signed for that network without a directory. The model follows
Nebula's (a CA signs certificates binding a host to overlay IPs and groups)
with weftnet's identities in place of X.509-like host keys:

* :class:`NetworkDescriptor` (0x54) - name, authority key and the address
  prefixes (IPv4 and/or IPv6) the network may hand out; self-signed.
* :class:`NetCert` (0x50) - binds a member node ID to overlay addresses
  inside those prefixes, groups for the firewall, a validity window and a
  serial number; signed by the authority.
* :class:`RevocationList` (0x51) - serials and node IDs that are no longer
  members, with a sequence number so a newer list replaces an older one.
* **Directory records** - for each certified address, a DHT mutable record
  (core/dht/records.py) owned by the *authority* key, salt
  ``"weftnet-vpn-addr" | address bytes``, seq = the certificate serial, value =
  the certificate. The authority signs them with the certificate; the member
  publishes them. Any member can then find who holds an address with one DHT
  get on ``SHA-256(authority_key | salt)``, and every DHT node can validate
  the record without knowing anything about the network.
* **Revocation records** - the newest revocation list, as a DHT mutable
  record owned by the authority key under salt ``"weftnet-vpn-revocations"``
  (seq = the list's seq). Members read it periodically and republish the
  newest they hold, so a revocation spreads even while the owner is offline.

Every signature covers ``tag | 0x00 | encoded fields except the signature``
where the tag names the statement (``weftnet-netcert-v1`` ...) so a signature
for one kind can never be replayed as another; the field encoding is the one
wire codec (core/wire.py), which is canonical (decode then encode gives the
same bytes). docs/wire/vpn.md lists the layouts byte by byte.

**Version 2** (layer-2 networks, docs/l2.md): a descriptor may end, after its
signature, with ``02 | layer:u8`` (:class:`L2Mode`, the network carries
Ethernet frames), and a certificate with ``02 | macs | sources | bindings``
(:class:`L2Grant`, the MACs and IPs the member may source). Such a statement
is signed under the ``-v2`` tag, over the version-1 fields followed by this
tail. Version-1 statements have no tail and keep their exact bytes and
signatures; a version-1 decoder refuses a version-2 statement (trailing
bytes) rather than misread it.

Files use a PEM-like text armour (RFC 7468 shape: ``-----BEGIN WEFTNET
CERTIFICATE-----``, base64 of the wire encoding, ``-----END ...-----``).

This module does no I/O: time (``now``) and randomness (``rng``) are arguments.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar, Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from weftnet.core.dht.records import MutableRecord
from weftnet.core.identity import Identity, NodeId, RandomSource, verify_signature
from weftnet.core.wire import (
    U8,
    U64,
    Codec,
    Fixed,
    Message,
    Seq,
    Struct,
    Text,
    decode,
    encode,
    register,
)
from weftnet.errors import DecodeError, IdentityError, NetworkError, RecordError

__all__ = [
    "IPAddress",
    "IPNetwork",
    "MAX_ADDRESSES",
    "MAX_GROUPS",
    "MAX_PREFIXES",
    "CertificateError",
    "BadSignature",
    "CertificateExpired",
    "CertificateNotYetValid",
    "WrongNetwork",
    "CertificateRevoked",
    "AddressOutsideNetwork",
    "NetworkDescriptor",
    "NetCert",
    "L2Mode",
    "L2Grant",
    "MacPrefix",
    "Binding",
    "MAX_MAC_PREFIXES",
    "MAX_SOURCES",
    "MAX_BINDINGS",
    "RevocationList",
    "NetworkAuthority",
    "network_id_for",
    "check_name",
    "armor",
    "dearmor",
    "DIRECTORY_TTL",
    "directory_salt",
    "directory_key",
    "member_salt",
    "member_key",
    "cert_from_member_record",
    "cert_from_directory",
    "revocation_key",
    "revocations_from_record",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ADDRESSES = 8
MAX_GROUPS = 32
MAX_PREFIXES = 8
MAX_REVOKED_SERIALS = 2048
MAX_REVOKED_NODES = 1024

# Kept small so a full certificate still fits one DHT record value (1,000 bytes).
MAX_MAC_PREFIXES = 8
MAX_SOURCES = 8
MAX_BINDINGS = 16

_TAG_NETWORK = b"weftnet-network-v1\x00"
_TAG_NETWORK_V2 = b"weftnet-network-v2\x00"
_TAG_CERT = b"weftnet-netcert-v1\x00"
_TAG_CERT_V2 = b"weftnet-netcert-v2\x00"
#: First byte of a version-2 tail; never a valid byte after a version-1 statement where one is embedded
#: (a CertOffer's want_reply is 0 or 1).
_V2 = 2
_TAG_REVOCATION = b"weftnet-revocation-v1\x00"
_DIRECTORY_SALT = b"weftnet-vpn-addr"
_MEMBER_SALT = b"weftnet-vpn-member"
_REVOCATION_SALT = b"weftnet-vpn-revocations"
#: Lifetime of a directory record in a DHT node's store; members republish
#: theirs well before (runtime: every 20 minutes).
DIRECTORY_TTL = 6 * 3600

# Names become directory names (state dir) and appear in firewall rules:
# a conservative alphabet keeps them safe in both places.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    """Refuse a network or group name outside ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{kind} name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit"
        )
    return name


def network_id_for(authority_key: bytes) -> bytes:
    """The 32-byte network ID: SHA-256 of the authority's raw Ed25519 public key."""
    if len(authority_key) != 32:
        raise IdentityError("an Ed25519 public key is exactly 32 bytes")
    return hashlib.sha256(authority_key).digest()


# ---------------------------------------------------------------------------
# Typed verification errors. All are NetworkError, so one except clause does.


class CertificateError(NetworkError):
    """A certificate, descriptor or revocation list that must not be trusted."""


class BadSignature(CertificateError):
    """The signature does not verify under the network authority's key."""


class CertificateExpired(CertificateError):
    """``now`` is at or after the certificate's not_after."""


class CertificateNotYetValid(CertificateError):
    """``now`` is before the certificate's not_before."""


class WrongNetwork(CertificateError):
    """The statement names another network (ID or name differs)."""


class CertificateRevoked(CertificateError):
    """The authority's revocation list names this serial or node ID."""


class AddressOutsideNetwork(CertificateError):
    """A certified overlay address lies outside every prefix of the network."""


# ---------------------------------------------------------------------------
# Field codecs for addresses and prefixes (canonical: one encoding per value).


class _AddressCodec(Codec):
    """``family:u8 (4|6) | 4 or 16 address bytes``, as an ipaddress object."""

    def pack(self, value: IPAddress, out: bytearray) -> None:
        if not isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise ValueError(f"expected an IP address, got {value!r}")
        out.append(value.version)
        out += value.packed

    def unpack(self, buf: memoryview, off: int) -> tuple[IPAddress, int]:
        fam, off = U8.unpack(buf, off)
        if fam == 4:
            raw, off = Fixed(4).unpack(buf, off)
            return ipaddress.IPv4Address(raw), off
        if fam == 6:
            raw, off = Fixed(16).unpack(buf, off)
            return ipaddress.IPv6Address(raw), off
        raise DecodeError(f"bad field: address family {fam} is not 4 or 6")

    def describe(self) -> str:
        return "address (u8 family 4|6, 4|16 bytes)"


class _PrefixCodec(Codec):
    """``family:u8 (4|6) | prefix_len:u8 | 4 or 16 bytes`` with host bits zero."""

    def pack(self, value: IPNetwork, out: bytearray) -> None:
        if not isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            raise ValueError(f"expected an IP network, got {value!r}")
        out.append(value.version)
        out.append(value.prefixlen)
        out += value.network_address.packed

    def unpack(self, buf: memoryview, off: int) -> tuple[IPNetwork, int]:
        fam, off = U8.unpack(buf, off)
        if fam not in (4, 6):
            raise DecodeError(f"bad field: prefix family {fam} is not 4 or 6")
        plen, off = U8.unpack(buf, off)
        size = 4 if fam == 4 else 16
        if plen > size * 8:
            raise DecodeError(f"bad field: prefix length {plen} is too long for IPv{fam}")
        raw, off = Fixed(size).unpack(buf, off)
        try:
            net = ipaddress.ip_network((raw, plen), strict=True)
        except ValueError:
            raise DecodeError("bad field: prefix has host bits set") from None
        return net, off

    def describe(self) -> str:
        return "prefix (u8 family 4|6, u8 length, 4|16 bytes, host bits zero)"


Address = _AddressCodec()
Prefix = _PrefixCodec()
_NodeIdBytes = Fixed(32)
_Signature = Fixed(64)


def _signed_bytes(tag: bytes, msg: Message) -> bytes:
    """``tag | every field except the signature``, in wire (field) order."""
    out = bytearray(tag)
    for name, codec in msg.FIELDS:
        if name != "signature":
            codec.pack(getattr(msg, name), out)
    return bytes(out)


class _MacPrefixCodec(Codec):
    """``mac:6 | length:u8 (0-48)`` with the bits after the length zero."""

    def pack(self, value: "MacPrefix", out: bytearray) -> None:
        out += value.mac
        out.append(value.length)

    def unpack(self, buf: memoryview, off: int) -> tuple["MacPrefix", int]:
        raw, off = Fixed(6).unpack(buf, off)
        n, off = U8.unpack(buf, off)
        try:
            return MacPrefix(raw, n), off
        except ValueError as exc:
            raise DecodeError(f"bad field: {exc}") from None

    def describe(self) -> str:
        return "MAC prefix (6 bytes, u8 length 0-48, host bits zero)"


class _Tail(Codec):
    """An optional version-2 tail after a statement's signature: absent, or ``02 | fields of cls``."""

    def __init__(self, cls: type[Message]):
        self.cls = cls

    def pack(self, value, out: bytearray) -> None:
        if value is not None:
            out.append(_V2)
            value._pack_body(out)

    def unpack(self, buf: memoryview, off: int):
        if off >= len(buf) or buf[off] != _V2:
            return None, off
        return self.cls._unpack_body(buf, off + 1)

    def describe(self) -> str:
        return f"nothing (version 1), or u8 2 + {self.cls.__name__} (version 2)"


def _sorted_unique(kind: str, values: Sequence) -> None:
    if list(values) != sorted(set(values)):
        raise ValueError(f"{kind} must be sorted and without duplicates")


# ---------------------------------------------------------------------------
# Version-2 parts: layer-2 networks (docs/l2.md).


@dataclass(frozen=True)
class MacPrefix:
    """A range of MAC addresses: the first ``length`` bits of ``mac`` (48: exactly one address)."""

    mac: bytes
    length: int

    def __post_init__(self) -> None:
        if len(self.mac) != 6 or not 0 <= self.length <= 48:
            raise ValueError("a MAC prefix is 6 bytes and a length of 0-48")
        if int.from_bytes(self.mac, "big") & ((1 << (48 - self.length)) - 1):
            raise ValueError("a MAC prefix has bits set after its length")

    def contains(self, mac: bytes) -> bool:
        shift = 48 - self.length
        return int.from_bytes(mac, "big") >> shift == int.from_bytes(self.mac, "big") >> shift

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac) + f"/{self.length}"


@dataclass(frozen=True)
class Binding(Message):
    """A MAC address and the IP address of one host behind a member (a VM or a container)."""

    mac: bytes
    address: IPAddress
    FIELDS: ClassVar = (("mac", Fixed(6)), ("address", Address))

    def __post_init__(self) -> None:
        if len(self.mac) != 6 or self.mac[0] & 1:
            raise ValueError("a binding's MAC must be a unicast address")


@dataclass(frozen=True)
class L2Mode(Message):
    """The version-2 tail of a network descriptor: the network's layer (2: Ethernet frames)."""

    layer: int
    FIELDS: ClassVar = (("layer", U8),)

    def __post_init__(self) -> None:
        if self.layer != 2:
            raise ValueError(f"layer {self.layer} is not 2 (a layer-3 network has no tail)")


@dataclass(frozen=True)
class L2Grant(Message):
    """The version-2 tail of a certificate: what a member of a layer-2 network may source.

    * ``macs``: MAC prefixes its frames may come from (besides its own bridge's
      MAC, derived from its node ID, and its bindings' MACs);
    * ``sources``: IP prefixes its packets may come from (besides its
      addresses and its bindings' addresses); may lie outside the network's
      prefixes, for a member that routes (a gateway);
    * ``bindings``: hosts behind the member whose MAC and IP the authority
      knows, so other members answer ARP and neighbour solicitations for them
      without a broadcast, and find the member through the DHT by that IP.
    """

    macs: tuple[MacPrefix, ...] = ()
    sources: tuple[IPNetwork, ...] = ()
    bindings: tuple[Binding, ...] = ()
    FIELDS: ClassVar = (
        ("macs", Seq(_MacPrefixCodec(), MAX_MAC_PREFIXES)),
        ("sources", Seq(Prefix, MAX_SOURCES)),
        ("bindings", Seq(Struct(Binding), MAX_BINDINGS)),
    )

    def __post_init__(self) -> None:
        for name in ("macs", "sources", "bindings"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(set(self.macs)) != len(self.macs):
            raise ValueError("a certificate lists a MAC prefix twice")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("a certificate lists a source prefix twice")
        if len({b.address for b in self.bindings}) != len(self.bindings):
            raise ValueError("a certificate binds an address twice")


# ---------------------------------------------------------------------------
# The statements.


@register
@dataclass(frozen=True)
class NetworkDescriptor(Message):
    """What a member needs to trust a network: its name, authority key and prefixes.

    Self-signed by the authority; ``network_id`` is derived from the key.
    """

    TYPE: ClassVar = 0x54
    name: str
    authority_key: bytes
    prefixes: tuple[IPNetwork, ...]
    created: int
    signature: bytes
    l2: L2Mode | None = None
    FIELDS: ClassVar = (
        ("name", Text(64)),
        ("authority_key", Fixed(32)),
        ("prefixes", Seq(Prefix, MAX_PREFIXES)),
        ("created", U64),
        ("signature", _Signature),
        ("l2", _Tail(L2Mode)),
    )

    def __post_init__(self) -> None:
        check_name("network", self.name)
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        if not self.prefixes:
            raise ValueError("a network needs at least one address prefix")
        nets = list(self.prefixes)
        for i, a in enumerate(nets):
            for b in nets[i + 1 :]:
                if a.version == b.version and a.overlaps(b):
                    raise ValueError(f"prefixes {a} and {b} overlap")

    @property
    def network_id(self) -> bytes:
        return network_id_for(self.authority_key)

    @property
    def layer(self) -> int:
        """2 for a network of Ethernet frames (docs/l2.md), 3 for one of IP packets."""
        return 3 if self.l2 is None else self.l2.layer

    def signing_input(self) -> bytes:
        return _signed_bytes(_TAG_NETWORK if self.l2 is None else _TAG_NETWORK_V2, self)

    def verify(self, network_id: bytes | None = None) -> "NetworkDescriptor":
        """Check the self-signature (and, if given, that this is ``network_id``)."""
        if network_id is not None and self.network_id != network_id:
            raise WrongNetwork(
                f"descriptor is for network {self.network_id.hex()[:16]}, expected {network_id.hex()[:16]}"
            )
        if not verify_signature(self.authority_key, self.signature, self.signing_input()):
            raise BadSignature(f"network descriptor for {self.name!r} has a bad signature")
        return self

    def contains(self, address: IPAddress) -> bool:
        return any(address.version == p.version and address in p for p in self.prefixes)


@register
@dataclass(frozen=True)
class NetCert(Message):
    """A member certificate: node ID, overlay addresses, groups, validity, serial.

    ``addresses`` keeps its order (the first address of each family is the
    member's primary one); ``groups`` is sorted and unique so equal sets have
    equal encodings. Validity is ``not_before <= now < not_after`` (seconds).
    """

    TYPE: ClassVar = 0x50
    network_name: str
    network_id: bytes
    node_id: bytes
    addresses: tuple[IPAddress, ...]
    groups: tuple[str, ...]
    not_before: int
    not_after: int
    serial: int
    signature: bytes
    l2: L2Grant | None = None
    FIELDS: ClassVar = (
        ("network_name", Text(64)),
        ("network_id", Fixed(32)),
        ("node_id", _NodeIdBytes),
        ("addresses", Seq(Address, MAX_ADDRESSES)),
        ("groups", Seq(Text(64), MAX_GROUPS)),
        ("not_before", U64),
        ("not_after", U64),
        ("serial", U64),
        ("signature", _Signature),
        ("l2", _Tail(L2Grant)),
    )

    def __post_init__(self) -> None:
        check_name("network", self.network_name)
        object.__setattr__(self, "addresses", tuple(self.addresses))
        object.__setattr__(self, "groups", tuple(self.groups))
        if not self.addresses:
            raise ValueError("a certificate needs at least one overlay address")
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError("a certificate lists an address twice")
        for g in self.groups:
            check_name("group", g)
        _sorted_unique("groups", self.groups)
        if self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")

    @property
    def member(self) -> NodeId:
        return NodeId(self.node_id)

    def signing_input(self) -> bytes:
        return _signed_bytes(_TAG_CERT if self.l2 is None else _TAG_CERT_V2, self)

    def verify(
        self,
        descriptor: NetworkDescriptor,
        now: float,
        revocations: "RevocationList | None" = None,
    ) -> "NetCert":
        """Check everything a member must check before trusting this certificate.

        Raises, in this order of checks: :class:`WrongNetwork`,
        :class:`BadSignature`, :class:`AddressOutsideNetwork`,
        :class:`CertificateRevoked`, :class:`CertificateNotYetValid`,
        :class:`CertificateExpired`. Returns ``self`` when it is good.
        """
        who = f"certificate #{self.serial} for {NodeId(self.node_id).short()}"
        if self.network_id != descriptor.network_id:
            raise WrongNetwork(
                f"{who} is for network {self.network_id.hex()[:16]}, not {descriptor.name!r} "
                f"({descriptor.network_id.hex()[:16]})"
            )
        if self.network_name != descriptor.name:
            raise WrongNetwork(f"{who} names network {self.network_name!r}, not {descriptor.name!r}")
        if not verify_signature(descriptor.authority_key, self.signature, self.signing_input()):
            raise BadSignature(f"{who} has a bad signature for network {descriptor.name!r}")
        for a in self.addresses + tuple(b.address for b in (self.l2.bindings if self.l2 else ())):
            if not descriptor.contains(a):
                nets = ", ".join(str(p) for p in descriptor.prefixes)
                raise AddressOutsideNetwork(f"{who}: address {a} is outside the network's prefixes ({nets})")
        if revocations is not None and revocations.revokes(self):
            raise CertificateRevoked(f"{who} is revoked (revocation list seq {revocations.seq})")
        if now < self.not_before:
            raise CertificateNotYetValid(f"{who} is not valid until {self.not_before} (now {int(now)})")
        if now >= self.not_after:
            raise CertificateExpired(f"{who} expired at {self.not_after} (now {int(now)})")
        return self


@register
@dataclass(frozen=True)
class RevocationList(Message):
    """The serials and node IDs an authority has revoked; a higher ``seq`` replaces a lower one."""

    TYPE: ClassVar = 0x51
    network_id: bytes
    seq: int
    issued_at: int
    serials: tuple[int, ...]
    node_ids: tuple[bytes, ...]
    signature: bytes
    FIELDS: ClassVar = (
        ("network_id", Fixed(32)),
        ("seq", U64),
        ("issued_at", U64),
        ("serials", Seq(U64, MAX_REVOKED_SERIALS)),
        ("node_ids", Seq(_NodeIdBytes, MAX_REVOKED_NODES)),
        ("signature", _Signature),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "serials", tuple(self.serials))
        object.__setattr__(self, "node_ids", tuple(self.node_ids))
        _sorted_unique("revoked serials", self.serials)
        _sorted_unique("revoked node IDs", self.node_ids)

    def signing_input(self) -> bytes:
        return _signed_bytes(_TAG_REVOCATION, self)

    def verify(self, descriptor: NetworkDescriptor) -> "RevocationList":
        if self.network_id != descriptor.network_id:
            raise WrongNetwork(f"revocation list is for another network, not {descriptor.name!r}")
        if not verify_signature(descriptor.authority_key, self.signature, self.signing_input()):
            raise BadSignature(f"revocation list seq {self.seq} for {descriptor.name!r} has a bad signature")
        return self

    def revokes(self, cert: NetCert) -> bool:
        return cert.serial in self._serial_set or cert.node_id in self._node_set

    @property
    def _serial_set(self) -> frozenset[int]:
        s = self.__dict__.get("_ss")
        if s is None:
            s = frozenset(self.serials)
            object.__setattr__(self, "_ss", s)
        return s

    @property
    def _node_set(self) -> frozenset[bytes]:
        s = self.__dict__.get("_ns")
        if s is None:
            s = frozenset(self.node_ids)
            object.__setattr__(self, "_ns", s)
        return s


# ---------------------------------------------------------------------------
# The owner's side.


class NetworkAuthority:
    """The owner's signing key for one network. Only the owner holds this."""

    def __init__(self, private_key: Ed25519PrivateKey, descriptor: NetworkDescriptor):
        pub = private_key.public_key().public_bytes_raw()
        if pub != descriptor.authority_key:
            raise NetworkError(f"the authority key does not match network {descriptor.name!r}")
        self._sk = private_key
        self.descriptor = descriptor.verify()

    @classmethod
    def create(
        cls, name: str, prefixes: Iterable[IPNetwork | str], rng: RandomSource, now: float, layer: int = 3
    ) -> "NetworkAuthority":
        """A new network: a fresh authority key (from ``rng``) and its signed descriptor.

        ``layer`` 2 makes a network of Ethernet frames (docs/l2.md); 3, of IP packets.
        """
        if layer not in (2, 3):
            raise NetworkError(f"a network is layer 2 or layer 3, not {layer}")
        try:
            nets = tuple(ipaddress.ip_network(p, strict=True) if isinstance(p, str) else p for p in prefixes)
        except ValueError as exc:
            raise NetworkError(f"bad network prefix: {exc}") from None
        sk = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        return cls(sk, cls._sign_descriptor(sk, name, nets, int(now), L2Mode(2) if layer == 2 else None))

    @staticmethod
    def _sign_descriptor(sk: Ed25519PrivateKey, name: str, nets: tuple, created: int,
                         l2: "L2Mode | None" = None) -> NetworkDescriptor:
        pub = sk.public_key().public_bytes_raw()
        try:
            unsigned = NetworkDescriptor(name, pub, nets, created, bytes(64), l2)
        except ValueError as exc:
            raise NetworkError(str(exc)) from None
        return dataclasses.replace(unsigned, signature=sk.sign(unsigned.signing_input()))

    @classmethod
    def from_seed(cls, seed: bytes, descriptor: NetworkDescriptor) -> "NetworkAuthority":
        if len(seed) != 32:
            raise NetworkError("an authority seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed), descriptor)

    @property
    def seed(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._sk.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def network_id(self) -> bytes:
        return self.descriptor.network_id

    def sign_member(
        self,
        node_id: NodeId | bytes,
        addresses: Iterable[IPAddress | str],
        groups: Iterable[str] = (),
        *,
        not_before: int,
        not_after: int,
        serial: int,
        l2: L2Grant | None = None,
    ) -> NetCert:
        """Sign a member certificate. Refuses addresses outside the network's prefixes.

        ``l2`` (layer-2 networks only) states the MACs and IPs the member may source.
        """
        raw = node_id.raw if isinstance(node_id, NodeId) else node_id
        if self.descriptor.layer == 2 and l2 is None:
            l2 = L2Grant()
        if l2 is not None and self.descriptor.layer != 2:
            raise NetworkError(f"network {self.descriptor.name!r} is layer 3: its certificates grant no MACs")
        try:
            addrs = tuple(ipaddress.ip_address(a) if isinstance(a, str) else a for a in addresses)
            unsigned = NetCert(
                self.descriptor.name, self.network_id, raw, addrs, tuple(sorted(set(groups))),
                int(not_before), int(not_after), serial, bytes(64), l2,
            )
        except (ValueError, TypeError) as exc:
            raise NetworkError(f"cannot sign certificate: {exc}") from None
        for a in addrs + tuple(b.address for b in (l2.bindings if l2 else ())):
            if not self.descriptor.contains(a):
                nets = ", ".join(str(p) for p in self.descriptor.prefixes)
                raise AddressOutsideNetwork(f"address {a} is outside network {self.descriptor.name!r} ({nets})")
        return dataclasses.replace(unsigned, signature=self._sk.sign(unsigned.signing_input()))

    def directory_records(self, cert: NetCert, ttl: int = DIRECTORY_TTL) -> list[MutableRecord]:
        """Signed DHT records for ``cert`` (module docstring), for the member to publish.

        One per address; in a layer-2 network also one per bound address and
        one member record under the certificate's serial (docs/l2.md, "Finding members").
        """
        if cert.network_id != self.network_id:
            raise WrongNetwork(f"certificate #{cert.serial} is for another network")
        owner = Identity(self._sk)
        value = encode(cert)
        salts = [directory_salt(a) for a in cert.addresses]
        if cert.l2 is not None:
            salts += [directory_salt(b.address) for b in cert.l2.bindings if b.address not in cert.addresses]
            salts.append(member_salt(cert.serial))
        try:
            return [MutableRecord.create(owner, salt, cert.serial, ttl, value) for salt in salts]
        except RecordError:
            raise NetworkError(
                f"certificate #{cert.serial} is {len(value)} bytes, too long for a DHT record: "
                "give it fewer addresses, groups, MAC prefixes, sources or bindings"
            ) from None

    def revocation_record(self, rl: RevocationList, ttl: int = DIRECTORY_TTL) -> MutableRecord:
        """``rl`` as a signed DHT record; NetworkError if the list is too long for one record."""
        value = encode(rl)
        try:
            return MutableRecord.create(Identity(self._sk), _REVOCATION_SALT, rl.seq, ttl, value)
        except RecordError:
            raise NetworkError(
                f"the revocation list ({len(rl.serials)} serials, {len(rl.node_ids)} node IDs, {len(value)} "
                "bytes) is too long for one DHT record: hand revocations.pem to the members yourself"
            ) from None

    def revocation_list(
        self, seq: int, issued_at: int, serials: Iterable[int] = (), node_ids: Iterable[bytes | NodeId] = ()
    ) -> RevocationList:
        """Sign a revocation list (give it a higher ``seq`` than the last one you published)."""
        ids = sorted({n.raw if isinstance(n, NodeId) else n for n in node_ids})
        ser = sorted(set(serials))
        if len(ser) > MAX_REVOKED_SERIALS or len(ids) > MAX_REVOKED_NODES:
            raise NetworkError(
                f"a revocation list holds at most {MAX_REVOKED_SERIALS} serials and {MAX_REVOKED_NODES} node IDs"
            )
        unsigned = RevocationList(self.network_id, seq, int(issued_at), tuple(ser), tuple(ids), bytes(64))
        return RevocationList(
            self.network_id, seq, int(issued_at), tuple(ser), tuple(ids), self._sk.sign(unsigned.signing_input())
        )


# ---------------------------------------------------------------------------
# Directory records: who holds an address, findable through the DHT.


def directory_salt(address: IPAddress) -> bytes:
    return _DIRECTORY_SALT + address.packed


def directory_key(authority_key: bytes, address: IPAddress | str) -> bytes:
    """The DHT key under which the holder of ``address`` publishes its certificate."""
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    return hashlib.sha256(authority_key + directory_salt(addr)).digest()


def member_salt(serial: int) -> bytes:
    return _MEMBER_SALT + serial.to_bytes(8, "big")


def member_key(authority_key: bytes, serial: int) -> bytes:
    """The DHT key of the member record of certificate ``serial`` (layer-2 networks)."""
    return hashlib.sha256(authority_key + member_salt(serial)).digest()


def _record_cert(record: MutableRecord, descriptor: NetworkDescriptor, salt: bytes, what: str) -> NetCert:
    if record.public_key != descriptor.authority_key or record.salt != salt:
        raise CertificateError(f"{what} is not this network's")
    record.validate(record.key)
    try:
        cert = decode(record.value)
    except DecodeError as exc:
        raise CertificateError(f"{what} does not hold a certificate: {exc}") from None
    if not isinstance(cert, NetCert):
        raise CertificateError(f"{what} holds a {type(cert).__name__}, not a certificate")
    if cert.serial != record.seq:
        raise CertificateError(f"{what} holds a certificate with another serial")
    return cert


def cert_from_member_record(record: MutableRecord, descriptor: NetworkDescriptor, serial: int) -> NetCert:
    """The certificate in the member record for ``serial``, checked against the network (not yet verified)."""
    return _record_cert(record, descriptor, member_salt(serial), f"member record #{serial}")


def cert_from_directory(record: MutableRecord, descriptor: NetworkDescriptor, address: IPAddress) -> NetCert:
    """The certificate in a directory record found for ``address``, checked against the network.

    Raises :class:`CertificateError` (or a subclass) when the record is not
    the authority's, does not hold a certificate, or names another address.
    The certificate's own validity (signature, expiry, revocation) is left to
    :meth:`NetCert.verify`, which the data plane runs when installing it.
    """
    cert = _record_cert(record, descriptor, directory_salt(address), f"directory record for {address}")
    bound = cert.l2.bindings if cert.l2 is not None else ()
    if address not in cert.addresses and all(b.address != address for b in bound):
        raise CertificateError(f"directory record for {address} holds a certificate for other addresses")
    return cert


def revocation_key(authority_key: bytes) -> bytes:
    """The DHT key of a network's revocation record."""
    return hashlib.sha256(authority_key + _REVOCATION_SALT).digest()


def revocations_from_record(record: MutableRecord, descriptor: NetworkDescriptor) -> RevocationList:
    """The revocation list in a revocation record, verified against the network (CertificateError if not)."""
    if record.public_key != descriptor.authority_key or record.salt != _REVOCATION_SALT:
        raise CertificateError("revocation record is not this network's")
    record.validate(record.key)
    try:
        rl = decode(record.value)
    except DecodeError as exc:
        raise CertificateError(f"revocation record does not hold a revocation list: {exc}") from None
    if not isinstance(rl, RevocationList) or rl.seq != record.seq:
        raise CertificateError("revocation record does not hold the revocation list it names")
    return rl.verify(descriptor)


# ---------------------------------------------------------------------------
# Text armour.

_LABELS: dict[type[Message], str] = {
    NetCert: "WEFTNET CERTIFICATE",
    NetworkDescriptor: "WEFTNET NETWORK",
    RevocationList: "WEFTNET REVOCATION LIST",
    MutableRecord: "WEFTNET DIRECTORY RECORD",
}
_BY_LABEL = {v: k for k, v in _LABELS.items()}
_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


def armor(msg: NetCert | NetworkDescriptor | RevocationList | MutableRecord) -> str:
    """Text form for files: a BEGIN line, base64 of the wire encoding in 64-column lines, an END line."""
    label = _LABELS.get(type(msg))
    if label is None:
        raise NetworkError(f"{type(msg).__name__} has no text armour")
    b64 = base64.b64encode(encode(msg)).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def dearmor(text: str) -> list[NetCert | NetworkDescriptor | RevocationList | MutableRecord]:
    """Every armoured block in ``text``, decoded (signatures are not checked here).

    Raises :class:`NetworkError` for text with no block, an unknown label, bad
    base64, or bytes that do not decode as the labelled statement.
    """
    out: list = []
    for m in _BLOCK_RE.finditer(text):
        label, body = m.group(1), m.group(2)
        cls = _BY_LABEL.get(label)
        if cls is None:
            raise NetworkError(f"unknown armour label {label!r}")
        try:
            raw = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise NetworkError(f"{label.lower()} block is not valid base64") from None
        try:
            msg = decode(raw)
        except DecodeError as exc:
            raise NetworkError(f"{label.lower()} block does not decode: {exc}") from None
        if not isinstance(msg, cls):
            raise NetworkError(f"{label.lower()} block holds a {type(msg).__name__}")
        out.append(msg)
    if not out:
        raise NetworkError("no -----BEGIN WEFTNET ...----- block found")
    return out

"""A contact: how to reach a node - its public key and underlay UDP endpoint.

Contacts travel inside DHT replies, so their wire form is a nested record
(``public_key:bytes[32] | endpoint``). The node ID is derived from the key,
never sent, so a peer cannot hand out a contact whose ID and key disagree.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import ClassVar

from weftnet.core.identity import NodeId, node_key_for
from weftnet.core.wire import Endpoint, Fixed, Message, Seq, Struct, _host_bytes, _host_text
from weftnet.errors import DecodeError

__all__ = ["Contact", "Addr", "ContactSeq", "shared_contact"]

#: An underlay UDP endpoint as (host, port); host is an IPv4 or IPv6 literal.
Addr = tuple[str, int]


#: Contacts decoded (or met) here that something still holds (a routing table, a lookup, a reply),
#: by their encoding: DHT answers carry the same ones again and again. Weak: a contact nothing else
#: holds any more leaves it (it held ~130 such contacts a node at 1,000 nodes, ~400 bytes each,
#: more than the routing table's 80; bench/results/dmem10). Bounded too: emptied when full (it is
#: filled from what peers send; docs/security.md).
_CACHE: dict[bytes, "_Ref"] = {}
CACHE_MAX = 65536


def _gone(ref: "_Ref") -> None:
    table = ref.table
    if table.get(ref.raw) is ref:
        del table[ref.raw]


class _Ref(weakref.ref):
    """A weak reference to a cached contact that removes its entry (from the dict it was put in)
    when the contact is freed."""

    __slots__ = ("raw", "table")

    def __new__(cls, obj, raw, table):
        self = weakref.ref.__new__(cls, obj, _gone)
        self.raw = raw
        self.table = table
        return self

    def __init__(self, obj, raw, table):
        super().__init__(obj, _gone)


def _cached(raw: bytes):
    """The live contact whose encoding is ``raw``, or None."""
    ref = _CACHE.get(raw)
    return None if ref is None else ref()


def _keep(raw: bytes, obj: "Contact") -> None:
    table = _CACHE
    if len(table) >= CACHE_MAX:
        table.clear()
    table[raw] = _Ref(obj, raw, table)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Contact(Message):
    public_key: bytes
    endpoint: Addr
    #: The node ID as an integer (``node_id.int``): the DHT reads it for every contact of every
    #: reply. The :class:`NodeId` itself is made on demand (``node_id``): a contact held one made at
    #: decode, 48 bytes and its 32-byte digest (65), ~113 bytes a contact a node holds or met, for
    #: the few readers that want the object (sessions are keyed by it) rather than the integer.
    key: int = field(init=False, compare=False, repr=False)
    #: ``key & 255``: one of the interpreter's shared small ints (always in cache), so a scan of a
    #: bucket for a key compares these first and reads an entry's 256-bit ``key`` (an object of its
    #: own, out of cache at a million simulated nodes) only when they match. Costs one slot: a
    #: Contact is 72 bytes with it (64 without; 96 before Message had ``__slots__``).
    tag: int = field(init=False, compare=False, repr=False)
    #: The contact's encoding, once made or read (the same bytes object as its key in ``_CACHE``): a
    #: FIND_NODE answer carries 20 contacts, the same ones again and again, and a contact decoded is
    #: sent on as the bytes it came in. Costs no memory: the object stays in its 80-byte allocation
    #: (where a process-wide dict of encodings cost ~180 bytes an entry).
    wire: bytes | None = field(init=False, default=None, compare=False, repr=False)

    FIELDS: ClassVar = (("public_key", Fixed(32)), ("endpoint", Endpoint))

    def __post_init__(self) -> None:
        key = node_key_for(self.public_key)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "tag", key & 255)
        ep = self.endpoint
        host, port = ep
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        if type(ep) is not tuple:  # a tuple is kept as given: the driver shares one per endpoint
            object.__setattr__(self, "endpoint", (host, port))

    @property
    def node_id(self) -> NodeId:
        """The node ID (``node_id_for(public_key)``), made from ``key`` at each read: read ``key`` in
        hot paths."""
        return NodeId.of_int(self.key)

    def _pack_body(self, out: bytearray) -> None:
        # Encode each contact once (a Nodes of 20: 37 -> 14 us here).
        raw = self.wire
        if raw is None:
            buf = bytearray()
            Message._pack_body(self, buf)
            raw = bytes(buf)
            object.__setattr__(self, "wire", raw)
        out += raw

    @classmethod
    def _unpack_body(cls, buf, off):
        # DHT replies carry the same contacts again and again: decode each
        # distinct encoding once (the hash behind node_id is the costly part).
        n = 32 + 1 + (4 if off + 32 < len(buf) and buf[off + 32] == 4 else 16) + 2
        raw = bytes(buf[off : off + n])
        if len(raw) == n:
            hit = _cached(raw)
            if hit is not None:
                return hit, off + n
        obj, end = Message._unpack_body.__func__(cls, buf, off)
        if end - off == n:
            object.__setattr__(obj, "wire", raw)
            _keep(raw, obj)
        return obj, end

    def __repr__(self) -> str:
        return f"Contact({self.node_id.short()}@{self.endpoint[0]}:{self.endpoint[1]})"


def shared_contact(public_key: bytes, endpoint: Addr) -> Contact:
    """``Contact(public_key, endpoint)``, as the process's one object for that key at that endpoint
    when it has one (decoded from a DHT answer, or met here before): a node learns the askers of
    sessionless queries from datagrams, not from answers, and each table that kept its own copy
    of the same contact held another key, node ID and Contact (about 200 bytes a peer, bench/dht).
    Equal either way; only identity differs."""
    try:
        raw = public_key + _host_bytes(endpoint[0]) + endpoint[1].to_bytes(2, "big")
    except (ValueError, OverflowError, TypeError, AttributeError):
        return Contact(public_key, endpoint)  # not an IP literal (a simulator's label): not cached
    hit = _cached(raw)
    if hit is None or hit.endpoint != endpoint:
        hit = Contact(public_key, endpoint)
        if len(raw) == 32 + (7 if raw[32] == 4 else 19):
            object.__setattr__(hit, "wire", raw)
            _keep(raw, hit)
    return hit


class ContactSeq(Seq):
    """``Seq(Struct(Contact), max_count)`` with the same bytes and checks, and a fast path for
    contacts met before: every DHT answer carries up to 20, mostly the same ones, and the
    generic codec spent three calls a contact before it reached the caches above. A contact
    not met before is read from the same slice (8.4 -> 4.9 us; a node alone in its process meets
    ~200 a join at 1,000 nodes, bench/results/djoin10); anything but a whole IPv4 or IPv6 contact
    goes to the generic codec, which refuses it."""

    __slots__ = ()

    def __init__(self, max_count: int):
        super().__init__(Struct(Contact), max_count)

    def pack(self, value, out: bytearray) -> None:
        items = value if type(value) is tuple else tuple(value)
        if len(items) > self.max:
            raise ValueError(f"{len(items)} items exceed the limit of {self.max}")
        self.count_codec.pack(len(items), out)
        for c in items:
            raw = c.wire if type(c) is Contact else None
            if raw is None:
                self.item.pack(c, out)
            else:
                out += raw

    def unpack(self, buf, off: int):
        n, off = self.count_codec.unpack(buf, off)
        if n > self.max:
            raise DecodeError(f"oversized: {n} items exceed the limit of {self.max}")
        # Slices of one bytes copy of the items (a contact is at most 51 bytes): a memoryview's
        # slice copied to bytes cost twice as much per contact, 20 of them in every DHT answer.
        data = bytes(buf[off:off + 51 * n])
        get = _CACHE.get
        size = len(data)
        items = []
        i = 0
        for _ in range(n):
            fam = data[i + 32] if i + 32 < size else 0
            end = i + (39 if fam == 4 else 51)
            hit = None
            if end <= size:
                raw = data[i:end]
                ref = get(raw)
                if ref is not None:
                    hit = ref()
                if hit is None and (fam == 4 or fam == 6):
                    # New here: the fields straight from this copy (what the generic codec reads, with
                    # its checks: the family is 4 or 6 and the bytes are all there).
                    hit = Contact(raw[:32], (_host_text(raw[33:-2]), int.from_bytes(raw[-2:], "big")))
                    object.__setattr__(hit, "wire", raw)
                    _keep(raw, hit)
            if hit is None:
                hit, end = Contact._unpack_body(buf, off + i)
                end -= off
            items.append(hit)
            i = end
        return tuple(items), off + i

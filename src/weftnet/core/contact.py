"""A contact: how to reach a node - its public key and underlay UDP endpoint.

Contacts travel inside DHT replies, so their wire form is a nested record
(``public_key:bytes[32] | endpoint``). The node ID is derived from the key,
never sent, so a peer cannot hand out a contact whose ID and key disagree.
"""

from __future__ import annotations

import sys
from dataclasses import FrozenInstanceError
from typing import ClassVar

from weftnet.core.identity import NodeId, node_key_for
from weftnet.core.wire import Endpoint, Fixed, Message, Seq, Struct, _host_bytes, _host_text
from weftnet.errors import DecodeError

__all__ = ["Contact", "Addr", "ContactSeq", "share_endpoint", "shared_contact", "sweep"]

#: An underlay UDP endpoint as (host, port); host is an IPv4 or IPv6 literal.
Addr = tuple[str, int]


#: Contacts decoded (or met) here, by their encoding: DHT answers carry the same ones again and again,
#: and a contact found here is not decoded again (~0.35 us against ~3.4-6.3). It holds the contacts
#: something else holds (a routing table, a lookup, a reply), and sheds the others by batches (a
#: *sweep*, below): a contact only this dict holds is dropped at the next sweep. Bounded too: emptied
#: when full (it is filled from what peers send; docs/security.md).
#:
#: Not a weak dict: an entry of one (a ``weakref.ref`` subclass that names its key, 96 bytes, and its
#: callback) cost more than anything else a node holds per contact but the contact itself, ~7.7 KiB a
#: node at 1,000 nodes for its ~80 contacts (bench/results/dmem12). A plain entry costs its dict slot;
#: whether anything else holds a contact is read from CPython's reference count (``sys.getrefcount``,
#: calibrated below), for every entry, when the dict reaches a multiple of ``_step`` entries: O(1) a
#: new entry, amortised, and fewer than ``_step`` contacts nothing holds linger (8 for a node's ~80).
_CACHE: dict[bytes, "Contact"] = {}
CACHE_MAX = 65536
_sizeof = sys.getsizeof
_refcount = getattr(sys, "getrefcount", None)


def _unheld(table: dict, base: int | None) -> list:
    """The encodings (keys) of ``table``'s contacts that nothing but ``table`` holds (``base``: the
    reference count such a contact shows here, ``_BASE``). Where reference counts tell nothing
    (``base`` None: an interpreter without them), every entry: a sweep then empties the cache, which
    costs decodes, never a wrong answer."""
    if base is None:
        return list(table)
    return [c._w for c in table.values() if _refcount(c) <= base]


class _Probe:
    __slots__ = ("_w",)


def _calibrate() -> int | None:
    """The count ``_unheld`` sees for an object only its dict holds, measured (not assumed): the
    interpreter's own references (the loop's, the call's) are counted in it. None where the
    interpreter has no reference counts to read, or they do not tell (the cache is then emptied at
    each sweep)."""
    if _refcount is None:
        return None
    for base in range(1, 16):
        alone, held = _Probe(), _Probe()
        alone._w = held._w = b""
        one, other = {b"": alone}, {b"": held}
        del alone
        if _unheld(one, base) and not _unheld(other, base):
            return base
    return None


_BASE = _calibrate()


def _step(n: int) -> int:
    """Sweep at every multiple of this size (a power of two, at least 8, ~n/8): a sweep reads every
    entry, so it comes every ~n/8 new entries."""
    return max(8, 1 << ((n >> 3).bit_length() - 1))


def _sweep(table: dict) -> None:
    """Drop the contacts nothing else holds any more (they are freed with their entry), then give
    the dict's room back if it is over ~2 times what its entries need: a dict keeps the size it grew
    to, and a join fills a node's cache to ~220 entries (the contacts of its lookups in flight), then
    keeps ~80 (its routing table's): 9.3 KiB of table for 2.3 needed (bench/results/dmem11)."""
    pop = table.pop
    for raw in _unheld(table, _BASE):
        pop(raw, None)
    n = len(table)
    if _sizeof(table) > 48 * n + 512:
        live = dict(table)  # (a copy of a dict with holes is sized for its entries)
        table.clear()
        table.update(live)


def sweep() -> None:
    """Drop now the contacts only the cache holds, rather than at its next sweep: for a node with no
    query in flight, whose lookups have let go of their contacts (core/dht/sessionless.py). Without
    it, those of its last lookups not in its routing table (~10 a node at 1,000 nodes, ~360 bytes
    each with their keys, encodings and endpoints) stayed until it decoded again."""
    _sweep(_CACHE)


def _cached(raw: bytes):
    """The contact whose encoding is ``raw``, or None."""
    return _CACHE.get(raw)


def _keep(raw: bytes, obj: "Contact") -> None:
    table = _CACHE
    n = len(table)
    if n >= CACHE_MAX:
        table.clear()
    elif n >= 8 and not n & (_step(n) - 1):
        _sweep(table)
    table[raw] = obj


class Contact(Message):
    """``Contact(public_key, endpoint)``: frozen, equal (and hashed) by its public key and endpoint.

    A contact read from the wire keeps its encoding (``wire``) and no public key object of its
    own: ``public_key`` is the encoding's first 32 bytes, sliced at each read (~40 ns; the DHT's
    hot paths read ``key``, sessionless keys its tables by ``key``). That saves a bytes object of 65
    bytes (80 as allocated) a contact a node holds (bench/results/dmem11). A contact made from its
    fields keeps them as given until it is first encoded; then its public key is read from its
    encoding too.

    Four slots, 64 bytes as allocated: the public key as given and the encoding share one slot
    (``_w``), and a contact takes no weak reference (nothing makes one since the contact cache holds
    its contacts plainly); six slots were 80 bytes, ~1.3 KiB a node for its ~80 contacts
    (bench/results/dmem14).
    """

    __slots__ = ("endpoint", "key", "tag", "_w")
    __match_args__ = ("public_key", "endpoint")

    endpoint: Addr
    #: The node ID as an integer (``node_id.int``): the DHT reads it for every contact of every
    #: reply. The :class:`NodeId` itself is made on demand (``node_id``): a contact held one made at
    #: decode, 48 bytes and its 32-byte digest (65), ~113 bytes a contact a node holds or met, for
    #: the few readers that want the object (sessions are keyed by it) rather than the integer.
    key: int
    #: ``key & 255``: one of the interpreter's shared small ints (always in cache), so a scan of a
    #: bucket for a key compares these first and reads an entry's 256-bit ``key`` (an object of its
    #: own, out of cache at a million simulated nodes) only when they match. Costs one slot.
    tag: int
    #: The contact's encoding, once made or read (the same bytes object as its key in ``_CACHE``): a
    #: FIND_NODE answer carries 20 contacts, the same ones again and again, and a contact decoded is
    #: sent on as the bytes it came in. Until a contact made from its fields is encoded: its public
    #: key as given, always 32 bytes (``node_key_for`` refuses any other length), where an encoding
    #: is 39 or 51: the length tells which (``wire``).
    _w: bytes

    FIELDS: ClassVar = (("public_key", Fixed(32)), ("endpoint", Endpoint))

    def __init__(self, public_key: bytes, endpoint: Addr) -> None:
        key = node_key_for(public_key)
        host, port = endpoint
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        if type(endpoint) is not tuple:  # a tuple is kept as given: the driver shares one per endpoint
            endpoint = (host, port)
        _set_endpoint(self, endpoint)
        _set_key(self, key)
        _set_tag(self, key & 255)
        _set_w(self, public_key)

    @classmethod
    def _of_wire(cls, raw: bytes, endpoint: Addr, key: int | None = None) -> "Contact":
        """The contact whose encoding is ``raw`` (a whole IPv4 or IPv6 contact) and whose endpoint,
        read from it, is ``endpoint``: no public key object kept. ``key``: its node ID as an integer,
        if the caller has it (``node_key_for`` of the key)."""
        obj = _new(cls)
        if key is None:
            key = node_key_for(raw[:32])
        _set_endpoint(obj, endpoint)
        _set_key(obj, key)
        _set_tag(obj, key & 255)
        _set_w(obj, raw)
        return obj

    @property
    def public_key(self) -> bytes:
        return self._w[:32]  # (the key as given is 32 bytes: the same object)

    @property
    def wire(self) -> bytes | None:
        """The contact's encoding, or None if it was made from its fields and never encoded."""
        w = self._w
        return w if len(w) != 32 else None

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            # The key (a hash of the public key) first: an int compare that settles almost every
            # unequal pair without slicing a public key.
            return (self.key == other.key and self.endpoint == other.endpoint
                    and self._w[:32] == other._w[:32])
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.public_key, self.endpoint))  # as the dataclass's was

    def __reduce__(self):
        return (Contact, (self.public_key, self.endpoint))

    @property
    def node_id(self) -> NodeId:
        """The node ID (``node_id_for(public_key)``), made from ``key`` at each read: read ``key`` in
        hot paths."""
        return NodeId.of_int(self.key)

    def _pack_body(self, out: bytearray) -> None:
        # Encode each contact once (a Nodes of 20: 37 -> 14 us here).
        raw = self._w
        if len(raw) == 32:  # made from its fields, not encoded yet
            buf = bytearray()
            Message._pack_body(self, buf)
            raw = bytes(buf)
            _set_w(self, raw)
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
            _set_w(obj, raw)  # its public key read from the encoding (the same bytes)
            _keep(raw, obj)
        return obj, end

    def __repr__(self) -> str:
        return f"Contact({self.node_id.short()}@{self.endpoint[0]}:{self.endpoint[1]})"


_new = object.__new__
_set_endpoint = Contact.__dict__["endpoint"].__set__
_set_key = Contact.__dict__["key"].__set__
_set_tag = Contact.__dict__["tag"].__set__
_set_w = Contact.__dict__["_w"].__set__


def share_endpoint(contact: Contact, endpoint: Addr) -> None:
    """``contact`` answered from ``endpoint``, which equals its own (the caller checked): it keeps that
    tuple, the driver's one object for the address (runtime/driver.py), and its own copy, decoded with it
    from a DHT answer (a tuple and a port: ~96 bytes as allocated), is freed. Same value, so the same
    contact (equal, hashed alike: it stays frozen to everything else); ~40 contacts a node at 1,000
    nodes (bench/results/dmem12)."""
    if contact.endpoint is not endpoint and type(endpoint) is tuple:
        _set_endpoint(contact, endpoint)


def shared_contact(public_key: bytes, endpoint: Addr, key: int | None = None) -> Contact:
    """``Contact(public_key, endpoint)``, as the process's one object for that key at that endpoint
    when it has one (decoded from a DHT answer, or met here before): a node learns the askers of
    sessionless queries from datagrams, not from answers, and each table that kept its own copy
    of the same contact held another key, node ID and Contact (about 200 bytes a peer, bench/dht).
    Equal either way; only identity differs. ``key``: ``node_key_for(public_key)``, if the caller
    has it (a sessionless query's asker is looked up by it first): not hashed again."""
    try:
        raw = public_key + _host_bytes(endpoint[0]) + endpoint[1].to_bytes(2, "big")
    except (ValueError, OverflowError, TypeError, AttributeError):
        return Contact(public_key, endpoint)  # not an IP literal (a simulator's label): not cached
    hit = _cached(raw)
    if hit is None or hit.endpoint != endpoint:
        if len(raw) == 32 + (7 if raw[32] == 4 else 19) and len(public_key) == 32:
            # (the port fit in two bytes above)
            hit = Contact._of_wire(raw, endpoint if type(endpoint) is tuple else tuple(endpoint), key)
            _keep(raw, hit)
        else:
            hit = Contact(public_key, endpoint)
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
            raw = c._w if type(c) is Contact else None
            if raw is None or len(raw) == 32:  # (32: a contact made from its fields, not encoded yet)
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
                hit = get(raw)
                if hit is None and (fam == 4 or fam == 6):
                    # New here: the fields straight from this copy (what the generic codec reads, with
                    # its checks: the family is 4 or 6 and the bytes are all there).
                    hit = Contact._of_wire(raw, (_host_text(raw[33:-2]), int.from_bytes(raw[-2:], "big")))
                    _keep(raw, hit)
            if hit is None:
                hit, end = Contact._unpack_body(buf, off + i)
                end -= off
            items.append(hit)
            i = end
        return tuple(items), off + i

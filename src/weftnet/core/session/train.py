"""A fragmented payload as one run of datagrams laid end to end (sans-IO).

A sealed payload larger than one datagram travels as ``TransportFragment``s
(docs/wire/packets.md): pieces of ``step`` bytes, each behind a 16-byte header
(version, type, receiver index, counter, index, count) that differs from its
neighbours' only in the index byte. Laid end to end, each piece one datagram
of ``seg = step + 16`` bytes and the last one shorter, they are exactly what
one ``sendmsg`` with ``UDP_SEGMENT`` sends and what one ``recvmsg`` with
``UDP_GRO`` returns when they arrive together: a :class:`Train`.

Cutting a 64 KiB payload into 45 datagrams and checking and joining them
again one by one costs the interpreter a few hundred bytecodes per piece at
each end. Here a few C calls per run do it, with what they need cached per
shape (pieces, piece size, last piece size; a stream repeats a few shapes):
:func:`cut` takes views of the pieces with one ``itemgetter`` and joins them
behind the headers with one ``bytearray.join`` (one copy); :func:`join` reads
every header with one ``struct`` call, compares them at once and joins views
of the pieces with one more (one copy). Making each piece a ``bytes`` object
first (the earlier way) cost a 1.5 KB allocation and a copy per piece, about
2 µs a run at each end. The bytes on the wire are the same as piece by piece.

Making the views costs too (about 0.1 µs each, 45 of them a run), so where the
bytes sit in a buffer of our own the views of each shape are made once and
kept: :class:`RunBuffer` is a receive buffer that knows the headers and pieces
of the runs read into it, :class:`SealBuffer` a buffer a payload is sealed into
(``encrypt_into``) and cut from at once. Neither hands out anything that refers
to its buffer: what they return is a copy made before the call returns.
"""

from __future__ import annotations

import struct
from operator import itemgetter

__all__ = ["RunBuffer", "SealBuffer", "Train", "cut", "join"]

_HEADER = 16
_T_FRAGMENT = 7
_VERSION = 1
#: Layouts kept; a steady stream uses a few (one per payload size it repeats).
_MAX_LAYOUTS = 64
_split_layouts: dict[tuple[int, int, int], itemgetter] = {}
_join_layouts: dict[tuple[int, int, int], tuple[struct.Struct, itemgetter]] = {}
#: Index bytes of a run of n pieces, and pieces of n payload bytes each (the last shorter).
_INDEXES = [bytes(range(n)) for n in range(256)]


#: A fragment's header: receiver index, counter, index, count (after version and type).
_FIELDS = struct.Struct("!2xIQBB")


class Train:
    """Datagrams of ``seg`` bytes (the last may be shorter) laid end to end in ``data``.

    A run a driver read (:meth:`read`) may come joined already: then :attr:`sealed` is the
    payload its pieces carry and :attr:`first` its first header's fields, and :attr:`data` is
    None (the run itself is not kept)."""

    __slots__ = ("data", "seg", "count", "sealed", "first")

    def __init__(self, data: bytes, seg: int, count: int = 0):
        self.data = data
        self.seg = seg
        self.count = count or -(-len(data) // seg)
        self.sealed = None

    @classmethod
    def read(cls, view, seg: int, max_fragments: int, max_sealed: int) -> "Train":
        """The run of datagrams just read into ``view`` (a receive buffer's bytes, about to be
        read into again), taken out of it: :func:`join`-ed at once if it is one payload's pieces
        (the payload is the one copy made), else its bytes copied for the piece-by-piece path."""
        t = cls.__new__(cls)
        t.seg = seg
        t.count = -(-len(view) // seg)
        sealed = join(view, seg, max_fragments, max_sealed)
        if sealed is None:
            t.data = bytes(view)
            t.sealed = None
        else:
            t.data = None
            t.sealed = sealed
            t.first = _FIELDS.unpack_from(view)  # receiver index, counter, index, count
        return t

    def datagrams(self) -> list[bytes]:
        """The datagrams one by one (for a path that cannot take a run whole)."""
        data, seg = self.data, self.seg
        return [data[off:off + seg] for off in range(0, len(data), seg)]

    def __repr__(self) -> str:
        size = len(self.data) if self.data is not None else f"joined {len(self.sealed)}"
        return f"Train({size} bytes, seg={self.seg}, count={self.count})"


def cut(head: bytes, sealed: bytes, step: int) -> tuple[bytearray, int]:
    """``sealed`` cut in pieces of ``step`` bytes, each behind ``head`` (14 bytes) + index + count,
    laid end to end; returns the run and the number of pieces (at most 255)."""
    n = len(sealed)
    count = -(-n // step)
    key = (step, count, n - (count - 1) * step)
    pieces = _split_layouts.get(key)
    if pieces is None:
        if len(_split_layouts) >= _MAX_LAYOUTS:
            _split_layouts.clear()
        # Views of the pieces (an empty one first, for the header in front of the first piece):
        # bytearray.join copies each once, with no object made per piece's bytes.
        pieces = _split_layouts[key] = itemgetter(slice(0, 0), *[slice(i * step, (i + 1) * step)
                                                                 for i in range(count)])
    # Every piece behind the header of index 0, then the index bytes set in one strided store.
    run = bytearray(head + bytes((0, count))).join(pieces(memoryview(sealed)))
    run[14::step + _HEADER] = _INDEXES[count]
    return run, count


def _run_count(data, n: int, seg: int, max_fragments: int, max_sealed: int) -> int:
    """The number of pieces the first ``n`` bytes of ``data`` claim to be, if that many fit what
    :func:`join` takes (a first fragment, 2 to ``max_fragments`` pieces of ``seg`` bytes end to
    end, the last one shorter or equal, at most ``max_sealed`` bytes sealed); else 0."""
    if n <= seg or seg <= _HEADER or data[1] != _T_FRAGMENT or data[0] != _VERSION or data[14] != 0:
        return 0
    count = data[15]
    last = n - (count - 1) * seg
    if not (2 <= count <= max_fragments and _HEADER < last <= seg) or n - count * _HEADER > max_sealed:
        return 0
    return count


def join(data: bytes, seg: int, max_fragments: int, max_sealed: int) -> bytes | None:
    """The sealed payload if ``data`` (datagrams of ``seg`` bytes end to end) is exactly all the
    fragments of one payload, in order, with the same header but for the index; else None (the
    caller takes the datagrams one by one). Refuses more than ``max_fragments`` pieces or a
    payload above ``max_sealed`` bytes, as piece-by-piece reassembly does."""
    n = len(data)
    count = _run_count(data, n, seg, max_fragments, max_sealed)
    if not count:
        return None
    last = n - (count - 1) * seg
    key = (seg, count, last)
    layout = _join_layouts.get(key)
    if layout is None:
        if len(_join_layouts) >= _MAX_LAYOUTS:
            _join_layouts.clear()
        # The headers as small objects (one struct call), the pieces as views joined in one copy.
        layout = _join_layouts[key] = (
            struct.Struct("=" + f"16s{seg - _HEADER}x" * (count - 1) + f"16s{last - _HEADER}x"),
            itemgetter(*[slice(i * seg + _HEADER, (i + 1) * seg) for i in range(count)]))
    heads, pieces = layout
    expected = bytearray(data[:_HEADER]) * count  # the first header, with each piece's index
    expected[14::_HEADER] = _INDEXES[count]
    if b"".join(heads.unpack(data)) != expected:
        return None
    return b"".join(pieces(memoryview(data)))


#: The AEADs' tag (both transport ciphers, core/session/ciphers.py): a payload seals to 16 bytes more.
_TAG = 16
#: Segment sizes whose views a buffer keeps (a stream uses one or two: one per path MTU).
_MAX_SHAPES = 16


class SealBuffer:
    """A buffer a payload is sealed into and cut from at once (:meth:`seal_cut`), with the views
    of its pieces kept per piece size (as many as the longest run of that size needed): the same
    run as ``cut(head, aead.encrypt(...), step)`` without making a view per piece each time. The
    sealed bytes live only during the call: the run it returns is a new buffer, so a later seal
    cannot change a run still waiting to be sent."""

    __slots__ = ("_view", "_shapes")

    def __init__(self, size: int):
        self._view = memoryview(bytearray(size))
        self._shapes: dict[int, tuple] = {}

    def seal_cut(self, aead, nonce: bytes, payload: bytes, head: bytes, step: int) -> tuple[bytearray, int]:
        """``payload`` sealed with ``aead`` (no associated data) and cut as :func:`cut` does:
        (run, number of pieces). The sealed size must fit the buffer, in at most 255 pieces."""
        n = len(payload) + _TAG
        count = -(-n // step)
        view = self._view
        pieces = self._shapes.get(step)
        if pieces is None or len(pieces) < count:
            if pieces is None and len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            # An empty view first (the header goes in front of the first piece), then the full
            # pieces of the longest run of this piece size so far.
            pieces = self._shapes[step] = (view[0:0],) + tuple(
                view[i * step:(i + 1) * step] for i in range(count - 1))
        aead.encrypt_into(nonce, payload, None, view[:n])  # (raises if the tag is not 16 bytes)
        run = bytearray(head + bytes((0, count))).join(pieces[:count] + (view[(count - 1) * step:n],))
        run[14::step + _HEADER] = _INDEXES[count]
        return run, count


class RunBuffer:
    """A receive buffer (``into`` for ``recvmsg_into``, ``view`` its bytes) that keeps, per
    segment size read into it, the views of a run's headers and pieces (as many as the longest
    run of that size had): :meth:`read` is :meth:`Train.read` of its first ``n`` bytes without
    making a view per piece each time. At most 16 segment sizes are kept (a stream uses one or
    two); a run that passes the first checks but not the header comparison cost what the old
    per-run layout did, in proportion to its pieces."""

    __slots__ = ("view", "into", "_shapes")

    def __init__(self, size: int = 65_535):
        self.view = memoryview(bytearray(size))
        self.into = [self.view]
        self._shapes: dict[int, tuple[tuple, tuple]] = {}

    def join(self, n: int, seg: int, max_fragments: int, max_sealed: int) -> bytes | None:
        """:func:`join` of the first ``n`` bytes (a new ``bytes``, or None)."""
        data = self.view
        count = _run_count(data, n, seg, max_fragments, max_sealed)
        if not count:
            return None
        shape = self._shapes.get(seg)
        if shape is None or len(shape[0]) < count:
            if shape is None and len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            # The headers and full pieces of the longest run of this segment size so far (made
            # as the old per-run layout was: in proportion to the run, never more).
            shape = self._shapes[seg] = (tuple(data[i * seg:i * seg + _HEADER] for i in range(count)),
                                         tuple(data[i * seg + _HEADER:(i + 1) * seg] for i in range(count - 1)))
        heads, pieces = shape
        got = b"".join(heads[:count])
        expected = bytearray(got[:_HEADER]) * count  # the first header, with each piece's index
        expected[14::_HEADER] = _INDEXES[count]
        if got != expected:
            return None
        return b"".join(pieces[:count - 1] + (data[(count - 1) * seg + _HEADER:n],))

    def read(self, n: int, seg: int, max_fragments: int, max_sealed: int) -> Train:
        """:meth:`Train.read` of the first ``n`` bytes (the run just read into the buffer)."""
        t = Train.__new__(Train)
        t.seg = seg
        t.count = -(-n // seg)
        sealed = self.join(n, seg, max_fragments, max_sealed)
        if sealed is None:
            t.data = bytes(self.view[:n])
            t.sealed = None
        else:
            t.data = None
            t.sealed = sealed
            t.first = _FIELDS.unpack_from(self.view)
        return t

"""The DHT's fast codecs (a NearNodes' RTT hints by one struct call, contacts sliced from one
bytes copy) read and write exactly what the generic codecs do, and refuse the same inputs.

What a user would notice otherwise: a node that cannot read a neighbour's answer, or one that
takes a truncated datagram for a valid one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from weftnet.core import contact as contact_mod
from weftnet.core import wire
from weftnet.core.contact import Contact
from weftnet.core.dht.messages import MAX_CONTACTS, NearNodes, Nodes
from weftnet.core.wire import U16, Seq, Struct
from weftnet.errors import DecodeError

_GENERIC_RTTS = Seq(U16, MAX_CONTACTS)
_GENERIC_CONTACTS = Seq(Struct(Contact), MAX_CONTACTS)


def _outcome(codec, data: bytes):
    try:
        return codec.unpack(memoryview(data), 0)
    except DecodeError:
        return "refused"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), max_size=MAX_CONTACTS), st.binary(max_size=8), st.integers(0, 45))
def test_rtt_hints_encode_and_decode_as_the_generic_codec(rtts, tail, cut):
    fast = NearNodes.FIELDS[2][1]
    a, b = bytearray(), bytearray()
    fast.pack(rtts, a)
    _GENERIC_RTTS.pack(rtts, b)
    assert a == b
    data = bytes(a) + tail
    assert _outcome(fast, data) == _outcome(_GENERIC_RTTS, data)
    cut_data = data[:cut]  # truncated anywhere: refused alike, or read alike
    assert _outcome(fast, cut_data) == _outcome(_GENERIC_RTTS, cut_data)


def test_rtt_hints_out_of_range_or_too_many_are_refused():
    fast = NearNodes.FIELDS[2][1]
    for bad in ([0x10000], [-1], [0] * (MAX_CONTACTS + 1)):
        try:
            fast.pack(bad, bytearray())
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was packed")
    assert _outcome(fast, bytes([MAX_CONTACTS + 1]) + bytes(2 * (MAX_CONTACTS + 1))) == "refused"


_hosts = st.one_of(
    st.tuples(st.integers(1, 223), st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)).map(
        lambda t: ".".join(map(str, t))),
    st.sampled_from(["2001:db8::1", "fd00::7", "2001:db8:0:1::42"]),
)
_contacts = st.builds(lambda k, h, p: Contact(k, (h, p)), st.binary(min_size=32, max_size=32), _hosts,
                      st.integers(0, 0xFFFF))


@settings(max_examples=200, deadline=None)
@given(st.lists(_contacts, max_size=MAX_CONTACTS), st.integers(0, 1100), st.binary(max_size=4))
def test_contacts_decode_as_the_generic_codec_whole_truncated_or_with_trailing_bytes(contacts, cut, tail):
    msg = Nodes(7, tuple(contacts))
    raw = wire.encode(msg)
    assert wire.decode(raw) == msg
    fast = Nodes.FIELDS[1][1]
    body = raw[10:]  # after version, type and the rid
    for data in (body, body[:cut], body + tail):
        got, want = _outcome(fast, data), _outcome(_GENERIC_CONTACTS, data)
        assert got == want


def test_a_near_nodes_answer_round_trips_and_a_cut_one_is_refused():
    contacts = tuple(Contact(bytes([i]) * 32, (f"198.51.100.{i}", 4500 + i)) for i in range(1, 21))
    msg = NearNodes(99, contacts, tuple(range(0, 40, 2)))
    raw = wire.encode(msg)
    assert wire.decode(raw) == msg
    for n in (len(raw) - 1, len(raw) - 2, len(raw) - 41):
        try:
            wire.decode(raw[:n])
        except DecodeError:
            continue
        raise AssertionError(f"a NearNodes cut to {n} of {len(raw)} bytes was read")


def _fresh_outcome(codec, data: bytes):
    """Decode with the process's contact cache empty (every contact new here), and what came out."""
    contact_mod._CACHE.clear()
    got = _outcome(codec, data)
    if got == "refused":
        return got
    items, end = got
    return [(c.public_key, c.endpoint, c.node_id, c.key, c.tag, c.wire) for c in items], end


@settings(max_examples=300, deadline=None)
@given(st.lists(_contacts, max_size=MAX_CONTACTS), st.integers(0, 1100), st.binary(max_size=4),
       st.integers(0, 1100), st.integers(0, 255))
def test_contacts_new_here_decode_as_the_generic_codec_whatever_the_bytes(contacts, cut, tail, at, byte):
    # A contact not in the cache is read straight from the answer's bytes: the same key, endpoint,
    # node ID and encoding as the generic codec gives, and the same refusals (a family that is
    # neither 4 nor 6, an address or port cut short), wherever a byte is changed.
    raw = wire.encode(Nodes(7, tuple(contacts)))
    body = bytearray(raw[10:])
    if at < len(body):
        body[at] = byte
    fast = Nodes.FIELDS[1][1]
    for data in (bytes(body), bytes(body[:cut]), bytes(body) + tail):
        assert _fresh_outcome(fast, data) == _fresh_outcome(_GENERIC_CONTACTS, data)
    contact_mod._CACHE.clear()

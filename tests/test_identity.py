"""Identity: node IDs, overlay addresses, text forms and the X25519 mapping."""

import hashlib
import ipaddress
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from hypothesis import given, strategies as st

from weftnet.core.identity import (
    OVERLAY_PREFIX,
    Identity,
    NodeId,
    ed25519_public_to_x25519,
    node_id_for,
    parse_node_ref,
    verify_signature,
)
from weftnet.errors import IdentityError, ParseError, WeftError


def ident(seed: int = 1) -> Identity:
    return Identity.generate(random.Random(seed))


def test_node_id_is_sha256_of_public_key():
    i = ident()
    assert i.node_id.raw == hashlib.sha256(i.public_key).digest()


def test_overlay_address_is_prefix_plus_first_96_bits_of_node_id():
    i = ident()
    addr = i.address
    assert addr in OVERLAY_PREFIX
    assert addr.packed[:4] == bytes.fromhex("fd776566")
    assert addr.packed[4:] == i.node_id.raw[:12]
    # Anyone can check an address against a key:
    assert node_id_for(i.public_key).address() == addr


def test_same_seed_same_identity_and_pem_round_trip():
    a, b = ident(7), ident(7)
    assert a.public_key == b.public_key
    c = Identity.from_pem(a.to_pem())
    assert c.public_key == a.public_key and c.seed == a.seed


def test_bad_pem_is_identity_error():
    with pytest.raises(IdentityError):
        Identity.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_x25519_mapping_pairs_with_private_scalar():
    for seed in range(20):
        i = ident(seed)
        assert ed25519_public_to_x25519(i.public_key) == i.x25519_public


def test_x25519_mapping_agrees_on_shared_secret():
    a, b = ident(1), ident(2)
    ab = a.x25519_private.exchange(X25519PublicKey.from_public_bytes(ed25519_public_to_x25519(b.public_key)))
    ba = b.x25519_private.exchange(X25519PublicKey.from_public_bytes(ed25519_public_to_x25519(a.public_key)))
    assert ab == ba


def test_x25519_mapping_rejects_degenerate_points():
    with pytest.raises(IdentityError):
        ed25519_public_to_x25519((1).to_bytes(32, "little"))
    with pytest.raises(IdentityError):
        ed25519_public_to_x25519(b"\xff" * 31 + b"\x7f")  # y >= p
    with pytest.raises(IdentityError):
        ed25519_public_to_x25519(b"short")


@given(st.binary(min_size=32, max_size=32))
def test_x25519_mapping_is_rfc7748s_formula_for_any_encoding(raw):
    # Whichever modular inverse the mapping uses (GMP's where gmpy2 is installed, CPython's pow
    # otherwise), u = (1 + y) / (1 - y) mod p for every usable y, high bit ignored, y = 0 included.
    p = 2**255 - 19
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= p or y == 1:
        with pytest.raises(IdentityError):
            ed25519_public_to_x25519(raw)
        return
    u = int.from_bytes(ed25519_public_to_x25519(raw), "little")
    assert u < p and u * (1 - y) % p == (1 + y) % p


def test_x25519_mapping_edges_and_both_inverses():
    import weftnet.core.identity as identity

    p = 2**255 - 19
    for y in (0, 2, p - 1, p - 2, 2**254, 12345):
        raw = y.to_bytes(32, "little")
        assert int.from_bytes(ed25519_public_to_x25519(raw), "little") == (1 + y) * pow(1 - y, -1, p) % p
    for x in (2, 3, p - 1, p + 1, 2**200 + 7):
        assert identity._inverse(x) == pow(x, -1, p)


def test_text_form_round_trip_and_shape():
    i = ident()
    t = i.node_id.text()
    assert t.startswith("wn1") and len(t) == 61
    assert NodeId.parse(t) == i.node_id
    assert NodeId.parse(t.upper()) == i.node_id
    assert NodeId.parse(i.node_id.raw.hex()) == i.node_id
    assert NodeId.parse("  " + t + "\n") == i.node_id


@given(st.binary(min_size=32, max_size=32), st.integers(min_value=3, max_value=60), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
def test_any_single_typo_is_caught(raw, pos, ch):
    t = NodeId(raw).text()
    if t[pos] == ch:
        return
    typo = t[:pos] + ch + t[pos + 1 :]
    try:
        parsed = NodeId.parse(typo)
    except ParseError:
        return
    # base32's last character carries 2 padding bits; a change there that keeps
    # the decoded bytes equal is not a different ID.
    assert parsed == NodeId(raw)


@pytest.mark.parametrize(
    "text, words",
    [
        ("xyz", "should start with 'wn1'"),
        ("wn1abc", "characters, expected 61"),
        ("wn1" + "a" * 57 + "!", "at position 61"),
        ("wn1" + "a" * 58, "checksum does not match"),
        ("fd00::1", "not an overlay address"),
        ("fd77:6566::zz", "not an IPv6 address"),
    ],
)
def test_parse_errors_say_what_is_wrong(text, words):
    with pytest.raises(ParseError) as exc:
        parse_node_ref(text)
    assert words in str(exc.value)
    assert isinstance(exc.value, WeftError)


def test_parse_node_ref_accepts_both_forms():
    i = ident()
    assert parse_node_ref(i.node_id.text()) == i.node_id
    assert parse_node_ref(str(i.address)) == i.address
    assert isinstance(parse_node_ref(str(i.address)), ipaddress.IPv6Address)


def test_signatures():
    i = ident()
    sig = i.sign(b"hello")
    assert verify_signature(i.public_key, sig, b"hello")
    assert not verify_signature(i.public_key, sig, b"hellO")
    assert not verify_signature(ident(3).public_key, sig, b"hello")
    assert not verify_signature(b"\x00" * 32, b"\x00" * 64, b"hello")


def test_node_id_rejects_wrong_length():
    with pytest.raises(IdentityError):
        NodeId(b"\x00" * 31)


def test_node_ids_made_apart_are_one_key_and_never_equal_their_bytes():
    raw = bytes(range(32))
    a, b, c = NodeId(raw), NodeId(bytes(bytearray(raw))), NodeId(bytes(31) + b"\x01")
    assert a == b and not a != b and hash(a) == hash(b)
    table = {a: "a"}
    assert table.get(b) == "a" and table.get(c) is None and b in table and c not in table
    assert a != c and a != raw and raw != a and raw not in table and a not in {raw: 1}
    assert sorted([a, c]) == [c, a] and c < a and a > c and a >= b and a <= b

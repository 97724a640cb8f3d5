"""Network authority, member certificates, revocation lists and their armour."""

import ipaddress
import random

import pytest

from weftnet.core import wire
from weftnet.core.identity import Identity
from weftnet.core.vpn.netcert import (
    AddressOutsideNetwork,
    BadSignature,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    NetCert,
    NetworkAuthority,
    NetworkDescriptor,
    RevocationList,
    WrongNetwork,
    armor,
    dearmor,
    network_id_for,
)
from weftnet.errors import DecodeError, NetworkError

NOW = 1_800_000_000


def authority(name="lab", prefixes=("10.1.0.0/24", "fd00:1::/64"), seed=1):
    return NetworkAuthority.create(name, prefixes, random.Random(seed), NOW)


def member(seed=2):
    return Identity.from_seed(random.Random(seed).randbytes(32))


def cert(auth, node, ips=("10.1.0.2",), groups=("web",), serial=1, nb=NOW - 10, na=NOW + 3600):
    return auth.sign_member(node.node_id, ips, groups, not_before=nb, not_after=na, serial=serial)


def test_network_id_is_hash_of_authority_key_and_descriptor_self_verifies():
    a = authority()
    assert a.network_id == network_id_for(a.descriptor.authority_key)
    a.descriptor.verify(a.network_id)
    forged = NetworkDescriptor("lab", a.descriptor.authority_key,
                               (ipaddress.ip_network("10.0.0.0/8"),), NOW, a.descriptor.signature)
    with pytest.raises(BadSignature):
        forged.verify()
    with pytest.raises(WrongNetwork):
        a.descriptor.verify(bytes(32))


def test_good_certificate_verifies_and_round_trips():
    a, n = authority(), member()
    c = cert(a, n, ips=("10.1.0.2", "fd00:1::2"), groups=("web", "db", "web"))
    assert c.groups == ("db", "web")
    assert c.member == n.node_id
    assert c.verify(a.descriptor, NOW) is c
    assert wire.decode(wire.encode(c)) == c
    (back,) = dearmor(armor(c))
    assert back == c
    assert armor(c).startswith("-----BEGIN WEFTNET CERTIFICATE-----\n")


def test_validity_window_is_checked():
    a, n = authority(), member()
    c = cert(a, n, nb=NOW, na=NOW + 100)
    c.verify(a.descriptor, NOW)
    c.verify(a.descriptor, NOW + 99.9)
    with pytest.raises(CertificateNotYetValid):
        c.verify(a.descriptor, NOW - 1)
    with pytest.raises(CertificateExpired):
        c.verify(a.descriptor, NOW + 100)


def test_certificate_from_another_network_is_refused():
    a, b, n = authority(seed=1), authority(seed=9), member()
    c = cert(a, n)
    with pytest.raises(WrongNetwork):
        c.verify(b.descriptor, NOW)
    # Same name and prefixes but a different authority is a different network.
    assert a.descriptor.name == b.descriptor.name and a.network_id != b.network_id


def test_tampered_certificate_fails_signature():
    a, n, other = authority(), member(), member(seed=3)
    c = cert(a, n)
    for field, value in (
        ("node_id", other.node_id.raw),
        ("addresses", (ipaddress.ip_address("10.1.0.99"),)),
        ("groups", ("admin",)),
        ("not_after", c.not_after + 1),
        ("serial", 2),
    ):
        kwargs = {name: getattr(c, name) for name, _ in NetCert.FIELDS}
        kwargs[field] = value
        with pytest.raises(BadSignature):
            NetCert(**kwargs).verify(a.descriptor, NOW)


def test_certificate_signed_by_other_key_for_same_network_id_fails():
    a, n = authority(), member()
    rogue = authority(seed=5)
    c = cert(rogue, n)
    fields = {name: getattr(c, name) for name, _ in NetCert.FIELDS}
    fields["network_id"] = a.network_id
    with pytest.raises(BadSignature):
        NetCert(**fields).verify(a.descriptor, NOW)


def test_addresses_outside_prefixes_are_refused_on_both_sides():
    a, n = authority(), member()
    with pytest.raises(AddressOutsideNetwork):
        cert(a, n, ips=("10.2.0.1",))
    # A (hypothetical) authority that signed an outside address anyway: the verifier still refuses.
    wide = NetworkAuthority.from_seed(a.seed, a.descriptor)
    fields = dict(network_name="lab", network_id=a.network_id, node_id=n.node_id.raw,
                  addresses=(ipaddress.ip_address("192.168.1.1"),), groups=(), not_before=NOW - 1,
                  not_after=NOW + 10, serial=7, signature=bytes(64))
    unsigned = NetCert(**fields)
    fields["signature"] = wide._sk.sign(unsigned.signing_input())
    with pytest.raises(AddressOutsideNetwork):
        NetCert(**fields).verify(a.descriptor, NOW)


def test_revocation_by_serial_and_by_node():
    a, n, m = authority(), member(2), member(3)
    c1, c2 = cert(a, n, serial=1), cert(a, m, ips=("10.1.0.3",), serial=2)
    crl = a.revocation_list(seq=1, issued_at=NOW, serials=[1]).verify(a.descriptor)
    with pytest.raises(CertificateRevoked):
        c1.verify(a.descriptor, NOW, crl)
    c2.verify(a.descriptor, NOW, crl)
    crl2 = a.revocation_list(seq=2, issued_at=NOW, node_ids=[m.node_id])
    with pytest.raises(CertificateRevoked):
        c2.verify(a.descriptor, NOW, crl2)
    # A revocation list is only as good as its signature.
    fake = RevocationList(a.network_id, 3, NOW, (), (), bytes(64))
    with pytest.raises(BadSignature):
        fake.verify(a.descriptor)
    with pytest.raises(WrongNetwork):
        crl.verify(authority(seed=8).descriptor)
    (back,) = dearmor(armor(crl2))
    assert back == crl2


def test_signatures_are_domain_separated():
    """A certificate signature cannot be replayed as a revocation-list signature."""
    a, n = authority(), member()
    c = cert(a, n)
    assert c.signing_input().startswith(b"weftnet-netcert-v1\x00")
    crl = a.revocation_list(seq=1, issued_at=NOW)
    assert crl.signing_input().startswith(b"weftnet-revocation-v1\x00")
    assert a.descriptor.signing_input().startswith(b"weftnet-network-v1\x00")


def test_non_canonical_encodings_do_not_decode():
    a, n = authority(), member()
    c = cert(a, n, groups=("a", "b"))
    raw = bytearray(wire.encode(c))
    i = raw.index(b"\x01a\x01b")
    raw[i : i + 4] = b"\x01b\x01a"  # unsorted groups
    with pytest.raises(DecodeError):
        wire.decode(bytes(raw))
    with pytest.raises(DecodeError):
        wire.decode(wire.encode(c)[:-1])
    # A prefix with host bits set is not a prefix.
    d = wire.encode(a.descriptor)
    bad = bytearray(d)
    j = bad.index(bytes([4, 24, 10, 1, 0, 0]))
    bad[j + 5] = 7
    with pytest.raises(DecodeError):
        wire.decode(bytes(bad))


def test_bad_names_and_prefixes():
    with pytest.raises(NetworkError):
        authority(name="../etc")
    with pytest.raises(NetworkError):
        authority(prefixes=("10.1.0.1/24",))
    with pytest.raises(NetworkError):
        authority(prefixes=("10.0.0.0/8", "10.1.0.0/16"))
    with pytest.raises(NetworkError):
        authority(prefixes=())
    a, n = authority(), member()
    with pytest.raises(NetworkError):
        cert(a, n, groups=("bad group",))
    with pytest.raises(NetworkError):
        cert(a, n, nb=NOW, na=NOW)


def test_dearmor_errors_are_network_errors():
    with pytest.raises(NetworkError, match="no -----BEGIN"):
        dearmor("hello")
    with pytest.raises(NetworkError, match="base64"):
        dearmor("-----BEGIN WEFTNET CERTIFICATE-----\n!!!\n-----END WEFTNET CERTIFICATE-----")
    with pytest.raises(NetworkError, match="unknown armour label"):
        dearmor("-----BEGIN WEFTNET KEY-----\nAAAA\n-----END WEFTNET KEY-----")
    a = authority()
    mislabelled = armor(a.descriptor).replace("NETWORK", "CERTIFICATE")
    with pytest.raises(NetworkError, match="holds a NetworkDescriptor"):
        dearmor(mislabelled)
    both = dearmor(armor(a.descriptor) + "\n" + armor(cert(a, member())))
    assert [type(x) for x in both] == [NetworkDescriptor, NetCert]


def test_authority_round_trips_through_its_seed():
    a = authority()
    b = NetworkAuthority.from_seed(a.seed, a.descriptor)
    n = member()
    cert(b, n).verify(a.descriptor, NOW)
    with pytest.raises(NetworkError):
        NetworkAuthority.from_seed(authority(seed=4).seed, a.descriptor)


def test_golden_certificate_encoding():
    """Deterministic: same seeds give the same bytes (Ed25519 signatures are deterministic)."""
    a, n = authority(), member()
    c = cert(a, n, ips=("10.1.0.2",), groups=("web",), serial=5, nb=NOW, na=NOW + 86400)
    raw = wire.encode(c)
    assert raw[:2] == bytes((1, 0x50))
    assert raw[2:6] == b"\x03lab"
    assert raw[6:38] == a.network_id
    assert raw[38:70] == n.node_id.raw
    assert raw[70:76] == bytes((1, 4, 10, 1, 0, 2))
    assert raw[76:81] == b"\x01\x03web"
    assert int.from_bytes(raw[81:89], "big") == NOW
    assert int.from_bytes(raw[97:105], "big") == 5
    assert len(raw) == 105 + 64
    assert raw == wire.encode(cert(authority(), member(), ips=("10.1.0.2",), groups=("web",), serial=5,
                                   nb=NOW, na=NOW + 86400))

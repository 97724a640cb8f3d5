"""Private networks on disk: create, sign, join, revoke and load them (no CLI here).

Everything lives under ``<state>/networks/<name>/`` (docs/vpn.md, "Files"):

* ``network.pem``      the network descriptor (owner and members)
* ``authority.key``    the authority's Ed25519 key, PKCS#8 PEM, mode 0600 (owner only)
* ``issued/<serial>.pem``  every certificate the owner signed (owner only)
* ``member.pem``       this node's own certificate (members)
* ``revocations.pem``  the newest revocation list

The daemon loads memberships from here and the ``weft net`` commands
(cli/net.py) are thin wrappers around these functions. Errors are
:class:`~weftnet.errors.WeftError` subclasses with one-line messages.
"""

from __future__ import annotations

import ipaddress
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from weftnet.core.dht.records import MutableRecord
from weftnet.core.identity import NodeId
from weftnet.core.vpn.netcert import (
    MAX_BINDINGS,
    MAX_MAC_PREFIXES,
    MAX_SOURCES,
    Binding,
    CertificateError,
    L2Grant,
    MacPrefix,
    NetCert,
    NetworkAuthority,
    NetworkDescriptor,
    RevocationList,
    armor,
    cert_from_directory,
    cert_from_member_record,
    check_name,
    dearmor,
    directory_salt,
    member_salt,
)
from weftnet.errors import ConfigError, NetworkError

__all__ = [
    "DAY",
    "Membership",
    "network_dir",
    "create_network",
    "load_authority",
    "sign_member_cert",
    "l2_grant",
    "join_network",
    "load_membership",
    "list_networks",
    "issued_certificates",
    "load_revocations",
    "load_revocation_record",
    "save_revocations",
    "revoke",
    "write_new",
]

DAY = 86_400


def network_dir(state_dir: Path, name: str) -> Path:
    try:
        check_name("network", name)
    except ValueError as exc:
        raise NetworkError(str(exc)) from None
    return Path(state_dir) / "networks" / name


def _make_network_dir(state_dir: Path, d: Path) -> None:
    """The state directory (0700, as ``weft init`` makes it), networks/ and ``d``, all private."""
    from weftnet.runtime.keystore import ensure_private_dir

    ensure_private_dir(Path(state_dir))
    for sub in (Path(state_dir) / "networks", d):
        if not sub.exists():
            sub.mkdir(mode=0o700)
            _owner_like_parent(sub)


def _owner_like_parent(path: Path) -> None:
    """Run as root on a state directory that belongs to the service's user (systemd's
    StateDirectory): hand what we wrote to that user, or the daemon could not read it."""
    if os.geteuid() != 0:
        return
    st = path.parent.stat()
    if st.st_uid != 0:
        os.chown(path, st.st_uid, st.st_gid)


def write_new(path: Path, data: str, mode: int = 0o644, replace: bool = False) -> None:
    """Write via a temporary file created with its final mode, then rename (atomic)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() and not replace:
        raise ConfigError(f"{path} already exists")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _owner_like_parent(path)


def _read_blocks(path: Path) -> list:
    """Every armoured block of a state file, decoded."""
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return dearmor(text)
    except NetworkError as exc:  # name the file: "no block found" alone helps nobody
        raise ConfigError(f"{path}: {exc}") from None


def _read_one(path: Path, cls, items: list | None = None):
    items = [x for x in (_read_blocks(path) if items is None else items) if isinstance(x, cls)]
    if len(items) != 1:
        raise ConfigError(f"{path} should hold exactly one {cls.__name__}")
    return items[0]


def _descriptor(state_dir: Path, name: str) -> NetworkDescriptor:
    d = network_dir(state_dir, name)
    if not d.exists():
        raise NetworkError(f"no network named {name!r} in {Path(state_dir) / 'networks'}")
    return _read_one(d / "network.pem", NetworkDescriptor).verify()


def create_network(state_dir: Path, name: str, prefixes: Iterable[str], now: float,
                   rng: random.Random | None = None, layer: int = 3) -> NetworkAuthority:
    """Make a new authority key and network descriptor; refuses an existing name.

    ``layer`` 2: a network of Ethernet frames (docs/l2.md), recorded in the signed descriptor.
    """
    d = network_dir(state_dir, name)
    if d.exists():
        raise NetworkError(f"network {name!r} already exists in {d}")
    auth = NetworkAuthority.create(name, list(prefixes), rng or random.SystemRandom(), now, layer=layer)
    from cryptography.hazmat.primitives import serialization

    key_pem = auth._sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode("ascii")
    _make_network_dir(state_dir, d)
    write_new(d / "authority.key", key_pem, mode=0o600)
    write_new(d / "network.pem", armor(auth.descriptor))
    (d / "issued").mkdir(mode=0o700)
    return auth


def load_authority(state_dir: Path, name: str) -> NetworkAuthority:
    d = network_dir(state_dir, name)
    desc = _descriptor(state_dir, name)
    key_path = d / "authority.key"
    try:
        st = key_path.stat()
    except FileNotFoundError:
        raise NetworkError(f"this node is not the owner of {name!r} (no {key_path})") from None
    if st.st_mode & 0o077:
        raise ConfigError(f"{key_path} is readable by other users; run 'chmod 600 {key_path}'")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        sk = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key_path} is not a PEM private key: {exc}") from None
    if not isinstance(sk, Ed25519PrivateKey):
        raise ConfigError(f"{key_path} does not hold an Ed25519 key")
    return NetworkAuthority(sk, desc)


def issued_certificates(state_dir: Path, name: str) -> list[NetCert]:
    """Certificates the owner has signed for ``name``, by serial."""
    issued = network_dir(state_dir, name) / "issued"
    if not issued.is_dir():
        return []
    certs = [_read_one(p, NetCert) for p in issued.glob("*.pem")]
    return sorted(certs, key=lambda c: c.serial)


def sign_member_cert(state_dir: Path, name: str, node: NodeId, ips: Iterable[str], groups: Iterable[str],
                     now: float, days: float = 365.0, *, macs: Iterable[str] = (), sources: Iterable[str] = (),
                     bindings: Iterable[str] = ()) -> tuple[NetCert, str]:
    """Owner side: sign a certificate, record it, and return it with the text to give the member.

    The text holds the network descriptor, the certificate and its signed
    directory records (one per address, which the member publishes in the
    DHT so other members can find it); that is all ``weft net join`` needs.
    Serial numbers count up from 1 per network.

    Layer-2 networks (docs/l2.md): ``macs`` are MAC prefixes (``02:aa:bb:00:00:00/24``
    or one MAC), ``sources`` IP prefixes, ``bindings`` ``MAC=IP`` pairs the member may source.
    """
    if days <= 0:
        raise NetworkError("--days must be positive")
    auth = load_authority(state_dir, name)
    macs, sources, bindings = list(macs), list(sources), list(bindings)
    l2 = None
    if auth.descriptor.layer == 2:
        l2 = l2_grant(macs, sources, bindings)
    elif macs or sources or bindings:
        raise NetworkError(f"network {name!r} is layer 3: --mac, --source and --bind are for layer-2 networks")
    issued = issued_certificates(state_dir, name)
    try:
        addrs = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise NetworkError(str(exc)) from None
    if not addrs:
        raise NetworkError("a member needs at least one --ip")
    revoked = load_revocations(state_dir, name)
    for c in issued:
        if revoked is not None and revoked.revokes(c):
            continue
        if now >= c.not_after or c.node_id == node.raw:
            continue
        taken = set(c.addresses) & set(addrs)
        if taken:
            raise NetworkError(
                f"{sorted(taken)[0]} is already held by certificate #{c.serial} ({NodeId(c.node_id).text()}); "
                f"revoke it first"
            )
    serial = max((c.serial for c in issued), default=0) + 1
    if l2 is not None:
        bound = [b.address for b in l2.bindings]
        for c in issued:
            if (revoked is not None and revoked.revokes(c)) or now >= c.not_after or c.node_id == node.raw:
                continue
            held = set(c.addresses) | {b.address for b in (c.l2.bindings if c.l2 else ())}
            taken = held & set(bound + addrs)
            if taken:
                raise NetworkError(f"{sorted(taken)[0]} is already held by certificate #{c.serial} "
                                   f"({NodeId(c.node_id).text()}); revoke it first")
    cert = auth.sign_member(node, addrs, list(groups), not_before=int(now) - 60,
                            not_after=int(now + days * DAY), serial=serial, l2=l2)
    write_new(network_dir(state_dir, name) / "issued" / f"{serial}.pem", armor(cert))
    records = "".join(armor(r) for r in auth.directory_records(cert))
    return cert, armor(auth.descriptor) + armor(cert) + records


def l2_grant(macs: Iterable[str], sources: Iterable[str], bindings: Iterable[str]) -> L2Grant:
    """A layer-2 grant from command-line text: MAC prefixes, IP prefixes and ``MAC=IP`` bindings."""
    from weftnet.core.vpn.ethernet import parse_mac, parse_mac_prefix

    try:
        mp = [MacPrefix(*parse_mac_prefix(m)) for m in macs]
        sp = [ipaddress.ip_network(s, strict=True) for s in sources]
        bs = []
        for text in bindings:
            mac, sep, ip = text.partition("=")
            if not sep:
                raise ValueError(f"binding {text!r} must be MAC=IP")
            bs.append(Binding(parse_mac(mac), ipaddress.ip_address(ip)))
        for what, items, most in (("--mac", mp, MAX_MAC_PREFIXES), ("--source", sp, MAX_SOURCES),
                                  ("--bind", bs, MAX_BINDINGS)):
            if len(items) > most:
                raise NetworkError(f"at most {most} {what} per certificate")
        grant = L2Grant(tuple(mp), tuple(sp), tuple(bs))
    except ValueError as exc:
        raise NetworkError(str(exc)) from None
    for m in mp:
        if m.mac[0] & 1:
            raise NetworkError(f"--mac {m}: a group (multicast) address cannot be a source")
    return grant


def _revocations_file(state_dir: Path, name: str) -> tuple[RevocationList | None, MutableRecord | None]:
    """The verified revocation list and, if the list fits one, its signed DHT record: one read."""
    path = network_dir(state_dir, name) / "revocations.pem"
    if not path.exists():
        return None, None
    items = _read_blocks(path)
    rl = _read_one(path, RevocationList, items).verify(_descriptor(state_dir, name))
    recs = [x for x in items if isinstance(x, MutableRecord)]
    return rl, recs[0] if recs else None


def load_revocations(state_dir: Path, name: str) -> RevocationList | None:
    return _revocations_file(state_dir, name)[0]


def load_revocation_record(state_dir: Path, name: str) -> MutableRecord | None:
    """The signed DHT record stored beside the revocation list, if the list fits one."""
    return _revocations_file(state_dir, name)[1]


def save_revocations(state_dir: Path, name: str, rl: RevocationList, record: MutableRecord | None) -> Path:
    """Store a (verified) revocation list and its DHT record: owner after revoking, member after fetching."""
    path = network_dir(state_dir, name) / "revocations.pem"
    write_new(path, armor(rl) + (armor(record) if record is not None else ""), replace=True)
    return path


def revoke(state_dir: Path, name: str, serial: int, now: float) -> RevocationList:
    """Owner side: add ``serial`` to a new revocation list (seq + 1) and store it."""
    auth = load_authority(state_dir, name)
    if serial not in {c.serial for c in issued_certificates(state_dir, name)}:
        raise NetworkError(f"network {name!r} has issued no certificate #{serial}")
    old = load_revocations(state_dir, name)
    serials = set(old.serials) if old else set()
    if serial in serials:
        raise NetworkError(f"certificate #{serial} is already revoked")
    rl = auth.revocation_list(seq=(old.seq + 1) if old else 1, issued_at=int(now),
                              serials=serials | {serial}, node_ids=old.node_ids if old else ())
    try:
        record = auth.revocation_record(rl)
    except NetworkError:
        record = None  # too long for the DHT: the file still holds the list
    save_revocations(state_dir, name, rl, record)
    return rl


def join_network(state_dir: Path, text: str, node: NodeId, now: float) -> tuple[NetworkDescriptor, NetCert]:
    """Install a certificate file for this node after checking it is valid and really ours."""
    items = dearmor(text)
    descs = [x for x in items if isinstance(x, NetworkDescriptor)]
    certs = [x for x in items if isinstance(x, NetCert)]
    if len(descs) != 1 or len(certs) != 1 or len(items) != 2 + sum(isinstance(x, MutableRecord) for x in items):
        raise NetworkError("a certificate file holds one WEFTNET NETWORK block and one WEFTNET CERTIFICATE block")
    desc, cert = descs[0].verify(), certs[0]
    if cert.node_id != node.raw:
        raise NetworkError(f"this certificate is for node {NodeId(cert.node_id).text()}, not this node "
                           f"({node.text()})")
    cert.verify(desc, now)
    records = [x for x in items if isinstance(x, MutableRecord)]
    bound = [b.address for b in cert.l2.bindings] if cert.l2 is not None else []
    for r in records:
        if cert.l2 is not None and r.salt == member_salt(cert.serial):
            try:
                if cert_from_member_record(r, desc, cert.serial) != cert:
                    raise CertificateError("it holds another certificate")
            except CertificateError as exc:
                raise NetworkError(f"the member record is not valid: {exc}") from None
            continue
        for a in list(cert.addresses) + bound:
            if r.salt == directory_salt(a):
                try:
                    if cert_from_directory(r, desc, a) != cert:
                        raise CertificateError("it holds another certificate")
                except CertificateError as exc:
                    raise NetworkError(f"the directory record for {a} is not valid: {exc}") from None
                break
        else:
            raise NetworkError("a directory record in the file is for none of the certificate's addresses")
    d = network_dir(state_dir, desc.name)
    existing = d / "network.pem"
    if existing.exists():
        have = _read_one(existing, NetworkDescriptor)
        if have.network_id != desc.network_id:
            raise NetworkError(f"a different network named {desc.name!r} is already installed in {d}")
    else:
        _make_network_dir(state_dir, d)
        write_new(existing, armor(desc))
    write_new(d / "member.pem", armor(cert), replace=True)
    rec_path = d / "directory.pem"
    if records:
        write_new(rec_path, "".join(armor(r) for r in records), replace=True)
    elif rec_path.exists():
        rec_path.unlink()  # records of an older certificate would point at it
    return desc, cert


@dataclass
class Membership:
    """One network as stored on disk, for `weft net ls` and the daemon."""

    descriptor: NetworkDescriptor
    certificate: NetCert | None
    revocations: RevocationList | None
    owner: bool
    directory: list[MutableRecord] = field(default_factory=list)
    revocation_record: MutableRecord | None = None


def leave_network(state_dir: Path, name: str) -> bool:
    """Give up this node's membership of ``name``; returns True if the network's files stay (owner)."""
    import shutil

    d = network_dir(state_dir, name)
    if not (d / "member.pem").exists():
        raise NetworkError(f"this node is no member of {name!r} (no {d / 'member.pem'})")
    if (d / "authority.key").exists():
        for f in ("member.pem", "directory.pem"):
            (d / f).unlink(missing_ok=True)
        return True
    shutil.rmtree(d)
    return False


def load_membership(state_dir: Path, name: str) -> Membership:
    d = network_dir(state_dir, name)
    desc = _descriptor(state_dir, name)
    cert = _read_one(d / "member.pem", NetCert) if (d / "member.pem").exists() else None
    records: list[MutableRecord] = []
    if (d / "directory.pem").exists():
        records = [r for r in _read_blocks(d / "directory.pem") if isinstance(r, MutableRecord)]
    revocations, revocation_record = _revocations_file(state_dir, name)
    return Membership(desc, cert, revocations, (d / "authority.key").exists(), records, revocation_record)


def list_networks(state_dir: Path) -> list[Membership]:
    root = Path(state_dir) / "networks"
    if not root.is_dir():
        return []
    return [load_membership(state_dir, p.name) for p in sorted(root.iterdir()) if (p / "network.pem").exists()]

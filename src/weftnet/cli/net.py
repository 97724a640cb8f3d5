"""`weft net`: create private networks, sign and install member certificates, revoke them.

Everything lives under ``<state>/networks/<name>/`` (docs/vpn.md, "Files"):

* ``network.pem``      the network descriptor (owner and members)
* ``authority.key``    the authority's Ed25519 key, PKCS#8 PEM, mode 0600 (owner only)
* ``issued/<serial>.pem``  every certificate the owner signed (owner only)
* ``member.pem``       this node's own certificate (members)
* ``revocations.pem``  the newest revocation list

The functions below take the state directory as an argument so the daemon
can load memberships without click; the click commands are thin wrappers.
Errors are one line, ``weft: error: ...``.
"""

from __future__ import annotations

import ipaddress
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import click

from weftnet.core.dht.records import MutableRecord
from weftnet.core.identity import NodeId
from weftnet.core.netcert import (
    CertificateError,
    NetCert,
    NetworkAuthority,
    NetworkDescriptor,
    RevocationList,
    armor,
    cert_from_directory,
    check_name,
    dearmor,
    directory_salt,
)
from weftnet.errors import ConfigError, NetworkError, WeftError

__all__ = [
    "Membership",
    "network_dir",
    "create_network",
    "load_authority",
    "sign_member_cert",
    "join_network",
    "load_membership",
    "list_networks",
    "issued_certificates",
    "revoke",
    "net",
]

DAY = 86_400


def network_dir(state_dir: Path, name: str) -> Path:
    try:
        check_name("network", name)
    except ValueError as exc:
        raise NetworkError(str(exc)) from None
    return Path(state_dir) / "networks" / name


def _write_new(path: Path, data: str, mode: int = 0o644, replace: bool = False) -> None:
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


def _read_blocks(path: Path) -> list:
    """Every armoured block of a state file, decoded."""
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return dearmor(text)


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
                   rng: random.Random | None = None) -> NetworkAuthority:
    """Make a new authority key and network descriptor; refuses an existing name."""
    d = network_dir(state_dir, name)
    if d.exists():
        raise NetworkError(f"network {name!r} already exists in {d}")
    auth = NetworkAuthority.create(name, list(prefixes), rng or random.SystemRandom(), now)
    from cryptography.hazmat.primitives import serialization

    key_pem = auth._sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode("ascii")
    d.mkdir(mode=0o700, parents=True)
    _write_new(d / "authority.key", key_pem, mode=0o600)
    _write_new(d / "network.pem", armor(auth.descriptor))
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
                     now: float, days: float = 365.0) -> tuple[NetCert, str]:
    """Owner side: sign a certificate, record it, and return it with the text to give the member.

    The text holds the network descriptor, the certificate and its signed
    directory records (one per address, which the member publishes in the
    DHT so other members can find it); that is all ``weft net join`` needs.
    Serial numbers count up from 1 per network.
    """
    if days <= 0:
        raise NetworkError("--days must be positive")
    auth = load_authority(state_dir, name)
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
    cert = auth.sign_member(node, addrs, list(groups), not_before=int(now) - 60,
                            not_after=int(now + days * DAY), serial=serial)
    _write_new(network_dir(state_dir, name) / "issued" / f"{serial}.pem", armor(cert))
    records = "".join(armor(r) for r in auth.directory_records(cert))
    return cert, armor(auth.descriptor) + armor(cert) + records


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
    _write_new(path, armor(rl) + (armor(record) if record is not None else ""), replace=True)
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
    for r in records:
        for a in cert.addresses:
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
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(existing, armor(desc))
    _write_new(d / "member.pem", armor(cert), replace=True)
    rec_path = d / "directory.pem"
    if records:
        _write_new(rec_path, "".join(armor(r) for r in records), replace=True)
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


# --- click -------------------------------------------------------------------


class NetCommandError(click.ClickException):
    """One line on stderr: ``weft: error: ...``."""

    def show(self, file=None) -> None:
        click.echo(f"weft: error: {self.format_message()}", err=True, file=file)


class _NetGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except WeftError as exc:
            raise NetCommandError(str(exc)) from None


def _state_dir(ctx: click.Context) -> Path:
    from weftnet.runtime.paths import resolve_state_dir

    obj = ctx.find_root().obj or {}
    return resolve_state_dir(obj.get("state_dir"))


def _expiry(cert: NetCert, now: float) -> str:
    left = cert.not_after - now
    if left <= 0:
        return "expired"
    return f"{left / DAY:.0f} days left" if left >= DAY else f"{left / 3600:.1f} h left"


@click.group("net", cls=_NetGroup)
def net() -> None:
    """Private networks: authorities, member certificates, revocation."""


@net.command("create")
@click.argument("name")
@click.option("--ipv4", "ipv4", multiple=True, metavar="CIDR", help="An IPv4 prefix of the network (repeatable).")
@click.option("--ipv6", "ipv6", multiple=True, metavar="CIDR", help="An IPv6 prefix of the network (repeatable).")
@click.pass_context
def create_cmd(ctx: click.Context, name: str, ipv4: tuple[str, ...], ipv6: tuple[str, ...]) -> None:
    """Create network NAME with a new authority key (kept in the state directory, mode 0600)."""
    for v, nets in ((4, ipv4), (6, ipv6)):
        for n in nets:
            try:
                if ipaddress.ip_network(n, strict=False).version != v:
                    raise NetworkError(f"--ipv{v} {n} is not an IPv{v} prefix")
            except ValueError as exc:
                raise NetworkError(f"--ipv{v} {n}: {exc}") from None
    if not ipv4 and not ipv6:
        raise NetworkError("give at least one prefix with --ipv4 or --ipv6")
    auth = create_network(_state_dir(ctx), name, [*ipv4, *ipv6], time.time())
    click.echo(f"network:    {name}")
    click.echo(f"network ID: {auth.network_id.hex()}")
    click.echo(f"prefixes:   {', '.join(str(p) for p in auth.descriptor.prefixes)}")
    click.echo(f"authority:  {network_dir(_state_dir(ctx), name) / 'authority.key'} (keep it secret)")


@net.command("sign")
@click.argument("name")
@click.option("--node", required=True, metavar="NODEID", help="The member's node ID (wn1... or 64 hex digits).")
@click.option("--ip", "ips", multiple=True, required=True, help="An overlay address for the member (repeatable).")
@click.option("--group", "groups", multiple=True, help="A firewall group (repeatable).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=365.0, show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate file (default: NAME-SERIAL.cert here).")
@click.pass_context
def sign_cmd(ctx, name, node, ips, groups, days, out) -> None:
    """Sign a member certificate for NODE in network NAME (owner only)."""
    for g in groups:
        try:
            check_name("group", g)
        except ValueError as exc:
            raise NetworkError(str(exc)) from None
    cert, text = sign_member_cert(_state_dir(ctx), name, NodeId.parse(node), ips, groups, time.time(), days)
    path = out or Path(f"{name}-{cert.serial}.cert")
    _write_new(path, text, replace=out is not None)
    click.echo(f"certificate #{cert.serial} for {NodeId(cert.node_id).text()}: "
               f"{', '.join(str(a) for a in cert.addresses)}"
               f"{' groups ' + ','.join(cert.groups) if cert.groups else ''}, {_expiry(cert, time.time())}")
    click.echo(f"written to {path}; the member runs: weft net join {path.name}")


@net.command("join")
@click.argument("certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def join_cmd(ctx, certfile: Path) -> None:
    """Install CERTFILE (from the network owner) as this node's membership."""
    from weftnet.runtime.keystore import load_identity
    from weftnet.runtime.paths import StatePaths

    state = _state_dir(ctx)
    identity = load_identity(StatePaths(state).key)
    try:
        text = certfile.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworkError(f"cannot read {certfile}: {exc}") from None
    desc, cert = join_network(state, text, identity.node_id, time.time())
    click.echo(f"joined {desc.name!r} as {', '.join(str(a) for a in cert.addresses)} "
               f"(certificate #{cert.serial}, {_expiry(cert, time.time())})")


@net.command("ls")
@click.pass_context
def ls_cmd(ctx) -> None:
    """Networks in the state directory: role, prefixes, this node's addresses."""
    nets = list_networks(_state_dir(ctx))
    if not nets:
        click.echo("no networks; create one with 'weft net create' or join with 'weft net join'")
        return
    now = time.time()
    for m in nets:
        role = "owner" + (" + member" if m.certificate else "") if m.owner else "member"
        mine = ", ".join(str(a) for a in m.certificate.addresses) if m.certificate else "-"
        exp = _expiry(m.certificate, now) if m.certificate else ""
        click.echo(f"{m.descriptor.name:<16} {m.descriptor.network_id.hex()[:16]}  {role:<14} "
                   f"{', '.join(str(p) for p in m.descriptor.prefixes):<30} {mine} {exp}".rstrip())


@net.command("members")
@click.argument("name")
@click.pass_context
def members_cmd(ctx, name: str) -> None:
    """Certificates issued in NAME (owner), or this node's own (member)."""
    state = _state_dir(ctx)
    m = load_membership(state, name)
    certs = issued_certificates(state, name) if m.owner else ([m.certificate] if m.certificate else [])
    if not certs:
        click.echo("no certificates")
        return
    now = time.time()
    for c in certs:
        status = "revoked" if m.revocations is not None and m.revocations.revokes(c) else _expiry(c, now)
        click.echo(f"#{c.serial:<4} {NodeId(c.node_id).text()}  {', '.join(str(a) for a in c.addresses):<28} "
                   f"{','.join(c.groups) or '-':<12} {status}")


@net.command("revoke")
@click.argument("name")
@click.argument("serial", type=click.IntRange(min=1))
@click.pass_context
def revoke_cmd(ctx, name: str, serial: int) -> None:
    """Revoke certificate SERIAL of network NAME (owner only)."""
    rl = revoke(_state_dir(ctx), name, serial, time.time())
    path = network_dir(_state_dir(ctx), name) / "revocations.pem"
    click.echo(f"revoked #{serial}; revocation list seq {rl.seq} ({len(rl.serials)} serials) in {path}")
    if load_revocation_record(_state_dir(ctx), name) is not None:
        click.echo("running nodes of this state dir publish it in the DHT; members check for it every 5 minutes")
    else:
        click.echo("the list is too long for the DHT: copy revocations.pem into each member's networks/"
                   f"{name}/ directory")

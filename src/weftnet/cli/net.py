"""`weft net`: create private networks, sign and install member certificates, revoke them.

The work happens in :mod:`weftnet.runtime.netstate` (files under
``<state>/networks/<name>/``); these click commands are thin wrappers.
Errors are one line, ``weft: error: ...``.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import click

from weftnet.core.identity import NodeId
from weftnet.core.vpn.netcert import NetCert, check_name
from weftnet.errors import NetworkError, WeftError
from weftnet.runtime.netstate import (
    DAY,
    create_network,
    issued_certificates,
    join_network,
    leave_network,
    list_networks,
    load_membership,
    load_revocation_record,
    network_dir,
    revoke,
    sign_member_cert,
    write_new,
)

__all__ = ["net"]


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


def _grant_text(cert: NetCert) -> str:
    g = cert.l2
    parts = [f"mac {', '.join(str(m) for m in g.macs)}" if g.macs else "",
             f"sources {', '.join(str(p) for p in g.sources)}" if g.sources else "",
             "bindings " + ", ".join(f"{b.mac.hex(':')}={b.address}" for b in g.bindings) if g.bindings else ""]
    return "layer 2: " + ("; ".join(p for p in parts if p) or "its bridge's own MAC and addresses only")


@click.group("net", cls=_NetGroup)
def net() -> None:
    """Private networks: authorities, member certificates, revocation."""


@net.command("create")
@click.argument("name")
@click.option("--ipv4", "ipv4", multiple=True, metavar="CIDR", help="An IPv4 prefix of the network (repeatable).")
@click.option("--ipv6", "ipv6", multiple=True, metavar="CIDR", help="An IPv6 prefix of the network (repeatable).")
@click.option("--l2", is_flag=True, help="A layer-2 network: Ethernet frames between bridges (docs/l2.md).")
@click.pass_context
def create_cmd(ctx: click.Context, name: str, ipv4: tuple[str, ...], ipv6: tuple[str, ...], l2: bool) -> None:
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
    auth = create_network(_state_dir(ctx), name, [*ipv4, *ipv6], time.time(), layer=2 if l2 else 3)
    click.echo(f"network:    {name}{' (layer 2)' if l2 else ''}")
    click.echo(f"network ID: {auth.network_id.hex()}")
    click.echo(f"prefixes:   {', '.join(str(p) for p in auth.descriptor.prefixes)}")
    click.echo(f"authority:  {network_dir(_state_dir(ctx), name) / 'authority.key'} (keep it secret)")


@net.command("sign")
@click.argument("name")
@click.option("--node", required=True, metavar="NODEID", help="The member's node ID (wn1... or 64 hex digits).")
@click.option("--ip", "ips", multiple=True, required=True, help="An overlay address for the member (repeatable).")
@click.option("--group", "groups", multiple=True, help="A firewall group (repeatable).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=365.0, show_default=True)
@click.option("--mac", "macs", multiple=True, metavar="MAC[/LEN]",
              help="Layer 2: MACs the member may source, e.g. 02:aa:bb:00:00:00/24 (repeatable).")
@click.option("--source", "sources", multiple=True, metavar="CIDR",
              help="Layer 2: IP prefixes the member may source besides its addresses (repeatable).")
@click.option("--bind", "bindings", multiple=True, metavar="MAC=IP",
              help="Layer 2: a host behind the member, answered for without a broadcast (repeatable).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate file (default: NAME-SERIAL.cert here).")
@click.pass_context
def sign_cmd(ctx, name, node, ips, groups, days, macs, sources, bindings, out) -> None:
    """Sign a member certificate for NODE in network NAME (owner only)."""
    for g in groups:
        try:
            check_name("group", g)
        except ValueError as exc:
            raise NetworkError(str(exc)) from None
    cert, text = sign_member_cert(_state_dir(ctx), name, NodeId.parse(node), ips, groups, time.time(), days,
                                  macs=macs, sources=sources, bindings=bindings)
    path = out or Path(f"{name}-{cert.serial}.cert")
    write_new(path, text, replace=out is not None)
    click.echo(f"certificate #{cert.serial} for {NodeId(cert.node_id).text()}: "
               f"{', '.join(str(a) for a in cert.addresses)}"
               f"{' groups ' + ','.join(cert.groups) if cert.groups else ''}, {_expiry(cert, time.time())}")
    if cert.l2 is not None:
        click.echo(_grant_text(cert))
    click.echo(f"written to {path.absolute()}")
    click.echo(f"copy it to the member, who runs: weft net join {path.name}")


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
    click.echo("a running node brings it up at the next 'weft reload' (or SIGHUP)")


@net.command("leave")
@click.argument("name")
@click.pass_context
def leave_cmd(ctx, name: str) -> None:
    """Give up this node's membership of NAME (a running node drops it at 'weft reload')."""
    kept = leave_network(_state_dir(ctx), name)
    click.echo(f"left {name!r}" + (" (you still own it: its authority key stays)" if kept else ""))
    click.echo("a running node takes its TUN down at the next 'weft reload' (or SIGHUP)")


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
        role += " (L2)" if m.descriptor.layer == 2 else ""
        click.echo(f"{m.descriptor.name:<16} {m.descriptor.network_id.hex()[:16]}  {role:<19} "
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
        if c.l2 is not None:
            click.echo(f"      {_grant_text(c)}")


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

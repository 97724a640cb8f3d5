"""`weft reload` and `weft install-service`: operating a node that runs as a service.

``install-service`` writes a systemd unit that runs ``weft up`` with no
privilege but CAP_NET_ADMIN (for TUN devices and their addresses), under a
dynamic user, with systemd's sandboxing options; docs/deploy.md explains each
line. ``reload`` asks the running node to re-read its config (what SIGHUP
does) and prints what changed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from weftnet.errors import ConfigError, WeftError

__all__ = ["install_service", "reload_command", "unit_text"]

DEFAULT_STATE = Path("/var/lib/weftnet")


def _weft_command() -> list[str]:
    """The absolute command line of this `weft`, so the unit runs the same install."""
    exe = shutil.which("weft")
    if exe and Path(exe).resolve().parent == Path(sys.executable).resolve().parent:
        return [str(Path(exe).absolute())]
    here = Path(sys.argv[0])
    if here.name == "weft" and here.exists():
        return [str(here.absolute())]
    return [sys.executable, "-m", "weftnet.cli.main"]


def unit_text(command: list[str], state_dir: Path, config: Path | None = None, user: str | None = None) -> str:
    """A systemd service unit running ``weft up`` with CAP_NET_ADMIN only."""
    globals_ = ["--state-dir", str(state_dir)] + (["--config", str(config)] if config else [])
    exec_start = " ".join(_quote(a) for a in [*command, *globals_, "up"])
    if state_dir == DEFAULT_STATE:
        where = "StateDirectory=weftnet\nStateDirectoryMode=0700"
    else:
        where = f"ReadWritePaths={_quote(str(state_dir))}"
    who = f"User={user}\nGroup={user}" if user else "DynamicUser=yes"
    return f"""\
# weftnet node, written by `weft install-service` (docs/deploy.md).
[Unit]
Description=weftnet overlay node
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
{who}
{where}
# TUN devices, their addresses and routes need CAP_NET_ADMIN, and nothing else does.
AmbientCapabilities=CAP_NET_ADMIN
CapabilityBoundingSet=CAP_NET_ADMIN
NoNewPrivileges=yes
DevicePolicy=closed
DeviceAllow=/dev/net/tun rw
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def _quote(arg: str) -> str:
    # systemd's ExecStart quoting: double quotes around anything with spaces or quotes.
    if arg and not any(c in arg for c in " \t\"'\\$%;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%") + '"'


@click.command("install-service")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("/etc/systemd/system"),
              show_default=True, help="Where to write the unit.")
@click.option("--name", default="weftnet", show_default=True, help="Unit name (NAME.service).")
@click.option("--user", help="Run as this existing user instead of a dynamic one (DynamicUser=yes).")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.option("--force", is_flag=True, help="Replace an existing unit file.")
@click.pass_context
def install_service(ctx: click.Context, unit_dir: Path, name: str, user: str | None, print_only: bool,
                    force: bool) -> None:
    """Write a systemd unit that runs this node with CAP_NET_ADMIN and nothing more.

    The node's state directory is /var/lib/weftnet unless --state-dir is given.
    """
    root = ctx.find_root().obj
    state = Path(root["state_dir"]).expanduser().absolute() if root.get("state_dir") else DEFAULT_STATE
    config = Path(root["config"]).expanduser().absolute() if root.get("config") else None
    if not name or any(c in name for c in "/ \t\n@"):
        raise click.BadParameter("a unit name has no '/', '@' or spaces", param_hint="--name")
    text = unit_text(_weft_command(), state, config, user)
    if print_only:
        click.echo(text, nl=False)
        return
    path = unit_dir / f"{name}.service"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; use --force to replace it")
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror} (run as root, or use --print)") from None
    click.echo(str(path))
    click.echo(f"state directory: {state}\nnext: systemctl daemon-reload && systemctl enable --now {name}", err=True)


@click.command("reload")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def reload_command(ctx: click.Context, as_json: bool) -> None:
    """Re-read the running node's config (as SIGHUP does) and print what changed.

    A config with an error is refused, with the error, and the node keeps the one it runs.
    """
    from weftnet.cli.main import _emit_json, _socket, _state
    from weftnet.runtime.control import call
    from weftnet.runtime.paths import StatePaths

    try:
        sock = _socket(ctx)
    except ConfigError:  # the file is broken: let the daemon say so, and say it keeps its config
        sock = StatePaths(_state(ctx)).control_socket
    r = call(sock, "reload", timeout=120.0)
    if as_json:
        _emit_json(r)
        return
    for line in r["applied"]:
        click.echo(line)
    for line in r["restart_needed"]:
        click.echo(f"needs a restart: {line}")
    for line in r["failed"]:
        click.echo(f"failed: {line}", err=True)
    if not (r["applied"] or r["restart_needed"] or r["failed"]):
        click.echo("no change")
    if r["failed"]:
        raise WeftError(f"{len(r['failed'])} change(s) could not be applied (above)")

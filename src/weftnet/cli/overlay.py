"""`weft allow`, `weft deny`, `weft rules`: the inbound firewall of the overlay interface (docs/overlay.md).

The overlay interface is default-deny inbound. ``weft allow tcp 22`` lets any
node reach this host's port 22 over the overlay; ``--from`` narrows it to one
node (its ID), one overlay address or a prefix. ``weft deny`` takes back a
rule ``weft allow`` added (rules only ever allow). Rules are saved in the
state directory and, when the node is running, in force at once: a
connection a removed rule admitted is cut.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

PROTOS = click.Choice(["tcp", "udp", "icmpv6", "any"], case_sensitive=False)


def _running(ctx: click.Context) -> bool:
    from weftnet.cli.main import _socket

    return _socket(ctx).exists()


def _change(ctx: click.Context, action: str, proto: str, port: str | None, source: str | None) -> dict[str, Any]:
    from weftnet.cli.main import _call, _state
    from weftnet.runtime.config import load_config
    from weftnet.runtime.overlay import change_saved_rules, config_inbound_rules, make_rule, rules_report
    from weftnet.runtime.paths import StatePaths

    if port is not None and proto.lower() not in ("tcp", "udp") and port.lower() != "any":
        raise click.BadParameter(f"{proto} has no ports; give a port only with tcp or udp", param_hint="PORT")
    rule = make_rule(proto, port, source)
    if _running(ctx):
        return _call(ctx, "overlay_rules", action=action, rule=rule)
    paths = StatePaths(_state(ctx))
    oc = load_config(paths.config).overlay
    saved = change_saved_rules(paths.root, action, rule, config_inbound_rules(oc))
    return {**rules_report(oc, saved), "flows_closed": 0}


def _describe(rule: dict[str, Any]) -> str:
    who = rule.get("host", "any") if "cidr" not in rule else rule["cidr"]
    port = rule.get("port", "any")
    return f"{rule.get('proto', 'any'):<7} port {str(port):<11} from {who}"


def _show(result: dict[str, Any]) -> None:
    click.echo("inbound on the overlay interface (everything else is denied):")
    where = "default" if result.get("default") else "config.toml"
    rows = [(r, where) for r in result["config"]] + [(r, "weft allow") for r in result["saved"]]
    if not rows:
        click.echo("  (no rules: nothing comes in but replies to this host's own traffic)")
    for r, origin in rows:
        click.echo(f"  {_describe(r)}   [{origin}]")


@click.command()
@click.argument("proto", type=PROTOS)
@click.argument("port", required=False)
@click.option("--from", "source", metavar="NODE|ADDRESS|PREFIX",
              help="Only from this node ID, overlay address or IPv6 prefix (default: any node).")
@click.pass_context
def allow(ctx: click.Context, proto: str, port: str | None, source: str | None) -> None:
    """Let other nodes reach PROTO [PORT] (a number or LOW-HIGH) on this host's overlay address."""
    r = _change(ctx, "allow", proto, port, source)
    _show(r)


@click.command()
@click.argument("proto", type=PROTOS)
@click.argument("port", required=False)
@click.option("--from", "source", metavar="NODE|ADDRESS|PREFIX", help="As given to 'weft allow'.")
@click.pass_context
def deny(ctx: click.Context, proto: str, port: str | None, source: str | None) -> None:
    """Take back a rule 'weft allow' added (connections it admitted are cut)."""
    r = _change(ctx, "deny", proto, port, source)
    if r.get("flows_closed"):
        click.echo(f"closed {r['flows_closed']} connection(s) that rule had admitted")
    _show(r)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rules(ctx: click.Context, as_json: bool) -> None:
    """The inbound rules of the overlay interface (config file and 'weft allow')."""
    from weftnet.cli.main import _call, _emit_json, _state
    from weftnet.runtime.config import load_config
    from weftnet.runtime.overlay import load_saved_rules, rules_report
    from weftnet.runtime.paths import StatePaths

    if _running(ctx):
        r = _call(ctx, "overlay_rules", action="list")
    else:
        paths = StatePaths(_state(ctx))
        r = rules_report(load_config(paths.config).overlay, load_saved_rules(Path(paths.root)))
    if as_json:
        _emit_json(r)
    else:
        _show(r)

"""`weft vrf`: the VRFs of the running node as a provider edge (docs/l3vpn.md)."""

from __future__ import annotations

import json

import click


@click.group()
def vrf() -> None:
    """VRFs: customer routing instances (RFC 4364), their routes and counters."""


def _call(ctx: click.Context, op: str, **params):
    from weftnet.cli.main import _call as call

    return call(ctx, op, **params)


@vrf.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """Every VRF: RD, route targets, label, route counts, CE sessions and traffic counters."""
    rows = _call(ctx, "vrf_ls")
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no VRFs configured")
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("VRF", "RD", "import", "export", "label", "local", "remote", "vrf", "unres.", "pkts in", "pkts out",
              "drops", "CEs")
    for v in rows:
        r, c = v["routes"], v["counters"]
        ces = ", ".join(f"{x['peer']} {x['state']}" for x in v["ce"]) or "-"
        t.add_row(v["name"], v["rd"], " ".join(v["import"]), " ".join(v["export"]),
                  f"{v['label']}" + (" (per prefix)" if v["label_mode"] == "per-prefix" else ""),
                  str(r["local"]), str(r["remote"]), str(r["vrf"]), str(r["unresolved"]), str(c["packets_in"]),
                  str(c["packets_out"]), str(sum(c["drops"].values())), ces)
    Console().print(t)


@vrf.command()
@click.argument("name")
@click.option("--kernel", is_flag=True, help="Also show the routes programmed in the VRF's namespace.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def routes(ctx: click.Context, name: str, kernel: bool, as_json: bool) -> None:
    """NAME's table: each prefix, its best path ('>') and the others."""
    st = _call(ctx, "vrf_routes", name=name, kernel=kernel)
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    click.echo(f"VRF {st['vrf']}: {len(st['routes'])} prefixes")
    for r in st["routes"]:
        for i, p in enumerate(r["paths"]):
            head = r["prefix"] if i == 0 else ""
            if p["type"] == "local":
                where = f"{p['source']} via {p['nexthop'] or '-'}" + (f" dev {p['dev']}" if p["dev"] else "")
            elif p["type"] == "vrf":
                where = f"from VRF {p['vrf']} (RD {p['rd']}, label {p['label']})"
            else:
                pe = f" PE {p['pe'][:20]}…" if p["pe"] else " (next hop not a known PE)"
                where = f"RD {p['rd']} label {p['label']} via {p['nexthop']}{pe} from {p['source']} RT {' '.join(p['rts'])}"
            click.echo(f"{head:<20} {'>' if p['best'] else ' '} {p['type']:<10} {where}")
    if kernel:
        click.echo(f"kernel ({len(st.get('kernel', {}))} routes of ours):")
        for prefix, k in sorted(st.get("kernel", {}).items()):
            click.echo(f"  {prefix} " + (f"via {k['via']} " if k["via"] else "") + f"dev {k['dev']}")

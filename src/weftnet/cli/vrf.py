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
    for v in rows:
        r, c = v["routes"], v["counters"]
        mode = " (per prefix)" if v["label_mode"] == "per-prefix" else ""
        click.echo(f"{v['name']}  RD {v['rd']}  label {v['label']}{mode}  RT import {' '.join(v['import']) or '-'}"
                   f"  export {' '.join(v['export']) or '-'}  netns {v.get('netns') or '-'}  tun {v.get('tun') or '-'}")
        click.echo(f"  routes: {r['local']} local, {r['remote']} remote, {r['vrf']} from other VRFs, "
                   f"{r['unresolved']} unresolved; {v['exported']} exported"
                   + (f"; {v['refused']} refused (max_routes)" if v["refused"] else ""))
        drops = ", ".join(f"{k} {n}" for k, n in c["drops"].items()) or "none"
        click.echo(f"  packets: in {c['packets_in']} ({c['bytes_in']} B), out {c['packets_out']} ({c['bytes_out']} B);"
                   f" drops: {drops}")
        for pe, pc in c["peers"].items():
            click.echo(f"    {pe[:28]}{'…' if len(pe) > 28 else ''}  in {pc['packets_in']}  out {pc['packets_out']}")
        for ce in v["ce"]:
            click.echo(f"  CE {ce['peer']} AS {ce['remote_as']}: {ce['state']}"
                       + (f", {ce['prefixes_received']} prefixes in, {ce['prefixes_sent']} out"
                          if "prefixes_received" in ce else ""))


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

"""`weft bgp`: the BGP speaker of the running node (docs/bgp.md)."""

from __future__ import annotations

import json

import click

AFIS = ["ipv4", "ipv6", "evpn", "vpnv4", "vpnv6"]


@click.group()
def bgp() -> None:
    """The BGP speaker: sessions, routes, EVPN instances."""


def _call(ctx: click.Context, op: str, **params):
    from weftnet.cli.main import _call as call

    return call(ctx, op, **params)


@bgp.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def summary(ctx: click.Context, as_json: bool) -> None:
    """Peers (state, uptime, prefixes), route counts and EVPN instances."""
    st = _call(ctx, "bgp_summary")
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    click.echo(f"BGP router ID {st['router_id']}, local AS {st['asn']}, families {', '.join(st['families'])}")
    click.echo("routes: " + ", ".join(f"{f} {n}" for f, n in st["routes"].items()))
    t = Table()
    for name in ("peer", "AS", "state", "up", "families", "rcvd/sent"):
        t.add_column(name, no_wrap=True)
    t.add_column("last error", overflow="fold")
    for p in st["peers"]:
        up = "-" if p["uptime"] is None else f"{p['uptime']:.0f} s"
        t.add_row(p["peer"], str(p["remote_as"]), p["state"], up, ",".join(p["families"]) or "-",
                  f"{p['prefixes_received']}/{p['prefixes_sent']}", p["last_error"] or "")
    Console().print(t)
    for e in st.get("evpn", []):
        click.echo(f"EVPN VNI {e['vni']}: RD {e['rd']}, RT import {', '.join(e['import_targets'])} export "
                   f"{', '.join(e['export_targets'])}, VTEP {e['local_vtep']}; {e['local_macs']} local MACs, "
                   f"{e['remote_macs']} remote MACs, remote VTEPs: {', '.join(e['vteps']) or 'none'}, "
                   f"{e['mac_moves']} MAC moves")


@bgp.command()
@click.option("--afi", type=click.Choice(AFIS), help="One address family (default: every configured one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def routes(ctx: click.Context, afi: str | None, as_json: bool) -> None:
    """The Loc-RIB: every path, the best one marked with '>'."""
    params = {"afi": afi} if afi else {}
    st = _call(ctx, "bgp_routes", **params)
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    for fam, rows in st.items():
        click.echo(f"{fam}: {len(rows)} paths")
        for r in rows:
            what = {k: v for k, v in r.items() if k not in ("family", "next_hop", "source", "attributes", "best")}
            desc = " ".join(f"{k}={v}" for k, v in what.items() if v not in (None, "", "00000000000000000000"))
            attrs = r["attributes"]
            extra = []
            if attrs.get("as_path"):
                extra.append(f"path {attrs['as_path']}")
            if attrs.get("extended_communities"):
                extra.append(" ".join(attrs["extended_communities"]))
            click.echo(f" {'>' if r['best'] else ' '} {desc}  via {r['next_hop']} from {r['source']}"
                       + (f"  [{'; '.join(extra)}]" if extra else ""))

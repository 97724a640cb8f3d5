"""`weft route` and `weft paths`: explicit routes and measured paths (docs/paths.md).

``weft route set NODE via A,B`` pins the path to NODE through A then B (their
sessions carry it; the end-to-end session stays between us and NODE);
``weft route ls`` lists the routes with their measurements; ``weft route
clear [NODE]`` removes one or all. Routes set here last until the node stops;
``[[route]]`` in the config makes them permanent. ``weft paths`` shows every
measured path per peer, the links with their counters, and the traffic classes.
"""

from __future__ import annotations

from typing import Any

import click


def _call(ctx: click.Context, method: str, **params: Any) -> Any:
    from weftnet.cli.main import _call as call

    return call(ctx, method, **params)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _pct(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _short(node: str) -> str:
    return node[:20] + "…"


@click.group()
def route() -> None:
    """Explicit routes: pin the overlay nodes traffic to a node goes through."""


@route.command("set")
@click.argument("node")
@click.argument("hops", nargs=-1, required=True, metavar="via A,B")
@click.pass_context
def route_set(ctx: click.Context, node: str, hops: tuple) -> None:
    """Send traffic for NODE through the given nodes, nearest first (1 to 3 of them)."""
    from weftnet.core.identity import NodeId

    words = list(hops)
    if words and words[0].lower() == "via":
        words = words[1:]
    via = [h for w in words for h in w.split(",") if h]
    if not via:
        raise click.BadParameter("name the nodes to go through: weft route set NODE via A,B", param_hint="via")
    NodeId.parse(node)
    for h in via:
        NodeId.parse(h)
    r = _call(ctx, "route", action="set", node=node, via=via)
    click.echo(f"route to {r['node_id']}: via {', '.join(r['via'])}")


@route.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def route_ls(ctx: click.Context, as_json: bool) -> None:
    """Explicit routes, each with its measured RTT and loss."""
    from weftnet.cli.main import _emit_json

    rows = _call(ctx, "route", action="list")
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("no explicit routes")
        return
    for r in rows:
        use = "in use" if r.get("in_use") else "not in use"
        click.echo(f"{r['node_id']} via {', '.join(_short(v) for v in r['via'])}: {r['state']}, "
                   f"rtt {_ms(r.get('rtt_ms'))}, loss {_pct(r.get('loss'))}, {use}")


@route.command("clear")
@click.argument("node", required=False)
@click.pass_context
def route_clear(ctx: click.Context, node: str | None) -> None:
    """Remove the route to NODE (all routes without NODE)."""
    from weftnet.core.identity import NodeId

    if node is not None:
        NodeId.parse(node)
    r = _call(ctx, "route", action="clear", **({"node": node} if node else {}))
    click.echo(f"{r['cleared']} route{'s' if r['cleared'] != 1 else ''} removed")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def paths(ctx: click.Context, as_json: bool) -> None:
    """Measured paths per peer (RTT, jitter, loss, state), links and traffic classes."""
    from weftnet.cli.main import _emit_json

    st = _call(ctx, "paths")
    if as_json:
        _emit_json(st)
        return
    paths_lines(st, full=True)


def paths_lines(st: dict, full: bool = False) -> None:
    """What `weft status` and `weft paths` print about paths."""
    from rich.console import Console
    from rich.table import Table

    links = st.get("links") or []
    if links and (full or len(links) > 1):
        t = Table("link", "endpoint", "cost", "metered", "paths up", "down", "tx pkts", "rx pkts", "errors")
        for link in links:
            t.add_row(link["name"] + (" (main)" if link.get("main") else ""), str(link.get("endpoint") or "-"),
                      str(link["cost"]), "yes" if link["metered"] else "no", str(link["paths_up"]),
                      str(link["paths_down"]), str(link.get("tx_packets", "-")), str(link.get("rx_packets", "-")),
                      str(link.get("send_errors", 0)))
        Console().print(t)
    for c in st.get("classes") or []:
        sla = ", ".join(f"{k} {v}" for k, v in c["sla"].items() if v is not None) or "no SLA"
        by = ", ".join(f"{k} {v}" for k, v in sorted(c["links"].items())) or "-"
        click.echo(f"class {c['name']} ({c['policy']}, {sla}): {c['packets']} pkts, {c['duplicated']} duplicated, "
                   f"{c['sla_unmet']} without a path meeting the SLA; by link: {by}")
    for r in st.get("routes") or []:
        click.echo(f"route {_short(r['node_id'])} via {', '.join(_short(v) for v in r['via'])}: {r['state']}")
    peers = st.get("peers") or []
    if full:
        if not peers:
            click.echo("no peer carries traffic: nothing measured")
        for p in peers:
            flag = " (detour)" if p["on_detour"] else " (explicit route)" if p["routed"] else ""
            click.echo(f"{p['node_id']}: {'active' if p['active'] else 'idle'}, using {p['path']}{flag}")
            t = Table("path", "link", "state", "rtt", "jitter", "loss", "probes", "origin")
            for r in p["paths"]:
                mark = "* " if r["in_use"] else "  "
                t.add_row(mark + r["path"], r["link"], r["state"], _ms(r["rtt_ms"]), _ms(r["jitter_ms"]),
                          _pct(r["loss"]), str(r["probes"]), r["origin"])
            Console().print(t)
    elif peers:
        on = sum(1 for p in peers if p["on_detour"])
        click.echo(f"paths:           {len(peers)} peers measured ({on} on a detour), "
                   f"{st['stats']['probes_sent']} probes sent; 'weft paths' shows them")
    tr = st.get("transit") or {}
    if tr.get("enabled"):
        click.echo(f"transit:         on, {tr['stats']['forwarded']} packets forwarded for peers")


def trace_lines(r: dict) -> None:
    what = {"route": "explicit route", "detour": "detour", "relay": "relay"}[r["role"]]
    click.echo(f"overlay path ({what}):")
    for i, h in enumerate(r["hops"], 1):
        rtt = "-" if h["rtt"] is None else f"{h['rtt'] * 1000:.2f} ms"
        click.echo(f"{i:>2}  {h['node_id']}  {h['endpoint'] or '-'}  {rtt}")

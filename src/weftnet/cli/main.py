"""The `weft` command.

Every command that talks to a running node goes through the control socket
(runtime/control.py). Any weftnet error, bad argument or unreachable daemon
is one line on stderr (``weft: error: ...``) and exit code 1 (2 for usage
errors) — never a traceback. Heavy modules are imported inside commands so
``weft --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from weftnet.errors import WeftError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _state(ctx: click.Context) -> Path:
    from weftnet.runtime.paths import resolve_state_dir

    return resolve_state_dir(ctx.find_root().obj.get("state_dir"))


def _config_path(ctx: click.Context) -> Path:
    from weftnet.runtime.paths import StatePaths

    explicit = ctx.find_root().obj.get("config")
    return Path(explicit).expanduser().absolute() if explicit else StatePaths(_state(ctx)).config


def _socket(ctx: click.Context) -> Path:
    """The control socket (runtime/control.py checks its directory if it is the shared fallback)."""
    from weftnet.runtime.config import load_config
    from weftnet.runtime.paths import StatePaths

    paths = StatePaths(_state(ctx))
    cfg = load_config(_config_path(ctx))
    return Path(cfg.control_socket) if cfg.control_socket else paths.control_socket


def _call(ctx: click.Context, op: str, timeout: float = 60.0, **params: Any) -> Any:
    from weftnet.runtime.control import call

    return call(_socket(ctx), op, timeout=timeout, **params)


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


class WeftGroup(click.Group):
    """Turns every weftnet error, and every usage error, into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:  # also BadParameter, NoSuchOption, MissingParameter
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"weft: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("weft: interrupted", err=True)
            sys.exit(130)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WeftError as exc:
            click.echo(f"weft: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("weft: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `weft status | head`: the reader has gone, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, with a way to see more
            if os.environ.get("WEFT_DEBUG"):
                raise
            click.echo(f"weft: internal error: {type(exc).__name__}: {exc} (set WEFT_DEBUG=1 for a traceback)", err=True)
            ctx.exit(1)


@click.group(cls=WeftGroup, context_settings=CONTEXT)
@click.option("--state-dir", type=click.Path(file_okay=False), envvar="WEFTNET_STATE_DIR",
              help="State directory (default: $XDG_STATE_HOME/weftnet). Env: WEFTNET_STATE_DIR.")
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar="WEFTNET_CONFIG",
              help="Config file (default: config.toml in the state directory). Env: WEFTNET_CONFIG.")
@click.version_option(package_name="weftnet")
@click.pass_context
def cli(ctx: click.Context, state_dir: str | None, config: str | None) -> None:
    """weftnet: an overlay network with key-derived addresses, a DHT and secure sessions.

    --state-dir and --config may also follow the command (weft status --state-dir DIR).
    """
    ctx.ensure_object(dict)
    ctx.obj["state_dir"] = state_dir
    ctx.obj["config"] = config


def _late_global(name: str):
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.find_root().obj[name] = value

    return callback


def _accept_globals_after_verb(group: click.Group) -> None:
    """Let --state-dir and --config follow any command too, as people type them."""
    for cmd in group.commands.values():
        cmd.params.append(click.Option(["--state-dir"], type=click.Path(file_okay=False), expose_value=False,
                                       callback=_late_global("state_dir"), help="As before the command."))
        cmd.params.append(click.Option(["--config"], type=click.Path(dir_okay=False), expose_value=False,
                                       callback=_late_global("config"), help="As before the command."))
        if isinstance(cmd, click.Group):
            _accept_globals_after_verb(cmd)


@cli.command()
@click.option("--force", is_flag=True, help="Replace an existing identity (its node ID is lost).")
@click.option("--exist-ok", is_flag=True, help="Keep an identity that is already there (exit 0); for scripts and containers.")
@click.pass_context
def init(ctx: click.Context, force: bool, exist_ok: bool) -> None:
    """Create a node identity and a default config in the state directory.

    The identity meets the network's node-ID puzzle ([dht] id_difficulty of an
    existing config, else the default): 2^difficulty key generations, once."""
    import random

    from weftnet.core.puzzle import generate_identity
    from weftnet.errors import ConfigError
    from weftnet.runtime.config import DEFAULT_CONFIG, load_config
    from weftnet.runtime.keystore import ensure_private_dir, load_identity, write_identity
    from weftnet.runtime.paths import StatePaths

    paths = StatePaths(_state(ctx))
    config = _config_path(ctx)
    note = ensure_private_dir(paths.root)
    if note:
        click.echo(f"weft: note: {note}", err=True)
    difficulty = load_config(config).id_difficulty
    if exist_ok and not force and paths.key.exists():
        identity = load_identity(paths.key)
    else:
        if paths.key.exists() and not force:  # before spending the puzzle's work
            raise ConfigError(f"{paths.key} already holds an identity; use --force to replace it "
                              "(the old node ID is lost)")
        identity = generate_identity(random.SystemRandom(), difficulty)
        write_identity(paths.key, identity, force=force)
    if not config.exists() or force:
        config.write_text(DEFAULT_CONFIG)
    click.echo(f"state dir:       {paths.root}")
    click.echo(f"node ID:         {identity.node_id.text()}")
    click.echo(f"overlay address: {identity.address}")
    click.echo(f"config:          {config}")
    click.echo(f"id puzzle:       {difficulty} bits")


@cli.command("id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-q", "--quiet", is_flag=True, help="Print the node ID alone (for scripts: ID=$(weft id -q)).")
@click.pass_context
def show_id(ctx: click.Context, as_json: bool, quiet: bool) -> None:
    """Show this node's ID, overlay address and public key."""
    from weftnet.runtime.keystore import load_identity
    from weftnet.runtime.paths import StatePaths

    identity = load_identity(StatePaths(_state(ctx)).key)
    info = {"node_id": identity.node_id.text(), "address": str(identity.address),
            "public_key": identity.public_key.hex()}
    if quiet:
        click.echo(info["node_id"])
    elif as_json:
        _emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k + ':':<16} {v}")


@cli.command()
@click.option("--listen", help="Address to listen on (default from config: 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), help="UDP port (default from config: 4500; 0 = any).")
@click.option("--peer", "peers", multiple=True, metavar="[NODEID@]HOST:PORT", help="A peer to join through (repeatable).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
@click.pass_context
def up(ctx: click.Context, listen, port, peers, log_format, log_level) -> None:
    """Run this node in the foreground until SIGINT or SIGTERM."""
    from weftnet.runtime.config import load_config, parse_peer
    from weftnet.runtime.daemon import run
    from weftnet.runtime.logs import setup_logging
    from weftnet.runtime.paths import StatePaths

    paths = StatePaths(_state(ctx))
    config_path = _config_path(ctx)
    pinned = [parse_peer(p) for p in peers]

    def load():  # the file with this command line's flags on top, again at every reload
        cfg = load_config(config_path)
        if listen is not None:
            cfg.listen = listen
        if port is not None:
            cfg.port = port
        if pinned:
            cfg.peers = pinned
        cfg.log_format = log_format or cfg.log_format
        cfg.log_level = log_level or cfg.log_level
        return cfg

    cfg = load()
    setup_logging(cfg.log_level, cfg.log_format)
    run(paths.root, cfg, load)


def _fmt_rtt(v: Any) -> str:
    return "-" if v is None else f"{float(v) * 1000:.2f} ms"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _path_text(p: dict, short: bool) -> str:
    kind = p.get("path", "direct")
    if kind != "relay":
        return kind
    used = next((r for r in p.get("paths", []) if r.get("in_use")), {})
    kind = {"detour": "detour", "route": "route"}.get(used.get("role"), "relay")  # docs/paths.md
    return f"{kind} via " + ", ".join(v[:16] + "…" if short else v for v in p.get("via", []))


def _measured(p: dict) -> tuple[str, str, str]:
    """(rtt, loss, paths up) of a peer, from its measured paths (docs/paths.md) where it has them."""
    rows = p.get("paths", [])
    measured = [r for r in rows if r.get("measured")]
    m = next((r for r in rows if r.get("in_use")), {}).get("measured") or {}
    rtt = _fmt_rtt(p.get("srtt")) if m.get("rtt_ms") is None else f"{m['rtt_ms']:.2f} ms"
    loss = "-" if m.get("loss") is None else f"{m['loss'] * 100:.1f}%"
    up = f"{sum(1 for r in measured if r['measured']['state'] == 'up')}/{len(measured)}" if measured else "-"
    return rtt, loss, up


def _peer_table(rows: list[dict]) -> None:
    """A table for a person; for a pipe or a file, whole IDs and endpoints in plain columns."""
    tty = sys.stdout.isatty()
    cols = ("node ID", "overlay address", "path", "endpoint", "rtt", "loss", "paths up", "in", "out", "age")
    cells = [(p["node_id"], p["address"], _path_text(p, tty), str(p["endpoint"]), *_measured(p),
              _fmt_bytes(p["bytes_in"]), _fmt_bytes(p["bytes_out"]),
              "-" if p.get("session_age") is None else f"{p['session_age']:.0f} s") for p in rows]
    if not tty:
        widths = [max(len(r[i]) for r in [cols, *cells]) for i in range(len(cols))]
        for r in [cols, *cells]:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(*cols)
    for c in cells:
        t.add_row(c[0][:24] + "…", *c[1:])
    Console().print(t)


def _reach_lines(r: dict) -> None:
    reachable = {True: "yes", False: "no", None: "not known yet"}[r.get("reachable")]
    click.echo(f"nat:             {r['nat']}, reachable unsolicited: {reachable}")
    click.echo(f"candidates:      {', '.join(r['candidates']) or '-'}")
    relays = ", ".join(f"{x['node_id'][:24]}… at {x['endpoint']}" for x in r.get("relays", []))
    click.echo(f"relays:          {relays or '-'}")
    rec = r.get("record")
    if rec:
        click.echo(f"endpoint record: seq {rec['seq']}, published {rec['age']:.0f} s ago, ttl {rec['ttl']} s")
    svc = r.get("relay")
    if svc:
        click.echo(f"relay service:   {len(svc['registered'])} registered, {svc['stats']['forwarded']} packets "
                   f"({_fmt_bytes(svc['stats']['forwarded_bytes'])}) forwarded")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Identity, address, sessions (RTT, bytes, age) and DHT state of the running node."""
    st = _call(ctx, "status")
    if as_json:
        _emit_json(st)
        return
    click.echo(f"node ID:         {st['node_id']}")
    click.echo(f"overlay address: {st['address']}")
    click.echo(f"listening on:    {st['endpoint']}")
    click.echo(f"uptime:          {st['uptime']:.0f} s")
    d = st["dht"]
    click.echo(f"dht:             {d['contacts']} contacts in {d['buckets']} buckets, {d['records']} records")
    if st.get("reach"):
        _reach_lines(st["reach"])
    click.echo(f"sessions:        {len(st['sessions'])}")
    if st["sessions"]:
        _peer_table(st["sessions"])
    ov = st.get("overlay") or {}
    if ov.get("enabled"):
        drops = ", ".join(f"{k} {v}" for k, v in ov["drops"].items()) or "none"
        click.echo(f"overlay:         {ov.get('interface') or '?'} {ov['address']} mtu {ov['mtu']}, "
                   f"{ov['cache']['entries']} addresses resolved, {ov['flows']} flows, "
                   f"in {ov['packets_in']} / out {ov['packets_out']} pkts, drops: {drops}")
    elif ov.get("error"):
        click.echo(f"overlay:         off ({ov['error']})")
    for n in st.get("networks", []):
        drops = ", ".join(f"{k} {v}" for k, v in n["drops"].items()) or "none"
        where = f" in netns {n['netns']}" if n.get("netns") else ""
        click.echo(f"network {n['network']}: {n.get('tun', '?')}{where} {', '.join(n['addresses'])} mtu {n['mtu']}, "
                   f"{n['members']} members known, {n['flows']} flows, drops: {drops}")
        if n.get("layer") == 2:
            l2, vx = n["l2"], n.get("vxlan")
            click.echo(f"  layer 2: bridge {n.get('bridge', '?')} mac {n['mac']}"
                       + (f", VXLAN {vx['device']} VNI {vx['vni']}" if vx else "")
                       + f"; {n['mac_table']['entries']} MACs learned, {n['neighbor_table']['entries']} bindings; "
                       f"flooded {l2['flooded']}, ARP/ND answered locally {l2['arp_suppressed'] + l2['nd_suppressed']}")
        for node, c in n["peers"].items():
            click.echo(f"  {node}  in {c['packets_in']} pkts / {c['bytes_in']} B  "
                       f"out {c['packets_out']} pkts / {c['bytes_out']} B"
                       + (f"  drops {sum(c['drops'].values())}" if c["drops"] else ""))
    if st.get("paths"):
        from weftnet.cli.paths import paths_lines

        paths_lines(st["paths"])


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """Peers with an established session, and the path each uses (direct, TCP, or relayed through which node)."""
    rows = _call(ctx, "peers")
    if as_json:
        _emit_json(rows)
    elif not rows:
        click.echo("no sessions yet")
    else:
        _peer_table(rows)


def _check_node(text: str) -> str:
    from weftnet.core.identity import parse_node_ref

    parse_node_ref(text)  # a typo is caught here, before anything is sent
    return text


@cli.command()
@click.argument("node")
@click.option("-c", "--count", type=click.IntRange(1, 10_000), default=4, show_default=True)
@click.option("-i", "--interval", type=click.FloatRange(0.01, 60), default=1.0, show_default=True)
@click.pass_context
def ping(ctx: click.Context, node: str, count: int, interval: float) -> None:
    """Ping NODE (node ID or overlay address) over the encrypted session."""
    import time

    _check_node(node)
    rtts = []
    for i in range(count):
        r = _call(ctx, "ping", target=node)
        if r["ok"]:
            rtts.append(r["rtt"])
            click.echo(f"reply from {r['node_id']}: seq={i + 1} rtt={r['rtt'] * 1000:.2f} ms")
        else:
            click.echo(f"no reply: seq={i + 1}: {r['error']}")
        if i + 1 < count:
            time.sleep(interval)
    loss = 100 * (count - len(rtts)) / count
    summary = f"{count} sent, {len(rtts)} received, {loss:.0f}% loss"
    if rtts:
        summary += f", rtt min/avg/max = {min(rtts) * 1000:.2f}/{sum(rtts) / len(rtts) * 1000:.2f}/{max(rtts) * 1000:.2f} ms"
    click.echo(summary)
    if not rtts:
        ctx.exit(1)


@cli.command()
@click.argument("target", metavar="NODE-OR-KEY")
@click.argument("text")
@click.pass_context
def send(ctx: click.Context, target: str, text: str) -> None:
    """Route TEXT through the DHT to a node ID (or to whoever is closest to a 64-hex-digit key)."""
    if not (len(target) == 64 and all(c in "0123456789abcdefABCDEF" for c in target)):
        _check_node(target)
    r = _call(ctx, "send", target=target, text=text)
    if not r["ok"]:
        raise WeftError(f"not delivered: {r['error']}")
    click.echo(f"delivered to {r['delivered_to']} in {r['hops']} hop(s)")


@cli.command()
@click.argument("node")
@click.pass_context
def trace(ctx: click.Context, node: str) -> None:
    """Route a probe to NODE and print each overlay hop with its RTT."""
    _check_node(node)
    via = _call(ctx, "trace_path", target=node)  # the path data takes, when it crosses other nodes
    if via:
        from weftnet.cli.paths import trace_lines

        trace_lines(via)
        click.echo("DHT route:")
    r = _call(ctx, "trace", target=node)
    for i, h in enumerate(r.get("hops", []), 1):
        click.echo(f"{i:>2}  {h['node_id']}  {h['endpoint']}  {_fmt_rtt(h['rtt'])}")
    if not r["ok"]:
        raise WeftError(f"trace incomplete: {r['error']}")


@cli.command()
@click.argument("value")
@click.option("--salt", help="Publish a mutable record signed by this node, named by this salt.")
@click.option("--json", "as_json", is_flag=True, help="Key and replica count as JSON.")
@click.pass_context
def put(ctx: click.Context, value: str, salt: str | None, as_json: bool) -> None:
    """Store VALUE in the DHT; prints its key alone (K=$(weft put V); weft get $K), details on stderr."""
    if len(value.encode()) > 1000:
        raise click.BadParameter("a record value is at most 1000 bytes", param_hint="VALUE")
    params: dict[str, Any] = {"value": value}
    if salt is not None:
        params["salt"] = salt
    r = _call(ctx, "put", **params)
    if not r["ok"]:
        raise WeftError(f"put failed: {r['error']}")
    if as_json:
        _emit_json({"key": r["key"], "stored_at": r["stored_at"]})
        return
    click.echo(r["key"])
    click.echo(f"stored on {r['stored_at']} node(s)", err=True)


@cli.command()
@click.argument("key")
@click.option("--quorum", type=click.IntRange(1, 20), default=None,
              help="Read this many valid copies from different nodes, or fail (mutable records: the highest "
                   "seq among them wins). Default: the safe read: an immutable record needs one copy, a "
                   "mutable one the highest seq of several holders' copies (an older copy replayed to one "
                   "holder cannot roll it back).")
@click.pass_context
def get(ctx: click.Context, key: str, quorum: int | None) -> None:
    """Read the record stored under KEY (64 hex digits)."""
    if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
        raise click.BadParameter("a key is 64 hex digits, as printed by 'weft put'", param_hint="KEY")
    params: dict[str, Any] = {"key": key}
    if quorum is not None:
        params["quorum"] = quorum
    r = _call(ctx, "get", **params)
    if not r["ok"]:
        raise WeftError(r["error"])
    value = bytes.fromhex(r["value"])
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        click.echo(value.hex())
        return
    if not _stdout_is_terminal():
        out = click.get_binary_stream("stdout")  # as stored (click.echo would strip escape sequences)
        out.write(value + b"\n")
        out.flush()
        return
    shown = terminal_safe(text)
    if shown != text:
        # Anyone may store a record: its bytes must not drive our terminal (escape sequences that
        # retitle it, clear it, or reverse the text's direction). Piped, they go out as stored.
        click.echo("weft: the value holds control characters; shown escaped (pipe it for the raw bytes)", err=True)
    click.echo(shown)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def terminal_safe(text: str) -> str:
    """``text`` as is, unless it holds a control or format character other than newline and tab:
    then each is written as an escape (``\\x1b``, ``\\u202e``) and backslashes are doubled, so
    what a terminal shows is what is there."""
    import unicodedata

    if all(ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") for ch in text):
        return text
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf"):
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
    return "".join(out)


@cli.command()
@click.argument("node")
@click.pass_context
def lookup(ctx: click.Context, node: str) -> None:
    """Find the nodes closest to NODE's ID (an iterative Kademlia lookup)."""
    _check_node(node)
    r = _call(ctx, "lookup", target=node)
    if not r["ok"]:
        raise WeftError(f"lookup failed: {r['error']}")
    click.echo(f"{len(r['contacts'])} closest nodes ({r['hops']} hops, {r['messages']} requests):")
    for c in r["contacts"]:
        click.echo(f"  {c['node_id']}  {c['endpoint']}")


@cli.command()
@click.option("--nodes", type=click.IntRange(2, 500), default=40, show_default=True, help="How many nodes to start.")
@click.option("--seed", type=int, help="Seed for the demo's choices (keys are always fresh).")
def demo(nodes: int, seed: int | None) -> None:
    """The main job: a local overlay on loopback, showing sessions, routing and records."""
    from weftnet.runtime.demo import run_demo

    if not run_demo(nodes, seed):
        sys.exit(1)


from weftnet.cli.bgp import bgp  # noqa: E402
from weftnet.cli.net import net  # noqa: E402
from weftnet.cli.overlay import allow, deny, rules  # noqa: E402
from weftnet.cli.paths import paths, route  # noqa: E402
from weftnet.cli.vrf import vrf  # noqa: E402
from weftnet.sim.cli import sim_command  # noqa: E402  (its heavy imports are inside the command)

from weftnet.cli.service import install_service, reload_command  # noqa: E402

cli.add_command(net)
for _cmd in (allow, deny, rules, route, paths):
    cli.add_command(_cmd)
cli.add_command(bgp)
cli.add_command(vrf)
cli.add_command(sim_command)
cli.add_command(reload_command)
cli.add_command(install_service)
_accept_globals_after_verb(cli)


def main() -> None:
    try:
        cli(prog_name="weft")
    except SystemExit as exc:
        sim = sys.modules.get("weftnet.sim.cli")
        if sim is not None and sim.DONE_WRITING:
            # A simulation's outputs are written and flushed: leave now rather than free its
            # objects one by one (minutes for a million nodes, after the summary is printed).
            sys.stdout.flush()
            sys.stderr.flush()
            code = exc.code
            os._exit(code if isinstance(code, int) else (0 if code is None else 1))
        raise


if __name__ == "__main__":
    main()

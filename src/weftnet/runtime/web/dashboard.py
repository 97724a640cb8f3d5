"""The live dashboard: snapshots of the node pushed to browsers over server-sent events.

Once a second a sampler reads the node's status (the same dict ``weft status
--json`` prints) and keeps bounded histories: node and per-network
throughput for the last :data:`HISTORY` seconds, and each peer's smoothed RTT
(:data:`RTT_POINTS` samples, every :data:`RTT_EVERY` seconds). It serialises
one snapshot, and every open ``/api/events`` stream sends that same snapshot:
a browser costs one socket write per second, not a status call.

The page renders sections generically: every top-level key of the status
that it has no dedicated view for (paths, relays, BGP, EVPN, VRFs, links, as
the subsystems that own them add them) appears as a table.

Security: read-only by default. ``POST /api/action`` (ping, connect, reload)
needs ``Authorization: Bearer <token>`` with the token from
``dashboard.token`` in the state directory (mode 0600, made at first start).
A header, not a cookie, so no other site can make a browser send it; and the
``Host`` header must be an IP literal or ``localhost`` (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import stat
import time
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from weftnet.errors import ConfigError, WeftError
from weftnet.runtime.web.hosts import host_name, literal_or_localhost

__all__ = ["Dashboard", "load_or_make_token", "HISTORY", "MAX_PEERS", "MAX_STREAMS", "MAX_STREAMS_PER_SOURCE"]

log = logging.getLogger("weftnet.dashboard")

HISTORY = 300  # seconds of throughput history
RTT_POINTS = 90
RTT_EVERY = 2.0
#: Peers shown (the busiest); the count of all sessions is always exact.
MAX_PEERS = 200
MAX_MEMBERS = 256
MAX_STREAMS = 32
#: Event streams one source (an IPv4 address, an IPv6 /64) may hold: a browser needs one a tab.
MAX_STREAMS_PER_SOURCE = 4
#: While a browser watches, the busiest PROBE_PEERS sessions are pinged every PROBE_EVERY
#: seconds so their RTT history means something (sessions measure RTT only when pinged).
PROBE_PEERS = 32
PROBE_EVERY = 10.0
TOKEN_FILE = "dashboard.token"
_STATIC = {"app.js": "application/javascript", "style.css": "text/css", "index.html": "text/html"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def load_or_make_token(state_dir: Path) -> str:
    """The dashboard's write token: read from the state directory, made (0600) the first time.

    A file that cannot be read (a directory, no permission) is a ConfigError of one line, never
    replaced; one that holds no usable token (empty, truncated) is replaced, and the log says so;
    one that others may read is made 0600 again, and the log says so.
    """
    path = Path(state_dir) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read the dashboard token: {why}; move it away and a new one is "
                          "made") from None
    if token is not None and len(token) >= 32 and token.isascii() and token.isprintable() and " " not in token:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("dashboard token was readable by others; it is 0600 now (replace it if they read it)",
                        extra={"path": str(path), "mode": f"{mode:o}"})
        return token
    if token is not None:
        log.warning("dashboard token file held no usable token; a new one was written", extra={"path": str(path)})
    token = secrets.token_hex(32)
    tmp = path.with_name(TOKEN_FILE + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)  # created 0600: never readable by others, not even for a moment
    return token


class Dashboard:
    def __init__(self, daemon: Any, handlers: dict[str, Callable[[dict], Awaitable[Any]]],
                 clock: Callable[[], float] = time.time):
        self.daemon = daemon
        self.handlers = handlers
        self.clock = clock
        self.token = load_or_make_token(daemon.paths.root)
        self._task: asyncio.Task | None = None
        self._snapshot = b"{}"
        self._tick = asyncio.Event()  # set and replaced at every new snapshot
        self._closing = False
        self._streams = 0
        self._streams_by: dict[str, int] = {}  # source -> open event streams
        self._times: deque[float] = deque(maxlen=HISTORY)
        self._rates: dict[str, deque[float]] = {"in": deque(maxlen=HISTORY), "out": deque(maxlen=HISTORY)}
        self._net_rates: dict[str, dict[str, deque[float]]] = {}
        self._last_totals: tuple[float, dict[str, int]] | None = None
        self._last_net: dict[str, tuple[int, int]] = {}
        self._rtt: dict[str, deque[tuple[float, float | None]]] = {}
        self._rtt_at = 0.0
        self._probe_at = 0.0

    # -- lifecycle -------------------------------------------------------------
    def start(self, spawn: Callable[[Awaitable[Any]], asyncio.Task]) -> None:
        self._task = spawn(self._sample_forever())

    async def stop(self) -> None:
        self._closing = True
        self._tick.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def add_routes(self, app: web.Application, addr: tuple[str, int]) -> None:
        app.middlewares.append(_host_guard)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/snapshot", self._get_snapshot)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/action", self._action)

    # -- sampling -------------------------------------------------------------
    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # the dashboard must never take the node down
                log.exception("dashboard sample failed")
            await asyncio.sleep(1.0)

    async def sample(self) -> None:
        now = self.clock()
        st = await self.handlers["status"]({})
        core = self.daemon.core
        totals = core.transport.traffic_totals()
        if self._last_totals is not None:
            t0, before = self._last_totals
            dt = max(1e-3, now - t0)
            self._times.append(now)
            self._rates["in"].append((totals["bytes_in"] - before["bytes_in"]) / dt)
            self._rates["out"].append((totals["bytes_out"] - before["bytes_out"]) / dt)
            for n in st.get("networks", []):
                name = n.get("network", "?")
                bi = sum(p.get("bytes_in", 0) for p in n.get("peers", {}).values())
                bo = sum(p.get("bytes_out", 0) for p in n.get("peers", {}).values())
                rates = self._net_rates.setdefault(name, {"in": deque(maxlen=HISTORY), "out": deque(maxlen=HISTORY)})
                pi, po = self._last_net.get(name, (bi, bo))
                rates["in"].append(max(0.0, (bi - pi) / dt))
                rates["out"].append(max(0.0, (bo - po) / dt))
                self._last_net[name] = (bi, bo)
            live = {n.get("network") for n in st.get("networks", [])}
            for name in list(self._net_rates):
                if name not in live:
                    del self._net_rates[name]
                    self._last_net.pop(name, None)
        else:
            for n in st.get("networks", []):
                self._last_net[n.get("network", "?")] = (
                    sum(p.get("bytes_in", 0) for p in n.get("peers", {}).values()),
                    sum(p.get("bytes_out", 0) for p in n.get("peers", {}).values()))
        self._last_totals = (now, totals)
        sessions = st.get("sessions", [])
        if self._streams and now - self._probe_at >= PROBE_EVERY:
            self._probe_at = now
            self._probe(sessions, now)
        if now - self._rtt_at >= RTT_EVERY:
            self._rtt_at = now
            seen = set()
            for p in sessions:
                nid = p["node_id"]
                seen.add(nid)
                srtt = p.get("srtt")
                self._rtt.setdefault(nid, deque(maxlen=RTT_POINTS)).append(
                    (round(now, 1), None if srtt is None else round(srtt * 1000, 3)))
            for nid in list(self._rtt):
                if nid not in seen:
                    del self._rtt[nid]
        self._snapshot = json.dumps(self._build(st, now), separators=(",", ":")).encode()
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _probe(self, sessions: list[dict], now: float) -> None:
        from weftnet.core.identity import NodeId

        busiest = sorted(sessions, key=lambda p: -(p.get("bytes_in", 0) + p.get("bytes_out", 0)))[:PROBE_PEERS]
        core = self.daemon.core
        for p in busiest:
            core.ping(NodeId.parse(p["node_id"]), now)  # the result event only updates the session's RTT
        self.daemon.driver.transmit()

    def _build(self, st: dict, now: float) -> dict:
        sessions = st.get("sessions", [])
        shown = sorted(sessions, key=lambda p: -(p.get("bytes_in", 0) + p.get("bytes_out", 0)))[:MAX_PEERS]
        st = dict(st)
        st["sessions"] = shown
        from weftnet.core.identity import NodeId

        members: dict[str, list] = {}
        for net in self.daemon.core.vpn.networks():
            rows = []
            for cert in net.members()[:MAX_MEMBERS]:
                rows.append({"node_id": NodeId(cert.node_id).text(),
                             "addresses": [str(a) for a in cert.addresses],
                             "groups": list(cert.groups), "expires": cert.not_after})
            members[net.descriptor.name] = rows
        t0 = self._times[0] if self._times else now
        return {
            "now": now,
            "status": st,
            "peer_count": len(sessions),
            "peers_shown": len(shown),
            "members": members,
            "rtt_history": {p["node_id"]: list(self._rtt.get(p["node_id"], ())) for p in shown},
            "throughput": {"t": [round(t - t0, 1) for t in self._times],
                           "in": [round(v) for v in self._rates["in"]],
                           "out": [round(v) for v in self._rates["out"]]},
            "network_throughput": {name: {"in": [round(v) for v in r["in"]], "out": [round(v) for v in r["out"]]}
                                   for name, r in self._net_rates.items()},
            "urls": self.daemon.http.urls() if getattr(self.daemon, "http", None) else {},
            "subsystems": self._subsystems(),
        }

    def _subsystems(self) -> dict:
        """BGP neighbours, EVPN instances, VRFs, layer-2 tables and what the protections refused:
        the same reader as the metrics (runtime/opsview.py), bounded by the config."""
        from weftnet.runtime import opsview

        out: dict[str, Any] = {"hardening": opsview.hardening_view(self.daemon.core)}
        for key, fn in (("reach", lambda d: opsview.reach_view(d.core, self.clock())), ("bgp", opsview.bgp_view), ("evpn", opsview.evpn_view), ("vrfs", opsview.vrf_view),
                        ("l2", opsview.l2_view)):
            try:
                out[key] = fn(self.daemon)
            except Exception:  # one subsystem's bug must not blank the page
                log.exception("dashboard: %s view failed", key)
        return out

    # -- handlers -------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC or name == "index.html":
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        body = resources.files("weftnet.runtime.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=_STATIC[name], headers=_SECURITY_HEADERS)

    async def _get_snapshot(self, request: web.Request) -> web.Response:
        if self._snapshot == b"{}":
            await self.sample()
        return web.Response(body=self._snapshot, content_type="application/json", headers=_SECURITY_HEADERS)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        from weftnet.runtime.web.server import _source

        source = _source((request.remote or "",))
        if self._streams >= MAX_STREAMS or self._streams_by.get(source, 0) >= MAX_STREAMS_PER_SOURCE:
            raise web.HTTPServiceUnavailable(text="too many dashboard streams")
        self._streams += 1
        self._streams_by[source] = self._streams_by.get(source, 0) + 1
        try:
            resp = web.StreamResponse(headers={**_SECURITY_HEADERS, "Content-Type": "text/event-stream",
                                               "X-Accel-Buffering": "no"})
            await resp.prepare(request)
            if self._snapshot == b"{}":
                await self.sample()
            await resp.write(b"retry: 2000\n")
            while not self._closing:
                tick = self._tick
                await resp.write(b"event: snapshot\ndata: " + self._snapshot + b"\n\n")
                try:
                    await asyncio.wait_for(tick.wait(), 15.0)
                except asyncio.TimeoutError:
                    await resp.write(b": keepalive\n\n")  # through proxies that close idle streams
            return resp
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self._streams -= 1
            n = self._streams_by.pop(source) - 1
            if n:
                self._streams_by[source] = n

    async def _action(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return _json({"ok": False, "error": "read-only: present the token from dashboard.token in the "
                                                "state directory"}, status=403)
        try:
            req = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return _json({"ok": False, "error": "the body must be a JSON object"}, status=400)
        if not isinstance(req, dict) or req.get("op") not in ("ping", "connect", "reload"):
            return _json({"ok": False, "error": "op must be ping, connect or reload"}, status=400)
        op = req["op"]
        params = {k: req[k] for k in ("target", "peer") if k in req}
        log.info("dashboard action", extra={"op": op, **params})
        try:
            result = await self.handlers[op]({"op": op, **params})
        except WeftError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)
        except (KeyError, TypeError, ValueError) as exc:
            return _json({"ok": False, "error": f"bad request for {op}: {exc}"}, status=400)
        return _json({"ok": True, "result": result})


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(obj), status=status, content_type="application/json",
                        headers=_SECURITY_HEADERS)


def _host_ok(host: str) -> bool:
    """An IP literal or localhost (with any port): a DNS-rebinding page cannot produce these."""
    return literal_or_localhost(host_name(host))


@web.middleware
async def _host_guard(request: web.Request, handler):
    if request.path != "/metrics" and not _host_ok(request.headers.get("Host", "")):
        raise web.HTTPForbidden(text="this dashboard answers to an IP address or localhost only")
    return await handler(request)

"""HTTP listeners of the daemon: ``/metrics`` and the dashboard, each where the config says.

``[metrics] listen`` and ``[dashboard] listen`` may name the same address
(one listener serves both) or two. :meth:`HttpEndpoints.configure` is called
at start and at every reload: listeners whose address or features changed
are re-made, the others keep their connections; a change that cannot be made
(an address that cannot be bound) leaves every listener as it was.

Whoever can reach a listener is a stranger (docs/security.md item 20): a
listener holds at most :data:`MAX_CONNECTIONS` connections, at most
:data:`MAX_PER_SOURCE` from one source (an IPv4 address, an IPv6 /64), and
closes a connection that sends no complete request for :data:`IDLE_TIMEOUT`
seconds, so a slow or idle client cannot hold the daemon's file descriptors;
each source is answered at :data:`REQUEST_RATE` requests a second (after a
burst), so a scrape loop cannot take the event loop. ``/metrics`` answers only
to a ``Host`` that is an IP literal, ``localhost``, this host's name or one in
``[metrics] hosts`` (web/hosts.py: DNS rebinding), as the dashboard answers
only to the first two.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from weftnet.core.limits import address_key
from weftnet.errors import NetworkError
from weftnet.runtime.config import Config, parse_listen
from weftnet.runtime.metrics import CONTENT_TYPE, Exposition, NodeCollector
from weftnet.runtime.web.hosts import host_name, literal_or_localhost, own_names

__all__ = ["HttpEndpoints", "MAX_CONNECTIONS", "MAX_PER_SOURCE", "IDLE_TIMEOUT", "REQUEST_RATE", "REQUEST_BURST"]

log = logging.getLogger("weftnet.http")
Addr = tuple[str, int]

#: Connections one listener holds at once, and from one source (IPv4 address, IPv6 /64).
MAX_CONNECTIONS = 128
MAX_PER_SOURCE = 16
#: Seconds a connection may wait without a complete request (idle keep-alive, or a request
#: head still arriving) before it is closed; aiohttp's default is 75.
IDLE_TIMEOUT = 15.0
#: Requests per second one source gets answered at (with a burst): a faster client's requests
#: wait their turn (past MAX_WAIT of waiting: 429), so a scrape loop cannot take the event loop.
REQUEST_RATE = 20.0
REQUEST_BURST = 40.0
MAX_WAIT = 5.0
#: Sources whose buckets are remembered; beyond it, buckets that have refilled are forgotten.
MAX_SOURCES = 4096


class HttpEndpoints:
    """Owns the aiohttp runners; ``spawn`` starts a task in the daemon's TaskGroup."""

    def __init__(self, daemon: Any, handlers: dict[str, Callable[[dict], Awaitable[Any]]],
                 spawn: Callable[[Awaitable[Any]], asyncio.Task]):
        self.daemon = daemon
        self.handlers = handlers
        self.spawn = spawn
        self.collector = NodeCollector(daemon.core, daemon.driver, daemon=daemon)
        self.exposition = Exposition(self.collector)
        self.dashboard = None  # Dashboard while [dashboard] listen is set
        self._sites: dict[Addr, tuple[frozenset[str], web.AppRunner]] = {}
        self.pacer = _Pacer()  # shared by every listener: one source, one rate
        #: Names /metrics answers to besides IP literals and localhost (this host's, [metrics] hosts).
        self.metrics_names: frozenset[str] = frozenset()

    @staticmethod
    def wanted(cfg: Config) -> dict[Addr, frozenset[str]]:
        want: dict[Addr, set[str]] = {}
        if cfg.metrics_listen:
            want.setdefault(parse_listen(cfg.metrics_listen), set()).add("metrics")
        if cfg.dashboard_listen:
            want.setdefault(parse_listen(cfg.dashboard_listen), set()).add("dashboard")
        return {a: frozenset(f) for a, f in want.items()}

    async def configure(self, cfg: Config) -> list[str]:
        """Bring the listeners in line with ``cfg``; returns what changed, one line each.

        All or nothing: if an address cannot be bound, NetworkError is raised and
        the listeners that ran before run again, on their addresses, as before.
        """
        want = self.wanted(cfg)
        old = dict(self._sites)
        leaving = {a: f for a, (f, _r) in old.items() if want.get(a) != f}
        had_dashboard = self.dashboard is not None
        if any("dashboard" in f for f in want.values()) and self.dashboard is None:
            from weftnet.runtime.web.dashboard import Dashboard

            self.dashboard = Dashboard(self.daemon, self.handlers)
            self.dashboard.start(self.spawn)
        for addr in leaving:  # first, so an address can move between listeners (or to 0.0.0.0)
            await self._sites.pop(addr)[1].cleanup()
        started: list[Addr] = []
        try:
            for addr, feats in want.items():
                if addr not in self._sites:
                    self._sites[addr] = (feats, await self._start(addr, feats))
                    started.append(addr)
        except NetworkError as exc:
            for addr in started:
                await self._sites.pop(addr)[1].cleanup()
            lost = []
            for addr, feats in leaving.items():  # put back what ran before
                try:
                    self._sites[addr] = (feats, await self._start(addr, feats))
                except NetworkError as again:
                    lost.append(str(again))
            if not had_dashboard and self.dashboard is not None:
                await self.dashboard.stop()
                self.dashboard = None
            if not old:  # at start: nothing ran before
                raise
            raise NetworkError(f"{exc}; " + ("; ".join(lost) if lost else "the listeners run as before")) from None
        self.collector.peer_series = cfg.metrics_peer_series
        self.metrics_names = own_names() | frozenset(cfg.metrics_hosts)
        lines = [f"{'+'.join(sorted(feats))}: stopped listening on {_fmt(addr)}"
                 for addr, feats in leaving.items() if addr not in want]
        lines += [f"{'+'.join(sorted(self._sites[a][0]))}: listening on http://{_fmt(a)}/" for a in started]
        if not any("dashboard" in f for f, _ in self._sites.values()) and self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None
        return lines

    async def close(self) -> None:
        for _feats, runner in self._sites.values():
            await runner.cleanup()
        self._sites.clear()
        if self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None

    def urls(self) -> dict[str, str]:
        return {f: f"http://{_fmt(a)}/" for a, (feats, _) in self._sites.items() for f in feats}

    async def _start(self, addr: Addr, feats: frozenset[str]) -> web.AppRunner:
        app = web.Application(client_max_size=64 * 1024, middlewares=[self.pacer.middleware])
        if "metrics" in feats:
            app.router.add_get("/metrics", self._metrics)
        if "dashboard" in feats:
            assert self.dashboard is not None
            self.dashboard.add_routes(app, addr)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0,
                               keepalive_timeout=IDLE_TIMEOUT)
        await runner.setup()
        site = _BoundedSite(runner, addr[0], addr[1])
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise NetworkError(f"cannot listen on {_fmt(addr)}: {exc.strerror or exc}") from None
        log.info("http listening", extra={"url": f"http://{_fmt(addr)}/", "serves": ", ".join(sorted(feats))})
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        name = host_name(request.headers.get("Host", ""))
        if name and not (literal_or_localhost(name) or name in self.metrics_names):
            # A page whose name was pointed at this address (DNS rebinding) would read the node's
            # ID, its peers and their paths: refused, saying how a scraper's name is allowed.
            raise web.HTTPForbidden(text=f"/metrics answers to IP addresses, localhost and this host's name; "
                                         f"add {name[:64]!r} to [metrics] hosts to scrape it by that name\n")
        body = self.exposition()  # on the event loop: one consistent view of the cores
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


class _BoundedSite(web.BaseSite):
    """A TCP listener whose connections pass :class:`_Admission` before aiohttp sees them."""

    def __init__(self, runner: web.AppRunner, host: str, port: int):
        super().__init__(runner)
        self._host, self._port = host, port
        self.admission = _Admission(runner.server)

    @property
    def name(self) -> str:
        return f"http://{_fmt((self._host, self._port))}"

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self.admission, self._host, self._port, backlog=self._backlog, reuse_address=True)


class _Pacer:
    """A token bucket per source (:func:`_source`): REQUEST_RATE a second, REQUEST_BURST at once.

    A request without a token waits until its turn instead of being refused (a Prometheus
    server or a test polling fast is slowed, never failed); one that would wait more than
    MAX_WAIT is answered 429 at once. A source has at most MAX_PER_SOURCE connections and each
    sends its next request after an answer, so what one source can queue here is bounded.
    """

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, at)
        self.delayed = 0
        self.refused = 0

    def take(self, source: str, now: float) -> float:
        """Take a token (going into debt if need be); returns how long to wait for it, or -1 (refuse)."""
        tokens, at = self.buckets.get(source, (REQUEST_BURST, now))
        tokens = min(REQUEST_BURST, tokens + (now - at) * REQUEST_RATE) - 1.0
        wait = -tokens / REQUEST_RATE if tokens < 0 else 0.0
        if wait > MAX_WAIT:
            return -1.0
        if source not in self.buckets and len(self.buckets) >= MAX_SOURCES:
            for k in [k for k, (t, a) in self.buckets.items() if t + (now - a) * REQUEST_RATE >= REQUEST_BURST]:
                del self.buckets[k]  # full again: nothing to remember
            if len(self.buckets) >= MAX_SOURCES:
                return -1.0
        self.buckets[source] = (tokens, now)
        return wait

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        wait = self.take(_source((request.remote or "",)), asyncio.get_running_loop().time())
        if wait < 0:
            self.refused += 1
            raise web.HTTPTooManyRequests(text="too many requests from this address")
        if wait > 0:
            self.delayed += 1
            await asyncio.sleep(wait)
        return await handler(request)


def _source(peer: Any) -> str:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64 (the key the node's
    other per-address limits use, ``limits.address_key``); "?" for what is not an address."""
    try:
        host = peer[0].split("%", 1)[0]
        ipaddress.ip_address(host)
    except (TypeError, ValueError, IndexError, AttributeError):
        return "?"
    return address_key(host)


class _Admission:
    """The listener's protocol factory: counts open connections, in all and per source, and
    closes one over :data:`MAX_CONNECTIONS` or :data:`MAX_PER_SOURCE` before it is read."""

    def __init__(self, factory: Callable[[], asyncio.Protocol]):
        self.factory = factory
        self.open = 0
        self.by_source: dict[str, int] = {}
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        return _Gate(self)


class _Gate(asyncio.Protocol):
    """One connection: admitted (everything goes to aiohttp's protocol) or closed at once."""

    __slots__ = ("adm", "inner", "source")

    def __init__(self, adm: _Admission):
        self.adm = adm
        self.inner: asyncio.Protocol | None = None
        self.source = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        adm = self.adm
        source = _source(transport.get_extra_info("peername"))
        n = adm.by_source.get(source, 0)
        if adm.open >= MAX_CONNECTIONS or n >= MAX_PER_SOURCE:
            adm.refused += 1
            if adm.refused == 1 or adm.refused % 1000 == 0:  # a flood is a few lines, not one per connection
                log.warning("http connection refused", extra={"source": source, "refused": adm.refused,
                                                                "open": adm.open, "from_source": n})
            transport.abort()
            return
        adm.open += 1
        adm.by_source[source] = n + 1
        self.source = source
        self.inner = adm.factory()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return
        adm = self.adm
        adm.open -= 1
        n = adm.by_source.pop(self.source) - 1
        if n:
            adm.by_source[self.source] = n
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


def _fmt(addr: Addr) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"

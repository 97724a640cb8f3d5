"""HTTP listeners of the daemon: ``/metrics`` and the dashboard, each where the config says.

``[metrics] listen`` and ``[dashboard] listen`` may name the same address
(one listener serves both) or two. :meth:`HttpEndpoints.configure` is called
at start and at every reload: listeners whose address or features changed
are re-made, the others keep their connections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from weftnet.errors import NetworkError
from weftnet.runtime.config import Config, parse_listen
from weftnet.runtime.metrics import CONTENT_TYPE, Exposition, NodeCollector

__all__ = ["HttpEndpoints"]

log = logging.getLogger("weftnet.http")
Addr = tuple[str, int]


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

        Raises NetworkError if an address cannot be bound (the listeners that
        were running before stay up, or are restored).
        """
        self.collector.peer_series = cfg.metrics_peer_series
        want = self.wanted(cfg)
        lines: list[str] = []
        needs_dashboard = any("dashboard" in f for f in want.values())
        if needs_dashboard and self.dashboard is None:
            from weftnet.runtime.web.dashboard import Dashboard

            self.dashboard = Dashboard(self.daemon, self.handlers)
            self.dashboard.start(self.spawn)
        old = dict(self._sites)
        for addr, (feats, runner) in old.items():
            if want.get(addr) != feats:
                await runner.cleanup()
                del self._sites[addr]
                if addr not in want:
                    lines.append(f"{'+'.join(sorted(feats))}: stopped listening on {_fmt(addr)}")
        failed: list[str] = []
        for addr, feats in want.items():
            if addr in self._sites:
                continue
            try:
                self._sites[addr] = (feats, await self._start(addr, feats))
                lines.append(f"{'+'.join(sorted(feats))}: listening on http://{_fmt(addr)}/")
            except NetworkError as exc:
                failed.append(str(exc))
                if addr in old:  # put back what ran there before
                    try:
                        self._sites[addr] = (old[addr][0], await self._start(addr, old[addr][0]))
                    except NetworkError:
                        pass
        if not any("dashboard" in f for f, _ in self._sites.values()) and self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None
        if failed:
            raise NetworkError("; ".join(failed))
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
        app = web.Application(client_max_size=64 * 1024)
        if "metrics" in feats:
            app.router.add_get("/metrics", self._metrics)
        if "dashboard" in feats:
            assert self.dashboard is not None
            self.dashboard.add_routes(app, addr)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, addr[0], addr[1], reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise NetworkError(f"cannot listen on {_fmt(addr)}: {exc.strerror or exc}") from None
        log.info("http listening", extra={"url": f"http://{_fmt(addr)}/", "serves": ", ".join(sorted(feats))})
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.exposition()  # on the event loop: one consistent view of the cores
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def _fmt(addr: Addr) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"

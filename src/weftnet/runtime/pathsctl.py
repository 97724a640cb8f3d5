"""The daemon's side of paths: opening the extra links, and the control API's paths and route calls.

Control API (docs/operating.md):

* ``paths`` — the paths engine's status (core/paths/engine.py) with each link's
  socket counters: every measured path per peer, links, classes, routes, transit.
* ``route`` — ``action`` = ``set`` (``node``, ``via``: a list of node IDs),
  ``clear`` (``node``, or none for all) or ``list``. Routes set here last until
  the node stops; ``[[route]]`` in the config makes them permanent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.errors import ParseError
from weftnet.runtime.underlay import UnderlayLinks

__all__ = ["open_links", "handlers", "link_counters", "register_reload"]


async def open_links(daemon: Any) -> None:
    """Open a socket per extra link and tell the core its links (raises ConfigError)."""
    cfg = daemon.cfg
    drv = daemon.driver
    if not cfg.paths.links:
        return
    resolved = await asyncio.to_thread(UnderlayLinks.resolve, cfg.link_tables)
    underlay = UnderlayLinks(drv)
    specs = underlay.open(cfg.link_tables, cfg.paths.links, cfg.listen, cfg.port, resolved)
    drv.underlay = underlay
    drv.core.paths.set_links(specs, drv.clock())


def register_reload(daemon: Any) -> None:
    """``[paths]``, ``[[class]]`` and ``[[route]]`` apply on reload; ``[[link]]`` needs a restart
    (its ``link_tables`` are left to the reloader, which reports them so)."""

    async def hook(old, new) -> list[str]:
        return daemon.core.paths.reconfigure(new.paths, time.time())

    daemon.reloader.register("paths", ("paths",), hook)


def link_counters(daemon: Any) -> dict:
    drv = daemon.driver
    if drv.underlay is None:
        return {"main": {"tx_packets": drv.sent, "rx_packets": drv.received, "main": True}}
    return drv.underlay.status()


def _node(text: Any) -> NodeId:
    if not isinstance(text, str):
        raise ParseError("node IDs are strings")
    return NodeId.parse(text)


def handlers(daemon: Any) -> dict:
    async def paths(req):
        st = daemon.core.paths.status(time.time())
        counters = link_counters(daemon)
        for link in st["links"]:
            link.update(counters.get(link["name"], {}))
        return st

    async def route(req):
        core = daemon.core
        action = req.get("action", "list")
        now = time.time()
        if action == "set":
            via = req.get("via")
            if not isinstance(via, list) or not via:
                raise ParseError("via must be a list of node IDs")
            spec = core.paths.set_route(_node(req.get("node")), [_node(v) for v in via], now)
            daemon.driver.transmit()
            return {"node_id": spec.node.text(), "via": [h.text() for h in spec.via]}
        if action == "clear":
            node = req.get("node")
            n = core.paths.clear_route(None if node is None else _node(node), now)
            daemon.driver.transmit()
            return {"cleared": n}
        if action == "list":
            return core.paths.routes(now)
        raise ParseError(f"route action must be set, clear or list, not {action!r}")

    async def trace_path(req):
        from weftnet.core.identity import parse_node_ref

        ref = parse_node_ref(str(req.get("target")))
        core = daemon.core
        node = ref if isinstance(ref, NodeId) else next(
            (p.node_id for p in core.transport.peers() if p.node_id.address() == ref), None)
        return None if node is None else core.paths.trace(node, time.time())

    return {"paths": paths, "route": route, "trace_path": trace_path}

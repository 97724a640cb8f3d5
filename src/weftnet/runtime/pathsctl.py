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
from weftnet.errors import ConfigError, ParseError, WeftError
from weftnet.runtime.underlay import UnderlayLinks

__all__ = ["open_links", "relink", "handlers", "link_counters", "register_reload"]


async def open_links(daemon: Any, cfg: Any = None) -> None:
    """Open a socket per extra link and tell the core its links (raises ConfigError)."""
    cfg = cfg or daemon.cfg
    drv = daemon.driver
    if not cfg.paths.links:
        return
    resolved = await asyncio.to_thread(UnderlayLinks.resolve, cfg.link_tables)
    underlay = UnderlayLinks(drv)
    specs = underlay.open(cfg.link_tables, cfg.paths.links, cfg.listen, cfg.port, resolved)
    drv.underlay = underlay
    drv.core.paths.set_links(specs, drv.clock())


async def relink(daemon: Any, old: Any, new: Any) -> list[str]:
    """``[[link]]`` changed: close the old links' sockets and open the new ones, at once.

    Sessions stay; their paths over a link that went stop answering and the
    paths engine moves them (as for a cut link), and peers learn the new
    links' endpoints from the next advert. If a new link cannot be opened,
    the old ones are opened again and the error is reported (ConfigError)."""
    drv = daemon.driver
    before = drv.underlay
    if before is not None:
        before.close()  # the main socket, if a link had bound it to an interface, is unbound too
        drv.underlay = None
    drv.core.paths.set_links((), drv.clock())
    try:
        await open_links(daemon, new)
    except WeftError as exc:
        try:
            await open_links(daemon, old)
        except WeftError:
            pass
        raise ConfigError(f"{exc} (the links in force before are kept)") from None
    drv.transmit()
    names = [s.name for s in drv.core.paths.links]
    return [f"paths: links now {', '.join(names) if names else 'the main socket only'}"]


def register_reload(daemon: Any) -> None:
    """``[paths]``, ``[[class]]``, ``[[route]]`` and ``[[link]]`` apply on reload."""

    async def hook(old, new) -> list[str]:
        return daemon.core.paths.reconfigure(new.paths, time.time())

    async def links(old, new) -> list[str]:
        return await relink(daemon, old, new)

    daemon.reloader.register("paths", ("paths",), hook)
    daemon.reloader.register("links", ("link_tables",), links)


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

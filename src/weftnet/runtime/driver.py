"""The asyncio driver of one NodeCore over one UDP socket.

This is the whole runtime layer between the sans-IO core and the kernel, in
the shape of aioquic's asyncio protocol: ``datagram_received`` feeds the
core, ``transmit`` sends what the core wants and re-arms ONE timer at the
core's next deadline, and completed requests resolve futures keyed by the
core's op ids. The daemon runs one driver; the demo, the DHT benchmark and the
large end-to-end tests run many in one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable

from weftnet.core.contact import Addr
from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore, NodeEvent

__all__ = ["UdpDriver", "start_node"]

log = logging.getLogger("weftnet.driver")


class UdpDriver(asyncio.DatagramProtocol):
    """Drives a NodeCore from a UDP socket and an asyncio timer."""

    def __init__(self, core: NodeCore, clock: Callable[[], float] = time.time):
        self.core = core
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[int, asyncio.Future] = {}
        self.listeners: list[Callable[[NodeEvent], None]] = []
        #: Writes (network ID, IP packet) to that network's TUN; set by the daemon.
        self.tun_writer: Callable[[bytes, bytes], None] | None = None
        self.sent = 0
        self.received = 0
        self.send_errors = 0

    # -- asyncio protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("sockname")[:2]
        self.core.set_local_endpoint((host, port))
        self.transmit()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.core.receive_datagram(data, (addr[0], addr[1]), self.clock())
        self.transmit()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable) are routine on an overlay; the
        # transport's own timeouts handle dead peers.
        log.debug("udp error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()

    # -- the loop -------------------------------------------------------------
    def transmit(self) -> None:
        """Send what the core wants, hand out its events, re-arm one timer."""
        now = self.clock()
        if self.transport is not None and not self.transport.is_closing():
            for data, addr in self.core.datagrams_to_send(now):
                try:
                    self.transport.sendto(data, addr)
                    self.sent += 1
                except OSError as exc:  # e.g. an address family the socket lacks
                    self.send_errors += 1
                    log.debug("send to %s failed: %s", addr, exc)
        tun_out = self.core.vpn.tun_out
        if tun_out:
            if self.tun_writer is not None:
                for network_id, packet in tun_out:
                    self.tun_writer(network_id, packet)
            tun_out.clear()
        while (ev := self.core.next_event()) is not None:
            op_id = getattr(ev, "op_id", None)
            fut = self._waiters.pop(op_id, None) if op_id is not None else None
            if fut is not None and not fut.done():
                fut.set_result(ev)
            for listener in self.listeners:
                listener(ev)
        deadline = self.core.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(max(0.0, deadline - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.clock())
        self.transmit()

    async def request(self, start: Callable[[NodeCore, float], int], timeout: float | None = None) -> NodeEvent:
        """Start a core request (``start(core, now) -> op_id``) and await its completion event."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        op_id = start(self.core, self.clock())
        self._waiters[op_id] = fut
        self.transmit()
        # The core gives every request a deadline, so this wait always ends;
        # the extra margin only guards against a core bug.
        margin = (timeout or self.core.config.request_timeout) + 5.0
        return await asyncio.wait_for(fut, margin)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def start_node(
    identity: Identity | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    config: NodeConfig | None = None,
    store: Any = None,
    rng: Any = None,
) -> UdpDriver:
    """Bind a UDP socket and start driving a new NodeCore on it."""
    rng = rng or random.SystemRandom()
    identity = identity or Identity.generate(rng)
    core = NodeCore(identity, rng, time.time(), config, store)
    loop = asyncio.get_running_loop()
    _, driver = await loop.create_datagram_endpoint(lambda: UdpDriver(core), local_addr=(host, port))
    return driver

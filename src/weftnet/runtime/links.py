"""TCP links to relays, for networks that block UDP (docs/reach.md, "TCP links").

To the core a TCP connection is one more kind of address
(:class:`~weftnet.core.reach.paths.StreamLink`): datagrams come from it and
go to it, and nothing else changes — handshakes, sessions and relaying run
over it exactly as over UDP. This module is the runtime half:

* a **listener** (a relay's ``[relay] tcp_port``, e.g. 443) and **outgoing
  connections** (a ``tcp://HOST:PORT`` peer);
* **framing**: the client opens with the 5-byte preamble ``b"weft\\x01"``;
  then, both ways, every datagram is ``length:u16 (big-endian) | bytes``;
* **back-pressure**: a link whose write buffer holds more than
  :data:`WRITE_LIMIT` bytes drops what the core sends it (counted), as a
  congested UDP path would;
* a closed connection is reported to the core (``NodeCore.link_down``), which
  ends the sessions that used it.

The payload is the same authenticated, encrypted session traffic as over UDP;
the link adds no TLS (a middlebox that insists on TLS on port 443 would stop
it: noted in docs/reach.md).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from weftnet.core.counters import Counters
from weftnet.core.reach.paths import StreamLink

__all__ = ["StreamLinks", "PREAMBLE", "WRITE_LIMIT"]

log = logging.getLogger("weftnet.links")

PREAMBLE = b"weft\x01"
#: Bytes queued on one link before further datagrams to it are dropped.
WRITE_LIMIT = 4 << 20
#: A connection that has not sent its preamble within this long is closed.
PREAMBLE_TIMEOUT = 10.0
MAX_LINKS = 1024


class _Link(asyncio.Protocol):
    def __init__(self, owner: "StreamLinks", outgoing: bool):
        self.owner = owner
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None
        self.link: StreamLink | None = None
        self.buf = bytearray()
        self.greeted = outgoing
        self.closed = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        if len(self.owner.links) >= MAX_LINKS:
            transport.close()
            return
        self.link = self.owner._register(self, peer[0], peer[1])
        if self.outgoing:
            transport.write(PREAMBLE)  # type: ignore[attr-defined]
        else:
            self._timer = asyncio.get_running_loop().call_later(PREAMBLE_TIMEOUT, self._no_preamble)

    def _no_preamble(self) -> None:
        if not self.greeted and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.link is None:
            return
        buf = self.buf
        buf += data
        if not self.greeted:
            if len(buf) < len(PREAMBLE):
                return
            if bytes(buf[:len(PREAMBLE)]) != PREAMBLE:
                self.owner.stats["bad_preamble"] += 1
                self.transport.close()
                return
            del buf[:len(PREAMBLE)]
            self.greeted = True
            if self._timer is not None:
                self._timer.cancel()
        frames = []
        off = 0
        while len(buf) - off >= 2:
            n = (buf[off] << 8) | buf[off + 1]
            if len(buf) - off - 2 < n:
                break
            frames.append(bytes(buf[off + 2:off + 2 + n]))
            off += 2 + n
        if off:
            del buf[:off]
        if frames:
            self.owner._received(self.link, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.link is not None:
            self.owner._lost(self.link)
        if not self.closed.done():
            self.closed.set_result(None)


class StreamLinks:
    """The TCP links of one node, owned by its UdpDriver (``driver.links``)."""

    def __init__(self, driver: Any):
        self.driver = driver
        self.links: dict[StreamLink, _Link] = {}
        self._next = 1
        self._servers: list[asyncio.base_events.Server] = []
        self.stats = Counters(("accepted", "connected", "closed", "frames_in", "frames_out",
                               "dropped_full", "dropped_closed", "bad_preamble"))

    def _register(self, proto: _Link, host: str, port: int) -> StreamLink:
        link = StreamLink(host, port, self._next)
        self._next += 1
        self.links[link] = proto
        self.stats["connected" if proto.outgoing else "accepted"] += 1
        return link

    def _received(self, link: StreamLink, frames: list[bytes]) -> None:
        self.stats["frames_in"] += len(frames)
        d = self.driver
        d.received += len(frames)
        d.core.receive_datagrams([(f, link) for f in frames], d.clock())
        d.transmit()

    def _lost(self, link: StreamLink) -> None:
        if self.links.pop(link, None) is None:
            return
        self.stats["closed"] += 1
        d = self.driver
        if not d._closed:
            d.core.link_down(link, d.clock())
            d.transmit()

    def send(self, link: StreamLink, data: bytes) -> None:
        proto = self.links.get(link)
        if proto is None or proto.transport is None or proto.transport.is_closing():
            self.stats["dropped_closed"] += 1
            return
        t = proto.transport
        if t.get_write_buffer_size() > WRITE_LIMIT:
            self.stats["dropped_full"] += 1
            return
        t.write(struct.pack("!H", len(data)) + data)
        self.stats["frames_out"] += 1

    async def listen(self, host: str, port: int):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Link(self, False), host, port)
        self._servers.append(server)
        return server

    async def connect(self, host: str, port: int, timeout: float = 10.0) -> tuple[StreamLink, asyncio.Future]:
        """Open a link; returns it and a future that completes when it closes."""
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(loop.create_connection(lambda: _Link(self, True), host, port), timeout)
        assert proto.link is not None
        return proto.link, proto.closed

    def close(self) -> None:
        for server in self._servers:
            server.close()
        for proto in list(self.links.values()):
            if proto.transport is not None:
                proto.transport.close()
        self.links.clear()

"""BGP messages other than UPDATE (RFC 4271 section 4), and the framer that cuts a TCP stream into messages.

Every message: a 16-octet all-ones marker, a 2-octet length (19-4096), a type.
:class:`MessageFramer` checks the header as RFC 4271 6.1 says (wrong marker:
Connection Not Synchronized; bad length: Bad Message Length with the length as
data; unknown type: Bad Message Type with the type as data) and holds at most
one incomplete message. OPEN (4.2), NOTIFICATION (4.5), KEEPALIVE (4.4) and
ROUTE-REFRESH (RFC 2918 section 3, with RFC 7313's subtype octet) are here;
UPDATE is in ``update.py``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from weftnet.core.bgp import errors as E
from weftnet.core.bgp.capability import Capability, FourOctetAs, decode_capabilities, encode_capabilities
from weftnet.core.bgp.errors import Notify
from weftnet.core.bgp.family import Family

__all__ = ["MessageFramer", "Open", "Keepalive", "Notification", "RouteRefresh", "frame", "MARKER", "HEADER_LEN",
           "MAX_LEN", "OPEN", "UPDATE", "NOTIFICATION", "KEEPALIVE", "ROUTE_REFRESH"]

MARKER = b"\xff" * 16
HEADER_LEN, MAX_LEN = 19, 4096
OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = 1, 2, 3, 4, 5
_MIN_LEN = {OPEN: 29, UPDATE: 23, NOTIFICATION: 21, KEEPALIVE: 19, ROUTE_REFRESH: 23}
_EXACT = {KEEPALIVE, ROUTE_REFRESH}
AS_TRANS = 23456


def frame(msg_type: int, body: bytes) -> bytes:
    n = HEADER_LEN + len(body)
    if n > MAX_LEN:
        raise ValueError(f"BGP message of {n} octets exceeds {MAX_LEN}")
    return MARKER + struct.pack("!HB", n, msg_type) + body


class MessageFramer:
    """Cuts a byte stream into (type, body) pairs; raises Notify on a bad header."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER_LEN:
            if buf[pos:pos + 16] != MARKER:
                raise Notify(E.HEADER, E.CONN_NOT_SYNC, reason="marker is not all ones")
            n, t = struct.unpack_from("!HB", buf, pos + 16)
            if t not in _MIN_LEN:
                raise Notify(E.HEADER, E.BAD_TYPE, bytes([t]), reason=f"message type {t}")
            if n < _MIN_LEN[t] or n > MAX_LEN or (t in _EXACT and n != _MIN_LEN[t]):
                raise Notify(E.HEADER, E.BAD_LENGTH, struct.pack("!H", n), reason=f"length {n} for type {t}")
            if len(buf) - pos < n:
                break
            out.append((t, bytes(buf[pos + HEADER_LEN:pos + n])))
            pos += n
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass(frozen=True, slots=True)
class Open:
    asn: int  # the real AS; a 4-octet AS goes in the capability with AS_TRANS in the fixed field
    hold_time: int
    router_id: ipaddress.IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = 4
    my_as_field: int | None = None  # set when decoded: the fixed 2-octet field as received

    def encode(self) -> bytes:
        caps = encode_capabilities(self.capabilities)
        params = b""
        if caps:  # one Capabilities parameter (type 2) per up to 255 octets
            for i in range(0, len(caps), 255):
                chunk = caps[i:i + 255]
                params += bytes([2, len(chunk)]) + chunk
        my_as = self.asn if self.asn <= 0xFFFF else AS_TRANS
        body = struct.pack("!BHH4sB", self.version, my_as, self.hold_time, self.router_id.packed, len(params)) + params
        return frame(OPEN, body)

    @classmethod
    def decode(cls, body: bytes) -> "Open":
        version, my_as, hold, bgp_id, plen = struct.unpack_from("!BHH4sB", body)
        if version != 4:
            raise Notify(E.OPEN, E.UNSUPPORTED_VERSION, b"\x00\x04", reason=f"version {version}")
        if 10 + plen != len(body):
            raise Notify(E.HEADER, E.BAD_LENGTH, struct.pack("!H", HEADER_LEN + len(body)),
                         reason="optional parameters length does not match the message")
        if hold in (1, 2):
            raise Notify(E.OPEN, E.UNACCEPTABLE_HOLD, reason=f"hold time {hold}")
        rid = ipaddress.IPv4Address(bgp_id)
        if int(rid) == 0 or rid.is_multicast:
            raise Notify(E.OPEN, E.BAD_BGP_ID, bgp_id, reason=f"BGP identifier {rid}")
        caps: list[Capability] = []
        pos = 10
        while pos < len(body):
            if pos + 2 > len(body):
                raise Notify(E.OPEN, 0, reason="optional parameter header truncated")
            ptype, n = body[pos], body[pos + 1]
            value = body[pos + 2:pos + 2 + n]
            if len(value) != n:
                raise Notify(E.OPEN, 0, reason="optional parameter overruns the message")
            pos += 2 + n
            if ptype != 2:
                raise Notify(E.OPEN, E.UNSUPPORTED_OPT_PARAM, reason=f"optional parameter type {ptype}")
            try:
                caps += decode_capabilities(value)
            except ValueError as exc:
                raise Notify(E.OPEN, 0, reason=f"malformed capability: {exc}") from None
        asn = my_as
        for c in caps:
            if isinstance(c, FourOctetAs):
                asn = c.asn
        if asn == 0:
            raise Notify(E.OPEN, E.BAD_PEER_AS, struct.pack("!H", my_as), reason="AS 0")
        return cls(asn, hold, rid, tuple(caps), version, my_as)

    def capability(self, kind: type):
        return [c for c in self.capabilities if isinstance(c, kind)]


@dataclass(frozen=True, slots=True)
class Keepalive:
    def encode(self) -> bytes:
        return frame(KEEPALIVE, b"")


@dataclass(frozen=True, slots=True)
class Notification:
    code: int
    subcode: int
    data: bytes = b""

    def encode(self) -> bytes:
        return frame(NOTIFICATION, bytes([self.code, self.subcode]) + self.data[:MAX_LEN - 21])

    @classmethod
    def decode(cls, body: bytes) -> "Notification":
        return cls(body[0], body[1], bytes(body[2:]))

    def __str__(self) -> str:
        return E.error_text(self.code, self.subcode) + (f" ({self.data.hex()})" if self.data else "")


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    family: Family
    subtype: int = 0  # RFC 7313: 0 normal request, 1 BoRR, 2 EoRR

    def encode(self) -> bytes:
        return frame(ROUTE_REFRESH, struct.pack("!HBB", self.family.afi, self.subtype, self.family.safi))

    @classmethod
    def decode(cls, body: bytes) -> "RouteRefresh":
        afi, sub, safi = struct.unpack("!HBB", body)
        return cls(Family(afi, safi), sub)


KEEPALIVE_BYTES = Keepalive().encode()

"""Secure sessions between nodes: Noise IK handshakes, transport, anti-replay, reassembly (docs/handshake.md).

* ``handshake`` — the Noise IK chain, mac1/mac2 and cookies, sans state.
* ``packets`` — the transport's wire messages (Init, Response, CookieReply, Hello, Ping, Pong).
* ``transport`` — :class:`SecureTransport`: every handshake and session of one node.
* ``replay`` — the sliding anti-replay window (RFC 6479).
* ``reassembly`` — bounded reassembly of fragmented payloads (also used by the VPN).
"""

"""BGP/MPLS IP VPNs (RFC 4364): this node as a provider edge (docs/l3vpn.md).

* ``ids`` — route distinguishers and route targets (their 8 wire octets, text forms).
* ``policy`` — import/export route targets and maps (hub-and-spoke, extranet).
* ``labels`` — the PE's label pool.
* ``fib`` — a longest-prefix-match table.
* ``vrf`` — one VRF: local and imported routes, selection, forwarding entries.
* ``messages`` — MplsPacket / MplsChunk: RFC 7510 framing inside weftnet sessions.
* ``plane`` — :class:`L3vpnPlane`: every VRF, VPN route import/export, the data plane.
"""

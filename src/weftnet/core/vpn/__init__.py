"""Private virtual networks (docs/vpn.md).

* ``netcert`` — network descriptors, member certificates, revocation lists, directory records.
* ``firewall`` — the default-deny firewall with connection tracking.
* ``network`` — :class:`VpnNetwork`: one network's data plane (TUN packets in, session payloads out).
* ``plane`` — :class:`VpnPlane`: every joined network wired to the node's sessions and DHT.
"""

"""Reaching every node: paths, forwarding through relays, NAT traversal, endpoint records (docs/reach.md).

* ``paths`` — :class:`Via`, :class:`StreamLink`, per-peer :class:`PathSet` and the replaceable :class:`PathPolicy`.
* ``messages`` — the wire messages: ``Forward`` header, probes, call-me-maybe, relay control, endpoint records.
* ``relay`` — :class:`RelayService`: registrations, admission and limits of a relay.
* ``nat`` — :class:`NatObserver`: reflexive reports, NAT classification, reachability.
* ``engine`` — :class:`Reach`: probing, records, resolution, relay registration, hole punching, keepalives.
"""

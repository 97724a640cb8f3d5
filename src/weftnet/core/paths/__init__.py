"""The overlay chooses the path: measured paths, explicit routes, detours, SD-WAN steering (docs/paths.md).

* ``messages`` — the wire messages: ``PathProbe``/``PathProbeReply`` (measurement), ``PathAdvert`` (links, transit).
* ``meter`` — :class:`PathMeter`: RTT, jitter, loss and BFD-like liveness of one path.
* ``classes`` — :class:`Classifier`: the traffic class of a data-plane payload.
* ``transit`` — :class:`Transit`: which Forwards this node passes on between its peers.
* ``config`` — :class:`PathsConfig`, links, classes, routes, and their validation.
* ``engine`` — :class:`Paths`: tracking, probing, detours (RON), explicit routes, class steering,
  and :class:`MeasuringPolicy`, the transport's path policy.
"""

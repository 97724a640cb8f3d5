"""A BGP-4 speaker, sans-IO (docs/bgp.md; wire elements by RFC in docs/wire/bgp.md).

Layers, bottom up:

* codec: ``message.py`` (framing, OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH),
  ``capability.py``, ``attributes.py`` and ``extcommunity.py`` (one class per
  element), ``nlri/`` (one module per family), ``update.py`` (UPDATE and the
  RFC 7606 decisions), ``errors.py`` (codes and :class:`Notify`);
* ``fsm.py``: RFC 4271 section 8 as a transition table;
* ``session.py``: one peer's session (FSM, timers as deadlines, negotiation);
* ``rib.py``: Loc-RIB and the decision process; ``speaker.py``: peers,
  Adj-RIB-In/Out, export rules, route reflection, graceful restart, policy hooks;
* ``policy.py``: route-target import/export filters for VPN-style families;
* ``evpn.py``: EVPN instances (RFC 7432 / 8365) over a dataplane-driver interface.

Nothing here does I/O: the asyncio driver is ``weftnet.runtime.bgp``.
"""

from weftnet.core.bgp.attributes import Attributes
from weftnet.core.bgp.errors import Notify
from weftnet.core.bgp.family import (
    FAMILY_BY_NAME, IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6, Family, parse_family,
)
from weftnet.core.bgp.fsm import Event, State
from weftnet.core.bgp.rib import Path, PeerInfo
from weftnet.core.bgp.session import Close, Connect, PeerConfig, Send
from weftnet.core.bgp.speaker import PeerDown, PeerUp, Speaker, SpeakerConfig

__all__ = ["Speaker", "SpeakerConfig", "PeerConfig", "Connect", "Send", "Close", "PeerUp", "PeerDown", "Path",
           "PeerInfo", "Attributes", "Notify", "Family", "parse_family", "FAMILY_BY_NAME", "IPV4_UNICAST",
           "IPV6_UNICAST", "L2VPN_EVPN", "VPNV4", "VPNV6", "State", "Event"]

"""The MTU of a private network's TUN follows what path MTU discovery found towards its members.

The core (core/session/pmtu.py) finds, per peer, the largest datagram that
arrives, and the transport uses it at once. This module does the part that
needs netlink: a layer-3 network whose config gives no ``mtu`` starts at
1,280 and then gets the largest MTU every member with a measured path can
take in one datagram (``datagram - VPN_INNER_OVERHEAD``, clamped to
1,280-9,000), set on its TUN through pyroute2 in a worker thread. A member
whose path is not measured yet, or is smaller, still gets every packet: the
transport cuts a payload larger than a peer's datagrams into fragments.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from weftnet.core.identity import NodeId

__all__ = ["TunMtuFollower", "VPN_INNER_OVERHEAD", "tun_mtu_for"]

log = logging.getLogger("weftnet.pmtu")

#: Datagram bytes around an inner packet: transport header 14 + VpnPacket header 34 + AEAD tag 16.
VPN_INNER_OVERHEAD = 14 + 34 + 16
MIN_TUN_MTU, MAX_TUN_MTU = 1280, 9000


def tun_mtu_for(datagrams: list[int]) -> int:
    """The TUN MTU for members whose paths carry these datagram sizes (1,280 when none is known)."""
    if not datagrams:
        return MIN_TUN_MTU
    return max(MIN_TUN_MTU, min(MAX_TUN_MTU, min(datagrams) - VPN_INNER_OVERHEAD))


class TunMtuFollower:
    """Sets the MTU of auto-MTU networks' TUNs from the core's path MTU results (module docstring)."""

    def __init__(self, core: Any, tuns: dict[bytes, Any], spawn: Callable[[Any], Any]):
        self.core = core
        self.tuns = tuns  # network ID -> TunDevice (the daemon's table)
        self.spawn = spawn  # runs a coroutine as a task the daemon owns
        self.auto: set[bytes] = set()  # network IDs whose MTU follows the paths
        self.changes = 0

    def add(self, network_id: bytes) -> None:
        self.auto.add(network_id)

    def discard(self, network_id: bytes) -> None:
        self.auto.discard(network_id)

    def on_path_mtu(self, node_id: NodeId) -> None:
        """A path MTU result for ``node_id``: re-derive the MTU of each auto network it is a member of."""
        for network_id in sorted(self.auto):
            net = self.core.vpn.switch.networks.get(network_id)
            tun = self.tuns.get(network_id)
            if net is None or tun is None or node_id.raw not in net._members:
                continue
            sizes = [s for s in (self.core.pmtu.size_for(NodeId(m)) for m in sorted(net._members)) if s is not None]
            mtu = tun_mtu_for(sizes)
            if mtu != net.mtu:
                log.info("tunnel MTU follows the paths", extra={"network": net.descriptor.name, "tun": tun.name,
                                                                "mtu": mtu, "was": net.mtu, "members_measured": len(sizes)})
                net.mtu = mtu
                self.changes += 1
                self.spawn(self._set(tun, mtu))

    async def _set(self, tun: Any, mtu: int) -> None:
        from weftnet.errors import NetworkError
        from weftnet.runtime.tun import configure_tun

        try:
            await asyncio.to_thread(configure_tun, tun.name, mtu=mtu, up=False, netns=tun.netns)
        except NetworkError as exc:
            log.warning("cannot set the tunnel MTU", extra={"tun": tun.name, "mtu": mtu, "error": str(exc)})

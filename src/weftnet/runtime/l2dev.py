"""The kernel side of a layer-2 network: a Linux bridge, a TAP device, and optionally a VXLAN VTEP.

Each member of a layer-2 network (docs/l2.md) gets, in its network
namespace (or the one ``[networks.NAME] netns`` names):

* a **bridge** (``wb-NAME`` unless configured), with the member's MAC
  (derived from the network and node IDs, ``ethernet.member_mac``) and its
  certified addresses, so the host itself is on the segment; multicast
  snooping is off, so multicast (IPv6 neighbour discovery included) is simply
  flooded like broadcast; VMs and containers attach to it;
* a **TAP** device (``wt-NAME``), a port of that bridge, opened with
  ``IFF_VNET_HDR`` and segmentation offload: the daemon reads the frames the
  bridge sends towards the WAN from it and writes the frames members send;
* optionally a **VXLAN** device (RFC 7348, ``wx-NAME``), another port of the
  same bridge, that makes this node a VTEP on a trusted fabric: plain VXLAN
  with the fabric's Linux and hardware VTEPs on UDP 4789, flooding to the
  configured remote VTEPs (``remotes``, head-end replication) or a multicast
  group. The kernel does the encapsulation: that is the fast path. A frame
  from the fabric reaches the TAP through the bridge (and so the WAN), a frame
  from the WAN reaches the fabric the same way back.

The bridge and the VXLAN device stay when the daemon stops (attached VMs keep
their port) and are reused when it starts again; the TAP goes with the daemon.
Everything is done over rtnetlink with pyroute2, never by running ``ip`` or
``bridge``; errors are :class:`~weftnet.errors.NetworkError` with one line.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from weftnet.errors import ConfigError, NetworkError
from weftnet.runtime.tun import TunDevice, _check_name, _iproute, _netlink_error, open_tun, set_offload

__all__ = ["VxlanConfig", "parse_vxlan", "L2Ports", "open_l2_ports", "fdb_entries"]

VXLAN_PORT = 4789
_ADDR_GEN_NONE = {"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", 1]]}]]}


@dataclass
class VxlanConfig:
    """``[networks.NAME.vxlan]``: this member as a VTEP on a trusted fabric (docs/l2.md, "VXLAN")."""

    vni: int
    local: str
    dev: str = ""
    port: int = VXLAN_PORT
    remotes: list[str] = field(default_factory=list)
    group: str = ""
    device: str = ""
    learning: bool = True

    def device_name(self, network: str) -> str:
        return self.device or ("wx-" + network)[:15]


_VXLAN_KEYS = {"vni": int, "local": str, "dev": str, "port": int, "remotes": list, "group": str, "device": str,
               "learning": bool}


def parse_vxlan(table: Any, where: str) -> VxlanConfig:
    """Validate a ``vxlan`` table; ConfigError naming ``where`` and the key otherwise."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} vxlan must be a table")
    for key, value in table.items():
        typ = _VXLAN_KEYS.get(key)
        if typ is None:
            raise ConfigError(f"{where} vxlan: unknown key {key} (known: {', '.join(_VXLAN_KEYS)})")
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(f"{where} vxlan: {key} must be {typ.__name__}, not {value!r}")
    for key in ("vni", "local"):
        if key not in table:
            raise ConfigError(f"{where} vxlan: {key} is required")
    vc = VxlanConfig(**table)
    if not 1 <= vc.vni <= 0xFFFFFF:
        raise ConfigError(f"{where} vxlan: vni must be from 1 to 16777215, not {vc.vni}")
    if not 1 <= vc.port <= 65535:
        raise ConfigError(f"{where} vxlan: port must be from 1 to 65535, not {vc.port}")
    try:
        local = ipaddress.ip_address(vc.local)
        remotes = [ipaddress.ip_address(r) for r in vc.remotes]
        group = ipaddress.ip_address(vc.group) if vc.group else None
    except ValueError as exc:
        raise ConfigError(f"{where} vxlan: {exc}") from None
    if any(r.version != local.version for r in remotes) or (group is not None and group.version != local.version):
        raise ConfigError(f"{where} vxlan: local, remotes and group must all be IPv{local.version}")
    if group is not None and (not group.is_multicast or remotes):
        raise ConfigError(f"{where} vxlan: group must be a multicast address, and excludes remotes")
    if group is not None and not vc.dev:
        raise ConfigError(f"{where} vxlan: a multicast group needs dev (the fabric interface)")
    for name in (vc.dev, vc.device):
        if name:
            try:
                _check_name(name)
            except NetworkError as exc:
                raise ConfigError(f"{where} vxlan: {exc}") from None
    return vc


@dataclass
class L2Ports:
    """What :func:`open_l2_ports` set up: the open TAP and the names of the bridge and VXLAN device."""

    tap: TunDevice
    bridge: str
    vxlan: str | None
    created: list[str]


def _lookup(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def open_l2_ports(
    network: str,
    *,
    tap: str,
    bridge: str,
    mac: str,
    addresses: list[str],
    mtu: int,
    netns: str | None = None,
    offload: bool = True,
    txqueuelen: int = 1000,
    vxlan: VxlanConfig | None = None,
) -> L2Ports:
    """Create (or reuse) the bridge and VXLAN device, open the TAP, and wire them together.

    Blocking (netlink): the daemon runs it in a worker thread. On failure the
    TAP is closed and devices this call created are deleted again.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    for name in (tap, bridge):
        _check_name(name)
    dev = open_tun(tap, netns=netns, vnet_hdr=True, tap=True)
    created: list[str] = []
    vx_name = vxlan.device_name(network) if vxlan is not None else None
    try:
        if offload:
            set_offload(dev)
        with _iproute(netns) as ipr:
            step = f"creating bridge {bridge!r}"
            try:
                br = _lookup(ipr, bridge)
                if br is None:
                    ipr.link("add", ifname=bridge, kind="bridge", br_mcast_snooping=0)
                    created.append(bridge)
                    br = _lookup(ipr, bridge)
                step = f"configuring bridge {bridge!r}"
                ipr.link("set", index=br, address=mac, mtu=mtu)
                step = f"configuring TAP {dev.name!r}"
                ti = _lookup(ipr, dev.name)
                ipr.link("set", index=ti, IFLA_AF_SPEC=_ADDR_GEN_NONE)  # a port has no addresses of its own
                ipr.link("set", index=ti, mtu=mtu, txqlen=txqueuelen, master=br, state="up")
                if vxlan is not None:
                    step = f"creating VXLAN device {vx_name!r} (VNI {vxlan.vni})"
                    vi = _lookup(ipr, vx_name)
                    if vi is None:
                        kw: dict[str, Any] = {"vxlan_id": vxlan.vni, "vxlan_port": vxlan.port,
                                              "vxlan_learning": 1 if vxlan.learning else 0}
                        local = ipaddress.ip_address(vxlan.local)
                        kw["vxlan_local" if local.version == 4 else "vxlan_local6"] = vxlan.local
                        if vxlan.group:
                            kw["vxlan_group" if local.version == 4 else "vxlan_group6"] = vxlan.group
                        if vxlan.dev:
                            link = _lookup(ipr, vxlan.dev)
                            if link is None:
                                raise NetworkError(f"vxlan dev {vxlan.dev!r} does not exist")
                            kw["vxlan_link"] = link
                        ipr.link("add", ifname=vx_name, kind="vxlan", **kw)
                        created.append(vx_name)
                        vi = _lookup(ipr, vx_name)
                    step = f"configuring VXLAN device {vx_name!r}"
                    ipr.link("set", index=vi, IFLA_AF_SPEC=_ADDR_GEN_NONE)
                    try:
                        ipr.link("set", index=vi, mtu=mtu)
                    except NetlinkError as exc:
                        if exc.code != errno.EINVAL:
                            raise
                        raise NetworkError(f"MTU {mtu} is more than VXLAN device {vx_name!r} can carry over its "
                                           "fabric interface: lower [networks.NAME] mtu (1450 on a 1500-byte "
                                           "fabric)") from None
                    ipr.link("set", index=vi, master=br, state="up")
                    have = {x.get_attr("NDA_DST") for x in ipr.fdb("dump", ifindex=vi)
                            if x.get_attr("NDA_LLADDR") == "00:00:00:00:00:00"}
                    for remote in vxlan.remotes:
                        if remote not in have:  # the flood list: head-end replication on the fabric
                            ipr.fdb("append", ifindex=vi, lladdr="00:00:00:00:00:00", dst=remote)
                step = f"configuring bridge {bridge!r}"
                have_addrs = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=br)}
                for a in addresses:
                    iface = ipaddress.ip_interface(a)
                    if (str(iface.ip), iface.network.prefixlen) not in have_addrs:
                        ipr.addr("add", index=br, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                                 family=2 if iface.version == 4 else 10)
                ipr.link("set", index=br, state="up")
            except NetlinkError as exc:
                raise _netlink_error(step, exc) from None
    except BaseException:
        dev.close()
        if created:
            _delete(created, netns)
        raise
    return L2Ports(dev, bridge, vx_name, created)


def _delete(names: list[str], netns: str | None) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with _iproute(netns) as ipr:
            for name in reversed(names):
                idx = _lookup(ipr, name)
                if idx is not None:
                    try:
                        ipr.link("del", index=idx)
                    except NetlinkError:
                        pass
    except NetworkError:
        pass


def fdb_entries(device: str, *, netns: str | None = None) -> list[dict]:
    """The bridge forwarding entries of ``device`` (a bridge port): MAC, VXLAN remote, flags."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute(netns) as ipr:
        try:
            idx = _lookup(ipr, device)
            if idx is None:
                raise NetworkError(f"no interface named {device!r}")
            return [{"mac": x.get_attr("NDA_LLADDR"), "dst": x.get_attr("NDA_DST")}
                    for x in ipr.fdb("dump", ifindex=idx)]
        except NetlinkError as exc:
            raise _netlink_error(f"reading the forwarding entries of {device!r}", exc) from None


async def start_l2_network(m, nc, now: float):
    """The daemon's bring-up of one layer-2 network: ``(L2Network, TAP device, status info)``.

    ``m`` is the network's :class:`~weftnet.runtime.netstate.Membership`, ``nc``
    its :class:`~weftnet.runtime.config.NetworkConfig`.
    """
    import asyncio
    import logging

    from weftnet.core.vpn.ethernet import mac_text
    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.l2network import L2Network
    from weftnet.core.vpn.netcert import CertificateError

    name = m.descriptor.name
    mtu = nc.effective_mtu(2)
    try:
        net = L2Network(m.descriptor, m.certificate, now, revocations=m.revocations, mtu=mtu,
                        firewall=Firewall.from_config(nc.effective_firewall), mac_age=nc.mac_age,
                        mac_quota=nc.mac_quota, flood_rate=nc.flood_rate)
    except CertificateError as exc:
        raise NetworkError(f"network {name!r}: {exc}; ask the owner for a new certificate (weft net join)") from None
    netns = nc.netns or None
    addrs = []
    for a in m.certificate.addresses:
        prefix = next(p for p in m.descriptor.prefixes if p.version == a.version and a in p)
        addrs.append(f"{a}/{prefix.prefixlen}")
    try:
        ports = await asyncio.to_thread(
            open_l2_ports, name, tap=nc.tap_name, bridge=nc.bridge_name, mac=mac_text(net.own_mac), addresses=addrs,
            mtu=mtu, netns=netns, offload=nc.offload, txqueuelen=nc.txqueuelen, vxlan=nc.vxlan)
    except NetworkError as exc:
        raise NetworkError(f"network {name!r}: {exc}") from None
    vx = nc.vxlan
    logging.getLogger("weftnet.daemon").info(
        "layer-2 network up", extra={
            "network": name, "bridge": ports.bridge, "tap": ports.tap.name, "mac": mac_text(net.own_mac),
            "addresses": ", ".join(addrs), "netns": netns or "-", "mtu": mtu, "offload": nc.offload,
            "vxlan": f"{ports.vxlan} vni {vx.vni} local {vx.local}" if vx is not None else "-",
            "new_devices": ", ".join(ports.created) or "-", "directory_records": len(m.directory)})
    info = {"tun": ports.tap.name, "tap": ports.tap.name, "bridge": ports.bridge, "netns": netns,
            "vxlan": {"device": ports.vxlan, "vni": vx.vni, "local": vx.local, "remotes": vx.remotes}
            if vx is not None else None}
    return net, ports.tap, info

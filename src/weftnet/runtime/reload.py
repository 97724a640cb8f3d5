"""Config reload (SIGHUP, ``weft reload``): apply what changed, keep what did not.

The new file is read and validated completely first; a file with any error
is refused with that error and the running config stays in force. Then each
change goes to the part of the node that owns it:

======================  =====================================================
log level/format        re-applied at once
peers                   new peers are joined (sessions to old ones stay)
dht max_records         the new quota applies to the next store
metrics, dashboard      their listeners are re-made (others keep running); all
                        or nothing: an address that cannot be bound leaves them all
overlay firewall        weft0's new rules at once (flows they refuse are cut)
networks                per network, from the config *and* the state
                        directory: joined since (``weft net join``) → TUN up;
                        left (``weft net leave``) → TUN down; firewall rules
                        changed → new rules, same TUN; TUN settings or a
                        renewed certificate → that network restarted (if it
                        cannot start so, it is started again as it ran)
anything else           reported as needing a restart; the running value
                        is kept (listen address, port, DHT shape, socket)
======================  =====================================================

Overlay sessions are never touched: they belong to the node, not to any of
these settings. Subsystems added later (links, relays, BGP peers) register
a hook for their config fields with :meth:`Reloader.register`; a field no
hook claims is reported as needing a restart, never silently ignored.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Awaitable, Callable

from weftnet.errors import ConfigError, WeftError
from weftnet.runtime.config import _SCHEMA, Config

if TYPE_CHECKING:
    from weftnet.runtime.daemon import Daemon

__all__ = ["Reloader", "ReloadReport", "ReloadHook"]

log = logging.getLogger("weftnet.reload")

#: ``hook(old, new) -> lines`` applies the change of its fields (or raises WeftError).
ReloadHook = Callable[[Config, Config], Awaitable[list[str]]]


@dataclass
class ReloadReport:
    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"applied": self.applied, "restart_needed": self.restart_needed, "failed": self.failed}


def _config_key(attr: str) -> str:
    for section, keys in _SCHEMA.items():
        for key, (a, _t) in keys.items():
            if a == attr:
                return f"[{section}] {key}"
    return attr


class Reloader:
    def __init__(self, daemon: "Daemon", loader: Callable[[], Config] | None):
        self.daemon = daemon
        self.loader = loader
        self._lock = asyncio.Lock()
        self._hooks: list[tuple[str, tuple[str, ...], ReloadHook]] = [
            ("log", ("log_level", "log_format"), self._log),
            ("peers", ("peers",), self._peers),
            ("dht", ("max_records",), self._max_records),
            ("http", ("metrics_listen", "metrics_peer_series", "metrics_hosts", "dashboard_listen"), self._http),
        ]

    def register(self, name: str, config_fields: tuple[str, ...], hook: ReloadHook) -> None:
        """Let a subsystem apply changes of its own config fields on reload."""
        self._hooks.append((name, tuple(config_fields), hook))

    async def reload(self) -> ReloadReport:
        async with self._lock:
            if self.loader is None:
                raise ConfigError("this node was started without a config file to re-read")
            try:
                new = self.loader()
            except WeftError as exc:
                log.warning("reload refused", extra={"error": str(exc)})
                raise ConfigError(f"{exc} (nothing changed: the node keeps its running config)") from None
            old = self.daemon.cfg
            running = copy.copy(old)
            report = ReloadReport()
            changed = {f.name for f in fields(Config) if getattr(old, f.name) != getattr(new, f.name)}
            handled = {"networks", "source"}  # source: where the config came from, not a setting
            for name, flds, hook in self._hooks:
                touched = changed & set(flds)
                handled |= set(flds)
                if not touched:
                    continue
                try:
                    report.applied += await hook(old, new)
                    for f in flds:
                        setattr(running, f, getattr(new, f))
                except WeftError as exc:
                    report.failed.append(f"{name}: {exc}")
                except Exception as exc:  # noqa: BLE001 - a hook's bug: reported, the other hooks still run
                    log.exception("reload hook failed", extra={"hook": name})
                    report.failed.append(f"{name}: {_one_line(exc)}")
            # Networks are compared with the state directory too (joined or left since).
            running.networks = await self._networks(old, new, report)
            if hasattr(old, "overlay"):
                handled.add("overlay")
                running.overlay = self._overlay(old, new, report)
            for f in sorted(changed - handled):
                report.restart_needed.append(f"{_config_key(f)} (running with {getattr(old, f)!r})")
            self.daemon.cfg = running
            log.info("config reloaded", extra={"applied": len(report.applied), "failed": len(report.failed),
                                               "restart_needed": len(report.restart_needed)})
            for line in report.applied:
                log.info("reload: " + line)
            for line in report.failed:
                log.warning("reload failed: " + line)
            return report

    # -- built-in hooks -------------------------------------------------------
    async def _log(self, old: Config, new: Config) -> list[str]:
        from weftnet.runtime.logs import setup_logging

        setup_logging(new.log_level, new.log_format)
        return [f"log: level {new.log_level}, format {new.log_format}"]

    async def _peers(self, old: Config, new: Config) -> list[str]:
        added = [p for p in new.peers if p not in old.peers]
        for p in added:
            self.daemon.spawn(self.daemon._join_tcp(p) if getattr(p, "tcp", False) else self.daemon._join(p))
        out = [f"peers: joining {p}" for p in added]
        removed = [p for p in old.peers if p not in new.peers]
        if removed:
            out.append(f"peers: {len(removed)} removed from the list (their sessions stay while in use)")
        return out

    async def _max_records(self, old: Config, new: Config) -> list[str]:
        self.daemon.core.dht.config.max_records = new.max_records
        return [f"dht: max_records {old.max_records} -> {new.max_records}"]

    async def _http(self, old: Config, new: Config) -> list[str]:
        lines = await self.daemon.http.configure(new)
        if old.metrics_peer_series != new.metrics_peer_series:
            lines.append(f"metrics: per-peer series for at most {new.metrics_peer_series} peers")
        if old.metrics_hosts != new.metrics_hosts:
            lines.append(f"metrics: answers to {', '.join(new.metrics_hosts) or 'no names'} besides "
                         f"IP addresses, localhost and this host's name")
        return lines

    def _overlay(self, old: Config, new: Config, report: ReloadReport):
        """``[overlay]``: new firewall rules apply at once; the interface's other settings need a restart."""
        from dataclasses import replace

        o, n = old.overlay, new.overlay
        if o == n:
            return o
        others = [f.name for f in fields(o) if f.name != "firewall" and getattr(o, f.name) != getattr(n, f.name)]
        for name in others:
            report.restart_needed.append(f"[overlay] {name} (running with {getattr(o, name)!r})")
        if o.firewall == n.firewall:
            return o
        iface = getattr(self.daemon, "overlay", None)
        data = self.daemon.core.overlay.data if iface is not None else None
        if data is None:
            report.applied.append("overlay: new firewall rules (the interface is not up: they apply when it is)")
            return replace(o, firewall=n.firewall)
        try:
            iface.cfg = replace(iface.cfg, firewall=n.firewall)
            fresh = iface.firewall()
        except WeftError as exc:
            report.failed.append(f"overlay: {exc}")
            return o
        closed = data.firewall.replace_rules(fresh.inbound, fresh.outbound)
        report.applied.append(f"overlay: new firewall rules ({len(fresh.inbound)} inbound, {len(fresh.outbound)} "
                              f"outbound), {closed} flow(s) they no longer allow closed")
        return replace(o, firewall=n.firewall)

    async def _networks(self, old: Config, new: Config, report: ReloadReport) -> dict:
        """Networks: start, stop, re-firewall or restart each as needed; returns the configs in force."""
        from weftnet.core.vpn.firewall import Firewall
        from weftnet.runtime.config import NetworkConfig
        from weftnet.runtime.netstate import list_networks

        d = self.daemon
        in_force = dict(old.networks)
        try:
            joined = {m.descriptor.network_id: m for m in list_networks(d.paths.root) if m.certificate is not None}
        except WeftError as exc:
            report.failed.append(f"networks: {exc}")
            return in_force
        running = {vnet.network_id: vnet for vnet in d.core.vpn.networks()}
        for nid, vnet in sorted(running.items()):
            name = vnet.descriptor.name
            m = joined.get(nid)
            if m is None:
                d._stop_network(nid)
                in_force.pop(name, None)
                report.applied.append(f"network {name}: left, its TUN is gone")
                continue
            onc = old.networks.get(name) or NetworkConfig(name)
            nnc = new.networks.get(name) or NetworkConfig(name)
            renewed = (m.certificate.serial, m.certificate.not_after) != (vnet.own_cert.serial, vnet.own_cert.not_after)
            layer = vnet.descriptor.layer

            def val(c: NetworkConfig, k: str, layer: int = layer):
                return c.effective_mtu(layer) if k == "mtu" else getattr(c, k)  # unset: the layer's default

            settings = [k for k in ("tun", "mtu", "netns", "offload", "txqueuelen", "bridge", "tap", "mac_age",
                                    "mac_quota", "flood_rate", "vxlan") if val(onc, k) != val(nnc, k)]
            try:
                if settings or renewed:
                    d._stop_network(nid)
                    why = ", ".join(f"{k} {val(onc, k)!r} -> {val(nnc, k)!r}" for k in settings)
                    try:
                        await d._start_network(m, nnc)
                    except Exception as exc:  # noqa: BLE001 - netlink and the TUN raise more than WeftError
                        report.failed.append(f"network {name}: {why or 'renewed certificate'}: {_one_line(exc)}; "
                                             + await self._restore_network(m, onc))
                        continue
                    report.applied.append(f"network {name}: restarted ({why or 'renewed certificate'})")
                elif onc.effective_firewall != nnc.effective_firewall:
                    fresh = Firewall.from_config(nnc.effective_firewall, f"[networks.{name}] firewall")
                    if (onc.effective_firewall.get("conntrack") != nnc.effective_firewall.get("conntrack")
                            or not hasattr(vnet.firewall, "replace_rules")):
                        vnet.firewall, closed = fresh, len(vnet.firewall)  # new table sizes: a new table
                    else:  # the tracked flows the new rules still allow live on
                        members = vnet._members
                        closed = vnet.firewall.replace_rules(
                            fresh.inbound, fresh.outbound,
                            lambda peer: members[peer].groups if peer in members else frozenset())
                    report.applied.append(f"network {name}: new firewall rules ({len(fresh.inbound)} inbound, "
                                          f"{len(fresh.outbound)} outbound), same TUN; {closed} flow(s) closed")
                in_force[name] = nnc
            except WeftError as exc:
                report.failed.append(f"network {name}: {exc}")
        for nid, m in sorted(joined.items()):
            if nid in running:
                continue
            name = m.descriptor.name
            nnc = new.networks.get(name) or NetworkConfig(name)
            try:
                await d._start_network(m, nnc)
                in_force[name] = nnc
                report.applied.append(f"network {name}: joined, up on {nnc.tun_name}")
            except Exception as exc:  # noqa: BLE001 - as above: one line in the report, the reload goes on
                report.failed.append(f"network {name}: {_one_line(exc)}")
        for name in sorted(set(new.networks) - {m.descriptor.name for m in joined.values()}):
            in_force[name] = new.networks[name]  # configured ahead of joining: applies when it is joined
        return in_force

    async def _restore_network(self, m, onc) -> str:
        """After a restart that failed: start the network again as it ran (its old settings)."""
        try:
            await self.daemon._start_network(m, onc)
        except Exception as exc:  # noqa: BLE001
            log.error("network down after a failed reload", extra={"network": m.descriptor.name,
                                                                   "error": _one_line(exc)})
            return f"restarting it as it ran failed too ({_one_line(exc)}): it is down"
        return "it runs as before"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, WeftError) else f"{type(exc).__name__}: {text}"

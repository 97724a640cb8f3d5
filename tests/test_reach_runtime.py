"""The runtime side of reach on loopback: TCP links, the second port, [reach]/[relay] config, the CLI view."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from weftnet.core.node import NodeConfig
from weftnet.core.reach.engine import ReachConfig
from weftnet.core.reach.paths import StreamLink
from weftnet.core.reach.relay import RelayConfig
from weftnet.errors import ConfigError, ParseError
from weftnet.runtime.config import config_from_dict, parse_peer
from weftnet.runtime.daemon import local_addresses, node_config
from weftnet.runtime.driver import open_udp_socket, start_node
from weftnet.runtime.links import PREAMBLE


def cfg(relay: bool = False) -> NodeConfig:
    return NodeConfig(reach=ReachConfig(enabled=True), relay=RelayConfig(enabled=relay))


async def until(pred, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_a_tcp_link_carries_a_session_and_its_loss_ends_it():
    async def main():
        r = await start_node(config=cfg(relay=True))
        c = await start_node(config=cfg())
        try:
            server = await r.links.listen("127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            link, closed = await c.links.connect("127.0.0.1", port)
            assert isinstance(link, StreamLink)
            ev = await c.request(lambda core, t: core.connect(link, t))
            assert ev.ok and ev.node_id == r.core.node_id
            ping = await c.request(lambda core, t: core.ping(r.core.node_id, t))
            assert ping.ok
            assert c.core.peers(0.0)[0]["path"] == "tcp"
            assert r.core.peers(0.0)[0]["path"] == "tcp"
            assert r.links.stats["frames_in"] >= 2 and c.links.stats["frames_in"] >= 2
            # The relay drops the link: the client's session over it ends at once.
            for proto in list(r.links.links.values()):
                proto.transport.close()
            await asyncio.wait_for(closed, 5)
            await until(lambda: not c.core.transport.has_session(r.core.node_id))
        finally:
            c.close()
            r.close()

    asyncio.run(main())


def test_a_tcp_listener_closes_connections_without_the_preamble():
    async def main():
        r = await start_node(config=cfg(relay=True))
        try:
            server = await r.links.listen("127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
            assert r.links.stats["bad_preamble"] == 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(PREAMBLE + b"\x00\x05\x01\x99abc")  # a well-framed datagram that is no message
            await writer.drain()
            await until(lambda: r.core.transport.stats["malformed_dropped"] >= 1)
            writer.close()
        finally:
            r.close()

    asyncio.run(main())


def test_dial_back_from_the_second_port_tells_a_node_it_is_reachable():
    async def main():
        a = await start_node(config=cfg())
        b = await start_node(config=cfg())
        try:
            for d in (a, b):
                d.core.set_local_endpoints([d.core.endpoint], d.clock())
            b.alt_sock = open_udp_socket("127.0.0.1", 0)
            b.core.reach.alt_port = True
            ev = await a.request(lambda core, t: core.connect(b.core.endpoint, t))
            assert ev.ok
            await until(lambda: a.core.reach.nat.reachable is True, 15)
            assert a.core.reach.stats["reach_tests_received"] == 1
            assert b.core.reach.stats["dialback_served"] == 1
            assert a.core.reach.nat.status(a.clock())["nat"] == "public"
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def test_reach_and_relay_config_sections():
    c = config_from_dict({"reach": {"keepalive": 15, "relays": 3, "punch": False},
                          "relay": {"enabled": True, "tcp_port": 443, "peer_rate": 50000},
                          "node": {"peers": ["tcp://wn1fbvef3cfm6mjfsjuo7pblwxs4u3v3hlldseqo5knm4nymbfx6a25yx63ty@r.example:443"]}})
    nc = node_config(c)
    assert nc.reach.keepalive == 15.0 and nc.reach.relays == 3 and nc.reach.punch is False and nc.reach.enabled
    assert nc.relay.enabled and nc.relay.peer_rate == 50000 and c.relay_tcp_port == 443
    assert c.peers[0].tcp and c.peers[0].port == 443 and str(c.peers[0]).startswith("tcp://wn1")
    for data, words in [({"reach": {"keepalive": 0}}, "[reach] keepalive must be from 1 to 3600"),
                        ({"reach": {"enabled": "yes"}}, "[reach] enabled must be true or false"),
                        ({"relay": {"max_sessions": 0}}, "[relay] max_sessions must be from 1"),
                        ({"relay": {"port": 1}}, "unknown key [relay] port")]:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            config_from_dict(data, "c.toml")
    with pytest.raises(ParseError, match="tcp://"):
        parse_peer("udp://h:1")


def test_local_addresses_lists_global_interface_addresses_only():
    assert local_addresses("192.0.2.7", set()) == ["192.0.2.7"]
    found = local_addresses("0.0.0.0", set())
    assert "127.0.0.1" not in found
    for a in found:
        socket.inet_aton(a)  # IPv4 only, for an IPv4 socket


def test_reload_applies_keepalive_and_relay_limits_and_names_what_needs_a_restart(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    weft = [sys.executable, "-m", "weftnet.cli.main", "--state-dir", str(tmp_path)]
    subprocess.run([*weft, "init"], check=True, capture_output=True)
    conf = tmp_path / "config.toml"
    text = conf.read_text().replace("[relay]\nenabled = false", "[relay]\nenabled = true")
    conf.write_text(text)
    proc = subprocess.Popen([*weft, "up", "--listen", "127.0.0.1", "--port", "0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while not (tmp_path / "control.sock").exists():
            assert time.monotonic() < end and proc.poll() is None, "the daemon did not come up"
            time.sleep(0.1)
        conf.write_text(text.replace("keepalive = 25 ", "keepalive = 15 ")
                        .replace("peer_rate = 5000000 ", "peer_rate = 123456 ")
                        .replace("tcp_port = 0 ", "tcp_port = 4443 "))
        out = subprocess.run([*weft, "reload"], capture_output=True, text=True, timeout=30).stdout
        assert "reach: keepalive 15 s, punch on" in out
        assert "relay: at most 64 registered, 123456 B/s a peer" in out
        assert "[relay] tcp_port (running with 0)" in out
        r = subprocess.run([*weft, "status", "--json"], capture_output=True, text=True, timeout=30)
        st = json.loads(r.stdout)["reach"]
        assert st["keepalive"] == 15.0 and st["relay"]["limits"]["peer_rate"] == 123456
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)

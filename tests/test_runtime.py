"""Runtime pieces: peer specs, config validation, the control socket, the SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest

from weftnet.core.dht.records import ImmutableRecord
from weftnet.core.dht.store import StoredRecord
from weftnet.errors import ConfigError, ControlError, ParseError
from weftnet.runtime.config import config_from_dict, parse_peer
from weftnet.runtime.control import MAX_REQUEST, ControlServer, call
from weftnet.runtime.daemon import node_config
from weftnet.runtime.paths import StatePaths, resolve_state_dir
from weftnet.runtime.store import SqliteStore


def test_parse_peer_forms():
    assert (parse_peer("127.0.0.1:4500").host, parse_peer("127.0.0.1:4500").port) == ("127.0.0.1", 4500)
    p = parse_peer("[2001:db8::1]:9")
    assert (p.host, p.port) == ("2001:db8::1", 9)
    nid = "wn1fbvef3cfm6mjfsjuo7pblwxs4u3v3hlldseqo5knm4nymbfx6a25yx63ty"
    assert parse_peer(f"{nid}@host.example:1").node_id.text() == nid
    for bad, words in [("host", "HOST:PORT"), ("h:0", "1 to 65535"), ("h:x", "1 to 65535"),
                       ("wn1bad@h:1", "characters"), ("[::1:5", "[IPV6]:PORT")]:
        with pytest.raises(ParseError, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_peer(bad)


def test_config_validation_messages():
    cfg = config_from_dict({"node": {"port": 0, "peers": ["127.0.0.1:1"]}, "dht": {"k": 8, "cold_parallel": 3}})
    assert cfg.port == 0 and cfg.k == 8 and cfg.peers[0].port == 1
    assert node_config(cfg).dht.cold_parallel == 3
    cfg = config_from_dict({"dht": {"prs_bits": -1, "rtt_hints": False}})
    assert node_config(cfg).dht.prs_bits == -1 and node_config(cfg).dht.rtt_hints is False
    assert node_config(config_from_dict({})).dht.lookup_alpha == 4
    assert node_config(config_from_dict({"dht": {"lookup_alpha": 0}})).dht.lookup_alpha == 0
    cases = [
        ({"node": {"port": 70000}}, "[node] port must be from 0 to 65535"),
        ({"node": {"listen": "nowhere"}}, "must be an IP address"),
        ({"node": {"peers": [5]}}, "peers must be strings"),
        ({"node": {"peers": ["nope"]}}, "HOST:PORT"),
        ({"log": {"format": "xml"}}, "text or json"),
        ({"dht": {"alpha": True}}, "must be an integer"),
        ({"dht": {"cold_parallel": 0}}, "[dht] cold_parallel must be from 1 to 16"),
        ({"dht": {"prs_bits": 40}}, "[dht] prs_bits must be from -1 to 32"),
        ({"dht": {"lookup_alpha": 17}}, "[dht] lookup_alpha must be from 0 to 16"),
        ({"dht": {"rtt_hints": 1}}, "[dht] rtt_hints must be"),
        ({"dht": {"kk": 1}}, "unknown key [dht] kk"),
    ]
    for data, words in cases:
        with pytest.raises(ConfigError) as exc:
            config_from_dict(data, "c.toml")
        assert words in str(exc.value) and "c.toml" in str(exc.value)


def test_state_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("WEFTNET_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir() == tmp_path / "xdg" / "weftnet"
    monkeypatch.setenv("WEFTNET_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir() == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "flag") == tmp_path / "flag"
    deep = StatePaths(tmp_path / ("d" * 120))
    assert len(str(deep.control_socket)) < 108 and str(deep.control_socket).startswith("/tmp/weftnet-")


def test_control_socket_survives_bad_requests(tmp_path):
    path = tmp_path / "c.sock"

    async def echo(req):
        return {"you_said": req.get("x")}

    async def boom(req):
        raise RuntimeError("handler bug")

    async def scenario():
        server = ControlServer(path, {"echo": echo, "boom": boom})
        await server.start()
        assert os.stat(path).st_mode & 0o777 == 0o600
        loop = asyncio.get_running_loop()

        def raw(data: bytes) -> dict:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            s.sendall(data)
            out = b""
            while not out.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            s.close()
            return json.loads(out) if out else {}

        try:
            assert (await loop.run_in_executor(None, lambda: call(path, "echo", x=1))) == {"you_said": 1}
            r = await loop.run_in_executor(None, raw, b"not json\n")
            assert r == {"ok": False, "error": "request is not JSON"}
            r = await loop.run_in_executor(None, raw, b'{"op": "nope"}\n')
            assert "unknown op" in r["error"]
            r = await loop.run_in_executor(None, raw, b'["op"]\n')
            assert '"op" string' in r["error"]
            r = await loop.run_in_executor(None, raw, b"x" * (MAX_REQUEST + 10) + b"\n")
            assert "larger than" in r["error"]
            with pytest.raises(ControlError, match="internal error: RuntimeError: handler bug"):
                await loop.run_in_executor(None, lambda: call(path, "boom"))
            # Still serving after all that.
            assert (await loop.run_in_executor(None, lambda: call(path, "echo", x=2))) == {"you_said": 2}
            # A second server on the same socket is refused while the first lives.
            with pytest.raises(ControlError, match="already running"):
                await ControlServer(path, {}).start()
        finally:
            await server.close()
        assert not path.exists()

    asyncio.run(scenario())


def test_call_without_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(ControlError, match="no weftnet daemon is running"):
        call(tmp_path / "none.sock", "status")


def test_sqlite_store_round_trip_and_schema_guard(tmp_path):
    db = tmp_path / "node.db"
    s = SqliteStore(db)
    rec = ImmutableRecord(b"v")
    s.put(StoredRecord(rec.key, rec.encode(), 123.0, True, None, 1.0))
    assert s.get(rec.key).blob == rec.encode() and len(s) == 1
    s.delete(rec.key)
    assert s.get(rec.key) is None
    s.db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    s.close()
    with pytest.raises(ConfigError, match="schema 99"):
        SqliteStore(db)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable weftnet database"):
        SqliteStore(tmp_path / "junk.db")

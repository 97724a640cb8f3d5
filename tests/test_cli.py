"""The `weft` CLI without a daemon: init, id, argument errors, one-line failures."""

import os
import stat

import pytest
from click.testing import CliRunner

from weftnet.cli.main import cli


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def go(*args, env=None):
        return runner.invoke(cli, ["--state-dir", str(tmp_path / "state"), *args], env=env)

    return go


def test_init_creates_private_key_and_config(run, tmp_path):
    r = run("init")
    assert r.exit_code == 0, r.output
    key = tmp_path / "state" / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert (tmp_path / "state" / "config.toml").exists()
    assert "node ID:" in r.output and "wn1" in r.output and "fd77:6566:" in r.output


def test_init_never_overwrites_without_force(run, tmp_path):
    assert run("init").exit_code == 0
    before = (tmp_path / "state" / "identity.key").read_bytes()
    r = run("init")
    assert r.exit_code == 1
    assert "already holds an identity" in r.output and "--force" in r.output
    assert (tmp_path / "state" / "identity.key").read_bytes() == before
    assert run("init", "--force").exit_code == 0
    assert (tmp_path / "state" / "identity.key").read_bytes() != before


def test_id_matches_init(run):
    out = run("init").output
    r = run("id", "--json")
    assert r.exit_code == 0
    import json

    info = json.loads(r.output)
    assert info["node_id"] in out and info["address"] in out


def test_state_dir_from_environment(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["init"], env={"WEFTNET_STATE_DIR": str(tmp_path / "envstate")})
    assert r.exit_code == 0, r.output
    assert (tmp_path / "envstate" / "identity.key").exists()


def test_group_readable_key_is_refused(run, tmp_path):
    run("init")
    os.chmod(tmp_path / "state" / "identity.key", 0o640)
    r = run("id")
    assert r.exit_code == 1
    assert "readable by other users" in r.output and "chmod 600" in r.output


def test_no_identity_says_how_to_make_one(run):
    r = run("id")
    assert r.exit_code == 1 and "run 'weft init' first" in r.output


def test_commands_without_daemon_fail_in_one_line(run):
    run("init")
    for args in (["status"], ["peers"], ["ping", "fd77:6566::1", "-c", "1"]):
        r = run(*args)
        assert r.exit_code == 1
        assert r.output.count("\n") == 1, r.output
        assert "no weftnet daemon is running" in r.output and "weft up" in r.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["ping", "wn1abc"], "expected 61"),
        (["ping", "10.0.0.1"], "should start with 'wn1'"),
        (["ping", "fd00::1"], "not an overlay address"),
        (["trace", "nonsense"], "should start with 'wn1'"),
        (["get", "xyz"], "64 hex digits"),
        (["up", "--port", "99999"], "99999"),
        (["ping", "-c", "0", "fd77:6566::1"], "0"),
    ],
)
def test_bad_arguments_are_explained(run, args, words):
    run("init")
    r = run(*args)
    assert r.exit_code in (1, 2)
    assert words in r.output
    assert "Traceback" not in r.output


def test_broken_config_is_one_clear_line(run, tmp_path):
    run("init")
    (tmp_path / "state" / "config.toml").write_text("[dht]\nk = 'twenty'\n")
    r = run("status")
    assert r.exit_code == 1
    assert "[dht] k must be an integer" in r.output
    (tmp_path / "state" / "config.toml").write_text("[dataplane]\nworkers = 17\n")
    assert "[dataplane] workers must be from 1 to 16, not 17" in run("status").output
    (tmp_path / "state" / "config.toml").write_text("[nodee]\nport = 1\n")
    r = run("status")
    assert "unknown section [nodee]" in r.output
    (tmp_path / "state" / "config.toml").write_text("[node\n")
    assert "not valid TOML" in run("status").output


HOSTILE = "hello\x1b]0;owned\x07\x1b[2J\u202etxt.exe"


def _get_with(monkeypatch, value: str, tty: bool):
    import weftnet.cli.main as m

    monkeypatch.setattr(m, "_call", lambda ctx, op, **kw: {"ok": True, "value": value.encode().hex()})
    monkeypatch.setattr(m, "_stdout_is_terminal", lambda: tty)
    return CliRunner(mix_stderr=False).invoke(cli, ["get", "ab" * 32])


def test_get_never_lets_a_stored_value_drive_the_terminal(monkeypatch):
    """Anyone may store a record; printed to a terminal, its escape sequences (retitle, clear the
    screen, reverse the text direction) come out written as escapes, with a note on stderr."""
    r = _get_with(monkeypatch, HOSTILE, tty=True)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout
    assert "hello\\x1b]0;owned\\x07\\x1b[2J\\u202etxt.exe" in r.stdout
    assert "control characters" in r.stderr


def test_get_piped_gives_the_stored_bytes_and_plain_text_is_untouched(monkeypatch):
    assert _get_with(monkeypatch, HOSTILE, tty=False).stdout == HOSTILE + "\n"
    r = _get_with(monkeypatch, "C:\\dir plain é 日本", tty=True)
    assert r.stdout == "C:\\dir plain é 日本\n" and not r.stderr

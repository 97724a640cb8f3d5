"""`weft allow` / `deny` / `rules` without a daemon, and the `[overlay]` config section."""

import json
import stat

import pytest
from click.testing import CliRunner

from weftnet.cli.main import cli
from weftnet.core.identity import Identity
from weftnet.errors import ConfigError
from weftnet.runtime.config import config_from_dict
from weftnet.runtime.overlay import load_saved_rules, make_rule, overlay_firewall_config

NODE = Identity.from_seed(bytes([3]) * 32)


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def go(*args):
        return runner.invoke(cli, ["--state-dir", str(tmp_path / "state"), *args])

    assert go("init").exit_code == 0
    return go


def test_allow_saves_a_rule_rules_shows_it_and_deny_takes_it_back(run, tmp_path):
    r = run("allow", "tcp", "22")
    assert r.exit_code == 0, r.output
    assert "tcp     port 22" in r.output and "[weft allow]" in r.output and "icmpv6" in r.output
    assert "[default]" in r.output
    r = run("allow", "udp", "5000-5010", "--from", str(NODE.address))
    assert r.exit_code == 0, r.output
    path = tmp_path / "state" / "overlay-rules.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = load_saved_rules(tmp_path / "state")
    assert saved == [{"proto": "tcp", "port": 22, "host": "any"},
                     {"proto": "udp", "port": "5000-5010", "cidr": f"{NODE.address}/128"}]
    assert run("allow", "tcp", "22").exit_code == 0 and len(load_saved_rules(tmp_path / "state")) == 2
    rules = json.loads(run("rules", "--json").output)
    assert rules["config"] == [{"proto": "icmpv6", "port": "any", "host": "any"}] and len(rules["saved"]) == 2
    assert rules["default"] is True
    assert run("deny", "tcp", "22").exit_code == 0
    assert load_saved_rules(tmp_path / "state") == saved[1:]


def test_bad_rules_are_one_line_errors(run):
    for args, text in ((["deny", "tcp", "23"], "no saved rule"),
                       (["deny", "icmpv6"], "the default rules"),
                       (["allow", "tcp", "99999"], "outside 1-65535"),
                       (["allow", "tcp", "22", "--from", "wn1nope"], "node ID"),
                       (["allow", "tcp", "22", "--from", "10.0.0.0/8"], "IPv6 only"),
                       (["allow", "tcp", "22", "--from", "fd77::1/200"], "--from")):
        r = run(*args)
        assert r.exit_code == 1 and r.output.startswith("weft: error:") and text in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1
    r = run("allow", "icmpv6", "22")
    assert r.exit_code == 2 and "has no ports" in r.output
    r = run("allow", "sctp")
    assert r.exit_code == 2


def test_a_node_id_rule_names_the_node_and_reaches_the_firewall_table():
    rule = make_rule("tcp", "179", NODE.node_id.text())
    assert rule == {"proto": "tcp", "port": 179, "host": NODE.node_id.text()}
    cfg = config_from_dict({"overlay": {"firewall": {"inbound": [{"proto": "tcp", "port": 22, "host": "any"}]}}})
    table = overlay_firewall_config(cfg.overlay, [rule])
    assert [r["port"] for r in table["inbound"]] == [22, 179]
    assert table["outbound"] == [{"proto": "any", "port": "any", "host": "any"}]  # the default outbound


def test_the_overlay_section_is_validated():
    oc = config_from_dict({"overlay": {"enable": False, "interface": "ov0", "mtu": 1400,
                                       "discovery": {"interfaces": ["eth0"], "port": 4600, "interval": 2}}}).overlay
    assert (oc.enable, oc.interface, oc.mtu, oc.discovery_interfaces, oc.discovery_port, oc.discovery_interval) == \
        (False, "ov0", 1400, ["eth0"], 4600, 2.0)
    for bad, text in (({"colour": 1}, "unknown key [overlay] colour"),
                      ({"mtu": 576}, "1280"),
                      ({"interface": "a/b"}, "not a valid interface name"),
                      ({"enable": "yes"}, "true or false"),
                      ({"discovery": {"interfaces": "eth0"}}, "list of interface names"),
                      ({"discovery": {"ports": 1}}, "discovery.ports"),
                      ({"discovery": {"interval": 0}}, "interval"),
                      ({"firewall": {"inbound": [{"proto": "tcp", "port": 22, "group": "web"}]}}, "no groups"),
                      ({"firewall": {"inbound": [{"proto": "tcp", "port": 22, "cidr": "10.0.0.0/8"}]}}, "IPv6 only"),
                      ({"firewall": {"conntrack": {"max_flows_per_peer": 0}}}, "max_flows_per_peer")):
        with pytest.raises(ConfigError) as exc:
            config_from_dict({"overlay": bad}, "config.toml")
        assert text in str(exc.value) and str(exc.value).startswith("config.toml:"), (bad, exc.value)

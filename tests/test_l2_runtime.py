"""Layer-2 networks outside the data plane: `weft net` for them, the config keys, joining files,
and (as root) the bridge/TAP/VXLAN devices made through netlink."""

import json
import os
import random
import shutil
import subprocess

import click
import pytest
from click.testing import CliRunner

from weftnet.cli.net import net
from weftnet.core.identity import Identity
from weftnet.core.vpn.netcert import dearmor
from weftnet.errors import ConfigError, NetworkError
from weftnet.runtime.config import config_from_dict
from weftnet.runtime.keystore import write_identity
from weftnet.runtime.netstate import join_network, load_membership


@click.group()
@click.option("--state-dir")
@click.pass_context
def root(ctx, state_dir):
    ctx.ensure_object(dict)
    ctx.obj["state_dir"] = state_dir


root.add_command(net)


def make_node(path, seed):
    ident = Identity.from_seed(random.Random(seed).randbytes(32))
    write_identity(path / "identity.key", ident)
    return ident


def run(state, *args):
    return CliRunner().invoke(root, ["--state-dir", str(state), "net", *args], catch_exceptions=False)


def test_a_layer_2_network_from_create_to_join(tmp_path):
    owner, member = tmp_path / "o", tmp_path / "m"
    make_node(owner, 1)
    mid = make_node(member, 2)
    r = run(owner, "create", "pods", "--ipv4", "10.9.0.0/16", "--l2")
    assert r.exit_code == 0 and "(layer 2)" in r.output, r.output
    out = tmp_path / "m.cert"
    r = run(owner, "sign", "pods", "--node", mid.node_id.text(), "--ip", "10.9.0.1", "--mac", "02:01:00:00:00:00/40",
            "--source", "10.9.1.0/24", "--bind", "02:01:00:00:00:01=10.9.1.1", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "layer 2: mac 02:01:00:00:00:00/40; sources 10.9.1.0/24; bindings 02:01:00:00:00:01=10.9.1.1" in r.output
    # The file carries a directory record per address, bound address included, and the member record.
    assert len(dearmor(out.read_text())) == 2 + 3
    r = run(member, "join", str(out))
    assert r.exit_code == 0, r.output
    m = load_membership(member, "pods")
    assert m.descriptor.layer == 2 and m.certificate.l2.bindings[0].mac.hex() == "020100000001"
    assert len(m.directory) == 3
    assert "member (L2)" in run(member, "ls").output
    assert "layer 2: mac 02:01:00:00:00:00/40; sources 10.9.1.0/24" in run(owner, "members", "pods").output


@pytest.mark.parametrize("args,message", [
    (["--mac", "03:00:00:00:00:00/8"], "group (multicast) address cannot be a source"),
    (["--mac", "02:01:00:00:00:01/40"], "bits after the prefix length must be zero"),
    (["--mac", "nonsense"], "is not a MAC address"),
    (["--bind", "02:01:00:00:00:01"], "must be MAC=IP"),
    (["--bind", "02:01:00:00:00:01=10.10.0.1"], "outside network"),
    (["--source", "10.9.1.1/24"], "has host bits set"),
    ([a for i in range(9) for a in ("--mac", f"02:00:00:00:0{i}:00/40")], "at most 8 --mac"),
])
def test_bad_layer_2_grants_are_one_line_errors(tmp_path, args, message):
    owner = tmp_path / "o"
    make_node(owner, 1)
    run(owner, "create", "pods", "--ipv4", "10.9.0.0/16", "--l2")
    r = CliRunner().invoke(root, ["--state-dir", str(owner), "net", "sign", "pods", "--node",
                                  make_node(tmp_path, 3).node_id.text(), "--ip", "10.9.0.1", *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
    assert r.output.startswith("weft: error: ") and r.output.count("\n") == 1


def test_layer_3_networks_refuse_layer_2_grants_and_bound_addresses_are_unique(tmp_path):
    owner = tmp_path / "o"
    make_node(owner, 1)
    run(owner, "create", "lab", "--ipv4", "10.1.0.0/24")
    node = make_node(tmp_path, 3).node_id.text()
    r = CliRunner().invoke(root, ["--state-dir", str(owner), "net", "sign", "lab", "--node", node, "--ip", "10.1.0.1",
                                  "--mac", "02:00:00:00:00:00/40"])
    assert r.exit_code == 1 and "is layer 3" in r.output
    run(owner, "create", "pods", "--ipv4", "10.9.0.0/16", "--l2")
    assert run(owner, "sign", "pods", "--node", node, "--ip", "10.9.0.1", "--bind",
               "02:01:00:00:00:01=10.9.1.1", "-o", str(tmp_path / "1.cert")).exit_code == 0
    other = make_node(tmp_path / "x", 4).node_id.text()
    r = CliRunner().invoke(root, ["--state-dir", str(owner), "net", "sign", "pods", "--node", other, "--ip",
                                  "10.9.0.2", "--bind", "02:02:00:00:00:01=10.9.1.1", "-o", str(tmp_path / "2.cert")])
    assert r.exit_code == 1 and "10.9.1.1 is already held by certificate #1" in r.output


def test_a_join_file_with_a_foreign_member_record_is_refused(tmp_path):
    owner, member = tmp_path / "o", tmp_path / "m"
    make_node(owner, 1)
    mid = make_node(member, 2)
    run(owner, "create", "pods", "--ipv4", "10.9.0.0/16", "--l2")
    a, b = tmp_path / "a.cert", tmp_path / "b.cert"
    run(owner, "sign", "pods", "--node", mid.node_id.text(), "--ip", "10.9.0.1", "-o", str(a))
    run(owner, "sign", "pods", "--node", make_node(tmp_path / "x", 5).node_id.text(), "--ip", "10.9.0.2", "-o", str(b))
    # A's certificate with B's member record: the record holds another certificate.
    blocks = a.read_text().split("-----END")
    b_member = b.read_text().split("-----BEGIN WEFTNET DIRECTORY RECORD-----")[-1]
    text = "-----END".join(blocks[:-1]) + "-----END" + blocks[-1] + "-----BEGIN WEFTNET DIRECTORY RECORD-----" + b_member
    with pytest.raises(NetworkError, match="for none of the certificate's addresses|member record"):
        join_network(member, text, mid.node_id, __import__("time").time())


def test_layer_2_config_keys_are_validated():
    cfg = config_from_dict({"networks": {"pods": {"mac_age": 30, "flood_rate": 50, "bridge": "br-pods",
                                                  "vxlan": {"vni": 100, "local": "192.0.2.1",
                                                            "remotes": ["192.0.2.2"]}}}})
    nc = cfg.networks["pods"]
    assert nc.effective_mtu(2) == 1500 and nc.effective_mtu(3) == 1280 and nc.bridge_name == "br-pods"
    assert nc.tap_name == "wt-pods" and nc.vxlan.vni == 100 and nc.vxlan.device_name("pods") == "wx-pods"
    bad = [
        ({"mac_age": 0}, "mac_age must be from 1 to 86400"),
        ({"flood_rate": True}, "flood_rate must be an integer"),
        ({"bridge": "a/b"}, "bridge 'a/b' is not a valid interface name"),
        ({"vxlan": {"local": "192.0.2.1"}}, "vni is required"),
        ({"vxlan": {"vni": 1 << 24, "local": "192.0.2.1"}}, "vni must be from 1 to 16777215"),
        ({"vxlan": {"vni": 1, "local": "192.0.2.1", "remotes": ["2001:db8::1"]}}, "must all be IPv4"),
        ({"vxlan": {"vni": 1, "local": "192.0.2.1", "group": "239.1.1.1"}}, "needs dev"),
        ({"vxlan": {"vni": 1, "local": "192.0.2.1", "group": "192.0.2.9", "dev": "eth0"}}, "multicast"),
        ({"vxlan": {"vni": 1, "local": "192.0.2.1", "vtep": 1}}, "unknown key vtep"),
        ({"vxlan": {"vni": 1, "local": "not-an-ip"}}, "does not appear to be an IPv4 or IPv6 address"),
    ]
    for table, message in bad:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"networks": {"pods": table}})


@pytest.mark.skipif(not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
                    reason="needs root, /dev/net/tun and ip (to make a namespace)")
def test_bridge_tap_and_vtep_are_made_reused_and_checked_against_the_fabric_mtu():
    from weftnet.runtime.l2dev import VxlanConfig, fdb_entries, open_l2_ports

    ns = f"l2rt{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "f0", "type", "veth", "peer", "name", "f1"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "192.168.5.1/24", "dev", "f0"], check=True)
        vx = VxlanConfig(100, "192.168.5.1", dev="f0", remotes=["192.168.5.2", "192.168.5.3"])
        kw = dict(tap="wt-t", bridge="wb-t", mac="02:00:00:00:00:01", addresses=["10.1.0.1/24"], netns=ns, vxlan=vx)
        with pytest.raises(NetworkError, match="lower .* mtu"):
            open_l2_ports("t", mtu=1500, **kw)
        links = json.loads(subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True, text=True).stdout)
        assert {x["ifname"] for x in links} == {"lo", "f0", "f1"}  # what the failed call made is gone again
        first = open_l2_ports("t", mtu=1450, **kw)
        first.tap.close()
        again = open_l2_ports("t", mtu=1450, **kw)  # the bridge and the VTEP stay and are reused
        try:
            assert first.created == ["wb-t", "wx-t"] and again.created == []
            flood = sorted(e["dst"] for e in fdb_entries("wx-t", netns=ns) if e["mac"] == "00:00:00:00:00:00")
            assert flood == ["192.168.5.2", "192.168.5.3"]  # not appended twice
            links = {x["ifname"]: x for x in json.loads(subprocess.run(["ip", "-n", ns, "-j", "link"],
                                                                       capture_output=True, text=True).stdout)}
            assert links["wb-t"]["address"] == "02:00:00:00:00:01" and links["wt-t"]["master"] == "wb-t"
        finally:
            again.tap.close()
    finally:
        subprocess.run(["ip", "netns", "del", ns])

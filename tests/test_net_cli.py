"""`weft net`: create, sign, join, ls, members, revoke - through click, on a temporary state dir."""

import random
import stat

import click
import time

import pytest
from click.testing import CliRunner

from weftnet.cli.net import net
from weftnet.runtime.netstate import join_network, load_membership
from weftnet.core.identity import Identity
from weftnet.core.vpn.netcert import armor, dearmor, revocations_from_record
from weftnet.errors import NetworkError
from weftnet.runtime.keystore import write_identity


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


@pytest.fixture
def env(tmp_path):
    owner, member = tmp_path / "owner", tmp_path / "member"
    return owner, make_node(owner, 1), member, make_node(member, 2), tmp_path


def run(state, *args):
    return CliRunner().invoke(root, ["--state-dir", str(state), "net", *args], catch_exceptions=False)


def test_create_sign_join_revoke(env):
    owner, _, member, mid, tmp = env
    r = run(owner, "create", "lab", "--ipv4", "10.1.0.0/24", "--ipv6", "fd00:1::/64")
    assert r.exit_code == 0, r.output
    key = owner / "networks" / "lab" / "authority.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out = tmp / "m.cert"
    r = run(owner, "sign", "lab", "--node", mid.node_id.text(), "--ip", "10.1.0.2", "--ip", "fd00:1::2",
            "--group", "web", "--days", "30", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "certificate #1" in r.output
    r = run(member, "join", str(out))
    assert r.exit_code == 0, r.output
    assert "joined 'lab' as 10.1.0.2, fd00:1::2" in r.output
    m = load_membership(member, "lab")
    assert not m.owner and m.certificate.groups == ("web",)
    r = run(member, "ls")
    assert "lab" in r.output and "member" in r.output and "10.1.0.2" in r.output
    r = run(owner, "members", "lab")
    assert "#1" in r.output and mid.node_id.text() in r.output and "days left" in r.output
    r = run(owner, "revoke", "lab", "1")
    assert r.exit_code == 0 and "seq 1" in r.output and "publish it in the DHT" in r.output
    assert "revoked" in run(owner, "members", "lab").output
    # The list is also a signed DHT record that any member can check against the network.
    om = load_membership(owner, "lab")
    assert revocations_from_record(om.revocation_record, om.descriptor) == om.revocations
    # The address is free again after revocation; a second revocation of the same serial is refused.
    assert run(owner, "sign", "lab", "--node", mid.node_id.text(), "--ip", "10.1.0.2", "-o",
               str(tmp / "m2.cert")).exit_code == 0
    r = run(owner, "revoke", "lab", "1")
    assert r.exit_code == 1 and "already revoked" in r.output


def test_errors_are_one_line(env):
    owner, oid, member, mid, tmp = env
    run(owner, "create", "lab", "--ipv4", "10.1.0.0/24")
    cases = [
        (("create", "lab", "--ipv4", "10.2.0.0/24"), "already exists"),
        (("create", "x", "--ipv4", "fd00::/64"), "is not an IPv4 prefix"),
        (("create", "y"), "at least one prefix"),
        (("create", "../z", "--ipv4", "10.0.0.0/8"), "network name"),
        (("sign", "lab", "--node", mid.node_id.text(), "--ip", "10.9.0.1", "-o", str(tmp / "a")), "outside"),
        (("sign", "lab", "--node", "wn1bad", "--ip", "10.1.0.5"), "node ID"),
        (("sign", "nope", "--node", mid.node_id.text(), "--ip", "10.1.0.5"), "no network named"),
        (("revoke", "lab", "9"), "no certificate #9"),
    ]
    for args, message in cases:
        r = run(owner, *args)
        assert r.exit_code == 1, (args, r.output)
        assert r.output.startswith("weft: error: ") and message in r.output, r.output
        assert r.output.count("\n") == 1
    run(owner, "sign", "lab", "--node", mid.node_id.text(), "--ip", "10.1.0.5", "-o", str(tmp / "c"))
    r = run(owner, "sign", "lab", "--node", oid.node_id.text(), "--ip", "10.1.0.5", "-o", str(tmp / "d"))
    assert "already held by certificate #1" in r.output
    # A member cannot sign.
    r = run(member, "join", str(tmp / "c"))
    assert r.exit_code == 0
    r = run(member, "sign", "lab", "--node", mid.node_id.text(), "--ip", "10.1.0.6")
    assert "not the owner" in r.output


def test_join_refuses_someone_elses_certificate_and_tampering(env):
    owner, oid, member, mid, tmp = env
    run(owner, "create", "lab", "--ipv4", "10.1.0.0/24")
    run(owner, "sign", "lab", "--node", oid.node_id.text(), "--ip", "10.1.0.1", "-o", str(tmp / "own.cert"))
    r = run(member, "join", str(tmp / "own.cert"))
    assert r.exit_code == 1 and "not this node" in r.output
    text = (tmp / "own.cert").read_text()
    desc, cert, record = dearmor(text)
    assert record.salt.endswith(bytes([10, 1, 0, 1]))  # the directory record for 10.1.0.1
    # A file whose directory record was swapped for one of another address is refused.
    run(owner, "sign", "lab", "--node", mid.node_id.text(), "--ip", "10.1.0.9", "-o", str(tmp / "m.cert"))
    mtext = (tmp / "m.cert").read_text()
    swapped = mtext[: mtext.index("-----BEGIN WEFTNET DIRECTORY")] + armor(record)
    with pytest.raises(NetworkError, match="directory record"):
        join_network(member, swapped, mid.node_id, time.time())
    with pytest.raises(NetworkError):
        join_network(member, text.replace(text.split("\n")[3], text.split("\n")[3][::-1]), mid.node_id, 0)
    # A same-named network from another authority is not silently replaced.
    other = tmp / "other"
    make_node(other, 1)
    run(other, "create", "lab", "--ipv4", "10.1.0.0/24")
    run(other, "sign", "lab", "--node", oid.node_id.text(), "--ip", "10.1.0.1", "-o", str(tmp / "o.cert"))
    assert run(owner, "join", str(tmp / "own.cert")).exit_code == 0
    r = run(owner, "join", str(tmp / "o.cert"))
    assert r.exit_code == 1 and "different network named 'lab'" in r.output
    assert "owner + member" in run(owner, "ls").output

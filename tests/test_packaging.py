"""Packaging: the wheel in a fresh venv, the systemd unit's one capability, the container image, the DaemonSet.

* The wheel: built from this tree, installed with pip into a new venv; `weft` is on that venv's PATH and works.
* The unit's promise: `weft up` as an unprivileged user holding only CAP_NET_ADMIN (what
  AmbientCapabilities gives it) brings a private network's TUN up.
* The Containerfile: built with podman on a Debian base made here (debootstrap, `podman import`: no
  registry), two containers with `--cap-add NET_ADMIN --device /dev/net/tun` form an overlay and a
  private network, and SIGHUP reloads.
* The Kubernetes example: `kubernetes-validate --strict`, then the DaemonSet's pod template as a Pod
  with `podman kube play` (its ConfigMap, capabilities, read-only root and /dev/net/tun as written).

Each part skips with its reason when its tool is missing; .ci/run installs them. The base image is
built once per machine (kept as localhost/weftnet-test-base:bookworm) and the app image once per run.
Podman's leftover netavark nft tables are deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from opstools import ROOT, WEFT, wait_for, weft

TAG = f"wp{os.getpid() % 100000}"
BASE_IMAGE = "localhost/weftnet-test-base:bookworm"
APP_IMAGE = f"localhost/weftnet-test:{TAG}"
DEBIAN_MIRROR = os.environ.get("WEFT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
[network]
network_backend = "netavark"
"""
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def run(*args: str, timeout: float = 300, check: bool = True, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# -- the wheel --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """weftnet's wheel and every dependency as wheels (pip's cache makes repeats cheap)."""
    d = tmp_path_factory.mktemp("wheelhouse")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(d), str(ROOT), timeout=600)
    return d


@pytest.mark.slow
def test_wheel_installs_weft_on_a_fresh_venv(wheelhouse, tmp_path):
    wheel = next(wheelhouse.glob("weftnet-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("weftnet/runtime/web/static/app.js", "weftnet/runtime/web/static/index.html",
              "weftnet/sim/scenarios/small.toml", "weftnet/cli/service.py"):
        assert f in names, f"{f} is not in {wheel.name}"
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    # A fresh venv: dependencies come from the package index (pip's cache when it has them).
    run(str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel), timeout=600)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    assert shutil.which("weft", path=env["PATH"]) == str(venv / "bin" / "weft")
    assert "version 0.1.0" in run("weft", "--version", env=env).stdout
    out = run("weft", "--state-dir", str(tmp_path / "s"), "init", env=env).stdout
    assert "node ID:" in out
    # The daemon runs from the wheel, dashboard files included.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with open(tmp_path / "s" / "config.toml", "a") as f:
        f.write(f'[dashboard]\nlisten = "127.0.0.1:{port}"\n')
    p = subprocess.Popen(["weft", "--state-dir", str(tmp_path / "s"), "up", "--listen", "127.0.0.1", "--port", "0"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request

        body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/static/app.js"), 30, "the installed dashboard")
        assert b"EventSource" in body
    finally:
        p.terminate()
        assert p.wait(15) == 0


def _get(url: str) -> bytes | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


# -- the systemd unit's capability set ------------------------------------------------------------


@root_only
@pytest.mark.skipif(not (shutil.which("setpriv") and shutil.which("ip") and os.path.exists("/dev/net/tun")),
                    reason="needs setpriv (util-linux), the ip command and /dev/net/tun")
def test_cap_net_admin_alone_runs_a_private_network(tmp_path_factory):
    """What the unit grants (a non-root user, ambient CAP_NET_ADMIN, nothing else) is enough."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="weft-cap-"))  # walkable by the unprivileged user
    ns = f"{TAG}cap"
    try:
        os.chmod(tmp, 0o755)
        owner, st = tmp / "o", tmp / "m"
        weft(owner, "init")
        weft(st, "init")
        weft(owner, "net", "create", "lab", "--ipv4", "10.1.0.0/24")
        weft(owner, "net", "sign", "lab", "--node", weft(st, "id", "-q").stdout.strip(), "--ip", "10.1.0.9",
             "-o", str(tmp / "c"))
        weft(st, "net", "join", str(tmp / "c"))
        run("chown", "-R", "65534:65534", str(st))
        run("ip", "netns", "add", ns)
        # Distributions' udev makes /dev/net/tun 0666 (the capability, not the file mode, guards it);
        # on a machine where it is 0600 the test gives its private mount namespace such a node.
        tun_node = tmp / "tun"
        dev = ["unshare", "-m", "sh", "-c", f"mknod -m 0666 {tun_node} c 10 200 && mount --bind {tun_node} "
               "/dev/net/tun && exec \"$@\"", "sh"]
        p = subprocess.Popen(["ip", "netns", "exec", ns, *dev, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin",
                              "--bounding-set=-all,+net_admin", *WEFT, "--state-dir", str(st), "up",
                              "--listen", "127.0.0.1", "--port", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "HOME": str(st)})
        try:
            wait_for(lambda: (st / "control.sock").exists() or p.poll() is not None, 30, "the daemon")
            assert p.poll() is None, p.stderr.read()
            link = run("ip", "-n", ns, "-o", "addr", "show", "wn-lab").stdout
            assert "10.1.0.9/24" in link
            status = run("ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         *WEFT, "--state-dir", str(st), "status", "--json", env={**os.environ, "HOME": str(st)})
            assert json.loads(status.stdout)["networks"][0]["tun"] == "wn-lab"
        finally:
            p.terminate()
            p.wait(15)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


# -- Kubernetes manifests ---------------------------------------------------------------------


def test_kubernetes_example_validates_strictly():
    kv = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    if not os.path.exists(kv):
        pytest.skip("needs kubernetes-validate (pip install '.[test]')")
    p = run(kv, "--strict", str(ROOT / "deploy" / "kubernetes" / "weftnet.yaml"), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    kinds = [line.split("resource ", 1)[1].split("/")[0] for line in (p.stdout + p.stderr).splitlines()
             if "passed for resource" in line]
    assert sorted(kinds) == ["configmap", "daemonset", "namespace", "role", "rolebinding", "serviceaccount"]


# -- podman: the container image and the pod template -------------------------------------------


def _podman_works() -> str | None:
    if os.geteuid() != 0:
        return "needs root (rootful podman with NET_ADMIN and /dev/net/tun)"
    for tool in ("podman", "debootstrap", "runc", "catatonit"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/libexec/podman/{tool}"):
            return f"needs {tool} (.ci/run installs podman, runc, netavark, catatonit and debootstrap)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    why = _podman_works()
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("podman")
    (d / "containers.conf").write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf")}
    tables_before = _nft_tables()

    def pm(*args: str, timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return run("podman", *args, timeout=timeout, check=check, env=env, **kw)

    p = pm("info", "--format", "json", check=False, timeout=60)
    if p.returncode:
        pytest.skip(f"podman does not work here: {p.stderr.strip().splitlines()[-1] if p.stderr else p.returncode}")
    try:
        yield pm
    finally:
        pm("image", "rm", "-f", APP_IMAGE, check=False)
        _cleanup_netavark(tables_before)


def _nft_tables() -> set[str]:
    p = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return {line.strip() for line in p.stdout.splitlines() if line.startswith("table")}


def _cleanup_netavark(before: set[str] = frozenset()) -> None:
    """Delete the nft tables netavark left in the root namespace (only those that hold netavark's rules only)."""
    for table in sorted(_nft_tables()):
        _, family, name = table.split()
        p = subprocess.run(["nft", "-j", "list", "table", family, name], capture_output=True, text=True)
        try:
            items = json.loads(p.stdout)["nftables"]
        except (ValueError, KeyError):
            continue
        chains = [x["chain"]["name"] for x in items if "chain" in x]
        rules = [x["rule"] for x in items if "rule" in x]
        ours = all(c.startswith("NETAVARK") or c in ("POSTROUTING", "PREROUTING", "OUTPUT", "INPUT", "FORWARD")
                   for c in chains) and any(c.startswith("NETAVARK") for c in chains)
        only_jumps = all(r["chain"].startswith("NETAVARK") or "NETAVARK" in json.dumps(r["expr"]) for r in rules)
        if ours and only_jumps:
            subprocess.run(["nft", "delete", "table", family, name], capture_output=True)


@pytest.fixture(scope="session")
def base_image(podman, tmp_path_factory):
    """A Debian bookworm image with python3, from debootstrap: made once per machine, reused after."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    rootfs = tmp_path_factory.mktemp("rootfs")
    run("debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs), DEBIAN_MIRROR,
        timeout=900)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    podman("import", "-", BASE_IMAGE, stdin=tar.stdout, timeout=300)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def app_image(podman, base_image, wheelhouse, tmp_path_factory):
    """deploy/Containerfile, built offline: the context carries the wheels (the image has no index to reach)."""
    ctx = tmp_path_factory.mktemp("context")
    shutil.copytree(ROOT / "src", ctx / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, ctx / f)
    shutil.copytree(wheelhouse, ctx / "wheels")
    podman("build", "-f", str(ROOT / "deploy" / "Containerfile"), "--build-arg", f"BASE={base_image}",
           "-t", APP_IMAGE, str(ctx), timeout=900)
    return APP_IMAGE


def _member_states(tmp: Path, hosts: list[str], prefix: str) -> dict[str, Path]:
    """State dirs for ``hosts``, each a member of network "lab" (``prefix``.0/24, host i gets .i)."""
    owner = tmp / "owner"
    weft(owner, "init")
    weft(owner, "net", "create", "lab", "--ipv4", f"{prefix}.0/24")
    out = {}
    for i, h in enumerate(hosts, start=1):
        st = out[h] = tmp / h
        weft(st, "init")
        weft(owner, "net", "sign", "lab", "--node", weft(st, "id", "-q").stdout.strip(), "--ip", f"{prefix}.{i}",
             "-o", str(tmp / f"{h}.cert"))
        weft(st, "net", "join", str(tmp / f"{h}.cert"))
        with open(st / "config.toml", "a") as f:
            f.write('[networks.lab]\nfirewall.outbound = [ { proto = "any", port = "any", host = "any" } ]\n'
                    'firewall.inbound = [ { proto = "any", port = "any", host = "any" } ]\n')
    return out


@pytest.mark.slow
def test_container_runs_the_daemon_with_net_admin_and_tun(podman, app_image, tmp_path):
    states = _member_states(tmp_path, ["a", "b"], "10.77.0")
    net = f"{TAG}net"
    names = [f"{TAG}-a", f"{TAG}-b"]
    podman("network", "create", net)
    try:
        common = ["run", "-d", "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun", "--network", net]
        podman(*common, "--name", names[0], "-v", f"{states['a']}:/var/lib/weftnet", app_image, "--port", "4500")
        ip_a = podman("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', names[0]).stdout.strip()
        podman(*common, "--name", names[1], "-v", f"{states['b']}:/var/lib/weftnet", app_image, "--port", "4500",
               "--peer", f"{ip_a}:4500")

        def status(name):
            p = podman("exec", name, "weft", "status", "--json", check=False)
            return json.loads(p.stdout) if p.returncode == 0 else None

        st = wait_for(lambda: (s := status(names[1])) and s["sessions"] and s, 60, "a session between the containers")
        assert st["networks"][0]["tun"] == "wn-lab" and st["networks"][0]["addresses"] == ["10.77.0.2"]
        # The private network carries IP between the containers (ping needs a raw socket: an exec with privileges).
        tool = (ROOT / "tests" / "netns_tool.py").read_text()
        ping = lambda: podman("exec", "--privileged", "-i", names[1], "python3", "-", "ping", "10.77.0.1", "2",
                              input=tool, check=False).returncode == 0
        wait_for(ping, 60, "a ping over the private network between containers", every=1.0)
        # SIGHUP reloads the config inside the container.
        podman("kill", "-s", "HUP", names[1])
        wait_for(lambda: "config reloaded" in podman("logs", names[1]).stderr + podman("logs", names[1]).stdout,
                 20, "the reload in the container's log")
        # A clean stop: the identity survives in the volume.
        podman("stop", "-t", "15", names[1])
        assert podman("inspect", "-f", "{{.State.ExitCode}}", names[1]).stdout.strip() == "0"
        assert (states["b"] / "identity.key").exists()
    finally:
        podman("rm", "-f", "-t", "2", *names, check=False)
        podman("network", "rm", "-f", net, check=False)


@pytest.mark.slow
def test_daemonset_pod_template_runs_with_podman_kube_play(podman, app_image, tmp_path):
    import yaml

    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "weftnet.yaml").read_text()))
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    # The pod template as written, but: the image built here, a state directory of the test instead of the
    # host's /var/lib/weftnet, and a podman network instead of the host's (hostNetwork).
    spec = ds["spec"]["template"]["spec"]
    spec["hostNetwork"] = False
    spec.pop("dnsPolicy", None)
    spec["containers"][0]["image"] = app_image
    state = _member_states(tmp_path, ["node"], "10.78.0")["node"]
    for v in spec["volumes"]:
        if v["name"] == "state":
            v["hostPath"]["path"] = str(state)
    name = f"{TAG}-ds"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": ds["spec"]["template"]["metadata"]["labels"]},
           "spec": spec}
    cm["metadata"].pop("namespace", None)
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(cm))
    net = f"{TAG}kube"
    podman("network", "create", net)
    try:
        podman("kube", "play", "--network", net, "--configmap", str(tmp_path / "cm.yaml"), str(tmp_path / "pod.yaml"))
        ctr = f"{name}-weftnet"

        def status():
            p = podman("exec", ctr, "weft", "status", "--json", check=False)
            return json.loads(p.stdout) if p.returncode == 0 else None

        st = wait_for(status, 60, "the daemon in the pod")
        # The ConfigMap is the config; the TUN came up with only NET_ADMIN and the /dev/net/tun hostPath.
        assert st["endpoint"] == "0.0.0.0:4500"
        assert st["networks"][0]["tun"] == "wn-lab" and st["networks"][0]["addresses"] == ["10.78.0.1"]
        code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9477/metrics').read().decode())"
        metrics = podman("exec", ctr, "python3", "-c", code).stdout
        assert 'weftnet_network_info{network="lab"' in metrics
        # Read-only root filesystem, every capability but NET_ADMIN dropped.
        assert podman("exec", ctr, "sh", "-c", "touch /opt/x", check=False).returncode != 0
        caps = podman("exec", ctr, "sh", "-c", "grep CapEff /proc/1/status").stdout.split()[1]
        assert int(caps, 16) == 1 << 12  # CAP_NET_ADMIN is bit 12
    finally:
        podman("kube", "down", str(tmp_path / "pod.yaml"), check=False)
        podman("network", "rm", "-f", net, check=False)

"""Two network namespaces joined by a veth pair, plus the processes started inside them.

A `Topology` is a context manager: entering it creates the namespaces `dp-<pid>-a` and
`dp-<pid>-b` with the underlay 10.200.0.1/24 <-> 10.200.0.2/24; leaving it (normally or through
an exception) stops every process it started, kills whatever else still runs inside the two
namespaces, and deletes them. Nothing is created in the root namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

UNDERLAY_A = "10.200.0.1"
UNDERLAY_B = "10.200.0.2"
UNDERLAY_PREFIX = 24
UNDERLAY_DEV = "veth0"
UNDERLAY_MTU = 1500


class BenchError(RuntimeError):
    """A setup or measurement step failed; the message is shown in the result row."""


def require_tools(parser, tools) -> None:
    """Stop with the parser's one-line error naming every tool in `tools` not on PATH."""
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        parser.error(f"missing required tools: {', '.join(missing)} (see bench/dataplane/README.md)")


def run(argv: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing its output; raise BenchError on failure."""
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from e
    except FileNotFoundError as e:
        raise BenchError(f"not found: {argv[0]}") from e
    if check and cp.returncode != 0:
        msg = " / ".join((cp.stderr or cp.stdout).strip().splitlines()[-3:])
        raise BenchError(f"{' '.join(argv)} exited {cp.returncode}" + (f": {msg}" if msg else ""))
    return cp


def tail(path: Path, lines: int = 3, width: int = 200) -> str:
    """The last few non-empty lines of a log file, each cut to `width`, joined on one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    rows = [r.strip() for r in text.splitlines() if r.strip()]
    return " / ".join(r if len(r) <= width else r[:width - 1] + "…" for r in rows[-lines:])


class Topology:
    """Namespaces A and B, the veth underlay between them, and the processes run inside."""

    def __init__(self, workdir: Path, prefix: str | None = None):
        prefix = prefix or f"dp-{os.getpid()}"
        self.a = f"{prefix}-a"
        self.b = f"{prefix}-b"
        self.workdir = workdir
        self._procs: list[tuple[str, subprocess.Popen, Path]] = []
        self._cleanups: list = []

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Topology":
        try:
            for ns in (self.a, self.b):
                run(["ip", "netns", "add", ns])
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # Create the pair inside A with its peer placed directly in B.
            run(["ip", "-n", self.a, "link", "add", UNDERLAY_DEV, "mtu", str(UNDERLAY_MTU), "type", "veth",
                 "peer", "name", UNDERLAY_DEV, "netns", self.b])
            for ns, addr in ((self.a, UNDERLAY_A), (self.b, UNDERLAY_B)):
                run(["ip", "-n", ns, "addr", "add", f"{addr}/{UNDERLAY_PREFIX}", "dev", UNDERLAY_DEV])
                run(["ip", "-n", ns, "link", "set", UNDERLAY_DEV, "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def on_close(self, fn) -> None:
        """Register a callable run at teardown, after the processes are stopped."""
        self._cleanups.append(fn)

    def close(self) -> None:
        """Stop all processes and delete both namespaces; safe to call more than once."""
        for _name, proc, _log in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception:
                pass
        self._cleanups.clear()
        for ns in (self.a, self.b):
            if not Path("/run/netns", ns).exists():
                continue
            # Anything left inside (e.g. a daemon that forked) dies with its namespace.
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)

    # -- commands and processes ---------------------------------------------------------------

    def ns(self, side: str) -> str:
        """Namespace name for side 'a' or 'b'."""
        return {"a": self.a, "b": self.b}[side]

    def exec(self, side: str, argv: list[str], timeout: float = 30, check: bool = True,
             **kw) -> subprocess.CompletedProcess:
        """Run a command to completion inside namespace A or B."""
        return run(["ip", "netns", "exec", self.ns(side), *argv], timeout=timeout, check=check, **kw)

    def spawn(self, side: str, argv: list[str], name: str, env: dict | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        """Start a long-running process inside namespace A or B; its output goes to <name>.log."""
        log = self.workdir / f"{name}.log"
        full_env = dict(os.environ, **(env or {}))
        with open(log, "wb") as fh:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(side), *argv], stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=full_env, cwd=cwd)
        self._procs.append((name, proc, log))
        return proc

    def pids(self) -> list[int]:
        """Process IDs of everything spawned so far that still runs (`ip netns exec` execs the command)."""
        return [p.pid for _n, p, _l in self._procs if p.poll() is None]

    def check_alive(self) -> None:
        """Raise BenchError if a spawned process has exited."""
        for name, proc, log in self._procs:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}: {tail(log)}")

    def log_text(self, name: str) -> str:
        """Full output so far of the spawned process called `name` ('' if none)."""
        for pname, _p, log in self._procs:
            if pname == name:
                return log.read_text(errors="replace")
        return ""

    def dev_bytes(self, side: str, dev: str) -> tuple[int, int]:
        """(rx, tx) byte counters of `dev` in namespace `side`."""
        out = self.exec(side, ["ip", "-j", "-s", "link", "show", "dev", dev]).stdout
        stats = json.loads(out)[0]["stats64"]
        return stats["rx"]["bytes"], stats["tx"]["bytes"]

    def logs(self) -> str:
        """Tails of all process logs, for error messages."""
        return "; ".join(f"{name}: {tail(log, 2)}" for name, _p, log in self._procs if tail(log, 2))

    def wait_for(self, predicate, what: str, timeout: float = 20.0, interval: float = 0.25) -> None:
        """Poll predicate() until true; fail early if a spawned process died."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                if predicate():
                    return
            except BenchError:
                pass
            if time.monotonic() > deadline:
                logs = self.logs()
                raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f" ({logs})" if logs else ""))
            time.sleep(interval)

    def ping_ok(self, side: str, addr: str) -> bool:
        """One ping from namespace `side` to `addr` with a one-second deadline."""
        return self.exec(side, ["ping", "-c1", "-W1", addr], timeout=5, check=False).returncode == 0

    def wait_ping(self, addr: str, timeout: float = 20.0) -> None:
        """Wait until A can ping `addr` (the overlay address of B)."""
        self.wait_for(lambda: self.ping_ok("a", addr), f"ping {addr} from A", timeout=timeout)

    def listening(self, side: str, port: int) -> bool:
        """Is something listening on TCP `port` in namespace `side`?"""
        out = self.exec(side, ["ss", "-Hltn", f"sport = :{port}"], timeout=5, check=False).stdout
        return bool(out.strip())


def _stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM a process group, then SIGKILL it if it has not gone within `grace` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue

"""Where a node keeps its state: identity key, config, database, control socket.

Resolution order: an explicit ``--state-dir``, then ``$WEFTNET_STATE_DIR``,
then ``$XDG_STATE_HOME/weftnet``, then ``~/.local/state/weftnet``.

The control socket lives in the state directory. When that path is too long
for a Unix socket it moves to a per-user directory named by a hash of the
state directory: ``$XDG_RUNTIME_DIR/weftnet/`` if the session has one, else
``/tmp/weftnet-UID/``. A directory in a shared place could have been made by
someone else first (who would then answer the owner's requests), so both the
daemon and the CLI check it before trusting it (:func:`check_socket_dir`):
a real directory, not a symlink, owned by the user, writable by nobody else
(docs/security.md, item 10). The state directory itself is not checked: it
is the operator's own choice, and a daemon running as an unprivileged user
is driven by root's CLI through it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from weftnet.errors import ControlError

__all__ = ["resolve_state_dir", "StatePaths", "ENV_STATE_DIR", "check_socket_dir", "runtime_dir"]

ENV_STATE_DIR = "WEFTNET_STATE_DIR"
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


def resolve_state_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return (base / "weftnet").absolute()


class StatePaths:
    """The files inside one state directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.key = self.root / "identity.key"
        self.config = self.root / "config.toml"
        self.database = self.root / "node.db"
        self.networks = self.root / "networks"

    @property
    def control_socket(self) -> Path:
        sock = self.root / "control.sock"
        if len(os.fsencode(sock)) <= _UNIX_PATH_MAX:
            return sock
        # AF_UNIX paths are short; a deep state dir gets a per-user directory
        # (checked before use: check_socket_dir) named by a hash of the state dir.
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        return runtime_dir() / f"{digest}.sock"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/weftnet`` if the session has a usable one, else ``/tmp/weftnet-UID``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and len(os.fsencode(xdg)) < _UNIX_PATH_MAX - 40:
        try:
            st = os.stat(xdg)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
                return Path(xdg) / "weftnet"
        except OSError:
            pass
    return Path(f"/tmp/weftnet-{os.geteuid()}")


def check_socket_dir(directory: Path, create: bool) -> None:
    """Refuse a control-socket directory someone else could control.

    ``create``: make it (mode 0700) if it is missing (the daemon); the CLI only
    checks. Raises :class:`ControlError` with what is wrong and what to do."""
    d = Path(directory)
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        if not create:
            return  # nothing there: "no daemon is running" is said by the caller
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass  # created meanwhile: checked below like any other
        except OSError as exc:
            raise ControlError(f"cannot create {d} for the control socket: {exc.strerror}") from None
        st = os.lstat(d)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"{d} is not a directory (a symlink?): refusing it for the control socket; remove it")
    if st.st_uid != os.geteuid():
        raise ControlError(f"{d} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): whoever made it "
                           f"could answer your requests; remove it, or set [control] socket")
    if st.st_mode & 0o022:
        raise ControlError(f"{d} is writable by others (mode {stat.S_IMODE(st.st_mode):o}): they could replace "
                           f"the socket; 'chmod 700 {d}'")

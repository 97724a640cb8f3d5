"""Where a node keeps its state: identity key, config, database, control socket.

Resolution order: an explicit ``--state-dir``, then ``$WEFTNET_STATE_DIR``,
then ``$XDG_STATE_HOME/weftnet``, then ``~/.local/state/weftnet``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["resolve_state_dir", "StatePaths", "ENV_STATE_DIR"]

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
        # under /tmp named by a hash of the state dir instead.
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        return Path(f"/tmp/weftnet-{os.getuid()}") / f"{digest}.sock"

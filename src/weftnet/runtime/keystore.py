"""The identity key on disk: PKCS#8 PEM, mode 0600, in a 0700 directory.

The file is created with its final mode (never chmod after writing) and
replaced atomically; an existing identity is never overwritten unless the
caller says ``force``. A key file that group or others can read is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from weftnet.core.identity import Identity
from weftnet.errors import ConfigError, IdentityError

__all__ = ["write_identity", "load_identity", "ensure_private_dir"]


def ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def write_identity(path: Path, identity: Identity, force: bool = False) -> None:
    ensure_private_dir(path.parent)
    if path.exists() and not force:
        raise ConfigError(f"{path} already holds an identity; use --force to replace it (the old node ID is lost)")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, identity.to_pem())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_identity(path: Path) -> Identity:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"no identity at {path}; run 'weft init' first") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); run 'chmod 600 {path}'"
        )
    try:
        return Identity.from_pem(path.read_bytes())
    except IdentityError as exc:
        raise ConfigError(f"{path}: {exc}") from None

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


def ensure_private_dir(path: Path) -> str | None:
    """Create ``path`` mode 0700, or check an existing one is private.

    An existing *empty* directory that others can read is made 0700, and the
    returned note says so; a non-empty one is refused (its mode is the
    user's business, and chmodding it silently would change more than
    weftnet's files). A directory of another user is refused.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
        return None
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path} belongs to another user (uid {st.st_uid}); use a directory of your own")
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return None
    if any(path.iterdir()):
        raise ConfigError(f"{path} exists, is not empty and other users can read it (mode {mode:o}); weftnet keeps "
                          f"its private key there: use a new or empty directory, or 'chmod 700 {path}' first")
    os.chmod(path, 0o700)
    return f"{path} existed with mode {mode:o}; it is now 700 (it holds the node's private key)"


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

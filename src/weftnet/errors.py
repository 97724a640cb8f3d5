"""The exceptions weftnet raises to library callers.

Every error weftnet raises on purpose derives from :class:`WeftError`, so a caller
can catch one class. The tree::

    WeftError
    ├── DecodeError            malformed bytes from the wire (truncated, oversized,
    │                          unknown type or version, bad field)
    ├── IdentityError          a key, node ID or overlay address that is not valid
    │   └── ParseError         text that is not a node ID / address (says why)
    ├── ConfigError            a config file or state directory that cannot be used
    ├── HandshakeError         a handshake message that fails authentication
    │                          (internal: the peer is never told)
    ├── SessionError           use of a session that does not exist or is closed
    ├── RecordError            a DHT record that fails validation
    ├── ControlError           the local control API failed or refused a request
    ├── NetworkError           VPN membership, certificate or data-plane problem
    └── StorageError           the node's database refused a write (e.g. a full disk)

The CLI turns any of these into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "WeftError",
    "DecodeError",
    "IdentityError",
    "ParseError",
    "ConfigError",
    "HandshakeError",
    "SessionError",
    "RecordError",
    "ControlError",
    "NetworkError",
    "StorageError",
]


class WeftError(Exception):
    """Base class of every error weftnet raises on purpose."""


class DecodeError(WeftError, ValueError):
    """Bytes that are not a valid weftnet message."""


class IdentityError(WeftError, ValueError):
    """A key, node ID or overlay address that is not valid."""


class ParseError(IdentityError):
    """Text that does not parse as a node ID or overlay address."""


class ConfigError(WeftError):
    """A config file or state directory that cannot be used."""


class HandshakeError(WeftError):
    """A handshake message that fails authentication or validation."""


class SessionError(WeftError):
    """A session that does not exist, or is closed."""


class RecordError(WeftError, ValueError):
    """A DHT record that fails validation."""


class ControlError(WeftError):
    """The local control API failed or refused a request."""


class NetworkError(WeftError):
    """A private-network (VPN) membership, certificate or data-plane problem."""


class StorageError(WeftError):
    """The node's database refused a write (a full disk, a damaged file)."""

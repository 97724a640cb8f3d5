"""The NLRI base class and its error."""

from __future__ import annotations

from typing import ClassVar

from weftnet.core.bgp.family import Family

__all__ = ["Nlri", "MalformedNlri"]


class MalformedNlri(ValueError):
    """An NLRI field that does not parse (RFC 7606 section 5.3: the session is reset)."""


class Nlri:
    """One route's network layer reachability information."""

    __slots__ = ()
    family: ClassVar[Family]

    @property
    def key(self) -> bytes:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def encode(self) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def to_dict(self) -> dict:  # pragma: no cover
        raise NotImplementedError

"""Which names an HTTP listener answers to in a request's ``Host`` header (DNS rebinding).

A page on any web site can make the operator's browser send requests to a port on this host
by pointing its own name at 127.0.0.1 (DNS rebinding): the request then carries the page's
name in ``Host``, and the page reads the answer as its own. The listeners answer only to
names such a page cannot put there: IP literals, ``localhost``, and names the operator trusts
(docs/security.md item 20).
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["host_name", "literal_or_localhost", "own_names"]


def host_name(header: str) -> str:
    """The name in a Host header: lower case, without the port, brackets or a final dot."""
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h[:-1] if h.endswith(".") else h


def literal_or_localhost(name: str) -> bool:
    """An IP address or ``localhost``: names a DNS-rebinding page cannot produce."""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def own_names() -> frozenset[str]:
    """This host's name and its first label (what a scrape config most often names it by)."""
    name = socket.gethostname().strip().lower().rstrip(".")
    return frozenset(n for n in (name, name.split(".", 1)[0]) if n)

"""The local control API: newline-delimited JSON over a Unix socket.

Request:  ``{"op": "ping", "target": "wn1..."}\\n``
Response: ``{"ok": true, "result": {...}}\\n`` or ``{"ok": false, "error": "one line"}\\n``

The socket lives in the state directory (0700) and is itself mode 0600, so
only the node's owner can drive it. Requests are limited in size; a bad
request gets an error reply and never disturbs the daemon. The server is
asyncio (inside the daemon); the client is plain blocking sockets (the CLI).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

from weftnet.errors import ControlError, WeftError

__all__ = ["ControlServer", "call", "MAX_REQUEST"]

MAX_REQUEST = 64 * 1024
log = logging.getLogger("weftnet.control")
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler], check_dir: bool | None = None):
        self.path = path
        self.handlers = handlers
        #: Check the socket's directory (paths.check_socket_dir). None: only if it is the shared
        #: per-user fallback directory (paths.runtime_dir), where someone else could have made it.
        self.check_dir = _in_fallback(path) if check_dir is None else check_dir
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        from weftnet.runtime.paths import check_socket_dir

        if self.check_dir:
            self.path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            check_socket_dir(self.path.parent, create=True)
        else:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists():
            if _alive(self.path):
                raise ControlError(f"another weftnet daemon is already running on {self.path}")
            self.path.unlink()  # left behind by a daemon that crashed
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await _reply(writer, {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"})
                    return
                if not line:
                    return
                await _reply(writer, await self._dispatch(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            return {"ok": False, "error": 'request must be an object with an "op" string'}
        handler = self.handlers.get(req["op"])
        if handler is None:
            return {"ok": False, "error": f"unknown op {req['op']!r} (known: {', '.join(sorted(self.handlers))})"}
        try:
            return {"ok": True, "result": await handler(req)}
        except WeftError as exc:
            return {"ok": False, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad request for {req['op']}: {exc}"}
        except asyncio.TimeoutError:
            return {"ok": False, "error": "timed out"}
        except Exception as exc:  # a handler bug must not take the daemon down
            log.exception("control handler failed", extra={"op": req["op"]})
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}


async def _reply(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()


def _alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _in_fallback(path: Path) -> bool:
    from weftnet.runtime.paths import runtime_dir

    return Path(path).parent == runtime_dir()


def call(path: Path, op: str, timeout: float = 30.0, check_dir: bool | None = None, **params: Any) -> Any:
    """Send one request to the daemon and return its result, or raise ControlError.

    ``check_dir``: refuse a socket in a directory another user controls (it
    could be answering in the daemon's place); None: only for the shared
    fallback directory (paths.runtime_dir)."""
    if _in_fallback(path) if check_dir is None else check_dir:
        from weftnet.runtime.paths import check_socket_dir

        check_socket_dir(Path(path).parent, create=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no weftnet daemon is running (no control socket at {path}); start one with 'weft up'") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: the daemon belongs to another user") from None
        s.sendall(json.dumps({"op": op, **params}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ControlError("the daemon closed the connection without answering")
            buf += chunk
    except socket.timeout:
        raise ControlError(f"the daemon did not answer within {timeout:.0f} s") from None
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        # Never let this reach the CLI as a broken pipe (which `weft status | head` makes, and which
        # exits 0): the daemon dropped us, e.g. out of file descriptors or on its way down.
        raise ControlError("the daemon closed the connection without answering") from None
    finally:
        s.close()
    try:
        resp = json.loads(buf)
    except json.JSONDecodeError:
        raise ControlError("the daemon sent a reply that is not JSON") from None
    if not resp.get("ok"):
        raise ControlError(resp.get("error", "unknown error"))
    return resp.get("result")

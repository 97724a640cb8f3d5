"""Structured logs: one event per line, as text (logfmt-like) or JSON."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

__all__ = ["setup_logging", "log_event"]

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str):
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _RESERVED}
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        if self.fmt == "json":
            out = {"ts": ts, "level": record.levelname.lower(), "event": record.getMessage()}
            out.update({k: _plain(v) for k, v in fields.items()})
            return json.dumps(out, sort_keys=False)
        parts = [ts, record.levelname.lower().ljust(7), record.getMessage()]
        parts += [f"{k}={_quote(_plain(v))}" for k, v in fields.items()]
        return " ".join(parts)


def _plain(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if hasattr(v, "text") and callable(v.text):
        return v.text()
    return str(v)


# Whitespace, quotes, backslash, '=' and every control or line-breaking character.
_UNSAFE = re.compile(r'[\s"\\=\x00-\x1f\x7f-\x9f\u2028\u2029]')
_BREAKS = str.maketrans({c: f"\\u{ord(c):04x}" for c in [chr(i) for i in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]})


def _quote(v) -> str:
    """A field value for a text log line. Values come from peers too (a routed text, a
    reason), so anything that could end the line or fake a field is escaped: one event
    is always one line (docs/security.md, item 4)."""
    s = str(v)
    if s and not _UNSAFE.search(s):
        return s
    # json.dumps escapes quotes, backslashes and C0 controls; the table, C1 and U+2028/9.
    return json.dumps(s, ensure_ascii=False).translate(_BREAKS)


def setup_logging(level: str = "info", fmt: str = "text") -> logging.Logger:
    root = logging.getLogger("weftnet")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False
    return root


def log_event(logger: logging.Logger, level: int, event: str, **fields) -> None:
    logger.log(level, event, extra=fields)

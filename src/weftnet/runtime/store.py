"""SQLite persistence of a node's records and routing table (stdlib sqlite3).

One file, ``node.db`` in the state directory, in WAL mode. ``SqliteStore``
implements the DHT's RecordStore protocol (core/dht/store.py), so a restarted
node still holds every record it held; the routing table's contacts are saved
on shutdown and periodically, so a restarted node rejoins at once from them.
The schema carries a version; an unknown version is refused, not guessed at
(version 1 is migrated in place to 2, which adds the sender and prefix of
each record, for quotas, and an index on expiry).

Writes that fail (a full disk, a damaged file) raise
:class:`~weftnet.errors.StorageError` and are counted in ``write_errors``;
they are logged at most once per :data:`LOG_INTERVAL` (with the count since
the last line), never once per failure, so a full disk cannot turn into a
flood of tracebacks (docs/security.md, item 8).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from weftnet.core.contact import Contact
from weftnet.core.dht.store import StoredRecord
from weftnet.errors import ConfigError, StorageError

__all__ = ["SqliteStore", "SCHEMA_VERSION", "LOG_INTERVAL"]

SCHEMA_VERSION = 2
#: At most one log line about failed writes per this many seconds.
LOG_INTERVAL = 60.0
log = logging.getLogger("weftnet.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY, blob BLOB NOT NULL, expires REAL NOT NULL,
    own INTEGER NOT NULL, seq INTEGER, stored_at REAL NOT NULL,
    origin BLOB NOT NULL DEFAULT x'', prefix TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS contacts (
    public_key BLOB PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, saved_at REAL NOT NULL
);
"""
_COLUMNS = "key, blob, expires, own, seq, stored_at, origin, prefix"


class SqliteStore:
    def __init__(self, path: Path | str):
        self.path = path
        self.write_errors = 0
        self.damaged_rows = 0
        self._unlogged = 0
        self._logged_at: float | None = None
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] == "1":
                with self.db:
                    self.db.execute("BEGIN")
                    self.db.execute("ALTER TABLE records ADD COLUMN origin BLOB NOT NULL DEFAULT x''")
                    self.db.execute("ALTER TABLE records ADD COLUMN prefix TEXT NOT NULL DEFAULT ''")
                    self.db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise ConfigError(f"{path}: database schema {row[0]} is not {SCHEMA_VERSION}; upgrade weftnet")
            self.db.execute("CREATE INDEX IF NOT EXISTS records_expires ON records (expires)")
            # A damaged table shows here, at start-up, with the file's name, not later as a crash.
            self.db.execute(f"SELECT {_COLUMNS} FROM records LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path}: not a usable weftnet database ({exc}); move it away to start afresh") from None

    def _failed(self, what: str, exc: sqlite3.Error) -> StorageError:
        """Count a failed write; log one line per LOG_INTERVAL, however many fail."""
        self.write_errors += 1
        self._unlogged += 1
        t = time.monotonic()
        if self._logged_at is None or t - self._logged_at >= LOG_INTERVAL:
            log.warning("database writes failing", extra={"path": str(self.path), "error": str(exc),
                                                           "failed_since_last_report": self._unlogged,
                                                           "failed_total": self.write_errors})
            self._logged_at = t
            self._unlogged = 0
        return StorageError(f"{self.path}: cannot {what}: {exc}")

    # RecordStore protocol
    def get(self, key: bytes) -> StoredRecord | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM records WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return _record(row)
        except (TypeError, ValueError):
            self.damaged_rows += 1
            return None

    def put(self, record: StoredRecord) -> None:
        try:
            self.db.execute(
                f"INSERT OR REPLACE INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.key, record.blob, record.expires, int(record.own), record.seq, record.stored_at,
                 record.origin, record.prefix),
            )
        except sqlite3.Error as exc:
            raise self._failed("store a record", exc) from None

    def delete(self, key: bytes) -> None:
        try:
            self.db.execute("DELETE FROM records WHERE key=?", (key,))
        except sqlite3.Error as exc:
            raise self._failed("delete a record", exc) from None

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def records(self) -> Iterator[StoredRecord]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM records ORDER BY key").fetchall()
        out = []
        for r in rows:
            try:
                out.append(_record(r))
            except (TypeError, ValueError):
                self.damaged_rows += 1  # a damaged row costs one record, not the start-up
        return iter(out)

    # routing table
    def save_contacts(self, contacts: list[Contact], now: float) -> None:
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM contacts")
                self.db.executemany(
                    "INSERT OR REPLACE INTO contacts VALUES (?, ?, ?, ?)",
                    [(c.public_key, c.endpoint[0], c.endpoint[1], now) for c in contacts],
                )
        except sqlite3.Error as exc:
            raise self._failed("save the routing table", exc) from None

    def load_contacts(self) -> list[Contact]:
        out = []
        for pk, host, port, _ in self.db.execute("SELECT * FROM contacts ORDER BY saved_at DESC, public_key"):
            try:
                out.append(Contact(bytes(pk), (host, int(port))))
            except (ValueError, TypeError):
                continue  # a damaged row costs one contact, not the start-up
        return out

    def close(self) -> None:
        self.db.close()


def _record(r) -> StoredRecord:
    key, blob = bytes(r[0]), bytes(r[1])
    if len(key) != 32:
        raise ValueError("not a record key")
    return StoredRecord(key, blob, float(r[2]), bool(r[3]), None if r[4] is None else int(r[4]), float(r[5]),
                        bytes(r[6]), str(r[7]))

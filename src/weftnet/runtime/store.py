"""SQLite persistence of a node's records and routing table (stdlib sqlite3).

One file, ``node.db`` in the state directory, in WAL mode. ``SqliteStore``
implements the DHT's RecordStore protocol (core/dht/store.py), so a restarted
node still holds every record it held; the routing table's contacts are saved
on shutdown and periodically, so a restarted node rejoins at once from them.
The schema carries a version; an unknown version is refused, not guessed at.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

from weftnet.core.contact import Contact
from weftnet.core.dht.store import StoredRecord
from weftnet.errors import ConfigError

__all__ = ["SqliteStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY, blob BLOB NOT NULL, expires REAL NOT NULL,
    own INTEGER NOT NULL, seq INTEGER, stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    public_key BLOB PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, saved_at REAL NOT NULL
);
"""


class SqliteStore:
    def __init__(self, path: Path | str):
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path}: not a usable weftnet database ({exc})") from None
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise ConfigError(f"{path}: database schema {row[0]} is not {SCHEMA_VERSION}; upgrade weftnet")

    # RecordStore protocol
    def get(self, key: bytes) -> StoredRecord | None:
        row = self.db.execute(
            "SELECT key, blob, expires, own, seq, stored_at FROM records WHERE key=?", (key,)
        ).fetchone()
        return None if row is None else StoredRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5])

    def put(self, record: StoredRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",
            (record.key, record.blob, record.expires, int(record.own), record.seq, record.stored_at),
        )

    def delete(self, key: bytes) -> None:
        self.db.execute("DELETE FROM records WHERE key=?", (key,))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def records(self) -> Iterator[StoredRecord]:
        rows = self.db.execute("SELECT key, blob, expires, own, seq, stored_at FROM records ORDER BY key").fetchall()
        return iter(StoredRecord(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in rows)

    # routing table
    def save_contacts(self, contacts: list[Contact], now: float) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM contacts")
            self.db.executemany(
                "INSERT OR REPLACE INTO contacts VALUES (?, ?, ?, ?)",
                [(c.public_key, c.endpoint[0], c.endpoint[1], now) for c in contacts],
            )

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

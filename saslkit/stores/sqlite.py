"""SQLite user store: one file, WAL journal, versioned schema.

Per user it keeps the argon2id hash and, per SCRAM hash, the salt, iteration
count, StoredKey and ServerKey (RFC 5802 §3): never a password.  Busy or
unreachable databases raise :class:`TemporaryFailure`; corrupt ones
:class:`StoreError`.  Safe to share between threads (one connection per
thread) and processes (SQLite locking).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..credentials import DEFAULT_ITERATIONS, ScramCredential, UserRecord
from ..errors import StoreError, TemporaryFailure, UsageError

__all__ = ["SCHEMA_VERSION", "SQLiteUserStore"]

SCHEMA_VERSION = 1
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT,
    created       REAL NOT NULL,
    updated       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scram_credentials (
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    salt       BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    stored_key BLOB NOT NULL,
    server_key BLOB NOT NULL,
    PRIMARY KEY (username, hash)
);
"""


class SQLiteUserStore:
    """A :class:`~saslkit.credentials.MutableUserStore` in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_iterations: int | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._clock = clock
        self._local = threading.local()
        self._read(lambda db: db.executescript(_SCHEMA))
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]} is newer than this saslkit")
            if default_iterations is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('default_iterations', ?)", (str(default_iterations),)
                )
            row = db.execute("SELECT value FROM meta WHERE key='default_iterations'").fetchone()
            self._default_iterations = int(row[0]) if row else DEFAULT_ITERATIONS

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; SQLite errors become saslkit errors."""
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise TemporaryFailure(f"user store {self.path} unavailable: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"user store {self.path} is damaged: {exc}") from exc

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._connect())
        except sqlite3.OperationalError as exc:
            raise TemporaryFailure(f"user store {self.path} unavailable: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"user store {self.path} is damaged: {exc}") from exc

    @property
    def default_iterations(self) -> int:
        return self._default_iterations

    def get_user(self, username: str) -> UserRecord | None:
        def q(db: sqlite3.Connection) -> UserRecord | None:
            row = db.execute("SELECT password_hash FROM users WHERE username=?", (username,)).fetchone()
            if row is None:
                return None
            scram = {
                h: ScramCredential(h, salt, it, sk, svk)
                for h, salt, it, sk, svk in db.execute(
                    "SELECT hash, salt, iterations, stored_key, server_key FROM scram_credentials "
                    "WHERE username=?",
                    (username,),
                )
            }
            return UserRecord(username, scram, row[0])

        try:
            return self._read(q)
        except UsageError as exc:  # a row that does not make a valid credential
            raise StoreError(f"user store {self.path}: bad credential for {username!r}: {exc}") from exc

    def put_user(self, record: UserRecord) -> None:
        """Insert or replace a user and all its credentials atomically."""
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO users (username, password_hash, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(username) DO UPDATE SET password_hash=excluded.password_hash, "
                "updated=excluded.updated",
                (record.username, record.password_hash, now, now),
            )
            db.execute("DELETE FROM scram_credentials WHERE username=?", (record.username,))
            db.executemany(
                "INSERT INTO scram_credentials VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (record.username, c.hash_name, c.salt, c.iterations, c.stored_key, c.server_key)
                    for c in record.scram.values()
                ],
            )

    def delete_user(self, username: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM users WHERE username=?", (username,)).rowcount > 0

    def list_users(self) -> list[str]:
        query = "SELECT username FROM users ORDER BY username"
        return self._read(lambda db: [r[0] for r in db.execute(query)])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

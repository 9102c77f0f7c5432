"""SQLite user and token stores: one file, WAL journal, versioned schema.

Per user it keeps the argon2id hash and, per SCRAM hash, the salt, iteration
count, StoredKey and ServerKey (RFC 5802 §3): never a password.  Token
records (never tokens) may live in the same file, under their own schema
version.  Busy or
unreachable databases raise :class:`TemporaryFailure`; corrupt ones
:class:`StoreError`.  Safe to share between threads (one connection per
thread) and processes (SQLite locking).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from ..credentials import (
    ARGON2_B64,
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MAX_SALT_LENGTH,
    SCRAM_HASHES,
    CredentialProfile,
    ScramCredential,
    UserRecord,
    _check_prepared,
    prepare_username,
)
from ..errors import StoreError, TemporaryFailure, UsageError
from ..tokens.records import StokenRecord, TokenRecord

__all__ = ["SCHEMA_VERSION", "TOKEN_SCHEMA_VERSION", "SQLiteTokenStore", "SQLiteUserStore"]

SCHEMA_VERSION = 1
TOKEN_SCHEMA_VERSION = 1
_T = TypeVar("_T")
_log = logging.getLogger("saslkit.stores")

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


def _create_private(path: Path, what: str) -> None:
    """Create the database file 0600 whatever the umask, and refuse one others can read.

    The file holds argon2 hashes and SCRAM StoredKey/ServerKey (RFC 5802 §9:
    they allow impersonating the server and dictionary attacks).  It is created
    here, before sqlite3 opens it, because SQLite gives a new file 0644 under
    the usual umask; SQLite then gives ``-wal`` and ``-shm`` the main file's mode.
    An existing file (or ``-wal``/``-shm``) accessible by group or others is a
    :class:`StoreError` naming ``chmod 600``, as for the key ring.
    """
    if os.name != "posix" or str(path) == ":memory:":
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TemporaryFailure(f"{what} {path} cannot be created: {exc.strerror}") from exc
    else:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600: a umask such as 0o277 must not make it unwritable
        finally:
            os.close(fd)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = name.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise TemporaryFailure(f"{what} {name} cannot be read: {exc.strerror}") from exc
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISREG(st.st_mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StoreError(
                f"{what} {name} is accessible by group or others (mode {mode:o}); run chmod 600 on it"
            )


class _SQLiteFile:
    """One SQLite file: a WAL connection per thread, and SQLite errors as saslkit errors.

    ``OperationalError`` (locked, busy, cannot open) is a :class:`TemporaryFailure`;
    any other ``DatabaseError`` (corruption, constraint) a :class:`StoreError`.
    """

    _what = "store"
    #: WAL readers never wait for a writer, and a login's writes (PLAIN's upgrade, token ``touch``)
    #: never wait either (busy_timeout 0): store reads may run on an event loop
    #: (``ServerAuth.start_may_block``; a STOKEN login's refresh does wait, and always blocks).
    reads_may_block: bool = False

    def __init__(self, path: str | os.PathLike[str], timeout: float) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._local = threading.local()
        _create_private(self.path, self._what)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _translate(self, exc: sqlite3.DatabaseError) -> StoreError:
        """The saslkit error for ``exc``; an unavailable or damaged store is logged with its cause."""
        if isinstance(exc, sqlite3.OperationalError):
            _log.warning("%s %s unavailable: %s", self._what, self.path, exc)
            return TemporaryFailure(f"{self._what} {self.path} unavailable: {exc}")
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"{self._what} {self.path}: {exc}")
        _log.error("%s %s is damaged: %s", self._what, self.path, exc)
        return StoreError(f"{self._what} {self.path} is damaged: {exc}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue up, no upgrade deadlock)."""
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc

    @contextmanager
    def _tx_no_wait(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that fails at once (:class:`TemporaryFailure`) rather than wait for another writer.

        For best-effort writes on a login's path, which must never wait behind
        another process's lock: ``busy_timeout`` is 0 for it, restored after.
        """
        try:
            db = self._connect()
            db.execute("PRAGMA busy_timeout=0")
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc
        try:
            with self._tx() as tx:
                yield tx
        finally:
            with suppress(sqlite3.DatabaseError):
                db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._connect())
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class SQLiteUserStore(_SQLiteFile):
    """A :class:`~saslkit.credentials.MutableUserStore` in one SQLite file."""

    _what = "user store"
    #: A PLAIN login of a user imported without an argon2 hash rewrites it with the defaults.
    upgrade_on_login = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_iterations: int | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, timeout)
        self._clock = clock
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

    @property
    def default_iterations(self) -> int:
        return self._default_iterations

    def get_user(self, username: str) -> UserRecord | None:
        """The user and its credentials, in one query whose work does not tell whether it exists.

        For a name not in the store the query reads another user's rows and the
        record is built and dropped (RFC 5802 §9: a lookup must not time which
        names exist); ``changed`` is filled from ``users.updated``.
        """

        def q(db: sqlite3.Connection) -> UserRecord | None:
            rows = db.execute(_GET_USER_QUERY, {"name": username}).fetchall()
            if not rows:
                return None
            found = bool(rows[0][0])
            try:
                scram = {
                    h: ScramCredential(h, salt, it, sk, svk)
                    for _, _, _, h, salt, it, sk, svk in rows
                    if h is not None
                }
            except UsageError:
                if found:
                    raise
                return None  # another user's bad row is not this lookup's error
            record = UserRecord(username, scram, rows[0][1], changed=rows[0][2])
            return record if found else None

        try:
            return self._read(q)
        except UsageError as exc:  # a row that does not make a valid credential
            raise StoreError(f"user store {self.path}: bad credential for {username!r}: {exc}") from exc

    def put_user(self, record: UserRecord) -> None:
        """Insert or replace a user and all its credentials atomically; ``changed`` (``updated``) becomes now.

        ``record.username`` must already be prepared (:func:`~saslkit.credentials.prepare_username`,
        which :func:`~saslkit.credentials.make_user` applies): any other name is a :class:`UsageError`,
        never a second account beside the one logins reach.
        """
        _check_prepared(record)
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO users (username, password_hash, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(username) DO UPDATE SET password_hash=excluded.password_hash, "
                "updated=excluded.updated",
                (record.username, record.password_hash, now, now),
            )
            self._put_scram(db, record)

    def upgrade_credentials(self, current: UserRecord, upgraded: UserRecord) -> bool:
        """Give ``current``'s user ``upgraded``'s credentials if nothing changed them since ``current`` was read.

        For rehashing once a login revealed the password (PLAIN of a user
        imported with SCRAM keys only).  A compare-and-set on ``updated`` and
        the argon2 hash, so a password change made meanwhile is never undone;
        ``updated`` is kept, so this is no credential change and the user's
        tokens stay valid.  Never waits for another writer: False when the
        database is busy, the user changed or is gone.
        """
        _check_prepared(upgraded)
        if upgraded.username != current.username or current.changed is None:
            return False
        try:
            with self._tx_no_wait() as db:
                replaced = db.execute(
                    "UPDATE users SET password_hash=? WHERE username=? AND updated=? AND password_hash IS ?",
                    (upgraded.password_hash, current.username, current.changed, current.password_hash),
                ).rowcount
                if replaced != 1:
                    return False
                self._put_scram(db, upgraded)
                return True
        except TemporaryFailure:
            return False

    def add_user(self, record: UserRecord) -> bool:
        """Insert a new user; False, touching nothing, if the (prepared) name exists.

        One transaction and the primary key decide, so two racing adds cannot both win.
        """
        _check_prepared(record)
        now = self._clock()
        with self._tx() as db:
            inserted = db.execute(
                "INSERT INTO users (username, password_hash, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(username) DO NOTHING",
                (record.username, record.password_hash, now, now),
            ).rowcount
            if not inserted:
                return False
            self._put_scram(db, record)
            return True

    @staticmethod
    def _put_scram(db: sqlite3.Connection, record: UserRecord) -> None:
        db.execute("DELETE FROM scram_credentials WHERE username=?", (record.username,))
        db.executemany(
            "INSERT INTO scram_credentials VALUES (?, ?, ?, ?, ?, ?)",
            [
                (record.username, c.hash_name, c.salt, c.iterations, c.stored_key, c.server_key)
                for c in record.scram.values()
            ],
        )

    def delete_user(self, username: str) -> bool:
        """Delete the user ``prepare_username(username)`` names.

        A row stored under exactly ``username`` goes too: older saslkit could
        store an unprepared name that no login reaches.
        """
        try:
            prepared = prepare_username(username)
        except UsageError:
            prepared = username
        with self._tx() as db:
            return db.execute("DELETE FROM users WHERE username IN (?, ?)", (prepared, username)).rowcount > 0

    def list_users(self) -> list[str]:
        query = "SELECT username FROM users ORDER BY username"
        return self._read(lambda db: [r[0] for r in db.execute(query)])

    #: How long :meth:`credential_profiles` serves a computed answer (seconds).
    profiles_ttl = 60.0
    _profiles_cache: tuple[float, dict[CredentialProfile, int]] | None = None

    def credential_profiles(self) -> dict[CredentialProfile, int]:
        """How many users have each :class:`~saslkit.credentials.CredentialProfile` (read-only).

        One grouped query, then cached for :attr:`profiles_ttl` seconds: unknown
        names are shown parameters drawn from these (:mod:`saslkit.unknown_users`).
        """
        cached = self._profiles_cache
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.profiles_ttl:
            return cached[1]
        rows = self._read(lambda db: db.execute(_PROFILES_QUERY, {"b64": ARGON2_B64}).fetchall())
        counts = profiles_from_rows(rows)
        self._profiles_cache = (now, counts)
        return counts


def profiles_from_rows(rows: Iterable[Sequence[Any]]) -> dict[CredentialProfile, int]:
    """Count :class:`CredentialProfile` from ``(signature, shared salt, argon2 parameters, count)`` rows.

    ``signature`` is ``"hash:iterations:salt-length ..."`` per user group, as the stores' grouped queries
    compute it; parts out of range are dropped (they make no valid credential).
    """
    counts: dict[CredentialProfile, int] = {}
    for signature, shared, argon, count in rows:
        scram = []
        for part in (signature or "").split():
            hash_name, iterations, salt_length = part.rsplit(":", 2)
            if (hash_name in SCRAM_HASHES and 1 <= int(iterations) <= MAX_ITERATIONS
                    and 1 <= int(salt_length) <= MAX_SALT_LENGTH):
                scram.append((hash_name, int(iterations), int(salt_length)))
        scram.sort()
        profile = CredentialProfile(tuple(scram), bool(shared) or len(scram) <= 1, argon)
        counts[profile] = counts.get(profile, 0) + int(count)
    return counts


# The user named, or (so that a miss costs what a hit does) the first user in the table.
_GET_USER_QUERY = """
SELECT u.username = :name, u.password_hash, u.updated, c.hash, c.salt, c.iterations, c.stored_key, c.server_key
FROM users u LEFT JOIN scram_credentials c ON c.username = u.username
WHERE u.username = COALESCE((SELECT username FROM users WHERE username = :name), (SELECT username FROM users LIMIT 1))
"""

# Per user: "hash:iterations:salt-length ...", one salt or not, argon2 parameters
# (credentials.argon2_parameters: salt and hash cut off the PHC string); then counted.
_PROFILES_QUERY = """
SELECT signature, shared, argon2, COUNT(*) FROM (
    SELECT group_concat(s.hash || ':' || s.iterations || ':' || length(s.salt), ' ') AS signature,
           COUNT(DISTINCT s.salt) <= 1 AS shared,
           rtrim(rtrim(rtrim(rtrim(u.password_hash, :b64), '$'), :b64), '$') AS argon2
    FROM users u LEFT JOIN scram_credentials s ON s.username = u.username
    GROUP BY u.username
) GROUP BY signature, shared, argon2
"""


_RECORD_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id        TEXT PRIMARY KEY,
    user      TEXT NOT NULL,
    type      TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    created   REAL NOT NULL,
    expires   REAL,
    mechanism TEXT,
    label     TEXT,
    last_used REAL,
    revoked   REAL
);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user, created);
CREATE INDEX IF NOT EXISTS tokens_created ON tokens(created);
CREATE INDEX IF NOT EXISTS tokens_live
    ON tokens(user, created, id, expires, type, key_id, mechanism, label, last_used) WHERE revoked IS NULL;
CREATE TABLE IF NOT EXISTS stokens (
    remote  TEXT NOT NULL,
    local   TEXT NOT NULL,
    id      TEXT NOT NULL,
    key_id  TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (remote, local)
);
"""
_SELECT_RECORDS = "SELECT id, user, type, key_id, created, expires, mechanism, label, last_used, revoked FROM tokens"
#: ``SQLiteTokenStore.list_live``: ?1 user, ?2 now, ?3 slots, ?4 and ?5 the padding rows' id and key id.
#: The first column says which rows are padding; the left-most subquery keeps the index order.
_SELECT_LIVE = (
    "WITH RECURSIVE pad(n) AS ("
    " SELECT (SELECT count(*) FROM tokens INDEXED BY tokens_live"
    " WHERE user=?1 AND revoked IS NULL AND (expires IS NULL OR expires>?2)) + 1"
    " UNION ALL SELECT n + 1 FROM pad WHERE n < ?3)"
    " SELECT * FROM (SELECT 0, id, user, type, key_id, created, expires, mechanism, label, last_used, NULL"
    " FROM tokens INDEXED BY tokens_live WHERE user=?1 AND revoked IS NULL AND (expires IS NULL OR expires>?2)"
    " ORDER BY created, id)"
    " UNION ALL SELECT 1, ?4, ?1, 'RANDOM', ?5, 0.0, NULL, NULL, NULL, NULL, NULL FROM pad WHERE n <= ?3"
)
#: Padding rows are the size of a RANDOM token's record.
_PAD_ID = "A" * 43
_PAD_KEY_ID = "token-1700000000-abcdef"
_SELECT_STOKEN = (
    "SELECT remote, local, id, key_id, created, expires FROM stokens WHERE remote=? AND local=? AND expires>?"
)


class SQLiteTokenStore(_SQLiteFile):
    """A :class:`~saslkit.tokens.records.TokenStore` in one SQLite file.

    It may share the user store's file: its schema version is kept under its
    own ``meta`` key (``token_schema_version``), so the two evolve apart.
    Expired records stay (``get`` reports them, the caller checks
    :meth:`TokenRecord.active`); expired stokens count as absent.
    """

    _what = "token store"

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(path, timeout)
        self._clock = clock
        self._read(lambda db: db.executescript(_RECORD_SCHEMA))
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='token_schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('token_schema_version', ?)", (str(TOKEN_SCHEMA_VERSION),))
            elif int(row[0]) > TOKEN_SCHEMA_VERSION:
                raise StoreError(f"{self.path}: token schema version {row[0]} is newer than this saslkit")

    def put(self, record: TokenRecord) -> None:
        """Insert a new record; an id already stored is a :class:`StoreError`."""
        r = record
        row = (r.id, r.user, r.type, r.key_id, r.created, r.expires, r.mechanism, r.label, r.last_used, r.revoked)
        with self._tx() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def get(self, token_id: str) -> TokenRecord | None:
        """One primary-key lookup, no transaction: this is on every token verification."""
        row = self._read(lambda db: db.execute(_SELECT_RECORDS + " WHERE id=?", (token_id,)).fetchone())
        return None if row is None else TokenRecord(*row)

    def list_live(self, user: str, now: float, slots: int = 0) -> list[TokenRecord]:
        """``user``'s records neither revoked nor expired at ``now``, oldest first (the HT lookup).

        The partial index ``tokens_live`` holds unrevoked records only and
        covers every column read, so revoked rows are never visited and
        expired ones are skipped inside SQLite.  Fewer than ``slots`` live
        records are followed by constant padding rows, fetched and decoded
        like real ones and dropped last, so the call costs about the same for
        0 to ``slots`` records (``bench_tokens.py``).
        """
        args = (user, now, slots, _PAD_ID, _PAD_KEY_ID)

        def read(db: sqlite3.Connection) -> list[TokenRecord]:
            rows = [(r[0], TokenRecord(*r[1:])) for r in db.execute(_SELECT_LIVE, args)]
            return [record for padding, record in rows if not padding]

        return self._read(read)

    def list(self, user: str | None = None) -> list[TokenRecord]:
        args: tuple[str, ...]
        if user is None:
            query, args = _SELECT_RECORDS + " ORDER BY created, id", ()
        else:  # the (user, created) index
            query, args = _SELECT_RECORDS + " WHERE user=? ORDER BY created, id", (user,)
        return self._read(lambda db: [TokenRecord(*r) for r in db.execute(query, args)])

    def revoke(self, token_id: str, at: float) -> bool:
        """Revoke once: a second revocation keeps the first time (it is what the user saw)."""
        with self._tx() as db:
            cur = db.execute("UPDATE tokens SET revoked=COALESCE(revoked, ?) WHERE id=?", (at, token_id))
            return cur.rowcount > 0

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        """Revoke the live matches (``created < before``) in one statement; return how many."""
        with self._tx() as db:
            return db.execute(
                "UPDATE tokens SET revoked=?1 WHERE revoked IS NULL AND (?2 IS NULL OR user=?2) "
                "AND (?3 IS NULL OR created<?3)",
                (at, user, before),
            ).rowcount

    def touch(self, token_id: str, at: float) -> None:
        """Best effort, never waits: while another connection holds the write lock it fails at once.

        A login must not wait behind another process's write (issue 8 item 9):
        this one statement runs with ``busy_timeout`` 0 (restored after), so a
        busy database raises :class:`TemporaryFailure` at once and
        :meth:`TokenService.mark_used` skips the write.
        """
        try:
            db = self._connect()
            db.execute("PRAGMA busy_timeout=0")
            try:
                db.execute("UPDATE tokens SET last_used=? WHERE id=?", (at, token_id))
            finally:
                db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc

    def stoken_get(self, remote: str, local: str) -> StokenRecord | None:
        row = self._read(lambda db: db.execute(_SELECT_STOKEN, (remote, local, self._clock())).fetchone())
        return None if row is None else StokenRecord(*row)

    def stoken_put_if_absent(self, record: StokenRecord) -> StokenRecord:
        """Check and insert under one write lock, so racing processes agree on one record."""
        r = record
        with self._tx() as db:
            row = db.execute(_SELECT_STOKEN, (r.remote, r.local, self._clock())).fetchone()
            if row is not None:
                return StokenRecord(*row)
            db.execute(
                "INSERT OR REPLACE INTO stokens VALUES (?, ?, ?, ?, ?, ?)",
                (r.remote, r.local, r.id, r.key_id, r.created, r.expires),
            )
            return record

    def stoken_refresh(self, remote: str, local: str, expires: float) -> None:
        """Only forward, and only a live token: an expired one must not come back."""
        with self._tx() as db:
            db.execute(
                "UPDATE stokens SET expires=MAX(expires, ?) WHERE remote=? AND local=? AND expires>?",
                (expires, remote, local, self._clock()),
            )

    def stoken_delete(self, remote: str, local: str) -> bool:
        """True only if a live token went (an expired one already counted as absent)."""
        with self._tx() as db:
            row = db.execute("SELECT expires FROM stokens WHERE remote=? AND local=?", (remote, local)).fetchone()
            db.execute("DELETE FROM stokens WHERE remote=? AND local=?", (remote, local))
            return row is not None and row[0] > self._clock()

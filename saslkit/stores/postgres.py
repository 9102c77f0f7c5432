"""PostgreSQL user and token stores: many front-ends sharing one database (psycopg 3, psycopg_pool).

Opened by URL (``postgresql://user@host:port/db`` or ``postgres://``), the
same for ``--db`` (users) and ``--store`` (tokens); both live in one database
under tables prefixed ``saslkit_``.  What they hold is what the SQLite stores
hold (never a password, never a token).

* **Schema**: numbered migrations (:data:`MIGRATIONS`), applied in order at
  open under a transaction-level advisory lock, so front-ends starting
  together migrate once; ``saslkit_schema`` records the version, and a
  database newer than this saslkit is a :class:`StoreError`.
* **Races**: the username is the primary key, so of two concurrent
  ``add_user`` of one prepared name exactly one inserts; permanent
  submission tokens are claimed with ``INSERT … ON CONFLICT``.
* **Credential change and token revocation** are one transaction:
  :meth:`PostgresUserStore.put_user` and :meth:`~PostgresUserStore.delete_user`
  revoke the user's tokens in ``saslkit_tokens`` before they commit, so no
  reader ever sees the new credentials beside a live old token.
* **Outages**: a refused, dropped or timed-out connection and an exhausted
  pool are a :class:`TemporaryFailure` (servers answer 454 / ``NO
  [UNAVAILABLE]``), never a success; anything else is a :class:`StoreError`.
  A read that failed on a connection the server closed (a restart) is
  retried once on a fresh one.  A store opened while the database is down
  opens anyway and migrates on its first successful statement, so
  front-ends may start before the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from ..credentials import (
    ARGON2_B64,
    DEFAULT_ITERATIONS,
    CredentialProfile,
    ScramCredential,
    UserRecord,
    _check_prepared,
    prepare_username,
)
from ..errors import StoreError, TemporaryFailure, UsageError
from ..tokens.records import StokenRecord, TokenRecord
from .sqlite import _PAD_ID, _PAD_KEY_ID, profiles_from_rows

__all__ = ["MIGRATIONS", "POSTGRES_SCHEMES", "SCHEMA_VERSION", "PostgresTokenStore", "PostgresUserStore"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: A login waits on these: an unreachable database must fail fast (seconds).
CONNECT_TIMEOUT = 2
POOL_TIMEOUT = 2.0
#: Connections per process (see docs/deployment.md for sizing).
DEFAULT_POOL_SIZE = 10

_T = TypeVar("_T")

#: Schema migrations: MIGRATIONS[n - 1] takes the database from version n - 1 to n.  Never edit one
#: that has shipped; append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE saslkit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE saslkit_users (
        username      TEXT PRIMARY KEY,
        password_hash TEXT,
        created       DOUBLE PRECISION NOT NULL,
        updated       DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE saslkit_scram_credentials (
        username   TEXT NOT NULL REFERENCES saslkit_users(username) ON DELETE CASCADE,
        hash       TEXT NOT NULL,
        salt       BYTEA NOT NULL,
        iterations INTEGER NOT NULL,
        stored_key BYTEA NOT NULL,
        server_key BYTEA NOT NULL,
        PRIMARY KEY (username, hash)
    );
    CREATE TABLE saslkit_tokens (
        id        TEXT PRIMARY KEY,
        username  TEXT NOT NULL,
        type      TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        created   DOUBLE PRECISION NOT NULL,
        expires   DOUBLE PRECISION,
        mechanism TEXT,
        label     TEXT,
        last_used DOUBLE PRECISION,
        revoked   DOUBLE PRECISION
    );
    CREATE INDEX saslkit_tokens_user ON saslkit_tokens (username, created, id);
    CREATE INDEX saslkit_tokens_created ON saslkit_tokens (created);
    CREATE INDEX saslkit_tokens_live ON saslkit_tokens (username, created, id) WHERE revoked IS NULL;
    CREATE TABLE saslkit_stokens (
        remote  TEXT NOT NULL,
        local   TEXT NOT NULL,
        id      TEXT NOT NULL,
        key_id  TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        expires DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (remote, local)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: pg_advisory_xact_lock key of the migration (any constant: "saslkit" in ASCII).
_MIGRATION_LOCK = 0x7361736C6B6974


def _no_nul(*values: str | None) -> bool:
    """PostgreSQL text cannot hold NUL: such a name or id is simply not stored (never an error)."""
    return not any(v is not None and "\x00" in v for v in values)


class _PostgresDatabase:
    """One connection pool and PostgreSQL errors as saslkit errors."""

    _what = "store"
    #: Every read is a network round trip: a login step reading it runs off the event loop.
    reads_may_block: bool = True

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, pool_timeout: float = POOL_TIMEOUT) -> None:
        if not url.startswith(POSTGRES_SCHEMES):
            raise UsageError(f"not a PostgreSQL URL: expected postgresql://…, got {url.split('://')[0]}://…")
        url, pool_size = _pool_size_from_url(url, pool_size)
        if pool_size < 1:
            raise UsageError("the PostgreSQL pool needs at least one connection")
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=0,
            max_size=pool_size,
            timeout=pool_timeout,
            # Give up a failing background reconnection soon: the next request starts a fresh one at once,
            # so service resumes within seconds of the database's return.
            reconnect_timeout=5.0,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT, "application_name": "saslkit"},
            name=f"saslkit-{self._what.replace(' ', '-')}",
            open=True,
        )
        self._ready = False
        self._ready_lock = threading.Lock()
        try:
            self._ensure_ready()
        except TemporaryFailure:
            pass  # the database is down: front-ends may start before it, and prepare it on first use

    def _ensure_ready(self) -> None:
        """Migrate the schema (and :meth:`_prepare`) once per store object, before its first statement."""
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                with self._raw_tx() as conn:
                    self._migrate(conn)
                    self._prepare(conn)
                self._ready = True

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        """What a store reads or writes once the schema is there (in the migration's transaction)."""

    def _translate(self, exc: psycopg.Error) -> StoreError:
        if isinstance(exc, psycopg.OperationalError | pg_errors.AdminShutdown):
            return TemporaryFailure(f"{self._what} (PostgreSQL) unavailable: {_first_line(exc)}")
        return StoreError(f"{self._what} (PostgreSQL) failed: {_first_line(exc)}")

    def _recover(self) -> None:
        """After a connection error: drop the pool's idle connections that no longer work (a restart)."""
        try:
            self._pool.check()
        except psycopg.Error:
            pass

    def _read(self, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run a read; retried once on a fresh connection if the one it had was dead (a server restart)."""
        self._ensure_ready()
        for attempt in (0, 1):
            conn: psycopg.Connection[Any] | None = None
            try:
                with self._pool.connection() as conn:
                    return fn(conn)
            except psycopg.Error as exc:
                if conn is None or not conn.broken or attempt:
                    if conn is not None and conn.broken:
                        self._recover()
                    raise self._translate(exc) from exc
                self._recover()
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction (never retried: it might have committed)."""
        self._ensure_ready()
        with self._raw_tx() as conn:
            yield conn

    @contextmanager
    def _raw_tx(self) -> Iterator[psycopg.Connection[Any]]:
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            if conn is not None and conn.broken:
                self._recover()
            raise self._translate(exc) from exc

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS saslkit_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM saslkit_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self._what} (PostgreSQL): schema version {version} is newer than this saslkit")
        for sql in MIGRATIONS[version:]:
            conn.execute(sql.encode())  # several statements: no parameters, simple query protocol
        if row is None:
            conn.execute("INSERT INTO saslkit_schema VALUES (%s)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            conn.execute("UPDATE saslkit_schema SET version = %s", (SCHEMA_VERSION,))

    def close(self) -> None:
        self._pool.close()


def _pool_size_from_url(url: str, default: int) -> tuple[str, int]:
    """``…?pool_size=N`` sets the pool's size (saslkit's parameter, removed before libpq sees the URL)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    sizes = [v for k, v in query if k == "pool_size"]
    if not sizes:
        return url, default
    if not sizes[-1].isdigit():
        raise UsageError("pool_size in a PostgreSQL URL is a whole number of connections")
    rest = urlencode([(k, v) for k, v in query if k != "pool_size"])
    return urlunsplit(parts._replace(query=rest)), int(sizes[-1])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# The user named, or (so that a miss costs what a hit does) the first user in the table (as in SQLite).
_GET_USER_QUERY = """
SELECT u.username = %(name)s, u.password_hash, u.updated, c.hash, c.salt, c.iterations, c.stored_key, c.server_key
FROM saslkit_users u LEFT JOIN saslkit_scram_credentials c ON c.username = u.username
WHERE u.username = COALESCE((SELECT username FROM saslkit_users WHERE username = %(name)s),
                            (SELECT username FROM saslkit_users LIMIT 1))
"""

_PROFILES_QUERY = """
SELECT signature, shared, argon2, COUNT(*) FROM (
    SELECT string_agg(s.hash || ':' || s.iterations || ':' || length(s.salt), ' ') AS signature,
           COUNT(DISTINCT s.salt) <= 1 AS shared,
           rtrim(rtrim(rtrim(rtrim(u.password_hash, %(b64)s), '$'), %(b64)s), '$') AS argon2
    FROM saslkit_users u LEFT JOIN saslkit_scram_credentials s ON s.username = u.username
    GROUP BY u.username
) AS per_user GROUP BY signature, shared, argon2
"""


class PostgresUserStore(_PostgresDatabase):
    """A :class:`~saslkit.credentials.MutableUserStore` in PostgreSQL, shared by every front-end."""

    _what = "user store"
    #: A PLAIN login of a user imported without an argon2 hash rewrites it with the defaults.
    upgrade_on_login = True
    #: How long :meth:`credential_profiles` serves a computed answer (seconds).
    profiles_ttl = 60.0

    def __init__(
        self,
        url: str,
        *,
        default_iterations: int | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._profiles_cache: tuple[float, dict[CredentialProfile, int]] | None = None
        self._profiles_lock = threading.Lock()
        self._requested_iterations = default_iterations
        self._default_iterations = DEFAULT_ITERATIONS
        super().__init__(url, pool_size=pool_size)

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        if self._requested_iterations is not None:
            conn.execute(
                "INSERT INTO saslkit_meta VALUES ('default_iterations', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(self._requested_iterations),),
            )
        row = conn.execute("SELECT value FROM saslkit_meta WHERE key = 'default_iterations'").fetchone()
        self._default_iterations = int(row[0]) if row else DEFAULT_ITERATIONS

    @property
    def default_iterations(self) -> int:
        """Iterations for new users (stored in the database); the default until it could be read."""
        try:
            self._ensure_ready()
        except TemporaryFailure:
            pass
        return self._default_iterations

    def get_user(self, username: str) -> UserRecord | None:
        """The user and its credentials in one query whose work does not tell whether it exists (RFC 5802 §9)."""
        if not _no_nul(username):
            return None

        def q(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(_GET_USER_QUERY, {"name": username}).fetchall()

        rows = self._read(q)
        if not rows:
            return None
        found = bool(rows[0][0])
        try:
            scram = {
                h: ScramCredential(h, bytes(salt), it, bytes(sk), bytes(svk))
                for _, _, _, h, salt, it, sk, svk in rows
                if h is not None
            }
        except UsageError as exc:
            if found:
                raise StoreError(f"user store (PostgreSQL): bad credential for {username!r}: {exc}") from exc
            return None  # another user's bad row is not this lookup's error
        record = UserRecord(username, scram, rows[0][1], changed=rows[0][2])
        return record if found else None

    @staticmethod
    def _put_scram(conn: psycopg.Connection[Any], record: UserRecord) -> None:
        conn.execute("DELETE FROM saslkit_scram_credentials WHERE username = %s", (record.username,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO saslkit_scram_credentials VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (record.username, c.hash_name, c.salt, c.iterations, c.stored_key, c.server_key)
                    for c in record.scram.values()
                ],
            )

    @staticmethod
    def _revoke_tokens(conn: psycopg.Connection[Any], names: tuple[str, ...], at: float) -> int:
        cur = conn.execute(
            "UPDATE saslkit_tokens SET revoked = %s WHERE username = ANY(%s) AND revoked IS NULL", (at, list(names))
        )
        return cur.rowcount

    def put_user(self, record: UserRecord) -> None:
        """Insert or replace a user and its credentials, revoking its tokens, in one transaction.

        ``changed`` becomes now.  The name must already be prepared (a :class:`UsageError` otherwise).
        """
        _check_prepared(record)
        if not _no_nul(record.username):
            raise UsageError("a username cannot contain NUL")
        now = self._clock()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO saslkit_users (username, password_hash, created, updated) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, "
                "updated = excluded.updated",
                (record.username, record.password_hash, now, now),
            )
            self._put_scram(conn, record)
            self._revoke_tokens(conn, (record.username,), now)

    def add_user(self, record: UserRecord) -> bool:
        """Insert a new user; False, touching nothing, if the prepared name exists (the primary key decides)."""
        _check_prepared(record)
        if not _no_nul(record.username):
            raise UsageError("a username cannot contain NUL")
        now = self._clock()
        with self._tx() as conn:
            inserted = conn.execute(
                "INSERT INTO saslkit_users (username, password_hash, created, updated) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (username) DO NOTHING",
                (record.username, record.password_hash, now, now),
            ).rowcount
            if inserted != 1:
                return False
            self._put_scram(conn, record)
            return True

    def upgrade_credentials(self, current: UserRecord, upgraded: UserRecord) -> bool:
        """Compare-and-set rehash after a PLAIN login (see :meth:`SQLiteUserStore.upgrade_credentials`).

        Never waits: a row another transaction holds (``FOR UPDATE NOWAIT``) means False.
        """
        _check_prepared(upgraded)
        if upgraded.username != current.username or current.changed is None:
            return False
        try:
            with self._tx() as conn:
                row = conn.execute(
                    "SELECT 1 FROM saslkit_users WHERE username = %s AND updated = %s "
                    "AND password_hash IS NOT DISTINCT FROM %s FOR UPDATE NOWAIT",
                    (current.username, current.changed, current.password_hash),
                ).fetchone()
                if row is None:
                    return False
                conn.execute(
                    "UPDATE saslkit_users SET password_hash = %s WHERE username = %s",
                    (upgraded.password_hash, current.username),
                )
                self._put_scram(conn, upgraded)
                return True
        except StoreError:
            return False

    def delete_user(self, username: str) -> bool:
        """Delete the user ``prepare_username(username)`` names (or exactly ``username``) and revoke its tokens."""
        try:
            prepared = prepare_username(username)
        except UsageError:
            prepared = username
        names = tuple(n for n in dict.fromkeys((prepared, username)) if _no_nul(n))
        if not names:
            return False
        with self._tx() as conn:
            deleted = conn.execute("DELETE FROM saslkit_users WHERE username = ANY(%s)", (list(names),)).rowcount
            if deleted:
                self._revoke_tokens(conn, names, self._clock())
            return deleted > 0

    def list_users(self) -> list[str]:
        query = 'SELECT username FROM saslkit_users ORDER BY username COLLATE "C"'
        return self._read(lambda conn: [r[0] for r in conn.execute(query)])

    def credential_profiles(self) -> dict[CredentialProfile, int]:
        """How many users have each :class:`~saslkit.credentials.CredentialProfile`; cached :attr:`profiles_ttl` s."""
        cached = self._profiles_cache
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.profiles_ttl:
            return cached[1]
        with self._profiles_lock:
            rows = self._read(lambda conn: conn.execute(_PROFILES_QUERY, {"b64": ARGON2_B64}).fetchall())
            counts = profiles_from_rows(rows)
            self._profiles_cache = (now, counts)
        return counts


_SELECT_RECORDS = (
    "SELECT id, username, type, key_id, created, expires, mechanism, label, last_used, revoked FROM saslkit_tokens"
)
#: ``list_live``: the live rows oldest first, then padding rows up to ``slots`` (first column 1).
_SELECT_LIVE = """
WITH live AS (
    SELECT 0 AS pad, id, username, type, key_id, created, expires, mechanism, label, last_used, revoked
    FROM saslkit_tokens
    WHERE username = %(user)s AND revoked IS NULL AND (expires IS NULL OR expires > %(now)s)
)
SELECT * FROM live
UNION ALL
SELECT 1, %(pad_id)s, %(user)s, 'RANDOM', %(pad_key)s, 0.0, NULL, NULL, NULL, NULL, NULL
FROM generate_series((SELECT count(*) FROM live) + 1, %(slots)s)
ORDER BY pad, created, id
"""
_SELECT_STOKEN = (
    "SELECT remote, local, id, key_id, created, expires FROM saslkit_stokens "
    "WHERE remote = %s AND local = %s AND expires > %s"
)


class PostgresTokenStore(_PostgresDatabase):
    """A :class:`~saslkit.tokens.records.TokenStore` in PostgreSQL (the users' database, own tables)."""

    _what = "token store"

    def __init__(
        self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        super().__init__(url, pool_size=pool_size)

    def put(self, record: TokenRecord) -> None:
        """Insert a new record; an id already stored is a :class:`StoreError`."""
        r = record
        if not _no_nul(r.id, r.user, r.type, r.key_id, r.mechanism, r.label):
            raise StoreError("token store (PostgreSQL): a token record cannot contain NUL")
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO saslkit_tokens (id, username, type, key_id, created, expires, mechanism, label, "
                "last_used, revoked) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (r.id, r.user, r.type, r.key_id, r.created, r.expires, r.mechanism, r.label, r.last_used, r.revoked),
            )

    def get(self, token_id: str) -> TokenRecord | None:
        """One primary-key lookup, no transaction: this is on every token verification."""
        if not _no_nul(token_id):
            return None
        row = self._read(
            lambda conn: conn.execute(_SELECT_RECORDS + " WHERE id = %s", (token_id,)).fetchone()
        )
        return None if row is None else TokenRecord(*row)

    def list_live(self, user: str, now: float, slots: int = 0) -> list[TokenRecord]:
        """``user``'s records neither revoked nor expired at ``now``, oldest first, padded to ``slots`` rows.

        The partial index ``saslkit_tokens_live`` holds unrevoked rows only.
        """
        if not _no_nul(user):
            user = ""
        args = {"user": user, "now": now, "slots": slots, "pad_id": _PAD_ID, "pad_key": _PAD_KEY_ID}
        rows = self._read(lambda conn: conn.execute(_SELECT_LIVE, args).fetchall())
        return [TokenRecord(*row[1:]) for row in rows if not row[0]]

    def list(self, user: str | None = None) -> list[TokenRecord]:
        args: tuple[str, ...]
        if user is None:
            query, args = _SELECT_RECORDS + " ORDER BY created, id", ()
        elif not _no_nul(user):
            return []
        else:
            query = _SELECT_RECORDS + " WHERE username = %s ORDER BY created, id"
            args = (user,)
        return self._read(lambda conn: [TokenRecord(*r) for r in conn.execute(query, args)])

    def revoke(self, token_id: str, at: float) -> bool:
        """Revoke once: a second revocation keeps the first time."""
        if not _no_nul(token_id):
            return False
        with self._tx() as conn:
            return conn.execute(
                "UPDATE saslkit_tokens SET revoked = COALESCE(revoked, %s) WHERE id = %s", (at, token_id)
            ).rowcount > 0

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        """Revoke the live matches (``created < before``) in one statement; return how many."""
        if user is not None and not _no_nul(user):
            return 0
        with self._tx() as conn:
            return conn.execute(
                "UPDATE saslkit_tokens SET revoked = %(at)s WHERE revoked IS NULL "
                "AND (%(user)s::text IS NULL OR username = %(user)s) "
                "AND (%(before)s::float8 IS NULL OR created < %(before)s)",
                {"at": at, "user": user, "before": before},
            ).rowcount

    def touch(self, token_id: str, at: float) -> None:
        """Best effort, never waits for a row lock (``SKIP LOCKED``): a busy row is simply not touched."""
        if not _no_nul(token_id):
            return
        with self._tx() as conn:
            conn.execute(
                "UPDATE saslkit_tokens SET last_used = %s WHERE id = "
                "(SELECT id FROM saslkit_tokens WHERE id = %s FOR UPDATE SKIP LOCKED)",
                (at, token_id),
            )

    def stoken_get(self, remote: str, local: str) -> StokenRecord | None:
        if not _no_nul(remote, local):
            return None
        row = self._read(lambda conn: conn.execute(_SELECT_STOKEN, (remote, local, self._clock())).fetchone())
        return None if row is None else StokenRecord(*row)

    def stoken_put_if_absent(self, record: StokenRecord) -> StokenRecord:
        """One upsert replacing only an expired row: racing front-ends agree on one record."""
        r = record
        if not _no_nul(r.remote, r.local, r.id, r.key_id):
            raise StoreError("token store (PostgreSQL): a submission token cannot contain NUL")
        now = self._clock()
        with self._tx() as conn:
            stored = conn.execute(
                "INSERT INTO saslkit_stokens VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (remote, local) DO UPDATE "
                "SET id = excluded.id, key_id = excluded.key_id, created = excluded.created, "
                "expires = excluded.expires WHERE saslkit_stokens.expires <= %s RETURNING 1",
                (r.remote, r.local, r.id, r.key_id, r.created, r.expires, now),
            ).fetchone()
            if stored is not None:
                return record
            row = conn.execute(_SELECT_STOKEN, (r.remote, r.local, now)).fetchone()
        return record if row is None else StokenRecord(*row)

    def stoken_refresh(self, remote: str, local: str, expires: float) -> None:
        """Only forward, and only a live token: an expired one must not come back."""
        if not _no_nul(remote, local):
            return
        with self._tx() as conn:
            conn.execute(
                "UPDATE saslkit_stokens SET expires = GREATEST(expires, %s) "
                "WHERE remote = %s AND local = %s AND expires > %s",
                (expires, remote, local, self._clock()),
            )

    def stoken_delete(self, remote: str, local: str) -> bool:
        """True only if a live token went (an expired one already counted as absent)."""
        if not _no_nul(remote, local):
            return False
        with self._tx() as conn:
            row = conn.execute(
                "DELETE FROM saslkit_stokens WHERE remote = %s AND local = %s RETURNING expires", (remote, local)
            ).fetchone()
        return row is not None and row[0] > self._clock()

"""Stores behind small protocols, chosen by URL.

Users: ``sqlite:///path`` (or a plain path) or ``postgresql://…``.  Tokens: those, or ``redis://``,
``rediss://``, ``unix://`` (one Redis), ``redis-cluster://HOST:PORT[,HOST:PORT…]`` (Redis Cluster) and
``redis-sentinel://HOST:PORT[,HOST:PORT…]/SERVICE[/DB]`` (the master Redis Sentinel names).
psycopg and redis-py are imported only when such a URL is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ..credentials import MutableUserStore
from ..errors import UsageError
from ..penalty import PenaltyStore
from ..tokens.records import TokenStore
from .sqlite import SQLiteTokenStore, SQLiteUserStore

if TYPE_CHECKING:
    from .postgres import PostgresTokenStore, PostgresUserStore

__all__ = [
    "SQLiteTokenStore",
    "SQLiteUserStore",
    "is_server_url",
    "open_penalty_store",
    "open_token_store",
    "open_user_store",
    "redact_url",
    "sqlite_path",
]

#: URL schemes redis-py's ``Redis.from_url`` understands; then Redis Cluster's and Sentinel's.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
REDIS_CLUSTER_SCHEMES = ("redis-cluster://", "rediss-cluster://", "redis-sentinel://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_server_url(url_or_path: str) -> bool:
    """Whether a ``--db`` / ``--store`` value names a database server rather than a SQLite file."""
    return url_or_path.startswith(POSTGRES_SCHEMES + REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES)


def sqlite_path(url_or_path: str) -> Path:
    """``sqlite:///abs/x.db`` / ``sqlite://rel.db`` / ``x.db`` -> a filesystem path."""
    if url_or_path.startswith("sqlite://"):
        rest = url_or_path[len("sqlite://") :]
        if not rest or rest == "/":
            raise UsageError("sqlite URL needs a path: sqlite:///path/to/saslkit.db")
        # sqlite:///abs -> /abs ; sqlite://rel -> rel
        return Path(rest)
    if "://" in url_or_path:
        raise UsageError(f"expected a path or sqlite:/// URL, got {url_or_path.split('://')[0]}://…")
    if not url_or_path:
        raise UsageError("empty database path")
    return Path(url_or_path)


def redact_url(url: str) -> str:
    """``url`` with any password masked, fit for messages and logs (``redis://:***@host:6379/0``)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url.split("://", 1)[0] + "://***" if "@" in url else url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _postgres(what: str) -> tuple[type[PostgresUserStore], type[PostgresTokenStore]]:
    """The PostgreSQL store classes, imported only when a PostgreSQL URL is used (the ``postgres`` extra)."""
    from .._extras import require

    require("psycopg_pool", "postgres", f"the PostgreSQL {what}")
    from .postgres import PostgresTokenStore, PostgresUserStore

    return PostgresUserStore, PostgresTokenStore


def open_user_store(url_or_path: str) -> MutableUserStore:
    """Open (creating or migrating if needed) the user store named by ``--db`` / ``SASLKIT_DB``."""
    if url_or_path.startswith(POSTGRES_SCHEMES):
        return _postgres("user store")[0](url_or_path)
    if "://" in url_or_path and not url_or_path.startswith("sqlite://"):
        raise UsageError("users are kept in SQLite (a path or sqlite:///path) or PostgreSQL (postgresql://…), "
                         f"not {url_or_path.split('://')[0]}://")
    return SQLiteUserStore(sqlite_path(url_or_path))


def open_token_store(url_or_path: str) -> TokenStore:
    """Open the token store named by a URL: SQLite (a path or ``sqlite:///``), PostgreSQL, Redis or Redis Cluster.

    redis-py and psycopg are imported only here, so a SQLite-only deployment never loads them (nor needs the
    ``redis`` or ``postgres`` extra: without it such a URL raises :class:`~saslkit._extras.MissingExtra`).
    """
    if url_or_path.startswith(REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES):
        from .._extras import require

        require("redis", "redis", "the Redis token store")
        from .redis import RedisTokenStore

        try:
            return RedisTokenStore(url_or_path)
        except ValueError as exc:  # redis-py's URL parser: bad port, scheme, database number...
            raise UsageError(f"invalid Redis URL {redact_url(url_or_path)}: {exc}") from None
    if url_or_path.startswith(POSTGRES_SCHEMES):
        return _postgres("token store")[1](url_or_path)
    if "://" in url_or_path and not url_or_path.startswith("sqlite://"):
        raise UsageError("token store URL must be sqlite:///path, a path, postgresql://…, redis://host:port/db or "
                         f"redis-cluster://host:port[,host:port…], got {redact_url(url_or_path)!r}")
    return SQLiteTokenStore(sqlite_path(url_or_path))


def open_penalty_store(url: str, *, expire: float = 3600.0) -> PenaltyStore:
    """The auth penalty's counts: ``memory`` (this process only) or shared in Redis / Redis Cluster.

    A shared store makes failures seen by one front-end delay the next attempt on every other.
    """
    if url == "memory":
        from ..penalty import MemoryPenaltyStore

        return MemoryPenaltyStore(expire=expire)
    if url.startswith(REDIS_SCHEMES + REDIS_CLUSTER_SCHEMES):
        from .._extras import require

        require("redis", "redis", "the Redis penalty store")
        from .redis import RedisPenaltyStore

        return RedisPenaltyStore(url, expire=expire)
    raise UsageError("the penalty store is memory, redis://host:port/db or redis-cluster://host:port[,host:port…]")

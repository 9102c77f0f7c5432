"""Stores behind small protocols, chosen by URL (``sqlite:///path`` or a plain path; tokens also ``redis://``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError
from ..tokens.records import TokenStore
from .sqlite import SQLiteTokenStore, SQLiteUserStore

__all__ = ["SQLiteTokenStore", "SQLiteUserStore", "open_token_store", "open_user_store", "redact_url", "sqlite_path"]

#: URL schemes redis-py's ``Redis.from_url`` understands.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def sqlite_path(url_or_path: str) -> Path:
    """``sqlite:///abs/x.db`` / ``sqlite://rel.db`` / ``x.db`` -> a filesystem path."""
    if url_or_path.startswith("sqlite://"):
        rest = url_or_path[len("sqlite://") :]
        if not rest or rest == "/":
            raise UsageError("sqlite URL needs a path: sqlite:///path/to/saslkit.db")
        # sqlite:///abs -> /abs ; sqlite://rel -> rel
        return Path(rest)
    if "://" in url_or_path:
        raise UsageError(f"users are kept in SQLite: expected a path or sqlite:/// URL, got {url_or_path!r}")
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


def open_user_store(url_or_path: str) -> SQLiteUserStore:
    """Open (creating if needed) the user store named by ``--db`` / ``SASLKIT_DB``."""
    return SQLiteUserStore(sqlite_path(url_or_path))


def open_token_store(url_or_path: str) -> TokenStore:
    """Open the token store named by a URL: SQLite (a path or ``sqlite:///``) or Redis.

    redis-py is imported only here, so a SQLite-only deployment never loads it (nor needs the
    ``redis`` extra: without it a Redis URL raises :class:`~saslkit._extras.MissingExtra`).
    """
    if url_or_path.startswith(REDIS_SCHEMES):
        from .._extras import require

        require("redis", "redis", "the Redis token store")
        from .redis import RedisTokenStore

        try:
            return RedisTokenStore(url_or_path)
        except ValueError as exc:  # redis-py's URL parser: bad port, scheme, database number...
            raise UsageError(f"invalid Redis URL {redact_url(url_or_path)}: {exc}") from None
    if "://" in url_or_path and not url_or_path.startswith("sqlite://"):
        raise UsageError(f"token store URL must be sqlite:///path, a path or redis://host:port/db, got {url_or_path!r}")
    return SQLiteTokenStore(sqlite_path(url_or_path))

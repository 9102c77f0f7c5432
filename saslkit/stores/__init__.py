"""Stores behind small protocols, chosen by URL (``sqlite:///path`` or a plain path; tokens also ``redis://``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..tokens.records import TokenStore
from .sqlite import SQLiteTokenStore, SQLiteUserStore

__all__ = ["SQLiteTokenStore", "SQLiteUserStore", "open_token_store", "open_user_store", "sqlite_path"]

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

        return RedisTokenStore(url_or_path)
    if "://" in url_or_path and not url_or_path.startswith("sqlite://"):
        raise UsageError(f"token store URL must be sqlite:///path, a path or redis://host:port/db, got {url_or_path!r}")
    return SQLiteTokenStore(sqlite_path(url_or_path))

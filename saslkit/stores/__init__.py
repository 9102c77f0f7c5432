"""Stores behind small protocols, chosen by URL (``sqlite:///path`` or a plain path)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .sqlite import SQLiteUserStore

__all__ = ["SQLiteUserStore", "open_user_store", "sqlite_path"]


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

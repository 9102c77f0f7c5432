"""SQLite user store: schema, WAL, round trips, errors, sharing between processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from saslkit.credentials import ScramCredential, UserRecord, make_user
from saslkit.errors import StoreError, TemporaryFailure, UsageError
from saslkit.stores import SQLiteUserStore, open_user_store, sqlite_path


@pytest.fixture(scope="module")
def alice() -> UserRecord:
    return make_user("alice", "pencil", iterations=4096, salt=b"s" * 16)


def test_round_trip_and_no_password_stored(tmp_path: Path, alice: UserRecord) -> None:
    store = SQLiteUserStore(tmp_path / "u.db")
    store.put_user(alice)
    got = store.get_user("alice")
    assert got == alice
    assert store.get_user("bob") is None
    raw = (tmp_path / "u.db").read_bytes() + (tmp_path / "u.db-wal").read_bytes()
    assert b"pencil" not in raw
    assert alice.password_hash and alice.password_hash.startswith("$argon2id$")


def test_schema_versioned_and_wal(tmp_path: Path, alice: UserRecord) -> None:
    SQLiteUserStore(tmp_path / "u.db").put_user(alice)
    db = sqlite3.connect(tmp_path / "u.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    with pytest.raises(StoreError):
        SQLiteUserStore(tmp_path / "u.db")


def test_replace_and_delete_cascade(tmp_path: Path, alice: UserRecord) -> None:
    store = SQLiteUserStore(tmp_path / "u.db")
    store.put_user(alice)
    only256 = UserRecord("alice", {"SHA-256": alice.scram["SHA-256"]}, None)
    store.put_user(only256)
    assert store.get_user("alice") == only256
    assert store.delete_user("alice") and not store.delete_user("alice")
    db = sqlite3.connect(tmp_path / "u.db")
    assert db.execute("SELECT count(*) FROM scram_credentials").fetchone()[0] == 0


def test_default_iterations_persisted(tmp_path: Path) -> None:
    SQLiteUserStore(tmp_path / "u.db", default_iterations=20000)
    assert SQLiteUserStore(tmp_path / "u.db").default_iterations == 20000
    assert SQLiteUserStore(tmp_path / "v.db").default_iterations == 10000


def test_unreachable_database_is_temporary(tmp_path: Path) -> None:
    with pytest.raises(TemporaryFailure):
        SQLiteUserStore(tmp_path / "missing-dir" / "u.db")


def test_corrupt_database_is_store_error(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        SQLiteUserStore(tmp_path / "bad.db")


def test_bad_row_is_store_error(tmp_path: Path, alice: UserRecord) -> None:
    store = SQLiteUserStore(tmp_path / "u.db")
    store.put_user(alice)
    db = sqlite3.connect(tmp_path / "u.db")
    db.execute("UPDATE scram_credentials SET stored_key=x'00'")
    db.commit()
    with pytest.raises(StoreError):
        store.get_user("alice")


def test_url_forms(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///abs/x.db") == Path("/abs/x.db")
    assert sqlite_path("x.db") == Path("x.db")
    with pytest.raises(UsageError):
        sqlite_path("redis://localhost:6379/0")
    assert isinstance(open_user_store(str(tmp_path / "y.db")), SQLiteUserStore)


def test_other_process_sees_changes(tmp_path: Path, alice: UserRecord) -> None:
    store = SQLiteUserStore(tmp_path / "u.db")
    assert store.get_user("alice") is None
    line = alice.scram["SHA-256"].to_dovecot()
    code = (
        "import sys; from saslkit.stores import SQLiteUserStore; from saslkit.credentials import *;"
        f"SQLiteUserStore(sys.argv[1]).put_user(UserRecord('alice', {{'SHA-256': ScramCredential.parse({line!r})}}))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "u.db")], check=True)
    got = store.get_user("alice")
    assert got is not None and got.scram["SHA-256"] == alice.scram["SHA-256"]
    assert isinstance(got.scram["SHA-256"], ScramCredential)

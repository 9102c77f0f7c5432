"""One MutableUserStore contract, run on SQLite and on a real PostgreSQL; then PostgreSQL's own guarantees.

Front-ends share users, so the contract includes racing writers (one winner),
other processes' changes being seen at once, and the server being down
(TemporaryFailure, never a silent success).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scale_fixtures import PostgresServer, require_postgres

from saslkit.credentials import CredentialProfile, MutableUserStore, UserRecord, make_user
from saslkit.errors import StoreError, TemporaryFailure, UsageError
from saslkit.stores import open_token_store, open_user_store
from saslkit.tokens.records import TokenRecord

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def alice() -> UserRecord:
    return make_user("alice", "pencil", iterations=4096, salt=b"s" * 16)


@pytest.fixture(scope="module")
def bob() -> UserRecord:
    return make_user("bob", "secret", iterations=4096, salt=b"b" * 16, hashes=("SHA-256",), argon2_hash=False)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'users.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def users(db_url: str) -> Iterator[MutableUserStore]:
    store = open_user_store(db_url)
    assert isinstance(store, MutableUserStore)
    yield store
    store.close()  # type: ignore[attr-defined]


# -- the contract ----------------------------------------------------------------------------------------------


def test_round_trip_and_miss(users: MutableUserStore, alice: UserRecord, bob: UserRecord) -> None:
    assert users.get_user("alice") is None  # empty store
    users.put_user(alice)
    users.put_user(bob)
    got = users.get_user("alice")
    assert got == alice and got is not None and got.changed is not None
    assert users.get_user("bob") == bob
    assert users.get_user("carol") is None  # a miss reads another user's rows, and drops them
    assert users.list_users() == ["alice", "bob"]
    assert users.default_iterations == 10000


def test_add_only_new_names(users: MutableUserStore, alice: UserRecord) -> None:
    assert users.add_user(alice)
    other = make_user("alice", "different", iterations=4096)
    assert not users.add_user(other)
    assert users.get_user("alice") == alice  # untouched


def test_unprepared_names_refused(users: MutableUserStore, alice: UserRecord) -> None:
    with pytest.raises(UsageError):
        users.put_user(UserRecord("ali\u00adce", alice.scram, alice.password_hash))
    with pytest.raises(UsageError):
        users.add_user(UserRecord("\uff41lice", alice.scram))
    assert users.list_users() == []


def test_replace_delete_and_changed(users: MutableUserStore, alice: UserRecord) -> None:
    users.put_user(alice)
    first = users.get_user("alice")
    assert first is not None and first.changed is not None
    only256 = UserRecord("alice", {"SHA-256": alice.scram["SHA-256"]}, None)
    time.sleep(0.01)
    users.put_user(only256)
    second = users.get_user("alice")
    assert second == only256 and second is not None and second.changed is not None
    assert second.changed > first.changed
    assert users.delete_user("ali\u00adce")  # the prepared name is deleted
    assert not users.delete_user("alice")
    assert users.get_user("alice") is None and users.list_users() == []


def test_upgrade_is_compare_and_set(users: MutableUserStore, bob: UserRecord) -> None:
    users.put_user(bob)
    current = users.get_user("bob")
    assert current is not None
    upgraded = make_user("bob", "secret", iterations=4096, salt=b"n" * 16)
    assert users.upgrade_credentials(current, upgraded)  # type: ignore[attr-defined]
    after = users.get_user("bob")
    assert after == upgraded and after is not None and after.changed == current.changed  # no credential change
    assert not users.upgrade_credentials(current, bob)  # type: ignore[attr-defined]  # stale: changed meanwhile
    assert users.get_user("bob") == upgraded


def test_credential_profiles(users: MutableUserStore, alice: UserRecord, bob: UserRecord) -> None:
    users.put_user(alice)
    users.put_user(bob)
    profiles = users.credential_profiles()  # type: ignore[attr-defined]
    assert profiles == {CredentialProfile.of(alice): 1, CredentialProfile.of(bob): 1}


def test_concurrent_adds_have_one_winner(db_url: str) -> None:
    """Eight writers (own store objects and connections) add one prepared name at once: exactly one wins."""
    stores = [open_user_store(db_url) for _ in range(8)]
    for round_ in range(5):
        name = f"user{round_}"
        records = [make_user(name, f"pw{i}", iterations=4096, argon2_hash=False) for i in range(8)]
        barrier = threading.Barrier(8)
        results: list[bool | None] = [None] * 8

        def add(i: int, barrier: threading.Barrier, records: list[UserRecord], results: list[bool | None]) -> None:
            barrier.wait()
            results[i] = stores[i].add_user(records[i])

        threads = [threading.Thread(target=add, args=(i, barrier, records, results)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(True) == 1, results
        winner = records[results.index(True)]
        assert stores[0].get_user(name) == winner
    for s in stores:
        s.close()  # type: ignore[attr-defined]


def test_another_process_sees_changes(users: MutableUserStore, db_url: str, alice: UserRecord) -> None:
    users.put_user(alice)
    code = (
        "import sys; from saslkit.stores import open_user_store; "
        "s = open_user_store(sys.argv[1]); assert s.delete_user('alice'); s.close()"
    )
    subprocess.run([sys.executable, "-c", code, db_url], check=True, timeout=60)
    assert users.get_user("alice") is None


# -- PostgreSQL ------------------------------------------------------------------------------------------------


def test_postgres_schema_versioned(postgres_url: str) -> None:
    import psycopg

    from saslkit.stores.postgres import SCHEMA_VERSION, PostgresTokenStore, PostgresUserStore

    PostgresUserStore(postgres_url).close()
    PostgresTokenStore(postgres_url).close()  # same migrations: applied once
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM saslkit_schema").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE saslkit_schema SET version = 99")
    with pytest.raises(StoreError) as info:
        PostgresUserStore(postgres_url)
    assert not isinstance(info.value, TemporaryFailure)


def test_postgres_concurrent_first_start_migrates_once(postgres_url: str) -> None:
    """Front-ends starting together on an empty database: the advisory lock serializes the migration."""
    from saslkit.stores.postgres import PostgresUserStore

    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        try:
            PostgresUserStore(postgres_url).close()
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_postgres_credential_change_revokes_tokens_in_one_transaction(postgres_url: str, alice: UserRecord) -> None:
    """put_user and delete_user revoke the user's tokens in their own transaction; a failed one revokes nothing."""
    import psycopg

    users = open_user_store(postgres_url)
    tokens = open_token_store(postgres_url)
    users.put_user(alice)
    tokens.put(TokenRecord("t1", "alice", "RANDOM", "k1", T0))
    tokens.put(TokenRecord("b1", "bob", "RANDOM", "k1", T0))
    users.put_user(make_user("alice", "new password", iterations=4096))
    t1 = tokens.get("t1")
    assert t1 is not None and t1.revoked is not None
    b1 = tokens.get("b1")
    assert b1 is not None and b1.revoked is None  # another user's token stays
    tokens.put(TokenRecord("t2", "alice", "RANDOM", "k1", T0 + 1))
    # A change that fails (the row is locked elsewhere and the statement times out) revokes nothing.
    with psycopg.connect(postgres_url) as locker:
        locker.execute("SELECT 1 FROM saslkit_users WHERE username = 'alice' FOR UPDATE")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ALTER ROLE saslkit SET lock_timeout = '200ms'")
        try:
            slow = open_user_store(postgres_url)
            with pytest.raises(TemporaryFailure):
                slow.put_user(make_user("alice", "third", iterations=4096))
            slow.close()  # type: ignore[attr-defined]
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("ALTER ROLE saslkit RESET lock_timeout")
    t2 = tokens.get("t2")
    assert t2 is not None and t2.revoked is None
    assert users.delete_user("alice")
    t2 = tokens.get("t2")
    assert t2 is not None and t2.revoked is not None
    users.close()  # type: ignore[attr-defined]
    tokens.close()


def test_postgres_nul_in_names_is_no_error(postgres_url: str) -> None:
    users = open_user_store(postgres_url)
    tokens = open_token_store(postgres_url)
    assert users.get_user("a\x00b") is None
    assert tokens.get("a\x00b") is None
    assert tokens.stoken_get("a\x00", "b") is None
    assert not tokens.revoke("x\x00", T0)
    users.close()  # type: ignore[attr-defined]
    tokens.close()


def test_postgres_unreachable_is_temporary_and_fast() -> None:
    """Opening never fails for an unreachable server (front-ends may start first); every use is temporary."""
    require_postgres()
    from conftest import free_port

    started = time.monotonic()
    users = open_user_store(f"postgresql://saslkit@127.0.0.1:{free_port()}/postgres")
    tokens = open_token_store(f"postgresql://saslkit@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(TemporaryFailure):
        users.get_user("alice")
    with pytest.raises(TemporaryFailure):
        users.add_user(make_user("alice", "x", iterations=4096, argon2_hash=False))
    with pytest.raises(TemporaryFailure):
        tokens.get("t")
    assert users.default_iterations == 10000  # the default until the database says otherwise
    assert time.monotonic() - started < 20
    users.close()  # type: ignore[attr-defined]
    tokens.close()


def test_postgres_store_opened_before_the_database_starts(alice: UserRecord) -> None:
    """A front-end started before PostgreSQL: temporary failures, then it migrates on first contact."""
    server = PostgresServer(require_postgres())
    try:
        server.stop()
        users = open_user_store(server.url)
        with pytest.raises(TemporaryFailure):
            users.get_user("alice")
        server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                users.put_user(alice)
                break
            except TemporaryFailure:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert users.get_user("alice") == alice
        users.close()  # type: ignore[attr-defined]
    finally:
        server.remove()


def test_postgres_stopped_and_restarted(alice: UserRecord) -> None:
    """The same store objects fail temporarily while PostgreSQL is down and work once it is back."""
    server = PostgresServer(require_postgres())
    try:
        users = open_user_store(server.url)
        tokens = open_token_store(server.url)
        users.put_user(alice)
        tokens.put(TokenRecord("t", "alice", "RANDOM", "k1", T0))
        assert users.get_user("alice") == alice
        server.stop()
        with pytest.raises(TemporaryFailure):
            users.get_user("alice")
        with pytest.raises(TemporaryFailure):
            tokens.get("t")
        with pytest.raises(TemporaryFailure):
            tokens.revoke_matching(T0)
        with pytest.raises(TemporaryFailure):
            users.add_user(make_user("carol", "x", iterations=4096, argon2_hash=False))
        server.start()  # same port and data directory
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects within seconds
            try:
                assert users.get_user("alice") == alice
                break
            except TemporaryFailure:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert tokens.get("t") == TokenRecord("t", "alice", "RANDOM", "k1", T0)
        assert tokens.revoke("t", T0)
        users.close()  # type: ignore[attr-defined]
        tokens.close()
    finally:
        server.remove()


def test_postgres_pool_size_from_url(postgres_url: str) -> None:
    from saslkit.stores.postgres import PostgresUserStore

    store = PostgresUserStore(postgres_url + "?pool_size=3&connect_timeout=5")
    assert store._pool.max_size == 3
    assert "pool_size" not in store.url and "connect_timeout=5" in store.url  # libpq sees its own parameters only
    store.close()
    with pytest.raises(UsageError):
        PostgresUserStore(postgres_url + "?pool_size=many")


@given(st.text(max_size=60))
def test_postgres_url_pool_size_parser_takes_anything(query: str) -> None:
    from saslkit.stores.postgres import _pool_size_from_url

    try:
        url, size = _pool_size_from_url("postgresql://h/db?" + query, 10)
    except UsageError:
        return
    assert size >= 0 and url.startswith("postgresql://h/db")


def test_postgres_without_the_extra_names_it(tmp_path: Path) -> None:
    from servers import ENV

    code = ("import sys; sys.modules['psycopg_pool'] = None\nfrom saslkit.cli import main\n"
            "sys.exit(main(['user', 'list', '--db', 'postgresql://127.0.0.1:1/x', "
            f"'--keys', {str(tmp_path / 'k')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "saslkit: the PostgreSQL user store needs the psycopg_pool package: pip install 'saslkit[postgres]'")

"""One TokenStore contract, run on SQLite and on a real Redis; then each backend's failures.

Servers share token records, so the contract includes other processes'
writes being seen at once and the backend being down (TemporaryFailure,
never a silent success).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import RedisServer, free_port

from saslkit.errors import StoreError, TemporaryFailure, UsageError
from saslkit.stores import SQLiteTokenStore, SQLiteUserStore, open_token_store
from saslkit.stores.redis import RedisTokenStore
from saslkit.tokens.records import StokenRecord, TokenRecord, TokenStore

T0 = 1_700_000_000.123456789  # a float that needs all its bits


def rec(token_id: str, user: str = "alice", created: float = T0, **kw: object) -> TokenRecord:
    return TokenRecord(token_id, user, "RANDOM", "k1", created, **kw)  # type: ignore[arg-type]


def stok(
    token_id: str, expires: float, remote: str = "a@remote.example", local: str = "b@local.example"
) -> StokenRecord:
    return StokenRecord(remote, local, token_id, "k1", T0, expires)


@pytest.fixture(params=["sqlite", "redis", "postgres", "redis-cluster", "redis-sentinel"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tokens.db'}"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    if request.param == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    if request.param == "redis-sentinel":
        return str(request.getfixturevalue("redis_sentinel_url"))
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[TokenStore]:
    s = open_token_store(store_url)
    assert isinstance(s, TokenStore)
    yield s
    s.close()


# -- the contract ----------------------------------------------------------------------------------------------


def test_round_trip_keeps_every_field(store: TokenStore) -> None:
    future = time.time() + 3600.25
    full = TokenRecord("id-1", "ałice:x", "JWT", "key:2", T0, future, "HT-SHA-256-NONE", "phone ☎", T0 + 0.5, T0 + 1.75)
    bare = rec("id-2")
    store.put(full)
    store.put(bare)
    assert store.get("id-1") == full
    assert store.get("id-2") == bare
    assert store.get("unknown") is None


def test_duplicate_id_is_store_error(store: TokenStore) -> None:
    store.put(rec("dup"))
    with pytest.raises(StoreError):
        store.put(rec("dup", user="bob"))
    assert store.get("dup") == rec("dup")


def test_list_orders_by_created(store: TokenStore) -> None:
    for r in [rec("c", created=T0 + 2), rec("b", created=T0), rec("x", "bob", T0 + 1), rec("a", created=T0)]:
        store.put(r)
    assert [r.id for r in store.list("alice")] == ["a", "b", "c"]
    assert [r.id for r in store.list("bob")] == ["x"]
    assert [r.id for r in store.list()] == ["a", "b", "x", "c"]
    assert store.list("nobody") == []


def test_list_live_skips_revoked_and_expired(store: TokenStore) -> None:
    """``list_live`` (the HT lookup, issue 8 item 10): one user's records active at ``now``, oldest first."""
    now = time.time()
    later = now + 600.5
    live = [rec("c", created=T0 + 2), rec("a", created=T0, expires=later), rec("b", created=T0, mechanism="HT-X")]
    dead = [rec("r", created=T0 + 1), rec("e", created=T0 + 3, expires=later - 1), rec("x", "bob")]
    for r in live + dead:
        store.put(r)
    store.revoke("r", T0 + 5)
    list_live = store.list_live  # type: ignore[attr-defined]
    assert list_live("alice", now) == [rec("a", created=T0, expires=later), *live[2:], live[0], dead[1]]
    assert [r.id for r in list_live("alice", later - 1)] == ["a", "b", "c"]  # "e" expired exactly at ``now``
    assert [r.id for r in list_live("alice", later)] == ["b", "c"]
    assert [r.id for r in list_live("bob", now)] == ["x"]
    assert list_live("nobody", now) == []
    assert [r.id for r in store.list("alice")] == ["a", "b", "r", "c", "e"]  # list still shows every record
    assert all(r.active(now) for r in list_live("alice", now))
    for slots in (1, 4, 10):  # padding costs time, never shows
        assert list_live("alice", now, slots) == list_live("alice", now)
        assert list_live("nobody", now, slots) == []


def test_list_live_pads_to_slots(store: TokenStore, store_url: str) -> None:
    """Fewer live records than ``slots`` are read with padding: as many rows (records) cross as for ``slots``."""
    for i in range(3):
        store.put(rec(f"t{i}", created=T0 + i))
    store.put(rec("gone", created=T0 + 9))
    store.revoke("gone", T0)
    from saslkit.stores.sqlite import _PAD_ID, _PAD_KEY_ID, _SELECT_LIVE  # not in stores without list_live

    cases = (("alice", 0, 3), ("alice", 2, 3), ("alice", 8, 8), ("nobody", 8, 8), ("nobody", 0, 0))
    for user, slots, crossing in cases:
        if store_url.startswith("sqlite"):
            db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
            rows = db.execute(_SELECT_LIVE, (user, time.time(), slots, _PAD_ID, _PAD_KEY_ID)).fetchall()
            db.close()
        elif store_url.startswith("postgresql"):
            import psycopg

            from saslkit.stores.postgres import _SELECT_LIVE as PG_SELECT_LIVE

            with psycopg.connect(store_url) as conn:
                rows = [r[:2] for r in conn.execute(PG_SELECT_LIVE, {"user": user, "now": time.time(), "slots": slots,
                                                                     "pad_id": _PAD_ID, "pad_key": _PAD_KEY_ID})]
        else:
            assert isinstance(store, RedisTokenStore)
            flat = store._list_live_flat(user, time.time(), slots, "x", "k")
            rows = list(zip(flat[::3], flat[1::3], strict=True))
        assert len(rows) == crossing, (user, slots)
        assert [r[1] for r in rows if not r[0]] == (["t0", "t1", "t2"] if user == "alice" else [])


def test_revoke(store: TokenStore) -> None:
    store.put(rec("t"))
    assert store.revoke("t", T0 + 5)
    assert store.get("t") == rec("t", revoked=T0 + 5)
    assert store.revoke("t", T0 + 9)  # still there; the first revocation time stands
    assert store.get("t") == rec("t", revoked=T0 + 5)
    assert not store.revoke("unknown", T0)
    assert store.get("unknown") is None


def test_revoke_matching(store: TokenStore) -> None:
    for i in range(4):
        store.put(rec(f"a{i}", "alice", T0 + i))
        store.put(rec(f"b{i}", "bob", T0 + i))
    assert store.revoke_matching(T0 + 10, user="alice", before=T0 + 1) == 1  # a0 only: strictly before
    assert store.revoke_matching(T0 + 11, before=T0 + 2) == 3  # a1, b0, b1 (a0 already revoked)
    assert store.revoke_matching(T0 + 12, user="alice") == 2  # a2, a3
    assert store.revoke_matching(T0 + 13, user="alice") == 0
    assert store.revoke_matching(T0 + 14, user="nobody") == 0
    assert store.revoke_matching(T0 + 15) == 2  # b2, b3
    assert store.revoke_matching(T0 + 16) == 0
    revoked = {r.id: r.revoked for r in store.list()}
    assert revoked == {
        "a0": T0 + 10, "a1": T0 + 11, "b0": T0 + 11, "b1": T0 + 11,
        "a2": T0 + 12, "a3": T0 + 12, "b2": T0 + 15, "b3": T0 + 15,
    }  # fmt: skip


def test_touch(store: TokenStore) -> None:
    store.put(rec("t"))
    store.touch("t", T0 + 3.5)
    assert store.get("t") == rec("t", last_used=T0 + 3.5)
    store.touch("unknown", T0)  # no error, and nothing created
    assert store.get("unknown") is None


def test_stoken_put_get_refresh_delete(store: TokenStore) -> None:
    exp = time.time() + 600.5
    first = stok("s1", exp)
    assert store.stoken_get(first.remote, first.local) is None
    assert store.stoken_put_if_absent(first) == first
    assert store.stoken_put_if_absent(stok("s2", exp + 99)) == first  # a live one stays
    assert store.stoken_get(first.remote, first.local) == first
    store.stoken_refresh(first.remote, first.local, exp + 100)
    assert store.stoken_get(first.remote, first.local) == stok("s1", exp + 100)
    store.stoken_refresh(first.remote, first.local, exp)  # forward only
    assert store.stoken_get(first.remote, first.local) == stok("s1", exp + 100)
    store.stoken_refresh("x@nowhere", "y@nowhere", exp)  # nothing to refresh, nothing created
    assert store.stoken_get("x@nowhere", "y@nowhere") is None
    assert store.stoken_delete(first.remote, first.local)
    assert not store.stoken_delete(first.remote, first.local)
    assert store.stoken_get(first.remote, first.local) is None


def test_stoken_pairs_do_not_collide(store: TokenStore) -> None:
    exp = time.time() + 600
    one, two = stok("s1", exp, "a:b", "c"), stok("s2", exp, "a", "b:c")
    assert store.stoken_put_if_absent(one) == one
    assert store.stoken_put_if_absent(two) == two
    assert store.stoken_get("a:b", "c") == one
    assert store.stoken_get("a", "b:c") == two


def test_expired_stoken_counts_as_absent(store: TokenStore) -> None:
    stale = stok("old", time.time() - 10)
    assert store.stoken_put_if_absent(stale) == stale
    assert store.stoken_get(stale.remote, stale.local) is None
    store.stoken_refresh(stale.remote, stale.local, time.time() + 600)  # does not bring it back
    assert store.stoken_get(stale.remote, stale.local) is None
    fresh = stok("new", time.time() + 600)
    assert store.stoken_put_if_absent(fresh) == fresh
    assert store.stoken_get(fresh.remote, fresh.local) == fresh
    assert not store.stoken_delete("nobody", "nothing")


def test_stoken_put_if_absent_race(store_url: str) -> None:
    """Two servers (own store objects, own connections) race per pair: both get the one stored."""
    stores = [open_token_store(store_url) for _ in range(2)]
    exp = time.time() + 600

    def race(i: int, round_: int, barrier: threading.Barrier, results: list[StokenRecord | None]) -> None:
        barrier.wait()
        results[i] = stores[i].stoken_put_if_absent(stok(f"r{round_}-{i}", exp, remote=f"r{round_}"))

    for round_ in range(20):
        barrier = threading.Barrier(2)
        results: list[StokenRecord | None] = [None, None]
        threads = [threading.Thread(target=race, args=(i, round_, barrier, results)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results[0] is not None and results[0] == results[1]
        assert stores[0].stoken_get(f"r{round_}", "b@local.example") == results[0]
    for s in stores:
        s.close()


def test_another_process_revokes(store: TokenStore, store_url: str) -> None:
    """Process 2 revokes; this process's very next get sees it (no cache between servers)."""
    store.put(rec("shared"))
    assert store.get("shared") == rec("shared")
    code = (
        "import sys; from saslkit.stores import open_token_store; "
        "s = open_token_store(sys.argv[1]); assert s.revoke(sys.argv[2], float(sys.argv[3])); s.close()"
    )
    subprocess.run([sys.executable, "-c", code, store_url, "shared", repr(T0 + 7)], check=True, timeout=60)
    assert store.get("shared") == rec("shared", revoked=T0 + 7)


# -- opening ---------------------------------------------------------------------------------------------------


def test_open_token_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_token_store(str(tmp_path / "a.db")), SQLiteTokenStore)
    assert isinstance(open_token_store(f"sqlite:///{tmp_path / 'b.db'}"), SQLiteTokenStore)
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/nowhere.sock"):
        assert isinstance(open_token_store(url), RedisTokenStore)  # connects lazily
    for bad in ("http://example.org/x", "mysql://db/x", "sqlite://", ""):
        with pytest.raises(UsageError):
            open_token_store(bad)


def test_core_imports_without_redis() -> None:
    code = "import sys, saslkit, saslkit.stores; assert 'redis' not in sys.modules and 'psycopg' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- SQLite ----------------------------------------------------------------------------------------------------


def test_sqlite_shares_the_user_database(tmp_path: Path) -> None:
    path = tmp_path / "saslkit.db"
    SQLiteUserStore(path)
    tokens = SQLiteTokenStore(path)
    tokens.put(rec("t"))
    SQLiteUserStore(path)  # the user store still opens it
    db = sqlite3.connect(path)
    assert dict(db.execute("SELECT key, value FROM meta")) == {"schema_version": "1", "token_schema_version": "1"}
    db.execute("UPDATE meta SET value='99' WHERE key='token_schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        SQLiteTokenStore(path)
    SQLiteUserStore(path)  # its own version is untouched


def test_sqlite_unopenable_is_temporary(tmp_path: Path) -> None:
    with pytest.raises(TemporaryFailure):
        SQLiteTokenStore(tmp_path / "missing-dir" / "t.db")
    with pytest.raises(TemporaryFailure):
        open_token_store(str(tmp_path))  # a directory


def test_sqlite_locked_is_temporary(tmp_path: Path) -> None:
    store = SQLiteTokenStore(tmp_path / "t.db", timeout=0.1)
    store.put(rec("t"))
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TemporaryFailure):
            store.revoke("t", T0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.revoke("t", T0)


def test_sqlite_get_is_one_index_lookup(tmp_path: Path) -> None:
    SQLiteTokenStore(tmp_path / "t.db")
    db = sqlite3.connect(tmp_path / "t.db")
    plan = db.execute("EXPLAIN QUERY PLAN SELECT * FROM tokens WHERE id=?", ("x",)).fetchall()
    assert len(plan) == 1 and "USING INDEX" in plan[0][-1] and "id=?" in plan[0][-1]


def test_sqlite_list_live_never_reads_revoked_rows(tmp_path: Path) -> None:
    """The partial index holds unrevoked rows only, with ``expires``: revoked rows are not visited at all."""
    store = SQLiteTokenStore(tmp_path / "t.db")
    for i in range(50):
        store.put(rec(f"r{i:02d}", created=T0 + i))
    store.revoke_matching(T0 + 100, user="alice")
    store.put(rec("live", created=T0 + 60))
    db = sqlite3.connect(tmp_path / "t.db")
    assert db.execute("SELECT COUNT(*) FROM tokens INDEXED BY tokens_live WHERE user='alice' AND revoked IS NULL"
                      ).fetchone() == (1,)
    assert [r.id for r in store.list_live("alice", T0)] == ["live"]
    query = ("SELECT * FROM tokens WHERE user=? AND revoked IS NULL AND (expires IS NULL OR expires>?)"
             " ORDER BY created, id")
    plan = db.execute("EXPLAIN QUERY PLAN " + query, ("alice", T0)).fetchall()
    assert len(plan) == 1 and "tokens_live" in plan[0][-1], plan  # no sort step either
    db.close()
    store.close()


# -- Redis -----------------------------------------------------------------------------------------------------


def test_redis_key_layout_and_ttls(redis_url: str) -> None:
    store = RedisTokenStore(redis_url, prefix="p:")
    exp = time.time() + 600
    store.put(rec("forever"))
    store.put(rec("brief", expires=exp))
    store.stoken_put_if_absent(stok("s", exp, "a:b", "c"))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.hgetall("p:{u:alice}:token:forever") == {
        "user": "alice", "type": "RANDOM", "key_id": "k1", "created": repr(T0)}
    assert client.pttl("p:{u:alice}:token:forever") == -1
    assert 0 < client.pttl("p:{u:alice}:token:brief") <= 600_000
    assert client.get("p:{t:forever}") == "alice" and client.pttl("p:{t:forever}") == -1  # the id's owner
    assert 0 < client.pttl("p:{t:brief}") <= 600_000
    assert client.zrange("p:{u:alice}:tokens", 0, -1) == ["brief", "forever"]
    assert client.zrange("p:{all}:tokens", 0, -1) == ["brief", "forever"]
    assert client.pttl("p:{u:alice}:tokens") == -1  # it holds a token that never expires
    assert 0 < client.pttl("p:{stoken:3:a:b:c}") <= 600_000
    client.close()
    store.close()


def test_redis_expiry_drops_records_and_prunes_indexes(redis_url: str) -> None:
    """The one sleeping test: Redis forgets expired records itself (EXPIREAT), indexes follow."""
    store = RedisTokenStore(redis_url)
    store.put(rec("keep"))
    soon = time.time() + 1
    store.put(rec("brief", created=T0 + 1, expires=soon))
    store.put(rec("brief-bob", "bob", expires=soon))
    store.stoken_put_if_absent(stok("s", soon))
    assert [r.id for r in store.list()] == ["brief-bob", "keep", "brief"]  # ties by id
    assert store.revoke("brief", T0)
    time.sleep(1.5)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.exists("saslkit:{u:bob}:tokens") == 0  # the index went with its last member
    assert store.get("brief") is None
    assert store.stoken_get("a@remote.example", "b@local.example") is None
    assert [r.id for r in store.list_live("alice", time.time())] == ["keep"]
    assert client.zrange("saslkit:{u:alice}:tokens", 0, -1) == ["keep"]  # pruned by list_live
    assert [r.id for r in store.list("alice")] == ["keep"]
    assert store.revoke_matching(T0) == 1
    assert client.zrange("saslkit:{all}:tokens", 0, -1) == ["keep"]  # pruned
    client.close()
    store.close()


def test_redis_unreachable_is_temporary_and_fast() -> None:
    store = RedisTokenStore(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    calls: list[Callable[[], object]] = [
        lambda: store.get("t"),
        lambda: store.put(rec("t")),
        lambda: store.stoken_put_if_absent(stok("s", time.time() + 60)),
    ]
    for call in calls:
        with pytest.raises(TemporaryFailure):
            call()
    assert time.monotonic() - started < 3


def test_redis_stopped_and_restarted(start_redis: Callable[..., RedisServer]) -> None:
    """The same store object fails temporarily while Redis is down and works once it is back."""
    server = start_redis()
    store = RedisTokenStore(server.url)
    store.put(rec("before"))
    assert store.get("before") == rec("before")
    server.stop()
    with pytest.raises(TemporaryFailure):
        store.get("before")
    with pytest.raises(TemporaryFailure):
        store.put(rec("during"))
    with pytest.raises(TemporaryFailure):
        store.revoke_matching(T0)
    server.start()  # same port, empty (no persistence)
    store.put(rec("after"))
    assert store.get("after") == rec("after")
    assert store.revoke("after", T0)
    store.close()


def test_redis_other_errors_are_store_errors(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("saslkit:{t:wrong}", "alice")
    client.set("saslkit:{u:alice}:token:wrong", "a string, not a hash")
    client.set("saslkit:{t:partial}", "alice")
    client.hset("saslkit:{u:alice}:token:partial", "user", "alice")
    client.close()
    store = RedisTokenStore(redis_url)
    with pytest.raises(StoreError) as info:
        store.get("wrong")
    assert not isinstance(info.value, TemporaryFailure)
    with pytest.raises(StoreError):
        store.get("partial")

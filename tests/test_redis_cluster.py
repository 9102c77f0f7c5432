"""Redis Cluster and shared penalties: one user's keys in one slot, outages of one master, penalties shared
between front-ends (real redis-servers on loopback: one instance, and a 3-master cluster)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import free_port, require_redis_server
from hypothesis import given
from hypothesis import strategies as st
from scale_fixtures import RedisClusterNodes

from saslkit.errors import TemporaryFailure, UsageError
from saslkit.penalty import AuthPenalty, MemoryPenaltyStore
from saslkit.stores import open_penalty_store, open_token_store
from saslkit.stores.redis import RedisPenaltyStore, RedisTokenStore, _cluster_nodes, escape_tag
from saslkit.tokens.records import TokenRecord

T0 = 1_700_000_000.5


def rec(token_id: str, user: str = "alice", created: float = T0, **kw: object) -> TokenRecord:
    return TokenRecord(token_id, user, "RANDOM", "k1", created, **kw)  # type: ignore[arg-type]


def test_escape_tag_is_injective_and_brace_free() -> None:
    names = ["a", "a}", "a{", "{a}", "a%7D", "a%", "%", "}{", "a%25"]
    escaped = [escape_tag(n) for n in names]
    assert len(set(escaped)) == len(names)
    assert not any("{" in e or "}" in e for e in escaped)


def test_one_users_keys_share_a_slot(redis_cluster_url: str, redis_cluster_nodes: RedisClusterNodes) -> None:
    """Every key a user's scripts touch hashes to that user's slot, names with braces included."""
    store = open_token_store(redis_cluster_url)
    assert isinstance(store, RedisTokenStore)
    users = ["alice", "bob}x", "{carol}", "d{a}ve", "e%7Df"]
    for i, user in enumerate(users):
        store.put(rec(f"t{i}", user, expires=time.time() + 600))
        store.put(rec(f"u{i}", user))
    probe = redis.Redis(port=redis_cluster_nodes.nodes[0].port, decode_responses=True)
    slots = {}
    for user in users:
        keys = [store._index_key(user), store._token_key(user, "t0"), store._token_key(user, "anything")]
        slots[user] = {probe.execute_command("CLUSTER", "KEYSLOT", k) for k in keys}
        assert len(slots[user]) == 1, (user, keys)
    assert len({next(iter(s)) for s in slots.values()}) > 1  # users spread over the cluster
    for i, user in enumerate(users):
        assert [r.id for r in store.list(user)] == [f"t{i}", f"u{i}"]
        assert store.revoke_matching(T0 + 1, user=user) == 2
    assert store.revoke_matching(T0 + 2) == 0
    assert len(store.list()) == 2 * len(users)
    probe.close()
    store.close()


def test_revoke_everyone_spans_the_masters(redis_cluster_url: str) -> None:
    store = open_token_store(redis_cluster_url)
    for i in range(30):
        store.put(rec(f"t{i}", f"user{i}", created=T0 + i))
    assert store.revoke_matching(T0 + 99, before=T0 + 10) == 10
    assert sorted(r.id for r in store.list() if r.revoked is None) == sorted(f"t{i}" for i in range(10, 30))
    store.close()


def test_bad_cluster_urls() -> None:
    for bad in ("redis-cluster://", "redis-cluster://host", "redis-cluster://h:1,h"):
        with pytest.raises(UsageError):
            open_token_store(bad)
    with pytest.raises(UsageError):
        RedisTokenStore("redis://127.0.0.1:1/0", prefix="a{b}")


def test_cluster_unreachable_is_temporary(redis_cluster_nodes: RedisClusterNodes) -> None:
    """A front-end may start before its cluster: the store opens, answers temporary failures, then works."""
    store = open_token_store(f"redis-cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}")
    with pytest.raises(TemporaryFailure):
        store.get("t")
    with pytest.raises(TemporaryFailure):
        store.put(rec("t"))
    penalty = AuthPenalty(2.0, 15.0, open_penalty_store(f"redis-cluster://127.0.0.1:{free_port()}"))
    penalty.failed("192.0.2.1", None)  # counted in this process meanwhile
    assert penalty.delay("192.0.2.1", None) == 2.0
    store.close()


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A cluster of this test's own, for stopping one of its masters."""
    cluster = RedisClusterNodes(require_redis_server(), tmp_path)
    yield cluster
    cluster.stop()


def test_one_master_down_is_temporary_and_service_resumes(private_cluster: RedisClusterNodes) -> None:
    """With one of three masters stopped, no token operation reports success it did not have; back, all work."""
    store = open_token_store(private_cluster.url)
    users = [f"user{i}" for i in range(12)]
    for user in users:
        store.put(rec(f"tok-{user}", user))
    victim = private_cluster.nodes[1]
    victim.stop()
    outcomes = {"ok": 0, "temporary": 0}
    for user in users:
        try:
            record = store.get(f"tok-{user}")
            assert record == rec(f"tok-{user}", user)  # a key on a live master: the right answer
            outcomes["ok"] += 1
        except TemporaryFailure:
            outcomes["temporary"] += 1
    assert outcomes["temporary"] > 0, outcomes  # the stopped master's users (and, once the cluster says fail, all)
    victim.start()  # empty (no persistence), same node id from nodes.conf
    private_cluster.wait_ok()
    deadline = time.monotonic() + 30
    while True:
        try:
            store.put(rec("after", "user1"))
            break
        except TemporaryFailure:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert store.get("after") == rec("after", "user1")
    assert store.revoke("after", T0)
    store.close()


# -- shared penalties ------------------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "redis-cluster"])
def penalty_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url"))


def test_failures_on_one_front_end_delay_another(penalty_url: str) -> None:
    """Two front-ends (own AuthPenalty, own store objects) share the counts per IP and per user."""
    front_a = AuthPenalty(2.0, 15.0, open_penalty_store(penalty_url))
    front_b = AuthPenalty(2.0, 15.0, open_penalty_store(penalty_url))
    for _ in range(3):
        front_a.failed("192.0.2.1", "alice")
    assert front_b.delay("192.0.2.1", None) == 8.0  # the IP's count
    assert front_b.delay("198.51.100.7", "alice") == 8.0  # the user's count, from another address
    assert front_b.delay("198.51.100.7", "bob") == 0.0
    assert front_b.settle("192.0.2.1", "alice", True) == 8.0  # a success resets both, everywhere
    assert front_a.delay("192.0.2.1", "alice") == 0.0


def test_penalty_keys_have_bounded_lifetimes(redis_url: str) -> None:
    store = RedisPenaltyStore(redis_url, expire=30)
    assert store.record("ip:192.0.2.1") == 1
    assert store.record("ip:192.0.2.1") == 2
    assert store.record("user:a}{b") == 1
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(client.keys("*"))
    assert keys == ["saslkit:{penalty:ip:192.0.2.1}", "saslkit:{penalty:user:a%7D%7Bb}"]
    assert all(0 < client.pttl(k) <= 30_000 for k in keys)
    store.reset("ip:192.0.2.1")
    assert store.get("ip:192.0.2.1") == 0 and client.exists("saslkit:{penalty:ip:192.0.2.1}") == 0
    client.close()
    store.close()


def test_penalty_store_down_falls_back_to_this_process() -> None:
    """Never an error on the login path: while Redis is unreachable, counts are kept in memory."""
    store = RedisPenaltyStore(f"redis://127.0.0.1:{free_port()}/0", fallback=MemoryPenaltyStore())
    pen = AuthPenalty(2.0, 15.0, store)
    started = time.monotonic()
    pen.failed("192.0.2.1", "alice")
    pen.failed("192.0.2.1", "alice")
    assert pen.delay("192.0.2.1", "alice") == 4.0
    assert time.monotonic() - started < 10


def test_open_penalty_store_urls() -> None:
    assert isinstance(open_penalty_store("memory"), MemoryPenaltyStore)
    assert isinstance(open_penalty_store("redis://127.0.0.1:1/0"), RedisPenaltyStore)  # connects lazily
    for bad in ("sqlite:///x.db", "postgresql://h/db", ""):
        with pytest.raises(UsageError):
            open_penalty_store(bad)


# -- parsers, fuzzed -------------------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_cluster_url_parser_takes_anything(tail: str) -> None:
    """Any text after the scheme is a list of nodes or a UsageError, never another exception."""
    try:
        nodes, options = _cluster_nodes("redis-cluster://" + tail)
    except UsageError:
        return
    assert nodes and all(0 <= n.port for n in nodes)
    assert set(options) <= {"ssl", "username", "password"}


@given(st.lists(st.text(max_size=12), min_size=2, max_size=6, unique=True))
def test_escape_tag_is_injective(names: list[str]) -> None:
    escaped = [escape_tag(n) for n in names]
    assert len(set(escaped)) == len(names)
    assert not any("{" in e or "}" in e for e in escaped)


def test_store_opened_before_the_cluster_starts(private_cluster: RedisClusterNodes) -> None:
    private_cluster.stop()
    store = open_token_store(private_cluster.url)
    with pytest.raises(TemporaryFailure):
        store.get("t")
    for node in private_cluster.nodes:
        node.start()
    private_cluster.wait_ok()
    store.put(rec("t"))
    assert store.get("t") == rec("t")
    store.close()


# -- Sentinel --------------------------------------------------------------------------------------------------


def test_sentinel_urls() -> None:
    for bad in ("redis-sentinel://127.0.0.1:1", "redis-sentinel://127.0.0.1:1/", "redis-sentinel://h/svc",
                "redis-sentinel://127.0.0.1:1/svc/x"):
        with pytest.raises(UsageError):
            open_token_store(bad)
    assert isinstance(open_token_store(f"redis-sentinel://127.0.0.1:{free_port()}/svc/2"), RedisTokenStore)


def test_sentinel_failover_moves_the_store_to_the_new_master(tmp_path: Path) -> None:
    """Master, replica and one sentinel: the master stops, the sentinel promotes the replica, the store follows
    (temporary failures meanwhile, never a lost revocation: the replica had it)."""
    from conftest import RedisServer
    from scale_fixtures import RedisSentinel

    exe = require_redis_server()
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = RedisServer(exe, tmp_path / "m")
    replica = RedisServer(exe, tmp_path / "r", extra=["--replicaof", "127.0.0.1", str(master.port)])
    sentinel = RedisSentinel(exe, tmp_path, master)
    try:
        store = open_token_store(sentinel.url)
        store.put(rec("t"))
        assert store.revoke("t", T0 + 1)
        with redis.Redis(port=master.port) as client:
            client.execute_command("WAIT", 1, 5000)  # the replica has it
        master.stop()
        deadline = time.monotonic() + 60
        while True:
            try:
                record = store.get("t")
                break
            except TemporaryFailure:
                assert time.monotonic() < deadline, "the sentinel did not promote the replica"
                time.sleep(0.2)
        assert record == rec("t", revoked=T0 + 1)
        store.put(rec("after"))  # writes go to the promoted replica
        with redis.Redis(port=replica.port, decode_responses=True) as client:
            assert client.execute_command("ROLE")[0] == "master"
        store.close()
    finally:
        sentinel.stop()
        replica.stop()
        master.stop()

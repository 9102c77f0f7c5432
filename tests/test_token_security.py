"""Issue 8 regressions in the token code (items 3, 7, 9 and the token parts of 10).

* item 3: a JWT-shaped token whose payload nests ~1,100 JSON arrays is an
  ordinary authentication failure everywhere (TokenService, REMEMBERME,
  the server engine, the SMTP and IMAP sessions), and a bug in any mechanism
  becomes a failure in the server engine, logged without the peer's data;
* item 9: a token login succeeds promptly while another connection holds
  the SQLite write lock; ``last_used`` is best effort (Redis down too);
* item 7: every token check confirms the user still exists and the token is
  no older than the last credential change, across processes sharing the
  stores (SQLite and Redis token stores);
* item 10: the HT lookup does the same work (HMACs and derivations, counted)
  whatever the number of tokens or whether the user exists; the per-user
  cap; the derived-token cache under threads; strict STOKEN tokens.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

from saslkit import MechanismInfo, Registry, default_registry
from saslkit.auth.engine import ServerAuth
from saslkit.auth.events import AuthFailed
from saslkit.context import ClientCredentials, ServerContext
from saslkit.credentials import MemoryUserStore, UserRecord, make_user
from saslkit.errors import TokenRejected
from saslkit.imap.session import ImapConfig, ImapSession
from saslkit.keys import KeyRing
from saslkit.mechanism import Challenge, Failure, FailureReason, ServerStep, Success
from saslkit.mechanisms import ht as ht_module
from saslkit.mechanisms.ht import HTClient, HTServer, initiator_message
from saslkit.mechanisms.rememberme import RememberMeServer
from saslkit.mechanisms.stoken import StokenServer
from saslkit.smtp.session import SmtpConfig, SmtpSession
from saslkit.stores import open_token_store
from saslkit.stores.sqlite import SQLiteTokenStore, SQLiteUserStore
from saslkit.testing.loopback import run_exchange
from saslkit.tokens import SubmissionTokens, TokenRecord, TokenService
from saslkit.tokens.records import TokenStore

SECRET = b"token-security-test-secret-0123456789"
HT = "HT2-SHA-256-NONE"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_racing(hammer: Callable[[int], None], count: int) -> None:
    """``hammer(0)`` … ``hammer(count - 1)`` in threads switching as often as the interpreter allows."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def deep_jwt(depth: int = 1100) -> str:
    """The issue's token: a JWT whose payload is ``depth`` nested JSON arrays."""
    header = b64url(json.dumps({"alg": "EdDSA", "kid": "ed25519-1-abcdef", "typ": "JWT"}).encode())
    return f"{header}.{b64url(b'[' * depth + b']' * depth)}.{'A' * 86}"


DEEP_TOKENS = [deep_jwt(1100), deep_jwt(1400), deep_jwt(300)]


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.open(tmp_path / "saslkit.keys", quiet=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteTokenStore]:
    s = SQLiteTokenStore(tmp_path / "tokens.db")
    yield s
    s.close()


@pytest.fixture
def service(store: SQLiteTokenStore, ring: KeyRing) -> TokenService:
    return TokenService(store, ring)


USERS = MemoryUserStore([UserRecord("alice")])


def ctx_of(service: TokenService | None, users: Any = USERS, **kw: Any) -> ServerContext:
    return ServerContext(users, SECRET, tls=True, tokens=service, **kw)


def ht_login(ctx: ServerContext, user: str, token: str, name: str = HT) -> Success | Failure:
    return run_exchange(HTClient(name, ClientCredentials(user, token)), HTServer(name, ctx))[0]


def without_authcid(result: Success | Failure) -> Success | Failure:
    return dataclasses.replace(result, authcid=None) if isinstance(result, Failure) else result


# ------------------------------------------------------------------ item 3: deep JSON


@pytest.mark.parametrize("token", DEEP_TOKENS, ids=["1100", "1400", "300"])
def test_deep_json_token_is_rejected_by_verify(service: TokenService, token: str) -> None:
    with pytest.raises(TokenRejected) as exc:
        service.verify(token, mechanism="REMEMBERME")
    assert exc.value.reason == "invalid-token"


@pytest.mark.parametrize("payload", [
    b'{"jti":"x","a":[1]}',  # nested value
    b'{"jti":"x","a":{"b":1}}',
    b'[{"jti":"x"}]',  # not an object
    b'{"jti":"x"}{"jti":"y"}',
    b'{"jti":"x"' + b' ' * 2000 + b'}',  # over the payload bound
    b'{"jti":"\xff"}',  # not UTF-8
    b'{"jti":"' + b'1' * 1400 + b'"',  # unterminated
    b"1" * 1500,  # a huge number, not an object
])
def test_malformed_jwt_payloads_are_token_rejected(service: TokenService, payload: bytes) -> None:
    token = f"eyJhbGciOiJFZERTQSJ9.{b64url(payload)}.sig"
    with pytest.raises(TokenRejected):
        service.verify(token, mechanism="REMEMBERME")


def test_jwt_parts_must_be_strict_base64url(service: TokenService) -> None:
    token, _ = service.mint("alice", "JWT")
    head, payload, sig = token.split(".")
    for bad in (f"{head}.{payload}=.{sig}", f"{head}.{payload[:10]}!!!!{payload[10:]}.{sig}",
                f"{head}.{payload}.{sig}.", f"{head}.{payload}.{sig[:-1]}+", f"{head}.{payload}. {sig}"):
        with pytest.raises(TokenRejected):
            service.verify(bad, mechanism="REMEMBERME")
    assert service.verify(token, mechanism="REMEMBERME").user == "alice"


@pytest.mark.parametrize("token", DEEP_TOKENS[:2], ids=["1100", "1400"])
def test_deep_json_token_through_rememberme_and_line_exchange(service: TokenService, token: str) -> None:
    direct = RememberMeServer(ctx_of(service)).step(token.encode())
    assert isinstance(direct, Failure) and direct.reason == FailureReason.AUTHENTICATION_FAILED
    assert direct.data is not None and direct.data.startswith(b"e=other-error,")
    registry = default_registry()
    exchange = ServerAuth(registry, registry.offer(tls=True), ctx_of(service))
    result = exchange.start("REMEMBERME", token.encode(), encoded=False)
    assert isinstance(result, AuthFailed) and result.reason == FailureReason.AUTHENTICATION_FAILED
    assert not exchange.active


class BuggyServer:
    """A mechanism with a bug: it raises a non-saslkit exception quoting the peer's data."""

    name = "BUGGY"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.steps = 0

    @property
    def done(self) -> bool:
        return False

    def step(self, response: bytes | None) -> ServerStep:
        self.steps += 1
        if self.steps == 1 and response is None:
            return Challenge(b"")
        raise self.exc


@pytest.mark.parametrize("exc", [RecursionError("maximum recursion depth exceeded peer-secret-xyz"),
                                 KeyError("peer-secret-xyz"), RuntimeError("peer-secret-xyz")])
def test_line_exchange_turns_a_mechanism_bug_into_a_failure(caplog: pytest.LogCaptureFixture,
                                                            exc: BaseException) -> None:
    caplog.set_level(logging.DEBUG, logger="saslkit")
    registry = Registry([MechanismInfo("BUGGY", lambda ctx: BuggyServer(exc), default_registry().info("PLAIN").client,
                                       strength=1)])
    exchange = ServerAuth(registry, registry.offer(tls=True), ctx_of(None))
    assert isinstance(exchange.start("BUGGY", None), Challenge)
    result = exchange.receive(base64.b64encode(b"peer-secret-xyz"))
    assert isinstance(result, AuthFailed) and result.reason == FailureReason.AUTHENTICATION_FAILED
    assert "peer-secret-xyz" not in repr(result) and not exchange.active
    errors = [r for r in caplog.records if r.name == "saslkit" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "BUGGY" in errors[0].getMessage()
    assert type(exc).__name__ in errors[0].getMessage()
    assert "peer-secret-xyz" not in caplog.text  # neither the message nor the peer's data is logged


def _smtp(service: TokenService) -> SmtpSession:
    return SmtpSession(SmtpConfig(hostname="mx.example.com", failure_delay=0), USERS, SECRET, tokens=service,
                       tls=True, peer="192.0.2.9")


def test_deep_json_token_in_smtp_session_is_535(service: TokenService) -> None:
    session = _smtp(service)
    session.greeting()
    assert session.receive_line(b"EHLO client.example.com\r\n").lines[0].startswith("250")
    for token in DEEP_TOKENS[:2]:  # too long for the AUTH line: sent as the answer to the empty challenge
        assert session.receive_line(b"AUTH REMEMBERME\r\n").lines == ["334 "]
        reply = session.receive_line(base64.b64encode(token.encode()) + b"\r\n")
        assert reply.lines[0].startswith("535 5.7.8"), reply.lines
        assert not any("Traceback" in x or "Recursion" in x for x in reply.lines)


def test_deep_json_token_in_imap_session_is_authenticationfailed(service: TokenService) -> None:
    session = ImapSession(ImapConfig(hostname="imap.example.com", failure_delay=0, tls_available=True), USERS,
                          SECRET, tokens=service, tls=True, peer="192.0.2.9")
    session.greeting()
    reply = session.receive_line(b"a AUTHENTICATE REMEMBERME " + base64.b64encode(DEEP_TOKENS[0].encode()) + b"\r\n")
    assert reply.lines[-1].startswith("a NO [AUTHENTICATIONFAILED]"), reply.lines
    assert not any("Traceback" in x or "Recursion" in x for x in reply.lines)


# ------------------------------------------------------------------ item 9: last_used is best effort


def test_token_login_not_blocked_by_a_held_sqlite_write_lock(tmp_path: Path, ring: KeyRing) -> None:
    db = tmp_path / "tokens.db"
    store = SQLiteTokenStore(db)  # the default 5 s busy timeout
    service = TokenService(store, ring)
    random_token, random_record = service.mint("alice", "RANDOM")
    jwt_token, _ = service.mint("alice", "JWT")
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock (as another process would)
    try:
        started = time.monotonic()
        for token in (random_token, jwt_token):
            result = RememberMeServer(ctx_of(service)).step(token.encode())
            assert isinstance(result, Success) and result.authcid == "alice"
        assert isinstance(ht_login(ctx_of(service), "alice", random_token), Success)
        assert time.monotonic() - started < 2.5  # no busy wait (it was 5 s, then 454)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.get(random_record.id).last_used is None  # type: ignore[union-attr]  # the write was skipped
    service.mark_used(random_record)  # retried on a later login, now that nobody holds the lock
    assert store.get(random_record.id).last_used is not None  # type: ignore[union-attr]
    # the connection's busy timeout is back for ordinary writes
    assert store._connect().execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    store.close()


def test_mark_used_never_raises_with_redis_down(ring: KeyRing) -> None:
    service = TokenService(open_token_store(f"redis://127.0.0.1:{free_port()}/0"), ring)
    record = TokenRecord("id", "alice", "RANDOM", ring.current("token").id, 1.0)
    service.mark_used(record)  # a TemporaryFailure before


# ------------------------------------------------------------------ item 7: token checks confirm the user


@pytest.fixture(params=["sqlite", "redis"])
def token_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shared.db")  # the users' file too
    url: str = request.getfixturevalue("redis_url")
    return url


def test_deleted_user_and_password_change_end_tokens_on_every_process(
    tmp_path: Path, ring: KeyRing, token_url: str
) -> None:
    """Two 'processes' (store and service instances) share the files; B changes the user, A verifies."""
    clock = Clock()
    db = tmp_path / "shared.db"
    users_a, users_b = SQLiteUserStore(db, clock=clock), SQLiteUserStore(db, clock=clock)
    stores: list[TokenStore] = [open_token_store(token_url), open_token_store(token_url)]
    tokens_a, tokens_b = (TokenService(s, ring, clock=clock) for s in stores)
    ctx_a = ServerContext(users_a, SECRET, tls=True, tokens=tokens_a)
    users_b.put_user(make_user("alice", "pencil", iterations=4096, argon2_hash=False))
    clock.now += 5
    random_token, _ = tokens_b.mint("alice", "RANDOM")
    jwt_token, _ = tokens_b.mint("alice", "JWT")
    unknown = RememberMeServer(ctx_a).step(b"sk1." + b"A" * 43 + b"." + b"B" * 43)
    wrong = ht_login(ctx_a, "alice", "not-the-token")
    for token in (random_token, jwt_token):
        assert isinstance(RememberMeServer(ctx_a).step(token.encode()), Success)
        assert isinstance(ht_login(ctx_a, "alice", token), Success)

    clock.now += 100
    users_b.put_user(make_user("alice", "new password", iterations=4096, argon2_hash=False))  # not revoked
    for token in (random_token, jwt_token):
        stale = RememberMeServer(ctx_a).step(token.encode())
        assert isinstance(stale, Failure) and stale.authcid == "alice"
        assert without_authcid(stale) == without_authcid(unknown)  # the reply of an unknown token
        ht = ht_login(ctx_a, "alice", token)
        assert isinstance(ht, Failure) and ht == wrong  # the reply of a wrong token

    fresh, _ = tokens_b.mint("alice", "RANDOM")  # minted after the change: fine
    assert isinstance(RememberMeServer(ctx_a).step(fresh.encode()), Success)
    assert isinstance(ht_login(ctx_a, "alice", fresh), Success)

    assert users_b.delete_user("alice")
    gone = RememberMeServer(ctx_a).step(fresh.encode())
    assert isinstance(gone, Failure) and without_authcid(gone) == without_authcid(unknown)
    assert ht_login(ctx_a, "alice", fresh) == wrong
    for s in stores:
        s.close()


def test_token_user_current_has_one_second_resolution() -> None:
    from saslkit.tokens.records import token_user_current

    record = TokenRecord("id", "alice", "RANDOM", "k", 1000.0)
    assert token_user_current(record, UserRecord("alice"))  # the store does not know when: exists is enough
    assert token_user_current(record, UserRecord("alice", changed=999.0))
    assert token_user_current(record, UserRecord("alice", changed=1000.9))  # same second: floor(changed)
    assert not token_user_current(record, UserRecord("alice", changed=1001.0))
    assert not token_user_current(record, None)


# ------------------------------------------------------------------ item 10: HT work, cap, cache, STOKEN


class CountingDict(dict[tuple[object, ...], str]):
    """The derived-token cache, counting lookups and hits."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = self.hits = 0

    def get(self, key: tuple[object, ...], default: Any = None) -> Any:
        self.lookups += 1
        value = super().get(key, default)
        self.hits += value is not None
        return value


class WorkCounter:
    """Counts initiator HMACs (HT), token derivations by type, slot derivations and cache lookups (TokenService)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, service: TokenService) -> None:
        self.cache = CountingDict()
        service._derived = self.cache
        self.reset()
        real_hmac = ht_module._hmac
        real_derive = TokenService._derive
        real_slot = TokenService._derive_slot

        def hmac_counted(spec: Any, token: bytes, label: bytes, cb: bytes, extra: bytes) -> bytes:
            if label == ht_module.INITIATOR_LABEL:
                self.hmacs += 1
            return real_hmac(spec, token, label, cb, extra)

        def derive_counted(service: TokenService, record: TokenRecord, key: Any) -> str:
            self.derived[record.type] += 1
            return real_derive(service, record, key)

        def slot_counted(service: TokenService, *args: Any) -> str | None:
            self.misses += 1
            return real_slot(service, *args)

        monkeypatch.setattr(ht_module, "_hmac", hmac_counted)
        monkeypatch.setattr(TokenService, "_derive", derive_counted)
        monkeypatch.setattr(TokenService, "_derive_slot", slot_counted)

    def reset(self) -> None:
        self.hmacs = self.misses = self.cache.lookups = self.cache.hits = 0
        self.derived = {"RANDOM": 0, "JWT": 0}

    def snapshot(self) -> dict[str, int]:
        return {"hmacs": self.hmacs, "misses": self.misses, "lookups": self.cache.lookups, "hits": self.cache.hits,
                **self.derived}


WRONG = "wrong-token"


def ht_attempt(ctx: ServerContext, counter: WorkCounter, user: str, token: str = WRONG) -> dict[str, int]:
    """The work of one HT exchange (Success for the right token, Failure otherwise)."""
    message = initiator_message(HT, user, token)  # the client's HMAC, not counted
    counter.reset()
    result = HTServer(HT, ctx).step(message)
    assert isinstance(result, Success if token != WRONG else Failure)
    assert result.authcid == user if isinstance(result, Failure) else result.identity == user
    return counter.snapshot()


def first_and_later(cap: int) -> tuple[dict[str, int], dict[str, int]]:
    """What any name's first HT attempt on a process costs (``cap`` misses), and every later one (``cap`` hits)."""
    first = {"hmacs": cap, "misses": cap, "lookups": cap + 1, "hits": 0, "RANDOM": cap, "JWT": cap}
    later = {"hmacs": cap, "misses": 0, "lookups": cap + 1, "hits": cap + 1, "RANDOM": 0, "JWT": 0}
    return first, later


def test_ht_work_does_not_depend_on_tokens_or_user(
    store: SQLiteTokenStore, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First attempt: ``cap`` slot misses; later ones: ``cap`` hits; for every name, known or not.

    Fails on the code before the cache (every attempt derived ``cap`` slots)
    and on a cache keyed per token only (a user at the cap, minted here, hit at once).
    """
    cap = 5
    clock = Clock()
    service = TokenService(store, ring, clock=clock, max_tokens_per_user=cap)
    names = ("one", "full", "jwts", "none", "revoked", "expired", "retired")
    users = MemoryUserStore([UserRecord(n) for n in names])
    tokens = {"one": service.mint("one", "RANDOM")[0]}
    for _ in range(cap):
        tokens["full"], _ = service.mint("full", "RANDOM")  # at the cap, every token cached by mint
    for _ in range(3):
        tokens["jwts"], _ = service.mint("jwts", "JWT")
    for _ in range(4 * cap):
        service.mint("revoked", "RANDOM")  # the cap revokes 3 * cap of them
    service.revoke_user("revoked")
    service.mint("expired", ttl=60)
    service.mint("gone", "RANDOM")  # a user deleted without revoking its tokens
    service.mint("pinned", "RANDOM", mechanism="HT-SHA-256-NONE")  # usable with another mechanism only
    doomed = ring.add("token")
    service.mint("retired", "RANDOM")
    ring.retire(doomed.id)  # the first key is current again
    for _ in range(2):
        service.mint("retired", "RANDOM")
    clock.now += 61
    ctx = ctx_of(service, users)
    counter = WorkCounter(monkeypatch, service)
    first, later = first_and_later(cap)
    everyone = ("nobody", *names, "gone", "pinned")
    work = {user: ht_attempt(ctx, counter, user) for user in everyone}
    assert all(w == first for w in work.values()), work
    for _ in range(2):
        work = {user: ht_attempt(ctx, counter, user) for user in everyone}
        assert all(w == later for w in work.values()), work
    for user in ("one", "full", "jwts"):  # a success costs the same as a failure
        assert ht_attempt(ctx, counter, user, tokens[user]) == later


def test_ht_cache_follows_token_changes_without_telling_counts(
    store: SQLiteTokenStore, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mint and revoke here keep a cached name cached; a token cached by verify makes no partial hit;
    a token minted by another process (another service on the store) costs one full miss."""
    cap = 4
    clock = Clock()
    service = TokenService(store, ring, clock=clock, max_tokens_per_user=cap)
    other = TokenService(store, ring, clock=clock, max_tokens_per_user=cap)  # another process sharing the store
    users = MemoryUserStore([UserRecord("alice"), UserRecord("bob")])
    ctx = ctx_of(service, users)
    counter = WorkCounter(monkeypatch, service)
    first, later = first_and_later(cap)
    bob_token, _ = other.mint("bob", "JWT")
    service.verify(bob_token, mechanism="REMEMBERME")  # caches bob's one token, not bob's name
    # Found or not, a lookup costs the same: compare the work without the hit count.
    first = {k: v for k, v in first.items() if k != "hits"}

    def cost(user: str, token: str = WRONG) -> dict[str, int]:
        return {k: v for k, v in ht_attempt(ctx, counter, user, token).items() if k != "hits"}

    assert cost("bob") == first  # as for a name without tokens, not cap - 1 misses
    assert ht_attempt(ctx, counter, "bob") == later
    assert cost("alice") == first
    minted = []
    for i in range(cap + 2):  # the cap revokes the first two here
        clock.now += 1
        minted.append(service.mint("alice", "JWT" if i % 2 else "RANDOM"))
    assert ht_attempt(ctx, counter, "alice", minted[-1][0]) == later
    service.revoke(minted[-1][1].id)
    assert ht_attempt(ctx, counter, "alice", minted[-2][0]) == later
    assert [r.id for r, _ in service.secrets_for("alice", mechanism=HT)] == [r.id for _, r in minted[2:-1]]
    clock.now += 1
    token, _ = other.mint("alice")
    assert cost("alice", token) == first
    assert ht_attempt(ctx, counter, "alice", token) == later
    assert cost("nobody") == first


def test_ht_cache_is_bounded_and_thread_safe(
    store: SQLiteTokenStore, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads looking up more names than the cache holds: right tokens, bounded cache, no errors."""
    service = TokenService(store, ring, max_tokens_per_user=2)
    service.DERIVED_CACHE_SIZE = 5
    expected = {}
    for n in range(6):
        token, record = service.mint(f"user{n}", "RANDOM" if n % 2 else "JWT")
        expected[f"user{n}"] = [(record, token)]
    names = [*expected, "nobody", "nobody2"]
    service._derived = YieldingDict()
    errors: list[BaseException] = []
    wrong: list[str] = []

    def hammer(offset: int) -> None:
        try:
            for n in range(150):
                name = names[(n * 3 + offset) % len(names)]
                if service.secrets_for(name, mechanism=HT) != expected.get(name, []):
                    wrong.append(name)
        except BaseException as exc:  # reported below
            errors.append(exc)

    run_racing(hammer, 4)
    assert not errors, errors[:3]
    assert not wrong
    assert len(service._derived) <= service.DERIVED_CACHE_SIZE


class ListOnlyStore:
    """A third-party TokenStore written before ``list_live``: only the protocol's methods."""

    def __init__(self, inner: SQLiteTokenStore) -> None:
        self.inner = inner
        self.listed = 0

    def __getattr__(self, name: str) -> Any:
        if name == "list_live":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def list(self, user: str | None = None) -> list[TokenRecord]:
        self.listed += 1
        return self.inner.list(user)


def test_ht_store_reads_only_live_records(store: SQLiteTokenStore, ring: KeyRing) -> None:
    """secrets_for reads the user's live records only (``list_live``); stores without it still work."""
    clock = Clock()
    service = TokenService(store, ring, clock=clock, max_tokens_per_user=2)
    for _ in range(10):
        clock.now += 1
        service.mint("alice")  # 8 revoked by the cap
    clock.now += 1
    service.mint("alice", ttl=10)  # revokes one more
    clock.now += 11
    service.revoke_user("bob")
    live = [r for r in store.list("alice") if r.active(clock.now)]
    assert len(live) == 1 and len(store.list("alice")) == 11
    read: list[TokenRecord] = []
    real_list_live = store.list_live

    def list_live(user: str, now: float, slots: int = 0) -> list[TokenRecord]:
        assert slots == 2  # padded to the cap
        records = real_list_live(user, now, slots)
        read.extend(records)
        return records

    store.list_live = list_live  # type: ignore[method-assign]
    assert [r for r, _ in service.secrets_for("alice", mechanism=HT)] == live
    assert read == live  # the 9 revoked and the expired record never left the store
    legacy = ListOnlyStore(store)
    old_style = TokenService(legacy, ring, clock=clock, max_tokens_per_user=2)  # type: ignore[arg-type]
    assert [r for r, _ in old_style.secrets_for("alice", mechanism=HT)] == live
    assert legacy.listed == 1


def test_minting_beyond_the_cap_revokes_the_oldest(store: SQLiteTokenStore, ring: KeyRing) -> None:
    clock = Clock()
    service = TokenService(store, ring, clock=clock, max_tokens_per_user=3)
    minted = []
    for i in range(5):
        clock.now += 1
        minted.append(service.mint("alice", "JWT" if i % 2 else "RANDOM"))
    service.mint("bob")
    live = [r for r in service.list("alice") if r.active(clock.now)]
    assert [r.id for r in live] == [rec.id for _, rec in minted[2:]]
    assert [r.id for r, _ in service.secrets_for("alice", mechanism=HT)] == [rec.id for _, rec in minted[2:]]
    with pytest.raises(TokenRejected) as exc:
        service.verify(minted[0][0], mechanism="REMEMBERME")
    assert exc.value.reason == "revoked"
    assert len(service.list("bob")) == 1


class YieldingDict(dict[tuple[object, ...], str]):
    """A dict that lets other threads run between iterating it and changing it (makes the race likely)."""

    def __iter__(self) -> Iterator[tuple[object, ...]]:
        time.sleep(0)
        return super().__iter__()


def test_derived_token_cache_is_thread_safe(service: TokenService, ring: KeyRing) -> None:
    """Many threads filling and evicting a small cache: no KeyError/RuntimeError, right tokens."""
    service.DERIVED_CACHE_SIZE = 4
    service._derived = YieldingDict()
    key = ring.current("token")
    records = [TokenRecord(f"{i:043d}", "alice", "RANDOM", key.id, 1.0) for i in range(32)]
    expected = {r.id: service._derive(r, key) for r in records}
    errors: list[BaseException] = []
    wrong: list[str] = []

    def hammer(offset: int) -> None:
        try:
            for n in range(3000):
                r = records[(n * 7 + offset) % len(records)]
                if service.token_for(r) != expected[r.id]:
                    wrong.append(r.id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    run_racing(hammer, 8)
    assert not errors, errors[:3]
    assert not wrong
    assert len(service._derived) <= service.DERIVED_CACHE_SIZE


@pytest.fixture
def stokens(store: SQLiteTokenStore, ring: KeyRing) -> SubmissionTokens:
    return SubmissionTokens(store, ring)


def _noncanonical(text: str) -> str | None:
    """Same octets, other trailing bits (RFC 4648 §3.5 canonical encoding), if the length allows it."""
    pad = "=" * (-len(text) % 4)
    data = base64.urlsafe_b64decode(text + pad)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for c in alphabet:
        other = text[:-1] + c
        if other != text and base64.urlsafe_b64decode(other + pad) == data:
            return other
    return None


@pytest.mark.parametrize("kind", ["TEMP", "PERM"])
def test_stoken_accepts_only_strict_base64url(stokens: SubmissionTokens, kind: str) -> None:
    token, _ = stokens.generate(kind, "remote@example.net", "user@example.com")
    assert stokens.verify("user@example.com", token).remote == "remote@example.net"
    parts = token.split(".")
    remote_at = 4 if kind == "TEMP" else 3
    remote = parts[remote_at]

    def with_remote(text: str) -> str:
        return ".".join([*parts[:remote_at], text, *parts[remote_at + 1:]])

    bad = [with_remote(remote[:4] + "!!!!" + remote[4:]), with_remote(remote[:4] + "    " + remote[4:]),
           with_remote(remote + "=" * (-len(remote) % 4 or 4)), with_remote(remote.replace("-", "+") + "++++"),
           token + "=", token.replace(parts[-1], parts[-1] + "AAAA")]
    other = _noncanonical(remote)
    if other is not None:
        bad.append(with_remote(other))
    mac_other = _noncanonical(parts[-1])
    assert mac_other is not None  # 43 characters: 2 spare bits
    bad.append(".".join([*parts[:-1], mac_other]))
    if kind == "TEMP":
        bad.append(".".join([*parts[:3], "0" + parts[3], *parts[4:]]))  # expiry with a leading zero
        bad.append(".".join([*parts[:3], "9" * 13, *parts[4:]]))  # expiry too long
        bad.append(".".join([parts[0], parts[1], parts[2] + "!", *parts[3:]]))  # key id outside its grammar
    else:
        bad.append(".".join([*parts[:2], parts[2] + "!!!!", *parts[3:]]))
    for candidate in bad:
        assert candidate != token
        with pytest.raises(TokenRejected) as exc:
            stokens.verify("user@example.com", candidate)
        assert exc.value.reason == "invalid-token", candidate


def test_stoken_remote_must_be_a_normalized_utf8_address(stokens: SubmissionTokens, ring: KeyRing) -> None:
    token, _ = stokens.generate("TEMP", "remote@example.net", "user@example.com")
    parts = token.split(".")
    for remote in (b"\xff\xfe@x", b"Remote@Example.net", b"no-at-sign", b"a" * 400 + b"@x"):
        forged = ".".join([*parts[:4], b64url(remote), parts[5]])
        with pytest.raises(TokenRejected) as exc:
            stokens.verify("user@example.com", forged)
        assert exc.value.reason == "invalid-token"


# ------------------------------------------------------------------ Failure.authcid


def test_failure_authcid_of_token_mechanisms(service: TokenService, stokens: SubmissionTokens) -> None:
    token, record = service.mint("alice")
    ctx = ctx_of(service, stokens=stokens)
    unknown = RememberMeServer(ctx).step(b"sk1." + b"A" * 43 + b"." + b"B" * 43)
    assert isinstance(unknown, Failure) and unknown.authcid is None  # the token named nobody
    service.revoke(record.id)
    revoked = RememberMeServer(ctx).step(token.encode())
    assert isinstance(revoked, Failure) and revoked.authcid == "alice" and "revoked" in revoked.message
    ht = HTServer(HT, ctx).step(b"I\xc2\xadX\x00\x00" + b"\x00" * 32)  # SASLprep maps U+00AD to nothing
    assert isinstance(ht, Failure) and ht.authcid == "IX"
    stoken, _ = stokens.generate("TEMP", "Remote@Example.net", "user@example.com")
    bad = StokenServer(ctx).step(b"other@example.com\x00" + stoken.encode())
    assert isinstance(bad, Failure) and bad.authcid == "remote@example.net"
    malformed = StokenServer(ctx).step(b"user@example.com\x00junk")
    assert isinstance(malformed, Failure) and malformed.authcid is None

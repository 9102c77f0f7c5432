"""Token minting, verification and revocation; REMEMBERME and STOKEN mechanisms.

Runs against both real stores (SQLite file, and Redis started by conftest).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from saslkit.context import ClientCredentials, ServerContext
from saslkit.credentials import MemoryUserStore, UserRecord
from saslkit.errors import TokenRejected, UsageError
from saslkit.keys import KeyRing
from saslkit.mechanism import Failure, FailureReason, Success
from saslkit.mechanisms.rememberme import RememberMeClient, RememberMeServer
from saslkit.mechanisms.stoken import StokenClient, StokenServer, parse_stoken_message
from saslkit.stores import open_token_store
from saslkit.testing.loopback import run_exchange
from saslkit.tokens import SubmissionTokens, TokenService
from saslkit.tokens.records import TokenStore


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tokens.db'}"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[TokenStore]:
    s = open_token_store(store_url)
    yield s
    s.close()


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.open(tmp_path / "saslkit.keys", quiet=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: TokenStore, ring: KeyRing, clock: Clock) -> TokenService:
    return TokenService(store, ring, clock=clock)


#: The users tokens are minted for here: token checks confirm the user still exists.
USERS = MemoryUserStore([UserRecord("alice"), UserRecord("bob")])


def _ctx(service: TokenService | None = None, stokens: SubmissionTokens | None = None) -> ServerContext:
    return ServerContext(USERS, b"k" * 32, tls=True, tokens=service, stokens=stokens)


def _remember(service: TokenService, token: str) -> Success | Failure:
    client = RememberMeClient(ClientCredentials("", token))
    return run_exchange(client, RememberMeServer(_ctx(service)))[0]


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_mint_and_verify(service: TokenService, token_type: str) -> None:
    token, record = service.mint("alice", token_type, label="laptop")
    assert record.user == "alice" and record.type == token_type and record.label == "laptop"
    assert service.verify(token, mechanism="REMEMBERME") == record
    result = _remember(service, token)
    assert isinstance(result, Success) and result.authcid == "alice" and result.authzid is None
    assert service.list("alice")[0].last_used is not None


def test_random_token_shape_and_entropy(service: TokenService) -> None:
    token, record = service.mint("alice")
    prefix, token_id, mac = token.split(".")
    assert prefix == "sk1" and token_id == record.id
    assert len(base64.urlsafe_b64decode(token_id + "=")) == 32  # 256 bits from the CSPRNG
    assert len(base64.urlsafe_b64decode(mac + "=")) == 32


def test_jwt_claims_header_and_signature(service: TokenService, ring: KeyRing) -> None:
    token, record = service.mint("alice", "JWT", ttl=3600, mechanism="REMEMBERME")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == record.key_id
    key = ring.get(record.key_id)
    assert key is not None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.from_private_bytes(key.secret).public_key()
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="saslkit",
                        options={"verify_exp": False, "verify_iat": False})  # injected clock
    assert claims["sub"] == "alice" and claims["jti"] == record.id
    assert claims["exp"] - claims["iat"] == 3600 and claims["mech"] == "REMEMBERME"


def test_hs256_jwt(store: TokenStore, ring: KeyRing, clock: Clock) -> None:
    ring.add("hs256")
    service = TokenService(store, ring, jwt_key_kind="hs256", clock=clock)
    token, record = service.mint("alice", "JWT")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert service.verify(token, mechanism="REMEMBERME") == record


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_tampered_tokens_fail(service: TokenService, token_type: str) -> None:
    token, _ = service.mint("alice", token_type)
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), token + "x", "", "sk1.x.y", "garbage",
                token.replace(".", "..", 1)):
        with pytest.raises(TokenRejected):
            service.verify(bad, mechanism="REMEMBERME")


def test_forged_jwt_with_other_key_fails(service: TokenService) -> None:
    token, record = service.mint("alice", "JWT")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), Ed25519PrivateKey.generate(),
                        algorithm="EdDSA", headers={"kid": record.key_id})
    with pytest.raises(TokenRejected) as exc:
        service.verify(forged, mechanism="REMEMBERME")
    assert exc.value.reason == "invalid-token"


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_revocation_one_user_and_before(service: TokenService, clock: Clock, token_type: str) -> None:
    t1, r1 = service.mint("alice", token_type)
    clock.now += 100
    t2, _ = service.mint("alice", token_type)
    t3, _ = service.mint("bob", token_type)
    assert service.revoke(r1.id) and not service.revoke("no-such-id")
    with pytest.raises(TokenRejected) as exc:
        service.verify(t1, mechanism="REMEMBERME")
    assert exc.value.reason == "revoked" and "revoked on" in str(exc.value)
    result = _remember(service, t1)
    assert isinstance(result, Failure) and "revoked" in result.message
    assert result.data is not None and result.data.startswith(b"e=other-error,m=token was revoked")
    service.verify(t2, mechanism="REMEMBERME")
    assert service.revoke_user("alice") == 1
    with pytest.raises(TokenRejected):
        service.verify(t2, mechanism="REMEMBERME")
    clock.now += 100
    t4, _ = service.mint("bob", token_type)
    assert service.revoke_before(clock.now - 50) == 1  # bob's first token only
    with pytest.raises(TokenRejected):
        service.verify(t3, mechanism="REMEMBERME")
    service.verify(t4, mechanism="REMEMBERME")


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_expiry_uses_injected_clock(service: TokenService, clock: Clock, token_type: str) -> None:
    token, _ = service.mint("alice", token_type, ttl=60)
    clock.now += 59
    service.verify(token, mechanism="REMEMBERME")
    clock.now += 1
    with pytest.raises(TokenRejected) as exc:
        service.verify(token, mechanism="REMEMBERME")
    assert exc.value.reason == "expired"
    assert service.secrets_for("alice", mechanism="HT-SHA-256-NONE") == []


def test_no_expiry_by_default(service: TokenService, clock: Clock) -> None:
    token, record = service.mint("alice")
    assert record.expires is None
    clock.now += 10 * 365 * 86400
    service.verify(token, mechanism="REMEMBERME")


def test_pinned_token(service: TokenService) -> None:
    token, _ = service.mint("alice", mechanism="HT2-SHA-256-NONE")
    with pytest.raises(TokenRejected) as exc:
        service.verify(token, mechanism="REMEMBERME")
    assert exc.value.reason == "wrong-mechanism"
    assert [t for _, t in service.secrets_for("alice", mechanism="HT2-SHA-256-NONE")] == [token]
    assert service.secrets_for("alice", mechanism="HT-SHA-256-NONE") == []


def test_key_rotation_and_retirement(service: TokenService, ring: KeyRing) -> None:
    old_token, old = service.mint("alice")
    old_jwt, old_j = service.mint("alice", "JWT")
    ring.add("token")
    ring.add("ed25519")
    new_token, new = service.mint("alice")
    assert new.key_id != old.key_id
    for t in (old_token, old_jwt, new_token):  # old keys keep verifying
        service.verify(t, mechanism="REMEMBERME")
    ring.retire(old.key_id)
    ring.retire(old_j.key_id)
    for t in (old_token, old_jwt):
        with pytest.raises(TokenRejected):
            service.verify(t, mechanism="REMEMBERME")
    service.verify(new_token, mechanism="REMEMBERME")


def test_mint_only_after_strong_authentication(service: TokenService) -> None:
    token, _ = service.mint_after(Success("alice", None, None, "SCRAM-SHA-256"))
    assert service.verify(token, mechanism="REMEMBERME").user == "alice"
    for weak in ("REMEMBERME", "HT2-SHA-256-NONE", "HT-SHA-256-EXPR", "STOKEN", ""):
        with pytest.raises(UsageError):
            service.mint_after(Success("alice", None, None, weak))
    with pytest.raises(UsageError):
        service.mint_after(Success("alice", None, None, "PLAIN"), strong_mechanisms={"SCRAM-SHA-256"})
    token, _ = service.mint_after(Success("admin", "alice", None, "PLAIN"))
    assert service.verify(token, mechanism="REMEMBERME").user == "alice"  # the identity acted as


def test_rememberme_failures(service: TokenService) -> None:
    assert _remember(service, "sk1." + "A" * 43 + "." + "B" * 43).reason == FailureReason.AUTHENTICATION_FAILED
    server = RememberMeServer(_ctx(service))
    result = server.step(b"\xff\xfe")
    assert isinstance(result, Failure) and result.data == b"e=invalid-encoding,m=token is not UTF-8"
    assert isinstance(RememberMeServer(_ctx(service)).step(b"x" * 5000), Failure)
    unknown = RememberMeServer(_ctx(service)).step(b"sk1." + b"A" * 43 + b"." + b"B" * 43)
    assert isinstance(unknown, Failure) and unknown.data is not None and unknown.data.startswith(b"e=unknown-user")
    assert isinstance(RememberMeServer(_ctx(None)).step(b"whatever"), Failure)


def test_rememberme_draft_example_token_is_opaque(service: TokenService) -> None:
    """The draft §4 example carries a trailing LF: a token is compared exactly, never trimmed."""
    token, _ = service.mint("alice")
    assert isinstance(RememberMeServer(_ctx(service)).step(token.encode() + b"\n"), Failure)
    assert isinstance(RememberMeServer(_ctx(service)).step(token.encode()), Success)


def test_store_copy_without_key_ring_authenticates_nobody(
    service: TokenService, store_url: str, tmp_path: Path
) -> None:
    """A thief with the database (or a Redis dump) but not the key ring gets nothing usable."""
    tokens = [service.mint("alice", t)[0] for t in ("RANDOM", "JWT", "RANDOM")]
    if store_url.startswith("sqlite"):
        db = Path(store_url.removeprefix("sqlite:///"))
        stolen = tmp_path / "stolen.db"
        shutil.copy(db, stolen)
        if Path(str(db) + "-wal").exists():
            shutil.copy(str(db) + "-wal", str(stolen) + "-wal")
        dump = stolen.read_bytes() + (Path(str(stolen) + "-wal").read_bytes() if Path(str(stolen) + "-wal").exists()
                                      else b"")
        stolen_url = f"sqlite:///{stolen}"
    else:
        import redis

        client = redis.Redis.from_url(store_url)
        dump = b"".join(key + (client.dump(key) or b"") for key in client.keys("*"))  # DUMP: raw serialized values
        assert dump
        stolen_url = store_url
    for token in tokens:
        assert token.encode() not in dump
        assert token.split(".")[-1].encode() not in dump  # no MAC or signature either
    # The same records with a different (attacker's) key ring authenticate nothing.
    thief = TokenService(open_token_store(stolen_url), KeyRing.open(tmp_path / "thief.keys", quiet=True))
    for token in tokens:
        with pytest.raises(TokenRejected):
            thief.verify(token, mechanism="REMEMBERME")
    for record in thief.list("alice"):
        assert thief.token_for(record) is None  # keys unknown to this ring


# ---------------------------------------------------------------- submission tokens


@pytest.fixture
def stokens(store: TokenStore, ring: KeyRing, clock: Clock) -> SubmissionTokens:
    return SubmissionTokens(store, ring, clock=clock)


def _stoken_auth(stokens: SubmissionTokens, recipient: str, token: str) -> Success | Failure:
    client = StokenClient(ClientCredentials(recipient, token))
    return run_exchange(client, StokenServer(_ctx(stokens=stokens)))[0]


def test_temporary_stoken_self_verifying(stokens: SubmissionTokens, clock: Clock, store: TokenStore) -> None:
    token, expires = stokens.generate("TEMP", "user@example.com", "User@Foo.com")
    assert expires == clock.now + 7 * 86400
    assert store.stoken_get("user@example.com", "user@foo.com") is None  # nothing stored
    result = _stoken_auth(stokens, "user@foo.com", token)
    assert isinstance(result, Success) and result.authcid == "user@example.com"
    assert result.details == {"stoken_local": "user@foo.com", "stoken_kind": "TEMP"}
    assert isinstance(_stoken_auth(stokens, "other@foo.com", token), Failure)  # bound to the pair
    clock.now = expires
    assert isinstance(_stoken_auth(stokens, "user@foo.com", token), Failure)


def test_permanent_stoken_stored_reused_refreshed_revoked(stokens: SubmissionTokens, clock: Clock) -> None:
    token, expires = stokens.generate("PERM", "user@example.com", "user@foo.com")
    assert expires == clock.now + 365 * 86400
    again, _ = stokens.generate("PERM", "user@example.com", "user@foo.com")
    assert again == token  # draft §5.4.1: an existing permanent token is returned
    clock.now += 300 * 86400
    assert isinstance(_stoken_auth(stokens, "user@foo.com", token), Success)  # refreshes to +1 year
    clock.now += 300 * 86400
    assert isinstance(_stoken_auth(stokens, "user@foo.com", token), Success)
    assert stokens.revoke("user@example.com", "user@foo.com") is True
    assert stokens.revoke("user@example.com", "user@foo.com") is False  # still a success for REVSTOKEN
    assert isinstance(_stoken_auth(stokens, "user@foo.com", token), Failure)
    fresh, _ = stokens.generate("PERM", "user@example.com", "user@foo.com")
    assert fresh != token


def test_stoken_message_forms() -> None:
    assert parse_stoken_message(b"user@foo.com\x00s6xW15h9Dh") == ("user@foo.com", "s6xW15h9Dh")
    # The draft's own example, with a literal backslash-zero (documented choice).
    draft = base64.b64decode("dXNlckBmb28uY29tXDBzNnhXMTVoOURo")
    assert parse_stoken_message(draft) == ("user@foo.com", "s6xW15h9Dh")
    for bad in (b"", b"user@foo.com", b"\x00tok", b"user@foo.com\x00", b"\xff\x00x", b"a" * 3000):
        with pytest.raises(Exception) as exc:
            parse_stoken_message(bad)
        assert exc.type.__module__.startswith("saslkit")


def test_stoken_bad_addresses(stokens: SubmissionTokens) -> None:
    for remote, local in (("nope", "user@foo.com"), ("user@example.com", "bad address@x"), ("", "a@b")):
        with pytest.raises(UsageError):
            stokens.generate("TEMP", remote, local)
    with pytest.raises(UsageError):
        stokens.generate("FOREVER", "a@b.c", "d@e.f")


def test_stoken_tampering(stokens: SubmissionTokens) -> None:
    token, _ = stokens.generate("TEMP", "user@example.com", "user@foo.com")
    parts = token.split(".")
    later = ".".join([*parts[:3], str(int(parts[3]) + 10**6), *parts[4:]])
    other_remote = ".".join([*parts[:4], base64.urlsafe_b64encode(b"evil@example.com").decode().rstrip("="),
                             parts[5]])
    for bad in (later, other_remote, token[:-1], "st1.t.x", json.dumps({"a": 1})):
        assert isinstance(_stoken_auth(stokens, "user@foo.com", bad), Failure)


def test_redis_down_is_temporary_failure_then_recovers(start_redis: Any, ring: KeyRing, tmp_path: Path) -> None:
    """Verification with the store unreachable fails temporarily (never success), then works again."""
    from saslkit.mechanisms.ht import HTClient, HTServer

    server = start_redis()
    service = TokenService(open_token_store(server.url), ring)
    token, _ = service.mint("alice")
    ctx = _ctx(service)

    def attempts() -> list[Success | Failure]:
        remember = run_exchange(RememberMeClient(ClientCredentials("", token)), RememberMeServer(ctx))[0]
        ht = run_exchange(HTClient("HT2-SHA-256-NONE", ClientCredentials("alice", token)),
                          HTServer("HT2-SHA-256-NONE", ctx))[0]
        return [remember, ht]

    assert all(isinstance(r, Success) for r in attempts())
    server.stop()
    for result in attempts():
        assert isinstance(result, Failure) and result.reason == FailureReason.TEMPORARY_FAILURE
    server.start()  # same port, empty memory: the token's record is gone with it
    for result in attempts():
        assert isinstance(result, Failure) and result.reason == FailureReason.AUTHENTICATION_FAILED
    token, _ = service.mint("alice")  # the same service object works again
    assert all(isinstance(r, Success) for r in attempts())

"""PLAIN (RFC 4616): vectors, authzid rules, SASLprep, size limits and verification paths."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

from saslkit import (
    Challenge,
    ClientCredentials,
    Failure,
    FailureReason,
    MemoryUserStore,
    ProtocolError,
    ScramCredential,
    ServerContext,
    Success,
    UsageError,
    UserRecord,
    default_registry,
    hash_password,
    make_user,
    run_exchange,
)
from saslkit.mechanisms.plain import MAX_FIELD, PlainClient, PlainServer, parse_plain
from saslkit.stores.sqlite import SQLiteUserStore

SECRET = b"plain-test-server-secret-0123456789"
LONG_NAME = "n" * 255
LONG_PASSWORD = "\u00e9" * 127 + "a"  # 255 octets of UTF-8


#: RFC examples as reference data (tests/reference/README.md).
REFERENCE = Path(__file__).resolve().parent / "reference"


def _vectors() -> list[dict]:
    return json.loads((REFERENCE / "plain-rfc4616.json").read_text(encoding="utf-8"))["vectors"]


VECTORS = _vectors()
needs_vectors = pytest.mark.skipif(not VECTORS, reason="plain-rfc4616.json not found")


def _scram_only(username: str, password: str, hashes: tuple[str, ...] = ("SHA-256",)) -> UserRecord:
    return make_user(username, password, iterations=4096, argon2_hash=False, hashes=hashes)


class ReadOnlyStore:
    """A store mechanisms can read but not write: PLAIN logins here never upgrade anyone."""

    def __init__(self, inner: MemoryUserStore) -> None:
        self.inner = inner

    @property
    def default_iterations(self) -> int:
        return self.inner.default_iterations

    def get_user(self, username: str) -> UserRecord | None:
        return self.inner.get_user(username)

    def credential_profiles(self) -> dict:
        return self.inner.credential_profiles()


@pytest.fixture(scope="module")
def store() -> ReadOnlyStore:
    """argon2 verification is slow: two argon2 users only, the rest SCRAM-keys-only (kept so: read-only)."""
    return ReadOnlyStore(MemoryUserStore(
        [
            UserRecord("tim", password_hash=hash_password("tanstaaftanstaaf")),
            UserRecord("ix", password_hash=hash_password("I\u00adX")),  # stored as SASLprep("I\u00adX") = "IX"
            _scram_only("user", "pencil"),
            _scram_only("sha1user", "pencil", ("SHA-1",)),
            UserRecord(
                "keysonly",
                {"SHA-512": ScramCredential.derive("SHA-512", "pencil", b"0123456789abcdef", 4096)},
                password_hash=None,
            ),
            UserRecord("nothing"),  # neither SCRAM keys nor a password hash
            _scram_only("Kurt", "xipj3plmq"),
            _scram_only(LONG_NAME, LONG_PASSWORD),
        ]
    ))


def ctx(store: MemoryUserStore, **kw: object) -> ServerContext:
    return ServerContext(store, server_secret=SECRET, tls=True, **kw)  # type: ignore[arg-type]


def plain(store: MemoryUserStore, message: bytes, **kw: object) -> object:
    server = PlainServer(ctx(store, **kw))
    result = server.step(message)
    assert server.done
    return result


def msg(authzid: str, authcid: str, password: str) -> bytes:
    return f"{authzid}\0{authcid}\0{password}".encode()


# --------------------------------------------------------------------------- vectors


@needs_vectors
@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector_encoding(vector: dict) -> None:
    message = bytes.fromhex(vector["message_hex"])
    assert len(message) == vector["message_len"]
    assert base64.b64encode(message).decode() == vector["message_b64"]
    assert parse_plain(message) == (vector["authzid"] or "", vector["authcid"], vector["passwd"])
    creds = ClientCredentials(vector["authcid"], vector["passwd"], authzid=vector["authzid"])
    assert PlainClient(creds).start() == message


@needs_vectors
@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector_server_outcome(vector: dict) -> None:
    users = MemoryUserStore([_scram_only(vector["authcid"], vector["passwd"])])
    result = plain(users, bytes.fromhex(vector["message_hex"]))
    if vector["authzid"] in (None, vector["authcid"]):
        assert isinstance(result, Success)
        assert (result.authcid, result.authzid, result.mechanism) == (vector["authcid"], None, "PLAIN")
    else:
        # RFC 4616 §4 example 2: Kurt may not act as Ursel.
        assert isinstance(result, Failure)
        assert result.reason == FailureReason.AUTHORIZATION_FAILED


# --------------------------------------------------------------------------- authorization identity


def test_authzid_empty(store: MemoryUserStore) -> None:
    result = plain(store, msg("", "user", "pencil"))
    assert isinstance(result, Success)
    assert (result.authcid, result.authzid, result.identity) == ("user", None, "user")


def test_authzid_equal_to_authcid(store: MemoryUserStore) -> None:
    result = plain(store, msg("user", "user", "pencil"))
    assert isinstance(result, Success)
    assert result.authzid is None


def test_authzid_equal_after_saslprep(store: MemoryUserStore) -> None:
    result = plain(store, msg("us\u00ader", "user", "pencil"))
    assert isinstance(result, Success)
    assert result.authzid is None


def test_authzid_delegated_by_authorize_callback(store: MemoryUserStore) -> None:
    calls: list[tuple[str, str]] = []

    def authorize(authcid: str, authzid: str) -> bool:
        calls.append((authcid, authzid))
        return (authcid, authzid) == ("Kurt", "Ursel")

    result = plain(store, msg("Ursel", "Kurt", "xipj3plmq"), authorize=authorize)
    assert isinstance(result, Success)
    assert (result.authcid, result.authzid, result.identity) == ("Kurt", "Ursel", "Ursel")
    assert calls == [("Kurt", "Ursel")]


def test_authzid_refused_by_default_policy(store: MemoryUserStore) -> None:
    result = plain(store, msg("Ursel", "Kurt", "xipj3plmq"))
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHORIZATION_FAILED
    assert result.authorization


def test_authzid_refused_by_callback(store: MemoryUserStore) -> None:
    result = plain(store, msg("root", "user", "pencil"), authorize=lambda c, z: z != "root")
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHORIZATION_FAILED


def test_wrong_password_with_authzid_is_an_authentication_failure(store: MemoryUserStore) -> None:
    called: list[object] = []
    result = plain(store, msg("Ursel", "Kurt", "wrong"), authorize=lambda *a: called.append(a) or True)
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHENTICATION_FAILED
    assert called == []


@pytest.mark.parametrize("authzid", ["\u00ad", "\u200b", "\u00ad\u200b"])
def test_authzid_empty_after_saslprep_fails(store: MemoryUserStore, authzid: str) -> None:
    """RFC 4954 §4 / RFC 4616 §2: an authzid that prepares to "" (but was sent non-empty) fails."""
    result = plain(store, msg(authzid, "user", "pencil"), authorize=lambda c, z: True)
    assert isinstance(result, Failure)


def test_authzid_failing_saslprep_fails(store: MemoryUserStore) -> None:
    result = plain(store, msg("ad\u0007min", "user", "pencil"), authorize=lambda c, z: True)
    assert isinstance(result, Failure)


# --------------------------------------------------------------------------- SASLprep


def test_password_saslprep_soft_hyphen(store: MemoryUserStore) -> None:
    """A password stored as "I\\u00adX" (prepared "IX") authenticates with "IX" (RFC 4013 §3 ex. 1)."""
    result = plain(store, msg("", "ix", "IX"))
    assert isinstance(result, Success)
    assert result.authcid == "ix"


def test_password_saslprep_nfkc(store: MemoryUserStore) -> None:
    """U+2168 ROMAN NUMERAL NINE prepares to "IX" too (RFC 4013 §3 ex. 5)."""
    assert isinstance(plain(store, msg("", "ix", "\u2168")), Success)


def test_password_saslprep_keeps_case(store: MemoryUserStore) -> None:
    assert isinstance(plain(store, msg("", "user", "PENCIL")), Failure)


def test_password_saslprep_on_scram_only_user(store: MemoryUserStore) -> None:
    assert isinstance(plain(store, msg("", "user", "pen\u00adcil")), Success)
    assert isinstance(plain(store, msg("", "user", "pen\u200bcil")), Success)


@pytest.mark.parametrize("authcid", ["us\u00ader", "\u00aduser", "user\u200b", "us\ufeffer"])
def test_authcid_saslprep(store: MemoryUserStore, authcid: str) -> None:
    result = plain(store, msg("", authcid, "pencil"))
    assert isinstance(result, Success)
    assert result.authcid == "user"


def test_authcid_nfkc(store: MemoryUserStore) -> None:
    result = plain(store, msg("", "\u2163x", "x"))  # "IVx": unknown, but no crash
    assert isinstance(result, Failure)


@pytest.mark.parametrize(
    ("authcid", "password"),
    [
        ("us\u0007er", "pencil"),  # prohibited control in authcid
        ("user", "pen\u0007cil"),  # prohibited control in password
        ("user", "pencil\ue000"),  # private use
        ("user", "\u0627pencil"),  # bidi: RandALCat then LCat
        ("user", "pencil\u0221"),  # unassigned in a (stored-prepared) password
        ("\u00ad", "pencil"),  # authcid empty after preparation
        ("user", "\u00ad\u200b"),  # password empty after preparation
    ],
)
def test_preparation_failure_fails_verification(store: MemoryUserStore, authcid: str, password: str) -> None:
    """RFC 4616 §2: if preparation fails or results in an empty string, verification SHALL fail."""
    result = plain(store, msg("", authcid, password))
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHENTICATION_FAILED


# --------------------------------------------------------------------------- NUL and size checks


@pytest.mark.parametrize(
    "message",
    [
        b"useronly",  # no NUL
        b"\0user",  # one NUL
        b"\0user\0pen\0cil",  # NUL inside the password
        b"a\0b\0c\0d",
        b"\0\0pencil",  # empty authcid
        b"\0user\0",  # empty password
        b"\0\0",
        b"",
        b"\0us\xffer\0pencil",  # invalid UTF-8
        b"\0user\0pen\xc0\x80cil",  # overlong NUL
        b"\0user\0\xed\xa0\x80",  # encoded surrogate
    ],
)
def test_parse_plain_rejects(message: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_plain(message)
    assert info.value.reason == FailureReason.INVALID_ENCODING


@pytest.mark.parametrize(
    "message",
    [
        b"\0user\0" + b"p" * (MAX_FIELD + 1),
        b"a" * (MAX_FIELD + 1) + b"\0user\0pencil",
        b"\0" + b"u" * (MAX_FIELD + 1) + b"\0pencil",
        b"a" * MAX_FIELD + b"\0" + b"u" * MAX_FIELD + b"\0" + b"p" * (MAX_FIELD + 1),
    ],
)
def test_parse_plain_rejects_oversized(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_plain(message)


def test_parse_plain_accepts_255_octet_fields() -> None:
    """RFC 4616 §2: servers MUST accept up to 255 octets per field."""
    authzid = "\U0001f600" * 63 + "abc"  # 4-octet characters, 255 octets
    message = msg(authzid, LONG_NAME, LONG_PASSWORD)
    assert [len(f) for f in message.split(b"\0")] == [255, 255, 255]
    assert parse_plain(message) == (authzid, LONG_NAME, LONG_PASSWORD)


def test_parse_plain_accepts_max_field() -> None:
    message = b"a" * MAX_FIELD + b"\0" + b"u" * MAX_FIELD + b"\0" + b"p" * MAX_FIELD
    assert parse_plain(message) == ("a" * MAX_FIELD, "u" * MAX_FIELD, "p" * MAX_FIELD)


def test_server_accepts_255_octet_fields(store: MemoryUserStore) -> None:
    result = plain(store, msg("", LONG_NAME, LONG_PASSWORD))
    assert isinstance(result, Success)
    assert result.authcid == LONG_NAME


@pytest.mark.parametrize("message", [b"\0user", b"\0user\0pen\0cil", b"\0user\0" + b"p" * (MAX_FIELD + 1), b"\xff"])
def test_server_reports_malformed_messages(store: MemoryUserStore, message: bytes) -> None:
    result = plain(store, message)
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.INVALID_ENCODING


@pytest.mark.parametrize(
    ("username", "secret", "authzid"),
    [("us\0er", "pw", None), ("user", "p\0w", None), ("user", "pw", "a\0b"), ("", "pw", None), ("user", "", None)],
)
def test_client_refuses_bad_fields(username: str, secret: str, authzid: str | None) -> None:
    with pytest.raises(UsageError):
        PlainClient(ClientCredentials(username, secret, authzid=authzid)).start()


# --------------------------------------------------------------------------- verification paths


def test_argon2_user_correct_password(store: MemoryUserStore) -> None:
    result = plain(store, msg("", "tim", "tanstaaftanstaaf"))
    assert isinstance(result, Success)
    assert (result.authcid, result.mechanism) == ("tim", "PLAIN")


def test_argon2_user_wrong_password(store: MemoryUserStore) -> None:
    result = plain(store, msg("", "tim", "tanstaaf"))
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHENTICATION_FAILED


@pytest.mark.parametrize(("username", "password"), [("user", "pencil"), ("sha1user", "pencil"), ("keysonly", "pencil")])
def test_scram_keys_only_user(store: MemoryUserStore, username: str, password: str) -> None:
    assert store.get_user(username).password_hash is None
    assert isinstance(plain(store, msg("", username, password)), Success)
    wrong = plain(store, msg("", username, password + "!"))
    assert isinstance(wrong, Failure)
    assert wrong.reason == FailureReason.AUTHENTICATION_FAILED


def test_user_without_any_credential_fails(store: MemoryUserStore) -> None:
    result = plain(store, msg("", "nothing", "anything"))
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHENTICATION_FAILED


def test_corrupt_password_hash_fails(store: MemoryUserStore) -> None:
    users = MemoryUserStore([UserRecord("broken", password_hash="$argon2id$not-a-hash")])
    result = plain(users, msg("", "broken", "x"))
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.AUTHENTICATION_FAILED


def test_unknown_user_fails_like_a_wrong_password(store: MemoryUserStore) -> None:
    unknown = plain(store, msg("", "mallory", "tanstaaftanstaaf"))
    wrong_argon2 = plain(store, msg("", "tim", "wrong"))
    wrong_scram = plain(store, msg("", "user", "wrong"))
    assert isinstance(unknown, Failure)
    assert _peer_view(unknown) == _peer_view(wrong_argon2) == _peer_view(wrong_scram)
    assert (unknown.reason, unknown.data) == (FailureReason.AUTHENTICATION_FAILED, None)
    # Failure.authcid (logs and penalties only, never sent) names the identity tried.
    assert (unknown.authcid, wrong_argon2.authcid, wrong_scram.authcid) == ("mallory", "tim", "user")


def _peer_view(failure: object) -> tuple[object, ...]:
    """What the peer sees of a failure (authcid stays on the server)."""
    assert isinstance(failure, Failure)
    return failure.reason, failure.message, failure.data


def test_failure_authcid_is_the_prepared_identity(store: ReadOnlyStore) -> None:
    result = plain(store, msg("", "us\u00ader", "wrong"))
    assert isinstance(result, Failure)
    assert result.authcid == "user"
    refused = plain(store, msg("Ursel", "Kurt", "xipj3plmq"))
    assert isinstance(refused, Failure)
    assert (refused.reason, refused.authcid) == (FailureReason.AUTHORIZATION_FAILED, "Kurt")
    unparsed = plain(store, b"junk")
    assert isinstance(unparsed, Failure)
    assert unparsed.authcid is None


# --------------------------------------------------------------------------- upgrade on login


def test_imported_user_is_upgraded_on_plain_login() -> None:
    """A SCRAM-only user whose password PLAIN just verified gets argon2 and the default SCRAM keys."""
    imported = UserRecord("kim", {"SHA-256": ScramCredential.derive("SHA-256", "pencil", b"12-octet-slt", 4096)})
    users = MemoryUserStore([imported])
    assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
    assert users.get_user("kim") == imported  # off by default in a memory store
    users.upgrade_on_login = True
    assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
    upgraded = users.get_user("kim")
    assert upgraded is not None and upgraded.password_hash is not None
    assert sorted(upgraded.scram) == ["SHA-1", "SHA-256", "SHA-512"]
    assert {(c.iterations, len(c.salt)) for c in upgraded.scram.values()} == {(users.default_iterations, 16)}
    assert len({c.salt for c in upgraded.scram.values()}) == 1
    # Both mechanisms still work with the new credentials; a wrong password still fails.
    assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
    assert isinstance(plain(users, msg("", "kim", "pencil!")), Failure)
    outcome, _ = run_exchange(
        default_registry().client("SCRAM-SHA-512", ClientCredentials("kim", "pencil")),
        default_registry().server("SCRAM-SHA-512", ctx(users)),
    )
    assert isinstance(outcome, Success)


def test_imported_user_is_upgraded_in_a_sqlite_store(tmp_path: Path) -> None:
    """The production store upgrades by default; the user's SCRAM login then uses the new keys."""
    users = SQLiteUserStore(tmp_path / "u.db")
    users.put_user(UserRecord("kim", {c.hash_name: c for c in map(ScramCredential.parse, GSASL_LINES)}))
    assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
    upgraded = users.get_user("kim")
    assert upgraded is not None and upgraded.password_hash is not None
    assert {(h, c.iterations, len(c.salt)) for h, c in upgraded.scram.items()} == {
        (h, users.default_iterations, 16) for h in ("SHA-1", "SHA-256", "SHA-512")
    }
    outcome, _ = run_exchange(
        default_registry().client("SCRAM-SHA-256", ClientCredentials("kim", "pencil")),
        default_registry().server("SCRAM-SHA-256", ctx(users)),
    )
    assert isinstance(outcome, Success)


#: ``gsasl --mkpasswd`` lines for "pencil" (4096 iterations, a 12-octet salt per hash).
GSASL_LINES = [
    ScramCredential.derive(h, "pencil", salt, 4096).to_dovecot()
    for h, salt in (("SHA-1", b"salt-for-sh1"), ("SHA-256", b"salt-for-256"))
]


def test_failed_login_does_not_upgrade() -> None:
    imported = _scram_only("kim", "pencil")
    users = MemoryUserStore([imported])
    users.upgrade_on_login = True
    assert isinstance(plain(users, msg("", "kim", "wrong")), Failure)
    assert isinstance(plain(users, msg("Ursel", "kim", "pencil")), Failure)  # authorization refused
    assert users.get_user("kim") == imported


def test_upgrade_leaves_a_read_only_store_alone(store: ReadOnlyStore) -> None:
    before = store.get_user("user")
    assert isinstance(plain(store, msg("", "user", "pencil")), Success)
    assert store.get_user("user") is before


class FailingWrites(MemoryUserStore):
    def upgrade_credentials(self, current: UserRecord, upgraded: UserRecord) -> bool:
        from saslkit.errors import TemporaryFailure

        raise TemporaryFailure("database is locked")


def test_upgrade_store_error_never_fails_the_login() -> None:
    users = FailingWrites([_scram_only("kim", "pencil")])
    users.upgrade_on_login = True
    result = plain(users, msg("", "kim", "pencil"))
    assert isinstance(result, Success)
    assert result.authcid == "kim"
    assert users.get_user("kim").password_hash is None


# --------------------------------------------------------------------------- exchange shape


def test_no_initial_response(store: MemoryUserStore) -> None:
    server = PlainServer(ctx(store))
    assert server.step(None) == Challenge(b"")
    assert not server.done
    result = server.step(msg("", "user", "pencil"))
    assert isinstance(result, Success)
    assert server.done


def test_missing_response_after_empty_challenge(store: MemoryUserStore) -> None:
    server = PlainServer(ctx(store))
    assert server.step(None) == Challenge(b"")
    result = server.step(None)
    assert isinstance(result, Failure)
    assert result.reason == FailureReason.INVALID_ENCODING


@pytest.mark.parametrize("message", [msg("", "user", "pencil"), msg("", "user", "wrong"), b"junk"])
def test_step_after_done_raises(store: MemoryUserStore, message: bytes) -> None:
    server = PlainServer(ctx(store))
    server.step(message)
    with pytest.raises(UsageError):
        server.step(message)


def test_client_contract() -> None:
    client = PlainClient(ClientCredentials("user", "pencil"))
    assert client.start() == b"\0user\0pencil"
    with pytest.raises(ProtocolError):
        client.step(b"unexpected")
    client.finish(None)
    client.finish(b"")
    with pytest.raises(ProtocolError):
        client.finish(b"data")


@pytest.mark.parametrize("initial_response", [True, False])
def test_run_exchange_through_registry(store: MemoryUserStore, initial_response: bool) -> None:
    reg = default_registry()
    outcome, transcript = run_exchange(
        reg.client("PLAIN", ClientCredentials("user", "pencil")),
        reg.server("PLAIN", ctx(store)),
        initial_response=initial_response,
    )
    assert isinstance(outcome, Success)
    assert transcript.lines[-1] == ("C", b"\0user\0pencil")


def test_upgrade_is_no_credential_change_and_keeps_tokens(tmp_path: Path) -> None:
    """Rehashing after a PLAIN login keeps ``changed``: the user's tokens stay valid (they need floor(changed))."""
    users = SQLiteUserStore(tmp_path / "u.db", clock=lambda: 1000.0)
    users.put_user(_scram_only("kim", "pencil"))
    before = users.get_user("kim")
    assert before is not None and before.changed == 1000.0
    assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
    after = users.get_user("kim")
    assert after is not None and after.password_hash is not None and after.changed == 1000.0
    memory = MemoryUserStore([replace(_scram_only("kim", "pencil"), changed=5.0)])
    memory.upgrade_on_login = True
    assert isinstance(plain(memory, msg("", "kim", "pencil")), Success)
    upgraded = memory.get_user("kim")
    assert upgraded is not None and upgraded.password_hash is not None and upgraded.changed == 5.0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_upgrade_never_undoes_a_password_change_made_meanwhile(tmp_path: Path, kind: str) -> None:
    """The upgrade is a compare-and-set: a record changed after the login read it is left as it is."""
    ticks = iter(float(t) for t in range(100, 200))
    users: MemoryUserStore | SQLiteUserStore
    if kind == "memory":
        users = MemoryUserStore(clock=lambda: next(ticks))
    else:
        users = SQLiteUserStore(tmp_path / "u.db", clock=lambda: next(ticks))
    users.put_user(_scram_only("kim", "old-password"))
    read_by_login = users.get_user("kim")
    assert read_by_login is not None
    users.put_user(make_user("kim", "new-password", iterations=4096))  # the administrator's change
    stale = make_user("kim", "old-password", iterations=4096)
    assert users.upgrade_credentials(read_by_login, stale) is False
    assert isinstance(plain(users, msg("", "kim", "new-password")), Success)
    assert isinstance(plain(users, msg("", "kim", "old-password")), Failure)


def test_upgrade_does_not_wait_for_another_writer(tmp_path: Path) -> None:
    """With another connection holding the write lock, the login succeeds at once and the upgrade is skipped."""
    import sqlite3
    import time

    users = SQLiteUserStore(tmp_path / "u.db", timeout=5.0)
    users.put_user(_scram_only("kim", "pencil"))
    holder = sqlite3.connect(tmp_path / "u.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
        assert time.monotonic() - started < 2.5  # the 5 s busy timeout was not waited for
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    record = users.get_user("kim")
    assert record is not None and record.password_hash is None  # skipped, tried again at the next login
    assert isinstance(plain(users, msg("", "kim", "pencil")), Success)
    record = users.get_user("kim")
    assert record is not None and record.password_hash is not None

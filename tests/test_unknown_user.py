"""Unknown users look like real ones until the proof (RFC 5802 §9; RFC 4422 §3.6)."""

from __future__ import annotations

import base64
import itertools
import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from saslkit import (
    DEFAULT_ITERATIONS,
    ClientCredentials,
    Failure,
    MemoryUserStore,
    ScramCredential,
    ServerContext,
    UsageError,
    UserRecord,
    make_user,
    run_exchange,
)
from saslkit.cli import main as cli_main
from saslkit.credentials import SCRAM_HASHES, CredentialProfile, argon2_parameters, fake_salt
from saslkit.errors import StoreError
from saslkit.keys import Key, KeyRing
from saslkit.mechanisms import plain as plain_module
from saslkit.mechanisms import scram as scram_module
from saslkit.mechanisms.plain import PlainServer
from saslkit.mechanisms.scram import SCRAM_MECHANISMS, ScramClient, ScramServer
from saslkit.stores import sqlite as sqlite_module
from saslkit.stores.sqlite import SQLiteUserStore
from saslkit.unknown_users import fake_scram_parameters, virtual_profile

SECRET = b"unknown-user-test-secret-32-octets!"
BASE_MECHS = [m for m, (_, plus) in SCRAM_MECHANISMS.items() if not plus]


@pytest.fixture(scope="module")
def store() -> MemoryUserStore:
    # Real user created with the default iteration count, in a store with the default too.
    return MemoryUserStore(
        [
            make_user("alice", "correct horse", argon2_hash=False),
            make_user("sha1only", "correct horse", argon2_hash=False, hashes=("SHA-1",)),
        ]
    )


@pytest.fixture(scope="module")
def fast_store() -> MemoryUserStore:
    return MemoryUserStore([make_user("bob", "pw", iterations=4096, argon2_hash=False)], default_iterations=4096)


_counter = itertools.count()


def _nonce() -> str:
    return f"nonce{next(_counter)}"


def server_first(
    store: MemoryUserStore, username: str, mech: str = "SCRAM-SHA-256", raw: bool = False, secret: bytes = SECRET
) -> dict[str, str]:
    server = ScramServer(mech, ServerContext(store, secret, nonce_factory=_nonce))
    if raw:
        message = f"n,,n={username},r=clientnonce".encode()
    else:
        message = ScramClient(mech, ClientCredentials(username, "x", nonce_factory=_nonce)).start()
    challenge = server.step(message)
    return dict(part.split("=", 1) for part in challenge.data.decode().split(","))


@pytest.mark.parametrize("mech", BASE_MECHS)
def test_same_unknown_user_sees_same_salt_and_iterations(store: MemoryUserStore, mech: str) -> None:
    first = server_first(store, "mallory", mech)
    second = server_first(store, "mallory", mech)
    assert first["r"] != second["r"]  # fresh nonces, yet...
    assert (first["s"], first["i"]) == (second["s"], second["i"])


@pytest.mark.parametrize("mech", BASE_MECHS)
def test_unknown_user_iterations_are_the_store_default(store: MemoryUserStore, mech: str) -> None:
    unknown = server_first(store, "mallory", mech)
    real = server_first(store, "alice", mech)
    assert int(unknown["i"]) == store.default_iterations == DEFAULT_ITERATIONS
    assert unknown["i"] == real["i"]


def test_unknown_user_iterations_follow_a_non_default_store(fast_store: MemoryUserStore) -> None:
    assert server_first(fast_store, "mallory")["i"] == "4096" == server_first(fast_store, "bob")["i"]


def test_different_unknown_users_get_different_salts(store: MemoryUserStore) -> None:
    salts = {server_first(store, name)["s"] for name in ("mallory", "eve", "trudy", "Mallory")}
    assert len(salts) == 4


def test_fake_salt_depends_on_the_server_secret(store: MemoryUserStore) -> None:
    a = server_first(store, "mallory", secret=SECRET)["s"]
    b = server_first(store, "mallory", secret=b"another-secret-of-enough-length")["s"]
    assert a != b


def test_fake_salt_is_per_prepared_name(store: MemoryUserStore) -> None:
    """Two spellings that SASLprep to the same name see the same salt."""
    assert server_first(store, "\u2168", raw=True)["s"] == server_first(store, "IX", raw=True)["s"]


@pytest.mark.parametrize("mech", BASE_MECHS)
def test_fake_salt_length_equals_a_real_salt_length(store: MemoryUserStore, mech: str) -> None:
    unknown = base64.b64decode(server_first(store, "mallory", mech)["s"])
    real = base64.b64decode(server_first(store, "alice", mech)["s"])
    assert len(unknown) == len(real)
    assert len(server_first(store, "mallory", mech)["s"]) == len(server_first(store, "alice", mech)["s"])


def test_server_first_has_the_same_shape(store: MemoryUserStore) -> None:
    unknown = server_first(store, "mallory")
    real = server_first(store, "alice")
    assert list(unknown) == list(real) == ["r", "s", "i"]


def _final_failure(store: MemoryUserStore, username: str, password: str, mech: str) -> Failure:
    outcome, _ = run_exchange(
        ScramClient(mech, ClientCredentials(username, password)),
        ScramServer(mech, ServerContext(store, SECRET)),
    )
    assert isinstance(outcome, Failure)
    return outcome


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_unknown_user_fails_exactly_like_a_wrong_password(store: MemoryUserStore, mech: str) -> None:
    unknown = _final_failure(store, "mallory", "correct horse", mech)
    wrong = _final_failure(store, "alice", "wrong password", mech)
    assert (unknown.reason, unknown.data) == (wrong.reason, wrong.data)
    assert _peer_view(unknown) == _peer_view(wrong)  # the human message does not tell them apart either
    assert (unknown.authcid, wrong.authcid) == ("mallory", "alice")  # for logs and penalties only
    assert unknown.reason == "invalid-proof"
    assert unknown.data == b"e=invalid-proof"


def test_user_without_that_hash_is_treated_like_an_unknown_user(store: MemoryUserStore) -> None:
    """A user holding only SCRAM-SHA-1 keys, probed with SCRAM-SHA-256, looks unknown."""
    probe = server_first(store, "sha1only", "SCRAM-SHA-256")
    assert int(probe["i"]) == store.default_iterations
    assert len(base64.b64decode(probe["s"])) == len(base64.b64decode(server_first(store, "alice")["s"]))
    assert _peer_view(_final_failure(store, "sha1only", "correct horse", "SCRAM-SHA-256")) == _peer_view(
        _final_failure(store, "alice", "nope", "SCRAM-SHA-256")
    )


def test_unknown_user_with_plus_mechanism(fast_store: MemoryUserStore) -> None:
    cb = {"tls-exporter": b"\x42" * 32}
    unknown, _ = run_exchange(
        ScramClient(
            "SCRAM-SHA-256-PLUS",
            ClientCredentials("mallory", "pw", channel_binding=("tls-exporter", cb["tls-exporter"])),
        ),
        ScramServer("SCRAM-SHA-256-PLUS", ServerContext(fast_store, SECRET, channel_bindings=cb)),
    )
    wrong, _ = run_exchange(
        ScramClient(
            "SCRAM-SHA-256-PLUS", ClientCredentials("bob", "bad", channel_binding=("tls-exporter", cb["tls-exporter"]))
        ),
        ScramServer("SCRAM-SHA-256-PLUS", ServerContext(fast_store, SECRET, channel_bindings=cb)),
    )
    assert isinstance(unknown, Failure) and isinstance(wrong, Failure)
    assert _peer_view(unknown) == _peer_view(wrong)


def _peer_view(failure: Failure) -> tuple[object, ...]:
    """What the peer sees of a failure (Failure.authcid stays on the server)."""
    return failure.reason, failure.message, failure.data


# --------------------------------------------------------------------------- a population of mixed profiles
#
# Issue 8 item 6: an unknown name must show parameters (server-first s= length, i=, salts shared or
# not) and cost work (PLAIN) that some real user of the store shows and costs, drawn per name with
# the population's weights; a real user lacking a hash must look like an unknown name lacking it.

CHEAP_ARGON2 = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
CHEAP_HASH = CHEAP_ARGON2.hash("correct horse")
CHEAP_PARAMETERS = argon2_parameters(CHEAP_HASH)


def _default_user(name: str) -> UserRecord:
    """What `saslkit user add` makes (argon2 with cheap parameters so that tests run fast)."""
    return replace(make_user(name, "correct horse", argon2_hash=False), password_hash=CHEAP_HASH)


def _imported(name: str, hashes: tuple[str, ...] = ("SHA-1", "SHA-256"), iterations: int = 4096) -> UserRecord:
    """A user imported from `gsasl --mkpasswd` lines: one random 12-octet salt per hash, no argon2 hash."""
    lines = [
        ScramCredential.derive(h, "correct horse", secrets.token_bytes(12), iterations).to_dovecot() for h in hashes
    ]
    return UserRecord(name, {c.hash_name: c for c in map(ScramCredential.parse, lines)})


@pytest.fixture(scope="module")
def mixed() -> MemoryUserStore:
    """6 default users, 3 imported with SHA-1 and SHA-256, 1 imported with SHA-256 only at 65536."""
    return MemoryUserStore(
        [_default_user(f"user{i}") for i in range(6)]
        + [_imported(f"imp{i}") for i in range(3)]
        + [_imported("sha256only", ("SHA-256",), 65536)]
    )


def _shown(store: object, name: str) -> dict[str, tuple[bytes, int]]:
    """Per SCRAM hash, the (salt, iterations) server-first shows for ``name``."""
    out = {}
    for h in SCRAM_HASHES:
        first = server_first(store, name, f"SCRAM-{h}")  # type: ignore[arg-type]
        out[h] = (base64.b64decode(first["s"]), int(first["i"]))
    return out


GHOSTS = [f"ghost{i}" for i in range(60)]


def test_unknown_names_show_a_profile_of_the_store(mixed: MemoryUserStore) -> None:
    profiles = mixed.credential_profiles()
    real = {h: {(len(c.salt), c.iterations) for u in mixed for c in u.scram.values() if c.hash_name == h}
            for h in SCRAM_HASHES}
    seen = set()
    for name in GHOSTS:
        profile = virtual_profile(mixed, SECRET, name)
        assert profile in profiles
        seen.add(profile)
        shown = _shown(mixed, name)
        for h, iterations, salt_length in profile.scram:
            assert (len(shown[h][0]), shown[h][1]) == (salt_length, iterations)
        if len(profile.scram) > 1:
            salts = {shown[h][0] for h, _, _ in profile.scram}
            assert (len(salts) == 1) == profile.shared_salt
        for h in SCRAM_HASHES:  # hashes the profile lacks: still the parameters of real users having it
            assert (len(shown[h][0]), shown[h][1]) in real[h]
    assert seen == set(profiles)  # every profile of the store is drawn for some name


def test_imported_only_store_shows_imported_parameters() -> None:
    """The case of the issue: 4096 iterations and 12-octet per-hash salts; unknown names showed 10000/16."""
    users = MemoryUserStore([_imported(f"imp{i}") for i in range(3)])
    for name in ["mallory", "eve", "imp0"]:
        shown = _shown(users, name)
        assert [(len(shown[h][0]), shown[h][1]) for h in ("SHA-1", "SHA-256")] == [(12, 4096)] * 2
        assert shown["SHA-1"][0] != shown["SHA-256"][0]  # per-hash salts, like the real ones
        assert (len(shown["SHA-512"][0]), shown["SHA-512"][1]) == (16, users.default_iterations)  # nobody has it


def test_known_user_lacking_a_hash_looks_like_an_unknown_name_lacking_it(mixed: MemoryUserStore) -> None:
    lacking = mixed.get_user("sha256only")
    assert lacking is not None
    lacking_profile = CredentialProfile.of(lacking)
    twin = next(n for n in (f"twin{i}" for i in range(1000)) if virtual_profile(mixed, SECRET, n) == lacking_profile)
    for name in ("sha256only", twin):
        shown = _shown(mixed, name)
        for h in ("SHA-1", "SHA-512"):  # both go through the one function of the name
            assert shown[h] == fake_scram_parameters(mixed, SECRET, name, h, known=True)
        assert (len(shown["SHA-256"][0]), shown["SHA-256"][1]) == (12, 65536)
        assert len({salt for salt, _ in shown.values()}) == 3


def test_parameters_are_deterministic_per_name(mixed: MemoryUserStore) -> None:
    copy = MemoryUserStore(list(mixed))
    for name in [*GHOSTS[:10], "imp0", "sha256only"]:
        assert _shown(mixed, name) == _shown(mixed, name) == _shown(copy, name)
    assert len({_shown(mixed, n)["SHA-256"][0] for n in GHOSTS}) == len(GHOSTS)


def test_draw_follows_the_counts_and_moves_few_names() -> None:
    a, b, c = (CredentialProfile((("SHA-256", i, 16),)) for i in (4096, 10000, 65536))
    counts = {a: 60, b: 30, c: 10}

    class Profiled(MemoryUserStore):
        def __init__(self, profiles: dict[CredentialProfile, int]) -> None:
            super().__init__()
            self.profiles = profiles

        def credential_profiles(self) -> dict[CredentialProfile, int]:
            return self.profiles

    names = [f"n{i}" for i in range(3000)]
    drawn = [virtual_profile(Profiled(counts), SECRET, n) for n in names]
    for profile, count in counts.items():
        assert abs(drawn.count(profile) / len(names) - count / 100) < 0.03
    # One more user of c: only names that now draw c change (weighted rendezvous hashing).
    redrawn = [virtual_profile(Profiled({a: 60, b: 30, c: 11}), SECRET, n) for n in names]
    moved = [(old, new) for old, new in zip(drawn, redrawn, strict=True) if old != new]
    assert all(new == c for _, new in moved)
    assert len(moved) < 0.02 * len(names)


def test_store_without_profiles_keeps_todays_parameters() -> None:
    """A third-party store without credential_profiles(), or an empty store: the defaults."""

    class Legacy:
        default_iterations = 12345

        def get_user(self, username: str) -> UserRecord | None:
            return None

    for users, iterations in ((Legacy(), 12345), (MemoryUserStore(), DEFAULT_ITERATIONS)):
        shown = _shown(users, "mallory")
        assert set(shown.values()) == {(fake_salt(SECRET, "mallory"), iterations)}  # one 16-octet salt


def test_sqlite_profiles_match_memory_and_are_cached(tmp_path: Path, mixed: MemoryUserStore) -> None:
    users = SQLiteUserStore(tmp_path / "u.db")
    for record in [*mixed, UserRecord("nothing")]:
        users.put_user(record)
    expected = MemoryUserStore([*mixed, UserRecord("nothing")]).credential_profiles()
    assert users.credential_profiles() == expected
    users.put_user(_imported("late", ("SHA-512",)))
    assert users.credential_profiles() == expected  # cached for profiles_ttl seconds
    users.profiles_ttl = 0.0
    assert sum(users.credential_profiles().values()) == sum(expected.values()) + 1
    for name in [*GHOSTS[:5], "imp1"]:  # and the store serves the same parameters as a memory store
        assert _shown(users, name) == _shown(MemoryUserStore([*mixed, UserRecord("nothing"), users.get_user("late")]),
                                             name)


def test_sqlite_lookup_of_an_unknown_name_does_a_known_lookups_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One query either way, and as many credentials read and built: a miss reads another user's rows."""
    users = SQLiteUserStore(tmp_path / "u.db")
    users.put_user(_imported("kim", ("SHA-1", "SHA-256", "SHA-512")))
    users.put_user(_imported("lee", ("SHA-1", "SHA-256", "SHA-512")))
    built: list[str] = []
    real = sqlite_module.ScramCredential
    monkeypatch.setattr(sqlite_module, "ScramCredential", lambda h, *a: built.append(h) or real(h, *a))
    statements: list[str] = []
    users._connect().set_trace_callback(statements.append)
    work = {}
    for name in ("kim", "mallory"):
        del built[:], statements[:]
        record = users.get_user(name)
        assert (record is None) == (name == "mallory")
        work[name] = (len(statements), sorted(built))
    assert work["kim"] == work["mallory"] == (1, ["SHA-1", "SHA-256", "SHA-512"])


def test_sqlite_unknown_lookup_ignores_another_users_bad_row(tmp_path: Path) -> None:
    users = SQLiteUserStore(tmp_path / "u.db")
    users.put_user(_imported("kim"))
    users._connect().execute("UPDATE scram_credentials SET iterations=0 WHERE username='kim'")
    assert users.get_user("mallory") is None
    with pytest.raises(StoreError):
        users.get_user("kim")


# --------------------------------------------------------------------------- work done (counted, not timed)


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Each argon2 verification (its parameters) and PBKDF2 run (hash, iterations, salt length) PLAIN does."""
    log: list[tuple[object, ...]] = []
    verify, salted = plain_module.verify_password_hash, plain_module.salted_password

    def counted_verify(password_hash: str, password: str) -> bool:
        log.append(("argon2", argon2_parameters(password_hash)))
        return verify(password_hash, password)

    def counted_salted(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
        log.append(("pbkdf2", hash_name, iterations, len(salt)))
        return salted(hash_name, password, salt, iterations)

    monkeypatch.setattr(plain_module, "verify_password_hash", counted_verify)
    monkeypatch.setattr(plain_module, "salted_password", counted_salted)
    return log


def _plain_work(log: list[tuple[object, ...]], users: object, name: str) -> list[tuple[object, ...]]:
    del log[:]
    result = PlainServer(ServerContext(users, SECRET)).step(f"\0{name}\0wrong password".encode())  # type: ignore[arg-type]
    assert isinstance(result, Failure)
    return list(log)


def test_plain_work_for_default_users(work: list[tuple[object, ...]]) -> None:
    users = MemoryUserStore([_default_user("alice")])
    assert _plain_work(work, users, "alice") == [("argon2", CHEAP_PARAMETERS)]
    assert _plain_work(work, users, "mallory") == [("argon2", CHEAP_PARAMETERS)]  # same parameters


def test_plain_work_for_imported_users(work: list[tuple[object, ...]]) -> None:
    """The case of the issue: one PBKDF2 for the imported user, argon2 for an unknown one."""
    users = MemoryUserStore([_imported("kim")])
    assert _plain_work(work, users, "kim") == [("pbkdf2", "SHA-256", 4096, 12)]
    assert _plain_work(work, users, "mallory") == [("pbkdf2", "SHA-256", 4096, 12)]


def test_plain_work_in_a_mixed_store(work: list[tuple[object, ...]], mixed: MemoryUserStore) -> None:
    cost = {CredentialProfile.of(u): _plain_work(work, mixed, u.username) for u in mixed}
    assert len(cost) == 3 and all(len(w) == 1 for w in cost.values())
    for name in GHOSTS:
        assert _plain_work(work, mixed, name) == cost[virtual_profile(mixed, SECRET, name)]


def test_plain_work_for_a_user_without_credentials(work: list[tuple[object, ...]]) -> None:
    users = MemoryUserStore([_imported("kim"), UserRecord("nothing")])
    for name in ("nothing", "mallory", "eve"):
        assert _plain_work(work, users, name) == [("pbkdf2", "SHA-256", 4096, 12)]


def test_scram_work_is_the_same_for_every_outcome(monkeypatch: pytest.MonkeyPatch, mixed: MemoryUserStore) -> None:
    calls: list[str] = []
    hmac_, fake = scram_module._hmac, scram_module.fake_scram_parameters
    monkeypatch.setattr(scram_module, "_hmac", lambda *a: calls.append("hmac") or hmac_(*a))
    monkeypatch.setattr(scram_module, "fake_scram_parameters", lambda *a, **k: calls.append("fake") or fake(*a, **k))
    counts = set()
    for name in ("user0", "imp0", "sha256only", "mallory"):  # known, imported, known lacking SHA-512, unknown
        del calls[:]
        _final_failure(mixed, name, "wrong password", "SCRAM-SHA-512")
        counts.add(tuple(calls))
    assert counts == {("fake", "hmac")}


# --------------------------------------------------------------------------- the salt key is fixed


def test_salt_key_cannot_be_rotated(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "ring.keys", quiet=True)
    secret = ring.server_secret
    with pytest.raises(UsageError, match="reveal which names exist"):
        ring.add("salt")
    with pytest.raises(UsageError, match="reveal which names exist"):
        ring.retire(ring.salt_key().id)
    assert ring.server_secret == secret
    ring.add("token")  # other kinds still rotate


def test_cli_refuses_keys_rotate_salt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "ring.keys"
    assert cli_main(["keys", "init", "--keys", str(keys)]) == 0
    before = keys.read_bytes()
    assert cli_main(["keys", "rotate", "salt", "--keys", str(keys)]) == 2
    assert "reveal which names exist" in capsys.readouterr().err
    assert keys.read_bytes() == before


def test_fake_salt_secret_is_pinned_to_the_oldest_salt_key(tmp_path: Path) -> None:
    """A ring that got a second salt key (older saslkit rotated them) keeps using the first."""
    first = Key("salt-1-aaaaaa", "salt", b"1" * 32, 1.0)
    later = Key("salt-2-bbbbbb", "salt", b"2" * 32, 2.0)
    ring = KeyRing(tmp_path / "ring.keys", [later, first])
    assert ring.server_secret == first.secret
    assert ring.current("salt") == first
    ring.retire(later.id)  # a later one may go
    with pytest.raises(UsageError):
        ring.retire(first.id)
    assert ring.server_secret == first.secret

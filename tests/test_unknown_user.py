"""Unknown users look like real ones until the proof (RFC 5802 §9; RFC 4422 §3.6)."""

from __future__ import annotations

import base64
import itertools

import pytest

from saslkit import (
    DEFAULT_ITERATIONS,
    ClientCredentials,
    Failure,
    MemoryUserStore,
    ServerContext,
    make_user,
    run_exchange,
)
from saslkit.mechanisms.scram import SCRAM_MECHANISMS, ScramClient, ScramServer

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
    assert unknown == wrong  # the human message does not tell them apart either
    assert unknown.reason == "invalid-proof"
    assert unknown.data == b"e=invalid-proof"


def test_user_without_that_hash_is_treated_like_an_unknown_user(store: MemoryUserStore) -> None:
    """A user holding only SCRAM-SHA-1 keys, probed with SCRAM-SHA-256, looks unknown."""
    probe = server_first(store, "sha1only", "SCRAM-SHA-256")
    assert int(probe["i"]) == store.default_iterations
    assert len(base64.b64decode(probe["s"])) == len(base64.b64decode(server_first(store, "alice")["s"]))
    assert _final_failure(store, "sha1only", "correct horse", "SCRAM-SHA-256") == _final_failure(
        store, "alice", "nope", "SCRAM-SHA-256"
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
    assert isinstance(unknown, Failure)
    assert unknown == wrong

"""Mechanism registry: offer policy, lookup, third-party registration and client-side choice."""

from __future__ import annotations

import pytest

from saslkit import (
    Challenge,
    ClientCredentials,
    ClientMechanism,
    Failure,
    MechanismInfo,
    MechanismNotAllowed,
    MemoryUserStore,
    Policy,
    Registry,
    ServerContext,
    ServerMechanism,
    Success,
    UnknownMechanism,
    UsageError,
    default_registry,
    make_user,
    run_exchange,
)
from saslkit.registry import Refusal, server_policy

SECRET = b"registry-test-secret-0123456789ab"
SCRAM_BASE = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]
SCRAM_PLUS = [f"{m}-PLUS" for m in SCRAM_BASE]
CB = {"tls-exporter": b"\x01" * 32}


@pytest.fixture(scope="module")
def users() -> MemoryUserStore:
    return MemoryUserStore([make_user("user", "pencil", iterations=4096, argon2_hash=False)])


def ctx(users: MemoryUserStore, **kw: object) -> ServerContext:
    return ServerContext(users, SECRET, **kw)  # type: ignore[arg-type]


def is_subsequence(sub: list[str], seq: list[str]) -> bool:
    it = iter(seq)
    return all(name in it for name in sub)


# --------------------------------------------------------------------------- a toy third-party mechanism


class ToyServer:
    """X-TOY: the client sends b"toy:" + username; the server answers a challenge "ok?" and wants b"yes"."""

    name = "X-TOY"

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._state = 0
        self._user = ""

    @property
    def done(self) -> bool:
        return self._state == 2

    def step(self, response: bytes | None) -> Challenge | Success | Failure:
        if self._state == 2:
            raise UsageError("done")
        if response is None:
            return Challenge(b"")
        if self._state == 0:
            if not response.startswith(b"toy:") or self._ctx.users.get_user(response[4:].decode()) is None:
                self._state = 2
                return Failure("authentication-failed")
            self._user = response[4:].decode()
            self._state = 1
            return Challenge(b"ok?")
        self._state = 2
        if response != b"yes":
            return Failure("authentication-failed")
        return Success(self._user, None, None, self.name)


class ToyClient:
    name = "X-TOY"

    def __init__(self, creds: ClientCredentials) -> None:
        self._creds = creds

    def start(self) -> bytes:
        return b"toy:" + self._creds.username.encode()

    def step(self, challenge: bytes) -> bytes:
        return b"yes"

    def finish(self, additional_data: bytes | None = None) -> None:
        return None


TOY = MechanismInfo("X-TOY", ToyServer, ToyClient, strength=75)


# --------------------------------------------------------------------------- offered()


def test_offered_strongest_first_with_everything_available() -> None:
    reg = default_registry()
    offered = reg.offered(tls=True, channel_bindings={"tls-exporter"})
    assert is_subsequence([*SCRAM_PLUS, *SCRAM_BASE, "PLAIN"], offered)
    strengths = [reg.info(n).strength for n in offered]
    assert strengths == sorted(strengths, reverse=True)
    assert offered == [n for n in reg.names() if n in offered]


def test_names_strongest_first() -> None:
    reg = default_registry()
    assert is_subsequence([*SCRAM_PLUS, *SCRAM_BASE, "PLAIN"], reg.names())
    assert reg.names().index("SCRAM-SHA-1-PLUS") < reg.names().index("SCRAM-SHA-512")


def test_plain_needs_tls() -> None:
    reg = default_registry()
    assert "PLAIN" not in reg.offered(tls=False)
    assert "PLAIN" in reg.offered(tls=True)
    assert "PLAIN" in reg.offered(tls=False, policy=Policy(allow_plaintext_without_tls=True))
    assert reg.refusal("PLAIN", tls=False) is not None
    assert is_subsequence(SCRAM_BASE, reg.offered(tls=False))


def test_login_is_plaintext_just_below_plain() -> None:
    reg = default_registry()
    assert reg.names().index("LOGIN") == reg.names().index("PLAIN") + 1
    assert "LOGIN" not in reg.offered(tls=False) and reg.refusal("LOGIN", tls=False) is not None
    assert "LOGIN" in reg.offered(tls=False, policy=Policy(allow_plaintext_without_tls=True))
    assert reg.info("LOGIN").hashes_password and reg.info("LOGIN").plaintext
    assert reg.choose(["LOGIN", "PLAIN", "SCRAM-SHA-1"]) == "SCRAM-SHA-1"
    assert reg.choose(["LOGIN", "PLAIN"]) == "PLAIN" and reg.choose(["LOGIN"]) == "LOGIN"


def test_plus_needs_channel_bindings() -> None:
    reg = default_registry()
    without = reg.offered(tls=True)
    assert not any(n.endswith("-PLUS") for n in without)
    assert is_subsequence(SCRAM_BASE, without)
    for types in (["tls-exporter"], ["tls-unique"], ["tls-exporter", "tls-server-end-point"]):
        assert set(SCRAM_PLUS) <= set(reg.offered(tls=True, channel_bindings=types)), types
    # Channel bindings offered as a mapping (ServerContext.channel_bindings) work too.
    assert set(SCRAM_PLUS) <= set(reg.offered(tls=True, channel_bindings=CB))


def test_scram_plus_with_end_point_only_is_opt_in() -> None:
    """Issue 11: SCRAM-*-PLUS clients bind to tls-exporter (TLS 1.3, RFC 9266 §3) or tls-unique (TLS 1.2) by
    default; with only tls-server-end-point verifiable they are not advertised unless the policy says so."""
    reg = default_registry()
    endp = ["tls-server-end-point"]
    offer = reg.offer(tls=True, channel_bindings=endp)
    assert not set(SCRAM_PLUS) & set(offer.mechanisms)
    assert all(offer.refusal(n) is Refusal.NO_CHANNEL_BINDING for n in SCRAM_PLUS)
    assert "HT-SHA-256-ENDP" in offer.mechanisms  # a CB-bound HT names its type: verifiable, offered
    assert "HT-SHA-256-EXPR" not in offer.mechanisms and "HT-SHA-256-UNIQ" not in offer.mechanisms
    opted = reg.offered(tls=True, channel_bindings=endp, policy=Policy(plus_with_end_point=True))
    assert set(SCRAM_PLUS) <= set(opted)
    # Verifiable all the same: a caller starting the mechanism itself (not from an offer) may run it.
    assert reg.refusal("SCRAM-SHA-256-PLUS", tls=True, channel_bindings=endp) is None


def test_policy_allowed_and_denied() -> None:
    reg = default_registry()
    only = Policy(allowed=frozenset({"SCRAM-SHA-256", "PLAIN"}))
    assert reg.offered(tls=True, policy=only) == ["SCRAM-SHA-256", "PLAIN"]
    denied = Policy(denied=frozenset({"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"}))
    offered = reg.offered(tls=True, channel_bindings=CB, policy=denied)
    assert "SCRAM-SHA-1" not in offered and "SCRAM-SHA-1-PLUS" not in offered
    assert "SCRAM-SHA-256" in offered


def test_policy_mechanisms_is_an_ordered_allow_list() -> None:
    reg = default_registry()
    policy = Policy(mechanisms=("plain", "SCRAM-SHA-256", "PLAIN"))
    assert policy.mechanisms == ("PLAIN", "SCRAM-SHA-256")  # upper-cased, first occurrence kept
    assert reg.offered(tls=True, policy=policy) == ["PLAIN", "SCRAM-SHA-256"]
    assert reg.refusal("SCRAM-SHA-512", tls=True, policy=policy) == "disabled by policy"
    both = Policy(allowed=frozenset({"SCRAM-SHA-256"}), mechanisms=("PLAIN", "SCRAM-SHA-256"))
    assert reg.offered(tls=True, policy=both) == ["SCRAM-SHA-256"]  # every list must let a name through


def test_server_policy_folds_in_server_settings() -> None:
    reg = default_registry()
    folded = server_policy(reg, Policy(denied=frozenset({"SCRAM-SHA-1"})), True, ["SCRAM-SHA-256", "PLAIN"])
    assert folded.allow_plaintext_without_tls and folded.mechanisms == ("SCRAM-SHA-256", "PLAIN")
    assert folded.denied == frozenset({"SCRAM-SHA-1"})
    assert server_policy(reg, None) == Policy()
    with pytest.raises(UsageError, match="X-NOSUCH"):
        server_policy(reg, None, False, ["X-NOSUCH"])


# --------------------------------------------------------------------------- server() / client()


def test_server_refuses_plain_without_tls(users: MemoryUserStore) -> None:
    reg = default_registry()
    with pytest.raises(MechanismNotAllowed) as info:
        reg.server("PLAIN", ctx(users, tls=False))
    assert info.value.name == "PLAIN"
    assert reg.server("PLAIN", ctx(users, tls=False), policy=Policy(allow_plaintext_without_tls=True))
    assert reg.server("PLAIN", ctx(users, tls=True)).name == "PLAIN"


def test_server_refuses_plus_without_channel_binding(users: MemoryUserStore) -> None:
    reg = default_registry()
    with pytest.raises(MechanismNotAllowed):
        reg.server("SCRAM-SHA-256-PLUS", ctx(users, tls=True))
    assert reg.server("SCRAM-SHA-256-PLUS", ctx(users, tls=True, channel_bindings=CB)).name == "SCRAM-SHA-256-PLUS"


def test_server_refuses_mechanism_denied_by_policy(users: MemoryUserStore) -> None:
    with pytest.raises(MechanismNotAllowed):
        default_registry().server("SCRAM-SHA-1", ctx(users), policy=Policy(denied=frozenset({"SCRAM-SHA-1"})))


@pytest.mark.parametrize("name", ["NOPE", "SCRAM-SHA-3", "", "CRAM-MD5"])
def test_unknown_mechanism(users: MemoryUserStore, name: str) -> None:
    reg = default_registry()
    with pytest.raises(UnknownMechanism) as info:
        reg.server(name, ctx(users, tls=True))
    assert isinstance(info.value, UsageError)
    with pytest.raises(UnknownMechanism):
        reg.client(name, ClientCredentials("user", "pencil"))
    with pytest.raises(UnknownMechanism):
        reg.info(name)
    assert name not in reg


@pytest.mark.parametrize("spelling", ["scram-sha-256", "Scram-Sha-256", "SCRAM-SHA-256"])
def test_case_insensitive_lookup(users: MemoryUserStore, spelling: str) -> None:
    reg = default_registry()
    assert spelling in reg
    assert reg.info(spelling).name == "SCRAM-SHA-256"
    server = reg.server(spelling, ctx(users))
    client = reg.client(spelling, ClientCredentials("user", "pencil"))
    assert server.name == client.name == "SCRAM-SHA-256"
    outcome, _ = run_exchange(client, server)
    assert isinstance(outcome, Success)
    assert outcome.mechanism == "SCRAM-SHA-256"


def test_contains_rejects_non_strings() -> None:
    reg = default_registry()
    assert 42 not in reg
    assert None not in reg


def test_default_mechanisms_satisfy_the_protocols(users: MemoryUserStore) -> None:
    reg = default_registry()
    for name in ["PLAIN", *SCRAM_BASE, *SCRAM_PLUS]:
        server = reg.server(name, ctx(users, tls=True, channel_bindings=CB))
        assert isinstance(server, ServerMechanism)
        creds = ClientCredentials("user", "pencil", channel_binding=("tls-exporter", CB["tls-exporter"]))
        assert isinstance(reg.client(name, creds), ClientMechanism)


# --------------------------------------------------------------------------- registration


def test_third_party_registration(users: MemoryUserStore) -> None:
    reg = default_registry()
    reg.register(TOY)
    assert "x-toy" in reg
    offered = reg.offered(tls=False, channel_bindings=CB)
    # strength 75 sits between the -PLUS (>= 100) and the base SCRAM (>= 50) mechanisms
    assert is_subsequence([*SCRAM_PLUS, "X-TOY", *SCRAM_BASE], offered)
    server = reg.server("x-toy", ctx(users))
    assert isinstance(server, ServerMechanism)
    assert isinstance(reg.client("X-TOY", ClientCredentials("user", "")), ClientMechanism)
    outcome, transcript = run_exchange(reg.client("X-TOY", ClientCredentials("user", "")), server)
    assert isinstance(outcome, Success)
    assert outcome.mechanism == "X-TOY"
    assert [data for _, data in transcript.lines] == [b"toy:user", b"ok?", b"yes"]
    failed, _ = run_exchange(reg.client("X-TOY", ClientCredentials("nobody", "")), reg.server("X-TOY", ctx(users)))
    assert isinstance(failed, Failure)


def test_registration_into_an_empty_registry() -> None:
    reg = Registry([TOY])
    assert reg.names() == ["X-TOY"]
    assert reg.offered(tls=False) == ["X-TOY"]
    assert reg.choose(["PLAIN", "X-TOY"]) == "X-TOY"


def test_duplicate_registration_refused() -> None:
    reg = default_registry()
    reg.register(TOY)
    with pytest.raises(UsageError):
        reg.register(TOY)
    with pytest.raises(UsageError):
        reg.register(MechanismInfo("PLAIN", ToyServer, ToyClient, strength=1))
    with pytest.raises(UsageError):
        Registry([TOY, TOY])


def test_replace_and_unregister() -> None:
    reg = default_registry()
    reg.register(TOY)
    stronger = MechanismInfo("X-TOY", ToyServer, ToyClient, strength=1000)
    reg.register(stronger, replace=True)
    assert reg.info("X-TOY").strength == 1000
    assert reg.names()[0] == "X-TOY"
    reg.unregister("x-toy")
    assert "X-TOY" not in reg
    with pytest.raises(UnknownMechanism):
        reg.info("X-TOY")
    reg.unregister("X-TOY")  # unregistering twice is harmless


def test_registering_does_not_leak_between_registries() -> None:
    reg = default_registry()
    reg.register(TOY)
    assert "X-TOY" not in default_registry()


@pytest.mark.parametrize(
    "name",
    ["", "x-toy", "X TOY", "X.TOY", "A" * 21, "SCRAM-SHA-256-PLUS-XX", "\u00c4BC", "X-TOY\n", "X/TOY"],
)
def test_invalid_names_refused(name: str) -> None:
    with pytest.raises(UsageError):
        MechanismInfo(name, ToyServer, ToyClient, strength=1)


@pytest.mark.parametrize("name", ["A", "A" * 20, "X_TOY-2", "HT-SHA3-512-ENDP", "0"])
def test_valid_names_accepted(name: str) -> None:
    reg = Registry()
    reg.register(MechanismInfo(name, ToyServer, ToyClient, strength=1))
    assert name in reg


# --------------------------------------------------------------------------- choose()


def test_choose_strongest_mutually_supported() -> None:
    reg = default_registry()
    offers = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "GSSAPI"]
    assert reg.choose(offers) == "SCRAM-SHA-256"
    assert reg.choose(offers, can_bind=True) == "SCRAM-SHA-256-PLUS"
    assert reg.choose(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-512"], can_bind=True) == "SCRAM-SHA-1-PLUS"
    assert reg.choose(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-512"]) == "SCRAM-SHA-512"


def test_choose_is_case_insensitive() -> None:
    assert default_registry().choose(["plain", "scram-sha-1"]) == "SCRAM-SHA-1"


def test_choose_plaintext_rules() -> None:
    reg = default_registry()
    assert reg.choose(["PLAIN"]) == "PLAIN"  # tls defaults to True
    with pytest.raises(UnknownMechanism):
        reg.choose(["PLAIN"], tls=False)
    assert reg.choose(["PLAIN"], tls=False, allow_plaintext_without_tls=True) == "PLAIN"


@pytest.mark.parametrize("offers", [[], ["GSSAPI", "CRAM-MD5"], ["SCRAM-SHA-256-PLUS"]])
def test_choose_nothing_fits(offers: list[str]) -> None:
    with pytest.raises(UnknownMechanism):
        default_registry().choose(offers)


def test_choose_matches_offered() -> None:
    """A client choosing among what our own server offers gets the server's first choice."""
    reg = default_registry()
    offered = reg.offered(tls=True, channel_bindings=CB)
    assert reg.choose(offered, can_bind=True) == offered[0]
    assert reg.choose(reg.offered(tls=True)) == reg.offered(tls=True)[0]


def test_offers_are_shared_per_key_and_forgotten_when_the_registry_changes() -> None:
    """Connections with the same TLS state, binding types, policy and cache key share one computed offer."""

    registry = default_registry()
    calls: list[str] = []

    def available(info: MechanismInfo) -> bool:
        calls.append(info.name)
        return not info.token_based

    first = registry.offer(tls=True, channel_bindings={"tls-server-end-point": b"x" * 32}, available=available,
                           cache_key=("no-tokens",))
    computed = len(calls)
    again = registry.offer(tls=True, channel_bindings={"tls-server-end-point": b"y" * 32}, available=available,
                           cache_key=("no-tokens",))
    assert again is first and len(calls) == computed  # binding data differs, its type does not
    other = registry.offer(tls=False, available=available, cache_key=("no-tokens",))
    assert other is not first and "PLAIN" not in other.mechanisms and "PLAIN" in first.mechanisms
    uncached = registry.offer(tls=True, channel_bindings={"tls-server-end-point": b"x" * 32}, available=available)
    assert uncached is not first and uncached == first
    registry.unregister("PLAIN")
    after = registry.offer(tls=True, channel_bindings={"tls-server-end-point": b"x" * 32}, available=available,
                           cache_key=("no-tokens",))
    assert "PLAIN" not in after.mechanisms and "PLAIN" in first.mechanisms

"""The client exchange engine (:mod:`saslkit.auth.client`), sans I/O.

Mechanism choice from the server's list, the initial-response rules (RFC 4954
§4 512-octet command line, RFC 4959 SASL-IR), cancel on bad server data, the
final check of the server's data (SCRAM ``v=``, RFC 4422 §5 item 2b), and a
fuzz of the server messages the engine takes: it answers, cancels or
concludes, and raises nothing but saslkit errors.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saslkit import MemoryUserStore, ServerContext, make_user
from saslkit.auth.client import (
    IMAP_FRAMING,
    IMAP_SASL_IR_FRAMING,
    SMTP_FRAMING,
    Answer,
    Cancel,
    ClientAuth,
    ClientAuthenticated,
    ClientState,
    EncodedChallenge,
    Framing,
    MalformedChallenge,
    MechanismUnavailable,
    Rejected,
    ServerFailure,
    ServerMessage,
    ServerSuccess,
    Unavailable,
    Unverified,
    choose_mechanism,
    drive,
)
from saslkit.errors import SaslError, UnknownMechanism, UsageError
from saslkit.mechanism import Challenge, Success
from saslkit.mechanisms.scram import ScramServer
from saslkit.registry import default_registry

PASSWORD = "pencil"
SECRET = b"client-engine-test-secret-0123456789"
ENDP = {"tls-server-end-point": bytes(range(32))}
ALL_CB = {"tls-unique": b"\x01" * 12, **ENDP, "tls-exporter": b"\xee" * 32}
REGISTRY = default_registry()
SCRAMS = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]
TOKENS = ["SCRAM-SHA-256", "HT-SHA-256-ENDP", "HT-SHA-256-UNIQ", "HT-SHA-256-NONE", "REMEMBERME"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def engine(mechanism: str | None = "PLAIN", *, offered: list[str] | None = None, user: str = "user",
           framing: Framing = SMTP_FRAMING, **kw: object) -> ClientAuth:
    names = [mechanism or "PLAIN"] if offered is None else offered
    return ClientAuth.for_server(REGISTRY, names, user, PASSWORD, mechanism=mechanism, framing=framing,
                                 **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- mechanism choice


@pytest.mark.parametrize(
    ("offered", "kw", "chosen"),
    [
        (SCRAMS, {}, "SCRAM-SHA-256"),  # -PLUS needs channel-binding data
        (SCRAMS, {"channel_bindings": ENDP}, "SCRAM-SHA-256-PLUS"),
        ([m.lower() for m in SCRAMS], {"channel_bindings": ENDP}, "SCRAM-SHA-256-PLUS"),  # names are case-blind
        (["X-UNKNOWN", "PLAIN"], {}, "PLAIN"),  # names saslkit lacks are passed over
        (["PLAIN"], {"tls": False, "allow_plaintext": True}, "PLAIN"),
        (["PLAIN", "SCRAM-SHA-1"], {"tls": False}, "SCRAM-SHA-1"),  # no plaintext secret without TLS
        (TOKENS, {}, "SCRAM-SHA-256"),  # a password never picks a token mechanism
        (TOKENS, {"token": True}, "HT-SHA-256-NONE"),
        (TOKENS, {"token": True, "channel_bindings": ENDP}, "HT-SHA-256-ENDP"),  # only a type it accepts
        (TOKENS, {"token": True, "channel_bindings": {"tls-unique": b"\x01" * 12}}, "HT-SHA-256-UNIQ"),
        (TOKENS, {"token": True, "channel_bindings": {"tls-exporter": b"\xee" * 32}}, "HT-SHA-256-NONE"),
        (["REMEMBERME", "SCRAM-SHA-256"], {"token": True}, "REMEMBERME"),
    ],
)
def test_choice_is_the_strongest_the_credentials_can_run(offered: list[str], kw: dict[str, Any],
                                                          chosen: str) -> None:
    assert choose_mechanism(REGISTRY, offered, **{"tls": True, **kw}) == chosen
    assert engine(None, offered=offered, **kw).mechanism == chosen


@pytest.mark.parametrize(
    ("offered", "kw"),
    [
        ([], {}),
        (["X-UNKNOWN"], {}),
        (["PLAIN"], {"tls": False}),
        (["SCRAM-SHA-256-PLUS"], {}),
        (["REMEMBERME", "HT-SHA-256-ENDP"], {}),  # token mechanisms only, but a password
        (["SCRAM-SHA-256", "PLAIN"], {"token": True}),
        (["HT-SHA-256-ENDP"], {"token": True, "channel_bindings": {"tls-unique": b"\x01" * 12}}),
    ],
)
def test_nothing_suitable(offered: list[str], kw: dict[str, Any]) -> None:
    with pytest.raises(MechanismUnavailable) as exc:
        engine(None, offered=offered, **kw)
    assert exc.value.why is Unavailable.NOTHING_SUITABLE


@pytest.mark.parametrize(
    ("mechanism", "offered", "kw", "why"),
    [
        ("SCRAM-SHA-256", ["PLAIN"], {}, Unavailable.NOT_OFFERED),
        ("PLAIN", ["PLAIN"], {"tls": False}, Unavailable.NEEDS_TLS),
        ("SCRAM-SHA-256-PLUS", ["SCRAM-SHA-256-PLUS"], {}, Unavailable.NEEDS_CHANNEL_BINDING),
        ("HT-SHA-256-ENDP", ["HT-SHA-256-ENDP"], {"channel_bindings": {"tls-unique": b"\x01" * 12}},
         Unavailable.NEEDS_CHANNEL_BINDING),
    ],
)
def test_a_named_mechanism_is_checked(mechanism: str, offered: list[str], kw: dict[str, Any],
                                      why: Unavailable) -> None:
    with pytest.raises(MechanismUnavailable) as exc:
        engine(mechanism, offered=offered, **kw)
    assert exc.value.why is why and mechanism in str(exc.value)


def test_a_named_mechanism_saslkit_lacks_is_a_usage_error() -> None:
    with pytest.raises(UnknownMechanism):
        engine("X-UNKNOWN", offered=["X-UNKNOWN"])


@pytest.mark.parametrize(
    ("offered", "mechanism", "bindings", "gs2"),
    [
        (["SCRAM-SHA-256"], None, ENDP, b"y,,"),  # could bind, the server offers no -PLUS (RFC 5802 §6)
        (["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"], "SCRAM-SHA-256", ENDP, b"n,,"),
        (["SCRAM-SHA-256"], None, {}, b"n,,"),
        (SCRAMS, None, ALL_CB, b"p=tls-exporter,,"),  # the preferred binding type
    ],
)
def test_gs2_flag_follows_the_offer(offered: list[str], mechanism: str | None, bindings: dict[str, bytes],
                                    gs2: bytes) -> None:
    auth = engine(mechanism, offered=offered, channel_bindings=bindings)
    first = auth.start().initial_response
    assert first is not None and first.startswith(gs2)
    assert auth.channel_binding == ("tls-exporter" if gs2.startswith(b"p=") else None)


# ---------------------------------------------------------------- initial response


def plain_line(user: str) -> str:
    return "AUTH PLAIN " + b64(b"\x00" + user.encode() + b"\x00" + PASSWORD.encode())


def longest_smtp_user() -> str:
    """The longest user name whose ``AUTH PLAIN <ir>`` line is still 512 octets with its CRLF."""
    user = "u"
    while len(plain_line(user + "u")) + 2 <= 512:
        user += "u"
    return user


def test_smtp_initial_response_rides_up_to_512_octets() -> None:
    user = longest_smtp_user()
    command = engine(user=user).start()
    assert len(f"AUTH {command.arguments}") + 2 <= 512 and command.initial_response is not None
    assert "pencil" not in command.shown and "password=<masked>" in command.shown


def test_smtp_initial_response_past_512_octets_follows_the_empty_challenge() -> None:
    user = longest_smtp_user() + "uuu"  # one more base64 quantum
    auth = engine(user=user)
    command = auth.start()
    assert command.arguments == "PLAIN" and command.initial_response is None
    assert auth.state is ClientState.AWAITING_PROMPT
    answer = auth.receive(EncodedChallenge(""))
    assert isinstance(answer, Answer) and answer.data == b"\x00" + user.encode() + b"\x00pencil"
    assert "pencil" not in answer.shown
    assert isinstance(auth.receive(ServerSuccess()), ClientAuthenticated)


@pytest.mark.parametrize(("framing", "rides"), [(IMAP_SASL_IR_FRAMING, True), (IMAP_FRAMING, False)])
def test_imap_initial_response_needs_sasl_ir(framing: Framing, rides: bool) -> None:
    auth = engine(user="u" * 600, framing=framing)  # IMAP sets no line limit
    command = auth.start()
    assert (command.arguments != "PLAIN") is rides
    if not rides:
        assert "SASL-IR" in command.shown
        assert isinstance(auth.receive(EncodedChallenge("")), Answer)
    assert auth.state is ClientState.EXCHANGING


class Empty:
    """A client-first mechanism whose every message is empty."""

    name = "EMPTY-TEST"

    def start(self) -> bytes:
        return b""

    def step(self, challenge: bytes) -> bytes:
        return b""

    def finish(self, additional_data: bytes | None = None) -> None:
        return None


@pytest.mark.parametrize(("framing", "arguments"), [(SMTP_FRAMING, "EMPTY-TEST ="),
                                                    (IMAP_SASL_IR_FRAMING, "EMPTY-TEST ="),
                                                    (IMAP_FRAMING, "EMPTY-TEST")])
def test_empty_initial_response_is_an_equals_sign(framing: Framing, arguments: str) -> None:
    auth = ClientAuth(Empty(), framing=framing)
    assert auth.start().arguments == arguments  # RFC 4954 §4, RFC 4959 §3
    steps = [auth.receive(EncodedChallenge("")) for _ in range(2 if framing is IMAP_FRAMING else 1)]
    assert all(s == Answer(b"", "EMPTY-TEST") and s.shown == "(empty)" and s.line == "" for s in steps)


def test_a_challenge_instead_of_the_prompt_for_the_initial_response_is_cancelled() -> None:
    auth = engine(framing=IMAP_FRAMING)
    auth.start()
    step = auth.receive(EncodedChallenge(b64(b"surprise")))
    assert isinstance(step, Cancel) and step.line == "*" and "before the initial response" in step.message
    assert auth.state is ClientState.CANCELLED


# ---------------------------------------------------------------- cancel on bad server data


@pytest.mark.parametrize(
    "message",
    [
        EncodedChallenge("=AAA"),  # not base64
        EncodedChallenge("cj1ub25jZQ="),  # non-canonical padding
        EncodedChallenge("é"),
        EncodedChallenge("*"),
        MalformedChallenge("multi-line 334 reply"),
        EncodedChallenge(b64(b"r=not-our-nonce,s=c2FsdA==,i=4096")),  # SCRAM: the server's nonce must extend ours
        Challenge(b"i=4096"),
    ],
)
def test_bad_server_data_is_cancelled(message: ServerMessage) -> None:
    auth = engine("SCRAM-SHA-256")
    auth.start()
    step = auth.receive(message)
    assert isinstance(step, Cancel) and step.line == "*" and step.message
    assert auth.state is ClientState.CANCELLED
    with pytest.raises(UsageError):
        auth.receive(ServerSuccess())


def test_server_failure_is_rejected() -> None:
    auth = engine()
    auth.start()
    assert auth.receive(ServerFailure("535 5.7.8 no")) == Rejected("535 5.7.8 no")
    assert auth.state is ClientState.FAILED


def test_steps_out_of_order_are_usage_errors() -> None:
    auth = engine()
    with pytest.raises(UsageError):
        auth.receive(ServerSuccess())
    auth.start()
    with pytest.raises(UsageError):
        auth.start()


def test_a_server_that_never_decides_is_cancelled() -> None:
    class Echo:
        name = "ECHO"

        def start(self) -> bytes:
            return b"hi"

        def step(self, challenge: bytes) -> bytes:
            return challenge

        def finish(self, additional_data: bytes | None = None) -> None:
            return None

    auth = ClientAuth(Echo(), max_rounds=3)
    auth.start()
    steps = [auth.receive(Challenge(b"again")) for _ in range(4)]
    assert [type(s) for s in steps] == [Answer, Answer, Answer, Cancel]


# ---------------------------------------------------------------- the server's final data


def scram_server(mech: str = "SCRAM-SHA-256") -> ScramServer:
    users = MemoryUserStore([make_user("user", PASSWORD, iterations=4096, argon2_hash=False)],
                            default_iterations=4096)
    return ScramServer(mech, ServerContext(users, server_secret=SECRET))


def scram_until_server_final(mech: str = "SCRAM-SHA-256") -> tuple[ClientAuth, bytes]:
    """Run SCRAM against saslkit's server up to its success; return the engine and the server's ``v=``."""
    server = scram_server(mech)
    auth = engine(mech)
    first = server.step(auth.start().initial_response)
    assert isinstance(first, Challenge)
    answer = auth.receive(EncodedChallenge(b64(first.data)))
    assert isinstance(answer, Answer)
    success = server.step(answer.data)
    assert not isinstance(success, Challenge) and getattr(success, "additional_data", None) is not None
    return auth, success.additional_data  # type: ignore[union-attr, return-value]


def test_scram_v_as_a_last_challenge_then_success() -> None:
    auth, final = scram_until_server_final()
    answer = auth.receive(EncodedChallenge(b64(final)))
    assert isinstance(answer, Answer) and answer.data == b"" and answer.line == ""  # RFC 4422 §5 item 2b
    assert auth.receive(ServerSuccess()) == ClientAuthenticated("SCRAM-SHA-256")


def test_scram_v_as_additional_data_with_success() -> None:
    auth, final = scram_until_server_final()
    assert auth.receive(ServerSuccess(final)) == ClientAuthenticated("SCRAM-SHA-256")
    assert auth.state is ClientState.AUTHENTICATED


def test_scram_success_without_v_is_unverified() -> None:
    auth, _ = scram_until_server_final()
    outcome = auth.receive(ServerSuccess())
    assert isinstance(outcome, Unverified) and auth.state is ClientState.FAILED


def wrong_v(final: bytes) -> bytes:
    signature = bytearray(base64.b64decode(final[2:]))
    signature[0] ^= 1
    return b"v=" + base64.b64encode(bytes(signature))


def test_scram_wrong_v_is_unverified_or_cancelled() -> None:
    auth, final = scram_until_server_final()
    assert isinstance(auth.receive(ServerSuccess(wrong_v(final))), Unverified)
    auth, final = scram_until_server_final()
    assert isinstance(auth.receive(EncodedChallenge(b64(wrong_v(final)))), Cancel)
    auth, _ = scram_until_server_final()
    assert isinstance(auth.receive(ServerSuccess(b"e=other-error")), Unverified)


def test_drive_runs_the_loop_and_sends_the_cancel() -> None:
    auth, final = scram_until_server_final()
    inbox: list[ServerMessage] = [EncodedChallenge(b64(final)), ServerSuccess()]
    sent: list[str] = []
    outcome = drive(auth, lambda: inbox.pop(0), lambda step: sent.append(step.line))
    assert outcome == ClientAuthenticated("SCRAM-SHA-256")
    assert sent == [""]
    auth, final = scram_until_server_final()
    inbox = [EncodedChallenge(b64(wrong_v(final)))]
    sent = []
    assert isinstance(drive(auth, lambda: inbox.pop(0), lambda step: sent.append(step.line)), Cancel)
    assert sent == ["*"]


def test_bytes_in_bytes_out_as_stdlib_glue_needs_it() -> None:
    """``smtplib``/``imaplib`` authobjects get decoded challenges and return raw responses: no base64 here."""
    server = scram_server()
    auth = engine("SCRAM-SHA-256")
    result = server.step(auth.start().initial_response)
    while isinstance(result, Challenge):
        step = auth.receive(result)
        assert isinstance(step, Answer)
        result = server.step(step.data)
    assert isinstance(result, Success) and result.additional_data is not None
    assert auth.receive(Challenge(result.additional_data)) == Answer(b"", "SCRAM-SHA-256")
    assert auth.receive(ServerSuccess()) == ClientAuthenticated("SCRAM-SHA-256")


# ---------------------------------------------------------------- fuzz


FUZZ_MECHS = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "REMEMBERME", "HT-SHA-256-ENDP", "HT2-SHA-256-EXPR",
              "HT-SHA-256-NONE", "STOKEN"]
_b64_text = st.binary(max_size=200).map(b64)
_scram_like = st.lists(st.sampled_from(["r=", "s=", "i=", "v=", "e=", "m=", ",", "=", "4096", "abc", "\x00"]),
                       max_size=12).map(lambda parts: "".join(parts).encode())
_messages = st.one_of(
    st.builds(EncodedChallenge, st.one_of(st.text(max_size=60), st.binary(max_size=60), _b64_text)),
    st.builds(EncodedChallenge, _scram_like.map(b64)),
    st.builds(Challenge, st.one_of(st.binary(max_size=100), _scram_like)),
    st.builds(ServerSuccess, st.one_of(st.none(), st.binary(max_size=60), _scram_like)),
    st.builds(ServerFailure, st.text(max_size=40)),
    st.builds(MalformedChallenge, st.text(max_size=20)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mech=st.sampled_from(FUZZ_MECHS), framing=st.sampled_from([SMTP_FRAMING, IMAP_FRAMING]),
       messages=st.lists(_messages, max_size=6))
def test_fuzz_server_messages_raise_only_saslkit_errors(mech: str, framing: Framing,
                                                        messages: list[ServerMessage]) -> None:
    token = REGISTRY.info(mech).token_based
    auth = ClientAuth.for_server(REGISTRY, [mech], "user@example.net", "pencil-or-token", mechanism=mech,
                                 framing=framing, channel_bindings=ALL_CB, token=token)
    auth.start()
    for message in messages:
        if auth.state not in (ClientState.EXCHANGING, ClientState.AWAITING_PROMPT):
            with pytest.raises(UsageError):
                auth.receive(message)
            return
        try:
            step = auth.receive(message)
        except SaslError:
            continue
        assert isinstance(step, Answer | Cancel | ClientAuthenticated | Unverified | Rejected)
        if isinstance(step, Answer):
            assert step.line == b64(step.data)

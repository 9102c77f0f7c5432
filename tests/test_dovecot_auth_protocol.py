"""The Dovecot authentication protocol, sans I/O: golden transcripts, the codec, penalties, timeouts, fuzzing.

The transcripts (``tests/reference/dovecot-auth-transcripts.json``) are byte-exact: handshake, every reply
type, escaping, interleaved ids, CANCEL, malformed input.  The same protocol over a real socket, with
``saslkit serve dovecot-auth`` as a process, is in ``test_dovecot_auth_server.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import DownUserStore

from saslkit.credentials import MemoryUserStore, make_user
from saslkit.dovecot.codec import MAX_LINE, MalformedLine, encode_line, escape, parse_line, unescape
from saslkit.dovecot.session import (
    ConnectionState,
    DovecotAuthConfig,
    DovecotAuthSession,
    Output,
    Step,
    TempFailMode,
)
from saslkit.errors import SaslError
from saslkit.penalty import AuthPenalty
from saslkit.registry import default_registry

REFERENCE = Path(__file__).parent / "reference" / "dovecot-auth-transcripts.json"
GOLDEN = json.loads(REFERENCE.read_text())
RFC7677 = json.loads((Path(__file__).parent / "reference" / "scram-rfc7677-sha256.json").read_text())["vectors"][0]
SECRET = b"s" * 32


def rfc_users() -> MemoryUserStore:
    salt = base64.b64decode(RFC7677["salt_b64"])
    return MemoryUserStore([make_user("user", "pencil", iterations=4096, salt=salt, argon2_hash=False)])


def make_session(config: dict[str, Any] | None = None, *, clock: Any = None,
                 penalty: AuthPenalty | None = None) -> DovecotAuthSession:
    options = dict(config or {})
    users: Any = DownUserStore() if options.pop("store", None) == "unavailable" else rfc_users()
    options.setdefault("mechanisms", tuple(GOLDEN["handshake_config"]["mechanisms"]))
    options.setdefault("private_mechanisms", frozenset(GOLDEN["handshake_config"]["private_mechanisms"]))
    options.setdefault("failure_delay", 0.0)
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return DovecotAuthSession(DovecotAuthConfig(**options), users, SECRET, penalty=penalty, connection_id=7,
                              cookie=bytes(range(16)), server_pid=4242,
                              nonce_factory=lambda: RFC7677["server_nonce_suffix"], **extra)


def feed(session: DovecotAuthSession, line: bytes) -> Output:
    """One client line, its step run at once (as a driver does, minus the thread)."""
    result = session.receive_line(line)
    if isinstance(result, Step):
        return session.complete(result.request_id, result.run())
    return result


def wire_lines(output: Output) -> list[str]:
    return output.wire.decode().splitlines()


@pytest.mark.parametrize("transcript", GOLDEN["transcripts"], ids=lambda t: t["name"])
def test_golden_transcript(transcript: dict[str, Any]) -> None:
    session = make_session(transcript["config"])
    steps = transcript["steps"]
    pending = session.handshake().decode().splitlines() if transcript["name"] == "handshake" else []
    for step in steps:
        if step[0] == "C":
            assert not pending, f"server lines not yet seen before {step[1]!r}: {pending}"
            output = feed(session, step[1].encode("utf-8", "surrogateescape") + b"\n")
            pending = wire_lines(output)
            closed = output.close
        elif step[0] == "S":
            assert pending, f"expected {step[1]!r}, the server sent nothing"
            assert pending.pop(0) == step[1]
        else:
            assert step == ["closed"] and closed and not pending
            assert session.state is ConnectionState.CLOSED
    assert not pending


def test_every_line_ends_in_lf_and_handshake_is_written_whole() -> None:
    session = make_session()
    handshake = session.handshake()
    assert handshake.endswith(b"DONE\n") and handshake.startswith(b"VERSION\t1\t")
    lines = handshake.decode().splitlines()
    assert max(i for i, line in enumerate(lines) if line.startswith("MECH\t")) < lines.index("SPID\t4242")


def test_handshake_lists_token_mechanisms_only_with_a_token_service(tmp_path: Path) -> None:
    from saslkit.keys import KeyRing
    from saslkit.stores.sqlite import SQLiteTokenStore
    from saslkit.tokens import TokenService

    config = DovecotAuthConfig(private_mechanisms=frozenset({"STOKEN"}))
    bare = DovecotAuthSession(config, rfc_users(), SECRET).handshake().decode()
    assert "MECH\tREMEMBERME" not in bare and "MECH\tHT-SHA-256-NONE" not in bare
    tokens = TokenService(SQLiteTokenStore(tmp_path / "t.db"), KeyRing.open(tmp_path / "k.keys", quiet=True))
    with_tokens = DovecotAuthSession(config, rfc_users(), SECRET, tokens=tokens).handshake().decode()
    assert "MECH\tREMEMBERME\tplaintext\n" in with_tokens
    assert "MECH\tHT2-SHA-256-NONE\tmutual-auth\n" in with_tokens
    # No channel-binding mechanism: this server speaks minor 2, and the MTAs cannot supply the data.
    assert "PLUS" not in with_tokens and "-ENDP" not in with_tokens and "-EXPR" not in with_tokens
    assert "VERSION\t1\t2\n" in with_tokens


@pytest.mark.parametrize("mode, minor, closes", [
    (TempFailMode.REPLY, 0, False), (TempFailMode.DISCONNECT, 3, True), (TempFailMode.AUTO, 1, False),
])
def test_temp_fail_modes(mode: TempFailMode, minor: int, closes: bool) -> None:
    session = make_session({"store": "unavailable", "temp_fail": mode})
    feed(session, f"VERSION\t1\t{minor}\n".encode())
    plain = base64.b64encode(b"\0user\0pencil").decode()
    output = feed(session, f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\tresp={plain}\n".encode())
    assert output.close is closes
    assert (output.wire == b"") is closes
    assert output.events and output.events[0].temporary  # type: ignore[union-attr]
    assert any("auth temporary failure" in line for line in output.log)


def test_penalty_delays_only_final_replies_per_rip_and_user() -> None:
    penalty = AuthPenalty(2.0, 8.0)
    session = make_session(penalty=penalty)
    feed(session, b"VERSION\t1\t0\n")
    bad = base64.b64encode(b"\0user\0nope").decode()
    first = feed(session, f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\trip=192.0.2.9\tresp={bad}\n".encode())
    second = feed(session, f"AUTH\t2\tPLAIN\tservice=smtp\tsecured\trip=192.0.2.9\tresp={bad}\n".encode())
    assert (first.delay, second.delay) == (0.0, 2.0)
    challenge = feed(session, b"AUTH\t3\tLOGIN\tservice=smtp\tsecured\trip=192.0.2.9\n")
    assert challenge.delay == 0.0  # a challenge never waits
    other_ip = feed(session, f"AUTH\t4\tPLAIN\tservice=smtp\tsecured\trip=198.51.100.1\tresp={bad}\n".encode())
    assert other_ip.delay == 4.0  # a new IP, but the user has failed twice: 2·2¹


def test_no_penalty_is_honoured_only_when_configured() -> None:
    bad = base64.b64encode(b"\0user\0nope").decode()
    for honour, expected in ((False, 2.0), (True, 0.0)):
        session = make_session({"honour_no_penalty": honour}, penalty=AuthPenalty(2.0, 8.0))
        feed(session, b"VERSION\t1\t0\n")
        feed(session, f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\tno-penalty\trip=192.0.2.1\tresp={bad}\n".encode())
        out = feed(session, f"AUTH\t2\tPLAIN\tservice=smtp\tsecured\tno-penalty\trip=192.0.2.1\tresp={bad}\n".encode())
        assert out.delay == expected


def test_failure_delay_applies_to_failures_not_successes() -> None:
    session = make_session({"failure_delay": 1.5})
    feed(session, b"VERSION\t1\t0\n")
    good = base64.b64encode(b"\0user\0pencil").decode()
    bad = base64.b64encode(b"\0user\0nope").decode()
    assert feed(session, f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\tresp={good}\n".encode()).delay == 0.0
    assert feed(session, f"AUTH\t2\tPLAIN\tservice=smtp\tsecured\tresp={bad}\n".encode()).delay == 1.5


def test_request_timeout_fails_the_waiting_request_only() -> None:
    now = [100.0]
    session = make_session({"request_timeout": 30.0}, clock=lambda: now[0])
    feed(session, b"VERSION\t1\t0\n")
    feed(session, b"AUTH\t1\tLOGIN\tservice=smtp\tsecured\n")
    now[0] += 10
    feed(session, b"AUTH\t2\tLOGIN\tservice=smtp\tsecured\n")
    assert session.next_deadline == 130.0
    now[0] = 131.0
    assert wire_lines(session.expire()) == ["FAIL\t1\treason=Authentication timed out"]
    assert session.requests_in_flight == 1 and session.next_deadline == 140.0


def test_log_lines_name_mechanism_identity_service_rip_never_secrets() -> None:
    session = make_session()
    feed(session, b"VERSION\t1\t0\n")
    feed(session, b"CPID\t77\n")
    bad = base64.b64encode(b"\0user\0pencil-wrong").decode()
    out = feed(session, f"AUTH\t1\tPLAIN\tservice=smtp\tsecured\trip=192.0.2.5\tresp={bad}\n".encode())
    assert out.log == ["auth failed rip=192.0.2.5 mechanism=PLAIN identity=user reason=authentication-failed "
                       "service=smtp client_pid=77"]
    assert "pencil" not in " ".join(out.log)


def test_line_too_long_closes() -> None:
    session = make_session()
    assert session.line_too_long().close and session.state is ConnectionState.CLOSED
    with pytest.raises(MalformedLine):
        parse_line(b"A" * (MAX_LINE + 1) + b"\n")


# --------------------------------------------------------------------------- codec


@given(st.text())
def test_escape_round_trip(value: str) -> None:
    escaped = escape(value)
    assert not set(escaped) & set("\t\n\r\x00")
    assert unescape(escaped) == value


@given(st.lists(st.text(), min_size=1, max_size=6))
def test_line_round_trip(fields: list[str]) -> None:
    assert parse_line(encode_line(fields)) == fields


@pytest.mark.parametrize("raw, fields", [
    (b"A\x01tB\tC\x011\n", ["A\tB", "C\x01"]),
    (b"x\x01r\x01n\x010\n", ["x\r\n\x00"]),
    (b"CONT\t1\t\n", ["CONT", "1", ""]),
])
def test_codec_bytes(raw: bytes, fields: list[str]) -> None:
    assert parse_line(raw) == fields
    assert encode_line(fields) == raw


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_fuzz_parse_line_raises_only_library_errors(data: bytes) -> None:
    try:
        parse_line(data)
    except SaslError:
        pass


_COMMANDS = st.sampled_from(["VERSION", "CPID", "AUTH", "CONT", "CANCEL", "DONE", "", "OK"])
_FIELD = st.one_of(st.sampled_from(["1", "2", "0", "4294967296", "PLAIN", "LOGIN", "SCRAM-SHA-256", "service=smtp",
                                    "secured", "resp=", "resp=AHVzZXIAcGVuY2ls", "resp=!!", "final-resp-ok",
                                    "no-penalty", "rip=192.0.2.1", "dXNlcg==", "cGVuY2ls"]),
                   st.text(max_size=12))


@given(st.lists(st.tuples(_COMMANDS, st.lists(_FIELD, max_size=6)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_fuzz_session_raises_nothing(lines: list[tuple[str, list[str]]]) -> None:
    session = make_session({"max_requests": 3})
    session.handshake()
    feed(session, b"VERSION\t1\t0\n")
    for command, fields in lines:
        output = feed(session, encode_line([command, *fields]))
        assert isinstance(output, Output)
        for line in wire_lines(output):
            assert line.split("\t")[0] in ("CONT", "OK", "FAIL")
        if output.close:
            break


def test_config_refuses_unknown_private_mechanism() -> None:
    from saslkit.errors import UsageError

    with pytest.raises(UsageError):
        DovecotAuthConfig(private_mechanisms=frozenset({"NOPE"}))
    assert "LOGIN" in default_registry()

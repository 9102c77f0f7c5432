"""The Dovecot authentication protocol, sans I/O: golden transcripts, the codec, penalties, timeouts, fuzzing.

The transcripts (``tests/reference/dovecot-auth-transcripts.json``) are byte-exact: handshake, every reply
type, escaping, interleaved ids, CANCEL, malformed input.  The same protocol over a real socket, with
``saslkit serve dovecot-auth`` as a process, is in ``test_dovecot_auth_server.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
    HandshakeTiming,
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
    assert any("auth temporary failure" in entry.text for entry in output.log)


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
    assert [entry.text for entry in out.log] == [
        "auth failed rip=192.0.2.5 mechanism=PLAIN identity=user reason=authentication-failed service=smtp "
        "client_pid=77"]
    assert out.log[0].fields == {"event": "auth failed", "rip": "192.0.2.5", "mechanism": "PLAIN", "identity": "user",
                                 "reason": "authentication-failed", "service": "smtp", "client_pid": "77"}
    assert "pencil" not in repr(out.log)


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
                                    "no-penalty", "rip=192.0.2.1", "dXNlcg==", "cGVuY2ls", "SCRAM-SHA-256-PLUS",
                                    "HT-SHA-256-EXPR", "channel_binding=AAAA", "channel_binding=!",
                                    "resp=cD10bHMtZXhwb3J0ZXIsLG49dXNlcixyPWFiYw=="]),
                   st.text(max_size=12))


@given(st.lists(st.tuples(_COMMANDS, st.lists(_FIELD, max_size=6)), max_size=12), st.booleans())
@settings(max_examples=300, deadline=None)
def test_fuzz_session_raises_nothing(lines: list[tuple[str, list[str]]], channel_binding: bool) -> None:
    session = cb_session() if channel_binding else make_session({"max_requests": 3})
    session.handshake()
    feed(session, b"VERSION\t1\t3\n" if channel_binding else b"VERSION\t1\t0\n")
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


# --------------------------------------------------------------------------- channel binding (minor 3)

CB_DATA = bytes(range(32))  # what a minor-3 client (a Dovecot 2.4 login process) would export from its TLS


def cb_session() -> DovecotAuthSession:
    return make_session({"channel_binding": True, "handshake": HandshakeTiming.AFTER_VERSION,
                         "mechanisms": None, "private_mechanisms": frozenset()})


class ScramPlusClient:
    """RFC 5802 §3 client arithmetic with hashlib/hmac (independent of saslkit's client)."""

    def __init__(self, cb_type: str, cb_data: bytes) -> None:
        self.header = f"p={cb_type},,"
        self.cb_data = cb_data
        self.bare = "n=user,r=clientnonce123"

    def first(self) -> str:
        return base64.b64encode((self.header + self.bare).encode()).decode()

    def final(self, server_first: str, cb_data: bytes | None = None) -> tuple[str, bytes]:
        fields = dict(x.split("=", 1) for x in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", b"pencil", base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        cbind = base64.b64encode(self.header.encode() + (self.cb_data if cb_data is None else cb_data)).decode()
        without_proof = f"c={cbind},r={fields['r']}"
        auth_message = f"{self.bare},{server_first},{without_proof}".encode()
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        verifier = b"v=" + base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest())
        return base64.b64encode(f"{without_proof},p={proof}".encode()).decode(), verifier


def test_channel_binding_handshake_depends_on_the_clients_minor() -> None:
    for minor, listed in ((0, False), (2, False), (3, True), (4, True)):
        session = cb_session()
        assert session.handshake() == b""  # after VERSION: the MECH list depends on the minor
        lines = wire_lines(feed(session, f"VERSION\t1\t{minor}\n".encode()))
        assert lines[0] == "VERSION\t1\t3" and lines[-1] == "DONE"
        assert ("MECH\tSCRAM-SHA-256-PLUS\tmutual-auth\tchannel-binding" in lines) is listed
        assert "MECH\tSCRAM-SHA-256\tmutual-auth" in lines


def test_channel_binding_needs_the_handshake_after_version() -> None:
    from saslkit.errors import UsageError

    with pytest.raises(UsageError):
        DovecotAuthConfig(channel_binding=True)


@pytest.mark.parametrize("supplied, ok", [(CB_DATA, True), (b"\x00" * 32, False), (None, False)])
def test_scram_plus_with_data_from_the_client(supplied: bytes | None, ok: bool) -> None:
    """The server's CONT names the type; the client's next CONT carries the data (Dovecot's minor 3)."""
    session = cb_session()
    feed(session, b"VERSION\t1\t3\n")
    client = ScramPlusClient("tls-exporter", CB_DATA)
    out = wire_lines(feed(session, f"AUTH\t1\tSCRAM-SHA-256-PLUS\tservice=imap\tsecured\tresp={client.first()}\n"
                                   .encode()))
    assert len(out) == 1 and out[0].startswith("CONT\t1\t") and out[0].endswith("\tchannel_binding=tls-exporter")
    server_first = base64.b64decode(out[0].split("\t")[2]).decode()
    final, verifier = client.final(server_first)
    extra = "" if supplied is None else f"\tchannel_binding={base64.b64encode(supplied).decode()}"
    out = wire_lines(feed(session, f"CONT\t1\t{final}{extra}\n".encode()))
    if not ok:
        assert out == ["FAIL\t1\treason=Authentication failed\tuser=user"]
        return
    assert out == [f"CONT\t1\t{base64.b64encode(verifier).decode()}"]
    assert wire_lines(feed(session, b"CONT\t1\t\n")) == ["OK\t1\tuser=user"]


def test_plus_refused_below_minor_3_and_unsecured() -> None:
    for version, secured in (("VERSION\t1\t2", "\tsecured"), ("VERSION\t1\t3", "")):
        session = cb_session()
        feed(session, f"{version}\n".encode())
        client = ScramPlusClient("tls-exporter", CB_DATA)
        out = wire_lines(feed(session, f"AUTH\t1\tSCRAM-SHA-256-PLUS\tservice=imap{secured}\tresp={client.first()}\n"
                                       .encode()))
        assert out == ["FAIL\t1\treason=Channel binding is not available"]


def test_downgrade_to_y_is_refused_where_plus_is_offered() -> None:
    """A minor-3 client was offered -PLUS: "y" (client supports binding, thinks the server does not) is a
    downgrade (RFC 5802 §6)."""
    session = cb_session()
    feed(session, b"VERSION\t1\t3\n")
    first = base64.b64encode(b"y,,n=user,r=abc").decode()
    out = wire_lines(feed(session, f"AUTH\t1\tSCRAM-SHA-256\tservice=imap\tsecured\tresp={first}\n".encode()))
    assert out[0].startswith("FAIL\t1\t")
    # The same message from a client at minor 2 (never offered -PLUS) is honest.
    session = cb_session()
    feed(session, b"VERSION\t1\t2\n")
    out = wire_lines(feed(session, f"AUTH\t1\tSCRAM-SHA-256\tservice=imap\tsecured\tresp={first}\n".encode()))
    assert out[0].startswith("CONT\t1\t")


def test_ht_expr_without_initial_response_gets_the_data_with_the_initiator_message(tmp_path: Path) -> None:
    from saslkit.keys import KeyRing
    from saslkit.mechanisms.ht import initiator_message
    from saslkit.stores.sqlite import SQLiteTokenStore
    from saslkit.tokens import TokenService

    users = rfc_users()
    tokens = TokenService(SQLiteTokenStore(tmp_path / "t.db"), KeyRing.open(tmp_path / "k.keys", quiet=True))
    token, _ = tokens.mint("user", mechanism="HT-SHA-256-EXPR")
    config = DovecotAuthConfig(channel_binding=True, handshake=HandshakeTiming.AFTER_VERSION, failure_delay=0)
    for data, expected in ((CB_DATA, "OK"), (b"\x07" * 32, "FAIL")):
        session = DovecotAuthSession(config, users, SECRET, tokens=tokens)
        handshake = wire_lines(feed(session, b"VERSION\t1\t3\n"))
        assert "MECH\tHT-SHA-256-EXPR\tmutual-auth\tchannel-binding" in handshake
        out = wire_lines(feed(session, b"AUTH\t1\tHT-SHA-256-EXPR\tservice=smtp\tsecured\n"))
        assert out == ["CONT\t1\t\tchannel_binding=tls-exporter"]
        message = base64.b64encode(initiator_message("HT-SHA-256-EXPR", "user", token, CB_DATA)).decode()
        out = wire_lines(feed(session, f"CONT\t1\t{message}\tchannel_binding={base64.b64encode(data).decode()}\n"
                                       .encode()))
        if expected == "FAIL":
            assert out[0].startswith("FAIL\t1\t")
            continue
        assert out[0].startswith("CONT\t1\t")  # the responder message, then OK after the empty CONT
        assert wire_lines(feed(session, b"CONT\t1\t\n")) == ["OK\t1\tuser=user"]

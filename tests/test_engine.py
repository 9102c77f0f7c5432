"""The server engine (saslkit/auth): offer, typed outcomes and events, the ``--mechanisms`` allow-list.

* :class:`ServerAuth` alone: refusals by kind, base64 framing, cancel, RFC 4422 §5 item 2b (additional data
  as a final challenge), temporary failures, and which steps may block (a SCRAM client-final step only
  computes HMACs);
* the sessions: the registry is asked once per offer, IMAP ``LOGIN`` goes through the offer as PLAIN
  (policy and allow-list included), replies carry typed events, SMTP states are named;
* real ``saslkit serve`` processes with ``--mechanisms SCRAM-SHA-256``: IMAP ``LOGIN``, ``AUTHENTICATE
  PLAIN`` and SMTP ``AUTH PLAIN`` are refused and not advertised, and the log names the mechanism and the
  attempted identity (quoted), never the password.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import DownUserStore, ServerProcess, run_client, saslkit_run

from saslkit import ClientCredentials, Policy, Registry, default_registry
from saslkit.auth.engine import Abort, Aborted, ServerAuth
from saslkit.auth.events import Authenticated, AuthFailed, AuthRefused, TokenMinted, log_line, logfmt
from saslkit.context import ServerContext
from saslkit.credentials import MemoryUserStore, make_user
from saslkit.errors import UsageError
from saslkit.imap.session import LOGOUT, ImapConfig, ImapSession, ImapState
from saslkit.mechanism import Challenge, FailureReason
from saslkit.registry import Offer, Refusal
from saslkit.smtp.session import SmtpConfig, SmtpSession, SmtpState
from saslkit.stores.redis import RedisTokenStore
from saslkit.stores.sqlite import SQLiteTokenStore, SQLiteUserStore

SECRET = b"engine-test-server-secret-0123456"
PASSWORD = "pencil-0b1c2d3e"
USERS = MemoryUserStore([make_user("alice", PASSWORD, iterations=4096, argon2_hash=False)])


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def engine(tls: bool = True, *, users: Any = USERS, policy: Policy | None = None, **kw: Any) -> ServerAuth:
    registry = default_registry()
    ctx = ServerContext(users, SECRET, tls=tls, **kw)
    return ServerAuth(registry, registry.offer(tls=tls, policy=policy), ctx)


def scram_client(password: str = PASSWORD) -> Any:
    return default_registry().client("SCRAM-SHA-256", ClientCredentials("alice", password))


# --------------------------------------------------------------------------- the offer


def test_offer_refusals_are_typed() -> None:
    registry = default_registry()
    offer = registry.offer(tls=False, policy=Policy(denied=frozenset({"SCRAM-SHA-1"})))
    assert offer.refusal("scram-sha-256") is None and "SCRAM-SHA-256" in offer
    assert offer.refusal("PLAIN") is Refusal.REQUIRES_TLS and Refusal.REQUIRES_TLS.too_weak
    assert offer.refusal("SCRAM-SHA-1") is Refusal.DISABLED_BY_POLICY
    assert offer.refusal("SCRAM-SHA-256-PLUS") is Refusal.NO_CHANNEL_BINDING
    assert offer.refusal("NOSUCH") is Refusal.UNKNOWN and not Refusal.UNKNOWN.too_weak
    assert registry.refusal("PLAIN", tls=False) == Refusal.REQUIRES_TLS.value  # the old API, same words


def test_offer_follows_the_allow_list_order() -> None:
    registry = default_registry()
    policy = Policy(mechanisms=("plain", "SCRAM-SHA-1", "SCRAM-SHA-256"))
    offer = registry.offer(tls=True, policy=policy)
    assert offer.mechanisms == ("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256")
    assert offer.refusal("SCRAM-SHA-512") is Refusal.DISABLED_BY_POLICY
    assert registry.offered(tls=True, policy=policy) == list(offer.mechanisms)


def test_offer_marks_what_the_binding_cannot_serve() -> None:
    offer = default_registry().offer(tls=True, available=lambda info: not info.token_based)
    assert offer.refusal("REMEMBERME") is Refusal.NOT_OFFERED and "REMEMBERME" not in offer.mechanisms


@pytest.mark.parametrize("config", [SmtpConfig, ImapConfig])
def test_unknown_name_in_the_allow_list_is_a_usage_error(config: Any) -> None:
    with pytest.raises(UsageError, match="NOSUCH"):
        config(mechanisms=("SCRAM-SHA-256", "NOSUCH"))


def test_empty_offer_refuses_everything() -> None:
    assert Offer().refusal("PLAIN") is Refusal.UNKNOWN


# --------------------------------------------------------------------------- ServerAuth


def test_plain_success_and_failure_are_typed() -> None:
    auth = engine()
    ok = auth.start("plain", b64(f"\0alice\0{PASSWORD}"))
    assert isinstance(ok, Authenticated) and (ok.identity, ok.mechanism, ok.authcid) == ("alice", "PLAIN", "alice")
    bad = auth.start("PLAIN", b64("\0alice\0wrong"))
    assert bad == AuthFailed(FailureReason.AUTHENTICATION_FAILED, "PLAIN", "alice", False) and not auth.active


@pytest.mark.parametrize(("name", "ir", "tls", "expected"), [
    ("NOSUCH", None, True, Refusal.UNKNOWN),
    ("PLAIN", b64("\0alice\0x"), False, Refusal.REQUIRES_TLS),
    ("SCRAM-SHA-256-PLUS", None, True, Refusal.NO_CHANNEL_BINDING),
])
def test_refusals(name: str, ir: str | None, tls: bool, expected: Refusal) -> None:
    outcome = engine(tls).start(name, ir)
    assert outcome == AuthRefused(expected, name)


def test_refused_name_is_cut_short() -> None:
    outcome = engine().start("X" * 400, None)
    assert isinstance(outcome, AuthRefused) and len(outcome.mechanism) <= 32


def test_framing_aborts() -> None:
    auth = engine()
    assert auth.start("PLAIN", "not base64!") == Aborted(Abort.INVALID_INITIAL_RESPONSE)
    assert auth.start("PLAIN", None) == Challenge(b"") and auth.active
    assert auth.receive("*") == Aborted(Abort.CANCELLED) and not auth.active
    assert auth.start("PLAIN", None) == Challenge(b"")
    assert auth.receive("YQ=") == Aborted(Abort.INVALID_BASE64) and not auth.active
    assert auth.start("PLAIN", None) == Challenge(b"")
    assert auth.abort(Abort.LINE_TOO_LONG) == Aborted(Abort.LINE_TOO_LONG) and not auth.active
    with pytest.raises(UsageError):
        auth.respond(b"")


def test_scram_additional_data_is_a_final_challenge_and_client_final_does_not_block() -> None:
    auth, client = engine(), scram_client()
    assert auth.next_step_may_block  # the first step looks the user up
    server_first = auth.start("SCRAM-SHA-256", b64(client.start()))
    assert isinstance(server_first, Challenge) and auth.next_step_may_block is False  # only HMACs now
    final = auth.receive(b64(client.step(server_first.data)))
    assert isinstance(final, Challenge) and final.data.startswith(b"v=")  # RFC 4422 §5 item 2b
    client.finish(final.data)
    assert auth.next_step_may_block is False
    outcome = auth.receive("")
    assert isinstance(outcome, Authenticated) and outcome.mechanism == "SCRAM-SHA-256" and not auth.active


def test_non_empty_answer_to_additional_data_fails() -> None:
    auth, client = engine(), scram_client()
    server_first = auth.start("SCRAM-SHA-256", b64(client.start()))
    assert isinstance(server_first, Challenge)
    assert isinstance(auth.receive(b64(client.step(server_first.data))), Challenge)
    outcome = auth.receive(b64("junk"))
    assert isinstance(outcome, AuthFailed) and outcome.authcid == "alice" and not outcome.temporary


def test_additional_data_with_success_for_protocols_that_carry_it() -> None:
    registry = default_registry()
    auth = ServerAuth(registry, registry.offer(tls=True), ServerContext(USERS, SECRET, tls=True),
                      additional_data_with_success=True)
    client = scram_client()
    server_first = auth.start("SCRAM-SHA-256", b64(client.start()))
    assert isinstance(server_first, Challenge)
    outcome = auth.receive(b64(client.step(server_first.data)))
    assert isinstance(outcome, Authenticated) and outcome.success.additional_data is not None


def test_a_custom_authorizer_may_block() -> None:
    auth, client = engine(authorize=lambda authcid, authzid: True), scram_client()
    assert isinstance(auth.start("SCRAM-SHA-256", b64(client.start())), Challenge)
    assert auth.next_step_may_block  # the authorizer may consult a store


class WaitingUserStore:
    """A third-party (Redis-like) store: no ``reads_may_block``, so its reads may wait."""

    def __init__(self, inner: MemoryUserStore) -> None:
        self.inner = inner
        self.default_iterations = inner.default_iterations

    def get_user(self, username: str) -> Any:
        return self.inner.get_user(username)


class FakeTokens:
    """Only what ``start_may_block`` consults: the token service's ``store``."""

    def __init__(self, store: Any) -> None:
        self.store = store


def sqlite_users(tmp_path: Path) -> SQLiteUserStore:
    store = SQLiteUserStore(tmp_path / "users.db")
    store.put_user(make_user("alice", PASSWORD, iterations=4096, argon2_hash=False))
    return store


@pytest.mark.parametrize(("name", "ir", "users", "tokens", "blocks"), [
    ("SCRAM-SHA-256", True, "waiting", "sqlite", True),  # the user lookup may be a network round trip
    ("SCRAM-SHA-256", True, "memory", "sqlite", False),
    ("SCRAM-SHA-256", True, "sqlite", "redis", False),  # WAL reads never wait; no token store read
    ("SCRAM-SHA-256", False, "waiting", "redis", False),  # no initial response: an empty challenge only
    ("PLAIN", True, "sqlite", "sqlite", True),  # argon2
    ("PLAIN", True, "memory", "sqlite", True),
    ("PLAIN", False, "waiting", "redis", False),
    ("REMEMBERME", True, "sqlite", "sqlite", False),
    ("REMEMBERME", True, "sqlite", "redis", True),
    ("REMEMBERME", True, "waiting", "sqlite", True),  # checks the user is still current
    ("HT-SHA-256-NONE", True, "sqlite", "sqlite", False),
    ("HT-SHA-256-NONE", True, "sqlite", "redis", True),
    ("HT-SHA-256-NONE", False, "sqlite", "redis", False),
    ("STOKEN", True, "sqlite", "sqlite", True),  # refreshes its record with a waiting write
    ("NOSUCH", True, "waiting", "redis", False),  # refused at once
])
def test_start_may_block_table(tmp_path: Path, name: str, ir: bool, users: str, tokens: str, blocks: bool) -> None:
    user_store: Any = {"memory": USERS, "waiting": WaitingUserStore(USERS)}.get(users) or sqlite_users(tmp_path)
    token_store = RedisTokenStore.__new__(RedisTokenStore) if tokens == "redis" else \
        SQLiteTokenStore(tmp_path / "tokens.db")
    registry = default_registry()
    ctx = ServerContext(user_store, SECRET, tls=True, tokens=FakeTokens(token_store),  # type: ignore[arg-type]
                        stokens=object())  # type: ignore[arg-type]
    auth = ServerAuth(registry, registry.offer(tls=True), ctx)
    assert auth.start_may_block(name, ir) is blocks


def test_start_may_block_with_a_custom_authorizer_and_unoffered_names() -> None:
    assert engine(authorize=lambda authcid, authzid: True).start_may_block("SCRAM-SHA-256", True)
    assert engine().start_may_block("SCRAM-SHA-256", True) is False  # memory store: dict lookups
    assert engine(tls=False).start_may_block("PLAIN", True) is False  # refused without TLS: answered at once


def test_first_step_after_an_empty_challenge_follows_the_stores() -> None:
    auth = engine()
    assert auth.start("SCRAM-SHA-256", None) == Challenge(b"")
    assert auth.next_step_may_block is False  # client-first on a memory store
    auth = engine(users=WaitingUserStore(USERS))
    assert auth.start("SCRAM-SHA-256", None) == Challenge(b"")
    assert auth.next_step_may_block  # client-first reads a store that may wait
    auth = engine()
    assert auth.start("PLAIN", None) == Challenge(b"") and auth.next_step_may_block  # argon2


def test_reads_may_block_attributes_of_the_stores(tmp_path: Path) -> None:
    assert MemoryUserStore.reads_may_block is False
    assert sqlite_users(tmp_path).reads_may_block is False
    assert SQLiteTokenStore(tmp_path / "t.db").reads_may_block is False
    assert RedisTokenStore.reads_may_block is True


def test_store_outage_is_a_temporary_failure() -> None:
    outcome = engine(users=DownUserStore()).start("PLAIN", b64("\0alice\0x"))
    assert isinstance(outcome, AuthFailed) and outcome.temporary and outcome.reason == FailureReason.TEMPORARY_FAILURE


# --------------------------------------------------------------------------- events and log lines


@pytest.mark.parametrize(("value", "shown"), [
    ("alice@example.com", "alice@example.com"), ("a b", '"a b"'), ('q"x\\', '"q\\"x\\\\"'), ("", '""'),
    ("x\ny", '"x\\x0ay"'), (None, '""'),
])
def test_logfmt_quoting(value: str | None, shown: str) -> None:
    assert logfmt(value) == shown


def test_log_lines_name_mechanism_and_identity() -> None:
    failed = AuthFailed(FailureReason.AUTHENTICATION_FAILED, "PLAIN", "a b")
    assert log_line(failed, "192.0.2.1") == (
        'auth failed peer=192.0.2.1 mechanism=PLAIN identity="a b" reason=authentication-failed')
    refused = log_line(AuthRefused(Refusal.REQUIRES_TLS, "PLAIN"), "::1")
    assert refused == 'auth refused peer=::1 mechanism=PLAIN reason="mechanism requires TLS"'
    assert log_line(TokenMinted("RANDOM", "alice"), "p") == "token minted peer=p kind=RANDOM identity=alice"


# --------------------------------------------------------------------------- sessions


class CountingRegistry(Registry):
    """The default registry, counting the offer and refusal questions the sessions ask."""

    def __init__(self) -> None:
        super().__init__(default_registry()._mechs.values())
        self.questions = 0

    def offer(self, **kw: Any) -> Offer:
        self.questions += 1
        return super().offer(**kw)

    def refusal(self, name: str, **kw: Any) -> str | None:
        self.questions += 1
        return super().refusal(name, **kw)


def smtp(tls: bool = True, **config: Any) -> SmtpSession:
    session = SmtpSession(SmtpConfig(hostname="mx.example.com", failure_delay=0, **config), USERS, SECRET, tls=tls,
                          peer="192.0.2.7")
    session.greeting()
    assert session.receive_line(b"EHLO client.example.com").lines[0].startswith("250")
    return session


def imap(tls: bool = True, **config: Any) -> ImapSession:
    return ImapSession(ImapConfig(failure_delay=0, **config), USERS, SECRET, tls=tls, peer="192.0.2.8")


def test_smtp_asks_the_registry_once_per_offer() -> None:
    registry = CountingRegistry()
    session = smtp(registry=registry)
    for _ in range(2):
        client = scram_client()
        session.receive_line(f"AUTH SCRAM-SHA-256 {b64(client.start())}".encode())
        session.receive_line(b"*")
    session.receive_line(b"AUTH NOSUCH")
    session.receive_line(b"EHLO again.example.com")
    assert registry.questions == 1


def test_smtp_states_are_named_and_may_block_follows_the_engine() -> None:
    session = SmtpSession(SmtpConfig(failure_delay=0), USERS, SECRET, tls=True)
    assert session.state is SmtpState.CONNECTED
    session.receive_line(b"EHLO c.example.com")
    assert session.state is SmtpState.GREETED
    client = scram_client()
    first = session.receive_line(f"AUTH SCRAM-SHA-256 {b64(client.start())}".encode())
    assert session.state is SmtpState.AUTH_EXCHANGE
    client_final = b64(client.step(base64.b64decode(first.lines[0][4:]))).encode()
    assert session.may_block(client_final) is False  # SCRAM client-final: HMACs only, no thread hop
    final = session.receive_line(client_final)
    assert final.lines[0].startswith("334 ") and session.may_block(b"") is False
    done = session.receive_line(b"")
    assert done.lines == ["235 2.7.0 Authentication successful"] and session.state is SmtpState.GREETED
    assert [type(e) for e in done.events] == [Authenticated]
    session.receive_line(b"MAIL FROM:<alice@example.com>")
    assert session.state is SmtpState.TRANSACTION
    session.receive_line(b"RCPT TO:<bob@example.com>")
    session.receive_line(b"DATA")
    assert session.state is SmtpState.DATA
    session.receive_line(b".")
    assert session.state is SmtpState.GREETED


def test_smtp_failure_events_carry_the_attempted_identity() -> None:
    session = smtp()
    reply = session.receive_line(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + 'wrong')}".encode())
    assert reply.lines[0].startswith("535 5.7.8") and reply.events == [
        AuthFailed(FailureReason.AUTHENTICATION_FAILED, "PLAIN", "alice", False)]
    refused = smtp(tls=False).receive_line(b"AUTH PLAIN")
    assert refused.lines[0].startswith("534 5.7.9") and refused.events == [AuthRefused(Refusal.REQUIRES_TLS, "PLAIN")]


def test_smtp_allow_list() -> None:
    session = smtp(mechanisms=("SCRAM-SHA-256",))
    assert session.offered_mechanisms() == ["SCRAM-SHA-256"]
    reply = session.receive_line(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + PASSWORD)}".encode())
    assert reply.lines[0].startswith("534 5.7.9") and session.authenticated is None


def capabilities(session: ImapSession) -> list[str]:
    return session.receive_line(b"c CAPABILITY").lines[0].split()[2:]


@pytest.mark.parametrize("config", [
    {"policy": Policy(denied=frozenset({"PLAIN"}))},
    {"policy": Policy(allowed=frozenset({"SCRAM-SHA-256"}))},
    {"mechanisms": ("SCRAM-SHA-256",)},
], ids=["policy-denies-plain", "policy-allows-scram-only", "allow-list"])
def test_imap_login_is_plain_under_the_policy(config: dict[str, Any]) -> None:
    session = imap(**config)
    caps = capabilities(session)
    assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps and "AUTH=SCRAM-SHA-256" in caps
    login = session.receive_line(f"a LOGIN alice {PASSWORD}".encode())
    assert login.lines[0].startswith("a NO [CANNOT]") and session.authenticated is None
    assert login.events == [AuthRefused(Refusal.DISABLED_BY_POLICY, "PLAIN")]
    plain = session.receive_line(f"b AUTHENTICATE PLAIN {b64(chr(0) + 'alice' + chr(0) + PASSWORD)}".encode())
    assert plain.lines[0].startswith("b NO [PRIVACYREQUIRED]") and session.authenticated is None


def test_imap_login_allowed_emits_events() -> None:
    session = imap()
    assert "LOGINDISABLED" not in capabilities(session)
    bad = session.receive_line(b"a LOGIN alice wrong")
    assert bad.lines[0].startswith("a NO [AUTHENTICATIONFAILED]")
    assert bad.events == [AuthFailed(FailureReason.AUTHENTICATION_FAILED, "PLAIN", "alice", False)]
    ok = session.receive_line(f"b LOGIN alice {PASSWORD}".encode())
    assert ok.lines[0].startswith("b OK [CAPABILITY ") and session.state is ImapState.AUTHENTICATED
    assert [(e.identity, e.mechanism) for e in ok.events if isinstance(e, Authenticated)] == [("alice", "PLAIN")]
    assert session.receive_line(b"c LOGOUT").close and session.state is LOGOUT == "logout"


def test_imap_scram_client_final_does_not_block() -> None:
    session, client = imap(), scram_client()
    first = session.receive_line(f"a AUTHENTICATE SCRAM-SHA-256 {b64(client.start())}".encode())
    client_final = b64(client.step(base64.b64decode(first.lines[0][2:]))).encode()
    assert session.may_block(client_final) is False
    assert session.receive_line(client_final).lines[0].startswith("+ ")
    assert session.receive_line(b"").lines[0].startswith("a OK [CAPABILITY ")


# --------------------------------------------------------------------------- real servers, --mechanisms


class SmtpProcess(ServerProcess):
    protocol = "smtp"
    log_prefix = "engine-smtp"


class ImapProcess(ServerProcess):
    protocol = "imap"
    log_prefix = "engine-imap"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("engine") / "users.db"
    result = saslkit_run("user", "add", "alice", "--db", str(path), "--iterations", "4096", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def smtp_scram_only(db: Path) -> Iterator[SmtpProcess]:
    server = SmtpProcess(db, "--allow-plaintext-auth", "--mechanisms", "SCRAM-SHA-256")
    yield server
    assert server.stop() == 0, server.log.read_text()


@pytest.fixture(scope="module")
def imap_scram_only(db: Path) -> Iterator[ImapProcess]:
    server = ImapProcess(db, "--allow-plaintext-auth", "--mechanisms", "scram-sha-256")
    yield server
    assert server.stop() == 0, server.log.read_text()


def converse(port: int, lines: list[str], *, imap: bool = False) -> list[str]:
    """Send each line after reading the server's answer; the answers, greeting first."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        answers.append(reader.readline().decode().rstrip("\r\n"))
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            answers.append(_read_reply(reader, imap))
    return answers


def _read_reply(reader: Any, imap: bool) -> str:
    """One SMTP reply (its 250- lines included), or the IMAP lines up to the tagged one."""
    out: list[str] = []
    while not out or (out[-1].startswith("* ") if imap else out[-1][3:4] == "-"):
        out.append(reader.readline().decode().rstrip("\r\n"))
    return "\n".join(out)


def test_smtp_allow_list_refuses_and_hides_plain(smtp_scram_only: SmtpProcess) -> None:
    greeting, ehlo, auth = converse(smtp_scram_only.port, [
        "EHLO client.example.com", f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + PASSWORD)}"])
    assert greeting.startswith("220")
    assert "250-AUTH SCRAM-SHA-256\n" in ehlo and "PLAIN" not in ehlo
    assert auth.startswith("534 5.7.9")
    assert run_client("smtp", smtp_scram_only, "PLAIN", PASSWORD).returncode != 0  # after STARTTLS too
    ok = run_client("smtp", smtp_scram_only, "SCRAM-SHA-256", PASSWORD)
    assert ok.returncode == 0, ok.stderr
    bad = run_client("smtp", smtp_scram_only, "SCRAM-SHA-256", "not-" + PASSWORD, user="a b")
    assert bad.returncode != 0
    smtp_scram_only.stop()
    log = smtp_scram_only.log.read_text()
    assert "auth ok peer=127.0.0.1 mechanism=SCRAM-SHA-256 identity=alice" in log
    assert 'auth failed peer=127.0.0.1 mechanism=SCRAM-SHA-256 identity="a b"' in log
    assert 'auth refused peer=127.0.0.1 mechanism=PLAIN reason="disabled by policy"' in log
    assert PASSWORD not in log and b64(chr(0) + "alice" + chr(0) + PASSWORD) not in log


def test_imap_allow_list_refuses_login_and_plain(imap_scram_only: ImapProcess) -> None:
    plain_ir = b64(chr(0) + "alice" + chr(0) + PASSWORD)
    greeting, caps, login, plain = converse(imap_scram_only.port, [
        "a CAPABILITY", f"b LOGIN alice {PASSWORD}", f"c AUTHENTICATE PLAIN {plain_ir}"], imap=True)
    assert "LOGINDISABLED" in greeting and "AUTH=PLAIN" not in greeting
    advertised = caps.splitlines()[0].split()
    assert "LOGINDISABLED" in advertised and [c for c in advertised if c.startswith("AUTH=")] == ["AUTH=SCRAM-SHA-256"]
    assert login.startswith("b NO ") and plain.startswith("c NO ")
    assert run_client("imap", imap_scram_only, "PLAIN", PASSWORD).returncode != 0
    ok = run_client("imap", imap_scram_only, "SCRAM-SHA-256", PASSWORD)
    assert ok.returncode == 0, ok.stderr
    imap_scram_only.stop()
    log = imap_scram_only.log.read_text()
    assert "auth ok peer=127.0.0.1 mechanism=SCRAM-SHA-256 identity=alice" in log
    assert "auth refused peer=127.0.0.1 mechanism=PLAIN" in log and PASSWORD not in log


def test_serve_rejects_an_unknown_mechanism(db: Path) -> None:
    result = saslkit_run("serve", "smtp", "--db", str(db), "--listen", "127.0.0.1:0", "--mechanisms", "PLAIN,NOSUCH")
    assert result.returncode == 2 and "NOSUCH" in result.stderr and "Traceback" not in result.stderr

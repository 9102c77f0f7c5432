"""LOGIN (draft-murchison-sasl-login-00): the mechanism, its registration, and real clients.

Real programs against real ``saslkit serve smtp``/``serve imap`` processes (started like
tests/test_smtp_interop.py and tests/test_imap_interop.py do): msmtp ``--auth=login``, swaks
``--auth LOGIN`` (235 / 535), and imaplib ``AUTHENTICATE LOGIN``.
"""

from __future__ import annotations

import imaplib
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_imap_interop as imap_interop
import test_smtp_interop as smtp_interop
from hypothesis import given, settings
from hypothesis import strategies as st

from saslkit import ClientCredentials, MemoryUserStore, ServerContext, make_user
from saslkit.credentials import MIN_ITERATIONS
from saslkit.errors import SaslError, UsageError
from saslkit.mechanism import Challenge, Failure, FailureReason, Success
from saslkit.mechanisms import plain as plain_module
from saslkit.mechanisms.login import PASSWORD_PROMPT, USERNAME_PROMPT, LoginClient, LoginServer
from saslkit.mechanisms.plain import MAX_FIELD, PlainServer
from saslkit.registry import default_registry

SECRET = b"login-test-secret-of-32-octets!!"
PASSWORD = smtp_interop.PASSWORD


@pytest.fixture(scope="module")
def users() -> MemoryUserStore:
    return MemoryUserStore([make_user("alice", "pencil", iterations=MIN_ITERATIONS, argon2_hash=False),
                            make_user("carol", "correct horse")])


def ctx(users: MemoryUserStore) -> ServerContext:
    return ServerContext(users, SECRET)


# --------------------------------------------------------------------------- the mechanism


def test_without_initial_response_asks_both(users: MemoryUserStore) -> None:
    server = LoginServer(ctx(users))
    assert server.step(None) == Challenge(USERNAME_PROMPT) == Challenge(b"Username:")
    assert server.step(b"alice") == Challenge(PASSWORD_PROMPT) == Challenge(b"Password:")
    result = server.step(b"pencil")
    assert isinstance(result, Success) and result.authcid == "alice" and result.authzid is None
    assert result.mechanism == "LOGIN" and server.done
    with pytest.raises(UsageError):
        server.step(b"again")


def test_username_as_initial_response_asks_only_the_password(users: MemoryUserStore) -> None:
    server = LoginServer(ctx(users))
    assert server.step(b"carol") == Challenge(PASSWORD_PROMPT)
    assert isinstance(server.step(b"correct horse"), Success)


def test_empty_initial_response_counts_as_none(users: MemoryUserStore) -> None:
    server = LoginServer(ctx(users))
    assert server.step(b"") == Challenge(USERNAME_PROMPT)


@pytest.mark.parametrize("username", ["alice", "mallory"])
def test_wrong_password_and_unknown_user_fail_alike(users: MemoryUserStore, username: str) -> None:
    server = LoginServer(ctx(users))
    server.step(username.encode())
    result = server.step(b"wrong")
    assert isinstance(result, Failure)
    assert (result.reason, result.message, result.authcid) == (
        FailureReason.AUTHENTICATION_FAILED, "authentication failed", username)
    plain = PlainServer(ctx(users)).step(f"\0{username}\0wrong".encode())
    assert isinstance(plain, Failure) and (plain.reason, plain.message) == (result.reason, result.message)


@pytest.mark.parametrize(("username", "password"), [
    (b"", b"pencil"), (b"alice", b""), (b"a" * (MAX_FIELD + 1), b"pencil"), (b"alice", b"p" * (MAX_FIELD + 1)),
    (b"\xff", b"pencil"), (b"alice", b"\xc3"),
])
def test_bad_fields_are_invalid_encoding(users: MemoryUserStore, username: bytes, password: bytes) -> None:
    server = LoginServer(ctx(users))
    server.step(None)
    result = server.step(username)
    if isinstance(result, Challenge):
        result = server.step(password)
    assert isinstance(result, Failure) and result.reason is FailureReason.INVALID_ENCODING and server.done


def test_saslprep_applies_like_plain(users: MemoryUserStore) -> None:
    server = LoginServer(ctx(users))
    server.step("a\u00adlice".encode())  # SOFT HYPHEN is mapped to nothing (RFC 4013 §2.1)
    assert isinstance(server.step(b"pencil"), Success)
    server = LoginServer(ctx(users))
    server.step(b"al\x00ice")  # a control character: preparation fails, like PLAIN
    result = server.step(b"pencil")
    assert isinstance(result, Failure) and result.reason is FailureReason.AUTHENTICATION_FAILED


def test_client_answers_whatever_the_prompts() -> None:
    client = LoginClient(ClientCredentials("alice", "pencil"))
    assert client.start() is None
    assert client.step(b"User Name\x00") == b"alice"  # aiosmtpd's and Exchange's wording
    assert client.step(b"") == b"pencil"
    with pytest.raises(SaslError):
        client.step(b"Password:")
    client.finish(None)
    with pytest.raises(SaslError):
        client.finish(b"extra")
    with pytest.raises(UsageError):
        LoginClient(ClientCredentials("alice", "pencil", "bob"))
    with pytest.raises(UsageError):
        LoginClient(ClientCredentials("alice", ""))


def test_client_and_server_agree(users: MemoryUserStore) -> None:
    client, server = LoginClient(ClientCredentials("alice", "pencil")), LoginServer(ctx(users))
    step = server.step(client.start())
    while isinstance(step, Challenge):
        step = server.step(client.step(step.data))
    assert isinstance(step, Success) and step.authcid == "alice"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=1100)), min_size=1, max_size=4))
def test_fuzz_only_saslkit_errors(responses: list[bytes | None]) -> None:
    server = LoginServer(ServerContext(MemoryUserStore(), SECRET))
    for response in responses:
        try:
            step = server.step(response)
        except UsageError:
            assert server.done
            return
        assert isinstance(step, Challenge | Failure)


# --------------------------------------------------------------------------- same work as PLAIN (counted)


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Each argon2 verification and PBKDF2 run of the shared password check (like tests/test_unknown_user.py)."""
    log: list[tuple[object, ...]] = []
    verify, salted = plain_module.verify_password_hash, plain_module.salted_password

    def counted_verify(password_hash: str, password: str) -> bool:
        log.append(("argon2", password_hash.rsplit("$", 2)[0]))
        return verify(password_hash, password)

    def counted_salted(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
        log.append(("pbkdf2", hash_name, iterations, len(salt)))
        return salted(hash_name, password, salt, iterations)

    monkeypatch.setattr(plain_module, "verify_password_hash", counted_verify)
    monkeypatch.setattr(plain_module, "salted_password", counted_salted)
    return log


@pytest.mark.parametrize("name", ["alice", "carol", "mallory", "eve"])
def test_login_does_plains_work_for_every_name(work: list[tuple[object, ...]], users: MemoryUserStore,
                                               name: str) -> None:
    PlainServer(ctx(users)).step(f"\0{name}\0wrong".encode())
    plain_work, work[:] = list(work), []
    server = LoginServer(ctx(users))
    server.step(name.encode())
    assert isinstance(server.step(b"wrong"), Failure)
    assert work == plain_work and len(work) == 1


def test_unknown_users_cost_what_a_real_one_costs(work: list[tuple[object, ...]]) -> None:
    store = MemoryUserStore([make_user("kim", "pw", iterations=4096, argon2_hash=False, hashes=("SHA-256",))],
                            default_iterations=4096)
    costs = []
    for name in ("kim", "ghost1", "ghost2"):
        work[:] = []
        server = LoginServer(ctx(store))
        server.step(name.encode())
        server.step(b"wrong")
        costs.append(list(work))
    kim = store.get_user("kim")
    assert kim is not None
    assert costs[0] == costs[1] == costs[2] == [("pbkdf2", "SHA-256", 4096, len(kim.scram["SHA-256"].salt))]


# --------------------------------------------------------------------------- registration and offers


def test_registered_plaintext_below_plain() -> None:
    registry = default_registry()
    info = registry.info("LOGIN")
    assert info.plaintext and info.hashes_password and not info.token_based
    names = registry.names()
    assert names.index("LOGIN") == names.index("PLAIN") + 1
    assert "LOGIN" not in registry.offered(tls=False) and "LOGIN" in registry.offered(tls=True)
    assert registry.choose(["LOGIN", "PLAIN"]) == "PLAIN"
    assert registry.choose(["LOGIN", "SCRAM-SHA-256"]) == "SCRAM-SHA-256"
    assert registry.choose(["LOGIN"]) == "LOGIN"
    with pytest.raises(SaslError):
        registry.choose(["LOGIN"], tls=False)


# --------------------------------------------------------------------------- real clients: SMTP


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[smtp_interop.Server]:
    directory = tmp_path_factory.mktemp("login-smtp")
    srv = smtp_interop.start_server(directory, smtp_interop.setup_db(directory),
                                    "--deliver-to", str(directory / "Maildir"))
    yield srv
    assert srv.stop() == 0, srv.log


def swaks_login(server: smtp_interop.Server, password: str) -> subprocess.CompletedProcess[str]:
    exe = smtp_interop.require("swaks", "swaks libnet-ssleay-perl")
    return subprocess.run(
        [exe, "--server", server.host, "--port", str(server.port), "--tls", "--auth", "LOGIN",
         "--auth-user", "alice", "--auth-password", password, "--to", "x@example.com",
         "--from", "alice@example.com"],
        capture_output=True, text=True, timeout=smtp_interop.TIMEOUT, stdin=subprocess.DEVNULL,
    )


@pytest.mark.interop
def test_swaks_auth_login(smtp_server: smtp_interop.Server) -> None:
    proc = swaks_login(smtp_server, PASSWORD)
    transcript = proc.stdout + proc.stderr
    assert proc.returncode == 0, transcript
    assert "~> AUTH LOGIN" in transcript and "<~  334 VXNlcm5hbWU6" in transcript
    assert "<~  334 UGFzc3dvcmQ6" in transcript and "<~  235 2.7.0" in transcript
    assert "250 2.0.0 OK queued as" in transcript


@pytest.mark.interop
def test_swaks_auth_login_wrong_password(smtp_server: smtp_interop.Server) -> None:
    proc = swaks_login(smtp_server, "wrong-" + PASSWORD)
    transcript = proc.stdout + proc.stderr
    assert "535 5.7.8" in transcript
    assert proc.returncode == 28, transcript  # swaks(1) EXIT CODES: 28 = error in AUTH transaction


def msmtp(server: smtp_interop.Server, tmp_path: Path, password: str) -> subprocess.CompletedProcess[str]:
    exe = smtp_interop.require("msmtp", "msmtp")
    (tmp_path / "password").write_text(password)
    return subprocess.run(
        [exe, "--debug", f"--host={server.host}", f"--port={server.port}", "--tls=on", "--tls-starttls=on",
         f"--tls-trust-file={server.cert}", "--auth=login", "--user=alice",
         f"--passwordeval=cat {tmp_path / 'password'}", "--from=alice@example.com", "x@example.com"],
        input="Subject: msmtp LOGIN\n\nhello\n", capture_output=True, text=True, timeout=smtp_interop.TIMEOUT,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.interop
def test_msmtp_auth_login(smtp_server: smtp_interop.Server, tmp_path: Path) -> None:
    proc = msmtp(smtp_server, tmp_path, PASSWORD)
    transcript = proc.stdout + proc.stderr
    assert proc.returncode == 0, transcript
    assert "AUTH LOGIN" in transcript and "235 2.7.0" in transcript


@pytest.mark.interop
def test_msmtp_auth_login_wrong_password(smtp_server: smtp_interop.Server, tmp_path: Path) -> None:
    proc = msmtp(smtp_server, tmp_path, "wrong-" + PASSWORD)
    transcript = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "535 5.7.8" in transcript, transcript


@pytest.mark.interop
def test_smtplib_auth_login(smtp_server: smtp_interop.Server) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=smtp_interop.TIMEOUT) as smtp:
        smtp.starttls(context=smtp_interop.tls_context(smtp_server))
        smtp.ehlo()
        smtp.user, smtp.password = "alice", PASSWORD
        assert smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)[0] == 235


# --------------------------------------------------------------------------- real clients: IMAP


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[imap_interop.Server]:
    directory = tmp_path_factory.mktemp("login-imap")
    srv = imap_interop.start_server(directory, imap_interop.setup_db(directory))
    yield srv
    assert srv.stop() == 0, srv.log


def login_answers(password: str) -> tuple[list[bytes], object]:
    seen: list[bytes] = []

    def answer(challenge: bytes) -> bytes:
        seen.append(challenge)
        return b"alice" if b"user" in challenge.lower() else password.encode()

    return seen, answer


@pytest.mark.interop
def test_imaplib_authenticate_login(imap_server: imap_interop.Server) -> None:
    with imaplib.IMAP4(imap_server.host, imap_server.port, timeout=imap_interop.TIMEOUT) as imap:
        assert "AUTH=LOGIN" not in imap.capabilities and "LOGINDISABLED" in imap.capabilities
        imap.starttls(ssl_context=imap_interop.tls_context(imap_server))
        assert {"AUTH=PLAIN", "AUTH=LOGIN"} <= set(imap.capabilities) and "LOGINDISABLED" not in imap.capabilities
        seen, answer = login_answers(imap_interop.PASSWORD)
        typ, _ = imap.authenticate("LOGIN", answer)  # type: ignore[arg-type]
        assert typ == "OK" and imap.state == "AUTH" and seen == [b"Username:", b"Password:"]
    imap_server.wait_for_log(r"mechanism=LOGIN identity=alice")


@pytest.mark.interop
def test_imaplib_authenticate_login_wrong_password(imap_server: imap_interop.Server) -> None:
    with imaplib.IMAP4(imap_server.host, imap_server.port, timeout=imap_interop.TIMEOUT) as imap:
        imap.starttls(ssl_context=imap_interop.tls_context(imap_server))
        _, answer = login_answers("wrong")
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            imap.authenticate("LOGIN", answer)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- vectors


def test_login_vectors_pass() -> None:
    from saslkit.testing.vectors import check_file

    results = check_file(Path(__file__).parent.parent / "vectors" / "login.json")
    assert len(results) >= 10 and all(r.ok for r in results), [r for r in results if not r.ok]


# --------------------------------------------------------------------------- saslkit's own client


@pytest.mark.interop
@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_saslkit_client_login(protocol: str, smtp_server: smtp_interop.Server,
                              imap_server: imap_interop.Server) -> None:
    from servers import run_client

    srv = smtp_server if protocol == "smtp" else imap_server
    address, trust = f"{srv.host}:{srv.port}", ["--cafile", str(srv.cert)]
    good = run_client(protocol, address, "LOGIN", PASSWORD, trust=trust)
    assert good.returncode == 0, good.stderr
    assert "with LOGIN" in good.stderr and PASSWORD not in good.stderr
    bad = run_client(protocol, address, "LOGIN", "wrong-" + PASSWORD, trust=trust)
    assert bad.returncode == 1, bad.stderr
    assert "wrong-" + PASSWORD not in bad.stderr

"""``saslkit client smtp`` against a real ``saslkit serve smtp`` process (no mocks).

The reference server runs as a subprocess on a free loopback port (its
self-signed certificate lands beside the database as ``saslkit-tls.crt``,
which the client trusts with ``--cafile``); every client is a real
``saslkit client smtp`` subprocess, so exit codes, stdout and the ``-v``
transcript on stderr are what a user sees.  The last tests drive the client
library against a scripted loopback peer for what a correct server never
does (a 235 without the SCRAM proof, undecodable challenges, injected
STARTTLS data).
"""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import servers
from servers import PASSWORD_MECHS, TOKEN_MECHS, ServerProcess, run_client, saslkit_run, token_id

from saslkit.registry import default_registry
from saslkit.smtp.client import SmtpAuthError, SmtpClient, SmtpConnectionError

PASSWORD = "pencil"


class SaslkitServer(ServerProcess):
    """``saslkit serve smtp`` as a subprocess on a free loopback port; stderr goes to a log file."""

    protocol = "smtp"
    log_prefix = "server"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("smtp-client") / "users.db"
    result = saslkit_run("user", "add", "alice", "--db", str(path), "--iterations", "4096", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return path


#: Every token minted in this module, to check that no log ever shows one.
MINTED: list[str] = []


def assert_clean_exit(server: SaslkitServer) -> None:
    servers.assert_clean_exit(server, [PASSWORD, *MINTED])


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[SaslkitServer]:
    srv = SaslkitServer(db)
    try:
        yield srv
    finally:
        assert_clean_exit(srv)


def client(
    server: SaslkitServer | str, mech: str, secret: str = PASSWORD, *extra: str, user: str = "alice",
    trust: Sequence[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``saslkit client smtp`` with ``-v``; trusts the server's own certificate unless ``trust`` says otherwise."""
    return run_client("smtp", server, mech, secret, *extra, user=user, trust=trust)


def run_many(calls: Sequence[tuple[Any, ...]]) -> list[subprocess.CompletedProcess[str]]:
    """Run several clients at once (each one is a process start; this keeps the module fast)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: client(*call), calls))  # each call: (server, mech, secret, *extra)


# ---------------------------------------------------------------- password mechanisms


def test_every_password_mechanism_of_the_registry_is_covered() -> None:
    registry = default_registry()
    # LOGIN (no initial response, two prompts) runs in tests/test_login.py.
    assert sorted([*PASSWORD_MECHS, "LOGIN"]) == sorted(n for n in registry.names() if not registry.info(n).token_based)
    assert set(TOKEN_MECHS) <= set(registry.names())


def test_password_mechanisms_after_starttls(server: SaslkitServer) -> None:
    results = run_many([(server, mech) for mech in PASSWORD_MECHS])
    for mech, r in zip(PASSWORD_MECHS, results, strict=True):
        assert r.returncode == 0, (mech, r.stderr)
        assert r.stdout == ""
        transcript = r.stderr
        assert "C: STARTTLS" in transcript and "S: 220 2.0.0" in transcript
        assert re.search(rf"^S: 250-AUTH .*\b{re.escape(mech)}\b", transcript, re.M), transcript
        assert f"C: AUTH {mech} " in transcript
        assert "S: 235 2.7.0" in transcript and "C: QUIT" in transcript
        assert PASSWORD not in transcript
        if mech.endswith("-PLUS"):
            assert "(channel binding tls-exporter)" in transcript  # RFC 9266: the default on TLS 1.3
            assert "p=tls-exporter" in transcript and "* channel binding: tls-exporter (TLSv1.3)" in transcript
        if mech.startswith("SCRAM-"):
            assert "p=<masked>" in transcript and "S: 334 v=<masked>" in transcript
        else:
            assert "password=<masked>" in transcript


def test_wrong_password_exits_1(server: SaslkitServer) -> None:
    mechs = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512-PLUS"]
    for mech, r in zip(mechs, run_many([(server, m, "not-the-password") for m in mechs]), strict=True):
        assert r.returncode == 1, (mech, r.stderr)
        assert "535 5.7.8" in r.stderr
        assert "not-the-password" not in r.stderr


def test_unknown_user_exits_1(server: SaslkitServer) -> None:
    r = client(server, "SCRAM-SHA-256", user="mallory")
    assert r.returncode == 1 and "535 5.7.8" in r.stderr


# ---------------------------------------------------------------- REMEMBERME and token mechanisms


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_remember_then_reauthenticate_then_revoke(
    server: SaslkitServer, db: Path, tmp_path: Path, token_type: str
) -> None:
    r = client(server, "SCRAM-SHA-256-PLUS", PASSWORD, "--remember", token_type)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n"  # the token alone on the (last) line
    MINTED.append(token)
    assert token.startswith("sk1.") if token_type == "RANDOM" else token.count(".") == 2
    assert f"C: REMEMBERME {token_type}" in r.stderr and "S: 235 2.7.0 <token masked>" in r.stderr
    assert token not in r.stderr

    # New connections log in with the token: every token mechanism for RANDOM, the brief set for JWT.
    mechs = TOKEN_MECHS if token_type == "RANDOM" else ["REMEMBERME", "HT2-SHA-256-NONE", "HT2-SHA-256-ENDP"]
    results = run_many([(server, mech, token) for mech in mechs])
    for mech, res in zip(mechs, results, strict=True):
        assert res.returncode == 0, (mech, res.stderr)
        assert token not in res.stderr
        if mech.endswith("-ENDP"):
            assert "(channel binding tls-server-end-point)" in res.stderr
        if mech.endswith("-EXPR"):  # HT-*-EXPR over the wire (tls-exporter, RFC 9266)
            assert "(channel binding tls-exporter)" in res.stderr
        if mech.startswith("HT"):
            assert "S: 334 " in res.stderr  # the responder message, verified by the client

    # The token from a file works too; a token login cannot mint another token (534 5.7.9 -> exit 1).
    secret_file = tmp_path / "token"
    secret_file.write_text(token + "\n")
    r = saslkit_run("client", "smtp", server.address, "--mech", "REMEMBERME", "--user", "alice", "--cafile",
                    str(server.certificate), "--secret-file", str(secret_file), "--remember", "RANDOM")
    assert r.returncode == 1, r.stderr
    assert "REMEMBERME refused: 534 5.7.9" in r.stderr and r.stdout == ""

    # Revoked: every token login now fails with exit 1.
    revoke = saslkit_run("token", "revoke", token_id(token), "--db", str(db))
    assert revoke.returncode == 0, revoke.stderr
    revoked_mechs = ["REMEMBERME", "HT2-SHA-256-NONE", "HT2-SHA-256-ENDP"]
    for mech, res in zip(revoked_mechs, run_many([(server, m, token) for m in revoked_mechs]), strict=True):
        assert res.returncode == 1, (mech, res.stderr)
        assert "535 5.7.8" in res.stderr


def test_remember_needs_an_offered_type(server: SaslkitServer) -> None:
    r = client(server, "PLAIN", PASSWORD, "--remember", "OPAQUE")
    assert r.returncode == 1 and "does not offer REMEMBERME OPAQUE" in r.stderr
    assert "C: AUTH" not in r.stderr  # checked before the password is sent


# ---------------------------------------------------------------- TLS modes and trust


def test_implicit_tls(db: Path, server: SaslkitServer) -> None:
    tls_server = SaslkitServer(db, "--implicit-tls")
    try:
        calls = [(tls_server, "SCRAM-SHA-256-PLUS", PASSWORD, "--implicit-tls"),
                 (tls_server, "PLAIN", PASSWORD, "--implicit-tls"),
                 # STARTTLS client, TLS server: both wait for the other (the client gives up after --timeout)
                 (tls_server, "SCRAM-SHA-256", PASSWORD, "--timeout", "2"),
                 (server, "SCRAM-SHA-256", PASSWORD, "--implicit-tls")]  # TLS client, plain greeting
        ok_plus, ok_plain, starttls, implicit = run_many(calls)
        for r in (ok_plus, ok_plain):
            assert r.returncode == 0, r.stderr
            assert "C: STARTTLS" not in r.stderr
            assert r.stderr.index("* TLS established") < r.stderr.index("S: 220 ")
        assert "(channel binding tls-exporter)" in ok_plus.stderr
        assert starttls.returncode == 3 and "timed out" in starttls.stderr
        assert implicit.returncode == 3 and "TLS handshake failed" in implicit.stderr
    finally:
        assert_clean_exit(tls_server)


def test_no_tls(server: SaslkitServer) -> None:
    calls = [(server, "PLAIN", PASSWORD, "--no-tls"), (server, "SCRAM-SHA-256", PASSWORD, "--no-tls"),
             (server, "SCRAM-SHA-256-PLUS", PASSWORD, "--no-tls"),
             (server, "SCRAM-SHA-1", PASSWORD, "--no-tls", "--remember", "RANDOM")]
    plain, scram, plus, remember = run_many(calls)
    assert plain.returncode == 1 and "the server does not offer PLAIN here" in plain.stderr
    assert "C: AUTH" not in plain.stderr and PASSWORD not in plain.stderr
    assert scram.returncode == 0, scram.stderr
    assert "TLS established" not in scram.stderr and "C: STARTTLS" not in scram.stderr
    assert plus.returncode == 1 and "does not offer SCRAM-SHA-256-PLUS" in plus.stderr
    assert remember.returncode == 1 and "does not offer REMEMBERME" in remember.stderr


def test_certificate_verification(server: SaslkitServer) -> None:
    cafile = ["--cafile", str(server.certificate)]
    calls = [
        (f"localhost:{server.port}", "PLAIN", PASSWORD, *cafile),  # the certificate names localhost too
        (server.address, "PLAIN", PASSWORD, "--insecure"),
        (server.address, "PLAIN", PASSWORD),  # system trust only: the self-signed certificate fails
        (server.address, "PLAIN", PASSWORD, "--insecure", *cafile),
    ]
    by_name, insecure, untrusted, both = run_many(calls)
    assert by_name.returncode == 0, by_name.stderr
    assert insecure.returncode == 0, insecure.stderr
    assert untrusted.returncode == 3 and "certificate verification failed" in untrusted.stderr
    assert "C: AUTH" not in untrusted.stderr
    assert both.returncode == 2  # --cafile and --insecure exclude each other


# ---------------------------------------------------------------- connection failures and usage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_port_exits_3() -> None:
    r = client(f"127.0.0.1:{free_port()}", "PLAIN", trust=["--insecure"])
    assert r.returncode == 3 and "cannot connect" in r.stderr


def test_silent_server_times_out_with_exit_3() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepted by the kernel, never greeted
        port = listener.getsockname()[1]
        start = time.monotonic()
        r = client(f"127.0.0.1:{port}", "PLAIN", PASSWORD, "--timeout", "0.5", trust=["--insecure"])
    assert r.returncode == 3 and "timed out" in r.stderr
    assert time.monotonic() - start < 15


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [
        (["127.0.0.1:25", "--mech", "NOPE", "--user", "alice"], "x\n"),
        (["127.0.0.1:25", "--mech", "PLAIN", "--user", "alice"], ""),
        (["no-port", "--mech", "PLAIN", "--user", "alice"], "x\n"),
        (["127.0.0.1:0", "--mech", "PLAIN", "--user", "alice"], "x\n"),
        (["127.0.0.1:25", "--mech", "PLAIN", "--user", "alice", "--remember", "TWO WORDS"], "x\n"),
        (["127.0.0.1:25", "--mech", "PLAIN", "--user", "alice", "--no-tls", "--implicit-tls"], "x\n"),
        (["127.0.0.1:25", "--mech", "PLAIN"], "x\n"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], stdin: str) -> None:
    r = saslkit_run("client", "smtp", *argv, stdin=stdin)
    assert r.returncode == 2, r.stderr


# ---------------------------------------------------------------- a scripted peer (what a good server never does)


class ScriptedPeer(threading.Thread):
    """Accept one connection on loopback and play ``script``: (expected line prefix or None, bytes to send)."""

    def __init__(self, script: list[tuple[str | None, bytes]]) -> None:
        super().__init__(daemon=True)
        self.script = script
        self.received: list[str] = []
        self.error: str | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.start()

    def run(self) -> None:
        self._listener.settimeout(20)
        try:
            conn, _ = self._listener.accept()
        except OSError as exc:
            self.error = f"no connection: {exc}"
            return
        with conn, conn.makefile("rb") as reader:
            conn.settimeout(20)
            try:
                for expected, data in self.script:
                    if expected is not None:
                        line = reader.readline().decode().rstrip("\r\n")
                        self.received.append(line)
                        if not line.startswith(expected):
                            self.error = f"expected {expected!r}, got {line!r}"
                            return
                    conn.sendall(data)
                while line := reader.readline().decode().rstrip("\r\n"):  # whatever the client says last
                    self.received.append(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up on what it was sent: what some tests want
            except OSError as exc:
                self.error = str(exc)
        self._listener.close()

    def finish(self) -> list[str]:
        self.join(25)
        assert self.error is None, self.error
        return self.received


EHLO_SCRAM = b"250-peer\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH SCRAM-SHA-256 PLAIN\r\n"


def test_235_without_the_scram_proof_is_a_failure() -> None:
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", EHLO_SCRAM),
                         ("AUTH SCRAM-SHA-256 ", b"235 2.7.0 trust me\r\n"), ("QUIT", b"221 bye\r\n")])
    r = client(f"127.0.0.1:{peer.port}", "SCRAM-SHA-256", PASSWORD, "--no-tls", trust=[])
    peer.finish()
    assert r.returncode == 1 and "did not prove itself" in r.stderr


def test_undecodable_challenge_is_cancelled_with_star() -> None:
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", EHLO_SCRAM),
                         ("AUTH SCRAM-SHA-256 ", b"334 =AAA\r\n"), ("*", b"501 5.0.0 cancelled\r\n")])
    with SmtpClient("127.0.0.1", peer.port, timeout=10) as smtp:
        smtp.connect("none")
        with pytest.raises(SmtpAuthError, match="cancelled"):
            smtp.authenticate("SCRAM-SHA-256", "alice", PASSWORD)
    assert peer.finish()[-1] == "*"


def test_long_initial_response_follows_the_empty_challenge() -> None:
    user = "u" * 400  # base64 of the PLAIN message pushes "AUTH PLAIN <ir>" past 512 octets
    message = b"\x00" + user.encode() + b"\x00" + PASSWORD.encode()
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", EHLO_SCRAM), ("AUTH PLAIN", b"334 \r\n"),
                         ("", b"235 2.7.0 ok\r\n"), ("QUIT", b"221 bye\r\n")])
    lines: list[str] = []
    with SmtpClient("127.0.0.1", peer.port, timeout=10, log=lines.append) as smtp:
        smtp.connect("none")
        smtp.authenticate("PLAIN", user, PASSWORD, allow_plaintext=True)
        smtp.quit()
    received = peer.finish()
    assert received[1] == "AUTH PLAIN" and base64.b64decode(received[2]) == message
    assert not any(PASSWORD in line for line in lines)


def test_plaintext_mechanism_without_tls_needs_consent() -> None:
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", EHLO_SCRAM)])
    with SmtpClient("127.0.0.1", peer.port, timeout=10) as smtp:
        smtp.connect("none")
        with pytest.raises(SmtpAuthError, match="without TLS"):
            smtp.authenticate("PLAIN", "alice", PASSWORD)
    peer.finish()


def test_starttls_not_offered_exits_3() -> None:
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", EHLO_SCRAM)])
    r = client(f"127.0.0.1:{peer.port}", "SCRAM-SHA-256", trust=["--insecure"])
    peer.finish()
    assert r.returncode == 3 and "does not offer STARTTLS" in r.stderr


def test_data_injected_after_starttls_is_refused() -> None:
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", b"250-peer\r\n250 STARTTLS\r\n"),
                         ("STARTTLS", b"220 2.0.0 go ahead\r\n250 injected\r\n")])
    with SmtpClient("127.0.0.1", peer.port, timeout=10) as smtp, pytest.raises(SmtpConnectionError,
                                                                                 match="injection"):
        smtp.connect("starttls")
    peer.finish()


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"250-peer\r\n251 mixed codes\r\n", "malformed"),
        (b"250 " + b"x" * 13000 + b"\r\n", "longer than 12288"),
        (b"hello\r\n", "malformed"),
    ],
)
def test_bad_replies_are_connection_errors(reply: bytes, match: str) -> None:
    peer = ScriptedPeer([(None, b"220 peer ESMTP\r\n"), ("EHLO ", reply)])
    with SmtpClient("127.0.0.1", peer.port, timeout=10) as smtp, pytest.raises(SmtpConnectionError, match=match):
        smtp.connect("none")
    peer.finish()


def test_multiline_replies_are_joined() -> None:
    peer = ScriptedPeer([(None, b"220-peer ESMTP\r\n220-second line\r\n220 third\r\n"),
                         ("EHLO ", b"250-peer\r\n250-SIZE 100\r\n250-AUTH PLAIN\r\n250 REMEMBERME RANDOM\r\n")])
    with SmtpClient("127.0.0.1", peer.port, timeout=10) as smtp:
        extensions = smtp.connect("none")
        assert smtp.greeting is not None and smtp.greeting.lines == ("peer ESMTP", "second line", "third")
    peer.finish()
    assert extensions == {"SIZE": "100", "AUTH": "PLAIN", "REMEMBERME": "RANDOM"}


def test_stoken_over_lmtp(db: Path) -> None:
    """AUTH STOKEN needs LMTP (draft-slusarz §7.3): the client speaks LHLO with --lmtp."""
    srv = SaslkitServer(db, "--lmtp")
    try:
        gen = saslkit_run("stoken", "gen", "TEMP", "friend@example.net", "alice@localhost", "--db", str(db))
        assert gen.returncode == 0, gen.stderr
        token = gen.stdout.splitlines()[-1]
        MINTED.append(token)
        ok = client(srv, "STOKEN", token, "--lmtp", user="alice@localhost")
        assert ok.returncode == 0, ok.stderr
        assert "LHLO" in ok.stderr
        wrong = client(srv, "STOKEN", token, "--lmtp", user="bob@localhost")
        assert wrong.returncode == 1, wrong.stderr
        no_lmtp = client(srv, "STOKEN", token, user="alice@localhost")
        assert no_lmtp.returncode == 3  # an LMTP server refuses EHLO (RFC 2033 §4.1)
    finally:
        assert srv.stop() == 0

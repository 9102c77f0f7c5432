"""``saslkit client imap`` against a real ``saslkit serve imap`` process (no mocks).

The reference server runs as a subprocess on a free loopback port (its
self-signed certificate lands beside the database as ``saslkit-tls.crt``,
which the client trusts with ``--cafile``); every client is a real
``saslkit client imap`` subprocess, so exit codes, stdout and the ``-v``
transcript on stderr are what a user sees.  The last tests drive the client
library against a scripted loopback peer for what a correct server never
does (an OK without the SCRAM proof, undecodable challenges, injected
STARTTLS data, no SASL-IR, a server that keeps state across UNAUTHENTICATE).
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

from saslkit.imap.client import ImapAuthError, ImapClient, ImapConnectionError
from saslkit.registry import MechanismInfo, Registry, default_registry

PASSWORD = "pencil"
BOB_PASSWORD = "bobs-own-secret"


class SaslkitImapServer(ServerProcess):
    """``saslkit serve imap`` as a subprocess on a free loopback port; stderr goes to a log file."""

    protocol = "imap"
    log_prefix = "imap"


#: Every token minted in this module, to check that no log ever shows one.
MINTED: list[str] = []


def assert_clean_exit(server: SaslkitImapServer) -> None:
    servers.assert_clean_exit(server, [PASSWORD, BOB_PASSWORD, *MINTED])


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("imap-client") / "users.db"
    for user, password in (("alice", PASSWORD), ("bob", BOB_PASSWORD)):
        added = saslkit_run("user", "add", user, "--db", str(path), "--iterations", "4096", stdin=password + "\n")
        assert added.returncode == 0, added.stderr
    return path


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[SaslkitImapServer]:
    srv = SaslkitImapServer(db)
    try:
        yield srv
    finally:
        assert_clean_exit(srv)


def client(
    server: SaslkitImapServer | str, mech: str, secret: str = PASSWORD, *extra: str, user: str = "alice",
    trust: Sequence[str] | None = None, stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``saslkit client imap`` with ``-v``; trusts the server's own certificate unless ``trust`` says otherwise."""
    return run_client("imap", server, mech, secret, *extra, user=user, trust=trust, stdin=stdin)


def run_many(calls: list[tuple[Any, ...]]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent clients side by side (the server serves connections concurrently)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: client(*call), calls))  # each call: (server, mech, secret, *extra)


def client_lines(transcript: str) -> list[str]:
    return [line[3:] for line in transcript.splitlines() if line.startswith("C: ")]


# ---------------------------------------------------------------- password mechanisms


def test_every_password_mechanism_of_the_registry_is_covered() -> None:
    registry = default_registry()
    # LOGIN (no initial response, two prompts) runs in tests/test_login.py.
    assert sorted([*PASSWORD_MECHS, "LOGIN"]) == sorted(n for n in registry.names() if not registry.info(n).token_based)
    assert set(TOKEN_MECHS) <= set(registry.names())


def test_password_mechanisms_after_starttls(server: SaslkitImapServer) -> None:
    results = run_many([(server, mech) for mech in PASSWORD_MECHS])
    for mech, r in zip(PASSWORD_MECHS, results, strict=True):
        assert r.returncode == 0, (mech, r.stderr)
        assert r.stdout == ""
        transcript = r.stderr
        # greeting, STARTTLS, CAPABILITY again over TLS, AUTHENTICATE with SASL-IR, LOGOUT
        assert re.search(r"^S: \* OK \[CAPABILITY .*\bSTARTTLS\b.*\bLOGINDISABLED\b", transcript, re.M)
        assert "C: a001 STARTTLS" in transcript and "S: a001 OK " in transcript
        assert transcript.index("* TLS established") < transcript.index("C: a002 CAPABILITY")
        assert re.search(rf"^S: \* CAPABILITY .*\bAUTH={re.escape(mech)}( |$)", transcript, re.M), transcript
        assert re.search(rf"^C: a003 AUTHENTICATE {re.escape(mech)} \S", transcript, re.M), transcript  # SASL-IR
        assert re.search(r"^S: a003 OK \[CAPABILITY [^\]]*\] Authenticated$", transcript, re.M), transcript
        assert "C: a004 LOGOUT" in transcript and "S: * BYE" in transcript
        assert PASSWORD not in transcript
        assert f"authenticated to {server.address} as alice with {mech}" in transcript
        if mech.endswith("-PLUS"):
            assert "(channel binding tls-exporter)" in transcript  # RFC 9266: the default on TLS 1.3
            assert "p=tls-exporter" in transcript and "* channel binding: tls-exporter (TLSv1.3)" in transcript
        if mech.startswith("SCRAM-"):
            assert "p=<masked>" in transcript and "S: + v=<masked>" in transcript
            assert "C: (empty)" in transcript  # the empty answer to the server's v= (no additional data in IMAP)
        else:
            assert "password=<masked>" in transcript


def test_wrong_password_exits_1(server: SaslkitImapServer) -> None:
    mechs = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512-PLUS"]
    for mech, r in zip(mechs, run_many([(server, m, "not-the-password") for m in mechs]), strict=True):
        assert r.returncode == 1, (mech, r.stderr)
        assert "authentication failed: NO [AUTHENTICATIONFAILED]" in r.stderr
        assert "not-the-password" not in r.stderr
        assert "C: a004 LOGOUT" in r.stderr  # the client leaves politely


def test_unknown_user_exits_1(server: SaslkitImapServer) -> None:
    r = client(server, "SCRAM-SHA-256", user="mallory")
    assert r.returncode == 1 and "NO [AUTHENTICATIONFAILED]" in r.stderr


# ---------------------------------------------------------------- REMEMBERME and token mechanisms


@pytest.mark.parametrize("token_type", ["RANDOM", "JWT"])
def test_remember_then_reauthenticate_then_revoke(
    server: SaslkitImapServer, db: Path, tmp_path: Path, token_type: str
) -> None:
    r = client(server, "SCRAM-SHA-256-PLUS", PASSWORD, "--remember", token_type)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n"  # the token alone on the (last) line
    MINTED.append(token)
    assert token.startswith("sk1.") if token_type == "RANDOM" else token.count(".") == 2
    assert f"C: a004 REMEMBERME {token_type}" in r.stderr
    assert "S: a004 OK [REMEMBERME <token masked>] " in r.stderr
    assert token not in r.stderr and base64.b64encode(token.encode()).decode() not in r.stderr

    # New connections log in with the token: every token mechanism for RANDOM, the brief set for JWT.
    mechs = TOKEN_MECHS if token_type == "RANDOM" else ["REMEMBERME", "HT2-SHA-256-NONE", "HT2-SHA-256-ENDP"]
    results = run_many([(server, mech, token) for mech in mechs])
    for mech, res in zip(mechs, results, strict=True):
        assert res.returncode == 0, (mech, res.stderr)
        assert token not in res.stderr
        assert re.search(rf"^C: a003 AUTHENTICATE {mech} <\d+ octets>$", res.stderr, re.M), res.stderr
        if mech.endswith("-ENDP"):
            assert "(channel binding tls-server-end-point)" in res.stderr
        if mech.endswith("-EXPR"):  # HT-*-EXPR over the wire (tls-exporter, RFC 9266)
            assert "(channel binding tls-exporter)" in res.stderr
        if mech.startswith("HT"):
            assert re.search(r"^S: \+ <\d+ octets>$", res.stderr, re.M)  # the responder message, verified

    # The token from a file works too; a token login cannot mint another token (NO [CANNOT] -> exit 1).
    secret_file = tmp_path / "token"
    secret_file.write_text(token + "\n")
    r = saslkit_run("client", "imap", server.address, "--mech", "REMEMBERME", "--user", "alice", "--cafile",
                    str(server.certificate), "--secret-file", str(secret_file), "--remember", "RANDOM")
    assert r.returncode == 1, r.stderr
    assert "REMEMBERME refused: NO [CANNOT]" in r.stderr and r.stdout == ""

    # Revoked: every token login now fails with exit 1.
    revoke = saslkit_run("token", "revoke", token_id(token), "--db", str(db))
    assert revoke.returncode == 0, revoke.stderr
    revoked_mechs = ["REMEMBERME", "HT2-SHA-256-NONE", "HT2-SHA-256-ENDP"]
    for mech, res in zip(revoked_mechs, run_many([(server, m, token) for m in revoked_mechs]), strict=True):
        assert res.returncode == 1, (mech, res.stderr)
        assert "NO [AUTHENTICATIONFAILED]" in res.stderr


def test_remember_needs_an_offered_type(server: SaslkitImapServer) -> None:
    r = client(server, "PLAIN", PASSWORD, "--remember", "OPAQUE")
    assert r.returncode == 1 and "does not offer REMEMBERME OPAQUE" in r.stderr
    assert "AUTHENTICATE" not in "\n".join(client_lines(r.stderr))  # checked before the password is sent


# ---------------------------------------------------------------- UNAUTHENTICATE + AUTHENTICATE as another user


SUMMARY = [
    "before UNAUTHENTICATE: authenticated as alice; ENABLE IMAP4rev2 -> enabled IMAP4REV2; "
    "SELECT INBOX -> OK [READ-WRITE] SELECT completed",
    "UNAUTHENTICATE + AUTHENTICATE {mech} (pipelined): authenticated as bob",
    "after re-authentication: CLOSE -> BAD No mailbox selected: the selected mailbox was reset",
    "after re-authentication: ENABLE IMAP4rev2 -> enabled IMAP4REV2: IMAP4REV2 enabled again: "
    "the ENABLE state was reset",
    "reset shown: selected mailbox and ENABLE state cleared by UNAUTHENTICATE",
]


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN", "SCRAM-SHA-256-PLUS"])
def test_reauth_as_bob_shows_the_reset(server: SaslkitImapServer, mech: str) -> None:
    r = client(server, mech, PASSWORD, "--reauth-as", "bob", stdin=f"{PASSWORD}\n{BOB_PASSWORD}\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [line.format(mech=mech) for line in SUMMARY]
    transcript = r.stderr
    assert PASSWORD not in transcript and BOB_PASSWORD not in transcript
    assert "saslkit: re-authenticated as bob" in transcript
    sent = client_lines(transcript)
    # ENABLE and SELECT as alice, then UNAUTHENTICATE and AUTHENTICATE written together (RFC 8437 §3) ...
    i = sent.index("a004 ENABLE IMAP4rev2")
    assert sent[i + 1] == "a005 SELECT INBOX"
    assert sent[i + 2] == "a006 UNAUTHENTICATE"
    assert sent[i + 3].startswith(f"a007 AUTHENTICATE {mech} ")  # with its initial response (SASL-IR)
    lines = transcript.splitlines()
    assert lines.index(f"C: {sent[i + 3]}") < lines.index("S: a006 OK Unauthenticated")  # ... not waiting for OK
    # ... then the reset as bob: CLOSE needs a selected mailbox, and IMAP4rev2 is enabled anew.
    assert "S: a008 BAD No mailbox selected" in lines
    assert lines.count("S: * ENABLED IMAP4REV2") == 2
    assert lines[lines.index("C: a009 ENABLE IMAP4rev2") + 1] == "S: * ENABLED IMAP4REV2"
    if mech.endswith("-PLUS"):  # tls-exporter binds one authentication (RFC 9266 §4.1), tls-server-end-point more
        assert transcript.count("p=tls-exporter") == 1 and transcript.count("p=tls-server-end-point") == 1
        assert transcript.index("p=tls-exporter") < transcript.index("p=tls-server-end-point")


def test_reauth_with_a_token_from_a_file_and_remember(server: SaslkitImapServer, tmp_path: Path) -> None:
    minted = client(server, "SCRAM-SHA-256", BOB_PASSWORD, "--remember", "RANDOM", user="bob")
    assert minted.returncode == 0, minted.stderr
    bob_token = minted.stdout.strip()
    MINTED.append(bob_token)
    token_file = tmp_path / "bob.token"
    token_file.write_text(bob_token + "\n")
    r = client(server, "SCRAM-SHA-256-PLUS", PASSWORD, "--remember", "JWT", "--reauth-as", "bob",
               "--reauth-mech", "HT2-SHA-256-ENDP", "--reauth-secret-file", str(token_file))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    alice_token = out[-1]  # the token alone on the last line, after the summary
    MINTED.append(alice_token)
    assert alice_token.count(".") == 2 and out[:-1] == [line.format(mech="HT2-SHA-256-ENDP") for line in SUMMARY]
    assert bob_token not in r.stderr and alice_token not in r.stderr


def test_reauth_failures_exit_1(db: Path, server: SaslkitImapServer) -> None:
    wrong = client(server, "SCRAM-SHA-256", PASSWORD, "--reauth-as", "bob", stdin=f"{PASSWORD}\nnot-bobs\n")
    assert wrong.returncode == 1, wrong.stderr
    assert re.search(r"^S: a007 NO \[AUTHENTICATIONFAILED\]", wrong.stderr, re.M)
    assert wrong.stdout == "" and "not-bobs" not in wrong.stderr

    off = SaslkitImapServer(db, "--unauthenticate", "off")
    after_auth = SaslkitImapServer(db, "--unauthenticate", "after-auth")
    try:
        two_secrets = f"{PASSWORD}\n{BOB_PASSWORD}"  # two stdin lines
        disabled, later = run_many([(off, "SCRAM-SHA-256", two_secrets, "--reauth-as", "bob"),
                                    (after_auth, "SCRAM-SHA-256", two_secrets, "--reauth-as", "bob")])
        # RFC 8437 §8: the server can disable it; the client says so and never sends UNAUTHENTICATE.
        assert disabled.returncode == 1, disabled.stderr
        assert "does not offer UNAUTHENTICATE" in disabled.stderr
        assert "UNAUTHENTICATE" not in "\n".join(client_lines(disabled.stderr))
        # RFC 8437 §3: advertised only once authenticated (here in the tagged OK's CAPABILITY code).
        assert later.returncode == 0, later.stderr
        assert not re.search(r"^S: \* OK \[CAPABILITY [^\]]*UNAUTHENTICATE", later.stderr, re.M)
        assert re.search(r"^S: a003 OK \[CAPABILITY [^\]]*UNAUTHENTICATE", later.stderr, re.M)
        assert later.stdout.splitlines()[-1].startswith("reset shown:")
    finally:
        assert_clean_exit(off)
        assert_clean_exit(after_auth)


# ---------------------------------------------------------------- TLS modes and trust


def test_implicit_tls(db: Path, server: SaslkitImapServer) -> None:
    tls_server = SaslkitImapServer(db, "--implicit-tls")
    try:
        calls = [(tls_server, "SCRAM-SHA-256-PLUS", PASSWORD, "--implicit-tls"),
                 (tls_server, "PLAIN", PASSWORD, "--implicit-tls"),
                 # STARTTLS client, TLS server: both wait for the other (the client gives up after --timeout)
                 (tls_server, "SCRAM-SHA-256", PASSWORD, "--timeout", "2"),
                 (server, "SCRAM-SHA-256", PASSWORD, "--implicit-tls")]  # TLS client, plain greeting
        ok_plus, ok_plain, starttls, implicit = run_many(calls)
        for r in (ok_plus, ok_plain):
            assert r.returncode == 0, r.stderr
            assert "STARTTLS" not in r.stderr  # neither offered nor sent
            assert r.stderr.index("* TLS established") < r.stderr.index("S: * OK ")
            assert "C: a001 AUTHENTICATE" in r.stderr  # the greeting's capabilities were enough
        assert "(channel binding tls-exporter)" in ok_plus.stderr
        assert starttls.returncode == 3 and "timed out" in starttls.stderr
        assert implicit.returncode == 3 and "TLS handshake failed" in implicit.stderr
    finally:
        assert_clean_exit(tls_server)


def test_no_tls(server: SaslkitImapServer) -> None:
    calls = [(server, "PLAIN", PASSWORD, "--no-tls"), (server, "SCRAM-SHA-256", PASSWORD, "--no-tls"),
             (server, "SCRAM-SHA-256-PLUS", PASSWORD, "--no-tls"),
             (server, "SCRAM-SHA-1", PASSWORD, "--no-tls", "--remember", "RANDOM")]
    plain, scram, plus, remember = run_many(calls)
    assert plain.returncode == 1 and "the server does not offer PLAIN here" in plain.stderr
    assert "LOGINDISABLED" in plain.stderr and "warning" not in plain.stderr
    assert "AUTHENTICATE" not in "\n".join(client_lines(plain.stderr)) and PASSWORD not in plain.stderr
    assert scram.returncode == 0, scram.stderr
    assert "TLS established" not in scram.stderr and "STARTTLS" not in "\n".join(client_lines(scram.stderr))
    assert plus.returncode == 1 and "does not offer SCRAM-SHA-256-PLUS" in plus.stderr
    assert remember.returncode == 1 and "does not offer REMEMBERME" in remember.stderr


def test_certificate_verification(server: SaslkitImapServer) -> None:
    cafile = ["--cafile", str(server.certificate)]
    calls = [
        (f"localhost:{server.port}", "PLAIN", PASSWORD, *cafile),  # the certificate names localhost too
        (server.address, "PLAIN", PASSWORD, "--insecure"),
        (server.address, "PLAIN", PASSWORD),  # system trust only: the self-signed certificate fails
    ]
    by_name, insecure, untrusted = run_many(calls)
    assert by_name.returncode == 0, by_name.stderr
    assert insecure.returncode == 0, insecure.stderr
    assert untrusted.returncode == 3 and "certificate verification failed" in untrusted.stderr
    assert client_lines(untrusted.stderr) == ["a001 STARTTLS"]  # nothing after the failed handshake


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
        (["127.0.0.1:143", "--mech", "NOPE", "--user", "alice"], "x\n"),
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice"], ""),
        (["no-port", "--mech", "PLAIN", "--user", "alice"], "x\n"),
        (["127.0.0.1:0", "--mech", "PLAIN", "--user", "alice"], "x\n"),
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice", "--remember", "TWO WORDS"], "x\n"),
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice", "--no-tls", "--implicit-tls"], "x\n"),
        (["127.0.0.1:143", "--mech", "PLAIN"], "x\n"),
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice", "--reauth-as", "bob"], "x\n"),  # no 2nd line
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice", "--reauth-as", "bob", "--reauth-mech", "NOPE"],
         "x\ny\n"),
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice", "--reauth-mech", "PLAIN"], "x\n"),
        (["127.0.0.1:143", "--mech", "PLAIN", "--user", "alice", "--reauth-as", "bob", "--reauth-secret-file",
          "/nonexistent/secret"], "x\n"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], stdin: str) -> None:
    r = saslkit_run("client", "imap", *argv, stdin=stdin)
    assert r.returncode == 2, r.stderr
    assert "connected" not in r.stderr  # refused before touching the network


# ---------------------------------------------------------------- a scripted peer (what a good server never does)


class ScriptedPeer(threading.Thread):
    """Accept one connection on loopback and play ``script``: (expected line prefixes, bytes to send).

    All expected lines of a step are read before its bytes are sent, so a
    step expecting two lines proves the client sent them without waiting.
    """

    def __init__(self, script: list[tuple[Sequence[str], bytes]]) -> None:
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
                    for prefix in expected:
                        line = reader.readline().decode().rstrip("\r\n")
                        self.received.append(line)
                        if not line.startswith(prefix):
                            self.error = f"expected {prefix!r}, got {line!r}"
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


GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR ENABLE UNAUTHENTICATE AUTH=SCRAM-SHA-256 AUTH=PLAIN] peer\r\n"
NO_IR_GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=SCRAM-SHA-256] no SASL-IR here\r\n"
BYE = b"* BYE bye\r\na002 OK done\r\n"


def test_ok_without_the_scram_proof_is_a_failure() -> None:
    peer = ScriptedPeer([((), GREETING), (["a001 AUTHENTICATE SCRAM-SHA-256 "], b"a001 OK trust me\r\n"),
                         (["a002 LOGOUT"], BYE)])
    r = client(f"127.0.0.1:{peer.port}", "SCRAM-SHA-256", PASSWORD, "--no-tls", trust=[])
    peer.finish()
    assert r.returncode == 1 and "did not prove itself" in r.stderr


def test_undecodable_challenge_is_cancelled_with_star() -> None:
    peer = ScriptedPeer([((), GREETING), (["a001 AUTHENTICATE SCRAM-SHA-256 "], b"+ =AAA\r\n"),
                         (["*"], b"a001 BAD cancelled\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap:
        imap.connect("none")
        with pytest.raises(ImapAuthError, match=r"cancelled.*BAD cancelled"):
            imap.authenticate("SCRAM-SHA-256", "alice", PASSWORD)
    assert peer.finish()[-1] == "*"


def test_without_sasl_ir_the_initial_response_follows_the_empty_continuation() -> None:
    message = b"\x00alice\x00" + PASSWORD.encode()
    peer = ScriptedPeer([((), NO_IR_GREETING), (["a001 AUTHENTICATE PLAIN"], b"+ \r\n"),
                         ([base64.b64encode(message).decode()], b"a001 OK [CAPABILITY IMAP4rev1] done\r\n"),
                         (["a002 LOGOUT"], BYE)])
    lines: list[str] = []
    with ImapClient("127.0.0.1", peer.port, timeout=10, log=lines.append) as imap:
        imap.connect("none")
        result = imap.authenticate("PLAIN", "alice", PASSWORD, allow_plaintext=True)
        imap.logout()
    received = peer.finish()
    assert received[0] == "a001 AUTHENTICATE PLAIN"  # no initial response on the command line
    assert base64.b64decode(received[1]) == message
    assert result.capabilities == ("IMAP4rev1",)
    assert not any(PASSWORD in line for line in lines)


class EmptyClient:
    """A client-first mechanism whose every message is empty (to see ``=`` and empty lines on the wire)."""

    name = "EMPTY-TEST"

    def start(self) -> bytes:
        return b""

    def step(self, challenge: bytes) -> bytes:
        assert challenge == b""
        return b""

    def finish(self, additional_data: bytes | None = None) -> None:
        return None


def empty_registry() -> Registry:
    registry = default_registry()
    registry.register(MechanismInfo("EMPTY-TEST", server=lambda ctx: pytest.fail("client only"),
                                    client=lambda creds: EmptyClient(), strength=0))
    return registry


@pytest.mark.parametrize("sasl_ir", [True, False])
def test_empty_initial_response_and_empty_answers(sasl_ir: bool) -> None:
    caps = b"IMAP4rev1 SASL-IR AUTH=EMPTY-TEST" if sasl_ir else b"IMAP4rev1 AUTH=EMPTY-TEST"
    first = "a001 AUTHENTICATE EMPTY-TEST =" if sasl_ir else "a001 AUTHENTICATE EMPTY-TEST"
    # With SASL-IR the empty IR is "=" (RFC 4959 §3) and "+ " is an empty challenge, answered by an empty line;
    # without, the first "+ " asks for the (empty) initial response: an empty line too.
    script: list[tuple[Sequence[str], bytes]] = [((), b"* OK [CAPABILITY " + caps + b"] peer\r\n"),
                                                 ([first], b"+ \r\n"), ([""], b"+\r\n"),  # bare "+" too
                                                 ([""], b"a001 OK [CAPABILITY IMAP4rev1] done\r\n")]
    peer = ScriptedPeer(script)
    with ImapClient("127.0.0.1", peer.port, timeout=10, registry=empty_registry()) as imap:
        imap.connect("none")
        imap.authenticate("EMPTY-TEST", "alice", "unused")
        imap.close()
    assert peer.finish() == [first, "", ""]


def test_plaintext_mechanism_without_tls_needs_consent() -> None:
    peer = ScriptedPeer([((), GREETING)])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap:
        imap.connect("none")
        with pytest.raises(ImapAuthError, match="without TLS"):
            imap.authenticate("PLAIN", "alice", PASSWORD)
    peer.finish()


def test_starttls_not_offered_exits_3() -> None:
    peer = ScriptedPeer([((), GREETING)])
    r = client(f"127.0.0.1:{peer.port}", "SCRAM-SHA-256", trust=["--insecure"])
    peer.finish()
    assert r.returncode == 3 and "does not offer STARTTLS" in r.stderr


def test_data_injected_after_starttls_is_refused() -> None:
    peer = ScriptedPeer([((), b"* OK [CAPABILITY IMAP4rev1 STARTTLS] peer\r\n"),
                         (["a001 STARTTLS"], b"a001 OK go ahead\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap, pytest.raises(ImapConnectionError,
                                                                                 match="injection"):
        imap.connect("starttls")
    peer.finish()


def test_greeting_without_capabilities_asks_for_them_and_reads_literals() -> None:
    peer = ScriptedPeer([((), b"* OK hello\r\n"),
                         (["a001 CAPABILITY"], b'* ID ("name" {5}\r\nab\r\nc)\r\n'  # a literal with a CRLF
                          b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\na001 OK\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap:
        assert imap.connect("none") == ["IMAP4rev1", "SASL-IR", "AUTH=PLAIN"]
        assert imap.auth_mechanisms == ["PLAIN"]
    peer.finish()


@pytest.mark.parametrize(
    ("greeting", "match"),
    [
        (b"* BYE too busy\r\n", "refused the connection: BYE too busy"),
        (b"* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n", "PREAUTH"),
        (b"220 smtp.example ESMTP\r\n", "malformed greeting"),
        (b"* OK " + b"x" * 70000 + b"\r\n", "longer than 65536"),
    ],
)
def test_bad_greetings_are_connection_errors(greeting: bytes, match: str) -> None:
    peer = ScriptedPeer([((), greeting)])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap, pytest.raises(ImapConnectionError, match=match):
        imap.connect("none")
    peer.finish()


def test_wrong_tag_and_unexpected_continuation_are_connection_errors() -> None:
    peer = ScriptedPeer([((), GREETING), (["a001 ENABLE"], b"zz9 OK whose?\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap, pytest.raises(ImapConnectionError,
                                                                                 match="tag 'zz9'"):
        imap.connect("none")
        imap.enable("IMAP4rev2")
    peer.finish()
    peer = ScriptedPeer([((), GREETING), (["a001 ENABLE"], b"+ go on\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap, pytest.raises(ImapConnectionError,
                                                                                 match="unexpected continuation"):
        imap.connect("none")
        imap.enable("IMAP4rev2")
    peer.finish()


def _plain_ok(tag: str) -> bytes:
    return f"{tag} OK [CAPABILITY IMAP4rev1 SASL-IR ENABLE UNAUTHENTICATE] Logged in\r\n".encode()


def test_unauthenticate_and_authenticate_are_pipelined() -> None:
    """Both lines reach the peer before it answers either: the client did not wait for the OK."""
    peer = ScriptedPeer([((), GREETING), (["a001 AUTHENTICATE PLAIN "], _plain_ok("a001")),
                         (["a002 UNAUTHENTICATE", "a003 AUTHENTICATE PLAIN "],
                          b"a002 OK Unauthenticated\r\n" + _plain_ok("a003")),
                         (["a004 LOGOUT"], b"* BYE bye\r\na004 OK done\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap:
        imap.connect("none")
        imap.authenticate("PLAIN", "alice", PASSWORD, allow_plaintext=True)
        imap.selected, imap.enabled = "INBOX", {"IMAP4REV2"}
        result = imap.reauthenticate("PLAIN", "bob", BOB_PASSWORD, allow_plaintext=True)
        assert result.pipelined and result.username == "bob"
        assert imap.selected is None and imap.enabled == set()  # forgotten on the OK
        imap.logout()
    received = peer.finish()
    assert base64.b64decode(received[2].split()[-1]) == b"\x00bob\x00" + BOB_PASSWORD.encode()


def test_unauthenticate_refused_stops_the_pipelined_authenticate() -> None:
    peer = ScriptedPeer([((), GREETING), (["a001 AUTHENTICATE PLAIN "], _plain_ok("a001")),
                         (["a002 UNAUTHENTICATE", "a003 AUTHENTICATE PLAIN "],
                          b"a002 BAD not now\r\na003 BAD Already authenticated\r\n")])
    with ImapClient("127.0.0.1", peer.port, timeout=10) as imap:
        imap.connect("none")
        imap.authenticate("PLAIN", "alice", PASSWORD, allow_plaintext=True)
        with pytest.raises(ImapAuthError, match="UNAUTHENTICATE refused: BAD not now"):
            imap.reauthenticate("PLAIN", "bob", BOB_PASSWORD, allow_plaintext=True)
        assert imap.state == "authenticated"
    peer.finish()


def test_a_server_that_keeps_state_across_unauthenticate_exits_1() -> None:
    select = (b"* 0 EXISTS\r\n* FLAGS ()\r\n* OK [UIDVALIDITY 1] ok\r\n"
              b"a003 OK [READ-WRITE] SELECT completed\r\n")
    peer = ScriptedPeer([
        ((), GREETING), (["a001 AUTHENTICATE PLAIN "], _plain_ok("a001")),
        (["a002 ENABLE IMAP4rev2"], b"* ENABLED IMAP4REV2\r\na002 OK\r\n"), (["a003 SELECT INBOX"], select),
        (["a004 UNAUTHENTICATE", "a005 AUTHENTICATE PLAIN "], b"a004 OK\r\n" + _plain_ok("a005")),
        (["a006 CLOSE"], b"a006 OK closed (still selected!)\r\n"),
        (["a007 ENABLE IMAP4rev2"], b"* ENABLED\r\na007 OK\r\n"),  # already enabled: not listed again
        (["a008 LOGOUT"], b"* BYE bye\r\na008 OK done\r\n"),
    ])
    r = client(f"127.0.0.1:{peer.port}", "PLAIN", PASSWORD, "--no-tls", "--reauth-as", "bob",
               trust=[], stdin=f"{PASSWORD}\n{BOB_PASSWORD}\n")
    peer.finish()
    assert r.returncode == 1, r.stderr
    assert "kept state across UNAUTHENTICATE" in r.stderr
    out = r.stdout.splitlines()
    assert "the selected mailbox was NOT reset" in out[2] and "the ENABLE state was NOT reset" in out[3]
    assert out[-1].startswith("reset NOT shown")

"""Real SMTP clients against a real ``saslkit serve smtp`` process (no mocks).

A module fixture creates a throw-away database with ``saslkit user add
--iterations 4096`` (alice and bob, password "pencil"), starts ``saslkit
serve smtp --listen 127.0.0.1:0 --failure-delay 0 --deliver-to <Maildir>``,
reads the port from its ready line ``saslkit smtp listening on HOST:PORT``, and
at the end sends SIGTERM and requires exit code 0.  The server makes its
self-signed certificate ``saslkit-tls.crt`` beside the database; the clients
verify TLS against that file.

Clients:

* **swaks** (Debian ``swaks``; ``--tls`` needs ``libnet-ssleay-perl``, which it
  recommends): AUTH PLAIN over STARTTLS delivers; a wrong password shows a 535
  and exits 28, which swaks(1) "EXIT CODES" defines as "error in AUTH transaction".
* **gsasl --smtp** (Debian ``gsasl``, GNU SASL 2.2.0): it uses STARTTLS when
  offered and reads the mechanism's data from the server's 334 lines; it exits
  0 on "235", 1 otherwise.  Observed with gsasl 2.2.0 / GnuTLS:

  - Over STARTTLS gsasl always has channel-binding data, and its SCRAM client
    asks for ``tls-exporter`` first (NEWS 2.1.0: "The SCRAM client will now
    query the application for GSASL_CB_TLS_EXPORTER before it query for
    GSASL_CB_TLS_UNIQUE"); the CLI provides tls-exporter on TLS 1.3 and
    tls-unique on TLS 1.2.  It never uses tls-server-end-point.
  - With channel-binding data present, a *non*-PLUS SCRAM client stops with
    "mechanism error: Error authenticating user" before sending anything (the
    same happens in stdio mode, without any server), so SCRAM-SHA-1/-256
    without -PLUS run with ``--no-cb``.
  - SCRAM-*-PLUS on TLS 1.3 sends ``p=tls-exporter``, which the server checks
    (its TLS is pyOpenSSL's, which exports keying material; Python's ``ssl``
    cannot), and succeeds.  SCRAM-*-PLUS on TLS 1.2 (``--priority
    NORMAL:-VERS-TLS1.3``) uses tls-unique, which the server offers on TLS 1.2
    with the extended master secret (GnuTLS negotiates it), and succeeds.
* **Python smtplib**: ``login()`` walks its preference list CRAM-MD5, PLAIN,
  LOGIN and so picks PLAIN (we offer PLAIN and LOGIN, over TLS only, so
  before STARTTLS it finds no method); ``auth("PLAIN", ...)`` with and
  without an initial response; ``sendmail`` delivers into the Maildir.
"""

from __future__ import annotations

import base64
import mailbox
import os
import queue
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SASLKIT = [sys.executable, "-m", "saslkit"]
PASSWORD = "pencil"
READY = re.compile(r"saslkit (smtp|lmtp) listening on (\S+):(\d+)$")
TIMEOUT = 60.0

pytestmark = pytest.mark.interop


def require(program: str, package: str) -> str:
    """The program's path; skip without it, but fail under CI, which installs it."""
    import shutil

    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the SMTP interop tests")
        pytest.skip(message)
    return path


# --------------------------------------------------------------------------- the server process


@dataclass
class Server:
    proc: subprocess.Popen[str]
    host: str
    port: int
    directory: Path
    env: dict[str, str]
    stderr_path: Path

    @property
    def cert(self) -> Path:
        return self.directory / "saslkit-tls.crt"

    @property
    def maildir(self) -> Path:
        return self.directory / "Maildir"

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after a grace period: the test fails)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"saslkit serve smtp ignored SIGTERM\n{self.log}")
        return self.proc.returncode


def setup_db(directory: Path) -> dict[str, str]:
    env = {**os.environ, "SASLKIT_DB": str(directory / "users.db"), "SASLKIT_KEYS": str(directory / "k.keys")}
    env.pop("SASLKIT_STORE", None)
    for user in ("alice", "bob"):
        proc = subprocess.run([*SASLKIT, "user", "add", user, "--iterations", "4096"], input=PASSWORD + "\n",
                              text=True, env=env, capture_output=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
    return env


def start_server(directory: Path, env: dict[str, str], *extra: str) -> Server:
    stderr_path = directory / f"server-{uuid.uuid4().hex[:6]}.log"
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [*SASLKIT, "serve", "smtp", "--listen", "127.0.0.1:0", "--failure-delay", "0",
             "--auth-penalty", "off", *extra],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True, env=env,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=TIMEOUT)
    except queue.Empty:
        line = None
    m = READY.match((line or "").strip())
    if m is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"no ready line from saslkit serve smtp (got {line!r})\n"
                    + stderr_path.read_text(encoding="utf-8", errors="replace"))
    return Server(proc, m.group(2), int(m.group(3)), directory, env, stderr_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("smtp-interop")
    env = setup_db(directory)
    srv = start_server(directory, env, "--deliver-to", str(directory / "Maildir"))
    yield srv
    assert srv.stop() == 0, srv.log


def messages(srv: Server) -> list[mailbox.MaildirMessage]:
    if not srv.maildir.exists():
        return []
    return list(mailbox.Maildir(str(srv.maildir), create=False))


# --------------------------------------------------------------------------- the server process itself


def test_ready_line_logs_and_clean_sigterm(tmp_path: Path) -> None:
    env = setup_db(tmp_path)
    srv = start_server(tmp_path, env)
    try:
        assert srv.host == "127.0.0.1" and srv.port > 0
        assert srv.cert.is_file() and (tmp_path / "saslkit-tls.key").is_file()
        context = ssl.create_default_context(cafile=str(srv.cert))
        with smtplib.SMTP(srv.host, srv.port, timeout=TIMEOUT) as smtp:
            smtp.starttls(context=context)
            smtp.login("alice", PASSWORD)
        with smtplib.SMTP(srv.host, srv.port, timeout=TIMEOUT) as smtp:
            smtp.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("bob", "not-" + PASSWORD)
        idle = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT)  # still open at SIGTERM
        assert idle.recv(512).startswith(b"220 ")
        try:
            assert srv.stop() == 0
        finally:
            idle.close()
    finally:
        srv.stop()
    log = srv.log
    assert "TLS certificate SHA-256 fingerprint" in log
    assert re.search(r"auth ok peer=127\.0\.0\.1 mechanism=PLAIN identity=alice", log)
    assert "auth failed" in log
    assert PASSWORD not in log  # never a secret in the log


def raw_lines(sock: socket.socket, buffer: list[bytes]) -> str:
    """Read one reply (all its lines) from a plain socket."""
    data = b"".join(buffer)
    buffer.clear()
    while True:
        while b"\r\n" in data:
            line, data = data.split(b"\r\n", 1)
            if line[3:4] != b"-":
                buffer.append(data)
                return line.decode()
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk


def test_over_long_auth_lines_on_the_wire(server: Server) -> None:
    """RFC 4954 §4: 500 5.5.6, also for lines past the server's read buffer; the connection lives on."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        buf: list[bytes] = []
        assert raw_lines(sock, buf).startswith("220 ")
        sock.sendall(b"EHLO raw.example\r\n")
        assert raw_lines(sock, buf).startswith("250 ")
        sock.sendall(b"AUTH PLAIN " + b"A" * 600 + b"\r\n")  # > 512: command line limit
        assert raw_lines(sock, buf).startswith("500 5.5.6 ")
        sock.sendall(b"AUTH PLAIN " + b"A" * 40000 + b"\r\n")  # > the 12290-octet read limit
        assert raw_lines(sock, buf).startswith("500 5.5.6 ")
        sock.sendall(b"AUTH SCRAM-SHA-256\r\n")
        assert raw_lines(sock, buf) == "334 "
        sock.sendall(b"A" * 12287 + b"\r\n")  # continuation line > 12288 with CRLF
        assert raw_lines(sock, buf).startswith("500 5.5.6 ")
        sock.sendall(b"AUTH SCRAM-SHA-256\r\n")
        assert raw_lines(sock, buf) == "334 "
        sock.sendall(b"A" * 50000 + b"\r\n")
        assert raw_lines(sock, buf).startswith("500 5.5.6 ")
        sock.sendall(b"NOOP\r\n")
        assert raw_lines(sock, buf).startswith("250 2.0.0 ")
        sock.sendall(b"MAIL FROM:<a@example.com>\r\n")
        assert raw_lines(sock, buf).startswith("530 5.7.0 ")
        sock.sendall(b"QUIT\r\n")
        assert raw_lines(sock, buf).startswith("221 2.0.0 ")


# --------------------------------------------------------------------------- swaks


def swaks(server: Server, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = require("swaks", "swaks libnet-ssleay-perl")
    return subprocess.run(
        [exe, "--server", server.host, "--port", str(server.port), "--tls", "--auth", "PLAIN",
         "--auth-user", "alice", "--auth-password", password, "--to", "x@example.com",
         "--from", "alice@example.com", *extra],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )


def test_swaks_plain_over_starttls(server: Server) -> None:
    before = len(messages(server))
    marker = f"swaks-{uuid.uuid4().hex}"
    proc = swaks(server, PASSWORD, "--header", f"Subject: {marker}")
    transcript = proc.stdout + proc.stderr
    assert proc.returncode == 0, transcript
    assert "STARTTLS" in transcript and "220 2.0.0" in transcript
    assert re.search(r"~> AUTH PLAIN \S+", transcript)  # sent inside TLS ("~>")
    assert "<~  235 2.7.0" in transcript
    assert "250 2.0.0 OK queued as" in transcript
    after = messages(server)
    assert len(after) == before + 1
    assert any(m["Subject"] == marker and m["Return-Path"] == "<alice@example.com>" for m in after)


def test_swaks_wrong_password(server: Server) -> None:
    proc = swaks(server, "wrong-" + PASSWORD)
    transcript = proc.stdout + proc.stderr
    assert "535 5.7.8" in transcript
    assert proc.returncode == 28, transcript  # swaks(1) EXIT CODES: 28 = error in AUTH transaction


# --------------------------------------------------------------------------- gsasl --smtp


def gsasl(
    server: Server, mech: str, password: str = PASSWORD, *extra: str, cafile: str | None = None
) -> tuple[int, str]:
    """``gsasl --smtp``; TLS verified against the server's certificate unless ``cafile`` says otherwise."""
    exe = require("gsasl", "gsasl")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("LANGUAGE", None)
    proc = subprocess.run(
        [exe, "--smtp", server.host, str(server.port), "-m", mech, "-a", "alice", "-p", password,
         f"--x509-ca-file={server.cert if cafile is None else cafile}", *extra],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=env,
    )
    return proc.returncode, proc.stdout + proc.stderr


def client_first(transcript: str, mech: str) -> str:
    """The decoded client-first message gsasl sent after ``AUTH <mech>`` and ``334 ``."""
    lines = transcript.splitlines()
    i = lines.index(f"AUTH {mech}")
    assert lines[i + 1] == "334 "
    return base64.b64decode(lines[i + 2]).decode()


@pytest.mark.parametrize(("mech", "extra"), [
    ("PLAIN", ()),
    ("SCRAM-SHA-1", ("--no-cb",)),
    ("SCRAM-SHA-256", ("--no-cb",)),
])
def test_gsasl(server: Server, mech: str, extra: tuple[str, ...]) -> None:
    code, transcript = gsasl(server, mech, PASSWORD, *extra)
    assert code == 0, transcript
    assert "STARTTLS" in transcript and "The certificate is trusted" in transcript
    assert "235 2.7.0" in transcript
    if mech.startswith("SCRAM"):
        assert client_first(transcript, mech).startswith("n,,n=alice,r=")
        challenges = [base64.b64decode(x[4:]) for x in transcript.splitlines() if x.startswith("334 ")]
        assert challenges[-1].startswith(b"v=")  # v= as a 334, answered by an empty line


def test_gsasl_plain_without_certificate_check(server: Server) -> None:
    """The plain form: ``--x509-ca-file=""`` tells gsasl not to fail on an unverified certificate."""
    code, transcript = gsasl(server, "PLAIN", cafile="")
    assert code == 0, transcript
    assert "The certificate is NOT trusted" in transcript and "235 2.7.0" in transcript


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
def test_gsasl_scram_plus_tls12_tls_unique(server: Server, mech: str) -> None:
    code, transcript = gsasl(server, mech, PASSWORD, "--verbose", "--priority", "NORMAL:-VERS-TLS1.3")
    assert code == 0, transcript
    assert "(TLS1.2)" in transcript
    assert client_first(transcript, mech).startswith("p=tls-unique,,n=alice,r=")
    assert "235 2.7.0" in transcript


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
def test_gsasl_scram_plus_tls13(server: Server, mech: str) -> None:
    """gsasl 2.2 binds to tls-exporter on TLS 1.3 (RFC 9266), which the server verifies (pyOpenSSL, issue 11)."""
    code, transcript = gsasl(server, mech, PASSWORD, "--verbose")
    assert "(TLS1.3)" in transcript
    assert client_first(transcript, mech).startswith("p=tls-exporter,,n=alice,r=")
    assert code == 0, transcript
    assert "235 2.7.0" in transcript


@pytest.mark.parametrize(("mech", "extra"), [("PLAIN", ()), ("SCRAM-SHA-256", ("--no-cb",)),
                                             ("SCRAM-SHA-256-PLUS", ("--priority", "NORMAL:-VERS-TLS1.3")),
                                             ("SCRAM-SHA-256-PLUS", ()), ("SCRAM-SHA-1-PLUS", ())])
def test_gsasl_wrong_password(server: Server, mech: str, extra: tuple[str, ...]) -> None:
    code, transcript = gsasl(server, mech, "wrong-" + PASSWORD, *extra)
    assert code != 0
    assert "535 5.7.8" in transcript
    assert "235 " not in transcript


# --------------------------------------------------------------------------- Python smtplib


class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP that notes which mechanism ``login()`` chose."""

    mechanisms: list[str]

    def auth(self, mechanism: str, authobject, *, initial_response_ok: bool = True):  # type: ignore[no-untyped-def]
        self.mechanisms = [*getattr(self, "mechanisms", []), mechanism]
        return super().auth(mechanism, authobject, initial_response_ok=initial_response_ok)


def tls_context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))  # verifies the name 127.0.0.1 too


def test_smtplib_login_picks_plain(server: Server) -> None:
    with RecordingSMTP(server.host, server.port, timeout=TIMEOUT) as smtp:
        smtp.ehlo()
        assert "PLAIN" not in smtp.esmtp_features["auth"].split()  # no plaintext mechanism before TLS
        with pytest.raises(smtplib.SMTPException, match="No suitable authentication method"):
            smtp.login("alice", PASSWORD)
        smtp.starttls(context=tls_context(server))
        smtp.ehlo()
        offered = smtp.esmtp_features["auth"].split()
        assert "PLAIN" in offered and "CRAM-MD5" not in offered and "LOGIN" in offered
        code, text = smtp.login("alice", PASSWORD)
        assert (code, text[:5]) == (235, b"2.7.0")
        assert smtp.mechanisms == ["PLAIN"]  # smtplib prefers CRAM-MD5, PLAIN, LOGIN: PLAIN first, LOGIN unused


@pytest.mark.parametrize("initial_response_ok", [True, False])
def test_smtplib_auth_plain(server: Server, initial_response_ok: bool) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=tls_context(server))
        smtp.ehlo()
        smtp.user, smtp.password = "alice", PASSWORD
        code, text = smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=initial_response_ok)
        assert (code, text[:5]) == (235, b"2.7.0")
        code, text = smtp.docmd("AUTH", "PLAIN")  # AUTH after AUTH
        assert (code, text[:5]) == (503, b"5.5.1")


def test_smtplib_wrong_password(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=tls_context(server))
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            smtp.login("alice", "wrong-" + PASSWORD)
        assert info.value.smtp_code == 535 and info.value.smtp_error.startswith(b"5.7.8")


def test_smtplib_sendmail_after_login_delivers(server: Server) -> None:
    marker = f"smtplib-{uuid.uuid4().hex}"
    body = f"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: {marker}\r\n\r\n.dot line\r\nhello\r\n"
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as smtp:
        smtp.starttls(context=tls_context(server))
        smtp.login("alice", PASSWORD)
        refused = smtp.sendmail("alice@example.com", ["bob@example.com", "carol@example.com"], body)
        assert refused == {}
    deadline = time.monotonic() + 10
    while True:
        found = [m for m in messages(server) if m["Subject"] == marker]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == 1
    message = found[0]
    assert message["Return-Path"] == "<alice@example.com>"
    assert message["X-Original-To"] == "bob@example.com, carol@example.com"
    assert message.get_payload().replace("\r\n", "\n") == ".dot line\nhello\n"  # dot-stuffing undone

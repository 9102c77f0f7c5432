"""Real IMAP clients against a real ``saslkit serve imap`` process (no mocks).

A module fixture creates a throw-away database with ``saslkit user add
--iterations 4096`` (alice, bob and carol), starts ``saslkit serve imap
--listen 127.0.0.1:0 --failure-delay 0``, reads the port from its ready line
``saslkit imap listening on HOST:PORT``, and at the end sends SIGTERM and
requires exit code 0.  The server makes its self-signed certificate
``saslkit-tls.crt`` beside the database; the clients verify TLS against it.

Clients:

* **gsasl --imap** (Debian ``gsasl``, GNU SASL 2.2.0): it issues CAPABILITY,
  STARTTLS when offered, then ``AUTHENTICATE <mech>`` without an initial
  response, reads each ``+`` continuation and answers it; it exits 0 on a
  tagged OK, 1 otherwise.  As with ``gsasl --smtp`` (see
  test_smtp_interop.py), gsasl always has channel-binding data over TLS and
  its non-PLUS SCRAM client then refuses to start, hence ``--no-cb``; its
  -PLUS client binds ``tls-unique`` on TLS 1.2 (``--priority
  NORMAL:-VERS-TLS1.3``), which the server offers there (with the extended
  master secret), and ``tls-exporter`` on TLS 1.3, which the server verifies
  (its TLS is pyOpenSSL's; Python's ``ssl`` cannot export keying material).
* **Python imaplib**: ``login()`` after ``starttls()`` (LOGINDISABLED before
  it), ``authenticate("PLAIN", ...)`` and ``authenticate("SCRAM-SHA-256", ...)``
  / ``SCRAM-SHA-256-PLUS`` (tls-server-end-point) with an authobject built on
  saslkit's :class:`~saslkit.mechanisms.scram.ScramClient`: imaplib calls it
  with the decoded data of each ``+`` continuation and sends back what it
  returns, base64-encoded; the final ``v=`` is answered with ``b""`` and
  ``finish()`` then checks the server proved itself.  imaplib has no
  UNAUTHENTICATE, so the test registers it in ``imaplib.Commands`` and sends it
  with ``_simple_command``, then re-authenticates on the same connection.
* A raw TLS socket, for what no library client does: pipelined UNAUTHENTICATE
  + AUTHENTICATE with SASL-IR in one write (RFC 8437 §3), LOGIN with a
  synchronizing literal and with LITERAL+, and an over-long LITERAL+.
"""

from __future__ import annotations

import base64
import imaplib
import os
import queue
import re
import shutil
import signal
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
from typing import Any

import pytest

from saslkit import ClientCredentials
from saslkit.channel_binding import tls_server_end_point
from saslkit.mechanisms.scram import ScramClient

SASLKIT = [sys.executable, "-m", "saslkit"]
PASSWORD = "pencil"
CAROL_PASSWORD = 'pen"ci\\l'  # imaplib must escape both quoted-specials in LOGIN
READY = re.compile(r"saslkit imap listening on (\S+):(\d+)$")
TIMEOUT = 60.0

pytestmark = pytest.mark.interop


def require(program: str, package: str) -> str:
    """The program's path; skip without it, but fail under CI, which installs it."""
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the IMAP interop tests")
        pytest.skip(message)
    return path


# --------------------------------------------------------------------------- the server process


@dataclass
class Server:
    proc: subprocess.Popen[str]
    host: str
    port: int
    directory: Path
    stderr_path: Path

    @property
    def cert(self) -> Path:
        return self.directory / "saslkit-tls.crt"

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        """The log once ``pattern`` appears in it (the server logs before it replies, but be patient)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log
            if re.search(pattern, log) or time.monotonic() > deadline:
                return log
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after a grace period: the test fails)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"saslkit serve imap ignored SIGTERM\n{self.log}")
        return self.proc.returncode


def setup_db(directory: Path) -> dict[str, str]:
    env = {**os.environ, "SASLKIT_DB": str(directory / "users.db"), "SASLKIT_KEYS": str(directory / "k.keys")}
    env.pop("SASLKIT_STORE", None)
    for user, password in (("alice", PASSWORD), ("bob", PASSWORD), ("carol", CAROL_PASSWORD)):
        proc = subprocess.run([*SASLKIT, "user", "add", user, "--iterations", "4096"], input=password + "\n",
                              text=True, env=env, capture_output=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
    return env


def start_server(directory: Path, env: dict[str, str], *extra: str) -> Server:
    stderr_path = directory / f"server-{uuid.uuid4().hex[:6]}.log"
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [*SASLKIT, "serve", "imap", "--listen", "127.0.0.1:0", "--failure-delay", "0",
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
        pytest.fail(f"no ready line from saslkit serve imap (got {line!r})\n"
                    + stderr_path.read_text(encoding="utf-8", errors="replace"))
    return Server(proc, m.group(1), int(m.group(2)), directory, stderr_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("imap-interop")
    srv = start_server(directory, setup_db(directory))
    yield srv
    assert srv.stop() == 0, srv.log


def tls_context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))  # verifies the name 127.0.0.1 too


# --------------------------------------------------------------------------- the server process itself


def test_ready_line_logs_and_clean_sigterm(tmp_path: Path) -> None:
    srv = start_server(tmp_path, setup_db(tmp_path))
    try:
        assert srv.host == "127.0.0.1" and srv.port > 0
        assert srv.cert.is_file() and (tmp_path / "saslkit-tls.key").is_file()
        with imaplib.IMAP4(srv.host, srv.port, timeout=TIMEOUT) as imap:
            imap.starttls(ssl_context=tls_context(srv))
            imap.login("alice", PASSWORD)
        with imaplib.IMAP4(srv.host, srv.port, timeout=TIMEOUT) as imap:
            imap.starttls(ssl_context=tls_context(srv))
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                imap.login("bob", "not-" + PASSWORD)
        idle = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT)  # still open at SIGTERM
        assert idle.recv(512).startswith(b"* OK [CAPABILITY ")
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


# --------------------------------------------------------------------------- gsasl --imap


def gsasl(server: Server, mech: str, password: str = PASSWORD, *extra: str) -> tuple[int, str]:
    """``gsasl --imap`` as alice; TLS (STARTTLS) verified against the server's certificate."""
    exe = require("gsasl", "gsasl")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("LANGUAGE", None)
    proc = subprocess.run(
        [exe, "--imap", server.host, str(server.port), "-m", mech, "-a", "alice", "-p", password,
         f"--x509-ca-file={server.cert}", *extra],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=env,
    )
    return proc.returncode, proc.stdout + proc.stderr


def client_first(transcript: str, mech: str) -> str:
    """The decoded client-first message gsasl sent after ``AUTHENTICATE <mech>`` and ``+ ``."""
    lines = transcript.splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith(f" AUTHENTICATE {mech}"))
    assert lines[i + 1] == "+ "  # the empty continuation with its space (RFC 4959 §4)
    return base64.b64decode(lines[i + 2]).decode()


def tagged_ok(transcript: str) -> bool:
    return re.search(r"^\S+ OK \[CAPABILITY [^\]]*\] Authenticated$", transcript, re.MULTILINE) is not None


@pytest.mark.parametrize(("mech", "extra"), [
    ("PLAIN", ()),
    ("SCRAM-SHA-1", ("--no-cb",)),
    ("SCRAM-SHA-256", ("--no-cb",)),
])
def test_gsasl(server: Server, mech: str, extra: tuple[str, ...]) -> None:
    code, transcript = gsasl(server, mech, PASSWORD, *extra)
    assert code == 0, transcript
    assert "STARTTLS" in transcript and "The certificate is trusted" in transcript
    assert "LOGINDISABLED" in transcript  # before STARTTLS
    assert tagged_ok(transcript), transcript
    if mech == "PLAIN":
        assert base64.b64decode(transcript.splitlines()[transcript.splitlines().index("+ ") + 1]) == (
            b"\0alice\0" + PASSWORD.encode())
    else:
        assert client_first(transcript, mech).startswith("n,,n=alice,r=")
        lines = transcript.splitlines()
        finals = [n for n, x in enumerate(lines) if x.startswith("+ ") and len(x) > 2]
        verifier = base64.b64decode(lines[finals[-1]][2:])
        assert verifier.startswith(b"v=")  # additional data as a "+" challenge ...
        assert lines[finals[-1] + 1] == ""  # ... answered by an empty line
        assert tagged_ok(lines[finals[-1] + 2])


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
def test_gsasl_scram_plus_tls12_tls_unique(server: Server, mech: str) -> None:
    code, transcript = gsasl(server, mech, PASSWORD, "--verbose", "--priority", "NORMAL:-VERS-TLS1.3")
    assert code == 0, transcript
    assert "(TLS1.2)" in transcript
    assert client_first(transcript, mech).startswith("p=tls-unique,,n=alice,r=")
    assert tagged_ok(transcript), transcript


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"])
def test_gsasl_scram_plus_tls13(server: Server, mech: str) -> None:
    """gsasl 2.2 binds to tls-exporter on TLS 1.3 (RFC 9266), which the server verifies (pyOpenSSL, issue 11)."""
    code, transcript = gsasl(server, mech, PASSWORD, "--verbose")
    assert "(TLS1.3)" in transcript
    assert client_first(transcript, mech).startswith("p=tls-exporter,,n=alice,r=")
    assert code == 0, transcript
    assert tagged_ok(transcript), transcript


@pytest.mark.parametrize(("mech", "extra"), [("PLAIN", ()), ("SCRAM-SHA-1", ("--no-cb",)),
                                             ("SCRAM-SHA-256", ("--no-cb",)),
                                             ("SCRAM-SHA-256-PLUS", ("--priority", "NORMAL:-VERS-TLS1.3")),
                                             ("SCRAM-SHA-256-PLUS", ()), ("SCRAM-SHA-1-PLUS", ())])
def test_gsasl_wrong_password(server: Server, mech: str, extra: tuple[str, ...]) -> None:
    code, transcript = gsasl(server, mech, "wrong-" + PASSWORD, *extra)
    assert code != 0
    assert re.search(r"^\S+ NO \[AUTHENTICATIONFAILED\] ", transcript, re.MULTILINE), transcript
    assert not tagged_ok(transcript)


# --------------------------------------------------------------------------- Python imaplib


class ScramAuthObject:
    """An imaplib authobject on saslkit's ScramClient: one call per ``+`` continuation."""

    def __init__(self, mech: str, user: str, password: str, channel_binding: tuple[str, bytes] | None = None):
        self.client = ScramClient(mech, ClientCredentials(user, password, channel_binding=channel_binding,
                                                          server_offers_plus=True))
        self.challenges: list[bytes] = []

    def __call__(self, challenge: bytes) -> bytes:
        self.challenges.append(challenge)
        if len(self.challenges) == 1:
            assert challenge == b""  # "+ " : AUTHENTICATE went without an initial response
            return self.client.start()
        return self.client.step(challenge)  # server-first -> client-final; v= -> b"" (an empty line)


def imap_tls(server: Server) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(server.host, server.port, timeout=TIMEOUT)
    imap.starttls(ssl_context=tls_context(server))
    return imap


def caps_of(data: Any) -> set[str]:
    """The capabilities in a tagged OK's ``[CAPABILITY ...]`` response code."""
    m = re.match(rb"\[CAPABILITY ([^\]]*)\]", data[-1])
    assert m, data
    return set(m.group(1).decode().split())


def test_imaplib_login_after_starttls(server: Server) -> None:
    with imaplib.IMAP4(server.host, server.port, timeout=TIMEOUT) as imap:
        assert {"STARTTLS", "LOGINDISABLED"} <= set(imap.capabilities)
        assert "AUTH=PLAIN" not in imap.capabilities  # no plaintext mechanism before TLS (RFC 9051 §6.2.2)
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            imap.login("alice", "not-sent-in-clear")  # refused under LOGINDISABLED
        imap.starttls(ssl_context=tls_context(server))
        assert "LOGINDISABLED" not in imap.capabilities and "STARTTLS" not in imap.capabilities
        assert {"AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "SASL-IR", "UNAUTHENTICATE"} <= set(imap.capabilities)
        typ, data = imap.login("alice", PASSWORD)
        assert typ == "OK" and imap.state == "AUTH"
        assert "UNAUTHENTICATE" in caps_of(data) and not any(c.startswith("AUTH=") for c in caps_of(data))
        assert imap.select("INBOX") == ("OK", [b"0"])
        assert imap.logout()[0] == "BYE"
    server.wait_for_log(r"mechanism=PLAIN identity=alice")


def test_imaplib_login_quoted_specials(server: Server) -> None:
    """imaplib sends the password as a quoted string with ``\\"`` and ``\\\\`` escapes."""
    with imap_tls(server) as imap:
        assert imap.login("carol", CAROL_PASSWORD)[0] == "OK"
    with imap_tls(server) as imap, pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("carol", CAROL_PASSWORD.replace("\\", ""))


def test_imaplib_authenticate_plain(server: Server) -> None:
    with imap_tls(server) as imap:
        seen: list[bytes] = []

        def plain(challenge: bytes) -> bytes:
            seen.append(challenge)
            return b"\0alice\0" + PASSWORD.encode()

        typ, data = imap.authenticate("PLAIN", plain)
        assert typ == "OK" and imap.state == "AUTH" and seen == [b""]
        assert "UNAUTHENTICATE" in caps_of(data)
        typ, _ = imap.select("INBOX", readonly=True)
        assert typ == "OK"


def test_imaplib_authenticate_plain_wrong_password(server: Server) -> None:
    with imap_tls(server) as imap:
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            imap.authenticate("PLAIN", lambda _: b"\0alice\0wrong")
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHORIZATIONFAILED\]"):
            imap.authenticate("PLAIN", lambda _: b"bob\0alice\0" + PASSWORD.encode())
        assert imap.authenticate("PLAIN", lambda _: b"\0alice\0" + PASSWORD.encode())[0] == "OK"


def test_imaplib_authenticate_scram_sha_256(server: Server) -> None:
    with imap_tls(server) as imap:
        auth = ScramAuthObject("SCRAM-SHA-256", "alice", PASSWORD)
        typ, data = imap.authenticate("SCRAM-SHA-256", auth)
        assert typ == "OK" and "UNAUTHENTICATE" in caps_of(data)
        assert len(auth.challenges) == 3 and auth.challenges[-1].startswith(b"v=")
        auth.client.finish()  # the client verified the server (v=) ...
        assert auth.client.verified
        nonce = auth.challenges[1].split(b",")[0]
        assert nonce.startswith(b"r=")
    # ... and the server verified the client: it logged the success and let it in.
    log = server.wait_for_log(r"mechanism=SCRAM-SHA-256 identity=alice")
    assert re.search(r"auth ok peer=127\.0\.0\.1 mechanism=SCRAM-SHA-256 identity=alice", log)


def test_imaplib_authenticate_scram_sha_256_plus_end_point(server: Server) -> None:
    """-PLUS from Python: tls-server-end-point is computable from the server certificate on any TLS version."""
    with imap_tls(server) as imap:
        sock = imap.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        auth = ScramAuthObject("SCRAM-SHA-256-PLUS", "alice", PASSWORD,
                               channel_binding=("tls-server-end-point", tls_server_end_point(der)))
        assert imap.authenticate("SCRAM-SHA-256-PLUS", auth)[0] == "OK"
        auth.client.finish()
        assert auth.client.verified
    server.wait_for_log(r"mechanism=SCRAM-SHA-256-PLUS identity=alice")


def test_imaplib_authenticate_scram_wrong_password(server: Server) -> None:
    with imap_tls(server) as imap:
        auth = ScramAuthObject("SCRAM-SHA-256", "alice", "wrong-" + PASSWORD)
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            imap.authenticate("SCRAM-SHA-256", auth)
        assert len(auth.challenges) == 2 and not auth.client.verified  # no v= for a wrong proof


def test_imaplib_unauthenticate_then_reauthenticate(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 8437 with imaplib: UNAUTHENTICATE registered by hand, then AUTHENTICATE as bob on the same connection."""
    monkeypatch.setitem(imaplib.Commands, "UNAUTHENTICATE", ("AUTH", "SELECTED"))
    with imap_tls(server) as imap:
        auth = ScramAuthObject("SCRAM-SHA-256", "alice", PASSWORD)
        assert imap.authenticate("SCRAM-SHA-256", auth)[0] == "OK"
        auth.client.finish()
        typ, _ = imap.enable("IMAP4rev2")
        assert typ == "OK" and imap.untagged_responses.pop("ENABLED") == [b"IMAP4REV2"]
        assert imap.select("INBOX")[0] == "OK" and imap.state == "SELECTED"
        assert "RECENT" not in imap.untagged_responses  # IMAP4rev2 enabled: no RECENT

        typ, data = imap._simple_command("UNAUTHENTICATE")  # from the selected state
        assert typ == "OK", data
        imap.state = "NONAUTH"  # imaplib knows no transition 7; RFC 8437 §5 puts us in not authenticated
        typ, caps = imap.capability()
        offered = set(caps[-1].decode().split())
        assert {"AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "UNAUTHENTICATE"} <= offered  # not-authenticated again
        typ, data = imap.authenticate("PLAIN", lambda _: b"\0bob\0" + PASSWORD.encode())
        assert typ == "OK" and imap.state == "AUTH"
        assert imap.select("INBOX")[0] == "OK"
        assert "RECENT" in imap.untagged_responses  # ENABLE IMAP4rev2 was reset (RFC 8437 §4.1)

        assert imap._simple_command("UNAUTHENTICATE")[0] == "OK"
        imap.state = "NONAUTH"
        assert imap.login("alice", PASSWORD)[0] == "OK"  # and LOGIN works after it too
    log = server.wait_for_log(r"mechanism=PLAIN identity=bob")
    ok = re.findall(r"auth ok peer=\S+ mechanism=(\S+) identity=(\S+)", log)
    assert ("SCRAM-SHA-256", "alice") in ok and ("PLAIN", "bob") in ok


# --------------------------------------------------------------------------- raw TLS socket


class Wire:
    """A raw IMAP connection upgraded with STARTTLS; reads whole lines."""

    def __init__(self, server: Server) -> None:
        raw = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        self.sock: socket.socket = raw
        self.buffer = b""
        assert self.line().startswith("* OK [CAPABILITY ")
        self.sock.sendall(b"t0 STARTTLS\r\n")
        assert self.line().startswith("t0 OK ")
        self.sock = tls_context(server).wrap_socket(raw, server_hostname=server.host)

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def until(self, tag: str) -> list[str]:
        """Lines up to and including the one tagged ``tag``."""
        lines = [self.line()]
        while not lines[-1].startswith(tag + " "):
            lines.append(self.line())
        return lines

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(server: Server) -> Iterator[Wire]:
    conn = Wire(server)
    yield conn
    conn.close()


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def test_wire_pipelined_unauthenticate_and_authenticate_ir(wire: Wire) -> None:
    """RFC 8437 §3: one write, one round trip: UNAUTHENTICATE + AUTHENTICATE with SASL-IR."""
    alice, bob = b64("\0alice\0" + PASSWORD), b64("\0bob\0" + PASSWORD)
    wire.sock.sendall(f"a AUTHENTICATE PLAIN {alice}\r\nb SELECT INBOX\r\n".encode())
    assert wire.until("a")[-1].startswith("a OK [CAPABILITY ")
    assert wire.until("b")[-1].startswith("b OK [READ-WRITE]")
    wire.sock.sendall(f"c UNAUTHENTICATE\r\nd AUTHENTICATE PLAIN {bob}\r\n"
                      "e SELECT INBOX\r\n".encode())
    assert wire.until("c") == ["c OK Unauthenticated"]  # no untagged data, no EXPUNGE (RFC 8437 §3)
    assert wire.until("d")[-1].startswith("d OK [CAPABILITY ")
    assert wire.until("e")[-1].startswith("e OK [READ-WRITE]")


def test_wire_login_literals(wire: Wire) -> None:
    wire.sock.sendall(b"a LOGIN {5}\r\n")
    assert wire.line().startswith("+ ")  # synchronizing literal: wait for the continuation
    wire.sock.sendall(b"alice " + PASSWORD.encode() + b"\r\n")
    assert wire.until("a")[-1].startswith("a OK [CAPABILITY ")
    # LITERAL+ (RFC 7888): everything in one write, no continuation
    wire.sock.sendall(b"b UNAUTHENTICATE\r\nc LOGIN {3+}\r\nbob {6+}\r\n" + PASSWORD.encode() + b"\r\n")
    assert wire.until("b") == ["b OK Unauthenticated"]
    assert wire.until("c")[-1].startswith("c OK [CAPABILITY ")


def test_wire_refused_literals(wire: Wire) -> None:
    wire.sock.sendall(b"a LOGIN {99999}\r\n")
    assert wire.line() == "a BAD Literal too large"  # tagged: the client sends no more of it
    wire.sock.sendall(b"b NOOP\r\n")
    assert wire.line() == "b OK NOOP completed"
    wire.sock.sendall(b"c LOGIN {99999+}\r\n")  # its octets would follow at once: the server closes
    assert wire.line() == "* BYE Literal too large"
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
        wire.line()

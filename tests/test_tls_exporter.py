"""tls-exporter (RFC 9266) on the wire: real ``saslkit serve smtp|imap`` processes, real clients (issue 11).

The servers run TLS on pyOpenSSL (``saslkit.net.tls``), which exports keying
material; these tests check, against independent implementations, that:

* **gsasl 2.2** (GnuTLS) logs in over STARTTLS without ``-m``: it picks
  SCRAM-SHA-256-PLUS and binds to ``tls-exporter`` on TLS 1.3, ``tls-unique``
  on TLS 1.2 (with the extended master secret); a wrong password is
  refused, and logged as a password failure, not a channel-binding one.
  (gsasl has no implicit-TLS mode; implicit TLS is covered by openssl and
  saslkit's own client below.)
* **openssl s_client -keymatexport EXPORTER-Channel-Binding
  -keymatexportlen 32** computes the same 32 octets the server binds to:
  SCRAM-SHA-256-PLUS with those octets authenticates (STARTTLS SMTP, implicit
  TLS IMAP); with one bit flipped it is refused, and the server logs a
  channel-binding mismatch (``channel_binding=mismatch``).
* A **TLS 1.2 connection without the extended master secret** (a pyOpenSSL
  client with ``SSL_OP_NO_EXTENDED_MASTER_SECRET``; RFC 7627) is offered no
  SCRAM-*-PLUS, no HT-*-UNIQ, no HT-*-EXPR, and a tls-unique login is refused;
  with the extended master secret, tls-unique is offered and works.
* A client that could bind but says it thinks the server cannot (``y``) while
  -PLUS is advertised is refused and logged as a downgrade.
* With ``--tls-library ssl`` (the stdlib fallback) SCRAM-*-PLUS is advertised
  on TLS 1.3 only with ``--plus-with-end-point``; tls-unique never (the
  stdlib cannot say whether EMS was negotiated).
"""

from __future__ import annotations

import base64
import os
import queue
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ServerProcess, run_client, saslkit_run

from saslkit import ClientCredentials
from saslkit.channel_binding import extended_master_secret
from saslkit.mechanisms.scram import ScramClient
from saslkit.net.tls import OpenSSLClientSocket

pytestmark = pytest.mark.interop

PASSWORD = "pencil"
TIMEOUT = 30.0
#: SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL 3: bit 0); pyOpenSSL has no name for it.
SSL_OP_NO_EXTENDED_MASTER_SECRET = 1


class SmtpServer(ServerProcess):
    protocol = "smtp"
    log_prefix = "exporter-smtp"


class ImapServer(ServerProcess):
    protocol = "imap"
    log_prefix = "exporter-imap"


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is not installed: CI must run the tls-exporter interop tests")
        pytest.skip(f"{program} is not installed")
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls-exporter") / "users.db"
    result = saslkit_run("user", "add", "alice", "--db", str(path), "--iterations", "4096", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return path


def _served(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log.read_text()
        assert PASSWORD not in server.log.read_text()


@pytest.fixture(scope="module")
def smtp(db: Path) -> Iterator[ServerProcess]:
    yield from _served(SmtpServer(db))


@pytest.fixture(scope="module")
def imap(db: Path) -> Iterator[ServerProcess]:
    yield from _served(ImapServer(db))


@pytest.fixture(scope="module")
def imap_implicit(db: Path) -> Iterator[ServerProcess]:
    yield from _served(ImapServer(db, "--implicit-tls"))


@pytest.fixture(scope="module")
def smtp_implicit(db: Path) -> Iterator[ServerProcess]:
    yield from _served(SmtpServer(db, "--implicit-tls"))


# --------------------------------------------------------------------------- gsasl without -m


def gsasl(protocol: str, server: ServerProcess, password: str, *extra: str) -> tuple[int, str]:
    """``gsasl --smtp|--imap`` as alice, no ``-m``: gsasl picks the mechanism from the server's offer."""
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("LANGUAGE", None)
    proc = subprocess.run(
        [require("gsasl"), f"--{protocol}", "--connect", server.address, "-a", "alice", "-p", password,
         f"--x509-ca-file={server.certificate}", "--verbose", *extra],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def first_response(transcript: str, command: str) -> str:
    """The decoded client-first message gsasl sent after ``command`` (``AUTH X`` / ``. AUTHENTICATE X``)."""
    lines = transcript.splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith(command))
    return base64.b64decode(lines[i + 2]).decode()


@pytest.mark.parametrize(("version", "cb_type", "priority"), [
    ("TLS1.3", "tls-exporter", ()),
    ("TLS1.2", "tls-unique", ("--priority", "NORMAL:-VERS-TLS1.3")),  # GnuTLS negotiates EMS
])
@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_gsasl_default_mechanism_binds_tls_exporter(protocol: str, version: str, cb_type: str,
                                                     priority: tuple[str, ...], smtp: ServerProcess,
                                                     imap: ServerProcess) -> None:
    server = smtp if protocol == "smtp" else imap
    code, transcript = gsasl(protocol, server, PASSWORD, *priority)
    assert code == 0, transcript
    assert f"({version})" in transcript
    command = "AUTH SCRAM-SHA-256-PLUS" if protocol == "smtp" else "AUTHENTICATE SCRAM-SHA-256-PLUS"
    assert first_response(transcript, command).startswith(f"p={cb_type},,n=alice,r=")
    assert ("235 2.7.0" in transcript) if protocol == "smtp" else (" OK [CAPABILITY " in transcript)
    assert "auth ok peer=127.0.0.1 mechanism=SCRAM-SHA-256-PLUS identity=alice" in server.log.read_text()


@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_gsasl_default_mechanism_wrong_password(protocol: str, smtp: ServerProcess, imap: ServerProcess) -> None:
    server = smtp if protocol == "smtp" else imap
    code, transcript = gsasl(protocol, server, "wrong-" + PASSWORD)
    assert code != 0
    assert ("535 5.7.8" in transcript) if protocol == "smtp" else ("NO [AUTHENTICATIONFAILED]" in transcript)
    line = next(x for x in server.log.read_text().splitlines()[::-1] if "auth failed" in x)
    assert "mechanism=SCRAM-SHA-256-PLUS" in line and "reason=invalid-proof" in line
    assert "channel_binding=" not in line  # a wrong password, not a channel-binding failure


# --------------------------------------------------------------------------- openssl s_client -keymatexport


class SClient:
    """``openssl s_client`` exporting EXPORTER-Channel-Binding (32 octets, RFC 9266 §2); lines in and out."""

    def __init__(self, server: ServerProcess, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [require("openssl"), "s_client", "-connect", server.address, "-CAfile", str(server.certificate),
             "-verify_return_error", "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32",
             "-ign_eof", "-nocommands", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.exported = bytes.fromhex(self.until(lambda x: "Keying material:" in x).split(":", 1)[1].strip())

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\r\n"))
        self.lines.put(None)

    def until(self, wanted: object) -> str:
        """The next line ``wanted(line)`` accepts (lines before it are skipped)."""
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            assert line is not None, "openssl s_client ended"
            if wanted(line):  # type: ignore[operator]
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\r\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)


def scram_plus(exported: bytes) -> ScramClient:
    creds = ClientCredentials("alice", PASSWORD, channel_binding=("tls-exporter", exported), server_offers_plus=True)
    return ScramClient("SCRAM-SHA-256-PLUS", creds)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def smtp_scram_over_s_client(server: ServerProcess, flip: bool) -> tuple[bytes, str]:
    """SCRAM-SHA-256-PLUS through s_client's STARTTLS, bound to s_client's exported value; the final reply."""
    s_client = SClient(server, "-starttls", "smtp")
    try:
        exported = s_client.exported
        bound = bytes([exported[0] ^ 1]) + exported[1:] if flip else exported
        client = scram_plus(bound)
        s_client.send("EHLO exporter.test")
        auth = s_client.until(lambda x: x.startswith("250-AUTH ") or x.startswith("250 AUTH "))
        assert "SCRAM-SHA-256-PLUS" in auth.split()
        s_client.until(lambda x: x.startswith("250 "))
        s_client.send("AUTH SCRAM-SHA-256-PLUS " + b64(client.start() or b""))
        challenge = s_client.until(lambda x: x[:3].isdigit())
        assert challenge.startswith("334 "), challenge
        s_client.send(b64(client.step(base64.b64decode(challenge[4:]))))
        reply = s_client.until(lambda x: x[:3].isdigit())
        if reply.startswith("334 "):
            client.step(base64.b64decode(reply[4:]))  # verifies the server's v=
            s_client.send("")
            reply = s_client.until(lambda x: x[:3].isdigit())
        return exported, reply
    finally:
        s_client.close()


def test_openssl_exporter_matches_the_server_binding_smtp_starttls(smtp: ServerProcess) -> None:
    exported, reply = smtp_scram_over_s_client(smtp, flip=False)
    assert len(exported) == 32 and exported != bytes(32)
    assert reply.startswith("235 2.7.0"), reply


def test_openssl_exporter_flipped_is_a_channel_binding_mismatch(smtp: ServerProcess) -> None:
    _, reply = smtp_scram_over_s_client(smtp, flip=True)
    assert reply.startswith("535 5.7.8"), reply  # the client sees a failure, as for any other
    line = next(x for x in smtp.log.read_text().splitlines()[::-1] if "auth failed" in x)
    assert "reason=channel-bindings-dont-match channel_binding=mismatch" in line  # the log says why


def test_openssl_exporter_matches_the_server_binding_imap_implicit_tls(imap_implicit: ServerProcess) -> None:
    s_client = SClient(imap_implicit)
    try:
        client = scram_plus(s_client.exported)
        s_client.until(lambda x: x.startswith("* OK "))
        s_client.send("a AUTHENTICATE SCRAM-SHA-256-PLUS " + b64(client.start() or b""))  # SASL-IR
        challenge = s_client.until(lambda x: x.startswith(("+ ", "a ")))
        assert challenge.startswith("+ "), challenge
        s_client.send(b64(client.step(base64.b64decode(challenge[2:]))))
        final = s_client.until(lambda x: x.startswith(("+ ", "a ")))
        if final.startswith("+ "):
            client.step(base64.b64decode(final[2:]))
            s_client.send("")
            final = s_client.until(lambda x: x.startswith("a "))
        assert final.startswith("a OK "), final
        assert client.verified
    finally:
        s_client.close()


# --------------------------------------------------------------------------- saslkit's client, implicit TLS


@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_saslkit_client_implicit_tls_binds_tls_exporter(protocol: str, smtp_implicit: ServerProcess,
                                                         imap_implicit: ServerProcess) -> None:
    server = smtp_implicit if protocol == "smtp" else imap_implicit
    r = run_client(protocol, server, "SCRAM-SHA-256-PLUS", PASSWORD, "--implicit-tls")
    assert r.returncode == 0, r.stderr
    assert "channel bindings: tls-exporter, tls-server-end-point (pyOpenSSL)" in r.stderr
    assert "* channel binding: tls-exporter (TLSv1.3)" in r.stderr  # -v says which
    assert "(channel binding tls-exporter)" in r.stderr


# --------------------------------------------------------------------------- TLS 1.2 and the extended master secret


def smtp_tls12(server: ServerProcess, *, ems: bool) -> tuple[OpenSSLClientSocket, list[str]]:
    """STARTTLS on TLS 1.2 with or without the extended master secret; the AUTH list after EHLO."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    sock.sendall(b"STARTTLS\r\n")
    assert reader.readline().startswith(b"220 ")
    tls = OpenSSLClientSocket(sock, "127.0.0.1", cafile=str(server.certificate),
                              maximum_version=ssl.TLSVersion.TLSv1_2,
                              options=0 if ems else SSL_OP_NO_EXTENDED_MASTER_SECRET)
    assert tls.version() == "TLSv1.2"
    assert extended_master_secret(tls.connection) is ems
    lines = smtp_command(tls, "EHLO ems.test")
    auth = next(x for x in lines if x[4:].startswith("AUTH "))
    return tls, auth.split()[1:]


def smtp_command(tls: OpenSSLClientSocket, line: str) -> list[str]:
    tls.sendall(line.encode() + b"\r\n")
    data = b""
    while True:
        chunk = tls.recv(65536)
        assert chunk, "connection closed"
        data += chunk
        lines = data.decode().split("\r\n")
        if any(x[:3].isdigit() and x[3:4] == " " for x in lines):
            return [x for x in lines if x]


def tls_unique_login(tls: OpenSSLClientSocket) -> str:
    """SCRAM-SHA-256-PLUS bound to tls-unique (the client's Finished: a full handshake, RFC 5929 §3.1)."""
    finished = tls.connection.get_finished()
    creds = ClientCredentials("alice", PASSWORD, channel_binding=("tls-unique", finished), server_offers_plus=True)
    client = ScramClient("SCRAM-SHA-256-PLUS", creds)
    reply = smtp_command(tls, "AUTH SCRAM-SHA-256-PLUS " + b64(client.start() or b""))[-1]
    if reply.startswith("334 "):
        reply = smtp_command(tls, b64(client.step(base64.b64decode(reply[4:]))))[-1]
        if reply.startswith("334 "):
            client.step(base64.b64decode(reply[4:]))
            reply = smtp_command(tls, "")[-1]
    return reply


def test_tls12_without_extended_master_secret_offers_no_tls_unique(smtp: ServerProcess) -> None:
    tls, offered = smtp_tls12(smtp, ems=False)
    try:
        assert "tls-unique" not in tls.channel_bindings() and "tls-exporter" not in tls.channel_bindings()
        assert "SCRAM-SHA-256" in offered and "HT-SHA-256-ENDP" in offered
        assert not [m for m in offered if m.endswith(("-PLUS", "-UNIQ", "-EXPR"))], offered
        assert tls_unique_login(tls).startswith("534 5.7.9")  # not offered here: refused, not tried
    finally:
        tls.close()


def test_tls12_with_extended_master_secret_offers_and_accepts_tls_unique(smtp: ServerProcess) -> None:
    tls, offered = smtp_tls12(smtp, ems=True)
    try:
        assert {"SCRAM-SHA-256-PLUS", "HT-SHA-256-UNIQ", "HT-SHA-256-EXPR"} <= set(offered)
        assert tls_unique_login(tls).startswith("235 2.7.0")
    finally:
        tls.close()


# --------------------------------------------------------------------------- downgrade


def test_y_flag_while_plus_is_advertised_is_logged_as_a_downgrade(smtp: ServerProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", smtp.port), timeout=TIMEOUT)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    sock.sendall(b"STARTTLS\r\n")
    assert reader.readline().startswith(b"220 ")
    tls = OpenSSLClientSocket(sock, "127.0.0.1", cafile=str(smtp.certificate))
    try:
        assert "SCRAM-SHA-256-PLUS" in " ".join(smtp_command(tls, "EHLO downgrade.test"))
        creds = ClientCredentials("alice", PASSWORD, channel_binding=("tls-exporter", bytes(32)),
                                  server_offers_plus=False)  # a man in the middle stripped -PLUS
        client = ScramClient("SCRAM-SHA-256", creds)
        first = client.start() or b""
        assert first.startswith(b"y,,")
        reply = smtp_command(tls, "AUTH SCRAM-SHA-256 " + b64(first))[-1]
        assert reply.startswith("535 5.7.8"), reply
    finally:
        tls.close()
    line = next(x for x in smtp.log.read_text().splitlines()[::-1] if "auth failed" in x)
    assert "reason=server-does-support-channel-binding channel_binding=downgrade" in line


# --------------------------------------------------------------------------- the stdlib fallback


@pytest.mark.parametrize("opt_in", [False, True])
def test_stdlib_fallback_offer(db: Path, opt_in: bool) -> None:
    server = SmtpServer(db, "--tls-library", "ssl", *(("--plus-with-end-point",) if opt_in else ()))
    try:
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            context = ssl.create_default_context(cafile=str(server.certificate))
            context.maximum_version = version
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
                reader = sock.makefile("rb")
                assert reader.readline().startswith(b"220 ")
                sock.sendall(b"STARTTLS\r\n")
                assert reader.readline().startswith(b"220 ")
                with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"EHLO stdlib.test\r\n")
                    reply = b""
                    while b"\r\n250 " not in reply:
                        chunk = tls.recv(65536)
                        assert chunk
                        reply += chunk
            auth = next(x for x in reply.decode().split("\r\n") if x[4:].startswith("AUTH ")).split()
            assert "HT-SHA-256-ENDP" in auth
            assert not [m for m in auth if m.endswith(("-UNIQ", "-EXPR"))], (version, auth)  # EMS unknown
            assert ("SCRAM-SHA-256-PLUS" in auth) is opt_in, (version, auth)
    finally:
        assert server.stop() == 0


# ------------------------------------------------------------------- scramp and saslkit's client, TLS 1.2 and 1.3


def smtp_starttls(server: ServerProcess, version: ssl.TLSVersion) -> OpenSSLClientSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    sock.sendall(b"STARTTLS\r\n")
    assert reader.readline().startswith(b"220 ")
    tls = OpenSSLClientSocket(sock, "127.0.0.1", cafile=str(server.certificate), maximum_version=version)
    assert tls.version() == version.name.replace("TLSv1_", "TLSv1.")
    return tls


@pytest.mark.parametrize(("version", "cb_type"), [
    (ssl.TLSVersion.TLSv1_3, "tls-server-end-point"),
    (ssl.TLSVersion.TLSv1_2, "tls-server-end-point"),
    (ssl.TLSVersion.TLSv1_2, "tls-unique"),
])
def test_scramp_client_over_the_wire(smtp: ServerProcess, version: ssl.TLSVersion, cb_type: str) -> None:
    """scramp (an independent SCRAM client) binds a real TLS connection: tls-server-end-point, tls-unique."""
    scramp = pytest.importorskip("scramp")
    tls = smtp_starttls(smtp, version)
    try:
        assert "SCRAM-SHA-256-PLUS" in " ".join(smtp_command(tls, "EHLO scramp.test"))
        data = tls.channel_bindings()[cb_type]
        client = scramp.ScramClient(["SCRAM-SHA-256-PLUS"], "alice", PASSWORD, channel_binding=(cb_type, data))
        reply = smtp_command(tls, "AUTH SCRAM-SHA-256-PLUS " + b64(client.get_client_first().encode()))[-1]
        assert reply.startswith("334 "), reply
        client.set_server_first(base64.b64decode(reply[4:]).decode())
        reply = smtp_command(tls, b64(client.get_client_final().encode()))[-1]
        assert reply.startswith("334 "), reply
        client.set_server_final(base64.b64decode(reply[4:]).decode())  # scramp checks the server's v=
        assert smtp_command(tls, "")[-1].startswith("235 2.7.0")
    finally:
        tls.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_saslkit_library_client_tls12_and_tls13(protocol: str, version: ssl.TLSVersion, smtp: ServerProcess,
                                                imap: ServerProcess) -> None:
    """The library client picks tls-exporter on either version (TLS 1.2: with EMS, RFC 9266 §4.2)."""
    from saslkit.imap.client import ImapClient
    from saslkit.net.client import client_tls_context
    from saslkit.smtp.client import SmtpClient

    server = smtp if protocol == "smtp" else imap
    context = client_tls_context(cafile=str(server.certificate))
    context.maximum_version = version
    transcript: list[str] = []
    client_class = SmtpClient if protocol == "smtp" else ImapClient
    with client_class("127.0.0.1", server.port, ssl_context=context, log=transcript.append) as client:
        client.connect("starttls")
        assert client.tls_version == version.name.replace("TLSv1_", "TLSv1.")
        result = client.authenticate(None, "alice", PASSWORD)
    assert result.mechanism == "SCRAM-SHA-512-PLUS" and result.channel_binding == "tls-exporter"
    assert any("(pyOpenSSL)" in line for line in transcript)


# --------------------------------------------------------------------------- without pyOpenSSL


def test_without_pyopenssl_the_stdlib_serves_and_the_offer_says_so(db: Path, tmp_path: Path) -> None:
    """The ``tls`` extra missing (``import OpenSSL`` fails): ``serve`` and ``client`` run on the stdlib's
    ``ssl``; on TLS 1.3 the server then advertises no SCRAM-*-PLUS (no tls-exporter), HT-*-ENDP still, and
    the client has tls-server-end-point only."""
    import select
    import signal
    import sys

    from servers import ENV, READY_RE

    blocker = tmp_path / "no-pyopenssl"
    (blocker / "OpenSSL").mkdir(parents=True)
    (blocker / "OpenSSL" / "__init__.py").write_text("raise ImportError('pyOpenSSL is not installed (test)')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(blocker), ENV.get("PYTHONPATH", "")])}
    log = tmp_path / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "saslkit", "serve", "smtp", "--listen", "127.0.0.1:0",
                                 "--db", str(db), "--failure-delay", "0", "--auth-penalty", "off"],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        m = READY_RE.fullmatch((proc.stdout.readline() if ready else "").strip())
        assert m, log.read_text()
        cert = db.parent / "saslkit-tls.crt"
        r = subprocess.run([sys.executable, "-m", "saslkit", "client", "smtp", f"127.0.0.1:{m.group(2)}",
                            "--mech", "SCRAM-SHA-256", "--user", "alice", "--cafile", str(cert), "-v"],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert r.returncode == 0, r.stderr
        assert "channel bindings: tls-server-end-point (ssl)" in r.stderr  # the client on the stdlib
        auth = next(x for x in r.stderr.splitlines() if x.startswith("S: 250-AUTH ") and "PLAIN" in x).split()
        assert "HT-SHA-256-ENDP" in auth and not [n for n in auth if n.endswith(("-PLUS", "-EXPR", "-UNIQ"))]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()


def test_client_system_trust_is_the_stdlibs(smtp: ServerProcess) -> None:
    """Without --cafile the pyOpenSSL client trusts what the stdlib would (SSL_CERT_FILE here), no more."""
    import sys

    from servers import ENV

    args = [sys.executable, "-m", "saslkit", "client", "smtp", smtp.address, "--mech", "SCRAM-SHA-256-PLUS",
            "--user", "alice", "-v"]
    for trusted in (True, False):
        env = {k: v for k, v in ENV.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        env["SSL_CERT_FILE"] = str(smtp.certificate if trusted else Path(__file__))  # not a CA file: trusts none
        env["SSL_CERT_DIR"] = str(Path(__file__).parent / "reference")
        r = subprocess.run(args, input=PASSWORD + "\n", capture_output=True, text=True, timeout=TIMEOUT, env=env)
        if trusted:
            assert r.returncode == 0, r.stderr
            assert "(pyOpenSSL)" in r.stderr and "(channel binding tls-exporter)" in r.stderr
        else:
            assert r.returncode == 3 and "certificate verification failed" in r.stderr, r.stderr

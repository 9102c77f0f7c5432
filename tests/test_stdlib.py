"""saslkit.stdlib: ``smtp_login`` / ``imap_login`` on ``smtplib.SMTP`` / ``imaplib.IMAP4`` against real
``saslkit serve smtp|imap`` processes, with a non-ASCII user (``jörg``) over SCRAM-SHA-256 and PLAIN, the
strongest common mechanism with channel binding from the socket, REMEMBERME tokens, and a scripted
server that says success without proving itself."""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from servers import ServerProcess, saslkit_run

from saslkit.auth.client import MechanismUnavailable
from saslkit.stdlib import ServerNotVerified, imap_login, smtp_login

USER, PASSWORD = "jörg", "pässwört"


class SmtpServer(ServerProcess):
    protocol = "smtp"
    log_prefix = "stdlib-smtp"


class ImapServer(ServerProcess):
    protocol = "imap"
    log_prefix = "stdlib-imap"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stdlib") / "users.db"
    added = saslkit_run("user", "add", USER, "--db", str(path), "--iterations", "4096", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    return path


@pytest.fixture(scope="module")
def smtp_server(db: Path) -> Iterator[SmtpServer]:
    srv = SmtpServer(db)
    try:
        yield srv
    finally:
        servers.assert_clean_exit(srv, [PASSWORD])


@pytest.fixture(scope="module")
def imap_server(db: Path, smtp_server: SmtpServer) -> Iterator[ImapServer]:
    srv = ImapServer(db)  # after the SMTP server: it reuses the certificate made beside the database
    try:
        yield srv
    finally:
        servers.assert_clean_exit(srv, [PASSWORD])


def _tls(server: ServerProcess) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.check_hostname = False  # the certificate names "localhost"; we dial 127.0.0.1
    return context


def _smtp(server: SmtpServer, starttls: bool = True) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
    if starttls:
        smtp.starttls(context=_tls(server))
    return smtp


def _imap(server: ImapServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    imap.starttls(ssl_context=_tls(server))
    return imap


def _logged(server: ServerProcess, mechanism: str) -> bool:
    return re.search(rf"auth ok .*mechanism={mechanism} identity=\"?{USER}\"?", server.log.read_text()) is not None


def test_smtplib_alone_cannot_log_in_as_jorg(smtp_server: SmtpServer) -> None:
    with _smtp(smtp_server) as smtp, pytest.raises(UnicodeEncodeError):
        smtp.login(USER, PASSWORD)  # what the helper is for


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_smtp_login_jorg(smtp_server: SmtpServer, mechanism: str) -> None:
    with _smtp(smtp_server) as smtp:
        result = smtp_login(smtp, USER, PASSWORD, mechanism)
        assert (result.mechanism, result.channel_binding, result.token) == (mechanism, None, None)
        assert smtp.noop()[0] == 250
    assert _logged(smtp_server, mechanism)


def test_smtp_login_picks_the_strongest_with_channel_binding(smtp_server: SmtpServer) -> None:
    with _smtp(smtp_server) as smtp:
        result = smtp_login(smtp, USER, PASSWORD)
    assert result.mechanism == "SCRAM-SHA-512-PLUS"  # the registry's first, offered after STARTTLS
    assert result.channel_binding == "tls-server-end-point"  # from the server certificate on the socket


def test_smtp_login_wrong_password_is_smtplibs_error(smtp_server: SmtpServer) -> None:
    with _smtp(smtp_server) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as exc:
        smtp_login(smtp, USER, "wrong", "SCRAM-SHA-256")
    assert exc.value.smtp_code == 535


def test_smtp_login_refuses_plain_without_tls(smtp_server: SmtpServer) -> None:
    with _smtp(smtp_server, starttls=False) as smtp, pytest.raises(MechanismUnavailable):
        smtp_login(smtp, USER, PASSWORD, "PLAIN")


def test_smtp_remember_token_then_log_in_with_it(smtp_server: SmtpServer) -> None:
    with _smtp(smtp_server) as smtp:
        first = smtp_login(smtp, USER, PASSWORD, "SCRAM-SHA-256", remember="RANDOM")
    assert first.token
    with _smtp(smtp_server) as smtp:
        again = smtp_login(smtp, USER, first.token, token=True)
    assert again.mechanism.startswith(("HT", "REMEMBERME"))
    assert first.token not in smtp_server.log.read_text()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_imap_login_jorg(imap_server: ImapServer, mechanism: str) -> None:
    imap = _imap(imap_server)
    try:
        result = imap_login(imap, USER, PASSWORD, mechanism)
        assert (result.mechanism, result.channel_binding) == (mechanism, None)
        assert imap.state == "AUTH"
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()
    assert _logged(imap_server, mechanism)


def test_imap_login_strongest_remember_and_token(imap_server: ImapServer) -> None:
    imap = _imap(imap_server)
    try:
        result = imap_login(imap, USER, PASSWORD, remember="RANDOM")
    finally:
        imap.logout()
    assert (result.mechanism, result.channel_binding) == ("SCRAM-SHA-512-PLUS", "tls-server-end-point")
    assert result.token
    imap = _imap(imap_server)
    try:
        again = imap_login(imap, USER, result.token, token=True)
        assert again.mechanism.startswith(("HT", "REMEMBERME")) and imap.state == "AUTH"
    finally:
        imap.logout()


def test_imap_login_wrong_password_is_imaplibs_error(imap_server: ImapServer) -> None:
    imap = _imap(imap_server)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap_login(imap, USER, "wrong", "SCRAM-SHA-256")
    finally:
        imap.logout()


# --------------------------------------------------------------------------- a server that does not prove itself


def _unproven_smtp_server(listener: socket.socket) -> None:
    """Answers SCRAM-SHA-256 with a server-first message, then 235 without ever sending ``v=``."""
    conn, _ = listener.accept()
    with conn, conn.makefile("rwb") as f:
        f.write(b"220 fake ESMTP\r\n")
        f.flush()
        f.readline()
        f.write(b"250-fake\r\n250 AUTH SCRAM-SHA-256\r\n")
        f.flush()
        words = f.readline().split()
        client_first = base64.b64decode(words[2]).decode()
        nonce = client_first.split("r=", 1)[1]
        server_first = f"r={nonce}srv,s={base64.b64encode(b'salt').decode()},i=4096"
        f.write(b"334 " + base64.b64encode(server_first.encode()) + b"\r\n")
        f.flush()
        f.readline()
        f.write(b"235 2.7.0 trust me\r\n")
        f.flush()
        f.readline()


def test_smtp_login_raises_when_the_server_does_not_prove_itself() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_unproven_smtp_server, args=(listener,), daemon=True)
        thread.start()
        with smtplib.SMTP("127.0.0.1", listener.getsockname()[1], timeout=30) as smtp:
            with pytest.raises(ServerNotVerified) as exc:
                smtp_login(smtp, "alice", "pencil", "SCRAM-SHA-256")
            smtp.close()
        thread.join(10)
    assert exc.value.reason


# --------------------------------------------------------------------------- parsers of server replies, fuzzed

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from saslkit.errors import ProtocolError  # noqa: E402
from saslkit.stdlib import _decode_token, _smtp_message  # noqa: E402


@given(st.integers(100, 599), st.binary(max_size=200))
def test_smtp_reply_parser_never_raises(code: int, text: bytes) -> None:
    _smtp_message(code, text)


@given(st.text(max_size=100))
def test_token_decoder_raises_only_protocol_errors(encoded: str) -> None:
    try:
        token = _decode_token(encoded)
    except ProtocolError:
        return
    assert token and "\n" not in token

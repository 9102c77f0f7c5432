"""Embedding the sans-IO sessions: a tiny IMAP server adds LIST through the ``commands`` hook (imaplib
authenticates with SCRAM-SHA-256, then lists), the same hook on the asyncio reference driver, and the
hook's rules for IMAP and SMTP (only commands the session does not own, authentication first, capabilities)."""

from __future__ import annotations

import asyncio
import fnmatch
import imaplib
import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from saslkit import MemoryUserStore, make_user
from saslkit.imap.server import ImapServer
from saslkit.imap.session import AUTHENTICATED, SELECTED, ImapCommand, ImapConfig, ImapReply, ImapSession
from saslkit.reply import Reply
from saslkit.smtp.session import SmtpCommand, SmtpConfig, SmtpSession
from saslkit.stdlib import imap_login

SECRET = b"s" * 32
USERS = MemoryUserStore([make_user("alice", "pencil", iterations=4096)])
MAILBOXES = ("INBOX", "Sent", "Archive/2025", "Archive/2026")


def list_command(session: ImapSession, command: ImapCommand) -> ImapReply | None:
    """LIST (RFC 9051 §6.3.9, without extensions) over a fixed set of mailboxes; anything else: unknown."""
    if command.name != "LIST":
        return None
    if session.state not in (AUTHENTICATED, SELECTED):
        return ImapReply([f"{command.tag} BAD Authenticate first"])
    if len(command.arguments) != 2:
        return ImapReply([f"{command.tag} BAD Syntax: LIST reference mailbox"])
    reference, pattern = command.arguments
    wanted = (reference + pattern).replace("%", "*")
    lines = [f'* LIST () "/" "{name}"' for name in MAILBOXES if fnmatch.fnmatchcase(name, wanted)]
    return ImapReply([*lines, f"{command.tag} OK LIST completed"])


def tiny_imap_server(conn: socket.socket) -> None:
    """The whole driver of a (blocking, one-connection) IMAP server built on ImapSession."""
    session = ImapSession(ImapConfig(hostname="tiny", failure_delay=0), USERS, SECRET, peer="127.0.0.1",
                          commands=list_command)
    with conn, conn.makefile("rwb") as stream:
        stream.write(session.greeting().wire())
        stream.flush()
        while line := stream.readline(20000):
            reply = session.receive_line(line)
            stream.write(reply.wire())
            stream.flush()
            if reply.literal is not None:
                reply = session.receive_literal(stream.read(reply.literal))
                stream.write(reply.wire())
                stream.flush()
            if reply.close:
                break


@pytest.fixture
def tiny_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: tiny_imap_server(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(10)


def test_imaplib_authenticates_then_lists_through_the_hook(tiny_server: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", tiny_server, timeout=30)
    try:
        assert imap_login(imap, "alice", "pencil", "SCRAM-SHA-256").mechanism == "SCRAM-SHA-256"
        typ, data = imap.list('""', "Archive/%")  # imaplib sends its arguments unquoted
        assert typ == "OK"
        assert data == [b'() "/" "Archive/2025"', b'() "/" "Archive/2026"']
        assert imap.select("INBOX")[0] == "OK"  # the session's own commands still work
    finally:
        imap.logout()


def test_reference_asyncio_server_takes_the_hook_too() -> None:
    server = ImapServer(ImapConfig(failure_delay=0, extra_capabilities=("X-LIST-DEMO",)), USERS, SECRET,
                        commands=list_command, auth_penalty=None)
    ports: queue.Queue[int] = queue.Queue()
    stop: list[asyncio.Event] = []
    loop_ready = threading.Event()

    async def main() -> None:
        stop.append(asyncio.Event())
        ports.put((await server.start("127.0.0.1", 0))[1])
        loop_ready.set()
        await server.serve_until(stop[0])

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        imap = imaplib.IMAP4("127.0.0.1", ports.get(timeout=30), timeout=30)
        assert "X-LIST-DEMO" in imap.capabilities
        imap_login(imap, "alice", "pencil", "SCRAM-SHA-256")
        assert imap.list()[1] == [f'() "/" "{name}"'.encode() for name in MAILBOXES]
        imap.logout()
    finally:
        assert loop_ready.wait(30)
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        loop.close()


# --------------------------------------------------------------------------- the hook's rules, sans-IO


def _imap(hook: object = list_command, **config: object) -> ImapSession:
    return ImapSession(ImapConfig(failure_delay=0, **config), USERS, SECRET, tls=True,  # type: ignore[arg-type]
                       commands=hook)  # type: ignore[arg-type]


def _login(session: ImapSession) -> None:
    assert session.receive_line(b"a LOGIN alice pencil\r\n").lines[-1].startswith("a OK")


def test_imap_without_a_hook_is_unchanged() -> None:
    session = ImapSession(ImapConfig(), USERS, SECRET, tls=True)
    assert session.receive_line(b"a LIST \"\" *\r\n").lines == ["a BAD Unknown command"]
    assert not session.may_block(b"a LIST \"\" *\r\n")


def test_imap_hook_sees_only_commands_the_session_does_not_own() -> None:
    seen: list[ImapCommand] = []

    def record(session: ImapSession, command: ImapCommand) -> ImapReply | None:
        seen.append(command)
        return None

    session = _imap(record)
    assert session.receive_line(b"a NOOP\r\n").lines == ["a OK NOOP completed"]
    assert session.receive_line(b"b XFOO atom \"quoted string\" {3}\r\n").literal == 3
    assert session.receive_literal(b"lit").lines == []
    assert session.receive_line(b" tail\r\n").lines == ["b BAD Unknown command"]  # the hook said None
    assert seen == [ImapCommand("b", "XFOO", ["atom", "quoted string", "lit", "tail"], 'atom "quoted string" ')]
    assert session.may_block(b"c XFOO\r\n") and not session.may_block(b"c NOOP\r\n")


def test_imap_hook_reply_and_state() -> None:
    session = _imap()
    assert session.receive_line(b'a LIST "" *\r\n').lines == ["a BAD Authenticate first"]
    _login(session)
    assert session.receive_line(b'b LIST "" INBOX\r\n').lines == ['* LIST () "/" "INBOX"', "b OK LIST completed"]


def test_imap_capabilities_are_configurable() -> None:
    session = _imap(protocol_capabilities=("IMAP4rev1",), extra_capabilities=("LIST-STATUS",))
    caps = session.capabilities()
    assert caps[0] == "IMAP4rev1" and "IMAP4rev2" not in caps and caps[-1] == "LIST-STATUS"
    assert "IMAP4rev2" in ImapSession(ImapConfig(), USERS, SECRET).capabilities()  # the default is unchanged


def _smtp(hook: object, **config: object) -> SmtpSession:
    session = SmtpSession(SmtpConfig(failure_delay=0, **config), USERS, SECRET, tls=True,  # type: ignore[arg-type]
                          commands=hook)  # type: ignore[arg-type]
    session.receive_line(b"EHLO client.example\r\n")
    return session


def test_smtp_hook() -> None:
    seen: list[SmtpCommand] = []

    def xhook(session: SmtpSession, command: SmtpCommand) -> Reply | None:
        seen.append(command)
        if command.verb == "XSTATUS":
            return Reply([f"250 2.0.0 {'authenticated' if session.authenticated else 'anonymous'}"])
        if command.verb == "BDAT":
            return Reply(["250 2.0.0 chunk taken"])
        return None

    session = _smtp(xhook, extra_keywords=("XSTATUS",))
    ehlo = session.receive_line(b"EHLO client.example\r\n").lines
    assert "250-XSTATUS" in ehlo and ehlo[-1] == "250 HELP"
    assert session.receive_line(b"XSTATUS  now \r\n").lines == ["250 2.0.0 anonymous"]
    assert session.receive_line(b"BDAT 10 LAST\r\n").lines[0].startswith("530")  # auth required: before the hook
    assert session.receive_line(b"NOOP\r\n").lines[0].startswith("250")  # owned: never the hook's
    assert session.receive_line(b"XNOPE\r\n").lines == ["500 5.5.1 Command unrecognized"]
    assert session.receive_line(b"AUTH PLAIN AGFsaWNlAHBlbmNpbA==\r\n").lines[0].startswith("235")
    assert session.receive_line(b"BDAT 10 LAST\r\n").lines == ["250 2.0.0 chunk taken"]
    assert [c.verb for c in seen] == ["XSTATUS", "XNOPE", "BDAT"]
    assert seen[0].argument == "now"
    assert session.may_block(b"XSTATUS\r\n") and not session.may_block(b"NOOP\r\n")
    plain = SmtpSession(SmtpConfig(), USERS, SECRET)
    assert plain.receive_line(b"XSTATUS\r\n").lines == ["500 5.5.1 Command unrecognized"]

"""Hostile peers against the real ``saslkit serve smtp`` and ``saslkit serve imap`` on loopback (issue 8).

Raw sockets, no client library: an over-long line then silence, slow senders (a byte at a time, a line
just under the idle timeout), the connection caps (total and per address), the auth penalty growing and
resetting across connections, a deep-JSON REMEMBERME token, and argon2 for a literal IMAP LOGIN kept off
the event loop.  Every server runs with small limits so each test ends in a few seconds; every read
here has a timeout, so a server that holds a connection makes the test fail, never hang.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import ServerProcess, saslkit_run

from saslkit.net.server import FD_RESERVE, LineServer, RateLimitedLog

PASSWORD = "pencil"
HOST = "127.0.0.1"


class SmtpProcess(ServerProcess):
    protocol = "smtp"
    log_prefix = "hostile-smtp"


class ImapProcess(ServerProcess):
    protocol = "imap"
    log_prefix = "hostile-imap"


PROCESSES: dict[str, type[ServerProcess]] = {"smtp": SmtpProcess, "imap": ImapProcess}
#: What each protocol says when it drops a connection at a time limit or a connection cap.
LOGIN_TIMEOUT_REPLY = {"smtp": b"421 4.4.2 Login timeout", "imap": b"* BYE Login timeout"}
IDLE_TIMEOUT_REPLY = {"smtp": b"421 4.4.2 ", "imap": b"* BYE "}
BUSY_REPLY = {"smtp": b"421 4.7.0 ", "imap": b"* BYE "}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "users.db"
    result = saslkit_run("user", "add", "alice", "--db", str(path), "--iterations", "4096", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return path


def start(db: Path, protocol: str, *extra: str) -> Iterator[ServerProcess]:
    server = PROCESSES[protocol](db, "--allow-plaintext-auth", *extra)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log.read_text()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()


@pytest.fixture(scope="module", params=["smtp", "imap"])
def timeouts(request: pytest.FixtureRequest, db: Path) -> Iterator[ServerProcess]:
    yield from start(db, request.param, "--idle-timeout", "1.5", "--login-timeout", "4")


@pytest.fixture(scope="module", params=["smtp", "imap"])
def capped(request: pytest.FixtureRequest, db: Path) -> Iterator[ServerProcess]:
    yield from start(db, request.param, "--max-connections", "4", "--max-connections-per-ip", "3")


@pytest.fixture(scope="module", params=["smtp", "imap"])
def penalized(request: pytest.FixtureRequest, db: Path) -> Iterator[ServerProcess]:
    yield from start(db, request.param, "--auth-penalty", "0.3:1.2")


@pytest.fixture(scope="module", params=["smtp", "imap"])
def plain(request: pytest.FixtureRequest, db: Path) -> Iterator[ServerProcess]:
    yield from start(db, request.param)


# --------------------------------------------------------------------------- a raw peer


class Peer:
    """One raw TCP connection; every read has a deadline."""

    def __init__(self, server: ServerProcess, source: str | None = None, timeout: float = 15.0) -> None:
        self.protocol = server.protocol
        self.sock = socket.create_connection((HOST, server.port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line + b"\n"

    def reply(self, tag: bytes = b"") -> bytes:
        """One reply: SMTP lines up to ``NNN ``; IMAP lines up to ``tag `` (or a ``+`` continuation)."""
        out = b""
        while True:
            line = self.line()
            out += line
            if self.protocol == "smtp" and line[3:4] != b"-":
                return out
            if self.protocol == "imap" and (not tag or line.startswith((tag + b" ", b"+"))):
                return out

    def greeting(self) -> bytes:
        greeting = self.reply()
        if self.protocol == "smtp":
            self.send(b"EHLO hostile.example\r\n")
            self.reply()
        return greeting

    def rest_until_closed(self) -> tuple[bytes, float]:
        """Everything the server sends until it closes, and when that happened (monotonic)."""
        data = self.buffer
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data, time.monotonic()
            data += chunk

    def drip(self, chunk: bytes, interval: float, limit: float) -> tuple[bytes, float]:
        """Send ``chunk`` every ``interval`` seconds, reading meanwhile, until the server closes (then
        what it sent, and when), or fail after ``limit`` seconds."""
        data, started = self.buffer, time.monotonic()
        while time.monotonic() - started < limit:
            try:
                self.send(chunk)
                sent = time.monotonic()
                while (left := interval - (time.monotonic() - sent)) > 0:
                    if select.select([self.sock], [], [], left)[0]:
                        more = self.sock.recv(65536)
                        if not more:
                            return data, time.monotonic()
                        data += more
            except OSError:  # reset: it closed while we were sending
                return data, time.monotonic()
        pytest.fail(f"still open after {limit} s of {chunk!r} every {interval} s; got {data!r}")

    def closed_at_once(self) -> bytes:
        """The server closes this connection without waiting for anything: what it said."""
        self.sock.settimeout(5.0)
        data, _ = self.rest_until_closed()
        return data

    def login(self, password: str = PASSWORD, tag: bytes = b"a") -> bytes:
        if self.protocol == "smtp":
            self.send(b"AUTH PLAIN " + base64.b64encode(f"\0alice\0{password}".encode()) + b"\r\n")
            return self.reply()
        self.send(tag + f" LOGIN alice {password}\r\n".encode())
        return self.reply(tag)

    def noop(self, tag: bytes = b"n") -> bytes:
        self.send(b"NOOP\r\n" if self.protocol == "smtp" else tag + b" NOOP\r\n")
        return self.reply(tag)


def ok(protocol: str, reply: bytes) -> bool:
    return reply.startswith(b"235 ") if protocol == "smtp" else b" OK " in reply.splitlines()[-1]


# --------------------------------------------------------------------------- time limits


def test_over_long_line_then_silence_is_closed(timeouts: ServerProcess) -> None:
    """A line longer than the server buffers, with no newline, then nothing: closed at the idle timeout."""
    peer = Peer(timeouts)
    peer.greeting()
    peer.send(b"A" * 40000)  # past both servers' line limits; the server discards it while waiting for LF
    sent = time.monotonic()
    data, closed = peer.rest_until_closed()
    assert closed - sent < 10, "the connection was held"
    assert IDLE_TIMEOUT_REPLY[timeouts.protocol] in data


def test_byte_at_a_time_sender_is_closed(timeouts: ServerProcess) -> None:
    """One byte every 0.5 s (each gap under the 1.5 s idle timeout), never a whole line: a line must
    arrive within the idle timeout."""
    peer = Peer(timeouts)
    peer.greeting()
    started = time.monotonic()
    _, closed = peer.drip(b"N", 0.5, limit=12)
    assert closed - started < 6


def test_line_just_under_the_idle_timeout_is_closed_at_the_login_timeout(timeouts: ServerProcess) -> None:
    """A NOOP every second (idle timeout 1.5 s) without logging in: closed at the 4 s login timeout."""
    peer = Peer(timeouts)
    peer.greeting()
    opened = time.monotonic()
    data, closed = peer.drip(b"NOOP\r\n" if timeouts.protocol == "smtp" else b"n NOOP\r\n", 1.0, limit=15)
    assert LOGIN_TIMEOUT_REPLY[timeouts.protocol] in data
    assert 3.0 <= closed - opened < 12


def test_login_timeout_ends_once_authenticated(timeouts: ServerProcess) -> None:
    peer = Peer(timeouts)
    peer.greeting()
    opened = time.monotonic()
    assert ok(timeouts.protocol, peer.login())
    while time.monotonic() - opened < 5.5:  # past the 4 s login timeout, each gap under the idle timeout
        assert b"OK" in peer.noop() or peer.protocol == "smtp"
        time.sleep(0.8)
    assert peer.noop()[:3] in (b"250", b"n O")
    peer.close()


# --------------------------------------------------------------------------- connection caps


def open_peers(server: ServerProcess, count: int, source: str | None = None) -> list[Peer]:
    peers = [Peer(server, source) for _ in range(count)]
    for peer in peers:
        peer.greeting()
    return peers


def wait_until_served(server: ServerProcess, source: str | None = None) -> Peer:
    """Closed connections are counted out asynchronously: retry for a while."""
    deadline = time.monotonic() + 10
    while True:
        peer = Peer(server, source)
        first = peer.line()
        if not first.startswith(BUSY_REPLY[server.protocol]) or time.monotonic() > deadline:
            peer.buffer = first + peer.buffer
            return peer
        peer.close()
        time.sleep(0.1)


def test_connection_cap(capped: ServerProcess) -> None:
    """At most 4 connections: the 5th is told so and closed at once, with no session (no greeting)."""
    wait_until_served(capped).close()
    held = open_peers(capped, 3) + open_peers(capped, 1, source="127.0.0.2")
    try:
        started = time.monotonic()
        refused = Peer(capped, source="127.0.0.3").closed_at_once()
        assert time.monotonic() - started < 5
        assert refused.startswith(BUSY_REPLY[capped.protocol]) and b"Too many connections" in refused
        assert b"saslkit" not in refused  # no greeting: no session was made
    finally:
        for peer in held:
            peer.close()
    served = wait_until_served(capped, source="127.0.0.3")
    assert b"saslkit" in served.greeting()
    served.close()


def test_per_ip_cap(capped: ServerProcess) -> None:
    """At most 3 connections from one address; another address still gets in."""
    wait_until_served(capped).close()
    held = open_peers(capped, 3)
    try:
        refused = Peer(capped).closed_at_once()
        assert refused.startswith(BUSY_REPLY[capped.protocol])
        other = Peer(capped, source="127.0.0.2")
        assert b"saslkit" in other.greeting()
        other.close()
    finally:
        for peer in held:
            peer.close()
    assert "refused a connection from 127.0.0." in capped.log.read_text()  # rate-limited: maybe only the first


# --------------------------------------------------------------------------- auth penalty


def timed_login(server: ServerProcess, password: str) -> tuple[bool, float]:
    peer = Peer(server)
    peer.greeting()
    started = time.monotonic()
    reply = peer.login(password)
    elapsed = time.monotonic() - started
    peer.close()
    return ok(server.protocol, reply), elapsed


def test_penalty_grows_across_connections_and_resets(penalized: ServerProcess) -> None:
    """``--auth-penalty 0.3:1.2``: each failure (one per connection, one address) delays the next
    attempt's reply 0.3, 0.6, 1.2, 1.2 s; a success (itself delayed) resets it."""
    failures = [timed_login(penalized, "wrong") for _ in range(4)]
    assert not any(success for success, _ in failures)
    delays = [elapsed for _, elapsed in failures]
    assert delays[1] >= 0.3 and delays[2] >= 0.6 and delays[3] >= 1.2, delays
    success, waited = timed_login(penalized, PASSWORD)
    assert success and waited >= 1.2  # a penalized attempt waits whatever its outcome
    again = timed_login(penalized, "wrong")
    assert not again[0] and again[1] < waited - 0.6, (waited, again)  # reset: no 1.2 s wait this time


# --------------------------------------------------------------------------- malformed tokens


def deep_json_token() -> str:
    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([b64url(b'{"alg":"HS256","typ":"JWT"}'), b64url(b"[" * 1100 + b"]" * 1100), b64url(b"x" * 32)])


def test_deep_json_rememberme_token_is_an_ordinary_failure(plain: ServerProcess) -> None:
    """A JWT-shaped token whose payload nests 1,100 arrays: 535 / NO [AUTHENTICATIONFAILED], never an
    internal error, and no traceback in the log (issue 8 item 3)."""
    peer = Peer(plain)
    peer.greeting()
    token = base64.b64encode(deep_json_token().encode())
    if plain.protocol == "smtp":
        peer.send(b"AUTH REMEMBERME\r\n")  # the command line is short (RFC 5321 §4.5.3.1.4); the response is not
        assert peer.reply() == b"334 \r\n"
        peer.send(token + b"\r\n")
        reply = peer.reply()
        assert reply.startswith(b"535 5.7.8"), reply
    else:
        peer.send(b"t AUTHENTICATE REMEMBERME " + token + b"\r\n")
        reply = peer.reply(b"t")
        assert reply.startswith(b"t NO [AUTHENTICATIONFAILED]"), reply
    assert peer.noop()[:3] in (b"250", b"n O")  # the connection goes on
    peer.close()
    log = plain.log.read_text()
    assert "Traceback" not in log and "Internal error" not in log and "internal error" not in log


# --------------------------------------------------------------------------- argon2 off the event loop


@pytest.mark.parametrize("plain", ["imap"], indirect=True)
def test_literal_login_keeps_argon2_off_the_event_loop(plain: ServerProcess) -> None:
    """4 connections LOGIN with literals (``a LOGIN {5+}`` alice ``{6+}`` pencil) and UNAUTHENTICATE in a
    loop; NOOPs on another connection must not wait for their password hashing (issue 8 item 8).

    Relative, not absolute: with argon2 on the loop the loop is busy nearly all the time, so a NOOP waits
    about half a hash or more; off the loop it waits for the CPU only."""
    stop = threading.Event()
    login_times: list[float] = []
    errors: list[BaseException] = []

    def log_in_repeatedly() -> None:
        try:
            peer = Peer(plain)
            peer.greeting()
            while not stop.is_set():
                started = time.monotonic()
                peer.send(b"a LOGIN {5+}\r\nalice {6+}\r\n" + PASSWORD.encode() + b"\r\n")
                assert ok("imap", peer.reply(b"a"))
                login_times.append(time.monotonic() - started)
                peer.send(b"u UNAUTHENTICATE\r\n")
                peer.reply(b"u")
            peer.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    watcher = Peer(plain)
    watcher.greeting()
    threads = [threading.Thread(target=log_in_repeatedly) for _ in range(4)]
    for t in threads:
        t.start()
    noop_times: list[float] = []
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            started = time.monotonic()
            watcher.noop()
            noop_times.append(time.monotonic() - started)
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    watcher.close()
    assert not errors, errors
    assert len(login_times) >= 4
    noop, login = statistics.median(noop_times), statistics.median(login_times)
    p99 = sorted(noop_times)[min(len(noop_times) - 1, round(0.99 * (len(noop_times) - 1)))]
    print(f"NOOP median {noop * 1000:.1f} ms p99 {p99 * 1000:.1f} ms (n={len(noop_times)}), "
          f"literal LOGIN median {login * 1000:.1f} ms, {len(login_times)} logins")
    assert noop < 0.25 * login, f"NOOP median {noop * 1000:.0f} ms vs literal LOGIN median {login * 1000:.0f} ms"


# --------------------------------------------------------------------------- the driver's logs and fd budget


def test_accept_errors_are_rate_limited_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """asyncio reports each failed accept (EMFILE at the fd limit) to the loop's exception handler; the
    server logs one line per interval with a count, and passes every other report on."""
    server = LineServer(lambda *a: None, name="test-accept")  # type: ignore[arg-type,return-value]
    passed_on: list[dict[str, Any]] = []
    handle = server._loop_exception(lambda loop, context: passed_on.append(context))
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.INFO, logger="saslkit.test-accept"):
            for _ in range(5000):
                handle(loop, {"message": "socket.accept() out of system resource",
                              "exception": OSError(errno.EMFILE, "Too many open files")})
            handle(loop, {"message": "something else", "exception": ValueError("x")})
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "saslkit.test-accept"]
    assert len(lines) == 1 and "Too many open files" in lines[0].getMessage()
    assert server._accept_errors.suppressed == 4999
    assert [c["message"] for c in passed_on] == ["something else"]


def test_rate_limited_log_says_how_many_were_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("saslkit.test-limited"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="saslkit.test-limited"):
        assert limited(logging.ERROR, "boom %d", 1)
        assert not any(limited(logging.ERROR, "boom %d", 2) for _ in range(41))
        now[0] = 10.0
        assert limited(logging.ERROR, "boom %d", 3)
    assert [r.getMessage() for r in caplog.records] == ["boom 1", "boom 3 (41 similar suppressed in the last 10 s)"]


def test_max_connections_is_clamped_to_the_open_file_limit(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    resource = pytest.importorskip("resource")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 256))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: pytest.fail("cannot raise past the hard limit"))
    server = LineServer(lambda *a: None, name="test-fd", max_connections=1000)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.WARNING, logger="saslkit.test-fd"):
        assert server._effective_max_connections() == 256 - FD_RESERVE
    assert "exceeds the open-file limit" in caplog.text
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: raised.append(limits))
    assert server._effective_max_connections() == 1000 and raised == [(1000 + FD_RESERVE, 4096)]

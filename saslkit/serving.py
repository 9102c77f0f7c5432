"""The asyncio driver shared by the reference SMTP and IMAP servers.

A :class:`LineServer` reads lines, hands them to a sans-IO session, and writes
its replies.  Lines the session flags with ``may_block`` (password hashing,
store access) run in a bounded thread pool so one slow login never stalls
other connections.  STARTTLS upgrades the stream in place, refusing any
plaintext pipelined behind the command (RFC 3207 §4.2, RFC 9051 §6.2.1;
CVE-2011-0411), and gives the session the new connection's channel-binding
data.  IMAP literals are read raw when the session asks for them.

Every read and write is bounded in time: ``idle_timeout`` per read (a line,
the rest of an over-long line, a literal, a TLS handshake) and per write, and
``login_timeout`` for the whole unauthenticated phase (Postfix's and Dovecot's
login timeouts), after which the session gets ``login_reply`` and is closed.
At most ``max_connections`` connections are served, ``max_connections_per_ip``
per remote address (an IPv6 client counts by its /64, the network one host
usually holds); the next one gets ``busy_reply`` and is closed at once,
without a session.  Accept errors at the file-descriptor limit are logged at
most once per :data:`LOG_INTERVAL` seconds, with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import ipaddress
import logging
import os
import signal
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .channel_binding import channel_bindings_from_ssl
from .mechanism import Success
from .penalty import address_key

__all__ = ["LineServer", "LineSession", "ensure_certificate", "run_until_signal"]

IDLE_TIMEOUT = 300.0
LOGIN_TIMEOUT = 60.0
MAX_CONNECTIONS = 1000
MAX_CONNECTIONS_PER_IP = 20
CLIENT_IPV6_PREFIX = 64  # one IPv6 host usually holds a whole /64 (RFC 4291 §2.5.4 interface identifiers)
SHUTDOWN_GRACE = 1.0  # seconds open connections get to end by themselves when the server stops
LOG_INTERVAL = 10.0  # at most one line per this many seconds for floods (accept errors, refused connections)
FD_RESERVE = 64  # descriptors kept for the listening socket, stores, logs and refused connections
_ACCEPT_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

T = TypeVar("T")


class SessionReply(Protocol):
    lines: list[str]
    delay: float
    starttls: bool
    close: bool

    def wire(self) -> bytes: ...


class LineSession(Protocol):
    """What :class:`LineServer` needs from a sans-IO session (SMTP or IMAP)."""

    authenticated: Success | None  # None during the login phase (bounded by ``login_timeout``)

    def greeting(self) -> SessionReply: ...

    def receive_line(self, line: bytes) -> SessionReply: ...

    def line_too_long(self, head: bytes) -> SessionReply: ...

    def may_block(self, line: bytes) -> bool: ...

    def tls_started(self, channel_bindings: dict[str, bytes] | None = None) -> None: ...


SessionFactory = Callable[[str, bool, dict[str, bytes]], LineSession]  # (peer, tls, channel bindings)
Observer = Callable[[str, LineSession, SessionReply], None]


class RateLimitedLog:
    """Log one line per ``interval`` seconds at most, saying how many were suppressed since the last."""

    def __init__(self, log: logging.Logger, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def __call__(self, level: int, message: str, *args: object) -> bool:
        """Log ``message % args`` unless one was logged less than ``interval`` ago; True if logged."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        if self.suppressed and self._last is not None:
            message += f" ({self.suppressed} similar suppressed in the last {now - self._last:.0f} s)"
        self._last, self.suppressed = now, 0
        self.log.log(level, message, *args)
        return True


class _Expired(Exception):
    """A read ran out of time; ``reply`` (idle or login timeout) goes to the peer before closing."""

    def __init__(self, reply: bytes, what: str) -> None:
        super().__init__(what)
        self.reply = reply


class _Clock:
    """One connection's time limits: ``idle_timeout`` per read, ``login_timeout`` while unauthenticated."""

    def __init__(self, server: LineServer, session: LineSession) -> None:
        self.server = server
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.login_deadline: float | None = None

    def limit(self) -> tuple[float, bytes, str]:
        """How long the next read may take, what to send if it does not end in time, and why."""
        server = self.server
        if server.login_timeout is None or self.session.authenticated is not None:
            self.login_deadline = None  # a new budget if the session ever goes back (IMAP UNAUTHENTICATE)
            return server.idle_timeout, server.idle_reply, "idle timeout"
        now = self.loop.time()
        if self.login_deadline is None:
            self.login_deadline = now + server.login_timeout
        remaining = self.login_deadline - now
        if remaining < server.idle_timeout:
            return max(remaining, 0.0), server.login_reply or server.idle_reply, "login timeout"
        return server.idle_timeout, server.idle_reply, "idle timeout"

    async def bounded(self, awaitable: Awaitable[T]) -> T:
        timeout, reply, what = self.limit()
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise _Expired(reply, what) from None


class LineServer:
    """Serve one line protocol on one listening socket."""

    def __init__(
        self,
        make_session: SessionFactory,
        *,
        name: str,
        ssl_context: ssl.SSLContext | None = None,
        certificate_der: bytes | None = None,
        implicit_tls: bool = False,
        line_limit: int = 16384,
        workers: int = 8,
        idle_reply: bytes = b"",
        error_reply: bytes = b"",
        observe: Observer | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        login_timeout: float | None = LOGIN_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
        login_reply: bytes = b"",
        busy_reply: bytes = b"",
    ) -> None:
        if idle_timeout <= 0 or (login_timeout is not None and login_timeout <= 0):
            raise ValueError("timeouts must be positive")
        if max_connections < 1 or max_connections_per_ip < 1:
            raise ValueError("connection limits must be at least 1")
        self.make_session = make_session
        self.log = logging.getLogger(f"saslkit.{name}")
        self.ssl_context = ssl_context
        self.certificate_der = certificate_der
        self.implicit_tls = implicit_tls
        self.line_limit = line_limit
        self.idle_reply = idle_reply
        self.error_reply = error_reply
        self.observe = observe
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.login_reply = login_reply
        self.busy_reply = busy_reply
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"saslkit-{name}")
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._open = 0
        self._per_ip: Counter[str] = Counter()
        self._refusals = RateLimitedLog(self.log)
        self._accept_errors = RateLimitedLog(self.log)

    def bindings(self, writer: asyncio.StreamWriter) -> dict[str, bytes]:
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is None:
            return {}
        return channel_bindings_from_ssl(sslobj, server_certificate=self.certificate_der)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else str(peername)
        client = address_key(peer, CLIENT_IPV6_PREFIX)
        if self._open >= self.max_connections or self._per_ip[client] >= self.max_connections_per_ip:
            await self._refuse(writer, peer, client)
            return
        self._open += 1
        self._per_ip[client] += 1
        task = asyncio.current_task()
        if task is not None:  # serve_until lets open connections end before returning
            self._connections[task] = writer
            task.add_done_callback(lambda done: self._connections.pop(done, None))
        try:
            await self._converse(reader, writer, peer)
        finally:
            self._open -= 1
            self._per_ip[client] -= 1
            if self._per_ip[client] <= 0:
                del self._per_ip[client]
            with contextlib.suppress(Exception):
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), self.idle_timeout)

    async def _refuse(self, writer: asyncio.StreamWriter, peer: str, client: str) -> None:
        """Over a connection limit: say so (in plaintext only) and close, without a session."""
        if self._open >= self.max_connections:
            self._refusals(logging.WARNING, "refused a connection from %s: %d connections open (max-connections)",
                           peer, self._open)
        else:
            self._refusals(logging.WARNING, "refused a connection from %s: %d connections from that address "
                           "(max-connections-per-ip)", peer, self._per_ip[client])
        with contextlib.suppress(Exception):
            if self.busy_reply and not self.implicit_tls:
                writer.write(self.busy_reply)
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        if not writer.transport.is_closing():
            writer.transport.abort()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        loop = asyncio.get_running_loop()
        session: LineSession | None = None
        try:
            if self.implicit_tls:
                assert self.ssl_context is not None
                await writer.start_tls(self.ssl_context, ssl_handshake_timeout=min(
                    self.idle_timeout, self.login_timeout or self.idle_timeout))
            session = self.make_session(peer, self.implicit_tls, self.bindings(writer) if self.implicit_tls else {})
            clock = _Clock(self, session)
            await self._send(writer, session.greeting())
            while True:
                try:
                    line = await clock.bounded(reader.readuntil(b"\n"))
                except asyncio.LimitOverrunError:
                    head = await self._discard_long_line(reader, clock)
                    await self._send(writer, session.line_too_long(head))
                    continue
                except asyncio.IncompleteReadError:
                    break
                if session.may_block(line):
                    reply = await loop.run_in_executor(self._pool, session.receive_line, line)
                else:
                    reply = session.receive_line(line)
                literal = getattr(reply, "literal", None)
                if self.observe is not None:
                    self.observe(peer, session, reply)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await self._send(writer, reply)
                if literal is not None:
                    data = await clock.bounded(reader.readexactly(literal))
                    await self._send(writer, session.receive_literal(data))  # type: ignore[attr-defined]
                    continue
                if reply.starttls:
                    assert self.ssl_context is not None
                    if reader._buffer:  # type: ignore[attr-defined]  # no public API for unread bytes
                        self.log.info("peer=%s sent data after STARTTLS; closing", peer)
                        break
                    timeout, _, _ = clock.limit()
                    await writer.start_tls(self.ssl_context, ssl_handshake_timeout=max(timeout, 0.001))
                    session.tls_started(self.bindings(writer))
                if reply.close:
                    break
        except _Expired as exc:
            self.log.info("peer=%s %s; closing", peer, exc)
            with contextlib.suppress(Exception):
                if exc.reply and session is not None:
                    writer.write(exc.reply)
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.log.debug("connection from %s ended: %s", peer, exc)
        except Exception:  # never let one connection's bug take the server down
            self.log.exception("internal error on a connection from %s", peer)
            with contextlib.suppress(Exception):
                writer.write(self.error_reply)

    @staticmethod
    async def _discard_long_line(reader: asyncio.StreamReader, clock: _Clock) -> bytes:
        """Skip the rest of an over-long line, each read bounded by the clock; return its first octets."""
        head = b""
        while True:
            try:
                await clock.bounded(reader.readuntil(b"\n"))
                return head
            except asyncio.LimitOverrunError as exc:
                chunk = await clock.bounded(reader.readexactly(exc.consumed))
                head = head or chunk[:16]

    async def _send(self, writer: asyncio.StreamWriter, reply: SessionReply) -> None:
        if reply.lines:
            writer.write(reply.wire())
            transport = writer.transport
            if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
                await asyncio.wait_for(writer.drain(), self.idle_timeout)  # a peer that does not read
            else:
                # drain() returns at once here; wait_for would yield to the loop, which could read
                # the peer's TLS ClientHello into the buffer checked after STARTTLS.
                await writer.drain()

    def _effective_max_connections(self) -> int:
        """``max_connections``, lowered (with a warning) to what RLIMIT_NOFILE leaves after a reserve."""
        try:
            import resource
        except ImportError:  # not POSIX
            return self.max_connections
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = self.max_connections + FD_RESERVE
        if soft != resource.RLIM_INFINITY and soft < needed and (hard == resource.RLIM_INFINITY or hard > soft):
            raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return self.max_connections
        allowed = max(1, soft - FD_RESERVE)
        self.log.warning("max-connections %d exceeds the open-file limit (%d); serving at most %d",
                         self.max_connections, soft, allowed)
        return allowed

    def _loop_exception(self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
                        ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
        """A loop exception handler that rate-limits accept errors (EMFILE...) and passes the rest on."""

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if str(context.get("message", "")).startswith("socket.accept()") or (
                isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRNOS
            ):
                self._accept_errors(logging.ERROR, "cannot accept connections: %s", exc)
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        return handle

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self.max_connections = self._effective_max_connections()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception(loop.get_exception_handler()))
        # Implicit TLS is started in the handler, after the connection limits and under the time limits.
        self._server = await asyncio.start_server(self._handle, host, port, limit=self.line_limit)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def serve_until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._end_connections()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _end_connections(self) -> None:
        """Let open connections end on their own, then drop the ones still open.

        Python 3.11's ``Server.wait_closed()`` does not wait for connections,
        and ``asyncio.run()`` would then cancel their handlers; 3.11's
        ``StreamReaderProtocol`` logs every cancelled handler as "Exception in
        callback ... CancelledError".  Aborting the transport instead makes the
        handler's read fail, so it returns normally through its ``finally``.
        """
        if not self._connections:
            return
        _, pending = await asyncio.wait(set(self._connections), timeout=SHUTDOWN_GRACE)
        for task in pending:
            writer = self._connections.get(task)
            if writer is not None:
                writer.transport.abort()
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_GRACE)


def run_until_signal(server: LineServer, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
    """Run until SIGTERM or SIGINT; ``on_ready`` is called with the bound address."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = await server.start(host, port)
        on_ready(*bound)
        await server.serve_until(stop)

    asyncio.run(main())


def ensure_certificate(state_dir: Path, hostname: str) -> tuple[Path, Path, bool]:
    """A self-signed certificate for ``hostname`` in ``state_dir`` (created once with ``cryptography``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = state_dir / "saslkit-tls.crt", state_dir / "saslkit-tls.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True

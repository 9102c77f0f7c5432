"""The asyncio driver shared by the reference SMTP and IMAP servers.

A :class:`LineServer` reads lines, hands them to a sans-IO session, and writes
its replies.  Each connection is an :class:`asyncio.BufferedProtocol`: a line the
session says cannot block is answered as soon as it is read (no task, no
future, no thread hop); lines it flags with ``may_block`` (password hashing,
store access) run in a bounded thread pool so one slow login never stalls
other connections, and the connection handles its next line only after that
one's reply.  STARTTLS upgrades the transport in place, refusing any
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
import enum
import errno
import functools
import ipaddress
import logging
import os
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..mechanism import Success
from ..penalty import AuthPenalty, address_key
from . import tls as _tls

__all__ = ["LineServer", "LineSession", "ServedOnLineServer", "ensure_certificate", "run_until_signal"]

IDLE_TIMEOUT = 300.0
LOGIN_TIMEOUT = 60.0
MAX_CONNECTIONS = 1000
MAX_CONNECTIONS_PER_IP = 20
CLIENT_IPV6_PREFIX = 64  # one IPv6 host usually holds a whole /64 (RFC 4291 §2.5.4 interface identifiers)
SHUTDOWN_GRACE = 1.0  # seconds open connections get to end by themselves when the server stops
LOG_INTERVAL = 10.0  # at most one line per this many seconds for floods (accept errors, refused connections)
FD_RESERVE = 64  # descriptors kept for the listening socket, stores, logs and refused connections
RECEIVE_BUFFER = 65536  # octets read per recv_into
_ACCEPT_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

_TIMER_SLACK = 0.001  # asyncio runs a timer up to its clock resolution early


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


@functools.lru_cache(maxsize=4096)
def _client_key(peer: str) -> str:
    """What the per-IP cap counts ``peer`` under (parsed once per address, not once per connection)."""
    return address_key(peer, CLIENT_IPV6_PREFIX)


class _Phase(enum.Enum):
    """What a connection is doing; input is read and the read timer runs only in ``READING``."""

    TLS = "TLS handshake"
    READING = "waiting for input"
    WORKING = "a line in the pool, or a reply's delay"
    CLOSED = "closed"


class _Connection(asyncio.BufferedProtocol):
    """One peer: lines from the transport to the session, replies back, within the server's limits.

    Lines the session says cannot block are answered inside ``buffer_updated``
    (no task, no future, no executor hop); the others go to the pool, and the
    lines behind one wait in the buffer (reading pauses only past
    ``buffer_limit``), so a connection handles one line at a time, in order.
    One lazily re-armed timer bounds each wait for input, the login phase and
    each wait for a peer that does not read its replies.
    """

    def __init__(self, server: LineServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.client = ""
        self.session: LineSession | None = None
        self.phase = _Phase.TLS
        self.buffer = bytearray()
        self.literal: int | None = None  # octets to read raw for the session (IMAP literals)
        self.skipped_head: bytes | None = None  # the first octets of an over-long line being skipped
        self.eof = False
        self.counted = False
        self.reading = True
        self.write_paused = False
        self.login_deadline: float | None = None
        self.deadline = 0.0  # when the current wait (input, or a peer reading our replies) ends
        self.expiry = (b"", "idle timeout")
        self.timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.tls_task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else str(peername)
        self.client = _client_key(self.peer)
        if server._open >= server.max_connections or server._per_ip[self.client] >= server.max_connections_per_ip:
            self.phase = _Phase.CLOSED
            server._refuse(transport, self.peer, self.client)
            return
        server._open += 1
        server._per_ip[self.client] += 1
        server._connections.add(self)
        self.counted = True
        if server.implicit_tls:  # started here, after the connection limits and under the time limits
            self._start_tls(min(server.idle_timeout, server.login_timeout or server.idle_timeout))
            return
        self._guarded(self._begin, False)

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads into: one buffer per server (no allocation per read, unlike
        ``data_received``'s fresh bytes object, whose 256 KiB allocation can cost an mmap per read)."""
        return self.server._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self.buffer += self.server._receive_view[:nbytes]
        if self.phase is _Phase.READING and not self.write_paused:
            self._guarded(self._serve_input)
        elif len(self.buffer) > self.server.buffer_limit:
            self._sync_reading()

    def eof_received(self) -> bool:
        self.eof = True
        if self.phase is _Phase.READING and not self.write_paused:
            self._close()
        return self.transport is not None and self.transport.get_extra_info("ssl_object") is None

    def pause_writing(self) -> None:
        """The peer is not reading: handle no more lines until it does, for at most ``idle_timeout``."""
        self.write_paused = True
        self.deadline = self.loop.time() + self.server.idle_timeout
        self._arm()
        self._sync_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.phase is _Phase.READING:
            self._guarded(self._serve_input)

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = _Phase.CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if exc is not None:
            self.server.log.debug("connection from %s ended: %s", self.peer, exc)
        if self.counted:
            self.counted = False
            server = self.server
            server._open -= 1
            server._per_ip[self.client] -= 1
            if server._per_ip[self.client] <= 0:
                del server._per_ip[self.client]
            server._connections.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # -- the conversation

    def _begin(self, tls: bool) -> None:
        """A new session (after the handshake, with implicit TLS) and its greeting."""
        assert self.transport is not None
        server = self.server
        self.session = server.make_session(self.peer, tls, server.bindings(self.transport) if tls else {})
        self.phase = _Phase.READING
        self._write(self.session.greeting())
        self._serve_input()

    def _serve_input(self) -> None:
        """Handle every complete line (or literal) buffered, until one must wait; then wait for input."""
        session = self.session
        assert session is not None
        buffer, limit = self.buffer, self.server.line_limit
        while self.phase is _Phase.READING and not self.write_paused:
            if self.literal is not None:
                if len(buffer) < self.literal:
                    break
                data = bytes(buffer[:self.literal])
                del buffer[:self.literal]
                self.literal = None
                self._write(session.receive_literal(data))  # type: ignore[attr-defined]
                continue
            end = buffer.find(b"\n")
            if self.skipped_head is not None:  # the rest of an over-long line
                if end < 0:
                    buffer.clear()
                    break
                del buffer[:end + 1]
                head, self.skipped_head = self.skipped_head, None
                self._write(session.line_too_long(head))
                continue
            if end < 0:
                if len(buffer) > limit:
                    self.skipped_head = bytes(buffer[:16])
                    buffer.clear()
                break
            if end > limit:  # StreamReader's limit: up to ``line_limit`` octets before the LF
                head = bytes(buffer[:16])
                del buffer[:end + 1]
                self._write(session.line_too_long(head))
                continue
            line = bytes(buffer[:end + 1])
            del buffer[:end + 1]
            if session.may_block(line):
                self.phase = _Phase.WORKING
                self.server._pool.submit(self._work, session, line)
                break
            self._reply(session.receive_line(line))
        if self.phase is _Phase.READING and not self.write_paused:
            if self.eof:
                self._close()
                return
            self._await_input()
        self._sync_reading()

    def _work(self, session: LineSession, line: bytes) -> None:
        """In a pool thread: handle a line that may block, then hand the outcome back to the loop."""
        try:
            outcome: SessionReply | BaseException = session.receive_line(line)
        except BaseException as exc:  # re-raised on the loop by _line_done, as a bug of this connection
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone
            self.loop.call_soon_threadsafe(self._line_done, outcome)

    def _line_done(self, outcome: SessionReply | BaseException) -> None:
        if self.phase is not _Phase.CLOSED:
            self._guarded(self._resume, outcome)

    def _resume(self, outcome: SessionReply | BaseException) -> None:
        if isinstance(outcome, BaseException):
            raise outcome
        self.phase = _Phase.READING
        self._reply(outcome)
        self._serve_input()

    def _reply(self, reply: SessionReply) -> None:
        """Observe, delay if asked, send; then read a literal, start TLS or close as the reply says."""
        server = self.server
        if server.observe is not None:
            assert self.session is not None
            server.observe(self.peer, self.session, reply)
        if reply.delay:
            self.phase = _Phase.WORKING
            self.loop.call_later(reply.delay, self._delayed, reply)
            return
        self._send(reply)

    def _delayed(self, reply: SessionReply) -> None:
        if self.phase is not _Phase.CLOSED:
            self._guarded(self._send_then_serve, reply)

    def _send_then_serve(self, reply: SessionReply) -> None:
        self.phase = _Phase.READING
        self._send(reply)
        if self.phase is _Phase.READING:
            self._serve_input()

    def _send(self, reply: SessionReply) -> None:
        self._write(reply)
        literal = getattr(reply, "literal", None)
        if literal is not None:
            self.literal = literal
        elif reply.starttls:
            if self.buffer:  # RFC 3207 §4.2: nothing may be pipelined behind STARTTLS (CVE-2011-0411)
                self.server.log.info("peer=%s sent data after STARTTLS; closing", self.peer)
                self._close()
                return
            timeout, _, _ = self._limit(self.loop.time())
            self._start_tls(max(timeout, 0.001))
        elif reply.close:
            self._close()

    def _write(self, reply: SessionReply) -> None:
        if reply.lines and self.transport is not None:
            self.transport.write(reply.wire())

    # -- TLS

    def _start_tls(self, handshake_timeout: float) -> None:
        self.phase = _Phase.TLS
        self._sync_reading()
        self.tls_task = self.loop.create_task(self._tls(handshake_timeout))

    async def _tls(self, handshake_timeout: float) -> None:
        server = self.server
        assert self.transport is not None and server.ssl_context is not None
        try:
            if isinstance(server.ssl_context, _tls.OpenSSLServerContext):  # tls-exporter (RFC 9266)
                transport: asyncio.Transport | None = await _tls.start_tls(
                    self.transport, self, server.ssl_context, handshake_timeout=handshake_timeout)
            else:
                transport = await self.loop.start_tls(self.transport, self, server.ssl_context, server_side=True,
                                                      ssl_handshake_timeout=handshake_timeout)
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError) as exc:
            server.log.debug("connection from %s ended: %s", self.peer, exc)
            self._handshake_failed()
            return
        except Exception:
            server.log.exception("internal error on a connection from %s", self.peer)
            self._handshake_failed()
            return
        if transport is None or self.phase is _Phase.CLOSED:
            self._handshake_failed()
            return
        self.transport, self.reading = transport, True
        if self.session is None:
            self._guarded(self._begin, True)
            return
        self.phase = _Phase.READING
        self._guarded(self._tls_started)

    def _handshake_failed(self) -> None:
        """Drop the connection, and count it as ended: asyncio's TLS layer never calls our connection_lost
        when the handshake fails (or times out), which would leave it counted against the limits."""
        self._abort()
        self.connection_lost(None)

    def _tls_started(self) -> None:
        assert self.session is not None and self.transport is not None
        self.session.tls_started(self.server.bindings(self.transport))
        self._serve_input()

    # -- time limits, flow control, closing

    def _limit(self, now: float) -> tuple[float, bytes, str]:
        """How long the next read may take, what to send if it does not end in time, and why."""
        server, session = self.server, self.session
        if server.login_timeout is None or session is None or session.authenticated is not None:
            self.login_deadline = None  # a new budget if the session ever goes back (IMAP UNAUTHENTICATE)
            return server.idle_timeout, server.idle_reply, "idle timeout"
        if self.login_deadline is None:
            self.login_deadline = now + server.login_timeout
        remaining = self.login_deadline - now
        if remaining < server.idle_timeout:
            return max(remaining, 0.0), server.login_reply or server.idle_reply, "login timeout"
        return server.idle_timeout, server.idle_reply, "idle timeout"

    def _await_input(self) -> None:
        now = self.loop.time()
        timeout, reply, what = self._limit(now)
        self.deadline, self.expiry = now + timeout, (reply, what)
        self._arm()

    def _arm(self) -> None:
        """Make the timer fire at or before ``deadline`` (a later deadline re-arms it when it fires)."""
        if self.timer is not None:
            if self.timer.when() <= self.deadline:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(self.deadline, self._tick)

    def _tick(self) -> None:
        self.timer = None
        if self.phase is not _Phase.READING and not self.write_paused:
            return  # no wait is bounded now; the next one arms the timer again
        if self.loop.time() + _TIMER_SLACK < self.deadline:
            self._arm()
        elif self.write_paused:
            self.server.log.debug("connection from %s ended: the peer does not read", self.peer)
            self._abort()
        else:
            reply, what = self.expiry
            self.server.log.info("peer=%s %s; closing", self.peer, what)
            if reply and self.session is not None and self.transport is not None:
                self.transport.write(reply)
            self._close()

    def _sync_reading(self) -> None:
        """Stop reading during a TLS handshake, and while lines cannot be handled and input piles up."""
        if self.phase is _Phase.TLS:
            wanted = False
        elif self.phase is _Phase.READING and not self.write_paused:
            wanted = True
        else:  # a line in the pool: keep reading what fits (no epoll change per pooled line)
            wanted = len(self.buffer) <= self.server.buffer_limit
        if wanted != self.reading and self.transport is not None and not self.transport.is_closing():
            if wanted:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()
            self.reading = wanted

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one step of the conversation; a bug in it ends this connection, never the server."""
        try:
            step(*args)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            self.server.log.debug("connection from %s ended: %s", self.peer, exc)
            self._close()
        except Exception:
            self.server.log.exception("internal error on a connection from %s", self.peer)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(self.server.error_reply)
            self._close()

    def _close(self) -> None:
        """Close once the replies are sent; drop the connection if that takes longer than ``idle_timeout``."""
        self.phase = _Phase.CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():
                self.loop.call_later(self.server.idle_timeout, self._abort)

    def _abort(self) -> None:
        self.phase = _Phase.CLOSED
        if self.transport is not None and not self.lost.done():
            self.transport.abort()


class LineServer:
    """Serve one line protocol on one listening socket."""

    def __init__(
        self,
        make_session: SessionFactory,
        *,
        name: str,
        ssl_context: _tls.ServerTlsContext | None = None,
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
        self.buffer_limit = 2 * line_limit  # unread input kept while a line is handled (StreamReader's bound)
        self.idle_reply = idle_reply
        self.error_reply = error_reply
        self.observe = observe
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.login_reply = login_reply
        self.busy_reply = busy_reply
        self._receive_view = memoryview(bytearray(RECEIVE_BUFFER))  # copied out at once, so shared
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"saslkit-{name}",
                                        initializer=yield_to_event_loop)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._open = 0
        self._per_ip: Counter[str] = Counter()
        self._refusals = RateLimitedLog(self.log)
        self._accept_errors = RateLimitedLog(self.log)

    def bindings(self, transport: asyncio.BaseTransport) -> dict[str, bytes]:
        """The channel bindings this server can verify on ``transport`` (see :func:`.tls.transport_bindings`)."""
        return _tls.transport_bindings(transport, server_certificate=self.certificate_der)

    def _refuse(self, transport: asyncio.Transport, peer: str, client: str) -> None:
        """Over a connection limit: say so (in plaintext only) and close, without a session."""
        if self._open >= self.max_connections:
            self._refusals(logging.WARNING, "refused a connection from %s: %d connections open (max-connections)",
                           peer, self._open)
        else:
            self._refusals(logging.WARNING, "refused a connection from %s: %d connections from that address "
                           "(max-connections-per-ip)", peer, self._per_ip[client])
        if self.busy_reply and not self.implicit_tls:
            transport.write(self.busy_reply)
        transport.close()
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(5.0, transport.abort)  # a no-op once it has closed

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
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
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

        Python 3.11's ``Server.wait_closed()`` does not wait for connections;
        each connection's ``lost`` future says when it has ended, and the ones
        still open after :data:`SHUTDOWN_GRACE` are aborted.
        """
        if not self._connections:
            return
        open_now = {conn.lost: conn for conn in self._connections}
        _, pending = await asyncio.wait(set(open_now), timeout=SHUTDOWN_GRACE)
        for lost in pending:
            open_now[lost]._abort()
        if pending:
            await asyncio.wait(pending, timeout=SHUTDOWN_GRACE)


#: How much nicer than the event loop the workers run (Linux: nice is per thread, and argon2's lane threads
#: inherit it), so hashing on every core never delays the loop's replies on a small machine.
WORKER_NICENESS = 5


def yield_to_event_loop() -> None:
    """Thread-pool initializer: lower this worker thread's scheduling priority (best effort, Linux)."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICENESS)
    except OSError:
        pass


@dataclass(kw_only=True)
class ServedOnLineServer:
    """What every reference server shares: TLS, the pool, time and connection limits, the auth penalty
    (keyword arguments), and the listening half (``_server`` is its :class:`LineServer`)."""

    ssl_context: _tls.ServerTlsContext | None = None  # pyOpenSSL's gives tls-exporter (saslkit.net.tls)
    certificate_der: bytes | None = None  # our certificate, for tls-server-end-point (RFC 5929 §4)
    implicit_tls: bool = False
    workers: int = 8
    idle_timeout: float = IDLE_TIMEOUT
    login_timeout: float | None = LOGIN_TIMEOUT  # None: no limit on the unauthenticated phase
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP
    auth_penalty: AuthPenalty | None = field(default_factory=AuthPenalty)
    _server: LineServer = field(init=False, repr=False)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        return await self._server.start(host, port)

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then let open connections end (see :meth:`LineServer.serve_until`)."""
        await self._server.serve_until(stop)

    def run(self, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
        """Run until SIGTERM or SIGINT; ``on_ready`` is called with the bound address."""
        run_until_signal(self._server, host, port, on_ready)

    @property
    def open_connections(self) -> int:
        """Connections served now (for metrics)."""
        return self._server._open

    def instrument(self, observe: Observer, wrap_session: Callable[[Any], Any] | None = None) -> None:
        """Also call ``observe(peer, session, reply)`` after every reply, and pass each new session through
        ``wrap_session`` (both for metrics: :class:`saslkit.metrics.ServerMetrics`)."""
        inner_observe, make_session = self._server.observe, self._server.make_session

        def both(peer: str, session: Any, reply: Any) -> None:
            if inner_observe is not None:
                inner_observe(peer, session, reply)
            observe(peer, session, reply)

        self._server.observe = both
        if wrap_session is not None:
            self._server.make_session = lambda *args: wrap_session(make_session(*args))


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

"""``saslkit serve dovecot-auth``: the Dovecot auth protocol on a UNIX or TCP socket, on asyncio.

Each connection is a :class:`~saslkit.dovecot.session.DovecotAuthSession`; its
steps that may block (password hashing, store access) run in a bounded thread
pool, the others inline, and several requests of one connection proceed at once
(a penalised failure delays only its own reply).  The UNIX socket is created
with the configured mode (default 0660) under a matching umask, so it is never
reachable more widely even for an instant, optionally given to a group (Postfix's
``postfix``, Exim's ``Debian-exim``); a stale socket file left by a crash is
replaced, a live one or any other file is refused.  SIGTERM and SIGINT stop the
listener, remove the socket file and give open connections a moment to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import grp
import itertools
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..auth.engine import AuthOutcome
from ..auth.events import FIELDS_ATTRIBUTE, AuthEvent
from ..credentials import UserStore
from ..errors import UsageError
from ..net.server import SHUTDOWN_GRACE, RateLimitedLog, yield_to_event_loop
from ..penalty import AuthPenalty
from ..tokens import SubmissionTokens, TokenService
from .codec import MAX_LINE
from .session import DovecotAuthConfig, DovecotAuthSession, Output, Step

__all__ = ["DovecotAuthServer", "Listen", "parse_listen"]

_log = logging.getLogger("saslkit.dovecot-auth")

HANDSHAKE_TIMEOUT = 30.0  # seconds a new client has to send VERSION
IDLE_TIMEOUT = 3600.0
MAX_CONNECTIONS = 1000  # MTA processes at once (Postfix: one per smtpd process)
DEFAULT_SOCKET_MODE = 0o660


@dataclass(frozen=True)
class Listen:
    """Where to listen: a UNIX socket ``path``, or ``host``:``port``."""

    path: Path | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """``unix:PATH`` (or an absolute path), or ``HOST:PORT``."""
    if text.startswith("unix:") or text.startswith("/"):
        path = text.removeprefix("unix:")
        if not path:
            raise UsageError("unix: needs a socket path")
        return Listen(path=Path(path))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"expected unix:PATH or HOST:PORT, not {text!r}")
    return Listen(host=host.strip("[]") or "127.0.0.1", port=int(port))


class _Connection(asyncio.Protocol):
    """One client: lines to the session, steps to the pool, outputs back (delayed as they say)."""

    def __init__(self, server: DovecotAuthServer, session: DovecotAuthSession) -> None:
        self.server = server
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.opened = self.last_input = server.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        if len(server._connections) >= server.max_connections:
            server._refusals(logging.WARNING, "refused a client: %d connections open (max-connections)",
                             len(server._connections))
            self.closed = True
            transport.close()
            return
        server._connections.add(self)
        transport.write(self.session.handshake())
        self._rearm()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_input = self.server.clock()
        self.buffer += data
        while not self.closed:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE + 1:
                    self._output(self.session.line_too_long())
                break
            if end > MAX_LINE + 1:
                self._output(self.session.line_too_long())
                break
            line = bytes(self.buffer[:end + 1])
            del self.buffer[:end + 1]
            self._handle(self.session.receive_line(line))

    def eof_received(self) -> bool | None:
        self._close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.session.close()
        if self.timer is not None:
            self.timer.cancel()
        self.server._connections.discard(self)
        if exc is not None:
            _log.debug("client connection ended: %s", exc)

    # -- steps and outputs

    def _handle(self, result: Output | Step) -> None:
        if isinstance(result, Output):
            self._output(result)
        elif result.may_block:
            future = self.server._pool.submit(result.run)
            future.add_done_callback(functools.partial(self._from_pool, result.request_id))
        else:
            self._step_done(result.request_id, self._run(result.run))

    @staticmethod
    def _run(run: Callable[[], AuthOutcome]) -> AuthOutcome | BaseException:
        try:
            return run()
        except Exception as exc:  # a bug: this connection ends, never the server
            return exc

    def _from_pool(self, request_id: int, future: Future[AuthOutcome]) -> None:
        exc = future.exception()
        outcome: AuthOutcome | BaseException = exc if exc is not None else future.result()
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone
            self.loop.call_soon_threadsafe(self._step_done, request_id, outcome)

    def _step_done(self, request_id: int, outcome: AuthOutcome | BaseException) -> None:
        if self.closed:
            return
        if isinstance(outcome, BaseException):
            _log.error("internal error on request %d: %s", request_id, type(outcome).__name__,
                       exc_info=(type(outcome), outcome, outcome.__traceback__))
            self._close()
            return
        self._output(self.session.complete(request_id, outcome))

    def _output(self, output: Output) -> None:
        for entry in output.log:
            _log.info("%s", entry.text, extra={FIELDS_ATTRIBUTE: entry.fields} if entry.fields else None)
        observe = self.server.observe
        if observe is not None:
            for event in output.events:
                observe(event, output, self.session)
        if output.delay > 0:
            self.loop.call_later(output.delay, self._write, output)
        else:
            self._write(output)

    def _write(self, output: Output) -> None:
        if self.closed or self.transport is None:
            return
        if output.wire:
            self.transport.write(output.wire)
        if output.close:
            self._close()
            return
        self._rearm()

    # -- time limits

    def _deadline(self) -> tuple[float, str]:
        """When this connection next needs attention, and why: the handshake, a request waiting for its
        client, or idleness (no request in flight and no input)."""
        server, session = self.server, self.session
        if session.client_minor is None:
            return self.opened + server.handshake_timeout, "handshake"
        request = session.next_deadline
        if session.requests_in_flight:
            return (request, "request") if request is not None else (float("inf"), "working")
        return self.last_input + server.idle_timeout, "idle"

    def _rearm(self) -> None:
        when, _ = self._deadline()
        if when == float("inf"):
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(max(when - self.server.clock(), 0.0), self._tick)

    def _tick(self) -> None:
        self.timer = None
        if self.closed:
            return
        when, why = self._deadline()
        if self.server.clock() + 0.001 < when:
            self._rearm()
        elif why == "handshake":
            _log.info("a client sent no VERSION within %.0f s; closing", self.server.handshake_timeout)
            self._close()
        elif why == "idle":
            _log.info("closing a client connection idle for %.0f s", self.server.idle_timeout)
            self._close()
        else:
            self._write(self.session.expire())

    def _close(self) -> None:
        self.closed = True
        self.session.close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


@dataclass(kw_only=True)
class DovecotAuthServer:
    """The auth service: one :class:`DovecotAuthSession` per client connection."""

    config: DovecotAuthConfig
    users: UserStore
    server_secret: bytes = field(repr=False)
    tokens: TokenService | None = None
    stokens: SubmissionTokens | None = None
    auth_penalty: AuthPenalty | None = field(default_factory=lambda: AuthPenalty(2.0, 8.0))
    workers: int = 8
    max_connections: int = MAX_CONNECTIONS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    #: Close a connection with no request in flight and no input for this long.  Postfix reconnects
    #: at once on a UNIX socket (its write fails); on TCP its next login would see a 454.
    idle_timeout: float = IDLE_TIMEOUT
    #: Called with each outcome event, its output (``delay``: the penalty) and the session (metrics).
    observe: Callable[[AuthEvent, Output, DovecotAuthSession], None] | None = field(default=None, repr=False)

    @property
    def open_connections(self) -> int:
        return len(self._connections)
    socket_mode: int = DEFAULT_SOCKET_MODE
    socket_group: str | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        self._connections: set[_Connection] = set()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="saslkit-dovecot-auth",
                                        initializer=yield_to_event_loop)
        self._server: asyncio.AbstractServer | None = None
        self._socket_path: Path | None = None
        self._ids = itertools.count(1)
        self._refusals = RateLimitedLog(_log)

    def _session(self) -> DovecotAuthSession:
        return DovecotAuthSession(self.config, self.users, self.server_secret, tokens=self.tokens,
                                  stokens=self.stokens, penalty=self.auth_penalty, connection_id=next(self._ids),
                                  clock=self.clock)

    async def start(self, listen: Listen) -> str:
        """Listen; returns the bound address (``unix:PATH`` or ``HOST:PORT``; port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        if listen.path is None:
            self._server = await loop.create_server(lambda: _Connection(self, self._session()),
                                                    listen.host, listen.port)
            host, port = self._server.sockets[0].getsockname()[:2]
            return f"{host}:{port}"
        sock = bind_unix_socket(listen.path, self.socket_mode, self.socket_group)
        self._socket_path = listen.path
        self._server = await loop.create_unix_server(lambda: _Connection(self, self._session()), sock=sock)
        return f"unix:{listen.path}"

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then stop listening, remove the socket file, end connections."""
        await stop.wait()
        if self._server is not None:
            self._server.close()
        if self._socket_path is not None:
            with contextlib.suppress(OSError):
                self._socket_path.unlink()
        if self._connections:
            await asyncio.sleep(0)
            deadline = asyncio.get_running_loop().time() + SHUTDOWN_GRACE
            while self._connections and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            for conn in list(self._connections):
                if conn.transport is not None:
                    conn.transport.abort()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self, listen: Listen, on_ready: Callable[[str], None]) -> None:
        """Run until SIGTERM or SIGINT; ``on_ready`` gets the bound address."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            on_ready(await self.start(listen))
            await self.serve_until(stop)

        asyncio.run(main())


def bind_unix_socket(path: Path, mode: int, group: str | None) -> socket.socket:
    """A listening UNIX socket at ``path`` with ``mode`` (and ``group``), never wider for an instant.

    A stale socket (nothing accepts on it) is replaced; a live one, or a path that is not a
    socket, is a :class:`UsageError`.
    """
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise UsageError(f"no such group: {group}") from None
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # at startup, before any thread: the socket is born with ``mode``
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot create the socket {path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(old_umask)
    try:
        if gid != -1:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise UsageError(f"cannot set up the socket {path}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def _remove_stale_socket(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise UsageError(f"cannot check the existing socket {path}: {exc.strerror}") from exc
        path.unlink()  # stale: left by a server that is gone
        return
    finally:
        probe.close()
    raise UsageError(f"{path} is in use by a running server")

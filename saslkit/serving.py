"""The asyncio driver shared by the reference SMTP and IMAP servers.

A :class:`LineServer` reads lines, hands them to a sans-IO session, and writes
its replies.  Lines the session flags with ``may_block`` (password hashing,
store access) run in a bounded thread pool so one slow login never stalls
other connections.  STARTTLS upgrades the stream in place, refusing any
plaintext pipelined behind the command (RFC 3207 §4.2, RFC 9051 §6.2.1;
CVE-2011-0411), and gives the session the new connection's channel-binding
data.  IMAP literals are read raw when the session asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import signal
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from .channel_binding import channel_bindings_from_ssl

__all__ = ["LineServer", "LineSession", "ensure_certificate", "run_until_signal"]

IDLE_TIMEOUT = 300.0
SHUTDOWN_GRACE = 1.0  # seconds open connections get to end by themselves when the server stops


class SessionReply(Protocol):
    lines: list[str]
    delay: float
    starttls: bool
    close: bool

    def wire(self) -> bytes: ...


class LineSession(Protocol):
    """What :class:`LineServer` needs from a sans-IO session (SMTP or IMAP)."""

    def greeting(self) -> SessionReply: ...

    def receive_line(self, line: bytes) -> SessionReply: ...

    def line_too_long(self, head: bytes) -> SessionReply: ...

    def may_block(self, line: bytes) -> bool: ...

    def tls_started(self, channel_bindings: dict[str, bytes] | None = None) -> None: ...


SessionFactory = Callable[[str, bool, dict[str, bytes]], LineSession]  # (peer, tls, channel bindings)
Observer = Callable[[str, LineSession, SessionReply], None]


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
    ) -> None:
        self.make_session = make_session
        self.log = logging.getLogger(f"saslkit.{name}")
        self.ssl_context = ssl_context
        self.certificate_der = certificate_der
        self.implicit_tls = implicit_tls
        self.line_limit = line_limit
        self.idle_reply = idle_reply
        self.error_reply = error_reply
        self.observe = observe
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"saslkit-{name}")
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def bindings(self, writer: asyncio.StreamWriter) -> dict[str, bytes]:
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is None:
            return {}
        return channel_bindings_from_ssl(sslobj, server_certificate=self.certificate_der)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # serve_until lets open connections end before returning
            self._connections[task] = writer
            task.add_done_callback(lambda done: self._connections.pop(done, None))
        peername = writer.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else str(peername)
        session = self.make_session(peer, self.implicit_tls, self.bindings(writer) if self.implicit_tls else {})
        loop = asyncio.get_running_loop()
        try:
            await self._send(writer, session.greeting())
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
                except asyncio.LimitOverrunError:
                    await self._send(writer, session.line_too_long(await self._discard_long_line(reader)))
                    continue
                except asyncio.IncompleteReadError:
                    break
                except TimeoutError:
                    if self.idle_reply:
                        writer.write(self.idle_reply)
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
                    data = await asyncio.wait_for(reader.readexactly(literal), IDLE_TIMEOUT)
                    await self._send(writer, session.receive_literal(data))  # type: ignore[attr-defined]
                    continue
                if reply.starttls:
                    assert self.ssl_context is not None
                    if reader._buffer:  # type: ignore[attr-defined]  # no public API for unread bytes
                        self.log.info("peer=%s sent data after STARTTLS; closing", peer)
                        break
                    await writer.start_tls(self.ssl_context)
                    session.tls_started(self.bindings(writer))
                if reply.close:
                    break
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.log.debug("connection from %s ended: %s", peer, exc)
        except Exception:  # never let one connection's bug take the server down
            self.log.exception("internal error on a connection from %s", peer)
            with contextlib.suppress(Exception):
                writer.write(self.error_reply)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    @staticmethod
    async def _discard_long_line(reader: asyncio.StreamReader) -> bytes:
        """Skip the rest of an over-long line; return its first octets."""
        head = b""
        while True:
            try:
                await reader.readuntil(b"\n")
                return head
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.readexactly(exc.consumed)
                head = head or chunk[:16]

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: SessionReply) -> None:
        if reply.lines:
            writer.write(reply.wire())
            await writer.drain()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=self.line_limit,
            ssl=self.ssl_context if self.implicit_tls else None,
        )
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

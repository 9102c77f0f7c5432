"""The reference SMTP/LMTP server: asyncio around :class:`~saslkit.smtp.session.SmtpSession`.

Lines that may block (password hashing, store access) run in a bounded
thread pool, so one slow login never stalls other connections; everything
else runs on the event loop.  STARTTLS upgrades the stream in place and
hands the channel-binding data of the new TLS connection to the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mailbox
import os
import signal
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..channel_binding import channel_bindings_from_ssl
from ..credentials import UserStore
from ..tokens import SubmissionTokens, TokenService
from .session import MAX_AUTH_LINE, Deliver, Envelope, Reply, SmtpConfig, SmtpSession

__all__ = ["SmtpServer", "maildir_delivery"]

log = logging.getLogger("saslkit.smtp")

IDLE_TIMEOUT = 300.0


def maildir_delivery(path: str | os.PathLike[str]) -> Deliver:
    """A delivery callback that stores each message in a Maildir (created if missing)."""
    box = mailbox.Maildir(os.fspath(path), create=True)

    def deliver(envelope: Envelope) -> str:
        headers = f"Return-Path: <{envelope.mail_from}>\r\nX-Original-To: {', '.join(envelope.recipients)}\r\n"
        return str(box.add(headers.encode() + envelope.data))

    return deliver


def reader_has_buffered_data(reader: asyncio.StreamReader) -> bool:
    """Whether bytes are already buffered (StreamReader has no public API for its unread bytes)."""
    return bool(getattr(reader, "_buffer", b""))


def discard_delivery(envelope: Envelope) -> str:
    log.info("accepted and discarded a message from <%s> to %d recipient(s), %d octets",
             envelope.mail_from, len(envelope.recipients), len(envelope.data))
    return os.urandom(6).hex()


@dataclass
class SmtpServer:
    """Serve SMTP (or LMTP) with saslkit authentication on one listening socket."""

    config: SmtpConfig
    users: UserStore
    server_secret: bytes
    tokens: TokenService | None = None
    stokens: SubmissionTokens | None = None
    ssl_context: ssl.SSLContext | None = None
    certificate_der: bytes | None = None  # our certificate, for tls-server-end-point
    implicit_tls: bool = False
    deliver: Deliver = discard_delivery
    workers: int = 8

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="saslkit-smtp")
        self._server: asyncio.AbstractServer | None = None

    def _bindings(self, writer: asyncio.StreamWriter) -> dict[str, bytes]:
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is None:
            return {}
        return channel_bindings_from_ssl(sslobj, server_certificate=self.certificate_der)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else str(peername)
        session = SmtpSession(
            self.config, self.users, self.server_secret, tokens=self.tokens, stokens=self.stokens, peer=peer,
            tls=self.implicit_tls, channel_bindings=self._bindings(writer) if self.implicit_tls else None,
            deliver=self.deliver,
        )
        loop = asyncio.get_running_loop()
        try:
            await self._send(writer, session.greeting())
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
                except asyncio.LimitOverrunError:
                    reply = session.line_too_long(await self._discard_long_line(reader))
                    await self._send(writer, reply)
                    continue
                except asyncio.IncompleteReadError:
                    break
                except TimeoutError:
                    await self._send(writer, Reply(["421 4.4.2 Idle timeout; closing"]))
                    break
                was_authenticated = session.authenticated
                if session.may_block(line):
                    reply = await loop.run_in_executor(self._pool, session.receive_line, line)
                else:
                    reply = session.receive_line(line)
                if session.authenticated is not None and was_authenticated is None:
                    auth = session.authenticated
                    log.info("auth ok peer=%s mechanism=%s identity=%s", peer, auth.mechanism, auth.identity)
                elif reply.lines and reply.lines[0][:3] in ("535", "454") and session.authenticated is None:
                    log.info("auth failed peer=%s reply=%s", peer, reply.lines[0][:9])
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await self._send(writer, reply)
                if reply.starttls:
                    assert self.ssl_context is not None
                    if reader_has_buffered_data(reader):
                        # Plaintext pipelined after STARTTLS must not be read as if it came over TLS
                        # (RFC 3207 §4.2 "STARTTLS command injection", CVE-2011-0411).
                        log.info("peer=%s sent data after STARTTLS; closing", peer)
                        break
                    await writer.start_tls(self.ssl_context)
                    session.tls_started(self._bindings(writer))
                if reply.close:
                    break
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        except Exception:  # never let one connection's bug take the server down
            log.exception("internal error on a connection from %s", peer)
            with contextlib.suppress(Exception):
                await self._send(writer, Reply(["421 4.3.0 Internal error; closing"]))
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    @staticmethod
    async def _discard_long_line(reader: asyncio.StreamReader) -> bytes:
        """Skip the rest of an over-long line; return its first octets (is it an AUTH command?)."""
        head = b""
        while True:
            try:
                await reader.readuntil(b"\n")
                return head
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.readexactly(exc.consumed)
                head = head or chunk[:16]

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
        if reply.lines:
            writer.write(reply.wire())
            await writer.drain()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=MAX_AUTH_LINE + 2,
            ssl=self.ssl_context if self.implicit_tls else None,
        )
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def serve_until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._pool.shutdown(wait=False, cancel_futures=True)


def run_server(server: SmtpServer, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
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
    import datetime

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
    import ipaddress

    alt: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
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

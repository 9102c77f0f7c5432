"""Plaintext pipelined behind STARTTLS is never executed as if it came over TLS (CVE-2011-0411)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from saslkit.credentials import MemoryUserStore
from saslkit.smtp.server import SmtpServer, ensure_certificate
from saslkit.smtp.session import SmtpConfig


def test_starttls_injection_closes_connection(tmp_path: Path) -> None:
    cert, key, _ = ensure_certificate(tmp_path, "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = SmtpServer(SmtpConfig(tls_available=True, failure_delay=0), MemoryUserStore(), b"k" * 32,
                        ssl_context=context)

    async def scenario() -> tuple[bytes, bytes]:
        host, port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        await reader.readline()
        writer.write(b"EHLO x\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        writer.write(b"STARTTLS\r\nNOOP\r\n")  # one packet: the NOOP is injected plaintext
        await writer.drain()
        ready = await reader.readline()
        rest = await asyncio.wait_for(reader.read(), 5)  # the server closes instead of starting TLS
        writer.close()
        stop = asyncio.Event()
        stop.set()
        await server.serve_until(stop)
        return ready, rest

    ready, rest = asyncio.run(scenario())
    assert ready.startswith(b"220 2.0.0")
    assert rest == b""

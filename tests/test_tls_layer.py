"""saslkit.net.tls under the LineServer driver: the driver's properties hold on the pyOpenSSL layer (issue 11).

In-process ``SmtpServer``/``ImapServer`` on loopback, each scenario run on
both TLS layers (pyOpenSSL's memory BIOs and the stdlib's ``ssl``) where it
applies: STARTTLS refuses plaintext pipelined behind it (CVE-2011-0411), a
peer that never finishes its handshake or sends garbage is closed within the
time limits and leaves no connection counted, a peer that does not read its
replies is dropped, close_notify and EOF end the connection, and the channel
bindings the session gets are the ones the client computes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslkit.channel_binding import channel_bindings_from_ssl
from saslkit.credentials import MemoryUserStore, make_user
from saslkit.net.tls import OpenSSLClientSocket, OpenSSLServerContext, transport_bindings
from saslkit.smtp.server import SmtpServer, ensure_certificate
from saslkit.smtp.session import SmtpConfig

pytest.importorskip("OpenSSL")

LAYERS = ["pyopenssl", "ssl"]
MAX_BATCHES = 3000


def server_context(tmp_path: Path, layer: str) -> tuple[ssl.SSLContext | OpenSSLServerContext, Path]:
    cert, key, _ = ensure_certificate(tmp_path, "localhost")
    if layer == "pyopenssl":
        return OpenSSLServerContext(cert, key), cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def make_server(tmp_path: Path, layer: str, **kw: Any) -> tuple[SmtpServer, Path]:
    context, cert = server_context(tmp_path, layer)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    users = MemoryUserStore([make_user("alice", "pencil", iterations=4096, argon2_hash=False)])
    implicit = kw.pop("implicit_tls", False)
    server = SmtpServer(SmtpConfig(tls_available=not implicit, failure_delay=0), users, b"k" * 32,
                        ssl_context=context, certificate_der=der, implicit_tls=implicit, auth_penalty=None, **kw)
    return server, cert


def run(server: SmtpServer, scenario: Callable[[str, int], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        host, port = await server.start("127.0.0.1", 0)
        try:
            return await scenario(host, port)
        finally:
            stop = asyncio.Event()
            stop.set()
            await server.serve_until(stop)

    return asyncio.run(main())


async def wait_for_no_connections(server: SmtpServer) -> int:
    for _ in range(200):
        if server._server._open == 0:
            return 0
        await asyncio.sleep(0.02)
    return server._server._open


@pytest.mark.parametrize("layer", LAYERS)
def test_starttls_injection_closes_connection(tmp_path: Path, layer: str) -> None:
    server, _ = make_server(tmp_path, layer)

    async def scenario(host: str, port: int) -> tuple[bytes, bytes, int]:
        reader, writer = await asyncio.open_connection(host, port)
        await reader.readline()
        writer.write(b"EHLO x\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        writer.write(b"STARTTLS\r\nNOOP\r\n")  # one packet: the NOOP is injected plaintext
        await writer.drain()
        ready = await reader.readline()
        rest = await asyncio.wait_for(reader.read(), 5)  # closed instead of starting TLS
        writer.close()
        return ready, rest, await wait_for_no_connections(server)

    ready, rest, still_open = run(server, scenario)
    assert ready.startswith(b"220 2.0.0") and rest == b"" and still_open == 0


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("peer", ["silent", "garbage", "half-hello"])
def test_bad_handshakes_are_closed_and_uncounted(tmp_path: Path, layer: str, peer: str) -> None:
    server, _ = make_server(tmp_path, layer, implicit_tls=True, idle_timeout=0.5, login_timeout=1.0)

    async def scenario(host: str, port: int) -> tuple[bytes, int]:
        reader, writer = await asyncio.open_connection(host, port)
        if peer == "garbage":
            writer.write(b"EHLO plaintext.example\r\n" * 4)
        elif peer == "half-hello":
            writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello that never ends
        data = await asyncio.wait_for(reader.read(), 10)  # the server ends it (alert or close)
        writer.close()
        return data, await wait_for_no_connections(server)

    data, still_open = run(server, scenario)
    assert b"220" not in data  # never a greeting without a handshake
    assert still_open == 0


@pytest.mark.parametrize("layer", LAYERS)
def test_peer_that_does_not_read_is_dropped(tmp_path: Path, layer: str) -> None:
    server, cert = make_server(tmp_path, layer, implicit_tls=True, idle_timeout=0.5, login_timeout=None)

    async def scenario(host: str, port: int) -> tuple[int, int]:
        context = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname="localhost")
        await reader.readline()
        writer.transport.pause_reading()  # never read a reply again
        sent = 0
        try:
            for _ in range(MAX_BATCHES):  # up to 18 MB of HELP lines whose replies the peer never reads
                writer.write(b"HELP\r\n" * 1000)
                sent += 1
                await asyncio.wait_for(writer.drain(), 0.2)
        except (TimeoutError, ConnectionError):
            pass
        still_open = await wait_for_no_connections(server)
        writer.transport.abort()
        return sent, still_open

    sent, still_open = run(server, scenario)
    assert sent < MAX_BATCHES  # the server stopped reading ...
    assert still_open == 0  # ... and dropped the peer


@pytest.mark.parametrize("layer", LAYERS)
def test_close_notify_and_eof_end_the_connection(tmp_path: Path, layer: str) -> None:
    server, cert = make_server(tmp_path, layer, implicit_tls=True)

    def client(port: int, close_notify: bool) -> bytes:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = OpenSSLClientSocket(sock, "localhost", cafile=str(cert))
        greeting = tls.recv(1000)
        if close_notify:
            tls.close()
        else:
            sock.close()
        return greeting

    async def scenario(host: str, port: int) -> list[tuple[bytes, int]]:
        out = []
        for close_notify in (True, False):
            greeting = await asyncio.to_thread(client, port, close_notify)
            out.append((greeting, await wait_for_no_connections(server)))
        return out

    for greeting, still_open in run(server, scenario):
        assert greeting.startswith(b"220 ") and still_open == 0


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_gets_the_bindings_the_client_computes(tmp_path: Path, version: ssl.TLSVersion) -> None:
    """The server's tls-exporter, tls-unique and tls-server-end-point equal the client's (pyOpenSSL both ends)."""
    seen: list[dict[str, bytes]] = []
    server, cert = make_server(tmp_path, "pyopenssl", implicit_tls=True)
    bindings = server._server.bindings

    def spy(transport: asyncio.BaseTransport) -> dict[str, bytes]:
        seen.append(transport_bindings(transport, server_certificate=server.certificate_der))
        return bindings(transport)

    server._server.bindings = spy  # type: ignore[method-assign]

    def client(port: int) -> dict[str, bytes]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = OpenSSLClientSocket(sock, "localhost", cafile=str(cert), maximum_version=version)
        assert tls.recv(1000).startswith(b"220 ")
        out = tls.channel_bindings()
        tls.close()
        return out

    async def scenario(host: str, port: int) -> dict[str, bytes]:
        return await asyncio.to_thread(client, port)

    client_side = run(server, scenario)
    assert seen and seen[0] == client_side
    expected = {"tls-exporter", "tls-server-end-point"} | ({"tls-unique"} if version is ssl.TLSVersion.TLSv1_2
                                                           else set())
    assert set(client_side) == expected
    assert len(client_side["tls-exporter"]) == 32


def test_stdlib_client_and_server_bindings_agree_without_tls_unique(tmp_path: Path) -> None:
    """On the stdlib layer the server keeps tls-server-end-point only (EMS unknown: no tls-unique)."""
    seen: list[dict[str, bytes]] = []
    server, cert = make_server(tmp_path, "ssl", implicit_tls=True)
    bindings = server._server.bindings

    def spy(transport: asyncio.BaseTransport) -> dict[str, bytes]:
        seen.append(bindings(transport))
        return seen[-1]

    server._server.bindings = spy  # type: ignore[method-assign]

    def client(port: int) -> dict[str, bytes]:
        context = ssl.create_default_context(cafile=str(cert))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
                context.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.recv(1000).startswith(b"220 ")
            return channel_bindings_from_ssl(tls)

    async def scenario(host: str, port: int) -> dict[str, bytes]:
        return await asyncio.to_thread(client, port)

    client_side = run(server, scenario)
    assert set(seen[0]) == {"tls-server-end-point"}
    assert seen[0]["tls-server-end-point"] == client_side["tls-server-end-point"]


# --------------------------------------------------------------------------- fuzz: any octets from the peer


class _RecordingTransport(asyncio.Transport):
    """A TCP transport stand-in: keeps what is written, notes abort and close."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.aborted or self.closed

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _App(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


@pytest.fixture(scope="module")
def fuzz_context(tmp_path_factory: pytest.TempPathFactory) -> OpenSSLServerContext:
    cert, key, _ = ensure_certificate(tmp_path_factory.mktemp("fuzz"), "localhost")
    return OpenSSLServerContext(cert, key)


_RECORD_HEADERS = st.sampled_from([b"", b"\x16\x03\x01", b"\x16\x03\x03", b"\x17\x03\x03", b"\x15\x03\x03"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_RECORD_HEADERS, st.binary(max_size=600)), min_size=1, max_size=6))
def test_fuzz_handshake_input_never_escapes(fuzz_context: OpenSSLServerContext,
                                            chunks: list[tuple[bytes, bytes]]) -> None:
    """Whatever octets a peer sends during the handshake: no exception escapes, no plaintext is delivered,
    and the handshake either waits for more or fails (the connection aborted, the waiter's error typed)."""
    from saslkit.net import tls as tls_module

    async def scenario() -> None:
        raw, app = _RecordingTransport(), _App()
        task = asyncio.ensure_future(tls_module.start_tls(raw, app, fuzz_context, handshake_timeout=30))
        await asyncio.sleep(0)
        protocol = raw.protocol
        assert isinstance(protocol, asyncio.Protocol)
        for header, body in chunks:
            protocol.data_received(header + body)
        await asyncio.sleep(0)
        if task.done():
            assert isinstance(task.exception(), ConnectionError)
            assert raw.aborted
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not app.received

    asyncio.run(scenario())

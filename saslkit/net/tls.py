"""TLS that can export keying material: pyOpenSSL over memory BIOs, under asyncio and on blocking sockets.

Python's :mod:`ssl` cannot export keying material (CPython issue 82133), so it
cannot give ``tls-exporter`` (RFC 9266 §2), the default channel binding on
TLS 1.3.  With the optional ``tls`` extra (pyOpenSSL) installed:

* :class:`OpenSSLServerContext` is a server certificate and key loaded into an
  ``OpenSSL.SSL.Context``; :func:`start_tls` upgrades an asyncio transport
  with it, like :meth:`asyncio.loop.start_tls` but over an
  ``OpenSSL.SSL.Connection`` whose TLS records pass through memory BIOs: the
  returned transport forwards flow control (``pause_reading``, the write
  buffer, ``pause_writing``) to the TCP transport beneath, and hands
  plaintext to the protocol (``BufferedProtocol`` or ``Protocol``).
* :class:`OpenSSLClientSocket` is the same engine on a blocking socket, for
  the blocking SMTP and IMAP clients.

:func:`transport_bindings` gives the channel bindings of either kind of
transport, keeping only those this connection can safely verify:
``tls-unique`` (and ``tls-exporter`` on TLS 1.2) only when the extended
master secret was negotiated (RFC 7627; RFC 9266 §4.2), so never on the
stdlib's connections, which cannot tell.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..channel_binding import channel_bindings_from_pyopenssl, channel_bindings_from_ssl

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = [
    "OpenSSLClientSocket",
    "OpenSSLServerContext",
    "ServerTlsContext",
    "TlsHandshakeError",
    "openssl_client_possible",
    "pyopenssl_available",
    "start_tls",
    "transport_bindings",
]

#: Octets moved from an outgoing memory BIO per read.
_BIO_CHUNK = 262144
#: Octets of plaintext read per SSL_read.
_READ_CHUNK = 65536
#: The stdlib's server cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults in both).
_CIPHERS = b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"


def pyopenssl_available() -> bool:
    """Whether the ``tls`` extra (pyOpenSSL) is installed."""
    try:
        from OpenSSL import SSL  # noqa: F401
    except ImportError:
        return False
    return True


class TlsHandshakeError(ConnectionError):
    """The TLS handshake failed (an alert, a bad certificate, the peer closing, a time limit)."""


class OpenSSLServerContext:
    """A server certificate chain and key in an ``OpenSSL.SSL.Context`` (TLS 1.2 and 1.3, like the stdlib's)."""

    def __init__(self, cert_path: str | Path, key_path: str | Path) -> None:
        from OpenSSL import SSL

        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
        options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)  # no client-initiated renegotiation (TLS 1.2)
        context.set_options(options)
        context.set_cipher_list(_CIPHERS)
        context.set_session_id(b"saslkit")
        try:
            context.use_certificate_chain_file(str(cert_path))
            context.use_privatekey_file(str(key_path))
            context.check_privatekey()
        except SSL.Error as exc:
            raise ValueError(f"cannot load {cert_path} and {key_path}: {exc}") from exc
        self.context = context

    def connection(self) -> SSL.Connection:
        """A new server-side connection over memory BIOs."""
        from OpenSSL import SSL

        conn = SSL.Connection(self.context, None)
        conn.set_accept_state()
        return conn


#: What the reference servers take as their TLS configuration: the stdlib's (no tls-exporter) or pyOpenSSL's.
ServerTlsContext = ssl.SSLContext | OpenSSLServerContext


def _ssl_error() -> type[Exception]:
    from OpenSSL import SSL

    return SSL.Error


class _TlsProtocol(asyncio.Protocol):
    """The protocol on the TCP transport: TLS records in and out of the memory BIOs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, raw: asyncio.Transport, app: asyncio.BaseProtocol,
                 conn: SSL.Connection) -> None:
        from OpenSSL import SSL

        self._SSL = SSL
        self.loop = loop
        self.raw = raw
        self.app = app
        self.conn = conn
        self.handshake: asyncio.Future[None] | None = loop.create_future()
        self.transport = _TlsTransport(self)
        self.closed = False
        self._buffered = isinstance(app, asyncio.BufferedProtocol)
        self.on_handshake: Callable[[asyncio.Transport], None] | None = None

    # -- to the peer

    def flush(self) -> None:
        """Send what OpenSSL wrote into the outgoing BIO."""
        conn, want_read = self.conn, self._SSL.WantReadError
        while True:
            try:
                data = conn.bio_read(_BIO_CHUNK)
            except want_read:
                return
            if not data:
                return
            if not self.raw.is_closing():
                self.raw.write(data)

    # -- from the peer

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.conn.bio_write(data)
            if self.handshake is not None:
                self._continue_handshake()
            if self.handshake is None:
                self._read_plaintext()
        except self._SSL.Error as exc:
            self._fail(TlsHandshakeError(f"TLS error: {exc}"))

    def _continue_handshake(self) -> None:
        SSL = self._SSL
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            self.flush()
            return
        except SSL.Error as exc:
            self.flush()  # the alert, if any
            self._fail(TlsHandshakeError(f"TLS handshake failed: {exc}"))
            return
        self.flush()
        waiter, self.handshake = self.handshake, None
        if self.on_handshake is not None:  # before any plaintext reaches the application
            self.on_handshake(self.transport)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _read_plaintext(self) -> None:
        SSL, conn, app = self._SSL, self.conn, self.app
        while not self.closed:
            try:
                data = conn.recv(_READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify
                self.flush()
                eof_received = getattr(app, "eof_received", None)
                if eof_received is not None:
                    eof_received()
                self.transport.close()
                return
            if not data:
                break
            self._deliver(data)
        self.flush()  # post-handshake messages (TLS 1.3 KeyUpdate replies)

    def _deliver(self, data: bytes) -> None:
        app = self.app
        if not self._buffered:
            app.data_received(data)  # type: ignore[attr-defined]
            return
        view = memoryview(data)
        while view:
            buf = app.get_buffer(len(view))  # type: ignore[attr-defined]
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            app.buffer_updated(n)  # type: ignore[attr-defined]
            view = view[n:]

    def eof_received(self) -> bool:
        if self.handshake is not None:
            self._fail(TlsHandshakeError("the peer closed the connection during the TLS handshake"))
            return False
        with_eof = getattr(self.app, "eof_received", None)
        if with_eof is not None:
            with_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone: fail a pending handshake, and tell the application either way."""
        self.closed = True
        if self.handshake is not None:
            waiter, self.handshake = self.handshake, None
            if not waiter.done():
                waiter.set_exception(exc or TlsHandshakeError("connection lost during the TLS handshake"))
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()

    def _fail(self, exc: Exception) -> None:
        """A TLS error: fail the handshake if it is under way, and drop the TCP connection."""
        waiter, self.handshake = self.handshake, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.closed = True
        self.raw.abort()


class _TlsTransport(asyncio.Transport):
    """The plaintext side handed to the application protocol."""

    def __init__(self, protocol: _TlsProtocol) -> None:
        super().__init__()
        self._tls = protocol
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("openssl_connection", "ssl_object"):
            return self._tls.conn
        return self._tls.raw.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._tls.raw.is_closing()

    def close(self) -> None:
        """Send close_notify, then close the TCP transport once its buffer is written."""
        if self._closing:
            return
        self._closing = True
        tls = self._tls
        if tls.handshake is None and not tls.closed:
            try:
                tls.conn.shutdown()
            except _ssl_error():
                pass
            tls.flush()
        tls.raw.close()

    def abort(self) -> None:
        self._closing = True
        self._tls.raw.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        tls = self._tls
        if self._closing or tls.closed or not data:
            return
        try:
            tls.conn.sendall(bytes(data))
        except _ssl_error() as exc:
            tls._fail(TlsHandshakeError(f"TLS error: {exc}"))
            return
        tls.flush()

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self._tls.raw.pause_reading()

    def resume_reading(self) -> None:
        self._tls.raw.resume_reading()

    def is_reading(self) -> bool:
        return self._tls.raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._tls.raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls.raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.raw.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls.app = protocol
        self._tls._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls.app


async def start_tls(transport: asyncio.Transport, protocol: asyncio.BaseProtocol, context: OpenSSLServerContext,
                    *, handshake_timeout: float,
                    on_handshake: Callable[[asyncio.Transport], None] | None = None) -> asyncio.Transport:
    """Upgrade ``transport`` to TLS as a server (like :meth:`asyncio.loop.start_tls`); the TLS transport.

    ``on_handshake`` is called with it as soon as the handshake ends, before
    any plaintext the peer sent with its last flight reaches ``protocol``.
    Raises :class:`TlsHandshakeError` (or :class:`TimeoutError` after ``handshake_timeout``).
    """
    loop = asyncio.get_running_loop()
    tls = _TlsProtocol(loop, transport, protocol, context.connection())
    tls.on_handshake = on_handshake
    transport.set_protocol(tls)
    transport.resume_reading()
    waiter = tls.handshake
    assert waiter is not None
    timer = loop.call_later(handshake_timeout, _time_out, tls)
    try:
        await waiter
    finally:
        timer.cancel()
    return tls.transport


def _time_out(tls: _TlsProtocol) -> None:
    if tls.handshake is not None:
        tls._fail(TimeoutError("TLS handshake timed out"))


# ---------------------------------------------------------------------------- blocking client


class OpenSSLClientSocket:
    """A blocking TLS client connection on ``sock`` (its timeout applies to every read and write).

    The part of :class:`ssl.SSLSocket` the line clients use: ``sendall``,
    ``recv``, ``version``, ``cipher``, ``close``; :meth:`channel_bindings`
    adds ``tls-exporter``.  Certificates are verified against ``cafile`` or
    the system's CAs, the name against ``server_hostname`` (OpenSSL's
    ``X509_VERIFY_PARAM`` host or IP check), unless ``verify`` is false.
    ``options`` are more ``SSL_OP_*`` bits for the context.
    """

    def __init__(self, sock: Any, server_hostname: str, *, cafile: str | None = None, verify: bool = True,
                 check_hostname: bool = True, minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
                 maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED, options: int = 0) -> None:
        from OpenSSL import SSL

        self._SSL = SSL
        self._sock = sock
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(_openssl_version(minimum_version) or SSL.TLS1_2_VERSION)
        maximum = _openssl_version(maximum_version)
        if maximum:
            context.set_max_proto_version(maximum)
        context.set_options(SSL.OP_NO_COMPRESSION | getattr(SSL, "OP_NO_RENEGOTIATION", 0) | options)
        if verify:
            if cafile:
                try:
                    context.load_verify_locations(cafile)
                except SSL.Error as exc:
                    raise TlsHandshakeError(f"cannot load CA file {cafile}: {exc}") from exc
            else:
                _load_system_trust(context)
            context.set_verify(SSL.VERIFY_PEER, _keep_openssl_verdict)
        conn = SSL.Connection(context, None)
        conn.set_connect_state()
        if not _is_ip(server_hostname):
            conn.set_tlsext_host_name(server_hostname.encode("idna"))
        if verify and check_hostname:
            _expect_name(conn, server_hostname)
        self._conn = conn
        self._handshake()

    def _flush(self) -> None:
        while True:
            try:
                data = self._conn.bio_read(_BIO_CHUNK)
            except self._SSL.WantReadError:
                return
            if not data:
                return
            self._sock.sendall(data)

    def _pull(self) -> bool:
        """Feed one read from the socket to OpenSSL; False at the peer's EOF."""
        data = self._sock.recv(_READ_CHUNK)
        if not data:
            return False
        self._conn.bio_write(data)
        return True

    def _handshake(self) -> None:
        SSL = self._SSL
        while True:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                self._flush()
                if not self._pull():
                    raise TlsHandshakeError("the server closed the connection during the TLS handshake") from None
                continue
            except SSL.Error as exc:
                self._flush()
                raise TlsHandshakeError(_describe(exc)) from exc
            self._flush()
            return

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._conn.sendall(bytes(data))
        except self._SSL.Error as exc:
            raise TlsHandshakeError(f"TLS error: {exc}") from exc
        self._flush()

    def recv(self, size: int) -> bytes:
        SSL = self._SSL
        while True:
            try:
                return bytes(self._conn.recv(size))
            except SSL.WantReadError:
                self._flush()
                if not self._pull():
                    return b""
            except SSL.ZeroReturnError:
                return b""
            except SSL.Error as exc:
                raise TlsHandshakeError(f"TLS error: {exc}") from exc

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def version(self) -> str:
        return str(self._conn.get_protocol_version_name())

    def cipher(self) -> tuple[str, str, int] | None:
        name = self._conn.get_cipher_name()
        return None if name is None else (name, self.version(), int(self._conn.get_cipher_bits() or 0))

    def channel_bindings(self) -> dict[str, bytes]:
        """Every binding this connection can safely give (tls-exporter included; RFC 9266 §2)."""
        return channel_bindings_from_pyopenssl(self._conn, server_side=False)

    @property
    def connection(self) -> SSL.Connection:
        """The pyOpenSSL connection (for what this class does not wrap)."""
        return self._conn

    def close(self) -> None:
        try:
            self._conn.shutdown()
            self._flush()
        except (self._SSL.Error, OSError):
            pass
        self._sock.close()


def _load_system_trust(context: SSL.Context) -> None:
    """The CAs the stdlib's ``load_default_certs`` would trust (its OpenSSL's paths, SSL_CERT_FILE/DIR
    included): pyOpenSSL's own OpenSSL may be built with other default paths."""
    paths = ssl.get_default_verify_paths()
    cafile = paths.cafile if paths.cafile and Path(paths.cafile).is_file() else None
    capath = paths.capath if paths.capath and Path(paths.capath).is_dir() else None
    from OpenSSL import SSL

    try:
        if cafile or capath:
            context.load_verify_locations(cafile, capath)
        else:
            context.set_default_verify_paths()
    except SSL.Error:
        pass  # like the stdlib's: unreadable default paths trust nothing (verification then fails)


def _keep_openssl_verdict(conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
    return bool(ok)


def _describe(exc: Exception) -> str:
    text = str(exc)
    if "certificate verify failed" in text or "certificate_verify_failed" in text:
        return f"TLS certificate verification failed: {text}"
    return f"TLS handshake failed: {text}"


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _expect_name(conn: Any, hostname: str) -> None:
    """Make OpenSSL check the certificate names ``hostname`` (RFC 6125), as the stdlib's check_hostname does."""
    from OpenSSL._util import lib

    param = lib.SSL_get0_param(conn._ssl)
    if _is_ip(hostname):
        import ipaddress

        packed = ipaddress.ip_address(hostname).packed
        ok = lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed))
    else:
        lib.X509_VERIFY_PARAM_set_hostflags(param, getattr(lib, "X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS", 0))
        name = hostname.encode("idna")
        ok = lib.X509_VERIFY_PARAM_set1_host(param, name, len(name))
    if ok != 1:
        raise TlsHandshakeError(f"cannot check the certificate against {hostname!r}")


def _openssl_version(version: ssl.TLSVersion) -> int:
    from OpenSSL import SSL

    return {ssl.TLSVersion.TLSv1_2: SSL.TLS1_2_VERSION, ssl.TLSVersion.TLSv1_3: SSL.TLS1_3_VERSION}.get(version, 0)


def openssl_client_possible() -> bool:
    """pyOpenSSL is here and can check host names (OpenSSL's X509_VERIFY_PARAM through its bindings)."""
    if not pyopenssl_available():
        return False
    try:
        from OpenSSL._util import lib
    except ImportError:
        return False
    return all(hasattr(lib, n) for n in ("SSL_get0_param", "X509_VERIFY_PARAM_set1_host",
                                          "X509_VERIFY_PARAM_set1_ip", "X509_VERIFY_PARAM_set_hostflags"))


# ---------------------------------------------------------------------------- what a connection binds to


def transport_bindings(transport: asyncio.BaseTransport, *, server_certificate: bytes | None) -> dict[str, bytes]:
    """The channel bindings a server can verify on ``transport`` (RFC 5929, RFC 9266), keyed by type.

    pyOpenSSL connections give ``tls-exporter``; ``tls-unique`` and, on TLS
    1.2, ``tls-exporter`` are kept only with the extended master secret (RFC
    7627, RFC 9266 §4.2).  Stdlib connections cannot say whether it was
    negotiated: they give ``tls-server-end-point`` only.
    """
    conn = transport.get_extra_info("openssl_connection")
    if conn is not None:
        return channel_bindings_from_pyopenssl(conn, server_side=True, server_certificate=server_certificate)
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return {}
    bindings = channel_bindings_from_ssl(sslobj, server_certificate=server_certificate)
    bindings.pop("tls-unique", None)  # RFC 7627: the stdlib cannot tell whether EMS was negotiated
    return bindings


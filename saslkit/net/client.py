"""What the blocking SMTP and IMAP clients share: sockets, TLS, channel binding, errors, masking.

:class:`LineClient` is one line-oriented connection (plain sockets and
:mod:`ssl`, every operation under a timeout): connect with ``starttls``,
``implicit`` or no TLS, send a command line, read a line of at most
``max_line`` octets, upgrade to TLS refusing any plaintext the server sent
after its go-ahead (a response-injection attempt, CVE-2011-0411), and take the
channel-binding data from the TLS socket.  The SASL exchange itself is
:class:`saslkit.auth.client.ClientAuth`'s: :meth:`LineClient._client_auth`
hands it the connection's TLS state and channel bindings, and
:meth:`LineClient._auth_failure` turns its outcomes into the protocol's errors.

The protocol clients raise their own subclasses of :class:`ClientConnectionError`
(CLI exit 3) and :class:`ClientAuthError` (CLI exit 1), set as the class
attributes ``connection_error`` and ``auth_error``.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self, TypedDict

from .._redact import redact
from ..auth.client import (
    CB_PREFERENCE,
    Cancel,
    ClientAuth,
    Framing,
    MechanismUnavailable,
    Rejected,
    Unavailable,
    Unverified,
    pick_channel_binding,
)
from ..auth.framing import decode_continuation
from ..channel_binding import channel_bindings_from_ssl
from ..errors import SaslError, UsageError
from ..registry import Registry, default_registry
from .tls import OpenSSLClientSocket, TlsHandshakeError, openssl_client_possible

__all__ = [
    "CB_PREFERENCE",
    "DEFAULT_TIMEOUT",
    "TLS_MODES",
    "ClientAuthError",
    "ClientConnectionError",
    "ClientError",
    "ClientOptions",
    "ClientTlsContext",
    "LineClient",
    "Log",
    "TlsMode",
    "checked_token_type",
    "client_tls_context",
    "pick_channel_binding",
    "show_payload",
]

DEFAULT_TIMEOUT = 30.0

#: ``starttls`` (the default), ``implicit`` (TLS from the first byte, RFC 8314) or ``none``.
TlsMode = Literal["starttls", "implicit", "none"]
TLS_MODES = ("starttls", "implicit", "none")

Log = Callable[[str], None]


class ClientOptions(TypedDict, total=False):
    """The keyword options every :class:`LineClient` takes (the protocol clients pass them through)."""

    ssl_context: ssl.SSLContext | None
    timeout: float
    log: Log | None
    registry: Registry | None


class ClientError(Exception):
    """Base class of the protocol clients' errors."""


class ClientConnectionError(ClientError):
    """Connection, TLS or protocol failure (CLI exit 3)."""


class ClientAuthError(ClientError):
    """Authentication (or a token request) refused or not possible (CLI exit 1); ``reply``: the server's."""

    def __init__(self, message: str, reply: object | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class ClientTlsContext(ssl.SSLContext):
    """:func:`client_tls_context`'s: it remembers its CA file, so that the clients can verify the same way with
    pyOpenSSL (:class:`~saslkit.net.tls.OpenSSLClientSocket`), which gives tls-exporter (RFC 9266)."""

    cafile: str | None = None
    #: Use pyOpenSSL when it is installed (False: always the stdlib's ``ssl``, no tls-exporter).
    prefer_pyopenssl: bool = True


def client_tls_context(*, cafile: str | None = None, insecure: bool = False) -> ClientTlsContext:
    """A client context: system trust (or ``cafile``) with hostname checks, or no checks at all.

    The clients run it on pyOpenSSL when the ``tls`` extra is installed (for
    tls-exporter), else on the stdlib's ``ssl``; either way with these checks.
    """
    if cafile and insecure:
        raise UsageError("cafile and insecure exclude each other")
    context = ClientTlsContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if cafile:
            context.load_verify_locations(cafile=cafile)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {cafile}: {exc}") from exc
    context.cafile = cafile
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def checked_token_type(pattern: re.Pattern[str], token_type: str) -> str:
    """``token_type`` upper-cased if ``pattern`` matches all of it (the protocol's atom); else :class:`UsageError`."""
    if not pattern.fullmatch(token_type):
        raise UsageError(f"not a token type: {token_type!r}")
    return token_type.upper()


def show_payload(mechanism: str, text: str, *, strip: bool = False) -> str:
    """A base64 SASL payload as the transcript shows it: redacted, ``""`` when empty, or its size if not base64.

    With ``strip`` the payload is taken without surrounding white space (the size shown is still ``text``'s).
    """
    encoded = text.strip() if strip else text
    if not encoded:
        return ""
    try:
        return redact(mechanism, decode_continuation(encoded))
    except SaslError:
        return f"<{len(text)} octets, not base64>"


class LineClient:
    """One blocking line-protocol connection; subclasses speak the protocol."""

    #: Name used in messages ("SMTP", "IMAP").
    protocol = "line"
    #: The longest line accepted from the server, terminator included.
    max_line = 16384
    client_error: type[ClientError] = ClientError
    connection_error: type[ClientConnectionError] = ClientConnectionError
    auth_error: type[ClientAuthError] = ClientAuthError

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        log: Log | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.registry = registry or default_registry()
        self._log = log
        self._sock: socket.socket | OpenSSLClientSocket | None = None
        self._buf = bytearray()
        self.channel_bindings: dict[str, bytes] = {}

    # ------------------------------------------------------------ context manager

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def command(self, line: str, shown: str | None = None) -> object:
        """Send one command line and read the server's answer to it (the protocol's reply type)."""
        raise NotImplementedError

    def _sign_off(self, verb: str) -> None:
        """Send ``verb`` (QUIT, LOGOUT) politely and close; the protocol's errors on the way out are ignored."""
        if self._sock is None:
            return
        try:
            self.command(verb)
        except self.client_error:
            pass
        self.close()

    @property
    def tls(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket | OpenSSLClientSocket)

    @property
    def tls_version(self) -> str | None:
        return self._sock.version() if isinstance(self._sock, ssl.SSLSocket | OpenSSLClientSocket) else None

    # ------------------------------------------------------------ transcript

    def _show(self, direction: str, text: str) -> None:
        if self._log is not None:
            self._log(f"{direction} {text}")

    # ------------------------------------------------------------ wire

    def _send_lines(self, lines: list[tuple[str, str | None]]) -> None:
        """Send ``(line, shown)`` pairs in one write (pipelined); ``shown`` replaces a line in the transcript."""
        if self._sock is None:
            raise self.connection_error("not connected")
        data = bytearray()
        for line, _shown in lines:
            if "\r" in line or "\n" in line:
                raise UsageError(f"an {self.protocol} command line cannot contain CR or LF")
            data += line.encode("utf-8") + b"\r\n"
        for line, shown in lines:
            self._show("C:", line if shown is None else shown)
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise self.connection_error(f"timed out sending to {self.host}:{self.port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise self.connection_error(f"connection to {self.host}:{self.port} failed: {exc}") from exc

    def _send(self, line: str, shown: str | None = None) -> None:
        self._send_lines([(line, shown)])

    def _fill(self) -> None:
        """Read more octets into the buffer; the server closing is an error."""
        assert self._sock is not None
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise self.connection_error(
                f"timed out after {self.timeout:g} s waiting for {self.host}:{self.port}"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise self.connection_error(f"connection to {self.host}:{self.port} failed: {exc}") from exc
        if not chunk:
            raise self.connection_error(self._closed_message())
        self._buf += chunk

    def _closed_message(self) -> str:
        return f"{self.host}:{self.port} closed the connection"

    def _recv_line(self) -> bytes:
        """One line without its CRLF (a bare LF is tolerated), at most :attr:`max_line` octets."""
        if self._sock is None:
            raise self.connection_error("not connected")
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                if end + 1 > self.max_line:
                    raise self.connection_error(f"reply line longer than {self.max_line} octets")
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) >= self.max_line:
                raise self.connection_error(f"reply line longer than {self.max_line} octets")
            self._fill()

    def _decode_token(self, encoded: str, malformed: str) -> str:
        """A REMEMBERME token from its base64 (UTF-8, one line, not empty); ``malformed`` starts the error."""
        try:
            token = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise self.connection_error(f"{malformed}: the token is not base64 of UTF-8") from None
        if not token or any(ch in token for ch in "\r\n"):
            raise self.connection_error(f"{malformed}: empty or multi-line token")
        return token

    def _recv_exactly(self, size: int) -> bytes:
        """``size`` raw octets (an IMAP literal)."""
        while len(self._buf) < size:
            self._fill()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    # ------------------------------------------------------------ connection and TLS

    def _wrap(self, sock: socket.socket) -> ssl.SSLSocket | OpenSSLClientSocket:
        if self.ssl_context is None:
            raise UsageError("TLS requested without an SSL context")
        context = self.ssl_context
        if isinstance(context, ClientTlsContext) and context.prefer_pyopenssl and openssl_client_possible():
            return self._wrap_pyopenssl(sock, context)
        try:
            tls = context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise self.connection_error(
                f"TLS certificate verification failed: {exc.verify_message or exc}"
            ) from exc
        except TimeoutError:
            raise self.connection_error("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            raise self.connection_error(f"TLS handshake failed: {exc}") from exc
        try:
            self.channel_bindings = channel_bindings_from_ssl(tls)
        except SaslError:
            self.channel_bindings = {}
        self._show_tls(tls.version(), tls.cipher(), "ssl")
        return tls

    def _wrap_pyopenssl(self, sock: socket.socket, context: ClientTlsContext) -> OpenSSLClientSocket:
        """The handshake on pyOpenSSL, checked as ``context`` says; its bindings include tls-exporter."""
        try:
            tls = OpenSSLClientSocket(sock, self.host, cafile=context.cafile,
                                      verify=context.verify_mode != ssl.CERT_NONE,
                                      check_hostname=context.check_hostname,
                                      minimum_version=context.minimum_version,
                                      maximum_version=context.maximum_version)
        except TimeoutError:
            raise self.connection_error("timed out during the TLS handshake") from None
        except TlsHandshakeError as exc:
            raise self.connection_error(str(exc)) from exc
        except OSError as exc:
            raise self.connection_error(f"TLS handshake failed: {exc}") from exc
        self.channel_bindings = tls.channel_bindings()
        self._show_tls(tls.version(), tls.cipher(), "pyOpenSSL")
        return tls

    def _show_tls(self, version: str | None, cipher: tuple[str, str, int] | None, library: str) -> None:
        self._show("*", f"TLS established: {version} {(cipher or ('?',))[0]}, channel bindings: "
                        f"{', '.join(sorted(self.channel_bindings)) or 'none'} ({library})")

    def _open(self, tls_mode: TlsMode) -> None:
        """TCP connect (and the TLS handshake for ``implicit``); a default TLS context unless ``none``."""
        if tls_mode not in TLS_MODES:
            raise UsageError(f"tls_mode must be one of {', '.join(TLS_MODES)}")
        if tls_mode != "none" and self.ssl_context is None:
            self.ssl_context = client_tls_context()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            raise self.connection_error(f"timed out connecting to {self.host}:{self.port}") from None
        except OSError as exc:
            raise self.connection_error(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._show("*", f"connected to {self.host}:{self.port}")
        if tls_mode == "implicit":
            self._sock = self._wrap(sock)

    def _start_tls(self) -> None:
        """Upgrade after the server's go-ahead; anything it sent behind that in clear text is refused."""
        if self._buf:
            raise self.connection_error("the server sent data after its STARTTLS reply (response injection)")
        assert isinstance(self._sock, socket.socket)
        self._sock = self._wrap(self._sock)

    # ------------------------------------------------------------ SASL

    def _client_auth(
        self,
        mechanism: str | None,
        offered: list[str],
        username: str,
        secret: str,
        *,
        authzid: str | None,
        allow_plaintext: bool,
        framing: Framing,
    ) -> ClientAuth:
        """The exchange engine for ``mechanism`` (``None``: the best offered one) on this connection.

        Raises :attr:`auth_error` if the server does not offer it, if it would
        send a plaintext secret without TLS (unless ``allow_plaintext``), or if
        it needs a channel binding this connection lacks.
        """
        try:
            auth = ClientAuth.for_server(self.registry, offered, username, secret, mechanism=mechanism,
                                         authzid=authzid, framing=framing, tls=self.tls,
                                         channel_bindings=self.channel_bindings, allow_plaintext=allow_plaintext)
            if auth.channel_binding is not None:  # tls-exporter on TLS 1.3 when there (RFC 9266 §3)
                self._show("*", f"channel binding: {auth.channel_binding} ({self.tls_version})")
                if auth.channel_binding == "tls-exporter":  # one authentication per connection (RFC 9266 §4.1)
                    self.channel_bindings = {k: v for k, v in self.channel_bindings.items() if k != "tls-exporter"}
            return auth
        except MechanismUnavailable as exc:
            if exc.why is not Unavailable.NOT_OFFERED:
                raise self.auth_error(str(exc)) from exc
            raise self.auth_error(f"{exc} ({self._offer_text(offered) or 'no mechanisms advertised'})") from exc

    def _offer_text(self, offered: list[str]) -> str:
        """How the server's offer is shown in an error message."""
        return " ".join(offered)

    def _auth_failure(self, outcome: Rejected | Unverified | Cancel, reply: object | None) -> ClientAuthError:
        """The :attr:`auth_error` for an exchange that did not authenticate; ``reply`` is the server's last word."""
        if isinstance(outcome, Rejected):
            text = f"authentication failed: {outcome.text}"
        elif isinstance(outcome, Unverified):
            text = f"the server accepted but did not prove itself: {outcome.message}"
        else:
            text = f"authentication cancelled: {outcome.message}; server: {reply or 'no reply'}"
        error = self.auth_error(text, reply)
        error.__cause__ = getattr(outcome, "error", None)
        return error

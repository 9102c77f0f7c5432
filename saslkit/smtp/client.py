"""A blocking SMTP client for interop tests and scripts: RFC 4954 AUTH and REMEMBERME.

Plain sockets and :mod:`ssl` (``smtplib`` hides the AUTH exchange and cannot
send REMEMBERME).  One :class:`SmtpClient` is one connection::

    with SmtpClient("mail.example.net", 587, ssl_context=client_tls_context(cafile="ca.pem")) as smtp:
        smtp.connect("starttls")                       # greeting, EHLO, STARTTLS, EHLO
        smtp.authenticate("SCRAM-SHA-256-PLUS", "alice", "pencil")
        token = smtp.remember("RANDOM")                # draft-melnikov-smtp-rememberme-00
        smtp.quit()

What it does, and the choices made:

* Replies are parsed per RFC 5321 §4.2 (``250-`` continuation lines, the
  same code on every line); a line may be 12288 octets with its CRLF (the
  RFC 4954 §4 bound), a reply at most 256 lines, and every socket operation
  times out (30 s by default).
* STARTTLS (RFC 3207): anything the server sent after its ``220`` in clear
  text is refused (a response-injection attempt), and everything learnt
  before TLS is forgotten: EHLO is sent again (§4.2).
* Channel binding comes from the TLS socket
  (:func:`~saslkit.channel_binding.channel_bindings_from_ssl`):
  ``tls-server-end-point`` from the server certificate, ``tls-unique`` below
  TLS 1.3; the stdlib cannot export ``tls-exporter``.  SCRAM-*-PLUS takes
  tls-exporter, then tls-server-end-point, then tls-unique; HT-*-UNIQ/ENDP/EXPR
  take their own type.  A non-PLUS SCRAM client is told whether the server
  offered any -PLUS name (RFC 5802 §6: ``y`` when it offered none).
* AUTH (RFC 4954 §4): ``AUTH <mech> <base64 or =>``; an initial response
  that would push the command line over 512 octets is sent after the empty
  ``334`` instead.  Each ``334`` is answered in base64 (an empty line for an
  empty response); a challenge that is not strict base64, or that the
  mechanism rejects, is answered with ``*``.  A ``235`` is a success only if
  :meth:`~saslkit.mechanism.ClientMechanism.finish` accepts it (SCRAM ``v=``,
  HT responder message).
* The mechanism must be in the server's EHLO ``AUTH`` list.  A plaintext
  mechanism (PLAIN, REMEMBERME, STOKEN) that a server offers without TLS is
  used only with ``allow_plaintext=True``.
* ``REMEMBERME <type>`` needs the EHLO keyword listing that type; the answer
  ``235 [2.7.x] <base64 token>`` is decoded to the token string.
* The transcript callback (``log``) sees every line with secrets masked:
  SASL payloads through :func:`saslkit.redact.redact`, the REMEMBERME token
  as ``<token masked>``.

Errors: :class:`SmtpConnectionError` (refused, timeout, TLS handshake or
certificate, STARTTLS not offered, the server breaking the protocol or
closing) and :class:`SmtpAuthError` (the mechanism is not offered, the server
refused the credentials or the token request, or the server did not prove
itself).  Both are :class:`SmtpClientError`.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from ..channel_binding import channel_bindings_from_ssl
from ..context import ClientCredentials
from ..errors import SaslError, UsageError
from ..framing import decode_continuation, encode_challenge, encode_initial_response
from ..redact import redact
from ..registry import Registry, default_registry

__all__ = [
    "AuthResult",
    "Reply",
    "SmtpAuthError",
    "SmtpClient",
    "SmtpClientError",
    "SmtpConnectionError",
    "TlsMode",
    "check_token_type",
    "client_tls_context",
    "pick_channel_binding",
]

MAX_COMMAND_LINE = 512  # RFC 5321 §4.5.3.1.4, CRLF included
MAX_LINE = 12288  # RFC 4954 §4, CRLF included
MAX_REPLY_LINES = 256
DEFAULT_TIMEOUT = 30.0

#: ``starttls`` (RFC 3207, the default), ``implicit`` (TLS from the first byte, RFC 8314) or ``none``.
TlsMode = Literal["starttls", "implicit", "none"]
TLS_MODES = ("starttls", "implicit", "none")

#: Preference among channel-binding types for mechanisms that take any (SCRAM-*-PLUS).
CB_PREFERENCE = ("tls-exporter", "tls-server-end-point", "tls-unique")

_REPLY_RE = re.compile(rb"([2-5][0-9][0-9])([ -]|$)")
_ENHANCED_RE = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_ATOM_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")

Log = Callable[[str], None]


class SmtpClientError(Exception):
    """Base class of the client's errors."""


class SmtpConnectionError(SmtpClientError):
    """Connection, TLS or protocol failure (CLI exit 3)."""


class SmtpAuthError(SmtpClientError):
    """Authentication (or REMEMBERME) refused or not possible (CLI exit 1)."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and the text of each line (without code and separator)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


@dataclass(frozen=True)
class AuthResult:
    """A successful AUTH: the mechanism, the channel-binding type used (if any), the 235 reply."""

    mechanism: str
    channel_binding: str | None
    reply: Reply
    extensions: dict[str, str] = field(default_factory=dict)


def client_tls_context(*, cafile: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """A client context: system trust (or ``cafile``) with hostname checks, or no checks at all."""
    if cafile and insecure:
        raise UsageError("cafile and insecure exclude each other")
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {cafile}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def pick_channel_binding(
    registry: Registry, mechanism: str, bindings: dict[str, bytes]
) -> tuple[str, bytes] | None:
    """The ``(type, data)`` to give ``mechanism``'s client, from what this connection has.

    A mechanism bound to one type (HT-*-ENDP) gets that type or ``None``; one
    that takes any (SCRAM-*-PLUS) gets the first of :data:`CB_PREFERENCE`;
    others get the same preference (a non-PLUS SCRAM client needs to know it
    *could* bind, for its ``y``/``n`` flag).
    """
    info = registry.info(mechanism)
    if info.channel_binding_types is not None:
        usable = [t for t in CB_PREFERENCE if t in info.channel_binding_types and t in bindings]
    else:
        usable = [t for t in CB_PREFERENCE if t in bindings]
    return (usable[0], bindings[usable[0]]) if usable else None


def check_token_type(token_type: str) -> str:
    """A REMEMBERME token type is an RFC 5321 atom (rememberme-00 §4); raise :class:`UsageError` if not."""
    if not _ATOM_RE.fullmatch(token_type):
        raise UsageError(f"not a token type: {token_type!r}")
    return token_type.upper()


def _address_literal(sock: socket.socket) -> str:
    """Our side of the connection as an RFC 5321 §4.1.3 address literal for EHLO."""
    try:
        address = sock.getsockname()[0]
    except OSError:
        return "localhost"
    if isinstance(address, str) and ":" in address:
        return f"[IPv6:{address}]"
    return f"[{address}]" if address else "localhost"


class SmtpClient:
    """One blocking SMTP connection (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        log: Log | None = None,
        registry: Registry | None = None,
        ehlo_name: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.registry = registry or default_registry()
        self._log = log
        self._ehlo_name = ehlo_name
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        #: EHLO keywords (upper case) -> their parameters, from the latest EHLO.
        self.extensions: dict[str, str] = {}
        self.greeting: Reply | None = None
        self.channel_bindings: dict[str, bytes] = {}
        self.authenticated: AuthResult | None = None

    # ------------------------------------------------------------ context manager

    def __enter__(self) -> SmtpClient:
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

    @property
    def tls(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket)

    @property
    def tls_version(self) -> str | None:
        return self._sock.version() if isinstance(self._sock, ssl.SSLSocket) else None

    # ------------------------------------------------------------ transcript

    def _show(self, direction: str, text: str) -> None:
        if self._log is not None:
            self._log(f"{direction} {text}")

    # ------------------------------------------------------------ wire

    def _send(self, line: str, shown: str | None = None) -> None:
        if self._sock is None:
            raise SmtpConnectionError("not connected")
        if "\r" in line or "\n" in line:
            raise UsageError("an SMTP command line cannot contain CR or LF")
        self._show("C:", line if shown is None else shown)
        data = line.encode("utf-8") + b"\r\n"
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise SmtpConnectionError(f"timed out sending to {self.host}:{self.port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise SmtpConnectionError(f"connection to {self.host}:{self.port} failed: {exc}") from exc

    def _recv_line(self) -> bytes:
        """One line without its CRLF (a bare LF is tolerated), at most :data:`MAX_LINE` octets."""
        assert self._sock is not None
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                if end + 1 > MAX_LINE:
                    raise SmtpConnectionError(f"reply line longer than {MAX_LINE} octets")
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) >= MAX_LINE:
                raise SmtpConnectionError(f"reply line longer than {MAX_LINE} octets")
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError:
                raise SmtpConnectionError(
                    f"timed out after {self.timeout:g} s waiting for {self.host}:{self.port}"
                ) from None
            except (OSError, ssl.SSLError) as exc:
                raise SmtpConnectionError(f"connection to {self.host}:{self.port} failed: {exc}") from exc
            if not chunk:
                raise SmtpConnectionError(f"{self.host}:{self.port} closed the connection")
            self._buf += chunk

    def read_reply(self, shown: Callable[[int, str], str] | None = None) -> Reply:
        """Read one (possibly multi-line) reply; ``shown(code, text)`` renders a line for the transcript."""
        code: bytes | None = None
        lines: list[str] = []
        while True:
            raw = self._recv_line()
            m = _REPLY_RE.match(raw)
            if m is None or (code is not None and m.group(1) != code):
                self._show("S:", f"<malformed: {raw[:80]!r}>")
                raise SmtpConnectionError(f"malformed reply from the server: {raw[:80]!r}")
            code = m.group(1)
            text = raw[4:].decode("utf-8", "replace")
            lines.append(text)
            sep = "-" if m.group(2) == b"-" else " "
            self._show("S:", f"{code.decode()}{sep}{shown(int(code), text) if shown else text}".rstrip(" "))
            if m.group(2) != b"-":
                return Reply(int(code), tuple(lines))
            if len(lines) >= MAX_REPLY_LINES:
                raise SmtpConnectionError(f"reply of more than {MAX_REPLY_LINES} lines")

    def command(self, line: str, shown: str | None = None) -> Reply:
        self._send(line, shown)
        return self.read_reply()

    # ------------------------------------------------------------ connection

    def _wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        if self.ssl_context is None:
            raise UsageError("TLS requested without an SSL context")
        try:
            tls = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise SmtpConnectionError(f"TLS certificate verification failed: {exc.verify_message or exc}") from exc
        except TimeoutError:
            raise SmtpConnectionError("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            raise SmtpConnectionError(f"TLS handshake failed: {exc}") from exc
        try:
            self.channel_bindings = channel_bindings_from_ssl(tls)
        except SaslError:
            self.channel_bindings = {}
        self._show("*", f"TLS established: {tls.version()} {(tls.cipher() or ('?',))[0]}, channel bindings: "
                        f"{', '.join(sorted(self.channel_bindings)) or 'none'}")
        return tls

    def connect(self, tls_mode: TlsMode = "starttls") -> dict[str, str]:
        """Connect, read the greeting, EHLO (and STARTTLS + EHLO); return the EHLO keywords."""
        if tls_mode not in TLS_MODES:
            raise UsageError(f"tls_mode must be one of {', '.join(TLS_MODES)}")
        if tls_mode != "none" and self.ssl_context is None:
            self.ssl_context = client_tls_context()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except TimeoutError:
            raise SmtpConnectionError(f"timed out connecting to {self.host}:{self.port}") from None
        except OSError as exc:
            raise SmtpConnectionError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self._sock = sock
        self._show("*", f"connected to {self.host}:{self.port}")
        if tls_mode == "implicit":
            self._sock = self._wrap(sock)
        greeting = self.read_reply()
        if greeting.code != 220:
            raise SmtpConnectionError(f"server refused the connection: {greeting}")
        self.greeting = greeting
        self.ehlo()
        if tls_mode == "starttls":
            self.starttls()
        return self.extensions

    def ehlo(self) -> dict[str, str]:
        assert self._sock is not None
        name = self._ehlo_name or _address_literal(self._sock)
        reply = self.command(f"EHLO {name}")
        if reply.code != 250:
            raise SmtpConnectionError(f"EHLO refused: {reply}")
        extensions: dict[str, str] = {}
        for text in reply.lines[1:]:
            keyword, _, params = text.strip().partition(" ")
            if keyword:
                extensions[keyword.upper()] = params.strip()
        self.extensions = extensions
        return extensions

    def starttls(self) -> None:
        """RFC 3207: STARTTLS, the handshake, then EHLO again."""
        if "STARTTLS" not in self.extensions:
            raise SmtpConnectionError("the server does not offer STARTTLS")
        reply = self.command("STARTTLS")
        if reply.code != 220:
            raise SmtpConnectionError(f"STARTTLS refused: {reply}")
        if self._buf:
            raise SmtpConnectionError("the server sent data after its STARTTLS reply (response injection)")
        assert self._sock is not None
        self._sock = self._wrap(self._sock)
        self.extensions = {}
        self.ehlo()

    def quit(self) -> None:
        """QUIT politely; errors on the way out are ignored."""
        if self._sock is None:
            return
        try:
            self.command("QUIT")
        except SmtpClientError:
            pass
        self.close()

    # ------------------------------------------------------------ AUTH

    @property
    def offered_mechanisms(self) -> list[str]:
        return self.extensions.get("AUTH", "").upper().split()

    def authenticate(
        self,
        mechanism: str,
        username: str,
        secret: str,
        *,
        authzid: str | None = None,
        allow_plaintext: bool = False,
    ) -> AuthResult:
        """Run one RFC 4954 AUTH exchange with saslkit's client mechanism; raise unless it succeeded."""
        name = mechanism.upper()
        info = self.registry.info(name)  # UnknownMechanism (a UsageError) for names saslkit lacks
        offered = self.offered_mechanisms
        if name not in offered:
            raise SmtpAuthError(
                f"the server does not offer {name} here (AUTH {' '.join(offered) or 'not advertised'})"
            )
        if info.plaintext and not self.tls and not allow_plaintext:
            raise SmtpAuthError(f"refusing to send {name} credentials without TLS")
        cb = pick_channel_binding(self.registry, name, self.channel_bindings)
        if info.channel_binding and cb is None:
            raise SmtpAuthError(f"{name} needs channel binding this connection cannot provide")
        plus_offered = any(self.registry.info(m).channel_binding for m in offered if m in self.registry)
        creds = ClientCredentials(
            username, secret, authzid=authzid, channel_binding=cb,
            server_offers_plus=plus_offered,
        )
        client = self.registry.client(name, creds)

        def render(data: bytes | None) -> str:
            return redact(name, data)

        def show_challenge(code: int, text: str) -> str:
            if code != 334:
                return text
            try:
                return render(decode_continuation(text.strip())) if text.strip() else ""
            except SaslError:
                return f"<{len(text)} octets, not base64>"

        first = client.start()
        pending: bytes | None = None
        if first is None:
            self._send(f"AUTH {name}")
        else:
            command = f"AUTH {name} {encode_initial_response(first)}"
            if len(command) + 2 > MAX_COMMAND_LINE:
                pending = first  # RFC 4954 §4: too long for the command line, send it after "334 "
                self._send(f"AUTH {name}", f"AUTH {name} (initial response follows the empty challenge)")
            else:
                self._send(command, f"AUTH {name} {render(first)}")
        while True:
            reply = self.read_reply(shown=show_challenge)
            if reply.code == 334:
                text = reply.lines[0].strip() if len(reply.lines) == 1 else None
                if pending is not None and text == "":
                    self._send(encode_challenge(pending), render(pending))
                    pending = None
                    continue
                try:
                    if text is None:
                        raise SmtpConnectionError("multi-line 334 reply")
                    answer = client.step(decode_continuation(text))
                except (SaslError, SmtpConnectionError) as exc:
                    self._send("*")
                    try:
                        final: Reply | None = self.read_reply()
                    except SmtpConnectionError:
                        final = None
                    raise SmtpAuthError(f"authentication cancelled: {exc}; server: {final or 'no reply'}",
                                        final) from exc
                self._send(encode_challenge(answer), render(answer) if answer else "(empty)")
            elif reply.code == 235:
                try:
                    client.finish(None)
                except SaslError as exc:
                    raise SmtpAuthError(f"the server accepted but did not prove itself: {exc}", reply) from exc
                self.authenticated = AuthResult(name, cb[0] if cb and info.channel_binding else None, reply,
                                                dict(self.extensions))
                return self.authenticated
            else:
                raise SmtpAuthError(f"authentication failed: {reply}", reply)

    # ------------------------------------------------------------ REMEMBERME

    def check_remember(self, token_type: str) -> None:
        """Raise :class:`SmtpAuthError` unless the EHLO reply offers REMEMBERME ``token_type``."""
        check_token_type(token_type)
        if "REMEMBERME" not in self.extensions:
            raise SmtpAuthError("the server does not offer REMEMBERME here")
        types = self.extensions["REMEMBERME"].upper().split()
        if token_type.upper() not in types:
            raise SmtpAuthError(f"the server does not offer REMEMBERME {token_type.upper()} "
                                f"(REMEMBERME {' '.join(types)})")

    def remember(self, token_type: str) -> str:
        """``REMEMBERME <type>`` after AUTH: the new token (draft-melnikov-smtp-rememberme-00 §3)."""
        self.check_remember(token_type)

        def mask(code: int, text: str) -> str:
            if code != 235:
                return text
            words = text.split(" ")
            keep = 1 if words and _ENHANCED_RE.fullmatch(words[0]) else 0
            return " ".join([*words[:keep], "<token masked>"]) if len(words) > keep else text

        self._send(f"REMEMBERME {token_type.upper()}")
        reply = self.read_reply(shown=mask)
        if reply.code != 235:
            raise SmtpAuthError(f"REMEMBERME refused: {reply}", reply)
        words = reply.text.split()
        if words and _ENHANCED_RE.fullmatch(words[0]):
            words = words[1:]
        if len(words) != 1:
            raise SmtpConnectionError("malformed REMEMBERME reply: expected 235 [2.7.x] <base64 token>")
        try:
            token = base64.b64decode(words[0], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SmtpConnectionError("malformed REMEMBERME reply: the token is not base64 of UTF-8") from None
        if not token or any(ch in token for ch in "\r\n"):
            raise SmtpConnectionError("malformed REMEMBERME reply: empty or multi-line token")
        return token

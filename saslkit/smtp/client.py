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
* Channel binding comes from the TLS connection: with a context from
  :func:`~saslkit.net.client.client_tls_context` and pyOpenSSL installed
  (the ``tls`` extra), TLS runs on pyOpenSSL and gives ``tls-exporter``
  (RFC 9266), ``tls-server-end-point``, and below TLS 1.3 with the extended
  master secret ``tls-unique``; otherwise on the stdlib's ``ssl``
  (:func:`~saslkit.channel_binding.channel_bindings_from_ssl`), which cannot
  export ``tls-exporter``.  ``-v`` shows the binding used.  SCRAM-*-PLUS takes
  tls-exporter, then tls-server-end-point, then tls-unique; HT-*-UNIQ/ENDP/EXPR
  take their own type.  A non-PLUS SCRAM client is told whether the server
  offered any -PLUS name (RFC 5802 §6: ``y`` when it offered none).
* AUTH (RFC 4954 §4): ``AUTH <mech> <base64 or =>``; an initial response
  that would push the command line over 512 octets is sent after the empty
  ``334`` instead.  Each ``334`` is answered in base64 (an empty line for an
  empty response); a challenge that is not strict base64, or that the
  mechanism rejects, is answered with ``*``.  A ``235`` is a success only if
  the mechanism accepts it (SCRAM ``v=``, HT responder message).  The
  exchange itself is :class:`saslkit.auth.client.ClientAuth`'s; this module
  frames its lines.
* The mechanism must be in the server's EHLO ``AUTH`` list.  A plaintext
  mechanism (PLAIN, REMEMBERME, STOKEN) that a server offers without TLS is
  used only with ``allow_plaintext=True``.
* ``REMEMBERME <type>`` needs the EHLO keyword listing that type; the answer
  ``235 [2.7.x] <base64 token>`` is decoded to the token string.
* The transcript callback (``log``) sees every line with secrets masked:
  SASL payloads through :func:`saslkit._redact.redact`, the REMEMBERME token
  as ``<token masked>``.

Errors: :class:`SmtpConnectionError` (refused, timeout, TLS handshake or
certificate, STARTTLS not offered, the server breaking the protocol or
closing) and :class:`SmtpAuthError` (the mechanism is not offered, the server
refused the credentials or the token request, or the server did not prove
itself).  Both are :class:`SmtpClientError`.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Unpack

from ..auth.client import (
    SMTP_FRAMING,
    Cancel,
    ClientAuthenticated,
    EncodedChallenge,
    MalformedChallenge,
    ServerFailure,
    ServerMessage,
    ServerSuccess,
    drive,
)

# Connection, TLS, channel-binding and error plumbing shared with the IMAP client (re-exported names kept).
from ..net.client import (
    ClientAuthError,
    ClientConnectionError,
    ClientError,
    ClientOptions,
    LineClient,
    TlsMode,
    checked_token_type,
    client_tls_context,
    pick_channel_binding,
    show_payload,
)
from ..net.tls import OpenSSLClientSocket
from .session import MAX_SMTP_AUTH_LINE

__all__ = [
    "SmtpAuthError",
    "SmtpAuthResult",
    "SmtpClient",
    "SmtpClientError",
    "SmtpConnectionError",
    "SmtpReply",
    "TlsMode",
    "check_token_type",
    "client_tls_context",
    "pick_channel_binding",
]

MAX_REPLY_LINES = 256

_REPLY_RE = re.compile(rb"([2-5][0-9][0-9])([ -]|$)")
_ENHANCED_RE = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_ATOM_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


class SmtpClientError(ClientError):
    """Base class of the client's errors."""


class SmtpConnectionError(SmtpClientError, ClientConnectionError):
    """Connection, TLS or protocol failure (CLI exit 3)."""


class SmtpAuthError(SmtpClientError, ClientAuthError):
    """Authentication (or REMEMBERME) refused or not possible (CLI exit 1); ``reply``: the server's last."""

    reply: SmtpReply | None


@dataclass(frozen=True)
class SmtpReply:
    """One SMTP reply: its code and the text of each line (without code and separator)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


@dataclass(frozen=True)
class SmtpAuthResult:
    """A successful AUTH: the mechanism, the channel-binding type used (if any), the 235 reply."""

    mechanism: str
    channel_binding: str | None
    reply: SmtpReply
    extensions: dict[str, str] = field(default_factory=dict)


def check_token_type(token_type: str) -> str:
    """A REMEMBERME token type is an RFC 5321 atom (rememberme-00 §4); raise :class:`UsageError` if not."""
    return checked_token_type(_ATOM_RE, token_type)


def _auth_message(reply: SmtpReply) -> ServerMessage:
    """An AUTH reply as the exchange engine takes it (RFC 4954 §4: 334 challenge, 235 success)."""
    if reply.code == 334:
        if len(reply.lines) != 1:
            return MalformedChallenge("multi-line 334 reply")
        return EncodedChallenge(reply.lines[0].strip())
    return ServerSuccess() if reply.code == 235 else ServerFailure(str(reply))


def _address_literal(sock: socket.socket | OpenSSLClientSocket) -> str:
    """Our side of the connection as an RFC 5321 §4.1.3 address literal for EHLO."""
    try:
        address = sock.getsockname()[0]
    except OSError:
        return "localhost"
    if isinstance(address, str) and ":" in address:
        return f"[IPv6:{address}]"
    return f"[{address}]" if address else "localhost"


class SmtpClient(LineClient):
    """One blocking SMTP connection (see the module docstring)."""

    protocol = "SMTP"
    max_line = MAX_SMTP_AUTH_LINE
    client_error = SmtpClientError
    connection_error = SmtpConnectionError
    auth_error = SmtpAuthError

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ehlo_name: str | None = None,
        lmtp: bool = False,
        **options: Unpack[ClientOptions],
    ) -> None:
        """``options``: ``ssl_context``, ``timeout``, ``log`` and ``registry``, as :class:`LineClient` takes them."""
        super().__init__(host, port, **options)
        self._ehlo_name = ehlo_name
        #: Speak LMTP (RFC 2033 §4.1: LHLO instead of EHLO), e.g. for STOKEN submission.
        self.lmtp = lmtp
        #: EHLO keywords (upper case) -> their parameters, from the latest EHLO.
        self.extensions: dict[str, str] = {}
        self.greeting: SmtpReply | None = None
        self.authenticated: SmtpAuthResult | None = None

    # ------------------------------------------------------------ wire

    def read_reply(self, shown: Callable[[int, str], str] | None = None) -> SmtpReply:
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
                return SmtpReply(int(code), tuple(lines))
            if len(lines) >= MAX_REPLY_LINES:
                raise SmtpConnectionError(f"reply of more than {MAX_REPLY_LINES} lines")

    def command(self, line: str, shown: str | None = None) -> SmtpReply:
        self._send(line, shown)
        return self.read_reply()

    # ------------------------------------------------------------ connection

    def connect(self, tls_mode: TlsMode = "starttls") -> dict[str, str]:
        """Connect, read the greeting, EHLO (and STARTTLS + EHLO); return the EHLO keywords."""
        self._open(tls_mode)
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
        verb = "LHLO" if self.lmtp else "EHLO"
        reply = self.command(f"{verb} {name}")
        if reply.code != 250:
            raise SmtpConnectionError(f"{verb} refused: {reply}")
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
        self._start_tls()
        self.extensions = {}
        self.ehlo()

    def quit(self) -> None:
        """QUIT politely; errors on the way out are ignored."""
        self._sign_off("QUIT")

    # ------------------------------------------------------------ AUTH

    @property
    def offered_mechanisms(self) -> list[str]:
        return self.extensions.get("AUTH", "").upper().split()

    def _offer_text(self, offered: list[str]) -> str:
        return f"AUTH {' '.join(offered) or 'not advertised'}"

    def authenticate(self, mechanism: str | None, username: str, secret: str, *, authzid: str | None = None,
                     allow_plaintext: bool = False) -> SmtpAuthResult:
        """Run one RFC 4954 AUTH exchange (``mechanism`` ``None``: the best offered one); raise unless it succeeded."""
        auth = self._client_auth(mechanism, self.offered_mechanisms, username, secret, authzid=authzid,
                                 allow_plaintext=allow_plaintext, framing=SMTP_FRAMING)
        command = auth.start()
        self._send(f"AUTH {command.arguments}", f"AUTH {command.shown}")
        replies: list[SmtpReply] = []

        def show_challenge(code: int, text: str) -> str:
            return show_payload(auth.mechanism, text, strip=True) if code == 334 else text

        def receive() -> ServerMessage:
            replies.append(self.read_reply(shown=show_challenge))
            return _auth_message(replies[-1])

        outcome = drive(auth, receive, lambda step: self._send(step.line, step.shown))
        if not isinstance(outcome, ClientAuthenticated):
            raise self._auth_failure(outcome, self._final_reply() if isinstance(outcome, Cancel) else replies[-1])
        self.authenticated = SmtpAuthResult(outcome.mechanism, outcome.channel_binding, replies[-1],
                                        dict(self.extensions))
        return self.authenticated

    def _final_reply(self) -> SmtpReply | None:
        """The server's reply to our ``*``; ``None`` if it left instead."""
        try:
            return self.read_reply()
        except SmtpConnectionError:
            return None

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
        return self._decode_token(words[0], "malformed REMEMBERME reply")

"""SASL login for the standard library's clients: :func:`smtp_login` (``smtplib.SMTP``) and :func:`imap_login`
(``imaplib.IMAP4``), driven by saslkit's client engine (:class:`~saslkit.auth.client.ClientAuth`).

Usage::

    import smtplib, ssl
    from saslkit.stdlib import smtp_login

    with smtplib.SMTP("mail.example.net", 587) as smtp:
        smtp.starttls(context=ssl.create_default_context())
        result = smtp_login(smtp, "jörg", "pencil")   # the strongest mechanism both sides have
        print(result.mechanism, result.channel_binding)  # e.g. SCRAM-SHA-256-PLUS tls-server-end-point

What they do that ``smtp.login()`` / ``imap.authenticate()`` glue does not:

* pick the strongest mechanism both sides support (registry order, -PLUS first), or check the one asked
  for (``mechanism=``); PLAIN/LOGIN and token mechanisms only over TLS unless ``allow_plaintext``;
* send identities and secrets as UTF-8 after SASLprep, so ``jörg`` works (``smtplib`` ASCII-encodes
  what its own ``auth_plain`` builds and raises ``UnicodeEncodeError``);
* bind to the TLS channel when the connection's socket is an ``ssl.SSLSocket``: ``tls-server-end-point``
  from the server certificate (RFC 5929 §4), and ``tls-unique`` below TLS 1.3
  (:func:`~saslkit.channel_binding.channel_bindings_from_ssl`);
* verify the server's final data (SCRAM ``v=``, RFC 5802 §3; HT's responder message): a server that
  says success without proving it knows the credentials raises :class:`ServerNotVerified` (RFC 4422 §5);
* optionally ask for a REMEMBERME token once authenticated (``remember="RANDOM"`` or ``"JWT"``;
  draft-melnikov-smtp-rememberme-00 §3, saslkit's IMAP ``OK [REMEMBERME <base64>]``), returned in
  :attr:`StdlibLogin.token`; log in with it later with ``token=True``.

A refusal by the server raises what the standard library raises for one (``smtplib.SMTPAuthenticationError``,
``imaplib.IMAP4.error``); a mechanism that cannot be used here raises
:class:`~saslkit.auth.client.MechanismUnavailable`.  ``imaplib`` has no SASL-IR, so the initial response
follows the server's empty ``+`` (RFC 9051 §6.2.2).
"""

from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .auth.client import (
    IMAP_FRAMING,
    SMTP_FRAMING,
    Answer,
    Cancel,
    ClientAuth,
    ClientAuthenticated,
    EncodedChallenge,
    Framing,
    MalformedChallenge,
    Rejected,
    ServerFailure,
    ServerMessage,
    ServerSuccess,
    Unverified,
)
from .channel_binding import channel_bindings_from_ssl
from .errors import AuthenticationFailed, ProtocolError
from .mechanism import Challenge
from .registry import Registry, default_registry

__all__ = ["ServerNotVerified", "StdlibLogin", "imap_login", "smtp_login"]

_ENHANCED_STATUS = re.compile(r"\d\.\d{1,3}\.\d{1,3}")
_TOKEN_TYPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ServerNotVerified(AuthenticationFailed):
    """The exchange ended without a verified server: it failed its proof, or the client cancelled (``*``).

    ``reason`` is machine-readable (e.g. ``server-not-verified``, ``unexpected-challenge``).
    """


@dataclass(frozen=True)
class StdlibLogin:
    """A successful login: the mechanism, the channel-binding type used, and the REMEMBERME token if asked."""

    mechanism: str
    channel_binding: str | None = None
    token: str | None = field(default=None, repr=False)


def _bindings(sock: object) -> dict[str, bytes]:
    """The channel bindings the client side of ``sock`` can give (none without TLS)."""
    if isinstance(sock, ssl.SSLSocket):
        return channel_bindings_from_ssl(sock)
    return {}


def _start(
    registry: Registry | None, offered: Iterable[str], sock: object, user: str, secret: str, framing: Framing,
    mechanism: str | None, authzid: str | None, allow_plaintext: bool, token: bool,
) -> ClientAuth:
    return ClientAuth.for_server(
        registry or default_registry(), offered, user, secret, mechanism=mechanism, authzid=authzid,
        framing=framing, tls=isinstance(sock, ssl.SSLSocket), channel_bindings=_bindings(sock),
        allow_plaintext=allow_plaintext, token=token,
    )


def _not_verified(outcome: Unverified | Cancel) -> ServerNotVerified:
    return ServerNotVerified(outcome.reason, outcome.message)


def _decode_token(encoded: str) -> str:
    try:
        token = base64.b64decode(encoded, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        raise ProtocolError("invalid-encoding", "the REMEMBERME token is not base64 of UTF-8") from None
    if not token or any(ch in token for ch in "\r\n"):
        raise ProtocolError("invalid-encoding", "empty or multi-line REMEMBERME token")
    return token


def _token_type(remember: str) -> str:
    if not _TOKEN_TYPE.fullmatch(remember):
        raise ValueError(f"not a REMEMBERME token type: {remember!r}")
    return remember.upper()


# ---------------------------------------------------------------- SMTP


def _smtp_message(code: int, text: bytes) -> ServerMessage:
    """An AUTH reply as the engine takes it (RFC 4954 §4: 334 challenge, 235 success)."""
    if code == 334:
        return MalformedChallenge("multi-line 334 reply") if b"\n" in text else EncodedChallenge(text.strip())
    if code == 235:
        return ServerSuccess()
    return ServerFailure(f"{code} {text.decode('utf-8', 'replace')}")


def smtp_login(
    smtp: smtplib.SMTP,
    user: str,
    secret: str,
    mechanism: str | None = None,
    *,
    authzid: str | None = None,
    remember: str | None = None,
    token: bool = False,
    allow_plaintext: bool = False,
    registry: Registry | None = None,
) -> StdlibLogin:
    """Authenticate ``smtp`` with SASL AUTH (RFC 4954) as ``user``; see the module docstring.

    ``secret`` is a password, or a token when ``token`` is true; ``remember`` asks for a REMEMBERME
    token of that type after success.  Raises ``smtplib.SMTPNotSupportedError`` when the server offers no
    AUTH, ``smtplib.SMTPAuthenticationError`` when it refuses, :class:`ServerNotVerified`, and
    :class:`~saslkit.auth.client.MechanismUnavailable`.
    """
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    offered = smtp.esmtp_features["auth"].split()
    auth = _start(registry, offered, smtp.sock, user, secret, SMTP_FRAMING, mechanism, authzid, allow_plaintext,
                  token)
    code, text = smtp.docmd("AUTH", auth.start().arguments)
    while True:
        event = auth.receive(_smtp_message(code, text))
        if isinstance(event, Answer):
            code, text = smtp.docmd(event.line)
            continue
        if isinstance(event, Cancel):
            smtp.docmd(Cancel.line)  # RFC 4954 §4: the server answers 501
            raise _not_verified(event)
        if isinstance(event, Unverified):
            raise _not_verified(event)
        if isinstance(event, Rejected):
            raise smtplib.SMTPAuthenticationError(code, text)
        break
    result = StdlibLogin(event.mechanism, event.channel_binding)
    if remember is None:
        return result
    return StdlibLogin(result.mechanism, result.channel_binding, _smtp_remember(smtp, _token_type(remember)))


def _smtp_remember(smtp: smtplib.SMTP, kind: str) -> str:
    """``REMEMBERME <type>`` -> ``235 [2.7.x] <base64 token>`` (draft-melnikov-smtp-rememberme-00 §3)."""
    types = smtp.esmtp_features.get("rememberme", "").upper().split()
    if kind not in types:
        raise smtplib.SMTPNotSupportedError(f"the server does not offer REMEMBERME {kind}")
    code, text = smtp.docmd("REMEMBERME", kind)
    if code != 235:
        raise smtplib.SMTPResponseException(code, text)
    words = text.decode("ascii", "replace").split()
    if words and _ENHANCED_STATUS.fullmatch(words[0]):
        words = words[1:]
    if len(words) != 1:
        raise ProtocolError("malformed-reply", "malformed REMEMBERME reply: expected 235 [2.7.x] <base64 token>")
    return _decode_token(words[0])


# ---------------------------------------------------------------- IMAP


def _imap_offered(imap: imaplib.IMAP4) -> list[str]:
    return [c[5:] for c in imap.capabilities if c.upper().startswith("AUTH=")]


def imap_login(
    imap: imaplib.IMAP4,
    user: str,
    secret: str,
    mechanism: str | None = None,
    *,
    authzid: str | None = None,
    remember: str | None = None,
    token: bool = False,
    allow_plaintext: bool = False,
    registry: Registry | None = None,
) -> StdlibLogin:
    """Authenticate ``imap`` with AUTHENTICATE (RFC 9051 §6.2.2) as ``user``; see the module docstring.

    Raises ``imaplib.IMAP4.error`` when the server refuses, :class:`ServerNotVerified`, and
    :class:`~saslkit.auth.client.MechanismUnavailable`.
    """
    auth = _start(registry, _imap_offered(imap), imap.sock, user, secret, IMAP_FRAMING, mechanism, authzid,
                  allow_plaintext, token)
    name = auth.start().mechanism
    ended: list[Cancel] = []

    def answer(challenge: bytes) -> bytes | None:
        event = auth.receive(Challenge(challenge))
        if isinstance(event, Answer):
            return event.data
        ended.append(event if isinstance(event, Cancel) else auth.cancel("unexpected outcome mid-exchange"))
        return None  # imaplib sends "*"

    callback: Callable[[bytes], bytes | None] = answer
    try:
        imap.authenticate(name, callback)
    except imaplib.IMAP4.error:
        if ended:
            raise _not_verified(ended[0]) from None
        raise
    outcome = auth.receive(ServerSuccess())
    if not isinstance(outcome, ClientAuthenticated):
        raise _not_verified(outcome) if isinstance(outcome, (Unverified, Cancel)) else imaplib.IMAP4.error(
            "authentication failed")
    result = StdlibLogin(outcome.mechanism, outcome.channel_binding)
    if remember is None:
        return result
    return StdlibLogin(result.mechanism, result.channel_binding, _imap_remember(imap, _token_type(remember)))


_REMEMBER_CODE = re.compile(rb"\[REMEMBERME ([A-Za-z0-9+/=]+)\]", re.IGNORECASE)


def _imap_remember(imap: imaplib.IMAP4, kind: str) -> str:
    """``REMEMBERME <type>`` -> ``tag OK [REMEMBERME <base64 token>]``."""
    wanted = f"REMEMBERME={kind}"
    if wanted not in {c.upper() for c in imap.capabilities}:
        typ, data = imap.capability()  # capabilities may change once authenticated
        if typ != "OK" or wanted not in (data[-1] or b"").decode("ascii", "replace").upper().split():
                raise imaplib.IMAP4.error(f"the server does not offer REMEMBERME {kind}")
    imaplib.Commands.setdefault("REMEMBERME", ("AUTH", "SELECTED"))
    command: Any = imap._simple_command  # imaplib has no public way to send an extension command
    typ, data = command("REMEMBERME", kind)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"REMEMBERME refused: {data[-1]!r}")
    found = _REMEMBER_CODE.search(data[-1] or b"")
    if found is None:
        raise ProtocolError("malformed-reply", "malformed REMEMBERME response: expected OK [REMEMBERME <token>]")
    return _decode_token(found.group(1).decode("ascii"))

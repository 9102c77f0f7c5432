"""IMAP authentication replies in one table (RFC 9051 §6.2.2, §6.2.3; RFC 4959; RFC 5530 response codes).

:func:`auth_reply` turns an outcome of :class:`saslkit.auth.engine.ServerAuth`
into the line(s) of an ``AUTHENTICATE`` or ``LOGIN`` command: ``+`` carries a
challenge, the tagged ``OK``/``NO``/``BAD`` ends the command.
"""

from __future__ import annotations

from ..auth.engine import Abort, AuthOutcome
from ..auth.events import Authenticated, AuthFailed, AuthRefused
from ..auth.framing import encode_challenge
from ..mechanism import Challenge
from ..registry import Refusal

__all__ = ["ABORTED", "LOGIN_REFUSED", "REFUSED", "auth_reply"]

#: (status, RFC 5530 code, text) of a tagged reply
Tagged = tuple[str, str, str]

FAILED: Tagged = ("NO", "AUTHENTICATIONFAILED", "Authentication failed")
NOT_AUTHORIZED: Tagged = ("NO", "AUTHORIZATIONFAILED", "Authentication failed")
TEMPORARY: Tagged = ("NO", "UNAVAILABLE", "Authentication temporarily unavailable")
TOO_MANY_FAILURES = "* BYE Too many failed authentication attempts"

_UNSUPPORTED: Tagged = ("NO", "CANNOT", "Unsupported authentication mechanism")
_NOT_HERE: Tagged = ("NO", "PRIVACYREQUIRED", "Mechanism not allowed on this connection")

REFUSED: dict[Refusal, Tagged] = {
    Refusal.UNKNOWN: _UNSUPPORTED,
    Refusal.NOT_OFFERED: _UNSUPPORTED,
    Refusal.DISABLED_BY_POLICY: _NOT_HERE,
    Refusal.REQUIRES_TLS: _NOT_HERE,
    Refusal.NO_CHANNEL_BINDING: _NOT_HERE,
    Refusal.INITIAL_RESPONSE_NOT_ALLOWED: ("BAD", "", "Initial response not allowed for this mechanism"),  # RFC 4959 §3
}

#: LOGIN runs as PLAIN: refused whenever PLAIN is (then LOGINDISABLED is advertised, RFC 9051 §6.2.3).
LOGIN_REFUSED: dict[Refusal, Tagged] = {
    **{refusal: ("NO", "CANNOT", "LOGIN is disabled on this server") for refusal in Refusal},
    Refusal.REQUIRES_TLS: ("NO", "PRIVACYREQUIRED", "LOGIN is disabled without TLS"),
}

ABORTED: dict[Abort, Tagged] = {
    Abort.CANCELLED: ("BAD", "", "Authentication cancelled"),
    Abort.INVALID_INITIAL_RESPONSE: ("BAD", "", "Invalid base64 in initial response"),
    Abort.INVALID_BASE64: ("BAD", "", "Invalid base64"),
    Abort.LINE_TOO_LONG: ("BAD", "", "Authentication line too long"),
}


def tagged(tag: str, reply: Tagged) -> str:
    """``tag STATUS [CODE] text``."""
    status, code, text = reply
    return f"{tag} {status} {'[' + code + '] ' if code else ''}{text}"


def auth_reply(tag: str, outcome: AuthOutcome, capabilities: list[str], *, login: bool = False) -> str:
    """The line answering one engine outcome; success names the new capabilities (RFC 9051 §6.2.2)."""
    if isinstance(outcome, Challenge):
        return f"+ {encode_challenge(outcome.data)}"
    if isinstance(outcome, Authenticated):
        return tagged(tag, ("OK", "CAPABILITY " + " ".join(capabilities), "Authenticated"))
    if isinstance(outcome, AuthFailed):
        return tagged(tag, TEMPORARY if outcome.temporary else NOT_AUTHORIZED if outcome.authorization else FAILED)
    if isinstance(outcome, AuthRefused):
        return tagged(tag, (LOGIN_REFUSED if login else REFUSED)[outcome.refusal])
    return tagged(tag, ABORTED[outcome.reason])

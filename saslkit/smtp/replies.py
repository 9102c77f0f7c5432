"""SMTP AUTH replies in one table (RFC 4954 §4, §6; RFC 2034 enhanced status codes).

:func:`auth_reply` turns an outcome of :class:`saslkit.auth.engine.ServerAuth`
into its reply line; the other names are the fixed replies around AUTH.
"""

from __future__ import annotations

from ..auth.engine import Abort, AuthOutcome
from ..auth.events import Authenticated, AuthFailed, AuthRefused
from ..auth.framing import encode_challenge
from ..mechanism import Challenge
from ..registry import Refusal

__all__ = ["ABORTED", "REFUSED", "auth_reply"]

SUCCEEDED = "235 2.7.0 Authentication successful"
FAILED = "535 5.7.8 Authentication credentials invalid"
TEMPORARY = "454 4.7.0 Temporary authentication failure"
TOO_MANY_FAILURES = "421 4.7.0 Too many failed authentication attempts; closing"
THROTTLED = "454 4.7.0 Too many authentication attempts; try again later"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
SEND_EHLO_FIRST = "503 5.5.1 Send EHLO first"
ALREADY_AUTHENTICATED = "503 5.5.1 Already authenticated"
IN_TRANSACTION = "503 5.5.1 AUTH not allowed during a mail transaction"
AUTH_SYNTAX = "501 5.5.4 Syntax: AUTH mechanism [initial-response]"
AUTH_LINE_TOO_LONG = "500 5.5.6 Line too long"

_TOO_WEAK = "534 5.7.9 Authentication mechanism is too weak here: "
_UNRECOGNIZED = "504 5.5.4 Unrecognized authentication type"

REFUSED: dict[Refusal, str] = {
    Refusal.UNKNOWN: _UNRECOGNIZED,
    Refusal.NOT_OFFERED: _UNRECOGNIZED,
    Refusal.DISABLED_BY_POLICY: _TOO_WEAK + Refusal.DISABLED_BY_POLICY.value,
    Refusal.REQUIRES_TLS: _TOO_WEAK + Refusal.REQUIRES_TLS.value,
    Refusal.NO_CHANNEL_BINDING: _TOO_WEAK + Refusal.NO_CHANNEL_BINDING.value,
    Refusal.INITIAL_RESPONSE_NOT_ALLOWED: "501 5.7.0 Initial response not allowed for this mechanism",
}

ABORTED: dict[Abort, str] = {
    Abort.CANCELLED: "501 5.0.0 Authentication cancelled",
    Abort.INVALID_INITIAL_RESPONSE: "501 5.5.2 Invalid base64 data",
    Abort.INVALID_BASE64: "501 5.5.2 Invalid base64 data",
    Abort.LINE_TOO_LONG: "500 5.5.6 Authentication Exchange line is too long",
}


def auth_reply(outcome: AuthOutcome) -> str:
    """The reply line of one engine outcome (``334`` carries a challenge, RFC 4954 §4)."""
    if isinstance(outcome, Challenge):
        return f"334 {encode_challenge(outcome.data)}"
    if isinstance(outcome, Authenticated):
        return SUCCEEDED
    if isinstance(outcome, AuthFailed):
        return TEMPORARY if outcome.temporary else FAILED
    if isinstance(outcome, AuthRefused):
        return REFUSED[outcome.refusal]
    return ABORTED[outcome.reason]

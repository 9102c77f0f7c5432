"""Dovecot auth-protocol replies in one table (docs/dovecot-auth-protocol.md, "Authentication").

:func:`auth_reply` turns an outcome of :class:`saslkit.auth.engine.ServerAuth`
into the fields of one ``CONT``, ``OK`` or ``FAIL`` line.  Reasons are fixed
texts that say what kind of failure happened, never anything about the account:
Postfix shows them to the SMTP client after ``535 5.7.8 Error: authentication
failed:``.
"""

from __future__ import annotations

from ..auth.engine import Abort, AuthOutcome
from ..auth.events import Authenticated, AuthFailed, AuthRefused
from ..auth.framing import encode_challenge
from ..mechanism import Challenge
from ..registry import Refusal

__all__ = ["FailCode", "auth_reply", "fail"]


class FailCode:
    """``code=`` values of a ``FAIL`` (Dovecot's auth-client-interface.h)."""

    TEMPORARY = "temp_fail"
    AUTHORIZATION = "authz_fail"
    INVALID_BASE64 = "invalid_base64"


AUTH_FAILED = "Authentication failed"
TEMPORARY = "Temporary authentication failure"
AUTHZ_FAILED = "Authorization failed"
TIMED_OUT = "Authentication timed out"
TOO_MANY_REQUESTS = "Too many authentication requests on this connection"

REFUSED: dict[Refusal, str] = {
    Refusal.UNKNOWN: "Unsupported authentication mechanism",
    Refusal.NOT_OFFERED: "Unsupported authentication mechanism",
    Refusal.DISABLED_BY_POLICY: "Unsupported authentication mechanism",  # not in the MECH list either
    Refusal.REQUIRES_TLS: "Authentication mechanism requires a secured (TLS) connection",
    Refusal.NO_CHANNEL_BINDING: "Channel binding is not available",
    Refusal.INITIAL_RESPONSE_NOT_ALLOWED: "Initial response not allowed for this mechanism",
}

ABORTED: dict[Abort, tuple[str, str | None]] = {
    Abort.CANCELLED: ("Authentication cancelled", None),
    Abort.INVALID_INITIAL_RESPONSE: ("Invalid base64 data in initial response", FailCode.INVALID_BASE64),
    Abort.INVALID_BASE64: ("Invalid base64 data in continued response", FailCode.INVALID_BASE64),
    Abort.LINE_TOO_LONG: ("Authentication exchange line is too long", None),
}


def fail(request_id: int, reason: str, code: str | None = None, user: str | None = None) -> list[str]:
    """The fields of ``FAIL <id> [code=] reason= [user=]``."""
    fields = ["FAIL", str(request_id)]
    if code is not None:
        fields.append(f"code={code}")
    fields.append(f"reason={reason}")
    if user:
        fields.append(f"user={user}")
    return fields


def auth_reply(request_id: int, outcome: AuthOutcome, *, final_resp_ok: bool = False) -> list[str]:
    """The fields of the line answering one engine outcome.

    A success always names ``user=`` (Postfix logs "authentication backend error" without it);
    its additional data rides in ``resp=`` only when the client said ``final-resp-ok`` (the
    engine otherwise sends that data as a challenge first, RFC 4422 §5 item 2b).
    """
    if isinstance(outcome, Challenge):
        return ["CONT", str(request_id), encode_challenge(outcome.data)]
    if isinstance(outcome, Authenticated):
        fields = ["OK", str(request_id), f"user={outcome.identity}"]
        data = outcome.success.additional_data
        if final_resp_ok and data is not None:
            fields.append(f"resp={encode_challenge(data)}")
        return fields
    if isinstance(outcome, AuthFailed):
        if outcome.temporary:
            return fail(request_id, TEMPORARY, FailCode.TEMPORARY, outcome.authcid)
        if outcome.authorization:
            return fail(request_id, AUTHZ_FAILED, FailCode.AUTHORIZATION, outcome.authcid)
        return fail(request_id, AUTH_FAILED, None, outcome.authcid)
    if isinstance(outcome, AuthRefused):
        return fail(request_id, REFUSED[outcome.refusal])
    reason, code = ABORTED[outcome.reason]
    return fail(request_id, reason, code)

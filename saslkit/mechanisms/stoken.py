"""STOKEN: authentication with a submission token (draft-slusarz-extra-smtp-submission-token-00 §7.3.1).

The draft leaves the mechanism as a TODO with one idea, which we implement:
the single client message is ``recipient NUL stoken`` (base64 on the wire);
the recipient is a local address and the token must be valid for it.
**Choice:** the draft's own example decodes to ``user@foo.com\\0s6xW15h9Dh``
with a literal backslash-zero; we accept that two-character separator too,
but only when the message contains no NUL octet, so the example works and
no real address (which never holds ``\\0`` before a token) is misread.

Success names the remote address as the authentication identity and gives
the local address and token kind in :attr:`Success.details`, so the binding
can limit ``RCPT TO`` to that recipient.  A failure names in
:attr:`Failure.authcid` the remote address a well-formed token claims
(unverified; for logs and the per-identity auth penalty only).
"""

from __future__ import annotations

from ..context import ClientCredentials, ServerContext
from ..errors import ProtocolError, TemporaryFailure, TokenRejected, UsageError
from ..mechanism import Challenge, Failure, FailureReason, OneMessageState, ServerStep, Success
from ..tokens.submission import stoken_remote

__all__ = ["StokenClient", "StokenServer", "parse_stoken_message"]

NAME = "STOKEN"
MAX_MESSAGE = 2048


def parse_stoken_message(data: bytes) -> tuple[str, str]:
    """Split ``recipient NUL token`` (or the draft example's literal ``\\0``)."""
    if not data or len(data) > MAX_MESSAGE:
        raise ProtocolError("invalid-encoding", "bad STOKEN message length")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid-encoding", "STOKEN message is not UTF-8") from None
    if "\x00" in text:
        recipient, _, token = text.partition("\x00")
    else:
        recipient, _, token = text.partition("\\0")
    if not recipient or not token or "\x00" in token:
        raise ProtocolError("invalid-encoding", "STOKEN message is recipient NUL token")
    return recipient, token


class StokenServer:
    """Server side of STOKEN; needs ``ctx.stokens``."""

    name = NAME

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._state = OneMessageState.START

    @property
    def done(self) -> bool:
        return self._state is OneMessageState.DONE

    def step(self, response: bytes | None) -> ServerStep:
        if self._state is OneMessageState.DONE:
            raise UsageError("STOKEN exchange already finished")
        if response is None and self._state is OneMessageState.START:
            self._state = OneMessageState.EMPTY_CHALLENGE_SENT
            return Challenge(b"")
        self._state = OneMessageState.DONE
        try:
            recipient, token = parse_stoken_message(response or b"")
        except ProtocolError as exc:
            return Failure(FailureReason.INVALID_ENCODING, str(exc))
        if self._ctx.stokens is None:
            return Failure(FailureReason.AUTHENTICATION_FAILED, "submission tokens are not enabled here")
        try:
            verified = self._ctx.stokens.verify(recipient, token)
        except TokenRejected as exc:
            return Failure(FailureReason.AUTHENTICATION_FAILED, str(exc), authcid=stoken_remote(token))
        except TemporaryFailure:
            return Failure(FailureReason.TEMPORARY_FAILURE, "token store unavailable", authcid=stoken_remote(token))
        return Success(
            verified.remote, None, None, NAME, {"stoken_local": verified.local, "stoken_kind": verified.kind}
        )


class StokenClient:
    """Client side: ``creds.username`` is the recipient, ``creds.secret`` the token."""

    name = NAME

    def __init__(self, creds: ClientCredentials) -> None:
        if not creds.username or not creds.secret or "\x00" in creds.username + creds.secret:
            raise UsageError("STOKEN needs a recipient and a token without NUL")
        self._message = f"{creds.username}\x00{creds.secret}".encode()

    def start(self) -> bytes:
        return self._message

    def step(self, challenge: bytes) -> bytes:
        raise ProtocolError("invalid-encoding", "STOKEN has no further challenge")

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data:
            raise ProtocolError("invalid-encoding", "STOKEN has no additional data")

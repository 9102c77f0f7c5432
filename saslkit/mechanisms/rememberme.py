"""REMEMBERME (draft-ietf-kitten-sasl-rememberme-00 §3).

Client-first, one message: the token, opaque octets.  The token alone names
the user (§5 item 1), so there is no authzid.  On failure the server-final
message ``e=<reason>,m=<text>`` is put in :attr:`Failure.data` for protocols
that can carry it; the reasons are ``invalid-encoding``, ``unknown-user`` and
``other-error`` (§3), and the text explains a revocation (§5 item 3).  The
draft's example token carries a trailing LF (docs/protocol-notes.md §7.1): tokens are
compared exactly, never trimmed.

After the token service accepts a token, the user must still exist in
``ctx.users`` and the token must not predate the user's last credential
change (:func:`~saslkit.tokens.records.token_user_current`); otherwise the
failure is the one of an unknown token.  :attr:`Failure.authcid` names the
token's user once the token was identified (found in the store).
"""

from __future__ import annotations

from ..context import ClientCredentials, ServerContext
from ..errors import ProtocolError, StoreError, TemporaryFailure, TokenRejected, UsageError
from ..mechanism import Challenge, Failure, FailureReason, OneMessageState, ServerStep, Success
from ..tokens.reauth import identified, rejected_user
from ..tokens.records import token_user_current

__all__ = ["MAX_TOKEN", "RememberMeClient", "RememberMeServer"]

NAME = "REMEMBERME"
MAX_TOKEN = 4096


def _server_final(reason: str, message: str) -> bytes:
    text = message.replace(",", ";")
    return f"e={reason},m={text}".encode()


class RememberMeServer:
    """Server side of REMEMBERME; needs ``ctx.tokens``."""

    name = NAME

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._state = OneMessageState.START

    @property
    def done(self) -> bool:
        return self._state is OneMessageState.DONE

    def step(self, response: bytes | None) -> ServerStep:
        if self._state is OneMessageState.DONE:
            raise UsageError("REMEMBERME exchange already finished")
        if response is None and self._state is OneMessageState.START:
            self._state = OneMessageState.EMPTY_CHALLENGE_SENT
            return Challenge(b"")
        self._state = OneMessageState.DONE
        data = response or b""
        if not data or len(data) > MAX_TOKEN:
            return Failure(FailureReason.INVALID_ENCODING, "bad token length",
                           _server_final("invalid-encoding", "bad token length"))
        try:
            token = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure(FailureReason.INVALID_ENCODING, "token is not UTF-8",
                           _server_final("invalid-encoding", "token is not UTF-8"))
        if self._ctx.tokens is None:
            return Failure(FailureReason.AUTHENTICATION_FAILED, "tokens are not enabled here",
                           _server_final("other-error", "tokens are not enabled here"))
        try:
            record = self._ctx.tokens.verify(token, mechanism=NAME)
            if not token_user_current(record, self._ctx.users.get_user(record.user)):
                # Deleted user, or token older than a password change: same as an unknown token.
                raise identified(TokenRejected("unknown-user", "unknown token"), record.user)
        except TokenRejected as exc:
            wire = "unknown-user" if exc.reason == "unknown-user" else "other-error"
            return Failure(FailureReason.AUTHENTICATION_FAILED, str(exc), _server_final(wire, str(exc)),
                           authcid=rejected_user(exc))
        except TemporaryFailure:
            return Failure(FailureReason.TEMPORARY_FAILURE, "token store unavailable")
        try:
            self._ctx.tokens.mark_used(record)  # best effort (TokenVerifier.mark_used): never fails the login
        except StoreError:
            pass
        return Success(record.user, None, None, NAME, {"token_id": record.id, "token_type": record.type})


class RememberMeClient:
    """Client side: the token (``creds.secret``) is the initial response."""

    name = NAME

    def __init__(self, creds: ClientCredentials) -> None:
        if not creds.secret:
            raise UsageError("REMEMBERME needs a token")
        self._token = creds.secret.encode("utf-8")

    def start(self) -> bytes:
        return self._token

    def step(self, challenge: bytes) -> bytes:
        raise ProtocolError("invalid-encoding", "REMEMBERME has no further challenge")

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data:
            raise ProtocolError("invalid-encoding", "REMEMBERME has no additional data")

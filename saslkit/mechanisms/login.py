"""LOGIN (draft-murchison-sasl-login-00): the user name, then the password, each asked for.

The server challenges with ``Username:`` and ``Password:`` (the draft's §2
leaves the text free, and clients ignore it); a non-empty initial response is
the user name (what most clients send), so only ``Password:`` is asked; an
empty one counts as none (there is no empty user name).  There is no
authorization identity.  The password is then checked exactly as PLAIN checks
it (:func:`saslkit.mechanisms.plain.verify_login`): the same SASLprep, argon2
or PBKDF2 verification, work for unknown users and failure replies.
"""

from __future__ import annotations

import enum

from ..context import ClientCredentials, ServerContext
from ..errors import ProtocolError, UsageError
from ..mechanism import Challenge, Failure, FailureReason, ServerStep
from .plain import MAX_FIELD, verify_login

__all__ = ["PASSWORD_PROMPT", "USERNAME_PROMPT", "LoginClient", "LoginServer", "LoginState"]

#: The challenges the server sends (draft-murchison-sasl-login-00 §2; the wording most servers use).
USERNAME_PROMPT = b"Username:"
PASSWORD_PROMPT = b"Password:"


class LoginState(enum.Enum):
    """Server states of LOGIN: ``START`` -> (``USERNAME_ASKED``) -> ``PASSWORD_ASKED`` -> ``DONE``."""

    START = "start"
    USERNAME_ASKED = "username asked"
    PASSWORD_ASKED = "password asked"  # noqa: S105 (a state name)
    DONE = "done"


def _field(data: bytes, what: str) -> str:
    """One LOGIN response as text: non-empty UTF-8 of at most :data:`MAX_FIELD` octets."""
    if not data or len(data) > MAX_FIELD:
        raise ProtocolError(FailureReason.INVALID_ENCODING, f"LOGIN {what} empty or too long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(FailureReason.INVALID_ENCODING, f"LOGIN {what} is not UTF-8") from None


class LoginServer:
    """Server side of LOGIN (draft-murchison-sasl-login-00 §2)."""

    name = "LOGIN"

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._state = LoginState.START
        self._username = ""

    @property
    def done(self) -> bool:
        return self._state is LoginState.DONE

    def step(self, response: bytes | None) -> ServerStep:
        if self._state is LoginState.DONE:
            raise UsageError("LOGIN exchange already finished")
        if self._state is LoginState.START and not response:  # no (or an empty) initial response
            self._state = LoginState.USERNAME_ASKED
            return Challenge(USERNAME_PROMPT)
        try:
            if self._state is LoginState.PASSWORD_ASKED:
                self._state = LoginState.DONE
                return verify_login(self._ctx, self.name, "", self._username, _field(response or b"", "password"))
            self._username = _field(response or b"", "username")
        except ProtocolError as exc:
            self._state = LoginState.DONE
            return Failure(FailureReason.INVALID_ENCODING, str(exc))
        self._state = LoginState.PASSWORD_ASKED
        return Challenge(PASSWORD_PROMPT)


class LoginClient:
    """Client side of LOGIN: no initial response; the user name, then the password, whatever the prompts say."""

    name = "LOGIN"

    def __init__(self, creds: ClientCredentials) -> None:
        if creds.authzid:
            raise UsageError("LOGIN cannot carry an authorization identity")
        self._answers = [creds.username.encode("utf-8"), creds.secret.encode("utf-8")]
        if not all(self._answers):
            raise UsageError("LOGIN needs a username and a password")

    def start(self) -> bytes | None:
        # No initial response: it works with every binding (IMAP without SASL-IR included).
        return None

    def step(self, challenge: bytes) -> bytes:
        if not self._answers:
            raise ProtocolError(FailureReason.INVALID_ENCODING, "unexpected challenge after the LOGIN password")
        return self._answers.pop(0)

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data:
            raise ProtocolError(FailureReason.INVALID_ENCODING, "LOGIN has no additional data")

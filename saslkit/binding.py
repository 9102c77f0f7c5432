"""One SASL exchange inside a line protocol: what SMTP and IMAP share.

:class:`LineExchange` wraps a server mechanism for a protocol that has no
"additional data with success" (RFC 4954 §4, RFC 9051 §6.2.2): a
:class:`Success` carrying data becomes one more :class:`Challenge` whose
answer must be empty (RFC 4422 §5 item 2b), then the success.  Continuation
lines are decoded strictly (``*`` cancels) by :mod:`saslkit.framing`; store
outages become a temporary :class:`Failure`, never an exception.  The
binding only turns the three outcomes into its own reply lines.
"""

from __future__ import annotations

from .errors import SaslError, TemporaryFailure
from .framing import decode_continuation
from .mechanism import Challenge, Failure, FailureReason, ServerMechanism, ServerStep, Success

__all__ = ["LineExchange"]


class LineExchange:
    """Drive one server mechanism from protocol lines."""

    def __init__(self, mechanism: ServerMechanism) -> None:
        self.mechanism = mechanism
        self._pending: Success | None = None
        self.done = False

    def start(self, initial_response: bytes | None) -> ServerStep:
        """The first step, with the decoded initial response (``None`` if absent)."""
        return self._step(initial_response)

    def receive(self, line: bytes) -> ServerStep:
        """A continuation line; raises ``AuthCancelled`` or ``InvalidBase64`` (the exchange then ends)."""
        try:
            response = decode_continuation(line)
        except SaslError:
            self.done = True
            raise
        if self._pending is not None:
            success, self._pending = self._pending, None
            self.done = True
            if response:
                return Failure(FailureReason.AUTHENTICATION_FAILED, "non-empty response to additional data")
            return success
        return self._step(response)

    def _step(self, response: bytes | None) -> ServerStep:
        try:
            result = self.mechanism.step(response)
        except TemporaryFailure:
            result = Failure(FailureReason.TEMPORARY_FAILURE, "store unavailable")
        except SaslError as exc:
            result = Failure(FailureReason.AUTHENTICATION_FAILED, str(exc))
        if isinstance(result, Success) and result.additional_data is not None:
            self._pending = result
            return Challenge(result.additional_data)
        if not isinstance(result, Challenge):
            self.done = True
        return result

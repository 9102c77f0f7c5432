"""One SASL exchange inside a line protocol: what SMTP and IMAP share.

:class:`LineExchange` wraps a server mechanism for a protocol that has no
"additional data with success" (RFC 4954 §4, RFC 9051 §6.2.2): a
:class:`Success` carrying data becomes one more :class:`Challenge` whose
answer must be empty (RFC 4422 §5 item 2b), then the success.  Continuation
lines are decoded strictly (``*`` cancels) by :mod:`saslkit.framing`; store
outages become a temporary :class:`Failure`, never an exception.  The
binding only turns the three outcomes into its own reply lines.

Defence in depth: an exception from a mechanism that is no
:class:`~saslkit.errors.SaslError` is a bug, but it must not reach the
server (a ``421``/``BYE`` with a traceback, or its text on the wire): it is
logged once on the ``saslkit`` logger, by type and code location only (no
message, which may quote the peer's data or a secret), and the exchange ends
in an ordinary authentication :class:`Failure`.
"""

from __future__ import annotations

import logging
import traceback

from .errors import SaslError, TemporaryFailure
from .framing import decode_continuation
from .mechanism import Challenge, Failure, FailureReason, ServerMechanism, ServerStep, Success

__all__ = ["LineExchange"]

_log = logging.getLogger("saslkit")


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
        except Exception as exc:  # a bug in a mechanism: never a traceback for the peer
            where = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)[-3:]))
            _log.error("internal error in mechanism %s: %s (message withheld)\n%s",
                       getattr(self.mechanism, "name", "?"), type(exc).__name__, where.rstrip())
            result = Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed")
        if isinstance(result, Success) and result.additional_data is not None:
            self._pending = result
            return Challenge(result.additional_data)
        if not isinstance(result, Challenge):
            self.done = True
        return result

"""Per-connection bookkeeping of authentication outcomes, shared by every binding.

It counts failures (RFC 4954 §9 allows closing after several), records each
final outcome with the auth penalty (:func:`saslkit.penalty.attempt_delay`)
and an optional throttle, and says how long the final reply waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..penalty import AuthPenalty, attempt_delay
from .events import Authenticated, AuthFailed

__all__ = ["AuthAttempts"]

#: ``record(peer, identity, success)``: a throttle's hook (see ``saslkit.smtp.session.AuthThrottle``).
Recorder = Callable[[str, "str | None", bool], None]


@dataclass
class AuthAttempts:
    """One connection's authentication attempts."""

    peer: str
    penalty: AuthPenalty | None = None
    failure_delay: float = 1.0
    max_failures: int = 3
    record: Recorder | None = None
    failures: int = 0

    def succeeded(self, event: Authenticated) -> float:
        """Record a success; the delay of its reply."""
        if self.record is not None:
            self.record(self.peer, event.identity, True)
        return attempt_delay(self.penalty, self.peer, event.authcid, True)

    def failed(self, event: AuthFailed) -> float:
        """Record a failure (a temporary one is delayed, not counted); the delay of its reply."""
        if event.temporary:
            return attempt_delay(self.penalty, self.peer, event.authcid, None)
        self.failures += 1
        if self.record is not None:
            self.record(self.peer, event.authcid, False)
        return self.failure_delay + attempt_delay(self.penalty, self.peer, event.authcid, False)

    @property
    def exhausted(self) -> bool:
        """Too many failures: the binding closes the connection."""
        return self.failures >= self.max_failures

    def settle(self, event: Authenticated | AuthFailed) -> tuple[float, bool]:
        """Record a final outcome: the delay of its reply, and whether to close after it (too many failures)."""
        if isinstance(event, Authenticated):
            return self.succeeded(event), False
        return self.failed(event), not event.temporary and self.exhausted

"""The saslkit error hierarchy.

Every error the library raises on bad input is a :class:`SaslError`.  Two
families matter to callers (the h11 habit): the *peer* broke the protocol
(:class:`ProtocolError`), or the *caller* misused the API (:class:`UsageError`).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "MechanismNotAllowed",
    "PreparationError",
    "ProtocolError",
    "SaslError",
    "StoreError",
    "TemporaryFailure",
    "TokenRejected",
    "UnknownMechanism",
    "UsageError",
]


class SaslError(Exception):
    """Base class of every error raised by saslkit."""


class ProtocolError(SaslError):
    """The peer sent something the protocol forbids.

    ``reason`` is a short machine-readable token; for SCRAM it is one of the
    RFC 5802 §7 ``server-error-value`` strings (``invalid-encoding`` …).
    """

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or reason)


class PreparationError(ProtocolError):
    """A string failed SASLprep (RFC 4013 §2): prohibited, bidi or unassigned."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid-encoding", message)


class AuthenticationFailed(SaslError):
    """The exchange ended without authentication (wrong secret, bad server proof, ``e=``…)."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or reason)


class TokenRejected(AuthenticationFailed):
    """A token did not authenticate.

    ``reason`` is one of ``unknown-user`` (no such token or user),
    ``invalid-token`` (wrong secret or malformed), ``revoked``, ``expired``
    or ``wrong-mechanism`` (pinned to another mechanism, HT-09 §5).  The
    message is safe to show the client and explains a revocation
    (draft-ietf-kitten-sasl-rememberme-00 §5 item 3).
    """


class UsageError(SaslError):
    """The caller used the API wrongly (bad argument, step after completion…)."""


class UnknownMechanism(UsageError):
    """No mechanism of that name is registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown SASL mechanism {name!r}")


class MechanismNotAllowed(SaslError):
    """The policy refuses this mechanism on this connection (e.g. PLAIN without TLS)."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f"mechanism {name} not allowed here: {why}")


class StoreError(SaslError):
    """A credential or token store failed permanently (corrupt data, bad schema)."""


class TemporaryFailure(StoreError):
    """A store is unreachable or busy; retry later (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE])."""

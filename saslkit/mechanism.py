"""The sans-IO mechanism contract (RFC 4422 §3, §5).

A server mechanism is stepped with the client's bytes and answers with one of
:class:`Challenge`, :class:`Success` or :class:`Failure`.  ``None`` means "no
initial response" and differs from ``b""``, an empty one (RFC 4422 §4 item 3).

A client mechanism produces an optional initial response with
:meth:`ClientMechanism.start`, answers each challenge with
:meth:`ClientMechanism.step`, and :meth:`ClientMechanism.finish` checks the
server's additional data (e.g. SCRAM ``v=``) when the outcome arrives.

Mechanisms never perform I/O, read clocks or draw randomness themselves:
everything of that kind is injected through their constructors.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Challenge",
    "ClientMechanism",
    "Failure",
    "FailureReason",
    "OneMessageState",
    "ServerMechanism",
    "ServerStep",
    "Success",
]


@dataclass(frozen=True, slots=True)
class Challenge:
    """The server needs another round: send ``data`` to the client (``334``/``+``)."""

    data: bytes

    def __repr__(self) -> str:
        return f"Challenge(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``authcid`` acting as ``authzid`` (``None`` = itself).

    ``additional_data`` is RFC 4422 §3.6 additional data with success (SCRAM's
    ``v=``); a binding whose protocol cannot carry it sends it as a final
    challenge answered by an empty response (RFC 4422 §5 item 2b).
    """

    authcid: str
    authzid: str | None = None
    additional_data: bytes | None = field(default=None, repr=False)
    mechanism: str = ""
    #: Mechanism-specific facts for the binding, e.g. the token id used, or the
    #: local address a submission token authorizes delivery to.
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The identity the session acts as (authzid if granted, else authcid)."""
        return self.authzid if self.authzid else self.authcid


class FailureReason:
    """Machine-readable failure reasons that bindings map to reply codes."""

    AUTHENTICATION_FAILED = "authentication-failed"  # SMTP 535 5.7.8, IMAP [AUTHENTICATIONFAILED]
    AUTHORIZATION_FAILED = "authorization-failed"  # SMTP 535 5.7.8, IMAP [AUTHORIZATIONFAILED]
    TEMPORARY_FAILURE = "temporary-failure"  # SMTP 454 4.7.0, IMAP [UNAVAILABLE]
    INVALID_ENCODING = "invalid-encoding"  # malformed client message


@dataclass(frozen=True, slots=True)
class Failure:
    """Authentication failed.

    ``reason`` is a machine-readable token: a :class:`FailureReason` value or a
    mechanism-specific one such as SCRAM's ``invalid-proof``.  ``data`` is an
    optional final server message (SCRAM ``e=…``) for protocols that can carry
    it.  ``message`` is human text safe to show the peer (never a secret).
    """

    reason: str
    message: str = ""
    data: bytes | None = field(default=None, repr=False)
    #: The identity the client tried (prepared), when the mechanism got that far: for logs and
    #: the per-user auth penalty only, never shown to the peer.
    authcid: str | None = field(default=None, compare=False)

    @property
    def temporary(self) -> bool:
        return self.reason == FailureReason.TEMPORARY_FAILURE

    @property
    def authorization(self) -> bool:
        return self.reason == FailureReason.AUTHORIZATION_FAILED


ServerStep = Challenge | Success | Failure


class OneMessageState(enum.Enum):
    """Server states of a client-first mechanism whose client sends one message (RFC 4422 §3, §5).

    ``START`` -> ``EMPTY_CHALLENGE_SENT`` when there was no initial response,
    then ``DONE`` after the message; a step once ``DONE`` is a caller error.
    """

    START = "start"
    EMPTY_CHALLENGE_SENT = "empty challenge sent"
    DONE = "done"


@runtime_checkable
class ServerMechanism(Protocol):
    """Server side of one exchange: feed client bytes, get the next step."""

    name: str

    def step(self, response: bytes | None) -> ServerStep:
        """Process the client's bytes (``None`` = no initial response)."""
        ...

    @property
    def done(self) -> bool:
        """True once a :class:`Success` or :class:`Failure` was returned."""
        ...


@runtime_checkable
class ClientMechanism(Protocol):
    """Client side of one exchange."""

    name: str

    def start(self) -> bytes | None:
        """Return the initial response, or ``None`` if the mechanism has none."""
        ...

    def step(self, challenge: bytes) -> bytes:
        """Answer one server challenge; raises AuthenticationFailed/ProtocolError."""
        ...

    def finish(self, additional_data: bytes | None = None) -> None:
        """Called on the server's success; raises AuthenticationFailed if the
        server did not prove itself (e.g. SCRAM ``v=`` missing or wrong)."""
        ...


NonceFactory = Callable[[], str]

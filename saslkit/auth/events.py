"""What happened in an authentication, as typed events (no reply text to parse).

Sessions attach these to their replies (``reply.events``); servers log,
count and penalise from them.  :func:`log_line` renders one event as a
logfmt line: the mechanism and the attempted identity (quoted), never a
secret (the events hold none).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..mechanism import FailureReason, Success
from ..registry import Refusal

__all__ = [
    "FIELDS_ATTRIBUTE", "AuthEvent", "AuthFailed", "AuthRefused", "Authenticated", "ChannelBindingFailure",
    "TokenMinted", "log_fields", "log_line", "logfmt", "reply_logger",
]

_BARE = re.compile(r"[A-Za-z0-9@._+:/=-]+")


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Authenticated as ``identity`` (``authcid`` acting as it) with ``mechanism``."""

    identity: str
    mechanism: str
    authcid: str
    success: Success = field(repr=False, compare=False)

    @classmethod
    def of(cls, success: Success) -> Authenticated:
        return cls(success.identity, success.mechanism, success.authcid, success)


class ChannelBindingFailure(enum.Enum):
    """Why a channel-bound exchange failed, when the channel and not the secret was wrong (RFC 5802 §6)."""

    #: ``c=`` names other channel-binding data: the client's TLS channel is not ours (a relay, a proxy).
    MISMATCH = "mismatch"
    #: The client says it could bind but thought we could not (flag ``y``), though -PLUS was advertised.
    DOWNGRADE = "downgrade"
    #: A channel-binding type this connection cannot verify (or already used: RFC 9266 §4.1).
    UNAVAILABLE = "unavailable"


#: SCRAM's server-error values (RFC 5802 §7) and HT's that say the channel failed, not the credentials.
_CHANNEL_BINDING_REASONS = {
    "channel-bindings-dont-match": ChannelBindingFailure.MISMATCH,
    "server-does-support-channel-binding": ChannelBindingFailure.DOWNGRADE,
    "channel-binding-not-supported": ChannelBindingFailure.UNAVAILABLE,
    "channel-binding-already-used": ChannelBindingFailure.UNAVAILABLE,
    "unsupported-channel-binding-type": ChannelBindingFailure.UNAVAILABLE,
}


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """The exchange failed with ``reason``; ``authcid`` is who the client claimed to be, if known."""

    reason: str
    mechanism: str
    authcid: str | None = None
    temporary: bool = False

    @property
    def authorization(self) -> bool:
        """Authenticated, but not allowed to act as the requested authzid (RFC 4422 §3.4.1)."""
        return self.reason == FailureReason.AUTHORIZATION_FAILED

    @property
    def channel_binding(self) -> ChannelBindingFailure | None:
        """Set when the channel binding failed (a mismatch, a downgrade), not the password or token."""
        return _CHANNEL_BINDING_REASONS.get(self.reason)


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """The mechanism was refused before any exchange (unknown, not offered, too weak here...)."""

    refusal: Refusal
    mechanism: str


@dataclass(frozen=True, slots=True)
class TokenMinted:
    """A token of ``kind`` was minted for ``identity`` (REMEMBERME, GENSTOKEN); the token is not kept here."""

    kind: str
    identity: str


AuthEvent = Authenticated | AuthFailed | AuthRefused | TokenMinted


def logfmt(value: str | None) -> str:
    """A logfmt value: bare when safe, else double-quoted with ``\\``, ``"`` and controls escaped."""
    if value is None:
        return '""'
    if _BARE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", escaped) + '"'


def log_fields(event: AuthEvent, peer: str, *, peer_key: str = "peer") -> dict[str, str | None]:
    """The fields of ``event``'s log line, in order: ``event`` (what happened: ``auth ok``, ``auth failed``,
    ``auth temporary failure``, ``auth refused``, ``token minted``), the peer (under ``peer_key``), then
    ``mechanism``, ``identity`` and ``reason`` (or ``kind`` for a token) as they apply.  Never secrets."""
    if isinstance(event, Authenticated):
        return {"event": "auth ok", peer_key: peer, "mechanism": event.mechanism, "identity": event.identity}
    if isinstance(event, AuthFailed):
        kind = "auth temporary failure" if event.temporary else "auth failed"
        fields: dict[str, str | None] = {"event": kind, peer_key: peer, "mechanism": event.mechanism,
                                         "identity": event.authcid, "reason": str(event.reason)}
        if event.channel_binding is not None:  # the channel, not the password, was wrong
            fields["channel_binding"] = event.channel_binding.value
        return fields
    if isinstance(event, AuthRefused):
        return {"event": "auth refused", peer_key: peer, "mechanism": event.mechanism, "reason": event.refusal.value}
    return {"event": "token minted", peer_key: peer, "kind": event.kind, "identity": event.identity}


def log_line(event: AuthEvent, peer: str, *, peer_key: str = "peer") -> str:
    """One logfmt log line for ``event`` (:func:`log_fields`): values quoted when needed, never secrets
    (``peer_key`` names the peer)."""
    fields = log_fields(event, peer, peer_key=peer_key)
    head = fields.pop("event")
    return f"{head} " + " ".join(f"{key}={logfmt(value)}" for key, value in fields.items())


#: The ``extra`` key under which :func:`reply_logger` hands a record its :func:`log_fields`
#: (``saslkit.logs.JsonFormatter`` writes them as JSON members).
FIELDS_ATTRIBUTE = "saslkit_fields"


def reply_logger(log: logging.Logger) -> Callable[[str, object, object], None]:
    """A server driver's observer: one INFO line on ``log`` per event of each reply."""

    def observe(peer: str, session: object, reply: object) -> None:
        for event in getattr(reply, "events", ()):
            log.info("%s", log_line(event, peer), extra={FIELDS_ATTRIBUTE: log_fields(event, peer)})

    return observe

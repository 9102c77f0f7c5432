"""The client side of one SASL exchange, sans I/O (RFC 4422 §3, §5).

:class:`ClientAuth` is the one place where a client runs an exchange: it
chooses the mechanism from the server's list (or checks the one asked for),
builds saslkit's client mechanism with the channel binding the connection can
give, says what goes on the command line (the initial response where the
protocol allows it: RFC 4954 §4, RFC 4959 §3), answers each challenge,
cancels (``*``) when it rejects the server's data, and checks the server's
final data on success (SCRAM ``v=``, the HT responder message).

The transports only frame lines: they turn what the server sent into one of
the inbound messages (:class:`EncodedChallenge`, :class:`MalformedChallenge`,
:class:`ServerSuccess`, :class:`ServerFailure`, or a decoded
:class:`~saslkit.mechanism.Challenge` for bytes-in, bytes-out callers such
as ``smtplib``/``imaplib`` glue) and send what :meth:`ClientAuth.receive`
returns (:class:`Answer` or :class:`Cancel`) until an outcome
(:class:`ClientAuthenticated`, :class:`Unverified`, :class:`Rejected`, or the
:class:`Cancel` itself).  :func:`drive` is that loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from .._redact import redact
from ..context import ClientCredentials
from ..errors import ProtocolError, SaslError, UnknownMechanism, UsageError
from ..mechanism import Challenge, ClientMechanism
from ..registry import Registry
from .framing import decode_continuation, encode_challenge, encode_initial_response

__all__ = [
    "CB_PREFERENCE",
    "IMAP_FRAMING",
    "IMAP_SASL_IR_FRAMING",
    "SMTP_FRAMING",
    "Answer",
    "AuthCommand",
    "Cancel",
    "ClientAuth",
    "ClientAuthenticated",
    "ClientRefusal",
    "ClientState",
    "ClientStep",
    "EncodedChallenge",
    "Framing",
    "MalformedChallenge",
    "MechanismUnavailable",
    "Outcome",
    "Rejected",
    "ServerFailure",
    "ServerMessage",
    "ServerSuccess",
    "Unavailable",
    "Unverified",
    "choose_mechanism",
    "drive",
    "pick_channel_binding",
]

#: Preference among channel-binding types for mechanisms that take any (SCRAM-*-PLUS).
CB_PREFERENCE = ("tls-exporter", "tls-server-end-point", "tls-unique")

#: Challenges answered before the client gives up on a server that never decides.
MAX_ROUNDS = 50


# ---------------------------------------------------------------- framing


@dataclass(frozen=True)
class Framing:
    """How a protocol carries the exchange's first message.

    ``initial_response``: the IR may ride on the command (SMTP always, IMAP
    with SASL-IR); ``max_command_line``: the longest command, CRLF included
    (RFC 4954 §4: 512 octets; ``None`` = no limit).  An IR that may not ride
    or does not fit is sent after the server's empty challenge instead.
    """

    verb: str
    initial_response: bool = True
    max_command_line: int | None = None
    #: What the transcript says when the IR waits for the empty challenge.
    deferred_note: str = "initial response follows the empty challenge"

    def carries(self, arguments: str) -> bool:
        """``<verb> <arguments>`` may carry the initial response (RFC 4954 §4, RFC 4959 §3)."""
        if not self.initial_response:
            return False
        limit = self.max_command_line
        return limit is None or len(self.verb) + 1 + len(arguments) + 2 <= limit


SMTP_FRAMING = Framing("AUTH", max_command_line=512)  # RFC 4954 §4, RFC 5321 §4.5.3.1.4: CRLF included
IMAP_SASL_IR_FRAMING = Framing("AUTHENTICATE")
IMAP_FRAMING = Framing("AUTHENTICATE", initial_response=False,
                       deferred_note='no SASL-IR: the initial response follows the empty "+"')


# ---------------------------------------------------------------- inbound messages


@dataclass(frozen=True)
class EncodedChallenge:
    """A challenge as the wire carries it: base64 text (RFC 4954 §4 ``334``, RFC 9051 §6.2.2 ``+``)."""

    text: str | bytes


@dataclass(frozen=True)
class MalformedChallenge:
    """The transport saw a challenge it cannot hand over (e.g. a multi-line ``334``)."""

    reason: str


@dataclass(frozen=True)
class ServerSuccess:
    """The server says authenticated (``235``, tagged ``OK``), with additional data if its protocol has any."""

    additional_data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServerFailure:
    """The server refused; ``text`` is its reply as the transport shows it."""

    text: str


ServerMessage = Challenge | EncodedChallenge | MalformedChallenge | ServerSuccess | ServerFailure


# ---------------------------------------------------------------- outbound steps and outcomes


@dataclass(frozen=True)
class AuthCommand:
    """What follows the verb on the command line: the mechanism name, and the IR when it rides along."""

    mechanism: str
    arguments: str
    #: ``arguments`` with the secrets masked, for the transcript.
    shown: str
    #: The initial response (``None``: none on the command line, absent or deferred).
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ClientRefusal:
    """The client ended the exchange itself: a machine-readable ``reason``, text, and the error behind it."""

    reason: str
    message: str
    error: SaslError | None = None


@dataclass(frozen=True)
class Answer:
    """Send ``data`` as the next continuation line."""

    data: bytes = field(repr=False)
    mechanism: str

    @property
    def line(self) -> str:
        """The base64 line (empty for an empty response)."""
        return encode_challenge(self.data)

    @property
    def shown(self) -> str:
        """The response with its secrets masked, for the transcript."""
        return redact(self.mechanism, self.data)


@dataclass(frozen=True)
class Cancel(ClientRefusal):
    """The client rejects the server's data: send ``*`` (RFC 4954 §4, RFC 9051 §6.2.2) and read its reply."""

    #: The line the transport sends, and shows.
    line: ClassVar[str] = "*"
    shown: ClassVar[str] = "*"


@dataclass(frozen=True)
class ClientAuthenticated:
    """The server accepted and proved itself where the mechanism can tell."""

    mechanism: str
    channel_binding: str | None = None


@dataclass(frozen=True)
class Unverified(ClientRefusal):
    """The server said success but its final data failed the check (RFC 4422 §5 item 2b)."""


@dataclass(frozen=True)
class Rejected:
    """The server refused."""

    text: str


ClientStep = Answer | Cancel
Outcome = ClientAuthenticated | Unverified | Rejected | Cancel


class ClientState(Enum):
    """Where one client exchange stands."""

    NEW = "new"
    AWAITING_PROMPT = "awaiting-prompt"  # the IR waits for the server's empty challenge
    EXCHANGING = "exchanging"
    AUTHENTICATED = "authenticated"
    CANCELLED = "cancelled"
    FAILED = "failed"


_LIVE = (ClientState.AWAITING_PROMPT, ClientState.EXCHANGING)  # the states that take server messages


# ---------------------------------------------------------------- choice


class Unavailable(Enum):
    """Why the client will not run a mechanism on this connection."""

    NOT_OFFERED = "not-offered"
    NEEDS_TLS = "needs-tls"
    NEEDS_CHANNEL_BINDING = "needs-channel-binding"
    NOTHING_SUITABLE = "nothing-suitable"


class MechanismUnavailable(SaslError):
    """The mechanism asked for (or any, when choosing) cannot be used here; ``why`` says which rule."""

    def __init__(self, why: Unavailable, message: str) -> None:
        self.why = why
        super().__init__(message)


def pick_channel_binding(
    registry: Registry, mechanism: str, bindings: Mapping[str, bytes]
) -> tuple[str, bytes] | None:
    """The ``(type, data)`` to give ``mechanism``'s client, from what this connection has.

    A mechanism bound to some types (HT-*-ENDP) gets one of those or ``None``;
    others get the first of :data:`CB_PREFERENCE` (a non-PLUS SCRAM client
    needs to know it *could* bind, for its ``y``/``n`` flag, RFC 5802 §6).
    """
    accepted = registry.info(mechanism).channel_binding_types
    usable = [t for t in CB_PREFERENCE if t in bindings and (accepted is None or t in accepted)]
    return (usable[0], bindings[usable[0]]) if usable else None


def _fits_credentials(registry: Registry, name: str, bindings: Mapping[str, bytes], token: bool) -> bool:
    """``name`` is ours, takes this kind of secret, and gets channel binding if it needs it."""
    if name not in registry:
        return False
    info = registry.info(name)
    if info.token_based != token:
        return False
    return not info.channel_binding or pick_channel_binding(registry, name, bindings) is not None


def choose_mechanism(
    registry: Registry,
    offered: Iterable[str],
    *,
    tls: bool,
    channel_bindings: Mapping[str, bytes] | None = None,
    allow_plaintext: bool = False,
    token: bool = False,
) -> str:
    """The strongest offered mechanism these credentials can run (registry order).

    -PLUS only with channel-binding data of a type it accepts, token
    mechanisms only for a token (``token``) and password ones only for a
    password, plaintext ones only over TLS unless ``allow_plaintext``.
    """
    bindings = channel_bindings or {}
    names = [n.upper() for n in offered]
    usable = [n for n in names if _fits_credentials(registry, n, bindings, token)]
    try:
        return registry.choose(usable, can_bind=True, tls=tls, allow_plaintext_without_tls=allow_plaintext)
    except UnknownMechanism:
        raise MechanismUnavailable(Unavailable.NOTHING_SUITABLE,
                                   "no mechanism the server offers fits these credentials here "
                                   f"({' '.join(names) or 'none offered'})") from None


def _check_offered(
    registry: Registry, name: str, offered: Collection[str], tls: bool, allow_plaintext: bool
) -> None:
    """Raise :class:`MechanismUnavailable` if ``name`` is not offered or would expose a secret without TLS."""
    if name not in offered:
        raise MechanismUnavailable(Unavailable.NOT_OFFERED, f"the server does not offer {name} here")
    if registry.info(name).plaintext and not tls and not allow_plaintext:
        raise MechanismUnavailable(Unavailable.NEEDS_TLS, f"refusing to send {name} credentials without TLS")


# ---------------------------------------------------------------- the engine


class ClientAuth:
    """One client exchange: :meth:`start`, then :meth:`receive` each server message until an outcome."""

    def __init__(
        self,
        client: ClientMechanism,
        *,
        framing: Framing = SMTP_FRAMING,
        channel_binding: str | None = None,
        max_rounds: int = MAX_ROUNDS,
    ) -> None:
        """Run ``client``; ``channel_binding`` is the type it binds to (reported on success)."""
        self.mechanism = client.name.upper()
        self.framing = framing
        self.channel_binding = channel_binding
        self.state = ClientState.NEW
        self._client = client
        self._pending: bytes | None = None
        self._rounds_left = max_rounds

    @classmethod
    def for_server(
        cls,
        registry: Registry,
        offered: Iterable[str],
        username: str,
        secret: str,
        *,
        mechanism: str | None = None,
        authzid: str | None = None,
        framing: Framing = SMTP_FRAMING,
        tls: bool = True,
        channel_bindings: Mapping[str, bytes] | None = None,
        allow_plaintext: bool = False,
        token: bool = False,
    ) -> ClientAuth:
        """An exchange with a server that offered ``offered``, with ``mechanism`` or the best one.

        Raises :class:`MechanismUnavailable` (not offered, plaintext without
        TLS unless ``allow_plaintext``, channel binding missing, nothing fits)
        and :class:`~saslkit.errors.UnknownMechanism` for names saslkit lacks.
        """
        bindings = channel_bindings or {}
        names = [n.upper() for n in offered]
        if mechanism is None:
            name = choose_mechanism(registry, names, tls=tls, channel_bindings=bindings,
                                    allow_plaintext=allow_plaintext, token=token)
        else:
            name = registry.info(mechanism).name
            _check_offered(registry, name, names, tls, allow_plaintext)
        info = registry.info(name)
        cb = pick_channel_binding(registry, name, bindings)
        if info.channel_binding and cb is None:
            raise MechanismUnavailable(Unavailable.NEEDS_CHANNEL_BINDING,
                                       f"{name} needs channel binding this connection cannot provide")
        plus_offered = any(registry.info(n).channel_binding for n in names if n in registry)  # RFC 5802 §6
        creds = ClientCredentials(username, secret, authzid=authzid, channel_binding=cb,
                                  server_offers_plus=plus_offered)
        bound = cb[0] if cb is not None and info.channel_binding else None
        return cls(registry.client(name, creds), framing=framing, channel_binding=bound)

    # ------------------------------------------------------------ the command line

    def start(self) -> AuthCommand:
        """The command's arguments: the mechanism name, and the IR when the framing lets it ride (RFC 4422 §4)."""
        if self.state is not ClientState.NEW:
            raise UsageError(f"start in state {self.state.value}")
        name = self.mechanism
        first = self._client.start()
        self.state = ClientState.EXCHANGING
        if first is None:
            return AuthCommand(name, name, name)
        arguments = f"{name} {encode_initial_response(first)}"
        if self.framing.carries(arguments):
            return AuthCommand(name, arguments, f"{name} {redact(name, first)}", first)
        self._pending, self.state = first, ClientState.AWAITING_PROMPT
        return AuthCommand(name, name, f"{name} ({self.framing.deferred_note})")

    # ------------------------------------------------------------ server messages

    def receive(self, message: ServerMessage) -> ClientStep | Outcome:
        """What to do about one server message: an :class:`Answer` to send, or how the exchange ended."""
        if self.state not in _LIVE:
            raise UsageError(f"{type(message).__name__} in state {self.state.value}")
        if isinstance(message, EncodedChallenge):
            return self._decoded(message.text)
        if isinstance(message, Challenge):
            return self._answer(message.data)
        if isinstance(message, ServerSuccess):
            return self._conclude(message.additional_data)
        if isinstance(message, ServerFailure):
            self.state = ClientState.FAILED
            return Rejected(message.text)
        return self.cancel(message.reason)

    def cancel(self, message: str, error: SaslError | None = None) -> Cancel:
        """Give up on the exchange client-side: the transport sends ``*``."""
        self.state = ClientState.CANCELLED
        reason = getattr(error, "reason", None)
        return Cancel(reason if isinstance(reason, str) else "cancelled", message, error)

    def _decoded(self, text: str | bytes) -> ClientStep:
        try:
            data = decode_continuation(text)
        except SaslError as exc:
            return self.cancel(str(exc), exc)
        return self._answer(data)

    def _answer(self, challenge: bytes) -> ClientStep:
        """RFC 4422 §5: the IR asked for by the empty challenge, or the mechanism's answer."""
        if self.state is ClientState.AWAITING_PROMPT:
            return self._release_initial_response(challenge)
        self._rounds_left -= 1
        if self._rounds_left < 0:
            return self.cancel("the server sent too many challenges")
        try:
            response = self._client.step(challenge)
        except SaslError as exc:
            return self.cancel(str(exc), exc)
        return Answer(response, self.mechanism)

    def _release_initial_response(self, challenge: bytes) -> ClientStep:
        if challenge:
            error = ProtocolError("unexpected-challenge", "a non-empty challenge before the initial response")
            return self.cancel(str(error), error)
        pending, self._pending = self._pending or b"", None
        self.state = ClientState.EXCHANGING
        return Answer(pending, self.mechanism)

    def _conclude(self, additional_data: bytes | None) -> ClientAuthenticated | Unverified:
        """RFC 4422 §5 item 2b: success counts only once the mechanism accepts the server's final data."""
        if self.state is ClientState.AWAITING_PROMPT:
            self.state = ClientState.FAILED
            return Unverified("unexpected-success", "the server accepted before the initial response")
        try:
            self._client.finish(additional_data)
        except SaslError as exc:
            self.state = ClientState.FAILED
            return Unverified(getattr(exc, "reason", "server-not-verified"), str(exc), exc)
        self.state = ClientState.AUTHENTICATED
        return ClientAuthenticated(self.mechanism, self.channel_binding)


def drive(
    auth: ClientAuth, receive: Callable[[], ServerMessage], send: Callable[[ClientStep], None]
) -> Outcome:
    """Feed ``auth`` the server's messages and send its steps until the exchange ends (a :class:`Cancel` too)."""
    while True:
        event = auth.receive(receive())
        if isinstance(event, (Answer, Cancel)):
            send(event)
        if not isinstance(event, Answer):
            return event

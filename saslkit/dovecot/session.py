"""One connection of the Dovecot authentication protocol, sans I/O (docs/dovecot-auth-protocol.md).

A :class:`DovecotAuthSession` is what Postfix (``smtpd_sasl_type = dovecot``)
or Exim (``driver = dovecot``) talks to: it writes the whole handshake at once
(:meth:`~DovecotAuthSession.handshake`, Exim reads up to ``DONE`` before it
sends anything), then takes the client's lines (:meth:`~DovecotAuthSession.receive_line`)
and answers each with an :class:`Output` (lines to write, after a delay, maybe
closing) or a :class:`Step` of a SASL exchange for the driver to run — off its
event loop when ``may_block`` — and hand back (:meth:`~DovecotAuthSession.complete`).

Each ``AUTH <id>`` is one exchange of :class:`~saslkit.auth.engine.ServerAuth`;
several may be in flight on one connection, each in its own named
:class:`RequestState`.  ``secured`` (TLS or a local client, as the MTA judges)
picks the offer: plaintext and token mechanisms need it unless configured.
Failures are delayed by the auth penalty of the remote IP (``rip=``) and user,
as Dovecot's ``auth_penalty`` does.  A store outage is ``FAIL … code=temp_fail``
for clients that read codes; clients at protocol minor 0 (Postfix, Exim) turn
every ``FAIL`` into a permanent 535, so they get what they turn into a temporary
failure (454/435): the connection closes.

Channel binding (protocol minor 3, opt-in: ``channel_binding=True``) follows
Dovecot's design: the server's ``CONT`` names the type it needs
(``channel_binding=<type>``) once the client has chosen one (SCRAM's gs2 header,
an HT mechanism's suffix), and the client's next ``CONT`` carries the data
(``channel_binding=<base64>``); a client may also send the data with ``AUTH``.
Clients below minor 3 (Postfix, Exim) are never offered those mechanisms.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ..auth.engine import Abort, AuthOutcome, ServerAuth
from ..auth.events import Authenticated, AuthEvent, AuthFailed, AuthRefused, log_fields, logfmt
from ..auth.framing import InvalidBase64, decode_base64
from ..channel_binding import CHANNEL_BINDING_TYPES
from ..context import ServerContext, default_nonce
from ..credentials import UserStore
from ..errors import ProtocolError, UsageError
from ..mechanism import Challenge
from ..penalty import AuthPenalty, attempt_delay
from ..registry import MechanismInfo, Offer, Policy, Registry, default_registry, server_policy
from ..tokens import SubmissionTokens, TokenService
from . import replies
from .codec import MalformedLine, encode_line, parse_line, parse_params

__all__ = [
    "ConnectionState", "DeferredBindings", "DovecotAuthConfig", "DovecotAuthSession", "HandshakeTiming", "LogEntry",
    "Output",
    "RequestState", "Step", "TempFailMode",
]

_log = logging.getLogger("saslkit.dovecot-auth")

PROTOCOL_MAJOR = 1
#: The minor version this server speaks without channel binding: no CANCELLED reply (minor 4) either.
PROTOCOL_MINOR = 2
#: The minor version from which clients can supply channel-binding data (``channel_binding=``).
CHANNEL_BINDING_MINOR = 3
MAX_REQUEST_ID = 2**32 - 1  # ids are C unsigned ints in Dovecot, Postfix and Exim


class ConnectionState(enum.Enum):
    """Where a connection is in the protocol."""

    HANDSHAKE = "waiting for the client's VERSION"
    SERVING = "serving requests"
    CLOSED = "closed"


class RequestState(enum.Enum):
    """Where one ``AUTH <id>`` is."""

    STEPPING = "a step is running"
    AWAITING_CLIENT = "waiting for the client's CONT"


class HandshakeTiming(enum.Enum):
    """When the server writes its handshake."""

    AT_ONCE = "at-once"  # on connect: Exim reads up to DONE before it writes (Dovecot 2.4's auth-legacy)
    AFTER_VERSION = "after-version"  # after the client's VERSION, so the MECH list can depend on its minor


class TempFailMode(enum.Enum):
    """How a temporary failure (store outage) reaches the client."""

    AUTO = "auto"  # DISCONNECT for clients at minor 0 (Postfix, Exim), REPLY otherwise
    REPLY = "reply"  # FAIL <id> code=temp_fail
    DISCONNECT = "disconnect"  # close the connection: the MTA answers 454 (Postfix) or 435 (Exim)


@dataclass(frozen=True, kw_only=True)
class DovecotAuthConfig:
    """Server-wide settings of the Dovecot auth service."""

    registry: Registry = field(default_factory=default_registry)
    #: Offer and accept only these, in this order (like Dovecot's ``auth_mechanisms``); None: all.
    mechanisms: tuple[str, ...] | None = None
    #: Listed with the ``private`` flag: accepted, but MTAs never advertise them.
    private_mechanisms: frozenset[str] = frozenset()
    #: Allow plaintext and token mechanisms on requests without ``secured``.
    allow_plaintext_without_secured: bool = False
    #: Honour a client's ``no-penalty`` (it delays failures itself).
    honour_no_penalty: bool = False
    temp_fail: TempFailMode = TempFailMode.AUTO
    #: Offer -PLUS and HT-*-UNIQ/ENDP/EXPR to clients at minor >= 3 on secured requests (they supply the data).
    channel_binding: bool = False
    handshake: HandshakeTiming = HandshakeTiming.AT_ONCE
    #: Seconds every failure reply waits (Dovecot's ``auth_failure_delay``), before any penalty.
    failure_delay: float = 1.0
    #: Exchanges in flight on one connection; more are refused.
    max_requests: int = 64
    #: Seconds a request may wait for the client's next ``CONT`` before it fails.
    request_timeout: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "private_mechanisms", frozenset(n.upper() for n in self.private_mechanisms))
        unknown = [n for n in self.private_mechanisms if n not in self.registry]
        if unknown:
            raise UsageError(f"unknown private mechanism(s): {' '.join(sorted(unknown))}")
        if self.channel_binding and self.handshake is HandshakeTiming.AT_ONCE:
            raise UsageError("channel binding needs the handshake after VERSION: clients below minor 3 "
                             "(Postfix, Exim) must not be shown channel-binding mechanisms")
        if self.max_requests < 1 or self.request_timeout <= 0 or self.failure_delay < 0:
            raise UsageError("max_requests and request_timeout must be positive, failure_delay not negative")

    def effective_policy(self) -> Policy:
        return server_policy(self.registry, None, self.allow_plaintext_without_secured, self.mechanisms)


class LogEntry(NamedTuple):
    """One log line: its text (logfmt for outcomes) and its fields (``--log-format json``)."""

    text: str
    fields: dict[str, str | None] | None = None


@dataclass
class Output:
    """What to write (whole lines), after ``delay`` seconds, and whether to close the connection after it."""

    wire: bytes = b""
    delay: float = 0.0
    close: bool = False
    events: list[AuthEvent] = field(default_factory=list)
    #: One log entry per outcome: a logfmt line and its fields (mechanism, identity, service, remote IP;
    #: never secrets), for ``--log-format text`` and ``json``.
    log: list[LogEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """One step of request ``request_id`` for the driver to run (off its loop when ``may_block``)."""

    request_id: int
    may_block: bool
    run: Callable[[], AuthOutcome] = field(repr=False)


class DeferredBindings(Mapping[str, bytes]):
    """The channel-binding types a client at minor >= 3 can supply, and their data once it has.

    Mechanisms see the types at once (so a SCRAM ``p=<type>`` header is accepted, and ``y`` is a
    downgrade, RFC 5802 §6) and read the data when they need it; data the client never sent is a
    channel-binding mismatch, never a success.
    """

    def __init__(self, types: Iterable[str]) -> None:
        self._types = frozenset(types)
        self._data: dict[str, bytes] = {}

    def supply(self, cb_type: str, data: bytes) -> None:
        if cb_type in self._types:
            self._data[cb_type] = data

    def has_data(self, cb_type: str) -> bool:
        return cb_type in self._data

    def __contains__(self, cb_type: object) -> bool:
        return cb_type in self._types

    def __getitem__(self, cb_type: str) -> bytes:
        if cb_type not in self._types:
            raise KeyError(cb_type)
        try:
            return self._data[cb_type]
        except KeyError:
            raise ProtocolError("channel-bindings-dont-match", "the client sent no channel-binding data") from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._types))

    def __len__(self) -> int:
        return len(self._types)


@dataclass
class _Request:
    request_id: int
    engine: ServerAuth
    service: str
    rip: str
    penalised: bool
    final_resp_ok: bool
    mechanism: str
    state: RequestState = RequestState.STEPPING
    deadline: float = 0.0
    #: Channel binding (minor >= 3): the data the client supplies, and the type this exchange binds to.
    bindings: DeferredBindings | None = None
    cb_type: str | None = None
    cb_requested: bool = False


def _binding_type(registry: Registry, mechanism: str, message: bytes | None) -> str | None:
    """The channel-binding type an exchange of ``mechanism`` uses: an HT mechanism's own, or the one a
    SCRAM-*-PLUS client names in its gs2 header (``p=<type>,``, RFC 5802 §7); None if not (yet) known."""
    if mechanism not in registry:
        return None
    info = registry.info(mechanism)
    if not info.channel_binding:
        return None
    if info.channel_binding_types is not None and len(info.channel_binding_types) == 1:
        return next(iter(info.channel_binding_types))
    if message is not None and message.startswith(b"p="):
        name = message[2:].split(b",", 1)[0].decode("ascii", "replace")
        return name if name in CHANNEL_BINDING_TYPES else None
    return None


def mech_flags(info: MechanismInfo, private: bool) -> list[str]:
    """A MECH line's flags; Postfix filters on them (``smtpd_sasl_security_options``)."""
    flags = []
    if private:
        flags.append("private")
    if info.plaintext:
        flags.append("plaintext")
    if info.mutual_auth:
        flags.append("mutual-auth")
    if info.channel_binding:
        flags.append("channel-binding")
    return flags


class DovecotAuthSession:
    """One client connection (an MTA process) of the auth service."""

    def __init__(
        self,
        config: DovecotAuthConfig,
        users: UserStore,
        server_secret: bytes,
        *,
        tokens: TokenService | None = None,
        stokens: SubmissionTokens | None = None,
        penalty: AuthPenalty | None = None,
        connection_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
        cookie: bytes | None = None,
        server_pid: int | None = None,
        nonce_factory: Callable[[], str] = default_nonce,
    ) -> None:
        self.config = config
        self.state = ConnectionState.HANDSHAKE
        self.client_minor: int | None = None
        self.client_pid = ""
        self._users = users
        self._secret = server_secret
        self._tokens = tokens
        self._stokens = stokens
        self._penalty = penalty
        self._clock = clock
        self._connection_id = connection_id
        self._cookie = cookie if cookie is not None else secrets.token_bytes(16)
        self._server_pid = server_pid if server_pid is not None else os.getpid()
        self._nonce_factory = nonce_factory
        self._requests: dict[int, _Request] = {}
        self._offers: dict[tuple[bool, bool], Offer] = {}
        self._plus_advertised: dict[tuple[str, ...], bool] = {}  # per offer, computed once

    # ------------------------------------------------------------------ handshake

    def _serves(self, info: MechanismInfo) -> bool:
        return not (info.token_based and self._tokens is None)

    def _binding_types(self, secured: bool, minor: int | None) -> tuple[str, ...]:
        """The channel-binding types a request may use: all, for a secured request of a client at minor >= 3
        when configured (the client knows which its TLS has); else none."""
        if not (self.config.channel_binding and secured and (minor or 0) >= CHANNEL_BINDING_MINOR):
            return ()
        return CHANNEL_BINDING_TYPES

    def offer(self, secured: bool, minor: int | None = None) -> Offer:
        """The mechanisms a request may use (computed once per connection, ``secured`` and channel binding)."""
        bindings = self._binding_types(secured, minor)
        key = (secured, bool(bindings))
        offer = self._offers.get(key)
        if offer is None:
            offer = self.config.registry.offer(tls=secured, channel_bindings=bindings,
                                               policy=self.config.effective_policy(), available=self._serves,
                                               cache_key=("dovecot", self._tokens is not None))
            self._offers[key] = offer
            self._plus_advertised[offer.mechanisms] = self.config.registry.advertises_plus(offer)
        return offer

    @property
    def protocol_minor(self) -> int:
        return CHANNEL_BINDING_MINOR if self.config.channel_binding else PROTOCOL_MINOR

    def handshake(self) -> bytes:
        """What to write on connect: the whole handshake (:attr:`HandshakeTiming.AT_ONCE`), or nothing
        (``AFTER_VERSION``: it answers the client's VERSION)."""
        if self.config.handshake is HandshakeTiming.AFTER_VERSION:
            return b""
        return self._handshake(0)  # what a client at minor 0 may use: the client has not said its minor yet

    def _handshake(self, minor: int) -> bytes:
        """VERSION, every MECH (before SPID: Postfix takes an early SPID for a wrong socket), SPID, CUID,
        COOKIE, DONE.  Channel-binding mechanisms are listed (flag ``channel-binding``) only for ``minor`` >= 3."""
        registry = self.config.registry
        lines = [encode_line(["VERSION", str(PROTOCOL_MAJOR), str(self.protocol_minor)])]
        for name in self.offer(True, minor).mechanisms:
            info = registry.info(name)
            lines.append(encode_line(["MECH", name, *mech_flags(info, name in self.config.private_mechanisms)]))
        lines += [
            encode_line(["SPID", str(self._server_pid)]),
            encode_line(["CUID", str(self._connection_id)]),
            encode_line(["COOKIE", self._cookie.hex()]),
            encode_line(["DONE"]),
        ]
        return b"".join(lines)

    # ------------------------------------------------------------------ input

    def receive_line(self, line: bytes) -> Output | Step:
        """One line from the client: an :class:`Output` now, or a :class:`Step` to run."""
        if self.state is ConnectionState.CLOSED:
            return Output(close=True)
        try:
            fields = parse_line(line)
            return self._command(fields)
        except MalformedLine as exc:
            return self._protocol_error(str(exc))

    def line_too_long(self) -> Output:
        """The client sent more than 16 KiB without a LF: a broken client, closed (as Dovecot does)."""
        return self._protocol_error("line too long")

    def _protocol_error(self, what: str) -> Output:
        _log.warning("client pid=%s: %s; closing the connection", logfmt(self.client_pid), what)
        self.close()
        return Output(close=True)

    def _command(self, fields: list[str]) -> Output | Step:
        command, args = fields[0], fields[1:]
        if self.state is ConnectionState.HANDSHAKE:
            if command != "VERSION":
                return self._protocol_error(f"{logfmt(command[:16])} before VERSION")
            return self._version(args)
        if command == "AUTH":
            return self._auth(args)
        if command == "CONT":
            return self._cont(args)
        if command == "CANCEL":
            return self._cancel(args)
        if command == "CPID":
            self.client_pid = args[0][:20] if args else ""
            return Output()
        return self._protocol_error(f"unknown command {logfmt(command[:16])}")

    def _version(self, args: list[str]) -> Output:
        if len(args) < 2 or not args[0].isdigit() or not args[1].isdigit() or len(args[1]) > 9:
            return self._protocol_error("malformed VERSION")
        if int(args[0]) != PROTOCOL_MAJOR:
            return self._protocol_error(f"protocol major version {args[0][:9]} (this server speaks {PROTOCOL_MAJOR})")
        self.client_minor = int(args[1])
        self.state = ConnectionState.SERVING
        if self.config.handshake is HandshakeTiming.AFTER_VERSION:
            return Output(self._handshake(self.client_minor))
        return Output()

    @staticmethod
    def _request_id(text: str) -> int | None:
        if not text.isdigit() or len(text) > 10 or not 0 < int(text) <= MAX_REQUEST_ID:
            return None
        return int(text)

    def _auth(self, args: list[str]) -> Output | Step:
        request_id = self._request_id(args[0]) if len(args) >= 2 else None
        if request_id is None:
            return self._protocol_error("malformed AUTH")
        if request_id in self._requests:
            return self._protocol_error(f"AUTH with the id {request_id} of a request in flight")
        mechanism, params = args[1], parse_params(args[2:])
        service = params.get("service", "")
        if not service:
            return self._protocol_error("AUTH without service=")
        if len(self._requests) >= self.config.max_requests:
            return Output(encode_line(replies.fail(request_id, replies.TOO_MANY_REQUESTS)))
        secured = "secured" in params
        types = self._binding_types(secured, self.client_minor)
        bindings = DeferredBindings(types) if types else None
        offer = self.offer(secured, self.client_minor)
        ctx = ServerContext(self._users, self._secret, channel_bindings=bindings or {}, tls=secured,
                            tokens=self._tokens, stokens=self._stokens, nonce_factory=self._nonce_factory,
                            plus_advertised=self._plus_advertised[offer.mechanisms])
        engine = ServerAuth(self.config.registry, offer, ctx, additional_data_with_success="final-resp-ok" in params)
        penalised = not (self.config.honour_no_penalty and "no-penalty" in params)
        request = _Request(request_id, engine, service[:32], params.get("rip", "")[:64], penalised,
                           "final-resp-ok" in params, mechanism.upper()[:32], bindings=bindings)
        self._requests[request_id] = request
        initial: bytes | None = None
        if params.get("resp"):  # Exim sends an empty resp= for "no initial response"; none of ours means anything
            try:
                initial = decode_base64(params["resp"])
            except InvalidBase64:
                return self.complete(request_id, engine.abort(Abort.INVALID_INITIAL_RESPONSE))
        if bindings is not None and not self._bind(request, initial, params.get("channel_binding")):
            return self.complete(request_id, engine.abort(Abort.INVALID_BASE64))
        return Step(request_id, engine.start_may_block(mechanism, initial is not None),
                    lambda: engine.start(mechanism, initial, encoded=False))

    def _bind(self, request: _Request, message: bytes | None, data_b64: str | None) -> bool:
        """Channel binding of one client message: learn the exchange's type (an HT mechanism's suffix,
        SCRAM's ``p=<type>``) and take the data the client sent with it; False if that data is not base64."""
        if request.cb_type is None:
            request.cb_type = _binding_type(self.config.registry, request.mechanism, message)
        if data_b64 is not None and request.cb_type is not None and request.bindings is not None:
            try:
                request.bindings.supply(request.cb_type, decode_base64(data_b64))
            except InvalidBase64:
                return False
        return True

    def _waiting_request(self, args: list[str]) -> _Request | Output:
        request_id = self._request_id(args[0]) if args else None
        request = self._requests.get(request_id) if request_id is not None else None
        if request is None or request.state is not RequestState.AWAITING_CLIENT:
            # Dovecot treats both as a client bug; an unknown id may be one that just timed out, so it is only
            # answered with a FAIL, as Dovecot does for "Unexpected continuation".
            if request_id is None:
                return self._protocol_error("malformed CONT")
            if request is not None:
                self._requests.pop(request_id)
            return Output(encode_line(replies.fail(request_id, replies.AUTH_FAILED)))
        return request

    def _cont(self, args: list[str]) -> Output | Step:
        request = self._waiting_request(args)
        if isinstance(request, Output):
            return request
        engine = request.engine
        try:
            response = decode_base64(args[1] if len(args) > 1 else "")
        except InvalidBase64:
            return self.complete(request.request_id, engine.abort(Abort.INVALID_BASE64))
        if request.bindings is not None and not self._bind(request, response, parse_params(args[2:]).get(
                "channel_binding")):
            return self.complete(request.request_id, engine.abort(Abort.INVALID_BASE64))
        request.state = RequestState.STEPPING
        return Step(request.request_id, engine.next_step_may_block, lambda: engine.respond(response))

    def _cancel(self, args: list[str]) -> Output:
        request_id = self._request_id(args[0]) if args else None
        request = self._requests.get(request_id) if request_id is not None else None
        if request is not None and request.state is RequestState.AWAITING_CLIENT:
            del self._requests[request.request_id]  # below minor 4, CANCEL has no reply
        return Output()

    # ------------------------------------------------------------------ outcomes

    def complete(self, request_id: int, outcome: AuthOutcome) -> Output:
        """A step of ``request_id`` ended with ``outcome``: its reply, delayed by the penalty if final."""
        request = self._requests.get(request_id)
        if request is None or self.state is ConnectionState.CLOSED:
            return Output()  # cancelled or closed meanwhile
        if isinstance(outcome, Challenge):
            request.state = RequestState.AWAITING_CLIENT
            request.deadline = self._clock() + self.config.request_timeout
            fields = replies.auth_reply(request_id, outcome)
            cb_type = request.cb_type
            if (cb_type is not None and request.bindings is not None and not request.cb_requested
                    and not request.bindings.has_data(cb_type)):
                request.cb_requested = True  # the client's next CONT carries the data (Dovecot's minor 3)
                fields.append(f"channel_binding={cb_type}")
            return Output(encode_line(fields))
        del self._requests[request_id]
        output = Output()
        if isinstance(outcome, (Authenticated, AuthFailed, AuthRefused)):
            output.events.append(outcome)
            output.log.append(self._log_entry(request, outcome))
        if isinstance(outcome, (Authenticated, AuthFailed)):
            output.delay = self._settle(request, outcome)
        if isinstance(outcome, AuthFailed) and outcome.temporary and self._disconnects_on_temp_fail():
            output.log.append(LogEntry(f"closing the connection of client_pid={logfmt(self.client_pid)} (protocol "
                                       f"minor {self.client_minor}): its MTA reads only that as a temporary failure"))
            output.close = True
            self.close()
            return output
        if isinstance(outcome, (AuthFailed, AuthRefused)):
            output.delay += self.config.failure_delay
        output.wire = encode_line(replies.auth_reply(request_id, outcome, final_resp_ok=request.final_resp_ok))
        return output

    def _settle(self, request: _Request, outcome: Authenticated | AuthFailed) -> float:
        if not request.penalised:
            return 0.0
        success = True if isinstance(outcome, Authenticated) else (None if outcome.temporary else False)
        return attempt_delay(self._penalty, request.rip, outcome.authcid, success)

    def _disconnects_on_temp_fail(self) -> bool:
        mode = self.config.temp_fail
        if mode is TempFailMode.AUTO:
            return (self.client_minor or 0) < 1
        return mode is TempFailMode.DISCONNECT

    def expire(self) -> Output:
        """Fail the requests whose client has not continued within ``request_timeout``."""
        now = self._clock()
        expired = [r for r in self._requests.values()
                   if r.state is RequestState.AWAITING_CLIENT and r.deadline <= now]
        wire = b""
        for request in expired:
            del self._requests[request.request_id]
            wire += encode_line(replies.fail(request.request_id, replies.TIMED_OUT))
        return Output(wire)

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has work (None: no request waits for the client)."""
        return min((r.deadline for r in self._requests.values() if r.state is RequestState.AWAITING_CLIENT),
                   default=None)

    @property
    def requests_in_flight(self) -> int:
        return len(self._requests)

    def close(self) -> None:
        """The connection ended: every request in flight is dropped."""
        self.state = ConnectionState.CLOSED
        self._requests.clear()

    def _log_entry(self, request: _Request, event: AuthEvent) -> LogEntry:
        fields = {**log_fields(event, request.rip or "-", peer_key="rip"), "service": request.service,
                  "client_pid": self.client_pid}
        text = " ".join([str(fields["event"]), *(f"{k}={logfmt(v)}" for k, v in fields.items() if k != "event")])
        return LogEntry(text, fields)

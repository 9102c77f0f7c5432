"""The server side of one SASL exchange, for any protocol binding (RFC 4422 §3, §5).

:class:`ServerAuth` is built from a connection's :class:`~saslkit.registry.Offer`
(computed once per capability change) and its
:class:`~saslkit.context.ServerContext`.  It takes the mechanism name with the
initial response or its absence (:meth:`~ServerAuth.start`), continuation
lines (:meth:`~ServerAuth.receive`, strict base64, ``*`` cancels, see
:mod:`saslkit.auth.framing`) and cancellation (:meth:`~ServerAuth.abort`), and
answers with one typed outcome: :class:`~saslkit.mechanism.Challenge`,
:class:`~saslkit.auth.events.Authenticated`,
:class:`~saslkit.auth.events.AuthFailed` (temporary for store outages),
:class:`~saslkit.auth.events.AuthRefused` or :class:`Aborted`.  Each binding
turns outcomes into its own reply lines with one table (``smtp/replies.py``,
``imap/replies.py``).

For protocols without additional data with success (RFC 4954 §4, RFC 9051
§6.2.2), a success carrying data becomes one more challenge whose answer must
be empty, then the success (RFC 4422 §5 item 2b).

Defence in depth: an exception from a mechanism that is no
:class:`~saslkit.errors.SaslError` is a bug, but it must not reach the peer:
it is logged once on the ``saslkit`` logger by type and code location only (no
message, which may quote the peer's data or a secret), and the exchange ends
in an ordinary failure.
"""

from __future__ import annotations

import enum
import logging
import traceback
from dataclasses import dataclass, replace

from ..context import ServerContext, same_identity_only
from ..errors import SaslError, TemporaryFailure, UsageError
from ..mechanism import Challenge, Failure, FailureReason, ServerMechanism, ServerStep, Success
from ..registry import MechanismInfo, Offer, Refusal, Registry
from .events import Authenticated, AuthFailed, AuthRefused
from .framing import AuthCancelled, InvalidBase64, decode_continuation, decode_initial_response

__all__ = ["Abort", "Aborted", "AuthOutcome", "ServerAuth"]

_log = logging.getLogger("saslkit")
_MAX_NAME_SHOWN = 32  # a refused name is the peer's data: keep what reaches events and logs short


class Abort(enum.Enum):
    """Why an exchange ended without an authentication outcome."""

    CANCELLED = "cancelled"  # "*" (RFC 4954 §4, RFC 9051 §6.2.2)
    INVALID_INITIAL_RESPONSE = "invalid initial response"
    INVALID_BASE64 = "invalid base64"
    LINE_TOO_LONG = "line too long"


@dataclass(frozen=True, slots=True)
class Aborted:
    """The exchange ended for ``reason`` (no failure is counted)."""

    reason: Abort


AuthOutcome = Challenge | Authenticated | AuthFailed | AuthRefused | Aborted


class ServerAuth:
    """Run SASL exchanges, one at a time, for one connection's offer."""

    def __init__(self, registry: Registry, offer: Offer, context: ServerContext, *,
                 additional_data_with_success: bool = False) -> None:
        self.registry = registry
        self.offer = offer
        if context.channel_bindings and not any(registry.info(n).channel_binding for n in offer.mechanisms):
            # No -PLUS offered (policy, allow-list): a client's "y" flag is then honest (RFC 5802 §6).
            context = replace(context, channel_bindings={})
        self.context = context
        self.additional_data_with_success = additional_data_with_success
        self._mechanism: ServerMechanism | None = None
        self._info: MechanismInfo | None = None
        self._pending: Success | None = None
        self._challenged = False

    @property
    def active(self) -> bool:
        """An exchange is under way: the next client line is a continuation."""
        return self._mechanism is not None

    @property
    def next_step_may_block(self) -> bool:
        """Whether the next step may block (password hashing, store access), so a driver runs it off its loop.

        False only when it surely computes alone: the empty answer to additional data, a
        mechanism that says so (its own ``next_step_may_block``, or
        :attr:`~saslkit.registry.MechanismInfo.computes_after_challenge` once challenged, with
        the default authorizer), or a step that only reads stores that never wait (:meth:`start_may_block`).
        """
        if self._mechanism is None:
            return True
        if self._pending is not None:
            return False
        said = getattr(self._mechanism, "next_step_may_block", None)
        if isinstance(said, bool):
            return said
        assert self._info is not None
        if self._info.computes_after_challenge and self._challenged and self.context.authorize is same_identity_only:
            return False
        return self._step_may_block(self._info)

    def start_may_block(self, name: str, has_initial_response: bool) -> bool:
        """Whether :meth:`start` for this AUTH/AUTHENTICATE line may block, so a driver runs it off its loop.

        Without an initial response the first step only sends an empty challenge (RFC 4422 §5), and
        a refused name is answered at once: neither blocks.  Otherwise see :meth:`_step_may_block`.
        """
        if not has_initial_response or self.offer.refusal(name) is not None:
            return False
        return self._step_may_block(self.registry.info(name))

    def _step_may_block(self, info: MechanismInfo) -> bool:
        """A step that reads the client's message: blocks if it hashes a password or writes waiting for a
        lock (:class:`~saslkit.registry.MechanismInfo`), calls the application's authorizer, or reads a
        store whose ``reads_may_block`` is not False (an unknown store may wait: the default is True).
        """
        ctx = self.context
        if info.hashes_password or info.writes_on_step or ctx.authorize is not same_identity_only:
            return True
        if _reads_may_block(ctx.users):
            return True
        if info.token_based:  # REMEMBERME, HT-*: the token service's store (STOKEN writes_on_step)
            return ctx.tokens is not None and _reads_may_block(getattr(ctx.tokens, "store", ctx.tokens))
        return False

    def start(self, name: str, initial_response: str | bytes | None, *, encoded: bool = True) -> AuthOutcome:
        """Begin ``name`` with the client's initial response (base64 unless ``encoded=False``; None if absent)."""
        refusal = self.offer.refusal(name)
        if refusal is not None:
            return AuthRefused(refusal, name.upper()[:_MAX_NAME_SHOWN])
        info = self.registry.info(name)
        try:
            response = decode_initial_response(initial_response) if encoded and initial_response is not None \
                else initial_response
        except InvalidBase64:
            return Aborted(Abort.INVALID_INITIAL_RESPONSE)
        assert response is None or isinstance(response, bytes)
        mechanism = info.server(self.context)
        if response is not None and getattr(mechanism, "server_first", False):
            return AuthRefused(Refusal.INITIAL_RESPONSE_NOT_ALLOWED, info.name)  # RFC 4954 §4, RFC 4959 §3
        self._mechanism, self._info, self._pending, self._challenged = mechanism, info, None, False
        return self._step(response)

    def receive(self, line: str | bytes) -> AuthOutcome:
        """One continuation line: strict base64, ``*`` cancels."""
        try:
            response = decode_continuation(line)
        except AuthCancelled:
            return self.abort(Abort.CANCELLED)
        except InvalidBase64:
            return self.abort(Abort.INVALID_BASE64)
        return self.respond(response)

    def respond(self, response: bytes) -> AuthOutcome:
        """One decoded client response."""
        if self._mechanism is None:
            raise UsageError("no exchange in progress")
        success = self._pending
        if success is not None:
            self._finish()
            if response:
                return AuthFailed(FailureReason.AUTHENTICATION_FAILED, success.mechanism, success.authcid)
            return Authenticated.of(success)
        return self._step(response)

    def abort(self, reason: Abort = Abort.CANCELLED) -> Aborted:
        """End the exchange under way (cancel, a line too long...)."""
        self._finish()
        return Aborted(reason)

    def _finish(self) -> None:
        self._mechanism, self._info, self._pending = None, None, None

    def _step(self, response: bytes | None) -> AuthOutcome:
        assert self._mechanism is not None and self._info is not None
        name = self._info.name
        result = self._run(self._mechanism, response)
        if isinstance(result, Challenge):
            self._challenged = self._challenged or bool(result.data)
            return result
        if isinstance(result, Success):
            success = result if result.mechanism else _with_mechanism(result, name)
            if success.additional_data is not None and not self.additional_data_with_success:
                self._pending = success
                return Challenge(success.additional_data)
            self._finish()
            return Authenticated.of(success)
        self._finish()
        return AuthFailed(result.reason, name, result.authcid, result.temporary)

    @staticmethod
    def _run(mechanism: ServerMechanism, response: bytes | None) -> ServerStep:
        try:
            return mechanism.step(response)
        except TemporaryFailure:
            return Failure(FailureReason.TEMPORARY_FAILURE, "store unavailable")
        except SaslError as exc:
            return Failure(FailureReason.AUTHENTICATION_FAILED, str(exc))
        except Exception as exc:  # a bug in a mechanism: never a traceback for the peer
            where = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)[-3:]))
            _log.error("internal error in mechanism %s: %s (message withheld)\n%s",
                       getattr(mechanism, "name", "?"), type(exc).__name__, where.rstrip())
            return Failure(FailureReason.AUTHENTICATION_FAILED, "authentication failed")


def _reads_may_block(store: object) -> bool:
    """A store's optional ``reads_may_block`` attribute; True (may wait) when it has none."""
    return getattr(store, "reads_may_block", True) is not False


def _with_mechanism(success: Success, name: str) -> Success:
    return Success(success.authcid, success.authzid, success.additional_data, name, success.details)

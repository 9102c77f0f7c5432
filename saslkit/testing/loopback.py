"""Run one client<->server exchange in process (tests, demos, vector checks).

The client side is :class:`saslkit.auth.client.ClientAuth`; the server
mechanism stands in for a peer whose protocol has no "additional data with
success" (SMTP/IMAP, RFC 4422 §5 item 2b): a :class:`Success` carrying
additional data is delivered as one more challenge answered by an empty
response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..auth.client import (
    Cancel,
    ClientAuth,
    ClientAuthenticated,
    ClientStep,
    Framing,
    Outcome,
    Rejected,
    ServerFailure,
    ServerMessage,
    ServerSuccess,
    drive,
)
from ..errors import AuthenticationFailed, ProtocolError, UsageError
from ..mechanism import Challenge, ClientMechanism, Failure, ServerMechanism, Success

__all__ = ["Transcript", "run_exchange"]


@dataclass
class Transcript:
    """What crossed the wire, as ``("C"|"S", bytes)`` pairs; ``None`` = absent IR."""

    lines: list[tuple[str, bytes | None]] = field(default_factory=list)


class _InProcessPeer:
    """A server mechanism seen as the client's peer; keeps the transcript and the server's own outcome."""

    def __init__(self, server: ServerMechanism, log: Callable[[str, bytes | None], None], *, prompt: bool) -> None:
        self.server = server
        self.log = log
        self.response: bytes | None = None
        self.outcome: Success | Failure | None = None
        self._prompt = prompt  # the IR waits for an empty challenge (RFC 4422 §4 item 3)

    def send(self, step: ClientStep) -> None:
        if not isinstance(step, Cancel):
            self.log("C", step.data)
            self.response = step.data

    def receive(self) -> ServerMessage:
        if isinstance(self.outcome, Success):  # the response to its additional data just came
            return self._after_additional_data()
        result = self.server.step(self.response)
        if self._prompt and (not isinstance(result, Challenge) or result.data):
            raise UsageError("server did not answer a missing initial response with an empty challenge")
        self._prompt = False
        if isinstance(result, Challenge):
            self.log("S", result.data)
            return result
        self.outcome = result
        if isinstance(result, Failure):
            return ServerFailure(result.message or result.reason)
        if result.additional_data is None:
            return ServerSuccess()
        self.log("S", result.additional_data)
        return Challenge(result.additional_data)

    def _after_additional_data(self) -> ServerMessage:
        if self.response:
            self.outcome = Failure("other-error", "non-empty response to additional data")
            return ServerFailure(self.outcome.message)
        return ServerSuccess()


def run_exchange(
    client: ClientMechanism,
    server: ServerMechanism,
    *,
    initial_response: bool = True,
    max_rounds: int = 10,
    on_line: Callable[[str, bytes | None], None] | None = None,
) -> tuple[Success | Failure, Transcript]:
    """Drive ``client`` against ``server`` until an outcome; return it with the transcript.

    A client-side rejection (bad server signature…) becomes a :class:`Failure`
    whose reason is the client's.
    """
    transcript = Transcript()

    def log(who: str, data: bytes | None) -> None:
        transcript.lines.append((who, data))
        if on_line is not None:
            on_line(who, data)

    auth = ClientAuth(client, framing=Framing("AUTH", initial_response=initial_response), max_rounds=max_rounds)
    command = auth.start()
    peer = _InProcessPeer(server, log, prompt=not initial_response)
    log("C", command.initial_response)
    peer.response = command.initial_response
    try:
        outcome = drive(auth, peer.receive, peer.send)
    except (AuthenticationFailed, ProtocolError) as exc:
        return Failure(exc.reason, str(exc)), transcript
    return _result(outcome, peer.outcome), transcript


def _result(outcome: Outcome, server_outcome: Success | Failure | None) -> Success | Failure:
    """The exchange's result: the server's, unless the client refused it (its reason then)."""
    if isinstance(outcome, ClientAuthenticated | Rejected) and server_outcome is not None:
        return server_outcome
    error = getattr(outcome, "error", None)
    if error is None:
        raise UsageError("exchange did not finish")
    if not isinstance(error, AuthenticationFailed | ProtocolError):
        raise error
    return Failure(error.reason, str(error))

"""Run one client<->server exchange in process (tests, demos, vector checks).

The loop follows a protocol without "additional data with success"
(SMTP/IMAP, RFC 4422 §5 item 2b): a :class:`Success` carrying additional
data is delivered as one more challenge answered by an empty response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import AuthenticationFailed, ProtocolError, UsageError
from .mechanism import Challenge, ClientMechanism, Failure, ServerMechanism, Success

__all__ = ["Transcript", "run_exchange"]


@dataclass
class Transcript:
    """What crossed the wire, as ``("C"|"S", bytes)`` pairs; ``None`` = absent IR."""

    lines: list[tuple[str, bytes | None]] = field(default_factory=list)


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

    pending: bytes | None = client.start()
    if not initial_response:
        log("C", None)
        step = server.step(None)
        if not isinstance(step, Challenge) or step.data:
            raise UsageError("server did not answer a missing initial response with an empty challenge")
        log("S", step.data)
    log("C", pending)
    response = pending
    try:
        for _ in range(max_rounds):
            result = server.step(response)
            if isinstance(result, Failure):
                return result, transcript
            if isinstance(result, Success):
                if result.additional_data is not None:
                    log("S", result.additional_data)
                    response = client.step(result.additional_data)
                    log("C", response)
                    if response:
                        return Failure("other-error", "non-empty response to additional data"), transcript
                client.finish(None)
                return result, transcript
            log("S", result.data)
            response = client.step(result.data)
            log("C", response)
    except (AuthenticationFailed, ProtocolError) as exc:
        return Failure(exc.reason, str(exc)), transcript
    raise UsageError("exchange did not finish")

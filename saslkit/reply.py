"""What a line-protocol session (SMTP, IMAP) asks its driver to do, and what happened."""

from __future__ import annotations

from dataclasses import dataclass, field

from .auth.events import AuthEvent

__all__ = ["Reply"]


@dataclass
class Reply:
    """Send ``lines`` (CRLF added by :meth:`wire`) after ``delay`` seconds, then start TLS or close if asked.

    ``events`` say what happened (authenticated, failed, refused, token minted), so drivers log,
    count and penalise without reading the reply text.
    """

    lines: list[str] = field(default_factory=list)
    delay: float = 0.0
    starttls: bool = False
    close: bool = False
    events: list[AuthEvent] = field(default_factory=list)

    def wire(self) -> bytes:
        return b"".join(line.encode("utf-8", "replace") + b"\r\n" for line in self.lines)

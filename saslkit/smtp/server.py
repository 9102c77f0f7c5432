"""The reference SMTP/LMTP server: :class:`~saslkit.smtp.session.SmtpSession` on the shared asyncio driver.

See :mod:`saslkit.net.server` for the pool of blocking work, STARTTLS and line limits.
"""

from __future__ import annotations

import logging
import mailbox
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..auth.events import reply_logger
from ..credentials import UserStore
from ..net.server import (
    LineServer,
    ServedOnLineServer,
    ensure_certificate,
)
from ..tokens import SubmissionTokens, TokenService
from .session import MAX_SMTP_AUTH_LINE, Deliver, Envelope, SmtpCommandHook, SmtpConfig, SmtpSession

__all__ = ["SmtpServer", "ensure_certificate", "maildir_delivery", "run_server"]

log = logging.getLogger("saslkit.smtp")

#: Control characters (Unicode Cc): never written into a header, whatever the session let through.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _header_value(text: str) -> str:
    """``text`` with each control character shown as ``\\xNN``: one header line, never split or cut."""
    return _HEADER_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def maildir_delivery(path: str | os.PathLike[str]) -> Deliver:
    """A delivery callback that stores each message in a Maildir (created if missing).

    It prepends ``Return-Path`` and ``X-Original-To`` (RFC 5321 §4.4); envelope
    addresses carrying control characters are escaped there (the session
    already refuses them: this is defence in depth for other callers).
    """
    box = mailbox.Maildir(os.fspath(path), create=True)

    def deliver(envelope: Envelope) -> str:
        mail_from = _header_value(envelope.mail_from)
        recipients = ", ".join(_header_value(r) for r in envelope.recipients)
        headers = f"Return-Path: <{mail_from}>\r\nX-Original-To: {recipients}\r\n"
        return str(box.add(headers.encode("utf-8", "backslashreplace") + envelope.data))

    return deliver


def discard_delivery(envelope: Envelope) -> str:
    log.info("accepted and discarded a message from <%s> to %d recipient(s), %d octets",
             envelope.mail_from, len(envelope.recipients), len(envelope.data))
    return os.urandom(6).hex()


@dataclass
class SmtpServer(ServedOnLineServer):
    """Serve SMTP (or LMTP) with saslkit authentication on one listening socket.

    Time and connection limits are :class:`~saslkit.net.server.LineServer`'s (the login timeout
    applies only when ``config.auth_required``); ``auth_penalty`` (on by default, None to turn
    it off) delays authentication replies after failures (:mod:`saslkit.penalty`).
    """

    config: SmtpConfig
    users: UserStore
    server_secret: bytes
    tokens: TokenService | None = None
    stokens: SubmissionTokens | None = None
    deliver: Deliver = discard_delivery
    #: The embedding server's hook for the commands the session does not implement (:class:`SmtpCommandHook`).
    commands: SmtpCommandHook | None = None

    def __post_init__(self) -> None:
        self._server = LineServer(
            self._session, name="lmtp" if self.config.lmtp else "smtp", ssl_context=self.ssl_context,
            certificate_der=self.certificate_der, implicit_tls=self.implicit_tls, line_limit=MAX_SMTP_AUTH_LINE + 2,
            workers=self.workers, idle_reply=b"421 4.4.2 Idle timeout; closing\r\n",
            error_reply=b"421 4.3.0 Internal error; closing\r\n", observe=reply_logger(log),
            idle_timeout=self.idle_timeout, login_timeout=self.login_timeout if self.config.auth_required else None,
            max_connections=self.max_connections, max_connections_per_ip=self.max_connections_per_ip,
            login_reply=b"421 4.4.2 Login timeout; closing\r\n",
            busy_reply=b"421 4.7.0 Too many connections; try again later\r\n",
        )

    def _session(self, peer: str, tls: bool, bindings: dict[str, bytes]) -> SmtpSession:
        return SmtpSession(self.config, self.users, self.server_secret, tokens=self.tokens, stokens=self.stokens,
                           peer=peer, tls=tls, channel_bindings=bindings, deliver=self.deliver,
                           penalty=self.auth_penalty, commands=self.commands)


def run_server(server: SmtpServer, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
    """Run until SIGTERM or SIGINT; ``on_ready`` is called with the bound address."""
    server.run(host, port, on_ready)

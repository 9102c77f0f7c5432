"""The reference IMAP server: :class:`~saslkit.imap.session.ImapSession` on the shared asyncio driver.

``maildir_counter`` backs SELECT INBOX with a Maildir's message count, enough
to make UNAUTHENTICATE's reset observable (RFC 8437 §3).
"""

from __future__ import annotations

import logging
import mailbox
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..auth.events import reply_logger
from ..credentials import UserStore
from ..net.server import (
    LineServer,
    ServedOnLineServer,
)
from ..tokens import TokenService
from .session import MAX_IMAP_COMMAND_LINE, ImapCommandHook, ImapConfig, ImapSession, Mailbox

__all__ = ["ImapServer", "maildir_counter", "run_imap_server"]

log = logging.getLogger("saslkit.imap")


def maildir_counter(path: str | os.PathLike[str]) -> Callable[[str], Mailbox]:
    """SELECT INBOX shows the number of messages in this Maildir (the same box for every user)."""

    def mailbox_for(user: str) -> Mailbox:
        try:
            return Mailbox(len(mailbox.Maildir(os.fspath(path), create=False)))
        except (OSError, mailbox.Error):
            return Mailbox()

    return mailbox_for


@dataclass
class ImapServer(ServedOnLineServer):
    """Serve IMAP with saslkit authentication on one listening socket.

    Time and connection limits are :class:`~saslkit.net.server.LineServer`'s; ``auth_penalty``
    (on by default, None to turn it off) delays authentication replies after failures
    (:mod:`saslkit.penalty`).
    """

    config: ImapConfig
    users: UserStore
    server_secret: bytes
    tokens: TokenService | None = None
    mailbox: Callable[[str], Mailbox] | None = None
    #: The embedding server's hook for the commands the session does not implement (:class:`ImapCommandHook`).
    commands: ImapCommandHook | None = None

    def __post_init__(self) -> None:
        self._server = LineServer(
            self._session, name="imap", ssl_context=self.ssl_context, certificate_der=self.certificate_der,
            implicit_tls=self.implicit_tls, line_limit=MAX_IMAP_COMMAND_LINE + 2, workers=self.workers,
            idle_reply=b"* BYE Idle timeout\r\n", error_reply=b"* BYE Internal error\r\n", observe=reply_logger(log),
            idle_timeout=self.idle_timeout, login_timeout=self.login_timeout, max_connections=self.max_connections,
            max_connections_per_ip=self.max_connections_per_ip, login_reply=b"* BYE Login timeout\r\n",
            busy_reply=b"* BYE Too many connections; try again later\r\n",
        )

    def _session(self, peer: str, tls: bool, bindings: dict[str, bytes]) -> ImapSession:
        return ImapSession(self.config, self.users, self.server_secret, tokens=self.tokens, peer=peer, tls=tls,
                           channel_bindings=bindings, mailbox=self.mailbox, penalty=self.auth_penalty,
                           commands=self.commands)


def run_imap_server(server: ImapServer, host: str, port: int, on_ready: Callable[[str, int], None]) -> None:
    """Run until SIGTERM or SIGINT."""
    server.run(host, port, on_ready)

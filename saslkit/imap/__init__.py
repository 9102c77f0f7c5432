"""IMAP binding: sans-IO session (AUTHENTICATE, SASL-IR, UNAUTHENTICATE, REMEMBERME), reference server, client."""

from .session import ImapConfig, ImapReply, ImapSession, Mailbox

__all__ = ["ImapConfig", "ImapReply", "ImapSession", "Mailbox"]

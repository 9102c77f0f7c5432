"""SMTP / LMTP binding: sans-IO session, asyncio reference server, client, aiosmtpd adapter."""

from .session import AuthThrottle, Envelope, Reply, SmtpConfig, SmtpSession, add_submission_token_header

__all__ = ["AuthThrottle", "Envelope", "Reply", "SmtpConfig", "SmtpSession", "add_submission_token_header"]

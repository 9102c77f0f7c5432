"""A server of the Dovecot authentication protocol, so Postfix and Exim can use saslkit's mechanisms.

:class:`~saslkit.dovecot.session.DovecotAuthSession` is the sans-IO
connection; :class:`~saslkit.dovecot.server.DovecotAuthServer` serves it on a
UNIX or TCP socket (``saslkit serve dovecot-auth``).
"""

from .session import DovecotAuthConfig, DovecotAuthSession, TempFailMode

__all__ = ["DovecotAuthConfig", "DovecotAuthSession", "TempFailMode"]

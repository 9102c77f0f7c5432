"""Network transports around the sans-IO engines: :mod:`saslkit.net.server` is the asyncio line-server
driver (limits, timeouts, STARTTLS, the pool for blocking lines) under the SMTP and IMAP servers;
:mod:`saslkit.net.client` the blocking client transport (socket, TLS, lines, masked transcript)."""

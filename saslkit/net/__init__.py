"""Network transports around the sans-IO engines: :mod:`saslkit.net.client` is the blocking client transport
(socket, TLS, lines, masked transcript) shared by the SMTP and IMAP clients."""

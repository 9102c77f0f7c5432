"""SASL exchange engines, one per side (RFC 4422 §3, §5): :mod:`saslkit.auth.engine` runs the server's,
:mod:`saslkit.auth.client` the client's; :mod:`saslkit.auth.events` holds what the server side reports and
:mod:`saslkit.auth.framing` the base64 framing both use in line protocols (RFC 4954 §4, RFC 9051 §6.2.2)."""

"""SASL exchange engines, one per side (RFC 4422 §3, §5); :mod:`saslkit.auth.client` is the client's."""

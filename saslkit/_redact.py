"""Render SASL messages for logs and transcripts with every secret masked.

Passwords, proofs, server signatures and tokens never reach a log
(aiosmtpd's habit); identities and nonces stay visible for debugging.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

# The proof (p=, after a comma; not the gs2 flag "p=type" at the start) and the server signature v=.
_SCRAM_SECRET_ATTR = re.compile(r"(?:(?<=,)(p)|^(v))=[^,]*")


def redact(mechanism: str, data: bytes | None) -> str:
    """A printable, secret-free rendering of one message of ``mechanism``."""
    if data is None:
        return "(no initial response)"
    if not data:
        return "(empty)"
    mech = mechanism.upper()
    if mech == "PLAIN":
        parts = data.split(b"\x00")
        if len(parts) == 3:
            authzid, authcid = (p.decode("utf-8", "replace") for p in parts[:2])
            return f"authzid={authzid!r} authcid={authcid!r} password=<masked>"
        return f"<{len(data)} octets>"
    if mech.startswith("SCRAM-"):
        text = data.decode("utf-8", "replace")
        return _SCRAM_SECRET_ATTR.sub(lambda m: f"{m.group(1) or m.group(2)}=<masked>", text)
    return f"<{len(data)} octets>"

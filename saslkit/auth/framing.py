"""Base64 framing shared by the SMTP and IMAP bindings (RFC 4954 §4, RFC 9051 §6.2.2).

Initial responses use ``=`` for a present-but-empty response (RFC 4422 §4
item 3); continuation lines are base64, empty for an empty response, and a
lone ``*`` cancels the exchange.  Decoding is strict (RFC 4648 §3.3, §3.5):
no whitespace, no junk, canonical padding bits.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import ProtocolError

__all__ = [
    "AuthCancelled",
    "InvalidBase64",
    "decode_base64",
    "decode_continuation",
    "decode_initial_response",
    "encode_challenge",
    "encode_initial_response",
]

_B64_RE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class InvalidBase64(ProtocolError):
    """A line that should be base64 is not (SMTP 501 5.5.2, IMAP BAD)."""

    def __init__(self) -> None:
        super().__init__("invalid-base64", "invalid base64 data")


class AuthCancelled(ProtocolError):
    """The client sent ``*`` (SMTP 501, IMAP BAD)."""

    def __init__(self) -> None:
        super().__init__("cancelled", "authentication cancelled")


def _strict_b64decode(data: bytes) -> bytes:
    """Strict base64 (RFC 4648 §3.3, §3.5); empty input is empty data."""
    if not _B64_RE.fullmatch(data):
        raise InvalidBase64()
    try:
        decoded = base64.b64decode(data, validate=True)
    except binascii.Error:  # pragma: no cover - excluded by the regex
        raise InvalidBase64() from None
    if base64.b64encode(decoded) != data:  # non-canonical padding bits
        raise InvalidBase64()
    return decoded


def _as_bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidBase64() from None


def decode_initial_response(token: str | bytes) -> bytes:
    """Decode an initial response: ``=`` is empty, anything else strict base64."""
    data = _as_bytes(token)
    if data == b"=":
        return b""
    if not data:
        raise InvalidBase64()
    return _strict_b64decode(data)


def decode_base64(data: str | bytes) -> bytes:
    """Strict base64 with no ``=``/``*`` conventions (empty is empty): the Dovecot auth protocol's fields."""
    return _strict_b64decode(_as_bytes(data))


def decode_continuation(line: str | bytes) -> bytes:
    """Decode a continuation line; ``*`` raises :class:`AuthCancelled`."""
    data = _as_bytes(line)
    if data == b"*":
        raise AuthCancelled()
    return _strict_b64decode(data)


def encode_challenge(data: bytes) -> str:
    """Base64 of a challenge (empty string for an empty challenge)."""
    return base64.b64encode(data).decode("ascii")


def encode_initial_response(data: bytes) -> str:
    """Base64 of an initial response, ``=`` when it is empty."""
    return base64.b64encode(data).decode("ascii") if data else "="

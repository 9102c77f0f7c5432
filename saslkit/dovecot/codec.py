"""The Dovecot authentication protocol's line codec (docs/dovecot-auth-protocol.md, "Wire format").

One message per LF-terminated line of at most :data:`MAX_LINE` octets, fields
separated by TAB.  Inside a field, TAB, LF, CR, NUL and 0x01 travel as 0x01
followed by ``t``, ``n``, ``r``, ``0``, ``1`` (Dovecot's ``str_tabescape``).
Parameters are ``key=value`` or bare flags.  Decoding is strict: a line that is
not UTF-8, or an escape Dovecot never writes, is a :class:`MalformedLine`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import ProtocolError

__all__ = ["MAX_LINE", "MalformedLine", "encode_line", "escape", "parse_line", "parse_params", "unescape"]

#: Dovecot's AUTH_CLIENT_MAX_LINE_LENGTH, the LF excluded.
MAX_LINE = 16384

_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n", "\x00": "\x010"}
_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "0": "\x00"}
_NEEDS_ESCAPE = re.compile("[\x00\x01\t\n\r]")
_ESCAPED = re.compile("\x01(.?)", re.DOTALL)


class MalformedLine(ProtocolError):
    """A line the protocol does not allow (the server closes the connection, as Dovecot does)."""

    def __init__(self, description: str) -> None:
        super().__init__("malformed-line", description)


def escape(value: str) -> str:
    """One field's value with TAB, LF, CR, NUL and 0x01 escaped."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], value)


def unescape(value: str) -> str:
    """The inverse of :func:`escape`; an unknown or truncated escape is :class:`MalformedLine`."""
    if "\x01" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        try:
            return _UNESCAPES[match.group(1)]
        except KeyError:
            raise MalformedLine("invalid escape sequence") from None

    return _ESCAPED.sub(one, value)


def encode_line(fields: Iterable[str]) -> bytes:
    """One wire line: the fields escaped, joined by TAB, LF-terminated."""
    return ("\t".join(escape(f) for f in fields) + "\n").encode("utf-8")


def parse_line(line: bytes) -> list[str]:
    """A received line (LF and an optional CR stripped) as unescaped fields."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > MAX_LINE:
        raise MalformedLine("line too long")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedLine("line is not UTF-8") from None
    if "\n" in text or "\r" in text or "\x00" in text:
        raise MalformedLine("control character in a line")
    return [unescape(f) for f in text.split("\t")]


def parse_params(fields: Iterable[str]) -> dict[str, str]:
    """``key=value`` parameters and bare flags (value ``""``); the first of a repeated key wins."""
    params: dict[str, str] = {}
    for field in fields:
        key, _, value = field.partition("=")
        params.setdefault(key, value)
    return params

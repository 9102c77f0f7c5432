"""SASLprep (RFC 4013), a profile of stringprep (RFC 3454), on stdlib ``stringprep``.

Steps (RFC 4013 §2): map non-ASCII spaces (C.1.2) to U+0020 and B.1 to
nothing; normalise with NFKC (Unicode 3.2); refuse prohibited characters;
apply the bidi rule (RFC 3454 §6); refuse unassigned code points (A.1) in
*stored* strings only (RFC 3454 §7).
"""

from __future__ import annotations

import stringprep
import unicodedata

from .errors import PreparationError

__all__ = ["saslprep"]

_PROHIBITED = (
    ("non-ASCII space", stringprep.in_table_c12),
    ("ASCII control", stringprep.in_table_c21),
    ("non-ASCII control", stringprep.in_table_c22),
    ("private use", stringprep.in_table_c3),
    ("non-character code point", stringprep.in_table_c4),
    ("surrogate code point", stringprep.in_table_c5),
    ("inappropriate for plain text", stringprep.in_table_c6),
    ("inappropriate for canonical representation", stringprep.in_table_c7),
    ("change display properties or deprecated", stringprep.in_table_c8),
    ("tagging character", stringprep.in_table_c9),
)


def saslprep(text: str, *, stored: bool = False) -> str:
    """Prepare ``text`` with SASLprep (RFC 4013 §2).

    ``stored=False`` prepares a *query* string (unassigned code points are
    allowed); ``stored=True`` a *stored* string, as SCRAM's ``Normalize()``
    requires for passwords (RFC 5802 §2.2).  Raises :class:`PreparationError`.
    """
    if not isinstance(text, str):
        raise PreparationError("SASLprep input must be str")
    if text.isascii() and text.isprintable():
        # Fast path: printable ASCII maps to itself and passes every check.
        return text
    # §2.1 mapping
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # §2.2 normalisation (Unicode 3.2, RFC 4013 §2)
    out = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not out:
        return out
    # §2.3 prohibited output, §2.5 unassigned
    for ch in out:
        for label, table in _PROHIBITED:
            if table(ch):
                raise PreparationError(f"prohibited character U+{ord(ch):04X} ({label})")
        if stored and stringprep.in_table_a1(ch):
            raise PreparationError(f"unassigned code point U+{ord(ch):04X} in a stored string")
    # §2.4 bidirectional characters (RFC 3454 §6)
    has_randal = any(stringprep.in_table_d1(ch) for ch in out)
    if has_randal:
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise PreparationError("string mixes right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise PreparationError("right-to-left string must start and end with a RandALCat character")
    return out

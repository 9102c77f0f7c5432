"""SASLprep (RFC 4013 on RFC 3454): examples, stored vs query, bidi, prohibited tables, properties."""

from __future__ import annotations

import json
import stringprep
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslkit import PreparationError, ProtocolError, SaslError, saslprep

#: RFC examples as reference data (tests/reference/README.md).
REFERENCE = Path(__file__).resolve().parent / "reference"


def _vectors() -> list[dict]:
    return json.loads((REFERENCE / "saslprep-rfc4013.json").read_text(encoding="utf-8"))["vectors"]


VECTORS = _vectors()


@pytest.mark.skipif(not VECTORS, reason="saslprep-rfc4013.json not found")
@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
@pytest.mark.parametrize("stored", [False, True])
def test_rfc4013_examples(vector: dict, stored: bool) -> None:
    text = vector["input"]
    assert " ".join(f"U+{ord(c):04X}" for c in text) == vector["input_codepoints"]
    assert text.encode("utf-8").hex() == vector["input_utf8_hex"]
    if vector["error"]:
        with pytest.raises(PreparationError):
            saslprep(text, stored=stored)
    else:
        assert saslprep(text, stored=stored) == vector["output"]


def test_rfc4013_examples_1_and_5_match() -> None:
    """RFC 4013 §3: example 5 'will match #1'; example 3 'will not match #2'."""
    assert saslprep("I\u00adX") == saslprep("\u2168") == "IX"
    assert saslprep("USER") != saslprep("user")


def test_preparation_error_is_a_protocol_error() -> None:
    with pytest.raises(PreparationError) as info:
        saslprep("\u0007")
    assert isinstance(info.value, ProtocolError)
    assert info.value.reason == "invalid-encoding"


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\u00a0b", "a b"),  # NO-BREAK SPACE (C.1.2) -> SPACE
        ("a\u3000b", "a b"),  # IDEOGRAPHIC SPACE
        ("a\u2003b", "a b"),  # EM SPACE
        ("a\u1680b", "a b"),  # OGHAM SPACE MARK
        ("a\u200bb", "ab"),  # ZERO WIDTH SPACE (B.1) -> nothing
        ("a\u2060b", "ab"),  # WORD JOINER (B.1)
        ("a\ufeffb", "ab"),  # ZERO WIDTH NO-BREAK SPACE (B.1)
        ("a\ufe0fb", "ab"),  # VARIATION SELECTOR-16 (B.1)
        ("\u00ad", ""),  # only mapped-to-nothing characters
        ("", ""),
        ("\ufb01", "fi"),  # NFKC compatibility ligature
        ("e\u0301", "\u00e9"),  # NFKC composes
        ("\uff21", "A"),  # FULLWIDTH A
        ("pass word", "pass word"),  # ASCII space stays
    ],
)
def test_mapping_and_normalisation(text: str, expected: str) -> None:
    assert saslprep(text) == expected
    assert saslprep(text, stored=True) == expected


# --------------------------------------------------------------------------- prohibited output


@pytest.mark.parametrize(
    "char",
    [
        "\u0000",  # C.2.1 ASCII control
        "\u001f",
        "\u007f",
        "\u0080",  # C.2.2 non-ASCII control
        "\u200e",  # C.8 LEFT-TO-RIGHT MARK
        "\u202e",  # C.8 RIGHT-TO-LEFT OVERRIDE
        "\ue000",  # C.3 private use
        "\U000f0000",  # C.3 plane 15
        "\ufdd0",  # C.4 non-character
        "\uffff",
        "\ud800",  # C.5 surrogate
        "\ufff9",  # C.6 inappropriate for plain text
        "\u2ff0",  # C.7 ideographic description
        "\U000e0001",  # C.9 tagging
        "\u206a",  # C.8 deprecated
    ],
)
@pytest.mark.parametrize("stored", [False, True])
def test_prohibited_characters(char: str, stored: bool) -> None:
    with pytest.raises(PreparationError):
        saslprep(f"ab{char}cd", stored=stored)


@pytest.mark.parametrize("value", [None, b"bytes", 42])
def test_non_str_input(value: object) -> None:
    with pytest.raises(PreparationError):
        saslprep(value)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- stored vs query


@pytest.mark.parametrize("char", ["\u0221", "\u0380", "\U0001f600", "\u0ee0"])
def test_unassigned_allowed_in_query_refused_in_stored(char: str) -> None:
    """Unassigned in Unicode 3.2 (table A.1): allowed in query strings, prohibited in stored (RFC 3454 §7)."""
    assert stringprep.in_table_a1(char)
    assert saslprep(f"x{char}y") == f"x{char}y"
    with pytest.raises(PreparationError):
        saslprep(f"x{char}y", stored=True)


def test_stored_is_the_keyword_only_flag() -> None:
    with pytest.raises(TypeError):
        saslprep("x", True)  # type: ignore[misc]


# --------------------------------------------------------------------------- bidi (RFC 3454 §6)


@pytest.mark.parametrize(
    "text",
    [
        "\u0627",  # single RandALCat
        "\u0627\u0628",
        "\u0627 1 \u0628",  # RandAL first and last, neutral inside
        "\u0627\u0031\u0628",
        "\u05d0\u05d1\u05d2",  # Hebrew
        "abc 123",  # LCat only
        "123",  # no strong direction at all
    ],
)
def test_bidi_accepted(text: str) -> None:
    assert saslprep(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "\u0627\u0031",  # RFC 4013 §3 example 7: must end with RandALCat
        "\u0031\u0627",  # must start with RandALCat
        "\u0627a\u0628",  # RandALCat mixed with LCat
        "a\u05d0",
        "\u05d0\u0627b",
    ],
)
def test_bidi_refused(text: str) -> None:
    with pytest.raises(PreparationError):
        saslprep(text)
    with pytest.raises(PreparationError):
        saslprep(text, stored=True)


# --------------------------------------------------------------------------- properties

_any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(exclude_categories=())),  # surrogates too
    st.text(alphabet=st.sampled_from("aZ09 \u00a0\u00ad\u200b\u0627\u05d0\u2168\u0221\ufb01\u0301\u0007\ue000")),
)


def _prohibited(ch: str) -> bool:
    return any(
        table(ch)
        for table in (
            stringprep.in_table_c12,
            stringprep.in_table_c21,
            stringprep.in_table_c22,
            stringprep.in_table_c3,
            stringprep.in_table_c4,
            stringprep.in_table_c5,
            stringprep.in_table_c6,
            stringprep.in_table_c7,
            stringprep.in_table_c8,
            stringprep.in_table_c9,
        )
    )


@settings(max_examples=300, deadline=None)
@given(_any_text, st.booleans())
def test_saslprep_total_and_idempotent(text: str, stored: bool) -> None:
    try:
        out = saslprep(text, stored=stored)
    except PreparationError:
        return
    assert isinstance(out, str)
    assert saslprep(out, stored=stored) == out
    assert not any(_prohibited(ch) for ch in out)
    assert not any(stringprep.in_table_b1(ch) for ch in out)
    if stored:
        assert not any(stringprep.in_table_a1(ch) for ch in out)


@settings(max_examples=200, deadline=None)
@given(_any_text)
def test_stored_success_implies_same_query_result(text: str) -> None:
    try:
        stored = saslprep(text, stored=True)
    except PreparationError:
        return
    assert saslprep(text) == stored


@settings(max_examples=200, deadline=None)
@given(_any_text)
def test_only_preparation_errors(text: str) -> None:
    for stored in (False, True):
        try:
            saslprep(text, stored=stored)
        except SaslError as exc:
            assert isinstance(exc, PreparationError)

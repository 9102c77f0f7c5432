"""SASLprep vectors: RFC 4013 §2 preparation (query or stored strings), output or refusal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import PreparationError
from ...saslprep import saslprep
from ._common import BadVector, Report, need, show, string_field


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """RFC 4013 §2 preparation as a query string (or a stored string if ``stored``)."""
    text = need(string_field(v, "input"), "input")
    output = string_field(v, "output")
    error, stored = v.get("error", output is None), v.get("stored", False)
    if not isinstance(error, bool) or not isinstance(stored, bool):
        raise BadVector("error and stored must be booleans")
    if not error and output is None:
        raise BadVector("output is null but error is false")
    report = Report()
    try:
        prepared = saslprep(text, stored=stored)
    except PreparationError as exc:
        if not error:
            report.problems.append(f"saslprep refused it: {exc}")
    else:
        if error:
            report.problems.append(f"saslprep accepted it as {show(prepared)}, expected an error")
        else:
            report.same("saslprep output", prepared, output)
    return report.verdict("SASLprep: " + ("refused" if error else "output matches"))

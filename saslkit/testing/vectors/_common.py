"""What every vector kind shares: the result type, field access, the report, stand-in stores."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...credentials import MemoryUserStore, UserRecord
from ...errors import PreparationError
from ...saslprep import saslprep

StrPath = str | os.PathLike[str]


_T = TypeVar("_T")


#: Key for the fake salts of unknown users (RFC 5802 §9); never a real secret.
FAKE_SALT_KEY = b"saslkit vector runner fake-salt key"


@dataclass(frozen=True)
class VectorResult:
    """The verdict on one vector (or on a whole file that could not be read)."""

    file: str
    id: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'} {self.file}:{self.id}: {self.detail}"


class BadVector(Exception):
    """The vector itself is unusable: a key is missing or malformed."""


def string_field(v: Mapping[str, Any], key: str) -> str | None:
    value = v.get(key)
    if value is not None and not isinstance(value, str):
        raise BadVector(f"{key} must be a string")
    return value


def need(value: _T | None, what: str) -> _T:
    if value is None:
        raise BadVector(f"missing {what}")
    return value


def octets_field(v: Mapping[str, Any], name: str) -> bytes | None:
    """Octets given as ``name`` (UTF-8 text), ``name_b64`` or ``name_hex``; all forms must agree."""
    decoders: tuple[tuple[str, Callable[[str], bytes]], ...] = (
        (name, lambda s: s.encode("utf-8")),
        (f"{name}_b64", lambda s: base64.b64decode(s.encode("ascii"), validate=True)),
        (f"{name}_hex", bytes.fromhex),
    )
    found: list[tuple[str, bytes]] = []
    for key, decode in decoders:
        raw = string_field(v, key)
        if raw is not None:
            try:
                found.append((key, decode(raw)))
            except ValueError as exc:  # binascii.Error and UnicodeError are ValueErrors
                raise BadVector(f"{key} does not decode: {exc}") from None
    for key, value in found[1:]:
        if value != found[0][1]:
            raise BadVector(f"{found[0][0]} and {key} disagree")
    return found[0][1] if found else None


def expectation(v: Mapping[str, Any]) -> tuple[bool, str | None, str | None]:
    """``(expect_failure, side, error)`` from ``expect``, ``side`` and ``error``."""
    expect = v.get("expect", "success")
    if expect not in ("success", "failure"):
        raise BadVector("expect must be 'success' or 'failure'")
    side = v.get("side")
    if side not in (None, "server", "client"):
        raise BadVector("side must be 'server' or 'client'")
    return expect == "failure", side, string_field(v, "error")


def show(value: object) -> str:
    """Short printable form; binary octets as hex."""
    binary = isinstance(value, bytes) and not (value.isascii() and value.decode("ascii").isprintable())
    text = "0x" + value.hex() if isinstance(value, bytes) and binary else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class Report:
    """Problems (make the vector fail) and notes (informational) of one check."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def same(self, what: str, got: object, want: object, labels: tuple[str, str] = ("got", "expected")) -> bool:
        if got == want:
            return True
        self.problems.append(f"{what}: {labels[0]} {show(got)}, {labels[1]} {show(want)}")
        return False

    def verdict(self, summary: str) -> tuple[bool, str]:
        if self.problems:
            return False, "; ".join(self.problems)
        return True, "; ".join([summary, *self.notes])


def allow_any(authcid: str, authzid: str) -> bool:
    """Vectors test mechanisms, not authorization policy: every authzid is granted."""
    return True


@dataclass
class Side:
    """How far one side of a SCRAM exchange got."""

    report: Report = field(default_factory=Report)
    success: bool = False
    rejected: str | None = None
    stopped: str = ""


def merge_sides(report: Report, sides: Mapping[str, Side], *, partial_is_problem: bool) -> bool:
    """Fold a success vector's sides into ``report``: a rejection is a problem, so is a side that stopped
    short when ``partial_is_problem`` (else a note).  True when every side completed."""
    for name, side in sides.items():
        report.problems += side.report.problems
        if side.rejected is not None:
            report.problems.append(f"{name} rejected the exchange: {side.rejected}")
        elif not side.success:
            (report.problems if partial_is_problem else report.notes).append(
                f"{name} side {'did not complete' if partial_is_problem else 'partial'}: {side.stopped}")
    return all(side.success for side in sides.values())


def rejection_verdict(
    report: Report, sides: Mapping[str, Side], side_name: str | None, error: str | None, mechanism: str
) -> tuple[bool, str]:
    """Verdict for a failure vector run on both sides: someone must reject, nobody may accept."""
    rejections = {name: side.rejected for name, side in sides.items() if side.rejected is not None}
    for name, side in sides.items():
        # With a named side its messages must match; without one, a mismatch may be the fault itself.
        (report.problems if side_name else report.notes).extend(side.report.problems)
        if side.success:
            report.problems.append(f"{name} accepted the exchange")
    if not rejections and not any(side.success for side in sides.values()):
        stops = "; ".join(f"{name}: {side.stopped}" for name, side in sides.items())
        report.problems.append(f"no side rejected ({stops})")
    elif error is not None and error not in rejections.values():
        report.problems.append(f"rejected with {show(sorted(rejections.values()))}, expected {error!r}")
    return report.verdict(f"{mechanism}: rejected by " + ", ".join(f"{n} ({r})" for n, r in rejections.items()))


def token_users(names: Iterable[str]) -> MemoryUserStore:
    """The users the vector's tokens belong to (token checks confirm the user); unpreparable names stay unknown."""
    records = []
    for name in names:
        try:
            if saslprep(name) == name:
                records.append(UserRecord(name))
        except PreparationError:
            pass
    return MemoryUserStore(records)


def check_mechanism(v: Mapping[str, Any], name: str) -> None:
    """A vector of a one-mechanism kind may name the mechanism, but only that one."""
    mechanism = string_field(v, "mechanism")
    if mechanism is not None and mechanism.upper() != name:
        raise BadVector(f"mechanism must be {name!r}, not {mechanism!r}")

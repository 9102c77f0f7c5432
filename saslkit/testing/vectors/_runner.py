"""Read vector files, pick each vector's kind (explicit ``kind`` or guessed from its keys), run its checker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...mechanisms.ht import HT_MECHANISMS
from . import ht, login, plain, rememberme, saslprep, scram, stoken
from ._common import BadVector, StrPath, VectorResult


def check_file(path: StrPath) -> list[VectorResult]:
    """Check every vector of one JSON file; never raises on bad input."""
    name = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return [VectorResult(name, "(file)", False, f"cannot read file: {exc}")]
    except (ValueError, RecursionError) as exc:
        return [VectorResult(name, "(file)", False, f"not valid JSON: {exc}")]
    if not isinstance(document, dict) or not isinstance(document.get("vectors"), list):
        return [VectorResult(name, "(file)", False, 'unknown file shape: expected {"vectors": [...]}')]
    vectors: list[Any] = document["vectors"]
    if not vectors:
        return [VectorResult(name, "(file)", False, "file contains no vectors")]
    default_kind = document.get("kind")
    return [_check_one(name, index, vector, default_kind) for index, vector in enumerate(vectors)]


def shipped_vectors() -> Path:
    """The directory of saslkit's own vector files: ``saslkit/_vectors`` in an installed wheel (a copy made at
    build time), else ``vectors/`` at the top of a source checkout."""
    package = Path(__file__).resolve().parents[2]
    for candidate in (package / "_vectors", package.parent / "vectors"):
        if any(candidate.glob("*.json")):
            return candidate
    raise UsageError(f"no vector files shipped with saslkit (looked in {package / '_vectors'})")


def check_files(paths: Iterable[StrPath]) -> list[VectorResult]:
    """Check several files; a directory stands for the ``*.json`` files in it."""
    results: list[VectorResult] = []
    for path in paths:
        if Path(path).is_dir():
            files = sorted(Path(path).glob("*.json"))
            if not files:
                results.append(VectorResult(str(path), "(dir)", False, "no *.json files in directory"))
            for file in files:
                results.extend(check_file(file))
        else:
            results.extend(check_file(path))
    return results


def summarize(results: Sequence[VectorResult]) -> str:
    """``"N passed, N failed"``."""
    passed = sum(1 for r in results if r.ok)
    return f"{passed} passed, {len(results) - passed} failed"


def _check_one(file: str, index: int, vector: Any, default_kind: Any) -> VectorResult:
    if not isinstance(vector, dict):
        return VectorResult(file, f"#{index}", False, "vector is not a JSON object")
    vid = str(vector.get("id") or f"#{index}")
    try:
        ok, detail = _CHECKERS[_kind_of(vector, default_kind)](vector)
    except BadVector as exc:
        return VectorResult(file, vid, False, f"bad vector: {exc}")
    except UsageError as exc:  # saslkit refused the vector's inputs (key size, nonce syntax...)
        return VectorResult(file, vid, False, f"bad vector (refused by saslkit): {exc}")
    except Exception as exc:  # a library crash is a failing vector, never a runner crash
        return VectorResult(file, vid, False, f"unexpected {type(exc).__name__}: {exc}")
    return VectorResult(file, vid, ok, detail)


def _kind_of(v: Mapping[str, Any], default_kind: Any) -> str:
    """Explicit ``kind`` (per vector, then per file), else guessed from the keys present."""
    kind = v.get("kind", default_kind)
    if kind is not None:
        if kind not in _CHECKERS:
            raise BadVector(f"unknown kind {kind!r} (expected one of {sorted(_CHECKERS)})")
        return str(kind)
    mechanism = v.get("mechanism")
    if isinstance(mechanism, str):
        if mechanism.upper() in ("PLAIN", "LOGIN"):
            return mechanism.lower()
        if mechanism.upper().startswith("SCRAM-"):
            return "scram"
        if mechanism.upper() in HT_MECHANISMS:
            return "ht"
        if mechanism.upper() in ("REMEMBERME", "STOKEN"):
            return mechanism.lower()
        raise BadVector(
            f"unsupported mechanism {mechanism!r} (SCRAM-*, PLAIN, LOGIN, HT-*, HT2-*, REMEMBERME and STOKEN only)"
        )
    if "input" in v and ("output" in v or "error" in v):
        return "saslprep"
    if "messages" in v or "client_first" in v:
        return "scram"
    if "authcid" in v or any(k in v for k in ("message", "message_b64", "message_hex")):
        return "plain"
    raise BadVector("unknown vector shape: no SCRAM, PLAIN or SASLprep keys")


_CHECKERS: dict[str, Callable[[Mapping[str, Any]], tuple[bool, str]]] = {
    "scram": scram.check,
    "plain": plain.check,
    "login": login.check,
    "saslprep": saslprep.check,
    "ht": ht.check,
    "rememberme": rememberme.check,
    "stoken": stoken.check,
}

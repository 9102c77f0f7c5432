"""Test-vector runner: replay SCRAM, PLAIN, SASLprep and HT vectors through saslkit.

The file formats are documented in ``vectors/README.md``.  A SCRAM vector is
run on *both* sides (RFC 5802 §5, §7): the server is fed the client messages
and must answer byte for byte, the client is fed the server messages and must
answer byte for byte and verify ``v=``; the values of RFC 5802 §3 are also
recomputed and compared with any the vector states.  PLAIN vectors check
RFC 4616 §2 messages, SASLprep vectors RFC 4013 §2 preparation.  HT vectors
(``HT-*``: draft-schmaus-kitten-sasl-ht-09; ``HT2-*``: draft-ietf-kitten-sasl-ht-01)
are run on both sides like SCRAM, and their HMACs are recomputed.  REMEMBERME
vectors (draft-ietf-kitten-sasl-rememberme-00 §3) give a token to a server whose
token table the vector defines, and check the client's initial response and the
server's ``e=``/``m=`` failure message.  STOKEN vectors
(draft-slusarz-extra-smtp-submission-token-00 §7.3.1) give ``recipient NUL token``
to a server holding the vector's fixed token key and clock, and recompute the
token MACs.

A malformed file or vector never raises: it yields a failing
:class:`VectorResult` whose ``detail`` says what is wrong.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .context import ClientCredentials, ServerContext
from .credentials import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SCRAM_HASHES,
    MemoryUserStore,
    ScramCredential,
    UserRecord,
    make_user,
    salted_password,
    scram_keys,
)
from .errors import AuthenticationFailed, PreparationError, ProtocolError, TokenRejected, UsageError
from .keys import Key, KeyRing
from .mechanism import Challenge, Failure, Success
from .mechanisms.ht import HT_MECHANISMS, HTClient, HTServer, HTSpec
from .mechanisms.plain import PlainClient, PlainServer, parse_plain
from .mechanisms.rememberme import RememberMeClient, RememberMeServer
from .mechanisms.scram import ScramClient, ScramServer, scram_hash_of
from .mechanisms.stoken import StokenClient, StokenServer, parse_stoken_message
from .saslprep import saslprep
from .tokens.records import StokenRecord, TokenRecord
from .tokens.stoken import PERM_TTL, SubmissionTokens, normalize_address

__all__ = ["VectorResult", "check_file", "check_files", "summarize"]

StrPath = str | os.PathLike[str]
_T = TypeVar("_T")

#: Key for the fake salts of unknown users (RFC 5802 §9); never a real secret.
_FAKE_SALT_KEY = b"saslkit vector runner fake-salt key"
#: Server nonce used when a (failure) vector does not give one.
_DEFAULT_SERVER_NONCE = "saslkit-vector-runner-nonce"
#: The four SCRAM messages of RFC 5802 §5 under their flat vector names.
_SCRAM_MESSAGES = ("client_first", "server_first", "client_final", "server_final")
#: Keys a SCRAM vector that expects success must have (any ``_b64``/``_hex`` form for octets).
_SCRAM_REQUIRED = (
    "mechanism", "username", "password", "salt", "iterations", "client_nonce", "server_nonce",
    *_SCRAM_MESSAGES, "stored_key", "server_key",
)  # fmt: skip
#: Nested shape of the shared RFC files -> flat names.
_NESTED_RENAMES = {
    "client_first_message": "client_first",
    "server_first_message": "server_first",
    "client_final_message": "client_final",
    "server_final_message": "server_final",
    "client_final_message_without_proof": "client_final_without_proof",
    "iteration_count": "iterations",
    "server_nonce_suffix": "server_nonce",
}


@dataclass(frozen=True)
class VectorResult:
    """The verdict on one vector (or on a whole file that could not be read)."""

    file: str
    id: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'} {self.file}:{self.id}: {self.detail}"


class _BadVector(Exception):
    """The vector itself is unusable: a key is missing or malformed."""


# ---------------------------------------------------------------- public API


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


# ---------------------------------------------------------------- dispatch


def _check_one(file: str, index: int, vector: Any, default_kind: Any) -> VectorResult:
    if not isinstance(vector, dict):
        return VectorResult(file, f"#{index}", False, "vector is not a JSON object")
    vid = str(vector.get("id") or f"#{index}")
    try:
        ok, detail = _CHECKERS[_kind_of(vector, default_kind)](vector)
    except _BadVector as exc:
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
            raise _BadVector(f"unknown kind {kind!r} (expected one of {sorted(_CHECKERS)})")
        return str(kind)
    mechanism = v.get("mechanism")
    if isinstance(mechanism, str):
        if mechanism.upper() == "PLAIN":
            return "plain"
        if mechanism.upper().startswith("SCRAM-"):
            return "scram"
        if mechanism.upper() in HT_MECHANISMS:
            return "ht"
        if mechanism.upper() in ("REMEMBERME", "STOKEN"):
            return mechanism.lower()
        raise _BadVector(
            f"unsupported mechanism {mechanism!r} (SCRAM-*, PLAIN, HT-*, HT2-*, REMEMBERME and STOKEN only)"
        )
    if "input" in v and ("output" in v or "error" in v):
        return "saslprep"
    if "messages" in v or "client_first" in v:
        return "scram"
    if "authcid" in v or any(k in v for k in ("message", "message_b64", "message_hex")):
        return "plain"
    raise _BadVector("unknown vector shape: no SCRAM, PLAIN or SASLprep keys")


# ---------------------------------------------------------------- field access


def _str(v: Mapping[str, Any], key: str) -> str | None:
    value = v.get(key)
    if value is not None and not isinstance(value, str):
        raise _BadVector(f"{key} must be a string")
    return value


def _need(value: _T | None, what: str) -> _T:
    if value is None:
        raise _BadVector(f"missing {what}")
    return value


def _octets(v: Mapping[str, Any], name: str) -> bytes | None:
    """Octets given as ``name`` (UTF-8 text), ``name_b64`` or ``name_hex``; all forms must agree."""
    decoders: tuple[tuple[str, Callable[[str], bytes]], ...] = (
        (name, lambda s: s.encode("utf-8")),
        (f"{name}_b64", lambda s: base64.b64decode(s.encode("ascii"), validate=True)),
        (f"{name}_hex", bytes.fromhex),
    )
    found: list[tuple[str, bytes]] = []
    for key, decode in decoders:
        raw = _str(v, key)
        if raw is not None:
            try:
                found.append((key, decode(raw)))
            except ValueError as exc:  # binascii.Error and UnicodeError are ValueErrors
                raise _BadVector(f"{key} does not decode: {exc}") from None
    for key, value in found[1:]:
        if value != found[0][1]:
            raise _BadVector(f"{found[0][0]} and {key} disagree")
    return found[0][1] if found else None


def _expectation(v: Mapping[str, Any]) -> tuple[bool, str | None, str | None]:
    """``(expect_failure, side, error)`` from ``expect``, ``side`` and ``error``."""
    expect = v.get("expect", "success")
    if expect not in ("success", "failure"):
        raise _BadVector("expect must be 'success' or 'failure'")
    side = v.get("side")
    if side not in (None, "server", "client"):
        raise _BadVector("side must be 'server' or 'client'")
    return expect == "failure", side, _str(v, "error")


def _show(value: object) -> str:
    """Short printable form; binary octets as hex."""
    binary = isinstance(value, bytes) and not (value.isascii() and value.decode("ascii").isprintable())
    text = "0x" + value.hex() if isinstance(value, bytes) and binary else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class _Report:
    """Problems (make the vector fail) and notes (informational) of one check."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def same(self, what: str, got: object, want: object, labels: tuple[str, str] = ("got", "expected")) -> bool:
        if got == want:
            return True
        self.problems.append(f"{what}: {labels[0]} {_show(got)}, {labels[1]} {_show(want)}")
        return False

    def verdict(self, summary: str) -> tuple[bool, str]:
        if self.problems:
            return False, "; ".join(self.problems)
        return True, "; ".join([summary, *self.notes])


def _allow_any(authcid: str, authzid: str) -> bool:
    """Vectors test mechanisms, not authorization policy: every authzid is granted."""
    return True


# ---------------------------------------------------------------- SCRAM


@dataclass(frozen=True)
class _ScramCase:
    """One SCRAM vector in flat form (RFC 5802 §5 exchange plus its inputs)."""

    raw: Mapping[str, Any]
    mechanism: str
    hash_name: str
    username: str | None
    password: str | None
    authzid: str | None
    salt: bytes | None
    iterations: int | None
    client_nonce: str | None
    server_nonce: str | None
    cb: tuple[str, bytes] | None
    server_cb: bool
    messages: Mapping[str, bytes]
    stored_key: bytes | None
    server_key: bytes | None


@dataclass
class _Side:
    """How far one side of a SCRAM exchange got."""

    report: _Report = field(default_factory=_Report)
    success: bool = False
    rejected: str | None = None
    stopped: str = ""


def _rejection_verdict(
    report: _Report, sides: Mapping[str, _Side], side_name: str | None, error: str | None, mechanism: str
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
        report.problems.append(f"rejected with {_show(sorted(rejections.values()))}, expected {error!r}")
    return report.verdict(f"{mechanism}: rejected by " + ", ".join(f"{n} ({r})" for n, r in rejections.items()))


def _flatten_scram(v: Mapping[str, Any]) -> dict[str, Any]:
    """Map the nested shape (``messages``, ``derived``, ``channel_binding``…) onto flat keys."""
    flat = dict(v)
    for group in ("messages", "derived"):
        nested = v.get(group)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            raise _BadVector(f"{group} must be an object")
        for key, value in nested.items():
            flat.setdefault(key, value)
    for old, new in _NESTED_RENAMES.items():
        if old in flat:
            flat.setdefault(new, flat[old])
    if "messages" in v:
        _inputs_from_messages(flat)
    cb = v.get("channel_binding")
    if isinstance(cb, dict):
        flat.setdefault("cb_type", cb.get("type"))
        for suffix, new in (("_hex", "cb_data_hex"), ("_b64", "cb_data_b64"), ("_ascii", "cb_data")):
            if f"cb_data{suffix}" in cb:
                flat.setdefault(new, cb[f"cb_data{suffix}"])
    elif cb is not None:
        raise _BadVector("channel_binding must be an object or null")
    return flat


def _scram_attrs(message: Any) -> dict[str, str]:
    """The ``k=value`` attributes of a SCRAM message (RFC 5802 §7), first occurrence wins."""
    attrs: dict[str, str] = {}
    for part in message.split(",") if isinstance(message, str) else ():
        key, eq, value = part.partition("=")
        if eq:
            attrs.setdefault(key, value)
    return attrs


def _inputs_from_messages(flat: dict[str, Any]) -> None:
    """Nested shape only: read nonces, salt and iteration count the vector omits from its messages."""
    client, server = _scram_attrs(flat.get("client_first")), _scram_attrs(flat.get("server_first"))
    for key, value in (("client_nonce", client.get("r")), ("server_nonce", server.get("r"))):
        if flat.get(key) is None and value is not None:
            flat[key] = value
    if _octets(flat, "salt") is None and "s" in server:
        flat["salt_b64"] = server["s"]
    if flat.get("iterations") is None and server.get("i", "").isdigit():
        flat["iterations"] = int(server["i"])


def _parse_scram(v: Mapping[str, Any], expect_failure: bool) -> _ScramCase:
    flat = _flatten_scram(v)
    if not expect_failure:
        missing = [k for k in _SCRAM_REQUIRED if flat.get(k) is None and _octets(flat, k) is None]
        if missing:
            raise _BadVector("missing " + ", ".join(missing))
    mechanism = _need(_str(flat, "mechanism"), "mechanism").upper()
    hash_name, _ = scram_hash_of(mechanism)
    iterations = flat.get("iterations")
    if iterations is not None and (
        not isinstance(iterations, int) or isinstance(iterations, bool) or not 1 <= iterations <= MAX_ITERATIONS
    ):
        raise _BadVector(f"iterations must be an integer from 1 to {MAX_ITERATIONS}")
    client_nonce = _str(flat, "client_nonce")
    server_nonce = _str(flat, "server_nonce")
    if client_nonce and server_nonce and server_nonce.startswith(client_nonce):
        if len(server_nonce) > len(client_nonce):  # the full combined nonce was given
            server_nonce = server_nonce[len(client_nonce) :]
    cb_type, cb_data = _str(flat, "cb_type"), _octets(flat, "cb_data")
    if (cb_type is None) != (cb_data is None):
        raise _BadVector("cb_type and cb_data must be given together")
    server_cb = flat.get("server_cb", True)
    if not isinstance(server_cb, bool):
        raise _BadVector("server_cb must be a boolean")
    messages = {name: m for name in _SCRAM_MESSAGES if (m := _octets(flat, name)) is not None}
    return _ScramCase(
        raw=flat,
        mechanism=mechanism,
        hash_name=hash_name,
        username=_str(flat, "username"),
        password=_str(flat, "password"),
        authzid=_str(flat, "authzid") or None,
        salt=_octets(flat, "salt"),
        iterations=iterations,
        client_nonce=client_nonce,
        server_nonce=server_nonce,
        cb=(cb_type, cb_data) if cb_type is not None and cb_data is not None else None,
        server_cb=server_cb,
        messages=messages,
        stored_key=_octets(flat, "stored_key"),
        server_key=_octets(flat, "server_key"),
    )


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _without_proof(client_final: bytes) -> bytes | None:
    cut = client_final.rfind(b",p=")
    return client_final[:cut] if cut >= 0 else None


def _scram_reference(c: _ScramCase) -> dict[str, bytes]:
    """Recompute what RFC 5802 §3 defines from the vector's inputs and messages."""
    ref: dict[str, bytes] = {}
    if c.password is not None and c.salt is not None and c.iterations is not None:
        salted = salted_password(c.hash_name, c.password, c.salt, c.iterations)
        ref["salted_password"] = salted
        ref["client_key"], ref["stored_key"], ref["server_key"] = scram_keys(c.hash_name, salted)
    first = c.messages.get("client_first")
    if first is None or first.count(b",") < 2:
        return ref
    gs2_end = first.index(b",", first.index(b",") + 1) + 1
    ref["gs2_header"] = first[:gs2_end]
    ref["cbind_input"] = first[:gs2_end] + (c.cb[1] if c.cb is not None and first[:2] == b"p=" else b"")
    server_first, final = c.messages.get("server_first"), c.messages.get("client_final")
    without = _without_proof(final) if final is not None else None
    if server_first is None or without is None:
        return ref
    ref["client_final_without_proof"] = without
    auth = ref["auth_message"] = first[gs2_end:] + b"," + server_first + b"," + without
    if "stored_key" in ref:
        algo = SCRAM_HASHES[c.hash_name][0]
        ref["client_signature"] = hmac.digest(ref["stored_key"], auth, algo)
        ref["client_proof"] = _xor(ref["client_key"], ref["client_signature"])
        ref["server_signature"] = hmac.digest(ref["server_key"], auth, algo)
    return ref


def _check_scram_values(c: _ScramCase, expect_failure: bool, report: _Report) -> None:
    """Compare stated intermediate values (and, for success, ``p=``/``v=``) with recomputed ones."""
    ref = _scram_reference(c)
    for name, value in ref.items():
        stated = _octets(c.raw, name)
        if stated is not None:
            report.same(name, stated, value, ("vector has", "recomputed"))
    if expect_failure or "client_proof" not in ref:
        return
    final, server_final = c.messages["client_final"], c.messages["server_final"]
    b64 = base64.b64encode
    labels = ("vector has", "recomputed")
    report.same("client_final p=", final[final.rfind(b",p=") + 3 :], b64(ref["client_proof"]), labels)
    report.same("server_final v=", server_final.split(b",")[0], b"v=" + b64(ref["server_signature"]), labels)


def _scram_store(c: _ScramCase) -> MemoryUserStore:
    """A store with the vector's credential, or an empty one if the vector gives none."""
    if c.username is None or c.salt is None or c.iterations is None:
        return MemoryUserStore()
    try:
        name = saslprep(c.username)
    except PreparationError:
        return MemoryUserStore()
    if c.stored_key is not None and c.server_key is not None:
        cred = ScramCredential(c.hash_name, c.salt, c.iterations, c.stored_key, c.server_key)
    elif c.password is not None:
        cred = ScramCredential.derive(c.hash_name, c.password, c.salt, c.iterations)
    else:
        return MemoryUserStore()
    return MemoryUserStore([UserRecord(name, {c.hash_name: cred})])


def _same_message(side: _Side, what: str, got: bytes, want: bytes, *, proof: bool = False) -> bool:
    """True if ``got == want``.  If ``want`` only adds extension attributes
    (RFC 5802 §7 ``["," extensions]``, before ``p=`` if ``proof``) that saslkit
    cannot send, note it; either way a False return stops that side."""
    if got == want:
        return True
    core_got, core_want = (_without_proof(got), _without_proof(want)) if proof else (got, want)
    if core_got is not None and core_want is not None and core_want.startswith(core_got + b","):
        side.stopped = f"{what} has extension attributes saslkit does not send: {_show(core_want[len(core_got) + 1 :])}"
    else:
        side.report.same(what, got, want)
        side.stopped = f"{what} differs"
    return False


def _run_scram_server(c: _ScramCase) -> _Side:
    """Feed the client messages to a ScramServer; compare its answers (RFC 5802 §5)."""
    side = _Side()
    first = c.messages.get("client_first")
    if first is None:
        side.stopped = "no client_first"
        return side
    nonce = c.server_nonce or _DEFAULT_SERVER_NONCE
    ctx = ServerContext(
        _scram_store(c),
        server_secret=_FAKE_SALT_KEY,
        channel_bindings=dict([c.cb]) if c.cb is not None and c.server_cb else {},
        authorize=_allow_any,
        nonce_factory=lambda: nonce,
    )
    server = ScramServer(c.mechanism, ctx)
    answer = server.step(first)
    if isinstance(answer, Challenge):
        want = c.messages.get("server_first")
        if want is not None and not _same_message(side, "server_first", answer.data, want):
            return side
        final = c.messages.get("client_final")
        if final is None:
            side.stopped = "no client_final"
            return side
        answer = server.step(final)
    if isinstance(answer, Failure):
        side.rejected = answer.reason
        if "server_final" in c.messages:
            side.report.same("server error message", answer.data, c.messages["server_final"])
    elif isinstance(answer, Success):
        side.success = True
        side.report.same("server_final", answer.additional_data, c.messages.get("server_final"))
        side.report.same("authenticated as", answer.authcid, saslprep(c.username or ""))
        authzid = saslprep(c.authzid) if c.authzid else None
        side.report.same("authzid", answer.authzid, None if authzid == answer.authcid else authzid)
    else:
        side.report.problems.append("server sent a further challenge after client_final")
    return side


def _run_scram_client(c: _ScramCase) -> _Side:
    """Feed the server messages to a ScramClient; compare its answers (RFC 5802 §5)."""
    side = _Side()
    if c.username is None or c.password is None or c.client_nonce is None:
        side.stopped = "client side needs username, password and client_nonce"
        return side
    nonce = c.client_nonce
    creds = ClientCredentials(c.username, c.password, c.authzid, c.cb, nonce_factory=lambda: nonce)
    client = ScramClient(c.mechanism, creds)
    first = client.start()
    if "client_first" in c.messages and not _same_message(side, "client_first", first, c.messages["client_first"]):
        return side
    try:
        if "server_first" not in c.messages:
            side.stopped = "no server_first"
            return side
        final = client.step(c.messages["server_first"])
        want = c.messages.get("client_final")
        if want is not None and not _same_message(side, "client_final", final, want, proof=True):
            return side
        if "server_final" not in c.messages:
            side.stopped = "no server_final"
            return side
        client.step(c.messages["server_final"])
        client.finish()
    except (ProtocolError, AuthenticationFailed) as exc:
        side.rejected = exc.reason
        return side
    side.success = client.verified
    return side


def _check_scram(v: Mapping[str, Any]) -> tuple[bool, str]:
    """RFC 5802 §5 exchange on both sides, plus the §3 values."""
    expect_failure, side_name, error = _expectation(v)
    c = _parse_scram(v, expect_failure)
    report = _Report()
    _check_scram_values(c, expect_failure, report)
    sides: dict[str, _Side] = {}
    if side_name != "client":
        sides["server"] = _run_scram_server(c)
    if side_name != "server":
        sides["client"] = _run_scram_client(c)
    if not expect_failure:
        for name, side in sides.items():
            report.problems += side.report.problems
            if side.rejected is not None:
                report.problems.append(f"{name} rejected the exchange: {side.rejected}")
            elif not side.success:
                report.notes.append(f"{name} side partial: {side.stopped}")
        whole = all(side.success for side in sides.values())
        return report.verdict(f"{c.mechanism}: " + ("both sides match" if whole else "sides match as far as they run"))
    return _rejection_verdict(report, sides, side_name, error, c.mechanism)


# ---------------------------------------------------------------- PLAIN


def _check_plain(v: Mapping[str, Any]) -> tuple[bool, str]:
    """RFC 4616 §2 message: client encoding, parse_plain decoding and the server's verdict."""
    expect_failure, _, error = _expectation(v)
    message = _need(_octets(v, "message"), "message_b64 or message_hex")
    report = _Report()
    if expect_failure:
        try:
            parsed = parse_plain(message)
            report.problems.append(f"parse_plain accepted it as {_show(parsed)}")
        except ProtocolError as exc:
            if error is not None:
                report.same("parse_plain error", exc.reason, error)
        answer = PlainServer(ServerContext(MemoryUserStore(), _FAKE_SALT_KEY)).step(message)
        if not isinstance(answer, Failure):
            report.problems.append("PlainServer accepted it")
        elif error is not None:
            report.same("PlainServer error", answer.reason, error)
        return report.verdict("PLAIN: malformed message rejected")
    authzid = _str(v, "authzid") or ""
    authcid = _need(_str(v, "authcid"), "authcid")
    passwd = _need(_str(v, "passwd"), "passwd")
    report.same(
        "PlainClient message", PlainClient(ClientCredentials(authcid, passwd, authzid or None)).start(), message
    )
    try:
        report.same("parse_plain", parse_plain(message), (authzid, authcid, passwd))
    except ProtocolError as exc:
        report.problems.append(f"parse_plain rejected it: {exc.reason}: {exc}")
    user = make_user(authcid, passwd, iterations=MIN_ITERATIONS, hashes=("SHA-256",), argon2_hash=False)
    ctx = ServerContext(MemoryUserStore([user]), _FAKE_SALT_KEY, authorize=_allow_any)
    answer = PlainServer(ctx).step(message)
    if isinstance(answer, Success):
        report.same("PlainServer authcid", answer.authcid, user.username)
        want_authzid = saslprep(authzid) if authzid else None
        report.same("PlainServer authzid", answer.authzid, None if want_authzid == user.username else want_authzid)
    else:
        report.problems.append(f"PlainServer did not accept it: {answer}")
    return report.verdict("PLAIN: client, parser and server agree")


# ---------------------------------------------------------------- SASLprep


def _check_saslprep(v: Mapping[str, Any]) -> tuple[bool, str]:
    """RFC 4013 §2 preparation as a query string (or a stored string if ``stored``)."""
    text = _need(_str(v, "input"), "input")
    output = _str(v, "output")
    error, stored = v.get("error", output is None), v.get("stored", False)
    if not isinstance(error, bool) or not isinstance(stored, bool):
        raise _BadVector("error and stored must be booleans")
    if not error and output is None:
        raise _BadVector("output is null but error is false")
    report = _Report()
    try:
        prepared = saslprep(text, stored=stored)
    except PreparationError as exc:
        if not error:
            report.problems.append(f"saslprep refused it: {exc}")
    else:
        if error:
            report.problems.append(f"saslprep accepted it as {_show(prepared)}, expected an error")
        else:
            report.same("saslprep output", prepared, output)
    return report.verdict("SASLprep: " + ("refused" if error else "output matches"))


# ---------------------------------------------------------------- HT


#: Keys an HT vector that expects success must have (any ``_b64``/``_hex`` form for octets).
_HT_REQUIRED = ("mechanism", "authcid", "token", "initiator", "responder")
#: The id of the one token an HT vector's server holds.
_HT_RECORD_ID = "vector-record"


@dataclass(frozen=True)
class _HTCase:
    """One HT vector (HT-09 §3 / ietf-01 §3 exchange plus its inputs)."""

    spec: HTSpec
    authcid: str | None
    token: str | None
    client_token: str | None
    token_user: str | None
    token_mechanism: str | None
    cb: tuple[str, bytes] | None
    client_cb_data: bytes | None
    server_cb: bool
    bindings_used: frozenset[str]
    extra_initiator: str
    extra_responder: str
    initiator: bytes | None
    responder: bytes | None


class _VectorTokens:
    """A TokenVerifier holding the vector's one token (pinned if ``token_mechanism``)."""

    def __init__(self, record: TokenRecord | None, token: str) -> None:
        self._record = record
        self._token = token
        self.used: list[str] = []

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        raise TokenRejected("invalid-token", "HT vectors hold no bearer tokens")

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        r = self._record
        if r is None or user != r.user or (r.mechanism is not None and r.mechanism != mechanism.upper()):
            return []
        return [(r, self._token)]

    def mark_used(self, record: TokenRecord) -> None:
        self.used.append(record.id)


def _parse_ht(v: Mapping[str, Any], expect_failure: bool) -> _HTCase:
    if not expect_failure:
        missing = [k for k in _HT_REQUIRED if v.get(k) is None and _octets(v, k) is None]
        if missing:
            raise _BadVector("missing " + ", ".join(missing))
    mechanism = _need(_str(v, "mechanism"), "mechanism").upper()
    spec = HT_MECHANISMS.get(mechanism)
    if spec is None:
        raise _BadVector(f"not an HT mechanism: {mechanism!r}")
    cb_type, cb_data = _str(v, "cb_type"), _octets(v, "cb_data")
    if (cb_type is None) != (cb_data is None):
        raise _BadVector("cb_type and cb_data must be given together")
    if not expect_failure and cb_type != spec.cb_type:
        raise _BadVector(f"{mechanism} needs cb_type {spec.cb_type!r}, the vector has {cb_type!r}")
    server_cb = v.get("server_cb", True)
    if not isinstance(server_cb, bool):
        raise _BadVector("server_cb must be a boolean")
    used = v.get("bindings_used", [])
    if not isinstance(used, list) or not all(isinstance(u, str) for u in used):
        raise _BadVector("bindings_used must be a list of channel-binding types")
    extra_initiator, extra_responder = _str(v, "extra_initiator") or "", _str(v, "extra_responder") or ""
    if (extra_initiator or extra_responder) and not spec.extended:
        raise _BadVector(f"{mechanism} has no extra values (HT2-* only)")
    return _HTCase(
        spec=spec,
        authcid=_str(v, "authcid"),
        token=_str(v, "token"),
        client_token=_str(v, "client_token"),
        token_user=_str(v, "token_user"),
        token_mechanism=_str(v, "token_mechanism"),
        cb=(cb_type, cb_data) if cb_type is not None and cb_data is not None else None,
        client_cb_data=_octets(v, "client_cb_data"),
        server_cb=server_cb,
        bindings_used=frozenset(used),
        extra_initiator=extra_initiator,
        extra_responder=extra_responder,
        initiator=_octets(v, "initiator"),
        responder=_octets(v, "responder"),
    )


def _ht_reference(c: _HTCase) -> dict[str, bytes]:
    """initiator-msg and success responder-msg recomputed from the inputs (HT-09 §3.1/§3.3,
    ietf-01 §3.1/§3.3.1), straight from RFC 2104 HMAC and not through the mechanism."""
    if c.authcid is None or c.token is None:
        return {}
    key, cb = c.token.encode("utf-8"), c.cb[1] if c.cb is not None and c.spec.cb_type is not None else b""
    ext_i, ext_r = c.extra_initiator.encode("utf-8"), c.extra_responder.encode("utf-8")
    mac_i = hmac.digest(key, b"Initiator" + cb + ext_i, c.spec.algo)
    mac_r = hmac.digest(key, b"Responder" + cb + ext_r, c.spec.algo)
    name = c.authcid.encode("utf-8")
    if c.spec.extended:
        return {"initiator": name + b"\0" + ext_i + b"\0" + mac_i, "responder": b"\0" + ext_r + b"\0" + mac_r}
    return {"initiator": name + b"\0" + mac_i, "responder": mac_r}


def _token_users(names: Iterable[str]) -> MemoryUserStore:
    """The users the vector's tokens belong to (token checks confirm the user); unpreparable names stay unknown."""
    records = []
    for name in names:
        try:
            if saslprep(name) == name:
                records.append(UserRecord(name))
        except PreparationError:
            pass
    return MemoryUserStore(records)


def _run_ht_server(c: _HTCase) -> _Side:
    """Feed the initiator-msg to an HTServer holding the vector's token; compare its answer."""
    side = _Side()
    if c.initiator is None:
        side.stopped = "no initiator"
        return side
    user = c.token_user
    if user is None and c.authcid is not None:
        try:
            user = saslprep(c.authcid)
        except PreparationError:
            user = c.authcid
    record = None
    if user is not None and c.token is not None:
        pin = c.token_mechanism.upper() if c.token_mechanism else None
        record = TokenRecord(_HT_RECORD_ID, user, "RANDOM", "vector", 0.0, mechanism=pin)
    tokens = _VectorTokens(record, c.token or "")
    ctx = ServerContext(
        _token_users([record.user] if record is not None else []),
        server_secret=_FAKE_SALT_KEY,
        channel_bindings=dict([c.cb]) if c.cb is not None and c.server_cb else {},
        tls=True,
        tokens=tokens,
        bindings_used=set(c.bindings_used),
    )
    server = HTServer(c.spec.name, ctx, extra_values=c.extra_responder)
    answer = server.step(c.initiator)
    if isinstance(answer, Failure):
        side.rejected = answer.reason
        if c.responder is not None and c.spec.extended:
            side.report.same("server failure-response", answer.data, c.responder)
    elif isinstance(answer, Success):
        side.success = True
        side.report.same("responder", answer.additional_data, c.responder)
        side.report.same("authenticated as", answer.authcid, user)
        side.report.same("token id", answer.details.get("token_id"), _HT_RECORD_ID)
        side.report.same("tokens marked used", tokens.used, [_HT_RECORD_ID])
        if c.spec.extended:
            side.report.same("client extra values seen by the server", answer.details.get("extra_values"),
                             c.extra_initiator)
        if c.spec.cb_type is not None and c.spec.cb_type not in ctx.bindings_used:
            side.report.problems.append(f"{c.spec.cb_type} not recorded in bindings_used")
    else:
        side.report.problems.append("server sent a challenge instead of an outcome")
    return side


def _run_ht_client(c: _HTCase) -> _Side:
    """An HTClient with the vector's inputs must send ``initiator`` and verify ``responder``."""
    side = _Side()
    token = c.client_token if c.client_token is not None else c.token
    if c.authcid is None or token is None:
        side.stopped = "client side needs authcid and token"
        return side
    cb = None
    if c.spec.cb_type is not None:
        if c.cb is None:
            side.stopped = "client side needs cb_type and cb_data"
            return side
        cb = (c.cb[0], c.client_cb_data if c.client_cb_data is not None else c.cb[1])
    client = HTClient(c.spec.name, ClientCredentials(c.authcid, token, channel_binding=cb),
                      extra_values=c.extra_initiator)
    first = client.start()
    if c.initiator is not None and first != c.initiator:
        side.report.same("initiator", first, c.initiator)
        side.stopped = "initiator differs"
        return side
    if c.responder is None:
        side.stopped = "no responder"
        return side
    try:
        client.step(c.responder)
        client.finish()
    except (ProtocolError, AuthenticationFailed) as exc:
        side.rejected = exc.reason
        return side
    side.success = client.verified
    if c.spec.extended:
        side.report.same("server extra values seen by the client", client.peer_extra_values, c.extra_responder)
    return side


def _check_ht(v: Mapping[str, Any]) -> tuple[bool, str]:
    """HT-09 / ietf-01 exchange on both sides, plus the recomputed HMACs."""
    expect_failure, side_name, error = _expectation(v)
    c = _parse_ht(v, expect_failure)
    report = _Report()
    if not expect_failure:
        labels = ("vector has", "recomputed")
        for name, value in _ht_reference(c).items():
            report.same(name, getattr(c, name), value, labels)
    sides: dict[str, _Side] = {}
    if side_name != "client":
        sides["server"] = _run_ht_server(c)
    if side_name != "server":
        sides["client"] = _run_ht_client(c)
    if not expect_failure:
        for name, side in sides.items():
            report.problems += side.report.problems
            if side.rejected is not None:
                report.problems.append(f"{name} rejected the exchange: {side.rejected}")
            elif not side.success:
                report.problems.append(f"{name} side did not complete: {side.stopped}")
        return report.verdict(f"{c.spec.name}: both sides match")
    return _rejection_verdict(report, sides, side_name, error, c.spec.name)


# ---------------------------------------------------------------- REMEMBERME


#: The id of the one token a REMEMBERME vector's server holds.
_RM_RECORD_ID = "vector-rememberme-record"
#: States a REMEMBERME vector can give its server's token.
_RM_STATES = ("active", "revoked", "expired")


@dataclass(frozen=True)
class _RememberMeCase:
    """One REMEMBERME vector (draft-ietf-kitten-sasl-rememberme-00 §3): the token octets
    the client sends and the server's token table."""

    message: bytes
    table: Mapping[str, TokenRecord]
    authcid: str | None
    error_text: str | None


class _VectorRememberMeTokens:
    """A TokenVerifier whose store is the vector's token table.

    Tokens are compared exactly (never trimmed), so the draft's example octets with
    their trailing LF are a different token from ``AEC6576576557``.  The state checks
    and their messages follow :class:`~saslkit.tokens.service.TokenService`.
    """

    def __init__(self, table: Mapping[str, TokenRecord]) -> None:
        self._table = table
        self.used: list[str] = []

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        record = self._table.get(token)
        if record is None:
            raise TokenRejected("unknown-user", "unknown token")
        if record.revoked is not None:
            raise TokenRejected("revoked", "token was revoked; authenticate with your password to get a new one")
        if record.expires is not None:
            raise TokenRejected("expired", "token expired")
        if record.mechanism is not None and record.mechanism != mechanism.upper():
            raise TokenRejected("wrong-mechanism", f"token is bound to {record.mechanism}")
        return record

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        return []  # REMEMBERME never asks: the token itself is sent

    def mark_used(self, record: TokenRecord) -> None:
        self.used.append(record.id)


def _check_mechanism(v: Mapping[str, Any], name: str) -> None:
    mechanism = _str(v, "mechanism")
    if mechanism is not None and mechanism.upper() != name:
        raise _BadVector(f"mechanism must be {name!r}, not {mechanism!r}")


def _parse_rememberme(v: Mapping[str, Any], expect_failure: bool) -> _RememberMeCase:
    _check_mechanism(v, "REMEMBERME")
    token, message = _octets(v, "token"), _octets(v, "message")
    if token is not None and message is not None and token != message:
        raise _BadVector("token and message disagree")
    sent = _need(token if token is not None else message, "token or message_b64")
    user, server_token, pinned = _str(v, "user"), _str(v, "server_token"), _str(v, "pinned_mechanism")
    state = v.get("state", "active")
    if state not in _RM_STATES:
        raise _BadVector(f"state must be one of {list(_RM_STATES)}")
    if user is None and (server_token is not None or pinned is not None or state != "active"):
        raise _BadVector("server_token, state and pinned_mechanism describe the token of user: give user")
    table: dict[str, TokenRecord] = {}
    if user is not None:
        if server_token is None:
            try:
                server_token = sent.decode("utf-8")
            except UnicodeDecodeError:
                raise _BadVector("the token octets are not UTF-8: give server_token") from None
        table[server_token] = TokenRecord(
            _RM_RECORD_ID, user, "RANDOM", "vector", 0.0,
            expires=0.0 if state == "expired" else None,
            mechanism=pinned.upper() if pinned else None,
            revoked=0.0 if state == "revoked" else None,
        )  # fmt: skip
    authcid = _str(v, "authcid")
    if not expect_failure and authcid is None:
        raise _BadVector("missing authcid (the identity the server must report)")
    return _RememberMeCase(sent, table, authcid, _str(v, "error_text"))


def _rememberme_server_final(answer: Failure, report: _Report) -> tuple[str, str] | None:
    """``(server-error-value, server-error-message-value)`` from ``Failure.data`` (draft §3)."""
    try:
        text = (answer.data or b"").decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    head, sep, message = text.partition(",m=")
    if not head.startswith("e=") or len(head) == 2 or not sep or not message:
        report.problems.append(f"Failure.data is not e=<value>,m=<text>: {_show(answer.data)}")
        return None
    return head[2:], message


def _run_rememberme_client(c: _RememberMeCase, expect_failure: bool, report: _Report) -> str:
    """A client holding the token as a string must send exactly the vector's octets."""
    try:
        text = c.message.decode("utf-8")
    except UnicodeDecodeError:
        return "client skipped (no token string gives octets that are not UTF-8)"
    try:
        client = RememberMeClient(ClientCredentials("", text))
    except UsageError as exc:
        if not expect_failure:
            report.problems.append(f"client refuses the token: {exc}")
        return f"client refuses it ({exc})"
    report.same("client initial response", client.start(), c.message)
    if not expect_failure:
        try:
            client.finish(None)
        except ProtocolError as exc:
            report.problems.append(f"client did not finish: {exc}")
    return "client sends the same octets"


def _check_rememberme(v: Mapping[str, Any]) -> tuple[bool, str]:
    """REMEMBERME (draft §3): the server's verdict and ``e=``/``m=``, and the client's initial response."""
    expect_failure, side, error = _expectation(v)
    if side is not None:
        raise _BadVector("side is not used by REMEMBERME vectors")
    c = _parse_rememberme(v, expect_failure)
    report = _Report()
    tokens = _VectorRememberMeTokens(c.table)
    ctx = ServerContext(_token_users({r.user for r in c.table.values()}), server_secret=_FAKE_SALT_KEY, tls=True,
                        tokens=tokens)
    answer = RememberMeServer(ctx).step(c.message)
    if isinstance(answer, Success):
        outcome = f"accepted as {answer.authcid!r}"
        if expect_failure:
            report.problems.append(f"server {outcome}")
        else:
            report.same("authenticated as", answer.authcid, c.authcid)
            report.same("authzid", answer.authzid, None)
            report.same("token id", answer.details.get("token_id"), _RM_RECORD_ID)
            report.same("tokens marked used", tokens.used, [_RM_RECORD_ID])
    elif isinstance(answer, Failure):
        wire = _rememberme_server_final(answer, report)
        outcome = f"rejected (e={wire[0]})" if wire else f"rejected ({answer.reason})"
        if not expect_failure:
            report.problems.append(f"server rejected it: {answer.reason}: {answer.message}")
        elif wire is not None:
            if error is not None:
                report.same("e=", wire[0], error)
            if c.error_text is not None and c.error_text not in wire[1]:
                report.problems.append(f"m= {wire[1]!r} does not mention {c.error_text!r}")
            want = "invalid-encoding" if wire[0] == "invalid-encoding" else "authentication-failed"
            report.same("Failure.reason", answer.reason, want)
    else:
        outcome = "challenged"
        report.problems.append("server sent a challenge instead of an outcome")
    client = _run_rememberme_client(c, expect_failure, report)
    return report.verdict(f"REMEMBERME: {outcome}; {client}")


# ---------------------------------------------------------------- STOKEN


@dataclass(frozen=True)
class _StokenCase:
    """One STOKEN vector (draft-slusarz-extra-smtp-submission-token-00 §7.3.1)."""

    message: bytes | None
    recipient: str | None
    token: str | None
    key: Key | None
    now: float
    perm: StokenRecord | None
    has_parsed: bool
    parsed: tuple[str, str] | None
    remote: str | None
    local: str | None
    kind: str | None
    token_error: str | None
    error_text: str | None


class _VectorStokenStore:
    """A throwaway in-memory TokenStore: the vector's permanent submission token, if any."""

    def __init__(self, records: Iterable[StokenRecord], clock: Callable[[], float]) -> None:
        self._stokens = {(r.remote, r.local): r for r in records}
        self._clock = clock

    def put(self, record: TokenRecord) -> None:
        raise UsageError("STOKEN vectors hold no reauthentication tokens")

    def get(self, token_id: str) -> TokenRecord | None:
        return None

    def revoke(self, token_id: str, at: float) -> bool:
        return False

    def revoke_matching(self, at: float, *, user: str | None = None, before: float | None = None) -> int:
        return 0

    def touch(self, token_id: str, at: float) -> None:
        pass

    def stoken_get(self, remote: str, local: str) -> StokenRecord | None:
        record = self._stokens.get((remote, local))
        return record if record is not None and record.expires > self._clock() else None

    def stoken_put_if_absent(self, record: StokenRecord) -> StokenRecord:
        existing = self.stoken_get(record.remote, record.local)
        if existing is not None:
            return existing
        self._stokens[(record.remote, record.local)] = record
        return record

    def stoken_refresh(self, remote: str, local: str, expires: float) -> None:
        record = self.stoken_get(remote, local)
        if record is not None:
            self._stokens[(remote, local)] = StokenRecord(
                remote, local, record.id, record.key_id, record.created, max(record.expires, expires)
            )

    def stoken_delete(self, remote: str, local: str) -> bool:
        return self._stokens.pop((remote, local), None) is not None

    def close(self) -> None:
        pass

    def list(self, user: str | None = None) -> list[TokenRecord]:
        return []


def _number(v: Mapping[str, Any], key: str) -> float | None:
    value = v.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise _BadVector(f"{key} must be POSIX seconds (a non-negative number)")
    return float(value)


def _parse_stoken_perm(raw: Any, key: Key | None, now: float) -> StokenRecord | None:
    """``perm``: the permanent token the server's store holds (``remote``, ``local``, ``id``, ``expires``)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _BadVector("perm must be an object")
    if key is None:
        raise _BadVector("perm needs token_key_b64 and token_key_id")
    fields = [_need(_str(raw, name), f"perm.{name}") for name in ("remote", "local", "id")]
    try:
        remote, local = normalize_address(fields[0]), normalize_address(fields[1])
    except UsageError as exc:
        raise _BadVector(f"perm: {exc}") from None
    expires = _number(raw, "expires")
    return StokenRecord(remote, local, fields[2], key.id, now, now + PERM_TTL if expires is None else expires)


def _parse_stoken(v: Mapping[str, Any], expect_failure: bool) -> _StokenCase:
    _check_mechanism(v, "STOKEN")
    message, recipient, token = _octets(v, "message"), _str(v, "recipient"), _str(v, "token")
    if (recipient is None) != (token is None):
        raise _BadVector("recipient and token must be given together")
    if message is None and recipient is None:
        raise _BadVector("missing message_b64 or recipient and token")
    secret, key_id = _octets(v, "token_key"), _str(v, "token_key_id")
    if (secret is None) != (key_id is None):
        raise _BadVector("token_key_b64 and token_key_id must be given together")
    now = _number(v, "now")
    if now is None and (secret is not None or v.get("perm") is not None):
        raise _BadVector("a vector with token_key_b64 or perm needs now")
    now = now or 0.0
    key = Key(key_id, "token", secret, now) if key_id is not None and secret is not None else None
    parsed = v.get("parsed")
    if parsed is not None:
        if not isinstance(parsed, dict):
            raise _BadVector("parsed must be {recipient, token} or null")
        parsed = (_need(_str(parsed, "recipient"), "parsed.recipient"), _need(_str(parsed, "token"), "parsed.token"))
    # ``kind`` already selects the vector kind, so the token's kind is ``token_kind``.
    expected = {name: _str(v, name) for name in ("remote", "local", "token_kind")}
    if not expect_failure:
        missing = [name for name, value in expected.items() if value is None]
        if key is None:
            missing.append("token_key_b64, token_key_id")
        if missing:
            raise _BadVector("missing " + ", ".join(missing))
    return _StokenCase(
        message=message,
        recipient=recipient,
        token=token,
        key=key,
        now=now,
        perm=_parse_stoken_perm(v.get("perm"), key, now),
        has_parsed="parsed" in v,
        parsed=parsed,
        remote=expected["remote"],
        local=expected["local"],
        kind=expected["token_kind"],
        token_error=_str(v, "token_error"),
        error_text=_str(v, "error_text"),
    )


def _stoken_service(c: _StokenCase) -> SubmissionTokens:
    """SubmissionTokens with the vector's key (in memory: no key-ring file), clock and permanent token."""
    now = c.now
    ring = KeyRing(Path("(vector key ring)"), [c.key] if c.key is not None else [])
    store = _VectorStokenStore([c.perm] if c.perm is not None else [], lambda: now)
    return SubmissionTokens(store, ring, clock=lambda: now)


def _stoken_reference(c: _StokenCase, token: str, report: _Report) -> None:
    """Recompute the token's MAC (saslkit/tokens/stoken.py) straight from RFC 2104 HMAC."""
    if c.key is None or c.remote is None or c.local is None:
        return
    parts = token.split(".")
    fields: tuple[str, ...]
    if c.kind == "TEMP" and len(parts) == 6 and parts[:2] == ["st1", "t"]:
        fields = ("stoken-temp", c.remote, c.local, parts[3])
        report.same("token key id", parts[2], c.key.id)
    elif c.kind == "PERM" and len(parts) == 5 and parts[:2] == ["st1", "p"]:
        fields = ("stoken-perm", parts[2], c.remote, c.local)
    else:
        report.problems.append(f"token is not a {c.kind} submission token: {_show(token)}")
        return
    b64url = base64.urlsafe_b64encode
    mac = b64url(hmac.digest(c.key.secret, "\x00".join(fields).encode("utf-8"), "sha256")).rstrip(b"=")
    labels = ("token has", "recomputed")
    remote = b64url(c.remote.encode("utf-8")).rstrip(b"=").decode("ascii")
    report.same("remote address in the token", parts[-2], remote, labels)
    report.same("token MAC", parts[-1], mac.decode("ascii"), labels)


def _stoken_message(c: _StokenCase, expect_failure: bool, report: _Report) -> bytes:
    """The message: ``message`` and/or what a client with ``recipient`` and ``token`` sends."""
    if c.recipient is None or c.token is None:
        return _need(c.message, "message_b64")
    try:
        sent = StokenClient(ClientCredentials(c.recipient, c.token)).start()
    except UsageError as exc:
        if c.message is None:
            raise _BadVector(f"the client refuses recipient and token ({exc}): give message_b64") from None
        (report.notes if expect_failure else report.problems).append(f"client refuses recipient and token: {exc}")
        return c.message
    if c.message is not None:
        report.same("client initial response", sent, c.message)
        return c.message
    return sent


def _check_stoken(v: Mapping[str, Any]) -> tuple[bool, str]:
    """STOKEN (draft §7.3.1): message parsing, the token itself, and the server's verdict."""
    expect_failure, side, error = _expectation(v)
    if side is not None:
        raise _BadVector("side is not used by STOKEN vectors")
    c = _parse_stoken(v, expect_failure)
    report = _Report()
    message = _stoken_message(c, expect_failure, report)
    parsed: tuple[str, str] | None
    try:
        parsed = parse_stoken_message(message)
    except ProtocolError:
        parsed = None
    if c.has_parsed:
        if c.parsed is None and parsed is not None:
            report.problems.append(f"parse_stoken_message accepted it as {_show(parsed)}, expected an error")
        elif c.parsed is not None:
            report.same("parse_stoken_message", parsed, c.parsed)
    if c.token_error is not None:
        if parsed is None:
            report.problems.append("token_error is given but the message does not parse")
        else:
            try:
                verified = _stoken_service(c).verify(*parsed)
                report.problems.append(f"SubmissionTokens.verify accepted it: {verified}")
            except TokenRejected as exc:
                report.same("SubmissionTokens.verify reason", exc.reason, c.token_error)
    if not expect_failure and parsed is not None:
        _stoken_reference(c, parsed[1], report)
    ctx = ServerContext(MemoryUserStore(), server_secret=_FAKE_SALT_KEY, tls=True, stokens=_stoken_service(c))
    answer = StokenServer(ctx).step(message)
    if isinstance(answer, Success):
        local, kind = answer.details.get("stoken_local"), answer.details.get("stoken_kind")
        outcome = f"accepted: {answer.authcid} may deliver to {local} ({kind})"
        if expect_failure:
            report.problems.append(f"server {outcome}")
        else:
            report.same("authenticated as (remote address)", answer.authcid, c.remote)
            report.same("local address", local, c.local)
            report.same("token kind", kind, c.kind)
            report.same("authzid", answer.authzid, None)
    elif isinstance(answer, Failure):
        outcome = f"rejected ({answer.reason}: {answer.message})"
        if not expect_failure:
            report.problems.append(f"server {outcome}")
        else:
            if error is not None:
                report.same("Failure.reason", answer.reason, error)
            if c.error_text is not None and c.error_text not in answer.message:
                report.problems.append(f"Failure.message {answer.message!r} does not mention {c.error_text!r}")
    else:
        outcome = "challenged"
        report.problems.append("server sent a challenge instead of an outcome")
    return report.verdict(f"STOKEN: {outcome}")


_CHECKERS: dict[str, Callable[[Mapping[str, Any]], tuple[bool, str]]] = {
    "scram": _check_scram,
    "plain": _check_plain,
    "saslprep": _check_saslprep,
    "ht": _check_ht,
    "rememberme": _check_rememberme,
    "stoken": _check_stoken,
}

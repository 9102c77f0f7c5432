"""SCRAM vectors, success and bad-client/bad-server cases (RFC 5802 §5, §7).

A vector is run on *both* sides: the server is fed the client messages and
must answer byte for byte, the client is fed the server messages and must
answer byte for byte and verify ``v=``; the values of RFC 5802 §3 are also
recomputed and compared with any the vector states.  A failure vector must be
rejected by a side (the named one, if any) and accepted by none.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...context import ClientCredentials, ServerContext
from ...credentials import (
    MAX_ITERATIONS,
    SCRAM_HASHES,
    MemoryUserStore,
    ScramCredential,
    UserRecord,
    salted_password,
    scram_keys,
)
from ...errors import AuthenticationFailed, PreparationError, ProtocolError
from ...mechanism import Challenge, Failure, Success
from ...mechanisms.scram import ScramClient, ScramServer, scram_hash_of
from ...saslprep import saslprep
from ._common import (
    FAKE_SALT_KEY,
    BadVector,
    Report,
    Side,
    allow_any,
    expectation,
    merge_sides,
    need,
    octets_field,
    rejection_verdict,
    show,
    string_field,
)

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


def _flatten_scram(v: Mapping[str, Any]) -> dict[str, Any]:
    """Map the nested shape (``messages``, ``derived``, ``channel_binding``…) onto flat keys."""
    flat = dict(v)
    for group in ("messages", "derived"):
        nested = v.get(group)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            raise BadVector(f"{group} must be an object")
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
        raise BadVector("channel_binding must be an object or null")
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
    if octets_field(flat, "salt") is None and "s" in server:
        flat["salt_b64"] = server["s"]
    if flat.get("iterations") is None and server.get("i", "").isdigit():
        flat["iterations"] = int(server["i"])


def _parse_scram(v: Mapping[str, Any], expect_failure: bool) -> _ScramCase:
    flat = _flatten_scram(v)
    if not expect_failure:
        missing = [k for k in _SCRAM_REQUIRED if flat.get(k) is None and octets_field(flat, k) is None]
        if missing:
            raise BadVector("missing " + ", ".join(missing))
    mechanism = need(string_field(flat, "mechanism"), "mechanism").upper()
    hash_name, _ = scram_hash_of(mechanism)
    iterations = flat.get("iterations")
    if iterations is not None and (
        not isinstance(iterations, int) or isinstance(iterations, bool) or not 1 <= iterations <= MAX_ITERATIONS
    ):
        raise BadVector(f"iterations must be an integer from 1 to {MAX_ITERATIONS}")
    client_nonce = string_field(flat, "client_nonce")
    server_nonce = string_field(flat, "server_nonce")
    if client_nonce and server_nonce and server_nonce.startswith(client_nonce):
        if len(server_nonce) > len(client_nonce):  # the full combined nonce was given
            server_nonce = server_nonce[len(client_nonce) :]
    cb_type, cb_data = string_field(flat, "cb_type"), octets_field(flat, "cb_data")
    if (cb_type is None) != (cb_data is None):
        raise BadVector("cb_type and cb_data must be given together")
    server_cb = flat.get("server_cb", True)
    if not isinstance(server_cb, bool):
        raise BadVector("server_cb must be a boolean")
    messages = {name: m for name in _SCRAM_MESSAGES if (m := octets_field(flat, name)) is not None}
    return _ScramCase(
        raw=flat,
        mechanism=mechanism,
        hash_name=hash_name,
        username=string_field(flat, "username"),
        password=string_field(flat, "password"),
        authzid=string_field(flat, "authzid") or None,
        salt=octets_field(flat, "salt"),
        iterations=iterations,
        client_nonce=client_nonce,
        server_nonce=server_nonce,
        cb=(cb_type, cb_data) if cb_type is not None and cb_data is not None else None,
        server_cb=server_cb,
        messages=messages,
        stored_key=octets_field(flat, "stored_key"),
        server_key=octets_field(flat, "server_key"),
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


def _check_scram_values(c: _ScramCase, expect_failure: bool, report: Report) -> None:
    """Compare stated intermediate values (and, for success, ``p=``/``v=``) with recomputed ones."""
    ref = _scram_reference(c)
    for name, value in ref.items():
        stated = octets_field(c.raw, name)
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


def _same_message(side: Side, what: str, got: bytes, want: bytes, *, proof: bool = False) -> bool:
    """True if ``got == want``.  If ``want`` only adds extension attributes
    (RFC 5802 §7 ``["," extensions]``, before ``p=`` if ``proof``) that saslkit
    cannot send, note it; either way a False return stops that side."""
    if got == want:
        return True
    core_got, core_want = (_without_proof(got), _without_proof(want)) if proof else (got, want)
    if core_got is not None and core_want is not None and core_want.startswith(core_got + b","):
        side.stopped = f"{what} has extension attributes saslkit does not send: {show(core_want[len(core_got) + 1 :])}"
    else:
        side.report.same(what, got, want)
        side.stopped = f"{what} differs"
    return False


def _run_scram_server(c: _ScramCase) -> Side:
    """Feed the client messages to a ScramServer; compare its answers (RFC 5802 §5)."""
    side = Side()
    first = c.messages.get("client_first")
    if first is None:
        side.stopped = "no client_first"
        return side
    nonce = c.server_nonce or _DEFAULT_SERVER_NONCE
    ctx = ServerContext(
        _scram_store(c),
        server_secret=FAKE_SALT_KEY,
        channel_bindings=dict([c.cb]) if c.cb is not None and c.server_cb else {},
        authorize=allow_any,
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


def _run_scram_client(c: _ScramCase) -> Side:
    """Feed the server messages to a ScramClient; compare its answers (RFC 5802 §5)."""
    side = Side()
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


def check(v: Mapping[str, Any]) -> tuple[bool, str]:
    """RFC 5802 §5 exchange on both sides, plus the §3 values."""
    expect_failure, side_name, error = expectation(v)
    c = _parse_scram(v, expect_failure)
    report = Report()
    _check_scram_values(c, expect_failure, report)
    sides: dict[str, Side] = {}
    if side_name != "client":
        sides["server"] = _run_scram_server(c)
    if side_name != "server":
        sides["client"] = _run_scram_client(c)
    if not expect_failure:
        whole = merge_sides(report, sides, partial_is_problem=False)
        return report.verdict(f"{c.mechanism}: " + ("both sides match" if whole else "sides match as far as they run"))
    return rejection_verdict(report, sides, side_name, error, c.mechanism)

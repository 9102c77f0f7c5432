"""HT-* (draft-schmaus-kitten-sasl-ht-09) and HT2-* (draft-ietf-kitten-sasl-ht-01) mechanisms.

The vectors of ``vectors/ht.json`` are recomputed here with plain ``hmac.new``
(not through saslkit), the HT-SHA-256 layouts are compared with the reference
``tests/reference/ht-derived.json``, and the server is checked against a small in-test
TokenVerifier: pinning, tls-exporter reuse (RFC 9266 §4.1), unknown users,
temporary failures.  Hypothesis feeds both sides arbitrary bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saslkit import (
    AuthenticationFailed,
    Challenge,
    ClientCredentials,
    Failure,
    FailureReason,
    MemoryUserStore,
    ProtocolError,
    SaslError,
    ServerContext,
    Success,
    TemporaryFailure,
    UsageError,
    UserRecord,
    default_registry,
    run_exchange,
)
from saslkit.errors import TokenRejected
from saslkit.mechanisms.ht import (
    HT_MECHANISMS,
    HTClient,
    HTServer,
    ht_mechanism_names,
    ht_spec_of,
    initiator_message,
    parse_initiator_message,
    parse_key_values,
    responder_message,
)
from saslkit.testing.vectors import check_file
from saslkit.tokens.records import TokenRecord, TokenVerifier

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
HT_FILE = VECTORS / "ht.json"
DERIVED = Path(__file__).resolve().parent / "reference" / "ht-derived.json"

SECRET = b"ht-test-server-secret-0123456789ab"
TOKEN = "secret-token:fast-xKWSDTPaXb9b0HuP2qy0UdpWVJyrCj-c"
OTHER_TOKEN = "secret-token:fast-0therTokenOtherTokenOtherToken00"
CB = {
    "tls-unique": bytes(range(0xA0, 0xAC)),
    "tls-server-end-point": bytes(range(0x20, 0x40)),
    "tls-exporter": bytes(range(0x40, 0x60)),
}
NAMES = ht_mechanism_names()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ independent reference (no saslkit code)

_HASHES: dict[str, Callable[[], Any]] = {"SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512,
                                         "SHA3-512": hashlib.sha3_512}
_CB_OF = {"NONE": None, "UNIQ": "tls-unique", "ENDP": "tls-server-end-point", "EXPR": "tls-exporter"}
_KV = re.compile(r"(?:[A-Za-z0-9/+_-]+=[A-Za-z0-9/+_-]+(?:,[A-Za-z0-9/+_-]+=[A-Za-z0-9/+_-]+)*)?\Z")


def split_name(mechanism: str) -> tuple[str, str, str | None]:
    family, rest = mechanism.split("-", 1)
    hash_name, suffix = rest.rsplit("-", 1)
    return family, hash_name, _CB_OF[suffix]


def ref_hmac(mechanism: str, token: str, label: bytes, cb: bytes, extra: str = "") -> bytes:
    _, hash_name, _ = split_name(mechanism)
    return hmac.new(token.encode("utf-8"), label + cb + extra.encode("utf-8"), _HASHES[hash_name]).digest()


def ref_initiator(mechanism: str, authcid: str, token: str, cb: bytes, extra: str = "") -> bytes:
    mac = ref_hmac(mechanism, token, b"Initiator", cb, extra)
    if mechanism.startswith("HT2-"):
        return authcid.encode("utf-8") + b"\x00" + extra.encode("utf-8") + b"\x00" + mac
    return authcid.encode("utf-8") + b"\x00" + mac


def ref_responder(mechanism: str, token: str, cb: bytes, extra: str = "") -> bytes:
    mac = ref_hmac(mechanism, token, b"Responder", cb, extra)
    if mechanism.startswith("HT2-"):
        return b"\x00" + extra.encode("utf-8") + b"\x00" + mac
    return mac


# ------------------------------------------------------------------ an in-test TokenVerifier


class DictTokens:
    """user -> [(TokenRecord, token string)]; honours pinning and TokenRecord.active()."""

    def __init__(self, tokens: dict[str, list[tuple[TokenRecord, str]]], now: float = 1000.0) -> None:
        self.tokens = tokens
        self.now = now
        self.used: list[str] = []
        self.fail_with: Exception | None = None
        self.fail_mark_with: Exception | None = None
        self.lookups: list[tuple[str, str]] = []

    def verify(self, token: str, *, mechanism: str) -> TokenRecord:
        raise TokenRejected("invalid-token", "not used by HT")

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        self.lookups.append((user, mechanism))
        if self.fail_with is not None:
            raise self.fail_with
        return [
            (r, t)
            for r, t in self.tokens.get(user, [])
            if r.active(self.now) and (r.mechanism is None or r.mechanism == mechanism.upper())
        ]

    def mark_used(self, record: TokenRecord) -> None:
        if self.fail_mark_with is not None:
            raise self.fail_mark_with
        self.used.append(record.id)


def record(rid: str = "t1", user: str = "user", **kw: Any) -> TokenRecord:
    return TokenRecord(rid, user, "RANDOM", "k1", 0.0, **kw)


def verifier(*entries: tuple[TokenRecord, str]) -> DictTokens:
    tokens: dict[str, list[tuple[TokenRecord, str]]] = {}
    for r, t in entries:
        tokens.setdefault(r.user, []).append((r, t))
    return DictTokens(tokens)


def context(tokens: TokenVerifier | None, cb: dict[str, bytes] | None = None, **kw: Any) -> ServerContext:
    """A context whose user store holds the users of the verifier's tokens (token checks confirm the user)."""
    users = kw.pop("users", None)
    if users is None:
        names = tokens.tokens if isinstance(tokens, DictTokens) else ()
        users = MemoryUserStore([UserRecord(name) for name in names])
    return ServerContext(users, SECRET, channel_bindings=CB if cb is None else cb, tls=True, tokens=tokens, **kw)


def creds(mechanism: str, token: str = TOKEN, user: str = "user", **kw: Any) -> ClientCredentials:
    cb_type = split_name(mechanism)[2]
    binding = (cb_type, CB[cb_type]) if cb_type else None
    return ClientCredentials(user, token, channel_binding=kw.pop("channel_binding", binding), **kw)


def cb_of(mechanism: str) -> bytes:
    cb_type = split_name(mechanism)[2]
    return CB[cb_type] if cb_type else b""


def test_in_test_verifier_satisfies_the_protocol() -> None:
    assert isinstance(DictTokens({}), TokenVerifier)


# ------------------------------------------------------------------ names and registry


def test_24_names() -> None:
    assert len(NAMES) == len(set(NAMES)) == 24
    for family in ("HT", "HT2"):
        for hash_name in ("SHA-256", "SHA-512", "SHA3-512"):
            for cb in ("NONE", "UNIQ", "ENDP", "EXPR"):
                name = f"{family}-{hash_name}-{cb}"
                assert name in NAMES and len(name) <= 20
    assert ht_spec_of("ht2-sha3-512-expr").cb_type == "tls-exporter"
    with pytest.raises(UsageError):
        ht_spec_of("HT-SHA-1-NONE")


def test_registry_has_every_ht_name() -> None:
    reg = default_registry()
    scram_min = min(reg.info(n).strength for n in reg.names() if n.startswith("SCRAM-"))
    for name in NAMES:
        info = reg.info(name)
        family, hash_name, cb_type = split_name(name)
        assert info.token_based and not info.plaintext
        assert info.channel_binding == (cb_type is not None)
        assert reg.info("PLAIN").strength < info.strength < scram_min
        if cb_type is not None:
            assert info.strength > reg.info(f"{family}-{hash_name}-NONE").strength
            assert info.strength > max(reg.info(f"{f}-{h}-NONE").strength for f in ("HT", "HT2") for h in _HASHES)
        if family == "HT2":
            assert info.strength > reg.info(name.replace("HT2-", "HT-", 1)).strength
    offered = reg.offered(tls=True)
    assert all(n in offered for n in NAMES if n.endswith("-NONE"))
    assert not any(n in offered for n in NAMES if not n.endswith("-NONE"))
    assert set(NAMES) <= set(reg.offered(tls=True, channel_bindings=CB))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("initial_response", [True, False])
def test_registry_round_trip(name: str, initial_response: bool) -> None:
    tokens = verifier((record(), TOKEN))
    reg = default_registry()
    ctx = context(tokens)
    outcome, transcript = run_exchange(reg.client(name, creds(name)), reg.server(name, ctx),
                                       initial_response=initial_response)
    assert isinstance(outcome, Success), outcome
    assert (outcome.authcid, outcome.authzid, outcome.mechanism) == ("user", None, name)
    assert outcome.details["token_id"] == "t1" and tokens.used == ["t1"]
    cb = cb_of(name)
    assert transcript.lines[-3:] == [
        ("C", ref_initiator(name, "user", TOKEN, cb)),
        ("S", ref_responder(name, TOKEN, cb)),
        ("C", b""),
    ]
    assert tokens.lookups == [("user", name)]
    cb_type = split_name(name)[2]
    assert ctx.bindings_used == ({cb_type} if cb_type else set())


# ------------------------------------------------------------------ the vector file, recomputed independently


def _vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(HT_FILE.read_text(encoding="utf-8"))["vectors"]
    return vectors


def _octets(v: dict[str, Any], name: str) -> bytes | None:
    if f"{name}_b64" in v:
        return base64.b64decode(v[f"{name}_b64"], validate=True)
    if f"{name}_hex" in v:
        return bytes.fromhex(v[f"{name}_hex"])
    return None


def _cb(v: dict[str, Any], client: bool = False) -> bytes:
    if split_name(v["mechanism"])[2] is None:
        return b""
    data = _octets(v, "client_cb_data") if client else None
    if data is None:
        data = _octets(v, "cb_data")
    assert data is not None
    return data


def _ini(v: dict[str, Any], *, token: str | None = None, cb: bytes | None = None) -> bytes:
    return ref_initiator(v["mechanism"], v["authcid"], token or v["token"], _cb(v) if cb is None else cb,
                         v.get("extra_initiator", ""))


def _resp(v: dict[str, Any], *, token: str | None = None, extra: str | None = None) -> bytes:
    return ref_responder(v["mechanism"], token or v["token"], _cb(v),
                         v.get("extra_responder", "") if extra is None else extra)


def _check_fault(v: dict[str, Any]) -> None:
    """An independent statement of what is wrong in each failure vector."""
    fault, mech = v["fault"], v["mechanism"]
    initiator, responder = _octets(v, "initiator"), _octets(v, "responder")
    family, hash_name, _ = split_name(mech)
    size = _HASHES[hash_name]().digest_size
    ht2_fail = (lambda desc: responder == b"\x01" + desc) if family == "HT2" and v.get("side") != "client" else None
    if fault == "wrong-token":
        assert initiator == _ini(v, token=v["client_token"]) != _ini(v)
        assert responder is None if family == "HT" else responder == b"\x01invalid-token"
    elif fault == "unknown-user":
        assert initiator == _ini(v) and v["token_user"] != v["authcid"]
        assert ht2_fail and ht2_fail(b"invalid-token")
    elif fault == "wrong-cb-data":
        assert initiator == _ini(v, cb=_cb(v, client=True)) != _ini(v)
        assert _cb(v, client=True) != _cb(v) and len(_cb(v, client=True)) == len(_cb(v))
    elif fault == "truncated-hmac":
        assert initiator == _ini(v)[:-1]
    elif fault == "no-nul":
        assert initiator is not None and b"\x00" not in initiator
    elif fault == "ht09-layout":
        assert initiator == ref_initiator(mech.replace("HT2-", "HT-", 1), v["authcid"], v["token"], _cb(v))
    elif fault == "empty-authcid":
        assert initiator == b"\x00" + ref_hmac(mech, v["token"], b"Initiator", _cb(v))
    elif fault == "authcid-not-utf8":
        assert initiator is not None
        with pytest.raises(UnicodeDecodeError):
            initiator.split(b"\x00", 1)[0].decode("utf-8")
    elif fault == "authcid-too-long":
        assert initiator == _ini(v) and len(v["authcid"].encode()) > 1024
    elif fault == "authcid-saslprep":
        assert initiator == _ini(v) and any(ord(ch) < 0x20 for ch in v["authcid"])
        assert ht2_fail and ht2_fail(b"invalid-token")
    elif fault == "bad-key-value":
        assert initiator == _ini(v)  # honest HMAC over the bad values: the syntax alone must fail
        assert not _KV.match(v["extra_initiator"]) or len(v["extra_initiator"]) > 1024
    elif fault == "pinned":
        assert initiator == _ini(v) and v["token_mechanism"] != mech
    elif fault == "exporter-reused":
        assert initiator == _ini(v) and "tls-exporter" in v["bindings_used"] and v["cb_type"] == "tls-exporter"
        assert ht2_fail is None or ht2_fail(b"other-error")
    elif fault == "cb-unavailable":
        assert initiator == _ini(v) and v["server_cb"] is False
    elif fault == "wrong-responder":
        assert initiator == _ini(v)
        assert responder is not None and responder != _resp(v)
        if family == "HT2":  # the HMAC is honest for other values than the ones sent
            assert responder.rsplit(b"\x00", 1)[1] != ref_hmac(mech, v["token"], b"Responder", _cb(v),
                                                               v["extra_responder"])
    elif fault == "truncated-responder":
        assert initiator == _ini(v) and responder == _resp(v)[:-1] and len(responder) == size - 1
    elif fault == "bad-responder-key-value":
        assert initiator == _ini(v) and responder is not None and responder[:1] == b"\x00"
        assert not _KV.match(responder[1:].split(b"\x00", 1)[0].decode("latin-1"))
    elif fault == "bad-responder-status":
        assert initiator == _ini(v) and responder is not None and responder[:1] not in (b"\x00", b"\x01")
    elif fault == "ht09-responder-layout":
        assert initiator == _ini(v) and responder == ref_hmac(mech, v["token"], b"Responder", _cb(v))
    elif fault == "ht10-responder-layout":
        assert initiator == _ini(v) and responder == b"\x00" + ref_hmac(mech, v["token"], b"Responder", _cb(v))
    elif fault == "failure-response":
        assert initiator == _ini(v) and responder is not None and responder[:1] == b"\x01"
    else:  # pragma: no cover - a new fault needs a statement here
        pytest.fail(f"unknown fault {fault!r}")


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["id"])
def test_vector_recomputed_independently(vector: dict[str, Any]) -> None:
    if vector.get("expect", "success") == "success":
        assert _octets(vector, "initiator") == _ini(vector)
        assert _octets(vector, "responder") == _resp(vector)
        cb_type = split_name(vector["mechanism"])[2]
        if cb_type is not None:
            assert vector["cb_type"] == cb_type
            assert len(_cb(vector)) == {"tls-unique": 12, "tls-server-end-point": 32, "tls-exporter": 32}[cb_type]
        # and the library's own helpers agree with the reference
        assert initiator_message(vector["mechanism"], vector["authcid"], vector["token"], _cb(vector),
                                 vector.get("extra_initiator", "")) == _ini(vector)
        assert responder_message(vector["mechanism"], vector["token"], _cb(vector),
                                 vector.get("extra_responder", "")) == _resp(vector)
    else:
        _check_fault(vector)


def test_vector_file_covers_every_name_and_fault() -> None:
    vectors = _vectors()
    good = {v["mechanism"] for v in vectors if v.get("expect", "success") == "success"}
    assert good == set(NAMES)
    assert any(v.get("extra_initiator") and v.get("extra_responder") for v in vectors
               if v.get("expect", "success") == "success")
    faults = {v["fault"] for v in vectors if v.get("expect") == "failure"}
    assert {"wrong-token", "wrong-cb-data", "truncated-hmac", "no-nul", "bad-key-value", "exporter-reused",
            "pinned", "wrong-responder", "failure-response"} <= faults
    assert all("fault" in v for v in vectors if v.get("expect") == "failure")


def test_vector_file_passes_the_runner() -> None:
    results = check_file(HT_FILE)
    failing = [str(r) for r in results if not r.ok]
    assert results and not failing, "\n".join(failing)
    assert len(results) == len(_vectors())


_TAMPERING: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "responder": ("ht-sha-256-none", lambda v: v.update(responder_b64=base64.b64encode(bytes(32)).decode())),
    "initiator": ("ht2-sha-512-expr", lambda v: v.update(initiator_b64=base64.b64encode(b"user\0\0" + bytes(64))
                                                         .decode())),
    "token": ("ht-sha3-512-endp", lambda v: v.update(token=OTHER_TOKEN)),
    "cb_data": ("ht-sha-256-uniq", lambda v: v.update(cb_data_b64=base64.b64encode(bytes(12)).decode())),
    "extra": ("ht2-sha-256-expr-extra-values", lambda v: v.update(extra_responder="ok=2")),
    "expect failure": ("ht-sha-512-none", lambda v: v.update(expect="failure")),
    "repaired fault": ("bad-ht-exporter-second-use", lambda v: v.update(bindings_used=[])),
    "wrong error": ("bad-ht-no-nul", lambda v: v.update(error="authentication-failed")),
    "wrong failure data": ("bad-ht2-unknown-user", lambda v: v.update(responder_b64="AXVua25vd24tdXNlcg==")),
}


@pytest.mark.parametrize(("vid", "tamper"), _TAMPERING.values(), ids=_TAMPERING.keys())
def test_tampered_vector_fails(tmp_path: Path, vid: str, tamper: Callable[[dict[str, Any]], None]) -> None:
    [vector] = [v for v in _vectors() if v["id"] == vid]
    tamper(vector)
    path = tmp_path / "ht.json"
    path.write_text(json.dumps({"kind": "ht", "vectors": [vector]}), encoding="utf-8")
    [result] = check_file(path)
    assert not result.ok, result


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ({"kind": "ht", "mechanism": "HT-SHA-256-NONE"}, "missing authcid, token, initiator, responder"),
        ({"kind": "ht", "mechanism": "HT-MD5-NONE", "expect": "failure"}, "not an HT mechanism"),
        ({"mechanism": "HT-SHA-256-ENDP", "authcid": "u", "token": "t", "initiator": "x", "responder": "y"},
         "needs cb_type"),
        ({"mechanism": "HT-SHA-256-NONE", "expect": "failure", "extra_initiator": "a=b"}, "no extra values"),
        ({"mechanism": "HT-SHA-256-NONE", "expect": "failure", "bindings_used": "tls-exporter"}, "bindings_used"),
        ({"mechanism": "HT-SHA-256-NONE", "expect": "failure", "cb_type": "tls-unique"}, "together"),
    ],
)
def test_malformed_ht_vector(tmp_path: Path, vector: dict[str, Any], expected: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"vectors": [vector]}), encoding="utf-8")
    [result] = check_file(path)
    assert not result.ok and expected in result.detail, result


# ------------------------------------------------------------------ ht-derived.json


def _derived() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(DERIVED.read_text(encoding="utf-8"))["vectors"]
    return vectors


def test_ht_sha_256_none_matches_derived_layout() -> None:
    derived = [d for d in _derived() if d["profile"].startswith("draft-schmaus-kitten-sasl-ht-04..09")]
    ours = {v["id"]: v for v in _vectors()}
    for d, vid in zip(derived, ("ht-derived-ht09-sha-256-none", "ht-derived-ht09-sha-256-expr"), strict=True):
        v = ours[vid]
        assert (v["mechanism"], v["authcid"], v["token"]) == (d["mechanism"], d["authcid"], d["token_string"])
        assert v["token"].encode("utf-8").hex() == d["hmac_key_hex"]  # the key is the string, not its base64 decoding
        assert _octets(v, "initiator") == bytes.fromhex(d["initiator_msg_hex"])
        assert _octets(v, "responder") == bytes.fromhex(d["responder_msg_hex"])
        assert _cb(v).hex() == d["cb_data_hex"]
    # Our own HT-SHA-256-NONE vector has the same layout: authcid NUL 32-octet HMAC, bare 32-octet responder.
    mine = ours["ht-sha-256-none"]
    d = derived[0]
    initiator, ref = _octets(mine, "initiator"), bytes.fromhex(d["initiator_msg_hex"])
    assert initiator is not None and initiator.index(b"\x00") == ref.index(b"\x00") == 4
    assert len(initiator) == len(ref) == 4 + 1 + 32
    assert len(_octets(mine, "responder") or b"") == len(bytes.fromhex(d["responder_msg_hex"])) == 32


def test_ietf01_layout_matches_derived() -> None:
    [d] = [d for d in _derived() if d["profile"].startswith("draft-ietf-kitten-sasl-ht-01")]
    [v] = [v for v in _vectors() if v["id"] == "ht-derived-ietf01-sha-256-none"]
    assert v["mechanism"] == "HT2-SHA-256-NONE" and v["extra_initiator"] == d["extra_initiator_values"]
    assert _octets(v, "initiator") == bytes.fromhex(d["initiator_msg_hex"])
    assert _octets(v, "responder") == bytes.fromhex(d["success_response_hex"])
    ht10 = next(d for d in _derived() if "ht-10" in d["profile"])
    # HT-10's success response is NUL + the HT-09 responder; ietf-01 adds the (empty) extra values and a NUL.
    assert bytes.fromhex(d["success_response_hex"])[1:] == bytes.fromhex(ht10["success_response_hex"])


# ------------------------------------------------------------------ NUL inside the HMAC


def test_hmac_with_nul_octet_parses() -> None:
    derived_token = "WXZzciBwYmFmdmZnZiBqdmd1IGp2eXFhcmZm"
    mac = ref_hmac("HT-SHA-256-NONE", derived_token, b"Initiator", b"")
    assert mac[11] == 0  # the ht-derived vector's HMAC has 0x00 at offset 11
    message = b"user\x00" + mac
    assert parse_initiator_message("HT-SHA-256-NONE", message) == ("user", "", mac)
    tokens = verifier((record(), derived_token))
    result = HTServer("HT-SHA-256-NONE", context(tokens)).step(message)
    assert isinstance(result, Success) and result.authcid == "user"


@pytest.mark.parametrize("name", ["HT-SHA-512-NONE", "HT2-SHA-256-NONE", "HT2-SHA3-512-EXPR"])
def test_hmac_starting_with_nul_parses(name: str) -> None:
    """Find a token whose initiator HMAC *starts* with 0x00: the separator is then followed by NUL."""
    token = next(t for t in (f"{TOKEN}-{i}" for i in range(20000))
                 if ref_hmac(name, t, b"Initiator", cb_of(name))[0] == 0)
    message = ref_initiator(name, "user", token, cb_of(name))
    assert b"\x00\x00" in message
    result = HTServer(name, context(verifier((record(), token)))).step(message)
    assert isinstance(result, Success), result


# ------------------------------------------------------------------ server behaviour


def test_pinned_token_with_other_mechanism_fails() -> None:
    pinned = record(mechanism="HT-SHA-256-NONE")
    for name, ok in (("HT-SHA-256-NONE", True), ("HT-SHA-256-ENDP", False), ("HT2-SHA-256-NONE", False),
                     ("HT-SHA-512-NONE", False)):
        tokens = verifier((pinned, TOKEN))
        result = HTServer(name, context(tokens)).step(ref_initiator(name, "user", TOKEN, cb_of(name)))
        assert isinstance(result, Success if ok else Failure), (name, result)
        assert tokens.used == (["t1"] if ok else [])


class _LeakyVerifier(DictTokens):
    """A verifier that forgets to filter pinned tokens: the server still refuses them."""

    def secrets_for(self, user: str, *, mechanism: str) -> list[tuple[TokenRecord, str]]:
        return list(self.tokens.get(user, []))


def test_server_refuses_pinned_token_even_if_verifier_returns_it() -> None:
    tokens = _LeakyVerifier({"user": [(record(mechanism="HT-SHA-256-NONE"), TOKEN)]})
    name = "HT-SHA-256-ENDP"
    result = HTServer(name, context(tokens)).step(ref_initiator(name, "user", TOKEN, cb_of(name)))
    assert isinstance(result, Failure) and result.reason == FailureReason.AUTHENTICATION_FAILED


def test_second_tls_exporter_authentication_fails() -> None:
    tokens = verifier((record(), TOKEN))
    ctx = context(tokens)
    reg = default_registry()
    first, _ = run_exchange(reg.client("HT-SHA-256-EXPR", creds("HT-SHA-256-EXPR")),
                            reg.server("HT-SHA-256-EXPR", ctx))
    assert isinstance(first, Success) and ctx.bindings_used == {"tls-exporter"}
    for name in ("HT-SHA-256-EXPR", "HT2-SHA-512-EXPR"):
        second = HTServer(name, ctx).step(ref_initiator(name, "user", TOKEN, CB["tls-exporter"]))
        assert isinstance(second, Failure) and second.reason == "channel-binding-already-used"
    assert tokens.used == ["t1"]
    # tls-server-end-point may serve any number of authentications on the connection
    for _ in range(2):
        again = HTServer("HT-SHA-256-ENDP", ctx).step(ref_initiator("HT-SHA-256-ENDP", "user", TOKEN,
                                                                    CB["tls-server-end-point"]))
        assert isinstance(again, Success)
    assert ctx.bindings_used == {"tls-exporter", "tls-server-end-point"}
    # NONE records nothing and is not affected
    assert isinstance(HTServer("HT-SHA-256-NONE", ctx).step(ref_initiator("HT-SHA-256-NONE", "user", TOKEN, b"")),
                      Success)


def test_failed_exporter_authentication_does_not_consume_the_binding() -> None:
    ctx = context(verifier((record(), TOKEN)))
    bad = HTServer("HT-SHA-256-EXPR", ctx).step(ref_initiator("HT-SHA-256-EXPR", "user", OTHER_TOKEN,
                                                              CB["tls-exporter"]))
    assert isinstance(bad, Failure) and ctx.bindings_used == set()
    good = HTServer("HT-SHA-256-EXPR", ctx).step(ref_initiator("HT-SHA-256-EXPR", "user", TOKEN, CB["tls-exporter"]))
    assert isinstance(good, Success)


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("-NONE")])
def test_cb_mechanism_without_that_binding_fails(name: str) -> None:
    cb_type = split_name(name)[2]
    others = {k: v for k, v in CB.items() if k != cb_type}
    result = HTServer(name, context(verifier((record(), TOKEN)), cb=others)).step(
        ref_initiator(name, "user", TOKEN, CB[str(cb_type)]))
    assert isinstance(result, Failure) and result.reason == "channel-binding-not-supported"
    assert result.data == (b"\x01other-error" if name.startswith("HT2-") else None)


@pytest.mark.parametrize("name", ["HT-SHA-256-NONE", "HT2-SHA-256-NONE"])
def test_unknown_user_and_wrong_token_fail_alike(name: str) -> None:
    tokens = verifier((record(), TOKEN))
    unknown = HTServer(name, context(tokens)).step(ref_initiator(name, "nobody", TOKEN, b""))
    wrong = HTServer(name, context(tokens)).step(ref_initiator(name, "user", OTHER_TOKEN, b""))
    prep_fails = HTServer(name, context(tokens)).step(ref_initiator(name, "us\u0007er", TOKEN, b""))
    assert isinstance(unknown, Failure) and isinstance(wrong, Failure) and isinstance(prep_fails, Failure)
    # Failure.authcid (never sent) names the prepared identity tried, when there is one.
    assert (unknown.authcid, wrong.authcid, prep_fails.authcid) == ("nobody", "user", None)
    assert dataclasses.replace(unknown, authcid=None) == dataclasses.replace(wrong, authcid=None) == prep_fails
    assert isinstance(wrong, Failure) and wrong.reason == FailureReason.AUTHENTICATION_FAILED
    assert wrong.data == (b"\x01invalid-token" if name.startswith("HT2-") else None)
    assert tokens.lookups == [("nobody", name), ("user", name)]  # the unpreparable name is not looked up


@pytest.mark.parametrize("name", ["HT-SHA-256-NONE", "HT2-SHA-256-NONE"])
def test_verifier_errors(name: str) -> None:
    message = ref_initiator(name, "user", TOKEN, b"")
    tokens = verifier((record(), TOKEN))
    tokens.fail_with = TemporaryFailure("store down")
    result = HTServer(name, context(tokens)).step(message)
    assert isinstance(result, Failure) and result.temporary
    tokens.fail_with = TokenRejected("unknown-user", "unknown token")
    result = HTServer(name, context(tokens)).step(message)
    assert isinstance(result, Failure) and result.reason == FailureReason.AUTHENTICATION_FAILED
    assert result.data == (b"\x01invalid-token" if name.startswith("HT2-") else None)
    tokens.fail_with = TokenRejected("revoked", "token was revoked on 2026-01-01")
    result = HTServer(name, context(tokens)).step(message)
    assert isinstance(result, Failure) and "revoked on 2026-01-01" in result.message
    assert result.data == (b"\x01revoked" if name.startswith("HT2-") else None)
    tokens.fail_with = None
    tokens.fail_mark_with = TemporaryFailure("store down")
    ctx = context(tokens)
    result = HTServer(name, ctx).step(message)
    assert isinstance(result, Success)  # recording last_used is best effort (issue 8 item 9)


def test_expired_and_revoked_tokens_are_not_candidates() -> None:
    tokens = verifier((record("old", expires=500.0), TOKEN), (record("gone", revoked=1.0), OTHER_TOKEN))
    for token in (TOKEN, OTHER_TOKEN):
        result = HTServer("HT-SHA-256-NONE", context(tokens)).step(ref_initiator("HT-SHA-256-NONE", "user", token,
                                                                                 b""))
        assert isinstance(result, Failure)


def test_no_token_service_fails() -> None:
    result = HTServer("HT2-SHA-256-NONE", context(None)).step(ref_initiator("HT2-SHA-256-NONE", "user", TOKEN, b""))
    assert isinstance(result, Failure) and result.reason == FailureReason.AUTHENTICATION_FAILED
    assert result.data == b"\x01other-error"


def test_second_of_several_tokens_matches() -> None:
    tokens = verifier((record("a"), OTHER_TOKEN), (record("b"), TOKEN), (record("c"), OTHER_TOKEN + "x"))
    result = HTServer("HT-SHA-512-NONE", context(tokens)).step(ref_initiator("HT-SHA-512-NONE", "user", TOKEN, b""))
    assert isinstance(result, Success) and result.details == {"token_id": "b"} and tokens.used == ["b"]


def test_token_key_is_the_string_not_its_base64_decoding() -> None:
    token = "WXZzciBwYmFmdmZnZiBqdmd1IGp2eXFhcmZm"  # valid base64, as ejabberd tokens are
    decoded_key = hmac.new(base64.b64decode(token), b"Initiator", hashlib.sha256).digest()
    tokens = verifier((record(), token))
    bad = HTServer("HT-SHA-256-NONE", context(tokens)).step(b"user\x00" + decoded_key)
    assert isinstance(bad, Failure)
    good = HTServer("HT-SHA-256-NONE", context(tokens)).step(ref_initiator("HT-SHA-256-NONE", "user", token, b""))
    assert isinstance(good, Success)


def test_authcid_is_saslprepped_for_lookup() -> None:
    tokens = verifier((record(user="IX"), TOKEN))
    result = HTServer("HT-SHA-256-NONE", context(tokens)).step(ref_initiator("HT-SHA-256-NONE", "I\u00adX", TOKEN,
                                                                             b""))
    assert isinstance(result, Success) and result.authcid == "IX" and result.identity == "IX"


def test_ht2_extra_values_both_ways() -> None:
    name = "HT2-SHA-256-EXPR"
    tokens = verifier((record(), TOKEN))
    ctx = context(tokens)
    client = HTClient(name, creds(name), extra_values="h=abc,n=1")
    server = HTServer(name, ctx, extra_values="ok=yes")
    outcome, transcript = run_exchange(client, server)
    assert isinstance(outcome, Success)
    assert outcome.details == {"token_id": "t1", "extra_values": "h=abc,n=1"}
    assert server.peer_extra_values == "h=abc,n=1" and client.peer_extra_values == "ok=yes"
    assert transcript.lines[0][1] == ref_initiator(name, "user", TOKEN, CB["tls-exporter"], "h=abc,n=1")
    assert transcript.lines[1][1] == ref_responder(name, TOKEN, CB["tls-exporter"], "ok=yes")
    assert parse_key_values("h=abc,n=1") == [("h", "abc"), ("n", "1")]
    assert parse_key_values("") == []


def test_none_gets_one_empty_challenge() -> None:
    server = HTServer("HT-SHA-256-NONE", context(verifier((record(), TOKEN))))
    assert server.step(None) == Challenge(b"") and not server.done
    result = server.step(None)
    assert isinstance(result, Failure) and result.reason == FailureReason.INVALID_ENCODING and server.done
    with pytest.raises(UsageError):
        server.step(b"anything")


def test_empty_challenge_then_message() -> None:
    server = HTServer("HT-SHA-256-NONE", context(verifier((record(), TOKEN))))
    assert server.step(None) == Challenge(b"")
    assert isinstance(server.step(ref_initiator("HT-SHA-256-NONE", "user", TOKEN, b"")), Success) and server.done


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"user",
        b"\x00" + bytes(32),
        b"user\x00" + bytes(31),
        b"user\x00" + bytes(33),
        b"\xc3\x28\x00" + bytes(32),
        b"u" * 1025 + b"\x00" + bytes(32),
        b"u" * 10000,
    ],
)
def test_malformed_initiator(message: bytes) -> None:
    result = HTServer("HT-SHA-256-NONE", context(verifier((record(), TOKEN)))).step(message)
    assert isinstance(result, Failure) and result.reason == FailureReason.INVALID_ENCODING


@pytest.mark.parametrize(
    "message",
    [
        b"user\x00" + bytes(32),  # HT-09 layout: no second NUL (unless the HMAC has one) and bad length
        b"user\x00a\x00" + bytes(32),
        b"user\x00a=b,\x00" + bytes(32),
        b"user\x00a=b=c\x00" + bytes(32),
        b"user\x00a=\xc3\xa9\x00" + bytes(32),
        b"user\x00k=" + b"v" * 1023 + b"\x00" + bytes(32),
        b"user\x00\x00" + bytes(31),
    ],
)
def test_malformed_ht2_initiator(message: bytes) -> None:
    result = HTServer("HT2-SHA-256-NONE", context(verifier((record(), TOKEN)))).step(message)
    assert isinstance(result, Failure) and result.reason == FailureReason.INVALID_ENCODING
    assert result.data == b"\x01other-error"


def test_message_size_limit_of_context() -> None:
    ctx = context(verifier((record(), TOKEN)), max_message_size=16)
    result = HTServer("HT-SHA-256-NONE", ctx).step(ref_initiator("HT-SHA-256-NONE", "user", TOKEN, b""))
    assert isinstance(result, Failure) and result.reason == FailureReason.INVALID_ENCODING


# ------------------------------------------------------------------ client behaviour


@pytest.mark.parametrize("name", NAMES)
def test_client_messages(name: str) -> None:
    client = HTClient(name, creds(name))
    assert client.start() == ref_initiator(name, "user", TOKEN, cb_of(name))
    assert not client.verified
    assert client.step(ref_responder(name, TOKEN, cb_of(name))) == b""
    assert client.verified
    client.finish()
    client.finish(ref_responder(name, TOKEN, cb_of(name)))  # a repeat after verification is ignored


def test_client_finish_verifies_additional_data() -> None:
    client = HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE"))
    client.start()
    client.finish(ref_responder("HT-SHA-256-NONE", TOKEN, b""))
    assert client.verified


@pytest.mark.parametrize("additional", [None, b"", bytes(32)])
def test_client_finish_without_valid_responder_fails(additional: bytes | None) -> None:
    client = HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE"))
    client.start()
    with pytest.raises(AuthenticationFailed):
        client.finish(additional)


@pytest.mark.parametrize(
    ("challenge", "error", "reason"),
    [
        (b"\x01unknown-user", AuthenticationFailed, "unknown-user"),
        (b"\x01invalid-token", AuthenticationFailed, "invalid-token"),
        (b"\x01something new", AuthenticationFailed, "other-error"),
        (b"\x01", AuthenticationFailed, "other-error"),
        (b"", ProtocolError, "invalid-encoding"),
        (b"\x02\x00\x00" + bytes(32), ProtocolError, "invalid-encoding"),
        (b"\x00" + b"\xff" * 32, ProtocolError, "invalid-encoding"),  # no second NUL
        (b"\x00a b\x00" + bytes(32), ProtocolError, "invalid-encoding"),
        (b"\x00\x00" + bytes(32), AuthenticationFailed, "invalid-responder-token"),
        (b"\x00\x00" + bytes(31), AuthenticationFailed, "invalid-responder-token"),
    ],
)
def test_ht2_client_rejects(challenge: bytes, error: type[Exception], reason: str) -> None:
    client = HTClient("HT2-SHA-256-NONE", creds("HT2-SHA-256-NONE"))
    client.start()
    with pytest.raises(error) as info:
        client.step(challenge)
    assert getattr(info.value, "reason", None) == reason
    with pytest.raises(AuthenticationFailed):
        client.finish()


def test_ht09_client_rejects_wrong_responder() -> None:
    name = "HT-SHA-256-ENDP"
    client = HTClient(name, creds(name))
    client.start()
    with pytest.raises(AuthenticationFailed) as info:
        client.step(ref_responder(name, TOKEN, b""))  # responder without the cb-data
    assert info.value.reason == "invalid-responder-token"


def test_client_usage_errors() -> None:
    with pytest.raises(UsageError):
        HTClient("HT-SHA-256-ENDP", creds("HT-SHA-256-ENDP", channel_binding=None))
    with pytest.raises(UsageError):
        HTClient("HT-SHA-256-ENDP", creds("HT-SHA-256-ENDP", channel_binding=("tls-exporter", bytes(32))))
    with pytest.raises(UsageError):
        HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE", authzid="admin"))
    with pytest.raises(UsageError):
        HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE"), extra_values="a=b")
    for bad in ("a", "a=b,", "a b=c", "é=1", "a=" + "b" * 1024):
        with pytest.raises(UsageError):
            HTClient("HT2-SHA-256-NONE", creds("HT2-SHA-256-NONE"), extra_values=bad)
    with pytest.raises(UsageError):
        HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE", token=""))
    with pytest.raises(UsageError):
        HTServer("HT-SHA-256-NONE", context(None), extra_values="a=b")
    for user in ("", "a\x00b", "u" * 1025):
        with pytest.raises(UsageError):
            HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE", user=user)).start()
    client = HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE"))
    with pytest.raises(UsageError):
        client.step(b"x")  # before start()
    client.start()
    with pytest.raises(UsageError):
        client.start()


def test_client_none_ignores_channel_binding() -> None:
    client = HTClient("HT-SHA-256-NONE", creds("HT-SHA-256-NONE", channel_binding=("tls-exporter", bytes(32))))
    assert client.start() == ref_initiator("HT-SHA-256-NONE", "user", TOKEN, b"")


def test_wrong_cb_data_fails_end_to_end() -> None:
    name = "HT2-SHA-256-UNIQ"
    client = HTClient(name, creds(name, channel_binding=("tls-unique", bytes(12))))
    outcome, _ = run_exchange(client, HTServer(name, context(verifier((record(), TOKEN)))))
    assert isinstance(outcome, Failure) and outcome.reason == FailureReason.AUTHENTICATION_FAILED


def test_reprs_do_not_leak_the_token_or_hmacs() -> None:
    name = "HT2-SHA-256-NONE"
    c = creds(name)
    assert TOKEN not in repr(c)
    server = HTServer(name, context(verifier((record(), TOKEN))))
    success = server.step(ref_initiator(name, "user", TOKEN, b""))
    assert isinstance(success, Success)
    failure = HTServer(name, context(verifier((record(), TOKEN)))).step(ref_initiator(name, "user", OTHER_TOKEN, b""))
    assert isinstance(failure, Failure)
    for text in (repr(success), repr(failure), str(failure.message)):
        assert TOKEN not in text and OTHER_TOKEN not in text
        assert ref_responder(name, TOKEN, b"").hex() not in text and repr(ref_responder(name, TOKEN, b"")) not in text


# ------------------------------------------------------------------ property tests


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=2200), prefix=st.sampled_from([b"", b"user\x00",
                                                                                          b"user\x00\x00"]))
def test_server_never_raises_on_arbitrary_bytes(name: str, data: bytes, prefix: bytes) -> None:
    server = HTServer(name, context(verifier((record(), TOKEN))))
    try:
        result = server.step(prefix + data)
    except SaslError:
        return
    assert isinstance(result, Failure | Success | Challenge)
    assert server.done


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=1200), prefix=st.sampled_from([b"", b"\x00", b"\x01",
                                                                                          b"\x00\x00"]))
def test_client_step_never_raises_other_errors(name: str, data: bytes, prefix: bytes) -> None:
    client = HTClient(name, creds(name), extra_values="")
    client.start()
    try:
        assert client.step(prefix + data) == b""
    except SaslError:
        pass
    try:
        client.finish(prefix + data)
    except SaslError:
        pass


@FUZZ
@given(text=st.text(max_size=60))
def test_key_values_parse_or_protocol_error(text: str) -> None:
    try:
        pairs = parse_key_values(text)
    except ProtocolError:
        assert not _KV.match(text)
        return
    assert _KV.match(text)
    assert ",".join(f"{k}={v}" for k, v in pairs) == text


@FUZZ
@given(name=st.sampled_from(NAMES), authcid=st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s),
       token=st.text(min_size=1, max_size=40), extra=st.sampled_from(["", "a=b", "h=x/y+z,c=1"]))
def test_initiator_round_trips_through_the_parser(name: str, authcid: str, token: str, extra: str) -> None:
    extra = extra if name.startswith("HT2-") else ""
    message = initiator_message(name, authcid, token, cb_of(name), extra)
    assert message == ref_initiator(name, authcid, token, cb_of(name), extra)
    assert parse_initiator_message(name, message) == (authcid, extra, ref_hmac(name, token, b"Initiator",
                                                                               cb_of(name), extra))


def test_every_spec_is_consistent() -> None:
    for name, spec in HT_MECHANISMS.items():
        family, hash_name, cb_type = split_name(name)
        assert (spec.family, spec.hash_name, spec.cb_type) == (family, hash_name, cb_type)
        assert spec.size == _HASHES[hash_name]().digest_size
